"""``tinysplit profile``: the profiling hook in the generated C (off by default, the same bytes as
without it), the per-call report (unit tests on fixed numbers), bad input, and in QEMU exact,
repeatable per-operator counts that add up to the whole invoke and to ``tinysplit hil``'s count."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from streamcases import Chain, build_chain
from tinysplit.exporter.codegen.emit_c import profiled_calls, render_model
from tinysplit.exporter.codegen.lower import ConvParams, FcParams
from tinysplit.exporter.codegen.lower_binary import BatchMatMulParams
from tinysplit.exporter.codegen.lower_shape import TconvParams
from tinysplit.exporter.tflite_model import parse_tflite
from tinysplit.firmware.hil import HilProtocolError
from tinysplit.firmware.profile import (Calibration, CallInfo, build_report, call_infos, call_macs, format_report,
                                        per_call_counts)

CHAIN = build_chain(Chain(), 1)  # expand 1x1 -> depthwise 3x3 -> project 1x1 -> ADD (4 operators)
PROFILE_LINE = "ts_profile_mark("


def _strip_profile(c: str) -> str:
    """model.c less what profile=True adds: the mark calls and the declaration block."""
    lines = c.split("\n")
    out, skip = [], 0
    for line in lines:
        if line.startswith("/* ---- profiling:"):
            out.pop()  # the blank line before the block
            skip = 2
        if skip:
            skip -= 1
            continue
        if line.strip().startswith(PROFILE_LINE):
            continue
        out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("stream", [True, False])
def test_profile_off_is_the_normal_code_and_on_adds_only_marks(stream):
    off = render_model(CHAIN, "chain", stream=stream)
    on = render_model(CHAIN, "chain", stream=stream, profile=True)
    assert PROFILE_LINE not in off.model_c and "PROFILE" not in off.model_h
    assert _strip_profile(on.model_c) == off.model_c
    n = len(profiled_calls(on.lowered))
    marks = [line.strip() for line in on.model_c.split("\n") if line.strip().startswith(PROFILE_LINE)]
    assert marks == [f"ts_profile_mark({j}u);" for j in range(n)]
    assert f"#define CHAIN_PROFILE_CALLS {n}" in on.model_h
    assert on.context.arena_bytes == off.context.arena_bytes and on.context.const_bytes == off.context.const_bytes


def test_call_infos_cover_the_model():
    for stream, ops in ((True, [(0, 1, 2, 3)]), (False, [(0,), (1,), (2,), (3,)])):
        r = render_model(CHAIN, "chain", stream=stream, profile=True)
        infos = call_infos(r, parse_tflite(CHAIN))
        assert [i.ops for i in infos] == ops
        assert sum(i.flash_bytes for i in infos) == r.context.const_bytes
        assert all(0 < i.arena_live_bytes <= i.arena_top_bytes <= r.plan.arena_bytes for i in infos)
        assert sum(i.macs for i in infos) == 7 * 6 * 12 * 4 + 7 * 6 * 12 * 9 + 7 * 6 * 4 * 12


def _conv(**kw):
    base = dict(in_h=8, in_w=8, in_c=3, out_h=4, out_w=4, out_c=6, k_h=3, k_w=3, stride_h=2, stride_w=2, dil_h=1,
                dil_w=1, pad_h=1, pad_w=1, depth_mult=1, in_offset=0, out_offset=0, act_min=-128, act_max=127)
    return ConvParams(**{**base, **kw})


def _params(cls, **kw):
    return cls(**{**{f.name: 0 for f in dataclasses.fields(cls)}, **kw})


def test_call_macs():
    assert call_macs("CONV_2D", _conv()) == 4 * 4 * 6 * 3 * 3 * 3
    assert call_macs("DEPTHWISE_CONV_2D", _conv(in_c=6, depth_mult=1)) == 4 * 4 * 6 * 3 * 3
    assert call_macs("FULLY_CONNECTED", FcParams(2, 64, 10, 0, 0, 0, -128, 127)) == 2 * 64 * 10
    t = _params(TconvParams, in_h=4, in_w=4, in_c=3, out_c=5, k_h=3, k_w=3)
    assert call_macs("TRANSPOSE_CONV", t) == 4 * 4 * 3 * 3 * 3 * 5
    b = _params(BatchMatMulParams, batch=(2, 3, 1), rows=4, cols=5, depth=6)
    assert call_macs("BATCH_MATMUL", b) == 6 * 4 * 5 * 6
    assert call_macs("ADD", object()) == 0


def _infos():
    return (CallInfo(0, (0,), "CONV_2D", "ts_conv2d_s8", 1000, 100, 128, 50, True),
            CallInfo(1, (1,), "RESHAPE", "", 0, 80, 128, 0, False),
            CallInfo(2, (2, 3), "CONV_2D+ADD", "ts_irb_s8", 500, 90, 112, 30, True))


def test_per_call_counts_subtract_the_calibrated_overhead_exactly():
    cal = Calibration(head=12, mark=29, tail=25)
    # invoke: prologue+call0 = 3000, call2 = 1500, return 4; each mark costs 29, the counter 12 + 25
    marks = [12 + 3000, 12 + 3000 + 29 + 1500]
    invoke = marks[-1] + 4 + 25
    counts, ret = per_call_counts(marks, invoke, cal)
    assert counts == [3000, 1500] and ret == 4
    r = build_report(_infos(), marks, invoke, cal, board="b", model="m", inputs="x", arena_bytes=128,
                     const_bytes=80, runs=2)
    assert [w.instructions for w in r.rows] == [3000, 0, 1500]
    assert r.total_instructions == 4504 == invoke - cal.overhead(2) and r.overhead_instructions == cal.overhead(2)
    assert [w.instructions_per_mac for w in r.rows] == [3.0, None, 3.0]
    assert [w.percent for w in r.rows] == [round(100 * 3000 / 4504, 2), 0.0, round(100 * 1500 / 4504, 2)]
    assert r.rows[1].kernel == "(aliased, no code)" and r.macs == 1500
    j = json.loads(json.dumps(r.to_json()))
    assert j["rows"][2]["ops"] == [2, 3] and j["calibration"] == {"head": 12, "mark": 29, "tail": 25}
    table = format_report(r)
    assert "4,504" in table and "2-3" in table and "29" in table and "identical to TFLite Micro" in table
    with pytest.raises(HilProtocolError):
        build_report(_infos(), marks[:1], invoke, cal, board="b", model="m", inputs="x", arena_bytes=1, const_bytes=1)
    with pytest.raises(HilProtocolError):
        per_call_counts([5, 10], 100, cal)  # a mark before the calibrated head: not this firmware's counts


def test_calibration_needs_constant_marks():
    assert Calibration.from_marks([12, 41, 70, 99], 124) == Calibration(12, 29, 25)
    with pytest.raises(HilProtocolError, match="not exact"):
        Calibration.from_marks([12, 41, 71, 99], 124)


# ----------------------------------------------------------------------------- CLI: bad input

def test_bad_board_and_model_exit_2(tmp_path):
    tfl = tmp_path / "chain.tflite"
    tfl.write_bytes(CHAIN)
    r = run_cli("profile", "--tflite", str(tfl), "--board", "nucleo-f446re")
    assert r.returncode == 2 and "has no emulator" in r.stderr and "qemu-mps2-an386" in r.stderr
    r = run_cli("profile", "--tflite", str(tfl), "--board", "no-such-board")
    assert r.returncode == 2 and "--board" in r.stderr
    big = tmp_path / "big.tflite"
    big.write_bytes(build_chain(Chain(h=64, w=64, cin=16, hidden=96, cout=16), 1))
    r = run_cli("profile", "--tflite", str(big), "--board", "qemu-lm3s6965evb", "-q")
    assert r.returncode == 2 and "does not fit" in r.stderr, r.stderr
    r = run_cli("profile", "--tflite", str(tmp_path / "missing.tflite"), "--board", "qemu-mps2-an386")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("profile", "--tflite", str(tfl), "--board", "qemu-mps2-an386", "--model", "x")
    assert r.returncode == 2 and "--model needs --bundle" in r.stderr


# ----------------------------------------------------------------------------- QEMU

@pytest.mark.emulator
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-riscv32-virt"])
def test_profile_in_qemu_is_exact_repeatable_and_adds_up(board, tmp_path):
    from tinysplit.firmware.hilcheck import hil_check
    from tinysplit.firmware.profile import profile_model
    from tinysplit.firmware.source import ModelSource

    x = np.random.default_rng(3).integers(-128, 128, size=(1, 7, 6, 4), dtype=np.int8)
    src = ModelSource("chain", CHAIN, x, "random int8")
    gaps = []
    for stream in (True, False):  # two different models' code: one streamed call, or four layer calls
        r = profile_model(src, board, stream=stream, runs=2)
        assert r.runs == 2 and r.identical_to_tflm
        assert len(r.rows) == (1 if stream else 4) and all(w.instructions > 0 for w in r.rows)
        assert r.total_instructions == sum(w.instructions for w in r.rows) + r.return_instructions
        assert r.invoke_instructions - r.total_instructions == r.calibration.overhead(r.marks)
        assert 0 <= r.return_instructions <= 8  # the generated invoke's 'return 0'
        hil = hil_check(src, board, stream=stream)  # the normal firmware: no marks
        assert hil.identical_fraction == 1.0 and hil.instructions_min == hil.instructions_max
        gaps.append(hil.instructions_per_inference - r.total_instructions)
    # the rows add up to tinysplit hil's count less one board constant (its counter start/read and call)
    assert gaps[0] == gaps[1] and 0 < gaps[0] < 40, gaps


@pytest.mark.emulator
def test_profile_cli_json(tmp_path):
    tfl = tmp_path / "chain.tflite"
    tfl.write_bytes(CHAIN)
    r = run_cli("profile", "--tflite", str(tfl), "--board", "qemu-mps2-an386", "--json", "--runs", "1",
                "--no-stream-blocks", "--keep", str(tmp_path / "keep"))
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert [w["opcode"] for w in j["rows"]] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD"]
    assert j["identical_to_tflm"] and j["marks"] == 4
    assert j["invoke_instructions"] == j["total_instructions"] + j["overhead_instructions"]
    assert (tmp_path / "keep" / "profile-qemu-mps2-an386" / "src" / "model" / "chain_model.c").is_file()
    assert Path(tmp_path / "keep").is_dir()
