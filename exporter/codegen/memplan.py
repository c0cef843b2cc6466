"""Static arena planning: liveness analysis and greedy offset assignment, done on the host.

Each activation tensor lives from the kernel call that writes it (or call 0 for the model input)
to the last call that reads it (or past the end for the model output). Tensors whose lifetimes do
not overlap may share memory. RESHAPE outputs alias their input; elementwise kernels that allow
it (ADD/MUL without broadcasting, LOGISTIC, int8 requantize) write over an input whose life ends
at that call. Buffers are placed largest first at the lowest aligned offset that does not
collide with an already placed buffer alive at the same time (the strategy of TFLite Micro's
greedy planner, without its per-tensor bookkeeping in the arena).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from tinysplit.errors import InputError
from tinysplit.exporter.codegen.lower import LoweredModel

log = logging.getLogger(__name__)

DEFAULT_ALIGNMENT = 16


@dataclass(frozen=True)
class BufferRequest:
    """One block of memory needed from call ``first`` to call ``last`` (inclusive)."""

    key: int
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class Placement:
    key: int
    offset: int
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class MemoryPlan:
    arena_bytes: int
    alignment: int
    offsets: dict[int, int]  # tensor index -> byte offset in the arena
    placements: tuple[Placement, ...]  # one per buffer (aliased tensors share one)
    groups: dict[int, tuple[int, ...]]  # buffer key -> tensor indices stored there


def align_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _overlap(a: BufferRequest | Placement, b: BufferRequest | Placement) -> bool:
    return a.first <= b.last and b.first <= a.last


def place_buffers(requests: Sequence[BufferRequest], alignment: int = DEFAULT_ALIGNMENT) -> tuple[tuple[Placement, ...], int]:
    """Greedy placement, largest first; returns the placements and the arena size (aligned)."""
    if alignment <= 0 or alignment & (alignment - 1):
        raise InputError(f"alignment {alignment} must be a power of two")
    placed: list[Placement] = []
    order = sorted(requests, key=lambda r: (-r.size, r.first, r.key))
    for r in order:
        if r.size <= 0 or r.first > r.last:
            raise InputError(f"buffer {r.key}: size {r.size} and lifetime [{r.first}, {r.last}] are not valid")
        live = sorted((p for p in placed if _overlap(p, r)), key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + r.size <= p.offset:
                break
            offset = max(offset, align_up(p.offset + p.size, alignment))
        placed.append(Placement(r.key, offset, r.size, r.first, r.last))
    arena = align_up(max((p.offset + p.size for p in placed), default=0), alignment)
    return tuple(sorted(placed, key=lambda p: p.offset)), arena


class _Groups:
    """Union-find over tensor indices (aliases and in-place outputs share one buffer)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        self.parent.setdefault(i, i)
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, keep: int, other: int) -> None:
        self.parent[self.find(other)] = self.find(keep)


def plan_model(model: LoweredModel, alignment: int = DEFAULT_ALIGNMENT, inplace: bool = True) -> MemoryPlan:
    """Plan the arena of a lowered model."""
    sizes = {t.index: t.nbytes for t in model.tensors}
    n = len(model.calls)
    first: dict[int, int] = {model.input: 0}
    last: dict[int, int] = {model.output: n}
    for step, c in enumerate(model.calls):
        for i in c.inputs:
            if i in sizes:
                first.setdefault(i, step)
                last[i] = max(last.get(i, step), step)
        first.setdefault(c.output, step)
        last[c.output] = max(last.get(c.output, step), step)
    g = _Groups()
    for i in sizes:
        g.find(i)
    group_last = {i: last.get(i, first.get(i, 0)) for i in sizes}
    group_first = {i: first.get(i, 0) for i in sizes}

    def merge(keep: int, other: int) -> None:
        rk, ro = g.find(keep), g.find(other)
        if rk == ro:
            return
        g.union(rk, ro)
        group_last[rk] = max(group_last[rk], group_last[ro])
        group_first[rk] = min(group_first[rk], group_first[ro])

    for step, c in enumerate(model.calls):
        if c.alias:
            merge(c.inputs[0], c.output)
            continue
        if not (inplace and c.inplace) or g.find(c.output) != c.output:
            continue
        for i in c.inputs:
            if i not in sizes or i == model.input:  # keep the model input intact through invoke
                continue
            root = g.find(i)
            same_size = sizes[c.output] == max(sizes[j] for j in sizes if g.find(j) == root)
            if same_size and group_last[root] == step and first.get(c.output) == step:
                merge(i, c.output)
                break
    members: dict[int, list[int]] = {}
    for i in sizes:
        members.setdefault(g.find(i), []).append(i)
    requests = [BufferRequest(root, max(sizes[i] for i in ms), group_first[root], group_last[root])
                for root, ms in members.items()]
    placements, arena = place_buffers(requests, alignment)
    offsets = {}
    for p in placements:
        for i in members[p.key]:
            offsets[i] = p.offset
    log.debug("arena %d bytes for %d tensors in %d buffers", arena, len(sizes), len(placements))
    return MemoryPlan(arena, alignment, offsets, placements, {k: tuple(sorted(v)) for k, v in members.items()})


def check_plan(model: LoweredModel, plan: MemoryPlan) -> None:
    """Independent check of a plan: tensors alive together never overlap unless they are one buffer."""
    for p in plan.placements:
        if p.offset % plan.alignment or p.offset + p.size > plan.arena_bytes:
            raise AssertionError(f"buffer {p.key} at {p.offset}+{p.size} breaks alignment or the arena")
    for a in plan.placements:
        for b in plan.placements:
            if a.key < b.key and _overlap(a, b):
                if a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                    raise AssertionError(f"buffers {a.key} and {b.key} are alive together and overlap")
