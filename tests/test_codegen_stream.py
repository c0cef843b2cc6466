"""Streamed inverted-residual blocks (exporter/codegen/stream.py, ts_irb_s8): which chains fuse and
which do not, and bit-exactness of the streamed call against TFLite Micro (and so against the
layer-at-a-time kernels) on random chains: strides, kernel sizes, dilation, explicit PAD, residual
ADD either way round, depth multipliers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codegen_support import Harness, build_harness, tflm_outputs
from streamcases import Chain, build_chain
from tinysplit.exporter.codegen import render_model
from tinysplit.exporter.codegen.lower import lower_model
from tinysplit.exporter.codegen.memplan import check_plan, plan_model
from tinysplit.exporter.codegen.stream import stream_blocks
from tinysplit.exporter.tflite_model import parse_tflite

SAMPLES = 16

# chains that must fuse: (name, chain, kernel calls fused); an explicit PAD before the depthwise is
# folded into it by the lowering already, so it is not a call of its own
FUSE = [
    ("s1_residual", Chain(), 4),
    ("s1_residual_y_first", Chain(x_first=False), 4),
    ("s2_same", Chain(stride=2, cout=6), 3),
    ("s2_explicit_pad", Chain(stride=2, padding="PAD", pad_hw=(0, 1, 0, 1), cout=6), 3),
    ("s1_explicit_pad_residual", Chain(padding="PAD", pad_hw=(1, 1, 1, 1)), 4),
    ("k5_s1", Chain(k=5, h=9, w=5), 4),
    ("k5_s2_tall", Chain(k=5, stride=2, h=12, w=4, cout=3), 3),
    ("dilated", Chain(dil=2, h=9, w=8), 4),
    ("valid", Chain(padding="VALID", cout=5), 3),
    ("depth_mult_2", Chain(dm=2, hidden=6), 4),
    ("stride3_k3", Chain(stride=3, h=10, w=10, cout=5), 3),
    ("one_row", Chain(h=1, w=9), 4),
    ("s2_uneven_pad", Chain(stride=2, padding="PAD", pad_hw=(2, 0, 1, 0), h=8, w=7, cout=2), 3),
    # x computed by a first conv (not the model input): the streamed output may overlap x
    ("stem_s1_residual", Chain(stem=True), 4),
    ("stem_s1_y_first_k5", Chain(stem=True, x_first=False, k=5, h=9), 4),
    ("stem_s2_explicit_pad", Chain(stem=True, stride=2, padding="PAD", pad_hw=(0, 1, 0, 1), cout=6), 3),
    ("stem_valid_wider_out", Chain(stem=True, padding="VALID", cout=9, h=9), 3),
    ("stem_dilated", Chain(stem=True, dil=2, h=9, w=8), 4),
]
# chains that must not fuse (or not all of them)
NO_FUSE = [
    ("expand_3x3", Chain(expand_k=3), 0),
    ("expanded_read_twice", Chain(extra_reader=True), 0),
    ("pad_on_channels", Chain(padding="PAD", pad_channels=2, residual=False), 0),
]


def _tfl(i: int, case: tuple) -> bytes:
    return build_chain(case[1], seed=1000 + i)


CASES = FUSE + NO_FUSE


def _fused(tfl: bytes) -> tuple:
    _, blocks = stream_blocks(lower_model(parse_tflite(tfl)))
    return blocks


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_which_chains_fuse(i: int) -> None:
    name, chain, n_ops = CASES[i]
    blocks = _fused(_tfl(i, CASES[i]))
    if n_ops == 0:
        assert blocks == (), f"{name} must not be streamed"
    else:
        assert len(blocks) == 1 and len(blocks[0].op_indices) == n_ops, (name, blocks)


def test_skippable_block_keeps_its_add() -> None:
    """With a skip mask the residual ADD closes a skippable block: the chain fuses without it."""
    tfl = build_chain(Chain(stem=True), seed=3)
    assert len(stream_blocks(lower_model(parse_tflite(tfl)))[1][0].op_indices) == 4  # without a skip mask
    lowered = lower_model(parse_tflite(tfl), skippable=True)
    streamed, blocks = stream_blocks(lowered)
    assert len(blocks) == 1 and len(blocks[0].op_indices) == 3
    assert [c.kernel for c in streamed.calls] == ["ts_conv2d_s8", "ts_irb_s8", "ts_add_s8"]
    check_plan(streamed, plan_model(streamed))


def test_streamed_call_has_row_window_scratch_and_smaller_arena() -> None:
    tfl = build_chain(Chain(h=16, w=16, cin=8, hidden=48, cout=8), seed=7)
    on, off = render_model(tfl, "m", stream=True), render_model(tfl, "m", stream=False)
    (call,) = on.lowered.calls
    assert call.kernel == "ts_irb_s8" and len(call.scratch) == 1
    scratch = on.lowered.tensor(call.scratch[0]).nbytes
    assert scratch == 3 * 16 * 48 + 16 * 48  # three expanded rows and one depthwise row
    assert on.plan.arena_bytes < off.plan.arena_bytes
    assert "ts_irb_s8(&m_p0" in on.model_c and "ts_dwconv2d_s8" not in on.model_c


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return build_harness([_tfl(i, c) for i, c in enumerate(CASES)], tmp_path_factory.mktemp("stream"), stream=True)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_streamed_chain_bit_exact_with_tflm(harness: Harness, i: int) -> None:
    tfl = _tfl(i, CASES[i])
    n = int(np.prod(parse_tflite(tfl).input_tensors()[0].shape))
    rng = np.random.default_rng(i)
    x = rng.integers(-128, 128, size=(SAMPLES, n)).astype(np.int8)
    x[0], x[1] = -128, 127
    got, _ = harness.run(i, x)
    want = tflm_outputs(tfl, x)
    assert np.array_equal(got, want), f"{CASES[i][0]}: {int((got != want).sum())} values differ"


def test_chain_variants_are_distinct() -> None:
    """Guard against a knob that silently does nothing: the cases build different models."""
    assert len({_tfl(i, c) for i, c in enumerate(CASES)}) == len(CASES)
    assert dataclasses.replace(Chain(), stride=2) != Chain()


@pytest.mark.parametrize("i", [i for i, c in enumerate(CASES) if c[1].stem], ids=[c[0] for c in CASES if c[1].stem])
def test_streamed_output_overlaps_its_dying_input(i: int) -> None:
    """Where x dies at the streamed call, the output starts at most row_shift bytes before it and
    shares its bytes (the bit-exactness test above runs exactly these plans)."""
    r = render_model(_tfl(i, CASES[i]), "m")
    call = next(c for c in r.lowered.calls if c.kernel == "ts_irb_s8")
    x, y = call.inputs[0], call.output
    ox, oy = r.plan.offsets[x], r.plan.offsets[y]
    nx, ny = r.lowered.tensor(x).nbytes, r.lowered.tensor(y).nbytes
    assert ox - oy >= call.params.row_shift()
    assert max(ox, oy) < min(ox + nx, oy + ny), "output and input do not share memory"
