/*
 * The thread pool (src/cpu/threadpool.c), the tiled attention kernel (src/ops.c) and the parallel
 * forward pass (src/model.c).
 *
 *   pool_runs            1..8 threads, many runs: every thread runs once per run with the right
 *                        ith / nth, and the caller sees all their writes afterwards
 *   pool_barriers        multi-phase runs: after each barrier every thread sees every other
 *                        thread's write of that phase
 *   pool_next            lm_threadpool_next hands out each item of a phase exactly once, and starts
 *                        again from 0 after each barrier and each run
 *   pool_errors          bad thread counts give NULL and a message; free(NULL) is a no-op
 *   expf                 lm_expf vs libm's expf over [-87, 87.9]: relative error <= 3 ulp (measured
 *                        max printed); lm_exp_inplace == lm_expf lane by lane; the edges (0 below
 *                        -87.34, finite above 88, NaN kept)
 *   attention_block      lm_attention_block vs the plain-loop lm_attention_head (1..700 cells, head
 *                        sizes 16 / 40 / 64, 3 and 8 heads per KV head): max abs diff printed,
 *                        bound 1e-3; the same cells stored contiguously or scattered, and each row
 *                        computed alone, give bit-identical results
 *   threads_logits       per type (F32, F16, BF16, Q8_0, Q4_0, Q5_1, Q4_K_M, Q6_K): logits of an
 *                        80-token prompt (all rows) and of 4 decode steps with 1, 2, 3, 4 threads
 *                        vs 1 thread: bit for bit equal (max abs diff printed)
 *   concurrent_contexts  two contexts of one model, each with its own pool, decoding at the same
 *                        time from two threads == each alone
 *   default_threads      n_threads 0 = llamita_n_physical_cores(); out-of-range counts rejected
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cpu/cpu.h"
#include "cpu/threadpool.h"
#include "llamita.h"
#include "model.h"
#include "ops.h"
#include "quant.h"
#include "synth.h"
#include "test_util.h"

#define PATH_LEN 8192
#define MAX_T 8

/* ---------------------------------------------------------------------------------------------
 * Pool
 * ------------------------------------------------------------------------------------------- */

typedef struct pool_state {
    lm_threadpool *tp;
    int nth_expected;
    atomic_int calls;
    atomic_int bad;
    int seen[MAX_T];  /* per thread: runs executed (each written by its own thread only) */
    int slot[MAX_T];  /* barrier test: value written in the current phase */
    atomic_int claimed[512];
    int phases;
} pool_state;

static void fn_count(void *arg, int ith, int nth) {
    pool_state *s = arg;
    if (nth != s->nth_expected || ith < 0 || ith >= nth) atomic_fetch_add(&s->bad, 1);
    else s->seen[ith]++;
    atomic_fetch_add(&s->calls, 1);
}

static void test_pool_runs(void **state) {
    (void)state;
    for (int nth = 1; nth <= MAX_T; nth++) {
        char err[256] = "";
        pool_state s;
        memset(&s, 0, sizeof s);
        s.tp = lm_threadpool_new(nth, err, sizeof err);
        if (!s.tp) fail_msg("lm_threadpool_new(%d): %s", nth, err);
        assert_int_equal(lm_threadpool_n_threads(s.tp), nth);
        s.nth_expected = nth;
        const int runs = 300;
        for (int r = 0; r < runs; r++) {
            lm_threadpool_run(s.tp, fn_count, &s);
            /* all writes of the run are visible to the caller once it returns */
            for (int i = 0; i < nth; i++) assert_int_equal(s.seen[i], r + 1);
        }
        assert_int_equal(atomic_load(&s.calls), runs * nth);
        assert_int_equal(atomic_load(&s.bad), 0);
        lm_threadpool_free(s.tp);
    }
    printf("  300 runs on pools of 1..%d threads: every thread ran once per run\n", MAX_T);
}

static void fn_phases(void *arg, int ith, int nth) {
    pool_state *s = arg;
    for (int p = 0; p < s->phases; p++) {
        s->slot[ith] = p * 1000 + ith;
        lm_threadpool_barrier(s->tp);
        for (int j = 0; j < nth; j++)
            if (s->slot[j] != p * 1000 + j) atomic_fetch_add(&s->bad, 1);
        lm_threadpool_barrier(s->tp); /* nobody overwrites a slot before all have read it */
    }
}

static void test_pool_barriers(void **state) {
    (void)state;
    int total_barriers = 0;
    for (int nth = 1; nth <= MAX_T; nth++) {
        char err[256] = "";
        pool_state s;
        memset(&s, 0, sizeof s);
        s.tp = lm_threadpool_new(nth, err, sizeof err);
        if (!s.tp) fail_msg("lm_threadpool_new(%d): %s", nth, err);
        s.phases = 25;
        for (int r = 0; r < 20; r++) lm_threadpool_run(s.tp, fn_phases, &s);
        total_barriers += 20 * 2 * s.phases;
        assert_int_equal(atomic_load(&s.bad), 0);
        lm_threadpool_free(s.tp);
    }
    printf("  %d barriers per pool size, every write of a phase seen by all threads\n", total_barriers / MAX_T);
}

/* Phase p hands out 37 * (p + 1) % 300 + 1 items; each is claimed once. */
static void fn_next(void *arg, int ith, int nth) {
    pool_state *s = arg;
    (void)nth;
    for (int p = 0; p < s->phases; p++) {
        const int n = 37 * (p + 1) % 300 + 1;
        for (;;) {
            const int64_t i = lm_threadpool_next(s->tp);
            if (i >= n) break;
            if (i < 0) {
                atomic_fetch_add(&s->bad, 1);
                break;
            }
            atomic_fetch_add(&s->claimed[i], 1);
        }
        lm_threadpool_barrier(s->tp);
        if (ith == 0) {
            for (int i = 0; i < 512; i++) {
                if (atomic_load(&s->claimed[i]) != (i < n ? 1 : 0)) atomic_fetch_add(&s->bad, 1);
                atomic_store(&s->claimed[i], 0);
            }
        }
        lm_threadpool_barrier(s->tp);
    }
    /* leave the counter advanced: the next run must start from 0 again */
    (void)lm_threadpool_next(s->tp);
}

static void test_pool_next(void **state) {
    (void)state;
    for (int nth = 1; nth <= MAX_T; nth++) {
        char err[256] = "";
        pool_state s;
        memset(&s, 0, sizeof s);
        s.tp = lm_threadpool_new(nth, err, sizeof err);
        if (!s.tp) fail_msg("lm_threadpool_new(%d): %s", nth, err);
        s.phases = 12;
        for (int r = 0; r < 10; r++) lm_threadpool_run(s.tp, fn_next, &s);
        assert_int_equal(atomic_load(&s.bad), 0);
        lm_threadpool_free(s.tp);
    }
    printf("  work items handed out exactly once per phase, 1..%d threads\n", MAX_T);
}

static void test_pool_errors(void **state) {
    (void)state;
    char err[256] = "";
    assert_null(lm_threadpool_new(0, err, sizeof err));
    printf("  expected error: %s\n", err);
    assert_non_null(strstr(err, "n_threads"));
    err[0] = 0;
    assert_null(lm_threadpool_new(LM_THREADPOOL_MAX + 1, err, sizeof err));
    assert_non_null(strstr(err, "n_threads"));
    lm_threadpool_free(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Attention kernel
 * ------------------------------------------------------------------------------------------- */

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}

/* One case: n_tok tokens x gqa heads of query rows, n_cells cells in a cache of n_ctx slots.
 * lm_attention_block runs on the cells placed contiguously (from cell 3) and on the same values
 * scattered over the cache (gathered path): the two must agree bit for bit, and so must each row
 * computed alone. Returns the max abs diff vs the plain-loop reference lm_attention_head. */
static double attention_case(int32_t hd, int32_t n_tok, int32_t gqa, int32_t n_cells) {
    const int32_t n_ctx = n_cells + 7, R = n_tok * gqa;
    const lm_kernels *k = lm_cpu_kernels();
    const size_t cache = (size_t)n_ctx * hd;
    lm_fp16 *krow = malloc(sizeof(lm_fp16) * cache), *vrow = malloc(sizeof(lm_fp16) * cache); /* [cell][hd] */
    lm_fp16 *kc = calloc(cache, sizeof(lm_fp16)), *vtc = calloc(cache, sizeof(lm_fp16)); /* contiguous */
    lm_fp16 *kp = calloc(cache, sizeof(lm_fp16)), *vtp = calloc(cache, sizeof(lm_fp16)); /* scattered */
    float *q = malloc(sizeof(float) * (size_t)R * hd), *o_ref = malloc(sizeof(float) * (size_t)R * hd),
          *o_c = malloc(sizeof(float) * (size_t)R * hd), *o_p = malloc(sizeof(float) * (size_t)R * hd),
          *o_1 = malloc(sizeof(float) * (size_t)R * hd);
    int32_t *cc = malloc(sizeof(int32_t) * (size_t)n_cells), *cp = malloc(sizeof(int32_t) * (size_t)n_cells);
    int32_t *n_att = malloc(sizeof(int32_t) * (size_t)R);
    const float **qp = malloc(sizeof(float *) * (size_t)R);
    float **op = malloc(sizeof(float *) * (size_t)R);
    float *scores = malloc(sizeof(float) * (size_t)n_ctx);
    lm_fp16 *probs = malloc(sizeof(lm_fp16) * (size_t)n_ctx);
    /* logical cell j: contiguous at 3 + j, scattered at (5 j + 2) mod n_ctx (distinct: 5 and n_ctx
     * are coprime for the sizes used) */
    for (int32_t j = 0; j < n_cells; j++) {
        cc[j] = 3 + j;
        cp[j] = (int32_t)((5 * j + 2) % n_ctx);
        for (int32_t i = 0; i < j; i++) assert_true(cp[i] != cp[j]);
    }
    for (int32_t c = 0; c < n_ctx; c++)
        for (int32_t d = 0; d < hd; d++) {
            krow[(size_t)c * hd + d] = lm_fp32_to_fp16(3.0f * frand());
            vrow[(size_t)c * hd + d] = lm_fp32_to_fp16(frand());
        }
    for (int32_t j = 0; j < n_cells; j++)
        for (int32_t d = 0; d < hd; d++) {
            const lm_fp16 kv = krow[(size_t)cc[j] * hd + d], vv = vrow[(size_t)cc[j] * hd + d];
            kc[(size_t)cc[j] * hd + d] = kv;
            kp[(size_t)cp[j] * hd + d] = kv;
            vtc[(size_t)d * n_ctx + cc[j]] = vv;
            vtp[(size_t)d * n_ctx + cp[j]] = vv;
        }
    for (int32_t i = 0; i < R * hd; i++) q[i] = 2.0f * frand();
    for (int32_t t = 0; t < n_tok; t++) {
        /* the last tokens of a prompt: token t sees n_cells - (n_tok - 1 - t) cells */
        int32_t n = n_cells - (n_tok - 1 - t);
        if (n < 1) n = 1;
        for (int32_t h = 0; h < gqa; h++) n_att[t * gqa + h] = n;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    for (int32_t r = 0; r < R; r++)
        lm_attention_head(q + (size_t)r * hd, krow, vrow, (size_t)hd, cc, n_att[r], hd, scale, scores, probs,
                          o_ref + (size_t)r * hd);
    void *buf = malloc(lm_attn_scratch_bytes(R, hd, n_ctx));
    lm_attn_scratch sc;
    lm_attn_scratch_init(&sc, buf, R, hd, n_ctx);
    for (int32_t r = 0; r < R; r++) qp[r] = q + (size_t)r * hd;
    for (int32_t r = 0; r < R; r++) op[r] = o_c + (size_t)r * hd;
    lm_attention_block(k, qp, op, n_att, R, kc, vtc, (size_t)n_ctx, cc, 1, hd, scale, &sc);
    for (int32_t r = 0; r < R; r++) op[r] = o_p + (size_t)r * hd;
    lm_attention_block(k, qp, op, n_att, R, kp, vtp, (size_t)n_ctx, cp, 0, hd, scale, &sc);
    for (int32_t r = 0; r < R; r++) { /* each row alone */
        float *o1 = o_1 + (size_t)r * hd;
        lm_attention_block(k, qp + r, &o1, n_att + r, 1, kc, vtc, (size_t)n_ctx, cc, 1, hd, scale, &sc);
    }
    assert_memory_equal(o_c, o_p, sizeof(float) * (size_t)R * hd);
    assert_memory_equal(o_c, o_1, sizeof(float) * (size_t)R * hd);
    double mx = 0;
    for (int32_t i = 0; i < R * hd; i++) {
        const double d = fabs((double)o_ref[i] - (double)o_c[i]);
        if (!(d <= mx)) mx = d;
    }
    free(buf);
    free(krow);
    free(vrow);
    free(kc);
    free(vtc);
    free(kp);
    free(vtp);
    free(q);
    free(o_ref);
    free(o_c);
    free(o_p);
    free(o_1);
    free(cc);
    free(cp);
    free(n_att);
    free(qp);
    free(op);
    free(scores);
    free(probs);
    return mx;
}

static void test_expf(void **state) {
    (void)state;
    enum { N = 200003 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    double max_ulp = 0;
    for (int i = 0; i < N; i++) x[i] = y[i] = -87.0f + 174.9f * (float)i / (float)(N - 1);
    lm_exp_inplace(y, N);
    for (int i = 0; i < N; i++) {
        const float ref = expf(x[i]), got = lm_expf(x[i]);
        assert_true(got == y[i]); /* vector lanes == scalar */
        const double ulp = fabs((double)got - (double)ref) / (double)(nextafterf(ref, INFINITY) - ref);
        if (ulp > max_ulp) max_ulp = ulp;
    }
    printf("  lm_expf vs libm expf on [-87, 87.9], %d points: max error %.2f ulp\n", N, max_ulp);
    assert_true(max_ulp <= 3.0);
    assert_true(lm_expf(0.0f) == 1.0f);
    assert_true(lm_expf(-90.0f) == 0.0f && lm_expf(-INFINITY) == 0.0f);
    assert_true(isfinite(lm_expf(100.0f)) && lm_expf(100.0f) > 1e38f);
    assert_true(isnan(lm_expf(NAN)));
    free(x);
    free(y);
}

static void test_attention_block(void **state) {
    (void)state;
    lm_ops_init();
    static const int32_t hds[] = {16, 40, 64};
    static const int32_t cellss[] = {1, 7, 64, 65, 150, 700};
    double mx = 0;
    int cases = 0;
    for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
        for (size_t b = 0; b < sizeof cellss / sizeof cellss[0]; b++) {
            const int32_t n_cells = cellss[b];
            const int32_t n_tok = n_cells < 5 ? n_cells : 5;
            mx = fmax(mx, attention_case(hds[a], n_tok, 3, n_cells));
            mx = fmax(mx, attention_case(hds[a], 1, 8, n_cells));
            cases += 2;
        }
    /* Outputs are within [-1, 1]; the products sum in another order than the reference's plain
     * loops, which moves a probability across an f16 rounding boundary now and then (one f16 ulp
     * of p, 2^-11 relative, times |v| <= 1). */
    printf("  attention block vs reference, %d cases (%s kernels): max abs diff %.3g (contiguous == "
           "gathered == row by row, bit for bit)\n", cases, lm_cpu_kernels()->name, mx);
    assert_true(mx <= 1e-3);
}

/* ---------------------------------------------------------------------------------------------
 * Forward pass with several thread counts
 * ------------------------------------------------------------------------------------------- */

static const char *write_model(const char *name, const lm_synth_params *p, char *path, size_t n) {
    char err[512] = "";
    snprintf(path, n, "%s/%s", lm_test_tmpdir(), name);
    if (!lm_synth_write(path, p, err, sizeof err)) fail_msg("lm_synth_write(%s): %s", name, err);
    return path;
}

static llamita_model *load(const char *path) {
    char err[512] = "";
    llamita_model *m = llamita_model_load(path, llamita_model_default_params(), err, sizeof err);
    if (!m) fail_msg("load %s: %s", path, err);
    return m;
}

static llamita_context *new_ctx(llamita_model *m, uint32_t n_ctx, uint32_t n_batch, int32_t n_threads) {
    char err[512] = "";
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    llamita_context *c = llamita_context_new(m, cp, err, sizeof err);
    if (!c) fail_msg("context: %s", err);
    return c;
}

static void make_tokens(int32_t *t, int n, int32_t n_vocab, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        t[i] = (int32_t)((s >> 8) % (uint32_t)n_vocab);
    }
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

#define NPROMPT 80
#define NGEN 4

/* Logits of an NPROMPT-token prompt (one batch, every row) then NGEN single-token decodes, with
 * n_threads threads, into out[(NPROMPT + NGEN) * n_vocab]. */
static void run_model(llamita_model *m, int32_t n_threads, uint32_t n_batch, const int32_t *tok, float *out) {
    char err[512] = "";
    const int32_t V = llamita_model_n_vocab(m);
    llamita_context *c = new_ctx(m, 128, n_batch, n_threads);
    assert_int_equal(lm_context_n_threads(c), n_threads);
    if (llamita_decode_tokens(c, tok, NPROMPT, true, err, sizeof err) != 0) fail_msg("decode: %s", err);
    for (int i = 0; i < NPROMPT; i++) memcpy(out + (size_t)i * V, llamita_get_logits_ith(c, i), sizeof(float) * V);
    for (int i = 0; i < NGEN; i++) {
        if (llamita_decode_tokens(c, tok + NPROMPT + i, 1, false, err, sizeof err) != 0) fail_msg("decode: %s", err);
        memcpy(out + (size_t)(NPROMPT + i) * V, llamita_get_logits_ith(c, -1), sizeof(float) * V);
    }
    llamita_context_free(c);
}

static void check_threads(const char *ftype, bool kquant) {
    char path[PATH_LEN], name[64];
    lm_synth_params p = lm_synth_default_params();
    p.n_vocab = 300;
    p.n_embd = kquant ? 256 : 128;
    p.n_layer = 2;
    p.n_head = 8;
    p.n_head_kv = 2;
    p.n_ff = kquant ? 512 : 320;
    p.n_ctx = 128;
    p.ftype = ftype;
    p.seed = 77;
    snprintf(name, sizeof name, "thr-%s.gguf", ftype);
    write_model(name, &p, path, sizeof path);
    llamita_model *m = load(path);
    const int32_t V = llamita_model_n_vocab(m);
    const size_t n = (size_t)(NPROMPT + NGEN) * V;
    int32_t tok[NPROMPT + NGEN];
    make_tokens(tok, NPROMPT + NGEN, V, 11);
    float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    run_model(m, 1, 512, tok, ref);
    double mx = 0;
    for (int32_t nt = 2; nt <= 4; nt++) {
        run_model(m, nt, 512, tok, got);
        mx = fmax(mx, max_abs_diff(ref, got, (int64_t)n));
        assert_memory_equal(ref, got, sizeof(float) * n);
    }
    /* ubatches of 7 tokens on 3 threads: the same as 3 threads with one batch */
    float *ref3 = malloc(sizeof(float) * n);
    run_model(m, 3, 512, tok, ref3);
    run_model(m, 3, 7, tok, got);
    const double d_ub = max_abs_diff(ref3, got, (int64_t)n);
    printf("  %-7s 1 vs 2, 3, 4 threads: max abs diff %.3g; n_batch 7 vs 512 on 3 threads: %.3g\n", ftype, mx,
           d_ub);
    assert_true(d_ub <= 1e-4); /* batch shape may change the gemm summation order (bound as test_model) */
    free(ref);
    free(ref3);
    free(got);
    llamita_model_free(m);
}

static void test_threads_logits(void **state) {
    (void)state;
    printf("  kernels: %s\n", lm_cpu_kernels()->name);
    check_threads("F32", false);
    check_threads("F16", false);
    check_threads("BF16", false);
    check_threads("Q8_0", false);
    check_threads("Q4_0", false);
    check_threads("Q5_1", false);
    check_threads("Q4_K_M", true);
    check_threads("Q6_K", true);
}

typedef struct conc_job {
    llamita_model *m;
    const int32_t *tok;
    float *out;
} conc_job;

static void *conc_main(void *arg) {
    conc_job *j = arg;
    run_model(j->m, 2, 512, j->tok, j->out);
    return NULL;
}

static void test_concurrent_contexts(void **state) {
    (void)state;
    char path[PATH_LEN];
    lm_synth_params p = lm_synth_default_params();
    p.n_vocab = 300;
    p.n_embd = 128;
    p.n_layer = 2;
    p.n_head = 8;
    p.n_head_kv = 2;
    p.n_ff = 320;
    p.n_ctx = 128;
    p.ftype = "Q8_0";
    p.seed = 5;
    write_model("conc.gguf", &p, path, sizeof path);
    llamita_model *m = load(path);
    const int32_t V = llamita_model_n_vocab(m);
    const size_t n = (size_t)(NPROMPT + NGEN) * V;
    int32_t ta[NPROMPT + NGEN], tb[NPROMPT + NGEN];
    make_tokens(ta, NPROMPT + NGEN, V, 1);
    make_tokens(tb, NPROMPT + NGEN, V, 2);
    float *ra = malloc(sizeof(float) * n), *rb = malloc(sizeof(float) * n), *xa = malloc(sizeof(float) * n),
          *xb = malloc(sizeof(float) * n);
    run_model(m, 2, 512, ta, ra);
    run_model(m, 2, 512, tb, rb);
    conc_job ja = {m, ta, xa}, jb = {m, tb, xb};
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, conc_main, &ja), 0);
    assert_int_equal(pthread_create(&b, NULL, conc_main, &jb), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    const double da = max_abs_diff(ra, xa, (int64_t)n), db = max_abs_diff(rb, xb, (int64_t)n);
    printf("  two contexts decoding at once vs alone: %.3g, %.3g\n", da, db);
    assert_true(da == 0.0 && db == 0.0);
    free(ra);
    free(rb);
    free(xa);
    free(xb);
    llamita_model_free(m);
}

static void test_default_threads(void **state) {
    (void)state;
    char path[PATH_LEN], err[512] = "";
    lm_synth_params p = lm_synth_default_params();
    p.n_vocab = 300;
    p.n_embd = 64;
    p.n_layer = 1;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 96;
    p.n_ctx = 32;
    p.ftype = "F32";
    write_model("def.gguf", &p, path, sizeof path);
    llamita_model *m = load(path);
    llamita_context *c = new_ctx(m, 32, 32, 0);
    printf("  n_threads 0 -> %d threads (%d physical cores), %s kernels\n", (int)lm_context_n_threads(c),
           (int)llamita_n_physical_cores(), lm_context_cpu_level(c));
    assert_int_equal(lm_context_n_threads(c), llamita_n_physical_cores());
    llamita_context_free(c);
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = -1;
    assert_null(llamita_context_new(m, cp, err, sizeof err));
    printf("  expected error: %s\n", err);
    assert_non_null(strstr(err, "n_threads"));
    cp.n_threads = 100000;
    assert_null(llamita_context_new(m, cp, err, sizeof err));
    assert_non_null(strstr(err, "n_threads"));
    llamita_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_runs),          cmocka_unit_test(test_pool_barriers),
        cmocka_unit_test(test_pool_next),          cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_expf),               cmocka_unit_test(test_attention_block),
        cmocka_unit_test(test_threads_logits),
        cmocka_unit_test(test_concurrent_contexts), cmocka_unit_test(test_default_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
