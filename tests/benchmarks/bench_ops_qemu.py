"""Benchmark: instructions per inference of every per-op case in QEMU (for kernel work, issue 16).

    python tests/benchmarks/bench_ops_qemu.py [--board qemu-mps2-an386] [--inputs 1] [--seed 0]
                                               [--json OUT.json] [--work DIR]

Builds the per-op suite's firmware for the board (tests/opsuite_qemu.py: every case of
opcases.all_cases() in a few HIL images), runs each case on seeded random int8 inputs, checks the
outputs against TFLite Micro, and prints measured figures only: per case the instructions of its
invoke (the HIL counter, exact under QEMU -icount), the same less the empty invoke's count (call
overhead), the MACs of its conv / depthwise / fully connected calls (from the lowered params) and
instructions per MAC; then per case group (the case name without its number) the totals. Run it on
two branches and compare the tables side by side. Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codegen_support import tflm_outputs  # noqa: E402
from opcases import all_cases  # noqa: E402
from opsuite_qemu import build_suite, case_profile, run_suite  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default="qemu-mps2-an386", help="an emulated board (default %(default)s)")
    ap.add_argument("--inputs", type=int, default=1, help="random inputs per case (counts are averaged)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--work", type=Path, help="build here (default: a temporary directory)")
    a = ap.parse_args(argv)
    from tinysplit.boards import get_board
    from tinysplit.errors import TinysplitError

    try:
        board = get_board(a.board)
    except TinysplitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if board.emulator is None:
        print(f"error: board '{board.name}' has no emulator; choose an emulated board (tinysplit boards)",
              file=sys.stderr)
        return 2
    if a.inputs < 1:
        print("error: --inputs must be at least 1", file=sys.stderr)
        return 2
    cases = all_cases()
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp:
        work = a.work or Path(tmp)
        t0 = time.perf_counter()
        images = build_suite(board, [c.tflite for c in cases], work)
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(a.seed)
        inputs = {i: rng.integers(-128, 128, size=(a.inputs, int(np.prod(c.input_shape)))).astype(np.int8)
                  for i, c in enumerate(cases)}
        run = run_suite(images, inputs)
    base = min(run.baseline.values())
    rows, wrong = [], []
    for i, c in enumerate(cases):
        if not np.array_equal(run.outputs[i], tflm_outputs(c.tflite, inputs[i])):
            wrong.append(c.name)
        _calls, macs = case_profile(c.tflite)
        instr = float(np.mean(run.instructions[i]))
        rows.append({"case": c.name, "group": c.name.rsplit("_", 1)[0], "ops": list(c.ops), "instructions": instr,
                     "net": instr - base, "macs": macs})
    print(f"# {board.name}: {len(cases)} cases in {len(images)} images, built in {build_s:.1f} s, run in "
          f"{run.seconds:.1f} s; empty invoke {base} instructions (subtracted in 'net')")
    print(f"{'case':28} {'instructions':>12} {'net':>10} {'MACs':>8} {'instr/MAC':>9}  ops")
    for r in rows:
        per = f"{r['net'] / r['macs']:.2f}" if r["macs"] else "-"
        print(f"{r['case']:28} {r['instructions']:12.0f} {r['net']:10.0f} {r['macs']:8d} {per:>9}  "
              f"{'+'.join(r['ops'])}")
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    print(f"\n{'group':28} {'cases':>5} {'mean net/inference':>18} {'MACs':>8} {'instr/MAC':>9}")
    summary = {}
    for g, rs in groups.items():
        net, macs = sum(r["net"] for r in rs), sum(r["macs"] for r in rs)
        summary[g] = {"cases": len(rs), "mean_net": net / len(rs), "macs": macs,
                      "instructions_per_mac": net / macs if macs else None}
        per = f"{net / macs:.2f}" if macs else "-"
        print(f"{g:28} {len(rs):5d} {net / len(rs):18.0f} {macs:8d} {per:>9}")
    if wrong:
        print(f"\nWARNING: {len(wrong)} cases differ from TFLite Micro: {', '.join(wrong)}", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps({"board": board.name, "baseline": base, "build_seconds": build_s,
                                      "run_seconds": run.seconds, "cases": rows, "groups": summary,
                                      "differ": wrong}, indent=1))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
