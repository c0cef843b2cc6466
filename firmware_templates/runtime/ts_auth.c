/*
 * ts_auth.c -- authenticated frames, the device side (see ts_auth.h for the API and behaviour).
 *
 * Part of tinysplit. Hand-written runtime file (not generated). SPDX-License-Identifier: see the
 * project's LICENSE.
 *
 * SHA-256 follows FIPS 180-4 section 6.2 with the message schedule kept in a 16-word ring (64 bytes
 * of stack instead of 256); HMAC follows RFC 2104. The frame checks follow tinysplit.wire.auth.split
 * and DeviceSession exactly.
 */
#include "ts_auth.h"

#include <string.h>

/* ---- byte order helpers, byte by byte (alignment- and endian-safe) ---- */

static uint32_t rd_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void wr_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)((v >> 16) & 0xFFu);
    p[2] = (uint8_t)((v >> 8) & 0xFFu);
    p[3] = (uint8_t)(v & 0xFFu);
}

static uint16_t rd_le16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] | ((unsigned)p[1] << 8));
}

static uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void wr_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

/* Zero n bytes through a volatile pointer, so the compiler keeps the wipe of key material. */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *q = (volatile uint8_t *)p;
    while (n > 0u) {
        *q++ = 0u;
        n--;
    }
}

/* ---- reason names ---- */

const char *ts_auth_reason_name(unsigned r)
{
    switch (r) {
    case TS_AUTH_DROP_UNAUTHENTICATED: return "unauthenticated";
    case TS_AUTH_DROP_AUTH: return "auth";
    case TS_AUTH_DROP_REPLAY: return "replay";
    case TS_AUTH_DROP_SESSION: return "session";
    default: return r < (unsigned)TS_DROP_REASONS ? ts_drop_reason_name((ts_drop_reason)r) : "?";
    }
}

/* ---- SHA-256 ---- */

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32u - n)); /* n is 2..25 here: never a shift by 32 */
}

/* One 64-byte block into the state (FIPS 180-4 6.2.2). W_t for t >= 16 is computed in place in a
 * ring of 16 words: W_t = sigma1(W_t-2) + W_t-7 + sigma0(W_t-15) + W_t-16, and W_t-16 is the slot
 * t & 15 it replaces. */
static void sha256_block(uint32_t st[8], const uint8_t *p)
{
    uint32_t w[16];
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    unsigned t;
    for (t = 0; t < 64u; t++) {
        uint32_t t1, t2, wt;
        if (t < 16u) {
            wt = rd_be32(p + 4u * t);
        } else {
            uint32_t w2 = w[(t - 2u) & 15u], w15 = w[(t - 15u) & 15u];
            uint32_t s1 = rotr(w2, 17u) ^ rotr(w2, 19u) ^ (w2 >> 10);
            uint32_t s0 = rotr(w15, 7u) ^ rotr(w15, 18u) ^ (w15 >> 3);
            wt = s1 + w[(t - 7u) & 15u] + s0 + w[t & 15u];
        }
        w[t & 15u] = wt;
        t1 = h + (rotr(e, 6u) ^ rotr(e, 11u) ^ rotr(e, 25u)) + ((e & f) ^ (~e & g)) + sha256_k[t] + wt;
        t2 = (rotr(a, 2u) ^ rotr(a, 13u) ^ rotr(a, 22u)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
}

void ts_sha256_init(ts_sha256 *s)
{
    /* FIPS 180-4 5.3.3: the first 32 bits of the fractional parts of the square roots of the first 8 primes */
    s->state[0] = 0x6a09e667u;
    s->state[1] = 0xbb67ae85u;
    s->state[2] = 0x3c6ef372u;
    s->state[3] = 0xa54ff53au;
    s->state[4] = 0x510e527fu;
    s->state[5] = 0x9b05688cu;
    s->state[6] = 0x1f83d9abu;
    s->state[7] = 0x5be0cd19u;
    s->count_lo = 0u;
    s->count_hi = 0u;
    s->fill = 0u;
}

static void count_bytes(ts_sha256 *s, uint32_t n)
{
    s->count_lo += n;
    if (s->count_lo < n) {
        s->count_hi++;
    }
}

void ts_sha256_update(ts_sha256 *s, const uint8_t *data, size_t n)
{
    while (n > 0u) {
        uint32_t take;
        if (s->fill == 0u && n >= TS_SHA256_BLOCK) { /* whole blocks straight from the input */
            sha256_block(s->state, data);
            count_bytes(s, TS_SHA256_BLOCK);
            data += TS_SHA256_BLOCK;
            n -= TS_SHA256_BLOCK;
            continue;
        }
        take = TS_SHA256_BLOCK - s->fill;
        if ((size_t)take > n) {
            take = (uint32_t)n; /* n < 64 here */
        }
        memcpy(s->block + s->fill, data, take);
        s->fill += take;
        count_bytes(s, take);
        data += take;
        n -= take;
        if (s->fill == TS_SHA256_BLOCK) {
            sha256_block(s->state, s->block);
            s->fill = 0u;
        }
    }
}

void ts_sha256_final(ts_sha256 *s, uint8_t digest[TS_SHA256_SIZE])
{
    /* the message length in bits, a 64-bit big-endian number: (count_hi:count_lo) * 8 */
    uint32_t bits_hi = (s->count_hi << 3) | (s->count_lo >> 29);
    uint32_t bits_lo = s->count_lo << 3;
    unsigned i;
    s->block[s->fill++] = 0x80u;
    if (s->fill > TS_SHA256_BLOCK - 8u) { /* no room for the length: pad this block, then a new one */
        memset(s->block + s->fill, 0, TS_SHA256_BLOCK - s->fill);
        sha256_block(s->state, s->block);
        s->fill = 0u;
    }
    memset(s->block + s->fill, 0, TS_SHA256_BLOCK - 8u - s->fill);
    wr_be32(s->block + 56, bits_hi);
    wr_be32(s->block + 60, bits_lo);
    sha256_block(s->state, s->block);
    for (i = 0; i < 8u; i++) {
        wr_be32(digest + 4u * i, s->state[i]);
    }
    wipe(s, sizeof *s);
}

/* ---- HMAC-SHA-256 ---- */

/* A hash state that has absorbed one block: the (hashed) key, zero-padded to 64 bytes, xor pad. */
static void keyed(ts_sha256 *s, const uint8_t *key, size_t key_len, uint8_t pad)
{
    unsigned i;
    ts_sha256_init(s);
    for (i = 0; i < TS_SHA256_BLOCK; i++) {
        s->block[i] = (uint8_t)((i < key_len ? key[i] : 0u) ^ pad);
    }
    sha256_block(s->state, s->block);
    s->count_lo = TS_SHA256_BLOCK;
    wipe(s->block, sizeof s->block);
}

void ts_hmac_sha256_init(ts_hmac_sha256 *m, const uint8_t *key, size_t key_len)
{
    uint8_t hashed[TS_SHA256_SIZE];
    if (key_len > TS_SHA256_BLOCK) { /* RFC 2104 section 2: a key longer than a block is hashed first */
        ts_sha256_init(&m->inner);
        ts_sha256_update(&m->inner, key, key_len);
        ts_sha256_final(&m->inner, hashed);
        key = hashed;
        key_len = TS_SHA256_SIZE;
    }
    keyed(&m->inner, key, key_len, 0x36u);
    keyed(&m->outer, key, key_len, 0x5Cu);
    wipe(hashed, sizeof hashed);
}

void ts_hmac_sha256_update(ts_hmac_sha256 *m, const uint8_t *data, size_t n)
{
    ts_sha256_update(&m->inner, data, n);
}

void ts_hmac_sha256_final(ts_hmac_sha256 *m, uint8_t mac[TS_SHA256_SIZE])
{
    ts_sha256_final(&m->inner, mac); /* the inner digest goes through `mac`... */
    ts_sha256_update(&m->outer, mac, TS_SHA256_SIZE); /* ...which the outer hash copies before it is overwritten */
    ts_sha256_final(&m->outer, mac);
}

int ts_auth_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t diff = 0u; /* every byte is compared: no early exit */
    size_t i;
    for (i = 0; i < n; i++) {
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    }
    return (int)(1u & (((unsigned)diff - 1u) >> 8)); /* 1 exactly when diff == 0, without a branch */
}

/* ---- version 2 frames ---- */

void ts_auth_tag(const uint8_t key[TS_AUTH_KEY_SIZE], uint8_t direction, uint32_t device_nonce,
                 uint32_t host_nonce, const uint8_t *signed_bytes, size_t n, ts_hmac_sha256 *work,
                 uint8_t tag[TS_AUTH_TAG_SIZE])
{
    uint8_t prefix[13];
    uint8_t mac[TS_SHA256_SIZE];
    prefix[0] = (uint8_t)'T';
    prefix[1] = (uint8_t)'S';
    prefix[2] = (uint8_t)'A';
    prefix[3] = (uint8_t)'1';
    prefix[4] = direction;
    wr_le32(prefix + 5, device_nonce);
    wr_le32(prefix + 9, host_nonce);
    ts_hmac_sha256_init(work, key, TS_AUTH_KEY_SIZE);
    ts_hmac_sha256_update(work, prefix, sizeof prefix);
    ts_hmac_sha256_update(work, signed_bytes, n);
    ts_hmac_sha256_final(work, mac);
    memcpy(tag, mac, TS_AUTH_TAG_SIZE);
    wipe(mac, sizeof mac);
}

size_t ts_auth_seal(uint8_t *buf, size_t len, size_t cap, const uint8_t key[TS_AUTH_KEY_SIZE], uint8_t direction,
                    uint32_t device_nonce, uint32_t host_nonce, uint32_t counter, ts_hmac_sha256 *work)
{
    size_t plen, signed_len;
    if (buf == NULL || key == NULL || work == NULL || len < TS_MIN_FRAME || buf[0] != TS_WIRE_MAGIC0 ||
        buf[1] != TS_WIRE_MAGIC1 || buf[2] != TS_WIRE_VERSION) {
        return 0;
    }
    plen = rd_le16(buf + 18);
    if (plen > TS_MAX_PAYLOAD || len != TS_MIN_FRAME + plen || cap < len + TS_AUTH_TRAILER_SIZE) {
        return 0;
    }
    buf[2] = (uint8_t)TS_AUTH_VERSION;
    wr_le32(buf + TS_HEADER_SIZE + plen, counter); /* over the plain frame's CRC */
    signed_len = TS_HEADER_SIZE + plen + 4u;
    ts_auth_tag(key, direction, device_nonce, host_nonce, buf, signed_len, work, buf + signed_len);
    wr_le32(buf + signed_len + TS_AUTH_TAG_SIZE, ts_crc32(buf, signed_len + TS_AUTH_TAG_SIZE));
    return len + TS_AUTH_TRAILER_SIZE;
}

unsigned ts_auth_split(const uint8_t *buf, size_t len, ts_auth_frame *out)
{
    size_t plen, end;
    uint16_t pidx, pcount;
    if (buf == NULL) {
        return (unsigned)TS_DROP_SHORT;
    }
    if (len >= 3u && buf[0] == TS_WIRE_MAGIC0 && buf[1] == TS_WIRE_MAGIC1 && buf[2] != TS_AUTH_VERSION) {
        /* a plain frame says so first, whatever else is wrong with it */
        return buf[2] == TS_WIRE_VERSION ? TS_AUTH_DROP_UNAUTHENTICATED : (unsigned)TS_DROP_VERSION;
    }
    if (len < TS_AUTH_MIN_FRAME) {
        return (unsigned)TS_DROP_SHORT;
    }
    if (buf[0] != TS_WIRE_MAGIC0 || buf[1] != TS_WIRE_MAGIC1) {
        return (unsigned)TS_DROP_MAGIC;
    }
    plen = rd_le16(buf + 18);
    /* len >= 44 here, so len - TS_AUTH_MIN_FRAME cannot wrap; payload_len is never trusted beyond len */
    if (plen > TS_MAX_PAYLOAD || plen != len - TS_AUTH_MIN_FRAME) {
        return (unsigned)TS_DROP_LENGTH;
    }
    end = TS_HEADER_SIZE + plen + TS_AUTH_TRAILER_SIZE;
    if (rd_le32(buf + end) != ts_crc32(buf, end)) {
        return (unsigned)TS_DROP_CRC;
    }
    if (buf[3] < (uint8_t)TS_HELLO || buf[3] > (uint8_t)TS_SESSION) {
        return (unsigned)TS_DROP_TYPE;
    }
    pidx = rd_le16(buf + 14);
    pcount = rd_le16(buf + 16);
    if (pcount == 0u || pidx >= pcount) {
        return (unsigned)TS_DROP_PART;
    }
    if (out != NULL) {
        out->v.h.type = buf[3];
        out->v.h.device_id = rd_le16(buf + 4);
        out->v.h.bundle_id = rd_le32(buf + 6);
        out->v.h.seq = rd_le32(buf + 10);
        out->v.h.part_index = pidx;
        out->v.h.part_count = pcount;
        out->v.payload = buf + TS_HEADER_SIZE;
        out->v.payload_len = plen;
        out->counter = rd_le32(buf + TS_HEADER_SIZE + plen);
        out->signed_bytes = buf;
        out->signed_len = TS_HEADER_SIZE + plen + 4u;
        out->tag = buf + out->signed_len;
    }
    return TS_OK;
}

unsigned ts_auth_verify(const ts_auth_frame *f, const uint8_t key[TS_AUTH_KEY_SIZE], uint8_t direction,
                        uint32_t device_nonce, uint32_t host_nonce, ts_hmac_sha256 *work)
{
    uint8_t want[TS_AUTH_TAG_SIZE];
    int same;
    if (f == NULL || key == NULL || work == NULL) {
        return TS_AUTH_DROP_AUTH;
    }
    ts_auth_tag(key, direction, device_nonce, host_nonce, f->signed_bytes, f->signed_len, work, want);
    same = ts_auth_equal(want, f->tag, TS_AUTH_TAG_SIZE);
    wipe(want, sizeof want);
    return same ? (unsigned)TS_OK : TS_AUTH_DROP_AUTH;
}

/* ---- the replay window: a 64-bit bitmap in two words (no 64-bit shifts, no helper calls) ---- */

void ts_auth_window_reset(ts_auth_window *w)
{
    w->highest = 0u;
    w->bits_lo = 0u;
    w->bits_hi = 0u;
}

unsigned ts_auth_window_check(const ts_auth_window *w, uint32_t counter)
{
    uint32_t back, bit;
    if (counter == 0u) {
        return TS_AUTH_DROP_REPLAY;
    }
    if (counter > w->highest) {
        return TS_OK;
    }
    back = w->highest - counter;
    if (back >= TS_AUTH_WINDOW) {
        return TS_AUTH_DROP_REPLAY;
    }
    bit = back < 32u ? (w->bits_lo >> back) & 1u : (w->bits_hi >> (back - 32u)) & 1u;
    return bit != 0u ? TS_AUTH_DROP_REPLAY : (unsigned)TS_OK;
}

void ts_auth_window_accept(ts_auth_window *w, uint32_t counter)
{
    if (counter > w->highest) {
        uint32_t shift = counter - w->highest;
        if (shift >= TS_AUTH_WINDOW) {
            w->bits_hi = 0u;
            w->bits_lo = 0u;
        } else if (shift >= 32u) {
            w->bits_hi = w->bits_lo << (shift - 32u);
            w->bits_lo = 0u;
        } else {
            w->bits_hi = (w->bits_hi << shift) | (w->bits_lo >> (32u - shift));
            w->bits_lo <<= shift;
        }
        w->bits_lo |= 1u;
        w->highest = counter;
    } else {
        uint32_t back = w->highest - counter;
        if (back < 32u) {
            w->bits_lo |= 1u << back;
        } else if (back < TS_AUTH_WINDOW) {
            w->bits_hi |= 1u << (back - 32u);
        }
    }
}

/* ---- the device's session ---- */

int ts_auth_device_init(ts_auth_device *d, const uint8_t *key, uint32_t device_nonce)
{
    memset(d, 0, sizeof *d);
    if (key == NULL || device_nonce == 0u) {
        return -1;
    }
    d->key = key;
    d->device_nonce = device_nonce;
    ts_auth_window_reset(&d->window);
    return 0;
}

size_t ts_auth_device_hello(ts_auth_device *d, uint8_t *buf, size_t len, size_t cap)
{
    if (d->key == NULL) {
        return 0;
    }
    return ts_auth_seal(buf, len, cap, d->key, (uint8_t)TS_AUTH_DEVICE_TO_HOST, d->device_nonce, 0u,
                        d->device_nonce, &d->work);
}

unsigned ts_auth_device_open(ts_auth_device *d, const ts_auth_frame *f)
{
    unsigned r;
    if (d->key == NULL) {
        return TS_AUTH_DROP_SESSION;
    }
    if (f->v.h.type == (uint8_t)TS_SESSION) {
        ts_session p;
        if (f->counter <= d->session_counter) {
            return TS_AUTH_DROP_REPLAY;
        }
        r = ts_auth_verify(f, d->key, (uint8_t)TS_AUTH_HOST_TO_DEVICE, d->device_nonce, 0u, &d->work);
        if (r != TS_OK) {
            return r;
        }
        if (ts_parse_session(&f->v, &p) != TS_OK) {
            return (unsigned)TS_DROP_PAYLOAD;
        }
        if (p.device_nonce != d->device_nonce || p.host_nonce == 0u) {
            return TS_AUTH_DROP_SESSION;
        }
        d->session_counter = f->counter;
        d->host_nonce = p.host_nonce;
        d->send_counter = 0u;
        ts_auth_window_reset(&d->window);
        return TS_OK;
    }
    if (d->host_nonce == 0u) {
        return TS_AUTH_DROP_SESSION;
    }
    r = ts_auth_window_check(&d->window, f->counter);
    if (r != TS_OK) {
        return r;
    }
    r = ts_auth_verify(f, d->key, (uint8_t)TS_AUTH_HOST_TO_DEVICE, d->device_nonce, d->host_nonce, &d->work);
    if (r != TS_OK) {
        return r;
    }
    ts_auth_window_accept(&d->window, f->counter);
    return TS_OK;
}

size_t ts_auth_device_seal(ts_auth_device *d, uint8_t *buf, size_t len, size_t cap)
{
    size_t n;
    if (d->key == NULL || d->host_nonce == 0u || d->send_counter == TS_AUTH_COUNTER_MAX) {
        return 0;
    }
    n = ts_auth_seal(buf, len, cap, d->key, (uint8_t)TS_AUTH_DEVICE_TO_HOST, d->device_nonce, d->host_nonce,
                     d->send_counter + 1u, &d->work);
    if (n != 0u) {
        d->send_counter++;
    }
    return n;
}

int ts_auth_device_exhausted(const ts_auth_device *d)
{
    return d->host_nonce != 0u && d->send_counter == TS_AUTH_COUNTER_MAX;
}
