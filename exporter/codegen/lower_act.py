"""Lowerings of the activations (HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX).

Registered into ``lower.LOWERINGS``; every key must also be in ``tinysplit.exporter.ops.OPS``.
"""

from __future__ import annotations

from tinysplit.exporter.codegen.lower import Lowering

LOWERINGS: dict[str, Lowering] = {}
