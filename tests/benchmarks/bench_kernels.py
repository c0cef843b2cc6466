"""Benchmark: the kernel sets side by side, per model and emulated board, against an earlier generator.

    python tests/benchmarks/bench_kernels.py [--bundles DIR] [--baseline REV] [--samples 3]
                                             [--boards B,...] [--json OUT]

For the digits head and the MobileNetV2-style head (exported into --bundles, or reused from there:
DIR/digits, DIR/mobilenet), runs ``tinysplit hil`` on each emulated board with every kernel set the
board's core runs (portable everywhere; dsp on the Cortex-M4; mve on the Cortex-M55), and the same
boards with the generator of git revision --baseline (default: the commit before issue 16's kernel
work), checked out into a temporary folder and run from there. Prints, per model, board and set:
instructions per inference (exact QEMU counts), instructions per MAC (MACs from the lowered model),
the ratio to the baseline, arena and flash bytes, and whether every output value equals TFLite
Micro's. Figures are measured in this run only. Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"digits": ["--example", "digits"], "mobilenet": ["--example", "mobilenet"]}
BASELINE = "745ac02"  # main before the issue 16 kernel work (portable kernels as of issue 15)
PACKAGE_DIR = {"tinysplit": "tinysplit", "tinysplit/exporter": "exporter", "tinysplit/host_server": "host_server",
               "tinysplit/boards": "boards", "tinysplit/firmware_templates": "firmware_templates"}
RUNNER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from tinysplit.cli import main; sys.exit(main(sys.argv[1:]))"


def export(name: str, root: Path) -> Path:
    out = root / name
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "tinysplit", "export", *MODELS[name], "--out", str(out), "-q"],
                       check=True)
    return out


def model_macs(bundle: Path) -> int:
    from tinysplit.exporter.codegen.lower import lower_model
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.firmware.profile import call_macs
    from tinysplit.manifest import load_manifest

    m = load_manifest(bundle)
    lowered = lower_model(parse_tflite((bundle / m.device_models[0].file).read_bytes()))
    return sum(call_macs(c.opcode, c.params) for c in lowered.calls)


def baseline_tree(rev: str, work: Path) -> Path:
    """An importable ``tinysplit`` package of revision ``rev`` (its top-level folders mapped as setup.py maps them)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    src = work / "src"
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(src)
    pkg = work / "pkg"
    for dest, folder in PACKAGE_DIR.items():
        (pkg / dest).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src / folder, pkg / dest)
    return pkg


def hil(bundle: Path, board: str, samples: int, kernels: str | None, tree: Path | None) -> dict:
    args = ["hil", "--bundle", str(bundle), "--board", board, "--samples", str(samples), "--json"]
    if kernels:
        args += ["--kernels", kernels]
    cmd = [sys.executable, "-c", RUNNER, str(tree), *args] if tree else [sys.executable, "-m", "tinysplit", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if r.returncode not in (0, 5):
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=Path, default=None, help="where the bundles are (or are exported to)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision of the earlier generator (default {BASELINE})")
    ap.add_argument("--samples", type=int, default=3, help="held-out inputs per run (counts are exact)")
    ap.add_argument("--boards", default="qemu-lm3s6965evb,qemu-mps2-an386,qemu-mps3-an547,qemu-riscv32-virt")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    from tinysplit.boards import get_board
    from tinysplit.firmware.kernelsets import KERNEL_SETS, runs_on

    root = args.bundles or Path(tempfile.mkdtemp(prefix="bench-kernels-"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-kernels-base-") as tmp:
        tree = baseline_tree(args.baseline, Path(tmp))
        for name in MODELS:
            bundle = export(name, root)
            macs = model_macs(bundle)
            for board_name in args.boards.split(","):
                board = get_board(board_name)
                base = hil(bundle, board_name, args.samples, None, tree)
                runs = [("baseline", base)]
                for ks in KERNEL_SETS.values():
                    if runs_on(ks, board):
                        runs.append((ks.name, hil(bundle, board_name, args.samples, ks.name, None)))
                for label, r in runs:
                    row = {**r, "model": name, "board": board_name, "kernels": label, "macs": macs}
                    if "instructions_per_inference" in r:
                        row["insn_per_mac"] = r["instructions_per_inference"] / macs
                        if "instructions_per_inference" in base:
                            row["x_baseline"] = r["instructions_per_inference"] / base["instructions_per_inference"]
                    rows.append(row)
                    print(_line(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _line(r: dict) -> str:
    head = f"{r['model']:10} {r['board']:18} {r['kernels']:9}"
    if "error" in r:
        return f"{head} -  {r['error']}"
    x = f"{r['x_baseline']:.2f}x" if "x_baseline" in r else "-"
    return (f"{head} {r['instructions_per_inference']:>12,} insn  {r['insn_per_mac']:5.2f}/MAC  {x:>6}  "
            f"arena {r['arena_bytes']:>7,} B  flash {r['flash_bytes']:>7,} B  identical {r['identical_fraction']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
