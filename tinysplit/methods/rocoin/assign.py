"""Student assignment (papers/rocoin.md sec. IV-B.3, eq. 5): device groups matched one to one with
knowledge partitions by Kuhn-Munkres, each group running the best student that fits it.

For group G_k and partition P_k' the weight is

    w(G_k, P_k') = max over students s_j in S_k of  R_j / (|P_k'| * (R_j / c_core + Q_j / r))

- S_k: the students that fit every device of the group: weights (``const_bytes``) within the
  group's smallest flash for a model and arena (``arena_bytes``) within its smallest RAM for a
  model (``FleetDevice.model_flash_bytes`` / ``model_ram_bytes``: the firmware's own reserve is
  already taken off);
- R_j / c_core: the compute time on the group's slowest device for that student: the largest
  instructions(s_j, board of d) / clock(d) over the group's devices (one instruction per cycle);
  R_j is that device's instruction count (measured in QEMU on its board) and c_core its clock;
- Q_j / r: the student's output (its portion) as it travels (``latency.wire_bytes``, in bits) over
  the group's slowest link r;
- |P_k'|: the partition's size, its number of filters (the paper's C^para(P_k')).

Reading of the paper: R_j is the student's computation load; in the numerator it stands for the
student's capacity ("a larger model for a smaller knowledge partition often yields better
representation", so R_j / |P_k'| is capacity per unit of knowledge) and in the denominator for its
run time, so the weight is capacity per unit of knowledge over the delay. The paper writes
c_n^core and r_n of "the" device; a group's portion must arrive whichever replica survives, so
the slowest device and the slowest link of the group stand for it.

``scipy.optimize.linear_sum_assignment(W, maximize=True)`` pairs the groups with the partitions;
each group then gets the student that gave its pair's weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinysplit.errors import InputError
from tinysplit.methods.rocoin.grouping import DeviceGroup
from tinysplit.methods.rocoin.latency import compute_seconds, link_seconds
from tinysplit.methods.rocoin.zoo import StudentProfile


@dataclass(frozen=True)
class Choice:
    """A student for a (group, partition) pair and its eq. (5) weight."""

    student: str
    weight: float
    instructions: int  # R_j: on the group's slowest device for it
    compute_s: float  # R_j / c_core
    link_s: float  # Q_j / r


@dataclass(frozen=True)
class Assignment:
    group: int  # DeviceGroup.index
    partition: int  # index into the partitions
    choice: Choice


def fits(student: StudentProfile, group: DeviceGroup) -> bool:
    return student.const_bytes <= group.model_flash_bytes and student.arena_bytes <= group.model_ram_bytes


def fitting_students(group: DeviceGroup, zoo: Sequence[StudentProfile]) -> tuple[StudentProfile, ...]:
    """S_k: the students that fit every device of ``group``; InputError naming the group, its
    devices, its smallest memory and the smallest students' needs when none does."""
    if not zoo:
        raise InputError("the student zoo is empty; give at least one student")
    ok = tuple(s for s in zoo if fits(s, group))
    if ok:
        return ok
    by_ram = min(zoo, key=lambda s: (s.arena_bytes, s.const_bytes))
    by_flash = min(zoo, key=lambda s: (s.const_bytes, s.arena_bytes))
    need = f"'{by_ram.name}' (flash {by_ram.const_bytes:,} B, arena {by_ram.arena_bytes:,} B)"
    if by_flash is not by_ram:
        need += f"; the least flash: '{by_flash.name}' (flash {by_flash.const_bytes:,} B, arena " \
                f"{by_flash.arena_bytes:,} B)"
    raise InputError(f"no student fits {group.describe()}: its smallest device has {group.model_flash_bytes:,} B of "
                     f"flash and {group.model_ram_bytes:,} B of RAM for a model (after the firmware's reserve); the "
                     f"student with the least RAM needs {need}; add a smaller student or give the group's devices "
                     "more memory")


def choice(group: DeviceGroup, part_size: int, student: StudentProfile) -> Choice:
    """Eq. (5)'s term for one student (assumed to fit)."""
    if part_size < 1:
        raise InputError(f"a partition must hold at least one filter, got {part_size}")
    slowest = max(group.devices, key=lambda d: compute_seconds(student.instructions_on(d.board), d.clock_hz))
    r_j = student.instructions_on(slowest.board)
    compute_s = compute_seconds(r_j, slowest.clock_hz)
    link_s = link_seconds(student.output_bytes, min(d.link_rate_bps for d in group.devices))
    return Choice(student.name, r_j / (part_size * (compute_s + link_s)), r_j, compute_s, link_s)


def best_choice(group: DeviceGroup, part_size: int, zoo: Sequence[StudentProfile]) -> Choice:
    """The fitting student of largest weight (the first in zoo order on a tie)."""
    best: Choice | None = None
    for s in fitting_students(group, zoo):
        c = choice(group, part_size, s)
        if best is None or c.weight > best.weight:
            best = c
    assert best is not None
    return best


def weight_matrix(groups: Sequence[DeviceGroup], part_sizes: Sequence[int],
                  zoo: Sequence[StudentProfile]) -> tuple[np.ndarray, list[list[Choice]]]:
    """W[k, k'] = w(G_k, P_k') and the student behind each entry."""
    choices = [[best_choice(g, n, zoo) for n in part_sizes] for g in groups]
    return np.array([[c.weight for c in row] for row in choices], dtype=np.float64).reshape(
        len(groups), len(part_sizes)), choices


def match(W: np.ndarray) -> tuple[int, ...]:
    """The partition of each group (row) that maximizes the total weight (Kuhn-Munkres, square W)."""
    from scipy.optimize import linear_sum_assignment

    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] < 1:
        raise InputError(f"the weight matrix must be square (groups x partitions), got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise InputError("the weight matrix holds NaN or infinite values")
    rows, cols = linear_sum_assignment(W, maximize=True)
    out = [0] * len(rows)
    for r, c in zip(rows, cols):
        out[int(r)] = int(c)
    return tuple(out)


def assign(groups: Sequence[DeviceGroup], part_sizes: Sequence[int],
           zoo: Sequence[StudentProfile]) -> tuple[Assignment, ...]:
    """One partition and one student per group, maximizing the total eq. (5) weight."""
    k, p = len(groups), len(part_sizes)
    devices = sum(len(g.devices) for g in groups)
    if k < p:
        raise InputError(f"fewer device groups than partitions: {devices} device(s) in {k} group(s) cannot cover "
                         f"{p} partitions (each partition needs a group of its own); add devices, change d_th / p_th "
                         "to form more groups, or ask for fewer partitions")
    if k > p:
        raise InputError(f"more device groups ({k}) than partitions ({p}): the matching is one to one; ask for {k} "
                         "partitions")
    W, choices = weight_matrix(groups, part_sizes, zoo)
    cols = match(W)
    return tuple(Assignment(g.index, cols[i], choices[i][cols[i]]) for i, g in enumerate(groups))
