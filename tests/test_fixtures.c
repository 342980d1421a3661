/*
 * Parity with llama.cpp on the dumps in ../shared/fixtures (see ../shared/fixtures/README.md), through
 * the public API only (include/llamita.h).
 *
 * For every dump PREFIX (models/stories260K-*, quant/fx-tok512-*, vocab32k/fx-spm32k-*):
 *   tokens_logits   our tokenization of PREFIX.prompt.txt (add_special, no parse_special) equals
 *                   PREFIX.tokens; the logits of all prompt positions, evaluated in one batch, are
 *                   within the type's bound of PREFIX.logits (max and mean abs diff); top-1 agrees
 *                   wherever llama.cpp's top-1 margin exceeds the max bound.
 *   teacher         tokens ++ gen[0..N_GEN-2] in one pass: rows n_tokens-1.. vs PREFIX.gen.logits,
 *                   and argmax == gen[j] wherever gen_top1_margin[j] exceeds the max bound.
 *   incremental     the prompt batch, then single-token decodes feeding gen: the KV-cache path, same
 *                   comparisons as teacher.
 * For stories260K (a trained model with large margins) greedy generation must reproduce .gen exactly
 * (bos: 256 tokens from BOS, n_ctx 512, whose text is llama2.c's published sample), and
 * ../shared/models/llama-2-tiny-random.gguf (another converter's file) must load and decode to finite
 * logits.
 *
 * Bounds (max / mean abs diff of logits), from the README's measurements of an exact float
 * implementation ("plain ref vs llama.cpp"), tightened to what we measured where we are much better;
 * the measured figures are written next to each bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "llamita.h"
#include "test_util.h"

#define REL_LEN 1024                 /* a path under ../shared */
#define PATH_LEN (4096 + REL_LEN + 8) /* the shared folder (< 4096) / REL */

/* ----------------------------------------------------------------------------------------------
 * Dumps and their bounds
 * -------------------------------------------------------------------------------------------- */

typedef struct bounds {
    double max;  /* max abs logit diff allowed */
    double mean; /* mean abs logit diff allowed */
} bounds;

typedef struct fixture {
    const char *prefix;  /* under ../shared/fixtures, e.g. "quant/fx-tok512-Q4_0" */
    bounds prompt;       /* all prompt positions in one batch vs .logits */
    bounds gen;          /* teacher forcing and incremental vs .gen.logits */
    bool greedy_exact;   /* free-running greedy generation must equal .gen */
    char name[96];       /* test name */
} fixture;

/* Bounds. The README's suggestions (from "plain ref vs llama.cpp", what an exact float64
 * implementation measures): stories260K 2e-2, F16 2e-3, BF16 1.5e-2, quantized 6e-2 max / 1e-2 mean.
 * Measured here (x86-64, gcc -O2; "ours" = prompt / teacher = incremental, max / mean):
 *   stories260K  5.5e-3 / 2.1e-4 (cafe prompt);  2.0e-2 / 1.3e-3 (bos, 256 generated positions)
 *   F16          8.9e-4 / 1.4e-4;  7.3e-4 / 1.5e-4
 *   BF16         4.3e-3 / 6.9e-4;  4.9e-3 / 8.8e-4
 *   Q8_0         5.2e-3 / 3.6e-5;  3.9e-3 / 5.8e-5
 *   Q4_0..Q6_K   <= 3.3e-2 / 5.0e-3;  <= 3.2e-2 / 5.6e-3
 *   spm32k       Q8_0 1.2e-2 / 5.1e-5, Q4_K_M 2.1e-2 / 1.8e-4;  both <= 7.2e-7 / 3.4e-8
 * Where we are much better than the suggestion (stories260K prompt, BF16, Q8_0, spm32k means) the
 * bound is tightened to ~2-10x what we measure: those figures show we reproduce llama.cpp's rounding,
 * and a kernel change that stops doing so (legitimate in itself: an exact float implementation lands
 * at the README's "plain" figures) should be noticed and the bound relaxed deliberately.
 * Loosened: stories260K's generation rows (.gen.logits, 256 positions for bos) to 3e-2: the float64
 * NumPy reference measures 4.8e-2 plain / 1.4e-2 mimic there (positions 220-250, |logit| <= 22), and
 * llama.cpp's own batch-vs-incremental difference on lily is 1.3e-2; we measure 2.04e-2. */
#define B_STORIES {1.2e-2, 1e-3}, {3e-2, 3e-3}
#define B_F16 {2e-3, 5e-4}, {2e-3, 5e-4}
#define B_BF16 {1e-2, 2e-3}, {1e-2, 2e-3}
#define B_Q8_0 {2e-2, 5e-4}, {2e-2, 5e-4}
#define B_QUANT {6e-2, 1e-2}, {6e-2, 1e-2}
#define B_SPM32K {6e-2, 1e-3}, {6e-2, 1e-3}

static fixture fixtures[] = {
    {"models/stories260K-bos", B_STORIES, true, ""},
    {"models/stories260K-lily", B_STORIES, true, ""},
    {"models/stories260K-cafe", B_STORIES, true, ""},
    {"quant/fx-tok512-F32", B_F16, false, ""}, /* no .gguf in the public set: skipped */
    {"quant/fx-tok512-F16", B_F16, false, ""},
    {"quant/fx-tok512-BF16", B_BF16, false, ""},
    {"quant/fx-tok512-Q8_0", B_Q8_0, false, ""},
    {"quant/fx-tok512-Q4_0", B_QUANT, false, ""},
    {"quant/fx-tok512-Q4_1", B_QUANT, false, ""},
    {"quant/fx-tok512-Q5_0", B_QUANT, false, ""},
    {"quant/fx-tok512-Q5_1", B_QUANT, false, ""},
    {"quant/fx-tok512-Q2_K", B_QUANT, false, ""},
    {"quant/fx-tok512-Q3_K_S", B_QUANT, false, ""},
    {"quant/fx-tok512-Q3_K_M", B_QUANT, false, ""},
    {"quant/fx-tok512-Q3_K_L", B_QUANT, false, ""},
    {"quant/fx-tok512-Q4_K_S", B_QUANT, false, ""},
    {"quant/fx-tok512-Q4_K_M", B_QUANT, false, ""},
    {"quant/fx-tok512-Q5_K_S", B_QUANT, false, ""},
    {"quant/fx-tok512-Q5_K_M", B_QUANT, false, ""},
    {"quant/fx-tok512-Q6_K", B_QUANT, false, ""},
    {"vocab32k/fx-spm32k-Q8_0", B_SPM32K, false, ""},
    {"vocab32k/fx-spm32k-Q4_K_M", B_SPM32K, false, ""},
};
#define N_FIXTURES ((int)(sizeof fixtures / sizeof fixtures[0]))

/* ----------------------------------------------------------------------------------------------
 * A loaded dump
 * -------------------------------------------------------------------------------------------- */

typedef struct dump {
    char *json;             /* PREFIX.json text, NUL-terminated */
    char *prompt;           /* PREFIX.prompt.txt bytes */
    size_t prompt_len;
    int32_t *tokens;        /* [n_tokens] */
    int32_t *gen;           /* [n_gen] */
    float *logits;          /* [n_tokens][n_vocab] */
    float *gen_logits;      /* [n_gen][n_vocab] */
    double *top1_margin;    /* [n_tokens] llama.cpp's top-1 minus top-2 logit per prompt position */
    double *gen_margin;     /* [n_gen] same for the rows of gen_logits */
    int32_t n_tokens, n_gen, n_vocab;
    char model_path[PATH_LEN];
    llamita_model *model;
} dump;

/* Pointer just after `"key":` (whitespace skipped) in a flat JSON object, or NULL. Enough for the
 * dump writer's own output (keys are unique at any depth we read). */
static const char *json_value(const char *json, const char *key) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static long json_int(const char *json, const char *key) {
    const char *p = json_value(json, key);
    assert_non_null(p);
    return strtol(p, NULL, 10);
}

/* A JSON array of n numbers under key -> malloc'd double[n] (caller frees). Fails the test when the
 * array is missing or has another length. */
static double *json_doubles(const char *json, const char *key, int32_t n) {
    const char *p = json_value(json, key);
    assert_non_null(p);
    assert_int_equal(*p, '[');
    p++;
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    assert_non_null(v);
    int32_t i = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',') p++;
        if (*p == ']') break;
        char *end;
        double x = strtod(p, &end);
        assert_true(end != p);
        assert_true(i < n);
        v[i++] = x;
        p = end;
    }
    assert_int_equal(i, n);
    return v;
}

/* Reads PREFIX.<ext> into *out (malloc'd); asserts it has exactly `expect` bytes when expect >= 0. */
static void *read_part(const char *prefix, const char *ext, long expect, size_t *size) {
    char rel[REL_LEN], path[PATH_LEN];
    snprintf(rel, sizeof rel, "fixtures/%s%s", prefix, ext);
    lm_test_shared_path(path, sizeof path, rel);
    size_t n = 0;
    void *buf = lm_test_read_file(path, &n);
    if (!buf) fail_msg("cannot read %s", path);
    if (expect >= 0 && n != (size_t)expect)
        fail_msg("%s: %zu bytes, expected %ld", path, n, expect);
    if (size) *size = n;
    return buf;
}

/* Loads every file of a dump and the model. Returns false (and skips the test with a visible
 * message) when the dump's .gguf is not in this set. Assumes a little-endian host (as the files). */
static bool dump_open(dump *d, const fixture *fx) {
    memset(d, 0, sizeof *d);
    size_t n = 0;
    char *js = read_part(fx->prefix, ".json", -1, &n);
    d->json = realloc(js, n + 1);
    assert_non_null(d->json);
    d->json[n] = 0;
    d->n_tokens = (int32_t)json_int(d->json, "n_tokens");
    d->n_gen = (int32_t)json_int(d->json, "n_gen");
    d->n_vocab = (int32_t)json_int(d->json, "n_vocab");
    assert_true(d->n_tokens > 0 && d->n_gen > 0 && d->n_vocab > 0);

    const char *mv = json_value(d->json, "model");
    assert_non_null(mv);
    assert_int_equal(*mv, '"');
    const char *me = strchr(mv + 1, '"');
    assert_non_null(me);
    char rel[REL_LEN];
    const char *slash = strrchr(fx->prefix, '/');
    int dirlen = (int)(slash - fx->prefix);
    snprintf(rel, sizeof rel, "fixtures/%.*s/%.*s", dirlen, fx->prefix, (int)(me - mv - 1), mv + 1);
    lm_test_shared_path(d->model_path, sizeof d->model_path, rel);
    if (access(d->model_path, R_OK) != 0) return false;

    d->prompt = read_part(fx->prefix, ".prompt.txt", -1, &d->prompt_len);
    d->tokens = read_part(fx->prefix, ".tokens", 4L * d->n_tokens, NULL);
    d->gen = read_part(fx->prefix, ".gen", 4L * d->n_gen, NULL);
    d->logits = read_part(fx->prefix, ".logits", 4L * d->n_tokens * d->n_vocab, NULL);
    d->gen_logits = read_part(fx->prefix, ".gen.logits", 4L * d->n_gen * d->n_vocab, NULL);
    d->top1_margin = json_doubles(d->json, "top1_margin_per_position", d->n_tokens);
    d->gen_margin = json_doubles(d->json, "gen_top1_margin", d->n_gen);

    char err[512] = "";
    d->model = llamita_model_load(d->model_path, llamita_model_default_params(), err, sizeof err);
    if (!d->model) fail_msg("load %s: %s", d->model_path, err);
    assert_int_equal(llamita_model_n_vocab(d->model), d->n_vocab);
    return true;
}

static void dump_close(dump *d) {
    llamita_model_free(d->model);
    free(d->json);
    free(d->prompt);
    free(d->tokens);
    free(d->gen);
    free(d->logits);
    free(d->gen_logits);
    free(d->top1_margin);
    free(d->gen_margin);
    memset(d, 0, sizeof *d);
}

/* Common start of every per-dump test: skips without ../shared or without the dump's model. */
static bool dump_begin(dump *d, const fixture *fx) {
    if (!lm_test_shared_dir()) return false;
    if (!dump_open(d, fx)) {
        fprintf(stderr, "SKIP: %s: model of this dump is not in the public fixture set (%s)\n",
                fx->name, d->model_path);
        dump_close(d);
        return false;
    }
    return true;
}

static llamita_context *new_ctx(llamita_model *m, uint32_t n_ctx, uint32_t n_batch) {
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    char err[512] = "";
    llamita_context *ctx = llamita_context_new(m, cp, err, sizeof err);
    if (!ctx) fail_msg("context_new(n_ctx %u): %s", n_ctx, err);
    return ctx;
}

/* Index of the first maximum of x[n] (llama.cpp's greedy rule: lowest id on ties). */
static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Running comparison of our logit rows with llama.cpp's. */
typedef struct cmp {
    double max, sum;
    long n, nonfinite;
    int32_t worst_row;
    int top1_checked, top1_equal;
    int top1_first_bad; /* row of the first disagreement above the margin, -1 if none */
} cmp;

static void cmp_init(cmp *c) {
    memset(c, 0, sizeof *c);
    c->worst_row = -1;
    c->top1_first_bad = -1;
}

/* Compares one row ours[n_vocab] with ref[n_vocab]; checks top-1 when margin > max_bound. */
static void cmp_row(cmp *c, const float *ours, const float *ref, int32_t n_vocab, int32_t row,
                    double margin, double max_bound) {
    assert_non_null(ours);
    for (int32_t j = 0; j < n_vocab; j++) {
        if (!isfinite(ours[j])) { c->nonfinite++; continue; }
        double dd = fabs((double)ours[j] - (double)ref[j]);
        c->sum += dd;
        if (dd > c->max) { c->max = dd; c->worst_row = row; }
    }
    c->n += n_vocab;
    if (margin > max_bound) {
        c->top1_checked++;
        if (argmax(ours, n_vocab) == argmax(ref, n_vocab)) c->top1_equal++;
        else if (c->top1_first_bad < 0) c->top1_first_bad = row;
    }
}

/* Prints the figures and asserts them against the fixture's bounds. */
static void cmp_check(const cmp *c, const fixture *fx, const bounds *bd, const char *what) {
    double mean = c->n ? c->sum / (double)c->n : 0.0;
    fprintf(stderr, "  %-28s %-11s max abs diff %.3e (row %d)  mean %.3e  top-1 %d/%d  [bounds %.1e / %.1e]\n",
            fx->prefix, what, c->max, c->worst_row, mean, c->top1_equal, c->top1_checked, bd->max,
            bd->mean);
    assert_int_equal(c->nonfinite, 0);
    if (c->max > bd->max)
        fail_msg("%s %s: max abs diff %.4g at row %d > %.3g", fx->prefix, what, c->max, c->worst_row,
                 bd->max);
    if (mean > bd->mean)
        fail_msg("%s %s: mean abs diff %.4g > %.3g", fx->prefix, what, mean, bd->mean);
    if (c->top1_first_bad >= 0)
        fail_msg("%s %s: top-1 differs from llama.cpp at row %d although its margin exceeds %.3g",
                 fx->prefix, what, c->top1_first_bad, bd->max);
}

/* ----------------------------------------------------------------------------------------------
 * Per-dump tests (state = fixture *)
 * -------------------------------------------------------------------------------------------- */

static void test_tokens_logits(void **state) {
    const fixture *fx = *state;
    LM_REQUIRE_SHARED();
    dump d;
    if (!dump_begin(&d, fx)) { skip(); return; }

    /* tokenization */
    int32_t cap = (int32_t)d.prompt_len + 8;
    llamita_token *toks = calloc((size_t)cap, sizeof *toks); /* [cap] */
    assert_non_null(toks);
    int32_t nt = llamita_tokenize(d.model, d.prompt, (int32_t)d.prompt_len, toks, cap, true, false);
    if (nt != d.n_tokens || memcmp(toks, d.tokens, 4 * (size_t)d.n_tokens) != 0) {
        int32_t k = 0;
        while (k < nt && k < d.n_tokens && toks[k] == d.tokens[k]) k++;
        fail_msg("%s: tokenize gave %d tokens, llama.cpp %d; first difference at index %d (ours %d, "
                 "llama.cpp %d)", fx->prefix, nt, d.n_tokens, k, k < nt ? toks[k] : -1,
                 k < d.n_tokens ? d.tokens[k] : -1);
    }
    free(toks);

    /* all prompt positions in one batch */
    llamita_context *ctx = new_ctx(d.model, (uint32_t)d.n_tokens, (uint32_t)d.n_tokens);
    char err[512] = "";
    assert_int_equal(llamita_decode_tokens(ctx, d.tokens, d.n_tokens, true, err, sizeof err), 0);
    assert_int_equal(llamita_n_outputs(ctx), d.n_tokens);
    cmp c;
    cmp_init(&c);
    for (int32_t i = 0; i < d.n_tokens; i++)
        cmp_row(&c, llamita_get_logits_ith(ctx, i), d.logits + (size_t)i * d.n_vocab, d.n_vocab, i,
                d.top1_margin[i], fx->prompt.max);
    llamita_context_free(ctx);
    cmp_check(&c, fx, &fx->prompt, "prompt");
    dump_close(&d);
}

static void test_teacher(void **state) {
    const fixture *fx = *state;
    LM_REQUIRE_SHARED();
    dump d;
    if (!dump_begin(&d, fx)) { skip(); return; }
    int32_t n = d.n_tokens + d.n_gen - 1;
    llamita_token *seq = malloc(sizeof *seq * (size_t)n); /* [n_tokens + n_gen - 1] */
    assert_non_null(seq);
    memcpy(seq, d.tokens, 4 * (size_t)d.n_tokens);
    memcpy(seq + d.n_tokens, d.gen, 4 * (size_t)(d.n_gen - 1));
    llamita_context *ctx = new_ctx(d.model, (uint32_t)n, (uint32_t)n);
    char err[512] = "";
    if (llamita_decode_tokens(ctx, seq, n, true, err, sizeof err) != 0)
        fail_msg("%s: decode of %d tokens: %s", fx->prefix, n, err);
    assert_int_equal(llamita_n_outputs(ctx), n);
    cmp c;
    cmp_init(&c);
    for (int32_t j = 0; j < d.n_gen; j++)
        cmp_row(&c, llamita_get_logits_ith(ctx, d.n_tokens - 1 + j), d.gen_logits + (size_t)j * d.n_vocab,
                d.n_vocab, j, d.gen_margin[j], fx->gen.max);
    llamita_context_free(ctx);
    free(seq);
    cmp_check(&c, fx, &fx->gen, "teacher");
    dump_close(&d);
}

static void test_incremental(void **state) {
    const fixture *fx = *state;
    LM_REQUIRE_SHARED();
    dump d;
    if (!dump_begin(&d, fx)) { skip(); return; }
    uint32_t n_ctx = (uint32_t)(d.n_tokens + d.n_gen);
    llamita_context *ctx = new_ctx(d.model, n_ctx, (uint32_t)d.n_tokens);
    char err[512] = "";
    assert_int_equal(llamita_decode_tokens(ctx, d.tokens, d.n_tokens, false, err, sizeof err), 0);
    cmp c;
    cmp_init(&c);
    for (int32_t j = 0; j < d.n_gen; j++) {
        if (j > 0 && llamita_decode_tokens(ctx, &d.gen[j - 1], 1, false, err, sizeof err) != 0)
            fail_msg("%s: single-token decode at position %d: %s", fx->prefix, d.n_tokens + j - 1, err);
        cmp_row(&c, llamita_get_logits_ith(ctx, -1), d.gen_logits + (size_t)j * d.n_vocab, d.n_vocab, j,
                d.gen_margin[j], fx->gen.max);
    }
    assert_int_equal(llamita_kv_seq_pos_max(ctx, 0), d.n_tokens + d.n_gen - 2);
    llamita_context_free(ctx);
    cmp_check(&c, fx, &fx->gen, "incremental");
    dump_close(&d);
}

/* Greedy generation from the prompt (single-token decodes, our own argmax fed back) must equal .gen
 * token for token; for the bos dump the detokenized text must also equal .gen.txt and llama2.c's
 * published sample (../shared/models/llama2c-doc-stories260K.md). n_ctx 512 (the model's real
 * context; its GGUF says 128). */
static void test_greedy(void **state) {
    const fixture *fx = *state;
    LM_REQUIRE_SHARED();
    dump d;
    if (!dump_begin(&d, fx)) { skip(); return; }
    llamita_context *ctx = new_ctx(d.model, 512, 512);
    char err[512] = "";
    assert_int_equal(llamita_decode_tokens(ctx, d.tokens, d.n_tokens, false, err, sizeof err), 0);
    llamita_token *out = malloc(sizeof *out * (size_t)d.n_gen); /* [n_gen] */
    assert_non_null(out);
    int32_t first_bad = -1;
    for (int32_t j = 0; j < d.n_gen; j++) {
        const float *row = llamita_get_logits_ith(ctx, -1);
        assert_non_null(row);
        out[j] = argmax(row, d.n_vocab);
        if (out[j] != d.gen[j] && first_bad < 0) first_bad = j;
        if (j + 1 < d.n_gen && llamita_decode_tokens(ctx, &out[j], 1, false, err, sizeof err) != 0)
            fail_msg("%s: decode at position %d: %s", fx->prefix, d.n_tokens + j, err);
    }
    llamita_context_free(ctx);
    fprintf(stderr, "  %-28s greedy      %d tokens, first difference from llama.cpp: %d\n", fx->prefix,
            d.n_gen, first_bad);
    if (first_bad >= 0)
        fail_msg("%s: greedy token %d is %d, llama.cpp's is %d (its margin %.4g)", fx->prefix, first_bad,
                 out[first_bad], d.gen[first_bad], d.gen_margin[first_bad]);

    if (strcmp(fx->prefix, "models/stories260K-bos") == 0) {
        /* our text */
        int32_t need = llamita_detokenize(d.model, out, d.n_gen, NULL, 0, false, false);
        int32_t cap = need < 0 ? -need : need;
        char *text = malloc((size_t)cap + 1);
        assert_non_null(text);
        int32_t len = llamita_detokenize(d.model, out, d.n_gen, text, cap, false, false);
        assert_true(len >= 0 && len <= cap);
        text[len] = 0;
        /* llama.cpp's */
        size_t gl = 0;
        char *gtxt = read_part(fx->prefix, ".gen.txt", -1, &gl);
        /* llama2.c's: the code block after the `./run ... -t 0.0` line */
        char path[PATH_LEN];
        lm_test_shared_path(path, sizeof path, "models/llama2c-doc-stories260K.md");
        size_t dl = 0;
        char *doc = lm_test_read_file(path, &dl);
        assert_non_null(doc);
        doc = realloc(doc, dl + 1);
        assert_non_null(doc);
        doc[dl] = 0;
        char *cmd = strstr(doc, "-t 0.0\n");
        assert_non_null(cmd);
        char *start = cmd + strlen("-t 0.0\n");
        char *end = strstr(start, "\n```");
        assert_non_null(end);
        size_t doc_len = (size_t)(end - start);
        fprintf(stderr, "  %-28s text        ours %d bytes, llama.cpp %zu, llama2.c %zu\n", fx->prefix, len,
                gl, doc_len);
        assert_int_equal(gl, doc_len); /* the fixture's own claim */
        assert_memory_equal(gtxt, start, doc_len);
        assert_int_equal((size_t)len, doc_len);
        assert_memory_equal(text, start, doc_len);
        free(doc);
        free(gtxt);
        free(text);
    }
    free(out);
    dump_close(&d);
}

/* ----------------------------------------------------------------------------------------------
 * Another producer's file
 * -------------------------------------------------------------------------------------------- */

static void test_tiny_random(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    char path[PATH_LEN], err[512] = "";
    lm_test_shared_path(path, sizeof path, "models/llama-2-tiny-random.gguf");
    llamita_model *m = llamita_model_load(path, llamita_model_default_params(), err, sizeof err);
    if (!m) fail_msg("load %s: %s", path, err);
    int32_t n_vocab = llamita_model_n_vocab(m);
    assert_true(n_vocab > 0);
    llamita_token toks[64];
    const char *prompt = "Hello world, this is a test.";
    int32_t nt = llamita_tokenize(m, prompt, -1, toks, 64, true, false);
    assert_true(nt > 1 && nt <= 64);
    llamita_context *ctx = new_ctx(m, 128, 128);
    assert_int_equal(llamita_decode_tokens(ctx, toks, nt, true, err, sizeof err), 0);
    long bad = 0;
    double amax = 0;
    for (int32_t i = 0; i < nt; i++) {
        const float *row = llamita_get_logits_ith(ctx, i);
        assert_non_null(row);
        for (int32_t j = 0; j < n_vocab; j++) {
            if (!isfinite(row[j])) bad++;
            else if (fabs(row[j]) > amax) amax = fabs(row[j]);
        }
    }
    /* a few single-token decodes on top (KV-cache path) */
    for (int k = 0; k < 4; k++) {
        llamita_token t = argmax(llamita_get_logits_ith(ctx, -1), n_vocab);
        assert_int_equal(llamita_decode_tokens(ctx, &t, 1, false, err, sizeof err), 0);
        const float *row = llamita_get_logits_ith(ctx, -1);
        for (int32_t j = 0; j < n_vocab; j++) if (!isfinite(row[j])) bad++;
    }
    fprintf(stderr, "  llama-2-tiny-random: %d prompt tokens, n_vocab %d, max |logit| %.3g, non-finite %ld\n",
            nt, n_vocab, amax, bad);
    assert_int_equal(bad, 0);
    assert_true(amax > 0);
    llamita_context_free(ctx);
    llamita_model_free(m);
}

int main(void) {
    enum { N_KINDS = 3 };
    static struct CMUnitTest tests[N_FIXTURES * (N_KINDS + 1) + 1];
    static char names[N_FIXTURES * (N_KINDS + 1)][128];
    static const char *kinds[N_KINDS] = {"tokens_logits", "teacher", "incremental"};
    static void (*fns[N_KINDS])(void **) = {test_tokens_logits, test_teacher, test_incremental};
    size_t n = 0;
    for (int i = 0; i < N_FIXTURES; i++) {
        fixture *fx = &fixtures[i];
        snprintf(fx->name, sizeof fx->name, "%s", fx->prefix);
        for (int k = 0; k < N_KINDS + 1; k++) {
            if (k == N_KINDS && !fx->greedy_exact) continue;
            snprintf(names[n], sizeof names[n], "%s_%s", k < N_KINDS ? kinds[k] : "greedy",
                     strrchr(fx->prefix, '/') + 1);
            for (char *p = names[n]; *p; p++) if (*p == '-') *p = '_';
            tests[n] = (struct CMUnitTest){names[n], k < N_KINDS ? fns[k] : test_greedy, NULL, NULL, fx};
            n++;
        }
    }
    tests[n++] = (struct CMUnitTest){"tiny_random_loads", test_tiny_random, NULL, NULL, NULL};
    return _cmocka_run_group_tests("fixtures", tests, n, NULL, NULL);
}
