"""The tail server: frames in over any transport -> per-device sessions (HELLO, STATS, peers) ->
the bundle method's assembler (one per server, keyed by the manifest's method) -> zero, one or
several host tails (ONNX Runtime, micro-batched per tail) or predictions made on the device ->
predictions (sink) and, optionally, results back to the device.

A bad frame never stops the server: every failure is a counted drop with a reason. State is
bounded and expires: sessions idle for ``session_idle_s`` go (their device's assembler state with
them), a full device table reclaims expired sessions and then the least recently seen one, and
the queue before each tail is bounded (oldest shed first). Every sample received is predicted or
counted under a named reason (``accounting()``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

import numpy as np

from tinysplit.errors import InputError
from tinysplit.host_server.assemblers import Assembler, Completed, make_assembler
from tinysplit.host_server.auth import AuthGate
from tinysplit.host_server.metrics import Metrics, MetricsServer, serve_metrics
from tinysplit.host_server.sinks import Sink, SinkError
from tinysplit.host_server.tail import TailRunner
from tinysplit.host_server.transports import Transport, open_transport
from tinysplit.manifest import Manifest, load_manifest
from tinysplit.wire import DecodeError, Frame, FrameType, decode_frame, encode_frame
from tinysplit.wire.payloads import Hello, KeyValues, Result, decode_payload, make_frame

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    bundle: Path
    listen: list[str]
    deadline_s: float = 0.5
    send_results: bool = False
    max_batch: int = 64
    metrics_addr: tuple[str, int] | None = None
    max_devices: int = 4096  # sessions held at most: a new device beyond it reclaims the least recently seen
    session_idle_s: float = 300.0  # a device silent this long is forgotten (session, seq window, pending samples)
    max_queue: int = 1024  # samples waiting per tail; beyond it the oldest is shed (counted 'shed')
    shutdown_timeout_s: float = 5.0  # stop() waits this long for queued samples, then sheds them ('shed_shutdown')
    keys: Mapping[int, bytes] | None = None  # device id -> 32-byte key: authenticated frames only; None: lab mode


@dataclass
class Session:
    device: int
    transport: Transport
    peer: Hashable
    hello: Hello | None = None
    frames: int = 0
    last_seen: float = field(default_factory=time.monotonic)


class TailServer:
    def __init__(self, config: ServerConfig, sink: Sink, manifest: Manifest | None = None,
                 transports: list[Transport] | None = None, clock: Callable[[], float] = time.monotonic,
                 assembler: Callable[[Manifest, float, Metrics], Assembler] | None = None) -> None:
        """``assembler`` builds the assembler (manifest, deadline in s, the server's metrics) instead of
        the manifest method's from the registry (``make_assembler``): a fake in tests."""
        self.config = config
        self.manifest = manifest or load_manifest(config.bundle)
        self.bundle_id = int(self.manifest.bundle_id, 16)
        self.sink = sink
        self.metrics = Metrics()
        self.metrics.transport_drops = self.transport_drops
        self.metrics.link_counters = self.link_counters
        self.clock = clock
        self.assembler = (assembler or make_assembler)(self.manifest, config.deadline_s, self.metrics)
        specs = {t.name: t for t in self.manifest.host_tails}
        self.tails: dict[str, TailRunner] = {
            name: TailRunner(Path(config.bundle) / specs[name].file,
                             lambda items, name=name: self.assembler.tail_inputs(name, items),
                             self._on_batch, self._on_tail_error, max_batch=config.max_batch,
                             max_queue=config.max_queue, on_shed=self._on_shed)
            for name in self.assembler.tails}
        self.transports = transports if transports is not None else [open_transport(u) for u in config.listen]
        self.auth = AuthGate(config.keys, self.bundle_id) if config.keys is not None else None
        if self.auth is None:  # loudly for a server that listens on the network; in-process harnesses say it once
            log.log(logging.WARNING if config.listen else logging.INFO,
                    "frames are NOT authenticated (lab mode): anyone who can reach %s can forge, replay and spoof "
                    "devices; give device keys for authenticated frames", ", ".join(config.listen) or "its links")
        # least recently seen first: expiry and reclaiming take from the front
        self.sessions: OrderedDict[tuple[str, int], Session] = OrderedDict()
        self._device_sessions: dict[int, Session] = {}
        self._sends: set[asyncio.Task] = set()
        self._control_seq = 0
        self._tasks: list[asyncio.Task] = []
        self._metrics_server: MetricsServer | None = None
        self._closing = False
        # set when the server cannot go on (the predictions sink failed): ``failure`` says why
        self.failed = asyncio.Event()
        self.failure: Exception | None = None
        self._handlers: dict[FrameType, Callable[[Session, Frame], None]] = {
            FrameType.HELLO: self._on_hello,
            FrameType.STATS: self._on_stats,
            **{t: self._on_data for t in self.assembler.frame_types},
        }
        for name in ("sessions_expired", "sessions_evicted"):
            self.metrics.inc(name, 0)
        self.metrics.gauges.update({
            "tail_queue_depth": lambda: {n: t.queued for n, t in self.tails.items()},
            "pending_samples": lambda: {"": self.assembler.pending},
            "sessions": lambda: {"": len(self.sessions)}})

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        for tail in self.tails.values():
            await tail.start()
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
        """Graceful and bounded: no new frames (what the transports already hold is read first);
        pending samples complete (zero-filled); the tails run what is queued for at most
        ``shutdown_timeout_s``, and what is left then is counted as ``shed_shutdown``; every
        prediction made is written."""
        if self._closing:
            return
        self._closing = True
        t_end = time.monotonic() + self.config.shutdown_timeout_s
        for t in self.transports:
            await t.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for c in self.assembler.flush(self.clock()):
            self._complete(c)
        for tail in self.tails.values():
            await tail.close(max(0.0, t_end - time.monotonic()))
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        self.sink.close()

    # --- frames -------------------------------------------------------------------------------------
    def on_frame(self, transport: Transport, data: bytes, peer: Hashable) -> None:
        """Entry for every de-framed frame. Never raises: a bad frame is counted and dropped."""
        self.metrics.inc("frames")
        try:
            if self.auth is not None:  # verified before any state is kept for the device
                a = self.auth.admit(data)
                if a.reply is not None:  # a HELLO (perhaps recorded): its SESSION, to whoever said it
                    self._send_later(transport, a.reply, peer, "sessions_sent")
                    self.metrics.inc("hellos_answered")
                    return
                frame = a.frame
                if a.started is not None:  # the device confirmed a new session: it (re)started
                    self._on_hello(self._session(transport, frame.device_id, peer), a.started)
            else:
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
        now = self.clock()
        s = self.sessions.get(key)
        if s is None:
            if len(self.sessions) >= self.config.max_devices:
                self.expire_sessions(now)  # idle-expired sessions go first
            if len(self.sessions) >= self.config.max_devices:  # then the least recently seen
                self.metrics.inc("sessions_evicted")
                self._drop_session(next(iter(self.sessions.values())), now)
            s = self.sessions[key] = Session(device, transport, peer)
        else:
            self.sessions.move_to_end(key)
        self._device_sessions[device] = s  # results for a device go back over the link it spoke last on
        s.peer = peer
        s.frames += 1
        s.last_seen = now
        return s

    def expire_sessions(self, now: float) -> int:
        """Forget every session silent for ``session_idle_s``; how many went."""
        n = 0
        limit = now - self.config.session_idle_s
        while self.sessions:
            s = next(iter(self.sessions.values()))
            if s.last_seen > limit:
                break
            self._drop_session(s, now)
            n += 1
        self.metrics.inc("sessions_expired", n)
        return n

    def _drop_session(self, s: Session, now: float) -> None:
        """Remove a session; when it was its device's last, the assembler forgets the device: its
        pending samples complete now (zero-filled, counted as deadline misses), its seqs go."""
        del self.sessions[(s.transport.url, s.device)]
        if self._device_sessions.get(s.device) is s:
            del self._device_sessions[s.device]
            self._forget_device(s.device, now)

    def _forget_device(self, device: int, now: float) -> None:
        forget = getattr(self.assembler, "forget", None)
        if forget is not None:
            for c in forget(device, now):
                self._complete(c)

    def _on_hello(self, s: Session, frame: Frame) -> None:
        s.hello = decode_payload(frame)
        self._forget_device(s.device, self.clock())  # a device says HELLO at boot: its seqs start again
        log.info("device %d (%s) says hello on %s", s.device, s.hello.board, s.transport.url)
        self.metrics.inc("hellos")

    def _on_stats(self, s: Session, frame: Frame) -> None:
        decode_payload(frame)
        self.metrics.inc("stats_frames")

    def _on_data(self, s: Session, frame: Frame) -> None:
        for c in self.assembler.add(frame, self.clock()):
            self._complete(c)

    # --- samples -> tail -> predictions -------------------------------------------------------------
    def _complete(self, c: Completed) -> None:
        self.metrics.inc("samples")
        if c.by_deadline:
            self.metrics.inc("deadline_misses")
        if c.tail is None:  # predicted on the device
            self._predictions([c], [c.label], [list(c.scores or ())])
            return
        self.tails[c.tail].submit(c)

    def _on_batch(self, items: list[Completed], logits: np.ndarray) -> None:
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():  # written as null scores (valid JSON), counted
            self.metrics.inc("nonfinite_scores", int((~finite).sum()))
        self._predictions(items, logits.argmax(1).tolist(),
                          np.round(logits.astype(np.float64), 5).tolist())

    def _predictions(self, items: list[Completed], labels: list[int], scores: list[list[float]]) -> None:
        done = self.clock()
        classes = self.manifest.classes
        records = []
        for c, label, sc in zip(items, labels, scores):
            latency = done - c.t_first
            self.metrics.latencies_s.append(latency)
            records.append({
                "device": c.device, "sample": c.seq, **c.record, "complete": not c.by_deadline,
                "path": "device" if c.tail is None else c.tail, "label": label,
                "class": classes[label] if label < len(classes) else str(label),
                "scores": sc, "latency_ms": round(latency * 1000, 3)})
        if self.failure is not None:
            self.metrics.lost("output_error", len(records))
            return
        try:
            self.sink.write_many(records)
        except SinkError as e:  # counted, once logged, and the server stops (the CLI exits non-zero)
            self.metrics.lost("output_error", len(records))
            self.failure = e
            log.error("%s; %d prediction(s) lost; stopping", e, len(records))
            self.failed.set()
            return
        self.metrics.inc("predictions", len(records))
        if self.config.send_results and not self._closing:
            task = asyncio.get_running_loop().create_task(self._send_results(items, labels))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _on_tail_error(self, items: list, error: Exception) -> None:
        self.metrics.lost("tail_error", len(items))

    def _on_shed(self, items: list, reason: str) -> None:
        self.metrics.lost(reason, len(items))

    async def _send_results(self, items: list[Completed], labels: list[int]) -> None:
        for c, label in zip(items, labels):
            s = self._device_sessions.get(c.device)
            if s is None:
                continue
            frame = make_frame(FrameType.RESULT, Result(label, c.parts, 1 if c.by_deadline else 0),
                               c.device, self.bundle_id, c.seq)
            await s.transport.send(self._seal(frame), s.peer)
            self.metrics.inc("results_sent")

    async def send_control(self, device: int, items: list[tuple[int, int]]) -> None:
        """Send a CONTROL frame (key, u32 value pairs: a skip mask, a budget, a threshold) to a device
        over the link it spoke last on; InputError for a device that has not spoken to this server."""
        s = self._device_sessions.get(device)
        if s is None:
            known = ", ".join(str(d) for d in sorted(self._device_sessions)) or "none yet"
            raise InputError(f"no device {device} has spoken to this server (known devices: {known}); a CONTROL "
                             "frame goes to a device after its HELLO or first frame")
        for k, v in items:
            if not (0 <= int(k) <= 0xFF and 0 <= int(v) <= 0xFFFFFFFF):
                raise InputError(f"CONTROL item ({k}, {v}): a key is a u8 and a value a u32")
        self._control_seq = seq = (self._control_seq + 1) & 0xFFFFFFFF
        frame = make_frame(FrameType.CONTROL, KeyValues(tuple((int(k), int(v)) for k, v in items)), device,
                           self.bundle_id, seq)
        await s.transport.send(self._seal(frame), s.peer)
        self.metrics.inc("controls_sent")

    def _seal(self, frame: Frame) -> bytes:
        """A host -> device frame as sent: sealed in the device's session when frames are authenticated."""
        return self.auth.seal(frame) if self.auth is not None else encode_frame(frame)

    def _send_later(self, transport: Transport, data: bytes, peer: Hashable, counter: str) -> None:
        async def send() -> None:
            await transport.send(data, peer)
            self.metrics.inc(counter)

        task = asyncio.get_running_loop().create_task(send())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _deadline_loop(self) -> None:
        period = max(0.002, min(0.05, self.config.deadline_s / 10))
        sweep_every = max(period, min(1.0, self.config.session_idle_s / 4))
        next_sweep = self.clock() + sweep_every
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            if self.assembler.pending:
                for c in self.assembler.expire(now):
                    self._complete(c)
            if now >= next_sweep:
                self.expire_sessions(now)
                next_sweep = now + sweep_every

    def transport_drops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.transports:
            t.refresh_stats()
            for k, v in t.stats.drops.items():
                out[k] = out.get(k, 0) + v
        return out

    def link_counters(self) -> dict[str, int]:
        """Reopened links and failed attempts to reopen them, over all transports."""
        return {k: sum(getattr(t.stats, k) for t in self.transports) for k in ("reconnects", "reconnect_attempts")}

    def accounting(self) -> dict[str, Any]:
        """Where every sample received went: ``received == predicted + sum(dropped) + pending +
        in_flight`` (``balanced``). At rest (after stop) pending and in_flight are 0, so every sample
        was predicted or dropped under a named reason. Tests and benchmarks check it."""
        c, m = self.metrics.counters, self.metrics
        received, predicted = c.get("samples_received", 0), c.get("predictions", 0)
        pending = self.assembler.pending
        in_flight = sum(t.in_flight for t in self.tails.values())
        dropped = dict(sorted(m.sample_drops.items()))
        return {"received": received, "predicted": predicted, "dropped": dropped, "pending": pending,
                "in_flight": in_flight,
                "balanced": received == predicted + sum(dropped.values()) + pending + in_flight}

    def report(self) -> dict[str, Any]:
        snap = self.metrics.snapshot()
        snap["transport_drops"] = self.transport_drops()
        snap["links"] = self.link_counters()
        snap["devices"] = len(self.sessions)
        snap["tail_batches"] = sum(t.batches for t in self.tails.values())
        snap["accounting"] = self.accounting()
        return snap
