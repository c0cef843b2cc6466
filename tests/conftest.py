"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# ---------------------------------------------------------------------------------------------
# C code generator (tests/test_codegen_*.py): the exported models every codegen test shares.
# Exporting runs torch -> ONNX -> TF -> int8 TFLite once per model per session (seconds each).
# ---------------------------------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helper modules beside the tests

CODEGEN_MODELS = ("digits_head", "digits_classifier", "mobilenet_head")


def _export(name: str, out: Path) -> tuple[bytes, np.ndarray]:
    """Export one example; return its device .tflite and its held-out inputs quantized to int8 NHWC."""
    from tinysplit.exporter import export_bundle
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.quant import nchw_to_nhwc, quantize

    if name == "mobilenet_head":
        from tinysplit.examples.mobilenet import mobilenet_spec

        spec, _ = mobilenet_spec()
    else:
        from tinysplit.examples.digits import digits_spec

        # a short training run: bit-exactness does not depend on accuracy
        spec, _ = digits_spec("digits" if name == "digits_head" else "digits-classifier", epochs=8)
    result = export_bundle(spec, out / name)
    piece = result.manifest.device_models[0]
    tfl = (result.bundle_dir / piece.file).read_bytes()
    inp = parse_tflite(tfl).input_tensors()[0]
    xq = quantize(nchw_to_nhwc(spec.heldout), inp.scales[0], inp.zero_points[0])
    return tfl, xq.reshape(len(xq), -1)


@pytest.fixture(scope="session")
def codegen_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, np.ndarray]]:
    """{model name: (int8 .tflite bytes, held-out int8 inputs (N, input bytes))}."""
    out = tmp_path_factory.mktemp("codegen_exports")
    return {name: _export(name, out) for name in CODEGEN_MODELS}
