"""Authenticated frames in C (firmware_templates/runtime/ts_auth.c), the device side: our SHA-256 and
HMAC-SHA-256 against the published vectors (FIPS 180-2, RFC 4231) and hashlib, every frame, altered
frame and window vector of tinysplit/wire/auth_vectors.json byte for byte, and the C seal, split,
verify, replay window and device session against the Python reference (tinysplit.wire.auth) on random
frames, keys, counters and event sequences. Built with the host gcc under strict warnings and
AddressSanitizer/UBSan through a stdin/stdout driver (tests/fuzz/auth_driver.c); mutants of ts_auth.c
show that each check can fail; compile-only checks (with code size and stack use) for the MCU cross
compilers."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tinysplit.wire import DecodeError, Frame, FrameType, decode_frame, encode_frame
from tinysplit.wire.auth import (DEVICE_TO_HOST, HOST_TO_DEVICE, MAX_COUNTER, DeviceSession, HostSession,
                                 ReplayWindow, seal, split, verify)
from tinysplit.wire.auth_vectors import load
from tinysplit.wire.frame import crc32
from tinysplit.wire.payloads import Chunk, Hello, KeyValues, Session, make_frame

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "firmware_templates" / "runtime"
AUTH_C = RUNTIME / "ts_auth.c"
CODEC = RUNTIME / "ts_wire.c"
FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wsign-conversion", "-pedantic"]
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
ALLOWED_LIBC = {"memmove", "memset", "memcpy", "memcmp"}

V = load()
KEY, OTHER = bytes.fromhex(V["key"]), bytes.fromhex(V["other_key"])
DEVICE, BUNDLE = V["device"], V["bundle"]


# ---------------------------------------------------------------------------------------------
# Build and drive

def _build(out: Path, auth_c: Path = AUTH_C) -> Path:
    """ts_auth.c and ts_wire.c under the runtime's strict warnings, the driver under the test's."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed: ./setup.sh installs the toolchains the tests need")
    objs = []
    for src in (auth_c, CODEC):
        obj = out / (src.stem + ".o")
        cmd = ["gcc", *WARN, *SAN, "-I", str(RUNTIME), "-c", str(src), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
        objs.append(str(obj))
    exe = out / "auth_driver"
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", *SAN, "-I", str(RUNTIME), str(FUZZ_DIR / "auth_driver.c"),
           *objs, "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return exe


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("auth_driver"))


def drive(exe: Path, lines: list[str]) -> list[str]:
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    r = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0 and "runtime error" not in r.stderr, r.stderr[-4000:]
    out = r.stdout.splitlines()
    assert len(out) == len(lines), r.stderr[-4000:]
    return out


def _h(b: bytes) -> str:
    return b.hex() or "-"


def py_verdict(b: bytes, key: bytes, direction: int, dn: int, hn: int) -> str:
    """What the C driver's V command must answer, from the Python reference."""
    try:
        s = split(b)
        verify(s, key, direction, dn, hn)
    except DecodeError as e:
        return f"DROP {e.reason}"
    return f"OK {s.counter} {int(s.frame.type)} {_h(s.frame.payload)}"


def random_frame(rng: random.Random, device: int | None = None) -> Frame:
    t = rng.choice(list(FrameType))
    n = rng.choice([0, 1, 5, 8, 63, 64, 1023, 1024, rng.randrange(1025)])
    count = rng.choice([1, 1, 2, 3, 0xFFFF, rng.randrange(1, 0x10000)])
    return Frame(t, rng.randrange(0x10000) if device is None else device, rng.randrange(1 << 32),
                 rng.randrange(1 << 32), rng.randbytes(n), rng.randrange(count), count)


def u32(rng: random.Random) -> int:
    return rng.choice([0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, rng.randrange(1 << 32)])


def recrc(b: bytes) -> bytes:
    return b[:-4] + struct.pack("<I", crc32(b[:-4]))


def mutate(rng: random.Random, b: bytes) -> bytes:
    x = bytearray(b)
    k = rng.randrange(7)
    if k == 0:  # one bit anywhere, CRC repaired: reaches the tag check
        i = rng.randrange(len(x) - 4)
        x[i] ^= 1 << rng.randrange(8)
        return recrc(bytes(x))
    if k == 1:  # one bit anywhere, CRC not repaired
        x[rng.randrange(len(x))] ^= 1 << rng.randrange(8)
    elif k == 2:  # truncated
        del x[rng.randrange(len(x) + 1):]
    elif k == 3:  # extended, CRC repaired
        x[-4:-4] = rng.randbytes(rng.randrange(1, 30))
        return recrc(bytes(x))
    elif k == 4:  # a header field, CRC repaired
        x[rng.choice([2, 3, 14, 15, 16, 17, 18, 19])] = rng.randrange(256)
        return recrc(bytes(x))
    elif k == 5:  # the tag or the counter, CRC repaired
        plen = len(x) - 44
        x[20 + plen + rng.randrange(20)] ^= 1 << rng.randrange(8)
        return recrc(bytes(x))
    else:
        x = bytearray(rng.randbytes(rng.randrange(90)))
    return bytes(x)


# ---------------------------------------------------------------------------------------------
# Checks (functions of the executable, so the mutants below can run them too)

ODD_CHUNKS = "1,3,7,63,64,65,127,1000,4093"


def check_sha256(exe: Path) -> None:
    """FIPS 180-2 (the million 'a' streamed in odd-sized chunks) and hashlib on random messages whose
    lengths straddle the padding boundaries, each fed in random chunks."""
    rng = random.Random(180)
    cases, want = [], []
    for v in V["sha256"]:
        for chunks in ("64", ODD_CHUNKS):
            cases.append(f"H {_h(bytes.fromhex(v['message']))} {v['repeat']} {chunks}")
            want.append(f"H {v['digest']}")
    assert any(v["repeat"] == 1_000_000 for v in V["sha256"])
    for n in [*range(0, 130), 183, 184, 191, 192, 1077, 4096, rng.randrange(5000)]:
        msg = rng.randbytes(n)
        chunks = ",".join(str(rng.choice([1, 2, 5, 31, 64, 65, 200])) for _ in range(rng.randrange(1, 6)))
        cases.append(f"H {_h(msg)} 1 {chunks}")
        want.append(f"H {hashlib.sha256(msg).hexdigest()}")
    got = drive(exe, cases)
    bad = [(c[:60], g, w) for c, g, w in zip(cases, got, want) if g != w]
    assert not bad, bad[:3]


def check_hmac(exe: Path) -> None:
    """RFC 4231 test cases 1 to 7 (case 5 truncated to 128 bits) and hmac/hashlib on random keys of
    every length around the block size (hashed first above 64 bytes) and random data."""
    rng = random.Random(4231)
    cases, want = [], []
    for v in V["hmac_sha256"]:
        cases.append(f"M {v['key']} {_h(bytes.fromhex(v['data']))}")
        want.append(v["mac"])
    assert len(V["hmac_sha256"]) == 7 and sum(len(v["mac"]) == 32 for v in V["hmac_sha256"]) == 1
    for n in [*range(0, 140), 200, 1000]:
        key, data = rng.randbytes(n), rng.randbytes(rng.choice([0, 1, 55, 56, 64, 119, rng.randrange(1100)]))
        cases.append(f"M {_h(key)} {_h(data)}")
        want.append(hmac.new(key, data, hashlib.sha256).hexdigest())
    got = drive(exe, cases)
    bad = [(c[:60], g, w) for c, g, w in zip(cases, got, want) if not g.startswith("M ") or g[2:2 + len(w)] != w]
    assert not bad, bad[:3]


def check_frame_vectors(exe: Path) -> None:
    """Every sealed frame: C seals its plain frame to exactly the sealed bytes and verifies the sealed
    one; every altered frame is dropped with its listed reason."""
    cases, want = [], []
    for v in V["frames"]:
        d, dn, hn, c = v["direction"], v["device_nonce"], v["host_nonce"], v["counter"]
        cases.append(f"S {v['plain']} {d} {dn} {hn} {c} {V['key']}")
        want.append(f"S {v['sealed']}")
        plain = decode_frame(bytes.fromhex(v["plain"]))
        cases.append(f"V {v['sealed']} {d} {dn} {hn} {V['key']}")
        want.append(f"OK {c} {int(plain.type)} {_h(plain.payload)}")
    for v in V["bad"]:
        cases.append(f"V {v['hex']} {v['direction']} {v['device_nonce']} {v['host_nonce']} {V['key']}")
        want.append(f"DROP {v['reason']}")
    got = drive(exe, cases)
    bad = [(c[:40], g[:80], w[:80]) for c, g, w in zip(cases, got, want) if g != w]
    assert not bad, bad
    assert len(V["frames"]) >= 8 and len(V["bad"]) >= 12


def check_window(exe: Path) -> None:
    """The committed window sequence, counter 0 on a fresh window, and random sequences against
    ReplayWindow (edges of the 64 below the highest, jumps of 31..33, 63..65 and more)."""
    rng = random.Random(4303)
    seqs = [[s["counter"] for s in V["window"]], [0], [0, 1, 0], [64, 1, 0, 65, 1, 2]]
    for _ in range(300):
        seq, c = [], rng.randrange(1, 200)
        for _ in range(rng.randrange(1, 60)):
            c = max(0, min(MAX_COUNTER, c + rng.choice([-65, -64, -63, -33, -32, -31, -1, 0, 1, 2, 31, 32, 33, 63,
                                                        64, 65, rng.randrange(-100, 100)])))
            seq.append(c)
        seqs.append(seq)
    seqs.append([MAX_COUNTER - 1, MAX_COUNTER, MAX_COUNTER, MAX_COUNTER - 63, MAX_COUNTER - 64, 1])
    want = []
    for seq in seqs:
        w, bits = ReplayWindow(), ""
        for c in seq:
            try:
                w.check(c)
            except DecodeError:
                bits += "0"
                continue
            w.accept(c)
            bits += "1"
        want.append(f"W {bits}")
    assert want[0] == "W " + "".join("1" if s["accept"] else "0" for s in V["window"])
    assert want[1] == "W 0"
    got = drive(exe, ["W " + ",".join(map(str, s)) for s in seqs])
    bad = [(s, g, w) for s, g, w in zip(seqs, got, want) if g != w]
    assert not bad, bad[:3]


def check_differential(exe: Path) -> None:
    """Random frames, keys, directions, nonces and counters: the C seal equals the Python seal (so
    Python accepts what C seals); C accepts what Python seals, and drops every mutated frame for
    the reason Python drops it (or accepts it where Python does)."""
    rng = random.Random(20261214)
    cases, want, kinds = [], [], set()
    for _ in range(1500):
        f = random_frame(rng)
        key = rng.choice([KEY, OTHER, rng.randbytes(32)])
        d, dn, hn, c = rng.choice([DEVICE_TO_HOST, HOST_TO_DEVICE, rng.randrange(256)]), u32(rng), u32(rng), u32(rng)
        sealed = seal(f, key, d, dn, hn, c)
        cases.append(f"S {_h(encode_frame(f))} {d} {dn} {hn} {c} {key.hex()}")
        want.append(f"S {sealed.hex()}")
        assert py_verdict(sealed, key, d, dn, hn).startswith("OK")  # Python accepts it, hence what C seals
        # verified under the right parameters, or one of them changed
        vkey, vd, vdn, vhn = key, d, dn, hn
        k = rng.randrange(6)
        if k == 1:
            vkey = rng.choice([KEY, OTHER]) if key not in (KEY, OTHER) else (OTHER if key == KEY else KEY)
        elif k == 2:
            vd = d ^ 3
        elif k == 3:
            vdn = dn ^ (1 << rng.randrange(32))
        elif k == 4:
            vhn = hn ^ (1 << rng.randrange(32))
        b = sealed if rng.random() < 0.5 else mutate(rng, sealed) if rng.random() < 0.9 else encode_frame(f)
        cases.append(f"V {_h(b)} {vd} {vdn} {vhn} {vkey.hex()}")
        want.append(py_verdict(b, vkey, vd, vdn, vhn))
        kinds.add(want[-1].split()[0] if want[-1].startswith("OK") else want[-1].split()[1])
    # plain frames the C seal must refuse (Python never produces them): not one plain frame
    for b in (b"", b"TS\x01", encode_frame(random_frame(rng))[:-1], b"TS\x02" + encode_frame(random_frame(rng))[3:],
              b"XS" + encode_frame(random_frame(rng))[2:]):
        cases.append(f"S {_h(b)} 1 1 1 1 {KEY.hex()}")
        want.append("S ERR")
    got = drive(exe, cases)
    bad = [(c[:50], g[:70], w[:70]) for c, g, w in zip(cases, got, want) if g != w]
    assert not bad, bad[:3]
    assert kinds >= {"OK", "auth", "crc", "length", "short", "unauthenticated", "version", "type", "part"}, kinds


def _ref_open(dev: DeviceSession, b: bytes) -> str:
    try:
        dev.open(split(b))
    except DecodeError as e:
        return f"O {e.reason}"
    return "O ok"


def _ref_seal(dev: DeviceSession, f: Frame) -> str:
    before = dev.send_counter
    try:
        return f"P {dev.seal(f).hex()}"
    except (DecodeError, ValueError):
        dev.send_counter = before  # Python's seal raised after counting; C refuses before counting
        return "P ERR"


def _ref_state(dev: DeviceSession) -> str:
    w = dev.window
    return (f"Q {dev.device_nonce} {dev.host_nonce} {dev.send_counter} {dev.session_counter} {w.highest} "
            f"{w.bitmap:016x}")


def check_device_session(exe: Path) -> None:
    """The C device session against DeviceSession on scripted and random event sequences: the same
    verdict for every received frame, the same sealed bytes for every sent one, the same state."""
    rng = random.Random(14)
    boot = 0xBEEF0001
    dev = DeviceSession(DEVICE, KEY, boot)
    host = HostSession(DEVICE, KEY)
    nonce = iter(range(0x1000, 0x100000))
    lines, want = [f"I {KEY.hex()} {boot}"], ["I 0"]
    sent_down: list[bytes] = []

    def deliver(b: bytes) -> None:
        lines.append(f"O {_h(b)}")
        want.append(_ref_open(dev, b))
        sent_down.append(b)

    def send_up(f: Frame) -> None:
        lines.append(f"P {_h(encode_frame(f))}")
        want.append(_ref_seal(dev, f))
        if want[-1] != "P ERR":
            try:  # what the device sealed, the host opens (once the session is confirmed or pending)
                host.open(split(bytes.fromhex(want[-1][2:])))
            except DecodeError:
                pass

    def down(ftype=FrameType.INPUT, payload=None) -> Frame:
        return make_frame(ftype, payload if payload is not None else Chunk(rng.randbytes(rng.randrange(40))), DEVICE,
                          BUNDLE, rng.randrange(100))

    hello_plain = make_frame(FrameType.HELLO, Hello("host-board", 0, 4, 4, 0, 0), DEVICE, BUNDLE, 0)
    lines.append(f"E {_h(encode_frame(hello_plain))}")
    hello = dev.hello(hello_plain)
    want.append(f"E {hello.hex()}")
    # before a session: nothing but SESSION opens, nothing can be sent
    deliver(seal(down(), KEY, HOST_TO_DEVICE, boot, 5, 1))
    send_up(down(FrameType.LATENT))
    session = host.on_hello(split(hello), BUNDLE, lambda: next(nonce))
    deliver(session)
    deliver(session)  # replayed
    for _ in range(600):
        k = rng.randrange(12)
        hn = dev.host_nonce or 1
        if k <= 2 and (host.host_nonce or host.pending):  # a genuine host frame (kept, to be replayed)
            deliver(host.seal(down()))
        elif k == 3 and sent_down:  # a replay of anything delivered before
            deliver(rng.choice(sent_down))
        elif k == 4:  # a frame with a chosen counter near the window, right or wrong key / nonce / direction
            c = max(0, dev.window.highest + rng.randrange(-70, 70))
            key = rng.choice([KEY, KEY, KEY, OTHER])
            d = rng.choice([HOST_TO_DEVICE] * 5 + [DEVICE_TO_HOST])
            deliver(seal(down(), key, d, boot, rng.choice([hn, hn, hn ^ 1, 0]), c))
        elif k == 5:  # a SESSION: genuine, replayed, for another boot, host nonce 0, another key, bad payload
            kk = rng.randrange(6)
            c = host.session_counter + rng.choice([-1, 0, 1, 2])
            if kk == 0:
                deliver(host.on_hello(split(hello), BUNDLE, lambda: next(nonce)))
            elif kk == 1:
                p = Session(boot ^ rng.choice([0, 1]), rng.choice([0, next(nonce)]))
                deliver(seal(down(FrameType.SESSION, p), KEY, HOST_TO_DEVICE, boot, 0, max(c, 0)))
            elif kk == 2:
                deliver(seal(down(FrameType.SESSION, Session(boot, 99)), OTHER, HOST_TO_DEVICE, boot, 0, c + 5))
            elif kk == 3:
                deliver(seal(down(FrameType.SESSION, Session(boot, 99)), KEY, HOST_TO_DEVICE, boot ^ 4, 0, c + 5))
            elif kk == 4:
                bad = Frame(FrameType.SESSION, DEVICE, BUNDLE, 0, rng.randbytes(rng.choice([0, 7, 9])))
                deliver(seal(bad, KEY, HOST_TO_DEVICE, boot, 0, c + 5))
            else:
                deliver(seal(down(FrameType.SESSION, Session(boot, 77)), KEY, HOST_TO_DEVICE, boot, 0, 0))
        elif k == 6 and sent_down:  # tampered
            deliver(mutate(rng, rng.choice(sent_down)))
        elif k == 7:  # the send counter near its end
            c = rng.choice([MAX_COUNTER - 2, MAX_COUNTER - 1, MAX_COUNTER, dev.send_counter])
            lines.append(f"C {c}")
            dev.send_counter = c
            want.append(f"C {int(dev.host_nonce != 0 and c == MAX_COUNTER)}")
        else:
            send_up(random_frame(rng, DEVICE))
        if rng.random() < 0.1:
            lines.append("Q")
            want.append(_ref_state(dev))
    lines.append("Q")
    want.append(_ref_state(dev))
    got = drive(exe, lines)
    bad = [(i, c[:40], g[:70], w[:70]) for i, (c, g, w) in enumerate(zip(lines, got, want)) if g != w]
    assert not bad, bad[:3]
    verdicts = {w for w in want if w.startswith("O ")}
    assert verdicts >= {"O ok", "O auth", "O replay", "O session", "O payload"}, verdicts
    assert "P ERR" in want and sum(w.startswith("P ") and w != "P ERR" for w in want) > 50


def check_device_rules(exe: Path) -> None:
    """The rules spelled out: a frame dropped as forged does not use up its counter (the window moves
    only after the tag verified); a SESSION replayed or older than the last is `replay`; host nonce
    0 is `session`; after the send counter's last value the device must say HELLO again; nonce 0 and
    a missing key are refused."""
    boot, hn = 0x5EED, 0xA5A5
    f = make_frame(FrameType.CONTROL, KeyValues(((4, 1),)), DEVICE, BUNDLE, 1)
    sess = lambda p, c: seal(make_frame(FrameType.SESSION, p, DEVICE, BUNDLE, 0), KEY, HOST_TO_DEVICE,  # noqa: E731
                             boot, 0, c)
    lines = [f"I {KEY.hex()} 0", f"I {KEY.hex()[:-2]} {boot}", f"I {KEY.hex()} {boot}",
             f"O {_h(sess(Session(boot, 0), 1))}",  # host nonce 0
             f"O {_h(sess(Session(boot, hn), 2))}",
             f"O {_h(sess(Session(boot, hn + 1), 2))}",  # not above the last SESSION counter
             f"O {_h(sess(Session(boot, hn + 1), 1))}",
             f"O {_h(seal(f, OTHER, HOST_TO_DEVICE, boot, hn, 5))}",  # forged, counter 5
             f"O {_h(seal(f, KEY, HOST_TO_DEVICE, boot, hn, 5))}",  # the genuine counter 5 still opens
             f"O {_h(seal(f, KEY, HOST_TO_DEVICE, boot, hn, 5))}",  # once
             f"O {_h(seal(f, KEY, HOST_TO_DEVICE, boot, hn, 0))}",  # counter 0
             f"O {_h(seal(f, KEY, HOST_TO_DEVICE, boot, hn, 69))}",
             f"O {_h(seal(f, KEY, HOST_TO_DEVICE, boot, hn, 5))}",  # 64 below the highest: too old
             f"O {_h(seal(f, KEY, HOST_TO_DEVICE, boot, hn, 6))}",  # 63 below, never seen
             f"C {MAX_COUNTER - 1}", f"P {_h(encode_frame(f))}", f"P {_h(encode_frame(f))}", "Q"]
    want = ["I -1", "I -1", "I 0", "O session", "O ok", "O replay", "O replay", "O auth", "O ok", "O replay",
            "O replay", "O ok", "O replay", "O ok", "C 0",
            f"P {seal(f, KEY, DEVICE_TO_HOST, boot, hn, MAX_COUNTER).hex()}", "P ERR",
            f"Q {boot} {hn} {MAX_COUNTER} 2 69 {(1 | 1 << 63):016x}"]
    got = drive(exe, lines)
    bad = [(i, g[:70], w[:70]) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, bad
    assert drive(exe, [f"I {KEY.hex()} {boot}", f"C {MAX_COUNTER}"]) == ["I 0", "C 0"]  # no session: not spent


CHECKS = {"sha256": check_sha256, "hmac": check_hmac, "frame_vectors": check_frame_vectors, "window": check_window,
          "differential": check_differential, "device_session": check_device_session,
          "device_rules": check_device_rules}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_auth_c(driver: Path, name: str):
    CHECKS[name](driver)


# ---------------------------------------------------------------------------------------------
# The checks can fail: each mutant breaks one rule of ts_auth.c and the named check sees it. (An
# early exit in the tag comparison is invisible to any functional test; one that compares only 15
# bytes is not.)

MUTANTS = {
    "tag compares 15 bytes": ("ts_auth_equal(want, f->tag, TS_AUTH_TAG_SIZE)",
                              "ts_auth_equal(want, f->tag, TS_AUTH_TAG_SIZE - 1u)", "frame_vectors"),
    "window accepts before verifying": (
        "    r = ts_auth_window_check(&d->window, f->counter);\n    if (r != TS_OK) {\n        return r;\n    }\n",
        "    r = ts_auth_window_check(&d->window, f->counter);\n    if (r != TS_OK) {\n        return r;\n    }\n"
        "    ts_auth_window_accept(&d->window, f->counter);\n", "device_rules"),
    "window one too wide": ("if (back >= TS_AUTH_WINDOW) {\n        return TS_AUTH_DROP_REPLAY;",
                            "if (back > TS_AUTH_WINDOW) {\n        return TS_AUTH_DROP_REPLAY;", "window"),
    "window one too narrow": ("if (back >= TS_AUTH_WINDOW) {\n        return TS_AUTH_DROP_REPLAY;",
                              "if (back + 1u >= TS_AUTH_WINDOW) {\n        return TS_AUTH_DROP_REPLAY;", "window"),
    "window slide off by one": ("if (shift >= TS_AUTH_WINDOW) {", "if (shift > TS_AUTH_WINDOW) {", "window"),
    "counter 0 accepted": ("    if (counter == 0u) {\n        return TS_AUTH_DROP_REPLAY;\n    }\n", "", "window"),
    "padding boundary": ("if (s->fill > TS_SHA256_BLOCK - 8u) {", "if (s->fill >= TS_SHA256_BLOCK - 8u) {",
                         "sha256"),
    "long keys not hashed": ("if (key_len > TS_SHA256_BLOCK) {", "if (key_len > 2u * TS_SHA256_BLOCK) {", "hmac"),
    "direction not signed": ("    prefix[4] = direction;\n", "    prefix[4] = (uint8_t)(direction | 0x03u);\n",
                             "frame_vectors"),
    "SESSION replay allowed": ("if (f->counter <= d->session_counter) {", "if (f->counter < d->session_counter) {",
                               "device_rules"),
    "host nonce 0 accepted": ("|| p.host_nonce == 0u", "", "device_session"),
    "send counter not refused at its end": ("|| d->send_counter == TS_AUTH_COUNTER_MAX) {", ") {", "device_rules"),
    "plain frames not named": ("? TS_AUTH_DROP_UNAUTHENTICATED :", "? (unsigned)TS_DROP_VERSION :", "frame_vectors"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_checks_catch_a_broken_ts_auth(tmp_path: Path, name: str):
    old, new, check = MUTANTS[name]
    src = AUTH_C.read_text()
    assert src.count(old) == 1, f"mutant '{name}' no longer applies: update MUTANTS"
    mutant = tmp_path / "ts_auth.c"
    mutant.write_text(src.replace(old, new))
    exe = _build(tmp_path, mutant)
    with pytest.raises(AssertionError):
        CHECKS[check](exe)


# ---------------------------------------------------------------------------------------------
# The fuzz harness (tests/fuzz/auth_fuzz.c): a bounded CI run, and proofs that it can fail.

FUZZ_SECONDS = 30  # a cap for slow machines; the iteration cap ends it in a few seconds here
FUZZ_ITERATIONS = 150_000
_FUZZ_SUMMARY = re.compile(r"^auth_fuzz: iterations=(\d+) .* sessions=(\d+) accepted=(\d+) replays_checked=(\d+) "
                           r"(.*)$", re.M)


def _fuzz(tmp_path: Path, defines: tuple[str, ...] = (), auth_c: Path = AUTH_C, iterations: int = FUZZ_ITERATIONS,
          seed: int = 20261214) -> subprocess.CompletedProcess:
    exe = tmp_path / "auth_fuzz"
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", *SAN, *(f"-D{d}" for d in defines), "-I", str(RUNTIME),
           str(FUZZ_DIR / "auth_fuzz.c"), str(auth_c), str(CODEC), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join([v["sealed"] for v in V["frames"]] + [v["plain"] for v in V["frames"]]
                               + [v["hex"] for v in V["bad"]]) + "\n")
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    return subprocess.run([str(exe), str(seed), str(iterations), str(FUZZ_SECONDS), str(seeds)], capture_output=True,
                          text=True, timeout=FUZZ_SECONDS + 60, env=env)


def test_fuzz_harness_runs_clean(tmp_path: Path):
    r = _fuzz(tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
    m = _FUZZ_SUMMARY.search(r.stdout)
    assert m, r.stdout
    print(m.group(0))
    iterations, sessions, accepted, replays = (int(m.group(i)) for i in range(1, 5))
    counts = dict(kv.split("=") for kv in m.group(5).split())
    assert iterations >= 100_000 and sessions >= 20 and replays == accepted, m.group(0)
    # the inputs reached every verdict but `session` (the fuzzed device always has one)
    assert accepted > 1000 and all(int(counts[k]) > 100 for k in ("short", "magic", "version", "length", "crc",
                                                                    "type", "part", "unauthenticated", "auth",
                                                                    "replay")), m.group(0)


def test_fuzz_sanitizer_catches_an_injected_out_of_bounds_read(tmp_path: Path):
    r = _fuzz(tmp_path, ("AUTH_FUZZ_INJECT_OOB",), iterations=20_000)
    assert r.returncode != 0 and "AddressSanitizer: heap-buffer-overflow" in r.stderr
    assert "auth_fuzz: iterations=" not in r.stdout


def test_fuzz_invariants_catch_a_wrong_verdict(tmp_path: Path):
    r = _fuzz(tmp_path, ("AUTH_FUZZ_INJECT_BLIND_REFERENCE",), iterations=20_000)
    assert r.returncode != 0 and "INVARIANT FAILED" in r.stderr and "split verdict equals the reference" in r.stderr


@pytest.mark.parametrize("name,invariant", [("tag compares 15 bytes", "tag verifies exactly for sealed frames"),
                                            ("window accepts before verifying", "window equals the reference"),
                                            ("window one too narrow", "device verdict equals the reference")])
def test_fuzz_invariants_catch_a_broken_ts_auth(tmp_path: Path, name: str, invariant: str):
    old, new, _ = MUTANTS[name]
    mutant = tmp_path / "ts_auth.c"
    mutant.write_text(AUTH_C.read_text().replace(old, new))
    r = _fuzz(tmp_path, auth_c=mutant, iterations=50_000)
    assert r.returncode != 0 and "INVARIANT FAILED" in r.stderr and invariant in r.stderr, r.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# Strict warnings on every toolchain, nothing from libc beyond string.h; code size and stack use.

def _undefined(nm: str, obj: Path) -> set[str]:
    r = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}


CROSS = [
    ("gcc", ["-O2"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os",
                           "-ffreestanding"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m0plus", "-mthumb", "-Os", "-ffreestanding"]),
    ("riscv64-unknown-elf-gcc", ["-march=rv32imac", "-mabi=ilp32", "-Os", "-ffreestanding", "--specs=picolibc.specs"]),
]


def compile_ts_auth(tmp_path: Path, cc: str, flags: list[str]) -> tuple[Path, dict[str, int]]:
    """ts_auth.o and its stack use per function (-fstack-usage)."""
    obj = tmp_path / "ts_auth.o"
    cmd = [cc, *WARN, *flags, "-fstack-usage", "-I", str(RUNTIME), "-c", str(AUTH_C), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    su = {}
    for ln in obj.with_suffix(".su").read_text().splitlines():
        where, size, _kind = ln.split("\t")
        su[where.rsplit(":", 1)[-1]] = int(size)
    return obj, su


def deepest_stack(su: dict[str, int]) -> int:
    """The deepest call chain of ts_auth.c's own functions, written out: seal or open -> verify/seal ->
    tag -> HMAC init/update/final -> SHA-256 update/final -> block. A function the compiler inlined
    has no entry: its frame is in its caller's."""
    g = lambda name: su.get(name, 0)  # noqa: E731
    block = g("sha256_block")
    update = g("ts_sha256_update") + block
    final = g("ts_sha256_final") + block
    hmac_init = g("ts_hmac_sha256_init") + max(g("keyed") + block, update, final)
    hmac_final = g("ts_hmac_sha256_final") + max(final, update)
    tag = g("ts_auth_tag") + max(hmac_init, g("ts_hmac_sha256_update") + update, hmac_final)
    return max(g("ts_auth_device_open") + g("ts_auth_verify"), g("ts_auth_device_seal") + g("ts_auth_seal"),
               g("ts_auth_device_hello") + g("ts_auth_seal")) + tag


@pytest.mark.parametrize("cc,flags", CROSS, ids=["host", "cortex-m4", "cortex-m0plus", "rv32imac"])
def test_ts_auth_compiles_clean(tmp_path: Path, cc: str, flags: list[str]):
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is not installed: ./setup.sh installs the toolchains the tests need")
    obj, su = compile_ts_auth(tmp_path, cc, flags)
    nm = "nm" if cc == "gcc" else cc.replace("-gcc", "-nm")
    used = {s for s in _undefined(nm, obj) if not s.startswith("__") and not s.startswith("ts_")}
    assert used <= ALLOWED_LIBC, used - ALLOWED_LIBC  # libgcc helpers (__...) and the codec (ts_...) aside
    if cc != "gcc":
        r = subprocess.run([cc.replace("-gcc", "-size"), str(obj)], capture_output=True, text=True)
        text, data, bss = map(int, r.stdout.splitlines()[1].split()[:3])
        assert data == 0 and bss == 0  # no static RAM: every state is the caller's
        assert 0 < text < 4096, r.stdout
        assert deepest_stack(su) < 512, su
