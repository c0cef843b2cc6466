"""A serial link over TCP (QEMU's ``socket://`` serial) that closes and comes back is reopened with
backoff; the frames before and after arrive, the loss, the cut-off frame and the reopening are
counted. A real TCP server on loopback plays the device."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from tinysplit.host_server.transports.serial_port import SerialTransport
from tinysplit.wire.cobs import cobs_encode


def listener(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1)
    return s


class Device(threading.Thread):
    """Accepts the host's connection, sends ``frames`` (COBS, 0-delimited) and ``tail`` raw bytes, reads
    what the host sends until ``hang_up`` is set, then closes the connection and its listening socket."""

    def __init__(self, srv: socket.socket, frames: list[bytes], tail: bytes = b"") -> None:
        super().__init__(daemon=True)
        self.srv, self.frames, self.tail = srv, frames, tail
        self.hang_up = threading.Event()
        self.received = bytearray()

    def run(self) -> None:
        conn, _ = self.srv.accept()
        with conn:
            # pyserial's socket:// discards input already there when it opens: send a moment after the
            # connection, as QEMU's guest (started once the host is connected) does
            time.sleep(0.2)
            conn.sendall(b"".join(cobs_encode(f) + b"\0" for f in self.frames) + self.tail)
            conn.settimeout(0.05)
            while not self.hang_up.is_set():
                try:
                    data = conn.recv(4096)
                    if not data:
                        break
                    self.received += data
                except socket.timeout:
                    pass
        self.srv.close()


async def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_closed_socket_link_is_reopened_with_backoff_and_counted():
    srv = listener()
    port = srv.getsockname()[1]
    first = [bytes([1, i, 0, 7]) for i in range(3)]
    second = [bytes([2, i, 0, 9]) for i in range(3)]
    got: list[bytes] = []

    async def main():
        t = SerialTransport(f"socket://127.0.0.1:{port}", backoff_s=0.05, backoff_max_s=0.2)
        dev = Device(srv, first, tail=cobs_encode(b"\x05cut off")[:4])  # a frame the loss cuts off
        dev.start()
        await t.start(lambda data, peer: got.append(data))
        try:
            await _until(lambda: len(got) == 3)
            dev.hang_up.set()  # the device goes away (listener closed too: reopening fails for a while)
            await _until(lambda: t.stats.drops.get("link_error") == 1)
            await _until(lambda: t.stats.reconnect_attempts >= 2)
            await t.send(b"\x01lost", None)  # sent while the link is down: counted, not raised
            again = Device(listener(port), second)  # the device comes back on the same port
            again.start()
            await _until(lambda: len(got) == 6)
            await t.send(b"\x02hello", None)  # and the host's frames reach it over the new connection
            await _until(lambda: bytes(again.received) == cobs_encode(b"\x02hello") + b"\0")
            again.hang_up.set()
        finally:
            await t.close()
        return t

    t = asyncio.run(main())
    assert got == first + second
    assert t.stats.reconnects == 1 and t.stats.reconnect_attempts >= 2
    assert t.stats.drops == {"link_error": 2, "link_reset": 1}  # the loss, the send while down; the cut frame


def test_backoff_is_bounded_and_stops_on_close():
    """While the peer stays away, attempts come at growing intervals up to the bound, and close() ends them."""
    srv = listener()
    port = srv.getsockname()[1]

    async def main():
        t = SerialTransport(f"socket://127.0.0.1:{port}", backoff_s=0.02, backoff_max_s=0.1)
        dev = Device(srv, [])
        dev.start()
        await t.start(lambda data, peer: None)
        dev.hang_up.set()
        await _until(lambda: t.stats.drops.get("link_error") == 1)
        t0 = time.monotonic()
        await asyncio.sleep(1.0)
        n = t.stats.reconnect_attempts
        await t.close()
        closed = t.stats.reconnect_attempts
        await asyncio.sleep(0.3)
        return n, time.monotonic() - t0, closed, t.stats.reconnect_attempts

    n, _, closed, later = asyncio.run(main())
    # 0.02 + 0.04 + 0.08 + 0.1 + 0.1 ... in 1 s: at least 5 attempts, far fewer than without backoff
    assert 5 <= n <= 15
    assert later == closed  # nothing after close()
