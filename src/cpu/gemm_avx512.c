/*
 * gemm_avx512: batched matrix products (prompt processing) with AVX-512 + VNNI. See cpu.h for the
 * lm_gemm_fn contract. Compiled with its own -m flags (Makefile); entered only after CPU detection.
 *
 * Integer types (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)
 * -----------------------------------------------------------------
 * A vec_dot keeps one weight row and one token per accumulator, so every block of 32 products needs
 * its own float scaling step. Here the 512-bit lanes are 16 different weight ROWS instead: for a
 * group of 4 consecutive k, one register holds those 4 weight bytes of 16 rows, and one vpdpbusd
 * against the same 4 activation bytes of one token (a 32-bit broadcast straight from the activation
 * row) adds 64 products into 16 per-row sums. A 32-element block then takes 8 vpdpbusd per (16 rows,
 * token) and one float scaling step (cvt, mul, fma) for 512 products; K-quants apply their integer
 * sub-block scales as floats per sub-block and the activation scale once per super-block.
 *
 * That needs the weights "transposed" to [k/4][16 rows][4 bytes]. The GGUF layout is never changed:
 * each call unpacks a small panel (32 rows x KC elements) into stack scratch, once per chunk of up to
 * TC tokens, straight from the rows into a register transpose, and every token of the chunk then
 * reuses it. Unpacking also turns every weight into an unsigned byte (vpdpbusd multiplies unsigned
 * x signed):
 *   Q8_0: w + 128;  Q4_0: nibble (= w + 8);  Q5_0: 5-bit value (= w + 16);  Q4_1/Q5_1: the raw value;
 *   Q4_K/Q5_K/Q2_K: the raw value (mins separately, vpdpwssd on the activation bsums);
 *   Q6_K: q + 32;  Q3_K: q + 4.
 * The offset comes back as a correction (-offset x the sum of the activation block) that seeds the
 * integer accumulator; it is computed once per (token, block) per call ("activation side data").
 *
 * Register blocking: 2 vectors (32 rows) x 6 tokens (4 for K-quants) of integer and float
 * accumulators; one compiled kernel per scaling scheme (edge tiles compute the full tile on
 * repeated valid rows / tokens and store only their part, which keeps code size and compile time
 * small). Loop nest per call: K chunks (KC) > token chunks (TC: side data) > 32-row panels (repack)
 * > token tiles. Partial sums of later K chunks are added to Y, so the summation order differs from
 * vec_dot's (results agree within float rounding: tests/test_gemm.c). Every row and token is
 * computed the same way whatever tile it falls in: results do not depend on how a caller splits the
 * rows or tokens. Per-call costs (side data over all T tokens, panel repacks) are amortized over the
 * call's rows: callers should pass row ranges of a few hundred rows where they can.
 *
 * Float types (F32, F16, BF16)
 * ----------------------------
 * No block scales, so the lanes run along k: 4 rows x 6 tokens of accumulators over the whole row
 * (F16 via F16C conversion + FMA, BF16 via vdpbf16ps), reduced horizontally at the end.
 *
 * Scratch: at most about 60 KB of stack per call; threads that call a gemm need a normal-sized stack
 * (glibc's default 8 MB is plenty; >= 256 KB).
 */
#include "common.h"
#include "cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#define LM_AI static inline __attribute__((always_inline))

#ifndef LM_GEMM_KC
#define LM_GEMM_KC 512
#endif
#ifndef LM_GEMM_TC
#define LM_GEMM_TC 256
#endif
enum {
    RV = 16,             /* rows per vector (int32 / float lanes) */
    MR = 2,              /* row vectors per panel */
    PR = RV * MR,        /* rows per panel */
    KC = LM_GEMM_KC,     /* elements per K chunk (multiple of 256) */
    TC = LM_GEMM_TC,     /* tokens per chunk */
    NT1 = 6,             /* tokens per tile, 32-element block types */
    NTK = 4,             /* tokens per tile, K-quants */
};

/* ---------------------------------------------------------------------------------------------- */
/* small helpers                                                                                  */

static inline uint16_t ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
/* 16 lanes of a 32-bit broadcast from (possibly unaligned) memory */
static inline __m512i bcst32(const void *p) { return _mm512_set1_epi32(ld32(p)); }
static inline __m256i ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
/* [a (32 bytes) | b (32 bytes)] */
static inline __m512i ld2x256(const void *a, const void *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(ld256(a)), ld256(b), 1);
}
static inline __mmask16 lane_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* Prefetches (for writing) the Y lines of rows [0, 16*mr) of nt tokens: output tiles are scattered
 * over Y (one token row per ldy floats), and without this every store misses once Y outgrows L2. */
static inline void prefetch_y(const float *y, int64_t ldy, int nt, int mr) {
    for (int t = 0; t < nt; t++) {
        const char *p = (const char *)(y + (size_t)t * (size_t)ldy);
        __builtin_prefetch(p, 1, 3);
        __builtin_prefetch(p + 64, 1, 3);
        if (mr > 1) {
            __builtin_prefetch(p + 127, 1, 3);
        }
    }
}

/* The n (<= 16) fp16 values at p, p + stride, ... as floats (lanes past n: 0). Built with word
 * inserts: a gather is slow on AMD cores, and narrow stores read back as one vector stall. */
static inline __m512 f16x16(const uint8_t *p, size_t stride, int n) {
    if (n < 16) {
        uint16_t h[16] = {0};
        for (int i = 0; i < n; i++) h[i] = ld16(p + (size_t)i * stride);
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
    }
    __m128i a = _mm_cvtsi32_si128(ld16(p)), b = _mm_cvtsi32_si128(ld16(p + 8 * stride));
#define INS(I)                                                        \
    a = _mm_insert_epi16(a, ld16(p + (size_t)(I) * stride), I);       \
    b = _mm_insert_epi16(b, ld16(p + (size_t)(I + 8) * stride), I);
    INS(1) INS(2) INS(3) INS(4) INS(5) INS(6) INS(7)
#undef INS
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}

/* Software prefetch of the weights the next panel repack reads (32 rows x one K chunk of bytes):
 * spread over the current panel's token tiles, a few lines per tile, so that the repack does not
 * wait on 32 separate row streams from memory. */
typedef struct {
    const uint8_t *base; /* first byte of the chunk in the first row */
    size_t wrs, bytes;   /* row stride, bytes per row in the chunk */
    int rows, row;
    size_t off;
} wprefetch;

static inline void wpf_init(wprefetch *pf, const void *W, size_t wrs, int64_t row0, int64_t rows, size_t off,
                            size_t bytes) {
    pf->base = (const uint8_t *)W + (size_t)row0 * wrs + off;
    pf->wrs = wrs;
    pf->bytes = bytes;
    pf->rows = rows > 0 ? (int)rows : 0;
    pf->row = 0;
    pf->off = 0;
}

static inline void wpf_step(wprefetch *pf, int n) {
    for (; n > 0 && pf->row < pf->rows; n--) {
        const uint8_t *r = pf->base + (size_t)pf->row * pf->wrs;
        __builtin_prefetch(r + pf->off, 0, 3);
        if (pf->off + 64 < pf->bytes) {
            pf->off += 64;
        } else {
            __builtin_prefetch(r + pf->bytes - 1, 0, 3);
            pf->off = 0;
            pf->row++;
        }
    }
}

/* The region the repack after panel p (rows [p, p+32) of [r0, r1), K chunk kb, token chunk t0 of T)
 * reads: the next panel, or the first panel of the next K chunk (the next token chunk reuses rows
 * still in cache). */
static inline void wpf_next(wprefetch *pf, const void *W, size_t wrs, int64_t p, int64_t r0, int64_t r1,
                            int64_t t0, int64_t T, size_t chunk_off, size_t chunk_bytes, size_t next_chunk_bytes) {
    if (p + PR < r1) wpf_init(pf, W, wrs, p + PR, LM_MIN((int64_t)PR, r1 - p - PR), chunk_off, chunk_bytes);
    else if (t0 + TC >= T && next_chunk_bytes > 0)
        wpf_init(pf, W, wrs, r0, LM_MIN((int64_t)PR, r1 - r0), chunk_off + chunk_bytes, next_chunk_bytes);
    else wpf_init(pf, W, wrs, r0, 0, 0, 0);
}

/* Sum of the 32 signed bytes at p. */
static inline int32_t sum32_i8(const void *p) {
    __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), ld256(p));
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4E));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xB1));
    return _mm_cvtsi128_si32(q);
}

/* ---------------------------------------------------------------------------------------------- */
/* weight panels                                                                                  */

/* The 16 rows of one row vector: row i at w + idx[i]*wrs, where rows at or past nrows repeat row 0
 * (valid memory; their lanes are computed but never stored). */
typedef struct {
    const uint8_t *p[RV];
} rvec;

static void rvec_init(rvec *rv, const uint8_t *w, size_t wrs, int nrows) {
    for (int i = 0; i < RV; i++) rv->p[i] = w + (i < nrows ? (size_t)i * wrs : 0);
}

/* The fp16 value at byte offset off of each of the 16 rows, as floats (word inserts: a gather is
 * slow on AMD cores). */
static inline __m512 rows_f16(const rvec *rv, size_t off) {
    __m128i a = _mm_cvtsi32_si128(ld16(rv->p[0] + off)), b = _mm_cvtsi32_si128(ld16(rv->p[8] + off));
#define INS(I)                                         \
    a = _mm_insert_epi16(a, ld16(rv->p[I] + off), I);  \
    b = _mm_insert_epi16(b, ld16(rv->p[I + 8] + off), I);
    INS(1) INS(2) INS(3) INS(4) INS(5) INS(6) INS(7)
#undef INS
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}

/* The 16 bytes at byte offset off of the 16 rows, transposed: d[r] lane i = bytes 4r..4r+3 of row i
 * (for decoding the K-quant scale headers of 16 rows at once). */
static inline void rows_16x16(const rvec *rv, size_t off, __m512i d[4]) {
    __m512i z[4];
    for (int a = 0; a < 4; a++) {
        __m512i v = _mm512_castsi128_si512(ld128(rv->p[4 * a] + off));
        v = _mm512_inserti32x4(v, ld128(rv->p[4 * a + 1] + off), 1);
        v = _mm512_inserti32x4(v, ld128(rv->p[4 * a + 2] + off), 2);
        z[a] = _mm512_inserti32x4(v, ld128(rv->p[4 * a + 3] + off), 3);
    }
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    /* lane l of the unpacked words holds rows l, 4+l, 8+l, 12+l: back to row order */
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    d[0] = _mm512_permutexvar_epi32(idx, _mm512_unpacklo_epi64(t0, t2));
    d[1] = _mm512_permutexvar_epi32(idx, _mm512_unpackhi_epi64(t0, t2));
    d[2] = _mm512_permutexvar_epi32(idx, _mm512_unpacklo_epi64(t1, t3));
    d[3] = _mm512_permutexvar_epi32(idx, _mm512_unpackhi_epi64(t1, t3));
}
/* byte q (0..3) of each 32-bit lane, zero-extended */
static inline __m512i byte_of(__m512i d, int q) { return _mm512_and_si512(_mm512_srli_epi32(d, 8 * q), _mm512_set1_epi32(0xFF)); }
/* the fp16 in bits 16*h..16*h+15 of each lane, as floats */
static inline __m512 half_of(__m512i d, int h) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(d, 16 * h))); }

/*
 * 16 rows x 32 bytes, given as 8 registers z[i] holding rows i and i+8, transposed into 8 registers
 * out s = bytes 4s..4s+3 of rows 0..15 in lane order, stored at out + s*step.
 * Lane order of z[i] (128-bit lanes, dwords of the 32 bytes):
 *   order A: [i: 0-3 | i: 4-7 | i+8: 0-3 | i+8: 4-7]   order B: [i: 0-3 | i+8: 0-3 | i: 4-7 | i+8: 4-7]
 */
LM_AI void tr_store(const __m512i *z, const int order_b, uint8_t *out, size_t step) {
    __m512i u[8];
    for (int i = 0; i < 8; i += 4) {
        __m512i t0 = _mm512_unpacklo_epi32(z[i + 0], z[i + 1]);
        __m512i t1 = _mm512_unpackhi_epi32(z[i + 0], z[i + 1]);
        __m512i t2 = _mm512_unpacklo_epi32(z[i + 2], z[i + 3]);
        __m512i t3 = _mm512_unpackhi_epi32(z[i + 2], z[i + 3]);
        u[i + 0] = _mm512_unpacklo_epi64(t0, t2);
        u[i + 1] = _mm512_unpackhi_epi64(t0, t2);
        u[i + 2] = _mm512_unpacklo_epi64(t1, t3);
        u[i + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    /* u[s], s < 4: dword s (or s+4) of rows 0-3 / 8-11 per lane; u[s+4]: rows 4-7 / 12-15 */
    const __m512i ilo = order_b ? _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11) : _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i ihi = order_b ? _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15) : _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int s = 0; s < 4; s++) {
        _mm512_store_si512(out + (size_t)s * step, _mm512_permutex2var_epi64(u[s], ilo, u[s + 4]));
        _mm512_store_si512(out + (size_t)(s + 4) * step, _mm512_permutex2var_epi64(u[s], ihi, u[s + 4]));
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* 32-element block types (Q8_0, Q4_0, Q5_0 with Q8_0 activations; Q4_1, Q5_1 with Q8_1)          */

static inline int b32_has_min(enum lm_type t) { return t == LM_TYPE_Q4_1 || t == LM_TYPE_Q5_1; }

/* 4-bit nibbles of 16 bytes at a and c, order B: [a lo | c lo | a hi | c hi] */
static inline __m512i nibbles_b(const uint8_t *a, const uint8_t *c) {
    __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(a)), ld128(c), 1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(y, m4)),
                              _mm256_and_si256(_mm256_srli_epi16(y, 4), m4), 1);
}
/* 5th bits (qh words at a and c) for nibbles_b's order, as 16 where set */
static inline __m512i fifth_b(const uint8_t *qa, const uint8_t *qc) {
    uint64_t a = (uint32_t)ld32(qa), c = (uint32_t)ld32(qc);
    __mmask64 m = (a & 0xFFFF) | (c & 0xFFFF) << 16 | (a >> 16) << 32 | (c >> 16) << 48;
    return _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(16));
}

/* Unsigned weight bytes of block b of rows a and c (see the file comment), in the order b32_order. */
LM_AI __m512i b32_pair(const enum lm_type type, const uint8_t *a, const uint8_t *c) {
    switch (type) {
    case LM_TYPE_Q8_0:
        return _mm512_xor_si512(ld2x256(a + 2, c + 2), _mm512_set1_epi8((char)0x80));
    case LM_TYPE_Q4_0:
        return nibbles_b(a + 2, c + 2);
    case LM_TYPE_Q4_1:
        return nibbles_b(a + 4, c + 4);
    case LM_TYPE_Q5_0:
        return _mm512_or_si512(nibbles_b(a + 6, c + 6), fifth_b(a + 2, c + 2));
    default: /* Q5_1 */
        return _mm512_or_si512(nibbles_b(a + 8, c + 8), fifth_b(a + 4, c + 4));
    }
}

/*
 * Repacks blocks b0..b0+nb of one row vector into the panel: pv[b][8 steps][MR][64] (this vector's
 * 64-byte slot of each step), weight scales to wd[b*PR + lane], mins (Q4_1/Q5_1) to wm[b*PR + lane].
 */
LM_AI void repack_b32(const enum lm_type type, const rvec *rv, int64_t b0, int nb, uint8_t *pv, float *wd,
                      float *wm) {
    const size_t bs = lm_type_traits_get(type)->type_size;
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)(b0 + b) * bs;
        __m512i z[8];
        for (int i = 0; i < 8; i++) z[i] = b32_pair(type, rv->p[i] + off, rv->p[i + 8] + off);
        tr_store(z, type != LM_TYPE_Q8_0, pv + (size_t)b * 8 * MR * 64, MR * 64);
        _mm512_store_ps(wd + b * PR, rows_f16(rv, off)); /* every b32 type starts with d (and m) */
        if (b32_has_min(type)) _mm512_store_ps(wm + b * PR, rows_f16(rv, off + 2));
    }
}

/*
 * Activation side data for tokens [0, tn) (row t at x + t*xrs) and blocks b0..b0+nb, per (token,
 * block) at [t*(KC/32) + b]: the activation scale xd, and xc = the integer seed -offset * sum(q)
 * (Q8_0 activations; offset as in the file comment) or the float block sum s as bits (Q8_1).
 * Sixteen blocks at a time: sums by vpdpbusd against ones and a transpose-add tree; the fp16 scales
 * are collected with scalar loads (a gather is much slower on AMD cores).
 */
static void info_b32(enum lm_type type, const uint8_t *x, size_t xrs, int tn, int64_t b0, int nb, float *xd,
                     int32_t *xc) {
    const int shift = type == LM_TYPE_Q8_0 ? 7 : type == LM_TYPE_Q4_0 ? 3 : 4; /* log2 of the offset */
    const int q81 = b32_has_min(type);
    const size_t bsz = q81 ? sizeof(lm_block_q8_1) : sizeof(lm_block_q8_0);
    const size_t qoff = q81 ? offsetof(lm_block_q8_1, qs) : offsetof(lm_block_q8_0, qs);
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i ilo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), ihi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int t = 0; t < tn; t++) {
        const uint8_t *row = x + (size_t)t * xrs + (size_t)b0 * bsz;
        float *d = xd + (size_t)t * (KC / 32);
        int32_t *c = xc + (size_t)t * (KC / 32);
        for (int b = 0; b < nb; b += 16) {
            const uint8_t *blk = row + (size_t)b * bsz;
            const int n = LM_MIN(16, nb - b);
            const __mmask16 m = lane_mask(n);
            _mm512_mask_storeu_ps(d + b, m, f16x16(blk, bsz, n));
            if (q81) {
                _mm512_mask_storeu_ps((float *)(c + b), m, f16x16(blk + offsetof(lm_block_q8_1, s), bsz, n));
                continue;
            }
            if (n < 16) { /* partial group: scalar */
                for (int i = 0; i < n; i++) c[b + i] = -sum32_i8(blk + (size_t)i * bsz + qoff) * (1 << shift);
                continue;
            }
            __m512i z[8], a[4], u[2];
            for (int i = 0; i < 8; i++)
                z[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                           ld2x256(blk + (size_t)i * bsz + qoff, blk + (size_t)(i + 8) * bsz + qoff));
            /* z[i]: 8 partial sums of block i | of block i+8 */
            for (int i = 0; i < 4; i++)
                a[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]),
                                        _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]));
            for (int i = 0; i < 2; i++)
                u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]),
                                        _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]));
            /* u[0] lanes: blocks 0-3 (two halves of the partial sums) | same | blocks 8-11 | same;
             * u[1]: blocks 4-7 / 12-15 */
            __m512i sum = _mm512_add_epi32(_mm512_permutex2var_epi64(u[0], ilo, u[1]),
                                           _mm512_permutex2var_epi64(u[0], ihi, u[1]));
            _mm512_storeu_si512(c + b, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, shift)));
        }
    }
}

/*
 * Micro-kernel: 2 row vectors x NT1 tokens over nb blocks of 32 (one instantiation per has_min, to
 * keep code size and compile time small; edge tiles compute the full tile on duplicated valid
 * rows / tokens and store only their part).
 *   pw   panel [nb][8][MR][64] unsigned weight bytes
 *   wd   [nb][MR][16] weight scales; wm the same for mins (has_min only)
 *   xq   first quant byte of block 0 of token 0; tokens xrs apart, blocks bsz apart; tokens at or
 *        past nt repeat token 0
 *   xd, xc [t][KC/32] activation side data (info_b32)
 *   y    Y + t0*ldy + row of lane 0: for t < nt the 32 results are stored (acc: added) under the
 *        lane masks mask0 / mask1.
 */
LM_AI void mk_b32(const int has_min, int nt, int nb, const uint8_t *restrict pw, const float *restrict wd,
                  const float *restrict wm, const uint8_t *restrict xq, size_t xrs, size_t bsz,
                  const float *restrict xd, const int32_t *restrict xc, float *restrict y, int64_t ldy,
                  __mmask16 mask0, __mmask16 mask1, int acc) {
    __m512 af[MR][NT1];
    const uint8_t *xp[NT1];
    int io[NT1]; /* offset of each token's side data */
#pragma GCC unroll 8
    for (int t = 0; t < NT1; t++) {
        xp[t] = xq + (size_t)(t < nt ? t : 0) * xrs;
        io[t] = (t < nt ? t : 0) * (KC / 32);
#pragma GCC unroll 2
        for (int v = 0; v < MR; v++) af[v][t] = _mm512_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        __m512i ai[MR][NT1];
#pragma GCC unroll 8
        for (int t = 0; t < NT1; t++) {
            __m512i seed = has_min ? _mm512_setzero_si512() : _mm512_set1_epi32(xc[io[t] + b]);
            ai[0][t] = seed;
            ai[1][t] = seed;
        }
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i w0 = _mm512_load_si512(pw + (size_t)(s * MR) * 64);
            __m512i w1 = _mm512_load_si512(pw + (size_t)(s * MR + 1) * 64);
#pragma GCC unroll 8
            for (int t = 0; t < NT1; t++) {
                __m512i xv = bcst32(xp[t] + 4 * s);
                ai[0][t] = _mm512_dpbusd_epi32(ai[0][t], w0, xv);
                ai[1][t] = _mm512_dpbusd_epi32(ai[1][t], w1, xv);
            }
        }
        __m512 d0 = _mm512_load_ps(wd), d1 = _mm512_load_ps(wd + RV);
#pragma GCC unroll 8
        for (int t = 0; t < NT1; t++) {
            __m512 dx = _mm512_set1_ps(xd[io[t] + b]);
            af[0][t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ai[0][t]), dx), d0, af[0][t]);
            af[1][t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ai[1][t]), dx), d1, af[1][t]);
            if (has_min) {
                __m512 sx = _mm512_set1_ps(((const float *)xc)[io[t] + b]);
                af[0][t] = _mm512_fmadd_ps(_mm512_load_ps(wm), sx, af[0][t]);
                af[1][t] = _mm512_fmadd_ps(_mm512_load_ps(wm + RV), sx, af[1][t]);
            }
        }
        pw += 8 * MR * 64;
        wd += PR;
        if (has_min) wm += PR;
#pragma GCC unroll 8
        for (int t = 0; t < NT1; t++) xp[t] += bsz;
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT1; t++) {
        if (t >= nt) break;
        float *yt = y + (size_t)t * (size_t)ldy;
        __m512 r0 = af[0][t], r1 = af[1][t];
        if (acc) {
            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(mask0, yt));
            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(mask1, yt + RV));
        }
        _mm512_mask_storeu_ps(yt, mask0, r0);
        _mm512_mask_storeu_ps(yt + RV, mask1, r1);
    }
}

static void mk_b32_nomin(int nt, int nb, const uint8_t *pw, const float *wd, const float *wm, const uint8_t *xq,
                         size_t xrs, size_t bsz, const float *xd, const int32_t *xc, float *y, int64_t ldy,
                         __mmask16 m0, __mmask16 m1, int acc) {
    mk_b32(0, nt, nb, pw, wd, wm, xq, xrs, bsz, xd, xc, y, ldy, m0, m1, acc);
}
static void mk_b32_min(int nt, int nb, const uint8_t *pw, const float *wd, const float *wm, const uint8_t *xq,
                       size_t xrs, size_t bsz, const float *xd, const int32_t *xc, float *y, int64_t ldy,
                       __mmask16 m0, __mmask16 m1, int acc) {
    mk_b32(1, nt, nb, pw, wd, wm, xq, xrs, bsz, xd, xc, y, ldy, m0, m1, acc);
}

/*
 * Driver for one 32-element block type. Loop nest: K chunks of KC > token chunks of TC (activation
 * side data) > panels of 32 rows (repacked once per token chunk) > tiles of NT1 tokens.
 */
LM_AI void gemm_b32(const enum lm_type type, int64_t K, const void *restrict W, size_t wrs, const void *restrict X,
                    size_t xrs, int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {
    const int has_min = b32_has_min(type);
    const size_t wbs = lm_type_traits_get(type)->type_size;
    const size_t bsz = has_min ? sizeof(lm_block_q8_1) : sizeof(lm_block_q8_0);
    const size_t qoff = has_min ? offsetof(lm_block_q8_1, qs) : offsetof(lm_block_q8_0, qs);
    _Alignas(64) uint8_t panel[(KC / 32) * 8 * MR * 64]; /* [KC/32 blocks][8 steps][MR][64] */
    _Alignas(64) float wd[(KC / 32) * PR];              /* [KC/32][MR][16] */
    _Alignas(64) float wm[(KC / 32) * PR];
    _Alignas(64) float xd[TC * (KC / 32)];              /* [TC][KC/32] activation scales */
    _Alignas(64) int32_t xc[TC * (KC / 32)];            /* [TC][KC/32] seeds or sums */
    const int64_t nbk = K / 32;
    for (int64_t kb = 0; kb < nbk; kb += KC / 32) {
        const int nb = (int)LM_MIN((int64_t)(KC / 32), nbk - kb);
        for (int64_t t0 = 0; t0 < T; t0 += TC) {
            const int tn = (int)LM_MIN((int64_t)TC, T - t0);
            const uint8_t *xr = (const uint8_t *)X + (size_t)t0 * xrs;
            info_b32(type, xr, xrs, tn, kb, nb, xd, xc);
            for (int64_t p = r0; p < r1; p += PR) {
                /* a vector with no rows in range (the second one of the last panel) repeats the
                 * first vector's rows: computed, never stored */
                for (int v = 0; v < MR; v++) {
                    const int64_t pv = r1 - p > RV * v ? p + RV * v : p;
                    rvec rv;
                    rvec_init(&rv, (const uint8_t *)W + (size_t)pv * wrs, wrs, (int)LM_MIN((int64_t)RV, r1 - pv));
                    repack_b32(type, &rv, kb, nb, panel + v * 64, wd + RV * v, wm + RV * v);
                }
                const __mmask16 m0 = lane_mask(r1 - p), m1 = lane_mask(r1 - p - RV);
                const uint8_t *xq = xr + (size_t)kb * bsz + qoff;
                wprefetch pf;
                wpf_next(&pf, W, wrs, p, r0, r1, t0, T, (size_t)kb * wbs, (size_t)nb * wbs,
                         (size_t)LM_MIN((int64_t)(KC / 32), nbk - kb - nb) * wbs);
                for (int t = 0; t < tn; t += NT1) {
                    const int nt = LM_MIN(NT1, tn - t);
                    float *y = Y + (size_t)(t0 + t) * (size_t)ldy + p;
                    if (t + NT1 < tn) prefetch_y(y + NT1 * ldy, ldy, LM_MIN(NT1, tn - t - NT1), 2);
                    wpf_step(&pf, 6);
                    (has_min ? mk_b32_min : mk_b32_nomin)(nt, nb, panel, wd, wm, xq + (size_t)t * xrs, xrs, bsz,
                                                          xd + t * (KC / 32), xc + t * (KC / 32), y, ldy, m0, m1,
                                                          kb > 0);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* K-quants (super-blocks of 256, Q8_K activations)                                                 */

/* Sub-block layout: Q4_K/Q5_K 8 subs of 32 with 6-bit scales and mins; Q6_K 16 subs of 16 with int8
 * scales, offset 32; Q3_K 16 subs of 16, 6-bit signed scales, offset 4; Q2_K 16 subs of 16 with 4-bit
 * scales and mins. */
static inline int kq_nsub(enum lm_type t) { return t == LM_TYPE_Q4_K || t == LM_TYPE_Q5_K ? 8 : 16; }
static inline int kq_has_min(enum lm_type t) { return t == LM_TYPE_Q4_K || t == LM_TYPE_Q5_K || t == LM_TYPE_Q2_K; }
static inline int kq_offset(enum lm_type t) { return t == LM_TYPE_Q6_K ? 32 : t == LM_TYPE_Q3_K ? 4 : 0; }

/* per super-block and row vector: float scale of each sub-block (d * sc), mins as int16 pairs
 * (m[2p] | m[2p+1] << 16) and -dmin; lanes = rows */
typedef struct {
    float dsc[16][MR][RV];
    int32_t mp[8][MR][RV];
    float ndm[MR][RV];
} kq_scales;

/* per (token, super-block): activation scale; corr[j] = -offset * bsums[j] (Q6_K, Q3_K) or the
 * activation sums matching kq_scales.mp as int16 pairs (Q4_K/Q5_K: sums of 32; Q2_K: of 16) */
typedef struct {
    float d;
    int32_t v[16];
} kq_info;

/* Unsigned weight bytes of elements 32g..32g+31 of the super-blocks at a and c, order A. */
LM_AI __m512i kq_pair(const enum lm_type type, const uint8_t *a, const uint8_t *c, const int g) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    const int h = g / 4, p = g % 4;
    switch (type) {
    case LM_TYPE_Q4_K: {
        __m512i q = ld2x256(a + 16 + 32 * (g / 2), c + 16 + 32 * (g / 2));
        return _mm512_and_si512(_mm512_srli_epi16(q, 4 * (g % 2)), m4);
    }
    case LM_TYPE_Q5_K: {
        __m512i q = ld2x256(a + 48 + 32 * (g / 2), c + 48 + 32 * (g / 2));
        q = _mm512_and_si512(_mm512_srli_epi16(q, 4 * (g % 2)), m4);
        __mmask64 hb = _mm512_test_epi8_mask(ld2x256(a + 16, c + 16), _mm512_set1_epi8((char)(1 << g)));
        return _mm512_mask_add_epi8(q, hb, q, _mm512_set1_epi8(16));
    }
    case LM_TYPE_Q6_K: {
        __m512i lo = ld2x256(a + 64 * h + 32 * (p % 2), c + 64 * h + 32 * (p % 2));
        lo = _mm512_and_si512(_mm512_srli_epi16(lo, 4 * (p / 2)), m4);
        __m512i hi = ld2x256(a + 128 + 32 * h, c + 128 + 32 * h);
        hi = _mm512_and_si512(_mm512_srli_epi16(hi, 2 * p), m2);
        return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
    }
    case LM_TYPE_Q3_K: {
        __m512i q = _mm512_and_si512(_mm512_srli_epi16(ld2x256(a + 32 + 32 * h, c + 32 + 32 * h), 2 * p), m2);
        __mmask64 hb = _mm512_test_epi8_mask(ld2x256(a, c), _mm512_set1_epi8((char)(1 << (4 * h + p))));
        return _mm512_mask_add_epi8(q, hb, q, _mm512_set1_epi8(4));
    }
    default: /* Q2_K */
        return _mm512_and_si512(_mm512_srli_epi16(ld2x256(a + 16 + 32 * h, c + 16 + 32 * h), 2 * p), m2);
    }
}

/* Scales of the super-blocks at byte offset off of the 16 rows into ks->...[v][lane], decoded for
 * all 16 rows at once from the transposed headers (rows_16x16). */
LM_AI void kq_row_scales(const enum lm_type type, const rvec *rv, size_t off, int v, kq_scales *ks) {
    __m512i D[4];
    const __m512i m63 = _mm512_set1_epi32(63), m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3);
    switch (type) {
    case LM_TYPE_Q4_K:
    case LM_TYPE_Q5_K: { /* d, dmin, scales[12] in the first 16 bytes */
        rows_16x16(rv, off, D);
        const __m512 d = half_of(D[0], 0);
        __m512i m[8];
        for (int j = 0; j < 8; j++) {
            __m512i sc;
            if (j < 4) {
                sc = _mm512_and_si512(byte_of(D[1], j), m63);
                m[j] = _mm512_and_si512(byte_of(D[2], j), m63);
            } else {
                __m512i hi = byte_of(D[3], j - 4);
                sc = _mm512_or_si512(_mm512_and_si512(hi, m15), _mm512_slli_epi32(_mm512_srli_epi32(byte_of(D[1], j - 4), 6), 4));
                m[j] = _mm512_or_si512(_mm512_srli_epi32(hi, 4), _mm512_slli_epi32(_mm512_srli_epi32(byte_of(D[2], j - 4), 6), 4));
            }
            _mm512_store_ps(ks->dsc[j][v], _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
        }
        for (int q = 0; q < 4; q++) _mm512_store_si512(ks->mp[q][v], _mm512_or_si512(m[2 * q], _mm512_slli_epi32(m[2 * q + 1], 16)));
        _mm512_store_ps(ks->ndm[v], _mm512_sub_ps(_mm512_setzero_ps(), half_of(D[0], 1)));
        break;
    }
    case LM_TYPE_Q6_K: { /* int8 scales[16] at 192, d at 208 */
        rows_16x16(rv, off + offsetof(lm_block_q6_K, scales), D);
        const __m512 d = rows_f16(rv, off + offsetof(lm_block_q6_K, d));
        for (int j = 0; j < 16; j++) {
            __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(D[j / 4], 24 - 8 * (j % 4)), 24);
            _mm512_store_ps(ks->dsc[j][v], _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
        }
        break;
    }
    case LM_TYPE_Q3_K: { /* scales[12] at 96, d at 108: the 16 bytes from 94 (s[k] is byte k + 2) */
        rows_16x16(rv, off + offsetof(lm_block_q3_K, scales) - 2, D);
        const __m512 d = half_of(D[3], 1);
#define S3(K) byte_of(D[((K) + 2) / 4], ((K) + 2) % 4)
        for (int j = 0; j < 16; j++) {
            __m512i low = j < 8 ? _mm512_and_si512(S3(j), m15) : _mm512_srli_epi32(S3(j - 8), 4);
            __m512i high = _mm512_and_si512(_mm512_srli_epi32(S3(8 + j % 4), 2 * (j / 4)), m3);
            __m512i sc = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
            _mm512_store_ps(ks->dsc[j][v], _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
        }
#undef S3
        break;
    }
    default: { /* Q2_K: scales[16] at 0 (low nibble scale, high nibble min), d and dmin at 80 */
        __m512i H[4];
        rows_16x16(rv, off, D);
        rows_16x16(rv, off + offsetof(lm_block_q2_K, d) - 12, H); /* H[3] = d | dmin << 16 */
        const __m512 d = half_of(H[3], 0);
        __m512i m[16];
        for (int j = 0; j < 16; j++) {
            __m512i b = byte_of(D[j / 4], j % 4);
            _mm512_store_ps(ks->dsc[j][v], _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(b, m15))));
            m[j] = _mm512_srli_epi32(b, 4);
        }
        for (int q = 0; q < 8; q++) _mm512_store_si512(ks->mp[q][v], _mm512_or_si512(m[2 * q], _mm512_slli_epi32(m[2 * q + 1], 16)));
        _mm512_store_ps(ks->ndm[v], _mm512_sub_ps(_mm512_setzero_ps(), half_of(H[3], 1)));
        break;
    }
    }
}

/* Repacks super-blocks s0..s0+ns of one row vector: pv[sb][8 groups][8 steps][MR][64], scales. */
LM_AI void repack_kq(const enum lm_type type, const rvec *rv, int64_t s0, int ns, int v, uint8_t *pv, kq_scales *ks) {
    const size_t bs = lm_type_traits_get(type)->type_size;
    for (int sb = 0; sb < ns; sb++) {
        const size_t off = (size_t)(s0 + sb) * bs;
        for (int g = 0; g < 8; g++) {
            __m512i z[8];
            for (int i = 0; i < 8; i++) z[i] = kq_pair(type, rv->p[i] + off, rv->p[i + 8] + off, g);
            tr_store(z, 0, pv + ((size_t)sb * 8 + g) * 8 * MR * 64, MR * 64);
        }
        kq_row_scales(type, rv, off, v, &ks[sb]);
    }
}

/* Activation side data for tokens [0, tn) and super-blocks s0..s0+ns into info[t*(KC/256) + sb]
 * (see kq_info). */
static void info_kq(enum lm_type type, const uint8_t *x, size_t xrs, int tn, int64_t s0, int ns, kq_info *info) {
    const int shift = type == LM_TYPE_Q6_K ? 5 : 2; /* offsets 32 and 4 */
    for (int t = 0; t < tn; t++) {
        const lm_block_q8_K *blk = (const lm_block_q8_K *)(x + (size_t)t * xrs) + s0;
        kq_info *in = info + (size_t)t * (KC / 256);
        for (int sb = 0; sb < ns; sb++) {
            const int16_t *bs = blk[sb].bsums;
            memcpy(&in[sb].d, &blk[sb].d, sizeof(float)); /* rows need not be 4-byte aligned */
            if (kq_offset(type)) { /* -offset * bsums[j] as int32 */
                __m512i v = _mm512_cvtepi16_epi32(ld256(bs));
                _mm512_storeu_si512(in[sb].v, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(v, shift)));
            } else if (type == LM_TYPE_Q2_K) { /* the bsums pairs as they are */
                _mm256_storeu_si256((__m256i *)in[sb].v, ld256(bs));
            } else { /* sums of 32 (adjacent bsums), as int16 pairs */
                _mm_storeu_si128((__m128i *)in[sb].v, _mm_hadd_epi16(ld128(bs), ld128(bs + 8)));
            }
        }
    }
}

/*
 * K-quant micro-kernel: 2 row vectors x NTK tokens over ns super-blocks (edge tiles as in mk_b32).
 *   nsub 8 (sub-blocks of 32) or 16 (of 16); has_corr: seed each sub-block with info.v[j];
 *   has_min: subtract dmin * sum(m * activation sums) (vpdpwssd on int16 pairs).
 * pw: panel [ns][8][8][MR][64]; ks: [ns] scales; xq: first quant of super-block 0 of token 0
 * (tokens xrs apart; tokens at or past nt repeat token 0); info [t][KC/256]; y as in mk_b32.
 */
LM_AI void mk_kq(const int nsub, const int has_corr, const int has_min, int nt, int ns, const uint8_t *restrict pw,
                 const kq_scales *restrict ks, const uint8_t *restrict xq, size_t xrs, const kq_info *restrict info,
                 float *restrict y, int64_t ldy, __mmask16 mask0, __mmask16 mask1, int acc) {
    const int steps = 64 / nsub; /* 4-byte steps per sub-block */
    __m512 af[MR][NTK];
    const uint8_t *xp[NTK];
    const kq_info *in[NTK];
#pragma GCC unroll 4
    for (int t = 0; t < NTK; t++) {
        xp[t] = xq + (size_t)(t < nt ? t : 0) * xrs;
        in[t] = info + (t < nt ? t : 0) * (KC / 256);
        af[0][t] = af[1][t] = _mm512_setzero_ps();
    }
    for (int sb = 0; sb < ns; sb++) {
        __m512 tf[MR][NTK];
#pragma GCC unroll 4
        for (int t = 0; t < NTK; t++) tf[0][t] = tf[1][t] = _mm512_setzero_ps();
        for (int j = 0; j < nsub; j++) {
            __m512i ai[MR][NTK];
#pragma GCC unroll 4
            for (int t = 0; t < NTK; t++) ai[0][t] = ai[1][t] = has_corr ? _mm512_set1_epi32(in[t]->v[j]) : _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int s = 0; s < steps; s++) {
                __m512i w0 = _mm512_load_si512(pw + (size_t)(s * MR) * 64);
                __m512i w1 = _mm512_load_si512(pw + (size_t)(s * MR + 1) * 64);
#pragma GCC unroll 4
                for (int t = 0; t < NTK; t++) {
                    __m512i xv = bcst32(xp[t] + 4 * (j * steps + s));
                    ai[0][t] = _mm512_dpbusd_epi32(ai[0][t], w0, xv);
                    ai[1][t] = _mm512_dpbusd_epi32(ai[1][t], w1, xv);
                }
            }
            pw += (size_t)steps * MR * 64;
            __m512 d0 = _mm512_load_ps(ks->dsc[j][0]), d1 = _mm512_load_ps(ks->dsc[j][1]);
#pragma GCC unroll 4
            for (int t = 0; t < NTK; t++) {
                tf[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[0][t]), d0, tf[0][t]);
                tf[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[1][t]), d1, tf[1][t]);
            }
        }
        if (has_min) {
            __m512i mi[MR][NTK];
#pragma GCC unroll 4
            for (int t = 0; t < NTK; t++) mi[0][t] = mi[1][t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int q = 0; q < nsub / 2; q++) {
                __m512i m0 = _mm512_load_si512(ks->mp[q][0]), m1 = _mm512_load_si512(ks->mp[q][1]);
#pragma GCC unroll 4
                for (int t = 0; t < NTK; t++) {
                    __m512i xv = _mm512_set1_epi32(in[t]->v[q]);
                    mi[0][t] = _mm512_dpwssd_epi32(mi[0][t], m0, xv);
                    mi[1][t] = _mm512_dpwssd_epi32(mi[1][t], m1, xv);
                }
            }
            __m512 n0 = _mm512_load_ps(ks->ndm[0]), n1 = _mm512_load_ps(ks->ndm[1]);
#pragma GCC unroll 4
            for (int t = 0; t < NTK; t++) {
                tf[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mi[0][t]), n0, tf[0][t]);
                tf[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mi[1][t]), n1, tf[1][t]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NTK; t++) {
            __m512 dx = _mm512_set1_ps(in[t]->d);
            af[0][t] = _mm512_fmadd_ps(tf[0][t], dx, af[0][t]);
            af[1][t] = _mm512_fmadd_ps(tf[1][t], dx, af[1][t]);
            xp[t] += sizeof(lm_block_q8_K);
            in[t]++;
        }
        ks++;
    }
#pragma GCC unroll 4
    for (int t = 0; t < NTK; t++) {
        if (t >= nt) break;
        float *yt = y + (size_t)t * (size_t)ldy;
        __m512 r0 = af[0][t], r1 = af[1][t];
        if (acc) {
            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(mask0, yt));
            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(mask1, yt + RV));
        }
        _mm512_mask_storeu_ps(yt, mask0, r0);
        _mm512_mask_storeu_ps(yt + RV, mask1, r1);
    }
}

typedef void (*mk_kq_fn)(int nt, int ns, const uint8_t *pw, const kq_scales *ks, const uint8_t *xq, size_t xrs,
                         const kq_info *info, float *y, int64_t ldy, __mmask16 m0, __mmask16 m1, int acc);
#define MK_KQ(NAME, NSUB, CORR, MIN)                                                                          \
    static void NAME(int nt, int ns, const uint8_t *pw, const kq_scales *ks, const uint8_t *xq, size_t xrs,   \
                     const kq_info *info, float *y, int64_t ldy, __mmask16 m0, __mmask16 m1, int acc) {       \
        mk_kq(NSUB, CORR, MIN, nt, ns, pw, ks, xq, xrs, info, y, ldy, m0, m1, acc);                           \
    }
MK_KQ(mk_kq_8m, 8, 0, 1)   /* Q4_K, Q5_K */
MK_KQ(mk_kq_16c, 16, 1, 0) /* Q6_K, Q3_K */
MK_KQ(mk_kq_16m, 16, 0, 1) /* Q2_K */

/* Driver for one K-quant type; same loop nest as gemm_b32 with super-blocks. */
LM_AI void gemm_kq(const enum lm_type type, int64_t K, const void *restrict W, size_t wrs, const void *restrict X,
                   size_t xrs, int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {
    const mk_kq_fn mk = kq_nsub(type) == 8 ? mk_kq_8m : kq_has_min(type) ? mk_kq_16m : mk_kq_16c;
    const size_t wbs = lm_type_traits_get(type)->type_size;
    _Alignas(64) uint8_t panel[(KC / 256) * 64 * MR * 64]; /* [KC/256][8 groups][8 steps][MR][64] */
    _Alignas(64) kq_scales ks[KC / 256];
    _Alignas(64) kq_info info[TC * (KC / 256)];             /* [TC][KC/256] */
    const int64_t nsk = K / 256;
    for (int64_t kb = 0; kb < nsk; kb += KC / 256) {
        const int ns = (int)LM_MIN((int64_t)(KC / 256), nsk - kb);
        for (int64_t t0 = 0; t0 < T; t0 += TC) {
            const int tn = (int)LM_MIN((int64_t)TC, T - t0);
            const uint8_t *xc = (const uint8_t *)X + (size_t)t0 * xrs;
            info_kq(type, xc, xrs, tn, kb, ns, info);
            for (int64_t p = r0; p < r1; p += PR) {
                for (int v = 0; v < MR; v++) { /* see gemm_b32 */
                    const int64_t pv = r1 - p > RV * v ? p + RV * v : p;
                    rvec rv;
                    rvec_init(&rv, (const uint8_t *)W + (size_t)pv * wrs, wrs, (int)LM_MIN((int64_t)RV, r1 - pv));
                    repack_kq(type, &rv, kb, ns, v, panel + v * 64, ks);
                }
                const __mmask16 m0 = lane_mask(r1 - p), m1 = lane_mask(r1 - p - RV);
                const uint8_t *xq = xc + (size_t)kb * sizeof(lm_block_q8_K) + offsetof(lm_block_q8_K, qs);
                wprefetch pf;
                wpf_next(&pf, W, wrs, p, r0, r1, t0, T, (size_t)kb * wbs, (size_t)ns * wbs,
                         (size_t)LM_MIN((int64_t)(KC / 256), nsk - kb - ns) * wbs);
                for (int t = 0; t < tn; t += NTK) {
                    const int nt = LM_MIN(NTK, tn - t);
                    float *y = Y + (size_t)(t0 + t) * (size_t)ldy + p;
                    if (t + NTK < tn) prefetch_y(y + NTK * ldy, ldy, LM_MIN(NTK, tn - t - NTK), 2);
                    wpf_step(&pf, 6);
                    mk(nt, ns, panel, ks, xq + (size_t)t * xrs, xrs, info + t * (KC / 256), y, ldy, m0, m1, kb > 0);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Float types (F32, F16, BF16): no block scales, so the lanes run along k and each (row, token)  */
/* pair keeps one accumulator for the whole row; 4 rows x 6 tokens per tile, reduced at the end.   */

enum { FMR = 4, FNT = 6, FRB = 64 /* rows per block kept in L2 while all tokens pass */ };

/* 16 (F32, F16) or 32 (BF16) elements at p as floats / bf16 pairs; n < full: masked (no fault). */
LM_AI __m512 fl_load(const enum lm_type type, const uint8_t *p, int64_t n, const int full) {
    if (type == LM_TYPE_F32) {
        if (full) return _mm512_loadu_ps(p);
        return _mm512_maskz_loadu_ps(lane_mask(n), p);
    }
    if (type == LM_TYPE_F16) {
        if (full) return _mm512_cvtph_ps(ld256(p));
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)lane_mask(n), p));
    }
    /* BF16: 32 values as 16 pairs */
    if (full) return _mm512_castsi512_ps(_mm512_loadu_si512(p));
    __mmask32 m = n >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << n) - 1u);
    return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, p));
}

LM_AI __m512 fl_madd(const enum lm_type type, __m512 acc, __m512 w, __m512 x) {
    if (type == LM_TYPE_BF16) return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
    return _mm512_fmadd_ps(w, x, acc);
}

/* Sums of the 16 lanes of a, b, c, d as [a, b, c, d]. */
static inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m256 a2 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    __m256 c2 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m256 d2 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    __m256 ab = _mm256_hadd_ps(a2, b2), cd = _mm256_hadd_ps(c2, d2); /* a01 a23 b01 b23 | a45 a67 b45 b67 */
    __m256 abcd = _mm256_hadd_ps(ab, cd);                           /* a b c d | a b c d (partial) */
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/*
 * Float micro-kernel: FMR rows (row i at w + ro[i]) x FNT tokens (token t at x + xo[t]) over K
 * elements; stores y[t*ldy + i] for i < mr, t < nt (the other rows / tokens repeat valid ones).
 */
LM_AI void mk_fl(const enum lm_type type, int mr, int nt, int64_t K, const uint8_t *restrict w, const size_t *ro,
                 const uint8_t *restrict x, const size_t *xo, float *restrict y, int64_t ldy) {
    const int64_t step = type == LM_TYPE_BF16 ? 32 : 16;
    const size_t esz = type == LM_TYPE_F32 ? 4 : 2;
    __m512 acc[FMR][FNT];
    const uint8_t *wp[FMR], *xp[FNT];
#pragma GCC unroll 4
    for (int r = 0; r < FMR; r++) {
        wp[r] = w + ro[r];
#pragma GCC unroll 6
        for (int t = 0; t < FNT; t++) acc[r][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 6
    for (int t = 0; t < FNT; t++) xp[t] = x + xo[t];
    int64_t k = 0;
    for (; k + step <= K; k += step) {
        __m512 wv[FMR];
#pragma GCC unroll 4
        for (int r = 0; r < FMR; r++) wv[r] = fl_load(type, wp[r] + (size_t)k * esz, step, 1);
#pragma GCC unroll 6
        for (int t = 0; t < FNT; t++) {
            __m512 xv = fl_load(type, xp[t] + (size_t)k * esz, step, 1);
#pragma GCC unroll 4
            for (int r = 0; r < FMR; r++) acc[r][t] = fl_madd(type, acc[r][t], wv[r], xv);
        }
    }
    if (k < K) {
        __m512 wv[FMR];
#pragma GCC unroll 4
        for (int r = 0; r < FMR; r++) wv[r] = fl_load(type, wp[r] + (size_t)k * esz, K - k, 0);
#pragma GCC unroll 6
        for (int t = 0; t < FNT; t++) {
            __m512 xv = fl_load(type, xp[t] + (size_t)k * esz, K - k, 0);
#pragma GCC unroll 4
            for (int r = 0; r < FMR; r++) acc[r][t] = fl_madd(type, acc[r][t], wv[r], xv);
        }
    }
    const __mmask8 m = (__mmask8)((1u << mr) - 1u);
#pragma GCC unroll 6
    for (int t = 0; t < FNT; t++) {
        if (t >= nt) break;
        _mm_mask_storeu_ps(y + (size_t)t * (size_t)ldy, m, hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
    }
}

#define MK_FL(NAME, TYPE)                                                                                     \
    static void NAME(int mr, int nt, int64_t K, const uint8_t *w, const size_t *ro, const uint8_t *x,        \
                     const size_t *xo, float *y, int64_t ldy) {                                               \
        mk_fl(TYPE, mr, nt, K, w, ro, x, xo, y, ldy);                                                         \
    }
MK_FL(mk_f32, LM_TYPE_F32)
MK_FL(mk_f16, LM_TYPE_F16)
MK_FL(mk_bf16, LM_TYPE_BF16)

/* Driver: blocks of FRB rows (kept in L2) x all tokens in tiles of FNT x groups of FMR rows. */
static void gemm_fl(enum lm_type type, int64_t K, const void *restrict W, size_t wrs, const void *restrict X,
                    size_t xrs, int64_t T, float *restrict Y, int64_t ldy, int64_t r0, int64_t r1) {
    void (*mk)(int, int, int64_t, const uint8_t *, const size_t *, const uint8_t *, const size_t *, float *, int64_t) =
        type == LM_TYPE_F32 ? mk_f32 : type == LM_TYPE_F16 ? mk_f16 : mk_bf16;
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
GEMM_ENTRY(gemm_bf16, gemm_fl, LM_TYPE_BF16)
GEMM_ENTRY(gemm_q8_0, gemm_b32, LM_TYPE_Q8_0)
GEMM_ENTRY(gemm_q4_0, gemm_b32, LM_TYPE_Q4_0)
GEMM_ENTRY(gemm_q5_0, gemm_b32, LM_TYPE_Q5_0)
GEMM_ENTRY(gemm_q4_1, gemm_b32, LM_TYPE_Q4_1)
GEMM_ENTRY(gemm_q5_1, gemm_b32, LM_TYPE_Q5_1)
GEMM_ENTRY(gemm_q2_k, gemm_kq, LM_TYPE_Q2_K)
GEMM_ENTRY(gemm_q3_k, gemm_kq, LM_TYPE_Q3_K)
GEMM_ENTRY(gemm_q4_k, gemm_kq, LM_TYPE_Q4_K)
GEMM_ENTRY(gemm_q5_k, gemm_kq, LM_TYPE_Q5_K)
GEMM_ENTRY(gemm_q6_k, gemm_kq, LM_TYPE_Q6_K)

void lm_cpu_init_gemm_avx512(lm_kernels *k) {
    k->gemm[LM_TYPE_F32] = gemm_f32;
    k->gemm[LM_TYPE_F16] = gemm_f16;
    k->gemm[LM_TYPE_BF16] = gemm_bf16;
    k->gemm[LM_TYPE_Q8_0] = gemm_q8_0;
    k->gemm[LM_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[LM_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[LM_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[LM_TYPE_Q5_1] = gemm_q5_1;
    k->gemm[LM_TYPE_Q2_K] = gemm_q2_k;
    k->gemm[LM_TYPE_Q3_K] = gemm_q3_k;
    k->gemm[LM_TYPE_Q4_K] = gemm_q4_k;
    k->gemm[LM_TYPE_Q5_K] = gemm_q5_k;
    k->gemm[LM_TYPE_Q6_K] = gemm_q6_k;
}
#endif
