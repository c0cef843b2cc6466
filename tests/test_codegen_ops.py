"""Per-op bit-exactness: every kernel against TFLite Micro on random shapes, strides, paddings,
dilations, depth multipliers, activations and quantization parameters (fixed seed).

All cases are generated into one directory and compiled into one host binary (gcc -std=c99 -Wall
-Wextra -Werror -O2); each case then runs on random int8 inputs plus the two extreme inputs.
"""

from __future__ import annotations


import numpy as np
import pytest

from codegen_support import Harness, build_harness, tflm_outputs
from opcases import OpCase, all_cases
from tinysplit.exporter.codegen import render_model
from tinysplit.exporter.codegen.lower import row_shift
from tinysplit.exporter.ops import SUPPORTED_OPS

CASES = all_cases()
SAMPLES = 24


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return build_harness([c.tflite for c in CASES], tmp_path_factory.mktemp("codegen_ops"))


def _inputs(case: OpCase, seed: int) -> np.ndarray:
    n = int(np.prod(case.input_shape))
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(SAMPLES, n)).astype(np.int8)
    x[0], x[1] = -128, 127
    return x


def test_cases_cover_every_supported_op() -> None:
    covered = {op for c in CASES for op in c.ops}
    assert covered == set(SUPPORTED_OPS)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_op_bit_exact_with_tflm(harness: Harness, index: int) -> None:
    case = CASES[index]
    x = _inputs(case, index)
    got, _ = harness.run(index, x)
    want = tflm_outputs(case.tflite, x)
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert int(diff.max()) == 0, f"{case.name}: {int((diff > 0).sum())} of {diff.size} values differ, max {diff.max()} LSB"


def test_chain_cases_share_memory() -> None:
    """The QUANTIZE -> conv/depthwise/PAD chains really exercise the planner's sharing: the second
    op's output overlaps its (dying) input, conv outputs at least row_shift bytes before it."""
    shared = 0
    for case in (c for c in CASES if c.name.startswith("chain_")):
        r = render_model(case.tflite, "m")
        call = r.lowered.calls[-1]
        i, o = call.inputs[0], call.output
        oi, oo = r.plan.offsets[i], r.plan.offsets[o]
        ni, no = r.lowered.tensor(i).nbytes, r.lowered.tensor(o).nbytes
        if max(oi, oo) < min(oi + ni, oo + no):
            shared += 1
            if call.reuse == "rows":
                assert oi - oo >= row_shift(call)
            else:
                assert oi == oo
    assert shared >= 6
