"""Hardware-in-the-loop check: a bundle's device model as generated C, built for a board, run in
QEMU on held-out inputs, compared value for value with the TFLite Micro runtime on the same inputs."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class HilReport:
    board: str
    model: str
    samples: int
    identical_fraction: float
    max_lsb_diff: int
    values_compared: int
    instructions_per_inference: int  # mean over the samples (the count is exact and repeatable)
    instructions_min: int
    instructions_max: int
    flash_bytes: int
    ram_bytes: int
    arena_bytes: int  # the generated code's static arena
    tflm_arena_bytes: int  # TFLite Micro's measured arena, from the manifest
    const_bytes: int

    def to_json(self) -> dict:
        return asdict(self)


def run_hil_check(bundle: str | Path, board_name: str, samples: int, workdir: Path | None = None,
                  model: str | None = None, progress: Callable[[str], None] | None = None) -> HilReport:
    from tinysplit.boards import get_board
    from tinysplit.exporter.verify import compare_int8
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.generate import generate_project
    from tinysplit.firmware.hil import HilSession
    from tinysplit.reference import device_outputs, heldout, quantized_inputs

    say = progress or (lambda m: None)
    bundle = Path(bundle)
    with tempfile.TemporaryDirectory(prefix="tinysplit-hil-") as tmp:
        proj_dir = (workdir or Path(tmp)) / f"hil-{board_name}"
        say(f"generating C and a firmware project for {board_name}")
        project, sources, manifest, dm = generate_project(bundle, board_name, proj_dir, model)
        say("building")
        build = build_project(project.dir)
        x, _ = heldout(bundle, manifest)
        n = min(samples, len(x))
        xq = quantized_inputs(manifest, x[:n], dm.name)
        say(f"TFLite Micro on {n} held-out inputs")
        ref = device_outputs(bundle, manifest, xq, dm.name)
        say(f"running {n} inferences in QEMU ({board_name})")
        outs, counts = [], []
        with HilSession(get_board(board_name), build.elf) as s:
            for i in range(n):
                y, c = s.infer(xq[i])
                outs.append(y)
                counts.append(c)
        got = np.stack(outs).reshape(ref.shape)
        cmp = compare_int8(ref, got)
    return HilReport(board=board_name, model=dm.name, samples=n, identical_fraction=cmp.identical_fraction,
                     max_lsb_diff=cmp.max_lsb_diff, values_compared=cmp.values,
                     instructions_per_inference=int(round(float(np.mean(counts)))),
                     instructions_min=int(min(counts)), instructions_max=int(max(counts)),
                     flash_bytes=build.flash_bytes, ram_bytes=build.ram_bytes, arena_bytes=sources.arena_bytes,
                     tflm_arena_bytes=dm.arena_bytes, const_bytes=sources.const_bytes)
