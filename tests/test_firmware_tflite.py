"""Firmware from any int8 .tflite (no bundle): `tinysplit firmware/hil --tflite`, the inputs of a
.tflite HIL check, and an unsupported op named with its operator index (exit 3).

The models are built with tests/tflite_builder.py (no TensorFlow); the real installs without
TensorFlow and PyTorch are tests/test_installs.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from opcases import conv_case
from tflite_builder import ModelBuilder
from tinysplit import cli
from tinysplit.errors import InputError, UnsupportedModelError
from tinysplit.firmware.source import load_inputs, tflite_source

BOARD = "qemu-mps2-an386"


@pytest.fixture(scope="module")
def conv_tflite(tmp_path_factory) -> Path:
    """A small int8 conv model in a file whose name is not a C identifier."""
    case = conv_case(np.random.default_rng(3), 0, depthwise=False)
    p = tmp_path_factory.mktemp("models") / "My-Conv.v2.tflite"
    p.write_bytes(case.tflite)
    return p


@pytest.fixture(scope="module")
def unsupported_tflite(tmp_path_factory) -> Path:
    """operator 0 ADD (supported), operator 1 EXP (not)."""
    b = ModelBuilder()
    x = b.tensor((1, 4, 4, 2), "int8", 0.05, 3)
    y = b.tensor((1, 4, 4, 2), "int8", 0.1, -2)
    z = b.tensor((1, 4, 4, 2), "int8", 0.2, 0)
    b.op("ADD", [x, x], [y])
    b.op("EXP", [y], [z])
    p = tmp_path_factory.mktemp("models") / "exp.tflite"
    p.write_bytes(b.build([x], [z]))
    return p


def _input_shape(p: Path) -> tuple[int, ...]:
    from tinysplit.exporter.tflite_model import parse_tflite

    return parse_tflite(p.read_bytes()).input_tensors()[0].shape


def test_unsupported_op_is_named_with_its_operator_index(unsupported_tflite, tmp_path, capsys):
    out = tmp_path / "fw"
    assert cli.main(["firmware", "--tflite", str(unsupported_tflite), "--board", BOARD, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "operator 1 (EXP) is not supported" in err and "Supported ops:" in err
    assert not out.exists()
    assert cli.main(["hil", "--tflite", str(unsupported_tflite), "--board", BOARD, "--samples", "1"]) == 3
    assert "operator 1 (EXP)" in capsys.readouterr().err
    with pytest.raises(UnsupportedModelError, match=r"^operator 1 \(EXP\)"):
        tflite_source(unsupported_tflite, 1)


def test_firmware_tflite_usage_errors(conv_tflite, tmp_path, capsys):
    base = ["firmware", "--tflite", str(conv_tflite), "--board", BOARD, "--out", str(tmp_path / "fw")]
    assert cli.main([*base, "--app", "nair"]) == 2
    err = capsys.readouterr().err
    assert "app 'nair'" in err and "--bundle" in err
    assert cli.main([*base, "--model", "head"]) == 2
    assert "--model needs --bundle" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # --bundle and --tflite are mutually exclusive
        cli.main([*base, "--bundle", str(tmp_path)])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    missing = ["firmware", "--tflite", str(tmp_path / "nope.tflite"), "--board", BOARD, "--out", str(tmp_path / "x")]
    assert cli.main(missing) == 2
    assert "does not exist" in capsys.readouterr().err
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all")
    assert cli.main(["firmware", "--tflite", str(garbage), "--board", BOARD, "--out", str(tmp_path / "y")]) == 2
    assert "garbage.tflite" in capsys.readouterr().err
    hil = ["hil", "--tflite", str(conv_tflite), "--board", BOARD]
    assert cli.main([*hil, "--e2e"]) == 2
    assert "--e2e needs --bundle" in capsys.readouterr().err
    assert cli.main([*hil, "--inputs", "x.npy", "--seed", "1"]) == 2
    assert cli.main(["hil", "--bundle", str(tmp_path), "--board", BOARD, "--inputs", "x.npy"]) == 2
    assert "--inputs goes with --tflite" in capsys.readouterr().err


def test_random_inputs_are_seeded_int8_of_the_model_shape(conv_tflite):
    shape = _input_shape(conv_tflite)
    a, b = tflite_source(conv_tflite, 4), tflite_source(conv_tflite, 4)
    c = tflite_source(conv_tflite, 4, seed=1)
    assert a.name == "My-Conv.v2" and a.inputs_from == "random int8 (seed 0)"
    assert a.inputs.dtype == np.int8 and a.inputs.shape == (4, *shape[1:])
    assert np.array_equal(a.inputs, b.inputs) and not np.array_equal(a.inputs, c.inputs)
    assert a.inputs.min() < -64 and a.inputs.max() > 64  # the whole int8 range


def test_inputs_from_a_file(conv_tflite, tmp_path):
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.quant import quantize

    t = parse_tflite(conv_tflite.read_bytes()).input_tensors()[0]
    shape, scale, zp = t.shape, t.scales[0], t.zero_points[0]
    rng = np.random.default_rng(0)
    f = rng.normal(0, 1, size=(6, *shape[1:])).astype(np.float32)
    np.save(tmp_path / "float.npy", f)
    s = tflite_source(conv_tflite, 4, tmp_path / "float.npy")
    assert s.inputs_from == "float.npy" and np.array_equal(s.inputs, quantize(f[:4], scale, zp))
    q = rng.integers(-128, 128, size=(3, *shape[1:]), dtype=np.int8)
    np.save(tmp_path / "int8.npy", q)
    assert np.array_equal(tflite_source(conv_tflite, 100, tmp_path / "int8.npy").inputs, q)  # at most what is there
    np.save(tmp_path / "one.npy", q[0])  # one sample without its batch dimension
    assert tflite_source(conv_tflite, 5, tmp_path / "one.npy").inputs.shape == (1, *shape[1:])

    def bad(a, match: str, name: str = "bad.npy") -> None:
        p = tmp_path / name
        if isinstance(a, bytes):
            p.write_bytes(a)
        else:
            np.save(p, a)
        with pytest.raises(InputError, match=match):
            load_inputs(p, shape, scale, zp)

    bad(np.zeros((2, *shape[1:-1], shape[-1] + 1), np.int8), r"have shape .* the model's input is")
    bad(np.zeros((2, 7), np.float32), r"give \(N, ")
    bad(np.zeros((0, *shape[1:]), np.int8), "N >= 1")
    bad(np.zeros((2, *shape[1:]), np.uint8), "are uint8; give int8 values .* or float values")
    bad(np.full((1, *shape[1:]), np.nan, np.float32), "NaN")
    bad(b"not numpy", "not a .npy array")
    with pytest.raises(InputError, match="do not exist"):
        load_inputs(tmp_path / "missing.npy", shape, scale, zp)


@pytest.mark.emulator
def test_firmware_tflite_build_and_run(conv_tflite, tmp_path, capsys):
    from tinysplit.firmware.project import load_project_meta

    out = tmp_path / "fw"
    assert cli.main(["firmware", "--tflite", str(conv_tflite), "--board", BOARD, "--out", str(out),
                     "--app", "exit"]) == 0
    assert "project for 'My-Conv.v2'" in capsys.readouterr().out
    assert (out / "src" / "model" / "my_conv_v2_model.c").is_file()  # C names from the file name
    assert load_project_meta(out)["board"] == BOARD
    assert cli.main(["build", str(out)]) == 0
    assert cli.main(["run", str(out)]) == 0


@pytest.mark.emulator
def test_hil_tflite_identical_with_tflm(conv_tflite, tmp_path, capsys):
    shape = _input_shape(conv_tflite)
    assert cli.main(["hil", "--tflite", str(conv_tflite), "--board", "qemu-riscv32-virt", "--samples", "3",
                     "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"] == "My-Conv.v2" and r["inputs"] == "random int8 (seed 0)" and r["samples"] == 3
    assert r["identical_fraction"] == 1.0 and r["values_compared"] > 0
    assert r["tflm_arena_bytes"] > 0 and r["instructions_min"] > 0
    x = np.random.default_rng(5).normal(0, 2, size=(2, *shape[1:])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["hil", "--tflite", str(conv_tflite), "--board", BOARD, "--inputs", str(tmp_path / "x.npy"),
                     "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["inputs"] == "x.npy" and r["samples"] == 2 and r["identical_fraction"] == 1.0
