"""Authenticated frames at the tail server, over real UDP sockets on loopback: a legitimate device
(tinysplit.wire.auth.DeviceSession, the C runtime's Python twin) says HELLO, gets its SESSION, and
streams NAIR slices of the digits bundle while an attacker on another socket forges, tampers,
replays, spoofs the device's id with another device's key, sends unauthenticated and unknown-device
frames, and tries the issue's spoofing attacks (another device's next seqs; part 0 of 2 ahead).
Every hostile frame is dropped under its reason, counted exactly; the legitimate device's labels
all equal the reference; RESULT frames go only to it, sealed in its session; the server keeps no
state for the attacker."""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import pytest

from conftest import run_cli
from tinysplit.host_server.server import ServerConfig, TailServer
from tinysplit.host_server.sinks import MemorySink
from tinysplit.host_server.transports import open_transport
from tinysplit.manifest import load_manifest
from tinysplit.methods.nair.devicesim import slice_frames
from tinysplit.methods.nair.reference import labels_at_budgets
from tinysplit.methods.nair.slices import plan_for
from tinysplit.reference import device_outputs, heldout, quantized_inputs
from tinysplit.wire import decode_frame, encode_frame
from tinysplit.wire.auth import DeviceSession, seal, split
from tinysplit.wire.auth_vectors import _recrc
from tinysplit.wire.frame import FrameType
from tinysplit.wire.payloads import Hello, KeyValues, decode_payload, make_frame

N = 30
KEY7, KEY8 = bytes(range(32)), bytes(range(100, 132))
DEVICE, OTHER = 7, 8


@pytest.fixture(scope="module")
def digits_case(digits_bundle):
    m = load_manifest(digits_bundle)
    x, _ = heldout(digits_bundle, m)
    feats = device_outputs(digits_bundle, m, quantized_inputs(m, x[:N]))
    return m, feats, labels_at_budgets(digits_bundle, [16], features_q=feats)[16]


def tampered(b: bytes, counter: int) -> bytes:
    """A captured frame with a payload bit flipped and a fresh counter (else it is a replay)."""
    plen = int.from_bytes(b[18:20], "little")
    x = bytearray(b)
    x[21] ^= 1
    x[20 + plen:24 + plen] = counter.to_bytes(4, "little")
    return _recrc(bytes(x))


def test_an_attack_in_every_form_is_dropped_and_the_device_is_served(digits_bundle, digits_case):
    m, feats, ref = digits_case
    plan, bid = plan_for(m), int(m.bundle_id, 16)
    udp = open_transport("udp://127.0.0.1:0")
    sink = MemorySink()
    sent: dict[str, int] = {}

    def plain_frames(seq: int, device: int = DEVICE) -> list:
        return [decode_frame(f) for f in slice_frames(plan, feats[seq % N], 16, device, bid, seq)]

    async def main():
        server = TailServer(ServerConfig(digits_bundle, [], deadline_s=0.3, send_results=True,
                                         keys={DEVICE: KEY7, OTHER: KEY8}), sink, transports=[udp])
        await server.start()
        loop = asyncio.get_running_loop()
        dev, evil = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for s in (dev, evil):
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
        to = ("127.0.0.1", udp.bound_port)
        me = DeviceSession(DEVICE, KEY7, 0x5EED0001)
        try:
            hello = me.hello(make_frame(FrameType.HELLO, Hello("py-device", 1, 0, 512, 16, 32), DEVICE, bid, 0))
            dev.sendto(hello, to)
            me.open(split(await asyncio.wait_for(loop.sock_recv(dev, 2048), 5)))  # the SESSION
            dev.sendto(me.seal(make_frame(FrameType.STATS, KeyValues(((1, 2),)), DEVICE, bid, 0)), to)
            captured = []
            for seq in range(N):
                for f in plain_frames(seq):
                    b = me.seal(f)
                    captured.append(b)
                    dev.sendto(b, to)
                if seq == N // 2:  # the attack, in the middle of the stream
                    thief = DeviceSession(OTHER, KEY8, 0xBAD)  # a device with its own, valid key
                    thief.host_nonce, thief.send_counter = 1, 10_000  # fresh counters: the tag must decide
                    attacks = {
                        # another device's next seqs, each of the forms a spoofer has
                        "unauthenticated": [encode_frame(f)
                                            for s2 in range(seq + 1, seq + 11) for f in plain_frames(s2)],
                        "auth": [seal(f, KEY8, 1, me.device_nonce, me.host_nonce, 1000 + k)  # forged with the wrong key
                                 for k, s2 in enumerate(range(seq + 1, seq + 11)) for f in plain_frames(s2)]
                        + [thief.seal(f) for s2 in range(seq + 1, seq + 6) for f in plain_frames(s2)]  # its key, our id
                        + [tampered(b, 20_000 + k) for k, b in enumerate(captured[-5:])],
                        "replay": captured[:10],  # replays of what the device sent
                        "unknown_device": [seal(f, KEY7, 1, 1, 1, 1) for f in plain_frames(seq + 1, device=9)],
                    }
                    # part 0 of 2 ahead for the device's next seqs, sealed with a guess at the session
                    attacks["auth"] += [seal(make_frame(FrameType.NAIR_SLICE, decode_payload(f), DEVICE, bid, s2, 0, 2),
                                             KEY7, 1, me.device_nonce, me.host_nonce ^ 0xFFFF, 5000 + s2)
                                        for s2 in range(seq + 1, seq + 11) for f in plain_frames(s2)]
                    for reason, frames in attacks.items():
                        sent[reason] = len(frames)
                        for b in frames:
                            evil.sendto(b, to)
                    evil.sendto(hello, to)  # the device's own HELLO, replayed: it may only earn a SESSION
                await asyncio.sleep(0.002)
            results = []
            while len(results) < N:
                results.append(await asyncio.wait_for(loop.sock_recv(dev, 2048), 5))
            await asyncio.sleep(0.3)
            evil_got = []
            try:
                while True:
                    evil_got.append(evil.recv(2048))
            except BlockingIOError:
                pass
        finally:
            dev.close()
            evil.close()
            await server.stop()
        return server, results, evil_got, me

    server, results, evil_got, me = asyncio.run(main())
    recs = sorted(sink.records, key=lambda r: r["sample"])
    assert [r["sample"] for r in recs] == list(range(N)) and {r["device"] for r in recs} == {DEVICE}
    assert np.array_equal([r["label"] for r in recs], ref)  # 100% of the legitimate samples, right
    assert all(r["complete"] for r in recs)
    drops = server.metrics.drops
    for reason, n in sent.items():
        assert drops.get(reason, 0) == n, (reason, drops)
    # RESULT frames: only to the device, sealed in its session, one per sample with the right label
    # the attacker got only the SESSION answering its replayed HELLO: bound to the device's nonce, which
    # the device would refuse (a SESSION counter already passed) and which changed nothing at the server
    assert [split(b).frame.type for b in evil_got] == [FrameType.SESSION]
    assert server.metrics.counters["hellos_answered"] == 2 and server.metrics.counters["hellos"] == 1
    back = {f.seq: decode_payload(f) for f in (me.open(split(r)) for r in results)}
    assert sorted(back) == list(range(N)) and [back[i].label for i in range(N)] == ref.tolist()
    assert len(server.sessions) == 1  # nothing kept for device 8 (it never verified) or 9 (no key)
    assert server.metrics.counters["sessions_sent"] == 2


def test_frames_before_a_session_and_unauthenticated_servers(digits_bundle, caplog):
    m = load_manifest(digits_bundle)
    bid = int(m.bundle_id, 16)
    udp = open_transport("udp://127.0.0.1:0")

    async def main(keys):
        server = TailServer(ServerConfig(digits_bundle, [], deadline_s=0.2, keys=keys), MemorySink(),
                            transports=[open_transport("udp://127.0.0.1:0")] if keys is None else [udp])
        await server.start()
        if keys is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                f = make_frame(FrameType.STATS, KeyValues(()),
                               DEVICE, bid, 0)
                s.sendto(seal(f, KEY7, 1, 5, 6, 1), ("127.0.0.1", udp.bound_port))  # no HELLO yet
                await asyncio.sleep(0.2)
        await server.stop()
        return server

    server = asyncio.run(main({DEVICE: KEY7}))
    assert server.metrics.drops == {"session": 1} and len(server.sessions) == 0
    with caplog.at_level(logging.INFO):
        asyncio.run(main(None))
    assert any("NOT authenticated" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        TailServer(ServerConfig(digits_bundle, ["udp://127.0.0.1:0"]), MemorySink(), transports=[])
    assert any("NOT authenticated" in r.message and r.levelno == logging.WARNING for r in caplog.records)


def test_serve_needs_keys_or_insecure(digits_bundle, tmp_path):
    r = run_cli("serve", "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", cwd=tmp_path)
    assert r.returncode == 2 and "--keys" in r.stderr and "--insecure" in r.stderr
    keys = tmp_path / "k.json"
    assert run_cli("keys", "create", "--file", str(keys), "--device", "7").returncode == 0
    keys.chmod(0o644)
    r = run_cli("serve", "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--keys", str(keys),
                cwd=tmp_path)
    assert r.returncode == 2 and "chmod 600" in r.stderr
    keys.chmod(0o600)
    r = run_cli("serve", "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--keys", str(keys),
                "--duration", "0.5", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "authenticated frames from 1 device(s)" in r.stderr
