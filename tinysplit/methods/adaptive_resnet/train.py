"""Training an AdaptiveNet so that skipping blocks hurts little, and the float skip study.

Drop policies (``DROP_POLICIES``), applied per training batch:
- ``none``: plain training; every block always runs.
- ``stochastic_depth`` (Huang et al. 2016): per sample, block l (of L) runs with probability
  p_l = 1 - (l + 1) / L * (1 - p_L) (linear decay to p_L = ``survival``), its branch scaled by 1/p_l
  when it runs, so that the full network needs no rescaling at test time.
- ``block_drop``: per sample, each block is dropped with probability ``drop`` (the same for every
  block) and never rescaled: the network trains on exactly the sub-networks that skip masks select.
The study (``float_mask_accuracy``) says which helps: docs/adaptive-resnet.md has the figures.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from tinysplit.errors import InputError
from tinysplit.methods.adaptive_resnet.model import AdaptiveNet, HeadConfig

log = logging.getLogger(__name__)

DROP_POLICIES = ("none", "stochastic_depth", "block_drop")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    lr: float = 3e-3
    batch: int = 64
    policy: str = "block_drop"
    survival: float = 0.5  # stochastic depth: p_L, the last block's survival probability
    drop: float = 0.25  # block_drop: each block's drop probability
    seed: int = 20261130
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.policy not in DROP_POLICIES:
            raise InputError(f"unknown drop policy '{self.policy}'; choose one of {', '.join(DROP_POLICIES)}")
        if not 0.0 < self.survival <= 1.0 or not 0.0 <= self.drop < 1.0:
            raise InputError(f"survival must be in (0, 1] and drop in [0, 1), got {self.survival} and {self.drop}")
        if self.epochs < 1 or self.batch < 1:
            raise InputError(f"epochs and batch must be positive, got {self.epochs} and {self.batch}")


def gates_for(policy: str, blocks: int, n: int, g: torch.Generator, survival: float, drop: float,
              device: torch.device | str = "cpu") -> list[torch.Tensor | None] | None:
    """Per-sample branch multipliers (N, 1, 1, 1) for one training batch, or None for ``none``."""
    if policy == "none":
        return None
    gates: list[torch.Tensor | None] = []
    for i in range(blocks):
        p = 1.0 - (i + 1) / blocks * (1.0 - survival) if policy == "stochastic_depth" else 1.0 - drop
        keep = (torch.rand((n, 1, 1, 1), generator=g) < p).float()
        gates.append((keep / p if policy == "stochastic_depth" else keep).to(device))
    return gates


def train_adaptive(config: HeadConfig, x: np.ndarray, y: np.ndarray, tc: TrainConfig = TrainConfig(),
                   classes: int = 10, augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                   device: str = "cpu", say: Callable[[str], None] | None = None) -> AdaptiveNet:
    """Train an AdaptiveNet (Adam, cosine schedule) with the drop policy of ``tc``; fixed seed."""
    torch.manual_seed(tc.seed)
    model = AdaptiveNet(config, classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps = tc.epochs * ((len(x) + tc.batch - 1) // tc.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, tc.lr, total_steps=steps, pct_start=0.15)
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    g = torch.Generator().manual_seed(tc.seed)
    for epoch in range(tc.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), tc.batch):
            idx = perm[i:i + tc.batch]
            xb = xt[idx]
            if augment is not None:
                xb = augment(xb, g)
            gates = gates_for(tc.policy, model.blocks, len(idx), g, tc.survival, tc.drop, device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb.to(device), gates), yt[idx].to(device))
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if say:
            say(f"epoch {epoch + 1}/{tc.epochs} loss {total / len(xt):.3f}")
    model.eval()
    return model.cpu()


def float_mask_accuracy(model: AdaptiveNet, x: np.ndarray, y: np.ndarray, masks: list[int],
                        batch: int = 500) -> dict[int, float]:
    """Float accuracy of ``model`` on (x, y) with each skip mask."""
    model.eval()
    out: dict[int, float] = {}
    saved = model.skip_mask
    try:
        with torch.no_grad():
            for m in masks:
                model.skip_mask = m
                pred = np.concatenate([model(torch.from_numpy(np.asarray(x[i:i + batch], np.float32))).argmax(1).numpy()
                                       for i in range(0, len(x), batch)])
                out[m] = float((pred == y).mean())
    finally:
        model.skip_mask = saved
    return out


def study_masks(blocks: int, exhaustive_up_to: int = 8) -> list[int]:
    """Every mask for up to ``exhaustive_up_to`` blocks; else none, each single block and each pair."""
    if blocks <= exhaustive_up_to:
        return list(range(1 << blocks))
    singles = [1 << i for i in range(blocks)]
    pairs = [(1 << i) | (1 << j) for i in range(blocks) for j in range(i + 1, blocks)]
    return [0, *singles, *pairs]


def config_json(tc: TrainConfig) -> dict:
    return asdict(tc)
