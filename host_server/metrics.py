"""Counters and latency percentiles, rendered as Prometheus text and as a summary."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import Callable

import numpy as np

from tinysplit.errors import InputError
from tinysplit.host_server.addr import host_port_text, warn_if_all_interfaces

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self, latency_window: int = 100_000) -> None:
        self.counters: dict[str, int] = {"frames": 0, "samples": 0, "predictions": 0, "deadline_misses": 0,
                                         "duplicates": 0, "late": 0, "results_sent": 0,
                                         "samples_received": 0}
        self.drops: dict[str, int] = {}  # frames dropped, by reason
        # samples received but never predicted, by reason (shed, shed_shutdown, tail_error): with the
        # predictions and what is still in flight they add up to samples_received
        self.sample_drops: dict[str, int] = {}
        # gauges read when rendered: name -> () -> {label value or "": value}
        self.gauges: dict[str, Callable[[], dict[str, float]]] = {}
        self.latencies_s: deque[float] = deque(maxlen=latency_window)
        # framing-level drops counted by the transports (cobs, oversize, ...), read when rendered
        self.transport_drops: Callable[[], dict[str, int]] = dict
        # the links' own counters (reconnects, reconnect_attempts), read when rendered
        self.link_counters: Callable[[], dict[str, int]] = dict

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def lost(self, reason: str, n: int = 1) -> None:
        """``n`` samples received that will never be predicted, under a named reason."""
        self.sample_drops[reason] = self.sample_drops.get(reason, 0) + n

    @property
    def samples_dropped(self) -> int:
        return sum(self.sample_drops.values())

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_s:
            return {}
        a = np.fromiter(self.latencies_s, float)
        return {f"p{q}": float(np.percentile(a, q) * 1000) for q in (50, 90, 99)} | {"max": float(a.max() * 1000)}

    def snapshot(self) -> dict:
        return {"counters": dict(self.counters), "drops": dict(sorted(self.drops.items())),
                "sample_drops": dict(sorted(self.sample_drops.items())),
                "gauges": {name: read() for name, read in sorted(self.gauges.items())},
                "latency_ms": self.latency_percentiles()}

    def prometheus(self) -> str:
        lines = []
        for k, v in sorted(self.counters.items()):
            lines += [f"# TYPE tinysplit_{k}_total counter", f"tinysplit_{k}_total {v}"]
        lines.append("# TYPE tinysplit_dropped_frames_total counter")
        for reason, v in sorted(self.drops.items()):
            lines.append(f'tinysplit_dropped_frames_total{{reason="{reason}"}} {v}')
        lines.append("# TYPE tinysplit_dropped_samples_total counter")
        for reason, v in sorted(self.sample_drops.items()):
            lines.append(f'tinysplit_dropped_samples_total{{reason="{reason}"}} {v}')
        for name, read in sorted(self.gauges.items()):
            lines.append(f"# TYPE tinysplit_{name} gauge")
            for label, v in sorted(read().items()):
                sel = f'{{tail="{label}"}}' if label else ""
                lines.append(f"tinysplit_{name}{sel} {v:g}")
        lines.append("# TYPE tinysplit_transport_dropped_frames_total counter")
        for reason, v in sorted(self.transport_drops().items()):
            lines.append(f'tinysplit_transport_dropped_frames_total{{reason="{reason}"}} {v}')
        for k, v in sorted(self.link_counters().items()):
            lines += [f"# TYPE tinysplit_link_{k}_total counter", f"tinysplit_link_{k}_total {v}"]
        lines.append("# TYPE tinysplit_latency_ms summary")
        for k, v in self.latency_percentiles().items():
            if k.startswith("p"):
                lines.append(f'tinysplit_latency_ms{{quantile="0.{k[1:]}"}} {v:.3f}')
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        c = self.counters
        lat = self.latency_percentiles()
        s = (f"frames {c['frames']}, samples {c['samples']}, predictions {c['predictions']}, "
             f"deadline misses {c['deadline_misses']}, duplicates {c['duplicates']}, late {c['late']}, "
             f"dropped {self.dropped}")
        if self.drops:
            s += " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.drops.items())) + ")"
        if self.sample_drops:
            s += ", samples dropped " + ", ".join(f"{k} {v}" for k, v in sorted(self.sample_drops.items()))
        if lat:
            s += f"; latency p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms"
        return s


METRICS_MAX_CONNECTIONS = 16  # concurrent /metrics connections; more are closed at once (counted)
METRICS_TIMEOUT_S = 5.0  # a connection's whole request and response; a slower client is cut off (counted)
METRICS_MAX_HEAD = 8192  # bytes of request line and headers read at most


def fd_headroom() -> int | None:
    """File descriptors this process may still open (soft RLIMIT_NOFILE minus those open), or None
    where that cannot be told."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    return max(soft - used, 0)


async def serve_metrics(metrics: Metrics, host: str, port: int, max_connections: int = METRICS_MAX_CONNECTIONS,
                        timeout_s: float = METRICS_TIMEOUT_S) -> asyncio.AbstractServer:
    """A minimal HTTP endpoint: GET /metrics -> Prometheus text. Anything else -> 404.

    Bounded so that scrapers cannot starve the server: at most ``max_connections`` at once (and at
    most a quarter of the file descriptors still free when it starts), excess connections are closed
    at once (``metrics_rejected``); each connection gets ``timeout_s`` for its whole request and
    response, then it is closed (``metrics_timeouts``); request heads over 8 KiB are refused."""
    headroom = fd_headroom()
    limit = max_connections if headroom is None else max(1, min(max_connections, headroom // 4))
    if limit < max_connections:
        log.warning("/metrics: %d concurrent connections at most (a quarter of the %d free file descriptors)",
                    limit, headroom)
    active = 0
    for name in ("metrics_rejected", "metrics_timeouts"):
        metrics.counters.setdefault(name, 0)

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = [await reader.readline()]
        size = len(head[0])
        while head[-1] not in (b"\r\n", b"\n", b"") and size <= METRICS_MAX_HEAD:
            head.append(await reader.readline())
            size += len(head[-1])
        if size > METRICS_MAX_HEAD:
            body, status = b"request head too large\n", "431 Request Header Fields Too Large"
        elif head[0].split()[:2] == [b"GET", b"/metrics"]:
            body, status = metrics.prometheus().encode(), "200 OK"
        else:
            body, status = b"not found\n", "404 Not Found"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        writer.close()
        await writer.wait_closed()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if active >= limit:
            metrics.inc("metrics_rejected")
            writer.transport.abort()
            return
        active += 1
        try:
            await asyncio.wait_for(respond(reader, writer), timeout_s)
        except asyncio.TimeoutError:
            metrics.inc("metrics_timeouts")
        except (ConnectionError, ValueError, OSError):  # ValueError: a line over the reader's limit
            pass
        except asyncio.CancelledError:  # the event loop is shutting down: just close the connection
            pass
        finally:
            active -= 1
            writer.transport.abort()

    # backlog: the kernel queues and asyncio accepts at most `limit` connections at a time, so a flood of
    # clients cannot take every file descriptor between two turns of the event loop
    try:
        server = await asyncio.start_server(handle, host, port, limit=METRICS_MAX_HEAD, backlog=limit)
    except OSError as e:
        raise InputError(f"cannot serve /metrics on {host_port_text(host, port)}: {e.strerror or e}; pick a free "
                         "port and an address of this machine") from None
    warn_if_all_interfaces(host, server.sockets[0].getsockname()[1], "/metrics")
    return server
