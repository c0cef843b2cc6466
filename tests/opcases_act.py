"""Random per-op cases for the activations (HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX).

Own seed, so adding cases here never changes another group's cases. Zero points include the
extremes -128 and 127; shapes have rank 1 to 4.
"""

from __future__ import annotations

import numpy as np

from opcases import OpCase
from tflite_builder import ModelBuilder, options

_EXTREME_ZPS = (-128, 127)


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    rank = int(rng.integers(1, 5))
    dims = [int(rng.integers(1, 7)) for _ in range(rank)]
    if rank == 4:
        dims[0] = 1
    return tuple(dims)


def _zp(rng: np.random.Generator, k: int) -> int:
    """Zero points: the extremes for the first cases, random after."""
    return _EXTREME_ZPS[k] if k < len(_EXTREME_ZPS) else int(rng.integers(-128, 128))


def _scale(rng: np.random.Generator, lo: float = -3.0, hi: float = -0.3) -> float:
    return float(10 ** rng.uniform(lo, hi))


def _unary(name: str, op: str, shape: tuple[int, ...], qin: tuple[float, int], qout: tuple[float, int],
           opts: object = None) -> OpCase:
    b = ModelBuilder()
    x = b.tensor(shape, "int8", qin[0], qin[1], name="input")
    y = b.tensor(shape, "int8", qout[0], qout[1], name="output")
    b.op(op, [x], [y], opts)
    return OpCase(name, (op,), b.build([x], [y]), shape)


def _out_q(rng: np.random.Generator, f, si: float, zi: int) -> tuple[float, int]:
    """An output quantization that covers f over the input's real range (randomly widened or
    narrowed, so some values saturate); its zero point reaches -128 / 127 when f's range ends at 0."""
    xs = (np.arange(-128, 128, dtype=np.float64) - zi) * si
    ys = f(xs)
    lo, hi = min(float(ys.min()), 0.0), max(float(ys.max()), 0.0)
    so = max(hi - lo, 1e-3) / 255.0 * float(rng.uniform(0.6, 1.6))
    zo = int(np.clip(round(-128 - lo / so), -128, 127))
    return so, zo


def _hswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3, 0, 6) / 6


def hard_swish_case(rng: np.random.Generator, k: int) -> OpCase:
    si, zi = _scale(rng, -2.3, -0.5), _zp(rng, k)
    so, zo = _out_q(rng, _hswish, si, zi)
    if k == 3:  # input scale close to the 128 x output scale TFLite Micro allows
        so = si / 120.0
    return _unary(f"hard_swish_{k}", "HARD_SWISH", _shape(rng), (si, zi), (so, zo))


_ALPHAS = (0.01, 0.2, 0.5, -0.3, 1.5, 0.0, 0.1)


def leaky_relu_case(rng: np.random.Generator, k: int) -> OpCase:
    si, zi = _scale(rng), _zp(rng, k)
    alpha = _ALPHAS[k % len(_ALPHAS)]
    so, zo = _out_q(rng, lambda x: np.where(x >= 0, x, alpha * x), si, zi)
    return _unary(f"leaky_relu_{k}", "LEAKY_RELU", _shape(rng), (si, zi), (so, zo),
                  options("LeakyReluOptions", alpha=alpha))


def relu_case(rng: np.random.Generator, k: int) -> OpCase:
    si, zi = _scale(rng), _zp(rng, k)
    so, zo = _out_q(rng, lambda x: np.maximum(x, 0), si, zi)
    if k == 2:  # same quantization in and out (what converters emit)
        so, zo = si, zi
    return _unary(f"relu_{k}", "RELU", _shape(rng), (si, zi), (so, zo))


def relu6_case(rng: np.random.Generator, k: int) -> OpCase:
    si = _scale(rng, -2.0, -0.8)
    zp = _zp(rng, k) if k < 2 else int(rng.integers(-128, 0))
    return _unary(f"relu6_{k}", "RELU6", _shape(rng), (si, zp), (si, zp))


def tanh_case(rng: np.random.Generator, k: int) -> OpCase:
    si = _scale(rng, -2.5, -0.5) if k != 2 else 0.5  # k == 2: a scale so large most inputs saturate
    return _unary(f"tanh_{k}", "TANH", _shape(rng), (si, _zp(rng, k)), (1 / 128, 0))


def prelu_case(rng: np.random.Generator, k: int) -> OpCase:
    shape = _shape(rng)
    if k < 2:
        shape = (1, int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 7)))
    # alpha: per channel (converters' usual (1, 1, C)), one value, or full shape
    kind = k % 3
    ashape = (shape[-1],) if kind == 0 else ((1,) if kind == 1 else shape)
    if kind == 0 and len(shape) >= 3:
        ashape = (1,) * (len(shape) - 2) + (1, shape[-1])
    si, zi = _scale(rng), _zp(rng, k)
    a_real = rng.uniform(-0.5, 1.2, size=ashape)
    sa = float(max(np.abs(a_real).max(), 1e-3) / 127.0) * float(rng.uniform(0.8, 1.2))
    za = int(rng.integers(-20, 21)) if k % 2 else 0
    aq = np.clip(np.round(a_real / sa) + za, -128, 127).astype(np.int8)
    so, zo = _out_q(rng, lambda x: np.where(x >= 0, x, x * float(a_real.min())), si, zi)
    b = ModelBuilder()
    x = b.tensor(shape, "int8", si, zi, name="input")
    al = b.tensor(ashape, "int8", sa, za, data=aq, name="alpha")
    y = b.tensor(shape, "int8", so, zo, name="output")
    b.op("PRELU", [x, al], [y])
    return OpCase(f"prelu_{k}", ("PRELU",), b.build([x], [y]), shape)


def log_softmax_case(rng: np.random.Generator, k: int) -> OpCase:
    shape = _shape(rng)
    if k == 0:
        shape = (int(rng.integers(20, 40)),)  # a long row: many exps summed
    elif k != 4 and shape[-1] == 1:  # (k == 4 may keep a row of one: always log 1 = 0)
        shape = shape[:-1] + (int(rng.integers(2, 9)),)
    si = _scale(rng, -2.0, -0.3) if k != 1 else 0.5  # k == 1: large scale, most exps vanish
    return _unary(f"log_softmax_{k}", "LOG_SOFTMAX", shape, (si, _zp(rng, k)), (16 / 256, 127))


def l2norm_case(rng: np.random.Generator, k: int) -> OpCase:
    shape = _shape(rng)
    if k == 0:
        shape = (1, 2, int(rng.integers(40, 80)))  # long rows: the sum of squares is normalized down
    elif shape[-1] == 1:
        shape = shape[:-1] + (int(rng.integers(2, 9)),)
    si = _scale(rng)
    b = ModelBuilder()
    x = b.tensor(shape, "int8", si, _zp(rng, k), name="input")
    y = b.tensor(shape, "int8", 1 / 128, 0, name="output")
    b.op("L2_NORMALIZATION", [x], [y], options("L2NormOptions", fusedActivationFunction=0))
    return OpCase(f"l2norm_{k}", ("L2_NORMALIZATION",), b.build([x], [y]), shape)


def cases(seed: int) -> list[OpCase]:
    rng = np.random.default_rng(seed)
    out: list[OpCase] = []
    out += [hard_swish_case(rng, k) for k in range(7)]
    out += [leaky_relu_case(rng, k) for k in range(7)]
    out += [relu_case(rng, k) for k in range(6)]
    out += [relu6_case(rng, k) for k in range(6)]
    out += [tanh_case(rng, k) for k in range(7)]
    out += [prelu_case(rng, k) for k in range(7)]
    out += [log_softmax_case(rng, k) for k in range(7)]
    out += [l2norm_case(rng, k) for k in range(7)]
    return out
