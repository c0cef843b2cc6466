"""Lowering: each TFLite operator -> one or more typed kernel calls with every parameter computed here.

The numbers are computed exactly as TFLite Micro computes them at Prepare time (QuantizeMultiplier
from a double scale, TfLiteRound, CalculateActivationRangeQuantized, ComputePaddingHeightWidth,
PreprocessSoftmaxScaling, ...), so the C kernels only do the Eval part. Nothing here writes C:
emission (emit_c.py) turns these frozen dataclasses into text.

``LOWERINGS`` is a name-keyed registry: TFLite op name -> lowering function. Its keys are exactly
``tinysplit.exporter.ops.SUPPORTED_OPS``; any other op raises UnsupportedModelError naming it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar

import numpy as np

from tinysplit.errors import UnsupportedModelError
from tinysplit.exporter.codegen.blocks import ResidualBlock, find_residual_blocks
from tinysplit.exporter.ops import SUPPORTED_OPS
from tinysplit.exporter.tflite_model import Operator, Tensor, TfliteModel

log = logging.getLogger(__name__)

INT8_MIN, INT8_MAX = -128, 127
ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD scales both inputs up by 2^20 before requantizing them
# Some TFLite Micro versions give int8 MEAN a plain integer-division path when input and output share
# scale and zero point. Measured against the tflite-micro wheel: it does not (QuantizedMeanOrSum
# always; the plain path differed by 1 LSB on ~50% of outputs), so the fast path stays off.
MEAN_SAME_QUANT_FAST_PATH = False

_ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PAD_SAME, _PAD_VALID = 0, 1


# ----------------------------------------------------------------------------- TFLite arithmetic

def tflite_round(x: float) -> int:
    """std::round: half away from zero (exact for doubles: x - floor(x) has no rounding error)."""
    r = math.floor(x)
    frac = x - r
    if frac > 0.5 or (frac == 0.5 and x > 0):
        r += 1
    return int(r)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """tflite::QuantizeMultiplier (double-rounding build): real ~= mult * 2^(shift - 31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_value(scale: float, zero_point: int, f: float) -> int:
    """tflite::Quantize as CalculateActivationRangeQuantized uses it (float division)."""
    return zero_point + tflite_round(float(np.float32(f) / np.float32(scale)))


def activation_range(act: int, scale: float, zero_point: int, where: str) -> tuple[int, int]:
    if act == 0:
        return INT8_MIN, INT8_MAX
    if act == 1:
        return max(INT8_MIN, quantize_value(scale, zero_point, 0.0)), INT8_MAX
    if act == 3:
        return (max(INT8_MIN, quantize_value(scale, zero_point, 0.0)),
                min(INT8_MAX, quantize_value(scale, zero_point, 6.0)))
    if act == 2:
        return (max(INT8_MIN, quantize_value(scale, zero_point, -1.0)),
                min(INT8_MAX, quantize_value(scale, zero_point, 1.0)))
    raise UnsupportedModelError(f"{where}: fused activation {_ACT_NAMES.get(act, act)} is not supported by the "
                                "code generator (use ReLU or ReLU6, or none)")


def out_size_and_padding(padding: int, in_size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """(output size, leading padding) as TFLite's ComputePaddingHeightWidth."""
    eff = (k - 1) * dil + 1
    out = (in_size + stride - 1) // stride if padding == _PAD_SAME else (in_size + stride - eff) // stride
    total = (out - 1) * stride + eff - in_size
    return out, max(total, 0) // 2


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul exactly as TFLite writes it (64-bit product, nudge, division
    truncating toward zero)."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)
    return q if ab + nudge >= 0 else -q


def rdbpot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT (round half away from zero), int32 arithmetic."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (double rounding), x an int32."""
    left, right = max(shift, 0), max(-shift, 0)
    xs = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)
    return rdbpot(srdhm(xs, multiplier), right)


def add_lut(in_offset: int, mult: int, shift: int) -> np.ndarray:
    """int8 ADD's per-input term for every int8 value v (index v + 128): the input scaled up by
    2^ADD_LEFT_SHIFT and requantized, as TFLite computes it per element."""
    return np.asarray([mbqm((v + in_offset) << ADD_LEFT_SHIFT, mult, shift) for v in range(-128, 128)],
                      dtype=np.int32)


def calculate_input_radius(integer_bits: int, left_shift: int, total_bits: int = 31) -> int:
    v = 1.0 * ((1 << integer_bits) - 1) * (1 << (total_bits - integer_bits)) / (1 << left_shift)
    return int(math.floor(v))


# ----------------------------------------------------------------------------- lowered types

@dataclass(frozen=True)
class ConstArray:
    """A constant array the kernel reads from flash (weights, biases, multipliers, shifts)."""

    role: str
    ctype: str  # "int8_t", "int32_t"
    values: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class ConvParams:
    c_type: ClassVar[str] = "ts_conv_params_t"
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
    dil_h: int
    dil_w: int
    pad_h: int
    pad_w: int
    depth_mult: int
    in_offset: int
    out_offset: int
    act_min: int
    act_max: int
    acc_bits: int = 32  # every accumulator fits this many signed bits (acc_bits()); 32: not proven


@dataclass(frozen=True)
class FcParams:
    c_type: ClassVar[str] = "ts_fc_params_t"
    batches: int
    depth: int
    units: int
    in_offset: int
    filter_offset: int
    out_offset: int
    act_min: int
    act_max: int
    acc_bits: int = 32


@dataclass(frozen=True)
class BinaryParams:
    c_type: ClassVar[str] = "ts_binary_params_t"
    flat: int
    size: int
    dims: tuple[int, int, int, int]
    s1: tuple[int, int, int, int]
    s2: tuple[int, int, int, int]
    in1_offset: int
    in2_offset: int
    out_offset: int
    left_shift: int
    in1_mult: int
    in1_shift: int
    in2_mult: int
    in2_shift: int
    out_mult: int
    out_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class PadParams:
    c_type: ClassVar[str] = "ts_pad_params_t"
    in_dims: tuple[int, int, int, int]
    out_dims: tuple[int, int, int, int]
    before: tuple[int, int, int, int]
    value: int


@dataclass(frozen=True)
class PoolParams:
    c_type: ClassVar[str] = "ts_pool_params_t"
    in_h: int
    in_w: int
    ch: int
    out_h: int
    out_w: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class MeanParams:
    c_type: ClassVar[str] = "ts_mean_params_t"
    out_dims: tuple[int, int, int, int]
    red_dims: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    count: int
    plain: int
    in_zp: int
    out_zp: int
    mult: int
    shift: int


@dataclass(frozen=True)
class ConcatParams:
    c_type: ClassVar[str] = "ts_concat_params_t"
    outer: int
    inner: int
    out_stride: int
    out_base: int


@dataclass(frozen=True)
class CopyParams:
    c_type: ClassVar[str] = "ts_copy_params_t"
    bytes: int


@dataclass(frozen=True)
class SoftmaxParams:
    c_type: ClassVar[str] = "ts_softmax_params_t"
    outer: int
    depth: int
    input_multiplier: int
    input_left_shift: int
    diff_min: int


@dataclass(frozen=True)
class LogisticParams:
    c_type: ClassVar[str] = "ts_logistic_params_t"
    size: int
    in_zp: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


@dataclass(frozen=True)
class QuantParams:
    c_type: ClassVar[str] = "ts_quant_params_t"
    size: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class RequantParams:
    c_type: ClassVar[str] = "ts_requant_params_t"
    size: int
    in_zp: int
    out_zp: int
    mult: int
    shift: int


@dataclass(frozen=True)
class KernelCall:
    """One C kernel call: kernel(&params, consts..., inputs..., output).

    ``inputs`` are tensor indices (activations, or constant tensors the emitter writes to flash).
    ``alias``: the output is the input's memory (RESHAPE); no call is emitted.
    ``reuse`` says how the output may share memory with ``inputs[0]`` (or any input, elementwise)
    when that input dies at this call:
      "elementwise": same bytes, same place (element i is read before element i is written);
      "grow":        same start, output larger (PAD writes from the end backwards);
      "rows":        the output may start ``row_shift(call)`` bytes before the input (row-streaming
                     convolutions write output row r only after reading the input rows it needs).
    ``scratch``: tensors the kernel uses as working memory during this call only (passed after the
    output; e.g. the row window of a streamed block, see stream.py).
    """

    op_index: int
    opcode: str
    kernel: str
    params: Any
    consts: tuple[ConstArray | None, ...]
    inputs: tuple[int, ...]
    output: int
    alias: bool = False
    reuse: str = ""
    scratch: tuple[int, ...] = ()


def row_shift(call: KernelCall) -> int:
    """For a row-streaming convolution (ConvParams, int8, NHWC): the smallest D such that the output
    may start D bytes before the input (D < 0: after it). Output row r is written after the input
    rows from max(0, r * stride_h - pad_h) on are read, and those rows are never overwritten:
    (r + 1) * row_out <= D + max(0, r * stride_h - pad_h) * row_in for every r."""
    p = call.params
    if not isinstance(p, ConvParams):
        raise TypeError(f"{call.kernel} does not stream rows")
    row_in, row_out = p.in_w * p.in_c, p.out_w * p.out_c
    return max((r + 1) * row_out - max(0, r * p.stride_h - p.pad_h) * row_in for r in range(p.out_h))


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class LoweredModel:
    calls: tuple[KernelCall, ...]
    tensors: tuple[TensorInfo, ...]  # every activation tensor (non-constant) the calls touch
    constants: tuple[int, ...]  # constant tensors passed as kernel inputs (e.g. an ADD operand)
    input: int
    output: int
    # Skippable residual blocks (bit i of the skip mask is blocks[i]); empty unless asked for.
    blocks: tuple[ResidualBlock, ...] = ()

    def tensor(self, index: int) -> TensorInfo:
        for t in self.tensors:
            if t.index == index:
                return t
        raise KeyError(index)


# ----------------------------------------------------------------------------- helpers

_ITEMSIZE = {"int8": 1, "int32": 4, "float32": 4}


def _fused(op: Operator) -> int:
    """The op's fused activation (0, none, when the model leaves its options out, as TFLite Micro reads it)."""
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0)


def _where(op: Operator) -> str:
    return f"operator {op.index} ({op.opcode})"


def _t(model: TfliteModel, i: int) -> Tensor:
    return model.tensors[i]


def _need(cond: bool, op: Operator, what: str) -> None:
    if not cond:
        raise UnsupportedModelError(f"{_where(op)}: {what}; the code generator cannot lower it. "
                                    "Change that layer or keep it in the host tail")


def _dtype(op: Operator, t: Tensor, want: str) -> None:
    _need(t.dtype == want, op, f"tensor '{t.name}' is {t.dtype}, expected {want}")


def _q(t: Tensor) -> tuple[float, int]:
    if not t.scales:
        raise UnsupportedModelError(f"tensor '{t.name}' has no quantization parameters; export a fully int8 model")
    return t.scales[0], (t.zero_points[0] if t.zero_points else 0)


def _nhwc(op: Operator, t: Tensor) -> tuple[int, int, int]:
    _need(len(t.shape) == 4 and t.shape[0] == 1, op, f"tensor '{t.name}' has shape {t.shape}, expected (1, H, W, C)")
    return t.shape[1], t.shape[2], t.shape[3]


def _ext4(shape: tuple[int, ...], op: Operator) -> tuple[int, int, int, int]:
    _need(len(shape) <= 4, op, f"shape {shape} has more than 4 dimensions")
    s = (1,) * (4 - len(shape)) + tuple(shape)
    return s[0], s[1], s[2], s[3]


def _strides(dims: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for d in reversed(dims):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def _per_channel(op: Operator, inp: Tensor, filt: Tensor, out: Tensor, channels: int) -> tuple[ConstArray, ConstArray]:
    in_s, _ = _q(inp)
    out_s, _ = _q(out)
    scales = filt.scales
    _need(len(scales) in (1, channels), op, f"filter '{filt.name}' has {len(scales)} scales for {channels} channels")
    mults, shifts = [], []
    for c in range(channels):
        fs = scales[c] if len(scales) > 1 else scales[0]
        m, s = quantize_multiplier(float(in_s) * float(fs) / float(out_s))
        mults.append(m)
        shifts.append(s)
    _check_multipliers(op, np.asarray(mults, dtype=np.int64))
    return (ConstArray("mult", "int32_t", np.asarray(mults, dtype=np.int32)),
            ConstArray("shift", "int32_t", np.asarray(shifts, dtype=np.int32)))


def _bias(model: TfliteModel, op: Operator, pos: int) -> ConstArray | None:
    if len(op.inputs) <= pos or op.inputs[pos] < 0:
        return None
    b = _t(model, op.inputs[pos])
    _need(b.is_constant and b.dtype == "int32", op, f"bias '{b.name}' must be a constant int32 tensor")
    return ConstArray("bias", "int32_t", np.ascontiguousarray(b.data, dtype=np.int32).reshape(-1))


def _const_input(model: TfliteModel, op: Operator, pos: int, what: str) -> np.ndarray:
    t = _t(model, op.inputs[pos])
    _need(t.is_constant, op, f"its {what} '{t.name}' must be a constant")
    return np.asarray(t.data)


# ----------------------------------------------------------------------------- lowerings

Lowering = Callable[[TfliteModel, Operator], tuple[KernelCall, ...]]


def _lower_conv_like(model: TfliteModel, op: Operator, depthwise: bool) -> tuple[KernelCall, ...]:
    inp, filt, out = _t(model, op.inputs[0]), _t(model, op.inputs[1]), _t(model, op.outputs[0])
    for t in (inp, filt, out):
        _dtype(op, t, "int8")
    _need(filt.is_constant, op, "its filter must be constant")
    ih, iw, ic = _nhwc(op, inp)
    oh, ow, oc = _nhwc(op, out)
    o = op.options
    if depthwise:
        _need(len(filt.shape) == 4 and filt.shape[0] == 1 and filt.shape[3] == oc, op,
              f"depthwise filter shape {filt.shape} does not match output channels {oc}")
        _need(oc % ic == 0, op, f"output channels {oc} are not a multiple of input channels {ic}")
        kh, kw = filt.shape[1], filt.shape[2]
        dm = oc // ic
    else:
        _need(len(filt.shape) == 4 and filt.shape[0] == oc and filt.shape[3] == ic, op,
              f"filter shape {filt.shape} does not match input channels {ic} / output channels {oc} "
              "(grouped convolutions are not supported)")
        kh, kw = filt.shape[1], filt.shape[2]
        dm = 1
    dh, dw = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
    sh, sw = int(o.strideH), int(o.strideW)
    out_h, pad_h = out_size_and_padding(o.padding, ih, kh, sh, dh)
    out_w, pad_w = out_size_and_padding(o.padding, iw, kw, sw, dw)
    _need((out_h, out_w) == (oh, ow), op, f"output size {(oh, ow)} differs from the computed {(out_h, out_w)}")
    in_s, in_zp = _q(inp)
    out_s, out_zp = _q(out)
    amin, amax = activation_range(_fused(op), out_s, out_zp, _where(op))
    mult, shift = _per_channel(op, inp, filt, out, oc)
    w = ConstArray("filter", "int8_t", np.ascontiguousarray(filt.data, dtype=np.int8).reshape(-1))
    fd = np.asarray(filt.data, dtype=np.int64)
    rows = fd.reshape(kh * kw, oc).T if depthwise else fd.reshape(oc, -1)  # each output's weights
    zbias = _zbias(model, op, 2, oc, -in_zp, rows.sum(axis=1))
    params = ConvParams(ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, dh, dw, pad_h, pad_w, dm,
                        -in_zp, out_zp, amin, amax, acc_bits(zbias.values, rows))
    consts: tuple[ConstArray | None, ...] = (w, zbias, mult, shift)
    if not depthwise:
        consts += (_wsum(filt.data.reshape(oc * kh * kw, ic), "tapsum"),)
    kernel = "ts_dwconv2d_s8" if depthwise else "ts_conv2d_s8"
    return (KernelCall(op.index, op.opcode, kernel, params, consts, (op.inputs[0],), op.outputs[0], reuse="rows"),)


def _wsum(rows: np.ndarray, role: str = "wsum") -> ConstArray:
    """Row sums of int8 weights (per unit, or per output channel and tap): the kernels fold the input
    zero point in with them, sum(w * (x - zp)) = sum(w * x) - zp * sum(w), the same integers."""
    return ConstArray(role, "int32_t", rows.astype(np.int64).sum(axis=1).astype(np.int32))


def acc_bits(zbias: np.ndarray, rows: np.ndarray) -> int:
    """The fewest bits of a signed integer that holds every accumulator a kernel can form for one
    output: zbias[o] + sum_k rows[o, k] * x_k over every int8 input x (a tap outside the input or a
    folded PAD reads an int8 value too), from the largest and the smallest sum per output. The DSP
    kernels requantize in a shorter form when this is at most 31 (issue 16's range proof); 33 and more
    mean the int32 accumulator can wrap (then it wraps as TFLite's does, in the general form)."""
    r = np.asarray(rows, dtype=np.int64).reshape(len(zbias), -1)
    zb = np.asarray(zbias, dtype=np.int64)
    top = zb + np.maximum(127 * r, -128 * r).sum(axis=1)
    bottom = zb + np.minimum(127 * r, -128 * r).sum(axis=1)
    m = max(int(top.max(initial=0)), -int(bottom.min(initial=0)) - 1, 0)
    return m.bit_length() + 1


def _wrap32(v: np.ndarray) -> np.ndarray:
    """int64 values modulo 2^32 as int32: TFLite's int32 accumulator wraps the same way."""
    v = np.asarray(v, dtype=np.int64)
    return (((v + (1 << 31)) % (1 << 32)) - (1 << 31)).astype(np.int32)


def _zbias(model: TfliteModel, op: Operator, pos: int, n: int, in_offset: int, wsum: np.ndarray) -> ConstArray:
    """bias + in_offset * sum(weights) per output (the bias may be absent): the input zero point
    folded in at generation time, sum(w * (x + off)) + b = sum(w * x) + (b + off * sum(w)); the same
    integers modulo 2^32 as TFLite's int32 accumulator."""
    b = _bias(model, op, pos)
    bias = np.zeros(n, dtype=np.int64) if b is None else b.values.astype(np.int64)
    _need(bias.size == n, op, f"bias has {bias.size} values for {n} outputs")
    return ConstArray("zbias", "int32_t", _wrap32(bias + int(in_offset) * np.asarray(wsum, dtype=np.int64)))


def _check_multipliers(op: Operator, *mults: int | np.ndarray) -> None:
    """The kernels' requantization (ts_mbqm_nonneg) needs multiplier >= 0 (it skips TFLite's
    INT32_MIN * INT32_MIN saturation test); scales are positive, so a negative one is a bad model."""
    for m in mults:
        _need(bool(np.all(np.asarray(m, dtype=np.int64) >= 0)), op,
              "a requantization multiplier is negative (a negative or NaN quantization scale)")


def lower_conv_2d(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    return _lower_conv_like(model, op, depthwise=False)


def lower_depthwise_conv_2d(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    return _lower_conv_like(model, op, depthwise=True)


def lower_fully_connected(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, filt, out = _t(model, op.inputs[0]), _t(model, op.inputs[1]), _t(model, op.outputs[0])
    for t in (inp, filt, out):
        _dtype(op, t, "int8")
    _need(filt.is_constant and len(filt.shape) == 2, op, "its weights must be a constant 2-D tensor")
    units, depth = filt.shape
    n_in = int(np.prod(inp.shape))
    _need(n_in % depth == 0, op, f"input of {n_in} values is not a multiple of the weights' depth {depth}")
    in_s, in_zp = _q(inp)
    out_s, out_zp = _q(out)
    f_zp = filt.zero_points[0] if filt.zero_points else 0
    if len(filt.scales) > 1:
        mult, shift = _per_channel(op, inp, filt, out, units)
    else:
        # GetQuantizedConvolutionMultipler: the input*filter product is a float, then a double division
        real = float(np.float32(in_s) * np.float32(filt.scales[0])) / float(out_s)
        m, s = quantize_multiplier(real)
        _check_multipliers(op, m)
        mult = ConstArray("mult", "int32_t", np.full(units, m, dtype=np.int32))
        shift = ConstArray("shift", "int32_t", np.full(units, s, dtype=np.int32))
    amin, amax = activation_range(_fused(op), out_s, out_zp, _where(op))
    w = ConstArray("weights", "int8_t", np.ascontiguousarray(filt.data, dtype=np.int8).reshape(-1))
    rows = np.asarray(filt.data, dtype=np.int64).reshape(units, depth) - f_zp  # the weights as multiplied
    zbias = _zbias(model, op, 2, units, -in_zp, rows.sum(axis=1))
    params = FcParams(n_in // depth, depth, units, -in_zp, -f_zp, out_zp, amin, amax, acc_bits(zbias.values, rows))
    return (KernelCall(op.index, op.opcode, "ts_fc_s8", params, (w, zbias, mult, shift),
                       (op.inputs[0],), op.outputs[0]),)


def _broadcast(op: Operator, a: Tensor, b: Tensor, out: Tensor) -> tuple[int, tuple, tuple, tuple]:
    da, db, do = _ext4(a.shape, op), _ext4(b.shape, op), _ext4(out.shape, op)
    flat = int(da == db == do)
    sa, sb = _strides(da), _strides(db)
    s1, s2 = [], []
    for k in range(4):
        for d, s, acc in ((da, sa, s1), (db, sb, s2)):
            _need(d[k] in (1, do[k]), op, f"shapes {a.shape} and {b.shape} do not broadcast to {out.shape}")
            acc.append(0 if d[k] == 1 and do[k] != 1 else s[k])
    return flat, do, tuple(s1), tuple(s2)


def lower_add(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    a, b, out = _t(model, op.inputs[0]), _t(model, op.inputs[1]), _t(model, op.outputs[0])
    for t in (a, b, out):
        _dtype(op, t, "int8")
    flat, dims, s1, s2 = _broadcast(op, a, b, out)
    (sa, za), (sb, zb), (so, zo) = _q(a), _q(b), _q(out)
    twice_max = 2.0 * float(max(np.float32(sa), np.float32(sb)))
    m1, sh1 = quantize_multiplier(float(sa) / twice_max)
    m2, sh2 = quantize_multiplier(float(sb) / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(so)))
    amin, amax = activation_range(_fused(op), so, zo, _where(op))
    _check_multipliers(op, m1, m2, mo)
    p = BinaryParams(flat, int(np.prod(dims)), dims, s1, s2, -za, -zb, zo, ADD_LEFT_SHIFT,
                     m1, sh1, m2, sh2, mo, sho, amin, amax)
    luts = (ConstArray("lut1", "int32_t", add_lut(-za, m1, sh1)), ConstArray("lut2", "int32_t", add_lut(-zb, m2, sh2)))
    return (KernelCall(op.index, op.opcode, "ts_add_s8", p, luts, (op.inputs[0], op.inputs[1]), op.outputs[0],
                       reuse="elementwise" if flat else ""),)


def lower_mul(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    a, b, out = _t(model, op.inputs[0]), _t(model, op.inputs[1]), _t(model, op.outputs[0])
    for t in (a, b, out):
        _dtype(op, t, "int8")
    flat, dims, s1, s2 = _broadcast(op, a, b, out)
    (sa, za), (sb, zb), (so, zo) = _q(a), _q(b), _q(out)
    mo, sho = quantize_multiplier(float(sa) * float(sb) / float(so))
    _check_multipliers(op, mo)
    amin, amax = activation_range(_fused(op), so, zo, _where(op))
    p = BinaryParams(flat, int(np.prod(dims)), dims, s1, s2, -za, -zb, zo, 0, 0, 0, 0, 0, mo, sho, amin, amax)
    return (KernelCall(op.index, op.opcode, "ts_mul_s8", p, (), (op.inputs[0], op.inputs[1]), op.outputs[0],
                       reuse="elementwise" if flat else ""),)


def lower_pad(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    pads = _const_input(model, op, 1, "paddings").reshape(-1, 2)
    _need(pads.shape[0] == len(inp.shape), op, f"paddings {pads.tolist()} do not match rank {len(inp.shape)}")
    _need(bool(np.all(pads >= 0)), op, "negative paddings are not supported")
    before = (0,) * (4 - len(inp.shape)) + tuple(int(x) for x in pads[:, 0])
    _, zo = _q(out)
    p = PadParams(_ext4(inp.shape, op), _ext4(out.shape, op), before, zo)  # type: ignore[arg-type]
    return (KernelCall(op.index, op.opcode, "ts_pad_s8", p, (), (op.inputs[0],), op.outputs[0], reuse="grow"),)


def _lower_pool(model: TfliteModel, op: Operator, kernel: str) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    ih, iw, c = _nhwc(op, inp)
    oh, ow, oc = _nhwc(op, out)
    o = op.options
    kh, kw, sh, sw = int(o.filterHeight), int(o.filterWidth), int(o.strideH), int(o.strideW)
    out_h, pad_h = out_size_and_padding(o.padding, ih, kh, sh, 1)
    out_w, pad_w = out_size_and_padding(o.padding, iw, kw, sw, 1)
    _need((out_h, out_w, oc) == (oh, ow, c), op, f"output shape {out.shape} differs from the computed one")
    so, zo = _q(out)
    amin, amax = activation_range(_fused(op), so, zo, _where(op))
    p = PoolParams(ih, iw, c, oh, ow, kh, kw, sh, sw, pad_h, pad_w, amin, amax)
    return (KernelCall(op.index, op.opcode, kernel, p, (), (op.inputs[0],), op.outputs[0]),)


def lower_average_pool_2d(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    return _lower_pool(model, op, "ts_avgpool_s8")


def lower_max_pool_2d(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    return _lower_pool(model, op, "ts_maxpool_s8")


def lower_mean(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    rank = len(inp.shape)
    dims = _ext4(inp.shape, op)
    axes = {(int(a) + rank) % rank + (4 - rank) for a in _const_input(model, op, 1, "axis").reshape(-1)}
    red = tuple(dims[k] if k in axes else 1 for k in range(4))
    outd = tuple(1 if k in axes else dims[k] for k in range(4))
    count = int(np.prod(red))
    _need(int(np.prod(outd)) == int(np.prod(out.shape)), op, f"output shape {out.shape} does not match the reduction")
    (si, zi), (so, zo) = _q(inp), _q(out)
    plain = int(MEAN_SAME_QUANT_FAST_PATH and zi == zo and np.float32(si) == np.float32(so))
    mult, shift = quantize_multiplier(float(si) / float(so))
    # QuantizedMeanOrSum folds 1/count into the multiplier
    s = min(count.bit_length() - 1, 32, 31 + shift)
    mult = int((mult << s) // count) if count > 0 else mult
    shift -= s
    _check_multipliers(op, mult)
    p = MeanParams(outd, red, _strides(dims), count, plain, zi, zo, mult, shift)  # type: ignore[arg-type]
    return (KernelCall(op.index, op.opcode, "ts_mean_s8", p, (), (op.inputs[0],), op.outputs[0]),)


def lower_reshape(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _need(not inp.is_constant, op, "reshaping a constant tensor is not supported")
    _need(inp.dtype == out.dtype, op, f"input {inp.dtype} and output {out.dtype} differ")
    nbytes = int(np.prod(out.shape)) * _ITEMSIZE.get(out.dtype, 1)
    return (KernelCall(op.index, op.opcode, "ts_copy", CopyParams(nbytes), (), (op.inputs[0],), op.outputs[0],
                       alias=True),)


def lower_concatenation(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    out = _t(model, op.outputs[0])
    _dtype(op, out, "int8")
    _need(_fused(op) == 0, op, "a fused activation on CONCATENATION is not supported")
    rank = len(out.shape)
    axis = (int(op.options.axis) + rank) % rank
    outer = int(np.prod(out.shape[:axis]))
    out_stride = int(np.prod(out.shape[axis:]))
    calls, base = [], 0
    so, zo = _q(out)
    for ti in op.inputs:
        t = _t(model, ti)
        _dtype(op, t, "int8")
        si, zi = _q(t)
        _need(np.float32(si) == np.float32(so) and zi == zo, op,
              f"input '{t.name}' has scale/zero point {si}/{zi} but the output {so}/{zo} (TFLite Micro copies int8 "
              "inputs unchanged and requires them equal)")
        inner = int(np.prod(t.shape[axis:]))
        calls.append(KernelCall(op.index, op.opcode, "ts_concat_s8", ConcatParams(outer, inner, out_stride, base),
                                (), (ti,), op.outputs[0]))
        base += inner
    _need(base == out_stride, op, "input shapes do not add up to the output shape")
    return tuple(calls)


def lower_softmax(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    so, zo = _q(out)
    _need(zo == -128 and np.float32(so) == np.float32(1 / 256), op,
          f"int8 SOFTMAX needs output scale 1/256 and zero point -128, got {so} / {zo}")
    si, _ = _q(inp)
    beta = float(np.float32(op.options.beta))
    real = min(beta * float(si) * float(1 << (31 - 5)), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier(real)
    diff_min = -calculate_input_radius(5, left_shift)
    depth = inp.shape[-1]
    size = int(np.prod(inp.shape))
    p = SoftmaxParams(size // depth, depth, mult, left_shift, diff_min)
    return (KernelCall(op.index, op.opcode, "ts_softmax_s8", p, (), (op.inputs[0],), op.outputs[0]),)


def lower_logistic(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    so, zo = _q(out)
    _need(zo == -128 and np.float32(so) == np.float32(1 / 256), op,
          f"int8 LOGISTIC needs output scale 1/256 and zero point -128, got {so} / {zo}")
    si, zi = _q(inp)
    real = float(si) * float(1 << (31 - 4))
    q, left_shift = math.frexp(real)
    mult = tflite_round(q * (1 << 31))
    if mult >= (1 << 31):  # static_cast<int32_t> of 2^31 wraps
        mult -= 1 << 32
    radius = calculate_input_radius(4, left_shift, 31)
    p = LogisticParams(int(np.prod(inp.shape)), zi, radius, mult, left_shift)
    return (KernelCall(op.index, op.opcode, "ts_logistic_s8", p, (), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


def lower_quantize(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, out, "int8")
    size = int(np.prod(out.shape))
    so, zo = _q(out)
    if inp.dtype == "float32":
        p = QuantParams(size, float(so), zo)
        return (KernelCall(op.index, op.opcode, "ts_quantize_f32_s8", p, (), (op.inputs[0],), op.outputs[0]),)
    if inp.dtype == "int32":  # e.g. the indices of an ARG_MAX (kernel in the binary ops' section)
        _need(bool(inp.scales), op, f"its int32 input '{inp.name}' has no quantization parameters (TFLite Micro "
                                    "would output the zero point for every value); give it a scale and zero point")
        si, zi = _q(inp)
        mult, shift = quantize_multiplier(float(si) / float(so))
        return (KernelCall(op.index, op.opcode, "ts_requantize_s32_s8", RequantParams(size, zi, zo, mult, shift), (),
                           (op.inputs[0],), op.outputs[0]),)
    _dtype(op, inp, "int8")
    si, zi = _q(inp)
    mult, shift = quantize_multiplier(float(si) / float(so))
    _check_multipliers(op, mult)
    return (KernelCall(op.index, op.opcode, "ts_requantize_s8", RequantParams(size, zi, zo, mult, shift), (),
                       (op.inputs[0],), op.outputs[0], reuse="elementwise"),)


def lower_dequantize(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "float32")
    si, zi = _q(inp)
    p = QuantParams(int(np.prod(inp.shape)), float(si), zi)
    return (KernelCall(op.index, op.opcode, "ts_dequantize_s8_f32", p, (), (op.inputs[0],), op.outputs[0]),)


LOWERINGS: dict[str, Lowering] = {
    "CONV_2D": lower_conv_2d,
    "DEPTHWISE_CONV_2D": lower_depthwise_conv_2d,
    "FULLY_CONNECTED": lower_fully_connected,
    "ADD": lower_add,
    "MUL": lower_mul,
    "PAD": lower_pad,
    "AVERAGE_POOL_2D": lower_average_pool_2d,
    "MAX_POOL_2D": lower_max_pool_2d,
    "MEAN": lower_mean,
    "RESHAPE": lower_reshape,
    "CONCATENATION": lower_concatenation,
    "SOFTMAX": lower_softmax,
    "LOGISTIC": lower_logistic,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
}

# The op groups of issue 17, one module each (they import this module's helpers, so they come last).
from tinysplit.exporter.codegen import lower_act, lower_binary, lower_shape  # noqa: E402

for _group in (lower_act, lower_binary, lower_shape):
    _twice = set(_group.LOWERINGS) & set(LOWERINGS)
    assert not _twice, f"ops lowered twice: {sorted(_twice)}"
    LOWERINGS.update(_group.LOWERINGS)
assert set(LOWERINGS) == set(SUPPORTED_OPS), "the lowering registry must cover exactly SUPPORTED_OPS"


def fold_pads(calls: list[KernelCall], model_output: int) -> list[KernelCall]:
    """Fold a PAD into the convolution that alone reads its output, when it pads only height and
    width with the convolution's input zero point: the convolution reads the PAD's input with a
    larger leading padding (pad_h, pad_w) and treats every tap outside it as that zero point, which
    TFLite's kernels make exact (a tap at the zero point adds w * 0). Trailing padding needs nothing:
    the output size stays the same, so the taps past the input's end are outside it too."""
    readers: dict[int, list[int]] = {}
    for k, c in enumerate(calls):
        for i in c.inputs:
            readers.setdefault(i, []).append(k)
    drop: set[int] = set()
    out = list(calls)
    for k, c in enumerate(calls):
        if c.kernel != "ts_pad_s8" or c.output == model_output:
            continue
        r = readers.get(c.output, [])
        if len(r) != 1 or calls[r[0]].kernel not in ("ts_conv2d_s8", "ts_dwconv2d_s8"):
            continue
        conv = out[r[0]]
        pp, cp = c.params, conv.params
        if conv.inputs[0] != c.output or pp.value != -cp.in_offset:
            continue
        if pp.before[0] or pp.before[3] or pp.in_dims[0] != 1 or pp.in_dims[3] != pp.out_dims[3] \
                or pp.out_dims[1:3] != (cp.in_h, cp.in_w):
            continue
        params = replace(cp, in_h=pp.in_dims[1], in_w=pp.in_dims[2], pad_h=cp.pad_h + pp.before[1],
                         pad_w=cp.pad_w + pp.before[2])
        out[r[0]] = replace(conv, params=params, inputs=(c.inputs[0],) + conv.inputs[1:])
        drop.add(k)
    if drop:
        log.debug("folded %d PAD call(s) into the next convolution", len(drop))
    return [c for k, c in enumerate(out) if k not in drop]


def _tensor_info(t: Tensor) -> TensorInfo:
    n = int(np.prod(t.shape)) if t.shape else 1
    scale, zp = (t.scales[0], t.zero_points[0] if t.zero_points else 0) if t.scales else (0.0, 0)
    if t.dtype not in _ITEMSIZE:
        raise UnsupportedModelError(f"tensor '{t.name}' has type {t.dtype}; only int8 (and float32 around "
                                    "QUANTIZE/DEQUANTIZE) activations are supported")
    return TensorInfo(t.index, t.name, t.shape, t.dtype, n * _ITEMSIZE[t.dtype], float(scale), int(zp))


def lower_model(model: TfliteModel, skippable: bool = False) -> LoweredModel:
    """Lower every operator; raise UnsupportedModelError naming the first op outside SUPPORTED_OPS and
    its operator index (its position in the subgraph's operator list, from 0).

    ``skippable``: also find the identity-shortcut residual blocks (blocks.find_residual_blocks) that
    the generated code will skip by a runtime mask; a model without any is an error then."""
    bad = [op for op in model.operators if op.opcode not in SUPPORTED_OPS]
    if bad:
        more = f" (also unsupported: {', '.join(_where(op) for op in bad[1:4])}{', ...' if len(bad) > 4 else ''})"
        raise UnsupportedModelError(
            f"{_where(bad[0])} is not supported by tinysplit's code generator{more if len(bad) > 1 else ''}. "
            f"Supported ops: {', '.join(sorted(SUPPORTED_OPS))}. Replace that layer or move it to the host tail")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                                    "the generated C API supports exactly one of each")
    for t in model.input_tensors() + model.output_tensors():
        if t.dtype != "int8":
            raise UnsupportedModelError(f"model input/output '{t.name}' is {t.dtype}; the generated C API is int8 "
                                        "(export with int8 input and output types)")
    calls: list[KernelCall] = []
    for op in model.operators:
        try:
            calls.extend(LOWERINGS[op.opcode](model, op))
        except AttributeError:
            if op.options is None:  # a hand-made model without the op's options table (the converter writes it)
                raise UnsupportedModelError(f"{_where(op)} has no options table (its strides, padding or axis); "
                                            "convert the model with the TFLite converter") from None
            raise
    calls = fold_pads(calls, model.outputs[0])
    used: dict[int, TensorInfo] = {}
    constants: list[int] = []
    for c in calls:
        for i in (*c.inputs, c.output):
            t = model.tensors[i]
            if t.is_constant:
                if i not in constants:
                    constants.append(i)
            elif i not in used:
                used[i] = _tensor_info(t)
    for i in (model.inputs[0], model.outputs[0]):
        if i not in used:
            used[i] = _tensor_info(model.tensors[i])
    blocks: tuple[ResidualBlock, ...] = ()
    if skippable:
        blocks = find_residual_blocks(model)
        if not blocks:
            raise UnsupportedModelError(
                "the model has no skippable residual block (an ADD of x and a branch computed from x alone, "
                "same shapes, x used by nothing after it); skip masks need at least one")
    log.debug("lowered %d operators to %d kernel calls", len(model.operators), len(calls))
    return LoweredModel(tuple(calls), tuple(used.values()), tuple(constants), model.inputs[0], model.outputs[0],
                        blocks)
