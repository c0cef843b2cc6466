"""`tinysplit serve` as a process: real UDP socket, SIGTERM mid-stream finishes or writes every
pending sample, prints its counters, exits 0; bad arguments exit 2."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli
from tinysplit.manifest import load_manifest
from tinysplit.methods.nair.slices import extract_units, plan_for
from tinysplit.wire import encode_frame
from tinysplit.wire.frame import FrameType
from tinysplit.wire.payloads import NairSlice, make_frame


def test_sigterm_writes_pending_samples_as_incomplete(digits_bundle, tmp_path):
    import numpy as np

    m = load_manifest(digits_bundle)
    plan = plan_for(m)
    bid = int(m.bundle_id, 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "pred.jsonl"
    exe = Path(sys.executable).parent / "tinysplit"
    proc = subprocess.Popen([str(exe), "serve", "--bundle", str(digits_bundle), "--listen", f"udp://127.0.0.1:{port}",
                             "--out", str(out), "--deadline-ms", "60000", "--json", "--insecure"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # wait until the server holds the port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", port))
            except OSError:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        feats = np.random.default_rng(0).integers(-128, 128, (4, plan.height, plan.width, plan.channels), dtype=np.int8)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            for i in range(4):
                # 2 of 4 announced slice frames: the samples stay pending (deadline 60 s)
                for part in range(2):
                    f = make_frame(FrameType.NAIR_SLICE,
                                   NairSlice(part * 4, 4, 16, extract_units(plan, feats[i], part * 4, 4)),
                                   5, bid, i, part, 4)
                    dev.sendto(encode_frame(f), ("127.0.0.1", port))
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["counters"]["frames"] == 8 and report["counters"]["predictions"] == 4
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["sample"] for r in recs) == [0, 1, 2, 3]
    assert all(not r["complete"] and r["units_received"] == 8 for r in recs)


def test_serve_argument_errors(digits_bundle, tmp_path):
    r = run_cli("serve", "--bundle", str(digits_bundle), cwd=tmp_path)
    assert r.returncode == 2 and "nothing to listen on" in r.stderr
    r = run_cli("serve", "--bundle", str(digits_bundle), "--listen", "tcp://x:1", "--insecure", cwd=tmp_path)
    assert r.returncode == 2 and "unknown transport" in r.stderr
    r = run_cli("serve", "--bundle", str(tmp_path), "--listen", "udp://127.0.0.1:0", "--insecure", cwd=tmp_path)
    assert r.returncode == 2 and "manifest.json" in r.stderr
    assert not (tmp_path / "predictions.jsonl").exists()  # a server that never started writes no file
    r = run_cli("serve", "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--out", str(tmp_path),
                "--insecure", cwd=tmp_path)
    assert r.returncode == 2 and "is a directory" in r.stderr
