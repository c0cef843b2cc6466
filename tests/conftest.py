"""Shared fixtures. Expensive exports run once per test session and are shared read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory):
    """The digits example (head on the device, tail on the host), exported once."""
    from tinysplit.examples.digits import digits_spec
    from tinysplit.exporter import export_bundle

    spec, trained = digits_spec("digits")
    out = tmp_path_factory.mktemp("bundles") / "digits"
    return export_bundle(spec, out), trained


@pytest.fixture(scope="session")
def digits_bundle(digits_export) -> Path:
    return digits_export[0].bundle_dir


@pytest.fixture(scope="session")
def digits_classifier_export(tmp_path_factory):
    from tinysplit.examples.digits import digits_spec
    from tinysplit.exporter import export_bundle

    spec, trained = digits_spec("digits-classifier")
    out = tmp_path_factory.mktemp("bundles") / "digits_classifier"
    return export_bundle(spec, out), trained


@pytest.fixture(scope="session")
def digits_nair():
    """The trained digits split model as a NairSpec (30 epochs, deterministic). Tests copy its modules
    (evaluate and prepare_variant work on copies); trained once per session."""
    from tinysplit.methods.nair.evaluate import digits_nair_spec

    return digits_nair_spec()


@pytest.fixture(scope="session")
def tinysplit_wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built once per session (no dependencies, no build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(REPO)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return next(out.glob("tinysplit-*.whl"))


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``tinysplit`` command as a user would (a separate process)."""
    exe = shutil.which("tinysplit", path=str(Path(sys.executable).parent)) or "tinysplit"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# C code generator (tests/test_codegen_*.py): the exported models every codegen test shares.
# The digits bundles are the session's shared exports; the MobileNetV2-style head is exported once.
# ---------------------------------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helper modules beside the tests

CODEGEN_MODELS = ("digits_head", "digits_classifier", "mobilenet_head")


def _tflite_and_inputs(bundle_dir: Path, heldout_nchw) -> tuple:
    """A bundle's device .tflite and held-out inputs quantized to int8 NHWC, one row per input."""
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.manifest import load_manifest
    from tinysplit.quant import nchw_to_nhwc, quantize

    m = load_manifest(bundle_dir)
    tfl = (bundle_dir / m.device_models[0].file).read_bytes()
    inp = parse_tflite(tfl).input_tensors()[0]
    xq = quantize(nchw_to_nhwc(heldout_nchw), inp.scales[0], inp.zero_points[0])
    return tfl, xq.reshape(len(xq), -1)


@pytest.fixture(scope="session")
def mobilenet_export(tmp_path_factory):
    from tinysplit.examples.mobilenet import mobilenet_spec
    from tinysplit.exporter import export_bundle

    spec, _ = mobilenet_spec()
    return export_bundle(spec, tmp_path_factory.mktemp("bundles") / "mobilenet"), spec


@pytest.fixture(scope="session")
def codegen_exports(digits_export, digits_classifier_export, mobilenet_export):
    """{model name: (int8 .tflite bytes, held-out int8 inputs (N, input bytes))}."""
    import numpy as np

    out = {}
    for name, (result, _) in (("digits_head", digits_export), ("digits_classifier", digits_classifier_export),
                              ("mobilenet_head", mobilenet_export)):
        x = np.load(result.bundle_dir / "data" / "heldout.npz")["x"]
        out[name] = _tflite_and_inputs(result.bundle_dir, x)
    return out


@pytest.fixture(scope="session")
def rebel_export(tmp_path_factory):
    """A digits ReBEL model trained briefly (seeded: base 6 epochs, joint 4 + fine-tune 1, K = 2, D = 16)
    and exported as a 'rebel' bundle (tinysplit.methods.rebel.export.export_rebel)."""
    import torch

    from tinysplit.examples.digits import CLASSES, train_digits
    from tinysplit.methods.rebel.export import export_rebel
    from tinysplit.methods.rebel.model import digits_rebel_modules
    from tinysplit.methods.rebel.train import RebelConfig, train_rebel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # for this training only: the thread count changes float sums, and other
    try:                      # session fixtures (digits_export's determinism test) train after this one
        t = train_digits(epochs=6)
        h1, h2 = digits_rebel_modules(16)
        model = train_rebel(t.model.head, t.model.tail, h1, h2, t.x_train, t.y_train, 10,
                            RebelConfig(epochs=4, finetune_epochs=1, components=2))
    finally:
        torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("bundles") / "rebel"
    return export_rebel(model, t.x_train[:200], t.x_heldout, t.y_heldout, out, "digits_rebel", CLASSES), t, model


@pytest.fixture(scope="session")
def rebel_bundle(rebel_export) -> Path:
    return rebel_export[0].bundle


@pytest.fixture(scope="session")
def rocoin_trained():
    """A digits RoCoIn model, distilled briefly (tests/rocoin_support.py), on the shipped 6-device fleet."""
    from rocoin_support import train_digits_rocoin

    return train_digits_rocoin()


@pytest.fixture(scope="session")
def rocoin_export(rocoin_trained, tmp_path_factory):
    """That model exported as a 'rocoin' bundle (tinysplit.methods.rocoin.export.export_rocoin)."""
    from tinysplit.methods.rocoin.export import export_rocoin

    t = rocoin_trained
    out = tmp_path_factory.mktemp("bundles") / "rocoin"
    return export_rocoin(t.net, t.plan, t.task.calibration, t.task.x_heldout, t.task.y_heldout, out,
                         "digits_rocoin", t.task.classes, deadline_ms=200.0)


@pytest.fixture(scope="session")
def rocoin_bundle(rocoin_export) -> Path:
    return rocoin_export.bundle


@pytest.fixture(scope="session")
def adaptive_trained():
    """A digits AdaptiveNet (4 skippable blocks), trained briefly with block drop (single thread, seeded)."""
    from tinysplit.methods.adaptive_resnet.example import train_digits_adaptive

    return train_digits_adaptive(epochs=12)


@pytest.fixture(scope="session")
def adaptive_export(adaptive_trained, tmp_path_factory):
    """That model exported as an 'adaptive_resnet' bundle."""
    from tinysplit.methods.adaptive_resnet.example import export_digits_adaptive

    return export_digits_adaptive(adaptive_trained, tmp_path_factory.mktemp("bundles") / "adaptive")


@pytest.fixture(scope="session")
def adaptive_bundle(adaptive_export) -> Path:
    return adaptive_export.bundle_dir


@pytest.fixture(scope="session")
def adaptive_study_dir(tmp_path_factory) -> Path:
    """What 'tinysplit adaptive-study' writes for a brief block-drop digits model (6 epochs, every mask's
    int8 accuracy, every mask in QEMU on the Cortex-M4 with 2 samples): adaptive_study.json and bundle/."""
    out = tmp_path_factory.mktemp("adaptive-study")
    r = run_cli("adaptive-study", "--example", "digits", "--out", str(out), "--epochs", "6",
                "--policies", "block_drop", "--hil-samples", "2", "-q", timeout=900)
    assert r.returncode == 0, r.stderr
    return out


def min_plausible_instructions(bundle: Path) -> int:
    """A lower bound on the instructions of one inference of a bundle's device model on any core
    here: its multiply-accumulates / 16 (the widest instruction, Helium's VMLADAV.S8, does 16). A
    count below it means the counter did not count the inference."""
    from tinysplit.exporter.codegen.emit_c import render_model
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.firmware.profile import call_infos
    from tinysplit.manifest import load_manifest

    tflite = (bundle / load_manifest(bundle).device_models[0].file).read_bytes()
    return sum(c.macs for c in call_infos(render_model(tflite, "m"), parse_tflite(tflite))) // 16
