"""The protocol's test vectors (vectors.json beside this file), shared by the Python and C codecs.

Regenerate deliberately with ``python -m tinysplit.wire.vectors --write`` after a protocol change;
a test checks the committed file against this builder, so they cannot drift apart silently.
"""

from __future__ import annotations

import json
import struct
import sys
from importlib import resources
from typing import Any

from tinysplit.wire.cobs import cobs_encode
from tinysplit.wire.frame import MAX_PAYLOAD, Frame, FrameType, crc32, encode_frame
from tinysplit.wire.payloads import (ADAPTIVE_OUTPUT_CHUNK, CAP_NAIR, CAP_UDP, CONTROL_BUDGET_UNITS,
                                     CONTROL_SKIP_MASK, CONTROL_THRESHOLD, STATS_INSTRUCTIONS, STATS_SENT,
                                     AdaptiveOutput, Chunk, EarlyLabel, Hello, KeyValues, NairSlice, Result,
                                     RocoinPortion, make_frame)

BUNDLE = 0x3B465AFA


def _good() -> list[tuple[str, Frame]]:
    ramp = bytes(range(256)) * 4
    return [
        ("hello", make_frame(FrameType.HELLO, Hello("qemu-mps2-an386", CAP_NAIR | CAP_UDP, 64, 512, 16, 32),
                             7, BUNDLE, 0)),
        ("input_part", make_frame(FrameType.INPUT, Chunk(bytes([0x80, 0x00, 0x7F, 0x01]) * 16), 7, BUNDLE, 41, 1, 3)),
        ("nair_slice", make_frame(FrameType.NAIR_SLICE, NairSlice(2, 3, 16, bytes((i * 37) & 0xFF for i in range(96))),
                                  7, BUNDLE, 0xFFFFFFFF)),
        ("nair_slice_max_payload", make_frame(FrameType.NAIR_SLICE, NairSlice(0, 16, 16, ramp[:MAX_PAYLOAD - 6]),
                                              0xFFFE, BUNDLE, 5)),
        ("early_label", make_frame(FrameType.EARLY_LABEL, EarlyLabel(9, 250), 1, BUNDLE, 2)),
        ("latent", make_frame(FrameType.LATENT, Chunk(b"\x00" * 300), 1, BUNDLE, 3, 0, 2)),
        ("rocoin_portion", make_frame(FrameType.ROCOIN_PORTION, RocoinPortion(1, 4, bytes(range(1, 65))), 3, BUNDLE, 77)),
        ("control", make_frame(FrameType.CONTROL, KeyValues(((CONTROL_BUDGET_UNITS, 4), (CONTROL_THRESHOLD, 200),
                                                             (CONTROL_SKIP_MASK, 0b101))), 0xFFFF, BUNDLE, 0)),
        ("result", make_frame(FrameType.RESULT, Result(3, 12, 1), 7, BUNDLE, 41)),
        ("stats", make_frame(FrameType.STATS, KeyValues(((STATS_SENT, 1000), (STATS_INSTRUCTIONS, 123456))),
                             7, BUNDLE, 0)),
        ("adaptive_output", make_frame(FrameType.ADAPTIVE_OUTPUT,
                                       AdaptiveOutput(0b0110, 98765, bytes((i * 13 - 64) & 0xFF for i in range(40))),
                                       4, BUNDLE, 12)),
        # the last part of a 2-part output at the limit: MAX_PAYLOAD - 8 output bytes, a board with no counter
        ("adaptive_output_max_payload", make_frame(FrameType.ADAPTIVE_OUTPUT,
                                                   AdaptiveOutput(0x80000001, 0, ramp[:ADAPTIVE_OUTPUT_CHUNK]),
                                                   4, BUNDLE, 13, 1, 2)),
        ("empty_input", Frame(FrameType.INPUT, 0, 0, 0, b"")),
    ]


def _corrupt(b: bytes, i: int, v: int) -> bytes:
    x = bytearray(b)
    x[i] = v
    return bytes(x)


def _recrc(b: bytes) -> bytes:
    """Give a deliberately corrupted frame a valid CRC again, so a later check is what catches it."""
    return b[:-4] + struct.pack("<I", crc32(b[:-4]))


def _bad(good: dict[str, bytes]) -> list[tuple[str, bytes, str]]:
    """(name, frame bytes, expected drop reason). Frame-level reasons, checked by both codecs."""
    h = good["hello"]
    r = good["result"]
    return [
        ("empty", b"", "short"),
        ("short", h[:23], "short"),
        ("bad_magic", _corrupt(h, 0, 0x55), "magic"),
        ("bad_version", _recrc(_corrupt(h, 2, 2)), "version"),
        ("length_too_long", _recrc(_corrupt(r, 18, r[18] + 1)), "length"),
        ("length_over_max", _recrc(_corrupt(_corrupt(r, 18, 0x01), 19, 0x04)), "length"),
        ("length_huge", _corrupt(_corrupt(r, 18, 0xFF), 19, 0xFF), "length"),
        ("truncated", h[:-1], "length"),
        ("trailing_byte", h + b"\x00", "length"),
        ("bad_crc", _corrupt(h, len(h) - 1, h[-1] ^ 0x01), "crc"),
        ("payload_bit_flip", _corrupt(h, 25, h[25] ^ 0x80), "crc"),
        ("unknown_type", _recrc(_corrupt(r, 3, 0x7E)), "type"),
        ("part_index_past_count", _recrc(_corrupt(r, 14, 1)), "part"),
        ("part_count_zero", _recrc(_corrupt(r, 16, 0)), "part"),
    ]


def build_vectors() -> dict[str, Any]:
    good = _good()
    enc = {name: encode_frame(f) for name, f in good}
    return {
        "protocol_version": 1,
        "note": "frames: 'frame' is the encoded frame; 'serial' is COBS(frame) + 0x00. bad: decoders must drop "
                "each with 'reason'. Regenerate: python -m tinysplit.wire.vectors --write",
        "crc32_check": {"input": "313233343536373839", "crc32": "cbf43926"},
        "frames": [
            {"name": name, "type": int(f.type), "device_id": f.device_id, "bundle_id": f.bundle_id, "seq": f.seq,
             "part_index": f.part_index, "part_count": f.part_count, "payload": f.payload.hex(),
             "frame": enc[name].hex(), "serial": (cobs_encode(enc[name]) + b"\x00").hex()}
            for name, f in good],
        "bad": [{"name": n, "frame": b.hex(), "reason": reason} for n, b, reason in _bad(enc)],
    }


def load_vectors() -> dict[str, Any]:
    return json.loads(resources.files("tinysplit.wire").joinpath("vectors.json").read_text())


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        print("usage: python -m tinysplit.wire.vectors --write", file=sys.stderr)
        raise SystemExit(2)
    path = resources.files("tinysplit.wire").joinpath("vectors.json")
    text = json.dumps(build_vectors(), indent=1) + "\n"
    with open(str(path), "w") as f:
        f.write(text)
    print(f"wrote {path}")
