"""Benchmark: the host build of the generated C vs the TFLite Micro runtime (time and arena ratios,
bench_codegen.py), then the generated C on every emulated board vs TFLite Micro, in one run.

    python tests/benchmarks/bench_hil.py [--samples 100] [--skip-host] [--boards a,b] [--opt=-O2] [--kernel-opt=-Os]
        [--kernels=auto,portable]

Exports the digits head and the MobileNetV2-style head, then per board: identical fraction over
N held-out inputs (streamed over the emulated UART), exact instructions per inference (QEMU
-icount + the board's timer), flash and RAM of the firmware, our arena vs TFLite Micro's measured
arena. A model that does not fit a board is reported with the bytes needed and available.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from tinysplit.boards import list_boards
from tinysplit.errors import InputError
from tinysplit.firmware.hilcheck import run_hil_check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--skip-host", action="store_true", help="skip the host-build comparison (bench_codegen)")
    ap.add_argument("--boards", default="", help="comma-separated board names (default: every emulated board)")
    ap.add_argument("--opt", default="", help="the firmware's optimization flag instead of the default (e.g. -O2)")
    ap.add_argument("--kernels", default="auto",
                    help="comma-separated kernel sets to run side by side on each board (auto, portable, dsp, mve; "
                         "a set the board cannot run is reported and skipped)")
    ap.add_argument("--kernel-opt", default="", help="the kernel runtime's optimization flag instead of the "
                    "default (e.g. -Os: the whole firmware at one level)")
    args = ap.parse_args()
    from tinysplit.firmware import project

    if args.opt:
        project.COMPILE_FLAGS = (args.opt, *(f for f in project.COMPILE_FLAGS if not f.startswith("-O")))
    from tinysplit.firmware import kernelsets

    if args.kernel_opt:  # every kernel set at that level
        for name, ks in list(kernelsets.KERNEL_SETS.items()):
            kernelsets.KERNEL_SETS[name] = dataclasses.replace(
                ks, flags=(args.kernel_opt, *(f for f in ks.flags if not f.startswith("-O"))))
    print(f"firmware {project.COMPILE_FLAGS[0]}, kernel runtime: "
          + "; ".join(f"{n} {' '.join(k.flags)}" for n, k in kernelsets.KERNEL_SETS.items()))
    if not args.skip_host:
        import importlib.util

        path = Path(__file__).with_name("bench_codegen.py")
        mod_spec = importlib.util.spec_from_file_location("bench_codegen", path)
        bench_codegen = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(bench_codegen)
        bench_codegen.main([])
        print()
    from tinysplit.examples.digits import digits_spec
    from tinysplit.examples.mobilenet import mobilenet_spec
    from tinysplit.exporter import export_bundle

    with tempfile.TemporaryDirectory() as tmp:
        bundles = {"digits head": export_bundle(digits_spec("digits")[0], Path(tmp) / "digits").bundle_dir,
                   "mobilenet head": export_bundle(mobilenet_spec()[0], Path(tmp) / "mobilenet").bundle_dir}
        print(f"{'model':15} {'board':20} {'kernels':8} {'inputs':>6} {'identical':>9} {'maxLSB':>6} {'instr/inference':>15} "
              f"{'flash B':>8} {'RAM B':>8} {'arena B':>8} {'TFLM arena':>10} {'ratio':>5} {'wall s':>6}")
        for model, bundle in bundles.items():
            boards = args.boards.split(",") if args.boards else [b.name for b in list_boards(emulated_only=True)]
            for board, kernels in [(b, k) for b in boards for k in args.kernels.split(",")]:
                t0 = time.perf_counter()
                try:
                    r = run_hil_check(bundle, board, args.samples, kernels=kernels)
                except InputError as e:
                    print(f"{model:15} {board:20} {kernels:8} not run: {e}")
                    continue
                print(f"{model:15} {board:20} {kernels:8} {r.samples:>6} {r.identical_fraction:>9.4f} {r.max_lsb_diff:>6} "
                      f"{r.instructions_per_inference:>15,} {r.flash_bytes:>8,} {r.ram_bytes:>8,} "
                      f"{r.arena_bytes:>8,} {r.tflm_arena_bytes:>10,} {r.arena_bytes / r.tflm_arena_bytes:>5.2f} "
                      f"{time.perf_counter() - t0:>6.1f}")


if __name__ == "__main__":
    main()
