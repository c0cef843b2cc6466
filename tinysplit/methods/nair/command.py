"""``tinysplit nair-eval``: NAIR accuracy vs bandwidth for every variant, as deployed (int8)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tinysplit.errors import InputError


def add_nair_eval(sub: Any) -> None:
    from tinysplit.methods.nair.variants import ALL_VARIANTS, VARIANTS

    p = sub.add_parser("nair-eval", help="NAIR: accuracy vs units sent and vs link latency, per variant",
                       description="Apply each NAIR variant (original order, L1 order, plain sum of slice "
                                   "losses, + penalty, full NAIR with importance weights) to a trained split "
                                   "model, export each to int8, and measure held-out accuracy at every budget "
                                   "with the TFLite Micro head, zero-filled missing units and the ONNX tail. "
                                   "Writes DIR/nair_eval.json, DIR/nair_eval.png and DIR/bundles/<variant>.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--example", choices=["digits"], help="the built-in digits example")
    src.add_argument("--spec", metavar="FILE.py[:FUNC]", help="a function (default: build) returning a NairSpec")
    p.add_argument("--out", required=True, metavar="DIR", help="results directory (created; files replaced)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated subset of {','.join(ALL_VARIANTS)} (default: {','.join(VARIANTS)})")
    p.add_argument("--epochs", type=int, default=3, help="re-tuning epochs per variant (default 3)")
    p.add_argument("--train-epochs", type=int, default=30, help="training epochs of the example (default 30)")
    p.add_argument("--w-non", type=float, default=2.0, help="exponent of the importance weights (default 2)")
    p.add_argument("--lam", type=float, help="penalty weight lambda (default: 5%% of the starting loss)")
    p.add_argument("--lr", type=float, default=1e-3, help="re-tuning learning rate (Adam, default 1e-3)")
    p.add_argument("--cosine", action="store_true", help="anneal the re-tuning learning rate to 0 (cosine)")
    p.add_argument("--freeze-bn-stats", action="store_true",
                   help="BatchNorm layers normalize with their trained statistics while re-tuning (default: "
                        "batch statistics, as in training)")
    p.add_argument("--slice-samples", type=int, metavar="K",
                   help="send each image through K slice counts drawn by weight instead of all of them: an "
                        "unbiased estimate of the re-tuning loss at K/units of the tail's cost (big models)")
    p.add_argument("--rate-kbps", type=float, default=250.0, help="link rate for latency (default 250, the paper's)")
    p.add_argument("--overhead-ms", type=float, default=0.0, help="fixed per-sample latency overhead (default 0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run_nair_eval(args: Any) -> int:
    from tinysplit.console import Progress
    from tinysplit.methods.nair.order import RetuneConfig
    from tinysplit.methods.nair.evaluate import LinkModel, NairSpec, digits_nair_spec, evaluate

    if (args.epochs < 1 or args.rate_kbps <= 0 or args.overhead_ms < 0 or args.lr <= 0
            or (args.slice_samples is not None and args.slice_samples < 1)):
        raise InputError("--epochs and --slice-samples must be >= 1, --rate-kbps and --lr > 0, --overhead-ms >= 0")
    progress = Progress(args.quiet)
    if args.example:
        progress(f"training the digits example ({args.train_epochs} epochs)")
        spec = digits_nair_spec(args.train_epochs)
    else:
        from tinysplit.specfile import call_spec_factory, load_spec_factory

        spec = call_spec_factory(load_spec_factory(args.spec), args.spec)
        if not isinstance(spec, NairSpec):
            raise InputError(f"'{args.spec}' returned {type(spec).__name__}; it must return "
                             "tinysplit.methods.nair.evaluate.NairSpec")
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    config = RetuneConfig(epochs=args.epochs, lr=args.lr, w_non=args.w_non, lam=args.lam,
                          slice_samples=args.slice_samples, cosine=args.cosine,
                          freeze_bn_stats=args.freeze_bn_stats)
    report = evaluate(spec, Path(args.out), variants, config,
                      LinkModel(args.rate_kbps * 1000, args.overhead_ms / 1000), progress)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(format_table(report))
    print(f"plot: {Path(args.out) / 'nair_eval.png'}  data: {Path(args.out) / 'nair_eval.json'}")
    return 0


def format_table(report: dict) -> str:
    units = report["units_total"]
    cols = sorted({1, max(1, units // 8), max(1, units // 4), max(1, units // 2), units})
    lat = report["latency_ms"]
    head = "variant    " + "".join(f"{str(b) + '/' + str(units) + ' u':>10}" for b in cols)
    sub = "           " + "".join(f"{format(lat[b - 1], '.1f') + ' ms':>10}" for b in cols)
    lines = [f"held-out top-1 accuracy (%) of the int8 device path at units sent "
             f"(latency on a {report['link']['rate_bps'] / 1000:g} kbps link):", head, sub]
    lines[1] += f"{'tail params':>13}"
    for v, r in report["variants"].items():
        lines.append(f"{v:11}" + "".join(f"{100 * r['accuracy'][b - 1]:>10.2f}" for b in cols)
                     + f"{r['retune'].get('tail_parameters', 0):>13,}")
    return "\n".join(lines)


COMMANDS = {"nair-eval": (add_nair_eval, run_nair_eval)}
