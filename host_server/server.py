"""The tail server: frames in over any transport -> per-device sessions -> assemblers -> tails
-> predictions (sink) and, optionally, results back to the device.

A bad frame never stops the server: every failure is a counted drop with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np

from tinysplit.errors import InputError, UnsupportedModelError
from tinysplit.host_server.assemblers.nair import NairAssembler, Sample
from tinysplit.host_server.metrics import Metrics, serve_metrics
from tinysplit.host_server.sinks import Sink
from tinysplit.host_server.tail import TailRunner
from tinysplit.host_server.transports import Transport, open_transport
from tinysplit.manifest import Manifest, load_manifest
from tinysplit.quant import dequantize
from tinysplit.reference import tail_per_units
from tinysplit.slices import plan_for
from tinysplit.wire import DecodeError, Frame, FrameType, decode_frame, encode_frame
from tinysplit.wire.payloads import Hello, NairSlice, Result, decode_payload, make_frame

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    bundle: Path
    listen: list[str]
    deadline_s: float = 0.5
    send_results: bool = False
    max_batch: int = 64
    metrics_addr: tuple[str, int] | None = None
    max_devices: int = 4096  # sessions beyond this are refused (drop reason 'devices'): bounded memory


@dataclass
class Session:
    device: int
    transport: Transport
    peer: Hashable
    hello: Hello | None = None
    assembler: NairAssembler | None = None
    frames: int = 0
    last_seen: float = field(default_factory=time.monotonic)


class TailServer:
    def __init__(self, config: ServerConfig, sink: Sink, manifest: Manifest | None = None,
                 transports: list[Transport] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.manifest = manifest or load_manifest(config.bundle)
        if not self.manifest.host_tails:
            raise InputError(f"bundle '{self.manifest.name}' has no host tail to serve; export one with a TailPiece")
        if tail_per_units(self.manifest) is not None:
            raise UnsupportedModelError(
                f"bundle '{self.manifest.name}' has one host tail per number of units (CLIO-style, for comparison); "
                "the server runs one tail for every budget: serve a NAIR bundle, or evaluate this one with nair-eval")
        self.tail_spec = self.manifest.host_tails[0]
        self.device_model = self.manifest.device_model(self.tail_spec.consumes[0])
        self.plan = plan_for(self.manifest, self.device_model.name)
        self.bundle_id = int(self.manifest.bundle_id, 16)
        self.sink = sink
        self.metrics = Metrics()
        self.metrics.transport_drops = self.transport_drops
        self.clock = clock
        self.transports = transports if transports is not None else [open_transport(u) for u in config.listen]
        self.sessions: dict[tuple[str, int], Session] = {}
        self.tail = TailRunner(Path(config.bundle) / self.tail_spec.file, self._prepare, self._on_batch,
                               self._on_tail_error, max_batch=config.max_batch)
        self._sends: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._metrics_server: asyncio.AbstractServer | None = None
        self._closing = False
        self._handlers: dict[FrameType, Callable[[Session, Frame], None]] = {
            FrameType.HELLO: self._on_hello,
            FrameType.NAIR_SLICE: self._on_nair_slice,
            FrameType.STATS: self._on_stats,
        }

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.tail.start()
        for t in self.transports:
            await t.start(lambda data, peer, t=t: self.on_frame(t, data, peer))
        if self.config.metrics_addr:
            self._metrics_server = await serve_metrics(self.metrics, *self.config.metrics_addr)
        self._tasks.append(asyncio.create_task(self._deadline_loop(), name="deadlines"))

    @property
    def metrics_port(self) -> int | None:
        if self._metrics_server is None:
            return None
        return self._metrics_server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Graceful: no new frames; pending samples complete (zero-filled); every prediction written."""
        if self._closing:
            return
        self._closing = True
        for t in self.transports:
            await t.close()
        now = self.clock()
        for s in self.sessions.values():
            if s.assembler is not None:
                for sample in s.assembler.flush(now):
                    self._complete(s, sample)
        await self.tail.drain()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.tail.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        self.sink.close()

    # --- frames -------------------------------------------------------------------------------------
    def on_frame(self, transport: Transport, data: bytes, peer: Hashable) -> None:
        """Entry for every de-framed frame. Never raises: a bad frame is counted and dropped."""
        self.metrics.inc("frames")
        try:
            frame = decode_frame(data)
            if frame.bundle_id != self.bundle_id:
                raise DecodeError("bundle", f"bundle {frame.bundle_id:08x}")
            handler = self._handlers.get(frame.type)
            if handler is None:
                raise DecodeError("unexpected_type", frame.type.name)
            session = self._session(transport, frame.device_id, peer)
            handler(session, frame)
        except DecodeError as e:
            self.metrics.drop(e.reason)
        except Exception:  # a bug in a handler must not take the server down
            log.exception("handler failed")
            self.metrics.drop("internal")

    def _session(self, transport: Transport, device: int, peer: Hashable) -> Session:
        key = (transport.url, device)
        s = self.sessions.get(key)
        if s is None:
            if len(self.sessions) >= self.config.max_devices:
                raise DecodeError("devices", f"more than {self.config.max_devices} devices")
            s = self.sessions[key] = Session(device, transport, peer)
        s.peer = peer
        s.frames += 1
        s.last_seen = self.clock()
        return s

    def _on_hello(self, s: Session, frame: Frame) -> None:
        s.hello = decode_payload(frame)
        log.info("device %d (%s) says hello on %s", s.device, s.hello.board, s.transport.url)
        self.metrics.inc("hellos")

    def _on_stats(self, s: Session, frame: Frame) -> None:
        decode_payload(frame)
        self.metrics.inc("stats_frames")

    def _on_nair_slice(self, s: Session, frame: Frame) -> None:
        sl: NairSlice = decode_payload(frame)
        if s.assembler is None:
            s.assembler = NairAssembler(s.device, self.plan, self.config.deadline_s)
        c = s.assembler.counters
        before = (c.duplicates, c.late, c.bad)
        sample = s.assembler.add(frame.seq, sl.unit_start, sl.unit_count, sl.units_total, sl.data, self.clock(),
                                 frame.part_index, frame.part_count)
        if c.duplicates != before[0]:
            self.metrics.inc("duplicates")
        if c.late != before[1]:
            self.metrics.inc("late")
        if c.bad != before[2]:
            self.metrics.drop("slice")
        if sample is not None:
            self._complete(s, sample)

    # --- samples -> tail -> predictions -------------------------------------------------------------
    def _complete(self, s: Session, sample: Sample) -> None:
        self.metrics.inc("samples")
        if sample.by_deadline:
            self.metrics.inc("deadline_misses")
        self.tail.submit((s, sample))

    def _prepare(self, items: list[tuple[Session, Sample]]) -> list[np.ndarray]:
        """Worker thread: stack a batch's int8 features and dequantize them once."""
        q = np.stack([sample.features for _, sample in items])
        return [dequantize(q, self.plan.scale, self.plan.zero_point)]

    def _on_batch(self, items: list[tuple[Session, Sample]], logits: np.ndarray) -> None:
        done = self.clock()
        labels = logits.argmax(1).tolist()
        scores = np.round(logits.astype(np.float64), 5).tolist()
        classes = self.manifest.classes
        records = []
        for (s, sample), label, sc in zip(items, labels, scores):
            latency = done - sample.t_first
            self.metrics.latencies_s.append(latency)
            records.append({
                "device": s.device, "sample": sample.seq, "units_received": sample.units_received,
                "units_total": sample.units_total, "complete": not sample.by_deadline, "label": label,
                "class": classes[label] if label < len(classes) else str(label),
                "scores": sc, "latency_ms": round(latency * 1000, 3)})
        self.sink.write_many(records)
        self.metrics.inc("predictions", len(records))
        if self.config.send_results and not self._closing:
            task = asyncio.get_running_loop().create_task(self._send_results(items, labels))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _on_tail_error(self, items: list, error: Exception) -> None:
        self.metrics.drop("tail_error", len(items))

    async def _send_results(self, items: list[tuple[Session, Sample]], labels: list[int]) -> None:
        for (s, sample), label in zip(items, labels):
            frame = make_frame(FrameType.RESULT, Result(label, sample.units_received, 1 if sample.by_deadline else 0),
                               s.device, self.bundle_id, sample.seq)
            await s.transport.send(encode_frame(frame), s.peer)
            self.metrics.inc("results_sent")

    async def _deadline_loop(self) -> None:
        period = max(0.002, min(0.05, self.config.deadline_s / 10))
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            for s in list(self.sessions.values()):
                if s.assembler is not None and s.assembler.pending:
                    for sample in s.assembler.expire(now):
                        self._complete(s, sample)

    def transport_drops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.transports:
            for k, v in t.stats.drops.items():
                out[k] = out.get(k, 0) + v
        return out

    def report(self) -> dict[str, Any]:
        snap = self.metrics.snapshot()
        snap["transport_drops"] = self.transport_drops()
        snap["devices"] = len(self.sessions)
        snap["tail_batches"] = self.tail.batches
        return snap
