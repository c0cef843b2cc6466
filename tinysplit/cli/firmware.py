"""CLI commands for firmware: ``boards``, ``firmware``, ``build``, ``run``, ``hil``.

Each command is an (add_parser, run) pair; ``run`` returns the process exit status and raises
tinysplit errors (``tinysplit.cli.main`` maps them to exit codes).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from tinysplit.console import Progress, emit_json, kib
from tinysplit.errors import InputError




# --- boards ---------------------------------------------------------------------------------------

def add_boards(sub: Any) -> None:
    p = sub.add_parser("boards", help="list the boards firmware can be generated for",
                       description="List the boards in boards/ (validated against board.schema.json).")
    p.add_argument("--json", action="store_true", help="print the boards as JSON")
    p.add_argument("--emulated", action="store_true", help="only boards with an emulator")


def run_boards(args: Any) -> int:
    from tinysplit.boards import list_boards

    boards = list_boards(emulated_only=args.emulated)
    if args.json:
        emit_json([{"name": b.name, "description": b.description, "family": b.family, "cpu": b.core.cpu,
                     "flash_bytes": b.flash.length, "ram_bytes": b.ram.length, "clock_hz": b.clock_hz,
                     "uart": b.uart.kind, "nic": b.nic.kind, "transports": list(b.transports),
                     "emulator": None if b.emulator is None else b.emulator.qemu_machine} for b in boards])
        return 0
    for b in boards:
        em = b.emulator.qemu_machine if b.emulator else "hardware only"
        print(f"{b.name:22} {b.core.cpu:11} flash {b.flash.length // 1024:5} KiB  RAM {b.ram.length // 1024:5} KiB  "
              f"{b.uart.kind:11} {'+'.join(b.transports):9} {em}")
    return 0


# --- firmware -------------------------------------------------------------------------------------

def _board_choices() -> list[str] | None:
    """Board names for argparse choices; None (checked at run time) if a board file is broken, so
    that one bad file does not break every other command."""
    from tinysplit.boards import board_names
    from tinysplit.errors import TinysplitError

    try:
        return list(board_names())
    except TinysplitError:
        return None


def _add_bundle_board_args(p: Any) -> None:
    """--bundle, --board (choices from the board registry) and --model, shared by firmware and hil."""
    names = _board_choices()
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle directory from 'tinysplit export'")
    p.add_argument("--board", required=True, choices=names, metavar="NAME",
                   help="target board (see 'tinysplit boards'): " + ", ".join(names or ["?"]))
    p.add_argument("--model", metavar="NAME", help="device model of the bundle (default: its first)")


def add_firmware(sub: Any) -> None:
    from tinysplit.firmware.apps import APPS

    p = sub.add_parser("firmware", help="generate a firmware project for a bundle's device model and a board",
                       description="Generate C for the bundle's device model (ahead-of-time code generator) and "
                                   "render a complete CMake project for BOARD: startup, linker script, UART "
                                   "driver, instruction counter, the app. Fails before rendering if the model "
                                   "does not fit the board's RAM or flash.")
    _add_bundle_board_args(p)
    p.add_argument("--out", required=True, metavar="PROJECT", help="project directory to create")
    p.add_argument("--app", choices=list(APPS), default="hil",
                   help="application (default: hil): " + "; ".join(f"{a.name}: {a.summary}" for a in APPS.values()))


def run_firmware(args: Any) -> int:
    from tinysplit.firmware.generate import generate_project

    project, sources, manifest, dm = generate_project(Path(args.bundle), args.board, Path(args.out), args.model,
                                                      args.app)
    board_name = args.board
    f = project.fit
    print(f"project for '{dm.name}' on {board_name} (app {args.app}) written to {project.dir}")
    print(f"  estimate: RAM {kib(f.ram_needed)} of {kib(f.ram_available)}, "
          f"flash {kib(f.flash_needed)} of {kib(f.flash_available)}")
    print(f"  next: tinysplit build {project.dir}")
    return 0


# --- build ----------------------------------------------------------------------------------------

def add_build(sub: Any) -> None:
    p = sub.add_parser("build", help="build a firmware project (CMake) and print its flash and RAM use",
                       description="Configure and build PROJECT with CMake and the board's cross compiler; "
                                   "measure flash and RAM from the ELF's sections.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel compile jobs (default: CPU count)")


def run_build(args: Any) -> int:
    from tinysplit.firmware.build import build_project

    r = build_project(args.project, jobs=args.jobs)
    if args.json:
        emit_json(r.to_json())
        return 0
    print(f"built {r.elf} for {r.board} in {r.seconds:.1f} s")
    print(f"  flash {kib(r.flash_bytes)} of {kib(r.flash_available)} "
          f"({100 * r.flash_bytes / r.flash_available:.1f}%)")
    print(f"  RAM   {kib(r.ram_bytes)} of {kib(r.ram_available)} "
          f"({100 * r.ram_bytes / r.ram_available:.1f}%, stack {r.stack_bytes:,} B)")
    return 0


# --- run ------------------------------------------------------------------------------------------

def add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run a built firmware project in an emulator; exits with its exit status",
                       description="Run PROJECT/build/firmware.elf on its board's QEMU machine (icount, "
                                   "semihosting), print what it writes to its UART, and exit with the "
                                   "firmware's exit status (124 if it did not finish within --timeout).")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--emulator", choices=["qemu"], default="qemu", help="emulator (default: qemu)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="hard time limit (default 30 s)")


def run_run(args: Any) -> int:
    from tinysplit.boards import get_board
    from tinysplit.firmware.project import load_project_meta
    from tinysplit.firmware.qemu import run_elf

    meta = load_project_meta(args.project)
    board = get_board(meta["board"])
    elf = Path(args.project) / "build" / "firmware.elf"
    if not elf.is_file():
        raise InputError(f"'{elf}' does not exist; build the project first: tinysplit build {args.project}")
    if args.timeout <= 0:
        raise InputError(f"--timeout must be positive, got {args.timeout}")

    def echo(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()

    result = run_elf(board, elf, timeout=args.timeout, on_uart=echo)
    print(f"[tinysplit] firmware exited with status {result.exit_code} after {result.seconds:.2f} s",
          file=sys.stderr)
    return result.exit_code


# --- hil ------------------------------------------------------------------------------------------

def add_hil(sub: Any) -> None:
    p = sub.add_parser("hil", help="hardware-in-the-loop check in QEMU against TFLite Micro",
                       description="Generate C for the bundle's device model, build it for BOARD, run it in QEMU "
                                   "on N held-out inputs streamed over the emulated UART, and compare every "
                                   "output value with the TFLite Micro runtime on the same inputs. Instruction "
                                   "counts are exact (QEMU -icount and the board's timer).")
    _add_bundle_board_args(p)
    p.add_argument("--samples", type=int, default=100, metavar="N", help="held-out inputs to run (default 100)")
    p.add_argument("--keep", metavar="DIR", help="keep the generated project under DIR")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    from tinysplit.firmware.e2e import add_e2e_arguments

    add_e2e_arguments(p)


def run_hil(args: Any) -> int:
    from tinysplit.firmware.hilcheck import run_hil_check

    if args.samples < 1:
        raise InputError(f"--samples must be at least 1, got {args.samples}")
    keep = Path(args.keep) if args.keep else None
    if args.e2e:
        from tinysplit.firmware.e2e import format_e2e, run_e2e_for_bundle

        r = run_e2e_for_bundle(Path(args.bundle), args.board, args.samples, args.transport, args, keep, args.model)
        emit_json(r) if args.json else print(format_e2e(r))
        return 0 if r["ok"] else 5
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    r = run_hil_check(Path(args.bundle), args.board, args.samples, keep, args.model, Progress(args.quiet))
    if args.json:
        emit_json(r.to_json())
    else:
        print(f"{r.board}: '{r.model}' on {r.samples} inputs: {100 * r.identical_fraction:.2f}% of "
              f"{r.values_compared:,} output values identical to TFLite Micro (max diff {r.max_lsb_diff} LSB)")
        print(f"  {r.instructions_per_inference:,} instructions per inference "
              f"({r.instructions_min:,}..{r.instructions_max:,}); flash {kib(r.flash_bytes)}, RAM {kib(r.ram_bytes)}; "
              f"arena {r.arena_bytes:,} B (TFLite Micro {r.tflm_arena_bytes:,} B)")
    return 0 if r.identical_fraction == 1.0 else 5


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "boards": (add_boards, run_boards),
    "firmware": (add_firmware, run_firmware),
    "build": (add_build, run_build),
    "run": (add_run, run_run),
    "hil": (add_hil, run_hil),
}
