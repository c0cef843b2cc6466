"""Adaptive ResNet: each sample arrives as the head's int8 output in ADAPTIVE_OUTPUT frames (part_index
of part_count, chunks of at most 1016 bytes, in order), each carrying the skip mask the inference ran
with and its instruction count. The sample completes when all its parts are in; then the host tail
"tail" runs on it whatever the mask. At its deadline (first frame's arrival + the deadline) a sample
still missing parts completes with them filled with the output's zero point (real 0.0), counted in
``incomplete_samples``; frames for a completed sample count as ``late_parts`` or ``duplicates``.
The predictions record the mask and the instruction count (``skip_mask``, ``instructions``).

Dropped with DecodeError("payload") (the server counts and drops them): a part count other than the
output's, a chunk of the wrong size, a mask with bits at or above the block count, frames of one
sample that disagree on the mask or the instruction count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tinysplit.host_server.assemblers import Completed
from tinysplit.host_server.seqwindow import SEQ_WINDOW, Seen, SeqWindow
from tinysplit.manifest import Manifest
from tinysplit.methods.adaptive_resnet.bundle import AdaptiveLayout, layout_for
from tinysplit.quant import dequantize
from tinysplit.wire import DecodeError, Frame, FrameType
from tinysplit.wire.payloads import ADAPTIVE_OUTPUT_CHUNK, decode_payload

if TYPE_CHECKING:
    from tinysplit.host_server.metrics import Metrics


@dataclass
class _Sample:
    t_first: float
    deadline: float
    skip_mask: int
    instructions: int
    chunks: dict[int, bytes] = field(default_factory=dict)


class AdaptiveAssembler:
    frame_types = (FrameType.ADAPTIVE_OUTPUT,)

    def __init__(self, manifest: Manifest, deadline_s: float, metrics: "Metrics", max_pending: int = 256,
                 window: int = SEQ_WINDOW) -> None:
        self.layout: AdaptiveLayout = layout_for(manifest)
        self.tails = (self.layout.tail,)
        self.deadline_s = deadline_s
        self.metrics = metrics
        self.max_pending = max_pending
        self.window = window
        self.parts = max(1, -(-self.layout.output_bytes // ADAPTIVE_OUTPUT_CHUNK))
        self._pending: OrderedDict[tuple[int, int], _Sample] = OrderedDict()
        self._done: dict[int, SeqWindow] = {}  # per device: the seqs of its completed samples
        for name in ("incomplete_samples", "late_parts", "duplicates", "evicted_samples"):
            metrics.inc(name, 0)

    def _chunk_bytes(self, part: int) -> int:
        return min(ADAPTIVE_OUTPUT_CHUNK, self.layout.output_bytes - part * ADAPTIVE_OUTPUT_CHUNK)

    # --- frames -> samples --------------------------------------------------------------------------
    def add(self, frame: Frame, now: float) -> list[Completed]:
        lay = self.layout
        if frame.part_count != self.parts or frame.part_index >= self.parts:
            raise DecodeError("payload", f"adaptive output part {frame.part_index} of {frame.part_count}; the head's "
                                         f"{lay.output_bytes} bytes take {self.parts} part(s)")
        p = decode_payload(frame)
        if len(p.data) != self._chunk_bytes(frame.part_index):
            raise DecodeError("payload", f"adaptive output part {frame.part_index}: {len(p.data)} bytes, expected "
                                         f"{self._chunk_bytes(frame.part_index)}")
        if p.skip_mask >> lay.blocks:
            raise DecodeError("payload", f"skip mask 0x{p.skip_mask:x} has bits at or above bit {lay.blocks}")
        key = (frame.device_id, frame.seq)
        s = self._pending.get(key)
        if s is None:
            done = self._done.get(frame.device_id)
            seen = done.check(frame.seq) if done is not None else Seen.NEW
            if seen is Seen.USED:
                self.metrics.inc("late_parts")
                return []
            if seen is Seen.STALE:
                raise DecodeError("stale", f"sample {frame.seq} is {self.window} or more behind device "
                                           f"{frame.device_id}'s newest")
            s = _Sample(now, now + self.deadline_s, p.skip_mask, p.instructions)
            self._pending[key] = s
            self.metrics.inc("samples_received")
        elif (p.skip_mask, p.instructions) != (s.skip_mask, s.instructions):
            raise DecodeError("payload", f"sample {frame.seq}: part {frame.part_index} says mask 0x{p.skip_mask:x} and "
                                         f"{p.instructions} instructions, its first part 0x{s.skip_mask:x} and "
                                         f"{s.instructions}")
        if frame.part_index in s.chunks:
            self.metrics.inc("duplicates")
            return []
        s.chunks[frame.part_index] = p.data
        out: list[Completed] = []
        if len(s.chunks) == self.parts:
            out.append(self._complete(key, now, by_deadline=False))
        while len(self._pending) > self.max_pending:  # the oldest incomplete sample completes as it is
            self.metrics.inc("evicted_samples")
            out.append(self._complete(next(iter(self._pending)), now, by_deadline=True))
        return out

    def _complete(self, key: tuple[int, int], now: float, by_deadline: bool) -> Completed:
        s = self._pending.pop(key)
        done = self._done.get(key[0])
        if done is None:
            done = self._done[key[0]] = SeqWindow(self.window)
        done.mark(key[1])
        lay = self.layout
        buf = np.full(lay.output_bytes, lay.zero_point, dtype=np.int8)
        for part, data in s.chunks.items():
            start = part * ADAPTIVE_OUTPUT_CHUNK
            buf[start:start + len(data)] = np.frombuffer(data, dtype=np.int8)
        if by_deadline:
            self.metrics.inc("incomplete_samples")
        return Completed(key[0], key[1], lay.tail, (buf,), s.t_first, by_deadline, len(s.chunks),
                         {"skip_mask": s.skip_mask, "instructions": s.instructions,
                          **({"parts_missing": self.parts - len(s.chunks)} if by_deadline else {})})

    def expire(self, now: float) -> list[Completed]:
        late = [k for k, s in self._pending.items() if s.deadline <= now]
        return [self._complete(k, now, by_deadline=True) for k in late]

    def flush(self, now: float) -> list[Completed]:
        return [self._complete(k, now, by_deadline=True) for k in list(self._pending)]

    def forget(self, device: int, now: float) -> list[Completed]:
        """The device's session expired: its pending samples complete as they are, its state goes."""
        out = [self._complete(k, now, by_deadline=True) for k in list(self._pending) if k[0] == device]
        self._done.pop(device, None)
        return out

    @property
    def devices(self) -> int:
        return len(self._done)

    # --- samples -> tail inputs (worker thread) -----------------------------------------------------
    def tail_inputs(self, tail: str, items: list[Completed]) -> list[np.ndarray]:
        lay = self.layout
        q = np.stack([c.inputs[0] for c in items]).reshape(len(items), *lay.output_shape)
        return [dequantize(q, lay.scale, lay.zero_point)]

    @property
    def pending(self) -> int:
        return len(self._pending)
