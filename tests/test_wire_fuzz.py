"""Fuzzing the Python side: >= 100,000 random and mutated frames at the decoder and at the server.
No exception may escape, every frame is accounted for, and memory stays flat."""

from __future__ import annotations

import asyncio
import random
import struct
import tracemalloc

from tinysplit.host_server.server import ServerConfig, TailServer
from tinysplit.host_server.sinks import MemorySink
from tinysplit.host_server.transports import open_transport
from tinysplit.host_server.transports.loop import loop_peer
from tinysplit.manifest import load_manifest
from tinysplit.wire import DecodeError, cobs_encode, decode_frame
from tinysplit.wire.frame import crc32
from tinysplit.wire.payloads import decode_payload
from tinysplit.wire.vectors import load_vectors

SEEDS = [bytes.fromhex(v["frame"]) for v in load_vectors()["frames"]]


def mutate(rng: random.Random, bundle_id: int | None = None) -> bytes:
    """A random input: pure noise, or a mutated valid frame; some get a re-computed CRC (and the
    bundle's id) so they reach the payload parsers and the assemblers, not just the CRC check."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(0, 1200))
    b = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(6)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:
            del b[rng.randrange(len(b) + 1):]
        elif op == 3:
            b += rng.randbytes(rng.randrange(1, 64))
        elif op == 4 and len(b) >= 20:
            struct.pack_into("<H", b, 18, rng.choice((0, 1, 5, 1024, 1025, 0xFFFF, rng.randrange(65536))))
        elif op == 5:
            other = rng.choice(SEEDS)
            cut = rng.randrange(len(other) + 1)
            b = b[:rng.randrange(len(b) + 1)] + bytearray(other[cut:])
    if len(b) >= 24 and rng.random() < 0.5:
        if bundle_id is not None and rng.random() < 0.7:
            struct.pack_into("<I", b, 6, bundle_id)
            b[3] = rng.choice((1, 3, 9, 10, rng.randrange(256)))
        struct.pack_into("<I", b, len(b) - 4, crc32(bytes(b[:-4])))
    return bytes(b)


def test_decoder_survives_100k_fuzzed_frames():
    rng = random.Random(1234)
    reasons: dict[str, int] = {}
    ok = 0
    for _ in range(100_000):
        data = mutate(rng)
        try:
            f = decode_frame(data)
            decode_payload(f)
            ok += 1
        except DecodeError as e:  # the only exception allowed
            reasons[e.reason] = reasons.get(e.reason, 0) + 1
    assert ok + sum(reasons.values()) == 100_000
    # the fuzzer reaches every check, so the test exercises all of them
    assert {"short", "magic", "version", "length", "crc", "type", "part", "payload"} <= set(reasons)
    assert ok > 1000


def test_server_survives_fuzzed_frames_with_flat_memory(digits_bundle):
    m = load_manifest(digits_bundle)
    bid = int(m.bundle_id, 16)
    rng = random.Random(99)
    peer = loop_peer("fuzz")
    sink = MemorySink()

    async def main():
        server = TailServer(ServerConfig(digits_bundle, [], deadline_s=0.02, max_devices=256), sink,
                            transports=[open_transport("loop://fuzz")])
        await server.start()
        try:
            sizes = []
            for round_ in range(4):  # 4 x 30,000 frames; memory measured after each round
                for i in range(30_000):
                    data = mutate(rng, bid)
                    if i % 2:
                        peer.write(cobs_encode(data) + b"\x00")  # through the COBS stream
                    else:
                        server.on_frame(server.transports[0], data, "fuzz")  # straight to the server
                    if i % 500 == 0:
                        await asyncio.sleep(0.001)  # let deadlines and the tail run
                await asyncio.sleep(0.1)
                if round_ == 0:
                    tracemalloc.start()
                sizes.append(tracemalloc.get_traced_memory()[0] if round_ else 0)
            return server, sizes
        finally:
            tracemalloc.stop()
            await server.stop()

    server, sizes = asyncio.run(main())
    c = server.metrics.counters
    assert c["frames"] >= 100_000
    assert server.metrics.drops.get("internal", 0) == 0, "a handler raised"
    # growth between round 2 and round 4 (after warm-up): bounded, not proportional to frames
    assert sizes[3] - sizes[1] < 2_000_000, f"memory grew by {sizes[3] - sizes[1]} bytes"
    assert len(server.sessions) <= 256
    assert c["predictions"] == len(sink.records)
