/*
 * auth_fuzz.c -- a bounded, seeded fuzz driver for authenticated (version 2) frames on the device
 * side (firmware_templates/runtime/ts_auth.c). Part of tinysplit (test support, host only; uses libc
 * freely, unlike the runtime).
 *
 * Build (tests/test_auth_c.py does this):
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -I firmware_templates/runtime \
 *       tests/fuzz/auth_fuzz.c firmware_templates/runtime/ts_auth.c firmware_templates/runtime/ts_wire.c
 * Run:
 *   auth_fuzz SEED MAX_ITERATIONS MAX_SECONDS [SEED_FILE]
 * SEED_FILE holds one hex-encoded frame per line (e.g. the frames of tinysplit/wire/auth_vectors.json);
 * they join the corpus as they are (most do not verify under the fuzzer's key and nonces).
 *
 * One device (key K, boot nonce DN) in a session (opened by a sealed SESSION at start, and again
 * with a fresh host nonce every 4096 inputs) receives, per iteration, one input: a frame sealed under
 * the session with a counter near the window's edge, a random plain frame, a corpus frame, pure random bytes, or any of those mutated
 * (bit flips with and without a repaired CRC, truncation, extension, header fields, the counter or
 * tag, a splice of two frames, the version byte). Each input is copied into a heap block of exactly
 * its size, so AddressSanitizer sees any read past it.
 *
 * Invariants (a violation prints the input and aborts):
 *   - ts_auth_split's verdict equals an independent reference split (CRC computed bitwise), and its
 *     fields are the input's bytes;
 *   - the tag verifies exactly when the input is one of the frames sealed under the session (the
 *     untouched original, or a byte-identical frame): every other change is `auth`;
 *   - ts_auth_device_open's verdict equals the reference (session, replay by an independent 64-bit
 *     window, then the tag), and its window equals the reference's after every input;
 *   - a frame accepted once is dropped as `replay` the second time.
 * On success the last line is "auth_fuzz: iterations=N seconds=S rate=R/s seed=X ..." and the exit
 * status is 0.
 *
 * -DAUTH_FUZZ_INJECT_OOB reads one byte past the input whenever the split says `length`: the test
 * suite checks that the sanitizer catches it. -DAUTH_FUZZ_INJECT_BLIND_REFERENCE makes the reference
 * split skip its CRC check: the test suite checks that the verdict comparison then fails.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ts_auth.h"

/* ---- PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t below(size_t n) /* in [0, n), n > 0 */
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
    for (i = 0; i < cur_len && cur_input; i++) fprintf(stderr, "%02x", cur_input[i]);
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
        for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | ((unsigned)p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* tinysplit.wire.auth.split, written out again */
static unsigned ref_split(const uint8_t *b, size_t n)
{
    size_t plen;
    if (n >= 3 && b[0] == 0x54 && b[1] == 0x53 && b[2] != 2) return b[2] == 1 ? 13u : 3u;
    if (n < 44) return 1u;
    if (b[0] != 0x54 || b[1] != 0x53) return 2u;
    plen = le16(b + 18);
    if (plen > 1024 || 44 + plen != n) return 4u;
#ifndef AUTH_FUZZ_INJECT_BLIND_REFERENCE
    if (le32(b + 40 + plen) != ref_crc32(b, 40 + plen)) return 5u;
#endif
    if (b[3] < 1 || b[3] > 11) return 6u;
    if (le16(b + 16) == 0 || le16(b + 14) >= le16(b + 16)) return 7u;
    return 0u;
}

/* the replay window with a native 64-bit bitmap (ReplayWindow) */
static uint32_t ref_highest;
static uint64_t ref_bitmap;

static int ref_window_ok(uint32_t c)
{
    uint32_t back;
    if (c == 0) return 0;
    if (c > ref_highest) return 1;
    back = ref_highest - c;
    return back < 64 && !((ref_bitmap >> back) & 1u);
}

static void ref_window_accept(uint32_t c)
{
    if (c > ref_highest) {
        uint32_t shift = c - ref_highest;
        ref_bitmap = shift < 64 ? (ref_bitmap << shift) | 1u : 1u;
        ref_highest = c;
    } else {
        ref_bitmap |= (uint64_t)1 << (ref_highest - c);
    }
}

/* ---- the session and the corpus ---- */

static const uint8_t KEY[TS_AUTH_KEY_SIZE] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
/* not the vectors' nonces: a seed frame never verifies here */
#define DN 0x5EED0001u
static uint32_t hn = 0x0BADC0DEu; /* the session's host nonce; a new session every 4096 inputs */
#define MAX_INPUT 2200
#define MAX_CORPUS 512

static ts_auth_device dev;
static ts_hmac_sha256 work;
static uint8_t *corpus[MAX_CORPUS];
static size_t corpus_len[MAX_CORPUS];
static uint32_t corpus_hn[MAX_CORPUS]; /* the host nonce it was sealed under by us; 0: not sealed by us */
static size_t n_corpus, next_slot;

static void corpus_add(const uint8_t *b, size_t n, uint32_t sealed_hn)
{
    size_t i;
    if (n > MAX_INPUT) return;
    if (n_corpus < MAX_CORPUS) {
        i = n_corpus++;
    } else { /* full: replace a newer entry, keep the first 64 (the seeds) */
        i = 64 + next_slot++ % (MAX_CORPUS - 64);
        free(corpus[i]);
    }
    corpus[i] = malloc(n ? n : 1);
    if (!corpus[i]) exit(3);
    memcpy(corpus[i], b, n);
    corpus_len[i] = n;
    corpus_hn[i] = sealed_hn;
}

/* 1 when b[0..n) is byte for byte a frame sealed under the current session (so its tag must verify). */
static int is_sealed_frame(const uint8_t *b, size_t n)
{
    size_t i;
    for (i = 0; i < n_corpus; i++) {
        if (corpus_hn[i] == hn && corpus_len[i] == n && memcmp(corpus[i], b, n) == 0) return 1;
    }
    return 0;
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
        while (n < MAX_INPUT && hexval((unsigned char)line[2 * n]) >= 0 &&
               hexval((unsigned char)line[2 * n + 1]) >= 0) {
            b[n] = (uint8_t)(hexval((unsigned char)line[2 * n]) * 16 + hexval((unsigned char)line[2 * n + 1]));
            n++;
        }
        corpus_add(b, n, 0u);
    }
    fclose(f);
}

static void fill(uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

/* A random plain frame (any known type, raw payload) in out; returns its length. */
static size_t plain_random(uint8_t *out, size_t cap)
{
    static uint8_t payload[TS_MAX_PAYLOAD];
    ts_frame_header h;
    size_t n = below(rnd() & 1 ? 64 : TS_MAX_PAYLOAD + 1);
    h.type = (uint8_t)(rnd() & 15 ? 1 + below(11) : rnd());
    h.device_id = (uint16_t)(rnd() & 1 ? 7u : rnd());
    h.bundle_id = (uint32_t)rnd();
    h.seq = (uint32_t)rnd();
    h.part_count = (uint16_t)(1 + below(rnd() & 1 ? 3 : 0xFFFF));
    h.part_index = (uint16_t)below(h.part_count);
    fill(payload, n);
    return ts_frame_encode(&h, payload, n, out, cap);
}

/* A counter near the window's edges, or anywhere. */
static uint32_t pick_counter(void)
{
    uint32_t hi = dev.window.highest;
    uint32_t x = (uint32_t)below(70);
    switch (below(100) != 0 ? 1 + below(5) : 0) {
    case 0: return (uint32_t)rnd(); /* rare: it may take the window near the top until the next session */
    case 1: return hi < TS_AUTH_COUNTER_MAX ? hi + 1u : hi;
    case 2: return hi >= x ? hi - x : x;
    case 3: return hi <= TS_AUTH_COUNTER_MAX - x ? hi + x : hi;
    case 4: return hi >= 64u ? hi - 65u + (uint32_t)below(3) : (uint32_t)below(3); /* 65, 64, 63 below */
    default: return (uint32_t)below(4);
    }
}

/* A frame sealed under the session, added to the corpus; returns its length. */
static size_t sealed_random(uint8_t *out, size_t cap)
{
    size_t n = plain_random(out, cap);
    n = ts_auth_seal(out, n, cap, KEY, (uint8_t)TS_AUTH_HOST_TO_DEVICE, DN, hn, pick_counter(), &work);
    REQUIRE(n != 0, "seal a plain frame");
    corpus_add(out, n, hn);
    return n;
}

static void fix_crc(uint8_t *b, size_t n)
{
    if (n >= 4) put32(b + n - 4, ref_crc32(b, n - 4));
}

static size_t mutate(uint8_t *b, size_t n)
{
    int rounds = 1 + (int)below(3), r;
    for (r = 0; r < rounds; r++) {
        switch (below(10)) {
        case 0:
            if (n) b[below(n)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* a header byte */
            if (n) b[below(n < 20 ? n : 20)] = (uint8_t)rnd();
            break;
        case 2:
            n = below(n + 1);
            break;
        case 3: { /* extension */
            size_t k = 1 + below(rnd() & 1 ? 8 : 300);
            if (n + k > MAX_INPUT) k = MAX_INPUT - n;
            fill(b + n, k);
            n += k;
            break;
        }
        case 4: { /* splice: a prefix of this, then the rest of another corpus entry */
            size_t j = below(n_corpus), at = below(n + 1), from = below(corpus_len[j] + 1), k;
            k = corpus_len[j] - from;
            if (at + k > MAX_INPUT) k = MAX_INPUT - at;
            memcpy(b + at, corpus[j] + from, k);
            n = at + k;
            break;
        }
        case 5: /* the counter or the tag */
            if (n >= 44) b[n - 24 + below(20)] ^= (uint8_t)(1u << below(8));
            break;
        case 6: /* the version byte */
            if (n >= 3) b[2] = (uint8_t)(rnd() & 1 ? 1 + below(3) : rnd());
            break;
        case 7: /* payload_len: an edge value or the consistent one */
            if (n >= 20) {
                unsigned v = rnd() & 1 ? (unsigned)(n >= 44 ? n - 44 : 0)
                                       : (unsigned)(rnd() & 1 ? 1024 + below(3) : rnd());
                b[18] = (uint8_t)v;
                b[19] = (uint8_t)(v >> 8);
            }
            break;
        case 8: /* the type or the part fields */
            if (n >= 18) b[rnd() & 1 ? 3 : 14 + below(4)] = (uint8_t)(rnd() & 1 ? below(13) : rnd());
            break;
        default: /* a payload byte */
            if (n > 44) b[20 + below(n - 44)] = (uint8_t)rnd();
            break;
        }
    }
    if (rnd() % 4 != 0) fix_crc(b, n); /* reach the checks after the CRC */
    return n;
}

/* ---- the checks ---- */

static unsigned long long verdicts[17], accepted, replays_checked, sessions;

static void check_input(const uint8_t *in, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    ts_auth_frame f;
    unsigned r, ref, want;
    if (!b) exit(3);
    memcpy(b, in, n);
    cur_input = b;
    cur_len = n;

    /* 1. the split vs the reference */
    r = ts_auth_split(b, n, &f);
    ref = ref_split(b, n);
    REQUIRE(r == ref, "split verdict equals the reference");
#ifdef AUTH_FUZZ_INJECT_OOB /* the broken variant: read one byte past the input */
    if (r == TS_DROP_LENGTH) {
        volatile uint8_t x = b[n];
        (void)x;
    }
#endif
    if (r != TS_OK) {
        verdicts[r < 17 ? r : 0]++;
        free(b);
        cur_input = NULL;
        return;
    }
    REQUIRE(f.v.payload == b + 20 && f.v.payload_len + 44 == n && f.signed_bytes == b && f.signed_len == n - 20 &&
            f.tag == b + n - 20 && f.counter == le32(b + n - 24) && f.v.h.type == b[3] &&
            f.v.h.device_id == le16(b + 4) && f.v.h.bundle_id == le32(b + 6) && f.v.h.seq == le32(b + 10) &&
            f.v.h.part_index == le16(b + 14) && f.v.h.part_count == le16(b + 16), "split fields are the input's bytes");

    /* 2. the tag verifies exactly for the frames sealed under the session */
    r = ts_auth_verify(&f, KEY, (uint8_t)TS_AUTH_HOST_TO_DEVICE, DN, hn, &work);
    REQUIRE(r == (is_sealed_frame(b, n) ? TS_OK : TS_AUTH_DROP_AUTH), "tag verifies exactly for sealed frames");

    /* 3. the device session: session, window (vs the reference), tag; then a second time */
    if (f.v.h.type == TS_SESSION) {
        /* sealed with the host nonce, never (DN, 0): a fresh counter fails the tag, an old one is a replay */
        want = f.counter <= dev.session_counter ? TS_AUTH_DROP_REPLAY : TS_AUTH_DROP_AUTH;
    } else if (!ref_window_ok(f.counter)) {
        want = TS_AUTH_DROP_REPLAY;
    } else {
        want = r;
    }
    r = ts_auth_device_open(&dev, &f);
    REQUIRE(r == want, "device verdict equals the reference");
    verdicts[r]++;
    if (r == TS_OK) {
        accepted++;
        ref_window_accept(f.counter);
        r = ts_auth_device_open(&dev, &f);
        REQUIRE(r == TS_AUTH_DROP_REPLAY, "a frame accepted once is a replay the second time");
        replays_checked++;
    }
    REQUIRE(dev.window.highest == ref_highest && dev.window.bits_lo == (uint32_t)ref_bitmap &&
            dev.window.bits_hi == (uint32_t)(ref_bitmap >> 32), "window equals the reference");
    free(b);
    cur_input = NULL;
}

/* A new session: a SESSION sealed with (DN, 0) and the next SESSION counter, for a fresh host nonce.
 * The frames of the old session no longer verify; the window starts empty. */
static void open_session(void)
{
    static uint8_t out[TS_AUTH_MAX_FRAME];
    ts_frame_header h = {TS_SESSION, 7u, 0x3B465AFAu, 0u, 0u, 1u};
    ts_session p;
    ts_auth_frame f;
    size_t n;
    hn = (uint32_t)rnd() | 1u;
    p.device_nonce = DN;
    p.host_nonce = hn;
    n = ts_build_session(&h, &p, out, sizeof out);
    n = ts_auth_seal(out, n, sizeof out, KEY, (uint8_t)TS_AUTH_HOST_TO_DEVICE, DN, 0u, dev.session_counter + 1u, &work);
    REQUIRE(ts_auth_split(out, n, &f) == TS_OK && ts_auth_device_open(&dev, &f) == TS_OK && dev.host_nonce == hn &&
            dev.window.highest == 0u && dev.window.bits_lo == 0u && dev.window.bits_hi == 0u, "a new session opens");
    REQUIRE(ts_auth_device_open(&dev, &f) == TS_AUTH_DROP_REPLAY, "the SESSION is a replay the second time");
    ref_highest = 0u;
    ref_bitmap = 0u;
    sessions++;
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
    if (ts_auth_device_init(&dev, KEY, DN) != 0) return 1;
    open_session();
    if (argc > 4) load_seed_file(argv[4]);
    for (i = 0; i < 32; i++) (void)sealed_random(buf, sizeof buf);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (iteration = 0; iteration < max_iters; iteration++) {
        size_t n;
        if ((iteration & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
            if (elapsed >= max_seconds) break;
        }
        if ((iteration & 4095) == 4095) open_session();
        switch (below(8)) {
        case 0: /* pure random bytes, sometimes with the magic */
            n = below(rnd() & 1 ? 64 : MAX_INPUT);
            fill(buf, n);
            if (n >= 3 && (rnd() & 1)) {
                buf[0] = 0x54;
                buf[1] = 0x53;
                buf[2] = 2;
            }
            break;
        case 1: /* a plain (version 1) frame */
            n = plain_random(buf, sizeof buf);
            break;
        case 2:
        case 3: /* a freshly sealed frame, as it is */
            n = sealed_random(buf, sizeof buf);
            break;
        case 4: /* a freshly sealed frame, mutated */
            n = mutate(buf, sealed_random(buf, sizeof buf));
            break;
        default: { /* a corpus entry (a replay, then), often mutated */
            size_t j = below(n_corpus);
            n = corpus_len[j];
            memcpy(buf, corpus[j], n);
            if (rnd() % 4 != 0) n = mutate(buf, n);
            break;
        }
        }
        check_input(buf, n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("auth_fuzz: iterations=%llu seconds=%.2f rate=%.0f/s seed=%llu corpus=%lu sessions=%llu accepted=%llu "
           "replays_checked=%llu", iteration, elapsed, elapsed > 0 ? (double)iteration / elapsed : 0.0, seed,
           (unsigned long)n_corpus, sessions, accepted, replays_checked);
    for (r = 1; r < 17; r++) {
        if (r >= 8 && r <= 12) continue; /* payload, cobs, oversize and the runtime's reasons: not ts_auth's */
        printf(" %s=%llu", ts_auth_reason_name(r), verdicts[r]);
    }
    printf("\n");
    for (i = 0; i < n_corpus; i++) free(corpus[i]);
    return 0;
}
