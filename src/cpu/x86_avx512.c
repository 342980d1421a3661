/*
 * x86_avx512: AVX-512 (F, BW, VL, DQ) + VNNI kernels, BF16 dot via vdpbf16ps when the CPU has
 * AVX512_BF16 (checked here) (see cpu.h). Compiled with its own -m flags (Makefile); entered only after
 * CPU detection (dispatch.c). The table starts as a copy of the avx2 one, so the entries not set here
 * (from_float, to_float: memory-bound conversions whose AVX2 versions already produce the reference
 * bytes; F32 dot) stay AVX2.
 *
 * vec_dot, for every weight type:
 *   Q4_0: groups of 4 blocks per 512-bit register, the activation prepared once per call (q4_0x4.h);
 *     one function serves vec_dot and gemv.
 *   32-element blocks (Q8_0, Q5_0, Q4_1, Q5_1): two blocks per 512-bit register, integer dot by
 *     vpdpbusd (unsigned x signed bytes -> int32). The unsigned weight nibbles go straight in; the
 *     signed offset (-8 / -16) is removed with a second vpdpbusd of the constant against y; Q8_0 x Q8_0
 *     makes x unsigned with vpabsb and moves its sign onto y with a masked subtract. The 16 int32 lanes
 *     are converted once and scaled per lane by the two blocks' d_x * d_y (8 blocks' fp16 scales are
 *     gathered by vpermt2w and converted together). 8 blocks per iteration, then pairs, then a last
 *     single block in 256 bits; summation order identical to the avx2 kernels (bit-identical results).
 *   K-quants: 64 elements per register; vpmaddubsw (unsigned weight x signed activation -> int16 pairs)
 *     then vpdpwssd against the sub-block scales broadcast to int16 lanes, accumulating the super-block's
 *     integer sum in int32 lanes; mins and the signed offsets (Q3_K: -4, Q6_K: -32) go through Q8_K's
 *     bsums; one convert + FMA per super-block.
 *   F16 (vcvtph2ps), BF16 (vdpbf16ps, 32 products per instruction): float accumulation, masked
 *     tails (F32 stays AVX2, see lm_cpu_init_avx512).
 * gemv (decode, gemv.h): Q4_0 one row at a time after preparing the activation; Q4_1, Q5_0, Q5_1 four
 *   rows at a time (their per-row work is the larger share, and sharing the activation pays). Q8_0 and
 *   the K-quants have none: the callers loop over vec_dot, a single sequential stream that measured
 *   faster from memory than four rows side by side (tg, 1.1B model, 2 threads: Q8_0 +8-12%, Q4_K_M
 *   +8-13% over the 4-row gemv; single thread from DRAM: Q8_0 25 vs 20-23 GB/s, Q4_K 25 vs 20).
 * Results equal the scalar reference up to float summation order (tests/test_kernels.c).
 * Activation int8 values are in [-127, 127] (from_float guarantees it for non-NaN input).
 * All loads are unaligned: GGUF blocks have no alignment beyond 2 bytes.
 */
#include "cpu.h"
#include "gemv.h"
#include "q4_0x4.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* helpers                                                                                        */

static inline uint64_t ld_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t ld_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float f16_at(const void *p) { return _cvtsh_ss((unsigned short)ld_u16(p)); }

/* The eight fp16 at byte offset `off` of 8 consecutive blocks of `stride` bytes starting at blk, as 8
 * floats. stride and off are compile-time constants (a block size: even, 16..42; off even, small).
 * Four 64-byte loads, all inside the 8 blocks [blk, blk + 8 stride), and two vpermt2w gathering the
 * 16-bit words: cheaper here than scalar loads, vpinsrw or vpgatherdd. */
static inline __m256 f16x8_strided(const void *blk, int off, size_t stride) {
    const uint8_t *p = blk;
    const int s = (int)stride;
    const int hb = 4 * s < 8 * s - 128 ? 4 * s : 8 * s - 128; /* second window [hb, hb + 128) */
    const __m512i ilo = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, (short)((3 * s + off) / 2), (short)((2 * s + off) / 2),
                                         (short)((s + off) / 2), (short)(off / 2));
    const __m512i ihi = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, (short)((7 * s + off - hb) / 2), (short)((6 * s + off - hb) / 2),
                                         (short)((5 * s + off - hb) / 2), (short)((4 * s + off - hb) / 2));
    const __m512i lo = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), ilo, _mm512_loadu_si512(p + 64));
    const __m512i hi = _mm512_permutex2var_epi16(_mm512_loadu_si512(p + hb), ihi, _mm512_loadu_si512(p + hb + 64));
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm512_castsi512_si128(lo), _mm512_castsi512_si128(hi)));
}

static inline __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m512i loadu512(const void *p) { return _mm512_loadu_si512(p); }

/* two 32-byte rows at p0 and p1 as one register [p0 | p1] */
static inline __m512i load2x256(const void *p0, const void *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(p0)), loadu256(p1), 1);
}

static inline float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline float hsum256(__m256 v) {
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

static inline float hsum512(__m512 v) {
    return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

/* per-lane scale for block pair k (0..3) of 8 block scales d (low 256 bits of dz): lanes 0-7 get
 * d[2k], lanes 8-15 d[2k+1] */
static inline __m512 pair_scale(__m512 dz, int k) {
    const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * k)), _mm256_set1_epi32(2 * k + 1), 1);
    return _mm512_permutexvar_ps(idx, dz);
}

/* [s0 x 8 lanes, s1 x 8 lanes] */
static inline __m512 two_scales(float s0, float s1) {
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

/* Nibbles of two 16-byte Q4/Q5 quant arrays as 64 bytes in [0, 15], in element order:
 * [qs0 low (elements 0..15), qs0 high (16..31), qs1 low, qs1 high]. */
static inline __m512i nib_pair(const uint8_t *qs0, const uint8_t *qs1) {
    __m512i t = _mm512_broadcast_i32x4(loadu128(qs0));
    t = _mm512_mask_broadcast_i32x4(t, 0xFF00, loadu128(qs1)); /* [qs0, qs0, qs1, qs1] */
    const __m512i sh = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0, 0x0004000400040004,
                                        0x0004000400040004, 0, 0); /* int16 shift counts per 128-bit lane: 0,4,0,4 */
    return _mm512_and_si512(_mm512_srlv_epi16(t, sh), _mm512_set1_epi8(15));
}

/* The same for one block: 32 bytes [low nibbles, high nibbles]. */
static inline __m256i nib_one(const uint8_t *qs) {
    const __m128i v = loadu128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
}

/* ---------------------------------------------------------------------------------------------- */
/* 32-element blocks                                                                              */
/* Per type: PAIR(x, y) -> 16 int32 lanes (lanes 0-7 block 0, 8-15 block 1; each lane a partial sum) */
/* and ONE(x, y) -> 8 int32 lanes of one block. The loop macro below does the scaling.              */

static inline __m512i q8_0_pair(const lm_block_q8_0 *x, const lm_block_q8_0 *y) {
    const __m512i xv = load2x256(x[0].qs, x[1].qs), yv = load2x256(y[0].qs, y[1].qs);
    const __m512i sy = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(xv), _mm512_setzero_si512(), yv);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(xv), sy);
}
static inline __m256i q8_0_one(const lm_block_q8_0 *x, const lm_block_q8_0 *y) {
    const __m256i xv = loadu256(x->qs), yv = loadu256(y->qs);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(xv, xv), _mm256_sign_epi8(yv, xv));
}

/* 5th bits of two Q5 blocks as a 64-bit mask in the nib_pair element order */
static inline __mmask64 qh_pair(const uint8_t *qh0, const uint8_t *qh1) {
    return _cvtu64_mask64((uint64_t)ld_u32(qh0) | (uint64_t)ld_u32(qh1) << 32);
}

static inline __m512i q5_0_pair(const lm_block_q5_0 *x, const lm_block_q8_0 *y) {
    __m512i q = nib_pair(x[0].qs, x[1].qs);
    q = _mm512_mask_add_epi8(q, qh_pair(x[0].qh, x[1].qh), q, _mm512_set1_epi8(16)); /* 0..31 */
    const __m512i yv = load2x256(y[0].qs, y[1].qs), z = _mm512_setzero_si512();
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q, yv), _mm512_dpbusd_epi32(z, _mm512_set1_epi8(16), yv));
}
static inline __m256i q5_0_one(const lm_block_q5_0 *x, const lm_block_q8_0 *y) {
    __m256i q = nib_one(x->qs);
    q = _mm256_mask_add_epi8(q, _cvtu32_mask32(ld_u32(x->qh)), q, _mm256_set1_epi8(16));
    const __m256i yv = loadu256(y->qs), z = _mm256_setzero_si256();
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(z, q, yv), _mm256_dpbusd_epi32(z, _mm256_set1_epi8(16), yv));
}

static inline __m512i q4_1_pair(const lm_block_q4_1 *x, const lm_block_q8_1 *y) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib_pair(x[0].qs, x[1].qs), load2x256(y[0].qs, y[1].qs));
}
static inline __m256i q4_1_one(const lm_block_q4_1 *x, const lm_block_q8_1 *y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), nib_one(x->qs), loadu256(y->qs));
}

static inline __m512i q5_1_pair(const lm_block_q5_1 *x, const lm_block_q8_1 *y) {
    __m512i q = nib_pair(x[0].qs, x[1].qs);
    q = _mm512_mask_add_epi8(q, qh_pair(x[0].qh, x[1].qh), q, _mm512_set1_epi8(16));
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, load2x256(y[0].qs, y[1].qs));
}
static inline __m256i q5_1_one(const lm_block_q5_1 *x, const lm_block_q8_1 *y) {
    __m256i q = nib_one(x->qs);
    q = _mm256_mask_add_epi8(q, _cvtu32_mask32(ld_u32(x->qh)), q, _mm256_set1_epi8(16));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, loadu256(y->qs));
}

/* acc + a * b with one rounding, for the few tail blocks */
static inline float fma1(float a, float b, float acc) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(acc)));
}

/* sum_b d_x[b] d_y[b] isum[b] (+ m_x[b] s_y[b] when HAS_M: Q4_1 / Q5_1 against Q8_1).
 * Summation order, identical to x86_avx2.c's (so the two levels agree bit for bit; it is also
 * llama.cpp's decode order for Q8_0): block b's 8 lanes go into accumulator b mod 2 by FMA, held here
 * as acc = [acc_even | acc_odd] (a pair register has block 2k in lanes 0-7, 2k+1 in lanes 8-15);
 * result hsum(acc_even + acc_odd); m*s into lane b mod 4 of a 4-lane accumulator. */
#define DEFINE_VEC_DOT_32(NAME, XB, YB, PAIR, ONE, HAS_M)                                                    \
    static inline __attribute__((always_inline)) void NAME##_rows(const int R, int64_t n, float *restrict s,  \
                                                                  const char *restrict vx, size_t xs,        \
                                                                  const void *restrict vy, const char *pf) { \
        const YB *y = vy;                                                                                    \
        const XB *x[GEMV_ROWS];                                                                              \
        __m512 acc[GEMV_ROWS];                                                                               \
        __m128 accm[GEMV_ROWS];                                                                              \
        GEMV_UNROLL for (int r = 0; r < R; r++) {                                                            \
            x[r] = (const XB *)(const void *)(vx + (size_t)r * xs);                                          \
            acc[r] = _mm512_setzero_ps();                                                                    \
            accm[r] = _mm_setzero_ps();                                                                      \
        }                                                                                                    \
        const int64_t nb = n / 32;                                                                           \
        int64_t b = 0;                                                                                       \
        for (; b + 8 <= nb; b += 8) {                                                                        \
            gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(XB), (size_t)R * (size_t)(b + 8) * sizeof(XB)); \
            const __m256 dy = f16x8_strided(&y[b], 0, sizeof *y);                                            \
            GEMV_UNROLL for (int r = 0; r < R; r++) {                                                        \
                const XB *xr = x[r];                                                                         \
                const __m512 dz = _mm512_castps256_ps512(_mm256_mul_ps(f16x8_strided(&xr[b], 0, sizeof *xr), dy)); \
                if (HAS_M) {                                                                                 \
                    const __m256 m8 = f16x8_strided(&xr[b], 2, sizeof *xr), s8 = f16x8_strided(&y[b], 2, sizeof *y); \
                    accm[r] = _mm_fmadd_ps(_mm256_castps256_ps128(m8), _mm256_castps256_ps128(s8), accm[r]);   \
                    accm[r] = _mm_fmadd_ps(_mm256_extractf128_ps(m8, 1), _mm256_extractf128_ps(s8, 1), accm[r]); \
                }                                                                                            \
                const __m512i p0 = PAIR(&xr[b], &y[b]), p1 = PAIR(&xr[b + 2], &y[b + 2]);                    \
                const __m512i p2 = PAIR(&xr[b + 4], &y[b + 4]), p3 = PAIR(&xr[b + 6], &y[b + 6]);             \
                acc[r] = _mm512_fmadd_ps(pair_scale(dz, 0), _mm512_cvtepi32_ps(p0), acc[r]);                 \
                acc[r] = _mm512_fmadd_ps(pair_scale(dz, 1), _mm512_cvtepi32_ps(p1), acc[r]);                 \
                acc[r] = _mm512_fmadd_ps(pair_scale(dz, 2), _mm512_cvtepi32_ps(p2), acc[r]);                 \
                acc[r] = _mm512_fmadd_ps(pair_scale(dz, 3), _mm512_cvtepi32_ps(p3), acc[r]);                 \
            }                                                                                                \
        }                                                                                                    \
        for (int r = 0; r < R; r++) {                                                                        \
            const XB *xr = x[r];                                                                             \
            int64_t bt = b;                                                                                  \
            if (bt < nb) {                                                                                   \
                float ms[4];                                                                                 \
                _mm_storeu_ps(ms, accm[r]);                                                                  \
                for (; bt + 2 <= nb; bt += 2) { /* even: block bt -> lanes 0-7, bt+1 -> lanes 8-15 */         \
                    const __m512 d2 = two_scales(f16_at(&xr[bt].d) * f16_at(&y[bt].d),                       \
                                                 f16_at(&xr[bt + 1].d) * f16_at(&y[bt + 1].d));              \
                    acc[r] = _mm512_fmadd_ps(d2, _mm512_cvtepi32_ps(PAIR(&xr[bt], &y[bt])), acc[r]);         \
                    if (HAS_M)                                                                               \
                        for (int k = 0; k < 2; k++)                                                          \
                            ms[(bt + k) & 3] = fma1(f16_at((const uint8_t *)&xr[bt + k] + 2),                \
                                                    f16_at((const uint8_t *)&y[bt + k] + 2), ms[(bt + k) & 3]); \
                }                                                                                            \
                if (bt < nb) { /* last block, bt even: lanes 0-7 only */                                    \
                    const __m512 d1 = _mm512_set1_ps(f16_at(&xr[bt].d) * f16_at(&y[bt].d));                  \
                    const __m512 p = _mm512_cvtepi32_ps(_mm512_zextsi256_si512(ONE(&xr[bt], &y[bt])));       \
                    acc[r] = _mm512_mask3_fmadd_ps(d1, p, acc[r], 0x00FF);                                   \
                    if (HAS_M)                                                                               \
                        ms[bt & 3] = fma1(f16_at((const uint8_t *)&xr[bt] + 2), f16_at((const uint8_t *)&y[bt] + 2), \
                                          ms[bt & 3]);                                                       \
                }                                                                                            \
                accm[r] = _mm_loadu_ps(ms);                                                                  \
            }                                                                                                \
            const float sum = hsum512(acc[r]);                                                               \
            s[r] = HAS_M ? sum + hsum128(accm[r]) : sum;                                                     \
        }                                                                                                    \
    }                                                                                                        \
    static void NAME(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {       \
        NAME##_rows(1, n, s, vx, 0, vy, stream_pf(vx));                                                               \
    }

/* ---------------------------------------------------------------------------------------------- */
/* Q4_0 x Q8_0 in groups of 4 blocks, one row at a time (q4_0x4.h: why, and the summation order)  */

/* vpermt2w index tables (AVX-512BW; blocks of 34 and 18 bytes keep their quants 16-bit aligned): word
 * i of the result <- word 17 (Q8_0) or 9 (Q4_0) * (i / 8) + offset + i % 8 of the register pair (the
 * quants of block i / 8, low or high half); DY / DX: word l <- the fp16 scale of block l / 4 */
static const uint16_t Q40_IDX_YLO[32] __attribute__((aligned(64))) = {
    1, 2, 3, 4, 5, 6, 7, 8, 18, 19, 20, 21, 22, 23, 24, 25,
    35, 36, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 59,
};
static const uint16_t Q40_IDX_YHI[32] __attribute__((aligned(64))) = {
    5, 6, 7, 8, 9, 10, 11, 12, 22, 23, 24, 25, 26, 27, 28, 29,
    39, 40, 41, 42, 43, 44, 45, 46, 56, 57, 58, 59, 60, 61, 62, 63,
};
static const uint16_t Q40_IDX_X[32] __attribute__((aligned(64))) = {
    1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
    19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35,
};
static const uint16_t Q40_IDX_DY[32] __attribute__((aligned(64))) = {
    0, 0, 0, 0, 17, 17, 17, 17, 34, 34, 34, 34, 51, 51, 51, 51,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
static const uint16_t Q40_IDX_DX[32] __attribute__((aligned(64))) = {
    0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The activation groups of blocks [b0, b1) of y (b0 a multiple of 4) into gy[0..) */
static void q40x4_prep(const lm_block_q8_0 *restrict y, int64_t b0, int64_t b1, q40x4_y *restrict gy) {
    const __m512i ilo = loadu512(Q40_IDX_YLO), ihi = loadu512(Q40_IDX_YHI), idy = loadu512(Q40_IDX_DY);
    const __m512i eight = _mm512_set1_epi8(8), z = _mm512_setzero_si512();
    for (int64_t b = b0; b < b1; b += 4, gy++) {
        lm_block_q8_0 tmp[4];
        const uint8_t *p = (const uint8_t *)(y + b);
        if (b + 4 > b1) { /* last partial group: zero blocks after the row's end */
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, y + b, (size_t)(b1 - b) * sizeof *y);
            p = (const uint8_t *)tmp;
        }
        const __m512i y0 = loadu512(p), y1 = loadu512(p + 64); /* bytes [0, 128) of the 136 */
        const __m512i lo = _mm512_permutex2var_epi16(y0, ilo, y1);
        const __m512i hi = _mm512_permutex2var_epi16(loadu512(p + 8), ihi, loadu512(p + 72)); /* [8, 136) */
        _mm512_storeu_si512(gy->lo, lo);
        _mm512_storeu_si512(gy->hi, hi);
        _mm512_storeu_si512(gy->ncorr, _mm512_sub_epi32(z, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, eight, lo), eight, hi)));
        _mm512_storeu_ps(gy->dy, _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(y0, idy, y1))));
    }
}

/* acc + the groups of blocks [b0, b1) of the Q4_0 row x (b0 a multiple of 4), gy: their activation */
static inline __m512 q40x4_acc(const lm_block_q4_0 *restrict x, int64_t b0, int64_t b1, const q40x4_y *restrict gy,
                               __m512 acc) {
    const __m512i iq = loadu512(Q40_IDX_X), idx = loadu512(Q40_IDX_DX), m4 = _mm512_set1_epi8(15);
    for (int64_t b = b0; b < b1; b += 4, gy++) {
        lm_block_q4_0 tmp[4];
        const uint8_t *p = (const uint8_t *)(x + b);
        if (b + 4 > b1) {
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, x + b, (size_t)(b1 - b) * sizeof *x);
            p = (const uint8_t *)tmp;
        }
        __builtin_prefetch(stream_pf(x + b), 0, 3); /* gemv.h; one line per 72 bytes */
        const __m512i a = loadu512(p);                         /* bytes [0, 64) of the group's 72 */
        const __m512i q = _mm512_permutex2var_epi16(a, iq, _mm512_maskz_loadu_epi8(0xFF, p + 64));
        const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        const __m512i isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(loadu512(gy->ncorr), lo, loadu512(gy->lo)), hi,
                                                 loadu512(gy->hi));
        const __m512 dx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, a)));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_loadu_ps(gy->dy)), _mm512_cvtepi32_ps(isum), acc);
    }
    return acc;
}

/* Rows [r0, r1) of W (rows of ws bytes) times the Q8_0 row vy: the activation is prepared once
 * (slice by slice past Q40X4_MAX_GROUPS groups), then each row is one sequential pass. */
static void q4_0_x4_gemv(int64_t n, const void *restrict W, size_t ws, const void *restrict vy, float *restrict s,
                         int64_t r0, int64_t r1) {
    const lm_block_q8_0 *y = vy;
    const int64_t nb = n / 32, slice = 4 * Q40X4_MAX_GROUPS;
    q40x4_y gy[Q40X4_MAX_GROUPS];
    if (nb <= slice) {
        q40x4_prep(y, 0, nb, gy);
        for (int64_t r = r0; r < r1; r++)
            s[r] = hsum512(q40x4_acc((const lm_block_q4_0 *)((const char *)W + (size_t)r * ws), 0, nb, gy,
                                     _mm512_setzero_ps()));
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const lm_block_q4_0 *x = (const lm_block_q4_0 *)((const char *)W + (size_t)r * ws);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += slice) {
            const int64_t b1 = b0 + slice < nb ? b0 + slice : nb;
            q40x4_prep(y, b0, b1, gy);
            acc = q40x4_acc(x, b0, b1, gy, acc);
        }
        s[r] = hsum512(acc);
    }
}
static void vec_dot_q4_0_q8_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q4_0_x4_gemv(n, vx, 0, vy, s, 0, 1);
}

/* d sits at byte offset 0 of every 32-element block; m (Q4_1/Q5_1) and s (Q8_1) at offset 2 */
_Static_assert(offsetof(lm_block_q4_0, d) == 0 && offsetof(lm_block_q5_0, d) == 0 && offsetof(lm_block_q8_0, d) == 0 &&
                   offsetof(lm_block_q4_1, d) == 0 && offsetof(lm_block_q5_1, d) == 0 && offsetof(lm_block_q8_1, d) == 0,
               "d at 0");
_Static_assert(offsetof(lm_block_q4_1, m) == 2 && offsetof(lm_block_q5_1, m) == 2, "m at 2");
_Static_assert(offsetof(lm_block_q8_1, s) == 2, "s at 2");

DEFINE_VEC_DOT_32(vec_dot_q8_0_q8_0, lm_block_q8_0, lm_block_q8_0, q8_0_pair, q8_0_one, 0)
DEFINE_VEC_DOT_32(vec_dot_q5_0_q8_0, lm_block_q5_0, lm_block_q8_0, q5_0_pair, q5_0_one, 0)
DEFINE_GEMV(vec_dot_q5_0_q8_0)
DEFINE_VEC_DOT_32(vec_dot_q4_1_q8_1, lm_block_q4_1, lm_block_q8_1, q4_1_pair, q4_1_one, 1)
DEFINE_GEMV(vec_dot_q4_1_q8_1)
DEFINE_VEC_DOT_32(vec_dot_q5_1_q8_1, lm_block_q5_1, lm_block_q8_1, q5_1_pair, q5_1_one, 1)
DEFINE_GEMV(vec_dot_q5_1_q8_1)

/* ---------------------------------------------------------------------------------------------- */
/* K-quants                                                                                       */

/* vpshufb control selecting, in 128-bit lane k (0..3) of a register holding 8 int16 per lane, the
 * int16 element e[k] */
static inline __m512i sel16x4(int e0, int e1, int e2, int e3) {
#define SEL_LANE(e) (long long)(0x0101010101010101ull * (uint64_t)(2 * (e)) + 0x0100010001000100ull)
    return _mm512_set_epi64(SEL_LANE(e3), SEL_LANE(e3), SEL_LANE(e2), SEL_LANE(e2), SEL_LANE(e1), SEL_LANE(e1),
                            SEL_LANE(e0), SEL_LANE(e0));
#undef SEL_LANE
}

/* int16 shift counts: a in lanes 0..15, b in lanes 16..31 */
static inline __m512i shift2(int a, int b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)a)), _mm256_set1_epi16((short)b), 1);
}

/* bytes: a in 0..31, b in 32..63 */
static inline __m512i bytes2(int a, int b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)a)), _mm256_set1_epi8((char)b), 1);
}

/* Keeps v in a general-purpose register: stops the compiler from turning the scalar scale unpacking
 * below into vector instructions, which would compete with the dot product for the vector ALUs while
 * the scalar ALUs idle. */
static inline uint64_t in_gpr(uint64_t v) {
    __asm__("" : "+r"(v));
    return v;
}

/* Q4_K / Q5_K packed scales -> bytes 0..7 scales, 8..15 mins (see x86_avx2.c / quant.c); computed in
 * 64-bit GPRs */
static inline __m128i k4_scales_mins(const uint8_t *s) {
    uint64_t u;
    memcpy(&u, s, 8);
    u = in_gpr(u);
    const uint64_t a2 = in_gpr(ld_u32(s + 8));
    const uint64_t sc = (u & 0x3f3f3f3fu) | ((a2 & 0x0f0f0f0fu) | ((u >> 2) & 0x30303030u)) << 32;
    const uint64_t m = ((u >> 32) & 0x3f3f3f3fu) | (((a2 >> 4) & 0x0f0f0f0fu) | ((u >> 34) & 0x30303030u)) << 32;
    return _mm_set_epi64x((long long)in_gpr(m), (long long)in_gpr(sc));
}

/* Q3_K packed scales -> 16 bytes: scale + 32 (0..63), computed in GPRs */
static inline __m128i q3k_scales_biased(const uint8_t *s) {
    const uint32_t a0 = ld_u32(s), a1 = ld_u32(s + 4), a2 = ld_u32(s + 8);
    const uint64_t b0 = (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4);
    const uint64_t b1 = (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4);
    const uint64_t b2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4);
    const uint64_t b3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4);
    return _mm_set_epi64x((long long)in_gpr(b3 << 32 | b2), (long long)in_gpr(b1 << 32 | b0));
}

/* sum_j mins[j] * (bsums[2j] + bsums[2j+1]) as 8 int32 lanes; mins in bytes 8..15 of sm */
static inline __m256i k4_min_dot(__m128i sm, const int16_t *bsums) {
    return _mm256_madd_epi16(loadu256(bsums), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)));
}

/* vpshufb control turning bytes 0..7 (8 unsigned scales, in every 128-bit lane) into int16 lanes:
 * 128-bit lanes 0, 1 get scale j, lanes 2, 3 scale j + 1 (zero-extended) */
static inline __m512i sel_u8_pair(int j) {
    const long long a = (long long)(0x8000800080008000ull | 0x0001000100010001ull * (uint64_t)j);
    const long long b = (long long)(0x8000800080008000ull | 0x0001000100010001ull * (uint64_t)(j + 1));
    return _mm512_set_epi64(b, b, b, b, a, a, a, a);
}

/* Q4_K / Q5_K super-block: 64 elements per step c (sub-blocks 2c, 2c+1); q: 0..31 bytes */
#define K4_STEP(ISUM, Q, YQ, SCB, SEL) \
    ISUM = _mm512_dpwssd_epi32(ISUM, _mm512_maddubs_epi16(Q, loadu512(YQ)), _mm512_shuffle_epi8(SCB, SEL))

static inline __attribute__((always_inline)) void q4_K_rows(const int R, int64_t n, float *restrict s,
                                                             const char *restrict vx, size_t xs,
                                                             const void *restrict vy, const char *pf) {
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m512i m4 = _mm512_set1_epi8(15), sh = shift2(0, 4);
    const __m512i sel[4] = {sel_u8_pair(0), sel_u8_pair(2), sel_u8_pair(4), sel_u8_pair(6)};
    const lm_block_q4_K *xs_[GEMV_ROWS];
    __m512 acc[GEMV_ROWS];
    __m256 accm[GEMV_ROWS];
    GEMV_UNROLL for (int r = 0; r < R; r++) {
        xs_[r] = (const lm_block_q4_K *)(const void *)(vx + (size_t)r * xs);
        acc[r] = _mm512_setzero_ps();
        accm[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(lm_block_q4_K), (size_t)R * (size_t)(b + 1) * sizeof(lm_block_q4_K));
        GEMV_UNROLL for (int r = 0; r < R; r++) {
            const lm_block_q4_K *x = xs_[r];
            const float dd = y[b].d * f16_at(&x[b].d), dm = y[b].d * f16_at(&x[b].dmin);
            const __m128i sm = k4_scales_mins(x[b].scales);
            accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(k4_min_dot(sm, y[b].bsums)), accm[r]);
            const __m512i scb = _mm512_broadcast_i32x4(sm);
            __m512i isum = _mm512_setzero_si512();
            /* step c: 64 elements 64c..64c+63 = low nibbles of qs[32c..32c+31], then their high nibbles */
#define Q4K_STEP(c) K4_STEP(isum, _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(loadu256(x[b].qs + 32 * (c))), sh), m4), \
                            y[b].qs + 64 * (c), scb, sel[c])
            Q4K_STEP(0);
            Q4K_STEP(1);
            Q4K_STEP(2);
            Q4K_STEP(3);
#undef Q4K_STEP
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(isum), acc[r]);
        }
    }
    GEMV_UNROLL for (int r = 0; r < R; r++) s[r] = hsum512(acc[r]) - hsum256(accm[r]);
}
static void vec_dot_q4_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q4_K_rows(1, n, s, vx, 0, vy, stream_pf(vx));
}

static inline __attribute__((always_inline)) void q5_K_rows(const int R, int64_t n, float *restrict s,
                                                             const char *restrict vx, size_t xs,
                                                             const void *restrict vy, const char *pf) {
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m512i m4 = _mm512_set1_epi8(15), sh = shift2(0, 4), b16 = _mm512_set1_epi8(16);
    const __m512i sel[4] = {sel_u8_pair(0), sel_u8_pair(2), sel_u8_pair(4), sel_u8_pair(6)};
    const __m512i bit[4] = {bytes2(1, 2), bytes2(4, 8), bytes2(16, 32), bytes2(64, 128)};
    const lm_block_q5_K *xs_[GEMV_ROWS];
    __m512 acc[GEMV_ROWS];
    __m256 accm[GEMV_ROWS];
    GEMV_UNROLL for (int r = 0; r < R; r++) {
        xs_[r] = (const lm_block_q5_K *)(const void *)(vx + (size_t)r * xs);
        acc[r] = _mm512_setzero_ps();
        accm[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(lm_block_q5_K), (size_t)R * (size_t)(b + 1) * sizeof(lm_block_q5_K));
        GEMV_UNROLL for (int r = 0; r < R; r++) {
            const lm_block_q5_K *x = xs_[r];
            const float dd = y[b].d * f16_at(&x[b].d), dm = y[b].d * f16_at(&x[b].dmin);
            const __m128i sm = k4_scales_mins(x[b].scales);
            accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(k4_min_dot(sm, y[b].bsums)), accm[r]);
            const __m512i scb = _mm512_broadcast_i32x4(sm);
            const __m512i qh = _mm512_broadcast_i64x4(loadu256(x[b].qh)); /* bit j of byte l: element 32j + l */
            __m512i isum = _mm512_setzero_si512();
#define Q5K_STEP(c)                                                                                               \
    do {                                                                                                          \
        __m512i q = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(loadu256(x[b].qs + 32 * (c))), sh), m4); \
        q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bit[c]), q, b16);                                  \
        K4_STEP(isum, q, y[b].qs + 64 * (c), scb, sel[c]);                                                        \
    } while (0)
            Q5K_STEP(0);
            Q5K_STEP(1);
            Q5K_STEP(2);
            Q5K_STEP(3);
#undef Q5K_STEP
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(isum), acc[r]);
        }
    }
    GEMV_UNROLL for (int r = 0; r < R; r++) s[r] = hsum512(acc[r]) - hsum256(accm[r]);
}
static void vec_dot_q5_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q5_K_rows(1, n, s, vx, 0, vy, stream_pf(vx));
}

/* (a & c) | b, bitwise */
#define TERN_AND_OR 0xEC

static inline __attribute__((always_inline)) void q6_K_rows(const int R, int64_t n, float *restrict s,
                                                             const char *restrict vx, size_t xs,
                                                             const void *restrict vy, const char *pf) {
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(0x30);
    const __m512i shl01 = shift2(4, 2), shr23 = shift2(0, 2);
    const __m512i sel01 = sel16x4(0, 1, 2, 3), sel23 = sel16x4(4, 5, 6, 7);
    const lm_block_q6_K *xs_[GEMV_ROWS];
    __m512 acc[GEMV_ROWS];
    GEMV_UNROLL for (int r = 0; r < R; r++) {
        xs_[r] = (const lm_block_q6_K *)(const void *)(vx + (size_t)r * xs);
        acc[r] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(lm_block_q6_K), (size_t)R * (size_t)(b + 1) * sizeof(lm_block_q6_K));
        GEMV_UNROLL for (int r = 0; r < R; r++) {
            const lm_block_q6_K *x = xs_[r];
            const float d = y[b].d * f16_at(&x[b].d);
            const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(x[b].scales));
            const __m256i corr = _mm256_madd_epi16(loadu256(y[b].bsums), sc16); /* sum sc * bsum, 8 lanes */
            __m512i isum = _mm512_setzero_si512();
            for (int h = 0; h < 2; h++) {
                const __m512i sc = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
                const __m512i ql = loadu512(x[b].ql + 64 * h);
                const __m512i qh = _mm512_broadcast_i64x4(loadu256(x[b].qh + 32 * h));
                /* elements 128h + 0..63 (p = 0, 1) and 128h + 64..127 (p = 2, 3) */
                const __m512i h01 = _mm512_and_si512(_mm512_sllv_epi16(qh, shl01), m2);
                const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi16(qh, shr23), m2);
                const __m512i q01 = _mm512_ternarylogic_epi32(ql, h01, m4, TERN_AND_OR);
                const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), h23, m4, TERN_AND_OR);
                const int8_t *yq = y[b].qs + 128 * h;
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q01, loadu512(yq)), _mm512_shuffle_epi8(sc, sel01));
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q23, loadu512(yq + 64)), _mm512_shuffle_epi8(sc, sel23));
            }
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(isum), acc[r]);
        }
    }
    GEMV_UNROLL for (int r = 0; r < R; r++) s[r] = hsum512(acc[r]);
}
static void vec_dot_q6_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q6_K_rows(1, n, s, vx, 0, vy, stream_pf(vx));
}

static void vec_dot_q2_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q2_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m512i m2 = _mm512_set1_epi8(3);
    const __m512i sh[2] = {shift2(0, 2), shift2(4, 6)};
    const __m512i sel[2] = {sel16x4(0, 1, 2, 3), sel16x4(4, 5, 6, 7)};
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float dd = y[b].d * f16_at(&x[b].d), dm = y[b].d * f16_at(&x[b].dmin);
        const __m128i raw = loadu128(x[b].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(15)));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15)));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(_mm256_madd_epi16(loadu256(y[b].bsums), mn16)), accm);
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i sc = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m512i qv = _mm512_broadcast_i64x4(loadu256(x[b].qs + 32 * h));
            for (int jj = 0; jj < 2; jj++) { /* elements 128h + 64jj + 0..63: bit pairs 2jj, 2jj+1 */
                const __m512i q = _mm512_and_si512(_mm512_srlv_epi16(qv, sh[jj]), m2);
                const __m512i p = _mm512_maddubs_epi16(q, loadu512(y[b].qs + 128 * h + 64 * jj));
                isum = _mm512_dpwssd_epi32(isum, p, _mm512_shuffle_epi8(sc, sel[jj]));
            }
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(isum), acc);
    }
    *s = hsum512(acc) - hsum256(accm);
}

static void vec_dot_q3_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q3_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m512i m2 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    const __m512i sh[2] = {shift2(0, 2), shift2(4, 6)};
    const __m512i sel[2] = {sel16x4(0, 1, 2, 3), sel16x4(4, 5, 6, 7)};
    const __m512i bit[4] = {bytes2(1, 2), bytes2(4, 8), bytes2(16, 32), bytes2(64, 128)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float d = y[b].d * f16_at(&x[b].d);
        const __m256i sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(q3k_scales_biased(x[b].scales)), _mm256_set1_epi16(32));
        const __m256i corr = _mm256_madd_epi16(loadu256(y[b].bsums), sc16);
        const __m512i hm = _mm512_broadcast_i64x4(loadu256(x[b].hmask)); /* bit 4h + j of byte l */
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i sc = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m512i qv = _mm512_broadcast_i64x4(loadu256(x[b].qs + 32 * h));
            for (int jj = 0; jj < 2; jj++) {
                __m512i u = _mm512_and_si512(_mm512_srlv_epi16(qv, sh[jj]), m2);
                u = _mm512_mask_add_epi8(u, _mm512_test_epi8_mask(hm, bit[2 * h + jj]), u, four); /* 0..7 */
                const __m512i p = _mm512_maddubs_epi16(u, loadu512(y[b].qs + 128 * h + 64 * jj));
                isum = _mm512_dpwssd_epi32(isum, p, _mm512_shuffle_epi8(sc, sel[jj]));
            }
        }
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 2)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(isum), acc);
    }
    *s = hsum512(acc);
}

/* ---------------------------------------------------------------------------------------------- */
/* F16 / BF16                                                                                     */

static inline __mmask16 tail16(int64_t r) { return (__mmask16)((1u << r) - 1u); } /* r < 16 */

/* Elements to process before p (elements of `size` bytes) reaches an `align`-byte boundary, at most n
 * (0 when p is not even element-aligned). The float dots peel them with one masked step so that the
 * weight row's loads in the main loop never straddle two cache lines (a split 64-byte load costs about
 * twice as much: measured 40 vs 72 GB/s for F32 rows in L2). */
static inline int64_t peel_count(const void *p, size_t size, unsigned align, int64_t n) {
    const unsigned mis = (unsigned)((uintptr_t)p & (align - 1));
    if (mis == 0 || mis % size != 0) return 0;
    const int64_t k = (int64_t)((align - mis) / size);
    return k < n ? k : n;
}

static inline __m512 ld_f16x16(const lm_fp16 *p) { return _mm512_cvtph_ps(loadu256(p)); }

static void dot_f16(int64_t n, float *restrict s, const lm_fp16 *restrict x, const lm_fp16 *restrict y) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = peel_count(x, sizeof *x, 32, n); /* 16 fp16 = 32-byte loads */
    if (i) {
        const __mmask16 m = tail16(i);
        a2 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x)), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y)));
    }
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(ld_f16x16(x + i), ld_f16x16(y + i), a0);
        a1 = _mm512_fmadd_ps(ld_f16x16(x + i + 16), ld_f16x16(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(ld_f16x16(x + i + 32), ld_f16x16(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(ld_f16x16(x + i + 48), ld_f16x16(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(ld_f16x16(x + i), ld_f16x16(y + i), a0);
    if (i < n) {
        const __mmask16 m = tail16(n - i);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)),
                             _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y + i)), a1);
    }
    *s = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static void vec_dot_f16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    dot_f16(n, s, vx, vy);
}

/* vdpbf16ps: 32 bf16 products per instruction (exact in fp32), added pairwise into 16 fp32 lanes.
 * (It treats bf16 subnormals as zero; their products are below 2^-252 and vanish in any sum that
 * matters.) */
static inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

static void vec_dot_bf16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_bf16 *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = peel_count(x, sizeof *x, 64, n);
    if (i) {
        const __mmask32 m = (__mmask32)((1u << i) - 1u); /* i < 32 */
        a2 = _mm512_dpbf16_ps(a2, as_bh(_mm512_maskz_loadu_epi16(m, x)), as_bh(_mm512_maskz_loadu_epi16(m, y)));
    }
    for (; i + 128 <= n; i += 128) {
        a0 = _mm512_dpbf16_ps(a0, as_bh(loadu512(x + i)), as_bh(loadu512(y + i)));
        a1 = _mm512_dpbf16_ps(a1, as_bh(loadu512(x + i + 32)), as_bh(loadu512(y + i + 32)));
        a2 = _mm512_dpbf16_ps(a2, as_bh(loadu512(x + i + 64)), as_bh(loadu512(y + i + 64)));
        a3 = _mm512_dpbf16_ps(a3, as_bh(loadu512(x + i + 96)), as_bh(loadu512(y + i + 96)));
    }
    for (; i + 32 <= n; i += 32) a0 = _mm512_dpbf16_ps(a0, as_bh(loadu512(x + i)), as_bh(loadu512(y + i)));
    if (i < n) {
        const __mmask32 m = (__mmask32)((1u << (n - i)) - 1u); /* n - i < 32 */
        a1 = _mm512_dpbf16_ps(a1, as_bh(_mm512_maskz_loadu_epi16(m, x + i)), as_bh(_mm512_maskz_loadu_epi16(m, y + i)));
    }
    *s = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* ---------------------------------------------------------------------------------------------- */
/* attention helpers                                                                              */

/* y[i] += a * x[i]: mul, then add (never fused): bit-identical to the scalar helper */
static void axpy_f16(int64_t n, float *restrict y, float a, const lm_fp16 *restrict x) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, ld_f16x16(x + i))));
    if (i < n) {
        const __mmask16 m = tail16(n - i);
        const __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_mul_ps(va, xv)));
    }
}

static void fp32_to_fp16(const float *restrict x, lm_fp16 *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        const __mmask16 m = tail16(n - i);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

static void fp16_to_fp32(const lm_fp16 *restrict x, float *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, ld_f16x16(x + i));
    if (i < n) {
        const __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

static void from_float_f16(const float *restrict x, void *restrict vy, int64_t n) { fp32_to_fp16(x, vy, n); }
static void to_float_f16(const void *restrict vx, float *restrict y, int64_t n) { fp16_to_fp32(vx, y, n); }

/* AVX512_BF16 (vdpbf16ps) is not part of what dispatch.c checks for this level (Ice Lake and Cascade
 * Lake have VNNI without it): CPUID leaf 7, sub-leaf 1, EAX bit 5. The OS support for the AVX-512 state
 * is already established by the avx512f check. */
static int cpu_has_avx512_bf16(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    (void)b;
    (void)c;
    (void)d;
    return (a >> 5) & 1u;
}

void lm_cpu_init_avx512(lm_kernels *k) {
    /* F32 keeps the avx2 kernel: with 64-byte loads, rows and activations that are not both 64-byte
     * aligned (GGUF aligns tensors to 32) split a cache line on every load of one of them, and the
     * 32-byte-load kernel measured faster (F32 rows in L2: 70 vs 45 GB/s). */
    k->vec_dot[LM_TYPE_F16] = vec_dot_f16;
    if (cpu_has_avx512_bf16()) k->vec_dot[LM_TYPE_BF16] = vec_dot_bf16; /* else the avx2 kernel */
    /* gemv must agree bit for bit with this level's vec_dot: drop any inherited from avx2 */
    for (int t = 0; t < LM_TYPE_COUNT; t++) k->gemv[t] = NULL;
    k->gemv[LM_TYPE_Q4_0] = q4_0_x4_gemv;
    k->gemv[LM_TYPE_Q4_1] = vec_dot_q4_1_q8_1_gemv;
    k->gemv[LM_TYPE_Q5_0] = vec_dot_q5_0_q8_0_gemv;
    k->gemv[LM_TYPE_Q5_1] = vec_dot_q5_1_q8_1_gemv;
    k->vec_dot[LM_TYPE_Q4_0] = vec_dot_q4_0_q8_0;
    k->vec_dot[LM_TYPE_Q4_1] = vec_dot_q4_1_q8_1;
    k->vec_dot[LM_TYPE_Q5_0] = vec_dot_q5_0_q8_0;
    k->vec_dot[LM_TYPE_Q5_1] = vec_dot_q5_1_q8_1;
    k->vec_dot[LM_TYPE_Q8_0] = vec_dot_q8_0_q8_0;
    k->vec_dot[LM_TYPE_Q2_K] = vec_dot_q2_K_q8_K;
    k->vec_dot[LM_TYPE_Q3_K] = vec_dot_q3_K_q8_K;
    k->vec_dot[LM_TYPE_Q4_K] = vec_dot_q4_K_q8_K;
    k->vec_dot[LM_TYPE_Q5_K] = vec_dot_q5_K_q8_K;
    k->vec_dot[LM_TYPE_Q6_K] = vec_dot_q6_K_q8_K;
    k->from_float[LM_TYPE_F16] = from_float_f16;
    k->to_float[LM_TYPE_F16] = to_float_f16;
    k->dot_f16 = dot_f16;
    k->axpy_f16 = axpy_f16;
    k->fp32_to_fp16 = fp32_to_fp16;
    k->fp16_to_fp32 = fp16_to_fp32;
}
#endif
