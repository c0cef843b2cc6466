"""Counters and latency percentiles, rendered as Prometheus text and as a summary."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from typing import Callable

import numpy as np

from tinysplit.errors import InputError
from tinysplit.host_server.addr import host_port_text, is_all_interfaces, warn_if_all_interfaces

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


class MetricsServer:
    """The /metrics listener: its own accept loop, so that a connection over the limit is accepted and
    closed at once (no file descriptor waits for a handler), and running out of descriptors pauses
    accepting instead of filling the log."""

    def __init__(self, metrics: Metrics, sock: socket.socket, limit: int, timeout_s: float) -> None:
        self.metrics, self.limit, self.timeout_s = metrics, limit, timeout_s
        self.sockets = [sock]
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._active: set[asyncio.Task] = set()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self.limit + 1):  # what is queued now, in bounded turns of the event loop
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors (EMFILE, ENFILE, ENOBUFS): pause, count
                self.metrics.inc("metrics_accept_errors")
                if self.metrics.counters["metrics_accept_errors"] == 1:
                    log.warning("/metrics: cannot accept connections (%s); pausing 0.1 s at a time", e.strerror or e)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(0.1, self._resume)
                return
            if len(self._active) >= self.limit:
                self.metrics.inc("metrics_rejected")
                conn.close()
                continue
            conn.setblocking(False)
            task = self._loop.create_task(self._serve(conn))
            self._active.add(task)
            task.add_done_callback(self._active.discard)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=METRICS_MAX_HEAD)
        except OSError:
            conn.close()
            return
        try:
            await asyncio.wait_for(_respond(self.metrics, reader, writer), self.timeout_s)
        except asyncio.TimeoutError:
            self.metrics.inc("metrics_timeouts")
        except (ConnectionError, ValueError, OSError):  # ValueError: a line over the reader's limit
            pass
        except asyncio.CancelledError:  # the server is closing: just close the connection
            pass
        finally:
            writer.transport.abort()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for task in self._active:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._active:
            await asyncio.gather(*self._active, return_exceptions=True)


async def _respond(metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


async def serve_metrics(metrics: Metrics, host: str, port: int, max_connections: int = METRICS_MAX_CONNECTIONS,
                        timeout_s: float = METRICS_TIMEOUT_S) -> MetricsServer:
    """A minimal HTTP endpoint: GET /metrics -> Prometheus text. Anything else -> 404.

    Bounded so that scrapers cannot starve the server: at most ``max_connections`` at once (and at
    most a quarter of the file descriptors still free when it starts); a connection over the limit is
    accepted and closed at once (``metrics_rejected``); each connection gets ``timeout_s`` for its
    whole request and response, then it is closed (``metrics_timeouts``); request heads over 8 KiB
    get 431; when no descriptor is left to accept with, accepting pauses (``metrics_accept_errors``)."""
    headroom = fd_headroom()
    limit = max_connections if headroom is None else max(1, min(max_connections, headroom // 4))
    if limit < max_connections:
        log.warning("/metrics: %d concurrent connections at most (a quarter of the %d free file descriptors)",
                    limit, headroom)
    for name in ("metrics_rejected", "metrics_timeouts", "metrics_accept_errors"):
        metrics.counters.setdefault(name, 0)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and is_all_interfaces(host):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(limit)  # the kernel queues few: clients beyond them wait or are refused there
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
    except OSError as e:
        raise InputError(f"cannot serve /metrics on {host_port_text(host, port)}: {e.strerror or e}; pick a free "
                         "port and an address of this machine") from None
    warn_if_all_interfaces(host, sock.getsockname()[1], "/metrics")
    return MetricsServer(metrics, sock, limit, timeout_s)
