/* Sampler tests (and llamita_n_physical_cores from src/sys.c): greedy, seeding, each stage of the chain on hand-made logits, the empirical
 * distribution of draws against softmax(logits / temp), penalty math and window, and robustness. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <time.h>

#include "test_util.h"
#include "llamita.h"

/* Params with every stage off except what a test turns on. */
static llamita_sampler_params plain_params(float temp, uint64_t seed) {
    llamita_sampler_params p = llamita_sampler_default_params();
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.seed = seed;
    return p;
}

static llamita_sampler *mk(const llamita_sampler_params *p, int32_t n_vocab) {
    char err[256] = "";
    llamita_sampler *s = llamita_sampler_new(p, n_vocab, err, sizeof err);
    if (!s) fprintf(stderr, "sampler_new failed: %s\n", err);
    assert_non_null(s);
    return s;
}

/* Deterministic pseudo-random logits in [-scale, scale). */
static void fill_logits(float *l, int n, uint32_t seed, float scale) {
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        l[i] = ((float)(x >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
    }
}

static void test_default_params(void **state) {
    (void)state;
    llamita_sampler_params p = llamita_sampler_default_params();
    /* llama-cpp-python create_completion defaults */
    assert_true(p.temp == 0.8f);
    assert_true(p.top_p == 0.95f);
    assert_int_equal(p.top_k, 40);
    assert_true(p.min_p == 0.05f);
    assert_true(p.repeat_penalty == 1.0f);
    assert_true(p.frequency_penalty == 0.0f);
    assert_true(p.presence_penalty == 0.0f);
    assert_int_equal(p.penalty_last_n, 64);
    assert_true(p.seed == LLAMITA_DEFAULT_SEED);
}

static void test_bad_params(void **state) {
    (void)state;
    char err[256];
    llamita_sampler_params p = llamita_sampler_default_params();
    err[0] = 0;
    assert_null(llamita_sampler_new(&p, 0, err, sizeof err));
    assert_non_null(strstr(err, "n_vocab"));
    p.repeat_penalty = 0.0f;
    err[0] = 0;
    assert_null(llamita_sampler_new(&p, 10, err, sizeof err));
    assert_non_null(strstr(err, "repeat_penalty"));
    p = llamita_sampler_default_params();
    p.penalty_last_n = -2;
    err[0] = 0;
    assert_null(llamita_sampler_new(&p, 10, err, sizeof err));
    assert_non_null(strstr(err, "penalty_last_n"));
    p = llamita_sampler_default_params();
    p.temp = NAN;
    assert_null(llamita_sampler_new(&p, 10, NULL, 0)); /* NULL err is allowed */
    llamita_sampler_free(NULL);
    /* NULL params = defaults */
    llamita_sampler *s = llamita_sampler_new(NULL, 10, err, sizeof err);
    assert_non_null(s);
    llamita_sampler_free(s);
}

static void test_greedy(void **state) {
    (void)state;
    enum { N = 1000 };
    static float l[N];
    fill_logits(l, N, 7, 5.0f);
    int best = 0;
    for (int i = 1; i < N; i++)
        if (l[i] > l[best]) best = i;
    llamita_sampler_params p = plain_params(0.0f, 1);
    llamita_sampler *s = mk(&p, N);
    for (int k = 0; k < 5; k++) assert_int_equal(llamita_sampler_sample(s, l), best);
    /* ties: lowest id */
    float t[6] = {1, 3, 2, 3, 3, -1};
    llamita_sampler_free(s);
    s = mk(&p, 6);
    assert_int_equal(llamita_sampler_sample(s, t), 1);
    /* negative temperature is greedy too */
    llamita_sampler_free(s);
    p.temp = -1.0f;
    s = mk(&p, 6);
    assert_int_equal(llamita_sampler_sample(s, t), 1);
    llamita_sampler_free(s);
}

static void draw_seq(uint64_t seed, llamita_token *out, int n, const float *l, int n_vocab) {
    llamita_sampler_params p = llamita_sampler_default_params();
    p.seed = seed;
    p.top_k = 0; /* exercise the top-p path over the whole vocab */
    llamita_sampler *s = mk(&p, n_vocab);
    for (int i = 0; i < n; i++) out[i] = llamita_sampler_sample(s, l);
    llamita_sampler_free(s);
}

static void test_seed(void **state) {
    (void)state;
    enum { V = 300, T = 200 };
    float l[V];
    fill_logits(l, V, 3, 1.0f); /* flat enough that draws vary */
    llamita_token a[T], b[T], c[T];
    draw_seq(42, a, T, l, V);
    draw_seq(42, b, T, l, V);
    draw_seq(43, c, T, l, V);
    assert_memory_equal(a, b, sizeof a);
    int differ = 0;
    for (int i = 0; i < T; i++) differ += a[i] != c[i];
    fprintf(stderr, "seed 42 vs 43: %d of %d draws differ\n", differ, T);
    assert_true(differ > T / 2);
    /* reset(seed) restarts the same stream; reset(DEFAULT) keeps the stream going */
    llamita_sampler_params p = llamita_sampler_default_params();
    p.seed = 42;
    p.top_k = 0;
    llamita_sampler *s = mk(&p, V);
    for (int i = 0; i < 10; i++) (void)llamita_sampler_sample(s, l);
    llamita_sampler_reset(s, 42);
    for (int i = 0; i < T; i++) assert_int_equal(llamita_sampler_sample(s, l), a[i]);
    llamita_sampler_reset(s, 42);
    for (int i = 0; i < T / 2; i++) (void)llamita_sampler_sample(s, l);
    llamita_sampler_reset(s, LLAMITA_DEFAULT_SEED);
    for (int i = T / 2; i < T; i++) assert_int_equal(llamita_sampler_sample(s, l), a[i]);
    llamita_sampler_free(s);
    /* the clock seed gives different streams (two samplers made one after the other) */
    p.seed = LLAMITA_DEFAULT_SEED;
    llamita_sampler *s1 = mk(&p, V), *s2 = mk(&p, V);
    differ = 0;
    for (int i = 0; i < T; i++) differ += llamita_sampler_sample(s1, l) != llamita_sampler_sample(s2, l);
    assert_true(differ > 0);
    llamita_sampler_free(s1);
    llamita_sampler_free(s2);
}

static void test_topk1_is_greedy(void **state) {
    (void)state;
    enum { V = 32000 };
    static float l[V];
    llamita_sampler_params pg = plain_params(0.0f, 1);
    llamita_sampler_params pk = llamita_sampler_default_params();
    pk.top_k = 1;
    pk.temp = 1.5f;
    pk.seed = 9;
    llamita_sampler *g = mk(&pg, V), *k = mk(&pk, V);
    for (uint32_t trial = 0; trial < 20; trial++) {
        fill_logits(l, V, 100 + trial, 3.0f);
        assert_int_equal(llamita_sampler_sample(k, l), llamita_sampler_sample(g, l));
    }
    llamita_sampler_free(g);
    llamita_sampler_free(k);
}

/* Draws n times and returns counts per token in cnt[V]. */
static void histogram(llamita_sampler *s, const float *l, int V, int n, int *cnt) {
    memset(cnt, 0, sizeof(int) * (size_t)V);
    for (int i = 0; i < n; i++) {
        llamita_token t = llamita_sampler_sample(s, l);
        assert_true(t >= 0 && t < V);
        cnt[t]++;
    }
}

/* Compares counts with expected probabilities: every bin within 5 sigma (binomial), and the
 * chi-square statistic under a loose bound for its degrees of freedom. Prints what it measured. */
static void check_freqs(const char *what, const int *cnt, const double *prob, int V, int n) {
    double maxdiff = 0, chi2 = 0;
    int df = -1;
    for (int i = 0; i < V; i++) {
        double f = (double)cnt[i] / n;
        double sd = sqrt(prob[i] * (1 - prob[i]) / n);
        double d = fabs(f - prob[i]);
        if (d > maxdiff) maxdiff = d;
        if (prob[i] == 0) {
            assert_int_equal(cnt[i], 0);
            continue;
        }
        df++;
        chi2 += (cnt[i] - n * prob[i]) * (cnt[i] - n * prob[i]) / (n * prob[i]);
        if (d > 5 * sd + 1e-12) fprintf(stderr, "%s: bin %d freq %.4f expected %.4f (sd %.4f)\n", what, i, f, prob[i], sd);
        assert_true(d <= 5 * sd + 1e-12);
    }
    /* mean df, sd sqrt(2 df): 6 sd above the mean is far beyond chance */
    double bound = df + 6 * sqrt(2.0 * (df > 0 ? df : 1));
    fprintf(stderr, "%s: %d draws, max |freq - p| = %.5f, chi2 = %.2f (df %d, bound %.1f)\n", what, n, maxdiff,
            chi2, df, bound);
    assert_true(chi2 <= bound);
}

/* softmax(l / temp) restricted to keep[i] != 0 */
static void softmax_masked(const float *l, const int *keep, int V, double temp, double *prob) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        if (keep[i] && l[i] > mx) mx = l[i];
    for (int i = 0; i < V; i++) {
        prob[i] = keep[i] ? exp((l[i] - mx) / temp) : 0;
        sum += prob[i];
    }
    for (int i = 0; i < V; i++) prob[i] /= sum;
}

static void test_distribution(void **state) {
    (void)state;
    enum { V = 6, N = 20000 };
    const float l[V] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f};
    int keep[V] = {1, 1, 1, 1, 1, 1}, cnt[V];
    double prob[V];

    /* full softmax at temp 0.7 */
    llamita_sampler_params p = plain_params(0.7f, 1234);
    llamita_sampler *s = mk(&p, V);
    softmax_masked(l, keep, V, 0.7, prob);
    histogram(s, l, V, N, cnt);
    check_freqs("softmax temp 0.7", cnt, prob, V, N);
    llamita_sampler_free(s);

    /* top-k 3 then temp 1.3: renormalised over ids {1, 4, 0} */
    p = plain_params(1.3f, 99);
    p.top_k = 3;
    s = mk(&p, V);
    int keep3[V] = {1, 1, 0, 0, 1, 0};
    softmax_masked(l, keep3, V, 1.3, prob);
    histogram(s, l, V, N, cnt);
    check_freqs("top-k 3, temp 1.3", cnt, prob, V, N);
    llamita_sampler_free(s);

    /* the default chain (top-k 40, top-p 0.95, min-p 0.05, temp 0.8) on these logits:
     * probabilities at temp 1 are .154 .420 .094 .021 .255 .057: sorted ids 1 4 0 2 5 reach
     * .979 >= 0.95, so top-p drops id 3; min-p keeps p >= .021, dropping nothing more */
    p = llamita_sampler_default_params();
    p.seed = 5;
    s = mk(&p, V);
    int keepd[V] = {1, 1, 1, 0, 1, 1};
    softmax_masked(l, keepd, V, 0.8, prob);
    histogram(s, l, V, N, cnt);
    check_freqs("default chain", cnt, prob, V, N);
    llamita_sampler_free(s);
}

/* Which tokens can be drawn (temp 1, many draws). */
static void support(const llamita_sampler_params *p, const float *l, int V, int n, int *seen) {
    llamita_sampler *s = mk(p, V);
    memset(seen, 0, sizeof(int) * (size_t)V);
    for (int i = 0; i < n; i++) seen[llamita_sampler_sample(s, l)] = 1;
    llamita_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    /* probabilities exactly .5 .25 .125 .0625 .0625 (powers of two: cumulative sums are exact) */
    enum { V = 5 };
    const float l[V] = {(float)log(0.0625), (float)log(0.5), (float)log(0.125), (float)log(0.25),
                        (float)log(0.0625)};
    int seen[V];
    llamita_sampler_params p = plain_params(1.0f, 11);
    struct {
        float top_p;
        int expect[V];
    } cases[] = {
        {0.40f, {0, 1, 0, 0, 0}}, /* .5 >= .4: one token */
        {0.70f, {0, 1, 0, 1, 0}}, /* .75 */
        {0.80f, {0, 1, 1, 1, 0}}, /* .875 */
        {0.90f, {1, 1, 1, 1, 0}}, /* .9375: of the two equal tails the lower id (0) is kept */
        {0.99f, {1, 1, 1, 1, 1}},
        {0.0f, {0, 1, 0, 0, 0}},  /* at least one token */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        p.top_p = cases[c].top_p;
        support(&p, l, V, 3000, seen);
        fprintf(stderr, "top-p %.2f keeps {", (double)p.top_p);
        for (int i = 0; i < V; i++)
            if (seen[i]) fprintf(stderr, " %d", i);
        fprintf(stderr, " }\n");
        assert_memory_equal(seen, cases[c].expect, sizeof seen);
    }

    /* the growing-prefix path: 1000 equal logits, top-p 0.5 keeps exactly ids 0..499 */
    enum { W = 1000 };
    static float flat[W];
    static int seenw[W];
    for (int i = 0; i < W; i++) flat[i] = 0.25f;
    p = plain_params(1.0f, 12);
    p.top_p = 0.5f;
    support(&p, flat, W, 20000, seenw);
    int n_seen = 0, max_id = -1;
    for (int i = 0; i < W; i++)
        if (seenw[i]) {
            n_seen++;
            max_id = i;
        }
    fprintf(stderr, "top-p 0.5 over 1000 equal logits: %d distinct drawn, max id %d\n", n_seen, max_id);
    assert_int_equal(max_id, 499);
    assert_int_equal(n_seen, 500); /* each kept id expected 40 times */

    /* top-p after top-k renormalises over the top-k set: top-k 2 gives {.667, .333}; top-p .6
     * then keeps only the first */
    p = plain_params(1.0f, 13);
    p.top_k = 2;
    p.top_p = 0.6f;
    support(&p, l, V, 2000, seen);
    int e1[V] = {0, 1, 0, 0, 0};
    assert_memory_equal(seen, e1, sizeof seen);
    p.top_p = 0.7f;
    support(&p, l, V, 2000, seen);
    int e2[V] = {0, 1, 0, 1, 0};
    assert_memory_equal(seen, e2, sizeof seen);
}

static void test_min_p(void **state) {
    (void)state;
    enum { V = 5 };
    /* relative probabilities (to the max) 1, .5, .3, .1, .05 */
    const float l[V] = {(float)log(0.3), (float)log(0.05), 0.0f, (float)log(0.5), (float)log(0.1)};
    int seen[V];
    llamita_sampler_params p = plain_params(1.0f, 21);
    p.min_p = 0.2f;
    support(&p, l, V, 3000, seen);
    int e1[V] = {1, 0, 1, 1, 0};
    assert_memory_equal(seen, e1, sizeof seen);
    p.min_p = 0.08f;
    support(&p, l, V, 3000, seen);
    int e2[V] = {1, 0, 1, 1, 1};
    assert_memory_equal(seen, e2, sizeof seen);
    p.min_p = 0.6f;
    support(&p, l, V, 3000, seen);
    int e3[V] = {0, 0, 1, 0, 0};
    assert_memory_equal(seen, e3, sizeof seen);
    /* min-p > 1 still keeps the top token */
    p.min_p = 2.0f;
    support(&p, l, V, 500, seen);
    assert_memory_equal(seen, e3, sizeof seen);
    /* the same cut on a sorted (top-k) candidate set */
    p.min_p = 0.2f;
    p.top_k = 4;
    support(&p, l, V, 3000, seen);
    assert_memory_equal(seen, e1, sizeof seen);
}

/* Greedy pick after accepting `hist` with the given penalties. */
static llamita_token pick(const float *l, int V, const llamita_token *hist, int nh, float rep, float freq,
                          float pres, int32_t last_n) {
    llamita_sampler_params p = plain_params(0.0f, 1);
    p.repeat_penalty = rep;
    p.frequency_penalty = freq;
    p.presence_penalty = pres;
    p.penalty_last_n = last_n;
    llamita_sampler *s = mk(&p, V);
    for (int i = 0; i < nh; i++) llamita_sampler_accept(s, hist[i]);
    llamita_token t = llamita_sampler_sample(s, l);
    llamita_sampler_free(s);
    return t;
}

static void test_penalties(void **state) {
    (void)state;
    const float pos[2] = {3.0f, 2.0f};
    const llamita_token h0[1] = {0}, h00[2] = {0, 0};
    /* repeat: positive logits are divided: 3/1.49 = 2.013 > 2, 3/1.51 = 1.987 < 2 */
    assert_int_equal(pick(pos, 2, h0, 1, 1.49f, 0, 0, 64), 0);
    assert_int_equal(pick(pos, 2, h0, 1, 1.51f, 0, 0, 64), 1);
    /* counted once however often it occurs */
    assert_int_equal(pick(pos, 2, h00, 2, 1.49f, 0, 0, 64), 0);
    /* negative logits are multiplied: -1 * 1.39 = -1.39 > -1.4; -1 * 1.41 < -1.4 */
    const float neg[2] = {-1.0f, -1.4f};
    assert_int_equal(pick(neg, 2, h0, 1, 1.39f, 0, 0, 64), 0);
    assert_int_equal(pick(neg, 2, h0, 1, 1.41f, 0, 0, 64), 1);
    /* zero is treated as "negative" (multiplied: stays 0) */
    const float zero[2] = {0.0f, -0.01f};
    assert_int_equal(pick(zero, 2, h0, 1, 5.0f, 0, 0, 64), 0);
    /* frequency: count * f: 3 - 2 * 0.49 = 2.02; 3 - 2 * 0.51 = 1.98 */
    assert_int_equal(pick(pos, 2, h00, 2, 1.0f, 0.49f, 0, 64), 0);
    assert_int_equal(pick(pos, 2, h00, 2, 1.0f, 0.51f, 0, 64), 1);
    /* presence: subtracted once: 3 - 0.99 > 2, 3 - 1.01 < 2 */
    assert_int_equal(pick(pos, 2, h00, 2, 1.0f, 0, 0.99f, 64), 0);
    assert_int_equal(pick(pos, 2, h00, 2, 1.0f, 0, 1.01f, 64), 1);
    /* all three: (3 / 1.2) - 2 * 0.1 - 0.2 = 2.1 > 2; with presence 0.31: 1.99 < 2 */
    assert_int_equal(pick(pos, 2, h00, 2, 1.2f, 0.1f, 0.2f, 64), 0);
    assert_int_equal(pick(pos, 2, h00, 2, 1.2f, 0.1f, 0.31f, 64), 1);
    /* negative presence/frequency reward instead */
    const float rev[2] = {2.0f, 3.0f};
    assert_int_equal(pick(rev, 2, h0, 1, 1.0f, 0, -1.01f, 64), 0);
    /* penalty_last_n 0 disables */
    assert_int_equal(pick(pos, 2, h0, 1, 10.0f, 0, 0, 0), 0);
    /* out-of-range tokens in the history are ignored */
    const llamita_token bad[3] = {-5, 7, 1000000};
    assert_int_equal(pick(pos, 2, bad, 3, 10.0f, 0, 0, 64), 0);
}

static void test_penalty_window(void **state) {
    (void)state;
    enum { V = 10 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = -5.0f;
    l[0] = 3.0f;
    l[1] = 2.0f;
    const float rep = 2.0f; /* token 0 penalised -> 1.5 < 2 */
    /* window 2: [0, 5] penalises 0; [0, 5, 6] has pushed 0 out */
    const llamita_token a[2] = {0, 5}, b[3] = {0, 5, 6};
    assert_int_equal(pick(l, V, a, 2, rep, 0, 0, 2), 1);
    assert_int_equal(pick(l, V, b, 3, rep, 0, 0, 2), 0);
    /* a token still in the window after eviction of another copy: [0, 0, 7] with window 2 */
    const llamita_token c[3] = {0, 0, 7};
    assert_int_equal(pick(l, V, c, 3, rep, 0, 0, 2), 1);
    /* -1: whole history, however long ago */
    llamita_token long_hist[200];
    long_hist[0] = 0;
    for (int i = 1; i < 200; i++) long_hist[i] = 5 + i % 3;
    assert_int_equal(pick(l, V, long_hist, 200, rep, 0, 0, -1), 1);
    assert_int_equal(pick(l, V, long_hist, 200, rep, 0, 0, 199), 0);
    assert_int_equal(pick(l, V, long_hist, 200, rep, 0, 0, 200), 1);
    /* frequency counts only inside the window after many wrap-arounds: window 4 of
     * ... 0 0 9 9 -> count(0) = 2 -> 3 - 2 * 0.6 = 1.8 < 2 ; ... 0 9 9 9 -> 2.4 > 2 */
    llamita_token h[103];
    for (int i = 0; i < 99; i++) h[i] = (llamita_token)(i % 3 ? 0 : 8);
    h[99] = 0;
    h[100] = 0;
    h[101] = 9;
    h[102] = 9;
    assert_int_equal(pick(l, V, h, 103, 1.0f, 0.6f, 0, 4), 1);
    h[100] = 9;
    assert_int_equal(pick(l, V, h, 103, 1.0f, 0.6f, 0, 4), 0);
    /* reset clears the history */
    llamita_sampler_params p = plain_params(0.0f, 1);
    p.repeat_penalty = rep;
    llamita_sampler *s = mk(&p, V);
    llamita_sampler_accept(s, 0);
    assert_int_equal(llamita_sampler_sample(s, l), 1);
    llamita_sampler_reset(s, 1);
    assert_int_equal(llamita_sampler_sample(s, l), 0);
    llamita_sampler_free(s);
}

static void test_logits_unchanged_and_robust(void **state) {
    (void)state;
    enum { V = 4096 };
    static float l[V], copy[V];
    fill_logits(l, V, 77, 4.0f);
    memcpy(copy, l, sizeof l);
    llamita_sampler_params p = llamita_sampler_default_params();
    p.repeat_penalty = 1.3f;
    p.frequency_penalty = 0.2f;
    p.presence_penalty = 0.1f;
    p.seed = 3;
    llamita_sampler *s = mk(&p, V);
    for (int i = 0; i < 50; i++) {
        llamita_token t = llamita_sampler_sample(s, l);
        assert_true(t >= 0 && t < V);
        llamita_sampler_accept(s, t);
    }
    assert_memory_equal(l, copy, sizeof l);
    llamita_sampler_free(s);

    /* NaN and infinities never produce an out-of-range token */
    float odd[6] = {NAN, -INFINITY, 1.0f, INFINITY, NAN, INFINITY};
    p = llamita_sampler_default_params();
    p.top_k = 0;
    p.seed = 4;
    s = mk(&p, 6);
    for (int i = 0; i < 200; i++) {
        llamita_token t = llamita_sampler_sample(s, odd);
        assert_true(t == 3 || t == 5); /* the +inf tokens */
    }
    float allneg[6] = {-INFINITY, NAN, -INFINITY, NAN, -INFINITY, -INFINITY};
    assert_int_equal(llamita_sampler_sample(s, allneg), 0);
    assert_int_equal(llamita_sampler_sample(NULL, allneg), LLAMITA_TOKEN_NULL);
    assert_int_equal(llamita_sampler_sample(s, NULL), LLAMITA_TOKEN_NULL);
    llamita_sampler_free(s);

    /* ties at top-k: equal logits keep the lowest ids */
    float eq[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int seen[8];
    p = plain_params(1.0f, 6);
    p.top_k = 3;
    support(&p, eq, 8, 1000, seen);
    int e[8] = {1, 1, 1, 0, 0, 0, 0, 0};
    assert_memory_equal(seen, e, sizeof seen);
}

/* Not a pass/fail check: prints the per-token cost of the default chain on a 32000 vocab. */
static void test_speed_32k(void **state) {
    (void)state;
    enum { V = 32000, T = 200 };
    static float l[V];
    fill_logits(l, V, 5, 8.0f);
    llamita_sampler_params p = llamita_sampler_default_params();
    p.seed = 1;
    const char *names[3] = {"default (top-k 40)", "top-k off, top-p 0.95", "top-k off, top-p off"};
    for (int mode = 0; mode < 3; mode++) {
        if (mode >= 1) p.top_k = 0;
        if (mode == 2) p.top_p = 1.0f;
        llamita_sampler *s = mk(&p, V);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < T; i++) llamita_sampler_accept(s, llamita_sampler_sample(s, l));
        clock_gettime(CLOCK_MONOTONIC, &b);
        double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 1e3 / T;
        fprintf(stderr, "sampler %s, vocab 32000: %.1f us/token\n", names[mode], us);
        llamita_sampler_free(s);
    }
}

/* src/sys.c: the default thread count is at least 1 and at most the online CPUs. */
static void test_n_physical_cores(void **state) {
    (void)state;
    int32_t n = llamita_n_physical_cores();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    fprintf(stderr, "physical cores %d, online CPUs %ld\n", (int)n, online);
    assert_true(n >= 1);
    if (online > 0) assert_true(n <= online);
    assert_int_equal(llamita_n_physical_cores(), n); /* stable */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_params),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_seed),
        cmocka_unit_test(test_topk1_is_greedy),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_penalty_window),
        cmocka_unit_test(test_logits_unchanged_and_robust),
        cmocka_unit_test(test_speed_32k),
        cmocka_unit_test(test_n_physical_cores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
