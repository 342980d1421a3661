/*
 * Tensor element types: block layouts exactly as in ggml / the GGUF spec, and the scalar reference
 * (de)quantizers and dot products. These scalar routines are the oracle every SIMD kernel is tested
 * against; they stay for good.
 *
 * Dot products follow ggml's scheme: a weight row of type T is multiplied with an activation row
 * that was first converted to T's `vec_dot_type` (F32 -> F32, F16 -> F16, BF16 -> BF16,
 * Q4_0/Q5_0/Q8_0 -> Q8_0, Q4_1/Q5_1 -> Q8_1, K-quants -> Q8_K). This reproduces llama.cpp's rounding
 * and lets fast kernels work in integers.
 */
#ifndef LM_QUANT_H
#define LM_QUANT_H
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids, as stored in GGUF tensor infos. Ids not listed here are unsupported. */
enum lm_type {
    LM_TYPE_F32 = 0,
    LM_TYPE_F16 = 1,
    LM_TYPE_Q4_0 = 2,
    LM_TYPE_Q4_1 = 3,
    LM_TYPE_Q5_0 = 6,
    LM_TYPE_Q5_1 = 7,
    LM_TYPE_Q8_0 = 8,
    LM_TYPE_Q8_1 = 9,
    LM_TYPE_Q2_K = 10,
    LM_TYPE_Q3_K = 11,
    LM_TYPE_Q4_K = 12,
    LM_TYPE_Q5_K = 13,
    LM_TYPE_Q6_K = 14,
    LM_TYPE_Q8_K = 15,
    LM_TYPE_BF16 = 30,
    LM_TYPE_COUNT = 31
};

typedef uint16_t lm_fp16; /* IEEE binary16 bits */
typedef uint16_t lm_bf16; /* bfloat16 bits */

#define LM_QK4_0 32
#define LM_QK4_1 32
#define LM_QK5_0 32
#define LM_QK5_1 32
#define LM_QK8_0 32
#define LM_QK8_1 32
#define LM_QK_K 256
#define LM_K_SCALE_SIZE 12

/* x = d * q, q in [-8, 7] (nibble - 8); low nibbles hold elements 0..15, high nibbles 16..31 */
typedef struct { lm_fp16 d; uint8_t qs[LM_QK4_0 / 2]; } lm_block_q4_0;
/* x = d * q + m, q in [0, 15] */
typedef struct { lm_fp16 d; lm_fp16 m; uint8_t qs[LM_QK4_1 / 2]; } lm_block_q4_1;
/* 5-bit: low 4 bits in qs (as q4_0), 5th bits in qh (bit j for element j); x = d * (q - 16) */
typedef struct { lm_fp16 d; uint8_t qh[4]; uint8_t qs[LM_QK5_0 / 2]; } lm_block_q5_0;
typedef struct { lm_fp16 d; lm_fp16 m; uint8_t qh[4]; uint8_t qs[LM_QK5_1 / 2]; } lm_block_q5_1;
typedef struct { lm_fp16 d; int8_t qs[LM_QK8_0]; } lm_block_q8_0;
/* activation format for Q4_1/Q5_1: s = d * sum(qs) */
typedef struct { lm_fp16 d; lm_fp16 s; int8_t qs[LM_QK8_1]; } lm_block_q8_1;
/* K-quants: super-blocks of 256 */
typedef struct { uint8_t scales[LM_QK_K / 16]; uint8_t qs[LM_QK_K / 4]; lm_fp16 d; lm_fp16 dmin; } lm_block_q2_K;
typedef struct { uint8_t hmask[LM_QK_K / 8]; uint8_t qs[LM_QK_K / 4]; uint8_t scales[12]; lm_fp16 d; } lm_block_q3_K;
typedef struct { lm_fp16 d; lm_fp16 dmin; uint8_t scales[LM_K_SCALE_SIZE]; uint8_t qs[LM_QK_K / 2]; } lm_block_q4_K;
typedef struct { lm_fp16 d; lm_fp16 dmin; uint8_t scales[LM_K_SCALE_SIZE]; uint8_t qh[LM_QK_K / 8]; uint8_t qs[LM_QK_K / 2]; } lm_block_q5_K;
typedef struct { uint8_t ql[LM_QK_K / 2]; uint8_t qh[LM_QK_K / 4]; int8_t scales[LM_QK_K / 16]; lm_fp16 d; } lm_block_q6_K;
/* activation format for K-quants: fp32 scale, bsums = sums of groups of 16 qs */
typedef struct { float d; int8_t qs[LM_QK_K]; int16_t bsums[LM_QK_K / 16]; } lm_block_q8_K;

static_assert(sizeof(lm_block_q4_0) == 18, "q4_0 size");
static_assert(sizeof(lm_block_q4_1) == 20, "q4_1 size");
static_assert(sizeof(lm_block_q5_0) == 22, "q5_0 size");
static_assert(sizeof(lm_block_q5_1) == 24, "q5_1 size");
static_assert(sizeof(lm_block_q8_0) == 34, "q8_0 size");
static_assert(sizeof(lm_block_q8_1) == 36, "q8_1 size");
static_assert(sizeof(lm_block_q2_K) == 84, "q2_K size");
static_assert(sizeof(lm_block_q3_K) == 110, "q3_K size");
static_assert(sizeof(lm_block_q4_K) == 144, "q4_K size");
static_assert(sizeof(lm_block_q5_K) == 176, "q5_K size");
static_assert(sizeof(lm_block_q6_K) == 210, "q6_K size");
static_assert(sizeof(lm_block_q8_K) == 292, "q8_K size");

/* n elements; n must be a multiple of the type's block size. */
typedef void (*lm_to_float_fn)(const void *restrict x, float *restrict y, int64_t n);
/* from_float: Q8_0 / Q8_1 / Q8_K reproduce llama.cpp's activation quantization bit for bit (x86 path:
 * d = amax/127, q = round-half-even(x * 127/amax); Q8_K: d = max/-127 for the signed max). The other
 * types use llamita's own search-based quantizer (error at or below llama-quantize's without imatrix).
 * Any input is safe (NaN/inf give garbage blocks, never undefined behaviour). */
typedef void (*lm_from_float_fn)(const float *restrict x, void *restrict y, int64_t n);
/* *s = dot(x[0..n) of this type, y[0..n) of vec_dot_type) */
typedef void (*lm_vec_dot_fn)(int64_t n, float *restrict s, const void *restrict x, const void *restrict y);

typedef struct lm_type_traits {
    const char *name;           /* "Q4_K" */
    int64_t blck_size;          /* elements per block */
    size_t type_size;           /* bytes per block */
    enum lm_type vec_dot_type;  /* activation format for vec_dot */
    lm_to_float_fn to_float;    /* dequantize (every type) */
    lm_from_float_fn from_float;/* reference quantize (every type) */
    lm_vec_dot_fn vec_dot;      /* NULL for activation-only types (Q8_1, Q8_K) */
} lm_type_traits;

/* Traits of type id t, or NULL for an unknown / unsupported id. */
const lm_type_traits *lm_type_traits_get(uint32_t t);
const char *lm_type_name(uint32_t t); /* "?" when unknown */
/* Bytes of a row of ne0 elements (ne0 a multiple of the block size). Returns 0 for an unknown type,
 * ne0 < 0, ne0 not a multiple of the block size, or a size that overflows size_t. */
size_t lm_row_size(uint32_t t, int64_t ne0);
/* Parses "Q4_K", "q8_0", "F16", ... into a type id; -1 if unknown. */
int lm_type_from_name(const char *name);

/* Scalar conversions (round to nearest even, like F16C / ggml). fp16: subnormals, inf exact; NaN stays
 * NaN with its sign, made quiet (as F16C does). bf16 -> fp32 is a plain shift; fp32 -> bf16 makes NaN
 * quiet, otherwise rounds to nearest even. */
float lm_fp16_to_fp32(lm_fp16 h);
lm_fp16 lm_fp32_to_fp16(float f);
float lm_bf16_to_fp32(lm_bf16 h);
lm_bf16 lm_fp32_to_bf16(float f);

#endif
