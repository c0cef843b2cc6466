"""CLIO-style progressive training: one tail per slice count, for comparison with NAIR.

CLIO (Huang et al., MobiCom 2020) makes a split model's intermediate representation usable at any
width by training it progressively. As tinysplit implements it for comparison (METHODS.md, NAIR:
"optionally CLIO-style progressive training with one tail per slice count"):

- the L1 importance order is baked in exactly as for NAIR (same units, same slices on the wire);
- the head is frozen except the split layer's filters, and for j = 1..J in turn only the filters of
  unit j are trained, together with a tail of its own (a copy of the trained tail) on the first j
  units (zero-filled as on the wire): a unit's filters never change after its step, so the tails of
  earlier widths stay valid;
- the host then runs tail j on a sample that arrived with j units.

The cost is J tails on the host (J times the tail's parameters) and J training passes; NAIR keeps one
tail. ``tail_parameters`` gives the comparison's number.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tinysplit.errors import InputError
from tinysplit.methods.nair.order import NairOrder, RetuneConfig, bake_order, slice_masks


def tail_parameters(tails: list[nn.Module]) -> int:
    return sum(p.numel() for t in tails for p in t.parameters())


def progressive_tails(head: nn.Module, tail: nn.Module, split_layer: str, tail_first_layer: str, x: np.ndarray,
                      y: np.ndarray, unit_channels: int = 2, config: RetuneConfig = RetuneConfig(), log=None,
                      augment=None) -> tuple[NairOrder, list[nn.Module], dict]:
    """Bake the L1 order into ``head`` (in place) and train it progressively with one tail per width.

    Returns (order, tails, info); ``tails[j-1]`` is the tail for j units. ``tail`` itself is left as
    the baked copy every per-width tail starts from."""
    if config.epochs < 1:
        raise InputError(f"CLIO needs at least 1 epoch per width, got {config.epochs}")
    order = bake_order(head, split_layer, tail, tail_first_layer, unit_channels)
    conv = head.get_submodule(split_layer)
    for p in head.parameters():
        p.requires_grad_(False)
    trained = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    for p in trained:
        p.requires_grad_(True)
    u, units = order.unit_channels, len(order.unit_order)
    masks = slice_masks(conv.out_channels, u)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    tails: list[nn.Module] = []
    losses: list[float] = []
    head.eval()  # BatchNorm statistics of the frozen layers stay as trained
    try:
        for j in range(1, units + 1):
            t = copy.deepcopy(tail).train()
            rows = torch.zeros(conv.out_channels, dtype=torch.bool)
            rows[(j - 1) * u:j * u] = True  # only unit j's filters learn at this step
            hooks = [p.register_hook(lambda grad, keep=rows: grad * keep.reshape(-1, *([1] * (grad.dim() - 1))))
                     for p in trained]
            opt = torch.optim.Adam(trained + list(t.parameters()), lr=config.lr)
            mask = masks[j - 1][None, :, None, None]
            total, steps = 0.0, 0
            for _ in range(config.epochs):
                perm = torch.randperm(len(xt), generator=g)
                for i in range(0, len(xt), config.batch_size):
                    bi = perm[i:i + config.batch_size]
                    xb = augment(xt[bi], g) if augment else xt[bi]
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(t(head(xb) * mask), yt[bi])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                    steps += 1
            for h in hooks:
                h.remove()
            tails.append(t.eval())
            losses.append(round(total / max(steps, 1), 5))
            if log:
                log(f"clio: width {j}/{units} loss {losses[-1]:.3f}")
    finally:
        for p in head.parameters():
            p.requires_grad_(True)
    info = {"variant": "clio", "epochs_per_width": config.epochs, "tails": units,
            "tail_parameters": tail_parameters(tails), "loss_per_width": losses}
    return order, tails, info
