/*
 * ts_device.h -- the generic tinysplit device runtime: everything a split-computing method app
 * shares on the device side of the wire protocol (docs/wire-protocol.md).
 *
 * Part of tinysplit. Hand-written runtime file (not generated). SPDX-License-Identifier: see the
 * project's LICENSE.
 *
 * The runtime owns the main loop. It sends HELLO at boot, receives frames from the host on the
 * UART (COBS, 0x00-delimited, fixed buffers), decodes and checks them (bundle id, device id or
 * broadcast 0xFFFF, payload rules), answers STATS requests (per-reason drop counters), parses
 * CONTROL lists (acting on key 5, exit, itself), reassembles INPUT chunks into the app's input
 * buffer, and sends the app's frames over the UART (COBS + 0x00) or UDP (net.h). The method app
 * fills a ts_device_config, gives two hooks and calls ts_device_run():
 *
 *     static void on_input(uint32_t seq) { ... run the model, build frames with
 *                                          ts_device_payload() and ts_device_send() ... }
 *     static void on_control(uint8_t key, uint32_t value) { ... key 1, 3, 4, ... }
 *     int main(void)
 *     {
 *         static const ts_device_app app = {on_input, on_control};
 *         ts_device_config cfg = {0};
 *         cfg.bundle_id = ...; cfg.device_id = ...; cfg.input = (uint8_t *)model_input(); ...
 *         ts_device_run(&cfg, &app);
 *     }
 *
 * Host -> device handling (every bad frame is dropped and counted, never fatal):
 *   INPUT    chunks part_index 0..part_count-1 of one sample `seq`, in order, copied straight into
 *            cfg->input; when the last chunk arrived and the chunks add up to exactly
 *            cfg->input_bytes, app->on_input(seq) runs. A chunk out of order (or a sample left
 *            incomplete by a new part 0) is dropped as `part`; chunks that overflow the input or do
 *            not fill it as `payload`. A build with no input (cfg->input_bytes == 0) drops INPUT
 *            as `unexpected_type`.
 *   CONTROL  (key, value) pairs in order; for a repeated key only the first value counts. Key 5
 *            (exit) ends the run with status value & 0xFF when it is reached (later pairs are not
 *            applied); every other key goes to app->on_control, which ignores keys it has no use for
 *            and keeps its setting for a value it rejects (reporting TS_DEVICE_ERROR_CONTROL | key).
 *   STATS    (a request, any list) -> a STATS reply: 1 frames sent (the reply included), 2 frames
 *            received, 3 drops (all reasons), 4 last error, 5 instructions of the last inference
 *            (ts_device_instructions), 6 and 7 the low and high 32 bits of the instructions of every
 *            inference since boot (the sum of ts_device_instructions), 8 the bytes of the frames the
 *            app sent since boot (ts_device_send: header, payload and CRC, before COBS; modulo 2^32),
 *            16+r drops of reason r, r = 1..12 (1..16 in an authenticated build). Keys 6 to 8 are the
 *            device's own energy accounts: the host turns them into joules with the device's energy per
 *            instruction and per byte.
 *   RESULT   counted as received.
 *   Others   dropped as `unexpected_type` (12); a wrong bundle id as `bundle` (11); frames for
 *            another device id are ignored without counting.
 *
 * Authenticated build (TS_AUTH defined for every file of the project; docs/wire-protocol.md,
 * "Authenticated frames"): at boot the runtime draws a non-zero device nonce from board_boot_nonce()
 * (board.h; a board whose source gives 0 eight times in a row ends the run with BOARD_EXIT_FAULT) and
 * sends HELLO sealed with it. It accepts only version 2 frames: a version 1 frame is dropped as
 * `unauthenticated` (13). Before the host's SESSION (0x0B) every other frame is dropped as `session`
 * (16); a SESSION that verifies under the device nonce opens a session (send counter and receive
 * window reset) and is answered at once with a sealed STATS reply that confirms it. Every frame is
 * checked in this order: structure and CRC (ts_auth_split), bundle, device id, then the session, the
 * replay window (`replay`, 15) and the tag under ts_device_key (`auth`, 14), then the payload rules.
 * Every frame the runtime sends (HELLO, STATS, ts_device_send) is sealed; "bytes sent" (key 8) then
 * counts the sealed frames (20 bytes more each). When the send counter is spent the device says
 * HELLO again. STATS gains keys 29..32, the drops of reasons 13..16. The build must provide
 * `const uint8_t ts_device_key[32]`, the device's own key. Unauthenticated builds are unchanged.
 *
 * STATS last error: the last drop reason r (1..12; 1..16 authenticated), TS_DEVICE_ERROR_NET | e when net_init() or
 * net_send() failed with e, or whatever the app set with ts_device_error(): TS_DEVICE_ERROR_INVOKE |
 * status when the model's invoke failed, TS_DEVICE_ERROR_CONTROL | key when on_control rejected a
 * CONTROL value (e.g. 0x304: a skip mask with bits at or above the model's skippable blocks).
 *
 * The runtime uses board.h (board_uart_*, board_exit) and net.h (net_init, net_send, only when
 * cfg->udp); it has no other dependency than ts_wire and string.h. Nothing blocks except the wait
 * for the next UART byte (the device's idle state). Not reentrant: one runtime per program.
 */
#ifndef TS_DEVICE_H
#define TS_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "ts_wire.h"
#ifdef TS_AUTH
#include "ts_auth.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TS_DEVICE_NORETURN __attribute__((noreturn))
#else
#define TS_DEVICE_NORETURN
#endif

/* CONTROL key the runtime acts on itself: end the run with exit status value & 0xFF. */
#define TS_CONTROL_EXIT 5u
/* Receiver-level drop reasons after the codec's 1..10 (STATS keys 16+r). */
#define TS_DEVICE_DROP_BUNDLE 11u
#define TS_DEVICE_DROP_UNEXPECTED_TYPE 12u
#ifdef TS_AUTH
/* Authenticated builds (ts_auth.h): 13 unauthenticated, 14 auth, 15 replay, 16 session. */
#define TS_DEVICE_DROP_UNAUTHENTICATED TS_AUTH_DROP_UNAUTHENTICATED
#define TS_DEVICE_DROP_AUTH TS_AUTH_DROP_AUTH
#define TS_DEVICE_DROP_REPLAY TS_AUTH_DROP_REPLAY
#define TS_DEVICE_DROP_SESSION TS_AUTH_DROP_SESSION
#define TS_DEVICE_DROP_REASONS 17u /* number of reasons, 0 included */
#else
#define TS_DEVICE_DROP_REASONS 13u /* number of reasons, 0 included */
#endif
#define TS_STATS_PER_REASON 16u /* STATS key of drop reason r: 16 + r */
/* STATS last error codes besides the drop reasons. */
#define TS_DEVICE_ERROR_INVOKE 0x100u /* | (status & 0xFF) of a failed model invoke */
#define TS_DEVICE_ERROR_NET 0x200u /* | error of net_init() / net_send() */
#define TS_DEVICE_ERROR_CONTROL 0x300u /* | key of a CONTROL value the app rejected (it keeps its setting) */

/* What the runtime needs to know about the build; read-only, must stay valid while the runtime runs
 * (ts_device_run never returns, so a local of main() does). */
typedef struct {
    uint32_t bundle_id; /* frames with another bundle id are dropped (`bundle`) */
    uint16_t device_id; /* this device (0..0xFFFE); sent in every frame, accepted besides broadcast */
    const char *hello_name; /* HELLO board name, NUL-terminated ASCII (cut at 64 characters) */
    uint32_t capabilities; /* HELLO TS_CAP_* bits; the runtime adds TS_CAP_UDP when `udp` */
    uint8_t *input; /* INPUT chunks are written here... */
    uint32_t input_bytes; /* ...exactly this many bytes per sample (0: the build takes no INPUT) */
    uint32_t output_bytes; /* HELLO fields; 0 where the method has none */
    uint16_t units_total;
    uint16_t unit_bytes;
    int udp; /* 0: frames leave on the UART; 1: by net_send() (HELLO goes on the UART too) */
} ts_device_config;

/* The method app's hooks; either may be NULL. They run on the runtime's main loop, between frames. */
typedef struct {
    /* cfg->input holds one complete sample, number `seq`: run the model and send its frames. */
    void (*on_input)(uint32_t seq);
    /* A CONTROL pair other than exit, first value of each key only; ignore keys of no use. A value
     * the app rejects leaves its setting as it was: ts_device_error(TS_DEVICE_ERROR_CONTROL | key). */
    void (*on_control)(uint8_t key, uint32_t value);
} ts_device_app;

#ifdef TS_AUTH
/* The device's own 32-byte key, provided by the project (never in a bundle). */
extern const uint8_t ts_device_key[TS_AUTH_KEY_SIZE];
#endif

/* Initializes the UART (and the NIC when cfg->udp), sends HELLO, then receives and dispatches frames
 * forever. Ends only by CONTROL exit (board_exit). */
void ts_device_run(const ts_device_config *cfg, const ts_device_app *app) TS_DEVICE_NORETURN;

/* Where the app builds the payload of its next frame: TS_MAX_PAYLOAD bytes, reused by every send. */
uint8_t *ts_device_payload(void);

/* Sends one frame of `type` whose payload_len bytes were written at ts_device_payload(), with this
 * device's id and bundle id, to the host by the build's transport. Returns 0 when it was sent;
 * nonzero when the frame is invalid (payload_len > TS_MAX_PAYLOAD, part_index >= part_count), cannot
 * be sealed (authenticated build: no session yet, or the counter spent) or net_send() failed (then
 * STATS last error is TS_DEVICE_ERROR_NET | error). */
int ts_device_send(uint8_t type, uint32_t seq, uint16_t part_index, uint16_t part_count, size_t payload_len);

/* Sets STATS key 4, last error (e.g. TS_DEVICE_ERROR_INVOKE | status, TS_DEVICE_ERROR_CONTROL | key). */
void ts_device_error(uint32_t code);

/* Sets STATS key 5, instructions of the last inference, and adds n to keys 6 and 7. */
void ts_device_instructions(uint32_t n);

#ifdef __cplusplus
}
#endif

#endif /* TS_DEVICE_H */
