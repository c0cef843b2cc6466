"""``loop://NAME``: an in-process byte pipe for tests. The other end is a ``LoopPeer``."""

from __future__ import annotations

import asyncio
from typing import Hashable

from tinysplit.host_server.transports.stream import CobsStream

_PEERS: dict[str, "LoopPeer"] = {}


class LoopPeer:
    """The device side of a loop:// transport: write raw bytes in, read what the server sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: LoopTransport | None = None
        self.sent_to_device: list[bytes] = []  # raw bytes the server wrote (COBS-framed)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            raise RuntimeError(f"loop://{self.name} has no server attached")
        self.transport._received(data, self.name)


def loop_peer(name: str) -> LoopPeer:
    """Get (or create) the device end of ``loop://name``."""
    return _PEERS.setdefault(name, LoopPeer(name))


class LoopTransport(CobsStream):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.name = url.split("://", 1)[1] or "default"

    async def start(self, on_frame) -> None:
        self._on_frame = on_frame
        loop_peer(self.name).transport = self

    async def send(self, frame: bytes, peer: Hashable) -> None:
        data = self.encode(frame)
        self.stats.bytes_out += len(data)
        self.stats.frames_out += 1
        loop_peer(self.name).sent_to_device.append(data)
        await asyncio.sleep(0)

    async def close(self) -> None:
        p = _PEERS.get(self.name)
        if p is not None and p.transport is self:
            p.transport = None
