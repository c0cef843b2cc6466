"""NAIR: collect the importance-ordered slices of each sample; complete it when every unit arrived
or at its deadline, zero-filling what is missing. Duplicates and late slices are counted, never
used twice."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from tinysplit.slices import SlicePlan, place_units


@dataclass
class _Pending:
    seq: int
    buf: np.ndarray  # positions x channels, pre-filled with the zero point
    received: np.ndarray  # bool per unit
    t_first: float
    deadline: float
    part_count: int
    parts: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Sample:
    device: int
    seq: int
    features: np.ndarray  # H x W x C int8, missing units = zero point
    units_received: int
    units_total: int
    t_first: float
    t_done: float
    by_deadline: bool  # completed at the deadline with units missing


@dataclass
class NairCounters:
    slices: int = 0
    duplicates: int = 0
    late: int = 0
    bad: int = 0
    samples: int = 0
    deadline_misses: int = 0
    evicted: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class NairAssembler:
    """One per device. ``add`` returns a Sample when the sample completes."""

    def __init__(self, device: int, plan: SlicePlan, deadline_s: float, max_pending: int = 64,
                 remember_done: int = 1024) -> None:
        self.device = device
        self.plan = plan
        self.deadline_s = deadline_s
        self.max_pending = max_pending
        self.counters = NairCounters()
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._done: OrderedDict[int, None] = OrderedDict()  # recently completed seqs, for "late"
        self._remember_done = remember_done

    def add(self, seq: int, unit_start: int, unit_count: int, units_total: int, data: bytes,
            now: float, part_index: int = 0, part_count: int = 1) -> Sample | None:
        """One NAIR_SLICE frame. ``part_count`` is how many slice frames the device sends for this
        sample under its budget: the sample completes when all of them (or all units) arrived."""
        p = self.plan
        if units_total != p.units_total or unit_start + unit_count > p.units_total or \
                len(data) != p.slice_bytes(unit_count):
            self.counters.bad += 1
            return None
        if seq in self._done:
            self.counters.late += 1
            return None
        pend = self._pending.get(seq)
        if pend is None:
            if len(self._pending) >= self.max_pending:  # a device that never finishes samples
                old_seq = next(iter(self._pending))
                self.counters.evicted += 1
                self._finish(self._pending.pop(old_seq), now, by_deadline=True)
            buf = np.full((p.positions, p.channels), p.zero_point, dtype=np.int8)
            pend = _Pending(seq, buf, np.zeros(p.units_total, bool), now, now + self.deadline_s, part_count)
            self._pending[seq] = pend
        elif part_count != pend.part_count:
            self.counters.bad += 1
            return None
        rng = slice(unit_start, unit_start + unit_count)
        if part_index in pend.parts or pend.received[rng].any():
            self.counters.duplicates += 1
            return None
        self.counters.slices += 1
        place_units(p, pend.buf, unit_start, unit_count, data)
        pend.received[rng] = True
        pend.parts.add(part_index)
        if pend.received.all() or len(pend.parts) == pend.part_count:
            del self._pending[seq]
            return self._finish(pend, now, by_deadline=False)
        return None

    def _finish(self, pend: _Pending, now: float, by_deadline: bool) -> Sample:
        self._done[pend.seq] = None
        while len(self._done) > self._remember_done:
            self._done.popitem(last=False)
        self.counters.samples += 1
        got = int(pend.received.sum())
        if by_deadline and got < self.plan.units_total:
            self.counters.deadline_misses += 1
        p = self.plan
        return Sample(self.device, pend.seq, pend.buf.reshape(p.height, p.width, p.channels), got,
                      p.units_total, pend.t_first, now, by_deadline and got < p.units_total)

    def expire(self, now: float) -> list[Sample]:
        """Complete every sample whose deadline has passed (zero-filled)."""
        out = []
        for seq in [s for s, pd in self._pending.items() if pd.deadline <= now]:
            out.append(self._finish(self._pending.pop(seq), now, by_deadline=True))
        return out

    def flush(self, now: float) -> list[Sample]:
        """Complete everything pending now (shutdown)."""
        out = [self._finish(pd, now, by_deadline=True) for pd in self._pending.values()]
        self._pending.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)
