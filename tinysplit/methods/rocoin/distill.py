"""Training RoCoIn's students by knowledge distillation (papers/rocoin.md eq. 6), jointly through the
aggregator as NoNN does, and the optional drop-out fine-tuning of the aggregator (torch).

The loss of a batch, with p_S the aggregator's output on the concatenated portions:

    L = (1 - alpha) CE(y, p_S) + alpha T^2 KL(p_T^T || p_S^T)
        + beta sum_k mean_batch || v_T(P_k)/|v_T(P_k)| - v_S,k/|v_S,k| ||^2

- the KD part is Hinton's: soft targets at temperature T, the KL scaled by T^2;
- activation transfer (Zagoruyko & Komodakis' attention transfer, as NoNN's code does it): the
  activation map of a set of feature maps is v = vec(sum_c A_c^2) over the spatial positions;
  v_T(P_k) takes the teacher's final-conv maps of partition k's filters, v_S,k the student k's final
  maps (same resolution), each normalized by its L2 norm.

Teacher targets are computed once (the teacher is not trained) and kept small: its logits, each
filter's mean activation (what the knowledge partition needs) and, for given partitions, v_T(P_k)
already normalized, (N, K, H*W): never the (N, M, H, W) maps themselves, which for a CIFAR-10 teacher
would be gigabytes. So the teacher runs twice: once before planning (logits, means) and once for the
plan's partitions (``teacher_targets(..., partitions=...)``).
With an ``augment`` (random crops and flips for CIFAR), every training batch is transformed and the
teacher runs on each augmented batch instead (its logits and v_T(P_k) of what the students see), as
ReBEL's training does; the targets then need no activation maps, only the logits (for the
fine-tuning, which runs on the images as they are).
Drop-out fine-tuning (``finetune_aggregator``): the students frozen, the aggregator alone is trained
with each portion zeroed independently with probability ``drop`` per sample, the KD loss only, so
that zero-filled (missing) partitions hurt less at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from tinysplit.errors import InputError
from tinysplit.methods.rocoin.students import StudentNetwork

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (batch, generator) -> transformed batch
TeacherFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # x -> (logits, final-conv maps after ReLU)


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 40
    batch: int = 64
    lr: float = 3e-3
    alpha: float = 0.5  # weight of the soft-target KL term (1 - alpha on the hard labels)
    temperature: float = 4.0
    beta: float = 1.0  # weight of the activation-transfer term (summed over partitions)
    seed: int = 0
    # aggregator drop-out fine-tuning (0 epochs: none)
    finetune_epochs: int = 0
    finetune_drop: float = 0.25
    finetune_lr: float = 3e-3

    def check(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.finetune_epochs < 0:
            raise InputError("epochs and batch must be >= 1, finetune_epochs >= 0")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0 or self.beta < 0:
            raise InputError(f"alpha must be in [0, 1], temperature > 0 and beta >= 0; got alpha {self.alpha}, "
                             f"temperature {self.temperature}, beta {self.beta}")
        if not 0 <= self.finetune_drop < 1:
            raise InputError(f"finetune_drop must be in [0, 1), got {self.finetune_drop}")


@dataclass(frozen=True)
class TeacherTargets:
    """What the students learn from, per training image: the teacher's logits, its final-conv filters'
    mean activations and, for ``partitions``, each partition's normalized activation map v_T(P_k)."""

    logits: np.ndarray  # (N, C) float32
    activations: np.ndarray  # (N, M) float32: each filter's mean activation (after the final conv's ReLU)
    partitions: tuple[tuple[int, ...], ...] | None = None
    attention: np.ndarray | None = None  # (N, K, H*W) float32: v_T(P_k) / |v_T(P_k)|

    @property
    def filters(self) -> int:
        return int(self.activations.shape[1])

    def subset(self, idx) -> "TeacherTargets":
        return TeacherTargets(self.logits[idx], self.activations[idx], self.partitions,
                              None if self.attention is None else self.attention[idx])


@dataclass
class TrainLog:
    """Per epoch: the mean of each loss term over the epoch's batches."""

    total: list[float] = field(default_factory=list)
    ce: list[float] = field(default_factory=list)
    kd: list[float] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    finetune: list[float] = field(default_factory=list)


def attention(maps: torch.Tensor) -> torch.Tensor:
    """The activation map of (N, C, H, W) feature maps: vec(sum_c A_c^2), L2-normalized per sample -> (N, H*W)."""
    v = maps.pow(2).sum(dim=1).flatten(1)
    return F.normalize(v, p=2, dim=1, eps=1e-12)


def partition_attention(teacher_maps: torch.Tensor, partitions: Sequence[Sequence[int]]) -> torch.Tensor:
    """v_T(P_k)/|v_T(P_k)| for each partition: (N, K, H*W)."""
    return torch.stack([attention(teacher_maps[:, list(p)]) for p in partitions], dim=1)


def at_loss_from_attention(teacher_attention: torch.Tensor, student_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_k mean over the batch of || v_T(P_k)/|v_T(P_k)| - v_S,k/|v_S,k| ||^2, the teacher's side
    given as (N, K, H*W)."""
    if teacher_attention.shape[1] != len(student_maps):
        raise ValueError(f"{len(student_maps)} students for {teacher_attention.shape[1]} partitions")
    total = teacher_attention.new_zeros(())
    for k, maps in enumerate(student_maps):
        if maps.shape[2] * maps.shape[3] != teacher_attention.shape[2]:
            raise InputError(f"a student's final maps have {maps.shape[2] * maps.shape[3]} positions, the "
                             f"teacher's {teacher_attention.shape[2]}: activation transfer needs the same resolution")
        total = total + (teacher_attention[:, k] - attention(maps)).pow(2).sum(dim=1).mean()
    return total


def at_loss(teacher_maps: torch.Tensor, student_maps: Sequence[torch.Tensor],
            partitions: Sequence[Sequence[int]]) -> torch.Tensor:
    """sum_k mean over the batch of || v_T(P_k)/|v_T(P_k)| - v_S,k/|v_S,k| ||^2 from the teacher's maps."""
    if len(student_maps) != len(partitions):
        raise ValueError(f"{len(student_maps)} students for {len(partitions)} partitions")
    for maps in student_maps:
        if teacher_maps.shape[2:] != maps.shape[2:]:
            raise InputError(f"a student's final maps are {tuple(maps.shape[2:])}, the teacher's "
                             f"{tuple(teacher_maps.shape[2:])}: activation transfer needs the same resolution")
    return at_loss_from_attention(partition_attention(teacher_maps, partitions), student_maps)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, alpha: float,
            temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """((1 - alpha) CE(y, p_S), alpha T^2 KL(p_T^T || p_S^T)), the KL averaged over the batch."""
    ce = F.cross_entropy(student_logits, labels)
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                  reduction="batchmean", log_target=True)
    return (1 - alpha) * ce, alpha * t * t * kl


def _tensors(x: np.ndarray, y: np.ndarray, targets: TeacherTargets):
    if not (len(x) == len(y) == len(targets.logits)):
        raise InputError(f"{len(x)} images, {len(y)} labels and {len(targets.logits)} teacher targets: one of each "
                         "per training image")
    return (torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64)),
            torch.from_numpy(np.ascontiguousarray(targets.logits, np.float32)))


def train_students(net: StudentNetwork, x: np.ndarray, y: np.ndarray, targets: TeacherTargets,
                   config: DistillConfig = DistillConfig(), log: Callable[[str], None] | None = None,
                   augment: Augment | None = None, teacher: TeacherFn | None = None) -> TrainLog:
    """Train the students and the aggregator jointly on eq. (6) (in place, seeded); then, with
    ``config.finetune_epochs``, the aggregator alone with partition drop-out.

    With ``augment(batch, generator)`` every training batch is transformed (seeded by the same
    generator) and ``teacher`` (x -> (logits, final-conv maps), required then) runs on it for the KD
    and activation-transfer targets; ``targets`` then need only their logits and activations
    (``teacher_targets`` without partitions)."""
    config.check()
    if max(max(p) for p in net.partitions) >= targets.filters:
        raise InputError(f"the partitions name filters up to {max(max(p) for p in net.partitions)}, the teacher's "
                         f"final conv has {targets.filters}")
    if augment is not None and teacher is None:
        raise InputError("training with augmentation runs the teacher on every augmented batch: give the teacher")
    if augment is None and (targets.attention is None or targets.partitions != tuple(net.partitions)):
        raise InputError("the teacher targets hold no activation maps for these students' partitions; compute "
                         "them with teacher_targets(..., partitions=net.partitions)")
    torch.manual_seed(config.seed)
    xt, yt, tl = _tensors(x, y, targets)
    ta = None if augment is not None else torch.from_numpy(np.ascontiguousarray(targets.attention, np.float32))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs)
    g = torch.Generator().manual_seed(config.seed)
    out = TrainLog()
    for epoch in range(config.epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=g)
        sums = np.zeros(4)
        batches = 0
        for i in range(0, len(xt), config.batch):
            idx = perm[i:i + config.batch]
            if augment is not None:
                xb = augment(xt[idx], g)
                with torch.no_grad():
                    tlb, maps_t = teacher(xb)
                if maps_t.dim() != 4 or maps_t.shape[1] != targets.filters:
                    raise InputError(f"the teacher's final-conv maps are {tuple(maps_t.shape)}, expected (N, "
                                     f"{targets.filters}, H, W)")
                tab = partition_attention(maps_t, net.partitions)
            else:
                xb, tlb, tab = xt[idx], tl[idx], ta[idx]
            opt.zero_grad()
            logits, maps = net(xb)
            ce, kd = kd_loss(logits, tlb, yt[idx], config.alpha, config.temperature)
            at = at_loss_from_attention(tab, maps)
            loss = ce + kd + config.beta * at
            loss.backward()
            opt.step()
            sums += [loss.item(), ce.item(), kd.item(), at.item()]
            batches += 1
        sched.step()
        for lst, v in zip((out.total, out.ce, out.kd, out.at), sums / batches):
            lst.append(float(v))
        if log:
            log(f"students epoch {epoch + 1}/{config.epochs}: loss {out.total[-1]:.4f} (CE {out.ce[-1]:.4f}, "
                f"KD {out.kd[-1]:.4f}, AT {out.at[-1]:.4f})")
    net.eval()
    if config.finetune_epochs:
        out.finetune = finetune_aggregator(net, x, y, targets, config, log)
    return out


def finetune_aggregator(net: StudentNetwork, x: np.ndarray, y: np.ndarray, targets: TeacherTargets,
                        config: DistillConfig, log: Callable[[str], None] | None = None) -> list[float]:
    """The aggregator alone (students frozen, in eval mode), each portion zeroed with probability
    ``config.finetune_drop`` per sample; the KD loss. Returns the mean loss per epoch."""
    xt, yt, tl = _tensors(x, y, targets)
    # in batches of 2048 (a whole CIFAR-10 training set's maps would not fit in memory; digits' is one batch)
    pooled = [torch.from_numpy(p) for p in portions_float(net, x, batch=2048)]
    k = len(pooled)
    torch.manual_seed(config.seed + 1)
    g = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.Adam(net.aggregator.parameters(), lr=config.finetune_lr)
    losses = []
    for epoch in range(config.finetune_epochs):
        perm = torch.randperm(len(xt), generator=g)
        total, batches = 0.0, 0
        for i in range(0, len(xt), config.batch):
            idx = perm[i:i + config.batch]
            keep = (torch.rand(len(idx), k, generator=g) >= config.finetune_drop).float()
            opt.zero_grad()
            logits = net.aggregator(*[p[idx] * keep[:, j:j + 1] for j, p in enumerate(pooled)])
            ce, kd = kd_loss(logits, tl[idx], yt[idx], config.alpha, config.temperature)
            loss = ce + kd
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        losses.append(total / batches)
        if log:
            log(f"aggregator drop-out epoch {epoch + 1}/{config.finetune_epochs}: loss {losses[-1]:.4f}")
    net.eval()
    return losses


def portions_float(net: StudentNetwork, x: np.ndarray, batch: int = 512) -> list[np.ndarray]:
    """Each student's float portion on ``x``: K arrays (N, n_k)."""
    net.eval()
    outs: list[list[np.ndarray]] = [[] for _ in net.students]
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32))
            for k, p in enumerate(net.portions(xb)):
                outs[k].append(p.flatten(1).numpy())
    return [np.concatenate(o) for o in outs]


def aggregate(net: StudentNetwork, portions: Sequence[np.ndarray], arrived: np.ndarray | None = None) -> np.ndarray:
    """The aggregator's logits on float portions (K arrays (N, n_k)), missing ones (``arrived``
    (N, K) or (K,) False) zero-filled."""
    n = len(portions[0])
    keep = np.ones((n, len(portions)), bool) if arrived is None else np.broadcast_to(arrived, (n, len(portions)))
    with torch.no_grad():
        xs = [torch.from_numpy(np.where(keep[:, k:k + 1], p, 0.0).astype(np.float32)) for k, p in enumerate(portions)]
        return net.aggregator(*xs).numpy()


def teacher_targets(teacher_logits_and_maps: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                    x: np.ndarray, partitions: Sequence[Sequence[int]] | None = None,
                    batch: int = 256) -> TeacherTargets:
    """Run the teacher once over ``x`` (``teacher_logits_and_maps(x) -> (logits, final-conv maps after
    ReLU)``): its logits, each filter's mean activation and, with ``partitions``, each partition's
    normalized activation map. The maps themselves are not kept."""
    parts = None if partitions is None else tuple(tuple(int(f) for f in p) for p in partitions)
    logits, means, att = [], [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            lo, ma = teacher_logits_and_maps(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32)))
            if ma.dim() != 4:
                raise InputError(f"the teacher's final-conv maps must be (N, M, H, W), got {tuple(ma.shape)}")
            logits.append(lo.numpy())
            means.append(ma.mean(dim=(2, 3)).numpy())
            if parts is not None:
                if max(max(p) for p in parts) >= ma.shape[1]:
                    raise InputError(f"the partitions name filters up to {max(max(p) for p in parts)}, the "
                                     f"teacher's final conv has {ma.shape[1]}")
                att.append(partition_attention(ma, parts).numpy())
    return TeacherTargets(np.concatenate(logits).astype(np.float32), np.concatenate(means).astype(np.float32),
                          parts, np.concatenate(att).astype(np.float32) if parts is not None else None)
