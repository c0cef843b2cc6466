"""The host side of the HIL check on any serial URL (a Renode socket terminal, a board's port):
stream int8 inputs, read the outputs, compare with expected outputs; exit 0 when every value is
identical. Renode's Robot test (firmware_templates/renode/hil.robot.j2) runs it after it has seen
the TSHIL1 banner, so the client does not wait for one (``--banner`` makes it wait, for a board).

    python -m tinysplit.firmware.hilclient --url socket://127.0.0.1:3456 --inputs x.npy --expected y.npy
"""

from __future__ import annotations

import argparse
import struct
import sys

import numpy as np


def run(url: str, inputs: np.ndarray, expected: np.ndarray, timeout: float = 10.0, banner: bool = False) -> int:
    import serial

    port = serial.serial_for_url(url, timeout=timeout)
    identical = total = 0
    try:
        if banner:
            line = port.read_until(b"\n")
            if not line.startswith(b"TSHIL1"):
                print(f"expected a TSHIL1 banner, got {line!r}", file=sys.stderr)
                return 5
        out_bytes = expected[0].size
        for x, want in zip(inputs, expected):
            port.write(b"I" + x.astype(np.int8).tobytes())
            tag = port.read(1)
            if tag != b"O":
                print(f"expected 'O', got {tag!r}", file=sys.stderr)
                return 5
            got = np.frombuffer(port.read(out_bytes), dtype=np.int8)
            struct.unpack("<I", port.read(4))
            identical += int(np.sum(got == want.reshape(-1)))
            total += out_bytes
        port.write(b"Q")
    finally:
        port.close()
    print(f"{identical} of {total} output values identical to TFLite Micro ({100 * identical / max(total, 1):.2f}%)")
    return 0 if identical == total and total > 0 else 5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinysplit.firmware.hilclient", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--expected", required=True)
    p.add_argument("--banner", action="store_true", help="wait for the TSHIL1 banner first")
    a = p.parse_args(argv)
    x, y = np.load(a.inputs), np.load(a.expected)
    return run(a.url, x.reshape(len(x), -1), y.reshape(len(y), -1), banner=a.banner)


if __name__ == "__main__":
    sys.exit(main())
