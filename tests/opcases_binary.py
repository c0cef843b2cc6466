"""Random per-op cases for the binary ops and reductions (SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL).

Own seed, so adding cases here never changes another group's cases.
"""

from __future__ import annotations

import numpy as np

from opcases import OpCase


def cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    del rng
    return []
