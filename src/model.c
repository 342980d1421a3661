/*
 * Llama model loading (hyperparameters, weights pointing into the GGUF map, metadata), the context
 * with its F16 KV cache and thread pool, and the forward pass (llamita_decode).
 *
 * Forward pass for one ubatch of T tokens (the 1-token decode is the same code with T = 1):
 *   x[T][n_embd] = token_embd rows
 *   per layer: xn = rmsnorm(x) * attn_norm; q, k, v = xn @ Wq, Wk, Wv; RoPE on q, k; k, v -> cache
 *              (f16); attn = softmax(q k^T / sqrt(head_dim)) v over the cells of the token's sequence
 *              with pos <= its pos; x += attn @ Wo; xn = rmsnorm(x) * ffn_norm;
 *              x += (silu(xn @ Wgate) * (xn @ Wup)) @ Wdown
 *   logits = (rmsnorm(x) * output_norm) @ Woutput for the rows whose logits were requested.
 * In the last layer, once K/V are stored, only the output rows are carried on (as llama.cpp does);
 * every op is row-wise from there, so results are unchanged.
 *
 * The whole ubatch is one run of the context's thread pool (forward_worker): phases separated by
 * barriers, the work of each phase split so that results are bit for bit the same with any thread
 * count (see "The parallel forward pass" below). Matrix products use the CPU kernel table
 * (lm_cpu_kernels(): vec_dot for one token, gemm for several when the level has one).
 */
#include "model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "cpu/cpu.h"
#include "cpu/threadpool.h"
#include "ops.h"

/* Sanity limits on hyperparameters (far above any Llama model; they keep all size arithmetic in
 * range before the tensor shapes are checked against the file). */
#define LM_MAX_EMBD (1 << 16)
#define LM_MAX_FF (1 << 20)
#define LM_MAX_LAYER 1024
#define LM_MAX_HEAD 1024
#define LM_MAX_HEAD_DIM 1024
#define LM_MAX_CTX (1 << 24)

/* ================================================================================================
 * Params
 * ============================================================================================== */

llamita_model_params llamita_model_default_params(void) {
    llamita_model_params p;
    memset(&p, 0, sizeof p);
    p.n_gpu_layers = 0;
    p.vocab_only = false;
    p.verbose = false;
    return p;
}

llamita_context_params llamita_context_default_params(void) {
    llamita_context_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_batch = 512;
    p.n_threads = 0;
    p.n_seq_max = 1;
    return p;
}

/* ================================================================================================
 * File types
 * ============================================================================================== */

static const struct {
    uint32_t id;
    const char *name;
} ftype_names[] = {
    {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
    {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
    {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"},
};

const char *lm_ftype_name(uint32_t ftype) {
    ftype &= ~(uint32_t)1024; /* LLAMA_FTYPE_GUESSED */
    for (size_t i = 0; i < sizeof ftype_names / sizeof ftype_names[0]; i++)
        if (ftype_names[i].id == ftype) return ftype_names[i].name;
    return NULL;
}

int lm_ftype_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < sizeof ftype_names / sizeof ftype_names[0]; i++)
        if (strcasecmp(ftype_names[i].name, name) == 0) return (int)ftype_names[i].id;
    return -1;
}

/* ================================================================================================
 * Loading
 * ============================================================================================== */

/* Reads a required positive integer key into *out (<= max). Errors name the file and the key. */
static bool get_req_int(const lm_gguf *g, const char *path, const char *key, int32_t max,
                        int32_t *out, char *err, size_t err_size) {
    if (lm_gguf_find_key(g, key) < 0) {
        lm_seterr(err, err_size, "%s: missing key '%s'", path, key);
        return false;
    }
    char e[256] = "";
    uint32_t v = 0;
    if (!lm_gguf_get_u32(g, key, &v, e, sizeof e)) {
        lm_seterr(err, err_size, "%s: %s", path, e);
        return false;
    }
    if (v == 0 || v > (uint32_t)max) {
        lm_seterr(err, err_size, "%s: key '%s' = %u is out of range [1, %d]", path, key, v, max);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

/* Optional integer key: *out unchanged when absent; present values must be in [1, max]. */
static bool get_opt_int(const lm_gguf *g, const char *path, const char *key, int32_t max,
                        int32_t *out, char *err, size_t err_size) {
    if (lm_gguf_find_key(g, key) < 0) return true;
    return get_req_int(g, path, key, max, out, err, err_size);
}

/* Optional float key: *out unchanged when absent. */
static bool get_opt_f32(const lm_gguf *g, const char *path, const char *key, float *out, char *err,
                        size_t err_size) {
    char e[256] = "";
    if (!lm_gguf_get_f32_opt(g, key, out, e, sizeof e)) {
        lm_seterr(err, err_size, "%s: %s", path, e);
        return false;
    }
    return true;
}

/* Reads and validates the llama.* hyperparameters (n_vocab is set later). */
static bool load_hparams(const lm_gguf *g, const char *path, lm_hparams *hp, char *err,
                         size_t err_size) {
    memset(hp, 0, sizeof *hp);
    if (!get_req_int(g, path, "llama.context_length", LM_MAX_CTX, &hp->n_ctx_train, err, err_size) ||
        !get_req_int(g, path, "llama.embedding_length", LM_MAX_EMBD, &hp->n_embd, err, err_size) ||
        !get_req_int(g, path, "llama.block_count", LM_MAX_LAYER, &hp->n_layer, err, err_size) ||
        !get_req_int(g, path, "llama.feed_forward_length", LM_MAX_FF, &hp->n_ff, err, err_size) ||
        !get_req_int(g, path, "llama.attention.head_count", LM_MAX_HEAD, &hp->n_head, err, err_size))
        return false;
    hp->n_head_kv = hp->n_head;
    if (!get_opt_int(g, path, "llama.attention.head_count_kv", LM_MAX_HEAD, &hp->n_head_kv, err,
                     err_size))
        return false;
    if (hp->n_head % hp->n_head_kv != 0) {
        lm_seterr(err, err_size,
                  "%s: llama.attention.head_count_kv = %d does not divide head_count = %d", path,
                  hp->n_head_kv, hp->n_head);
        return false;
    }
    /* head size: llama.attention.key_length when present (must equal value_length), else
     * n_embd / n_head */
    int32_t klen = 0, vlen = 0;
    if (!get_opt_int(g, path, "llama.attention.key_length", LM_MAX_HEAD_DIM, &klen, err, err_size) ||
        !get_opt_int(g, path, "llama.attention.value_length", LM_MAX_HEAD_DIM, &vlen, err, err_size))
        return false;
    if (klen == 0 && vlen == 0) {
        if (hp->n_embd % hp->n_head != 0) {
            lm_seterr(err, err_size,
                      "%s: llama.attention.head_count = %d does not divide embedding_length = %d",
                      path, hp->n_head, hp->n_embd);
            return false;
        }
        hp->head_dim = hp->n_embd / hp->n_head;
    } else {
        if (klen != vlen) {
            lm_seterr(err, err_size,
                      "%s: llama.attention.key_length = %d differs from value_length = %d "
                      "(unsupported)",
                      path, klen, vlen);
            return false;
        }
        hp->head_dim = klen;
    }
    if (hp->head_dim > LM_MAX_HEAD_DIM) {
        lm_seterr(err, err_size, "%s: head size %d is larger than %d", path, hp->head_dim,
                  LM_MAX_HEAD_DIM);
        return false;
    }
    hp->n_rot = hp->head_dim;
    if (!get_opt_int(g, path, "llama.rope.dimension_count", LM_MAX_HEAD_DIM, &hp->n_rot, err,
                     err_size))
        return false;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0) {
        lm_seterr(err, err_size,
                  "%s: llama.rope.dimension_count = %d must be even and <= the head size %d", path,
                  hp->n_rot, hp->head_dim);
        return false;
    }

    hp->rope_freq_base = 10000.0f;
    hp->rms_eps = 1e-5f;
    if (!get_opt_f32(g, path, "llama.rope.freq_base", &hp->rope_freq_base, err, err_size) ||
        !get_opt_f32(g, path, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps, err, err_size))
        return false;
    if (!(isfinite(hp->rope_freq_base) && hp->rope_freq_base > 0.0f)) {
        lm_seterr(err, err_size, "%s: llama.rope.freq_base = %g is not a positive number", path,
                  (double)hp->rope_freq_base);
        return false;
    }
    if (!(isfinite(hp->rms_eps) && hp->rms_eps > 0.0f)) {
        lm_seterr(err, err_size,
                  "%s: llama.attention.layer_norm_rms_epsilon = %g is not a positive number", path,
                  (double)hp->rms_eps);
        return false;
    }

    /* RoPE scaling, as llama.cpp reads it: type defaults to "linear"; the factor comes from
     * rope.scaling.factor, else the legacy rope.scale_linear; factor 0 (absent) means none;
     * freq_scale = 1 / factor; type "none" forces freq_scale = 1. YaRN is not implemented. */
    char e[256] = "";
    lm_gguf_str st = {"linear", 6};
    if (!lm_gguf_get_str_opt(g, "llama.rope.scaling.type", &st, e, sizeof e)) {
        lm_seterr(err, err_size, "%s: %s", path, e);
        return false;
    }
    bool scaling_none = false;
    if (st.len == 4 && memcmp(st.data, "none", 4) == 0) {
        scaling_none = true;
    } else if (!(st.len == 6 && memcmp(st.data, "linear", 6) == 0)) {
        lm_seterr(err, err_size, "%s: llama.rope.scaling.type '%.*s' is not supported (only linear)",
                  path, (int)LM_MIN(st.len, (uint64_t)64), st.data);
        return false;
    }
    float factor = 0.0f;
    const char *fkey = "llama.rope.scaling.factor";
    if (lm_gguf_find_key(g, fkey) < 0) fkey = "llama.rope.scale_linear";
    if (!get_opt_f32(g, path, fkey, &factor, err, err_size)) return false;
    if (!isfinite(factor) || factor < 0.0f) {
        lm_seterr(err, err_size, "%s: %s = %g is not a valid scaling factor", path, fkey,
                  (double)factor);
        return false;
    }
    hp->rope_freq_scale = (factor == 0.0f || scaling_none) ? 1.0f : 1.0f / factor;
    return true;
}

enum weight_kind { W_NORM, W_MATRIX, W_EMBD };

/* Finds tensor `name`, checks its shape ([ne0] for norms, [ne0, ne1] otherwise) and that its type
 * can be used for `kind` (norms: F32; matrices: a type with a dot product; embeddings: any type).
 * On success fills *w (w->t NULL when the tensor is absent and optional). */
static bool get_weight(const lm_gguf *g, const char *path, const char *name, enum weight_kind kind,
                       int64_t ne0, int64_t ne1, bool optional, lm_weight *w, char *err,
                       size_t err_size) {
    memset(w, 0, sizeof *w);
    const lm_gguf_tensor *t = lm_gguf_find_tensor(g, name);
    if (!t) {
        if (optional) return true;
        lm_seterr(err, err_size, "%s: missing tensor '%s'", path, name);
        return false;
    }
    const int64_t want[4] = {ne0, kind == W_NORM ? 1 : ne1, 1, 1};
    const uint32_t want_dims = kind == W_NORM ? 1 : 2;
    if (memcmp(t->ne, want, sizeof want) != 0) {
        char have_s[96], want_s[64];
        int len = snprintf(have_s, sizeof have_s, "[%lld", (long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && len > 0 && (size_t)len < sizeof have_s; d++)
            len += snprintf(have_s + len, sizeof have_s - (size_t)len, ", %lld", (long long)t->ne[d]);
        if (len > 0 && (size_t)len < sizeof have_s) snprintf(have_s + len, sizeof have_s - (size_t)len, "]");
        if (want_dims == 1) snprintf(want_s, sizeof want_s, "[%lld]", (long long)ne0);
        else snprintf(want_s, sizeof want_s, "[%lld, %lld]", (long long)ne0, (long long)ne1);
        lm_seterr(err, err_size, "%s: tensor '%s' has shape %s, expected %s", path, name, have_s,
                  want_s);
        return false;
    }
    const lm_type_traits *tr = lm_type_traits_get(t->type);
    if (!tr) {
        lm_seterr(err, err_size, "%s: tensor '%s' has unsupported type %u", path, name, t->type);
        return false;
    }
    if (kind == W_NORM && t->type != LM_TYPE_F32) {
        lm_seterr(err, err_size, "%s: tensor '%s' has type %s, expected F32", path, name, tr->name);
        return false;
    }
    if (kind == W_MATRIX) {
        const lm_type_traits *vt = tr->vec_dot ? lm_type_traits_get(tr->vec_dot_type) : NULL;
        if (!vt || !vt->from_float || ne0 % vt->blck_size != 0) {
            lm_seterr(err, err_size,
                      "%s: tensor '%s' has type %s, which cannot be used for matrix products", path,
                      name, tr->name);
            return false;
        }
    }
    if (kind == W_EMBD && !tr->to_float) {
        lm_seterr(err, err_size, "%s: tensor '%s' has type %s, which cannot be converted to float",
                  path, name, tr->name);
        return false;
    }
    w->t = t;
    w->type = t->type;
    w->ne0 = t->ne[0];
    w->ne1 = t->ne[1];
    w->row_size = lm_row_size(t->type, t->ne[0]);
    w->data = t->data;
    return true;
}

/* Per-layer tensor names and shapes. */
static bool load_layer(const lm_gguf *g, const char *path, const lm_hparams *hp, int32_t il,
                       lm_layer *L, char *err, size_t err_size) {
    const int64_t E = hp->n_embd, NQ = (int64_t)hp->n_head * hp->head_dim,
                  NKV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    struct {
        const char *suffix;
        enum weight_kind kind;
        int64_t ne0, ne1;
        lm_weight *w;
    } spec[] = {
        {"attn_norm", W_NORM, E, 1, &L->attn_norm},     {"attn_q", W_MATRIX, E, NQ, &L->wq},
        {"attn_k", W_MATRIX, E, NKV, &L->wk},           {"attn_v", W_MATRIX, E, NKV, &L->wv},
        {"attn_output", W_MATRIX, NQ, E, &L->wo},       {"ffn_norm", W_NORM, E, 1, &L->ffn_norm},
        {"ffn_gate", W_MATRIX, E, F, &L->ffn_gate},     {"ffn_up", W_MATRIX, E, F, &L->ffn_up},
        {"ffn_down", W_MATRIX, F, E, &L->ffn_down},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.weight", (int)il, spec[i].suffix);
        if (!get_weight(g, path, name, spec[i].kind, spec[i].ne0, spec[i].ne1, false, spec[i].w,
                        err, err_size))
            return false;
    }
    return true;
}

/* Adds w's elements and bytes to the model totals. */
static void count_weight(llamita_model *m, const lm_weight *w) {
    if (!w->t) return;
    m->n_params += (uint64_t)(w->t->ne[0] * w->t->ne[1] * w->t->ne[2] * w->t->ne[3]);
    m->n_bytes += w->t->nbytes;
}

/* Fills m->desc: "llama <size> <file type>", the size from the parameter count ("1.1B", "15M",
 * "293K"), the file type from general.file_type or, if absent/unknown, the type holding the most
 * weight bytes. */
static void make_desc(llamita_model *m) {
    char size[32];
    const double np = (double)m->n_params;
    if (m->params.vocab_only) snprintf(size, sizeof size, "(vocab only)");
    else if (np >= 1e9) snprintf(size, sizeof size, "%.1fB", np / 1e9);
    else if (np >= 1e6) snprintf(size, sizeof size, "%.0fM", np / 1e6);
    else snprintf(size, sizeof size, "%.0fK", np / 1e3);

    const char *ft = NULL;
    uint32_t ftype = 0;
    if (lm_gguf_find_key(m->gguf, "general.file_type") >= 0 &&
        lm_gguf_get_u32(m->gguf, "general.file_type", &ftype, NULL, 0))
        ft = lm_ftype_name(ftype);
    if (!ft && !m->params.vocab_only) {
        uint64_t bytes[LM_TYPE_COUNT] = {0};
        for (int64_t i = 0; i < lm_gguf_n_tensors(m->gguf); i++) {
            const lm_gguf_tensor *t = lm_gguf_tensor_at(m->gguf, i);
            if (t->type < LM_TYPE_COUNT && t->n_dims >= 2) bytes[t->type] += t->nbytes;
        }
        uint32_t best = 0;
        for (uint32_t ty = 0; ty < LM_TYPE_COUNT; ty++)
            if (bytes[ty] > bytes[best]) best = ty;
        ft = lm_type_name(best);
    }
    snprintf(m->desc, sizeof m->desc, "llama %s%s%s", size, ft ? " " : "", ft ? ft : "");
}

llamita_model *llamita_model_load(const char *path, llamita_model_params params, char *err,
                                  size_t err_size) {
    if (!path) {
        lm_seterr(err, err_size, "model path is NULL");
        return NULL;
    }
    llamita_model *m = calloc(1, sizeof *m);
    if (!m) {
        lm_seterr(err, err_size, "%s: out of memory", path);
        return NULL;
    }
    m->params = params;
    m->gguf = lm_gguf_open(path, err, err_size);
    if (!m->gguf) goto fail;

    char e[256] = "";
    lm_gguf_str arch;
    if (lm_gguf_find_key(m->gguf, "general.architecture") < 0) {
        lm_seterr(err, err_size, "%s: missing key 'general.architecture'", path);
        goto fail;
    }
    if (!lm_gguf_get_str(m->gguf, "general.architecture", &arch, e, sizeof e)) {
        lm_seterr(err, err_size, "%s: %s", path, e);
        goto fail;
    }
    if (!(arch.len == 5 && memcmp(arch.data, "llama", 5) == 0)) {
        lm_seterr(err, err_size, "%s: unsupported architecture '%.*s' (general.architecture; only "
                  "'llama' is supported)", path, (int)LM_MIN(arch.len, (uint64_t)64), arch.data);
        goto fail;
    }
    if (!load_hparams(m->gguf, path, &m->hp, err, err_size)) goto fail;

    m->vocab = lm_vocab_load(m->gguf, e, sizeof e);
    if (!m->vocab) {
        if (strstr(e, path)) lm_seterr(err, err_size, "%s", e); /* already names the file */
        else lm_seterr(err, err_size, "%s: %s", path, e);
        goto fail;
    }
    m->hp.n_vocab = lm_vocab_n_tokens(m->vocab);
    if (m->hp.n_vocab <= 0) {
        lm_seterr(err, err_size, "%s: the vocabulary is empty", path);
        goto fail;
    }

    if (params.n_gpu_layers > 0)
        fprintf(stderr, "llamita: warning: n_gpu_layers = %d ignored (no GPU backend)\n",
                (int)params.n_gpu_layers);

    if (!params.vocab_only) {
        const lm_hparams *hp = &m->hp;
        /* token_embd's row count must be the vocabulary size: a larger matrix would give logits
         * for tokens that cannot be printed, a smaller one ids without embeddings. */
        if (!get_weight(m->gguf, path, "token_embd.weight", W_EMBD, hp->n_embd, hp->n_vocab, false,
                        &m->tok_embd, err, err_size) ||
            !get_weight(m->gguf, path, "output_norm.weight", W_NORM, hp->n_embd, 1, false,
                        &m->output_norm, err, err_size) ||
            !get_weight(m->gguf, path, "output.weight", W_MATRIX, hp->n_embd, hp->n_vocab, true,
                        &m->output, err, err_size))
            goto fail;
        count_weight(m, &m->tok_embd);
        count_weight(m, &m->output_norm);
        count_weight(m, &m->output);
        if (!m->output.t) {
            /* tied: token_embd doubles as the output matrix, so it needs a dot product too */
            lm_weight tied;
            if (!get_weight(m->gguf, path, "token_embd.weight", W_MATRIX, hp->n_embd, hp->n_vocab,
                            false, &tied, err, err_size))
                goto fail;
            m->output = tied;
        }
        m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
        if (!m->layers) {
            lm_seterr(err, err_size, "%s: out of memory", path);
            goto fail;
        }
        for (int32_t il = 0; il < hp->n_layer; il++) {
            lm_layer *L = &m->layers[il];
            if (!load_layer(m->gguf, path, hp, il, L, err, err_size)) goto fail;
            const lm_weight *ws[] = {&L->attn_norm, &L->wq,       &L->wk,     &L->wv,      &L->wo,
                                     &L->ffn_norm,  &L->ffn_gate, &L->ffn_up, &L->ffn_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) count_weight(m, ws[i]);
        }
    }
    make_desc(m);
    if (params.verbose) {
        const lm_hparams *hp = &m->hp;
        fprintf(stderr,
                "llamita: loaded %s: %s, n_vocab %d, n_ctx_train %d, n_embd %d, n_layer %d, "
                "n_head %d, n_head_kv %d, head_dim %d, n_ff %d, n_rot %d, rope base %g scale %g, "
                "rms eps %g, %llu params, %.2f MiB\n",
                path, m->desc, hp->n_vocab, hp->n_ctx_train, hp->n_embd, hp->n_layer, hp->n_head,
                hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_rot, (double)hp->rope_freq_base,
                (double)hp->rope_freq_scale, (double)hp->rms_eps, (unsigned long long)m->n_params,
                (double)m->n_bytes / (1024.0 * 1024.0));
    }
    return m;

fail:
    llamita_model_free(m);
    return NULL;
}

void llamita_model_free(llamita_model *model) {
    if (!model) return;
    free(model->layers);
    lm_vocab_free(model->vocab);
    lm_gguf_close(model->gguf);
    free(model);
}

const lm_vocab *lm_model_vocab(const llamita_model *m) { return m ? m->vocab : NULL; }

int32_t llamita_model_n_vocab(const llamita_model *model) { return model->hp.n_vocab; }
int32_t llamita_model_n_ctx_train(const llamita_model *model) { return model->hp.n_ctx_train; }
int32_t llamita_model_n_embd(const llamita_model *model) { return model->hp.n_embd; }
int32_t llamita_model_n_layer(const llamita_model *model) { return model->hp.n_layer; }
int32_t llamita_model_n_head(const llamita_model *model) { return model->hp.n_head; }
int32_t llamita_model_n_head_kv(const llamita_model *model) { return model->hp.n_head_kv; }
uint64_t llamita_model_n_params(const llamita_model *model) { return model->n_params; }
uint64_t llamita_model_size(const llamita_model *model) { return model->n_bytes; }
const char *llamita_model_desc(const llamita_model *model) { return model->desc; }

int32_t llamita_model_meta_count(const llamita_model *model) {
    return (int32_t)lm_gguf_n_kv(model->gguf);
}

const char *llamita_model_meta_key(const llamita_model *model, int32_t i) {
    if (i < 0 || i >= llamita_model_meta_count(model)) return NULL;
    return lm_gguf_key(model->gguf, i);
}

int32_t llamita_model_meta_val_str(const llamita_model *model, const char *key, char *buf,
                                   size_t buf_size) {
    if (!key) return -1;
    const int64_t i = lm_gguf_find_key(model->gguf, key);
    if (i < 0) {
        if (buf && buf_size > 0) buf[0] = 0;
        return -1;
    }
    if (lm_gguf_kv_type(model->gguf, i) == LM_GGUF_STRING) {
        /* strings without quotes (lm_gguf_kv_to_str quotes them) */
        lm_gguf_str s = {NULL, 0};
        if (!lm_gguf_get_str(model->gguf, key, &s, NULL, 0)) return -1;
        const int len = (int)LM_MIN(s.len, (uint64_t)INT32_MAX);
        if (buf && buf_size > 0) snprintf(buf, buf_size, "%.*s", len, s.data);
        return len;
    }
    return (int32_t)lm_gguf_kv_to_str(model->gguf, i, buf, buf_size, 8);
}

int32_t llamita_model_n_tensors(const llamita_model *model) {
    return (int32_t)lm_gguf_n_tensors(model->gguf);
}

int llamita_model_tensor_info(const llamita_model *model, int32_t i, llamita_tensor_info *info) {
    if (!info || i < 0 || i >= llamita_model_n_tensors(model)) return -1;
    const lm_gguf_tensor *t = lm_gguf_tensor_at(model->gguf, i);
    info->name = t->name;
    info->type_name = lm_type_name(t->type);
    info->n_dims = (int32_t)t->n_dims;
    for (int d = 0; d < 4; d++) info->ne[d] = t->ne[d];
    info->offset = t->file_offset;
    info->nbytes = t->nbytes;
    return 0;
}

/* ================================================================================================
 * Context and KV cache
 *
 * The cache has n_ctx cells; a cell holds, for every layer, the key and value of one token (f16)
 * and records that token's position and sequence id (cell_seq = -1: free). A token attends to the
 * cells of its own sequence whose position is <= its own, summed in increasing position order (so
 * results do not depend on which cells a token happened to land in).
 *
 * Layout (llama.cpp's, without flash attention), chosen so that attention reads the cache
 * contiguously when a sequence fills cells 0, 1, 2, ... (the usual case; other cases are gathered,
 * with the same results):
 *   keys   [n_layer][n_head_kv][n_ctx][head_dim]   one row per cell: the score product reads the
 *          rows of consecutive cells;
 *   values [n_layer][n_head_kv][head_dim][n_ctx]   transposed: for one dim, the cells are
 *          contiguous, so the weighted sum is one F16 product of V^T with the probabilities.
 * ============================================================================================== */

/* Query rows per attention work item (about): tokens per item = ceil(this / gqa). */
#define LM_ATT_ROWS 64

struct llamita_context {
    llamita_model *model;
    void *user;                  /* a higher layer's per-context state (see lm_context_user_slot) */
    void (*user_free)(void *);   /* its destructor, called by llamita_context_free */
    const lm_kernels *k; /* CPU kernels (lm_cpu_kernels()) */
    lm_threadpool *pool;
    uint32_t n_ctx, n_batch, n_seq_max;
    int32_t n_threads;
    int32_t n_kv_dim; /* n_head_kv * head_dim */
    int32_t att_tq;   /* query tokens per attention work item */
    int32_t att_rows; /* att_tq * gqa: query rows per attention work item */

    lm_fp16 *k_cache;  /* [n_layer][n_head_kv][n_ctx][head_dim] */
    lm_fp16 *v_cache;  /* [n_layer][n_head_kv][head_dim][n_ctx] */
    int32_t *cell_pos; /* [n_ctx] position of the token held in the cell */
    int32_t *cell_seq; /* [n_ctx] sequence id, -1 = free */
    int32_t n_used;    /* cells with cell_seq >= 0 */

    /* scratch for one ubatch of up to n_batch tokens */
    float *x;         /* [n_batch][n_embd] residual stream */
    float *xn;        /* [n_batch][n_embd] normed input; also the output of Wo / Wdown before
                         the residual add */
    float *q;         /* [n_batch][n_head * head_dim] */
    float *kx;        /* [n_batch][n_kv_dim] */
    float *vx;        /* [n_batch][n_kv_dim] */
    float *attn;      /* [n_batch][n_head * head_dim] attention output */
    float *gate;      /* [n_batch][n_ff] gate, then silu(gate) * up */
    float *up;        /* [n_batch][n_ff] */
    void *act[LM_TYPE_COUNT]; /* per vec_dot_type used by some matrix (else NULL):
                                 [n_batch][its longest converted activation row] */
    void *act_down;   /* [n_batch][longest converted row of any ffn_down]: h converted by the
                         gate/up phase while that phase still reads act[] */
    float *rope_cs;   /* [n_batch][n_rot] cos/sin table of each ubatch token */
    char *att_buf;    /* [n_threads][lm_attn_scratch_bytes(att_rows, head_dim, n_ctx)] */
    lm_attn_scratch *att_sc; /* [n_threads] */
    const float **att_q;     /* [n_threads][att_rows] query row pointers of a work item */
    float **att_out;         /* [n_threads][att_rows] output row pointers */
    int32_t *att_n;          /* [n_threads][att_rows] cells each row attends to */
    int32_t *attn_cells; /* [n_ctx] used cells grouped by sequence, by increasing position */
    int32_t *sort_tmp;   /* [n_ctx] merge sort scratch */
    int32_t *seq_start;  /* [n_seq_max] segment of each sequence in attn_cells */
    int32_t *seq_count;  /* [n_seq_max] */
    int32_t *seq_tmp;    /* [n_seq_max] validation / fill scratch */
    uint8_t *seq_contig; /* [n_seq_max] 1 when the segment is cells c0, c0 + 1, c0 + 2, ... */
    int32_t *tok_cell;   /* [n_batch] cell of each ubatch token */
    int32_t *tok_nattn;  /* [n_batch] number of cells each ubatch token attends to */
    int32_t *out_rows;   /* [n_batch] ubatch rows whose logits are requested */
    int32_t *iota;       /* [n_batch] 0, 1, 2, ... */
    int32_t *blk_all;    /* [n_batch + 1] attention query blocks over all ubatch tokens */
    int32_t *blk_out;    /* [n_batch + 1] ... over the output rows (last layer) */
    int32_t n_blk_all, n_blk_out;

    float *logits;     /* [n_out_cap][n_vocab] */
    int32_t n_out_cap; /* rows allocated in logits */
    int32_t n_outputs; /* rows produced by the last successful decode */
};

/* Keys of layer il, KV head g: [n_ctx][head_dim]. */
static inline lm_fp16 *kv_k(const llamita_context *ctx, int32_t il, int32_t g) {
    const lm_hparams *hp = &ctx->model->hp;
    return ctx->k_cache +
           ((size_t)il * (size_t)hp->n_head_kv + (size_t)g) * ctx->n_ctx * (size_t)hp->head_dim;
}
/* Values of layer il, KV head g, transposed: [head_dim][n_ctx]. */
static inline lm_fp16 *kv_v(const llamita_context *ctx, int32_t il, int32_t g) {
    const lm_hparams *hp = &ctx->model->hp;
    return ctx->v_cache +
           ((size_t)il * (size_t)hp->n_head_kv + (size_t)g) * ctx->n_ctx * (size_t)hp->head_dim;
}

/* calloc of n elements of size sz with overflow check; accumulates the byte total. */
static void *xcalloc(uint64_t n, size_t sz, uint64_t *total, bool *ok) {
    uint64_t bytes;
    if (!*ok || !lm_mul_u64(n, sz, &bytes) || bytes > (uint64_t)SIZE_MAX) {
        *ok = false;
        return NULL;
    }
    void *p = calloc(n ? (size_t)n : 1, sz);
    if (!p) *ok = false;
    *total += bytes;
    return p;
}

/* The matrices of the model (every layer's seven, then output), for sizing the activation
 * buffers. Returns the count written to ws (at most 7 * n_layer + 1). */
static size_t all_matrices(const llamita_model *m, const lm_weight **ws) {
    size_t n = 0;
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        const lm_layer *L = &m->layers[il];
        ws[n++] = &L->wq;
        ws[n++] = &L->wk;
        ws[n++] = &L->wv;
        ws[n++] = &L->wo;
        ws[n++] = &L->ffn_gate;
        ws[n++] = &L->ffn_up;
        ws[n++] = &L->ffn_down;
    }
    ws[n++] = &m->output;
    return n;
}

llamita_context *llamita_context_new(llamita_model *model, llamita_context_params params,
                                     char *err, size_t err_size) {
    if (!model) {
        lm_seterr(err, err_size, "context: model is NULL");
        return NULL;
    }
    if (model->params.vocab_only || !model->layers) {
        lm_seterr(err, err_size, "context: the model was loaded with vocab_only (no weights)");
        return NULL;
    }
    const lm_hparams *hp = &model->hp;
    uint32_t n_ctx = params.n_ctx ? params.n_ctx : (uint32_t)hp->n_ctx_train;
    if (n_ctx > LM_MAX_CTX) {
        lm_seterr(err, err_size, "context: n_ctx = %u is larger than the maximum %d", n_ctx,
                  LM_MAX_CTX);
        return NULL;
    }
    uint32_t n_batch = params.n_batch ? params.n_batch : 512;
    if (n_batch > n_ctx) n_batch = n_ctx;
    uint32_t n_seq_max = params.n_seq_max ? params.n_seq_max : 1;
    if (n_seq_max > n_ctx) {
        lm_seterr(err, err_size, "context: n_seq_max = %u is larger than n_ctx = %u", n_seq_max,
                  n_ctx);
        return NULL;
    }
    if (params.n_threads < 0 || params.n_threads > LM_THREADPOOL_MAX) {
        lm_seterr(err, err_size, "context: n_threads = %d is out of range [0, %d] (0 = one per "
                  "physical core)", (int)params.n_threads, LM_THREADPOOL_MAX);
        return NULL;
    }
    if (model->params.verbose && n_ctx > (uint32_t)hp->n_ctx_train)
        fprintf(stderr,
                "llamita: warning: n_ctx = %u is larger than the model's training context %d\n",
                n_ctx, hp->n_ctx_train);

    lm_ops_init();
    llamita_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        lm_seterr(err, err_size, "context: out of memory");
        return NULL;
    }
    ctx->model = model;
    ctx->k = lm_cpu_kernels();
    ctx->n_ctx = n_ctx;
    ctx->n_batch = n_batch;
    ctx->n_seq_max = n_seq_max;
    ctx->n_threads = params.n_threads > 0 ? params.n_threads : llamita_n_physical_cores();
    if (ctx->n_threads < 1) ctx->n_threads = 1;
    if (ctx->n_threads > LM_THREADPOOL_MAX) ctx->n_threads = LM_THREADPOOL_MAX;
    ctx->n_kv_dim = hp->n_head_kv * hp->head_dim;
    const int32_t gqa = hp->n_head / hp->n_head_kv;
    ctx->att_tq = (LM_ATT_ROWS + gqa - 1) / gqa;
    ctx->att_rows = ctx->att_tq * gqa;

    const uint64_t E = (uint64_t)hp->n_embd, NQ = (uint64_t)hp->n_head * (uint64_t)hp->head_dim,
                   NKV = (uint64_t)ctx->n_kv_dim, F = (uint64_t)hp->n_ff, B = n_batch,
                   L = (uint64_t)hp->n_layer, NT = (uint64_t)ctx->n_threads;
    bool ok = true;
    uint64_t total = 0, kv_cells;
    ok = lm_mul_u64(L * n_ctx, NKV, &kv_cells);
    ctx->k_cache = xcalloc(kv_cells, sizeof(lm_fp16), &total, &ok);
    ctx->v_cache = xcalloc(kv_cells, sizeof(lm_fp16), &total, &ok);
    ctx->cell_pos = xcalloc(n_ctx, sizeof(int32_t), &total, &ok);
    ctx->cell_seq = xcalloc(n_ctx, sizeof(int32_t), &total, &ok);
    ctx->x = xcalloc(B * E, sizeof(float), &total, &ok);
    ctx->xn = xcalloc(B * E, sizeof(float), &total, &ok);
    ctx->q = xcalloc(B * NQ, sizeof(float), &total, &ok);
    ctx->kx = xcalloc(B * NKV, sizeof(float), &total, &ok);
    ctx->vx = xcalloc(B * NKV, sizeof(float), &total, &ok);
    ctx->attn = xcalloc(B * NQ, sizeof(float), &total, &ok);
    ctx->gate = xcalloc(B * F, sizeof(float), &total, &ok);
    ctx->up = xcalloc(B * F, sizeof(float), &total, &ok);
    /* one activation buffer per vec_dot_type, as long as its longest row */
    {
        const lm_weight **ws = ok ? malloc(sizeof *ws * (7 * (size_t)hp->n_layer + 1)) : NULL;
        if (!ws) ok = false;
        size_t act_row[LM_TYPE_COUNT] = {0};
        const size_t nw = ws ? all_matrices(model, ws) : 0;
        for (size_t i = 0; i < nw; i++) {
            const uint32_t vdt = lm_type_traits_get(ws[i]->type)->vec_dot_type;
            act_row[vdt] = LM_MAX(act_row[vdt], lm_matmul_act_row_size(ws[i]));
        }
        free(ws);
        for (uint32_t t = 0; t < LM_TYPE_COUNT; t++)
            if (act_row[t] > 0) ctx->act[t] = xcalloc(B, act_row[t], &total, &ok);
        size_t down_row = 0;
        for (int32_t il = 0; il < hp->n_layer; il++)
            down_row = LM_MAX(down_row, lm_matmul_act_row_size(&model->layers[il].ffn_down));
        ctx->act_down = xcalloc(B, down_row ? down_row : 1, &total, &ok);
    }
    ctx->rope_cs = xcalloc(B * (uint64_t)hp->n_rot + 2, sizeof(float), &total, &ok);
    const size_t att_bytes = lm_attn_scratch_bytes(ctx->att_rows, hp->head_dim, (int32_t)n_ctx);
    ctx->att_buf = ok ? aligned_alloc(64, NT * att_bytes) : NULL; /* NT * att_bytes: a multiple of 64 */
    if (!ctx->att_buf) ok = false;
    total += NT * att_bytes;
    ctx->att_sc = xcalloc(NT, sizeof(lm_attn_scratch), &total, &ok);
    ctx->att_q = xcalloc(NT * (uint64_t)ctx->att_rows, sizeof(float *), &total, &ok);
    ctx->att_out = xcalloc(NT * (uint64_t)ctx->att_rows, sizeof(float *), &total, &ok);
    ctx->att_n = xcalloc(NT * (uint64_t)ctx->att_rows, sizeof(int32_t), &total, &ok);
    ctx->attn_cells = xcalloc(n_ctx, sizeof(int32_t), &total, &ok);
    ctx->sort_tmp = xcalloc(n_ctx, sizeof(int32_t), &total, &ok);
    ctx->seq_start = xcalloc(n_seq_max, sizeof(int32_t), &total, &ok);
    ctx->seq_count = xcalloc(n_seq_max, sizeof(int32_t), &total, &ok);
    ctx->seq_tmp = xcalloc(n_seq_max, sizeof(int32_t), &total, &ok);
    ctx->seq_contig = xcalloc(n_seq_max, sizeof(uint8_t), &total, &ok);
    ctx->tok_cell = xcalloc(B, sizeof(int32_t), &total, &ok);
    ctx->tok_nattn = xcalloc(B, sizeof(int32_t), &total, &ok);
    ctx->out_rows = xcalloc(B, sizeof(int32_t), &total, &ok);
    ctx->iota = xcalloc(B, sizeof(int32_t), &total, &ok);
    ctx->blk_all = xcalloc(B + 1, sizeof(int32_t), &total, &ok);
    ctx->blk_out = xcalloc(B + 1, sizeof(int32_t), &total, &ok);
    ctx->logits = xcalloc((uint64_t)hp->n_vocab, sizeof(float), &total, &ok);
    ctx->n_out_cap = 1;
    if (!ok) {
        lm_seterr(err, err_size,
                  "context: out of memory (n_ctx = %u, n_batch = %u: about %.1f MiB requested)",
                  n_ctx, n_batch, (double)total / (1024.0 * 1024.0));
        llamita_context_free(ctx);
        return NULL;
    }
    for (int32_t i = 0; i < ctx->n_threads; i++)
        lm_attn_scratch_init(&ctx->att_sc[i], ctx->att_buf + (size_t)i * att_bytes, ctx->att_rows,
                             hp->head_dim, (int32_t)n_ctx);
    for (uint32_t c = 0; c < n_ctx; c++) ctx->cell_seq[c] = -1;
    for (uint32_t t = 0; t < n_batch; t++) ctx->iota[t] = (int32_t)t;
    char perr[256] = "";
    ctx->pool = lm_threadpool_new(ctx->n_threads, perr, sizeof perr);
    if (!ctx->pool) {
        lm_seterr(err, err_size, "context: %s", perr);
        llamita_context_free(ctx);
        return NULL;
    }
    if (model->params.verbose)
        fprintf(stderr,
                "llamita: context n_ctx %u, n_batch %u, n_seq_max %u, %d threads, %s kernels, KV "
                "cache %.2f MiB, buffers %.2f MiB\n",
                n_ctx, n_batch, n_seq_max, (int)ctx->n_threads, ctx->k->name,
                (double)(2 * kv_cells * sizeof(lm_fp16)) / (1024.0 * 1024.0),
                (double)total / (1024.0 * 1024.0));
    return ctx;
}

void llamita_context_free(llamita_context *ctx) {
    if (!ctx) return;
    if (ctx->user_free) ctx->user_free(ctx->user);
    lm_threadpool_free(ctx->pool);
    free(ctx->k_cache);
    free(ctx->v_cache);
    free(ctx->cell_pos);
    free(ctx->cell_seq);
    free(ctx->x);
    free(ctx->xn);
    free(ctx->q);
    free(ctx->kx);
    free(ctx->vx);
    free(ctx->attn);
    free(ctx->gate);
    free(ctx->up);
    for (uint32_t t = 0; t < LM_TYPE_COUNT; t++) free(ctx->act[t]);
    free(ctx->act_down);
    free(ctx->rope_cs);
    free(ctx->att_buf);
    free(ctx->att_sc);
    free(ctx->att_q);
    free(ctx->att_out);
    free(ctx->att_n);
    free(ctx->attn_cells);
    free(ctx->sort_tmp);
    free(ctx->seq_start);
    free(ctx->seq_count);
    free(ctx->seq_tmp);
    free(ctx->seq_contig);
    free(ctx->tok_cell);
    free(ctx->tok_nattn);
    free(ctx->out_rows);
    free(ctx->iota);
    free(ctx->blk_all);
    free(ctx->blk_out);
    free(ctx->logits);
    free(ctx);
}

uint32_t llamita_n_ctx(const llamita_context *ctx) { return ctx->n_ctx; }
const llamita_model *llamita_context_model(const llamita_context *ctx) { return ctx->model; }
int32_t lm_context_n_threads(const llamita_context *ctx) { return ctx->n_threads; }
const char *lm_context_cpu_level(const llamita_context *ctx) { return ctx->k->name; }

void **lm_context_user_slot(llamita_context *ctx, void (*free_fn)(void *)) {
    if (!ctx) return NULL;
    ctx->user_free = free_fn;
    return &ctx->user;
}

void llamita_kv_clear(llamita_context *ctx) {
    for (uint32_t c = 0; c < ctx->n_ctx; c++) ctx->cell_seq[c] = -1;
    ctx->n_used = 0;
}

void llamita_kv_seq_rm(llamita_context *ctx, llamita_seq_id seq, llamita_pos p0, llamita_pos p1) {
    if (p0 < 0) p0 = 0;
    for (uint32_t c = 0; c < ctx->n_ctx; c++) {
        const int32_t s = ctx->cell_seq[c];
        if (s < 0 || (seq >= 0 && s != seq)) continue;
        const int32_t p = ctx->cell_pos[c];
        if (p >= p0 && (p1 < 0 || p < p1)) {
            ctx->cell_seq[c] = -1;
            ctx->n_used--;
        }
    }
}

static void sort_cells_by_pos(int32_t *a, int32_t *tmp, int32_t n, const int32_t *pos);

/* Copies the cells of sequence src with positions in [p0, p1) (p1 < 0: to the end) to sequence dst:
 * the cells dst held in that range are dropped first, then each copied position gets the lowest free
 * cell (in increasing position order, so a copy into an empty region is contiguous) with the same
 * keys and values. Fails, changing nothing, on bad sequence ids or when the free cells are too few. */
int llamita_kv_seq_cp(llamita_context *ctx, llamita_seq_id src, llamita_seq_id dst, llamita_pos p0,
                      llamita_pos p1, char *err, size_t err_size) {
    if (!ctx) {
        lm_seterr(err, err_size, "kv_seq_cp: no context");
        return -1;
    }
    if (src < 0 || dst < 0 || (uint32_t)src >= ctx->n_seq_max || (uint32_t)dst >= ctx->n_seq_max) {
        lm_seterr(err, err_size, "kv_seq_cp: sequence ids %d -> %d: each must be in [0, %u)", src, dst,
                  ctx->n_seq_max);
        return -1;
    }
    if (p0 < 0) p0 = 0;
    if (src == dst) return 0;
#define IN_RANGE(c) (ctx->cell_pos[c] >= p0 && (p1 < 0 || ctx->cell_pos[c] < p1))
    int32_t n_copy = 0, n_free = 0;
    for (uint32_t c = 0; c < ctx->n_ctx; c++) {
        if (ctx->cell_seq[c] < 0 || (ctx->cell_seq[c] == dst && IN_RANGE(c))) n_free++;
        else if (ctx->cell_seq[c] == src && IN_RANGE(c)) n_copy++;
    }
    if (n_copy > n_free) {
        lm_seterr(err, err_size, "kv_seq_cp: copying %d cells of sequence %d needs %d free cells, %d are free",
                  n_copy, src, n_copy, n_free);
        return -1;
    }
    llamita_kv_seq_rm(ctx, dst, p0, p1);
    /* source cells by increasing position (attn_cells is scratch outside decode) */
    int32_t *cells = ctx->attn_cells, n = 0;
    for (uint32_t c = 0; c < ctx->n_ctx; c++)
        if (ctx->cell_seq[c] == src && IN_RANGE(c)) cells[n++] = (int32_t)c;
#undef IN_RANGE
    sort_cells_by_pos(cells, ctx->sort_tmp, n, ctx->cell_pos);
    const lm_hparams *hp = &ctx->model->hp;
    const size_t D = (size_t)hp->head_dim;
    uint32_t c = 0;
    for (int32_t j = 0; j < n; j++) {
        while (ctx->cell_seq[c] >= 0) c++; /* counted above: a free cell exists */
        const size_t from = (size_t)cells[j];
        for (int32_t il = 0; il < hp->n_layer; il++)
            for (int32_t g = 0; g < hp->n_head_kv; g++) {
                lm_fp16 *K = kv_k(ctx, il, g), *V = kv_v(ctx, il, g);
                memcpy(K + c * D, K + from * D, D * sizeof *K);
                for (size_t d = 0; d < D; d++) V[d * ctx->n_ctx + c] = V[d * ctx->n_ctx + from];
            }
        ctx->cell_seq[c] = dst;
        ctx->cell_pos[c] = ctx->cell_pos[from];
        ctx->n_used++;
        c++;
    }
    return 0;
}

llamita_pos llamita_kv_seq_pos_max(const llamita_context *ctx, llamita_seq_id seq) {
    int32_t mx = -1;
    for (uint32_t c = 0; c < ctx->n_ctx; c++)
        if (ctx->cell_seq[c] == seq && seq >= 0 && ctx->cell_pos[c] > mx) mx = ctx->cell_pos[c];
    return mx;
}

int32_t llamita_kv_used(const llamita_context *ctx) { return ctx->n_used; }

/* ================================================================================================
 * Batches
 * ============================================================================================== */

llamita_batch llamita_batch_init(int32_t n_tokens_max) {
    llamita_batch b;
    memset(&b, 0, sizeof b);
    if (n_tokens_max <= 0) return b;
    const size_t n = (size_t)n_tokens_max;
    b.token = calloc(n, sizeof *b.token);
    b.pos = calloc(n, sizeof *b.pos);
    b.seq_id = calloc(n, sizeof *b.seq_id);
    b.logits = calloc(n, sizeof *b.logits);
    if (!b.token || !b.pos || !b.seq_id || !b.logits) {
        llamita_batch_free(b);
        memset(&b, 0, sizeof b);
    }
    return b;
}

void llamita_batch_free(llamita_batch batch) {
    free(batch.token);
    free(batch.pos);
    free(batch.seq_id);
    free(batch.logits);
}

void llamita_batch_add(llamita_batch *batch, llamita_token token, llamita_pos pos,
                       llamita_seq_id seq_id, bool logits) {
    const int32_t i = batch->n_tokens;
    batch->token[i] = token;
    batch->pos[i] = pos;
    batch->seq_id[i] = seq_id;
    batch->logits[i] = logits ? 1 : 0;
    batch->n_tokens = i + 1;
}

/* ================================================================================================
 * Decode
 * ============================================================================================== */

/* The batch as the decoder reads it; NULL arrays take defaults so that llamita_decode_tokens needs
 * no allocation: pos NULL = pos0 + i, seq NULL = sequence 0, logits NULL = every token when
 * all_logits, else only the last one (llama.cpp's rule for a batch without logits flags). */
typedef struct bview {
    int32_t n;
    const llamita_token *token;
    const llamita_pos *pos;
    const llamita_seq_id *seq;
    const int8_t *logits;
    llamita_pos pos0;
    bool all_logits;
} bview;

static inline llamita_pos bv_pos(const bview *b, int32_t i) { return b->pos ? b->pos[i] : b->pos0 + i; }
static inline llamita_seq_id bv_seq(const bview *b, int32_t i) { return b->seq ? b->seq[i] : 0; }
static inline bool bv_out(const bview *b, int32_t i) {
    if (b->logits) return b->logits[i] != 0;
    return b->all_logits || i == b->n - 1;
}

/* Checks the whole batch against the cache without changing anything; grows the logits buffer if
 * needed. Returns the number of output rows, or -1 with a message. */
static int32_t validate_batch(llamita_context *ctx, const bview *b, char *err, size_t err_size) {
    const int32_t n_vocab = ctx->model->hp.n_vocab;
    if (b->n <= 0) {
        lm_seterr(err, err_size, "decode: empty batch (n_tokens = %d)", b->n);
        return -1;
    }
    if (!b->token) {
        lm_seterr(err, err_size, "decode: batch has no token array");
        return -1;
    }
    int32_t *last = ctx->seq_tmp; /* [n_seq_max] last position seen per sequence, -1 = none */
    for (uint32_t s = 0; s < ctx->n_seq_max; s++) last[s] = -1;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n; i++) {
        const llamita_token tok = b->token[i];
        const llamita_pos p = bv_pos(b, i);
        const llamita_seq_id s = bv_seq(b, i);
        if (tok < 0 || tok >= n_vocab) {
            lm_seterr(err, err_size, "decode: token id %d at batch index %d is out of range [0, %d)",
                      tok, i, n_vocab);
            return -1;
        }
        if (s < 0 || (uint32_t)s >= ctx->n_seq_max) {
            lm_seterr(err, err_size,
                      "decode: sequence id %d at batch index %d is out of range [0, %u)", s, i,
                      ctx->n_seq_max);
            return -1;
        }
        if (p < 0) {
            lm_seterr(err, err_size, "decode: position %d at batch index %d is negative", p, i);
            return -1;
        }
        if (p <= last[s]) {
            lm_seterr(err, err_size,
                      "decode: position %d of sequence %d at batch index %d does not come after "
                      "position %d earlier in the batch",
                      p, s, i, last[s]);
            return -1;
        }
        last[s] = p;
        if (bv_out(b, i)) n_out++;
    }
    const int32_t n_free = (int32_t)ctx->n_ctx - ctx->n_used;
    if (b->n > n_free) {
        lm_seterr(err, err_size, "context is full: n_ctx = %u, in use = %d, batch needs %d more",
                  ctx->n_ctx, ctx->n_used, b->n - n_free);
        return -1;
    }
    /* Positions already in the cache. The batch's positions of sequence s are increasing, so a
     * cached cell can only clash when its position is >= the first one of s in the batch; the exact
     * check (a scan of the batch) runs only for such cells. */
    int32_t *first = ctx->seq_tmp;
    for (uint32_t s = 0; s < ctx->n_seq_max; s++) first[s] = INT32_MAX;
    for (int32_t i = b->n - 1; i >= 0; i--) first[bv_seq(b, i)] = bv_pos(b, i);
    for (uint32_t c = 0; c < ctx->n_ctx; c++) {
        const int32_t s = ctx->cell_seq[c];
        if (s < 0 || (uint32_t)s >= ctx->n_seq_max || ctx->cell_pos[c] < first[s]) continue;
        for (int32_t i = 0; i < b->n; i++) {
            if (bv_seq(b, i) == s && bv_pos(b, i) == ctx->cell_pos[c]) {
                lm_seterr(err, err_size,
                          "decode: position %d of sequence %d (batch index %d) is already in the "
                          "KV cache",
                          ctx->cell_pos[c], s, i);
                return -1;
            }
        }
    }
    if (n_out > ctx->n_out_cap) {
        const uint64_t bytes = (uint64_t)n_out * (uint64_t)n_vocab * sizeof(float);
        float *nl = bytes <= SIZE_MAX ? realloc(ctx->logits, (size_t)bytes) : NULL;
        if (!nl) {
            lm_seterr(err, err_size, "decode: out of memory for %d rows of logits", n_out);
            return -1;
        }
        ctx->logits = nl;
        ctx->n_out_cap = n_out;
    }
    return n_out;
}

/* Sorts a[0..n) (cell ids) by cell position, stable merge sort using tmp[n]. */
static void sort_cells_by_pos(int32_t *a, int32_t *tmp, int32_t n, const int32_t *pos) {
    bool sorted = true;
    for (int32_t i = 1; i < n && sorted; i++) sorted = pos[a[i - 1]] <= pos[a[i]];
    if (sorted) return;
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            const int32_t mid = LM_MIN(lo + w, n), hi = LM_MIN(lo + 2 * w, n);
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = pos[a[j]] < pos[a[i]] ? a[j++] : a[i++];
            while (i < mid) tmp[k++] = a[i++];
            while (j < hi) tmp[k++] = a[j++];
        }
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}

/* Splits the query slots S[0..n) (ubatch token ids) into attention blocks: runs of at most tq
 * consecutive slots of one sequence. Block i covers slots [blk[i], blk[i + 1]). Returns the count. */
static int32_t make_blocks(const bview *b, int32_t i0, const int32_t *S, int32_t n, int32_t tq,
                           int32_t *blk) {
    int32_t nb = 0, i = 0;
    while (i < n) {
        blk[nb++] = i;
        const llamita_seq_id s = bv_seq(b, i0 + S[i]);
        int32_t j = i + 1;
        while (j < n && j - i < tq && bv_seq(b, i0 + S[j]) == s) j++;
        i = j;
    }
    blk[nb] = n;
    return nb;
}

/* ------------------------------------------------------------------------------------------------
 * The parallel forward pass of one ubatch: one thread-pool run (forward_worker) whose phases are
 * separated by barriers. Work inside a phase is split so that every value is computed by the same
 * code in the same order whatever the thread count:
 *   - norms and activation conversions: by token rows, or, with fewer rows than threads, each row
 *     in pieces of whole blocks (the rms sum is recomputed by every piece, identically);
 *   - matrix products: by output rows, in chunks handed out dynamically (lm_threadpool_next); for
 *     T > 1 the chunk size does not depend on the thread count, so a gemm kernel sees the same
 *     tiles; several matrices reading the same input (Q/K/V, gate/up) share one phase, with
 *     epilogues that run on each chunk while it is in cache (RoPE + KV store, silu(g) * u,
 *     residual add);
 *   - attention: by (block of query tokens, KV head), largest blocks first.
 * ---------------------------------------------------------------------------------------------- */

typedef struct fwd_args {
    llamita_context *ctx;
    const bview *b;
    int32_t i0, T, n_out, out_base;
} fwd_args;

/* Converted activations for the matrices that read one input. */
typedef struct act_set {
    int n;                /* distinct vec_dot_types (F32 excluded) */
    uint32_t vdt[3];
    size_t rs[3];         /* bytes per converted row */
    int64_t unit;         /* elements per piece unit: the largest block size among them */
} act_set;

static void act_set_init(act_set *as, const lm_weight *const *ws, int nw) {
    as->n = 0;
    as->unit = 1;
    for (int i = 0; i < nw; i++) {
        const lm_type_traits *tr = lm_type_traits_get(ws[i]->type);
        const uint32_t vdt = tr->vec_dot_type;
        if (vdt == LM_TYPE_F32) continue;
        bool seen = false;
        for (int j = 0; j < as->n; j++) seen |= as->vdt[j] == vdt;
        if (seen) continue;
        as->vdt[as->n] = vdt;
        as->rs[as->n] = lm_row_size(vdt, ws[i]->ne0);
        as->unit = LM_MAX(as->unit, lm_type_traits_get(vdt)->blck_size);
        as->n++;
    }
}

/* The activation rows a matrix reads: the converted buffer of its vec_dot_type, or the float rows
 * (src, row stride ld floats) themselves for F32 weights. */
static const void *act_for(const llamita_context *ctx, const lm_weight *w, const float *src,
                           int64_t ld, size_t *stride) {
    const uint32_t vdt = lm_type_traits_get(w->type)->vec_dot_type;
    if (vdt == LM_TYPE_F32) {
        *stride = (size_t)ld * sizeof(float);
        return src;
    }
    *stride = lm_row_size(vdt, w->ne0);
    return ctx->act[vdt];
}

/* Rows [0, T) of y[T][n] (row stride ld): optionally y = rmsnorm(x) * norm_w (norm_w != NULL), then
 * conversion of y into every buffer of as. Split by rows, or each row into pieces of whole units
 * when there are fewer rows than threads. */
static void norm_convert(llamita_context *ctx, const float *x, const float *norm_w, float *y,
                         int64_t n, int64_t ld, int32_t T, const act_set *as, float eps, int ith,
                         int nth) {
    if (!norm_w && as->n == 0) return;
    const int64_t n_units = n / as->unit;
    const int64_t ppr = T >= nth ? 1 : LM_MIN((int64_t)(nth + T - 1) / T, n_units); /* pieces/row */
    for (int64_t p = ith; p < (int64_t)T * ppr; p += nth) {
        const int64_t t = p / ppr, part = p % ppr;
        const int64_t e0 = part * n_units / ppr * as->unit, e1 = (part + 1) * n_units / ppr * as->unit;
        const float *xr = x + t * ld;
        float *yr = y + t * ld;
        if (norm_w) lm_rmsnorm_apply(xr, norm_w, yr, lm_rmsnorm_scale(xr, n, eps), e0, e1);
        for (int i = 0; i < as->n; i++) {
            const lm_type_traits *vt = lm_type_traits_get(as->vdt[i]);
            char *dst = (char *)ctx->act[as->vdt[i]] + (size_t)t * as->rs[i] +
                        (size_t)(e0 / vt->blck_size) * vt->type_size;
            ctx->k->from_float[as->vdt[i]](yr + e0, dst, e1 - e0);
        }
    }
}

enum { EPI_NONE, EPI_K, EPI_V, EPI_SILU, EPI_ADD };

#define MM_MAX_CHUNKS 64
#define MM_MIN_CHUNK_BYTES 65536 /* decode: smallest chunk of one weight matrix */

/* One matrix product of a phase: y[t][r] = W row r . act row t; with w2, y2 likewise from w2 (the
 * same rows of a second matrix, for the silu(gate) * up epilogue). */
typedef struct mm_job {
    const lm_weight *w, *w2;
    const void *act, *act2;
    size_t as, as2;
    float *y, *y2;
    int64_t ldy;
    int epi;
    float *res; /* EPI_ADD: res[t][r] += y[t][r] (row stride ldy) */
    /* after the epilogue (conv_vdt != 0): y[t][r0, r1) converted to conv_vdt into conv_dst
     * (conv_rs bytes per token row) for the next product; chunks then hold whole blocks */
    uint32_t conv_vdt;
    void *conv_dst;
    size_t conv_rs;
    int64_t chunk, n_chunks;
    /* T == 1: item c is rows [bound[c], bound[c + 1]) (decreasing sizes, see mm_job_set) */
    int32_t bound[MM_MAX_CHUNKS + 1];
} mm_job;

/* Work items of a product over w's rows: item c is rows [r0, r1) as mm_run computes them.
 * T > 1: items of `chunk` rows, rows / 8 within [64, 512] (a multiple of `align`), independent of the
 * thread count, so gemm calls and results do not depend on it; large enough that a gemm call's
 * per-call activation work is amortized (measured: 512-row calls take ~15% less CPU time than 64-row
 * calls for a Q8_0 pp512), small enough that 2-4 threads stay balanced.
 * T == 1 (decode; any split gives the same results, each row being one vec_dot): guided items in
 * bound[], each 1/(2 nth) of the rows left (a multiple of `align`), at least MM_MIN_CHUNK_BYTES of
 * weights, so a phase ends with small items and the threads reach the barrier together (equal items
 * of 1/(8 nth) instead: Q8_0 tg 5-8% slower at 2 threads). */
static void mm_job_set(mm_job *j, const lm_weight *w, const void *act, size_t as, float *y,
                       int64_t ldy, int epi, int32_t T, int nth, int64_t align) {
    memset(j, 0, sizeof *j);
    j->w = w;
    j->act = act;
    j->as = as;
    j->y = y;
    j->ldy = ldy;
    j->epi = epi;
    const int64_t rows = w->ne1;
    if (T > 1) {
        j->chunk = (LM_MIN(LM_MAX(rows / 8, 64), 512) + align - 1) / align * align;
        j->n_chunks = (rows + j->chunk - 1) / j->chunk;
        return;
    }
    const int64_t minc = LM_MAX((int64_t)(MM_MIN_CHUNK_BYTES / w->row_size) / align * align, align);
    int64_t r = 0;
    int n = 0;
    while (r < rows) {
        int64_t c = LM_MAX(((rows - r) / (2 * nth) + align - 1) / align * align, minc);
        if (n == MM_MAX_CHUNKS - 1 || r + c > rows) c = rows - r;
        j->bound[n++] = (int32_t)r;
        r += c;
    }
    j->bound[n] = (int32_t)rows;
    j->n_chunks = n;
}

/* Epilogue of rows [r0, r1) of job j for tokens [0, T), in the thread that computed them. */
static void mm_epilogue(llamita_context *ctx, const mm_job *j, int32_t il,
                        int32_t T, int64_t r0, int64_t r1) {
    const lm_hparams *hp = &ctx->model->hp;
    const int32_t HD = hp->head_dim;
    switch (j->epi) {
    case EPI_K: /* RoPE on whole heads, then f16 into the key rows */
        for (int32_t t = 0; t < T; t++) {
            float *kr = j->y + (size_t)t * (size_t)j->ldy;
            const float *cs = ctx->rope_cs + (size_t)t * (size_t)hp->n_rot;
            const int32_t cell = ctx->tok_cell[t];
            for (int64_t h = r0 / HD; h < r1 / HD; h++) {
                lm_rope_apply(kr + h * HD, 1, HD, hp->n_rot, cs);
                ctx->k->fp32_to_fp16(kr + h * HD, kv_k(ctx, il, (int32_t)h) + (size_t)cell * HD, HD);
            }
        }
        break;
    case EPI_V: /* f16 into the transposed values */
        for (int32_t t = 0; t < T; t++) {
            const float *vr = j->y + (size_t)t * (size_t)j->ldy;
            const int32_t cell = ctx->tok_cell[t];
            lm_fp16 v16[256]; /* a piece of the row, converted at once */
            for (int64_t r = r0; r < r1;) {
                const int64_t h = r / HD, d0 = r % HD, n = LM_MIN(LM_MIN(r1 - r, HD - d0), 256);
                ctx->k->fp32_to_fp16(vr + r, v16, n);
                lm_fp16 *vc = kv_v(ctx, il, (int32_t)h) + cell;
                for (int64_t d = 0; d < n; d++) vc[(size_t)(d0 + d) * ctx->n_ctx] = v16[d];
                r += n;
            }
        }
        break;
    case EPI_SILU:
        for (int32_t t = 0; t < T; t++) {
            float *g = j->y + (size_t)t * (size_t)j->ldy + r0;
            lm_silu_mul(g, j->y2 + (size_t)t * (size_t)j->ldy + r0, g, r1 - r0);
            if (j->conv_vdt) {
                const lm_type_traits *vt = lm_type_traits_get(j->conv_vdt);
                ctx->k->from_float[j->conv_vdt](g, (char *)j->conv_dst + (size_t)t * j->conv_rs +
                                                       (size_t)(r0 / vt->blck_size) * vt->type_size,
                                                r1 - r0);
            }
        }
        break;
    case EPI_ADD:
        for (int32_t t = 0; t < T; t++)
            lm_add_inplace(j->res + (size_t)t * (size_t)j->ldy + r0,
                           j->y + (size_t)t * (size_t)j->ldy + r0, r1 - r0);
        break;
    default:
        break;
    }
}

/* Runs the jobs' chunks until none is left (all threads of the phase call this). */
static void mm_run(llamita_context *ctx, const mm_job *jobs, int nj, int32_t il,
                   int32_t T) {
    int64_t total = 0;
    for (int i = 0; i < nj; i++) total += jobs[i].n_chunks;
    for (;;) {
        int64_t c = lm_threadpool_next(ctx->pool);
        if (c >= total) break;
        int i = 0;
        while (c >= jobs[i].n_chunks) c -= jobs[i++].n_chunks;
        const mm_job *j = &jobs[i];
        const int64_t r0 = T == 1 ? j->bound[c] : c * j->chunk;
        const int64_t r1 = T == 1 ? j->bound[c + 1] : LM_MIN(r0 + j->chunk, j->w->ne1);
        lm_matmul_rows(ctx->k, j->w, j->act, j->as, T, j->y, j->ldy, r0, r1);
        if (j->w2) lm_matmul_rows(ctx->k, j->w2, j->act2, j->as2, T, j->y2, j->ldy, r0, r1);
        mm_epilogue(ctx, j, il, T, r0, r1);
    }
}

/* Attention of layer il for the query slots S (ubatch tokens) in blocks blk[0..nb]; slot i's
 * output goes to attn row i. Thread 0 also moves the residual rows of the output tokens to the
 * front when `compact` (last layer; nothing else touches x in this phase). */
static void attention_phase(llamita_context *ctx, const fwd_args *f, int32_t il, const int32_t *S,
                            const int32_t *blk, int32_t nb, bool compact, const act_set *conv,
                            int ith) {
    const lm_hparams *hp = &ctx->model->hp;
    const int32_t HD = hp->head_dim, NH = hp->n_head, NHKV = hp->n_head_kv, gqa = NH / NHKV;
    const size_t NQ = (size_t)NH * (size_t)HD;
    const float kq_scale = 1.0f / sqrtf((float)HD);
    if (compact && ith == 0) {
        const size_t E = (size_t)hp->n_embd;
        for (int32_t j = 0; j < f->n_out; j++)
            if (S[j] != j) memcpy(ctx->x + (size_t)j * E, ctx->x + (size_t)S[j] * E, E * sizeof(float));
    }
    const float **qp = ctx->att_q + (size_t)ith * (size_t)ctx->att_rows;
    float **op = ctx->att_out + (size_t)ith * (size_t)ctx->att_rows;
    int32_t *na = ctx->att_n + (size_t)ith * (size_t)ctx->att_rows;
    const int64_t items = (int64_t)nb * NHKV;
    for (;;) {
        const int64_t it = lm_threadpool_next(ctx->pool);
        if (it >= items) break;
        const int32_t bi = nb - 1 - (int32_t)(it / NHKV), g = (int32_t)(it % NHKV);
        const int32_t s = bv_seq(f->b, f->i0 + S[blk[bi]]);
        int32_t n_rows = 0;
        for (int32_t i = blk[bi]; i < blk[bi + 1]; i++) {
            const int32_t t = S[i];
            for (int32_t hh = 0; hh < gqa; hh++) {
                const int32_t h = g * gqa + hh;
                float *qr = ctx->q + (size_t)t * NQ + (size_t)h * HD;
                lm_rope_apply(qr, 1, HD, hp->n_rot, ctx->rope_cs + (size_t)t * (size_t)hp->n_rot);
                qp[n_rows] = qr;
                op[n_rows] = ctx->attn + (size_t)i * NQ + (size_t)h * HD;
                na[n_rows] = ctx->tok_nattn[t];
                n_rows++;
            }
        }
        lm_attention_block(ctx->k, qp, op, na, n_rows, kv_k(ctx, il, g), kv_v(ctx, il, g), ctx->n_ctx,
                           ctx->attn_cells + ctx->seq_start[s], ctx->seq_contig[s], HD, kq_scale,
                           &ctx->att_sc[ith]);
        if (conv) { /* this KV head's slice of each output row, converted for Wo (whole blocks) */
            const uint32_t vdt = conv->vdt[0];
            const lm_type_traits *vt = lm_type_traits_get(vdt);
            const size_t e0 = (size_t)g * (size_t)gqa * (size_t)HD;
            for (int32_t i = blk[bi]; i < blk[bi + 1]; i++)
                ctx->k->from_float[vdt](ctx->attn + (size_t)i * NQ + e0,
                                        (char *)ctx->act[vdt] + (size_t)i * conv->rs[0] +
                                            e0 / (size_t)vt->blck_size * vt->type_size,
                                        (int64_t)gqa * HD);
        }
    }
}

static void forward_worker(void *arg, int ith, int nth) {
    const fwd_args *f = arg;
    llamita_context *ctx = f->ctx;
    const llamita_model *m = ctx->model;
    const lm_hparams *hp = &m->hp;
    lm_threadpool *pool = ctx->pool;
    const int32_t E = hp->n_embd, HD = hp->head_dim, NQ = hp->n_head * HD, NKV = ctx->n_kv_dim;
    const int32_t F = hp->n_ff, V = hp->n_vocab, T = f->T, n_out = f->n_out;
    const int32_t gqa = hp->n_head / hp->n_head_kv;
    int64_t head_align = 16; /* lcm(HD, 16): K chunks hold whole heads (RoPE in the epilogue) */
    while (head_align % HD != 0) head_align += 16;

    /* embeddings and the RoPE table of each token */
    const lm_type_traits *et = lm_type_traits_get(m->tok_embd.type);
    for (int32_t t = ith; t < T; t += nth) {
        et->to_float((const char *)m->tok_embd.data +
                         (size_t)f->b->token[f->i0 + t] * m->tok_embd.row_size,
                     ctx->x + (size_t)t * E, E);
        lm_rope_cache(bv_pos(f->b, f->i0 + t), hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale,
                      ctx->rope_cs + (size_t)t * (size_t)hp->n_rot);
    }
    lm_threadpool_barrier(pool);

    int32_t Tc = T; /* rows carried on (only the output rows after the last layer's attention) */
    for (int32_t il = 0; il < hp->n_layer; il++) {
        const lm_layer *L = &m->layers[il];
        const bool last = il == hp->n_layer - 1;
        const bool need_q = !(last && n_out == 0);
        act_set as;
        mm_job jobs[3];
        size_t st;
        const void *a;

        /* attention norm + conversion for Q/K/V; then the three products in one phase */
        {
            const lm_weight *ws[3] = {&L->wk, &L->wv, &L->wq};
            act_set_init(&as, ws, need_q ? 3 : 2);
            norm_convert(ctx, ctx->x, (const float *)L->attn_norm.data, ctx->xn, E, E, Tc, &as,
                         hp->rms_eps, ith, nth);
        }
        lm_threadpool_barrier(pool);
        int nj = 0;
        if (need_q) {
            a = act_for(ctx, &L->wq, ctx->xn, E, &st);
            mm_job_set(&jobs[nj++], &L->wq, a, st, ctx->q, NQ, EPI_NONE, Tc, nth, 16);
        }
        a = act_for(ctx, &L->wk, ctx->xn, E, &st);
        mm_job_set(&jobs[nj++], &L->wk, a, st, ctx->kx, NKV, EPI_K, Tc, nth, head_align);
        a = act_for(ctx, &L->wv, ctx->xn, E, &st);
        mm_job_set(&jobs[nj++], &L->wv, a, st, ctx->vx, NKV, EPI_V, Tc, nth, 16);
        mm_run(ctx, jobs, nj, il, Tc);
        lm_threadpool_barrier(pool);
        if (!need_q) break; /* K/V stored; nothing else is needed from this ubatch */

        /* attention; in the last layer only for the output rows, which move to the front. Each
         * work item converts its slice of the rows for Wo when the slices are whole blocks. */
        {
            const lm_weight *ws[1] = {&L->wo};
            act_set_init(&as, ws, 1);
        }
        const bool conv_wo = as.n == 1 && ((int64_t)gqa * HD) % as.unit == 0;
        const bool sel = last && n_out < Tc;
        if (sel)
            attention_phase(ctx, f, il, ctx->out_rows, ctx->blk_out, ctx->n_blk_out, true,
                            conv_wo ? &as : NULL, ith);
        else
            attention_phase(ctx, f, il, ctx->iota, ctx->blk_all, ctx->n_blk_all, false,
                            conv_wo ? &as : NULL, ith);
        lm_threadpool_barrier(pool);
        const int32_t Ta = last ? n_out : Tc;

        /* x += attn @ Wo */
        if (as.n > 0 && !conv_wo) {
            norm_convert(ctx, ctx->attn, NULL, ctx->attn, NQ, NQ, Ta, &as, 0.0f, ith, nth);
            lm_threadpool_barrier(pool);
        }
        a = act_for(ctx, &L->wo, ctx->attn, NQ, &st);
        mm_job_set(&jobs[0], &L->wo, a, st, ctx->xn, E, EPI_ADD, Ta, nth, 16);
        jobs[0].res = ctx->x;
        mm_run(ctx, jobs, 1, il, Ta);
        lm_threadpool_barrier(pool);

        /* ffn norm + conversion; gate and up in one phase with silu(gate) * up fused */
        {
            const lm_weight *ws[2] = {&L->ffn_gate, &L->ffn_up};
            act_set_init(&as, ws, 2);
            norm_convert(ctx, ctx->x, (const float *)L->ffn_norm.data, ctx->xn, E, E, Ta, &as,
                         hp->rms_eps, ith, nth);
        }
        lm_threadpool_barrier(pool);
        /* chunks of whole blocks of Wdown's activation type: each chunk converts its slice of h */
        {
            const lm_weight *ws[1] = {&L->ffn_down};
            act_set_init(&as, ws, 1);
        }
        a = act_for(ctx, &L->ffn_gate, ctx->xn, E, &st);
        mm_job_set(&jobs[0], &L->ffn_gate, a, st, ctx->gate, F, EPI_SILU, Ta, nth,
                   LM_MAX(as.unit, 16));
        jobs[0].w2 = &L->ffn_up;
        jobs[0].act2 = act_for(ctx, &L->ffn_up, ctx->xn, E, &jobs[0].as2);
        jobs[0].y2 = ctx->up;
        if (as.n == 1) { /* into its own buffer: the act buffers are still being read */
            jobs[0].conv_vdt = as.vdt[0];
            jobs[0].conv_dst = ctx->act_down;
            jobs[0].conv_rs = as.rs[0];
        }
        mm_run(ctx, jobs, 1, il, Ta);
        lm_threadpool_barrier(pool);

        /* x += h @ Wdown */
        a = act_for(ctx, &L->ffn_down, ctx->gate, F, &st);
        if (as.n == 1) a = ctx->act_down;
        mm_job_set(&jobs[0], &L->ffn_down, a, st, ctx->xn, E, EPI_ADD, Ta, nth, 16);
        jobs[0].res = ctx->x;
        mm_run(ctx, jobs, 1, il, Ta);
        lm_threadpool_barrier(pool);
        Tc = Ta;
    }
    if (n_out == 0) return;

    /* output: x holds exactly the n_out output rows now */
    act_set as;
    const lm_weight *ws[1] = {&m->output};
    act_set_init(&as, ws, 1);
    norm_convert(ctx, ctx->x, (const float *)m->output_norm.data, ctx->xn, E, E, n_out, &as,
                 hp->rms_eps, ith, nth);
    lm_threadpool_barrier(pool);
    size_t st;
    const void *a = act_for(ctx, &m->output, ctx->xn, E, &st);
    mm_job job;
    mm_job_set(&job, &m->output, a, st, ctx->logits + (size_t)f->out_base * (size_t)V, V, EPI_NONE,
               n_out, nth, 16);
    mm_run(ctx, &job, 1, hp->n_layer, n_out);
}

/* Evaluates tokens [i0, i0 + T) of the validated batch b; their logits rows start at out_base.
 * Returns the number of logits rows written. Cannot fail. */
static int32_t decode_ubatch(llamita_context *ctx, const bview *b, int32_t i0, int32_t T,
                             int32_t out_base) {
    /* 1. cells for the new tokens (the lowest free ones) */
    uint32_t c = 0;
    for (int32_t t = 0; t < T; t++) {
        while (ctx->cell_seq[c] >= 0) c++; /* validation guaranteed enough free cells */
        ctx->cell_seq[c] = bv_seq(b, i0 + t);
        ctx->cell_pos[c] = bv_pos(b, i0 + t);
        ctx->tok_cell[t] = (int32_t)c;
        ctx->n_used++;
        c++;
    }
    /* 2. cells grouped by sequence, each group sorted by position; per token, the length of the
     *    prefix of its group it attends to (positions <= its own) */
    for (uint32_t s = 0; s < ctx->n_seq_max; s++) ctx->seq_count[s] = 0;
    for (uint32_t k = 0; k < ctx->n_ctx; k++)
        if (ctx->cell_seq[k] >= 0) ctx->seq_count[ctx->cell_seq[k]]++;
    int32_t acc = 0;
    for (uint32_t s = 0; s < ctx->n_seq_max; s++) {
        ctx->seq_start[s] = acc;
        ctx->seq_tmp[s] = acc;
        acc += ctx->seq_count[s];
    }
    for (uint32_t k = 0; k < ctx->n_ctx; k++)
        if (ctx->cell_seq[k] >= 0) ctx->attn_cells[ctx->seq_tmp[ctx->cell_seq[k]]++] = (int32_t)k;
    for (uint32_t s = 0; s < ctx->n_seq_max; s++) {
        int32_t *seg = ctx->attn_cells + ctx->seq_start[s];
        sort_cells_by_pos(seg, ctx->sort_tmp, ctx->seq_count[s], ctx->cell_pos);
        bool contig = true;
        for (int32_t j = 1; j < ctx->seq_count[s] && contig; j++) contig = seg[j] == seg[0] + j;
        ctx->seq_contig[s] = contig ? 1 : 0;
    }
    for (int32_t t = 0; t < T; t++) {
        const int32_t s = bv_seq(b, i0 + t), p = bv_pos(b, i0 + t);
        const int32_t *seg = ctx->attn_cells + ctx->seq_start[s];
        int32_t lo = 0, hi = ctx->seq_count[s]; /* first index with pos > p */
        while (lo < hi) {
            const int32_t mid = lo + (hi - lo) / 2;
            if (ctx->cell_pos[seg[mid]] <= p) lo = mid + 1;
            else hi = mid;
        }
        ctx->tok_nattn[t] = lo; /* >= 1: the token's own cell */
    }
    int32_t n_out = 0;
    for (int32_t t = 0; t < T; t++)
        if (bv_out(b, i0 + t)) ctx->out_rows[n_out++] = t;
    ctx->n_blk_all = make_blocks(b, i0, ctx->iota, T, ctx->att_tq, ctx->blk_all);
    ctx->n_blk_out = make_blocks(b, i0, ctx->out_rows, n_out, ctx->att_tq, ctx->blk_out);

    /* 3. the layers, on the thread pool */
    fwd_args f = {ctx, b, i0, T, n_out, out_base};
    lm_threadpool_run(ctx->pool, forward_worker, &f);
    return n_out;
}

/* Validates b, then evaluates it in ubatches of <= n_batch tokens. */
static int decode_view(llamita_context *ctx, const bview *b, char *err, size_t err_size) {
    const int32_t n_out = validate_batch(ctx, b, err, err_size);
    if (n_out < 0) return -1;
    int32_t out = 0;
    for (int32_t i0 = 0; i0 < b->n; i0 += (int32_t)ctx->n_batch) {
        const int32_t T = LM_MIN((int32_t)ctx->n_batch, b->n - i0);
        out += decode_ubatch(ctx, b, i0, T, out);
    }
    ctx->n_outputs = out;
    return 0;
}

int llamita_decode(llamita_context *ctx, const llamita_batch *batch, char *err, size_t err_size) {
    if (!ctx || !batch) {
        lm_seterr(err, err_size, "decode: NULL context or batch");
        return -1;
    }
    if (!batch->pos) {
        /* Contract: positions are required (llamita_decode_tokens fills them automatically). */
        lm_seterr(err, err_size, "decode: batch has no position array");
        return -1;
    }
    bview b = {batch->n_tokens, batch->token, batch->pos, batch->seq_id, batch->logits, 0, false};
    return decode_view(ctx, &b, err, err_size);
}

int llamita_decode_tokens(llamita_context *ctx, const llamita_token *tokens, int32_t n,
                          bool all_logits, char *err, size_t err_size) {
    if (!ctx) {
        lm_seterr(err, err_size, "decode: NULL context");
        return -1;
    }
    const llamita_pos pos0 = llamita_kv_seq_pos_max(ctx, 0) + 1;
    if (n > 0 && pos0 > INT32_MAX - n) {
        lm_seterr(err, err_size, "decode: positions %d + %d tokens would overflow", pos0, n);
        return -1;
    }
    bview b = {n, tokens, NULL, NULL, NULL, pos0, all_logits};
    return decode_view(ctx, &b, err, err_size);
}

float *llamita_get_logits_ith(llamita_context *ctx, int32_t i) {
    if (!ctx) return NULL;
    if (i < 0) i += ctx->n_outputs;
    if (i < 0 || i >= ctx->n_outputs) return NULL;
    return ctx->logits + (size_t)i * (size_t)ctx->model->hp.n_vocab;
}

int32_t llamita_n_outputs(const llamita_context *ctx) { return ctx ? ctx->n_outputs : 0; }
