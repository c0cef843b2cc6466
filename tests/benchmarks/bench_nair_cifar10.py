"""Benchmark: NAIR on CIFAR-10 with a MobileNetV2-style head that fits an MCU (int8 head + host tail).

    python tests/benchmarks/bench_nair_cifar10.py [--epochs 6] [--retune-epochs 6] [--retune-lr 1e-3] [--slice-samples 2]
        [--train-subset N] [--test-samples 2000] [--threads 2] [--out DIR]

Data: ../shared/data/cifar10-jpeg.npz (see its README; found next to the checkout, or --data).
Model: the head of tinysplit.examples.mobilenet (3x3 stem + four inverted residual blocks, two with
stride 2; 3x32x32 -> 8x8x32, i.e. 16 units of 2 channels) and a tail that starts with a plain 1x1
conv (so NAIR can permute its input channels). Trains the float model, then for each of the four
variants (original order without re-tuning, plain sum of slice losses, penalty only, full NAIR)
re-tunes a copy (Adam, cosine-annealed learning rate, the same crops and flips as training, and
--slice-samples slice counts per image drawn by weight: an unbiased estimate of the loss over all
16 slice counts at a fraction of the tail's cost; 0 sends every image through all 16), exports it to int8 (TFLite Micro head) and measures test accuracy at 1/8, 1/4,
1/2 and all units with the exported head, zero-filled units and the ONNX tail. Prints the table,
the head's int8 flash and arena (TFLite Micro's measured and tinysplit's generated C), and writes
DIR/nair_cifar10.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10 import DEFAULT_DATA, SEED, augment, load_split, split_model, train  # noqa: E402

from tinysplit.methods.nair.variants import VARIANTS  # noqa: E402

SPLIT_LAYER = "blocks.3.block.2.0"  # the last block's 1x1 linear projection (its BN is folded)
TAIL_FIRST_LAYER = "0.0"


def accuracy_at_fractions(head: nn.Module, tail: nn.Module, x: np.ndarray, y: np.ndarray,
                          fractions: tuple[int, ...]) -> list[float]:
    """Float test accuracy for each f in ``fractions``, keeping the first 1/f of the head's output
    channels and zero-filling the rest (the head runs once per batch)."""
    hits = np.zeros(len(fractions))
    with torch.no_grad():
        for i in range(0, len(x), 500):
            features = head(torch.from_numpy(x[i:i + 500]))
            for k, f in enumerate(fractions):
                kept = features.clone()
                kept[:, features.shape[1] // f:] = 0
                hits[k] += int((tail(kept).argmax(1).numpy() == y[i:i + 500]).sum())
    return [float(h / len(x)) for h in hits]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--retune-epochs", type=float, default=6)
    ap.add_argument("--retune-lr", type=float, default=1e-3)
    ap.add_argument("--slice-samples", type=int, default=2,
                    help="slice counts per image in re-tuning (0: all of them, the exact loss)")
    ap.add_argument("--freeze-bn-stats", action="store_true",
                    help="BatchNorm layers keep their trained statistics while re-tuning (default: batch statistics)")
    ap.add_argument("--train-subset", type=int, default=None, help="train on the first N (shuffled) images")
    ap.add_argument("--test-samples", type=int, default=2000, help="test images for the int8 evaluation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--variants", default="original,sum,penalty,nair", help="comma-separated subset to evaluate")
    ap.add_argument("--load-model", type=Path, help="skip training: the float model saved by an earlier run "
                                                    "(DIR/float_model.pt; it is always saved)")
    ap.add_argument("--out", type=Path, default=Path("nair-cifar10"))
    args = ap.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(","))
    if not set(variants) <= set(VARIANTS):
        raise SystemExit(f"--variants: choose from {', '.join(VARIANTS)} (got {args.variants})")
    if args.load_model and not args.load_model.is_file():
        raise SystemExit(f"--load-model: no file {args.load_model}")
    if not args.data.is_file():
        raise SystemExit(f"no CIFAR-10 archive at {args.data}; pass --data (see the shared data README)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:7.0f} s] {m}", flush=True)

    from tinysplit.exporter import DevicePiece, ExportSpec, TailPiece, export_bundle
    from tinysplit.firmware.generate import generate_sources
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.nair.order import RetuneConfig, prepare_variant
    from tinysplit.methods.nair.reference import labels_at_budgets

    log("loading CIFAR-10")
    x_tr, y_tr = load_split(args.data, "train", args.train_subset, SEED)
    x_te, y_te = load_split(args.data, "test", args.test_samples, SEED + 1)
    model = split_model()
    if args.load_model:
        log(f"loading the float model from {args.load_model}")
        model.load_state_dict(torch.load(args.load_model))
        model.eval()
    else:
        log(f"training the float model: {len(x_tr)} images, {args.epochs} epochs")
        train(model, x_tr, y_tr, args.epochs, args.lr, log)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.out / ".float_model.pt.tmp")
        (args.out / ".float_model.pt.tmp").replace(args.out / "float_model.pt")
    base = accuracy_at_fractions(model.head, model.tail, x_te, y_te, (1,))[0]
    log(f"float accuracy (test subset): {100 * base:.2f}%")

    fractions = (8, 4, 2, 1)
    results, sizes = {}, {}
    (args.out / "bundles").mkdir(parents=True, exist_ok=True)
    for v in variants:
        head, tail = copy.deepcopy(model.head), copy.deepcopy(model.tail)
        log(f"{v}: preparing")
        cfg = RetuneConfig(epochs=max(1, int(math.ceil(args.retune_epochs))), lr=args.retune_lr, batch_size=64,
                           seed=SEED, slice_samples=args.slice_samples or None, cosine=True,
                           freeze_bn_stats=args.freeze_bn_stats)
        n_rt = int(len(x_tr) * min(1.0, args.retune_epochs / cfg.epochs))  # a fraction of an epoch
        order, info = prepare_variant(head, tail, SPLIT_LAYER, TAIL_FIRST_LAYER, v, x_tr[:n_rt], y_tr[:n_rt], 2, cfg,
                                      log=log, augment=augment)
        head, tail = (m.to(memory_format=torch.contiguous_format) for m in (head, tail))
        float_accs = accuracy_at_fractions(head, tail, x_te, y_te, fractions)
        log(f"{v}: float accuracy at 1/8, 1/4, 1/2, all units: " + " / ".join(f"{100 * a:.2f}" for a in float_accs))
        spec = ExportSpec(f"cifar_{v}", [DevicePiece("head", head)], x_tr[:300], x_te,
                          heldout_labels=y_te, tails=[TailPiece("tail", tail, ("head",))], method="nair",
                          method_data=order.method_data())
        log(f"{v}: exporting int8")
        bundle = export_bundle(spec, args.out / "bundles" / v, force=True).bundle_dir
        m = load_manifest(bundle)
        units = m.method_data["nair"]["units_total"]
        budgets = [units // f for f in fractions]
        log(f"{v}: int8 accuracy at {budgets} units (TFLite Micro head, zero-filled units, ONNX tail)")
        labels = labels_at_budgets(bundle, budgets)
        results[v] = {f"1/{f}" if f > 1 else "all": float((labels[b] == y_te).mean()) for f, b in zip(fractions, budgets)}
        results[v]["float"] = dict(zip(("1/8", "1/4", "1/2", "all"), float_accs))
        results[v]["retune"] = info
        if not sizes:
            src = generate_sources(bundle, m, args.out / "c")
            sizes = {"tflite_flash_bytes": m.device_models[0].flash_bytes,
                     "tflm_arena_bytes": m.device_models[0].arena_bytes,
                     "generated_c_arena_bytes": src.arena_bytes, "generated_c_const_bytes": src.const_bytes}
    report = {"float_accuracy": base, "float_model": str(args.load_model or args.out / "float_model.pt"), "train_images": len(x_tr), "test_images": len(x_te), "epochs": args.epochs,
              "retune_epochs": args.retune_epochs, "retune_lr": args.retune_lr, "slice_samples": args.slice_samples,
              "freeze_bn_stats": args.freeze_bn_stats, "head": sizes, "variants": results,
              "seconds": round(time.time() - t0)}
    (args.out / "nair_cifar10.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nCIFAR-10, MobileNetV2-style head 3x32x32 -> 8x8x32 (16 units of 2 channels); float model "
          f"{100 * base:.2f}% on {len(x_te)} test images; head int8: .tflite {sizes['tflite_flash_bytes']:,} B, "
          f"TFLite Micro arena {sizes['tflm_arena_bytes']:,} B, generated C arena {sizes['generated_c_arena_bytes']:,} B, "
          f"weights+params {sizes['generated_c_const_bytes']:,} B")
    print(f"{'variant':10} {'1/8':>8} {'1/4':>8} {'1/2':>8} {'all':>8}   (int8 head + host tail, test accuracy %)")
    for v in variants:
        r = results[v]
        print(f"{v:10} " + " ".join(f"{100 * r[k]:>8.2f}" for k in ("1/8", "1/4", "1/2", "all")))
    print(f"total {report['seconds']} s")


if __name__ == "__main__":
    main()
