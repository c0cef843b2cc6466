"""Shared by the overload and soak benchmarks: a `tinysplit serve` process on loopback, its /metrics
read back, its RSS and fd count."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: server_support

from tinysplit.firmware.devicelink import free_udp_port  # noqa: E402


def digits_bundle(tmp: Path) -> Path:
    """Export the digits example (about a minute on a small machine)."""
    from tinysplit.examples.digits import digits_spec
    from tinysplit.exporter import export_bundle

    spec, _ = digits_spec("digits")
    return export_bundle(spec, tmp / "digits").bundle_dir


class ServerProc:
    def __init__(self, bundle: Path, out: Path, *extra: str) -> None:
        self.port = free_udp_port()
        self.metrics_port = free_udp_port()  # a free TCP port as well, almost always
        exe = Path(sys.executable).parent / "tinysplit"
        self.proc = subprocess.Popen([str(exe), "serve", "--bundle", str(bundle), "--listen",
                                      f"udp://127.0.0.1:{self.port}", "--out", str(out), "--json",
                                      "--metrics", f"127.0.0.1:{self.metrics_port}", "--insecure", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ps = psutil.Process(self.proc.pid)
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("tinysplit serve exited: " + self.proc.stderr.read())
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("tinysplit serve did not start within 120 s")

    def metrics(self) -> dict[str, float]:
        """Prometheus text -> {name{labels}: value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r"^(tinysplit_\S+) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def fds(self) -> int:
        return self.ps.num_fds()

    def stop(self, signal_timeout: float = 120) -> tuple[dict, float]:
        """SIGTERM; (the final report, seconds until the process exited)."""
        import json
        import signal

        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        stdout, stderr = self.proc.communicate(timeout=signal_timeout)
        took = time.monotonic() - t0
        if self.proc.returncode != 0:
            raise RuntimeError(f"tinysplit serve exited {self.proc.returncode}: {stderr[-2000:]}")
        return json.loads(stdout), took


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]
