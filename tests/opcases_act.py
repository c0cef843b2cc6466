"""Random per-op cases for the activations (HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX).

Own seed, so adding cases here never changes another group's cases.
"""

from __future__ import annotations

import numpy as np

from opcases import OpCase


def cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    del rng
    return []
