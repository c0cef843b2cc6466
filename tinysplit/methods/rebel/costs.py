"""What ReBEL costs on a link and on a network (paper sec. VI-D), from measured parts.

- End-to-end latency per sample at a threshold: the device's Head1 + classifier (its instruction
  count, exact from QEMU, at a stated clock, one instruction per cycle: a lower bound on a Cortex-M4,
  whose loads and multiply-accumulates can take two), then one frame on the link (an EARLY_LABEL of
  3 payload bytes, or a LATENT of D bytes, each with the frame's 24 bytes of header and CRC), then,
  for a latent, the host's Head2 + Tail (measured). The mean weighs the two paths by the coverage.
- The fleet table: the network load of N devices at R samples/s for raw int8 images, the bottleneck
  alone (every sample's latent: HND) and ReBEL at given coverages. The paper counts payload only (1
  byte per value, labels free): ``label_payload=0`` reproduces its 61.44 / 17.34 / 13.35 / 8.84 Mbps
  (100 devices, 25 samples/s, 3072 B images, D = 867, coverage 0.23 and 0.49). The wire column adds
  tinysplit's frame header and CRC to every frame (at most 1024 payload bytes per frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinysplit.link import LinkModel, fleet_load_bps
from tinysplit.wire.frame import HEADER_SIZE, MAX_PAYLOAD, TRAILER_SIZE

EARLY_LABEL_PAYLOAD = 3  # EARLY_LABEL: class (u16) + confidence (u8)


@dataclass(frozen=True)
class CostConfig:
    """What ``deployment_costs`` measures and assumes: the board whose QEMU instruction count stands
    for the device (None: no device figures), the device clock, the link, and the fleet."""

    board: str | None = "qemu-mps2-an386"
    clock_hz: float = 64e6
    link: LinkModel = field(default_factory=LinkModel)
    hil_samples: int = 3
    devices: int = 100
    samples_per_s: float = 25.0
    fleet_coverages: tuple[float, ...] = (0.23, 0.49)  # the paper's two operating points


def frame_bytes(payload: int) -> int:
    """Bytes on the wire for ``payload`` bytes: one frame per MAX_PAYLOAD bytes, each with its header
    and CRC (a raw CIFAR image, 3072 B, takes three frames)."""
    return payload + max(1, -(-payload // MAX_PAYLOAD)) * (HEADER_SIZE + TRAILER_SIZE)


def device_seconds(instructions: int, clock_hz: float) -> float:
    """Seconds for ``instructions`` at one instruction per cycle at ``clock_hz``."""
    if not clock_hz > 0:
        raise ValueError(f"the device clock must be positive, got {clock_hz} Hz")
    return instructions / clock_hz


def latency(coverage: float, latent: int, device_s: float, host_s: float, link: LinkModel) -> dict[str, float]:
    """Milliseconds: on the early path, on the remote path, and their mean at ``coverage``."""
    early = device_s + link.latency_s(frame_bytes(EARLY_LABEL_PAYLOAD))
    remote = device_s + link.latency_s(frame_bytes(latent)) + host_s
    return {"early_ms": round(1000 * early, 3), "remote_ms": round(1000 * remote, 3),
            "mean_ms": round(1000 * (coverage * early + (1 - coverage) * remote), 3)}


def fleet_rows(input_bytes: int, latent: int, coverages: tuple[float, ...], devices: int = 100,
               samples_per_s: float = 25.0, label_payload: int = EARLY_LABEL_PAYLOAD) -> list[dict[str, Any]]:
    """Rows of the fleet table: name, bytes per sample (payload; on the wire) and the load in Mbit/s."""
    for c in coverages:
        if not 0 <= c <= 1:
            raise ValueError(f"a coverage must lie in [0, 1], got {c}")
    rows = [("raw images", float(input_bytes), frame_bytes(input_bytes)),
            ("bottleneck only (HND)", float(latent), frame_bytes(latent))]
    rows += [(f"ReBEL, coverage {c:.2f}", (1 - c) * latent + c * label_payload,
              (1 - c) * frame_bytes(latent) + c * frame_bytes(label_payload)) for c in coverages]
    return [{"name": name, "payload_bytes": round(p, 2), "wire_bytes": round(w, 2),
             "payload_mbps": round(fleet_load_bps(devices, samples_per_s, p) / 1e6, 4),
             "wire_mbps": round(fleet_load_bps(devices, samples_per_s, w) / 1e6, 4)} for name, p, w in rows]


def format_fleet(rows: list[dict[str, Any]], devices: int, samples_per_s: float) -> str:
    lines = [f"network load of {devices} devices at {samples_per_s:g} samples/s",
             f"{'':26}{'payload B':>10}{'Mbit/s':>9}{'wire B':>9}{'Mbit/s':>9}"]
    for r in rows:
        lines.append(f"{r['name']:26}{r['payload_bytes']:>10.1f}{r['payload_mbps']:>9.2f}{r['wire_bytes']:>9.1f}"
                     f"{r['wire_mbps']:>9.2f}")
    return "\n".join(lines)
