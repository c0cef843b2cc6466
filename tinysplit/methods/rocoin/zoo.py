"""The student zoo: int8 .tflite students, each with what it costs on a device, measured.

- memory: exactly what tinysplit's code generator reports for it (``generate_model_sources``):
  ``const_bytes`` of weights and requantization parameters in flash and ``arena_bytes`` of RAM;
- compute: instructions per inference, measured in QEMU on each board kind of the fleet by the HIL
  check (``hil_check``: the generated C built for the board, run on ``samples`` seeded random int8
  inputs; the mean count); instruction counts do not depend on the clock, so one run serves every
  device of that board;
- output: Q_j, the bytes of the student's output tensor (the portion it sends).

Profiles are cached in a JSON file keyed by the .tflite's SHA-256 and the board, so planning twice
does not rebuild; a cache from another tinysplit version or another number of samples is ignored
(the code generator's output may differ), and an unreadable one is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tinysplit import __version__
from tinysplit.errors import InputError, VerificationError
from tinysplit.files import write_atomic

log = logging.getLogger(__name__)

CACHE_FORMAT = "tinysplit-rocoin-profiles"
CACHE_VERSION = 1
DEFAULT_SAMPLES = 4
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class StudentProfile:
    name: str
    file: str  # the .tflite's file name (informational)
    sha256: str  # of the .tflite bytes
    const_bytes: int  # flash: weights and requantization parameters (the code generator's)
    arena_bytes: int  # RAM: the static arena (the code generator's)
    input_bytes: int
    output_bytes: int  # Q_j: the portion the student sends
    instructions: tuple[tuple[str, int], ...]  # (board, instructions per inference), sorted by board

    def __post_init__(self) -> None:
        object.__setattr__(self, "instructions", tuple(sorted((str(b), int(n)) for b, n in self.instructions)))

    def instructions_on(self, board: str) -> int:
        for b, n in self.instructions:
            if b == board:
                return n
        raise InputError(f"student '{self.name}' has no instruction count on board '{board}' (profiled on "
                         f"{', '.join(b for b, _ in self.instructions) or 'no board'}); profile it there")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "sha256": self.sha256, "const_bytes": self.const_bytes,
                "arena_bytes": self.arena_bytes, "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
                "instructions": dict(self.instructions)}


def student_from_json(d: dict[str, Any]) -> StudentProfile:
    return StudentProfile(d["name"], d["file"], d["sha256"], d["const_bytes"], d["arena_bytes"], d["input_bytes"],
                          d["output_bytes"], tuple(d["instructions"].items()))


def parse_student_args(items: Sequence[str]) -> list[tuple[str, Path]]:
    """``NAME=FILE.tflite`` pairs (the CLI's ``--students``); names unique, like C-friendly ids."""
    out: list[tuple[str, Path]] = []
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--students: '{item}' is not NAME=FILE.tflite")
        if not _NAME.match(name):
            raise InputError(f"--students: student name '{name}' must start with a letter or '_' and hold only "
                             "letters, digits, '_', '.', '-' (at most 64)")
        if any(n == name for n, _ in out):
            raise InputError(f"--students: student name '{name}' is given twice")
        out.append((name, Path(file)))
    if not out:
        raise InputError("--students: give at least one NAME=FILE.tflite")
    return out


class ProfileCache:
    """The JSON file of profiles: sha256 -> memory, output and instructions per board."""

    def __init__(self, path: Path | None, samples: int) -> None:
        self.path, self.samples = path, samples
        self.students: dict[str, dict[str, Any]] = {}
        if path is None or not path.is_file():
            return
        try:
            data = json.loads(path.read_text())
            ok = (data.get("format") == CACHE_FORMAT and data.get("version") == CACHE_VERSION
                  and isinstance(data.get("students"), dict))
        except (OSError, ValueError, AttributeError) as e:
            log.warning("ignoring the profile cache %s (%s); profiling again", path, e)
            return
        if not ok:
            log.warning("ignoring the profile cache %s (not a %s file)", path, CACHE_FORMAT)
        elif data.get("tinysplit") != __version__ or data.get("samples") != samples:
            log.info("ignoring the profile cache %s (tinysplit %s, %s samples; now %s, %s)", path,
                     data.get("tinysplit"), data.get("samples"), __version__, samples)
        else:
            self.students = data["students"]

    def entry(self, sha: str) -> dict[str, Any] | None:
        e = self.students.get(sha)
        keys = ("const_bytes", "arena_bytes", "input_bytes", "output_bytes", "instructions")
        if isinstance(e, dict) and all(k in e for k in keys) and isinstance(e["instructions"], dict):
            return e
        return None

    def put(self, sha: str, entry: dict[str, Any]) -> None:
        self.students[sha] = entry
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION,
                                                "tinysplit": __version__, "samples": self.samples,
                                                "students": self.students}, indent=1, sort_keys=True) + "\n")


def model_memory(tflite: bytes, name: str) -> dict[str, int]:
    """What the code generator reports for ``tflite``: const_bytes, arena_bytes, input/output bytes."""
    from tinysplit.exporter.codegen import generate_model_sources
    from tinysplit.firmware.render import c_identifier

    with tempfile.TemporaryDirectory(prefix="tinysplit-rocoin-") as tmp:
        s = generate_model_sources(tflite, c_identifier(name), Path(tmp))
    return {"const_bytes": s.const_bytes, "arena_bytes": s.arena_bytes, "input_bytes": s.input.bytes,
            "output_bytes": s.output.bytes}


def measure_instructions(name: str, path: Path, board: str, samples: int, memory: dict[str, int]) -> int:
    """Instructions per inference of the student at ``path`` in QEMU on ``board`` (the HIL check)."""
    from tinysplit.firmware.hilcheck import hil_check
    from tinysplit.firmware.source import tflite_source

    r = hil_check(replace(tflite_source(path, samples), name=name), board)
    if (r.const_bytes, r.arena_bytes) != (memory["const_bytes"], memory["arena_bytes"]):
        raise VerificationError(f"student '{name}': the firmware for {board} has const {r.const_bytes} / arena "
                                f"{r.arena_bytes} bytes, the code generator said {memory['const_bytes']} / "
                                f"{memory['arena_bytes']}")
    if r.identical_fraction < 1.0:
        log.warning("student '%s' on %s: %.2f%% of output values differ from TFLite Micro (max %d LSB)", name, board,
                    100 * (1 - r.identical_fraction), r.max_lsb_diff)
    return r.instructions_per_inference


def profile_zoo(students: Sequence[tuple[str, str | Path]], boards: Sequence[str], cache: str | Path | None = None,
                samples: int = DEFAULT_SAMPLES,
                progress: Callable[[str], None] | None = None) -> tuple[StudentProfile, ...]:
    """A profile of every (name, .tflite) student on every board, from ``cache`` where it has them."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.source import read_tflite_file

    say = progress or (lambda m: None)
    if samples < 1:
        raise InputError(f"the number of profiling samples must be at least 1, got {samples}")
    for b in boards:
        if not get_board(b).emulated:
            raise InputError(f"board '{b}' has no emulator, so students cannot be profiled on it in QEMU")
    store = ProfileCache(Path(cache) if cache is not None else None, samples)
    out = []
    for name, path in students:
        path = Path(path)
        tflite = read_tflite_file(path)
        sha = hashlib.sha256(tflite).hexdigest()
        entry = store.entry(sha)
        if entry is None:
            entry = {**model_memory(tflite, name), "instructions": {}}
            store.put(sha, entry)
        for board in boards:
            if board not in entry["instructions"]:
                say(f"profiling student '{name}' on {board} in QEMU ({samples} inferences)")
                entry["instructions"][board] = measure_instructions(name, path, board, samples, entry)
                store.put(sha, entry)
        out.append(StudentProfile(name, path.name, sha, entry["const_bytes"], entry["arena_bytes"],
                                  entry["input_bytes"], entry["output_bytes"],
                                  tuple((b, n) for b, n in entry["instructions"].items() if b in boards)))
    return tuple(out)
