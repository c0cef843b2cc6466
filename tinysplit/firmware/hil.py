"""Host side of the hardware-in-the-loop test protocol TSHIL1 (until the real wire protocol lands).

The device (app ``hil``) speaks a tiny binary protocol over its UART:

    device -> host   b"TSHIL1 in=<P_INPUT_BYTES> out=<P_OUTPUT_BYTES>\\n"   once, when it can receive
    host -> device   b"I" + exactly `in` bytes (one int8 NHWC input)
    device -> host   b"O" + `out` bytes (the int8 output) + uint32 LE instructions of p_invoke()
                     or b"E" + int8 status when p_invoke() failed
    host -> device   b"L" + uint32 LE n      (a loop of exactly 2*n instructions runs under the counter)
    device -> host   b"L" + uint32 LE instructions counted
    host -> device   b"Q"                    (the device exits with status 0)
    device -> host   b"?" + byte             for an unknown command

Instruction counts: on Cortex-M the device reads SysTick (core clock f) while QEMU runs with
``-icount shift=7``, where each instruction is 2^7 ns of virtual time, and reports
``instructions = ticks * (1e9 / f) / 2^7`` (the SysTick wrap handler's 5 instructions per 2^24
ticks are included); on RISC-V it reports the ``minstret`` difference, which QEMU 7.2 under
-icount counts in virtual ns (2^7 per instruction), so the device shifts it right by 7 (exact).
On Xtensa (LX106) it reads the ICOUNT debug register, which counts
instructions itself (exact without -icount). Checked with the 'L' command: a loop of 2n
instructions reads 2n + 13 (Cortex-M), 2n + 20 (RV32) or 2n + 8 (LX106) on every board, for any
n. All are deterministic: the same input gives the same count on every run.

Every read on the host side has a timeout; a device that stops answering raises
EmulatorTimeoutError, one that answers nonsense raises HilProtocolError.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from pathlib import Path

import numpy as np

from tinysplit.boards import Board
from tinysplit.errors import TinysplitError
from tinysplit.firmware.qemu import EmulatorTimeoutError, QemuInstance, import_pyserial

log = logging.getLogger(__name__)

BANNER_RE = re.compile(rb"TSHIL1 in=(\d+) out=(\d+)\n")
MAX_BANNER_BYTES = 256


class HilProtocolError(TinysplitError):
    """The device answered something the TSHIL1 protocol does not allow."""

    exit_code = 1


class HilSession:
    """Start a HIL firmware in QEMU, wait for its banner, run inferences, close.

        with HilSession(board, elf) as s:
            y, instructions = s.infer(x)   # x: int8 array of s.input_bytes values
    """

    def __init__(self, board: Board, elf: str | Path, timeout: float = 10.0) -> None:
        self.board = board
        self.timeout = timeout
        self.qemu = QemuInstance(board, elf, connect_timeout=timeout)
        try:
            self.input_bytes, self.output_bytes = self._read_banner()
        except BaseException:
            self.qemu.close()
            raise
        self.start_seconds = time.perf_counter() - self.qemu.t0
        log.info("HIL session on %s: in=%d out=%d (up in %.3f s)", board.name, self.input_bytes,
                 self.output_bytes, self.start_seconds)

    # -- low level ---------------------------------------------------------------------------------
    def _read_exact(self, n: int, what: str) -> bytes:
        serial = import_pyserial()

        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EmulatorTimeoutError(
                    f"{self.board.name}: no complete {what} within {self.timeout:.1f} s "
                    f"(got {len(buf)} of {n} bytes{self._exit_note()})")
            self.qemu.serial.timeout = min(left, 0.5)
            try:
                chunk = self.qemu.serial.read(n - len(buf))
            except serial.SerialException:
                raise HilProtocolError(f"{self.board.name}: the device closed the line while sending {what} "
                                       f"(got {len(buf)} of {n} bytes{self._exit_note(wait=True)})") from None
            buf += chunk
        return bytes(buf)

    def _exit_note(self, wait: bool = False) -> str:
        code = self.qemu.poll()
        if code is None and wait:
            try:
                code = self.qemu.proc.wait(timeout=1.0)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001
                code = None
        return "" if code is None else f"; the firmware exited with status {code}"

    def _read_banner(self) -> tuple[int, int]:
        buf = bytearray()
        while not buf.endswith(b"\n"):
            if len(buf) >= MAX_BANNER_BYTES:
                raise HilProtocolError(f"{self.board.name}: no TSHIL1 banner in the first {MAX_BANNER_BYTES} "
                                       f"bytes: {bytes(buf)!r}")
            buf += self._read_exact(1, "banner")
        m = BANNER_RE.search(bytes(buf))
        if m is None:
            raise HilProtocolError(f"{self.board.name}: expected 'TSHIL1 in=N out=M', got {bytes(buf)!r}")
        return int(m.group(1)), int(m.group(2))

    def _send(self, data: bytes) -> None:
        self.qemu.serial.write(data)
        self.qemu.serial.flush()

    def _expect(self, tag: bytes, what: str) -> None:
        got = self._read_exact(1, what)
        if got == tag:
            return
        if got == b"E":
            status = struct.unpack("<b", self._read_exact(1, "error status"))[0]
            raise HilProtocolError(f"{self.board.name}: the model's invoke() returned {status}")
        if got == b"?":
            bad = self._read_exact(1, "rejected command")
            raise HilProtocolError(f"{self.board.name}: the device rejected command {bad!r}")
        raise HilProtocolError(f"{self.board.name}: expected {tag!r} starting {what}, got {got!r}")

    # -- protocol ----------------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Run one int8 input; return (int8 output, instructions of the model's invoke())."""
        a = np.asarray(x)
        if a.dtype != np.int8:
            raise TypeError(f"HIL input must be int8, got {a.dtype}")
        if a.size != self.input_bytes:
            raise ValueError(f"HIL input must have {self.input_bytes} values, got {a.size}")
        self._send(b"I" + a.tobytes())
        self._expect(b"O", "an output")
        out = np.frombuffer(self._read_exact(self.output_bytes, "output"), dtype=np.int8).copy()
        instructions, = struct.unpack("<I", self._read_exact(4, "instruction count"))
        return out, instructions

    def loop_instructions(self, n: int) -> int:
        """Instructions the device counts for its known loop of exactly 2*n instructions."""
        if not 1 <= n < 2**32:
            raise ValueError(f"n must be in 1..2**32-1, got {n}")
        self._send(b"L" + struct.pack("<I", n))
        self._expect(b"L", "a loop count")
        return struct.unpack("<I", self._read_exact(4, "loop count"))[0]

    def close(self) -> int | None:
        """Ask the device to exit (status 0 expected) and stop QEMU. Returns the exit status, or
        None if QEMU was already gone."""
        try:
            if self.qemu.poll() is None:
                try:
                    self._send(b"Q")
                except Exception:  # noqa: BLE001 -- the line may be gone; wait() below tells
                    pass
                return self.qemu.wait(self.timeout)
            return self.qemu.poll()
        finally:
            self.qemu.close()

    def __enter__(self) -> "HilSession":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.qemu.close()
