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
