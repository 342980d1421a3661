/*
 * Tests of the benchmark scorer (src/eval.c): the metric formulas (standard error, argmax ties,
 * acc / acc_norm / LAMBADA), and that the shared-context batching (prefix decoded once, copied with
 * llamita_kv_seq_cp, many items per decode) gives the log-likelihoods of scoring every choice on its
 * own. The model tests use ../shared/fixtures/models/stories260K.gguf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "eval.h"
#include "evaldata.h"
#include "llamita.h"

static void test_mean_stderr(void **state) {
    (void)state;
    double m, se;
    /* 3 right of 4: mean 0.75, sample sd sqrt(0.25) = 0.5, stderr 0.5 / 2 */
    const double x[4] = {1, 1, 0, 1};
    lm_eval_mean_stderr(x, 4, &m, &se);
    assert_true(fabs(m - 0.75) < 1e-15);
    assert_true(fabs(se - 0.25) < 1e-15);
    /* general formula against a direct computation */
    double y[10], s = 0, v = 0;
    for (int i = 0; i < 10; i++) s += (y[i] = (i * 7 % 5) * 0.3 - 0.1);
    s /= 10;
    for (int i = 0; i < 10; i++) v += (y[i] - s) * (y[i] - s);
    lm_eval_mean_stderr(y, 10, &m, &se);
    assert_true(fabs(m - s) < 1e-14);
    assert_true(fabs(se - sqrt(v / 9) / sqrt(10.0)) < 1e-14);
    /* n = 1: no spread to measure */
    lm_eval_mean_stderr(x, 1, &m, &se);
    assert_true(m == 1.0 && se == 0.0);
}

static void test_argmax_ties(void **state) {
    (void)state;
    const double a[4] = {-3, -1, -1, -2};
    assert_int_equal(lm_eval_argmax(a, 4), 1); /* first of the tied maxima, as numpy.argmax */
    const double b[3] = {NAN, -5, -4};
    assert_int_equal(lm_eval_argmax(b, 3), 2);
    assert_int_equal(lm_eval_argmax(a, 0), -1);
}

static void test_cont_len(void **state) {
    (void)state;
    assert_int_equal(lm_eval_cont_len(" yes"), 3);       /* delimiter space not counted */
    assert_int_equal(lm_eval_cont_len("  two"), 4);      /* only one */
    assert_int_equal(lm_eval_cont_len(" caf\xc3\xa9"), 4); /* code points, as Python's len() */
    assert_int_equal(lm_eval_cont_len(""), 0);
}

/* acc = argmax ll; acc_norm = argmax ll / len(choice) (harness) or ll / n_tokens (llama.cpp). */
static void test_predict_and_metrics(void **state) {
    (void)state;
    char *ctx[2] = {"Q", "Q"};
    char *cont_a[2] = {" ab", " abcdefgh"};
    lm_eval_item it[3];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 3; i++) {
        it[i].n_choices = 2;
        it[i].ctx = ctx;
        it[i].cont = cont_a;
        it[i].line = i + 1;
    }
    /* item 0: ll -4 (len 2: -2/char) vs -6 (len 8: -0.75/char): acc picks 0, acc_norm picks 1 */
    lm_eval_choice r[6] = {{-4, 2, false}, {-6, 3, false}, {-1, 1, true}, {-1, 5, false}, {-9, 1, false},
                           {-8, 8, false}};
    int32_t pa, pn;
    lm_eval_predict(&it[0], r, LM_SCORING_HARNESS, &pa, &pn);
    assert_int_equal(pa, 0);
    assert_int_equal(pn, 1);
    lm_eval_predict(&it[0], r, LM_SCORING_LLAMACPP, &pa, &pn); /* -4/2 = -2 vs -6/3 = -2: tie -> 0 */
    assert_int_equal(pn, 0);
    /* item 1: equal ll -> first choice for acc; acc_norm -1/2 vs -1/8 -> 1 */
    lm_eval_predict(&it[1], r + 2, LM_SCORING_HARNESS, &pa, &pn);
    assert_int_equal(pa, 0);
    assert_int_equal(pn, 1);
    it[0].gold = 1;
    it[1].gold = 0;
    it[2].gold = 1; /* item 2: acc 1 (-8 > -9), acc_norm 1 */
    double x[3];
    lm_eval_metric m[2];
    const int32_t nm = lm_eval_metrics(LM_TASK_ARC_EASY, LM_SCORING_HARNESS, it, 3, r, x, m);
    assert_int_equal(nm, 2);
    assert_string_equal(m[0].metric, "acc"); /* right: item 1, 2 -> 2/3 */
    assert_true(fabs(m[0].score - 200.0 / 3.0) < 1e-9);
    assert_true(fabs(m[0].stderr_ - 100.0 * sqrt(1.0 / 3.0) / sqrt(3.0)) < 1e-9);
    assert_string_equal(m[1].metric, "acc_norm"); /* picks 1, 1, 1: right items 0, 2 -> 2/3 */
    assert_true(fabs(m[1].score - 200.0 / 3.0) < 1e-9);
    assert_int_equal(m[1].n, 3);
    assert_int_equal(lm_eval_metrics(LM_TASK_WINOGRANDE, LM_SCORING_HARNESS, it, 3, r, x, m), 1);
    assert_string_equal(lm_eval_seed_metric(LM_TASK_BOOLQ), "acc");
    assert_string_equal(lm_eval_seed_metric(LM_TASK_PIQA), "acc_norm");
    /* LAMBADA: one choice per item; acc = greedy, ppl = exp(-mean ll) */
    lm_eval_item l[2];
    memset(l, 0, sizeof l);
    for (int i = 0; i < 2; i++) {
        l[i].n_choices = 1;
        l[i].ctx = ctx;
        l[i].cont = cont_a;
    }
    lm_eval_choice lr[2] = {{-1.0, 1, true}, {-3.0, 2, false}};
    assert_int_equal(lm_eval_metrics(LM_TASK_LAMBADA, LM_SCORING_HARNESS, l, 2, lr, x, m), 2);
    assert_true(fabs(m[0].score - 50.0) < 1e-12);
    assert_string_equal(m[1].metric, "ppl");
    assert_true(fabs(m[1].score - exp(2.0)) < 1e-12);
}

/* ---- model tests ---- */

typedef struct fixture_items {
    int n;
    lm_eval_item it[8];
    char *ctx[8][4], *cont[8][4];
} fixture_items;

/* A handful of items in the shapes the tasks have: a shared context (ARC-like, 4 choices, one
 * choice a prefix of another), WinoGrande-like partial scoring (different contexts, shared
 * continuation), trailing space in the context, an empty context, one choice (LAMBADA). */
static void make_items(fixture_items *f) {
    static const char *spec[][6] = {
        /* n, ctx, cont0..cont3 */
        {"4", "Question: Lily and Ben went to the park. What did they see?\nAnswer:", " a big dog",
         " a big dog and a cat", " the sun", " nothing at all"},
        {"2", "Once upon a time there was a girl named Lily. She", " liked to play.", " liked to play.", 0, 0},
        {"2", "The cat sat on the mat. ", "It was happy.", "It was sad and cold.", 0, 0},
        {"3", "", "Tom had a ball.", "Tom had a red ball.", "The end.", 0},
        {"1", "Lily went to the shop and bought some", " milk", 0, 0, 0},
        {"4", "Question: What does Ben like?\nAnswer:", " toys", " his mom", " to run fast", " cake"},
    };
    /* item 1: WinoGrande shape: contexts differ, same continuation */
    static const char *wino_ctx[2] = {"Once upon a time there was a girl named Lily. She",
                                      "Once upon a time there was a boy named Tim. He"};
    f->n = 6;
    for (int i = 0; i < f->n; i++) {
        const int n = atoi(spec[i][0]);
        f->it[i].n_choices = n;
        f->it[i].gold = 0;
        f->it[i].line = i + 1;
        for (int c = 0; c < n; c++) {
            f->ctx[i][c] = (char *)(i == 1 ? wino_ctx[c] : spec[i][1]);
            f->cont[i][c] = (char *)spec[i][2 + c];
        }
        f->it[i].ctx = f->ctx[i];
        f->it[i].cont = f->cont[i];
    }
}

static llamita_model *load_stories(void) {
    char path[4096], err[512] = "";
    lm_test_shared_path(path, sizeof path, "fixtures/models/stories260K.gguf");
    llamita_model *m = llamita_model_load(path, llamita_model_default_params(), err, sizeof err);
    if (!m) fprintf(stderr, "load: %s\n", err);
    assert_non_null(m);
    return m;
}

/* Scores all items with opts; out gets every choice. Returns the number of packs. */
static int score_all(llamita_model *m, const lm_eval_opts *o, const lm_eval_item *it, int n,
                     lm_eval_choice *out, int64_t *n_decoded) {
    char err[512] = "";
    lm_eval_scorer *s = lm_eval_scorer_new(m, o, 4, err, sizeof err);
    if (!s) fprintf(stderr, "scorer: %s\n", err);
    assert_non_null(s);
    int done = 0, k = 0, packs = 0;
    while (done < n) {
        const int32_t r = lm_eval_score_pack(s, it + done, n - done, out + k, err, sizeof err);
        if (r < 0) fprintf(stderr, "score: %s\n", err);
        assert_true(r >= 1);
        for (int i = done; i < done + r; i++) k += it[i].n_choices;
        done += r;
        packs++;
    }
    lm_eval_scorer_stats(s, n_decoded, NULL, NULL);
    lm_eval_scorer_free(s);
    return packs;
}

/* Shared prefix + packing == every choice decoded whole in its own sequence, one item at a time. */
static void test_shared_equals_separate(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    llamita_model *m = load_stories();
    fixture_items f;
    make_items(&f);
    for (int scoring = 0; scoring < 2; scoring++) {
        lm_eval_choice a[32], b[32];
        int64_t dec_a = 0, dec_b = 0;
        lm_eval_opts o = lm_eval_default_opts();
        o.scoring = (lm_eval_scoring)scoring;
        o.n_threads = 1;
        const int packs_a = score_all(m, &o, f.it, f.n, a, &dec_a);
        lm_eval_opts ob = o;
        ob.no_share = true;
        ob.n_seq_max = 4; /* one item per pack */
        ob.n_batch = 7;   /* and small forward steps */
        const int packs_b = score_all(m, &ob, f.it, f.n, b, &dec_b);
        double maxd = 0;
        int k = 0;
        for (int i = 0; i < f.n; i++)
            for (int c = 0; c < f.it[i].n_choices; c++, k++) {
                assert_int_equal(a[k].n_tokens, b[k].n_tokens);
                assert_true(a[k].n_tokens >= 1);
                assert_true(a[k].ll < 0);
                assert_int_equal(a[k].greedy, b[k].greedy);
                const double d = fabs(a[k].ll - b[k].ll);
                if (d > maxd) maxd = d;
            }
        printf("%s scoring: shared+packed (%d packs, %lld tokens decoded) vs separate (%d packs, %lld "
               "tokens): max |ll diff| = %.3g over %d choices\n",
               scoring ? "llamacpp" : "harness", packs_a, (long long)dec_a, packs_b, (long long)dec_b, maxd, k);
        /* the same f16 cache and kernels: only the batch split differs (float32 sums in another
         * order); measured 8.2e-7 (harness) and 1.1e-6 (llamacpp); a wrong position, sequence or
         * span moves ll by > 1e-2 */
        assert_true(maxd < 1e-5);
        assert_true(dec_a < dec_b); /* the shared contexts were decoded once */
        assert_int_equal(packs_a, 1);
        /* item 1: same continuation after different contexts: different ll */
        assert_true(fabs(a[4].ll - a[5].ll) > 1e-6);
    }
    llamita_model_free(m);
}

/* The continuation span: harness scores exactly tok(ctx+cont) minus tok(ctx) tokens; llama.cpp the
 * tokens after the common prefix (so identical choices' spans shrink to one token). */
static void test_token_spans(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    llamita_model *m = load_stories();
    fixture_items f;
    make_items(&f);
    lm_eval_choice a[32], b[32];
    int64_t d;
    lm_eval_opts o = lm_eval_default_opts();
    o.n_threads = 1;
    score_all(m, &o, f.it, f.n, a, &d);
    o.scoring = LM_SCORING_LLAMACPP;
    score_all(m, &o, f.it, f.n, b, &d);
    int k = 0;
    for (int i = 0; i < f.n; i++)
        for (int c = 0; c < f.it[i].n_choices; c++, k++) {
            /* harness span from the tokenizer directly */
            char text[512];
            llamita_token t1[256], t2[256];
            const char *ctx = f.it[i].ctx[c], *cont = f.it[i].cont[c];
            size_t nc = strlen(ctx);
            while (nc > 0 && ctx[nc - 1] == ' ') nc--;
            snprintf(text, sizeof text, "%s%s", ctx, cont);
            const int32_t nw = llamita_tokenize(m, text, -1, t1, 256, false, false);
            const int32_t nx = nc ? llamita_tokenize(m, ctx, (int32_t)nc, t2, 256, false, false) : 0;
            assert_true(nw > 0 && nx >= 0);
            assert_int_equal(a[k].n_tokens, nw - nx);
        }
    /* llamacpp: item 1's choices differ in their context: span after the common prefix */
    assert_true(b[4].n_tokens > a[4].n_tokens);
    llamita_model_free(m);
}

/* Errors name the item's line; the loader's errors name the file and line. */
static void test_errors(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    llamita_model *m = load_stories();
    char err[512] = "";
    lm_eval_opts o = lm_eval_default_opts();
    o.n_threads = 1;
    lm_eval_scorer *s = lm_eval_scorer_new(m, &o, 4, err, sizeof err);
    assert_non_null(s);
    char *ctx[1] = {"abc"}, *cont[1] = {""};
    lm_eval_item it = {1, ctx, cont, 0, 17};
    lm_eval_choice r[1];
    assert_int_equal(lm_eval_score_pack(s, &it, 1, r, err, sizeof err), -1);
    printf("empty continuation: %s\n", err);
    assert_non_null(strstr(err, "line 17"));
    lm_eval_item many = {70, ctx, cont, 0, 3};
    assert_int_equal(lm_eval_score_pack(s, &many, 1, r, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 3"));
    lm_eval_scorer_free(s);
    assert_null(lm_eval_scorer_new(m, &o, 1000, err, sizeof err));
    /* a bad data file through the loader */
    char path[4096];
    snprintf(path, sizeof path, "%s/bad.jsonl", lm_test_tmpdir());
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n"
          "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 5}\n", fp);
    fclose(fp);
    lm_eval_set *set = lm_eval_load(LM_TASK_ARC_EASY, path, NULL, 0, err, sizeof err);
    assert_null(set);
    printf("bad gold: %s\n", err);
    assert_non_null(strstr(err, ":2"));
    remove(path);
    llamita_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mean_stderr),         cmocka_unit_test(test_argmax_ties),
        cmocka_unit_test(test_cont_len),            cmocka_unit_test(test_predict_and_metrics),
        cmocka_unit_test(test_shared_equals_separate), cmocka_unit_test(test_token_spans),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
