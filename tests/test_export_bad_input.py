"""Bad input: a clear error naming the problem and the fix, a non-zero exit, no half-written bundle."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import run_cli
from tinysplit.errors import InputError, UnsupportedModelError
from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece, export_bundle

RNG = np.random.default_rng(7)
X = RNG.random((16, 1, 8, 8), dtype=np.float32)


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


class WithLstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.rnn = nn.LSTM(32, 8, batch_first=True)

    def forward(self, x):
        return self.rnn(self.conv(x).flatten(2))[0]


class FunctionalHardsigmoid(Conv):
    def forward(self, x):
        return F.hardsigmoid(self.conv(x))


def spec_of(module, calibration=X, heldout=X, **kw) -> ExportSpec:
    return ExportSpec("bad", [DevicePiece("head", module)], calibration, heldout, **kw)


def assert_nothing_written(parent, name="out"):
    assert not (parent / name).exists()
    assert [p.name for p in parent.iterdir()] == [], f"left behind: {list(parent.iterdir())}"


def test_lstm_is_refused_naming_the_layer(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"layer 'rnn' \(LSTM\) cannot run on the device"):
        export_bundle(spec_of(WithLstm()), tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_gelu_module_is_refused(tmp_path):
    m = nn.Sequential(Conv(), nn.GELU())
    with pytest.raises(UnsupportedModelError, match=r"layer '1' \(GELU\).*use ReLU"):
        export_bundle(spec_of(m), tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_unsupported_tflite_op_names_op_and_layer_and_leaves_nothing(tmp_path):
    """F.hardsigmoid passes the module check; the int8 model's op check catches it after conversion
    (RELU_0_TO_1, which TFLite Micro has no kernel for either) and says what to write instead."""
    with pytest.raises(UnsupportedModelError) as e:
        export_bundle(spec_of(FunctionalHardsigmoid()), tmp_path / "out")
    msg = str(e.value)
    assert "RELU_0_TO_1" in msg and "FunctionalHardsigmoid" in msg and "ONNX HardSigmoid" in msg
    assert "relu6(x + 3) / 6" in msg
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("calibration, match", [
    (np.ascontiguousarray(X.transpose(0, 2, 3, 1)), r"does not fit device piece 'head'.*\(N, C, H, W\)"),
    (X.astype(np.float64), r"dtype float64; expected float32"),
    (X[0], r"expected 4 dimensions \(N, C, H, W\)"),
    (np.zeros((0, 1, 8, 8), np.float32), "is empty"),
    (np.full((4, 1, 8, 8), np.nan, np.float32), "NaN or infinite"),
])
def test_bad_calibration_data(tmp_path, calibration, match):
    # held-out data shaped like the calibration data, so the calibration check is what fires
    heldout = calibration if calibration.ndim == 4 and calibration.size else X
    with pytest.raises(InputError, match=match):
        export_bundle(spec_of(Conv(), calibration=calibration, heldout=heldout), tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_heldout_must_match_calibration_shape(tmp_path):
    with pytest.raises(InputError, match=r"held-out data has shape \(16, 1, 4, 4\)"):
        export_bundle(spec_of(Conv(), heldout=X[:, :, :4, :4].copy()), tmp_path / "out")


def test_nan_weights_name_the_parameter(tmp_path):
    m = Conv()
    with torch.no_grad():
        m.conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"'head': parameter 'conv.weight' has 1 NaN"):
        export_bundle(spec_of(m), tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_nan_in_tail_weights(tmp_path):
    tail = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        tail.bias[1] = float("inf")
    with pytest.raises(InputError, match=r"'tail': parameter 'bias'"):
        export_bundle(spec_of(Conv(), tails=[TailPiece("tail", tail, ("head",))]), tmp_path / "out")


def test_tail_consuming_unknown_piece(tmp_path):
    with pytest.raises(InputError, match=r"consumes \['nope'\]"):
        export_bundle(spec_of(Conv(), tails=[TailPiece("tail", nn.Identity(), ("nope",))]), tmp_path / "out")


def test_existing_output_directory_is_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists.*--force"):
        export_bundle(spec_of(Conv()), out)
    assert (out / "precious.txt").read_text() == "keep me"


def test_force_replaces_only_when_the_new_bundle_is_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(UnsupportedModelError):  # fails: the old directory must survive
        export_bundle(spec_of(WithLstm()), out, force=True)
    assert (out / "precious.txt").read_text() == "keep me"
    export_bundle(spec_of(Conv()), out, force=True)
    assert (out / "manifest.json").is_file() and not (out / "precious.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- through the CLI: exit codes and messages as a user sees them ------------------------------------

def test_cli_missing_module_path(tmp_path):
    r = run_cli("export", "--spec", str(tmp_path / "nope.py"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2
    assert "module path" in r.stderr and "does not exist" in r.stderr and "ExportSpec" in r.stderr
    assert not (tmp_path / "b").exists()


def test_cli_spec_file_without_function(tmp_path):
    (tmp_path / "s.py").write_text("x = 1\n")
    r = run_cli("export", "--spec", f"{tmp_path / 's.py'}:make", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "has no function 'make'" in r.stderr


def test_cli_unsupported_layer_exit_code(tmp_path):
    (tmp_path / "lstm_spec.py").write_text(textwrap.dedent("""
        import numpy as np
        from torch import nn
        from tinysplit.exporter import DevicePiece, ExportSpec

        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.LSTM(8, 4)

            def forward(self, x):
                return self.rnn(x.flatten(2))[0]

        def build():
            x = np.zeros((4, 1, 8, 8), np.float32)
            return ExportSpec("lstm", [DevicePiece("head", M())], x, x)
    """))
    r = run_cli("export", "--spec", str(tmp_path / "lstm_spec.py"), "--out", str(tmp_path / "b"))
    assert r.returncode == 3, r.stderr
    assert "layer 'rnn' (LSTM)" in r.stderr
    assert not (tmp_path / "b").exists()


def test_cli_existing_output(tmp_path):
    r = run_cli("export", "--example", "digits", "--out", str(tmp_path))
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.parametrize("method, method_data, match", [
    ("nair", {}, r"field 'method_data.nair' is missing: a 'nair' bundle needs unit_channels"),
    ("nair", {"nair": {"unit_channels": "2", "units_total": 2, "default_budget_units": 1}},
     r"field 'method_data.nair.unit_channels': '2' is not of type 'integer'"),
    ("nair", {"nair": {"unit_channels": 2, "units_total": 2, "default_budget_units": 1, "budget": 3}},
     r"field 'method_data.nair': Additional properties are not allowed \('budget'"),
    ("plain", {"plain": {"x": 1}}, r"field 'method_data.plain'"),
    ("rebel", {}, r"field 'method_data.rebel' is missing: a 'rebel' bundle needs latent_dim"),
    ("rebel", {"rebel": {"latent_dim": 16, "classes": 10, "confidence_scale": 1.0, "default_threshold": 2.0}},
     r"field 'method_data.rebel.default_threshold': 2.0 is greater than the maximum of 1"),
    ("rocoin", {}, r"field 'method_data.rocoin' is missing: a 'rocoin' bundle needs partitions"),
    ("adaptive_resnet", {}, r"field 'method_data.adaptive_resnet' is missing: a 'adaptive_resnet' bundle needs blocks"),
    ("adaptive_resnet", {"adaptive_resnet": {"blocks": 33, "default_mask": 0}},
     r"field 'method_data.adaptive_resnet.blocks': 33 is greater than the maximum of 32"),
    ("early_exit", {}, r"unknown method 'early_exit'; known methods: plain, nair, rebel, rocoin, adaptive_resnet"),
])
def test_method_data_is_checked_before_conversion(tmp_path, method, method_data, match):
    """The method data a manifest will carry is validated against the method's schema at export time,
    before any conversion, and nothing is written."""
    with pytest.raises(InputError, match=match):
        export_bundle(spec_of(Conv(), method=method, method_data=method_data), tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_an_op_tflite_micro_has_no_kernel_for_is_named() -> None:
    """TFLite Micro's own refusal (no kernel registered for an op) reads as that, not as an arena problem."""
    from tflite_builder import ModelBuilder

    from tinysplit.exporter.runtimes import TflmRunner

    b = ModelBuilder()
    x = b.tensor((1, 4, 4, 2), "int8", 0.05, 3, name="input")
    y = b.tensor((1, 4, 4, 2), "int8", 1 / 256, -128, name="output")
    b.op("RELU_0_TO_1", [x], [y])
    with pytest.raises(UnsupportedModelError, match=r"TFLite Micro has no kernel for RELU_0_TO_1.*tinysplit ops"):
        TflmRunner(b.build([x], [y]), num_outputs=1)
