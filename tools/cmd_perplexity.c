/*
 * `llamita perplexity`: perplexity of a model on a text by llama.cpp's method (chunks of n_ctx tokens,
 * BOS first, second half scored; see src/perplexity.h), and KL divergence against log-probs saved from
 * a base model. docs/perplexity.md describes the method, the formulas and the file format.
 *
 * Output: stdout gets the result only (the final `PPL = x +/- y` line as llama.cpp's "Final estimate",
 * or the KLD statistics; with -o json one JSON object); stderr gets progress: a bar with running PPL
 * and ETA when it is a terminal, else about ten plain lines.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "llamita.h"
#include "perplexity.h"

static const char PPL_HELP[] =
    "usage: llamita perplexity -m MODEL -f TEXT [-c N_CTX] [-b N_BATCH] [--chunks N] [-t N]\n"
    "                          [-o md|json] [--save-logits FILE [--save-logits-type f16|f32]]\n"
    "       llamita perplexity -m MODEL --kl-divergence FILE [-b N_BATCH] [--chunks N] [-t N] [-o md|json]\n"
    "\n"
    "Perplexity as llama.cpp's llama-perplexity computes it: the text is tokenized (BOS first), cut\n"
    "into chunks of N_CTX tokens, each chunk is evaluated from an empty cache with BOS in place of\n"
    "its first token, and the predictions of its second half are scored. The last line reads\n"
    "'PPL = <value> +/- <standard error>'.\n"
    "\n"
    "  -m, --model FILE          GGUF model\n"
    "  -f, --file FILE           text to evaluate (one trailing newline is dropped, as llama.cpp)\n"
    "  -c, --ctx-size N          tokens per chunk (default 512, at least 4)\n"
    "  -b, --batch-size N        tokens per forward step (default: N_CTX)\n"
    "      --chunks N            evaluate at most N chunks (default: all)\n"
    "  -t, --threads N           threads (default: physical cores)\n"
    "  -o, --output FMT          md (default: text lines) or json\n"
    "      --save-logits FILE    also save the model's log-probs at every scored position (the base\n"
    "                            for --kl-divergence; size = chunks * (N_CTX/2 - 1) * n_vocab * 4 bytes)\n"
    "      --save-logits-type T  f32 (default, exact) or f16 (half the size; PPL(base) then within\n"
    "                            ~0.1%, KLD noise ~1e-6)\n"
    "      --kl-divergence FILE  evaluate on the tokens saved in FILE and compare with its log-probs:\n"
    "                            mean KL(base || model), top-1 agreement, PPL of both, their difference\n"
    "\n"
    "Example: llamita perplexity -m model-f16.gguf -f wiki.test.raw -c 512 --save-logits base.lp\n"
    "         llamita perplexity -m model-q4_k_m.gguf --kl-divergence base.lp\n";

typedef struct progress_state {
    bool tty;
    int32_t every; /* plain mode: print every `every` chunks */
    bool kld;
} progress_state;

static void fmt_eta(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 1e8) s = 0;
    const long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

/* Progress callback: a bar on a terminal, else a few plain lines. */
static bool on_progress(const lm_ppl_progress *p, void *user) {
    const progress_state *st = user;
    const double per = p->elapsed_s / p->chunk;
    char eta[32], el[32];
    fmt_eta(per * (p->n_chunks - p->chunk), eta, sizeof eta);
    fmt_eta(p->elapsed_s, el, sizeof el);
    char kld[64] = "";
    if (st->kld) snprintf(kld, sizeof kld, "  KLD %.6f", p->kld);
    if (st->tty) {
        enum { W = 30 };
        char bar[W + 1];
        const int fill = (int)((int64_t)W * p->chunk / p->n_chunks);
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        fprintf(stderr, "\r[%s] %d/%d  PPL %.4f%s  %s elapsed, ETA %s ", bar, (int)p->chunk,
                (int)p->n_chunks, p->ppl, kld, el, eta);
        if (p->chunk == p->n_chunks) fputc('\n', stderr);
    } else if (p->chunk % st->every == 0 || p->chunk == p->n_chunks) {
        fprintf(stderr, "perplexity: chunk %d/%d, PPL = %.4f%s, %s elapsed, ETA %s\n", (int)p->chunk,
                (int)p->n_chunks, p->ppl, kld, el, eta);
    }
    fflush(stderr);
    return true;
}

static llamita_context *make_ctx(llamita_model *m, int32_t n_ctx, int32_t n_batch, int32_t threads) {
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_threads = threads;
    char err[1024] = "";
    llamita_context *ctx = llamita_context_new(m, cp, err, sizeof err);
    if (!ctx) die("cannot create a context: %s", err);
    return ctx;
}

static int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *save_path = NULL, *kld_path = NULL, *fmt = "md";
    int32_t n_ctx = 512, n_batch = 0, chunks = 0, threads = 0;
    bool ctx_given = false;
    uint32_t dtype = LM_LOGITS_F32;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(PPL_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model_path = v;
        else if (opt_val(&a, "-f", "--file", &v)) text_path = v;
        else if (opt_val(&a, "-c", "--ctx-size", &v)) {
            const long long c = parse_int(arg, v, INT32_MIN, INT32_MAX);
            if (c < 4 || c > (1 << 20)) usage_error("-c: the context must be 4 to %d tokens (got %lld)", 1 << 20, c);
            n_ctx = (int32_t)c;
            ctx_given = true;
        } else if (opt_val(&a, "-b", "--batch-size", &v)) {
            const long long b = parse_int(arg, v, INT32_MIN, INT32_MAX);
            if (b < 1 || b > (1 << 20)) usage_error("-b: the batch must be 1 to %d tokens (got %lld)", 1 << 20, b);
            n_batch = (int32_t)b;
        } else if (opt_val(&a, NULL, "--chunks", &v)) chunks = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, "-t", "--threads", &v)) threads = (int32_t)parse_int(arg, v, 1, 512);
        else if (opt_val(&a, NULL, "--save-logits", &v)) save_path = v;
        else if (opt_val(&a, NULL, "--save-logits-type", &v)) {
            if (strcmp(v, "f16") == 0) dtype = LM_LOGITS_F16;
            else if (strcmp(v, "f32") == 0) dtype = LM_LOGITS_F32;
            else usage_error("--save-logits-type: '%s' (f16 or f32)", v);
        } else if (opt_val(&a, NULL, "--kl-divergence", &v)) kld_path = v;
        else if (opt_val(&a, "-o", "--output", &v)) {
            if (strcmp(v, "md") != 0 && strcmp(v, "json") != 0)
                usage_error("-o: unknown output format '%s' (md or json)", v);
            fmt = v;
        } else usage_error("unknown option '%s' for 'perplexity'", arg);
    }
    if (!model_path) usage_error("missing -m MODEL");
    if (kld_path && save_path) usage_error("--save-logits and --kl-divergence cannot be combined");
    if (!kld_path && !text_path) usage_error("missing -f TEXT (or --kl-divergence FILE)");
    if (kld_path && text_path) warn("--kl-divergence: the tokens come from '%s'; -f is ignored", kld_path);
    const bool json = strcmp(fmt, "json") == 0;
    progress_state ps = {isatty(fileno(stderr)) != 0, 1, kld_path != NULL};
    char err[2048] = "";

    if (kld_path) {
        llamita_model *m = load_model(model_path, false);
        lm_logits_file lf;
        if (lm_logits_file_open(kld_path, llamita_model_n_vocab(m), &lf, err, sizeof err) != 0) die("%s", err);
        if (ctx_given && n_ctx != lf.n_ctx)
            die("-c %d differs from the n_ctx %d that '%s' was saved with", (int)n_ctx, (int)lf.n_ctx, kld_path);
        const int32_t nb = (n_batch <= 0 || n_batch > lf.n_ctx) ? lf.n_ctx : n_batch;
        const int32_t nch = chunks > 0 && chunks < lf.n_chunks ? chunks : lf.n_chunks;
        ps.every = nch >= 10 ? nch / 10 : 1;
        llamita_context *ctx = make_ctx(m, lf.n_ctx, nb, threads);
        fprintf(stderr, "perplexity: KL divergence against '%s': %d chunks of %d tokens, n_batch = %d\n",
                kld_path, (int)nch, (int)lf.n_ctx, (int)nb);
        lm_kld_result r;
        if (lm_kl_divergence(ctx, &lf, nb, chunks, on_progress, &ps, &r, err, sizeof err) != 0)
            die("perplexity: %s", err);
        if (json) {
            printf("{\"ppl\": %.10g, \"ppl_stderr\": %.10g, \"n_tokens\": %lld, \"n_chunks\": %d, "
                   "\"n_scored\": %lld, \"n_ctx\": %d, \"ppl_base\": %.10g, \"ppl_base_stderr\": %.10g, "
                   "\"dppl\": %.10g, \"dppl_stderr\": %.10g, \"ppl_ratio\": %.10g, \"ppl_ratio_stderr\": %.10g, "
                   "\"kld\": %.10g, \"kld_stderr\": %.10g, \"kld_max\": %.10g, \"kld_p99\": %.10g, "
                   "\"kld_median\": %.10g, \"top1\": %.10g, \"top1_stderr\": %.10g}\n",
                   r.ppl, r.ppl_stderr, (long long)r.n_chunks * lf.n_ctx, (int)r.n_chunks,
                   (long long)r.count, (int)lf.n_ctx, r.ppl_base, r.ppl_base_stderr, r.dppl,
                   r.dppl_stderr, r.ratio, r.ratio_stderr, r.kld, r.kld_stderr, r.kld_max, r.kld_p99,
                   r.kld_median, 100.0 * r.top1, 100.0 * r.top1_stderr);
        } else {
            printf("positions compared     : %lld (%d chunks of %d tokens)\n", (long long)r.count,
                   (int)r.n_chunks, (int)lf.n_ctx);
            printf("Mean PPL(Q)            : %10.6f +/- %10.6f\n", r.ppl, r.ppl_stderr);
            printf("Mean PPL(base)         : %10.6f +/- %10.6f\n", r.ppl_base, r.ppl_base_stderr);
            printf("Mean PPL(Q)-PPL(base)  : %10.6f +/- %10.6f\n", r.dppl, r.dppl_stderr);
            printf("Mean PPL(Q)/PPL(base)  : %10.6f +/- %10.6f\n", r.ratio, r.ratio_stderr);
            printf("Mean KLD               : %10.6f +/- %10.6f\n", r.kld, r.kld_stderr);
            printf("Maximum KLD            : %10.6f\n", r.kld_max);
            printf("99.0%%   KLD            : %10.6f\n", r.kld_p99);
            printf("Median  KLD            : %10.6f\n", r.kld_median);
            printf("Same top p             : %6.3f +/- %5.3f %%\n", 100.0 * r.top1, 100.0 * r.top1_stderr);
            printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
        }
        if (fflush(stdout) != 0) die("cannot write to standard output");
        llamita_context_free(ctx);
        lm_logits_file_close(&lf);
        llamita_model_free(m);
        return 0;
    }

    size_t len = 0;
    char *text = read_file(text_path, &len);
    if (len > 0 && text[len - 1] == '\n') text[--len] = 0; /* as llama.cpp's -f */
    llamita_model *m = load_model(model_path, false);
    int32_t n_tok = 0;
    llamita_token *tok = tokenize_all(m, text, len, true, false, &n_tok);
    free(text);
    const int32_t nch = lm_ppl_n_chunks(n_tok, n_ctx, chunks);
    if (nch < 1)
        die("'%s' is too short: one chunk of -c %d needs %d tokens, the text has %d", text_path,
            (int)n_ctx, (int)n_ctx, (int)n_tok);
    const int32_t nb = (n_batch <= 0 || n_batch > n_ctx) ? n_ctx : n_batch;
    ps.every = nch >= 10 ? nch / 10 : 1;
    llamita_context *ctx = make_ctx(m, n_ctx, nb, threads);
    FILE *save = NULL;
    if (save_path) {
        save = fopen(save_path, "wb");
        if (!save) die("cannot create '%s': %s", save_path, strerror(errno));
    }
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %d tokens, n_batch = %d, %d scored per chunk\n",
            (int)n_tok, (int)nch, (int)n_ctx, (int)nb, (int)(n_ctx - 1 - n_ctx / 2));
    lm_ppl_params p = {n_ctx, nb, chunks, dtype};
    lm_ppl_result r;
    const int rc = lm_perplexity(ctx, tok, n_tok, &p, save, on_progress, &ps, &r, err, sizeof err);
    if (save && fclose(save) != 0 && rc == 0) {
        remove(save_path);
        die("cannot write '%s': %s", save_path, strerror(errno));
    }
    if (rc != 0) {
        if (save) remove(save_path);
        die("perplexity: %s", err);
    }
    if (json)
        printf("{\"ppl\": %.10g, \"ppl_stderr\": %.10g, \"n_tokens\": %d, \"n_chunks\": %d, \"n_scored\": %lld, "
               "\"n_ctx\": %d}\n",
               r.ppl, r.ppl_stderr, (int)r.n_tokens, (int)r.n_chunks, (long long)r.n_scored, (int)n_ctx);
    else printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
    if (fflush(stdout) != 0) die("cannot write to standard output");
    llamita_context_free(ctx);
    free(tok);
    llamita_model_free(m);
    return 0;
}

const cli_command cli_cmd_perplexity = {
    "perplexity", "perplexity of a model on a text (llama.cpp's method), KL divergence vs a base",
    "usage: llamita perplexity -m MODEL -f TEXT [-c 512] [-b N] [--chunks N] [-o md|json]; see 'llamita perplexity --help'",
    PPL_HELP, cmd_perplexity};
