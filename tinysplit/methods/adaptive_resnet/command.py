"""``tinysplit adaptive-study``: train the digits Adaptive ResNet with each drop policy, the block-removal
study (float for every policy; int8 as deployed for the exported one), and each mask's instruction
count in QEMU with every label checked against the reference.

A ``COMMANDS`` table like the other methods'; this module never imports the CLI and its parser
imports nothing heavy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tinysplit.errors import InputError


def add_adaptive_study(sub: Any) -> None:
    p = sub.add_parser("adaptive-study", help="Adaptive ResNet: drop policies, block-removal study (float, int8), "
                                              "instructions per mask in QEMU",
                       description="Train the digits AdaptiveNet (4 skippable residual blocks) with each drop "
                                   "policy and measure the float accuracy with every skip mask; export the chosen "
                                   "policy's model as an adaptive_resnet bundle and measure its int8 accuracy with "
                                   "every mask (TFLite Micro on the head with those blocks removed, then the host "
                                   "tail); run the firmware in QEMU with every mask (labels checked against that "
                                   "reference; instructions per inference against the per-block costs). Writes "
                                   "DIR/adaptive_study.json and the bundle DIR/bundle.")
    p.add_argument("--example", choices=["digits"], required=True, help="the built-in digits example")
    p.add_argument("--out", required=True, metavar="DIR", help="results directory (created; files replaced)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per policy (default 20)")
    p.add_argument("--policies", default="none,stochastic_depth,block_drop",
                   help="drop policies to compare (default: all three)")
    p.add_argument("--deploy", default="block_drop", help="the policy whose model is exported (default block_drop)")
    p.add_argument("--board", default="qemu-mps2-an386",
                   help="board for the per-mask instruction counts (default qemu-mps2-an386, a Cortex-M4); 'none' "
                        "skips the firmware")
    p.add_argument("--hil-samples", type=int, default=4, help="samples per mask in QEMU (default 4)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _policies(text: str, deploy: str) -> list[str]:
    from tinysplit.methods.adaptive_resnet.train import DROP_POLICIES

    pols = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pols if p not in DROP_POLICIES]
    if not pols or bad:
        raise InputError(f"--policies must name drop policies from {', '.join(DROP_POLICIES)}, got '{text}'")
    if deploy not in DROP_POLICIES:
        raise InputError(f"--deploy must be one of {', '.join(DROP_POLICIES)}, got '{deploy}'")
    return list(dict.fromkeys(pols + [deploy]))


def run_adaptive_study(args: Any) -> int:
    from tinysplit.console import Progress, emit_json
    from tinysplit.files import write_atomic

    if args.epochs < 1 or args.hil_samples < 1:
        raise InputError(f"--epochs and --hil-samples must be >= 1, got {args.epochs} and {args.hil_samples}")
    policies = _policies(args.policies, args.deploy)
    if args.board != "none":
        from tinysplit.boards import get_board

        get_board(args.board)
    say = Progress(quiet=args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = study(out, policies, args.deploy, args.epochs, args.board, args.hil_samples, say)
    write_atomic(out / "adaptive_study.json", json.dumps(results, indent=2) + "\n")
    if args.json:
        emit_json(results)
    else:
        print(format_study(results))
    return 0 if results.get("ok", True) else 1


def study(out: Path, policies: list[str], deploy: str, epochs: int, board: str, hil_samples: int, say) -> dict:
    import time

    import numpy as np

    from tinysplit.methods.adaptive_resnet.example import export_digits_adaptive, train_digits_adaptive
    from tinysplit.methods.adaptive_resnet.reference import labels_for_masks
    from tinysplit.methods.adaptive_resnet.train import float_mask_accuracy, study_masks

    res: dict[str, Any] = {"example": "digits", "epochs": epochs, "policies": {}}
    deployed = None
    for pol in policies:
        say(f"training with {pol} ({epochs} epochs)")
        t0 = time.perf_counter()
        t = train_digits_adaptive(epochs, pol)
        masks = study_masks(t.model.blocks)
        acc = float_mask_accuracy(t.model, t.x_heldout, t.y_heldout, masks)
        res["blocks"] = t.model.blocks
        res["policies"][pol] = {"float": {str(m): a for m, a in acc.items()},
                                "mean_over_masks": float(np.mean(list(acc.values()))),
                                "train_s": round(time.perf_counter() - t0, 1)}
        if pol == deploy:
            deployed = t
    assert deployed is not None
    say(f"exporting the {deploy} model")
    ex = export_digits_adaptive(deployed, out / "bundle")
    masks = study_masks(deployed.model.blocks)
    say(f"int8 accuracy with each of {len(masks)} masks (TFLite Micro)")
    labels = labels_for_masks(ex.bundle_dir, masks)
    y = deployed.y_heldout
    res["deployed"] = {"policy": deploy, "int8": {str(m): float((labels[m] == y).mean()) for m in masks},
                       "report": {k: ex.report["int8"][k] for k in ("accuracy_float", "accuracy_int8")
                                  if k in ex.report["int8"]},
                       "skip_blocks": ex.report["device_models"]["head"].get("skip_blocks")}
    if board != "none":
        from tinysplit.firmware.apps.adaptive_resnet import run_e2e

        say(f"firmware in QEMU ({board}) with every mask, {hil_samples} samples each")
        r = run_e2e(ex.bundle_dir, board, hil_samples, "uart", masks)
        res["firmware"] = {"board": board, "ok": r["ok"], "flash_bytes": r["firmware"]["flash_bytes"],
                           "ram_bytes": r["firmware"]["ram_bytes"],
                           "masks": {str(k): {f: v[f] for f in ("instructions", "predicted_instructions",
                                                               "labels_equal_reference", "mask_used")}
                                     for k, v in r["masks"].items()}}
        res["ok"] = r["ok"]
    return res


def format_study(r: dict) -> str:
    blocks = r["blocks"]
    masks = sorted(int(m) for m in r["deployed"]["int8"])
    pols = list(r["policies"])
    width = max(1, (blocks + 3) // 4)
    head = f"{'mask':>6} {'skipped':>9} " + " ".join(f"{p[:16]:>16}" for p in pols) + f" {'int8 ' + r['deployed']['policy'][:10]:>16}"
    fw = r.get("firmware")
    if fw:
        head += f" {'instructions':>13} {'predicted':>11}"
    lines = [f"block-removal study, digits, {blocks} skippable blocks (float accuracy per drop policy; int8 as "
             "deployed)", head]
    for m in masks:
        row = f"  0x{m:0{width}x} {bin(m).count('1'):>9} " + " ".join(
            f"{100 * r['policies'][p]['float'][str(m)]:15.2f}%" for p in pols)
        row += f" {100 * r['deployed']['int8'][str(m)]:15.2f}%"
        if fw:
            f = fw["masks"].get(str(m), {})
            ins, pred = f.get("instructions"), f.get("predicted_instructions")
            row += f" {ins if ins is not None else '-':>13,}" if ins is not None else f" {'-':>13}"
            row += f" {pred:>11,}" if pred is not None else f" {'-':>11}"
        lines.append(row)
    lines.append("mean over masks: " + ", ".join(f"{p} {100 * r['policies'][p]['mean_over_masks']:.2f}%" for p in pols))
    if fw:
        lines.append(f"firmware on {fw['board']}: flash {fw['flash_bytes']:,} B, RAM {fw['ram_bytes']:,} B; labels and "
                     f"masks equal to the reference and instructions as the per-block costs predict: "
                     f"{'yes' if fw['ok'] else 'NO'}")
    return "\n".join(lines)


COMMANDS = {"adaptive-study": (add_adaptive_study, run_adaptive_study)}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tinysplit.methods.adaptive_resnet.command")
    sp = ap.add_subparsers(dest="cmd", required=True)
    add_adaptive_study(sp)
    a = ap.parse_args(["adaptive-study", *sys.argv[1:]])
    sys.exit(run_adaptive_study(a))
