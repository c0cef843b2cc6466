"""``udp://HOST:PORT``: listen for datagrams, one frame per datagram; reply to the sender's address."""

from __future__ import annotations

import asyncio
from typing import Hashable

from tinysplit.errors import InputError
from tinysplit.host_server.addr import split_host_port, warn_if_all_interfaces
from tinysplit.host_server.transports.base import OnFrame, Transport
from tinysplit.wire.frame import MAX_FRAME


def parse_host_port(url: str, scheme: str) -> tuple[str, int]:
    """``udp://HOST:PORT`` or ``udp://[IPV6]:PORT`` -> (host, port); an empty host is 0.0.0.0 (every interface)."""
    return split_host_port(url[len(scheme) + 3:], f"the {scheme}:// URL", "0.0.0.0")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "UdpTransport") -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr) -> None:
        self.owner._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable etc.: count, carry on
        self.owner.stats.drop("socket_error")


class UdpTransport(Transport):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.host, self.port = parse_host_port(url, "udp")
        self._tr: asyncio.DatagramTransport | None = None
        self._on_frame: OnFrame | None = None

    @property
    def bound_port(self) -> int:
        return self._tr.get_extra_info("sockname")[1] if self._tr else self.port

    async def start(self, on_frame: OnFrame) -> None:
        self._on_frame = on_frame
        loop = asyncio.get_running_loop()
        try:
            self._tr, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                              local_addr=(self.host, self.port))
        except OSError as e:
            raise InputError(f"cannot listen on {self.url}: {e.strerror or e}; pick a free port") from None
        warn_if_all_interfaces(self.host, self.bound_port, f"the frame listener {self.url}")
        sock = self._tr.get_extra_info("socket")
        try:  # room for bursts from many devices
            import socket

            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass

    def _datagram(self, data: bytes, addr) -> None:
        self.stats.bytes_in += len(data)
        if len(data) > MAX_FRAME:
            self.stats.drop("datagram_size")
            return
        self.stats.frames_in += 1
        if self._on_frame is not None:
            self._on_frame(data, addr)

    async def send(self, frame: bytes, peer: Hashable) -> None:
        if self._tr is not None:
            self._tr.sendto(frame, peer)
            self.stats.bytes_out += len(frame)
            self.stats.frames_out += 1

    async def close(self) -> None:
        if self._tr is not None:
            self._tr.close()
            self._tr = None
