/*
 * Math kernels of the forward pass. Every function works on a range of rows, tokens or elements so
 * that the thread pool (model.c) can split the work without changing any result: a value is always
 * computed by the same code in the same order, whichever thread or range it falls in.
 *
 * Numerics follow llama.cpp's CPU backend (see ../shared/fixtures/README.md "Numerics"):
 *  - rmsnorm: sum of squares (each square in float) accumulated in double, mean = sum / n,
 *    scale = 1 / sqrtf(mean + eps), y = (x * scale) * w;
 *  - matmul: the activation row is converted once to the weight's vec_dot_type (the kernel table's
 *    from_float), then every output is the kernel's vec_dot(weight row, converted activation row),
 *    or its gemm over many tokens at once (equal up to float summation order);
 *  - RoPE "normal" mode: adjacent pairs (x[2i], x[2i+1]) for i < n_rot / 2 are rotated by
 *    theta_i = pos * freq_scale * base^(-2i / n_rot), with the angle built by repeated float
 *    multiplication as ggml does;
 *  - attention: q rounded to f16, K and V f16, score = dot(q16, k) * 1/sqrt(head_dim), softmax with
 *    lm_expf and a double sum, probabilities rounded to f16, out = sum over cells of p * v; the dot
 *    products run as F16 matrix products (lm_attention_block), the plain-loop lm_attention_head
 *    is the reference the tests compare with.
 */
#ifndef LM_OPS_H
#define LM_OPS_H
#include <stddef.h>
#include <stdint.h>

#include "cpu/cpu.h"
#include "model.h"
#include "quant.h"

/* Builds the fp16 -> fp32 lookup table used by lm_f16_to_f32 (thread-safe, idempotent). Must be
 * called once before any other function of this file; llamita_context_new does it. */
void lm_ops_init(void);

extern float lm_f16_table[65536]; /* fp16 bits -> float, filled by lm_ops_init */
static inline float lm_f16_to_f32(lm_fp16 h) { return lm_f16_table[h]; }

/* ---- norms and element-wise ops ---------------------------------------------------------------- */

/* 1 / sqrt(mean(x[0..n)^2) + eps), the sum of squares (each square in float) accumulated in double
 * in index order. */
float lm_rmsnorm_scale(const float *x, int64_t n, float eps);
/* y[i] = (x[i] * scale) * w[i] for i in [i0, i1). x and y may alias. */
void lm_rmsnorm_apply(const float *x, const float *w, float *y, float scale, int64_t i0, int64_t i1);
/* y[n] = (x[n] * lm_rmsnorm_scale(x, n, eps)) * w[n]. x and y may alias. */
void lm_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);

/* e^x as the attention softmax computes it: Cephes' single-precision scheme, about 1 ulp from the
 * exact value for x in [-87.3, 88] (0 below, e^88 above; NaN stays NaN), vectorized in
 * lm_exp_inplace with lane results identical to lm_expf. (llama.cpp's softmax also uses its own SIMD
 * exp; the probabilities are rounded to f16 right after.) silu keeps libm's expf: its output feeds
 * the quantized down projection directly, and the fixture tests measured a larger drift from
 * llama.cpp with the approximation there (Q8_0 mean |diff| 1.7e-3 vs 5.8e-5). */
float lm_expf(float x);
void lm_exp_inplace(float *x, int64_t n);

/* x[n] = softmax(x * scale): e^(x_j * scale - max) / sum, the sum in double (four interleaved
 * partial sums, j % 4, added at the end); e^ is lm_expf. n >= 1. */
void lm_softmax_scaled(float *x, int32_t n, float scale);

/* h[n] = silu(g[n]) * u[n], silu(x) = x / (1 + expf(-x)) with libm's expf. h may alias g or u. */
void lm_silu_mul(const float *g, const float *u, float *h, int64_t n);

/* y[n] += x[n] */
void lm_add_inplace(float *y, const float *x, int64_t n);

/* ---- matrix products ---------------------------------------------------------------------------- */

/* Bytes of one activation row of w->ne0 elements converted to w's vec_dot_type (0 for F32 weights,
 * whose activations are used as they are). */
size_t lm_matmul_act_row_size(const lm_weight *w);

/* Converts activations x[T][w->ne0] (row stride ldx floats) to w's vec_dot_type with k->from_float:
 * xq[T][lm_matmul_act_row_size(w)] (rows packed). For F32 weights nothing is done.
 * Rows [t0, t1) only, so threads may split the rows. */
void lm_matmul_prepare(const lm_kernels *k, const lm_weight *w, const float *x, int64_t ldx,
                       void *xq, int64_t t0, int64_t t1);

/* y[t * ldy + r] = dot(weight row r, activation row t) for r in [r0, r1), t in [0, T).
 * act is xq from lm_matmul_prepare (act_stride = its row size), or, for F32 weights, the F32
 * activations themselves (act_stride = bytes between rows). T > 1 uses k->gemm[w->type] when the
 * table has one, else vec_dot with the rows outer (each weight row is read once for all T tokens). */
void lm_matmul_rows(const lm_kernels *k, const lm_weight *w, const void *act, size_t act_stride,
                    int64_t T, float *y, int64_t ldy, int64_t r0, int64_t r1);

/* Convenience (one thread): y[T][w->ne1] (row stride ldy) = x[T][w->ne0] (row stride ldx) @ W^T,
 * using the scratch xq (>= T * act row size bytes). */
void lm_matmul(const lm_kernels *k, const lm_weight *w, const float *x, int64_t ldx, int64_t T,
               void *xq, float *y, int64_t ldy);

/* ---- RoPE --------------------------------------------------------------------------------------- */

/* RoPE table for one position: cs[n_rot] = {cos theta_0, sin theta_0, cos theta_1, ...}. */
void lm_rope_cache(int32_t pos, int32_t n_rot, float freq_base, float freq_scale, float *cs);
/* Rotates the first n_rot dims of each of the n_heads heads of x[n_heads][head_dim] in place with
 * the table cs[n_rot] from lm_rope_cache. Dims >= n_rot are left unchanged. */
void lm_rope_apply(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, const float *cs);

/* ---- attention ---------------------------------------------------------------------------------- */

/* Reference: one attention head for one query (plain loops, used by the tests as the oracle).
 *   q[head_dim]            the query (float; rounded to f16 inside)
 *   k_base, v_base         cache rows: cell c's key for this kv head is at k_base + c * kv_stride
 *                          (lm_fp16 elements), value likewise at v_base + c * kv_stride
 *   cells[n]               the cache cells to attend to, in summation order (positions increasing)
 *   scores[n], probs16[n]  scratch
 *   out[head_dim]          the result sum_j p_j v_j
 * n >= 1, head_dim <= 1024. */
void lm_attention_head(const float *q, const lm_fp16 *k_base, const lm_fp16 *v_base,
                       size_t kv_stride, const int32_t *cells, int32_t n, int32_t head_dim,
                       float scale, float *scores, lm_fp16 *probs16, float *out);

/* Per-thread scratch of lm_attention_block; lm_attn_scratch_bytes sizes it, lm_attn_scratch_init
 * carves the pointers out of one buffer (64-byte aligned pieces). */
typedef struct lm_attn_scratch {
    lm_fp16 *q16; /* [rows_max][head_dim]     queries rounded to f16 */
    float *s;     /* [rows_max][ld]           scores, then probabilities (ld = n_ctx rounded up to 16) */
    lm_fp16 *p16; /* [rows_max][ld]           probabilities rounded to f16, 0 beyond a row's cells */
    float *o;     /* [rows_max][head_dim]     output rows */
    lm_fp16 *kg;  /* [n_ctx][head_dim]        keys gathered from scattered cells */
    lm_fp16 *vg;  /* [head_dim][ld]           values (transposed) gathered likewise */
    int32_t ld;
} lm_attn_scratch;

size_t lm_attn_scratch_bytes(int32_t rows_max, int32_t head_dim, int32_t n_ctx);
void lm_attn_scratch_init(lm_attn_scratch *sc, void *buf, int32_t rows_max, int32_t head_dim,
                          int32_t n_ctx);

/* Attention of a group of query rows sharing one KV head, against the cells of one sequence, as
 * llama.cpp computes it without flash attention: scores = K (f16) x q16 (f16), softmax,
 * out = V^T (f16) x p16 (f16), both products with the kernel table's F16 gemm (vec_dot when the
 * level has none).
 *   q[i]          query row i (float[head_dim], RoPE already applied); i in [0, n_rows)
 *   out[i]        result row i (float[head_dim])
 *   n_att[i]      row i attends to cells[0 .. n_att[i]) (1 <= n_att[i])
 *   k16           this KV head's keys: key row of cache cell c at k16 + c * head_dim
 *   vt16          this KV head's values, transposed: element d of cell c at vt16[d * v_stride + c]
 *   cells[n]      cache cells in position order (n >= max n_att); cells_contiguous: cells[j] ==
 *                 cells[0] + j, else they are gathered first (same values, same kernels, so the
 *                 same results)
 *   sc            scratch sized for >= n_rows rows, head_dim, and >= max n_att cells
 * A row's result depends only on its own query and cells (not on the other rows, n_rows, or
 * where its cells lie), given a gemm whose per-element result does not depend on T or the row
 * range (true of the scalar fallback; required of SIMD gemms). Differs from lm_attention_head only
 * by float summation order. */
void lm_attention_block(const lm_kernels *k, const float *const *q, float *const *out,
                        const int32_t *n_att, int32_t n_rows, const lm_fp16 *k16,
                        const lm_fp16 *vt16, size_t v_stride, const int32_t *cells,
                        int cells_contiguous, int32_t head_dim, float scale, lm_attn_scratch *sc);
#endif
