"""The kernels' requantization against a Python model of TFLite's arithmetic, written the way TFLite
writes it (64-bit product, nudge, division truncating toward zero; RoundingDivideByPOT with mask and
threshold): random values plus the corners (INT32_MIN * INT32_MIN saturation, shift > 0, shift 0,
multiplier 0, the extreme accumulators). Also: the lowering refuses negative multipliers, and the
ADD tables and the PAD fold it emits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen_support import HOST_CFLAGS
from tflite_builder import ACT, ModelBuilder, options
from tinysplit.errors import UnsupportedModelError
from tinysplit.exporter.codegen import render_model
from tinysplit.exporter.codegen.emit_c import runtime_dir
from tinysplit.exporter.codegen.lower import ADD_LEFT_SHIFT, add_lut, mbqm, quantize_multiplier, rdbpot, srdhm

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1

_MAIN = r"""
#include <stdio.h>
#include "ts_kernels.h"
/* stdin: lines "x m s"; stdout: srdhm(x, m) rdbpot(x, -s or 0) mbqm(x, m, s) mbqm_nonneg(x, m, s) */
int main(void) {
    long x, m, s;
    while (scanf("%ld %ld %ld", &x, &m, &s) == 3) {
        const int e = s < 0 ? (int)-s : 0;
        printf("%ld %ld %ld %ld\n", (long)ts_srdhm((int32_t)x, (int32_t)m), (long)ts_rdbpot((int32_t)x, e),
               (long)ts_mbqm((int32_t)x, (int32_t)m, (int)s),
               m >= 0 ? (long)ts_mbqm_nonneg((int32_t)x, (int32_t)m, (int)s) : 0L);
    }
    return 0;
}
"""


def _wrap(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def tflite_srdhm(a: int, b: int) -> int:
    """gemmlowp::SaturatingRoundingDoublingHighMul, literally."""
    overflow = a == b and a == I32_MIN
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    q = _trunc_div(ab_64 + nudge, 1 << 31)  # C++ integer division truncates toward zero
    return I32_MAX if overflow else q


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


def tflite_mbqm(x: int, m: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    v = tflite_srdhm(_wrap(x * (1 << left)), m)
    mask = (1 << right) - 1
    remainder = v & mask
    threshold = (mask >> 1) + (1 if v < 0 else 0)
    return (v >> right) + (1 if remainder > threshold else 0)


@pytest.fixture(scope="module")
def requant_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler on PATH (gcc or cc); install gcc")
    d = tmp_path_factory.mktemp("requant")
    (d / "main.c").write_text(_MAIN)
    exe = d / "requant"
    subprocess.run([cc, *HOST_CFLAGS, "-I", str(runtime_dir()), str(d / "main.c"), str(runtime_dir() / "ts_kernels.c"),
                    "-o", str(exe)], check=True)
    return exe


def _triples() -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(16)
    xs = [I32_MIN, I32_MIN + 1, -(1 << 30), -(1 << 30) - 1, -1, 0, 1, (1 << 30), (1 << 30) - 1, I32_MAX, 255 << 20,
          -255 << 20]
    ms = [0, 1, (1 << 30), (1 << 30) + 1, I32_MAX, 1518500250]
    shifts = [-31, -20, -7, -1, 0, 1, 2, 7, 20]
    out = [(x, m, s) for x in xs for m in ms for s in shifts]
    out += [(I32_MIN, I32_MIN, 0), (I32_MIN, I32_MIN, -3), (I32_MIN, -1, 0), (I32_MAX, I32_MIN, -1),
            (-(1 << 30), I32_MIN, 0), (1 << 28, I32_MIN, 3)]
    for _ in range(4000):
        x = int(rng.integers(I32_MIN, I32_MAX, endpoint=True)) >> int(rng.integers(0, 31))
        m = int(rng.integers(0, I32_MAX, endpoint=True))
        s = int(rng.integers(-31, 12))
        out.append((x, m, s))
    for _ in range(500):  # any sign, for the general srdhm / mbqm
        out.append((int(rng.integers(I32_MIN, I32_MAX, endpoint=True)), int(rng.integers(I32_MIN, I32_MAX, endpoint=True)),
                    int(rng.integers(-31, 1))))
    return out


def test_python_model_matches_tflite_literal() -> None:
    """The lowering's Python srdhm / rdbpot / mbqm (used for the ADD tables) are TFLite's arithmetic."""
    for x, m, s in _triples():
        assert srdhm(x, m) == tflite_srdhm(x, m), (x, m)
        assert mbqm(x, m, s) == tflite_mbqm(x, m, s), (x, m, s)
        if s <= 0:
            mask = (1 << -s) - 1
            assert rdbpot(x, -s) == (x >> -s) + (1 if (x & mask) > (mask >> 1) + (x < 0) else 0)


def test_c_requantization_bit_exact(requant_bin: Path) -> None:
    triples = _triples()
    text = "".join(f"{x} {m} {s}\n" for x, m, s in triples)
    got = subprocess.run([str(requant_bin)], input=text, capture_output=True, text=True, check=True).stdout.split("\n")
    for (x, m, s), line in zip(triples, got):
        c_srdhm, c_rdbpot, c_mbqm, c_nonneg = (int(v) for v in line.split())
        assert c_srdhm == tflite_srdhm(x, m), ("srdhm", x, m)
        e = -s if s < 0 else 0
        mask = (1 << e) - 1
        assert c_rdbpot == (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0), ("rdbpot", x, e)
        assert c_mbqm == tflite_mbqm(x, m, s), ("mbqm", x, m, s)
        if m >= 0:
            assert c_nonneg == tflite_mbqm(x, m, s), ("mbqm_nonneg", x, m, s)
    assert len([ln for ln in got if ln]) == len(triples)


def test_corner_multipliers() -> None:
    """The corners the per-op suite covers come out of the lowering as expected."""
    assert quantize_multiplier(2.0 ** -40) == (0, 0)
    assert quantize_multiplier(0.71)[1] == 0
    assert quantize_multiplier(5.3)[1] > 0
    assert tflite_srdhm(I32_MIN, I32_MIN) == I32_MAX


def test_add_tables_are_tflite_terms() -> None:
    m, s = quantize_multiplier(0.37)
    lut = add_lut(-(-17), m, s)
    for v in range(-128, 128):
        assert int(lut[v + 128]) == tflite_mbqm(_wrap((v + 17) * (1 << ADD_LEFT_SHIFT)), m, s)


def _mul_model(out_scale: float) -> bytes:
    b = ModelBuilder()
    x = b.tensor((1, 2, 2, 3), "int8", 0.1, 0)
    y = b.tensor((1, 2, 2, 3), "int8", 0.2, 0, data=np.ones((1, 2, 2, 3), dtype=np.int8))
    out = b.tensor((1, 2, 2, 3), "int8", out_scale, 0)
    b.op("MUL", [x, y], [out], options("MulOptions", fusedActivationFunction=ACT["NONE"]))
    return b.build([x], [out])


def test_negative_multiplier_is_refused() -> None:
    render_model(_mul_model(0.05), "m")
    with pytest.raises(UnsupportedModelError, match="multiplier is negative"):
        render_model(_mul_model(-0.05), "m")


def test_pad_folded_into_convolution() -> None:
    from opcases import corner_cases

    folds = [c for c in corner_cases(20261123 + 16) if c.name.startswith("padfold_")]
    assert folds
    for case in folds:
        r = render_model(case.tflite, "m")
        kernels = [c.kernel for c in r.lowered.calls]
        assert "ts_pad_s8" not in kernels and len(kernels) == 1, (case.name, kernels)
        assert r.lowered.calls[0].inputs[0] == r.lowered.input


def _smmlar(a: int, b: int, c: int) -> int:
    """Arm SMMLAR: the high word of c * 2^32 + a * b + 2^31 (all int32; the sum is exact in 64 bits)."""
    return (((c << 32) + a * b + (1 << 31)) >> 32)


def test_range_proven_form_is_tflite_requantization() -> None:
    """The DSP kernels' range-proven form (ts_dsp_rqf_table / TS_DSP_RQF): for |acc| within 31 bits,
    r = -shift >= 1 and k = 2^(r-1) + zo * 2^r with |k| < 2^30 - 1,
    SSAT8(SMMLAR(acc << 1, m, k + (acc >> 31)) >> r) = clamp(MultiplyByQuantizedMultiplier(acc) + zo):
    every accumulator around each rounding tie (a power-of-two multiplier makes half of them exact
    ties) and random ones over the whole proven range, with each zero point's worst case."""
    rng = np.random.default_rng(16)
    ms = [1 << 30, (1 << 30) + (1 << 29), 3 << 29, I32_MAX, *(int(v) for v in rng.integers(1 << 30, 1 << 31, 4))]
    checked = 0
    for m in ms:
        for r in (1, 2, 5, 12, 21):
            for zo in (-128, -1, 0, 127):
                k = (1 << (r - 1)) + zo * (1 << r)
                assert abs(k) < (1 << 30) - 1
                near = np.arange(-300, 301, dtype=np.int64)
                accs = np.concatenate([near, near * (1 << r), near * (1 << (r + 1)) + 1,
                                       rng.integers(-(1 << 30), 1 << 30, 200), [-(1 << 30), (1 << 30) - 1]])
                accs = np.unique(np.clip(accs, -(1 << 30), (1 << 30) - 1))   # the proven range
                for acc in (int(a) for a in accs):
                    a2 = acc << 1
                    assert I32_MIN <= a2 <= I32_MAX
                    hi = _smmlar(a2, m, k + (a2 >> 31))
                    assert I32_MIN <= hi <= I32_MAX
                    got = max(-128, min(127, hi >> r))
                    want = max(-128, min(127, tflite_mbqm(acc, m, -r) + zo))
                    assert got == want, (acc, m, r, zo)
                    checked += 1
    assert checked > 100_000
