"""Bounded, expiring state and nothing lost silently, over real UDP sockets on loopback with the
digits bundle: sessions expire and a STATS flood of distinct ids locks no device out; a device's
seq memory is a bounded sliding window (old seqs replayed are counted as stale, not predicted
again); the queue before the tail is bounded and sheds the oldest, counted; shutdown reads what
the socket holds and finishes within its bound; samples received = predicted + dropped by reason."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from server_support import nair_frames, slow_tail_bundle
from tinysplit.host_server.assemblers.nair import NairAssembler
from tinysplit.host_server.metrics import Metrics
from tinysplit.host_server.seqwindow import Seen, SeqWindow
from tinysplit.host_server.server import ServerConfig, TailServer
from tinysplit.host_server.sinks import MemorySink
from tinysplit.host_server.transports import open_transport
from tinysplit.manifest import load_manifest
from tinysplit.wire import decode_frame, encode_frame
from tinysplit.wire.frame import FrameType
from tinysplit.wire.payloads import Hello, KeyValues, make_frame


@pytest.fixture(scope="module")
def slow_bundle(digits_bundle, tmp_path_factory):
    """The digits bundle with a tail of a few hundred samples/s (output unchanged)."""
    return slow_tail_bundle(digits_bundle, tmp_path_factory.mktemp("slow") / "digits-slow", matmuls=400)


def serve_udp(bundle, scenario, **cfg):
    """A server on a real UDP socket on loopback; ``scenario(server, send)`` is a coroutine; the
    server is stopped after it. Returns the server (stopped) and its sink."""
    sink = MemorySink()

    async def main():
        udp = open_transport("udp://127.0.0.1:0")
        server = TailServer(ServerConfig(bundle, [], **{"deadline_s": 0.2, **cfg}), sink, transports=[udp])
        await server.start()
        dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await scenario(server, lambda f: dev.sendto(f, ("127.0.0.1", udp.bound_port)))
        finally:
            dev.close()
            await server.stop()
        return server

    return asyncio.run(main()), sink


async def paced(send, frames, every=50, pause=0.002):
    """Send frames, yielding to the server now and then (the loopback socket's buffer is finite)."""
    for i, f in enumerate(frames):
        send(f)
        if i % every == every - 1:
            await asyncio.sleep(pause)


def balanced(server):
    acc = server.accounting()
    assert acc["balanced"] and acc["pending"] == acc["in_flight"] == 0, acc
    return acc


# --- sessions -----------------------------------------------------------------------------------------

def test_stats_flood_of_distinct_ids_does_not_lock_out_a_real_device(digits_bundle):
    bid = int(load_manifest(digits_bundle).bundle_id, 16)
    flood = [encode_frame(make_frame(FrameType.STATS, KeyValues(((1, 1),)), 10_000 + i, bid, 0)) for i in range(4200)]
    real = nair_frames(digits_bundle, 100, device=7)

    async def scenario(server, send):
        await paced(send, flood, every=100)
        await asyncio.sleep(0.2)
        await paced(send, real)
        await asyncio.sleep(0.5)

    server, sink = serve_udp(digits_bundle, scenario)
    assert sorted(r["sample"] for r in sink.records if r["device"] == 7) == list(range(100))
    assert "devices" not in server.metrics.drops
    assert len(server.sessions) <= server.config.max_devices
    assert server.metrics.counters["sessions_evicted"] == 4200 + 1 - server.config.max_devices
    balanced(server)


def test_idle_sessions_expire_with_their_device_state(digits_bundle):
    frames = nair_frames(digits_bundle, 300, device=3)
    half = nair_frames(digits_bundle, 5, device=4, start=0, units=8, part_count=2)

    async def scenario(server, send):
        await paced(send, frames + half)
        await asyncio.sleep(0.1)
        assert len(server.sessions) == 2 and server.assembler.devices == 2
        await asyncio.sleep(1.5)  # idle 0.5 s: both devices forgotten by the periodic sweep

    server, sink = serve_udp(digits_bundle, scenario, session_idle_s=0.5, deadline_s=60)
    assert len(server.sessions) == 0 and server.assembler.devices == 0
    assert server.metrics.counters["sessions_expired"] == 2
    # device 4's half samples were pending (deadline 60 s): completed zero-filled when it expired
    recs4 = [r for r in sink.records if r["device"] == 4]
    assert sorted(r["sample"] for r in recs4) == list(range(5)) and not any(r["complete"] for r in recs4)
    assert len(sink.records) == 305
    balanced(server)


def test_memory_per_device_is_bounded_and_goes_with_the_device(digits_bundle):
    """After thousands of seqs, a device with nothing pending keeps a few hundred bytes (its seq
    window), not one entry per seq; forget() frees it."""
    m = load_manifest(digits_bundle)
    frames = [decode_frame(f) for f in nair_frames(digits_bundle, 3000, device=1)]
    asm = NairAssembler(m, 0.5, Metrics())
    asm.add(frames[0], 0.0)  # the device exists
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        done = [asm.add(f, 0.0) for f in frames[1:]]
        del done
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 2048, f"{grown} bytes kept for 3,000 seqs of one device"
    assert asm.devices == 1 and asm.forget(1, 1.0) == [] and asm.devices == 0


# --- replay -------------------------------------------------------------------------------------------

def test_seq_window_is_sliding_over_the_u32_seq_space():
    w = SeqWindow(8)
    assert w.check(5) is Seen.NEW
    for s in (5, 3, 7):
        w.mark(s)
    assert [w.check(s) for s in (3, 4, 5, 6, 7, 8)] == [Seen.USED, Seen.NEW, Seen.USED, Seen.NEW, Seen.USED, Seen.NEW]
    assert w.check(0) is Seen.NEW and w.check(7 - 8) is Seen.STALE  # 0 is 7 behind; 0xFFFFFFFF is 8 behind
    w.mark(20)
    assert w.check(12) is Seen.STALE and w.check(13) is Seen.NEW and w.check(7) is Seen.STALE
    w2 = SeqWindow(8)
    w2.mark(0xFFFFFFFE)
    w2.mark(1)  # across the wrap: 3 ahead
    assert (w2.check(0xFFFFFFFE), w2.check(0xFFFFFFFF), w2.check(1), w2.check(0xFFFFFFF9)) == \
           (Seen.USED, Seen.NEW, Seen.USED, Seen.STALE)


def test_replayed_old_seqs_are_counted_not_predicted_again(digits_bundle):
    frames = nair_frames(digits_bundle, 1100, device=5)

    async def scenario(server, send):
        await paced(send, frames)
        await asyncio.sleep(0.3)
        await paced(send, frames)  # the same 1,100 seqs again
        await asyncio.sleep(0.3)

    server, sink = serve_udp(digits_bundle, scenario)
    assert sorted(r["sample"] for r in sink.records) == list(range(1100))  # once each
    c, d = server.metrics.counters, server.metrics.drops
    assert d["stale"] + c["late"] == 1100 and d["stale"] == 1100 - 1024  # the window is 1,024 seqs
    balanced(server)


def test_out_of_order_arrival_within_the_window_is_predicted(digits_bundle):
    frames = nair_frames(digits_bundle, 600, device=6)
    order = [i for block in range(0, 600, 200) for i in reversed(range(block, block + 200))]

    async def scenario(server, send):
        await paced(send, [frames[i] for i in order])
        await asyncio.sleep(0.3)

    server, sink = serve_udp(digits_bundle, scenario)
    assert sorted(r["sample"] for r in sink.records) == list(range(600))
    assert server.metrics.drops == {}


def test_hello_restarts_a_devices_seqs(digits_bundle):
    """A device says HELLO at boot and counts its seqs from 0 again: they are not stale."""
    bid = int(load_manifest(digits_bundle).bundle_id, 16)
    hello = encode_frame(make_frame(FrameType.HELLO, Hello("sim", 1, 64, 512, 16, 32), 8, bid, 0))
    first, again = nair_frames(digits_bundle, 1500, device=8), nair_frames(digits_bundle, 10, device=8)

    async def scenario(server, send):
        await paced(send, first)
        await asyncio.sleep(0.3)
        send(hello)
        await paced(send, again)
        await asyncio.sleep(0.3)

    server, sink = serve_udp(digits_bundle, scenario)
    assert len(sink.records) == 1510 and server.metrics.drops == {}


# --- nothing lost silently ----------------------------------------------------------------------------

def test_evicted_half_samples_are_all_predicted_and_accounted(digits_bundle):
    half = nair_frames(digits_bundle, 100, device=2, units=8, part_count=2)

    async def scenario(server, send):
        await paced(send, half)
        await asyncio.sleep(0.5)

    server, sink = serve_udp(digits_bundle, scenario)
    assert sorted(r["sample"] for r in sink.records) == list(range(100))
    assert server.metrics.counters["evicted"] == 100 - 64
    assert balanced(server)["received"] == 100


def test_shutdown_reads_what_the_socket_already_holds(digits_bundle):
    """Datagrams that reached the socket before stop() are predicted, not thrown away with it."""
    frames = nair_frames(digits_bundle, 200, device=9)

    async def scenario(server, send):
        for f in frames:  # no yield: the server has read none of them when stop() begins
            send(f)

    server, sink = serve_udp(digits_bundle, scenario)
    assert sorted(r["sample"] for r in sink.records) == list(range(200))
    balanced(server)


# --- overload -----------------------------------------------------------------------------------------

def test_overload_sheds_the_oldest_counts_and_exports_it(slow_bundle):
    frames = nair_frames(slow_bundle, 600, device=1)
    seen = {}

    async def scenario(server, send):
        await paced(send, frames, every=100, pause=0.001)  # far faster than the tail
        await asyncio.sleep(0.01)
        seen["depth"] = server.tails["tail"].queued
        seen["prom"] = server.metrics.prometheus()
        for _ in range(200):
            if server.accounting()["in_flight"] == 0:
                break
            await asyncio.sleep(0.05)

    server, sink = serve_udp(slow_bundle, scenario, max_queue=32)
    shed = server.metrics.sample_drops.get("shed", 0)
    acc = balanced(server)
    assert acc["received"] == 600 and shed > 0 and acc["predicted"] + shed == 600
    assert 0 < seen["depth"] <= 32
    assert 'tinysplit_tail_queue_depth{tail="tail"}' in seen["prom"]
    assert 'tinysplit_dropped_samples_total{reason="shed"}' in seen["prom"]
    got = sorted(r["sample"] for r in sink.records)
    assert got[-32:] == list(range(600 - 32, 600))  # the newest are kept, the oldest shed


def test_sigterm_under_overload_stops_within_its_bound_and_counts_the_rest(slow_bundle, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "pred.jsonl"
    exe = Path(sys.executable).parent / "tinysplit"
    proc = subprocess.Popen([str(exe), "serve", "--bundle", str(slow_bundle), "--listen", f"udp://127.0.0.1:{port}",
                             "--out", str(out), "--max-queue", "100000", "--shutdown-timeout", "1", "--json",
                             "--insecure"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # wait until the server holds the port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", port))
            except OSError:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            for i, f in enumerate(nair_frames(slow_bundle, 3000, device=2)):  # ~8 s of work for the tail
                dev.sendto(f, ("127.0.0.1", port))
                if i % 100 == 99:
                    time.sleep(0.005)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    acc = report["accounting"]
    assert acc["balanced"] and acc["pending"] == acc["in_flight"] == 0, acc
    assert acc["dropped"].get("shed_shutdown", 0) > 0
    kernel = report["transport_drops"].get("rcvbuf", 0)
    assert acc["received"] + kernel == 3000, (acc, report["transport_drops"])
    assert len(out.read_text().splitlines()) == acc["predicted"]
    assert took < 1 + 3  # the bound, one tail batch and the process's exit
