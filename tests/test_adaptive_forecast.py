"""Planning over a known load forecast (tinysplit.methods.adaptive_resnet.forecast): a rising request
rate worked out by hand (the planner that holds today's rate runs the battery out; the forecast one
does not), the integer program against exhaustive search on seeded random forecasts, infeasibility
messages and bad input. No torch; a few seconds."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from test_adaptive_planner import MS, accuracy, device, profile, random_instance
from tinysplit.errors import InputError
from tinysplit.methods.adaptive_resnet.forecast import Period, exhaustive_schedule, plan_schedule
from tinysplit.methods.adaptive_resnet.planner import MILP, Demand, InfeasibleError, evaluate, plan


def demand(rate: float, length: float, **extra) -> Demand:
    return Demand(**{**dict(request_rate=rate, horizon_s=length, accuracy_floor=0.85, host_s=0.5 * MS), **extra})


# profile(): base 4 ms + blocks of 1, 2, 3 ms at 100 MIPS; 1 nJ per instruction and 1 uJ per byte sent.
# The full head: 1,000,000 instructions = 1 mJ, + 124 uJ for the output = 1.124 mJ a sample. Accuracy
# 0.9 - 0.01 per block 0, 0.02 per block 1, 0.05 per block 2; at the floor 0.85 the allowed masks are
# 0 (0.90, 1.124 mJ), 1 (0.89, 1.024 mJ), 2 (0.88, 0.924 mJ), 3 (0.87, 0.824 mJ) and 4 (0.85, 0.824 mJ,
# which mask 3 beats).
FULL_J = 1e-3 + 124e-6
MJ = {0: FULL_J, 1: FULL_J - 0.1e-3, 2: FULL_J - 0.2e-3, 3: FULL_J - 0.3e-3}
ACC = {0: 0.90, 1: 0.89, 2: 0.88, 3: 0.87}


def periods_at(*rates: float) -> list[Period]:
    return [Period([device()], demand(r, 100.0)) for r in rates]


def test_a_rising_rate_worked_out_by_hand():
    # 100 then 900 samples, 0.9 J: 0.824 mJ a sample is the least (0.8240 J); the 0.076 J spare buy the
    # full head for the first 100 samples (0.03 J), not one step up for the 900 (0.09 J)
    s = plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), batteries_j=[0.9])
    assert s.solver == MILP and [p.mask for p in s.plans] == [0, 3]
    assert s.energy_j[0] == pytest.approx(100 * MJ[0] + 900 * MJ[3])
    assert s.mean_accuracy == pytest.approx((100 * ACC[0] + 900 * ACC[3]) / 1000)
    assert s.plans[0].devices[0].battery_j == 0.9
    assert s.plans[1].devices[0].battery_j == pytest.approx(0.9 - 100 * MJ[0])
    assert s.plans[1].devices[0].horizon_energy_j == pytest.approx(900 * MJ[3])
    q = exhaustive_schedule(profile(), accuracy(), periods_at(1.0, 9.0), batteries_j=[0.9])
    assert q.solver == "exhaustive" and [p.mask for p in q.plans] == [0, 3]
    # with the latency objective every period skips all the floor allows: mask 3 is the fastest
    s = plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), "latency", [0.9])
    assert [p.mask for p in s.plans] == [3, 3]
    # a mains-powered device: no battery row, the full head throughout
    s = plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), batteries_j=[math.inf])
    assert [p.mask for p in s.plans] == [0, 0] and math.isinf(s.plans[1].devices[0].battery_j)


def test_holding_todays_rate_runs_the_battery_out_where_the_forecast_lasts():
    # 100, 400, 1,000 samples and 1.25 J (the least, mask 3 throughout, is 1.236 J). Holding today's
    # rate for the rest: at t = 0, 300 samples from 1.25 J: the full head; at t = 1, 800 from 1.1376 J:
    # the full head again; at t = 2, 1,000 samples from 0.688 J cannot be served (0.824 J at least).
    periods, battery = periods_at(1.0, 4.0, 10.0), 1.25
    s = plan_schedule(profile(), accuracy(), periods, batteries_j=[battery])
    q = exhaustive_schedule(profile(), accuracy(), periods, batteries_j=[battery])
    assert s.mean_accuracy == pytest.approx(q.mean_accuracy, abs=1e-12)
    assert s.energy_j[0] <= battery * (1 + 1e-9) and s.mean_accuracy >= ACC[3]
    left, masks, died = battery, [], None
    for t, p in enumerate(periods):
        rest = sum(x.demand.horizon_s for x in periods[t:])
        try:
            chosen = plan(profile(), accuracy(), [replace(device(), battery_j=left)],
                          replace(p.demand, horizon_s=rest), objective="accuracy")
        except InfeasibleError as e:
            died = (t, str(e))
            break
        masks.append(chosen.mask)
        left -= p.demand.request_rate * p.demand.horizon_s * chosen.devices[0].energy_j
    assert masks == [0, 0] and left == pytest.approx(battery - 500 * FULL_J)
    assert died is not None and died[0] == 2 and "cannot last the horizon" in died[1], died


def random_forecast(seed: int, devices: int, periods: int):
    prof, acc, devs, dm = random_instance(seed, devices)
    r = random.Random(1000 + seed)
    out = []
    for _ in range(periods):
        ds = [replace(d, link_bps=d.link_bps * r.uniform(0.3, 1.0)) for d in devs]
        out.append(Period(ds, replace(dm, request_rate=dm.request_rate * r.uniform(0.2, 2.0),
                                      horizon_s=r.choice((600.0, 1200.0)), accuracy_floor=dm.accuracy_floor
                                      - r.uniform(0, 0.02))))
    samples = sum(p.demand.request_rate * p.demand.horizon_s for p in out)
    full_j = max(evaluate(prof, acc, devs, out[0].demand, 0).devices[d].energy_j for d in range(devices))
    batteries = [math.inf if r.random() < 0.15 else samples * full_j * r.uniform(0.3, 1.1) for _ in devs]
    return prof, acc, out, batteries


@pytest.mark.parametrize("objective", ["accuracy", "latency"])
@pytest.mark.parametrize("devices, periods, seeds", [(1, 3, 40), (2, 2, 20)])
def test_the_integer_program_finds_the_exhaustive_optimum(objective, devices, periods, seeds):
    feasible, battery_bound, kinds = 0, 0, set()
    for seed in range(seeds):
        prof, acc, ps, batteries = random_forecast(seed, devices, periods)
        if prof.blocks and len(prof.blocks) > (5 if devices == 1 else 4):
            prof = replace(prof, blocks=prof.blocks[:4])
            acc = type(acc)(acc.acc_full, acc.drops[:4], {m: a for m, a in acc.measured if m < 16})
        try:
            q = exhaustive_schedule(prof, acc, ps, objective, batteries)
        except InfeasibleError as e:
            with pytest.raises(InfeasibleError) as got:
                plan_schedule(prof, acc, ps, objective, batteries)
            assert ("forecast" in str(e)) == ("forecast" in str(got.value)), (seed, str(e), str(got.value))
            kinds.add("battery" if "forecast" in str(e) else "period")
            continue
        s = plan_schedule(prof, acc, ps, objective, batteries)
        feasible += 1
        assert s.mean_accuracy == pytest.approx(q.mean_accuracy, abs=1e-9), seed
        assert s.mean_latency_s == pytest.approx(q.mean_latency_s, rel=1e-9), seed
        for d, cap in enumerate(batteries):
            assert s.energy_j[d] <= cap * (1 + 1e-9)
        for p, period in zip(s.plans, ps):  # each period's own constraints hold
            again = evaluate(prof, acc, [replace(d, battery_j=math.inf) for d in period.devices], period.demand,
                             p.mask, p.placement)
            assert again.violations == (), (seed, again.violations)
        # the batteries bind: planning each period alone, each with all the energy, would spend more
        alone = []
        for period in ps:
            try:
                alone.append(plan(prof, acc, [replace(d, battery_j=math.inf) for d in period.devices], period.demand,
                                  objective))
            except InfeasibleError:
                break
        else:
            spent = [sum(p.devices[d].horizon_energy_j for p in alone) for d in range(devices)]
            battery_bound += any(e > c * (1 + 1e-9) for e, c in zip(spent, batteries))
    assert feasible >= seeds // 3 and kinds, (feasible, kinds)
    if objective == "accuracy":  # (the fastest plans are the cheapest ones: there the batteries rarely bind)
        assert battery_bound >= 2, battery_bound


def test_a_period_whose_own_constraints_cannot_be_met_is_named():
    periods = periods_at(1.0, 9.0) + [Period([device()], demand(1.0, 100.0, accuracy_floor=0.95))]
    with pytest.raises(InfeasibleError, match=r"period 2: the accuracy floor 95.00% cannot be met"):
        plan_schedule(profile(), accuracy(), periods)
    periods = periods_at(1.0, 9.0) + [Period([device()], demand(1.0, 100.0, latency_budget_s=5 * MS))]
    with pytest.raises(InfeasibleError, match=r"period 2: the latency budget 5.00 ms cannot be met"):
        plan_schedule(profile(), accuracy(), periods)


def test_a_battery_that_cannot_last_the_forecast():
    with pytest.raises(InfeasibleError, match=r"battery of device 'mcu' \(0.5 J\) cannot last the forecast: 1,000 "
                                              r"samples over 2 periods \(200 s\) need at least 0.824 J"):
        plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), batteries_j=[0.5])


@pytest.mark.parametrize("make, words", [
    (lambda: plan_schedule(profile(), accuracy(), []), "at least one period"),
    (lambda: plan_schedule(profile(), accuracy(), [object()]), "period 0 must be a Period"),
    (lambda: plan_schedule(profile(), accuracy(), [Period([device()], demand(1, 1)),
                                                   Period([device("other")], demand(1, 1))]), "same chain"),
    (lambda: plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), batteries_j=[1.0, 2.0]), "one positive battery"),
    (lambda: plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), batteries_j=[0.0]), "one positive battery"),
    (lambda: plan_schedule(profile(), accuracy(), periods_at(1.0, 9.0), objective="cheap"), "objective must be one of"),
])
def test_bad_input(make, words):
    with pytest.raises(InputError, match=words):
        make()
