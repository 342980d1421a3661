/*
 * llamita — command-line interface. One binary, subcommands with llama.cpp's flag names:
 *   run       generate text from a prompt (streams only the generated text to stdout)
 *   tokenize  print the token ids of a text
 *   logits    write the logits of every prompt position to a file (float32 LE, n_tokens x n_vocab)
 *   info      metadata, tensor table and a summary of a GGUF model
 *   synth     write a synthetic Llama GGUF (random weights, TinyLlama shapes by default)
 *
 * Exit status: 0 success; 1 with one line "error: ..." on stderr for bad input (file, prompt,
 * value out of range); 2 for bad usage (unknown command or option, missing argument, non-numeric
 * value) with the error line and a one-line usage hint. The program never dies by a signal on bad
 * input (SIGPIPE is ignored; write errors are reported as errors).
 *
 * Uses only the public API (include/llamita.h), plus src/synth.h for `synth`.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "llamita.h"
#include "synth.h"

#define EXIT_USAGE 2

/* ---------------------------------------------------------------------------------------------
 * run
 * ------------------------------------------------------------------------------------------- */

static const char RUN_HELP[] =
    "usage: llamita run -m MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates text after the prompt and streams only the generated text to stdout;\n"
    "load information and timings go to stderr.\n"
    "\n"
    "  -m, --model FILE          GGUF model\n"
    "  -p, --prompt TEXT         prompt (escapes \\n \\t \\\\ \\\" \\xHH processed unless --no-escape)\n"
    "  -f, --file FILE           read the prompt from a file (one trailing newline dropped)\n"
    "      --no-escape           take -p literally\n"
    "  -n, --n-predict N         tokens to generate (default -1: until EOS or the context is full)\n"
    "      --temp T              temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K             top-k (default 40; 0 = off)\n"
    "      --top-p P             top-p (default 0.95; 1 = off)\n"
    "      --min-p P             min-p (default 0.05; 0 = off)\n"
    "      --repeat-penalty R    repetition penalty (default 1.0 = off)\n"
    "      --repeat-last-n N     tokens the penalties look back over (default 64; 0 = off, -1 = all)\n"
    "      --frequency-penalty F (default 0)\n"
    "      --presence-penalty F  (default 0)\n"
    "  -s, --seed S              RNG seed (default -1: from the clock)\n"
    "  -t, --threads N           threads (default: physical cores)\n"
    "  -c, --ctx-size N          context size (default 0: the model's)\n"
    "  -b, --batch-size N        prompt tokens per forward step (default 512)\n"
    "      --ignore-eos          never stop at end-of-generation tokens (they are never sampled)\n"
    "      --json                print the result as an OpenAI / llama-cpp-python \"text_completion\"\n"
    "                            object instead of the text (with --json, -n 0 or -1 = until the\n"
    "                            context is full)\n"
    "      --stream              with --json: print each streamed chunk as one JSON line instead\n"
    "      --stop TEXT           with --json: stop before TEXT (may be given several times)\n"
    "      --echo                with --json: the text starts with the prompt\n"
    "      --logprobs N          with --json: the top-N logprobs of every token\n"
    "\n"
    "The prompt is tokenized with BOS as the model says and with control tokens such as </s>\n"
    "recognised in the text.\n";

typedef struct run_opts {
    const char *model, *prompt, *file;
    bool no_escape, ignore_eos;
    bool json, stream, echo;   /* --json mode (llamita_completion) */
    int32_t logprobs;          /* --logprobs N; -1 = off */
    const char **stop;         /* [n_stop] --stop strings */
    int32_t n_stop;
    int32_t n_predict, n_threads;
    uint32_t n_ctx, n_batch;
    llamita_sampler_params sp;
} run_opts;

/* Pending output bytes: printed up to the last complete UTF-8 character after each token. */
typedef struct outbuf {
    char *buf;
    size_t len, cap;
} outbuf;

static void out_flush(outbuf *o, bool all) {
    size_t k = all ? o->len : llamita_utf8_complete_len(o->buf, o->len);
    if (k > 0) {
        if (!write_all(stdout, o->buf, k) || fflush(stdout) != 0)
            die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
        memmove(o->buf, o->buf + k, o->len - k);
        o->len -= k;
    } else if (all && fflush(stdout) != 0) {
        die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    }
}

/* Appends the piece of token t to o (growing o, and the piece buffer, only for unusually long
 * pieces). */
static void out_token(outbuf *o, const llamita_model *m, llamita_token t) {
    for (;;) {
        size_t room = o->cap - o->len;
        int32_t lim = room > INT32_MAX ? INT32_MAX : (int32_t)room;
        int32_t r = llamita_token_to_piece(m, t, o->buf + o->len, lim, 0, false);
        if (r >= 0) {
            o->len += (size_t)r;
            return;
        }
        if (r == INT32_MIN) die("cannot render token %d", (int)t);
        size_t need = o->len + (size_t)(-(int64_t)r);
        size_t ncap = o->cap * 2 > need ? o->cap * 2 : need;
        char *nb = realloc(o->buf, ncap);
        if (!nb) die("out of memory");
        o->buf = nb;
        o->cap = ncap;
    }
}

/* --json --stream: each chunk on its own line. */
static bool print_chunk_line(const char *json, void *user) {
    (void)user;
    if (!write_all(stdout, json, strlen(json)) || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    return true;
}

/* `run --json`: the completion through llamita_completion (llama-cpp-python's create_completion);
 * prints the text_completion object, or with --stream the chunks as JSON lines. */
static int run_json(const run_opts *o, llamita_context *ctx, const char *text) {
    llamita_completion_params p = llamita_completion_default_params();
    p.max_tokens = o->n_predict; /* <= 0: until the context is full */
    p.stop = o->stop;
    p.n_stop = o->n_stop;
    p.echo = o->echo;
    p.logprobs = o->logprobs;
    p.ignore_eos = o->ignore_eos;
    p.sampling = o->sp;
    p.model_name = o->model;
    char err[1024] = "";
    double t0 = now_s();
    char *res = llamita_completion(ctx, text, &p, o->stream ? print_chunk_line : NULL, NULL, err, sizeof err);
    if (!res) die("%s", err);
    double dt = now_s() - t0;
    if (!o->stream) {
        if (!write_all(stdout, res, strlen(res)) || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
            die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    }
    fprintf(stderr, "llamita: completion in %.2f ms\n", dt * 1e3);
    llamita_free(res);
    return 0;
}

static int cmd_run(int argc, char **argv) {
    run_opts o;
    memset(&o, 0, sizeof o);
    llamita_context_params cdef = llamita_context_default_params();
    o.n_predict = -1;
    o.n_batch = cdef.n_batch;
    o.sp = llamita_sampler_default_params();
    o.logprobs = -1;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(RUN_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) o.model = v;
        else if (opt_val(&a, "-p", "--prompt", &v)) o.prompt = v;
        else if (opt_val(&a, "-f", "--file", &v)) o.file = v;
        else if (opt_flag(&a, NULL, "--no-escape")) o.no_escape = true;
        else if (opt_flag(&a, NULL, "--ignore-eos")) o.ignore_eos = true;
        else if (opt_flag(&a, NULL, "--json")) o.json = true;
        else if (opt_flag(&a, NULL, "--stream")) o.stream = true;
        else if (opt_flag(&a, NULL, "--echo")) o.echo = true;
        else if (opt_val(&a, NULL, "--logprobs", &v)) o.logprobs = (int32_t)parse_int(arg, v, 0, INT32_MAX);
        else if (opt_val(&a, NULL, "--stop", &v)) {
            o.stop = realloc(o.stop, ((size_t)o.n_stop + 1) * sizeof *o.stop);
            if (!o.stop) die("out of memory");
            o.stop[o.n_stop++] = v;
        } else if (opt_val(&a, "-n", "--n-predict", &v)) o.n_predict = (int32_t)parse_int(arg, v, -2, INT32_MAX);
        else if (opt_val(&a, NULL, "--temp", &v)) o.sp.temp = parse_float(arg, v, -1e30, 1e30);
        else if (opt_val(&a, NULL, "--top-k", &v)) o.sp.top_k = (int32_t)parse_int(arg, v, -1, INT32_MAX);
        else if (opt_val(&a, NULL, "--top-p", &v)) o.sp.top_p = parse_float(arg, v, 0.0, 1.0);
        else if (opt_val(&a, NULL, "--min-p", &v)) o.sp.min_p = parse_float(arg, v, 0.0, 1.0);
        else if (opt_val(&a, NULL, "--repeat-penalty", &v)) {
            o.sp.repeat_penalty = parse_float(arg, v, 0.0, 1e30);
            if (!(o.sp.repeat_penalty > 0.0f)) die("%s must be positive, got %s", arg, v);
        } else if (opt_val(&a, NULL, "--repeat-last-n", &v))
            o.sp.penalty_last_n = (int32_t)parse_int(arg, v, -1, INT32_MAX);
        else if (opt_val(&a, NULL, "--frequency-penalty", &v)) o.sp.frequency_penalty = parse_float(arg, v, -1e30, 1e30);
        else if (opt_val(&a, NULL, "--presence-penalty", &v)) o.sp.presence_penalty = parse_float(arg, v, -1e30, 1e30);
        else if (opt_val(&a, "-s", "--seed", &v)) o.sp.seed = parse_seed(arg, v);
        else if (opt_val(&a, "-t", "--threads", &v)) o.n_threads = (int32_t)parse_int(arg, v, -1, 4096);
        else if (opt_val(&a, "-c", "--ctx-size", &v)) o.n_ctx = (uint32_t)parse_int(arg, v, 0, INT32_MAX);
        else if (opt_val(&a, "-b", "--batch-size", &v)) o.n_batch = (uint32_t)parse_int(arg, v, 1, INT32_MAX);
        else usage_error("unknown option '%s' for 'run'", arg);
    }
    if (!o.model) usage_error("missing -m MODEL");
    if (!o.prompt && !o.file) usage_error("missing -p PROMPT or -f FILE");
    if (o.prompt && o.file) usage_error("give either -p or -f, not both");
    if (!o.json && (o.stream || o.echo || o.logprobs >= 0 || o.n_stop > 0))
        usage_error("--stream, --stop, --echo and --logprobs go with --json");
    if (o.n_threads < 0) o.n_threads = 0;

    /* prompt text */
    char *text;
    size_t text_len;
    if (o.file) {
        text = read_file(o.file, &text_len);
        if (text_len > 0 && text[text_len - 1] == '\n') text[--text_len] = 0; /* like llama.cpp's -f */
    } else {
        text_len = strlen(o.prompt);
        text = xmalloc(text_len + 1);
        memcpy(text, o.prompt, text_len + 1);
        if (!o.no_escape) text_len = process_escapes(text, text_len);
    }

    double t0 = now_s();
    llamita_model *m = load_model(o.model, false);
    double t_load = now_s() - t0;
    const int32_t n_vocab = llamita_model_n_vocab(m);
    const int32_t n_ctx_train = llamita_model_n_ctx_train(m);
    char b1[32], b2[32];
    fprintf(stderr, "llamita: loaded %s (%s, %s params, %s, n_vocab %d, n_ctx_train %d) in %.0f ms\n", o.model,
            llamita_model_desc(m), human_count(llamita_model_n_params(m), b1, sizeof b1),
            human_bytes(llamita_model_size(m), b2, sizeof b2), (int)n_vocab, (int)n_ctx_train, t_load * 1e3);

    int32_t n_prompt = 0;
    llamita_token *prompt = tokenize_all(m, text, text_len, true, true, &n_prompt);
    if (o.json && memchr(text, 0, text_len)) die("the prompt contains a NUL byte (not possible with --json)");
    if (n_prompt == 0) die("the prompt is empty (0 tokens and the model adds no BOS)");

    uint32_t n_ctx_req = o.n_ctx ? o.n_ctx : (n_ctx_train > 0 ? (uint32_t)n_ctx_train : 0);
    if (n_ctx_req == 0) die("the model has no context length; give one with -c N");
    if ((uint32_t)n_prompt > n_ctx_req)
        die("prompt is %d tokens, longer than the context (n_ctx = %u)", (int)n_prompt, (unsigned)n_ctx_req);
    if (n_ctx_train > 0 && n_ctx_req > (uint32_t)n_ctx_train)
        warn("n_ctx %u is larger than the model's training context (%d); quality may degrade",
             (unsigned)n_ctx_req, (int)n_ctx_train);

    llamita_context_params cp = cdef;
    cp.n_ctx = n_ctx_req;
    cp.n_batch = o.n_batch;
    cp.n_threads = o.n_threads;
    char err[1024] = "";
    llamita_context *ctx = llamita_context_new(m, cp, err, sizeof err);
    if (!ctx) die("cannot create the context (n_ctx %u): %s", (unsigned)n_ctx_req, err);
    uint32_t n_ctx = llamita_n_ctx(ctx);
    if (n_ctx > n_ctx_req) n_ctx = n_ctx_req; /* the library may pad; honour what was asked */

    if (o.json) {
        free(prompt);
        int rc = run_json(&o, ctx, text);
        free(text);
        free(o.stop);
        llamita_context_free(ctx);
        llamita_model_free(m);
        return rc;
    }
    free(text);

    llamita_sampler *smpl = llamita_sampler_new(&o.sp, n_vocab, err, sizeof err);
    if (!smpl) die("%s", err);

    /* --ignore-eos: end-of-generation tokens get -inf logits, as llama.cpp's logit bias does */
    llamita_token *eog = NULL;
    int32_t n_eog = 0;
    if (o.ignore_eos) {
        eog = xmalloc((size_t)n_vocab * sizeof *eog);
        for (llamita_token t = 0; t < n_vocab; t++)
            if (llamita_token_is_eog(m, t)) eog[n_eog++] = t;
    }

    fprintf(stderr, "llamita: prompt %d tokens, n_ctx %u, n_batch %u, threads %d, temp %g, seed %s\n",
            (int)n_prompt, (unsigned)n_ctx, (unsigned)cp.n_batch,
            (int)(o.n_threads > 0 ? o.n_threads : llamita_n_physical_cores()), (double)o.sp.temp,
            o.sp.seed == LLAMITA_DEFAULT_SEED ? "random" : "fixed");

    for (int32_t i = 0; i < n_prompt; i++) llamita_sampler_accept(smpl, prompt[i]);

    double t1 = now_s();
    if (llamita_decode_tokens(ctx, prompt, n_prompt, false, err, sizeof err) < 0)
        die("evaluating the prompt failed: %s", err);
    double t_prompt = now_s() - t1;

    outbuf out = {xmalloc(256), 0, 256};
    int32_t n_past = n_prompt, n_gen = 0;
    const char *stop = "n_predict reached";
    double t2 = now_s();
    for (;;) {
        if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
        float *logits = llamita_get_logits_ith(ctx, -1);
        if (!logits) die("no logits after decoding (position %d)", (int)n_past);
        for (int32_t k = 0; k < n_eog; k++) logits[eog[k]] = -INFINITY;
        llamita_token t = llamita_sampler_sample(smpl, logits);
        if (t < 0 || t >= n_vocab) die("the sampler returned an invalid token %d", (int)t);
        llamita_sampler_accept(smpl, t);
        if (!o.ignore_eos && llamita_token_is_eog(m, t)) {
            stop = "end of generation token";
            break;
        }
        out_token(&out, m, t);
        out_flush(&out, false);
        n_gen++;
        if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
        if ((uint32_t)n_past >= n_ctx) {
            stop = "context full";
            break;
        }
        if (llamita_decode_tokens(ctx, &t, 1, false, err, sizeof err) < 0)
            die("decoding failed at position %d: %s", (int)n_past, err);
        n_past++;
    }
    double t_gen = now_s() - t2;
    out_flush(&out, true);
    fputc('\n', stderr);
    fprintf(stderr, "llamita: stopped: %s\n", stop);
    fprintf(stderr, "llamita: prompt eval: %d tokens in %.2f ms (%.2f tokens/s)\n", (int)n_prompt, t_prompt * 1e3,
            t_prompt > 0 ? n_prompt / t_prompt : 0.0);
    fprintf(stderr, "llamita: generation:  %d tokens in %.2f ms (%.2f tokens/s)\n", (int)n_gen, t_gen * 1e3,
            t_gen > 0 && n_gen > 0 ? n_gen / t_gen : 0.0);

    free(out.buf);
    free(eog);
    free(prompt);
    llamita_sampler_free(smpl);
    llamita_context_free(ctx);
    llamita_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * tokenize
 * ------------------------------------------------------------------------------------------- */

static const char TOKENIZE_HELP[] =
    "usage: llamita tokenize -m MODEL [--no-bos] [--parse-special] (TEXT | -p TEXT | -f FILE)\n"
    "\n"
    "Prints the token ids of TEXT on one line, separated by single spaces.\n"
    "\n"
    "  -m, --model FILE     GGUF model (only its tokenizer is read)\n"
    "  -p, --prompt TEXT    the text (or give it as the last argument)\n"
    "  -f, --file FILE      read the text from a file (exact bytes)\n"
    "      --no-bos         do not add BOS/EOS (add_special = false)\n"
    "      --parse-special  recognise control tokens written in the text, such as </s>\n";

static int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool add_special = true, parse_special = false;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (!a.no_more_opts && is_help(arg)) {
            fputs(TOKENIZE_HELP, stdout);
            return 0;
        } else if (!a.no_more_opts && !strcmp(arg, "--")) a.no_more_opts = true;
        else if (opt_val(&a, "-m", "--model", &v)) model = v;
        else if (opt_val(&a, "-p", "--prompt", &v)) {
            if (text) usage_error("more than one text given");
            text = v;
        } else if (opt_val(&a, "-f", "--file", &v)) file = v;
        else if (opt_flag(&a, NULL, "--no-bos")) add_special = false;
        else if (opt_flag(&a, NULL, "--parse-special")) parse_special = true;
        else if (!a.no_more_opts && arg[0] == '-' && arg[1] != 0) usage_error("unknown option '%s' for 'tokenize'", arg);
        else {
            if (text) usage_error("more than one text given (quote the text: llamita tokenize -m M \"a b\")");
            text = arg;
        }
    }
    if (!model) usage_error("missing -m MODEL");
    if (!text && !file) usage_error("missing TEXT");
    if (text && file) usage_error("give either TEXT or -f FILE, not both");
    size_t len;
    char *buf;
    if (file) buf = read_file(file, &len);
    else {
        len = strlen(text);
        buf = xmalloc(len + 1);
        memcpy(buf, text, len + 1);
    }
    llamita_model *m = load_model(model, true);
    int32_t n;
    llamita_token *t = tokenize_all(m, buf, len, add_special, parse_special, &n);
    for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)t[i]);
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    free(t);
    free(buf);
    llamita_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * logits
 * ------------------------------------------------------------------------------------------- */

static const char LOGITS_HELP[] =
    "usage: llamita logits -m MODEL (-p TEXT | -f FILE) -o OUT [-c N] [-b N] [-t N]\n"
    "\n"
    "Tokenizes the text as 'tokenize' does by default (BOS per the model, control tokens not\n"
    "parsed), evaluates it, and writes the logits of every position to OUT: float32 little-endian,\n"
    "n_tokens x n_vocab, row-major (row i = logits after tokens 0..i). Prints \"n_tokens N\" and\n"
    "\"n_vocab V\" on stderr.\n"
    "\n"
    "  -m, --model FILE       GGUF model\n"
    "  -p, --prompt TEXT      the text (exact bytes, no escape processing)\n"
    "  -f, --file FILE        read the text from a file (exact bytes)\n"
    "  -o, --output FILE      where to write the logits\n"
    "  -c, --ctx-size N       context size (default: the number of tokens)\n"
    "  -b, --batch-size N     tokens per forward step (default 512)\n"
    "  -t, --threads N        threads (default: physical cores)\n";

/* Converts n floats to little-endian byte order in place (no-op on little-endian hosts). */
static void to_le(float *x, size_t n) {
    const uint32_t one = 1;
    if (*(const uint8_t *)&one == 1) return;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = (u >> 24) | ((u >> 8) & 0xff00u) | ((u << 8) & 0xff0000u) | (u << 24);
        memcpy(&x[i], &u, 4);
    }
}

static int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *outp = NULL;
    llamita_context_params cp = llamita_context_default_params();
    bool have_c = false;
    int32_t n_threads = 0;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(LOGITS_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model = v;
        else if (opt_val(&a, "-p", "--prompt", &v)) text = v;
        else if (opt_val(&a, "-f", "--file", &v)) file = v;
        else if (opt_val(&a, "-o", "--output", &v)) outp = v;
        else if (opt_val(&a, "-c", "--ctx-size", &v)) {
            cp.n_ctx = (uint32_t)parse_int(arg, v, 0, INT32_MAX);
            have_c = cp.n_ctx > 0;
        } else if (opt_val(&a, "-b", "--batch-size", &v)) cp.n_batch = (uint32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, "-t", "--threads", &v)) n_threads = (int32_t)parse_int(arg, v, -1, 4096);
        else usage_error("unknown option '%s' for 'logits'", arg);
    }
    if (!model) usage_error("missing -m MODEL");
    if (!text && !file) usage_error("missing -p TEXT or -f FILE");
    if (text && file) usage_error("give either -p or -f, not both");
    if (!outp) usage_error("missing -o OUT");
    cp.n_threads = n_threads > 0 ? n_threads : 0;

    size_t len;
    char *buf;
    if (file) buf = read_file(file, &len);
    else {
        len = strlen(text);
        buf = xmalloc(len + 1);
        memcpy(buf, text, len + 1);
    }
    llamita_model *m = load_model(model, false);
    int32_t n;
    llamita_token *t = tokenize_all(m, buf, len, true, false, &n);
    free(buf);
    if (n == 0) die("the text gives 0 tokens (empty text and the model adds no BOS)");
    const int32_t n_vocab = llamita_model_n_vocab(m), n_ctx_train = llamita_model_n_ctx_train(m);
    if (have_c && (uint32_t)n > cp.n_ctx)
        die("prompt is %d tokens, longer than the context (n_ctx = %u)", (int)n, (unsigned)cp.n_ctx);
    if (!have_c) cp.n_ctx = (uint32_t)n;
    if (n_ctx_train > 0 && (uint32_t)n > (uint32_t)n_ctx_train)
        warn("%d tokens is more than the model's training context (%d)", (int)n, (int)n_ctx_train);

    char err[1024] = "";
    llamita_context *ctx = llamita_context_new(m, cp, err, sizeof err);
    if (!ctx) die("cannot create the context (n_ctx %u): %s", (unsigned)cp.n_ctx, err);

    FILE *f = fopen(outp, "wb");
    if (!f) die("cannot create '%s': %s", outp, strerror(errno));
    float *row = xmalloc((size_t)n_vocab * sizeof *row);
    /* evaluate in chunks of n_batch so every chunk's rows are read before the next decode */
    const int32_t chunk = cp.n_batch > 0 && cp.n_batch < (uint32_t)INT32_MAX ? (int32_t)cp.n_batch : n;
    bool ok = true;
    for (int32_t off = 0; off < n && ok; off += chunk) {
        int32_t k = chunk < n - off ? chunk : n - off;
        if (llamita_decode_tokens(ctx, t + off, k, true, err, sizeof err) < 0) {
            fclose(f);
            unlink(outp);
            die("evaluating tokens %d..%d failed: %s", (int)off, (int)(off + k - 1), err);
        }
        if (llamita_n_outputs(ctx) != k) {
            fclose(f);
            unlink(outp);
            die("expected %d logit rows, got %d", (int)k, (int)llamita_n_outputs(ctx));
        }
        for (int32_t j = 0; j < k && ok; j++) {
            const float *l = llamita_get_logits_ith(ctx, j);
            if (!l) {
                fclose(f);
                unlink(outp);
                die("no logits for position %d", (int)(off + j));
            }
            memcpy(row, l, (size_t)n_vocab * sizeof *row);
            to_le(row, (size_t)n_vocab);
            ok = write_all(f, row, (size_t)n_vocab * sizeof *row);
        }
    }
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(outp);
        die("cannot write '%s': %s", outp, strerror(e ? e : EIO));
    }
    fprintf(stderr, "n_tokens %d\nn_vocab %d\n", (int)n, (int)n_vocab);
    free(row);
    free(t);
    llamita_context_free(ctx);
    llamita_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * info
 * ------------------------------------------------------------------------------------------- */

static const char INFO_HELP[] =
    "usage: llamita info -m MODEL\n"
    "\n"
    "Prints the metadata (key, kind, value; long values abbreviated), the tensor table (name,\n"
    "type, shape in ggml order, offset, bytes) and a summary of the model.\n";

/* A kind for a metadata value rendered as text: "arr", "bool", "int", "float" or "str". The API
 * gives values as text only, so this is a guess ("str" values that look like numbers show as
 * numbers). */
static const char *value_kind(const char *v) {
    if (v[0] == '[') return "arr";
    if (v[0] == '"') return "str";
    if (!strcmp(v, "true") || !strcmp(v, "false")) return "bool";
    if (!*v) return "str";
    char *end;
    errno = 0;
    (void)strtoll(v, &end, 10);
    if (!*end && errno == 0 && !strchr(v, ' ')) return "int";
    (void)strtod(v, &end);
    if (!*end && !strchr(v, ' ') && strcmp(v, "nan") && strcmp(v, "inf")) return "float";
    return "str";
}

/* Prints v with control characters escaped, cut after max_chars bytes. */
static void print_value(const char *v, size_t full_len, size_t max_chars) {
    size_t n = strlen(v);
    if (n > max_chars) n = max_chars;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    if (full_len > n) printf("... (%zu bytes)", full_len);
}

static int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(INFO_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model = v;
        else if (arg[0] != '-' && !model) model = arg; /* `llamita info FILE` also works */
        else usage_error("unknown option '%s' for 'info'", arg);
    }
    if (!model) usage_error("missing -m MODEL");
    llamita_model *m = load_model(model, false);

    printf("file: %s\n", model);
    int32_t n_kv = llamita_model_meta_count(m);
    printf("metadata: %d keys\n", (int)n_kv);
    size_t cap = 1024;
    char *val = xmalloc(cap);
    for (int32_t i = 0; i < n_kv; i++) {
        const char *key = llamita_model_meta_key(m, i);
        if (!key) continue;
        int32_t len = llamita_model_meta_val_str(m, key, val, cap);
        if (len >= 0 && (size_t)len >= cap) {
            /* values are shown cut to 160 bytes; fetch enough to know the kind and length */
            size_t ncap = (size_t)len + 1;
            char *nb = realloc(val, ncap);
            if (!nb) die("out of memory");
            val = nb;
            cap = ncap;
            len = llamita_model_meta_val_str(m, key, val, cap);
        }
        if (len < 0) {
            printf("  %-44s %-5s (unreadable)\n", key, "?");
            continue;
        }
        printf("  %-44s %-5s ", key, value_kind(val));
        print_value(val, (size_t)len, 160);
        putchar('\n');
    }
    free(val);

    int32_t n_t = llamita_model_n_tensors(m);
    printf("tensors: %d\n", (int)n_t);
    printf("  %5s  %-32s %-6s %-24s %12s %12s\n", "#", "name", "type", "shape", "offset", "bytes");
    for (int32_t i = 0; i < n_t; i++) {
        llamita_tensor_info ti;
        memset(&ti, 0, sizeof ti);
        if (llamita_model_tensor_info(m, i, &ti) != 0) {
            printf("  %5d  (unreadable)\n", (int)i);
            continue;
        }
        char shape[96];
        size_t o = 0;
        o += (size_t)snprintf(shape + o, sizeof shape - o, "[");
        int nd = ti.n_dims < 1 ? 1 : ti.n_dims > 4 ? 4 : ti.n_dims;
        for (int d = 0; d < nd && o < sizeof shape; d++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, d ? ", %" PRId64 : "%" PRId64, ti.ne[d]);
        if (o < sizeof shape) snprintf(shape + o, sizeof shape - o, "]");
        printf("  %5d  %-32s %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", (int)i, ti.name ? ti.name : "?",
               ti.type_name ? ti.type_name : "?", shape, ti.offset, ti.nbytes);
    }

    char b1[32], b2[32];
    uint64_t np = llamita_model_n_params(m), sz = llamita_model_size(m);
    printf("summary:\n");
    printf("  desc         %s\n", llamita_model_desc(m));
    printf("  n_params     %s (%" PRIu64 ")\n", human_count(np, b1, sizeof b1), np);
    printf("  size         %s (%" PRIu64 " bytes, %.2f bits per weight)\n", human_bytes(sz, b2, sizeof b2), sz,
           np ? (double)sz * 8.0 / (double)np : 0.0);
    printf("  n_vocab      %d\n", (int)llamita_model_n_vocab(m));
    printf("  n_ctx_train  %d\n", (int)llamita_model_n_ctx_train(m));
    printf("  n_embd       %d\n", (int)llamita_model_n_embd(m));
    printf("  n_layer      %d\n", (int)llamita_model_n_layer(m));
    printf("  n_head       %d\n", (int)llamita_model_n_head(m));
    printf("  n_head_kv    %d\n", (int)llamita_model_n_head_kv(m));
    printf("  bos          %d%s\n", (int)llamita_token_bos(m), llamita_add_bos(m) ? " (added)" : "");
    printf("  eos          %d%s\n", (int)llamita_token_eos(m), llamita_add_eos(m) ? " (added)" : "");
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    llamita_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * synth
 * ------------------------------------------------------------------------------------------- */

static const char SYNTH_HELP[] =
    "usage: llamita synth -o OUT.gguf [options]\n"
    "\n"
    "Writes a Llama GGUF with random weights (matrices N(0, 0.02^2), norms U(0.5, 1.5)). The\n"
    "defaults are TinyLlama-1.1B's shapes, so it can stand in for the real model in benchmarks.\n"
    "\n"
    "  -o, --output FILE    where to write the model\n"
    "      --type T         F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L\n"
    "                       Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K (default Q8_0)\n"
    "      --vocab-from G   copy the tokenizer from GGUF G (default: a synthetic byte vocab)\n"
    "      --seed S         weight RNG seed (default 1234)\n"
    "      --n-embd N       (default 2048)     --n-layer N   (default 22)\n"
    "      --n-head N       (default 32)       --n-head-kv N (default 4)\n"
    "      --n-ff N         (default 5632)     --n-vocab N   (default 32000; ignored with --vocab-from)\n"
    "      --n-ctx N        (default 2048)     --n-rot N     (default 0 = head dim)\n"
    "      --rope-base F    (default 10000)    --rope-scale F (default 1 = none)\n"
    "      --rms-eps F      (default 1e-5)     --name NAME   general.name\n"
    "      --tied           no output.weight (the output is tied to token_embd)\n";

static int cmd_synth(int argc, char **argv) {
    lm_synth_params p = lm_synth_default_params();
    const char *outp = NULL;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(SYNTH_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-o", "--output", &v)) outp = v;
        else if (opt_val(&a, NULL, "--type", &v)) p.ftype = v;
        else if (opt_val(&a, NULL, "--vocab-from", &v)) p.vocab_from = v;
        else if (opt_val(&a, NULL, "--name", &v)) p.name = v;
        else if (opt_val(&a, "-s", "--seed", &v)) {
            uint64_t s = parse_seed(arg, v);
            p.seed = s == LLAMITA_DEFAULT_SEED ? (uint64_t)time(NULL) : s;
        } else if (opt_val(&a, NULL, "--n-embd", &v)) p.n_embd = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-layer", &v)) p.n_layer = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-head", &v)) p.n_head = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-head-kv", &v)) p.n_head_kv = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-ff", &v)) p.n_ff = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-vocab", &v)) p.n_vocab = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-ctx", &v)) p.n_ctx = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, NULL, "--n-rot", &v)) p.n_rot = (int32_t)parse_int(arg, v, 0, INT32_MAX);
        else if (opt_val(&a, NULL, "--rope-base", &v)) p.rope_base = parse_float(arg, v, 1e-30, 1e30);
        else if (opt_val(&a, NULL, "--rope-scale", &v)) p.rope_scale = parse_float(arg, v, 0.0, 1e30);
        else if (opt_val(&a, NULL, "--rms-eps", &v)) p.rms_eps = parse_float(arg, v, 0.0, 1.0);
        else if (opt_flag(&a, NULL, "--tied")) p.tied_output = true;
        else usage_error("unknown option '%s' for 'synth'", arg);
    }
    if (!outp) usage_error("missing -o OUT.gguf");
    char err[1024] = "";
    double t0 = now_s();
    if (!lm_synth_write(outp, &p, err, sizeof err)) die("cannot write '%s': %s", outp, err[0] ? err : "unknown error");
    fprintf(stderr, "llamita: wrote %s (%s, n_embd %d, n_layer %d, n_head %d/%d, n_ff %d) in %.1f s\n", outp,
            p.ftype ? p.ftype : "?", (int)p.n_embd, (int)p.n_layer, (int)p.n_head, (int)p.n_head_kv, (int)p.n_ff,
            now_s() - t0);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * Command registry
 * ------------------------------------------------------------------------------------------- */

static const cli_command cli_cmd_run = {
    "run", "generate text from a prompt (streams only the generated text)",
    "usage: llamita run -m MODEL (-p PROMPT | -f FILE) [-n N] [--temp T] [...]; see 'llamita run --help'",
    RUN_HELP, cmd_run};
static const cli_command cli_cmd_tokenize = {
    "tokenize", "print the token ids of a text",
    "usage: llamita tokenize -m MODEL [--no-bos] [--parse-special] TEXT; see 'llamita tokenize --help'",
    TOKENIZE_HELP, cmd_tokenize};
static const cli_command cli_cmd_logits = {
    "logits", "write the logits of every prompt position to a file",
    "usage: llamita logits -m MODEL (-p TEXT | -f FILE) -o OUT [-c N] [-b N] [-t N]; see 'llamita logits --help'",
    LOGITS_HELP, cmd_logits};
static const cli_command cli_cmd_info = {
    "info", "show a model's metadata and tensors",
    "usage: llamita info -m MODEL; see 'llamita info --help'", INFO_HELP, cmd_info};
static const cli_command cli_cmd_synth = {
    "synth", "write a synthetic model (TinyLlama shapes, random weights)",
    "usage: llamita synth -o OUT.gguf [--type T] [...]; see 'llamita synth --help'", SYNTH_HELP, cmd_synth};

/* Commands defined in their own tools/cmd_*.c files; weak, so a build without one still links. */
#define CLI_EXTERNAL(name) extern const cli_command cli_cmd_##name __attribute__((weak));
CLI_EXTERNAL(bench)
CLI_EXTERNAL(pull)
CLI_EXTERNAL(chat)
CLI_EXTERNAL(template)
CLI_EXTERNAL(serve)
CLI_EXTERNAL(perplexity)
CLI_EXTERNAL(eval)
CLI_EXTERNAL(quantize)

/* In the order `llamita --help` lists them. NULL entries are commands not in this build. */
static const cli_command *commands(size_t i) {
    const cli_command *all[] = {&cli_cmd_run,   &cli_cmd_chat,       &cli_cmd_serve, &cli_cmd_pull,
                                &cli_cmd_tokenize, &cli_cmd_template, &cli_cmd_logits, &cli_cmd_info,
                                &cli_cmd_bench, &cli_cmd_perplexity, &cli_cmd_eval, &cli_cmd_synth,
                                &cli_cmd_quantize};
    return i < sizeof all / sizeof all[0] ? all[i] : (const cli_command *)-1;
}

const cli_command *cli_find_command(const char *name) {
    for (size_t i = 0;; i++) {
        const cli_command *c = commands(i);
        if (c == (const cli_command *)-1) return NULL;
        if (c && !strcmp(c->name, name)) return c;
    }
}

static void print_main_help(void) {
    fputs("llamita — run Llama-architecture GGUF models\n\nusage: llamita COMMAND [options]\n\ncommands:\n",
          stdout);
    for (size_t i = 0;; i++) {
        const cli_command *c = commands(i);
        if (c == (const cli_command *)-1) break;
        if (c) printf("  %-11s %s\n", c->name, c->summary);
    }
    fputs("\n'llamita COMMAND --help' shows a command's options. 'llamita --version' prints the version.\n"
          "Exit status: 0 success, 1 bad input (error: ...), 2 bad usage.\n",
          stdout);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a closed pipe is a write error, not a signal */
    if (argc < 2) usage_error("no command given");
    const char *cmd = argv[1];
    if (is_help(cmd) || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc > 2) {
            const cli_command *c = cli_find_command(argv[2]);
            if (!c) usage_error("unknown command '%s'", argv[2]);
            fputs(c->help, stdout);
            return 0;
        }
        print_main_help();
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("llamita %s\n", llamita_version());
        return 0;
    }
    const cli_command *c = cli_find_command(cmd);
    if (c) {
        g_cmd = cmd;
        return c->main(argc, argv);
    }
    if (cmd[0] == '-') usage_error("unknown option '%s' (a command comes first)", cmd);
    usage_error("unknown command '%s'", cmd);
}
