/* Tests of the CPU kernel table (src/cpu): every level this machine supports (lm_cpu_levels: scalar,
 * avx2, avx512 or neon) against the scalar reference routines of src/quant.c (the oracle):
 *   - vec_dot for every weight type x its vec_dot_type, on rows quantized by the reference quantizer
 *     and on random raw blocks with sane scales, for 1, 2, 3, 7, 8, 9, 33 blocks (K-quants: 1..9
 *     super-blocks; F32/F16/BF16: many lengths, none a multiple of every vector width). The difference
 *     must stay below a relative bound of sum |terms| (terms: products of the dequantized values; for
 *     the types with a min/offset, the scale part and the min part counted separately);
 *   - from_float of the activation formats (Q8_0, Q8_1, Q8_K, F16, BF16): identical bytes, including
 *     rounding ties, zero blocks, infinities, subnormals and (where the reference defines it) NaN;
 *   - to_float of every type: identical bits;
 *   - the attention helpers: fp16_to_fp32 exhaustive and fp32_to_fp16 on random bit patterns identical,
 *     axpy_f16 identical, dot_f16 within the dot bound.
 * The measured maximum relative difference is printed per type and level. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <float.h>
#include <math.h>

#include "cpu/cpu.h"
#include "quant.h"

/* ---- deterministic random numbers (xorshift64*, Box-Muller) ---- */
static uint64_t rng_state = 1;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static double rng_uniform(void) { return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0); }
static float rng_gauss(void) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* The weight types, in the order printed. */
static const int weight_types[] = {LM_TYPE_F32,  LM_TYPE_F16,  LM_TYPE_BF16, LM_TYPE_Q4_0, LM_TYPE_Q4_1,
                                   LM_TYPE_Q5_0, LM_TYPE_Q5_1, LM_TYPE_Q8_0, LM_TYPE_Q2_K, LM_TYPE_Q3_K,
                                   LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* Byte offsets inside a block of the fp16 scale field (d) and of the min/offset field (m; -1: none). */
static void scale_fields(int t, int *d_off, int *m_off) {
    *m_off = -1;
    switch (t) {
    case LM_TYPE_Q4_0: *d_off = offsetof(lm_block_q4_0, d); break;
    case LM_TYPE_Q4_1: *d_off = offsetof(lm_block_q4_1, d); *m_off = offsetof(lm_block_q4_1, m); break;
    case LM_TYPE_Q5_0: *d_off = offsetof(lm_block_q5_0, d); break;
    case LM_TYPE_Q5_1: *d_off = offsetof(lm_block_q5_1, d); *m_off = offsetof(lm_block_q5_1, m); break;
    case LM_TYPE_Q8_0: *d_off = offsetof(lm_block_q8_0, d); break;
    case LM_TYPE_Q2_K: *d_off = offsetof(lm_block_q2_K, d); *m_off = offsetof(lm_block_q2_K, dmin); break;
    case LM_TYPE_Q3_K: *d_off = offsetof(lm_block_q3_K, d); break;
    case LM_TYPE_Q4_K: *d_off = offsetof(lm_block_q4_K, d); *m_off = offsetof(lm_block_q4_K, dmin); break;
    case LM_TYPE_Q5_K: *d_off = offsetof(lm_block_q5_K, d); *m_off = offsetof(lm_block_q5_K, dmin); break;
    case LM_TYPE_Q6_K: *d_off = offsetof(lm_block_q6_K, d); break;
    default: *d_off = -1; break;
    }
}

/* A sane random scale: sign random, magnitude 2^[-10, 0). */
static lm_fp16 rand_scale(void) {
    float v = (float)ldexp(1.0 + rng_uniform(), -1 - (int)(rng_u64() % 10));
    return lm_fp32_to_fp16((rng_u64() & 1) ? -v : v);
}

static void put_fp16(uint8_t *p, lm_fp16 h) { memcpy(p, &h, sizeof h); }

/* Random gaussian floats with a random overall scale and a few outliers. */
static void rand_floats(float *x, int64_t n) {
    float scale = (float)ldexp(1.0, (int)(rng_u64() % 9) - 4);
    for (int64_t i = 0; i < n; i++) {
        x[i] = scale * rng_gauss();
        if (rng_u64() % 97 == 0) x[i] *= 8.0f;
    }
}

/* A weight row of n elements of type t: raw random blocks with sane scales (raw = 1) or random floats
 * quantized by the reference quantizer (raw = 0). */
static void make_weight_row(int t, int64_t n, uint8_t *row, int raw) {
    const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
    float *f = malloc((size_t)n * sizeof *f);
    assert_non_null(f);
    rand_floats(f, n);
    if (!raw || t == LM_TYPE_F32 || t == LM_TYPE_F16 || t == LM_TYPE_BF16) {
        tr->from_float(f, row, n);
    } else {
        size_t size = lm_row_size((uint32_t)t, n);
        for (size_t i = 0; i < size; i++) row[i] = (uint8_t)rng_u64();
        int d_off, m_off;
        scale_fields(t, &d_off, &m_off);
        for (int64_t b = 0; b < n / tr->blck_size; b++) {
            uint8_t *blk = row + (size_t)b * tr->type_size;
            put_fp16(blk + d_off, rand_scale());
            if (m_off >= 0) put_fp16(blk + m_off, rand_scale());
        }
    }
    free(f);
}

/* sum_i (|scale part_i| + |min part_i|) * |a_i| in double: the magnitude the dot's rounding scales
 * with. The parts come from the reference to_float of the row with the min field (resp. the scale
 * field) zeroed. */
static double dot_magnitude(int t, int64_t n, const uint8_t *w, const float *a) {
    const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
    size_t size = lm_row_size((uint32_t)t, n);
    float *p1 = malloc((size_t)n * sizeof *p1), *p2 = malloc((size_t)n * sizeof *p2);
    uint8_t *tmp = malloc(size);
    assert_true(p1 && p2 && tmp);
    int d_off, m_off;
    scale_fields(t, &d_off, &m_off);
    memcpy(tmp, w, size);
    if (m_off >= 0)
        for (int64_t b = 0; b < n / tr->blck_size; b++) put_fp16(tmp + (size_t)b * tr->type_size + m_off, 0);
    tr->to_float(tmp, p1, n);
    for (int64_t i = 0; i < n; i++) p2[i] = 0.0f;
    if (m_off >= 0) {
        memcpy(tmp, w, size);
        for (int64_t b = 0; b < n / tr->blck_size; b++) put_fp16(tmp + (size_t)b * tr->type_size + d_off, 0);
        tr->to_float(tmp, p2, n);
    }
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += (fabs((double)p1[i]) + fabs((double)p2[i])) * fabs((double)a[i]);
    free(p1);
    free(p2);
    free(tmp);
    return mag;
}

/* Relative bound for a dot made of `terms` float-rounded partial results (blocks for the quantized
 * types, groups of 8 elements for the float types): both sides round each block product and each
 * addition once, so the difference stays within a few ulps per term. Measured maxima (printed) are
 * 1e-8..1.2e-7, i.e. 0.1..2 ulps. */
static double dot_bound(int64_t terms) { return (8.0 + (double)terms) * FLT_EPSILON; }

static int get_levels(const char **names) {
    int n = lm_cpu_levels(names, 8);
    assert_true(n >= 1);
    assert_string_equal(names[0], "scalar");
    return n;
}

/* ---------------------------------------------------------------------------------------------- */

static void test_levels(void **state) {
    (void)state;
    const char *names[8];
    int n = get_levels(names);
    fprintf(stderr, "levels:");
    for (int i = 0; i < n; i++) {
        const lm_kernels *k = lm_cpu_kernels_level(names[i]);
        assert_non_null(k);
        assert_string_equal(k->name, names[i]);
        fprintf(stderr, " %s", names[i]);
        /* the table is complete */
        for (int j = 0; j < N_WEIGHT_TYPES; j++) {
            assert_non_null(k->vec_dot[weight_types[j]]);
            assert_non_null(k->to_float[weight_types[j]]);
            assert_non_null(k->from_float[weight_types[j]]);
        }
        assert_non_null(k->dot_f16);
        assert_non_null(k->axpy_f16);
        assert_non_null(k->fp32_to_fp16);
        assert_non_null(k->fp16_to_fp32);
    }
    fprintf(stderr, " (best: %s)\n", lm_cpu_kernels()->name);
    assert_null(lm_cpu_kernels_level("no-such-level"));
}

static void test_vec_dot(void **state) {
    (void)state;
    const char *names[8];
    int nl = get_levels(names);
    /* 518: longer than the 512 blocks Q4_0's decode kernels prepare at once (q4_0x4.h), with a
     * partial last group of 4 */
    static const int64_t blocks_32[] = {1, 2, 3, 7, 8, 9, 10, 11, 19, 33, 518};
    static const int64_t blocks_k[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const int64_t lens_f[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 1000, 4099};
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(names[l]);
        for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            const int t = weight_types[ti];
            const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
            const lm_type_traits *vt = lm_type_traits_get(tr->vec_dot_type);
            const int64_t *counts;
            int ncounts;
            if (tr->blck_size == 1) { counts = lens_f; ncounts = (int)(sizeof lens_f / sizeof lens_f[0]); }
            else if (tr->blck_size == LM_QK_K) { counts = blocks_k; ncounts = (int)(sizeof blocks_k / sizeof blocks_k[0]); }
            else { counts = blocks_32; ncounts = (int)(sizeof blocks_32 / sizeof blocks_32[0]); }
            rng_seed(1000 + (uint64_t)t);
            double max_rel = 0, max_ratio = 0;
            int cases = 0;
            for (int c = 0; c < ncounts; c++) {
                const int64_t n = counts[c] * tr->blck_size;
                uint8_t *w = malloc(lm_row_size((uint32_t)t, n));
                uint8_t *aq = malloc(lm_row_size(tr->vec_dot_type, n));
                float *af = malloc((size_t)n * sizeof *af), *adq = malloc((size_t)n * sizeof *adq);
                assert_true(w && aq && af && adq);
                for (int trial = 0; trial < 4; trial++) {
                    make_weight_row(t, n, w, trial & 1);
                    rand_floats(af, n);
                    vt->from_float(af, aq, n); /* reference activation quantization */
                    vt->to_float(aq, adq, n);
                    float ref = NAN, got = NAN;
                    tr->vec_dot(n, &ref, w, aq);
                    /* the float kernels peel elements up to an aligned address: vary the row's
                     * alignment (element-aligned offsets 0..60 bytes) */
                    const size_t wsize = lm_row_size((uint32_t)t, n);
                    const size_t off = tr->blck_size == 1 ? (size_t)(trial * 5 + c) * tr->type_size % 64 : 0;
                    uint8_t *wa = malloc(wsize + 64);
                    assert_non_null(wa);
                    memcpy(wa + off, w, wsize);
                    k->vec_dot[t](n, &got, wa + off, aq);
                    free(wa);
                    const double mag = dot_magnitude(t, n, w, adq);
                    const double diff = fabs((double)got - (double)ref);
                    const double rel = mag > 0 ? diff / mag : diff;
                    const double bound = dot_bound(tr->blck_size == 1 ? (counts[c] + 7) / 8 : counts[c]);
                    if (!(rel <= bound))
                        fprintf(stderr, "FAIL vec_dot %s %s n=%lld trial %d: ref %.9g got %.9g mag %.6g rel %.3g > %.3g\n",
                                names[l], tr->name, (long long)n, trial, ref, got, mag, rel, bound);
                    assert_true(rel <= bound);
                    if (rel > max_rel) max_rel = rel;
                    if (rel / bound > max_ratio) max_ratio = rel / bound;
                    cases++;
                }
                free(w);
                free(aq);
                free(af);
                free(adq);
            }
            fprintf(stderr, "vec_dot %-6s %-5s x %-4s: %3d cases, max rel diff %.3g (%.2f of bound)\n", names[l],
                    tr->name, vt->name, cases, max_rel, max_ratio);
        }
    }
}

/* gemv (several rows per call, decode) must give exactly vec_dot's result on every row: row counts
 * that exercise the multi-row body and the single-row tail, sub-ranges [r0, r1), block counts that
 * exercise every tail of the per-row loop. */
static void test_gemv(void **state) {
    (void)state;
    const char *names[8];
    int nl = get_levels(names);
    static const int64_t blocks_32[] = {1, 3, 8, 9, 11, 64, 518};
    static const int64_t blocks_k[] = {1, 2, 3, 8};
    int n_checked = 0;
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(names[l]);
        for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            const int t = weight_types[ti];
            if (!k->gemv[t]) continue;
            const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
            const lm_type_traits *vt = lm_type_traits_get(tr->vec_dot_type);
            const int64_t *counts = tr->blck_size == LM_QK_K ? blocks_k : blocks_32;
            const int ncounts = tr->blck_size == LM_QK_K ? 4 : 7;
            rng_seed(2000 + (uint64_t)t);
            int rows_checked = 0;
            for (int c = 0; c < ncounts; c++) {
                const int64_t n = counts[c] * tr->blck_size, R = 11;
                const size_t rs = lm_row_size((uint32_t)t, n);
                uint8_t *w = malloc(rs * (size_t)R), *aq = malloc(lm_row_size(tr->vec_dot_type, n));
                float *af = malloc((size_t)n * sizeof *af), ref[11], got[11];
                assert_true(w && aq && af);
                for (int64_t r = 0; r < R; r++) make_weight_row(t, n, w + (size_t)r * rs, (int)(r & 1));
                rand_floats(af, n);
                k->from_float[tr->vec_dot_type](af, aq, n);
                for (int64_t r = 0; r < R; r++) k->vec_dot[t](n, &ref[r], w + (size_t)r * rs, aq);
                static const int64_t ranges[][2] = {{0, 11}, {0, 4}, {3, 10}, {5, 6}, {7, 7}};
                for (int q = 0; q < 5; q++) {
                    for (int64_t r = 0; r < R; r++) got[r] = -1.0f;
                    k->gemv[t](n, w, rs, aq, got, ranges[q][0], ranges[q][1]);
                    for (int64_t r = 0; r < R; r++) {
                        const int inside = r >= ranges[q][0] && r < ranges[q][1];
                        if (inside && f2u(got[r]) != f2u(ref[r]))
                            fail_msg("gemv %s %s n=%lld row %lld of [%lld, %lld): %.9g, vec_dot %.9g", names[l],
                                     tr->name, (long long)n, (long long)r, (long long)ranges[q][0],
                                     (long long)ranges[q][1], got[r], ref[r]);
                        if (!inside) assert_true(got[r] == -1.0f); /* rows outside the range untouched */
                        rows_checked += inside;
                    }
                }
                free(w);
                free(aq);
                free(af);
            }
            fprintf(stderr, "gemv %-6s %-5s x %-4s: %d rows bit-identical to vec_dot\n", names[l], tr->name,
                    vt->name, rows_checked);
            n_checked++;
        }
    }
    fprintf(stderr, "gemv: %d kernels checked\n", n_checked);
}

/* The avx2 and avx512 levels use the same summation order for the 32-element block types (see
 * x86_avx2.c), so their results must be bit-identical: checked for every block count 1..40 (all tail
 * combinations of the 8/4/2/1-block loops) and 518 (Q4_0: q4_0x4.h's slices). */
static void test_x86_levels_agree(void **state) {
    (void)state;
    const lm_kernels *a = lm_cpu_kernels_level("avx2"), *b = lm_cpu_kernels_level("avx512");
    if (!a || !b) {
        fprintf(stderr, "SKIP: %s: needs both the avx2 and avx512 levels\n", __func__);
        skip();
    }
    static const int types[] = {LM_TYPE_Q8_0, LM_TYPE_Q4_0, LM_TYPE_Q5_0, LM_TYPE_Q4_1, LM_TYPE_Q5_1};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int t = types[ti];
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t), *vt = lm_type_traits_get(tr->vec_dot_type);
        rng_seed(31 + (uint64_t)t);
        const int64_t nmax = 518 * 32; /* 518 blocks: see test_vec_dot */
        uint8_t *w = malloc(lm_row_size((uint32_t)t, nmax)), *aq = malloc(lm_row_size(tr->vec_dot_type, nmax));
        float *af = malloc((size_t)nmax * sizeof *af);
        assert_true(w && aq && af);
        int cases = 0;
        for (int64_t nbi = 1; nbi <= 41; nbi++) {
            const int64_t nb = nbi <= 40 ? nbi : 518;
            for (int trial = 0; trial < 2; trial++) {
                const int64_t n = nb * 32;
                make_weight_row(t, n, w, trial);
                rand_floats(af, n);
                vt->from_float(af, aq, n);
                float ra = NAN, rb = NAN;
                a->vec_dot[t](n, &ra, w, aq);
                b->vec_dot[t](n, &rb, w, aq);
                if (f2u(ra) != f2u(rb))
                    fprintf(stderr, "FAIL %s n=%lld: avx2 %.9g avx512 %.9g\n", tr->name, (long long)n, ra, rb);
                assert_int_equal(f2u(ra), f2u(rb));
                cases++;
            }
        }
        fprintf(stderr, "avx2 == avx512 bit for bit: %-4s %d cases\n", tr->name, cases);
        free(w);
        free(aq);
        free(af);
    }
}

/* Inputs for the activation quantizers: random rows plus blocks of special values. Returns the count
 * of floats written (a multiple of 256). with_nan: also blocks containing NaN. */
static int64_t special_inputs(float *x, int64_t cap, int with_nan) {
    int64_t n = 0;
    assert_true(cap >= 256 * 16);
    /* random, several scales */
    for (int r = 0; r < 6; r++, n += 256) rand_floats(x + n, 256);
    /* zeros (and -0) */
    for (int i = 0; i < 256; i++) x[n + i] = (i & 1) ? -0.0f : 0.0f;
    n += 256;
    /* exact rounding ties: amax 127 -> id 1; half-integers everywhere; the Q8_K max is -127 or 127 */
    for (int i = 0; i < 256; i++) x[n + i] = (float)((int)(rng_u64() % 253) - 126) + 0.5f;
    for (int b = 0; b < 256; b += 32) x[n + b + (int)(rng_u64() % 32)] = (rng_u64() & 1) ? 127.0f : -127.0f;
    n += 256;
    /* equal magnitudes with opposite signs (Q8_K: the first one wins) */
    for (int i = 0; i < 256; i++) x[n + i] = 0.25f * rng_gauss();
    x[n + 17] = -3.0f;
    x[n + 200] = 3.0f;
    x[n + 31] = 1.5f; /* block 0 of 32 for Q8_0 */
    x[n + 5] = -1.5f;
    n += 256;
    /* infinities */
    for (int i = 0; i < 256; i++) x[n + i] = rng_gauss();
    x[n + 3] = INFINITY;
    x[n + 100] = -INFINITY;
    n += 256;
    /* subnormal floats and tiny values, values around the fp16 range ends */
    for (int i = 0; i < 256; i++) {
        switch (i % 4) {
        case 0: x[n + i] = u2f((uint32_t)(rng_u64() % 0x800000u) | ((rng_u64() & 1) ? 0x80000000u : 0)); break;
        case 1: x[n + i] = (float)ldexp(rng_gauss(), -20); break;
        case 2: x[n + i] = 65504.0f + (float)(rng_u64() % 64) - 32.0f; break;
        default: x[n + i] = (float)ldexp(rng_gauss(), -24); break;
        }
    }
    n += 256;
    /* huge values (fp16 scale overflows to inf) */
    for (int i = 0; i < 256; i++) x[n + i] = 1e30f * rng_gauss();
    n += 256;
    /* fp16/bf16 rounding ties: low mantissa bits exactly half */
    for (int i = 0; i < 256; i++) {
        uint32_t u = f2u(rng_gauss());
        u = (i & 1) ? ((u & ~0x1fffu) | 0x1000u) : ((u & ~0xffffu) | 0x8000u);
        x[n + i] = u2f(u);
    }
    n += 256;
    if (with_nan) {
        for (int i = 0; i < 256; i++) x[n + i] = rng_gauss();
        x[n + 7] = NAN;
        x[n + 8] = -NAN;
        x[n + 40] = u2f(0x7f800001u); /* signalling NaN */
        n += 256;
        for (int i = 0; i < 256; i++) x[n + i] = NAN; /* all NaN */
        n += 256;
    }
    return n;
}

static void test_from_float(void **state) {
    (void)state;
    const char *names[8];
    int nl = get_levels(names);
    static const int act_types[] = {LM_TYPE_Q8_0, LM_TYPE_Q8_1, LM_TYPE_Q8_K, LM_TYPE_F16, LM_TYPE_BF16, LM_TYPE_F32};
    const int64_t cap = 256 * 16;
    float *x = malloc((size_t)cap * sizeof *x);
    uint8_t *ref = malloc(lm_row_size(LM_TYPE_F32, cap)), *got = malloc(lm_row_size(LM_TYPE_F32, cap));
    assert_true(x && ref && got);
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(names[l]);
        for (size_t ti = 0; ti < sizeof act_types / sizeof act_types[0]; ti++) {
            const int t = act_types[ti];
            const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
            rng_seed(77 + (uint64_t)t);
            /* NaN inputs: the reference defines the bytes exactly for Q8_K (NaN never wins the max,
             * quantizes to -128) and the float formats; Q8_0/Q8_1 give unspecified garbage */
            const int with_nan = t != LM_TYPE_Q8_0 && t != LM_TYPE_Q8_1;
            const int64_t n = special_inputs(x, cap, with_nan);
            int rows = 0;
            /* whole buffer, then each 256-row alone, then short rows (one or a few blocks) */
            for (int64_t start = -256; start < 0 || start + 256 <= n; start += 256) {
                const int64_t off = start < 0 ? 0 : start, len = start < 0 ? n : 256;
                const size_t size = lm_row_size((uint32_t)t, len);
                memset(ref, 0xAB, size);
                memset(got, 0xCD, size);
                tr->from_float(x + off, ref, len);
                k->from_float[t](x + off, got, len);
                if (memcmp(ref, got, size) != 0) {
                    size_t i = 0;
                    while (ref[i] == got[i]) i++;
                    fprintf(stderr, "FAIL from_float %s %s: row at %lld (len %lld) differs at byte %zu: %02x vs %02x\n",
                            names[l], tr->name, (long long)off, (long long)len, i, ref[i], got[i]);
                }
                assert_memory_equal(ref, got, size);
                rows++;
            }
            static const int64_t starts[] = {0, 7 * 256, 8 * 256, 12 * 256};
            for (int si = 0; si < 4; si++) {
                for (int64_t len = tr->blck_size; len <= 9 * tr->blck_size && starts[si] + len <= n; len += tr->blck_size) {
                    const size_t size = lm_row_size((uint32_t)t, len);
                    tr->from_float(x + starts[si], ref, len);
                    k->from_float[t](x + starts[si], got, len);
                    assert_memory_equal(ref, got, size);
                    rows++;
                }
            }
            fprintf(stderr, "from_float %-6s %-4s: %d rows identical%s\n", names[l], tr->name, rows,
                    with_nan ? " (NaN inputs included)" : "");
        }
    }
    free(x);
    free(ref);
    free(got);
}

static void test_to_float(void **state) {
    (void)state;
    const char *names[8];
    int nl = get_levels(names);
    static const int extra[] = {LM_TYPE_Q8_1, LM_TYPE_Q8_K};
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(names[l]);
        for (int ti = 0; ti < N_WEIGHT_TYPES + 2; ti++) {
            const int t = ti < N_WEIGHT_TYPES ? weight_types[ti] : extra[ti - N_WEIGHT_TYPES];
            const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
            rng_seed(555 + (uint64_t)t);
            const int64_t n = (tr->blck_size == 1 ? 1037 : 9 * tr->blck_size);
            uint8_t *w = malloc(lm_row_size((uint32_t)t, n));
            float *ref = malloc((size_t)n * sizeof *ref), *got = malloc((size_t)n * sizeof *got);
            assert_true(w && ref && got);
            int rows = 0;
            for (int trial = 0; trial < 6; trial++) {
                if (t == LM_TYPE_Q8_1 || t == LM_TYPE_Q8_K) {
                    float *f = malloc((size_t)n * sizeof *f);
                    assert_non_null(f);
                    rand_floats(f, n);
                    tr->from_float(f, w, n);
                    free(f);
                } else {
                    make_weight_row(t, n, w, trial & 1);
                }
                /* several lengths from the same row */
                for (int64_t len = (trial < 2 ? n : tr->blck_size * (1 + trial)); len <= n; len += n) {
                    tr->to_float(w, ref, len);
                    k->to_float[t](w, got, len);
                    assert_memory_equal(ref, got, (size_t)len * sizeof *ref);
                    rows++;
                }
            }
            fprintf(stderr, "to_float %-6s %-5s: %d rows bit-identical\n", names[l], tr->name, rows);
            free(w);
            free(ref);
            free(got);
        }
    }
}

static void test_f16_helpers(void **state) {
    (void)state;
    const char *names[8];
    int nl = get_levels(names);
    const lm_kernels *s = lm_cpu_kernels_level("scalar");
    enum { N = 4099 };
    lm_fp16 *h = malloc(65536 * sizeof *h), *h2 = malloc(65536 * sizeof *h2);
    float *f = malloc(65536 * sizeof *f), *g = malloc(65536 * sizeof *g);
    assert_true(h && h2 && f && g);
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(names[l]);
        /* fp16 -> fp32: all 65536 patterns (NaNs included), as one row and as short odd rows */
        for (uint32_t i = 0; i < 65536; i++) h[i] = (lm_fp16)i;
        s->fp16_to_fp32(h, f, 65536);
        k->fp16_to_fp32(h, g, 65536);
        assert_memory_equal(f, g, 65536 * sizeof *f);
        for (int len = 1; len < 40; len++) {
            memset(g, 0, 64 * sizeof *g);
            k->fp16_to_fp32(h + 31744 + len, g, len); /* around inf/NaN patterns */
            s->fp16_to_fp32(h + 31744 + len, f, len);
            assert_memory_equal(f, g, (size_t)len * sizeof *f);
        }
        /* fp32 -> fp16: random bit patterns (every class: NaN, inf, subnormal, ties) */
        rng_seed(4242);
        for (int rep = 0; rep < 4; rep++) {
            for (int i = 0; i < 65536; i++) {
                uint32_t u = (uint32_t)rng_u64();
                if (i % 3 == 0) u = (u & 0x80000000u) | ((uint32_t)(rng_u64() % 40 + 97) << 23) | (u & 0x7fffffu);
                if (i % 7 == 0) u = (u & ~0x1fffu) | 0x1000u; /* exact half-ulp ties */
                f[i] = u2f(u);
            }
            memset(h, 0, 65536 * sizeof *h);
            memset(h2, 0xff, 65536 * sizeof *h2);
            s->fp32_to_fp16(f, h, 65536 - rep);
            k->fp32_to_fp16(f, h2, 65536 - rep);
            assert_memory_equal(h, h2, (size_t)(65536 - rep) * sizeof *h);
        }
        /* axpy_f16: identical; dot_f16: within the dot bound */
        rng_seed(99);
        double max_rel = 0;
        for (int len = 1; len <= N; len = len < 70 ? len + 1 : len * 2 + 1) {
            float a = rng_gauss();
            for (int i = 0; i < len; i++) {
                h[i] = lm_fp32_to_fp16(rng_gauss());
                h2[i] = lm_fp32_to_fp16(rng_gauss());
                f[i] = g[i] = rng_gauss();
            }
            s->axpy_f16(len, f, a, h);
            k->axpy_f16(len, g, a, h);
            assert_memory_equal(f, g, (size_t)len * sizeof *f);
            float ref = 0, got = 0;
            double mag = 0;
            s->dot_f16(len, &ref, h, h2);
            k->dot_f16(len, &got, h, h2);
            for (int i = 0; i < len; i++) mag += fabs((double)lm_fp16_to_fp32(h[i]) * lm_fp16_to_fp32(h2[i]));
            const double rel = fabs((double)got - ref) / mag;
            if (rel > max_rel) max_rel = rel;
            assert_true(rel <= dot_bound(len / 8));
        }
        fprintf(stderr, "f16 helpers %-6s: conversions and axpy identical, dot_f16 max rel diff %.3g\n", names[l],
                max_rel);
    }
    free(h);
    free(h2);
    free(f);
    free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_vec_dot),
        cmocka_unit_test(test_gemv),
        cmocka_unit_test(test_x86_levels_agree),
        cmocka_unit_test(test_from_float),
        cmocka_unit_test(test_to_float),
        cmocka_unit_test(test_f16_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
