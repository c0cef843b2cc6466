/* SPDX-License-Identifier: Apache-2.0
 *
 * tinysplit int8 kernel library: portable C99 kernels with TFLite's integer semantics
 * (per-channel requantization with multiplier/shift, zero points, fused activation clamps,
 * TFLite's double rounding: SaturatingRoundingDoublingHighMul + RoundingDivideByPOT), so their
 * outputs are bit-exact with TFLite Micro's reference kernels.
 *
 * Calling convention (the code generator relies on it):
 *     kernel(&params, <const arrays...>, <input tensors...>, <output tensor>)
 * Shapes are NHWC with batch 1. Every params struct is filled by the host-side lowering
 * (tinysplit.exporter.codegen.lower); its field names match the Python dataclass fields.
 */
#ifndef TS_KERNELS_H
#define TS_KERNELS_H

#include <stdint.h>

/* The kernel set (tinysplit.firmware.kernelsets): the firmware build passes -DTS_KERNELS=<id> with
 * the board core's choice; without it, the compiler's target chooses the same way. */
#define TS_KERNELS_PORTABLE 0
#define TS_KERNELS_DSP 1
#define TS_KERNELS_MVE 2
#ifndef TS_KERNELS
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TS_KERNELS TS_KERNELS_MVE
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TS_KERNELS TS_KERNELS_DSP
#else
#define TS_KERNELS TS_KERNELS_PORTABLE
#endif
#endif
#if TS_KERNELS == TS_KERNELS_MVE && !(defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1))
#error "TS_KERNELS=2 (mve) needs a core with Helium (MVE), e.g. -mcpu=cortex-m55"
#endif
#if TS_KERNELS == TS_KERNELS_DSP && !(defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP)
#error "TS_KERNELS=1 (dsp) needs a core with the DSP extension, e.g. -mcpu=cortex-m4"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TS_ALIGN(n) __attribute__((aligned(n)))
#else
#define TS_ALIGN(n)
#endif

/* --- requantization primitives (exposed for tests and custom kernels) --- */
int32_t ts_srdhm(int32_t a, int32_t b);                 /* SaturatingRoundingDoublingHighMul */
int32_t ts_rdbpot(int32_t x, int exponent);             /* RoundingDivideByPOT */
int32_t ts_mbqm(int32_t x, int32_t multiplier, int shift); /* MultiplyByQuantizedMultiplier */
/* the same for multiplier >= 0 (every multiplier the lowering emits, except LOGISTIC's): what the
 * kernels use; one 32x32->64 multiply, no 64-bit division, no saturation test */
int32_t ts_mbqm_nonneg(int32_t x, int32_t multiplier, int shift);

/* CONV_2D and DEPTHWISE_CONV_2D (filter [out_c][k_h][k_w][in_c] resp. [1][k_h][k_w][out_c]) */
typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t depth_mult;
    int32_t in_offset, out_offset, act_min, act_max;
    int32_t acc_bits;   /* every accumulator fits a signed integer of this many bits (proven at generation
                         * from the weights and biases; 32: not proven). <= 31 lets the DSP kernels
                         * requantize in the shorter range-proven form. */
} ts_conv_params_t;

/* zbias[oc] (never null): bias[oc] + in_offset * (the sum of all of filter oc's weights), the input
 * zero point folded in at generation time; tapsum[oc][ky][kx]: the sum over input channels of filter
 * oc's weights at one tap, to take the share of taps outside the input back out at the borders */
void ts_conv2d_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                  const int32_t *mult, const int32_t *shift, const int32_t *tapsum,
                  const int8_t *in, int8_t *out);
void ts_dwconv2d_s8(const ts_conv_params_t *p, const int8_t *filter, const int32_t *zbias,
                    const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out);

/* FULLY_CONNECTED: weights [units][depth]; mult/shift per unit (per-tensor models repeat them) */
typedef struct {
    int32_t batches, depth, units;
    int32_t in_offset, filter_offset, out_offset, act_min, act_max;
    int32_t acc_bits;   /* as in ts_conv_params_t */
} ts_fc_params_t;

/* zbias[unit] (never null): bias + in_offset * sum over depth of (weight + filter_offset) */
void ts_fc_s8(const ts_fc_params_t *p, const int8_t *weights, const int32_t *zbias,
              const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out);

/* ADD / MUL with 4-D broadcasting (stride 0 on a broadcast dimension) */
typedef struct {
    int32_t flat;               /* 1: same shapes, no broadcasting */
    int32_t size;               /* output elements */
    int32_t dims[4];            /* output dims */
    int32_t s1[4], s2[4];       /* element strides of input 1 and input 2 over the output dims */
    int32_t in1_offset, in2_offset, out_offset;
    int32_t left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} ts_binary_params_t;

/* ADD: lut1/lut2[v + 128] (256 values each) = input v's rescaled contribution (host-computed) */
void ts_add_s8(const ts_binary_params_t *p, const int32_t *lut1, const int32_t *lut2,
               const int8_t *in1, const int8_t *in2, int8_t *out);
void ts_mul_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* PAD (4-D, constant value) */
typedef struct {
    int32_t in_dims[4], out_dims[4], before[4];
    int32_t value;
} ts_pad_params_t;

void ts_pad_s8(const ts_pad_params_t *p, const int8_t *in, int8_t *out);

/* AVERAGE_POOL_2D / MAX_POOL_2D */
typedef struct {
    int32_t in_h, in_w, ch, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} ts_pool_params_t;

void ts_avgpool_s8(const ts_pool_params_t *p, const int8_t *in, int8_t *out);
void ts_maxpool_s8(const ts_pool_params_t *p, const int8_t *in, int8_t *out);

/* MEAN over any set of the 4 (extended) dimensions */
typedef struct {
    int32_t out_dims[4];        /* 1 on reduced dimensions */
    int32_t red_dims[4];        /* the extent reduced on each dimension, 1 elsewhere */
    int32_t strides[4];         /* input element strides */
    int32_t count;              /* elements averaged per output */
    int32_t plain;              /* 1: same scale and zero point in and out: integer division only */
    int32_t in_zp, out_zp, mult, shift;
} ts_mean_params_t;

void ts_mean_s8(const ts_mean_params_t *p, const int8_t *in, int8_t *out);

/* CONCATENATION: one call per input; copies `outer` blocks of `inner` bytes to stride `out_stride` */
typedef struct {
    int32_t outer, inner, out_stride, out_base;
} ts_concat_params_t;

void ts_concat_s8(const ts_concat_params_t *p, const int8_t *in, int8_t *out);

/* RESHAPE when it cannot alias: a byte copy */
typedef struct {
    int32_t bytes;
} ts_copy_params_t;

void ts_copy(const ts_copy_params_t *p, const int8_t *in, int8_t *out);

/* SOFTMAX int8 -> int8 (output scale 1/256, zero point -128) over the last dimension */
typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_left_shift, diff_min;
} ts_softmax_params_t;

void ts_softmax_s8(const ts_softmax_params_t *p, const int8_t *in, int8_t *out);

/* LOGISTIC int8 -> int8 (output scale 1/256, zero point -128) */
typedef struct {
    int32_t size;
    int32_t in_zp, input_range_radius, input_multiplier, input_left_shift;
} ts_logistic_params_t;

void ts_logistic_s8(const ts_logistic_params_t *p, const int8_t *in, int8_t *out);

/* QUANTIZE float -> int8, QUANTIZE int8 -> int8 (requantize), DEQUANTIZE int8 -> float */
typedef struct {
    int32_t size;
    double scale;               /* the output scale (float in the model, kept exact) */
    int32_t zero_point;
} ts_quant_params_t;

typedef struct {
    int32_t size;
    int32_t in_zp, out_zp, mult, shift;
} ts_requant_params_t;

void ts_quantize_f32_s8(const ts_quant_params_t *p, const float *in, int8_t *out);
void ts_requantize_s8(const ts_requant_params_t *p, const int8_t *in, int8_t *out);
void ts_dequantize_s8_f32(const ts_quant_params_t *p, const int8_t *in, float *out);

/* ============================================ streamed inverted-residual blocks (issue 16, memory)
 * expand 1x1 CONV_2D -> DEPTHWISE_CONV_2D -> project 1x1 CONV_2D [-> residual ADD] computed one
 * output row at a time: only a window of `window_rows` expanded rows (in_w x hidden int8 each) and
 * one depthwise output row exist, in `scratch` (window_rows * dw.in_w * dw.in_c + dw.out_w *
 * dw.out_c bytes). Each stage runs the layer's own kernel (ts_conv2d_s8, ts_dwconv2d_s8,
 * ts_add_s8) on rows, with the layer's parameters and arrays: bit-identical to the separate calls.
 * `scratch` overlaps neither `in` nor `out`; `out` may start up to IrbParams.row_shift() bytes
 * before `in` (exporter/codegen/stream.py): output row r is written only over input rows read for
 * the last time. */
typedef struct {
    ts_conv_params_t expand, dw, project;   /* dw: padding of a folded PAD included */
    ts_binary_params_t add;                 /* flat; used when has_add */
    int32_t has_add, add_x_first, window_rows;
} ts_irb_params_t;

void ts_irb_s8(const ts_irb_params_t *p,
               const int8_t *e_filter, const int32_t *e_bias, const int32_t *e_mult, const int32_t *e_shift,
               const int32_t *e_tapsum,
               const int8_t *d_filter, const int32_t *d_bias, const int32_t *d_mult, const int32_t *d_shift,
               const int8_t *p_filter, const int32_t *p_bias, const int32_t *p_mult, const int32_t *p_shift,
               const int32_t *p_tapsum, const int32_t *a_lut1, const int32_t *a_lut2,
               const int8_t *in, int8_t *out, int8_t *scratch);

/* ======================================================================== activations (issue 17)
 * HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX: add below. */

/* HARD_SWISH int8 (TFLite's int16 fixed-point path; multipliers Q15) */
typedef struct {
    int32_t size, in_zp, out_zp;
    int32_t reluish_mult, reluish_exp, out_mult, out_exp;
} ts_hard_swish_params_t;

void ts_hard_swish_s8(const ts_hard_swish_params_t *p, const int8_t *in, int8_t *out);

/* LEAKY_RELU int8: x >= 0 requantized by id_*, x < 0 by alpha_* (alpha folded in, may be negative) */
typedef struct {
    int32_t size, in_zp, out_zp;
    int32_t id_mult, id_shift, alpha_mult, alpha_shift;
} ts_leaky_relu_params_t;

void ts_leaky_relu_s8(const ts_leaky_relu_params_t *p, const int8_t *in, int8_t *out);

/* RELU int8: requantize, then clamp below at max(-128, out_zp) */
typedef struct {
    int32_t size, in_zp, out_zp, mult, shift, act_min;
} ts_relu_params_t;

void ts_relu_s8(const ts_relu_params_t *p, const int8_t *in, int8_t *out);

/* RELU6 int8 (input and output quantized alike): clamp to [lo, hi] */
typedef struct {
    int32_t size, lo, hi;
} ts_clamp_params_t;

void ts_clamp_s8(const ts_clamp_params_t *p, const int8_t *in, int8_t *out);

/* TANH int8 -> int8 (output scale 1/128, zero point 0); the parameters are LOGISTIC's */
void ts_tanh_s8(const ts_logistic_params_t *p, const int8_t *in, int8_t *out);

/* PRELU int8 with a constant int8 alpha broadcast over the input (alpha_strides 0 on broadcast dims) */
typedef struct {
    int32_t dims[4], alpha_strides[4];
    int32_t in_offset, alpha_offset, out_offset;
    int32_t pos_mult, pos_shift, neg_mult, neg_shift;
} ts_prelu_params_t;

void ts_prelu_s8(const ts_prelu_params_t *p, const int8_t *alpha, const int8_t *in, int8_t *out);

/* LOG_SOFTMAX int8 -> int8 (output scale 16/256, zero point 127) over the last dimension */
typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_left_shift, reverse_mult, reverse_shift, diff_min;
} ts_log_softmax_params_t;

void ts_log_softmax_s8(const ts_log_softmax_params_t *p, const int8_t *in, int8_t *out);

/* L2_NORMALIZATION int8 -> int8 (output scale 1/128, zero point 0) over the last dimension */
typedef struct {
    int32_t outer, depth, in_zp;
} ts_l2norm_params_t;

void ts_l2norm_s8(const ts_l2norm_params_t *p, const int8_t *in, int8_t *out);


/* ============================================================ binary ops and reductions (issue 17)
 * SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL: add below. */

/* SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM: ts_binary_params_t as ADD (MINIMUM/MAXIMUM compare the raw
 * int8 values and use only the shape fields; SQUARED_DIFFERENCE has no fused activation) */
void ts_sub_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void ts_squared_difference_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void ts_minimum_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void ts_maximum_s8(const ts_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* SUM: ts_mean_s8 with the plain input/output rescale (no 1/count). REDUCE_MAX over any set of the 4
 * (extended) dimensions, same scale and zero point in and out */
typedef struct {
    int32_t out_dims[4];        /* 1 on reduced dimensions */
    int32_t red_dims[4];        /* the extent reduced on each dimension, 1 elsewhere */
    int32_t strides[4];         /* input element strides */
} ts_reduce_params_t;

void ts_reduce_max_s8(const ts_reduce_params_t *p, const int8_t *in, int8_t *out);

/* ARG_MAX: input [outer][axis_size][inner] int8, output [outer][inner] int32 (the first maximum's index) */
typedef struct {
    int32_t outer, axis_size, inner;
} ts_argmax_params_t;

void ts_argmax_s8(const ts_argmax_params_t *p, const int8_t *in, int32_t *out);

/* QUANTIZE int32 -> int8 (e.g. ARG_MAX's indices): TFLite's Requantize, ts_requant_params_t */
void ts_requantize_s32_s8(const ts_requant_params_t *p, const int32_t *in, int8_t *out);

/* BATCH_MATMUL: out[b][i][j] = requant(sum_k (lhs(b,i,k) + lhs_offset) * (rhs(b,k,j) + rhs_offset));
 * adj_x / adj_y are element strides, broadcast batch dimensions have batch stride 0 */
typedef struct {
    int32_t batch[3], lhs_batch[3], rhs_batch[3];
    int32_t rows, cols, depth;
    int32_t lhs_row, lhs_k, rhs_k, rhs_col;
    int32_t lhs_offset, rhs_offset, out_offset, mult, shift;
} ts_batch_matmul_params_t;

void ts_batch_matmul_s8(const ts_batch_matmul_params_t *p, const int8_t *lhs, const int8_t *rhs, int8_t *out);


/* ================================== shape, slicing, resize, transposed convolution (issue 17)
 * STRIDED_SLICE, SLICE, SPLIT(_V), PACK, UNPACK, SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_*,
 * TRANSPOSE_CONV: add below. */

/* Strided gather (SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, TRANSPOSE): the output is contiguous,
 * output element (i0..i4) reads in[base + sum(ik * strides[k])]; strides may be negative or 0 */
typedef struct {
    int32_t dims[5];            /* output dims (leading 1s) */
    int32_t strides[5];         /* input element step per output index, per dimension */
    int32_t base;               /* input element of output element 0 */
} ts_gather_params_t;

void ts_gather_s8(const ts_gather_params_t *p, const int8_t *in, int8_t *out);

/* RESIZE_NEAREST_NEIGHBOR: ymap[out_h], xmap[out_w] are the input row/column of each output one
 * (TFLite's float32 index arithmetic, done on the host) */
typedef struct {
    int32_t batches, in_h, in_w, ch, out_h, out_w;
} ts_resize_params_t;

void ts_resize_nn_s8(const ts_resize_params_t *p, const int32_t *ymap, const int32_t *xmap,
                     const int8_t *in, int8_t *out);

/* RESIZE_BILINEAR (TFLite's integer path, 10-bit weights): ytab[3*out_h] = {y0, y1, wy} per output
 * row, xtab[3*out_w] = {x0, x1, wx} per output column (wy, wx: input_y - 1024*y0 and so on) */
void ts_resize_bilinear_s8(const ts_resize_params_t *p, const int32_t *ytab, const int32_t *xtab,
                           const int8_t *in, int8_t *out);

/* TRANSPOSE_CONV int8 (filter [out_c][k_h][k_w][in_c], per-channel mult/shift, bias optional).
 * Each output is computed directly (a gather over the input taps that scatter into it), so no
 * int32 scratch buffer is needed; the int32 sum is the one TFLite Micro accumulates in its scratch. */
typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
    int32_t in_offset, out_offset, act_min, act_max;
} ts_tconv_params_t;

void ts_transpose_conv_s8(const ts_tconv_params_t *p, const int8_t *filter, const int32_t *bias,
                          const int32_t *mult, const int32_t *shift, const int8_t *in, int8_t *out);


#ifdef __cplusplus
}
#endif

#endif /* TS_KERNELS_H */
