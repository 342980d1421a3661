/* Tests of the batched GEMM kernels (k->gemm[type], src/cpu/gemm_*.c) against the scalar vec_dot
 * reference of src/quant.c, for every CPU level this machine supports and every type with a gemm:
 *   Y[t*ldy + r] = dot(W row r, X row t) for t < T, r in [r0, r1)
 * with T in {1, 2, 3, 5, 16, 37} (and one run past the kernels' token chunk), row ranges with
 * remainders (not multiples of 16 or 32, starting anywhere), K with a partial last K chunk, weight
 * rows both from the reference quantizer and as random raw blocks (every bit pattern, sane scales),
 * and padded activation rows. Entries of Y outside the range must stay untouched.
 * The error measure is |gemm - vec_dot| / sum_k |w_k * x_k| (dequantized, float64); it only reflects
 * float summation order, so the bound is a small multiple of float epsilon (max printed per type). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <math.h>

#include "cpu/cpu.h"
#include "quant.h"

/* ---- deterministic random numbers (xorshift64*, Box-Muller) ---- */
static uint64_t rng_state;
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

/* A random fp16 scale of either sign, magnitude in [2^-10, 2^-4). */
static void put_scale(uint8_t *p) {
    float v = (float)ldexp(1.0 + rng_uniform(), -10 + (int)(rng_u64() % 6));
    if (rng_u64() & 1) v = -v;
    lm_fp16 h = lm_fp32_to_fp16(v);
    memcpy(p, &h, 2);
}

/* Offsets of the fp16 scale fields of one block of type t (-1: none). */
static void scale_fields(uint32_t t, int *a, int *b) {
    *a = -1;
    *b = -1;
    switch (t) {
    case LM_TYPE_Q4_0: case LM_TYPE_Q5_0: case LM_TYPE_Q8_0: *a = 0; break;
    case LM_TYPE_Q4_1: case LM_TYPE_Q5_1: case LM_TYPE_Q4_K: case LM_TYPE_Q5_K: *a = 0; *b = 2; break;
    case LM_TYPE_Q2_K: *a = offsetof(lm_block_q2_K, d); *b = offsetof(lm_block_q2_K, dmin); break;
    case LM_TYPE_Q3_K: *a = offsetof(lm_block_q3_K, d); break;
    case LM_TYPE_Q6_K: *a = offsetof(lm_block_q6_K, d); break;
    default: break;
    }
}

/* Fills one weight row of K elements: quantized from Gaussian floats with the reference quantizer
 * (raw = 0), or random bytes with sane scales (raw = 1, quantized types only). */
static void make_weight_row(uint32_t t, int64_t K, uint8_t *dst, int raw) {
    const lm_type_traits *tr = lm_type_traits_get(t);
    int a, b;
    scale_fields(t, &a, &b);
    if (raw && a >= 0) {
        size_t rs = lm_row_size(t, K);
        for (size_t i = 0; i < rs; i++) dst[i] = (uint8_t)rng_u64();
        for (int64_t blk = 0; blk < K / tr->blck_size; blk++) {
            put_scale(dst + blk * tr->type_size + a);
            if (b >= 0) put_scale(dst + blk * tr->type_size + b);
        }
        return;
    }
    float *f = malloc((size_t)K * sizeof(float));
    float amp = (float)(0.5 + rng_uniform());
    for (int64_t i = 0; i < K; i++) f[i] = amp * rng_gauss();
    tr->from_float(f, dst, K);
    free(f);
}

/* Activation row: Gaussian, some outliers, one all-zero row (token 1) to exercise zero scales. */
static void make_act_row(uint32_t vt, int64_t K, uint8_t *dst, int token) {
    float *f = malloc((size_t)K * sizeof(float));
    for (int64_t i = 0; i < K; i++) f[i] = token == 1 ? 0.0f : rng_gauss();
    if (token != 1 && K > 4)
        for (int j = 0; j < 3; j++) f[rng_u64() % (uint64_t)K] *= 20.0f;
    lm_type_traits_get(vt)->from_float(f, dst, K);
    free(f);
}

/* One data set per (type, K): NROWS weight rows (every third from the reference quantizer, the
 * others raw random blocks), TMAX activation rows (padded), and the scalar reference results and
 * error scales for every (token, row). */
enum { NROWS = 70 };
typedef struct {
    uint32_t type;
    int64_t K, tmax;
    size_t wrs, xrs;
    uint8_t *W, *X;
    float *ref;  /* [tmax][NROWS] scalar vec_dot */
    double *mag; /* [tmax][NROWS] error scale */
} dataset;

static void dataset_make(dataset *ds, uint32_t type, int64_t K, int64_t tmax) {
    const lm_type_traits *tr = lm_type_traits_get(type);
    const lm_type_traits *vtr = lm_type_traits_get(tr->vec_dot_type);
    ds->type = type;
    ds->K = K;
    ds->tmax = tmax;
    ds->wrs = lm_row_size(type, K);
    size_t xrs_exact = lm_row_size(tr->vec_dot_type, K);
    ds->xrs = xrs_exact + 40; /* padded activation rows */
    ds->W = malloc(ds->wrs * NROWS);
    ds->X = malloc(ds->xrs * (size_t)tmax);
    for (int64_t r = 0; r < NROWS; r++) make_weight_row(type, K, ds->W + (size_t)r * ds->wrs, r % 3 != 0);
    for (int64_t t = 0; t < tmax; t++) {
        make_act_row(tr->vec_dot_type, K, ds->X + (size_t)t * ds->xrs, (int)t);
        memset(ds->X + (size_t)t * ds->xrs + xrs_exact, 0xA5, ds->xrs - xrs_exact);
    }
    /* Error scale. Types with a min (x = d*q - dmin*m, or d*q + m) are dequantized twice, once with
     * the min field zeroed and once with the scale zeroed, so that the scale is sum(|d*q*x| + |m*x|):
     * the reference's own rounding error is relative to those terms. */
    float *Wf = malloc(sizeof(float) * (size_t)(K * NROWS));
    float *Wm = calloc((size_t)(K * NROWS), sizeof(float));
    float *Xf = malloc(sizeof(float) * (size_t)K);
    int fa, fb;
    scale_fields(type, &fa, &fb);
    uint8_t *tmp = malloc(ds->wrs);
    for (int64_t r = 0; r < NROWS; r++) {
        if (fb < 0) {
            tr->to_float(ds->W + (size_t)r * ds->wrs, Wf + r * K, K);
            continue;
        }
        for (int z = 0; z < 2; z++) {
            memcpy(tmp, ds->W + (size_t)r * ds->wrs, ds->wrs);
            for (int64_t blk = 0; blk < K / tr->blck_size; blk++)
                memset(tmp + blk * tr->type_size + (z ? fa : fb), 0, 2);
            tr->to_float(tmp, (z ? Wm : Wf) + r * K, K);
        }
    }
    ds->ref = malloc(sizeof(float) * (size_t)(tmax * NROWS));
    ds->mag = malloc(sizeof(double) * (size_t)(tmax * NROWS));
    for (int64_t t = 0; t < tmax; t++) {
        vtr->to_float(ds->X + (size_t)t * ds->xrs, Xf, K);
        for (int64_t r = 0; r < NROWS; r++) {
            tr->vec_dot(K, &ds->ref[t * NROWS + r], ds->W + (size_t)r * ds->wrs, ds->X + (size_t)t * ds->xrs);
            double mag = 0;
            for (int64_t i = 0; i < K; i++)
                mag += (fabs((double)Wf[r * K + i]) + fabs((double)Wm[r * K + i])) * fabs((double)Xf[i]);
            ds->mag[t * NROWS + r] = mag;
        }
    }
    free(tmp);
    free(Wf);
    free(Wm);
    free(Xf);
}

static void dataset_free(dataset *ds) {
    free(ds->W);
    free(ds->X);
    free(ds->ref);
    free(ds->mag);
}

/* Runs the gemm on tokens [0, T) and rows [r0, r1) of ds; returns the max relative difference from
 * the reference. Fails on a write outside the range, a non-finite result, or a nonzero result where
 * the exact answer is 0 (the all-zero activation row). */
static double run_case(const lm_kernels *k, const dataset *ds, int64_t r0, int64_t r1, int64_t T) {
    const char *name = lm_type_name(ds->type);
    assert_true(T <= ds->tmax);
    const int64_t ldy = NROWS + 5;
    float *Y = malloc(sizeof(float) * (size_t)(ldy * T));
    const float sentinel = -12345.5f;
    for (int64_t i = 0; i < ldy * T; i++) Y[i] = sentinel;
    k->gemm[ds->type](ds->K, ds->W, ds->wrs, ds->X, ds->xrs, T, Y, ldy, r0, r1);
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t r = 0; r < ldy; r++) {
            float y = Y[t * ldy + r];
            if (r < r0 || r >= r1) {
                if (y != sentinel)
                    fail_msg("%s: Y[%lld][%lld] outside [%lld,%lld) was written", name, (long long)t, (long long)r,
                             (long long)r0, (long long)r1);
                continue;
            }
            if (!isfinite(y)) fail_msg("%s: non-finite result at t=%lld r=%lld", name, (long long)t, (long long)r);
            double err = fabs((double)y - (double)ds->ref[t * NROWS + r]), mag = ds->mag[t * NROWS + r];
            if (mag == 0 && err != 0)
                fail_msg("%s: t=%lld r=%lld expected 0, got %g", name, (long long)t, (long long)r, (double)y);
            double rel = mag > 0 ? err / mag : 0;
            if (rel > worst) worst = rel;
        }
    }
    free(Y);
    return worst;
}

/* Relative bound: float summation-order differences (measured max 3.1e-7 over all types and
 * levels, AVX-512 and AVX2, gcc and clang); 2e-6 leaves margin while any wrong element, scale,
 * offset or min gives errors of order 1e-3 and up (checked by breaking the kernels on purpose). */
#define REL_BOUND 2e-6

static const uint32_t all_types[] = {LM_TYPE_F32,  LM_TYPE_F16,  LM_TYPE_BF16, LM_TYPE_Q4_0, LM_TYPE_Q4_1,
                                     LM_TYPE_Q5_0, LM_TYPE_Q5_1, LM_TYPE_Q8_0, LM_TYPE_Q2_K, LM_TYPE_Q3_K,
                                     LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K};

static void test_gemm_vs_vec_dot(void **state) {
    (void)state;
    const char *levels[8];
    int nl = lm_cpu_levels(levels, 8);
    int tested = 0;
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        uint32_t type = all_types[ti];
        int any = 0;
        for (int l = 0; l < nl; l++) any |= lm_cpu_kernels_level(levels[l])->gemm[type] != NULL;
        if (!any) continue;
        const lm_type_traits *tr = lm_type_traits_get(type);
        rng_seed(1000 + type);
        /* K: one partial K chunk (float types: not a multiple of 16/32), and several chunks with a
         * partial last one; the first set also has more tokens than one token chunk of the kernels */
        dataset ds[2];
        dataset_make(&ds[0], type, tr->blck_size == 1 ? 200 : 256, 300);
        dataset_make(&ds[1], type, 1280, 37);
        for (int l = 0; l < nl; l++) {
            const lm_kernels *k = lm_cpu_kernels_level(levels[l]);
            if (!k->gemm[type]) continue;
            double worst = 0;
            int cases = 0;
            static const int64_t Ts[] = {1, 2, 3, 5, 16, 37};
            for (int d = 0; d < 2; d++) {
                for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
                    int64_t T = Ts[i];
                    /* ranges: remainders of 16 and 32 (incl. 15), a start inside a panel, one row */
                    double e[5] = {run_case(k, &ds[d], 0, NROWS, T), run_case(k, &ds[d], 3, 53, T),
                                   run_case(k, &ds[d], 16, 48, T), run_case(k, &ds[d], 41, 42, T),
                                   run_case(k, &ds[d], 7, 54, T)};
                    for (int j = 0; j < 5; j++) worst = e[j] > worst ? e[j] : worst;
                    cases += 5;
                }
            }
            double e = run_case(k, &ds[0], 5, 40, 300); /* more tokens than one token chunk */
            worst = e > worst ? e : worst;
            cases++;
            printf("gemm %-7s %-5s: max rel diff vs scalar vec_dot %.3g over %d cases\n", levels[l], tr->name, worst,
                   cases);
            assert_true(worst < REL_BOUND);
            tested++;
        }
        dataset_free(&ds[0]);
        dataset_free(&ds[1]);
    }
    printf("gemm: %d (level, type) pairs tested\n", tested);
#if defined(__x86_64__)
    /* this project's x86 machines all have AVX2; a build without the kernels is a regression */
    if (lm_cpu_kernels_level("avx2")) assert_true(tested > 0);
#endif
}

/* Calling a gemm on disjoint row ranges (as the threads do), at any split points, or on fewer tokens
 * gives exactly the same results as one call: each row and token is computed the same way whatever
 * tile it falls in, so the forward pass does not depend on how work is divided. */
static void test_gemm_split_ranges(void **state) {
    (void)state;
    const char *levels[8];
    int nl = lm_cpu_levels(levels, 8), tested = 0;
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(levels[l]);
        for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
            uint32_t type = all_types[ti];
            if (!k->gemm[type]) continue;
            const lm_type_traits *tr = lm_type_traits_get(type);
            rng_seed(77 + type);
            const int64_t K = 512, nrows = 96, T = 9;
            size_t wrs = lm_row_size(type, K), xrs = lm_row_size(tr->vec_dot_type, K);
            uint8_t *W = malloc(wrs * nrows), *X = malloc(xrs * T);
            for (int64_t r = 0; r < nrows; r++) make_weight_row(type, K, W + r * wrs, 1);
            for (int64_t t = 0; t < T; t++) make_act_row(tr->vec_dot_type, K, X + t * xrs, (int)t + 2);
            float *Y1 = calloc((size_t)(nrows * T), sizeof(float)), *Y2 = calloc((size_t)(nrows * T), sizeof(float));
            k->gemm[type](K, W, wrs, X, xrs, T, Y1, nrows, 0, nrows);
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 0, 32);
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 32, 64);
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 64, 96);
            assert_memory_equal(Y1, Y2, sizeof(float) * (size_t)(nrows * T));
            memset(Y2, 0, sizeof(float) * (size_t)(nrows * T));
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 0, 17);
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 17, 50);
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 50, 51);
            k->gemm[type](K, W, wrs, X, xrs, T, Y2, nrows, 51, 96);
            assert_memory_equal(Y1, Y2, sizeof(float) * (size_t)(nrows * T));
            /* tokens 4..8 alone */
            memset(Y2, 0, sizeof(float) * (size_t)(nrows * T));
            k->gemm[type](K, W, wrs, X + 4 * xrs, xrs, T - 4, Y2 + 4 * nrows, nrows, 0, nrows);
            assert_memory_equal(Y1 + 4 * nrows, Y2 + 4 * nrows, sizeof(float) * (size_t)(nrows * (T - 4)));
            free(W);
            free(X);
            free(Y1);
            free(Y2);
            tested++;
        }
    }
    printf("gemm split ranges: %d (level, type) pairs identical\n", tested);
}

/* Degenerate calls: K = 0 writes zeros (empty dot products); T = 0 or an empty row range writes
 * nothing. */
static void test_gemm_degenerate(void **state) {
    (void)state;
    const char *levels[8];
    int nl = lm_cpu_levels(levels, 8), tested = 0;
    uint8_t dummy[64] = {0};
    for (int l = 0; l < nl; l++) {
        const lm_kernels *k = lm_cpu_kernels_level(levels[l]);
        for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
            uint32_t type = all_types[ti];
            if (!k->gemm[type]) continue;
            float Y[2 * 4];
            for (int i = 0; i < 8; i++) Y[i] = 7.0f;
            k->gemm[type](0, dummy, 0, dummy, 0, 2, Y, 4, 1, 3);
            for (int i = 0; i < 8; i++) assert_true(Y[i] == ((i % 4 == 1 || i % 4 == 2) ? 0.0f : 7.0f));
            for (int i = 0; i < 8; i++) Y[i] = 7.0f;
            k->gemm[type](0, dummy, 0, dummy, 0, 0, Y, 4, 0, 4);
            k->gemm[type](0, dummy, 0, dummy, 0, 2, Y, 4, 2, 2);
            for (int i = 0; i < 8; i++) assert_true(Y[i] == 7.0f);
            tested++;
        }
    }
    printf("gemm degenerate calls: %d (level, type) pairs\n", tested);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_vs_vec_dot),
        cmocka_unit_test(test_gemm_split_ranges),
        cmocka_unit_test(test_gemm_degenerate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
