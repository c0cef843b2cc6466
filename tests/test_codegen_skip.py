"""Skippable residual blocks in the generated C: a runtime skip mask, one memory plan for every mask,
and per mask the outputs of TFLite Micro running the model with those blocks removed (each replaced
by a QUANTIZE from x to y, exporter/codegen/blocks.py), value for value."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen_support import compile_c, have, tflm_outputs
from skipnet import BLOCK_OPS, INPUT_SHAPE, skipnet
from tinysplit.errors import InputError, UnsupportedModelError
from tinysplit.exporter.codegen import generate_model_sources
from tinysplit.exporter.codegen.blocks import (check_mask, find_residual_blocks, remove_blocks,
                                               share_residual_quantization)
from tinysplit.exporter.codegen.emit_c import render_model
from tinysplit.exporter.codegen.lower import lower_model
from tinysplit.exporter.codegen.memplan import check_plan, plan_model
from tinysplit.exporter.tflite_model import parse_tflite

_HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m_model.h"

/* usage: harness MASK < inputs > outputs; exit 3 when m_invoke_skip refuses the mask */
int main(int argc, char **argv) {
    static int8_t buf[M_INPUT_BYTES];
    uint32_t mask = (uint32_t)strtoul(argv[1], NULL, 0);
    (void)argc;
    while (fread(buf, 1, sizeof buf, stdin) == sizeof buf) {
        memcpy(m_input(), buf, sizeof buf);
        if (m_invoke_skip(mask) != 0) {
            return 3;
        }
        fwrite(m_output(), 1, M_OUTPUT_BYTES, stdout);
    }
    return 0;
}
"""


def _inputs(n: int = 24) -> np.ndarray:
    return np.random.default_rng(3).integers(-128, 128, size=(n,) + INPUT_SHAPE[1:]).astype(np.int8)


def _harness(tflite: bytes, work: Path) -> Path:
    src = generate_model_sources(tflite, "m", work, skippable=True)
    assert src.skip_blocks == 3
    (work / "harness.c").write_text(_HARNESS)
    return compile_c([work / "harness.c", *src.sources], work / "harness", work)


def _run(binary: Path, mask: int, xs: np.ndarray) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), str(mask)], input=xs.tobytes(), capture_output=True, timeout=60)


def test_finds_the_identity_blocks_only() -> None:
    blocks = find_residual_blocks(parse_tflite(skipnet()))
    assert tuple((b.first_op, b.add_op) for b in blocks) == BLOCK_OPS  # the projection block is not one
    assert [b.shared_quantization for b in blocks] == [True, True, False]
    assert [b.index for b in blocks] == [0, 1, 2]


def test_no_blocks_is_an_error_only_when_asked() -> None:
    from opcases import conv_case

    tfl = conv_case(np.random.default_rng(0), 0, depthwise=False).tflite
    assert find_residual_blocks(parse_tflite(tfl)) == ()
    render_model(tfl, "m")  # fine without skip masks
    with pytest.raises(UnsupportedModelError, match="no skippable residual block"):
        render_model(tfl, "m", skippable=True)


def test_one_plan_serves_every_mask() -> None:
    lowered = lower_model(parse_tflite(skipnet()), skippable=True)
    plan = plan_model(lowered)
    check_plan(lowered, plan)
    for b in lowered.blocks:
        assert plan.offsets[b.input] == plan.offsets[b.output]
    for limit in (0, 2):  # the ADD writes over x whatever the sharing limit
        from tinysplit.exporter.codegen.memplan import _plan

        p = _plan(lowered, 16, limit)
        check_plan(lowered, p)


def test_plan_without_skip_is_unchanged() -> None:
    m = parse_tflite(skipnet())
    assert render_model(skipnet(), "m").model_c.count("skip_mask") == 0
    plain = plan_model(lower_model(m))
    skip = plan_model(lower_model(m, skippable=True))
    assert skip.arena_bytes >= plain.arena_bytes  # forcing y onto x can only constrain the planner


@pytest.mark.skipif(not have("gcc"), reason="needs gcc")
def test_every_mask_matches_tflm_with_the_blocks_removed(tmp_path: Path) -> None:
    tfl = skipnet()
    binary = _harness(tfl, tmp_path)
    xs = _inputs()
    outs = {}
    for mask in range(8):
        r = _run(binary, mask, xs)
        assert r.returncode == 0, r.stderr
        got = np.frombuffer(r.stdout, dtype=np.int8).reshape(len(xs), -1)
        want = tflm_outputs(remove_blocks(tfl, mask), xs)
        assert np.array_equal(got, want), f"mask {mask}: {(got != want).mean():.3f} of values differ"
        outs[mask] = got
    for mask in range(1, 8):  # every skipped block changes the output (the test can fail)
        assert not np.array_equal(outs[mask], outs[0]), mask


@pytest.mark.skipif(not have("gcc"), reason="needs gcc")
def test_shared_quantization_makes_skips_free_and_stays_exact(tmp_path: Path) -> None:
    tfl, chains = share_residual_quantization(skipnet())
    assert chains == 1  # x0 -> y0 -> y1 already shared; z -> y2 is the one changed
    m = parse_tflite(tfl)
    blocks = find_residual_blocks(m)
    assert all(b.shared_quantization for b in blocks)
    z, y2 = m.tensors[blocks[2].input], m.tensors[blocks[2].output]
    assert (z.scales, z.zero_points) == (y2.scales, y2.zero_points)
    c = render_model(tfl, "m", skippable=True).model_c
    assert "ts_requantize_s8" not in c  # a skip runs nothing
    binary = _harness(tfl, tmp_path)
    xs = _inputs()
    for mask in (0, 4, 5, 7):
        got = np.frombuffer(_run(binary, mask, xs).stdout, dtype=np.int8).reshape(len(xs), -1)
        assert np.array_equal(got, tflm_outputs(remove_blocks(tfl, mask), xs)), mask


@pytest.mark.parametrize("after", ["conv", "pool"])
def test_shared_quantization_keeps_what_the_model_computes(after: str) -> None:
    """Only the residual tensors' precision changes (their biases' consumers rescaled to match): the
    outputs stay within a few steps of the original model's, per mask (on this random network; the
    trained heads' accuracies are in tests/test_adaptive_resnet.py)."""
    tfl = skipnet(after=after)
    shared, _ = share_residual_quantization(tfl)
    xs = _inputs(64)
    for mask in (0, 7):
        a = tflm_outputs(remove_blocks(tfl, mask), xs).astype(int)
        b = tflm_outputs(remove_blocks(shared, mask), xs).astype(int)
        spread = np.abs(a - a.mean()).mean()
        assert np.abs(a - b).mean() <= 0.15 * spread, (mask, np.abs(a - b).mean(), spread)
        assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9


def test_shared_quantization_refuses_a_layer_that_cannot_requantize() -> None:
    with pytest.raises(UnsupportedModelError, match="LOGISTIC"):
        share_residual_quantization(skipnet(after="logistic"))


def test_a_skip_with_different_quantization_requantizes_in_place() -> None:
    c = render_model(skipnet(), "m", skippable=True).model_c
    assert c.count("if ((skip_mask & 0x") == 3
    assert c.count("ts_requantize_s8(&m_skip2") == 1


@pytest.mark.skipif(not have("gcc"), reason="needs gcc")
def test_bad_mask_is_refused(tmp_path: Path) -> None:
    binary = _harness(skipnet(), tmp_path)
    assert _run(binary, 8, _inputs(2)).returncode == 3
    assert _run(binary, 0x80000000, _inputs(2)).returncode == 3
    with pytest.raises(InputError, match="bits at or above bit 3"):
        check_mask(8, 3)
    with pytest.raises(InputError, match="bits at or above bit 3"):
        remove_blocks(skipnet(), 9)
    with pytest.raises(InputError, match="not an integer"):
        check_mask("3", 3)  # type: ignore[arg-type]
