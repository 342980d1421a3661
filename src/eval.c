/*
 * Scoring of benchmark items (see eval.h and docs/eval.md).
 *
 * A pack is a run of consecutive items that fit together: one sequence per choice (<= n_seq_max in
 * all), their cells in the cache, and about n_batch tokens per phase. For each choice c the token list
 * T_c and the index s_c of its first scored token are built; the model's input is T_c without its last
 * token (that token's logits would predict nothing scored), and the logits at positions
 * s_c - 1 .. len_c - 2 give the log-probabilities of T_c[s_c ..]. The inputs of an item's choices share
 * a token prefix of length P (the context, usually):
 *   phase 1: one decode with the prefixes of all the pack's items, each in its item's first sequence,
 *            logits only where a choice scores a token;
 *   copy:    llamita_kv_seq_cp of the prefix to the item's other sequences;
 *   phase 2: one decode with every choice's remaining input tokens in its own sequence.
 * The log-probabilities are taken from the logits right after each phase (the next decode overwrites
 * them). The cache is emptied at the end of the pack.
 *
 * Memory: the buffers grow (amortized doubling) to the largest pack seen; nothing is allocated per
 * token or per item once they have reached that size.
 */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define EVAL_MAX_CHOICES 64

typedef struct ch_info {
    int32_t off;   /* start of T_c in the token arena */
    int32_t len;   /* tokens in T_c (>= 2) */
    int32_t start; /* s_c: index of the first scored token, in [1, len - 1] */
    int32_t seq;   /* sequence id in this pack */
} ch_info;

typedef struct it_info {
    int32_t ch0;       /* first choice in ch[] */
    int32_t n_choices;
    int32_t prefix;    /* P: tokens decoded once in the item's first sequence */
} it_info;

struct lm_eval_scorer {
    const llamita_model *model;
    llamita_context *ctx;
    lm_eval_opts o;
    int32_t n_vocab, kv_size;
    bool bos; /* BOS first in every sequence */
    llamita_token bos_id;

    char *text;            /* [text_cap] ctx + cont (and the context alone) */
    size_t text_cap;
    llamita_token *tok;    /* [tok_cap] arena: T_c of the pack's choices, one after the other */
    int32_t tok_n, tok_cap;
    llamita_token *tmp;    /* [tmp_cap] tokenizer output for the context alone */
    int32_t tmp_cap;
    ch_info ch[EVAL_MAX_CHOICES * 64]; /* choices of the pack (<= n_seq_max <= 4096) */
    it_info *it;           /* [it_cap] items of the pack */
    int32_t it_cap;
    llamita_batch batch;   /* [batch_cap] */
    int32_t batch_cap;

    int64_t n_decoded, n_rows, n_calls;
};

lm_eval_opts lm_eval_default_opts(void) {
    lm_eval_opts o;
    memset(&o, 0, sizeof o);
    o.scoring = LM_SCORING_HARNESS;
    o.bos = -1;
    o.max_len = 0;
    o.n_seq_max = 64;
    o.n_batch = 512;
    o.n_threads = 0;
    o.no_share = false;
    return o;
}

/* Grows *p (elements of size sz, capacity *cap) to hold at least need elements. false on OOM. */
static bool grow(void **p, int32_t *cap, int64_t need, size_t sz) {
    if (need <= *cap) return true;
    if (need > INT32_MAX / 2) return false;
    int64_t c = *cap > 0 ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q) return false;
    *p = q;
    *cap = (int32_t)c;
    return true;
}

lm_eval_scorer *lm_eval_scorer_new(llamita_model *model, const lm_eval_opts *opts, int32_t max_choices,
                                   char *err, size_t err_size) {
    if (!model || !opts) {
        lm_seterr(err, err_size, "eval: no model or options");
        return NULL;
    }
    lm_eval_scorer *s = calloc(1, sizeof *s);
    if (!s) {
        lm_seterr(err, err_size, "eval: out of memory");
        return NULL;
    }
    s->model = model;
    s->o = *opts;
    if (s->o.n_seq_max <= 0) s->o.n_seq_max = 64;
    if (s->o.n_seq_max > EVAL_MAX_CHOICES * 64) s->o.n_seq_max = EVAL_MAX_CHOICES * 64;
    if (s->o.n_batch <= 0) s->o.n_batch = 512;
    if (s->o.max_len <= 0) {
        /* the harness's max_length is the model's context (2048 when it says none); llama.cpp's
         * --hellaswag does not truncate (a task must fit its n_ctx) */
        const int32_t tr = llamita_model_n_ctx_train(model);
        s->o.max_len = s->o.scoring == LM_SCORING_HARNESS && tr > 0 && tr < 2048 ? tr : 2048;
    }
    if (max_choices < 1) max_choices = 1;
    if (max_choices > EVAL_MAX_CHOICES || max_choices > s->o.n_seq_max) {
        lm_seterr(err, err_size, "eval: items with %d choices: at most %d are supported", max_choices,
                  LM_MIN(EVAL_MAX_CHOICES, s->o.n_seq_max));
        free(s);
        return NULL;
    }
    s->n_vocab = llamita_model_n_vocab(model);
    s->bos_id = llamita_token_bos(model);
    if (s->o.scoring == LM_SCORING_LLAMACPP) s->bos = s->o.bos < 0 ? llamita_add_bos(model) : s->o.bos != 0;
    else s->bos = s->o.bos > 0;
    if (s->bos && s->bos_id < 0) s->bos = false;
    /* the cache holds one pack: at least one item of max_choices choices of max_len tokens each */
    int64_t kv = (int64_t)max_choices * s->o.max_len;
    if (kv < 4 * (int64_t)s->o.n_batch) kv = 4 * (int64_t)s->o.n_batch;
    if (kv < s->o.n_seq_max) kv = s->o.n_seq_max;
    if (kv > (int64_t)1 << 24) {
        lm_seterr(err, err_size, "eval: cache of %lld cells is too large", (long long)kv);
        free(s);
        return NULL;
    }
    s->kv_size = (int32_t)kv;
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = (uint32_t)s->kv_size;
    cp.n_batch = (uint32_t)s->o.n_batch;
    cp.n_threads = s->o.n_threads;
    cp.n_seq_max = (uint32_t)s->o.n_seq_max;
    s->ctx = llamita_context_new(model, cp, err, err_size);
    if (!s->ctx) {
        free(s);
        return NULL;
    }
    return s;
}

void lm_eval_scorer_free(lm_eval_scorer *s) {
    if (!s) return;
    llamita_context_free(s->ctx);
    free(s->text);
    free(s->tok);
    free(s->tmp);
    free(s->it);
    if (s->batch_cap > 0) llamita_batch_free(s->batch);
    free(s);
}

void lm_eval_scorer_stats(const lm_eval_scorer *s, int64_t *n_decoded, int64_t *n_rows, int64_t *n_calls) {
    if (n_decoded) *n_decoded = s->n_decoded;
    if (n_rows) *n_rows = s->n_rows;
    if (n_calls) *n_calls = s->n_calls;
}

/* Tokenizes text[0..len) without specials into s->tmp (grown as needed); returns the count or -1. */
static int32_t tokenize_tmp(lm_eval_scorer *s, const char *text, size_t len) {
    if (len > (size_t)INT32_MAX / 2) return -1;
    for (;;) {
        int32_t n = llamita_tokenize(s->model, text, (int32_t)len, s->tmp, s->tmp_cap, false, false);
        if (n >= 0) return n;
        if (n == INT32_MIN) return -1;
        if (!grow((void **)&s->tmp, &s->tmp_cap, -(int64_t)n, sizeof *s->tmp)) return -1;
    }
}

/* Appends the tokens of choice c of item to the arena and fills *ci (off, len, start; start before
 * the llama.cpp common-prefix rule). 0 or -1 with err. */
static int build_choice(lm_eval_scorer *s, const lm_eval_item *item, int32_t c, ch_info *ci, char *err,
                        size_t err_size) {
    const char *ctx = item->ctx[c] ? item->ctx[c] : "";
    const char *cont = item->cont[c] ? item->cont[c] : "";
    size_t nc = strlen(ctx), nk = strlen(cont);
    const bool llamacpp = s->o.scoring == LM_SCORING_LLAMACPP;
    /* harness: trailing whitespace of the context belongs to the continuation (the text is the same,
     * only the split point moves); llama.cpp scores the text as one string */
    size_t split = nc;
    if (!llamacpp)
        while (split > 0 && (ctx[split - 1] == ' ' || ctx[split - 1] == '\t' || ctx[split - 1] == '\n' ||
                             ctx[split - 1] == '\r' || ctx[split - 1] == '\v' || ctx[split - 1] == '\f'))
            split--;
    if (nc + nk + 1 > s->text_cap) {
        size_t cap = s->text_cap ? s->text_cap : 256;
        while (cap < nc + nk + 1) cap *= 2;
        char *t = realloc(s->text, cap);
        if (!t) goto oom;
        s->text = t;
        s->text_cap = cap;
    }
    memcpy(s->text, ctx, nc);
    memcpy(s->text + nc, cont, nk);
    s->text[nc + nk] = 0;

    /* whole = [BOS] tok(ctx + cont) */
    const int32_t n_whole = tokenize_tmp(s, s->text, nc + nk);
    if (n_whole < 0) goto oom;
    const int32_t lead = s->bos ? 1 : 0;
    if (!grow((void **)&s->tok, &s->tok_cap, (int64_t)s->tok_n + n_whole + 2, sizeof *s->tok)) goto oom;
    llamita_token *T = s->tok + s->tok_n;
    if (lead) T[0] = s->bos_id;
    memcpy(T + lead, s->tmp, sizeof *T * (size_t)n_whole);
    int32_t len = lead + n_whole, start;
    if (llamacpp) {
        start = lead; /* refined by the common prefix of the item's choices */
    } else {
        int32_t n_ctx_tok = 0;
        if (split > 0) {
            n_ctx_tok = tokenize_tmp(s, s->text, split);
            if (n_ctx_tok < 0) goto oom;
        }
        start = lead + n_ctx_tok;
        if (start == 0) {
            /* empty context without BOS: the harness puts its prefix token (BOS) first */
            if (s->bos_id >= 0) {
                memmove(T + 1, T, sizeof *T * (size_t)len);
                T[0] = s->bos_id;
                len++;
                start = 1;
            } else {
                start = 1; /* no BOS in the vocabulary: the first token cannot be scored */
            }
        }
    }
    if (len - start < 1 || len < 2) {
        lm_seterr(err, err_size, "line %d: choice %d has no continuation tokens to score", (int)item->line,
                  (int)c);
        return -1;
    }
    /* harness left truncation: the model sees at most max_len input tokens (len - 1) */
    if (len - 1 > s->o.max_len) {
        const int32_t drop = len - 1 - s->o.max_len;
        memmove(T, T + drop, sizeof *T * (size_t)(len - drop));
        len -= drop;
        start = LM_MAX(1, start - drop);
    }
    ci->off = s->tok_n;
    ci->len = len;
    ci->start = start;
    s->tok_n += len;
    return 0;
oom:
    lm_seterr(err, err_size, "line %d: out of memory (or bad text) tokenizing choice %d", (int)item->line,
              (int)c);
    return -1;
}

/* Length of the common prefix of a[0..na) and b[0..nb). */
static int32_t lcp(const llamita_token *a, int32_t na, const llamita_token *b, int32_t nb) {
    int32_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* Tokenizes item (its choices appended from ch[ch0]) and sets its shared prefix. 0 / -1 with err. */
static int build_item(lm_eval_scorer *s, const lm_eval_item *item, it_info *ii, int32_t ch0, char *err,
                      size_t err_size) {
    if (item->n_choices < 1 || item->n_choices > EVAL_MAX_CHOICES || item->n_choices > s->o.n_seq_max) {
        lm_seterr(err, err_size, "line %d: %d choices (at most %d are supported)", (int)item->line,
                  (int)item->n_choices, LM_MIN(EVAL_MAX_CHOICES, s->o.n_seq_max));
        return -1;
    }
    ii->ch0 = ch0;
    ii->n_choices = item->n_choices;
    for (int32_t c = 0; c < item->n_choices; c++)
        if (build_choice(s, item, c, &s->ch[ch0 + c], err, err_size) != 0) return -1;
    const ch_info *c0 = &s->ch[ch0];
    /* common prefix of the token lists */
    int32_t common = c0->len;
    for (int32_t c = 1; c < item->n_choices; c++) {
        const ch_info *ci = &s->ch[ch0 + c];
        common = LM_MIN(common, lcp(s->tok + c0->off, c0->len, s->tok + ci->off, ci->len));
    }
    if (s->o.scoring == LM_SCORING_LLAMACPP && item->n_choices > 1) {
        /* llama.cpp scores the tokens after the prefix common to all endings (at least one token,
         * at least the BOS before them) */
        for (int32_t c = 0; c < item->n_choices; c++) {
            ch_info *ci = &s->ch[ch0 + c];
            ci->start = LM_MIN(LM_MAX(common, 1), ci->len - 1);
        }
    }
    /* inputs are T_c[0 .. len_c - 1): their common prefix */
    int32_t P = common;
    for (int32_t c = 0; c < item->n_choices; c++) P = LM_MIN(P, s->ch[ch0 + c].len - 1);
    if (s->o.no_share || item->n_choices == 1) P = 0;
    ii->prefix = P;
    return 0;
}

/* Grows the batch to n tokens. */
static bool batch_reserve(lm_eval_scorer *s, int32_t n) {
    if (n <= s->batch_cap) return true;
    int32_t cap = s->batch_cap > 0 ? s->batch_cap : 256;
    while (cap < n) {
        if (cap > INT32_MAX / 2) return false;
        cap *= 2;
    }
    llamita_batch nb = llamita_batch_init(cap);
    if (!nb.token || !nb.pos || !nb.seq_id || !nb.logits) {
        llamita_batch_free(nb);
        return false;
    }
    if (s->batch_cap > 0) llamita_batch_free(s->batch);
    s->batch = nb;
    s->batch_cap = cap;
    return true;
}

/* log-softmax of logits[target] (double accumulation) and whether target is the argmax (lowest id
 * on ties). */
static double logprob(const float *logits, int32_t n_vocab, int32_t target, bool *is_max) {
    float mx = logits[0];
    int32_t arg = 0;
    for (int32_t j = 1; j < n_vocab; j++)
        if (logits[j] > mx) {
            mx = logits[j];
            arg = j;
        }
    double sum = 0.0;
    for (int32_t j = 0; j < n_vocab; j++) sum += exp((double)logits[j] - (double)mx);
    *is_max = arg == target;
    return (double)logits[target] - (double)mx - log(sum);
}

/* Scores position p (its logits in row) for every choice of item ii that scores T_c[p + 1] there
 * and whose own input covers p (shared: all choices; else only choice `only`). */
static void take_row(lm_eval_scorer *s, const it_info *ii, int32_t only, int32_t p, const float *row,
                     lm_eval_choice *out) {
    for (int32_t c = 0; c < ii->n_choices; c++) {
        if (only >= 0 && c != only) continue;
        const ch_info *ci = &s->ch[ii->ch0 + c];
        if (p < ci->start - 1 || p + 1 >= ci->len) continue;
        bool mx;
        const double lp = logprob(row, s->n_vocab, s->tok[ci->off + p + 1], &mx);
        lm_eval_choice *r = &out[ii->ch0 + c];
        r->ll += lp;
        r->n_tokens++;
        if (!mx) r->greedy = false;
    }
}

int32_t lm_eval_score_pack(lm_eval_scorer *s, const lm_eval_item *items, int32_t n_items,
                           lm_eval_choice *out, char *err, size_t err_size) {
    if (!s || !items || n_items < 1 || !out) {
        lm_seterr(err, err_size, "eval: nothing to score");
        return -1;
    }
    /* 1. choose the pack: consecutive items while sequences, cells and tokens per phase fit */
    s->tok_n = 0;
    int32_t n_it = 0, n_ch = 0, cells = 0, ph1 = 0, ph2 = 0;
    while (n_it < n_items) {
        if (!grow((void **)&s->it, &s->it_cap, n_it + 1, sizeof *s->it)) {
            lm_seterr(err, err_size, "eval: out of memory");
            return -1;
        }
        const lm_eval_item *item = &items[n_it];
        if (n_it > 0 && n_ch + item->n_choices > s->o.n_seq_max) break;
        const int32_t tok_mark = s->tok_n;
        it_info *ii = &s->it[n_it];
        if (build_item(s, item, ii, n_ch, err, err_size) != 0) return -1;
        int32_t c_cells = 0, c_ph2 = 0;
        for (int32_t c = 0; c < ii->n_choices; c++) {
            c_cells += s->ch[n_ch + c].len - 1;
            c_ph2 += s->ch[n_ch + c].len - 1 - ii->prefix;
        }
        if (c_cells > s->kv_size) {
            lm_seterr(err, err_size, "line %d: the item needs %d cache cells, the cache has %d",
                      (int)item->line, (int)c_cells, (int)s->kv_size);
            return -1;
        }
        if (n_it > 0 && (cells + c_cells > s->kv_size || ph1 + ii->prefix > s->o.n_batch ||
                         ph2 + c_ph2 > s->o.n_batch)) {
            s->tok_n = tok_mark;
            break;
        }
        for (int32_t c = 0; c < ii->n_choices; c++) {
            s->ch[n_ch + c].seq = n_ch + c;
            out[n_ch + c].ll = 0.0;
            out[n_ch + c].n_tokens = 0;
            out[n_ch + c].greedy = true;
        }
        cells += c_cells;
        ph1 += ii->prefix;
        ph2 += c_ph2;
        n_ch += ii->n_choices;
        n_it++;
    }
    if (!batch_reserve(s, LM_MAX(ph1, ph2) + 1)) {
        lm_seterr(err, err_size, "eval: out of memory for a batch of %d tokens", (int)LM_MAX(ph1, ph2));
        return -1;
    }
    llamita_kv_seq_rm(s->ctx, -1, 0, -1);
    llamita_batch *b = &s->batch;
    int rc = 0;

    /* 2. phase 1: the shared prefixes */
    if (ph1 > 0) {
        b->n_tokens = 0;
        for (int32_t i = 0; i < n_it; i++) {
            const it_info *ii = &s->it[i];
            int32_t need = INT32_MAX; /* first position whose logits some choice scores */
            for (int32_t c = 0; c < ii->n_choices; c++) need = LM_MIN(need, s->ch[ii->ch0 + c].start - 1);
            const ch_info *c0 = &s->ch[ii->ch0];
            for (int32_t p = 0; p < ii->prefix; p++)
                llamita_batch_add(b, s->tok[c0->off + p], p, c0->seq, p >= need);
        }
        rc = llamita_decode(s->ctx, b, err, err_size);
        if (rc != 0) goto fail;
        s->n_calls++;
        s->n_decoded += b->n_tokens;
        int32_t row = 0;
        for (int32_t i = 0, k = 0; i < n_it; i++) {
            const it_info *ii = &s->it[i];
            for (int32_t p = 0; p < ii->prefix; p++, k++) {
                if (!b->logits[k]) continue;
                const float *lg = llamita_get_logits_ith(s->ctx, row++);
                take_row(s, ii, -1, p, lg, out);
            }
        }
        s->n_rows += row;
        /* the prefix to the item's other sequences */
        for (int32_t i = 0; i < n_it; i++) {
            const it_info *ii = &s->it[i];
            if (ii->prefix == 0) continue;
            for (int32_t c = 1; c < ii->n_choices; c++) {
                rc = llamita_kv_seq_cp(s->ctx, s->ch[ii->ch0].seq, s->ch[ii->ch0 + c].seq, 0, ii->prefix, err,
                                       err_size);
                if (rc != 0) goto fail;
            }
        }
    }
    /* 3. phase 2: every choice's own input tokens */
    if (ph2 > 0) {
        b->n_tokens = 0;
        for (int32_t i = 0; i < n_it; i++) {
            const it_info *ii = &s->it[i];
            for (int32_t c = 0; c < ii->n_choices; c++) {
                const ch_info *ci = &s->ch[ii->ch0 + c];
                for (int32_t p = ii->prefix; p < ci->len - 1; p++)
                    llamita_batch_add(b, s->tok[ci->off + p], p, ci->seq, p >= ci->start - 1);
            }
        }
        rc = llamita_decode(s->ctx, b, err, err_size);
        if (rc != 0) goto fail;
        s->n_calls++;
        s->n_decoded += b->n_tokens;
        int32_t row = 0;
        for (int32_t i = 0, k = 0; i < n_it; i++) {
            const it_info *ii = &s->it[i];
            for (int32_t c = 0; c < ii->n_choices; c++) {
                const ch_info *ci = &s->ch[ii->ch0 + c];
                for (int32_t p = ii->prefix; p < ci->len - 1; p++, k++) {
                    if (!b->logits[k]) continue;
                    const float *lg = llamita_get_logits_ith(s->ctx, row++);
                    take_row(s, ii, c, p, lg, out);
                }
            }
        }
        s->n_rows += row;
    }
    llamita_kv_seq_rm(s->ctx, -1, 0, -1);
    return n_it;
fail:
    llamita_kv_seq_rm(s->ctx, -1, 0, -1);
    {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err ? err : "");
        lm_seterr(err, err_size, "items at lines %d-%d: %s", (int)items[0].line, (int)items[n_it - 1].line, tmp);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------------
 * Metrics
 * ---------------------------------------------------------------------------------------------- */

int32_t lm_eval_cont_len(const char *cont) {
    if (!cont) return 0;
    const unsigned char *p = (const unsigned char *)cont;
    if (*p == ' ') p++;
    int32_t n = 0;
    for (; *p; p++)
        if ((*p & 0xC0) != 0x80) n++; /* count lead bytes: one per code point */
    return n;
}

int32_t lm_eval_argmax(const double *x, int32_t n) {
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(x[i])) continue;
        if (best < 0 || x[i] > x[best]) best = i;
    }
    return best < 0 && n > 0 ? 0 : best;
}

void lm_eval_predict(const lm_eval_item *item, const lm_eval_choice *res, lm_eval_scoring scoring,
                     int32_t *pred, int32_t *pred_norm) {
    double a[EVAL_MAX_CHOICES], b[EVAL_MAX_CHOICES];
    const int32_t n = LM_MIN(item->n_choices, EVAL_MAX_CHOICES);
    for (int32_t c = 0; c < n; c++) {
        a[c] = res[c].ll;
        double d;
        if (scoring == LM_SCORING_LLAMACPP) d = res[c].n_tokens > 0 ? res[c].n_tokens : 1;
        else {
            const int32_t len = lm_eval_cont_len(item->cont[c]);
            d = len > 0 ? len : 1; /* harness divides by len(choice); an empty choice cannot occur */
        }
        b[c] = res[c].ll / d;
    }
    *pred = lm_eval_argmax(a, n);
    *pred_norm = lm_eval_argmax(b, n);
}

void lm_eval_mean_stderr(const double *x, int32_t n, double *mean, double *stderr_) {
    double m = 0.0;
    for (int32_t i = 0; i < n; i++) m += x[i];
    m = n > 0 ? m / n : 0.0;
    double v = 0.0;
    for (int32_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *stderr_ = n > 1 ? sqrt(v / (n - 1)) / sqrt((double)n) : 0.0;
}

static bool has_acc_norm(lm_eval_task t) {
    return t == LM_TASK_HELLASWAG || t == LM_TASK_OPENBOOKQA || t == LM_TASK_ARC_CHALLENGE ||
           t == LM_TASK_ARC_EASY || t == LM_TASK_PIQA;
}

const char *lm_eval_seed_metric(lm_eval_task task) { return has_acc_norm(task) ? "acc_norm" : "acc"; }

static void set_metric(lm_eval_metric *m, const char *name, double score, double se, int32_t n) {
    snprintf(m->metric, sizeof m->metric, "%s", name);
    m->score = score;
    m->stderr_ = se;
    m->n = n;
}

int32_t lm_eval_metrics(lm_eval_task task, lm_eval_scoring scoring, const lm_eval_item *items,
                        int32_t n_items, const lm_eval_choice *res, double *x, lm_eval_metric *m) {
    double mean, se;
    if (task == LM_TASK_LAMBADA) {
        /* acc: every continuation token is the greedy choice; ppl = exp(-mean ll) over items (the
         * harness's perplexity aggregation); its error by the delta method: ppl * stderr(ll) */
        int32_t k = 0;
        for (int32_t i = 0; i < n_items; i++) {
            x[i] = res[k].greedy ? 1.0 : 0.0;
            k += items[i].n_choices;
        }
        lm_eval_mean_stderr(x, n_items, &mean, &se);
        set_metric(&m[0], "acc", 100.0 * mean, 100.0 * se, n_items);
        k = 0;
        for (int32_t i = 0; i < n_items; i++) {
            x[i] = res[k].ll;
            k += items[i].n_choices;
        }
        lm_eval_mean_stderr(x, n_items, &mean, &se);
        const double ppl = exp(-mean);
        set_metric(&m[1], "ppl", ppl, ppl * se, n_items);
        return 2;
    }
    int32_t nm = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !has_acc_norm(task)) break;
        int32_t k = 0;
        for (int32_t i = 0; i < n_items; i++) {
            int32_t pa, pn;
            lm_eval_predict(&items[i], res + k, scoring, &pa, &pn);
            x[i] = (pass == 0 ? pa : pn) == items[i].gold ? 1.0 : 0.0;
            k += items[i].n_choices;
        }
        lm_eval_mean_stderr(x, n_items, &mean, &se);
        set_metric(&m[nm++], pass == 0 ? "acc" : "acc_norm", 100.0 * mean, 100.0 * se, n_items);
    }
    return nm;
}
