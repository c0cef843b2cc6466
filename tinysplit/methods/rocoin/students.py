"""RoCoIn's students (torch): a small zoo of CNN architectures, the student as a device model, the
host aggregator, and the network of students that trains them jointly.

Every student takes the model input and ends with a conv (+ BatchNorm + ReLU, like the teacher's
final conv) that gives its partition's ``n_k`` channels at the teacher's final-conv resolution; on
the device it then global-average-pools them to ``[1, n_k, 1, 1]`` (its portion). The aggregator
(the host tail) concatenates the K portions in partition order and applies one fully connected
layer. ``StudentNetwork`` holds the K students and the aggregator, as NoNN trains them: jointly,
through the aggregator.

The digits zoo (input 1x8x8, the teacher's final conv at 4x4; sizes grow by about 4x each step):

- ``tiny``:   3x3/2 conv 1->8 (4x4), 3x3 conv 8->n
- ``small``:  3x3 conv 1->8 (8x8), 3x3/2 conv 8->16 (4x4), 3x3 conv 16->n
- ``medium``: 3x3 conv 1->16 (8x8), 3x3/2 conv 16->32 (4x4), 3x3 conv 32->32, 3x3 conv 32->n

All layers are int8-friendly (conv, BatchNorm folded at export, ReLU, average pooling): the exported
device models use only CONV_2D and MEAN / AVERAGE_POOL_2D, which the code generator supports.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from tinysplit.errors import InputError


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def _tiny(n: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(1, 8, 2), conv_bn_relu(8, n))


def _small(n: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(1, 8), conv_bn_relu(8, 16, 2), conv_bn_relu(16, n))


def _medium(n: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(1, 16), conv_bn_relu(16, 32, 2), conv_bn_relu(32, 32), conv_bn_relu(32, n))


# name -> builder of the feature extractor for n output channels; smallest first
DIGITS_ZOO: dict[str, Callable[[int], nn.Module]] = {"tiny": _tiny, "small": _small, "medium": _medium}


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
