"""SIGTERM to tinysplit stops its children (emulators, build tools, with what they started) and removes
its temporary folders: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli

EXE = Path(sys.executable).parent / "tinysplit"


def processes_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            found.append(int(d.name))
    return found


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def ours(tmp: Path) -> list[Path]:
    """tinysplit's temporary files and folders in ``tmp`` (libraries it loads keep files of their own there)."""
    return [p for p in tmp.iterdir() if p.name.startswith("tinysplit-")]


def kill_leftovers(marker: str) -> None:
    for pid in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_SCRIPT = """
import subprocess, sys, tempfile, shutil, time
from tinysplit import children, cli
cli._install_terminate_handlers()
work = tempfile.mkdtemp(prefix="tinysplit-term-")
try:
    # a child that starts a grandchild of its own: the whole group must go
    children.spawn(["bash", "-c", "sleep 300 & sleep 301; wait"])
    print(work, flush=True)
    time.sleep(60)
except BaseException as e:
    print(type(e).__name__, flush=True)
    raise
finally:
    shutil.rmtree(work)
"""


def test_sigterm_kills_the_child_group_and_cleans_up(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        work = proc.stdout.readline().strip()
        assert work.startswith(str(tmp_path)), proc.stderr.read()
        sleeps = wait_for(lambda: [p for p in processes_with("sleep 30") if _parent_chain_has(p, proc.pid)], 10,
                          "the child and grandchild")
        assert len(sleeps) >= 2
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert "Terminated" in out, err
        for pid in sleeps:
            wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 5, f"process {pid} to die")
        assert not Path(work).exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _parent_chain_has(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


@pytest.fixture(scope="module")
def hil_project(digits_bundle, tmp_path_factory) -> Path:
    """The digits head with the `hil` app for the MPS2-AN386 (it waits for inputs on its UART forever)."""
    proj = tmp_path_factory.mktemp("term") / "proj"
    r = run_cli("firmware", "--bundle", str(digits_bundle), "--board", "qemu-mps2-an386", "--app", "hil",
                "--out", str(proj))
    assert r.returncode == 0, r.stderr
    r = run_cli("build", str(proj))
    assert r.returncode == 0, r.stderr
    return proj


@pytest.mark.emulator
@pytest.mark.slow
def test_sigterm_to_run_stops_qemu(hil_project, tmp_path):
    elf = str(hil_project / "build" / "firmware.elf")
    proc = subprocess.Popen([str(EXE), "run", str(hil_project), "--timeout", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        qemu = wait_for(lambda: processes_with(elf), 30, "QEMU")
        proc.stdout.read1(100)  # the firmware's banner: QEMU runs the guest
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert b"terminated (SIGTERM)" in err
        assert processes_with(elf) == [], f"QEMU {qemu} outlived tinysplit run"
        assert ours(tmp_path) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_leftovers(elf)


@pytest.mark.emulator
@pytest.mark.slow
def test_sigterm_to_hil_e2e_stops_qemu_and_removes_its_folder(digits_bundle, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([str(EXE), "hil", "--e2e", "--bundle", str(digits_bundle), "--board", "qemu-mps2-an386",
                             "--samples", "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(tmp)})
    marker = str(tmp)
    try:
        qemu = wait_for(lambda: processes_with(f"qemu-system-arm -M mps2-an386 -kernel {marker}"), 120, "QEMU")
        assert [p.name[:14] for p in ours(tmp)] == ["tinysplit-e2e-"], "the run's temporary folder"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert processes_with(marker) == [], f"QEMU {qemu} outlived tinysplit hil --e2e"
        assert ours(tmp) == [], "temporary folders left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_leftovers(marker)
