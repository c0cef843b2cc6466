"""NAIR: channel importance of the head's last conv, units, and the order baked into the weights.

METHODS.md (NAIR), paper eq. 8: the importance of output channel c is R_c = ||F_c||_1, the L1 norm
of the filter of the head's last conv that produces it. Channels are grouped into units of ``u``
consecutive channels (a unit's importance is the sum of its channels'); units are sorted by
importance, descending. Baking permutes the head's last conv's output channels and the tail's
first conv's input channels by that order: the float model computes exactly the same function,
and "the first j units" becomes a channel prefix. BatchNorm after the head's last conv is folded
into it first (it would rescale channels and undo the ranking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinysplit.errors import InputError


@dataclass(frozen=True)
class NairOrder:
    unit_channels: int
    channel_importance: tuple[float, ...]  # R_c of the original channels
    unit_importance: tuple[float, ...]  # per original unit
    unit_order: tuple[int, ...]  # original unit index at each position, most important first
    channel_order: tuple[int, ...]  # original channel index at each position

    def method_data(self, default_budget_units: int | None = None) -> dict:
        units = len(self.unit_order)
        return {"nair": {
            "unit_channels": self.unit_channels, "units_total": units,
            "default_budget_units": default_budget_units or units,
            "unit_order": list(self.unit_order),
            "unit_importance_sorted": [round(self.unit_importance[i], 6) for i in self.unit_order],
        }}


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv equal to bn(conv(x)) in eval mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((b - bn.running_mean) * scale + bn.bias)
    return fused


def _get(model: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise InputError(f"{what} '{name}' is not a submodule; its convolutions are: {', '.join(names)}") from None


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def fold_split_batchnorm(head: nn.Module, split_layer: str) -> None:
    """If the module right after ``split_layer`` in its Sequential is a BatchNorm2d, fold it in."""
    parent_name, _, leaf = split_layer.rpartition(".")
    parent = head.get_submodule(parent_name) if parent_name else head
    if isinstance(parent, nn.Sequential):
        keys = list(parent._modules)
        i = keys.index(leaf)
        if i + 1 < len(keys) and isinstance(parent[i + 1], nn.BatchNorm2d):
            _set(head, split_layer, fold_batchnorm(parent[i], parent[i + 1]))
            parent._modules[keys[i + 1]] = nn.Identity()


def channel_importance(conv: nn.Conv2d) -> np.ndarray:
    """R_c = ||F_c||_1 for every output channel c."""
    return conv.weight.detach().abs().sum(dim=(1, 2, 3)).double().numpy()


def compute_order(conv: nn.Conv2d, unit_channels: int) -> NairOrder:
    r = channel_importance(conv)
    c = len(r)
    if unit_channels < 1 or c % unit_channels:
        raise InputError(f"unit size {unit_channels} does not divide the split layer's {c} output channels; "
                         f"choose a divisor of {c}")
    units = r.reshape(c // unit_channels, unit_channels).sum(1)
    order = np.argsort(-units, kind="stable")
    chans = np.concatenate([np.arange(u * unit_channels, (u + 1) * unit_channels) for u in order])
    return NairOrder(unit_channels, tuple(map(float, r)), tuple(map(float, units)), tuple(map(int, order)),
                     tuple(map(int, chans)))


def bake_order(head: nn.Module, split_layer: str, tail: nn.Module, tail_first_layer: str,
               unit_channels: int = 2) -> NairOrder:
    """Fold BN, rank the split layer's channels, permute head output / tail input channels in place."""
    conv = _get(head, split_layer, "split layer")
    if not isinstance(conv, nn.Conv2d):
        raise InputError(f"split layer '{split_layer}' is a {type(conv).__name__}; NAIR ranks the filters of "
                         "the head's last Conv2d: name that layer")
    fold_split_batchnorm(head, split_layer)
    conv = head.get_submodule(split_layer)
    first = _get(tail, tail_first_layer, "tail's first layer")
    if not isinstance(first, nn.Conv2d) or first.groups != 1:
        raise InputError(f"tail's first layer '{tail_first_layer}' must be a Conv2d with groups=1, got "
                         f"{type(first).__name__}")
    if first.in_channels != conv.out_channels:
        raise InputError(f"the split layer '{split_layer}' has {conv.out_channels} output channels but the "
                         f"tail's first layer '{tail_first_layer}' takes {first.in_channels}; they must match")
    order = compute_order(conv, unit_channels)
    idx = torch.tensor(order.channel_order)
    with torch.no_grad():
        conv.weight.copy_(conv.weight[idx])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[idx])
        first.weight.copy_(first.weight[:, idx])
    return order


# --- re-tuning (METHODS.md: eqs. 11-14, Alg. 2) ---------------------------------------------------------

from tinysplit.methods.nair.variants import VARIANTS  # noqa: E402  (no torch: the CLI reads them)


@dataclass(frozen=True)
class RetuneConfig:
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    w_non: float = 2.0
    penalty_fraction: float = 0.05  # lambda is set so that lambda*P is this fraction of the starting loss
    lam: float | None = None  # or give lambda directly
    seed: int = 0
    # None: every sample goes through the tail at every slice count (the exact loss, J tail passes per
    # sample). k: each sample goes through k slice counts drawn with probability w_j / sum(w), and the
    # loss is sum(w) * mean CE, an unbiased estimate of the same loss at k/J of the tail's cost.
    slice_samples: int | None = None
    cosine: bool = False  # anneal the learning rate to 0 along a cosine over the run (else constant)
    # Keep BatchNorm layers in eval mode while re-tuning (normalize with the trained statistics, never
    # update them; affine parameters still train). Off by default: batches mix every slice width, yet
    # per-batch normalization measured better at small budgets (CIFAR-10 NAIR at 1/8 and 1/4: 64.85 and
    # 70.90 with batch statistics, 60.10 and 68.40 frozen; full width equal; docs/nair.md).
    freeze_bn_stats: bool = False


def set_training(module: nn.Module, freeze_bn_stats: bool) -> None:
    """Training mode for ``module``; with ``freeze_bn_stats`` its BatchNorm layers stay in eval mode."""
    module.train()
    if freeze_bn_stats:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def slice_weights(unit_importance_sorted: np.ndarray, w_non: float) -> np.ndarray:
    """w_j = (1 - C_j)^w_non for j < J, w_J = 1, C_j the cumulative normalized importance."""
    r = np.asarray(unit_importance_sorted, dtype=np.float64)
    c = np.cumsum(r) / r.sum()
    w = (1.0 - c) ** w_non
    w[-1] = 1.0
    return w


def penalty(conv: nn.Conv2d, unit_channels: int) -> torch.Tensor:
    """P = sum over all but the most important unit of their filters' L1 norms (order is baked)."""
    return conv.weight[unit_channels:].abs().sum()


def slice_masks(channels: int, unit_channels: int) -> torch.Tensor:
    """(J, C) masks: row j-1 keeps the first j units (pad_j)."""
    units = channels // unit_channels
    keep = torch.arange(channels)[None, :] < (torch.arange(1, units + 1)[:, None] * unit_channels)
    return keep.float()


def slice_losses(features: torch.Tensor, tail: nn.Module, y: torch.Tensor, unit_channels: int) -> torch.Tensor:
    """CE(y, tail(pad_j(features))) for every j = 1..J, as a (J,) tensor (one batched tail pass)."""
    b, c = features.shape[:2]
    masks = slice_masks(c, unit_channels).to(features)  # (J, C)
    j = masks.shape[0]
    padded = (features[None] * masks[:, None, :, None, None]).reshape(j * b, *features.shape[1:])
    logits = tail(padded)
    ce = nn.functional.cross_entropy(logits, y.repeat(j), reduction="none").reshape(j, b)
    return ce.mean(1)


def sampled_slice_loss(features: torch.Tensor, tail: nn.Module, y: torch.Tensor, unit_channels: int,
                       weights: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """An unbiased estimate of sum_j w_j * CE(y, tail(pad_j(features))) from k slice counts per sample.

    Slice count j is drawn with probability w_j / sum(w) (importance sampling), so
    E[sum(w) * CE_j] = sum_j w_j * CE_j; slices with tiny weights are rarely paid for."""
    b, c = features.shape[:2]
    masks = slice_masks(c, unit_channels).to(features)
    if masks.shape[0] != len(weights):
        raise InputError(f"{len(weights)} slice weights for {masks.shape[0]} units")
    j = torch.multinomial(weights / weights.sum(), b * k, replacement=True, generator=generator)
    rows = features.repeat_interleave(k, 0) * masks[j][:, :, None, None]
    ce = nn.functional.cross_entropy(tail(rows), y.repeat_interleave(k), reduction="none")
    return weights.sum() * ce.mean()


def retune(head: nn.Module, tail: nn.Module, split_layer: str, order: NairOrder, x: np.ndarray, y: np.ndarray,
           variant: str, config: RetuneConfig = RetuneConfig(), log=None, augment=None) -> dict:
    """Re-tune head and tail in place for ``variant`` ('sum', 'penalty' or 'nair'); the order is
    already baked and stays fixed. ``augment(batch, generator)``, if given, transforms each training
    batch (e.g. random crops). Returns what was used (weights, lambda, losses)."""
    if variant not in ("sum", "penalty", "nair"):
        raise InputError(f"variant '{variant}' is not re-tuned; re-tuned variants are sum, penalty, nair")
    if config.slice_samples is not None and config.slice_samples < 1:
        raise InputError(f"slice_samples must be at least 1 (or None for every slice), got {config.slice_samples}")
    torch.manual_seed(config.seed)
    conv = head.get_submodule(split_layer)
    u = order.unit_channels
    imp_sorted = np.array([order.unit_importance[i] for i in order.unit_order])
    weights = slice_weights(imp_sorted, config.w_non) if variant == "nair" else np.ones(len(imp_sorted))
    w = torch.tensor(weights, dtype=torch.float32)
    params = list(head.parameters()) + list(tail.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(config.seed)
    lam = 0.0
    if variant in ("penalty", "nair"):
        if config.lam is not None:
            lam = config.lam
        else:
            head.eval()
            tail.eval()
            with torch.no_grad():
                idx = torch.randperm(len(xt), generator=torch.Generator().manual_seed(config.seed))[:256]
                l0 = float((w * slice_losses(head(xt[idx]), tail, yt[idx], u)).sum())
                p0 = float(penalty(conv, u))
            lam = config.penalty_fraction * l0 / max(p0, 1e-12)
    history = []
    steps_total = config.epochs * math.ceil(len(xt) / config.batch_size)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps_total) if config.cosine
             else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    for epoch in range(config.epochs):
        for m in (head, tail):
            set_training(m, freeze_bn_stats=config.freeze_bn_stats)
        perm = torch.randperm(len(xt), generator=g)
        total, steps = 0.0, 0
        for i in range(0, len(xt), config.batch_size):
            bi = perm[i:i + config.batch_size]
            xb = augment(xt[bi], g) if augment else xt[bi]
            opt.zero_grad()
            if config.slice_samples is None:
                loss = (w * slice_losses(head(xb), tail, yt[bi], u)).sum()
            else:
                loss = sampled_slice_loss(head(xb), tail, yt[bi], u, w, config.slice_samples, g)
            if lam:
                loss = loss + lam * penalty(conv, u)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            steps += 1
        history.append(total / max(steps, 1))
        if log:
            log(f"{variant}: epoch {epoch + 1}/{config.epochs} loss {history[-1]:.3f}")
    head.eval()
    tail.eval()
    return {"variant": variant, "slice_weights": [round(float(v), 6) for v in weights], "lambda": lam,
            "epochs": config.epochs, "slice_samples": config.slice_samples, "cosine": config.cosine,
            "freeze_bn_stats": config.freeze_bn_stats,
            "loss_history": [round(v, 5) for v in history]}


def identity_order(conv: nn.Conv2d, unit_channels: int) -> NairOrder:
    """The original channel order, as a NairOrder (the 'original' baseline sends units in this order)."""
    o = compute_order(conv, unit_channels)
    units = len(o.unit_order)
    return NairOrder(unit_channels, o.channel_importance, o.unit_importance, tuple(range(units)),
                     tuple(range(units * unit_channels)))


def prepare_variant(head: nn.Module, tail: nn.Module, split_layer: str, tail_first_layer: str, variant: str,
                    x: np.ndarray, y: np.ndarray, unit_channels: int = 2, config: RetuneConfig = RetuneConfig(),
                    log=None, augment=None) -> tuple[NairOrder, dict]:
    """Apply ``variant`` to (copies of) a trained head and tail, in place: returns (order, info)."""
    if variant == "clio":
        raise InputError("the clio variant trains one tail per width: use tinysplit.methods.nair.clio.progressive_tails "
                         "(nair-eval --variants ...,clio runs it)")
    if variant not in VARIANTS:
        raise InputError(f"unknown NAIR variant '{variant}'; choose from {', '.join(VARIANTS)}")
    if variant == "original":
        fold_split_batchnorm(head, split_layer)
        conv = _get(head, split_layer, "split layer")
        if not isinstance(conv, nn.Conv2d):
            raise InputError(f"split layer '{split_layer}' is a {type(conv).__name__}, not a Conv2d")
        return identity_order(conv, unit_channels), {"variant": variant}
    order = bake_order(head, split_layer, tail, tail_first_layer, unit_channels)
    if variant == "l1_order":
        return order, {"variant": variant}
    return order, retune(head, tail, split_layer, order, x, y, variant, config, log, augment)
