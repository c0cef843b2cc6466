"""The C wire codec (firmware_templates/runtime/ts_wire.c) against the protocol's test vectors and the
Python codec, built with host gcc and AddressSanitizer/UBSan; compile-only checks for the MCU
cross compilers; a bounded fuzz run (tests/fuzz/wire_fuzz.c) and a proof that it can fail."""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tinysplit.wire import (MAX_PAYLOAD, CobsDeframer, DecodeError, Frame, FrameType, cobs_encode, decode_frame,
                            encode_frame)
from tinysplit.wire.payloads import (ADAPTIVE_OUTPUT_CHUNK, AdaptiveOutput, Chunk, EarlyLabel, Hello, KeyValues,
                                     NairSlice, Result, RocoinPortion, Session, decode_payload, make_frame)
from tinysplit.wire.vectors import load_vectors

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "firmware_templates" / "runtime"
CODEC = RUNTIME / "ts_wire.c"
FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
VECTORS = load_vectors()

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wsign-conversion", "-pedantic"]
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
# The codec may use string.h and nothing else from libc.
ALLOWED_LIBC = {"memmove", "memset", "memcpy", "memcmp"}



def _build(tmp_path: Path, name: str, sources: list[Path], extra: list[str] | None = None) -> Path:
    exe = tmp_path / name
    cmd = ["gcc", *SAN, "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(RUNTIME), *(extra or []),
           *map(str, sources), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return exe


def _run(exe: Path, args: list[str] | None = None, stdin: str | None = None, timeout: float = 120):
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    return subprocess.run([str(exe), *(args or [])], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env)


# ---------------------------------------------------------------------------------------------
# The vectors, byte for byte, in a generated C program.

def _c_bytes(name: str, b: bytes) -> str:
    body = ", ".join(f"0x{x:02x}" for x in b) or "0"
    return f"static const uint8_t {name}[] = {{{body}}};\n"


_VECTOR_MAIN = r"""
static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL "); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Parse v with its type's parser, then rebuild it with the type's builder. */
static size_t rebuild(const ts_frame_view *v, uint8_t *out, size_t cap)
{
    ts_hello he; ts_nair_slice ns; ts_early_label el; ts_rocoin_portion rp; ts_result re; ts_adaptive_output ao;
    ts_session se;
    ts_kv items[204];
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

int main(void)
{
    static uint8_t out[2 * TS_MAX_ENCODED], rxbuf[TS_MAX_ENCODED];
    size_t i, k;
    int good = 0, bad = 0;
    CHECK(ts_crc32(crc_input, sizeof crc_input) == crc_expected, "crc32 check value %08lx",
          (unsigned long)ts_crc32(crc_input, sizeof crc_input));
    for (i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        const struct good *g = &goods[i];
        ts_frame_view v;
        ts_cobs_rx rx;
        ts_drop_counters drops;
        size_t n, frames = 0;
        ts_drop_reason r;
        n = ts_frame_encode(&g->h, g->payload_len ? g->payload : NULL, g->payload_len, out, sizeof out);
        CHECK(n == g->frame_len && memcmp(out, g->frame, n) == 0, "%s: encode", g->name);
        n = ts_cobs_encode(g->frame, g->frame_len, out, sizeof out);
        out[n++] = 0;
        CHECK(n == g->serial_len && memcmp(out, g->serial, n) == 0, "%s: cobs", g->name);
        r = ts_frame_decode(g->frame, g->frame_len, &v);
        CHECK(r == TS_OK, "%s: decode %s", g->name, ts_drop_reason_name(r));
        if (r == TS_OK) {
            CHECK(v.h.type == g->h.type && v.h.device_id == g->h.device_id && v.h.bundle_id == g->h.bundle_id &&
                  v.h.seq == g->h.seq && v.h.part_index == g->h.part_index && v.h.part_count == g->h.part_count,
                  "%s: decoded header", g->name);
            CHECK(v.payload_len == g->payload_len && memcmp(v.payload, g->payload, g->payload_len) == 0,
                  "%s: decoded payload", g->name);
            CHECK(ts_payload_check(&v) == TS_OK, "%s: payload check", g->name);
            n = rebuild(&v, out, sizeof out);
            CHECK(n == g->frame_len && memcmp(out, g->frame, n) == 0, "%s: parse + build", g->name);
        }
        ts_drops_reset(&drops);
        ts_cobs_rx_init(&rx, rxbuf, sizeof rxbuf, &drops);
        for (k = 0; k < g->serial_len; k++) {
            const uint8_t *f = NULL;
            size_t fl = 0;
            if (ts_cobs_rx_push(&rx, g->serial[k], &f, &fl)) {
                frames++;
                CHECK(k == g->serial_len - 1 && fl == g->frame_len && memcmp(f, g->frame, fl) == 0,
                      "%s: streaming receiver frame", g->name);
            }
        }
        CHECK(frames == 1 && ts_drops_total(&drops) == 0, "%s: streaming receiver gave %u frames",
              g->name, (unsigned)frames);
        good++;
    }
    for (i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        ts_frame_view v;
        ts_drop_reason r = ts_frame_decode(bads[i].frame, bads[i].frame_len, &v);
        CHECK(strcmp(ts_drop_reason_name(r), bads[i].reason) == 0, "%s: dropped as %s, expected %s",
              bads[i].name, ts_drop_reason_name(r), bads[i].reason);
        bad++;
    }
    printf("VECTORS good=%d bad=%d failures=%d\n", good, bad, failures);
    return failures ? 1 : 0;
}
"""


def _vector_program(corrupt: bool = False) -> str:
    src = ['#include <stdio.h>\n#include <string.h>\n#include "ts_wire.h"\n']
    c = VECTORS["crc32_check"]
    src.append(_c_bytes("crc_input", bytes.fromhex(c["input"])))
    src.append(f"static const uint32_t crc_expected = 0x{c['crc32']}u;\n")
    goods, bads = [], []
    for i, v in enumerate(VECTORS["frames"]):
        frame = bytearray.fromhex(v["frame"])
        if corrupt and i == 0:
            frame[-1] ^= 0x01  # the self-test: one wrong expected byte must fail the program
        src.append(_c_bytes(f"g{i}_payload", bytes.fromhex(v["payload"])))
        src.append(_c_bytes(f"g{i}_frame", bytes(frame)))
        src.append(_c_bytes(f"g{i}_serial", bytes.fromhex(v["serial"])))
        goods.append(f'{{"{v["name"]}", {{{v["type"]}u, {v["device_id"]}u, {v["bundle_id"]}u, {v["seq"]}u, '
                     f'{v["part_index"]}u, {v["part_count"]}u}}, g{i}_payload, {len(v["payload"]) // 2}u, '
                     f'g{i}_frame, {len(frame)}u, g{i}_serial, {len(v["serial"]) // 2}u}}')
    for i, v in enumerate(VECTORS["bad"]):
        src.append(_c_bytes(f"b{i}_frame", bytes.fromhex(v["frame"])))
        bads.append(f'{{"{v["name"]}", b{i}_frame, {len(v["frame"]) // 2}u, "{v["reason"]}"}}')
    src.append("struct good { const char *name; ts_frame_header h; const uint8_t *payload; size_t payload_len;\n"
               "  const uint8_t *frame; size_t frame_len; const uint8_t *serial; size_t serial_len; };\n")
    src.append("struct bad { const char *name; const uint8_t *frame; size_t frame_len; const char *reason; };\n")
    src.append("static const struct good goods[] = {\n  " + ",\n  ".join(goods) + "\n};\n")
    src.append("static const struct bad bads[] = {\n  " + ",\n  ".join(bads) + "\n};\n")
    src.append(_VECTOR_MAIN)
    return "".join(src)


def test_c_codec_passes_every_vector_byte_for_byte(tmp_path):
    prog = tmp_path / "vectors_main.c"
    prog.write_text(_vector_program())
    r = _run(_build(tmp_path, "vectors", [prog, CODEC]))
    assert r.returncode == 0, r.stdout + r.stderr
    n_good, n_bad = len(VECTORS["frames"]), len(VECTORS["bad"])
    assert f"VECTORS good={n_good} bad={n_bad} failures=0" in r.stdout
    assert n_good >= 10 and n_bad >= 14


def test_vector_program_fails_on_a_wrong_expected_byte(tmp_path):
    """The generated checks are not vacuous: one flipped expected byte makes the program fail."""
    prog = tmp_path / "vectors_bad.c"
    prog.write_text(_vector_program(corrupt=True))
    r = _run(_build(tmp_path, "vectors_bad", [prog, CODEC]))
    assert r.returncode == 1
    assert "FAIL hello: encode" in r.stdout
    assert re.search(r"failures=[1-9]", r.stdout)


_ADAPTIVE_MAIN = r"""
#include <stdio.h>
#include <string.h>
#include "ts_wire.h"

int main(void)
{
    static uint8_t out[TS_MAX_FRAME], data[TS_ADAPTIVE_OUTPUT_CHUNK + 1u];
    ts_frame_header h = {TS_LATENT, 4u, 0x3B465AFAu, 13u, 1u, 2u}; /* the builder forces the type */
    ts_adaptive_output p, q;
    ts_frame_view v;
    size_t i, n;
    for (i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
    p.skip_mask = 0x80000001u;
    p.instructions = 0u;
    p.data = data;
    p.data_len = TS_ADAPTIVE_OUTPUT_CHUNK + 1u;
    printf("over %lu\n", (unsigned long)ts_build_adaptive_output(&h, &p, out, sizeof out));
    p.data_len = TS_ADAPTIVE_OUTPUT_CHUNK;
    printf("small %lu\n", (unsigned long)ts_build_adaptive_output(&h, &p, out, sizeof out - 1u));
    n = ts_build_adaptive_output(&h, &p, out, sizeof out);
    printf("frame ");
    for (i = 0; i < n; i++) printf("%02x", out[i]);
    printf("\n");
    printf("decode %s\n", ts_drop_reason_name(ts_frame_decode(out, n, &v)));
    printf("parse %s\n", ts_drop_reason_name(ts_parse_adaptive_output(&v, &q)));
    printf("fields %lx %lu %lu %d\n", (unsigned long)q.skip_mask, (unsigned long)q.instructions,
           (unsigned long)q.data_len, q.data == v.payload + TS_ADAPTIVE_OUTPUT_HEADER);
    /* the output already in place after the 8-byte prefix, as an app writes it */
    memset(out, 0, sizeof out);
    memcpy(out + TS_HEADER_SIZE + TS_ADAPTIVE_OUTPUT_HEADER, data, TS_ADAPTIVE_OUTPUT_CHUNK);
    p.data = out + TS_HEADER_SIZE + TS_ADAPTIVE_OUTPUT_HEADER;
    n = ts_build_adaptive_output(&h, &p, out, sizeof out);
    printf("inplace ");
    for (i = 0; i < n; i++) printf("%02x", out[i]);
    printf("\n");
    /* short payloads: 0..7 bytes */
    printf("short");
    for (i = 0; i < TS_ADAPTIVE_OUTPUT_HEADER; i++) {
        v.payload_len = i;
        printf(" %s/%s", ts_drop_reason_name(ts_parse_adaptive_output(&v, &q)),
               ts_drop_reason_name(ts_payload_check(&v)));
    }
    printf("\n");
    v.payload_len = TS_ADAPTIVE_OUTPUT_HEADER;
    printf("empty %s\n", ts_drop_reason_name(ts_parse_adaptive_output(&v, &q)));
    v.h.type = TS_LATENT;
    printf("wrongtype %s\n", ts_drop_reason_name(ts_parse_adaptive_output(&v, &q)));
    return 0;
}
"""


def test_c_adaptive_output_builder_and_parser(tmp_path):
    """ADAPTIVE_OUTPUT in C: at most TS_ADAPTIVE_OUTPUT_CHUNK = MAX_PAYLOAD - 8 output bytes per frame
    (the max-payload vector, byte for byte, also with the data already in place), fields parsed, and
    payloads shorter than the 8-byte prefix dropped as `payload`."""
    prog = tmp_path / "adaptive_main.c"
    prog.write_text(_ADAPTIVE_MAIN)
    r = _run(_build(tmp_path, "adaptive", [prog, CODEC]))
    assert r.returncode == 0, r.stdout + r.stderr
    vec = next(v for v in VECTORS["frames"] if v["name"] == "adaptive_output_max_payload")
    assert r.stdout.splitlines() == [
        "over 0", "small 0", f"frame {vec['frame']}", "decode ok", "parse ok", "fields 80000001 0 1016 1",
        f"inplace {vec['frame']}", "short" + " payload/payload" * 8, "empty ok", "wrongtype type"]


# ---------------------------------------------------------------------------------------------
# Cross-check against the Python codec through a stdin/stdout driver.

@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed: ./setup.sh installs the toolchains the tests need")
    d = tmp_path_factory.mktemp("wire_driver")
    return _build(d, "wire_driver", [FUZZ_DIR / "wire_driver.c", CODEC])


def _drive(exe: Path, lines: list[str]) -> list[str]:
    r = _run(exe, stdin="\n".join(lines) + "\n", timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    out = r.stdout.splitlines()
    assert len(out) == len(lines)
    return out


def _h(b: bytes) -> str:
    return b.hex() or "-"


def _random_payload(rng: random.Random, t: FrameType) -> bytes:
    """A valid payload of type t, built by the Python payload encoders."""
    u16 = lambda: rng.choice([0, 1, 0xFFFF, rng.randrange(0x10000)])  # noqa: E731
    u32 = lambda: rng.choice([0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)])  # noqa: E731
    data = lambda m: rng.randbytes(rng.randrange(m + 1))  # noqa: E731
    if t == FrameType.HELLO:
        name = "".join(chr(rng.randrange(128)) for _ in range(rng.randrange(65)))
        p = Hello(name, u32(), u32(), u32(), u16(), u16())
    elif t in (FrameType.INPUT, FrameType.LATENT):
        p = Chunk(data(MAX_PAYLOAD))
    elif t == FrameType.NAIR_SLICE:
        total = rng.randrange(1, 0x10000)
        count = rng.randrange(1, total + 1)
        p = NairSlice(rng.randrange(total - count + 1), count, total, data(MAX_PAYLOAD - 6))
    elif t == FrameType.EARLY_LABEL:
        p = EarlyLabel(u16(), rng.randrange(256))
    elif t == FrameType.ROCOIN_PORTION:
        total = rng.randrange(1, 0x10000)
        p = RocoinPortion(rng.randrange(total), total, data(MAX_PAYLOAD - 4))
    elif t == FrameType.ADAPTIVE_OUTPUT:
        p = AdaptiveOutput(u32(), u32(), data(ADAPTIVE_OUTPUT_CHUNK))
    elif t in (FrameType.CONTROL, FrameType.STATS):
        p = KeyValues(tuple((rng.randrange(256), u32()) for _ in range(rng.randrange(12))))
    elif t == FrameType.SESSION:
        p = Session(u32(), u32())
    else:
        p = Result(u16(), u16(), rng.randrange(256))
    return make_frame(t, p, 0, 0, 0).payload


def _random_frame(rng: random.Random) -> Frame:
    t = rng.choice(list(FrameType))
    if rng.random() < 0.7:
        payload = _random_payload(rng, t)
    else:  # raw bytes: often invalid for the type, which the payload check must see the same way
        payload = rng.randbytes(rng.choice([0, 1, 3, 4, 5, 6, 17, rng.randrange(MAX_PAYLOAD + 1)]))
    count = rng.choice([1, 1, 2, 3, 0xFFFF, rng.randrange(1, 0x10000)])
    return Frame(t, rng.randrange(0x10000), rng.randrange(1 << 32), rng.randrange(1 << 32), payload,
                 rng.randrange(count), count)


def _mutate(rng: random.Random, b: bytes) -> bytes:
    x = bytearray(b)
    k = rng.randrange(6)
    if k == 0 and x:
        i = rng.randrange(len(x))
        x[i] ^= 1 << rng.randrange(8)
    elif k == 1 and x:
        x[rng.randrange(min(len(x), 24))] = rng.randrange(256)  # header bytes
    elif k == 2:
        del x[rng.randrange(len(x) + 1):]
    elif k == 3:
        x += rng.randbytes(rng.randrange(1, 8))
    elif k == 4 and len(x) >= 24:  # a header field changed and the CRC made valid again
        x[rng.choice([2, 3, 14, 15, 16, 17, 18, 19])] = rng.randrange(256)
        x[-4:] = struct.pack("<I", __import__("zlib").crc32(bytes(x[:-4])))
    else:
        x = bytearray(rng.randbytes(rng.randrange(60)))
    return bytes(x)


def _python_decode_line(b: bytes) -> str:
    try:
        f = decode_frame(b)
    except DecodeError as e:
        return f"DROP {e.reason}"
    try:
        decode_payload(f)
        check = "ok"
    except DecodeError as e:
        check = e.reason
    # A valid payload is parsed and rebuilt by the C builders: byte-identical to the Python encoders.
    rebuilt = _h(encode_frame(f)) if check == "ok" else "="
    return (f"OK {int(f.type)} {f.device_id} {f.bundle_id} {f.seq} {f.part_index} {f.part_count} {_h(f.payload)} "
            f"{check} {_h(encode_frame(f))} {rebuilt}")


def test_c_decodes_and_reencodes_python_frames(driver):
    rng = random.Random(20261123)
    inputs = []
    for _ in range(3000):
        b = encode_frame(_random_frame(rng))
        inputs.append(b if rng.random() < 0.6 else _mutate(rng, b))
    got = _drive(driver, [f"D {_h(b)}" for b in inputs])
    expected = [_python_decode_line(b) for b in inputs]
    mismatches = [(b.hex(), g, e) for b, g, e in zip(inputs, got, expected) if g != e]
    assert not mismatches, mismatches[:3]
    # The mix exercises the OK path (with valid and invalid payloads) and every frame-level reason.
    kinds = {line.split()[1] if line.startswith("DROP") else "ok/" + line.split()[8] for line in expected}
    assert kinds >= {"ok/ok", "ok/payload", "short", "magic", "version", "length", "crc", "type", "part"}, kinds


def test_python_decodes_c_encoded_frames(driver):
    rng = random.Random(7)
    cases = []
    for _ in range(2000):
        t = rng.choice([int(x) for x in FrameType])
        count = rng.choice([0, 1, 2, rng.randrange(0x10000)])
        idx = rng.choice([0, 1, rng.randrange(0x10000)]) if count else 0
        n = rng.choice([0, 5, MAX_PAYLOAD, MAX_PAYLOAD + 1, rng.randrange(MAX_PAYLOAD + 1)])
        cases.append((t, rng.randrange(0x10000), rng.randrange(1 << 32), rng.randrange(1 << 32), idx, count,
                      rng.randbytes(n)))
    got = _drive(driver, [f"E {t} {d} {b} {s} {i} {c} {_h(p)}" for t, d, b, s, i, c, p in cases])
    ok = 0
    for (t, d, b, s, i, c, p), line in zip(cases, got):
        f = Frame(FrameType(t), d, b, s, p, i, c)
        try:
            ref = encode_frame(f)
        except ValueError:
            assert line == "ERR", (f, line)
            continue
        assert line == f"F {ref.hex()}"
        assert decode_frame(bytes.fromhex(line[2:])) == f
        ok += 1
    assert 500 < ok < len(cases)  # both the accepted and the refused cases occurred


def test_cobs_encoder_matches_python(driver):
    rng = random.Random(3)
    datas = [b"", b"\x00", b"\x00\x00", bytes(range(1, 255)), bytes(range(1, 255)) + b"\x00",
             bytes(range(1, 255)) * 2, b"\x01" * 253, b"\x01" * 255, b"\x01" * 508 + b"\x00" + b"\x01" * 254]
    for _ in range(1500):
        n = rng.choice([rng.randrange(1100), 254 * rng.randrange(1, 5), 254 * rng.randrange(1, 5) + rng.choice([-1, 1])])
        zero_rate = rng.choice([0.0, 0.0, 0.01, 0.3, 0.9])
        datas.append(bytes(0 if rng.random() < zero_rate else rng.randrange(1, 256) for _ in range(n)))
    got = _drive(driver, [f"C {_h(d)}" for d in datas])
    for d, line in zip(datas, got):
        assert line == f"C {cobs_encode(d).hex()}", d.hex()


def test_streaming_receiver_matches_python_deframer(driver):
    rng = random.Random(11)
    streams = []
    for _ in range(400):
        s = bytearray()
        for _ in range(rng.randrange(1, 6)):
            k = rng.randrange(6)
            if k <= 1:
                s += cobs_encode(encode_frame(_random_frame(rng))) + b"\x00"
            elif k == 2:
                s += rng.randbytes(rng.randrange(40))  # garbage, zeros included
            elif k == 3:
                s += bytes(rng.randrange(1, 256) for _ in range(rng.choice([1052, 1053, 1054, 1500])))
                s += b"\x00"
            elif k == 4:
                s += b"\x00" * rng.randrange(1, 3)
            else:
                s += bytes([rng.randrange(2, 255)]) + b"\x00"  # a code byte past the block's end: cobs
        streams.append(bytes(s))
    got = _drive(driver, [f"S {_h(s)}" for s in streams])
    totals = [0, 0, 0]
    for s, line in zip(streams, got):
        d = CobsDeframer()
        frames = d.feed(s)
        want = ",".join(_h(f) for f in frames) if frames else "="
        assert line == f"S {want} {d.drops.get('cobs', 0)} {d.drops.get('oversize', 0)}", s.hex()
        totals[0] += len(frames)
        totals[1] += d.drops.get("cobs", 0)
        totals[2] += d.drops.get("oversize", 0)
    assert all(t > 20 for t in totals), totals


# ---------------------------------------------------------------------------------------------
# Strict warnings on every toolchain, and nothing from libc beyond string.h.

def _undefined_symbols(nm: str, obj: Path) -> set[str]:
    r = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Compiler runtime helpers (libgcc: __aeabi_uidiv on a Cortex-M0+, ...) are not libc.
    return {line.split()[-1] for line in r.stdout.splitlines() if line.strip() and not line.split()[-1].startswith("__")}


def test_compiles_clean_on_host_gcc(tmp_path):
    obj = tmp_path / "ts_wire.o"
    r = subprocess.run(["gcc", *WARN, "-O2", "-c", str(CODEC), "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _undefined_symbols("nm", obj) <= ALLOWED_LIBC


@pytest.mark.parametrize("cc,flags", [
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-Os"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m0plus", "-mthumb", "-Os"]),
    ("riscv64-unknown-elf-gcc", ["-march=rv32imac", "-mabi=ilp32", "-Os"]),
], ids=["cortex-m4", "cortex-m0plus", "rv32imac"])
def test_cross_compiles_clean(tmp_path, cc, flags):
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is not installed: ./setup.sh installs the toolchains the tests need")
    obj = tmp_path / "ts_wire.o"
    cmd = [cc, *WARN, *flags, "-c", str(CODEC), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "stdint.h: No such file" in r.stderr:
        # A bare-metal gcc without a default C library (Debian's riscv64-unknown-elf) finds the
        # headers through picolibc's specs.
        cmd.insert(1, "--specs=picolibc.specs")
        r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    nm = cc.replace("-gcc", "-nm")
    if shutil.which(nm):
        assert _undefined_symbols(nm, obj) <= ALLOWED_LIBC
    size = cc.replace("-gcc", "-size")
    if shutil.which(size):
        r = subprocess.run([size, str(obj)], capture_output=True, text=True)
        text = int(r.stdout.splitlines()[1].split()[0])
        assert 0 < text < 8192, r.stdout  # a small codec; measured about 2.5 KB on Cortex-M4 -Os


# ---------------------------------------------------------------------------------------------
# The fuzz harness: a bounded CI run, and proofs that it can fail.

FUZZ_SECONDS = 30  # a cap for slow machines; the iteration cap ends it in ~10-15 s here
FUZZ_MAX_ITERATIONS = 250_000
FUZZ_MIN_ITERATIONS = 100_000
_SUMMARY = re.compile(r"^wire_fuzz: iterations=(\d+) seconds=([\d.]+) rate=(\d+)/s seed=(\d+) .* ok=(\d+) .*"
                      r"crc=(\d+) .*payload_ok=(\d+) payload_bad=(\d+) rx_frames=(\d+) rx_drops=(\d+)$", re.M)


def _seed_file(tmp_path: Path) -> Path:
    p = tmp_path / "seeds.txt"
    p.write_text("\n".join([v["frame"] for v in VECTORS["frames"]] + [v["frame"] for v in VECTORS["bad"]]) + "\n")
    return p


def _fuzz_exe(tmp_path: Path, name: str, defines: list[str] | None = None) -> Path:
    return _build(tmp_path, name, [FUZZ_DIR / "wire_fuzz.c", CODEC], [f"-D{d}" for d in defines or []])


def test_fuzz_harness_runs_clean(tmp_path):
    exe = _fuzz_exe(tmp_path, "wire_fuzz")
    r = _run(exe, ["20261123", str(FUZZ_MAX_ITERATIONS), str(FUZZ_SECONDS), str(_seed_file(tmp_path))],
             timeout=FUZZ_SECONDS + 60)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
    m = _SUMMARY.search(r.stdout)
    assert m, r.stdout
    iterations, ok, crc, payload_ok, payload_bad, rx_frames, rx_drops = (int(m.group(i)) for i in (1, 5, 6, 7, 8, 9, 10))
    print(m.group(0))
    assert iterations >= FUZZ_MIN_ITERATIONS, m.group(0)
    # The inputs reached every stage: accepted frames, CRC drops, valid and invalid payloads, the receiver.
    assert min(ok, crc, payload_ok, payload_bad, rx_frames, rx_drops) > 100, m.group(0)


def test_fuzz_harness_sanitizer_catches_an_injected_out_of_bounds_read(tmp_path):
    exe = _fuzz_exe(tmp_path, "wire_fuzz_oob", ["WIRE_FUZZ_INJECT_OOB"])
    r = _run(exe, ["1", "100000", "20", str(_seed_file(tmp_path))], timeout=80)
    assert r.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in r.stderr
    assert "wire_fuzz: iterations=" not in r.stdout


def test_fuzz_harness_invariants_catch_a_wrong_verdict(tmp_path):
    exe = _fuzz_exe(tmp_path, "wire_fuzz_blind", ["WIRE_FUZZ_INJECT_BLIND_REFERENCE"])
    r = _run(exe, ["1", "100000", "20", str(_seed_file(tmp_path))], timeout=80)
    assert r.returncode != 0
    assert "INVARIANT FAILED" in r.stderr and "decoder verdict equals the reference" in r.stderr
