/*
 * wire_driver.c -- a stdin/stdout driver around the C wire codec (ts_wire.c), for the Python
 * cross-check in tests/test_wire_c.py. Part of tinysplit (test support, host only).
 *
 * One command per line, one answer per line ("-" stands for empty hex):
 *   D <frame hex>                          -> "DROP <reason>" |
 *        "OK <type> <dev> <bundle> <seq> <pidx> <pcount> <payload hex> <payload check> <re-encoded hex> <rebuilt>"
 *        where <rebuilt> is the frame parsed with its type's parser and rebuilt with its type's builder
 *        (hex), or "=" when the payload check failed
 *   E <type> <dev> <bundle> <seq> <pidx> <pcount> <payload hex>  -> "F <frame hex>" | "ERR"
 *   C <hex>                                -> "C <COBS-encoded hex>"
 *   S <stream hex>  (a fresh receiver)     -> "S <frame hex>,<frame hex>,... <cobs drops> <oversize drops>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_wire.h"

static char line[1 << 17];
static uint8_t bytes[1 << 16];

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses hex (or "-") at s into a fresh exactly-sized heap block, so ASan sees any over-read. */
static uint8_t *parse_hex(const char *s, size_t *n)
{
    size_t len = 0;
    uint8_t *p;
    if (strcmp(s, "-") != 0) {
        while (hexval((unsigned char)s[2 * len]) >= 0 && hexval((unsigned char)s[2 * len + 1]) >= 0) {
            bytes[len] = (uint8_t)(hexval((unsigned char)s[2 * len]) * 16 + hexval((unsigned char)s[2 * len + 1]));
            len++;
        }
    }
    p = malloc(len ? len : 1);
    if (!p) exit(3);
    memcpy(p, bytes, len);
    *n = len;
    return p;
}

/* Parse v with its type's parser, then rebuild it with the type's builder; 0 when either refuses. */
static size_t rebuild(const ts_frame_view *v, uint8_t *out, size_t cap)
{
    static ts_kv items[204];
    ts_hello he;
    ts_nair_slice ns;
    ts_early_label el;
    ts_rocoin_portion rp;
    ts_result re;
    ts_adaptive_output ao;
    ts_session se;
    const uint8_t *d;
    size_t n, i;
    switch (v->h.type) {
    case TS_HELLO: return ts_parse_hello(v, &he) == TS_OK ? ts_build_hello(&v->h, &he, out, cap) : 0;
    case TS_INPUT:
    case TS_LATENT: return ts_parse_chunk(v, &d, &n) == TS_OK ? ts_build_chunk(&v->h, d, n, out, cap) : 0;
    case TS_NAIR_SLICE: return ts_parse_nair_slice(v, &ns) == TS_OK ? ts_build_nair_slice(&v->h, &ns, out, cap) : 0;
    case TS_EARLY_LABEL: return ts_parse_early_label(v, &el) == TS_OK ? ts_build_early_label(&v->h, &el, out, cap) : 0;
    case TS_ROCOIN_PORTION:
        return ts_parse_rocoin_portion(v, &rp) == TS_OK ? ts_build_rocoin_portion(&v->h, &rp, out, cap) : 0;
    case TS_RESULT: return ts_parse_result(v, &re) == TS_OK ? ts_build_result(&v->h, &re, out, cap) : 0;
    case TS_SESSION: return ts_parse_session(v, &se) == TS_OK ? ts_build_session(&v->h, &se, out, cap) : 0;
    case TS_ADAPTIVE_OUTPUT:
        return ts_parse_adaptive_output(v, &ao) == TS_OK ? ts_build_adaptive_output(&v->h, &ao, out, cap) : 0;
    case TS_CONTROL:
    case TS_STATS:
        if (ts_parse_kv(v, &n) != TS_OK) {
            return 0;
        }
        for (i = 0; i < n; i++) {
            items[i] = ts_kv_at(v, i);
        }
        return v->h.type == TS_STATS ? ts_build_stats(&v->h, items, n, out, cap) : ts_build_kv(&v->h, items, n, out, cap);
    default: return 0;
    }
}

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    if (n == 0) putchar('-');
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

int main(void)
{
    static uint8_t out[4 * TS_MAX_ENCODED];
    while (fgets(line, sizeof line, stdin)) {
        char *arg = line + 2;
        size_t n = 0;
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == 'D') {
            uint8_t *b = parse_hex(arg, &n);
            ts_frame_view v;
            ts_drop_reason r = ts_frame_decode(b, n, &v);
            if (r != TS_OK) {
                printf("DROP %s\n", ts_drop_reason_name(r));
            } else {
                size_t m = ts_frame_encode(&v.h, v.payload, v.payload_len, out, sizeof out);
                printf("OK %u %u %lu %lu %u %u ", v.h.type, v.h.device_id, (unsigned long)v.h.bundle_id,
                       (unsigned long)v.h.seq, v.h.part_index, v.h.part_count);
                print_hex(v.payload, v.payload_len);
                printf(" %s ", ts_drop_reason_name(ts_payload_check(&v)));
                print_hex(out, m);
                putchar(' ');
                if (ts_payload_check(&v) == TS_OK) {
                    m = rebuild(&v, out, sizeof out);
                    if (m == 0) printf("REFUSED");
                    else print_hex(out, m);
                } else {
                    putchar('=');
                }
                putchar('\n');
            }
            free(b);
        } else if (line[0] == 'E') {
            unsigned t, dev, pidx, pcount;
            unsigned long bundle, seq;
            int off = 0;
            ts_frame_header h;
            uint8_t *b;
            size_t m;
            if (sscanf(arg, "%u %u %lu %lu %u %u %n", &t, &dev, &bundle, &seq, &pidx, &pcount, &off) != 6) {
                printf("BADCMD\n");
                continue;
            }
            h.type = (uint8_t)t;
            h.device_id = (uint16_t)dev;
            h.bundle_id = (uint32_t)bundle;
            h.seq = (uint32_t)seq;
            h.part_index = (uint16_t)pidx;
            h.part_count = (uint16_t)pcount;
            b = parse_hex(arg + off, &n);
            m = ts_frame_encode(&h, b, n, out, sizeof out);
            if (m == 0) {
                printf("ERR\n");
            } else {
                printf("F ");
                print_hex(out, m);
                putchar('\n');
            }
            free(b);
        } else if (line[0] == 'C') {
            uint8_t *b = parse_hex(arg, &n);
            size_t m = ts_cobs_encode(b, n, out, sizeof out);
            printf("C ");
            print_hex(out, m);
            putchar('\n');
            free(b);
        } else if (line[0] == 'S') {
            uint8_t *b = parse_hex(arg, &n);
            uint8_t *rxbuf = malloc(TS_MAX_ENCODED);
            ts_drop_counters drops;
            ts_cobs_rx rx;
            size_t i;
            int first = 1;
            if (!rxbuf) return 3;
            ts_drops_reset(&drops);
            ts_cobs_rx_init(&rx, rxbuf, TS_MAX_ENCODED, &drops);
            printf("S ");
            for (i = 0; i < n; i++) {
                const uint8_t *f;
                size_t fl;
                if (ts_cobs_rx_push(&rx, b[i], &f, &fl)) {
                    if (!first) putchar(',');
                    print_hex(f, fl);
                    first = 0;
                }
            }
            if (first) putchar('=');
            printf(" %lu %lu\n", (unsigned long)drops.count[TS_DROP_COBS], (unsigned long)drops.count[TS_DROP_OVERSIZE]);
            free(rxbuf);
            free(b);
        } else {
            printf("BADCMD\n");
        }
        fflush(stdout);
    }
    return 0;
}
