"""Benchmark: Adaptive ResNet on CIFAR-10: the block-removal study (float and int8 as deployed), each
mask's instructions on a Cortex-M4 in QEMU, and the planner's choices over a scripted day against
always-full and the best single fixed mask.

    python tests/benchmarks/bench_adaptive_cifar10.py [--epochs 8] [--policies block_drop[,none,stochastic_depth]]
        [--test-samples 1000] [--train-subset N] [--board qemu-mps2-an386|none] [--hil-samples 1]
        [--threads 2] [--out DIR]

Data: ../shared/data/cifar10-jpeg.npz (see its README; found next to the checkout, or --data).
Model: ``tinysplit.methods.adaptive_resnet.model.CIFAR10`` (an 8-channel stem; stages of 3, 2 and 2
ResBlocks at 8, 16 and 32 channels joined by stride-2 conv layers; 32x32x3 -> 8x8x32 on the device; 7
skippable blocks; the host tail pools and classifies), trained per drop policy with Adam, a one-cycle
schedule, crops and flips (``train.train_adaptive``), the deployed policy (the first listed) exported
as an adaptive_resnet bundle (each residual chain one int8 quantization).

Measured:
- float accuracy on the test images with every mask (all 128; with --exhaustive-up-to below 7: no
  block, each block alone and each pair skipped, 1 + 7 + 21 masks), per policy;
- int8 accuracy with the same masks as deployed: the generated C with its runtime skip mask, built for
  the host (gcc -O2), on every test image; checked value for value against TFLite Micro on the head
  with those blocks removed for the first 20 images of every mask (the generated C is bit-exact with
  TFLite Micro, tests/test_codegen_skip.py; on the host it is much faster than TFLite Micro's Python
  runtime, which makes the study fit the hour);
- with --board: the firmware in QEMU with mask 0, each block alone and all blocks (instructions per
  inference, labels equal to the reference), from which the planner's profile comes (block costs,
  weights, activations, arena: tinysplit.methods.adaptive_resnet.profile);
- the planner (objective "accuracy": the most accurate mask the resources allow) over the shipped
  devices file one_m4.yaml and a day compressed into 12 steps (battery, link and request rate as in
  SCENARIO below; battery drained by the planned energy), twice: planning over the known forecast
  (the battery budgeted over the rest of the day, re-planned each step) and myopic (each step's rates
  held for the time left), each against always-full and the best single fixed mask: mean accuracy,
  mean latency, steps breaking a constraint, whether the battery lasted the day.
  ``--replan-from DIR`` runs only this, from an earlier run's DIR (seconds).
Writes DIR/adaptive_cifar10.json and DIR/bundle/.

How the defaults are sized (under an hour on 2 cores): measured 1,804 s (30 min) on 2 cores at the
defaults (docs/adaptive-resnet.md); the script prints each phase's seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10 import DEFAULT_DATA, SEED, augment, load_split  # noqa: E402

# The day: 12 steps of 5 minutes; the link drops from 250 to 40 kbit/s, the request rate rises. Sized by
# the deployed head itself, so that it binds whatever the model: the latency budget is 1.25 x the whole
# head's latency at 250 kbit/s, the battery 0.6 x what the whole head would spend over the day, the
# accuracy floor 5 points under the whole head's int8 accuracy.
SCENARIO = {"steps": 12, "step_s": 300.0, "floor_below_full": 0.05, "budget_x_full": 1.25, "battery_x_full": 0.6,
            "link_kbps": [[0, 250], [4, 250], [8, 40], [11, 40]], "rate_hz": [[0, 0.1], [11, 0.6]]}

_HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "head_model.h"

int main(int argc, char **argv) {
    static int8_t buf[HEAD_INPUT_BYTES];
    uint32_t mask = (uint32_t)strtoul(argv[1], NULL, 0);
    (void)argc;
    while (fread(buf, 1, sizeof buf, stdin) == sizeof buf) {
        memcpy(head_input(), buf, sizeof buf);
        if (head_invoke_skip(mask) != 0) {
            return 3;
        }
        fwrite(head_output(), 1, HEAD_OUTPUT_BYTES, stdout);
    }
    return 0;
}
"""


def interp(points: list[list[float]], t: float) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return float(np.interp(t, xs, ys))


def host_harness(tflite: bytes, work: Path) -> Path:
    from tinysplit.exporter.codegen import generate_model_sources

    work.mkdir(parents=True, exist_ok=True)
    src = generate_model_sources(tflite, "head", work, skippable=True)
    (work / "harness.c").write_text(_HARNESS)
    out = work / "harness"
    subprocess.run(["gcc", "-std=c99", "-O2", "-I", str(work), str(work / "harness.c"), *map(str, src.sources),
                    "-o", str(out)], check=True, capture_output=True, timeout=600)
    return out


def run_harness(binary: Path, mask: int, xq: np.ndarray, out_bytes: int) -> np.ndarray:
    r = subprocess.run([str(binary), str(mask)], input=np.ascontiguousarray(xq).tobytes(), capture_output=True,
                       timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"harness failed with mask {mask}: {r.returncode}")
    return np.frombuffer(r.stdout, dtype=np.int8).reshape(len(xq), out_bytes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=8, help="training epochs per policy (default 8)")
    ap.add_argument("--policies", default="block_drop,none",
                    help="drop policies, the first is deployed (default block_drop,none; each an extra training)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--test-samples", type=int, default=1000)
    ap.add_argument("--board", default="qemu-mps2-an386", help="board for the per-mask instructions ('none': skip)")
    ap.add_argument("--hil-samples", type=int, default=1)
    ap.add_argument("--exhaustive-up-to", type=int, default=7,
                    help="study every mask when the head has at most this many blocks (default 7: all 128 masks of "
                         "the CIFAR-10 head); else no block, each block and each pair")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("adaptive-cifar10"))
    ap.add_argument("--replan-from", type=Path, default=None, metavar="DIR",
                    help="only the planner's day, from an earlier run's DIR (its adaptive_cifar10.json and bundle/)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.0f} s] {msg}", flush=True)

    if args.replan_from is not None:
        return replan_only(args.replan_from, args.out, log)

    from tinysplit.exporter.codegen.blocks import remove_blocks
    from tinysplit.exporter.runtimes import TflmRunner
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.adaptive_resnet.bundle import layout_for
    from tinysplit.methods.adaptive_resnet.export import export_adaptive
    from tinysplit.methods.adaptive_resnet.model import CIFAR10
    from tinysplit.methods.adaptive_resnet.train import (DROP_POLICIES, TrainConfig, config_json,
                                                         float_mask_accuracy, study_masks, train_adaptive)
    from tinysplit.reference import quantized_inputs, tail_logits, tail_session

    policies = [p for p in args.policies.split(",") if p]
    if not policies or any(p not in DROP_POLICIES for p in policies):
        ap.error(f"--policies must name drop policies from {', '.join(DROP_POLICIES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    log("loading CIFAR-10")
    x_tr, y_tr = load_split(args.data, "train", args.train_subset, SEED)
    x_te, y_te = load_split(args.data, "test", args.test_samples, SEED + 1)
    timings["load_s"] = time.time() - t0
    masks = study_masks(CIFAR10.blocks, exhaustive_up_to=args.exhaustive_up_to)
    result: dict = {"command": " ".join(sys.argv), "blocks": CIFAR10.blocks, "test_samples": len(x_te),
                    "train_samples": len(x_tr), "epochs": args.epochs, "policies": {}}
    models = {}
    for pol in policies:
        t1 = time.time()
        log(f"training with {pol}: {len(x_tr)} images, {args.epochs} epochs")
        tc = TrainConfig(epochs=args.epochs, policy=pol, lr=args.lr, batch=128)
        models[pol] = m = train_adaptive(CIFAR10, x_tr, y_tr, tc, augment=augment, say=log)
        timings[f"train_{pol}_s"] = time.time() - t1
        acc = float_mask_accuracy(m, x_te, y_te, masks)
        result["policies"][pol] = {"float": {str(k): v for k, v in acc.items()}, "train": config_json(tc),
                                   "mean_single": float(np.mean([acc[1 << i] for i in range(CIFAR10.blocks)])),
                                   "mean_pair": float(np.mean([v for k, v in acc.items() if bin(k).count("1") == 2])),
                                   "mean_all": float(np.mean(list(acc.values())))}
        log(f"{pol}: float {100 * acc[0]:.2f}%; one block skipped {100 * result['policies'][pol]['mean_single']:.2f}% "
            f"mean, two {100 * result['policies'][pol]['mean_pair']:.2f}% mean")
    deploy = policies[0]
    t1 = time.time()
    log(f"exporting the {deploy} model")
    calib = x_tr[np.random.default_rng(SEED).permutation(len(x_tr))[:300]]
    ex = export_adaptive(models[deploy], calib, x_te[:200], y_te[:200], args.out / "bundle", "cifar10_adaptive",
                         train=config_json(TrainConfig(epochs=args.epochs, policy=deploy)))
    timings["export_s"] = time.time() - t1
    man = load_manifest(ex.bundle_dir)
    lay = layout_for(man)
    tflite = (ex.bundle_dir / man.device_models[0].file).read_bytes()
    t1 = time.time()
    log(f"int8 study: {len(masks)} masks x {len(x_te)} images (generated C on the host)")
    binary = host_harness(tflite, args.out / "host")
    xq = quantized_inputs(man, x_te)
    sess = tail_session(ex.bundle_dir, man, lay.tail)
    int8, exact = {}, {}
    for k in masks:
        out = run_harness(binary, k, xq, lay.output_bytes)
        labels = tail_logits(ex.bundle_dir, man, out.reshape(len(out), *lay.output_shape), sess).argmax(1)
        int8[k] = float((labels == y_te).mean())
        rt = TflmRunner(remove_blocks(tflite, k), num_outputs=1)
        ref = np.stack([rt.run(xq[i:i + 1])[0].reshape(-1) for i in range(min(20, len(xq)))])
        exact[k] = bool(np.array_equal(ref, out[:len(ref)]))
    timings["int8_study_s"] = time.time() - t1
    result["deployed"] = {"policy": deploy, "int8": {str(k): v for k, v in int8.items()},
                          "identical_to_tflm_first_20": all(exact.values()),
                          "report": {k: ex.report["int8"].get(k) for k in ("accuracy_float", "accuracy_int8")},
                          "skip_blocks": ex.report["device_models"]["head"].get("skip_blocks")}
    log(f"int8: {100 * int8[0]:.2f}% with every block; identical to TFLite Micro: {all(exact.values())}")
    if args.board != "none":
        from tinysplit.firmware.apps.adaptive_resnet import run_e2e

        t1 = time.time()
        fw_masks = [0, *(1 << i for i in range(lay.blocks)), (1 << lay.blocks) - 1]
        log(f"firmware in QEMU ({args.board}): {len(fw_masks)} masks x {args.hil_samples} samples")
        r = run_e2e(ex.bundle_dir, args.board, args.hil_samples, "uart", fw_masks, timeout=600)
        timings["qemu_s"] = time.time() - t1
        result["firmware"] = {"board": args.board, "ok": r["ok"], "flash_bytes": r["firmware"]["flash_bytes"],
                              "ram_bytes": r["firmware"]["ram_bytes"],
                              "masks": {str(k): {f: v[f] for f in ("instructions", "predicted_instructions",
                                                                  "labels_equal_reference", "mask_used")}
                                        for k, v in r["masks"].items()}}
        log(f"firmware: flash {r['firmware']['flash_bytes']:,} B, RAM {r['firmware']['ram_bytes']:,} B; "
            f"{result['firmware']['masks']['0']['instructions']:,} instructions with every block; ok {r['ok']}")
        result["planner"] = planner_day(ex.bundle_dir, result, int8, log)
    result["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    result["total_s"] = round(time.time() - t0, 1)
    from tinysplit.files import write_atomic

    write_atomic(args.out / "adaptive_cifar10.json", json.dumps(result, indent=2) + "\n")
    log(f"total {result['total_s']:.0f} s; {args.out / 'adaptive_cifar10.json'}")
    return 0


def planner_day(bundle: Path, result: dict, int8: dict[int, float], log) -> dict:
    """The planner over SCENARIO's day on one_m4.yaml, once planning over the known forecast and once
    holding each step's rates for the time left (myopic), against always-full and the best fixed mask
    (the measured int8 accuracies where the study has the mask, the additive estimate elsewhere). The
    battery drains by the planned energy (no device runs here)."""
    from dataclasses import replace

    from tinysplit.methods.adaptive_resnet.chain import load_devices, shipped_devices
    from tinysplit.methods.adaptive_resnet.planner import Demand, InfeasibleError, evaluate
    from tinysplit.methods.adaptive_resnet.profile import profile_from
    from tinysplit.methods.adaptive_resnet.scenario import best_fixed_mask, plan_step, scenario_from_dict

    study = {"blocks": result["blocks"], "firmware": result["firmware"], "deployed": {"int8": result["deployed"]["int8"]}}
    profile, acc = profile_from(bundle, study)
    dev = load_devices(shipped_devices("one_m4.yaml")).devices[0]
    sc = SCENARIO
    floor = int8[0] - sc["floor_below_full"]
    base = replace(dev.resources(), link_bps=interp(sc["link_kbps"], 0) * 1e3, battery_j=float("inf"))
    whole = evaluate(profile, acc, [base], Demand(request_rate=1.0, horizon_s=1.0, accuracy_floor=0.0), 0)
    budget_s = sc["budget_x_full"] * whole.latency.total_s
    day_s = sc["steps"] * sc["step_s"]
    mean_rate = float(np.mean([interp(sc["rate_hz"], t) for t in range(sc["steps"])]))
    battery0 = sc["battery_x_full"] * mean_rate * day_s * whole.devices[0].energy_j
    log(f"planner day: budget {budget_s * 1e3:.1f} ms, battery {battery0:.2f} J, floor {100 * floor:.2f}%")
    out: dict = {"floor": floor, "budget_ms": budget_s * 1e3, "battery_j": battery0, "scenario": SCENARIO}
    for planning in ("forecast", "myopic"):
        scen = scenario_from_dict({"version": 1, "steps": sc["steps"], "step_s": sc["step_s"], "samples_per_step": 1,
                                   "devices": "one_m4.yaml", "battery_j": battery0, "planning": planning,
                                   "demand": {"accuracy_floor": floor, "latency_budget_ms": budget_s * 1e3},
                                   "schedule": {"link_kbps": sc["link_kbps"], "rate_hz": sc["rate_hz"]}})
        battery, steps = battery0, []
        for t in range(sc["steps"]):
            res = replace(dev.resources(), battery_j=battery, link_bps=scen.at("link_kbps", t) * 1e3)
            dem = Demand(request_rate=scen.at("rate_hz", t), horizon_s=(sc["steps"] - t) * sc["step_s"],
                         accuracy_floor=floor, latency_budget_s=budget_s)
            try:
                p, _ = plan_step(scen, profile, acc, dev, t, battery)
            except InfeasibleError as e:
                steps.append({"step": t, "infeasible": str(e)})
                log(f"{planning} planner, step {t}: infeasible: {e}")
                break
            full = evaluate(profile, acc, [res], dem, 0)
            steps.append({"step": t, "battery_j": battery, "link_kbps": res.link_bps / 1e3,
                          "rate_hz": dem.request_rate, "mask": p.mask, "accuracy": p.accuracy,
                          "latency_ms": p.latency.total_s * 1e3, "full_latency_ms": full.latency.total_s * 1e3,
                          "full_violations": list(full.violations), "res": res, "dem": dem})
            battery -= dem.request_rate * sc["step_s"] * p.devices[0].energy_j
        ok = [s for s in steps if "mask" in s]
        fixed = best_fixed_mask(profile, acc, ok, resources_for=lambda s: s["res"], demand_for=lambda s: s["dem"])
        for s in ok:
            s.pop("res")
            s.pop("dem")
        day = {"steps": steps, "battery_end_j": battery, "lasted": len(ok) == sc["steps"] and battery >= 0,
               "adaptive": {"mean_accuracy": float(np.mean([s["accuracy"] for s in ok])),
                            "mean_latency_ms": float(np.mean([s["latency_ms"] for s in ok])), "steps_broken": 0,
                            "steps_served": len(ok),
                            "replans": sum(1 for a, b in zip(ok, ok[1:]) if a["mask"] != b["mask"])},
               "always_full": {"accuracy": int8[0],
                               "mean_latency_ms": float(np.mean([s["full_latency_ms"] for s in ok])),
                               "steps_broken": sum(1 for s in ok if s["full_violations"])}}
        if fixed.get("mask") is not None:
            day["best_fixed_mask"] = {"mask": fixed["mask"], "accuracy": acc.accuracy(fixed["mask"])[0],
                                      "steps_broken": fixed["steps_broken"], "mean_latency_ms": fixed["mean_latency_ms"]}
        out[planning] = day
        log(f"{planning} planner: {len(ok)} of {sc['steps']} steps served, battery at the end {battery:.3f} J, "
            f"masks {' '.join(hex(s['mask']) for s in ok)}")
        for name in ("adaptive", "always_full", "best_fixed_mask"):
            if name in day:
                v = day[name]
                log(f"  {name}: accuracy {100 * v.get('mean_accuracy', v.get('accuracy', 0)):.2f}%, mean latency "
                    f"{v['mean_latency_ms']:.1f} ms, steps breaking a constraint {v['steps_broken']} of {len(ok)}")
    return out


def replan_only(prev: Path, out: Path, log) -> int:
    """--replan-from: the planner's day again from an earlier run's adaptive_cifar10.json and bundle/."""
    from tinysplit.files import write_atomic

    result = json.loads((prev / "adaptive_cifar10.json").read_text())
    int8 = {int(k): v for k, v in result["deployed"]["int8"].items()}
    result["planner"] = planner_day(prev / "bundle", result, int8, log)
    result["replanned_from"] = str(prev)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "adaptive_cifar10.json", json.dumps(result, indent=2) + "\n")
    log(f"{out / 'adaptive_cifar10.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
