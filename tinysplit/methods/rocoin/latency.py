"""Latency of a RoCoIn portion: a student's run on a device plus its portion on the device's link,
and the time a group's first replica arrives.

- compute: instructions per inference (measured in QEMU on the device's board) / clock (one
  instruction per cycle);
- link: the portion's bytes as they travel, ROCOIN_PORTION frames of at most MAX_PAYLOAD payload
  bytes, each with the frame header and CRC trailer and the portion's 4-byte (partition, total)
  header, at the device's link rate. UART's COBS framing (at most 1 byte per 254 and a delimiter)
  and the input's broadcast to the devices are not counted (the paper counts only d_n -> d_1);
- a group: its devices run the same student in parallel and the host takes the first portion that
  arrives. With independent outages, the time of the first arrival given that one arrives is
  E = sum_i t_i (1 - p_i) prod_{j<i} p_j / (1 - prod_j p_j) over the devices sorted by t; the
  best case (no outage) is min t (the paper's objective (1a)), the worst max t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from tinysplit.wire.frame import HEADER_SIZE, MAX_PAYLOAD, TRAILER_SIZE

PORTION_HEADER = 4  # u16 partition, u16 partitions_total at the start of every ROCOIN_PORTION payload
PORTION_CHUNK = MAX_PAYLOAD - PORTION_HEADER  # feature bytes per frame


def portion_frames(nbytes: int) -> int:
    """ROCOIN_PORTION frames that carry ``nbytes`` feature bytes (at least one)."""
    return max(1, math.ceil(nbytes / PORTION_CHUNK))


def wire_bytes(nbytes: int) -> int:
    """Bytes on the link for a portion of ``nbytes`` feature bytes."""
    return nbytes + portion_frames(nbytes) * (HEADER_SIZE + TRAILER_SIZE + PORTION_HEADER)


def link_seconds(nbytes: int, rate_bps: float) -> float:
    return wire_bytes(nbytes) * 8 / rate_bps


def compute_seconds(instructions: int, clock_hz: float) -> float:
    return instructions / clock_hz


@dataclass(frozen=True)
class GroupLatency:
    first_s: float  # no outage: the fastest replica (the paper's objective (1a))
    expected_s: float  # the first replica that arrives, given one does (independent outages)
    worst_s: float  # only the slowest replica arrives


def group_latency(latencies: Sequence[float], outage: Sequence[float]) -> GroupLatency:
    """The first-arrival latency of a group whose devices take ``latencies`` seconds and miss
    with probabilities ``outage`` (each < 1)."""
    if not latencies or len(latencies) != len(outage):
        raise ValueError("one latency and one outage probability per device, at least one device")
    order = sorted(range(len(latencies)), key=lambda i: latencies[i])
    none_yet, total = 1.0, 0.0
    for i in order:
        total += latencies[i] * (1 - outage[i]) * none_yet
        none_yet *= outage[i]
    first, worst = min(latencies), max(latencies)
    return GroupLatency(first, min(max(total / (1 - none_yet), first), worst), worst)  # clamp: rounding only
