"""Build a rendered firmware project with CMake (Unix Makefiles) and measure it from the ELF.

``build_project(dir) -> BuildResult``: configures once (build/CMakeCache.txt), builds, then reads
the ELF's section headers: flash = every allocated section with contents (code, rodata and the
load image of .data); RAM = every allocated section inside the board's data region (.data, .bss
with the model's arena, the stack). Both are checked against the board again after the build.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tinysplit import children
from tinysplit.boards import Board, get_board
from tinysplit.errors import InputError, ToolchainError
from tinysplit.firmware.project import load_project_meta

log = logging.getLogger(__name__)

SETUP_HINT = "run ./setup.sh (it installs the cross compilers, CMake and QEMU)"
BUILD_TIMEOUT_S = 600

SHF_ALLOC = 0x2
SHT_NOBITS = 8


@dataclass(frozen=True)
class Section:
    name: str
    addr: int
    size: int
    alloc: bool
    nobits: bool


@dataclass(frozen=True)
class BuildResult:
    project: Path
    board: str
    elf: Path
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    flash_available: int
    ram_available: int
    sections: tuple[Section, ...]
    seconds: float

    def to_json(self) -> dict:
        return {"project": str(self.project), "board": self.board, "elf": str(self.elf),
                "flash_bytes": self.flash_bytes, "flash_available": self.flash_available,
                "ram_bytes": self.ram_bytes, "ram_available": self.ram_available,
                "stack_bytes": self.stack_bytes, "seconds": round(self.seconds, 3),
                "sections": [{"name": s.name, "addr": s.addr, "size": s.size} for s in self.sections if s.alloc]}


def require_tool(name: str, what: str, env: dict[str, str] | None = None) -> str:
    """Absolute path of ``name`` on PATH, else ToolchainError naming ./setup.sh."""
    path = shutil.which(name, path=(env or os.environ).get("PATH"))
    if path is None:
        raise ToolchainError(f"{what} '{name}' is not installed or not on PATH; {SETUP_HINT}")
    return path


def read_elf_sections(elf: Path) -> tuple[Section, ...]:
    """Section headers of a 32-bit little-endian ELF (every board here is one)."""
    data = Path(elf).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise InputError(f"'{elf}' is not a 32-bit little-endian ELF file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    raw = [struct.unpack_from("<IIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    str_off = raw[shstrndx][4]

    def name(off: int) -> str:
        end = data.index(b"\0", str_off + off)
        return data[str_off + off:end].decode()

    return tuple(Section(name(n), addr, size, bool(flags & SHF_ALLOC), typ == SHT_NOBITS)
                 for (n, typ, flags, addr, _off, size) in raw[1:])


def measure(elf: Path, board: Board) -> tuple[int, int, int]:
    """(flash_bytes, ram_bytes, stack_bytes) of an ELF built for ``board``."""
    sections = read_elf_sections(elf)
    flash = sum(s.size for s in sections if s.alloc and not s.nobits)
    ram = sum(s.size for s in sections if s.alloc and board.ram.contains(s.addr))
    stack = sum(s.size for s in sections if s.name == ".stack")
    return flash, ram, stack


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    log.debug("running %s", " ".join(cmd))
    try:
        proc = children.run(cmd, timeout=BUILD_TIMEOUT_S, cwd=cwd)  # the tools' whole group dies on errors
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what} took longer than {BUILD_TIMEOUT_S} s and was stopped") from None
    except OSError as e:
        raise ToolchainError(f"{what} could not start ({cmd[0]}: {e.strerror}); {SETUP_HINT}") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        m = re.search(r"region [`'](\w+)' overflowed by (\d+) bytes", out)
        if m:
            raise InputError(f"the firmware does not fit: memory region '{m.group(1)}' overflowed by "
                             f"{int(m.group(2)):,} bytes (linker); choose a board with more memory or a "
                             "smaller model")
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise ToolchainError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return out


def build_project(project_dir: str | Path, jobs: int | None = None) -> BuildResult:
    """Configure (first time) and build ``project_dir``; return sizes measured from the ELF.

    Raises ToolchainError if CMake, make or the board's cross compiler is missing (or the build
    fails), InputError if the image does not fit the board's memory."""
    t0 = time.perf_counter()
    proj = Path(project_dir).resolve()
    meta = load_project_meta(proj)
    board = get_board(meta["board"])
    if board.family == "esp_idf":
        raise InputError(f"'{proj}' is an ESP-IDF project for {board.name}: build it with ESP-IDF v5.x, "
                         f"'idf.py set-target {board.idf.target if board.idf else '?'} && idf.py build' in that "
                         "folder (docs/esp32.md); 'tinysplit build' builds the CMake projects of the other boards")
    cmake = require_tool("cmake", "CMake")
    require_tool("make", "make")
    require_tool(board.toolchain.cc, f"the {board.family} cross compiler for {board.name}")
    build = proj / "build"
    if not (build / "CMakeCache.txt").is_file():
        _run([cmake, "-S", str(proj), "-B", str(build), "-G", "Unix Makefiles",
              f"-DCMAKE_TOOLCHAIN_FILE={proj / 'toolchain.cmake'}", "-DCMAKE_BUILD_TYPE="], proj, "cmake configure")
    _run([cmake, "--build", str(build), "--", f"-j{jobs or os.cpu_count() or 1}"], proj, "cmake build")
    elf = build / "firmware.elf"
    if not elf.is_file():
        raise ToolchainError(f"the build finished but produced no {elf}")
    flash, ram, stack = measure(elf, board)
    problems = []
    if flash > board.flash.length:
        problems.append(f"flash needs {flash:,} bytes, '{board.flash.name}' has {board.flash.length:,}")
    if ram > board.ram.length:
        problems.append(f"RAM needs {ram:,} bytes, '{board.ram.name}' has {board.ram.length:,}")
    if problems:
        raise InputError(f"the firmware built for '{board.name}' does not fit: {'; '.join(problems)}")
    result = BuildResult(proj, board.name, elf, flash, ram, stack, board.flash.length, board.ram.length,
                         read_elf_sections(elf), time.perf_counter() - t0)
    log.info("built %s for %s: flash %d B, RAM %d B in %.1f s", elf, board.name, flash, ram, result.seconds)
    return result
