"""Planning over a known load forecast: one (mask, placement) per period of a schedule, the batteries
budgeted over all of them.

``planner.plan`` sizes the battery by the current request rate held for the whole horizon. When the
rate rises later, that plan spends early the energy later periods need (measured on the CIFAR-10 day:
the battery ran out at step 10 of 12, docs/adaptive-resnet.md). ``plan_schedule`` knows the forecast:
periods t = 0..T-1, each with its own length, request rate, accuracy floor, latency budget and device
resources (link rates, clocks), and the energy each battery holds at the start of period 0.

Model
-----
- Per period, the constraints of ``planner.plan`` except the battery (accuracy floor, latency budget,
  utilization, memory, flash) decide which (mask, placement) candidates are allowed: every mask and
  monotone placement is assessed exactly (``planner._Problem.assess``), so this enumerates, up to
  ``planner.MAX_EXHAUSTIVE_CANDIDATES`` per period.
- Candidates dominated within their period (no more accurate, no faster, and no cheaper on any
  battery than another) are dropped: they can be in no optimal schedule. Equal ones keep the smallest mask.
- The batteries couple the periods: for every battery-powered device d,
  sum_t n_t * energy_d(choice_t) <= battery_d, n_t = rate_t * length_t samples.
- Objective "accuracy" (the default): the highest mean accuracy per sample, sum_t n_t acc_t / sum_t n_t;
  ties (within 1e-9) go to the least mean latency per sample. "latency": the least mean latency, ties to
  the highest accuracy.
- Solver: an integer program, one binary per (period, candidate), exactly one per period
  (scipy.optimize.milp, HiGHS, gap 0), solved twice (the objective, then the tie-break with the first
  fixed). ``exhaustive_schedule`` tries every combination for small cases; the tests compare the two.

Receding horizon: a controller plans the rest of the forecast from the battery it has now, applies
period 0's plan, and plans again at the next period (``scenario.py`` with ``planning: forecast``).

Infeasible: ``InfeasibleError`` names the period whose own constraints no plan meets (with
``planner.plan``'s diagnosis for it), or the battery that cannot last the forecast even with the
cheapest allowed plan in every period, with the numbers.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from tinysplit.errors import InputError, TinysplitError
from tinysplit.methods.adaptive_resnet.planner import (_ACC, _REL, MAX_EXHAUSTIVE_CANDIDATES, MILP, OBJECTIVES,
                                                       AccuracyModel, BlockProfile, Demand, DeviceResources,
                                                       InfeasibleError, Plan, _diagnose, _Enumeration, _objective,
                                                       _Problem, _Candidate, candidate_count)

MAX_EXHAUSTIVE_COMBINATIONS = 200_000


@dataclass(frozen=True)
class Period:
    """One period of the forecast: the devices' resources during it (their ``battery_j`` is not used:
    the batteries are ``plan_schedule``'s) and its demand, whose ``horizon_s`` is the period's length."""

    devices: tuple[DeviceResources, ...]
    demand: Demand

    def __post_init__(self) -> None:
        devs = (self.devices,) if isinstance(self.devices, DeviceResources) else tuple(self.devices)
        object.__setattr__(self, "devices", devs)


@dataclass(frozen=True)
class Schedule:
    plans: tuple[Plan, ...]  # per period; each DeviceUse.battery_j is the energy left at the period's start
    batteries_j: tuple[float, ...]  # per device, at the start (math.inf: mains powered)
    energy_j: tuple[float, ...]  # per device, spent over the schedule
    samples: float  # sum_t rate_t * length_t
    mean_accuracy: float  # per sample
    mean_latency_s: float  # per sample
    objective: str
    solver: str
    solve_s: float

    @property
    def first(self) -> Plan:
        return self.plans[0]

    def to_json(self) -> dict[str, Any]:
        return {"objective": self.objective, "mean_accuracy": self.mean_accuracy,
                "mean_latency_s": self.mean_latency_s, "samples": self.samples,
                "batteries_j": [None if math.isinf(b) else b for b in self.batteries_j],
                "energy_j": list(self.energy_j), "periods": [p.to_json() for p in self.plans],
                "solver": {"name": self.solver, "solve_s": self.solve_s}}


@dataclass(frozen=True)
class _Option:
    mask: int
    placement: tuple[int | None, ...]
    accuracy: float
    latency_s: float
    energy: tuple[float, ...]  # per device, per sample


class _Forecast:
    def __init__(self, profile: BlockProfile, accuracy: AccuracyModel, periods: Sequence[Period],
                 batteries_j: Sequence[float] | None, objective: str) -> None:
        _objective(objective)
        periods = tuple(periods)
        if not periods:
            raise InputError("a forecast has at least one period")
        for t, p in enumerate(periods):
            if not isinstance(p, Period):
                raise InputError(f"period {t} must be a Period, got {type(p).__name__}")
        names = [d.name for d in periods[0].devices]
        for t, p in enumerate(periods[1:], 1):
            if [d.name for d in p.devices] != names:
                raise InputError(f"period {t} has devices {[d.name for d in p.devices]}, period 0 {names}: every "
                                 "period names the same chain, in the same order")
        if batteries_j is None:
            batteries_j = [d.battery_j for d in periods[0].devices]
        batteries = tuple(float(b) for b in batteries_j)
        if len(batteries) != len(names) or any(math.isnan(b) or b <= 0 for b in batteries):
            raise InputError(f"give one positive battery (J, or inf) per device: {len(names)} devices, got "
                             f"{list(batteries_j)}")
        self.profile, self.accuracy, self.periods, self.objective = profile, accuracy, periods, objective
        self.batteries = batteries
        # each period's problem without the battery, which only the schedule as a whole can check
        self.problems = [_Problem(profile, accuracy, [replace(d, battery_j=math.inf) for d in p.devices], p.demand)
                         for p in periods]
        self.samples = [pb.samples for pb in self.problems]
        count = candidate_count(self.problems[0].B, self.problems[0].D)
        if count > MAX_EXHAUSTIVE_CANDIDATES:
            raise InputError(f"{self.problems[0].B} blocks on {self.problems[0].D} device(s) make {count:,} masks and "
                             f"placements per period; planning over a forecast takes at most "
                             f"{MAX_EXHAUSTIVE_CANDIDATES:,}: plan each period with planner.plan")

    def options(self, t: int, prune: bool = True) -> list[_Option]:
        pb = self.problems[t]
        every = [pb.assess(m, p) for m, p in pb.candidates()]
        ok = [_Option(q.mask, q.placement, q.accuracy, q.latency.total_s, tuple(u.energy_j for u in q.devices))
              for q in every if not q.violations]
        if not ok:
            e = _diagnose(pb, _Enumeration([_Candidate.of(q, pb.demand.max_utilization) for q in every]))
            raise InfeasibleError(f"period {t}: {e}")
        return _pareto(ok) if prune else ok

    def spend(self, chosen: Sequence[_Option]) -> list[float]:
        return [sum(n * o.energy[d] for n, o in zip(self.samples, chosen)) for d in range(len(self.batteries))]

    def build(self, chosen: Sequence[_Option], solver: str, start: float) -> Schedule:
        total = sum(self.samples)
        left = list(self.batteries)
        plans = []
        for t, (pb, o) in enumerate(zip(self.problems, chosen)):
            q = pb.assess(o.mask, o.placement)
            uses = tuple(replace(u, battery_j=left[d]) for d, u in enumerate(q.devices))
            plans.append(replace(q, devices=uses, solver=solver))
            left = [b - self.samples[t] * o.energy[d] for d, b in enumerate(left)]
        return Schedule(tuple(plans), self.batteries, tuple(self.spend(chosen)), total,
                        sum(n * o.accuracy for n, o in zip(self.samples, chosen)) / total,
                        sum(n * o.latency_s for n, o in zip(self.samples, chosen)) / total,
                        self.objective, solver, time.perf_counter() - start)

    def battery_error(self, options: list[list[_Option]]) -> InfeasibleError:
        for d, cap in enumerate(self.batteries):
            least = sum(n * min(o.energy[d] for o in opts) for n, opts in zip(self.samples, options))
            if least > cap * (1 + _REL):
                name = self.periods[0].devices[d].name
                length = sum(p.demand.horizon_s for p in self.periods)
                return InfeasibleError(
                    f"the battery of device '{name}' ({cap:.4g} J) cannot last the forecast: {sum(self.samples):,.0f} "
                    f"samples over {len(self.periods)} periods ({length:g} s) need at least {least:.4g} J there, even "
                    "with the plan meeting each period's accuracy floor, latency budget and limits that spares it "
                    "most; lower the rates or the floors, or charge the battery")
        return InfeasibleError("no schedule meets every battery at once (each battery can be met alone); relax the "
                               "floors or the rates")


def _pareto(options: list[_Option]) -> list[_Option]:
    """The options no other beats or equals on accuracy, latency and every device's energy; of equal
    ones the smallest mask."""
    key = lambda o: (-o.accuracy, o.latency_s, o.energy, o.mask)  # noqa: E731
    kept: list[_Option] = []
    for o in sorted(options, key=key):
        if not any(k.accuracy >= o.accuracy - _ACC and k.latency_s <= o.latency_s * (1 + _REL)
                   and all(a <= b * (1 + _REL) for a, b in zip(k.energy, o.energy)) for k in kept):
            kept.append(o)
    return kept


def _score(objective: str, samples: Sequence[float], chosen: Sequence[_Option]) -> tuple[float, float]:
    acc = sum(n * o.accuracy for n, o in zip(samples, chosen))
    lat = sum(n * o.latency_s for n, o in zip(samples, chosen))
    return (-acc, lat) if objective == "accuracy" else (lat, -acc)


def _tolerance(objective: str, best: float, samples: float) -> float:
    """How far from the best first criterion (a sum over samples) still counts as a tie."""
    return _ACC * samples if objective == "accuracy" else _REL * abs(best)


def plan_schedule(profile: BlockProfile, accuracy: AccuracyModel, periods: Sequence[Period],
                  objective: str = "accuracy", batteries_j: Sequence[float] | None = None) -> Schedule:
    """The schedule of plans, one per period, best for ``objective`` with the batteries (default: period
    0's devices' ``battery_j``) lasting the whole forecast; see the module docstring."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array

    start = time.perf_counter()
    fc = _Forecast(profile, accuracy, periods, batteries_j, objective)
    options = [fc.options(t) for t in range(len(fc.periods))]
    cols = [(t, i) for t, opts in enumerate(options) for i in range(len(opts))]
    n = len(cols)
    acc = np.array([fc.samples[t] * options[t][i].accuracy for t, i in cols])
    lat = np.array([fc.samples[t] * options[t][i].latency_s for t, i in cols])
    rows: list[tuple[np.ndarray, float, float]] = []
    for t in range(len(options)):
        rows.append((np.array([1.0 if c[0] == t else 0.0 for c in cols]), 1.0, 1.0))
    for d, cap in enumerate(fc.batteries):
        if not math.isinf(cap):
            rows.append((np.array([fc.samples[t] * options[t][i].energy[d] / cap for t, i in cols]), -np.inf,
                         1.0 + _REL))
    first, second = ((-acc, lat) if objective == "accuracy" else (lat, -acc))
    total = sum(fc.samples)

    def solve(c: np.ndarray, extra: list[tuple[np.ndarray, float, float]]) -> np.ndarray | None:
        rs = rows + extra
        A = csr_array(np.vstack([r for r, _, _ in rs]))
        res = milp(c, integrality=np.ones(n), bounds=Bounds(np.zeros(n), np.ones(n)),
                   constraints=LinearConstraint(A, [lo for _, lo, _ in rs], [hi for _, _, hi in rs]),
                   options={"mip_rel_gap": 0.0})
        if res.status == 2:
            return None
        if res.status != 0 or res.x is None:
            raise TinysplitError(f"the integer program was not solved ({res.message}); report this with the inputs")
        return res.x

    x = solve(first, [])
    if x is None:
        raise fc.battery_error(options)
    best = float(first @ np.round(x))
    tol = _tolerance(objective, best, total)
    x = solve(second, [(first, -np.inf, best + tol)]) if len(cols) > len(options) else x
    if x is None:  # the first answer meets its own bound: cannot happen but for numerics
        raise TinysplitError("the tie-break program lost the first program's answer; report this with the inputs")
    chosen = [options[t][i] for (t, i), v in zip(cols, x) if v > 0.5]
    return fc.build(chosen, MILP, start)


def exhaustive_schedule(profile: BlockProfile, accuracy: AccuracyModel, periods: Sequence[Period],
                        objective: str = "accuracy", batteries_j: Sequence[float] | None = None) -> Schedule:
    """``plan_schedule``'s optimum by trying every combination of every period's allowed plans (small
    cases only; nothing pruned)."""
    start = time.perf_counter()
    fc = _Forecast(profile, accuracy, periods, batteries_j, objective)
    options = [fc.options(t, prune=False) for t in range(len(fc.periods))]
    count = math.prod(len(o) for o in options)
    if count > MAX_EXHAUSTIVE_COMBINATIONS:
        raise InputError(f"{count:,} combinations of plans; exhaustive search takes at most "
                         f"{MAX_EXHAUSTIVE_COMBINATIONS:,}: use plan_schedule()")
    feasible: list[tuple[tuple[float, float], tuple[_Option, ...]]] = []
    for combo in itertools.product(*options):
        spent = fc.spend(combo)
        if all(e <= cap * (1 + _REL) for e, cap in zip(spent, fc.batteries)):
            feasible.append((_score(objective, fc.samples, combo), combo))
    if not feasible:
        raise fc.battery_error(options)
    top = min(s[0] for s, _ in feasible)
    tol = _tolerance(objective, top, sum(fc.samples))
    best = min((f for f in feasible if f[0][0] <= top + tol), key=lambda f: f[0][1])
    return fc.build(best[1], "exhaustive", start)


__all__ = ["OBJECTIVES", "Period", "Schedule", "exhaustive_schedule", "plan_schedule"]
