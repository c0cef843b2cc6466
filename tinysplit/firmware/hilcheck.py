"""Hardware-in-the-loop check: a bundle's device model as generated C, built for a board, run in
QEMU on held-out inputs, compared value for value with the TFLite Micro runtime on the same inputs."""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinysplit.errors import ToolchainError


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


def c_prefix(name: str) -> str:
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", name).lower()
    return prefix if re.match(r"^[a-z_]", prefix) else f"m_{prefix}"


def generate_sources(bundle: Path, manifest, out_dir: Path, model: str | None = None):
    """C sources (ModelSources) for the bundle's device model (default: its first) in ``out_dir``."""
    try:
        from tinysplit.exporter.codegen import generate_model_sources
    except ImportError as e:
        raise ToolchainError(f"the C code generator is not available in this install ({e}); "
                             "install tinysplit with the export extra: ./setup.sh") from None
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    return generate_model_sources((Path(bundle) / dm.file).read_bytes(), c_prefix(dm.name), out_dir)


def generate_project(bundle: Path, board_name: str, out_dir: Path, model: str | None = None, app: str = "hil"):
    """Code-generate the bundle's device model and render a project for the board:
    (project, sources, manifest, device model). The nair app gets its slice plan from the manifest."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.project import nair_config, render_project
    from tinysplit.manifest import load_manifest

    board = get_board(board_name)
    manifest = load_manifest(bundle)
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    with tempfile.TemporaryDirectory(prefix="tinysplit-model-") as tmp:
        sources = generate_sources(bundle, manifest, Path(tmp), dm.name)
        nair = nair_config(manifest, model=dm.name) if app == "nair" else None
        project = render_project(board, sources, out_dir, app=app, nair=nair)
    return project, sources, manifest, dm


def run_hil_check(bundle: str | Path, board_name: str, samples: int, workdir: Path | None = None,
                  model: str | None = None, progress: Callable[[str], None] | None = None) -> HilReport:
    from tinysplit.boards import get_board
    from tinysplit.exporter.verify import compare_int8
    from tinysplit.firmware.build import build_project
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
