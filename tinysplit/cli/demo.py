"""``tinysplit demo``: the whole path on the digits example, on an emulated board."""

from __future__ import annotations

from tinysplit.console import Progress, emit_json
from tinysplit.errors import InputError


# --- demo ---------------------------------------------------------------------------------------

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo: digits, NAIR and ReBEL, firmware in QEMU, host server",
                       description="Train a small CNN on scikit-learn's 8x8 digits (shipped with the package: no "
                                   "download), NAIR re-tune it, export int8 bundles, generate and build firmware "
                                   "for qemu-mps2-an386, run it in QEMU streaming importance-ordered slices to the "
                                   "host tail server at several budgets, and print accuracy per budget beside the "
                                   "unordered baseline. Then ReBEL on the same model: a bottleneck Head1 with a "
                                   "Gaussian mixture early classifier as one int8 device model, its firmware in QEMU "
                                   "at several thresholds (early labels on the device, latents to the host tail "
                                   "server), and coverage with local, remote and overall accuracy per threshold. "
                                   "Results go to DIR (default ./tinysplit-demo); a previous demo's results there "
                                   "are replaced.")
    p.add_argument("--out", default="tinysplit-demo", metavar="DIR", help="where results go (default ./tinysplit-demo)")
    p.add_argument("--quick", action="store_true", help="short training, 60 samples, 3 budgets and thresholds (CI)")
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



COMMANDS = {"demo": (_add_demo, _run_demo)}
