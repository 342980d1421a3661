/*
 * Math kernels of the forward pass (scalar reference versions). Every function works on a range of
 * rows or tokens so that a thread pool can split the work later without changing the contracts.
 *
 * Numerics follow llama.cpp's CPU backend (see ../shared/fixtures/README.md "Numerics"):
 *  - rmsnorm: sum of squares (each square in float) accumulated in double, mean = sum / n,
 *    scale = 1 / sqrtf(mean + eps), y = (x * scale) * w;
 *  - matmul: the activation row is converted once to the weight's vec_dot_type, then every output
 *    is traits->vec_dot(weight row, converted activation row);
 *  - RoPE "normal" mode: adjacent pairs (x[2i], x[2i+1]) for i < n_rot / 2 are rotated by
 *    theta_i = pos * freq_scale * base^(-2i / n_rot), with the angle built by repeated float
 *    multiplication as ggml does;
 *  - attention: q rounded to f16, K and V f16, score = dot * 1/sqrt(head_dim), softmax with expf and
 *    a double sum, probabilities rounded to f16 before the weighted sum of V.
 */
#ifndef LM_OPS_H
#define LM_OPS_H
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "quant.h"

/* Builds the fp16 -> fp32 lookup table used by lm_f16_to_f32 (thread-safe, idempotent). Must be
 * called once before any other function of this file; llamita_context_new does it. */
void lm_ops_init(void);

extern float lm_f16_table[65536]; /* fp16 bits -> float, filled by lm_ops_init */
static inline float lm_f16_to_f32(lm_fp16 h) { return lm_f16_table[h]; }

/* y[n] = (x[n] * 1/sqrt(mean(x^2) + eps)) * w[n]. x and y may alias. */
void lm_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);

/* Bytes needed for one activation row of k elements converted for weight w (0 for F32 weights,
 * whose activations are used as they are). */
size_t lm_matmul_act_row_size(const lm_weight *w);

/* Converts activations x[T][w->ne0] (row stride ldx floats) to w's vec_dot_type:
 * xq[T][lm_matmul_act_row_size(w)] (rows packed). For F32 weights nothing is done.
 * Rows [t0, t1) only, so threads may split the rows. */
void lm_matmul_prepare(const lm_weight *w, const float *x, int64_t ldx, void *xq, int64_t t0,
                       int64_t t1);

/* y[t][r] (row stride ldy floats) = dot(weight row r, activation row t) for r in [r0, r1),
 * t in [0, T). act is xq from lm_matmul_prepare, or, for F32 weights, the F32 activations
 * x[T][ldx] themselves (act_stride = bytes between activation rows). Rows-outer loop: each weight
 * row is read once for all T tokens. */
void lm_matmul_rows(const lm_weight *w, const void *act, size_t act_stride, int64_t T, float *y,
                    int64_t ldy, int64_t r0, int64_t r1);

/* Convenience: y[T][w->ne1] = x[T][w->ne0] @ W^T using the scratch xq (>= T * act row size bytes).
 * x has row stride ldx floats, y row stride ldy floats. */
void lm_matmul(const lm_weight *w, const float *x, int64_t ldx, int64_t T, void *xq, float *y,
               int64_t ldy);

/* RoPE table for one position: cs[n_rot] = {cos theta_0, sin theta_0, cos theta_1, ...}. */
void lm_rope_cache(int32_t pos, int32_t n_rot, float freq_base, float freq_scale, float *cs);
/* Rotates the first n_rot dims of each of the n_heads heads of x[n_heads][head_dim] in place with
 * the table cs[n_rot] from lm_rope_cache. Dims >= n_rot are left unchanged. */
void lm_rope_apply(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, const float *cs);

/* One attention head for one query:
 *   q[head_dim]            the query (float; rounded to f16 inside)
 *   k_base, v_base         cache rows: cell c's key for this kv head is at k_base + c * kv_stride
 *                          (lm_fp16 elements), value likewise at v_base + c * kv_stride
 *   cells[n]               the cache cells to attend to, in summation order (positions increasing)
 *   scores[n], probs16[n]  scratch
 *   out[head_dim]          the result sum_j p_j v_j
 * n >= 1. */
void lm_attention_head(const float *q, const lm_fp16 *k_base, const lm_fp16 *v_base,
                       size_t kv_stride, const int32_t *cells, int32_t n, int32_t head_dim,
                       float scale, float *scores, lm_fp16 *probs16, float *out);

/* h[n] = silu(g[n]) * u[n], silu(x) = x / (1 + expf(-x)). h may alias g or u. */
void lm_silu_mul(const float *g, const float *u, float *h, int64_t n);

/* y[n] += x[n] */
void lm_add_inplace(float *y, const float *x, int64_t n);
#endif
