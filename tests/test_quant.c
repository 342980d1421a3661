/* Unit tests of src/quant.c: fp16/bf16 conversions, per-type quantize/dequantize error, the integer
 * vec_dot reference against a float64 dot of the dequantized rows, the activation quantizers'
 * exact rounding rules, and the traits table. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <math.h>

#include "quant.h"

/* ---- deterministic random numbers (xorshift64*, Box-Muller) ---- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
/* every test reseeds, so its data does not depend on which tests ran before */
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

/* Independent value of a half bit pattern (non-NaN), via ldexp. */
static double half_value(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v = exp == 0 ? ldexp(mant, -24) : exp == 31 ? INFINITY : ldexp(1024 + mant, exp - 25);
    return sign ? -v : v;
}

/* ---------------------------------------------------------------------------------------------- */

static void test_fp16_exhaustive_roundtrip(void **state) {
    (void)state;
    int nan_count = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = lm_fp16_to_fp32(h);
        bool is_nan = ((h >> 10) & 31) == 31 && (h & 1023) != 0;
        if (is_nan) {
            nan_count++;
            assert_true(isnan(f));
            assert_int_equal(signbit(f) != 0, (h >> 15) != 0);
            uint16_t back = lm_fp32_to_fp16(f);
            /* NaN stays NaN, same sign, quiet bit set, top payload bits kept */
            assert_int_equal(back & 0x7c00, 0x7c00);
            assert_int_equal(back & 0x8000, h & 0x8000);
            assert_int_equal(back & 0x0200, 0x0200);
            assert_int_equal(back & 0x01ff, h & 0x01ff);
            continue;
        }
        assert_true((double)f == half_value(h));
        if (lm_fp32_to_fp16(f) != h) fail_msg("fp16 round trip 0x%04x -> %.9g -> 0x%04x", h, f, lm_fp32_to_fp16(f));
    }
    printf("fp16: 65536 patterns round-trip exactly (%d NaNs stay NaN)\n", nan_count);
}

static void test_fp16_rounding(void **state) {
    (void)state;
    rng_seed(1);
    struct { float f; uint16_t h; } cases[] = {
        {1.0f, 0x3c00},
        {1.0f + 0x1p-11f, 0x3c00},                 /* tie -> even (down) */
        {1.0f + 3 * 0x1p-11f, 0x3c02},             /* tie -> even (up) */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},      /* just above tie */
        {1.0f + 0x1p-11f - 0x1p-23f, 0x3c00},      /* just below tie */
        {2047.0f + 0.5f, 0x6800},                  /* 2047.5: tie between 2047 (odd) and 2048 -> 2048 */
        {65504.0f, 0x7bff},
        {65519.996f, 0x7bff},
        {65520.0f, 0x7c00},                        /* tie between max and 2^16 -> inf */
        {1e10f, 0x7c00},
        {-1e10f, 0xfc00},
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {0x1p-14f, 0x0400},                        /* smallest normal */
        {0x1p-14f - 0x1p-25f, 0x0400},             /* tie 0x3ff.8 -> 0x400 (even) */
        {0x1p-14f - 3 * 0x1p-25f, 0x03fe},         /* tie 0x3fe.8 -> 0x3fe */
        {0x1p-24f, 0x0001},                        /* smallest subnormal */
        {0x1p-25f, 0x0000},                        /* tie between 0 and 1 -> 0 */
        {0x1p-25f + 0x1p-40f, 0x0001},
        {3 * 0x1p-25f, 0x0002},                    /* tie 1.5 -> 2 */
        {5 * 0x1p-25f, 0x0002},                    /* tie 2.5 -> 2 */
        {-5 * 0x1p-25f, 0x8002},
        {1e-10f, 0x0000},
        {0.1f, 0x2e66},
        {-2.0f / 3.0f, 0xb955},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = lm_fp32_to_fp16(cases[i].f);
        if (h != cases[i].h) fail_msg("fp32_to_fp16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f, h, cases[i].h);
    }
    assert_int_equal(lm_fp32_to_fp16(NAN) & 0x7e00, 0x7e00);

    /* random float bit patterns in the half range: result is a nearest half, ties to even */
    int checked = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)rng_u64();
        u = (u & 0x807fffffu) | ((uint32_t)(100 + rng_u64() % 43) << 23); /* |f| in [2^-27, 2^16) */
        float f = u2f(u);
        uint16_t h = lm_fp32_to_fp16(f);
        if ((h & 0x7fff) == 0x7c00) { /* overflow: only from |f| >= 65520 (the tie above 65504) */
            if (!(fabsf(f) >= 65520.0f)) fail_msg("fp16 rounding of %a overflowed", (double)f);
            checked++;
            continue;
        }
        double v = half_value(h), err = fabs(v - (double)f);
        uint16_t mag = h & 0x7fff;
        uint16_t nb[2] = {(uint16_t)(mag ? h - 1 : h), (uint16_t)(mag < 0x7c00 ? h + 1 : h)};
        for (int k = 0; k < 2; k++) {
            if ((nb[k] & 0x7fff) >= 0x7c00 || ((nb[k] ^ h) & 0x8000)) continue;
            double e2 = fabs(half_value(nb[k]) - (double)f);
            if (e2 < err || (e2 == err && (h & 1))) fail_msg("fp16 rounding of %a gave 0x%04x", (double)f, h);
        }
        checked++;
    }
    printf("fp16: %zu hand-picked cases + %d random floats round to nearest-even\n",
           sizeof cases / sizeof cases[0], checked);
}

static void test_bf16(void **state) {
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = lm_bf16_to_fp32(h);
        assert_int_equal(f2u(f), (uint32_t)h << 16);
        uint16_t back = lm_fp32_to_bf16(f);
        if (isnan(f)) {
            assert_int_equal(back & 0x7fc0, 0x7fc0); /* quiet NaN */
            assert_int_equal(back & 0x8000, h & 0x8000);
        } else if (back != h) {
            fail_msg("bf16 round trip 0x%04x -> 0x%04x", h, back);
        }
    }
    struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, /* tie -> even */
        {0x3f818000, 0x3f82}, {0x3f808001, 0x3f81}, {0x3f807fff, 0x3f80},
        {0xbf818000, 0xbf82}, {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x7f7f7fff, 0x7f7f}, {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
        {0x7f800001, 0x7fc0}, /* signalling NaN with payload only in low bits: stays NaN */
        {0xffc00000, 0xffc0}, {0x00000001, 0x0000}, {0x00008000, 0x0000}, {0x00018000, 0x0002},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = lm_fp32_to_bf16(u2f(cases[i].f));
        if (h != cases[i].h) fail_msg("fp32_to_bf16(0x%08x) = 0x%04x, want 0x%04x", cases[i].f, h, cases[i].h);
    }
    printf("bf16: 65536 patterns round-trip, %zu rounding cases\n", sizeof cases / sizeof cases[0]);
}

/* ---------------------------------------------------------------------------------------------- */

static const int all_types[] = {LM_TYPE_F32, LM_TYPE_F16, LM_TYPE_BF16, LM_TYPE_Q4_0, LM_TYPE_Q4_1,
                                LM_TYPE_Q5_0, LM_TYPE_Q5_1, LM_TYPE_Q8_0, LM_TYPE_Q8_1, LM_TYPE_Q2_K,
                                LM_TYPE_Q3_K, LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K, LM_TYPE_Q8_K};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

/* Relative RMS error bound per type on N(0,1) data. Reference: llama-quantize's own error on the
 * fixture weights (N(0, 0.02^2), measured against the F16 file with tests/ref/dequant_np.py):
 * Q4_0 0.086, Q4_1 0.078, Q5_0 0.043, Q5_1 0.038, Q8_0 0.0054, Q2_K 0.297, Q3_K 0.151,
 * Q4_K 0.0714, Q5_K 0.0361, Q6_K 0.0178. Our quantizers must do at least as well (bound = ggml's
 * level); the float formats get their rounding bound (2^-11, 2^-8 relative, halved for RMS). */
static double rms_bound(int t) {
    switch (t) {
    case LM_TYPE_F32: return 0.0;
    case LM_TYPE_F16: return 0x1p-12;
    case LM_TYPE_BF16: return 0x1p-9;
    case LM_TYPE_Q4_0: return 0.086;
    case LM_TYPE_Q4_1: return 0.078;
    case LM_TYPE_Q5_0: return 0.043;
    case LM_TYPE_Q5_1: return 0.038;
    case LM_TYPE_Q8_0: return 0.0055; /* same rule as ggml: 0.00535 expected, +noise */
    case LM_TYPE_Q8_1: return 0.0055;
    case LM_TYPE_Q2_K: return 0.297;
    case LM_TYPE_Q3_K: return 0.151;
    case LM_TYPE_Q4_K: return 0.0714;
    case LM_TYPE_Q5_K: return 0.0361;
    case LM_TYPE_Q6_K: return 0.0178;
    case LM_TYPE_Q8_K: return 0.0071; /* ggml rule, 256-blocks: 0.00697 expected */
    }
    return 0;
}

#define ROW 4096 /* 16 super-blocks, 128 small blocks */

#define RMS_N 65536 /* enough values that the RMS estimate is within ~0.3% */

static void test_quantize_rms(void **state) {
    (void)state;
    rng_seed(2);
    float *x = malloc(RMS_N * sizeof(float)), *y = malloc(RMS_N * sizeof(float));
    void *q = malloc(RMS_N * 4);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    for (int i = 0; i < RMS_N; i++) x[i] = rng_gauss();
    for (int k = 0; k < N_TYPES; k++) {
        int t = all_types[k];
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
        assert_non_null(tr);
        tr->from_float(x, q, RMS_N);
        tr->to_float(q, y, RMS_N);
        double se = 0, ss = 0;
        for (int i = 0; i < RMS_N; i++) {
            se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            ss += (double)x[i] * x[i];
        }
        double rel = sqrt(se / ss);
        printf("%-5s relative RMS error %.5f (bound %.5f)\n", tr->name, rel, rms_bound(t));
        assert_true(rel <= rms_bound(t));

        /* all-zero and constant rows: exact zeros, no NaN */
        float z[LM_QK_K] = {0};
        float zo[LM_QK_K];
        tr->from_float(z, q, LM_QK_K);
        tr->to_float(q, zo, LM_QK_K);
        for (int i = 0; i < LM_QK_K; i++) assert_true(zo[i] == 0.0f);
        float c[LM_QK_K];
        for (int i = 0; i < LM_QK_K; i++) c[i] = -0.75f;
        tr->from_float(c, q, LM_QK_K);
        tr->to_float(q, zo, LM_QK_K);
        for (int i = 0; i < LM_QK_K; i++) {
            if (!(fabsf(zo[i] + 0.75f) <= 0.75f * 0.02f)) fail_msg("%s: constant -0.75 -> %g", tr->name, zo[i]);
        }
    }
    free(x);
    free(y);
    free(q);
}

/* vec_dot(x, y) for every weight type against the float64 dot of the dequantized operands. */
static void test_vec_dot(void **state) {
    (void)state;
    rng_seed(3);
    float *xf = malloc(ROW * sizeof(float)), *yf = malloc(ROW * sizeof(float));
    float *xd = malloc(ROW * sizeof(float)), *yd = malloc(ROW * sizeof(float));
    void *xq = malloc(ROW * 4 + 4096), *yq = malloc(ROW * 4 + 4096);
    assert_true(xf && yf && xd && yd && xq && yq);
    for (int k = 0; k < N_TYPES; k++) {
        int t = all_types[k];
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
        if (!tr->vec_dot) {
            assert_true(t == LM_TYPE_Q8_1 || t == LM_TYPE_Q8_K);
            continue;
        }
        const lm_type_traits *ty = lm_type_traits_get(tr->vec_dot_type);
        assert_non_null(ty);
        double max_rel = 0;
        for (int rep = 0; rep < 8; rep++) {
            int n = rep % 2 ? ROW : ROW / 4;
            for (int i = 0; i < n; i++) {
                xf[i] = rng_gauss() * (rep == 3 ? 1e-3f : 1.0f);
                yf[i] = rng_gauss() + (rep == 5 ? 0.5f : 0.0f); /* also a biased activation */
            }
            tr->from_float(xf, xq, n);
            ty->from_float(yf, yq, n);
            tr->to_float(xq, xd, n);
            ty->to_float(yq, yd, n);
            double ref = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                ref += (double)xd[i] * yd[i];
                mag += fabs((double)xd[i] * yd[i]);
            }
            if (t == LM_TYPE_Q4_1 || t == LM_TYPE_Q5_1) {
                /* ggml's format: the offset term uses the activation's stored s = fp16(d * sum(q)),
                 * not sum(fp16(d) * q); account for that difference exactly */
                const lm_block_q8_1 *yb = yq;
                for (int b = 0; b < n / 32; b++) {
                    float m = lm_fp16_to_fp32(t == LM_TYPE_Q4_1 ? ((const lm_block_q4_1 *)xq)[b].m
                                                                : ((const lm_block_q5_1 *)xq)[b].m);
                    int qsum = 0;
                    for (int i = 0; i < 32; i++) qsum += yb[b].qs[i];
                    ref += (double)m * ((double)lm_fp16_to_fp32(yb[b].s) - (double)lm_fp16_to_fp32(yb[b].d) * qsum);
                }
            }
            float got = -12345.0f;
            tr->vec_dot(n, &got, xq, yq);
            double rel = fabs((double)got - ref) / mag;
            if (rel > max_rel) max_rel = rel;
        }
        /* float32 accumulation of <= 128 block sums (integers times scales): measured <= ~2e-8
         * relative to sum|x*y|; float32 epsilon is 6e-8 */
        double bound = 1e-6;
        printf("%-5s x %-4s vec_dot vs float64 dot of dequantized: max rel diff %.3g (bound %.0e)\n", tr->name,
               ty->name, max_rel, bound);
        assert_true(max_rel <= bound);
    }
    free(xf);
    free(yf);
    free(xd);
    free(yd);
    free(xq);
    free(yq);
}

/* The activation quantizers follow llama.cpp's exact rounding rules. */
static void test_activation_rounding(void **state) {
    (void)state;
    /* Q8_0: amax 127 -> d = 1, id = 1; ties round to even */
    float x[LM_QK_K];
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[0] = 127.0f; x[1] = 0.5f; x[2] = 1.5f; x[3] = 2.5f; x[4] = -2.5f; x[5] = -0.5f; x[6] = 3.49f; x[7] = -127.0f;
    lm_block_q8_0 b0;
    lm_type_traits_get(LM_TYPE_Q8_0)->from_float(x, &b0, 32);
    assert_int_equal(b0.d, lm_fp32_to_fp16(1.0f));
    int want0[8] = {127, 0, 2, 2, -2, 0, 3, -127};
    for (int i = 0; i < 8; i++) assert_int_equal(b0.qs[i], want0[i]);
    /* id = 127/amax (not 1/(amax/127)): amax = 0.3 */
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * (0.3f / 16.0f);
    lm_type_traits_get(LM_TYPE_Q8_0)->from_float(x, &b0, 32);
    float amax = 0.3f; /* x[0] = -16 * (0.3/16) = -0.3 exactly in float? use the computed one */
    amax = fabsf(x[0]);
    float id = 127.0f / amax;
    for (int i = 0; i < 32; i++) assert_int_equal(b0.qs[i], (int)rintf(x[i] * id));
    assert_int_equal(b0.d, lm_fp32_to_fp16(amax / 127.0f));

    /* Q8_1: s = d * sum(q) with the unrounded d */
    lm_block_q8_1 b1;
    for (int i = 0; i < 32; i++) x[i] = (float)i * 0.01f;
    lm_type_traits_get(LM_TYPE_Q8_1)->from_float(x, &b1, 32);
    int sum = 0;
    for (int i = 0; i < 32; i++) sum += b1.qs[i];
    assert_int_equal(b1.s, lm_fp32_to_fp16((x[31] / 127.0f) * (float)sum));

    /* Q8_K: max = signed value of largest magnitude -> -127; d = max / -127 */
    lm_block_q8_K bk;
    for (int i = 0; i < LM_QK_K; i++) x[i] = (float)((i * 37) % 101 - 50) * 0.5f; /* in [-25, 25] */
    x[10] = 127.0f;  /* max positive -> iscale = -1 */
    x[11] = 2.5f;    /* -2.5 -> -2 (tie to even) */
    x[12] = -3.5f;   /* 3.5 -> 4 */
    x[13] = -127.0f; /* same magnitude later: first one wins, maps to 127 */
    lm_type_traits_get(LM_TYPE_Q8_K)->from_float(x, &bk, LM_QK_K);
    assert_true(bk.d == -1.0f);
    assert_int_equal(bk.qs[10], -127);
    assert_int_equal(bk.qs[11], -2);
    assert_int_equal(bk.qs[12], 4);
    assert_int_equal(bk.qs[13], 127);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += bk.qs[g * 16 + i];
        assert_int_equal(bk.bsums[g], s);
    }
    /* negative max: iscale > 0, max -> -127 */
    for (int i = 0; i < LM_QK_K; i++) x[i] = (float)(i % 7) * 0.1f;
    x[100] = -1.0f;
    lm_type_traits_get(LM_TYPE_Q8_K)->from_float(x, &bk, LM_QK_K);
    assert_true(bk.d == 1.0f / (-127.0f / -1.0f));
    assert_int_equal(bk.qs[100], -127);
    assert_int_equal(bk.qs[6], (int)rintf(0.6f * 127.0f));
    printf("Q8_0/Q8_1/Q8_K activation rounding rules hold\n");
}

/* Hand-made blocks with known values for a few layouts (independent of the quantizers). */
static void test_known_blocks(void **state) {
    (void)state;
    float y[LM_QK_K];
    /* Q4_0: d = 2, nibbles: element j low nibble j%16, element j+16 high nibble 15-j%16 */
    lm_block_q4_0 b4;
    b4.d = lm_fp32_to_fp16(2.0f);
    for (int j = 0; j < 16; j++) b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    lm_type_traits_get(LM_TYPE_Q4_0)->to_float(&b4, y, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 2.0f * (float)(j - 8));
        assert_true(y[j + 16] == 2.0f * (float)(7 - j));
    }
    /* Q5_0: qh bit j set for odd j only -> element j = (low | 16) - 16 */
    lm_block_q5_0 b5;
    b5.d = lm_fp32_to_fp16(0.5f);
    uint32_t qh = 0xAAAAAAAAu;
    memcpy(b5.qh, &qh, 4);
    for (int j = 0; j < 16; j++) b5.qs[j] = (uint8_t)(3 | (12 << 4));
    lm_type_traits_get(LM_TYPE_Q5_0)->to_float(&b5, y, 32);
    for (int j = 0; j < 32; j++) {
        int low = j < 16 ? 3 : 12;
        assert_true(y[j] == 0.5f * (float)((low | ((j & 1) << 4)) - 16));
    }
    /* Q4_K: d = 1, dmin = 1; all scales 1..8 (sub-block j scale j+1, min j); all nibbles 5 */
    lm_block_q4_K bk;
    bk.d = lm_fp32_to_fp16(1.0f);
    bk.dmin = lm_fp32_to_fp16(0.25f);
    uint8_t sc[8], mm[8];
    for (int j = 0; j < 8; j++) { sc[j] = (uint8_t)(j * 8 + 5); mm[j] = (uint8_t)(63 - j * 5); }
    /* pack per the layout: j < 4 in the low 6 bits of bytes j / j+4; j >= 4 split */
    for (int j = 0; j < 4; j++) {
        bk.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        bk.scales[j + 4] = (uint8_t)(mm[j] | ((mm[j + 4] >> 4) << 6));
        bk.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mm[j + 4] & 15) << 4));
    }
    for (int i = 0; i < 128; i++) bk.qs[i] = (uint8_t)(5 | (10 << 4));
    lm_type_traits_get(LM_TYPE_Q4_K)->to_float(&bk, y, LM_QK_K);
    for (int e = 0; e < LM_QK_K; e++) {
        int j = e / 32, q = (e / 32) % 2 ? 10 : 5;
        assert_true(y[e] == (float)sc[j] * (float)q - 0.25f * (float)mm[j]);
    }
    /* Q6_K: scales k-8, every 6-bit value 33 (q = 1) -> y = d * scale */
    lm_block_q6_K b6;
    b6.d = lm_fp32_to_fp16(0.125f);
    for (int j = 0; j < 16; j++) b6.scales[j] = (int8_t)(j * 16 - 128);
    memset(b6.ql, 0x11, sizeof b6.ql); /* low nibbles 1 */
    memset(b6.qh, 0xAA, sizeof b6.qh); /* high 2 bits 2 -> 0x21 = 33 */
    lm_type_traits_get(LM_TYPE_Q6_K)->to_float(&b6, y, LM_QK_K);
    for (int e = 0; e < LM_QK_K; e++) assert_true(y[e] == 0.125f * (float)(e / 16 * 16 - 128));
    printf("hand-made Q4_0/Q5_0/Q4_K/Q6_K blocks dequantize to the expected values\n");
}

static void test_traits(void **state) {
    (void)state;
    /* (id, name, block, bytes) per the GGUF spec, as in tests/ref/gguf_np.py */
    struct { int id; const char *name; int bs, ts; } spec[] = {
        {0, "F32", 1, 4}, {1, "F16", 1, 2}, {2, "Q4_0", 32, 18}, {3, "Q4_1", 32, 20}, {6, "Q5_0", 32, 22},
        {7, "Q5_1", 32, 24}, {8, "Q8_0", 32, 34}, {9, "Q8_1", 32, 36}, {10, "Q2_K", 256, 84},
        {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210},
        {15, "Q8_K", 256, 292}, {30, "BF16", 1, 2},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)spec[i].id);
        assert_non_null(tr);
        assert_string_equal(tr->name, spec[i].name);
        assert_string_equal(lm_type_name((uint32_t)spec[i].id), spec[i].name);
        assert_int_equal(tr->blck_size, spec[i].bs);
        assert_int_equal(tr->type_size, spec[i].ts);
        assert_non_null(tr->to_float);
        assert_non_null(tr->from_float);
        assert_int_equal(lm_type_from_name(spec[i].name), spec[i].id);
        assert_int_equal(lm_row_size((uint32_t)spec[i].id, 4096), (size_t)(4096 / spec[i].bs * spec[i].ts));
        assert_int_equal(lm_row_size((uint32_t)spec[i].id, 0), 0);
    }
    uint32_t bad[] = {4, 5, 16, 20, 29, 31, 1000, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(lm_type_traits_get(bad[i]));
        assert_string_equal(lm_type_name(bad[i]), "?");
        assert_int_equal(lm_row_size(bad[i], 256), 0);
    }
    assert_int_equal(lm_type_from_name("q4_k"), LM_TYPE_Q4_K);
    assert_int_equal(lm_type_from_name("bf16"), LM_TYPE_BF16);
    assert_int_equal(lm_type_from_name("Q4_K_M"), -1);
    assert_int_equal(lm_type_from_name(""), -1);
    assert_int_equal(lm_type_from_name(NULL), -1);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_0, 33), 0);      /* not a multiple of the block */
    assert_int_equal(lm_row_size(LM_TYPE_Q4_K, 128), 0);
    assert_int_equal(lm_row_size(LM_TYPE_F32, -4), 0);
    assert_int_equal(lm_row_size(LM_TYPE_F32, INT64_MAX), 0); /* overflows size_t */
    assert_int_equal(lm_row_size(LM_TYPE_F32, 5), 20);
    /* vec_dot types per ggml */
    assert_int_equal(lm_type_traits_get(LM_TYPE_Q4_0)->vec_dot_type, LM_TYPE_Q8_0);
    assert_int_equal(lm_type_traits_get(LM_TYPE_Q5_1)->vec_dot_type, LM_TYPE_Q8_1);
    assert_int_equal(lm_type_traits_get(LM_TYPE_Q6_K)->vec_dot_type, LM_TYPE_Q8_K);
    assert_int_equal(lm_type_traits_get(LM_TYPE_BF16)->vec_dot_type, LM_TYPE_BF16);
}

/* Non-finite and extreme inputs: quantizing never crashes or hits undefined behaviour (run under
 * UBSan), and a garbage block does not leak into the next one. */
static void test_quantize_garbage(void **state) {
    (void)state;
    rng_seed(4);
    enum { N = 2 * LM_QK_K };
    float x[N], y[N];
    static unsigned char q[N * 4];
    const float junk[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 1e-30f, 0x1p-149f, 65504.0f, 70000.0f};
    for (int k = 0; k < N_TYPES; k++) {
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)all_types[k]);
        for (int variant = 0; variant < 3; variant++) {
            for (int i = 0; i < LM_QK_K; i++) {
                float j = junk[(i + variant) % (sizeof junk / sizeof junk[0])];
                x[i] = variant == 2 ? (i % 2 ? 1e30f : -1e-30f) : (i % (variant + 2) == 0 ? j : rng_gauss());
            }
            for (int i = LM_QK_K; i < N; i++) x[i] = rng_gauss();
            tr->from_float(x, q, N);
            tr->to_float(q, y, N);
            double se = 0, ss = 0;
            for (int i = LM_QK_K; i < N; i++) {
                se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                ss += (double)x[i] * x[i];
            }
            if (!(sqrt(se / ss) <= 2 * rms_bound(all_types[k]) + 1e-6))
                fail_msg("%s: block after a garbage block has rel RMS error %g", tr->name, sqrt(se / ss));
        }
    }
    printf("NaN/inf/huge/tiny inputs: no crash, following blocks unaffected\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_exhaustive_roundtrip),
        cmocka_unit_test(test_fp16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_known_blocks),
        cmocka_unit_test(test_activation_rounding),
        cmocka_unit_test(test_quantize_rms),
        cmocka_unit_test(test_quantize_garbage),
        cmocka_unit_test(test_vec_dot),
        cmocka_unit_test(test_traits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
