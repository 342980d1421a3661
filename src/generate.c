/*
 * Completions in the OpenAI / llama-cpp-python shapes: llamita_completion(),
 * llamita_chat_completion(), llamita_completion_default_params(), llamita_free().
 *
 * Behaviour follows llama-cpp-python's Llama.create_completion (v0.3.x) unless noted:
 *  - Prompt tokens: BOS (and EOS) as the model's add_bos_token/add_eos_token say, and the text
 *    tokenized with special=True, i.e. control tokens written in the prompt ("</s>", "<|user|>")
 *    become single tokens: llamita_tokenize(add_special = true, parse_special = true). An empty
 *    prompt is BOS alone, and (like llama-cpp-python, which then detokenizes the completion after a
 *    BOS) the completion's leading space is removed.
 *  - A prompt of n_ctx tokens or more is an error. max_tokens <= 0 means n_ctx - n_prompt, and
 *    larger values are cut to that.
 *  - Generation stops at an end-of-generation token (not counted, not in the text) unless
 *    ignore_eos (then those tokens get -inf logits and are never sampled, as llama.cpp's
 *    --ignore-eos does); at a stop string (the text is cut at its start; finish_reason "stop"); at
 *    max_tokens (finish_reason "length"); or when the chunk callback returns false ("stop").
 *    Stop strings are matched on the raw bytes and may span any number of tokens. When two stop
 *    strings complete at once the earliest occurrence wins (llama-cpp-python's non-streaming path
 *    takes the first one in list order; its streaming path, and OpenAI, the earliest). Empty stop
 *    strings are ignored.
 *  - Every text is decoded as Python's bytes.decode("utf-8", errors="ignore") would: ill-formed
 *    bytes (e.g. a lone byte token of a random model) are dropped, so every JSON text is valid UTF-8.
 *  - usage counts the prompt tokens (BOS included) and the generated tokens (those that formed a
 *    stop string included, an end-of-generation token not).
 *  - logprobs N >= 0: {"tokens", "text_offset", "token_logprobs", "top_logprobs"} computed from the
 *    raw logits (log-softmax, before penalties/temperature), top_logprobs a {token text: logprob}
 *    object of the N best (ties: higher id first), with the chosen token added (duplicate texts
 *    keep their first position and the last value, as a Python dict). Offsets count characters. With
 *    echo the prompt tokens (a leading BOS dropped) come first and the first entry is null, as in
 *    the OpenAI API; the prompt is then evaluated from scratch with logits for every position.
 *  - The KV cache of sequence 0 is reused for the longest common token prefix with what the last
 *    completion on this context left there (at least the last prompt token is evaluated again);
 *    the rest of sequence 0 is removed. Do not decode sequence 0 by hand between completions
 *    without llamita_kv_clear(): the reuse check only compares the cache's length.
 *  - Streaming: chunks are "text_completion" objects with the text produced since the previous
 *    chunk and finish_reason null, then one with text "" and the finish_reason. A chunk never
 *    contains the start of a possible stop string nor half a UTF-8 character, so the texts of the
 *    chunks joined are exactly the final text. With echo the prompt is the first chunk (llama-cpp-
 *    python does not echo when streaming; joining the chunks then gives the same text as the
 *    non-streamed result). Streamed chunks carry the logprobs of the tokens they complete. After the
 *    callback returned false the rest of the kept text and the final chunk are still delivered.
 *  - Chat completions render the messages with llamita_chat_apply_template(model,
 *    params->chat_template, ..., add_generation_prompt = true) and tokenize the result with
 *    parse_special; BOS is added as the model says unless the rendered text already begins with it
 *    (llama.cpp's server behaviour; llama-cpp-python adds none for Jinja templates, which costs
 *    quality with models trained with BOS, such as TinyLlama). The model's EOS text is an extra stop
 *    string (as llama-cpp-python adds eos_token). Results are llama-cpp-python's conversions of the
 *    text completion: "chat.completion" with message{role, content}, and "chat.completion.chunk"s:
 *    {"role": "assistant"} delta first, then {"content"} deltas, then {} with the finish_reason;
 *    logprobs in the chat shape {"content": [{token, bytes, logprob, top_logprobs}], "refusal"}.
 *
 * JSON is written by a small writer into buffers that are reused (streamed chunks are produced per
 * token, so nothing is allocated per token beyond amortized growth); every object is checked by
 * the tests by parsing it back with cJSON. Strings are escaped as cJSON does.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "generate.h"
#include "gguf.h"
#include "model.h"

/* ---------------------------------------------------------------------------------------------
 * Small growable buffers
 * ------------------------------------------------------------------------------------------- */

/* Ensures room for `more` further elements of size `elem` in *p (capacity *cap, n used), growing
 * geometrically; allocates when *p is NULL. False when out of memory or on overflow (*p unchanged
 * then). */
static bool grow(void **p, size_t *cap, size_t n, size_t more, size_t elem) {
    if (*p && more <= *cap - n) return true; /* (never leaves *p NULL, so callers may memcpy 0 bytes) */
    size_t need;
    if (__builtin_add_overflow(n, more, &need)) return false;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    size_t bytes;
    if (__builtin_mul_overflow(ncap, elem, &bytes)) return false;
    void *q = realloc(*p, bytes);
    if (!q) return false;
    *p = q;
    *cap = ncap;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8 (Python's decode("utf-8", errors="ignore"))
 * ------------------------------------------------------------------------------------------- */

/* Length of the well-formed character starting at s[0] (s has n >= 1 bytes), or minus the length
 * of the maximal ill-formed subpart to drop there (Unicode 3.9, table 3-7); an incomplete but so far
 * valid character at the end of s counts as ill-formed (its whole length). */
static int utf8_unit(const unsigned char *s, size_t n) {
    const unsigned char c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1; /* continuation byte, C0, C1, F5..FF */
    int k = 1;
    for (; k < need; k++) {
        if ((size_t)k >= n) return -k; /* incomplete at the end */
        const unsigned char b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
    }
    return need;
}

size_t lm_utf8_sanitize(const char *src, size_t n, char *dst) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < n) {
        if (s[i] < 0x80) { /* fast path for ASCII */
            dst[o++] = (char)s[i++];
            continue;
        }
        int u = utf8_unit(s + i, n - i);
        if (u < 0) {
            i += (size_t)(-u);
            continue;
        }
        if (dst + o != src + i) memmove(dst + o, src + i, (size_t)u);
        o += (size_t)u;
        i += (size_t)u;
    }
    return o;
}

size_t lm_utf8_cp_len(const char *src, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, c = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            c++;
            continue;
        }
        int u = utf8_unit(s + i, n - i);
        if (u < 0) i += (size_t)(-u);
        else {
            i += (size_t)u;
            c++;
        }
    }
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * Text stream and stop strings
 * ------------------------------------------------------------------------------------------- */

bool lm_ts_init(lm_textstream *ts, const char *const *stop, int32_t n_stop) {
    memset(ts, 0, sizeof *ts);
    if (n_stop > 0 && stop) {
        ts->stop = malloc((size_t)n_stop * sizeof *ts->stop);
        ts->stop_len = malloc((size_t)n_stop * sizeof *ts->stop_len);
        if (!ts->stop || !ts->stop_len) {
            lm_ts_free(ts);
            return false;
        }
        for (int32_t i = 0; i < n_stop; i++) {
            if (!stop[i] || !stop[i][0]) continue;
            ts->stop[ts->n_stop] = stop[i];
            ts->stop_len[ts->n_stop] = strlen(stop[i]);
            ts->n_stop++;
        }
    }
    ts->cap = 256;
    ts->buf = malloc(ts->cap);
    if (!ts->buf) {
        lm_ts_free(ts);
        return false;
    }
    return true;
}

void lm_ts_free(lm_textstream *ts) {
    free(ts->buf);
    free(ts->stop);
    free(ts->stop_len);
    memset(ts, 0, sizeof *ts);
}

int lm_ts_append(lm_textstream *ts, const char *piece, size_t n) {
    if (ts->stopped) return 1;
    if (n == 0) return 0;
    if (!grow((void **)&ts->buf, &ts->cap, ts->len, n, 1)) return -1;
    const size_t old = ts->len;
    memcpy(ts->buf + old, piece, n);
    ts->len += n;
    /* an occurrence must end in the new bytes: earlier text had none */
    size_t best = SIZE_MAX;
    for (int32_t s = 0; s < ts->n_stop; s++) {
        const size_t L = ts->stop_len[s];
        if (L > ts->len) continue;
        size_t from = old >= L - 1 ? old - (L - 1) : 0;
        if (from < ts->emitted) from = ts->emitted; /* emitted text never holds a stop's start */
        if (from >= best) continue;
        size_t lim = ts->len; /* only matches that start before the best so far matter */
        if (best != SIZE_MAX && best + L - 1 < lim) lim = best + L - 1;
        const size_t span = lim - from;
        if (span < L) continue;
        const char *hit = memmem(ts->buf + from, span, ts->stop[s], L);
        if (hit) best = (size_t)(hit - ts->buf);
    }
    if (best != SIZE_MAX) {
        ts->len = best;
        ts->stopped = true;
        return 1;
    }
    return 0;
}

size_t lm_ts_ready(const lm_textstream *ts, bool final) {
    if (final || ts->stopped) return ts->len;
    const size_t avail = ts->len - ts->emitted;
    size_t hold = 0;
    for (int32_t s = 0; s < ts->n_stop; s++) {
        /* longest proper prefix of stop s that the text ends with */
        size_t i = LM_MIN(ts->stop_len[s] - 1, avail);
        for (; i > hold; i--)
            if (!memcmp(ts->buf + ts->len - i, ts->stop[s], i)) break;
        if (i > hold) hold = i;
    }
    const size_t safe = avail - hold;
    return ts->emitted + llamita_utf8_complete_len(ts->buf + ts->emitted, safe);
}

/* ---------------------------------------------------------------------------------------------
 * JSON writer
 * ------------------------------------------------------------------------------------------- */

typedef struct jw {
    char *buf; /* [cap] NUL-terminated text of len bytes */
    size_t len, cap;
    bool oom;
} jw;

static void jw_mem(jw *w, const char *s, size_t n) {
    if (w->oom) return;
    if (!grow((void **)&w->buf, &w->cap, w->len, n + 1, 1)) {
        w->oom = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

static void jw_raw(jw *w, const char *s) { jw_mem(w, s, strlen(s)); }

/* A JSON string of s[0, n) (already valid UTF-8), escaped as cJSON does: \" \\ \b \f \n \r \t and
 * \u00XX for other control characters; everything else as it is. */
static void jw_str(jw *w, const char *s, size_t n) {
    jw_mem(w, "\"", 1);
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        jw_mem(w, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': jw_mem(w, "\\\"", 2); break;
        case '\\': jw_mem(w, "\\\\", 2); break;
        case '\b': jw_mem(w, "\\b", 2); break;
        case '\f': jw_mem(w, "\\f", 2); break;
        case '\n': jw_mem(w, "\\n", 2); break;
        case '\r': jw_mem(w, "\\r", 2); break;
        case '\t': jw_mem(w, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jw_mem(w, esc, 6);
        }
    }
    jw_mem(w, s + run, n - run);
    jw_mem(w, "\"", 1);
}

/* A number as cJSON prints it (15 significant digits unless that does not read back exactly,
 * then 17); null when not finite. */
static void jw_num(jw *w, double d) {
    if (!isfinite(d)) {
        jw_raw(w, "null");
        return;
    }
    char b[32];
    snprintf(b, sizeof b, "%1.15g", d);
    if (strtod(b, NULL) != d) snprintf(b, sizeof b, "%1.17g", d);
    jw_raw(w, b);
}

static void jw_int(jw *w, long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    jw_raw(w, b);
}

/* ---------------------------------------------------------------------------------------------
 * Per-context state
 * ------------------------------------------------------------------------------------------- */

struct lm_gen_state {
    llamita_token *tok; /* [cap] tokens held by sequence 0 at positions 0..n-1 */
    size_t n, cap;
    int32_t last_reused; /* prefix reused by the last completion */
};

static void gen_state_free(void *p) {
    lm_gen_state *s = p;
    if (!s) return;
    free(s->tok);
    free(s);
}

/* The context's state, created on first use; NULL when model.c keeps none (or out of memory). */
static lm_gen_state *gen_state(llamita_context *ctx) {
    void **slot = lm_context_user_slot(ctx, gen_state_free);
    if (!slot) return NULL;
    if (!*slot) *slot = calloc(1, sizeof(lm_gen_state));
    return *slot;
}

int32_t lm_gen_last_reused(llamita_context *ctx) {
    if (!ctx) return -1;
    void **slot = lm_context_user_slot(ctx, gen_state_free);
    return slot && *slot ? ((const lm_gen_state *)*slot)->last_reused : -1;
}

/* Records tokens appended to sequence 0; on out of memory the state is emptied, so that the next
 * completion simply does not reuse the cache. */
static void state_push(lm_gen_state *st, const llamita_token *t, size_t n) {
    if (!st) return;
    if (!grow((void **)&st->tok, &st->cap, st->n, n, sizeof *st->tok)) {
        st->n = 0;
        return;
    }
    memcpy(st->tok + st->n, t, n * sizeof *t);
    st->n += n;
}

/* ---------------------------------------------------------------------------------------------
 * One completion run
 * ------------------------------------------------------------------------------------------- */

typedef struct lp_top {
    llamita_token id;
    float lp;
} lp_top;

/* One entry of the logprobs lists: a token (prompt tokens with echo, then generated tokens). */
typedef struct lp_rec {
    llamita_token tok;
    float lp;         /* NAN = null */
    size_t top0;      /* its top-N entries: tops[top0, top0 + n_top) */
    int32_t n_top;    /* -1 = "top_logprobs" entry null */
    size_t raw_start; /* byte offset of its piece in the joined pieces of all entries */
} lp_rec;

typedef struct run {
    llamita_context *ctx;
    const llamita_model *m;
    const llamita_completion_params *p;
    bool chat;
    int32_t n_vocab, n_ctx;
    llamita_token *prompt; /* [n_prompt] */
    int32_t n_prompt;
    const char *prompt_text; /* for echo and text offsets (text completions) */
    size_t prompt_len;

    llamita_token *gen; /* [n_ctx] generated tokens */
    size_t *gen_end;    /* [n_ctx] end of generated token k's text in ts.buf (cut to a stop) */
    int32_t n_gen, max_gen;
    bool strip_space; /* empty prompt: drop the completion's leading space */
    lm_textstream ts;

    char *piece; /* [piece_cap] scratch for one token's text */
    size_t piece_cap;

    /* logprobs */
    int32_t top_n; /* -1 = off */
    lp_rec *lp;    /* [lp_cap] */
    size_t n_lp, lp_cap;
    lp_top *tops; /* [tops_cap] */
    size_t n_tops, tops_cap;
    lp_top *heap;       /* [top_n] selection scratch: the pending top-N, best first */
    int32_t pend_n;     /* entries in heap */
    double pend_lse;    /* log-sum-exp of the pending logits */
    struct kv_item { size_t key_off, key_len; float v; } *kv; /* [kv_cap] one top_logprobs dict */
    size_t kv_cap;
    char *kv_keys;      /* [kv_keys_cap] its keys' bytes */
    size_t kv_keys_len, kv_keys_cap;
    char *lp_raw;       /* [lp_raw_cap] pieces of the lp entries joined (for offsets) */
    size_t lp_raw_len, lp_raw_cap;
    size_t lp_gen0;     /* first lp entry of a generated token */
    size_t lp_reported; /* entries already sent in chunks */
    size_t text_base;   /* characters before the first lp entry's text (prompt length) */

    /* streaming */
    llamita_chunk_cb cb;
    void *user;
    bool cb_stopped;
    jw chunk; /* reused for every chunk */
    char *san; /* [san_cap] sanitized-text scratch */
    size_t san_cap;

    char id[64];
    long long created;
    const char *model_name;
    const char *finish;
    bool oom;
} run;

/* The text of token t (special tokens as nothing, as llama-cpp-python's detokenize) in r->piece;
 * returns its length or -1 on out of memory. */
static int32_t run_piece(run *r, llamita_token t) {
    for (;;) {
        int32_t lim = r->piece_cap > INT32_MAX ? INT32_MAX : (int32_t)r->piece_cap;
        int32_t k = llamita_token_to_piece(r->m, t, r->piece, lim, 0, false);
        if (k >= 0) return k;
        if (k == INT32_MIN) return 0;
        size_t need = (size_t)(-(int64_t)k);
        char *nb = realloc(r->piece, need);
        if (!nb) return -1;
        r->piece = nb;
        r->piece_cap = need;
    }
}

/* Sanitized copy of s[0, n) in r->san; returns its length (r->oom on failure, then 0). */
static size_t run_sanitize(run *r, const char *s, size_t n) {
    if (!grow((void **)&r->san, &r->san_cap, 0, n + 1, 1)) {
        r->oom = true;
        return 0;
    }
    size_t k = lm_utf8_sanitize(s, n, r->san);
    r->san[k] = 0;
    return k;
}

/* A random UUID4-like id "PREFIX<8-4-4-4-12 hex>". */
static void make_id(char *out, size_t size, const char *prefix) {
    unsigned char b[16];
    ssize_t got = getrandom(b, sizeof b, GRND_NONBLOCK);
    if (got != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48) ^
                     (uint64_t)(uintptr_t)out;
        for (int i = 0; i < 16; i++) {
            x += 0x9e3779b97f4a7c15ULL;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            b[i] = (unsigned char)((z ^ (z >> 31)) >> 24);
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, size,
             "%s%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", prefix, b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---- logprobs ---- */

/* Heap order: a ranks below b (the root of the min-heap is the worst kept entry). Ranking is
 * Python's sorted(zip(lp, id), reverse=True): higher logprob first, then higher id. */
static inline bool top_below(const lp_top *a, const lp_top *b) {
    return a->lp < b->lp || (a->lp == b->lp && a->id < b->id);
}

static void heap_down(lp_top *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < n && top_below(&h[l], &h[s])) s = l;
        if (r < n && top_below(&h[r], &h[s])) s = r;
        if (s == i) return;
        lp_top t = h[i];
        h[i] = h[s];
        h[s] = t;
        i = s;
    }
}

static int cmp_top_desc(const void *a, const void *b) {
    const lp_top *x = a, *y = b;
    if (top_below(x, y)) return 1;
    if (top_below(y, x)) return -1;
    return 0;
}

/* Scores logits[n_vocab]: their log-sum-exp (r->pend_lse) and the top-N (r->heap[0, pend_n),
 * best first). Computed from the raw logits, before any bias. */
static void lp_begin(run *r, const float *logits) {
    const int32_t V = r->n_vocab, N = r->top_n;
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < V; i++) sum += exp((double)logits[i] - (double)mx);
    r->pend_lse = (double)mx + log(sum);
    int32_t n = 0;
    for (int32_t i = 0; i < V && N > 0; i++) {
        lp_top c = {i, logits[i]};
        if (n < N) {
            r->heap[n++] = c;
            if (n == N)
                for (int32_t j = N / 2 - 1; j >= 0; j--) heap_down(r->heap, N, j);
        } else if (top_below(&r->heap[0], &c)) {
            r->heap[0] = c;
            heap_down(r->heap, N, 0);
        }
    }
    qsort(r->heap, (size_t)n, sizeof *r->heap, cmp_top_desc);
    for (int32_t j = 0; j < n; j++) r->heap[j].lp = (float)((double)r->heap[j].lp - r->pend_lse);
    r->pend_n = n;
}

/* Appends the logprobs entry of token t: with_top = its value is logit - pend_lse and its top-N
 * are the pending ones (lp_begin), else null value and null top. Its piece joins lp_raw for the
 * offsets. False when out of memory. */
static bool lp_push(run *r, llamita_token t, float logit, bool with_top) {
    if (!grow((void **)&r->lp, &r->lp_cap, r->n_lp, 1, sizeof *r->lp)) return false;
    lp_rec *e = &r->lp[r->n_lp];
    e->tok = t;
    e->lp = with_top ? (float)((double)logit - r->pend_lse) : NAN;
    e->top0 = r->n_tops;
    e->n_top = -1;
    e->raw_start = r->lp_raw_len;
    if (with_top) {
        if (!grow((void **)&r->tops, &r->tops_cap, r->n_tops, (size_t)r->pend_n, sizeof *r->tops)) return false;
        memcpy(r->tops + r->n_tops, r->heap, (size_t)r->pend_n * sizeof *r->tops);
        r->n_tops += (size_t)r->pend_n;
        e->n_top = r->pend_n;
    }
    int32_t k = run_piece(r, t);
    if (k < 0) return false;
    if (!grow((void **)&r->lp_raw, &r->lp_raw_cap, r->lp_raw_len, (size_t)k, 1)) return false;
    memcpy(r->lp_raw + r->lp_raw_len, r->piece, (size_t)k);
    r->lp_raw_len += (size_t)k;
    r->n_lp++;
    return true;
}

/* Writes the sanitized text of token t as a JSON string. */
static void jw_token_text(run *r, jw *w, llamita_token t) {
    int32_t k = run_piece(r, t);
    if (k < 0) {
        r->oom = true;
        k = 0;
    }
    size_t n = lm_utf8_sanitize(r->piece, (size_t)k, r->piece);
    jw_str(w, r->piece, n);
}

/* Builds the {token text: logprob} dict of entry e in r->kv / r->kv_keys, with a Python dict's
 * rules: the top-N in rank order, then the chosen token; a text seen before keeps its position and
 * takes the new value. Returns the number of items (-1 on out of memory). */
static int32_t top_items(run *r, const lp_rec *e) {
    int32_t n = 0;
    r->kv_keys_len = 0;
    for (int32_t j = 0; j <= e->n_top; j++) {
        const bool chosen = j == e->n_top;
        const llamita_token t = chosen ? e->tok : r->tops[e->top0 + (size_t)j].id;
        const float v = chosen ? e->lp : r->tops[e->top0 + (size_t)j].lp;
        int32_t k = run_piece(r, t);
        if (k < 0) return -1;
        size_t kl = lm_utf8_sanitize(r->piece, (size_t)k, r->piece);
        int32_t q = 0;
        for (; q < n; q++)
            if (r->kv[q].key_len == kl && !memcmp(r->kv_keys + r->kv[q].key_off, r->piece, kl)) break;
        if (q < n) {
            r->kv[q].v = v;
            continue;
        }
        if (!grow((void **)&r->kv, &r->kv_cap, (size_t)n, 1, sizeof *r->kv) ||
            !grow((void **)&r->kv_keys, &r->kv_keys_cap, r->kv_keys_len, kl, 1))
            return -1;
        memcpy(r->kv_keys + r->kv_keys_len, r->piece, kl);
        r->kv[n].key_off = r->kv_keys_len;
        r->kv[n].key_len = kl;
        r->kv[n].v = v;
        r->kv_keys_len += kl;
        n++;
    }
    return n;
}

/* Number of characters of the sanitized joined pieces of entries [0, i). */
static size_t lp_offset(const run *r, size_t i) {
    return r->text_base + lm_utf8_cp_len(r->lp_raw, i < r->n_lp ? r->lp[i].raw_start : r->lp_raw_len);
}

/* Writes the logprobs object of entries [from, to) in the text-completion shape (BOS entries left
 * out; with echo the first entry of the whole list is null), or in the chat shape. */
static void jw_logprobs(run *r, jw *w, size_t from, size_t to) {
    const llamita_token bos = llamita_token_bos(r->m);
    size_t first_out = SIZE_MAX; /* the first non-BOS entry: null with echo */
    if (r->p->echo && !r->chat)
        for (size_t i = 0; i < r->n_lp; i++)
            if (r->lp[i].tok != bos) {
                first_out = i;
                break;
            }
    if (r->chat) {
        jw_raw(w, "{\"content\": [");
        bool first = true;
        for (size_t i = from; i < to; i++) {
            const lp_rec *e = &r->lp[i];
            if (e->tok == bos) continue;
            if (!first) jw_raw(w, ", ");
            first = false;
            jw_raw(w, "{\"token\": ");
            jw_token_text(r, w, e->tok);
            jw_raw(w, ", \"bytes\": null, \"logprob\": ");
            jw_num(w, (double)e->lp);
            jw_raw(w, ", \"top_logprobs\": [");
            int32_t n = e->n_top >= 0 ? top_items(r, e) : 0;
            if (n < 0) r->oom = true;
            for (int32_t q = 0; q < n; q++) {
                if (q) jw_raw(w, ", ");
                jw_raw(w, "{\"token\": ");
                jw_str(w, r->kv_keys + r->kv[q].key_off, r->kv[q].key_len);
                jw_raw(w, ", \"logprob\": ");
                jw_num(w, (double)r->kv[q].v);
                jw_raw(w, ", \"bytes\": null}");
            }
            jw_raw(w, "]}");
        }
        jw_raw(w, "], \"refusal\": null}");
        return;
    }
    jw_raw(w, "{\"tokens\": [");
    bool first = true;
    for (size_t i = from; i < to; i++) {
        if (r->lp[i].tok == bos) continue;
        if (!first) jw_raw(w, ", ");
        first = false;
        jw_token_text(r, w, r->lp[i].tok);
    }
    jw_raw(w, "], \"text_offset\": [");
    first = true;
    for (size_t i = from; i < to; i++) {
        if (r->lp[i].tok == bos) continue;
        if (!first) jw_raw(w, ", ");
        first = false;
        jw_int(w, (long long)lp_offset(r, i));
    }
    jw_raw(w, "], \"token_logprobs\": [");
    first = true;
    for (size_t i = from; i < to; i++) {
        if (r->lp[i].tok == bos) continue;
        if (!first) jw_raw(w, ", ");
        first = false;
        if (i == first_out) jw_raw(w, "null");
        else jw_num(w, (double)r->lp[i].lp);
    }
    jw_raw(w, "], \"top_logprobs\": [");
    first = true;
    for (size_t i = from; i < to; i++) {
        const lp_rec *e = &r->lp[i];
        if (e->tok == bos) continue;
        if (!first) jw_raw(w, ", ");
        first = false;
        int32_t n = (i == first_out || e->n_top < 0) ? -2 : top_items(r, e);
        if (n == -2) {
            jw_raw(w, "null");
            continue;
        }
        if (n < 0) {
            r->oom = true;
            n = 0;
        }
        jw_raw(w, "{");
        for (int32_t q = 0; q < n; q++) {
            if (q) jw_raw(w, ", ");
            jw_str(w, r->kv_keys + r->kv[q].key_off, r->kv[q].key_len);
            jw_raw(w, ": ");
            jw_num(w, (double)r->kv[q].v);
        }
        jw_raw(w, "}");
    }
    jw_raw(w, "]}");
}

/* ---- streaming ---- */

/* Sends one chunk: text raw[0, n) (sanitized here), the logprobs of entries [lp_from, lp_to)
 * (none when equal) and finish_reason (NULL = null). role_only: the chat's first chunk. Returns the
 * callback's answer (true after it has said stop: the rest is delivered regardless). */
static bool send_chunk(run *r, const char *raw, size_t n, size_t lp_from, size_t lp_to, const char *finish,
                       bool role_only) {
    jw *w = &r->chunk;
    w->len = 0;
    w->oom = false;
    size_t tn = run_sanitize(r, raw, n);
    const bool with_lp = r->top_n >= 0 && lp_to > lp_from;
    if (r->chat) {
        jw_raw(w, "{\"id\": ");
        jw_str(w, r->id, strlen(r->id));
        jw_raw(w, ", \"model\": ");
        jw_str(w, r->model_name, strlen(r->model_name));
        jw_raw(w, ", \"created\": ");
        jw_int(w, r->created);
        jw_raw(w, ", \"object\": \"chat.completion.chunk\", \"choices\": [{\"index\": 0, \"delta\": ");
        if (role_only) jw_raw(w, "{\"role\": \"assistant\"}");
        else if (finish) jw_raw(w, "{}");
        else {
            jw_raw(w, "{\"content\": ");
            jw_str(w, r->san, tn);
            jw_raw(w, "}");
        }
    } else {
        jw_raw(w, "{\"id\": ");
        jw_str(w, r->id, strlen(r->id));
        jw_raw(w, ", \"object\": \"text_completion\", \"created\": ");
        jw_int(w, r->created);
        jw_raw(w, ", \"model\": ");
        jw_str(w, r->model_name, strlen(r->model_name));
        jw_raw(w, ", \"choices\": [{\"text\": ");
        jw_str(w, r->san, tn);
        jw_raw(w, ", \"index\": 0");
    }
    jw_raw(w, ", \"logprobs\": ");
    if (with_lp) jw_logprobs(r, w, lp_from, lp_to);
    else jw_raw(w, "null");
    jw_raw(w, ", \"finish_reason\": ");
    if (finish) jw_str(w, finish, strlen(finish));
    else jw_raw(w, "null");
    jw_raw(w, "}]}");
    if (w->oom) {
        r->oom = true;
        return false;
    }
    bool go = r->cb(w->buf, r->user);
    if (r->cb_stopped) return true;
    return go;
}

/* Streams what may be handed out now (everything when final). Generated token k's logprobs go
 * with the chunk that completes its text. Returns false when the callback asked to stop. */
static bool stream_ready(run *r, bool final) {
    lm_textstream *ts = &r->ts;
    size_t end = lm_ts_ready(ts, final);
    size_t lp_to = r->lp_reported;
    if (r->top_n >= 0) {
        size_t k = lp_to - r->lp_gen0; /* next generated token to report */
        while (k < (size_t)r->n_gen) {
            const size_t start = k ? r->gen_end[k - 1] : 0;
            bool done = final ? (start < end || !ts->stopped) : r->gen_end[k] <= end;
            if (!done) break;
            k++;
        }
        lp_to = r->lp_gen0 + k;
        if (lp_to > r->n_lp) lp_to = r->n_lp;
    }
    /* nothing to show (no bytes, or only ill-formed ones): wait for more, so that every chunk
     * but the last before the final one has text; at the end, pending logprobs still go out */
    if (lm_utf8_cp_len(ts->buf + ts->emitted, end - ts->emitted) == 0 && (!final || lp_to == r->lp_reported)) {
        if (final) ts->emitted = end;
        return true;
    }
    const size_t from = ts->emitted;
    const size_t lp_from = r->lp_reported;
    ts->emitted = end;
    r->lp_reported = lp_to;
    return send_chunk(r, ts->buf + from, end - from, lp_from, lp_to, NULL, false);
}

/* ---- the final object ---- */

static char *final_object(run *r) {
    jw w = {0};
    size_t tn = run_sanitize(r, r->ts.buf, r->ts.len);
    if (r->chat) {
        jw_raw(&w, "{\"id\": ");
        jw_str(&w, r->id, strlen(r->id));
        jw_raw(&w, ", \"object\": \"chat.completion\", \"created\": ");
        jw_int(&w, r->created);
        jw_raw(&w, ", \"model\": ");
        jw_str(&w, r->model_name, strlen(r->model_name));
        jw_raw(&w, ", \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": ");
        jw_str(&w, r->san, tn);
        jw_raw(&w, "}");
    } else {
        jw_raw(&w, "{\"id\": ");
        jw_str(&w, r->id, strlen(r->id));
        jw_raw(&w, ", \"object\": \"text_completion\", \"created\": ");
        jw_int(&w, r->created);
        jw_raw(&w, ", \"model\": ");
        jw_str(&w, r->model_name, strlen(r->model_name));
        jw_raw(&w, ", \"choices\": [{\"text\": ");
        if (r->p->echo) {
            /* prompt + completion as one string: write the prompt's sanitized bytes, then ours */
            char *both = malloc(r->prompt_len + tn + 1);
            if (!both) {
                free(w.buf);
                r->oom = true;
                return NULL;
            }
            size_t pn = lm_utf8_sanitize(r->prompt_text, r->prompt_len, both);
            memcpy(both + pn, r->san, tn);
            jw_str(&w, both, pn + tn);
            free(both);
        } else {
            jw_str(&w, r->san, tn);
        }
        jw_raw(&w, ", \"index\": 0");
    }
    jw_raw(&w, ", \"logprobs\": ");
    if (r->top_n >= 0) jw_logprobs(r, &w, 0, r->n_lp);
    else jw_raw(&w, "null");
    jw_raw(&w, ", \"finish_reason\": ");
    jw_str(&w, r->finish, strlen(r->finish));
    jw_raw(&w, "}], \"usage\": {\"prompt_tokens\": ");
    jw_int(&w, r->n_prompt);
    jw_raw(&w, ", \"completion_tokens\": ");
    jw_int(&w, r->n_gen);
    jw_raw(&w, ", \"total_tokens\": ");
    jw_int(&w, (long long)r->n_prompt + r->n_gen);
    jw_raw(&w, "}}");
    if (w.oom || r->oom) {
        free(w.buf);
        r->oom = true;
        return NULL;
    }
    return w.buf;
}

/* ---- the loop ---- */

static void run_free(run *r) {
    free(r->gen);
    free(r->gen_end);
    lm_ts_free(&r->ts);
    free(r->piece);
    free(r->lp);
    free(r->tops);
    free(r->heap);
    free(r->lp_raw);
    free(r->chunk.buf);
    free(r->san);
    free(r->kv);
    free(r->kv_keys);
}

#define LM_ECHO_CHUNK 32 /* prompt tokens per decode when every position's logits are needed */

/* Runs the completion described by r (ctx, m, p, chat, prompt tokens, prompt text, cb, id, model
 * name and the stop strings `stop[n_stop]` set by the caller). Returns the final JSON or NULL with
 * err. */
static char *run_completion(run *r, const char *const *stop, int32_t n_stop, char *err, size_t err_size) {
    llamita_context *ctx = r->ctx;
    const llamita_completion_params *p = r->p;
    const char *what = r->chat ? "chat completion" : "completion";
    char e2[512] = "";
    char *result = NULL;
    llamita_sampler *smpl = NULL;
    llamita_token *eog = NULL;
    int32_t n_eog = 0;

    r->n_vocab = llamita_model_n_vocab(r->m);
    r->n_ctx = (int32_t)LM_MIN(llamita_n_ctx(ctx), (uint32_t)INT32_MAX);
    if (r->n_prompt >= r->n_ctx) {
        lm_seterr(err, err_size,
                  "%s: the prompt is %d tokens, which does not fit the context of %d tokens (at least one "
                  "token must be left to generate)",
                  what, (int)r->n_prompt, (int)r->n_ctx);
        return NULL;
    }
    r->max_gen = r->n_ctx - r->n_prompt;
    if (p->max_tokens > 0 && p->max_tokens < r->max_gen) r->max_gen = p->max_tokens;
    r->top_n = p->logprobs < 0 ? -1 : LM_MIN(p->logprobs, r->n_vocab);
    r->finish = "length";

    r->gen = malloc((size_t)r->max_gen * sizeof *r->gen);
    r->gen_end = malloc((size_t)r->max_gen * sizeof *r->gen_end);
    r->piece_cap = 64;
    r->piece = malloc(r->piece_cap);
    if (r->top_n > 0) r->heap = malloc((size_t)r->top_n * sizeof *r->heap);
    if (!r->gen || !r->gen_end || !r->piece || (r->top_n > 0 && !r->heap) || !lm_ts_init(&r->ts, stop, n_stop))
        goto oom;

    smpl = llamita_sampler_new(&p->sampling, r->n_vocab, e2, sizeof e2);
    if (!smpl) {
        lm_seterr(err, err_size, "%s: %s", what, e2);
        goto fail;
    }
    if (p->ignore_eos) {
        for (llamita_token t = 0; t < r->n_vocab; t++)
            if (llamita_token_is_eog(r->m, t)) n_eog++;
        if (n_eog > 0 && !(eog = malloc((size_t)n_eog * sizeof *eog))) goto oom;
        n_eog = 0;
        for (llamita_token t = 0; t < r->n_vocab; t++)
            if (llamita_token_is_eog(r->m, t)) eog[n_eog++] = t;
    }
    for (int32_t i = 0; i < r->n_prompt; i++) llamita_sampler_accept(smpl, r->prompt[i]);

    /* ---- the prompt: reuse the cached prefix, evaluate the rest ---- */
    const bool echo_lp = p->echo && r->top_n >= 0 && !r->chat;
    lm_gen_state *st = gen_state(ctx);
    int32_t keep = 0;
    if (st) {
        const int64_t held = (int64_t)llamita_kv_seq_pos_max(ctx, 0) + 1; /* tokens of sequence 0 */
        if (held != (int64_t)st->n) st->n = 0; /* changed behind our back: reuse nothing */
        if (!echo_lp)
            while ((size_t)keep < st->n && keep < r->n_prompt - 1 && st->tok[keep] == r->prompt[keep]) keep++;
        st->n = (size_t)keep;
        st->last_reused = keep;
    }
    llamita_kv_seq_rm(ctx, 0, keep, -1);
    r->text_base = (p->echo || r->chat) ? 0 : lm_utf8_cp_len(r->prompt_text, r->prompt_len);
    if (echo_lp) {
        const llamita_token bos = llamita_token_bos(r->m);
        if (r->prompt[0] != bos && !lp_push(r, r->prompt[0], 0.0f, false)) goto oom;
        for (int32_t c0 = 0; c0 < r->n_prompt; c0 += LM_ECHO_CHUNK) {
            const int32_t c = LM_MIN(LM_ECHO_CHUNK, r->n_prompt - c0);
            if (llamita_decode_tokens(ctx, r->prompt + c0, c, true, e2, sizeof e2) < 0) {
                lm_seterr(err, err_size, "%s: evaluating the prompt failed: %s", what, e2);
                goto fail;
            }
            state_push(st, r->prompt + c0, (size_t)c);
            for (int32_t j = 0; j < c && c0 + j + 1 < r->n_prompt; j++) {
                const float *row = llamita_get_logits_ith(ctx, j);
                const llamita_token t = r->prompt[c0 + j + 1];
                if (!row) {
                    lm_seterr(err, err_size, "%s: no logits for prompt position %d", what, (int)(c0 + j));
                    goto fail;
                }
                lp_begin(r, row);
                if (!lp_push(r, t, row[t], true)) goto oom;
            }
        }
    } else {
        if (llamita_decode_tokens(ctx, r->prompt + keep, r->n_prompt - keep, false, e2, sizeof e2) < 0) {
            lm_seterr(err, err_size, "%s: evaluating the prompt failed: %s", what, e2);
            goto fail;
        }
        state_push(st, r->prompt + keep, (size_t)(r->n_prompt - keep));
    }
    r->lp_gen0 = r->n_lp;

    /* ---- first chunks ---- */
    if (r->cb) {
        bool go = true;
        if (r->chat) go = send_chunk(r, "", 0, 0, 0, NULL, true);
        else if (p->echo && (r->prompt_len > 0 || r->n_lp > 0)) {
            go = send_chunk(r, r->prompt_text, r->prompt_len, 0, r->n_lp, NULL, false);
            r->lp_reported = r->n_lp;
        }
        if (r->oom) goto oom;
        if (!go) {
            r->cb_stopped = true;
            r->finish = "stop";
        }
    }

    /* ---- generation ---- */
    while (!r->cb_stopped && r->n_gen < r->max_gen) {
        float *logits = llamita_get_logits_ith(ctx, -1);
        if (!logits) {
            lm_seterr(err, err_size, "%s: no logits after position %d", what,
                      (int)llamita_kv_seq_pos_max(ctx, 0));
            goto fail;
        }
        if (r->top_n >= 0) lp_begin(r, logits); /* from the raw logits */
        for (int32_t k = 0; k < n_eog; k++) logits[eog[k]] = -INFINITY;
        const llamita_token t = llamita_sampler_sample(smpl, logits);
        if (t < 0 || t >= r->n_vocab) {
            lm_seterr(err, err_size, "%s: the sampler returned an invalid token %d", what, (int)t);
            goto fail;
        }
        llamita_sampler_accept(smpl, t);
        if (!p->ignore_eos && llamita_token_is_eog(r->m, t)) {
            r->finish = "stop"; /* the end-of-generation token is neither counted nor shown */
            break;
        }
        /* t was not biased (an EOG token under ignore_eos is never drawn), so logits[t] is raw */
        if (r->top_n >= 0 && !lp_push(r, t, logits[t], true)) goto oom;
        r->gen[r->n_gen] = t;
        int32_t k = run_piece(r, t);
        if (k < 0) goto oom;
        const char *pc = r->piece;
        size_t pn = (size_t)k;
        if (r->strip_space && pn > 0) { /* the first byte of the completion, when a space */
            if (pc[0] == ' ') {
                pc++;
                pn--;
            }
            r->strip_space = false;
        }
        int sr = lm_ts_append(&r->ts, pc, pn);
        if (sr < 0) goto oom;
        r->gen_end[r->n_gen] = r->ts.len;
        r->n_gen++;
        if (sr == 1) {
            for (int32_t q = 0; q < r->n_gen; q++)
                if (r->gen_end[q] > r->ts.len) r->gen_end[q] = r->ts.len;
            r->finish = "stop";
            break;
        }
        if (r->cb && !stream_ready(r, false)) {
            r->cb_stopped = true;
            r->finish = "stop";
            break;
        }
        if (r->oom) goto oom;
        if (r->n_gen >= r->max_gen) break; /* finish "length"; the last token needs no evaluation */
        if (llamita_decode_tokens(ctx, &t, 1, false, e2, sizeof e2) < 0) {
            lm_seterr(err, err_size, "%s: decoding failed at position %d: %s", what,
                      (int)(llamita_kv_seq_pos_max(ctx, 0) + 1), e2);
            goto fail;
        }
        state_push(st, &t, 1);
    }

    /* ---- the rest of the stream, the final chunk, the object ---- */
    if (r->cb) {
        r->cb_stopped = true; /* from here on the callback's answer is ignored */
        stream_ready(r, true);
        send_chunk(r, "", 0, 0, 0, r->finish, false);
        if (r->oom) goto oom;
    }
    result = final_object(r);
    if (!result) goto oom;
    goto done;
oom:
    lm_seterr(err, err_size, "%s: out of memory", what);
fail:
    free(result);
    result = NULL;
done:
    llamita_sampler_free(smpl);
    free(eog);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------------------------- */

llamita_completion_params llamita_completion_default_params(void) {
    llamita_completion_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 16; /* create_completion's default */
    p.stop = NULL;
    p.n_stop = 0;
    p.echo = false;
    p.logprobs = -1;
    p.ignore_eos = false;
    p.sampling = llamita_sampler_default_params();
    p.model_name = NULL;
    p.chat_template = NULL;
    return p;
}

void llamita_free(void *p) { free(p); }

/* Checks the arguments shared by both entry points; fills r's common fields. */
static bool run_setup(run *r, llamita_context *ctx, const llamita_completion_params *params,
                      llamita_completion_params *defaults, llamita_chunk_cb on_chunk, void *user, bool chat,
                      char *err, size_t err_size) {
    const char *what = chat ? "chat completion" : "completion";
    memset(r, 0, sizeof *r);
    if (!ctx) {
        lm_seterr(err, err_size, "%s: NULL context", what);
        return false;
    }
    if (!params) {
        *defaults = llamita_completion_default_params();
        params = defaults;
    }
    if (params->n_stop < 0 || (params->n_stop > 0 && !params->stop)) {
        lm_seterr(err, err_size, "%s: %d stop strings given without an array", what, (int)params->n_stop);
        return false;
    }
    r->ctx = ctx;
    r->m = llamita_context_model(ctx);
    r->p = params;
    r->chat = chat;
    r->cb = on_chunk;
    r->user = user;
    r->created = (long long)time(NULL);
    make_id(r->id, sizeof r->id, chat ? "chatcmpl-" : "cmpl-");
    r->model_name = params->model_name ? params->model_name : lm_gguf_path(r->m->gguf);
    if (!r->model_name) r->model_name = "";
    return true;
}

/* Tokenizes text[0, len) into a malloc'd array (*n tokens): BOS/EOS as the model says, control
 * tokens parsed. NULL with err on failure. */
static llamita_token *tokenize_prompt(const llamita_model *m, const char *text, size_t len, int32_t *n,
                                      const char *what, char *err, size_t err_size) {
    if (len > (size_t)INT32_MAX - 8) {
        lm_seterr(err, err_size, "%s: the prompt is too long (%zu bytes)", what, len);
        return NULL;
    }
    int32_t cap = (int32_t)len + 4;
    llamita_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) {
        lm_seterr(err, err_size, "%s: out of memory for %d prompt tokens", what, (int)cap);
        return NULL;
    }
    int32_t k = llamita_tokenize(m, text, (int32_t)len, t, cap, true, true);
    if (k < 0 && k != INT32_MIN) { /* more room needed */
        cap = -k;
        llamita_token *nt = realloc(t, (size_t)cap * sizeof *t);
        if (!nt) {
            free(t);
            lm_seterr(err, err_size, "%s: out of memory for %d prompt tokens", what, (int)cap);
            return NULL;
        }
        t = nt;
        k = llamita_tokenize(m, text, (int32_t)len, t, cap, true, true);
    }
    if (k < 0) {
        free(t);
        lm_seterr(err, err_size, "%s: cannot tokenize the prompt (a byte has no token in the vocabulary)", what);
        return NULL;
    }
    if (k == 0) {
        free(t);
        lm_seterr(err, err_size, "%s: the prompt is empty and the model adds no BOS token", what);
        return NULL;
    }
    *n = k;
    return t;
}

char *llamita_completion(llamita_context *ctx, const char *prompt, const llamita_completion_params *params,
                         llamita_chunk_cb on_chunk, void *user, char *err, size_t err_size) {
    run r;
    llamita_completion_params defaults;
    if (!run_setup(&r, ctx, params, &defaults, on_chunk, user, false, err, err_size)) return NULL;
    if (!prompt) {
        lm_seterr(err, err_size, "completion: NULL prompt");
        return NULL;
    }
    r.prompt_text = prompt;
    r.prompt_len = strlen(prompt);
    r.strip_space = r.prompt_len == 0;
    r.prompt = tokenize_prompt(r.m, prompt, r.prompt_len, &r.n_prompt, "completion", err, err_size);
    if (!r.prompt) return NULL;
    char *out = run_completion(&r, r.p->stop, r.p->n_stop, err, err_size);
    free(r.prompt);
    run_free(&r);
    return out;
}

char *llamita_chat_completion(llamita_context *ctx, const char *messages_json,
                              const llamita_completion_params *params, llamita_chunk_cb on_chunk, void *user,
                              char *err, size_t err_size) {
    run r;
    llamita_completion_params defaults;
    if (!run_setup(&r, ctx, params, &defaults, on_chunk, user, true, err, err_size)) return NULL;
    if (!messages_json) {
        lm_seterr(err, err_size, "chat completion: NULL messages");
        return NULL;
    }
    char e2[1024] = "";
    char *text = llamita_chat_apply_template(r.m, r.p->chat_template, messages_json, true, NULL, NULL, e2,
                                             sizeof e2);
    if (!text) {
        lm_seterr(err, err_size, "chat completion: %s", e2[0] ? e2 : "the chat template failed");
        return NULL;
    }
    r.prompt_text = text;
    r.prompt_len = strlen(text);
    r.prompt = tokenize_prompt(r.m, text, r.prompt_len, &r.n_prompt, "chat completion", err, err_size);
    if (!r.prompt) {
        free(text);
        return NULL;
    }
    /* a template that writes {{ bos_token }} itself: keep one BOS */
    const llamita_token bos = llamita_token_bos(r.m);
    if (r.n_prompt >= 2 && bos >= 0 && r.prompt[0] == bos && r.prompt[1] == bos) {
        memmove(r.prompt, r.prompt + 1, (size_t)(r.n_prompt - 1) * sizeof *r.prompt);
        r.n_prompt--;
    }
    /* the stop strings, plus the EOS text as llama-cpp-python's chat handler adds */
    const char **stops = malloc(((size_t)r.p->n_stop + 1) * sizeof *stops);
    char *out = NULL;
    if (!stops) {
        lm_seterr(err, err_size, "chat completion: out of memory");
    } else {
        int32_t n = 0;
        for (int32_t i = 0; i < r.p->n_stop; i++) stops[n++] = r.p->stop[i];
        const llamita_token eos = llamita_token_eos(r.m);
        const char *eos_text = eos >= 0 ? llamita_token_get_text(r.m, eos) : NULL;
        if (eos_text && eos_text[0] && !r.p->ignore_eos) stops[n++] = eos_text;
        out = run_completion(&r, stops, n, err, err_size);
    }
    free(stops);
    free(r.prompt);
    free(text);
    run_free(&r);
    return out;
}
