"""Lowerings of the binary ops and reductions (SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL).

Registered into ``lower.LOWERINGS``; every key must also be in ``tinysplit.exporter.ops.OPS``.

Every Prepare-time number is computed as TFLite Micro computes it (note where it uses float and
where double arithmetic: SUB scales its inputs in float, SQUARED_DIFFERENCE in double).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tinysplit.exporter.codegen.lower import (
    INT8_MAX,
    INT8_MIN,
    BinaryParams,
    KernelCall,
    Lowering,
    MeanParams,
    Operator,
    TfliteModel,
    _broadcast,
    _const_input,
    _dtype,
    _ext4,
    _need,
    _q,
    _strides,
    _t,
    _where,
    activation_range,
    quantize_multiplier,
)

SUB_LEFT_SHIFT = 20  # TFLite Micro's int8 SUB scales both inputs up by 2^20, like ADD
SQDIFF_LEFT_SHIFT = 7  # int8 SQUARED_DIFFERENCE: 255^2 * 2^14 still fits 32 bits


@dataclass(frozen=True)
class ReduceParams:
    """REDUCE_MAX over any set of the 4 (extended) dimensions (the MEAN kernel's layout)."""

    c_type: ClassVar[str] = "ts_reduce_params_t"
    out_dims: tuple[int, int, int, int]
    red_dims: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]


def _binary_int8(model: TfliteModel, op: Operator):  # type: ignore[no-untyped-def]
    a, b, out = _t(model, op.inputs[0]), _t(model, op.inputs[1]), _t(model, op.outputs[0])
    for t in (a, b, out):
        _dtype(op, t, "int8")
    flat, dims, s1, s2 = _broadcast(op, a, b, out)
    return a, b, out, flat, dims, s1, s2


def _call(op: Operator, kernel: str, p: object, flat: int) -> tuple[KernelCall, ...]:
    return (KernelCall(op.index, op.opcode, kernel, p, (), (op.inputs[0], op.inputs[1]), op.outputs[0],
                       reuse="elementwise" if flat else ""),)


def _smaller_than_one(real: float, op: Operator, what: str) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: TFLite Micro aborts unless 0 < real < 1."""
    _need(0.0 < real < 1.0, op, f"its {what} rescale factor {real:.6g} is not in (0, 1), which TFLite Micro "
                                "refuses (the output scale is too small for the input scales)")
    m, s = quantize_multiplier(real)
    return m, s


def lower_sub(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    a, b, out, flat, dims, s1, s2 = _binary_int8(model, op)
    (sa, za), (sb, zb), (so, zo) = _q(a), _q(b), _q(out)
    f32 = np.float32
    # sub_common.cc: float arithmetic, then cast to double
    twice_max = f32(2) * max(f32(sa), f32(sb))
    m1, sh1 = _smaller_than_one(float(f32(sa) / twice_max), op, "input 1")
    m2, sh2 = _smaller_than_one(float(f32(sb) / twice_max), op, "input 2")
    mo, sho = _smaller_than_one(float(twice_max / (f32(1 << SUB_LEFT_SHIFT) * f32(so))), op, "output")
    amin, amax = activation_range(op.options.fusedActivationFunction if op.options is not None else 0,
                                  so, zo, _where(op))
    p = BinaryParams(flat, int(np.prod(dims)), dims, s1, s2, -za, -zb, zo, SUB_LEFT_SHIFT,
                     m1, sh1, m2, sh2, mo, sho, amin, amax)
    return _call(op, "ts_sub_s8", p, flat)


def lower_squared_difference(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    a, b, out, flat, dims, s1, s2 = _binary_int8(model, op)
    (sa, za), (sb, zb), (so, zo) = _q(a), _q(b), _q(out)
    f32 = np.float32
    # squared_difference.cc: double arithmetic on the float scales
    twice_max = 2.0 * float(max(f32(sa), f32(sb)))
    m1, sh1 = _smaller_than_one(float(f32(sa)) / twice_max, op, "input 1")
    m2, sh2 = _smaller_than_one(float(f32(sb)) / twice_max, op, "input 2")
    mo, sho = quantize_multiplier(twice_max * twice_max / float(f32(1 << (2 * SQDIFF_LEFT_SHIFT)) * f32(so)))
    p = BinaryParams(flat, int(np.prod(dims)), dims, s1, s2, -za, -zb, zo, SQDIFF_LEFT_SHIFT,
                     m1, sh1, m2, sh2, mo, sho, INT8_MIN, INT8_MAX)
    return _call(op, "ts_squared_difference_s8", p, flat)


def _lower_min_max(model: TfliteModel, op: Operator, kernel: str) -> tuple[KernelCall, ...]:
    # TFLite Micro compares the raw int8 values (no requantization, whatever the scales)
    _, _, _, flat, dims, s1, s2 = _binary_int8(model, op)
    p = BinaryParams(flat, int(np.prod(dims)), dims, s1, s2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, INT8_MIN, INT8_MAX)
    return _call(op, kernel, p, flat)


def lower_minimum(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    return _lower_min_max(model, op, "ts_minimum_s8")


def lower_maximum(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    return _lower_min_max(model, op, "ts_maximum_s8")


def _reduction(model: TfliteModel, op: Operator):  # type: ignore[no-untyped-def]
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    ax = _t(model, op.inputs[1])
    _dtype(op, ax, "int32")
    rank = len(inp.shape)
    dims = _ext4(inp.shape, op)
    raw = [int(a) for a in _const_input(model, op, 1, "axis").reshape(-1)]
    _need(all(-rank <= a < rank for a in raw), op, f"axis {raw} is out of range for rank {rank}")
    axes = {(a + rank) % rank + (4 - rank) for a in raw}
    red = tuple(dims[k] if k in axes else 1 for k in range(4))
    outd = tuple(1 if k in axes else dims[k] for k in range(4))
    _need(int(np.prod(outd)) == int(np.prod(out.shape)), op, f"output shape {out.shape} does not match the reduction")
    return inp, out, dims, red, outd


def lower_sum(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, dims, red, outd = _reduction(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    # reduce_common.cc PrepareMeanOrSum: QuantizeMultiplier(double in / double out); QuantizedMeanOrSum
    # with compute_sum keeps it as is (no 1/count folding): the MEAN kernel's arithmetic
    mult, shift = quantize_multiplier(float(np.float32(si)) / float(np.float32(so)))
    p = MeanParams(outd, red, _strides(dims), int(np.prod(red)), 0, zi, zo, mult, shift)  # type: ignore[arg-type]
    return (KernelCall(op.index, op.opcode, "ts_mean_s8", p, (), (op.inputs[0],), op.outputs[0]),)


def lower_reduce_max(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, dims, red, outd = _reduction(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    _need(np.float32(si) == np.float32(so) and zi == zo, op,
          f"input scale/zero point {si}/{zi} differ from the output's {so}/{zo}; TFLite Micro's int8 REDUCE_MAX "
          "requires them equal")
    p = ReduceParams(outd, red, _strides(dims))  # type: ignore[arg-type]
    return (KernelCall(op.index, op.opcode, "ts_reduce_max_s8", p, (), (op.inputs[0],), op.outputs[0]),)


@dataclass(frozen=True)
class ArgMaxParams:
    """ARG_MAX over one axis: the input as [outer][axis][inner], int32 indices out ([outer][inner])."""

    c_type: ClassVar[str] = "ts_argmax_params_t"
    outer: int
    axis_size: int
    inner: int


def lower_arg_max(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _need(out.dtype == "int32", op, f"its output '{out.name}' is {out.dtype}; TFLite Micro's ARG_MAX only writes "
                                    "int32 indices (export with output_type int32)")
    ax_t = _t(model, op.inputs[1])
    _need(ax_t.dtype == "int32", op, f"its axis '{ax_t.name}' is {ax_t.dtype}; TFLite Micro only takes an int32 axis")
    raw = [int(a) for a in _const_input(model, op, 1, "axis").reshape(-1)]
    rank = len(inp.shape)
    _need(len(raw) == 1 and -rank <= raw[0] < rank, op, f"axis {raw} is not one axis of a rank-{rank} input")
    axis = raw[0] % rank
    outer = int(np.prod(inp.shape[:axis]))
    inner = int(np.prod(inp.shape[axis + 1:]))
    _need(int(np.prod(out.shape)) == outer * inner, op, f"output shape {out.shape} does not match the reduction")
    p = ArgMaxParams(outer, int(inp.shape[axis]), inner)
    return (KernelCall(op.index, op.opcode, "ts_argmax_s8", p, (), (op.inputs[0],), op.outputs[0]),)


@dataclass(frozen=True)
class BatchMatMulParams:
    """out[b][i][j] = sum_k (lhs(b, i, k) + lhs_offset) * (rhs(b, k, j) + rhs_offset), requantized; the
    operands read through element strides (adj_x / adj_y are strides) and batch strides (0: broadcast)."""

    c_type: ClassVar[str] = "ts_batch_matmul_params_t"
    batch: tuple[int, int, int]
    lhs_batch: tuple[int, int, int]
    rhs_batch: tuple[int, int, int]
    rows: int
    cols: int
    depth: int
    lhs_row: int  # element stride of lhs along i
    lhs_k: int  # ... along k
    rhs_k: int
    rhs_col: int
    lhs_offset: int
    rhs_offset: int
    out_offset: int
    mult: int
    shift: int


def lower_batch_matmul(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    lhs, rhs, out = _t(model, op.inputs[0]), _t(model, op.inputs[1]), _t(model, op.outputs[0])
    for t in (lhs, rhs, out):
        _dtype(op, t, "int8")
    for t in (lhs, rhs):
        _need(2 <= len(t.shape) <= 5, op, f"operand '{t.name}' has rank {len(t.shape)}; TFLite Micro takes 2 to 5")
        _need(len(t.scales) == 1, op, f"operand '{t.name}' has {len(t.scales)} scales; BATCH_MATMUL needs one per tensor")
    o = op.options
    adj_x, adj_y = bool(o.adjX) if o is not None else False, bool(o.adjY) if o is not None else False
    lsh = (1,) * (5 - len(lhs.shape)) + tuple(lhs.shape)
    rsh = (1,) * (5 - len(rhs.shape)) + tuple(rhs.shape)
    rows, depth = (lsh[4], lsh[3]) if adj_x else (lsh[3], lsh[4])
    rdepth, cols = (rsh[4], rsh[3]) if adj_y else (rsh[3], rsh[4])
    _need(depth == rdepth, op, f"operands {lhs.shape} and {rhs.shape} (adj_x {adj_x}, adj_y {adj_y}) do not multiply")
    batch = []
    for k in range(3):
        _need(lsh[k] == rsh[k] or 1 in (lsh[k], rsh[k]), op,
              f"batch dimensions of {lhs.shape} and {rhs.shape} do not broadcast")
        batch.append(max(lsh[k], rsh[k]))
    want = tuple(batch) + (rows, cols)
    rank = max(len(lhs.shape), len(rhs.shape))
    _need(tuple(out.shape) == want[5 - rank:], op, f"output shape {out.shape} differs from the computed {want[5 - rank:]}")
    ls, rs = _strides(lsh), _strides(rsh)
    lb = tuple(0 if lsh[k] == 1 else ls[k] for k in range(3))
    rb = tuple(0 if rsh[k] == 1 else rs[k] for k in range(3))
    (sl, zl), (sr, zr), (so, zo) = _q(lhs), _q(rhs), _q(out)
    # GetQuantizedConvolutionMultipler: the scale product in float, then a double division
    mult, shift = quantize_multiplier(float(np.float32(sl) * np.float32(sr)) / float(np.float32(so)))
    lhs_row, lhs_k = (1, rows) if adj_x else (depth, 1)
    rhs_k, rhs_col = (1, depth) if adj_y else (cols, 1)
    p = BatchMatMulParams(tuple(batch), lb, rb, rows, cols, depth, lhs_row, lhs_k, rhs_k, rhs_col,  # type: ignore[arg-type]
                          -zl, -zr, zo, mult, shift)
    return (KernelCall(op.index, op.opcode, "ts_batch_matmul_s8", p, (), (op.inputs[0], op.inputs[1]), op.outputs[0]),)


LOWERINGS: dict[str, Lowering] = {
    "SUB": lower_sub,
    "MINIMUM": lower_minimum,
    "MAXIMUM": lower_maximum,
    "SQUARED_DIFFERENCE": lower_squared_difference,
    "SUM": lower_sum,
    "REDUCE_MAX": lower_reduce_max,
    "ARG_MAX": lower_arg_max,
    "BATCH_MATMUL": lower_batch_matmul,
}
