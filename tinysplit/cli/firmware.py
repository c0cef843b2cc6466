"""CLI commands for firmware: ``boards``, ``firmware``, ``build``, ``run``, ``flash``, ``hil``, ``profile``.

Each command is an (add_parser, run) pair; ``run`` returns the process exit status and raises
tinysplit errors (``tinysplit.cli.main`` maps them to exit codes). ``firmware``, ``hil`` and ``profile`` take a
model from a bundle (``--bundle``) or from any int8 .tflite file (``--tflite``) through the shared
helpers ``add_model_board_args`` and ``check_model_source``.
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
                     "emulator": None if b.emulator is None else b.emulator.qemu_machine,
                     "flash_tool": None if b.flasher is None else b.flasher.tool,
                     "flash_target": None if b.flasher is None else b.flasher.target,
                     "renode_platform": None if b.renode is None else b.renode.platform} for b in boards])
        return 0
    print(f"{'board':22} {'cpu':11} {'flash':>9}  {'RAM':>9}  {'uart':11} {'transports':10} {'emulator':14} flashing")
    for b in boards:
        em = f"qemu {b.emulator.qemu_machine}" if b.emulator else "hardware only"
        fl = f"{b.flasher.tool} ({b.flasher.target})" if b.flasher else "-"
        rn = ", renode" if b.renode else ""
        print(f"{b.name:22} {b.core.cpu:11} {b.flash.length // 1024:5} KiB  {b.ram.length // 1024:5} KiB  "
              f"{b.uart.kind:11} {'+'.join(b.transports):10} {em + rn:14} {fl}")
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


def add_model_board_args(p: Any) -> None:
    """The model source (--bundle DIR or --tflite FILE, one of them), --board (choices from the board
    registry) and --model (a bundle's device model), shared by firmware and hil."""
    names = _board_choices()
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", metavar="DIR", help="bundle directory from 'tinysplit export'")
    src.add_argument("--tflite", metavar="FILE",
                     help="any int8 .tflite model (TFLite converter, Edge Impulse, a model zoo) instead of a bundle; "
                          "needs only tinysplit[firmware]: no TensorFlow, no PyTorch")
    p.add_argument("--board", required=True, choices=names, metavar="NAME",
                   help="target board (see 'tinysplit boards'): " + ", ".join(names or ["?"]))
    p.add_argument("--model", metavar="NAME", help="device model of the bundle (default: its first)")
    p.add_argument("--no-stream-blocks", dest="stream_blocks", action="store_false",
                   help="run inverted-residual blocks layer at a time (every expanded tensor whole in the arena) "
                        "instead of streamed row by row in one call each (the default: a smaller arena, the same "
                        "outputs)")
    from tinysplit.firmware.kernelsets import KERNEL_SETS

    p.add_argument("--kernels", choices=("auto", *KERNEL_SETS), default="auto",
                   help="kernel set the inner loops compile with: auto (the default: the most capable one the "
                        "board's core runs: mve on Cortex-M55, dsp on Cortex-M4/M7/M33, else portable), portable "
                        "(plain C, every core), dsp (Arm DSP extension), mve (Helium); a set the core cannot run "
                        "is an error")


def check_model_source(args: Any, bundle_only: tuple[str, ...] = (), tflite_only: tuple[str, ...] = ()) -> None:
    """InputError for options that only go with the other model source (given as attribute names;
    an option counts as given when it is not None/False)."""
    given = lambda name: getattr(args, name, None) not in (None, False)  # noqa: E731
    if args.tflite is not None:
        bad = [n for n in ("model", *bundle_only) if given(n)]
        if bad:
            raise InputError(f"--{bad[0].replace('_', '-')} needs --bundle: a --tflite file is one model without "
                             "a bundle's manifest")
    else:
        bad = [n for n in tflite_only if given(n)]
        if bad:
            raise InputError(f"--{bad[0].replace('_', '-')} goes with --tflite (a bundle brings its own held-out "
                             "inputs)")


def add_firmware(sub: Any) -> None:
    from tinysplit.firmware.apps import APPS

    p = sub.add_parser("firmware", help="generate a firmware project for a device model (bundle or .tflite) "
                                        "and a board",
                       description="Generate C for the bundle's device model, or for any int8 .tflite file "
                                   "(ahead-of-time code generator; C names from the file name), and render a "
                                   "complete CMake project for BOARD: startup, linker script, UART driver, "
                                   "instruction counter, the app. Fails before rendering if the model does not "
                                   "fit the board's RAM or flash. Method apps (e.g. nair) need a bundle.")
    add_model_board_args(p)
    p.add_argument("--out", required=True, metavar="PROJECT", help="project directory to create")
    p.add_argument("--app", choices=list(APPS), default="hil",
                   help="application (default: hil): " + "; ".join(f"{a.name}: {a.summary}" for a in APPS.values()))
    p.add_argument("--keys", metavar="KEYS.json",
                   help="a method app with authenticated frames: embed the key of --device-id from this key file "
                        "('tinysplit keys create'); the project then holds a secret: keep it private")
    p.add_argument("--device-id", type=int, default=1, metavar="ID", help="a method app's device id (default 1)")
    p.add_argument("--transport", choices=["uart", "udp"], default=None,
                   help="a method app's device -> host link (default uart); udp: the board's NIC (LAN9118 in QEMU, "
                        "Wi-Fi on ESP32 boards)")
    p.add_argument("--udp-port", type=int, default=None, metavar="PORT",
                   help="host UDP port the device sends to with --transport udp (default 5600)")
    esp = p.add_argument_group("ESP-IDF boards (esp32-devkitc, esp32s3-devkitc, esp32c3-devkitm): the defaults of "
                               "the project's Kconfig menu 'tinysplit'")
    esp.add_argument("--wifi-ssid", default="", metavar="SSID", help="Wi-Fi network to join (--transport udp)")
    esp.add_argument("--wifi-password-env", default=None, metavar="NAME",
                     help="environment variable holding the Wi-Fi password (none: an open network); it is written "
                          "to sdkconfig.defaults with mode 0600")
    esp.add_argument("--host", default="", metavar="IPV4",
                     help="IPv4 address of the machine running 'tinysplit serve' (--transport udp)")
    esp.add_argument("--uart", type=int, default=None, metavar="N", help="UART number of the wire protocol "
                     "(default: the board file's, 0: the USB-to-UART port)")
    esp.add_argument("--baud", type=int, default=None, metavar="BAUD", help="UART baud rate (default: the board "
                     "file's)")


def link_settings(args: Any) -> Any:
    """The ESP-IDF link options as LinkSettings (the password read from the named variable)."""
    import os

    from tinysplit.firmware.project import LinkSettings

    password = ""
    name = getattr(args, "wifi_password_env", None)
    if name is not None:
        if name not in os.environ:
            raise InputError(f"--wifi-password-env {name}: the environment variable {name} is not set; export it "
                             "with the Wi-Fi password, or leave the option out for an open network")
        password = os.environ[name]
    return LinkSettings(getattr(args, "wifi_ssid", ""), password, getattr(args, "host", ""),
                        getattr(args, "uart", None), getattr(args, "baud", None))


def run_firmware(args: Any) -> int:
    from tinysplit.firmware.generate import generate_project, generate_tflite_project

    check_model_source(args, bundle_only=("transport", "udp_port"))
    link = link_settings(args)
    if args.tflite is not None:
        if getattr(args, "keys", None) is not None:
            raise InputError("--keys is for method apps, which need a --bundle; a --tflite project speaks no wire "
                             "protocol")
        project, sources, name = generate_tflite_project(Path(args.tflite), args.board, Path(args.out), args.app,
                                                         link=link, stream=args.stream_blocks,
                                                         kernels=args.kernels)
    else:
        key, options = None, {}
        if args.keys is not None or args.device_id != 1 or args.transport is not None or args.udp_port is not None:
            from tinysplit.firmware.apps import get_app

            if get_app(args.app).method is None:
                raise InputError(f"--keys, --device-id, --transport and --udp-port are for method apps (the device "
                                 f"side of a split); app '{args.app}' takes none of them")
            options["device_id"] = args.device_id
            if args.transport is not None:
                options["transport"] = args.transport
            if args.udp_port is not None:
                options["udp_port"] = args.udp_port
        if args.keys is not None:
            from tinysplit.keys import load_keys

            keys = load_keys(args.keys)
            if args.device_id not in keys:
                raise InputError(f"key file '{args.keys}' has no key for device {args.device_id} (it has "
                                 f"{sorted(keys)}); add one with 'tinysplit keys create --file {args.keys} --device "
                                 f"{args.device_id}'")
            key = keys[args.device_id].key
        project, sources, _, dm = generate_project(Path(args.bundle), args.board, Path(args.out), args.model, args.app,
                                                   device_key=key, link=link, stream=args.stream_blocks,
                                                   kernels=args.kernels,
                                                   **options)
        name = dm.name
    board_name = args.board
    f = project.fit
    print(f"project for '{name}' on {board_name} (app {args.app}) written to {project.dir}")
    print(f"  estimate: RAM {kib(f.ram_needed)} of {kib(f.ram_available)}, "
          f"flash {kib(f.flash_needed)} of {kib(f.flash_available)}")
    if getattr(args, "keys", None) is not None:
        print(f"  authenticated frames: device {args.device_id}'s key is in {project.dir}/src/ts_device_key.c "
              "(mode 0600): keep this project private")
    from tinysplit.boards import get_board
    from tinysplit.firmware.project import project_builder

    board = get_board(board_name)
    if project_builder(board) == "idf.py":
        print(f"  ESP-IDF project: cd {project.dir} && idf.py set-target {board.idf.target if board.idf else '?'} "
              "&& idf.py build flash (ESP-IDF v5.x; docs/esp32.md)")
        if link.wifi_password:
            print(f"  the Wi-Fi password is in {project.dir}/sdkconfig.defaults (mode 0600): keep this project private")
        return 0
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


# --- flash ----------------------------------------------------------------------------------------

def add_flash(sub: Any) -> None:
    p = sub.add_parser("flash", help="flash a built project onto its real board (pyOCD, esptool or idf.py)",
                       description="Flash PROJECT onto its board with the tool its board file names: pyOCD with "
                                   "the board's pyOCD target type for Cortex-M boards, esptool or idf.py for the "
                                   "ESP32 family. pyocd and esptool come with pip install 'tinysplit[flash]'.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--dry-run", action="store_true", help="print the exact command and run nothing")
    p.add_argument("--probe", metavar="ID",
                   help="pyOCD: the probe's unique id ('pyocd list'); esptool/idf.py: the serial port "
                        "(default: the tool picks the only one attached)")


def run_flash(args: Any) -> int:
    import subprocess

    from tinysplit import children
    from tinysplit.firmware.flash import flash_plan, require_flasher

    plan = flash_plan(args.project, args.probe)
    if args.dry_run:
        print(f"cd {plan.cwd} && {plan.command_line()}" if plan.cwd != Path(args.project) else plan.command_line())
        return 0
    require_flasher(plan)
    print(f"flashing {args.project} with {plan.tool} (target {plan.target})", file=sys.stderr)
    proc = children.spawn(list(plan.argv), cwd=plan.cwd, stdin=subprocess.DEVNULL)
    try:
        code = proc.wait()
    finally:
        children.stop(proc)
    if code != 0:
        print(f"tinysplit: error: {plan.tool} exited with status {code} (command: {plan.command_line()})",
              file=sys.stderr)
        return 1
    return 0


# --- hil ------------------------------------------------------------------------------------------

def add_hil(sub: Any) -> None:
    p = sub.add_parser("hil", help="hardware-in-the-loop check in QEMU against TFLite Micro",
                       description="Generate C for the device model (a bundle's, or any int8 .tflite file), build "
                                   "it for BOARD, run it in QEMU on N inputs streamed over the emulated UART, and "
                                   "compare every output value with the TFLite Micro runtime on the same inputs. "
                                   "Inputs: a bundle's held-out inputs; for --tflite, random int8 values (uniform "
                                   "over -128..127, numpy default_rng(--seed)) or --inputs. Instruction counts are "
                                   "exact (QEMU -icount and the board's timer).")
    add_model_board_args(p)
    p.add_argument("--samples", type=int, default=100, metavar="N",
                   help="inputs to run (default 100; at most as many as the bundle or --inputs holds)")
    p.add_argument("--inputs", metavar="FILE.npy",
                   help="with --tflite: inputs of shape (N, H, W, C), NHWC like the model's input; int8 values "
                        "are used as they are, float values are quantized with the model's input scale and zero point")
    p.add_argument("--seed", type=int, metavar="S",
                   help="with --tflite and no --inputs: seed of the random int8 inputs (default 0)")
    p.add_argument("--keep", metavar="DIR", help="keep the generated project under DIR")
    p.add_argument("--emulator", choices=["qemu", "renode"], default="qemu",
                   help="qemu (default), or renode for a board Renode models: runs the project's renode/hil.robot "
                        "with renode-test (Renode must be installed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    from tinysplit.firmware.e2e import add_e2e_arguments

    add_e2e_arguments(p)


def run_hil(args: Any) -> int:
    from tinysplit.firmware.hilcheck import hil_check
    from tinysplit.firmware.source import DEFAULT_SEED, bundle_source, tflite_source

    if args.samples < 1:
        raise InputError(f"--samples must be at least 1, got {args.samples}")
    check_model_source(args, bundle_only=("e2e",), tflite_only=("inputs", "seed"))
    if args.inputs is not None and args.seed is not None:
        raise InputError("--seed draws random inputs; with --inputs FILE there is nothing to draw: give one of them")
    keep = Path(args.keep) if args.keep else None
    if getattr(args, "kernels", "auto") != "auto" and (getattr(args, "emulator", "qemu") == "renode" or args.e2e):
        raise InputError("--kernels goes with the QEMU check (no --emulator renode, no --e2e): those generate "
                         "their firmware with the board's default kernel set")
    if getattr(args, "kernels", "auto") != "auto":
        from tinysplit.boards import get_board
        from tinysplit.firmware.kernelsets import choose_kernel_set

        choose_kernel_set(get_board(args.board), args.kernels)
    if not getattr(args, "stream_blocks", True) and (getattr(args, "emulator", "qemu") == "renode" or args.e2e):
        raise InputError("--no-stream-blocks goes with the QEMU check (no --emulator renode, no --e2e): those "
                         "generate their firmware with the default (streamed blocks)")
    if getattr(args, "emulator", "qemu") == "renode":
        from tinysplit.firmware.renode import run_renode_hil

        return run_renode_hil(args, keep)
    if args.e2e:
        from tinysplit.firmware.e2e import format_e2e, run_e2e_for_bundle

        r = run_e2e_for_bundle(Path(args.bundle), args.board, args.samples, args.transport, args, keep, args.model)
        emit_json(r) if args.json else print(format_e2e(r))
        return 0 if r["ok"] else 5
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    if args.tflite is not None:
        seed = DEFAULT_SEED if args.seed is None else args.seed
        source = tflite_source(args.tflite, args.samples, args.inputs, seed)
    else:
        source = bundle_source(args.bundle, args.samples, args.model)
    r = hil_check(source, args.board, keep, Progress(args.quiet), stream=getattr(args, "stream_blocks", True),
                  kernels=getattr(args, "kernels", "auto"))
    if args.json:
        emit_json(r.to_json())
    else:
        print(f"{r.board}: '{r.model}' on {r.samples} inputs ({r.inputs}): {100 * r.identical_fraction:.2f}% of "
              f"{r.values_compared:,} output values identical to TFLite Micro (max diff {r.max_lsb_diff} LSB)")
        print(f"  {r.instructions_per_inference:,} instructions per inference "
              f"({r.instructions_min:,}..{r.instructions_max:,}); flash {kib(r.flash_bytes)}, RAM {kib(r.ram_bytes)}; "
              f"arena {r.arena_bytes:,} B (TFLite Micro {r.tflm_arena_bytes:,} B)")
    return 0 if r.identical_fraction == 1.0 else 5


# --- profile --------------------------------------------------------------------------------------

def add_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="instructions, MACs, arena and flash per operator of a model on an emulated "
                                       "board",
                       description="Generate C for the device model (a bundle's, or any int8 .tflite file) with a "
                                   "profiling mark after every kernel call, build it for BOARD, run one input in QEMU "
                                   "and print, per TFLite operator: exact instructions (QEMU -icount), percent, "
                                   "MACs and instructions per MAC, the arena bytes live and the flash bytes of its "
                                   "constants and parameters. The counter's and the marks' own cost is measured and "
                                   "subtracted; the total row is the whole invoke less that stated overhead. The "
                                   "output is compared with TFLite Micro. The normal firmware has no marks.")
    add_model_board_args(p)
    p.add_argument("--inputs", metavar="FILE.npy", help="with --tflite: take the first input of this file "
                   "(as 'tinysplit hil --inputs')")
    p.add_argument("--seed", type=int, metavar="S",
                   help="with --tflite and no --inputs: seed of the random int8 input (default 0)")
    p.add_argument("--runs", type=int, default=2, metavar="N",
                   help="run the input N times, each in a fresh QEMU, and require identical counts (default 2)")
    p.add_argument("--keep", metavar="DIR", help="keep the generated project under DIR")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run_profile(args: Any) -> int:
    from tinysplit.firmware.profile import check_profile_board, format_report, profile_model
    from tinysplit.firmware.source import DEFAULT_SEED, bundle_source, tflite_source

    check_model_source(args, tflite_only=("inputs", "seed"))
    if args.inputs is not None and args.seed is not None:
        raise InputError("--seed draws a random input; with --inputs FILE there is nothing to draw: give one of them")
    if args.runs < 1:
        raise InputError(f"--runs must be at least 1, got {args.runs}")
    check_profile_board(args.board)
    keep = Path(args.keep) if args.keep else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    if args.tflite is not None:
        source = tflite_source(args.tflite, 1, args.inputs, DEFAULT_SEED if args.seed is None else args.seed)
    else:
        source = bundle_source(args.bundle, 1, args.model)
    r = profile_model(source, args.board, keep, Progress(args.quiet), stream=args.stream_blocks, runs=args.runs,
                      kernels=args.kernels)
    if args.json:
        emit_json(r.to_json())
    else:
        print(format_report(r))
    return 0 if r.identical_to_tflm else 5


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "boards": (add_boards, run_boards),
    "firmware": (add_firmware, run_firmware),
    "build": (add_build, run_build),
    "run": (add_run, run_run),
    "flash": (add_flash, run_flash),
    "hil": (add_hil, run_hil),
    "profile": (add_profile, run_profile),
}
