"""ReBEL: each sample arrives as exactly one frame. An EARLY_LABEL is a prediction the device made
(no tail: written with path "device"); a LATENT carries z, which goes to the host tail "remote"
(Head2 + Tail) with the C confidences the tail ignores filled with the zero point. A second frame for a
(device, seq) already completed counts as a duplicate and is never used; a LATENT of the wrong size or
an EARLY_LABEL whose class is out of range is dropped (reason "payload"). Which seqs a device used is a
sliding window (``SeqWindow``): a seq far behind its newest is dropped as ``stale`` (a replay).

The plan (tinysplit.methods.rebel.plan.plan_for) is checked when the server loads the bundle:
method_data.rebel must match the device output's size (ManifestError naming the field)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinysplit.host_server.assemblers import Completed
from tinysplit.host_server.seqwindow import SEQ_WINDOW, Seen, SeqWindow
from tinysplit.manifest import Manifest
from tinysplit.methods.rebel.plan import RebelPlan, plan_for
from tinysplit.quant import dequantize
from tinysplit.wire import DecodeError, Frame, FrameType
from tinysplit.wire.payloads import decode_payload

if TYPE_CHECKING:
    from tinysplit.host_server.metrics import Metrics


class RebelAssembler:
    frame_types = (FrameType.EARLY_LABEL, FrameType.LATENT)

    def __init__(self, manifest: Manifest, deadline_s: float, metrics: "Metrics", window: int = SEQ_WINDOW) -> None:
        self.plan: RebelPlan = plan_for(manifest)
        self.tails = (self.plan.tail,)
        self.deadline_s = deadline_s
        self.metrics = metrics
        self.window = window
        self._done: dict[int, SeqWindow] = {}  # per device: the seqs it used
        for name in ("early_labels", "latents"):
            metrics.inc(name, 0)  # both paths are counted from the start

    # --- frames -> samples --------------------------------------------------------------------------
    def add(self, frame: Frame, now: float) -> list[Completed]:
        p = self.plan
        if frame.part_index != 0 or frame.part_count != 1:
            raise DecodeError("payload", f"{frame.type.name}: part {frame.part_index} of {frame.part_count}, "
                                         "a ReBEL sample is one frame")
        payload = decode_payload(frame)
        if frame.type == FrameType.EARLY_LABEL:
            if payload.label >= p.classes:
                raise DecodeError("payload", f"early label {payload.label} of {p.classes} classes")
        elif len(payload.data) != p.latent:
            raise DecodeError("payload", f"latent of {len(payload.data)} bytes, expected {p.latent}")
        done = self._done.get(frame.device_id)
        if done is None:
            done = self._done[frame.device_id] = SeqWindow(self.window)
        seen = done.check(frame.seq)
        if seen is Seen.USED:
            self.metrics.inc("duplicates")
            return []
        if seen is Seen.STALE:
            raise DecodeError("stale", f"sample {frame.seq} is {self.window} or more behind device "
                                       f"{frame.device_id}'s newest")
        done.mark(frame.seq)
        self.metrics.inc("samples_received")
        if frame.type == FrameType.EARLY_LABEL:
            self.metrics.inc("early_labels")
            q = payload.confidence - 128
            conf = round(float(p.confidence(q)), 5)
            return [Completed(frame.device_id, frame.seq, None, (), now, False, 1,
                              {"early": True, "confidence_q": q}, payload.label, (conf,))]
        self.metrics.inc("latents")
        z = np.frombuffer(payload.data, dtype=np.int8).copy()
        return [Completed(frame.device_id, frame.seq, p.tail, (z,), now, False, 1, {"early": False})]

    def expire(self, now: float) -> list[Completed]:
        return []  # nothing waits: every sample completes with its one frame

    def flush(self, now: float) -> list[Completed]:
        return []

    def forget(self, device: int, now: float) -> list[Completed]:
        self._done.pop(device, None)
        return []

    @property
    def devices(self) -> int:
        return len(self._done)

    # --- samples -> tail inputs (worker thread) -----------------------------------------------------
    def tail_inputs(self, tail: str, items: list[Completed]) -> list[np.ndarray]:
        """[z, zero point x C] per sample, dequantized with the device output's scale and zero point, in
        the device output's shape (the tail slices z and ignores the rest)."""
        q = self.plan.host_view(np.stack([c.inputs[0] for c in items]))
        return [dequantize(q, self.plan.scale, self.plan.zero_point)]

    @property
    def pending(self) -> int:
        return 0
