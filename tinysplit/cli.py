"""The ``tinysplit`` command. The only place that exits the process or maps errors to exit codes.

Exit codes: 0 success; 2 bad input or usage; 3 unsupported model; 4 conversion failed;
5 verification failed; 6 toolchain missing; 70 internal error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Callable

from tinysplit import __version__
from tinysplit.errors import InputError, TinysplitError

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class Progress:
    """Progress lines on stderr with elapsed time; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[tinysplit {time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- export ---------------------------------------------------------------------------------------

def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export trained PyTorch device pieces to a verified int8 bundle",
                       description="Convert device pieces (torch -> ONNX -> TFLite int8), export host tails "
                                   "to ONNX, verify (int8 vs float, TFLite Micro vs TFLite reference, "
                                   "measured arena) and write a bundle directory with manifest.json and "
                                   "report.json.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--example", choices=["digits", "digits-classifier", "mobilenet"],
                     help="a built-in example, no download: digits (trains in seconds; head on the device, tail "
                          "on the host), digits-classifier (the whole network on the device), mobilenet (a "
                          "CIFAR-shaped MobileNetV2-style head with seeded weights, synthetic data)")
    src.add_argument("--spec", metavar="FILE.py[:FUNC]",
                     help="a Python file or module whose function (default: build) returns an ExportSpec")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory to create (must not exist)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists (only once the new bundle is whole)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs for --example (default 30)")
    p.add_argument("--json", action="store_true", help="print the report's summary as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _run_export(args) -> int:
    from pathlib import Path

    from tinysplit.exporter.bundle import check_out_dir

    progress = Progress(args.quiet)
    check_out_dir(Path(args.out).resolve(), args.force)  # before any training or conversion
    if args.example == "mobilenet":
        from tinysplit.examples.mobilenet import mobilenet_spec

        progress("building the MobileNetV2-style example (seeded weights, synthetic 32x32x3 data)")
        spec, _ = mobilenet_spec()
    elif args.example:
        if args.epochs < 1:
            raise _usage("--epochs must be at least 1")
        progress(f"training the '{args.example}' example ({args.epochs} epochs)")
        from tinysplit.examples.digits import digits_spec

        spec, trained = digits_spec(args.example, epochs=args.epochs)
        progress(f"trained: float accuracy on the held-out split {100 * trained.heldout_accuracy:.2f}%")
    else:
        from tinysplit.specfile import load_export_spec

        progress(f"loading export spec from {args.spec}")
        spec = load_export_spec(args.spec)
    from tinysplit.exporter import export_bundle

    result = export_bundle(spec, args.out, force=args.force, progress=progress)
    rep = result.report
    if args.json:
        emit_json({"bundle": str(result.bundle_dir), "bundle_id": result.manifest.bundle_id,
                   **{k: rep[k] for k in ("int8", "tflm", "model", "ops")}})
    elif not args.quiet:
        print((result.bundle_dir / "report.txt").read_text(), end="")
        print(f"bundle written to {result.bundle_dir}")
    return 0


# --- demo ---------------------------------------------------------------------------------------

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo: digits, NAIR, firmware in QEMU, host server",
                       description="Train a small CNN on scikit-learn's 8x8 digits (shipped with the package: no "
                                   "download), NAIR re-tune it, export int8 bundles, generate and build firmware "
                                   "for qemu-mps2-an386, run it in QEMU streaming importance-ordered slices to the "
                                   "host tail server at several budgets, and print accuracy per budget beside the "
                                   "unordered baseline. Results go to DIR (default ./tinysplit-demo); a previous "
                                   "demo's results there are replaced.")
    p.add_argument("--out", default="tinysplit-demo", metavar="DIR", help="where results go (default ./tinysplit-demo)")
    p.add_argument("--quick", action="store_true", help="short training, 60 samples, 3 budgets (CI)")
    p.add_argument("--transport", choices=["udp", "uart"], default="udp", help="device -> host link (default udp)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _run_demo(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from tinysplit.demo import DemoConfig, format_demo, run_demo

    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' exists and is not a directory; choose another path")
    cfg = DemoConfig.quick(out) if args.quick else DemoConfig(out)
    result = run_demo(replace(cfg, transport=args.transport), Progress(args.quiet))
    if args.json:
        emit_json(result)
    else:
        print(format_demo(result))
    return 0 if result["ok"] else 5


# --- inspect --------------------------------------------------------------------------------------

def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="validate a bundle and show its manifest and report",
                       description="Validate BUNDLE/manifest.json against its schema and the files' sha256, "
                                   "then print a summary (or the manifest and report as JSON).")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--json", action="store_true", help="print {manifest, report} as JSON")


def _run_inspect(args) -> int:
    from pathlib import Path

    from tinysplit.manifest import load_manifest

    m = load_manifest(args.bundle)
    rep_path = Path(args.bundle) / "report.json"
    rep = json.loads(rep_path.read_text()) if rep_path.is_file() else None
    if args.json:
        emit_json({"manifest": m.to_json(), "report": rep})
        return 0
    print(f"bundle '{m.name}' id {m.bundle_id}, method {m.method}, manifest v{m.version} "
          f"(tinysplit {m.tinysplit_version}), input NCHW {list(m.input.shape_nchw)}")
    for d in m.device_models:
        io = ", ".join(f"{t.name} {list(t.shape)} s={t.scale:.4g} zp={t.zero_point}" for t in (*d.inputs, *d.outputs))
        print(f"  device '{d.name}' ({d.kind}) {d.file}: {d.flash_bytes:,} B, arena {d.arena_bytes:,} B, "
              f"ops {' '.join(d.ops)}; {io}")
    for t in m.host_tails:
        print(f"  host tail '{t.name}' {t.file} <- {', '.join(t.consumes)}")
    report_txt = Path(args.bundle) / "report.txt"
    if report_txt.is_file():
        print(report_txt.read_text(), end="")
    return 0


# --- registry and entry point ---------------------------------------------------------------------

# Commands that live beside their stage; each module imports only light things at top level.
from tinysplit.firmware import commands as _fw  # noqa: E402
from tinysplit.host_server import command as _serve_command  # noqa: E402
from tinysplit.methods import command as _nair_command  # noqa: E402

COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "demo": (_add_demo, _run_demo),
    "export": (_add_export, _run_export),
    "inspect": (_add_inspect, _run_inspect),
    "boards": _fw.COMMANDS["boards"],
    "firmware": _fw.COMMANDS["firmware"],
    "build": _fw.COMMANDS["build"],
    "run": _fw.COMMANDS["run"],
    "hil": _fw.COMMANDS["hil"],
    "serve": (_serve_command.add_parser, _serve_command.run),
    "nair-eval": (_nair_command.add_parser, _nair_command.run),
}


class _UsageError(Exception):
    pass


def _usage(msg: str) -> _UsageError:
    return _UsageError(msg)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinysplit", description="Split-computing models to microcontroller "
                                "firmware (int8, bit-exact with TFLite Micro) and a host tail server.")
    p.add_argument("--version", action="version", version=f"tinysplit {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][1](args)
    except _UsageError as e:
        parser.error(str(e))  # exits 2
    except TinysplitError as e:
        if args.verbose:
            logging.exception("error")
        print(f"tinysplit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinysplit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: say so, keep the traceback one flag away
        if args.verbose:
            logging.exception("internal error")
        print(f"tinysplit: internal error: {type(e).__name__}: {e} (rerun with -v for the traceback; "
              "please report it)", file=sys.stderr)
        return EXIT_INTERNAL
    return 0
