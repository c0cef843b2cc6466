"""``udp://HOST:PORT``: listen for datagrams, one frame per datagram; reply to the sender's address.

Nothing is lost without a count: datagrams the kernel dropped because the socket's receive buffer
was full (the server fell behind) are read from the kernel's per-socket counter (Linux:
/proc/net/udp) as the drop reason ``rcvbuf``, and ``close()`` first reads every datagram the
kernel already holds for the socket, so a shutdown does not throw away frames that had arrived."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
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
        self._inode: int | None = None

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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        try:
            self._inode = os.fstat(sock.fileno()).st_ino
        except OSError:
            self._inode = None

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

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (receive buffer full); None where unknown."""
        if self._inode is None:
            return None
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) >= 13 and f[9] == str(self._inode):
                    return int(f[-1])
        return None

    def refresh_stats(self) -> None:
        n = self.kernel_drops() if self._tr is not None else None
        if n:
            self.stats.drops["rcvbuf"] = n

    def _drain(self) -> None:
        """Read every datagram the kernel holds for the socket now (shutdown)."""
        sock = self._tr.get_extra_info("socket")
        try:
            dup = sock.dup()
        except OSError:
            return
        with dup:
            dup.setblocking(False)
            while True:
                try:
                    data, addr = dup.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self.stats.drop("socket_error")
                    return
                self._datagram(data, addr)

    async def close(self) -> None:
        if self._tr is not None:
            self.refresh_stats()
            self._drain()
            self._tr.close()
            self._tr = None
