"""Run an ELF on its board's QEMU machine, always under a hard timeout.

QEMU runs with ``-icount shift=7,sleep=off`` (deterministic instruction counting), semihosting
enabled (the firmware's exit status becomes QEMU's), and the board's first UART on a TCP socket
chardev on a free 127.0.0.1 port. QEMU waits for that connection before the guest starts
(``server=on,wait=on``), so no UART output is lost; the host connects with pyserial
``socket://`` and sets TCP_NODELAY on the socket (pyserial does not; without it a small
request/response takes tens of ms).
"""

from __future__ import annotations

import logging
import select
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from tinysplit import children
from tinysplit.boards import Board
from tinysplit.errors import InputError, TinysplitError, ToolchainError
from tinysplit.firmware.build import SETUP_HINT, require_tool
from tinysplit.firmware.project import ICOUNT_SHIFT

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class EmulatorTimeoutError(TinysplitError):
    """The firmware did not finish (or answer) within its time limit; QEMU was stopped."""

    exit_code = 124


def import_pyserial():
    """pyserial (the ``host`` extra), or ToolchainError saying how to install it."""
    try:
        import serial
    except ImportError:
        raise ToolchainError("pyserial is not installed; run ./setup.sh or pip install 'tinysplit[host]'") from None
    return serial


ELF_MACHINES = {"cortex_m": 40, "riscv": 243, "xtensa": 94}  # e_machine: EM_ARM, EM_RISCV, EM_XTENSA


def check_elf(elf: Path, board: Board) -> None:
    """InputError unless ``elf`` is a 32-bit little-endian ELF for the board's architecture (QEMU
    would otherwise fail after the guest is supposed to start, indistinguishable from exit 1)."""
    head = elf.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 1 or head[5] != 1:
        raise InputError(f"'{elf}' is not a 32-bit little-endian ELF file; build the project with 'tinysplit build'")
    machine = int.from_bytes(head[18:20], "little")
    if machine != ELF_MACHINES[board.family]:
        raise InputError(f"'{elf}' is built for ELF machine {machine}, not for {board.name} ({board.family}); "
                         "was the project generated for another board?")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BOOT_ENTROPY_SYMBOL = "ts_boot_entropy"  # firmware_templates/common/board_io.c.j2 (authenticated builds)


def boot_entropy_args(elf: Path, value: int | None = None) -> list[str]:
    """For an authenticated build (its ELF has the boot entropy cell): QEMU's generic loader puts a
    fresh random non-zero u32 (or ``value``) there at launch, the device nonce of that boot. Else []."""
    import secrets

    from tinysplit.firmware.elfsym import symbol_address

    addr = symbol_address(elf, BOOT_ENTROPY_SYMBOL) if elf.is_file() else None
    if addr is None:
        return []
    v = secrets.randbelow(0xFFFFFFFF) + 1 if value is None else value
    return ["-device", f"loader,addr=0x{addr:08x},data=0x{v:08x},data-len=4"]


# UART kinds whose QEMU console is served through tinysplit.firmware.stdio_relay instead of a socket
# chardev: the Xtensa sim machine's chardev console loses or repeats input bytes under load (the
# relay's docstring says why)
STDIO_CONSOLES = frozenset({"xtensa_simcall"})


def qemu_command(board: Board, elf: Path, port: int, qemu: str | None = None) -> list[str]:
    """The QEMU command line for ``elf`` on ``board`` with its UART on 127.0.0.1:``port`` (and, for an
    authenticated build, a fresh boot nonce: ``boot_entropy_args``). Arguments appended to it reach
    QEMU (for a console in STDIO_CONSOLES the line starts the relay, and QEMU's own line ends it)."""
    if board.emulator is None:
        raise InputError(f"board '{board.name}' has no emulator; it runs only on hardware")
    em = board.emulator
    base = [qemu or em.qemu_binary, "-M", em.qemu_machine, *em.extra_args, *boot_entropy_args(Path(elf)),
            "-kernel", str(elf), "-nographic", "-monitor", "none",
            "-icount", f"shift={ICOUNT_SHIFT},sleep=off",
            "-semihosting-config", "enable=on,target=native"]
    if board.uart.kind in STDIO_CONSOLES:
        return [sys.executable, "-m", "tinysplit.firmware.stdio_relay", "--port", str(port), "--", *base,
                "-serial", "none"]
    return [*base, "-chardev", f"socket,id=s0,host=127.0.0.1,port={port},server=on,wait=on,nodelay=on",
            "-serial", "chardev:s0"]


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    uart: bytes  # everything the firmware wrote to its UART
    stdout: str  # QEMU's own output (semihosting console, warnings)
    seconds: float


class QemuInstance:
    """A running QEMU with its UART connected. Use as a context manager; ``close()`` kills it."""

    def __init__(self, board: Board, elf: str | Path, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        serial = import_pyserial()

        self.board = board
        self.elf = Path(elf)
        if not self.elf.is_file():
            raise InputError(f"firmware '{self.elf}' does not exist; build the project first ('tinysplit build')")
        if board.emulator is None:
            raise InputError(f"board '{board.name}' has no emulator; it runs only on hardware")
        check_elf(self.elf, board)
        qemu = require_tool(board.emulator.qemu_binary, f"QEMU for {board.name}")
        self.t0 = time.perf_counter()
        self._log: IO[bytes] = tempfile.TemporaryFile()
        self.proc: subprocess.Popen | None = None
        self.serial = None
        try:
            self._start(serial, qemu, connect_timeout)
        except BaseException:
            self.close()
            raise
        self.serial._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.start_seconds = time.perf_counter() - self.t0
        log.debug("QEMU %s up, UART connected after %.3f s", board.emulator.qemu_machine, self.start_seconds)

    def _start(self, serial: Any, qemu: str, connect_timeout: float) -> None:
        """Start QEMU on a free port and connect to its UART (retried if the port was taken)."""
        em = self.board.emulator
        assert em is not None
        for _attempt in range(3):  # a free port can be taken between our check and QEMU's bind
            port = free_port()
            cmd = qemu_command(self.board, self.elf, port, qemu)
            log.debug("starting %s", " ".join(cmd))
            self._log.seek(0)
            self._log.truncate()
            try:
                self.proc = children.spawn(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                           stderr=subprocess.STDOUT)
            except OSError as e:
                raise ToolchainError(f"could not start {qemu}: {e.strerror}; {SETUP_HINT}") from None
            deadline = time.monotonic() + connect_timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    self.serial = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.1)
                    break
                except serial.SerialException:
                    time.sleep(0.005)
            if self.serial is not None:
                break
            out = self.output()
            self.kill()
            if "in use" not in out:
                if self.proc.returncode is None or self.proc.returncode < 0:
                    raise EmulatorTimeoutError(f"QEMU ({em.qemu_machine}) did not open its serial port "
                                               f"within {connect_timeout:.0f} s")
                raise ToolchainError(f"QEMU ({em.qemu_machine}) exited with status "
                                     f"{self.proc.returncode} before the firmware started: {out.strip()[-800:]}")
        if self.serial is None:
            raise ToolchainError("QEMU could not bind a free 127.0.0.1 port after 3 attempts")

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def poll(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def wait(self, timeout: float, limit: float | None = None) -> int:
        """Wait up to ``timeout`` s for QEMU to exit; its status is the firmware's. Past it QEMU is
        killed and EmulatorTimeoutError raised (its message names ``limit``, the whole run's limit)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            self.kill()
            raise EmulatorTimeoutError(f"firmware '{self.elf}' on {self.board.name} did not exit within "
                                       f"{limit if limit is not None else timeout:.1f} s; QEMU was stopped "
                                       "(is it waiting for input, or hung?)") from None

    def kill(self) -> None:
        if self.serial is not None:
            try:
                self.serial.close()
            except Exception:  # noqa: BLE001 -- closing a dead socket must not mask the real error
                pass
        if self.proc is not None:  # QEMU's whole process group, unless it exited; reaped either way
            children.stop(self.proc)

    def close(self) -> None:
        self.kill()
        self._log.close()

    def __enter__(self) -> "QemuInstance":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_elf(board: Board, elf: str | Path, timeout: float = 30.0,
            on_uart: Callable[[bytes], None] | None = None) -> RunResult:
    """Run ``elf`` until it exits; return its exit status and UART output.

    The timeout is hard: past it QEMU is killed and EmulatorTimeoutError raised."""
    if timeout <= 0:
        raise InputError(f"timeout must be positive, got {timeout}")
    deadline = time.monotonic() + timeout
    with QemuInstance(board, elf, connect_timeout=min(timeout, CONNECT_TIMEOUT_S)) as q:
        sock = q.serial._socket  # pyserial's read() drops buffered bytes when the peer closes
        uart = bytearray()
        eof = False
        while not eof and time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], min(0.1, max(deadline - time.monotonic(), 0.0)))
            if not ready:
                continue
            try:
                chunk = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:  # QEMU closed the socket: the firmware exited
                eof = True
                break
            uart += chunk
            if on_uart is not None:
                on_uart(chunk)
        code = q.wait(deadline - time.monotonic(), limit=timeout)
        seconds = time.perf_counter() - q.t0
        return RunResult(code, bytes(uart), q.output(), seconds)
