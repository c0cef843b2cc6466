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

/* ======================================================================== activations (issue 17)
 * HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU, RELU6, L2_NORMALIZATION, LOG_SOFTMAX: add below. */


/* ============================================================ binary ops and reductions (issue 17)
 * SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX, SUM, ARG_MAX, BATCH_MATMUL: add below. */


/* ================================== shape, slicing, resize, transposed convolution (issue 17)
 * STRIDED_SLICE, SLICE, SPLIT(_V), PACK, UNPACK, SQUEEZE, EXPAND_DIMS, TRANSPOSE, RESIZE_*,
 * TRANSPOSE_CONV: add below. */


#ifdef __cplusplus
}
#endif

#endif /* TS_KERNELS_H */
