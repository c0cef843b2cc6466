"""A RoCoIn bundle's deployment view, read from its manifest (numpy only: the host server, the device
simulator, the reference and the firmware app read it from here).

The bundle (``tinysplit.methods.rocoin.export.export_rocoin``): K device models ``student_0`` ..
``student_{K-1}`` (k = the plan's partition index), each taking the model input and giving ONE int8
output of n_k = |P_k| values (NHWC [1, 1, 1, n_k]) with its own scale and zero point; one host tail
``aggregator`` consuming all of them in partition order (one ONNX input per partition, the
dequantized portion; a missing one is 0.0); and ``method_data.rocoin`` (schema
``tinysplit/schemas/method_data/rocoin.schema.json``): the partitions, their sizes, the teacher's
filter count, the default deadline and one device group per partition (fleet id, wire device id,
board, transport of each replica).

``plan_for(manifest)`` checks what the schema cannot (ManifestError naming the field): the device
models' count, names and output sizes against the partitions, the aggregator's inputs, one group
per partition, each device id once. ``RocoinPlan.partition_of(device_id)`` answers which portion a
device sends, an InputError naming the bundle's devices for an id it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinysplit.errors import InputError, ManifestError
from tinysplit.manifest import Manifest, validate_method_data
from tinysplit.methods.rocoin.latency import PORTION_CHUNK, portion_frames

METHOD = "rocoin"
TAIL = "aggregator"


def student_name(k: int) -> str:
    return f"student_{k}"


@dataclass(frozen=True)
class RocoinDevice:
    id: str  # the fleet's id
    device_id: int  # the wire id in its frames
    board: str
    transport: str
    partition: int


@dataclass(frozen=True)
class RocoinStudent:
    partition: int  # k
    name: str  # the device model, student_k
    arch: str
    filters: tuple[int, ...]  # P_k
    scale: float  # the int8 output's quantization
    zero_point: int
    output_shape: tuple[int, ...]  # NHWC without the batch: (1, 1, n_k)

    @property
    def values(self) -> int:
        """n_k: the portion's int8 values (bytes)."""
        return len(self.filters)

    @property
    def part_count(self) -> int:
        """ROCOIN_PORTION frames per portion: chunks of at most MAX_PAYLOAD - 4 bytes."""
        return portion_frames(self.values)

    def chunk(self, part_index: int) -> slice:
        """The portion bytes frame ``part_index`` carries."""
        start = part_index * PORTION_CHUNK
        return slice(start, min(start + PORTION_CHUNK, self.values))


@dataclass(frozen=True)
class RocoinPlan:
    bundle: str  # the manifest's name, for messages
    students: tuple[RocoinStudent, ...]  # partition order
    devices: tuple[RocoinDevice, ...]  # group order, then the group's device order
    teacher_filters: int
    deadline_ms: float
    tail: str = TAIL

    @property
    def partitions_total(self) -> int:
        return len(self.students)

    @property
    def partitions(self) -> tuple[tuple[int, ...], ...]:
        return tuple(s.filters for s in self.students)

    @property
    def portion_values(self) -> tuple[int, ...]:
        return tuple(s.values for s in self.students)

    @property
    def device_ids(self) -> tuple[int, ...]:
        return tuple(d.device_id for d in self.devices)

    def device(self, device_id: int) -> RocoinDevice:
        for d in self.devices:
            if d.device_id == device_id:
                return d
        known = ", ".join(f"{d.device_id} ('{d.id}', partition {d.partition})" for d in self.devices)
        raise InputError(f"device id {device_id} is not a device of RoCoIn bundle '{self.bundle}'; its devices are "
                         f"{known}")

    def device_by_name(self, fleet_id: str) -> RocoinDevice:
        for d in self.devices:
            if d.id == fleet_id:
                return d
        raise InputError(f"device '{fleet_id}' is not a device of RoCoIn bundle '{self.bundle}'; its devices are "
                         f"{', '.join(d.id for d in self.devices)}")

    def partition_of(self, device_id: int) -> int:
        """The partition k whose portion device ``device_id`` sends (InputError for an unknown id)."""
        return self.device(device_id).partition

    def group(self, k: int) -> tuple[RocoinDevice, ...]:
        """The devices (replicas) that send partition k."""
        if not 0 <= k < self.partitions_total:
            raise InputError(f"partition {k} is not in 0..{self.partitions_total - 1}")
        return tuple(d for d in self.devices if d.partition == k)

    def dequantize(self, k: int, q: np.ndarray) -> np.ndarray:
        s = self.students[k]
        return ((np.asarray(q, np.int32) - s.zero_point) * np.float32(s.scale)).astype(np.float32)


def plan_for(manifest: Manifest) -> RocoinPlan:
    """The deployment view of a 'rocoin' bundle; ManifestError naming the field where method_data.rocoin
    does not match the device models or the aggregator, or a device id repeats."""
    if manifest.method != METHOD or METHOD not in manifest.method_data:
        raise ManifestError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle without RoCoIn groups "
                            "(field 'method_data.rocoin'); export it with tinysplit.methods.rocoin.export")
    validate_method_data(METHOD, manifest.method_data, f"bundle '{manifest.name}'")
    r = manifest.method_data[METHOD]
    md = "method_data.rocoin"

    def bad(field: str, message: str) -> ManifestError:
        return ManifestError(f"bundle '{manifest.name}': field '{field}': {message}")

    parts = [tuple(int(f) for f in p) for p in r["partitions"]]
    k_total = len(parts)
    m = int(r["teacher_filters"])
    seen: dict[int, int] = {}
    for k, p in enumerate(parts):
        if list(p) != sorted(set(p)):
            raise bad(f"{md}.partitions[{k}]", f"filter indices must be sorted and distinct, got {list(p)}")
        for f in p:
            if f >= m:
                raise bad(f"{md}.partitions[{k}]", f"filter {f} is out of range (teacher_filters is {m})")
            if f in seen:
                raise bad(f"{md}.partitions[{k}]", f"filter {f} is also in partition {seen[f]}")
            seen[f] = k
    if len(seen) != m:
        raise bad(f"{md}.partitions", f"filters {sorted(set(range(m)) - set(seen))} are in no partition "
                                      f"(teacher_filters is {m})")
    values = [int(v) for v in r["portion_values"]]
    if len(values) != k_total:
        raise bad(f"{md}.portion_values", f"{len(values)} sizes for {k_total} partitions")
    for k, (v, p) in enumerate(zip(values, parts)):
        if v != len(p):
            raise bad(f"{md}.portion_values[{k}]", f"{v}, but partition {k} holds {len(p)} filters")
    names = [student_name(k) for k in range(k_total)]
    have = [d.name for d in manifest.device_models]
    if sorted(have) != sorted(names):
        raise bad("device_models", f"a RoCoIn bundle of {k_total} partitions has device models "
                                   f"{', '.join(names)}; this one has {', '.join(have) or 'none'}")
    scales, zps, shapes = [], [], []
    for k, name in enumerate(names):
        i = have.index(name)
        dm = manifest.device_models[i]
        if len(dm.outputs) != 1:
            raise bad(f"device_models[{i}].outputs", f"student '{name}' must have one output (its portion), it has "
                                                     f"{len(dm.outputs)}")
        out = dm.outputs[0]
        size = int(np.prod(out.shape[1:]))
        if size != values[k]:
            raise bad(f"device_models[{i}].outputs", f"student '{name}' outputs {size} values per sample (shape "
                                                     f"{list(out.shape)}), but portion_values[{k}] is {values[k]}")
        scales.append(float(out.scale))
        zps.append(int(out.zero_point))
        shapes.append(tuple(int(v) for v in out.shape[1:]))
    tails = [(i, t) for i, t in enumerate(manifest.host_tails) if t.name == TAIL]
    if not tails:
        raise bad("host_tails", f"a RoCoIn bundle needs a host tail named '{TAIL}'; it has: "
                                f"{', '.join(t.name for t in manifest.host_tails) or 'none'}")
    ti, tail = tails[0]
    if list(tail.consumes) != names:
        raise bad(f"host_tails[{ti}].consumes", f"the '{TAIL}' tail must consume {names} in partition order, it "
                                                f"consumes {list(tail.consumes)}")
    for k, t_in in enumerate(tail.inputs):
        if int(np.prod([abs(v) for v in t_in.shape[1:]])) != values[k]:
            raise bad(f"host_tails[{ti}].inputs[{k}]", f"takes {list(t_in.shape)}, not partition {k}'s "
                                                       f"{values[k]} values")
    groups = r["groups"]
    if len(groups) != k_total:
        raise bad(f"{md}.groups", f"{len(groups)} groups for {k_total} partitions; one group per partition")
    by_part: dict[int, int] = {}
    wire: dict[int, str] = {}
    fleet_ids: set[str] = set()
    devices: list[RocoinDevice] = []
    archs: dict[int, str] = {}
    for gi, g in enumerate(groups):
        k = int(g["partition"])
        if k >= k_total:
            raise bad(f"{md}.groups[{gi}].partition", f"partition {k} does not exist ({k_total} partitions)")
        if k in by_part:
            raise bad(f"{md}.groups[{gi}].partition", f"partition {k} is also groups[{by_part[k]}]'s")
        by_part[k] = gi
        if g["student"] != student_name(k):
            raise bad(f"{md}.groups[{gi}].student", f"group of partition {k} must run '{student_name(k)}', not "
                                                    f"'{g['student']}'")
        archs[k] = g["arch"]
        for j, d in enumerate(g["devices"]):
            did = int(d["device_id"])
            if did in wire:
                raise bad(f"{md}.groups[{gi}].devices[{j}].device_id", f"device id {did} is also device "
                                                                       f"'{wire[did]}''s; device ids must be unique")
            if d["id"] in fleet_ids:
                raise bad(f"{md}.groups[{gi}].devices[{j}].id", f"device '{d['id']}' is listed twice")
            wire[did] = d["id"]
            fleet_ids.add(d["id"])
            devices.append(RocoinDevice(d["id"], did, d["board"], d["transport"], k))
    students = tuple(RocoinStudent(k, names[k], archs[k], parts[k], scales[k], zps[k], shapes[k])
                     for k in range(k_total))
    return RocoinPlan(manifest.name, students, tuple(devices), m, float(r["deadline_ms"]), tail.name)
