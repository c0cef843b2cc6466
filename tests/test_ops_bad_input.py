"""Bad input that used to end in "internal error" (exit 70) or a silent exit: each now exits 2 (3 for a
model TFLite Micro cannot hold) with a message that names what was wrong."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli


def bundle_with(digits_bundle: Path, tmp_path: Path, edit) -> Path:
    """A copy of the digits bundle whose manifest.json bytes went through ``edit``."""
    b = tmp_path / "bundle"
    shutil.copytree(digits_bundle, b)
    m = b / "manifest.json"
    m.write_bytes(edit(m.read_bytes()))
    return b


def first_scale(value: str):
    return lambda data: re.sub(rb'"scale": [-0-9.e+]+', f'"scale": {value}'.encode(), data, count=1)


@pytest.mark.parametrize("value, says", [("NaN", "is NaN"), ("Infinity", "is Infinity"), ("-Infinity", "is -Infinity"),
                                         ("1e300", "is 1e+300"), ("1e-300", "is 1e-300")])
def test_manifest_scale_out_of_range_names_the_field(digits_bundle, tmp_path, value, says):
    b = bundle_with(digits_bundle, tmp_path, first_scale(value))
    for cmd in (["inspect", str(b)],
                ["serve", "--insecure", "--bundle", str(b), "--listen", "udp://127.0.0.1:0", "--duration", "2"]):
        r = run_cli(*cmd, cwd=tmp_path)
        assert r.returncode == 2, (cmd, r.stderr)
        assert "field 'device_models[0].inputs[0].scale'" in r.stderr and says in r.stderr, r.stderr
        assert "internal error" not in r.stderr


def test_manifest_that_is_not_utf8(digits_bundle, tmp_path):
    b = bundle_with(digits_bundle, tmp_path, lambda data: data.replace(b'"digits"', b'"dig\xffits"', 1))
    r = run_cli("serve", "--insecure",
                "--bundle", str(b), "--listen", "udp://127.0.0.1:0", "--duration", "2", cwd=tmp_path)
    assert r.returncode == 2 and "not UTF-8" in r.stderr and "manifest.json" in r.stderr, r.stderr


def test_manifest_unit_channels_not_a_number(digits_bundle, tmp_path):
    b = bundle_with(digits_bundle, tmp_path, lambda data: re.sub(rb'"unit_channels": \d+', b'"unit_channels": "two"',
                                                                 data))
    r = run_cli("serve", "--insecure",
                "--bundle", str(b), "--listen", "udp://127.0.0.1:0", "--duration", "2", cwd=tmp_path)
    assert r.returncode == 2 and "method_data.nair.unit_channels" in r.stderr, r.stderr


def test_a_manifest_with_nan_is_not_written():
    from tinysplit.manifest import ManifestError, validate_manifest_dict

    with pytest.raises(ManifestError, match=r"field 'method_data\.x\[1\]' is NaN"):
        validate_manifest_dict({"format": "tinysplit-bundle", "version": 1, "method_data": {"x": [1.0, float("nan")]}})


@pytest.mark.parametrize("code, where", [("import sys\nsys.exit(3)\n", "while importing it"),
                                         ("import sys\ndef build():\n    sys.exit('bye')\n", "while building the spec"),
                                         ("def build():\n    raise SystemExit\n", "while building the spec")])
def test_spec_calling_sys_exit(tmp_path, code, where):
    (tmp_path / "s.py").write_text(code)
    r = run_cli("export", "--spec", str(tmp_path / "s.py"), "--out", str(tmp_path / "b"), "-q")
    assert r.returncode == 2, r.stderr
    assert "called sys.exit(" in r.stderr and where in r.stderr
    assert not (tmp_path / "b").exists()


def test_a_model_too_large_for_the_tflite_micro_arena():
    from tflite_builder import ModelBuilder

    from tinysplit.errors import UnsupportedModelError
    from tinysplit.exporter.runtimes import TFLM_ARENA_BYTES, TflmRunner

    b = ModelBuilder()
    x = b.tensor((1, 512, 512, 4), scale=0.1, zero_point=0)  # 1 MiB in and 1 MiB out
    y = b.tensor((1, 512, 512, 4), scale=0.1, zero_point=0)
    b.op("RELU", [x], [y])
    with pytest.raises(UnsupportedModelError, match=f"could not allocate the model's tensors in a "
                                                    f"{TFLM_ARENA_BYTES:,}-byte arena.*Make the device piece smaller"):
        TflmRunner(b.build([x], [y]), num_outputs=1)


@pytest.mark.slow
def test_cli_export_of_a_model_too_large_for_tflite_micro(tmp_path):
    (tmp_path / "big.py").write_text(textwrap.dedent("""
        import numpy as np
        import torch
        from torch import nn
        from tinysplit.exporter.spec import DevicePiece, ExportSpec

        def build():
            torch.manual_seed(0)
            head = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
            x = np.random.default_rng(0).random((8, 1, 256, 256), dtype=np.float32)
            return ExportSpec(name="big", device=[DevicePiece("head", head)], calibration=x, heldout=x[:2])
    """))
    r = run_cli("export", "--spec", str(tmp_path / "big.py"), "--out", str(tmp_path / "b"), "-q")
    assert r.returncode == 3, r.stderr
    assert "TFLite Micro could not allocate" in r.stderr and "arena" in r.stderr
    assert not (tmp_path / "b").exists()
