"""Benchmark (not a test): the tail server at 10x its tail's capacity, then recovery.

    python tests/benchmarks/bench_server_overload.py [--bundle DIR] [--factor 10] [--seconds 8]
        [--recovery 6] [--max-queue 1024] [--matmuls 400]

Makes a copy of the digits bundle whose host tail does extra output-neutral work (a real slow tail
of a few hundred samples/s in ONNX Runtime, so the tail and not the event loop is the bottleneck),
measures that tail's capacity (batches of 64, one thread, as the server runs it), starts
`tinysplit serve --send-results` on loopback, offers factor x capacity samples/s over UDP for
--seconds, then stops the load (a trickle of a tenth of the capacity, to measure latency) for --recovery seconds, printing every second: offered and
predicted samples/s, the tail queue's depth, samples shed, the server's RSS and the latency
(sample sent -> RESULT back) p50/p99 of the results that came back in that second. Then SIGTERM:
how long shutdown took and whether every sample received was predicted or counted. Stops by itself.
Without --bundle it exports the digits example first (about a minute).
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _serverproc import ServerProc, digits_bundle, pct
from server_support import nair_frames, slow_tail_bundle


def tail_capacity(bundle: Path, seconds: float = 2.0, batch: int = 64) -> float:
    import json

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    tail = json.loads((bundle / "manifest.json").read_text())["host_tails"][0]["file"]
    s = ort.InferenceSession(str(bundle / tail), opts, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((batch, *inp.shape[1:])).astype(np.float32)
    s.run(None, {inp.name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.run(None, {inp.name: x})
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="a digits bundle (default: export one)")
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=8.0, help="overload phase")
    ap.add_argument("--recovery", type=float, default=12.0, help="recovery phase: a trickle of a tenth of the capacity")
    ap.add_argument("--max-queue", type=int, default=1024)
    ap.add_argument("--matmuls", type=int, default=400, help="extra work in the slow tail")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src = args.bundle or digits_bundle(tmp)
        bundle = slow_tail_bundle(src, tmp / "slow", args.matmuls)
        cap = tail_capacity(bundle)
        rate_hi, rate_lo = args.factor * cap, 0.1 * cap
        print(f"tail capacity {cap:.0f} samples/s; offering {rate_hi:.0f}/s for {args.seconds:.0f} s, then "
              f"{rate_lo:.0f}/s for {args.recovery:.0f} s; --max-queue {args.max_queue}", flush=True)
        n_total = int(rate_hi * args.seconds + rate_lo * args.recovery) + 10
        frames = nair_frames(src, n_total, device=1)
        srv = ServerProc(bundle, tmp / "pred.jsonl", "--send-results", "--max-queue", str(args.max_queue),
                         "--deadline-ms", "200")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sent_at = np.zeros(n_total)
        back: list[tuple[float, float]] = []  # (arrival, latency)
        stop = threading.Event()

        def receive() -> None:
            sock.settimeout(0.2)
            while not stop.is_set():
                try:
                    data = sock.recv(2048)
                except (socket.timeout, OSError):
                    continue
                now = time.perf_counter()
                seq = int.from_bytes(data[10:14], "little")
                if seq < n_total and sent_at[seq]:
                    back.append((now, now - sent_at[seq]))

        rx = threading.Thread(target=receive, daemon=True)
        rx.start()
        rows = {"overload": [], "recovery": []}
        seq = 0
        t0 = time.perf_counter()
        prev = srv.metrics()
        rss0 = srv.rss_mib()
        print(f"{'t s':>5} {'phase':>8} {'offered/s':>9} {'predicted/s':>11} {'queue':>6} {'shed':>7} {'RSS MiB':>8} "
              f"{'p50 ms':>8} {'p99 ms':>8}", flush=True)
        for phase, rate, secs in (("overload", rate_hi, args.seconds), ("recovery", rate_lo, args.recovery)):
            t_phase = time.perf_counter()
            next_report = t_phase + 1.0
            sent_phase = 0
            while time.perf_counter() - t_phase < secs:
                due = int((time.perf_counter() - t_phase) * rate)
                while sent_phase < due and seq < n_total:
                    sent_at[seq] = time.perf_counter()
                    sock.sendto(frames[seq], ("127.0.0.1", srv.port))
                    seq += 1
                    sent_phase += 1
                if time.perf_counter() >= next_report:
                    m = srv.metrics()
                    lat = [lt * 1000 for at, lt in back if next_report - 1.0 <= at < next_report]
                    row = {"t": time.perf_counter() - t0,
                           "offered": sent_phase / (time.perf_counter() - t_phase),
                           "predicted": m.get("tinysplit_predictions_total", 0) - prev.get("tinysplit_predictions_total", 0),
                           "queue": m.get('tinysplit_tail_queue_depth{tail="tail"}', 0),
                           "shed": m.get('tinysplit_dropped_samples_total{reason="shed"}', 0),
                           "rss": srv.rss_mib(), "p50": pct(lat, 50), "p99": pct(lat, 99)}
                    prev = m
                    rows[phase].append(row)
                    print(f"{row['t']:5.1f} {phase:>8} {row['offered']:9.0f} {row['predicted']:11.0f} {row['queue']:6.0f} "
                          f"{row['shed']:7.0f} {row['rss']:8.1f} {row['p50']:8.1f} {row['p99']:8.1f}", flush=True)
                    next_report += 1.0
                time.sleep(0.0005)
        time.sleep(0.5)
        report, took = srv.stop()
        stop.set()
        rx.join()
        acc = report["accounting"]

        def phase_summary(rs: list[dict]) -> dict:
            return {"offered/s": np.mean([r["offered"] for r in rs]), "predicted/s": np.mean([r["predicted"] for r in rs]),
                    "queue max": max(r["queue"] for r in rs), "RSS max MiB": max(r["rss"] for r in rs),
                    "p50 ms (median of s)": np.nanmedian([r["p50"] for r in rs]),
                    "p99 ms (max of s)": np.nanmax([r["p99"] for r in rs])}

        a, b = phase_summary(rows["overload"]), phase_summary(rows["recovery"][1:] or rows["recovery"])
        print(f"\n{'':24} {'overload':>10} {'recovery':>10}")
        for k in a:
            print(f"{k:24} {a[k]:10.1f} {b[k]:10.1f}")
        print(f"\nRSS at start {rss0:.1f} MiB; sent {seq}; server received {acc['received']}, predicted {acc['predicted']}, "
              f"dropped {acc['dropped']}, kernel drops {report['transport_drops'].get('rcvbuf', 0)}; "
              f"balanced {acc['balanced']}; SIGTERM -> exit {took:.2f} s")


if __name__ == "__main__":
    main()
