"""``tinysplit rebel-eval``: ReBEL's variants and early classifiers on a trained split model, float and int8.

A ``COMMANDS`` table like NAIR's (``tinysplit.methods.METHODS["rebel"].commands``); this module never
imports the CLI and its parser imports nothing heavy. Also runnable as
``python -m tinysplit.methods.rebel.command --example digits --out DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tinysplit.errors import InputError


def add_rebel_eval(sub: Any) -> None:
    from tinysplit.methods.rebel.variants import VARIANTS

    p = sub.add_parser("rebel-eval", help="ReBEL: early classifiers at equal coverage, float and int8",
                       description="Inject a variational bottleneck (Head1 on the device, Head2 on the host) into a "
                                   "trained split model, train each variant (GMC full/diag/projected, linear, with "
                                   "and without the KL regularization, bottleneck only), fit k-means and k-NN on "
                                   "the latents, and report local/remote/overall accuracy at equal coverage; export "
                                   "Head1 + GMC to one int8 device model and compare it with the float pipeline. "
                                   "Writes DIR/rebel_eval.json, DIR/rebel_eval.png and DIR/bundles/.")
    p.add_argument("--example", choices=["digits"], required=True, help="the built-in digits example")
    p.add_argument("--out", required=True, metavar="DIR", help="results directory (created; files replaced)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    p.add_argument("--epochs", type=int, default=40, help="joint training epochs (default 40)")
    p.add_argument("--finetune-epochs", type=int, default=10, help="Head2 + Tail fine-tuning epochs (default 10)")
    p.add_argument("--train-epochs", type=int, default=30, help="training epochs of the example (default 30)")
    p.add_argument("--latent", type=int, default=16, help="bottleneck size D (default 16)")
    p.add_argument("--components", type=int, default=4, help="GMC components per class K (default 4)")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.001, help="KL weight of the regularized variants (default 0.001)")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--mimic", choices=["mean", "sum"], default="mean",
                   help="mimic loss: mean (default) or sum of squared errors over H(x)'s elements")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-export", action="store_true", help="float only: skip the int8 export")
    p.add_argument("--no-one-output-cost", action="store_true",
                   help="skip the two extra exports that measure the cost of the shared output")
    g = p.add_argument_group("deployment costs (with the int8 export)")
    g.add_argument("--board", default="qemu-mps2-an386",
                   help="board whose QEMU instruction count stands for the device (default qemu-mps2-an386, a "
                        "Cortex-M4); 'none' skips the firmware build")
    g.add_argument("--clock-mhz", type=float, default=64.0,
                   help="device clock for the latency, one instruction per cycle (default 64)")
    g.add_argument("--rate-kbps", type=float, default=250.0, help="link rate for the latency (default 250)")
    g.add_argument("--overhead-ms", type=float, default=0.0, help="fixed delay per transfer (default 0)")
    g.add_argument("--devices", type=int, default=100, help="fleet size for the network-load table (default 100)")
    g.add_argument("--samples-per-s", type=float, default=25.0, help="samples per second per device (default 25)")
    g.add_argument("--fleet-coverages", default="0.23,0.49",
                   help="ReBEL coverages for the fleet table (default the paper's 0.23,0.49)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run_rebel_eval(args: Any) -> int:
    from tinysplit.methods.rebel.variants import VARIANTS

    if args.epochs < 1 or args.finetune_epochs < 0 or args.latent < 1 or args.components < 1:
        raise InputError("--epochs, --latent and --components must be >= 1, --finetune-epochs >= 0")
    costs = cost_config(args)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise InputError(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    variants = {n: VARIANTS[n] for n in names}  # the _noreg and hnd variants set beta 0; the others use --beta
    import torch

    from tinysplit.console import Progress
    from tinysplit.methods.rebel.evaluate import digits_rebel_spec, evaluate
    from tinysplit.methods.rebel.train import RebelConfig

    torch.set_num_threads(1)
    progress = Progress(args.quiet)
    progress(f"training the digits example ({args.train_epochs} epochs)")
    spec = digits_rebel_spec(args.train_epochs, args.latent)
    base = RebelConfig(components=args.components, alpha=args.alpha, beta=args.beta, gamma=args.gamma,
                       mimic=args.mimic, epochs=args.epochs, finetune_epochs=args.finetune_epochs, seed=args.seed)
    report = evaluate(spec, Path(args.out), variants, base, export=not args.no_export,
                      one_output_cost=not args.no_one_output_cost, progress=progress, costs=costs)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(format_table(report))
    print(f"plot: {Path(args.out) / 'rebel_eval.png'}  data: {Path(args.out) / 'rebel_eval.json'}")
    return 0


def cost_config(args: Any):
    """The CostConfig of rebel-eval's flags; InputError naming the flag that is out of range."""
    from tinysplit.link import LinkModel
    from tinysplit.methods.rebel.costs import CostConfig

    try:
        cov = tuple(float(c) for c in args.fleet_coverages.split(",") if c.strip())
    except ValueError:
        raise InputError(f"--fleet-coverages must be comma-separated numbers in [0, 1], got '{args.fleet_coverages}'")
    if not cov or any(not 0 <= c <= 1 for c in cov):
        raise InputError(f"--fleet-coverages must be comma-separated numbers in [0, 1], got '{args.fleet_coverages}'")
    if not args.clock_mhz > 0 or not args.rate_kbps > 0 or args.overhead_ms < 0:
        raise InputError("--clock-mhz and --rate-kbps must be > 0 and --overhead-ms >= 0")
    if args.devices < 1 or not args.samples_per_s > 0:
        raise InputError("--devices must be >= 1 and --samples-per-s > 0")
    board = None if args.board == "none" else args.board
    if board is not None:
        from tinysplit.boards import board_names

        if board not in board_names():
            raise InputError(f"--board: unknown board '{board}'; choose one of {', '.join(board_names())} or none")
    return CostConfig(board=board, clock_hz=args.clock_mhz * 1e6,
                      link=LinkModel(args.rate_kbps * 1000, args.overhead_ms / 1000),
                      devices=args.devices, samples_per_s=args.samples_per_s, fleet_coverages=cov)


def format_costs(c: dict, latent: int) -> list[str]:
    from tinysplit.methods.rebel.costs import EARLY_LABEL_PAYLOAD, format_fleet, frame_bytes

    lines = []
    d = c.get("device")
    if d:
        lines.append(f"device model as generated C on {d['board']}: {d['instructions_per_inference']:,} instructions "
                     f"per inference ({d['ms_at_clock']:.2f} ms at {c['clock_hz'] / 1e6:g} MHz), flash "
                     f"{d['flash_bytes']:,} B, RAM {d['ram_bytes']:,} B (arena {d['arena_bytes']:,} B; TFLite Micro's "
                     f"{d['tflm_arena_bytes']:,} B), outputs equal TFLite Micro's: {100 * d['identical_fraction']:.0f}%")
    link = c["link"]
    lines.append(f"end-to-end latency (ms): device at {c['clock_hz'] / 1e6:g} MHz + a {link['rate_bps'] / 1000:g} kbit/s "
                 f"link (+{link['overhead_ms']:g} ms per frame) + host Head2 + Tail {c['host_ms_per_latent']:.3f} ms "
                 f"(measured here); a label frame {frame_bytes(EARLY_LABEL_PAYLOAD)} B, a latent frame "
                 f"{frame_bytes(latent)} B")
    lines.append(f"{'threshold':>10}{'coverage':>10}{'early':>9}{'remote':>9}{'mean':>9}")
    for t, r in sorted(c["latency"].items(), key=lambda kv: float(kv[0])):
        lines.append(f"{t:>10}{100 * r['coverage']:>9.2f}%{r['early_ms']:>9.2f}{r['remote_ms']:>9.2f}{r['mean_ms']:>9.2f}")
    lines.append(format_fleet(c["fleet"]["rows"], c["fleet"]["devices"], c["fleet"]["samples_per_s"]))
    return lines


def format_table(report: dict) -> str:
    covs = report["coverages"]
    pick = [i for i, c in enumerate(covs) if c in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)]
    lines = [f"{report['name']}: base model {100 * (report['base_accuracy'] or 0):.2f}%, latent {report['latent']} "
             f"values ({report['heldout_samples']} held-out samples)",
             "local (early) accuracy (%) at coverage; remote = Head2 + Tail on the same latent (float)",
             f"{'classifier':14}{'remote':>8}" + "".join(f"{int(round(100 * covs[i])):>7}%" for i in pick)]
    for name, r in report["classifiers"].items():
        if "local_accuracy_at_coverage" not in r:
            lines.append(f"{name:14}{100 * r['remote_accuracy']:>8.2f}   (no early classifier)")
            continue
        la = r["local_accuracy_at_coverage"]
        lines.append(f"{name:14}{100 * r['remote_accuracy']:>8.2f}" + "".join(f"{100 * la[i]:>8.2f}" for i in pick))
    q = report.get("int8")
    if q:
        lines.append(f"int8 device model ({', '.join(q['ops'])}; flash {q['flash_bytes']} B, arena {q['arena_bytes']} B): "
                     f"early label agreement {100 * q['early_label_agreement']:.2f}%, remote label agreement "
                     f"{100 * q['remote_label_agreement']:.2f}%")
        lines.append(f"{'threshold':>10}{'path agr.':>11}{'final agr.':>11}{'cov int8':>10}{'cov float':>10}"
                     f"{'overall int8':>13}{'overall float':>14}")
        for t, r in sorted(q["thresholds"].items(), key=lambda kv: float(kv[0])):
            lines.append(f"{t:>10}{100 * r['path_agreement']:>11.2f}{100 * r['final_label_agreement']:>11.2f}"
                         f"{100 * r['coverage_int8']:>10.2f}{100 * r['coverage_float']:>10.2f}"
                         f"{100 * r['overall_accuracy_int8']:>13.2f}{100 * r['overall_accuracy_float']:>14.2f}")
    dep = (q or {}).get("deployed")
    if dep:
        pct = lambda v: f"{100 * v:.2f}" if v is not None else "-"
        lines.append("as deployed (device rule on the TFLite Micro output, host tail on z; tinysplit.methods.rebel."
                     "reference):")
        lines.append(f"{'threshold':>10}{'q_t':>6}{'coverage':>10}{'local':>8}{'remote':>8}{'overall':>9}{'B/sample':>10}")
        for t, r in sorted(dep.items(), key=lambda kv: float(kv[0])):
            lines.append(f"{t:>10}{r['threshold_q']:>6}{pct(r['coverage']):>10}{pct(r['local_accuracy']):>8}"
                         f"{pct(r['remote_accuracy']):>8}{pct(r['overall_accuracy']):>9}{r['bytes_per_sample']:>10.2f}")
        w = q["int8_curve"]["coverage_within_2_points"]
        lines.append(f"largest coverage with overall accuracy within 2 points of remote-only "
                     f"({100 * w['remote_accuracy']:.2f}%): {100 * w['coverage']:.2f}% (overall "
                     f"{100 * w['overall_accuracy']:.2f}%)")
    if q and q.get("costs"):
        lines += format_costs(q["costs"], report["latent"])
    return "\n".join(lines)


COMMANDS = {"rebel-eval": (add_rebel_eval, run_rebel_eval)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tinysplit.errors import TinysplitError

    parser = argparse.ArgumentParser(prog="python -m tinysplit.methods.rebel.command")
    sub = parser.add_subparsers(dest="cmd")
    add_rebel_eval(sub)
    args = parser.parse_args(["rebel-eval", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_rebel_eval(args)
    except TinysplitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
