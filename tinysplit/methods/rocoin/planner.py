"""RoCoIn's knowledge assignment (papers/rocoin.md Algorithm 1): grouping, then partition, then
assignment, and the latency of the result, as one ``Plan``.

1. ``grouping.group_devices``: follow-the-leader over the fleet -> K groups;
2. ``partition``: the teacher's filter graph from the validation activations, cut into K parts
   (normalized cut by spectral clustering);
3. ``assign.assign``: Kuhn-Munkres over eq. (5)'s weights -> each group's partition and student;
4. ``latency``: each device's compute and link time for its group's student, each group's first
   arrival, the plan's (the slowest group).

Pure: the student zoo comes in profiled (``zoo.profile_zoo``), so this module builds nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinysplit.errors import InputError
from tinysplit.methods.rocoin.assign import assign
from tinysplit.methods.rocoin.fleet import Fleet
from tinysplit.methods.rocoin.grouping import check_thresholds, group_devices
from tinysplit.methods.rocoin.latency import GroupLatency, compute_seconds, group_latency, link_seconds
from tinysplit.methods.rocoin.partition import affinity, filter_activations, ncut, partition_filters
from tinysplit.methods.rocoin.plan import Plan, PlanDevice, PlanGroup, PlanSettings, all_arrive_probability
from tinysplit.methods.rocoin.zoo import StudentProfile


def make_plan(fleet: Fleet, activations: np.ndarray, zoo: Sequence[StudentProfile], settings: PlanSettings,
              partitions: int | None = None) -> Plan:
    """The plan for ``fleet`` from the teacher's final-conv ``activations`` ((N, M) means or
    (N, M, H, W) maps) and the profiled students. ``partitions``: insist on that many partitions
    (the grouping must then form that many groups); default: as many as the grouping forms."""
    check_thresholds(settings.d_th, settings.p_th)
    n = len(fleet.devices)
    if partitions is not None and partitions > n:
        raise InputError(f"{fleet.source}: fewer devices than partitions: {n} device(s) cannot hold {partitions} "
                         "partitions (each partition needs a device group of its own); add devices or ask for fewer "
                         "partitions")
    if partitions is not None and partitions < 1:
        raise InputError(f"the number of partitions must be at least 1, got {partitions}")
    a = filter_activations(activations)
    groups = group_devices(fleet.devices, settings.d_th, settings.p_th)
    k = len(groups)
    if partitions is not None and partitions != k:
        raise InputError(f"{fleet.source}: follow-the-leader grouping (d_th {settings.d_th:g}, p_th {settings.p_th:g}) "
                         f"formed {k} group(s), but {partitions} partitions were asked for and each partition needs "
                         f"one group; {'raise' if k > partitions else 'lower'} d_th (or change p_th), or leave the "
                         "number of partitions to the grouping")
    A = affinity(a, settings.normalize, settings.top)
    parts = partition_filters(A, k, settings.seed, settings.assign_labels)
    chosen = assign(groups, [len(p) for p in parts], zoo)
    by_name = {s.name: s for s in zoo}
    plan_groups, plan_devices = [], {}
    for g, asg in zip(groups, chosen):
        student = by_name[asg.choice.student]
        times = []
        for d in g.devices:
            c = compute_seconds(student.instructions_on(d.board), d.clock_hz)
            l_s = link_seconds(student.output_bytes, d.link_rate_bps)
            times.append(c + l_s)
            plan_devices[d.id] = PlanDevice(d.id, d.wire_id, d.board, d.transport, g.index, d.clock_hz,
                                            d.link_rate_bps, d.outage_probability, d.model_flash_bytes,
                                            d.model_ram_bytes, c, l_s)
        lat = group_latency(times, [d.outage_probability for d in g.devices])
        plan_groups.append(PlanGroup(g.index, g.ids, asg.partition, student.name, asg.choice.weight,
                                     g.failure_probability, g.meets_p_th(settings.p_th), g.model_flash_bytes,
                                     g.model_ram_bytes, lat))
    overall = GroupLatency(max(g.latency.first_s for g in plan_groups),
                           max(g.latency.expected_s for g in plan_groups),
                           max(g.latency.worst_s for g in plan_groups))
    return Plan(fleet=fleet.source, settings=settings, images=a.shape[0], filters=a.shape[1], partitions=parts,
                ncut=ncut(A, parts), students=tuple(zoo), groups=tuple(plan_groups),
                devices=tuple(plan_devices[i] for i in fleet.ids), latency=overall,
                all_partitions_probability=all_arrive_probability([g.failure_probability for g in plan_groups]))
