/*
 * auth_driver.c -- a stdin/stdout driver around the device side of authenticated frames (ts_auth.c),
 * for tests/test_auth_c.py. Part of tinysplit (test support, host only; uses libc freely).
 *
 * One command per line, one answer per line ("-" stands for empty hex). Every hex argument is copied
 * into a heap block of exactly its size, so AddressSanitizer sees any read past it.
 *   H <message hex> <repeat> <chunk sizes, comma-separated>
 *        -> "H <digest hex>": SHA-256 of the message repeated, fed in chunks cycling through the sizes
 *   M <key hex> <data hex>                         -> "M <HMAC-SHA-256 hex>"
 *   S <plain hex> <dir> <dn> <hn> <counter> <key hex> -> "S <sealed hex>" | "S ERR"
 *   V <frame hex> <dir> <dn> <hn> <key hex>        -> "OK <counter> <type> <payload hex>" | "DROP <reason>"
 *        (split, then verify)
 *   W <counter,counter,...>                        -> "W <1|0 per counter>" (a fresh window; check, and
 *        accept what passes)
 *   I <key hex> <device nonce>                     -> "I 0" | "I -1"   (the device session: init)
 *   E <plain HELLO hex>                            -> "E <sealed hex>" | "E ERR"   (hello)
 *   O <frame hex>                                  -> "O ok" | "O <reason>"        (split, then open)
 *   P <plain hex>                                  -> "P <sealed hex>" | "P ERR"   (seal)
 *   C <send counter>                               -> "C <exhausted 0|1>"  (sets the send counter)
 *   Q                                              -> "Q <dn> <hn> <send> <session> <highest> <bits hex>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts_auth.h"

static char line[1 << 16];
static uint8_t bytes[1 << 15];
static uint8_t device_key[TS_AUTH_KEY_SIZE];
static ts_auth_device dev;

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses the hex word at *s (or "-") into an exactly-sized heap block; advances *s past it. */
static uint8_t *next_hex(char **s, size_t *n)
{
    size_t len = 0;
    uint8_t *p;
    char *q = *s;
    while (*q == ' ') q++;
    if (*q == '-') {
        q++;
    } else {
        while (hexval((unsigned char)q[2 * len]) >= 0 && hexval((unsigned char)q[2 * len + 1]) >= 0) {
            bytes[len] = (uint8_t)(hexval((unsigned char)q[2 * len]) * 16 + hexval((unsigned char)q[2 * len + 1]));
            len++;
        }
        q += 2 * len;
    }
    *s = q;
    p = malloc(len ? len : 1);
    if (!p) exit(3);
    memcpy(p, bytes, len);
    *n = len;
    return p;
}

static unsigned long next_ul(char **s)
{
    char *end;
    unsigned long v = strtoul(*s, &end, 0);
    *s = end;
    return v;
}

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    if (n == 0) putchar('-');
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

/* A copy of b[0..n) in a heap block with room for the trailer: seal writes past the plain frame. */
static uint8_t *with_room(const uint8_t *b, size_t n)
{
    uint8_t *p = malloc(n + TS_AUTH_TRAILER_SIZE);
    if (!p) exit(3);
    memcpy(p, b, n);
    return p;
}

static void sha_command(char *arg)
{
    static uint8_t chunk[1 << 14];
    size_t mlen, sizes[64], n_sizes = 0, k = 0, pos = 0;
    uint8_t *msg = next_hex(&arg, &mlen);
    unsigned long repeat = next_ul(&arg), total, done = 0;
    uint8_t digest[TS_SHA256_SIZE];
    ts_sha256 s;
    while (*arg == ' ') arg++;
    while (*arg && n_sizes < 64) {
        sizes[n_sizes++] = (size_t)next_ul(&arg);
        if (*arg == ',') arg++;
        else break;
    }
    if (n_sizes == 0) sizes[n_sizes++] = 64;
    total = (unsigned long)mlen * repeat;
    ts_sha256_init(&s);
    while (done < total) {
        size_t want = sizes[k++ % n_sizes], i;
        uint8_t *exact;
        if (want > sizeof chunk) want = sizeof chunk;
        if (want > total - done) want = (size_t)(total - done);
        for (i = 0; i < want; i++) {
            chunk[i] = msg[pos];
            pos = pos + 1 == mlen ? 0 : pos + 1;
        }
        exact = malloc(want ? want : 1);
        if (!exact) exit(3);
        memcpy(exact, chunk, want);
        ts_sha256_update(&s, want ? exact : NULL, want);
        free(exact);
        done += want;
    }
    ts_sha256_final(&s, digest);
    printf("H ");
    print_hex(digest, sizeof digest);
    putchar('\n');
    free(msg);
}

int main(void)
{
    while (fgets(line, sizeof line, stdin)) {
        char *arg = line + 1;
        size_t n = 0, m = 0;
        line[strcspn(line, "\r\n")] = 0;
        switch (line[0]) {
        case 'H':
            sha_command(arg);
            break;
        case 'M': {
            uint8_t *key = next_hex(&arg, &n), *data = next_hex(&arg, &m), mac[TS_SHA256_SIZE];
            ts_hmac_sha256 h;
            ts_hmac_sha256_init(&h, key, n);
            ts_hmac_sha256_update(&h, data, m);
            ts_hmac_sha256_final(&h, mac);
            printf("M ");
            print_hex(mac, sizeof mac);
            putchar('\n');
            free(key);
            free(data);
            break;
        }
        case 'S': {
            uint8_t *plain = next_hex(&arg, &n), *buf = with_room(plain, n), *key;
            unsigned long dir = next_ul(&arg), dn = next_ul(&arg), hn = next_ul(&arg), counter = next_ul(&arg);
            ts_hmac_sha256 work;
            key = next_hex(&arg, &m);
            if (m != TS_AUTH_KEY_SIZE) {
                printf("S BADKEY\n");
            } else {
                m = ts_auth_seal(buf, n, n + TS_AUTH_TRAILER_SIZE, key, (uint8_t)dir, (uint32_t)dn, (uint32_t)hn,
                                 (uint32_t)counter, &work);
                printf("S ");
                if (m == 0) printf("ERR");
                else print_hex(buf, m);
                putchar('\n');
            }
            free(plain);
            free(buf);
            free(key);
            break;
        }
        case 'V': {
            uint8_t *frame = next_hex(&arg, &n), *key;
            unsigned long dir = next_ul(&arg), dn = next_ul(&arg), hn = next_ul(&arg);
            ts_auth_frame f;
            ts_hmac_sha256 work;
            unsigned r;
            key = next_hex(&arg, &m);
            r = ts_auth_split(frame, n, &f);
            if (r == TS_OK) r = ts_auth_verify(&f, key, (uint8_t)dir, (uint32_t)dn, (uint32_t)hn, &work);
            if (r != TS_OK) {
                printf("DROP %s\n", ts_auth_reason_name(r));
            } else {
                printf("OK %lu %u ", (unsigned long)f.counter, f.v.h.type);
                print_hex(f.v.payload, f.v.payload_len);
                putchar('\n');
            }
            free(frame);
            free(key);
            break;
        }
        case 'W': {
            ts_auth_window w;
            ts_auth_window_reset(&w);
            printf("W ");
            while (*arg == ' ') arg++;
            while (*arg) {
                uint32_t c = (uint32_t)next_ul(&arg);
                if (ts_auth_window_check(&w, c) == TS_OK) {
                    ts_auth_window_accept(&w, c);
                    putchar('1');
                } else {
                    putchar('0');
                }
                if (*arg == ',') arg++;
                else break;
            }
            putchar('\n');
            break;
        }
        case 'I': {
            uint8_t *key = next_hex(&arg, &n);
            unsigned long nonce = next_ul(&arg);
            memset(device_key, 0, sizeof device_key);
            memcpy(device_key, key, n < sizeof device_key ? n : sizeof device_key);
            printf("I %d\n", ts_auth_device_init(&dev, n == TS_AUTH_KEY_SIZE ? device_key : NULL, (uint32_t)nonce));
            free(key);
            break;
        }
        case 'E':
        case 'P': {
            uint8_t *plain = next_hex(&arg, &n), *buf = with_room(plain, n);
            m = line[0] == 'E' ? ts_auth_device_hello(&dev, buf, n, n + TS_AUTH_TRAILER_SIZE)
                               : ts_auth_device_seal(&dev, buf, n, n + TS_AUTH_TRAILER_SIZE);
            printf("%c ", line[0]);
            if (m == 0) printf("ERR");
            else print_hex(buf, m);
            putchar('\n');
            free(plain);
            free(buf);
            break;
        }
        case 'O': {
            uint8_t *frame = next_hex(&arg, &n);
            ts_auth_frame f;
            unsigned r = ts_auth_split(frame, n, &f);
            if (r == TS_OK) r = ts_auth_device_open(&dev, &f);
            printf("O %s\n", ts_auth_reason_name(r));
            free(frame);
            break;
        }
        case 'C':
            dev.send_counter = (uint32_t)next_ul(&arg);
            printf("C %d\n", ts_auth_device_exhausted(&dev));
            break;
        case 'Q':
            printf("Q %lu %lu %lu %lu %lu %08lx%08lx\n", (unsigned long)dev.device_nonce, (unsigned long)dev.host_nonce,
                   (unsigned long)dev.send_counter, (unsigned long)dev.session_counter,
                   (unsigned long)dev.window.highest, (unsigned long)dev.window.bits_hi,
                   (unsigned long)dev.window.bits_lo);
            break;
        default:
            printf("BADCMD\n");
            break;
        }
        fflush(stdout);
    }
    return 0;
}
