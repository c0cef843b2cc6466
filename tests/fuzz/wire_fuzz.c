/*
 * wire_fuzz.c -- a bounded, seeded fuzz driver for the C wire codec (firmware_templates/runtime/ts_wire.c).
 * Part of tinysplit (test support, host only; uses libc freely, unlike the codec).
 *
 * Build (tests/test_wire_c.py does this):
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
 *       -I firmware_templates/runtime tests/fuzz/wire_fuzz.c firmware_templates/runtime/ts_wire.c -o wire_fuzz
 * Run:
 *   wire_fuzz SEED MAX_ITERATIONS MAX_SECONDS [SEED_FILE]
 * SEED_FILE holds one hex-encoded frame per line (e.g. the frames of tinysplit/wire/vectors.json);
 * frames built with the codec's own builders are always added to the corpus.
 *
 * Inputs: mutations of corpus frames (bit flips, byte sets, truncation, extension, splicing, range
 * insert/delete, header fields set to edge values, CRC repaired so later checks are reached), pure
 * random byte strings of random lengths, and random well-formed header/payload pairs. Each input is
 * copied into a heap block of exactly its size (so ASan sees any over-read) and fed to
 * ts_frame_decode, every payload parser, the COBS encoder/decoder and two streaming receivers.
 *
 * Invariants (a violation prints the input and aborts):
 *   - the decoder's verdict equals an independent reference decoder's (CRC computed bitwise),
 *     so it never reports OK for a frame whose CRC is wrong;
 *   - an accepted frame re-encodes to exactly the input bytes; decode(encode(x)) == x;
 *   - a payload a parser accepts is rebuilt byte for byte by the matching builder;
 *   - COBS output holds no 0x00, fits TS_COBS_MAX_ENCODED, matches a reference decoder round trip;
 *   - a receiver never holds more than its buffer, returns exactly the frames it was sent, and
 *     counts an over-long run as oversize.
 * On success the last line is
 *   "wire_fuzz: iterations=N seconds=S rate=R/s seed=X ..." and the exit status is 0.
 *
 * -DWIRE_FUZZ_INJECT_OOB builds a deliberately broken variant that reads one byte past the input
 * whenever the decoder reports a `length` drop: the test suite checks that the sanitizer catches it.
 * -DWIRE_FUZZ_INJECT_BLIND_REFERENCE makes the reference decoder skip its CRC check: the test suite
 * checks that the verdict comparison then fails (the invariants are live, not vacuous).
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_wire.h"

/* ---- PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t below(size_t n) /* uniform-ish in [0, n), n > 0 */
{
    return (size_t)(rnd() % (uint64_t)n);
}

/* ---- failure reporting ---- */

static const uint8_t *cur_input;
static size_t cur_len;
static unsigned long long iteration;

static void fail(const char *what)
{
    size_t i;
    fprintf(stderr, "INVARIANT FAILED at iteration %llu: %s\ninput (%lu bytes): ", iteration, what,
            (unsigned long)cur_len);
    for (i = 0; i < cur_len && cur_input; i++) {
        fprintf(stderr, "%02x", cur_input[i]);
    }
    fprintf(stderr, "\n");
    abort();
}

#define REQUIRE(cond, what) do { if (!(cond)) fail(what); } while (0)

/* ---- independent references ---- */

static uint32_t ref_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        }
    }
    return ~c;
}

static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | ((unsigned)p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static ts_drop_reason ref_decode(const uint8_t *b, size_t n)
{
    size_t plen;
    if (n < 24) return TS_DROP_SHORT;
    if (b[0] != 0x54 || b[1] != 0x53) return TS_DROP_MAGIC;
    if (b[2] != 1) return TS_DROP_VERSION;
    plen = le16(b + 18);
    if (plen > 1024 || 24 + plen != n) return TS_DROP_LENGTH;
#ifndef WIRE_FUZZ_INJECT_BLIND_REFERENCE /* the broken variant: a reference that ignores the CRC */
    if (le32(b + 20 + plen) != ref_crc32(b, 20 + plen)) return TS_DROP_CRC;
#endif
    if (b[3] < 1 || b[3] > 11) return TS_DROP_TYPE;
    if (le16(b + 16) == 0 || le16(b + 14) >= le16(b + 16)) return TS_DROP_PART;
    return TS_OK;
}

/* The Python cobs_decode, not in place. Returns -1 when malformed. */
static long ref_cobs_decode(const uint8_t *enc, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0, k;
    while (i < n) {
        size_t code = enc[i], end = i + code;
        if (code == 0 || end > n) return -1;
        for (k = i + 1; k < end; k++) {
            if (enc[k] == 0) return -1;
            out[o++] = enc[k];
        }
        i = end;
        if (code != 0xFF && i < n) out[o++] = 0;
    }
    return (long)o;
}

/* ---- corpus ---- */

#define MAX_CORPUS 256
#define MAX_INPUT 2200
static uint8_t *corpus[MAX_CORPUS];
static size_t corpus_len[MAX_CORPUS];
static size_t n_corpus;

static void corpus_add(const uint8_t *b, size_t n)
{
    if (n_corpus >= MAX_CORPUS || n > MAX_INPUT) return;
    corpus[n_corpus] = malloc(n ? n : 1);
    if (!corpus[n_corpus]) exit(3);
    memcpy(corpus[n_corpus], b, n);
    corpus_len[n_corpus++] = n;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void load_seed_file(const char *path)
{
    static char line[8 * MAX_INPUT];
    static uint8_t b[MAX_INPUT];
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        size_t n = 0;
        while (n < MAX_INPUT && hexval((unsigned char)line[2 * n]) >= 0 && hexval((unsigned char)line[2 * n + 1]) >= 0) {
            b[n] = (uint8_t)(hexval((unsigned char)line[2 * n]) * 16 + hexval((unsigned char)line[2 * n + 1]));
            n++;
        }
        corpus_add(b, n);
    }
    fclose(f);
}

static ts_frame_header random_header(uint8_t type)
{
    ts_frame_header h;
    h.type = type;
    h.device_id = (uint16_t)rnd();
    h.bundle_id = (uint32_t)rnd();
    h.seq = (uint32_t)rnd();
    h.part_count = (uint16_t)(1u + below(rnd() & 1 ? 3 : 0xFFFF));
    h.part_index = (uint16_t)below(h.part_count);
    return h;
}

static void fill(uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

/* A valid frame of a random type built with the codec's builders; returns its length. */
static size_t build_random(uint8_t *out, size_t cap)
{
    static uint8_t data[TS_MAX_PAYLOAD];
    uint8_t t = (uint8_t)(1 + below(11));
    ts_frame_header h = random_header(t);
    size_t n = below(TS_MAX_PAYLOAD + 1);
    fill(data, sizeof data);
    switch (t) {
    case TS_HELLO: {
        char name[64];
        ts_hello p;
        size_t i, nl = below(65);
        for (i = 0; i < nl; i++) name[i] = (char)(rnd() & 0x7F);
        p.name = name;
        p.name_len = (uint8_t)nl;
        p.capabilities = (uint32_t)rnd();
        p.input_bytes = (uint32_t)rnd();
        p.output_bytes = (uint32_t)rnd();
        p.units_total = (uint16_t)rnd();
        p.unit_bytes = (uint16_t)rnd();
        return ts_build_hello(&h, &p, out, cap);
    }
    case TS_NAIR_SLICE: {
        ts_nair_slice p;
        p.units_total = (uint16_t)(1 + below(0xFFFF));
        p.unit_count = (uint16_t)(1 + below(p.units_total));
        p.unit_start = (uint16_t)below((size_t)p.units_total - p.unit_count + 1);
        p.data = data;
        p.data_len = below(TS_MAX_PAYLOAD - 6 + 1);
        return ts_build_nair_slice(&h, &p, out, cap);
    }
    case TS_EARLY_LABEL: {
        ts_early_label p;
        p.label = (uint16_t)rnd();
        p.confidence = (uint8_t)rnd();
        return ts_build_early_label(&h, &p, out, cap);
    }
    case TS_ROCOIN_PORTION: {
        ts_rocoin_portion p;
        p.partitions_total = (uint16_t)(1 + below(0xFFFF));
        p.partition = (uint16_t)below(p.partitions_total);
        p.data = data;
        p.data_len = below(TS_MAX_PAYLOAD - 4 + 1);
        return ts_build_rocoin_portion(&h, &p, out, cap);
    }
    case TS_RESULT: {
        ts_result p;
        p.label = (uint16_t)rnd();
        p.units_used = (uint16_t)rnd();
        p.flags = (uint8_t)rnd();
        return ts_build_result(&h, &p, out, cap);
    }
    case TS_ADAPTIVE_OUTPUT: {
        ts_adaptive_output p;
        p.skip_mask = (uint32_t)rnd();
        p.instructions = (uint32_t)rnd();
        p.data = data;
        p.data_len = below(TS_ADAPTIVE_OUTPUT_CHUNK + 1);
        return ts_build_adaptive_output(&h, &p, out, cap);
    }
    case TS_SESSION: {
        ts_session p;
        p.device_nonce = (uint32_t)rnd();
        p.host_nonce = (uint32_t)rnd();
        return ts_build_session(&h, &p, out, cap);
    }
    case TS_CONTROL:
    case TS_STATS: {
        ts_kv items[204];
        size_t i, k = below(rnd() & 1 ? 8 : 205);
        for (i = 0; i < k; i++) {
            items[i].key = (uint8_t)(rnd() & 1 ? 1 + below(5) : below(256));
            items[i].value = (uint32_t)rnd();
        }
        return t == TS_STATS ? ts_build_stats(&h, items, k, out, cap) : ts_build_kv(&h, items, k, out, cap);
    }
    default: /* INPUT, LATENT */
        return ts_build_chunk(&h, data, n, out, cap);
    }
}

/* ---- mutation ---- */

static void fix_crc(uint8_t *b, size_t n)
{
    if (n >= 24) {
        uint32_t c = ref_crc32(b, n - 4);
        b[n - 4] = (uint8_t)c;
        b[n - 3] = (uint8_t)(c >> 8);
        b[n - 2] = (uint8_t)(c >> 16);
        b[n - 1] = (uint8_t)(c >> 24);
    }
}

static size_t mutate(uint8_t *b, size_t n)
{
    int rounds = 1 + (int)below(4), r;
    for (r = 0; r < rounds; r++) {
        switch (below(10)) {
        case 0: /* bit flip */
            if (n) b[below(n)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* byte set, often in the header */
            if (n) b[below(rnd() & 1 ? (n < 24 ? n : 24) : n)] = (uint8_t)(rnd() & 1 ? rnd() : (rnd() & 1 ? 0 : 0xFF));
            break;
        case 2: /* truncation */
            n = below(n + 1);
            break;
        case 3: { /* extension */
            size_t k = 1 + below(rnd() & 1 ? 8 : 600);
            if (n + k > MAX_INPUT) k = MAX_INPUT - n;
            fill(b + n, k);
            n += k;
            break;
        }
        case 4: { /* splice: a prefix of this, then a piece of another corpus entry */
            size_t j = below(n_corpus), at = below(n + 1), from, k;
            from = below(corpus_len[j] + 1);
            k = corpus_len[j] - from;
            if (at + k > MAX_INPUT) k = MAX_INPUT - at;
            memcpy(b + at, corpus[j] + from, k);
            n = at + k;
            break;
        }
        case 5: { /* delete a range */
            size_t at = below(n + 1), k = below(n - at + 1);
            memmove(b + at, b + at + k, n - at - k);
            n -= k;
            break;
        }
        case 6: { /* insert a random range */
            size_t at = below(n + 1), k = 1 + below(16);
            if (n + k > MAX_INPUT) break;
            memmove(b + at + k, b + at, n - at);
            fill(b + at, k);
            n += k;
            break;
        }
        case 7: /* a 16-bit header field set to an edge value */
            if (n >= 20) {
                static const unsigned edge[] = {0, 1, 2, 0xFF, 0x100, 1023, 1024, 1025, 0x7FFF, 0xFFFE, 0xFFFF};
                size_t off = 4 + 2 * below(8);
                unsigned v = rnd() & 1 ? edge[below(sizeof edge / sizeof edge[0])] : (unsigned)(rnd() & 0xFFFF);
                if (off == 18 && (rnd() & 1)) v = (unsigned)(n >= 24 ? n - 24 : 0); /* consistent length */
                b[off] = (uint8_t)v;
                b[off + 1] = (uint8_t)(v >> 8);
            }
            break;
        case 8: /* type byte */
            if (n >= 4) b[3] = (uint8_t)(rnd() & 1 ? 1 + below(11) : rnd());
            break;
        default: /* payload byte inside a valid frame's payload */
            if (n > 24) b[20 + below(n - 24)] = (uint8_t)rnd();
            break;
        }
    }
    if (rnd() % 3 != 0) fix_crc(b, n); /* reach the type/part/payload checks */
    return n;
}

/* ---- the checks ---- */

static unsigned long long reason_seen[TS_DROP_REASONS], payload_ok, payload_bad, rx_frames, rx_drops_total;

static uint8_t *dup_exact(const uint8_t *b, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p) exit(3);
    memcpy(p, b, n);
    return p;
}

/* Every parser on a payload given as a frame view of type t; accepted payloads must rebuild. */
static void check_parsers(const ts_frame_view *v)
{
    static uint8_t out[TS_MAX_FRAME + 16];
    ts_hello he;
    ts_nair_slice ns;
    ts_early_label el;
    ts_rocoin_portion rp;
    ts_result re;
    ts_adaptive_output ao;
    ts_session se;
    ts_control co;
    const uint8_t *d;
    size_t n = 0, m = 0, i;
    int ok = 1;
    ts_drop_reason r = TS_DROP_TYPE;
    switch (v->h.type) {
    case TS_HELLO:
        if ((r = ts_parse_hello(v, &he)) == TS_OK) {
            REQUIRE(he.name_len <= v->payload_len, "hello name within payload");
            m = ts_build_hello(&v->h, &he, out, sizeof out);
            ok = he.name_len <= TS_HELLO_MAX_NAME ? m != 0 : m == 0; /* the builder keeps Python's 64 limit */
            REQUIRE(ok, "hello builder verdict");
        }
        break;
    case TS_INPUT:
    case TS_LATENT:
        if ((r = ts_parse_chunk(v, &d, &n)) == TS_OK) {
            REQUIRE(d == v->payload && n == v->payload_len, "chunk is the payload");
            m = ts_build_chunk(&v->h, d, n, out, sizeof out);
        }
        break;
    case TS_NAIR_SLICE:
        if ((r = ts_parse_nair_slice(v, &ns)) == TS_OK) {
            REQUIRE(ns.unit_count > 0 && (uint32_t)ns.unit_start + ns.unit_count <= ns.units_total, "slice units");
            REQUIRE(ns.data_len + 6 == v->payload_len, "slice data length");
            m = ts_build_nair_slice(&v->h, &ns, out, sizeof out);
        }
        break;
    case TS_EARLY_LABEL:
        if ((r = ts_parse_early_label(v, &el)) == TS_OK) m = ts_build_early_label(&v->h, &el, out, sizeof out);
        break;
    case TS_ROCOIN_PORTION:
        if ((r = ts_parse_rocoin_portion(v, &rp)) == TS_OK) {
            REQUIRE(rp.partition < rp.partitions_total && rp.data_len + 4 == v->payload_len, "portion fields");
            m = ts_build_rocoin_portion(&v->h, &rp, out, sizeof out);
        }
        break;
    case TS_RESULT:
        if ((r = ts_parse_result(v, &re)) == TS_OK) m = ts_build_result(&v->h, &re, out, sizeof out);
        break;
    case TS_ADAPTIVE_OUTPUT:
        if ((r = ts_parse_adaptive_output(v, &ao)) == TS_OK) {
            REQUIRE(ao.data == v->payload + 8 && ao.data_len + 8 == v->payload_len, "adaptive output fields");
            m = ts_build_adaptive_output(&v->h, &ao, out, sizeof out);
        }
        break;
    case TS_SESSION:
        if ((r = ts_parse_session(v, &se)) == TS_OK) m = ts_build_session(&v->h, &se, out, sizeof out);
        break;
    case TS_CONTROL:
        r = ts_parse_control(v, &co);
        REQUIRE(r == ts_parse_kv(v, &n), "control and kv verdicts agree");
        if (r == TS_OK) {
            /* reference: first occurrence of each known key */
            uint8_t seen = 0;
            unsigned unknown = 0;
            for (i = 0; i < n; i++) {
                ts_kv kv = ts_kv_at(v, i);
                uint32_t want;
                if (kv.key < 1 || kv.key > 4) {
                    unknown++;
                    continue;
                }
                if (seen & (1u << kv.key)) continue;
                seen = (uint8_t)(seen | (1u << kv.key));
                want = kv.key == 1 ? co.budget_units : kv.key == 2 ? co.budget_bytes : kv.key == 3 ? co.threshold : co.skip_mask;
                REQUIRE(want == kv.value, "control value is the first occurrence");
            }
            REQUIRE(seen == co.present && unknown == co.unknown_keys, "control present/unknown");
        }
        /* fall through: a CONTROL list also rebuilds as a list */
        /* FALLTHROUGH */
    case TS_STATS:
        if ((r = ts_parse_kv(v, &n)) == TS_OK) {
            static ts_kv items[204];
            REQUIRE(n * 5 == v->payload_len && n <= 204, "kv count");
            for (i = 0; i < n; i++) items[i] = ts_kv_at(v, i);
            m = ts_build_kv(&v->h, items, n, out, sizeof out);
        }
        break;
    default:
        REQUIRE(ts_payload_check(v) == TS_DROP_TYPE, "unknown type in payload check");
        return;
    }
    REQUIRE(r == TS_OK || r == TS_DROP_PAYLOAD, "parser returns ok or payload");
    REQUIRE(ts_payload_check(v) == r, "payload check agrees with the parser");
    if (r == TS_OK) {
        payload_ok++;
        if (ok && !(v->h.type == TS_HELLO && he.name_len > TS_HELLO_MAX_NAME)) {
            ts_frame_view w;
            REQUIRE(m == TS_MIN_FRAME + v->payload_len, "rebuilt length");
            REQUIRE(ts_frame_decode(out, m, &w) == TS_OK, "rebuilt frame decodes");
            REQUIRE(w.h.type == v->h.type && w.h.seq == v->h.seq && w.h.device_id == v->h.device_id &&
                    w.h.bundle_id == v->h.bundle_id && w.h.part_index == v->h.part_index &&
                    w.h.part_count == v->h.part_count, "rebuilt header");
            REQUIRE(memcmp(w.payload, v->payload, v->payload_len) == 0, "parse + build reproduces the payload");
        }
    } else {
        payload_bad++;
    }
}

static ts_cobs_rx stream_rx;
static uint8_t *stream_buf;
static size_t stream_cap;
static ts_drop_counters stream_drops;

static void check_input(const uint8_t *in, size_t n)
{
    static uint8_t out[TS_MAX_FRAME + 8], dec[MAX_INPUT + 8];
    uint8_t *b = dup_exact(in, n), *enc, *rxbuf;
    ts_frame_view v;
    ts_drop_reason r, ref;
    size_t e, k, cap, frames = 0;
    ts_cobs_rx rx;
    ts_drop_counters drops;
    cur_input = b;
    cur_len = n;

    /* 1. frame decoder vs the reference, and re-encoding */
    r = ts_frame_decode(b, n, &v);
    ref = ref_decode(b, n);
#ifdef WIRE_FUZZ_INJECT_OOB
    if (r == TS_DROP_LENGTH) {
        volatile uint8_t past = b[n]; /* deliberately out of bounds: the sanitizer must stop us */
        (void)past;
    }
#endif
    REQUIRE((unsigned)r < (unsigned)TS_DROP_REASONS, "reason in range");
    REQUIRE(r == ref, "decoder verdict equals the reference decoder's");
    reason_seen[r]++;
    if (r == TS_OK) {
        REQUIRE(le32(b + n - 4) == ref_crc32(b, n - 4), "OK frame has a correct CRC");
        REQUIRE(v.payload == b + 20 && v.payload_len == n - 24, "payload view");
        e = ts_frame_encode(&v.h, v.payload, v.payload_len, out, sizeof out);
        REQUIRE(e == n && memcmp(out, b, n) == 0, "encode(decode(x)) == x");
        check_parsers(&v);
    }

    /* 2. every parser on the raw input as a payload of every type */
    if (n <= TS_MAX_PAYLOAD) {
        ts_frame_view p;
        uint8_t t;
        memset(&p, 0, sizeof p);
        p.h.part_count = 1;
        p.payload = b;
        p.payload_len = n;
        for (t = 0; t <= 11; t++) {
            p.h.type = t;
            check_parsers(&p);
        }
    }

    /* 3. COBS round trip through a receiver whose buffer is exactly `cap` bytes */
    enc = malloc(TS_COBS_MAX_ENCODED(n) + 1);
    if (!enc) exit(3);
    e = ts_cobs_encode(b, n, enc, TS_COBS_MAX_ENCODED(n));
    REQUIRE(e >= 1 && e <= TS_COBS_MAX_ENCODED(n), "cobs length bound");
    REQUIRE(memchr(enc, 0, e) == NULL, "cobs output has no zero");
    REQUIRE(ts_cobs_encode(b, n, out, e - 1 < sizeof out ? e - 1 : 0) == 0, "cobs refuses a short buffer");
    REQUIRE(ref_cobs_decode(enc, e, dec) == (long)n && memcmp(dec, b, n) == 0, "reference decodes cobs");
    enc[e] = 0;
    cap = rnd() & 3 ? TS_MAX_ENCODED : 1 + below(TS_MAX_ENCODED + 64);
    rxbuf = malloc(cap);
    if (!rxbuf) exit(3);
    ts_drops_reset(&drops);
    ts_cobs_rx_init(&rx, rxbuf, cap, &drops);
    for (k = 0; k <= e; k++) {
        const uint8_t *f;
        size_t fl;
        if (ts_cobs_rx_push(&rx, enc[k], &f, &fl)) {
            frames++;
            REQUIRE(fl == n && memcmp(f, b, n) == 0, "receiver returns the frame sent");
        }
        REQUIRE(rx.len <= rx.cap, "receiver within its buffer");
    }
    if (e <= cap) {
        REQUIRE(frames == 1 && ts_drops_total(&drops) == 0, "receiver got the frame");
    } else {
        REQUIRE(frames == 0 && drops.count[TS_DROP_OVERSIZE] == 1 && ts_drops_total(&drops) == 1,
                "over-long run dropped as oversize");
    }
    free(rxbuf);
    free(enc);

    /* 4. raw bytes through a long-lived receiver; compare with the reference COBS decoder */
    for (k = 0; k < n; k++) {
        const uint8_t *f;
        size_t fl;
        if (ts_cobs_rx_push(&stream_rx, b[k], &f, &fl)) {
            ts_frame_view w;
            rx_frames++;
            REQUIRE(fl <= stream_cap, "received frame within the buffer");
            (void)ts_frame_decode(f, fl, &w);
        }
        REQUIRE(stream_rx.len <= stream_rx.cap, "stream receiver within its buffer");
    }

    /* 5. in-place COBS decoding of the raw input equals the reference (Python) decoder */
    {
        long want = ref_cobs_decode(b, n, dec);
        uint8_t *c = dup_exact(b, n);
        size_t got = 0;
        int okc = ts_cobs_decode_inplace(c, n, &got);
        REQUIRE(okc == (want >= 0), "cobs decode verdict");
        REQUIRE(!okc || (got == (size_t)want && memcmp(c, dec, got) == 0), "cobs decode bytes");
        free(c);
    }
    free(b);
    cur_input = NULL;
}

/* decode(encode(x)) == x for a random header and payload (any type byte, any part fields) */
static void check_encode_roundtrip(void)
{
    static uint8_t payload[TS_MAX_PAYLOAD + 2], out[TS_MAX_FRAME + 8];
    ts_frame_header h;
    ts_frame_view v;
    size_t n = below(rnd() & 1 ? TS_MAX_PAYLOAD + 2 : 40), m;
    uint8_t *exact;
    h.type = (uint8_t)rnd();
    h.device_id = (uint16_t)rnd();
    h.bundle_id = (uint32_t)rnd();
    h.seq = (uint32_t)rnd();
    h.part_count = (uint16_t)(rnd() & 7 ? 1 + below(rnd() & 1 ? 4 : 0xFFFF) : 0);
    h.part_index = (uint16_t)(rnd() & 7 ? below(h.part_count ? h.part_count : 1) : rnd());
    fill(payload, n);
    m = ts_frame_encode(&h, payload, n, out, rnd() & 7 ? sizeof out : below(TS_MAX_FRAME + 8));
    if (n > TS_MAX_PAYLOAD || h.part_index >= h.part_count) {
        REQUIRE(m == 0, "encoder refuses bad payload/part");
        return;
    }
    if (m == 0) return; /* out too small */
    exact = dup_exact(out, m);
    cur_input = exact;
    cur_len = m;
    REQUIRE(m == n + 24, "encoded length");
    REQUIRE(ts_frame_decode(exact, m, &v) == (h.type >= 1 && h.type <= 11 ? TS_OK : TS_DROP_TYPE), "decode(encode)");
    if (h.type >= 1 && h.type <= 11) {
        REQUIRE(v.h.type == h.type && v.h.device_id == h.device_id && v.h.bundle_id == h.bundle_id &&
                v.h.seq == h.seq && v.h.part_index == h.part_index && v.h.part_count == h.part_count,
                "decode(encode) header");
        REQUIRE(v.payload_len == n && memcmp(v.payload, payload, n) == 0, "decode(encode) payload");
    }
    free(exact);
    cur_input = NULL;
}

int main(int argc, char **argv)
{
    static uint8_t buf[MAX_INPUT + 16];
    unsigned long long seed, max_iters, i;
    double max_seconds, elapsed;
    struct timespec t0, t1;
    unsigned r;
    if (argc < 4) {
        fprintf(stderr, "usage: %s SEED MAX_ITERATIONS MAX_SECONDS [SEED_FILE]\n", argv[0]);
        return 2;
    }
    seed = strtoull(argv[1], NULL, 0);
    max_iters = strtoull(argv[2], NULL, 0);
    max_seconds = strtod(argv[3], NULL);
    rng_state = seed;
    if (argc > 4) load_seed_file(argv[4]);
    for (i = 0; i < 64; i++) {
        size_t n = build_random(buf, sizeof buf);
        if (n == 0) {
            fprintf(stderr, "a builder refused valid arguments\n");
            return 1;
        }
        corpus_add(buf, n);
    }
    stream_cap = 64 + below(TS_MAX_ENCODED);
    stream_buf = malloc(stream_cap);
    if (!stream_buf) return 3;
    ts_drops_reset(&stream_drops);
    ts_cobs_rx_init(&stream_rx, stream_buf, stream_cap, &stream_drops);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (iteration = 0; iteration < max_iters; iteration++) {
        size_t n;
        if ((iteration & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
            if (elapsed >= max_seconds) break;
        }
        switch (below(8)) {
        case 0: /* pure random input */
            n = below(rnd() & 1 ? 64 : MAX_INPUT);
            fill(buf, n);
            break;
        case 1: /* a fresh built frame, mutated or not */
            n = build_random(buf, sizeof buf);
            REQUIRE(n != 0, "builder");
            if (rnd() & 1) n = mutate(buf, n);
            break;
        case 2:
            check_encode_roundtrip();
            continue;
        default: { /* a corpus entry, mutated */
            size_t j = below(n_corpus);
            n = corpus_len[j];
            memcpy(buf, corpus[j], n);
            n = mutate(buf, n);
            break;
        }
        }
        check_input(buf, n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    rx_drops_total = ts_drops_total(&stream_drops);
    printf("wire_fuzz: iterations=%llu seconds=%.2f rate=%.0f/s seed=%llu corpus=%lu ok=%llu", iteration, elapsed,
           elapsed > 0 ? (double)iteration / elapsed : 0.0, seed, (unsigned long)n_corpus, reason_seen[TS_OK]);
    for (r = 1; r < (unsigned)TS_DROP_PAYLOAD; r++) {
        printf(" %s=%llu", ts_drop_reason_name((ts_drop_reason)r), reason_seen[r]);
    }
    printf(" payload_ok=%llu payload_bad=%llu rx_frames=%llu rx_drops=%llu\n", payload_ok, payload_bad, rx_frames,
           rx_drops_total);
    for (i = 0; i < n_corpus; i++) free(corpus[i]);
    free(stream_buf);
    return 0;
}
