"""`tinysplit serve` operated badly: outputs that cannot be written, /metrics clients that hold
connections or flood them, too few file descriptors, bad options, binding to every interface.
Real processes, real sockets on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from tinysplit.manifest import load_manifest
from tinysplit.methods.nair.slices import extract_units, plan_for
from tinysplit.wire import encode_frame
from tinysplit.wire.frame import FrameType
from tinysplit.wire.payloads import NairSlice, make_frame

EXE = Path(sys.executable).parent / "tinysplit"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def whole_sample_frames(bundle: Path, n: int, device: int = 3) -> list[bytes]:
    """``n`` samples of random int8 features, each one NAIR frame with every unit (complete at once)."""
    m = load_manifest(bundle)
    plan = plan_for(m)
    bid = int(m.bundle_id, 16)
    feats = np.random.default_rng(1).integers(-128, 128, (n, plan.height, plan.width, plan.channels), dtype=np.int8)
    u = plan.units_total
    return [encode_frame(make_frame(FrameType.NAIR_SLICE, NairSlice(0, u, u, extract_units(plan, feats[i], 0, u)),
                                    device, bid, i, 0, 1)) for i in range(n)]


def start_serve(bundle: Path, port: int, *args: str, preexec=None) -> subprocess.Popen:
    """``tinysplit serve`` on udp://127.0.0.1:PORT, returned once it holds the port (or has exited)."""
    proc = subprocess.Popen([str(EXE), "serve", "--insecure",
                             "--bundle", str(bundle), "--listen", f"udp://127.0.0.1:{port}",
                             "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:
            break
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


# --- outputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["/proc/tinysplit-x.jsonl", "AFILE/x.jsonl", "AFILE"])
def test_unwritable_out_fails_at_start(digits_bundle, tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    if where == "AFILE":  # an existing directory
        out = str(tmp_path)
    else:
        out = where.replace("AFILE", str(afile))
    r = run_cli("serve", "--insecure", "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--out", out,
                "--duration", "2", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "tinysplit: error: predictions file" in r.stderr and "Traceback" not in r.stderr
    assert "tinysplit serve:" not in r.stderr  # it never started serving
    assert afile.read_text() == "not a folder\n"


def test_a_server_that_predicted_nothing_leaves_no_file(digits_bundle, tmp_path):
    out = tmp_path / "sub" / "pred.jsonl"
    r = run_cli("serve", "--insecure",
                "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--out", str(out),
                "--duration", "0.5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not out.exists()


def test_write_failure_counts_the_loss_stops_and_exits_nonzero(digits_bundle, tmp_path):
    port = free_udp_port()
    proc = start_serve(digits_bundle, port, "--out", "/dev/full", "--deadline-ms", "60000")
    try:
        assert proc.poll() is None, proc.stderr.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            for f in whole_sample_frames(digits_bundle, 30):
                dev.sendto(f, ("127.0.0.1", port))
                time.sleep(0.002)
        proc.wait(timeout=30)  # it stops by itself
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 74, stderr
    assert "No space left on device" in stderr and "prediction(s) lost" in stderr
    assert "Traceback" not in stderr and stderr.count("No space left on device") <= 3
    report = json.loads(stdout)
    lost = report["sample_drops"].get("output_error", 0)
    assert report["counters"]["predictions"] == 0 and lost >= 1
    assert report["accounting"]["balanced"]  # every sample predicted or counted under a reason


def test_nonfinite_scores_are_written_as_valid_json(digits_bundle, tmp_path):
    """A tail that returns NaN/inf still writes valid JSON lines (null scores), counted."""
    import asyncio

    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import JsonlSink
    from tinysplit.host_server.transports.loop import loop_peer
    from tinysplit.wire.cobs import cobs_encode

    out = tmp_path / "p.jsonl"

    async def main():
        server = TailServer(ServerConfig(digits_bundle, ["loop://nan"], deadline_s=5), JsonlSink(out))
        row = np.array([np.nan, np.inf, -np.inf] + [np.nan] * 7, dtype=np.float32)
        for t in server.tails.values():  # a tail gone wrong: every logit NaN or infinite
            t.run = lambda inputs: np.tile(row, (len(inputs[0]), 1))
        await server.start()
        for f in whole_sample_frames(digits_bundle, 3):
            loop_peer("nan").write(cobs_encode(f) + b"\0")
        for _ in range(100):
            if server.metrics.counters["predictions"] == 3:
                break
            await asyncio.sleep(0.02)
        await server.stop()
        return server

    server = asyncio.run(main())
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        rec = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in {line}"))
        assert rec["scores"] == [None] * 10
    assert server.metrics.counters["nonfinite_scores"] == 3


# --- /metrics -------------------------------------------------------------------------------------

def _metrics(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def _counter(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(f"tinysplit_{name}_total "):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in {text}")


def test_metrics_cuts_off_slow_clients_and_refuses_excess_connections(digits_bundle, tmp_path):
    """Clients that send a header line every second are cut off after the server's bound (5 s), and
    connections beyond the limit (16) are closed at once; a scrape still works meanwhile."""
    port, mport = free_udp_port(), free_tcp_port()
    proc = start_serve(digits_bundle, port, "--out", str(tmp_path / "p.jsonl"), "--metrics", f"127.0.0.1:{mport}")
    clients: list[socket.socket] = []
    try:
        assert proc.poll() is None, proc.stderr.read()
        t0 = time.monotonic()
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", mport), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            clients.append(s)
        open_at: dict[int, float] = {}
        while time.monotonic() - t0 < 12 and len(open_at) < len(clients):
            for i, s in enumerate(clients):
                if i in open_at:
                    continue
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                    s.settimeout(0.01)
                    if s.recv(1) == b"":
                        open_at[i] = time.monotonic() - t0
                except (ConnectionError, OSError) as e:
                    if not isinstance(e, socket.timeout):
                        open_at[i] = time.monotonic() - t0
            time.sleep(0.5)
        assert len(open_at) == len(clients), "some slow clients were never cut off"
        assert max(open_at.values()) < 9  # the 5 s bound, with slack for a loaded machine
        text = _metrics(mport)
        assert _counter(text, "metrics_rejected") >= len(clients) - 16
        assert _counter(text, "metrics_timeouts") >= 1
        assert _counter(text, "metrics_rejected") + _counter(text, "metrics_timeouts") == len(clients)
    finally:
        for s in clients:
            s.close()
        stop(proc)


_LOW_FD_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from tinysplit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_metrics_clients_cannot_starve_predictions_of_file_descriptors(digits_bundle, tmp_path):
    """With 64 file descriptors, 200 /metrics clients holding connections do not make the server lose
    predictions (no tail_error, no tracebacks): every sample is predicted and written."""
    port, mport = free_udp_port(), free_tcp_port()
    out = tmp_path / "p.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _LOW_FD_SCRIPT, "serve", "--insecure",
                             "--bundle", str(digits_bundle),
                             "--listen", f"udp://127.0.0.1:{port}", "--out", str(out), "--metrics",
                             f"127.0.0.1:{mport}", "--json", "--deadline-ms", "60000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", mport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        for _ in range(200):
            try:
                s = socket.create_connection(("127.0.0.1", mport), timeout=0.2)
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
                clients.append(s)
            except OSError:
                pass
        frames = whole_sample_frames(digits_bundle, 40)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            for f in frames:
                dev.sendto(f, ("127.0.0.1", port))
                time.sleep(0.005)
        time.sleep(1.0)
        stdout, stderr = stop(proc)
    finally:
        for s in clients:
            s.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["drops"].get("tail_error", 0) == 0 and "Traceback" not in stderr
    assert report["counters"]["predictions"] == 40
    assert sorted(json.loads(line)["sample"] for line in out.read_text().splitlines()) == list(range(40))


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_deadline_must_be_finite_and_positive(digits_bundle, tmp_path, value):
    r = run_cli("serve", "--insecure",
                "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", f"--deadline-ms={value}",
                "--duration", "1", cwd=tmp_path)
    assert r.returncode == 2 and "--deadline-ms must be a finite number" in r.stderr, r.stderr


def test_metrics_on_ipv6_loopback(digits_bundle, tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    port, mport = free_udp_port(), free_tcp_port()
    proc = start_serve(digits_bundle, port, "--out", str(tmp_path / "p.jsonl"), "--metrics", f"[::1]:{mport}")
    try:
        assert proc.poll() is None, proc.stderr.read()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("::1", mport), timeout=5) as s:
                    s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                    body = s.recv(65536).decode()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert body.startswith("HTTP/1.1 200 OK")
    finally:
        stdout, stderr = stop(proc)
    assert proc.returncode == 0, stderr
    assert f"metrics on http://[::1]:{mport}/metrics" in stderr


@pytest.mark.parametrize("value, says", [("::1:9100", "IPv6 address goes in brackets"),
                                         ("[::1:9100", "not a bracketed IPv6"),
                                         ("[nothost]:9100", "not a bracketed IPv6"),
                                         ("127.0.0.1:99999", "port must be a number")])
def test_bad_metrics_addresses(digits_bundle, tmp_path, value, says):
    r = run_cli("serve", "--insecure",
                "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--metrics", value,
                "--duration", "1", cwd=tmp_path)
    assert r.returncode == 2 and says in r.stderr, r.stderr


def test_binding_all_interfaces_is_said_in_the_log(digits_bundle, tmp_path):
    r = run_cli("serve", "--insecure",
                "--bundle", str(digits_bundle), "--listen", "udp://0.0.0.0:0", "--metrics", "0.0.0.0:0",
                "--duration", "0.5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("WARNING") and "ALL interfaces" in line]
    assert len(warnings) == 2 and any("udp://0.0.0.0:0" in w for w in warnings) and \
        any("/metrics" in w for w in warnings)
    r = run_cli("serve", "--insecure",
                "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--metrics", "127.0.0.1:0",
                "--duration", "0.5", cwd=tmp_path)
    assert r.returncode == 0 and "ALL interfaces" not in r.stderr, r.stderr
