"""A RoCoIn plan: which devices form which group, which filters each group's portion holds, which
student each group runs, and the latency to expect. Saved as JSON (schema
``tinysplit/schemas/rocoin_plan.schema.json``); the later stages (export, firmware generation) read
it: ``plan.device(id)`` gives a device's group, student, partition, wire id and transport.

Latency (``latency``): a device's latency is its group's student's instructions on its board over
its clock plus the portion's wire bytes over its link; a group's is the time its first replica
arrives (first: no outage, expected: given one arrives, worst: only the slowest); the plan's is the
largest group value of each, because the groups run in parallel and the host needs every
partition. (The expected overall value is the largest of the groups' expectations, a lower bound
of the expectation of the largest.)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinysplit import __version__
from tinysplit.errors import InputError
from tinysplit.files import write_atomic
from tinysplit.methods.rocoin.latency import GroupLatency
from tinysplit.schemacheck import check, field_path
from tinysplit.methods.rocoin.zoo import StudentProfile, student_from_json

SCHEMA = "rocoin_plan.schema.json"
FORMAT = "tinysplit-rocoin-plan"
VERSION = 1


@dataclass(frozen=True)
class PlanSettings:
    d_th: float
    p_th: float
    seed: int
    assign_labels: str = "kmeans"
    normalize: bool = False
    top: int | None = None


@dataclass(frozen=True)
class PlanDevice:
    id: str
    wire_id: int
    board: str
    transport: str
    group: int
    clock_hz: int
    link_rate_bps: float
    outage_probability: float
    model_flash_bytes: int
    model_ram_bytes: int
    compute_s: float
    link_s: float

    @property
    def latency_s(self) -> float:
        return self.compute_s + self.link_s


@dataclass(frozen=True)
class PlanGroup:
    index: int
    devices: tuple[str, ...]
    partition: int  # index into Plan.partitions: the portion its devices send
    student: str
    weight: float
    failure_probability: float
    meets_p_th: bool
    model_flash_bytes: int
    model_ram_bytes: int
    latency: GroupLatency


@dataclass(frozen=True)
class Plan:
    fleet: str
    settings: PlanSettings
    images: int
    filters: int
    partitions: tuple[tuple[int, ...], ...]
    ncut: float
    students: tuple[StudentProfile, ...]
    groups: tuple[PlanGroup, ...]
    devices: tuple[PlanDevice, ...]
    latency: GroupLatency
    all_partitions_probability: float
    source: str = "plan"  # where it was loaded from, for messages

    def device(self, device_id: str) -> PlanDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise InputError(f"{self.source}: device '{device_id}' is not in the plan; its devices are "
                         f"{', '.join(d.id for d in self.devices)} (plan again with a fleet that has it)")

    def group_of(self, device_id: str) -> PlanGroup:
        return self.groups[self.device(device_id).group]

    def student(self, name: str) -> StudentProfile:
        for s in self.students:
            if s.name == name:
                return s
        raise InputError(f"{self.source}: student '{name}' is not in the plan; its students are "
                         f"{', '.join(s.name for s in self.students)}")

    def to_json(self) -> dict[str, Any]:
        lat = lambda g: {"first": g.first_s, "expected": g.expected_s, "worst": g.worst_s}  # noqa: E731
        s = self.settings
        return {
            "format": FORMAT, "version": VERSION, "tinysplit": __version__, "fleet": self.fleet,
            "settings": {"d_th": s.d_th, "p_th": s.p_th, "seed": s.seed, "assign_labels": s.assign_labels,
                         "normalize": s.normalize, "top": s.top},
            "images": self.images, "filters": self.filters, "partitions": [list(p) for p in self.partitions],
            "ncut": self.ncut, "students": [st.to_json() for st in self.students],
            "groups": [{"index": g.index, "devices": list(g.devices), "partition": g.partition, "student": g.student,
                        "weight": g.weight, "failure_probability": g.failure_probability, "meets_p_th": g.meets_p_th,
                        "model_flash_bytes": g.model_flash_bytes, "model_ram_bytes": g.model_ram_bytes,
                        "latency_s": lat(g.latency)} for g in self.groups],
            "devices": [{"id": d.id, "wire_id": d.wire_id, "board": d.board, "transport": d.transport,
                         "group": d.group, "clock_hz": d.clock_hz, "link_rate_bps": d.link_rate_bps,
                         "outage_probability": d.outage_probability, "model_flash_bytes": d.model_flash_bytes,
                         "model_ram_bytes": d.model_ram_bytes, "compute_s": d.compute_s, "link_s": d.link_s}
                        for d in self.devices],
            "latency_s": lat(self.latency),
            "all_partitions_probability": self.all_partitions_probability,
        }


def _latency(d: dict[str, Any]) -> GroupLatency:
    return GroupLatency(d["first"], d["expected"], d["worst"])


def _consistency(data: dict[str, Any], source: str) -> None:
    """What the schema cannot say: the parts, groups, devices and students refer to each other."""
    def bad(path: list[Any], message: str) -> InputError:
        return InputError(f"{source}: field '{field_path(path)}': {message}")

    m = data["filters"]
    seen: dict[int, int] = {}
    for p, part in enumerate(data["partitions"]):
        for j, f in enumerate(part):
            if f >= m:
                raise bad(["partitions", p, j], f"filter {f} is out of range (the teacher has {m} filters)")
            if f in seen:
                raise bad(["partitions", p, j], f"filter {f} is also in partition {seen[f]}")
            seen[f] = p
    if len(seen) != m:
        missing = sorted(set(range(m)) - set(seen))
        raise bad(["partitions"], f"filters {missing} are in no partition")
    names = [s["name"] for s in data["students"]]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise bad(["students", i, "name"], f"student '{n}' is listed twice")
    groups = data["groups"]
    if len(groups) != len(data["partitions"]):
        raise bad(["groups"], f"{len(groups)} groups for {len(data['partitions'])} partitions; they are matched one "
                              "to one")
    ids = [d["id"] for d in data["devices"]]
    parts_used: dict[int, int] = {}
    for k, g in enumerate(groups):
        if g["index"] != k:
            raise bad(["groups", k, "index"], f"is {g['index']}, expected {k} (groups are listed in index order)")
        if g["partition"] >= len(data["partitions"]):
            raise bad(["groups", k, "partition"], f"partition {g['partition']} does not exist "
                                                  f"({len(data['partitions'])} partitions)")
        if g["partition"] in parts_used:
            other = parts_used[g["partition"]]
            raise bad(["groups", k, "partition"], f"partition {g['partition']} is also group {other}'s")
        parts_used[g["partition"]] = k
        if g["student"] not in names:
            raise bad(["groups", k, "student"], f"student '{g['student']}' is not in 'students' ({', '.join(names)})")
        for j, dev in enumerate(g["devices"]):
            if dev not in ids:
                raise bad(["groups", k, "devices", j], f"device '{dev}' is not in 'devices'")
    wire: dict[int, str] = {}
    for i, d in enumerate(data["devices"]):
        if d["id"] in ids[:i]:
            raise bad(["devices", i, "id"], f"device '{d['id']}' is listed twice")
        if d["wire_id"] in wire:
            raise bad(["devices", i, "wire_id"], f"wire id {d['wire_id']} is also device '{wire[d['wire_id']]}''s")
        wire[d["wire_id"]] = d["id"]
        if d["group"] >= len(groups) or d["id"] not in groups[d["group"]]["devices"]:
            raise bad(["devices", i, "group"], f"device '{d['id']}' is not among group {d['group']}'s devices")
    listed = sum(len(g["devices"]) for g in groups)
    if listed != len(ids):
        raise bad(["groups"], f"the groups list {listed} devices, 'devices' has {len(ids)}; each device is in one "
                              "group")


def plan_from_dict(data: Any, source: str = "plan") -> Plan:
    """Validate a parsed plan (schema, then cross references); InputError names the field."""
    check(SCHEMA, data, source)
    _consistency(data, source)
    s = data["settings"]
    return Plan(
        fleet=data["fleet"],
        settings=PlanSettings(s["d_th"], s["p_th"], s["seed"], s["assign_labels"], s["normalize"], s["top"]),
        images=data["images"], filters=data["filters"],
        partitions=tuple(tuple(p) for p in data["partitions"]), ncut=data["ncut"],
        students=tuple(student_from_json(st) for st in data["students"]),
        groups=tuple(PlanGroup(g["index"], tuple(g["devices"]), g["partition"], g["student"], g["weight"],
                               g["failure_probability"], g["meets_p_th"], g["model_flash_bytes"], g["model_ram_bytes"],
                               _latency(g["latency_s"])) for g in data["groups"]),
        devices=tuple(PlanDevice(d["id"], d["wire_id"], d["board"], d["transport"], d["group"], d["clock_hz"],
                                 d["link_rate_bps"], d["outage_probability"], d["model_flash_bytes"],
                                 d["model_ram_bytes"], d["compute_s"], d["link_s"]) for d in data["devices"]),
        latency=_latency(data["latency_s"]), all_partitions_probability=data["all_partitions_probability"],
        source=source)


def load_plan(path: str | Path) -> Plan:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise InputError(f"cannot read plan '{p}': {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{p.name}: not valid JSON: {e}") from None
    return plan_from_dict(data, p.name)


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write the plan as JSON, atomically, after checking it as a reader would."""
    data = plan.to_json()
    plan_from_dict(json.loads(json.dumps(data)), str(path))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(p, json.dumps(data, indent=2) + "\n")


def format_plan(plan: Plan) -> str:
    """The plan as tables: groups, then devices."""
    ms = lambda s: f"{1000 * s:.2f}"  # noqa: E731
    st = plan.settings
    lines = [f"RoCoIn plan ({plan.fleet}): {len(plan.devices)} devices in {len(plan.groups)} groups, {plan.filters} "
             f"filters in {len(plan.partitions)} partitions (normalized cut {plan.ncut:.4f}); d_th {st.d_th:g}, "
             f"p_th {st.p_th:g}, seed {st.seed}",
             f"{'group':>5}  {'devices':24}{'part':>5}{'filters':>8}  {'student':16}{'flash B':>9}{'arena B':>9}"
             f"{'fail p':>9}{'first ms':>10}{'expect ms':>10}{'worst ms':>10}"]
    for g in plan.groups:
        s = plan.student(g.student)
        flag = "" if g.meets_p_th else "  (above p_th)"
        size = len(plan.partitions[g.partition])
        lines.append(f"{g.index:>5}  {', '.join(g.devices)[:23]:24}{g.partition:>5}{size:>8}  {g.student[:15]:16}"
                     f"{s.const_bytes:>9,}{s.arena_bytes:>9,}{g.failure_probability:>9.4f}"
                     f"{ms(g.latency.first_s):>10}{ms(g.latency.expected_s):>10}{ms(g.latency.worst_s):>10}{flag}")
    lines.append(f"overall (groups in parallel): expected {ms(plan.latency.expected_s)} ms, first "
                 f"{ms(plan.latency.first_s)} ms, worst {ms(plan.latency.worst_s)} ms; every partition arrives with "
                 f"probability {plan.all_partitions_probability:.4f}")
    for k, part in enumerate(plan.partitions):
        shown = " ".join(str(f) for f in part[:24]) + (" ..." if len(part) > 24 else "")
        lines.append(f"partition {k} ({len(part)} filters): {shown}")
    lines.append(f"{'device':16}{'wire id':>8}  {'board':22}{'transport':>10}{'group':>6}{'compute ms':>11}"
                 f"{'link ms':>9}{'total ms':>10}")
    for d in plan.devices:
        lines.append(f"{d.id[:15]:16}{d.wire_id:>8}  {d.board[:21]:22}{d.transport:>10}{d.group:>6}"
                     f"{ms(d.compute_s):>11}{ms(d.link_s):>9}{ms(d.latency_s):>10}")
    return "\n".join(lines)


def all_arrive_probability(failure_probabilities: list[float]) -> float:
    """The probability that every group delivers its partition (independent outages)."""
    return math.prod(1 - p for p in failure_probabilities)
