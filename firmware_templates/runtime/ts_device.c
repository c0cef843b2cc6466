/*
 * ts_device.c -- the generic tinysplit device runtime (see ts_device.h for the API and behaviour).
 *
 * Part of tinysplit. Hand-written runtime file (not generated). SPDX-License-Identifier: see the
 * project's LICENSE.
 *
 * Plain C99, static buffers only: a COBS receive buffer, one frame and one COBS transmit buffer
 * (about 3.2 KiB in all; 60 bytes more and the session's 260 in an authenticated build). Frames it
 * builds are byte-identical to the Python codec's (tinysplit.wire.auth's when TS_AUTH is defined).
 */
#include "ts_device.h"

#include <string.h>

#include "board.h"
#include "net.h"

/* The codec's reasons come before the receiver's (C99 has no _Static_assert). */
typedef char ts_device_reasons_follow_the_codec[(TS_DROP_REASONS <= TS_DEVICE_DROP_BUNDLE) ? 1 : -1];

#ifdef TS_AUTH
/* A version 2 frame is 20 bytes longer: the buffers are sized for 1068-byte frames. */
#define TS_DEVICE_MAX_FRAME TS_AUTH_MAX_FRAME
#define TS_DEVICE_MAX_ENCODED TS_AUTH_MAX_ENCODED
#define TS_DEVICE_NONCE_TRIES 8u /* draws of board_boot_nonce() before a board without entropy gives up */
#else
#define TS_DEVICE_MAX_FRAME TS_MAX_FRAME
#define TS_DEVICE_MAX_ENCODED TS_MAX_ENCODED
#endif

static const ts_device_config *cfg;
static const ts_device_app *app;

static uint8_t rx_buf[TS_DEVICE_MAX_ENCODED];
static uint8_t tx_frame[TS_DEVICE_MAX_FRAME];
static uint8_t tx_cobs[TS_DEVICE_MAX_ENCODED];
#ifdef TS_AUTH
static ts_auth_device auth; /* key, nonces, counters, receive window */
#endif
static ts_cobs_rx rx;
static ts_drop_counters codec_drops; /* reasons 1..10, from the codec and the COBS receiver */
static uint32_t receiver_drops[TS_DEVICE_DROP_REASONS]; /* reasons 11, 12 (and 13..16 authenticated) */

static uint32_t frames_sent;
static uint32_t frames_received;
static uint32_t last_error;
static uint32_t last_instructions;
static uint32_t total_instructions_low; /* two u32 halves: no 64-bit arithmetic helpers needed */
static uint32_t total_instructions_high;
static uint32_t app_bytes_sent;

/* INPUT assembly */
static int in_active;
static uint32_t in_seq;
static uint16_t in_next;
static uint16_t in_count;
static uint32_t in_filled;

static void drop(uint32_t reason)
{
    if (reason < (uint32_t)TS_DROP_REASONS) {
        ts_drops_note(&codec_drops, (ts_drop_reason)reason);
    } else if (reason < TS_DEVICE_DROP_REASONS && receiver_drops[reason] != 0xFFFFFFFFu) {
        receiver_drops[reason]++;
    }
    last_error = reason;
}

static uint32_t drops_of(uint32_t reason)
{
    return reason < (uint32_t)TS_DROP_REASONS ? codec_drops.count[reason] : receiver_drops[reason];
}

void ts_device_error(uint32_t code)
{
    last_error = code;
}

void ts_device_instructions(uint32_t n)
{
    last_instructions = n;
    total_instructions_low += n;
    if (total_instructions_low < n) {
        total_instructions_high++;
    }
}

uint8_t *ts_device_payload(void)
{
    return tx_frame + TS_HEADER_SIZE;
}

static void uart_send_frame(size_t n)
{
    size_t enc = ts_cobs_encode(tx_frame, n, tx_cobs, sizeof tx_cobs);
    board_uart_write(tx_cobs, enc);
    board_uart_putc(0u);
}

/* The frame in tx_frame[0..n) to the host by the build's transport; 0 when sent. */
static int send_built(size_t n)
{
    if (n == 0u) {
        return 1;
    }
    if (cfg->udp) {
        int err = net_send(tx_frame, n);
        if (err != 0) {
            last_error = TS_DEVICE_ERROR_NET | (uint32_t)err;
            return err;
        }
    } else {
        uart_send_frame(n);
    }
    frames_sent++;
    return 0;
}

#ifdef TS_AUTH
static void send_hello(void);

/* Seal the plain frame in tx_frame[0..n) under the session; 0 when it cannot be sent (an invalid
 * frame, no session yet, or the counter spent: then the device says HELLO again for a new session). */
static size_t seal_built(size_t n)
{
    size_t sealed;
    if (n == 0u) {
        return 0;
    }
    sealed = ts_auth_device_seal(&auth, tx_frame, n, sizeof tx_frame);
    if (sealed == 0u && ts_auth_device_exhausted(&auth)) {
        auth.host_nonce = 0u; /* the session is over: nothing is sent or accepted until the next SESSION */
        send_hello();
    }
    return sealed;
}
#endif

static ts_frame_header header(uint8_t type, uint32_t seq, uint16_t part_index, uint16_t part_count)
{
    ts_frame_header h;
    h.type = type;
    h.device_id = cfg->device_id;
    h.bundle_id = cfg->bundle_id;
    h.seq = seq;
    h.part_index = part_index;
    h.part_count = part_count;
    return h;
}

int ts_device_send(uint8_t type, uint32_t seq, uint16_t part_index, uint16_t part_count, size_t payload_len)
{
    ts_frame_header h = header(type, seq, part_index, part_count);
    /* the payload already lies at tx_frame + TS_HEADER_SIZE: the encoder's memmove is a no-op */
    size_t n = ts_frame_encode(&h, ts_device_payload(), payload_len, tx_frame, sizeof tx_frame);
    int err;
#ifdef TS_AUTH
    n = seal_built(n);
#endif
    err = send_built(n);
    if (err == 0) {
        app_bytes_sent += (uint32_t)n;
    }
    return err;
}

static void send_hello(void)
{
    ts_frame_header h = header(TS_HELLO, 0u, 0u, 1u);
    ts_hello p;
    size_t n;
    uint8_t name_len = 0u;
    while (name_len < TS_HELLO_MAX_NAME && cfg->hello_name[name_len] != '\0') {
        name_len++; /* cut at 64 characters (strlen would cost 200 bytes of flash on newlib-nano) */
    }
    p.name = cfg->hello_name;
    p.name_len = name_len;
    p.capabilities = cfg->capabilities | (cfg->udp ? TS_CAP_UDP : 0u);
    p.input_bytes = cfg->input_bytes;
    p.output_bytes = cfg->output_bytes;
    p.units_total = cfg->units_total;
    p.unit_bytes = cfg->unit_bytes;
    n = ts_build_hello(&h, &p, tx_frame, sizeof tx_frame); /* 0 (nothing sent) for a non-ASCII name */
#ifdef TS_AUTH
    n = n != 0u ? ts_auth_device_hello(&auth, tx_frame, n, sizeof tx_frame) : 0u;
#endif
    if (n == 0u) {
        return;
    }
    uart_send_frame(n); /* the host waits for it on the UART before it sends */
    frames_sent++;
    if (cfg->udp) {
        (void)send_built(n);
    }
}

static void send_stats(uint32_t seq)
{
    ts_kv items[8u + (TS_DEVICE_DROP_REASONS - 1u)];
    size_t n = 0;
    uint32_t total = 0u;
    uint32_t r;
    for (r = 1u; r < TS_DEVICE_DROP_REASONS; r++) {
        uint32_t c = drops_of(r);
        total = c > 0xFFFFFFFFu - total ? 0xFFFFFFFFu : total + c;
    }
    items[n].key = TS_STATS_SENT;
    items[n++].value = frames_sent + 1u; /* this frame included */
    items[n].key = TS_STATS_RECEIVED;
    items[n++].value = frames_received;
    items[n].key = TS_STATS_DROPS;
    items[n++].value = total;
    items[n].key = TS_STATS_LAST_ERROR;
    items[n++].value = last_error;
    items[n].key = TS_STATS_INSTRUCTIONS;
    items[n++].value = last_instructions;
    items[n].key = TS_STATS_INSTRUCTIONS_TOTAL_LOW;
    items[n++].value = total_instructions_low;
    items[n].key = TS_STATS_INSTRUCTIONS_TOTAL_HIGH;
    items[n++].value = total_instructions_high;
    items[n].key = TS_STATS_APP_BYTES_SENT;
    items[n++].value = app_bytes_sent;
    for (r = 1u; r < TS_DEVICE_DROP_REASONS; r++) {
        items[n].key = (uint8_t)(TS_STATS_PER_REASON + r);
        items[n++].value = drops_of(r);
    }
    ts_frame_header h = header(TS_STATS, seq, 0u, 1u);
    size_t len = ts_build_stats(&h, items, n, tx_frame, sizeof tx_frame);
#ifdef TS_AUTH
    len = seal_built(len);
#endif
    (void)send_built(len);
}

static void on_input(const ts_frame_view *v)
{
    const uint8_t *data;
    size_t len;
    if (ts_parse_chunk(v, &data, &len) != TS_OK) {
        drop(TS_DROP_PAYLOAD);
        return;
    }
    if (v->h.part_index == 0u) {
        if (in_active) {
            drop(TS_DROP_PART); /* the previous sample never completed */
        }
        in_active = 1;
        in_seq = v->h.seq;
        in_count = v->h.part_count;
        in_next = 0u;
        in_filled = 0u;
    } else if (!in_active || v->h.seq != in_seq || v->h.part_count != in_count || v->h.part_index != in_next) {
        in_active = 0;
        drop(TS_DROP_PART);
        return;
    }
    if (len > cfg->input_bytes - in_filled) {
        in_active = 0;
        drop(TS_DROP_PAYLOAD);
        return;
    }
    memcpy(cfg->input + in_filled, data, len);
    in_filled += (uint32_t)len;
    in_next++;
    if (in_next < in_count) {
        return;
    }
    in_active = 0;
    if (in_filled != cfg->input_bytes) {
        drop(TS_DROP_PAYLOAD);
        return;
    }
    if (app->on_input != NULL) {
        app->on_input(in_seq);
    }
}

static void on_control(const ts_frame_view *v)
{
    uint32_t seen[8] = {0u}; /* bit k: key k already seen (the first value wins) */
    size_t n;
    size_t i;
    if (ts_parse_kv(v, &n) != TS_OK) {
        drop(TS_DROP_PAYLOAD);
        return;
    }
    for (i = 0; i < n; i++) {
        ts_kv kv = ts_kv_at(v, i);
        uint32_t bit = 1u << (kv.key & 31u);
        if ((seen[kv.key >> 5] & bit) != 0u) {
            continue;
        }
        seen[kv.key >> 5] |= bit;
        if (kv.key == TS_CONTROL_EXIT) {
            board_exit((int)(kv.value & 0xFFu));
        }
        if (app->on_control != NULL) {
            app->on_control(kv.key, kv.value);
        }
    }
}

#ifdef TS_AUTH
/* A version 2 frame: structure and CRC, bundle, device id, then session, window and tag, then the
 * payload. Returns 1 with *v filled when the frame goes on to the dispatch; a SESSION that opened a
 * session is answered here, by the STATS that confirms it. */
static int open_sealed(const uint8_t *f, size_t n, ts_frame_view *v)
{
    ts_auth_frame af;
    const ts_frame_header *h = &af.v.h;
    unsigned r = ts_auth_split(f, n, &af);
    if (r != TS_OK) {
        drop(r);
        return 0;
    }
    if (h->bundle_id != cfg->bundle_id) {
        drop(TS_DEVICE_DROP_BUNDLE);
        return 0;
    }
    if (h->device_id != cfg->device_id && h->device_id != TS_BROADCAST) {
        return 0; /* another device's (under its key): not ours, not an error */
    }
    r = ts_auth_device_open(&auth, &af);
    if (r != TS_OK) {
        drop(r);
        return 0;
    }
    if (h->type == (uint8_t)TS_SESSION) {
        frames_received++;
        send_stats(h->seq);
        return 0;
    }
    r = (unsigned)ts_payload_check(&af.v);
    if (r != TS_OK) {
        drop(r);
        return 0;
    }
    *v = af.v;
    return 1;
}
#endif

static void on_frame(const uint8_t *f, size_t n)
{
    ts_frame_view v;
#ifdef TS_AUTH
    if (!open_sealed(f, n, &v)) {
        return;
    }
#else
    ts_drop_reason r = ts_frame_decode(f, n, &v);
    if (r == TS_OK) {
        r = ts_payload_check(&v);
    }
    if (r != TS_OK) {
        drop((uint32_t)r);
        return;
    }
    if (v.h.bundle_id != cfg->bundle_id) {
        drop(TS_DEVICE_DROP_BUNDLE);
        return;
    }
    if (v.h.device_id != cfg->device_id && v.h.device_id != TS_BROADCAST) {
        return; /* addressed to another device on a shared line: not ours, not an error */
    }
#endif
    switch (v.h.type) {
    case TS_INPUT:
        if (cfg->input_bytes == 0u) {
            drop(TS_DEVICE_DROP_UNEXPECTED_TYPE);
            break;
        }
        frames_received++;
        on_input(&v);
        break;
    case TS_CONTROL:
        frames_received++;
        on_control(&v);
        break;
    case TS_STATS:
        frames_received++;
        send_stats(v.h.seq);
        break;
    case TS_RESULT:
        frames_received++;
        break;
    default:
        drop(TS_DEVICE_DROP_UNEXPECTED_TYPE);
        break;
    }
}

void ts_device_run(const ts_device_config *config, const ts_device_app *hooks)
{
    cfg = config;
    app = hooks;
    board_uart_init();
#ifdef TS_AUTH
    {
        uint32_t nonce = 0u;
        unsigned tries;
        for (tries = 0u; tries < TS_DEVICE_NONCE_TRIES && nonce == 0u; tries++) {
            nonce = board_boot_nonce();
        }
        if (ts_auth_device_init(&auth, ts_device_key, nonce) != 0) {
            board_exit(BOARD_EXIT_FAULT); /* no entropy, no session: a fixed nonce would let old sessions replay */
        }
    }
#endif
    ts_drops_reset(&codec_drops);
    ts_cobs_rx_init(&rx, rx_buf, sizeof rx_buf, &codec_drops);
    if (cfg->udp) {
        int err = net_init();
        if (err != 0) {
            last_error = TS_DEVICE_ERROR_NET | (uint32_t)err;
        }
    }
    send_hello();
    for (;;) {
        const uint8_t *frame;
        size_t len;
        uint32_t cobs = codec_drops.count[TS_DROP_COBS];
        uint32_t oversize = codec_drops.count[TS_DROP_OVERSIZE];
        if (ts_cobs_rx_push(&rx, board_uart_getc(), &frame, &len)) {
            on_frame(frame, len);
        }
        if (codec_drops.count[TS_DROP_COBS] != cobs) {
            last_error = TS_DROP_COBS;
        } else if (codec_drops.count[TS_DROP_OVERSIZE] != oversize) {
            last_error = TS_DROP_OVERSIZE;
        }
    }
}
