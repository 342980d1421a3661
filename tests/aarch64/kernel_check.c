/*
 * kernel_check: compares every kernel of every SIMD level this CPU supports (lm_cpu_levels) with the
 * scalar reference, on random data and lengths that are not multiples of anything convenient.
 * Standalone (libc + the library only, no cmocka) so that it can be cross-built for aarch64 and run
 * under qemu-aarch64 by scripts/check-aarch64; it runs natively as well.
 *
 * Checks, per level:
 *   vec_dot     every weight type x its vec_dot_type: rows quantized by the reference from_float and
 *               rows of random raw blocks (sane fp16 scales), lengths of 1, 2, 3, 7, 8, 9, 33 blocks
 *               (K-quants 1..9 super-blocks; float types odd element counts). Error measure:
 *               |s - s_ref| / sum_i |x_i * y_i| (x, y dequantized): float summation order is all that
 *               may differ. Bound VEC_DOT_REL.
 *   from_float  Q8_0, Q8_1, Q8_K, F16, BF16 bytes identical to the reference (random, scaled, ties,
 *               duplicated +-max, subnormals, inf, huge; random bit patterns and NaNs where quant.h
 *               defines the result: not for Q8_0/Q8_1).
 *   to_float    every type, floats bit-identical to the reference.
 *   f16         fp16_to_fp32 on all 65536 patterns, fp32_to_fp16 on random patterns and axpy_f16:
 *               identical; dot_f16 rel diff (as vec_dot).
 *   gemm        where a level has one: Y vs the scalar vec_dot for T in {1,2,3,5,16,37} and row
 *               ranges with remainders (same measure and bound as vec_dot); nothing written outside
 *               [r0, r1); identical bits when rows and tokens are split over several calls.
 * Prints the max difference per kernel; exit status 0 when everything is within bounds.
 * On aarch64 it also prints whether the dotprod kernels are active (see src/cpu/arm_neon.c).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "cpu.h"
#include "quant.h"

/* Measured (qemu-aarch64, cpu max and cortex-a57; gcc 12 -O2): worst vec_dot / dot_f16 / gemm rel
 * diff 7.0e-8 (F32), K-quants 0 (same per-super-block float steps as the reference). Float accumulation over <= 2304 terms in a different
 * order cannot exceed ~n*eps relative to sum|terms| and in practice stays near sqrt(n)*eps. */
#define VEC_DOT_REL 2e-6

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rnd_unit(void) { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)); } /* [0, 1) */
static float rnd_sym(void) { return 2.0f * rnd_unit() - 1.0f; }
static float rnd_normal(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += rnd_sym();
    return s * 0.8660254f; /* var 1 approx */
}

static int failures = 0;

static void report(const char *what, const char *level, double val, double bound, int ok) {
    printf("  %-28s %-8s max diff %.3g (bound %.3g) %s\n", what, level, val, bound, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* offsets of the fp16 scale fields of each block type (-1: none) */
static void fp16_fields(int t, int off[2]) {
    off[0] = off[1] = -1;
    switch (t) {
    case LM_TYPE_Q4_0: off[0] = offsetof(lm_block_q4_0, d); break;
    case LM_TYPE_Q4_1: off[0] = offsetof(lm_block_q4_1, d); off[1] = offsetof(lm_block_q4_1, m); break;
    case LM_TYPE_Q5_0: off[0] = offsetof(lm_block_q5_0, d); break;
    case LM_TYPE_Q5_1: off[0] = offsetof(lm_block_q5_1, d); off[1] = offsetof(lm_block_q5_1, m); break;
    case LM_TYPE_Q8_0: off[0] = offsetof(lm_block_q8_0, d); break;
    case LM_TYPE_Q2_K: off[0] = offsetof(lm_block_q2_K, d); off[1] = offsetof(lm_block_q2_K, dmin); break;
    case LM_TYPE_Q3_K: off[0] = offsetof(lm_block_q3_K, d); break;
    case LM_TYPE_Q4_K: off[0] = offsetof(lm_block_q4_K, d); off[1] = offsetof(lm_block_q4_K, dmin); break;
    case LM_TYPE_Q5_K: off[0] = offsetof(lm_block_q5_K, d); off[1] = offsetof(lm_block_q5_K, dmin); break;
    case LM_TYPE_Q6_K: off[0] = offsetof(lm_block_q6_K, d); break;
    default: break;
    }
}

/* A row of n elements of type t made of random raw blocks whose fp16 scales are sane (|d| in
 * [1e-3, 0.1]); float types get random normal values. */
static void random_raw_row(int t, int64_t n, void *dst) {
    const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
    if (t == LM_TYPE_F32 || t == LM_TYPE_F16 || t == LM_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = rnd_normal();
            if (t == LM_TYPE_F32) ((float *)dst)[i] = v;
            else if (t == LM_TYPE_F16) ((lm_fp16 *)dst)[i] = lm_fp32_to_fp16(v);
            else ((lm_bf16 *)dst)[i] = lm_fp32_to_bf16(v);
        }
        return;
    }
    const int64_t nb = n / tr->blck_size;
    uint8_t *p = dst;
    for (size_t i = 0; i < (size_t)nb * tr->type_size; i++) p[i] = (uint8_t)rnd64();
    int off[2];
    fp16_fields(t, off);
    for (int64_t b = 0; b < nb; b++)
        for (int k = 0; k < 2; k++) {
            if (off[k] < 0) continue;
            float v = (0.001f + 0.099f * rnd_unit()) * (rnd64() & 1 ? -1.0f : 1.0f);
            lm_fp16 h = lm_fp32_to_fp16(v);
            memcpy(p + (size_t)b * tr->type_size + (size_t)off[k], &h, sizeof h);
        }
}

static double sum_abs_terms(int t, const void *x, const void *y, int64_t n, float *xf, float *yf,
                            const lm_kernels *ref) {
    const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
    ref->to_float[t](x, xf, n);
    ref->to_float[tr->vec_dot_type](y, yf, n);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += fabs((double)xf[i] * (double)yf[i]);
    return m;
}

static const int weight_types[] = {LM_TYPE_F32,  LM_TYPE_F16,  LM_TYPE_BF16, LM_TYPE_Q4_0, LM_TYPE_Q4_1,
                                   LM_TYPE_Q5_0, LM_TYPE_Q5_1, LM_TYPE_Q8_0, LM_TYPE_Q2_K, LM_TYPE_Q3_K,
                                   LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* element counts to test for type t (written to len[], returns the count) */
static int test_lengths(int t, int64_t *len) {
    static const int blocks32[] = {1, 2, 3, 7, 8, 9, 33};
    static const int floats[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 64, 100, 255, 1000, 1031};
    const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
    int k = 0;
    if (tr->blck_size == 1)
        for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) len[k++] = floats[i];
    else if (tr->blck_size == 32)
        for (size_t i = 0; i < sizeof blocks32 / sizeof blocks32[0]; i++) len[k++] = 32 * blocks32[i];
    else
        for (int i = 1; i <= 9; i++) len[k++] = 256 * i;
    return k;
}

#define MAXN 8464 /* > 33 * 256 elements (the largest length used) + sentinels */
static float xf_buf[MAXN], yf_buf[MAXN], tmpf[MAXN], tmpf2[MAXN];
/* Rows start OFF bytes past a 16-byte boundary (vector loads must not assume alignment); OFF keeps
 * the 4-byte alignment that F32 rows and Q8_K blocks have in GGUF files and in the model's buffers.
 * Blocks of 18, 22, ... bytes then sit at every even offset. */
#define OFF 4
static _Alignas(16) uint8_t xbuf[MAXN * 4 + 64], ybuf[MAXN * 4 + 64], zbuf[MAXN * 4 + 64];

static void check_vec_dot(const lm_kernels *ref, const lm_kernels *k) {
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const int t = weight_types[ti];
        if (k->vec_dot[t] == ref->vec_dot[t]) continue;
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
        const int vt = (int)tr->vec_dot_type;
        int64_t len[32];
        const int nl = test_lengths(t, len);
        double worst = 0;
        void *x = xbuf + OFF, *y = ybuf + OFF;
        for (int li = 0; li < nl; li++) {
            const int64_t n = len[li];
            for (int variant = 0; variant < 3; variant++) {
                if (variant < 2) { /* weights from the reference quantizer, of two magnitudes */
                    float scale = variant == 0 ? 1.0f : 0.02f;
                    for (int64_t i = 0; i < n; i++) tmpf[i] = scale * rnd_normal();
                    ref->from_float[t](tmpf, x, n);
                } else {
                    random_raw_row(t, n, x);
                }
                for (int64_t i = 0; i < n; i++) tmpf[i] = rnd_normal() * (variant == 1 ? 30.0f : 1.0f);
                ref->from_float[vt](tmpf, y, n);
                float s_ref = 0, s = 0;
                ref->vec_dot[t](n, &s_ref, x, y);
                k->vec_dot[t](n, &s, x, y);
                double mag = sum_abs_terms(t, x, y, n, xf_buf, yf_buf, ref);
                double rel = fabs((double)s - (double)s_ref) / (mag > 0 ? mag : 1.0);
                if (!(rel <= worst)) worst = rel; /* NaN sticks */
                if (!(rel <= VEC_DOT_REL))
                    printf("    vec_dot %s n=%lld variant %d: %.9g vs ref %.9g (sum|terms| %.6g)\n", tr->name,
                           (long long)n, variant, s, s_ref, mag);
            }
        }
        char what[64];
        snprintf(what, sizeof what, "vec_dot %s x %s", tr->name, lm_type_name((uint32_t)vt));
        report(what, k->name, worst, VEC_DOT_REL, worst <= VEC_DOT_REL);
    }
}

/* fills n floats of test pattern `pattern` for the activation quantizers */
static void activation_pattern(int pattern, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        switch (pattern) {
        case 0: x[i] = rnd_normal(); break;
        case 1: x[i] = rnd_normal() * 1e-3f; break;
        case 2: x[i] = rnd_normal() * 1e4f; break;
        case 3: /* ties: amax 127 per block -> id 1 (or 127/127), halves land on .5 exactly */
            x[i] = (i % 32 == 5) ? 127.0f : (float)((int)(rnd64() % 254) - 127) + 0.5f * (float)(rnd64() & 1);
            if (x[i] > 127.0f) x[i] = 127.0f;
            break;
        case 4: /* duplicated +-max, first one negative or positive */
            x[i] = rnd_sym() * 3.0f;
            if (i % 37 == 3) x[i] = (i % 2) ? -5.0f : 5.0f;
            if (i % 41 == 7) x[i] = (i % 2) ? 5.0f : -5.0f;
            break;
        case 5: x[i] = rnd_normal() * 1e-40f; break; /* subnormals */
        case 6: x[i] = (i % 19 == 0) ? 0.0f : rnd_normal() * (i % 3 == 0 ? 1e30f : 1.0f); break;
        case 7: x[i] = (i % 97 == 11) ? ((i & 1) ? INFINITY : -INFINITY) : rnd_normal(); break;
        case 8: x[i] = 0.0f; break;
        case 10: /* NaNs: whole 256-blocks of them, then sprinkled among normal values */
            x[i] = ((i / 256) % 2 == 0 || i % 13 == 0) ? ((i & 1) ? NAN : -NAN) : rnd_normal();
            break;
        default: { /* random bit patterns: every class, NaN and inf included */
            uint32_t u = (uint32_t)rnd64();
            memcpy(&x[i], &u, 4);
        }
        }
    }
}

static void check_from_float(const lm_kernels *ref, const lm_kernels *k) {
    static const int types[] = {LM_TYPE_Q8_0, LM_TYPE_Q8_1, LM_TYPE_Q8_K, LM_TYPE_F16, LM_TYPE_BF16};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int t = types[ti];
        if (k->from_float[t] == ref->from_float[t]) continue;
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
        const int is_float = tr->blck_size == 1;
        int64_t bad = 0;
        for (int pattern = 0; pattern <= 10; pattern++) {
            /* patterns 9, 10 (random bits: NaN, inf, huge; NaNs): quant.h leaves the bytes of Q8_0 /
             * Q8_1 blocks holding NaN unspecified, so those rows are only run (no crash, no write past
             * the row), not compared; Q8_K, F16 and BF16 define NaN and must match */
            const int nan_unspecified = pattern >= 9 && (t == LM_TYPE_Q8_0 || t == LM_TYPE_Q8_1);
            for (int rep = 0; rep < 3; rep++) {
                int64_t n = is_float ? (int64_t)(1 + rnd64() % 1100) : tr->blck_size * (int64_t)(1 + rnd64() % 9);
                activation_pattern(pattern, tmpf, n);
                size_t rs = lm_row_size((uint32_t)t, n);
                memset(ybuf, 0xa5, rs + OFF + 16);
                memset(zbuf, 0x5a, rs + OFF + 16);
                ref->from_float[t](tmpf, ybuf + OFF, n);
                k->from_float[t](tmpf, zbuf + OFF, n);
                int overrun = 0; /* bytes past the row must stay untouched */
                for (size_t i = 0; i < 16; i++) overrun |= zbuf[OFF + rs + i] != 0x5a;
                if (overrun || (!nan_unspecified && memcmp(ybuf + OFF, zbuf + OFF, rs) != 0)) {
                    bad++;
                    size_t at = 0;
                    while (at < rs && ybuf[OFF + at] == zbuf[OFF + at]) at++;
                    printf("    from_float %s pattern %d n=%lld: first differing byte %zu\n", tr->name, pattern,
                           (long long)n, at);
                }
            }
        }
        char what[64];
        snprintf(what, sizeof what, "from_float %s (rows differing)", tr->name);
        report(what, k->name, (double)bad, 0, bad == 0);
    }
}

static void check_to_float(const lm_kernels *ref, const lm_kernels *k) {
    for (int ti = 0; ti < N_WEIGHT_TYPES + 2; ti++) {
        const int t = ti < N_WEIGHT_TYPES ? weight_types[ti] : (ti == N_WEIGHT_TYPES ? LM_TYPE_Q8_1 : LM_TYPE_Q8_K);
        if (k->to_float[t] == ref->to_float[t]) continue;
        int64_t len[32];
        const int nl = test_lengths(t, len);
        int64_t bad = 0;
        for (int li = 0; li < nl; li++) {
            const int64_t n = len[li];
            if (t == LM_TYPE_Q8_1 || t == LM_TYPE_Q8_K) {
                for (int64_t i = 0; i < n; i++) tmpf[i] = rnd_normal();
                ref->from_float[t](tmpf, xbuf + OFF, n);
            } else {
                random_raw_row(t, n, xbuf + OFF);
            }
            ref->to_float[t](xbuf + OFF, tmpf, n);
            for (int i = 0; i < 4; i++) tmpf2[n + i] = 12345.0f; /* sentinels past the row */
            k->to_float[t](xbuf + OFF, tmpf2, n);
            for (int64_t i = 0; i < n; i++)
                if (memcmp(&tmpf[i], &tmpf2[i], 4) != 0) bad++;
            for (int i = 0; i < 4; i++) bad += tmpf2[n + i] != 12345.0f;
        }
        char what[64];
        snprintf(what, sizeof what, "to_float %s (values differing)", lm_type_name((uint32_t)t));
        report(what, k->name, (double)bad, 0, bad == 0);
    }
}

static void check_f16(const lm_kernels *ref, const lm_kernels *k) {
    static lm_fp16 h[65536 + 8], h2[MAXN];
    static float f[65536 + 8], f2[65536 + 8];
    if (k->fp16_to_fp32 != ref->fp16_to_fp32) {
        for (int i = 0; i < 65536; i++) h[i] = (lm_fp16)i;
        ref->fp16_to_fp32(h, f, 65536);
        k->fp16_to_fp32(h, f2, 65536);
        int64_t bad = 0;
        for (int i = 0; i < 65536; i++) bad += memcmp(&f[i], &f2[i], 4) != 0;
        for (int n = 0; n < 20; n++) { /* short tails */
            k->fp16_to_fp32(h + 1000, f2, n);
            for (int i = 0; i < n; i++) bad += memcmp(&f[1000 + i], &f2[i], 4) != 0;
        }
        report("fp16_to_fp32 (all 65536)", k->name, (double)bad, 0, bad == 0);
    }
    if (k->fp32_to_fp16 != ref->fp32_to_fp16) {
        int64_t bad = 0;
        for (int rep = 0; rep < 10; rep++) {
            const int n = 4096 + rep;
            for (int i = 0; i < n; i++) {
                if (rep < 5) {
                    uint32_t u = (uint32_t)rnd64();
                    memcpy(&f[i], &u, 4);
                } else { /* the half range, where rounding and subnormals matter */
                    f[i] = rnd_sym() * ldexpf(1.0f, (int)(rnd64() % 44) - 28);
                }
            }
            f[0] = 65520.0f;
            f[1] = 65519.996f;
            f[2] = ldexpf(1.0f, -25);
            f[3] = -ldexpf(1.5f, -25);
            ref->fp32_to_fp16(f, h, n);
            k->fp32_to_fp16(f, h2, n);
            for (int i = 0; i < n; i++) bad += h[i] != h2[i];
        }
        report("fp32_to_fp16 (values differing)", k->name, (double)bad, 0, bad == 0);
    }
    if (k->dot_f16 != ref->dot_f16) {
        double worst = 0;
        static const int ns[] = {0, 1, 3, 4, 7, 8, 15, 16, 17, 63, 64, 65, 100, 1000, 2048, 2051};
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            const int n = ns[j];
            for (int i = 0; i < n; i++) {
                h[i] = lm_fp32_to_fp16(rnd_normal());
                h2[i] = lm_fp32_to_fp16(rnd_normal());
            }
            float s_ref = 0, s = 0;
            ref->dot_f16(n, &s_ref, h, h2);
            k->dot_f16(n, &s, h, h2);
            double mag = 0;
            for (int i = 0; i < n; i++) mag += fabs((double)lm_fp16_to_fp32(h[i]) * lm_fp16_to_fp32(h2[i]));
            double rel = fabs((double)s - s_ref) / (mag > 0 ? mag : 1.0);
            if (!(rel <= worst)) worst = rel;
        }
        report("dot_f16", k->name, worst, VEC_DOT_REL, worst <= VEC_DOT_REL);
    }
    if (k->axpy_f16 != ref->axpy_f16) {
        int64_t bad = 0;
        for (int n = 0; n < 70; n += (n < 20 ? 1 : 7)) {
            float a = rnd_normal();
            for (int i = 0; i < n; i++) {
                h[i] = lm_fp32_to_fp16(rnd_normal());
                f[i] = f2[i] = rnd_normal();
            }
            f[n] = f2[n] = 12345.0f; /* sentinel: must stay untouched */
            ref->axpy_f16(n, f, a, h);
            k->axpy_f16(n, f2, a, h);
            for (int i = 0; i <= n; i++) bad += memcmp(&f[i], &f2[i], 4) != 0;
        }
        report("axpy_f16 (values differing)", k->name, (double)bad, 0, bad == 0);
    }

}

/* gemm of type t with rows of K elements vs the reference vec_dot, for every T in Ts and three row
 * ranges; also checks that nothing outside [r0, r1) is written. Returns the worst rel diff. */
static double gemm_case(const lm_kernels *ref, const lm_kernels *k, int t, int64_t K) {
    static const int Ts[] = {1, 2, 3, 5, 16, 37};
    const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
    const int vt = (int)tr->vec_dot_type;
    const int64_t R = 21, ldy = R + 3;
    const size_t wrs = lm_row_size((uint32_t)t, K), xrs = lm_row_size((uint32_t)vt, K);
    uint8_t *W = malloc(wrs * (size_t)R);         /* [R][wrs] */
    uint8_t *X = malloc(xrs * 37);                /* [37][xrs] */
    float *Y = malloc(sizeof(float) * 37 * (size_t)ldy); /* [37][ldy] */
    double worst = 0;
    if (!W || !X || !Y) {
        printf("  gemm: out of memory\n");
        worst = INFINITY;
        goto done;
    }
    for (int64_t r = 0; r < R; r++) {
        if (r % 2) random_raw_row(t, K, W + (size_t)r * wrs);
        else {
            for (int64_t i = 0; i < K; i++) tmpf[i] = 0.02f * rnd_normal();
            ref->from_float[t](tmpf, W + (size_t)r * wrs, K);
        }
    }
    for (int tt = 0; tt < 37; tt++) {
        for (int64_t i = 0; i < K; i++) tmpf[i] = rnd_normal();
        ref->from_float[vt](tmpf, X + (size_t)tt * xrs, K);
    }
    for (size_t j = 0; j < sizeof Ts / sizeof Ts[0]; j++) {
        const int64_t T = Ts[j];
        const int64_t ranges[3][2] = {{0, R}, {3, 19}, {5, 6}};
        for (int q = 0; q < 3; q++) {
            const int64_t r0 = ranges[q][0], r1 = ranges[q][1];
            for (int64_t i = 0; i < T * ldy; i++) Y[i] = NAN;
            k->gemm[t](K, W, wrs, X, xrs, T, Y, ldy, r0, r1);
            for (int64_t tt = 0; tt < T; tt++)
                for (int64_t r = 0; r < ldy; r++) {
                    const float got = Y[tt * ldy + r];
                    if (r < r0 || r >= r1) {
                        if (!isnan(got)) worst = INFINITY; /* wrote outside [r0, r1) */
                        continue;
                    }
                    float s_ref = 0;
                    const void *wr = W + (size_t)r * wrs, *xr = X + (size_t)tt * xrs;
                    ref->vec_dot[t](K, &s_ref, wr, xr);
                    double mag = sum_abs_terms(t, wr, xr, K, xf_buf, yf_buf, ref);
                    double rel = fabs((double)got - s_ref) / (mag > 0 ? mag : 1.0);
                    if (!(rel <= worst)) worst = rel;
                }
        }
    }
    /* split invariance: rows split at odd points and tokens split into calls give the same bits as
     * one call (threads split rows; batches split tokens) */
    {
        const int64_t T = 37;
        float *Y2 = malloc(sizeof(float) * 37 * (size_t)ldy);
        if (!Y2) {
            worst = INFINITY;
            goto done;
        }
        k->gemm[t](K, W, wrs, X, xrs, T, Y, ldy, 0, R);
        static const int64_t rsplit[] = {0, 5, 6, 13, 21}, tsplit[] = {0, 3, 4, 17, 37};
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                k->gemm[t](K, W, wrs, X + (size_t)tsplit[b] * xrs, xrs, tsplit[b + 1] - tsplit[b],
                           Y2 + tsplit[b] * ldy, ldy, rsplit[a], rsplit[a + 1]);
        int64_t bad = 0;
        for (int64_t tt = 0; tt < T; tt++)
            for (int64_t r = 0; r < R; r++) bad += memcmp(&Y[tt * ldy + r], &Y2[tt * ldy + r], 4) != 0;
        if (bad) {
            printf("    gemm %s K=%lld: %lld results change when rows/tokens are split\n", tr->name, (long long)K,
                   (long long)bad);
            worst = INFINITY;
        }
        free(Y2);
    }
done:
    free(W);
    free(X);
    free(Y);
    return worst;
}

static void check_gemm(const lm_kernels *ref, const lm_kernels *k) {
    for (int ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const int t = weight_types[ti];
        if (!k->gemm[t]) continue;
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
        /* one block (a few floats), then a long row */
        const int64_t Ks[2] = {tr->blck_size == 1 ? 5 : tr->blck_size,
                               tr->blck_size == 1 ? 1031 : tr->blck_size * (tr->blck_size == 256 ? 9 : 33)};
        for (int kk = 0; kk < 2; kk++) {
            double worst = gemm_case(ref, k, t, Ks[kk]);
            char what[64];
            snprintf(what, sizeof what, "gemm %s K=%lld", tr->name, (long long)Ks[kk]);
            report(what, k->name, worst, VEC_DOT_REL, worst <= VEC_DOT_REL);
        }
    }
}

int main(void) {
    const lm_kernels *ref = lm_cpu_kernels_level("scalar");
    const char *names[8];
    const int nlev = lm_cpu_levels(names, 8);
#if defined(__aarch64__) && defined(__linux__)
    const char *env = getenv("LLAMITA_NEON_NO_DOTPROD");
    printf("kernel_check: aarch64, cpu dotprod %s, LLAMITA_NEON_NO_DOTPROD=%s\n",
           (getauxval(AT_HWCAP) & (1UL << 20)) ? "yes" : "no", env ? env : "(unset)");
#else
    printf("kernel_check: levels here:");
    for (int i = 0; i < nlev; i++) printf(" %s", names[i]);
    printf("\n");
#endif
    int tested = 0;
    for (int l = 0; l < nlev; l++) {
        if (!strcmp(names[l], "scalar")) continue;
        const lm_kernels *k = lm_cpu_kernels_level(names[l]);
        if (!k) continue;
        printf("level %s:\n", names[l]);
        check_vec_dot(ref, k);
        check_from_float(ref, k);
        check_to_float(ref, k);
        check_f16(ref, k);
        check_gemm(ref, k);
        tested++;
    }
    if (!tested) printf("kernel_check: no SIMD level on this CPU/build; nothing to compare\n");
    printf("kernel_check: %s (%d failure%s)\n", failures ? "FAILED" : "passed", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
