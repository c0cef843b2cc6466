"""The rebel device app: wire-protocol frames from the C firmware in QEMU, byte-identical with the
contract (one EARLY_LABEL (u16 c*, u8 q + 128) or one LATENT (z) per sample, c* the first index of
the largest int8 confidence q, early iff q >= q_t); CONTROL key 3 (value = q_t + 128, clamped to
0..256) changes the path of the following samples; UDP through the emulated LAN9118. A fake device
model (tests/firmware_support.py) stands in for Head1 + the mixture: its output is a known function
of the input, so the test writes the expected frames itself."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from firmware_support import fake_expected, write_fake_model
from tinysplit.boards import get_board
from tinysplit.errors import InputError, ManifestError
from tinysplit.firmware.apps import get_app
from tinysplit.firmware.apps.rebel import (MAX_LATENT, RebelAppConfig, config_from_manifest, control_value,
                                           parse_thresholds)
from tinysplit.firmware.devicelink import DeviceLink, free_udp_port
from tinysplit.firmware.project import render_project
from tinysplit.manifest import DeviceModel, InputSpec, Manifest, QTensor
from tinysplit.methods.rebel.decision import threshold_q
from tinysplit.wire import FrameType, encode_frame
from tinysplit.wire.payloads import Chunk, EarlyLabel, make_frame

# The fake model's output is D + C = 22 int8 values: z = out[0:12], confidences = out[12:22], with
# out[i] = in[i] + 3 + i (mod 256) for i >= 1 (the input is longer than the output).
IN, D, C = 100, 12, 10
BUNDLE, DEVICE = 0x1234ABCD, 7
DEFAULT_QT = 100
_ROOT = Path(tempfile.mkdtemp(prefix="tinysplit-rebeltest-"))


def _cfg(transport: str = "uart", port: int = 5600, **kw) -> RebelAppConfig:
    return RebelAppConfig(**{"bundle_id": BUNDLE, "device_id": DEVICE, "latent_dim": D, "classes": C,
                             "default_q_t": DEFAULT_QT, "transport": transport, "udp_port": port, **kw})


@lru_cache(maxsize=None)
def _model():
    return write_fake_model(_ROOT / "model", in_bytes=IN, out_bytes=D + C, arena_bytes=IN + D + C)


@lru_cache(maxsize=None)
def _built(board: str, transport: str = "uart"):
    from tinysplit.firmware.build import build_project

    cfg = _cfg(transport, free_udp_port() if transport == "udp" else 5600)
    project = render_project(get_board(board), _model(), _ROOT / f"{board}-{transport}", app="rebel", app_config=cfg)
    return cfg, build_project(project.dir)


def _expected(x: np.ndarray, q_t: int, seq: int) -> list[bytes]:
    """The one frame the contract says the device sends for input x at threshold q_t."""
    out = fake_expected(x, D + C)
    conf = out[D:].astype(np.int32)
    best = int(np.argmax(conf))  # numpy: the first index of the maximum
    q = int(conf[best])
    if q >= q_t:
        f = make_frame(FrameType.EARLY_LABEL, EarlyLabel(best, q + 128), DEVICE, BUNDLE, seq)
    else:
        f = make_frame(FrameType.LATENT, Chunk(out[:D].tobytes()), DEVICE, BUNDLE, seq)
    return [encode_frame(f)]


def _is_early(x: np.ndarray, q_t: int) -> bool:
    return int(fake_expected(x, D + C)[D:].astype(np.int32).max()) >= q_t


def _with_confidences(rng: np.random.Generator, conf: list[int]) -> np.ndarray:
    """A random input whose fake-model confidences are exactly ``conf``."""
    x = rng.integers(-128, 128, IN, dtype=np.int8)
    for c, q in enumerate(conf):
        i = D + c
        x[i] = np.array((q - 3 - i) % 256, dtype=np.uint8).view(np.int8)
    assert fake_expected(x, D + C)[D:].tolist() == conf
    return x


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


# --- configuration and rendering (no emulator) ----------------------------------------------------------

def _manifest(out_shape=(1, 1, 1, D + C), scale=0.05, zp=-20, **rebel) -> Manifest:
    data = {"latent_dim": D, "classes": C, "confidence_scale": 2.0, "default_threshold": 0.6, **rebel}
    dm = DeviceModel("head1", "head1.tflite", "0" * 64, "features",
                     (QTensor("in", (1, 10, 10, 1), "int8", 0.5, 0),), (QTensor("out", out_shape, "int8", scale, zp),),
                     ("CONV_2D",), 1000, 1000)
    return Manifest("t", f"{BUNDLE:08x}", "rebel", InputSpec((1, 1, 10, 10)), tuple("abcdefghij"), (dm,), (),
                    {"rebel": data})


def test_config_from_manifest_computes_q_t_with_threshold_q():
    cfg = config_from_manifest(_manifest(), device_id=3, transport="udp", udp_port=6001)
    assert (cfg.bundle_id, cfg.device_id, cfg.latent_dim, cfg.classes, cfg.transport, cfg.udp_port) == \
        (BUNDLE, 3, D, C, "udp", 6001)
    assert cfg.default_q_t == threshold_q(0.6, 2.0, 0.05, -20) == -20 + 24
    assert config_from_manifest(_manifest(out_shape=(1, D + C))).default_q_t == 4  # [1, D+C] as well
    assert config_from_manifest(_manifest(default_threshold=1.0, confidence_scale=100.0)).default_q_t == 128
    with pytest.raises(ManifestError, match="12 \\+ classes 9 = 21"):
        config_from_manifest(_manifest(classes=9))
    with pytest.raises(ManifestError, match="method_data.rebel"):
        config_from_manifest(Manifest(**{**_manifest().__dict__, "method": "plain", "method_data": {}}))
    assert get_app("rebel").config_from_manifest(_manifest()).default_q_t == 4
    assert (control_value(-128), control_value(0), control_value(128)) == (0, 128, 256)
    assert parse_thresholds("0,0.5,1") == (0.0, 0.5, 1.0)
    for bad in ("", "1.5", "-0.1", "a", "nan"):
        with pytest.raises(InputError):
            parse_thresholds(bad)


def test_rebel_render_checks_config(tmp_path: Path):
    m = _model()
    board = get_board("qemu-mps2-an386")
    with pytest.raises(InputError, match="needs its configuration"):
        render_project(board, m, tmp_path / "a", app="rebel")
    with pytest.raises(InputError, match="does not match the model's 22 output bytes"):
        render_project(board, m, tmp_path / "b", app="rebel", app_config=_cfg(classes=C + 1))
    with pytest.raises(InputError, match="must be >= 1"):
        render_project(board, m, tmp_path / "c", app="rebel", app_config=_cfg(latent_dim=0, classes=D + C))
    with pytest.raises(InputError, match="default q_t 129"):
        render_project(board, m, tmp_path / "d", app="rebel", app_config=_cfg(default_q_t=129))
    with pytest.raises(InputError, match="cannot send over udp"):
        render_project(get_board("qemu-riscv32-virt"), m, tmp_path / "e", app="rebel", app_config=_cfg("udp"))
    big = write_fake_model(tmp_path / "big", in_bytes=16, out_bytes=MAX_LATENT + 1 + C, arena_bytes=2048)
    with pytest.raises(InputError, match="latent_dim 1019 is too large"):
        render_project(board, big, tmp_path / "f", app="rebel",
                       app_config=_cfg(latent_dim=MAX_LATENT + 1))
    p = render_project(board, m, tmp_path / "g", app="rebel", app_config=_cfg("udp", 6002))
    main = (p.dir / "src" / "main.c").read_text()
    for line in ("#define REBEL_BUNDLE_ID 0x1234ABCDu", "#define REBEL_LATENT 12u", "#define REBEL_CLASSES 10u",
                 "#define REBEL_DEFAULT_QT (100)", "#define REBEL_UDP 1"):
        assert line in main
    assert "#define NET_DST_PORT 6002u" in (p.dir / "src" / "net.c").read_text()
    assert '#include "ts_device.h"' in main and "ts_device_run(&cfg, &app);" in main


# --- in QEMU ------------------------------------------------------------------------------------------

@pytest.mark.emulator
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-riscv32-virt"])
def test_frames_byte_identical_at_every_threshold(board: str):
    if board == "qemu-riscv32-virt" and shutil.which("qemu-system-riscv32") is None:
        pytest.fail("qemu-system-riscv32 is not installed: ./setup.sh installs the toolchains the tests need")
    cfg, built = _built(board)
    rng = np.random.default_rng(11)

    async def main():
        async with DeviceLink(get_board(board), built.elf, cfg) as link:
            await link.attach(serve=True)
            h = link.hello
            assert (h.capabilities, h.input_bytes, h.output_bytes, h.units_total, h.unit_bytes) == \
                (1 << 1, IN, D + C, 0, 0)
            seq = 0
            # the default q_t (100, from the config) before any CONTROL: mixed
            # then: early-only, mixed (q_t 110), remote-only; clamps; first value of a repeated key wins
            plan = [(None, DEFAULT_QT), ([(3, 0)], -128), ([(3, 238)], 110), ([(3, 256)], 128),
                    ([(3, 100000)], 128), ([(3, 0xFFFFFFFF)], 128), ([(3, 128), (3, 0), (77, 5)], 0)]
            paths: dict[int, set[bool]] = {}
            for items, q_t in plan:
                if items is not None:
                    await link.control(items)
                for _ in range(6):
                    seq += 1
                    x = rng.integers(-128, 128, IN, dtype=np.int8)
                    await link.send_input(seq, x, chunk=40 if seq % 2 else 1024)
                    assert await link.wait_frames(seq) == _expected(x, q_t, seq), f"q_t {q_t}, seq {seq}"
                    paths.setdefault(q_t, set()).add(_is_early(x, q_t))
            assert paths[-128] == {True} and paths[128] == {False}
            assert paths[DEFAULT_QT] == {True, False} and paths[110] == {True, False}  # mixed
            # ties: c* is the FIRST index of the maximum; q == q_t is early, q_t - 1 is not
            await link.control([(3, 90 + 128)])
            for conf, early in (([5, 90, 3, 90, -7, 90, 0, 1, 2, 3], True), ([89, 88, 89, 0, 0, 0, 0, 0, 0, 89], False),
                                ([-128] * C, False), ([127] * C, True)):
                seq += 1
                x = _with_confidences(rng, conf)
                assert _is_early(x, 90) is early
                await link.send_input(seq, x)
                assert await link.wait_frames(seq) == _expected(x, 90, seq), conf
            stats = await link.stats()
            assert stats["drops"] == 0 and stats["last_error"] == 0 and stats["instructions"] > 0
            assert stats["sent"] == 1 + seq + 1  # HELLO, one frame per sample, this STATS reply
            assert link.counters.other_device == 0
            assert await link.exit(3) == 3

    _run(main())


@pytest.mark.emulator
def test_control_mid_run_changes_the_path_of_the_next_samples():
    cfg, built = _built("qemu-mps2-an386")
    x = _with_confidences(np.random.default_rng(5), [10, 20, 30, 40, 50, 40, 30, 20, 10, 0])  # q = 50 at c 4

    async def main():
        async with DeviceLink(get_board("qemu-mps2-an386"), built.elf, cfg) as link:
            await link.attach(serve=True)
            got = []
            for seq, value in enumerate((None, 50 + 128, 51 + 128, 0, 256, 50 + 128), start=1):
                if value is not None:
                    await link.control([(3, value)])
                await link.send_input(seq, x)
                got.append(await link.wait_frames(seq))
            q_ts = (DEFAULT_QT, 50, 51, -128, 128, 50)
            assert got == [_expected(x, q, s) for s, q in enumerate(q_ts, start=1)]
            types = [f[0][3] for f in got]
            assert types == [FrameType.LATENT, FrameType.EARLY_LABEL, FrameType.LATENT, FrameType.EARLY_LABEL,
                             FrameType.LATENT, FrameType.EARLY_LABEL]
            assert got[1][0][20:23] == bytes([4, 0, 50 + 128])  # u16 label 4, confidence q + 128
            assert await link.exit(0) == 0

    _run(main())


@pytest.mark.emulator
def test_udp_frames_reach_a_python_socket_on_localhost():
    cfg, built = _built("qemu-mps2-an386", "udp")
    rng = np.random.default_rng(2)

    async def main():
        async with DeviceLink(get_board("qemu-mps2-an386"), built.elf, cfg) as link:
            await link.attach(serve=True)
            await link.until(lambda: link.hello_seen == 2, "the HELLO by UDP")  # UART and UDP
            assert link.hello.capabilities == (1 << 1) | (1 << 4)  # rebel, udp
            seq = 0
            for value, q_t in ((0, -128), (238, 110), (256, 128)):
                await link.control([(3, value)])
                for _ in range(3):
                    seq += 1
                    x = rng.integers(-128, 128, IN, dtype=np.int8)
                    await link.send_input(seq, x)
                    assert await link.wait_frames(seq) == _expected(x, q_t, seq)
            stats = await link.stats()
            assert stats["drops"] == 0 and stats["last_error"] == 0
            assert link.data.stats.frames_in == link.counters.frames - 1  # all but the UART HELLO by UDP
            assert await link.exit(0) == 0

    _run(main())
