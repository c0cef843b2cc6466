"""Random single-op (and tiny multi-op) int8 models covering every op the code generator supports.

Each case varies shapes, strides, paddings, dilations, depth multipliers, fused activations and
quantization parameters (scales, zero points, per-channel or per-tensor filters), from a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tflite_builder import ACT, PAD, ModelBuilder, options


@dataclass(frozen=True)
class OpCase:
    name: str
    ops: tuple[str, ...]  # the ops the model exercises
    tflite: bytes
    input_shape: tuple[int, ...]


def _in_q(rng: np.random.Generator) -> tuple[float, int]:
    return float(10 ** rng.uniform(-2.5, -0.5)), int(rng.integers(-100, 101))


def _out_scale(std: float, rng: np.random.Generator) -> float:
    return float(max(6 * std / 255 * rng.uniform(0.4, 2.0), 1e-6))


def _act(rng: np.random.Generator) -> int:
    return ACT[str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1", "NONE", "RELU"]))]


def conv_case(rng: np.random.Generator, k: int, depthwise: bool) -> OpCase:
    while True:
        h, w = int(rng.integers(3, 13)), int(rng.integers(3, 13))
        ic = int(rng.integers(1, 9))
        kh, kw = int(rng.choice([1, 2, 3, 5])), int(rng.choice([1, 3, 5]))
        sh, sw = int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 2]))
        dh, dw = (int(rng.choice([1, 2])), int(rng.choice([1, 2]))) if rng.random() < 0.3 else (1, 1)
        padding = int(rng.choice([PAD["SAME"], PAD["VALID"]]))
        dm = int(rng.choice([1, 2, 3])) if depthwise else 1
        oc = ic * dm if depthwise else int(rng.integers(1, 13))
        ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        if padding == PAD["SAME"]:
            oh, ow = math.ceil(h / sh), math.ceil(w / sw)
        else:
            oh, ow = (h - ekh + sh) // sh, (w - ekw + sw) // sw
        if oh >= 1 and ow >= 1:
            break
    s_in, z_in = _in_q(rng)
    per_channel = rng.random() < 0.75
    f_scales = 10 ** rng.uniform(-3, -1.5, size=oc if per_channel else 1)
    b = ModelBuilder()
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in, name="input")
    fshape = (1, kh, kw, oc) if depthwise else (oc, kh, kw, ic)
    wq = rng.integers(-127, 128, size=fshape).astype(np.int8)
    f = b.tensor(fshape, "int8", list(f_scales), 0, data=wq, qdim=3 if depthwise else 0, name="filter")
    inputs = [x, f]
    if depthwise or rng.random() < 0.8:  # TFLite Micro crashes on a depthwise conv without bias
        bscale = [s_in * fs for fs in (f_scales if per_channel else np.repeat(f_scales, oc))]
        bias = rng.integers(-20000, 20000, size=oc).astype(np.int32)
        inputs.append(b.tensor((oc,), "int32", bscale, 0, data=bias, name="bias"))
    else:
        inputs.append(-1)
    taps = kh * kw * (1 if depthwise else ic)
    std = s_in * math.sqrt(74 ** 2 + z_in ** 2) * float(np.mean(f_scales)) * 73 * math.sqrt(taps)
    s_out, z_out = _out_scale(std, rng), int(rng.integers(-60, 61))
    y = b.tensor((1, oh, ow, oc), "int8", s_out, z_out, name="output")
    act = _act(rng)
    if depthwise:
        opt = options("DepthwiseConv2DOptions", padding=padding, strideH=sh, strideW=sw, depthMultiplier=dm,
                      fusedActivationFunction=act, dilationHFactor=dh, dilationWFactor=dw)
        b.op("DEPTHWISE_CONV_2D", inputs, [y], opt)
    else:
        opt = options("Conv2DOptions", padding=padding, strideH=sh, strideW=sw, fusedActivationFunction=act,
                      dilationHFactor=dh, dilationWFactor=dw)
        b.op("CONV_2D", inputs, [y], opt)
    op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    return OpCase(f"{op.lower()}_{k}", (op,), b.build([x], [y]), (1, h, w, ic))


def fc_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    s_in, z_in = _in_q(rng)
    if k % 3 == 0:
        shape = (1, int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 9)))
        depth = int(np.prod(shape))
        batches = 1
    else:
        batches = 1 if k % 3 == 1 else 3
        depth = int(rng.integers(1, 64))
        shape = (batches, depth)
    units = int(rng.integers(1, 20))
    per_channel = k % 4 == 3
    f_scales = 10 ** rng.uniform(-3, -1.5, size=units if per_channel else 1)
    x = b.tensor(shape, "int8", s_in, z_in)
    wq = rng.integers(-127, 128, size=(units, depth)).astype(np.int8)
    f = b.tensor((units, depth), "int8", list(f_scales), 0, data=wq)
    bscale = [s_in * fs for fs in f_scales]
    bias = b.tensor((units,), "int32", bscale, 0, data=rng.integers(-20000, 20000, size=units).astype(np.int32))
    std = s_in * math.sqrt(74 ** 2 + z_in ** 2) * float(np.mean(f_scales)) * 73 * math.sqrt(depth)
    y = b.tensor((batches, units), "int8", _out_scale(std, rng), int(rng.integers(-60, 61)))
    b.op("FULLY_CONNECTED", [x, f, bias], [y], options("FullyConnectedOptions", fusedActivationFunction=_act(rng)))
    return OpCase(f"fully_connected_{k}", ("FULLY_CONNECTED",), b.build([x], [y]), shape)


def _requant(b: ModelBuilder, rng: np.random.Generator, x: int, shape: tuple[int, ...], s: float) -> int:
    """x -> QUANTIZE (int8 -> int8, another scale and zero point)."""
    y = b.tensor(shape, "int8", s * rng.uniform(0.5, 2.0), int(rng.integers(-50, 51)))
    b.op("QUANTIZE", [x], [y])
    return y


def binary_case(rng: np.random.Generator, k: int, opname: str) -> OpCase:
    b = ModelBuilder()
    h, w, c = int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 9))
    shape = (1, h, w, c)
    s_in, z_in = _in_q(rng)
    x = b.tensor(shape, "int8", s_in, z_in)
    mode = k % 3
    if mode == 0:  # the second operand: the same activation requantized
        y = _requant(b, rng, x, shape, s_in)
        other = shape
    elif mode == 1:  # a broadcast constant
        other = tuple(int(d) if rng.random() < 0.5 else 1 for d in shape)
        y = b.tensor(other, "int8", s_in * rng.uniform(0.3, 3.0), int(rng.integers(-50, 51)),
                     data=rng.integers(-128, 128, size=other).astype(np.int8))
    else:  # a broadcast activation: the per-channel mean
        other = (1, 1, 1, c)
        y = b.tensor(other, "int8", s_in * rng.uniform(0.5, 2.0), int(rng.integers(-50, 51)))
        axis = b.tensor((2,), "int32", data=np.array([1, 2], dtype=np.int32))
        b.op("MEAN", [x, axis], [y], options("ReducerOptions", keepDims=True))
    a_first = rng.random() < 0.5
    ins = [x, y] if a_first else [y, x]
    if opname == "ADD":
        s_out = s_in * rng.uniform(0.8, 3.0)
        opt = options("AddOptions", fusedActivationFunction=_act(rng))
    else:
        s_out = s_in * s_in * 100 * rng.uniform(0.3, 3.0)
        opt = options("MulOptions", fusedActivationFunction=_act(rng))
    out = b.tensor(shape, "int8", s_out, int(rng.integers(-50, 51)))
    b.op(opname, ins, [out], opt)
    ops = (opname, "QUANTIZE") if mode == 0 else ((opname, "MEAN") if mode == 2 else (opname,))
    return OpCase(f"{opname.lower()}_{k}", ops, b.build([x], [out]), shape)


def pad_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    pads = np.array([[0, 0]] + [[int(rng.integers(0, 3)), int(rng.integers(0, 3))] for _ in range(3)], dtype=np.int32)
    s, z = _in_q(rng)
    x = b.tensor(shape, "int8", s, z)
    p = b.tensor((4, 2), "int32", data=pads)
    oshape = tuple(int(d + pads[i].sum()) for i, d in enumerate(shape))
    y = b.tensor(oshape, "int8", s, z)
    b.op("PAD", [x, p], [y], options("PadOptions"))
    return OpCase(f"pad_{k}", ("PAD",), b.build([x], [y]), shape)


def pool_case(rng: np.random.Generator, k: int, opname: str) -> OpCase:
    while True:
        h, w, c = int(rng.integers(2, 11)), int(rng.integers(2, 11)), int(rng.integers(1, 9))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        padding = int(rng.choice([PAD["SAME"], PAD["VALID"]]))
        if padding == PAD["SAME"]:
            oh, ow = math.ceil(h / sh), math.ceil(w / sw)
        else:
            oh, ow = (h - kh + sh) // sh, (w - kw + sw) // sw
        if oh >= 1 and ow >= 1:
            break
    b = ModelBuilder()
    s, z = _in_q(rng)
    x = b.tensor((1, h, w, c), "int8", s, z)
    y = b.tensor((1, oh, ow, c), "int8", s, z)  # TFLite pools keep the quantization
    b.op(opname, [x], [y], options("Pool2DOptions", padding=padding, strideH=sh, strideW=sw, filterHeight=kh,
                                   filterWidth=kw, fusedActivationFunction=_act(rng)))
    return OpCase(f"{opname.lower()}_{k}", (opname,), b.build([x], [y]), (1, h, w, c))


def mean_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    axes = [[1, 2], [1, 2], [3], [1], [2, 1], [-1], [1, 2, 3]][k % 7]
    keep = k % 2 == 0
    s, z = _in_q(rng)
    x = b.tensor(shape, "int8", s, z)
    ax = b.tensor((len(axes),), "int32", data=np.array(axes, dtype=np.int32))
    norm = {a % 4 for a in axes}
    oshape = tuple((1 if i in norm else d) for i, d in enumerate(shape) if keep or i not in norm)
    same = k % 3 == 0
    y = b.tensor(oshape, "int8", s if same else s * rng.uniform(0.2, 1.5), z if same else int(rng.integers(-50, 51)))
    b.op("MEAN", [x, ax], [y], options("ReducerOptions", keepDims=keep))
    return OpCase(f"mean_{k}", ("MEAN",), b.build([x], [y]), shape)


def reshape_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    s, z = _in_q(rng)
    x = b.tensor(shape, "int8", s, z)
    n = int(np.prod(shape))
    if k % 2 == 0:
        y = b.tensor((1, n), "int8", s, z)
        ns = np.array([1, n], dtype=np.int32)
        sh = b.tensor((2,), "int32", data=ns)
        b.op("RESHAPE", [x, sh], [y], options("ReshapeOptions", newShape=ns))
        return OpCase(f"reshape_{k}", ("RESHAPE",), b.build([x], [y]), shape)
    # reshape between two real ops: requant -> reshape -> requant
    r = _requant(b, rng, x, shape, s)
    y = b.tensor((1, n), "int8", b.tensors[r].quantization.scale[0], int(b.tensors[r].quantization.zeroPoint[0]))
    ns = np.array([1, n], dtype=np.int32)
    b.op("RESHAPE", [r, b.tensor((2,), "int32", data=ns)], [y], options("ReshapeOptions", newShape=ns))
    out = _requant(b, rng, y, (1, n), s)
    return OpCase(f"reshape_{k}", ("RESHAPE", "QUANTIZE"), b.build([x], [out]), shape)


def concat_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    axis = [3, 1, 2, -1][k % 4]
    s, z = _in_q(rng)
    x = b.tensor(shape, "int8", s, z)
    # TFLite Micro requires every concatenated input to share the output's scale and zero point
    y = b.tensor(shape, "int8", s, z)
    b.op("MAX_POOL_2D", [x], [y], options("Pool2DOptions", padding=PAD["VALID"], strideH=1, strideW=1,
                                          filterHeight=1, filterWidth=1, fusedActivationFunction=ACT["RELU"]))
    cshape = list(shape)
    cshape[axis % 4] = int(rng.integers(1, 4))
    c = b.tensor(tuple(cshape), "int8", s, z, data=rng.integers(-128, 128, size=cshape).astype(np.int8))
    ins = [x, y, c] if k % 2 == 0 else [c, y, x]
    oshape = list(shape)
    oshape[axis % 4] = 2 * shape[axis % 4] + cshape[axis % 4]
    out = b.tensor(tuple(oshape), "int8", s, z)
    b.op("CONCATENATION", ins, [out], options("ConcatenationOptions", axis=axis, fusedActivationFunction=0))
    return OpCase(f"concatenation_{k}", ("CONCATENATION", "MAX_POOL_2D"), b.build([x], [out]), shape)


def softmax_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(2, 40))) if k % 2 == 0 else (1, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                                                              int(rng.integers(2, 12)))
    s = float(10 ** rng.uniform(-2.5, 0))
    x = b.tensor(shape, "int8", s, int(rng.integers(-100, 101)))
    y = b.tensor(shape, "int8", 1 / 256, -128)
    beta = [1.0, 1.0, 0.5, 2.0][k % 4]
    b.op("SOFTMAX", [x], [y], options("SoftmaxOptions", beta=beta))
    return OpCase(f"softmax_{k}", ("SOFTMAX",), b.build([x], [y]), shape)


def logistic_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 9)))
    s = float(10 ** rng.uniform(-2.5, -0.3))
    x = b.tensor(shape, "int8", s, int(rng.integers(-100, 101)))
    y = b.tensor(shape, "int8", 1 / 256, -128)
    b.op("LOGISTIC", [x], [y])
    return OpCase(f"logistic_{k}", ("LOGISTIC",), b.build([x], [y]), shape)


def quantize_case(rng: np.random.Generator, k: int) -> OpCase:
    b = ModelBuilder()
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 9)))
    s, z = _in_q(rng)
    x = b.tensor(shape, "int8", s, z)
    if k % 2 == 0:
        y = b.tensor(shape, "int8", s * rng.uniform(0.2, 5.0), int(rng.integers(-100, 101)))
        b.op("QUANTIZE", [x], [y])
        return OpCase(f"quantize_{k}", ("QUANTIZE",), b.build([x], [y]), shape)
    f = b.tensor(shape, "float32")
    b.op("DEQUANTIZE", [x], [f])
    y = b.tensor(shape, "int8", s * rng.uniform(0.2, 5.0), int(rng.integers(-100, 101)))
    b.op("QUANTIZE", [f], [y])
    return OpCase(f"dequantize_{k}", ("DEQUANTIZE", "QUANTIZE"), b.build([x], [y]), shape)


def chain_case(rng: np.random.Generator, k: int) -> OpCase:
    """QUANTIZE -> (CONV_2D | DEPTHWISE_CONV_2D | PAD): the second op's input dies at that op, so the
    planner lets its output share the input's memory (rows streamed, or PAD grown in place)."""
    inner = conv_case(rng, k, depthwise=k % 3 == 1) if k % 3 != 2 else pad_case(rng, k)
    from tinysplit.exporter.tflite_model import parse_tflite

    m = parse_tflite(inner.tflite)
    b = ModelBuilder()
    src = m.tensors[m.inputs[0]]
    s0, z0 = src.scales[0] * rng.uniform(0.5, 2.0), int(rng.integers(-80, 81))
    x = b.tensor(src.shape, "int8", s0, z0, name="input")
    index = {}
    for t in m.tensors:
        data = None if t.data is None else np.asarray(t.data)
        qd = t.quantized_dimension
        index[t.index] = b.tensor(t.shape, t.dtype, list(t.scales) if t.scales else None,
                                  list(t.zero_points) if t.zero_points else 0, data=data, qdim=qd, name=t.name)
    b.op("QUANTIZE", [x], [index[m.inputs[0]]])
    for op in m.operators:
        b.op(op.opcode, [index[i] if i >= 0 else -1 for i in op.inputs], [index[o] for o in op.outputs], op.options)
    name = inner.name.split("_")[0] if not inner.name.startswith("depthwise") else "depthwise"
    return OpCase(f"chain_{name}_{k}", ("QUANTIZE", *inner.ops), b.build([x], [index[m.outputs[0]]]), src.shape)


def all_cases(seed: int = 20261123) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    cases: list[OpCase] = []
    cases += [conv_case(rng, k, False) for k in range(14)]
    cases += [conv_case(rng, k, True) for k in range(12)]
    cases += [fc_case(rng, k) for k in range(8)]
    cases += [binary_case(rng, k, "ADD") for k in range(9)]
    cases += [binary_case(rng, k, "MUL") for k in range(6)]
    cases += [pad_case(rng, k) for k in range(4)]
    cases += [pool_case(rng, k, "AVERAGE_POOL_2D") for k in range(6)]
    cases += [pool_case(rng, k, "MAX_POOL_2D") for k in range(5)]
    cases += [mean_case(rng, k) for k in range(8)]
    cases += [reshape_case(rng, k) for k in range(4)]
    cases += [concat_case(rng, k) for k in range(4)]
    cases += [softmax_case(rng, k) for k in range(6)]
    cases += [logistic_case(rng, k) for k in range(5)]
    cases += [quantize_case(rng, k) for k in range(6)]
    cases += [chain_case(rng, k) for k in range(9)]
    # the op groups of issue 17, each from its own seed
    import opcases_act
    import opcases_binary
    import opcases_shape

    cases += opcases_act.cases(seed + 1)
    cases += opcases_binary.cases(seed + 2)
    cases += opcases_shape.cases(seed + 3)
    cases += corner_cases(seed + 16)  # issue 16: requantization corners and PAD folds
    return cases


# ------------------------------------------------------------- requantization corners (issue 16)

_REGIMES = {  # name -> (real multiplier in_scale * filter_scale / out_scale, input zp, output zp)
    "shiftpos": (5.3, 3, -7),           # multiplier >= 1: shift > 0 (a left shift before the high mul)
    "shift0": (0.71, -11, 9),           # in [0.5, 1): shift 0, no rounding divide
    "mult0": (2.0 ** -40, 17, 5),       # below 2^-31: multiplier 0, shift 0, output = zero point
    "zpmin": (0.004, -128, 127),        # extreme zero points
    "zpmax": (0.004, 127, -128),
}


def _corner_conv(rng: np.random.Generator, regime: str, op: str) -> OpCase:
    real, z_in, z_out = _REGIMES[regime]
    b = ModelBuilder()
    s_in, f_s = 0.02, 0.01
    s_out = s_in * f_s / real
    h, w, ic = 5, 6, 3
    if op == "FULLY_CONNECTED":
        units, depth = 5, h * w * ic
        x = b.tensor((1, depth), "int8", s_in, z_in)
        f = b.tensor((units, depth), "int8", [f_s], 0, data=rng.integers(-127, 128, size=(units, depth)).astype(np.int8))
        bias = b.tensor((units,), "int32", [s_in * f_s], 0, data=rng.integers(-300, 300, size=units).astype(np.int32))
        y = b.tensor((1, units), "int8", s_out, z_out)
        b.op(op, [x, f, bias], [y], options("FullyConnectedOptions", fusedActivationFunction=ACT["NONE"]))
        return OpCase(f"corner_{regime}_fully_connected", (op,), b.build([x], [y]), (1, depth))
    depthwise = op == "DEPTHWISE_CONV_2D"
    oc = ic * 2 if depthwise else 4
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in)
    fshape = (1, 3, 3, oc) if depthwise else (oc, 3, 3, ic)
    f = b.tensor(fshape, "int8", [f_s], 0, data=rng.integers(-127, 128, size=fshape).astype(np.int8),
                 qdim=3 if depthwise else 0)
    bias = b.tensor((oc,), "int32", [s_in * f_s], 0, data=rng.integers(-300, 300, size=oc).astype(np.int32))
    y = b.tensor((1, h, w, oc), "int8", s_out, z_out)
    if depthwise:
        opt = options("DepthwiseConv2DOptions", padding=PAD["SAME"], strideH=1, strideW=1, depthMultiplier=2,
                      fusedActivationFunction=ACT["NONE"], dilationHFactor=1, dilationWFactor=1)
    else:
        opt = options("Conv2DOptions", padding=PAD["SAME"], strideH=1, strideW=1, fusedActivationFunction=ACT["NONE"],
                      dilationHFactor=1, dilationWFactor=1)
    b.op(op, [x, f, bias], [y], opt)
    return OpCase(f"corner_{regime}_{op.lower()}", (op,), b.build([x], [y]), (1, h, w, ic))


def _corner_add(rng: np.random.Generator, regime: str) -> OpCase:
    """ADD's output multiplier is 2 * max(s1, s2) / (2^20 * s_out): the regime's real multiplier."""
    real, z_in, z_out = _REGIMES[regime]
    b = ModelBuilder()
    shape = (1, 4, 5, 3)
    s1, s2 = 0.05, 0.031
    x = b.tensor(shape, "int8", s1, z_in)
    y = b.tensor(shape, "int8", s2, -z_in if abs(z_in) < 128 else 127,
                 data=rng.integers(-128, 128, size=shape).astype(np.int8))
    out = b.tensor(shape, "int8", 2 * s1 / ((1 << 20) * real), z_out)
    b.op("ADD", [x, y], [out], options("AddOptions", fusedActivationFunction=ACT["NONE"]))
    return OpCase(f"corner_{regime}_add", ("ADD",), b.build([x], [out]), shape)


def _pad_conv(rng: np.random.Generator, k: int) -> OpCase:
    """PAD (height/width, with the input zero point) -> CONV_2D / DEPTHWISE_CONV_2D: the lowering
    folds the PAD into the convolution, which then reads the padding virtually."""
    depthwise = k % 2 == 1
    b = ModelBuilder()
    h, w, ic = 6, 5, 3
    s_in, z_in = 0.03, [-128, 127, 13, -40][k % 4]
    pads = np.array([[0, 0], [1 + k % 2, 2], [2, k % 2], [0, 0]], dtype=np.int32)
    ph, pw = h + int(pads[1].sum()), w + int(pads[2].sum())
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in, name="input")
    xp = b.tensor((1, ph, pw, ic), "int8", s_in, z_in, name="padded")
    b.op("PAD", [x, b.tensor((4, 2), "int32", data=pads)], [xp], options("PadOptions"))
    oc = ic if depthwise else 5
    sh = 1 + k // 2 % 2
    fshape = (1, 3, 3, oc) if depthwise else (oc, 3, 3, ic)
    f_s = list(10 ** rng.uniform(-2.5, -1.5, size=oc))
    f = b.tensor(fshape, "int8", f_s, 0, data=rng.integers(-127, 128, size=fshape).astype(np.int8),
                 qdim=3 if depthwise else 0)
    bias = b.tensor((oc,), "int32", [s_in * s for s in f_s], 0, data=rng.integers(-900, 900, size=oc).astype(np.int32))
    oh, ow = (ph - 3 + sh) // sh, (pw - 3 + 1) // 1
    y = b.tensor((1, oh, ow, oc), "int8", 0.05, int(rng.integers(-20, 21)))
    if depthwise:
        opt = options("DepthwiseConv2DOptions", padding=PAD["VALID"], strideH=sh, strideW=1, depthMultiplier=1,
                      fusedActivationFunction=ACT["RELU"], dilationHFactor=1, dilationWFactor=1)
    else:
        opt = options("Conv2DOptions", padding=PAD["VALID"], strideH=sh, strideW=1, fusedActivationFunction=ACT["RELU"],
                      dilationHFactor=1, dilationWFactor=1)
    op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    b.op(op, [xp, f, bias], [y], opt)
    return OpCase(f"padfold_{op.lower()}_{k}", ("PAD", op), b.build([x], [y]), (1, h, w, ic))


def corner_cases(seed: int) -> list[OpCase]:
    """Requantization corners (shift > 0, shift 0, multiplier 0, zero points -128 / 127) for every
    kernel that requantizes with a per-op multiplier, and PAD -> convolution folds."""
    rng = np.random.default_rng(seed)
    cases = [_corner_conv(rng, r, op) for r in _REGIMES for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    # TFLite's ADD requires an output multiplier below 1 (no shift > 0)
    cases += [_corner_add(rng, r) for r in _REGIMES if r != "shiftpos"]
    cases += [_pad_conv(rng, k) for k in range(4)]
    cases += [_big_patch_conv(rng, k) for k in range(2)]
    cases += [_wide_depthwise(rng, k) for k in range(2)]
    cases += [_dsp_pointwise(rng, k) for k in range(4)]
    cases += [_dsp_batched_fc(rng, k) for k in range(2)]
    cases += [_range_proof(rng, k) for k in range(3)]
    cases += mve_shape_cases(seed + 1)  # vector-size edges of the MVE kernels, every regime
    return cases


def _dsp_pointwise(rng: np.random.Generator, k: int) -> OpCase:
    """1x1 convolutions for the DSP matrix product's edges: rows a multiple of 4 or not (the scalar
    tail), an odd output channel count (a channel paired with itself), an odd pixel count (the last
    pixel alone), more than 32 output channels (two requantization batches), rows longer than the
    widened buffer (256 bytes: the portable loop)."""
    b = ModelBuilder()
    h, w, ic, oc = [(3, 3, 8, 5), (1, 5, 6, 7), (2, 3, 260, 3), (3, 1, 12, 37)][k]
    s_in, z_in = 0.02, [-128, 5, 127, -60][k]
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in)
    fshape = (oc, 1, 1, ic)
    f_s = list(10 ** rng.uniform(-3, -1.5, size=oc))
    f = b.tensor(fshape, "int8", f_s, 0, data=rng.integers(-127, 128, size=fshape).astype(np.int8), qdim=0)
    bias = b.tensor((oc,), "int32", [s_in * s for s in f_s], 0, data=rng.integers(-900, 900, size=oc).astype(np.int32))
    y = b.tensor((1, h, w, oc), "int8", [0.02, 0.1, 0.5, 0.05][k], int(rng.integers(-20, 21)))
    b.op("CONV_2D", [x, f, bias], [y], options("Conv2DOptions", padding=PAD["VALID"], strideH=1, strideW=1,
                                                 fusedActivationFunction=ACT[["NONE", "RELU", "RELU6", "NONE"][k]],
                                                 dilationHFactor=1, dilationWFactor=1))
    return OpCase(f"dsp_pointwise_conv_2d_{k}", ("CONV_2D",), b.build([x], [y]), (1, h, w, ic))


RANGE_PROOF_BITS = (31, 32, 31)  # acc_bits the lowering must prove for _range_proof(k)


def _range_proof(rng: np.random.Generator, k: int) -> OpCase:
    """The DSP kernels' range-proven requantization at its edge: biases set so that the largest
    possible accumulator of one output is exactly 2^30 - 1 and the smallest of another exactly -2^30
    (acc_bits 31: the short form, k = 0 a 1x1 convolution, k = 2 a FULLY_CONNECTED), and one past it
    (k = 1: 2^30, acc_bits 32: the forced fallback to the general form). The output scale maps
    accumulators near 2^30 into the int8 range (shift -24). An odd pixel / batch count and an odd
    output count take the fused kernel's single-pixel and single-channel paths."""
    b = ModelBuilder()
    fc = k == 2
    ic, oc = (12, 7) if fc else (8, 5)
    s_in, z_in, f_s = 0.02, [-128, 77, 3][k], 0.01
    shape = (3, ic) if fc else (1, 3, 3, ic)
    x = b.tensor(shape, "int8", s_in, z_in)
    wts = rng.integers(-127, 128, size=(oc, ic)).astype(np.int64)
    top = np.maximum(127 * wts, -128 * wts).sum(axis=1)
    bottom = np.minimum(127 * wts, -128 * wts).sum(axis=1)
    bias = rng.integers(-(1 << 20), 1 << 20, size=oc).astype(np.int64)
    edge = (1 << 30) - 1 + (k == 1)
    bias[0] = edge - top[0] + z_in * wts[0].sum()          # zbias = bias - z_in * sum(w)
    bias[1] = -(1 << 30) - bottom[1] + z_in * wts[1].sum()
    s_out = s_in * f_s * (1 << 30) / 100.0                  # 2^30 -> 100
    if fc:
        f = b.tensor((oc, ic), "int8", [f_s], 0, data=wts.astype(np.int8))
        y = b.tensor((3, oc), "int8", s_out, 0)
        bt = b.tensor((oc,), "int32", [s_in * f_s], 0, data=bias.astype(np.int32))
        b.op("FULLY_CONNECTED", [x, f, bt], [y], options("FullyConnectedOptions", fusedActivationFunction=ACT["NONE"]))
        return OpCase("range_proof_fully_connected", ("FULLY_CONNECTED",), b.build([x], [y]), shape)
    f = b.tensor((oc, 1, 1, ic), "int8", [f_s] * oc, 0, data=wts.reshape(oc, 1, 1, ic).astype(np.int8), qdim=0)
    bt = b.tensor((oc,), "int32", [s_in * f_s] * oc, 0, data=bias.astype(np.int32))
    y = b.tensor((1, 3, 3, oc), "int8", s_out, 0)
    b.op("CONV_2D", [x, f, bt], [y], options("Conv2DOptions", padding=PAD["VALID"], strideH=1, strideW=1,
                                               fusedActivationFunction=ACT["NONE"], dilationHFactor=1,
                                               dilationWFactor=1))
    return OpCase(f"range_proof_conv_2d_{['edge', 'fallback'][k]}", ("CONV_2D",), b.build([x], [y]), shape)


def _dsp_batched_fc(rng: np.random.Generator, k: int) -> OpCase:
    """FULLY_CONNECTED with several batches (the DSP path takes two at a time; an odd count leaves one)
    and a depth that is not a multiple of 4."""
    b = ModelBuilder()
    batches, depth, units = [(3, 22, 5), (2, 16, 6)][k]
    s_in, z_in = 0.03, [-128, 40][k]
    x = b.tensor((batches, depth), "int8", s_in, z_in)
    f_s = 0.01
    f = b.tensor((units, depth), "int8", [f_s], 0, data=rng.integers(-127, 128, size=(units, depth)).astype(np.int8))
    bias = b.tensor((units,), "int32", [s_in * f_s], 0, data=rng.integers(-300, 300, size=units).astype(np.int32))
    y = b.tensor((batches, units), "int8", 0.05, int(rng.integers(-20, 21)))
    b.op("FULLY_CONNECTED", [x, f, bias], [y], options("FullyConnectedOptions", fusedActivationFunction=ACT["NONE"]))
    return OpCase(f"dsp_batched_fully_connected_{k}", ("FULLY_CONNECTED",), b.build([x], [y]), (batches, depth))


def _wide_depthwise(rng: np.random.Generator, k: int) -> OpCase:
    """A depthwise convolution with more channels than the kernel's zero-point row (64), padded:
    the border pixels go through the channels in chunks, with a tail that is not a multiple of 4."""
    b = ModelBuilder()
    h, w, c = 5, 4, 70 + k
    s_in, z_in = 0.02, [-128, 31][k]
    x = b.tensor((1, h, w, c), "int8", s_in, z_in)
    f_s = list(10 ** rng.uniform(-2.5, -1.5, size=c))
    f = b.tensor((1, 3, 3, c), "int8", f_s, 0, data=rng.integers(-127, 128, size=(1, 3, 3, c)).astype(np.int8), qdim=3)
    bias = b.tensor((c,), "int32", [s_in * s for s in f_s], 0, data=rng.integers(-900, 900, size=c).astype(np.int32))
    sh = 1 + k
    y = b.tensor((1, -(-h // sh), w, c), "int8", 0.05, int(rng.integers(-20, 21)))
    b.op("DEPTHWISE_CONV_2D", [x, f, bias], [y],
         options("DepthwiseConv2DOptions", padding=PAD["SAME"], strideH=sh, strideW=1, depthMultiplier=1,
                 fusedActivationFunction=ACT["RELU6"], dilationHFactor=1, dilationWFactor=1))
    return OpCase(f"wide_depthwise_conv_2d_{k}", ("DEPTHWISE_CONV_2D",), b.build([x], [y]), (1, h, w, c))


def _big_patch_conv(rng: np.random.Generator, k: int) -> OpCase:
    """A convolution whose patch (k_h * k_w * in_c) exceeds the kernel's patch buffer (256 bytes):
    the direct path with per-tap weight sums at the borders."""
    b = ModelBuilder()
    h, w, ic, oc = 7, 6, 12, 6 + k
    s_in, z_in = 0.02, [-128, 77][k]
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in)
    fshape = (oc, 5, 5, ic)
    f_s = list(10 ** rng.uniform(-3, -2, size=oc))
    f = b.tensor(fshape, "int8", f_s, 0, data=rng.integers(-127, 128, size=fshape).astype(np.int8), qdim=0)
    bias = b.tensor((oc,), "int32", [s_in * s for s in f_s], 0, data=rng.integers(-900, 900, size=oc).astype(np.int32))
    sh = 1 + k
    oh, ow = -(-h // sh), w
    y = b.tensor((1, oh, ow, oc), "int8", 0.2, int(rng.integers(-20, 21)))
    b.op("CONV_2D", [x, f, bias], [y], options("Conv2DOptions", padding=PAD["SAME"], strideH=sh, strideW=1,
                                                 fusedActivationFunction=ACT["NONE"], dilationHFactor=1,
                                                 dilationWFactor=1))
    return OpCase(f"bigpatch_conv_2d_{k}", ("CONV_2D",), b.build([x], [y]), (1, h, w, ic))


# ------------------------------------------------- shapes the MVE (Helium) kernels treat specially

def _mve_case(rng: np.random.Generator, op: str, regime: str, ic: int, oc: int) -> OpCase:
    """A 1x1 convolution, a 3x3 depthwise (multiplier 1) or a fully connected layer in one of the
    requantization regimes, with an input depth / channel count around the MVE kernels' vector sizes:
    the input row below 16, exactly 16, between 16 and 32, 32, or longer with a tail; output channels
    not a multiple of 4 (the lane-predicated last block); depthwise channels past a multiple of 16."""
    real, z_in, z_out = _REGIMES[regime]
    b = ModelBuilder()
    s_in, f_s = 0.02, 0.01
    s_out = s_in * f_s / real
    h, w = 4, 5
    name = f"mve_{op.lower()}_{regime}_{ic}x{oc}"
    if op == "FULLY_CONNECTED":
        x = b.tensor((2, ic), "int8", s_in, z_in)
        f = b.tensor((oc, ic), "int8", [f_s], 0, data=rng.integers(-128, 128, size=(oc, ic)).astype(np.int8))
        bias = b.tensor((oc,), "int32", [s_in * f_s], 0, data=rng.integers(-300, 300, size=oc).astype(np.int32))
        y = b.tensor((2, oc), "int8", s_out, z_out)
        b.op(op, [x, f, bias], [y], options("FullyConnectedOptions", fusedActivationFunction=ACT["NONE"]))
        return OpCase(name, (op,), b.build([x], [y]), (2, ic))
    depthwise = op == "DEPTHWISE_CONV_2D"
    x = b.tensor((1, h, w, ic), "int8", s_in, z_in)
    fshape = (1, 3, 3, oc) if depthwise else (oc, 1, 1, ic)
    f = b.tensor(fshape, "int8", [f_s], 0, data=rng.integers(-128, 128, size=fshape).astype(np.int8),
                 qdim=3 if depthwise else 0)
    bias = b.tensor((oc,), "int32", [s_in * f_s], 0, data=rng.integers(-300, 300, size=oc).astype(np.int32))
    y = b.tensor((1, h, w, oc), "int8", s_out, z_out)
    if depthwise:
        opt = options("DepthwiseConv2DOptions", padding=PAD["SAME"], strideH=1, strideW=1, depthMultiplier=1,
                      fusedActivationFunction=ACT["RELU6"], dilationHFactor=1, dilationWFactor=1)
    else:
        opt = options("Conv2DOptions", padding=PAD["VALID"], strideH=1, strideW=1, fusedActivationFunction=ACT["NONE"],
                      dilationHFactor=1, dilationWFactor=1)
    b.op(op, [x, f, bias], [y], opt)
    return OpCase(name, (op,), b.build([x], [y]), (1, h, w, ic))


def mve_shape_cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    shapes = [("CONV_2D", "shiftpos", 5, 7), ("CONV_2D", "shift0", 16, 6), ("CONV_2D", "zpmin", 21, 9),
              ("CONV_2D", "mult0", 32, 3), ("CONV_2D", "zpmax", 45, 5), ("CONV_2D", "shiftpos", 48, 1),
              ("DEPTHWISE_CONV_2D", "shiftpos", 19, 19), ("DEPTHWISE_CONV_2D", "mult0", 35, 35),
              ("DEPTHWISE_CONV_2D", "zpmin", 16, 16), ("DEPTHWISE_CONV_2D", "shift0", 3, 3),
              ("FULLY_CONNECTED", "shiftpos", 37, 7), ("FULLY_CONNECTED", "zpmax", 16, 3),
              ("FULLY_CONNECTED", "shift0", 200, 5)]
    return [_mve_case(rng, op, r, ic, oc) for op, r, ic, oc in shapes]
