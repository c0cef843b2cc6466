"""The wire protocol's Python codec: test vectors byte for byte, COBS, payloads, every drop reason."""

from __future__ import annotations

import random

import pytest

from tinysplit.wire import (MAX_FRAME, MAX_PAYLOAD, CobsDeframer, DecodeError, Frame, FrameType, cobs_decode,
                            cobs_encode, decode_frame, encode_frame)
from tinysplit.wire.frame import crc32
from tinysplit.wire.payloads import (ADAPTIVE_OUTPUT_CHUNK, AdaptiveOutput, Chunk, KeyValues, NairSlice, Result,
                                     decode_payload, encode_payload, make_frame)
from tinysplit.wire.vectors import build_vectors, load_vectors

VECTORS = load_vectors()


def test_committed_vectors_match_the_builder():
    assert VECTORS == build_vectors()


def test_crc32_check_value():
    c = VECTORS["crc32_check"]
    assert f"{crc32(bytes.fromhex(c['input'])):08x}" == c["crc32"] == "cbf43926"


@pytest.mark.parametrize("v", VECTORS["frames"], ids=lambda v: v["name"])
def test_good_vectors_encode_and_decode(v):
    f = Frame(FrameType(v["type"]), v["device_id"], v["bundle_id"], v["seq"], bytes.fromhex(v["payload"]),
              v["part_index"], v["part_count"])
    assert encode_frame(f).hex() == v["frame"]
    assert decode_frame(bytes.fromhex(v["frame"])) == f
    assert (cobs_encode(bytes.fromhex(v["frame"])) + b"\x00").hex() == v["serial"]
    assert CobsDeframer().feed(bytes.fromhex(v["serial"])) == [bytes.fromhex(v["frame"])]
    decode_payload(f)  # every good vector's payload is valid for its type


@pytest.mark.parametrize("v", VECTORS["bad"], ids=lambda v: v["name"])
def test_bad_vectors_are_dropped_with_their_reason(v):
    with pytest.raises(DecodeError) as e:
        decode_frame(bytes.fromhex(v["frame"]))
    assert e.value.reason == v["reason"]


def test_max_sizes():
    f = Frame(FrameType.LATENT, 1, 2, 3, bytes(MAX_PAYLOAD))
    assert len(encode_frame(f)) == MAX_FRAME == 1048
    with pytest.raises(ValueError, match="MAX_PAYLOAD"):
        encode_frame(Frame(FrameType.LATENT, 1, 2, 3, bytes(MAX_PAYLOAD + 1)))


def test_cobs_round_trip_edge_lengths():
    r = random.Random(3)
    for n in (0, 1, 253, 254, 255, 508, 1048):
        for _ in range(50):
            d = bytes(r.choice((0, 1, 255, r.randrange(256))) for _ in range(n))
            e = cobs_encode(d)
            assert 0 not in e and cobs_decode(e) == d
    assert cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))  # no trailing empty block
    for bad in (b"\x00", b"\x05ab", b"\x03a\x00"):
        with pytest.raises(ValueError):
            cobs_decode(bad)


def test_deframer_resyncs_after_garbage_and_bounds_memory():
    good = [encode_frame(make_frame(FrameType.RESULT, Result(i, 1), 1, 2, i)) for i in range(3)]
    stream = b"garbage\x00" + cobs_encode(good[0]) + b"\x00" + b"\x07" * 5000 + b"\x00"
    stream += b"".join(cobs_encode(g) + b"\x00" for g in good[1:])
    d = CobsDeframer()
    got = []
    for i in range(0, len(stream), 7):  # arbitrary chunking, as a UART delivers it
        got += d.feed(stream[i:i + 7])
        assert len(d._buf) <= d.max_encoded
    frames = []
    for g in got:
        try:
            frames.append(decode_frame(g))
        except DecodeError:
            frames.append(None)
    assert [f.seq for f in frames if f is not None] == [0, 1, 2]
    assert d.drops == {"oversize": 1, "cobs": 1}  # 'garbage' is not valid COBS; the 5000-byte run too long
    assert None not in frames


@pytest.mark.parametrize("ftype, payload, reason_part", [
    (FrameType.NAIR_SLICE, b"\x01\x00", "nair slice"),
    (FrameType.NAIR_SLICE, bytes.fromhex("0e0003001000"), "units 14+3 of 16"),
    (FrameType.EARLY_LABEL, b"\x01\x00", "early label"),
    (FrameType.CONTROL, b"\x01\x00\x00\x00", "multiple of 5"),
    (FrameType.HELLO, b"\x05ab", "hello"),
    (FrameType.HELLO, b"\x01\xff" + bytes(16), "not ASCII"),
    (FrameType.RESULT, b"", "result"),
    (FrameType.ROCOIN_PORTION, b"\x04\x00\x04\x00", "portion 4 of 4"),
    (FrameType.ADAPTIVE_OUTPUT, b"", "adaptive output: 0 bytes, need 8"),
    (FrameType.ADAPTIVE_OUTPUT, b"\x01\x00\x00\x00\x05\x00\x00", "adaptive output: 7 bytes, need 8"),
])
def test_bad_payloads(ftype, payload, reason_part):
    with pytest.raises(DecodeError) as e:
        decode_payload(Frame(ftype, 0, 0, 0, payload))
    assert e.value.reason == "payload" and reason_part in str(e.value)


def test_payload_round_trips():
    for ftype, p in [(FrameType.NAIR_SLICE, NairSlice(1, 2, 8, b"xy")), (FrameType.INPUT, Chunk(b"abc")),
                     (FrameType.CONTROL, KeyValues(((1, 2), (9, 0xFFFFFFFF)))), (FrameType.RESULT, Result(1, 2, 1)),
                     (FrameType.ADAPTIVE_OUTPUT, AdaptiveOutput(0xFFFFFFFF, 7, b"\x80\x7f")),
                     (FrameType.ADAPTIVE_OUTPUT, AdaptiveOutput(0, 0, b""))]:
        assert decode_payload(Frame(ftype, 0, 0, 0, encode_payload(ftype, p))) == p
    assert KeyValues(((9, 5),)).get(9) == 5 and KeyValues(()).get(1) is None
    with pytest.raises(TypeError):
        encode_payload(FrameType.RESULT, Chunk(b""))


def test_adaptive_output_layout_and_chunk_limit():
    p = AdaptiveOutput(0b101, 0x01020304, b"\xff\x00")
    assert encode_payload(FrameType.ADAPTIVE_OUTPUT, p) == b"\x05\x00\x00\x00\x04\x03\x02\x01\xff\x00"
    # the 8-byte prefix leaves MAX_PAYLOAD - 8 output bytes per frame, as LATENT chunks leave MAX_PAYLOAD
    assert ADAPTIVE_OUTPUT_CHUNK == MAX_PAYLOAD - 8 == 1016
    full = make_frame(FrameType.ADAPTIVE_OUTPUT, AdaptiveOutput(1, 2, bytes(ADAPTIVE_OUTPUT_CHUNK)), 1, 2, 3, 1, 2)
    assert len(encode_frame(full)) == MAX_FRAME
    with pytest.raises(ValueError, match="MAX_PAYLOAD"):
        encode_frame(make_frame(FrameType.ADAPTIVE_OUTPUT, AdaptiveOutput(1, 2, bytes(ADAPTIVE_OUTPUT_CHUNK + 1)),
                                1, 2, 3))
