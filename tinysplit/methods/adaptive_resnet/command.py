"""``tinysplit adaptive-study``: train the digits Adaptive ResNet with each drop policy, the block-removal
study (float for every policy; int8 as deployed for the exported one), and each mask's instruction
count in QEMU with every label checked against the reference.

``tinysplit adaptive-plan``: from such a study (its measured instructions and int8 accuracies, its
bundle's head) and a chain of devices (a YAML file, ``chain.py``), the skip mask and each kept block's
device at the least latency under the accuracy floor, latency budget, utilization, battery and memory
limits (``planner.plan``), side by side with always running the full model and with the best fixed
mask; the plan is written as JSON (``tinysplit/schemas/adaptive_plan.schema.json``).

A ``COMMANDS`` table like the other methods'; this module never imports the CLI and its parser
imports nothing heavy.
"""

from __future__ import annotations

import json
import math
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


# ---------------------------------------------------------------------------------------------
# adaptive-plan
# ---------------------------------------------------------------------------------------------

DEFAULT_RATE = 1.0
DEFAULT_HORIZON_S = 86_400.0  # a day
DEFAULT_FLOOR_MARGIN = 0.01  # default floor: the full model's int8 accuracy less one point


def add_adaptive_plan(sub: Any) -> None:
    p = sub.add_parser("adaptive-plan", help="Adaptive ResNet: plan the skip mask and the blocks' devices from a "
                                             "study's measured instructions and accuracies",
                       description="From the directory 'tinysplit adaptive-study' wrote (the instructions per mask "
                                   "counted in QEMU, the int8 accuracy per mask, the bundle's head for the blocks' "
                                   "weights, activations and arena) and a chain of devices, choose the skip mask and "
                                   "the device of each kept block with the least latency (or, with --objective "
                                   "accuracy, the highest accuracy) that meets the accuracy floor, the latency budget, the utilization limit, the batteries over the horizon "
                                   "and the devices' memory (an exact integer program). Prints the plan beside "
                                   "always running the full model and the best fixed mask, and writes it as JSON "
                                   "with --out. Compute: a device's clock at one instruction per cycle.")
    p.add_argument("--study", required=True, metavar="DIR",
                   help="the directory 'tinysplit adaptive-study --out' wrote (adaptive_study.json and bundle/)")
    p.add_argument("--devices", metavar="FILE.yaml",
                   help="the device chain, device 0 first (YAML or JSON; default: the shipped one_m4.yaml, one "
                        "Cortex-M4; two_m4.yaml ships too)")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="HZ",
                   help=f"samples per second (default {DEFAULT_RATE:g})")
    p.add_argument("--horizon-s", type=float, default=DEFAULT_HORIZON_S, metavar="S",
                   help=f"the batteries must last this long at that rate (default {DEFAULT_HORIZON_S:g} s, a day)")
    p.add_argument("--floor", type=float, metavar="ACC",
                   help="the accuracy floor, 0..1 (default: the full model's int8 accuracy less 0.01)")
    p.add_argument("--budget-ms", type=float, metavar="MS", help="latency budget per sample (default: none)")
    p.add_argument("--host-ms", type=float, default=0.0, metavar="MS",
                   help="the host tail's time per sample, added to the latency (default 0)")
    p.add_argument("--max-utilization", type=float, default=1.0, metavar="U",
                   help="the most of each device's compute time the requests may take, 0 < U <= 1 (default 1)")
    p.add_argument("--objective", choices=("latency", "accuracy"), default="latency",
                   help="latency (default): the fastest plan meeting every constraint; accuracy: the most accurate "
                        "plan the resources allow (ties: the fastest)")
    p.add_argument("--out", metavar="FILE.json", help="write the plan as JSON (replaced atomically)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")


def _demand_args(args: Any, acc_full: float):
    from tinysplit.methods.adaptive_resnet.planner import Demand

    def finite(flag: str, v: float) -> float:
        if not math.isfinite(v):
            raise InputError(f"{flag} must be a finite number, got {v}")
        return v

    rate, horizon = finite("--rate", args.rate), finite("--horizon-s", args.horizon_s)
    if rate <= 0 or horizon <= 0:
        raise InputError(f"--rate and --horizon-s must be positive, got {rate:g} and {horizon:g}")
    floor = max(0.0, acc_full - DEFAULT_FLOOR_MARGIN) if args.floor is None else finite("--floor", args.floor)
    if not 0.0 <= floor <= 1.0:
        raise InputError(f"--floor is an accuracy from 0 to 1 (0.95 for 95%), got {floor:g}")
    budget = None if args.budget_ms is None else finite("--budget-ms", args.budget_ms)
    if budget is not None and budget <= 0:
        raise InputError(f"--budget-ms must be positive, got {budget:g}")
    host = finite("--host-ms", args.host_ms)
    if host < 0:
        raise InputError(f"--host-ms must be zero or more, got {host:g}")
    util = finite("--max-utilization", args.max_utilization)
    if not 0.0 < util <= 1.0:
        raise InputError(f"--max-utilization must be above 0 and at most 1, got {util:g}")
    return Demand(rate, horizon, floor, None if budget is None else budget / 1000.0, util, host / 1000.0)


def best_fixed_mask(profile: Any, accuracy: Any, floor: float) -> int | None:
    """The fastest mask whose measured accuracy meets ``floor`` (ties: higher accuracy, then smaller mask),
    whatever the other constraints; None if no measured mask does."""
    ok = [(m, a) for m, a in accuracy.measured if a >= floor - 1e-9]
    if not ok:
        return None
    return min(ok, key=lambda ma: (profile.instructions(ma[0]), -ma[1], ma[0]))[0]


def run_adaptive_plan(args: Any) -> int:
    from tinysplit.console import emit_json
    from tinysplit.files import write_atomic
    from tinysplit.methods.adaptive_resnet import planner
    from tinysplit.methods.adaptive_resnet.chain import load_devices, shipped_devices
    from tinysplit.methods.adaptive_resnet.profile import load_study, profile_from

    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise InputError(f"--out: the directory '{out.parent}' does not exist")
    study, bundle = load_study(args.study)
    chain = load_devices(args.devices or shipped_devices())
    profile, accuracy = profile_from(bundle, study)
    demand = _demand_args(args, accuracy.acc_full)
    devices = chain.resources()
    plan = planner.plan(profile, accuracy, devices, demand, objective=getattr(args, "objective", "latency"))
    # (an InfeasibleError, exit 2, comes before anything is written)
    full = planner.evaluate(profile, accuracy, devices, demand, 0)
    fixed_mask = best_fixed_mask(profile, accuracy, demand.accuracy_floor)
    fixed = None if fixed_mask is None else planner.evaluate(profile, accuracy, devices, demand, fixed_mask)
    data = plan.to_json()
    if out is not None:
        write_atomic(out, json.dumps(data, indent=2) + "\n")
    if args.json:
        emit_json(data)
        return 0
    fw = study["firmware"]  # profile_from checked it
    print(format_plan(plan, full, fixed, chain, demand, profile, accuracy, args, str(fw.get("board", "?")),
                      fw.get("ok") is not False))
    if out is not None:
        print(f"plan: {out}")
    return 0


def _ms(s: float) -> str:
    return f"{1000 * s:.2f} ms"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _energy(j: float) -> str:
    if j >= 1.0:
        return _joules(j)
    for unit, scale in (("mJ", 1e-3), ("uJ", 1e-6)):
        if j >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j / 1e-9:.3g} nJ"


def _core_notes(chain: Any, board: str) -> list[str]:
    """A note for each device whose core is not the one the instructions were counted on."""
    from tinysplit.boards import get_board

    try:
        counted = get_board(board)
    except InputError:
        return [f"note: the instructions were counted on board '{board}', which tinysplit does not know"]
    notes = []
    for d in chain.devices:
        core = get_board(d.board).core.cpu
        if core != counted.core.cpu:
            notes.append(f"note: the instructions were counted on a {counted.core.cpu} ({board}); device '{d.name}' "
                         f"is a {core} ({d.board}), whose counts may differ: run adaptive-study with --board "
                         f"{d.board} to measure them there")
    return notes


def _joules(j: float) -> str:
    return f"{j:,.0f} J" if j >= 100 else f"{j:.3g} J"


def format_plan(plan: Any, full: Any, fixed: Any, chain: Any, demand: Any, profile: Any, accuracy: Any, args: Any,
                board: str, firmware_ok: bool = True) -> str:
    B = len(profile.blocks)
    width = max(1, (B + 3) // 4)
    hexm = lambda m: f"0x{m:0{width}x}"  # noqa: E731
    names = [d.name for d in chain.devices]
    floor_note = "" if args.floor is not None else f" (full model {_pct(accuracy.acc_full)} less 1 point)"
    lines = [f"Adaptive ResNet plan for study {args.study}: {B} skippable blocks, instructions counted on {board}",
             f"devices ({chain.source}, device 0 receives the input; compute: clock x 1 instruction per cycle):"]
    for i, d in enumerate(chain.devices):
        power = "mains" if d.mains else f"battery {_joules(d.battery_j)}"
        lines.append(f"  {i} {d.name:<12} {d.board:<20} {d.clock_hz / 1e6:g} MHz, "
                     f"{d.energy_per_instruction_j * 1e9:g} nJ/instruction, {d.energy_per_byte_j * 1e9:g} nJ/byte "
                     f"sent, {power}, link {d.link_bps / 1e3:g} kbit/s")
        lines.append(f"    {'':<12} for the model (the firmware's code, buffers and stack take the rest): RAM "
                     f"{d.model_memory_bytes:,} of {d.memory_bytes:,} B, flash {d.model_flash_bytes:,} of "
                     f"{d.flash_bytes:,} B")
    lines.append(f"head: base {profile.base_instructions:,} instructions, {profile.base_weight_bytes:,} B of "
                 f"weights; arena {profile.arena_bytes:,} B; output {profile.output_bytes:,} B")
    budget = "none" if demand.latency_budget_s is None else _ms(demand.latency_budget_s)
    lines.append(f"demand: {demand.request_rate:g} per s for {demand.horizon_s:,.0f} s "
                 f"({demand.horizon_s / 3600:.3g} h), accuracy floor {_pct(demand.accuracy_floor)}{floor_note}, "
                 f"latency budget {budget}, host {_ms(demand.host_s)}, utilization <= {demand.max_utilization:g}")
    lines += _core_notes(chain, board)
    if not firmware_ok:
        lines.append("note: the study's firmware check failed (labels, masks or instruction counts against the "
                     "per-block costs); its counts may be wrong")
    lat = plan.latency
    skipped = ", ".join(plan.skipped) or "none"
    lines += ["", f"plan: mask {hexm(plan.mask)} (skips {skipped}), accuracy {_pct(plan.accuracy)} "
                  f"({'measured' if plan.accuracy_measured else 'estimated from the single-block drops'}), solved "
                  f"by {plan.solver} in {plan.solve_s * 1000:.0f} ms",
              f"  latency {_ms(lat.total_s)} = compute {_ms(lat.compute_s)} + transfer {_ms(lat.transfer_s)} + host "
              f"{_ms(lat.host_s)}",
              "  placement: " + ", ".join(f"{b} {'skipped' if d is None else '-> ' + names[d]}"
                                          for b, d in zip(plan.blocks, plan.placement))]
    head = (f"  {'device':<12} {'blocks':<10} {'instructions':>12} {'compute':>10} {'sent':>8} {'transfer':>10} "
            f"{'util':>7} {'energy/sample':>13} {'horizon':>10} {'battery':>20} {'RAM':>8} {'flash':>9}")
    lines.append(head)
    for u in plan.devices:
        blocks = ",".join(str(k) for k in u.blocks) or "-"
        batt = ("mains" if math.isinf(u.battery_j)
                else f"{_pct(u.horizon_energy_j / u.battery_j)} of {_joules(u.battery_j)}")
        lines.append(f"  {u.name:<12} {blocks:<10} {u.instructions:>12,} {_ms(u.compute_s):>10} {u.sent_bytes:>6,} B "
                     f"{_ms(u.transfer_s):>10} {u.utilization:>7.3f} {_energy(u.energy_j):>13} "
                     f"{_energy(u.horizon_energy_j):>10} {batt:>20} {u.ram_bytes:>6,} B {u.flash_bytes:>7,} B")
    lines += ["", "the same constraints for the plan and for two fixed masks (their kept blocks all on device 0):",
              f"  {'':<44} {'mask':>6} {'latency':>10} {'accuracy':>9} {'':<9} {'max util':>8} {'max battery':>11}  "
              "violates"]

    def row(label: str, p: Any) -> str:
        util = max(u.utilization for u in p.devices)
        batt = [u.horizon_energy_j / u.battery_j for u in p.devices if not math.isinf(u.battery_j)]
        return (f"  {label:<44} {hexm(p.mask):>6} {_ms(p.latency.total_s):>10} {_pct(p.accuracy):>9} "
                f"{'measured' if p.accuracy_measured else 'estimated':<9} {util:>8.3f} "
                f"{_pct(max(batt)) if batt else 'mains':>11}  {', '.join(p.violations) or 'nothing'}")

    lines.append(row("plan", plan))
    lines.append(row("always full (mask 0)", full))
    if fixed is None:
        lines.append(f"  {'best fixed mask':<44} no measured mask meets the floor {_pct(demand.accuracy_floor)}")
    else:
        lines.append(row("best fixed mask (fastest measured >= floor)", fixed))
    return "\n".join(lines)


def add_adaptive_scenario(sub: Any) -> None:
    p = sub.add_parser("adaptive-scenario", help="Adaptive ResNet: re-plan over a scripted scenario against an "
                                                 "emulated device",
                       description="Drive the planner (objective: the most accurate mask the resources allow) "
                                   "through a scenario of changing battery, link rate and request rate, with one "
                                   "device in QEMU: each re-plan goes to the device as a CONTROL frame before the "
                                   "step's samples; the device's frames say which mask each sample ran with and its "
                                   "instruction count, and its STATS accounts (instructions and bytes sent) drain the "
                                   "battery. Checks that every re-plan reached the device, the accuracy floor held, "
                                   "every latency stayed within the budget and the battery lasted; writes the "
                                   "timeline as DIR/adaptive_scenario.json and DIR/adaptive_scenario.png.")
    p.add_argument("--study", required=True, metavar="DIR", help="the directory 'tinysplit adaptive-study' wrote")
    p.add_argument("--scenario", default=None, metavar="FILE.yaml",
                   help="scenario file (default: the shipped digits_drain.yaml)")
    p.add_argument("--board", default="qemu-mps2-an386", help="the emulated device's board (default qemu-mps2-an386)")
    p.add_argument("--planning", choices=("forecast", "myopic"), default=None,
                   help="forecast: budget the battery over the schedule's known rates; myopic: hold the current "
                        "rates for the time left (default: the scenario file's, else forecast)")
    p.add_argument("--out", required=True, metavar="DIR", help="results directory (created; files replaced)")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run_adaptive_scenario(args: Any) -> int:
    from tinysplit.boards import get_board
    from tinysplit.console import Progress, emit_json
    from tinysplit.files import write_atomic
    from tinysplit.methods.adaptive_resnet.scenario import (format_timeline, load_scenario, plot_timeline,
                                                            run_scenario, shipped_scenario)

    get_board(args.board)
    scenario = load_scenario(args.scenario or shipped_scenario())
    if args.planning is not None:
        from dataclasses import replace

        scenario = replace(scenario, planning=args.planning)
    out = Path(args.out)
    result = run_scenario(args.study, scenario, args.board, say=Progress(quiet=args.quiet))
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "adaptive_scenario.json", json.dumps(result, indent=2) + "\n")
    plot_timeline(result, out / "adaptive_scenario.png")
    if args.json:
        emit_json(result)
    else:
        print(format_timeline(result))
        print(f"timeline: {out / 'adaptive_scenario.json'}, {out / 'adaptive_scenario.png'}")
    return 0 if result["ok"] else 1


COMMANDS = {"adaptive-study": (add_adaptive_study, run_adaptive_study),
            "adaptive-plan": (add_adaptive_plan, run_adaptive_plan),
            "adaptive-scenario": (add_adaptive_scenario, run_adaptive_scenario)}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tinysplit.methods.adaptive_resnet.command")
    sp = ap.add_subparsers(dest="cmd", required=True)
    add_adaptive_study(sp)
    a = ap.parse_args(["adaptive-study", *sys.argv[1:]])
    sys.exit(run_adaptive_study(a))
