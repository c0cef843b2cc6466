"""Serve an emulator's stdin/stdout as a TCP serial port, the way QEMU serves a socket chardev.

    python -m tinysplit.firmware.stdio_relay --port P -- qemu-system-xtensa ... -serial none

Why: QEMU's Xtensa ``sim`` machine connects its semihosting console to a chardev through a 16-byte
input buffer that the vCPU thread (the guest's SIMCALL read) and the main loop (bytes arriving on
the socket) update without a common lock. Under load a byte is then lost or read twice (measured
here: 1 of 3 concurrent 360-inference HIL runs stalled on a lost byte; a CI run read an input byte
as a command). With no chardev (``-serial none``) the same SIMCALLs read and write QEMU's own stdin
and stdout, plain host file descriptors, with nothing shared. This relay gives that the interface
every other board has: it listens on 127.0.0.1:P, waits for one connection (QEMU's
``server=on,wait=on``: nothing the guest writes is lost), starts the emulator with pipes for
stdin/stdout, copies bytes both ways, and when the emulator exits closes the connection (after the
last byte) and exits with the emulator's status. The emulator's stderr passes through. It runs in
the emulator's process group, so stopping the group (``tinysplit.children``) stops both.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import threading


def _to_emulator(conn: socket.socket, proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    try:
        while True:
            data = conn.recv(4096)
            if not data:
                break
            proc.stdin.write(data)
            proc.stdin.flush()
    except OSError:
        pass
    try:
        proc.stdin.close()
    except OSError:
        pass


def _from_emulator(conn: socket.socket, proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stdio_relay", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="127.0.0.1 port to listen on")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the emulator's command line")
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("no emulator command after --")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", args.port))
    except OSError as e:
        # the words QEMU uses, which the caller looks for to retry on another port
        print(f"stdio_relay: could not bind 127.0.0.1:{args.port}: Address already in use" if e.errno == errno.EADDRINUSE
              else f"stdio_relay: could not bind 127.0.0.1:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    srv.listen(1)
    conn, _ = srv.accept()
    srv.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError as e:
        print(f"stdio_relay: could not start {cmd[0]}: {e.strerror}", file=sys.stderr)
        conn.close()
        return 1
    signal.signal(signal.SIGTERM, lambda *_: proc.kill())
    threading.Thread(target=_to_emulator, args=(conn, proc), daemon=True).start()
    out = threading.Thread(target=_from_emulator, args=(conn, proc), daemon=True)
    out.start()
    code = proc.wait()
    out.join(timeout=5)  # the guest's last bytes reach the socket before it closes
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
