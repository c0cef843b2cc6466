"""Host-side driver for a method's device app (any app on the generic device runtime) in QEMU.

``DeviceLink`` starts QEMU with the app's ELF (UART on a 127.0.0.1 TCP chardev; for the UDP build
also ``-nic user,model=lan9118``: the board's datagrams to 10.0.2.2:PORT arrive at the host's
127.0.0.1:PORT) and gives the host both directions of the link:

- **device -> host** frames arrive on one *data* transport: the serial link (``socket://``) for a
  UART build, a ``udp://127.0.0.1:PORT`` socket for a UDP build. ``link.transports`` is that
  transport wrapped in a ``TeeTransport``: hand it to a ``TailServer`` (``transports=``) and the
  server assembles the samples while the link sees every frame too (HELLO, STATS, and the method's
  data frames, collected per sample: to wait for them and to measure throughput). Without a server, ``attach(serve=False)``
  starts it with the link as the only receiver.
- **host -> device** frames (INPUT, CONTROL, STATS requests) always go over the UART: the link
  sends them through the serial transport's own ``send()`` (for a UART build the same transport the
  server reads; the server's transport interface is unchanged). For a UDP build the UART carries
  host -> device frames and the device's HELLO only.

    async with DeviceLink(board, elf, cfg) as link:
        server = TailServer(config, sink, transports=link.transports)
        await server.start()
        await link.attach()                # waits for the device's HELLO
        await link.control([(1, 4)])       # e.g. NAIR's budget: 4 units
        await link.send_input(seq=1, x=int8 array)
        frames = await link.wait_frames(1)  # the sample's data frames, all part_count of them
        stats = await link.stats()
        code = await link.exit(0)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Hashable

import numpy as np

from tinysplit import children
from tinysplit.boards import Board
from tinysplit.errors import InputError, TinysplitError, ToolchainError
from tinysplit.firmware.build import SETUP_HINT, require_tool
from tinysplit.firmware.apps import AppConfig
from tinysplit.firmware.qemu import EmulatorTimeoutError, check_elf, free_port, qemu_command
from tinysplit.host_server.transports.base import OnFrame, Transport
from tinysplit.host_server.transports.serial_port import SerialTransport
from tinysplit.host_server.transports.udp import UdpTransport
from tinysplit.wire import DecodeError, FrameType, decode_frame, encode_frame
from tinysplit.wire.auth import split
from tinysplit.wire.frame import MAX_PAYLOAD
from tinysplit.wire.payloads import Chunk, KeyValues, decode_payload, make_frame

log = logging.getLogger(__name__)

CONTROL_EXIT = 5  # CONTROL key: the device exits with status (value & 0xFF)
STATS_REASONS = ("short", "magic", "version", "length", "crc", "type", "part", "payload", "cobs", "oversize",
                 "bundle", "unexpected_type",  # STATS key 16 + r, r = 1..12
                 "unauthenticated", "auth", "replay", "session")  # r = 13..16: authenticated builds only
STATS_NAMES = {1: "sent", 2: "received", 3: "drops", 4: "last_error", 5: "instructions",
               6: "instructions_total_low", 7: "instructions_total_high", 8: "app_bytes_sent",
               **{16 + r: f"drops_{name}" for r, name in enumerate(STATS_REASONS, start=1)}}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeviceLinkError(TinysplitError):
    """The device did not behave as the wire protocol requires (no HELLO, wrong bundle...)."""

    exit_code = 1


class TeeTransport(Transport):
    """Wraps a transport: every received frame goes to ``tap`` first, then to the owner's callback
    (the server's). Sends and stats are the inner transport's."""

    def __init__(self, inner: Transport, tap: OnFrame, downlink: Transport | None = None) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.stats = inner.stats
        self.tap = tap
        self.downlink = downlink  # UDP build: host -> device frames go over the UART, not the data link

    async def start(self, on_frame: OnFrame) -> None:
        def both(data: bytes, peer: Hashable) -> None:
            self.tap(data, peer)
            on_frame(data, peer)

        await self.inner.start(both)

    async def send(self, frame: bytes, peer: Hashable) -> None:
        if self.downlink is not None:  # the device reads frames on its UART only
            await self.downlink.send(frame, None)
        else:
            await self.inner.send(frame, peer)

    async def close(self) -> None:
        await self.inner.close()


class DeviceSerialTransport(SerialTransport):
    """The serial transport plus raw writes (garbage for robustness tests)."""

    async def send_raw(self, data: bytes) -> None:
        if self._port is None:
            raise DeviceLinkError(f"{self.url} is not open")
        await asyncio.get_running_loop().run_in_executor(None, self._write, data)
        self.stats.bytes_out += len(data)


@dataclass
class LinkCounters:
    frames: int = 0  # device -> host frames the link saw (all types)
    data_frames: int = 0  # the method's frames (all but HELLO and STATS)
    data_bytes: int = 0  # their bytes (header + payload + CRC)
    undecodable: int = 0
    t_first_data: float | None = None
    t_last_data: float | None = None
    other_device: int = 0


@dataclass
class _SampleFrames:
    frames: list[bytes] = field(default_factory=list)  # plain (version 1) encodings, for the methods' parsers
    wire: list[bytes] = field(default_factory=list)  # as sent (an authenticated frame is 20 bytes longer)

    @property
    def wire_bytes(self) -> int:
        return sum(len(b) for b in self.wire)
    parts: set[int] = field(default_factory=set)
    part_count: int = 0


def qemu_device_command(board: Board, elf: Path, port: int, config: AppConfig, qemu: str | None = None) -> list[str]:
    cmd = qemu_command(board, elf, port, qemu)
    if config.transport == "udp":
        # user-mode network: the guest's 10.0.2.2 is the host's loopback
        cmd += ["-nic", f"user,model={board.nic.kind}"]
    else:
        cmd += ["-nic", "none"]
    return cmd


class DeviceLink:
    """QEMU running a method's device app, and the host ends of its links (see the module docstring)."""

    def __init__(self, board: Board, elf: str | Path, config: AppConfig, timeout: float = 10.0,
                 auth: Any = None) -> None:
        """``auth``: the host's ``AuthGate`` for an authenticated build (shared with the server, which
        answers the device's HELLO): frames to the device are sealed in its session."""
        self.board = board
        self.auth = auth
        self.elf = Path(elf)
        self.config = config
        self.timeout = timeout
        if not self.elf.is_file():
            raise InputError(f"firmware '{self.elf}' does not exist; build the project first")
        if board.emulator is None:
            raise InputError(f"board '{board.name}' has no emulator; it runs only on hardware")
        check_elf(self.elf, board)
        self.port = free_port()
        self.serial = DeviceSerialTransport(f"socket://127.0.0.1:{self.port}", connect_timeout=timeout,
                                            reconnect=False)  # the UART lives as long as this QEMU
        data: Transport = self.serial
        if config.transport == "udp":
            data = UdpTransport(f"udp://127.0.0.1:{config.udp_port}")
        self.data = data
        self.transports: list[Transport] = [TeeTransport(data, self._tap, self.serial if data is not self.serial
                                                         else None)]
        self.counters = LinkCounters()
        self.hello = None
        self.hello_seen = 0
        self.stats_replies: dict[int, KeyValues] = {}
        self.samples: dict[int, _SampleFrames] = {}
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] = tempfile.TemporaryFile()
        self._changed: asyncio.Event | None = None
        self._started: list[Transport] = []
        self._seq = 0x10000  # seqs for CONTROL/STATS requests (samples use the caller's)

    # --- lifecycle ----------------------------------------------------------------------------------
    async def __aenter__(self) -> "DeviceLink":
        self._changed = asyncio.Event()
        qemu = require_tool(self.board.emulator.qemu_binary, f"QEMU for {self.board.name}")
        cmd = qemu_device_command(self.board, self.elf, self.port, self.config, qemu)
        log.debug("starting %s", " ".join(cmd))
        try:
            self.proc = children.spawn(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        except OSError as e:
            raise ToolchainError(f"could not start {qemu}: {e.strerror}; {SETUP_HINT}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def attach(self, serve: bool = False) -> None:
        """Start the transports the server does not own (all of them when ``serve``), then wait for
        the device's HELLO. Call after the server started (it connects the data transport)."""
        if serve:
            await self.transports[0].start(lambda data, peer: None)
            self._started.append(self.transports[0])
        if self.serial is not self.data:  # UDP build: the UART is the link's own
            await self.serial.start(self._tap)
            self._started.append(self.serial)
        await self.until(lambda: self.hello is not None, "a HELLO frame")
        if self.auth is not None:  # the server answered it with a SESSION; the device confirms it
            dev = self.config.device_id
            await self.until(lambda: dev in self.auth.sessions and self.auth.sessions[dev].host_nonce != 0,
                             "an authenticated session (the device's STATS confirming the server's SESSION)")

    async def close(self) -> int | None:
        """Close the link's own transports and stop QEMU. Returns QEMU's exit status if it exited."""
        for t in self._started:
            await t.close()
        self._started.clear()
        code = None
        if self.proc is not None:  # QEMU's whole process group, unless it exited; reaped either way
            code = children.stop(self.proc)
            self.proc = None
        return code

    def qemu_output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    # --- receiving ----------------------------------------------------------------------------------
    def _tap(self, data: bytes, peer: Hashable) -> None:
        c = self.counters
        c.frames += 1
        try:  # an authenticated frame: its structure here, its tag in the server (one replay window)
            frame = split(data).frame if self.auth is not None else decode_frame(data)
        except DecodeError:
            c.undecodable += 1
            return
        raw, wire_len = bytes(data), len(data)
        if self.auth is not None:
            data = encode_frame(frame)  # the methods' parsers read plain frames
        if frame.device_id != self.config.device_id:
            c.other_device += 1
        if frame.type == FrameType.HELLO:
            self.hello = decode_payload(frame)
            self.hello_seen += 1
        elif frame.type == FrameType.STATS:
            try:
                self.stats_replies[frame.seq] = decode_payload(frame)
            except DecodeError:
                c.undecodable += 1
        else:
            now = time.perf_counter()
            c.data_frames += 1
            c.data_bytes += wire_len
            c.t_first_data = now if c.t_first_data is None else c.t_first_data
            c.t_last_data = now
            s = self.samples.setdefault(frame.seq, _SampleFrames())
            s.frames.append(bytes(data))
            s.wire.append(raw)
            s.parts.add(frame.part_index)
            s.part_count = frame.part_count
        if self._changed is not None:
            self._changed.set()

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        assert self._changed is not None
        while not predicate():
            left = deadline - time.monotonic()
            if self.proc is not None and self.proc.poll() is not None:
                raise DeviceLinkError(f"{self.board.name}: the firmware exited with status {self.proc.returncode} "
                                    f"while the host waited for {what}")
            if left <= 0:
                raise EmulatorTimeoutError(f"{self.board.name}: no {what} within {limit:.1f} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    async def wait_frames(self, seq: int, timeout: float | None = None) -> list[bytes]:
        """The data frames of sample ``seq``, once all ``part_count`` of them arrived."""
        def done() -> bool:
            s = self.samples.get(seq)
            return s is not None and len(s.parts) == s.part_count

        await self.until(done, f"the frames of sample {seq}", timeout)
        return self.samples[seq].frames

    # --- sending ------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def frame(self, ftype: FrameType, payload: Any, seq: int, part_index: int = 0, part_count: int = 1,
              bundle_id: int | None = None) -> bytes:
        bid = self.config.bundle_id if bundle_id is None else bundle_id
        f = make_frame(ftype, payload, self.config.device_id, bid, seq, part_index, part_count)
        return self.auth.seal(f) if self.auth is not None else encode_frame(f)

    async def send(self, frame: bytes) -> None:
        """One encoded frame to the device (COBS over the UART)."""
        await self.serial.send(frame, None)

    async def send_raw(self, data: bytes) -> None:
        await self.serial.send_raw(data)

    def input_frames(self, seq: int, x: np.ndarray | bytes, chunk: int = MAX_PAYLOAD) -> list[bytes]:
        data = x if isinstance(x, (bytes, bytearray)) else np.asarray(x, dtype=np.int8).tobytes()
        if not 1 <= chunk <= MAX_PAYLOAD:
            raise InputError(f"INPUT chunk size must be in 1..{MAX_PAYLOAD}, got {chunk}")
        parts = [bytes(data[i:i + chunk]) for i in range(0, len(data), chunk)] or [b""]
        return [self.frame(FrameType.INPUT, Chunk(p), seq, i, len(parts)) for i, p in enumerate(parts)]

    async def send_input(self, seq: int, x: np.ndarray | bytes, chunk: int = MAX_PAYLOAD) -> None:
        for f in self.input_frames(seq, x, chunk):
            await self.send(f)

    async def control(self, items: list[tuple[int, int]]) -> None:
        await self.send(self.frame(FrameType.CONTROL, KeyValues(tuple(items)), self._next_seq()))

    async def stats(self, timeout: float | None = None) -> dict[str, int]:
        """Ask the device for its STATS; the reply's keys by name (unknown keys as 'key_N')."""
        seq = self._next_seq()
        await self.send(self.frame(FrameType.STATS, KeyValues(()), seq))
        await self.until(lambda: seq in self.stats_replies, "a STATS reply", timeout)
        out: dict[str, int] = {}
        for k, v in self.stats_replies[seq].items:
            out.setdefault(STATS_NAMES.get(k, f"key_{k}"), v)
        if "instructions_total_low" in out and "instructions_total_high" in out:
            out["instructions_total"] = out["instructions_total_high"] << 32 | out["instructions_total_low"]
        return out

    async def exit(self, status: int = 0, timeout: float | None = None) -> int:
        """CONTROL exit: the device ends the run; returns QEMU's (the firmware's) exit status."""
        await self.control([(CONTROL_EXIT, status)])
        assert self.proc is not None
        proc = self.proc
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, proc.wait, self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            raise EmulatorTimeoutError(f"{self.board.name}: the firmware did not exit after CONTROL exit") from None

    def throughput(self) -> dict[str, float]:
        """Device -> host data frames/s and bytes/s between the first and the last data frame seen."""
        c = self.counters
        if c.t_first_data is None or c.t_last_data is None or c.data_frames < 2:
            return {"data_frames": c.data_frames, "data_bytes": c.data_bytes, "seconds": 0.0,
                    "frames_per_s": 0.0, "bytes_per_s": 0.0}
        dt = max(c.t_last_data - c.t_first_data, 1e-9)
        return {"data_frames": c.data_frames, "data_bytes": c.data_bytes, "seconds": round(dt, 4),
                "frames_per_s": round((c.data_frames - 1) / dt, 1), "bytes_per_s": round(c.data_bytes / dt, 1)}
