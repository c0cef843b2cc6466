/* SPDX-License-Identifier: Apache-2.0
 *
 * tinysplit int8 kernel library (see ts_kernels.h). Portable C99, no libc calls, no heap.
 * Integer semantics follow TFLite / TFLite Micro reference kernels so results are bit-exact:
 *   - MultiplyByQuantizedMultiplier with double rounding (the default TFLM build),
 *   - ADD: inputs scaled up by 2^left_shift, each requantized, summed, requantized again,
 *   - AVERAGE_POOL / plain MEAN: integer division rounding half away from zero / truncating,
 *   - SOFTMAX / LOGISTIC: gemmlowp fixed-point exp, reciprocal and logistic.
 */
#include "ts_kernels.h"

#if defined(__GNUC__) || defined(__clang__)
#define TS_INLINE static __inline__ __attribute__((always_inline))
#else
#define TS_INLINE static
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TS_RESTRICT __restrict__
#else
#define TS_RESTRICT
#endif

#define TS_INT32_MIN (-2147483647 - 1)
#define TS_INT32_MAX 2147483647

TS_INLINE int32_t ts_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* SaturatingRoundingDoublingHighMul without a 64-bit division: TFLite computes
 * (ab + nudge) / 2^31 truncating toward zero with nudge = 2^30 (ab >= 0) or 1 - 2^30 (ab < 0);
 * for ab < 0, trunc((ab + 1 - 2^30) / 2^31) = floor((ab + 1 - 2^30 + 2^31 - 1) / 2^31), so both
 * cases are floor((ab + 2^30) / 2^31): one 32x32->64 multiply, an add and an arithmetic shift. */
TS_INLINE int32_t ts_srdhm_i(int32_t a, int32_t b) {
    if (a == b && a == TS_INT32_MIN) {
        return TS_INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT, branch-free; exponent in [0, 31] */
TS_INLINE int32_t ts_rdbpot_i(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)x >> 31);
    return (x >> exponent) + ((x & mask) > threshold ? 1 : 0);
}

int32_t ts_srdhm(int32_t a, int32_t b) {
    return ts_srdhm_i(a, b);
}

int32_t ts_rdbpot(int32_t x, int exponent) { /* any exponent >= 0 (SOFTMAX's may exceed 31) */
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier for any multiplier (LOGISTIC's may be INT32_MIN) */
TS_INLINE int32_t ts_mbqm_any(int32_t x, int32_t multiplier, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return ts_rdbpot_i(ts_srdhm_i((int32_t)((uint32_t)x << left), multiplier), right);
}

/* MultiplyByQuantizedMultiplier for multiplier >= 0 (the lowering guarantees it): the product
 * a * multiplier can never be INT32_MIN * INT32_MIN, so no saturation test is needed. */
TS_INLINE int32_t ts_mbqm_i(int32_t x, int32_t multiplier, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t v = (int32_t)(((int64_t)(int32_t)((uint32_t)x << left) * (int64_t)multiplier
                                 + ((int64_t)1 << 30)) >> 31);
    return ts_rdbpot_i(v, right);
}

int32_t ts_mbqm(int32_t x, int32_t multiplier, int shift) {
    return ts_mbqm_any(x, multiplier, shift);
}

int32_t ts_mbqm_nonneg(int32_t x, int32_t multiplier, int shift) {
    return ts_mbqm_i(x, multiplier, shift);
}

/* ------------------------------------------------------------------ convolutions */

/* requantize an accumulator (bias included) to int8: parameters passed as values, so the compiler
 * keeps them in registers across the int8 stores (which may alias anything) */
TS_INLINE int8_t ts_out8(int32_t acc, int32_t m, int32_t s, int32_t zo, int32_t lo, int32_t hi) {
    return (int8_t)ts_clamp(ts_mbqm_i(acc, m, s) + zo, lo, hi);
}

TS_INLINE int32_t ts_dot_s8(const int8_t *a, const int8_t *b, int32_t n) {
    int32_t s = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        s += (int32_t)a[i] * (int32_t)b[i];
    }
    return s;
}

/* ============================================ DSP kernel set (TS_KERNELS == TS_KERNELS_DSP, issue 16)
 * Cortex-M4/M7/M33/M55 scalar DSP extension through ACLE: helpers and inner loops; add below. The
 * kernels further down take these where `#if TS_KERNELS == TS_KERNELS_DSP` says so. */
#if TS_KERNELS == TS_KERNELS_DSP
#include <arm_acle.h>

/* a 32-bit load from any address (Armv7E-M / Armv8-M Mainline load words unaligned) */
typedef int32_t ts_dsp_w32 __attribute__((aligned(1), may_alias));
TS_INLINE int32_t ts_dsp_ld32(const int8_t *p) {
    return *(const ts_dsp_w32 *)p;
}

/* SXTB16 with ROR #8: bytes 1 and 3 sign-extended to two int16 (ACLE has no __ror to fold) */
TS_INLINE int32_t ts_dsp_sxtb16_r8(int32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* MultiplyByQuantizedMultiplier (double rounding, multiplier m >= 0) in one 64-bit step. With
 * v = floor((acc * m + 2^30) / 2^31) (SaturatingRoundingDoublingHighMul for m >= 0) and r = -shift
 * >= 1, RoundingDivideByPOT(v, r) = floor((v + 2^(r-1) - [v < 0]) / 2^r) = floor((acc * m + 2^30
 * + (2^(r-1) - [v < 0]) * 2^31) / 2^(31+r)) (floors compose). [v < 0] may be taken as [acc < 0]:
 * they differ only when v = 0, and then both give 0. The quotient is the high word shifted right
 * by r - 1. Per channel: k = 2^30 + 2^(30+r) as two words and r - 1 (ts_dsp_rq_prep); per value
 * SMLAL, the sign correction (AND, SUBS, SBC) and one shift. shift >= 0 (no division) goes the
 * plain way: ((acc << shift) * m + 2^30) >> 31. */
typedef struct {
    int32_t m, khi, klo, rs;
} ts_dsp_rq_t;

TS_INLINE ts_dsp_rq_t ts_dsp_rq_prep(int32_t m, int32_t shift) {
    ts_dsp_rq_t q;
    const int32_t r = -shift;
    q.m = m;
    q.khi = r >= 2 ? (int32_t)(1u << (r - 2)) : 0;
    q.klo = r >= 2 ? (int32_t)0x40000000 : (int32_t)0xC0000000u;
    q.rs = r - 1;
    return q;
}

TS_INLINE int32_t ts_dsp_rq_neg(int32_t acc, const ts_dsp_rq_t *q) {  /* shift < 0 */
    int32_t lo = q->klo, hi = q->khi, t;
    __asm__("smlal %[lo], %[hi], %[acc], %[m]\n\t"
            "and %[t], %[acc], #0x80000000\n\t"
            "subs %[lo], %[lo], %[t]\n\t"
            "sbc %[hi], %[hi], #0"
            : [lo] "+&r"(lo), [hi] "+&r"(hi), [t] "=&r"(t)
            : [acc] "r"(acc), [m] "r"(q->m)
            : "cc");
    return hi >> q->rs;
}

TS_INLINE int32_t ts_dsp_rq_pos(int32_t acc, int32_t m, int32_t shift) {  /* shift >= 0 */
    const int32_t x = (int32_t)((uint32_t)acc << shift);
    return (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
}

/* requantize the accumulators a[0], a[step] (two pixels, one channel) into o0[c], o1[c] (o1 may be
 * null) */
TS_INLINE void ts_dsp_out2(int32_t a0, int32_t a1, int32_t m, int32_t shift, int8_t *o0, int8_t *o1,
                           int32_t zo, int32_t lo, int32_t hi) {
    int32_t y0, y1;
    if (shift < 0) {
        const ts_dsp_rq_t q = ts_dsp_rq_prep(m, shift);
        y0 = ts_dsp_rq_neg(a0, &q);
        y1 = ts_dsp_rq_neg(a1, &q);
    } else {
        y0 = ts_dsp_rq_pos(a0, m, shift);
        y1 = ts_dsp_rq_pos(a1, m, shift);
    }
    *o0 = (int8_t)ts_clamp(y0 + zo, lo, hi);
    if (o1) {
        *o1 = (int8_t)ts_clamp(y1 + zo, lo, hi);
    }
}

TS_INLINE int8_t ts_dsp_out8(int32_t acc, int32_t m, int32_t shift, int32_t zo, int32_t lo, int32_t hi) {
    int32_t y;
    if (shift < 0) {
        const ts_dsp_rq_t q = ts_dsp_rq_prep(m, shift);
        y = ts_dsp_rq_neg(acc, &q);
    } else {
        y = ts_dsp_rq_pos(acc, m, shift);
    }
    return (int8_t)ts_clamp(y + zo, lo, hi);
}

/* every kernel below requantizes with the DSP form (the same integers, fewer instructions) */
#define ts_out8 ts_dsp_out8

/* rows of at most this many bytes are widened to int16 once (on the stack, 4 bytes per byte for
 * two rows) and multiplied from there */
#define TS_DSP_KMAX 256

/* n4 groups of four bytes of rows x0 and x1 as int16 pairs, per group: SXTB16(x0) (bytes 0, 2),
 * SXTB16(x0 ror 8) (bytes 1, 3), the same for x1: the order SMLAD pairs them with the weights
 * widened the same way, so no repacking is needed (the pairs' order matches on both sides) */
TS_INLINE void ts_dsp_widen2(const int8_t *x0, const int8_t *x1, int32_t n4, int32_t *dst) {
    int32_t *const end = dst + 4 * n4;
    while (dst != end) {
        const int32_t a = ts_dsp_ld32(x0), b = ts_dsp_ld32(x1);
        x0 += 4;
        x1 += 4;
        dst[0] = __sxtb16(a);
        dst[1] = ts_dsp_sxtb16_r8(a);
        dst[2] = __sxtb16(b);
        dst[3] = ts_dsp_sxtb16_r8(b);
        dst += 4;
    }
}

/* a[0..3] += x0.w0, x0.w1, x1.w0, x1.w1 over n4 >= 1 groups of four: the widened inputs in two
 * LDRD, one word of each weight row widened with two SXTB16, eight SMLAD (16 MACs in 18
 * instructions). Written as one asm loop: GCC keeps fewer values in registers and spills. */
TS_INLINE void ts_dsp_mac2x2(const int32_t *xw, int32_t n4, const int8_t *w0, const int8_t *w1, int32_t a[4]) {
    int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
    const int32_t *const end = xw + 4 * n4;
    int32_t x0e, x0o, x1e, x1o, f, fo;
    __asm__ volatile(
        "1:\n\t"
        "ldrd %[x0e], %[x0o], [%[xw]], #8\n\t"
        "ldrd %[x1e], %[x1o], [%[xw]], #8\n\t"
        "ldr %[f], [%[w0]], #4\n\t"
        "sxtb16 %[fo], %[f], ror #8\n\t"
        "sxtb16 %[f], %[f]\n\t"
        "smlad %[a00], %[x0e], %[f], %[a00]\n\t"
        "smlad %[a10], %[x1e], %[f], %[a10]\n\t"
        "smlad %[a00], %[x0o], %[fo], %[a00]\n\t"
        "smlad %[a10], %[x1o], %[fo], %[a10]\n\t"
        "ldr %[f], [%[w1]], #4\n\t"
        "sxtb16 %[fo], %[f], ror #8\n\t"
        "sxtb16 %[f], %[f]\n\t"
        "smlad %[a01], %[x0e], %[f], %[a01]\n\t"
        "smlad %[a11], %[x1e], %[f], %[a11]\n\t"
        "smlad %[a01], %[x0o], %[fo], %[a01]\n\t"
        "smlad %[a11], %[x1o], %[fo], %[a11]\n\t"
        "cmp %[xw], %[end]\n\t"
        "bne 1b"
        : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [xw] "+r"(xw), [w0] "+r"(w0),
          [w1] "+r"(w1), [x0e] "=&r"(x0e), [x0o] "=&r"(x0o), [x1e] "=&r"(x1e), [x1o] "=&r"(x1o), [f] "=&r"(f),
          [fo] "=&r"(fo)
        : [end] "r"(end)
        : "cc", "memory");
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* y = requant(acc) for shift < 0 with the channel's k = (khi, klo) and rs = -shift - 1 in registers */
TS_INLINE int32_t ts_dsp_rq_k(int32_t acc, int32_t m, int32_t khi, int32_t klo, int32_t rs) {
    int32_t lo = klo, hi = khi, t;
    __asm__("smlal %[lo], %[hi], %[acc], %[m]\n\t"
            "and %[t], %[acc], #0x80000000\n\t"
            "subs %[lo], %[lo], %[t]\n\t"
            "sbc %[hi], %[hi], #0"
            : [lo] "+&r"(lo), [hi] "+&r"(hi), [t] "=&r"(t)
            : [acc] "r"(acc), [m] "r"(m)
            : "cc");
    return hi >> rs;
}

/* requantize n channels of two pixels (acc: (pixel 0, pixel 1) per channel) into o0, o1; full: the
 * activation range is all of int8 (one SSAT clamps) */
TS_INLINE void ts_dsp_requant2_body(const int32_t *acc, const int32_t *mult, const int32_t *shift, int32_t n,
                                    int8_t *o0, int8_t *o1, int32_t zo, int32_t lo, int32_t hi, int full) {
    const int32_t *const end = mult + n;
    while (mult != end) {
        const int32_t m = *mult++, s = *shift++, a0 = acc[0], a1 = acc[1];
        int32_t y0, y1;
        acc += 2;
        if (s < 0) {
            /* r - 1 = ~s; k = 2^30 + 2^(31 + r - 1): hi word 2^(r-2) (0 for r = 1), lo word 2^30 plus
             * 2^31 for r = 1 (a register shift by 32 or more gives 0) */
            int32_t rs = ~s, lo0, hi0, lo1, hi1, t;
            __asm__("lsl %[hi0], %[one], %[rs]\n\t"
                    "lsr %[hi0], %[hi0], #1\n\t"
                    "lsl %[lo0], %[c31], %[rs]\n\t"
                    "add %[lo0], %[lo0], #0x40000000\n\t"
                    "mov %[lo1], %[lo0]\n\t"
                    "mov %[hi1], %[hi0]\n\t"
                    "smlal %[lo0], %[hi0], %[a0], %[m]\n\t"
                    "smlal %[lo1], %[hi1], %[a1], %[m]\n\t"
                    "and %[t], %[a0], #0x80000000\n\t"
                    "subs %[lo0], %[lo0], %[t]\n\t"
                    "sbc %[hi0], %[hi0], #0\n\t"
                    "and %[t], %[a1], #0x80000000\n\t"
                    "subs %[lo1], %[lo1], %[t]\n\t"
                    "sbc %[hi1], %[hi1], #0\n\t"
                    "asr %[hi0], %[hi0], %[rs]\n\t"
                    "asr %[hi1], %[hi1], %[rs]"
                    : [lo0] "=&r"(lo0), [hi0] "=&r"(hi0), [lo1] "=&r"(lo1), [hi1] "=&r"(hi1), [t] "=&r"(t)
                    : [a0] "r"(a0), [a1] "r"(a1), [m] "r"(m), [rs] "r"(rs), [one] "r"(1),
                      [c31] "r"((int32_t)0x80000000u)
                    : "cc");
            y0 = hi0;
            y1 = hi1;
        } else {
            y0 = ts_dsp_rq_pos(a0, m, s);
            y1 = ts_dsp_rq_pos(a1, m, s);
        }
        y0 += zo;
        y1 += zo;
        if (full) {
            y0 = __ssat(y0, 8);
            y1 = __ssat(y1, 8);
        } else {
            y0 = ts_clamp(y0, lo, hi);
            y1 = ts_clamp(y1, lo, hi);
        }
        *o0++ = (int8_t)y0;
        *o1++ = (int8_t)y1;
    }
}

__attribute__((noinline))
static void ts_dsp_requant2(const int32_t *acc, const int32_t *mult, const int32_t *shift, int32_t n,
                            int8_t *o0, int8_t *o1, const int32_t *zlh) {
    if (zlh[1] == -128 && zlh[2] == 127) {
        ts_dsp_requant2_body(acc, mult, shift, n, o0, o1, zlh[0], -128, 127, 1);
    } else {
        ts_dsp_requant2_body(acc, mult, shift, n, o0, o1, zlh[0], zlh[1], zlh[2], 0);
    }
}

/* per-channel constants of a layer whose shifts are all negative (the usual case), prepared once
 * per kernel call: m, k = 2^30 + 2^(30+r) as (khi, klo), rs = r - 1 */
#define TS_DSP_TAB 96

static int ts_dsp_rq_table(const int32_t *mult, const int32_t *shift, int32_t n, ts_dsp_rq_t *tab) {
    int32_t c;
    if (n > TS_DSP_TAB) {
        return 0;
    }
    for (c = 0; c < n; ++c) {
        if (shift[c] >= 0) {
            return 0;
        }
        tab[c] = ts_dsp_rq_prep(mult[c], shift[c]);
    }
    return 1;
}

/* ts_dsp_requant2 with prepared constants */
__attribute__((noinline))
static void ts_dsp_requant2_tab(const int32_t *acc, const ts_dsp_rq_t *q, int32_t n, int8_t *o0, int8_t *o1,
                                const int32_t *zlh) {
    const ts_dsp_rq_t *const end = q + n;
    const int32_t zo = zlh[0], lo = zlh[1], hi = zlh[2];
    if (lo == -128 && hi == 127) {
        for (; q != end; ++q, acc += 2) {
            const int32_t y0 = ts_dsp_rq_neg(acc[0], q) + zo, y1 = ts_dsp_rq_neg(acc[1], q) + zo;
            *o0++ = (int8_t)__ssat(y0, 8);
            *o1++ = (int8_t)__ssat(y1, 8);
        }
    } else {
        for (; q != end; ++q, acc += 2) {
            const int32_t y0 = ts_dsp_rq_neg(acc[0], q) + zo, y1 = ts_dsp_rq_neg(acc[1], q) + zo;
            *o0++ = (int8_t)ts_clamp(y0, lo, hi);
            *o1++ = (int8_t)ts_clamp(y1, lo, hi);
        }
    }
}

/* Depthwise convolution, depth multiplier 1, at most 9 taps and TS_DSP_DWC channels: the weights
 * widened once per call into (SXTB16, SXTB16 ROR 8) pairs in the order the loop reads them (per
 * group of four channels, per tap), the requantization constants prepared once; per output pixel
 * one input pointer per tap (a zero-point row for a tap outside the input: w * zp cancels the tap's
 * share of zbias, as in the portable kernel), then per four channels: per tap one input word
 * widened, four SMLABB / SMLATT with the prepared weights. Returns 0 (nothing done) for shapes it
 * does not take. */
#define TS_DSP_DWC 96

static int ts_dsp_dwconv_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                            const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out) {
    int32_t wv[TS_DSP_DWC / 4 * 9 * 2] TS_ALIGN(8);
    ts_dsp_rq_t tab[TS_DSP_DWC];
    int8_t zrow[TS_DSP_DWC + 4] TS_ALIGN(4);
    const int8_t *cur[9];
    const int32_t out_c = p->out_c, in_c = p->in_c, k_h = p->k_h, k_w = p->k_w, taps = k_h * k_w;
    const int32_t in_h = p->in_h, in_w = p->in_w, dil_h = p->dil_h, dil_w = p->dil_w;
    const int32_t stride_h = p->stride_h, stride_w = p->stride_w, pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t groups = out_c >> 2, full = lo == -128 && hi == 127;
    int32_t oy, ox, ky, kx, g, t, c;
    if (p->depth_mult != 1 || taps > 9 || out_c > TS_DSP_DWC || !ts_dsp_rq_table(mult, shift, out_c, tab)) {
        return 0;
    }
    for (g = 0; g < groups; ++g) {
        for (t = 0; t < taps; ++t) {
            const int32_t f = ts_dsp_ld32(filter + t * out_c + 4 * g);
            wv[(g * taps + t) * 2] = __sxtb16(f);
            wv[(g * taps + t) * 2 + 1] = ts_dsp_sxtb16_r8(f);
        }
    }
    for (c = 0; c < out_c + 4; ++c) {
        zrow[c] = (int8_t)(-p->in_offset);
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * stride_h - pad_h;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * stride_w - pad_w;
            int8_t *o = out + (oy * p->out_w + ox) * out_c;
            const int32_t *wp = wv;
            t = 0;
            for (ky = 0; ky < k_h; ++ky) {
                const int32_t iy = iy0 + ky * dil_h;
                for (kx = 0; kx < k_w; ++kx, ++t) {
                    const int32_t ix = ix0 + kx * dil_w;
                    cur[t] = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w ? in + (iy * in_w + ix) * in_c : zrow;
                }
            }
            for (c = 0; c < 4 * groups; c += 4) {
                int32_t a0 = zbias[c], a1 = zbias[c + 1], a2 = zbias[c + 2], a3 = zbias[c + 3];
                int32_t y0, y1, y2, y3;
                if (taps == 9) {   /* 3x3: the tap loop unrolled */
                    int32_t k;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 9
#endif
                    for (k = 0; k < 9; ++k) {
                        const int32_t x = ts_dsp_ld32(cur[k] + c);
                        const int32_t xe = __sxtb16(x), xo = ts_dsp_sxtb16_r8(x), fe = wp[2 * k], fo = wp[2 * k + 1];
                        a0 = __smlabb(xe, fe, a0);
                        a2 = __smlatt(xe, fe, a2);
                        a1 = __smlabb(xo, fo, a1);
                        a3 = __smlatt(xo, fo, a3);
                    }
                    wp += 18;
                } else {
                    const int8_t *const *xs = cur;
                    const int8_t *const *const xend = cur + taps;
                    for (; xs != xend; ++xs, wp += 2) {
                        const int32_t x = ts_dsp_ld32(*xs + c);
                        const int32_t xe = __sxtb16(x), xo = ts_dsp_sxtb16_r8(x), fe = wp[0], fo = wp[1];
                        a0 = __smlabb(xe, fe, a0);
                        a2 = __smlatt(xe, fe, a2);
                        a1 = __smlabb(xo, fo, a1);
                        a3 = __smlatt(xo, fo, a3);
                    }
                }
                y0 = ts_dsp_rq_neg(a0, &tab[c]) + zo;
                y1 = ts_dsp_rq_neg(a1, &tab[c + 1]) + zo;
                y2 = ts_dsp_rq_neg(a2, &tab[c + 2]) + zo;
                y3 = ts_dsp_rq_neg(a3, &tab[c + 3]) + zo;
                if (full) {
                    y0 = __ssat(y0, 8);
                    y1 = __ssat(y1, 8);
                    y2 = __ssat(y2, 8);
                    y3 = __ssat(y3, 8);
                } else {
                    y0 = ts_clamp(y0, lo, hi);
                    y1 = ts_clamp(y1, lo, hi);
                    y2 = ts_clamp(y2, lo, hi);
                    y3 = ts_clamp(y3, lo, hi);
                }
                o[c] = (int8_t)y0;
                o[c + 1] = (int8_t)y1;
                o[c + 2] = (int8_t)y2;
                o[c + 3] = (int8_t)y3;
            }
            for (; c < out_c; ++c) {
                int32_t acc = zbias[c];
                for (t = 0; t < taps; ++t) {
                    acc += filter[t * out_c + c] * cur[t][c];
                }
                o[c] = (int8_t)ts_clamp(ts_dsp_rq_neg(acc, &tab[c]) + zo, lo, hi);
            }
        }
    }
    return 1;
}

/* The register operands of the pair kernels' asm blocks (their locals of the same names; w is the
 * first weight row, advanced) */
#define TS_DSP_PAIR_REGS \
    [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [x] "=&r"(x), [w0] "+&r"(w), \
    [w1] "=&r"(w1), [x0e] "=&r"(x0e), [x0o] "=&r"(x0o), [x1e] "=&r"(x1e), [x1o] "=&r"(x1o), [f] "=&r"(f), \
    [fo] "=&r"(fo)

/* The start of one channel pair in the pair kernels below: the accumulators from zbias (advancing
 * it), the second weight row n bytes after the first, the widened inputs from their start. */
#define TS_DSP_PAIR_START \
    "ldr %[x0e], %[zb]\n\t" \
    "ldrd %[a00], %[a01], [%[x0e]], #8\n\t" \
    "str %[x0e], %[zb]\n\t" \
    "mov %[a10], %[a00]\n\t" \
    "mov %[a11], %[a01]\n\t" \
    "ldr %[x0e], %[n]\n\t" \
    "add %[w1], %[w0], %[x0e]\n\t" \
    "ldr %[x], %[xw]\n\t"

/* The inner loop the pair kernels below share: 4 input bytes of 2 pixels (widened, even/odd halves)
 * against 4 weight bytes of 2 channels, 8 SMLADs, until x reaches xend. */
#define TS_DSP_PAIR_INNER_LOOP \
    "2:\n\t" \
    "ldrd %[x0e], %[x0o], [%[x]], #8\n\t" \
    "ldrd %[x1e], %[x1o], [%[x]], #8\n\t" \
    "ldr %[f], [%[w0]], #4\n\t" \
    "sxtb16 %[fo], %[f], ror #8\n\t" \
    "sxtb16 %[f], %[f]\n\t" \
    "smlad %[a00], %[x0e], %[f], %[a00]\n\t" \
    "smlad %[a10], %[x1e], %[f], %[a10]\n\t" \
    "smlad %[a00], %[x0o], %[fo], %[a00]\n\t" \
    "smlad %[a10], %[x1o], %[fo], %[a10]\n\t" \
    "ldr %[f], [%[w1]], #4\n\t" \
    "sxtb16 %[fo], %[f], ror #8\n\t" \
    "sxtb16 %[f], %[f]\n\t" \
    "smlad %[a01], %[x0e], %[f], %[a01]\n\t" \
    "smlad %[a11], %[x1e], %[f], %[a11]\n\t" \
    "smlad %[a01], %[x0o], %[fo], %[a01]\n\t" \
    "smlad %[a11], %[x1o], %[fo], %[a11]\n\t" \
    "cmp %[x], %[xend]\n\t" \
    "bne 2b\n\t"

/* acc[4j..4j+3] = zbias + the 2x2 products of channel pair j (channels 2j, 2j + 1 of rows w, each
 * n = 4 * n4 bytes, consecutive) for pairs = (aend - acc) / 4 >= 1, in the order ts_dsp_requant2
 * reads them (channel 2j: pixel 0, pixel 1; channel 2j + 1: pixel 0, pixel 1). The whole loop is one
 * asm block: the loop state lives in memory operands outside the inner loop, which needs 13
 * registers (GCC's own version of the outer loop spilled more). */
TS_INLINE void ts_dsp_pairs(const int32_t *xw, int32_t n4, const int8_t *w, int32_t n, const int32_t *zb,
                            int32_t *acc, int32_t *aend) {
    const int32_t *const xend = xw + 4 * n4;
    const int8_t *w1;
    int32_t a00, a01, a10, a11, x0e, x0o, x1e, x1o, f, fo;
    const int32_t *x;
    __asm__ volatile(
        "1:\n\t"
        TS_DSP_PAIR_START
        TS_DSP_PAIR_INNER_LOOP
        "ldr %[x0e], %[acc]\n\t"
        "strd %[a00], %[a10], [%[x0e]], #8\n\t"
        "strd %[a01], %[a11], [%[x0e]], #8\n\t"
        "str %[x0e], %[acc]\n\t"
        "mov %[w0], %[w1]\n\t"
        "ldr %[f], %[aend]\n\t"
        "cmp %[x0e], %[f]\n\t"
        "bne 1b"
        : TS_DSP_PAIR_REGS, [zb] "+m"(zb), [acc] "+m"(acc)
        : [xend] "r"(xend), [n] "m"(n), [xw] "m"(xw), [aend] "m"(aend)
        : "cc", "memory");
}

/* ts_dsp_pairs for rows of n bytes, n not a multiple of 4: n4 groups of 4 read, the widened inputs
 * zero past n, so the weight bytes read past a row (the next row's; never past the filter: the
 * caller keeps the last row out) add 0; each pair's rows start 2n after the previous pair's. */
TS_INLINE void ts_dsp_pairs_tail(const int32_t *xw, int32_t n4, const int8_t *w, int32_t n, const int32_t *zb,
                            int32_t *acc, int32_t *aend) {
    const int32_t *const xend = xw + 4 * n4;
    const int8_t *w1, *wsave = w;
    int32_t a00, a01, a10, a11, x0e, x0o, x1e, x1o, f, fo;
    const int32_t *x;
    __asm__ volatile(
        "1:\n\t"
        "str %[w0], %[wsave]\n\t"
        TS_DSP_PAIR_START
        TS_DSP_PAIR_INNER_LOOP
        "ldr %[x0e], %[acc]\n\t"
        "strd %[a00], %[a10], [%[x0e]], #8\n\t"
        "strd %[a01], %[a11], [%[x0e]], #8\n\t"
        "str %[x0e], %[acc]\n\t"
        "ldr %[w0], %[wsave]\n\t"
        "ldr %[f], %[n]\n\t"
        "add %[w0], %[w0], %[f], lsl #1\n\t"
        "ldr %[f], %[aend]\n\t"
        "cmp %[x0e], %[f]\n\t"
        "bne 1b"
        : TS_DSP_PAIR_REGS, [zb] "+m"(zb), [acc] "+m"(acc), [wsave] "+m"(wsave)
        : [xend] "r"(xend), [n] "m"(n), [xw] "m"(xw), [aend] "m"(aend)
        : "cc", "memory");
}

/* Range-proven requantization (issue 16: per-layer specialisation). The generator proves, from a
 * layer's weights and biases, that every accumulator lies in [-2^30, 2^30) (p->acc_bits <= 31: zbias
 * plus the largest and the smallest sums of weight x int8 input). Then acc << 1 cannot overflow, and
 * with r = -shift >= 1 and k = 2^(r-1) + zo * 2^r:
 *   requant(acc) + zo = SMMLAR(acc << 1, m, k + (acc >> 31)) >> r
 * SMMLAR(a, m, c) = floor((c * 2^32 + a * m + 2^31) / 2^32), so with a = 2 acc the high word is
 * floor((acc * m + 2^30 + (2^(r-1) - [acc < 0]) * 2^31 + zo * 2^(31+r)) / 2^31), and the floor by
 * 2^r composes into floor((acc * m + 2^30 + (2^(r-1) - [acc < 0]) * 2^31) / 2^(31+r)) + zo: the
 * double rounding ts_dsp_rq_neg computes (derived there), the zero point added. Per value LSL,
 * ADD, SMMLAR, ASR, SSAT; per channel (m, k, r) from a table prepared once per call. Where the range
 * is not proven, a shift is >= 0, k is too large (|k| must stay below 2^30 - 1 so the high word
 * fits) or the activation is not the whole int8 range, the kernels take the exact general path. */
typedef struct {
    int32_t m, k, r;
} ts_dsp_rqf_t;

/* the table for n channels; 0 where the fast form does not apply */
static int ts_dsp_rqf_table(int32_t acc_bits, const int32_t *mult, const int32_t *shift, int32_t n, int32_t zo,
                            int32_t lo, int32_t hi, ts_dsp_rqf_t *tab) {
    int32_t c;
    if (acc_bits > 31 || n > TS_DSP_TAB || lo != -128 || hi != 127) {
        return 0;
    }
    for (c = 0; c < n; ++c) {
        const int32_t r = -shift[c];
        int64_t k;
        if (r < 1 || r > 31) {
            return 0;
        }
        k = ((int64_t)1 << (r - 1)) + (int64_t)zo * ((int64_t)1 << r);
        if (k <= -((int64_t)1 << 30) + 1 || k >= ((int64_t)1 << 30) - 1) {
            return 0;
        }
        tab[c].m = mult[c];
        tab[c].k = (int32_t)k;
        tab[c].r = r;
    }
    return 1;
}

/* the range-proven requantization of one value (y = 8-bit result), for the asm below */
#define TS_DSP_RQF(a, m, k, r) \
    "lsl " a ", " a ", #1\n\t" \
    "add %[f], " k ", " a ", asr #31\n\t" \
    "smmlar " a ", " a ", " m ", %[f]\n\t" \
    "asr " a ", " a ", " r "\n\t" \
    "ssat " a ", #8, " a "\n\t"

/* Channel pairs [0, pairs) of two pixels (rows x0, x1 widened into xw, n = 4 * n4 bytes), fused: the
 * accumulators start at zbias, take the 2x2 products (TS_DSP_PAIR_INNER_LOOP), are requantized in
 * registers with the range-proven form and stored, o0[c], o1[c]; nothing goes through memory in
 * between. One asm block, the loop state in memory operands (14 registers are in use). */
TS_INLINE void ts_dsp_pairs_rqf(const int32_t *xw, int32_t n4, const int8_t *w, int32_t n, const int32_t *zb,
                                const ts_dsp_rqf_t *tab, int32_t pairs, int8_t *o0, int8_t *o1) {
    const int32_t *const xend = xw + 4 * n4;
    const ts_dsp_rqf_t *const tend = tab + 2 * pairs;
    const int8_t *w1;
    int32_t a00, a01, a10, a11, x0e, x0o, x1e, x1o, f, fo;
    const int32_t *x;
    __asm__ volatile(
        "1:\n\t"
        TS_DSP_PAIR_START
        TS_DSP_PAIR_INNER_LOOP
        "mov %[w0], %[w1]\n\t"
        "ldr %[x], %[tab]\n\t"
        "ldrd %[x0e], %[x0o], [%[x]], #8\n\t"
        "ldr %[x1e], [%[x]], #4\n\t"
        TS_DSP_RQF("%[a00]", "%[x0e]", "%[x0o]", "%[x1e]")
        TS_DSP_RQF("%[a10]", "%[x0e]", "%[x0o]", "%[x1e]")
        "ldrd %[x0e], %[x0o], [%[x]], #8\n\t"
        "ldr %[x1e], [%[x]], #4\n\t"
        TS_DSP_RQF("%[a01]", "%[x0e]", "%[x0o]", "%[x1e]")
        TS_DSP_RQF("%[a11]", "%[x0e]", "%[x0o]", "%[x1e]")
        "str %[x], %[tab]\n\t"
        "ldr %[f], %[tend]\n\t"
        "cmp %[x], %[f]\n\t"
        "ldr %[x], %[o0]\n\t"
        "strb %[a00], [%[x]], #1\n\t"
        "strb %[a01], [%[x]], #1\n\t"
        "str %[x], %[o0]\n\t"
        "ldr %[x], %[o1]\n\t"
        "strb %[a10], [%[x]], #1\n\t"
        "strb %[a11], [%[x]], #1\n\t"
        "str %[x], %[o1]\n\t"
        "bne 1b"
        : TS_DSP_PAIR_REGS, [zb] "+m"(zb), [tab] "+m"(tab), [o0] "+m"(o0), [o1] "+m"(o1)
        : [xend] "r"(xend), [n] "m"(n), [xw] "m"(xw), [tend] "m"(tend)
        : "cc", "memory");
}

/* the requantization tables of one kernel call: the range-proven one where it applies (*fast: rows
 * of a multiple of 4 bytes, which the fused kernel takes), else the general one where every shift is
 * negative (*tab), else neither (both null) */
typedef union {
    ts_dsp_rq_t rq[TS_DSP_TAB];
    ts_dsp_rqf_t rqf[TS_DSP_TAB];
} ts_dsp_tabs_t;

static void ts_dsp_tables(int32_t acc_bits, int32_t row, const int32_t *mult, const int32_t *shift, int32_t n,
                          int32_t zo, int32_t lo, int32_t hi, ts_dsp_tabs_t *tabs, const ts_dsp_rq_t **tab,
                          const ts_dsp_rqf_t **fast) {
    *tab = (const ts_dsp_rq_t *)0;
    *fast = (const ts_dsp_rqf_t *)0;
    if ((row & 3) == 0 && ts_dsp_rqf_table(acc_bits, mult, shift, n, zo, lo, hi, tabs->rqf)) {
        *fast = tabs->rqf;
    } else if (ts_dsp_rq_table(mult, shift, n, tabs->rq)) {
        *tab = tabs->rq;
    }
}

/* output channels per requantization batch (accumulators on the stack) */
#define TS_DSP_OCB 32

/* ts_rows2_s8 with the DSP product: both pixels (x1 may be null: x0 twice, the copy discarded),
 * 4 <= n <= TS_DSP_KMAX; the n % 4 last bytes in scalar code. Accumulators of up to TS_DSP_OCB
 * channels are kept, then requantized in one loop. */
static void ts_dsp_rows2_s8(const int8_t *x0, const int8_t *x1, const int8_t *filter, int32_t n, int32_t out_c,
                            const int32_t *zbias, const int32_t *mult, const int32_t *shift,
                            int8_t *o0, int8_t *o1, int32_t zo, int32_t lo, int32_t hi, const ts_dsp_rq_t *tab,
                            const ts_dsp_rqf_t *fast) {
    int32_t xw[TS_DSP_KMAX] TS_ALIGN(8);
    int32_t acc[2 * TS_DSP_OCB + 2] TS_ALIGN(8);
    int8_t spare[TS_DSP_OCB];
    int32_t zlh[3];
    const int32_t n4 = n >> 2, nt = n & 3;
    const int8_t *const t0 = x0 + (n & ~3);
    const int8_t *t1;
    int32_t c0;
    zlh[0] = zo;
    zlh[1] = lo;
    zlh[2] = hi;
    if (!x1) {
        x1 = x0;
    }
    t1 = x1 + (n & ~3);
    ts_dsp_widen2(x0, x1, n4, xw);
    if (nt) {   /* the last bytes as one more group, zero past n */
        int32_t b0 = 0, b1 = 0, i;
        for (i = nt - 1; i >= 0; --i) {
            b0 = (int32_t)((uint32_t)b0 << 8 | (uint8_t)t0[i]);
            b1 = (int32_t)((uint32_t)b1 << 8 | (uint8_t)t1[i]);
        }
        xw[4 * n4] = __sxtb16(b0);
        xw[4 * n4 + 1] = ts_dsp_sxtb16_r8(b0);
        xw[4 * n4 + 2] = __sxtb16(b1);
        xw[4 * n4 + 3] = ts_dsp_sxtb16_r8(b1);
    }
    if (fast && !nt) {   /* range proven: every channel pair fused, an odd last channel alone */
        int8_t spare1[TS_DSP_TAB];   /* one pixel: the second row is the first again, its outputs dropped */
        const int32_t pairs = out_c >> 1;
        if (!o1) {
            o1 = spare1;
        }
        if (pairs > 0) {
            ts_dsp_pairs_rqf(xw, n4, filter, n, zbias, fast, pairs, o0, o1);
        }
        if (out_c & 1) {
            const int32_t c = out_c - 1;
            const int8_t *const w = filter + c * n;
            int32_t a[4];
            a[0] = a[1] = a[2] = a[3] = zbias[c];
            ts_dsp_mac2x2(xw, n4, w, w, a);
            ts_dsp_out2(a[0], a[2], mult[c], shift[c], o0 + c, o1 + c, zo, lo, hi);
        }
        return;
    }
    for (c0 = 0; c0 < out_c; c0 += TS_DSP_OCB) {
        const int32_t cn = out_c - c0 < TS_DSP_OCB ? out_c - c0 : TS_DSP_OCB;
        const int8_t *w = filter + c0 * n;
        const int32_t *zb = zbias + c0;
        int32_t *ap = acc;
        int32_t *const aend = acc + 2 * cn;
        {
            /* pairs in the asm loop; with a tail group, never the filter's last row (its read would
             * run past the filter): that pair, and an odd last channel, go through the loop below */
            int32_t pairs = cn >> 1;
            if (nt && (cn & 1) == 0 && c0 + cn == out_c) {
                --pairs;
            }
            if (pairs > 0) {
                if (nt) {
                    ts_dsp_pairs_tail(xw, n4 + 1, w, n, zb, acc, acc + 4 * pairs);
                } else {
                    ts_dsp_pairs(xw, n4, w, n, zb, acc, acc + 4 * pairs);
                }
                ap = acc + 4 * pairs;
                zb += 2 * pairs;
                w += 2 * pairs * n;
            }
        }
        while (ap < aend) {   /* channel pairs; an odd last channel is paired with itself */
            const int8_t *const w1 = ap + 2 < aend ? w + n : w;
            int32_t a[4];
            a[0] = a[2] = zb[0];
            a[1] = a[3] = ap + 2 < aend ? zb[1] : zb[0];
            ts_dsp_mac2x2(xw, n4, w, w1, a);
            if (nt) {
                int32_t i;
                for (i = 0; i < nt; ++i) {
                    const int32_t v0 = t0[i], v1 = t1[i], f0 = w[4 * n4 + i], f1 = w1[4 * n4 + i];
                    a[0] += v0 * f0;
                    a[1] += v0 * f1;
                    a[2] += v1 * f0;
                    a[3] += v1 * f1;
                }
            }
            ap[0] = a[0];
            ap[1] = a[2];
            ap[2] = a[1];   /* one past 2 * cn when cn is odd: the buffer has room */
            ap[3] = a[3];
            ap += 4;
            zb += 2;
            w += 2 * n;
        }
        if (tab) {
            ts_dsp_requant2_tab(acc, tab + c0, cn, o0 + c0, o1 ? o1 + c0 : spare, zlh);
        } else {
            ts_dsp_requant2(acc, mult + c0, shift + c0, cn, o0 + c0, o1 ? o1 + c0 : spare, zlh);
        }
    }
}
#endif


/* ============================================ MVE kernel set (TS_KERNELS == TS_KERNELS_MVE, issue 16)
 * Cortex-M55 Helium through arm_mve.h: helpers and inner loops; add below. */
#if TS_KERNELS == TS_KERNELS_MVE
#include <arm_mve.h>

/* TFLite's MultiplyByQuantizedMultiplier on four lanes, per-lane multiplier and shift:
 * x << max(shift, 0) (wrapping, as the scalar path), then VQRDMULH, which is
 * floor((2ab + 2^31) / 2^32) = floor((ab + 2^30) / 2^31) saturated: exactly
 * SaturatingRoundingDoublingHighMul (INT32_MIN * INT32_MIN -> INT32_MAX included); then
 * RoundingDivideByPOT by -min(shift, 0): VRSHL rounds half up, so a negative lane is first lowered
 * by one (saturating; INT32_MIN is a multiple of every power of two) when the shift is not 0,
 * which makes the rounding half away from zero. Then the output offset and the clamp. */
TS_INLINE int32x4_t ts_mve_requant(int32x4_t v, int32x4_t m, int32x4_t s, int32_t zo, int32x4_t lo,
                                   int32x4_t hi) {
    const int32x4_t z = vdupq_n_s32(0);
    const int32x4_t left = vmaxq_s32(s, z), nright = vminq_s32(s, z);
    v = vqrdmulhq_s32(vshlq_s32(v, left), m);
    v = vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, nright), 31));
    v = vrshlq_s32(v, nright);
    return vminq_s32(vmaxq_s32(vaddq_n_s32(v, zo), lo), hi);
}

/* the four sums x . w0, x . w1, x . w2, x . w3 over n bytes as one vector:
 * four weight rows share each 16-byte input load (VMLADAVA: 16 products summed into a scalar); the
 * last n % 16 bytes are loaded under a tail predicate (zeros beyond n, nothing read past it) */
TS_INLINE int32x4_t ts_mve_dot4_s8(const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                                   const int8_t *w3, int32_t n) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i;
    int32x4_t v;
    for (i = n >> 4; i > 0; --i) {
        const int8x16_t xv = vldrbq_s8(x);
        a0 = vmladavaq_s8(a0, xv, vldrbq_s8(w0));
        a1 = vmladavaq_s8(a1, xv, vldrbq_s8(w1));
        a2 = vmladavaq_s8(a2, xv, vldrbq_s8(w2));
        a3 = vmladavaq_s8(a3, xv, vldrbq_s8(w3));
        x += 16;
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
    }
    if (n & 15) {
        const mve_pred16_t pt = vctp8q((uint32_t)(n & 15));
        const int8x16_t xv = vldrbq_z_s8(x, pt);
        a0 = vmladavaq_s8(a0, xv, vldrbq_z_s8(w0, pt));
        a1 = vmladavaq_s8(a1, xv, vldrbq_z_s8(w1, pt));
        a2 = vmladavaq_s8(a2, xv, vldrbq_z_s8(w2, pt));
        a3 = vmladavaq_s8(a3, xv, vldrbq_z_s8(w3, pt));
    }
    v = vdupq_n_s32(a0);
    v = vsetq_lane_s32(a1, v, 1);
    v = vsetq_lane_s32(a2, v, 2);
    v = vsetq_lane_s32(a3, v, 3);
    return v;
}

/* ts_mve_row_s8's blocks of four output channels for n <= 32, the input row held in registers:
 * kind 0: n == 16; 1: n < 16 (one vector under a predicate); 2: 16 < n <= 32 (a full vector and one
 * under a predicate). Loads under a predicate read nothing beyond n. Returns the channels done. */
TS_INLINE int32_t ts_mve_row_small_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t full,
                                      const int32_t *zbias, const int32_t *mult, const int32_t *shift, int8_t *o,
                                      int32_t zo, int32x4_t vlo, int32x4_t vhi, const int kind) {
    const mve_pred16_t p = vctp8q((uint32_t)(kind == 2 ? n - 16 : n));
    const int8x16_t x0 = kind == 1 ? vldrbq_z_s8(x, p) : vldrbq_s8(x);
    const int8x16_t x1 = kind == 2 ? vldrbq_z_s8(x + 16, p) : vdupq_n_s8(0);
    int32_t oc;
    for (oc = 0; oc < full; oc += 4) {
        int32_t a0, a1, a2, a3;
        int32x4_t v;
        if (kind == 1) {
            a0 = vmladavq_s8(x0, vldrbq_z_s8(w, p));
            a1 = vmladavq_s8(x0, vldrbq_z_s8(w + n, p));
            a2 = vmladavq_s8(x0, vldrbq_z_s8(w + 2 * n, p));
            a3 = vmladavq_s8(x0, vldrbq_z_s8(w + 3 * n, p));
        } else {
            a0 = vmladavq_s8(x0, vldrbq_s8(w));
            a1 = vmladavq_s8(x0, vldrbq_s8(w + n));
            a2 = vmladavq_s8(x0, vldrbq_s8(w + 2 * n));
            a3 = vmladavq_s8(x0, vldrbq_s8(w + 3 * n));
        }
        if (kind == 2) {
            a0 = vmladavaq_s8(a0, x1, vldrbq_z_s8(w + 16, p));
            a1 = vmladavaq_s8(a1, x1, vldrbq_z_s8(w + n + 16, p));
            a2 = vmladavaq_s8(a2, x1, vldrbq_z_s8(w + 2 * n + 16, p));
            a3 = vmladavaq_s8(a3, x1, vldrbq_z_s8(w + 3 * n + 16, p));
        }
        v = vdupq_n_s32(a0);
        v = vsetq_lane_s32(a1, v, 1);
        v = vsetq_lane_s32(a2, v, 2);
        v = vsetq_lane_s32(a3, v, 3);
        v = vaddq_s32(v, vldrwq_s32(zbias + oc));
        v = ts_mve_requant(v, vldrwq_s32(mult + oc), vldrwq_s32(shift + oc), zo, vlo, vhi);
        vstrbq_s32(o + oc, v);
        w += 4 * n;
    }
    return oc;
}

/* o[oc] = requant(zbias[oc] + filter[oc] . x) for every output channel oc of one input row x (n
 * bytes), four output channels a block, requantized as one vector; the last out_c % 4 channels
 * under a lane predicate (the unused lanes repeat the last channel's weights: nothing is read past
 * the filter). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void ts_mve_row_s8(const int8_t *x, const int8_t *filter, int32_t n, int32_t out_c, const int32_t *zbias,
                          const int32_t *mult, const int32_t *shift, int8_t *o, int32_t zo, int32_t lo,
                          int32_t hi) {
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    const int32_t full = out_c & ~3;
    const int8_t *w = filter;
    int32_t oc = 0;
    if (n <= 32) {
        /* the input row held in one or two vector registers across all output channels */
        if (n == 16) {
            oc = ts_mve_row_small_s8(x, w, n, full, zbias, mult, shift, o, zo, vlo, vhi, 0);
        } else if (n < 16) {
            oc = ts_mve_row_small_s8(x, w, n, full, zbias, mult, shift, o, zo, vlo, vhi, 1);
        } else {
            oc = ts_mve_row_small_s8(x, w, n, full, zbias, mult, shift, o, zo, vlo, vhi, 2);
        }
        w += oc * n;
    }
    for (; oc < full; oc += 4) {
        int32x4_t v = vaddq_s32(ts_mve_dot4_s8(x, w, w + n, w + 2 * n, w + 3 * n, n), vldrwq_s32(zbias + oc));
        v = ts_mve_requant(v, vldrwq_s32(mult + oc), vldrwq_s32(shift + oc), zo, vlo, vhi);
        vstrbq_s32(o + oc, v);
        w += 4 * n;
    }
    if (oc < out_c) {
        const int32_t left = out_c - oc;  /* 1 to 3: the unused lanes repeat the last row */
        const mve_pred16_t pc = vctp32q((uint32_t)left);
        const int8_t *w1 = left > 1 ? w + n : w, *w2 = left > 2 ? w + 2 * n : w1;
        int32x4_t v = ts_mve_dot4_s8(x, w, w1, w2, w2, n);
        v = vaddq_s32(v, vldrwq_z_s32(zbias + oc, pc));
        v = ts_mve_requant(v, vldrwq_z_s32(mult + oc, pc), vldrwq_z_s32(shift + oc, pc), zo, vlo, vhi);
        vstrbq_p_s32(o + oc, v, pc);
    }
}

/* depthwise, depth multiplier 1: channels [0, nch) of one output pixel, o[c] = requant(zbias[c] +
 * sum over the taps t of w[t * wstep + c] * xs[t][xoff + c]). 16 channels a pass: inputs and weights
 * loaded widened to 16-bit lanes (8 channels a load), VMULLB / VMULLT multiply the even / odd lanes
 * into 32-bit products, four accumulators hold channels (0 2 4 6) (1 3 5 7) (8 10 12 14) (9 11 13 15),
 * so the bias, multipliers and shifts are gathered and the bytes scattered in that order. The rest
 * four channels at a time (widening loads to 32-bit lanes) under a lane predicate. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline, optimize("no-schedule-insns", "no-schedule-insns2")))
#endif
static void ts_mve_dw_s8(const int8_t *const *xs, int32_t taps, const int8_t *w, int32_t wstep, int32_t xoff,
                         int32_t nch, const int32_t *zbias, const int32_t *mult, const int32_t *shift, int8_t *o,
                         int32_t zo, int32_t lo, int32_t hi) {
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    const uint32x4_t ev = vidupq_n_u32(0, 2), od = vidupq_n_u32(1, 2);
    int32_t c = 0, t;
    for (; c + 15 < nch; c += 16) {
        int32x4_t e0 = vldrwq_gather_shifted_offset_s32(zbias + c, ev);
        int32x4_t o0 = vldrwq_gather_shifted_offset_s32(zbias + c, od);
        int32x4_t e1 = vldrwq_gather_shifted_offset_s32(zbias + c + 8, ev);
        int32x4_t o1 = vldrwq_gather_shifted_offset_s32(zbias + c + 8, od);
        const int8_t *wp = w + c;
        for (t = 0; t < taps; ++t, wp += wstep) {
            const int8_t *xp = xs[t] + xoff + c;
            int16x8_t xv = vldrbq_s16(xp), wv = vldrbq_s16(wp);
            e0 = vaddq_s32(e0, vmullbq_int_s16(xv, wv));
            o0 = vaddq_s32(o0, vmulltq_int_s16(xv, wv));
            xv = vldrbq_s16(xp + 8);
            wv = vldrbq_s16(wp + 8);
            e1 = vaddq_s32(e1, vmullbq_int_s16(xv, wv));
            o1 = vaddq_s32(o1, vmulltq_int_s16(xv, wv));
        }
        e0 = ts_mve_requant(e0, vldrwq_gather_shifted_offset_s32(mult + c, ev),
                            vldrwq_gather_shifted_offset_s32(shift + c, ev), zo, vlo, vhi);
        vstrbq_scatter_offset_s32(o + c, ev, e0);
        o0 = ts_mve_requant(o0, vldrwq_gather_shifted_offset_s32(mult + c, od),
                            vldrwq_gather_shifted_offset_s32(shift + c, od), zo, vlo, vhi);
        vstrbq_scatter_offset_s32(o + c, od, o0);
        e1 = ts_mve_requant(e1, vldrwq_gather_shifted_offset_s32(mult + c + 8, ev),
                            vldrwq_gather_shifted_offset_s32(shift + c + 8, ev), zo, vlo, vhi);
        vstrbq_scatter_offset_s32(o + c + 8, ev, e1);
        o1 = ts_mve_requant(o1, vldrwq_gather_shifted_offset_s32(mult + c + 8, od),
                            vldrwq_gather_shifted_offset_s32(shift + c + 8, od), zo, vlo, vhi);
        vstrbq_scatter_offset_s32(o + c + 8, od, o1);
    }
    for (; c + 7 < nch; c += 8) {
        int32x4_t e0 = vldrwq_gather_shifted_offset_s32(zbias + c, ev);
        int32x4_t o0 = vldrwq_gather_shifted_offset_s32(zbias + c, od);
        const int8_t *wp = w + c;
        for (t = 0; t < taps; ++t, wp += wstep) {
            const int16x8_t x0 = vldrbq_s16(xs[t] + xoff + c), w0 = vldrbq_s16(wp);
            e0 = vaddq_s32(e0, vmullbq_int_s16(x0, w0));
            o0 = vaddq_s32(o0, vmulltq_int_s16(x0, w0));
        }
        e0 = ts_mve_requant(e0, vldrwq_gather_shifted_offset_s32(mult + c, ev),
                            vldrwq_gather_shifted_offset_s32(shift + c, ev), zo, vlo, vhi);
        vstrbq_scatter_offset_s32(o + c, ev, e0);
        o0 = ts_mve_requant(o0, vldrwq_gather_shifted_offset_s32(mult + c, od),
                            vldrwq_gather_shifted_offset_s32(shift + c, od), zo, vlo, vhi);
        vstrbq_scatter_offset_s32(o + c, od, o0);
    }
    for (; c < nch; c += 4) {
        const mve_pred16_t p = vctp32q((uint32_t)(nch - c));
        int32x4_t a = vldrwq_z_s32(zbias + c, p);
        const int8_t *wp = w + c;
        for (t = 0; t < taps; ++t, wp += wstep) {
            a = vaddq_s32(a, vmulq_s32(vldrbq_z_s32(xs[t] + xoff + c, p), vldrbq_z_s32(wp, p)));
        }
        vstrbq_p_s32(o + c, ts_mve_requant(a, vldrwq_z_s32(mult + c, p), vldrwq_z_s32(shift + c, p), zo, vlo, vhi), p);
    }
}
#endif


/* a[0..3] += x0.w0, x0.w1, x1.w0, x1.w1 over n bytes: few live values, so every core keeps the
 * pointers and the four sums in registers (a separate function on purpose) */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void ts_mac2x2_s8(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1, int32_t n,
                         int32_t a[4]) {
    int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
    const int8_t *const end = x0 + n;
#if defined(__riscv)
    /* RISC-V has no post-increment loads: two values a step halves the pointer updates (measured:
     * 0.85x the instructions of the plain loop on RV32IMAC; on Cortex-M the plain loop is faster) */
    const int8_t *const end2 = x0 + (n & ~1);
    while (x0 != end2) {
        int32_t v0 = x0[0], v1 = x1[0], f0 = w0[0], f1 = w1[0];
        a00 += v0 * f0;
        a01 += v0 * f1;
        a10 += v1 * f0;
        a11 += v1 * f1;
        v0 = x0[1];
        v1 = x1[1];
        f0 = w0[1];
        f1 = w1[1];
        a00 += v0 * f0;
        a01 += v0 * f1;
        a10 += v1 * f0;
        a11 += v1 * f1;
        x0 += 2;
        x1 += 2;
        w0 += 2;
        w1 += 2;
    }
#endif
    while (x0 != end) {
        const int32_t v0 = *x0++, v1 = *x1++, f0 = *w0++, f1 = *w1++;
        a00 += v0 * f0;
        a01 += v0 * f1;
        a10 += v1 * f0;
        a11 += v1 * f1;
    }
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* out pixels o0 (and o1, unless x1 is null) = requant(zbias + filter . x) for every output channel:
 * a matrix product blocked 2 pixels x 2 output channels (four accumulators, each input and weight
 * byte loaded once per block); zbias holds bias + in_offset * sum(weights), so the input zero point
 * costs nothing here. Parameters arrive as values and stay in registers across the int8 stores. */
static void ts_rows2_s8(const int8_t *x0, const int8_t *x1, const int8_t *filter, int32_t n, int32_t out_c,
                        const int32_t *zbias, const int32_t *mult, const int32_t *shift,
                        int8_t *o0, int8_t *o1, int32_t zo, int32_t lo, int32_t hi) {
    int32_t oc, i;
#if TS_KERNELS == TS_KERNELS_DSP
    if (n >= 4 && n <= TS_DSP_KMAX) {
        ts_dsp_rows2_s8(x0, x1, filter, n, out_c, zbias, mult, shift, o0, o1, zo, lo, hi, (const ts_dsp_rq_t *)0,
                        (const ts_dsp_rqf_t *)0);
        return;
    }
#endif
    if (x1) {
        for (oc = 0; oc + 1 < out_c; oc += 2) {
            const int8_t *w0 = filter + oc * n;
            const int8_t *w1 = w0 + n;
            int32_t a00, a01, a10, a11;
            int32_t a[4];
            a[0] = a[2] = zbias[oc];
            a[1] = a[3] = zbias[oc + 1];
            ts_mac2x2_s8(x0, x1, w0, w1, n, a);
            a00 = a[0];
            a01 = a[1];
            a10 = a[2];
            a11 = a[3];
            {
                const int32_t m0 = mult[oc], s0 = shift[oc], m1 = mult[oc + 1], s1 = shift[oc + 1];
                a00 = ts_out8(a00, m0, s0, zo, lo, hi);
                a01 = ts_out8(a01, m1, s1, zo, lo, hi);
                a10 = ts_out8(a10, m0, s0, zo, lo, hi);
                a11 = ts_out8(a11, m1, s1, zo, lo, hi);
            }
            o0[oc] = (int8_t)a00;
            o0[oc + 1] = (int8_t)a01;
            o1[oc] = (int8_t)a10;
            o1[oc + 1] = (int8_t)a11;
        }
        if (oc < out_c) {
            const int8_t *w0 = filter + oc * n;
            const int32_t a0 = ts_dot_s8(w0, x0, n) + zbias[oc], a1 = ts_dot_s8(w0, x1, n) + zbias[oc];
            const int32_t m0 = mult[oc], s0 = shift[oc];
            const int32_t r0 = ts_out8(a0, m0, s0, zo, lo, hi), r1 = ts_out8(a1, m0, s0, zo, lo, hi);
            o0[oc] = (int8_t)r0;
            o1[oc] = (int8_t)r1;
        }
        return;
    }
    for (oc = 0; oc + 1 < out_c; oc += 2) {
        const int8_t *w0 = filter + oc * n;
        const int8_t *w1 = w0 + n;
        int32_t a0 = zbias[oc], a1 = zbias[oc + 1];
        for (i = 0; i < n; ++i) {
            const int32_t v = x0[i];
            a0 += v * w0[i];
            a1 += v * w1[i];
        }
        a0 = ts_out8(a0, mult[oc], shift[oc], zo, lo, hi);
        a1 = ts_out8(a1, mult[oc + 1], shift[oc + 1], zo, lo, hi);
        o0[oc] = (int8_t)a0;
        o0[oc + 1] = (int8_t)a1;
    }
    if (oc < out_c) {
        o0[oc] = ts_out8(ts_dot_s8(filter + oc * n, x0, n) + zbias[oc], mult[oc], shift[oc], zo, lo, hi);
    }
}

/* 1x1, stride 1, no padding: a matrix product */
static void ts_pointwise_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                            const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out) {
    const int32_t n = p->in_c, out_c = p->out_c, pixels = p->out_h * p->out_w;
    const int32_t zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t px = 0;
#if TS_KERNELS == TS_KERNELS_MVE
    for (; px < pixels; ++px) {
        ts_mve_row_s8(in + px * n, filter, n, out_c, zbias, mult, shift, out + px * out_c, zo, lo, hi);
    }
    return;
#elif TS_KERNELS == TS_KERNELS_DSP
    if (n >= 4 && n <= TS_DSP_KMAX) {  /* the product with the layer's requantization constants prepared once */
        ts_dsp_tabs_t tabs;
        const ts_dsp_rqf_t *f;
        const ts_dsp_rq_t *t;
        ts_dsp_tables(p->acc_bits, n, mult, shift, out_c, zo, lo, hi, &tabs, &t, &f);
        for (; px < pixels; px += 2) {
            const int two = px + 1 < pixels;
            ts_dsp_rows2_s8(in + px * n, two ? in + (px + 1) * n : (const int8_t *)0, filter, n, out_c, zbias, mult,
                            shift, out + px * out_c, two ? out + (px + 1) * out_c : (int8_t *)0, zo, lo, hi, t, f);
        }
        return;
    }
#endif
    for (; px + 1 < pixels; px += 2) {
        ts_rows2_s8(in + px * n, in + (px + 1) * n, filter, n, out_c, zbias, mult, shift,
                    out + px * out_c, out + (px + 1) * out_c, zo, lo, hi);
    }
    if (px < pixels) {
        ts_rows2_s8(in + px * n, (const int8_t *)0, filter, n, out_c, zbias, mult, shift, out + px * out_c,
                    (int8_t *)0, zo, lo, hi);
    }
}

/* The patch (im2col row) of output pixel (oy, ox): k_h x k_w x in_c bytes in the filter's order; a tap
 * outside the input reads the input zero point (exact with zbias: w * (zp + in_offset) = 0). */
static void ts_patch_s8(const ts_conv_params_t *p, const int8_t *in, int32_t oy, int32_t ox, int8_t *dst) {
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w, k_w = p->k_w;
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int8_t zp = (int8_t)(-p->in_offset);
    int32_t ky, kx, c;
#if TS_KERNELS == TS_KERNELS_MVE
    /* a window inside the input, taps adjacent (dilation 1): each kernel row is k_w * in_c
     * contiguous bytes, copied 16 at a time (the last ones under a predicate) */
    if (p->dil_w == 1 && ix0 >= 0 && ix0 + k_w <= in_w) {
        const int32_t len = k_w * in_c;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + ky * p->dil_h;
            if (iy >= 0 && iy < in_h) {
                const int8_t *src = in + (iy * in_w + ix0) * in_c;
                for (c = 0; c < len; c += 16) {
                    const mve_pred16_t pr = vctp8q((uint32_t)(len - c));
                    vstrbq_p_s8(dst + c, vldrbq_z_s8(src + c, pr), pr);
                }
            } else {
                for (c = 0; c < len; c += 16) {
                    vstrbq_p_s8(dst + c, vdupq_n_s8(zp), vctp8q((uint32_t)(len - c)));
                }
            }
            dst += len;
        }
        return;
    }
#endif
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (kx = 0; kx < k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
                const int8_t *src = in + (iy * in_w + ix) * in_c;
                for (c = 0; c < in_c; ++c) {
                    dst[c] = src[c];
                }
            } else {
                for (c = 0; c < in_c; ++c) {
                    dst[c] = zp;
                }
            }
            dst += in_c;
        }
    }
}

/* patches of at most this many bytes go through a stack buffer (two of them) and the matrix product */
#define TS_PATCH_MAX 256

static void ts_conv_patches_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                               const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out) {
    int8_t patch0[TS_PATCH_MAX] TS_ALIGN(4);
    int8_t patch1[TS_PATCH_MAX] TS_ALIGN(4);
    const int32_t n = p->k_h * p->k_w * p->in_c, out_c = p->out_c, out_w = p->out_w;
    const int32_t pixels = p->out_h * out_w;
    const int32_t zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t px = 0;
    /* raster order: an output pixel is written after every input it needs was read into a patch,
     * and row-streaming reuse (the output starting before the input) only overwrites rows no later
     * output row reads */
#if TS_KERNELS == TS_KERNELS_MVE
    for (; px < pixels; ++px) {
        ts_patch_s8(p, in, px / out_w, px % out_w, patch0);
        ts_mve_row_s8(patch0, filter, n, out_c, zbias, mult, shift, out + px * out_c, zo, lo, hi);
    }
    (void)patch1;
    return;
#elif TS_KERNELS == TS_KERNELS_DSP
    if (n >= 4) {  /* n <= TS_PATCH_MAX <= TS_DSP_KMAX here */
        ts_dsp_tabs_t tabs;
        const ts_dsp_rqf_t *f;
        const ts_dsp_rq_t *t;
        ts_dsp_tables(p->acc_bits, n, mult, shift, out_c, zo, lo, hi, &tabs, &t, &f);
        for (; px < pixels; px += 2) {
            const int two = px + 1 < pixels;
            ts_patch_s8(p, in, px / out_w, px % out_w, patch0);
            if (two) {
                ts_patch_s8(p, in, (px + 1) / out_w, (px + 1) % out_w, patch1);
            }
            ts_dsp_rows2_s8(patch0, two ? patch1 : (const int8_t *)0, filter, n, out_c, zbias, mult, shift,
                            out + px * out_c, two ? out + (px + 1) * out_c : (int8_t *)0, zo, lo, hi, t, f);
        }
        return;
    }
#endif
    for (; px + 1 < pixels; px += 2) {
        ts_patch_s8(p, in, px / out_w, px % out_w, patch0);
        ts_patch_s8(p, in, (px + 1) / out_w, (px + 1) % out_w, patch1);
        ts_rows2_s8(patch0, patch1, filter, n, out_c, zbias, mult, shift, out + px * out_c,
                    out + (px + 1) * out_c, zo, lo, hi);
    }
    if (px < pixels) {
        ts_patch_s8(p, in, px / out_w, px % out_w, patch0);
        ts_rows2_s8(patch0, (const int8_t *)0, filter, n, out_c, zbias, mult, shift, out + px * out_c,
                    (int8_t *)0, zo, lo, hi);
    }
}

/* The taps k in [*lo, *hi) with 0 <= start + k * dil < size (the ones inside the input). */
TS_INLINE void ts_valid_taps(int32_t start, int32_t dil, int32_t size, int32_t k, int32_t *lo, int32_t *hi) {
    int32_t a = start < 0 ? (-start + dil - 1) / dil : 0;
    int32_t b = (size - 1 - start) >= 0 ? (size - 1 - start) / dil + 1 : 0;
    *lo = a;
    *hi = b < k ? b : k;
}

/* a0 += sum(x * g0), a1 += sum(x * g1) over n values: two output channels share each input load */
TS_INLINE void ts_dot2_s8(const int8_t *x, const int8_t *g0, const int8_t *g1, int32_t n,
                          int32_t *a0, int32_t *a1) {
    int32_t s0 = *a0, s1 = *a1, i;
    for (i = 0; i + 1 < n; i += 2) {
        const int32_t v = x[i], u = x[i + 1];
        s0 += v * g0[i] + u * g0[i + 1];
        s1 += v * g1[i] + u * g1[i + 1];
    }
    if (i < n) {
        s0 += x[i] * g0[i];
        s1 += x[i] * g1[i];
    }
    *a0 = s0;
    *a1 = s1;
}

/* the same for four output channels: each input value is loaded once for four products */
TS_INLINE void ts_dot4_s8(const int8_t *x, const int8_t *const g[4], int32_t off, int32_t n, int32_t a[4]) {
    const int8_t *g0 = g[0] + off, *g1 = g[1] + off, *g2 = g[2] + off, *g3 = g[3] + off;
    int32_t s0 = a[0], s1 = a[1], s2 = a[2], s3 = a[3], i;
    for (i = 0; i < n; ++i) {
        const int32_t v = x[i];
        s0 += v * g0[i];
        s1 += v * g1[i];
        s2 += v * g2[i];
        s3 += v * g3[i];
    }
    a[0] = s0;
    a[1] = s1;
    a[2] = s2;
    a[3] = s3;
}

/* in_offset * (the weights of filter oc at the taps outside the input): what zbias counted for them */
TS_INLINE int32_t ts_outside_taps(const int32_t *t, int32_t k_h, int32_t k_w, int32_t ky0, int32_t ky1,
                                  int32_t kx0, int32_t kx1, int32_t in_offset) {
    int32_t all = 0, inside = 0, ky, kx;
    for (ky = 0; ky < k_h; ++ky) {
        for (kx = 0; kx < k_w; ++kx) {
            const int32_t v = t[ky * k_w + kx];
            all += v;
            if (ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1) {
                inside += v;
            }
        }
    }
    return in_offset * (all - inside);
}

/* zbias[oc] = bias[oc] + in_offset * sum(filter oc); a window that lies partly outside the input
 * (TFLite skips those taps) takes their share back out with tapsum[oc][ky][kx]. */
void ts_conv2d_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                  const int32_t *mult, const int32_t *shift, const int32_t *tapsum,
                  const int8_t *in, int8_t *out) {
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w;
    const int32_t k_h = p->k_h, k_w = p->k_w, dil_h = p->dil_h, dil_w = p->dil_w;
    const int32_t out_c = p->out_c, in_offset = p->in_offset;
    const int32_t out_h = p->out_h, out_w = p->out_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t tap = k_w * in_c;
    const int32_t ksize = k_h * tap;
    const int32_t taps = k_h * k_w;
    int32_t oy, ox, oc, ky, kx;
    if (k_h == 1 && k_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0) {
        ts_pointwise_s8(p, filter, zbias, mult, shift, in, out);
        return;
    }
    if (ksize <= TS_PATCH_MAX) {
        ts_conv_patches_s8(p, filter, zbias, mult, shift, in, out);
        return;
    }
    for (oy = 0; oy < out_h; ++oy) {
        const int32_t iy0 = oy * stride_h - pad_h;
        int32_t ky0, ky1;
        ts_valid_taps(iy0, dil_h, in_h, k_h, &ky0, &ky1);
        if (ky1 < ky0) {
            ky1 = ky0;
        }
        for (ox = 0; ox < out_w; ++ox) {
            const int32_t ix0 = ox * stride_w - pad_w;
            int8_t *o = out + (oy * out_w + ox) * out_c;
            int32_t kx0, kx1, full;
            ts_valid_taps(ix0, dil_w, in_w, k_w, &kx0, &kx1);
            if (kx1 < kx0) {
                kx1 = kx0;  /* no tap inside: nothing to accumulate */
            }
            full = ky0 == 0 && ky1 == k_h && kx0 == 0 && kx1 == k_w;
            oc = 0;
            if (dil_w == 1 && kx1 > kx0) {
                const int32_t seg = (kx1 - kx0) * in_c;
                for (; oc + 3 < out_c; oc += 4) {
                    const int8_t *g[4];
                    int32_t a[4];
                    int32_t j;
                    for (j = 0; j < 4; ++j) {
                        g[j] = filter + (oc + j) * ksize + kx0 * in_c;
                        a[j] = zbias[oc + j];
                        if (!full) {
                            a[j] -= ts_outside_taps(tapsum + (oc + j) * taps, k_h, k_w, ky0, ky1, kx0, kx1,
                                                    in_offset);
                        }
                    }
                    for (ky = ky0; ky < ky1; ++ky) {
                        ts_dot4_s8(in + ((iy0 + ky * dil_h) * in_w + ix0 + kx0) * in_c, g, ky * tap, seg, a);
                    }
                    for (j = 0; j < 4; ++j) {
                        a[j] = ts_out8(a[j], mult[oc + j], shift[oc + j], zo, lo, hi);
                    }
                    for (j = 0; j < 4; ++j) {
                        o[oc + j] = (int8_t)a[j];
                    }
                }
            }
            for (; oc < out_c; oc += 2) {
                const int pair = oc + 1 < out_c;
                const int32_t oc1 = pair ? oc + 1 : oc;
                const int8_t *f0 = filter + oc * ksize;
                const int8_t *f1 = filter + oc1 * ksize;
                int32_t a0 = zbias[oc], a1 = zbias[oc1];
                if (!full) {
                    a0 -= ts_outside_taps(tapsum + oc * taps, k_h, k_w, ky0, ky1, kx0, kx1, in_offset);
                    a1 -= ts_outside_taps(tapsum + oc1 * taps, k_h, k_w, ky0, ky1, kx0, kx1, in_offset);
                }
                for (ky = ky0; ky < ky1 && kx1 > kx0; ++ky) {
                    const int8_t *xrow = in + ((iy0 + ky * dil_h) * in_w) * in_c;
                    if (dil_w == 1) {
                        const int32_t first = (ix0 + kx0) * in_c;
                        ts_dot2_s8(xrow + first, f0 + ky * tap + kx0 * in_c, f1 + ky * tap + kx0 * in_c,
                                   (kx1 - kx0) * in_c, &a0, &a1);
                    } else {
                        for (kx = kx0; kx < kx1; ++kx) {
                            ts_dot2_s8(xrow + (ix0 + kx * dil_w) * in_c, f0 + ky * tap + kx * in_c,
                                       f1 + ky * tap + kx * in_c, in_c, &a0, &a1);
                        }
                    }
                }
                a0 = ts_out8(a0, mult[oc], shift[oc], zo, lo, hi);
                a1 = ts_out8(a1, mult[oc1], shift[oc1], zo, lo, hi);
                o[oc] = (int8_t)a0;
                if (pair) {
                    o[oc + 1] = (int8_t)a1;
                }
            }
        }
    }
}

/* a[0..3] += sum over the taps t of w[t * wstep + j] * xs[t][c + j], j = 0..3: four channels of one
 * output pixel, accumulators and pointers in registers (a separate function on purpose) */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void ts_dw4_s8(const int8_t *const *xs, int32_t taps, const int8_t *w, int32_t wstep, int32_t c,
                      int32_t a[4]) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    const int8_t *const *const end = xs + taps;
#if TS_KERNELS == TS_KERNELS_DSP
    /* one word of inputs and one of weights per tap, widened with SXTB16 (channels 0, 2) and
     * SXTB16 ROR 8 (1, 3); SMLABB / SMLATT multiply the matching halves */
    for (; xs != end; ++xs, w += wstep) {
        const int32_t x = ts_dsp_ld32(*xs + c), f = ts_dsp_ld32(w);
        const int32_t xe = __sxtb16(x), xo = ts_dsp_sxtb16_r8(x), fe = __sxtb16(f), fo = ts_dsp_sxtb16_r8(f);
        a0 = __smlabb(xe, fe, a0);
        a2 = __smlatt(xe, fe, a2);
        a1 = __smlabb(xo, fo, a1);
        a3 = __smlatt(xo, fo, a3);
    }
#endif
    for (; xs != end; ++xs, w += wstep) {
        const int8_t *x = *xs + c;
        a0 += w[0] * x[0];
        a1 += w[1] * x[1];
        a2 += w[2] * x[2];
        a3 += w[3] * x[3];
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

/* depthwise with depth multiplier 1 and at most this many taps: per output pixel, one input pointer
 * per tap (the zero-point row for a tap outside the input), then four channels at a time */
#define TS_DW_TAPS 32
#define TS_DW_ZROW 64

/* zbias[c] = bias[c] + in_offset * sum over all taps of filter[.][.][c]. A tap inside the input adds
 * w * x; a tap outside it (skipped by TFLite) adds w * (-in_offset), which cancels its share of
 * zbias: the same integers as TFLite's sum over the inside taps of w * (x + in_offset). */
void ts_dwconv2d_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                    const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out) {
    const int32_t out_c = p->out_c, in_c = p->in_c, dm = p->depth_mult;
    const int32_t in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t pad_h = p->pad_h, pad_w = p->pad_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t zp = -p->in_offset;
    const int32_t zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t row_step = dil_h * in_w * in_c, col_step = dil_w * in_c;
    int32_t oy, ox, ky, kx, c;
#if TS_KERNELS == TS_KERNELS_DSP
    if (ts_dsp_dwconv_s8(p, filter, zbias, mult, shift, in, out)) {
        return;
    }
#endif
    if (dm == 1 && k_h * k_w <= TS_DW_TAPS) {
        const int8_t *base[TS_DW_TAPS];
        const int8_t *cur[TS_DW_TAPS];
        int8_t zrow[TS_DW_ZROW] TS_ALIGN(4);
        const int32_t taps = k_h * k_w;
#if TS_KERNELS == TS_KERNELS_MVE
        /* a window inside the input: the tap pointers are the window's corner plus fixed offsets */
        int32_t toff[TS_DW_TAPS];
        const int32_t span_h = (k_h - 1) * dil_h, span_w = (k_w - 1) * dil_w;
        {
            int32_t t = 0;
            for (ky = 0; ky < k_h; ++ky) {
                for (kx = 0; kx < k_w; ++kx, ++t) {
                    toff[t] = ky * row_step + kx * col_step;
                }
            }
        }
#endif
        for (c = 0; c < TS_DW_ZROW; ++c) {
            zrow[c] = (int8_t)zp;
        }
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_h;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_w;
                int8_t *o = out + (oy * out_w + ox) * out_c;
                int32_t inside = 1, t = 0, c0, c1;
#if TS_KERNELS == TS_KERNELS_MVE
                if (iy0 >= 0 && iy0 + span_h < in_h && ix0 >= 0 && ix0 + span_w < in_w) {
                    const int8_t *corner = in + (iy0 * in_w + ix0) * in_c;
                    for (t = 0; t < taps; ++t) {
                        cur[t] = corner + toff[t];
                    }
                    ts_mve_dw_s8(cur, taps, filter, out_c, 0, out_c, zbias, mult, shift, o, zo, lo, hi);
                    continue;
                }
#endif
                for (ky = 0; ky < k_h; ++ky) {
                    const int32_t iy = iy0 + ky * dil_h;
                    for (kx = 0; kx < k_w; ++kx, ++t) {
                        const int32_t ix = ix0 + kx * dil_w;
                        if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
                            base[t] = in + (iy * in_w + ix) * in_c;
                        } else {
                            base[t] = (const int8_t *)0;
                            inside = 0;
                        }
                    }
                }
                /* a window inside the input: all channels at once; one that leaves it: channels in
                 * chunks the zero-point row covers */
                for (c0 = 0; c0 < out_c; c0 = c1) {
                    c1 = inside || out_c - c0 <= TS_DW_ZROW ? out_c : c0 + TS_DW_ZROW;
                    for (t = 0; t < taps; ++t) {
                        cur[t] = base[t] ? base[t] + c0 : zrow;
                    }
#if TS_KERNELS == TS_KERNELS_MVE
                    ts_mve_dw_s8(cur, taps, filter + c0, out_c, 0, c1 - c0, zbias + c0, mult + c0, shift + c0,
                                 o + c0, zo, lo, hi);
                    continue;
#endif
                    for (c = c0; c + 3 < c1; c += 4) {
                        int32_t a[4];
                        a[0] = zbias[c];
                        a[1] = zbias[c + 1];
                        a[2] = zbias[c + 2];
                        a[3] = zbias[c + 3];
                        ts_dw4_s8(cur, taps, filter + c, out_c, c - c0, a);
                        a[0] = ts_out8(a[0], mult[c], shift[c], zo, lo, hi);
                        a[1] = ts_out8(a[1], mult[c + 1], shift[c + 1], zo, lo, hi);
                        a[2] = ts_out8(a[2], mult[c + 2], shift[c + 2], zo, lo, hi);
                        a[3] = ts_out8(a[3], mult[c + 3], shift[c + 3], zo, lo, hi);
                        o[c] = (int8_t)a[0];
                        o[c + 1] = (int8_t)a[1];
                        o[c + 2] = (int8_t)a[2];
                        o[c + 3] = (int8_t)a[3];
                    }
                    for (; c < c1; ++c) {
                        int32_t acc = zbias[c];
                        for (t = 0; t < taps; ++t) {
                            acc += filter[t * out_c + c] * cur[t][c - c0];
                        }
                        o[c] = ts_out8(acc, mult[c], shift[c], zo, lo, hi);
                    }
                }
            }
        }
        return;
    }
    for (oy = 0; oy < out_h; ++oy) {
        const int32_t iy0 = oy * stride_h - pad_h;
        int32_t ky0, ky1;
        ts_valid_taps(iy0, dil_h, in_h, k_h, &ky0, &ky1);
        for (ox = 0; ox < out_w; ++ox) {
            const int32_t ix0 = ox * stride_w - pad_w;
            const int32_t pix = (iy0 * in_w + ix0) * in_c;  /* tap (0, 0), as an index; may lie outside */
            int8_t *o = out + (oy * out_w + ox) * out_c;
            int32_t kx0, kx1;
            ts_valid_taps(ix0, dil_w, in_w, k_w, &kx0, &kx1);
            /* depth multiplier > 1, or more taps than the fast path holds: one channel at a time */
            for (c = 0; c < out_c; ++c) {
                const int32_t ic = c / dm;
                int32_t a = zbias[c];
                for (ky = 0; ky < k_h; ++ky) {
                    const int32_t row_in = ky >= ky0 && ky < ky1;
                    for (kx = 0; kx < k_w; ++kx) {
                        const int32_t w = filter[(ky * k_w + kx) * out_c + c];
                        a += w * (row_in && kx >= kx0 && kx < kx1 ? in[pix + ky * row_step + kx * col_step + ic] : zp);
                    }
                }
                o[c] = ts_out8(a, mult[c], shift[c], zo, lo, hi);
            }
        }
    }
}

/* ------------------------------------------------------------------ fully connected */

/* zbias[u] = bias[u] + in_offset * sum_d (w[u][d] + filter_offset): the zero point costs nothing.
 * FULLY_CONNECTED never shares memory between its input and output (the planner gives it no reuse). */
void ts_fc_s8(const ts_fc_params_t *p, const int8_t *weights, const int32_t *zbias,
              const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out) {
    const int32_t batches = p->batches, depth = p->depth, units = p->units, fo = p->filter_offset;
    const int32_t zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t b, u, d;
#if TS_KERNELS == TS_KERNELS_DSP
    /* the DSP matrix product: two batches (or one, twice) against every unit's weight row */
    if (fo == 0 && depth >= 4 && depth <= TS_DSP_KMAX) {
        ts_dsp_tabs_t tabs;
        const ts_dsp_rqf_t *f;
        const ts_dsp_rq_t *t;
        ts_dsp_tables(p->acc_bits, depth, mult, shift, units, zo, lo, hi, &tabs, &t, &f);
        for (b = 0; b < batches; b += 2) {
            const int two = b + 1 < batches;
            ts_dsp_rows2_s8(in + b * depth, two ? in + (b + 1) * depth : (const int8_t *)0, weights, depth, units,
                            zbias, mult, shift, out + b * units, two ? out + (b + 1) * units : (int8_t *)0, zo, lo,
                            hi, t, f);
        }
        return;
    }
#endif
    for (b = 0; b < batches; ++b) {
        const int8_t *TS_RESTRICT x = in + b * depth;
        int8_t *TS_RESTRICT y = out + b * units;
        u = 0;
#if TS_KERNELS == TS_KERNELS_MVE
        if (fo == 0) {
            ts_mve_row_s8(x, weights, depth, units, zbias, mult, shift, y, zo, lo, hi);
            continue;
        }
#endif
        if (fo == 0) {
            for (; u + 1 < units; u += 2) {
                const int8_t *TS_RESTRICT w0 = weights + u * depth;
                const int8_t *TS_RESTRICT w1 = w0 + depth;
                int32_t a0 = zbias[u], a1 = zbias[u + 1];
                for (d = 0; d < depth; ++d) {
                    const int32_t v = x[d];
                    a0 += v * w0[d];
                    a1 += v * w1[d];
                }
                a0 = ts_out8(a0, mult[u], shift[u], zo, lo, hi);
                a1 = ts_out8(a1, mult[u + 1], shift[u + 1], zo, lo, hi);
                y[u] = (int8_t)a0;
                y[u + 1] = (int8_t)a1;
            }
        }
        for (; u < units; ++u) {
            const int8_t *TS_RESTRICT w = weights + u * depth;
            int32_t acc = zbias[u];
            for (d = 0; d < depth; ++d) {
                acc += ((int32_t)w[d] + fo) * (int32_t)x[d];
            }
            y[u] = ts_out8(acc, mult[u], shift[u], zo, lo, hi);
        }
    }
}

/* ------------------------------------------------------------------ elementwise binary */

/* ADD: lut1[a + 128] = MultiplyByQuantizedMultiplier((a + in1_offset) << left_shift, in1_mult,
 * in1_shift), computed on the host for all 256 int8 values (likewise lut2 for input 2), so an
 * element costs two table loads and the final requantization, bit for bit TFLite's int8 ADD. */
void ts_add_s8(const ts_binary_params_t *p, const int32_t *lut1, const int32_t *lut2,
               const int8_t *in1, const int8_t *in2, int8_t *out) {
    const int32_t *t1 = lut1 + 128, *t2 = lut2 + 128;
    const int32_t m = p->out_mult, s = p->out_shift, zo = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t i0, i1, i2, i3;
    if (p->flat) {
        const int32_t size = p->size;
#if TS_KERNELS == TS_KERNELS_MVE
        /* four elements a step: both tables gathered at value + 128, the sum requantized as a vector;
         * the last elements under a lane predicate */
        const int32x4_t vm = vdupq_n_s32(m), vs = vdupq_n_s32(s), vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
        for (i0 = 0; i0 < size; i0 += 4) {
            const mve_pred16_t pr = vctp32q((uint32_t)(size - i0));
            const uint32x4_t k1 = vreinterpretq_u32_s32(vaddq_n_s32(vldrbq_z_s32(in1 + i0, pr), 128));
            const uint32x4_t k2 = vreinterpretq_u32_s32(vaddq_n_s32(vldrbq_z_s32(in2 + i0, pr), 128));
            const int32x4_t v = vaddq_s32(vldrwq_gather_shifted_offset_z_s32(lut1, k1, pr),
                                          vldrwq_gather_shifted_offset_z_s32(lut2, k2, pr));
            vstrbq_p_s32(out + i0, ts_mve_requant(v, vm, vs, zo, vlo, vhi), pr);
        }
        (void)t1;
        (void)t2;
        return;
#else
        for (i0 = 0; i0 < size; ++i0) {
            out[i0] = ts_out8(t1[in1[i0]] + t2[in2[i0]], m, s, zo, lo, hi);
        }
        return;
#endif
    }
    for (i0 = 0; i0 < p->dims[0]; ++i0) {
        for (i1 = 0; i1 < p->dims[1]; ++i1) {
            for (i2 = 0; i2 < p->dims[2]; ++i2) {
                const int32_t a = i0 * p->s1[0] + i1 * p->s1[1] + i2 * p->s1[2];
                const int32_t b = i0 * p->s2[0] + i1 * p->s2[1] + i2 * p->s2[2];
                const int32_t n = p->dims[3], d1 = p->s1[3], d2 = p->s2[3];
                for (i3 = 0; i3 < n; ++i3) {
                    *out++ = ts_out8(t1[in1[a + i3 * d1]] + t2[in2[b + i3 * d2]], m, s, zo, lo, hi);
                }
            }
        }
    }
}

static int8_t ts_mul_one(const ts_binary_params_t *p, int8_t a, int8_t b) {
    const int32_t x = (p->in1_offset + a) * (p->in2_offset + b);
    const int32_t r = ts_mbqm_i(x, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)ts_clamp(r, p->act_min, p->act_max);
}

/* The element-wise loop of a binary op: flat, or broadcast through the strides s1/s2 (4-D, a stride
 * of 0 repeats a value); ONE(p, a, b) computes one element (a macro, so each op's loop inlines it). */
#define TS_BINARY_LOOP(ONE)                                                                          \
    do {                                                                                             \
        int32_t i0, i1, i2, i3;                                                                      \
        if (p->flat) {                                                                               \
            const int32_t size = p->size;                                                            \
            for (i0 = 0; i0 < size; ++i0) {                                                          \
                out[i0] = ONE(p, in1[i0], in2[i0]);                                                  \
            }                                                                                        \
            break;                                                                                   \
        }                                                                                            \
        for (i0 = 0; i0 < p->dims[0]; ++i0) {                                                        \
            for (i1 = 0; i1 < p->dims[1]; ++i1) {                                                    \
                for (i2 = 0; i2 < p->dims[2]; ++i2) {                                                \
                    const int32_t a = i0 * p->s1[0] + i1 * p->s1[1] + i2 * p->s1[2];                 \
                    const int32_t b = i0 * p->s2[0] + i1 * p->s2[1] + i2 * p->s2[2];                 \
                    for (i3 = 0; i3 < p->dims[3]; ++i3) {                                            \
                        *out++ = ONE(p, in1[a + i3 * p->s1[3]], in2[b + i3 * p->s2[3]]);             \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    } while (0)

void ts_mul_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    TS_BINARY_LOOP(ts_mul_one);
}

/* ------------------------------------------------------------------ pad */

/* Writes from the last output element backwards: every output element lies at or after the input
 * element it copies, so the output may start where the input starts (in place, growing). */
void ts_pad_s8(const ts_pad_params_t *p, const int8_t *in, int8_t *out) {
    const int32_t *od = p->out_dims, *id = p->in_dims, *b = p->before;
    const int8_t value = (int8_t)p->value;
    int32_t i0, i1, i2, i3;
    for (i0 = od[0] - 1; i0 >= 0; --i0) {
        for (i1 = od[1] - 1; i1 >= 0; --i1) {
            for (i2 = od[2] - 1; i2 >= 0; --i2) {
                int8_t *dst = out + ((i0 * od[1] + i1) * od[2] + i2) * od[3];
                const int32_t j0 = i0 - b[0], j1 = i1 - b[1], j2 = i2 - b[2];
                if (j0 < 0 || j0 >= id[0] || j1 < 0 || j1 >= id[1] || j2 < 0 || j2 >= id[2]) {
                    for (i3 = od[3] - 1; i3 >= 0; --i3) {
                        dst[i3] = value;
                    }
                } else {
                    const int8_t *src = in + ((j0 * id[1] + j1) * id[2] + j2) * id[3];
                    for (i3 = od[3] - 1; i3 >= b[3] + id[3]; --i3) {
                        dst[i3] = value;
                    }
                    for (; i3 >= b[3]; --i3) {
                        dst[i3] = src[i3 - b[3]];
                    }
                    for (; i3 >= 0; --i3) {
                        dst[i3] = value;
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ pooling */

/* The window of output position o along one axis: input start i0 and the filter taps [f0, f1)
 * that fall inside the input (padding is skipped, not counted). */
static void ts_pool_window(int32_t o, int32_t stride, int32_t pad, int32_t in_size, int32_t k,
                           int32_t *i0, int32_t *f0, int32_t *f1) {
    *i0 = o * stride - pad;
    *f0 = *i0 < 0 ? -*i0 : 0;
    *f1 = (in_size - *i0) < k ? (in_size - *i0) : k;
}

void ts_avgpool_s8(const ts_pool_params_t *p, const int8_t *in, int8_t *out) {
    int32_t oy, ox, c, fy, fx, iy0, fy0, fy1, ix0, fx0, fx1;
    for (oy = 0; oy < p->out_h; ++oy) {
        ts_pool_window(oy, p->stride_h, p->pad_h, p->in_h, p->k_h, &iy0, &fy0, &fy1);
        for (ox = 0; ox < p->out_w; ++ox) {
            ts_pool_window(ox, p->stride_w, p->pad_w, p->in_w, p->k_w, &ix0, &fx0, &fx1);
            for (c = 0; c < p->ch; ++c) {
                int32_t acc = 0;
                int32_t count = 0;
                for (fy = fy0; fy < fy1; ++fy) {
                    for (fx = fx0; fx < fx1; ++fx) {
                        acc += in[((iy0 + fy) * p->in_w + ix0 + fx) * p->ch + c];
                        ++count;
                    }
                }
                if (count > 0) {
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                }
                out[(oy * p->out_w + ox) * p->ch + c] = (int8_t)ts_clamp(acc, p->act_min, p->act_max);
            }
        }
    }
}

void ts_maxpool_s8(const ts_pool_params_t *p, const int8_t *in, int8_t *out) {
    int32_t oy, ox, c, fy, fx, iy0, fy0, fy1, ix0, fx0, fx1;
    for (oy = 0; oy < p->out_h; ++oy) {
        ts_pool_window(oy, p->stride_h, p->pad_h, p->in_h, p->k_h, &iy0, &fy0, &fy1);
        for (ox = 0; ox < p->out_w; ++ox) {
            ts_pool_window(ox, p->stride_w, p->pad_w, p->in_w, p->k_w, &ix0, &fx0, &fx1);
            for (c = 0; c < p->ch; ++c) {
                int32_t m = -128;
                for (fy = fy0; fy < fy1; ++fy) {
                    for (fx = fx0; fx < fx1; ++fx) {
                        const int32_t v = in[((iy0 + fy) * p->in_w + ix0 + fx) * p->ch + c];
                        m = v > m ? v : m;
                    }
                }
                out[(oy * p->out_w + ox) * p->ch + c] = (int8_t)ts_clamp(m, p->act_min, p->act_max);
            }
        }
    }
}

/* ------------------------------------------------------------------ mean */

void ts_mean_s8(const ts_mean_params_t *p, const int8_t *in, int8_t *out) {
    int32_t o0, o1, o2, o3, r0, r1, r2, r3;
    const int32_t *s = p->strides;
    for (o0 = 0; o0 < p->out_dims[0]; ++o0) {
        for (o1 = 0; o1 < p->out_dims[1]; ++o1) {
            for (o2 = 0; o2 < p->out_dims[2]; ++o2) {
                for (o3 = 0; o3 < p->out_dims[3]; ++o3) {
                    int32_t sum = 0;
                    int32_t v;
                    for (r0 = 0; r0 < p->red_dims[0]; ++r0) {
                        for (r1 = 0; r1 < p->red_dims[1]; ++r1) {
                            for (r2 = 0; r2 < p->red_dims[2]; ++r2) {
                                const int8_t *x = in + (o0 + r0) * s[0] + (o1 + r1) * s[1] + (o2 + r2) * s[2] + o3 * s[3];
                                for (r3 = 0; r3 < p->red_dims[3]; ++r3) {
                                    sum += x[r3 * s[3]];
                                }
                            }
                        }
                    }
                    if (p->plain) {
                        v = sum / p->count;  /* C division truncates toward zero, as TFLite's */
                    } else {
                        v = ts_mbqm_i(sum - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
                        v = ts_clamp(v, -128, 127);
                    }
                    *out++ = (int8_t)v;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ data movement */

void ts_concat_s8(const ts_concat_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i, j;
    for (i = 0; i < p->outer; ++i) {
        int8_t *dst = out + i * p->out_stride + p->out_base;
        const int8_t *src = in + i * p->inner;
        for (j = 0; j < p->inner; ++j) {
            dst[j] = src[j];
        }
    }
}

void ts_copy(const ts_copy_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    if (in == out) {
        return;
    }
    for (i = 0; i < p->bytes; ++i) {
        out[i] = in[i];
    }
}

/* ------------------------------------------------------------------ gemmlowp fixed point */

static int32_t ts_srmpot(int32_t x, int exponent) { /* SaturatingRoundingMultiplyByPOT */
    if (exponent > 0) {
        const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
        if (x > threshold) {
            return TS_INT32_MAX;
        }
        if (x < -threshold) {
            return TS_INT32_MIN;
        }
        return (int32_t)((uint32_t)x << exponent);
    }
    if (exponent < 0) {
        return ts_rdbpot(x, -exponent);
    }
    return x;
}

static int32_t ts_wrap_add(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t ts_wrap_sub(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out */
static int32_t ts_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = ts_wrap_add(a, 1 << 28);
    const int32_t x2 = ts_srdhm(x, x);
    const int32_t x3 = ts_srdhm(x2, x);
    const int32_t x4 = ts_srdhm(x2, x2);
    const int32_t x4_over_4 = ts_srmpot(x4, -2);
    const int32_t poly = ts_srmpot(ts_wrap_add(ts_srdhm(ts_wrap_add(x4_over_4, x3), one_third), x2), -1);
    return ts_wrap_add(constant_term, ts_srdhm(constant_term, ts_wrap_add(x, poly)));
}

/* exp(a) for a <= 0; `a` has `integer_bits` integer bits (Q<ib>.<31-ib>); result Q0.31 */
static int32_t ts_exp_neg(int32_t a, int integer_bits) {
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                           39332535, 720401, 242};
    const int fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod = ts_wrap_sub(a & mask, one_quarter);
    int32_t result = ts_exp_quarter(ts_srmpot(a_mod, integer_bits));
    const int32_t remainder = ts_wrap_sub(a_mod, a);
    int e;
    for (e = -2; e <= 4; ++e) {
        if (integer_bits > e) {
            const int shift = fractional_bits + e;
            if (remainder & (int32_t)((uint32_t)1 << shift)) {
                result = ts_srdhm(result, multipliers[e + 2]);
            }
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
        if (a < clamp) {
            result = 0;
        }
    }
    if (a == 0) {
        result = TS_INT32_MAX;
    }
    return result;
}

static int32_t ts_rounding_half_sum(int32_t a, int32_t b) {
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, as gemmlowp) */
static int32_t ts_one_over_one_plus_x(int32_t a) {
    const int32_t half_denominator = ts_rounding_half_sum(a, TS_INT32_MAX);
    const int32_t c48_17 = 1515870810;
    const int32_t cneg32_17 = -1010580540;
    int32_t x = ts_wrap_add(c48_17, ts_srdhm(half_denominator, cneg32_17));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = ts_srdhm(half_denominator, x);
        const int32_t one_minus = ts_wrap_sub((int32_t)1 << 29, hdx);
        x = ts_wrap_add(x, ts_srmpot(ts_srdhm(x, one_minus), 2));
    }
    return ts_srmpot(x, 1);
}

static int ts_clz32(uint32_t x) {
    int n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

void ts_softmax_s8(const ts_softmax_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *x = in + i * p->depth;
        int8_t *y = out + i * p->depth;
        int32_t max_in_row = -128;
        int32_t sum_of_exps = 0; /* Q12.19 */
        int headroom_plus_one, num_bits_over_unit, exponent;
        int32_t shifted_scale;
        for (c = 0; c < p->depth; ++c) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t rescaled = ts_srdhm((int32_t)((uint32_t)diff << p->input_left_shift),
                                                  p->input_multiplier);
                sum_of_exps = ts_wrap_add(sum_of_exps, ts_srmpot(ts_exp_neg(rescaled, 5), -12));
            }
        }
        headroom_plus_one = ts_clz32((uint32_t)sum_of_exps);
        num_bits_over_unit = 12 - headroom_plus_one;
        shifted_scale = ts_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31)));
        exponent = num_bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t rescaled = ts_srdhm((int32_t)((uint32_t)diff << p->input_left_shift),
                                                  p->input_multiplier);
                const int32_t e = ts_exp_neg(rescaled, 5);
                const int32_t unsat = ts_rdbpot(ts_srdhm(shifted_scale, e), exponent);
                y[c] = (int8_t)ts_clamp(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

static int32_t ts_logistic_q4(int32_t a) { /* logistic(a), a in Q4.27, result Q0.31 */
    int32_t abs_a, pos;
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    abs_a = a > 0 ? a : -a;
    pos = ts_one_over_one_plus_x(ts_exp_neg(-abs_a, 4));
    return a > 0 ? pos : ts_wrap_sub(TS_INT32_MAX, pos);
}

void ts_logistic_s8(const ts_logistic_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)in[i] - p->in_zp;
        if (x <= -p->input_range_radius) {
            out[i] = -128;
        } else if (x >= p->input_range_radius) {
            out[i] = 127;
        } else {
            const int32_t x_q4 = ts_mbqm_any(x, p->input_multiplier, p->input_left_shift);
            const int32_t y = ts_rdbpot(ts_logistic_q4(x_q4), 23) - 128;
            out[i] = (int8_t)ts_clamp(y, -128, 127);
        }
    }
}

/* ------------------------------------------------------------------ (de)quantization */

static int64_t ts_round_double(double v) { /* round half away from zero, as std::round */
    int64_t t;
    double frac;
    if (v > 4.0e15) {
        v = 4.0e15;
    } else if (v < -4.0e15) {
        v = -4.0e15;
    }
    t = (int64_t)v;
    frac = v - (double)t;
    if (frac >= 0.5) {
        ++t;
    } else if (frac <= -0.5) {
        --t;
    }
    return t;
}

void ts_quantize_f32_s8(const ts_quant_params_t *p, const float *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        int64_t q = ts_round_double((double)in[i] / p->scale) + p->zero_point;
        q = q < -128 ? -128 : (q > 127 ? 127 : q);
        out[i] = (int8_t)q;
    }
}

void ts_requantize_s8(const ts_requant_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = ts_mbqm_i((int32_t)in[i] - p->in_zp, p->mult, p->shift) + p->out_zp;
        out[i] = (int8_t)ts_clamp(v, -128, 127);
    }
}

void ts_dequantize_s8_f32(const ts_quant_params_t *p, const int8_t *in, float *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        out[i] = (float)(p->scale * (double)((int32_t)in[i] - p->zero_point));
    }
}

/* ============================================ streamed inverted-residual blocks (issue 16, memory)
 * See ts_kernels.h. The window holds expanded rows [lo, hi) contiguously from scratch[0]; output
 * row oy needs rows [oy * stride - pad, + (k_h - 1) * dil + 1) clipped to the input: the rows it
 * still holds move to the front, the missing ones are expanded after them, the depthwise kernel
 * runs on the window as a short input (its padding shifted so the same taps fall inside), then
 * the project (and ADD) on that one row. No value is computed twice. */

static void ts_irb_move(int8_t *dst, const int8_t *src, int32_t n) {  /* dst <= src: forward copy */
    int32_t i;
#if TS_KERNELS == TS_KERNELS_DSP
    /* a word at a time (these cores load and store words at any address): each word is read before
     * the store that may overlap it, and a store never reaches bytes not yet read (dst <= src) */
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        *(ts_dsp_w32 *)dst = ts_dsp_ld32(src);
    }
#endif
    for (i = 0; i < n; ++i) {
        dst[i] = src[i];
    }
}

void ts_irb_s8(const ts_irb_params_t *p,
               const int8_t *e_filter, const int32_t *e_bias, const int32_t *e_mult, const int32_t *e_shift,
               const int32_t *e_tapsum,
               const int8_t *d_filter, const int32_t *d_bias, const int32_t *d_mult, const int32_t *d_shift,
               const int8_t *p_filter, const int32_t *p_bias, const int32_t *p_mult, const int32_t *p_shift,
               const int32_t *p_tapsum, const int32_t *a_lut1, const int32_t *a_lut2,
               const int8_t *in, int8_t *out, int8_t *scratch) {
    const ts_conv_params_t *d = &p->dw;
    const int32_t in_row = p->expand.in_w * p->expand.in_c;   /* bytes of one block-input row */
    const int32_t hid_row = d->in_w * d->in_c;                /* bytes of one expanded row */
    const int32_t out_row = p->project.out_w * p->project.out_c;
    const int32_t span = (d->k_h - 1) * d->dil_h + 1;
    int8_t *dw_row = scratch + p->window_rows * hid_row;
    ts_conv_params_t e = p->expand, w = p->dw, pr = p->project;
    ts_binary_params_t a = p->add;
    int32_t lo = 0, hi = 0, oy;
    w.out_h = 1;
    pr.in_h = 1;
    pr.out_h = 1;
    a.size = out_row;
    a.dims[0] = 1;
    a.dims[1] = 1;
    a.dims[2] = p->project.out_w;
    a.dims[3] = p->project.out_c;
    for (oy = 0; oy < d->out_h; ++oy) {
        const int32_t iy0 = oy * d->stride_h - d->pad_h;
        const int32_t need_lo = iy0 > 0 ? iy0 : 0;
        int32_t need_hi = iy0 + span < d->in_h ? iy0 + span : d->in_h;
        int8_t *o = out + oy * out_row;
        if (need_hi < need_lo) {
            need_hi = need_lo;
        }
        if (need_lo > lo) {               /* drop the rows above the window */
            if (need_lo < hi) {
                ts_irb_move(scratch, scratch + (need_lo - lo) * hid_row, (hi - need_lo) * hid_row);
            } else {
                hi = need_lo;
            }
            lo = need_lo;
        }
        if (need_hi > hi) {               /* expand the rows the window lacks */
            e.in_h = need_hi - hi;
            e.out_h = need_hi - hi;
            ts_conv2d_s8(&e, e_filter, e_bias, e_mult, e_shift, e_tapsum, in + hi * in_row,
                         scratch + (hi - lo) * hid_row);
            hi = need_hi;
        }
        w.in_h = hi - lo;
        w.pad_h = lo - iy0;
        ts_dwconv2d_s8(&w, d_filter, d_bias, d_mult, d_shift, scratch, dw_row);
        ts_conv2d_s8(&pr, p_filter, p_bias, p_mult, p_shift, p_tapsum, dw_row, o);
        if (p->has_add) {
            const int8_t *x = in + oy * out_row;   /* the residual input has the output's shape */
            ts_add_s8(&a, a_lut1, a_lut2, p->add_x_first ? x : o, p->add_x_first ? o : x, o);
        }
    }
}


/* ======================================================================== activations (issue 17)
 * HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX: add below. */

/* int16 gemmlowp primitives, as TFLite's HARD_SWISH uses them */
static int16_t ts_srdhm16(int16_t a, int16_t b) { /* SaturatingRoundingDoublingHighMul<int16_t> */
    int32_t ab;
    if (a == b && a == -32768) {
        return 32767;
    }
    ab = (int32_t)a * (int32_t)b;
    return (int16_t)((ab + (ab >= 0 ? (1 << 14) : (1 - (1 << 14)))) / (1 << 15));
}

static int16_t ts_sdhm16(int16_t a, int16_t b) { /* SaturatingDoublingHighMul: truncating */
    if (a == b && a == -32768) {
        return 32767;
    }
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

static int16_t ts_rdbpot16(int16_t x, int exponent) { /* RoundingDivideByPOT<int16_t> */
    const int16_t mask = exponent >= 16 ? (int16_t)-1 : (int16_t)((1L << exponent) - 1);
    const int16_t remainder = (int16_t)(x & mask);
    const int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
    return (int16_t)((x >> (exponent > 31 ? 31 : exponent)) + (remainder > threshold ? 1 : 0));
}

static int16_t ts_sat_lshift16(int16_t v, int amount) {
    int64_t r = (int64_t)v * ((int64_t)1 << amount);
    r = r > 32767 ? 32767 : (r < -32768 ? -32768 : r);
    return (int16_t)r;
}

void ts_hard_swish_s8(const ts_hard_swish_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int16_t x = (int16_t)((int32_t)in[i] - p->in_zp);
        const int16_t hires = (int16_t)(x * 128);
        const int16_t pre_out = ts_srdhm16(hires, (int16_t)p->out_mult);
        int16_t reluish = hires;
        int32_t v;
        if (p->reluish_exp > 0) {
            reluish = ts_sat_lshift16(reluish, p->reluish_exp - 1);
        }
        reluish = ts_srdhm16(reluish, (int16_t)p->reluish_mult);
        if (p->reluish_exp > 0) {
            reluish = ts_sat_lshift16(reluish, 1);
        }
        if (p->reluish_exp < 0) {
            reluish = ts_rdbpot16(reluish, -p->reluish_exp);
        }
        reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
        v = (int32_t)ts_rdbpot16(ts_sdhm16(reluish, pre_out), -p->out_exp);
        v = (int32_t)(int16_t)(v + p->out_zp);
        out[i] = (int8_t)ts_clamp(v, -128, 127);
    }
}

void ts_leaky_relu_s8(const ts_leaky_relu_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)in[i] - p->in_zp;
        const int32_t v = p->out_zp + (x >= 0 ? ts_mbqm_i(x, p->id_mult, p->id_shift)
                                              : ts_mbqm_i(x, p->alpha_mult, p->alpha_shift));
        out[i] = (int8_t)ts_clamp(v, -128, 127);
    }
}

void ts_relu_s8(const ts_relu_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = p->out_zp + ts_mbqm_i((int32_t)in[i] - p->in_zp, p->mult, p->shift);
        out[i] = (int8_t)ts_clamp(v, p->act_min, 127);
    }
}

void ts_clamp_s8(const ts_clamp_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = in[i];
        out[i] = (int8_t)(v > p->hi ? p->hi : (v < p->lo ? p->lo : v));
    }
}


/* tanh(a), a in Q4.27, result Q0.31 (gemmlowp: 1 - e / (1 + e), e = exp(-2|a|)) */
static int32_t ts_tanh_q4(int32_t a) {
    const int32_t n = a < 0 ? a : ts_wrap_sub(0, a); /* -|a|, read as Q5.26 (= 2 x -|a| in Q4.27) */
    const int32_t e = ts_exp_neg(n, 5);
    const int32_t half_denominator = ts_rounding_half_sum(e, TS_INT32_MAX);
    int32_t x = ts_wrap_add(1515870810, ts_srdhm(half_denominator, -1010580540));
    int32_t t;
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = ts_wrap_sub((int32_t)1 << 29, ts_srdhm(half_denominator, x));
        x = ts_wrap_add(x, ts_srmpot(ts_srdhm(x, one_minus), 2));
    }
    t = ts_srmpot(ts_wrap_sub(x, (int32_t)1 << 29), 2);
    if (a == 0) {
        return 0;
    }
    return a < 0 ? ts_wrap_sub(0, t) : t;
}

void ts_tanh_s8(const ts_logistic_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)in[i] - p->in_zp;
        if (x <= -p->input_range_radius) {
            out[i] = -128;
        } else if (x >= p->input_range_radius) {
            out[i] = 127;
        } else {
            const int32_t y = ts_rdbpot(ts_tanh_q4(ts_mbqm_i(x, p->input_multiplier, p->input_left_shift)), 24);
            out[i] = (int8_t)ts_clamp(y, -128, 127);
        }
    }
}


void ts_prelu_s8(const ts_prelu_params_t *p, const int8_t *alpha, const int8_t *in, int8_t *out) {
    int32_t b, y, x, c, i = 0;
    for (b = 0; b < p->dims[0]; ++b) {
        for (y = 0; y < p->dims[1]; ++y) {
            for (x = 0; x < p->dims[2]; ++x) {
                const int8_t *a = alpha + b * p->alpha_strides[0] + y * p->alpha_strides[1] +
                                  x * p->alpha_strides[2];
                for (c = 0; c < p->dims[3]; ++c, ++i) {
                    const int32_t v = p->in_offset + in[i];
                    int32_t o;
                    if (v >= 0) {
                        o = ts_mbqm_i(v, p->pos_mult, p->pos_shift);
                    } else {
                        o = ts_mbqm_i(v * (p->alpha_offset + a[c * p->alpha_strides[3]]), p->neg_mult, p->neg_shift);
                    }
                    out[i] = (int8_t)ts_clamp(o + p->out_offset, -128, 127);
                }
            }
        }
    }
}


static int32_t ts_sat_add32(int32_t a, int32_t b) {
    const int64_t v = (int64_t)a + (int64_t)b;
    return (int32_t)(v > TS_INT32_MAX ? TS_INT32_MAX : (v < TS_INT32_MIN ? TS_INT32_MIN : v));
}

static int32_t ts_sat_sub32(int32_t a, int32_t b) {
    const int64_t v = (int64_t)a - (int64_t)b;
    return (int32_t)(v > TS_INT32_MAX ? TS_INT32_MAX : (v < TS_INT32_MIN ? TS_INT32_MIN : v));
}

/* log(x) for x >= 1: x in Q12.19, result in Q5.26 (TFLite's log_x_for_x_greater_than_or_equal_to_1,
 * a rational approximation around 2^k * sqrt(sqrt(1/2)); the accumulator has 6 integer bits) */
static int32_t ts_log_q12_to_q5(int32_t x) {
    const int32_t log_2 = 1488522236, sqrt_sqrt_half = 1805811301, sqrt_half = 1518500250;
    const int32_t alpha_n = 117049297, alpha_d = 127690142, alpha_i = 1057819769, alpha_f = 638450708;
    const int32_t shifted_quarter = ts_srmpot(536870912, -6);
    const int za_headroom_plus_1 = ts_clz32((uint32_t)x);
    const int32_t ra_tmp = ts_srmpot(x, za_headroom_plus_1 - 1);
    const int32_t ra = ts_srmpot(ts_srdhm(ra_tmp, sqrt_half), 1);
    const int32_t za_pow2 = ts_sat_add32(ts_srmpot(12 - za_headroom_plus_1, 31 - 6), shifted_quarter);
    const int32_t zb = ts_srdhm(x, sqrt_half);
    const int zb_headroom = ts_clz32((uint32_t)zb) - 1;
    const int32_t rb = ts_srmpot(x, zb_headroom);
    const int32_t zb_pow2 = ts_sat_sub32(ts_srmpot(12 - zb_headroom, 31 - 6), shifted_quarter);
    const int32_t r = ra < rb ? ra : rb;
    const int32_t z_pow2 = za_pow2 > zb_pow2 ? za_pow2 : zb_pow2;
    const int32_t pp = ts_rounding_half_sum(r, sqrt_sqrt_half);
    int32_t q = ts_wrap_sub(r, sqrt_sqrt_half);
    int32_t common_sq, num, denom, recip;
    q = ts_wrap_add(q, q);
    common_sq = ts_srdhm(q, q);
    num = ts_wrap_add(ts_srdhm(q, r), ts_srdhm(ts_srdhm(q, common_sq), alpha_n));
    denom = ts_wrap_add(ts_srdhm(pp, ts_wrap_add(ts_wrap_add(alpha_i, q), ts_srdhm(alpha_d, common_sq))),
                        ts_srdhm(alpha_f, q));
    recip = ts_one_over_one_plus_x(denom);
    return ts_srmpot(ts_wrap_add(ts_srdhm(z_pow2, log_2), ts_srdhm(ts_srmpot(num, -6), recip)), 1);
}

void ts_log_softmax_s8(const ts_log_softmax_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *x = in + i * p->depth;
        int8_t *y = out + i * p->depth;
        int32_t max_in_row = -128, sum_q12 = 0, log_sum_q5, adjusted_diff_min, rev;
        for (c = 0; c < p->depth; ++c) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t d_q5 = ts_mbqm_i(diff, p->input_multiplier, p->input_left_shift);
                sum_q12 = ts_wrap_add(sum_q12, ts_rdbpot(ts_exp_neg(d_q5, 5), 12));
            }
        }
        log_sum_q5 = ts_log_q12_to_q5(sum_q12);
        rev = ts_mbqm_i(ts_wrap_add(log_sum_q5, TS_INT32_MIN), p->reverse_mult, p->reverse_shift);
        adjusted_diff_min = p->diff_min - 1 > rev ? p->diff_min - 1 : rev;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff > adjusted_diff_min) {
                const int32_t d_q5 = ts_mbqm_i(diff, p->input_multiplier, p->input_left_shift);
                const int32_t v = ts_rdbpot(ts_wrap_sub(d_q5, log_sum_q5), 22) + 127;
                y[c] = (int8_t)ts_clamp(v, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}


/* 1 / sqrt(x) as a multiplier and left shift (TFLite's GetInvSqrtQuantizedMultiplierExp with
 * reverse_shift -1: Newton-Raphson in Q3.28 on x normalized to [2^27, 2^29)) */
static void ts_inv_sqrt(int32_t x, int32_t *mult, int *shift) {
    int32_t half_x, v;
    int s = 11, pairs, i;
    if (x <= 1) {
        *mult = TS_INT32_MAX;
        *shift = 0;
        return;
    }
    while (x >= ((int32_t)1 << 29)) {
        x /= 4;
        ++s;
    }
    pairs = (ts_clz32((uint32_t)x) - 1) / 2 - 1;
    s -= pairs;
    x = (int32_t)((uint32_t)x << (2 * pairs));
    half_x = ts_rdbpot(x >> 1, 1);
    v = (int32_t)1 << 28;
    for (i = 0; i < 5; ++i) {
        const int32_t v3 = ts_srmpot(ts_srdhm(ts_srdhm(v, v), v), 6);
        v = ts_srmpot(ts_wrap_sub(ts_srdhm((1 << 28) + (1 << 27), v), ts_srdhm(half_x, v3)), 3);
    }
    v = ts_srdhm(v, 1518500250);
    if (s < 0) {
        v = (int32_t)((uint32_t)v << -s);
        s = 0;
    }
    *mult = v;
    *shift = -s;
}

void ts_l2norm_s8(const ts_l2norm_params_t *p, const int8_t *in, int8_t *out) {
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *x = in + i * p->depth;
        int8_t *y = out + i * p->depth;
        int32_t acc = 0, mult;
        int shift;
        for (c = 0; c < p->depth; ++c) {
            const int32_t v = (int32_t)x[c] - p->in_zp;
            acc += v * v;
        }
        ts_inv_sqrt(acc, &mult, &shift);
        for (c = 0; c < p->depth; ++c) {
            const int32_t v = ts_mbqm_i((int32_t)x[c] - p->in_zp, mult, shift + 7);
            y[c] = (int8_t)ts_clamp(v, -128, 127);
        }
    }
}


/* ============================================================ binary ops and reductions (issue 17)
 * SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL: add below. */

/* The binary ops below share one loop through a function pointer (they are not on the hot path). */
typedef int8_t (*ts_binary_fn)(const ts_binary_params_t *, int8_t, int8_t);

static void ts_binary(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                      ts_binary_fn fn) {
    TS_BINARY_LOOP(fn);
}

/* SUB: ADD's arithmetic with a difference (TFLite's SubElementwise / BroadcastQuantSubSlow) */
static int8_t ts_sub_one(const ts_binary_params_t *p, int8_t a, int8_t b) {
    const int32_t x1 = (int32_t)((uint32_t)(p->in1_offset + a) << p->left_shift);
    const int32_t x2 = (int32_t)((uint32_t)(p->in2_offset + b) << p->left_shift);
    const int32_t s1 = ts_mbqm_i(x1, p->in1_mult, p->in1_shift);
    const int32_t s2 = ts_mbqm_i(x2, p->in2_mult, p->in2_shift);
    const int32_t r = ts_mbqm_i(s1 - s2, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)ts_clamp(r, p->act_min, p->act_max);
}

/* SQUARED_DIFFERENCE: inputs scaled up by 2^7 and rescaled, the difference squared (fits 32 bits),
 * requantized */
static int8_t ts_sqdiff_one(const ts_binary_params_t *p, int8_t a, int8_t b) {
    const int32_t x1 = (int32_t)((uint32_t)(p->in1_offset + a) << p->left_shift);
    const int32_t x2 = (int32_t)((uint32_t)(p->in2_offset + b) << p->left_shift);
    const int32_t d = ts_mbqm_i(x1, p->in1_mult, p->in1_shift) - ts_mbqm_i(x2, p->in2_mult, p->in2_shift);
    const int32_t r = ts_mbqm_i(d * d, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)ts_clamp(r, p->act_min, p->act_max);
}

static int8_t ts_min_one(const ts_binary_params_t *p, int8_t a, int8_t b) {
    (void)p;
    return a < b ? a : b;
}

static int8_t ts_max_one(const ts_binary_params_t *p, int8_t a, int8_t b) {
    (void)p;
    return a > b ? a : b;
}

void ts_sub_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    ts_binary(p, in1, in2, out, ts_sub_one);
}

void ts_squared_difference_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    ts_binary(p, in1, in2, out, ts_sqdiff_one);
}

void ts_minimum_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    ts_binary(p, in1, in2, out, ts_min_one);
}

void ts_maximum_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    ts_binary(p, in1, in2, out, ts_max_one);
}

void ts_reduce_max_s8(const ts_reduce_params_t *p, const int8_t *in, int8_t *out) {
    int32_t o0, o1, o2, o3, r0, r1, r2, r3;
    const int32_t *s = p->strides;
    for (o0 = 0; o0 < p->out_dims[0]; ++o0) {
        for (o1 = 0; o1 < p->out_dims[1]; ++o1) {
            for (o2 = 0; o2 < p->out_dims[2]; ++o2) {
                for (o3 = 0; o3 < p->out_dims[3]; ++o3) {
                    int8_t m = -128;
                    for (r0 = 0; r0 < p->red_dims[0]; ++r0) {
                        for (r1 = 0; r1 < p->red_dims[1]; ++r1) {
                            for (r2 = 0; r2 < p->red_dims[2]; ++r2) {
                                const int8_t *x = in + (o0 + r0) * s[0] + (o1 + r1) * s[1] + (o2 + r2) * s[2] + o3 * s[3];
                                for (r3 = 0; r3 < p->red_dims[3]; ++r3) {
                                    const int8_t v = x[r3 * s[3]];
                                    m = v > m ? v : m;
                                }
                            }
                        }
                    }
                    *out++ = m;
                }
            }
        }
    }
}

void ts_argmax_s8(const ts_argmax_params_t *p, const int8_t *in, int32_t *out) {
    int32_t o, i, k;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *x = in + o * p->axis_size * p->inner;
        for (i = 0; i < p->inner; ++i) {
            int8_t best = x[i];
            int32_t at = 0;
            for (k = 1; k < p->axis_size; ++k) {
                if (x[k * p->inner + i] > best) {  /* strictly greater: the first maximum wins */
                    best = x[k * p->inner + i];
                    at = k;
                }
            }
            *out++ = at;
        }
    }
}

void ts_requantize_s32_s8(const ts_requant_params_t *p, const int32_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = ts_mbqm_i(in[i] - p->in_zp, p->mult, p->shift) + p->out_zp;
        out[i] = (int8_t)ts_clamp(v, -128, 127);
    }
}

void ts_batch_matmul_s8(const ts_batch_matmul_params_t *p, const int8_t *lhs, const int8_t *rhs, int8_t *out) {
    int32_t b0, b1, b2, i, j, k;
    for (b0 = 0; b0 < p->batch[0]; ++b0) {
        for (b1 = 0; b1 < p->batch[1]; ++b1) {
            for (b2 = 0; b2 < p->batch[2]; ++b2) {
                const int8_t *l = lhs + b0 * p->lhs_batch[0] + b1 * p->lhs_batch[1] + b2 * p->lhs_batch[2];
                const int8_t *r = rhs + b0 * p->rhs_batch[0] + b1 * p->rhs_batch[1] + b2 * p->rhs_batch[2];
                for (i = 0; i < p->rows; ++i) {
                    const int8_t *li = l + i * p->lhs_row;
                    for (j = 0; j < p->cols; ++j) {
                        const int8_t *rj = r + j * p->rhs_col;
                        int32_t acc = 0;
                        int32_t v;
                        for (k = 0; k < p->depth; ++k) {
                            acc += ((int32_t)li[k * p->lhs_k] + p->lhs_offset) * ((int32_t)rj[k * p->rhs_k] + p->rhs_offset);
                        }
                        v = ts_mbqm_i(acc, p->mult, p->shift) + p->out_offset;
                        *out++ = (int8_t)ts_clamp(v, -128, 127);
                    }
                }
            }
        }
    }
}


/* ================================== shape, slicing, resize, transposed convolution (issue 17)
 * STRIDED_SLICE, SLICE, SPLIT(_V), PACK, UNPACK, SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_*,
 * TRANSPOSE_CONV: add below. */

void ts_gather_s8(const ts_gather_params_t *p, const int8_t *in, int8_t *out) {
    int32_t a, b, c, d, e;
    for (a = 0; a < p->dims[0]; ++a) {
        const int32_t oa = p->base + a * p->strides[0];
        for (b = 0; b < p->dims[1]; ++b) {
            const int32_t ob = oa + b * p->strides[1];
            for (c = 0; c < p->dims[2]; ++c) {
                const int32_t oc = ob + c * p->strides[2];
                for (d = 0; d < p->dims[3]; ++d) {
                    const int32_t od = oc + d * p->strides[3];
                    for (e = 0; e < p->dims[4]; ++e) {
                        *out++ = in[od + e * p->strides[4]];
                    }
                }
            }
        }
    }
}

void ts_resize_nn_s8(const ts_resize_params_t *p, const int32_t *ymap, const int32_t *xmap,
                     const int8_t *in, int8_t *out) {
    int32_t b, y, x, c;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * p->in_w * p->ch;
        for (y = 0; y < p->out_h; ++y) {
            const int8_t *row = img + ymap[y] * p->in_w * p->ch;
            for (x = 0; x < p->out_w; ++x) {
                const int8_t *px = row + xmap[x] * p->ch;
                for (c = 0; c < p->ch; ++c) {
                    *out++ = px[c];
                }
            }
        }
    }
}

void ts_resize_bilinear_s8(const ts_resize_params_t *p, const int32_t *ytab, const int32_t *xtab,
                           const int8_t *in, int8_t *out) {
    int32_t b, y, x, c;
    const int32_t row = p->in_w * p->ch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * row;
        for (y = 0; y < p->out_h; ++y) {
            const int32_t y0 = ytab[3 * y], y1 = ytab[3 * y + 1], wy = ytab[3 * y + 2];
            for (x = 0; x < p->out_w; ++x) {
                const int32_t x0 = xtab[3 * x], x1 = xtab[3 * x + 1], wx = xtab[3 * x + 2];
                const int8_t *p00 = img + y0 * row + x0 * p->ch, *p10 = img + y1 * row + x0 * p->ch;
                const int8_t *p01 = img + y0 * row + x1 * p->ch, *p11 = img + y1 * row + x1 * p->ch;
                for (c = 0; c < p->ch; ++c) {
                    const int64_t v = (int64_t)p00[c] * (1024 - wy) * (1024 - wx) +
                                      (int64_t)p10[c] * wy * (1024 - wx) +
                                      (int64_t)p01[c] * (1024 - wy) * wx +
                                      (int64_t)p11[c] * wy * wx;
                    /* TFLite's double-rounding build: round half away from zero, divide truncating */
                    const int64_t r = v > 0 ? ((int64_t)1 << 19) : -((int64_t)1 << 19);
                    *out++ = (int8_t)((v + r) / ((int64_t)1 << 20));
                }
            }
        }
    }
}

void ts_transpose_conv_s8(const ts_tconv_params_t *p, const int8_t *filter, const int32_t *bias,
                          const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out) {
    int32_t oy, ox, oc, ky, kx, ic;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (oc = 0; oc < p->out_c; ++oc) {
                int32_t acc = 0;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int32_t ty = oy + p->pad_h - ky;
                    int32_t iy;
                    if (ty < 0 || ty % p->stride_h != 0) {
                        continue;
                    }
                    iy = ty / p->stride_h;
                    if (iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int32_t tx = ox + p->pad_w - kx;
                        int32_t ix;
                        const int8_t *src, *w;
                        if (tx < 0 || tx % p->stride_w != 0) {
                            continue;
                        }
                        ix = tx / p->stride_w;
                        if (ix >= p->in_w) {
                            continue;
                        }
                        src = in + (iy * p->in_w + ix) * p->in_c;
                        w = filter + ((oc * p->k_h + ky) * p->k_w + kx) * p->in_c;
                        for (ic = 0; ic < p->in_c; ++ic) {
                            acc += ((int32_t)src[ic] + p->in_offset) * (int32_t)w[ic];
                        }
                    }
                }
                if (bias) {
                    acc += bias[oc];
                }
                acc = ts_mbqm(acc, mult[oc], (int)shift[oc]) + p->out_offset;
                acc = acc < p->act_min ? p->act_min : (acc > p->act_max ? p->act_max : acc);
                *out++ = (int8_t)acc;
            }
        }
    }
}

