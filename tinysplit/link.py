"""A device-to-host link as the evaluations model it, and the load a fleet of devices puts on a
network (numpy-free; shared by the methods' evaluations)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkModel:
    """An ideal link: ``rate_bps`` bits per second plus a fixed ``overhead_s`` per transfer
    (propagation delay, medium access)."""

    rate_bps: float = 250_000.0  # NAIR's paper link
    overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate_bps > 0 or self.overhead_s < 0:
            raise ValueError(f"a link needs a positive rate and a non-negative overhead, got {self.rate_bps} bit/s, "
                             f"{self.overhead_s} s")

    def latency_s(self, nbytes: float) -> float:
        """Seconds to move ``nbytes`` bytes in one transfer."""
        return nbytes * 8 / self.rate_bps + self.overhead_s


def fleet_load_bps(devices: int, samples_per_s: float, bytes_per_sample: float) -> float:
    """Bits per second that ``devices`` devices, each sending ``bytes_per_sample`` bytes for each of
    ``samples_per_s`` samples a second, put on the network."""
    return devices * samples_per_s * bytes_per_sample * 8
