"""Authenticated frames (docs/wire-protocol.md, "Authenticated frames"): HMAC-SHA-256 truncated to
128 bits over the frame, a per-direction 32-bit counter in a sliding replay window of 64, and a
session bound to a device nonce (from the device's HELLO) and a host nonce (from the host's
SESSION frame), so that frames of an earlier boot or session do not verify.

Frame, version 2 (all integers little-endian)::

    header (20 bytes, version = 2) | payload | u32 counter | tag (16 bytes) | u32 crc32

    tag = HMAC-SHA-256(K, "TSA1" | direction | u32 device_nonce | u32 host_nonce
                          | header | payload | u32 counter)[:16]
    direction: 0x01 device -> host, 0x02 host -> device

HELLO (device -> host) carries the device nonce as its counter and host_nonce 0; SESSION (host ->
device, type 0x0B, payload u32 device_nonce, u32 host_nonce) is authenticated with host_nonce 0
and the host's SESSION counter; every other frame with both nonces and the sender's counter.

Everything here is pure and deterministic: the caller supplies nonces (``secrets.randbits`` on the
host) and keys. Verification never raises anything but ``DecodeError`` with a drop reason:
``unauthenticated`` (a version 1 frame where authentication is required), ``auth`` (the tag does not
verify: forged, tampered, another device's key, another session), ``replay`` (a counter already
seen or too old for the window), ``session`` (no session yet, or a SESSION for another boot).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from tinysplit.wire.frame import (HEADER_SIZE, MAX_PAYLOAD, TRAILER_SIZE, DecodeError, Frame, FrameType, crc32,
                                  encode_frame)
from tinysplit.wire.payloads import Session as SessionPayload
from tinysplit.wire.payloads import decode_payload, make_frame

AUTH_VERSION = 2
AUTH_TRAILER_SIZE = 4 + 16  # counter, tag
TAG_SIZE = 16
KEY_SIZE = 32
WINDOW = 64  # replay window, in counters
LABEL = b"TSA1"
DEVICE_TO_HOST = 0x01
HOST_TO_DEVICE = 0x02
MAX_COUNTER = 0xFFFFFFFF
_HEADER = struct.Struct("<2sBBHIIHHH")


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise ValueError(f"a device key is {KEY_SIZE} bytes, got {len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__}")
    return bytes(key)


def mac(key: bytes, direction: int, device_nonce: int, host_nonce: int, signed: bytes) -> bytes:
    """The 16-byte tag over ``signed`` (header, payload and counter) in this direction and session."""
    msg = LABEL + struct.pack("<BII", direction, device_nonce & MAX_COUNTER, host_nonce & MAX_COUNTER) + signed
    return hmac.new(_check_key(key), msg, hashlib.sha256).digest()[:TAG_SIZE]


def seal(frame: Frame, key: bytes, direction: int, device_nonce: int, host_nonce: int, counter: int) -> bytes:
    """``frame`` as an authenticated (version 2) frame's bytes."""
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError(f"counter {counter} is not a u32")
    plain = encode_frame(frame)[:-TRAILER_SIZE]
    signed = plain[:2] + bytes([AUTH_VERSION]) + plain[3:] + struct.pack("<I", counter)
    body = signed + mac(key, direction, device_nonce, host_nonce, signed)
    return body + struct.pack("<I", crc32(body))


@dataclass(frozen=True)
class Sealed:
    """A version 2 frame, decoded but not yet verified."""

    frame: Frame
    counter: int
    tag: bytes
    signed: bytes  # header, payload and counter: what the tag covers


def split(buf: bytes) -> Sealed:
    """Decode a version 2 frame (structure and CRC only; the tag is checked by ``verify``)."""
    from tinysplit.wire.frame import _TYPES, MAGIC  # noqa: PLC0415 (one decoder's constants)

    n = len(buf)
    if n >= 3 and bytes(buf[:2]) == MAGIC and buf[2] != AUTH_VERSION:  # a version 1 frame: say so first
        raise DecodeError("unauthenticated" if buf[2] == 1 else "version", f"version {buf[2]}")
    if n < HEADER_SIZE + AUTH_TRAILER_SIZE + TRAILER_SIZE:
        raise DecodeError("short", f"{n} bytes")
    magic, version, ftype, dev, bundle, seq, pidx, pcount, plen = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise DecodeError("magic")
    if plen > MAX_PAYLOAD or HEADER_SIZE + plen + AUTH_TRAILER_SIZE + TRAILER_SIZE != n:
        raise DecodeError("length", f"payload_len {plen} in a {n}-byte authenticated frame")
    end = HEADER_SIZE + plen + AUTH_TRAILER_SIZE
    (crc,) = struct.unpack_from("<I", buf, end)
    if crc != crc32(bytes(buf[:end])):
        raise DecodeError("crc")
    if ftype not in _TYPES:
        raise DecodeError("type", f"type 0x{ftype:02x}")
    if pcount == 0 or pidx >= pcount:
        raise DecodeError("part", f"part {pidx} of {pcount}")
    (counter,) = struct.unpack_from("<I", buf, HEADER_SIZE + plen)
    frame = Frame(FrameType(ftype), dev, bundle, seq, bytes(buf[HEADER_SIZE:HEADER_SIZE + plen]), pidx, pcount)
    return Sealed(frame, counter, bytes(buf[end - TAG_SIZE:end]), bytes(buf[:end - TAG_SIZE]))


def verify(s: Sealed, key: bytes, direction: int, device_nonce: int, host_nonce: int) -> None:
    """DecodeError('auth') unless the tag verifies (compared in constant time)."""
    if not hmac.compare_digest(mac(key, direction, device_nonce, host_nonce, s.signed), s.tag):
        raise DecodeError("auth", f"{s.frame.type.name} from device {s.frame.device_id}")


@dataclass
class ReplayWindow:
    """The receiver's sliding window (RFC 4303 3.4.3, RFC 6479): ``highest`` counter accepted and a
    bitmap of the WINDOW counters ending there. Counter 0 is never valid."""

    highest: int = 0
    bitmap: int = 0  # bit i: counter highest - i was accepted

    def check(self, counter: int) -> None:
        """DecodeError('replay') for a counter seen before or at or below highest - WINDOW."""
        if counter == 0:
            raise DecodeError("replay", "counter 0")
        if counter > self.highest:
            return
        back = self.highest - counter
        if back >= WINDOW or self.bitmap >> back & 1:
            raise DecodeError("replay", f"counter {counter}, newest {self.highest}")

    def accept(self, counter: int) -> None:
        """Record ``counter`` (after ``check`` and after the tag verified)."""
        if counter > self.highest:
            shift = counter - self.highest
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = counter
        else:
            self.bitmap |= 1 << (self.highest - counter)


@dataclass
class HostSession:
    """The host's side of one device's authentication: its key, the session nonces and counters.

    ``on_hello`` verifies a HELLO and returns the SESSION frame to send (a fresh host nonce from
    ``new_nonce``); ``open`` verifies a frame from the device; ``seal`` authenticates a frame to it.
    A new session (after a HELLO) replaces the current one once the device's first frame verifies
    under it; until then frames of the current one still verify."""

    device: int
    key: bytes
    device_nonce: int = 0
    host_nonce: int = 0  # 0: no session yet
    pending: tuple[int, int] | None = None  # (device_nonce, host_nonce) sent in SESSION, not yet confirmed
    send_counter: int = 0  # the last counter sent in the current session
    session_counter: int = 0  # the last SESSION frame's counter (per device, never reused)
    window: ReplayWindow = field(default_factory=ReplayWindow)
    pending_window: ReplayWindow = field(default_factory=ReplayWindow)
    pending_send: int = 0

    def __post_init__(self) -> None:
        self.key = _check_key(self.key)

    def on_hello(self, s: Sealed, bundle_id: int, new_nonce) -> bytes:
        """Verify the device's HELLO (its counter is the device nonce); returns the SESSION frame."""
        verify(s, self.key, DEVICE_TO_HOST, s.counter, 0)
        if s.counter == 0:
            raise DecodeError("session", "HELLO with device nonce 0")
        host_nonce = 0
        while host_nonce == 0:
            host_nonce = new_nonce() & MAX_COUNTER
        self.pending = (s.counter, host_nonce)
        self.pending_window, self.pending_send = ReplayWindow(), 0
        self.session_counter += 1
        frame = make_frame(FrameType.SESSION, SessionPayload(s.counter, host_nonce), self.device, bundle_id, 0)
        return seal(frame, self.key, HOST_TO_DEVICE, s.counter, 0, self.session_counter)

    def open(self, s: Sealed) -> Frame:
        """Verify a frame from the device under the pending or the current session (replay window
        included); DecodeError('session'|'auth'|'replay') otherwise."""
        if s.frame.type == FrameType.HELLO:
            raise DecodeError("session", "a HELLO goes to on_hello")
        if self.pending is not None:
            try:
                self.pending_window.check(s.counter)
                verify(s, self.key, DEVICE_TO_HOST, *self.pending)
            except DecodeError:
                pass
            else:  # the device runs the new session: it becomes the current one
                self.device_nonce, self.host_nonce = self.pending
                self.window, self.send_counter = self.pending_window, self.pending_send
                self.pending = None
                self.window.accept(s.counter)
                return s.frame
        if self.host_nonce == 0:
            raise DecodeError("session", f"device {self.device} has no session (no HELLO yet)")
        self.window.check(s.counter)
        verify(s, self.key, DEVICE_TO_HOST, self.device_nonce, self.host_nonce)
        self.window.accept(s.counter)
        return s.frame

    def seal(self, frame: Frame) -> bytes:
        """Authenticate a host -> device frame: under the current session, or under the pending one
        while there is none. (A SESSION is confirmed by the device's first frame under it, a STATS it
        sends at once; until then a replayed HELLO of an earlier boot cannot divert host frames.)"""
        if self.host_nonce == 0 and self.pending is not None:
            if self.pending_send >= MAX_COUNTER:
                raise DecodeError("session", "counter exhausted: the device must say HELLO again")
            self.pending_send += 1
            return seal(frame, self.key, HOST_TO_DEVICE, *self.pending, self.pending_send)
        if self.host_nonce == 0:
            raise DecodeError("session", f"device {self.device} has no session (no HELLO yet)")
        if self.send_counter >= MAX_COUNTER:
            raise DecodeError("session", "counter exhausted: the device must say HELLO again")
        self.send_counter += 1
        return seal(frame, self.key, HOST_TO_DEVICE, self.device_nonce, self.host_nonce, self.send_counter)


@dataclass
class DeviceSession:
    """The device's side, as the C runtime implements it (ts_auth.c): a Python twin for tests,
    simulators and vectors."""

    device: int
    key: bytes
    device_nonce: int
    host_nonce: int = 0
    send_counter: int = 0
    session_counter: int = 0
    window: ReplayWindow = field(default_factory=ReplayWindow)

    def __post_init__(self) -> None:
        self.key = _check_key(self.key)
        if not 0 < self.device_nonce <= MAX_COUNTER:
            raise ValueError("the device nonce is a non-zero u32")

    def hello(self, frame: Frame) -> bytes:
        return seal(frame, self.key, DEVICE_TO_HOST, self.device_nonce, 0, self.device_nonce)

    def open(self, s: Sealed) -> Frame:
        if s.frame.type == FrameType.SESSION:
            if s.counter <= self.session_counter:
                raise DecodeError("replay", f"SESSION counter {s.counter}")
            verify(s, self.key, HOST_TO_DEVICE, self.device_nonce, 0)
            p = decode_payload(s.frame)
            dn, hn = p.device_nonce, p.host_nonce
            if dn != self.device_nonce or hn == 0:
                raise DecodeError("session", "SESSION for another boot")
            self.session_counter = s.counter
            self.host_nonce, self.send_counter, self.window = hn, 0, ReplayWindow()
            return s.frame
        if self.host_nonce == 0:
            raise DecodeError("session", "no session yet")
        self.window.check(s.counter)
        verify(s, self.key, HOST_TO_DEVICE, self.device_nonce, self.host_nonce)
        self.window.accept(s.counter)
        return s.frame

    def seal(self, frame: Frame) -> bytes:
        if self.host_nonce == 0:
            raise DecodeError("session", "no session yet")
        self.send_counter += 1
        return seal(frame, self.key, DEVICE_TO_HOST, self.device_nonce, self.host_nonce, self.send_counter)


def key_fingerprint(key: bytes) -> str:
    """What ``tinysplit keys list`` shows of a key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(_check_key(key)).hexdigest()[:16]
