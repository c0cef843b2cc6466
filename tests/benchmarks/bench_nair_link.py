"""Device -> host throughput of the nair app in QEMU over the UART and over UDP, and its size.

    python tests/benchmarks/bench_nair_link.py [--samples 200] [--boards qemu-mps2-an386,...]

A fake device model with a large output (4x4x256 int8, 16 units of 256 B, 3 units per frame: six
798-byte NAIR_SLICE frames per sample at the full budget) and a 4-byte input, so the device's
sending, not the host's INPUT frames, limits the rate. Frames/s and bytes/s are taken between the
first and the last slice frame the host received; bytes are wire-frame bytes (before COBS).
Also prints flash/RAM of the nair app and of the hil app with the same model (the app's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_support import write_fake_model  # noqa: E402
from tinysplit.boards import get_board  # noqa: E402
from tinysplit.firmware.build import build_project  # noqa: E402
from tinysplit.firmware.devicelink import DeviceLink  # noqa: E402
from tinysplit.firmware.apps.nair import NairAppConfig  # noqa: E402
from tinysplit.firmware.project import render_project  # noqa: E402

H, W, C, U, IN = 4, 4, 256, 16, 4


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(board, elf, cfg, samples: int) -> dict:
    async with DeviceLink(board, elf, cfg, timeout=60) as link:
        await link.attach(serve=True)
        await link.control([(1, 16)])
        x = np.arange(IN, dtype=np.int8)
        t0 = time.perf_counter()
        for seq in range(1, samples + 1):
            await link.send_input(seq, x)
        await link.until(lambda: all(s in link.samples and len(link.samples[s].parts) == 6
                                     for s in (samples,)), "the last sample", 120)
        await link.until(lambda: link.counters.data_frames == 6 * samples, "every slice", 30)
        wall = time.perf_counter() - t0
        stats = await link.stats()
        await link.exit(0)
    t = link.throughput()
    return {"samples": samples, "wall_s": round(wall, 3), **t, "device_drops": stats["drops"],
            "samples_per_s": round(samples / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--boards", default="qemu-mps2-an386,qemu-mps3-an547,qemu-lm3s6965evb,"
                                        "qemu-netduinoplus2,qemu-riscv32-virt")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tinysplit-bench-nair-"))
    model = write_fake_model(root / "model", in_bytes=IN, out_bytes=H * W * C, arena_bytes=IN + H * W * C)
    out = []
    for name in a.boards.split(","):
        board = get_board(name)
        hil = build_project(render_project(board, model, root / f"{name}-hil", app="hil").dir)
        for transport in ("uart", "udp"):
            if transport not in board.transports or (transport == "udp" and board.nic.kind != "lan9118"):
                continue
            cfg = NairAppConfig(0xB2239BA0, 1, H, W, C, U, 16, transport, udp_port() if transport == "udp" else 5600)
            b = build_project(render_project(board, model, root / f"{name}-{transport}", app="nair", app_config=cfg).dir)
            r = asyncio.run(measure(board, b.elf, cfg, a.samples))
            row = {"board": name, "transport": transport, "flash_bytes": b.flash_bytes, "ram_bytes": b.ram_bytes,
                   "stack_bytes": b.stack_bytes, "hil_flash_bytes": hil.flash_bytes, "hil_ram_bytes": hil.ram_bytes,
                   **r}
            print(json.dumps(row), flush=True)
            out.append(row)


if __name__ == "__main__":
    main()
