/* A method app for the device runtime's tests (tests/test_device_runtime.py). It makes every hook
 * call visible on the wire:
 *   on_input(seq)        -> the counter runs once (STATS instructions = 1000 + samples), then the
 *                           input buffer goes back as two LATENT frames of sample seq: bytes 0..59
 *                           (part 0 of 2) and 60..99 (part 1 of 2).
 *   on_control(key, v)   -> a CONTROL-typed frame carrying the pair (key, v); key 200 also sets STATS
 *                           last error to v; key 201 first tries two invalid sends and echoes
 *                           v = bit 0 (bad part refused) | bit 1 (overlong payload refused); key 4
 *                           (skip mask, APP_SKIP_BLOCKS blocks) echoes the mask in effect: a mask with
 *                           bits at or above APP_SKIP_BLOCKS is rejected (the mask stays, STATS last
 *                           error TS_DEVICE_ERROR_CONTROL | 4); key 202 reports v instructions
 *                           (ts_device_instructions(v)), as if an inference had run.
 * Arguments: "udp" (frames by net_send), "nohooks" (both hooks NULL), "noinput" (input_bytes 0).
 * Built with TS_AUTH, the device key is the test key of tinysplit/wire/auth_vectors.json (bytes 0..31). */
#include <string.h>

#include "board.h"
#include "ts_device.h"

#define APP_INPUT_BYTES 100u
#define APP_FIRST_PART 60u
#define APP_KEY_SET_ERROR 200u
#define APP_KEY_BAD_SENDS 201u
#define APP_KEY_INSTRUCTIONS 202u
#define APP_SKIP_BLOCKS 8u

static uint32_t skip_mask;

#ifdef TS_AUTH
const uint8_t ts_device_key[TS_AUTH_KEY_SIZE] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
#endif

static uint8_t input[APP_INPUT_BYTES];

static void app_input(uint32_t seq)
{
    uint8_t *p = ts_device_payload();
    counter_start();
    ts_device_instructions(counter_instructions());
    memcpy(p, input, APP_FIRST_PART);
    (void)ts_device_send(TS_LATENT, seq, 0u, 2u, APP_FIRST_PART);
    memcpy(p, input + APP_FIRST_PART, APP_INPUT_BYTES - APP_FIRST_PART);
    (void)ts_device_send(TS_LATENT, seq, 1u, 2u, APP_INPUT_BYTES - APP_FIRST_PART);
}

static void app_control(uint8_t key, uint32_t value)
{
    uint8_t *p = ts_device_payload();
    if (key == APP_KEY_SET_ERROR) {
        ts_device_error(value);
    } else if (key == APP_KEY_INSTRUCTIONS) {
        ts_device_instructions(value);
    } else if (key == APP_KEY_BAD_SENDS) {
        value = (ts_device_send(TS_EARLY_LABEL, 0u, 1u, 1u, 3u) != 0 ? 1u : 0u)
                | (ts_device_send(TS_EARLY_LABEL, 0u, 0u, 1u, TS_MAX_PAYLOAD + 1u) != 0 ? 2u : 0u);
    } else if (key == TS_CONTROL_SKIP_MASK) {
        if ((value >> APP_SKIP_BLOCKS) != 0u) {
            ts_device_error(TS_DEVICE_ERROR_CONTROL | key);
        } else {
            skip_mask = value;
        }
        value = skip_mask;
    }
    p[0] = key;
    p[1] = (uint8_t)(value & 0xFFu);
    p[2] = (uint8_t)((value >> 8) & 0xFFu);
    p[3] = (uint8_t)((value >> 16) & 0xFFu);
    p[4] = (uint8_t)(value >> 24);
    (void)ts_device_send(TS_CONTROL, 0u, 0u, 1u, 5u);
}

static int has_arg(int argc, char **argv, const char *name)
{
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const ts_device_app hooks = {app_input, app_control};
    static const ts_device_app no_hooks = {NULL, NULL};
    ts_device_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bundle_id = 0x1234ABCDu;
    cfg.device_id = 7u;
    cfg.hello_name = "host-board";
    cfg.capabilities = TS_CAP_REBEL | TS_CAP_SKIP;
    cfg.input = input;
    cfg.input_bytes = has_arg(argc, argv, "noinput") ? 0u : APP_INPUT_BYTES;
    cfg.output_bytes = 40u;
    cfg.units_total = 16u;
    cfg.unit_bytes = 6u;
    cfg.udp = has_arg(argc, argv, "udp");
    ts_device_run(&cfg, has_arg(argc, argv, "nohooks") ? &no_hooks : &hooks);
}
