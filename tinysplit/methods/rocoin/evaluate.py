"""Accuracy against failed devices, float and int8: RoCoIn, a NoNN-style baseline and the teacher alone.

For f = 0 .. N-1 failed devices of the fleet's N, the accuracy on the held-out inputs is averaged
over failure sets of f devices: all C(N, f) of them when there are at most ``trials``, else
``trials`` sets drawn at random (each f devices without repetition; ``seed`` fixed, the same sets for
every system since they draw from the same device list in fleet order). A failed device sends
nothing; partition k is missing only when every device of its group failed, and a missing
partition is zero-filled (0.0) before the aggregator, as the host does at the deadline.

- RoCoIn: the plan's groups; float = the trained students and aggregator in PyTorch; int8 = the
  bundle's students in TFLite Micro and its ONNX aggregator (``reference.labels_with_partitions``).
- NoNN-style baseline ("nonn"): one student per device and no replicas (K = N partitions by the same
  normalized cut), every device running the same architecture, the largest of the zoo that fits
  every device (NoNN's students are alike, so the smallest device decides); trained with the same
  recipe; int8 = each student as int8 in TFLite Micro, the aggregator in PyTorch on the dequantized
  portions. "hetnonn" (the paper's HetNoNN, optional): the same, but each device runs the largest
  student that fits it, so it differs from RoCoIn only by having no replicas.
- Teacher: the whole teacher on one machine, its accuracy whatever fails (the paper's reference line);
  int8 = the teacher as one int8 model in TFLite Micro.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tinysplit.errors import InputError

Progress = Callable[[str], None]
DEFAULT_TRIALS = 30  # the paper's trials per setting


@dataclass(frozen=True)
class CurvePoint:
    failed: int  # devices failed
    accuracy: float  # mean over the failure sets
    worst: float
    best: float
    sets: int  # failure sets evaluated
    exact: bool  # every set of this size (else random draws)
    all_partitions: float  # fraction of the sets in which every partition still arrived


def failure_sets(devices: Sequence[str], failed: int, trials: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Every set of ``failed`` devices if there are at most ``trials``, else ``trials`` random ones."""
    n = len(devices)
    if not 0 <= failed <= n:
        raise InputError(f"cannot fail {failed} of {n} devices")
    if math.comb(n, failed) <= trials:
        return list(itertools.combinations(devices, failed))
    return [tuple(devices[i] for i in sorted(rng.choice(n, failed, replace=False))) for _ in range(trials)]


def arrived_mask(groups: Sequence[Sequence[str]], failed: Sequence[str]) -> tuple[bool, ...]:
    """Partition k arrives unless every device of its group failed."""
    down = set(failed)
    return tuple(any(d not in down for d in g) for g in groups)


def failure_curve(accuracy: Callable[[tuple[bool, ...]], float], devices: Sequence[str],
                  groups: Sequence[Sequence[str]], trials: int = DEFAULT_TRIALS, seed: int = 0) -> list[CurvePoint]:
    """Accuracy for 0 .. N-1 failed devices; ``accuracy(arrived)`` gets the partitions that arrive
    (one bool per group) and is called once per distinct pattern."""
    if trials < 1:
        raise InputError(f"trials must be at least 1, got {trials}")
    listed = [d for g in groups for d in g]
    if sorted(listed) != sorted(devices) or len(set(listed)) != len(listed):
        raise InputError("every device must be in exactly one group")
    rng = np.random.default_rng(seed)
    cache: dict[tuple[bool, ...], float] = {}
    out = []
    for f in range(len(devices)):
        sets = failure_sets(devices, f, trials, rng)
        accs, every = [], 0
        for s in sets:
            mask = arrived_mask(groups, s)
            if mask not in cache:
                cache[mask] = float(accuracy(mask))
            accs.append(cache[mask])
            every += all(mask)
        out.append(CurvePoint(f, float(np.mean(accs)), float(min(accs)), float(max(accs)), len(sets),
                              math.comb(len(devices), f) <= trials, every / len(sets)))
    return out


def partition_table(accuracy: Callable[[tuple[bool, ...]], float], k_total: int) -> dict[str, Any]:
    """Accuracy with every partition, with each one missing, and with each one alone."""
    every = tuple([True] * k_total)
    return {"full": float(accuracy(every)),
            "without_partition": [float(accuracy(tuple(j != k for j in range(k_total)))) for k in range(k_total)],
            "only_partition": [float(accuracy(tuple(j == k for j in range(k_total)))) for k in range(k_total)]}


def _system(accuracy: Callable[[tuple[bool, ...]], float], devices, groups, trials, seed) -> dict[str, Any]:
    cache: dict[tuple[bool, ...], float] = {}

    def acc(mask: tuple[bool, ...]) -> float:
        if mask not in cache:
            cache[mask] = float(accuracy(mask))
        return cache[mask]

    return {**partition_table(acc, len(groups)),
            "curve": [asdict(p) for p in failure_curve(acc, devices, groups, trials, seed)]}


def _float_accuracy(net, portions: list[np.ndarray], y: np.ndarray) -> Callable[[tuple[bool, ...]], float]:
    from tinysplit.methods.rocoin.distill import aggregate

    return lambda mask: float((aggregate(net, portions, np.array(mask)).argmax(1) == y).mean())


BASELINES = ("nonn", "hetnonn")


def _largest_fitting(plan, devices) -> str | None:
    fit = [s for s in plan.students
           if all(s.const_bytes <= d.model_flash_bytes and s.arena_bytes <= d.model_ram_bytes for d in devices)]
    return max(fit, key=lambda s: (s.const_bytes, s.arena_bytes)).name if fit else None


def baseline_architectures(plan, baseline: str) -> list[str]:
    """One zoo architecture per device of the plan (fleet order): for "nonn" the largest (by its weights)
    that fits every device, for "hetnonn" the largest that fits each device."""
    if baseline not in BASELINES:
        raise InputError(f"unknown baseline '{baseline}'; choose from {', '.join(BASELINES)}")
    if baseline == "nonn":
        arch = _largest_fitting(plan, plan.devices)
        if arch is None:
            raise InputError("no student of the zoo fits every device, so a NoNN-style baseline (one architecture "
                             "for all devices) cannot be built")
        return [arch] * len(plan.devices)
    archs = [_largest_fitting(plan, [d]) for d in plan.devices]
    if None in archs:
        raise InputError(f"no student of the zoo fits device '{plan.devices[archs.index(None)].id}'")
    return archs


def evaluate_run(run, trials: int = DEFAULT_TRIALS, seed: int = 0, baselines: Sequence[str] = ("nonn",),
                 int8: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """The failure curves and partition tables of a ``pipeline.RocoinRun`` (float, and int8 from its
    bundle), of the ``baselines`` ("nonn", "hetnonn") trained with the same recipe, and the teacher's
    accuracy."""
    for b in baselines:
        baseline_architectures(run.plan, b)  # an unknown baseline or one that cannot be built: before any work
    import torch

    from tinysplit.methods.rocoin.distill import portions_float
    from tinysplit.methods.rocoin.export import int8_run, int8_tflite

    say = progress or (lambda m: None)
    task, plan, net = run.task, run.plan, run.net
    y = task.y_heldout
    devices = [d.id for d in plan.devices]
    groups = [next(g.devices for g in plan.groups if g.partition == k) for k in range(len(plan.partitions))]
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"heldout": int(len(y)), "devices": devices, "trials": trials, "seed": seed}
    t0 = time.perf_counter()
    with torch.no_grad():  # in batches: a CIFAR-10 teacher's maps on thousands of images are gigabytes
        pred = np.concatenate([task.teacher(torch.from_numpy(np.ascontiguousarray(task.x_heldout[i:i + 500],
                                                                                   np.float32))).argmax(1).numpy()
                               for i in range(0, len(y), 500)]) if len(y) else np.zeros(0, np.int64)
    teacher_float = float((pred == y).mean())
    report["teacher"] = {"float": teacher_float}
    if int8:
        say("teacher as int8 (TFLite Micro)")
        q, _, _ = int8_run(int8_tflite(task.teacher, task.calibration, "teacher"), task.x_heldout)
        report["teacher"]["int8"] = float((q.argmax(1) == y).mean())
    timings["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    portions = portions_float(net, task.x_heldout)
    roc: dict[str, Any] = {"groups": groups, "archs": list(net.archs), "partitions": [len(p) for p in plan.partitions],
                           "float": _system(_float_accuracy(net, portions, y), devices, groups, trials, seed)}
    if run.aggregator_before_finetune is not None:
        import copy

        before = copy.deepcopy(net)
        before.aggregator.load_state_dict(run.aggregator_before_finetune)
        roc["float_before_finetune"] = _system(_float_accuracy(before, portions, y), devices, groups, trials, seed)
    if int8 and run.export is not None:
        from tinysplit.methods.rocoin.reference import labels_with_partitions, student_outputs

        say("RoCoIn int8: the bundle's students in TFLite Micro, the ONNX aggregator")
        outs = student_outputs(run.export.bundle)
        roc["int8"] = _system(
            lambda mask: float((labels_with_partitions(run.export.bundle, np.array(mask), outputs_q=outs) == y).mean()),
            devices, groups, trials, seed)
    report["rocoin"] = roc
    timings["rocoin"] = time.perf_counter() - t0

    for b in baselines:
        t0 = time.perf_counter()
        report[b] = evaluate_baseline(run, b, devices, trials, seed, int8, say)
        timings[b] = time.perf_counter() - t0
    report["timings_s"] = timings
    return report


def evaluate_baseline(run, baseline: str, devices: Sequence[str], trials: int, seed: int, int8: bool,
                      say: Progress) -> dict[str, Any]:
    """A baseline without replicas on the run's fleet: N partitions, one per device."""
    from tinysplit.methods.rocoin.distill import aggregate, portions_float, train_students
    from tinysplit.methods.rocoin.export import int8_run, int8_tflite
    from tinysplit.methods.rocoin.partition import affinity, partition_filters
    from tinysplit.methods.rocoin.pipeline import build_network
    from tinysplit.quant import dequantize

    task, plan, s = run.task, run.plan, run.settings
    y = task.y_heldout
    n = len(devices)
    archs = baseline_architectures(plan, baseline)
    from tinysplit.methods.rocoin.distill import teacher_targets

    activations = run.targets.activations.astype(np.float64)
    parts = partition_filters(affinity(activations, s.plan.normalize, s.plan.top), n, s.plan.seed,
                              s.plan.assign_labels)
    # with augmentation the teacher runs on every batch (the run's targets give the logits); otherwise once more
    targets = run.targets if task.augment else teacher_targets(task.logits_and_maps, task.x_train, parts)
    say(f"{baseline} baseline: students {archs} for partitions of {[len(p) for p in parts]} filters")
    net = build_network(archs, parts, len(task.classes), s.distill.seed, task.zoo)
    train_students(net, task.x_train, task.y_train, targets, s.distill, say, task.augment, task.logits_and_maps)
    groups = [[d] for d in devices]
    portions = portions_float(net, task.x_heldout)
    out: dict[str, Any] = {"archs": archs, "partitions": [len(p) for p in parts], "groups": groups,
                           "float": _system(_float_accuracy(net, portions, y), devices, groups, trials, seed)}
    if int8:
        say(f"{baseline} baseline as int8: {n} students in TFLite Micro")
        q_portions = []
        for k, st in enumerate(net.students):
            q, scale, zp = int8_run(int8_tflite(st, task.calibration, f"{baseline}_{k}"), task.x_heldout)
            q_portions.append(dequantize(q, scale, zp))
        out["int8"] = _system(lambda mask: float((aggregate(net, q_portions, np.array(mask)).argmax(1) == y).mean()),
                              devices, groups, trials, seed)
    return out


def format_report(r: dict[str, Any]) -> str:
    """The figures as text: per-partition tables and the curves side by side."""
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    roc = r["rocoin"]
    lines = [f"held-out images {r['heldout']}; teacher {pct(r['teacher']['float'])}% float"
             + (f", {pct(r['teacher']['int8'])}% int8" if "int8" in r["teacher"] else "")]
    k_total = len(roc["partitions"])
    lines.append(f"RoCoIn: partitions of {roc['partitions']} filters, students {roc['archs']}, groups "
                 f"{['+'.join(g) for g in roc['groups']]}; accuracy (%) with every partition, without one, one alone")
    lines.append(f"{'':26}{'full':>7}" + "".join(f"{'-P' + str(k):>7}" for k in range(k_total))
                 + "".join(f"{'P' + str(k) + ' only':>9}" for k in range(k_total)))
    for key, label in (("float_before_finetune", "float, no drop-out FT"), ("float", "float"), ("int8", "int8")):
        if key in roc:
            t = roc[key]
            lines.append(f"{label:26}{pct(t['full']):>7}" + "".join(f"{pct(v):>7}" for v in t["without_partition"])
                         + "".join(f"{pct(v):>9}" for v in t["only_partition"]))
    cols = [("RoCoIn", roc, "float"), ("RoCoIn noFT", roc, "float_before_finetune"), ("RoCoIn", roc, "int8")]
    for b, name in (("nonn", "NoNN"), ("hetnonn", "HetNoNN")):
        if b in r:
            cols += [(name, r[b], "float"), (name, r[b], "int8")]
            lines.append(f"{name}: students {r[b]['archs']} (partitions of {r[b]['partitions']} filters), one per "
                         "device, no replicas")
    cols = [c for c in cols if c[2] in c[1]]
    lines.append(f"accuracy (%) vs failed devices (mean over the failure sets: all of them, or {r['trials']} random "
                 f"ones where there are more; seed {r['seed']})")
    lines.append(f"{'failed':>6}" + "".join(f"{name + ' ' + key.split('_')[0]:>18}" for name, _, key in cols)
                 + f"{'teacher':>9}")
    for i, p in enumerate(roc["float"]["curve"]):
        lines.append(f"{p['failed']:>6}" + "".join(f"{pct(sys_[key]['curve'][i]['accuracy']):>18}"
                                                    for _, sys_, key in cols) + f"{pct(r['teacher']['float']):>9}")
    return "\n".join(lines)
