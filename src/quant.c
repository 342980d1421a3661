/*
 * Scalar reference implementations of every tensor type: fp16/bf16 conversion, dequantization
 * (to_float), quantization (from_float) and dot products (vec_dot). See quant.h for the block layouts.
 *
 * Element order inside the blocks (e = element index within a block / super-block):
 *   Q4_0/Q4_1/Q5_x: e < 16 in the low nibble of qs[e], e >= 16 in the high nibble of qs[e - 16];
 *                   Q5's 5th bit is bit e of the little-endian uint32 qh.
 *   Q2_K/Q3_K:      e = h*128 + j*32 + k*16 + l (h 0..1, j 0..3, k 0..1, l 0..15): the 2 low bits are
 *                   bits 2j..2j+1 of qs[h*32 + k*16 + l]; sub-block (16 values) e/16 = h*8 + j*2 + k.
 *                   Q3_K's 3rd bit is bit h*4+j of hmask[k*16 + l] (bit set: q = low, clear: low - 4).
 *   Q4_K/Q5_K:      e = c*64 + t*32 + l (c 0..3, t 0..1, l 0..31): nibble t of qs[c*32 + l];
 *                   sub-block (32 values) e/32; Q5_K's 5th bit is bit e/32 of qh[l].
 *   Q6_K:           e = h*128 + p*32 + l (p 0..3, l 0..31): low 4 bits are nibble p/2 of
 *                   ql[h*64 + (p%2)*32 + l], high 2 bits are bits 2p..2p+1 of qh[h*32 + l];
 *                   q = value - 32; sub-block (16 values) e/16.
 *
 * Dequantization is bit-exact with ggml: every scale*scale or scale*quant product below is exact in
 * float32 (few mantissa bits), so each element gets exactly one rounding, in the same place as ggml.
 */
#include "quant.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "common.h"

/* ------------------------------------------------------------------------------------------------ */
/* fp16 / bf16                                                                                      */

static inline uint32_t lm_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float lm_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact. NaNs keep their sign and payload and come out quiet (as the
 * F16C instruction vcvtph2ps does). */
float lm_fp16_to_fp32(lm_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf / nan */
        return lm_bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return lm_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return lm_bits_f32(sign); /* +-0 */
    /* subnormal: mant * 2^-24; normalize so the leading 1 lands on bit 10 */
    int shift = 0;
    while (!(mant & 0x400u)) {
        mant <<= 1;
        shift++;
    }
    /* value = 1.m * 2^(-14 - shift) */
    return lm_bits_f32(sign | ((uint32_t)(127 - 14 - shift) << 23) | ((mant & 0x3ffu) << 13));
}

/* binary32 -> binary16, round to nearest even; overflow gives inf; NaNs stay NaN (quiet, sign and the
 * top 9 payload bits kept, like F16C's vcvtps2ph). */
lm_fp16 lm_fp32_to_fp16(float f) {
    uint32_t x = lm_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* nan */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (incl. inf) rounds to inf */
    if (a >= 0x38800000u) { /* >= 2^-14: normal half */
        uint32_t h = ((a >> 13) - (112u << 10)); /* exponent rebias, mantissa truncated */
        uint32_t rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* carry may bump the exponent */
        return (uint16_t)(sign | h);
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds to 0 (2^-25 is a tie, 0 is even) */
    /* subnormal half: result = round(value / 2^-24) */
    uint32_t e = a >> 23;                     /* 103..112 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u; /* value = m * 2^(e - 150) */
    uint32_t shift = 126u - e;                /* 14..23 */
    uint32_t r = m >> shift;
    uint32_t rest = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

float lm_bf16_to_fp32(lm_bf16 h) { return lm_bits_f32((uint32_t)h << 16); }

/* binary32 -> bfloat16: NaN stays NaN (quiet bit forced), otherwise round to nearest even on the
 * top 16 bits (overflow to inf happens naturally). */
lm_bf16 lm_fp32_to_bf16(float f) {
    uint32_t x = lm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

#define FP16(h) lm_fp16_to_fp32(h)

/* ------------------------------------------------------------------------------------------------ */
/* small helpers                                                                                    */

/* Round v to nearest (ties to even) and clamp into [lo, hi]; NaN gives lo. Safe for any float. */
static inline int lm_round_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)rintf(v);
}

static inline uint32_t lm_load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void lm_store_u32le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Q4_K / Q5_K packed 6-bit scales: sub-block j (0..7) -> scale *sc and min *m. */
static inline void lm_k4_get_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Inverse of lm_k4_get_scale_min: packs sc[8], m[8] (each < 64) into s[12]. */
static void lm_k4_pack_scales(const uint8_t *sc, const uint8_t *m, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Q3_K packed scales: s[12] -> 16 signed scales in [-32, 31]. Scale i has its low 4 bits in the low
 * nibble of s[i] (i < 8) or the high nibble of s[i-8] (i >= 8), its high 2 bits at bit 2*(i/4) of
 * s[8 + i%4]. */
static void lm_q3k_unpack_scales(const uint8_t *s, int *out) {
    for (int i = 0; i < 16; i++) {
        int low = i < 8 ? (s[i] & 15) : (s[i - 8] >> 4);
        int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (low | (high << 4)) - 32;
    }
}

/* Inverse: 16 scales in [-32, 31] -> s[12]. */
static void lm_q3k_pack_scales(const int *in, uint8_t *s) {
    memset(s, 0, 12);
    for (int i = 0; i < 16; i++) {
        int l = in[i] + 32;
        if (i < 8) s[i] |= (uint8_t)(l & 15);
        else s[i - 8] |= (uint8_t)((l & 15) << 4);
        s[8 + i % 4] |= (uint8_t)(((l >> 4) & 3) << (2 * (i / 4)));
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* group fitting used by the weight quantizers                                                      */

/* Symmetric fit: finds d and integers L[i] in [-nmax, nmax-1] so that x[i] ~ d * L[i] with small
 * squared error. Tries a grid of candidate scales mapping the largest-magnitude value onto either end
 * of the range; for each, rounds, then takes the least-squares d for those integers. Returns d (may be
 * negative; 0 when x is all zero). n <= 256. */
static float lm_fit_sym(int n, const float *x, int nmax, int8_t *L) {
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            mx = x[i];
        }
    }
    if (!(amax > 1e-30f) || !isfinite(amax)) { /* all zero (or garbage): everything to 0 */
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    int8_t cand[256];
    float best_score = -1.0f, best_d = 0.0f;
    /* targets: mx -> -nmax (one more level on the negative side) and mx -> nmax-1, each +- 0.5 */
    for (int side = 0; side < 2; side++) {
        float base = side == 0 ? -(float)nmax : (float)(nmax - 1);
        if (base == 0.0f) continue;
        for (int k = -5; k <= 5; k++) {
            float t = base + (side == 0 ? -1.0f : 1.0f) * 0.1f * (float)k;
            float iscale = t / mx;
            double sxl = 0, sll = 0;
            for (int i = 0; i < n; i++) {
                int l = lm_round_clamp(iscale * x[i], -nmax, nmax - 1);
                cand[i] = (int8_t)l;
                sxl += (double)x[i] * l;
                sll += (double)l * l;
            }
            if (sll <= 0) continue;
            /* squared error with optimal d = sum(x) - sxl^2/sll: maximize sxl^2/sll */
            double score = sxl * sxl / sll;
            if (score > best_score) {
                best_score = (float)score;
                best_d = (float)(sxl / sll);
                memcpy(L, cand, (size_t)n);
            }
        }
    }
    if (best_score < 0) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    return best_d;
}

/* Asymmetric fit: finds scale *s >= 0, offset *m and integers L[i] in [0, nmax] so that
 * x[i] ~ s * L[i] + m. With min_nonpos the offset is constrained to m <= 0 (the K-quants store -m as
 * an unsigned number). Tries a grid of step sizes around (max - min) / nmax, rounding then refitting
 * (s, m) by least squares, and keeps the lowest squared error. n <= 256. */
static void lm_fit_asym(int n, const float *x, int nmax, bool min_nonpos, uint8_t *L, float *s, float *m) {
    float mn = x[0], mxv = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mxv) mxv = x[i];
    }
    if (min_nonpos && mn > 0) mn = 0;
    if (!isfinite(mn) || !isfinite(mxv) || !(mxv > mn)) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *s = 0.0f;
        *m = isfinite(mn) ? mn : 0.0f;
        if (min_nonpos && *m > 0) *m = 0;
        return;
    }
    uint8_t cand[256];
    double best_err = INFINITY;
    float best_s = (mxv - mn) / (float)nmax, best_m = mn;
    for (int k = -10; k <= 10; k++) {
        float iscale = ((float)nmax + 0.1f * (float)k) / (mxv - mn);
        double sq = 0, sqq = 0, sx = 0, sxq = 0;
        for (int i = 0; i < n; i++) {
            int l = lm_round_clamp(iscale * (x[i] - mn), 0, nmax);
            cand[i] = (uint8_t)l;
            sq += l;
            sqq += (double)l * l;
            sx += x[i];
            sxq += (double)x[i] * l;
        }
        double det = (double)n * sqq - sq * sq;
        double fs, fm;
        if (det > 0) {
            fs = ((double)n * sxq - sq * sx) / det;
            fm = (sqq * sx - sq * sxq) / det;
            if (min_nonpos && fm > 0) {
                fm = 0;
                fs = sqq > 0 ? sxq / sqq : 0;
            }
        } else {
            fs = 1.0 / iscale;
            fm = mn;
        }
        if (fs < 0) continue;
        double err = 0;
        for (int i = 0; i < n; i++) {
            double dlt = fs * cand[i] + fm - x[i];
            err += dlt * dlt;
        }
        if (err < best_err) {
            best_err = err;
            best_s = (float)fs;
            best_m = (float)fm;
            memcpy(L, cand, (size_t)n);
        }
    }
    if (best_err == INFINITY) { /* no candidate usable: plain min/max */
        float iscale = (float)nmax / (mxv - mn);
        for (int i = 0; i < n; i++) L[i] = (uint8_t)lm_round_clamp(iscale * (x[i] - mn), 0, nmax);
    }
    *s = best_s;
    *m = best_m;
}

/* ------------------------------------------------------------------------------------------------ */
/* F32 / F16 / BF16                                                                                 */

static void lm_to_float_f32(const void *restrict vx, float *restrict y, int64_t n) {
    memcpy(y, vx, (size_t)n * sizeof(float));
}

static void lm_from_float_f32(const float *restrict x, void *restrict vy, int64_t n) {
    memcpy(vy, x, (size_t)n * sizeof(float));
}

static void lm_to_float_f16(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_fp16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = lm_fp16_to_fp32(x[i]);
}

static void lm_from_float_f16(const float *restrict x, void *restrict vy, int64_t n) {
    lm_fp16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = lm_fp32_to_fp16(x[i]);
}

static void lm_to_float_bf16(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_bf16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = lm_bf16_to_fp32(x[i]);
}

static void lm_from_float_bf16(const float *restrict x, void *restrict vy, int64_t n) {
    lm_bf16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = lm_fp32_to_bf16(x[i]);
}

/* Float dots accumulate in double (like ggml's scalar path); products of two halves / bfloats are
 * exact in float. */
static void lm_vec_dot_f32(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const float *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

static void lm_vec_dot_f16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_fp16 *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(lm_fp16_to_fp32(x[i]) * lm_fp16_to_fp32(y[i]));
    *s = (float)sum;
}

static void lm_vec_dot_bf16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_bf16 *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(lm_bf16_to_fp32(x[i]) * lm_bf16_to_fp32(y[i]));
    *s = (float)sum;
}

/* ------------------------------------------------------------------------------------------------ */
/* Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1                                                               */

static void lm_to_float_q4_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_0 *x = vx;
    for (int64_t b = 0; b < n / LM_QK4_0; b++, y += LM_QK4_0) {
        float d = FP16(x[b].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((x[b].qs[j] & 15) - 8);
            y[j + 16] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}

static void lm_to_float_q4_1(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / LM_QK4_1; b++, y += LM_QK4_1) {
        float d = FP16(x[b].d), m = FP16(x[b].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(x[b].qs[j] & 15) + m;
            y[j + 16] = d * (float)(x[b].qs[j] >> 4) + m;
        }
    }
}

static void lm_to_float_q5_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_0 *x = vx;
    for (int64_t b = 0; b < n / LM_QK5_0; b++, y += LM_QK5_0) {
        float d = FP16(x[b].d);
        uint32_t qh = lm_load_u32le(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = d * (float)(((x[b].qs[j] & 15) | h0) - 16);
            y[j + 16] = d * (float)(((x[b].qs[j] >> 4) | h1) - 16);
        }
    }
}

static void lm_to_float_q5_1(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_1 *x = vx;
    for (int64_t b = 0; b < n / LM_QK5_1; b++, y += LM_QK5_1) {
        float d = FP16(x[b].d), m = FP16(x[b].m);
        uint32_t qh = lm_load_u32le(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = d * (float)((x[b].qs[j] & 15) | h0) + m;
            y[j + 16] = d * (float)((x[b].qs[j] >> 4) | h1) + m;
        }
    }
}

static void lm_to_float_q8_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / LM_QK8_0; b++, y += LM_QK8_0) {
        float d = FP16(x[b].d);
        for (int j = 0; j < LM_QK8_0; j++) y[j] = d * (float)x[b].qs[j];
    }
}

static void lm_to_float_q8_1(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q8_1 *x = vx;
    for (int64_t b = 0; b < n / LM_QK8_1; b++, y += LM_QK8_1) {
        float d = FP16(x[b].d);
        for (int j = 0; j < LM_QK8_1; j++) y[j] = d * (float)x[b].qs[j];
    }
}

/* Weight quantizers for the 32-blocks: best-of-grid fit (lm_fit_sym / lm_fit_asym), then the integers
 * are recomputed against the fp16-rounded scale actually stored, so dequantization sees consistent
 * values. */
static void lm_from_float_q4_0(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q4_0 *y = vy;
    for (int64_t b = 0; b < n / LM_QK4_0; b++, x += LM_QK4_0) {
        int8_t L[LM_QK4_0];
        float d = lm_fit_sym(LM_QK4_0, x, 8, L);
        y[b].d = lm_fp32_to_fp16(d);
        float dq = FP16(y[b].d);
        float id = dq != 0.0f ? 1.0f / dq : 0.0f;
        for (int j = 0; j < 16; j++) {
            int l0 = lm_round_clamp(x[j] * id, -8, 7) + 8;
            int l1 = lm_round_clamp(x[j + 16] * id, -8, 7) + 8;
            y[b].qs[j] = (uint8_t)(l0 | (l1 << 4));
        }
    }
}

static void lm_from_float_q4_1(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q4_1 *y = vy;
    for (int64_t b = 0; b < n / LM_QK4_1; b++, x += LM_QK4_1) {
        uint8_t L[LM_QK4_1];
        float s, m;
        lm_fit_asym(LM_QK4_1, x, 15, false, L, &s, &m);
        y[b].d = lm_fp32_to_fp16(s);
        y[b].m = lm_fp32_to_fp16(m);
        float dq = FP16(y[b].d), mq = FP16(y[b].m);
        float id = dq != 0.0f ? 1.0f / dq : 0.0f;
        for (int j = 0; j < 16; j++) {
            int l0 = lm_round_clamp((x[j] - mq) * id, 0, 15);
            int l1 = lm_round_clamp((x[j + 16] - mq) * id, 0, 15);
            y[b].qs[j] = (uint8_t)(l0 | (l1 << 4));
        }
    }
}

static void lm_from_float_q5_0(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q5_0 *y = vy;
    for (int64_t b = 0; b < n / LM_QK5_0; b++, x += LM_QK5_0) {
        int8_t L[LM_QK5_0];
        float d = lm_fit_sym(LM_QK5_0, x, 16, L);
        y[b].d = lm_fp32_to_fp16(d);
        float dq = FP16(y[b].d);
        float id = dq != 0.0f ? 1.0f / dq : 0.0f;
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int l0 = lm_round_clamp(x[j] * id, -16, 15) + 16;
            int l1 = lm_round_clamp(x[j + 16] * id, -16, 15) + 16;
            y[b].qs[j] = (uint8_t)((l0 & 15) | ((l1 & 15) << 4));
            qh |= (uint32_t)(l0 >> 4) << j;
            qh |= (uint32_t)(l1 >> 4) << (j + 16);
        }
        lm_store_u32le(y[b].qh, qh);
    }
}

static void lm_from_float_q5_1(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q5_1 *y = vy;
    for (int64_t b = 0; b < n / LM_QK5_1; b++, x += LM_QK5_1) {
        uint8_t L[LM_QK5_1];
        float s, m;
        lm_fit_asym(LM_QK5_1, x, 31, false, L, &s, &m);
        y[b].d = lm_fp32_to_fp16(s);
        y[b].m = lm_fp32_to_fp16(m);
        float dq = FP16(y[b].d), mq = FP16(y[b].m);
        float id = dq != 0.0f ? 1.0f / dq : 0.0f;
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int l0 = lm_round_clamp((x[j] - mq) * id, 0, 31);
            int l1 = lm_round_clamp((x[j + 16] - mq) * id, 0, 31);
            y[b].qs[j] = (uint8_t)((l0 & 15) | ((l1 & 15) << 4));
            qh |= (uint32_t)(l0 >> 4) << j;
            qh |= (uint32_t)(l1 >> 4) << (j + 16);
        }
        lm_store_u32le(y[b].qh, qh);
    }
}

/* Q8_0 (weights and activations) exactly as llama.cpp's x86 (AVX/AVX2/AVX512) path, which produced
 * the fixtures: d = amax/127 stored as fp16, q = round-half-even(x * (127/amax)). (ggml's generic C
 * reference uses id = 1/d and roundf instead; results differ only at exact .5 ties and when the two
 * inverse scales differ by an ulp.) */
static void lm_from_float_q8_0(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / LM_QK8_0; b++, x += LM_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < LM_QK8_0; j++) amax = LM_MAX(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = lm_fp32_to_fp16(d);
        for (int j = 0; j < LM_QK8_0; j++) y[b].qs[j] = (int8_t)lm_round_clamp(x[j] * id, -127, 127);
    }
}

/* Q8_1 as llama.cpp's x86 path: like Q8_0, plus s = d * sum(q) (d the unrounded float scale). */
static void lm_from_float_q8_1(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / LM_QK8_1; b++, x += LM_QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < LM_QK8_1; j++) amax = LM_MAX(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < LM_QK8_1; j++) {
            int q = lm_round_clamp(x[j] * id, -127, 127);
            y[b].qs[j] = (int8_t)q;
            sum += q;
        }
        y[b].d = lm_fp32_to_fp16(d);
        y[b].s = lm_fp32_to_fp16(d * (float)sum);
    }
}

static void lm_vec_dot_q4_0_q8_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q4_0 *x = vx;
    const lm_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK8_0; b++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += ((x[b].qs[j] & 15) - 8) * y[b].qs[j];
            isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
        }
        sum += (float)isum * (FP16(x[b].d) * FP16(y[b].d));
    }
    *s = sum;
}

static void lm_vec_dot_q4_1_q8_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q4_1 *x = vx;
    const lm_block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK8_1; b++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (x[b].qs[j] & 15) * y[b].qs[j];
            isum += (x[b].qs[j] >> 4) * y[b].qs[j + 16];
        }
        /* x = d*q + m: sum(x*y) = dx*dy*isum + m * (dy*sum(qy)) = ... + m * s_y */
        sum += (float)isum * (FP16(x[b].d) * FP16(y[b].d)) + FP16(x[b].m) * FP16(y[b].s);
    }
    *s = sum;
}

static void lm_vec_dot_q5_0_q8_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q5_0 *x = vx;
    const lm_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK8_0; b++) {
        uint32_t qh = lm_load_u32le(x[b].qh);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = ((x[b].qs[j] & 15) | (int)(((qh >> j) & 1u) << 4)) - 16;
            int q1 = ((x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
            isum += q0 * y[b].qs[j] + q1 * y[b].qs[j + 16];
        }
        sum += (float)isum * (FP16(x[b].d) * FP16(y[b].d));
    }
    *s = sum;
}

static void lm_vec_dot_q5_1_q8_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q5_1 *x = vx;
    const lm_block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK8_1; b++) {
        uint32_t qh = lm_load_u32le(x[b].qh);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 15) | (int)(((qh >> j) & 1u) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            isum += q0 * y[b].qs[j] + q1 * y[b].qs[j + 16];
        }
        sum += (float)isum * (FP16(x[b].d) * FP16(y[b].d)) + FP16(x[b].m) * FP16(y[b].s);
    }
    *s = sum;
}

static void lm_vec_dot_q8_0_q8_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q8_0 *x = vx;
    const lm_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK8_0; b++) {
        int32_t isum = 0;
        for (int j = 0; j < LM_QK8_0; j++) isum += x[b].qs[j] * y[b].qs[j];
        sum += (float)isum * (FP16(x[b].d) * FP16(y[b].d));
    }
    *s = sum;
}

/* ------------------------------------------------------------------------------------------------ */
/* Q8_K                                                                                             */

static void lm_to_float_q8_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q8_K *x = vx;
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K)
        for (int j = 0; j < LM_QK_K; j++) y[j] = x[b].d * (float)x[b].qs[j];
}

/* Q8_K exactly as ggml (all architectures use the same C code): max = the signed value of largest
 * magnitude (first one on ties), iscale = -127/max, q = round-half-even(iscale*x) clamped to 127
 * (the value equal to max maps to -127), d = 1/iscale, bsums = sums of 16 consecutive q. An all-zero
 * block gets d = 0, q = 0, bsums = 0. */
static void lm_from_float_q8_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LM_QK_K; j++) {
            float a = fabsf(x[j]);
            if (a > amax) {
                amax = a;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < LM_QK_K; j++) y[b].qs[j] = (int8_t)lm_round_clamp(iscale * x[j], -128, 127);
        for (int g = 0; g < LM_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[b].qs[g * 16 + j];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Q2_K                                                                                             */

/* index of the qs byte and bit shift of element e in a Q2_K / Q3_K super-block */
static inline int lm_k2_qs_index(int e) { return (e / 128) * 32 + ((e / 16) % 2) * 16 + e % 16; }
static inline int lm_k2_qs_shift(int e) { return 2 * ((e / 32) % 4); }

static void lm_to_float_q2_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q2_K *x = vx;
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        float d = FP16(x[b].d), dmin = FP16(x[b].dmin);
        for (int sb = 0; sb < 16; sb++) {
            float dl = d * (float)(x[b].scales[sb] & 15);
            float ml = dmin * (float)(x[b].scales[sb] >> 4);
            for (int i = 0; i < 16; i++) {
                int e = sb * 16 + i;
                int q = (x[b].qs[lm_k2_qs_index(e)] >> lm_k2_qs_shift(e)) & 3;
                y[e] = dl * (float)q - ml;
            }
        }
    }
}

/* Requantizes the sub values x[] for x ~ s*l - m, l in [0, nmax]; writes l to L, returns the squared
 * error. */
static double lm_requant_asym(const float *x, int sub, float s, float m, int nmax, uint8_t *L) {
    float is = s != 0.0f ? 1.0f / s : 0.0f;
    double err = 0;
    for (int i = 0; i < sub; i++) {
        int l = lm_round_clamp((x[i] + m) * is, 0, nmax);
        L[i] = (uint8_t)l;
        double dl = (double)s * l - m - x[i];
        err += dl * dl;
    }
    return err;
}

/* Shared K-quant super-block scale quantization for the scale+min types (Q2_K, Q4_K, Q5_K).
 * Inputs: x[nsub*sub], per-sub-block float scale sf[] >= 0 and offset mf[] <= 0 from lm_fit_asym;
 * q levels [0, nmax]; integer scale/min range [0, smax] (15 or 63).
 * Outputs: integer scales sc[], mins mm[], fp16 *d, *dmin and the integers L[] computed against the
 * stored (rounded) values. Method: round the float scales onto the grid, then a few passes of
 * (a) per sub-block, try the integer scale and min +-1 and keep the pair with the lowest error,
 * (b) least-squares refit of (d, dmin) with the integers fixed; the best pass wins. */
static void lm_kquant_asym_super(const float *x, int nsub, int sub, const float *sf, const float *mf, int nmax,
                                 int smax, uint8_t *sc, uint8_t *mm, lm_fp16 *d, lm_fp16 *dmin, uint8_t *L) {
    float max_s = 0.0f, max_m = 0.0f;
    for (int j = 0; j < nsub; j++) {
        max_s = LM_MAX(max_s, sf[j]);
        max_m = LM_MAX(max_m, -mf[j]);
    }
    float ids = max_s > 0 ? (float)smax / max_s : 0.0f;
    float idm = max_m > 0 ? (float)smax / max_m : 0.0f;
    uint8_t csc[16], cmm[16]; /* current integer scales / mins */
    for (int j = 0; j < nsub; j++) {
        csc[j] = (uint8_t)lm_round_clamp(sf[j] * ids, 0, smax);
        cmm[j] = (uint8_t)lm_round_clamp(-mf[j] * idm, 0, smax);
    }
    float dv = max_s / (float)smax, mv = max_m / (float)smax;
    double best_err = INFINITY;
    for (int pass = 0; pass < 4; pass++) {
        lm_fp16 dh = lm_fp32_to_fp16(dv), mh = lm_fp32_to_fp16(mv);
        float dq = FP16(dh), mq = FP16(mh);
        uint8_t Lc[LM_QK_K], Lt[32];
        double err = 0;
        for (int j = 0; j < nsub; j++) {
            double be = INFINITY;
            int bs = csc[j], bm = cmm[j];
            for (int s = LM_MAX(csc[j] - 1, 0); s <= LM_MIN(csc[j] + 1, smax); s++) {
                for (int m = LM_MAX(cmm[j] - 1, 0); m <= LM_MIN(cmm[j] + 1, smax); m++) {
                    double e = lm_requant_asym(x + j * sub, sub, dq * (float)s, mq * (float)m, nmax, Lt);
                    if (e < be) {
                        be = e;
                        bs = s;
                        bm = m;
                        memcpy(Lc + j * sub, Lt, (size_t)sub);
                    }
                }
            }
            csc[j] = (uint8_t)bs;
            cmm[j] = (uint8_t)bm;
            err += be;
        }
        if (err < best_err) {
            best_err = err;
            *d = dh;
            *dmin = mh;
            memcpy(sc, csc, (size_t)nsub);
            memcpy(mm, cmm, (size_t)nsub);
            memcpy(L, Lc, (size_t)(nsub * sub));
        }
        /* least-squares refit of x ~ d*A - dmin*M, A = sc*l, M = mm (integers fixed) */
        double aa = 0, am = 0, mm2 = 0, xa = 0, xm = 0;
        for (int i = 0; i < nsub * sub; i++) {
            double A = (double)csc[i / sub] * Lc[i], M = (double)cmm[i / sub];
            aa += A * A;
            am += A * M;
            mm2 += M * M;
            xa += x[i] * A;
            xm += x[i] * M;
        }
        /* normal equations: [aa -am; am -mm2] [d; dmin] = [xa; xm] */
        double det = aa * mm2 - am * am;
        if (det > 0) {
            double nd = (xa * mm2 - xm * am) / det, nm = (xa * am - xm * aa) / det;
            if (!(nd > 0) || !(nm >= 0) || !isfinite(nd) || !isfinite(nm)) break;
            dv = (float)nd;
            mv = (float)nm;
        } else if (aa > 0) {
            dv = (float)(xa / aa); /* all mins zero: refit d alone */
        } else {
            break;
        }
    }
}

static void lm_from_float_q2_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q2_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        uint8_t L[LM_QK_K], sc[16], mm[16];
        float sf[16], mf[16];
        for (int j = 0; j < 16; j++) lm_fit_asym(16, x + 16 * j, 3, true, L + 16 * j, &sf[j], &mf[j]);
        lm_kquant_asym_super(x, 16, 16, sf, mf, 3, 15, sc, mm, &y[b].d, &y[b].dmin, L);
        for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)(sc[j] | (mm[j] << 4));
        memset(y[b].qs, 0, sizeof y[b].qs);
        for (int e = 0; e < LM_QK_K; e++) y[b].qs[lm_k2_qs_index(e)] |= (uint8_t)(L[e] << lm_k2_qs_shift(e));
    }
}

static void lm_vec_dot_q2_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q2_K *x = vx;
    const lm_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        int32_t isum = 0, msum = 0;
        for (int sb = 0; sb < 16; sb++) {
            int32_t sub = 0;
            for (int i = 0; i < 16; i++) {
                int e = sb * 16 + i;
                sub += ((x[b].qs[lm_k2_qs_index(e)] >> lm_k2_qs_shift(e)) & 3) * y[b].qs[e];
            }
            isum += (x[b].scales[sb] & 15) * sub;
            msum += (x[b].scales[sb] >> 4) * y[b].bsums[sb];
        }
        sum += y[b].d * FP16(x[b].d) * (float)isum - y[b].d * FP16(x[b].dmin) * (float)msum;
    }
    *s = sum;
}

/* ------------------------------------------------------------------------------------------------ */
/* Q3_K                                                                                             */

static inline int lm_q3k_value(const lm_block_q3_K *x, int e) {
    int low = (x->qs[lm_k2_qs_index(e)] >> lm_k2_qs_shift(e)) & 3;
    int hbit = (x->hmask[((e / 16) % 2) * 16 + e % 16] >> ((e / 128) * 4 + (e / 32) % 4)) & 1;
    return hbit ? low : low - 4;
}

static void lm_to_float_q3_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q3_K *x = vx;
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        float d = FP16(x[b].d);
        int sc[16];
        lm_q3k_unpack_scales(x[b].scales, sc);
        for (int sb = 0; sb < 16; sb++) {
            float dl = d * (float)sc[sb];
            for (int i = 0; i < 16; i++) y[sb * 16 + i] = dl * (float)lm_q3k_value(&x[b], sb * 16 + i);
        }
    }
}

/* Requantizes the 16 values x[] for x ~ s*l, l in [-nmax, nmax-1]; writes L, returns squared error. */
static double lm_requant_sym(const float *x, float s, int nmax, int8_t *L) {
    float is = s != 0.0f ? 1.0f / s : 0.0f;
    double err = 0;
    for (int i = 0; i < 16; i++) {
        int l = lm_round_clamp(x[i] * is, -nmax, nmax - 1);
        L[i] = (int8_t)l;
        double dl = (double)s * l - x[i];
        err += dl * dl;
    }
    return err;
}

/* Shared K-quant super-block scale quantization for the symmetric types (Q3_K: 16 sub-blocks,
 * scales in [-32, 31], q in [-4, 3]; Q6_K: scales in [-128, 127], q in [-32, 31]). sf[] are the signed
 * per-sub-block scales from lm_fit_sym; the largest-magnitude one is mapped to the negative end
 * (-smin). Outputs the integer scales sc[], fp16 *d and final integers L[256] (against the stored
 * values). Then, as for the asymmetric types, a few passes of +-1 search on each integer scale and a
 * least-squares refit of d; the best pass wins. */
static void lm_kquant_sym_super(const float *x, const float *sf, int nmax, int smin, int *sc, lm_fp16 *d,
                                int8_t *L) {
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < 16; j++)
        if (fabsf(sf[j]) > amax) {
            amax = fabsf(sf[j]);
            mx = sf[j];
        }
    if (!(amax > 0)) {
        for (int j = 0; j < 16; j++) sc[j] = 0;
        *d = 0;
        memset(L, 0, LM_QK_K);
        return;
    }
    float iscale = -(float)smin / mx;
    int csc[16];
    for (int j = 0; j < 16; j++) csc[j] = lm_round_clamp(iscale * sf[j], -smin, smin - 1);
    float dv = 1.0f / iscale;
    double best_err = INFINITY;
    for (int pass = 0; pass < 4; pass++) {
        lm_fp16 dh = lm_fp32_to_fp16(dv);
        float dq = FP16(dh);
        int8_t Lc[LM_QK_K], Lt[16];
        double err = 0;
        for (int j = 0; j < 16; j++) {
            double be = INFINITY;
            int bs = csc[j];
            for (int s = LM_MAX(csc[j] - 1, -smin); s <= LM_MIN(csc[j] + 1, smin - 1); s++) {
                double e = lm_requant_sym(x + 16 * j, dq * (float)s, nmax, Lt);
                if (e < be) {
                    be = e;
                    bs = s;
                    memcpy(Lc + 16 * j, Lt, 16);
                }
            }
            csc[j] = bs;
            err += be;
        }
        if (err < best_err) {
            best_err = err;
            *d = dh;
            memcpy(sc, csc, sizeof csc);
            memcpy(L, Lc, LM_QK_K);
        }
        double aa = 0, xa = 0;
        for (int i = 0; i < LM_QK_K; i++) {
            double A = (double)csc[i / 16] * Lc[i];
            aa += A * A;
            xa += x[i] * A;
        }
        if (!(aa > 0)) break;
        dv = (float)(xa / aa);
    }
}

static void lm_from_float_q3_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q3_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        int8_t L[LM_QK_K];
        float sf[16];
        int sc[16];
        for (int j = 0; j < 16; j++) sf[j] = lm_fit_sym(16, x + 16 * j, 4, L + 16 * j);
        lm_kquant_sym_super(x, sf, 4, 32, sc, &y[b].d, L);
        lm_q3k_pack_scales(sc, y[b].scales);
        memset(y[b].qs, 0, sizeof y[b].qs);
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int e = 0; e < LM_QK_K; e++) {
            int l = L[e] + 4; /* 0..7: low 2 bits in qs, bit 2 in hmask */
            y[b].qs[lm_k2_qs_index(e)] |= (uint8_t)((l & 3) << lm_k2_qs_shift(e));
            y[b].hmask[((e / 16) % 2) * 16 + e % 16] |= (uint8_t)((l >> 2) << ((e / 128) * 4 + (e / 32) % 4));
        }
    }
}

static void lm_vec_dot_q3_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q3_K *x = vx;
    const lm_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        int sc[16];
        lm_q3k_unpack_scales(x[b].scales, sc);
        int32_t isum = 0;
        for (int sb = 0; sb < 16; sb++) {
            int32_t sub = 0;
            for (int i = 0; i < 16; i++) sub += lm_q3k_value(&x[b], sb * 16 + i) * y[b].qs[sb * 16 + i];
            isum += sc[sb] * sub;
        }
        sum += y[b].d * FP16(x[b].d) * (float)isum;
    }
    *s = sum;
}

/* ------------------------------------------------------------------------------------------------ */
/* Q4_K, Q5_K                                                                                       */

static inline int lm_k4_qs_index(int e) { return (e / 64) * 32 + e % 32; }
static inline int lm_k4_qs_shift(int e) { return 4 * ((e / 32) % 2); }

static void lm_to_float_q4_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_K *x = vx;
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        float d = FP16(x[b].d), dmin = FP16(x[b].dmin);
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            lm_k4_get_scale_min(sb, x[b].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            for (int i = 0; i < 32; i++) {
                int e = sb * 32 + i;
                y[e] = d1 * (float)((x[b].qs[lm_k4_qs_index(e)] >> lm_k4_qs_shift(e)) & 15) - m1;
            }
        }
    }
}

static void lm_to_float_q5_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_K *x = vx;
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        float d = FP16(x[b].d), dmin = FP16(x[b].dmin);
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            lm_k4_get_scale_min(sb, x[b].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            for (int i = 0; i < 32; i++) {
                int e = sb * 32 + i;
                int q = ((x[b].qs[lm_k4_qs_index(e)] >> lm_k4_qs_shift(e)) & 15) | (((x[b].qh[i] >> sb) & 1) << 4);
                y[e] = d1 * (float)q - m1;
            }
        }
    }
}

/* Fits Q4_K / Q5_K (nmax 15 / 31) for one super-block: 8 sub-blocks of 32 with scale+min. */
static void lm_quant_k4_super(const float *x, int nmax, lm_fp16 *d, lm_fp16 *dmin, uint8_t *scales, uint8_t *L) {
    float sf[8], mf[8];
    uint8_t sc[8], mm[8];
    for (int j = 0; j < 8; j++) lm_fit_asym(32, x + 32 * j, nmax, true, L + 32 * j, &sf[j], &mf[j]);
    lm_kquant_asym_super(x, 8, 32, sf, mf, nmax, 63, sc, mm, d, dmin, L);
    lm_k4_pack_scales(sc, mm, scales);
}

static void lm_from_float_q4_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q4_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        uint8_t L[LM_QK_K];
        lm_quant_k4_super(x, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
        memset(y[b].qs, 0, sizeof y[b].qs);
        for (int e = 0; e < LM_QK_K; e++) y[b].qs[lm_k4_qs_index(e)] |= (uint8_t)(L[e] << lm_k4_qs_shift(e));
    }
}

static void lm_from_float_q5_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q5_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        uint8_t L[LM_QK_K];
        lm_quant_k4_super(x, 31, &y[b].d, &y[b].dmin, y[b].scales, L);
        memset(y[b].qs, 0, sizeof y[b].qs);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int e = 0; e < LM_QK_K; e++) {
            y[b].qs[lm_k4_qs_index(e)] |= (uint8_t)((L[e] & 15) << lm_k4_qs_shift(e));
            y[b].qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        }
    }
}

static void lm_vec_dot_q4_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q4_K *x = vx;
    const lm_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        int32_t isum = 0, msum = 0;
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            lm_k4_get_scale_min(sb, x[b].scales, &sc, &m);
            int32_t sub = 0;
            for (int i = 0; i < 32; i++) {
                int e = sb * 32 + i;
                sub += ((x[b].qs[lm_k4_qs_index(e)] >> lm_k4_qs_shift(e)) & 15) * y[b].qs[e];
            }
            isum += sc * sub;
            msum += m * (y[b].bsums[2 * sb] + y[b].bsums[2 * sb + 1]);
        }
        sum += y[b].d * FP16(x[b].d) * (float)isum - y[b].d * FP16(x[b].dmin) * (float)msum;
    }
    *s = sum;
}

static void lm_vec_dot_q5_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q5_K *x = vx;
    const lm_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        int32_t isum = 0, msum = 0;
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            lm_k4_get_scale_min(sb, x[b].scales, &sc, &m);
            int32_t sub = 0;
            for (int i = 0; i < 32; i++) {
                int e = sb * 32 + i;
                int q = ((x[b].qs[lm_k4_qs_index(e)] >> lm_k4_qs_shift(e)) & 15) | (((x[b].qh[i] >> sb) & 1) << 4);
                sub += q * y[b].qs[e];
            }
            isum += sc * sub;
            msum += m * (y[b].bsums[2 * sb] + y[b].bsums[2 * sb + 1]);
        }
        sum += y[b].d * FP16(x[b].d) * (float)isum - y[b].d * FP16(x[b].dmin) * (float)msum;
    }
    *s = sum;
}

/* ------------------------------------------------------------------------------------------------ */
/* Q6_K                                                                                             */

static inline int lm_q6k_value(const lm_block_q6_K *x, int e) {
    int h = e / 128, p = (e / 32) % 4, l = e % 32;
    int low = (x->ql[h * 64 + (p % 2) * 32 + l] >> (4 * (p / 2))) & 15;
    int high = (x->qh[h * 32 + l] >> (2 * p)) & 3;
    return (low | (high << 4)) - 32;
}

static void lm_to_float_q6_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q6_K *x = vx;
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        float d = FP16(x[b].d);
        for (int sb = 0; sb < 16; sb++) {
            float ds = d * (float)x[b].scales[sb]; /* exact; ggml computes (d*sc)*q too */
            for (int i = 0; i < 16; i++) y[sb * 16 + i] = ds * (float)lm_q6k_value(&x[b], sb * 16 + i);
        }
    }
}

static void lm_from_float_q6_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q6_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        int8_t L[LM_QK_K];
        float sf[16];
        int sc[16];
        for (int j = 0; j < 16; j++) sf[j] = lm_fit_sym(16, x + 16 * j, 32, L + 16 * j);
        lm_kquant_sym_super(x, sf, 32, 128, sc, &y[b].d, L);
        for (int j = 0; j < 16; j++) y[b].scales[j] = (int8_t)sc[j];
        memset(y[b].ql, 0, sizeof y[b].ql);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int e = 0; e < LM_QK_K; e++) {
            int h = e / 128, p = (e / 32) % 4, l = e % 32;
            int v = L[e] + 32; /* 0..63 */
            y[b].ql[h * 64 + (p % 2) * 32 + l] |= (uint8_t)((v & 15) << (4 * (p / 2)));
            y[b].qh[h * 32 + l] |= (uint8_t)((v >> 4) << (2 * p));
        }
    }
}

static void lm_vec_dot_q6_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q6_K *x = vx;
    const lm_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LM_QK_K; b++) {
        int32_t isum = 0;
        for (int sb = 0; sb < 16; sb++) {
            int32_t sub = 0;
            for (int i = 0; i < 16; i++) sub += lm_q6k_value(&x[b], sb * 16 + i) * y[b].qs[sb * 16 + i];
            isum += x[b].scales[sb] * sub;
        }
        sum += y[b].d * FP16(x[b].d) * (float)isum;
    }
    *s = sum;
}

/* ------------------------------------------------------------------------------------------------ */
/* traits                                                                                           */

static const lm_type_traits lm_traits[LM_TYPE_COUNT] = {
    [LM_TYPE_F32] = {"F32", 1, sizeof(float), LM_TYPE_F32, lm_to_float_f32, lm_from_float_f32, lm_vec_dot_f32},
    [LM_TYPE_F16] = {"F16", 1, sizeof(lm_fp16), LM_TYPE_F16, lm_to_float_f16, lm_from_float_f16, lm_vec_dot_f16},
    [LM_TYPE_BF16] = {"BF16", 1, sizeof(lm_bf16), LM_TYPE_BF16, lm_to_float_bf16, lm_from_float_bf16,
                      lm_vec_dot_bf16},
    [LM_TYPE_Q4_0] = {"Q4_0", LM_QK4_0, sizeof(lm_block_q4_0), LM_TYPE_Q8_0, lm_to_float_q4_0, lm_from_float_q4_0,
                      lm_vec_dot_q4_0_q8_0},
    [LM_TYPE_Q4_1] = {"Q4_1", LM_QK4_1, sizeof(lm_block_q4_1), LM_TYPE_Q8_1, lm_to_float_q4_1, lm_from_float_q4_1,
                      lm_vec_dot_q4_1_q8_1},
    [LM_TYPE_Q5_0] = {"Q5_0", LM_QK5_0, sizeof(lm_block_q5_0), LM_TYPE_Q8_0, lm_to_float_q5_0, lm_from_float_q5_0,
                      lm_vec_dot_q5_0_q8_0},
    [LM_TYPE_Q5_1] = {"Q5_1", LM_QK5_1, sizeof(lm_block_q5_1), LM_TYPE_Q8_1, lm_to_float_q5_1, lm_from_float_q5_1,
                      lm_vec_dot_q5_1_q8_1},
    [LM_TYPE_Q8_0] = {"Q8_0", LM_QK8_0, sizeof(lm_block_q8_0), LM_TYPE_Q8_0, lm_to_float_q8_0, lm_from_float_q8_0,
                      lm_vec_dot_q8_0_q8_0},
    [LM_TYPE_Q8_1] = {"Q8_1", LM_QK8_1, sizeof(lm_block_q8_1), LM_TYPE_Q8_1, lm_to_float_q8_1, lm_from_float_q8_1,
                      NULL},
    [LM_TYPE_Q2_K] = {"Q2_K", LM_QK_K, sizeof(lm_block_q2_K), LM_TYPE_Q8_K, lm_to_float_q2_K, lm_from_float_q2_K,
                      lm_vec_dot_q2_K_q8_K},
    [LM_TYPE_Q3_K] = {"Q3_K", LM_QK_K, sizeof(lm_block_q3_K), LM_TYPE_Q8_K, lm_to_float_q3_K, lm_from_float_q3_K,
                      lm_vec_dot_q3_K_q8_K},
    [LM_TYPE_Q4_K] = {"Q4_K", LM_QK_K, sizeof(lm_block_q4_K), LM_TYPE_Q8_K, lm_to_float_q4_K, lm_from_float_q4_K,
                      lm_vec_dot_q4_K_q8_K},
    [LM_TYPE_Q5_K] = {"Q5_K", LM_QK_K, sizeof(lm_block_q5_K), LM_TYPE_Q8_K, lm_to_float_q5_K, lm_from_float_q5_K,
                      lm_vec_dot_q5_K_q8_K},
    [LM_TYPE_Q6_K] = {"Q6_K", LM_QK_K, sizeof(lm_block_q6_K), LM_TYPE_Q8_K, lm_to_float_q6_K, lm_from_float_q6_K,
                      lm_vec_dot_q6_K_q8_K},
    [LM_TYPE_Q8_K] = {"Q8_K", LM_QK_K, sizeof(lm_block_q8_K), LM_TYPE_Q8_K, lm_to_float_q8_K, lm_from_float_q8_K,
                      NULL},
};

const lm_type_traits *lm_type_traits_get(uint32_t t) {
    if (t >= LM_TYPE_COUNT || lm_traits[t].name == NULL) return NULL;
    return &lm_traits[t];
}

const char *lm_type_name(uint32_t t) {
    const lm_type_traits *tr = lm_type_traits_get(t);
    return tr ? tr->name : "?";
}

/* Bytes of a row of ne0 elements. Returns 0 for an unknown type, a negative ne0, an ne0 that is not
 * a multiple of the block size, or a size that would overflow size_t (callers validate with this). */
size_t lm_row_size(uint32_t t, int64_t ne0) {
    const lm_type_traits *tr = lm_type_traits_get(t);
    if (!tr || ne0 < 0 || ne0 % tr->blck_size != 0) return 0;
    uint64_t r;
    if (!lm_mul_u64((uint64_t)(ne0 / tr->blck_size), tr->type_size, &r) || r > SIZE_MAX) return 0;
    return (size_t)r;
}

/* Case-insensitive type name ("q4_k", "BF16") -> id; -1 when unknown or NULL. */
int lm_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < LM_TYPE_COUNT; t++)
        if (lm_traits[t].name && strcasecmp(lm_traits[t].name, name) == 0) return t;
    return -1;
}
