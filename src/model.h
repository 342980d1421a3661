/*
 * Llama model: hyperparameters and weights read from a GGUF (weights point into the map), and the
 * internal layout of llamita_model that other modules (vocab.c's public wrappers, tests) may read.
 * The forward pass, context and KV cache live in model.c.
 */
#ifndef LM_MODEL_H
#define LM_MODEL_H
#include "gguf.h"
#include "llamita.h"
#include "quant.h"
#include "vocab.h"

/* A weight: a 2-D (or 1-D) tensor in the map. Rows of ne[0] elements, ne[1] rows. */
typedef struct lm_weight {
    const lm_gguf_tensor *t; /* NULL when absent */
    uint32_t type;           /* = t->type */
    int64_t ne0, ne1;        /* row length, rows */
    size_t row_size;         /* bytes per row */
    const void *data;        /* = t->data */
} lm_weight;

typedef struct lm_layer {
    lm_weight attn_norm;  /* [n_embd] F32 */
    lm_weight wq;         /* [n_embd] x n_head*head_dim rows */
    lm_weight wk;         /* [n_embd] x n_head_kv*head_dim rows */
    lm_weight wv;         /* [n_embd] x n_head_kv*head_dim rows */
    lm_weight wo;         /* [n_head*head_dim] x n_embd rows */
    lm_weight ffn_norm;   /* [n_embd] F32 */
    lm_weight ffn_gate;   /* [n_embd] x n_ff rows */
    lm_weight ffn_up;     /* [n_embd] x n_ff rows */
    lm_weight ffn_down;   /* [n_ff] x n_embd rows */
} lm_layer;

typedef struct lm_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;   /* llama.context_length */
    int32_t n_embd;        /* llama.embedding_length */
    int32_t n_layer;       /* llama.block_count */
    int32_t n_head;        /* llama.attention.head_count */
    int32_t n_head_kv;     /* llama.attention.head_count_kv (default n_head) */
    int32_t head_dim;      /* n_embd / n_head (or llama.attention.key_length) */
    int32_t n_ff;          /* llama.feed_forward_length */
    int32_t n_rot;         /* llama.rope.dimension_count (default head_dim) */
    float rope_freq_base;  /* llama.rope.freq_base (default 10000) */
    float rope_freq_scale; /* 1 / llama.rope.scaling.factor for linear scaling, else 1 */
    float rms_eps;         /* llama.attention.layer_norm_rms_epsilon (default 1e-5) */
} lm_hparams;

struct llamita_model {
    lm_gguf *gguf;
    lm_vocab *vocab;
    lm_hparams hp;
    lm_weight tok_embd;    /* [n_embd] x n_vocab rows */
    lm_weight output_norm; /* [n_embd] */
    lm_weight output;      /* [n_embd] x n_vocab rows; = tok_embd when tied */
    lm_layer *layers;      /* [n_layer] */
    llamita_model_params params;
    char desc[128];
    uint64_t n_params, n_bytes;
};

const lm_vocab *lm_model_vocab(const llamita_model *m);

/* The address of a per-context pointer that a higher layer (generate.c: the tokens sequence 0 holds,
 * for KV prefix reuse) keeps its state in; NULL for a NULL ctx. The pointer starts NULL; free_fn, when
 * not NULL, is called on it by llamita_context_free (the last caller's free_fn wins). The inference
 * core itself never looks at the state, so it depends on nothing above it. */
void **lm_context_user_slot(llamita_context *ctx, void (*free_fn)(void *));

/* The thread count a context runs its forward pass with (its pool's size), and the name of the
 * CPU kernel level it uses ("scalar", "avx2", "avx512", "neon"). For `llamita bench` and tests. */
int32_t lm_context_n_threads(const llamita_context *ctx);
const char *lm_context_cpu_level(const llamita_context *ctx);

/* llama.cpp's LLAMA_FTYPE numbering (general.file_type): short names such as "Q4_K_M"; NULL for an
 * unknown number (the "guessed" flag 1024 is ignored). lm_ftype_from_name parses those names
 * (case-insensitive) and returns -1 when unknown. */
const char *lm_ftype_name(uint32_t ftype);
int lm_ftype_from_name(const char *name);
#endif
