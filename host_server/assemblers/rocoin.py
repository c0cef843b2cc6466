"""RoCoIn: every device of group k sends partition k's portion for each broadcast input; a sample is
keyed by its seq alone (its portions come from several devices). The first complete portion per
partition wins and the device that sent it is recorded; the sample completes when all K partitions
are in, or at its deadline (the first portion's arrival + the deadline) with the missing partitions
zero-filled (0.0, the aggregator's input for "no portion"); then the one host tail "aggregator".

Counters (per frame, so that they add up to the valid ROCOIN_PORTION frames):
- ``portions``: frames for a partition not yet filled (the winning portion's frames; with a portion
  split over several frames, also a slower replica's frames until the partition fills);
- ``replica_portions``: frames for a partition already filled (a replica that lost: not a drop);
- ``late_portions``: frames for a sample already completed (every partition in, or its deadline passed);
- ``duplicates``: a frame part a device already sent for the same sample and partition.
Which seqs were used is one sliding window for the bundle (``SeqWindow``; a sample's seq is the
broadcast input's, shared by every device): a seq far behind the newest is dropped as ``stale``.
A bad partition index, a partitions_total other than K, a part count or chunk size that does not
match partition k's n_k: DecodeError("payload") (the server counts and drops it).

The plan (tinysplit.methods.rocoin.bundle.plan_for) is checked when the server loads the bundle.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tinysplit.host_server.assemblers import Completed
from tinysplit.host_server.seqwindow import SEQ_WINDOW, Seen, SeqWindow
from tinysplit.manifest import Manifest
from tinysplit.methods.rocoin.bundle import RocoinPlan, plan_for
from tinysplit.wire import DecodeError, Frame, FrameType
from tinysplit.wire.payloads import RocoinPortion, decode_payload

if TYPE_CHECKING:
    from tinysplit.host_server.metrics import Metrics


@dataclass
class _Sample:
    seq: int
    t_first: float
    deadline: float
    first_device: int  # the sender of the sample's first frame (used if no portion ever completes)
    portions: list[bytes | None]  # per partition: the winning portion's int8 bytes
    answered_by: dict[int, int] = field(default_factory=dict)  # partition -> device id
    partial: dict[tuple[int, int], dict[int, bytes]] = field(default_factory=dict)  # (k, device) -> chunks
    first_portion_device: int | None = None

    @property
    def complete(self) -> bool:
        return all(p is not None for p in self.portions)


class RocoinAssembler:
    frame_types = (FrameType.ROCOIN_PORTION,)

    def __init__(self, manifest: Manifest, deadline_s: float, metrics: "Metrics", max_pending: int = 256,
                 window: int = 4 * SEQ_WINDOW) -> None:
        self.plan: RocoinPlan = plan_for(manifest)
        self.tails = (self.plan.tail,)
        self.deadline_s = deadline_s
        self.metrics = metrics
        self.max_pending = max_pending
        self.window = window
        self._pending: OrderedDict[int, _Sample] = OrderedDict()
        self._done = SeqWindow(window)
        for name in ("portions", "replica_portions", "late_portions"):
            metrics.inc(name, 0)

    # --- frames -> samples --------------------------------------------------------------------------
    def _check(self, frame: Frame, p: RocoinPortion) -> None:
        plan = self.plan
        k_total = plan.partitions_total
        if p.partitions_total != k_total:
            raise DecodeError("payload", f"rocoin portion of {p.partitions_total} partitions, the bundle has {k_total}")
        if p.partition >= k_total:
            raise DecodeError("payload", f"rocoin partition {p.partition} of {k_total}")
        s = plan.students[p.partition]
        if frame.part_count != s.part_count or frame.part_index >= s.part_count:
            raise DecodeError("payload", f"rocoin portion {p.partition}: part {frame.part_index} of "
                                         f"{frame.part_count}, its {s.values} values take {s.part_count} frame(s)")
        want = s.chunk(frame.part_index)
        if len(p.data) != want.stop - want.start:
            raise DecodeError("payload", f"rocoin portion {p.partition} part {frame.part_index}: {len(p.data)} bytes, "
                                         f"expected {want.stop - want.start}")

    def add(self, frame: Frame, now: float) -> list[Completed]:
        p: RocoinPortion = decode_payload(frame)
        self._check(frame, p)
        seq, k, dev = frame.seq, p.partition, frame.device_id
        out: list[Completed] = []
        sample = self._pending.get(seq)
        if sample is None:
            seen = self._done.check(seq)
            if seen is Seen.USED:
                self.metrics.inc("late_portions")
                return []
            if seen is Seen.STALE:
                raise DecodeError("stale", f"sample {seq} is {self.window} or more behind the newest")
            if len(self._pending) >= self.max_pending:  # samples that never finish: bounded memory
                self.metrics.inc("evicted")
                out.append(self._finish(self._pending.popitem(last=False)[1], True))
            sample = _Sample(seq, now, now + self.deadline_s, dev, [None] * self.plan.partitions_total)
            self._pending[seq] = sample
            self.metrics.inc("samples_received")
        if sample.portions[k] is not None:
            self.metrics.inc("replica_portions")
            return out
        chunks = sample.partial.setdefault((k, dev), {})
        if frame.part_index in chunks:
            self.metrics.inc("duplicates")
            return out
        self.metrics.inc("portions")
        chunks[frame.part_index] = p.data
        if len(chunks) < frame.part_count:
            return out
        sample.portions[k] = b"".join(chunks[i] for i in range(frame.part_count))
        sample.answered_by[k] = dev
        if sample.first_portion_device is None:
            sample.first_portion_device = dev
        for key in [key for key in sample.partial if key[0] == k]:
            del sample.partial[key]
        if sample.complete:
            del self._pending[seq]
            out.append(self._finish(sample, False))
        return out

    def _finish(self, s: _Sample, by_deadline: bool) -> Completed:
        self._done.mark(s.seq)
        plan = self.plan
        inputs = []
        for k, st in enumerate(plan.students):
            data = s.portions[k]
            if data is None:  # the zero point dequantizes to exactly 0.0
                inputs.append(np.full(st.values, st.zero_point, dtype=np.int8))
            else:
                inputs.append(np.frombuffer(data, dtype=np.int8).copy())
        arrived = [k for k in range(plan.partitions_total) if s.portions[k] is not None]
        missing = [k for k in range(plan.partitions_total) if s.portions[k] is None]
        device = s.first_portion_device if s.first_portion_device is not None else s.first_device
        record = {"partitions": arrived, "missing": missing,
                  "answered_by": {str(k): s.answered_by[k] for k in arrived}}
        return Completed(device, s.seq, plan.tail, tuple(inputs), s.t_first, by_deadline, len(arrived), record)

    def expire(self, now: float) -> list[Completed]:
        due = [seq for seq, s in self._pending.items() if s.deadline <= now]
        return [self._finish(self._pending.pop(seq), True) for seq in due]

    def flush(self, now: float) -> list[Completed]:
        out = [self._finish(s, True) for s in self._pending.values()]
        self._pending.clear()
        return out

    def forget(self, device: int, now: float) -> list[Completed]:
        return []  # samples belong to no one device (keyed by seq), bounded and completed by their deadline

    @property
    def devices(self) -> int:
        return 0

    # --- samples -> tail inputs (worker thread) -----------------------------------------------------
    def tail_inputs(self, tail: str, items: list[Completed]) -> list[np.ndarray]:
        """Per partition, (batch, 1, 1, n_k) float32: the portion dequantized with student k's scale and
        zero point, 0.0 where it was missing."""
        out = []
        for k, st in enumerate(self.plan.students):
            q = np.stack([c.inputs[k] for c in items]).reshape(len(items), *st.output_shape)
            out.append(self.plan.dequantize(k, q))
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)
