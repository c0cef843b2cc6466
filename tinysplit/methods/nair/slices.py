"""NAIR slicing of a device model's NHWC int8 output into importance-ordered units.

The importance order is baked into the head's weights at export, so unit k is channels
``k*u .. k*u+u-1`` and "the first j units" is a channel prefix. A slice carries units
``start .. start+count-1``: for every spatial position (NHWC order), those ``count*u`` channels.
Both the device application and the host assembler follow this layout; the Python reference
pipeline and the simulated devices use these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinysplit.errors import ManifestError
from tinysplit.manifest import Manifest


@dataclass(frozen=True)
class SlicePlan:
    height: int
    width: int
    channels: int
    unit_channels: int
    zero_point: int
    scale: float
    default_budget_units: int

    @property
    def units_total(self) -> int:
        return self.channels // self.unit_channels

    @property
    def positions(self) -> int:
        return self.height * self.width

    @property
    def unit_bytes(self) -> int:
        """Bytes one unit occupies in a slice (all positions)."""
        return self.positions * self.unit_channels

    @property
    def output_bytes(self) -> int:
        return self.positions * self.channels

    def slice_bytes(self, count: int) -> int:
        return count * self.unit_bytes

    def max_units_per_frame(self, max_payload: int, header: int = 6) -> int:
        return max(1, (max_payload - header) // self.unit_bytes)


def plan_for(manifest: Manifest, model: str | None = None) -> SlicePlan:
    """The slice plan of a bundle's device model (default: its first); units from method_data.nair."""
    dm = manifest.device_model(model) if model else manifest.device_models[0]
    out = dm.outputs[0]
    if len(out.shape) == 4:
        _, h, w, c = out.shape
    else:
        h, w, c = 1, 1, int(np.prod(out.shape[1:]))
    if manifest.method != "nair" or "nair" not in manifest.method_data:
        raise ManifestError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle without a NAIR slice plan "
                            "(field 'method_data.nair'); export it with method='nair'")
    nair = manifest.method_data["nair"]
    u = int(nair["unit_channels"])
    if u < 1 or c % u:
        raise ManifestError(f"field 'method_data.nair.unit_channels': {u} does not divide the {c} output channels")
    units = c // u
    if nair["units_total"] != units:
        raise ManifestError(f"field 'method_data.nair.units_total': {nair['units_total']}, but {c} channels of "
                            f"{u} make {units} units")
    budget = int(nair["default_budget_units"])
    if not 1 <= budget <= units:
        raise ManifestError(f"field 'method_data.nair.default_budget_units': {budget} is not in 1..{units}")
    return SlicePlan(h, w, c, u, out.zero_point, out.scale, budget)


def extract_units(plan: SlicePlan, output: np.ndarray, start: int, count: int) -> bytes:
    """The slice payload data for units start..start+count-1 of one NHWC int8 output."""
    x = np.asarray(output, dtype=np.int8).reshape(plan.positions, plan.channels)
    lo, hi = start * plan.unit_channels, (start + count) * plan.unit_channels
    return np.ascontiguousarray(x[:, lo:hi]).tobytes()


def place_units(plan: SlicePlan, buf: np.ndarray, start: int, count: int, data: bytes) -> None:
    """Write a slice's data into ``buf`` (positions x channels int8) at its units' channels."""
    lo, hi = start * plan.unit_channels, (start + count) * plan.unit_channels
    buf[:, lo:hi] = np.frombuffer(data, dtype=np.int8).reshape(plan.positions, hi - lo)


def zero_filled(plan: SlicePlan, output: np.ndarray, units: int) -> np.ndarray:
    """The host's view of an output of which only the first ``units`` units arrived (reference)."""
    x = np.asarray(output, dtype=np.int8).reshape(plan.positions, plan.channels).copy()
    x[:, units * plan.unit_channels:] = plan.zero_point
    return x.reshape(plan.height, plan.width, plan.channels)
