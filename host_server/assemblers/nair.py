"""NAIR: collect the importance-ordered slices of each sample; complete it when every unit arrived
or at its deadline, zero-filling what is missing, for the one tail (or, for a bundle with one tail
per width, the tail of the units received). Duplicates and late slices are counted, never used
twice; a device's pending samples are bounded (the oldest completes zero-filled, counted as
``evicted``), and which of its seqs were used is a sliding window (``SeqWindow``): a seq far behind
the newest completed one is dropped as ``stale``, so a replay of old seqs is not predicted again.
``forget(device)`` (the server's session expiry) completes the device's pending samples and drops
its state: memory per device is bounded (docs/host-server.md states it)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tinysplit.host_server.assemblers import Completed
from tinysplit.host_server.seqwindow import SEQ_WINDOW, Seen, SeqWindow
from tinysplit.manifest import Manifest
from tinysplit.methods.nair.reference import tail_per_units
from tinysplit.methods.nair.slices import SlicePlan, place_units, plan_for
from tinysplit.quant import dequantize
from tinysplit.wire import DecodeError, Frame, FrameType
from tinysplit.wire.payloads import NairSlice, decode_payload

if TYPE_CHECKING:
    from tinysplit.host_server.metrics import Metrics


@dataclass
class _Pending:
    seq: int
    buf: np.ndarray  # positions x channels, pre-filled with the zero point
    received: np.ndarray  # bool per unit
    t_first: float
    deadline: float
    part_count: int
    parts: set[int] = field(default_factory=set)


@dataclass
class _Device:
    window: SeqWindow  # completed seqs, for "late" and "stale"
    pending: OrderedDict[int, _Pending] = field(default_factory=OrderedDict)


class NairAssembler:
    frame_types = (FrameType.NAIR_SLICE,)

    def __init__(self, manifest: Manifest, deadline_s: float, metrics: "Metrics", max_pending: int = 64,
                 window: int = SEQ_WINDOW) -> None:
        tail = manifest.host_tails[0] if manifest.host_tails else None
        if tail is None:
            from tinysplit.errors import InputError

            raise InputError(f"bundle '{manifest.name}' has no host tail to serve; export one with a TailPiece")
        self.plan: SlicePlan = plan_for(manifest, tail.consumes[0])
        per_units = tail_per_units(manifest)
        # tail by units received (index j-1 for j units): one tail for all, or one per width (CLIO-style)
        self._tail_for = per_units or [tail.name] * self.plan.units_total
        self.tails = tuple(dict.fromkeys(self._tail_for))
        self.deadline_s = deadline_s
        self.metrics = metrics
        self.max_pending = max_pending
        self.window = window
        self._devices: dict[int, _Device] = {}

    # --- frames -> samples --------------------------------------------------------------------------
    def add(self, frame: Frame, now: float) -> list[Completed]:
        """One NAIR_SLICE frame. ``part_count`` is how many slice frames the device sends for this sample
        under its budget: the sample completes when all of them (or all units) arrived."""
        sl: NairSlice = decode_payload(frame)
        p = self.plan
        if sl.units_total != p.units_total or sl.unit_start + sl.unit_count > p.units_total or \
                len(sl.data) != p.slice_bytes(sl.unit_count):
            raise DecodeError("slice", f"{sl.unit_count} units at {sl.unit_start} of {sl.units_total}")
        dev = self._devices.get(frame.device_id)
        if dev is None:
            dev = self._devices[frame.device_id] = _Device(SeqWindow(self.window))
        seq = frame.seq
        out: list[Completed] = []
        pend = dev.pending.get(seq)
        if pend is None:
            seen = dev.window.check(seq)
            if seen is Seen.USED:
                self.metrics.inc("late")
                return []
            if seen is Seen.STALE:
                raise DecodeError("stale", f"sample {seq} is {self.window} or more behind device "
                                           f"{frame.device_id}'s newest")
            if len(dev.pending) >= self.max_pending:  # a device that never finishes samples
                self.metrics.inc("evicted")
                out.append(self._finish(frame.device_id, dev, dev.pending.pop(next(iter(dev.pending))), now, True))
            buf = np.full((p.positions, p.channels), p.zero_point, dtype=np.int8)
            pend = _Pending(seq, buf, np.zeros(p.units_total, bool), now, now + self.deadline_s, frame.part_count)
            dev.pending[seq] = pend
            self.metrics.inc("samples_received")
        elif frame.part_count != pend.part_count:
            raise DecodeError("slice", f"part_count {frame.part_count} after {pend.part_count}")
        rng = slice(sl.unit_start, sl.unit_start + sl.unit_count)
        if frame.part_index in pend.parts or pend.received[rng].any():
            self.metrics.inc("duplicates")
            return out
        place_units(p, pend.buf, sl.unit_start, sl.unit_count, sl.data)
        pend.received[rng] = True
        pend.parts.add(frame.part_index)
        if pend.received.all() or len(pend.parts) == pend.part_count:
            del dev.pending[seq]
            out.append(self._finish(frame.device_id, dev, pend, now, False))
        return out

    def _finish(self, device: int, dev: _Device, pend: _Pending, now: float, by_deadline: bool) -> Completed:
        dev.window.mark(pend.seq)
        p = self.plan
        got = int(pend.received.sum())
        missing = by_deadline and got < p.units_total
        return Completed(device, pend.seq, self._tail_for[max(got, 1) - 1],
                         (pend.buf.reshape(p.height, p.width, p.channels),), pend.t_first, missing, got,
                         {"units_received": got, "units_total": p.units_total})

    def expire(self, now: float) -> list[Completed]:
        out = []
        for device, dev in self._devices.items():
            for seq in [s for s, pd in dev.pending.items() if pd.deadline <= now]:
                out.append(self._finish(device, dev, dev.pending.pop(seq), now, True))
        return out

    def flush(self, now: float) -> list[Completed]:
        out = []
        for device, dev in self._devices.items():
            out += [self._finish(device, dev, pd, now, True) for pd in dev.pending.values()]
            dev.pending.clear()
        return out

    def forget(self, device: int, now: float) -> list[Completed]:
        """The device's session expired: its pending samples complete as they are, its state goes."""
        dev = self._devices.pop(device, None)
        if dev is None:
            return []
        return [self._finish(device, dev, pd, now, True) for pd in dev.pending.values()]

    @property
    def devices(self) -> int:
        return len(self._devices)

    # --- samples -> tail inputs (worker thread) -----------------------------------------------------
    def tail_inputs(self, tail: str, items: list[Completed]) -> list[np.ndarray]:
        q = np.stack([c.inputs[0] for c in items])
        return [dequantize(q, self.plan.scale, self.plan.zero_point)]

    @property
    def pending(self) -> int:
        return sum(len(d.pending) for d in self._devices.values())
