"""A fault-injecting wrapper around a transport's frame delivery: drops, duplicates and reorders
frames with a seeded RNG, and records exactly what it did so tests can account for every frame."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Hashable

from tinysplit.host_server.transports.base import OnFrame, Transport


@dataclass
class FaultLog:
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    dropped_frames: list[bytes] = field(default_factory=list)


class FaultyTransport(Transport):
    def __init__(self, inner: Transport, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.stats = inner.stats
        self.p_drop, self.p_dup, self.p_reorder = drop, duplicate, reorder
        self.rng = random.Random(seed)
        self.log = FaultLog()
        self._held: tuple[bytes, Hashable] | None = None

    async def start(self, on_frame: OnFrame) -> None:
        def faulty(data: bytes, peer: Hashable) -> None:
            r = self.rng.random()
            if r < self.p_drop:
                self.log.dropped += 1
                self.log.dropped_frames.append(data)
                return
            if r < self.p_drop + self.p_reorder and self._held is None:
                self._held = (data, peer)  # delivered after the next frame
                self.log.reordered += 1
                return
            self._deliver(on_frame, data, peer)
            if self._held is not None:
                held, self._held = self._held, None
                self._deliver(on_frame, *held)
            if self.rng.random() < self.p_dup:
                self.log.duplicated += 1
                self._deliver(on_frame, data, peer)

        await self.inner.start(faulty)
        self._on_frame = on_frame

    def _deliver(self, on_frame: OnFrame, data: bytes, peer: Hashable) -> None:
        self.log.delivered += 1
        on_frame(data, peer)

    def release_held(self) -> None:
        """Deliver a frame still held for reordering (end of a test's stream)."""
        if self._held is not None:
            held, self._held = self._held, None
            self._deliver(self._on_frame, *held)

    async def send(self, frame: bytes, peer: Hashable) -> None:
        await self.inner.send(frame, peer)

    async def close(self) -> None:
        await self.inner.close()
