"""RoCoIn end to end for one teacher and one fleet (torch): teacher targets -> the plan (grouping,
normalized cut, the zoo exported and profiled, Kuhn-Munkres) -> the students trained for the plan's
partitions -> the ``rocoin`` bundle. ``tinysplit rocoin-export`` runs it on the digits example; a
benchmark gives its own ``TeacherTask``.

Output directory:

    plan.json               the plan (tinysplit.methods.rocoin.plan), as rocoin-plan writes it
    activations.npy         the teacher's per-filter mean final-conv activations on the training images
    zoo/<arch>.tflite       each zoo architecture as int8, with the largest partition's output size
    rocoin-profiles.json    the zoo's profiles (flash, arena, QEMU instructions per board), cached
    bundle/                 the rocoin bundle (export_rocoin)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from tinysplit.errors import InputError
from tinysplit.methods.rocoin.distill import (Augment, DistillConfig, TeacherTargets, TrainLog, teacher_targets,
                                              train_students)
from tinysplit.methods.rocoin.export import DEFAULT_DEADLINE_MS, RocoinExport, export_rocoin, zoo_tflite
from tinysplit.methods.rocoin.fleet import Fleet
from tinysplit.methods.rocoin.plan import Plan, PlanSettings, save_plan
from tinysplit.methods.rocoin.students import DIGITS_ZOO, StudentNetwork, check_zoo
from tinysplit.methods.rocoin.zoo import StudentProfile

Progress = Callable[[str], None]
PLAN_FILE, BUNDLE_DIR, ZOO_DIR, CACHE_FILE, ACTIVATIONS_FILE = (
    "plan.json", "bundle", "zoo", "rocoin-profiles.json", "activations.npy")


@dataclass(frozen=True)
class TeacherTask:
    """A trained teacher and its data: what RoCoIn distills from."""

    name: str  # the bundle is named "<name>_rocoin"
    teacher: nn.Module  # the whole classifier (input -> logits), for its own int8 figures
    logits_and_maps: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # x -> (logits, final-conv maps)
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    calibration: np.ndarray  # int8 calibration inputs
    classes: tuple[str, ...]
    zoo: dict[str, Callable[[int], nn.Module]]  # for this input shape and the teacher's final-conv resolution
    teacher_accuracy: float  # float, on the held-out inputs
    # training-batch transform (crops and flips for CIFAR): the students see augmented batches and the
    # teacher runs on each one (distill.train_students); None: the images as they are, teacher targets once
    augment: Augment | None = None


def digits_task(epochs: int = 30, log: Progress | None = None) -> TeacherTask:
    """The digits example as a RoCoIn teacher: its final conv is ``tail.conv3`` (32 filters, 4x4, after
    ReLU), then global average pooling and a 1x1-conv classifier."""
    from tinysplit.examples.digits import CLASSES, SEED, train_digits

    t = train_digits(epochs=epochs, log=log)
    model = t.model.eval()

    def logits_and_maps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = model.tail.conv3(model.head(x))
        return torch.flatten(model.tail.classifier(model.tail.pool(maps)), 1), maps

    calib = t.x_train[np.random.default_rng(SEED).permutation(len(t.x_train))[:300]]
    return TeacherTask("digits", model, logits_and_maps, t.x_train, t.y_train, t.x_heldout, t.y_heldout, calib,
                       CLASSES, dict(DIGITS_ZOO), t.heldout_accuracy)


@dataclass(frozen=True)
class RunSettings:
    plan: PlanSettings = PlanSettings(d_th=0.25, p_th=0.25, seed=0)
    distill: DistillConfig = DistillConfig()
    partitions: int | None = None  # insist on K (the grouping must form K groups)
    deadline_ms: float = DEFAULT_DEADLINE_MS
    samples: int = 4  # QEMU inferences per zoo student and board
    cache: Path | None = None  # the profile cache (default: OUT/rocoin-profiles.json)
    profile_cache: bool = True  # False: profile afresh and keep no cache


@dataclass
class RocoinRun:
    task: TeacherTask
    plan: Plan
    net: StudentNetwork
    targets: TeacherTargets
    train_log: TrainLog
    aggregator_before_finetune: dict[str, torch.Tensor] | None  # its state before drop-out fine-tuning
    export: RocoinExport | None
    out_dir: Path
    settings: RunSettings
    timings_s: dict[str, float] = field(default_factory=dict)


def build_network(archs, partitions, classes: int, seed: int, zoo=None) -> StudentNetwork:
    """The students and aggregator with seeded initial weights."""
    torch.manual_seed(seed)
    return StudentNetwork(archs, partitions, classes, zoo)


def plan_partitions(fleet: Fleet, activations: np.ndarray, settings: PlanSettings,
                    partitions: int | None = None) -> tuple[tuple[int, ...], ...]:
    """The partitions make_plan will form (grouping decides K, then the normalized cut): known before
    the zoo is profiled, so that each architecture is profiled with the largest partition's size."""
    from tinysplit.methods.rocoin.grouping import group_devices
    from tinysplit.methods.rocoin.partition import affinity, partition_filters

    k = partitions if partitions is not None else len(group_devices(fleet.devices, settings.d_th, settings.p_th))
    return partition_filters(affinity(activations, settings.normalize, settings.top), k, settings.seed,
                             settings.assign_labels)


def check_task(task: TeacherTask) -> tuple[int, int]:
    """The zoo against the task's input shape and the teacher's final-conv resolution (one image
    through the teacher), before any work; returns that resolution."""
    with torch.no_grad():
        _, maps = task.logits_and_maps(torch.from_numpy(np.ascontiguousarray(task.x_train[:1], np.float32)))
    if maps.dim() != 4:
        raise InputError(f"the teacher's final-conv maps must be (N, M, H, W), got {tuple(maps.shape)}")
    hw = (int(maps.shape[2]), int(maps.shape[3]))
    check_zoo(task.zoo, task.x_train.shape[1:], hw)
    return hw


def training_record(settings: RunSettings, log: TrainLog, augment: bool = False) -> dict[str, Any]:
    d = asdict(settings.distill)
    if augment:  # recorded only when used, so that a bundle trained without it is what it was
        d["augment"] = True
    d["final_loss"] = {"total": log.total[-1], "ce": log.ce[-1], "kd": log.kd[-1], "at": log.at[-1]}
    if log.finetune:
        d["final_loss"]["finetune"] = log.finetune[-1]
    return d


def run_rocoin(task: TeacherTask, fleet: Fleet, out_dir: str | Path, settings: RunSettings = RunSettings(),
               progress: Progress | None = None, export: bool = True,
               profiles: Sequence[StudentProfile] | None = None) -> RocoinRun:
    """Plan, train and (with ``export``) export RoCoIn for ``task`` on ``fleet`` into ``out_dir``.
    ``profiles``: the zoo already profiled (one per architecture of ``task.zoo``, by name); default:
    export each architecture and profile it (QEMU, cached)."""
    import io
    import time

    from tinysplit.files import write_atomic
    from tinysplit.methods.rocoin.planner import make_plan
    from tinysplit.methods.rocoin.zoo import profile_zoo

    say = progress or (lambda m: None)
    settings.distill.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    check_task(task)
    say(f"teacher activations on {len(task.x_train)} training images")
    first = teacher_targets(task.logits_and_maps, task.x_train)
    activations = first.activations.astype(np.float64)
    buf = io.BytesIO()
    np.save(buf, activations)
    write_atomic(out / ACTIVATIONS_FILE, buf.getvalue())
    parts = plan_partitions(fleet, activations, settings.plan, settings.partitions)
    if profiles is None:
        n_max = max(len(p) for p in parts)
        students = []
        for arch in task.zoo:
            path = out / ZOO_DIR / f"{arch}.tflite"
            say(f"zoo: {arch} as int8 with {n_max} outputs (the largest partition)")
            zoo_tflite(arch, n_max, task.calibration, path, settings.plan.seed, task.zoo)
            students.append((arch, path))
        timings["zoo_export"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache = (settings.cache if settings.cache is not None else out / CACHE_FILE) if settings.profile_cache else None
        zoo = profile_zoo(students, fleet.boards, cache, settings.samples, say)
        timings["zoo_profile"] = time.perf_counter() - t0
    else:
        zoo = tuple(profiles)
        unknown = [s.name for s in zoo if s.name not in task.zoo]
        if unknown:
            raise InputError(f"profiles for students {unknown} that the zoo ({', '.join(task.zoo)}) does not have")
    plan = make_plan(fleet, activations, zoo, settings.plan, settings.partitions)
    if plan.partitions != parts:
        raise InputError("the plan's partitions differ from the ones the zoo was sized for (internal mismatch)")
    save_plan(plan, out / PLAN_FILE)
    archs = [next(g.student for g in plan.groups if g.partition == k) for k in range(len(plan.partitions))]
    say(f"plan: {len(plan.devices)} devices in {len(plan.groups)} groups; partitions of "
        f"{[len(p) for p in plan.partitions]} filters; students {archs}")
    t0 = time.perf_counter()
    # with augmentation the teacher runs on every batch; otherwise once more, for the partitions' maps
    targets = first if task.augment else teacher_targets(task.logits_and_maps, task.x_train, plan.partitions)
    net = build_network(archs, plan.partitions, len(task.classes), settings.distill.seed, task.zoo)
    cfg = settings.distill
    log = train_students(net, task.x_train, task.y_train, targets, replace(cfg, finetune_epochs=0), say,
                         task.augment, task.logits_and_maps)
    before = None
    if cfg.finetune_epochs:
        from tinysplit.methods.rocoin.distill import finetune_aggregator

        before = {k: v.clone() for k, v in net.aggregator.state_dict().items()}
        log.finetune = finetune_aggregator(net, task.x_train, task.y_train, targets, cfg, say)
    timings["train"] = time.perf_counter() - t0
    ex = None
    if export:
        t0 = time.perf_counter()
        ex = export_rocoin(net, plan, task.calibration, task.x_heldout, task.y_heldout, out / BUNDLE_DIR,
                           f"{task.name}_rocoin", task.classes, settings.deadline_ms,
                           training_record(settings, log, task.augment is not None), say)
        timings["export"] = time.perf_counter() - t0
    return RocoinRun(task, plan, net, targets, log, before, ex, out, settings, timings)
