"""tinysplit.firmware.stdio_relay, the TCP serial port in front of an emulator's stdin/stdout (the
Xtensa sim's console): bytes both ways, nothing the program writes before the connection is lost,
the connection closed after the last byte, the program's exit status passed on, a taken port named
in the words the QEMU starter retries on. The LX106 HIL tests run it with QEMU itself."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from tinysplit.firmware.project import UART_TEMPLATES
from tinysplit.firmware.qemu import STDIO_CONSOLES, free_port

# echoes what it reads, upper-cased, until it reads "q", then exits 3; writes a banner first
PROGRAM = ("import sys\n"
           "sys.stdout.buffer.write(b'hello\\n'); sys.stdout.flush()\n"
           "while True:\n"
           "    b = sys.stdin.buffer.read(1)\n"
           "    if b in (b'', b'q'): break\n"
           "    sys.stdout.buffer.write(b.upper()); sys.stdout.flush()\n"
           "sys.stdout.buffer.write(b'bye'); sys.stdout.flush()\n"
           "sys.exit(3)\n")


def _relay(port: int, *cmd: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tinysplit.firmware.stdio_relay", "--port", str(port), "--", *cmd],
                            stderr=subprocess.PIPE)


def _connect(port: int, proc: subprocess.Popen) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.02)


def _recv_until_closed(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return data


def test_relays_both_ways_and_passes_the_exit_status_on() -> None:
    port = free_port()
    proc = _relay(port, sys.executable, "-c", PROGRAM)
    try:
        s = _connect(port, proc)
        s.sendall(b"abc")
        got = b""
        while len(got) < len(b"hello\nABC"):
            got += s.recv(64)
        assert got == b"hello\nABC"
        s.sendall(b"q")
        assert _recv_until_closed(s) == b"bye"   # the last bytes arrive, then the connection closes
        assert proc.wait(timeout=20) == 3
    finally:
        proc.kill()
        proc.wait()


def test_a_taken_port_is_named_as_qemu_names_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proc = _relay(taken.getsockname()[1], sys.executable, "-c", "pass")
        assert proc.wait(timeout=20) == 1
        assert "Address already in use" in proc.stderr.read().decode()


def test_stdio_consoles_are_uart_kinds_the_generator_knows() -> None:
    assert STDIO_CONSOLES and STDIO_CONSOLES <= set(UART_TEMPLATES)
