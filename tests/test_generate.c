/* Completion loop tests (src/generate.c).
 *
 * Unit level (no model): the UTF-8 sanitizer against Python's decode("utf-8", "ignore") rules; the
 * stop-string matcher and streaming hold-back (stop strings split across pieces, earliest match,
 * never half a UTF-8 character), plus a randomized comparison with a brute-force reference.
 * End to end on a small synthetic model written at start-up (byte vocabulary, F32, random weights):
 * greedy text equals a hand-written decode loop; stop strings spanning tokens (streaming and not);
 * max_tokens / finish_reason / usage; echo; logprobs shape and values against a log-softmax of the
 * logits computed here; same seed same text; UTF-8 never split in chunks; prompt too long; KV prefix
 * reuse gives the same text as a fresh context; chat completion shapes; the callback stopping
 * generation; bad arguments. Every object and chunk is parsed back with cJSON.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <time.h>

#include "test_util.h"
#include "common.h"
#include "generate.h"
#include "llamita.h"
#include "synth.h"

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------- */

static void check_sanitize(const char *in, size_t n, const char *want, size_t want_cp) {
    char out[64];
    size_t k = lm_utf8_sanitize(in, n, out);
    if (k != strlen(want) || memcmp(out, want, k) != 0) {
        fprintf(stderr, "sanitize mismatch for input of %zu bytes: got %zu bytes\n", n, k);
        fail();
    }
    assert_int_equal(lm_utf8_cp_len(in, n), want_cp);
    /* in place gives the same */
    char buf[64];
    memcpy(buf, in, n);
    assert_int_equal(lm_utf8_sanitize(buf, n, buf), k);
    assert_memory_equal(buf, want, k);
}

static void test_utf8_sanitize(void **state) {
    (void)state;
    /* expectations follow Python 3: b"...".decode("utf-8", "ignore") */
    check_sanitize("abc", 3, "abc", 3);
    check_sanitize("a\xe2\x82\xac", 4, "a\xe2\x82\xac", 2);         /* € */
    check_sanitize("\xe2\x82", 2, "", 0);                            /* incomplete at the end */
    check_sanitize("\xe2\x82" "A", 3, "A", 1);                       /* truncated, then ASCII */
    check_sanitize("\xc0\xaf" "x", 3, "x", 1);                       /* overlong lead C0 */
    check_sanitize("\xed\xa0\x80", 3, "", 0);                        /* surrogate */
    check_sanitize("\xe0\x80\x80" "y", 4, "y", 1);                   /* overlong 3-byte */
    check_sanitize("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80", 1);    /* emoji */
    check_sanitize("\xf4\x90\x80\x80", 4, "", 0);                    /* above U+10FFFF */
    check_sanitize("\xf0\x9f\x98" "\xc3\xa9", 5, "\xc3\xa9", 1);     /* truncated 4-byte, then é */
    check_sanitize("\x80\xbf\xff" "z", 4, "z", 1);                   /* stray bytes */
    check_sanitize("", 0, "", 0);
}

/* ---------------------------------------------------------------------------------------------
 * Text stream: stop strings and hold-back
 * ------------------------------------------------------------------------------------------- */

typedef struct stream_log {
    char text[512]; /* what was handed out, joined */
    size_t len;
    size_t boundaries[64];
    int n_chunks;
} stream_log;

/* Feeds pieces to ts, handing out what lm_ts_ready allows after each; returns whether it stopped. */
static bool feed(lm_textstream *ts, const char *const *pieces, int n, stream_log *log) {
    memset(log, 0, sizeof *log);
    bool stopped = false;
    for (int i = 0; i < n && !stopped; i++) {
        int r = lm_ts_append(ts, pieces[i], strlen(pieces[i]));
        assert_true(r >= 0);
        stopped = r == 1;
        size_t end = lm_ts_ready(ts, stopped);
        assert_true(end >= ts->emitted && end <= ts->len);
        if (end > ts->emitted) {
            memcpy(log->text + log->len, ts->buf + ts->emitted, end - ts->emitted);
            log->len += end - ts->emitted;
            if (log->n_chunks < 64) log->boundaries[log->n_chunks++] = end;
            ts->emitted = end;
        }
    }
    size_t end = lm_ts_ready(ts, true);
    memcpy(log->text + log->len, ts->buf + ts->emitted, end - ts->emitted);
    log->len += end - ts->emitted;
    ts->emitted = end;
    log->text[log->len] = 0;
    return stopped;
}

static void test_stop_split_across_pieces(void **state) {
    (void)state;
    const char *stops[] = {"</s>", "\n\nUser:"};
    lm_textstream ts;
    assert_true(lm_ts_init(&ts, stops, 2));
    /* "</s>" arrives as "<", "/", "s>tail" */
    const char *p1[] = {"Hello", " wor", "ld<", "/", "s>tail", "never"};
    assert_int_equal(lm_ts_append(&ts, p1[0], 5), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 5);
    ts.emitted = 5;
    assert_int_equal(lm_ts_append(&ts, p1[1], 4), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 9);
    ts.emitted = 9;
    assert_int_equal(lm_ts_append(&ts, p1[2], 3), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 11); /* "<" held back */
    ts.emitted = 11;
    assert_int_equal(lm_ts_append(&ts, p1[3], 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 11); /* "</" held back */
    assert_int_equal(lm_ts_append(&ts, p1[4], 6), 1);
    assert_true(ts.stopped);
    assert_int_equal(ts.len, 11);
    assert_memory_equal(ts.buf, "Hello world", 11);
    assert_int_equal(lm_ts_append(&ts, p1[5], 5), 1); /* no-op once stopped */
    assert_int_equal(ts.len, 11);
    lm_ts_free(&ts);

    /* the same through feed(), streaming and the multi-token "\n\nUser:" */
    stream_log log;
    assert_true(lm_ts_init(&ts, stops, 2));
    const char *p2[] = {"Sure.", "\n", "\nUs", "er", ":", " more"};
    assert_true(feed(&ts, p2, 6, &log));
    assert_string_equal(log.text, "Sure.");
    for (int i = 0; i < log.n_chunks; i++) assert_true(log.boundaries[i] <= 5);
    lm_ts_free(&ts);

    /* a prefix of a stop string that does not complete is released */
    assert_true(lm_ts_init(&ts, stops, 2));
    const char *p3[] = {"a<", "/", "b"};
    assert_false(feed(&ts, p3, 3, &log));
    assert_string_equal(log.text, "a</b");
    assert_int_equal(log.n_chunks, 2); /* "a" then "</b" */
    lm_ts_free(&ts);

    /* earliest occurrence wins when two complete in the same piece */
    const char *s2[] = {"world", "lo w"};
    assert_true(lm_ts_init(&ts, s2, 2));
    const char *p4[] = {"Hello world"};
    assert_true(feed(&ts, p4, 1, &log));
    assert_string_equal(log.text, "Hel");
    lm_ts_free(&ts);

    /* a stop spanning many one-byte pieces; overlapping self-prefixes ("aab" in "aaab") */
    const char *s3[] = {"aab"};
    assert_true(lm_ts_init(&ts, s3, 1));
    const char *p5[] = {"a", "a", "a", "b", "c"};
    assert_true(feed(&ts, p5, 5, &log));
    assert_string_equal(log.text, "a");
    lm_ts_free(&ts);

    /* empty and NULL stop strings are ignored */
    const char *s4[] = {"", NULL};
    assert_true(lm_ts_init(&ts, s4, 2));
    assert_int_equal(ts.n_stop, 0);
    const char *p6[] = {"xy"};
    assert_false(feed(&ts, p6, 1, &log));
    assert_string_equal(log.text, "xy");
    lm_ts_free(&ts);
}

static void test_stream_never_splits_utf8(void **state) {
    (void)state;
    lm_textstream ts;
    assert_true(lm_ts_init(&ts, NULL, 0));
    /* é as two byte pieces, € as three */
    assert_int_equal(lm_ts_append(&ts, "\xc3", 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 0);
    assert_int_equal(lm_ts_append(&ts, "\xa9", 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 2);
    ts.emitted = 2;
    assert_int_equal(lm_ts_append(&ts, "\xe2", 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 2);
    assert_int_equal(lm_ts_append(&ts, "\x82", 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 2);
    assert_int_equal(lm_ts_append(&ts, "\xac", 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 5);
    ts.emitted = 5;
    /* an invalid continuation releases the bytes (they are dropped when sanitized) */
    assert_int_equal(lm_ts_append(&ts, "\xe2" "A", 2), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 7);
    lm_ts_free(&ts);

    /* hold-back of a stop prefix that is itself multi-byte: stop "€!" */
    const char *stops[] = {"\xe2\x82\xac!"};
    assert_true(lm_ts_init(&ts, stops, 1));
    assert_int_equal(lm_ts_append(&ts, "x\xe2", 2), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 1);
    assert_int_equal(lm_ts_append(&ts, "\x82\xac", 2), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 1);
    assert_int_equal(lm_ts_append(&ts, "y", 1), 0);
    assert_int_equal(lm_ts_ready(&ts, false), 5);
    lm_ts_free(&ts);
}

/* Random pieces over a small alphabet (with UTF-8 lead/continuation bytes), random stop strings:
 * the handed-out text equals a brute-force reference, no hand-out goes past the final text, and
 * every boundary before the end lies outside an incomplete UTF-8 character. */
static void test_stream_randomized(void **state) {
    (void)state;
    static const char *alpha[] = {"a", "b", "<", "/", "s", ">", "\xe2", "\x82", "\xac", "\xc3", "\xa9", "ab", "s>"};
    const int n_alpha = (int)(sizeof alpha / sizeof alpha[0]);
    uint32_t x = 12345;
#define RND() (x = x * 1664525u + 1013904223u, (x >> 8))
    int n_stopped = 0;
    for (int iter = 0; iter < 3000; iter++) {
        char stopbuf[3][8];
        const char *stops[3];
        int n_stop = (int)(RND() % 3) + 1;
        for (int s = 0; s < n_stop; s++) {
            int L = (int)(RND() % 4) + 1, o = 0;
            for (int j = 0; j < L && o < 6; j++) {
                const char *a = alpha[RND() % 6]; /* ASCII letters of the alphabet */
                o += snprintf(stopbuf[s] + o, sizeof stopbuf[s] - (size_t)o, "%s", a);
            }
            stops[s] = stopbuf[s];
        }
        const char *pieces[24];
        int n = (int)(RND() % 24) + 1;
        for (int i = 0; i < n; i++) pieces[i] = alpha[RND() % (uint32_t)n_alpha];
        /* reference: after each piece, the earliest occurrence in the joined text ends it */
        char ref[256];
        size_t rl = 0;
        bool ref_stop = false;
        for (int i = 0; i < n && !ref_stop; i++) {
            size_t pl = strlen(pieces[i]);
            memcpy(ref + rl, pieces[i], pl);
            rl += pl;
            size_t best = SIZE_MAX;
            for (int s = 0; s < n_stop; s++) {
                const char *h = memmem(ref, rl, stops[s], strlen(stops[s]));
                if (h && (size_t)(h - ref) < best) best = (size_t)(h - ref);
            }
            if (best != SIZE_MAX) {
                rl = best;
                ref_stop = true;
            }
        }
        lm_textstream ts;
        stream_log log;
        assert_true(lm_ts_init(&ts, stops, n_stop));
        bool st = feed(&ts, pieces, n, &log);
        assert_int_equal(st, ref_stop);
        assert_int_equal(log.len, rl);
        assert_memory_equal(log.text, ref, rl);
        /* chunks sanitized one by one join to the sanitized whole: no boundary splits a character */
        char joined[256], whole[256];
        size_t jl = 0, prev = 0;
        for (int c = 0; c <= log.n_chunks; c++) {
            const size_t bnd = c < log.n_chunks ? log.boundaries[c] : rl;
            assert_true(bnd <= rl && bnd >= prev);
            jl += lm_utf8_sanitize(ref + prev, bnd - prev, joined + jl);
            prev = bnd;
        }
        const size_t wl = lm_utf8_sanitize(ref, rl, whole);
        if (jl != wl || memcmp(joined, whole, wl) != 0) {
            fprintf(stderr, "iter %d: chunk boundaries split a character; pieces:", iter);
            for (int i = 0; i < n; i++) {
                fprintf(stderr, " [");
                for (const char *q = pieces[i]; *q; q++) fprintf(stderr, "%02x", (unsigned char)*q);
                fprintf(stderr, "]");
            }
            fprintf(stderr, "\n");
            fail();
        }
        n_stopped += st;
        lm_ts_free(&ts);
    }
    fprintf(stderr, "randomized stream: 3000 cases, %d stopped by a stop string\n", n_stopped);
    assert_true(n_stopped > 300 && n_stopped < 2900); /* both kinds well exercised */
#undef RND
}

/* ---------------------------------------------------------------------------------------------
 * End to end on a synthetic model
 * ------------------------------------------------------------------------------------------- */

static char g_model_path[2300];
static llamita_model *g_model;
#define TEST_N_CTX 128

static int setup_model(void **state) {
    (void)state;
    lm_synth_params p = lm_synth_default_params();
    p.n_vocab = 512;
    p.n_embd = 64;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 128;
    p.n_ctx = 256;
    p.ftype = "F32";
    p.seed = 77;
    snprintf(g_model_path, sizeof g_model_path, "%s/gen-synth.gguf", lm_test_tmpdir());
    char err[512] = "";
    if (!lm_synth_write(g_model_path, &p, err, sizeof err)) {
        fprintf(stderr, "synth: %s\n", err);
        return -1;
    }
    g_model = llamita_model_load(g_model_path, llamita_model_default_params(), err, sizeof err);
    if (!g_model) {
        fprintf(stderr, "load: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown_model(void **state) {
    (void)state;
    llamita_model_free(g_model);
    unlink(g_model_path);
    rmdir(lm_test_tmpdir());
    return 0;
}

static llamita_context *new_ctx(uint32_t n_ctx) {
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = 1;
    char err[256] = "";
    llamita_context *ctx = llamita_context_new(g_model, cp, err, sizeof err);
    if (!ctx) fprintf(stderr, "context: %s\n", err);
    assert_non_null(ctx);
    return ctx;
}

static llamita_completion_params greedy_params(int32_t max_tokens) {
    llamita_completion_params p = llamita_completion_default_params();
    p.max_tokens = max_tokens;
    p.sampling.temp = 0.0f;
    p.sampling.seed = 1;
    return p;
}

/* Chunks collected by the callback. */
typedef struct chunks {
    char *c[1024];
    int n;
    int stop_after; /* return false after this many chunks (0 = never) */
} chunks;

static bool collect(const char *json, void *user) {
    chunks *k = user;
    if (k->n < 1024) k->c[k->n++] = strdup(json);
    return !(k->stop_after > 0 && k->n >= k->stop_after);
}

static void chunks_free(chunks *k) {
    for (int i = 0; i < k->n; i++) free(k->c[i]);
    k->n = 0;
}

/* True when s[0, n) is well-formed UTF-8. */
static bool valid_utf8(const char *s, size_t n) {
    char *tmp = malloc(n + 1);
    size_t k = lm_utf8_sanitize(s, n, tmp);
    bool ok = k == n && memcmp(tmp, s, n) == 0;
    free(tmp);
    return ok;
}

static cJSON *parse_or_fail(const char *json) {
    assert_non_null(json);
    cJSON *o = cJSON_Parse(json);
    if (!o) fprintf(stderr, "invalid JSON: %.300s\n", json);
    assert_non_null(o);
    assert_true(valid_utf8(json, strlen(json)));
    return o;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static const cJSON *choice0(const cJSON *o) {
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    assert_true(cJSON_IsArray(ch));
    assert_int_equal(cJSON_GetArraySize(ch), 1);
    const cJSON *c = cJSON_GetArrayItem(ch, 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(c, "index")->valueint, 0);
    return c;
}

/* Checks the common fields of a text_completion object or chunk; returns the parsed object. */
static cJSON *check_text_completion(const char *json, const char *model_name, bool chunk) {
    cJSON *o = parse_or_fail(json);
    assert_true(!strncmp(jstr(o, "id"), "cmpl-", 5));
    assert_int_equal(strlen(jstr(o, "id")), 5 + 36);
    assert_string_equal(jstr(o, "object"), "text_completion");
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(o, "created");
    assert_true(cJSON_IsNumber(cr));
    assert_true(fabs(cr->valuedouble - (double)time(NULL)) < 600);
    assert_string_equal(jstr(o, "model"), model_name);
    const cJSON *c = choice0(o);
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "text")));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(c, "logprobs"));
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
    assert_non_null(fr);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
    if (chunk) {
        assert_null(u);
    } else {
        assert_true(cJSON_IsString(fr));
        assert_true(!strcmp(fr->valuestring, "stop") || !strcmp(fr->valuestring, "length"));
        assert_non_null(u);
        int pt = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")->valueint;
        int ct = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint;
        int tt = cJSON_GetObjectItemCaseSensitive(u, "total_tokens")->valueint;
        assert_int_equal(pt + ct, tt);
    }
    return o;
}

static const char *text_of(const cJSON *o) { return jstr(choice0(o), "text"); }
static const char *finish_of(const cJSON *o) { return jstr(choice0(o), "finish_reason"); }
static int usage_of(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "usage"), key)->valueint;
}

/* Checks a text-completion stream: all chunks valid, finish_reason null until the last (text "",
 * finish = want_finish), and the texts joined equal final_text. */
static void check_stream(const chunks *k, const char *final_text, const char *want_finish) {
    assert_true(k->n >= 1);
    size_t cap = strlen(final_text) + 1, len = 0;
    char *joined = calloc(1, cap + 4096);
    for (int i = 0; i < k->n; i++) {
        cJSON *o = check_text_completion(k->c[i], g_model_path, true);
        const cJSON *c = choice0(o);
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
        const char *t = text_of(o);
        if (i < k->n - 1) {
            assert_true(cJSON_IsNull(fr));
            /* empty only to deliver the last logprobs of tokens whose bytes were all dropped */
            if (strlen(t) == 0) {
                assert_int_equal(i, k->n - 2);
                assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "logprobs")));
            }
            assert_true(len + strlen(t) < cap + 4096);
            memcpy(joined + len, t, strlen(t));
            len += strlen(t);
        } else {
            assert_true(cJSON_IsString(fr));
            assert_string_equal(fr->valuestring, want_finish);
            assert_string_equal(t, "");
            assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, "logprobs")));
        }
        cJSON_Delete(o);
    }
    joined[len] = 0;
    assert_string_equal(joined, final_text);
    free(joined);
}

/* Greedy generation by hand with the public API: returns the number of tokens generated (stopping
 * at an end-of-generation token, not counted), their ids in out and their joined raw text in raw. */
static int manual_greedy(llamita_context *ctx, const char *prompt, int max, llamita_token *out, char *raw,
                         size_t *raw_len, int *n_prompt) {
    llamita_token pt[256];
    int np = llamita_tokenize(g_model, prompt, -1, pt, 256, true, true);
    assert_true(np > 0);
    *n_prompt = np;
    llamita_kv_clear(ctx);
    char err[256];
    assert_int_equal(llamita_decode_tokens(ctx, pt, np, false, err, sizeof err), 0);
    const int V = llamita_model_n_vocab(g_model);
    int n = 0;
    *raw_len = 0;
    while (n < max) {
        const float *l = llamita_get_logits_ith(ctx, -1);
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        if (llamita_token_is_eog(g_model, best)) break;
        out[n++] = best;
        char piece[64];
        int k = llamita_token_to_piece(g_model, best, piece, sizeof piece, 0, false);
        assert_true(k >= 0);
        memcpy(raw + *raw_len, piece, (size_t)k);
        *raw_len += (size_t)k;
        if (n < max) assert_int_equal(llamita_decode_tokens(ctx, &out[n - 1], 1, false, err, sizeof err), 0);
    }
    return n;
}

static char *sanitized(const char *raw, size_t n) {
    char *s = malloc(n + 1);
    size_t k = lm_utf8_sanitize(raw, n, s);
    s[k] = 0;
    return s;
}

static const char *PROMPT = "hello world, a b c";

static void test_greedy_matches_manual_loop(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    llamita_token ids[64];
    char raw[1024];
    size_t raw_len;
    int np;
    int n = manual_greedy(ctx, PROMPT, 24, ids, raw, &raw_len, &np);
    char *want = sanitized(raw, raw_len);

    llamita_completion_params p = greedy_params(24);
    char err[512] = "";
    char *json = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    if (!json) fprintf(stderr, "completion: %s\n", err);
    cJSON *o = check_text_completion(json, g_model_path, false);
    fprintf(stderr, "greedy: %d tokens, %zu raw bytes, finish %s\n", n, raw_len, finish_of(o));
    assert_string_equal(text_of(o), want);
    assert_int_equal(usage_of(o, "prompt_tokens"), np);
    assert_int_equal(usage_of(o, "completion_tokens"), n);
    assert_string_equal(finish_of(o), n == 24 ? "length" : "stop");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(choice0(o), "logprobs")));
    cJSON_Delete(o);
    llamita_free(json);

    /* streaming gives the same text, and the same final object text */
    chunks k = {0};
    json = llamita_completion(ctx, PROMPT, &p, collect, &k, err, sizeof err);
    o = check_text_completion(json, g_model_path, false);
    assert_string_equal(text_of(o), want);
    check_stream(&k, want, finish_of(o));
    fprintf(stderr, "greedy stream: %d chunks\n", k.n);
    chunks_free(&k);
    cJSON_Delete(o);
    llamita_free(json);
    free(want);
    llamita_context_free(ctx);
}

/* Stop strings that span a token boundary of the greedy output, streaming and not. */
static void test_stop_across_tokens_e2e(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    llamita_token ids[64];
    char raw[1024];
    size_t raw_len;
    int np;
    const int N = 40;
    int n = manual_greedy(ctx, PROMPT, N, ids, raw, &raw_len, &np);
    /* piece boundaries */
    size_t ends[64];
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        char piece[64];
        int k = llamita_token_to_piece(g_model, ids[i], piece, sizeof piece, 0, false);
        o += (size_t)k;
        ends[i] = o;
    }
    int tested = 0;
    for (int b = 1; b < n && tested < 3; b++) {
        /* a 2..4-byte stop: the last bytes of token b-1 and the first of token b */
        const size_t start = b >= 2 ? ends[b - 2] : 0;
        if (ends[b - 1] == start || ends[b] == ends[b - 1]) continue; /* an empty piece */
        size_t s0 = ends[b - 1] - LM_MIN((size_t)2, ends[b - 1] - start);
        size_t s1 = LM_MIN(ends[b - 1] + 2, ends[b]);
        char stop[8];
        memcpy(stop, raw + s0, s1 - s0);
        stop[s1 - s0] = 0;
        if (strlen(stop) != s1 - s0) continue; /* no NUL bytes in stop strings */
        /* reference: the first token whose text completes an occurrence ends it */
        size_t cut = SIZE_MAX;
        int n_done = 0;
        for (int i = 0; i < n && cut == SIZE_MAX; i++) {
            const char *h = memmem(raw, ends[i], stop, strlen(stop));
            if (h) {
                cut = (size_t)(h - raw);
                n_done = i + 1;
            }
        }
        assert_true(cut != SIZE_MAX);
        char *want = sanitized(raw, cut);
        for (int streaming = 0; streaming < 2; streaming++) {
            llamita_completion_params p = greedy_params(N);
            const char *stops[] = {"never-occurs-xyz", stop};
            p.stop = stops;
            p.n_stop = 2;
            char err[512] = "";
            chunks k = {0};
            char *json = llamita_completion(ctx, PROMPT, &p, streaming ? collect : NULL, &k, err, sizeof err);
            if (!json) fprintf(stderr, "completion: %s\n", err);
            cJSON *obj = check_text_completion(json, g_model_path, false);
            assert_string_equal(text_of(obj), want);
            assert_string_equal(finish_of(obj), "stop");
            assert_int_equal(usage_of(obj, "completion_tokens"), n_done);
            if (streaming) {
                check_stream(&k, want, "stop");
                /* no chunk ever showed a byte of the stop string */
                for (int i = 0; i < k.n; i++) {
                    cJSON *c = parse_or_fail(k.c[i]);
                    assert_null(strstr(text_of(c), stop));
                    cJSON_Delete(c);
                }
            }
            fprintf(stderr, "stop across tokens %d/%d (%s): cut at byte %zu after %d tokens, %d chunks\n", b,
                    b + 1, streaming ? "stream" : "plain", cut, n_done, k.n);
            chunks_free(&k);
            cJSON_Delete(obj);
            llamita_free(json);
        }
        free(want);
        tested++;
    }
    assert_true(tested >= 1);
    llamita_context_free(ctx);
}

static void test_max_tokens_and_context(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    char err[512] = "";
    llamita_completion_params p = greedy_params(5);
    p.ignore_eos = true;
    char *json = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    cJSON *o = check_text_completion(json, g_model_path, false);
    assert_int_equal(usage_of(o, "completion_tokens"), 5);
    assert_string_equal(finish_of(o), "length");
    const int np = usage_of(o, "prompt_tokens");
    cJSON_Delete(o);
    llamita_free(json);

    /* max_tokens <= 0: until the context is full */
    p.max_tokens = 0;
    p.sampling.temp = 1.0f; /* sample, so repetitive greedy loops do not matter */
    p.sampling.seed = 5;
    json = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    o = check_text_completion(json, g_model_path, false);
    assert_int_equal(usage_of(o, "completion_tokens"), TEST_N_CTX - np);
    assert_int_equal(usage_of(o, "total_tokens"), TEST_N_CTX);
    assert_string_equal(finish_of(o), "length");
    cJSON_Delete(o);
    llamita_free(json);

    /* a larger max_tokens is cut to what the context holds */
    p.max_tokens = 100000;
    p.sampling.temp = 0.0f;
    json = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    o = check_text_completion(json, g_model_path, false);
    assert_int_equal(usage_of(o, "completion_tokens"), TEST_N_CTX - np);
    cJSON_Delete(o);
    llamita_free(json);
    llamita_context_free(ctx);
}

static void test_prompt_too_long(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(32);
    char prompt[512];
    /* "~" has no filler piece in the byte vocabulary: one byte token per character */
    llamita_token t[64];
    int len = 0;
    for (; len < 60; len++) {
        memset(prompt, '~', (size_t)len);
        prompt[len] = 0;
        if (llamita_tokenize(g_model, prompt, -1, t, 64, true, true) == 32) break;
    }
    assert_int_equal(llamita_tokenize(g_model, prompt, -1, t, 64, true, true), 32); /* = n_ctx */
    char err[512] = "";
    llamita_completion_params p = greedy_params(4);
    char *json = llamita_completion(ctx, prompt, &p, NULL, NULL, err, sizeof err);
    assert_null(json);
    fprintf(stderr, "expected error: %s\n", err);
    assert_non_null(strstr(err, "32 tokens"));
    assert_non_null(strstr(err, "context"));
    /* one token less fits, and leaves room for exactly one */
    prompt[len - 1] = 0;
    json = llamita_completion(ctx, prompt, &p, NULL, NULL, err, sizeof err);
    cJSON *o = check_text_completion(json, g_model_path, false);
    assert_true(usage_of(o, "completion_tokens") <= 1);
    assert_true(usage_of(o, "total_tokens") <= 32);
    cJSON_Delete(o);
    llamita_free(json);
    llamita_context_free(ctx);
}

/* log-softmax of row[V] at t, in double. */
static double log_softmax_at(const float *row, int V, int t) {
    float mx = row[0];
    for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)row[i] - mx);
    return (double)row[t] - mx - log(s);
}

static void test_logprobs(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    const int V = llamita_model_n_vocab(g_model);
    llamita_token ids[64];
    char raw[1024];
    size_t raw_len;
    int np;
    const int N = 12;
    int n = manual_greedy(ctx, PROMPT, N, ids, raw, &raw_len, &np);

    /* reference logprobs of the greedy tokens, and of the prompt tokens, from all-position logits */
    llamita_token all[256];
    assert_int_equal(llamita_tokenize(g_model, PROMPT, -1, all, 256, true, true), np);
    memcpy(all + np, ids, (size_t)n * sizeof *ids);
    llamita_kv_clear(ctx);
    char err[512] = "";
    assert_int_equal(llamita_decode_tokens(ctx, all, np + n, true, err, sizeof err), 0);
    double ref[256]; /* ref[i] = logprob of all[i] given all[0..i) */
    for (int i = 1; i < np + n; i++) ref[i] = log_softmax_at(llamita_get_logits_ith(ctx, i - 1), V, all[i]);

    for (int echo = 0; echo < 2; echo++) {
        llamita_completion_params p = greedy_params(N);
        p.logprobs = 3;
        p.echo = echo;
        char *json = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
        if (!json) fprintf(stderr, "completion: %s\n", err);
        cJSON *o = check_text_completion(json, g_model_path, false);
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(choice0(o), "logprobs");
        assert_true(cJSON_IsObject(lp));
        const cJSON *toks = cJSON_GetObjectItemCaseSensitive(lp, "tokens");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(lp, "text_offset");
        const cJSON *tlp = cJSON_GetObjectItemCaseSensitive(lp, "token_logprobs");
        const cJSON *top = cJSON_GetObjectItemCaseSensitive(lp, "top_logprobs");
        const int first = echo ? 1 : np; /* index in all[] of the first listed token (BOS dropped) */
        const int count = np + n - first;
        assert_int_equal(cJSON_GetArraySize(toks), count);
        assert_int_equal(cJSON_GetArraySize(offs), count);
        assert_int_equal(cJSON_GetArraySize(tlp), count);
        assert_int_equal(cJSON_GetArraySize(top), count);
        double maxd = 0;
        int prev_off = -1;
        for (int j = 0; j < count; j++) {
            const int i = first + j;
            char piece[64];
            int k = llamita_token_to_piece(g_model, all[i], piece, sizeof piece, 0, false);
            char *want_tok = sanitized(piece, (size_t)k);
            assert_string_equal(cJSON_GetArrayItem(toks, j)->valuestring, want_tok);
            const int off = cJSON_GetArrayItem(offs, j)->valueint;
            assert_true(off >= prev_off);
            prev_off = off;
            const cJSON *v = cJSON_GetArrayItem(tlp, j);
            const cJSON *d = cJSON_GetArrayItem(top, j);
            if (echo && j == 0) { /* as the OpenAI API: no logprob for the first token */
                assert_true(cJSON_IsNull(v));
                assert_true(cJSON_IsNull(d));
                free(want_tok);
                continue;
            }
            assert_true(cJSON_IsNumber(v));
            maxd = fmax(maxd, fabs(v->valuedouble - ref[i]));
            assert_true(cJSON_IsObject(d));
            const int nd = cJSON_GetArraySize(d);
            assert_true(nd >= 1 && nd <= 4); /* top 3 + the chosen token (texts may coincide) */
            /* the chosen token's text is a key with its logprob */
            const cJSON *mine = cJSON_GetObjectItemCaseSensitive(d, want_tok);
            assert_non_null(mine);
            /* values are sorted best first and all <= 0 */
            double prevv = 1.0;
            const cJSON *it;
            int q = 0;
            cJSON_ArrayForEach(it, d) {
                assert_true(it->valuedouble <= 1e-6);
                if (q++ < 3 && nd == 4) assert_true(it->valuedouble <= prevv + 1e-12);
                prevv = it->valuedouble;
            }
            if (i >= np) { /* a greedy token is the best one: first key, same value */
                assert_true(fabs(d->child->valuedouble - v->valuedouble) < 1e-6);
            }
            free(want_tok);
        }
        /* offsets: the prompt's characters first (no echo), then the joined token texts */
        if (!echo) assert_int_equal(cJSON_GetArrayItem(offs, 0)->valueint, (int)strlen(PROMPT));
        fprintf(stderr, "logprobs (echo %d): %d entries, max |logprob - reference| = %.3g\n", echo, count, maxd);
        assert_true(maxd < 1e-4); /* float32 logits, log-sum-exp in double: measured ~1e-7 */
        cJSON_Delete(o);
        llamita_free(json);
    }
    llamita_context_free(ctx);
}

static void test_echo_and_empty_prompt(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    char err[512] = "";
    llamita_completion_params p = greedy_params(6);
    char *plain = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    p.echo = true;
    chunks k = {0};
    char *echo = llamita_completion(ctx, PROMPT, &p, collect, &k, err, sizeof err);
    cJSON *a = check_text_completion(plain, g_model_path, false);
    cJSON *b = check_text_completion(echo, g_model_path, false);
    char want[512];
    snprintf(want, sizeof want, "%s%s", PROMPT, text_of(a));
    assert_string_equal(text_of(b), want);
    check_stream(&k, want, finish_of(b)); /* the prompt is the first chunk */
    chunks_free(&k);
    cJSON_Delete(a);
    cJSON_Delete(b);
    llamita_free(plain);
    llamita_free(echo);

    /* empty prompt: BOS alone; the completion has no leading space */
    p = greedy_params(8);
    char *e = llamita_completion(ctx, "", &p, NULL, NULL, err, sizeof err);
    if (!e) fprintf(stderr, "completion: %s\n", err);
    a = check_text_completion(e, g_model_path, false);
    assert_int_equal(usage_of(a, "prompt_tokens"), 1);
    assert_true(text_of(a)[0] != ' ');
    cJSON_Delete(a);
    llamita_free(e);
    llamita_context_free(ctx);
}

static char *sampled_text(llamita_context *ctx, uint64_t seed) {
    llamita_completion_params p = llamita_completion_default_params();
    p.max_tokens = 24;
    p.ignore_eos = true;
    p.sampling.temp = 1.0f;
    p.sampling.top_k = 0;
    p.sampling.top_p = 1.0f;
    p.sampling.min_p = 0.0f;
    p.sampling.seed = seed;
    p.model_name = "my-model";
    char err[512] = "";
    char *json = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    cJSON *o = check_text_completion(json, "my-model", false);
    char *t = strdup(text_of(o));
    cJSON_Delete(o);
    llamita_free(json);
    return t;
}

static void test_seed_reproducible(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    char *a = sampled_text(ctx, 42), *b = sampled_text(ctx, 42), *c = sampled_text(ctx, 43);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c); /* 24 draws at temperature 1 over 512 tokens */
    free(a);
    free(b);
    free(c);
    llamita_context_free(ctx);
}

/* High temperature over a vocabulary that is half byte tokens: many partial and ill-formed UTF-8
 * sequences; every chunk is valid UTF-8 JSON and the chunks join to the final text. */
static void test_utf8_chunks(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    int dropped = 0, total_chunks = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        llamita_completion_params p = llamita_completion_default_params();
        p.max_tokens = 60;
        p.ignore_eos = true;
        p.sampling.temp = 2.0f;
        p.sampling.top_k = 0;
        p.sampling.top_p = 1.0f;
        p.sampling.min_p = 0.0f;
        p.sampling.seed = seed;
        p.logprobs = 1;
        const char *stops[] = {"\xc3\xa9", "zz"};
        p.stop = stops;
        p.n_stop = 2;
        chunks k = {0};
        char err[512] = "";
        char *json = llamita_completion(ctx, "caf\xc3\xa9 \xe2\x82\xac", &p, collect, &k, err, sizeof err);
        if (!json) fprintf(stderr, "completion: %s\n", err);
        cJSON *o = check_text_completion(json, g_model_path, false);
        check_stream(&k, text_of(o), finish_of(o));
        /* streamed logprobs cover the completion's tokens once each, in order */
        int n_lp = 0;
        for (int i = 0; i < k.n; i++) {
            cJSON *c = parse_or_fail(k.c[i]);
            const cJSON *lp = cJSON_GetObjectItemCaseSensitive(choice0(c), "logprobs");
            if (cJSON_IsObject(lp)) n_lp += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(lp, "tokens"));
            cJSON_Delete(c);
        }
        const cJSON *flp = cJSON_GetObjectItemCaseSensitive(choice0(o), "logprobs");
        const int ct = usage_of(o, "completion_tokens");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(flp, "tokens")), ct);
        assert_true(n_lp <= ct);
        if (!strcmp(finish_of(o), "length")) assert_int_equal(n_lp, ct);
        total_chunks += k.n;
        /* tokens whose text is empty once ill-formed bytes are dropped: lone byte tokens */
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(flp, "tokens")) dropped += it->valuestring[0] == 0;
        chunks_free(&k);
        cJSON_Delete(o);
        llamita_free(json);
    }
    fprintf(stderr, "utf8 chunks: %d chunks over 4 runs, %d byte tokens dropped as ill-formed\n", total_chunks,
            dropped);
    assert_true(total_chunks > 40);
    assert_true(dropped > 10); /* partial and ill-formed sequences were exercised */
    llamita_context_free(ctx);
}

static void test_kv_prefix_reuse(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX), *fresh = new_ctx(TEST_N_CTX);
    char err[512] = "";
    llamita_completion_params p = greedy_params(10);
    p.ignore_eos = true;
    char *a = llamita_completion(ctx, PROMPT, &p, NULL, NULL, err, sizeof err);
    assert_non_null(a);
    char longer[256];
    snprintf(longer, sizeof longer, "%s and more words", PROMPT);
    char *b = llamita_completion(ctx, longer, &p, NULL, NULL, err, sizeof err);
    const int32_t reused = lm_gen_last_reused(ctx);
    char *c = llamita_completion(fresh, longer, &p, NULL, NULL, err, sizeof err);
    cJSON *ob = check_text_completion(b, g_model_path, false), *oc = check_text_completion(c, g_model_path, false);
    assert_string_equal(text_of(ob), text_of(oc));
    /* a context changed by hand in between: no wrong reuse */
    llamita_kv_clear(ctx);
    char *d = llamita_completion(ctx, longer, &p, NULL, NULL, err, sizeof err);
    cJSON *od = check_text_completion(d, g_model_path, false);
    assert_string_equal(text_of(od), text_of(oc));
    fprintf(stderr, "kv reuse: %d prompt tokens reused\n", (int)reused);
    assert_true(reused > 5);
    assert_int_equal(lm_gen_last_reused(ctx), 0);
    cJSON_Delete(ob);
    cJSON_Delete(oc);
    cJSON_Delete(od);
    llamita_free(a);
    llamita_free(b);
    llamita_free(c);
    llamita_free(d);
    llamita_context_free(ctx);
    llamita_context_free(fresh);
}

static void test_callback_stops(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    llamita_completion_params p = greedy_params(40);
    p.ignore_eos = true;
    chunks k = {0};
    k.stop_after = 2;
    char err[512] = "";
    char *json = llamita_completion(ctx, PROMPT, &p, collect, &k, err, sizeof err);
    cJSON *o = check_text_completion(json, g_model_path, false);
    assert_string_equal(finish_of(o), "stop");
    assert_true(usage_of(o, "completion_tokens") < 40);
    check_stream(&k, text_of(o), "stop");
    chunks_free(&k);
    cJSON_Delete(o);
    llamita_free(json);
    llamita_context_free(ctx);
}

static void test_bad_arguments(void **state) {
    (void)state;
    char err[256] = "";
    assert_null(llamita_completion(NULL, "x", NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "context"));
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    assert_null(llamita_completion(ctx, NULL, NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "prompt"));
    llamita_completion_params p = llamita_completion_default_params();
    p.n_stop = 2;
    assert_null(llamita_completion(ctx, "x", &p, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "stop"));
    p = llamita_completion_default_params();
    p.sampling.repeat_penalty = 0.0f;
    assert_null(llamita_completion(ctx, "x", &p, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "repeat_penalty"));
    assert_null(llamita_chat_completion(ctx, NULL, NULL, NULL, NULL, NULL, 0));
    llamita_free(NULL);
    /* NULL params = defaults (16 tokens at most) */
    char *json = llamita_completion(ctx, "x", NULL, NULL, NULL, err, sizeof err);
    cJSON *o = check_text_completion(json, g_model_path, false);
    assert_true(usage_of(o, "completion_tokens") <= 16);
    cJSON_Delete(o);
    llamita_free(json);
    llamita_context_free(ctx);
}

/* ---- chat ---- */

static const char *CHAT_TMPL =
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

static void test_chat_completion(void **state) {
    (void)state;
    llamita_context *ctx = new_ctx(TEST_N_CTX);
    const char *msgs = "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
                       "\"Say \\\"hi\\\"\\n\"}]";
    char err[512] = "";
    char *rendered = llamita_chat_apply_template(g_model, CHAT_TMPL, msgs, true, NULL, NULL, err, sizeof err);
    if (!rendered) fprintf(stderr, "template: %s\n", err);
    assert_non_null(rendered);
    llamita_token t[256];
    const int np = llamita_tokenize(g_model, rendered, -1, t, 256, true, true);
    llamita_free(rendered);

    llamita_completion_params p = greedy_params(20);
    p.chat_template = CHAT_TMPL;
    p.ignore_eos = true;
    p.model_name = "chat-model";
    char *json = llamita_chat_completion(ctx, msgs, &p, NULL, NULL, err, sizeof err);
    if (!json) fprintf(stderr, "chat: %s\n", err);
    cJSON *o = parse_or_fail(json);
    assert_true(!strncmp(jstr(o, "id"), "chatcmpl-", 9));
    assert_string_equal(jstr(o, "object"), "chat.completion");
    assert_string_equal(jstr(o, "model"), "chat-model");
    const cJSON *c = choice0(o);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c, "message");
    assert_string_equal(jstr(msg, "role"), "assistant");
    const char *content = jstr(msg, "content");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, "logprobs")));
    assert_string_equal(jstr(c, "finish_reason"), "length");
    assert_int_equal(usage_of(o, "prompt_tokens"), np);
    assert_int_equal(usage_of(o, "completion_tokens"), 20);

    /* streamed: role delta, content deltas, {} with finish_reason; contents join to the message */
    chunks k = {0};
    char *json2 = llamita_chat_completion(ctx, msgs, &p, collect, &k, err, sizeof err);
    cJSON *o2 = parse_or_fail(json2);
    assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(choice0(o2), "message"), "content"), content);
    assert_true(k.n >= 2);
    char joined[4096] = "";
    for (int i = 0; i < k.n; i++) {
        cJSON *ch = parse_or_fail(k.c[i]);
        assert_string_equal(jstr(ch, "object"), "chat.completion.chunk");
        assert_true(!strncmp(jstr(ch, "id"), "chatcmpl-", 9));
        assert_string_equal(jstr(ch, "model"), "chat-model");
        const cJSON *cc = choice0(ch);
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(cc, "delta");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(cc, "finish_reason");
        assert_true(cJSON_IsObject(delta));
        if (i == 0) {
            assert_string_equal(jstr(delta, "role"), "assistant");
            assert_true(cJSON_IsNull(fr));
        } else if (i == k.n - 1) {
            assert_null(delta->child);
            assert_string_equal(fr->valuestring, "length");
        } else {
            assert_true(cJSON_IsNull(fr));
            strncat(joined, jstr(delta, "content"), sizeof joined - strlen(joined) - 1);
        }
        cJSON_Delete(ch);
    }
    assert_string_equal(joined, content);
    chunks_free(&k);

    /* chat logprobs shape */
    p.logprobs = 2;
    p.max_tokens = 4;
    char *json3 = llamita_chat_completion(ctx, msgs, &p, NULL, NULL, err, sizeof err);
    cJSON *o3 = parse_or_fail(json3);
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(choice0(o3), "logprobs");
    const cJSON *content_lp = cJSON_GetObjectItemCaseSensitive(lp, "content");
    assert_int_equal(cJSON_GetArraySize(content_lp), 4);
    const cJSON *e0 = cJSON_GetArrayItem(content_lp, 0);
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e0, "token")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e0, "logprob")));
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(e0, "top_logprobs")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(lp, "refusal")));

    /* a template error comes back as the error */
    assert_null(llamita_chat_completion(ctx, "not json", &p, NULL, NULL, err, sizeof err));
    fprintf(stderr, "expected error: %s\n", err);
    assert_true(strlen(err) > 0);

    cJSON_Delete(o);
    cJSON_Delete(o2);
    cJSON_Delete(o3);
    llamita_free(json);
    llamita_free(json2);
    llamita_free(json3);
    llamita_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_utf8_sanitize),
        cmocka_unit_test(test_stop_split_across_pieces),
        cmocka_unit_test(test_stream_never_splits_utf8),
        cmocka_unit_test(test_stream_randomized),
    };
    const struct CMUnitTest e2e[] = {
        cmocka_unit_test(test_greedy_matches_manual_loop),
        cmocka_unit_test(test_stop_across_tokens_e2e),
        cmocka_unit_test(test_max_tokens_and_context),
        cmocka_unit_test(test_prompt_too_long),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_echo_and_empty_prompt),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_utf8_chunks),
        cmocka_unit_test(test_kv_prefix_reuse),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_chat_completion),
    };
    int fails = cmocka_run_group_tests_name("generate_unit", unit, NULL, NULL);
    fails += cmocka_run_group_tests_name("generate_e2e", e2e, setup_model, teardown_model);
    return fails;
}
