/*
 * gemm_avx2: batched matrix products (prompt processing) with AVX2 + FMA + F16C, for CPUs without
 * AVX-512. See cpu.h for the lm_gemm_fn contract and gemm_avx512.c for the design, which this file
 * follows with 256-bit vectors: lanes are 8 weight ROWS, the weights of a panel (8 rows x KC
 * elements) are unpacked once per chunk of TC tokens into [k/4][8 rows][4 bytes] unsigned bytes, and
 * each 4-byte group of one token's activations is broadcast against them.
 *
 * Without VNNI the products go through vpmaddubsw (unsigned x signed bytes -> int16 pair sums, which
 * saturate) and vpmaddwd. Every int16 sum here is bounded below 32768 without saturation:
 *   Q4_0 (weights 0..15): 8 steps of pair sums <= 2*15*128 = 3840 -> 30720;
 *   Q8_0: weights + 128 (0..255) would saturate, so they are split into two planes of 4 bits
 *         (w + 128 = 16*hi + lo), each summed like Q4_0 and recombined by vpmaddwd with 16 and 1;
 *   Q4_K (0..15): 8 steps per sub-block (30720), then vpmaddwd by the sub-block scale;
 *   Q6_K (0..63): 2 steps (2*2*63*128 = 32256), then vpmaddwd by the sub-block scale.
 * K-quants keep one int32 sum per super-block (bounded well below 2^31); the min (Q4_K) and offset
 * (Q6_K: -32) terms come from the activations' bsums with vpmaddwd, so no activation side data.
 *
 * One compiled kernel per type; edge tiles compute the full tile on repeated valid rows / tokens and
 * store only their part. Results do not depend on how a caller splits rows or tokens.
 * Float types (F32, F16) use the natural layout (lanes along k), 3 rows x 4 tokens per tile.
 * Scratch: at most about 42 KB of stack per call.
 */
#include "common.h"
#include "cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#define LM_AI static inline __attribute__((always_inline))

enum {
    RV = 8,    /* rows per panel (int32 lanes of a 256-bit vector) */
    KC = 512,  /* elements per K chunk (multiple of 256) */
    TC = 256,  /* tokens per chunk */
    NT = 4,    /* tokens per tile */
};

/* ---------------------------------------------------------------------------------------------- */
/* helpers                                                                                        */

static inline float h2f(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}
static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline __m256i bcst32(const void *p) { return _mm256_set1_epi32(ld32(p)); }
/* a + b (int16 lanes), kept as a sequential chain: without the empty asm, the compiler reassociates
 * the running sums into a tree that needs more registers than AVX2 has and spills them. */
static inline __m256i add16_chain(__m256i a, __m256i b) {
    __m256i r = _mm256_add_epi16(a, b);
    __asm__("" : "+x"(r));
    return r;
}
static inline __m256i ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

/* Stores (or adds to) the n (1..8) floats of v at y. */
static inline void store_rows(float *y, __m256 v, int n, int acc) {
    if (n == RV) {
        if (acc) v = _mm256_add_ps(v, _mm256_loadu_ps(y));
        _mm256_storeu_ps(y, v);
        return;
    }
    float tmp[RV];
    _mm256_storeu_ps(tmp, v);
    for (int i = 0; i < n; i++) y[i] = acc ? y[i] + tmp[i] : tmp[i];
}

static inline int32_t sum32_i8(const void *p) {
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), ld256(p)), _mm256_set1_epi16(1));
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4E));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xB1));
    return _mm_cvtsi128_si32(q);
}

/* Rows of a panel: row i at p[i]; rows at or past nrows repeat row 0 (never stored). */
typedef struct {
    const uint8_t *p[RV];
} rvec;
static void rvec_init(rvec *rv, const uint8_t *w, size_t wrs, int nrows) {
    for (int i = 0; i < RV; i++) rv->p[i] = w + (i < nrows ? (size_t)i * wrs : 0);
}

/* 8 rows x 32 bytes (z[i] = row i) -> out s = bytes 4s..4s+3 of rows 0..7, at out + s*step. */
static inline void tr_store(const __m256i *z, uint8_t *out, size_t step) {
    __m256i u[8];
    for (int i = 0; i < 8; i += 4) {
        __m256i t0 = _mm256_unpacklo_epi32(z[i + 0], z[i + 1]);
        __m256i t1 = _mm256_unpackhi_epi32(z[i + 0], z[i + 1]);
        __m256i t2 = _mm256_unpacklo_epi32(z[i + 2], z[i + 3]);
        __m256i t3 = _mm256_unpackhi_epi32(z[i + 2], z[i + 3]);
        u[i + 0] = _mm256_unpacklo_epi64(t0, t2);
        u[i + 1] = _mm256_unpackhi_epi64(t0, t2);
        u[i + 2] = _mm256_unpacklo_epi64(t1, t3);
        u[i + 3] = _mm256_unpackhi_epi64(t1, t3);
    }
    for (int s = 0; s < 4; s++) {
        _mm256_store_si256((__m256i *)(out + (size_t)s * step), _mm256_permute2x128_si256(u[s], u[s + 4], 0x20));
        _mm256_store_si256((__m256i *)(out + (size_t)(s + 4) * step), _mm256_permute2x128_si256(u[s], u[s + 4], 0x31));
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Q8_0, Q4_0 (Q8_0 activations)                                                                  */

typedef struct {
    float d;
    int32_t corr; /* -offset * sum(q) */
} b32_info;

static void info_b32(int32_t off, const uint8_t *x, size_t xrs, int tn, int64_t b0, int nb, b32_info *info) {
    for (int t = 0; t < tn; t++) {
        const lm_block_q8_0 *blk = (const lm_block_q8_0 *)(x + (size_t)t * xrs) + b0;
        b32_info *in = info + (size_t)t * (KC / 32);
        for (int b = 0; b < nb; b++) {
            in[b].d = h2f(&blk[b].d);
            in[b].corr = -off * sum32_i8(blk[b].qs);
        }
    }
}

/*
 * Repacks blocks b0..b0+nb of the panel rows: Q4_0 -> pw[b][8 steps][32]; Q8_0 -> pw[b][8 steps][2
 * planes (lo, hi)][32]; the block scales to wd[b][8].
 */
LM_AI void repack_b32(const enum lm_type type, const rvec *rv, int64_t b0, int nb, uint8_t *pw, float *wd) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int b = 0; b < nb; b++) {
        __m256i z[8];
        if (type == LM_TYPE_Q8_0) {
            __m256i hi[8];
            for (int i = 0; i < RV; i++) {
                const lm_block_q8_0 *blk = (const lm_block_q8_0 *)rv->p[i] + b0 + b;
                __m256i u = _mm256_xor_si256(ld256(blk->qs), _mm256_set1_epi8((char)0x80));
                z[i] = _mm256_and_si256(u, m4);
                hi[i] = _mm256_and_si256(_mm256_srli_epi16(u, 4), m4);
                wd[b * RV + i] = h2f(&blk->d);
            }
            tr_store(z, pw + (size_t)b * 512, 64);
            tr_store(hi, pw + (size_t)b * 512 + 32, 64);
        } else {
            for (int i = 0; i < RV; i++) {
                const lm_block_q4_0 *blk = (const lm_block_q4_0 *)rv->p[i] + b0 + b;
                __m128i q = ld128(blk->qs);
                __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
                z[i] = _mm256_and_si256(y, m4);
                wd[b * RV + i] = h2f(&blk->d);
            }
            tr_store(z, pw + (size_t)b * 256, 32);
        }
    }
}

/* Micro-kernel: 8 rows x NT tokens over nb blocks (tokens at or past nt repeat token 0 and are not
 * stored); the first nrows rows of each token are stored to y + t*ldy (acc: added). */
LM_AI void mk_b32(const enum lm_type type, int nt, int nb, const uint8_t *restrict pw, const float *restrict wd,
                  const uint8_t *restrict xq, size_t xrs, const b32_info *restrict info, float *restrict y,
                  int64_t ldy, int nrows, int acc) {
    const int q8 = type == LM_TYPE_Q8_0;
    const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    __m256 af[NT];
    const uint8_t *xp[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        af[t] = _mm256_setzero_ps();
        xp[t] = xq + (size_t)(t < nt ? t : 0) * xrs;
    }
    int io[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) io[t] = (t < nt ? t : 0) * (KC / 32);
    for (int b = 0; b < nb; b++) {
        __m256i lo[NT], hi[NT];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) lo[t] = hi[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m256i wl = _mm256_load_si256((const __m256i *)(pw + (size_t)s * (q8 ? 64 : 32)));
            __m256i wh = q8 ? _mm256_load_si256((const __m256i *)(pw + (size_t)s * 64 + 32)) : wl;
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                __m256i xv = bcst32(xp[t] + 4 * s);
                lo[t] = add16_chain(lo[t], _mm256_maddubs_epi16(wl, xv));
                if (q8) hi[t] = add16_chain(hi[t], _mm256_maddubs_epi16(wh, xv));
            }
        }
        const __m256 dw = _mm256_load_ps(wd);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const b32_info *in = &info[io[t] + b];
            __m256i a = _mm256_add_epi32(_mm256_madd_epi16(lo[t], ones), _mm256_set1_epi32(in->corr));
            if (q8) a = _mm256_add_epi32(a, _mm256_madd_epi16(hi[t], sixteen));
            af[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(in->d)), dw, af[t]);
        }
        pw += q8 ? 512 : 256;
        wd += RV;
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) xp[t] += sizeof(lm_block_q8_0);
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        if (t >= nt) break;
        store_rows(y + (size_t)t * (size_t)ldy, af[t], nrows, acc);
    }
}
static void mk_q8_0(int nt, int nb, const uint8_t *pw, const float *wd, const uint8_t *xq, size_t xrs,
                    const b32_info *info, float *y, int64_t ldy, int nrows, int acc) {
    mk_b32(LM_TYPE_Q8_0, nt, nb, pw, wd, xq, xrs, info, y, ldy, nrows, acc);
}
static void mk_q4_0(int nt, int nb, const uint8_t *pw, const float *wd, const uint8_t *xq, size_t xrs,
                    const b32_info *info, float *y, int64_t ldy, int nrows, int acc) {
    mk_b32(LM_TYPE_Q4_0, nt, nb, pw, wd, xq, xrs, info, y, ldy, nrows, acc);
}

/* Driver: K chunks > token chunks (activation side data) > 8-row panels > NT-token tiles. */
LM_AI void gemm_b32(const enum lm_type type, int64_t K, const void *restrict W, size_t wrs, const void *restrict X,
                    size_t xrs, int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {
    _Alignas(32) uint8_t panel[(KC / 32) * 512]; /* [KC/32][8 steps][(planes)][32] */
    _Alignas(32) float wd[(KC / 32) * RV];
    _Alignas(32) b32_info info[TC * (KC / 32)];
    const int32_t off = type == LM_TYPE_Q8_0 ? 128 : 8;
    const int64_t nbk = K / 32;
    for (int64_t kb = 0; kb < nbk; kb += KC / 32) {
        const int nb = (int)LM_MIN((int64_t)(KC / 32), nbk - kb);
        for (int64_t t0 = 0; t0 < T; t0 += TC) {
            const int tn = (int)LM_MIN((int64_t)TC, T - t0);
            const uint8_t *xc = (const uint8_t *)X + (size_t)t0 * xrs;
            info_b32(off, xc, xrs, tn, kb, nb, info);
            for (int64_t p = r0; p < r1; p += RV) {
                const int nrows = (int)LM_MIN((int64_t)RV, r1 - p);
                rvec rv;
                rvec_init(&rv, (const uint8_t *)W + (size_t)p * wrs, wrs, nrows);
                repack_b32(type, &rv, kb, nb, panel, wd);
                const uint8_t *xq = xc + (size_t)kb * sizeof(lm_block_q8_0) + offsetof(lm_block_q8_0, qs);
                for (int t = 0; t < tn; t += NT) {
                    const int nt = LM_MIN(NT, tn - t);
                    float *y = Y + (size_t)(t0 + t) * (size_t)ldy + p;
                    const uint8_t *xt = xq + (size_t)t * xrs;
                    const b32_info *it = info + t * (KC / 32);
                    (type == LM_TYPE_Q8_0 ? mk_q8_0 : mk_q4_0)(nt, nb, panel, wd, xt, xrs, it, y, ldy, nrows, kb > 0);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Q4_K, Q6_K (Q8_K activations)                                                                  */

/* per super-block, lanes = rows: sc[j] = scale of sub-block j as an int16 pair (sc | sc << 16);
 * bp[p] = int16 pairs multiplying the activation bsums pair p (bsums[2p], bsums[2p+1]):
 * Q4_K: (m_p', m_p') with p' = p / 2... see kq_row_scales; Q6_K: (-32 sc[2p], -32 sc[2p+1]). */
typedef struct {
    int32_t sc[16][RV];
    int32_t bp[8][RV];
    float d[RV], dmin[RV];
} kq_scales;

static inline void k4_scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}
static inline int32_t pair16(int lo, int hi) { return (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16); }

LM_AI void kq_row_scales(const enum lm_type type, const uint8_t *x, int i, kq_scales *ks) {
    if (type == LM_TYPE_Q4_K) {
        ks->d[i] = h2f(x);
        ks->dmin[i] = h2f(x + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, x + 4, &sc, &m);
            ks->sc[j][i] = pair16(sc, sc);
            /* sub-block j of 32 covers bsums 2j and 2j+1: one pair p = j with (m, m) */
            ks->bp[j][i] = pair16(m, m);
        }
    } else {
        const lm_block_q6_K *b = (const lm_block_q6_K *)x;
        ks->d[i] = h2f(&b->d);
        for (int j = 0; j < 16; j++) ks->sc[j][i] = pair16(b->scales[j], b->scales[j]);
        for (int p = 0; p < 8; p++) ks->bp[p][i] = pair16(-32 * b->scales[2 * p], -32 * b->scales[2 * p + 1]);
    }
}

/* Unsigned weight bytes of elements 32g..32g+31 of the super-block at a. */
LM_AI __m256i kq_group(const enum lm_type type, const uint8_t *a, int g) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    if (type == LM_TYPE_Q4_K) return _mm256_and_si256(_mm256_srli_epi16(ld256(a + 16 + 32 * (g / 2)), 4 * (g % 2)), m4);
    const int h = g / 4, p = g % 4;
    __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ld256(a + 64 * h + 32 * (p % 2)), 4 * (p / 2)), m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(ld256(a + 128 + 32 * h), 2 * p), m2);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

LM_AI void repack_kq(const enum lm_type type, const rvec *rv, int64_t s0, int ns, uint8_t *pw, kq_scales *ks) {
    const size_t bs = type == LM_TYPE_Q4_K ? sizeof(lm_block_q4_K) : sizeof(lm_block_q6_K);
    for (int sb = 0; sb < ns; sb++) {
        const size_t off = (size_t)(s0 + sb) * bs;
        for (int g = 0; g < 8; g++) {
            __m256i z[8];
            for (int i = 0; i < RV; i++) z[i] = kq_group(type, rv->p[i] + off, g);
            tr_store(z, pw + ((size_t)sb * 8 + g) * 256, 32);
        }
        for (int i = 0; i < RV; i++) kq_row_scales(type, rv->p[i] + off, i, &ks[sb]);
    }
}

/* K-quant micro-kernel: 8 rows x NT tokens over ns super-blocks; xq = first Q8_K block of token 0
 * (tokens at or past nt repeat token 0 and are not stored). */
LM_AI void mk_kq(const enum lm_type type, int nt, int ns, const uint8_t *restrict pw,
                 const kq_scales *restrict ks, const uint8_t *restrict xq, size_t xrs, float *restrict y, int64_t ldy,
                 int nrows, int acc) {
    const int q4 = type == LM_TYPE_Q4_K;
    __m256 af[NT];
    const uint8_t *xp[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        af[t] = _mm256_setzero_ps();
        xp[t] = xq + (size_t)(t < nt ? t : 0) * xrs;
    }
    for (int sb = 0; sb < ns; sb++) {
        __m256i is[NT];
        /* bsums term: Q4_K mins (subtracted below), Q6_K offset -32 (already in the pairs) */
        __m256i ms[NT];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) ms[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {
            const __m256i bp = _mm256_load_si256((const __m256i *)ks->bp[p]);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++)
                ms[t] = _mm256_add_epi32(ms[t], _mm256_madd_epi16(bp, bcst32(xp[t] + offsetof(lm_block_q8_K, bsums) + 4 * p)));
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) is[t] = q4 ? _mm256_setzero_si256() : ms[t];
        const int nsub = q4 ? 8 : 16, steps = q4 ? 8 : 4, group = q4 ? 8 : 2; /* steps per int16 sum */
        for (int j = 0; j < nsub; j++) {
            const __m256i sc = _mm256_load_si256((const __m256i *)ks->sc[j]);
#pragma GCC unroll 8
            for (int s0 = 0; s0 < steps; s0 += group) {
                __m256i s16[NT];
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int s = s0; s < s0 + group; s++) {
                    const __m256i w = _mm256_load_si256((const __m256i *)(pw + (size_t)(j * steps + s) * 32));
#pragma GCC unroll 4
                    for (int t = 0; t < NT; t++)
                        s16[t] = add16_chain(s16[t], _mm256_maddubs_epi16(w, bcst32(xp[t] + offsetof(lm_block_q8_K, qs) +
                                                                                  4 * (j * steps + s))));
                }
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) is[t] = _mm256_add_epi32(is[t], _mm256_madd_epi16(s16[t], sc));
            }
        }
        pw += 64 * 32;
        const __m256 d = _mm256_load_ps(ks->d), dmin = _mm256_load_ps(ks->dmin);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(is[t]), d);
            if (q4) v = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms[t]), dmin, v);
            float dx;
            memcpy(&dx, xp[t], 4);
            af[t] = _mm256_fmadd_ps(v, _mm256_set1_ps(dx), af[t]);
            xp[t] += sizeof(lm_block_q8_K);
        }
        ks++;
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        if (t >= nt) break;
        store_rows(y + (size_t)t * (size_t)ldy, af[t], nrows, acc);
    }
}
static void mk_q4_k(int nt, int ns, const uint8_t *pw, const kq_scales *ks, const uint8_t *xq, size_t xrs, float *y,
                    int64_t ldy, int nrows, int acc) {
    mk_kq(LM_TYPE_Q4_K, nt, ns, pw, ks, xq, xrs, y, ldy, nrows, acc);
}
static void mk_q6_k(int nt, int ns, const uint8_t *pw, const kq_scales *ks, const uint8_t *xq, size_t xrs, float *y,
                    int64_t ldy, int nrows, int acc) {
    mk_kq(LM_TYPE_Q6_K, nt, ns, pw, ks, xq, xrs, y, ldy, nrows, acc);
}


LM_AI void gemm_kq(const enum lm_type type, int64_t K, const void *restrict W, size_t wrs, const void *restrict X,
                   size_t xrs, int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {
    _Alignas(32) uint8_t panel[(KC / 256) * 64 * 32]; /* [KC/256][8 groups][8 steps][32] */
    _Alignas(32) kq_scales ks[KC / 256];
    const int64_t nsk = K / 256;
    for (int64_t kb = 0; kb < nsk; kb += KC / 256) {
        const int ns = (int)LM_MIN((int64_t)(KC / 256), nsk - kb);
        for (int64_t t0 = 0; t0 < T; t0 += TC) {
            const int tn = (int)LM_MIN((int64_t)TC, T - t0);
            const uint8_t *xc = (const uint8_t *)X + (size_t)t0 * xrs + (size_t)kb * sizeof(lm_block_q8_K);
            for (int64_t p = r0; p < r1; p += RV) {
                const int nrows = (int)LM_MIN((int64_t)RV, r1 - p);
                rvec rv;
                rvec_init(&rv, (const uint8_t *)W + (size_t)p * wrs, wrs, nrows);
                repack_kq(type, &rv, kb, ns, panel, ks);
                for (int t = 0; t < tn; t += NT) {
                    const int nt = LM_MIN(NT, tn - t);
                    float *y = Y + (size_t)(t0 + t) * (size_t)ldy + p;
                    const uint8_t *xt = xc + (size_t)t * xrs;
                    (type == LM_TYPE_Q4_K ? mk_q4_k : mk_q6_k)(nt, ns, panel, ks, xt, xrs, y, ldy, nrows, kb > 0);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Float types: natural layout, 3 rows x 4 tokens per tile (16 registers), reduced at the end.      */

enum { FMR = 3, FNT = 4, FRB = 64 };

LM_AI __m256 fl_load(const enum lm_type type, const uint8_t *p) {
    if (type == LM_TYPE_F32) return _mm256_loadu_ps((const float *)p);
    return _mm256_cvtph_ps(ld128(p));
}

/* horizontal sum of the 8 lanes */
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* FMR rows (row i at w + ro[i]) x FNT tokens (token t at x + xo[t]) over K elements; stores
 * y[t*ldy + i] for i < mr, t < nt (the other rows / tokens repeat valid ones). */
LM_AI void mk_fl(const enum lm_type type, int mr, int nt, int64_t K, const uint8_t *restrict w, const size_t *ro,
                 const uint8_t *restrict x, const size_t *xo, float *restrict y, int64_t ldy) {
    const size_t esz = type == LM_TYPE_F32 ? 4 : 2;
    __m256 acc[FMR][FNT];
    const uint8_t *wp[FMR], *xp[FNT];
#pragma GCC unroll 4
    for (int r = 0; r < FMR; r++) {
        wp[r] = w + ro[r];
#pragma GCC unroll 4
        for (int t = 0; t < FNT; t++) acc[r][t] = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int t = 0; t < FNT; t++) xp[t] = x + xo[t];
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[FMR];
#pragma GCC unroll 4
        for (int r = 0; r < FMR; r++) wv[r] = fl_load(type, wp[r] + (size_t)k * esz);
#pragma GCC unroll 4
        for (int t = 0; t < FNT; t++) {
            __m256 xv = fl_load(type, xp[t] + (size_t)k * esz);
#pragma GCC unroll 4
            for (int r = 0; r < FMR; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    if (k < K) {
        /* tail of fewer than 8 elements: zero-padded to a full vector, so element kk lands in lane
         * kk % 8 as in the loop above. Hence a product over K and over K' > K elements whose extra
         * elements are zeros (attention's zero-padded probabilities, see lm_attention_block) give
         * the same bits. */
        const size_t tb = (size_t)(K - k) * esz;
        __m256 wv[FMR];
#pragma GCC unroll 4
        for (int r = 0; r < FMR; r++) {
            uint8_t buf[32] = {0};
            memcpy(buf, wp[r] + (size_t)k * esz, tb);
            wv[r] = fl_load(type, buf);
        }
#pragma GCC unroll 4
        for (int t = 0; t < FNT; t++) {
            uint8_t buf[32] = {0};
            memcpy(buf, xp[t] + (size_t)k * esz, tb);
            const __m256 xv = fl_load(type, buf);
#pragma GCC unroll 4
            for (int r = 0; r < FMR; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < mr; r++) y[(size_t)t * (size_t)ldy + r] = hsum8(acc[r][t]);
}

#define MK_FL(NAME, TYPE)                                                                                     \
    static void NAME(int mr, int nt, int64_t K, const uint8_t *w, const size_t *ro, const uint8_t *x,        \
                     const size_t *xo, float *y, int64_t ldy) {                                               \
        mk_fl(TYPE, mr, nt, K, w, ro, x, xo, y, ldy);                                                         \
    }
MK_FL(mk_f32, LM_TYPE_F32)
MK_FL(mk_f16, LM_TYPE_F16)

static void gemm_fl(enum lm_type type, int64_t K, const void *restrict W, size_t wrs, const void *restrict X,
                    size_t xrs, int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {
    void (*mk)(int, int, int64_t, const uint8_t *, const size_t *, const uint8_t *, const size_t *, float *, int64_t) =
        type == LM_TYPE_F32 ? mk_f32 : mk_f16;
    for (int64_t rb = r0; rb < r1; rb += FRB) {
        const int64_t rbe = LM_MIN(rb + FRB, r1);
        for (int64_t t = 0; t < T; t += FNT) {
            const int nt = (int)LM_MIN((int64_t)FNT, T - t);
            size_t xo[FNT];
            for (int i = 0; i < FNT; i++) xo[i] = (size_t)(i < nt ? i : 0) * xrs;
            const uint8_t *x = (const uint8_t *)X + (size_t)t * xrs;
            for (int64_t r = rb; r < rbe; r += FMR) {
                const int mr = (int)LM_MIN((int64_t)FMR, rbe - r);
                size_t ro[FMR];
                for (int i = 0; i < FMR; i++) ro[i] = (size_t)(i < mr ? i : 0) * wrs;
                mk(mr, nt, K, (const uint8_t *)W + (size_t)r * wrs, ro, x, xo, Y + (size_t)t * (size_t)ldy + r, ldy);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */

/* Y rows [r0, r1) of tokens [0, T) set to 0 (K = 0: empty dot products). */
static void zero_range(float *Y, int64_t ldy, int64_t T, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < T; t++) memset(Y + (size_t)t * (size_t)ldy + r0, 0, (size_t)(r1 - r0) * sizeof(float));
}

#define GEMM_ENTRY(NAME, DRIVER, TYPE)                                                                            \
    static void NAME(int64_t K, const void *restrict W, size_t wrs, const void *restrict X, size_t xrs, int64_t T, \
                     float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {                                 \
        if (T <= 0 || r0 >= r1) return;                                                                        \
        if (K <= 0) {                                                                                          \
            zero_range(Y, ldy, T, r0, r1);                                                                     \
            return;                                                                                            \
        }                                                                                                      \
        DRIVER(TYPE, K, W, wrs, X, xrs, T, Y, ldy, r0, r1);                                                    \
    }
GEMM_ENTRY(gemm_f32, gemm_fl, LM_TYPE_F32)
GEMM_ENTRY(gemm_f16, gemm_fl, LM_TYPE_F16)
GEMM_ENTRY(gemm_q8_0, gemm_b32, LM_TYPE_Q8_0)
GEMM_ENTRY(gemm_q4_0, gemm_b32, LM_TYPE_Q4_0)
GEMM_ENTRY(gemm_q4_k, gemm_kq, LM_TYPE_Q4_K)
GEMM_ENTRY(gemm_q6_k, gemm_kq, LM_TYPE_Q6_K)

void lm_cpu_init_gemm_avx2(lm_kernels *k) {
    k->gemm[LM_TYPE_F32] = gemm_f32;
    k->gemm[LM_TYPE_F16] = gemm_f16;
    k->gemm[LM_TYPE_Q8_0] = gemm_q8_0;
    k->gemm[LM_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[LM_TYPE_Q4_K] = gemm_q4_k;
    k->gemm[LM_TYPE_Q6_K] = gemm_q6_k;
}
#endif
