"""The device runtime built with authenticated frames (TS_AUTH: firmware_templates/runtime/ts_device.c
with ts_auth.c) on the host board of tests/test_device_runtime.py, driven by the Python host side
(tinysplit.wire.auth.HostSession): the sealed HELLO, the SESSION handshake and its confirming STATS,
INPUT in and sealed frames out verified in Python; forged, tampered, replayed, cross-device,
earlier-boot, earlier-session and unauthenticated frames are all dropped under their reasons in STATS,
and legitimate traffic still works during and after the attack. Mutants of the runtime's
authenticated path show that the checks can fail; the authenticated runtime compiles clean on the
MCU cross compilers."""

from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from test_device_runtime import BUNDLE, DEVICE, EOF_STATUS, HARNESS, HELLO, RUNTIME, SAN, WARN, _headers, sample, ser
from tinysplit.firmware.devicelink import STATS_NAMES
from tinysplit.wire import CobsDeframer, DecodeError, Frame, FrameType, cobs_encode, encode_frame
from tinysplit.wire.auth import DEVICE_TO_HOST, HOST_TO_DEVICE, DeviceSession, HostSession, seal, split
from tinysplit.wire.auth_vectors import load
from tinysplit.wire.frame import MAX_FRAME, crc32
from tinysplit.wire.payloads import CAP_UDP, Chunk, KeyValues, decode_payload, make_frame

V = load()
KEY, OTHER = bytes.fromhex(V["key"]), bytes.fromhex(V["other_key"])  # the host build's key is KEY
AUTH_REASONS = ("short", "magic", "version", "length", "crc", "type", "part", "payload", "cobs", "oversize", "bundle",
                "unexpected_type", "unauthenticated", "auth", "replay", "session")
MAX_AUTH_ENCODED = (MAX_FRAME + 20) + (MAX_FRAME + 20) // 254 + 1
BOOT = 0x0BAD5EED
FAULT = 120  # BOARD_EXIT_FAULT of the host board (tests/device_runtime/board_config.h)


# ---------------------------------------------------------------------------------------------
# Build and run

def _build(out: Path, runtime_c: Path = RUNTIME / "ts_device.c", auth_c: Path = RUNTIME / "ts_auth.c") -> Path:
    inc = _headers(out)
    exe = out / "devrt_auth"
    sources = [runtime_c, auth_c, RUNTIME / "ts_wire.c", HARNESS / "test_app.c", HARNESS / "host_board.c",
               HARNESS / "host_net.c"]
    cmd = ["gcc", *WARN, *SAN, "-DTS_AUTH", "-I", str(inc), "-I", str(RUNTIME), *map(str, sources), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return exe


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("devrt_auth"))


_runs = itertools.count()


@dataclass
class Run:
    rc: int
    uart: list[bytes]  # the frames the device wrote to its UART, as sent (sealed)
    net: list[bytes]  # its datagrams


def run(exe: Path, data: bytes, *args: str, nonce: str = str(BOOT), env: dict[str, str] | None = None) -> Run:
    net_out = exe.parent / f"net-{next(_runs)}.bin"
    net_out.unlink(missing_ok=True)
    e = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1",
         "DEVRT_NET_OUT": str(net_out), "DEVRT_BOOT_NONCE": nonce, **(env or {})}
    r = subprocess.run([str(exe), *args], input=data, capture_output=True, timeout=60, env=e)
    assert b"runtime error" not in r.stderr and b"AddressSanitizer" not in r.stderr, r.stderr.decode()
    deframer = CobsDeframer(MAX_AUTH_ENCODED)
    uart = deframer.feed(r.stdout)
    assert deframer.drops == {} and (not r.stdout or r.stdout.endswith(b"\x00")), "the UART carried a bad frame"
    net: list[bytes] = []
    if net_out.exists():
        raw = net_out.read_bytes()
        net_out.unlink()
        i = 0
        while i < len(raw):
            (n,) = struct.unpack_from("<H", raw, i)
            net.append(raw[i + 2:i + 2 + n])
            i += 2 + n
    return Run(r.returncode, uart, net)


def wire(b: bytes) -> bytes:
    return cobs_encode(b) + b"\x00"


def recrc(b: bytes) -> bytes:
    return b[:-4] + struct.pack("<I", crc32(b[:-4]))


class Host:
    """The host side of one device: a HostSession, the device's expected HELLO (the runtime's, from
    its twin DeviceSession) and the frames it sends, sealed, as serial bytes."""

    def __init__(self, nonce: int = BOOT, key: bytes = KEY, device: int = DEVICE, udp: bool = False):
        self.s = HostSession(device, key)
        hello = HELLO if not udp else replace(HELLO, capabilities=HELLO.capabilities | CAP_UDP)
        self.hello = DeviceSession(device, key, nonce).hello(make_frame(FrameType.HELLO, hello, device, BUNDLE, 0))
        self.nonces = itertools.count(0x10000)
        self.device = device

    def session(self) -> bytes:
        return self.s.on_hello(split(self.hello), BUNDLE, lambda: next(self.nonces))

    def frame(self, ftype: FrameType, payload, seq: int = 0, part_index: int = 0, part_count: int = 1,
              device: int | None = None) -> bytes:
        f = make_frame(ftype, payload, self.device if device is None else device, BUNDLE, seq, part_index, part_count)
        return self.s.seal(f)

    def input(self, x: bytes, seq: int, chunk: int = 1024) -> list[bytes]:
        parts = [x[i:i + chunk] for i in range(0, len(x), chunk)]
        return [self.frame(FrameType.INPUT, Chunk(p), seq, i, len(parts)) for i, p in enumerate(parts)]

    def control(self, items, seq: int = 0) -> bytes:
        return self.frame(FrameType.CONTROL, KeyValues(tuple(items)), seq)

    def stats_request(self, seq: int = 0) -> bytes:
        return self.frame(FrameType.STATS, KeyValues(()), seq)

    def exit(self, status: int = 0) -> bytes:
        return self.control([(5, status)])

    def open_all(self, frames: list[bytes]) -> list[Frame]:
        """Every frame after the HELLO opens under the host session (the first confirms it)."""
        out = []
        for i, b in enumerate(frames):
            try:
                out.append(self.s.open(split(b)))
            except DecodeError as e:
                raise AssertionError(f"the host drops the device's frame {i + 1} ({e})") from e
        return out


def stats(f: Frame) -> dict[str, int]:
    kv = decode_payload(f)
    assert isinstance(kv, KeyValues)
    out = {STATS_NAMES.get(k, k): v for k, v in kv.items}
    out["_keys"] = [k for k, _ in kv.items]
    return out


def echoed(frames: list[Frame], seq: int) -> bytes | None:
    fs = [f for f in frames if f.type == FrameType.LATENT and f.seq == seq]
    if not fs:
        return None
    assert [(f.part_index, f.part_count) for f in fs] == [(0, 2), (1, 2)]
    return b"".join(f.payload for f in fs)


def of(frames: list[Frame], ftype: FrameType) -> list[Frame]:
    return [f for f in frames if f.type == ftype]


# ---------------------------------------------------------------------------------------------
# Checks (functions of the executable, so the mutants below can run them too)

def check_handshake_and_traffic(exe: Path) -> None:
    """Sealed HELLO; SESSION -> a confirming STATS under the new session; INPUT and CONTROL in, sealed
    LATENT, CONTROL echo and STATS reply out, each verified by the host session; exit by a sealed
    CONTROL."""
    h = Host()
    data = [h.session(), *h.input(sample(1), 42, chunk=30), *h.input(sample(2), 43), h.control([(4, 3)]),
            h.stats_request(seq=9), h.exit(0)]
    r = run(exe, b"".join(map(wire, data)))
    assert r.rc == 0
    assert r.uart[0] == h.hello  # the twin's HELLO byte for byte: version 2, counter = the boot nonce
    assert split(r.uart[0]).counter == BOOT and r.uart[0][2] == 2
    frames = h.open_all(r.uart[1:])  # every frame the device sent verifies on the host
    assert h.s.pending is None and h.s.device_nonce == BOOT  # the first one confirmed the session
    assert frames[0].type == FrameType.STATS and frames[0].seq == 0
    assert echoed(frames, 42) == sample(1) and echoed(frames, 43) == sample(2)
    assert [decode_payload(f).items for f in of(frames, FrameType.CONTROL)] == [((4, 3),)]
    s = stats(frames[-1])
    assert frames[-1].seq == 9 and s["drops"] == 0 and s["last_error"] == 0
    assert s["received"] == 1 + 4 + 1 + 1 + 1  # SESSION, INPUT chunks, CONTROL, the request
    assert s["_keys"] == [1, 2, 3, 4, 5, 6, 7, 8, *range(17, 33)]  # reasons 13..16 included
    assert s["sent"] == len(r.uart)
    app = [b for b, f in zip(r.uart[1:], frames) if f.type in (FrameType.LATENT, FrameType.CONTROL)]
    assert s["app_bytes_sent"] == sum(map(len, app))  # the sealed frames' bytes
    for b in r.uart[1:]:  # under another key nothing verifies
        other = HostSession(DEVICE, OTHER)
        other.device_nonce, other.host_nonce = h.s.device_nonce, h.s.host_nonce
        with pytest.raises(Exception):
            other.open(split(b))


def check_attacks(exe: Path) -> None:
    """Every kind of hostile frame, interleaved with the legitimate traffic, is dropped and counted
    under its reason; the legitimate samples all arrive whole."""
    h = Host()
    session = h.session()
    old = Host(nonce=BOOT ^ 0x5A)  # an earlier boot of this device, with its own session
    old_session = old.session()
    old.s.pending_send = 300  # fresh counters for this device's window: only the tag can refuse them
    old_frames = [*old.input(sample(8), 80), old.control([(4, 1)])]
    cross = Host(nonce=BOOT, key=OTHER, device=8)  # device 8, its own key, its own session
    cross.session()
    cross.s.pending_send = 400
    cross_frames = cross.input(sample(9), 90)
    x = sample(3)
    legit = [*h.input(sample(1), 1, chunk=50), *h.input(x, 2), *h.input(sample(4), 3, chunk=25)]
    control = h.control([(4, 5)])
    forged = [seal(make_frame(FrameType.INPUT, Chunk(x), DEVICE, BUNDLE, 7), OTHER, HOST_TO_DEVICE, BOOT,
                   h.s.pending[1], c) for c in (100, 101)]
    flipped = bytearray(legit[2])
    flipped[25] ^= 0x10  # a payload byte of a genuine frame, CRC repaired
    tampered = [recrc(bytes(flipped)), recrc(control[:10] + bytes([control[10] ^ 1]) + control[11:])]  # payload; seq
    relabelled = [recrc(b[:4] + struct.pack("<H", DEVICE) + b[6:]) for b in cross_frames]  # device 8's, as 7's
    reflected = [seal(make_frame(FrameType.INPUT, Chunk(x), DEVICE, BUNDLE, 7), KEY, DEVICE_TO_HOST, BOOT,
                      h.s.pending[1], 200)]  # the right key and session, the other direction
    plain = [encode_frame(make_frame(FrameType.INPUT, Chunk(x), DEVICE, BUNDLE, 7)),
             encode_frame(make_frame(FrameType.CONTROL, KeyValues(((5, 3),)), DEVICE, BUNDLE, 0))]
    stream = [
        *[wire(b) for b in plain],  # version 1 before a session: unauthenticated (13)
        wire(legit[0]),  # a genuine frame before the SESSION: session (16)
        wire(session),
        wire(session),  # the SESSION replayed: replay (15)
        wire(old_session),  # an earlier boot's SESSION, counter 1 again: replay (15)
        *map(wire, legit[:2]), wire(legit[0]),  # ...after the genuine frame 0 was dropped before the session
        *map(wire, forged), *map(wire, tampered), *map(wire, relabelled), *map(wire, reflected),  # auth (14)
        *map(wire, old_frames),  # an earlier boot's session: auth (14)
        *map(wire, cross_frames),  # device 8's own frames: not ours, ignored, not counted
        *map(wire, legit[2:]), wire(control),
        *map(wire, legit[1:3]), wire(control),  # replays: replay (15)
        *[wire(b) for b in plain],  # version 1 again: unauthenticated (13)
        wire(h.stats_request(seq=5)), wire(h.exit(0)),
    ]
    r = run(exe, b"".join(stream))
    assert r.rc == 0
    frames = h.open_all(r.uart[1:])
    assert echoed(frames, 1) == sample(1) and echoed(frames, 2) == x and echoed(frames, 3) == sample(4)
    assert echoed(frames, 7) is None and echoed(frames, 80) is None and echoed(frames, 90) is None
    assert [decode_payload(f).items for f in of(frames, FrameType.CONTROL)] == [((4, 5),)]
    s = stats(frames[-1])
    want = {"drops_unauthenticated": 4, "drops_session": 1, "drops_replay": 2 + 1 + len(legit[1:3]) + 1,
            "drops_auth": len(forged) + len(tampered) + len(relabelled) + len(reflected) + len(old_frames)}
    assert {k: s[k] for k in want} == want, s
    assert s["drops"] == sum(want.values()) and s["last_error"] == 13  # the last drop: a plain frame
    assert all(s[f"drops_{n}"] == 0 for n in AUTH_REASONS[:12]), s
    # what the device dropped, the Python twin drops for the same reasons
    twin = DeviceSession(DEVICE, KEY, BOOT)
    reasons = []
    for b in CobsDeframer(MAX_AUTH_ENCODED).feed(b"".join(stream)):
        try:
            s_ = split(b)
            if s_.frame.device_id != DEVICE:
                continue
            twin.open(s_)
        except Exception as e:  # noqa: BLE001 (DecodeError: its reason)
            reasons.append(e.reason)
    assert {r_: reasons.count(r_) for r_ in set(reasons)} == {k[6:]: v for k, v in want.items()}


def host_nonce(session: bytes) -> int:
    return int.from_bytes(split(session).frame.payload[4:8], "little")


def check_session_switch(exe: Path) -> None:
    """A second SESSION (the host answered a HELLO again) starts a new session: the device confirms it
    at once and its counter starts again at 1; the old session's frames no longer verify, the new
    session's do."""
    h = Host()
    first = h.session()
    a = h.input(sample(1), 1)
    second = h.session()  # the host's SESSION counter goes on: 2
    b = [*h.input(sample(2), 2), h.stats_request(seq=3), h.exit(0)]
    stale = seal(make_frame(FrameType.INPUT, Chunk(sample(5)), DEVICE, BUNDLE, 9), KEY, HOST_TO_DEVICE, BOOT,
                 host_nonce(first), 5)  # the first session's, with a counter never used
    r = run(exe, b"".join(map(wire, [first, *a, second, stale, *b])))
    assert r.rc == 0
    opener = HostSession(DEVICE, KEY)
    opener.on_hello(split(h.hello), BUNDLE, lambda: host_nonce(first))
    f1 = [opener.open(split(x)) for x in r.uart[1:4]]  # the confirming STATS, then sample 1 in session 1
    assert f1[0].type == FrameType.STATS and echoed(f1, 1) == sample(1)
    opener.on_hello(split(h.hello), BUNDLE, lambda: host_nonce(second))
    f2 = [opener.open(split(x)) for x in r.uart[4:]]  # session 2's confirming STATS, sample 2, the reply
    assert f2[0].type == FrameType.STATS and decode_payload(f2[0]).get(1) == 5  # HELLO, STATS, 2 LATENT, this
    assert [split(x).counter for x in r.uart[4:]] == [1, 2, 3, 4]
    assert echoed(f2, 2) == sample(2) and echoed(f2, 9) is None
    s = stats(f2[-1])
    assert s["drops"] == 1 and s["drops_auth"] == 1 and s["received"] == 5  # 2 SESSION, 2 INPUT, the request


def check_unauthenticated_and_bounds(exe: Path) -> None:
    """Version 1 frames are never served, not even a plain CONTROL exit; a sealed frame of the largest
    size (1068 bytes) fits the receive buffer (dropped by the payload rules, not as oversize)."""
    h = Host()
    session = h.session()
    big = h.input(bytes(1024), 4)  # one 1024-byte chunk: more than the app's 100-byte input
    plain_exit = ser(make_frame(FrameType.CONTROL, KeyValues(((5, 0),)), DEVICE, BUNDLE, 0))
    r = run(exe, plain_exit + wire(session) + plain_exit + b"".join(map(wire, big))
            + wire(h.stats_request()) + plain_exit)
    assert r.rc == EOF_STATUS  # no plain exit was obeyed
    assert len(big[0]) == 1068
    s = stats(h.open_all(r.uart[1:])[-1])
    assert s["drops_unauthenticated"] == 2 and s["drops_payload"] == 1 and s["drops_oversize"] == 0, s


def check_boot_nonce(exe: Path) -> None:
    """The nonce is drawn again while the board gives 0; a board that never gives one ends the run
    (BOARD_EXIT_FAULT) before it sends anything."""
    h = Host(nonce=77)
    r = run(exe, b"".join(map(wire, [h.session(), h.exit(3)])), nonce="0,0,77")
    assert r.rc == 3 and r.uart[0] == h.hello and split(r.uart[0]).counter == 77
    r = run(exe, b"", nonce="0")
    assert r.rc == FAULT and r.uart == [] and r.net == []


def check_udp(exe: Path) -> None:
    """UDP: the sealed HELLO on the UART and as a datagram (the same bytes: one counter), everything
    after by datagram, sealed."""
    h = Host(udp=True)
    r = run(exe, b"".join(map(wire, [h.session(), *h.input(sample(1), 3, chunk=50), h.stats_request(), h.exit(0)])),
            "udp")
    assert r.rc == 0 and r.uart == [h.hello] and r.net[0] == h.hello
    frames = h.open_all(r.net[1:])
    assert echoed(frames, 3) == sample(1)
    s = stats(frames[-1])
    assert s["drops"] == 0 and s["sent"] == len(r.uart) + len(r.net)


CHECKS = {"handshake_and_traffic": check_handshake_and_traffic, "attacks": check_attacks,
          "session_switch": check_session_switch, "unauthenticated_and_bounds": check_unauthenticated_and_bounds,
          "boot_nonce": check_boot_nonce, "udp": check_udp}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_device_runtime_auth(exe: Path, name: str):
    CHECKS[name](exe)


# ---------------------------------------------------------------------------------------------
# The checks can fail: each mutant breaks one rule of the authenticated path.

MUTANTS = {
    "SESSION confirmed": ("        frames_received++;\n        send_stats(h->seq);\n        return 0;",
                          "        frames_received++;\n        return 0;", "handshake_and_traffic"),
    "frames sealed": ("#ifdef TS_AUTH\n    n = seal_built(n);\n#endif\n    err = send_built(n);",
                      "    err = send_built(n);", "handshake_and_traffic"),
    "auth verdicts counted": ("    r = ts_auth_device_open(&auth, &af);\n    if (r != TS_OK) {\n        drop(r);",
                              "    r = ts_auth_device_open(&auth, &af);\n    if (r != TS_OK) {\n        drop(0u);",
                              "attacks"),
    "device id before the tag": ("    if (h->device_id != cfg->device_id && h->device_id != TS_BROADCAST) {\n"
                                 "        return 0; /* another device's (under its key): not ours, not an error */\n"
                                 "    }\n", "", "attacks"),
    "receive buffer sized for version 2": ("#define TS_DEVICE_MAX_ENCODED TS_AUTH_MAX_ENCODED",
                                           "#define TS_DEVICE_MAX_ENCODED TS_MAX_ENCODED",
                                           "unauthenticated_and_bounds"),
    "nonce drawn again": ("tries < TS_DEVICE_NONCE_TRIES && nonce == 0u", "tries < 1u && nonce == 0u", "boot_nonce"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_checks_catch_a_broken_auth_runtime(tmp_path: Path, name: str):
    old, new, check = MUTANTS[name]
    src = (RUNTIME / "ts_device.c").read_text()
    assert src.count(old) == 1, f"mutant '{name}' no longer applies: update MUTANTS"
    mutant = tmp_path / "ts_device.c"
    mutant.write_text(src.replace(old, new))
    exe = _build(tmp_path, mutant)
    with pytest.raises(AssertionError):
        CHECKS[check](exe)


def test_a_window_mutant_in_ts_auth_is_caught_through_the_runtime(tmp_path: Path):
    """The replay rule end to end: a ts_auth.c whose window does not mark the newest counter it
    accepted lets a replay of the last frame through the runtime, and the attack check sees it."""
    src = (RUNTIME / "ts_auth.c").read_text()
    old = "        w->bits_lo |= 1u;\n"
    assert src.count(old) == 1
    mutant = tmp_path / "ts_auth.c"
    mutant.write_text(src.replace(old, ""))
    exe = _build(tmp_path, auth_c=mutant)
    with pytest.raises(AssertionError):
        check_attacks(exe)


def test_a_spent_send_counter_makes_the_device_say_hello_again(tmp_path: Path):
    """A build whose first session starts its send counter 3 below the end (a test build of ts_auth.c:
    2^32 frames are too many to send): the confirming STATS and one LATENT use the last two counters,
    the next frame cannot be sealed, so the device says HELLO again (the same sealed HELLO); the host
    answers with a new SESSION and the traffic goes on, counting from 1."""
    src = (RUNTIME / "ts_auth.c").read_text()
    old = "        d->send_counter = 0u;\n"
    assert src.count(old) == 1
    near_end = tmp_path / "ts_auth.c"
    near_end.write_text(src.replace(old, "        d->send_counter = f->counter == 1u ? 0xFFFFFFFDu : 0u;\n"))
    exe = _build(tmp_path, auth_c=near_end)
    h = Host()
    first = h.session()
    a = h.input(sample(1), 1)
    second = h.session()
    b = [*h.input(sample(2), 2), h.stats_request(seq=3), h.exit(0)]
    r = run(exe, b"".join(map(wire, [first, *a, second, *b])))
    assert r.rc == 0
    assert [split(x).counter for x in r.uart[1:3]] == [0xFFFFFFFE, 0xFFFFFFFF] and r.uart[3] == h.hello
    opener = HostSession(DEVICE, KEY)
    opener.on_hello(split(h.hello), BUNDLE, lambda: host_nonce(first))
    f1 = [opener.open(split(x)) for x in r.uart[1:3]]
    assert [f.type for f in f1] == [FrameType.STATS, FrameType.LATENT]  # part 1 of 2 could not be sent
    opener.on_hello(split(r.uart[3]), BUNDLE, lambda: host_nonce(second))
    f2 = [opener.open(split(x)) for x in r.uart[4:]]
    assert [split(x).counter for x in r.uart[4:]] == [1, 2, 3, 4]
    assert echoed(f2, 2) == sample(2) and stats(f2[-1])["drops"] == 0


# ---------------------------------------------------------------------------------------------
# The authenticated runtime on the MCU cross compilers: strict warnings, only the board (with
# board_boot_nonce), the NIC, the codec, ts_auth and string.h.

ALLOWED_CALLS = {"board_uart_init", "board_uart_getc", "board_uart_putc", "board_uart_write", "board_exit",
                 "board_boot_nonce", "net_init", "net_send", "memcpy", "memmove", "memset", "ts_device_key"}


@pytest.mark.parametrize("cc,flags", [
    ("gcc", ["-O2"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os",
                           "-ffreestanding"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m0plus", "-mthumb", "-Os", "-ffreestanding"]),
    ("riscv64-unknown-elf-gcc", ["-march=rv32imac", "-mabi=ilp32", "-Os", "-ffreestanding",
                                 "--specs=picolibc.specs"]),
], ids=["host", "cortex-m4", "cortex-m0plus", "rv32imac"])
def test_auth_runtime_compiles_clean(tmp_path: Path, cc: str, flags: list[str]):
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is not installed: ./setup.sh installs the toolchains the tests need")
    inc = _headers(tmp_path)
    used: set[str] = set()
    for src in ("ts_device.c", "ts_auth.c"):
        obj = tmp_path / src.replace(".c", ".o")
        cmd = [cc, *WARN, *flags, "-DTS_AUTH", "-I", str(inc), "-I", str(RUNTIME), "-c", str(RUNTIME / src), "-o",
               str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
        nm = "nm" if cc == "gcc" else cc.replace("-gcc", "-nm")
        r = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True)
        used |= {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
    used = {s for s in used if not s.startswith("_") and (not s.startswith("ts_") or s == "ts_device_key")}
    assert used <= ALLOWED_CALLS, used - ALLOWED_CALLS
    assert "board_boot_nonce" in used and "ts_device_key" in used


def test_reason_names_agree_with_the_host_side():
    """The STATS names the host uses (devicelink) for keys 17..32 are the runtime's reasons, in order."""
    assert all(STATS_NAMES[16 + r] == f"drops_{n}" for r, n in enumerate(AUTH_REASONS, 1))
