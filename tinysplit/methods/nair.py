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
