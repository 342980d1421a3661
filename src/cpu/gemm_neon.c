/*
 * aarch64 NEON matrix-product tiles (lm_gemm_fn, see cpu.h) for the Q8_0 and Q4_0 weight types
 * (activations in Q8_0). Other types keep gemm = NULL and callers loop over vec_dot.
 *
 * Tile: 4 weight rows x NT tokens (NT = 4, 2, 1, the largest that fits, so any T works). For
 * each 32-block the 4 weight blocks are loaded (and, for Q4_0, unpacked to int8) once and reused for
 * the NT tokens; each (row, token) int8 dot product gives an int32x4 of partial sums, and three
 * pairwise adds fold the 4 rows' partials into one vector [r0 r1 r2 r3], which is scaled by
 * d_w[r] * d_x[t] and accumulated in float, so the accumulators are NT float32x4 registers and the
 * results for 4 consecutive rows of one token are stored with one vst1q. Rows left over after the
 * last full group of 4 go through row1, which does the same float operations for one row, so each
 * Y entry is a function of its (row, token) alone: any split of [r0, r1) or of the tokens across
 * calls or threads gives identical bits.
 *
 * Like arm_neon.c, every kernel exists as a dotprod (SDOT) and a plain-NEON (SMULL + SADALP) copy,
 * picked at init from getauxval(AT_HWCAP) & HWCAP_ASIMDDP, with $LLAMITA_NEON_NO_DOTPROD forcing the
 * plain one. Results equal vec_dot's integer block sums exactly; only float summation order differs.
 */
#include "cpu.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

#define LM_AI static inline __attribute__((always_inline))

LM_AI float h2f(lm_fp16 h) {
    __fp16 t;
    memcpy(&t, &h, sizeof t);
    return (float)t;
}

/* acc + the 16 products a[i]*b[i] spread over the 4 lanes (see arm_neon.c's dot_s8) */
LM_AI int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b, const int dp) {
#if defined(__ARM_FEATURE_DOTPROD)
    if (dp) return vdotq_s32(acc, a, b);
#endif
    (void)dp;
    int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
}

/* One 32-block of a weight row as int8 halves (elements 0..15, 16..31) and its scale. q4: the row
 * is Q4_0 (nibble - 8), else Q8_0. */
LM_AI void load_w(const uint8_t *row, int64_t b, const int q4, int8x16_t *lo, int8x16_t *hi, lm_fp16 *d) {
    if (q4) {
        const lm_block_q4_0 *blk = (const lm_block_q4_0 *)row + b;
        const uint8x16_t q = vld1q_u8(blk->qs);
        *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), vdupq_n_s8(8));
        *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
        *d = blk->d;
    } else {
        const lm_block_q8_0 *blk = (const lm_block_q8_0 *)row + b;
        *lo = vld1q_s8(blk->qs);
        *hi = vld1q_s8(blk->qs + 16);
        *d = blk->d;
    }
}

/* Y[t*ldy + 0..3] = dot(W rows 0..3, X rows t) for t < NT; nb blocks per row. */
LM_AI void tile4(int64_t nb, const uint8_t *W, size_t wrs, const uint8_t *X, size_t xrs, float *Y, int64_t ldy,
                 const int NT, const int q4, const int dp) {
    float32x4_t acc[4]; /* [NT] rows 0..3 of token t; NT is a constant, the loops unroll into registers */
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t wl[4], wh[4];
        lm_fp16 d[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) load_w(W + (size_t)r * wrs, b, q4, &wl[r], &wh[r], &d[r]);
        uint16x4_t wd = vdup_n_u16(d[0]); /* lane r: row r's fp16 scale */
        wd = vset_lane_u16(d[1], wd, 1);
        wd = vset_lane_u16(d[2], wd, 2);
        wd = vset_lane_u16(d[3], wd, 3);
        const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(wd));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const lm_block_q8_0 *xb = (const lm_block_q8_0 *)(X + (size_t)t * xrs) + b;
            const int8x16_t xl = vld1q_s8(xb->qs), xh = vld1q_s8(xb->qs + 16);
            int32x4_t p[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) p[r] = dot_s8(dot_s8(vdupq_n_s32(0), wl[r], xl, dp), wh[r], xh, dp);
            const int32x4_t s = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3])); /* [r0 r1 r2 r3] */
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_n_f32(dw, h2f(xb->d)));
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) vst1q_f32(Y + t * ldy, acc[t]);
}

/* Y[t*ldy] = dot(W row, X row t) for t < T, one row alone, with exactly the float operations of
 * tile4's lane for that row (exact integer block sum, then acc = fma(sum, d_w*d_x, acc) per block),
 * so a row gets the same bits whether it falls in a 4-row tile or not. */
LM_AI void row1(int64_t nb, const uint8_t *W, const uint8_t *X, size_t xrs, float *Y, int64_t ldy, int64_t T,
                const int q4, const int dp) {
    for (int64_t t = 0; t < T; t++) {
        const lm_block_q8_0 *xb = (const lm_block_q8_0 *)(X + (size_t)t * xrs);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            int8x16_t wl, wh;
            lm_fp16 wd;
            load_w(W, b, q4, &wl, &wh, &wd);
            int32x4_t p = dot_s8(dot_s8(vdupq_n_s32(0), wl, vld1q_s8(xb[b].qs), dp), wh, vld1q_s8(xb[b].qs + 16), dp);
            acc = fmaf((float)vaddvq_s32(p), h2f(wd) * h2f(xb[b].d), acc);
        }
        Y[t * ldy] = acc;
    }
}

LM_AI void gemm_q(int64_t K, const void *restrict W, size_t w_row_size, const void *restrict X, size_t x_row_size,
                  int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1, const int q4, const int dp) {
    const int64_t nb = K / 32;
    const uint8_t *w = W, *x = X;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *wr = w + (size_t)r * w_row_size;
        int64_t t = 0;
        for (; t + 4 <= T; t += 4)
            tile4(nb, wr, w_row_size, x + (size_t)t * x_row_size, x_row_size, Y + t * ldy + r, ldy, 4, q4, dp);
        if (t + 2 <= T) {
            tile4(nb, wr, w_row_size, x + (size_t)t * x_row_size, x_row_size, Y + t * ldy + r, ldy, 2, q4, dp);
            t += 2;
        }
        if (t < T) tile4(nb, wr, w_row_size, x + (size_t)t * x_row_size, x_row_size, Y + t * ldy + r, ldy, 1, q4, dp);
    }
    for (; r < r1; r++) row1(nb, w + (size_t)r * w_row_size, x, x_row_size, Y + r, ldy, T, q4, dp);
}

#define GEMM_PAIR(name, q4)                                                                                   \
    static void name##_dp(int64_t K, const void *restrict W, size_t wrs, const void *restrict X, size_t xrs, \
                          int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {               \
        gemm_q(K, W, wrs, X, xrs, T, Y, ldy, r0, r1, q4, 1);                                                 \
    }                                                                                                         \
    static void name##_nodp(int64_t K, const void *restrict W, size_t wrs, const void *restrict X, size_t xrs, \
                            int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {             \
        gemm_q(K, W, wrs, X, xrs, T, Y, ldy, r0, r1, q4, 0);                                                 \
    }
GEMM_PAIR(gemm_q8_0, 0)
GEMM_PAIR(gemm_q4_0, 1)

/* same rule as arm_neon.c's neon_use_dotprod */
static int gemm_use_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD) && defined(__linux__)
    const char *off = getenv("LLAMITA_NEON_NO_DOTPROD");
    if (off && *off && strcmp(off, "0") != 0) return 0;
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}

void lm_cpu_init_gemm_neon(lm_kernels *k) {
    const int dp = gemm_use_dotprod();
    k->gemm[LM_TYPE_Q8_0] = dp ? gemm_q8_0_dp : gemm_q8_0_nodp;
    k->gemm[LM_TYPE_Q4_0] = dp ? gemm_q4_0_dp : gemm_q4_0_nodp;
}
#endif
