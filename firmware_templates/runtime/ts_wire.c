/*
 * ts_wire.c -- the tinysplit wire protocol (docs/wire-protocol.md), C codec for the firmware runtime.
 *
 * Part of tinysplit. Hand-written runtime file (not generated). SPDX-License-Identifier: see the
 * project's LICENSE.
 *
 * See ts_wire.h for the API. The Python codec (tinysplit.wire) is the reference behaviour; the
 * check order of ts_frame_decode and the payload rules follow it exactly.
 */
#include "ts_wire.h"

#include <string.h>

/* ---- little-endian helpers, byte by byte (alignment- and endian-safe) ---- */

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] | ((unsigned)p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

/* ---- drop reasons and counters ---- */

static const char *const reason_names[TS_DROP_REASONS] = {
    "ok", "short", "magic", "version", "length", "crc", "type", "part", "payload", "cobs", "oversize",
};

const char *ts_drop_reason_name(ts_drop_reason r)
{
    unsigned i = (unsigned)r;
    return i < (unsigned)TS_DROP_REASONS ? reason_names[i] : "?";
}

void ts_drops_reset(ts_drop_counters *c)
{
    memset(c, 0, sizeof *c);
}

void ts_drops_note(ts_drop_counters *c, ts_drop_reason r)
{
    unsigned i = (unsigned)r;
    if (c != NULL && i > (unsigned)TS_OK && i < (unsigned)TS_DROP_REASONS && c->count[i] != 0xFFFFFFFFu) {
        c->count[i]++;
    }
}

uint32_t ts_drops_total(const ts_drop_counters *c)
{
    uint32_t total = 0;
    unsigned i;
    for (i = 1; i < (unsigned)TS_DROP_REASONS; i++) {
        uint32_t n = c->count[i];
        total = (n > 0xFFFFFFFFu - total) ? 0xFFFFFFFFu : total + n;
    }
    return total;
}

/* ---- CRC-32, a 16-entry (nibble) table: 64 bytes of flash ---- */

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t ts_crc32_update(uint32_t crc, const uint8_t *data, size_t len)
{
    uint32_t c = crc ^ 0xFFFFFFFFu;
    size_t i;
    for (i = 0; i < len; i++) {
        c ^= data[i];
        c = (c >> 4) ^ crc_nibble[c & 0x0Fu];
        c = (c >> 4) ^ crc_nibble[c & 0x0Fu];
    }
    return c ^ 0xFFFFFFFFu;
}

uint32_t ts_crc32(const uint8_t *data, size_t len)
{
    return ts_crc32_update(0u, data, len);
}

/* ---- frames ---- */

static int type_known(uint8_t t)
{
    return t >= (uint8_t)TS_HELLO && t <= (uint8_t)TS_SESSION;
}

size_t ts_frame_encode(const ts_frame_header *h, const uint8_t *payload, size_t payload_len,
                       uint8_t *out, size_t out_cap)
{
    size_t body;
    if (h == NULL || out == NULL || payload_len > TS_MAX_PAYLOAD || h->part_index >= h->part_count ||
        (payload == NULL && payload_len > 0u) || out_cap < TS_MIN_FRAME + payload_len) {
        return 0;
    }
    if (payload_len > 0u && payload != out + TS_HEADER_SIZE) {
        memmove(out + TS_HEADER_SIZE, payload, payload_len); /* before the header: payload may overlap out */
    }
    out[0] = (uint8_t)TS_WIRE_MAGIC0;
    out[1] = (uint8_t)TS_WIRE_MAGIC1;
    out[2] = (uint8_t)TS_WIRE_VERSION;
    out[3] = h->type;
    wr16(out + 4, h->device_id);
    wr32(out + 6, h->bundle_id);
    wr32(out + 10, h->seq);
    wr16(out + 14, h->part_index);
    wr16(out + 16, h->part_count);
    wr16(out + 18, (uint16_t)payload_len); /* <= 1024, checked above */
    body = TS_HEADER_SIZE + payload_len;
    wr32(out + body, ts_crc32(out, body));
    return body + TS_TRAILER_SIZE;
}

ts_drop_reason ts_frame_decode(const uint8_t *buf, size_t len, ts_frame_view *out)
{
    size_t plen;
    uint16_t pidx, pcount;
    if (buf == NULL || len < TS_MIN_FRAME) {
        return TS_DROP_SHORT;
    }
    if (buf[0] != TS_WIRE_MAGIC0 || buf[1] != TS_WIRE_MAGIC1) {
        return TS_DROP_MAGIC;
    }
    if (buf[2] != TS_WIRE_VERSION) {
        return TS_DROP_VERSION;
    }
    plen = rd16(buf + 18);
    /* len >= 24 here, so len - TS_MIN_FRAME cannot wrap; payload_len is never trusted beyond len. */
    if (plen > TS_MAX_PAYLOAD || plen != len - TS_MIN_FRAME) {
        return TS_DROP_LENGTH;
    }
    if (rd32(buf + TS_HEADER_SIZE + plen) != ts_crc32(buf, TS_HEADER_SIZE + plen)) {
        return TS_DROP_CRC;
    }
    if (!type_known(buf[3])) {
        return TS_DROP_TYPE;
    }
    pidx = rd16(buf + 14);
    pcount = rd16(buf + 16);
    if (pcount == 0u || pidx >= pcount) {
        return TS_DROP_PART;
    }
    if (out != NULL) {
        out->h.type = buf[3];
        out->h.device_id = rd16(buf + 4);
        out->h.bundle_id = rd32(buf + 6);
        out->h.seq = rd32(buf + 10);
        out->h.part_index = pidx;
        out->h.part_count = pcount;
        out->payload = buf + TS_HEADER_SIZE;
        out->payload_len = plen;
    }
    return TS_OK;
}

/* ---- COBS ---- */

size_t ts_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t i, o, code_pos;
    uint8_t code = 1;
    int full = 0; /* the last input byte completed a 254-byte run: no trailing empty block */
    if (out == NULL || out_cap < 1u || (in == NULL && len > 0u)) {
        return 0;
    }
    code_pos = 0;
    o = 1;
    for (i = 0; i < len; i++) {
        uint8_t b = in[i];
        full = 0;
        if (b == 0u) {
            out[code_pos] = code;
            if (o >= out_cap) {
                return 0;
            }
            code_pos = o++;
            code = 1;
        } else {
            if (o >= out_cap) {
                return 0;
            }
            out[o++] = b;
            code++;
            if (code == 0xFFu) {
                out[code_pos] = 0xFFu;
                full = 1;
                if (i + 1u < len) {
                    if (o >= out_cap) {
                        return 0;
                    }
                    code_pos = o++;
                }
                code = 1;
            }
        }
    }
    if (!full) {
        out[code_pos] = code;
    }
    return o;
}

int ts_cobs_decode_inplace(uint8_t *buf, size_t len, size_t *out_len)
{
    /* The write index never passes the read index, so decoding in place copies forward safely. */
    size_t i = 0, o = 0;
    while (i < len) {
        size_t code = buf[i];
        size_t end = i + code;
        size_t k;
        if (code == 0u || code > len - i) {
            return 0;
        }
        for (k = i + 1u; k < end; k++) {
            uint8_t b = buf[k];
            if (b == 0u) {
                return 0;
            }
            buf[o++] = b;
        }
        i = end;
        if (code != 0xFFu && i < len) {
            buf[o++] = 0u;
        }
    }
    if (out_len != NULL) {
        *out_len = o;
    }
    return 1;
}

void ts_cobs_rx_init(ts_cobs_rx *rx, uint8_t *buf, size_t cap, ts_drop_counters *drops)
{
    rx->buf = buf;
    rx->cap = buf != NULL ? cap : 0u;
    rx->len = 0;
    rx->overflow = 0;
    rx->drops = drops;
}

int ts_cobs_rx_push(ts_cobs_rx *rx, uint8_t byte, const uint8_t **frame, size_t *frame_len)
{
    int done = 0;
    size_t n = 0;
    if (byte != 0u) {
        if (!rx->overflow) {
            if (rx->len >= rx->cap) {
                rx->overflow = 1; /* discard the whole run up to the next 0x00 */
                rx->len = 0;
            } else {
                rx->buf[rx->len++] = byte;
            }
        }
        return 0;
    }
    if (rx->overflow) {
        ts_drops_note(rx->drops, TS_DROP_OVERSIZE);
    } else if (rx->len > 0u) {
        if (ts_cobs_decode_inplace(rx->buf, rx->len, &n)) {
            done = 1;
            if (frame != NULL) {
                *frame = rx->buf;
            }
            if (frame_len != NULL) {
                *frame_len = n;
            }
        } else {
            ts_drops_note(rx->drops, TS_DROP_COBS);
        }
    }
    rx->len = 0;
    rx->overflow = 0;
    return done;
}

/* ---- payload builders ---- */

/* Room for a payload of `plen` bytes at out + TS_HEADER_SIZE, or NULL. */
static uint8_t *payload_area(uint8_t *out, size_t out_cap, size_t plen)
{
    if (out == NULL || plen > TS_MAX_PAYLOAD || out_cap < TS_MIN_FRAME + plen) {
        return NULL;
    }
    return out + TS_HEADER_SIZE;
}

static size_t finish(const ts_frame_header *h, uint8_t type, size_t plen, uint8_t *out, size_t out_cap)
{
    ts_frame_header hh = *h;
    hh.type = type;
    return ts_frame_encode(&hh, out + TS_HEADER_SIZE, plen, out, out_cap);
}

size_t ts_build_hello(const ts_frame_header *h, const ts_hello *p, uint8_t *out, size_t out_cap)
{
    size_t plen, i;
    uint8_t *q;
    if (h == NULL || p == NULL || p->name_len > TS_HELLO_MAX_NAME || (p->name == NULL && p->name_len > 0u)) {
        return 0;
    }
    for (i = 0; i < p->name_len; i++) {
        if ((uint8_t)p->name[i] >= 0x80u) {
            return 0; /* not ASCII: the parser would reject it */
        }
    }
    plen = 1u + p->name_len + 16u;
    q = payload_area(out, out_cap, plen);
    if (q == NULL) {
        return 0;
    }
    q[0] = p->name_len;
    if (p->name_len > 0u) {
        memmove(q + 1, p->name, p->name_len);
    }
    q += 1u + p->name_len;
    wr32(q, p->capabilities);
    wr32(q + 4, p->input_bytes);
    wr32(q + 8, p->output_bytes);
    wr16(q + 12, p->units_total);
    wr16(q + 14, p->unit_bytes);
    return finish(h, (uint8_t)TS_HELLO, plen, out, out_cap);
}

/* u16 a, u16 b[, u16 c] then data (which may already lie in place after the fields). */
static size_t build_fields_data(const ts_frame_header *h, uint8_t type, const uint16_t *fields, size_t n_fields,
                                const uint8_t *data, size_t data_len, uint8_t *out, size_t out_cap)
{
    size_t head = 2u * n_fields, i;
    uint8_t *q;
    if (h == NULL || (data == NULL && data_len > 0u) || data_len > TS_MAX_PAYLOAD - head) {
        return 0;
    }
    q = payload_area(out, out_cap, head + data_len);
    if (q == NULL) {
        return 0;
    }
    if (data_len > 0u) {
        memmove(q + head, data, data_len);
    }
    for (i = 0; i < n_fields; i++) {
        wr16(q + 2u * i, fields[i]);
    }
    return finish(h, type, head + data_len, out, out_cap);
}

size_t ts_build_nair_slice(const ts_frame_header *h, const ts_nair_slice *p, uint8_t *out, size_t out_cap)
{
    uint16_t f[3];
    if (p == NULL || p->unit_count == 0u || p->units_total == 0u ||
        (uint32_t)p->unit_start + p->unit_count > p->units_total) {
        return 0;
    }
    f[0] = p->unit_start;
    f[1] = p->unit_count;
    f[2] = p->units_total;
    return build_fields_data(h, (uint8_t)TS_NAIR_SLICE, f, 3u, p->data, p->data_len, out, out_cap);
}

size_t ts_build_rocoin_portion(const ts_frame_header *h, const ts_rocoin_portion *p, uint8_t *out, size_t out_cap)
{
    uint16_t f[2];
    if (p == NULL || p->partitions_total == 0u || p->partition >= p->partitions_total) {
        return 0;
    }
    f[0] = p->partition;
    f[1] = p->partitions_total;
    return build_fields_data(h, (uint8_t)TS_ROCOIN_PORTION, f, 2u, p->data, p->data_len, out, out_cap);
}

size_t ts_build_adaptive_output(const ts_frame_header *h, const ts_adaptive_output *p, uint8_t *out, size_t out_cap)
{
    uint8_t *q;
    if (h == NULL || p == NULL || (p->data == NULL && p->data_len > 0u) || p->data_len > TS_ADAPTIVE_OUTPUT_CHUNK) {
        return 0;
    }
    q = payload_area(out, out_cap, TS_ADAPTIVE_OUTPUT_HEADER + p->data_len);
    if (q == NULL) {
        return 0;
    }
    if (p->data_len > 0u) {
        memmove(q + TS_ADAPTIVE_OUTPUT_HEADER, p->data, p->data_len); /* before the fields: data may lie in place */
    }
    wr32(q, p->skip_mask);
    wr32(q + 4, p->instructions);
    return finish(h, (uint8_t)TS_ADAPTIVE_OUTPUT, TS_ADAPTIVE_OUTPUT_HEADER + p->data_len, out, out_cap);
}

size_t ts_build_chunk(const ts_frame_header *h, const uint8_t *data, size_t data_len, uint8_t *out, size_t out_cap)
{
    if (h == NULL || (h->type != (uint8_t)TS_INPUT && h->type != (uint8_t)TS_LATENT)) {
        return 0;
    }
    return build_fields_data(h, h->type, NULL, 0u, data, data_len, out, out_cap);
}

size_t ts_build_early_label(const ts_frame_header *h, const ts_early_label *p, uint8_t *out, size_t out_cap)
{
    uint8_t *q = payload_area(out, out_cap, 3u);
    if (h == NULL || p == NULL || q == NULL) {
        return 0;
    }
    wr16(q, p->label);
    q[2] = p->confidence;
    return finish(h, (uint8_t)TS_EARLY_LABEL, 3u, out, out_cap);
}

size_t ts_build_result(const ts_frame_header *h, const ts_result *p, uint8_t *out, size_t out_cap)
{
    uint8_t *q = payload_area(out, out_cap, 5u);
    if (h == NULL || p == NULL || q == NULL) {
        return 0;
    }
    wr16(q, p->label);
    wr16(q + 2, p->units_used);
    q[4] = p->flags;
    return finish(h, (uint8_t)TS_RESULT, 5u, out, out_cap);
}

size_t ts_build_session(const ts_frame_header *h, const ts_session *p, uint8_t *out, size_t out_cap)
{
    uint8_t *q = payload_area(out, out_cap, 8u);
    if (h == NULL || p == NULL || q == NULL) {
        return 0;
    }
    wr32(q, p->device_nonce);
    wr32(q + 4, p->host_nonce);
    return finish(h, (uint8_t)TS_SESSION, 8u, out, out_cap);
}

size_t ts_build_kv(const ts_frame_header *h, const ts_kv *items, size_t n, uint8_t *out, size_t out_cap)
{
    size_t i;
    uint8_t *q;
    if (h == NULL || (h->type != (uint8_t)TS_CONTROL && h->type != (uint8_t)TS_STATS) ||
        (items == NULL && n > 0u) || n > TS_MAX_PAYLOAD / 5u) {
        return 0;
    }
    q = payload_area(out, out_cap, 5u * n);
    if (q == NULL) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        q[5u * i] = items[i].key;
        wr32(q + 5u * i + 1u, items[i].value);
    }
    return finish(h, h->type, 5u * n, out, out_cap);
}

size_t ts_build_stats(const ts_frame_header *h, const ts_kv *items, size_t n, uint8_t *out, size_t out_cap)
{
    ts_frame_header hh;
    if (h == NULL) {
        return 0;
    }
    hh = *h;
    hh.type = (uint8_t)TS_STATS;
    return ts_build_kv(&hh, items, n, out, out_cap);
}

/* ---- payload parsers (the Python payload decoders' rules) ---- */

/* TS_OK when v is a frame of type t with a readable payload. */
static ts_drop_reason expect(const ts_frame_view *v, uint8_t t)
{
    if (v == NULL || v->h.type != t) {
        return TS_DROP_TYPE;
    }
    if (v->payload == NULL && v->payload_len > 0u) {
        return TS_DROP_PAYLOAD;
    }
    return TS_OK;
}

ts_drop_reason ts_parse_hello(const ts_frame_view *v, ts_hello *out)
{
    const uint8_t *b;
    size_t n, i;
    ts_drop_reason r = expect(v, (uint8_t)TS_HELLO);
    if (r != TS_OK) {
        return r;
    }
    b = v->payload;
    if (v->payload_len < 1u) {
        return TS_DROP_PAYLOAD;
    }
    n = b[0];
    if (v->payload_len != 1u + n + 16u) { /* too short, or trailing bytes */
        return TS_DROP_PAYLOAD;
    }
    for (i = 0; i < n; i++) {
        if (b[1u + i] >= 0x80u) {
            return TS_DROP_PAYLOAD; /* board name is not ASCII */
        }
    }
    if (out != NULL) {
        out->name = (const char *)(b + 1);
        out->name_len = b[0];
        b += 1u + n;
        out->capabilities = rd32(b);
        out->input_bytes = rd32(b + 4);
        out->output_bytes = rd32(b + 8);
        out->units_total = rd16(b + 12);
        out->unit_bytes = rd16(b + 14);
    }
    return TS_OK;
}

ts_drop_reason ts_parse_nair_slice(const ts_frame_view *v, ts_nair_slice *out)
{
    uint16_t start, count, total;
    ts_drop_reason r = expect(v, (uint8_t)TS_NAIR_SLICE);
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len < 6u) {
        return TS_DROP_PAYLOAD;
    }
    start = rd16(v->payload);
    count = rd16(v->payload + 2);
    total = rd16(v->payload + 4);
    if (count == 0u || total == 0u || (uint32_t)start + count > total) {
        return TS_DROP_PAYLOAD;
    }
    if (out != NULL) {
        out->unit_start = start;
        out->unit_count = count;
        out->units_total = total;
        out->data = v->payload + 6;
        out->data_len = v->payload_len - 6u;
    }
    return TS_OK;
}

ts_drop_reason ts_parse_early_label(const ts_frame_view *v, ts_early_label *out)
{
    ts_drop_reason r = expect(v, (uint8_t)TS_EARLY_LABEL);
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len != 3u) {
        return TS_DROP_PAYLOAD;
    }
    if (out != NULL) {
        out->label = rd16(v->payload);
        out->confidence = v->payload[2];
    }
    return TS_OK;
}

ts_drop_reason ts_parse_chunk(const ts_frame_view *v, const uint8_t **data, size_t *data_len)
{
    ts_drop_reason r = expect(v, (uint8_t)TS_INPUT);
    if (r == TS_DROP_TYPE) {
        r = expect(v, (uint8_t)TS_LATENT);
    }
    if (r != TS_OK) {
        return r;
    }
    if (data != NULL) {
        *data = v->payload;
    }
    if (data_len != NULL) {
        *data_len = v->payload_len;
    }
    return TS_OK;
}

ts_drop_reason ts_parse_rocoin_portion(const ts_frame_view *v, ts_rocoin_portion *out)
{
    uint16_t part, total;
    ts_drop_reason r = expect(v, (uint8_t)TS_ROCOIN_PORTION);
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len < 4u) {
        return TS_DROP_PAYLOAD;
    }
    part = rd16(v->payload);
    total = rd16(v->payload + 2);
    if (total == 0u || part >= total) {
        return TS_DROP_PAYLOAD;
    }
    if (out != NULL) {
        out->partition = part;
        out->partitions_total = total;
        out->data = v->payload + 4;
        out->data_len = v->payload_len - 4u;
    }
    return TS_OK;
}

ts_drop_reason ts_parse_adaptive_output(const ts_frame_view *v, ts_adaptive_output *out)
{
    ts_drop_reason r = expect(v, (uint8_t)TS_ADAPTIVE_OUTPUT);
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len < TS_ADAPTIVE_OUTPUT_HEADER) {
        return TS_DROP_PAYLOAD;
    }
    if (out != NULL) {
        out->skip_mask = rd32(v->payload);
        out->instructions = rd32(v->payload + 4);
        out->data = v->payload + TS_ADAPTIVE_OUTPUT_HEADER;
        out->data_len = v->payload_len - TS_ADAPTIVE_OUTPUT_HEADER;
    }
    return TS_OK;
}

ts_drop_reason ts_parse_session(const ts_frame_view *v, ts_session *out)
{
    ts_drop_reason r = expect(v, (uint8_t)TS_SESSION);
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len != 8u) {
        return TS_DROP_PAYLOAD;
    }
    if (out != NULL) {
        out->device_nonce = rd32(v->payload);
        out->host_nonce = rd32(v->payload + 4);
    }
    return TS_OK;
}

ts_drop_reason ts_parse_result(const ts_frame_view *v, ts_result *out)
{
    ts_drop_reason r = expect(v, (uint8_t)TS_RESULT);
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len != 5u) {
        return TS_DROP_PAYLOAD;
    }
    if (out != NULL) {
        out->label = rd16(v->payload);
        out->units_used = rd16(v->payload + 2);
        out->flags = v->payload[4];
    }
    return TS_OK;
}

ts_drop_reason ts_parse_kv(const ts_frame_view *v, size_t *n_items)
{
    ts_drop_reason r = expect(v, (uint8_t)TS_CONTROL);
    if (r == TS_DROP_TYPE) {
        r = expect(v, (uint8_t)TS_STATS);
    }
    if (r != TS_OK) {
        return r;
    }
    if (v->payload_len % 5u != 0u) {
        return TS_DROP_PAYLOAD;
    }
    if (n_items != NULL) {
        *n_items = v->payload_len / 5u;
    }
    return TS_OK;
}

ts_kv ts_kv_at(const ts_frame_view *v, size_t i)
{
    ts_kv kv;
    kv.key = 0;
    kv.value = 0;
    if (v != NULL && v->payload != NULL && i < v->payload_len / 5u) {
        kv.key = v->payload[5u * i];
        kv.value = rd32(v->payload + 5u * i + 1u);
    }
    return kv;
}

ts_drop_reason ts_parse_control(const ts_frame_view *v, ts_control *out)
{
    size_t n = 0, i;
    ts_control c;
    ts_drop_reason r = expect(v, (uint8_t)TS_CONTROL);
    if (r != TS_OK) {
        return r;
    }
    r = ts_parse_kv(v, &n);
    if (r != TS_OK) {
        return r;
    }
    memset(&c, 0, sizeof c);
    for (i = 0; i < n; i++) {
        ts_kv kv = ts_kv_at(v, i);
        uint32_t *field;
        switch (kv.key) {
        case TS_CONTROL_BUDGET_UNITS: field = &c.budget_units; break;
        case TS_CONTROL_BUDGET_BYTES: field = &c.budget_bytes; break;
        case TS_CONTROL_THRESHOLD: field = &c.threshold; break;
        case TS_CONTROL_SKIP_MASK: field = &c.skip_mask; break;
        default: field = NULL; break;
        }
        if (field == NULL) {
            if (c.unknown_keys != 0xFFFFu) {
                c.unknown_keys++;
            }
        } else if ((c.present & (1u << kv.key)) == 0u) { /* first occurrence wins */
            *field = kv.value;
            c.present = (uint8_t)(c.present | (1u << kv.key));
        }
    }
    if (out != NULL) {
        *out = c;
    }
    return TS_OK;
}

ts_drop_reason ts_payload_check(const ts_frame_view *v)
{
    if (v == NULL) {
        return TS_DROP_TYPE;
    }
    switch (v->h.type) {
    case TS_HELLO: return ts_parse_hello(v, NULL);
    case TS_INPUT:
    case TS_LATENT: return ts_parse_chunk(v, NULL, NULL);
    case TS_NAIR_SLICE: return ts_parse_nair_slice(v, NULL);
    case TS_EARLY_LABEL: return ts_parse_early_label(v, NULL);
    case TS_ROCOIN_PORTION: return ts_parse_rocoin_portion(v, NULL);
    case TS_CONTROL:
    case TS_STATS: return ts_parse_kv(v, NULL);
    case TS_RESULT: return ts_parse_result(v, NULL);
    case TS_ADAPTIVE_OUTPUT: return ts_parse_adaptive_output(v, NULL);
    case TS_SESSION: return ts_parse_session(v, NULL);
    default: return TS_DROP_TYPE;
    }
}
