/*
 * x86_avx2: AVX2 + FMA + F16C kernels (see cpu.h). Compiled with its own -m flags (Makefile) and entered
 * only after CPU detection (dispatch.c).
 *
 * What is here, for every weight type of quant.h:
 *   vec_dot     weight row x activation row (the type's vec_dot_type). Integer products are summed per
 *               block (or per sub-block with its integer scale) in int32 lanes, which are converted to
 *               float once and scaled by the block's float scale in a vector FMA; no horizontal sums
 *               inside the loop. The result equals the scalar reference (quant.c) up to float summation
 *               order; for the 32-element block types the order is fixed (see DEFINE_VEC_DOT_32) and
 *               shared with x86_avx512.c, which gives bit-identical results.
 *   from_float  activation formats (Q8_0, Q8_1, Q8_K, F16, BF16): the same bytes as the scalar reference
 *               for every input (Q8_0 / Q8_1: every non-NaN input; NaN gives unspecified bytes there, as
 *               the reference allows): the same float operations per element; only max/sum reductions
 *               are reordered, which is exact.
 *   to_float    every type: bit-identical to the scalar reference (one mul, then at most one add/sub,
 *               never fused).
 *   f16 helpers dot_f16, axpy_f16 (bit-identical: mul then add), fp32_to_fp16 (vcvtps2ph, round to
 *               nearest even, bit-identical to lm_fp32_to_fp16), fp16_to_fp32.
 *
 * Activation rows come from from_float, so their int8 values lie in [-127, 127] (Q8_K: also -128 only
 * for NaN input); the signed x signed products use vpsignb + vpmaddubsw, which is exact under that
 * condition (|u8| <= 128, pair sums <= 2*128*127 < 32768). Blocks are not aligned: all loads are
 * unaligned (loadu / memcpy).
 */
#include "cpu.h"
#include "gemv.h"
#include "q4_0x4.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* small helpers                                                                                  */

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

/* The fp16 at p (any alignment) as float, via F16C. */
static inline float f16_at(const void *p) { return _cvtsh_ss((unsigned short)ld_u16(p)); }

/* The four fp16 at p, p+stride, p+2*stride, p+3*stride (any alignment) as 4 floats. Scalar loads
 * combined in a GPR, then one vcvtph2ps. */
static inline __m128 f16x4_strided(const void *vp, size_t stride) {
    const uint8_t *p = vp;
    uint64_t v = ld_u16(p) | ld_u16(p + stride) << 16 | ld_u16(p + 2 * stride) << 32 | ld_u16(p + 3 * stride) << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

static inline float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline float hsum256(__m256 v) {
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

static inline float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* Broadcast of lane k (0..3) of the low 128 bits of d. */
static inline __m256 lane_bcast(__m256 d, int k) { return _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(k)); }

/* 16 packed bytes -> 32 bytes in [0, 15]: byte j (< 16) = low nibble of qs[j], byte 16 + j = high nibble
 * (the element order of Q4_0 / Q4_1 / Q5_x blocks). */
static inline __m256i nib_unpack16(const uint8_t *qs) {
    const __m128i v = loadu128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
}

/* 32 bits -> 32 bytes: byte i is 0xFF when bit i of m is set, else 0. */
static inline __m256i bits_to_bytes(uint32_t m) {
    __m256i v = _mm256_set1_epi32((int)m);
    v = _mm256_shuffle_epi8(v, _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

/* int8 x int8 -> 8 int32 lanes, each the sum of 4 adjacent products. x: any int8; y: int8 in
 * [-127, 127] (see the file comment). */
static inline __m256i dot_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* uint8 (small: u * 127 * 2 < 32768) x int8 -> 8 int32 lanes of 4-product sums. */
static inline __m256i dot_u8(__m256i u, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

/* ---------------------------------------------------------------------------------------------- */
/* F32 / F16 / BF16 dots (float accumulation in 4 x 8 lanes; the scalar reference uses double)    */

static void vec_dot_f32(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static inline __m256 ld_f16x8(const lm_fp16 *p) { return _mm256_cvtph_ps(loadu128(p)); }

/* dot of two fp16 rows (also the attention helper dot_f16) */
static void dot_f16(int64_t n, float *restrict s, const lm_fp16 *restrict x, const lm_fp16 *restrict y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(ld_f16x8(x + i), ld_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(ld_f16x8(x + i + 8), ld_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(ld_f16x8(x + i + 16), ld_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(ld_f16x8(x + i + 24), ld_f16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld_f16x8(x + i), ld_f16x8(y + i), a0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += _cvtsh_ss(x[i]) * _cvtsh_ss(y[i]);
    *s = sum;
}

static void vec_dot_f16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    dot_f16(n, s, vx, vy);
}

static inline __m256 ld_bf16x8(const lm_bf16 *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
}

static void vec_dot_bf16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_bf16 *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(ld_bf16x8(x + i), ld_bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(ld_bf16x8(x + i + 8), ld_bf16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(ld_bf16x8(x + i + 16), ld_bf16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(ld_bf16x8(x + i + 24), ld_bf16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld_bf16x8(x + i), ld_bf16x8(y + i), a0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += lm_bf16_to_fp32(x[i]) * lm_bf16_to_fp32(y[i]);
    *s = sum;
}

/* ---------------------------------------------------------------------------------------------- */
/* 32-element blocks x Q8_0 / Q8_1                                                                */
/* Per block b: 8 int32 lanes (lane j = products of elements 4j..4j+3), converted and FMA'd with   */
/* d_x * d_y into accumulator b mod 2; result hsum(acc0 + acc1) (+ the m*s terms of Q4_1/Q5_1,     */
/* FMA'd into lane b mod 4 of a 4-lane accumulator). x86_avx512.c follows this order exactly, so   */
/* both levels give bit-identical results. Why this order: with it our decode reproduces the Q8_0  */
/* fixtures' llama.cpp .gen.logits to 4e-7 (measured), while other orders (4 accumulators, or one) */
/* land at 1.6e-2..2.2e-2 max / 1.7e-3 mean there: the synthetic models amplify single flips of the */
/* activation rounding, and test_fixtures bounds Q8_0 at 2e-2 / 5e-4.                             */

/* x . y for two Q8_0 blocks */
static inline __m256i q8_0_block_dot(const lm_block_q8_0 *x, const lm_block_q8_0 *y) {
    return dot_i8(loadu256(x->qs), loadu256(y->qs));
}


/* (q - 16) . y for a Q5_0 block: the 5th bit set keeps the nibble, clear makes it nibble - 16 (as int8:
 * nibble | 0xF0). */
static inline __m256i q5_0_block_dot(const lm_block_q5_0 *x, const lm_block_q8_0 *y) {
    const __m256i hb = bits_to_bytes(ld_u32(x->qh));
    const __m256i q = _mm256_or_si256(nib_unpack16(x->qs), _mm256_andnot_si256(hb, _mm256_set1_epi8((char)0xF0)));
    return dot_i8(q, loadu256(y->qs));
}

/* Q4_1 / Q5_1 x Q8_1: q unsigned; the block adds d_x d_y sum(q * qy) + m_x s_y. */
static inline __m256i q4_1_block_dot(const lm_block_q4_1 *x, const lm_block_q8_1 *y) {
    return dot_u8(nib_unpack16(x->qs), loadu256(y->qs));
}

static inline __m256i q5_1_block_dot(const lm_block_q5_1 *x, const lm_block_q8_1 *y) {
    const __m256i hb = _mm256_and_si256(bits_to_bytes(ld_u32(x->qh)), _mm256_set1_epi8(16));
    return dot_u8(_mm256_or_si256(nib_unpack16(x->qs), hb), loadu256(y->qs));
}

/* acc lane i += a * b (one fused rounding), for the few tail blocks */
static inline float fma1(float a, float b, float acc) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(acc)));
}

/* ---------------------------------------------------------------------------------------------- */
/* Q4_0 x Q8_0 in groups of 4 blocks, one row at a time (q4_0x4.h: why, and the summation order,  */
/* which x86_avx512.c follows too). Here a group is two halves of 8 lanes (blocks 0-1, 2-3), each */
/* with its own accumulator; vpmaddubsw + vpmaddwd give the same exact lane sums as vpdpbusd.     */

/* The activation groups of blocks [b0, b1) of y (b0 a multiple of 4) into gy[0..) */
static void q40x4_prep(const lm_block_q8_0 *restrict y, int64_t b0, int64_t b1, q40x4_y *restrict gy) {
    const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    for (int64_t b = b0; b < b1; b += 4, gy++) {
        lm_block_q8_0 tmp[4];
        const lm_block_q8_0 *yb = y + b;
        if (b + 4 > b1) { /* last partial group: zero blocks after the row's end */
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, y + b, (size_t)(b1 - b) * sizeof *y);
            yb = tmp;
        }
        for (int j = 0; j < 4; j++) {
            _mm_storeu_si128((__m128i *)(gy->lo + 16 * j), loadu128(yb[j].qs));
            _mm_storeu_si128((__m128i *)(gy->hi + 16 * j), loadu128(yb[j].qs + 16));
        }
        for (int h = 0; h < 2; h++) {
            const __m256i c16 = _mm256_add_epi16(_mm256_maddubs_epi16(eight, loadu256(gy->lo + 32 * h)),
                                                 _mm256_maddubs_epi16(eight, loadu256(gy->hi + 32 * h)));
            _mm256_storeu_si256((__m256i *)(gy->ncorr + 8 * h),
                                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(c16, ones)));
            _mm256_storeu_ps(gy->dy + 8 * h, _mm256_set_m128(_mm_set1_ps(f16_at(&yb[2 * h + 1].d)),
                                                             _mm_set1_ps(f16_at(&yb[2 * h].d))));
        }
    }
}

/* acc0 / acc1 + the groups of blocks [b0, b1) of the Q4_0 row x (b0 a multiple of 4) */
static inline void q40x4_acc(const lm_block_q4_0 *restrict x, int64_t b0, int64_t b1, const q40x4_y *restrict gy,
                             __m256 acc[2]) {
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    /* vpshufb controls gathering the 4 blocks' fp16 scales (bytes 0, 18, 36, 54 of the group) from
     * its bytes [0, 32) and [32, 64): each 128-bit lane gets its block's scale 4 times, in the low
     * 8 bytes for blocks 0-1, the high 8 bytes for blocks 2-3 (-1: zero) */
    const __m256i sel01 = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0 */
                                           2, 3, 2, 3, 2, 3, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1); /* 18 */
    const __m256i sel23 = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 4, 5, 4, 5, 4, 5, 4, 5, /* 36 */
                                           -1, -1, -1, -1, -1, -1, -1, -1, 6, 7, 6, 7, 6, 7, 6, 7); /* 54 */
    for (int64_t b = b0; b < b1; b += 4, gy++) {
        lm_block_q4_0 tmp[4];
        const lm_block_q4_0 *xb = x + b;
        __builtin_prefetch(stream_pf(x + b), 0, 3); /* gemv.h; one line per 72 bytes */
        if (b + 4 > b1) {
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, x + b, (size_t)(b1 - b) * sizeof *x);
            xb = tmp;
        }
        /* the scales as [d0 x 4, d1 x 4 | d2 x 4, d3 x 4] fp16, converted per half: 7 instructions
         * where four scalar conversions and broadcasts took ~18 */
        const uint8_t *gb = (const uint8_t *)xb;
        const __m256i d16 = _mm256_permute4x64_epi64(_mm256_or_si256(_mm256_shuffle_epi8(loadu256(gb), sel01),
                                                                     _mm256_shuffle_epi8(loadu256(gb + 32), sel23)),
                                                     _MM_SHUFFLE(3, 1, 2, 0));
        const __m256 dxh[2] = {_mm256_cvtph_ps(_mm256_castsi256_si128(d16)), _mm256_cvtph_ps(_mm256_extracti128_si256(d16, 1))};
        for (int h = 0; h < 2; h++) {
            const lm_block_q4_0 *x0 = &xb[2 * h], *x1 = &xb[2 * h + 1];
            const __m256i q = _mm256_set_m128i(loadu128(x1->qs), loadu128(x0->qs));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, loadu256(gy->lo + 32 * h)),
                                                 _mm256_maddubs_epi16(hi, loadu256(gy->hi + 32 * h)));
            const __m256i isum = _mm256_add_epi32(loadu256(gy->ncorr + 8 * h), _mm256_madd_epi16(p16, ones));
            acc[h] = _mm256_fmadd_ps(_mm256_mul_ps(dxh[h], _mm256_loadu_ps(gy->dy + 8 * h)), _mm256_cvtepi32_ps(isum), acc[h]);
        }
    }
}

/* Rows [r0, r1) of W (rows of ws bytes) times the Q8_0 row vy: the activation is prepared once
 * (slice by slice past Q40X4_MAX_GROUPS groups), then each row is one sequential pass. */
static void q4_0_x4_gemv(int64_t n, const void *restrict W, size_t ws, const void *restrict vy, float *restrict s,
                         int64_t r0, int64_t r1) {
    const lm_block_q8_0 *y = vy;
    const int64_t nb = n / 32, slice = 4 * Q40X4_MAX_GROUPS;
    q40x4_y gy[Q40X4_MAX_GROUPS];
    if (nb <= slice) q40x4_prep(y, 0, nb, gy);
    for (int64_t r = r0; r < r1; r++) {
        const lm_block_q4_0 *x = (const lm_block_q4_0 *)((const char *)W + (size_t)r * ws);
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        if (nb <= slice) {
            q40x4_acc(x, 0, nb, gy, acc);
        } else {
            for (int64_t b0 = 0; b0 < nb; b0 += slice) {
                const int64_t b1 = b0 + slice < nb ? b0 + slice : nb;
                q40x4_prep(y, b0, b1, gy);
                q40x4_acc(x, b0, b1, gy, acc);
            }
        }
        s[r] = hsum256(_mm256_add_ps(acc[0], acc[1]));
    }
}
static void vec_dot_q4_0_q8_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q4_0_x4_gemv(n, vx, 0, vy, s, 0, 1);
}

/* d sits at byte offset 0 of every 32-element block; m (Q4_1/Q5_1) and s (Q8_1) at offset 2 */
_Static_assert(offsetof(lm_block_q4_1, m) == 2 && offsetof(lm_block_q5_1, m) == 2, "m at 2");
_Static_assert(offsetof(lm_block_q8_1, s) == 2, "s at 2");

#define DEFINE_VEC_DOT_32(NAME, XB, YB, BLOCK_DOT, HAS_M)                                                    \
    static inline __attribute__((always_inline)) void NAME##_rows(const int R, int64_t n, float *restrict s,  \
                                                                  const char *restrict vx, size_t xs,        \
                                                                  const void *restrict vy, const char *pf) { \
        const YB *y = vy;                                                                                    \
        const XB *x[GEMV_ROWS];                                                                              \
        __m256 acc0[GEMV_ROWS], acc1[GEMV_ROWS];                                                             \
        __m128 accm[GEMV_ROWS];                                                                              \
        GEMV_UNROLL for (int r = 0; r < R; r++) {                                                            \
            x[r] = (const XB *)(const void *)(vx + (size_t)r * xs);                                          \
            acc0[r] = _mm256_setzero_ps();                                                                   \
            acc1[r] = _mm256_setzero_ps();                                                                   \
            accm[r] = _mm_setzero_ps();                                                                      \
        }                                                                                                    \
        const int64_t nb = n / 32;                                                                           \
        int64_t b = 0;                                                                                       \
        for (; b + 4 <= nb; b += 4) {                                                                        \
            gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(XB), (size_t)R * (size_t)(b + 4) * sizeof(XB)); \
            const __m128 dy = f16x4_strided(&y[b].d, sizeof *y);                                             \
            GEMV_UNROLL for (int r = 0; r < R; r++) {                                                        \
                const XB *xr = x[r];                                                                         \
                const __m256 d = _mm256_castps128_ps256(_mm_mul_ps(f16x4_strided(&xr[b].d, sizeof *xr), dy)); \
                if (HAS_M)                                                                                   \
                    accm[r] = _mm_fmadd_ps(f16x4_strided((const uint8_t *)&xr[b] + 2, sizeof *xr),           \
                                           f16x4_strided((const uint8_t *)&y[b] + 2, sizeof *y), accm[r]);   \
                const __m256i p0 = BLOCK_DOT(&xr[b], &y[b]);                                                 \
                const __m256i p1 = BLOCK_DOT(&xr[b + 1], &y[b + 1]);                                         \
                const __m256i p2 = BLOCK_DOT(&xr[b + 2], &y[b + 2]);                                         \
                const __m256i p3 = BLOCK_DOT(&xr[b + 3], &y[b + 3]);                                         \
                acc0[r] = _mm256_fmadd_ps(lane_bcast(d, 0), _mm256_cvtepi32_ps(p0), acc0[r]);                \
                acc1[r] = _mm256_fmadd_ps(lane_bcast(d, 1), _mm256_cvtepi32_ps(p1), acc1[r]);                \
                acc0[r] = _mm256_fmadd_ps(lane_bcast(d, 2), _mm256_cvtepi32_ps(p2), acc0[r]);                \
                acc1[r] = _mm256_fmadd_ps(lane_bcast(d, 3), _mm256_cvtepi32_ps(p3), acc1[r]);                \
            }                                                                                                \
        }                                                                                                    \
        for (int r = 0; r < R; r++) {                                                                        \
            const XB *xr = x[r];                                                                             \
            __m256 acc[2] = {acc0[r], acc1[r]};                                                              \
            if (b < nb) {                                                                                    \
                float ms[4];                                                                                 \
                _mm_storeu_ps(ms, accm[r]);                                                                  \
                for (int64_t bt = b; bt < nb; bt++) {                                                        \
                    const __m256i p = BLOCK_DOT(&xr[bt], &y[bt]);                                            \
                    acc[bt & 1] = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(&xr[bt].d) * f16_at(&y[bt].d)),      \
                                                  _mm256_cvtepi32_ps(p), acc[bt & 1]);                       \
                    if (HAS_M)                                                                               \
                        ms[bt & 3] = fma1(f16_at((const uint8_t *)&xr[bt] + 2),                              \
                                          f16_at((const uint8_t *)&y[bt] + 2), ms[bt & 3]);                  \
                }                                                                                            \
                accm[r] = _mm_loadu_ps(ms);                                                                  \
            }                                                                                                \
            const float sum = hsum256(_mm256_add_ps(acc[0], acc[1]));                                        \
            s[r] = HAS_M ? sum + hsum128(accm[r]) : sum;                                                     \
        }                                                                                                    \
    }                                                                                                        \
    static void NAME(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {       \
        NAME##_rows(1, n, s, vx, 0, vy, stream_pf(vx));                                                               \
    }

DEFINE_VEC_DOT_32(vec_dot_q8_0_q8_0, lm_block_q8_0, lm_block_q8_0, q8_0_block_dot, 0)
DEFINE_VEC_DOT_32(vec_dot_q5_0_q8_0, lm_block_q5_0, lm_block_q8_0, q5_0_block_dot, 0)
DEFINE_GEMV(vec_dot_q5_0_q8_0)
DEFINE_VEC_DOT_32(vec_dot_q4_1_q8_1, lm_block_q4_1, lm_block_q8_1, q4_1_block_dot, 1)
DEFINE_GEMV(vec_dot_q4_1_q8_1)
DEFINE_VEC_DOT_32(vec_dot_q5_1_q8_1, lm_block_q5_1, lm_block_q8_1, q5_1_block_dot, 1)
DEFINE_GEMV(vec_dot_q5_1_q8_1)

/* ---------------------------------------------------------------------------------------------- */
/* K-quants x Q8_K                                                                                */
/* Each super-block: int8 products via vpmaddubsw (weights unsigned), then vpmaddwd with the      */
/* sub-block's integer scale broadcast to int16 lanes (a vpshufb of the 16 scales), summed in     */
/* int32 lanes; the signed offsets / mins go through Q8_K's bsums. One cvt + FMA per super-block.  */

/* Keeps v in a general-purpose register: stops the compiler from turning the scalar scale unpacking
 * below into vector instructions, which would compete with the dot product for the vector ALUs while
 * the scalar ALUs idle. */
static inline uint64_t in_gpr(uint64_t v) {
    __asm__("" : "+r"(v));
    return v;
}

/* vpshufb pattern selecting int16 element `lo` of each 128-bit lane's source in the low lane and
 * element `hi` in the high lane */
static inline __m256i sel16(int lo, int hi) {
    return _mm256_setr_m128i(_mm_set1_epi16((short)((2 * lo + 1) << 8 | 2 * lo)),
                             _mm_set1_epi16((short)((2 * hi + 1) << 8 | 2 * hi)));
}

/* vpshufb pattern making int16 lanes out of byte j (zero-extended), in both 128-bit lanes */
static inline __m256i selb(int j) { return _mm256_set1_epi16((short)(0x8000 | j)); }

/* Q4_K / Q5_K packed scales (12 bytes) -> bytes 0..7: 6-bit scales of sub-blocks 0..7, bytes 8..15:
 * their mins (see lm_k4_get_scale_min in quant.c). Computed in 64-bit GPRs. */
static inline __m128i k4_scales_mins(const uint8_t *s) {
    uint64_t u;
    memcpy(&u, s, 8);
    u = in_gpr(u);
    const uint64_t a2 = in_gpr(ld_u32(s + 8));
    const uint64_t sc = (u & 0x3f3f3f3fu) | ((a2 & 0x0f0f0f0fu) | ((u >> 2) & 0x30303030u)) << 32;
    const uint64_t m = ((u >> 32) & 0x3f3f3f3fu) | (((a2 >> 4) & 0x0f0f0f0fu) | ((u >> 34) & 0x30303030u)) << 32;
    return _mm_set_epi64x((long long)in_gpr(m), (long long)in_gpr(sc));
}

/* Q3_K packed scales (12 bytes) -> 16 bytes: scale + 32 (0..63) of sub-blocks 0..15 (see
 * lm_q3k_unpack_scales in quant.c). Computed in GPRs. */
static inline __m128i q3k_scales_biased(const uint8_t *s) {
    const uint32_t a0 = ld_u32(s), a1 = ld_u32(s + 4), a2 = ld_u32(s + 8);
    const uint64_t b0 = (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4);
    const uint64_t b1 = (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4);
    const uint64_t b2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4);
    const uint64_t b3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4);
    return _mm_set_epi64x((long long)in_gpr(b3 << 32 | b2), (long long)in_gpr(b1 << 32 | b0));
}

/* Sum over sub-blocks j of mins[j] * (bsums[2j] + bsums[2j+1]): 8 int32 lanes. mins: bytes 8..15 of
 * sm (k4_scales_mins). */
static inline __m256i k4_min_dot(__m128i sm, const int16_t *bsums) {
    return _mm256_madd_epi16(loadu256(bsums), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)));
}

/* One Q4_K / Q5_K step of 64 elements: lo = elements 64c..64c+31 (sub-block 2c), hi = the next 32;
 * q values unsigned (0..31); scales from byte vector scb via the selectors for 2c, 2c+1. */
#define K4_STEP2(ISUM, LO, HI, YQ, SCB, SEL_LO, SEL_HI)                                                        \
    ISUM = _mm256_add_epi32(                                                                                   \
        ISUM, _mm256_add_epi32(                                                                                \
                  _mm256_madd_epi16(_mm256_maddubs_epi16(LO, loadu256(YQ)), _mm256_shuffle_epi8(SCB, SEL_LO)),  \
                  _mm256_madd_epi16(_mm256_maddubs_epi16(HI, loadu256((YQ) + 32)), _mm256_shuffle_epi8(SCB, SEL_HI))))

static inline __attribute__((always_inline)) void q4_K_rows(const int R, int64_t n, float *restrict s,
                                                             const char *restrict vx, size_t xs,
                                                             const void *restrict vy, const char *pf) {
    const lm_block_q4_K *xs_[GEMV_ROWS];
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i sel0 = selb(0), sel1 = selb(1), sel2 = selb(2), sel3 = selb(3), sel4 = selb(4), sel5 = selb(5),
                  sel6 = selb(6), sel7 = selb(7);
    __m256 acc[GEMV_ROWS], accm[GEMV_ROWS];
    GEMV_UNROLL for (int r = 0; r < R; r++) {
        xs_[r] = (const lm_block_q4_K *)(const void *)(vx + (size_t)r * xs);
        acc[r] = _mm256_setzero_ps();
        accm[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(lm_block_q4_K), (size_t)R * (size_t)(b + 1) * sizeof(lm_block_q4_K));
        GEMV_UNROLL for (int r = 0; r < R; r++) {
            const lm_block_q4_K *x = xs_[r];
            const float dd = y[b].d * f16_at(&x[b].d), dm = y[b].d * f16_at(&x[b].dmin);
            const __m128i sm = k4_scales_mins(x[b].scales);
            accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(k4_min_dot(sm, y[b].bsums)), accm[r]);
            const __m256i scb = _mm256_broadcastsi128_si256(sm);
            __m256i isum = _mm256_setzero_si256();
#define Q4K_STEP(c, SL, SH)                                                                                    \
    do {                                                                                                       \
        const __m256i v = loadu256(x[b].qs + 32 * (c));                                                        \
        K4_STEP2(isum, _mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), y[b].qs + 64 * (c), \
                 scb, SL, SH);                                                                                 \
    } while (0)
            Q4K_STEP(0, sel0, sel1);
            Q4K_STEP(1, sel2, sel3);
            Q4K_STEP(2, sel4, sel5);
            Q4K_STEP(3, sel6, sel7);
#undef Q4K_STEP
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc[r]);
        }
    }
    GEMV_UNROLL for (int r = 0; r < R; r++) s[r] = hsum256(acc[r]) - hsum256(accm[r]);
}
static void vec_dot_q4_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q4_K_rows(1, n, s, vx, 0, vy, stream_pf(vx));
}

static inline __attribute__((always_inline)) void q5_K_rows(const int R, int64_t n, float *restrict s,
                                                             const char *restrict vx, size_t xs,
                                                             const void *restrict vy, const char *pf) {
    const lm_block_q5_K *xs_[GEMV_ROWS];
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m256i m4 = _mm256_set1_epi8(15), bit4 = _mm256_set1_epi8(16);
    const __m256i sel0 = selb(0), sel1 = selb(1), sel2 = selb(2), sel3 = selb(3), sel4 = selb(4), sel5 = selb(5),
                  sel6 = selb(6), sel7 = selb(7);
    __m256 acc[GEMV_ROWS], accm[GEMV_ROWS];
    GEMV_UNROLL for (int r = 0; r < R; r++) {
        xs_[r] = (const lm_block_q5_K *)(const void *)(vx + (size_t)r * xs);
        acc[r] = _mm256_setzero_ps();
        accm[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(lm_block_q5_K), (size_t)R * (size_t)(b + 1) * sizeof(lm_block_q5_K));
        GEMV_UNROLL for (int r = 0; r < R; r++) {
            const lm_block_q5_K *x = xs_[r];
            const float dd = y[b].d * f16_at(&x[b].d), dm = y[b].d * f16_at(&x[b].dmin);
            const __m128i sm = k4_scales_mins(x[b].scales);
            accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(k4_min_dot(sm, y[b].bsums)), accm[r]);
            const __m256i scb = _mm256_broadcastsi128_si256(sm);
            /* bit j of byte l: 5th bit of element 32 j + l; step c uses bits 2c (-> bit 4 via << (4 - 2c)) and
             * 2c + 1; the shifts stay inside each byte for the bit that is kept */
            const __m256i qh = loadu256(x[b].qh);
            __m256i isum = _mm256_setzero_si256();
#define Q5K_STEP(c, HLO, HHI, SL, SH)                                                                          \
    do {                                                                                                       \
        const __m256i v = loadu256(x[b].qs + 32 * (c));                                                        \
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(HLO, bit4));             \
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_and_si256(HHI, bit4)); \
        K4_STEP2(isum, lo, hi, y[b].qs + 64 * (c), scb, SL, SH);                                               \
    } while (0)
            Q5K_STEP(0, _mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 3), sel0, sel1);
            Q5K_STEP(1, _mm256_slli_epi16(qh, 2), _mm256_slli_epi16(qh, 1), sel2, sel3);
            Q5K_STEP(2, qh, _mm256_srli_epi16(qh, 1), sel4, sel5);
            Q5K_STEP(3, _mm256_srli_epi16(qh, 2), _mm256_srli_epi16(qh, 3), sel6, sel7);
#undef Q5K_STEP
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc[r]);
        }
    }
    GEMV_UNROLL for (int r = 0; r < R; r++) s[r] = hsum256(acc[r]) - hsum256(accm[r]);
}
static void vec_dot_q5_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q5_K_rows(1, n, s, vx, 0, vy, stream_pf(vx));
}

/* [s_8h .. s_8h+7 | same] from 16 int16 scales */
static inline __m256i half_bcast(__m256i sc16, int h) {
    return h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
}

/* 32 elements (two sub-blocks of 16) of a 16-sub-block K-quant: unsigned q x y, scaled per 128-bit lane */
#define K16_STEP(ISUM, Q, YQ, SC, SEL) \
    ISUM = _mm256_add_epi32(ISUM, _mm256_madd_epi16(_mm256_maddubs_epi16(Q, loadu256(YQ)), _mm256_shuffle_epi8(SC, SEL)))

/* Q6_K: q = (low 4 | high 2 << 4) - 32; the -32 goes through bsums: sum_j sc_j (dot(u, y)_j - 32 bsum_j). */
static inline __attribute__((always_inline)) void q6_K_rows(const int R, int64_t n, float *restrict s,
                                                             const char *restrict vx, size_t xs,
                                                             const void *restrict vy, const char *pf) {
    const lm_block_q6_K *xs_[GEMV_ROWS];
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(0x30);
    const __m256i s01 = sel16(0, 1), s23 = sel16(2, 3), s45 = sel16(4, 5), s67 = sel16(6, 7);
    __m256 acc[GEMV_ROWS];
    GEMV_UNROLL for (int r = 0; r < R; r++) {
        xs_[r] = (const lm_block_q6_K *)(const void *)(vx + (size_t)r * xs);
        acc[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        gemv_prefetch(pf, (size_t)R * (size_t)b * sizeof(lm_block_q6_K), (size_t)R * (size_t)(b + 1) * sizeof(lm_block_q6_K));
        GEMV_UNROLL for (int r = 0; r < R; r++) {
            const lm_block_q6_K *x = xs_[r];
            const float d = y[b].d * f16_at(&x[b].d);
            const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(x[b].scales)); /* 16 int16 scales */
            const __m256i corr = _mm256_madd_epi16(loadu256(y[b].bsums), sc16);
            __m256i isum = _mm256_setzero_si256();
#define Q6K_HALF(h)                                                                                            \
    do {                                                                                                       \
        const __m256i sc = half_bcast(sc16, h);                                                                \
        const __m256i ql0 = loadu256(x[b].ql + 64 * (h)), ql1 = loadu256(x[b].ql + 64 * (h) + 32);              \
        const __m256i qh = loadu256(x[b].qh + 32 * (h));                                                       \
        const int8_t *yq = y[b].qs + 128 * (h);                                                                \
        K16_STEP(isum, _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)), yq, sc, s01); \
        K16_STEP(isum, _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)), yq + 32, sc, s23); \
        K16_STEP(isum, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2)), yq + 64, sc, s45); \
        K16_STEP(isum, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)), yq + 96, sc, s67); \
    } while (0)
            Q6K_HALF(0);
            Q6K_HALF(1);
#undef Q6K_HALF
            isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(corr, 5));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc[r]);
        }
    }
    GEMV_UNROLL for (int r = 0; r < R; r++) s[r] = hsum256(acc[r]);
}
static void vec_dot_q6_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    q6_K_rows(1, n, s, vx, 0, vy, stream_pf(vx));
}

static void vec_dot_q2_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q2_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m256i m2 = _mm256_set1_epi8(3);
    const __m256i s01 = sel16(0, 1), s23 = sel16(2, 3), s45 = sel16(4, 5), s67 = sel16(6, 7);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float dd = y[b].d * f16_at(&x[b].d), dm = y[b].d * f16_at(&x[b].dmin);
        const __m128i raw = loadu128(x[b].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(15)));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15)));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(_mm256_madd_epi16(loadu256(y[b].bsums), mn16)), accm);
        __m256i isum = _mm256_setzero_si256();
        /* elements 128h + 32j + (0..31): bits 2j, 2j+1 of qs[32h + 0..31] */
#define Q2K_HALF(h)                                                                                            \
    do {                                                                                                       \
        const __m256i sc = half_bcast(sc16, h);                                                                \
        const __m256i qv = loadu256(x[b].qs + 32 * (h));                                                       \
        const int8_t *yq = y[b].qs + 128 * (h);                                                                \
        K16_STEP(isum, _mm256_and_si256(qv, m2), yq, sc, s01);                                                 \
        K16_STEP(isum, _mm256_and_si256(_mm256_srli_epi16(qv, 2), m2), yq + 32, sc, s23);                      \
        K16_STEP(isum, _mm256_and_si256(_mm256_srli_epi16(qv, 4), m2), yq + 64, sc, s45);                      \
        K16_STEP(isum, _mm256_and_si256(_mm256_srli_epi16(qv, 6), m2), yq + 96, sc, s67);                      \
    } while (0)
        Q2K_HALF(0);
        Q2K_HALF(1);
#undef Q2K_HALF
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum256(acc) - hsum256(accm);
}

/* Q3_K: u = low 2 bits | hmask bit << 2 (0..7), q = u - 4; the -4 goes through bsums. */
static void vec_dot_q3_K_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const lm_block_q3_K *x = vx;
    const lm_block_q8_K *y = vy;
    const int64_t nb = n / LM_QK_K;
    const __m256i m2 = _mm256_set1_epi8(3), bit2 = _mm256_set1_epi8(4);
    const __m256i s01 = sel16(0, 1), s23 = sel16(2, 3), s45 = sel16(4, 5), s67 = sel16(6, 7);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float d = y[b].d * f16_at(&x[b].d);
        const __m256i sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(q3k_scales_biased(x[b].scales)), _mm256_set1_epi16(32));
        const __m256i corr = _mm256_madd_epi16(loadu256(y[b].bsums), sc16);
        const __m256i hm = loadu256(x[b].hmask); /* bit 4h+j of byte k*16+l */
        __m256i isum = _mm256_setzero_si256();
        /* step (h, j): low bits 2j of qs[32h..], hmask bit k = 4h + j moved to bit 2 (shifts stay in the byte
         * for the kept bit) */
#define Q3K_U(QV, HB) _mm256_or_si256(_mm256_and_si256(QV, m2), _mm256_and_si256(HB, bit2))
#define Q3K_HALF(h, H0, H1, H2, H3)                                                                            \
    do {                                                                                                       \
        const __m256i sc = half_bcast(sc16, h);                                                                \
        const __m256i qv = loadu256(x[b].qs + 32 * (h));                                                       \
        const int8_t *yq = y[b].qs + 128 * (h);                                                                \
        K16_STEP(isum, Q3K_U(qv, H0), yq, sc, s01);                                                            \
        K16_STEP(isum, Q3K_U(_mm256_srli_epi16(qv, 2), H1), yq + 32, sc, s23);                                 \
        K16_STEP(isum, Q3K_U(_mm256_srli_epi16(qv, 4), H2), yq + 64, sc, s45);                                 \
        K16_STEP(isum, Q3K_U(_mm256_srli_epi16(qv, 6), H3), yq + 96, sc, s67);                                 \
    } while (0)
        Q3K_HALF(0, _mm256_slli_epi16(hm, 2), _mm256_slli_epi16(hm, 1), hm, _mm256_srli_epi16(hm, 1));
        Q3K_HALF(1, _mm256_srli_epi16(hm, 2), _mm256_srli_epi16(hm, 3), _mm256_srli_epi16(hm, 4), _mm256_srli_epi16(hm, 5));
#undef Q3K_HALF
#undef Q3K_U
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(corr, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum256(acc);
}

/* ---------------------------------------------------------------------------------------------- */
/* from_float (activation formats), bit-identical to quant.c                                      */

/* round-half-even of v clamped to [lo, hi] as int32, exactly like quant.c's lm_round_clamp (NaN -> lo):
 * max(v, lo) returns lo for NaN v (second operand). */
static inline __m256i round_clamp8(__m256 v, __m256 lo, __m256 hi) {
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
}

/* 4 x 8 int32 (each in int8 range) -> 32 int8 in order */
static inline __m256i pack_i32x32_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* One Q8_0 / Q8_1 block from 32 floats: returns d (unrounded), writes qs, *qsum = sum(qs). */
static inline float quant_q8_block(const float *x, int8_t *qs, int *qsum) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
                 v3 = _mm256_loadu_ps(x + 24);
    const __m256 mx = _mm256_max_ps(_mm256_max_ps(abs_ps(v0), abs_ps(v1)), _mm256_max_ps(abs_ps(v2), abs_ps(v3)));
    const float amax = hmax256(mx);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i i0 = round_clamp8(_mm256_mul_ps(v0, vid), lo, hi), i1 = round_clamp8(_mm256_mul_ps(v1, vid), lo, hi);
    const __m256i i2 = round_clamp8(_mm256_mul_ps(v2, vid), lo, hi), i3 = round_clamp8(_mm256_mul_ps(v3, vid), lo, hi);
    _mm256_storeu_si256((__m256i *)qs, pack_i32x32_i8(i0, i1, i2, i3));
    if (qsum) *qsum = hsum256_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    return d;
}

static void from_float_q8_0(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / LM_QK8_0; b++, x += LM_QK8_0) {
        const float d = quant_q8_block(x, y[b].qs, NULL);
        y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    }
}

static void from_float_q8_1(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / LM_QK8_1; b++, x += LM_QK8_1) {
        int sum;
        const float d = quant_q8_block(x, y[b].qs, &sum);
        y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        y[b].s = _cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
    }
}

/* Q8_K as quant.c: the signed value of largest magnitude (first on ties; NaNs never win, since
 * max(|x|, acc) keeps acc for NaN), iscale = -127/max, q = round_clamp(iscale*x, -128, 127). */
static void from_float_q8_K(const float *restrict x, void *restrict vy, int64_t n) {
    lm_block_q8_K *y = vy;
    for (int64_t b = 0; b < n / LM_QK_K; b++, x += LM_QK_K) {
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < LM_QK_K; j += 8) mx = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + j)), mx);
        const float amax = hmax256(mx);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = 0.0f;
        const __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < LM_QK_K; j += 8) {
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), va, _CMP_EQ_OQ));
            if (m) {
                max = x[j + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vis = _mm256_set1_ps(iscale), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
        __m256i gsum[16];
        for (int g = 0; g < 8; g++) { /* 32 values: groups 2g, 2g+1 of 16 */
            const float *xg = x + 32 * g;
            const __m256i i0 = round_clamp8(_mm256_mul_ps(_mm256_loadu_ps(xg), vis), lo, hi);
            const __m256i i1 = round_clamp8(_mm256_mul_ps(_mm256_loadu_ps(xg + 8), vis), lo, hi);
            const __m256i i2 = round_clamp8(_mm256_mul_ps(_mm256_loadu_ps(xg + 16), vis), lo, hi);
            const __m256i i3 = round_clamp8(_mm256_mul_ps(_mm256_loadu_ps(xg + 24), vis), lo, hi);
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * g), pack_i32x32_i8(i0, i1, i2, i3));
            gsum[2 * g] = _mm256_add_epi32(i0, i1);
            gsum[2 * g + 1] = _mm256_add_epi32(i2, i3);
        }
        /* horizontal sums of the 16 group vectors, 4 at a time -> [G0, G1, G2, G3] */
        __m128i s4[4];
        for (int k = 0; k < 4; k++) {
            const __m256i h01 = _mm256_hadd_epi32(gsum[4 * k], gsum[4 * k + 1]);
            const __m256i h23 = _mm256_hadd_epi32(gsum[4 * k + 2], gsum[4 * k + 3]);
            const __m256i h = _mm256_hadd_epi32(h01, h23);
            s4[k] = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        }
        _mm_storeu_si128((__m128i *)y[b].bsums, _mm_packs_epi32(s4[0], s4[1]));
        _mm_storeu_si128((__m128i *)(y[b].bsums + 8), _mm_packs_epi32(s4[2], s4[3]));
        y[b].d = 1.0f / iscale;
    }
}

static void fp32_to_fp16(const float *restrict x, lm_fp16 *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

static void from_float_f16(const float *restrict x, void *restrict vy, int64_t n) { fp32_to_fp16(x, vy, n); }

/* fp32 -> bf16 as lm_fp32_to_bf16: NaN -> (bits >> 16) | 0x40, else round to nearest even on the top
 * 16 bits (integer arithmetic: vcvtneps2bf16 would flush denormals). */
static inline __m256i bf16_round8(__m256 v) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, isnan);
}

static void from_float_bf16(const float *restrict x, void *restrict vy, int64_t n) {
    lm_bf16 *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = bf16_round8(_mm256_loadu_ps(x + i)), b = bf16_round8(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8));
    }
    for (; i < n; i++) y[i] = lm_fp32_to_bf16(x[i]);
}

/* ---------------------------------------------------------------------------------------------- */
/* to_float, bit-identical to quant.c                                                             */

/* y[0..8) = d * q - m for the 8 int8 in the low 64 bits of q (mul, then sub: never fused; m = 0 gives
 * exactly d * q, signed zeros included). */
static inline void emit8(float *y, __m128i q, __m256 d, __m256 m) {
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))), m));
}

/* y[0..32) = d * q + m for the 32 int8 of q (Q4_1 / Q5_1: mul, then add) */
static inline void emit32_add(float *y, __m256i q, __m256 d, __m256 m) {
    for (int k = 0; k < 4; k++) {
        const __m128i part = k < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
        const __m128i q8 = (k & 1) ? _mm_unpackhi_epi64(part, part) : part;
        _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))), m));
    }
}

/* y[0..16) from the 16 int8 of q with one scale pair */
static inline void emit16(float *y, __m128i q, __m256 d, __m256 m) {
    emit8(y, q, d, m);
    emit8(y + 8, _mm_unpackhi_epi64(q, q), d, m);
}

/* y[0..32) from the 32 int8 of q: first 16 with (d0, m0), last 16 with (d1, m1) */
static inline void emit32(float *y, __m256i q, __m256 d0, __m256 m0, __m256 d1, __m256 m1) {
    emit16(y, _mm256_castsi256_si128(q), d0, m0);
    emit16(y + 16, _mm256_extracti128_si256(q, 1), d1, m1);
}

static void to_float_f16(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_fp16 *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, ld_f16x8(x + i));
    for (; i < n; i++) y[i] = _cvtsh_ss(x[i]);
}

static void fp16_to_fp32(const lm_fp16 *restrict x, float *restrict y, int64_t n) { to_float_f16(x, y, n); }

static void to_float_bf16(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_bf16 *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, ld_bf16x8(x + i));
    for (; i < n; i++) y[i] = lm_bf16_to_fp32(x[i]);
}

static void to_float_q8_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q8_0 *x = vx;
    const __m256 z = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / LM_QK8_0; b++, y += LM_QK8_0) {
        const __m256 d = _mm256_set1_ps(f16_at(&x[b].d));
        emit32(y, loadu256(x[b].qs), d, z, d, z);
    }
}

static void to_float_q4_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_0 *x = vx;
    const __m256 z = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / LM_QK4_0; b++, y += LM_QK4_0) {
        const __m256 d = _mm256_set1_ps(f16_at(&x[b].d));
        emit32(y, _mm256_sub_epi8(nib_unpack16(x[b].qs), _mm256_set1_epi8(8)), d, z, d, z);
    }
}

static void to_float_q4_1(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / LM_QK4_1; b++, y += LM_QK4_1) {
        const __m256 d = _mm256_set1_ps(f16_at(&x[b].d)), m = _mm256_set1_ps(f16_at(&x[b].m));
        emit32_add(y, nib_unpack16(x[b].qs), d, m);
    }
}

static void to_float_q5_0(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_0 *x = vx;
    const __m256 z = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / LM_QK5_0; b++, y += LM_QK5_0) {
        const __m256 d = _mm256_set1_ps(f16_at(&x[b].d));
        const __m256i hb = bits_to_bytes(ld_u32(x[b].qh));
        emit32(y, _mm256_or_si256(nib_unpack16(x[b].qs), _mm256_andnot_si256(hb, _mm256_set1_epi8((char)0xF0))), d, z, d, z);
    }
}

static void to_float_q5_1(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_1 *x = vx;
    for (int64_t b = 0; b < n / LM_QK5_1; b++, y += LM_QK5_1) {
        const __m256 d = _mm256_set1_ps(f16_at(&x[b].d)), m = _mm256_set1_ps(f16_at(&x[b].m));
        const __m256i hb = _mm256_and_si256(bits_to_bytes(ld_u32(x[b].qh)), _mm256_set1_epi8(16));
        emit32_add(y, _mm256_or_si256(nib_unpack16(x[b].qs), hb), d, m);
    }
}

static void to_float_q4_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        const float d = f16_at(&x[b].d), dmin = f16_at(&x[b].dmin);
        uint8_t sm[16];
        _mm_storeu_si128((__m128i *)sm, k4_scales_mins(x[b].scales));
        for (int c = 0; c < 4; c++) {
            const __m256i v = loadu256(x[b].qs + 32 * c);
            const __m256 d0 = _mm256_set1_ps(d * (float)sm[2 * c]), m0 = _mm256_set1_ps(dmin * (float)sm[8 + 2 * c]);
            const __m256 d1 = _mm256_set1_ps(d * (float)sm[2 * c + 1]), m1 = _mm256_set1_ps(dmin * (float)sm[9 + 2 * c]);
            emit32(y + 64 * c, _mm256_and_si256(v, m4), d0, m0, d0, m0);
            emit32(y + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), d1, m1, d1, m1);
        }
    }
}

static void to_float_q5_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q5_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(15), bit4 = _mm256_set1_epi8(16);
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        const float d = f16_at(&x[b].d), dmin = f16_at(&x[b].dmin);
        uint8_t sm[16];
        _mm_storeu_si128((__m128i *)sm, k4_scales_mins(x[b].scales));
        __m256i qh = loadu256(x[b].qh);
        for (int c = 0; c < 4; c++) {
            const __m256i v = loadu256(x[b].qs + 32 * c);
            const __m256 d0 = _mm256_set1_ps(d * (float)sm[2 * c]), m0 = _mm256_set1_ps(dmin * (float)sm[8 + 2 * c]);
            const __m256 d1 = _mm256_set1_ps(d * (float)sm[2 * c + 1]), m1 = _mm256_set1_ps(dmin * (float)sm[9 + 2 * c]);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
            qh = _mm256_srli_epi16(qh, 2);
            emit32(y + 64 * c, lo, d0, m0, d0, m0);
            emit32(y + 64 * c + 32, hi, d1, m1, d1, m1);
        }
    }
}

static void to_float_q6_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q6_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    const __m256 z = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        const float d = f16_at(&x[b].d);
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = loadu256(x[b].ql + 64 * h), ql1 = loadu256(x[b].ql + 64 * h + 32);
            const __m256i qh = loadu256(x[b].qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            for (int p = 0; p < 4; p++) {
                const int sb = 8 * h + 2 * p;
                const __m256 d0 = _mm256_set1_ps(d * (float)x[b].scales[sb]);
                const __m256 d1 = _mm256_set1_ps(d * (float)x[b].scales[sb + 1]);
                emit32(y + 128 * h + 32 * p, _mm256_sub_epi8(q[p], off), d0, z, d1, z);
            }
        }
    }
}

static void to_float_q2_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q2_K *x = vx;
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        const float d = f16_at(&x[b].d), dmin = f16_at(&x[b].dmin);
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(x[b].qs + 32 * h);
            for (int j = 0; j < 4; j++) {
                const int sb = 8 * h + 2 * j;
                const uint8_t s0 = x[b].scales[sb], s1 = x[b].scales[sb + 1];
                emit32(y + 128 * h + 32 * j, _mm256_and_si256(qv, m2), _mm256_set1_ps(d * (float)(s0 & 15)),
                       _mm256_set1_ps(dmin * (float)(s0 >> 4)), _mm256_set1_ps(d * (float)(s1 & 15)),
                       _mm256_set1_ps(dmin * (float)(s1 >> 4)));
                qv = _mm256_srli_epi16(qv, 2);
            }
        }
    }
}

static void to_float_q3_K(const void *restrict vx, float *restrict y, int64_t n) {
    const lm_block_q3_K *x = vx;
    const __m256i m2 = _mm256_set1_epi8(3), bit2 = _mm256_set1_epi8(4), four = _mm256_set1_epi8(4);
    const __m256 z = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / LM_QK_K; b++, y += LM_QK_K) {
        const float d = f16_at(&x[b].d);
        uint8_t sc[16];
        _mm_storeu_si128((__m128i *)sc, q3k_scales_biased(x[b].scales));
        __m256i hm = loadu256(x[b].hmask);
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(x[b].qs + 32 * h);
            for (int j = 0; j < 4; j++) {
                const int sb = 8 * h + 2 * j;
                const __m256i u = _mm256_or_si256(_mm256_and_si256(qv, m2), _mm256_and_si256(_mm256_slli_epi16(hm, 2), bit2));
                emit32(y + 128 * h + 32 * j, _mm256_sub_epi8(u, four), _mm256_set1_ps(d * (float)(sc[sb] - 32)), z,
                       _mm256_set1_ps(d * (float)(sc[sb + 1] - 32)), z);
                qv = _mm256_srli_epi16(qv, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* attention helpers                                                                              */

/* y[i] += a * x[i]: mul then add (not fused), bit-identical to the scalar helper. */
static void axpy_f16(int64_t n, float *restrict y, float a, const lm_fp16 *restrict x) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, ld_f16x8(x + i))));
    for (; i < n; i++) {
        const float t = a * _cvtsh_ss(x[i]);
        y[i] += t;
    }
}

void lm_cpu_init_avx2(lm_kernels *k) {
    k->vec_dot[LM_TYPE_F32] = vec_dot_f32;
    k->vec_dot[LM_TYPE_F16] = vec_dot_f16;
    k->vec_dot[LM_TYPE_BF16] = vec_dot_bf16;
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

    k->from_float[LM_TYPE_Q8_0] = from_float_q8_0;
    k->from_float[LM_TYPE_Q8_1] = from_float_q8_1;
    k->from_float[LM_TYPE_Q8_K] = from_float_q8_K;
    k->from_float[LM_TYPE_F16] = from_float_f16;
    k->from_float[LM_TYPE_BF16] = from_float_bf16;

    k->to_float[LM_TYPE_F16] = to_float_f16;
    k->to_float[LM_TYPE_BF16] = to_float_bf16;
    k->to_float[LM_TYPE_Q8_0] = to_float_q8_0;
    k->to_float[LM_TYPE_Q4_0] = to_float_q4_0;
    k->to_float[LM_TYPE_Q4_1] = to_float_q4_1;
    k->to_float[LM_TYPE_Q5_0] = to_float_q5_0;
    k->to_float[LM_TYPE_Q5_1] = to_float_q5_1;
    k->to_float[LM_TYPE_Q2_K] = to_float_q2_K;
    k->to_float[LM_TYPE_Q3_K] = to_float_q3_K;
    k->to_float[LM_TYPE_Q4_K] = to_float_q4_K;
    k->to_float[LM_TYPE_Q5_K] = to_float_q5_K;
    k->to_float[LM_TYPE_Q6_K] = to_float_q6_K;

    k->dot_f16 = dot_f16;
    k->axpy_f16 = axpy_f16;
    k->fp32_to_fp16 = fp32_to_fp16;
    k->fp16_to_fp32 = fp16_to_fp32;
}
#endif
