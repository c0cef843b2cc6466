"""Lowerings of the binary ops and reductions (SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL).

Registered into ``lower.LOWERINGS``; every key must also be in ``tinysplit.exporter.ops.OPS``.
"""

from __future__ import annotations

from tinysplit.exporter.codegen.lower import Lowering

LOWERINGS: dict[str, Lowering] = {}
