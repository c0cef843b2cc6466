"""Child processes (emulators, build tools) that die with tinysplit.

Each child starts in its own process group (a new session), so that stopping it stops what it
started too (make's compilers, an emulator's helpers) and a terminal's Ctrl-C reaches tinysplit
alone, which then stops its children in order. Every live child is registered here: the CLI's
SIGTERM handler and an exit hook stop them all (``stop_all``), and the code that started one stops it
on normal errors (``stop`` in a ``finally``).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from typing import Any

_live: set[subprocess.Popen] = set()
_lock = threading.Lock()


def spawn(cmd: list[str], **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, ...)`` in a new process group, registered until ``stop``/``reap``."""
    proc = subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)
    with _lock:
        _live.add(proc)
    return proc


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group; only while the child is not reaped (its pid, and so its
    group id, cannot have been reused by then)."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """Kill ``proc``'s process group unless it has exited, reap it, forget it; its exit status."""
    if proc.poll() is None:
        _kill_group(proc)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    reap(proc)
    return code


def reap(proc: subprocess.Popen) -> None:
    """Forget a child that has exited (``stop`` does this itself)."""
    with _lock:
        _live.discard(proc)


def stop_all() -> None:
    """Kill every registered child's process group (signal handlers, exit)."""
    with _lock:
        procs = list(_live)
    for p in procs:
        _kill_group(p)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        reap(p)


def live() -> list[subprocess.Popen]:
    with _lock:
        return list(_live)


def run(cmd: list[str], timeout: float, **popen_kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=...)`` with the child in its own
    process group: on a timeout or any exception (SIGTERM, Ctrl-C) the whole group is killed."""
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        stop(proc)
        raise
    reap(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


atexit.register(stop_all)
