"""RoCoIn's students (torch): student zoos of small CNN architectures, the student as a device
model, the host aggregator, and the network of students that trains them jointly.

Every student takes the model input and ends with a conv (+ BatchNorm + ReLU, like the teacher's
final conv) that gives its partition's ``n_k`` channels at the teacher's final-conv resolution; on
the device it then global-average-pools them to ``[1, n_k, 1, 1]`` (its portion). The aggregator
(the host tail) concatenates the K portions in partition order and applies one fully connected
layer. ``StudentNetwork`` holds the K students and the aggregator, as NoNN trains them: jointly,
through the aggregator.

A zoo maps architecture names (smallest first) to builders ``n -> feature extractor``; each zoo is
for one input shape and one final-conv resolution, which ``check_zoo`` verifies. Two ship here:

The digits zoo ``DIGITS_ZOO`` (input 1x8x8, the teacher's final conv at 4x4; sizes grow by about 4x
each step):

- ``tiny``:   3x3/2 conv 1->8 (4x4), 3x3 conv 8->n
- ``small``:  3x3 conv 1->8 (8x8), 3x3/2 conv 8->16 (4x4), 3x3 conv 16->n
- ``medium``: 3x3 conv 1->16 (8x8), 3x3/2 conv 16->32 (4x4), 3x3 conv 32->32, 3x3 conv 32->n

The CIFAR-10 zoo ``CIFAR10_ZOO`` (input 3x32x32, the final conv at 8x8 like the MobileNetV2-style
benchmark teacher's; about 24 K, 61 K and 260 K weights at n = 64):

- ``tiny``:   3x3/2 conv 3->16 (16x16), 3x3/2 conv 16->32 (8x8), 3x3 conv 32->n
- ``small``:  3x3 conv 3->16 (32x32), 3x3/2 conv 16->32 (16x16), 3x3/2 conv 32->64 (8x8), 3x3 conv 64->n
- ``medium``: 3x3/2 conv 3->32 (16x16), 3x3 conv 32->64, 3x3/2 conv 64->96 (8x8), 3x3 conv 96->128,
  3x3 conv 128->n

As int8 at n = 96 the code generator gives them 40,004 / 89,232 / 316,300 B of flash and 11,584 /
25,664 / 29,696 B of arena (at n = 253: 92,756 / 187,200 / 504,700 and 21,632 / 28,864 / 30,464), so
the largest fits a Cortex-M4 with 1 MB of flash and 128 KB of RAM, and 'small' always needs more
arena than 'tiny' (its full-resolution first layer), which the CIFAR-10 fleet's smallest devices use
to tell them apart; on qemu-mps2-an386 they take 15.1, 45.1 and 139.4 million instructions per
inference at n = 96.

All layers are int8-friendly (conv, BatchNorm folded at export, ReLU, average pooling): the exported
device models use only PAD, CONV_2D and MEAN / AVERAGE_POOL_2D, which the code generator supports.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from tinysplit.errors import InputError


Zoo = dict[str, Callable[[int], nn.Module]]  # architecture name -> builder of the feature extractor for n outputs


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def conv_stack(in_channels: int, layers: Sequence[tuple[int, int]]) -> Callable[[int], nn.Sequential]:
    """A builder of 3x3 conv + BatchNorm + ReLU layers, one per (out channels, stride) of ``layers``,
    then a 3x3 conv + BatchNorm + ReLU to the n output channels."""
    def build(n: int) -> nn.Sequential:
        mods, c = [], in_channels
        for cout, stride in layers:
            mods.append(conv_bn_relu(c, cout, stride))
            c = cout
        mods.append(conv_bn_relu(c, n))
        return nn.Sequential(*mods)

    return build


# name -> builder of the feature extractor for n output channels; smallest first
DIGITS_ZOO: Zoo = {"tiny": conv_stack(1, [(8, 2)]), "small": conv_stack(1, [(8, 1), (16, 2)]),
                   "medium": conv_stack(1, [(16, 1), (32, 2), (32, 1)])}
DIGITS_INPUT, DIGITS_MAPS = (1, 8, 8), (4, 4)

CIFAR10_ZOO: Zoo = {"tiny": conv_stack(3, [(16, 2), (32, 2)]),
                    "small": conv_stack(3, [(16, 1), (32, 2), (64, 2)]),
                    "medium": conv_stack(3, [(32, 2), (64, 1), (96, 2), (128, 1)])}
CIFAR10_INPUT, CIFAR10_MAPS = (3, 32, 32), (8, 8)


def check_zoo(zoo: Zoo, input_shape: Sequence[int], maps_hw: Sequence[int]) -> None:
    """Every architecture of ``zoo`` must take ``input_shape`` (C, H, W) and give n maps at
    ``maps_hw`` (the teacher's final-conv resolution, which activation transfer needs); InputError
    naming the first one that does not."""
    if not zoo:
        raise InputError("the student zoo is empty")
    x = torch.zeros(1, *(int(d) for d in input_shape))
    for arch, build in zoo.items():
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():  # the caller's random state stays as it was
                out = build(2).eval()(x)
        except RuntimeError as e:
            raise InputError(f"student architecture '{arch}' does not take inputs of shape {tuple(input_shape)}: "
                             f"{str(e).splitlines()[0]}") from None
        if out.dim() != 4 or tuple(out.shape[1:]) != (2, *(int(d) for d in maps_hw)):
            raise InputError(f"student architecture '{arch}' gives maps of shape {tuple(out.shape[1:])} at n = 2 on "
                             f"inputs {tuple(input_shape)}; it must give (n, {', '.join(str(d) for d in maps_hw)}), "
                             "the teacher's final-conv resolution")


class Student(nn.Module):
    """A student: ``features(x)`` gives its n_k final-conv maps (N, n_k, H, W); ``forward(x)`` their
    global average (N, n_k, 1, 1), the portion it sends (what the device model computes)."""

    def __init__(self, arch: str, n_out: int, zoo: dict[str, Callable[[int], nn.Module]] | None = None) -> None:
        super().__init__()
        zoo = DIGITS_ZOO if zoo is None else zoo
        if arch not in zoo:
            raise InputError(f"unknown student architecture '{arch}'; the zoo has {', '.join(zoo)}")
        if n_out < 1:
            raise InputError(f"a student needs at least one output channel, got {n_out}")
        self.arch, self.n_out = arch, n_out
        self.body = zoo[arch](n_out)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


class Aggregator(nn.Module):
    """The host tail: the K portions (N, n_k, 1, 1) (or (N, n_k)) concatenated in partition order,
    then one fully connected layer -> logits. A missing portion is zero-filled by the caller."""

    def __init__(self, sizes: Sequence[int], classes: int) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.fc = nn.Linear(sum(self.sizes), classes)

    def forward(self, *portions: torch.Tensor) -> torch.Tensor:
        if len(portions) != len(self.sizes):
            raise ValueError(f"the aggregator takes {len(self.sizes)} portions, got {len(portions)}")
        return self.fc(torch.cat([p.reshape(p.shape[0], -1) for p in portions], dim=1))


class StudentNetwork(nn.Module):
    """K students (partition order) and the aggregator. ``forward(x, keep)`` returns the logits
    and each student's maps; ``keep`` (N, K) of 0/1 zero-fills the portions of missing partitions."""

    def __init__(self, archs: Sequence[str], partitions: Sequence[Sequence[int]], classes: int,
                 zoo: dict[str, Callable[[int], nn.Module]] | None = None) -> None:
        super().__init__()
        if len(archs) != len(partitions) or not archs:
            raise InputError(f"one architecture per partition: {len(archs)} architectures, {len(partitions)} "
                             "partitions")
        self.partitions = tuple(tuple(int(f) for f in p) for p in partitions)
        self.students = nn.ModuleList(Student(a, len(p), zoo) for a, p in zip(archs, self.partitions))
        self.aggregator = Aggregator([len(p) for p in self.partitions], classes)

    @property
    def archs(self) -> tuple[str, ...]:
        return tuple(s.arch for s in self.students)

    def portions(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [s(x) for s in self.students]

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = [s.features(x) for s in self.students]
        pooled = [m.mean(dim=(2, 3)) for m in maps]
        if keep is not None:
            pooled = [p * keep[:, k:k + 1] for k, p in enumerate(pooled)]
        return self.aggregator(*pooled), maps
