"""Binary ops and reductions (issue 17): the configurations TFLite Micro refuses are refused by the
lowering too, with an error naming the operator and what to change. Bit-exactness of the supported
ones is in test_codegen_ops.py (cases from opcases_binary.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from codegen_support import tflm_outputs
from tflite_builder import ModelBuilder, options
from tinysplit.errors import UnsupportedModelError
from tinysplit.exporter.codegen import render_model

TESTS = Path(__file__).resolve().parent


def _sub_model(out_scale: float) -> bytes:
    b = ModelBuilder()
    x = b.tensor((1, 4, 4, 3), "int8", 0.02, 3)
    c = b.tensor((3,), "int8", 0.02, 0, data=np.array([1, 2, 3], dtype=np.int8))
    y = b.tensor((1, 4, 4, 3), "int8", out_scale, 0)
    b.op("SUB", [x, c], [y], options("SubOptions", fusedActivationFunction=0))
    return b.build([x], [y])


def _reduce_model(op: str, out_scale: float, out_zp: int, axis_const: bool = True) -> bytes:
    b = ModelBuilder()
    x = b.tensor((1, 4, 4, 3), "int8", 0.02, 3)
    ax = b.tensor((1,), "int32", data=np.array([1], dtype=np.int32) if axis_const else None)
    y = b.tensor((1, 4, 3), "int8", out_scale, out_zp)
    b.op(op, [x, ax], [y], options("ReducerOptions", keepDims=False))
    return b.build([x], [y])


def test_sub_with_an_output_scale_tflm_aborts_on_is_refused() -> None:
    tiny = 0.02 / 2 ** 20  # output rescale factor >= 1: QuantizeMultiplierSmallerThanOneExp aborts
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(SUB\).*output rescale factor"):
        render_model(_sub_model(tiny), "m")
    # the reference really dies on it (in a child: it aborts the process)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(TESTS)!r})
        from test_codegen_binary_ops import _sub_model
        from codegen_support import tflm_outputs
        tflm_outputs(_sub_model({tiny!r}), np.zeros((1, 48), np.int8))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert r.returncode != 0
    # a normal output scale lowers
    render_model(_sub_model(0.05), "m")


def test_reduce_max_with_requantization_is_refused() -> None:
    bad = _reduce_model("REDUCE_MAX", 0.03, 3)
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(REDUCE_MAX\).*requires them equal"):
        render_model(bad, "m")
    with pytest.raises(RuntimeError):  # TFLite Micro fails to invoke it
        tflm_outputs(bad, np.zeros((1, 48), np.int8))
    with pytest.raises(UnsupportedModelError, match=r"REDUCE_MAX"):
        render_model(_reduce_model("REDUCE_MAX", 0.02, 4), "m")
    render_model(_reduce_model("REDUCE_MAX", 0.02, 3), "m")


@pytest.mark.parametrize("op", ["SUM", "REDUCE_MAX"])
def test_reduction_axes_must_be_constant(op: str) -> None:
    with pytest.raises(UnsupportedModelError, match=rf"\({op}\).*axis.*must be a constant"):
        render_model(_reduce_model(op, 0.02, 3, axis_const=False), "m")


def test_binary_op_on_a_non_int8_tensor_is_refused() -> None:
    b = ModelBuilder()
    x = b.tensor((1, 4), "int8", 0.02, 3)
    f = b.tensor((1, 4), "float32")
    b.op("DEQUANTIZE", [x], [f])
    g = b.tensor((1, 4), "float32")
    b.op("MAXIMUM", [f, f], [g], options("MaximumMinimumOptions"))
    y = b.tensor((1, 4), "int8", 0.02, 3)
    b.op("QUANTIZE", [g], [y])
    with pytest.raises(UnsupportedModelError, match=r"operator 1 \(MAXIMUM\).*float32, expected int8"):
        render_model(b.build([x], [y]), "m")


def _argmax_model(out_dtype: str = "int32", then_quantize: bool = True, idx_quantized: bool = True) -> bytes:
    b = ModelBuilder()
    x = b.tensor((1, 3, 5), "int8", 0.02, 3)
    ax = b.tensor((1,), "int32", data=np.array([-1], dtype=np.int32))
    idx = b.tensor((1, 3), out_dtype, 1.0 if idx_quantized else None, 0)
    b.op("ARG_MAX", [x, ax], [idx], options("ArgMaxOptions", outputType={"int32": 2, "int64": 4}[out_dtype]))
    if not then_quantize:
        return b.build([x], [idx])
    y = b.tensor((1, 3), "int8", 1.0, 0)
    b.op("QUANTIZE", [idx], [y])
    return b.build([x], [y])


def test_arg_max_with_int64_indices_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(ARG_MAX\).*int64.*only writes int32"):
        render_model(_argmax_model("int64"), "m")
    from tinysplit.exporter.runtimes import TflmRunner

    with pytest.raises(RuntimeError):  # TFLite Micro refuses it too
        TflmRunner(_argmax_model("int64", then_quantize=False), num_outputs=1).run(np.zeros((1, 3, 5), np.int8))


def test_arg_max_lowers_inside_a_model_with_an_int32_tensor() -> None:
    """ARG_MAX -> QUANTIZE int32 -> int8: the int32 indices get 4 bytes each in the arena and an int32_t
    pointer in the generated call; as the model's output they are refused (the C API is int8)."""
    r = render_model(_argmax_model(), "m")
    idx = next(t for t in r.lowered.tensors if t.dtype == "int32")
    assert idx.nbytes == 3 * 4
    assert any("ts_argmax_s8(" in line and "(int32_t *)" in line for c in r.context.calls for line in c.lines)
    with pytest.raises(UnsupportedModelError, match=r"is int32; the generated C API is int8"):
        render_model(_argmax_model(then_quantize=False), "m")
    with pytest.raises(UnsupportedModelError, match=r"operator 1 \(QUANTIZE\).*no quantization parameters"):
        render_model(_argmax_model(idx_quantized=False), "m")


@pytest.mark.slow
def test_converted_torch_model_with_the_new_ops_is_bit_exact(tmp_path: Path) -> None:
    """torch a - b, maximum, minimum, sum, amax -> ONNX (Sub, Max, Min, ReduceSum, ReduceMax) -> int8
    TFLite (SUB, MAXIMUM, MINIMUM, SUM, REDUCE_MAX): every op is supported and the generated C is
    identical to TFLite Micro."""
    import torch
    from torch import nn

    from codegen_support import build_harness
    from tinysplit.exporter import convert
    from tinysplit.exporter.ops import ONNX_OPS_KNOWN_GOOD, SUPPORTED_OPS
    from tinysplit.exporter.tflite_model import parse_tflite

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(3, 8, 1)

        def forward(self, x):
            a, b = self.a(x), self.b(x)
            m = torch.maximum(a, b) + torch.minimum(a, b)
            return (a - b).sum(dim=1, keepdim=True) + m.amax(dim=1, keepdim=True)

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((16, 3, 8, 8), dtype=np.float32)
    log = tmp_path / "convert.log"
    om = convert.torch_to_onnx(M().eval(), x, tmp_path / "m.onnx", ["input"], ["out"], log)
    assert {n.op_type for n in om.nodes} <= ONNX_OPS_KNOWN_GOOD
    sm = convert.onnx_to_saved_model(om, tmp_path / "sm", x.transpose(0, 2, 3, 1), log)
    tfl = convert.saved_model_to_int8_tflite(sm, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), log)
    ops = set(parse_tflite(tfl).ops)
    assert {"SUB", "MAXIMUM", "MINIMUM", "SUM", "REDUCE_MAX"} <= ops <= SUPPORTED_OPS
    h = build_harness([tfl], tmp_path / "c")
    xs = np.random.default_rng(1).integers(-128, 128, size=(40, 8 * 8 * 3)).astype(np.int8)
    got, _ = h.run(0, xs)
    assert np.array_equal(got, tflm_outputs(tfl, xs))


def _bmm_model(rhs_shape: tuple[int, ...], rhs_scales: list[float] | float = 0.01) -> bytes:
    b = ModelBuilder()
    x = b.tensor((2, 3, 4), "int8", 0.02, 3)
    n = int(np.prod(rhs_shape))
    c = b.tensor(rhs_shape, "int8", rhs_scales, 0, data=np.arange(n, dtype=np.int8).reshape(rhs_shape),
                 qdim=len(rhs_shape) - 1)
    y = b.tensor((2, 3, rhs_shape[-1]), "int8", 0.05, 0)
    b.op("BATCH_MATMUL", [x, c], [y], options("BatchMatMulOptions", adjX=False, adjY=False))
    return b.build([x], [y])


def test_batch_matmul_refuses_shapes_that_do_not_multiply_and_per_channel_operands() -> None:
    render_model(_bmm_model((4, 5)), "m")
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(BATCH_MATMUL\).*do not multiply"):
        render_model(_bmm_model((3, 5)), "m")
    with pytest.raises(UnsupportedModelError, match=r"operator 0 \(BATCH_MATMUL\).*5 scales.*one per tensor"):
        render_model(_bmm_model((4, 5), [0.01, 0.02, 0.03, 0.04, 0.05]), "m")
