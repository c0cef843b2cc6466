"""The static arena planner: sharing, never overlapping live buffers, alignment; the lowering math."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tinysplit.errors import InputError
from tinysplit.exporter.codegen import BufferRequest, place_buffers
from tinysplit.exporter.codegen.lower import (activation_range, out_size_and_padding, quantize_multiplier,
                                              tflite_round)


def _overlap_in_time(a, b) -> bool:
    return a.first <= b.last and b.first <= a.last


def _overlap_in_space(a, b) -> bool:
    return a.offset < b.offset + b.size and b.offset < a.offset + a.size


def test_disjoint_lifetimes_share_memory() -> None:
    reqs = [BufferRequest(0, 100, 0, 1), BufferRequest(1, 100, 2, 3), BufferRequest(2, 100, 4, 5)]
    placed, arena = place_buffers(reqs, 16)
    assert {p.offset for p in placed} == {0}
    assert arena == 112


def test_overlapping_lifetimes_never_share() -> None:
    reqs = [BufferRequest(0, 64, 0, 2), BufferRequest(1, 32, 1, 3), BufferRequest(2, 48, 2, 4)]
    placed, arena = place_buffers(reqs, 16)
    for a, b in itertools.combinations(placed, 2):
        assert not (_overlap_in_time(a, b) and _overlap_in_space(a, b))
    assert arena == 64 + 32 + 48


@pytest.mark.parametrize("alignment", [1, 4, 16, 64])
def test_random_requests_are_valid_and_aligned(alignment: int) -> None:
    rng = np.random.default_rng(alignment)
    for _ in range(30):
        reqs = []
        for k in range(int(rng.integers(1, 25))):
            f = int(rng.integers(0, 20))
            reqs.append(BufferRequest(k, int(rng.integers(1, 500)), f, f + int(rng.integers(0, 6))))
        placed, arena = place_buffers(reqs, alignment)
        assert len(placed) == len(reqs)
        assert arena % alignment == 0
        peak = max(sum(r.size for r in reqs if r.first <= t <= r.last) for t in range(30))
        assert arena >= peak
        for p in placed:
            assert p.offset % alignment == 0 and p.offset + p.size <= arena
        for a, b in itertools.combinations(placed, 2):
            assert not (_overlap_in_time(a, b) and _overlap_in_space(a, b))


def test_bad_alignment_and_requests_raise() -> None:
    with pytest.raises(InputError):
        place_buffers([BufferRequest(0, 8, 0, 0)], 12)
    with pytest.raises(InputError):
        place_buffers([BufferRequest(0, 8, 3, 1)], 16)


@pytest.mark.parametrize("real", [0.0, 1e-9, 0.0003, 0.25, 0.5, 0.999999999, 1.0, 1.5, 123.456])
def test_quantize_multiplier_reconstructs_the_scale(real: float) -> None:
    m, s = quantize_multiplier(real)
    if real == 0.0 or real < 2.0 ** -32:
        assert m == 0
        return
    assert (1 << 30) <= m < (1 << 31)
    assert math.isclose(m * 2.0 ** (s - 31), real, rel_tol=2.0 ** -30)


def test_tflite_round_is_half_away_from_zero() -> None:
    assert [tflite_round(v) for v in (0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, 2.4)] == \
        [1, 2, 3, -1, -2, -3, 0, 2]


def test_padding_and_activation_ranges() -> None:
    assert out_size_and_padding(0, 32, 3, 2, 1) == (16, 0)  # SAME, stride 2: TFLite pads bottom/right only
    assert out_size_and_padding(0, 8, 3, 1, 1) == (8, 1)
    assert out_size_and_padding(1, 10, 3, 2, 1) == (4, 0)  # VALID
    assert out_size_and_padding(0, 9, 3, 1, 2) == (9, 2)  # dilation 2
    assert activation_range(0, 0.1, 5, "x") == (-128, 127)
    assert activation_range(1, 0.1, 5, "x") == (5, 127)
    assert activation_range(3, 0.05, -128, "x") == (-128, -8)
    assert activation_range(2, 0.1, 0, "x") == (-10, 10)


def test_placement_search_beats_largest_first_where_it_is_not_optimal() -> None:
    """Largest first puts the 96 B buffer of call 0 at offset 0, so call 3's 96 B buffer and the 80 B
    one live beside the 48 B gap: 224 B. The search finds the 176 B peak (no plan can do better)."""
    from tinysplit.exporter.codegen.memplan import place_best

    reqs = [BufferRequest(0, 80, 1, 3), BufferRequest(1, 96, 3, 3), BufferRequest(2, 48, 0, 2),
            BufferRequest(3, 96, 0, 0)]
    peak = max(sum(r.size for r in reqs if r.first <= t <= r.last) for t in range(4))
    assert place_buffers(reqs, 16)[1] > peak
    placed, arena = place_best(reqs, 16)
    assert arena == peak == 176
    for a, b in itertools.combinations(placed, 2):
        assert not (_overlap_in_time(a, b) and _overlap_in_space(a, b))


@pytest.mark.parametrize("alignment", [1, 16])
def test_placement_search_is_valid_and_never_worse(alignment: int) -> None:
    from tinysplit.exporter.codegen.memplan import ORDERS, place_best

    rng = np.random.default_rng(100 + alignment)
    for _ in range(40):
        reqs = []
        for k in range(int(rng.integers(1, 14))):
            f = int(rng.integers(0, 12))
            reqs.append(BufferRequest(k, int(rng.integers(1, 400)), f, f + int(rng.integers(0, 5))))
        placed, arena = place_best(reqs, alignment)
        assert sorted(p.key for p in placed) == sorted(r.key for r in reqs)
        assert arena <= min(place_buffers(reqs, alignment, name)[1] for name in ORDERS)
        for p in placed:
            assert p.offset % alignment == 0 and p.offset + p.size <= arena
        for a, b in itertools.combinations(placed, 2):
            assert not (_overlap_in_time(a, b) and _overlap_in_space(a, b))


def test_placement_order_must_be_known_or_complete() -> None:
    reqs = [BufferRequest(0, 8, 0, 0), BufferRequest(1, 8, 0, 1)]
    with pytest.raises(InputError, match="placement order"):
        place_buffers(reqs, 16, "random")
    with pytest.raises(InputError, match="every request"):
        place_buffers(reqs, 16, reqs[:1])


def test_plan_model_search_never_worse_and_checked() -> None:
    """On every per-op case model: the searched plan passes the checker and is never larger."""
    from opcases import all_cases
    from tinysplit.exporter.codegen.lower import lower_model
    from tinysplit.exporter.codegen.memplan import check_plan, plan_model
    from tinysplit.exporter.tflite_model import parse_tflite

    for case in all_cases():
        lowered = lower_model(parse_tflite(case.tflite))
        new, old = plan_model(lowered), plan_model(lowered, search=False)
        check_plan(lowered, new)
        assert new.arena_bytes <= old.arena_bytes, case.name
