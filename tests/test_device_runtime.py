"""The generic device runtime (firmware_templates/runtime/ts_device.c) on the host: a small method app
(tests/device_runtime/test_app.c) on a host "board" (stdin = UART receive, stdout = UART transmit,
exit() = board_exit, a stub counter and a stub datagram transport), built with the host gcc under
strict warnings and AddressSanitizer/UBSan, and driven with the Python wire codec. Plus compile-only
checks for the MCU cross compilers and mutants that show the checks can fail."""

from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tinysplit.firmware.render import render
from tinysplit.wire import CobsDeframer, Frame, FrameType, cobs_encode, decode_frame, encode_frame
from tinysplit.wire.frame import crc32
from tinysplit.wire.payloads import (CAP_REBEL, CAP_SKIP, CAP_UDP, Chunk, Hello, KeyValues, Result, decode_payload,
                                     make_frame)

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "firmware_templates"
RUNTIME = TEMPLATES / "runtime"
HARNESS = Path(__file__).resolve().parent / "device_runtime"

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wsign-conversion", "-pedantic"]
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]

# The test app's configuration (tests/device_runtime/test_app.c).
BUNDLE, DEVICE, IN = 0x1234ABCD, 7, 100
HELLO = Hello("host-board", CAP_REBEL | CAP_SKIP, IN, 40, 16, 6)
EOF_STATUS = 99  # the host board's exit status when stdin ends without a CONTROL exit
REASONS = ("short", "magic", "version", "length", "crc", "type", "part", "payload", "cobs", "oversize", "bundle",
           "unexpected_type")


# ---------------------------------------------------------------------------------------------
# Build and run

def _headers(out: Path) -> Path:
    """board.h and net.h rendered from the project templates (the runtime's real contract), plus the
    host board's board_config.h."""
    inc = out / "include"
    inc.mkdir(parents=True, exist_ok=True)
    for template, name in (("common/board.h.j2", "board.h"), ("net/net.h.j2", "net.h")):
        (inc / name).write_text(render(template, banner="test"))
    shutil.copyfile(HARNESS / "board_config.h", inc / "board_config.h")
    return inc


def _build(out: Path, runtime_c: Path = RUNTIME / "ts_device.c") -> Path:
    inc = _headers(out)
    exe = out / "devrt"
    sources = [runtime_c, RUNTIME / "ts_wire.c", HARNESS / "test_app.c", HARNESS / "host_board.c",
               HARNESS / "host_net.c"]
    cmd = ["gcc", *WARN, *SAN, "-I", str(inc), "-I", str(RUNTIME), *map(str, sources), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return exe


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("devrt"))


@dataclass
class Run:
    rc: int
    uart: list[Frame]  # frames the device wrote to its UART, in order
    net: list[Frame]  # datagrams it passed to net_send(), in order
    uart_bytes: bytes

    def of(self, ftype: FrameType, net: bool = False) -> list[Frame]:
        return [f for f in (self.net if net else self.uart) if f.type == ftype]

    def stats(self, net: bool = False) -> dict[str, int]:
        """The last STATS reply by name (and its raw keys in order under "_keys")."""
        f = self.of(FrameType.STATS, net)[-1]
        kv = decode_payload(f)
        assert isinstance(kv, KeyValues)
        named = {"sent": 1, "received": 2, "drops": 3, "last_error": 4, "instructions": 5,
                 "instructions_total_low": 6, "instructions_total_high": 7, "app_bytes_sent": 8}
        out = {name: kv.get(k) for name, k in named.items()}
        out.update({f"drops_{r}": kv.get(16 + i) for i, r in enumerate(REASONS, 1)})
        out["_keys"] = [k for k, _ in kv.items]
        return out


_runs = itertools.count()


def run(exe: Path, data: bytes, *args: str, env: dict[str, str] | None = None) -> Run:
    """Boot the device with `data` on its UART receive line (then end of input) and collect what it sent."""
    net_out = exe.parent / f"net-{next(_runs)}.bin"  # the stub NIC's datagrams
    net_out.unlink(missing_ok=True)
    e = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1",
         "DEVRT_NET_OUT": str(net_out), **(env or {})}
    r = subprocess.run([str(exe), *args], input=data, capture_output=True, timeout=60, env=e)
    assert b"runtime error" not in r.stderr and b"AddressSanitizer" not in r.stderr, r.stderr.decode()
    deframer = CobsDeframer()
    uart = [decode_frame(b) for b in deframer.feed(r.stdout)]
    assert deframer.drops == {} and (not r.stdout or r.stdout.endswith(b"\x00")), "the UART carried a bad frame"
    net: list[Frame] = []
    if net_out.exists():
        raw = net_out.read_bytes()
        net_out.unlink()
        i = 0
        while i < len(raw):
            (n,) = struct.unpack_from("<H", raw, i)
            net.append(decode_frame(raw[i + 2:i + 2 + n]))
            i += 2 + n
    for f in uart + net:
        decode_payload(f)  # every frame the device sends parses
    return Run(r.returncode, uart, net, r.stdout)


def ser(f: Frame) -> bytes:
    return cobs_encode(encode_frame(f)) + b"\x00"


def host(ftype: FrameType, payload, seq: int = 0, part_index: int = 0, part_count: int = 1,
         device: int = DEVICE, bundle: int = BUNDLE) -> bytes:
    """One host -> device frame as serial bytes."""
    return ser(make_frame(ftype, payload, device, bundle, seq, part_index, part_count))


def raw(ftype: int, payload: bytes = b"", seq: int = 0, part_index: int = 0, part_count: int = 1,
        bundle: int = BUNDLE, version: int = 1, magic: bytes = b"TS", length: int | None = None,
        bad_crc: bool = False) -> bytes:
    """A frame built by hand (so it can be malformed), as serial bytes."""
    head = struct.pack("<2sBBHIIHHH", magic, version, ftype, DEVICE, bundle, seq, part_index, part_count,
                       len(payload) if length is None else length)
    body = head + payload
    return cobs_encode(body + struct.pack("<I", crc32(body) ^ (0xFF if bad_crc else 0))) + b"\x00"


def control(items, seq: int = 0, device: int = DEVICE) -> bytes:
    return host(FrameType.CONTROL, KeyValues(tuple(items)), seq, device=device)


def stats_request(seq: int = 0) -> bytes:
    return host(FrameType.STATS, KeyValues(()), seq)


def exit_with(status: int) -> bytes:
    return control([(5, status)])


def send_input(x: bytes, seq: int, chunk: int = 1024, device: int = DEVICE) -> bytes:
    parts = [x[i:i + chunk] for i in range(0, len(x), chunk)] or [b""]
    return b"".join(host(FrameType.INPUT, Chunk(p), seq, i, len(parts), device=device) for i, p in enumerate(parts))


def sample(k: int) -> bytes:
    return bytes((k * 31 + 7 * i) & 0xFF for i in range(IN))


def echoed(r: Run, seq: int, net: bool = False) -> bytes | None:
    """The input bytes the app's on_input hook saw for sample `seq` (its two LATENT frames), or None."""
    fs = [f for f in r.of(FrameType.LATENT, net) if f.seq == seq]
    if not fs:
        return None
    assert [(f.part_index, f.part_count) for f in fs] == [(0, 2), (1, 2)]
    assert all(f.device_id == DEVICE and f.bundle_id == BUNDLE for f in fs)
    return b"".join(f.payload for f in fs)


def control_calls(r: Run, net: bool = False) -> list[tuple[int, int]]:
    """The (key, value) pairs the app's on_control hook received, in order."""
    out = []
    for f in r.of(FrameType.CONTROL, net):
        kv = decode_payload(f)
        assert isinstance(kv, KeyValues) and len(kv.items) == 1
        out.append(kv.items[0])
    return out


# ---------------------------------------------------------------------------------------------
# Checks (functions of the executable, so the mutants below can run them too)

def check_hello(exe: Path) -> None:
    r = run(exe, exit_with(0))
    assert r.rc == 0
    assert r.uart[0] == make_frame(FrameType.HELLO, HELLO, DEVICE, BUNDLE, 0)
    assert r.uart_bytes.startswith(ser(make_frame(FrameType.HELLO, HELLO, DEVICE, BUNDLE, 0)))
    assert r.net == []
    r = run(exe, b"")  # nothing but the HELLO, then stdin ends
    assert r.rc == EOF_STATUS and [f.type for f in r.uart] == [FrameType.HELLO]


def check_input(exe: Path) -> None:
    data = (send_input(sample(1), 42, chunk=30)  # 4 chunks: 30 + 30 + 30 + 10
            + send_input(sample(2), 43)  # 1 chunk
            + send_input(sample(3), 44, chunk=7)  # 15 chunks
            + send_input(sample(4), 45, device=0xFFFF)  # broadcast (RoCoIn's source)
            + send_input(sample(5), 46, device=8)  # another device's: ignored, not counted
            + stats_request() + exit_with(0))
    r = run(exe, data)
    assert r.rc == 0
    for seq, k in ((42, 1), (43, 2), (44, 3), (45, 4)):
        assert echoed(r, seq) == sample(k), seq
    assert echoed(r, 46) is None
    s = r.stats()
    assert s["drops"] == 0 and s["last_error"] == 0
    assert s["received"] == 4 + 1 + 15 + 1 + 1  # the other device's frame is not counted
    assert s["instructions"] == 1000 + 4  # the app's counter, one start per complete sample
    assert (s["instructions_total_high"], s["instructions_total_low"]) == (0, 1001 + 1002 + 1003 + 1004)
    assert s["app_bytes_sent"] == sum(len(encode_frame(f)) for f in r.uart if f.type != FrameType.HELLO
                                      and f.type != FrameType.STATS)


def check_bad_inputs(exe: Path) -> None:
    x = sample(9)
    chunks = [x[:40], x[40:80], x[80:]]

    def part(i: int, seq: int = 10, count: int = 3, data: bytes | None = None) -> bytes:
        return host(FrameType.INPUT, Chunk(chunks[i] if data is None else data), seq, i, count)

    cases = [
        ("part", part(1)),  # a continuation with no part 0
        ("part", part(0) + part(2)),  # a gap
        ("part", part(0) + part(1, seq=11)),  # a continuation of another sample
        ("part", part(0) + part(1, count=4, data=chunks[1])),  # part_count changed
        ("payload", host(FrameType.INPUT, Chunk(x[:-1]), 12)),  # short: 99 bytes
        ("payload", host(FrameType.INPUT, Chunk(x + b"\x01"), 13)),  # overlong in one chunk
        ("payload", part(0, data=x[:60], count=2) + part(1, data=x[:60], count=2)),  # overlong in two
        ("payload", part(0, count=2) + part(1, count=2)),  # short in two: 80 bytes
    ]
    for reason, data in cases:
        r = run(exe, data + stats_request() + exit_with(0))
        s = r.stats()
        assert s[f"drops_{reason}"] == 1 and s["drops"] == 1 and s["last_error"] == REASONS.index(reason) + 1, \
            (reason, s)
        assert r.of(FrameType.LATENT) == [], reason  # no sample reached the app
    # a new part 0 abandons the unfinished sample (counted as part) and starts the next one
    r = run(exe, part(0) + part(1) + send_input(sample(6), 20, chunk=50) + stats_request() + exit_with(0))
    s = r.stats()
    assert s["drops_part"] == 1 and s["drops"] == 1 and echoed(r, 10) is None and echoed(r, 20) == sample(6)
    # after every kind of bad input a good one still arrives whole
    r = run(exe, b"".join(d for _, d in cases) + send_input(sample(7), 21, chunk=33) + stats_request()
            + exit_with(0))
    assert echoed(r, 21) == sample(7)
    s = r.stats()
    assert s["drops_part"] == 4 and s["drops_payload"] == 4 and s["drops"] == 8 and s["last_error"] == 8


def check_frame_drops(exe: Path) -> None:
    good = raw(FrameType.CONTROL, struct.pack("<BI", 3, 1))
    bad = {
        "cobs": [b"\x05\x01\x00"],
        "oversize": [bytes(range(1, 201)) * 6 + b"\x00"],
        "short": [cobs_encode(b"\x01\x02\x03") + b"\x00"],
        "magic": [raw(FrameType.CONTROL, magic=b"XS")],
        "version": [raw(FrameType.CONTROL, version=2)],
        "length": [raw(FrameType.CONTROL, b"\x01" * 5, length=4)],
        "crc": [raw(FrameType.CONTROL, struct.pack("<BI", 3, 1), bad_crc=True)],
        "type": [raw(0x42)],
        "part": [raw(FrameType.CONTROL, part_index=1, part_count=1)],
        "payload": [raw(FrameType.CONTROL, b"\x01\x02\x03")],
        "bundle": [raw(FrameType.CONTROL, struct.pack("<BI", 3, 1), bundle=BUNDLE ^ 1),
                   host(FrameType.INPUT, Chunk(sample(1)), 1, bundle=BUNDLE + 1)],
        "unexpected_type": [host(FrameType.HELLO, HELLO), raw(FrameType.NAIR_SLICE, struct.pack("<HHH", 0, 1, 16)),
                            raw(FrameType.EARLY_LABEL, struct.pack("<HB", 1, 2)),
                            raw(FrameType.LATENT, b"\x01"), raw(FrameType.ROCOIN_PORTION, struct.pack("<HH", 0, 1)),
                            raw(FrameType.ADAPTIVE_OUTPUT, struct.pack("<II", 0b11, 0))],
    }
    for reason, frames in bad.items():  # each alone: its own counter, the total and the last error
        r = run(exe, b"".join(frames) + stats_request() + exit_with(0))
        s = r.stats()
        assert s[f"drops_{reason}"] == len(frames) and s["drops"] == len(frames), (reason, s)
        assert s["last_error"] == REASONS.index(reason) + 1, (reason, s)
        assert s["received"] == 1 and control_calls(r) == [], (reason, s)  # only the STATS request
    everything = b"\x00\x00" + b"".join(b"".join(f) for f in bad.values()) + good
    r = run(exe, everything + host(FrameType.RESULT, Result(1, 2, 0)) + stats_request() + exit_with(0))
    s = r.stats()
    for reason in REASONS:
        assert s[f"drops_{reason}"] == len(bad[reason]), (reason, s)
    assert s["drops"] == sum(len(f) for f in bad.values())
    assert s["received"] == 3 and control_calls(r) == [(3, 1)]  # the good CONTROL, RESULT, STATS


def check_control(exe: Path) -> None:
    data = (control([(3, 128), (4, 0b101), (3, 7), (77, 1), (240, 9), (240, 10), (0, 0)])
            + control([(3, 9)])  # a new frame: the key counts again
            + control([(200, 0x1234), (201, 0)])
            + control([(4, 1)], device=8)  # another device's
            + control([(4, 2)], device=0xFFFF)  # broadcast
            + stats_request()
            + control([(1, 5), (5, 0x1FE), (3, 1)]))  # exit 0xFE; (3, 1) is never applied
    r = run(exe, data)
    assert r.rc == 0xFE
    assert control_calls(r) == [(3, 128), (4, 5), (77, 1), (240, 9), (0, 0), (3, 9), (200, 0x1234), (201, 3), (4, 2),
                                (1, 5)]
    s = r.stats()
    assert s["last_error"] == 0x1234 and s["drops"] == 0 and s["received"] == 5  # not the other device's
    sent_before = [f.type for f in r.uart].index(FrameType.STATS)
    assert s["sent"] == sent_before + 1  # the reply included; the two refused sends are not counted
    for status in (0, 1, 3, 255):
        assert run(exe, exit_with(status) + exit_with(7)).rc == status


def check_control_rejected(exe: Path) -> None:
    """A CONTROL value the app rejects (the test app's skip mask, 8 blocks: bits 8 and up) leaves its
    setting as it was and sets STATS last error TS_DEVICE_ERROR_CONTROL | key = 0x300 | 4."""
    data = (control([(4, 0x0F)]) + stats_request(seq=1) + control([(4, 0x100)]) + stats_request(seq=2)
            + control([(4, 0xFFFFFFFF)], device=0xFFFF) + control([(4, 0x80)]) + stats_request(seq=3) + exit_with(0))
    r = run(exe, data)
    assert r.rc == 0
    assert control_calls(r) == [(4, 0x0F), (4, 0x0F), (4, 0x0F), (4, 0x80)]  # the mask in effect after each
    last_errors = [decode_payload(f).get(4) for f in r.of(FrameType.STATS)]
    assert last_errors == [0, 0x304, 0x304]  # a later accepted value does not clear it
    assert r.stats()["drops"] == 0


def check_stats(exe: Path) -> None:
    data = (send_input(sample(1), 5, chunk=60) + host(FrameType.RESULT, Result(1, 16, 0)) + raw(0x42)
            + stats_request(seq=77) + exit_with(0))
    r = run(exe, data)
    reply = r.of(FrameType.STATS)[-1]
    assert (reply.device_id, reply.bundle_id, reply.seq, reply.part_index, reply.part_count) == (DEVICE, BUNDLE, 77,
                                                                                                  0, 1)
    s = r.stats()
    assert s["_keys"] == [1, 2, 3, 4, 5, 6, 7, 8, *range(17, 29)]
    assert s["sent"] == len(r.uart) == 1 + 2 + 1  # HELLO, two LATENT, the reply itself
    assert s["received"] == 2 + 1 + 1  # INPUT chunks, RESULT, the request
    assert s["drops"] == 1 and s["drops_type"] == 1 and s["last_error"] == 6
    assert s["instructions"] == 1001
    assert (s["instructions_total_high"], s["instructions_total_low"]) == (0, 1001)
    latents = r.of(FrameType.LATENT)
    assert len(latents) == 2 and s["app_bytes_sent"] == sum(len(encode_frame(f)) for f in latents)  # not HELLO nor STATS
    assert all(s[f"drops_{x}"] == 0 for x in REASONS if x != "type")


def check_instruction_total(exe: Path) -> None:
    # STATS keys 6 and 7 hold the 64-bit sum of every inference's count: the carry into the high word
    big = 0xFFFF_FFF0
    r = run(exe, control([(202, big)]) + control([(202, big)]) + send_input(sample(1), 5) + stats_request()
            + exit_with(0))
    s = r.stats()
    total = 2 * big + 1001
    assert s["instructions"] == 1001
    assert (s["instructions_total_high"], s["instructions_total_low"]) == (total >> 32, total & 0xFFFF_FFFF)
    # the app's CONTROL echoes and LATENT frames are its bytes; HELLO and STATS are the runtime's
    app = [f for f in r.uart if f.type in (FrameType.CONTROL, FrameType.LATENT)]
    assert len(app) == 4 and s["app_bytes_sent"] == sum(len(encode_frame(f)) for f in app)


def check_udp(exe: Path) -> None:
    data = send_input(sample(1), 3, chunk=50) + control([(4, 9)]) + stats_request(seq=2) + exit_with(0)
    r = run(exe, data, "udp")
    hello = make_frame(FrameType.HELLO, replace(HELLO, capabilities=HELLO.capabilities | CAP_UDP), DEVICE, BUNDLE, 0)
    assert r.rc == 0
    assert r.uart == [hello]  # the HELLO on the UART (the host waits for it there)...
    assert r.net[0] == hello  # ...and as a datagram; everything else by datagram only
    assert echoed(r, 3, net=True) == sample(1) and control_calls(r, net=True) == [(4, 9)]
    s = r.stats(net=True)
    assert s["sent"] == len(r.uart) + len(r.net) and s["last_error"] == 0 and s["drops"] == 0
    # a failing net_send: the frame is not counted as sent, STATS last error says 0x200 | error
    r = run(exe, data, "udp", env={"DEVRT_NET_FAIL_TYPE": str(int(FrameType.LATENT))})
    assert echoed(r, 3, net=True) is None
    s = r.stats(net=True)
    assert s["last_error"] == 0x205 and s["sent"] == len(r.uart) + len(r.net)
    # a failing net_init is reported the same way
    r = run(exe, stats_request() + exit_with(0), "udp", env={"DEVRT_NET_INIT_ERROR": "3"})
    assert r.stats(net=True)["last_error"] == 0x203


def check_no_hooks(exe: Path) -> None:
    r = run(exe, send_input(sample(1), 1) + control([(3, 1)]) + stats_request() + exit_with(4), "nohooks")
    assert r.rc == 4 and [f.type for f in r.uart] == [FrameType.HELLO, FrameType.STATS]
    assert r.stats()["received"] == 3 and r.stats()["drops"] == 0
    # a build that takes no input drops INPUT as unexpected_type (and does not count it as received)
    r = run(exe, send_input(sample(1), 1) + stats_request() + exit_with(0), "noinput")
    s = r.stats()
    assert s["drops_unexpected_type"] == 1 and s["received"] == 1 and r.of(FrameType.LATENT) == []
    assert decode_payload(r.uart[0]).input_bytes == 0


CHECKS = {"hello": check_hello, "input": check_input, "bad_inputs": check_bad_inputs, "frame_drops": check_frame_drops,
          "control": check_control, "control_rejected": check_control_rejected, "stats": check_stats,
          "instruction_total": check_instruction_total,
          "udp": check_udp, "no_hooks": check_no_hooks}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_device_runtime(exe: Path, name: str):
    CHECKS[name](exe)


# ---------------------------------------------------------------------------------------------
# The checks can fail: each mutant of the runtime breaks one rule, and the check of that rule sees it.

MUTANTS = {
    "first value wins": ("        if ((seen[kv.key >> 5] & bit) != 0u) {\n            continue;\n        }\n", "",
                         "control"),
    "broadcast accepted": ("v.h.device_id != cfg->device_id && v.h.device_id != TS_BROADCAST",
                           "v.h.device_id != cfg->device_id", "input"),
    "part order checked": ("v->h.part_index != in_next", "v->h.part_index > in_next + 1u", "bad_inputs"),
    "bundle checked": ("drop(TS_DEVICE_DROP_BUNDLE);\n        return;", "drop(TS_DEVICE_DROP_BUNDLE);",
                       "frame_drops"),
    "instruction carry": ("        total_instructions_high++;\n", "", "instruction_total"),
    "app bytes counted": ("        app_bytes_sent += (uint32_t)n;\n", "", "stats"),
    "udp transport": ("if (cfg->udp) {\n        int err = net_send", "if (0) {\n        int err = net_send", "udp"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_checks_catch_a_broken_runtime(tmp_path: Path, name: str):
    old, new, check = MUTANTS[name]
    src = (RUNTIME / "ts_device.c").read_text()
    assert src.count(old) == 1, f"mutant '{name}' no longer applies: update MUTANTS"
    mutant = tmp_path / "ts_device.c"
    mutant.write_text(src.replace(old, new))
    exe = _build(tmp_path, mutant)
    with pytest.raises(AssertionError):
        CHECKS[check](exe)


# ---------------------------------------------------------------------------------------------
# Strict warnings on the MCU cross compilers; the runtime's only outside calls are the board, the
# NIC, the codec and string.h.

ALLOWED_CALLS = {"board_uart_init", "board_uart_getc", "board_uart_putc", "board_uart_write", "board_exit",
                 "net_init", "net_send", "memcpy", "memmove", "memset"}


@pytest.mark.parametrize("cc,flags", [
    ("gcc", ["-O2"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os",
                           "-ffreestanding"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m0plus", "-mthumb", "-Os", "-ffreestanding"]),
    ("riscv64-unknown-elf-gcc", ["-march=rv32imac", "-mabi=ilp32", "-Os", "-ffreestanding",
                                 "--specs=picolibc.specs"]),
], ids=["host", "cortex-m4", "cortex-m0plus", "rv32imac"])
def test_runtime_compiles_clean(tmp_path: Path, cc: str, flags: list[str]):
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is not installed: ./setup.sh installs the toolchains the tests need")
    inc = _headers(tmp_path)
    obj = tmp_path / "ts_device.o"
    cmd = [cc, *WARN, *flags, "-I", str(inc), "-I", str(RUNTIME), "-c", str(RUNTIME / "ts_device.c"), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    nm = "nm" if cc == "gcc" else cc.replace("-gcc", "-nm")
    r = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True)
    used = {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}
    used = {s for s in used if not s.startswith("_") and not s.startswith("ts_")}  # libgcc helpers, the codec
    assert used <= ALLOWED_CALLS, used - ALLOWED_CALLS
