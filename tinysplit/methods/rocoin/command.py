"""RoCoIn's verbs: ``tinysplit rocoin-plan`` (the knowledge assignment for a fleet, printed and saved
as JSON) and ``tinysplit rocoin-export`` (the digits example end to end: teacher, plan, students,
bundle, and the accuracy against failed devices).

A ``COMMANDS`` table like the other methods' (``tinysplit.methods.METHODS["rocoin"].commands``); this
module never imports the CLI and its parsers import nothing heavy. Also runnable as
``python -m tinysplit.methods.rocoin.command --fleet ... --out plan.json`` (rocoin-plan).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tinysplit.errors import InputError
from tinysplit.methods.rocoin import fleet_command

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


def default_fleet() -> Path:
    """The fleet file that ships with tinysplit for the digits example (6 devices, 3 board kinds)."""
    from importlib import resources

    return Path(str(resources.files("tinysplit.methods.rocoin").joinpath("fleets/digits6.yaml")))


def add_rocoin_export(sub: Any) -> None:
    p = sub.add_parser("rocoin-export", help="RoCoIn: plan, distill the students and export the bundle (digits)",
                       description="Train the example's teacher, plan RoCoIn for the fleet (follow-the-leader "
                                   "grouping, normalized cut of the teacher's final-conv filters, each zoo "
                                   "architecture exported as int8 and profiled in QEMU on the fleet's boards, "
                                   "Kuhn-Munkres assignment), train one student per partition by knowledge "
                                   "distillation jointly through the aggregator (CE + KD + activation transfer), "
                                   "fine-tune the aggregator with partition drop-out, export the 'rocoin' bundle, "
                                   "and measure accuracy against failed devices (float and int8) for RoCoIn, a "
                                   "NoNN-style baseline and the teacher. Writes DIR/plan.json, DIR/bundle/, "
                                   "DIR/zoo/, DIR/rocoin-profiles.json, DIR/activations.npy, DIR/rocoin_eval.json.")
    p.add_argument("--example", choices=["digits"], required=True, help="the built-in digits example")
    p.add_argument("--fleet", metavar="FLEET.yaml",
                   help="the devices (docs/rocoin.md); default: the shipped 6-device digits fleet")
    p.add_argument("--out", required=True, metavar="DIR", help="results directory (created; files replaced)")
    p.add_argument("--d-th", type=float, default=DEFAULT_D_TH, help=f"grouping distance threshold (default {DEFAULT_D_TH})")
    p.add_argument("--p-th", type=float, default=DEFAULT_P_TH, help=f"group failure probability target (default {DEFAULT_P_TH})")
    p.add_argument("--partitions", type=int, metavar="K", help="insist on K partitions")
    p.add_argument("--seed", type=int, default=0, help="seed of the partition, the students and the evaluation")
    p.add_argument("--assign-labels", choices=["kmeans", "cluster_qr"], default="kmeans")
    p.add_argument("--normalize", action="store_true", help="NoNN's per-image normalization of the activations")
    p.add_argument("--top", type=int, metavar="N", help="keep each image's N most active filters only")
    p.add_argument("--samples", type=int, default=4, help="QEMU inferences per zoo student and board (default 4)")
    p.add_argument("--cache", metavar="FILE", help=f"profile cache (default DIR/{CACHE_NAME}); 'none' to profile afresh")
    p.add_argument("--train-epochs", type=int, default=30, help="teacher training epochs (default 30)")
    p.add_argument("--epochs", type=int, default=40, help="student distillation epochs (default 40)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the soft-target KL term (default 0.5)")
    p.add_argument("--temperature", type=float, default=4.0, help="distillation temperature T (default 4)")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the activation-transfer term (default 1)")
    p.add_argument("--finetune-epochs", type=int, default=10,
                   help="aggregator drop-out fine-tuning epochs, 0 for none (default 10)")
    p.add_argument("--finetune-drop", type=float, default=0.25,
                   help="probability of zeroing each portion in that fine-tuning (default 0.25)")
    p.add_argument("--deadline-ms", type=float, default=500.0,
                   help="method_data.rocoin.deadline_ms: the deadline per sample the host is meant to use (default 500)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation against failed devices")
    p.add_argument("--baselines", default="nonn",
                   help="comma-separated baselines without replicas to train and compare: nonn (one architecture "
                        "that fits every device), hetnonn (each device its largest fitting one), or none "
                        "(default nonn)")
    p.add_argument("--float-only", action="store_true", help="evaluate in float only (no int8 runs)")
    p.add_argument("--trials", type=int, default=30, help="random failure sets per number of failed devices (default 30)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run_rocoin_export(args: Any) -> int:
    import json

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"]
    bad = [b for b in baselines if b not in ("nonn", "hetnonn")]
    if bad:
        raise InputError(f"--baselines: unknown baseline(s) {', '.join(bad)}; choose from nonn, hetnonn, none")
    if args.samples < 1 or args.trials < 1 or args.train_epochs < 1:
        raise InputError("--samples, --trials and --train-epochs must be at least 1")
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    if not args.deadline_ms > 0:
        raise InputError(f"--deadline-ms must be > 0, got {args.deadline_ms}")
    import torch

    from tinysplit.console import Progress, emit_json
    from tinysplit.files import write_atomic
    from tinysplit.methods.rocoin.distill import DistillConfig
    from tinysplit.methods.rocoin.evaluate import evaluate_run, format_report
    from tinysplit.methods.rocoin.fleet import load_fleet
    from tinysplit.methods.rocoin.pipeline import RunSettings, digits_task, run_rocoin
    from tinysplit.methods.rocoin.plan import PlanSettings, format_plan

    distill = DistillConfig(epochs=args.epochs, alpha=args.alpha, temperature=args.temperature, beta=args.beta,
                            seed=args.seed, finetune_epochs=args.finetune_epochs, finetune_drop=args.finetune_drop)
    distill.check()
    plan_settings = PlanSettings(args.d_th, args.p_th, args.seed, args.assign_labels, args.normalize, args.top)
    fleet = load_fleet(args.fleet or default_fleet())
    out = Path(args.out)
    cache = None if args.cache in (None, "none") else Path(args.cache)
    settings = RunSettings(plan_settings, distill, args.partitions, args.deadline_ms, args.samples, cache,
                           profile_cache=args.cache != "none")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same bytes on any machine: thread counts change float sums
    try:
        progress = Progress(args.quiet)
        progress(f"training the digits teacher ({args.train_epochs} epochs)")
        task = digits_task(args.train_epochs)
        run = run_rocoin(task, fleet, out, settings, progress)
        report = {"teacher_accuracy": task.teacher_accuracy, "timings_s": run.timings_s,
                  "bundle": str(run.export.bundle), "plan": str(out / "plan.json")}
        if not args.no_eval:
            report["evaluation"] = evaluate_run(run, args.trials, args.seed, baselines,
                                                int8=not args.float_only, progress=progress)
    finally:
        torch.set_num_threads(threads)
    write_atomic(out / "rocoin_eval.json", json.dumps(report, indent=2) + "\n")
    if args.json:
        emit_json(report)
        return 0
    print(format_plan(run.plan))
    if "evaluation" in report:
        print(format_report(report["evaluation"]))
    print(f"bundle: {run.export.bundle}  plan: {out / 'plan.json'}  data: {out / 'rocoin_eval.json'}")
    return 0


COMMANDS = {"rocoin-plan": (add_rocoin_plan, run_rocoin_plan), "rocoin-export": (add_rocoin_export, run_rocoin_export),
            **fleet_command.COMMANDS}


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
