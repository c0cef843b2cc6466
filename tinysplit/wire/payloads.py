"""Typed payloads, one small codec per frame type (a name-keyed registry, not an if/else chain).

Every decoder checks lengths against the buffer and raises DecodeError("payload") on a bad one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Union

from tinysplit.wire.frame import MAX_PAYLOAD, DecodeError, Frame, FrameType

CAP_NAIR, CAP_REBEL, CAP_ROCOIN, CAP_SKIP, CAP_UDP = (1 << i for i in range(5))

CONTROL_BUDGET_UNITS, CONTROL_BUDGET_BYTES, CONTROL_THRESHOLD, CONTROL_SKIP_MASK = 1, 2, 3, 4
STATS_SENT, STATS_RECEIVED, STATS_DROPS, STATS_LAST_ERROR, STATS_INSTRUCTIONS = 1, 2, 3, 4, 5
STATS_INSTRUCTIONS_TOTAL_LOW, STATS_INSTRUCTIONS_TOTAL_HIGH, STATS_APP_BYTES_SENT = 6, 7, 8

ADAPTIVE_OUTPUT_HEADER = 8  # u32 skip_mask, u32 instructions at the start of every ADAPTIVE_OUTPUT payload
ADAPTIVE_OUTPUT_CHUNK = MAX_PAYLOAD - ADAPTIVE_OUTPUT_HEADER  # output bytes per ADAPTIVE_OUTPUT frame, at most


@dataclass(frozen=True)
class Hello:
    board: str
    capabilities: int
    input_bytes: int
    output_bytes: int
    units_total: int
    unit_bytes: int


@dataclass(frozen=True)
class Chunk:
    """INPUT and LATENT: a chunk of a tensor (the frame's part_index/part_count place it)."""

    data: bytes


@dataclass(frozen=True)
class NairSlice:
    unit_start: int
    unit_count: int
    units_total: int
    data: bytes


@dataclass(frozen=True)
class EarlyLabel:
    label: int
    confidence: int  # 0..255: ReBEL's int8 confidence code + 128 (docs/rebel.md)


@dataclass(frozen=True)
class RocoinPortion:
    partition: int
    partitions_total: int
    data: bytes


@dataclass(frozen=True)
class Session:
    """SESSION (host -> device, authenticated frames only): the device nonce of the HELLO it answers
    and the host's fresh nonce; together they bind every later frame to this session."""

    device_nonce: int
    host_nonce: int


@dataclass(frozen=True)
class AdaptiveOutput:
    """Adaptive ResNet: one chunk of the device model's int8 output of a sample (the frame's
    part_index/part_count place it, as for LATENT), with the skip mask that inference ran with
    (bit i set: residual block i was skipped) and its instruction count (0: the board has no counter)."""

    skip_mask: int
    instructions: int
    data: bytes


@dataclass(frozen=True)
class KeyValues:
    """CONTROL and STATS: (u8 key, u32 value) pairs; unknown keys are kept for the caller to skip."""

    items: tuple[tuple[int, int], ...]

    def get(self, key: int, default: int | None = None) -> int | None:
        for k, v in self.items:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Result:
    label: int
    units_used: int
    flags: int = 0  # bit 0: some units were zero-filled


Payload = Union[Hello, Chunk, NairSlice, EarlyLabel, RocoinPortion, KeyValues, Result, AdaptiveOutput]


def _need(buf: bytes, n: int, what: str) -> None:
    if len(buf) < n:
        raise DecodeError("payload", f"{what}: {len(buf)} bytes, need {n}")


def _enc_hello(p: Hello) -> bytes:
    name = p.board.encode("ascii")
    if len(name) > 64:
        raise ValueError("board name longer than 64 characters")
    return bytes([len(name)]) + name + struct.pack("<IIIHH", p.capabilities, p.input_bytes, p.output_bytes,
                                                    p.units_total, p.unit_bytes)


def _dec_hello(b: bytes) -> Hello:
    _need(b, 1, "hello")
    n = b[0]
    _need(b, 1 + n + 16, "hello")
    if len(b) != 1 + n + 16:
        raise DecodeError("payload", "hello: trailing bytes")
    try:
        name = b[1:1 + n].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("payload", "hello: board name is not ASCII") from None
    caps, inb, outb, units, ub = struct.unpack_from("<IIIHH", b, 1 + n)
    return Hello(name, caps, inb, outb, units, ub)


def _dec_slice(b: bytes) -> NairSlice:
    _need(b, 6, "nair slice")
    start, count, total = struct.unpack_from("<HHH", b, 0)
    if count == 0 or total == 0 or start + count > total:
        raise DecodeError("payload", f"nair slice: units {start}+{count} of {total}")
    return NairSlice(start, count, total, bytes(b[6:]))


def _dec_label(b: bytes) -> EarlyLabel:
    if len(b) != 3:
        raise DecodeError("payload", f"early label: {len(b)} bytes, need 3")
    label, conf = struct.unpack("<HB", b)
    return EarlyLabel(label, conf)


def _dec_portion(b: bytes) -> RocoinPortion:
    _need(b, 4, "rocoin portion")
    part, total = struct.unpack_from("<HH", b, 0)
    if total == 0 or part >= total:
        raise DecodeError("payload", f"rocoin portion {part} of {total}")
    return RocoinPortion(part, total, bytes(b[4:]))


def _dec_adaptive(b: bytes) -> AdaptiveOutput:
    _need(b, ADAPTIVE_OUTPUT_HEADER, "adaptive output")
    mask, instructions = struct.unpack_from("<II", b, 0)
    return AdaptiveOutput(mask, instructions, bytes(b[ADAPTIVE_OUTPUT_HEADER:]))


def _dec_kv(b: bytes) -> KeyValues:
    if len(b) % 5:
        raise DecodeError("payload", f"key/value list of {len(b)} bytes is not a multiple of 5")
    return KeyValues(tuple(struct.unpack_from("<BI", b, i) for i in range(0, len(b), 5)))


def _dec_session(b: bytes) -> Session:
    if len(b) != 8:
        raise DecodeError("payload", f"session: {len(b)} bytes, need 8")
    return Session(*struct.unpack("<II", b))


def _dec_result(b: bytes) -> Result:
    if len(b) != 5:
        raise DecodeError("payload", f"result: {len(b)} bytes, need 5")
    return Result(*struct.unpack("<HHB", b))


_CODECS: dict[FrameType, tuple[type, Callable[[Payload], bytes], Callable[[bytes], Payload]]] = {
    FrameType.HELLO: (Hello, _enc_hello, _dec_hello),
    FrameType.INPUT: (Chunk, lambda p: p.data, lambda b: Chunk(bytes(b))),
    FrameType.NAIR_SLICE: (NairSlice, lambda p: struct.pack("<HHH", p.unit_start, p.unit_count, p.units_total) + p.data,
                           _dec_slice),
    FrameType.EARLY_LABEL: (EarlyLabel, lambda p: struct.pack("<HB", p.label, p.confidence), _dec_label),
    FrameType.LATENT: (Chunk, lambda p: p.data, lambda b: Chunk(bytes(b))),
    FrameType.ROCOIN_PORTION: (RocoinPortion, lambda p: struct.pack("<HH", p.partition, p.partitions_total) + p.data,
                               _dec_portion),
    FrameType.CONTROL: (KeyValues, lambda p: b"".join(struct.pack("<BI", k, v) for k, v in p.items), _dec_kv),
    FrameType.RESULT: (Result, lambda p: struct.pack("<HHB", p.label, p.units_used, p.flags), _dec_result),
    FrameType.STATS: (KeyValues, lambda p: b"".join(struct.pack("<BI", k, v) for k, v in p.items), _dec_kv),
    FrameType.ADAPTIVE_OUTPUT: (AdaptiveOutput, lambda p: struct.pack("<II", p.skip_mask, p.instructions) + p.data,
                                _dec_adaptive),
    FrameType.SESSION: (Session, lambda p: struct.pack("<II", p.device_nonce, p.host_nonce), _dec_session),
}


def encode_payload(ftype: FrameType, p: Payload) -> bytes:
    cls, enc, _ = _CODECS[ftype]
    if not isinstance(p, cls):
        raise TypeError(f"{ftype.name} carries {cls.__name__}, not {type(p).__name__}")
    return enc(p)


def decode_payload(frame: Frame) -> Payload:
    """The frame's typed payload, or DecodeError("payload")."""
    return _CODECS[frame.type][2](frame.payload)


def make_frame(ftype: FrameType, payload: Payload, device_id: int, bundle_id: int, seq: int,
               part_index: int = 0, part_count: int = 1) -> Frame:
    return Frame(ftype, device_id, bundle_id, seq, encode_payload(ftype, payload), part_index, part_count)
