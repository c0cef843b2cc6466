"""Random per-op cases for the shape, slicing, resize and transposed convolution (STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK,
SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, TRANSPOSE_CONV).

Own seed, so adding cases here never changes another group's cases.
"""

from __future__ import annotations

import math

import numpy as np

from opcases import OpCase
from tflite_builder import ACT, PAD, ModelBuilder, options


def _q(rng: np.random.Generator) -> tuple[float, int]:
    return float(10 ** rng.uniform(-2.5, -0.5)), int(rng.choice([-128, 127, *rng.integers(-100, 101, size=4)]))


def _shape(rng: np.random.Generator, rank: int, lo: int = 1, hi: int = 6) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(lo, hi, size=rank))


def _relu(b: ModelBuilder, x: int, shape: tuple[int, ...], s: float, z: int) -> int:
    """x -> MAX_POOL_2D 1x1 with RELU (same quantization): an op between the input and the op under test."""
    y = b.tensor(shape, "int8", s, z)
    b.op("MAX_POOL_2D", [x], [y], options("Pool2DOptions", padding=PAD["VALID"], strideH=1, strideW=1,
                                          filterHeight=1, filterWidth=1, fusedActivationFunction=ACT["RELU"]))
    return y


def _i32(b: ModelBuilder, values: list[int]) -> int:
    return b.tensor((len(values),), "int32", data=np.asarray(values, dtype=np.int32))


def squeeze_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), 1, int(rng.integers(2, 6)))
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    r = _relu(b, x, shape, s, z)
    dims = [2] if k % 2 else []
    oshape = (1, shape[1], shape[3]) if dims else tuple(d for d in shape if d != 1)
    y = b.tensor(oshape, "int8", s, z)
    b.op("SQUEEZE", [r], [y], options("SqueezeOptions", squeezeDims=dims))
    return OpCase(f"squeeze_{k}", ("SQUEEZE", "MAX_POOL_2D"), b.build([x], [y]), shape)


def expand_dims_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    r = _relu(b, x, shape, s, z)
    axis = [0, 2, -1, 4][k % 4]
    oshape = list(shape)
    oshape.insert(axis % 5, 1)
    y = b.tensor(tuple(oshape), "int8", s, z)
    b.op("EXPAND_DIMS", [r, _i32(b, [axis])], [y], options("ExpandDimsOptions"))
    return OpCase(f"expand_dims_{k}", ("EXPAND_DIMS", "MAX_POOL_2D"), b.build([x], [y]), shape)


def slice_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    rank = [4, 3, 2, 5, 4, 1][k % 6]
    shape = _shape(rng, rank, 1, 7)
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    begin, size = [], []
    for d in shape:
        bg = int(rng.integers(0, d))
        sz = int(rng.integers(1, d - bg + 1)) if rng.random() < 0.7 else -1
        begin.append(bg)
        size.append(sz)
    oshape = tuple(d - bg if sz == -1 else sz for d, bg, sz in zip(shape, begin, size))
    y = b.tensor(oshape, "int8", s, z)
    b.op("SLICE", [x, _i32(b, begin), _i32(b, size)], [y], options("SliceOptions"))
    return OpCase(f"slice_{k}", ("SLICE",), b.build([x], [y]), shape)


def _ss_count(start: int, stop: int, stride: int) -> int:
    n, i = 0, start
    while (i < stop) if stride > 0 else (i > stop):
        n += 1
        i += stride
    return n


def strided_slice_case(rng: np.random.Generator, k: int) -> OpCase:
    from tinysplit.exporter.codegen.lower_shape import _start_for_axis, _stop_for_axis

    b = ModelBuilder()
    rank = [4, 3, 2, 4, 1, 4, 3, 4][k % 8]
    while True:
        shape = _shape(rng, rank, 1, 8)
        begin, end, strides, dims = [], [], [], []
        bm, em, sm = (int(rng.integers(0, 1 << rank)) for _ in range(3)) if k % 2 else (0, 0, 0)
        sm &= int(rng.integers(0, 1 << rank))
        ok = True
        for a, d in enumerate(shape):
            st = int(rng.choice([1, 1, 2, 3, -1, -2])) if not (sm >> a & 1) else 1
            bg, en = int(rng.integers(-d, d + 1)), int(rng.integers(-d - 1, d + 2))
            start = _start_for_axis(bg, st, bool(bm >> a & 1), d)
            stop = _stop_for_axis(en, st, bool(em >> a & 1), bool(sm >> a & 1), start, d)
            n = _ss_count(start, stop, st)
            ok &= n > 0 and (not sm >> a & 1 or 0 <= start < d)
            begin.append(bg)
            end.append(en)
            strides.append(st)
            if not sm >> a & 1:
                dims.append(n)
        if ok:
            break
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    y = b.tensor(tuple(dims), "int8", s, z)
    b.op("STRIDED_SLICE", [x, _i32(b, begin), _i32(b, end), _i32(b, strides)], [y],
         options("StridedSliceOptions", beginMask=bm, endMask=em, shrinkAxisMask=sm))
    return OpCase(f"strided_slice_{k}", ("STRIDED_SLICE",), b.build([x], [y]), shape)


def split_case(rng: np.random.Generator, k: int, v: bool) -> OpCase:
    b = ModelBuilder()
    rank = [4, 3, 2, 4, 5, 4][k % 6]
    shape = list(_shape(rng, rank, 1, 5))
    axis = int(rng.integers(-rank, rank))
    n = int(rng.integers(2, 4))
    if v:
        shape[axis % rank] = int(rng.integers(n, 9))
        cuts = sorted(rng.choice(np.arange(1, shape[axis % rank]), size=n - 1, replace=False).tolist())
        sizes = [e - s0 for s0, e in zip([0] + cuts, cuts + [shape[axis % rank]])]
    else:
        shape[axis % rank] = n * int(rng.integers(1, 4))
        sizes = [shape[axis % rank] // n] * n
    shape_t = tuple(shape)
    s, z = _q(rng)
    x = b.tensor(shape_t, "int8", s, z)
    outs = []
    for sz in sizes:
        os_ = list(shape)
        os_[axis % rank] = sz
        outs.append(b.tensor(tuple(os_), "int8", s, z))
    ax = _i32(b, [axis])
    name = "SPLIT_V" if v else "SPLIT"
    if v:
        given = list(sizes)
        if k % 2:
            given[int(rng.integers(0, n))] = -1
        b.op("SPLIT_V", [x, _i32(b, given), ax], outs, options("SplitVOptions", numSplits=n))
    else:
        b.op("SPLIT", [ax, x], outs, options("SplitOptions", numSplits=n))
    if k % 2 == 0:  # one output is the model's, the rest unused
        return OpCase(f"{name.lower()}_{k}", (name,), b.build([x], [outs[int(rng.integers(0, n))]]), shape_t)
    order = outs[::-1]  # concatenated back, in reverse order
    y = b.tensor(shape_t, "int8", s, z)
    b.op("CONCATENATION", order, [y], options("ConcatenationOptions", axis=axis, fusedActivationFunction=0))
    return OpCase(f"{name.lower()}_{k}", (name, "CONCATENATION"), b.build([x], [y]), shape_t)


def pack_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    rank = [3, 2, 4, 1, 3][k % 5]
    shape = _shape(rng, rank, 1, 5)
    if rank == 4:
        shape = (1, *shape[1:])
    axis = int(rng.integers(-rank - 1, rank + 1))
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    r = _relu(b, x, shape, s, z) if rank == 4 else x
    c = b.tensor(shape, "int8", s, z, data=rng.integers(-128, 128, size=shape).astype(np.int8))
    ins = [r, c, x][: 2 + k % 2]
    oshape = list(shape)
    oshape.insert(axis % (rank + 1), len(ins))
    y = b.tensor(tuple(oshape), "int8", s, z)
    b.op("PACK", ins, [y], options("PackOptions", valuesCount=len(ins), axis=axis))
    ops = ("PACK", "MAX_POOL_2D") if rank == 4 else ("PACK",)
    return OpCase(f"pack_{k}", ops, b.build([x], [y]), shape)


def unpack_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    rank = [4, 3, 2, 5, 4][k % 5]
    shape = _shape(rng, rank, 1, 5)
    axis = int(rng.integers(-rank, rank))
    a = axis % rank
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    oshape = tuple(d for i, d in enumerate(shape) if i != a)
    outs = [b.tensor(oshape, "int8", s, z) for _ in range(shape[a])]
    b.op("UNPACK", [x], outs, options("UnpackOptions", num=shape[a], axis=axis))
    if k % 2 == 0 or len(outs) == 1:
        return OpCase(f"unpack_{k}", ("UNPACK",), b.build([x], [outs[int(rng.integers(0, len(outs)))]]), shape)
    y = b.tensor(tuple([len(outs)] + list(oshape)), "int8", s, z)
    b.op("PACK", outs[::-1], [y], options("PackOptions", valuesCount=len(outs), axis=0))
    return OpCase(f"unpack_{k}", ("UNPACK", "PACK"), b.build([x], [y]), shape)


def transpose_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    rank = [4, 3, 2, 5, 4, 5][k % 6]
    shape = _shape(rng, rank, 1, 6)
    perm = [int(p) for p in rng.permutation(rank)]
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    y = b.tensor(tuple(shape[p] for p in perm), "int8", s, z)
    b.op("TRANSPOSE", [x, _i32(b, perm)], [y], options("TransposeOptions"))
    return OpCase(f"transpose_{k}", ("TRANSPOSE",), b.build([x], [y]), shape)


def resize_case(rng: np.random.Generator, k: int, bilinear: bool) -> OpCase:
    b = ModelBuilder()
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 5)))
    oh, ow = int(rng.integers(1, 13)), int(rng.integers(1, 13))
    if k < 2:
        oh, ow = 2 * shape[1], 2 * shape[2]
    ac, hp = [(False, False), (True, False), (False, True), (False, True), (True, False), (False, False)][k % 6]
    if not bilinear and k % 7 == 6:
        ac, hp = True, True
    s, z = _q(rng)
    x = b.tensor(shape, "int8", s, z)
    y = b.tensor((shape[0], oh, ow, shape[3]), "int8", s, z)
    name = "RESIZE_BILINEAR" if bilinear else "RESIZE_NEAREST_NEIGHBOR"
    kind = "ResizeBilinearOptions" if bilinear else "ResizeNearestNeighborOptions"
    b.op(name, [x, _i32(b, [oh, ow])], [y], options(kind, alignCorners=ac, halfPixelCenters=hp))
    return OpCase(f"{name.lower()}_{k}", (name,), b.build([x], [y]), shape)


def transpose_conv_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    h, w, ic = int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 6))
    oc = int(rng.integers(1, 7))
    kh, kw = int(rng.choice([1, 2, 3, 4])), int(rng.choice([1, 2, 3]))
    sh, sw = int(rng.choice([1, 2, 3])), int(rng.choice([1, 2]))
    padding = PAD["SAME"] if k % 2 == 0 else PAD["VALID"]
    if padding == PAD["SAME"]:
        oh, ow = h * sh, w * sw
    else:
        oh, ow = (h - 1) * sh + kh, (w - 1) * sw + kw
    s_in, z_in = _q(rng)
    per_channel = k % 3 != 2
    f_scales = 10 ** rng.uniform(-3, -1.5, size=oc if per_channel else 1)
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in, name="input")
    wq = rng.integers(-127, 128, size=(oc, kh, kw, ic)).astype(np.int8)
    f = b.tensor((oc, kh, kw, ic), "int8", list(f_scales), 0, data=wq, qdim=0, name="filter")
    osh = _i32(b, [1, oh, ow, oc])
    inputs = [osh, f, x]
    if k % 4 != 3:
        bscale = [s_in * fs for fs in (f_scales if per_channel else np.repeat(f_scales, oc))]
        inputs.append(b.tensor((oc,), "int32", bscale, 0, data=rng.integers(-20000, 20000, size=oc).astype(np.int32)))
    taps = max(1, (kh * kw) // (sh * sw)) * ic
    std = s_in * math.sqrt(74 ** 2 + z_in ** 2) * float(np.mean(f_scales)) * 73 * math.sqrt(taps)
    y = b.tensor((1, oh, ow, oc), "int8", max(6 * std / 255 * rng.uniform(0.4, 2.0), 1e-6), int(rng.integers(-60, 61)))
    b.op("TRANSPOSE_CONV", inputs, [y], options("TransposeConvOptions", padding=padding, strideH=sh, strideW=sw))
    return OpCase(f"transpose_conv_{k}", ("TRANSPOSE_CONV",), b.build([x], [y]), (1, h, w, ic))


def cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    out: list[OpCase] = []
    out += [squeeze_case(rng, k) for k in range(4)]
    out += [expand_dims_case(rng, k) for k in range(4)]
    out += [slice_case(rng, k) for k in range(6)]
    out += [strided_slice_case(rng, k) for k in range(8)]
    out += [split_case(rng, k, False) for k in range(6)]
    out += [split_case(rng, k, True) for k in range(6)]
    out += [pack_case(rng, k) for k in range(5)]
    out += [unpack_case(rng, k) for k in range(5)]
    out += [transpose_case(rng, k) for k in range(6)]
    out += [resize_case(rng, k, False) for k in range(7)]
    out += [resize_case(rng, k, True) for k in range(6)]
    out += [transpose_conv_case(rng, k) for k in range(8)]
    return out
