"""Random int8 inverted-residual chains (expand 1x1 -> [PAD] -> depthwise -> project 1x1 [-> ADD]) for
the streamed-block tests, built directly as .tflite (seeded), with knobs for the chains that must not
fuse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tflite_builder import ACT, PAD, ModelBuilder, options


@dataclass(frozen=True)
class Chain:
    h: int = 7
    w: int = 6
    cin: int = 4
    hidden: int = 12
    cout: int = 4
    k: int = 3
    stride: int = 1
    dil: int = 1
    padding: str = "SAME"          # SAME / VALID on the depthwise; "PAD": an explicit PAD op then VALID
    pad_hw: tuple[int, int, int, int] = (1, 1, 1, 1)   # top, bottom, left, right of the explicit PAD
    pad_channels: int = 0          # > 0: the explicit PAD also pads channels (not foldable)
    dm: int = 1                    # depthwise depth multiplier
    residual: bool = True          # ADD(x, project) when shapes allow
    x_first: bool = True           # the ADD's first input is x
    expand_k: int = 1              # 3: the expand is a 3x3 conv (not a chain)
    extra_reader: bool = False     # the expanded tensor also feeds a second output path (not a chain)
    stem: bool = False             # x is computed (a 1x1 conv of the model input), not the model input


def build_chain(c: Chain, seed: int) -> bytes:
    """The .tflite of one chain (weights and quantization drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()

    def q() -> tuple[float, int]:
        return float(10 ** rng.uniform(-2.0, -0.8)), int(rng.integers(-60, 61))

    s_x, z_x = q()
    x = b.tensor((1, c.h, c.w, c.cin), "int8", s_x, z_x, name="x")
    model_in = x

    def conv(inp: int, s_in: float, cin: int, cout: int, k: int, h: int, w: int, act: str, depthwise: bool = False,
             stride: int = 1, dil: int = 1, padding: str = "SAME", dm: int = 1) -> tuple[int, float, int, int]:
        eff = (k - 1) * dil + 1
        if padding == "SAME":
            oh, ow = math.ceil(h / stride), math.ceil(w / stride)
        else:
            oh, ow = (h - eff + stride) // stride, (w - eff + stride) // stride
        oc = cin * dm if depthwise else cout
        fs = 10 ** rng.uniform(-2.5, -1.5, size=oc)
        fshape = (1, k, k, oc) if depthwise else (oc, k, k, cin)
        f = b.tensor(fshape, "int8", list(fs), 0, data=rng.integers(-127, 128, size=fshape).astype(np.int8),
                     qdim=3 if depthwise else 0)
        bias = b.tensor((oc,), "int32", [s_in * v for v in fs], 0,
                        data=rng.integers(-3000, 3000, size=oc).astype(np.int32))
        taps = k * k * (1 if depthwise else cin)
        std = s_in * 80 * float(np.mean(fs)) * 73 * math.sqrt(taps)
        s_out = max(6 * std / 255 * rng.uniform(0.5, 1.5), 1e-6)
        z_out = -128 if act == "RELU6" else int(rng.integers(-30, 31))
        y = b.tensor((1, oh, ow, oc), "int8", s_out, z_out)
        pad = PAD[padding]
        if depthwise:
            opt = options("DepthwiseConv2DOptions", padding=pad, strideH=stride, strideW=stride, depthMultiplier=dm,
                          fusedActivationFunction=ACT[act], dilationHFactor=dil, dilationWFactor=dil)
            b.op("DEPTHWISE_CONV_2D", [inp, f, bias], [y], opt)
        else:
            opt = options("Conv2DOptions", padding=pad, strideH=stride, strideW=stride,
                          fusedActivationFunction=ACT[act], dilationHFactor=1, dilationWFactor=1)
            b.op("CONV_2D", [inp, f, bias], [y], opt)
        return y, s_out, oh, ow

    if c.stem:
        x, s_x, _, _ = conv(x, s_x, c.cin, c.cin, 1, c.h, c.w, "NONE")
    e, s_e, h, w = conv(x, s_x, c.cin, c.hidden, c.expand_k, c.h, c.w, "RELU6")
    dw_in, dw_pad = e, c.padding
    if c.padding == "PAD":
        t, bo, le, ri = c.pad_hw
        pads = np.array([[0, 0], [t, bo], [le, ri], [0, c.pad_channels]], dtype=np.int32)
        p = b.tensor((4, 2), "int32", data=pads)
        ch = c.hidden + c.pad_channels
        zp = int(b.tensors[e].quantization.zeroPoint[0])
        dw_in = b.tensor((1, h + t + bo, w + le + ri, ch), "int8", s_e, zp)
        b.op("PAD", [e, p], [dw_in], options("PadOptions"))
        h, w, dw_pad = h + t + bo, w + le + ri, "VALID"
        hidden = ch
    else:
        hidden = c.hidden
    d, s_d, h, w = conv(dw_in, s_e, hidden, hidden, c.k, h, w, "RELU6", depthwise=True, stride=c.stride, dil=c.dil,
                        padding=dw_pad, dm=c.dm)
    y, s_y, h, w = conv(d, s_d, hidden * c.dm, c.cout, 1, h, w, "NONE")
    out, s_out = y, s_y
    if c.residual and (h, w, c.cout) == (c.h, c.w, c.cin):
        s_o = max(s_x, s_y) * rng.uniform(1.0, 2.0)
        out = b.tensor((1, h, w, c.cout), "int8", s_o, int(rng.integers(-20, 21)))
        b.op("ADD", [x, y] if c.x_first else [y, x], [out], options("AddOptions", fusedActivationFunction=0))
        s_out = s_o
    if c.extra_reader:  # a second reader of the expanded tensor: its 1x1 conv, added to the output
        assert c.padding != "PAD" and c.stride == 1 and c.padding == "SAME"
        z, s_z, _, _ = conv(e, s_e, c.hidden, c.cout, 1, c.h, c.w, "NONE")
        o2 = b.tensor((1, c.h, c.w, c.cout), "int8", max(s_out, s_z) * 1.5, 0)
        b.op("ADD", [out, z], [o2], options("AddOptions", fusedActivationFunction=0))
        out = o2
    return b.build([model_in], [out])
