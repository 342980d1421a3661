/* Math kernels of the forward pass. Contracts and numerics: ops.h.
 *
 * This file is compiled with the baseline flags (no -m options): the heavy lifting goes through the
 * kernel table (cpu.h: vec_dot, from_float, gemm, f16 conversions). The attention tile loops below
 * are plain C written so that compilers vectorize them along the independent outputs (cells for
 * the scores, head dims for the weighted sum of V); every output is still a sum in a fixed order,
 * so the results do not depend on vector width, tiling or threads. */
#include "ops.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

float lm_f16_table[65536];

static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_table_build(void) {
    for (uint32_t i = 0; i < 65536; i++) lm_f16_table[i] = lm_fp16_to_fp32((lm_fp16)i);
}

void lm_ops_init(void) { pthread_once(&f16_once, f16_table_build); }

/* Four floats in one SSE / NEON register (GCC/Clang vector extension, baseline ISA: no -m flags).
 * Element-wise arithmetic only, so every lane computes exactly what the scalar code would. */
typedef float lm_v4 __attribute__((vector_size(16)));
static inline lm_v4 v4_load(const float *p) {
    lm_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, lm_v4 v) { memcpy(p, &v, sizeof v); }
static inline lm_v4 v4_set1(float x) { return (lm_v4){x, x, x, x}; }
typedef int32_t lm_v4i __attribute__((vector_size(16)));

/* e^x for 4 lanes (Cephes' expf scheme: x = n ln2 + r with a two-part ln2, a degree-6 polynomial
 * for e^r, then the exponent bits; about 1 ulp). x < -87.33 gives 0 (no subnormals), x > 88 gives
 * e^88 (finite); NaN stays NaN. Every lane is independent, so the scalar lm_expf (the same code on
 * one lane) gives identical values. */
static inline lm_v4 v4_exp(lm_v4 x) {
    const lm_v4 hi = v4_set1(88.0f), lo = v4_set1(-87.3365447504f);
    const lm_v4i under = x < lo; /* lanes to flush to 0 */
    x = (lm_v4)(((lm_v4i)x & ~(x > hi)) | ((lm_v4i)hi & (x > hi))); /* min(x, hi), NaN kept */
    const lm_v4 magic = v4_set1(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const lm_v4 t = x * v4_set1(1.44269504088896341f) + magic;
    const lm_v4 n = t - magic;
    lm_v4 r = x - n * v4_set1(0.693359375f);
    r = r - n * v4_set1(-2.12194440e-4f);
    lm_v4 p = v4_set1(1.9875691500e-4f);
    p = p * r + v4_set1(1.3981999507e-3f);
    p = p * r + v4_set1(8.3334519073e-3f);
    p = p * r + v4_set1(4.1665795894e-2f);
    p = p * r + v4_set1(1.6666665459e-1f);
    p = p * r + v4_set1(5.0000001201e-1f);
    const lm_v4 y = p * (r * r) + r + v4_set1(1.0f);
    /* 2^n: n sits in the low mantissa bits of t; n in [-126, 127] here */
    lm_v4i e = ((lm_v4i)t - (lm_v4i)magic + 127) << 23;
    e = e & ~under;
    const lm_v4 res = y * (lm_v4)e;
    return (lm_v4)((lm_v4i)res & ~under);
}

float lm_expf(float x) {
    const lm_v4 v = v4_exp(v4_set1(x));
    return v[0];
}

void lm_exp_inplace(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) v4_store(x + i, v4_exp(v4_load(x + i)));
    for (; i < n; i++) x[i] = lm_expf(x[i]);
}

/* ---- norms and element-wise ops ---------------------------------------------------------------- */

float lm_rmsnorm_scale(const float *x, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    return 1.0f / sqrtf(mean + eps);
}

void lm_rmsnorm_apply(const float *x, const float *w, float *y, float scale, int64_t i0, int64_t i1) {
    int64_t i = i0;
    const lm_v4 sc = v4_set1(scale);
    for (; i + 4 <= i1; i += 4) v4_store(y + i, (v4_load(x + i) * sc) * v4_load(w + i));
    for (; i < i1; i++) y[i] = (x[i] * scale) * w[i];
}

void lm_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps) {
    lm_rmsnorm_apply(x, w, y, lm_rmsnorm_scale(x, n, eps), 0, n);
}

void lm_silu_mul(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        h[i] = (x / (1.0f + expf(-x))) * u[i];
    }
}

void lm_add_inplace(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) v4_store(y + i, v4_load(y + i) + v4_load(x + i));
    for (; i < n; i++) y[i] += x[i];
}

/* ---- matrix products ---------------------------------------------------------------------------- */

size_t lm_matmul_act_row_size(const lm_weight *w) {
    const lm_type_traits *tr = lm_type_traits_get(w->type);
    assert(tr);
    if (tr->vec_dot_type == LM_TYPE_F32) return 0;
    return lm_row_size(tr->vec_dot_type, w->ne0);
}

void lm_matmul_prepare(const lm_kernels *k, const lm_weight *w, const float *x, int64_t ldx,
                       void *xq, int64_t t0, int64_t t1) {
    const lm_type_traits *tr = lm_type_traits_get(w->type);
    assert(tr);
    const uint32_t vdt = tr->vec_dot_type;
    if (vdt == LM_TYPE_F32) return;
    assert(k->from_float[vdt]);
    const size_t rs = lm_row_size(vdt, w->ne0);
    for (int64_t t = t0; t < t1; t++) k->from_float[vdt](x + t * ldx, (char *)xq + (size_t)t * rs, w->ne0);
}

void lm_matmul_rows(const lm_kernels *k, const lm_weight *w, const void *act, size_t act_stride,
                    int64_t T, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    if (r0 >= r1 || T <= 0) return;
    const char *wd = (const char *)w->data;
    if (T > 1 && k->gemm[w->type]) {
        k->gemm[w->type](w->ne0, wd, w->row_size, act, act_stride, T, y, ldy, r0, r1);
        return;
    }
    if (T == 1 && k->gemv[w->type]) {
        k->gemv[w->type](w->ne0, wd, w->row_size, act, y, r0, r1);
        return;
    }
    const lm_vec_dot_fn dot = k->vec_dot[w->type];
    assert(dot);
    const char *a = (const char *)act;
    for (int64_t r = r0; r < r1; r++) {
        const void *wrow = wd + (size_t)r * w->row_size;
        for (int64_t t = 0; t < T; t++) dot(w->ne0, &y[t * ldy + r], wrow, a + (size_t)t * act_stride);
    }
}

void lm_matmul(const lm_kernels *k, const lm_weight *w, const float *x, int64_t ldx, int64_t T,
               void *xq, float *y, int64_t ldy) {
    const size_t rs = lm_matmul_act_row_size(w);
    if (rs == 0) {
        lm_matmul_rows(k, w, x, (size_t)ldx * sizeof(float), T, y, ldy, 0, w->ne1);
    } else {
        lm_matmul_prepare(k, w, x, ldx, xq, 0, T);
        lm_matmul_rows(k, w, xq, rs, T, y, ldy, 0, w->ne1);
    }
}

/* ---- RoPE --------------------------------------------------------------------------------------- */

void lm_rope_cache(int32_t pos, int32_t n_rot, float freq_base, float freq_scale, float *cs) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int32_t i = 0; i < n_rot; i += 2) {
        const float th = freq_scale * theta;
        cs[i] = cosf(th);
        cs[i + 1] = sinf(th);
        theta *= theta_scale;
    }
}

void lm_rope_apply(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, const float *cs) {
    for (int32_t h = 0; h < n_heads; h++) {
        float *xh = x + (size_t)h * head_dim;
        for (int32_t i = 0; i < n_rot; i += 2) {
            const float c = cs[i], s = cs[i + 1];
            const float x0 = xh[i], x1 = xh[i + 1];
            xh[i] = x0 * c - x1 * s;
            xh[i + 1] = x0 * s + x1 * c;
        }
    }
}

/* ---- attention ---------------------------------------------------------------------------------- */

void lm_attention_head(const float *q, const lm_fp16 *k_base, const lm_fp16 *v_base,
                       size_t kv_stride, const int32_t *cells, int32_t n, int32_t head_dim,
                       float scale, float *scores, lm_fp16 *probs16, float *out) {
    assert(n >= 1 && head_dim <= 1024);
    float q16[1024]; /* [head_dim]: q rounded to f16, as ggml converts it for the f16 dot */
    for (int32_t d = 0; d < head_dim; d++) q16[d] = lm_f16_to_f32(lm_fp32_to_fp16(q[d]));

    float mx = -INFINITY;
    for (int32_t j = 0; j < n; j++) {
        const lm_fp16 *k = k_base + (size_t)cells[j] * kv_stride;
        float s = 0.0f;
        for (int32_t d = 0; d < head_dim; d++) s += q16[d] * lm_f16_to_f32(k[d]);
        s *= scale;
        scores[j] = s;
        if (s > mx) mx = s;
    }
    double sum = 0.0;
    for (int32_t j = 0; j < n; j++) {
        const float e = lm_expf(scores[j] - mx);
        scores[j] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < n; j++) probs16[j] = lm_fp32_to_fp16(scores[j] * inv);

    for (int32_t d = 0; d < head_dim; d++) out[d] = 0.0f;
    for (int32_t j = 0; j < n; j++) {
        const float p = lm_f16_to_f32(probs16[j]);
        if (p == 0.0f) continue;
        const lm_fp16 *v = v_base + (size_t)cells[j] * kv_stride;
        for (int32_t d = 0; d < head_dim; d++) out[d] += p * lm_f16_to_f32(v[d]);
    }
}

#define ROUND_UP(x, m) (((x) + (m) - 1) / (m) * (m))

/* Bytes of each scratch piece, each rounded up to 64 so that every piece stays aligned. */
static void attn_sizes(int32_t rows_max, int32_t head_dim, int32_t n_ctx, size_t sz[6], int32_t *ld) {
    const size_t R = (size_t)rows_max, HD = (size_t)head_dim, N = (size_t)n_ctx;
    *ld = ROUND_UP(n_ctx, 16);
    const size_t L = (size_t)*ld;
    sz[0] = R * HD * sizeof(lm_fp16);
    sz[1] = R * L * sizeof(float);
    sz[2] = R * L * sizeof(lm_fp16);
    sz[3] = R * HD * sizeof(float);
    sz[4] = N * HD * sizeof(lm_fp16);
    sz[5] = HD * L * sizeof(lm_fp16);
    for (int i = 0; i < 6; i++) sz[i] = ROUND_UP(sz[i], 64);
}

size_t lm_attn_scratch_bytes(int32_t rows_max, int32_t head_dim, int32_t n_ctx) {
    size_t sz[6];
    int32_t ld;
    attn_sizes(rows_max, head_dim, n_ctx, sz, &ld);
    return sz[0] + sz[1] + sz[2] + sz[3] + sz[4] + sz[5];
}

void lm_attn_scratch_init(lm_attn_scratch *sc, void *buf, int32_t rows_max, int32_t head_dim,
                          int32_t n_ctx) {
    size_t sz[6];
    attn_sizes(rows_max, head_dim, n_ctx, sz, &sc->ld);
    char *p = buf;
    sc->q16 = (lm_fp16 *)(void *)p;
    p += sz[0];
    sc->s = (float *)(void *)p;
    p += sz[1];
    sc->p16 = (lm_fp16 *)(void *)p;
    p += sz[2];
    sc->o = (float *)(void *)p;
    p += sz[3];
    sc->kg = (lm_fp16 *)(void *)p;
    p += sz[4];
    sc->vg = (lm_fp16 *)(void *)p;
}

void lm_softmax_scaled(float *x, int32_t n, float scale) {
    /* scale, and the max (exact in any order) */
    const lm_v4 sc = v4_set1(scale);
    lm_v4 m4 = v4_set1(-INFINITY);
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const lm_v4 v = v4_load(x + j) * sc;
        v4_store(x + j, v);
        m4 = (lm_v4)(((lm_v4i)v & (v > m4)) | ((lm_v4i)m4 & ~(v > m4)));
    }
    float mx = -INFINITY;
    for (int k = 0; k < 4; k++) mx = m4[k] > mx ? m4[k] : mx;
    for (; j < n; j++) {
        x[j] *= scale;
        mx = x[j] > mx ? x[j] : mx;
    }
    /* e^(x - max), summed in double: lanes j % 4 in four sums, combined at the end */
    const lm_v4 mv = v4_set1(mx);
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    for (j = 0; j + 4 <= n; j += 4) {
        const lm_v4 e = v4_exp(v4_load(x + j) - mv);
        v4_store(x + j, e);
        for (int k = 0; k < 4; k++) s[k] += (double)e[k];
    }
    for (; j < n; j++) {
        x[j] = lm_expf(x[j] - mx);
        s[j % 4] += (double)x[j];
    }
    const float inv = (float)(1.0 / ((s[0] + s[1]) + (s[2] + s[3])));
    const lm_v4 iv = v4_set1(inv);
    for (j = 0; j + 4 <= n; j += 4) v4_store(x + j, v4_load(x + j) * iv);
    for (; j < n; j++) x[j] *= inv;
}

/* y[t * ldy + r] = dot(W row r, X row t) for F16 rows of K elements: the level's gemm, or vec_dot
 * loops when it has none. */
static void f16_mm(const lm_kernels *k, int64_t K, const lm_fp16 *W, size_t w_row_size,
                   const lm_fp16 *X, size_t x_row_size, int64_t T, float *y, int64_t ldy, int64_t r0,
                   int64_t r1) {
    if (k->gemm[LM_TYPE_F16]) {
        k->gemm[LM_TYPE_F16](K, W, w_row_size, X, x_row_size, T, y, ldy, r0, r1);
        return;
    }
    const lm_vec_dot_fn dot = k->vec_dot[LM_TYPE_F16];
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < T; t++)
            dot(K, &y[t * ldy + r], (const char *)W + (size_t)r * w_row_size,
                (const char *)X + (size_t)t * x_row_size);
}

void lm_attention_block(const lm_kernels *k, const float *const *q, float *const *out,
                        const int32_t *n_att, int32_t n_rows, const lm_fp16 *k16,
                        const lm_fp16 *vt16, size_t v_stride, const int32_t *cells,
                        int cells_contiguous, int32_t head_dim, float scale, lm_attn_scratch *sc) {
    const int32_t HD = head_dim, ld = sc->ld;
    int32_t n_max = 0;
    for (int32_t i = 0; i < n_rows; i++) n_max = n_att[i] > n_max ? n_att[i] : n_max;

    for (int32_t i = 0; i < n_rows; i++) k->fp32_to_fp16(q[i], sc->q16 + (size_t)i * HD, HD);

    /* keys of the cells: in place when contiguous, else gathered */
    const lm_fp16 *kb = k16 + (size_t)cells[0] * HD;
    if (!cells_contiguous) {
        for (int32_t j = 0; j < n_max; j++)
            memcpy(sc->kg + (size_t)j * HD, k16 + (size_t)cells[j] * HD, sizeof(lm_fp16) * (size_t)HD);
        kb = sc->kg;
    }
    /* scores[i][j] = K row j . q16 row i */
    f16_mm(k, HD, kb, sizeof(lm_fp16) * (size_t)HD, sc->q16, sizeof(lm_fp16) * (size_t)HD, n_rows,
           sc->s, ld, 0, n_max);

    /* softmax of each row over its own cells; probabilities rounded to f16, 0 beyond */
    for (int32_t i = 0; i < n_rows; i++) {
        float *si = sc->s + (size_t)i * ld;
        lm_fp16 *pi = sc->p16 + (size_t)i * ld;
        const int32_t n = n_att[i];
        lm_softmax_scaled(si, n, scale);
        k->fp32_to_fp16(si, pi, n);
        if (n < n_max) memset(pi + n, 0, sizeof(lm_fp16) * (size_t)(n_max - n));
    }

    /* values: V^T rows (one per dim) over the cells, in place or gathered */
    const lm_fp16 *vb = vt16 + cells[0];
    size_t vrs = sizeof(lm_fp16) * v_stride;
    if (!cells_contiguous) {
        for (int32_t d = 0; d < HD; d++) {
            const lm_fp16 *src = vt16 + (size_t)d * v_stride;
            lm_fp16 *dst = sc->vg + (size_t)d * ld;
            for (int32_t j = 0; j < n_max; j++) dst[j] = src[cells[j]];
        }
        vb = sc->vg;
        vrs = sizeof(lm_fp16) * (size_t)ld;
    }
    /* out[i][d] = V^T row d . p16 row i */
    f16_mm(k, n_max, vb, vrs, sc->p16, sizeof(lm_fp16) * (size_t)ld, n_rows, sc->o, HD, 0, HD);
    for (int32_t i = 0; i < n_rows; i++) memcpy(out[i], sc->o + (size_t)i * HD, sizeof(float) * (size_t)HD);
}
