"""The Adaptive ResNet split model: a residual head on the device whose identity blocks can be skipped,
and a small tail on the host.

Head: a 3x3 stem (conv + BN + ReLU), then stages of ``ResBlock`` s (y = ReLU(x + BN(conv(ReLU(BN(conv
x)))))), consecutive stages joined by a stride-2 ``conv_bn_relu`` (not a residual block: the
channel count changes, so there is no identity shortcut to keep). Only the ResBlocks are skippable;
block i of the skip mask is the i-th ResBlock in forward order, which is also the i-th identity
block the code generator finds in the int8 model (exporter/codegen/blocks.py; the export checks it).
Tail (host): global average pooling and a linear classifier.

Skipping in PyTorch (``AdaptiveNet.skip_mask``) runs y = x for a skipped block: what the device runs.
Training may drop blocks at random (``train.DROP_POLICIES``) so that skipping hurts less.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ResBlock(nn.Module):
    """Identity-shortcut basic block; ``gate`` (a (N,1,1,1) tensor or None) scales the branch in training."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        f = self.branch(x)
        if gate is not None:
            f = f * gate
        return torch.relu(x + f)


@dataclass(frozen=True)
class HeadConfig:
    in_channels: int
    stem: int  # stem channels (= the first stage's)
    stages: tuple[tuple[int, int], ...]  # (channels, ResBlocks) per stage

    @property
    def blocks(self) -> int:
        return sum(n for _, n in self.stages)

    def to_json(self) -> dict:
        return {"in_channels": self.in_channels, "stem": self.stem, "stages": [list(s) for s in self.stages]}


DIGITS = HeadConfig(in_channels=1, stem=16, stages=((16, 2), (32, 2)))  # 8x8 -> 4x4x32, 4 blocks
# 32x32 -> 8x8x32, 7 blocks, about 9 M multiply-accumulates: a few tenths of a second on an 80 MHz Cortex-M4
CIFAR10 = HeadConfig(in_channels=3, stem=8, stages=((8, 3), (16, 2), (32, 2)))


class AdaptiveHead(nn.Module):
    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [conv_bn_relu(config.in_channels, config.stem)]
        ch = config.stem
        for k, (c, n) in enumerate(config.stages):
            if k > 0 or c != ch:
                layers.append(conv_bn_relu(ch, c, stride=2 if k > 0 else 1))
            layers.extend(ResBlock(c) for _ in range(n))
            ch = c
        self.layers = nn.ModuleList(layers)
        self.blocks = [m for m in self.layers if isinstance(m, ResBlock)]  # plain list: no double registration
        self.out_channels = ch
        self.skip_mask = 0

    def forward(self, x: torch.Tensor, gates: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        i = 0
        for m in self.layers:
            if isinstance(m, ResBlock):
                if not self.skip_mask >> i & 1:
                    x = m(x, None if gates is None else gates[i])
                i += 1
            else:
                x = m(x)
        return x


class AdaptiveTail(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(h), 1))


class AdaptiveNet(nn.Module):
    def __init__(self, config: HeadConfig, classes: int = 10) -> None:
        super().__init__()
        self.head = AdaptiveHead(config)
        self.tail = AdaptiveTail(self.head.out_channels, classes)

    @property
    def blocks(self) -> int:
        return len(self.head.blocks)

    @property
    def skip_mask(self) -> int:
        return self.head.skip_mask

    @skip_mask.setter
    def skip_mask(self, mask: int) -> None:
        from tinysplit.exporter.codegen.blocks import check_mask

        self.head.skip_mask = check_mask(mask, self.blocks)

    def forward(self, x: torch.Tensor, gates: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        return self.tail(self.head(x, gates))

    def info(self) -> dict:
        return {"config": self.head.config.to_json(), "blocks": self.blocks,
                "parameters": sum(p.numel() for p in self.parameters())}


__all__ = ["AdaptiveHead", "AdaptiveNet", "AdaptiveTail", "CIFAR10", "DIGITS", "HeadConfig", "ResBlock"]
