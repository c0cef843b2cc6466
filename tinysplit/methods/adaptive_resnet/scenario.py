"""A scripted scenario: resources change over time, the planner re-plans, and each new mask reaches an
emulated device as a CONTROL frame before the samples that must use it.

A scenario file (YAML or JSON, checked against ``tinysplit/schemas/adaptive_scenario.schema.json``)::

    version: 1
    steps: 12                 # time steps of step_s seconds
    step_s: 60
    samples_per_step: 4       # samples the emulated device really runs at each step
    devices: one_m4.yaml      # a shipped devices file or a path (relative to this file); one device
    battery_j: 4.0            # optional: the device's battery at the start (default: the devices file's)
    demand:
      accuracy_floor: 0.9
      latency_budget_ms: 150
      host_ms: 0.5
      max_utilization: 1.0    # optional
    planning: forecast        # optional: forecast (default) or myopic
    schedule:                 # piecewise linear in the step index: [[step, value], ...]
      link_kbps: [[0, 250], [11, 40]]
      rate_hz: [[0, 1], [11, 6]]

At step t (time t * step_s) the planner chooses the most accurate mask the resources allow (objective
"accuracy", ties to the fastest; with "latency" it would skip every block the floor allows at every
step, whatever the resources: nothing to adapt), from the device's battery as it is now:

- ``planning: forecast`` (the default): the schedule's link and request rates for the steps left are
  a known forecast; ``forecast.plan_schedule`` plans one mask per remaining step with the battery
  budgeted over all of them, and step t uses the first (a receding horizon: re-planned every step);
- ``planning: myopic``: ``planner.plan`` with the current link and request rates held for the time
  left (the horizon). When the rate rises, this spends early what later steps need.

The mask goes to the device as CONTROL key 4 (only when it changed: a re-plan), then the step's
samples run there. What the device sends back drives the rest: each sample's frames carry the mask
it ran with (every re-plan must have reached the device) and its instruction count, from which the
step's latency per sample is computed (instructions / clock + the output's wire bytes / link rate +
host time). After the step the host asks the device for its STATS: its own accounts of the
instructions of every inference and the bytes of every output frame it sent since boot (keys 6 to
8). The battery drains by rate x step_s x (instructions x energy per instruction + bytes x energy per
byte) per sample, from those accounts' growth over the step, and the next plan starts from it. The run
checks, for every step: the samples used the planned mask, the mask's measured int8 accuracy (the
study's) is at or above the floor, every sample's latency is within the budget, every label equals
the reference for that mask, the device's accounts agree with its frames, and the battery is never
overdrawn. Side by side, at each step's resources: always-full (mask 0) and the best single fixed mask
(the one mask, of those meeting the floor, that breaks the fewest steps' constraints, then the
fastest on average), each with the constraints it breaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from tinysplit.errors import InputError

SCHEMA = "adaptive_scenario.schema.json"
SHIPPED = ("digits_drain.yaml",)  # in tinysplit/methods/adaptive_resnet/scenarios/
DEFAULT_SCENARIO = "digits_drain.yaml"
SCHEDULED = ("link_kbps", "rate_hz")
PLANNING = ("forecast", "myopic")


@dataclass(frozen=True)
class Scenario:
    source: str
    steps: int
    step_s: float
    samples_per_step: int
    devices: Path
    battery_j: float | None
    accuracy_floor: float
    latency_budget_s: float
    host_s: float
    max_utilization: float
    schedule: dict[str, tuple[tuple[float, float], ...]]
    planning: str = "forecast"

    def at(self, name: str, step: int) -> float:
        """The scheduled value at ``step``: linear between the given points, constant beyond them."""
        pts = self.schedule[name]
        if step <= pts[0][0]:
            return pts[0][1]
        for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
            if step <= s1:
                return v0 + (v1 - v0) * (step - s0) / (s1 - s0)
        return pts[-1][1]


def load_schema() -> dict[str, Any]:
    from tinysplit.schemacheck import load_schema as schema

    return schema(SCHEMA)


def shipped_scenario(name: str = DEFAULT_SCENARIO) -> Path:
    return Path(str(resources.files("tinysplit.methods.adaptive_resnet").joinpath("scenarios", name)))


def scenario_from_dict(data: Any, source: str = "scenario", base: Path | None = None) -> Scenario:
    from tinysplit.schemacheck import check

    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    check(SCHEMA, data, source)
    sched = {}
    for name in SCHEDULED:
        pts = tuple((float(s), float(v)) for s, v in data["schedule"][name])
        if any(b[0] <= a[0] for a, b in zip(pts, pts[1:])):
            raise InputError(f"{source}: field 'schedule.{name}': the steps of its points must increase, got "
                             f"{[p[0] for p in pts]}")
        sched[name] = pts
    dev = str(data.get("devices", "one_m4.yaml"))
    from tinysplit.methods.adaptive_resnet.chain import SHIPPED as SHIPPED_DEVICES
    from tinysplit.methods.adaptive_resnet.chain import shipped_devices

    devices = shipped_devices(dev) if dev in SHIPPED_DEVICES else (base or Path(".")) / dev
    d = data["demand"]
    return Scenario(source, int(data["steps"]), float(data["step_s"]), int(data["samples_per_step"]), devices,
                    float(data["battery_j"]) if "battery_j" in data else None, float(d["accuracy_floor"]),
                    float(d["latency_budget_ms"]) / 1e3, float(d.get("host_ms", 0.0)) / 1e3,
                    float(d.get("max_utilization", 1.0)), sched, str(data.get("planning", "forecast")))


def load_scenario(path: str | Path) -> Scenario:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"scenario file '{p}' does not exist; shipped: {', '.join(SHIPPED)}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"{p.name}: not valid YAML: {e}") from None
    return scenario_from_dict(data, p.name, p.parent)


# ----------------------------------------------------------------------------- the run

@dataclass
class _State:
    battery_j: float
    mask: int | None = None
    instructions_total: int = 0  # the device's STATS accounts after the previous step (0 at boot)
    app_bytes_sent: int = 0


def plan_step(scenario: Scenario, profile: Any, acc: Any, dev: Any, t: int, battery_j: float) -> tuple[Any, Any]:
    """Step t's plan and, with planning "forecast", the schedule it comes from (else None)."""
    from dataclasses import replace

    from tinysplit.methods.adaptive_resnet.forecast import Period, plan_schedule
    from tinysplit.methods.adaptive_resnet.planner import plan

    if scenario.planning == "myopic":
        res = replace(dev.resources(), battery_j=battery_j, link_bps=scenario.at("link_kbps", t) * 1e3)
        return plan(profile, acc, [res], _demand(scenario, t, (scenario.steps - t) * scenario.step_s),
                    objective="accuracy"), None
    periods = [Period([replace(dev.resources(), link_bps=scenario.at("link_kbps", k) * 1e3)],
                      _demand(scenario, k, scenario.step_s)) for k in range(t, scenario.steps)]
    sched = plan_schedule(profile, acc, periods, "accuracy", batteries_j=[battery_j])
    return sched.first, sched


def _demand(scenario: Scenario, t: int, horizon_s: float) -> Any:
    from tinysplit.methods.adaptive_resnet.planner import Demand

    return Demand(request_rate=scenario.at("rate_hz", t), horizon_s=horizon_s, accuracy_floor=scenario.accuracy_floor,
                  latency_budget_s=scenario.latency_budget_s, max_utilization=scenario.max_utilization,
                  host_s=scenario.host_s)


def run_scenario(study_dir: str | Path, scenario: Scenario, board: str = "qemu-mps2-an386",
                 say: Callable[[str], None] = lambda m: None, timeout: float = 60.0) -> dict[str, Any]:
    """Drive the planner and one emulated device through ``scenario``; returns the timeline (JSON-ready)."""
    import numpy as np

    from tinysplit.firmware.apps.adaptive_resnet import CONTROL_SKIP_MASK, config_from_manifest, frame_fields
    from tinysplit.firmware.e2e import Setting, prepare, run_app
    from tinysplit.methods.adaptive_resnet.bundle import layout_for
    from tinysplit.methods.adaptive_resnet.chain import load_devices
    from tinysplit.methods.adaptive_resnet.planner import evaluate
    from tinysplit.methods.adaptive_resnet.profile import load_study, profile_from
    from tinysplit.methods.adaptive_resnet.reference import labels_for_masks

    if scenario.planning not in PLANNING:
        raise InputError(f"{scenario.source}: planning must be one of {', '.join(PLANNING)}, got "
                         f"'{scenario.planning}'")
    study, bundle = load_study(study_dir)
    profile, acc = profile_from(bundle, study)
    chain = load_devices(scenario.devices)
    if len(chain.devices) != 1:
        raise InputError(f"{scenario.source}: the scenario drives one emulated device, the devices file "
                         f"'{scenario.devices.name}' has {len(chain.devices)}; placement over a chain is planned "
                         "by 'tinysplit adaptive-plan' but not deployed")
    dev = chain.devices[0]
    p = prepare(bundle, board, scenario.samples_per_step, "uart", None)
    lay = layout_for(p.manifest)
    cfg = config_from_manifest(p.manifest)
    state = _State(dev.battery_j if scenario.battery_j is None else scenario.battery_j)
    masks_all = list(range(1 << lay.blocks))
    ref = labels_for_masks(bundle, masks_all, n=scenario.samples_per_step)
    wire = profile.wire_bytes(profile.output_bytes)
    steps: list[dict[str, Any]] = []

    def settings():
        for t in range(scenario.steps):
            link_bps, rate = scenario.at("link_kbps", t) * 1e3, scenario.at("rate_hz", t)
            try:
                chosen, sched = plan_step(scenario, profile, acc, dev, t, state.battery_j)
            except InputError as e:
                raise InputError(f"{scenario.source}: step {t} (t = {t * scenario.step_s:g} s, battery "
                                 f"{state.battery_j:.3f} J, link {link_bps / 1e3:g} kbit/s, rate {rate:g}/s, planning "
                                 f"{scenario.planning}): {e}") from None
            replan = chosen.mask != state.mask
            st = {"step": t, "t_s": t * scenario.step_s, "battery_j": state.battery_j, "link_kbps": link_bps / 1e3,
                  "rate_hz": rate, "horizon_s": (scenario.steps - t) * scenario.step_s, "mask": chosen.mask,
                  "replan": replan, "blocks_run": lay.blocks - bin(chosen.mask).count("1"),
                  "accuracy": chosen.accuracy, "accuracy_measured": chosen.accuracy_measured,
                  "planned_latency_ms": chosen.latency.total_s * 1e3,
                  "planned_energy_j": rate * scenario.step_s * chosen.devices[0].energy_j}
            if sched is not None:
                st["forecast"] = {"masks": [q.mask for q in sched.plans], "mean_accuracy": sched.mean_accuracy,
                                  "energy_j": sched.energy_j[0]}
            full = evaluate(profile, acc, [_res_at(dev, st)], _demand_at(scenario, st), 0)
            st["always_full"] = {"latency_ms": full.latency.total_s * 1e3, "violations": list(full.violations)}
            steps.append(st)
            say(f"step {t}: battery {state.battery_j:.3f} J, link {link_bps / 1e3:g} kbit/s, rate {rate:g}/s -> "
                f"mask 0x{chosen.mask:x}" + (" (re-plan)" if replan else ""))
            state.mask = chosen.mask
            # a re-plan's CONTROL goes before the step's samples; without one the device keeps its mask
            yield Setting(str(t), f"step {t}", ((CONTROL_SKIP_MASK, chosen.mask),) if replan else ())

    def row(s: Any, run: Any) -> dict[str, Any]:
        st = steps[int(s.key)]
        fields = [frame_fields(f) if f else (set(), set()) for f in run.frames]
        used = [ms == {st["mask"]} for ms, _ in fields]
        instr = [next(iter(cs)) for _, cs in fields if len(cs) == 1]
        lat = [i / dev.clock_hz + wire * 8 / (st["link_kbps"] * 1e3) + scenario.host_s for i in instr]
        # the device's own accounts (STATS keys 6 to 8) over this step
        total, sent = run.stats.get("instructions_total"), run.stats.get("app_bytes_sent")
        if total is None or sent is None:
            raise InputError(f"{scenario.source}: the device's STATS lack the instruction and byte accounts (keys 6 "
                             "to 8); rebuild the firmware with this tinysplit")
        d_instr = total - state.instructions_total
        d_bytes = (sent - state.app_bytes_sent) % (1 << 32)
        state.instructions_total, state.app_bytes_sent = total, sent
        n = len(run.seqs)
        energy = (d_instr * dev.energy_per_instruction_j + d_bytes * dev.energy_per_byte_j) / n
        drain = st["rate_hz"] * scenario.step_s * energy
        if not math.isinf(state.battery_j):
            state.battery_j -= drain
        st.update({"mask_used": float(np.mean(used)) if used else 0.0,
                   "instructions": round(d_instr / n), "wire_bytes": d_bytes / n,
                   "reported": {"instructions": d_instr, "app_bytes_sent": d_bytes, "samples": n},
                   "reports_agree_with_frames": d_instr == sum(instr) and len(instr) == n
                   and d_bytes == sum(len(f) for fr in run.frames for f in fr),
                   "latency_ms": [round(v * 1e3, 3) for v in lat], "max_latency_ms": max(lat) * 1e3 if lat else None,
                   "energy_per_sample_j": energy, "drained_j": drain, "battery_after_j": state.battery_j,
                   "labels_equal_reference": float(np.mean(run.labels == ref[st["mask"]]))})
        return {}

    run_app(p, "adaptive_resnet", cfg, settings(), row, lambda h: None, timeout=timeout)
    fixed = best_fixed_mask(profile, acc, steps, resources_for=lambda st: _res_at(dev, st),
                            demand_for=lambda st: _demand_at(scenario, st))
    checks = {
        "every_replan_reached_the_device": all(s["mask_used"] == 1.0 for s in steps),
        "accuracy_floor_held": all(s["accuracy"] >= scenario.accuracy_floor - 1e-12 for s in steps),
        "latency_within_budget": all(s["max_latency_ms"] is not None
                                     and s["max_latency_ms"] <= scenario.latency_budget_s * 1e3 + 1e-9 for s in steps),
        "labels_equal_reference": all(s["labels_equal_reference"] == 1.0 for s in steps),
        "device_reports_agree_with_frames": all(s["reports_agree_with_frames"] for s in steps),
        "battery_lasted": all(s["battery_after_j"] >= 0 for s in steps),
    }
    summary = {
        "adaptive": {"mean_accuracy": float(np.mean([s["accuracy"] for s in steps])),
                     "mean_latency_ms": float(np.mean([s["max_latency_ms"] for s in steps])),
                     "steps_broken": sum(1 for s in steps if s["max_latency_ms"] > scenario.latency_budget_s * 1e3
                                         or s["accuracy"] < scenario.accuracy_floor)},
        "always_full": {"accuracy": acc.accuracy(0)[0],
                        "mean_latency_ms": float(np.mean([s["always_full"]["latency_ms"] for s in steps])),
                        "steps_broken": sum(1 for s in steps if s["always_full"]["violations"])},
    }
    if fixed.get("mask") is not None:
        summary["best_fixed_mask"] = {"mask": fixed["mask"], "accuracy": acc.accuracy(fixed["mask"])[0],
                                      "mean_latency_ms": fixed["mean_latency_ms"], "steps_broken": fixed["steps_broken"]}
    return {"scenario": scenario.source, "board": board, "device": dev.name, "blocks": lay.blocks,
            "steps": steps, "replans": sum(1 for s in steps[1:] if s["replan"]), "summary": summary,
            "best_fixed_mask": fixed, "checks": checks, "ok": all(checks.values()),
            "planning": scenario.planning,
            "settings": {"step_s": scenario.step_s, "samples_per_step": scenario.samples_per_step,
                         "accuracy_floor": scenario.accuracy_floor,
                         "latency_budget_ms": scenario.latency_budget_s * 1e3, "host_ms": scenario.host_s * 1e3,
                         "clock_hz": dev.clock_hz}}


def _res_at(dev, st: dict[str, Any]):
    from dataclasses import replace

    return replace(dev.resources(), battery_j=st["battery_j"], link_bps=st["link_kbps"] * 1e3)


def _demand_at(scenario: Scenario, st: dict[str, Any]):
    from tinysplit.methods.adaptive_resnet.planner import Demand

    return Demand(request_rate=st["rate_hz"], horizon_s=st["horizon_s"], accuracy_floor=scenario.accuracy_floor,
                  latency_budget_s=scenario.latency_budget_s, max_utilization=scenario.max_utilization,
                  host_s=scenario.host_s)


def best_fixed_mask(profile, acc, steps: list[dict[str, Any]], resources_for, demand_for) -> dict[str, Any]:
    """Of the masks whose accuracy meets the floor, the one fixed mask breaking the fewest steps'
    constraints (at the resources the adaptive run saw), then the most accurate, then the fastest on
    average: the best a planner that never re-plans could do, judged like the adaptive run."""
    from tinysplit.methods.adaptive_resnet.planner import evaluate

    best = None
    for m in range(1 << len(profile.blocks)):
        evs = [evaluate(profile, acc, [resources_for(st)], demand_for(st), m) for st in steps]
        if any("accuracy_floor" in e.violations for e in evs):
            continue
        broken = sum(1 for e in evs if e.violations)
        mean = sum(e.latency.total_s for e in evs) / len(evs)
        key = (broken, -acc.accuracy(m)[0], mean, m)
        if best is None or key < best[0]:
            best = (key, m, evs)
    if best is None:
        return {"mask": None, "note": "no single mask meets the accuracy floor"}
    (broken, _, mean, _), m, evs = best
    return {"mask": m, "steps_broken": broken, "mean_latency_ms": mean * 1e3,
            "per_step": [{"latency_ms": e.latency.total_s * 1e3, "violations": list(e.violations)} for e in evs]}


def plot_timeline(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = result["steps"]
    t = [s["t_s"] for s in st]
    fig, ax = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    ax[0].plot(t, [s["link_kbps"] for s in st], "o-", label="link (kbit/s)")
    a2 = ax[0].twinx()
    a2.plot(t, [s["rate_hz"] for s in st], "s--", color="tab:orange", label="requests/s")
    ax[0].set_ylabel("link kbit/s")
    a2.set_ylabel("requests/s")
    ax[0].set_title(f"{result['scenario']}: {result['replans']} re-plans on {result['board']}")
    ax[1].plot(t, [s["battery_j"] for s in st], "o-", color="tab:green")
    ax[1].set_ylabel("battery (J)")
    ax[2].step(t, [s["blocks_run"] for s in st], where="post", label="blocks run")
    a3 = ax[2].twinx()
    a3.plot(t, [100 * s["accuracy"] for s in st], "d:", color="tab:purple", label="accuracy (int8, %)")
    a3.axhline(100 * result["settings"]["accuracy_floor"], color="tab:purple", lw=0.8, ls="--")
    ax[2].set_ylabel("blocks run")
    a3.set_ylabel("accuracy %")
    ax[3].plot(t, [s["max_latency_ms"] for s in st], "o-", label="adaptive (device-measured)")
    ax[3].plot(t, [s["always_full"]["latency_ms"] for s in st], "x--", label="always full")
    ax[3].axhline(result["settings"]["latency_budget_ms"], color="red", lw=0.8, ls="--", label="budget")
    ax[3].set_ylabel("latency (ms)")
    ax[3].set_xlabel("time (s)")
    ax[3].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def format_timeline(r: dict[str, Any]) -> str:
    width = max(1, (r["blocks"] + 3) // 4)
    lines = [f"{r['scenario']} on {r['board']} (device '{r['device']}'): {len(r['steps'])} steps, {r['replans']} re-plans, "
             f"planning {r['planning']}",
             f"{'t (s)':>7} {'battery J':>10} {'link':>7} {'rate':>5} {'mask':>6} {'run':>4} {'acc %':>6} "
             f"{'latency ms':>11} {'full ms':>8} {'full breaks':<24} {'used':>5}"]
    for s in r["steps"]:
        lines.append(f"{s['t_s']:7.0f} {s['battery_j']:10.3f} {s['link_kbps']:7.1f} {s['rate_hz']:5.2f} "
                     f"0x{s['mask']:0{width}x}{'*' if s['replan'] else ' '} {s['blocks_run']:4d} {100 * s['accuracy']:6.2f} "
                     f"{s['max_latency_ms']:11.2f} {s['always_full']['latency_ms']:8.2f} "
                     f"{','.join(s['always_full']['violations']) or '-':<24} {100 * s['mask_used']:4.0f}%")
    n = len(r["steps"])
    sm = r["summary"]
    rows = [("adaptive (the plans above)", sm["adaptive"], f"{100 * sm['adaptive']['mean_accuracy']:.2f}% mean")]
    rows.append(("always full (mask 0)", sm["always_full"], f"{100 * sm['always_full']['accuracy']:.2f}%"))
    if "best_fixed_mask" in sm:
        f = sm["best_fixed_mask"]
        rows.append((f"best single fixed mask (0x{f['mask']:0{width}x})", f, f"{100 * f['accuracy']:.2f}%"))
    lines.append(f"{'':32} {'accuracy':>14} {'mean latency':>13} {'steps breaking a constraint':>28}")
    lines += [f"{name:32} {accs:>14} {v['mean_latency_ms']:10.2f} ms {v['steps_broken']:>20} of {n}"
              for name, v, accs in rows]
    lines.append("* = re-plan (a CONTROL frame went to the device before the step's samples)")
    lines.append("checks: " + ", ".join(f"{k.replace('_', ' ')}: {'yes' if v else 'NO'}" for k, v in r["checks"].items()))
    return "\n".join(lines)
