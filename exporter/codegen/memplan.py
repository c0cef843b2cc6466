"""Static arena planning: liveness analysis and greedy offset assignment, done on the host.

Each activation tensor lives from the kernel call that writes it (or call 0 for the model input)
to the last call that reads it (or past the end for the model output). Tensors whose lifetimes do
not overlap may share memory. RESHAPE outputs alias their input; elementwise kernels that allow
it (ADD/MUL without broadcasting, LOGISTIC, int8 requantize) write over an input whose life ends
at that call; PAD writes backwards over its input; convolutions, which stream rows, write their
output starting a computed number of bytes before their input (see lower.row_shift), so a 1x1
project or a depthwise conv needs little more than its input. A call's scratch (a streamed block's
row window, stream.py) lives during that call only. Buffers are placed one at a time at the lowest
aligned offset that does not collide with an already placed buffer alive at the same time (TFLite
Micro's greedy strategy, without its per-tensor bookkeeping in the arena); the order matters, so
the placement search (place_best) tries several orders (largest, longest-lived, earliest,
latest-dying, largest size x lifetime first) and every order of the five largest buffers, and keeps
the smallest arena.

Skippable residual blocks (``LoweredModel.blocks``): each block's ADD always writes y over its
shortcut x (same offset; x dies there), whatever the sharing limit. A skipped block's calls write
nothing, and y is x's bytes already (requantized in place where their quantizations differ), so one
plan serves every skip mask: the tensors read after a block are the same ones in the same places.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Sequence

from tinysplit.errors import InputError
from tinysplit.exporter.codegen.lower import LoweredModel, row_shift

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


def _row_shift(call) -> int:
    """lower.row_shift for a convolution; a streamed block's own (stream.IrbParams.row_shift)."""
    own = getattr(call.params, "row_shift", None)
    return own() if callable(own) else row_shift(call)


def align_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _overlap(a: BufferRequest | Placement, b: BufferRequest | Placement) -> bool:
    return a.first <= b.last and b.first <= a.last


# Orders tried by the placement search (place_best): each is a sort key over the requests.
ORDERS = {
    "size": lambda r: (-r.size, r.first, r.key),                        # TFLite Micro's greedy order
    "lifetime": lambda r: (-(r.last - r.first), -r.size, r.key),        # longest-lived first
    "first_use": lambda r: (r.first, -r.size, r.key),                   # in execution order
    "area": lambda r: (-r.size * (r.last - r.first + 1), r.key),        # size x lifetime
    "last_use": lambda r: (-r.last, -r.size, r.key),                    # latest-dying first
}
EXACT_TOP = 5  # place_best also tries every order of this many largest buffers (5! = 120 placements)


def place_buffers(requests: Sequence[BufferRequest], alignment: int = DEFAULT_ALIGNMENT,
                  order: str | Sequence[BufferRequest] = "size") -> tuple[tuple[Placement, ...], int]:
    """Greedy placement in one order (a name in ORDERS, or the requests in the order to place them):
    each buffer at the lowest aligned offset free during its lifetime. Returns the placements and
    the arena size (aligned)."""
    if alignment <= 0 or alignment & (alignment - 1):
        raise InputError(f"alignment {alignment} must be a power of two")
    if isinstance(order, str):
        if order not in ORDERS:
            raise InputError(f"placement order '{order}' is not one of {', '.join(ORDERS)}")
        seq = sorted(requests, key=ORDERS[order])
    else:
        seq = list(order)
        if sorted(r.key for r in seq) != sorted(r.key for r in requests):
            raise InputError("a placement order must list every request exactly once")
    placed: list[Placement] = []
    for r in seq:
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


def place_best(requests: Sequence[BufferRequest], alignment: int = DEFAULT_ALIGNMENT,
               exact_top: int = EXACT_TOP) -> tuple[tuple[Placement, ...], int]:
    """Placement search: greedy placement in every order of ORDERS, and every order of the
    ``exact_top`` largest buffers (placed first, the rest largest first); the smallest arena wins
    (ties: the first found, so "size", the old planner's order, wins a tie)."""
    best = place_buffers(requests, alignment, "size")
    for name in ORDERS:
        got = place_buffers(requests, alignment, name)
        if got[1] < best[1]:
            best = got
    by_size = sorted(requests, key=ORDERS["size"])
    top, rest = by_size[:exact_top], by_size[exact_top:]
    lower_bound = _peak(requests, alignment)
    for perm in itertools.permutations(top):
        if best[1] <= lower_bound:
            break
        got = place_buffers(requests, alignment, list(perm) + rest)
        if got[1] < best[1]:
            best = got
    return best


def _peak(requests: Sequence[BufferRequest], alignment: int) -> int:
    """No placement beats the largest total of aligned sizes alive at one call."""
    steps = {r.first for r in requests}
    return max((sum(align_up(r.size, alignment) for r in requests if r.first <= t <= r.last) for t in steps),
               default=0)


@dataclass
class _Group:
    """Tensors sharing one buffer, each at a byte offset relative to the buffer's start."""

    rel: dict[int, int]
    size: int
    first: int
    last: int


def plan_model(model: LoweredModel, alignment: int = DEFAULT_ALIGNMENT, reuse: bool = True,
               search: bool = True) -> MemoryPlan:
    """Plan the arena of a lowered model: the smallest of a few sharing strategies (each one checked).

    Joining tensors into one buffer saves memory at that call but makes the buffer rigid for its
    whole life, so long chains of joins can cost more than they save; the planner tries limits on
    the number of tensors per buffer (and no sharing at all) and keeps the smallest arena.
    ``search``: place each strategy's buffers with the placement search (place_best); False: the
    single largest-first greedy order (the planner before the search, kept for comparison)."""
    limits: tuple[int | None, ...] = (None, 2, 3, 4, 6) if reuse else (0,)
    best: MemoryPlan | None = None
    for limit in limits:
        plan = _plan(model, alignment, limit, search)
        check_plan(model, plan)
        if best is None or plan.arena_bytes < best.arena_bytes:
            best = plan
    assert best is not None
    return best


def _plan(model: LoweredModel, alignment: int, max_group: int | None, search: bool = True) -> MemoryPlan:
    """One strategy: ``max_group`` tensors per buffer at most (None: no limit; 0: aliases only)."""
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
        for sc in c.scratch:  # working memory of this call only
            first[sc] = last[sc] = step
    group_of = {i: i for i in sizes}
    groups = {i: _Group({i: 0}, sizes[i], first.get(i, 0), last.get(i, first.get(i, 0))) for i in sizes}

    def join(into: int, out: int, rel: int) -> None:
        """Move the (fresh, single-tensor) group of ``out`` into the group holding ``into``."""
        g = groups[group_of[into]]
        if rel < 0:  # shift the existing members so every offset stays >= 0
            g.rel = {k: v - rel for k, v in g.rel.items()}
            g.size -= rel
            rel = 0
        old = groups.pop(group_of[out])
        g.rel[out] = rel
        g.size = max(g.size, rel + sizes[out])
        g.first, g.last = min(g.first, old.first), max(g.last, old.last)
        group_of[out] = group_of[into]

    closes = {b.add_op: b for b in model.blocks}
    for step, c in enumerate(model.calls):
        out = c.output
        if c.alias:
            join(c.inputs[0], out, groups[group_of[c.inputs[0]]].rel[c.inputs[0]])
            continue
        b = closes.get(c.op_index)
        if b is not None:  # a skippable block's ADD writes y over x: a skip leaves y in place
            g = groups[group_of[b.input]]
            if g.last != step or group_of[out] != out or first.get(out) != step:
                raise AssertionError(f"block {b.index}: x (tensor {b.input}) must die at its ADD (call {step})")
            join(b.input, out, g.rel[b.input])
            continue
        if max_group == 0 or not c.reuse or group_of[out] != out or len(groups[out].rel) != 1 or first.get(out) != step:
            continue
        candidates = c.inputs if c.reuse == "elementwise" else c.inputs[:1]
        for i in candidates:
            if i not in sizes or i == model.input or i == out:  # keep the model input intact for the first call
                continue
            g = groups[group_of[i]]
            if g.last != step:
                continue  # the input (or an alias of it) is still needed later
            if max_group is not None and len(g.rel) >= max_group:
                continue
            r = g.rel[i]
            if c.reuse == "elementwise" and sizes[i] == sizes[out]:
                join(i, out, r)
            elif c.reuse == "grow" and sizes[out] >= sizes[i]:
                join(i, out, r)
            elif c.reuse == "rows":  # start at least row_shift bytes before the input, aligned
                join(i, out, -align_up(_row_shift(c) - r, alignment))
            else:
                continue
            break
    requests = [BufferRequest(root, g.size, g.first, g.last) for root, g in groups.items()]
    placements, arena = place_best(requests, alignment) if search else place_buffers(requests, alignment)
    offsets = {}
    for p in placements:
        for i, rel in groups[p.key].rel.items():
            offsets[i] = p.offset + rel
    log.debug("arena %d bytes for %d tensors in %d buffers", arena, len(sizes), len(placements))
    return MemoryPlan(arena, alignment, offsets, placements,
                      {k: tuple(sorted(g.rel)) for k, g in groups.items()})


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
    for b in model.blocks:  # every skip mask is valid: a skipped block leaves y = x in place
        if plan.offsets[b.input] != plan.offsets[b.output]:
            raise AssertionError(f"block {b.index}: x (tensor {b.input}) and y (tensor {b.output}) are not at one offset")
    sizes = {t.index: t.nbytes for t in model.tensors}
    for c in model.calls:  # a call's output overlaps an input only where its kernel allows it
        o = c.output
        for sc in c.scratch:  # scratch overlaps nothing the call reads or writes
            for t in (*c.inputs, o):
                if t in sizes and plan.offsets[sc] < plan.offsets[t] + sizes[t] and \
                        plan.offsets[t] < plan.offsets[sc] + sizes[sc]:
                    raise AssertionError(f"call {c.opcode} #{c.op_index}: scratch {sc} overlaps tensor {t}")
        for i in c.inputs:
            if i not in sizes or i == o:
                continue
            lo, hi = max(plan.offsets[i], plan.offsets[o]), min(plan.offsets[i] + sizes[i], plan.offsets[o] + sizes[o])
            if lo < hi:
                ok = (c.alias or (c.reuse == "elementwise" and plan.offsets[i] == plan.offsets[o]) or
                      (c.reuse == "grow" and plan.offsets[i] == plan.offsets[o] and i == c.inputs[0]) or
                      (c.reuse == "rows" and i == c.inputs[0] and plan.offsets[i] - plan.offsets[o] >= _row_shift(c)))
                if not ok:
                    raise AssertionError(f"call {c.opcode} #{c.op_index}: output {o} overlaps input {i}")
