"""``tinysplit rocoin-plan``: RoCoIn's knowledge assignment for a fleet, printed and saved as JSON.

A ``COMMANDS`` table like the other methods'; this module never imports the CLI and its parser
imports nothing heavy. Until RoCoIn is in ``tinysplit.methods.METHODS`` (it needs its firmware app
and host assembler first), the CLI lists this module among its own command modules. Also runnable
as ``python -m tinysplit.methods.rocoin.command --fleet ... --out plan.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tinysplit.errors import InputError

DEFAULT_D_TH = 0.25
DEFAULT_P_TH = 0.25  # the paper's Fig. 5 setting
CACHE_NAME = "rocoin-profiles.json"


def add_rocoin_plan(sub: Any) -> None:
    p = sub.add_parser("rocoin-plan", help="RoCoIn: group a fleet, partition the teacher's filters, assign students",
                       description="Group the fleet's devices by follow-the-leader (d_th, p_th), split the teacher's "
                                   "final-conv filters into one partition per group by normalized cut of their "
                                   "co-activation graph, and match groups with partitions by Kuhn-Munkres, each "
                                   "group running the best student of the zoo that fits its smallest device (flash "
                                   "and arena as the code generator reports them; instructions per inference "
                                   "measured in QEMU on each board, cached). Prints the plan and writes it as JSON.")
    p.add_argument("--fleet", required=True, metavar="FLEET.yaml", help="the devices (YAML or JSON; docs/rocoin.md)")
    p.add_argument("--activations", required=True, metavar="ACT.npy",
                   help="the teacher's final conv layer on validation images: (N, M) mean activations, or "
                        "(N, M, H, W) output maps (NCHW; NHWC with --channels-last), after the layer's ReLU")
    p.add_argument("--channels-last", action="store_true", help="--activations is (N, H, W, M)")
    p.add_argument("--students", required=True, nargs="+", metavar="NAME=FILE.tflite",
                   help="the student zoo: int8 .tflite files the code generator supports")
    p.add_argument("--out", required=True, metavar="PLAN.json", help="where to write the plan (replaced)")
    p.add_argument("--d-th", type=float, default=DEFAULT_D_TH,
                   help=f"grouping distance threshold on normalized (RAM, flash, clock) (default {DEFAULT_D_TH})")
    p.add_argument("--p-th", type=float, default=DEFAULT_P_TH,
                   help=f"a group takes replicas until its failure probability is <= p_th (default {DEFAULT_P_TH})")
    p.add_argument("--partitions", type=int, metavar="K",
                   help="insist on K partitions (the grouping must form K groups; default: as many as it forms)")
    p.add_argument("--seed", type=int, default=0, help="spectral clustering's seed (default 0)")
    p.add_argument("--assign-labels", choices=["kmeans", "cluster_qr"], default="kmeans",
                   help="how the spectral embedding becomes parts: k-means as the paper (default) or cluster_qr")
    p.add_argument("--normalize", action="store_true", help="divide each image's activations by their maximum (NoNN)")
    p.add_argument("--top", type=int, metavar="N", help="keep each image's N most active filters only (NoNN: 50)")
    p.add_argument("--samples", type=int, default=4, help="QEMU inferences per student and board (default 4)")
    p.add_argument("--cache", metavar="FILE",
                   help=f"profile cache (default: {CACHE_NAME} beside --out); 'none' to profile afresh")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def load_activations(path: str | Path):
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--activations: '{p}' does not exist; save the activations with numpy.save")
    try:
        a = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 -- numpy raises assorted errors on a file that is not .npy
        raise InputError(f"--activations: '{p}' is not a .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(a, np.ndarray):
        raise InputError(f"--activations: '{p}' holds several arrays (an .npz); give one array saved with numpy.save")
    return a


def run_rocoin_plan(args: Any) -> int:
    from tinysplit.console import Progress, emit_json
    from tinysplit.methods.rocoin.fleet import load_fleet
    from tinysplit.methods.rocoin.partition import filter_activations
    from tinysplit.methods.rocoin.plan import PlanSettings, format_plan, save_plan
    from tinysplit.methods.rocoin.planner import make_plan
    from tinysplit.methods.rocoin.zoo import parse_student_args, profile_zoo

    if args.samples < 1:
        raise InputError(f"--samples must be at least 1, got {args.samples}")
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    settings = PlanSettings(args.d_th, args.p_th, args.seed, args.assign_labels, args.normalize, args.top)
    progress = Progress(args.quiet)
    fleet = load_fleet(args.fleet)
    students = parse_student_args(args.students)
    a = filter_activations(load_activations(args.activations), channels_last=args.channels_last)
    out = Path(args.out)
    cache = None if args.cache == "none" else Path(args.cache) if args.cache else out.parent / CACHE_NAME
    zoo = profile_zoo(students, fleet.boards, cache, args.samples, progress)
    progress(f"planning {len(fleet.devices)} devices, {a.shape[1]} filters, {len(zoo)} students")
    plan = make_plan(fleet, a, zoo, settings, args.partitions)
    save_plan(plan, out)
    if args.json:
        emit_json(plan.to_json())
        return 0
    print(format_plan(plan))
    print(f"plan: {out}")
    return 0


COMMANDS = {"rocoin-plan": (add_rocoin_plan, run_rocoin_plan)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tinysplit.errors import TinysplitError

    parser = argparse.ArgumentParser(prog="python -m tinysplit.methods.rocoin.command")
    sub = parser.add_subparsers(dest="cmd")
    add_rocoin_plan(sub)
    args = parser.parse_args(["rocoin-plan", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_rocoin_plan(args)
    except TinysplitError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
