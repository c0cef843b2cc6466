"""The device's early-exit rule on the int8 output [z, s * gamma] (numpy only: host and tests use it).

The device model's one output tensor holds z in channels [0, D) and s * gamma_c in channels
[D, D + C), all with the output's scale and zero point. The device serves a sample locally when
max_c gamma_c >= t. On int8 values that is q >= q_t with

    q_t = zero_point + ceil(t * s / scale)     (an integer; above 127 means "never early")

computed once per threshold (at start and on each CONTROL frame), so the decision is an integer
comparison on the device and the host reference makes exactly the same one. The early label is the
first index of the largest q among the C confidences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def threshold_q(threshold: float, confidence_scale: float, scale: float, zero_point: int) -> int:
    """The int8 confidence at or above which a sample is served on the device (may be 128: never)."""
    if not (0.0 <= threshold <= 1.0) or math.isnan(threshold):
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if confidence_scale <= 0 or scale <= 0:
        raise ValueError("confidence_scale and scale must be positive")
    q = zero_point + math.ceil(threshold * confidence_scale / scale - 1e-9)
    return int(min(max(q, -128), 128))


@dataclass(frozen=True)
class Decisions:
    early: np.ndarray  # (N,) bool: served on the device
    label: np.ndarray  # (N,) the device's early label (argmax of the confidences)
    confidence: np.ndarray  # (N,) max_c gamma_c, dequantized
    confidence_q: np.ndarray  # (N,) the int8 max


def decide(out_q: np.ndarray, latent: int, classes: int, threshold: float, confidence_scale: float, scale: float,
           zero_point: int) -> Decisions:
    """Apply the device rule to int8 outputs of shape (N, ..., D + C)."""
    flat = np.asarray(out_q).reshape(len(out_q), -1)
    if flat.shape[1] != latent + classes:
        raise ValueError(f"int8 output has {flat.shape[1]} values per sample, expected {latent} + {classes}")
    conf_q = flat[:, latent:].astype(np.int32)
    label = conf_q.argmax(1)
    top = conf_q.max(1)
    qt = threshold_q(threshold, confidence_scale, scale, zero_point)
    conf = (top - zero_point) * np.float64(scale) / confidence_scale
    return Decisions(top >= qt, label, conf, top)
