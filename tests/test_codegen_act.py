"""Activation configs the code generator rejects (issue 17): each where TFLite Micro itself refuses
the model, or would compute it other than its quantization says, with a message naming the operator."""

from __future__ import annotations

import numpy as np
import pytest

from codegen_support import tflm_outputs
from opcases_act import _unary
from tflite_builder import ACT, ModelBuilder, options
from tinysplit.errors import UnsupportedModelError
from tinysplit.exporter.codegen.lower import lower_model
from tinysplit.exporter.tflite_model import parse_tflite


def _lower(tflite: bytes):
    return lower_model(parse_tflite(tflite))


def _tflm_refuses(tflite: bytes, shape: tuple[int, ...]) -> bool:
    try:
        tflm_outputs(tflite, np.zeros((1, int(np.prod(shape))), dtype=np.int8))
    except Exception:  # noqa: BLE001 - the runtime's own error type varies by version
        return True
    return False


def test_hard_swish_output_scale_too_small_is_rejected_as_tflm_does():
    shape = (1, 4)
    case = _unary("hs", "HARD_SWISH", shape, (0.5, 0), (0.5 / 200, 0))  # input scale > 128 x output scale
    assert _tflm_refuses(case.tflite, shape)
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(HARD_SWISH\).*128 x output scale"):
        _lower(case.tflite)
    ok = _unary("hs", "HARD_SWISH", shape, (0.5, 0), (0.5 / 100, 0))
    assert not _tflm_refuses(ok.tflite, shape)
    _lower(ok.tflite)


def test_relu6_with_output_quantized_otherwise_is_rejected():
    case = _unary("r6", "RELU6", (3,), (0.05, -10), (0.1, -10))
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(RELU6\).*output quantized as the input"):
        _lower(case.tflite)


def test_tanh_output_not_1_over_128_is_rejected():
    case = _unary("t", "TANH", (5,), (0.05, 3), (1 / 100, 0))
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(TANH\).*scale 1/128 and zero point 0"):
        _lower(case.tflite)
    case = _unary("t", "TANH", (5,), (0.05, 3), (1 / 128, 5))
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(TANH\).*got 0.0078125 / 5"):
        _lower(case.tflite)


def _prelu(alpha_const: bool = True, alpha_scales: float | list[float] = 0.01) -> bytes:
    b = ModelBuilder()
    x = b.tensor((1, 2, 2, 3), "int8", 0.05, 0, name="input")
    data = np.array([10, 20, 30], dtype=np.int8) if alpha_const else None
    al = b.tensor((1, 1, 3), "int8", alpha_scales, 0, data=data, qdim=2, name="alpha")
    y = b.tensor((1, 2, 2, 3), "int8", 0.05, 0, name="output")
    b.op("PRELU", [x, al], [y])
    return b.build([x], [y])


def test_prelu_alpha_must_be_constant_and_per_tensor():
    _lower(_prelu())
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(PRELU\).*alpha 'alpha' must be a constant"):
        _lower(_prelu(alpha_const=False))
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(PRELU\).*has 3 scales"):
        _lower(_prelu(alpha_scales=[0.01, 0.02, 0.03]))


@pytest.mark.parametrize("scale, zp", [(1 / 16, 0), (1 / 256, 127), (1 / 256, -128)])
def test_log_softmax_output_quantization_tflm_refuses_is_rejected(scale, zp):
    shape = (2, 5)
    case = _unary("ls", "LOG_SOFTMAX", shape, (0.1, 0), (scale, zp))
    assert _tflm_refuses(case.tflite, shape)
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(LOG_SOFTMAX\).*scale 16/256 and zero point 127"):
        _lower(case.tflite)
    ok = _unary("ls", "LOG_SOFTMAX", shape, (0.1, 0), (16 / 256, 127))
    assert not _tflm_refuses(ok.tflite, shape)
    _lower(ok.tflite)


def _l2norm(act: int = 0, out_q: tuple[float, int] = (1 / 128, 0)) -> bytes:
    b = ModelBuilder()
    x = b.tensor((2, 5), "int8", 0.1, 3, name="input")
    y = b.tensor((2, 5), "int8", out_q[0], out_q[1], name="output")
    b.op("L2_NORMALIZATION", [x], [y], options("L2NormOptions", fusedActivationFunction=act))
    return b.build([x], [y])


def test_l2norm_fused_activation_is_rejected_as_tflm_does():
    assert _tflm_refuses(_l2norm(ACT["RELU"]), (2, 5))
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(L2_NORMALIZATION\).*fused activation"):
        _lower(_l2norm(ACT["RELU"]))
    assert not _tflm_refuses(_l2norm(), (2, 5))
    _lower(_l2norm())


def test_l2norm_output_not_1_over_128_is_rejected():
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(L2_NORMALIZATION\).*scale 1/128 and zero point 0"):
        _lower(_l2norm(out_q=(1 / 128, -10)))


@pytest.mark.parametrize("op", ["HARD_SWISH", "LEAKY_RELU", "RELU", "RELU6", "TANH", "LOG_SOFTMAX", "L2_NORMALIZATION"])
def test_non_int8_activation_is_rejected(op):
    b = ModelBuilder()
    x = b.tensor((1, 4), "int8", 0.1, 0, name="input")
    f = b.tensor((1, 4), "float32", name="f")
    b.op("DEQUANTIZE", [x], [f])
    g = b.tensor((1, 4), "float32", name="g")
    b.op(op, [f], [g])
    y = b.tensor((1, 4), "int8", 0.1, 0, name="output")
    b.op("QUANTIZE", [g], [y])
    with pytest.raises(UnsupportedModelError, match=rf"operator 1 \({op}\).*'f' is float32, expected int8"):
        _lower(b.build([x], [y]))


def test_onnx_activations_that_now_lower_are_not_blamed_for_an_unsupported_op():
    """An unsupported TFLite op with no known ONNX source is traced to the ONNX nodes outside the
    known-good set; HardSwish, LeakyRelu, PRelu and Tanh now lower, so they are never named."""
    from tinysplit.exporter.ops import OnnxNodeInfo, layers_for_tflite_op

    nodes = [OnnxNodeInfo(t, f"/act{i}/{t}", f"act{i}") for i, t in
             enumerate(["HardSwish", "LeakyRelu", "PRelu", "Tanh", "Erf"])]
    got = layers_for_tflite_op("GELU", nodes, None)
    assert len(got) == 1 and "via ONNX Erf" in got[0], got
