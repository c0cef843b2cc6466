"""Device grouping by follow-the-leader (papers/rocoin.md sec. IV-B.1, Algorithm 1 lines 1-11).

Each device is a point of three coordinates, each divided by the fleet's largest value of it so
that all three lie in (0, 1] and weigh alike:

    x_n = (model RAM_n / max RAM, model flash_n / max flash, clock_n / max clock)

(the paper's (c^mem, c^core): memory is two numbers on a microcontroller, the RAM left for a
student's arena and the flash left for its weights, ``FleetDevice.model_ram_bytes`` and
``model_flash_bytes``; compute is the clock, one instruction per cycle). The distance is the
Euclidean one of eq. (2) on these coordinates.

The walk: devices in fleet-file order; the first device starts group 1. Each next device joins the
first existing group (in the order the groups were started) whose centroid (the mean of its
members' points, recomputed after every join) is within ``d_th`` (distance <= d_th) and whose
failure probability, the product of its members' outage probabilities, is still above ``p_th``
(the group still needs a replica to reach constraint (1f), prod p_out <= p_th). A device that
joins no group starts a new one. K = the number of groups.

Deterministic: the walk follows the file, with no random first leader (the paper's text starts
from a random device; its Algorithm 1 from d_1, as here). Algorithm 1's line 6 writes the
reliability test as prod (1 - p_n) <= p_th; the text and constraint (1f) use prod p_out, which is
what this module follows. A group can end with prod p_out > p_th (not enough similar devices):
``DeviceGroup.meets_p_th`` says so and the plan reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinysplit.errors import InputError
from tinysplit.methods.rocoin.fleet import FleetDevice

_TOL = 1e-12  # a distance equal to d_th up to rounding counts as within


@dataclass(frozen=True)
class DeviceGroup:
    index: int  # 0-based, in the order the walk started the groups
    devices: tuple[FleetDevice, ...]
    centroid: tuple[float, float, float]  # (RAM, flash, clock), normalized as the module says

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.devices)

    @property
    def failure_probability(self) -> float:
        """The probability that no device of the group delivers its portion (independent outages)."""
        return math.prod(d.outage_probability for d in self.devices)

    def meets_p_th(self, p_th: float) -> bool:
        return self.failure_probability <= p_th

    @property
    def model_flash_bytes(self) -> int:
        """The smallest flash any of its devices has for a student's weights."""
        return min(d.model_flash_bytes for d in self.devices)

    @property
    def model_ram_bytes(self) -> int:
        """The smallest RAM any of its devices has for a student's arena."""
        return min(d.model_ram_bytes for d in self.devices)

    def describe(self) -> str:
        return f"group {self.index} ({', '.join(self.ids)})"


def features(devices: Sequence[FleetDevice]) -> np.ndarray:
    """(N, 3): each device's (model RAM, model flash, clock), each column divided by its maximum."""
    x = np.array([[d.model_ram_bytes, d.model_flash_bytes, d.clock_hz] for d in devices], dtype=np.float64)
    return x / x.max(axis=0)


def check_thresholds(d_th: float, p_th: float) -> None:
    if not (math.isfinite(d_th) and d_th >= 0):
        raise InputError(f"d_th must be a finite number >= 0 (a distance between normalized devices), got {d_th}")
    if not 0 <= p_th < 1:
        raise InputError(f"p_th must be in [0, 1) (a group's largest acceptable failure probability), got {p_th}")


def group_devices(devices: Sequence[FleetDevice], d_th: float, p_th: float) -> tuple[DeviceGroup, ...]:
    """Follow-the-leader grouping of ``devices`` (in their order) with thresholds ``d_th`` and ``p_th``."""
    check_thresholds(d_th, p_th)
    if not devices:
        raise InputError("no devices to group")
    x = features(devices)
    members: list[list[int]] = []
    centroids: list[np.ndarray] = []
    for n in range(len(devices)):
        for g, idx in enumerate(members):
            near = float(np.linalg.norm(centroids[g] - x[n])) <= d_th + _TOL
            needs_replica = math.prod(devices[i].outage_probability for i in idx) > p_th
            if near and needs_replica:
                idx.append(n)
                centroids[g] = x[idx].mean(axis=0)
                break
        else:
            members.append([n])
            centroids.append(x[n].copy())
    return tuple(DeviceGroup(g, tuple(devices[i] for i in idx), tuple(float(v) for v in centroids[g]))
                 for g, idx in enumerate(members))
