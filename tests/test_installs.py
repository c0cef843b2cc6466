"""Installs that match how people use the tool, each from the built wheel in its own fresh venv
(docs/architecture.md, "Packaging and installs"):

- ``tinysplit[host]``: serves a bundle with ONNX Runtime; no PyTorch, TensorFlow or Jinja2;
- ``tinysplit[firmware]``: firmware and a HIL check from a plain int8 .tflite; no PyTorch,
  TensorFlow or ONNX Runtime;
- ``tinysplit[export]`` (with the pinned CPU torch first, as ./setup.sh does): exports an example.

Every command's ``--help`` works in each, and a command whose extra is missing exits 6 naming it.
The wheel is built once per session; each venv once per module (the export venv, ~3 GB, is removed
after it). ``pip install`` needs the package registries (as ``./setup.sh`` does); pip's cache makes
later runs quicker. Measured on a shared 2-core machine with a warm cache (fresh venv + pip install):
host 13-19 s, firmware 10-16 s, export 2.0-2.7 minutes when the machine is quiet and 3.5-5 minutes
under load, plus 30 s for its checks; ``-m "not install"`` leaves them out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinysplit.cli import COMMANDS

pytestmark = [pytest.mark.install, pytest.mark.slow]

PIP_TIMEOUT = 900
BOARD = "qemu-mps2-an386"


@dataclass(frozen=True)
class Venv:
    dir: Path
    work: Path  # a scratch directory outside the checkout, the commands' working directory

    @property
    def python(self) -> Path:
        return self.dir / "bin" / "python"

    @property
    def tinysplit(self) -> Path:
        return self.dir / "bin" / "tinysplit"

    def env(self) -> dict[str, str]:
        """The environment a user of this venv has: nothing of the test process's Python leaks in."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        env["PYTHONNOUSERSITE"] = "1"
        return env

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The installed ``tinysplit`` command, as a user runs it."""
        return subprocess.run([str(self.tinysplit), *args], capture_output=True, text=True, cwd=self.work,
                              env=self.env(), timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(self.tinysplit), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.work, env=self.env())

    def importable(self, *modules: str) -> list[str]:
        code = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
        r = subprocess.run([str(self.python), "-c", code, *modules], capture_output=True, text=True, cwd=self.work,
                           env=self.env(), timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()


def make_venv(root: Path, *requirements: str) -> Venv:
    """A fresh venv (no system site-packages) with ``pip install requirements``."""
    t0 = time.perf_counter()
    venv = root / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    work = root / "work"
    work.mkdir()
    v = Venv(venv, work)
    r = subprocess.run([str(v.python), "-m", "pip", "install", "-q", *requirements], capture_output=True,
                       text=True, cwd=work, env=v.env(), timeout=PIP_TIMEOUT)
    what = " ".join(Path(q).name for q in requirements)
    assert r.returncode == 0, f"pip install {what} failed (are the package registries reachable?):\n{r.stderr}"
    seconds = time.perf_counter() - t0
    print(f"\n[install] fresh venv + pip install {what}: {seconds:.1f} s")
    return v


def venv_fixture(tmp_path_factory, name: str, *requirements: str, remove: bool = False):
    root = tmp_path_factory.mktemp(f"install-{name}")
    yield make_venv(root, *requirements)
    if remove:  # pytest keeps the last runs' temporary directories
        shutil.rmtree(root / "venv", ignore_errors=True)


def check_every_help(v: Venv) -> None:
    """``tinysplit --help`` lists every command and each ``tinysplit COMMAND --help`` exits 0
    (run side by side: each is a fresh interpreter)."""
    top = v.run("--help", timeout=120)
    assert top.returncode == 0, top.stderr
    assert all(c in top.stdout for c in COMMANDS), top.stdout
    procs = {c: v.popen(c, "--help") for c in COMMANDS}
    for c, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "usage: tinysplit " + c in out, (c, err)


def check_installed_copy(v: Venv) -> None:
    r = subprocess.run([str(v.python), "-c", "import tinysplit; print(tinysplit.__file__)"], capture_output=True,
                       text=True, cwd=v.work, env=v.env(), timeout=60)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(v.dir)), (r.stdout, r.stderr)


def exits_6_naming(r: subprocess.CompletedProcess, extra: str) -> bool:
    return r.returncode == 6 and f"pip install 'tinysplit[{extra}]'" in r.stderr


# --- tinysplit[host] ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host_venv(tinysplit_wheel, tmp_path_factory):
    yield from venv_fixture(tmp_path_factory, "host", f"{tinysplit_wheel}[host]")


def test_host_install_is_light_and_every_help_works(host_venv):
    check_installed_copy(host_venv)
    assert host_venv.importable("torch", "tensorflow", "jinja2", "tflite_micro", "onnxruntime", "serial") == \
        ["onnxruntime", "serial"]
    check_every_help(host_venv)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_bound(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:
            return  # the server holds the port
        time.sleep(0.1)
    err = proc.stderr.read() if proc.poll() is not None else "(still running)"
    raise AssertionError(f"the server did not bind udp port {port}: exit status {proc.poll()}, stderr {err}")


def test_host_install_serves_a_bundle(host_venv, digits_bundle, tmp_path):
    """The installed server gets NAIR_SLICE frames over UDP (the TFLite Micro head's outputs of
    held-out inputs, sliced as the device does) and predicts what the Python reference pipeline does."""
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.nair.devicesim import slice_frames
    from tinysplit.methods.nair.reference import labels_at_budgets
    from tinysplit.methods.nair.slices import plan_for
    from tinysplit.reference import device_outputs, heldout, quantized_inputs

    n = 8
    m = load_manifest(digits_bundle)
    x, _ = heldout(digits_bundle, m)
    feats = device_outputs(digits_bundle, m, quantized_inputs(m, x[:n]))
    plan = plan_for(m)
    budgets = [1, plan.units_total // 4, plan.units_total]
    want = labels_at_budgets(digits_bundle, budgets, features_q=feats)
    port = _free_udp_port()
    preds = tmp_path / "preds.jsonl"
    proc = host_venv.popen("serve", "--bundle", str(digits_bundle), "--listen", f"udp://127.0.0.1:{port}",
                           "--duration", "120", "--json", "--out", str(preds), "--insecure")
    try:
        _wait_until_bound(port, proc)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            for k, b in enumerate(budgets):  # one device per budget
                for i in range(n):
                    for frame in slice_frames(plan, feats[i], b, k + 1, int(m.bundle_id, 16), i):
                        dev.sendto(frame, ("127.0.0.1", port))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if preds.is_file() and len(preds.read_text().splitlines()) >= n * len(budgets):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["counters"]["predictions"] == n * len(budgets), stderr
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    got = {(r["device"], r["sample"]): r for r in records}
    assert len(got) == n * len(budgets)
    for k, b in enumerate(budgets):
        rs = [got[(k + 1, i)] for i in range(n)]
        assert all(r["complete"] and r["units_received"] == b for r in rs)
        assert [r["label"] for r in rs] == want[b].tolist(), b


def test_host_install_names_the_missing_extras(host_venv, digits_bundle):
    tfl = str(digits_bundle / "device" / "head.tflite")
    assert exits_6_naming(host_venv.run("firmware", "--bundle", str(digits_bundle), "--board", BOARD,
                                        "--out", "fw"), "firmware")
    assert exits_6_naming(host_venv.run("firmware", "--tflite", tfl, "--board", BOARD, "--out", "fw"), "firmware")
    assert exits_6_naming(host_venv.run("hil", "--tflite", tfl, "--board", BOARD, "--samples", "1"), "firmware")
    assert exits_6_naming(host_venv.run("export", "--example", "digits", "--out", "bundle"), "export")
    assert not (host_venv.work / "fw").exists() and not (host_venv.work / "bundle").exists()


# --- tinysplit[firmware] --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def firmware_venv(tinysplit_wheel, tmp_path_factory):
    yield from venv_fixture(tmp_path_factory, "firmware", f"{tinysplit_wheel}[firmware]")


def test_firmware_install_is_light_and_every_help_works(firmware_venv):
    check_installed_copy(firmware_venv)
    assert firmware_venv.importable("torch", "tensorflow", "onnxruntime", "jinja2", "tflite_micro", "serial") == \
        ["jinja2", "tflite_micro", "serial"]
    check_every_help(firmware_venv)


@pytest.mark.emulator
def test_firmware_install_checks_a_tflite_in_qemu(firmware_venv, digits_bundle):
    r = firmware_venv.run("hil", "--tflite", str(digits_bundle / "device" / "head.tflite"), "--board", BOARD,
                          "--samples", "5", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["samples"] == 5 and rep["inputs"] == "random int8 (seed 0)"
    assert rep["identical_fraction"] == 1.0 and rep["values_compared"] == 5 * 512
    assert rep["tflm_arena_bytes"] > rep["arena_bytes"] > 0


def test_firmware_install_generates_and_builds_a_tflite(firmware_venv, digits_bundle):
    r = firmware_venv.run("firmware", "--tflite", str(digits_bundle / "device" / "head.tflite"), "--board", BOARD,
                          "--out", "fw")
    assert r.returncode == 0, r.stderr
    r = firmware_venv.run("build", "fw")
    assert r.returncode == 0, r.stderr
    assert (firmware_venv.work / "fw" / "build" / "firmware.elf").is_file()


def test_firmware_install_names_the_missing_extras(firmware_venv, digits_bundle):
    r = firmware_venv.run("serve", "--bundle", str(digits_bundle), "--listen", "udp://127.0.0.1:0", "--duration", "5", "--insecure")
    assert exits_6_naming(r, "host"), r.stderr
    assert exits_6_naming(firmware_venv.run("export", "--example", "digits", "--out", "bundle"), "export")


# --- tinysplit[export] ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_venv(tinysplit_wheel, tmp_path_factory):
    # torch pinned first, as ./setup.sh does: the CPU build, not a multi-GB CUDA resolve
    yield from venv_fixture(tmp_path_factory, "export", "torch==2.13.0", f"{tinysplit_wheel}[export]", remove=True)


def test_export_install_exports_an_example(export_venv):
    check_installed_copy(export_venv)
    assert export_venv.importable("torch", "tensorflow", "onnx2tf", "jinja2", "tflite_micro") == \
        ["torch", "tensorflow", "onnx2tf", "jinja2", "tflite_micro"]
    check_every_help(export_venv)
    r = export_venv.run("export", "--example", "digits-classifier", "--epochs", "2", "--out", "bundle", "--json",
                        "-q", timeout=600)
    assert r.returncode == 0, r.stderr
    assert (export_venv.work / "bundle" / "manifest.json").is_file()
