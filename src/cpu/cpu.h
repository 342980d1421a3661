/*
 * CPU kernels behind one dispatch.
 *
 * Levels: "scalar" (portable C: the quant.c reference routines, always available), "avx2"
 * (x86-64 AVX2+FMA+F16C), "avx512" (AVX-512 F/BW/VL/DQ + VNNI, BF16 where it pays), "neon"
 * (aarch64 NEON + dotprod when present). Each level starts from the level below it and overrides
 * the entries it implements, so a table is always complete.
 *
 * One binary runs on any x86-64 CPU: the SIMD files are compiled with their own -m flags and
 * only entered after CPU detection. All intrinsics live in the src/cpu/<arch>_*.c files.
 *
 * Every kernel must agree with the scalar reference (tests/test_kernels.c compares them, on sizes
 * that are not multiples of the block size where the format allows).
 */
#ifndef LM_CPU_H
#define LM_CPU_H
#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* Matrix product over a row range, for batched prompt processing:
 *   for t in [0, T), r in [r0, r1):  Y[t * ldy + r] = dot(W row r, X row t)
 * W: weight rows of the kernel's type, w_row_size bytes each (the mmapped layout, never repacked);
 * X: T activation rows already converted to the type's vec_dot_type, x_row_size bytes each;
 * K: elements per row. Results equal vec_dot's up to float summation order. */
typedef void (*lm_gemm_fn)(int64_t K, const void *restrict W, size_t w_row_size, const void *restrict X,
                           size_t x_row_size, int64_t T, float *restrict Y, int64_t ldy, int64_t r0,
                           int64_t r1);

/* Matrix-vector product over a row range, for decoding one token:
 *   for r in [r0, r1):  s[r] = dot(W row r, x)
 * W as for lm_gemm_fn, x one activation row in the type's vec_dot_type. Results are bit-identical to
 * vec_dot on each row (the kernel shares the work that depends only on x between rows: several rows
 * side by side, or x prepared once for the whole range). Where a type has none, the callers loop over
 * vec_dot (the better way to stream some types from memory: see the ISA files). */
typedef void (*lm_gemv_fn)(int64_t K, const void *restrict W, size_t w_row_size, const void *restrict x,
                           float *restrict s, int64_t r0, int64_t r1);

typedef struct lm_kernels {
    const char *name;                          /* "scalar", "avx2", "avx512", "neon" */
    lm_vec_dot_fn vec_dot[LM_TYPE_COUNT];      /* weight type -> dot with a vec_dot_type row */
    lm_from_float_fn from_float[LM_TYPE_COUNT];/* quantize/convert rows (activation formats: F16,
                                                  BF16, Q8_0, Q8_1, Q8_K; others = reference) */
    lm_to_float_fn to_float[LM_TYPE_COUNT];    /* dequantize rows */
    lm_gemm_fn gemm[LM_TYPE_COUNT];            /* NULL: callers loop over vec_dot */
    lm_gemv_fn gemv[LM_TYPE_COUNT];            /* NULL: callers loop over vec_dot */
    /* attention over the F16 KV cache */
    void (*dot_f16)(int64_t n, float *restrict s, const lm_fp16 *restrict x, const lm_fp16 *restrict y);
    void (*axpy_f16)(int64_t n, float *restrict y, float a, const lm_fp16 *restrict x); /* y += a*x */
    void (*fp32_to_fp16)(const float *restrict x, lm_fp16 *restrict y, int64_t n);
    void (*fp16_to_fp32)(const lm_fp16 *restrict x, float *restrict y, int64_t n);
} lm_kernels;

/* The best level this CPU supports, detected once (thread-safe). The environment variable
 * LLAMITA_CPU=scalar|avx2|avx512|neon caps the level (for testing and comparison). */
const lm_kernels *lm_cpu_kernels(void);
/* A given level, or NULL when this CPU (or this build) lacks it. For tests and `llamita bench`. */
const lm_kernels *lm_cpu_kernels_level(const char *name);
/* Names of the levels usable here, best last; returns the count (<= max). */
int lm_cpu_levels(const char **names, int max);

/* Per-arch initialisers, each defined in its own file (empty bodies where not yet written).
 * They override entries of a table already filled by the level below. */
void lm_cpu_init_scalar(lm_kernels *k);
#if defined(__x86_64__) || defined(_M_X64)
void lm_cpu_init_avx2(lm_kernels *k);        /* src/cpu/x86_avx2.c: vec_dot, from_float, to_float, f16 */
void lm_cpu_init_gemm_avx2(lm_kernels *k);   /* src/cpu/gemm_avx2.c: gemm */
void lm_cpu_init_avx512(lm_kernels *k);      /* src/cpu/x86_avx512.c */
void lm_cpu_init_gemm_avx512(lm_kernels *k); /* src/cpu/gemm_avx512.c */
#endif
#if defined(__aarch64__)
void lm_cpu_init_neon(lm_kernels *k);        /* src/cpu/arm_neon.c (dotprod at run time if present) */
void lm_cpu_init_gemm_neon(lm_kernels *k);   /* src/cpu/gemm_neon.c */
#endif
#endif
