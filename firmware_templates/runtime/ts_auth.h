/*
 * ts_auth.h -- authenticated frames (docs/wire-protocol.md, "Authenticated frames (version 2)"),
 * the device side: SHA-256 (FIPS 180-4), HMAC-SHA-256 (RFC 2104), the version 2 frame (seal, split,
 * verify), the 64-counter replay window and the device's session state machine.
 *
 * Part of tinysplit. Hand-written runtime file (not generated). SPDX-License-Identifier: see the
 * project's LICENSE.
 *
 * Plain C99 for Cortex-M0+ .. M55 and RV32: no heap, nothing from libc beyond string.h, every
 * multi-byte value read and written byte by byte (no unaligned access, any endianness), no 64-bit
 * division. Every state (hash, HMAC, window, session) is a struct the caller owns, so the stack stays
 * small. The reference behaviour is tinysplit.wire.auth (seal, split, verify, ReplayWindow,
 * DeviceSession); both pass tinysplit/wire/auth_vectors.json byte for byte.
 *
 * A version 2 frame is the 20-byte header (version = 2), the payload, a u32 counter, a 16-byte tag
 * and the CRC-32 over everything before it:
 *
 *     tag = HMAC-SHA-256(K, "TSA1" | direction | u32 device_nonce | u32 host_nonce
 *                           | header | payload | counter)[0..16)
 *
 * Splitting never trusts a length field beyond the buffer, never reads past `len`, and returns a drop
 * reason instead of failing. Tags are compared in constant time (no early exit).
 */
#ifndef TS_AUTH_H
#define TS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "ts_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TS_AUTH_VERSION 2u
#define TS_AUTH_KEY_SIZE 32u /* each device's own random key */
#define TS_AUTH_TAG_SIZE 16u /* HMAC-SHA-256 truncated to 128 bits (RFC 2104 section 5, RFC 4868) */
#define TS_AUTH_TRAILER_SIZE 20u /* u32 counter, tag */
#define TS_AUTH_MIN_FRAME (TS_MIN_FRAME + TS_AUTH_TRAILER_SIZE) /* 44 */
#define TS_AUTH_MAX_FRAME (TS_MAX_FRAME + TS_AUTH_TRAILER_SIZE) /* 1068 */
#define TS_AUTH_MAX_ENCODED TS_COBS_MAX_ENCODED(TS_AUTH_MAX_FRAME) /* 1073 */
#define TS_AUTH_WINDOW 64u /* replay window, in counters */
#define TS_AUTH_COUNTER_MAX 0xFFFFFFFFu
#define TS_AUTH_DEVICE_TO_HOST 0x01u /* direction byte of the tag */
#define TS_AUTH_HOST_TO_DEVICE 0x02u

/* Drop reasons of authenticated frames, numbered after the codec's 1..10 (ts_drop_reason) and the
 * device runtime's 11 bundle and 12 unexpected_type; STATS key 16 + r. Functions below return
 * TS_OK (0), a ts_drop_reason value or one of these. */
#define TS_AUTH_DROP_UNAUTHENTICATED 13u /* a version 1 frame where authentication is required */
#define TS_AUTH_DROP_AUTH 14u /* the tag does not verify */
#define TS_AUTH_DROP_REPLAY 15u /* counter seen before, 64 or more below the highest, or 0 */
#define TS_AUTH_DROP_SESSION 16u /* no session yet, or a SESSION for another boot */

/* "ok", the codec's names for 1..10, "unauthenticated", "auth", "replay", "session"; "?" otherwise
 * (11 and 12 are the runtime's, not named here). */
const char *ts_auth_reason_name(unsigned r);

/* ---- SHA-256 (FIPS 180-4) ---- */

#define TS_SHA256_SIZE 32u
#define TS_SHA256_BLOCK 64u

typedef struct {
    uint32_t state[8];
    uint32_t count_lo; /* bytes hashed so far, low and high 32 bits (no 64-bit arithmetic) */
    uint32_t count_hi;
    uint32_t fill; /* bytes waiting in block */
    uint8_t block[TS_SHA256_BLOCK];
} ts_sha256;

void ts_sha256_init(ts_sha256 *s);
/* Any number of calls with any chunk sizes; data may be NULL when n == 0. */
void ts_sha256_update(ts_sha256 *s, const uint8_t *data, size_t n);
/* Writes the 32-byte digest and wipes the state (init again to reuse it). */
void ts_sha256_final(ts_sha256 *s, uint8_t digest[TS_SHA256_SIZE]);

/* ---- HMAC-SHA-256 (RFC 2104) ---- */

typedef struct {
    ts_sha256 inner; /* keyed with K ^ ipad */
    ts_sha256 outer; /* keyed with K ^ opad */
} ts_hmac_sha256;

/* Any key length (a key longer than 64 bytes is hashed first, as RFC 2104 says). */
void ts_hmac_sha256_init(ts_hmac_sha256 *m, const uint8_t *key, size_t key_len);
void ts_hmac_sha256_update(ts_hmac_sha256 *m, const uint8_t *data, size_t n);
/* Writes the 32-byte MAC (truncate by using its first bytes) and wipes the state. */
void ts_hmac_sha256_final(ts_hmac_sha256 *m, uint8_t mac[TS_SHA256_SIZE]);

/* 1 when the n bytes at a and b are equal, 0 otherwise, in time that depends only on n. */
int ts_auth_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* ---- version 2 frames ---- */

/* The tag over `signed_bytes` (header, payload and counter: the frame's first 24 + payload_len
 * bytes) in this direction and session. `work` is scratch state (wiped afterwards). */
void ts_auth_tag(const uint8_t key[TS_AUTH_KEY_SIZE], uint8_t direction, uint32_t device_nonce,
                 uint32_t host_nonce, const uint8_t *signed_bytes, size_t n, ts_hmac_sha256 *work,
                 uint8_t tag[TS_AUTH_TAG_SIZE]);

/* Turn the plain (version 1) frame in buf[0..len) into its authenticated form in place: version 2,
 * then counter, tag and CRC after the payload (the old CRC is overwritten). Returns the new length,
 * len + 20, or 0 (buf untouched) when buf[0..len) is not one plain frame (magic, version 1,
 * payload_len <= 1024 and len == 24 + payload_len; the old CRC is not checked) or cap < len + 20. */
size_t ts_auth_seal(uint8_t *buf, size_t len, size_t cap, const uint8_t key[TS_AUTH_KEY_SIZE], uint8_t direction,
                    uint32_t device_nonce, uint32_t host_nonce, uint32_t counter, ts_hmac_sha256 *work);

/* A version 2 frame whose structure and CRC were checked, its tag not yet. Pointers point into the
 * split buffer. */
typedef struct {
    ts_frame_view v; /* header fields and payload, as ts_frame_decode gives them */
    uint32_t counter;
    const uint8_t *tag; /* TS_AUTH_TAG_SIZE bytes */
    const uint8_t *signed_bytes; /* header, payload, counter: what the tag covers */
    size_t signed_len; /* 24 + payload_len */
} ts_auth_frame;

/* Decode exactly one version 2 frame occupying buf[0..len). Checks, in the Python order (split()):
 * a frame with the right magic and version 1 is `unauthenticated` (another version than 1 or 2:
 * `version`) before anything else, then short (< 44 bytes), magic, length (payload_len <= 1024 and
 * len == 44 + payload_len exactly), crc, type, part. `out` is written only on TS_OK. */
unsigned ts_auth_split(const uint8_t *buf, size_t len, ts_auth_frame *out);

/* TS_OK when f's tag is the one `key` gives in this direction and session, TS_AUTH_DROP_AUTH
 * otherwise (compared in constant time). */
unsigned ts_auth_verify(const ts_auth_frame *f, const uint8_t key[TS_AUTH_KEY_SIZE], uint8_t direction,
                        uint32_t device_nonce, uint32_t host_nonce, ts_hmac_sha256 *work);

/* ---- the replay window (RFC 4303 section 3.4.3, RFC 6479) ---- */

typedef struct {
    uint32_t highest; /* the highest counter accepted (0: none yet) */
    uint32_t bits_lo; /* bit i of (bits_hi:bits_lo): counter highest - i was accepted, i = 0..63 */
    uint32_t bits_hi;
} ts_auth_window;

void ts_auth_window_reset(ts_auth_window *w);
/* TS_OK when `counter` may be accepted: above the highest, or within the 64 ending at it and not yet
 * seen; TS_AUTH_DROP_REPLAY otherwise (counter 0 always). Changes nothing. */
unsigned ts_auth_window_check(const ts_auth_window *w, uint32_t counter);
/* Record `counter` -- only after ts_auth_window_check said TS_OK and the tag verified. */
void ts_auth_window_accept(ts_auth_window *w, uint32_t counter);

/* ---- the device's session (tinysplit.wire.auth.DeviceSession) ----
 * 1. ts_auth_device_init with the key and a fresh non-zero boot nonce;
 * 2. ts_auth_device_hello seals the HELLO (host_nonce 0, counter = the device nonce);
 * 3. every received frame: ts_auth_split, then ts_auth_device_open. A SESSION that opens (TS_OK)
 *    started a new session (send counter and window reset): send a sealed STATS to confirm it;
 * 4. every frame to send: ts_auth_device_seal (0 before a session or once the counter is spent:
 *    then ts_auth_device_exhausted() says so, and the device says HELLO again). */

typedef struct {
    const uint8_t *key; /* TS_AUTH_KEY_SIZE bytes, e.g. in flash */
    uint32_t device_nonce; /* this boot's, never 0 */
    uint32_t host_nonce; /* the session's; 0: no session */
    uint32_t send_counter; /* the last counter sent in the session */
    uint32_t session_counter; /* the last SESSION counter accepted in this boot */
    ts_auth_window window; /* host -> device counters of the session */
    ts_hmac_sha256 work; /* scratch for the MAC */
} ts_auth_device;

/* Returns 0, or -1 (d unusable) when key is NULL or device_nonce is 0. */
int ts_auth_device_init(ts_auth_device *d, const uint8_t *key, uint32_t device_nonce);
/* Seal the plain HELLO frame in buf[0..len) (see ts_auth_seal). */
size_t ts_auth_device_hello(ts_auth_device *d, uint8_t *buf, size_t len, size_t cap);
/* Verify a split host -> device frame. SESSION: counter above the last SESSION's (else replay), tag
 * under (device nonce, 0) (auth), payload (payload), payload's device nonce ours and host nonce not 0
 * (session); then the session starts. Any other type: a session exists (session), counter in the
 * window (replay), tag under (device nonce, host nonce) (auth); then the window takes the counter.
 * Returns TS_OK or the reason; the state changes only on TS_OK. */
unsigned ts_auth_device_open(ts_auth_device *d, const ts_auth_frame *f);
/* Seal the plain frame in buf[0..len) under the session with the next counter; 0 (buf untouched)
 * when there is no session, the counter is spent, or ts_auth_seal refuses the frame. */
size_t ts_auth_device_seal(ts_auth_device *d, uint8_t *buf, size_t len, size_t cap);
/* 1 when the session's counters are spent (the device must say HELLO again), 0 otherwise. */
int ts_auth_device_exhausted(const ts_auth_device *d);

#ifdef __cplusplus
}
#endif

#endif /* TS_AUTH_H */
