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
    config = ServerConfig(Path(args.bundle), urls, deadline_s=args.deadline_ms / 1000, send_results=args.send_results,
                          max_batch=args.max_batch, metrics_addr=_metrics_addr(args.metrics))
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
              f"{', '.join(urls)}; predictions -> {args.out}"
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
              f"{dict(report['drops'])} transport drops {report['transport_drops']}"
              + (f", latency p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms" if lat else ""), file=sys.stderr)
    if failure is not None:  # the sink failed: the counters above say how many predictions were lost
        from tinysplit.errors import OutputError

        raise OutputError(f"{failure}; the server stopped, {report['counters'].get('predictions_lost', 0)} "
                          "prediction(s) lost (counter predictions_lost); free space or fix the output and "
                          "restart") from None
    return 0


COMMANDS = {"serve": (add_serve, run_serve)}
