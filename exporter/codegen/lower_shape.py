"""Lowerings of the shape, slicing, resize and transposed convolution (STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK,
SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, TRANSPOSE_CONV).

Registered into ``lower.LOWERINGS``; every key must also be in ``tinysplit.exporter.ops.OPS``.
"""

from __future__ import annotations

from tinysplit.exporter.codegen.lower import Lowering

LOWERINGS: dict[str, Lowering] = {}
