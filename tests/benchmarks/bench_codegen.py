"""Benchmark: tinysplit's generated C (host build) against the TFLite Micro runtime, same inputs.

    python tests/benchmarks/bench_codegen.py [--samples 100] [--cflags "-O2"] [--bundles DIR]

Exports the digits head, the digits classifier and the MobileNetV2-style head (or reuses bundles
under --bundles), checks that both runtimes agree bit for bit, and prints measured figures only:
time per inference (ours vs TFLite Micro's invoke(), interleaved rounds) and arena bytes (ours vs
TFLite Micro's recorded arena). Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codegen_support import build_harness  # noqa: E402
import codegen_support  # noqa: E402

MODELS = {
    "digits_head": ("digits", "head"),
    "digits_classifier": ("digits-classifier", "classifier"),
    "mobilenet_head": ("mobilenet", "head"),
}


def export(name: str, root: Path) -> Path:
    from tinysplit.exporter import export_bundle

    variant, _ = MODELS[name]
    out = root / name
    if (out / "manifest.json").is_file():
        return out
    if variant == "mobilenet":
        from tinysplit.examples.mobilenet import mobilenet_spec

        spec, _ = mobilenet_spec()
    else:
        from tinysplit.examples.digits import digits_spec

        spec, _ = digits_spec(variant)
    export_bundle(spec, out, force=True)
    return out


def load(bundle: Path, piece: str, samples: int) -> tuple[bytes, np.ndarray]:
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.quant import nchw_to_nhwc, quantize

    tfl = (bundle / "device" / f"{piece}.tflite").read_bytes()
    inp = parse_tflite(tfl).input_tensors()[0]
    x = nchw_to_nhwc(np.load(bundle / "data" / "heldout.npz")["x"])[:samples]
    return tfl, quantize(x, inp.scales[0], inp.zero_points[0]).reshape(len(x), -1)


def tflm_time(tfl: bytes, xq: np.ndarray, rounds: int) -> tuple[float, np.ndarray, int]:
    """Best-of-rounds mean time of TFLite Micro's invoke() (inputs set outside the timed region)."""
    from tinysplit.exporter.runtimes import TflmRunner
    from tinysplit.exporter.tflite_model import parse_tflite

    shape = parse_tflite(tfl).input_tensors()[0].shape
    rt = TflmRunner(tfl, num_outputs=1)
    it = rt._it  # the runtime.Interpreter
    outs, best = [], float("inf")
    for r in range(rounds):
        total = 0.0
        for x in xq:
            it.set_input(x.reshape(shape), 0)
            t0 = time.perf_counter()
            it.invoke()
            total += time.perf_counter() - t0
            if r == 0:
                outs.append(it.get_output(0).reshape(-1).copy())
        best = min(best, total / len(xq))
    return best * 1e9, np.stack(outs), rt.arena_bytes()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds; the best is reported")
    ap.add_argument("--reps", type=int, default=10, help="invokes per input per round (ours)")
    ap.add_argument("--cflags", action="append",
                    help="host C flags (repeatable; default: -O2 and -O3 builds, both -std=c99 -Wall -Wextra -Werror)")
    ap.add_argument("--bundles", type=Path, help="reuse/keep exported bundles here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warn = "-std=c99 -Wall -Wextra -Werror"
    flag_sets = args.cflags or [f"{warn} -O2", f"{warn} -O3"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-codegen-") as tmp:
        root = args.bundles or Path(tmp) / "bundles"
        root.mkdir(parents=True, exist_ok=True)
        for name, (_, piece) in MODELS.items():
            print(f"[{name}] exporting / loading", file=sys.stderr, flush=True)
            tfl, xq = load(export(name, root), piece, args.samples)
            _, want, tflm_arena = tflm_time(tfl, xq, 1)
            for k, flags in enumerate(flag_sets):
                codegen_support.HOST_CFLAGS = tuple(shlex.split(flags))
                h = build_harness([tfl], Path(tmp) / f"c_{name}_{k}", ["m"])
                ours, tflm, got = [], [], None
                for _ in range(args.rounds):  # interleaved, so both runtimes see the same machine load
                    got, ns = h.run(0, xq, reps=args.reps)
                    ours.append(ns)
                    tflm.append(tflm_time(tfl, xq, 1)[0])
                identical = float((got == want).mean())
                ratio = float(np.median(np.asarray(ours) / np.asarray(tflm)))
                rows.append((name, flags.replace(warn, "").strip(), len(xq), identical, min(ours), min(tflm), ratio,
                             h.models[0].arena_bytes, tflm_arena, h.models[0].const_bytes))
    print(f"host: {platform.machine()} {platform.processor() or ''}; every build: {warn}; "
          "TFLite Micro: tflite-micro Python runtime (reference kernels), invoke() only; times: best of "
          f"{args.rounds} interleaved rounds; time x: median of the per-round ratios")
    hdr = (f"{'model':18s} {'build':>6s} {'inputs':>6s} {'identical':>9s} {'ours us':>9s} {'TFLM us':>9s} "
           f"{'time x':>7s} {'ours arena B':>12s} {'TFLM arena B':>12s} {'arena x':>7s} {'flash B':>8s}")
    print(hdr)
    print("-" * len(hdr))
    for name, flags, n, ident, ons, tns, ratio, oa, ta, cb in rows:
        print(f"{name:18s} {flags:>6s} {n:6d} {ident:9.4f} {ons / 1e3:9.1f} {tns / 1e3:9.1f} {ratio:7.3f} "
              f"{oa:12d} {ta:12d} {oa / ta:7.3f} {cb:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
