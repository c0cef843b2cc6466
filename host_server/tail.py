"""Host tails in ONNX Runtime, micro-batched across devices and samples.

Completed samples are submitted without blocking the event loop; one batcher takes everything
waiting (up to ``max_batch``), prepares and runs it in a worker thread (stacking, dequantizing and
ONNX Runtime all release the event loop), and hands the batch's outputs to ``on_batch`` on the
event loop. Per-sample work on the loop is a deque append.

The queue before the tail is bounded (``max_queue`` samples). When a sample arrives at a full
queue, the oldest waiting sample is shed (``on_shed(items, "shed")``): under overload the server
keeps answering the newest samples within max_queue / capacity seconds instead of answering every
sample later and later (oldest first rather than by deadline: every sample has the same latency
budget here, so the oldest is also the one closest to, or past, being useless to its device).
``close(timeout)`` waits for the queue to drain at most ``timeout`` seconds; what is still queued or
running then is shed as ``shed_shutdown``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinysplit.errors import ToolchainError

log = logging.getLogger(__name__)

Prepare = Callable[[list[Any]], list[np.ndarray]]  # items -> one batched array per tail input
OnBatch = Callable[[list[Any], np.ndarray], None]  # items, outputs (one row per item)
OnError = Callable[[list[Any], Exception], None]
OnShed = Callable[[list[Any], str], None]  # items never run, reason


def _no_shed(items: list[Any], reason: str) -> None:
    log.warning("%d samples shed (%s)", len(items), reason)


class TailRunner:
    def __init__(self, onnx_path: str | Path, prepare: Prepare, on_batch: OnBatch, on_error: OnError,
                 max_batch: int = 64, threads: int = 1, max_queue: int = 1024,
                 on_shed: OnShed = _no_shed) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ToolchainError("onnxruntime is not installed: pip install 'tinysplit[host]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.prepare, self.on_batch, self.on_error = prepare, on_batch, on_error
        self.max_batch = max_batch
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self.on_shed = on_shed
        self._pending: deque[Any] = deque()
        self._running: list[Any] = []  # the batch in ONNX Runtime now
        self._work: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")
        self.batches = 0
        self.batched_samples = 0

    def run(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Synchronous: one batched array per tail input -> the first output."""
        return self.session.run(None, dict(zip(self.input_names, inputs)))[0]

    def _prepare_and_run(self, items: list[Any]) -> np.ndarray:
        return self.run(self.prepare(items))

    async def start(self) -> None:
        self._work, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._batcher(), name="tail-batcher")

    @property
    def queued(self) -> int:
        """Samples waiting for the tail."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Samples submitted and not yet handed to on_batch/on_error/on_shed: queued + running."""
        return len(self._pending) + len(self._running)

    def submit(self, item: Any) -> None:
        self._pending.append(item)
        if len(self._pending) > self.max_queue:  # shed the oldest: bounded memory and latency
            self.on_shed([self._pending.popleft() for _ in range(len(self._pending) - self.max_queue)], "shed")
        self._idle.clear()
        self._work.set()

    async def _batcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            if not self._pending:
                self._work.clear()
            if not batch:
                continue
            self._running = batch
            try:
                out = await loop.run_in_executor(self._pool, self._prepare_and_run, batch)
            except Exception as e:  # a tail failure fails these samples, not the server
                log.error("tail failed on a batch of %d: %s", len(batch), e)
                self.on_error(batch, e)
            else:
                self.batches += 1
                self.batched_samples += len(batch)
                try:
                    self.on_batch(batch, out)
                except Exception:
                    log.exception("handling a tail batch failed")
                    self.on_error(batch, RuntimeError("on_batch failed"))
            self._running = []
            if not self._pending:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until everything submitted so far has been handled."""
        await self._idle.wait()

    async def close(self, timeout: float | None = None) -> None:
        """Run what is queued, for at most ``timeout`` seconds (None: until done); then what is still
        queued or running is shed as ``shed_shutdown`` and the batcher stops. A batch already in ONNX
        Runtime cannot be interrupted: its thread finishes it in the background, its result unused."""
        timed_out = False
        if self._task is not None:
            try:
                await asyncio.wait_for(self.drain(), timeout)
            except asyncio.TimeoutError:
                timed_out = True
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            left = [*self._running, *self._pending]
            self._running, self._pending = [], deque()
            if left:
                self.on_shed(left, "shed_shutdown")
        self._pool.shutdown(wait=not timed_out, cancel_futures=True)
