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


def test_e2e_arguments_take_thresholds():
    import argparse

    from tinysplit.firmware.e2e import add_e2e_arguments

    p = argparse.ArgumentParser()
    add_e2e_arguments(p)  # the generic options and every method app's own (nair --budgets, rebel --thresholds)
    a = p.parse_args(["--e2e", "--thresholds", "0,0.25,1", "--budgets", "1"])
    assert parse_thresholds(a.thresholds) == (0.0, 0.25, 1.0) and a.budgets == "1"
    assert p.parse_args([]).thresholds is None


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
def test_the_largest_latent_goes_in_one_frame(tmp_path: Path):
    """D = 1018 (the contract's bound): one LATENT frame of 1018 bytes; early labels still work."""
    from tinysplit.firmware.build import build_project

    d, c, n_in = MAX_LATENT, 3, 64
    model = write_fake_model(tmp_path / "model", prefix="wide", in_bytes=n_in, out_bytes=d + c,
                             arena_bytes=n_in + d + c)
    cfg = _cfg(latent_dim=d, classes=c, default_q_t=128)
    built = build_project(render_project(get_board("qemu-mps2-an386"), model, tmp_path / "p", app="rebel",
                                         app_config=cfg).dir)
    rng = np.random.default_rng(4)

    def expected(x, q_t, seq):
        out = fake_expected(x, d + c)
        conf = out[d:].astype(np.int32)
        best = int(np.argmax(conf))
        if conf[best] >= q_t:
            f = make_frame(FrameType.EARLY_LABEL, EarlyLabel(best, int(conf[best]) + 128), DEVICE, BUNDLE, seq)
        else:
            f = make_frame(FrameType.LATENT, Chunk(out[:d].tobytes()), DEVICE, BUNDLE, seq)
        return [encode_frame(f)]

    async def main():
        async with DeviceLink(get_board("qemu-mps2-an386"), built.elf, cfg) as link:
            await link.attach(serve=True)
            assert link.hello.output_bytes == d + c
            for seq, value in ((1, None), (2, 0)):
                if value is not None:
                    await link.control([(3, value)])
                x = rng.integers(-128, 128, n_in, dtype=np.int8)
                await link.send_input(seq, x)
                got = await link.wait_frames(seq)
                assert got == expected(x, 128 if value is None else -128, seq)
                assert len(got[0]) == 24 + (d if value is None else 3)
            assert (await link.stats())["drops"] == 0
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


# --- end to end through the TailServer ------------------------------------------------------------------
# A synthetic rebel bundle around the fake model: its "head1" output [1, 1, 1, D + C] (scale 0.05, zero
# point -20), a linear ONNX tail "remote" on the whole dequantized output that reads only z, and the
# contract's reference computed here (early: c* from decision.decide; remote: the tail on the int8
# output with the confidences replaced by the zero point).

E2E_SAMPLES = 16
OUT_SCALE, OUT_ZP, CONF_SCALE = 0.01, -20, 2.0  # q_t(t) = -20 + ceil(200 t): 0.6 -> 100 (mixed), 1 -> 128


def write_rebel_bundle(out: Path, samples: int = E2E_SAMPLES, default_threshold: float = 0.6) -> Path:
    """A rebel bundle (manifest, held-out inputs, a placeholder .tflite, a linear ONNX tail) whose
    device model is the fake model of this module."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tinysplit import __version__
    from tinysplit.manifest import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    np.savez(out / "heldout.npz", x=rng.uniform(-60, 60, (samples, 1, 10, 10)).astype(np.float32),
             y=rng.integers(0, C, samples))
    (out / "head1.tflite").write_bytes(b"placeholder: the tests give the fake model's C sources")
    w = np.zeros((D + C, C), np.float32)
    w[:D] = rng.normal(size=(D, C)).astype(np.float32)  # the tail reads z only
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "remote", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 1, D + C])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", C])],
        [numpy_helper.from_array(np.array([-1, D + C], np.int64), "shape"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, out / "remote.onnx")
    q = lambda name, shape, s, z: {"name": name, "shape": list(shape), "dtype": "int8", "scale": s, "zero_point": z}
    manifest = {
        "format": "tinysplit-bundle", "version": 1, "tinysplit_version": __version__, "name": "rebel_fake",
        "bundle_id": f"{BUNDLE:08x}", "method": "rebel",
        "input": {"shape_nchw": [1, 1, 10, 10], "dtype": "float32", "heldout_file": "heldout.npz"},
        "classes": [f"c{i}" for i in range(C)],
        "device_models": [{"name": "head1", "file": "head1.tflite", "sha256": sha256_file(out / "head1.tflite"),
                           "kind": "features", "inputs": [q("x", (1, 10, 10, 1), 0.5, 0)],
                           "outputs": [q("out", (1, 1, 1, D + C), OUT_SCALE, OUT_ZP)], "ops": ["CONV_2D"],
                           "flash_bytes": 0, "arena_bytes": IN + D + C}],
        "host_tails": [{"name": "remote", "file": "remote.onnx", "sha256": sha256_file(out / "remote.onnx"),
                        "consumes": ["head1"], "inputs": [{"name": "x", "shape": [1, 1, 1, D + C], "dtype": "float32"}],
                        "outputs": [{"name": "logits", "shape": [1, C], "dtype": "float32"}]}],
        "method_data": {"rebel": {"latent_dim": D, "classes": C, "confidence_scale": CONF_SCALE,
                                  "default_threshold": default_threshold}},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def fake_outputs(bundle: Path, n: int) -> np.ndarray:
    """The fake model's int8 outputs for the bundle's first n held-out inputs, shape (n, 1, 1, 1, D + C)."""
    from tinysplit.manifest import load_manifest
    from tinysplit.reference import heldout, quantized_inputs

    m = load_manifest(bundle)
    xq = quantized_inputs(m, heldout(bundle, m)[0][:n])
    return np.stack([fake_expected(xq[i].reshape(-1), D + C).reshape(1, 1, 1, D + C) for i in range(n)])


def contract_reference(bundle: Path, thresholds: list[float], n: int, outputs_q: np.ndarray):
    """The contract's reference: {t: (labels, early)} from decide() and the ONNX tail."""
    import onnxruntime as ort

    from tinysplit.methods.rebel.decision import decide
    from tinysplit.quant import dequantize

    flat = outputs_q.reshape(len(outputs_q), -1)
    remote_in = flat.copy()
    remote_in[:, D:] = OUT_ZP
    sess = ort.InferenceSession(str(bundle / "remote.onnx"), providers=["CPUExecutionProvider"])
    tail = sess.run(None, {"x": dequantize(remote_in.reshape(-1, 1, 1, D + C), OUT_SCALE, OUT_ZP)})[0].argmax(1)
    out = {}
    for t in thresholds:
        d = decide(flat, D, C, t, CONF_SCALE, OUT_SCALE, OUT_ZP)
        out[t] = (np.where(d.early, d.label, tail), d.early)
    return out


@pytest.mark.emulator
@pytest.mark.parametrize("transport", ["uart", "udp"])
def test_e2e_tail_server_with_fake_head(transport: str, tmp_path: Path):
    from tinysplit.firmware.apps.rebel import run_e2e

    bundle = write_rebel_bundle(tmp_path / "bundle")
    feats = fake_outputs(bundle, E2E_SAMPLES)
    r = run_e2e(bundle, "qemu-mps2-an386", E2E_SAMPLES, transport, [0.0, 0.6, 1.0], sources=_model(),
                reference_features=feats, reference=contract_reference, workdir=tmp_path / "work")
    assert r["ok"] and r["exit_code"] == 0 and r["device_stats"]["drops"] == 0
    rows = {row["threshold"]: row for row in r["thresholds"].values()}
    assert rows[0.0]["early_fraction"] > 0.9 and rows[1.0]["early_fraction"] == 0.0
    assert 0.0 < rows[0.6]["early_fraction"] < 1.0
    for t, row in rows.items():
        assert row["labels_equal_reference"] == 1.0 and row["paths_equal_reference"] == 1.0, (t, row["mismatches"])
        assert row["server"]["predictions"] == E2E_SAMPLES and row["server"]["drops"] == {}


@pytest.mark.emulator
@pytest.mark.slow
@pytest.mark.parametrize("board,transport", [("qemu-mps2-an386", "uart"), ("qemu-mps2-an386", "udp"),
                                             ("qemu-riscv32-virt", "uart")])
def test_e2e_digits_real_device_model_three_thresholds(board: str, transport: str, rebel_bundle: Path,
                                                       tmp_path: Path):
    """The trained digits ReBEL bundle as deployed: generated C for Head1 + GMC in QEMU, the wire protocol,
    the server: for every sample at three thresholds the device's path (early or remote) and the final
    label equal tinysplit.methods.rebel.reference's."""
    from tinysplit.firmware.apps.rebel import run_e2e
    from tinysplit.methods.rebel.reference import labels_at_thresholds

    n = 20
    ref = labels_at_thresholds(rebel_bundle, [0.5], n=n)[0.5]
    mid = 0.5 if 0 < ref.coverage < 1 else 0.99
    r = run_e2e(rebel_bundle, board, n, transport, [0.0, mid, 1.0], workdir=tmp_path)
    assert r["ok"] and r["exit_code"] == 0
    rows = {row["threshold"]: row for row in r["thresholds"].values()}
    assert rows[1.0]["early_fraction"] == 0.0 and rows[0.0]["early_fraction"] == 1.0
    for t, row in rows.items():
        assert row["labels_equal_reference"] == 1.0 and row["paths_equal_reference"] == 1.0, (t, row["mismatches"])
        assert row["server"]["predictions"] == n and row["server"]["drops"] == {}
