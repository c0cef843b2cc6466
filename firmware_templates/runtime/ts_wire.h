/*
 * ts_wire.h -- the tinysplit wire protocol (docs/wire-protocol.md), C codec for the firmware runtime.
 *
 * Part of tinysplit. Hand-written runtime file (not generated). SPDX-License-Identifier: see the
 * project's LICENSE.
 *
 * Plain C99: no malloc, nothing from libc beyond string.h / stdint.h / stddef.h. Every multi-byte
 * field is (de)serialized byte by byte in little-endian order, so the code is alignment- and
 * endian-safe on any MCU. The reference behaviour is the Python codec (tinysplit.wire); both pass
 * tinysplit/wire/vectors.json byte for byte.
 *
 * Decoding never trusts a length field beyond the buffer it was given, never reads past `len`,
 * and returns a drop reason instead of failing.
 */
#ifndef TS_WIRE_H
#define TS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_WIRE_VERSION 1u
#define TS_WIRE_MAGIC0 0x54u /* 'T' */
#define TS_WIRE_MAGIC1 0x53u /* 'S' */
#define TS_MAX_PAYLOAD 1024u
#define TS_HEADER_SIZE 20u
#define TS_TRAILER_SIZE 4u
#define TS_MIN_FRAME (TS_HEADER_SIZE + TS_TRAILER_SIZE)
#define TS_MAX_FRAME (TS_HEADER_SIZE + TS_MAX_PAYLOAD + TS_TRAILER_SIZE) /* 1048 */
/* COBS adds at most one byte per 254, plus one (the Python MAX_ENCODED): 1053. */
#define TS_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)
#define TS_MAX_ENCODED TS_COBS_MAX_ENCODED(TS_MAX_FRAME)
#define TS_BROADCAST 0xFFFFu
#define TS_HELLO_MAX_NAME 64u

/* Frame types. */
enum {
    TS_HELLO = 0x01,
    TS_INPUT = 0x02,
    TS_NAIR_SLICE = 0x03,
    TS_EARLY_LABEL = 0x04,
    TS_LATENT = 0x05,
    TS_ROCOIN_PORTION = 0x06,
    TS_CONTROL = 0x07,
    TS_RESULT = 0x08,
    TS_STATS = 0x09,
    TS_ADAPTIVE_OUTPUT = 0x0A,
    TS_SESSION = 0x0B /* authenticated frames only (docs/wire-protocol.md) */
};

/* HELLO capability bits. */
#define TS_CAP_NAIR (1u << 0)
#define TS_CAP_REBEL (1u << 1)
#define TS_CAP_ROCOIN (1u << 2)
#define TS_CAP_SKIP (1u << 3)
#define TS_CAP_UDP (1u << 4)

/* CONTROL keys. */
#define TS_CONTROL_BUDGET_UNITS 1u
#define TS_CONTROL_BUDGET_BYTES 2u
#define TS_CONTROL_THRESHOLD 3u
#define TS_CONTROL_SKIP_MASK 4u

/* STATS keys. */
#define TS_STATS_SENT 1u
#define TS_STATS_RECEIVED 2u
#define TS_STATS_DROPS 3u
#define TS_STATS_LAST_ERROR 4u
#define TS_STATS_INSTRUCTIONS 5u
#define TS_STATS_INSTRUCTIONS_TOTAL_LOW 6u  /* instructions of every inference since boot, low 32 bits */
#define TS_STATS_INSTRUCTIONS_TOTAL_HIGH 7u /* and high 32 bits */
#define TS_STATS_APP_BYTES_SENT 8u          /* bytes of the app's frames sent since boot, modulo 2^32 */

/* ADAPTIVE_OUTPUT: u32 skip_mask and u32 instructions before each chunk of the output, so a frame
 * carries at most TS_ADAPTIVE_OUTPUT_CHUNK (1016) output bytes; an output of n bytes takes
 * ceil(n / TS_ADAPTIVE_OUTPUT_CHUNK) frames (at least one), part 0..count-1 in order. */
#define TS_ADAPTIVE_OUTPUT_HEADER 8u
#define TS_ADAPTIVE_OUTPUT_CHUNK (TS_MAX_PAYLOAD - TS_ADAPTIVE_OUTPUT_HEADER)

/* Decode results: TS_OK or the drop reason (the Python codec's reason names, in its check order;
 * ts_drop_reason_name() gives the name). COBS and OVERSIZE come from the serial receiver. */
typedef enum {
    TS_OK = 0,
    TS_DROP_SHORT,
    TS_DROP_MAGIC,
    TS_DROP_VERSION,
    TS_DROP_LENGTH,
    TS_DROP_CRC,
    TS_DROP_TYPE,
    TS_DROP_PART,
    TS_DROP_PAYLOAD,
    TS_DROP_COBS,
    TS_DROP_OVERSIZE,
    TS_DROP_REASONS /* number of values, TS_OK included */
} ts_drop_reason;

/* "ok", "short", "magic", ..., "oversize"; "?" for a value out of range. */
const char *ts_drop_reason_name(ts_drop_reason r);

/* Drop counters, one per reason (index TS_OK unused), for STATS frames. */
typedef struct {
    uint32_t count[TS_DROP_REASONS];
} ts_drop_counters;

void ts_drops_reset(ts_drop_counters *c);
/* Count `r` (TS_OK and out-of-range values are ignored); saturates at 0xFFFFFFFF. */
void ts_drops_note(ts_drop_counters *c, ts_drop_reason r);
/* Sum over every reason (saturating): the STATS "drops" value. */
uint32_t ts_drops_total(const ts_drop_counters *c);

/* ---- CRC-32 (IEEE 802.3 / zlib: reflected, poly 0xEDB88320, init and xorout 0xFFFFFFFF) ---- */

/* One-shot: ts_crc32("123456789", 9) == 0xCBF43926. */
uint32_t ts_crc32(const uint8_t *data, size_t len);
/* Incremental, zlib-style: start with crc = 0, then crc = ts_crc32_update(crc, chunk, n) per chunk. */
uint32_t ts_crc32_update(uint32_t crc, const uint8_t *data, size_t len);

/* ---- Frames ---- */

typedef struct {
    uint8_t type;
    uint16_t device_id;
    uint32_t bundle_id;
    uint32_t seq;
    uint16_t part_index;
    uint16_t part_count;
} ts_frame_header;

/* A decoded frame; `payload` points into the decoded buffer (no copy). */
typedef struct {
    ts_frame_header h;
    const uint8_t *payload;
    size_t payload_len;
} ts_frame_view;

/* Encode one frame into out[0..out_cap). Returns the frame's length (24..1048), or 0 when
 * payload_len > TS_MAX_PAYLOAD, part_index >= part_count, payload is NULL with payload_len > 0, or
 * out_cap is too small. The type is written as given (like the Python encoder).
 * `payload` may overlap `out` (memmove): a payload built in place at out + TS_HEADER_SIZE works. */
size_t ts_frame_encode(const ts_frame_header *h, const uint8_t *payload, size_t payload_len,
                       uint8_t *out, size_t out_cap);

/* Decode exactly one frame occupying buf[0..len). Checks, in the Python order: short, magic,
 * version, length, crc, type, part. Frame-level only, like Python's decode_frame: a payload's
 * rules are checked by ts_payload_check() or the ts_parse_* functions (reason TS_DROP_PAYLOAD).
 * `out` is written only on TS_OK. */
ts_drop_reason ts_frame_decode(const uint8_t *buf, size_t len, ts_frame_view *out);

/* The type's payload rules (the Python payload decoders): TS_OK or TS_DROP_PAYLOAD
 * (TS_DROP_TYPE for a type this protocol version does not know). */
ts_drop_reason ts_payload_check(const ts_frame_view *v);

/* ---- COBS ---- */

/* COBS-encode in[0..len) into out (shortest form, byte-identical to the Python encoder: a final
 * 254-byte run gets no trailing empty block). No 0x00 in the output and no delimiter appended.
 * Returns the encoded length, or 0 when out_cap < the encoded length (never 0 otherwise: even an
 * empty input encodes to one byte). Needs at most TS_COBS_MAX_ENCODED(len) bytes.
 * `in` and `out` must not overlap. */
size_t ts_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* Decode one COBS block (no delimiter) in place: buf[0..len) becomes the decoded bytes.
 * Returns 1 and sets *out_len, or 0 for a malformed block (then buf is clobbered). */
int ts_cobs_decode_inplace(uint8_t *buf, size_t len, size_t *out_len);

/* Streaming serial receiver: push bytes one at a time. Bytes between 0x00 delimiters are stored
 * (encoded) in the caller's buffer and decoded in place when the 0x00 arrives. A run longer than
 * the buffer is discarded until the next 0x00 and counted as TS_DROP_OVERSIZE; a malformed block as
 * TS_DROP_COBS; an empty run (two 0x00 in a row) is ignored. The buffer should hold TS_MAX_ENCODED
 * bytes to receive every legal frame. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow;
    ts_drop_counters *drops; /* may be NULL */
} ts_cobs_rx;

void ts_cobs_rx_init(ts_cobs_rx *rx, uint8_t *buf, size_t cap, ts_drop_counters *drops);
/* Returns 1 when `byte` (a 0x00) completed a frame: *frame / *frame_len then give its decoded
 * bytes (in rx's buffer, valid until the next push; possibly 0 bytes long -- the frame decoder
 * drops that as "short"). Returns 0 otherwise. */
int ts_cobs_rx_push(ts_cobs_rx *rx, uint8_t byte, const uint8_t **frame, size_t *frame_len);

/* ---- Payloads ----
 * Builders write a whole frame (header from `h`, its type forced to the builder's type unless
 * noted) and return its length, or 0 on an invalid argument or a too small `out`. Each builder
 * refuses what the matching parser would reject, so a built frame always parses. Parsers return
 * TS_OK or TS_DROP_PAYLOAD (TS_DROP_TYPE when `v` is not of the parser's type) and write *out only
 * on TS_OK; their pointers point into v->payload. */

typedef struct {
    const char *name; /* ASCII (bytes < 0x80), name_len <= TS_HELLO_MAX_NAME; need not be NUL-terminated */
    uint8_t name_len;
    uint32_t capabilities;
    uint32_t input_bytes;
    uint32_t output_bytes;
    uint16_t units_total;
    uint16_t unit_bytes;
} ts_hello;

typedef struct {
    uint16_t unit_start;
    uint16_t unit_count; /* >= 1 */
    uint16_t units_total; /* unit_start + unit_count <= units_total */
    const uint8_t *data;
    size_t data_len;
} ts_nair_slice;

typedef struct {
    uint16_t label;
    uint8_t confidence; /* 0..255 = 0..1 */
} ts_early_label;

typedef struct {
    uint16_t partition; /* < partitions_total */
    uint16_t partitions_total;
    const uint8_t *data;
    size_t data_len;
} ts_rocoin_portion;

/* Adaptive ResNet: one chunk of the device model's int8 output of sample `seq` (the header's
 * part_index of part_count place it, as for LATENT). */
typedef struct {
    uint32_t skip_mask; /* the mask the inference ran with: bit i set = residual block i was skipped */
    uint32_t instructions; /* instruction count of that inference; 0 where the board has no counter */
    const uint8_t *data;
    size_t data_len; /* <= TS_ADAPTIVE_OUTPUT_CHUNK */
} ts_adaptive_output;

typedef struct {
    uint16_t label;
    uint16_t units_used;
    uint8_t flags; /* bit 0: some units zero-filled */
} ts_result;

typedef struct {
    uint32_t device_nonce; /* the boot nonce of the HELLO this SESSION answers */
    uint32_t host_nonce;   /* the host's fresh nonce; 0 is never valid */
} ts_session;

typedef struct {
    uint8_t key;
    uint32_t value;
} ts_kv;

/* CONTROL, known keys only. For a key sent twice the first occurrence wins (as Python's
 * KeyValues.get). Bit (1 << key) of `present` says which fields were sent. */
typedef struct {
    uint8_t present;
    uint32_t budget_units;
    uint32_t budget_bytes;
    uint32_t threshold;
    uint32_t skip_mask;
    uint16_t unknown_keys; /* pairs skipped */
} ts_control;

size_t ts_build_hello(const ts_frame_header *h, const ts_hello *p, uint8_t *out, size_t out_cap);
size_t ts_build_nair_slice(const ts_frame_header *h, const ts_nair_slice *p, uint8_t *out, size_t out_cap);
size_t ts_build_early_label(const ts_frame_header *h, const ts_early_label *p, uint8_t *out, size_t out_cap);
/* INPUT or LATENT chunk: h->type must be TS_INPUT or TS_LATENT (not forced). */
size_t ts_build_chunk(const ts_frame_header *h, const uint8_t *data, size_t data_len, uint8_t *out, size_t out_cap);
size_t ts_build_rocoin_portion(const ts_frame_header *h, const ts_rocoin_portion *p, uint8_t *out, size_t out_cap);
/* `p->data` may already lie in place, at out + TS_HEADER_SIZE + TS_ADAPTIVE_OUTPUT_HEADER. */
size_t ts_build_adaptive_output(const ts_frame_header *h, const ts_adaptive_output *p, uint8_t *out, size_t out_cap);
/* CONTROL or STATS list: h->type must be TS_CONTROL or TS_STATS (not forced). n <= 204. */
size_t ts_build_kv(const ts_frame_header *h, const ts_kv *items, size_t n, uint8_t *out, size_t out_cap);
size_t ts_build_stats(const ts_frame_header *h, const ts_kv *items, size_t n, uint8_t *out, size_t out_cap);
size_t ts_build_result(const ts_frame_header *h, const ts_result *p, uint8_t *out, size_t out_cap);
size_t ts_build_session(const ts_frame_header *h, const ts_session *p, uint8_t *out, size_t out_cap);

ts_drop_reason ts_parse_hello(const ts_frame_view *v, ts_hello *out);
ts_drop_reason ts_parse_nair_slice(const ts_frame_view *v, ts_nair_slice *out);
ts_drop_reason ts_parse_early_label(const ts_frame_view *v, ts_early_label *out);
/* INPUT or LATENT: any length (0..1024) is valid. */
ts_drop_reason ts_parse_chunk(const ts_frame_view *v, const uint8_t **data, size_t *data_len);
ts_drop_reason ts_parse_rocoin_portion(const ts_frame_view *v, ts_rocoin_portion *out);
/* Any payload of at least TS_ADAPTIVE_OUTPUT_HEADER bytes is valid (any mask, any data length). */
ts_drop_reason ts_parse_adaptive_output(const ts_frame_view *v, ts_adaptive_output *out);
ts_drop_reason ts_parse_result(const ts_frame_view *v, ts_result *out);
ts_drop_reason ts_parse_session(const ts_frame_view *v, ts_session *out);
ts_drop_reason ts_parse_control(const ts_frame_view *v, ts_control *out);
/* CONTROL or STATS list: validates (length a multiple of 5) and gives the number of pairs. */
ts_drop_reason ts_parse_kv(const ts_frame_view *v, size_t *n_items);
/* Pair i of a list that ts_parse_kv accepted (i < n_items). */
ts_kv ts_kv_at(const ts_frame_view *v, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* TS_WIRE_H */
