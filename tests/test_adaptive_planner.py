"""Adaptive ResNet planner (tinysplit.methods.adaptive_resnet.planner): the model on small cases worked
out by hand, the integer program against exhaustive search on seeded random instances (one device
and chains of 2-3, with and without measured accuracies), infeasibility messages, bad input, fixed
masks and the plan's JSON. No torch; the whole file takes a few seconds."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tinysplit.errors import InputError
from tinysplit.methods.adaptive_resnet.planner import (MILP, AccuracyModel, Block, BlockProfile, Demand,
                                                       DeviceResources, InfeasibleError, Plan, candidate_count,
                                                       check_mask, evaluate, exhaustive, latency_of, plan)

REPO = Path(__file__).resolve().parents[1]
MS = 1e-3


def profile(**extra) -> BlockProfile:
    """Three blocks of 1, 2 and 3 ms at 100 MIPS on a 4 ms base: 10 ms in all."""
    args = dict(blocks=(("b0", 100_000, 10_000, 1000), ("b1", 200_000, 20_000, 1000), ("b2", 300_000, 30_000, 2000)),
                base_instructions=400_000, base_weight_bytes=5_000, arena_bytes=20_000, input_bytes=3072,
                output_bytes=100)
    return BlockProfile(**{**args, **extra})


def device(name: str = "mcu", **extra) -> DeviceResources:
    args = dict(instructions_per_s=1e8, memory_bytes=64_000, flash_bytes=1_000_000, energy_per_instruction_j=1e-9,
                energy_per_byte_j=1e-6, battery_j=math.inf, link_bps=1e6)
    return DeviceResources(name, **{**args, **extra})


def accuracy(measured=()) -> AccuracyModel:
    return AccuracyModel(0.9, (0.01, 0.02, 0.05), measured)


def demand(**extra) -> Demand:
    return Demand(**{**dict(request_rate=10.0, horizon_s=3600.0, accuracy_floor=0.875, host_s=0.5 * MS), **extra})


OUT_S = (100 + 24) * 8 / 1e6  # the output: one frame of 100 data bytes, 24 bytes of header and CRC, at 1 Mbit/s


def both(*args) -> tuple[Plan, Plan]:
    p, q = plan(*args), exhaustive(*args)
    assert (p.mask, p.placement) == (q.mask, q.placement)
    assert p.latency.total_s == pytest.approx(q.latency.total_s, rel=1e-12)
    assert p.solver == MILP and q.solver == "exhaustive" and p.violations == ()
    return p, q


# ---------------------------------------------------------------------------------------------
# the model, by hand
# ---------------------------------------------------------------------------------------------

def test_instructions_wire_bytes_and_latency_of_a_mask():
    prof = profile()
    assert prof.full_instructions == 1_000_000
    assert prof.instructions(0b101) == 1_000_000 - 100_000 - 300_000
    assert prof.wire_bytes(100) == 124
    assert prof.wire_bytes(1024) == 1048 and prof.wire_bytes(1025) == 1025 + 48  # two frames
    assert latency_of(prof, device(), demand(), 0) == pytest.approx(10 * MS + OUT_S + 0.5 * MS)
    assert latency_of(prof, device(), demand(), 0b010) == pytest.approx(8 * MS + OUT_S + 0.5 * MS)


def test_one_device_skips_the_block_that_saves_most_within_the_floor():
    # floor 87.5%: b0 alone (-1%) or b1 alone (-2%) fit, both (-3%) and b2 (-5%) do not; b1 saves 2 ms
    p, _ = both(profile(), accuracy(), device(), demand())
    assert p.mask == 0b010 and p.skipped == ("b1",) and p.placement == (0, None, 0)
    assert p.accuracy == pytest.approx(0.88) and not p.accuracy_measured
    assert p.latency.compute_s == pytest.approx(8 * MS)
    assert p.latency.transfer_s == pytest.approx(OUT_S) and p.latency.host_s == 0.5 * MS
    (d,) = p.devices
    assert (d.instructions, d.sent_bytes, d.blocks) == (800_000, 124, (0, 2))
    assert (d.ram_bytes, d.flash_bytes) == (20_000, 65_000)
    assert d.energy_j == pytest.approx(800_000e-9 + 124e-6)
    assert d.horizon_energy_j == pytest.approx(36_000 * d.energy_j)
    assert d.utilization == pytest.approx(10 * 8 * MS)


def test_a_measured_accuracy_above_its_estimate_admits_a_mask():
    # b0 + b1 are estimated at 87% (under the floor) but measured at 88%: 3 ms saved
    p, _ = both(profile(), accuracy({0b011: 0.88}), device(), demand())
    assert p.mask == 0b011 and p.accuracy == 0.88 and p.accuracy_measured
    assert p.latency.compute_s == pytest.approx(7 * MS)


def test_a_measured_accuracy_under_the_floor_excludes_a_mask():
    # b1 alone is estimated at 88% but measured at 86%: the planner falls back to b0 alone
    p, _ = both(profile(), accuracy({0b010: 0.86}), device(), demand())
    assert p.mask == 0b001 and p.latency.compute_s == pytest.approx(9 * MS)


def test_ties_go_to_the_higher_accuracy_then_the_smaller_mask():
    twins = (("a", 100_000, 1000, 1000), ("b", 100_000, 1000, 1000), ("c", 100_000, 1000, 1000))
    prof = profile(blocks=twins)
    p, _ = both(prof, AccuracyModel(0.9, (0.02, 0.01, 0.02)), device(), demand(accuracy_floor=0.875))
    assert p.mask == 0b010  # one block each: the one that costs least accuracy
    p, _ = both(prof, AccuracyModel(0.9, (0.01, 0.01, 0.01)), device(), demand(accuracy_floor=0.885))
    assert p.mask == 0b001  # all equal: the smallest mask
    p, _ = both(prof, AccuracyModel(0.9, (0.01, 0.01, 0.01), {0b100: 0.895}), device(), demand(accuracy_floor=0.885))
    assert p.mask == 0b100 and p.accuracy_measured  # measured better than its twins' estimates


def test_a_chain_moves_the_blocks_to_the_fast_device():
    # device 0 at 10 MIPS, device 1 at 1000 MIPS: b0's input (1000 B, one 1024 B frame) crosses once
    slow, fast = device("slow", instructions_per_s=1e7, link_bps=1e7), device("fast", instructions_per_s=1e9)
    p, _ = both(profile(), accuracy(), [slow, fast], demand(accuracy_floor=0.9))
    assert p.mask == 0 and p.placement == (1, 1, 1)
    assert p.latency.compute_s == pytest.approx(400_000 / 1e7 + 600_000 / 1e9)
    assert p.latency.transfer_s == pytest.approx(1024 * 8 / 1e7 + OUT_S)
    d0, d1 = p.devices
    assert (d0.blocks, d0.sent_bytes, d0.flash_bytes, d0.ram_bytes) == ((), 1024, 5_000, 20_000)
    assert (d1.blocks, d1.sent_bytes, d1.flash_bytes, d1.ram_bytes) == ((0, 1, 2), 124, 60_000, 20_000)


def test_a_device_that_runs_nothing_is_passed_over():
    # the middle device's RAM cannot hold the arena: device 0 sends straight to device 2 on its own link
    slow = device("slow", instructions_per_s=1e7, link_bps=1e7)
    small = device("small", instructions_per_s=1e9, memory_bytes=10_000)
    p, _ = both(profile(), accuracy(), [slow, small, device("far", instructions_per_s=1e9)], demand(accuracy_floor=0.9))
    assert p.placement == (2, 2, 2)
    assert [d.sent_bytes for d in p.devices] == [1024, 0, 124]
    assert p.devices[1].ram_bytes == 0 and p.devices[1].instructions == 0
    assert p.latency.transfer_s == pytest.approx(1024 * 8 / 1e7 + OUT_S)


def test_a_chain_splits_when_flash_is_short():
    # neither fast device holds all three blocks (60 kB); b2's input (2000 B: two frames) goes from 1 to 2
    slow = device("slow", instructions_per_s=1e7, link_bps=1e7)
    fast = [device(n, instructions_per_s=1e9, flash_bytes=35_000, link_bps=1e7) for n in ("f1", "f2")]
    p, _ = both(profile(), accuracy(), [slow, *fast], demand(accuracy_floor=0.9))
    assert p.placement == (1, 1, 2)
    assert [d.sent_bytes for d in p.devices] == [1024, 2048, 124]


# ---------------------------------------------------------------------------------------------
# the integer program against exhaustive search
# ---------------------------------------------------------------------------------------------

def random_instance(seed: int, devices: int):
    r = random.Random(seed)
    b = r.randint(2, 7 if devices == 1 else 5)
    blocks, drops = [], []
    for i in range(b):
        if i and r.random() < 0.3:  # a twin of the previous block: ties
            blocks.append((f"b{i}",) + blocks[-1][1:])
            drops.append(drops[-1])
            continue
        blocks.append((f"b{i}", r.randint(10_000, 200_000), r.randint(1000, 30_000), r.choice((256, 1024, 2048, 4096))))
        drops.append(r.uniform(-0.005, 0.05))
    arena = r.randint(10_000, 50_000)
    prof = BlockProfile(tuple(blocks), r.randint(10_000, 100_000), r.randint(1000, 20_000), arena, 3072,
                        r.randint(10, 3000))
    table = {}
    if r.random() < 0.6:
        for m in range(1, 1 << b):
            if r.random() < 0.4:
                estimate = 0.9 - sum(d for i, d in enumerate(drops) if m >> i & 1)
                table[m] = min(1.0, max(0.0, estimate + r.gauss(0, 0.02)))
    weights = sum(bl[2] for bl in blocks) + prof.base_weight_bytes
    rate = r.uniform(1, 50)
    full_j = 2e-9 * prof.full_instructions
    devs = [DeviceResources(f"d{d}", r.uniform(2e7, 2e8),
                            r.randint(arena, 2 * arena) if r.random() < 0.9 else arena // 2,
                            r.randint(weights // devices, 2 * weights), r.uniform(1e-9, 3e-9), r.uniform(1e-7, 1e-6),
                            math.inf if r.random() < 0.2 else rate * 3600 * full_j * r.uniform(0.5, 3.0),
                            r.uniform(1e5, 1e7)) for d in range(devices)]
    host_s = r.uniform(0, 2) * MS
    full_s = latency_of(prof, devs[0], Demand(rate, 3600.0, 0.5, host_s=host_s), 0)
    dm = Demand(rate, 3600.0, 0.9 - r.uniform(0, 0.1), r.choice((None, full_s * r.uniform(0.6, 1.5))),
                r.choice((1.0, 0.8)), host_s)
    return prof, AccuracyModel(0.9, tuple(drops), table), devs, dm


def kind(e: InfeasibleError) -> str:
    text = str(e)
    for k, word in (("accuracy", "the best accuracy of any mask"), ("battery", "cannot last the horizon"),
                    ("utilization", "cannot keep up"), ("latency", "the latency budget")):
        if word in text:
            return k
    assert "flash" in text and "RAM" in text, text
    return "memory"


@pytest.mark.parametrize("devices, seeds", [(1, 60), (2, 40), (3, 30)])
def test_the_integer_program_finds_the_exhaustive_optimum(devices, seeds):
    feasible, kinds, changed_by_table, admitted = 0, set(), 0, 0
    for seed in range(seeds):
        args = random_instance(seed, devices)
        try:
            q = exhaustive(*args)
        except InfeasibleError as e:
            with pytest.raises(InfeasibleError) as got:
                plan(*args)
            assert kind(got.value) == kind(e), (seed, str(got.value), str(e))
            kinds.add(kind(e))
            continue
        p = plan(*args)
        feasible += 1
        assert p.latency.total_s == pytest.approx(q.latency.total_s, rel=1e-9), seed
        assert (p.mask, p.accuracy) == (q.mask, pytest.approx(q.accuracy, abs=1e-12)), seed
        assert p.violations == () == q.violations
        again = evaluate(*args, p.mask, p.placement)
        assert again.latency == p.latency and again.violations == ()
        prof, acc, devs, dm = args
        if acc.measured:
            admitted += p.accuracy_measured and acc.estimate(p.mask) < dm.accuracy_floor
            try:
                changed_by_table += plan(prof, AccuracyModel(acc.acc_full, acc.drops), devs, dm).mask != p.mask
            except InfeasibleError:
                changed_by_table += 1
    assert feasible >= seeds // 3 and len(kinds) >= 2, (feasible, kinds)
    assert changed_by_table >= 2 and admitted >= 1, (changed_by_table, admitted)


def test_a_large_head_plans_quickly_with_a_full_measured_table():
    r = random.Random(7)
    blocks = tuple((f"b{i}", r.randint(10_000, 200_000), r.randint(1000, 30_000), 2048) for i in range(10))
    drops = tuple(r.uniform(0, 0.03) for _ in blocks)
    table = {m: 0.9 - sum(d for i, d in enumerate(drops) if m >> i & 1) + r.gauss(0, 0.02) for m in range(1, 1024)}
    args = (BlockProfile(blocks, 50_000, 10_000, 40_000, 3072, 1000), AccuracyModel(0.9, drops, table),
            [device(f"d{i}", instructions_per_s=r.uniform(5e7, 2e8)) for i in range(2)], demand(accuracy_floor=0.8))
    p, q = plan(*args), exhaustive(*args)
    assert p.mask == q.mask and p.latency.total_s == pytest.approx(q.latency.total_s, rel=1e-9)
    assert p.accuracy_measured and p.solve_s < 10


# ---------------------------------------------------------------------------------------------
# infeasible: which constraint, with its numbers
# ---------------------------------------------------------------------------------------------

def infeasible(*args) -> str:
    with pytest.raises(InfeasibleError) as a:
        plan(*args)
    with pytest.raises(InfeasibleError) as b:
        exhaustive(*args)
    assert str(a.value) == str(b.value)
    return str(a.value)


def test_a_floor_above_the_best_accuracy():
    msg = infeasible(profile(), accuracy(), device(), demand(accuracy_floor=0.95))
    assert "the accuracy floor 95.00% cannot be met: the best accuracy of any mask is 90.00% (the full model's)" in msg
    # a block whose removal helps: the best mask is not the full model
    msg = infeasible(profile(), AccuracyModel(0.9, (-0.01, 0.02, 0.05)), device(), demand(accuracy_floor=0.95))
    assert "91.00% (mask 1, skipping b0)" in msg


def test_memory_and_flash_too_small():
    msg = infeasible(profile(), accuracy(), device(memory_bytes=10_000), demand())
    assert "the head does not fit device 'mcu'" in msg and "20,000 B of RAM" in msg and "10,000 B" in msg
    msg = infeasible(profile(), accuracy(), device(flash_bytes=50_000), demand(accuracy_floor=0.5))
    assert "65,000 B of flash" in msg and "50,000 B" in msg and "whatever the mask" in msg
    msg = infeasible(profile(), accuracy(), [device("a", memory_bytes=1000), device("b")], demand())
    assert "device 0 ('a') receives the input" in msg and "20,000 B of RAM (it has 1,000 B)" in msg
    # over a chain, skipping helps: only b2 (30 kB) does not fit anywhere, and the floor forbids skipping it
    small = [device("a", flash_bytes=30_000), device("b", flash_bytes=25_000)]
    assert plan(profile(), accuracy(), small, demand(accuracy_floor=0.845)).skipped == ("b2",)
    msg = infeasible(profile(), accuracy(), small, demand())
    assert "cannot be placed in order" in msg and "'a' 25,000 B, 'b' 25,000 B" in msg and "60,000 B" in msg


def test_a_battery_that_cannot_last_the_horizon():
    # the least energy meeting the floor: skip b1: 800,000 instructions and 124 bytes = 0.000924 J a sample
    msg = infeasible(profile(), accuracy(), device(battery_j=20.0), demand())
    assert "the battery of device 'mcu' (20 J) cannot last the horizon: 36,000 samples (10/s for 3600 s)" in msg
    assert "need 33.26 J there (0.000924 J each)" in msg and "(mask 2)" in msg
    p = plan(profile(), accuracy(), device(battery_j=34.0), demand())
    assert p.mask == 0b010 and p.devices[0].horizon_energy_j == pytest.approx(33.264)


def test_a_rate_the_device_cannot_keep_up_with():
    msg = infeasible(profile(), accuracy(), device(), demand(request_rate=200.0))
    assert "device 'mcu' cannot keep up with 200 samples/s" in msg and "8.00 ms per sample" in msg
    assert "utilization 1.6 above the limit 1" in msg


def test_a_latency_budget_below_the_fastest_plan():
    msg = infeasible(profile(), accuracy(), device(), demand(latency_budget_s=5 * MS))
    assert ("the latency budget 5.00 ms cannot be met: the fastest plan meeting the accuracy floor 87.50% (and the "
            "memory, battery and utilization limits) takes 9.49 ms (mask 2: compute 8.00 ms, transfer 0.99 ms, host "
            "0.50 ms)") in msg
    assert plan(profile(), accuracy(), device(), demand(latency_budget_s=9.5 * MS)).mask == 0b010


# ---------------------------------------------------------------------------------------------
# fixed masks and bad input
# ---------------------------------------------------------------------------------------------

def test_evaluate_reports_what_a_fixed_mask_breaks():
    dm = demand(latency_budget_s=9.5 * MS, max_utilization=0.09)
    full = evaluate(profile(), accuracy(), device(battery_j=30.0), dm, 0)
    assert full.solver == "fixed" and full.violations == ("latency_budget", "utilization", "battery")
    assert full.latency.total_s == pytest.approx(latency_of(profile(), device(), dm, 0))
    assert evaluate(profile(), accuracy(), device(), dm, 0b100).violations == ("accuracy_floor",)
    chosen = plan(profile(), accuracy(), device(battery_j=34.0), demand(latency_budget_s=9.5 * MS))
    assert evaluate(profile(), accuracy(), device(battery_j=34.0), demand(latency_budget_s=9.5 * MS), chosen.mask) \
        .latency == chosen.latency
    chain = evaluate(profile(), accuracy(), [device("a"), device("b", memory_bytes=100)], demand(), 0, (0, 1, 1))
    assert chain.violations == ("memory",) and [d.blocks for d in chain.devices] == [(0,), (1, 2)]


@pytest.mark.parametrize("mask, words", [(8, "bits 3 and above"), (0b1010, "skips block 3"), (-1, "whole number"),
                                         (True, "whole number"), (1.0, "whole number")])
def test_bad_masks(mask, words):
    with pytest.raises(InputError, match=words):
        check_mask(mask, 3)
    with pytest.raises(InputError, match=words):
        evaluate(profile(), accuracy(), device(), demand(), mask)
    with pytest.raises(InputError, match=words):
        latency_of(profile(), device(), demand(), mask)
    with pytest.raises(InputError, match=words):
        accuracy({mask: 0.5})


@pytest.mark.parametrize("make, words", [
    (lambda: demand(request_rate=0.0), "request_rate must be positive"),
    (lambda: demand(request_rate=-3.0), "request_rate must be positive"),
    (lambda: demand(horizon_s=0), "horizon_s must be positive"),
    (lambda: demand(accuracy_floor=1.5), "accuracy_floor must be at most 1"),
    (lambda: demand(accuracy_floor=-0.1), "accuracy_floor must be zero or more"),
    (lambda: demand(latency_budget_s=0.0), "latency_budget_s must be positive"),
    (lambda: demand(max_utilization=1.2), "max_utilization must be at most 1"),
    (lambda: demand(request_rate=math.nan), "finite number"),
    (lambda: device(instructions_per_s=0), "instructions_per_s must be positive"),
    (lambda: device(link_bps=-1.0), "link_bps must be positive"),
    (lambda: device(battery_j=0.0), "battery_j must be positive"),
    (lambda: device(memory_bytes=1.5), "whole number"),
    (lambda: AccuracyModel(1.2, (0.1,)), "acc_full must be at most 1"),
    (lambda: AccuracyModel(0.9, (0.1,), {1: 1.3}), "at most 1"),
    (lambda: AccuracyModel(0.9, (0.1,), {0: 0.8}), "must agree"),
    (lambda: profile(blocks=(("a", 1, 1, 1), ("a", 2, 2, 2))), "repeat"),
    (lambda: profile(blocks=(("a", 1, 1),)), "tuple"),
    (lambda: profile(blocks=()), "1 to 32"),
    (lambda: profile(blocks=tuple((f"b{i}", 1, 1, 1) for i in range(33))), "1 to 32"),
    (lambda: profile(output_bytes=0), "output_bytes must be positive"),
    (lambda: Block("a", -5, 1, 1), "instructions must be zero or more"),
    (lambda: plan(profile(), AccuracyModel(0.9, (0.1, 0.1)), device(), demand()), "2 drops for 3 blocks"),
    (lambda: plan(profile(), accuracy(), [], demand()), "at least one device"),
    (lambda: plan(profile(), accuracy(), [device(), device()], demand()), "device names must differ"),
    (lambda: plan(profile(), accuracy(), device(), 0.9), "demand must be a Demand"),
    (lambda: evaluate(profile(), accuracy(), [device("a"), device("b")], demand(), 0, (1, 0, 1)), "non-decreasing"),
    (lambda: evaluate(profile(), accuracy(), [device("a"), device("b")], demand(), 1, (0, 0, 1)), "skipped by mask"),
    (lambda: evaluate(profile(), accuracy(), [device("a"), device("b")], demand(), 0, (0, 2, 2)), "not one of 0..1"),
    (lambda: evaluate(profile(), accuracy(), device(), demand(), 0, (0, 0)), "3 entries"),
])
def test_bad_input(make, words):
    with pytest.raises(InputError, match=words):
        make()


def test_exhaustive_refuses_large_heads():
    assert candidate_count(3, 1) == 8 and candidate_count(2, 2) == 1 + 2 * 2 + 3
    blocks = tuple((f"b{i}", 1000, 100, 100) for i in range(17))
    args = (AccuracyModel(0.9, (0.0,) * 17), device(), demand(accuracy_floor=0.5))
    with pytest.raises(InputError, match="at most 16 blocks"):
        exhaustive(profile(blocks=blocks), *args)
    assert plan(profile(blocks=blocks), *args).mask == (1 << 17) - 1  # nothing lost: skip them all
    with pytest.raises(InputError, match="candidates: use plan"):
        exhaustive(profile(blocks=blocks[:16]), AccuracyModel(0.9, (0.0,) * 16), [device("a"), device("b")],
                   demand(accuracy_floor=0.5))


# ---------------------------------------------------------------------------------------------
# JSON and imports
# ---------------------------------------------------------------------------------------------

def test_plan_json_validates_against_its_schema():
    schema = json.loads((REPO / "tinysplit/schemas/adaptive_plan.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    plans = [plan(profile(), accuracy({0b011: 0.88}), device(battery_j=50.0), demand()),
             plan(profile(), accuracy(), [device("a", instructions_per_s=1e7), device("b", instructions_per_s=1e9)],
                  demand(latency_budget_s=0.1)),
             evaluate(profile(), accuracy(), device(battery_j=1.0), demand(latency_budget_s=MS), 0b111)]
    for p in plans:
        data = json.loads(json.dumps(p.to_json()))
        validator.validate(data)
    single, chain, fixed = (p.to_json() for p in plans)
    assert single["mask"] == 3 and single["skipped"] == ["b0", "b1"] and single["placement"] == [None, None, 0]
    assert single["accuracy"] == {"value": 0.88, "source": "measured"} and single["devices"][0]["battery_j"] == 50.0
    assert chain["devices"][0]["battery_j"] is None and chain["placement"] == [1, None, 1]
    assert fixed["violations"] == ["accuracy_floor", "latency_budget", "battery"] and fixed["solver"]["name"] == "fixed"
    bad = dict(single, mask=-1)
    assert not validator.is_valid(bad)


def test_importing_the_planner_is_light():
    code = ("import sys, tinysplit.methods.adaptive_resnet, tinysplit.methods.adaptive_resnet.planner; "
            "print(sorted(m for m in ('scipy', 'numpy', 'torch') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("devices, seeds", [(1, 40), (2, 25)])
def test_the_accuracy_objective_finds_the_exhaustive_optimum(devices, seeds):
    """The paper's other objective: the highest accuracy the resources allow (ties: least latency)."""
    feasible, fuller = 0, 0
    for seed in range(seeds):
        args = random_instance(seed, devices)
        try:
            q = exhaustive(*args, objective="accuracy")
        except InfeasibleError:
            with pytest.raises(InfeasibleError):
                plan(*args, objective="accuracy")
            continue
        p = plan(*args, objective="accuracy")
        feasible += 1
        assert p.accuracy == pytest.approx(q.accuracy, abs=1e-12), seed
        assert p.latency.total_s == pytest.approx(q.latency.total_s, rel=1e-9), seed
        assert p.mask == q.mask and p.violations == () == q.violations, seed
        fast = plan(*args)
        assert p.accuracy >= fast.accuracy - 1e-12 and p.latency.total_s >= fast.latency.total_s * (1 - 1e-9)
        fuller += p.accuracy > fast.accuracy + 1e-9
    assert feasible >= seeds // 3 and fuller >= 2, (feasible, fuller)


def test_unknown_objective():
    with pytest.raises(InputError, match="objective must be one of latency, accuracy"):
        plan(*random_instance(0, 1), objective="energy")
