"""Lowerings of the activations (HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX).

Registered into ``lower.LOWERINGS``; every key must also be in ``tinysplit.exporter.ops.OPS``.
Every number here is what TFLite Micro's Prepare computes (in float32 where it divides floats),
so the C kernels only do the Eval part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import math

import numpy as np

from tinysplit.exporter.codegen.lower import (
    INT8_MAX,
    INT8_MIN,
    ConstArray,
    KernelCall,
    LogisticParams,
    Lowering,
    calculate_input_radius,
    _dtype,
    _ext4,
    _need,
    _q,
    _t,
    quantize_multiplier,
    tflite_round,
)
from tinysplit.exporter.tflite_model import Operator, TfliteModel

_F32 = np.float32


def _f32_div(a: float, b: float) -> float:
    """float(a) / float(b) in single precision, widened to double (as TFLite Micro's Prepare does)."""
    return float(_F32(a) / _F32(b))


def _downscale_to_int16(mult: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round a Q31 multiplier to Q15."""
    if mult >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (mult + (1 << 15)) >> 16


def _unary_int8(model: TfliteModel, op: Operator):  # noqa: ANN202 - (input, output, size)
    inp, out = _t(model, op.inputs[0]), _t(model, op.outputs[0])
    _dtype(op, inp, "int8")
    _dtype(op, out, "int8")
    size = int(np.prod(inp.shape)) if inp.shape else 1
    _need(size == (int(np.prod(out.shape)) if out.shape else 1), op,
          f"input shape {inp.shape} and output shape {out.shape} differ in size")
    return inp, out, size


# ----------------------------------------------------------------------------- HARD_SWISH

@dataclass(frozen=True)
class HardSwishParams:
    c_type: ClassVar[str] = "ts_hard_swish_params_t"
    size: int
    in_zp: int
    out_zp: int
    reluish_mult: int  # Q15
    reluish_exp: int
    out_mult: int  # Q15
    out_exp: int  # <= 0


def lower_hard_swish(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    hires = _F32(1.0 / 128.0) * _F32(si)
    out_m, out_e = quantize_multiplier(float(hires / _F32(so)))
    _need(out_e <= 0, op,
          f"int8 HARD_SWISH needs input scale < 128 x output scale (TFLite Micro refuses it otherwise), "
          f"got input scale {si} and output scale {so}")
    rel_m, rel_e = quantize_multiplier(float(hires / _F32(3.0 / 32768.0)))
    p = HardSwishParams(size, zi, zo, _downscale_to_int16(rel_m), rel_e, _downscale_to_int16(out_m), out_e)
    return (KernelCall(op.index, op.opcode, "ts_hard_swish_s8", p, (), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


# ----------------------------------------------------------------------------- LEAKY_RELU, RELU, RELU6

@dataclass(frozen=True)
class LeakyReluParams:
    c_type: ClassVar[str] = "ts_leaky_relu_params_t"
    size: int
    in_zp: int
    out_zp: int
    id_mult: int  # x >= 0: input scale / output scale
    id_shift: int
    alpha_mult: int  # x < 0: input scale * alpha / output scale (may be negative)
    alpha_shift: int


def lower_leaky_relu(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    alpha = _F32(op.options.alpha if op.options is not None else 0.2)
    am, ash = quantize_multiplier(float(_F32(_F32(si) * alpha) / _F32(so)))
    im, ish = quantize_multiplier(_f32_div(si, so))
    p = LeakyReluParams(size, zi, zo, im, ish, am, ash)
    return (KernelCall(op.index, op.opcode, "ts_leaky_relu_s8", p, (), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


@dataclass(frozen=True)
class ReluParams:
    c_type: ClassVar[str] = "ts_relu_params_t"
    size: int
    in_zp: int
    out_zp: int
    mult: int
    shift: int
    act_min: int


def lower_relu(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    m, s = quantize_multiplier(_f32_div(si, so))
    p = ReluParams(size, zi, zo, m, s, max(INT8_MIN, zo))
    return (KernelCall(op.index, op.opcode, "ts_relu_s8", p, (), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


@dataclass(frozen=True)
class ClampParams:
    c_type: ClassVar[str] = "ts_clamp_params_t"
    size: int
    lo: int
    hi: int


def lower_relu6(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    # TFLite Micro clamps the int8 values to [q(0), q(6)] of the INPUT's quantization and ignores the
    # output's: a model whose output is quantized otherwise would be computed wrongly there too.
    _need(_F32(si) == _F32(so) and zi == zo, op,
          f"int8 RELU6 needs the output quantized as the input (TFLite Micro copies the clamped input "
          f"values), got input {si}/{zi} and output {so}/{zo}")
    six = tflite_round(float(_F32(6.0) / _F32(si))) + zi  # FloatToQuantizedType: round(6 / scale) + zero point
    _need(abs(six) < 2 ** 31, op, f"input scale {si} is too small for RELU6")
    p = ClampParams(size, zi, min(INT8_MAX, max(INT8_MIN, six)))
    return (KernelCall(op.index, op.opcode, "ts_clamp_s8", p, (), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


# ----------------------------------------------------------------------------- TANH

def lower_tanh(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    (si, zi), (so, zo) = _q(inp), _q(out)
    # TFLite Micro's int8 TANH writes tanh(x) * 128 whatever the output's quantization says
    _need(zo == 0 and _F32(so) == _F32(1 / 128), op,
          f"int8 TANH needs output scale 1/128 and zero point 0, got {so} / {zo}")
    q, left_shift = math.frexp(float(si) * float(1 << (31 - 4)))
    mult = tflite_round(q * (1 << 31))
    if mult >= (1 << 31):  # static_cast<int32_t> of 2^31 wraps
        mult -= 1 << 32
    p = LogisticParams(size, zi, calculate_input_radius(4, left_shift, 31), mult, left_shift)
    return (KernelCall(op.index, op.opcode, "ts_tanh_s8", p, (), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


# ----------------------------------------------------------------------------- PRELU

@dataclass(frozen=True)
class PreluParams:
    c_type: ClassVar[str] = "ts_prelu_params_t"
    dims: tuple[int, int, int, int]  # output (= input) dims, extended to 4-D
    alpha_strides: tuple[int, int, int, int]  # element strides of alpha over dims (0: broadcast)
    in_offset: int
    alpha_offset: int
    out_offset: int
    pos_mult: int  # x >= 0: input scale / output scale
    pos_shift: int
    neg_mult: int  # x < 0: input scale * alpha scale / output scale, applied to x * alpha
    neg_shift: int


def lower_prelu(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, _ = _unary_int8(model, op)
    alpha = _t(model, op.inputs[1])
    _dtype(op, alpha, "int8")
    _need(alpha.is_constant, op, f"its alpha '{alpha.name}' must be a constant tensor")
    _need(len(alpha.scales) == 1, op, f"alpha '{alpha.name}' has {len(alpha.scales)} scales; "
          "TFLite Micro's int8 PRELU reads one (per-tensor) scale")
    _need(tuple(inp.shape) == tuple(out.shape), op, f"input shape {inp.shape} and output shape {out.shape} differ")
    dims = _ext4(out.shape, op)
    ad = _ext4(alpha.shape, op)
    _need(len(alpha.shape) <= len(out.shape) and all(a in (1, d) for a, d in zip(ad, dims)), op,
          f"alpha shape {alpha.shape} does not broadcast to the input shape {inp.shape}")
    strides, acc = [0, 0, 0, 0], 1
    for k in range(3, -1, -1):
        strides[k] = acc if ad[k] != 1 else 0
        acc *= ad[k]
    (si, zi), (sa, za), (so, zo) = _q(inp), _q(alpha), _q(out)
    pm, ps = quantize_multiplier(float(si) / float(so))
    nm, ns = quantize_multiplier(float(si) * float(sa) / float(so))
    p = PreluParams(dims, tuple(strides), -zi, -za, zo, pm, ps, nm, ns)  # type: ignore[arg-type]
    values = ConstArray("alpha", "int8_t", np.ascontiguousarray(alpha.data, dtype=np.int8).reshape(-1))
    return (KernelCall(op.index, op.opcode, "ts_prelu_s8", p, (values,), (op.inputs[0],), op.outputs[0],
                       reuse="elementwise"),)


# ----------------------------------------------------------------------------- LOG_SOFTMAX

@dataclass(frozen=True)
class LogSoftmaxParams:
    c_type: ClassVar[str] = "ts_log_softmax_params_t"
    outer: int
    depth: int
    input_multiplier: int
    input_left_shift: int
    reverse_mult: int
    reverse_shift: int  # <= 0
    diff_min: int


def lower_log_softmax(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    _need(tuple(inp.shape) == tuple(out.shape), op, f"input shape {inp.shape} and output shape {out.shape} differ")
    (si, _), (so, zo) = _q(inp), _q(out)
    _need(zo == 127 and _F32(so) == _F32(16.0 / 256.0), op,
          f"int8 LOG_SOFTMAX needs output scale 16/256 and zero point 127 (TFLite Micro refuses others), "
          f"got {so} / {zo}")
    real = min(1.0 * float(si) * float(1 << (31 - 5)), float((1 << 31) - 1))
    _need(real > 1.0, op, f"input scale {si} is too small for LOG_SOFTMAX")
    mult, left_shift = quantize_multiplier(real)
    rmult, rshift = quantize_multiplier(float(1 << (31 - left_shift)) / float(mult))
    depth = inp.shape[-1] if inp.shape else 1
    p = LogSoftmaxParams(size // depth, depth, mult, left_shift, rmult, rshift,
                         -calculate_input_radius(5, left_shift))
    return (KernelCall(op.index, op.opcode, "ts_log_softmax_s8", p, (), (op.inputs[0],), op.outputs[0]),)


# ----------------------------------------------------------------------------- L2_NORMALIZATION

@dataclass(frozen=True)
class L2NormParams:
    c_type: ClassVar[str] = "ts_l2norm_params_t"
    outer: int
    depth: int
    in_zp: int


def lower_l2_normalization(model: TfliteModel, op: Operator) -> tuple[KernelCall, ...]:
    inp, out, size = _unary_int8(model, op)
    _need(tuple(inp.shape) == tuple(out.shape), op, f"input shape {inp.shape} and output shape {out.shape} differ")
    _need(len(inp.shape) <= 4, op, f"input shape {inp.shape} has more than 4 dimensions (TFLite Micro refuses it)")
    act = op.options.fusedActivationFunction if op.options is not None else 0
    _need(act == 0, op, "a fused activation on L2_NORMALIZATION is not supported (TFLite Micro refuses it)")
    (_, zi), (so, zo) = _q(inp), _q(out)
    # TFLite Micro's int8 kernel writes x / |x| * 128 whatever the output's quantization says
    _need(zo == 0 and _F32(so) == _F32(1 / 128), op,
          f"int8 L2_NORMALIZATION needs output scale 1/128 and zero point 0, got {so} / {zo}")
    depth = inp.shape[-1] if inp.shape else 1
    p = L2NormParams(size // depth, depth, zi)
    return (KernelCall(op.index, op.opcode, "ts_l2norm_s8", p, (), (op.inputs[0],), op.outputs[0]),)


LOWERINGS: dict[str, Lowering] = {
    "HARD_SWISH": lower_hard_swish,
    "LEAKY_RELU": lower_leaky_relu,
    "RELU": lower_relu,
    "RELU6": lower_relu6,
    "TANH": lower_tanh,
    "PRELU": lower_prelu,
    "LOG_SOFTMAX": lower_log_softmax,
    "L2_NORMALIZATION": lower_l2_normalization,
}
