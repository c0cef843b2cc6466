"""What a device sends, computed in Python: the reference for the C device application (whose
frames must be byte-identical) and the simulated devices of tests and benchmarks."""

from __future__ import annotations

import numpy as np

from tinysplit.methods.nair.slices import SlicePlan, extract_units
from tinysplit.wire.frame import MAX_PAYLOAD, FrameType, encode_frame
from tinysplit.wire.payloads import NairSlice, make_frame


def slice_frames(plan: SlicePlan, output: np.ndarray, budget_units: int, device: int, bundle_id: int,
                 seq: int) -> list[bytes]:
    """The NAIR_SLICE frames for one sample: units 0..budget-1 in importance order, as few units
    per frame as fit MAX_PAYLOAD allows; part_index/part_count number the frames."""
    budget = max(1, min(budget_units, plan.units_total))
    per = plan.max_units_per_frame(MAX_PAYLOAD)
    starts = list(range(0, budget, per))
    frames = []
    for i, start in enumerate(starts):
        count = min(per, budget - start)
        payload = NairSlice(start, count, plan.units_total, extract_units(plan, output, start, count))
        frames.append(encode_frame(make_frame(FrameType.NAIR_SLICE, payload, device, bundle_id, seq, i, len(starts))))
    return frames
