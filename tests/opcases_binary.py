"""Random per-op cases for the binary ops and reductions (SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL).

Own seed, so adding cases here never changes another group's cases.
"""

from __future__ import annotations

import numpy as np

from opcases import OpCase
from tflite_builder import ACT, ModelBuilder, options

_OPTIONS = {"SUB": "SubOptions", "SQUARED_DIFFERENCE": "SquaredDifferenceOptions",
            "MINIMUM": "MaximumMinimumOptions", "MAXIMUM": "MaximumMinimumOptions"}


def _zp(rng: np.random.Generator, k: int) -> int:
    """Zero points: the extremes every few cases, random otherwise."""
    return [-128, 127][k % 2] if k % 3 == 2 else int(rng.integers(-100, 101))


def _shape(rng: np.random.Generator, k: int) -> tuple[int, ...]:
    rank = [4, 4, 3, 2, 4, 1, 4][k % 7]
    return tuple(int(rng.integers(1, 7)) for _ in range(rank))


def binary_case(rng: np.random.Generator, k: int, opname: str) -> OpCase:
    """x (op) y, y: x requantized (same shape), a broadcast constant, or (4-D) the per-channel mean of x;
    either operand first; output quantization and fused activation (SUB) drawn at random."""
    b = ModelBuilder()
    shape = _shape(rng, k)
    s_in, z_in = float(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, k)
    x = b.tensor(shape, "int8", s_in, z_in)
    mode = k % 3 if len(shape) == 4 else k % 2
    ops: tuple[str, ...] = (opname,)
    if mode == 0 and opname in ("MINIMUM", "MAXIMUM"):  # the same activation requantized
        y = b.tensor(shape, "int8", s_in * rng.uniform(0.5, 2.0), _zp(rng, k + 1))
        b.op("QUANTIZE", [x], [y])
        ops += ("QUANTIZE",)
    elif mode == 0:  # an activation of the same shape: x times a random constant
        c = b.tensor(shape, "int8", 1 / 128, 0, data=rng.integers(-128, 128, size=shape).astype(np.int8))
        y = b.tensor(shape, "int8", s_in * rng.uniform(0.5, 1.5), _zp(rng, k + 1))
        b.op("MUL", [x, c], [y], options("MulOptions", fusedActivationFunction=0))
        ops += ("MUL",)
    elif mode == 1:  # a broadcast constant (every dimension kept or 1, sometimes of lower rank)
        other = tuple(int(d) if rng.random() < 0.5 else 1 for d in shape)
        if rng.random() < 0.3:
            other = other[1:] or other
        y = b.tensor(other, "int8", s_in * rng.uniform(0.5, 2.0), int(rng.integers(-100, 101)),
                     data=rng.integers(-128, 128, size=other).astype(np.int8))
    else:  # a broadcast activation: the per-channel mean
        y = b.tensor((1, 1, 1, shape[3]), "int8", s_in * rng.uniform(0.5, 2.0), int(rng.integers(-50, 51)))
        axis = b.tensor((2,), "int32", data=np.array([1, 2], dtype=np.int32))
        b.op("MEAN", [x, axis], [y], options("ReducerOptions", keepDims=True))
        ops += ("MEAN",)
    ins = [x, y] if rng.random() < 0.5 else [y, x]
    if opname in ("MINIMUM", "MAXIMUM"):
        # as the converter gives them: one quantization for inputs and output (the kernel compares raw
        # int8 values, so a case with a requantized operand checks that it does exactly that)
        s_out, z_out = s_in, z_in
        opt = options(_OPTIONS[opname])
    elif opname == "SUB":
        # extreme output zero points where the input's is extreme (x >= 0 then): -128 for x - y, 127 for y - x
        s_out = s_in * rng.uniform(0.8, 3.0)
        z_out = (z_in if ins[0] == x else -1 - z_in) if k % 3 == 2 else int(rng.integers(-100, 101))
        act = ACT[str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1", "NONE"]))] if k % 3 != 2 else 0
        opt = options("SubOptions", fusedActivationFunction=act)
    else:
        # a square is never negative: zero points low in the range (or the minimum)
        s_out = s_in * s_in * float(10 ** rng.uniform(2.0, 3.0))
        z_out = -128 if k % 3 == 2 else int(rng.integers(-128, 1))
        opt = options("SquaredDifferenceOptions")
    oshape = tuple(np.broadcast_shapes(tuple(b.tensors[ins[0]].shape), tuple(b.tensors[ins[1]].shape)))
    out = b.tensor(oshape, "int8", s_out, z_out)
    b.op(opname, ins, [out], opt)
    return OpCase(f"{opname.lower()}_{k}", ops, b.build([x], [out]), shape)


def reduce_case(rng: np.random.Generator, k: int, opname: str) -> OpCase:
    """SUM / REDUCE_MAX over 1-3 axes (negative ones too) of a 2- to 4-D tensor, keep_dims either way."""
    b = ModelBuilder()
    shape = _shape(rng, k + 1) if k % 7 != 4 else (1, 6, 5, 3)
    rank = len(shape)
    n_axes = int(rng.integers(1, min(rank, 3) + 1))
    axes = [int(a) - (rank if rng.random() < 0.3 else 0) for a in rng.choice(rank, size=n_axes, replace=False)]
    keep = k % 2 == 0
    s, z = float(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, k)
    x = b.tensor(shape, "int8", s, z)
    ax = b.tensor((len(axes),), "int32", data=np.array(axes, dtype=np.int32))
    norm = {a % rank for a in axes}
    oshape = tuple((1 if i in norm else d) for i, d in enumerate(shape) if keep or i not in norm)
    if opname == "SUM":
        # sum(q - z) ~ count * (-0.5 - z) +- 74 * sqrt(count): a scale that holds it, the zero point centring it
        count = int(np.prod([shape[i] for i in norm]))
        s_out = s * max(count * abs(z + 0.5) / 100, 74 * np.sqrt(count) / 60) * rng.uniform(0.7, 1.5)
        z_out = int(np.clip(-round(count * (-0.5 - z) * s / s_out), -128, 127))
        y = b.tensor(oshape, "int8", s_out, z_out)
    else:
        y = b.tensor(oshape, "int8", s, z)
    b.op(opname, [x, ax], [y], options("ReducerOptions", keepDims=keep))
    return OpCase(f"{opname.lower()}_{k}", (opname,), b.build([x], [y]), shape)


def argmax_case(rng: np.random.Generator, k: int) -> OpCase:
    """ARG_MAX (int32 indices) over one axis of a 2- to 4-D tensor, then QUANTIZE int32 -> int8: the
    generated C API's output is int8, so the indices are checked through a requantization (scale 1 and
    zero point 0 on the indices keeps them exact in every other case)."""
    b = ModelBuilder()
    shape = _shape(rng, k + 2) if k % 7 != 5 else (1, 9, 7, 4)
    if len(shape) == 1:
        shape = (1, *shape)
    rank = len(shape)
    axis = int(rng.integers(0, rank)) - (rank if k % 3 == 1 else 0)
    shape = tuple(max(d, 2 + k % 5) if i == axis % rank else d for i, d in enumerate(shape))  # a real choice
    x = b.tensor(shape, "int8", float(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, k))
    ax = b.tensor((1,), "int32", data=np.array([axis], dtype=np.int32))
    oshape = tuple(d for i, d in enumerate(shape) if i != axis % rank)
    exact = k % 2 == 0
    s_i, z_i = (1.0, 0) if exact else (float(rng.uniform(0.2, 3.0)), int(rng.integers(-5, 6)))
    idx = b.tensor(oshape, "int32", s_i, z_i)
    b.op("ARG_MAX", [x, ax], [idx], options("ArgMaxOptions", outputType=2))
    y = b.tensor(oshape, "int8", 1.0 if exact else s_i * rng.uniform(0.3, 2.0), 0 if exact else _zp(rng, k + 1))
    b.op("QUANTIZE", [idx], [y])
    return OpCase(f"arg_max_{k}", ("ARG_MAX", "QUANTIZE"), b.build([x], [y]), shape)


def _operand(b: ModelBuilder, rng: np.random.Generator, shape: tuple[int, ...], zp: int) -> tuple[int, float, int]:
    s = float(10 ** rng.uniform(-2.5, -1))
    return b.tensor(shape, "int8", s, zp, data=rng.integers(-128, 128, size=shape).astype(np.int8)), s, zp


def batch_matmul_case(rng: np.random.Generator, k: int) -> OpCase:
    """lhs @ rhs: an activation times a constant (either side), or the activation times itself
    requantized (adj_x / adj_y), batch dimensions broadcast, ranks 2 to 4."""
    b = ModelBuilder()
    r, d, c = int(rng.integers(1, 6)), int(rng.integers(1, 9)), int(rng.integers(1, 6))
    nb = int(rng.integers(2, 4))
    sx, zx = float(10 ** rng.uniform(-2.5, -0.5)), _zp(rng, k)
    adj_x = adj_y = False
    ops: tuple[str, ...] = ("BATCH_MATMUL",)
    if k in (2, 3):  # both operands activations: x @ q(x)^T (adj_y) or x^T @ q(x) (adj_x)
        xs = (nb, r, d) if k == 2 else (nb, d, r)
        x = b.tensor(xs, "int8", sx, zx)
        y = b.tensor(xs, "int8", sx * rng.uniform(0.5, 2.0), _zp(rng, k + 1))
        b.op("QUANTIZE", [x], [y])
        ops += ("QUANTIZE",)
        lhs, rhs = x, y
        adj_y, adj_x = k == 2, k == 3
        sl, zl, sr, zr = sx, zx, b.tensors[y].quantization.scale[0], int(b.tensors[y].quantization.zeroPoint[0])
        c = r  # x @ q(x)^T and x^T @ q(x) are both r x r
        oshape: tuple[int, ...] = (nb, r, c)
    elif k == 4:  # constant lhs [r, d] @ activation [nb, d, c]
        xs = (nb, d, c)
        x = b.tensor(xs, "int8", sx, zx)
        lhs, sl, zl = _operand(b, rng, (r, d), int(rng.integers(-100, 101)))
        rhs, sr, zr = x, sx, zx
        oshape = (nb, r, c)
    else:  # activation @ constant, batch broadcast, adj flags on the constant / activation
        adj_x, adj_y = k == 6, k in (1, 6)
        xs = {0: (nb, r, d), 1: (1, nb, r, d), 5: (r, d), 6: (nb, d, r)}[k]
        x = b.tensor(xs, "int8", sx, zx)
        cs = (c, d) if adj_y else (d, c)
        if k == 1:
            cs = (nb, *cs)
        rhs, sr, zr = _operand(b, rng, cs, _zp(rng, k + 1) if k == 5 else int(rng.integers(-100, 101)))
        lhs, sl, zl = x, sx, zx
        oshape = {0: (nb, r, c), 1: (1, nb, r, c), 5: (r, c), 6: (nb, r, c)}[k]
    # sum over d of (ql - zl)(qr - zr): mean d (0.5 + zl)(0.5 + zr), spread sqrt(d) * 74^2-ish
    el, er = 74 ** 2 + (zl + 0.5) ** 2, 74 ** 2 + (zr + 0.5) ** 2
    mean = d * (0.5 + zl) * (0.5 + zr)
    s_out = sl * sr * (np.sqrt(d * el * er) + abs(mean) / 2) / 64 * rng.uniform(0.5, 2.0)
    z_out = int(np.clip(-round(mean * sl * sr / s_out), -128, 127))
    out = b.tensor(oshape, "int8", float(s_out), z_out)
    b.op("BATCH_MATMUL", [lhs, rhs], [out], options("BatchMatMulOptions", adjX=adj_x, adjY=adj_y))
    return OpCase(f"batch_matmul_{k}", ops, b.build([x], [out]), xs)


def cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    out: list[OpCase] = []
    for opname in ("SUB", "MINIMUM", "MAXIMUM", "SQUARED_DIFFERENCE"):
        out += [binary_case(rng, k, opname) for k in range(7)]
    for opname in ("SUM", "REDUCE_MAX"):
        out += [reduce_case(rng, k, opname) for k in range(7)]
    out += [argmax_case(rng, k) for k in range(7)]
    out += [batch_matmul_case(rng, k) for k in range(7)]
    return out
