"""The generator's range proof (issue 16): acc_bits, the bits every accumulator of a convolution or
FULLY_CONNECTED fits, which lets the DSP kernels requantize in the short form. Checked against
brute force on small layers, and on the per-op suite's range-proof cases at and one past the edge.
The kernels' bit-exactness in both forms is the per-op suite's (tests/test_codegen_ops_qemu.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from opcases import RANGE_PROOF_BITS, corner_cases
from tinysplit.exporter.codegen.lower import acc_bits, lower_model
from tinysplit.exporter.tflite_model import parse_tflite


def _bits(v: int) -> int:
    """signed bits of the smallest type holding v"""
    return (v if v >= 0 else -v - 1).bit_length() + 1


@pytest.mark.parametrize("seed", range(20))
def test_acc_bits_is_the_bound_brute_force_reaches(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    rows = rng.integers(-128, 128, size=(n, k))
    zbias = rng.integers(-(1 << int(rng.integers(0, 31))), 1 << 20, size=n)
    worst = 0
    for x in itertools.product((-128, 127), repeat=k):   # the extremes are reached at x = -128 / 127
        acc = zbias + rows @ np.asarray(x)
        worst = max(worst, *(_bits(int(a)) for a in acc))
    assert acc_bits(zbias, rows) == worst


def test_acc_bits_edges() -> None:
    assert acc_bits(np.array([(1 << 30) - 1]), np.zeros((1, 3))) == 31
    assert acc_bits(np.array([-(1 << 30)]), np.zeros((1, 3))) == 31
    assert acc_bits(np.array([1 << 30]), np.zeros((1, 3))) == 32
    assert acc_bits(np.array([0]), np.array([[1]])) == 8        # [-128, 127]
    assert acc_bits(np.array([0]), np.array([[-128]])) == 16     # [-16256, 16384]
    assert acc_bits(np.array([0]), np.array([[0]])) == 1


def test_range_proof_cases_are_lowered_at_and_past_the_edge() -> None:
    cases = [c for c in corner_cases(20261124) if c.name.startswith("range_proof")]
    assert len(cases) == len(RANGE_PROOF_BITS)
    for case, want in zip(cases, RANGE_PROOF_BITS):
        (call,) = lower_model(parse_tflite(case.tflite)).calls
        assert call.params.acc_bits == want, case.name
