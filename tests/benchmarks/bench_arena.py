"""Benchmark: the generated code's arena per model, planner by planner, against TFLite Micro's; and
instructions per inference in QEMU with streamed inverted-residual blocks on and off.

    python tests/benchmarks/bench_arena.py [--bundles DIR] [--hil] [--board qemu-mps2-an386] [--samples 3]

Exports the digits head, the digits classifier and the MobileNetV2-style head (or reuses bundles
under --bundles) and prints, side by side, the arena of: the previous planner (largest-first greedy
placement, layer at a time), the new planner (placement search, layer at a time), the new planner
with streamed blocks (the generator's default), and TFLite Micro's recorded arena, with each one's
ratio to TFLite Micro's. --hil also builds each model for --board both ways and runs it in QEMU
(``tinysplit hil``'s check: exact instruction counts, every output compared with TFLite Micro).
Measured figures only. Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_codegen import MODELS, export  # noqa: E402


def arenas(tfl: bytes) -> dict[str, int]:
    from tinysplit.exporter.codegen.lower import lower_model
    from tinysplit.exporter.codegen.memplan import check_plan, plan_model
    from tinysplit.exporter.codegen.stream import stream_blocks
    from tinysplit.exporter.runtimes import TflmRunner
    from tinysplit.exporter.tflite_model import parse_tflite

    lowered = lower_model(parse_tflite(tfl))
    streamed, blocks = stream_blocks(lowered)
    plans = {"previous": plan_model(lowered, search=False), "search": plan_model(lowered),
             "streamed": plan_model(streamed)}
    check_plan(lowered, plans["previous"])
    check_plan(lowered, plans["search"])
    check_plan(streamed, plans["streamed"])
    out = {k: p.arena_bytes for k, p in plans.items()}
    out["blocks"] = len(blocks)
    out["tflm"] = TflmRunner(tfl, num_outputs=1).arena_bytes()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=Path, help="reuse/keep exported bundles here")
    ap.add_argument("--hil", action="store_true", help="also count instructions in QEMU, streamed on and off")
    ap.add_argument("--board", default="qemu-mps2-an386", help="board for --hil (default qemu-mps2-an386)")
    ap.add_argument("--samples", type=int, default=3, help="inputs per QEMU run (default 3)")
    ap.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows, hil = [], []
    with tempfile.TemporaryDirectory(prefix="bench-arena-") as tmp:
        root = args.bundles or Path(tmp) / "bundles"
        root.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            print(f"[{name}] exporting / loading", file=sys.stderr, flush=True)
            bundle = export(name, root)
            piece = MODELS[name][1]
            tfl = (bundle / "device" / f"{piece}.tflite").read_bytes()
            rows.append((name, arenas(tfl)))
            if args.hil:
                from tinysplit.firmware.hilcheck import hil_check
                from tinysplit.firmware.source import bundle_source

                for stream in (False, True):
                    print(f"[{name}] QEMU {args.board}, streamed blocks {'on' if stream else 'off'}",
                          file=sys.stderr, flush=True)
                    r = hil_check(bundle_source(bundle, args.samples), args.board, stream=stream)
                    hil.append((name, stream, r))
    hdr = (f"{'model':18s} {'blocks':>6s} {'previous B':>10s} {'x TFLM':>6s} {'search B':>10s} {'x TFLM':>6s} "
           f"{'streamed B':>10s} {'x TFLM':>6s} {'TFLM B':>9s}")
    print("arena: previous = largest-first placement, layer at a time; search = placement search, layer at a "
          "time; streamed = placement search + streamed inverted-residual blocks (the default)")
    print(hdr)
    print("-" * len(hdr))
    for name, a in rows:
        t = a["tflm"]
        print(f"{name:18s} {a['blocks']:6d} {a['previous']:10d} {a['previous'] / t:6.3f} {a['search']:10d} "
              f"{a['search'] / t:6.3f} {a['streamed']:10d} {a['streamed'] / t:6.3f} {t:9d}")
    if hil:
        print()
        hdr = (f"{'model':18s} {'streamed':>8s} {'board':>16s} {'identical':>9s} {'insn/inference':>15s} "
               f"{'arena B':>8s} {'flash B':>8s} {'RAM B':>8s}")
        print(hdr)
        print("-" * len(hdr))
        for name, stream, r in hil:
            print(f"{name:18s} {'on' if stream else 'off':>8s} {r.board:>16s} {r.identical_fraction:9.4f} "
                  f"{r.instructions_per_inference:15,d} {r.arena_bytes:8d} {r.flash_bytes:8d} {r.ram_bytes:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
