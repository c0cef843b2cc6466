"""Benchmark: the tail server under simulated devices over UDP on loopback.

    python tests/benchmarks/bench_server.py [--bundle DIR] [--seconds 5] [--rate 5000]

Starts `tinysplit serve` (its own process, as deployed) on 127.0.0.1, then a load generator (this
process) plays 1, 10 and 100 devices, each sending the full NAIR budget of the digits head's
int8 outputs (one 532-byte frame per sample) at an aggregate offered rate (open loop), and
prints achieved samples/s, the server's latency percentiles (first slice in -> prediction out) and
its drop counters. Without --bundle it exports the digits example first (~15 s).
"""

from __future__ import annotations

import argparse
import json
import zlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from tinysplit.methods.nair.devicesim import slice_frames
from tinysplit.firmware.devicelink import free_udp_port
from tinysplit.manifest import load_manifest
from tinysplit.reference import device_outputs, heldout, quantized_inputs
from tinysplit.methods.nair.slices import plan_for


def run_load(bundle: Path, devices: int, seconds: float, rate: float, frames_by_sample: list[bytes]) -> dict:
    port = free_udp_port()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pred.jsonl"
        exe = Path(sys.executable).parent / "tinysplit"
        srv = subprocess.Popen([str(exe), "serve", "--bundle", str(bundle), "--listen", f"udp://127.0.0.1:{port}",
                                "--out", str(out), "--duration", str(seconds + 3), "--json", "--deadline-ms", "200", "--insecure"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)  # server start (imports onnxruntime, loads the tail)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        n = len(frames_by_sample)
        interval = 1.0 / rate
        sent = 0
        seq = [0] * devices
        t0 = time.perf_counter()
        next_t = t0
        while time.perf_counter() - t0 < seconds:
            dev = sent % devices
            frame = bytearray(frames_by_sample[sent % n])
            # per-device id and sequence number; the CRC is re-computed
            frame[4:6] = dev.to_bytes(2, "little")
            frame[10:14] = seq[dev].to_bytes(4, "little")

            frame[-4:] = (zlib.crc32(bytes(frame[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
            sock.sendto(frame, ("127.0.0.1", port))
            seq[dev] += 1
            sent += 1
            next_t += interval
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        send_s = time.perf_counter() - t0
        stdout, stderr = srv.communicate(timeout=seconds + 30)
        report = json.loads(stdout)
        lines = out.read_text().splitlines()
    c = report["counters"]
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"server_cpu_us_per_sample": round(1e6 * server_cpu / max(1, c["predictions"]), 1),"devices": devices, "offered_per_s": round(sent / send_s), "sent": sent,
            "predictions": c["predictions"], "samples_per_s": round(c["predictions"] / send_s),
            "latency_ms": {k: round(v, 2) for k, v in report["latency_ms"].items()},
            "drops": report["drops"], "deadline_misses": c["deadline_misses"], "jsonl_lines": len(lines),
            "tail_batches": report["tail_batches"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="aggregate offered samples/s")
    ap.add_argument("--devices", default="1,10,100")
    ap.add_argument("--max-rate", type=float, default=20000.0,
                    help="offered rate of a last row with 100 devices, to find the ceiling (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            bundle = Path(tmp) / "digits"
            subprocess.run([str(Path(sys.executable).parent / "tinysplit"), "export", "--example", "digits",
                            "--out", str(bundle), "-q"], check=True)
        m = load_manifest(bundle)
        x, _ = heldout(bundle, m)
        feats = device_outputs(bundle, m, quantized_inputs(m, x[:64]))
        plan = plan_for(m)
        frames = [slice_frames(plan, f, plan.units_total, 0, int(m.bundle_id, 16), 0)[0] for f in feats]
        print(f"bundle {m.name}: {plan.units_total} units, {len(frames[0])} bytes/frame, offered {args.rate:.0f} samples/s "
              f"for {args.seconds:.0f} s per row")
        print(f"{'devices':>7} {'offered/s':>9} {'samples/s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'drops':>6} {'misses':>6} {'batches':>7} {'srv CPU us/sample':>17}")
        rows = [(int(v), args.rate) for v in args.devices.split(",")]
        if args.max_rate:
            rows.append((100, args.max_rate))
        for d, rate in rows:
            r = run_load(bundle, d, args.seconds, rate, frames)
            lat = r["latency_ms"]
            print(f"{d:>7} {r['offered_per_s']:>9} {r['samples_per_s']:>9} {lat.get('p50', 0):>7} {lat.get('p90', 0):>7} "
                  f"{lat.get('p99', 0):>7} {lat.get('max', 0):>7} {sum(r['drops'].values()):>6} "
                  f"{r['deadline_misses']:>6} {r['tail_batches']:>7} {r['server_cpu_us_per_sample']:>17}")
            assert r["jsonl_lines"] == r["predictions"]
        print("server CPU per sample includes process start-up and model load (~2 s of CPU), so it bounds the\n"
              "sustainable rate from below: samples/s <= 1e6 / (CPU us per sample) on one core; the load\n"
              "generator shares the machine's other core.")


if __name__ == "__main__":
    main()
