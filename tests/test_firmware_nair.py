"""The nair device app: wire-protocol frames from the C firmware in QEMU, byte-identical with
tinysplit.methods.nair.devicesim; robustness against bad frames (counted in its STATS); UDP through the
emulated LAN9118; end to end through the TailServer (fake device model, and the real code
generator where it is installed)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from firmware_support import fake_expected, write_fake_model
from tinysplit.boards import get_board
from tinysplit.methods.nair.devicesim import slice_frames
from tinysplit.errors import InputError
from tinysplit.firmware.apps.nair import parse_budgets, run_e2e
from tinysplit.firmware.devicelink import DeviceLink
from tinysplit.firmware.apps.nair import NairAppConfig
from tinysplit.firmware.project import render_project
from tinysplit.methods.nair.slices import SlicePlan
from tinysplit.wire import FrameType
from tinysplit.wire.cobs import cobs_encode
from tinysplit.wire.frame import crc32
from tinysplit.wire.payloads import Result


# A fake device model whose output is 4x4x96 int8: 16 units of 6 channels (96 B each), 10 units per
# slice frame, so budgets above 10 take two frames.
IN, H, W, C, U = 100, 4, 4, 96, 6
BUNDLE, DEVICE = 0x1234ABCD, 7
PLAN = SlicePlan(H, W, C, U, -3, 0.25, 16)
_ROOT = Path(tempfile.mkdtemp(prefix="tinysplit-nairtest-"))


def _cfg(transport: str = "uart", port: int = 5600) -> NairAppConfig:
    return NairAppConfig(BUNDLE, DEVICE, H, W, C, U, 16, transport, port)


@lru_cache(maxsize=None)
def _model():
    return write_fake_model(_ROOT / "model", in_bytes=IN, out_bytes=H * W * C, arena_bytes=IN + H * W * C)


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@lru_cache(maxsize=None)
def _built(board: str, transport: str = "uart"):
    from tinysplit.firmware.build import build_project

    cfg = _cfg(transport, _udp_port() if transport == "udp" else 5600)
    project = render_project(get_board(board), _model(), _ROOT / f"{board}-{transport}", app="nair", app_config=cfg)
    return cfg, build_project(project.dir)


def _expected(x: np.ndarray, budget: int, seq: int) -> list[bytes]:
    return slice_frames(PLAN, fake_expected(x, H * W * C), budget, DEVICE, BUNDLE, seq)


def _raw(ftype: int, payload: bytes = b"", seq: int = 0, part_index: int = 0, part_count: int = 1,
         bundle: int = BUNDLE, version: int = 1, magic: bytes = b"TS", length: int | None = None) -> bytes:
    head = struct.pack("<2sBBHIIHHH", magic, version, ftype, DEVICE, bundle, seq, part_index, part_count,
                       len(payload) if length is None else length)
    body = head + payload
    return body + struct.pack("<I", crc32(body))


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# --- rendering (no emulator) ------------------------------------------------------------------------

def test_nair_render_checks_config(tmp_path: Path):
    m = _model()
    with pytest.raises(InputError, match="needs its configuration"):
        render_project(get_board("qemu-mps2-an386"), m, tmp_path / "a", app="nair")
    with pytest.raises(InputError, match="cannot send over udp"):
        render_project(get_board("qemu-riscv32-virt"), m, tmp_path / "b", app="nair", app_config=_cfg("udp"))
    with pytest.raises(InputError, match="does not match the model"):
        render_project(get_board("qemu-mps2-an386"), m, tmp_path / "c", app="nair",
                       app_config=NairAppConfig(BUNDLE, DEVICE, 2, 2, C, U, 16))
    with pytest.raises(InputError, match="must divide"):
        render_project(get_board("qemu-mps2-an386"), m, tmp_path / "d", app="nair",
                       app_config=NairAppConfig(BUNDLE, DEVICE, H, W, C, 7, 1))
    p = render_project(get_board("qemu-mps2-an386"), m, tmp_path / "e", app="nair", app_config=_cfg("udp", 6001))
    main = (p.dir / "src" / "main.c").read_text()
    assert "#define NAIR_BUNDLE_ID 0x1234ABCDu" in main and "#define NAIR_UNITS_PER_FRAME 10u" in main
    assert "#define NET_DST_PORT 6001u" in (p.dir / "src" / "net.c").read_text()
    assert (p.dir / "src" / "ts_wire.c").is_file() and (p.dir / "src" / "ts_device.c").is_file()
    assert '#include "ts_device.h"' in main and "ts_device_run(&cfg, &app);" in main


def test_e2e_argument_helpers():
    import argparse

    from tinysplit.firmware.e2e import add_e2e_arguments

    assert parse_budgets("1,4,16") == (1, 4, 16)
    for bad in ("", "0,4", "a"):
        with pytest.raises(InputError):
            parse_budgets(bad)
    p = argparse.ArgumentParser()
    add_e2e_arguments(p)  # the generic --e2e/--transport and every method app's own (nair: --budgets)
    a = p.parse_args(["--e2e", "--transport", "udp", "--budgets", "2,3"])
    assert (a.e2e, a.transport, parse_budgets(a.budgets)) == (True, "udp", (2, 3))
    assert p.parse_args([]).e2e is False


# --- in QEMU ------------------------------------------------------------------------------------------

@pytest.mark.emulator
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-riscv32-virt"])
def test_slices_byte_identical_with_devicesim(board: str):
    if board == "qemu-riscv32-virt" and shutil.which("qemu-system-riscv32") is None:
        pytest.fail("qemu-system-riscv32 is not installed: ./setup.sh installs the toolchains the tests need")
    cfg, built = _built(board)
    rng = np.random.default_rng(1)

    async def main():
        async with DeviceLink(get_board(board), built.elf, cfg) as link:
            await link.attach(serve=True)
            assert link.hello.units_total == 16 and link.hello.unit_bytes == H * W * U
            assert (link.hello.input_bytes, link.hello.output_bytes) == (IN, H * W * C)
            seq = 100
            x = rng.integers(-128, 128, IN, dtype=np.int8)
            await link.send_input(seq, x)  # the default budget (16 units: two frames)
            assert await link.wait_frames(seq) == _expected(x, 16, seq)
            # budget changes by CONTROL (units, bytes, clamped), input in chunks of 30 bytes (4 parts)
            for items, budget in (([(1, 1)], 1), ([(1, 10)], 10), ([(1, 11)], 11), ([(1, 0)], 1),
                                  ([(1, 99)], 16), ([(2, 5 * 96 + 50)], 5), ([(1, 3), (1, 9), (77, 1)], 3)):
                await link.control(items)
                for _ in range(2):
                    seq += 1
                    x = rng.integers(-128, 128, IN, dtype=np.int8)
                    await link.send_input(seq, x, chunk=30)
                    got = await link.wait_frames(seq)
                    assert got == _expected(x, budget, seq), f"budget {budget}, seq {seq}"
            stats = await link.stats()
            assert stats["drops"] == 0 and stats["received"] == 1 + 7 + 7 * 2 * 4 + 1
            assert stats["instructions"] > 0
            assert await link.exit(3) == 3

    _run(main())


@pytest.mark.emulator
def test_bad_frames_are_counted_and_the_device_keeps_working():
    cfg, built = _built("qemu-mps2-an386")
    good = _raw(FrameType.CONTROL, struct.pack("<BI", 1, 2))
    bad = {
        "cobs": [b"\x05\x01\x00"],  # a block that promises 4 bytes and holds 1
        "oversize": [bytes(range(1, 201)) * 6 + b"\x00"],  # a 1200-byte run, no delimiter inside
        "short": [cobs_encode(b"\x01\x02\x03") + b"\x00"],
        "magic": [cobs_encode(_raw(FrameType.CONTROL, magic=b"XS")) + b"\x00"],
        "version": [cobs_encode(_raw(FrameType.CONTROL, version=2)) + b"\x00"],
        "length": [cobs_encode(_raw(FrameType.CONTROL, b"\x01" * 5, length=4)) + b"\x00"],
        "crc": [cobs_encode(good[:-1] + bytes([good[-1] ^ 0xFF])) + b"\x00"],
        "type": [cobs_encode(_raw(0x42)) + b"\x00"],
        "part": [cobs_encode(_raw(FrameType.INPUT, b"\x00", part_index=2, part_count=2)) + b"\x00",
                 cobs_encode(_raw(FrameType.INPUT, b"\x00" * 10, seq=5, part_index=1, part_count=2)) + b"\x00"],
        "payload": [cobs_encode(_raw(FrameType.CONTROL, b"\x01\x02\x03")) + b"\x00",
                    cobs_encode(_raw(FrameType.INPUT, b"\x00" * (IN - 1), seq=6)) + b"\x00",
                    # more bytes than the input holds: the second chunk would overflow it
                    cobs_encode(_raw(FrameType.INPUT, b"\x01" * 60, seq=7, part_index=0, part_count=2)) + b"\x00"
                    + cobs_encode(_raw(FrameType.INPUT, b"\x01" * 60, seq=7, part_index=1, part_count=2)) + b"\x00"],
        "bundle": [cobs_encode(_raw(FrameType.CONTROL, struct.pack("<BI", 1, 1), bundle=BUNDLE ^ 1)) + b"\x00"],
        "unexpected_type": [cobs_encode(_raw(FrameType.NAIR_SLICE, struct.pack("<HHH", 0, 1, 16) + bytes(96)))
                            + b"\x00"],
    }

    async def main():
        async with DeviceLink(get_board("qemu-mps2-an386"), built.elf, cfg) as link:
            await link.attach(serve=True)
            await link.send_raw(b"\x00\x00\x00")  # empty runs: ignored, not counted
            for chunks in bad.values():
                for c in chunks:
                    await link.send_raw(c)
            await link.send_raw(b"\x13\x37" * 50 + b"\x00")  # garbage: a malformed COBS block
            assert (await link.stats())["last_error"] == 9  # cobs
            # results from the host are accepted and counted as received
            await link.send(link.frame(FrameType.RESULT, Result(3, 16, 0), 1))
            stats = await link.stats()
            for reason, chunks in bad.items():
                want = len(chunks) + (1 if reason == "cobs" else 0)
                assert stats[f"drops_{reason}"] == want, (reason, stats)
            assert stats["drops"] == sum(len(c) for c in bad.values()) + 1
            assert stats["received"] == 4 + 1 + 2  # INPUT frames that decode (dropped later), RESULT, 2 STATS
            # still working: a good input at a changed budget gives the exact frames
            await link.send(good)  # budget 2
            x = np.arange(IN, dtype=np.int8)
            await link.send_input(9, x)
            assert await link.wait_frames(9) == _expected(x, 2, 9)
            after = await link.stats()
            assert after["drops"] == stats["drops"] and after["received"] == stats["received"] + 3
            assert after["last_error"] == 9 and after["instructions"] > 0
            assert await link.exit(0) == 0

    _run(main())


@pytest.mark.emulator
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
def test_udp_slices_reach_a_python_socket_on_localhost(board: str):
    cfg, built = _built(board, "udp")
    rng = np.random.default_rng(2)

    async def main():
        async with DeviceLink(get_board(board), built.elf, cfg) as link:
            await link.attach(serve=True)  # a UdpTransport bound to 127.0.0.1:cfg.udp_port
            await link.until(lambda: link.hello_seen == 2, "the HELLO by UDP")  # UART and UDP
            assert link.hello.capabilities & 0x11 == 0x11  # nair, udp
            for seq, budget in ((1, 16), (2, 4), (3, 12)):
                await link.control([(1, budget)])  # CONTROL budget in units
                x = rng.integers(-128, 128, IN, dtype=np.int8)
                await link.send_input(seq, x)
                assert await link.wait_frames(seq) == _expected(x, budget, seq)
            stats = await link.stats()  # the reply comes back by UDP as well
            assert stats["drops"] == 0 and stats["last_error"] == 0
            assert link.data.stats.frames_in == link.counters.frames - 1  # all but the UART HELLO by UDP
            assert await link.exit(0) == 0

    _run(main())


# --- end to end through the TailServer ------------------------------------------------------------------

E2E_SAMPLES = 20


def _fake_e2e_inputs(bundle: Path):
    """A fake device model with the digits head's shape, and its outputs as the reference features."""
    from tinysplit.manifest import load_manifest
    from tinysplit.reference import heldout, quantized_inputs
    from tinysplit.methods.nair.slices import plan_for

    m = load_manifest(bundle)
    plan = plan_for(m)
    x, _ = heldout(bundle, m)
    xq = quantized_inputs(m, x[:E2E_SAMPLES])
    n_in = int(np.prod(xq.shape[1:]))
    feats = np.stack([fake_expected(xq[i].reshape(-1), plan.output_bytes).reshape(plan.height, plan.width,
                                                                                   plan.channels)
                      for i in range(E2E_SAMPLES)])
    src = write_fake_model(_ROOT / f"digits-fake-{n_in}", in_bytes=n_in, out_bytes=plan.output_bytes,
                           arena_bytes=n_in + plan.output_bytes)
    return src, feats, plan


@pytest.mark.emulator
@pytest.mark.parametrize("board,transport", [("qemu-mps2-an386", "uart"), ("qemu-mps2-an386", "udp")])
def test_e2e_tail_server_with_fake_head(board: str, transport: str, digits_bundle: Path, tmp_path: Path):
    src, feats, plan = _fake_e2e_inputs(digits_bundle)
    r = run_e2e(digits_bundle, board, E2E_SAMPLES, transport, [1, 4, 16], sources=src,
                reference_features=feats, workdir=tmp_path)
    assert r["ok"] and r["exit_code"] == 0
    for b, row in r["budgets"].items():
        assert row["labels_equal_reference"] == 1.0, (b, row["mismatches"])
        assert row["samples"] == E2E_SAMPLES and row["complete"] == E2E_SAMPLES
        assert row["units_received"] == [int(b)]
        assert row["bytes_per_sample"] == 24 + 6 + int(b) * plan.unit_bytes
        assert row["server"]["predictions"] == E2E_SAMPLES and row["server"]["drops"] == {}
    assert r["device_stats"]["drops"] == 0


@pytest.fixture(scope="module")
def codegen():
    import tinysplit.exporter.codegen as codegen

    return codegen


@pytest.mark.emulator
@pytest.mark.slow
@pytest.mark.parametrize("board,transport", [("qemu-mps2-an386", "uart"), ("qemu-mps2-an386", "udp"),
                                             ("qemu-lm3s6965evb", "uart")])
def test_e2e_digits_real_head_every_budget(board: str, transport: str, codegen, digits_bundle: Path,
                                           tmp_path: Path):
    r = run_e2e(digits_bundle, board, E2E_SAMPLES, transport, list(range(1, 17)), workdir=tmp_path)
    assert r["ok"]
    for b, row in r["budgets"].items():
        assert row["labels_equal_reference"] == 1.0, (b, row["mismatches"])
        assert row["complete"] == E2E_SAMPLES


@pytest.mark.emulator
@pytest.mark.slow
def test_hil_e2e_arguments_run_and_print_json(codegen, digits_bundle: Path, tmp_path: Path, capsys):
    import json

    from tinysplit.cli import main

    assert main(["hil", "--bundle", str(digits_bundle), "--board", "qemu-mps3-an547", "--samples", "5", "--e2e",
                 "--transport", "udp", "--budgets", "1,16", "--keep", str(tmp_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ok"] and sorted(r["budgets"]) == ["1", "16"] and r["transport"] == "udp"
