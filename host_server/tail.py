"""Host tails in ONNX Runtime, micro-batched across devices and samples.

Requests queue up; a batcher takes everything waiting (up to ``max_batch``), runs one ONNX Runtime
call in a worker thread (ORT releases the GIL), and resolves each request's future.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tinysplit.errors import ToolchainError


class TailRunner:
    def __init__(self, onnx_path: str | Path, max_batch: int = 64, threads: int = 1) -> None:
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
        self.max_batch = max_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")
        self.batches = 0
        self.batched_samples = 0

    def run_batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Synchronous: inputs are per tail input, each batched on axis 0."""
        return self.session.run(None, dict(zip(self.input_names, inputs)))[0]

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._batcher(), name="tail-batcher")

    async def infer(self, inputs: list[np.ndarray]) -> np.ndarray:
        """One sample's tail inputs (without batch axis) -> its output row."""
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((inputs, fut))
        return await fut

    async def _batcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stacked = [np.stack([b[0][i] for b in batch]) for i in range(len(self.input_names))]
            try:
                out = await loop.run_in_executor(self._pool, self.run_batch, stacked)
            except Exception as e:  # a tail failure fails these samples, not the server
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.batched_samples += len(batch)
            for row, (_, fut) in zip(out, batch):
                if not fut.done():
                    fut.set_result(row)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._pool.shutdown(wait=True)
