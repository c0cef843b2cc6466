"""``tinysplit hil --emulator renode``: the HIL check through the project's Renode script and Robot
test (renode/board.resc, renode/hil.robot, rendered for every board with a ``renode`` entry).

Renode is not a Python package: it must be on PATH (``renode`` and its ``renode-test``); without it
the command exits 6 saying how to install it. With it, the project is generated and built, TFLite
Micro's outputs for the inputs are written beside the Robot test, and ``renode-test`` runs it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tinysplit.errors import InputError, ToolchainError

INSTALL_HINT = ("install Renode (a release package or the portable build from renode.io / "
                "github.com/renode/renode/releases; 'renode-test' needs its Python requirements: "
                "pip install -r tests/requirements.txt in Renode's folder) and put renode and renode-test on PATH")


def require_renode() -> tuple[str, str]:
    renode, test = shutil.which("renode"), shutil.which("renode-test")
    if renode is None or test is None:
        missing = "renode" if renode is None else "renode-test"
        raise ToolchainError(f"--emulator renode needs '{missing}' on PATH, which this machine lacks: {INSTALL_HINT}; "
                             "or run the check in QEMU (--emulator qemu) on an emulated board")
    return renode, test


def run_renode_hil(args: Any, keep: Path | None) -> int:
    from tinysplit.boards import get_board

    board = get_board(args.board)
    if board.renode is None:
        raise InputError(f"board '{board.name}' has no Renode platform; boards with one: see 'tinysplit boards' "
                         "(column emulator: renode)")
    if args.e2e:
        raise InputError("--e2e runs in QEMU only; drop --emulator renode")
    _, renode_test = require_renode()
    from tinysplit import children
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.generate import model_project
    from tinysplit.firmware.hilcheck import tflm_reference
    from tinysplit.firmware.source import DEFAULT_SEED, bundle_source, tflite_source

    if args.tflite is not None:
        source = tflite_source(args.tflite, args.samples, args.inputs,
                               DEFAULT_SEED if args.seed is None else args.seed)
    else:
        source = bundle_source(args.bundle, args.samples, args.model)
    with tempfile.TemporaryDirectory(prefix="tinysplit-renode-") as tmp:
        proj_dir = (keep or Path(tmp)) / f"hil-{board.name}"
        project, _ = model_project(board.name, source.tflite, source.name, proj_dir, "hil")
        build_project(project.dir)
        ref, _ = tflm_reference(source.tflite, source.inputs)
        np.save(project.dir / "renode" / "inputs.npy", source.inputs)
        np.save(project.dir / "renode" / "expected.npy", ref)
        import sys

        proc = children.spawn([renode_test, str(project.dir / "renode" / "hil.robot"),
                               "--variable", f"PYTHON:{sys.executable}"], stdin=subprocess.DEVNULL)
        try:
            code = proc.wait()
        finally:
            children.stop(proc)
    return 0 if code == 0 else 5
