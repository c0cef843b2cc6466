"""Instructions of the device side of authenticated frames (ts_auth.c) in QEMU, and its size.

    python tests/benchmarks/bench_auth_qemu.py [--boards qemu-mps2-an386,qemu-riscv32-virt] [--repeat 5]

Renders the 'exit' app for each board (a fake model; nothing of the generator is changed), replaces
its main.c by a benchmark that seals a 1,048-byte plain frame (1,024-byte payload) into a 1,068-byte
version 2 frame and splits and verifies it again, under the board's instruction counter (SysTick
under QEMU -icount on Cortex-M, minstret on RISC-V), and prints the instructions of each step (the
median of --repeat runs in one boot; QEMU counts instructions, not cycles) and of a 44-byte frame
(empty payload), plus the flash and RAM of ts_auth.o. The counter's own cost is measured with an
empty start/stop pair and subtracted.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_support import write_fake_model  # noqa: E402
from tinysplit.boards import get_board  # noqa: E402
from tinysplit.firmware.build import build_project  # noqa: E402
from tinysplit.firmware.project import render_project  # noqa: E402
from tinysplit.firmware.qemu import run_elf  # noqa: E402

RUNTIME = Path(__file__).resolve().parents[2] / "firmware_templates" / "runtime"

MAIN = r"""
#include <string.h>
#include "board.h"
#include "ts_auth.h"

static const uint8_t key[TS_AUTH_KEY_SIZE] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static uint8_t frame[TS_AUTH_MAX_FRAME];
static uint8_t payload[TS_MAX_PAYLOAD];
static ts_hmac_sha256 work;

static void line(const char *what, uint32_t v)
{
    board_uart_puts(what);
    board_uart_putc(' ');
    board_uart_put_u32_dec(v);
    board_uart_putc('\n');
}

static void measure(size_t plen)
{
    ts_frame_header h = {TS_INPUT, 7u, 0x3B465AFAu, 41u, 0u, 1u};
    ts_auth_frame f;
    unsigned r, k;
    for (k = 0; k < REPEAT; k++) {
        size_t n = ts_frame_encode(&h, payload, plen, frame, sizeof frame);
        uint32_t seal_i, verify_i, empty_i;
        counter_start();
        empty_i = counter_instructions();
        counter_start();
        n = ts_auth_seal(frame, n, sizeof frame, key, TS_AUTH_HOST_TO_DEVICE, 0x11223344u, 0xA5A5A5A5u, 1u, &work);
        seal_i = counter_instructions();
        counter_start();
        r = ts_auth_split(frame, n, &f);
        if (r == TS_OK) {
            r = ts_auth_verify(&f, key, TS_AUTH_HOST_TO_DEVICE, 0x11223344u, 0xA5A5A5A5u, &work);
        }
        verify_i = counter_instructions();
        line("frame", (uint32_t)n);
        line("empty", empty_i);
        line("seal", seal_i - empty_i);
        line("split_verify", verify_i - empty_i);
        line("ok", r == TS_OK);
    }
}

int main(void)
{
    size_t i;
    board_uart_init();
    for (i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)i;
    }
    measure(TS_MAX_PAYLOAD);
    measure(0u);
    board_uart_puts("done\n");
    return 0;
}
"""


def median(xs: list[int]) -> int:
    return sorted(xs)[len(xs) // 2]


def bench(board_name: str, repeat: int, work: Path) -> dict:
    board = get_board(board_name)
    model = write_fake_model(work / "model", in_bytes=4, out_bytes=4)
    project = render_project(board, model, work / board_name, app="exit")
    src = project.dir / "src"
    (src / "main.c").write_text(f"#define REPEAT {repeat}u\n" + MAIN)
    for f in ("ts_auth.c", "ts_auth.h", "ts_wire.c", "ts_wire.h"):
        shutil.copyfile(RUNTIME / f, src / f)
    cmake = project.dir / "CMakeLists.txt"
    text = cmake.read_text()
    text = text.replace("set(TS_SOURCES\n", "set(TS_SOURCES\n  src/ts_auth.c\n  src/ts_wire.c\n", 1)
    specs = "".join(f"  {f}\n" for f in board.toolchain.specs)  # string.h, as for the apps with the runtime
    cmake.write_text(text.replace("  $<$<COMPILE_LANGUAGE:C>:-std=c99>", specs + "  $<$<COMPILE_LANGUAGE:C>:-std=c99>", 1))
    built = build_project(project.dir)
    result = run_elf(board, built.elf, timeout=120)
    out = result.uart.decode(errors="replace")
    assert result.exit_code == 0 and "done" in out, out
    rows = re.findall(r"^(\w+) (\d+)$", out, re.M)
    runs: list[dict[str, int]] = []
    for k, v in rows:
        if k == "frame":
            runs.append({})
        runs[-1][k] = int(v)
    assert all(r["ok"] == 1 for r in runs), runs
    by_len: dict[int, list[dict[str, int]]] = {}
    for r in runs:
        by_len.setdefault(r["frame"], []).append(r)
    cc = "arm-none-eabi" if board.family == "cortex_m" else "riscv64-unknown-elf"
    size = subprocess.run([f"{cc}-size", str(next((built.project / "build").rglob("ts_auth.c.obj")))],
                          capture_output=True, text=True).stdout.splitlines()[1].split()
    report = {"board": board_name, "ts_auth_text": int(size[0]), "ts_auth_data_bss": int(size[1]) + int(size[2]),
              "counter_overhead": median([r["empty"] for r in runs])}
    for n, rs in sorted(by_len.items()):
        report[f"seal_{n}B"] = median([r["seal"] for r in rs])
        report[f"split_verify_{n}B"] = median([r["split_verify"] for r in rs])
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boards", default="qemu-mps2-an386,qemu-riscv32-virt")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        for b in args.boards.split(","):
            print(json.dumps(bench(b, args.repeat, Path(d))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
