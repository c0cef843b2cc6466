"""``serial:///dev/ttyACM0?baud=115200`` (a real port) and ``socket://HOST:PORT`` (QEMU's serial over
TCP), both through pyserial, read by a thread that hands bytes to the event loop.

A link that closes (QEMU restarted, a cable pulled, the peer closed the socket) is reopened by the
reader thread with exponential backoff: 0.1 s, doubling, at most 5 s between attempts, until it
comes back or the transport is closed. Each loss counts as a ``link_error`` drop and a logged
WARNING; each reopening counts in ``stats.reconnects``, each failed attempt in
``stats.reconnect_attempts``. A frame cut off by the loss is dropped (``link_reset``)."""

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
    def __init__(self, url: str, connect_timeout: float = 10.0, backoff_s: float = 0.1,
                 backoff_max_s: float = 5.0, reconnect: bool = True) -> None:
        """``reconnect=False``: a lost link stays closed (a link whose peer's life is the link's, as an
        emulator's UART that a test harness runs)."""
        super().__init__(url)
        self.reconnect = reconnect
        self.target, self.baud = pyserial_target(url)
        self.connect_timeout = connect_timeout
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._port = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_lock = threading.Lock()

    def _open_once(self):
        """One attempt to open the port; raises what pyserial raises (SerialException, OSError, ValueError)."""
        try:
            import serial
        except ImportError:
            raise ToolchainError("pyserial is not installed: pip install 'tinysplit[host]'") from None
        port = serial.serial_for_url(self.target, baudrate=self.baud, timeout=0.05)
        sock = getattr(port, "_socket", None)
        if sock is not None:  # QEMU's serial over TCP: small frames need TCP_NODELAY (0.5 ms, not 45 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return port

    def _open(self):
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                port = self._open_once()
            except (OSError, ValueError) as e:  # pyserial's SerialException is an OSError
                if time.monotonic() > deadline or self._stop.is_set():
                    raise InputError(f"cannot open {self.url}: {e}") from None
                time.sleep(0.05)
                continue
            if self._stop.is_set():  # the start was given up (cancelled) meanwhile
                port.close()
                raise InputError(f"{self.url}: closed while it was being opened")
            return port

    async def start(self, on_frame) -> None:
        self._on_frame = on_frame
        self._loop = asyncio.get_running_loop()
        try:
            self._port = await self._loop.run_in_executor(None, self._open)
        except BaseException:  # cancelled (or failed): the opening thread gives up too
            self._stop.set()
            raise
        self._thread = threading.Thread(target=self._reader, name=f"serial-{self.url}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read(4096)
            except Exception as e:  # link gone (QEMU exited, cable pulled): count it, reopen with backoff
                if self._stop.is_set():
                    return
                self._loop.call_soon_threadsafe(self._link_lost)
                if not self.reconnect:
                    log.info("%s: link closed (%s; counted as link_error)", self.url, e)
                    return
                log.warning("%s: link lost (%s); reopening it with backoff (counted as link_error)", self.url, e)
                if not self._reopen():
                    return
                continue
            if data:
                self._loop.call_soon_threadsafe(self._received, bytes(data), self.url)

    def _link_lost(self) -> None:
        """On the event loop: count the loss; a frame it cut off is dropped, not glued to the next bytes."""
        self.stats.drop("link_error")
        if self._deframer.pending:
            self.stats.drop("link_reset")
        self._deframer.reset()

    def _reopen(self) -> bool:
        """Reader thread: close the lost port and open it again, waiting 0.1 s, 0.2 s, ... (at most
        ``backoff_max_s``) between attempts. False when the transport was closed meanwhile."""
        with self._write_lock:
            old, self._port = self._port, None
        try:
            old.close()
        except Exception:  # noqa: BLE001 -- a dead port may fail to close; it is gone either way
            pass
        delay, attempts, t0 = self.backoff_s, 0, time.monotonic()
        while not self._stop.wait(delay):
            try:
                port = self._open_once()
            except (OSError, ValueError) as e:
                attempts += 1
                self.stats.reconnect_attempts += 1
                log.info("%s: reopening failed (attempt %d: %s); next try in %.1f s", self.url, attempts, e,
                         min(delay * 2, self.backoff_max_s))
                delay = min(delay * 2, self.backoff_max_s)
                continue
            with self._write_lock:
                if self._stop.is_set():
                    port.close()
                    return False
                self._port = port
            self.stats.reconnects += 1
            log.warning("%s: link reopened after %.1f s (%d failed attempt(s))", self.url, time.monotonic() - t0,
                        attempts)
            return True
        return False

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            if self._port is None:
                raise OSError(f"{self.url} is closed (being reopened)")
            self._port.write(data)

    async def send(self, frame: bytes, peer: Hashable) -> None:
        if self._loop is None or self._stop.is_set():  # not started, or closed
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
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass
