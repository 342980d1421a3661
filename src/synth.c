/*
 * Synthetic Llama models (see synth.h): random weights, quantized with quant.c's from_float, written
 * with the GGUF writer.
 *
 * Randomness: every tensor is cut into chunks of SYNTH_CHUNK_ROWS rows and each chunk draws from its
 * own xoshiro256** stream seeded from (seed, tensor index, chunk index). Chunks are generated and
 * quantized by a few threads; the file is identical whatever the thread count. Normal variates come
 * from the polar form of the Box-Muller transform (Marsaglia), in double precision.
 *
 * Memory: all quantized tensors stay in memory until the file is written (the writer references the
 * data); F32 scratch is per thread and per chunk only.
 */
#include "synth.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"

#define SYNTH_CHUNK_ROWS 16
#define SYNTH_MAX_THREADS 16

lm_synth_params lm_synth_default_params(void) {
    lm_synth_params p;
    memset(&p, 0, sizeof p);
    p.n_vocab = 32000;
    p.n_embd = 2048;
    p.n_layer = 22;
    p.n_head = 32;
    p.n_head_kv = 4;
    p.n_ff = 5632;
    p.n_ctx = 2048;
    p.n_rot = 0;
    p.rope_base = 10000.0f;
    p.rms_eps = 1e-5f;
    p.rope_scale = 1.0f;
    p.ftype = "Q8_0";
    p.tied_output = false;
    p.seed = 1234;
    p.vocab_from = NULL;
    p.name = NULL;
    return p;
}

/* ---- PRNG: splitmix64 for seeding, xoshiro256** for the streams ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s[4];
} rng;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    const uint64_t res = rotl(r->s[1] * 5, 7) * 9;
    const uint64_t t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = rotl(r->s[3], 45);
    return res;
}

/* The stream of chunk `chunk` of tensor `tensor`. */
static void rng_seed(rng *r, uint64_t seed, uint64_t tensor, uint64_t chunk) {
    uint64_t sm = seed;
    uint64_t a = splitmix64(&sm);
    sm = a ^ (tensor * 0xD1B54A32D192ED03ULL);
    uint64_t b = splitmix64(&sm);
    sm = b ^ (chunk * 0xABC98388FB8FAC03ULL);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&sm);
}

/* uniform double in [0, 1) with 53 random bits */
static inline double rng_unif(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Fills x[n] with N(0, std^2) (polar Box-Muller, both variates of each pair used). */
static void fill_normal(rng *r, float *x, int64_t n, double std) {
    int64_t i = 0;
    while (i < n) {
        double u, v, s;
        do {
            u = 2.0 * rng_unif(r) - 1.0;
            v = 2.0 * rng_unif(r) - 1.0;
            s = u * u + v * v;
        } while (s >= 1.0 || s == 0.0);
        const double f = sqrt(-2.0 * log(s) / s);
        x[i++] = (float)(u * f * std);
        if (i < n) x[i++] = (float)(v * f * std);
    }
}

/* Fills x[n] with U(lo, hi). */
static void fill_uniform(rng *r, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * rng_unif(r));
}

/* ---- tensor type choice (llama-quantize's main rules for Llama) ---- */

enum tkind { K_EMBD, K_NORM, K_Q, K_K, K_V, K_O, K_GATE, K_UP, K_DOWN, K_OUTPUT };

static bool is_kquant(uint32_t t) {
    return t == LM_TYPE_Q2_K || t == LM_TYPE_Q3_K || t == LM_TYPE_Q4_K || t == LM_TYPE_Q5_K ||
           t == LM_TYPE_Q6_K;
}

/* The base tensor type of an ftype (its LLAMA_FTYPE number). */
static uint32_t ftype_base_type(int ftype) {
    switch (ftype) {
    case 0: return LM_TYPE_F32;
    case 1: return LM_TYPE_F16;
    case 32: return LM_TYPE_BF16;
    case 2: return LM_TYPE_Q4_0;
    case 3: return LM_TYPE_Q4_1;
    case 8: return LM_TYPE_Q5_0;
    case 9: return LM_TYPE_Q5_1;
    case 7: return LM_TYPE_Q8_0;
    case 10: return LM_TYPE_Q2_K;
    case 11: case 12: case 13: return LM_TYPE_Q3_K;
    case 14: case 15: return LM_TYPE_Q4_K;
    case 16: case 17: return LM_TYPE_Q5_K;
    case 18: return LM_TYPE_Q6_K;
    default: return LM_TYPE_F32;
    }
}

/* llama-quantize's use_more_bits(): the first and last eighth of the layers and every third one
 * in between. */
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* Type of a matrix of kind k in layer il (of n_layer) with rows of ne0 elements, for ftype f.
 * Follows llama-quantize (no imatrix, not Falcon, not 70B/MoE): output (and token_embd when tied)
 * Q6_K except for Q8_0 (Q8_0 when rows are not a multiple of 256); Q2_K: attn_v Q4_K if GQA >= 4
 * else Q3_K, attn_output and ffn_down Q3_K; Q3_K_M: attn_v Q5_K for the first two layers else Q4_K,
 * attn_output Q4_K, ffn_down Q5_K for the first 1/16 of layers else Q4_K; Q3_K_L: attn_v, attn_output,
 * ffn_down Q5_K; Q4_K_S: attn_v Q5_K for layers < 4, ffn_down Q5_K for the first 1/8; Q4_K_M/Q5_K_M:
 * attn_v and ffn_down Q6_K where use_more_bits. Then a K-quant on rows that are not a multiple of 256
 * falls back to a 32-block type (llama.cpp would use IQ4_NL for Q2_K/Q3_K, which llamita does not
 * support: Q4_0 instead; Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). */
static uint32_t choose_type(int f, enum tkind k, int il, int n_layer, int n_gqa, int64_t ne0,
                            bool tied) {
    const uint32_t base = ftype_base_type(f);
    if (k == K_NORM) return LM_TYPE_F32;
    if (base == LM_TYPE_F32 || base == LM_TYPE_F16 || base == LM_TYPE_BF16) return base;
    uint32_t t = base;
    if (k == K_OUTPUT || (k == K_EMBD && tied)) {
        if (ne0 % LM_QK_K != 0) t = LM_TYPE_Q8_0;
        else if (base != LM_TYPE_Q8_0) t = LM_TYPE_Q6_K;
    } else if (k == K_V) {
        if (f == 10) t = n_gqa >= 4 ? LM_TYPE_Q4_K : LM_TYPE_Q3_K;
        else if (f == 12) t = il < 2 ? LM_TYPE_Q5_K : LM_TYPE_Q4_K;
        else if (f == 13) t = LM_TYPE_Q5_K;
        else if ((f == 15 || f == 17) && use_more_bits(il, n_layer)) t = LM_TYPE_Q6_K;
        else if (f == 14 && il < 4) t = LM_TYPE_Q5_K;
    } else if (k == K_DOWN) {
        if (f == 10) t = LM_TYPE_Q3_K;
        else if (f == 12) t = il < n_layer / 16 ? LM_TYPE_Q5_K : LM_TYPE_Q4_K;
        else if (f == 13) t = LM_TYPE_Q5_K;
        else if ((f == 15 || f == 17) && use_more_bits(il, n_layer)) t = LM_TYPE_Q6_K;
        else if (f == 14 && il < n_layer / 8) t = LM_TYPE_Q5_K;
    } else if (k == K_O) {
        if (f == 10) t = LM_TYPE_Q3_K;
        else if (f == 12) t = LM_TYPE_Q4_K;
        else if (f == 13) t = LM_TYPE_Q5_K;
    }
    if (is_kquant(t) && ne0 % LM_QK_K != 0) {
        switch (t) {
        case LM_TYPE_Q2_K: case LM_TYPE_Q3_K: t = LM_TYPE_Q4_0; break;
        case LM_TYPE_Q4_K: t = LM_TYPE_Q5_0; break;
        case LM_TYPE_Q5_K: t = LM_TYPE_Q5_1; break;
        default: t = LM_TYPE_Q8_0; break;
        }
    }
    return t;
}

/* ---- tensor generation ---- */

typedef struct stensor {
    char name[64];
    enum tkind kind;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[2];
    void *data; /* [ne1][row_size] bytes, owned */
} stensor;

typedef struct gen_job {
    stensor *ts;
    int n_tensors;
    uint64_t seed;
    atomic_llong next;  /* next global chunk index to take */
    int64_t *chunk_off; /* [n_tensors + 1] first global chunk of each tensor */
    int64_t max_ne0;    /* longest row */
    atomic_int failed;  /* a worker could not allocate its scratch */
} gen_job;

/* Generates and quantizes global chunks until none are left. */
static void *gen_worker(void *arg) {
    gen_job *job = arg;
    /* [SYNTH_CHUNK_ROWS][largest ne0] */
    float *tmp = malloc((size_t)job->max_ne0 * SYNTH_CHUNK_ROWS * sizeof(float));
    if (!tmp) {
        atomic_store(&job->failed, 1);
        return NULL;
    }
    const int64_t total = job->chunk_off[job->n_tensors];
    int ti = 0;
    for (;;) {
        const int64_t g = atomic_fetch_add(&job->next, 1);
        if (g >= total) break;
        while (job->chunk_off[ti + 1] <= g) ti++;
        while (job->chunk_off[ti] > g) ti--;
        stensor *t = &job->ts[ti];
        const int64_t chunk = g - job->chunk_off[ti];
        const int64_t r0 = chunk * SYNTH_CHUNK_ROWS, r1 = LM_MIN(r0 + SYNTH_CHUNK_ROWS, t->ne[1]);
        const int64_t n = (r1 - r0) * t->ne[0];
        rng r;
        rng_seed(&r, job->seed, (uint64_t)ti, (uint64_t)chunk);
        if (t->kind == K_NORM) fill_uniform(&r, tmp, n, 0.5, 1.5);
        else fill_normal(&r, tmp, n, 0.02);
        const size_t rs = lm_row_size(t->type, t->ne[0]);
        char *dst = (char *)t->data + (size_t)r0 * rs;
        if (t->type == LM_TYPE_F32) memcpy(dst, tmp, (size_t)n * sizeof(float));
        else lm_type_traits_get(t->type)->from_float(tmp, dst, n);
    }
    free(tmp);
    return NULL;
}

/* ---- vocabulary ---- */

/* The synthetic byte vocabulary: <unk> <s> </s>, <0x00>..<0xFF>, then "▁" and filler pieces
 * "▁a" "a" "▁b" "b" ... "▁aa" "aa" ... (distinct), scores decreasing. Keys are set on w. */
static bool synth_vocab(lm_gguf_writer *w, int32_t n_vocab, char *err, size_t err_size) {
    char **toks = calloc((size_t)n_vocab, sizeof *toks);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    bool ok = toks && scores && types;
    for (int32_t i = 0; ok && i < n_vocab; i++) {
        char buf[64];
        if (i == 0) { snprintf(buf, sizeof buf, "<unk>"); types[i] = 2; }
        else if (i == 1) { snprintf(buf, sizeof buf, "<s>"); types[i] = 3; }
        else if (i == 2) { snprintf(buf, sizeof buf, "</s>"); types[i] = 3; }
        else if (i < 259) { snprintf(buf, sizeof buf, "<0x%02X>", i - 3); types[i] = 6; }
        else {
            const int32_t j = i - 259; /* filler index */
            types[i] = 1;
            scores[i] = -(float)j;
            if (j == 0) {
                snprintf(buf, sizeof buf, "\xe2\x96\x81");
            } else {
                /* k >= 1 in bijective base 26: 1 = a, 26 = z, 27 = aa, ... */
                int64_t k = (j + 1) / 2;
                char letters[16];
                int nl = 0;
                while (k > 0 && nl < 15) {
                    k--;
                    letters[nl++] = (char)('a' + k % 26);
                    k /= 26;
                }
                int len = 0;
                if (j % 2 == 1) len = snprintf(buf, sizeof buf, "\xe2\x96\x81");
                for (int q = nl - 1; q >= 0; q--) buf[len++] = letters[q];
                buf[len] = 0;
            }
        }
        toks[i] = strdup(buf);
        if (!toks[i]) ok = false;
    }
    if (ok) {
        lm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
        lm_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n_vocab);
        lm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LM_GGUF_FLOAT32, scores, (uint64_t)n_vocab);
        lm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, types, (uint64_t)n_vocab);
        lm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
        lm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
        lm_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
        lm_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
        lm_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    } else {
        lm_seterr(err, err_size, "synth: out of memory for the vocabulary");
    }
    if (toks)
        for (int32_t i = 0; i < n_vocab; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    return ok;
}

/* ---- main entry ---- */

/* Checks the shape parameters; returns false with a message naming the first bad one. */
static bool check_params(const lm_synth_params *p, char *err, size_t err_size) {
    struct {
        const char *name;
        int32_t v, max;
    } ints[] = {
        {"n_embd", p->n_embd, 1 << 16}, {"n_layer", p->n_layer, 1024}, {"n_head", p->n_head, 1024},
        {"n_head_kv", p->n_head_kv, 1024}, {"n_ff", p->n_ff, 1 << 20}, {"n_ctx", p->n_ctx, 1 << 24},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (ints[i].v < 1 || ints[i].v > ints[i].max) {
            lm_seterr(err, err_size, "synth: %s = %d is out of range [1, %d]", ints[i].name,
                      ints[i].v, ints[i].max);
            return false;
        }
    }
    if (!p->vocab_from && (p->n_vocab < 259 || p->n_vocab > (1 << 20))) {
        lm_seterr(err, err_size,
                  "synth: n_vocab = %d is out of range [259, %d] (3 special + 256 byte tokens)",
                  p->n_vocab, 1 << 20);
        return false;
    }
    if (p->n_embd % p->n_head != 0) {
        lm_seterr(err, err_size, "synth: n_head = %d does not divide n_embd = %d", p->n_head, p->n_embd);
        return false;
    }
    if (p->n_head % p->n_head_kv != 0) {
        lm_seterr(err, err_size, "synth: n_head_kv = %d does not divide n_head = %d", p->n_head_kv,
                  p->n_head);
        return false;
    }
    const int32_t hd = p->n_embd / p->n_head;
    if (hd > 1024) {
        lm_seterr(err, err_size, "synth: head size %d is larger than 1024", hd);
        return false;
    }
    if (p->n_rot < 0 || p->n_rot > hd || p->n_rot % 2 != 0 || (p->n_rot == 0 && hd % 2 != 0)) {
        lm_seterr(err, err_size, "synth: n_rot = %d must be even and <= the head size %d", p->n_rot, hd);
        return false;
    }
    if (!(isfinite(p->rope_base) && p->rope_base > 0.0f)) {
        lm_seterr(err, err_size, "synth: rope_base = %g is not a positive number", (double)p->rope_base);
        return false;
    }
    if (!(isfinite(p->rms_eps) && p->rms_eps > 0.0f)) {
        lm_seterr(err, err_size, "synth: rms_eps = %g is not a positive number", (double)p->rms_eps);
        return false;
    }
    if (!(isfinite(p->rope_scale) && p->rope_scale >= 0.0f)) {
        lm_seterr(err, err_size, "synth: rope_scale = %g is not a valid factor", (double)p->rope_scale);
        return false;
    }
    return true;
}

bool lm_synth_write(const char *path, const lm_synth_params *p, char *err, size_t err_size) {
    if (!path || !p) {
        lm_seterr(err, err_size, "synth: NULL path or params");
        return false;
    }
    if (!check_params(p, err, err_size)) return false;
    const char *ftype_s = p->ftype ? p->ftype : "Q8_0";
    const int ftype = lm_ftype_from_name(ftype_s);
    if (ftype < 0) {
        lm_seterr(err, err_size,
                  "synth: unknown file type '%s' (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S "
                  "Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K)",
                  ftype_s);
        return false;
    }

    bool ok = false;
    lm_gguf *src = NULL;
    stensor *ts = NULL;
    int n_tensors = 0;
    int64_t *chunk_off = NULL;
    lm_gguf_writer *w = lm_gguf_writer_new();
    if (!w) {
        lm_seterr(err, err_size, "synth: out of memory");
        return false;
    }

    /* vocabulary size first: it sets token_embd's shape */
    int32_t n_vocab = p->n_vocab;
    char e[512] = "";
    if (p->vocab_from) {
        src = lm_gguf_open(p->vocab_from, e, sizeof e);
        if (!src) {
            lm_seterr(err, err_size, "synth: vocab_from: %s", e);
            goto done;
        }
        const int64_t ki = lm_gguf_find_key(src, "tokenizer.ggml.tokens");
        if (ki < 0 || lm_gguf_kv_type(src, ki) != LM_GGUF_ARRAY || lm_gguf_arr_type(src, ki) != LM_GGUF_STRING ||
            lm_gguf_arr_n(src, ki) < 1 || lm_gguf_arr_n(src, ki) > (1u << 20)) {
            lm_seterr(err, err_size, "synth: vocab_from %s: no usable 'tokenizer.ggml.tokens' string array",
                      p->vocab_from);
            goto done;
        }
        n_vocab = (int32_t)lm_gguf_arr_n(src, ki);
    }

    /* metadata */
    const int32_t hd = p->n_embd / p->n_head;
    lm_gguf_writer_set_str(w, "general.architecture", "llama");
    lm_gguf_writer_set_str(w, "general.name", p->name ? p->name : "llamita-synth");
    lm_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
    lm_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)p->n_ctx);
    lm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)p->n_embd);
    lm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)p->n_layer);
    lm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)p->n_ff);
    lm_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(p->n_rot ? p->n_rot : hd));
    lm_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)p->n_head);
    lm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)p->n_head_kv);
    lm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", p->rms_eps);
    lm_gguf_writer_set_f32(w, "llama.rope.freq_base", p->rope_base);
    if (p->rope_scale != 0.0f && p->rope_scale != 1.0f) {
        lm_gguf_writer_set_str(w, "llama.rope.scaling.type", "linear");
        lm_gguf_writer_set_f32(w, "llama.rope.scaling.factor", p->rope_scale);
    }
    lm_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype);
    lm_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (src) {
        for (int64_t i = 0; i < lm_gguf_n_kv(src); i++)
            if (strncmp(lm_gguf_key(src, i), "tokenizer.", 10) == 0) lm_gguf_writer_copy_kv(w, src, i);
    } else if (!synth_vocab(w, n_vocab, err, err_size)) {
        goto done;
    }

    /* tensor list, in the order the weights are drawn */
    const int max_tensors = 3 + 9 * p->n_layer + 1;
    ts = calloc((size_t)max_tensors, sizeof *ts);
    chunk_off = calloc((size_t)max_tensors + 1, sizeof *chunk_off);
    if (!ts || !chunk_off) {
        lm_seterr(err, err_size, "synth: out of memory");
        goto done;
    }
    const int64_t E = p->n_embd, NQ = (int64_t)p->n_head * hd, NKV = (int64_t)p->n_head_kv * hd,
                  F = p->n_ff;
    const int n_gqa = p->n_head / p->n_head_kv;
#define ADD(kind_, il_, ne0_, ne1_, ...)                                                           \
    do {                                                                                           \
        stensor *t_ = &ts[n_tensors++];                                                            \
        snprintf(t_->name, sizeof t_->name, __VA_ARGS__);                                          \
        t_->kind = (kind_);                                                                        \
        t_->ne[0] = (ne0_);                                                                        \
        t_->ne[1] = (ne1_);                                                                        \
        t_->n_dims = (kind_) == K_NORM ? 1 : 2;                                                    \
        t_->type = choose_type(ftype, (kind_), (il_), p->n_layer, n_gqa, (ne0_), p->tied_output);  \
    } while (0)
    ADD(K_EMBD, 0, E, n_vocab, "token_embd.weight");
    for (int il = 0; il < p->n_layer; il++) {
        ADD(K_NORM, il, E, 1, "blk.%d.attn_norm.weight", il);
        ADD(K_Q, il, E, NQ, "blk.%d.attn_q.weight", il);
        ADD(K_K, il, E, NKV, "blk.%d.attn_k.weight", il);
        ADD(K_V, il, E, NKV, "blk.%d.attn_v.weight", il);
        ADD(K_O, il, NQ, E, "blk.%d.attn_output.weight", il);
        ADD(K_NORM, il, E, 1, "blk.%d.ffn_norm.weight", il);
        ADD(K_GATE, il, E, F, "blk.%d.ffn_gate.weight", il);
        ADD(K_UP, il, E, F, "blk.%d.ffn_up.weight", il);
        ADD(K_DOWN, il, F, E, "blk.%d.ffn_down.weight", il);
    }
    ADD(K_NORM, 0, E, 1, "output_norm.weight");
    if (!p->tied_output) ADD(K_OUTPUT, 0, E, n_vocab, "output.weight");
#undef ADD

    for (int i = 0; i < n_tensors; i++) {
        stensor *t = &ts[i];
        const lm_type_traits *tr = lm_type_traits_get(t->type);
        if (!tr || !tr->from_float) {
            lm_seterr(err, err_size, "synth: type %s cannot be written", lm_type_name(t->type));
            goto done;
        }
        if (t->ne[0] % tr->blck_size != 0) {
            lm_seterr(err, err_size,
                      "synth: tensor '%s' has rows of %lld elements, not a multiple of %lld as %s "
                      "needs",
                      t->name, (long long)t->ne[0], (long long)tr->blck_size, tr->name);
            goto done;
        }
        uint64_t bytes;
        if (!lm_mul_u64(lm_row_size(t->type, t->ne[0]), (uint64_t)t->ne[1], &bytes) ||
            bytes > SIZE_MAX || !(t->data = malloc((size_t)bytes))) {
            lm_seterr(err, err_size, "synth: out of memory for tensor '%s'", t->name);
            goto done;
        }
        chunk_off[i + 1] = chunk_off[i] + (t->ne[1] + SYNTH_CHUNK_ROWS - 1) / SYNTH_CHUNK_ROWS;
    }

    /* generate: a few threads take chunks in turn */
    {
        gen_job job;
        job.ts = ts;
        job.n_tensors = n_tensors;
        job.seed = p->seed;
        atomic_init(&job.next, 0);
        job.chunk_off = chunk_off;
        job.max_ne0 = 1;
        for (int i = 0; i < n_tensors; i++) job.max_ne0 = LM_MAX(job.max_ne0, ts[i].ne[0]);
        atomic_init(&job.failed, 0);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        int nt = (int)LM_MAX(1, LM_MIN(ncpu, (long)SYNTH_MAX_THREADS));
        pthread_t th[SYNTH_MAX_THREADS];
        int started = 0;
        for (int i = 1; i < nt; i++) {
            if (pthread_create(&th[started], NULL, gen_worker, &job) != 0) break;
            started++;
        }
        gen_worker(&job);
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        if (atomic_load(&job.failed) && atomic_load(&job.next) < chunk_off[n_tensors]) {
            lm_seterr(err, err_size, "synth: out of memory for scratch buffers");
            goto done;
        }
    }

    for (int i = 0; i < n_tensors; i++) {
        if (!lm_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, ts[i].data,
                                       e, sizeof e)) {
            lm_seterr(err, err_size, "synth: %s", e);
            goto done;
        }
    }
    if (!lm_gguf_writer_write(w, path, e, sizeof e)) {
        lm_seterr(err, err_size, "synth: %s", e);
        goto done;
    }
    ok = true;

done:
    lm_gguf_writer_free(w);
    lm_gguf_close(src);
    if (ts)
        for (int i = 0; i < n_tensors; i++) free(ts[i].data);
    free(ts);
    free(chunk_off);
    return ok;
}
