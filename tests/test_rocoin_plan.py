"""RoCoIn planning (tinysplit.methods.rocoin): knowledge partition, follow-the-leader grouping and
Kuhn-Munkres assignment on small cases with answers worked out by hand, the fleet and plan files
and their errors, the student zoo's profiles, and ``tinysplit rocoin-plan``.

Only the last test runs QEMU (marked emulator); the others take well under a second each."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinysplit.errors import InputError
from tinysplit.methods.rocoin import zoo as zoo_mod
from tinysplit.methods.rocoin.assign import assign, choice, fitting_students, match, weight_matrix
from tinysplit.methods.rocoin.fleet import (APP_RAM_RESERVE_BYTES, FLASH_RESERVE_BYTES, fleet_from_dict,
                                            load_fleet)
from tinysplit.methods.rocoin.grouping import group_devices
from tinysplit.methods.rocoin.latency import group_latency, wire_bytes
from tinysplit.methods.rocoin.partition import affinity, filter_activations, ncut, partition_filters
from tinysplit.methods.rocoin.plan import PlanSettings, load_plan, plan_from_dict, save_plan
from tinysplit.methods.rocoin.planner import make_plan
from tinysplit.methods.rocoin.zoo import StudentProfile, profile_zoo

BOARD = "qemu-mps2-an386"  # 25 MHz, 4 MiB flash and RAM, stack 8 KiB, uart + udp
MB = 1_000_000


def dev(id_: str, clock_mhz: float = 25, p: float = 0.1, rate: float = 250_000, **extra) -> dict:
    return {"id": id_, "board": BOARD, "link_rate_bps": rate, "outage_probability": p,
            "clock_hz": int(clock_mhz * MB), **extra}


def fleet_of(*devices: dict, source: str = "fleet.yaml"):
    return fleet_from_dict({"devices": list(devices)}, source)


def student(name: str, instructions: int, output_bytes: int = 97, const: int = 10_000, arena: int = 5_000,
            board: str = BOARD) -> StudentProfile:
    return StudentProfile(name, f"{name}.tflite", "0" * 64, const, arena, 64, output_bytes, ((board, instructions),))


# ---------------------------------------------------------------------------------------------
# knowledge partition
# ---------------------------------------------------------------------------------------------

def test_affinity_is_the_papers_sum_over_images():
    # image 1: a = (1, 2, 4): A01 = 1*2*1 = 2, A02 = 1*4*3 = 12, A12 = 2*4*2 = 16
    # image 2: a = (3, 0, 1): A01 = 0, A02 = 3*1*2 = 6, A12 = 0
    a = np.array([[1.0, 2.0, 4.0], [3.0, 0.0, 1.0]])
    assert np.array_equal(affinity(a), [[0, 2, 18], [2, 0, 16], [18, 16, 0]])


def test_affinity_with_nonn_preprocessing():
    # normalized by each image's max: (1/4, 1/2, 1), (1, 0, 1/3); top 2 per image: (0, 1/2, 1), (1, 0, 1/3)
    # A01 = 0; A02 = 1 * 1/3 * 2/3 = 2/9 (image 2); A12 = 1/2 * 1 * 1/2 = 1/4 (image 1)
    a = np.array([[1.0, 2.0, 4.0], [3.0, 0.0, 1.0]])
    want = np.array([[0, 0, 2 / 9], [0, 0, 1 / 4], [2 / 9, 1 / 4, 0]])
    assert np.allclose(affinity(a, normalize=True, top=2), want)
    assert np.allclose(affinity(a, normalize=True), affinity(a / a.max(axis=1, keepdims=True)))
    with pytest.raises(InputError, match="non-negative"):
        affinity(a - 2)


def test_filter_activations_are_spatial_means():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 3, 4, 6))  # N, M, H, W
    means = filter_activations(maps)
    assert means.shape == (5, 3) and np.allclose(means[2, 1], maps[2, 1].mean())
    assert np.allclose(filter_activations(maps.transpose(0, 2, 3, 1), channels_last=True), means)
    assert np.array_equal(filter_activations(means), means)
    with pytest.raises(InputError, match="shape"):
        filter_activations(np.zeros((2, 3, 4)))


def block_affinity(sizes: list[int], eps: float, order: np.ndarray) -> np.ndarray:
    """Dense blocks of the given sizes (weight 1), eps between blocks, filters renumbered by ``order``."""
    n = sum(sizes)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    A = np.where(labels[:, None] == labels[None, :], 1.0, eps)
    np.fill_diagonal(A, 0)
    P = np.zeros((n, n))
    P[order, np.arange(n)] = 1  # filter i of the blocks becomes filter order[i]
    return P @ A @ P.T


@pytest.mark.parametrize("assign_labels", ["kmeans", "cluster_qr"])
@pytest.mark.parametrize("eps", [0.0, 0.02])
def test_block_diagonal_affinity_splits_into_its_blocks(assign_labels, eps):
    order = np.array([4, 0, 7, 2, 8, 5, 1, 3, 6])  # blocks {4, 0, 7}, {2, 8, 5, 1}, {3, 6}
    A = block_affinity([3, 4, 2], eps, order)
    parts = partition_filters(A, 3, seed=0, assign_labels=assign_labels)
    assert parts == ((0, 4, 7), (1, 2, 5, 8), (3, 6))  # sorted, ordered by the smallest filter
    assert partition_filters(A, 3, seed=0, assign_labels=assign_labels) == parts  # deterministic
    if eps == 0:
        assert ncut(A, parts) == 0


def test_ncut_of_two_blobs_by_hand():
    # two pairs {0,1} and {2,3} of weight 1, every cross edge 0.1: degree 1.2 each, vol 2.4 per part
    A = np.array([[0, 1, .1, .1], [1, 0, .1, .1], [.1, .1, 0, 1], [.1, .1, 1, 0]])
    parts = partition_filters(A, 2)
    assert parts == ((0, 1), (2, 3))
    assert ncut(A, parts) == pytest.approx(0.5 * (0.4 / 2.4 + 0.4 / 2.4))  # 1/6
    assert ncut(A, [(0, 2), (1, 3)]) == pytest.approx(0.5 * 2 * (2.2 / 2.4))  # 11/12: the worse split
    assert partition_filters(A, 1) == ((0, 1, 2, 3),)


def test_partition_refuses_bad_inputs():
    A = np.array([[0, 1, .1, .1], [1, 0, .1, .1], [.1, .1, 0, 1], [.1, .1, 1, 0]])
    with pytest.raises(InputError, match=r"cannot split 4 filters into 5 parts"):
        partition_filters(A, 5)
    with pytest.raises(InputError, match=r"into 0 parts"):
        partition_filters(A, 0)
    B = A.copy()
    B[0, 2] = 0.5
    with pytest.raises(InputError, match=r"symmetric: A\[0, 2\] = 0.5 but A\[2, 0\] = 0.1"):
        partition_filters(B, 2)
    with pytest.raises(InputError, match="non-negative"):
        partition_filters(A - 0.5, 2)
    with pytest.raises(InputError, match="square"):
        partition_filters(np.zeros((2, 3)), 2)
    with pytest.raises(InputError, match="exactly once"):
        ncut(A, [(0, 1), (1, 2, 3)])


# ---------------------------------------------------------------------------------------------
# grouping (every device has the same memory, so the distance is |clock - clock'| / 100 MHz)
# ---------------------------------------------------------------------------------------------

GROUPING_FLEET = [dev("a", 100, .5), dev("b", 90, .5), dev("c", 95, .5), dev("d", 96, .5), dev("e", 50, .5),
                  dev("f", 60, .1), dev("g", 80, .3)]


def ids(groups) -> list[list[str]]:
    return [list(g.ids) for g in groups]


def test_follow_the_leader_by_hand():
    """d_th 0.15, p_th 0.2: b joins a (0.1 away; {a} fails with 0.5 > 0.2); c joins (0 from the centroid
    0.95; 0.25 > 0.2); d is 0.01 from {a,b,c} but that group fails with 0.125 <= 0.2 already, so d starts
    a group; e is 0.46 from {d}: new group; f joins e (0.1 away); g is 0.16 from {d} (> d_th), and {e,f}
    fails with 0.05: new group."""
    groups = group_devices(fleet_of(*GROUPING_FLEET).devices, d_th=0.15, p_th=0.2)
    assert ids(groups) == [["a", "b", "c"], ["d"], ["e", "f"], ["g"]]
    assert groups[0].centroid == pytest.approx((1, 1, 0.95))
    assert groups[2].centroid == pytest.approx((1, 1, 0.55))
    assert [g.failure_probability for g in groups] == pytest.approx([0.125, 0.5, 0.05, 0.3])
    assert [g.meets_p_th(0.2) for g in groups] == [True, False, True, False]
    assert [g.index for g in groups] == [0, 1, 2, 3]


def test_d_th_decides():
    """With d_th 0.2, g (0.16 from {d}) joins d's group."""
    groups = group_devices(fleet_of(*GROUPING_FLEET).devices, d_th=0.2, p_th=0.2)
    assert ids(groups) == [["a", "b", "c"], ["d", "g"], ["e", "f"]]


def test_p_th_decides():
    """With p_th 0.1, {a,b,c} (0.125 > 0.1) still needs a replica, so d joins it; then g is 0.25 from {e,f}."""
    groups = group_devices(fleet_of(*GROUPING_FLEET).devices, d_th=0.15, p_th=0.1)
    assert ids(groups) == [["a", "b", "c", "d"], ["e", "f"], ["g"]]


def test_memory_is_a_coordinate():
    """Same clock, half the RAM for a model: 0.5 away on the RAM axis."""
    half = 4 * 1024 * 1024 // 2
    small = dev("small", 100, .5, memory={"ram_bytes": half + APP_RAM_RESERVE_BYTES + 8192})
    fleet = fleet_of(dev("big", 100, .5), small)
    assert fleet.devices[1].model_ram_bytes == half
    assert ids(group_devices(fleet.devices, 0.49, 0.2)) == [["big"], ["small"]]
    full = 4 * 1024 * 1024 - APP_RAM_RESERVE_BYTES - 8192
    assert ids(group_devices(fleet.devices, (full - half) / full + 1e-9, 0.2)) == [["big", "small"]]


def test_grouping_thresholds_checked():
    devices = fleet_of(dev("a")).devices
    for d_th, p_th in ((-0.1, 0.2), (float("nan"), 0.2), (0.1, 1.0), (0.1, -0.1)):
        with pytest.raises(InputError, match="d_th|p_th"):
            group_devices(devices, d_th, p_th)


# ---------------------------------------------------------------------------------------------
# assignment
# ---------------------------------------------------------------------------------------------

def test_kuhn_munkres_matches_brute_force():
    W = np.array([[4.0, 1, 3], [2, 0, 5], [3, 2, 2]])
    # by hand: (0->0, 1->2, 2->1) = 4 + 5 + 2 = 11; the other five permutations give 6, 5, 9, 7, 6
    assert match(W) == (0, 2, 1)
    best = max(itertools.permutations(range(3)), key=lambda p: sum(W[i, p[i]] for i in range(3)))
    assert match(W) == best
    rng = np.random.default_rng(0)
    for _ in range(20):
        R = rng.random((4, 4))
        brute = max(sum(R[i, p[i]] for i in range(4)) for p in itertools.permutations(range(4)))
        got = match(R)
        assert sum(R[i, got[i]] for i in range(4)) == pytest.approx(brute)


def three_groups():
    """G0: 1 MHz, 1 kbit/s, room for the small student only; G1: 2 MHz, 2 kbit/s; G2: 4 MHz, 500 bit/s.
    Every student's output is 97 B = 125 B on the wire (one frame) = 1000 bits."""
    ram = lambda model: model + APP_RAM_RESERVE_BYTES + 8192  # noqa: E731
    fleet = fleet_of(dev("g0", 1, 0.1, 1000, memory={"ram_bytes": ram(20_000)}),
                     dev("g1", 2, 0.1, 2000), dev("g2", 4, 0.1, 500))
    groups = group_devices(fleet.devices, d_th=0.0, p_th=0.05)  # nothing is near enough: one group each
    assert ids(groups) == [["g0"], ["g1"], ["g2"]]
    zoo = (student("big", 4_000_000, const=100_000, arena=50_000), student("small", 1_000_000))
    return groups, zoo


def test_assignment_by_hand():
    """w = R / (|P| (R / c + Q / r)) with Q = 1000 bits:
    G0 (small only): 1e6 / (1 + 1) = 500,000 / |P|   (big would give 4e6 / (4 + 1) = 800,000: filtered out)
    G1: big 4e6 / (2 + 0.5) = 1.6e6 / |P|; small 1e6 / (0.5 + 0.5) = 1e6 / |P|  -> big
    G2: big 4e6 / (1 + 2) = 1.333e6 / |P|; small 1e6 / (0.25 + 2) = 444,444 / |P| -> big
    Partitions of 1, 2 and 4 filters: W[k, p] = u_k / |P_p|, so the best total pairs the largest u with
    the smallest partition (rearrangement): G1 -> P0, G2 -> P1, G0 -> P2, total 1.6e6 + 666,667 + 125,000."""
    assert wire_bytes(97) == 125
    groups, zoo = three_groups()
    sizes = [1, 2, 4]
    W, choices = weight_matrix(groups, sizes, zoo)
    u = np.array([500_000, 1_600_000, 4_000_000 / 3])
    assert np.allclose(W, u[:, None] / np.array(sizes)[None, :])
    assert [row[0].student for row in choices] == ["small", "big", "big"]
    assert choice(groups[0], 1, zoo[0]).weight == pytest.approx(800_000)  # higher, but big does not fit G0
    result = assign(groups, sizes, zoo)
    assert [(a.group, a.partition, a.choice.student) for a in result] == [(0, 2, "small"), (1, 0, "big"),
                                                                          (2, 1, "big")]
    total = sum(a.choice.weight for a in result)
    assert total == pytest.approx(1_600_000 + 4_000_000 / 6 + 125_000)
    brute = max(sum(W[k, p[k]] for k in range(3)) for p in itertools.permutations(range(3)))
    assert total == pytest.approx(brute)
    c = result[1].choice
    assert (c.instructions, c.compute_s, c.link_s) == (4_000_000, 2.0, 0.5)


def test_slowest_device_and_link_stand_for_the_group():
    """A group of a 2 MHz device on a fast link and a 4 MHz device on a slow one: compute on the
    2 MHz one (R / c = 2 s), link at the slow rate (1000 bits / 500 = 2 s)."""
    fleet = fleet_of(dev("x", 2, 0.5, 100_000), dev("y", 4, 0.5, 500))
    (g,) = group_devices(fleet.devices, d_th=1.0, p_th=0.1)
    c = choice(g, 2, student("s", 4_000_000))
    assert (c.compute_s, c.link_s) == (2.0, 2.0)
    assert c.weight == pytest.approx(4_000_000 / (2 * 4))


def test_no_student_fits_names_the_group():
    groups, zoo = three_groups()
    with pytest.raises(InputError) as e:
        fitting_students(groups[0], zoo[:1])
    msg = str(e.value)
    assert "no student fits group 0 (g0)" in msg and "20,000 B of RAM" in msg
    assert "'big' (flash 100,000 B, arena 50,000 B)" in msg
    with pytest.raises(InputError, match="no student fits group 0"):
        assign(groups, [1, 2, 4], zoo[:1])


def test_fewer_groups_than_partitions():
    groups, zoo = three_groups()
    with pytest.raises(InputError, match=r"fewer device groups than partitions: 2 device\(s\) in 2 group\(s\) "
                                         r"cannot cover 3 partitions"):
        assign(groups[:2], [1, 2, 4], zoo)
    with pytest.raises(InputError, match="more device groups"):
        assign(groups, [1, 2], zoo)


def test_fewer_devices_than_partitions_in_a_plan():
    fleet = fleet_of(dev("a"), dev("b"), dev("c"))
    a = np.random.default_rng(0).random((20, 8))
    with pytest.raises(InputError, match=r"fleet.yaml: fewer devices than partitions: 3 device\(s\) cannot hold 4"):
        make_plan(fleet, a, [student("s", 1000)], PlanSettings(0.2, 0.2, 0), partitions=4)
    with pytest.raises(InputError, match=r"formed 1 group\(s\), but 2 partitions were asked"):
        make_plan(fleet, a, [student("s", 1000)], PlanSettings(0.5, 0.0001, 0), partitions=2)


# ---------------------------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------------------------

def test_latency_by_hand():
    assert wire_bytes(0) == 28 and wire_bytes(1020) == 1048 and wire_bytes(1021) == 1021 + 2 * 28
    g = group_latency([3.0, 1.0], [0.5, 0.5])
    # the 1 s replica arrives with 0.5; else the 3 s one with 0.5 * 0.5; given one arrives (0.75)
    assert (g.first_s, g.worst_s) == (1.0, 3.0)
    assert g.expected_s == pytest.approx((1 * 0.5 + 3 * 0.25) / 0.75)


# ---------------------------------------------------------------------------------------------
# the fleet file
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, match", [
    (lambda d: d[1].__setitem__("board", "stm32x"),
     r"fleet.yaml: device 'cam2', field 'board': unknown board 'stm32x'; choose one of .*qemu-mps2-an386"),
    (lambda d: d[1].__setitem__("link_rate_bps", -5), r"device 'cam2', field 'link_rate_bps': -5 is less than"),
    (lambda d: d[0].__setitem__("outage_probability", 1.0), r"device 'cam1', field 'outage_probability': 1.0 is"),
    (lambda d: d[1].__setitem__("id", "cam1"), r"device 'cam1', field 'id': duplicate id \(device #1"),
    (lambda d: d[1].pop("board"), r"device 'cam2', field 'board': 'board' is a required property"),
    (lambda d: d[1].pop("id"), r"device #2, field 'id': 'id' is a required property"),
    (lambda d: d[0].__setitem__("speed", 3), r"device 'cam1': Additional properties are not allowed \('speed'"),
    (lambda d: d[1].__setitem__("transport", "udp"), r"device 'cam2', field 'transport': board 'qemu-lm3s6965evb' "
                                                     r"supports uart, not 'udp'"),
    (lambda d: d[0].__setitem__("memory", {"ram_bytes": 8 << 20}),
     r"device 'cam1', field 'memory.ram_bytes': 8,388,608 bytes is more than board"),
    (lambda d: d[0].__setitem__("memory", {"ram_bytes": 9000}),
     r"device 'cam1', field 'memory.ram_bytes': 9,000 bytes leave nothing"),
    (lambda d: d[0].__setitem__("link_rate_bps", float("inf")), r"device 'cam1', field 'link_rate_bps': must be"),
    (lambda d: d[1].__setitem__("wire_id", 1), r"device 'cam2', field 'wire_id': 1 is also device 'cam1''s"),
    (lambda d: d.clear(), r"fleet.yaml: field 'devices': \[\] should be non-empty"),
])
def test_fleet_errors_name_device_and_field(change, match):
    devices = [{"id": "cam1", "board": BOARD, "link_rate_bps": 250000, "outage_probability": 0.1},
               {"id": "cam2", "board": "qemu-lm3s6965evb", "link_rate_bps": 1e5, "outage_probability": 0.3}]
    fleet_from_dict({"devices": devices}, "fleet.yaml")  # valid as it is
    change(devices)
    with pytest.raises(InputError, match=match):
        fleet_from_dict({"devices": devices}, "fleet.yaml")


def test_fleet_file_defaults_and_overrides(tmp_path):
    p = tmp_path / "fleet.yaml"
    p.write_text("version: 1\ndevices:\n"
                 "  - {id: cam1, board: qemu-mps2-an386, link_rate_bps: 250000, outage_probability: 0.1}\n"
                 "  - id: cam2\n    board: qemu-lm3s6965evb\n    link_rate_bps: 115200\n    outage_probability: 0\n"
                 "    clock_hz: 48000000\n    memory: {flash_bytes: 131072}\n    wire_id: 9\n")
    fleet = load_fleet(p)
    a, b = fleet.devices
    assert (a.clock_hz, a.flash_bytes, a.ram_bytes, a.transport, a.wire_id) == (25 * MB, 4 << 20, 4 << 20, "uart", 1)
    assert a.model_flash_bytes == (4 << 20) - FLASH_RESERVE_BYTES
    assert a.model_ram_bytes == (4 << 20) - APP_RAM_RESERVE_BYTES - 8192
    assert (b.clock_hz, b.flash_bytes, b.ram_bytes, b.wire_id) == (48 * MB, 131072, 65536, 9)
    assert b.model_ram_bytes == 65536 - APP_RAM_RESERVE_BYTES - 4096
    assert fleet.boards == (BOARD, "qemu-lm3s6965evb") and fleet.source == "fleet.yaml"
    j = tmp_path / "fleet.json"
    j.write_text(json.dumps({"devices": [dev("x")]}))
    assert load_fleet(j).ids == ("x",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [unclosed")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_fleet(bad)
    with pytest.raises(InputError, match="cannot read fleet file"):
        load_fleet(tmp_path / "missing.yaml")


def test_reserves_match_the_firmware_generator():
    from tinysplit.firmware.apps import APPS
    from tinysplit.firmware.project import CODE_ESTIMATE_BYTES

    assert FLASH_RESERVE_BYTES == CODE_ESTIMATE_BYTES
    assert all(APP_RAM_RESERVE_BYTES >= a.ram_bytes for a in APPS.values() if a.method)


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def small_plan():
    """Four devices, two groups (a, b | c, d by clock), 6 filters in two blocks of 3, two students."""
    fleet = fleet_of(dev("a", 100, .5), dev("b", 100, .5), dev("c", 20, .5, 1000), dev("d", 20, .5, 1000))
    rng = np.random.default_rng(0)
    act = rng.random((30, 6)) * np.array([1, 1, 1, 0.2, 0.2, 0.2])
    zoo = (student("big", 2_000_000, const=50_000, arena=20_000), student("small", 500_000))
    return make_plan(fleet, act, zoo, PlanSettings(0.2, 0.3, 0)), fleet


def test_plan_round_trip_and_lookup(tmp_path):
    plan, _ = small_plan()
    assert [g.devices for g in plan.groups] == [("a", "b"), ("c", "d")]
    assert sorted(g.partition for g in plan.groups) == [0, 1]
    assert sorted(f for p in plan.partitions for f in p) == list(range(6))
    assert plan.latency.expected_s == max(g.latency.expected_s for g in plan.groups)
    assert plan.all_partitions_probability == pytest.approx(0.75 * 0.75)
    d = plan.device("c")
    assert (d.group, d.wire_id, d.board) == (1, 3, BOARD)
    s = plan.student(plan.group_of("c").student)
    assert d.compute_s == pytest.approx(s.instructions_on(BOARD) / 20e6)
    assert d.link_s == pytest.approx(wire_bytes(s.output_bytes) * 8 / 1000)
    out = save_plan(plan, tmp_path / "plan.json")
    loaded = load_plan(out)
    assert loaded == dataclasses.replace(plan, source="plan.json")
    with pytest.raises(InputError, match=r"plan.json: device 'zz' is not in the plan; its devices are a, b, c, d"):
        loaded.device("zz")
    with pytest.raises(InputError, match="device 'zz' is not in the plan"):
        loaded.group_of("zz")


def _edit(data: dict, path: list, value=None, delete: bool = False) -> dict:
    d = json.loads(json.dumps(data))
    obj = d
    for p in path[:-1]:
        obj = obj[p]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return d


@pytest.mark.parametrize("path, value, delete, match", [
    (["groups", 1, "student"], None, True, r"field 'groups\[1\].student': 'student' is a required property"),
    (["devices", 0, "wire_id"], 70000, False, r"field 'devices\[0\].wire_id': 70000 is greater than"),
    (["settings", "p_th"], 1.5, False, r"field 'settings.p_th'"),
    (["version"], 2, False, r"field 'version': 1 was expected"),
    (["groups", 0, "student"], "nobody", False, r"field 'groups\[0\].student': student 'nobody' is not in"),
    (["partitions", 1, 0], 0, False, r"field 'partitions\[1\]\[0\]': filter 0 is also in partition 0"),
    (["partitions", 0, 0], 99, False, r"field 'partitions\[0\]\[0\]': filter 99 is out of range"),
    (["groups", 1, "partition"], None, False, r"field 'groups\[1\].partition': None is not of type 'integer'"),
    (["devices", 3, "group"], 0, False, r"field 'devices\[3\].group': device 'd' is not among group 0's devices"),
    (["devices", 1, "wire_id"], 1, False, r"field 'devices\[1\].wire_id': wire id 1 is also device 'a''s"),
])
def test_plan_errors_name_the_field(path, value, delete, match):
    plan, _ = small_plan()
    data = plan.to_json()
    plan_from_dict(data, "plan.json")
    with pytest.raises(InputError, match="plan.json: " + match):
        plan_from_dict(_edit(data, path, value, delete), "plan.json")


def test_plan_partition_swap_is_refused():
    plan, _ = small_plan()
    data = plan.to_json()
    data["groups"][1]["partition"] = data["groups"][0]["partition"]
    with pytest.raises(InputError, match=r"field 'groups\[1\].partition': partition \d is also group 0's"):
        plan_from_dict(data, "plan.json")


# ---------------------------------------------------------------------------------------------
# the student zoo (no QEMU: instruction counts are faked; memory is the code generator's)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory) -> Path:
    from opcases import conv_case

    p = tmp_path_factory.mktemp("zoo") / "tiny-conv.tflite"
    p.write_bytes(conv_case(np.random.default_rng(3), 0, depthwise=False).tflite)
    return p


def _codegen(p: Path):
    import tempfile

    from tinysplit.exporter.codegen import generate_model_sources

    with tempfile.TemporaryDirectory() as tmp:
        return generate_model_sources(p.read_bytes(), "tiny", Path(tmp))


def test_zoo_memory_is_the_code_generators_and_profiles_are_cached(tiny_student, tmp_path, monkeypatch):
    calls = []

    def fake(name, path, board, samples, memory):
        calls.append((name, board))
        return 1000 + len(calls)

    monkeypatch.setattr(zoo_mod, "measure_instructions", fake)
    cache = tmp_path / "profiles.json"
    (s,) = profile_zoo([("tiny", tiny_student)], [BOARD, "qemu-riscv32-virt"], cache, samples=2)
    src = _codegen(tiny_student)
    assert (s.const_bytes, s.arena_bytes, s.output_bytes, s.input_bytes) == \
           (src.const_bytes, src.arena_bytes, src.output.bytes, src.input.bytes)
    assert dict(s.instructions) == {BOARD: 1001, "qemu-riscv32-virt": 1002} and len(calls) == 2
    again = profile_zoo([("tiny", tiny_student)], [BOARD], cache, samples=2)
    assert len(calls) == 2 and again[0].instructions == ((BOARD, 1001),)  # from the cache
    profile_zoo([("tiny", tiny_student)], [BOARD], cache, samples=3)  # another sample count: measured again
    assert len(calls) == 3
    cache.write_text("{not json")
    profile_zoo([("tiny", tiny_student)], [BOARD], cache, samples=3)  # a broken cache is rebuilt
    assert len(calls) == 4 and json.loads(cache.read_text())["samples"] == 3
    with pytest.raises(InputError, match="has no instruction count on board 'qemu-netduinoplus2'"):
        s.instructions_on("qemu-netduinoplus2")


def test_cli_rocoin_plan(tiny_student, tmp_path, capsys):
    """The verb end to end with a filled profile cache (so nothing runs in QEMU)."""
    import hashlib

    from tinysplit import __version__, cli

    src = _codegen(tiny_student)
    sha = hashlib.sha256(tiny_student.read_bytes()).hexdigest()
    cache = tmp_path / "rocoin-profiles.json"
    cache.write_text(json.dumps({"format": "tinysplit-rocoin-profiles", "version": 1, "tinysplit": __version__,
                                 "samples": 4, "students": {sha: {
                                     "const_bytes": src.const_bytes, "arena_bytes": src.arena_bytes,
                                     "input_bytes": src.input.bytes, "output_bytes": src.output.bytes,
                                     "instructions": {BOARD: 50_000}}}}))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps({"devices": [dev("a", 100, .5), dev("b", 100, .5), dev("c", 20, .5)]}))
    act = tmp_path / "act.npy"
    np.save(act, np.random.default_rng(0).random((12, 8, 2, 2)).astype(np.float32))
    out = tmp_path / "plan.json"
    args = ["rocoin-plan", "--fleet", str(fleet), "--activations", str(act), "--students", f"tiny={tiny_student}",
            "--d-th", "0.2", "--p-th", "0.3", "-q", "--out", str(out)]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "3 devices in 2 groups, 8 filters in 2 partitions" in text and "tiny" in text
    assert "partition 0 (" in text and "plan: " in text
    plan = load_plan(out)
    assert [g.devices for g in plan.groups] == [("a", "b"), ("c",)]
    assert plan.students[0].instructions == ((BOARD, 50_000),) and plan.images == 12
    assert cli.main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"][1]["devices"] == ["c"]
    fleet.write_text(json.dumps({"devices": [dev("a"), {**dev("b"), "board": "stm32x"}]}))
    assert cli.main(args) == 2
    assert "device 'b', field 'board': unknown board 'stm32x'" in capsys.readouterr().err
    fleet.write_text(json.dumps({"devices": [dev("a"), dev("b"), dev("c")]}))
    assert cli.main([*args, "--partitions", "4"]) == 2
    assert "fewer devices than partitions: 3 device(s) cannot hold 4" in capsys.readouterr().err


def test_planning_modules_are_light():
    code = ("import sys, tinysplit.cli, tinysplit.methods.rocoin, tinysplit.methods.rocoin.command; "
            "bad = [m for m in ('torch', 'tensorflow', 'sklearn', 'scipy', 'jinja2', 'onnxruntime') "
            "if m in sys.modules]; "
            "print(', '.join(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rocoin_plan_is_a_verb_of_the_rocoin_method():
    """Reached through METHODS["rocoin"].commands, no longer through the CLI's own command modules."""
    from tinysplit.cli import COMMAND_MODULES, COMMANDS
    from tinysplit.methods import METHODS
    from tinysplit.methods.rocoin.command import COMMANDS as ROCOIN

    assert METHODS["rocoin"].commands == "tinysplit.methods.rocoin.command"
    assert "tinysplit.methods.rocoin.command" not in COMMAND_MODULES
    assert COMMANDS["rocoin-plan"] == ROCOIN["rocoin-plan"]


# ---------------------------------------------------------------------------------------------
# QEMU
# ---------------------------------------------------------------------------------------------

@pytest.mark.emulator
def test_zoo_profile_in_qemu(tiny_student, tmp_path, monkeypatch):
    """A real int8 student, profiled on qemu-mps2-an386: flash and arena exactly the code generator's,
    an instruction count from QEMU, and the second planning run reads the cache."""
    cache = tmp_path / "profiles.json"
    (s,) = profile_zoo([("tiny", tiny_student)], [BOARD], cache, samples=2)
    src = _codegen(tiny_student)
    assert (s.const_bytes, s.arena_bytes, s.output_bytes) == (src.const_bytes, src.arena_bytes, src.output.bytes)
    n = s.instructions_on(BOARD)
    assert n > 100
    assert json.loads(cache.read_text())["students"][s.sha256]["instructions"] == {BOARD: n}

    def no_qemu(*args):
        raise AssertionError("profiled again")

    monkeypatch.setattr(zoo_mod, "measure_instructions", no_qemu)
    assert profile_zoo([("tiny", tiny_student)], [BOARD], cache, samples=2) == (s,)
