/*
 * `llamita bench`: prompt processing (pp) and text generation (tg) speed, like llama-bench.
 *
 *  - pp<P>: one batch of P tokens decoded into an empty cache (logits for the last one only), timed;
 *  - tg<N>: N single-token decodes from an empty cache, each with logits, timed together;
 *  - before the timed repetitions of a test, one untimed run of it (warm-up: page faults, caches);
 *  - loading, context creation and token generation are outside the timings;
 *  - result: mean and sample standard deviation of the per-repetition tokens/s.
 * Tokens are pseudo-random ids (BOS first when the model adds one), the same for every run.
 *
 * Output: a Markdown table (-o md, rows printed as tests finish) or a JSON array (-o json) of
 * objects {model, model_filename, type, size, params, cpu_level, threads, n_batch, n_prompt, n_gen,
 * test, tokens_per_second, stddev, samples_ts}.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "llamita.h"
#include "model.h"

#define BENCH_MAX_LIST 16

static const char BENCH_HELP[] =
    "usage: llamita bench -m MODEL [-p 512] [-n 128] [-t N] [-r 5] [-o md|json]\n"
    "\n"
    "Measures prompt processing (pp: one batch of P tokens into an empty cache) and text\n"
    "generation (tg: N single-token decodes) in tokens per second, excluding loading. Each test\n"
    "runs once untimed, then REPS timed times; the result is the mean +- standard deviation.\n"
    "\n"
    "  -m, --model FILE        GGUF model\n"
    "  -p, --n-prompt LIST     prompt lengths, comma-separated (default 512; 0 = no pp test)\n"
    "  -n, --n-gen LIST        generation lengths (default 128; 0 = no tg test)\n"
    "  -t, --threads LIST      thread counts (default: physical cores)\n"
    "  -r, --repetitions N     timed repetitions per test (default 5)\n"
    "  -b, --batch-size N      tokens per forward step (default 512)\n"
    "  -o, --output FMT        md (default) or json\n"
    "\n"
    "The CPU kernels are the best this machine supports; LLAMITA_CPU=scalar|avx2|avx512|neon caps\n"
    "them. Example: llamita bench -m tinyllama-q8_0.gguf -t 1,2 -o json\n";

typedef struct int_list {
    int n;
    int32_t v[BENCH_MAX_LIST];
} int_list;

/* Parses "1,2,4" into l (values in [lo, hi]). */
static void parse_list(const char *opt, const char *s, long long lo, long long hi, int_list *l) {
    l->n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item) usage_error("%s: bad list '%s'", opt, s);
        memcpy(item, p, len);
        item[len] = 0;
        if (l->n >= BENCH_MAX_LIST) usage_error("%s: at most %d values", opt, BENCH_MAX_LIST);
        l->v[l->n++] = (int32_t)parse_int(opt, item, lo, hi);
        if (!comma) break;
        p = comma + 1;
    }
}

typedef struct bench_result {
    int32_t threads, n_prompt, n_gen;
    double mean, sd;
    double *samples; /* [reps] tokens/s */
} bench_result;

/* Pseudo-random token ids in [0, n_vocab), BOS first when the model adds one. */
static void make_tokens(const llamita_model *m, llamita_token *t, int32_t n) {
    const int32_t V = llamita_model_n_vocab(m);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int32_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (llamita_token)((s >> 33) % (uint64_t)V);
    }
    const llamita_token bos = llamita_token_bos(m);
    if (n > 0 && llamita_add_bos(m) && bos >= 0) t[0] = bos;
}

/* One pp run: P tokens as one batch (split by n_batch inside) into an empty cache. Seconds. */
static double run_pp(llamita_context *ctx, const llamita_token *tok, int32_t P) {
    char err[512] = "";
    llamita_kv_clear(ctx);
    const double t0 = now_s();
    if (llamita_decode_tokens(ctx, tok, P, false, err, sizeof err) != 0) die("bench: decode: %s", err);
    return now_s() - t0;
}

/* One tg run: N single-token decodes from an empty cache. Seconds. */
static double run_tg(llamita_context *ctx, const llamita_token *tok, int32_t N) {
    char err[512] = "";
    llamita_kv_clear(ctx);
    const double t0 = now_s();
    for (int32_t i = 0; i < N; i++)
        if (llamita_decode_tokens(ctx, tok + i, 1, false, err, sizeof err) != 0) die("bench: decode: %s", err);
    return now_s() - t0;
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    double v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0.0;
}

static int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *fmt = "md";
    int_list lp = {1, {512}}, ln = {1, {128}}, lt = {1, {0}};
    int32_t reps = 5, n_batch = 512;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(BENCH_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model_path = v;
        else if (opt_val(&a, "-p", "--n-prompt", &v)) parse_list(arg, v, 0, 1 << 20, &lp);
        else if (opt_val(&a, "-n", "--n-gen", &v)) parse_list(arg, v, 0, 1 << 20, &ln);
        else if (opt_val(&a, "-t", "--threads", &v)) parse_list(arg, v, 1, 512, &lt);
        else if (opt_val(&a, "-r", "--repetitions", &v)) reps = (int32_t)parse_int(arg, v, 1, 100000);
        else if (opt_val(&a, "-b", "--batch-size", &v)) n_batch = (int32_t)parse_int(arg, v, 1, 1 << 20);
        else if (opt_val(&a, "-o", "--output", &v)) {
            if (strcmp(v, "md") != 0 && strcmp(v, "json") != 0)
                usage_error("-o: unknown output format '%s' (md or json)", v);
            fmt = v;
        } else usage_error("unknown option '%s' for 'bench'", arg);
    }
    if (!model_path) usage_error("missing -m MODEL");
    const bool json = strcmp(fmt, "json") == 0;
    if (lt.v[0] == 0) lt.v[0] = llamita_n_physical_cores();

    int32_t max_tokens = 1;
    for (int i = 0; i < lp.n; i++) max_tokens = lp.v[i] > max_tokens ? lp.v[i] : max_tokens;
    for (int i = 0; i < ln.n; i++) max_tokens = ln.v[i] > max_tokens ? ln.v[i] : max_tokens;

    llamita_model *m = load_model(model_path, false);
    const char *desc = llamita_model_desc(m);
    const char *type = strrchr(desc, ' ') ? strrchr(desc, ' ') + 1 : desc;
    char size_s[32], params_s[32];
    human_bytes(llamita_model_size(m), size_s, sizeof size_s);
    human_count(llamita_model_n_params(m), params_s, sizeof params_s);
    llamita_token *tok = xmalloc(sizeof *tok * (size_t)max_tokens);
    make_tokens(m, tok, max_tokens);

    const int max_results = lt.n * (lp.n + ln.n);
    bench_result *res = xmalloc(sizeof *res * (size_t)max_results);
    int nres = 0;
    const char *level = "?";
    if (!json) {
        printf("| model                          |       size |     params | type   | threads |   test |              t/s |\n");
        printf("| ------------------------------ | ---------: | ---------: | ------ | ------: | -----: | ---------------: |\n");
        fflush(stdout);
    }
    for (int it = 0; it < lt.n; it++) {
        llamita_context_params cp = llamita_context_default_params();
        cp.n_ctx = (uint32_t)max_tokens;
        cp.n_batch = (uint32_t)n_batch;
        cp.n_threads = lt.v[it];
        char err[1024] = "";
        llamita_context *ctx = llamita_context_new(m, cp, err, sizeof err);
        if (!ctx) die("cannot create a context: %s", err);
        level = lm_context_cpu_level(ctx);
        for (int pass = 0; pass < 2; pass++) {
            const int_list *l = pass == 0 ? &lp : &ln;
            for (int i = 0; i < l->n; i++) {
                const int32_t n = l->v[i];
                if (n == 0) continue;
                bench_result *r = &res[nres++];
                r->threads = lm_context_n_threads(ctx);
                r->n_prompt = pass == 0 ? n : 0;
                r->n_gen = pass == 1 ? n : 0;
                r->samples = xmalloc(sizeof(double) * (size_t)reps);
                (void)(pass == 0 ? run_pp(ctx, tok, n) : run_tg(ctx, tok, n)); /* warm-up */
                for (int k = 0; k < reps; k++) {
                    const double s = pass == 0 ? run_pp(ctx, tok, n) : run_tg(ctx, tok, n);
                    r->samples[k] = (double)n / (s > 0 ? s : 1e-9);
                }
                stats(r->samples, reps, &r->mean, &r->sd);
                if (!json) {
                    char test[32], ts[48];
                    snprintf(test, sizeof test, "%s%d", pass == 0 ? "pp" : "tg", (int)n);
                    snprintf(ts, sizeof ts, "%.2f ± %.2f", r->mean, r->sd);
                    printf("| %-30s | %10s | %10s | %-6s | %7d | %6s | %16s |\n", desc, size_s,
                           params_s, type, (int)r->threads, test, ts);
                    fflush(stdout);
                }
            }
        }
        llamita_context_free(ctx);
    }
    if (json) {
        printf("[\n");
        for (int i = 0; i < nres; i++) {
            const bench_result *r = &res[i];
            char test[32];
            snprintf(test, sizeof test, "%s%d", r->n_prompt ? "pp" : "tg",
                     (int)(r->n_prompt ? r->n_prompt : r->n_gen));
            printf("  {\"model\": ");
            cli_json_str(stdout, desc);
            printf(", \"model_filename\": ");
            cli_json_str(stdout, model_path);
            printf(", \"type\": ");
            cli_json_str(stdout, type);
            printf(", \"size\": %llu, \"params\": %llu, \"cpu_level\": ",
                   (unsigned long long)llamita_model_size(m), (unsigned long long)llamita_model_n_params(m));
            cli_json_str(stdout, level);
            printf(", \"threads\": %d, \"n_batch\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"test\": \"%s\", "
                   "\"tokens_per_second\": %.4f, \"stddev\": %.4f, \"samples_ts\": [",
                   (int)r->threads, (int)n_batch, (int)r->n_prompt, (int)r->n_gen, test, r->mean, r->sd);
            for (int k = 0; k < reps; k++) printf("%s%.4f", k ? ", " : "", r->samples[k]);
            printf("]}%s\n", i + 1 < nres ? "," : "");
        }
        printf("]\n");
    }
    if (fflush(stdout) != 0) die("cannot write to standard output");
    for (int i = 0; i < nres; i++) free(res[i].samples);
    free(res);
    free(tok);
    llamita_model_free(m);
    return 0;
}

const cli_command cli_cmd_bench = {
    "bench", "measure prompt and generation speed (like llama-bench)",
    "usage: llamita bench -m MODEL [-p 512] [-n 128] [-t N] [-r REPS] [-o md|json]; see 'llamita bench --help'",
    BENCH_HELP, cmd_bench};
