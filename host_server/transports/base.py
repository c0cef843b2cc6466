"""The transport interface: bytes in and out, framing included; one small module per kind."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, Hashable

# A received frame's bytes and where it came from (an address, a port name) so replies can go back.
OnFrame = Callable[[bytes, Hashable], None]


@dataclass
class TransportStats:
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # framing-level drops (cobs, oversize, datagram)
    reconnects: int = 0  # a lost link opened again (serial, socket)
    reconnect_attempts: int = 0  # attempts to reopen it that failed

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n


class Transport(abc.ABC):
    """Delivers whole frames (bytes, already de-framed) to ``on_frame`` on the event loop."""

    url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self.stats = TransportStats()

    @abc.abstractmethod
    async def start(self, on_frame: OnFrame) -> None:
        """Open the port/socket and begin delivering frames."""

    def refresh_stats(self) -> None:
        """Bring ``stats`` up to date with counts kept outside the process (UDP: the kernel's drops)."""

    @abc.abstractmethod
    async def send(self, frame: bytes, peer: Hashable) -> None:
        """Send one encoded frame to ``peer`` (framing is the transport's business)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop delivering and release the port/socket. Idempotent."""
