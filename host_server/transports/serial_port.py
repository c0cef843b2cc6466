"""``serial:///dev/ttyACM0?baud=115200`` (a real port) and ``socket://HOST:PORT`` (QEMU's serial over
TCP), both through pyserial, read by a thread that hands bytes to the event loop."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Hashable
from urllib.parse import parse_qs, urlsplit

from tinysplit.errors import InputError, ToolchainError
from tinysplit.host_server.transports.stream import CobsStream

log = logging.getLogger(__name__)


def pyserial_target(url: str) -> tuple[str, int]:
    """The pyserial port/URL and baud rate for a tinysplit serial URL."""
    if url.startswith("socket://"):
        return url, 115200
    parts = urlsplit(url)
    if not parts.path:
        raise InputError(f"'{url}' names no port; use serial:///dev/ttyACM0?baud=115200")
    q = parse_qs(parts.query)
    baud = q.get("baud", ["115200"])[0]
    if not baud.isdigit():
        raise InputError(f"'{url}': baud must be a number, got '{baud}'")
    return parts.path, int(baud)


class SerialTransport(CobsStream):
    def __init__(self, url: str, connect_timeout: float = 10.0) -> None:
        super().__init__(url)
        self.target, self.baud = pyserial_target(url)
        self.connect_timeout = connect_timeout
        self._port = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_lock = threading.Lock()

    def _open(self):
        try:
            import serial
        except ImportError:
            raise ToolchainError("pyserial is not installed: pip install 'tinysplit[host]'") from None
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                port = serial.serial_for_url(self.target, baudrate=self.baud, timeout=0.05)
                break
            except (serial.SerialException, OSError, ValueError) as e:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise InputError(f"cannot open {self.url}: {e}") from None
                time.sleep(0.05)
        sock = getattr(port, "_socket", None)
        if sock is not None:  # QEMU's serial over TCP: small frames need TCP_NODELAY (0.5 ms, not 45 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return port

    async def start(self, on_frame) -> None:
        self._on_frame = on_frame
        self._loop = asyncio.get_running_loop()
        self._port = await self._loop.run_in_executor(None, self._open)
        self._thread = threading.Thread(target=self._reader, name=f"serial-{self.url}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read(4096)
            except Exception as e:  # link gone (QEMU exited, cable pulled): count it and stop reading
                if not self._stop.is_set():
                    log.info("%s: read failed (%s); link closed (counted as link_error)", self.url, e)
                    self._loop.call_soon_threadsafe(self.stats.drop, "link_error")
                return
            if data:
                self._loop.call_soon_threadsafe(self._received, bytes(data), self.url)

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            self._port.write(data)

    async def send(self, frame: bytes, peer: Hashable) -> None:
        if self._port is None:
            return
        data = self.encode(frame)
        try:
            await self._loop.run_in_executor(None, self._write, data)
        except Exception:
            self.stats.drop("link_error")
            return
        self.stats.bytes_out += len(data)
        self.stats.frames_out += 1

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 1.0)
            self._thread = None
        if self._port is not None:
            try:
                self._port.close()
            except Exception:
                pass
            self._port = None
