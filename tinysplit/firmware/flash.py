"""Flash a built project onto its real board, through the tool its board file names.

``FLASHERS`` maps a board's ``flash.tool`` to a function that returns the exact invocation
(``FlashPlan``: argv and working directory): pyOCD (the Python package, run as ``python -m pyocd``
so the one in this install is used) for Cortex-M boards with the board's pyOCD target type;
esptool (``python -m esptool`` with ESP-IDF's ``build/flash_args``) or ``idf.py flash`` for the
ESP32 family. ``--dry-run`` prints the plan; otherwise the tool must be installed (pyocd and
esptool come with ``pip install 'tinysplit[flash]'``; idf.py with ESP-IDF).
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinysplit.boards import Board, get_board
from tinysplit.errors import InputError, ToolchainError
from tinysplit.firmware.project import load_project_meta


@dataclass(frozen=True)
class FlashPlan:
    tool: str
    target: str
    argv: tuple[str, ...]
    cwd: Path

    def command_line(self) -> str:
        return shlex.join(self.argv)


def _pyocd(board: Board, project: Path, probe: str | None) -> FlashPlan:
    elf = project / "build" / "firmware.elf"
    if not elf.is_file():
        raise InputError(f"'{elf}' does not exist; build the project first: tinysplit build {project}")
    argv = [sys.executable, "-m", "pyocd", "flash", "--target", board.flasher.target]
    if probe is not None:
        argv += ["--uid", probe]
    return FlashPlan("pyocd", board.flasher.target, (*argv, "--format", "elf", str(elf)), project)


def _esptool(board: Board, project: Path, probe: str | None) -> FlashPlan:
    build = project / "build"
    if not (build / "flash_args").is_file():
        raise InputError(f"'{build / 'flash_args'}' does not exist; build the ESP-IDF project first (idf.py build)")
    argv = [sys.executable, "-m", "esptool", "--chip", board.flasher.target]
    if probe is not None:
        argv += ["--port", probe]
    return FlashPlan("esptool", board.flasher.target, (*argv, "write-flash", "@flash_args"), build)


def _idf_py(board: Board, project: Path, probe: str | None) -> FlashPlan:
    argv = ["idf.py", "--project-dir", str(project)]
    if probe is not None:
        argv += ["--port", probe]
    return FlashPlan("idf.py", board.flasher.target, (*argv, "flash"), project)


# board flash.tool -> (plan builder, Python module it needs or None, program it needs or None)
FLASHERS: dict[str, tuple[Callable[[Board, Path, str | None], FlashPlan], str | None, str | None]] = {
    "pyocd": (_pyocd, "pyocd", None),
    "esptool": (_esptool, "esptool", None),
    "idf.py": (_idf_py, None, "idf.py"),
}


def flash_plan(project: str | Path, probe: str | None = None) -> FlashPlan:
    """The exact invocation that flashes PROJECT onto its board (``probe``: pyOCD's probe unique id,
    or the ESP board's serial port). InputError for an emulator-only board or an unbuilt project."""
    p = Path(project)
    board = get_board(load_project_meta(p)["board"])
    if board.flasher is None:
        raise InputError(f"board '{board.name}' is emulator-only and cannot be flashed; run it with "
                         f"'tinysplit run {p}' (boards that can be flashed: 'tinysplit boards')")
    if probe is not None and not probe.strip():
        raise InputError("--probe must not be empty")
    return FLASHERS[board.flasher.tool][0](board, p, probe)


def require_flasher(plan: FlashPlan) -> None:
    """ToolchainError (exit 6) naming what to install when the plan's tool is missing."""
    _, module, program = FLASHERS[plan.tool]
    if module is not None and importlib.util.find_spec(module) is None:
        raise ToolchainError(f"flashing with {plan.tool} needs the Python package '{module}', which this install "
                             "lacks: pip install 'tinysplit[flash]'")
    if program is not None and shutil.which(program) is None:
        raise ToolchainError(f"flashing with {program} needs ESP-IDF's {program} on PATH: install ESP-IDF and run its "
                             "export.sh, or set the board's flash tool to esptool (pip install 'tinysplit[flash]')")
