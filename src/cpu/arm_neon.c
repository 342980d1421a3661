/*
 * aarch64 NEON kernels (see cpu.h): vec_dot for every weight type against its vec_dot_type,
 * from_float for the activation formats (Q8_0, Q8_1, Q8_K, F16, BF16; bytes identical to the scalar
 * reference in quant.c for every input, NaN included, even where quant.h leaves them unspecified), to_float for the common types (F16, BF16, Q8_0,
 * Q4_0, Q4_K, Q5_K, Q6_K; bit-identical to quant.c when both are compiled without FP contraction,
 * as gcc does in -std=c11 mode) and the F16 attention helpers.
 *
 * Integer dot products: with the ARMv8.2 dot-product extension (FEAT_DotProd, "asimddp" in
 * /proc/cpuinfo) each 16-byte int8 x int8 product goes through one SDOT; without it, through
 * SMULL/SMULL2 + SADALP. This file is compiled with -march=armv8.2-a+dotprod+fp16 so that SDOT can
 * be emitted, but every kernel exists twice (see LM_NEON_PAIR): the "_dp" copy uses SDOT, the "_nodp"
 * copy only ARMv8.0 Advanced SIMD, and lm_cpu_init_neon picks one set at run time from
 * getauxval(AT_HWCAP) & HWCAP_ASIMDDP. $LLAMITA_NEON_NO_DOTPROD=1 (any value but "" / "0") forces
 * the plain-NEON set on a CPU that has dotprod, for tests and comparisons. No kernel uses FP16
 * arithmetic (only the ARMv8.0 FCVTL/FCVTN conversions), so the "+fp16" flag is never required at
 * run time.
 *
 * The dotprod and non-dotprod reductions group the 16 products of a 16-byte pair differently across
 * the 4 int32 lanes, but every integer sum below is reduced over all lanes (or scaled by a factor that
 * is the same for all 4 lanes) before it is used, so both paths give the same integer sums; floats
 * differ from the scalar reference only by summation order.
 *
 * All loads are unaligned-safe (vld1 has no alignment requirement; GGUF blocks are packed).
 */
#include "cpu.h"
#include "gemv.h"

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

/* ------------------------------------------------------------------------------------------------ */
/* helpers                                                                                          */

/* fp16 bits -> float, exact (one FCVT; same result as lm_fp16_to_fp32, NaNs made quiet). */
LM_AI float h2f(lm_fp16 h) {
    __fp16 t;
    memcpy(&t, &h, sizeof t);
    return (float)t;
}

/* acc + the 16 products a[i]*b[i], spread over the 4 lanes (which lane gets which product depends on
 * the path; only lane sums, or lanes scaled by one common factor, may be used). dp is a compile-time
 * constant at every call site (the kernels are always_inline into a _dp and a _nodp wrapper). */
LM_AI int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b, const int dp) {
#if defined(__ARM_FEATURE_DOTPROD)
    if (dp) return vdotq_s32(acc, a, b);
#endif
    (void)dp;
    /* |a*b| <= 128*128 = 16384 fits int16; each half is accumulated separately so two such products
     * are never added in 16 bits */
    int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
}

/* dot of two 32-byte int8 runs: a0|a1 with b[0..32) */
LM_AI int32x4_t dot32(int8x16_t a0, int8x16_t a1, const int8_t *b, const int dp) {
    return dot_s8(dot_s8(vdupq_n_s32(0), a0, vld1q_s8(b), dp), a1, vld1q_s8(b + 16), dp);
}

LM_AI int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

/* Round to nearest even and clamp into [lo, hi], lane-wise, exactly like quant.c's lm_round_clamp:
 * values <= lo and NaN give lo, values >= hi give hi. */
LM_AI int32x4_t round_clamp(float32x4_t v, int lo, int hi) {
    int32x4_t r = vminq_s32(vcvtnq_s32_f32(v), vdupq_n_s32(hi)); /* FCVTNS saturates, NaN -> 0 */
    uint32x4_t above = vcgtq_f32(v, vdupq_n_f32((float)lo));    /* false for NaN */
    return vbslq_s32(above, r, vdupq_n_s32(lo));
}

/* 16 int32 (each already in [-128, 127]) -> 16 int8 */
LM_AI int8x16_t narrow16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

/* Q5_0 / Q5_1 5th bits: qh (32 bits, bit j for element j) -> 0x10 / 0 per byte, for elements
 * 0..15 (*h0) and 16..31 (*h1). */
LM_AI void q5_hbits(const uint8_t *qh, uint8x16_t *h0, uint8x16_t *h1) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bm = vld1q_u8(bit), b4 = vdupq_n_u8(0x10);
    uint8x16_t v01 = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
    uint8x16_t v23 = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
    *h0 = vandq_u8(vtstq_u8(v01, bm), b4);
    *h1 = vandq_u8(vtstq_u8(v23, bm), b4);
}

/* Q4_K / Q5_K 6-bit scales and mins of the 8 sub-blocks, unpacked from the 12 packed bytes s
 * (same result as quant.c's lm_k4_get_scale_min for j = 0..7). */
LM_AI void k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    uint32_t sc_lo = w0 & 0x3f3f3f3fu, mn_lo = w1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
    uint32_t mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
    memcpy(sc, &sc_lo, 4);
    memcpy(sc + 4, &sc_hi, 4);
    memcpy(mn, &mn_lo, 4);
    memcpy(mn + 4, &mn_hi, 4);
}

/* sum over the 8 sub-blocks of mn[j] * (bsums[2j] + bsums[2j+1]) (Q4_K / Q5_K min correction) */
LM_AI int32_t k4_min_sum(const uint8_t mn[8], const int16_t *bsums) {
    int16x8_t bs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8)); /* |.| <= 4096 */
    int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    int32x4_t p = vmull_s16(vget_low_s16(bs), vget_low_s16(m));
    p = vmlal_high_s16(p, bs, m);
    return vaddvq_s32(p);
}

/* Each kernel below is an always_inline function with a trailing `const int dp`; LM_NEON_PAIR makes
 * the two real entry points name_dp / name_nodp with the vec_dot signature. */
#define LM_NEON_PAIR(name)                                                                          \
    static void name##_dp(int64_t n, float *restrict s, const void *restrict x, const void *restrict y) { \
        name(n, s, x, y, 1);                                                                        \
    }                                                                                               \
    static void name##_nodp(int64_t n, float *restrict s, const void *restrict x, const void *restrict y) { \
        name(n, s, x, y, 0);                                                                        \
    }

/* gemv entry points (gemv.h) name_dp_gemv / name_nodp_gemv from name_rows(R, ..., pf, dp). */
#define LM_NEON_GEMV(name)                                                                          \
    LM_AI void name##_dp_rows(const int R, int64_t n, float *restrict s, const char *restrict vx, size_t xs, \
                              const void *restrict vy, const char *pf) {                            \
        name##_rows(R, n, s, vx, xs, vy, pf, 1);                                                    \
    }                                                                                               \
    LM_AI void name##_nodp_rows(const int R, int64_t n, float *restrict s, const char *restrict vx, size_t xs, \
                                const void *restrict vy, const char *pf) {                          \
        name##_rows(R, n, s, vx, xs, vy, pf, 0);                                                    \
    }                                                                                               \
    DEFINE_GEMV(name##_dp)                                                                          \
    DEFINE_GEMV(name##_nodp)

/* ------------------------------------------------------------------------------------------------ */
/* 32-element block types                                                                           */

LM_AI int32x4_t q8_0_block(const lm_block_q8_0 *x, const lm_block_q8_0 *y, const int dp) {
    return dot32(vld1q_s8(x->qs), vld1q_s8(x->qs + 16), y->qs, dp);
}

LM_AI int32x4_t q4_0_block(const lm_block_q4_0 *x, const lm_block_q8_0 *y, const int dp) {
    const uint8x16_t q = vld1q_u8(x->qs);
    const int8x16_t eight = vdupq_n_s8(8);
    int8x16_t lo = vsubq_s8(s8(vandq_u8(q, vdupq_n_u8(15))), eight);
    int8x16_t hi = vsubq_s8(s8(vshrq_n_u8(q, 4)), eight);
    return dot32(lo, hi, y->qs, dp);
}

/* NAME_rows: R rows (R = 1: vec_dot; GEMV_ROWS: gemv, see gemv.h) of 32-element blocks XB against
 * Q8_0 activations, each row in exactly the one-row order: block pairs into two accumulators, then
 * an odd last block added in float. NAME: the vec_dot (dp as its last argument). */
#define DEFINE_NEON_B32(NAME, XB, BLOCK)                                                            \
    LM_AI void NAME##_rows(const int R, int64_t n, float *restrict s, const char *restrict vx, size_t xs, \
                           const void *restrict vy, const char *pf, const int dp) {                 \
        const lm_block_q8_0 *y = vy;                                                                \
        const XB *x[GEMV_ROWS];                                                                     \
        float32x4_t acc0[GEMV_ROWS], acc1[GEMV_ROWS];                                               \
        GEMV_UNROLL for (int r = 0; r < R; r++) {                                                   \
            x[r] = (const XB *)(const void *)(vx + (size_t)r * xs);                                 \
            acc0[r] = vdupq_n_f32(0.0f);                                                            \
            acc1[r] = vdupq_n_f32(0.0f);                                                            \
        }                                                                                           \
        const int64_t nb = n / 32;                                                                  \
        int64_t b = 0;                                                                              \
        for (; b + 1 < nb; b += 2) {                                                                \
            gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(XB), (size_t)R * (size_t)(b + 2) * sizeof(XB)); \
            const float dy0 = h2f(y[b].d), dy1 = h2f(y[b + 1].d);                                   \
            GEMV_UNROLL for (int r = 0; r < R; r++) {                                               \
                const int32x4_t p0 = BLOCK(&x[r][b], &y[b], dp), p1 = BLOCK(&x[r][b + 1], &y[b + 1], dp); \
                acc0[r] = vfmaq_n_f32(acc0[r], vcvtq_f32_s32(p0), h2f(x[r][b].d) * dy0);            \
                acc1[r] = vfmaq_n_f32(acc1[r], vcvtq_f32_s32(p1), h2f(x[r][b + 1].d) * dy1);        \
            }                                                                                       \
        }                                                                                           \
        for (int r = 0; r < R; r++) {                                                               \
            float sum = vaddvq_f32(vaddq_f32(acc0[r], acc1[r]));                                    \
            for (int64_t bt = b; bt < nb; bt++)                                                     \
                sum += (float)vaddvq_s32(BLOCK(&x[r][bt], &y[bt], dp)) * (h2f(x[r][bt].d) * h2f(y[bt].d)); \
            s[r] = sum;                                                                             \
        }                                                                                           \
    }                                                                                               \
    LM_AI void NAME(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) { \
        NAME##_rows(1, n, s, vx, 0, vy, NULL, dp);                                                  \
    }                                                                                               \
    LM_NEON_PAIR(NAME)                                                                              \
    LM_NEON_GEMV(NAME)

DEFINE_NEON_B32(vd_q8_0, lm_block_q8_0, q8_0_block)
DEFINE_NEON_B32(vd_q4_0, lm_block_q4_0, q4_0_block)

/* x = d*q + m (q in 0..15): sum(x*y) = dx*dy*isum + m*s_y */
LM_AI void vd_q4_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q4_1 *x = vx;
    const lm_block_q8_1 *y = vy;
    const int64_t nb = n / LM_QK4_1;
    float32x4_t acc = vdupq_n_f32(0.0f);
    float msum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        int32x4_t p = dot32(s8(vandq_u8(q, vdupq_n_u8(15))), s8(vshrq_n_u8(q, 4)), y[b].qs, dp);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
        msum += h2f(x[b].m) * h2f(y[b].s);
    }
    *s = vaddvq_f32(acc) + msum;
}
LM_NEON_PAIR(vd_q4_1)

LM_AI void vd_q5_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q5_0 *x = vx;
    const lm_block_q8_0 *y = vy;
    const int64_t nb = n / LM_QK5_0;
    float32x4_t acc = vdupq_n_f32(0.0f);
    const int8x16_t sixteen = vdupq_n_s8(16);
    for (int64_t b = 0; b < nb; b++) {
        uint8x16_t h0, h1;
        q5_hbits(x[b].qh, &h0, &h1);
        const uint8x16_t q = vld1q_u8(x[b].qs);
        int8x16_t lo = vsubq_s8(s8(vorrq_u8(vandq_u8(q, vdupq_n_u8(15)), h0)), sixteen);
        int8x16_t hi = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(q, 4), h1)), sixteen);
        int32x4_t p = dot32(lo, hi, y[b].qs, dp);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
    }
    *s = vaddvq_f32(acc);
}
LM_NEON_PAIR(vd_q5_0)

LM_AI void vd_q5_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q5_1 *x = vx;
    const lm_block_q8_1 *y = vy;
    const int64_t nb = n / LM_QK5_1;
    float32x4_t acc = vdupq_n_f32(0.0f);
    float msum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        uint8x16_t h0, h1;
        q5_hbits(x[b].qh, &h0, &h1);
        const uint8x16_t q = vld1q_u8(x[b].qs);
        int8x16_t lo = s8(vorrq_u8(vandq_u8(q, vdupq_n_u8(15)), h0));
        int8x16_t hi = s8(vorrq_u8(vshrq_n_u8(q, 4), h1));
        int32x4_t p = dot32(lo, hi, y[b].qs, dp);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
        msum += h2f(x[b].m) * h2f(y[b].s);
    }
    *s = vaddvq_f32(acc) + msum;
}
LM_NEON_PAIR(vd_q5_1)

/* ------------------------------------------------------------------------------------------------ */
/* K-quants (super-blocks of 256) against Q8_K                                                      */

LM_AI void vd_q2_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q2_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        /* scales: low nibble = scale, high nibble = min, one byte per 16-element sub-block */
        const uint8x16_t scv = vld1q_u8(x[b].scales);
        uint8_t sc[16];
        vst1q_u8(sc, vandq_u8(scv, vdupq_n_u8(15)));
        int16x8_t mlo = vreinterpretq_s16_u16(vmovl_u8(vshr_n_u8(vget_low_u8(scv), 4)));
        int16x8_t mhi = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(scv, 4)));
        int16x8_t bs0 = vld1q_s16(y[b].bsums), bs1 = vld1q_s16(y[b].bsums + 8);
        int32x4_t mp = vmull_s16(vget_low_s16(mlo), vget_low_s16(bs0));
        mp = vmlal_high_s16(mp, mlo, bs0);
        mp = vmlal_s16(mp, vget_low_s16(mhi), vget_low_s16(bs1));
        mp = vmlal_high_s16(mp, mhi, bs1);
        const int32_t msum = vaddvq_s32(mp);

        int32x4_t acc = vdupq_n_s32(0);
        const int8_t *q8 = y[b].qs;
        for (int h = 0; h < 2; h++) {
            const uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * h), q1 = vld1q_u8(x[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                /* shift 2j: elements h*128 + j*32 + (0..15 from q0 | 16..31 from q1), sub-blocks
                 * h*8 + 2j and h*8 + 2j + 1 */
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * j));
                int32x4_t p0 = dot_s8(vdupq_n_s32(0), s8(vandq_u8(vshlq_u8(q0, shift), m3)), vld1q_s8(q8), dp);
                int32x4_t p1 = dot_s8(vdupq_n_s32(0), s8(vandq_u8(vshlq_u8(q1, shift), m3)), vld1q_s8(q8 + 16), dp);
                acc = vmlaq_n_s32(acc, p0, sc[8 * h + 2 * j]);
                acc = vmlaq_n_s32(acc, p1, sc[8 * h + 2 * j + 1]);
                q8 += 32;
            }
        }
        const float dy = y[b].d;
        sum += dy * h2f(x[b].d) * (float)vaddvq_s32(acc) - dy * h2f(x[b].dmin) * (float)msum;
    }
    *s = sum;
}
LM_NEON_PAIR(vd_q2_K)

/* Q3_K's 16 signed 6-bit scales from the 12 packed bytes s (as quant.c's lm_q3k_unpack_scales):
 * scale i = (low nibble of s[i] for i < 8, high nibble of s[i-8] for i >= 8)
 *           | ((s[8 + i%4] >> 2*(i/4)) & 3) << 4, minus 32. */
LM_AI int8x16_t q3k_scales(const uint8_t *s) {
    static const int8_t shr[16] = {0, 0, 0, 0, -2, -2, -2, -2, -4, -4, -4, -4, -6, -6, -6, -6};
    const uint8x8_t a = vld1_u8(s);
    const uint8x16_t low4 = vcombine_u8(vand_u8(a, vdup_n_u8(15)), vshr_n_u8(a, 4));
    uint32_t w;
    memcpy(&w, s + 8, 4);
    uint8x16_t hb = vreinterpretq_u8_u32(vdupq_n_u32(w)); /* byte i = s[8 + i%4] */
    hb = vandq_u8(vshlq_u8(hb, vld1q_s8(shr)), vdupq_n_u8(3));
    return vsubq_s8(s8(vorrq_u8(low4, vshlq_n_u8(hb, 4))), vdupq_n_s8(32));
}

LM_AI void vd_q3_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q3_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int8_t sc[16];
        vst1q_s8(sc, q3k_scales(x[b].scales));
        const uint8x16_t hm0 = vld1q_u8(x[b].hmask), hm1 = vld1q_u8(x[b].hmask + 16);
        int32x4_t acc = vdupq_n_s32(0);
        const int8_t *q8 = y[b].qs;
        for (int h = 0; h < 2; h++) {
            const uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * h), q1 = vld1q_u8(x[b].qs + 32 * h + 16);
            uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (4 * h)));
            for (int j = 0; j < 4; j++) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * j));
                /* value = low 2 bits, minus 4 where the hmask bit is clear */
                uint8x16_t l0 = vandq_u8(vshlq_u8(q0, shift), m3), l1 = vandq_u8(vshlq_u8(q1, shift), m3);
                int8x16_t v0 = vsubq_s8(s8(l0), s8(vbicq_u8(four, vtstq_u8(hm0, bit))));
                int8x16_t v1 = vsubq_s8(s8(l1), s8(vbicq_u8(four, vtstq_u8(hm1, bit))));
                int32x4_t p0 = dot_s8(vdupq_n_s32(0), v0, vld1q_s8(q8), dp);
                int32x4_t p1 = dot_s8(vdupq_n_s32(0), v1, vld1q_s8(q8 + 16), dp);
                acc = vmlaq_n_s32(acc, p0, sc[8 * h + 2 * j]);
                acc = vmlaq_n_s32(acc, p1, sc[8 * h + 2 * j + 1]);
                bit = vshlq_n_u8(bit, 1);
                q8 += 32;
            }
        }
        sum += y[b].d * h2f(x[b].d) * (float)vaddvq_s32(acc);
    }
    *s = sum;
}
LM_NEON_PAIR(vd_q3_K)

LM_AI void vd_q4_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q4_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(15);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t sc[8], mn[8];
        k4_scales(x[b].scales, sc, mn);
        const int32_t msum = k4_min_sum(mn, y[b].bsums);
        int32x4_t acc = vdupq_n_s32(0);
        const uint8_t *q = x[b].qs;
        const int8_t *q8 = y[b].qs;
        /* chunk c: qs[c*32 .. +32]; low nibbles = elements c*64 + 0..31 (sub-block 2c), high = + 32.. */
        for (int c = 0; c < 4; c++, q += 32, q8 += 64) {
            const uint8x16_t qa = vld1q_u8(q), qb = vld1q_u8(q + 16);
            int32x4_t p0 = dot32(s8(vandq_u8(qa, m4)), s8(vandq_u8(qb, m4)), q8, dp);
            int32x4_t p1 = dot32(s8(vshrq_n_u8(qa, 4)), s8(vshrq_n_u8(qb, 4)), q8 + 32, dp);
            acc = vmlaq_n_s32(acc, p0, sc[2 * c]);
            acc = vmlaq_n_s32(acc, p1, sc[2 * c + 1]);
        }
        const float dy = y[b].d;
        sum += dy * h2f(x[b].d) * (float)vaddvq_s32(acc) - dy * h2f(x[b].dmin) * (float)msum;
    }
    *s = sum;
}
LM_NEON_PAIR(vd_q4_K)

LM_AI void vd_q5_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q5_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(15), b4 = vdupq_n_u8(0x10);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t sc[8], mn[8];
        k4_scales(x[b].scales, sc, mn);
        const int32_t msum = k4_min_sum(mn, y[b].bsums);
        /* 5th bit of element c*64 + t*32 + l is bit 2c+t of qh[l]; shifted down 2 per chunk */
        uint8x16_t ha = vld1q_u8(x[b].qh), hb = vld1q_u8(x[b].qh + 16);
        int32x4_t acc = vdupq_n_s32(0);
        const uint8_t *q = x[b].qs;
        const int8_t *q8 = y[b].qs;
        for (int c = 0; c < 4; c++, q += 32, q8 += 64) {
            const uint8x16_t qa = vld1q_u8(q), qb = vld1q_u8(q + 16);
            uint8x16_t la = vorrq_u8(vandq_u8(qa, m4), vandq_u8(vshlq_n_u8(ha, 4), b4));
            uint8x16_t lb = vorrq_u8(vandq_u8(qb, m4), vandq_u8(vshlq_n_u8(hb, 4), b4));
            uint8x16_t ua = vorrq_u8(vshrq_n_u8(qa, 4), vandq_u8(vshlq_n_u8(ha, 3), b4));
            uint8x16_t ub = vorrq_u8(vshrq_n_u8(qb, 4), vandq_u8(vshlq_n_u8(hb, 3), b4));
            int32x4_t p0 = dot32(s8(la), s8(lb), q8, dp);
            int32x4_t p1 = dot32(s8(ua), s8(ub), q8 + 32, dp);
            acc = vmlaq_n_s32(acc, p0, sc[2 * c]);
            acc = vmlaq_n_s32(acc, p1, sc[2 * c + 1]);
            ha = vshrq_n_u8(ha, 2);
            hb = vshrq_n_u8(hb, 2);
        }
        const float dy = y[b].d;
        sum += dy * h2f(x[b].d) * (float)vaddvq_s32(acc) - dy * h2f(x[b].dmin) * (float)msum;
    }
    *s = sum;
}
LM_NEON_PAIR(vd_q5_K)

LM_AI void vd_q6_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy, const int dp) {
    const lm_block_q6_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(15), m30 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            /* element h*128 + p*32 + l: low 4 bits = nibble p/2 of ql[h*64 + (p%2)*32 + l], high 2 bits
             * = bits 2p..2p+1 of qh[h*32 + l]; sub-blocks h*8 + 2p (l < 16) and h*8 + 2p + 1 */
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            const int8_t *q8 = y[b].qs + 128 * h, *scl = x[b].scales + 8 * h;
            const uint8x16_t l0a = vld1q_u8(ql), l0b = vld1q_u8(ql + 16);
            const uint8x16_t l1a = vld1q_u8(ql + 32), l1b = vld1q_u8(ql + 48);
            const uint8x16_t ha = vld1q_u8(qh), hb = vld1q_u8(qh + 16);
            int8x16_t v[8];
            v[0] = s8(vorrq_u8(vandq_u8(l0a, m4), vandq_u8(vshlq_n_u8(ha, 4), m30)));
            v[1] = s8(vorrq_u8(vandq_u8(l0b, m4), vandq_u8(vshlq_n_u8(hb, 4), m30)));
            v[2] = s8(vorrq_u8(vandq_u8(l1a, m4), vandq_u8(vshlq_n_u8(ha, 2), m30)));
            v[3] = s8(vorrq_u8(vandq_u8(l1b, m4), vandq_u8(vshlq_n_u8(hb, 2), m30)));
            v[4] = s8(vorrq_u8(vshrq_n_u8(l0a, 4), vandq_u8(ha, m30)));
            v[5] = s8(vorrq_u8(vshrq_n_u8(l0b, 4), vandq_u8(hb, m30)));
            v[6] = s8(vorrq_u8(vshrq_n_u8(l1a, 4), vandq_u8(vshrq_n_u8(ha, 2), m30)));
            v[7] = s8(vorrq_u8(vshrq_n_u8(l1b, 4), vandq_u8(vshrq_n_u8(hb, 2), m30)));
            for (int i = 0; i < 8; i++) {
                int32x4_t p = dot_s8(vdupq_n_s32(0), vsubq_s8(v[i], k32), vld1q_s8(q8 + 16 * i), dp);
                acc = vmlaq_n_s32(acc, p, scl[i]);
            }
        }
        sum += y[b].d * h2f(x[b].d) * (float)vaddvq_s32(acc);
    }
    *s = sum;
}
LM_NEON_PAIR(vd_q6_K)

/* ------------------------------------------------------------------------------------------------ */
/* float types                                                                                      */

static void vd_f32(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const float *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

LM_AI float32x4_t f16lo(const lm_fp16 *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
LM_AI float32x4_t bf16lo(const lm_bf16 *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

/* dot of n halves (n any >= 0), float accumulation in 4 x 4 lanes */
static void dot_f16_neon(int64_t n, float *restrict s, const lm_fp16 *restrict x, const lm_fp16 *restrict y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float16x8_t x0 = vreinterpretq_f16_u16(vld1q_u16(x + i)), y0 = vreinterpretq_f16_u16(vld1q_u16(y + i));
        float16x8_t x1 = vreinterpretq_f16_u16(vld1q_u16(x + i + 8)), y1 = vreinterpretq_f16_u16(vld1q_u16(y + i + 8));
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(x0)), vcvt_f32_f16(vget_low_f16(y0)));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(x0), vcvt_high_f32_f16(y0));
        a2 = vfmaq_f32(a2, vcvt_f32_f16(vget_low_f16(x1)), vcvt_f32_f16(vget_low_f16(y1)));
        a3 = vfmaq_f32(a3, vcvt_high_f32_f16(x1), vcvt_high_f32_f16(y1));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, f16lo(x + i), f16lo(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += h2f(x[i]) * h2f(y[i]);
    *s = sum;
}

static void vd_f16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    dot_f16_neon(n, s, vx, vy);
}

static void vd_bf16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_bf16 *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint16x8_t x0 = vld1q_u16(x + i), y0 = vld1q_u16(y + i);
        uint16x8_t x1 = vld1q_u16(x + i + 8), y1 = vld1q_u16(y + i + 8);
        a0 = vfmaq_f32(a0, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(x0), 16)),
                       vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(y0), 16)));
        a1 = vfmaq_f32(a1, vreinterpretq_f32_u32(vshll_high_n_u16(x0, 16)),
                       vreinterpretq_f32_u32(vshll_high_n_u16(y0, 16)));
        a2 = vfmaq_f32(a2, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(x1), 16)),
                       vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(y1), 16)));
        a3 = vfmaq_f32(a3, vreinterpretq_f32_u32(vshll_high_n_u16(x1, 16)),
                       vreinterpretq_f32_u32(vshll_high_n_u16(y1, 16)));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, bf16lo(x + i), bf16lo(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += lm_bf16_to_fp32(x[i]) * lm_bf16_to_fp32(y[i]);
    *s = sum;
}

/* y[0..n) += a * x[0..n), bit-identical to the scalar helper: the product is rounded, then added
 * (no FMA; axpy streams memory, the extra instruction is free). */
static void axpy_f16_neon(int64_t n, float *restrict y, float a, const lm_fp16 *restrict x) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(vcvt_f32_f16(vget_low_f16(h)), a)));
        vst1q_f32(y + i + 4, vaddq_f32(vld1q_f32(y + i + 4), vmulq_n_f32(vcvt_high_f32_f16(h), a)));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(f16lo(x + i), a)));
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

/* fp32 -> fp16 with FCVTN (round to nearest even under the default FPCR; same bits as
 * lm_fp32_to_fp16 including inf, subnormals and NaN quieting) */
static void fp32_to_fp16_neon(const float *restrict x, lm_fp16 *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = lm_fp32_to_fp16(x[i]);
}

static void fp16_to_fp32_neon(const lm_fp16 *restrict x, float *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(y + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f16lo(x + i));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

static void from_float_f16(const float *restrict x, void *restrict y, int64_t n) { fp32_to_fp16_neon(x, y, n); }
static void to_float_f16(const void *restrict x, float *restrict y, int64_t n) { fp16_to_fp32_neon(x, y, n); }

/* fp32 -> bf16 as lm_fp32_to_bf16: NaN -> quiet NaN (top half | 0x0040), else round to nearest even */
static void from_float_bf16(const float *restrict x, void *restrict vy, int64_t n) {
    lm_bf16 *y = vy;
    int64_t i = 0;
    const uint32x4_t absm = vdupq_n_u32(0x7fffffffu), inf = vdupq_n_u32(0x7f800000u);
    const uint32x4_t bias = vdupq_n_u32(0x7fffu), one = vdupq_n_u32(1), qbit = vdupq_n_u32(0x00400000u);
    for (; i + 4 <= n; i += 4) {
        uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i));
        uint32x4_t nan = vcgtq_u32(vandq_u32(u, absm), inf);
        uint32x4_t r = vaddq_u32(u, vaddq_u32(bias, vandq_u32(vshrq_n_u32(u, 16), one)));
        r = vbslq_u32(nan, vorrq_u32(u, qbit), r);
        vst1_u16(y + i, vshrn_n_u32(r, 16));
    }
    for (; i < n; i++) y[i] = lm_fp32_to_bf16(x[i]);
}

static void to_float_bf16(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_bf16 *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, bf16lo(x + i));
    for (; i < n; i++) y[i] = lm_bf16_to_fp32(x[i]);
}

/* ------------------------------------------------------------------------------------------------ */
/* activation quantization (bit-identical to quant.c for every input)                              */

/* One 32-block: amax (as the reference computes it), q = round_clamp(x * 127/amax, +-127); returns
 * amax (the caller stores d = amax/127) and, when qsum is not NULL, the sum of q through *qsum. */
LM_AI float quant_q8_32(const float *x, int8_t *qs, int *qsum) {
    float32x4_t v[8];
    float32x4_t mx = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; i++) {
        v[i] = vld1q_f32(x + 4 * i);
        mx = vmaxq_f32(mx, vabsq_f32(v[i]));
    }
    float amax = vmaxvq_f32(mx); /* FMAX/FMAXV propagate NaN: NaN iff the block holds one */
    if (isnan(amax)) {
        /* the reference's running LM_MAX(amax, |x|): a NaN resets it, so the result is the max
         * after the last NaN (or NaN when the last element is one); reproduced exactly */
        amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float a = fabsf(x[j]);
            amax = amax > a ? amax : a;
        }
    }
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32x4_t q[8];
    for (int i = 0; i < 8; i++) q[i] = round_clamp(vmulq_n_f32(v[i], id), -127, 127);
    vst1q_s8(qs, narrow16(q[0], q[1], q[2], q[3]));
    vst1q_s8(qs + 16, narrow16(q[4], q[5], q[6], q[7]));
    if (qsum) {
        int32x4_t t = vaddq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])),
                                vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])));
        *qsum = vaddvq_s32(t);
    }
    return amax;
}

static void from_float_q8_0(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / LM_QK8_0; b++, x += LM_QK8_0) {
        float amax = quant_q8_32(x, y[b].qs, NULL);
        y[b].d = lm_fp32_to_fp16(amax / 127.0f);
    }
}

static void from_float_q8_1(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / LM_QK8_1; b++, x += LM_QK8_1) {
        int sum = 0;
        float d = quant_q8_32(x, y[b].qs, &sum) / 127.0f;
        y[b].d = lm_fp32_to_fp16(d);
        y[b].s = lm_fp32_to_fp16(d * (float)sum);
    }
}

/* Q8_K as quant.c: max = first value of largest magnitude (NaNs ignored, as the scalar `a > amax`
 * test does; bit-identical for any input, NaN included), iscale = -127/max, q = round_clamp(iscale*x, -128, 127), d = 1/iscale, bsums. */
static void from_float_q8_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        /* lane-wise running max of |x| by compare-and-select, which skips NaN exactly like the scalar
         * `a > amax` (FMAXNM would not: a signalling NaN operand makes its result NaN) */
        float32x4_t mx = vdupq_n_f32(0.0f);
        for (int i = 0; i < LM_QK_K; i += 4) {
            const float32x4_t a = vabsq_f32(vld1q_f32(x + i));
            mx = vbslq_f32(vcgtq_f32(a, mx), a, mx);
        }
        const float amax = vmaxvq_f32(mx); /* no NaN can be in mx */
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = amax;
        for (int i = 0; i < LM_QK_K; i += 4) { /* first element with |x| == amax */
            if (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(x + i)), vdupq_n_f32(amax))) == 0) continue;
            int j = i;
            while (!(x[j] == amax || x[j] == -amax)) j++;
            max = x[j];
            break;
        }
        const float iscale = -127.0f / max;
        for (int g = 0; g < LM_QK_K / 16; g++) {
            const float *xg = x + 16 * g;
            int32x4_t q0 = round_clamp(vmulq_n_f32(vld1q_f32(xg), iscale), -128, 127);
            int32x4_t q1 = round_clamp(vmulq_n_f32(vld1q_f32(xg + 4), iscale), -128, 127);
            int32x4_t q2 = round_clamp(vmulq_n_f32(vld1q_f32(xg + 8), iscale), -128, 127);
            int32x4_t q3 = round_clamp(vmulq_n_f32(vld1q_f32(xg + 12), iscale), -128, 127);
            vst1q_s8(y[b].qs + 16 * g, narrow16(q0, q1, q2, q3));
            y[b].bsums[g] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q0, q1), vaddq_s32(q2, q3)));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* dequantization (same float operations, in the same order, as quant.c)                            */

LM_AI void store_s8_scaled(float *y, int8x16_t q, float d) {
    int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    vst1q_f32(y, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}

/* y[0..16) = d*q - m (the product rounded, then the difference, as the scalar code) */
LM_AI void store_u8_affine(float *y, uint8x16_t q, float d, float m) {
    const float32x4_t mv = vdupq_n_f32(m);
    uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_high_u8(q);
    vst1q_f32(y, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), d), mv));
    vst1q_f32(y + 4, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(lo)), d), mv));
    vst1q_f32(y + 8, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), d), mv));
    vst1q_f32(y + 12, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(hi)), d), mv));
}

static void to_float_q8_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / LM_QK8_0; b++, y += LM_QK8_0) {
        const float d = h2f(x[b].d);
        store_s8_scaled(y, vld1q_s8(x[b].qs), d);
        store_s8_scaled(y + 16, vld1q_s8(x[b].qs + 16), d);
    }
}

static void to_float_q4_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_0 *x = vx;
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t b = 0; b < n / LM_QK4_0; b++, y += LM_QK4_0) {
        const float d = h2f(x[b].d);
        const uint8x16_t q = vld1q_u8(x[b].qs);
        store_s8_scaled(y, vsubq_s8(s8(vandq_u8(q, vdupq_n_u8(15))), eight), d);
        store_s8_scaled(y + 16, vsubq_s8(s8(vshrq_n_u8(q, 4)), eight), d);
    }
}

static void to_float_q4_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_K *x = vx;
    const uint8x16_t m4 = vdupq_n_u8(15);
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        uint8_t sc[8], mn[8];
        k4_scales(x[b].scales, sc, mn);
        const uint8_t *q = x[b].qs;
        for (int c = 0; c < 4; c++, q += 32, y += 64) {
            const uint8x16_t qa = vld1q_u8(q), qb = vld1q_u8(q + 16);
            const float d0 = d * (float)sc[2 * c], m0 = dmin * (float)mn[2 * c];
            const float d1 = d * (float)sc[2 * c + 1], m1 = dmin * (float)mn[2 * c + 1];
            store_u8_affine(y, vandq_u8(qa, m4), d0, m0);
            store_u8_affine(y + 16, vandq_u8(qb, m4), d0, m0);
            store_u8_affine(y + 32, vshrq_n_u8(qa, 4), d1, m1);
            store_u8_affine(y + 48, vshrq_n_u8(qb, 4), d1, m1);
        }
    }
}

static void to_float_q5_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_K *x = vx;
    const uint8x16_t m4 = vdupq_n_u8(15), b4 = vdupq_n_u8(0x10);
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        uint8_t sc[8], mn[8];
        k4_scales(x[b].scales, sc, mn);
        uint8x16_t ha = vld1q_u8(x[b].qh), hb = vld1q_u8(x[b].qh + 16);
        const uint8_t *q = x[b].qs;
        for (int c = 0; c < 4; c++, q += 32, y += 64) {
            const uint8x16_t qa = vld1q_u8(q), qb = vld1q_u8(q + 16);
            const float d0 = d * (float)sc[2 * c], m0 = dmin * (float)mn[2 * c];
            const float d1 = d * (float)sc[2 * c + 1], m1 = dmin * (float)mn[2 * c + 1];
            store_u8_affine(y, vorrq_u8(vandq_u8(qa, m4), vandq_u8(vshlq_n_u8(ha, 4), b4)), d0, m0);
            store_u8_affine(y + 16, vorrq_u8(vandq_u8(qb, m4), vandq_u8(vshlq_n_u8(hb, 4), b4)), d0, m0);
            store_u8_affine(y + 32, vorrq_u8(vshrq_n_u8(qa, 4), vandq_u8(vshlq_n_u8(ha, 3), b4)), d1, m1);
            store_u8_affine(y + 48, vorrq_u8(vshrq_n_u8(qb, 4), vandq_u8(vshlq_n_u8(hb, 3), b4)), d1, m1);
            ha = vshrq_n_u8(ha, 2);
            hb = vshrq_n_u8(hb, 2);
        }
    }
}

static void to_float_q6_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q6_K *x = vx;
    const uint8x16_t m4 = vdupq_n_u8(15), m30 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        const float d = h2f(x[b].d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            const int8_t *scl = x[b].scales + 8 * h;
            const uint8x16_t l0a = vld1q_u8(ql), l0b = vld1q_u8(ql + 16);
            const uint8x16_t l1a = vld1q_u8(ql + 32), l1b = vld1q_u8(ql + 48);
            const uint8x16_t ha = vld1q_u8(qh), hb = vld1q_u8(qh + 16);
            uint8x16_t v[8];
            v[0] = vorrq_u8(vandq_u8(l0a, m4), vandq_u8(vshlq_n_u8(ha, 4), m30));
            v[1] = vorrq_u8(vandq_u8(l0b, m4), vandq_u8(vshlq_n_u8(hb, 4), m30));
            v[2] = vorrq_u8(vandq_u8(l1a, m4), vandq_u8(vshlq_n_u8(ha, 2), m30));
            v[3] = vorrq_u8(vandq_u8(l1b, m4), vandq_u8(vshlq_n_u8(hb, 2), m30));
            v[4] = vorrq_u8(vshrq_n_u8(l0a, 4), vandq_u8(ha, m30));
            v[5] = vorrq_u8(vshrq_n_u8(l0b, 4), vandq_u8(hb, m30));
            v[6] = vorrq_u8(vshrq_n_u8(l1a, 4), vandq_u8(vshrq_n_u8(ha, 2), m30));
            v[7] = vorrq_u8(vshrq_n_u8(l1b, 4), vandq_u8(vshrq_n_u8(hb, 2), m30));
            for (int i = 0; i < 8; i++) store_s8_scaled(y + 16 * i, vsubq_s8(s8(v[i]), k32), d * (float)scl[i]);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* init                                                                                             */

/* True when the dotprod kernels may be used: the CPU reports asimddp and $LLAMITA_NEON_NO_DOTPROD is
 * unset, empty or "0". */
static int neon_use_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD) && defined(__linux__)
    const char *off = getenv("LLAMITA_NEON_NO_DOTPROD");
    if (off && *off && strcmp(off, "0") != 0) return 0;
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0; /* built without +dotprod, or no way to ask the kernel */
#endif
}

void lm_cpu_init_neon(lm_kernels *k) {
    const int dp = neon_use_dotprod();
#define SET_DOT(type, fn) k->vec_dot[type] = dp ? fn##_dp : fn##_nodp
    SET_DOT(LM_TYPE_Q8_0, vd_q8_0);
    SET_DOT(LM_TYPE_Q4_0, vd_q4_0);
    k->gemv[LM_TYPE_Q8_0] = dp ? vd_q8_0_dp_gemv : vd_q8_0_nodp_gemv;
    k->gemv[LM_TYPE_Q4_0] = dp ? vd_q4_0_dp_gemv : vd_q4_0_nodp_gemv;
    SET_DOT(LM_TYPE_Q4_1, vd_q4_1);
    SET_DOT(LM_TYPE_Q5_0, vd_q5_0);
    SET_DOT(LM_TYPE_Q5_1, vd_q5_1);
    SET_DOT(LM_TYPE_Q2_K, vd_q2_K);
    SET_DOT(LM_TYPE_Q3_K, vd_q3_K);
    SET_DOT(LM_TYPE_Q4_K, vd_q4_K);
    SET_DOT(LM_TYPE_Q5_K, vd_q5_K);
    SET_DOT(LM_TYPE_Q6_K, vd_q6_K);
#undef SET_DOT
    k->vec_dot[LM_TYPE_F32] = vd_f32;
    k->vec_dot[LM_TYPE_F16] = vd_f16;
    k->vec_dot[LM_TYPE_BF16] = vd_bf16;

    k->from_float[LM_TYPE_Q8_0] = from_float_q8_0;
    k->from_float[LM_TYPE_Q8_1] = from_float_q8_1;
    k->from_float[LM_TYPE_Q8_K] = from_float_q8_K;
    k->from_float[LM_TYPE_F16] = from_float_f16;
    k->from_float[LM_TYPE_BF16] = from_float_bf16;

    k->to_float[LM_TYPE_F16] = to_float_f16;
    k->to_float[LM_TYPE_BF16] = to_float_bf16;
    k->to_float[LM_TYPE_Q8_0] = to_float_q8_0;
    k->to_float[LM_TYPE_Q4_0] = to_float_q4_0;
    k->to_float[LM_TYPE_Q4_K] = to_float_q4_K;
    k->to_float[LM_TYPE_Q5_K] = to_float_q5_K;
    k->to_float[LM_TYPE_Q6_K] = to_float_q6_K;

    k->dot_f16 = dot_f16_neon;
    k->axpy_f16 = axpy_f16_neon;
    k->fp32_to_fp16 = fp32_to_fp16_neon;
    k->fp16_to_fp32 = fp16_to_fp32_neon;
}
#endif
