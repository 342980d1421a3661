/* Scalar math kernels of the forward pass. Contracts and numerics: ops.h. */
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

void lm_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

size_t lm_matmul_act_row_size(const lm_weight *w) {
    const lm_type_traits *tr = lm_type_traits_get(w->type);
    assert(tr);
    if (tr->vec_dot_type == LM_TYPE_F32) return 0;
    return lm_row_size(tr->vec_dot_type, w->ne0);
}

void lm_matmul_prepare(const lm_weight *w, const float *x, int64_t ldx, void *xq, int64_t t0,
                       int64_t t1) {
    const lm_type_traits *tr = lm_type_traits_get(w->type);
    assert(tr);
    if (tr->vec_dot_type == LM_TYPE_F32) return;
    const lm_type_traits *vt = lm_type_traits_get(tr->vec_dot_type);
    assert(vt && vt->from_float);
    const size_t rs = lm_row_size(tr->vec_dot_type, w->ne0);
    for (int64_t t = t0; t < t1; t++) vt->from_float(x + t * ldx, (char *)xq + (size_t)t * rs, w->ne0);
}

void lm_matmul_rows(const lm_weight *w, const void *act, size_t act_stride, int64_t T, float *y,
                    int64_t ldy, int64_t r0, int64_t r1) {
    const lm_type_traits *tr = lm_type_traits_get(w->type);
    assert(tr && tr->vec_dot);
    const lm_vec_dot_fn dot = tr->vec_dot;
    const char *wd = (const char *)w->data;
    const char *a = (const char *)act;
    for (int64_t r = r0; r < r1; r++) {
        const void *wrow = wd + (size_t)r * w->row_size;
        for (int64_t t = 0; t < T; t++) dot(w->ne0, &y[t * ldy + r], wrow, a + (size_t)t * act_stride);
    }
}

void lm_matmul(const lm_weight *w, const float *x, int64_t ldx, int64_t T, void *xq, float *y,
               int64_t ldy) {
    const size_t rs = lm_matmul_act_row_size(w);
    if (rs == 0) {
        lm_matmul_rows(w, x, (size_t)ldx * sizeof(float), T, y, ldy, 0, w->ne1);
    } else {
        lm_matmul_prepare(w, x, ldx, xq, 0, T);
        lm_matmul_rows(w, xq, rs, T, y, ldy, 0, w->ne1);
    }
}

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
        const float e = expf(scores[j] - mx);
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

void lm_silu_mul(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        h[i] = (x / (1.0f + expf(-x))) * u[i];
    }
}

void lm_add_inplace(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
