"""``tinysplit serve``: run the tail server until SIGINT/SIGTERM (or --duration)."""

from __future__ import annotations

import asyncio
import math
import signal
import sys
from pathlib import Path

from tinysplit.console import emit_json
from tinysplit.errors import InputError


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the host tail server for a bundle",
                       description="Receive frames from devices over UDP and serial links, assemble samples "
                                   "(NAIR: zero-fill missing units at the deadline), run the host tail in ONNX "
                                   "Runtime (micro-batched) and write predictions as JSONL. Counters are served "
                                   "as Prometheus text and printed on exit. Stops cleanly on SIGINT/SIGTERM.")
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle directory (from tinysplit export)")
    p.add_argument("--listen", action="append", default=[], metavar="URL",
                   help="udp://HOST:PORT or udp://[IPV6]:PORT to listen on (repeatable; 0.0.0.0 or :: "
                        "is every interface, said in a WARNING)")
    p.add_argument("--serial", action="append", default=[], metavar="URL",
                   help="serial:///dev/ttyACM0?baud=115200 or socket://HOST:PORT (QEMU) (repeatable; a link that "
                        "closes is reopened with backoff)")
    p.add_argument("--out", default="predictions.jsonl", metavar="FILE",
                   help="JSONL predictions file, appended to (default predictions.jsonl); opened at start: if "
                        "writing fails later the server stops and exits 74, the lost predictions counted")
    p.add_argument("--deadline-ms", type=float, default=500.0,
                   help="a sample completes this long after its first slice at the latest (default 500)")
    p.add_argument("--send-results", action="store_true", help="send each prediction back to its device")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus text at http://HOST:PORT/metrics ([IPV6]:PORT for IPv6; :PORT is "
                        "127.0.0.1); 16 connections at most, 5 s each")
    p.add_argument("--max-batch", type=int, default=64, help="largest tail micro-batch (default 64)")
    p.add_argument("--session-idle-s", type=float, default=300.0, metavar="S",
                   help="forget a device silent this long: its session, its sequence window, its pending samples "
                        "(completed zero-filled) (default 300)")
    p.add_argument("--max-queue", type=int, default=1024, metavar="N",
                   help="samples waiting per tail at most; beyond it the oldest is shed and counted "
                        "(tinysplit_dropped_samples_total{reason=\"shed\"}) (default 1024)")
    p.add_argument("--shutdown-timeout", type=float, default=5.0, metavar="S",
                   help="on SIGINT/SIGTERM, run the queued samples for at most S seconds; what is left is counted "
                        "as shed_shutdown (default 5)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--keys", metavar="KEYS.json",
                      help="device keys ('tinysplit keys create'): only authenticated frames from these devices are "
                           "accepted, and results and CONTROL frames to them are authenticated")
    auth.add_argument("--insecure", action="store_true",
                      help="lab only: accept unauthenticated frames (anyone who reaches the server can forge, "
                           "replay or spoof a device); one of --keys or --insecure is required")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (for scripts)")
    p.add_argument("--json", action="store_true", help="print the final counters as JSON on stdout")


def _metrics_addr(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    from tinysplit.host_server.addr import split_host_port

    return split_host_port(text, "--metrics", "127.0.0.1")


def _positive(name: str, value: float | None, unit: str) -> None:
    """InputError unless ``value`` (when given) is a finite number > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number of {unit} greater than 0, got {value}")


async def _serve(args) -> tuple[dict, Exception | None]:
    from tinysplit.host_server.addr import host_port_text
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import JsonlSink

    urls = [*args.listen, *args.serial]
    if not urls:
        raise InputError("nothing to listen on: give --listen udp://HOST:PORT and/or --serial URL")
    _positive("--deadline-ms", args.deadline_ms, "milliseconds")
    _positive("--duration", args.duration, "seconds")
    if args.max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not 0 < args.session_idle_s < float("inf"):
        raise InputError(f"--session-idle-s {args.session_idle_s}: give a number of seconds > 0, e.g. 300")
    if args.max_queue < 1:
        raise InputError(f"--max-queue {args.max_queue}: give a number of samples >= 1, e.g. 1024")
    if not 0 <= args.shutdown_timeout < float("inf"):
        raise InputError(f"--shutdown-timeout {args.shutdown_timeout}: give a number of seconds >= 0, e.g. 5")
    if args.keys is None and not args.insecure:
        raise InputError("give --keys KEYS.json (authenticated frames; make keys with 'tinysplit keys create') or "
                         "--insecure (unauthenticated, lab only)")
    keys = None
    if args.keys is not None:
        from tinysplit.keys import load_keys

        keys = {d: k.key for d, k in load_keys(args.keys).items()}
        if not keys:
            raise InputError(f"key file '{args.keys}' holds no keys; add some with 'tinysplit keys create'")
    config = ServerConfig(Path(args.bundle), urls, deadline_s=args.deadline_ms / 1000, send_results=args.send_results,
                          max_batch=args.max_batch, metrics_addr=_metrics_addr(args.metrics),
                          session_idle_s=args.session_idle_s, max_queue=args.max_queue,
                          shutdown_timeout_s=args.shutdown_timeout, keys=keys)
    sink = JsonlSink(args.out)
    server = TailServer(config, sink)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sink.open()  # an unwritable --out fails here, before any frame is taken
    try:
        await server.start()
        print(f"tinysplit serve: bundle '{server.manifest.name}' ({server.manifest.bundle_id}) on "
              f"{', '.join(urls)}; predictions -> {args.out}; "
              + (f"authenticated frames from {len(keys)} device(s)" if keys else
                 "UNAUTHENTICATED frames (--insecure, lab only)")
              + (f"; metrics on http://{host_port_text(config.metrics_addr[0], server.metrics_port)}/metrics"
                 if config.metrics_addr else ""), file=sys.stderr, flush=True)
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.failed.wait())]
        try:
            await asyncio.wait(waits, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
    finally:
        await server.stop()
    return server.report(), server.failure


def run_serve(args) -> int:
    report, failure = asyncio.run(_serve(args))
    if args.json:
        emit_json(report)
    else:
        c, lat = report["counters"], report["latency_ms"]
        shown = ("frames", "samples", "predictions", "deadline_misses", "duplicates", "late")
        other = "".join(f", {k.replace('_', ' ')} {v}" for k, v in c.items() if k not in shown)  # e.g. ReBEL's paths
        print(f"frames {c['frames']}, samples {c['samples']}, predictions {c['predictions']}, deadline misses "
              f"{c['deadline_misses']}, duplicates {c['duplicates']}, late {c['late']}{other}, drops "
              f"{dict(report['drops'])} transport drops {report['transport_drops']}, samples dropped "
              f"{dict(report['sample_drops'])}"
              + (f", latency p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms" if lat else ""), file=sys.stderr)
    if failure is not None:  # the sink failed: the counters above say how many predictions were lost
        from tinysplit.errors import OutputError

        lost = report["sample_drops"].get("output_error", 0)
        raise OutputError(f"{failure}; the server stopped, {lost} prediction(s) lost (counted as dropped samples, "
                          "reason output_error); free space or fix the output and restart") from None
    return 0


COMMANDS = {"serve": (add_serve, run_serve)}
