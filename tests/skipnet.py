"""A small int8 ResNet-shaped .tflite built directly with the flatbuffer schema, for the skip-mask tests.

input (1,6,6,3) -> stem conv -> x0 (1,6,6,8)
  block 0: conv 3x3 + ReLU, conv 3x3, ADD(x0, .) + ReLU      -> y0   (shared quantization with x0)
  block 1: depthwise 3x3 + ReLU, conv 1x1, ADD(., y0)        -> y1   (branch first in the ADD)
  a projection block: conv 3x3 /2 and a 1x1 /2 shortcut, ADD  -> z    (not skippable)
  block 2: conv 3x3, ADD(z, .)                                -> y2   (its own quantization)
-> conv 1x1 + ReLU -> average pool -> reshape -> fully connected -> (1, 10)
"""

from __future__ import annotations

import math

import numpy as np

from tflite_builder import ACT, PAD, ModelBuilder, options

INPUT_SHAPE = (1, 6, 6, 3)
OUT_SCALE = 200.0


def _conv(b: ModelBuilder, rng: np.random.Generator, x: int, xq: tuple[float, int], hw: int, ic: int, oc: int,
          k: int, stride: int = 1, act: str = "NONE", depthwise: bool = False,
          out_q: tuple[float, int] | None = None) -> tuple[int, tuple[float, int], int]:
    s_in, _ = xq
    f_scales = list(10 ** rng.uniform(-2.2, -1.8, size=oc))
    fshape = (1, k, k, oc) if depthwise else (oc, k, k, ic)
    f = b.tensor(fshape, "int8", f_scales, 0, data=rng.integers(-127, 128, size=fshape).astype(np.int8),
                 qdim=3 if depthwise else 0)
    bias = b.tensor((oc,), "int32", [s_in * s for s in f_scales], 0,
                    data=rng.integers(-3000, 3000, size=oc).astype(np.int32))
    taps = k * k * (1 if depthwise else ic)
    std = s_in * 60 * float(np.mean(f_scales)) * 73 * math.sqrt(taps)
    oq = out_q or (float(6 * std / 255), int(-128 if act == "RELU" else rng.integers(-20, 21)))
    out_hw = (hw + stride - 1) // stride
    y = b.tensor((1, out_hw, out_hw, oc), "int8", oq[0], oq[1])
    if depthwise:
        b.op("DEPTHWISE_CONV_2D", [x, f, bias], [y],
             options("DepthwiseConv2DOptions", padding=PAD["SAME"], strideH=stride, strideW=stride, depthMultiplier=1,
                     fusedActivationFunction=ACT[act], dilationHFactor=1, dilationWFactor=1))
    else:
        b.op("CONV_2D", [x, f, bias], [y],
             options("Conv2DOptions", padding=PAD["SAME"], strideH=stride, strideW=stride,
                     fusedActivationFunction=ACT[act], dilationHFactor=1, dilationWFactor=1))
    return y, oq, out_hw


def _add(b: ModelBuilder, a: int, c: int, shape: tuple[int, ...], q: tuple[float, int], act: str = "NONE") -> int:
    y = b.tensor(shape, "int8", q[0], q[1])
    b.op("ADD", [a, c], [y], options("AddOptions", fusedActivationFunction=ACT[act]))
    return y


def skipnet(seed: int = 7, after: str = "conv") -> bytes:
    """``after``: what block 2's output feeds: "conv" (a 1x1 conv, then the pool), "pool" (the average
    pool directly: it passes its input's quantization on), "logistic" (an op whose output quantization
    is fixed, so the chain z -> y2 cannot take a shared one)."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    inq = (0.02, -3)
    x = b.tensor(INPUT_SHAPE, "int8", inq[0], inq[1], name="input")
    x0, q0, hw = _conv(b, rng, x, inq, 6, 3, 8, 3, act="RELU")
    t, tq, _ = _conv(b, rng, x0, q0, hw, 8, 8, 3, act="RELU")
    u, uq, _ = _conv(b, rng, t, tq, hw, 8, 8, 3)
    y0 = _add(b, x0, u, (1, hw, hw, 8), q0, act="RELU")  # block 0: y0 shares x0's quantization
    t, tq, _ = _conv(b, rng, y0, q0, hw, 8, 8, 3, act="RELU", depthwise=True)
    u, uq, _ = _conv(b, rng, t, tq, hw, 8, 8, 1)
    y1 = _add(b, u, y0, (1, hw, hw, 8), q0)  # block 1: the branch is the ADD's first input
    a, aq, hw2 = _conv(b, rng, y1, q0, hw, 8, 16, 3, stride=2, act="RELU")
    s, sq, _ = _conv(b, rng, y1, q0, hw, 8, 16, 1, stride=2)
    zq = (max(aq[0], sq[0]) * 1.5, 0)
    z = _add(b, a, s, (1, hw2, hw2, 16), zq)  # projection shortcut: not skippable
    u, uq, _ = _conv(b, rng, z, zq, hw2, 16, 16, 3)
    y2q = (zq[0] * 1.7, 5)
    y2 = _add(b, z, u, (1, hw2, hw2, 16), y2q)  # block 2: its own quantization
    if after == "conv":  # a 1x1 conv before the pool
        y2, y2q, _ = _conv(b, rng, y2, y2q, hw2, 16, 16, 1, act="RELU")
    elif after == "logistic":  # an op with a fixed output quantization: the chain cannot change its own
        lq = (1.0 / 256, -128)
        lo = b.tensor((1, hw2, hw2, 16), "int8", lq[0], lq[1])
        b.op("LOGISTIC", [y2], [lo])
        y2, y2q = lo, lq
    p = b.tensor((1, 1, 1, 16), "int8", y2q[0], y2q[1])
    b.op("AVERAGE_POOL_2D", [y2], [p], options("Pool2DOptions", padding=PAD["VALID"], strideH=1, strideW=1,
                                                filterHeight=hw2, filterWidth=hw2, fusedActivationFunction=0))
    shape = b.tensor((2,), "int32", data=np.asarray([1, 16], dtype=np.int32))
    r = b.tensor((1, 16), "int8", y2q[0], y2q[1])
    b.op("RESHAPE", [p, shape], [r], options("ReshapeOptions", newShape=np.asarray([1, 16], dtype=np.int32)))
    fs = 0.01
    f = b.tensor((10, 16), "int8", fs, 0, data=rng.integers(-127, 128, size=(10, 16)).astype(np.int8))
    bias = b.tensor((10,), "int32", y2q[0] * fs, 0, data=rng.integers(-500, 500, size=10).astype(np.int32))
    out = b.tensor((1, 10), "int8", y2q[0] * fs * OUT_SCALE, 0, name="output")
    b.op("FULLY_CONNECTED", [r, f, bias], [out], options("FullyConnectedOptions", fusedActivationFunction=0))
    return b.build([x], [out])


# operator indices of the three skippable blocks (first op, ADD) in skipnet()
BLOCK_OPS = ((1, 3), (4, 6), (10, 11))
