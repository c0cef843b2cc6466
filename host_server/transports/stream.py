"""Stream transports (serial ports, QEMU's TCP serial, in-memory loops) share COBS framing."""

from __future__ import annotations

from typing import Hashable

from tinysplit.host_server.transports.base import OnFrame, Transport
from tinysplit.wire.auth import AUTH_MAX_ENCODED
from tinysplit.wire.cobs import CobsDeframer, cobs_encode


class CobsStream(Transport):
    """Base for byte streams: feed received bytes to ``_received``; ``_write`` sends raw bytes."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # room for an authenticated (version 2) frame; a longer plain frame still fails its decoder
        self._deframer = CobsDeframer(AUTH_MAX_ENCODED)
        self._on_frame: OnFrame | None = None

    def _received(self, data: bytes, peer: Hashable) -> None:
        self.stats.bytes_in += len(data)
        before = dict(self._deframer.drops)
        frames = self._deframer.feed(data)
        for reason, n in self._deframer.drops.items():
            if n != before.get(reason, 0):
                self.stats.drop(reason, n - before.get(reason, 0))
        for f in frames:
            self.stats.frames_in += 1
            if self._on_frame is not None:
                self._on_frame(f, peer)

    @staticmethod
    def encode(frame: bytes) -> bytes:
        return cobs_encode(frame) + b"\x00"
