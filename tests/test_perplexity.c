/*
 * Perplexity and KL divergence (src/perplexity.c).
 *
 *   n_chunks          chunk counts: whole chunks only, capped by max_chunks, 0 when too short
 *   stderr_formula    PPL and its standard error on NLLs {1,2,3,4}, derived by hand below
 *   logsumexp         exact small cases, no overflow at z = 1000
 *   percentile        llama.cpp's linear interpolation on {1..5}
 *   ppl_synth         on a small synthetic model: lm_perplexity == a direct computation (each chunk
 *                     decoded with all logits, BOS in place of its first token, second half scored)
 *                     and is the same for n_batch 64 / 7 (max rel diff printed); too-short error
 *   kld_self          saved log-probs (f32 and f16) of a model against itself: KLD ~ 0, top-1 100 %,
 *                     PPL(base) == PPL; a different (Q4_0) model: KLD > 0, top-1 < 100 %
 *   bad_files         wrong magic, short header, bad version / dtype / header sizes, n_vocab
 *                     mismatch, truncated data, trailing bytes, token out of range: each error names
 *                     the file and the problem
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "llamita.h"
#include "perplexity.h"
#include "synth.h"
#include "test_util.h"

#define PATH_LEN 4096

static void n_chunks(void **state) {
    (void)state;
    assert_int_equal(lm_ppl_n_chunks(1000, 128, 0), 7);
    assert_int_equal(lm_ppl_n_chunks(1024, 128, 0), 8);
    assert_int_equal(lm_ppl_n_chunks(1023, 128, 0), 7);
    assert_int_equal(lm_ppl_n_chunks(1000, 128, 3), 3);
    assert_int_equal(lm_ppl_n_chunks(1000, 128, 100), 7);
    assert_int_equal(lm_ppl_n_chunks(127, 128, 0), 0);
    assert_int_equal(lm_ppl_n_chunks(128, 128, 0), 1);
    assert_int_equal(lm_ppl_n_chunks(100, 0, 0), 0);
}

static void stderr_formula(void **state) {
    (void)state;
    /* NLLs 1,2,3,4: N = 4, mean = 10/4 = 2.5, PPL = e^2.5 = 12.182493960703473;
     * S2/N = (1+4+9+16)/4 = 7.5, variance = 7.5 - 2.5^2 = 1.25, / (N-1) = 0.41666..,
     * sqrt = 0.6454972243679028, stderr = PPL * that = 7.863766037512831 */
    lm_nll_stats s = {0};
    for (int i = 1; i <= 4; i++) lm_nll_add(&s, i);
    double ppl, se;
    lm_nll_ppl(&s, &ppl, &se);
    const double ppl_hand = exp(2.5), se_hand = exp(2.5) * sqrt(1.25 / 3.0);
    printf("  PPL %.12f (hand %.12f), stderr %.12f (hand %.12f)\n", ppl, ppl_hand, se, se_hand);
    assert_true(fabs(ppl - 12.182493960703473) < 1e-12);
    assert_true(fabs(se - 7.863766037512831) < 1e-9);
    assert_true(fabs(se - se_hand) < 1e-12);
    /* one value or no spread: no standard error */
    lm_nll_stats one = {0};
    lm_nll_add(&one, 2.0);
    lm_nll_ppl(&one, &ppl, &se);
    assert_true(fabs(ppl - exp(2.0)) < 1e-12);
    assert_true(se == 0.0);
    lm_nll_stats same = {0};
    for (int i = 0; i < 5; i++) lm_nll_add(&same, 0.5);
    lm_nll_ppl(&same, &ppl, &se);
    assert_true(se == 0.0);
    lm_nll_stats none = {0};
    lm_nll_ppl(&none, &ppl, &se);
    assert_true(ppl == 0.0 && se == 0.0);
}

static void logsumexp(void **state) {
    (void)state;
    const float a[2] = {0.0f, logf(3.0f)};
    assert_true(fabs(lm_logsumexp(a, 2) - log(4.0)) < 1e-7);
    const float b[3] = {1000.0f, 1000.0f, -1e30f};
    assert_true(fabs(lm_logsumexp(b, 3) - (1000.0 + log(2.0))) < 1e-9);
    const float c[1] = {-7.5f};
    assert_true(fabs(lm_logsumexp(c, 1) + 7.5) < 1e-12);
}

static void percentile(void **state) {
    (void)state;
    const float v[5] = {1, 2, 3, 4, 5};
    assert_true(fabs(lm_percentile_sorted(v, 5, 0.99) - 4.96) < 1e-9); /* p = 3.96 */
    assert_true(lm_percentile_sorted(v, 5, 0.0) == 1.0);
    assert_true(lm_percentile_sorted(v, 5, 1.0) == 5.0);
    assert_true(fabs(lm_percentile_sorted(v, 5, 0.5) - 3.0) < 1e-12);
    const float w[1] = {7};
    assert_true(lm_percentile_sorted(w, 1, 0.99) == 7.0);
}

/* ---- model-based tests ---- */

static const char *tmp_path(char *buf, const char *name) {
    snprintf(buf, PATH_LEN, "%s/%s", lm_test_tmpdir(), name);
    return buf;
}

static const char *small_model(const char *ftype, char *path) {
    char name[64];
    snprintf(name, sizeof name, "ppl-%s.gguf", ftype);
    tmp_path(path, name);
    lm_synth_params p = lm_synth_default_params();
    p.n_vocab = 300;
    p.n_embd = 64;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 96;
    p.n_ctx = 64;
    p.ftype = ftype;
    p.seed = 7;
    char err[512] = "";
    if (!lm_synth_write(path, &p, err, sizeof err)) fail_msg("lm_synth_write: %s", err);
    return path;
}

static llamita_model *load(const char *path) {
    char err[512] = "";
    llamita_model *m = llamita_model_load(path, llamita_model_default_params(), err, sizeof err);
    if (!m) fail_msg("load %s: %s", path, err);
    return m;
}

static llamita_context *new_ctx(llamita_model *m, uint32_t n_ctx, uint32_t n_batch) {
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 1;
    char err[512] = "";
    llamita_context *c = llamita_context_new(m, cp, err, sizeof err);
    if (!c) fail_msg("context: %s", err);
    return c;
}

/* Deterministic pseudo-random tokens in [3, n_vocab), BOS first when the model adds it. */
static void make_tokens(const llamita_model *m, llamita_token *t, int32_t n) {
    uint64_t s = 12345;
    const int32_t V = llamita_model_n_vocab(m);
    for (int32_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = 3 + (llamita_token)((s >> 33) % (uint64_t)(V - 3));
    }
    if (llamita_add_bos(m)) t[0] = llamita_token_bos(m);
}

/* The reference: each chunk decoded alone with all logits, NLL of the second half in double. */
static double direct_ppl(llamita_context *ctx, const llamita_token *tok, int32_t n_chunks, int32_t n_ctx) {
    const llamita_model *m = llamita_context_model(ctx);
    const int32_t V = llamita_model_n_vocab(m);
    llamita_token chunk[64];
    double sum = 0;
    int64_t n = 0;
    char err[512] = "";
    for (int32_t c = 0; c < n_chunks; c++) {
        memcpy(chunk, tok + c * n_ctx, sizeof(llamita_token) * (size_t)n_ctx);
        if (llamita_add_bos(m)) chunk[0] = llamita_token_bos(m);
        llamita_kv_clear(ctx);
        if (llamita_decode_tokens(ctx, chunk, n_ctx, true, err, sizeof err) != 0) fail_msg("decode: %s", err);
        for (int32_t p = n_ctx / 2; p < n_ctx - 1; p++) {
            const float *z = llamita_get_logits_ith(ctx, p);
            double mx = z[0], s = 0;
            for (int32_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            for (int32_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
            sum += mx + log(s) - z[tok[c * n_ctx + p + 1]];
            n++;
        }
    }
    return exp(sum / (double)n);
}

static void ppl_synth(void **state) {
    (void)state;
    char path[PATH_LEN];
    llamita_model *m = load(small_model("F32", path));
    enum { N_CTX = 32, N_TOK = 3 * N_CTX + 10 };
    llamita_token tok[N_TOK];
    make_tokens(m, tok, N_TOK);
    llamita_context *ctx = new_ctx(m, N_CTX, N_CTX);
    char err[512] = "";
    lm_ppl_params p = {N_CTX, N_CTX, 0, LM_LOGITS_F32};
    lm_ppl_result r;
    assert_int_equal(lm_perplexity(ctx, tok, N_TOK, &p, NULL, NULL, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.n_chunks, 3);
    assert_int_equal(r.n_tokens, 3 * N_CTX);
    assert_int_equal(r.n_scored, 3 * (N_CTX - 1 - N_CTX / 2));
    const double ref = direct_ppl(ctx, tok, 3, N_CTX);
    const double rel = fabs(r.ppl - ref) / ref;
    printf("  PPL %.9f, direct %.9f, rel diff %.3g; stderr %.6f\n", r.ppl, ref, rel, r.ppl_stderr);
    assert_true(rel < 1e-9); /* same logits, same double arithmetic up to summation order */
    assert_true(r.ppl_stderr > 0);
    /* a random model on random tokens: PPL of the order of the vocabulary */
    assert_true(r.ppl > 30 && r.ppl < 3000);

    /* n_batch 7: the chunk is decoded in 5 steps; the logits may differ by the batch shape only */
    lm_ppl_params p7 = {N_CTX, 7, 0, LM_LOGITS_F32};
    lm_ppl_result r7;
    assert_int_equal(lm_perplexity(ctx, tok, N_TOK, &p7, NULL, NULL, NULL, &r7, err, sizeof err), 0);
    const double rel7 = fabs(r7.ppl - r.ppl) / r.ppl;
    printf("  n_batch 7: PPL %.9f, rel diff vs one batch %.3g\n", r7.ppl, rel7);
    assert_true(rel7 < 1e-5);

    /* max_chunks */
    lm_ppl_params p1 = {N_CTX, N_CTX, 1, LM_LOGITS_F32};
    assert_int_equal(lm_perplexity(ctx, tok, N_TOK, &p1, NULL, NULL, NULL, &r7, err, sizeof err), 0);
    assert_int_equal(r7.n_chunks, 1);
    assert_true(fabs(r7.ppl - direct_ppl(ctx, tok, 1, N_CTX)) / r7.ppl < 1e-9);

    /* too short */
    assert_int_equal(lm_perplexity(ctx, tok, N_CTX - 1, &p, NULL, NULL, NULL, &r7, err, sizeof err), -1);
    printf("  expected error: %s\n", err);
    assert_non_null(strstr(err, "too short"));
    assert_non_null(strstr(err, "32 tokens"));
    /* context too small */
    lm_ppl_params big = {2 * N_CTX, 0, 0, LM_LOGITS_F32};
    assert_int_equal(lm_perplexity(ctx, tok, N_TOK, &big, NULL, NULL, NULL, &r7, err, sizeof err), -1);
    assert_non_null(strstr(err, "context"));
    llamita_context_free(ctx);
    llamita_model_free(m);
}

static bool count_cb(const lm_ppl_progress *pr, void *user) {
    int *n = user;
    (*n)++;
    assert_int_equal(pr->chunk, *n);
    return true;
}

static void kld_self(void **state) {
    (void)state;
    char path[PATH_LEN], qpath[PATH_LEN], lp32[PATH_LEN], lp16[PATH_LEN];
    llamita_model *m = load(small_model("F32", path));
    llamita_model *q = load(small_model("Q4_0", qpath));
    enum { N_CTX = 32, N_TOK = 4 * N_CTX };
    llamita_token tok[N_TOK];
    make_tokens(m, tok, N_TOK);
    llamita_context *ctx = new_ctx(m, N_CTX, N_CTX);
    llamita_context *qctx = new_ctx(q, N_CTX, N_CTX);
    char err[512] = "";
    lm_ppl_result r;
    const uint32_t types[2] = {LM_LOGITS_F32, LM_LOGITS_F16};
    const char *paths[2] = {tmp_path(lp32, "base32.lp"), tmp_path(lp16, "base16.lp")};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(paths[k], "wb");
        assert_non_null(f);
        lm_ppl_params p = {N_CTX, 0, 0, types[k]};
        int calls = 0;
        assert_int_equal(lm_perplexity(ctx, tok, N_TOK, &p, f, count_cb, &calls, &r, err, sizeof err), 0);
        assert_int_equal(calls, 4);
        assert_int_equal(fclose(f), 0);

        lm_logits_file lf;
        assert_int_equal(lm_logits_file_open(paths[k], 300, &lf, err, sizeof err), 0);
        assert_int_equal(lf.n_ctx, N_CTX);
        assert_int_equal(lf.n_chunks, 4);
        assert_int_equal(lf.n_scored, N_CTX - 1 - N_CTX / 2);
        assert_memory_equal(lf.tokens, tok, sizeof tok);
        lm_kld_result kr;
        assert_int_equal(lm_kl_divergence(ctx, &lf, 0, 0, NULL, NULL, &kr, err, sizeof err), 0);
        printf("  self (%s): KLD %.3g max %.3g, top-1 %.2f%%, PPL %.9f base %.9f (direct %.9f)\n",
               k ? "f16" : "f32", kr.kld, kr.kld_max, 100 * kr.top1, kr.ppl, kr.ppl_base, r.ppl);
        /* f32: the saved log-probs are exact to float rounding (rel 6e-8): KLD ~ 1e-14;
         * f16: rounding 2^-11 relative on log-probs of magnitude ~6: KLD ~ Var/2 ~ 1e-6 at most */
        assert_true(fabs(kr.kld) < (k ? 2e-5 : 1e-10));
        assert_true(kr.kld_max < (k ? 1e-4 : 1e-10));
        assert_true(kr.top1 == 1.0);
        assert_true(fabs(kr.ppl - r.ppl) / r.ppl < 1e-9);
        assert_true(fabs(kr.ppl_base - r.ppl) / r.ppl < (k ? 1e-3 : 1e-6));
        assert_int_equal(kr.count, 4 * (N_CTX - 1 - N_CTX / 2));

        /* the Q4_0 model against this base: KLD > 0, and its PPL equals its own perplexity run */
        lm_kld_result qr;
        assert_int_equal(lm_kl_divergence(qctx, &lf, 5, 0, NULL, NULL, &qr, err, sizeof err), 0);
        lm_ppl_params pq = {N_CTX, 5, 0, LM_LOGITS_F32};
        lm_ppl_result rq;
        assert_int_equal(lm_perplexity(qctx, tok, N_TOK, &pq, NULL, NULL, NULL, &rq, err, sizeof err), 0);
        printf("  Q4_0 vs %s: KLD %.6f +/- %.6f (max %.6f, p99 %.6f), top-1 %.2f%%, PPL %.6f vs %.6f, "
               "dPPL %.6f\n", k ? "f16" : "f32", qr.kld, qr.kld_stderr, qr.kld_max, qr.kld_p99,
               100 * qr.top1, qr.ppl, qr.ppl_base, qr.dppl);
        assert_true(qr.kld > 1e-5);
        assert_true(qr.kld_max >= qr.kld_p99 && qr.kld_p99 >= qr.kld_median);
        assert_true(fabs(qr.ppl - rq.ppl) / rq.ppl < 1e-9);
        assert_true(fabs(qr.dppl - (qr.ppl - qr.ppl_base)) < 1e-12);
        /* max_chunks */
        assert_int_equal(lm_kl_divergence(qctx, &lf, 0, 2, NULL, NULL, &qr, err, sizeof err), 0);
        assert_int_equal(qr.n_chunks, 2);
        lm_logits_file_close(&lf);
    }
    llamita_context_free(qctx);
    llamita_context_free(ctx);
    llamita_model_free(q);
    llamita_model_free(m);
}

/* ---- bad files ---- */

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes a header + tokens + f32 data of `extra` bytes more or less than what the header implies. */
static const char *write_lp(char *path, const char *name, const char *magic, uint32_t version,
                            uint32_t dtype, int32_t n_vocab, int32_t n_ctx, int32_t n_chunks,
                            int32_t bad_token, long delta) {
    tmp_path(path, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t h[40];
    memcpy(h, magic, 8);
    put32(h + 8, version);
    put32(h + 12, dtype);
    put32(h + 16, (uint32_t)n_vocab);
    put32(h + 20, (uint32_t)n_ctx);
    put32(h + 24, (uint32_t)n_chunks);
    put32(h + 28, (uint32_t)(n_ctx / 2));
    put32(h + 32, (uint32_t)(n_ctx - 1 - n_ctx / 2));
    put32(h + 36, 0);
    fwrite(h, 1, 40, f);
    for (int32_t i = 0; i < n_chunks * n_ctx; i++) {
        uint8_t b[4];
        put32(b, (uint32_t)(i == 1 ? bad_token : i % n_vocab));
        fwrite(b, 1, 4, f);
    }
    long n = (long)n_chunks * (n_ctx - 1 - n_ctx / 2) * n_vocab * (dtype == 1 ? 2 : 4) + delta;
    for (long i = 0; i < n; i++) fputc(0, f);
    fclose(f);
    return path;
}

static void expect_open_error(const char *path, int32_t n_vocab, const char *what) {
    char err[1024] = "";
    lm_logits_file lf;
    assert_int_equal(lm_logits_file_open(path, n_vocab, &lf, err, sizeof err), -1);
    printf("  expected error: %s\n", err);
    assert_non_null(strstr(err, path));
    if (!strstr(err, what)) fail_msg("error '%s' does not mention '%s'", err, what);
}

static void bad_files(void **state) {
    (void)state;
    char p[PATH_LEN];
    char err[1024] = "";
    lm_logits_file lf;
    /* a good one first, so that the helper itself is right */
    write_lp(p, "good.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 2, 3, 0);
    assert_int_equal(lm_logits_file_open(p, 10, &lf, err, sizeof err), 0);
    lm_logits_file_close(&lf);
    write_lp(p, "good16.lp", LM_LOGITS_MAGIC, 1, 1, 10, 8, 2, 3, 0);
    assert_int_equal(lm_logits_file_open(p, 0, &lf, err, sizeof err), 0);
    lm_logits_file_close(&lf);

    expect_open_error(write_lp(p, "magic.lp", "_logits_", 1, 0, 10, 8, 2, 3, 0), 10, "bad magic");
    expect_open_error(write_lp(p, "version.lp", LM_LOGITS_MAGIC, 2, 0, 10, 8, 2, 3, 0), 10, "version 2");
    expect_open_error(write_lp(p, "dtype.lp", LM_LOGITS_MAGIC, 1, 5, 10, 8, 2, 3, 0), 10, "dtype 5");
    expect_open_error(write_lp(p, "vocab.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 2, 3, 0), 32000,
                      "vocabulary of 10 tokens, but the model has 32000");
    expect_open_error(write_lp(p, "trunc.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 2, 3, -1), 10, "truncated");
    expect_open_error(write_lp(p, "trail.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 2, 3, 5), 10, "5 trailing bytes");
    expect_open_error(write_lp(p, "token.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 2, 10, 0), 10, "token 1 is 10");
    expect_open_error(write_lp(p, "nctx.lp", LM_LOGITS_MAGIC, 1, 0, 10, 2, 2, 3, 0), 10, "bad header");
    expect_open_error(write_lp(p, "chunks.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 0, 3, 0), 10, "bad header");
    /* a header cut short, and an empty file */
    tmp_path(p, "short.lp");
    FILE *f = fopen(p, "wb");
    fwrite(LM_LOGITS_MAGIC "\1\0\0", 1, 11, f);
    fclose(f);
    expect_open_error(p, 10, "truncated header (11 of 40 bytes)");
    tmp_path(p, "empty.lp");
    f = fopen(p, "wb");
    fclose(f);
    expect_open_error(p, 10, "truncated header (0 of 40 bytes)");
    tmp_path(p, "missing.lp");
    expect_open_error(p, 10, "cannot open");

    /* n_vocab checked again by lm_kl_divergence against the context's model */
    char mp[PATH_LEN];
    llamita_model *m = load(small_model("F32", mp));
    llamita_context *ctx = new_ctx(m, 8, 8);
    write_lp(p, "good.lp", LM_LOGITS_MAGIC, 1, 0, 10, 8, 2, 3, 0);
    assert_int_equal(lm_logits_file_open(p, 0, &lf, err, sizeof err), 0);
    lm_kld_result kr;
    assert_int_equal(lm_kl_divergence(ctx, &lf, 0, 0, NULL, NULL, &kr, err, sizeof err), -1);
    printf("  expected error: %s\n", err);
    assert_non_null(strstr(err, "the model has 300"));
    lm_logits_file_close(&lf);
    llamita_context_free(ctx);
    llamita_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(n_chunks),  cmocka_unit_test(stderr_formula), cmocka_unit_test(logsumexp),
        cmocka_unit_test(percentile), cmocka_unit_test(ppl_synth),     cmocka_unit_test(kld_self),
        cmocka_unit_test(bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
