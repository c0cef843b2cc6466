"""Frame encoding and decoding. The decoder never trusts a length and never raises anything but
DecodeError, whose ``reason`` is the drop counter's label."""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"TS"
VERSION = 1
MAX_PAYLOAD = 1024
HEADER_SIZE = 20
TRAILER_SIZE = 4
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + TRAILER_SIZE
BROADCAST = 0xFFFF

_HEADER = struct.Struct("<2sBBHIIHHH")
assert _HEADER.size == HEADER_SIZE


class FrameType(enum.IntEnum):
    HELLO = 0x01
    INPUT = 0x02
    NAIR_SLICE = 0x03
    EARLY_LABEL = 0x04
    LATENT = 0x05
    ROCOIN_PORTION = 0x06
    CONTROL = 0x07
    RESULT = 0x08
    STATS = 0x09
    ADAPTIVE_OUTPUT = 0x0A
    SESSION = 0x0B


_TYPES = frozenset(int(t) for t in FrameType)


class DecodeError(Exception):
    """A frame that must be dropped; ``reason`` is one of the protocol's drop reasons."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    type: FrameType
    device_id: int
    bundle_id: int
    seq: int
    payload: bytes = b""
    part_index: int = 0
    part_count: int = 1


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (the zlib/Ethernet CRC): check value of b'123456789' is 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_frame(f: Frame) -> bytes:
    if len(f.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(f.payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}; split it into parts")
    if not (0 <= f.part_index < f.part_count <= 0xFFFF):
        raise ValueError(f"part_index {f.part_index} / part_count {f.part_count} out of range")
    head = _HEADER.pack(MAGIC, VERSION, int(f.type), f.device_id & 0xFFFF, f.bundle_id & 0xFFFFFFFF,
                        f.seq & 0xFFFFFFFF, f.part_index, f.part_count, len(f.payload))
    body = head + bytes(f.payload)
    return body + struct.pack("<I", crc32(body))


def decode_frame(buf: bytes) -> Frame:
    """Decode exactly one frame from ``buf`` (its whole length) or raise DecodeError(reason)."""
    n = len(buf)
    if n < HEADER_SIZE + TRAILER_SIZE:
        raise DecodeError("short", f"{n} bytes")
    magic, version, ftype, dev, bundle, seq, pidx, pcount, plen = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise DecodeError("magic")
    if version != VERSION:
        raise DecodeError("version", f"version {version}")
    if plen > MAX_PAYLOAD or HEADER_SIZE + plen + TRAILER_SIZE != n:
        raise DecodeError("length", f"payload_len {plen} in a {n}-byte frame")
    (crc,) = struct.unpack_from("<I", buf, HEADER_SIZE + plen)
    if crc != crc32(bytes(buf[:HEADER_SIZE + plen])):
        raise DecodeError("crc")
    if ftype not in _TYPES:
        raise DecodeError("type", f"type 0x{ftype:02x}")
    if pcount == 0 or pidx >= pcount:
        raise DecodeError("part", f"part {pidx} of {pcount}")
    return Frame(FrameType(ftype), dev, bundle, seq, bytes(buf[HEADER_SIZE:HEADER_SIZE + plen]), pidx, pcount)
