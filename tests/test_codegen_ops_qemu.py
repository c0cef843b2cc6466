"""The per-op bit-exactness suite in QEMU: every case of ``opcases.all_cases()`` cross-compiled with
the board's toolchain into one HIL firmware (tests/opsuite_qemu.py) and run on the Cortex-M4 and
RV32 boards against TFLite Micro, every value identical.

Each case runs on a few seeded random int8 inputs plus all -128 and all 127. The instructions of
every case's invoke (HIL counter, exact under -icount) go to ``ops_qemu_<board>.json`` in the test's
tmp dir; its path is in the assertion message.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from codegen_support import tflm_outputs
from opcases import all_cases
from opsuite_qemu import (BAD_INDEX_STATUS, SIZE_CLASSES, SuiteImage, build_suite, case_profile, frame, pack,
                          run_suite, share_arena)
from tinysplit.boards import get_board
from tinysplit.firmware.hil import HilProtocolError, HilSession
from tinysplit.modelsrc import ModelSources, TensorIO

# (board, kernel set): every kernel set on a board that runs it (auto: the core's default, see
# tinysplit.firmware.kernelsets: dsp on the M4, mve on the M55, portable on RV32), and the portable
# set on the M4 too
RUNS = (("qemu-mps2-an386", "auto"), ("qemu-mps2-an386", "portable"), ("qemu-riscv32-virt", "auto"),
        ("qemu-mps3-an547", "auto"))
BOARDS = tuple(dict.fromkeys(b for b, _ in RUNS))
RANDOM_INPUTS = 3
CASES = all_cases()
_IMAGES: dict[str, tuple[list[SuiteImage], float]] = {}


def _images(board_name: str, tmp_path_factory: pytest.TempPathFactory, kernels: str = "auto") -> list[SuiteImage]:
    """The suite's images for a board and kernel set, generated and built once per session."""
    key = f"{board_name}-{kernels}"
    if key not in _IMAGES:
        t0 = time.perf_counter()
        images = build_suite(get_board(board_name), [c.tflite for c in CASES],
                             tmp_path_factory.mktemp(f"ops_qemu_{key}"), kernels=kernels)
        _IMAGES[key] = images, time.perf_counter() - t0
    return _IMAGES[key][0]


def _inputs(index: int) -> np.ndarray:
    n = int(np.prod(CASES[index].input_shape))
    rng = np.random.default_rng(7000 + index)
    x = rng.integers(-128, 128, size=(RANDOM_INPUTS + 2, n)).astype(np.int8)
    x[-2], x[-1] = -128, 127
    return x


@pytest.mark.emulator
@pytest.mark.parametrize("board_name, kernels", RUNS, ids=[f"{b}-{k}" for b, k in RUNS])
def test_every_op_case_bit_exact_in_qemu(board_name: str, kernels: str,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    images = _images(board_name, tmp_path_factory, kernels)
    assert sorted(i for im in images for i in im.cases) == list(range(len(CASES)))  # every case, once
    inputs = {i: _inputs(i) for i in range(len(CASES))}
    run = run_suite(images, inputs)
    t0 = time.perf_counter()
    report, bad = [], []
    for i, case in enumerate(CASES):
        want = tflm_outputs(case.tflite, inputs[i])
        got = run.outputs[i]
        differ = int((got != want).sum()) if got.shape == want.shape else -1
        calls, macs = case_profile(case.tflite)
        report.append({"case": case.name, "ops": list(case.ops), "instructions": run.instructions[i],
                       "kernel_calls": calls, "macs": macs, "values": int(want.size), "differ": differ})
        if differ:
            bad.append(f"{case.name}: " + ("output shape " + str(got.shape) + " != " + str(want.shape) if differ < 0
                                           else f"{differ} of {want.size} values differ"))
    out = Path(tmp_path_factory.mktemp("ops_qemu_report")) / f"ops_qemu_{board_name}-{kernels}.json"
    seconds = {"build": round(_IMAGES[f"{board_name}-{kernels}"][1], 1), "qemu": round(run.seconds, 1),
               "tflm": round(time.perf_counter() - t0, 1)}
    out.write_text(json.dumps({"board": board_name, "kernels": kernels, "baseline": run.baseline, "seconds": seconds,
                               "images": [{"elf": str(im.elf), "cases": len(im.cases), "flash": im.build.flash_bytes,
                                           "ram": im.build.ram_bytes} for im in images],
                               "cases": report}, indent=1))
    assert not bad, f"{board_name} ({kernels} kernels): {len(bad)} of {len(CASES)} cases differ from TFLite Micro " \
                    f"(instructions per case in {out}):\n" + "\n".join(bad)
    base = set(run.baseline.values())
    assert len(base) == 1 and 0 < min(base) < 64, run.baseline  # the empty invoke: call overhead only
    # every case with a kernel call ran it under the counter; a RESHAPE alone is the empty invoke
    assert all(min(r["instructions"]) > min(base) if r["kernel_calls"] else set(r["instructions"]) == base
               for r in report), out


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", BOARDS)
def test_dispatch_refuses_an_index_past_the_cases(board_name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    image = _images(board_name, tmp_path_factory)[0]
    with HilSession(image.board, image.elf) as s:
        with pytest.raises(HilProtocolError, match=f"invoke\\(\\) returned {BAD_INDEX_STATUS}"):
            s.infer(frame(s.input_bytes, len(image.cases) + 1, None))
        y, n = s.infer(frame(s.input_bytes, len(image.cases), None))  # the empty invoke still answers
        assert n > 0 and y.size == s.output_bytes


def _fake(prefix: str, const_bytes: int, in_bytes: int = 1, out_bytes: int = 1) -> ModelSources:
    return ModelSources(prefix, (Path(f"{prefix}_model.c"),), (), f"{prefix}_model.h", 16, const_bytes,
                        TensorIO((in_bytes,), 1.0, 0, in_bytes), TensorIO((out_bytes,), 1.0, 0, out_bytes))


def test_pack_splits_only_when_flash_runs_out() -> None:
    models = [_fake(f"c{i}", 100_000) for i in range(10)]
    assert pack(models, 4 * 1024 * 1024) == [list(range(10))]
    groups = pack(models, 400_000)
    assert [i for g in groups for i in g] == list(range(10)) and len(groups) > 1
    assert all(len(g) >= 1 for g in groups)


def test_pack_groups_cases_by_size_class() -> None:
    small = SIZE_CLASSES[0]
    sizes = [(small + 1, 10), (4, 4), (small, small), (20, small + 1), (4, 4)]
    models = [_fake(f"c{i}", 10, i_, o_) for i, (i_, o_) in enumerate(sizes)]
    assert pack(models, 4 * 1024 * 1024)[:2] == [[1, 2, 4], [0, 3]]


def test_share_arena_refuses_a_model_without_its_arena_line(tmp_path: Path) -> None:
    src = tmp_path / "c0_model.c"
    src.write_text("#include \"c0_model.h\"\nstatic int8_t c0_arena[C0_ARENA_BYTES] TS_ALIGN(16);\nint x;\n")
    assert share_arena(src, "c0") == 16
    text = src.read_text()
    assert "static int8_t c0_arena" not in text and "#define c0_arena ops_arena" in text
    with pytest.raises(RuntimeError, match="exactly one line"):
        share_arena(src, "c0")  # already shared: no arena line left
