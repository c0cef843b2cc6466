"""Soak benchmark (not a test): mixed legitimate and hostile traffic at the server's measured
capacity for a bounded time; stops by itself.

    python tests/benchmarks/bench_server_soak.py [--minutes 10] [--bundle DIR] [--report-every 30] [--auth]

Starts `tinysplit serve` on loopback with the digits bundle, measures its capacity (samples/s
predicted while offered more than it can take, 5 s), then for --minutes offers that rate in total:
half legitimate samples (10 devices, one full NAIR frame each, seqs counting up) and half hostile
frames: malformed (bad CRC, truncated, junk), frames with made-up device ids, replays of old
legitimate seqs (far behind: stale; recent: late), half samples that never finish (zero-filled at
their deadline), and STATS floods with distinct device ids (which fill and churn the session
table). Every --report-every seconds it prints the server's RSS, fd count, tail queue depth and
counters; at the end it stops the server (SIGTERM) and checks that every legitimate sample was
either predicted or counted (shed, kernel receive-buffer drop, tail error): none silently lost,
and that the server's accounting balances (samples received = predicted + dropped by reason).

With --auth the server runs with a key file (`serve --keys`) and the legitimate devices speak
authenticated frames (HELLO, the server's SESSION, then sealed slices). The hostile half then also
holds what an attacker of an authenticated server sends: the devices' own sealed frames replayed,
frames sealed with a wrong key, tampered sealed frames; the rest of the hostile traffic is plain
(version 1): made-up ids, half samples and the STATS flood are dropped as `unauthenticated` before
any state is kept.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import tempfile
import time
import zlib
from pathlib import Path

from _serverproc import ServerProc, digits_bundle
from server_support import nair_frames
from tinysplit.manifest import load_manifest
from tinysplit.wire import decode_frame, encode_frame
from tinysplit.wire.auth import seal
from tinysplit.wire.frame import FrameType
from tinysplit.wire.payloads import KeyValues, make_frame

LEGIT = list(range(1, 11))
KINDS = ("malformed", "made_up_ids", "replayed", "half_samples", "stats_flood")  # with --auth, half of the
# replays are the devices' sealed frames and half of the made-up ids forged or tampered sealed frames


def with_ids(frame: bytes, device: int, seq: int) -> bytes:
    """The same frame for another device id and seq, its CRC recomputed."""
    f = bytearray(frame)
    f[4:6] = device.to_bytes(2, "little")
    f[10:14] = seq.to_bytes(4, "little")
    f[-4:] = (zlib.crc32(bytes(f[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(f)


def measure_capacity(bundle: Path, tmp: Path, frames: list[bytes]) -> float:
    srv = ServerProc(bundle, tmp / "cap.jsonl", "--deadline-ms", "200")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    t0 = time.perf_counter()
    seq = 0
    m0 = srv.metrics()["tinysplit_predictions_total"]
    while time.perf_counter() - t0 < 5:
        for _ in range(50):  # offered: as fast as this process can send
            sock.sendto(with_ids(frames[seq % len(frames)], 1, seq), ("127.0.0.1", srv.port))
            seq += 1
        time.sleep(0.001)
    rate = (srv.metrics()["tinysplit_predictions_total"] - m0) / (time.perf_counter() - t0)
    srv.stop()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--bundle", type=Path, help="a digits bundle (default: export one)")
    ap.add_argument("--report-every", type=float, default=30.0, metavar="S")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--auth", action="store_true", help="authenticated frames (serve --keys)")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        bundle = args.bundle or digits_bundle(tmp)
        bid = int(load_manifest(bundle).bundle_id, 16)
        base = nair_frames(bundle, 64, device=1)
        half = nair_frames(bundle, 64, device=1, units=8, part_count=2)
        cap = measure_capacity(bundle, tmp, base)
        rate = cap
        print(f"measured capacity {cap:.0f} samples/s; soaking at {rate:.0f} frames/s for {args.minutes:g} min "
              f"(half legitimate from {len(LEGIT)} devices, half hostile)", flush=True)
        out = tmp / "pred.jsonl"
        extra = []
        if args.auth:
            from tinysplit.keys import create_keys

            create_keys(tmp / "keys.json", LEGIT)
            extra = ["--keys", str(tmp / "keys.json")]
        srv = ServerProc(bundle, out, "--deadline-ms", "200", "--session-idle-s", "60", *extra)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        addr = ("127.0.0.1", srv.port)
        sessions = handshake(sock, addr, tmp / "keys.json", bid) if args.auth else {}
        captured: list[bytes] = []
        legit_seq = {d: 0 for d in LEGIT}
        legit_sent = 0
        hostile = dict.fromkeys(KINDS, 0)
        next_id, half_seq = 20_000, 0
        t0 = time.perf_counter()
        end = t0 + args.minutes * 60
        next_report = t0 + args.report_every
        sent = 0
        print(f"{'t s':>6} {'RSS MiB':>8} {'fds':>4} {'queue':>6} {'sessions':>8} {'predictions':>11} {'frame drops':>40} "
              f"{'sample drops':>20}", flush=True)
        while time.perf_counter() < end:
            due = int((time.perf_counter() - t0) * rate)
            while sent < due:
                sent += 1
                if sent % 2:  # legitimate
                    d = LEGIT[sent // 2 % len(LEGIT)]
                    f = with_ids(base[legit_seq[d] % 64], d, legit_seq[d])
                    if args.auth:
                        f = sessions[d].seal(decode_frame(f))
                        if len(captured) < 4096:
                            captured.append(f)
                    sock.sendto(f, addr)
                    legit_seq[d] += 1
                    legit_sent += 1
                    continue
                kind = rng.choice(KINDS)
                if args.auth and kind in ("replayed", "made_up_ids") and rng.random() < 0.5:
                    kind = "sealed_replay" if kind == "replayed" else "forged_or_tampered"
                    hostile[kind] = hostile.get(kind, 0) + 1
                    if kind == "sealed_replay" and captured:
                        sock.sendto(captured[rng.randrange(len(captured))], addr)
                    elif captured:
                        f = bytearray(captured[rng.randrange(len(captured))])
                        f[rng.randrange(20, len(f) - 4)] ^= 0x01  # tampered (CRC fixed below) or...
                        if rng.random() < 0.5:  # ...sealed with a key that is not the device's
                            f = bytearray(seal(decode_frame(base[0]), bytes(32), 1, 1, 1, rng.randrange(1, 1 << 32)))
                        f[-4:] = (zlib.crc32(bytes(f[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
                        sock.sendto(bytes(f), addr)
                    continue
                hostile[kind] += 1
                if kind == "malformed":
                    f = bytearray(base[rng.randrange(64)])
                    how = rng.randrange(3)
                    if how == 0:
                        f[rng.randrange(len(f))] ^= 0xFF  # CRC fails
                    elif how == 1:
                        f = f[:rng.randrange(1, len(f))]
                    else:
                        f = bytearray(rng.randbytes(rng.randrange(1, 600)))
                    sock.sendto(bytes(f), addr)
                elif kind == "made_up_ids":
                    sock.sendto(with_ids(base[rng.randrange(64)], rng.randrange(100, 20_000), rng.randrange(1 << 32)), addr)
                elif kind == "replayed":
                    d = rng.choice(LEGIT)
                    if legit_seq[d]:
                        s = rng.randrange(max(0, legit_seq[d] - 5000), legit_seq[d])
                        sock.sendto(with_ids(base[s % 64], d, s), addr)
                elif kind == "half_samples":
                    sock.sendto(with_ids(half[half_seq % 64], 30_000 + half_seq % 50, half_seq), addr)
                    half_seq += 1
                else:  # each one from a device id not seen before
                    sock.sendto(encode_frame(make_frame(FrameType.STATS, KeyValues(((1, 1),)), next_id % 65536, bid, 0)),
                                addr)
                    next_id += 1
            now = time.perf_counter()
            if now >= next_report:
                m = srv.metrics()
                fd = {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("tinysplit_dropped_frames_total")}
                sd = {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("tinysplit_dropped_samples_total")}
                depth = m.get('tinysplit_tail_queue_depth{tail="tail"}', 0)
                print(f"{now - t0:6.0f} {srv.rss_mib():8.1f} {srv.fds():4d} "
                      f"{depth:6.0f} {m.get('tinysplit_sessions', 0):8.0f} "
                      f"{m.get('tinysplit_predictions_total', 0):11.0f} {json.dumps(fd):>40} {json.dumps(sd):>20}",
                      flush=True)
                next_report += args.report_every
            time.sleep(0.001)
        time.sleep(0.5)
        report, took = srv.stop()
        acc = report["accounting"]
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        legit_pred = {(r["device"], r["sample"]) for r in recs if r["device"] in LEGIT}
        legit_ok = sum(1 for r in recs if r["device"] in LEGIT and r["complete"] and r["units_received"] == 16)
        missing = legit_sent - len(legit_pred)
        counted = sum(acc["dropped"].values()) + report["transport_drops"].get("rcvbuf", 0)
        print(f"\nsent {sent} frames in {args.minutes:g} min: {legit_sent} legitimate samples, hostile {hostile}")
        print(f"server: {report['counters']['frames']} frames, drops {report['drops']}, transport drops "
              f"{report['transport_drops']}; sessions expired {report['counters']['sessions_expired']}, evicted "
              f"{report['counters']['sessions_evicted']}; accounting {acc}; SIGTERM -> exit {took:.2f} s")
        print(f"legitimate: {len(legit_pred)} of {legit_sent} predicted ({legit_ok} complete with all 16 units), "
              f"{missing} not predicted, samples counted as dropped (any device) {counted}")
        ok = acc["balanced"] and missing <= counted and len(legit_pred) == sum(1 for r in recs if r["device"] in LEGIT)
        print("PASS: every legitimate sample predicted once or counted" if ok else "FAIL: a legitimate sample was lost "
              "without a counter (or predicted twice)")


def handshake(sock: socket.socket, addr, keys_file: Path, bid: int) -> dict:
    """Each legitimate device: HELLO, the server's SESSION, a confirming STATS (sealed)."""
    from tinysplit.keys import load_keys
    from tinysplit.wire.auth import DeviceSession, split
    from tinysplit.wire.payloads import Hello

    keys = load_keys(keys_file)
    out = {}
    sock.settimeout(10)
    for i, d in enumerate(LEGIT):
        dev = DeviceSession(d, keys[d].key, 0x1000 + i)
        sock.sendto(dev.hello(make_frame(FrameType.HELLO, Hello("soak", 1, 0, 512, 16, 32), d, bid, 0)), addr)
        dev.open(split(sock.recv(2048)))
        sock.sendto(dev.seal(make_frame(FrameType.STATS, KeyValues(((1, 1),)), d, bid, 0)), addr)
        out[d] = dev
    sock.settimeout(None)
    sock.setblocking(True)
    return out


if __name__ == "__main__":
    main()
