"""Counters and latency percentiles, rendered as Prometheus text and as a summary."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

import numpy as np

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


async def serve_metrics(metrics: Metrics, host: str, port: int) -> asyncio.AbstractServer:
    """A minimal HTTP endpoint: GET /metrics -> Prometheus text. Anything else -> 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            if line.split()[:2] == [b"GET", b"/metrics"]:
                body, status = metrics.prometheus().encode(), "200 OK"
            else:
                body, status = b"not found\n", "404 Not Found"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
