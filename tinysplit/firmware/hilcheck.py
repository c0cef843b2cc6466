"""Hardware-in-the-loop check: an int8 device model as generated C, built for a board, run in QEMU
on inputs, compared value for value with the TFLite Micro runtime on the same inputs.

One code path for every model source (``tinysplit.firmware.source``): a bundle's device model on
its held-out inputs (``run_hil_check``), or any int8 .tflite file on random or given inputs
(``hil_check(tflite_source(...), ...)``)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinysplit.firmware.source import ModelSource

INFERENCE_TIMEOUT_S = 60.0  # the longest wait for one inference's answer in QEMU


@dataclass(frozen=True)
class HilReport:
    board: str
    model: str
    samples: int
    inputs: str  # where the inputs came from: "held-out", "random int8 (seed 0)", a file name
    identical_fraction: float
    max_lsb_diff: int
    values_compared: int
    instructions_per_inference: int  # mean over the samples (the count is exact and repeatable)
    instructions_min: int
    instructions_max: int
    flash_bytes: int
    ram_bytes: int
    arena_bytes: int  # the generated code's static arena
    tflm_arena_bytes: int  # the arena TFLite Micro allocated for the model (measured as the exporter does)
    const_bytes: int

    def to_json(self) -> dict:
        return asdict(self)


def tflm_reference(tflite: bytes, inputs: np.ndarray) -> tuple[np.ndarray, int]:
    """The TFLite Micro runtime on each input: (int8 outputs (N, output values), arena bytes it used)."""
    from tinysplit.exporter.runtimes import TflmRunner

    rt = TflmRunner(tflite, num_outputs=1)
    outs = [rt.run(inputs[i:i + 1])[0].reshape(-1) for i in range(len(inputs))]
    return np.stack(outs), rt.arena_bytes()


def hil_check(source: ModelSource, board_name: str, workdir: Path | None = None,
              progress: Callable[[str], None] | None = None, stream: bool = True,
              kernels: str | None = None) -> HilReport:
    """Generate, build and run ``source``'s model on ``board_name`` in QEMU (app ``hil``) on every one
    of its inputs, and compare each output value with TFLite Micro's. ``stream``: streamed
    inverted-residual blocks (False: layer at a time). ``kernels``: the kernel set (None: the board's)."""
    from tinysplit.boards import get_board
    from tinysplit.exporter.verify import compare_int8
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.generate import model_project
    from tinysplit.firmware.hil import HilSession

    say = progress or (lambda m: None)
    n = len(source.inputs)
    with tempfile.TemporaryDirectory(prefix="tinysplit-hil-") as tmp:
        proj_dir = (workdir or Path(tmp)) / f"hil-{board_name}"
        say(f"generating C and a firmware project for {board_name}")
        project, sources = model_project(board_name, source.tflite, source.name, proj_dir, "hil", stream=stream,
                                          kernels=kernels)
        say("building")
        build = build_project(project.dir)
        say(f"TFLite Micro on {n} inputs ({source.inputs_from})")
        ref, tflm_arena = tflm_reference(source.tflite, source.inputs)
        say(f"running {n} inferences in QEMU ({board_name})")
        outs, counts = [], []
        # an inference of tens of millions of instructions takes seconds in QEMU (the LX106's sim core is
        # the slowest: 34M instructions ran past 10 s on a loaded 2-core machine): allow a minute each
        with HilSession(get_board(board_name), build.elf, timeout=INFERENCE_TIMEOUT_S) as s:
            for i in range(n):
                y, c = s.infer(source.inputs[i])
                outs.append(y)
                counts.append(c)
        cmp = compare_int8(ref, np.stack(outs).reshape(ref.shape))
    return HilReport(board=board_name, model=source.name, samples=n, inputs=source.inputs_from,
                     identical_fraction=cmp.identical_fraction, max_lsb_diff=cmp.max_lsb_diff,
                     values_compared=cmp.values,
                     instructions_per_inference=int(round(float(np.mean(counts)))),
                     instructions_min=int(min(counts)), instructions_max=int(max(counts)),
                     flash_bytes=build.flash_bytes, ram_bytes=build.ram_bytes, arena_bytes=sources.arena_bytes,
                     tflm_arena_bytes=tflm_arena, const_bytes=sources.const_bytes)


def run_hil_check(bundle: str | Path, board_name: str, samples: int, workdir: Path | None = None,
                  model: str | None = None, progress: Callable[[str], None] | None = None,
                  kernels: str | None = None) -> HilReport:
    """``hil_check`` of a bundle's device model (default: its first) on its first ``samples`` held-out inputs."""
    from tinysplit.firmware.source import bundle_source

    return hil_check(bundle_source(bundle, samples, model), board_name, workdir, progress, kernels=kernels)
