"""The tail server over loop:// and real UDP sockets: labels equal the reference pipeline's at every
budget; faults (drops, duplicates, reordering) still give every sample a prediction by its deadline,
and the counters account for every frame."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest

from tinysplit.methods.nair.devicesim import slice_frames
from tinysplit.host_server.server import ServerConfig, TailServer
from tinysplit.host_server.sinks import JsonlSink, MemorySink
from tinysplit.host_server.transports import open_transport
from tinysplit.host_server.transports.faults import FaultyTransport
from tinysplit.host_server.transports.loop import loop_peer
from tinysplit.manifest import load_manifest
from tinysplit.methods.nair.reference import labels_at_budgets
from tinysplit.reference import device_outputs, heldout, quantized_inputs
from tinysplit.methods.nair.slices import plan_for
from tinysplit.wire import cobs_encode, encode_frame
from tinysplit.wire.frame import Frame, FrameType
from tinysplit.wire.payloads import Hello, NairSlice, Result, make_frame
from tinysplit.methods.nair.slices import extract_units

N = 60


@pytest.fixture(scope="module")
def digits_features(digits_bundle):
    m = load_manifest(digits_bundle)
    x, y = heldout(digits_bundle, m)
    return m, device_outputs(digits_bundle, m, quantized_inputs(m, x[:N]))


def run_server(bundle, transports, feed, deadline_s=0.2, settle=0.0, **cfg):
    """Start a server on ``transports``, call ``feed(server)`` (a coroutine), stop, return server + sink."""
    sink = MemorySink()

    async def main():
        server = TailServer(ServerConfig(bundle, [], deadline_s=deadline_s, **cfg), sink, transports=transports)
        await server.start()
        try:
            await feed(server)
            await asyncio.sleep(settle)
        finally:
            await server.stop()
        return server

    return asyncio.run(main()), sink


def test_labels_match_reference_at_every_budget_over_loop(digits_bundle, digits_features):
    m, feats = digits_features
    plan = plan_for(m)
    assert (plan.units_total, plan.unit_channels) == (16, 2)
    bundle_id = int(m.bundle_id, 16)
    budgets = list(range(1, plan.units_total + 1))
    ref = labels_at_budgets(digits_bundle, budgets, features_q=feats)
    peer = loop_peer("budgets")

    async def feed(server):
        seq = 0
        for b in budgets:
            for i in range(N):
                for f in slice_frames(plan, feats[i], b, device=3, bundle_id=bundle_id, seq=seq):
                    peer.write(cobs_encode(f) + b"\x00")
                seq += 1
            await asyncio.sleep(0)

    server, sink = run_server(digits_bundle, [open_transport("loop://budgets")], feed, settle=0.3)
    recs = sorted(sink.records, key=lambda r: r["sample"])
    assert len(recs) == N * len(budgets)
    for b in budgets:
        got = np.array([r["label"] for r in recs[(b - 1) * N:b * N]])
        assert all(r["units_received"] == b for r in recs[(b - 1) * N:b * N])
        assert (got == ref[b]).all(), f"budget {b}: {(got != ref[b]).sum()} labels differ"
    c = server.metrics.counters
    assert c["deadline_misses"] == 0 and server.metrics.dropped == 0
    assert c["predictions"] == c["samples"] == N * len(budgets)


def test_faults_every_sample_predicted_and_every_frame_accounted(digits_bundle, digits_features):
    m, feats = digits_features
    plan = plan_for(m)
    bundle_id = int(m.bundle_id, 16)
    peer = loop_peer("faults")
    faulty = FaultyTransport(open_transport("loop://faults"), drop=0.1, duplicate=0.1, reorder=0.1, seed=5)
    budget = 16
    frames_per_sample = len(slice_frames(plan, feats[0], budget, 1, bundle_id, 0))
    assert frames_per_sample == 1  # 512 bytes fit one frame: use a budget split over frames below
    sent = []

    async def feed(server):
        for i in range(N):
            # one unit per frame: 16 frames per sample, so drops leave holes to zero-fill
            for u in range(plan.units_total):
                f = encode_frame(make_frame(FrameType.NAIR_SLICE, NairSlice(u, 1, 16, extract_units(plan, feats[i], u, 1)),
                                            1, bundle_id, i, u, 16))
                sent.append(f)
                peer.write(cobs_encode(f) + b"\x00")
            await asyncio.sleep(0)
        faulty.release_held()

    server, sink = run_server(digits_bundle, [faulty], feed, deadline_s=0.1, settle=0.4)
    log = faulty.log
    recs = {r["sample"]: r for r in sink.records}
    assert sorted(recs) == list(range(N)), "every sample gets exactly one prediction"
    c = server.metrics.counters
    # every frame the wire carried is accounted for: used once, counted as duplicate, or late
    assert c["frames"] == log.delivered == len(sent) - log.dropped + log.duplicated
    used = sum(r["units_received"] for r in recs.values())
    assert used + c["duplicates"] + c["late"] + server.metrics.dropped == c["frames"]
    assert used == len(sent) - log.dropped
    assert c["duplicates"] + c["late"] == log.duplicated
    incomplete = [r for r in recs.values() if not r["complete"]]
    assert len(incomplete) == c["deadline_misses"] > 0  # completed by the deadline path, zero-filled
    # a sample that lost units got a prediction from the zero-filled features
    assert all(r["units_received"] < 16 for r in incomplete)


def test_bad_frames_are_counted_and_dropped(digits_bundle, digits_features):
    m, feats = digits_features
    plan = plan_for(m)
    bid = int(m.bundle_id, 16)
    peer = loop_peer("bad")
    good = slice_frames(plan, feats[0], 16, 1, bid, 0)[0]

    async def feed(server):
        junk = [b"\x01\x02\x03", good[:-1], good[:-1] + bytes([good[-1] ^ 1]),
                slice_frames(plan, feats[0], 16, 1, bid ^ 1, 1)[0],  # another bundle
                encode_frame(make_frame(FrameType.RESULT, Result(1, 1), 1, bid, 2)),  # host->device type
                encode_frame(Frame(FrameType.NAIR_SLICE, 1, bid, 3, b"\x00\x00\x00\x00\x10\x00")),  # 0 units
                encode_frame(Frame(FrameType.NAIR_SLICE, 1, bid, 4, b"\x00\x00\x05\x00\x10\x00"))]  # no data
        for j in junk:
            peer.write(cobs_encode(j) + b"\x00")
        peer.write(b"\xff" * 3000 + b"\x00")  # oversize garbage on the serial stream
        peer.write(cobs_encode(good) + b"\x00")
        peer.write(cobs_encode(encode_frame(make_frame(FrameType.HELLO, Hello("sim", 1, 64, 512, 16, 32), 1, bid, 0)))
                   + b"\x00")

    server, sink = run_server(digits_bundle, [open_transport("loop://bad")], feed, settle=0.05)
    assert server.metrics.drops == {"short": 1, "length": 1, "crc": 1, "bundle": 1, "unexpected_type": 1,
                                    "payload": 1, "slice": 1}
    assert server.report()["transport_drops"] == {"oversize": 1}
    prom = server.metrics.prometheus()
    assert 'tinysplit_transport_dropped_frames_total{reason="oversize"} 1' in prom
    assert 'tinysplit_dropped_frames_total{reason="crc"} 1' in prom
    assert [r["sample"] for r in sink.records] == [0]  # the good frame still made it
    assert server.metrics.counters["hellos"] == 1


def test_udp_end_to_end_with_results_jsonl_and_metrics(digits_bundle, digits_features, tmp_path):
    m, feats = digits_features
    plan = plan_for(m)
    bid = int(m.bundle_id, 16)
    ref = labels_at_budgets(digits_bundle, [4], features_q=feats[:20])[4]
    udp = open_transport("udp://127.0.0.1:0")
    out = tmp_path / "pred.jsonl"
    results = []

    async def main():
        server = TailServer(ServerConfig(digits_bundle, [], deadline_s=0.2, send_results=True,
                                         metrics_addr=("127.0.0.1", 0)), JsonlSink(out), transports=[udp])
        await server.start()
        dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dev.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            for i in range(20):
                for f in slice_frames(plan, feats[i], 4, 9, bid, i):
                    dev.sendto(f, ("127.0.0.1", udp.bound_port))
            for _ in range(20):
                data = await asyncio.wait_for(loop.sock_recv(dev, 2048), 5)
                results.append(data)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            body = (await reader.read()).decode()
            writer.close()
        finally:
            dev.close()
            await server.stop()
        return server, body

    server, body = asyncio.run(main())
    from tinysplit.wire import decode_frame
    from tinysplit.wire.payloads import decode_payload
    back = {decode_frame(r).seq: decode_payload(decode_frame(r)) for r in results}
    assert sorted(back) == list(range(20))
    assert [back[i].label for i in range(20)] == ref.tolist()
    assert all(back[i].units_used == 4 for i in range(20))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["sample"] for r in lines) == list(range(20))
    assert {r["device"] for r in lines} == {9}
    assert "tinysplit_predictions_total 20" in body and 'tinysplit_latency_ms{quantile="0.99"}' in body
