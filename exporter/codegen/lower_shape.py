"""Lowerings of the shape, slicing, resize and transposed convolution (STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK,
SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, TRANSPOSE_CONV).

Registered into ``lower.LOWERINGS``; every key must also be in ``tinysplit.exporter.ops.OPS``.

SQUEEZE and EXPAND_DIMS alias their input like RESHAPE. The slicing ops and TRANSPOSE become one
strided gather each (``ts_gather_s8``, up to 5-D); SPLIT, SPLIT_V and UNPACK one gather per output,
PACK one strided copy per input (``ts_concat_s8``). Every index TFLite Micro derives at Prepare or
Eval time from constant tensors (slice bounds, resize maps, transposed-convolution padding) is
computed here, exactly as it does, so the C kernels only move or accumulate bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tinysplit.exporter.codegen.lower import (
    ConcatParams, ConstArray, KernelCall, Lowering, _const_input, _dtype, _need, _nhwc, _per_channel, _bias,
    _q, _strides, _t, _where, activation_range, lower_reshape, out_size_and_padding,
)
from tinysplit.exporter.tflite_model import Operator, TfliteModel

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@dataclass(frozen=True)
class GatherParams:
    c_type: ClassVar[str] = "ts_gather_params_t"
    dims: tuple[int, int, int, int, int]
    strides: tuple[int, int, int, int, int]
    base: int


@dataclass(frozen=True)
class ResizeParams:
    c_type: ClassVar[str] = "ts_resize_params_t"
    batches: int
    in_h: int
    in_w: int
    ch: int
    out_h: int
    out_w: int


@dataclass(frozen=True)
class TconvParams:
    c_type: ClassVar[str] = "ts_tconv_params_t"
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    in_offset: int
    out_offset: int
    act_min: int
    act_max: int


# ----------------------------------------------------------------------------- helpers

def _int8_same_quant(model: TfliteModel, op: Operator, ins: list[int], outs: list[int]) -> None:
    """The data-movement kernels copy int8 values unchanged: every tensor must share one quantization."""
    first = _t(model, ins[0])
    for i in ins + outs:
        t = _t(model, i)
        _dtype(op, t, "int8")
    s0, z0 = _q(first)
    for i in ins[1:] + outs:
        t = _t(model, i)
        s, z = _q(t)
        _need(np.float32(s) == np.float32(s0) and z == z0, op,
              f"tensor '{t.name}' has scale/zero point {s}/{z} but '{first.name}' {s0}/{z0} (TFLite Micro copies int8 "
              "values unchanged here; keep one quantization)")


def _gather(op: Operator, in_shape: tuple[int, ...], axes: list[tuple[int, int, int]], out_index: int,
            in_index: int, out_elems: int) -> KernelCall:
    """axes: per input axis (start, step, count); the output is their product in order (or a permutation
    given as (input axis, start, step, count) tuples through _gather_perm)."""
    return _gather_perm(op, in_shape, [(k, *a) for k, a in enumerate(axes)], out_index, in_index, out_elems)


def _gather_perm(op: Operator, in_shape: tuple[int, ...], axes: list[tuple[int, int, int, int]], out_index: int,
                 in_index: int, out_elems: int) -> KernelCall:
    _need(len(axes) <= 5, op, f"rank {len(axes)} is above 5")
    st = _strides(tuple(in_shape))
    base = sum(start * st[k] for k, start, _, _ in axes)
    dims = [count for _, _, _, count in axes]
    strides = [step * st[k] for k, _, step, _ in axes]
    _need(int(np.prod(dims)) == out_elems, op,
          f"the selected elements ({'x'.join(map(str, dims))}) do not match the output's {out_elems} elements")
    pad = 5 - len(dims)
    p = GatherParams(tuple([1] * pad + dims), tuple([0] * pad + strides), int(base))  # type: ignore[arg-type]
    return KernelCall(op.index, op.opcode, "ts_gather_s8", p, (), (in_index,), out_index)


def _elems(model: TfliteModel, i: int) -> int:
    return int(np.prod(_t(model, i).shape))


def _axis(op: Operator, axis: int, rank: int) -> int:
    _need(-rank <= axis < rank, op, f"axis {axis} is outside rank {rank}")
    return axis % rank


# ----------------------------------------------------------------------------- aliases

def lower_squeeze(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    _dtype(op, _t(model, op.inputs[0]), "int8")
    return lower_reshape(model, op)


def lower_expand_dims(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    _dtype(op, _t(model, op.inputs[0]), "int8")
    _const_input(model, op, 1, "axis")
    return lower_reshape(model, op)


# ----------------------------------------------------------------------------- slicing

def lower_slice(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp = _t(model, op.inputs[0])
    _int8_same_quant(model, op, [op.inputs[0]], [op.outputs[0]])
    rank = len(inp.shape)
    _need(rank <= 5, op, f"input rank {rank} is above 5 (TFLite Micro's SLICE handles up to 5-D)")
    begin = _const_input(model, op, 1, "begin").reshape(-1).astype(np.int64)
    size = _const_input(model, op, 2, "size").reshape(-1).astype(np.int64)
    _need(len(begin) == rank and len(size) == rank, op, f"begin/size have {len(begin)}/{len(size)} entries for rank {rank}")
    axes = []
    for k in range(rank):
        b, s = int(begin[k]), int(size[k])
        if s == -1:
            s = inp.shape[k] - b
        _need(0 <= b and s >= 0 and b + s <= inp.shape[k], op,
              f"slice [{b}, {b}+{s}) is outside dimension {k} of size {inp.shape[k]}")
        axes.append((b, 1, s))
    return (_gather(op, inp.shape, axes, op.outputs[0], op.inputs[0], _elems(model, op.outputs[0])),)


def _start_for_axis(begin: int, stride: int, masked: bool, size: int) -> int:
    if size == 0:
        return 0
    start = begin
    if masked:
        start = INT32_MIN if stride > 0 else INT32_MAX
    if start < 0:
        start += size
    return min(max(start, 0), size) if stride > 0 else min(max(start, -1), size - 1)


def _stop_for_axis(end: int, stride: int, masked: bool, shrink: bool, start: int, size: int) -> int:
    if shrink:
        return start + 1
    stop = end
    if masked:
        stop = INT32_MAX if stride > 0 else INT32_MIN
    if stop < 0:
        stop += size
    return min(max(stop, 0), size) if stride > 0 else min(max(stop, -1), size - 1)


def lower_strided_slice(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp = _t(model, op.inputs[0])
    _int8_same_quant(model, op, [op.inputs[0]], [op.outputs[0]])
    rank = len(inp.shape)
    _need(rank <= 4, op, f"input rank {rank} is above 4 (TFLite Micro's STRIDED_SLICE handles 1-D to 4-D)")
    o = op.options
    _need(not (o.ellipsisMask or o.newAxisMask), op,
          "ellipsis_mask and new_axis_mask are not supported (TFLite Micro ignores them); slice every axis explicitly")
    _need(not getattr(o, "offset", False), op, "the offset attribute is not supported (TFLite Micro ignores it)")
    begin = _const_input(model, op, 1, "begin").reshape(-1)
    end = _const_input(model, op, 2, "end").reshape(-1)
    strides = _const_input(model, op, 3, "strides").reshape(-1)
    _need(len(begin) == len(end) == len(strides) == rank, op, f"begin/end/strides do not have {rank} entries")
    axes = []
    for k in range(rank):
        s = int(strides[k])
        _need(s != 0, op, f"stride {k} is 0")
        size = inp.shape[k]
        start = _start_for_axis(int(begin[k]), s, bool(o.beginMask >> k & 1), size)
        stop = _stop_for_axis(int(end[k]), s, bool(o.endMask >> k & 1), bool(o.shrinkAxisMask >> k & 1), start, size)
        if o.shrinkAxisMask >> k & 1:
            _need(0 <= start < size, op, f"shrunk axis {k} starts at {int(begin[k])}, outside its size {size} "
                                         "(TFLite Micro would read outside the input)")
        count, i = 0, start
        while (i < stop) if s > 0 else (i > stop):  # TFLite's loop: stop exclusive either way
            count += 1
            i += s
        _need(count > 0 or int(np.prod(_t(model, op.outputs[0]).shape)) == 0, op,
              f"axis {k} selects no element (begin {int(begin[k])}, end {int(end[k])}, stride {s}); "
              "TFLite Micro leaves such an output unwritten")
        axes.append((start, s, count))
    return (_gather(op, inp.shape, axes, op.outputs[0], op.inputs[0], _elems(model, op.outputs[0])),)


def _split_calls(model: TfliteModel, op: Operator, in_index: int, axis: int, sizes: list[int]) -> tuple[KernelCall, ...]:
    inp = _t(model, in_index)
    _int8_same_quant(model, op, [in_index], list(op.outputs))
    _need(len(inp.shape) <= 5, op, f"input rank {len(inp.shape)} is above 5")
    _need(sum(sizes) == inp.shape[axis] and all(s >= 0 for s in sizes), op,
          f"split sizes {sizes} do not add up to dimension {axis} ({inp.shape[axis]})")
    _need(len(sizes) == len(op.outputs), op, f"{len(sizes)} splits for {len(op.outputs)} outputs")
    calls, pos = [], 0
    for out, s in zip(op.outputs, sizes):
        axes = [(pos if k == axis else 0, 1, s if k == axis else d) for k, d in enumerate(inp.shape)]
        calls.append(_gather(op, inp.shape, axes, out, in_index, _elems(model, out)))
        pos += s
    return tuple(calls)


def lower_split(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp = _t(model, op.inputs[1])
    axis = _axis(op, int(_const_input(model, op, 0, "axis").reshape(-1)[0]), len(inp.shape))
    n = int(op.options.numSplits)
    _need(n > 0 and inp.shape[axis] % n == 0, op, f"dimension {axis} ({inp.shape[axis]}) does not split into {n}")
    return _split_calls(model, op, op.inputs[1], axis, [inp.shape[axis] // n] * n)


def lower_split_v(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp = _t(model, op.inputs[0])
    sizes = [int(s) for s in _const_input(model, op, 1, "size_splits").reshape(-1)]
    axis = _axis(op, int(_const_input(model, op, 2, "axis").reshape(-1)[0]), len(inp.shape))
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = inp.shape[axis] - sum(s for s in sizes if s != -1)
    return _split_calls(model, op, op.inputs[0], axis, sizes)


def lower_unpack(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp = _t(model, op.inputs[0])
    rank = len(inp.shape)
    axis = _axis(op, int(op.options.axis), rank)
    _int8_same_quant(model, op, [op.inputs[0]], list(op.outputs))
    _need(rank <= 5, op, f"input rank {rank} is above 5")
    _need(len(op.outputs) == inp.shape[axis], op, f"{len(op.outputs)} outputs for dimension {axis} of {inp.shape[axis]}")
    calls = []
    for j, out in enumerate(op.outputs):
        axes = [(j if k == axis else 0, 1, 1 if k == axis else d) for k, d in enumerate(inp.shape)]
        calls.append(_gather(op, inp.shape, axes, out, op.inputs[0], _elems(model, out)))
    return tuple(calls)


def lower_pack(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    out = _t(model, op.outputs[0])
    rank = len(out.shape)
    axis = _axis(op, int(op.options.axis), rank)
    _int8_same_quant(model, op, list(op.inputs), [op.outputs[0]])
    n = len(op.inputs)
    _need(out.shape[axis] == n, op, f"output dimension {axis} is {out.shape[axis]} for {n} inputs")
    outer = int(np.prod(out.shape[:axis]))
    inner = int(np.prod(out.shape[axis + 1:]))
    calls = []
    for j, ti in enumerate(op.inputs):
        _need(_elems(model, ti) == outer * inner, op, f"input '{_t(model, ti).name}' does not match the output shape")
        calls.append(KernelCall(op.index, op.opcode, "ts_concat_s8", ConcatParams(outer, inner, n * inner, j * inner),
                                (), (ti,), op.outputs[0]))
    return tuple(calls)


def lower_transpose(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp = _t(model, op.inputs[0])
    _int8_same_quant(model, op, [op.inputs[0]], [op.outputs[0]])
    rank = len(inp.shape)
    _need(rank <= 5, op, f"input rank {rank} is above 5 (TFLite Micro's TRANSPOSE handles up to 5-D)")
    perm = [int(p) for p in _const_input(model, op, 1, "perm").reshape(-1)]
    _need(sorted(p % rank for p in perm) == list(range(rank)) and len(perm) == rank, op,
          f"perm {perm} is not a permutation of {rank} axes")
    axes = [(p % rank, 0, 1, inp.shape[p % rank]) for p in perm]
    return (_gather_perm(op, inp.shape, axes, op.outputs[0], op.inputs[0], _elems(model, op.outputs[0])),)


# ----------------------------------------------------------------------------- resize

def _resize_common(model: TfliteModel, op: Operator) -> tuple[ResizeParams, bool, bool]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _int8_same_quant(model, op, [op.inputs[0]], [op.outputs[0]])
    _need(len(inp.shape) == 4 and len(out.shape) == 4, op, "input and output must be 4-D (N, H, W, C)")
    size = [int(s) for s in _const_input(model, op, 1, "size").reshape(-1)]
    _need(len(size) == 2 and tuple(size) == tuple(out.shape[1:3]), op,
          f"size {size} does not match the output shape {out.shape}")
    _need(inp.shape[0] == out.shape[0] and inp.shape[3] == out.shape[3], op, "batch and channels must match")
    ac, hp = bool(op.options.alignCorners), bool(op.options.halfPixelCenters)
    p = ResizeParams(inp.shape[0], inp.shape[1], inp.shape[2], inp.shape[3], out.shape[1], out.shape[2])
    return p, ac, hp


def nearest_index(i: int, in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> int:
    """TFLite's GetNearestNeighbor, in float32 as the kernel computes it."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel else f32(0.0)
    v = f32(f32(i) + offset) * scale
    if align_corners:
        a = float(abs(v))  # std::round: half away from zero (exact in double)
        r = int(np.floor(a)) + (1 if a - np.floor(a) >= 0.5 else 0)
        r = r if v >= 0 else -r
    else:
        r = int(np.floor(v))
    r = min(r, in_size - 1)
    if half_pixel:
        r = max(0, r)
    return r


def lower_resize_nearest_neighbor(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    p, ac, hp = _resize_common(model, op)
    ymap = np.asarray([nearest_index(y, p.in_h, p.out_h, ac, hp) for y in range(p.out_h)], dtype=np.int32)
    xmap = np.asarray([nearest_index(x, p.in_w, p.out_w, ac, hp) for x in range(p.out_w)], dtype=np.int32)
    return (KernelCall(op.index, op.opcode, "ts_resize_nn_s8", p,
                       (ConstArray("ymap", "int32_t", ymap), ConstArray("xmap", "int32_t", xmap)),
                       (op.inputs[0],), op.outputs[0]),)


def _tdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def bilinear_table(in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """{lower, upper, weight} per output index, as TFLite's ResizeBilinearInteger computes them."""
    scale = _tdiv(1024 * in_size + out_size // 2, out_size)
    if align_corners and out_size > 1:
        scale = _tdiv(1024 * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
    rows = []
    for i in range(out_size):
        v = i * scale + scale // 2 - 512 if half_pixel else i * scale
        lo = max(_tdiv(v, 1024), 0)
        hi = min(_tdiv(v + 1023, 1024), in_size - 1)
        rows.append((lo, hi, v - 1024 * lo))
    return np.asarray(rows, dtype=np.int32).reshape(-1)


def lower_resize_bilinear(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    p, ac, hp = _resize_common(model, op)
    _need(not (ac and hp), op, "align_corners and half_pixel_centers together are not supported by TFLite; "
                               "set one of them")
    ytab = bilinear_table(p.in_h, p.out_h, ac, hp)
    xtab = bilinear_table(p.in_w, p.out_w, ac, hp)
    return (KernelCall(op.index, op.opcode, "ts_resize_bilinear_s8", p,
                       (ConstArray("ytab", "int32_t", ytab), ConstArray("xtab", "int32_t", xtab)),
                       (op.inputs[0],), op.outputs[0]),)


# ----------------------------------------------------------------------------- transposed convolution

def lower_transpose_conv(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    _need(len(op.inputs) in (3, 4), op, f"{len(op.inputs)} inputs (expected output_shape, filter, input[, bias])")
    filt, inp, out = _t(model, op.inputs[1]), _t(model, op.inputs[2]), _t(model, op.outputs[0])
    for t in (inp, filt, out):
        _dtype(op, t, "int8")
    _need(filt.is_constant, op, "its filter must be constant")
    ih, iw, ic = _nhwc(op, inp)
    oh, ow, oc = _nhwc(op, out)
    _need(len(filt.shape) == 4 and filt.shape[0] == oc and filt.shape[3] == ic, op,
          f"filter shape {filt.shape} does not match input channels {ic} / output channels {oc}")
    o = op.options
    kh, kw = filt.shape[1], filt.shape[2]
    sh, sw = int(o.strideH), int(o.strideW)
    _need(sh >= 1 and sw >= 1, op, f"strides {sh}x{sw} must be positive")
    # TFLite Micro's Prepare: the padding of a convolution from the *output* size to the input size
    _, pad_h = out_size_and_padding(o.padding, oh, kh, sh, 1)
    _, pad_w = out_size_and_padding(o.padding, ow, kw, sw, 1)
    _, in_zp = _q(inp)
    _, out_zp = _q(out)
    mult, shift = _per_channel(op, inp, filt, out, oc)
    bias = _bias(model, op, 3) if len(op.inputs) == 4 else None
    so, _ = _q(out)
    act_min, act_max = activation_range(int(getattr(o, "fusedActivationFunction", 0) or 0), so, out_zp, _where(op))
    p = TconvParams(ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, pad_h, pad_w, -in_zp, out_zp, act_min, act_max)
    w = ConstArray("filter", "int8_t", np.ascontiguousarray(filt.data, dtype=np.int8).reshape(-1))
    return (KernelCall(op.index, op.opcode, "ts_transpose_conv_s8", p, (w, bias, mult, shift),
                       (op.inputs[2],), op.outputs[0]),)


LOWERINGS: dict[str, Lowering] = {
    "SQUEEZE": lower_squeeze,
    "EXPAND_DIMS": lower_expand_dims,
    "SLICE": lower_slice,
    "STRIDED_SLICE": lower_strided_slice,
    "SPLIT": lower_split,
    "SPLIT_V": lower_split_v,
    "PACK": lower_pack,
    "UNPACK": lower_unpack,
    "TRANSPOSE": lower_transpose,
    "RESIZE_NEAREST_NEIGHBOR": lower_resize_nearest_neighbor,
    "RESIZE_BILINEAR": lower_resize_bilinear,
    "TRANSPOSE_CONV": lower_transpose_conv,
}
