/*
 * Tokenizer (src/vocab.c) against llama.cpp:
 *   spm_cases        llama.cpp's own tokenizer test (../shared/vocab/ggml-vocab-{llama-spm,phi-3}.gguf
 *                    with .inp/.out, add_special = parse_special = false): every case exact, and the
 *                    round trip detokenize(tokenize(x)) == x.
 *   other_vocabs     every other test vocabulary: "llama" ones load, the others fail naming the model.
 *   fixture_prompts  every ../shared/fixtures dump: tokenize(prompt, add_special) == PREFIX.tokens;
 *                    the generated ids' pieces == gen_pieces_concat, detokenize(gen) == PREFIX.gen.txt.
 *   parse_special, byte fallback, empty / NUL / invalid UTF-8 input, 1 MB inputs (timed), too-small
 *   output buffers, token_to_piece, the public wrappers, utf8_complete_len, and load errors on
 *   hand-made GGUFs (written with lm_gguf_writer).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <time.h>

#include "common.h"
#include "gguf.h"
#include "llamita.h"
#include "model.h"
#include "test_util.h"
#include "vocab.h"

#if defined(__SANITIZE_ADDRESS__)
#define LM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LM_SANITIZED 1
#endif
#endif
#ifndef LM_SANITIZED
#define LM_SANITIZED 0
#endif

#define PATH_LEN 8192

/* ---------------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    lm_gguf *g;
    lm_vocab *v;
} vfile;

static vfile open_vocab(const char *rel) {
    char path[PATH_LEN], err[512] = "";
    lm_test_shared_path(path, sizeof path, rel);
    vfile f = {0};
    f.g = lm_gguf_open(path, err, sizeof err);
    if (!f.g) fail_msg("lm_gguf_open %s: %s", path, err);
    f.v = lm_vocab_load(f.g, err, sizeof err);
    if (!f.v) fail_msg("lm_vocab_load %s: %s", path, err);
    return f;
}

static void close_vocab(vfile *f) {
    lm_vocab_free(f->v);
    lm_gguf_close(f->g);
}

/* Tokenizes into a malloc'd array (*n tokens), checking the "minus needed" protocol on the way. */
static int32_t *tok(const lm_vocab *v, const char *s, size_t len, bool add_special, bool parse_special,
                    int32_t *n) {
    int32_t need = lm_tokenize(v, s, len, NULL, 0, add_special, parse_special);
    assert_true(need != INT32_MIN);
    if (need > 0) fail_msg("n_max = 0 returned %d for a non-empty result", need);
    int32_t cap = -need;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(cap + 1));
    assert_non_null(out);
    int32_t r = lm_tokenize(v, s, len, out, cap, add_special, parse_special);
    assert_int_equal(r, cap);
    *n = r;
    return out;
}

/* Detokenizes into a malloc'd NUL-terminated buffer; *n bytes. */
static char *detok(const lm_vocab *v, const int32_t *ids, int32_t n_ids, bool remove_special,
                   bool unparse_special, int32_t *n) {
    int32_t need = lm_detokenize(v, ids, n_ids, NULL, 0, remove_special, unparse_special);
    assert_true(need != INT32_MIN);
    int32_t cap = need < 0 ? -need : need;
    char *out = malloc((size_t)cap + 1);
    assert_non_null(out);
    int32_t r = lm_detokenize(v, ids, n_ids, out, cap, remove_special, unparse_special);
    assert_int_equal(r, cap);
    out[r] = 0;
    *n = r;
    return out;
}

static bool ids_equal(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0);
}

static void print_ids(const char *what, const int32_t *a, int32_t n) {
    fprintf(stderr, "  %s (%d):", what, n);
    for (int32_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "\n");
}

/* CPU time of this process: the bound holds on a loaded 2-core CI machine too */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------------
 * llama.cpp's test-tokenizer-0 cases
 * ------------------------------------------------------------------------------------------- */

#define SEP "\n__ggml_vocab_test__\n"

static void run_inp_out(const char *vocab_rel) {
    char rel[512], path[PATH_LEN];
    vfile f = open_vocab(vocab_rel);
    size_t inp_n = 0, out_n = 0;
    snprintf(rel, sizeof rel, "%s.inp", vocab_rel);
    char *inp = lm_test_read_file(lm_test_shared_path(path, sizeof path, rel), &inp_n);
    snprintf(rel, sizeof rel, "%s.out", vocab_rel);
    char *out = lm_test_read_file(lm_test_shared_path(path, sizeof path, rel), &out_n);
    assert_non_null(inp);
    assert_non_null(out);
    char *outz = realloc(out, out_n + 1);
    assert_non_null(outz);
    outz[out_n] = 0;

    int cases = 0, bad = 0, roundtrip = 0;
    size_t pos = 0;
    char *line = outz;
    const size_t sep_n = strlen(SEP);
    while (pos < inp_n) {
        const char *s = memmem(inp + pos, inp_n - pos, SEP, sep_n);
        if (!s) break;
        size_t len = (size_t)(s - (inp + pos));
        /* expected ids: one line of the .out */
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        int32_t exp[4096], ne = 0;
        for (char *p = line; *p;) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p) break;
            assert_true(ne < 4096);
            exp[ne++] = (int32_t)x;
            p = end;
        }
        line = nl + 1;

        int32_t n;
        int32_t *ids = tok(f.v, inp + pos, len, false, false, &n);
        if (!ids_equal(ids, n, exp, ne)) {
            bad++;
            fprintf(stderr, "  case %d mismatch: '%.*s'\n", cases, (int)len, inp + pos);
            print_ids("expected", exp, ne);
            print_ids("got", ids, n);
        }
        int32_t dn;
        char *back = detok(f.v, ids, n, false, false, &dn);
        if ((size_t)dn == len && memcmp(back, inp + pos, len) == 0) roundtrip++;
        else fprintf(stderr, "  case %d: round trip differs: '%.*s' -> '%s'\n", cases, (int)len, inp + pos, back);
        free(back);
        free(ids);
        cases++;
        pos += len + sep_n;
    }
    fprintf(stderr, "%s: %d cases, %d mismatches, round trip exact in %d/%d\n", vocab_rel, cases, bad,
            roundtrip, cases);
    assert_int_equal(cases, 46);
    assert_int_equal(bad, 0);
    /* SPM detokenization restores every one of these inputs (spaces, tabs, newlines, byte-fallback
     * emoji), as it does in llama.cpp: the first token's "▁" is the tokenizer's own prefix. */
    assert_int_equal(roundtrip, cases);
    free(inp);
    free(outz);
    close_vocab(&f);
}

static void test_spm_cases(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    run_inp_out("vocab/ggml-vocab-llama-spm.gguf");
    /* Phi-3's vocabulary is the Llama one plus control tokens; llama.cpp's expected ids are the same */
    run_inp_out("vocab/ggml-vocab-phi-3.gguf");
}

static void test_other_vocabs(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    char dirp[PATH_LEN];
    lm_test_shared_path(dirp, sizeof dirp, "vocab");
    DIR *d = opendir(dirp);
    assert_non_null(d);
    struct dirent *e;
    int n_ok = 0, n_unsupported = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".gguf") != 0) continue;
        char path[PATH_LEN + 300], err[512] = "";
        snprintf(path, sizeof path, "%s/%s", dirp, e->d_name);
        lm_gguf *g = lm_gguf_open(path, err, sizeof err);
        if (!g) fail_msg("%s: %s", path, err);
        lm_gguf_str model = {0};
        assert_true(lm_gguf_get_str(g, "tokenizer.ggml.model", &model, err, sizeof err));
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)LM_MIN(model.len, 63u), model.data);
        lm_vocab *v = lm_vocab_load(g, err, sizeof err);
        if (strcmp(name, "llama") == 0) {
            if (!v) fail_msg("%s: %s", e->d_name, err);
            fprintf(stderr, "  %s: llama vocab, %d tokens, bos %d eos %d\n", e->d_name, lm_vocab_n_tokens(v),
                    lm_vocab_bos(v), lm_vocab_eos(v));
            n_ok++;
        } else {
            assert_null(v);
            char want[128];
            snprintf(want, sizeof want, "unsupported tokenizer model '%s'", name);
            if (!strstr(err, want)) fail_msg("%s: error '%s' lacks \"%s\"", e->d_name, err, want);
            fprintf(stderr, "  %s: %s\n", e->d_name, err);
            n_unsupported++;
        }
        lm_vocab_free(v);
        lm_gguf_close(g);
    }
    closedir(d);
    fprintf(stderr, "%d llama vocabularies loaded, %d others refused\n", n_ok, n_unsupported);
    assert_int_equal(n_ok, 3); /* llama-spm, phi-3, baichuan */
    assert_int_equal(n_unsupported, 9);
}

/* ---------------------------------------------------------------------------------------------
 * fixtures dumps
 * ------------------------------------------------------------------------------------------- */

/* Finds "key": "..." in a JSON text and decodes the string (escapes, \uXXXX with surrogates) into
 * a malloc'd UTF-8 buffer (*n bytes). NULL if absent. */
static char *json_str(const char *json, const char *key, size_t *n) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != '"') return NULL;
    p++;
    char *out = malloc(strlen(p) * 2 + 8);
    size_t o = 0;
    while (*p && *p != '"') {
        if (*p != '\\') {
            out[o++] = *p++;
            continue;
        }
        p++;
        char c = *p++;
        switch (c) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) out[o++] = (char)cp;
            else if (cp < 0x800) {
                out[o++] = (char)(0xC0 | (cp >> 6));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[o++] = (char)(0xE0 | (cp >> 12));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (char)(0xF0 | (cp >> 18));
                out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[o++] = c; break; /* \" \\ \/ */
        }
    }
    out[o] = 0;
    *n = o;
    return out;
}

/* Python's bytes.decode("utf-8", errors="replace"): each maximal ill-formed subpart becomes U+FFFD.
 * Returns a malloc'd buffer (*n bytes). */
static char *utf8_replace(const char *s, size_t len, size_t *n) {
    const unsigned char *b = (const unsigned char *)s;
    char *out = malloc(len * 3 + 1);
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned c = b[i];
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        size_t k = 1;
        if (need) {
            for (; k <= need && i + k < len; k++) {
                unsigned x = b[i + k];
                if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) break;
            }
        }
        if (need && k == need + 1) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += need ? k : 1;
        }
    }
    out[o] = 0;
    *n = o;
    return out;
}

static void check_dump(const char *dir, const char *prefix) {
    char path[PATH_LEN + 600], err[512] = "";
    size_t json_n = 0;
    snprintf(path, sizeof path, "%s/%s.json", dir, prefix);
    char *json = lm_test_read_file(path, &json_n);
    assert_non_null(json);
    json = realloc(json, json_n + 1);
    json[json_n] = 0;

    /* the model named in the json, else any .gguf of the folder (quant/'s F32 file is withheld; all
     * of the folder's models share one vocabulary) */
    size_t mn;
    char *model = json_str(json, "model", &mn);
    assert_non_null(model);
    snprintf(path, sizeof path, "%s/%s", dir, model);
    lm_gguf *g = lm_gguf_open(path, err, sizeof err);
    if (!g) {
        DIR *d = opendir(dir);
        struct dirent *e;
        while (!g && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                g = lm_gguf_open(path, err, sizeof err);
            }
        }
        closedir(d);
    }
    if (!g) fail_msg("%s/%s: no model to take the vocabulary from", dir, prefix);
    lm_vocab *v = lm_vocab_load(g, err, sizeof err);
    if (!v) fail_msg("%s: %s", path, err);

    size_t pn = 0, tn = 0, gn = 0, gtn = 0;
    snprintf(path, sizeof path, "%s/%s.prompt.txt", dir, prefix);
    char *prompt = lm_test_read_file(path, &pn);
    snprintf(path, sizeof path, "%s/%s.tokens", dir, prefix);
    int32_t *want = lm_test_read_file(path, &tn);
    snprintf(path, sizeof path, "%s/%s.gen", dir, prefix);
    int32_t *gen = lm_test_read_file(path, &gn);
    snprintf(path, sizeof path, "%s/%s.gen.txt", dir, prefix);
    char *gen_txt = lm_test_read_file(path, &gtn);
    assert_true(prompt || pn == 0);
    assert_non_null(want);
    assert_non_null(gen);
    assert_true(gen_txt || gtn == 0);

    /* prompt tokens */
    int32_t n;
    int32_t *ids = tok(v, prompt ? prompt : "", pn, true, false, &n);
    if (!ids_equal(ids, n, want, (int32_t)(tn / 4))) {
        print_ids("expected", want, (int32_t)(tn / 4));
        print_ids("got", ids, n);
        fail_msg("%s/%s: prompt tokens differ", dir, prefix);
    }

    /* generated text: pieces joined (no strip) and detokenize (first-space strip) */
    int32_t n_gen = (int32_t)(gn / 4);
    size_t cat_cap = 64 * (size_t)n_gen + 64, cat_n = 0;
    char *cat = malloc(cat_cap);
    for (int32_t i = 0; i < n_gen; i++) {
        int32_t r = lm_token_to_piece(v, gen[i], cat + cat_n, (int32_t)(cat_cap - cat_n), 0, false);
        assert_true(r >= 0);
        cat_n += (size_t)r;
    }
    size_t rep_n, exp_n;
    char *rep = utf8_replace(cat, cat_n, &rep_n);
    char *exp = json_str(json, "gen_pieces_concat", &exp_n);
    assert_non_null(exp);
    if (rep_n != exp_n || memcmp(rep, exp, exp_n) != 0)
        fail_msg("%s/%s: pieces '%s' != gen_pieces_concat '%s'", dir, prefix, rep, exp);
    int32_t dn;
    char *text = detok(v, gen, n_gen, false, false, &dn);
    if ((size_t)dn != gtn || (gtn && memcmp(text, gen_txt, gtn) != 0))
        fail_msg("%s/%s: detokenize gave %d bytes '%s', gen.txt has %zu", dir, prefix, dn, text, gtn);

    free(text);
    free(exp);
    free(rep);
    free(cat);
    free(ids);
    free(prompt);
    free(want);
    free(gen);
    free(gen_txt);
    free(model);
    free(json);
    lm_vocab_free(v);
    lm_gguf_close(g);
}

static void test_fixture_prompts(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    static const char *const dirs[] = {"fixtures/models", "fixtures/quant", "fixtures/vocab32k"};
    int n = 0;
    for (size_t k = 0; k < 3; k++) {
        char dirp[PATH_LEN];
        lm_test_shared_path(dirp, sizeof dirp, dirs[k]);
        DIR *d = opendir(dirp);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            const char *suf = ".prompt.txt";
            if (l <= strlen(suf) || strcmp(e->d_name + l - strlen(suf), suf) != 0) continue;
            char prefix[512];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(l - strlen(suf)), e->d_name);
            check_dump(dirp, prefix);
            n++;
        }
        closedir(d);
    }
    fprintf(stderr, "%d dumps: prompt tokens, generated pieces and detokenized text all equal llama.cpp's\n", n);
    assert_int_equal(n, 3 + 17 + 2);
}

/* ---------------------------------------------------------------------------------------------
 * behaviour
 * ------------------------------------------------------------------------------------------- */

static void test_parse_special(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("fixtures/vocab32k/fx-spm32k-Q8_0.gguf");
    const char *s = "<|user|>\nhi</s>";
    int32_t n1, n2, n3;
    int32_t *a = tok(f.v, s, strlen(s), false, true, &n1);
    int32_t *b = tok(f.v, s, strlen(s), false, false, &n2);
    int32_t *c = tok(f.v, "<|user|>\nhi", 11, false, false, &n3);
    print_ids("parse_special", a, n1);
    print_ids("plain", b, n2);
    /* with parse_special: the text part then </s> (id 2) */
    assert_int_equal(n1, n3 + 1);
    assert_memory_equal(a, c, sizeof(int32_t) * (size_t)n3);
    assert_int_equal(a[n1 - 1], 2);
    /* without: </s> is spelled out, no id 2 anywhere */
    for (int32_t i = 0; i < n2; i++) assert_int_not_equal(b[i], 2);
    assert_true(n2 > n1);
    int32_t dn;
    char *t = detok(f.v, a, n1, false, true, &dn);
    assert_string_equal(t, s); /* unparse_special renders </s> */
    free(t);
    t = detok(f.v, a, n1, false, false, &dn);
    assert_string_equal(t, "<|user|>\nhi"); /* control tokens hidden */
    free(t);
    free(a);
    free(b);
    free(c);

    /* the space prefix goes to the first text and to text that follows a special token */
    int32_t n4, n5, n6, n7;
    int32_t *d = tok(f.v, "hi</s>ho", 8, true, true, &n4);
    int32_t *hi = tok(f.v, "hi", 2, false, false, &n5);
    int32_t *ho = tok(f.v, "ho", 2, false, false, &n6);
    assert_int_equal(n4, 1 + n5 + 1 + n6);
    assert_int_equal(d[0], 1);
    assert_memory_equal(d + 1, hi, sizeof(int32_t) * (size_t)n5);
    assert_int_equal(d[1 + n5], 2);
    assert_memory_equal(d + 2 + n5, ho, sizeof(int32_t) * (size_t)n6);
    /* "<s>" written in the text counts as the previous special token too; <unk> is parsed as well */
    int32_t *e = tok(f.v, "<s>hi<unk>", 10, false, true, &n7);
    assert_int_equal(n7, 1 + n5 + 1);
    assert_int_equal(e[0], 1);
    assert_memory_equal(e + 1, hi, sizeof(int32_t) * (size_t)n5);
    assert_int_equal(e[n7 - 1], 0);
    free(d);
    free(e);
    free(hi);
    free(ho);

    /* a special token inside a longer run and adjacent ones */
    int32_t n8;
    int32_t *g = tok(f.v, "</s></s>x</s>", 13, false, true, &n8);
    assert_true(n8 >= 4);
    assert_int_equal(g[0], 2);
    assert_int_equal(g[1], 2);
    assert_int_equal(g[n8 - 1], 2);
    free(g);
    close_vocab(&f);

    /* Phi-3 (general.name "Phi3"): llama.cpp gives its special tokens RSTRIP (whitespace after them
     * is dropped), and its "</s>" is USER_DEFINED, so it is matched even without parse_special */
    f = open_vocab("vocab/ggml-vocab-phi-3.gguf");
    int32_t n9, n10, n11;
    int32_t *ph = tok(f.v, "<|user|>\nhi<|end|>\n", 19, false, true, &n9);
    hi = tok(f.v, "hi", 2, false, false, &n10);
    print_ids("phi-3 <|user|>\\nhi<|end|>\\n", ph, n9);
    assert_int_equal(n9, n10 + 2);
    assert_int_equal(ph[0], 32010);
    assert_memory_equal(ph + 1, hi, sizeof(int32_t) * (size_t)n10);
    assert_int_equal(ph[n9 - 1], 32007);
    free(ph);
    int32_t *ab = tok(f.v, "a</s>  b", 8, false, false, &n11);
    print_ids("phi-3 a</s>  b", ab, n11);
    assert_int_equal(n11, 3);
    assert_int_equal(ab[1], 2);
    assert_true(lm_vocab_is_eog(f.v, 32000) && lm_vocab_is_eog(f.v, 32007)); /* <|endoftext|>, <|end|> */
    free(ab);
    free(hi);
    close_vocab(&f);
}

static void test_byte_fallback(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    /* the llama emoji has no token: its 4 bytes become <0xF0> <0x9F> <0xA6> <0x99> (id = 3 + byte) */
    int32_t n;
    int32_t *a = tok(f.v, "\xF0\x9F\xA6\x99", 4, false, false, &n);
    print_ids("llama emoji", a, n);
    assert_int_equal(n, 5);
    assert_int_equal(a[0], 29871); /* "▁" */
    assert_int_equal(a[1], 3 + 0xF0);
    assert_int_equal(a[2], 3 + 0x9F);
    assert_int_equal(a[3], 3 + 0xA6);
    assert_int_equal(a[4], 3 + 0x99);
    assert_int_equal(lm_vocab_token_type(f.v, a[1]), LM_TOKEN_BYTE);
    free(a);

    /* invalid UTF-8: stray continuation, truncated sequences, 0xFF; no crash, exact round trip,
     * every invalid byte becomes its <0xNN> token */
    static const char bad[] = "a\x80 b\xFF\xFE c\xE2\x82 d\xC3";
    size_t bl = sizeof bad - 1;
    a = tok(f.v, bad, bl, false, false, &n);
    print_ids("invalid utf-8", a, n);
    /* (" " is escaped to the 3 bytes of "▁" before splitting, so a truncated lead byte in front of a
     * space swallows part of it and those bytes fall back too, exactly as in llama.cpp) */
    static const unsigned char invalid[] = {0x80, 0xFF, 0xFE, 0xE2, 0x82, 0xC3};
    for (int32_t i = 0; i < n; i++) assert_true(a[i] >= 0 && a[i] < lm_vocab_n_tokens(f.v));
    for (size_t k = 0; k < sizeof invalid; k++) {
        bool found = false;
        for (int32_t i = 0; i < n; i++) found |= a[i] == 3 + invalid[k];
        if (!found) fail_msg("no <0x%02X> token for an invalid byte", invalid[k]);
    }
    /* The round trip is exact except where a truncated lead byte swallowed (part of) an escaped
     * space: those bytes come back as "▁", as they do with llama.cpp's tokenizer. */
    static const char back[] = "a\x80 b\xFF\xFE\xE2\x96\x81" "c\xE2\x82\xE2\x96\x81" "d\xC3";
    int32_t dn;
    char *t = detok(f.v, a, n, false, false, &dn);
    assert_int_equal(dn, (int32_t)(sizeof back - 1));
    assert_memory_equal(t, back, sizeof back - 1);
    free(t);
    free(a);
    /* invalid bytes without spaces after them do round-trip exactly */
    static const char bad2[] = "x\xFF\xC3(\x80\x80z\xF0\x9F";
    a = tok(f.v, bad2, sizeof bad2 - 1, false, false, &n);
    t = detok(f.v, a, n, false, false, &dn);
    assert_int_equal(dn, (int32_t)(sizeof bad2 - 1));
    assert_memory_equal(t, bad2, sizeof bad2 - 1);
    free(t);
    free(a);
    close_vocab(&f);
}

static void test_empty_and_nul(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    int32_t out[8];
    assert_int_equal(lm_tokenize(f.v, "", 0, out, 8, false, false), 0);
    assert_int_equal(lm_tokenize(f.v, NULL, 0, out, 8, false, true), 0);
    assert_int_equal(lm_tokenize(f.v, "", 0, out, 8, true, false), 1); /* BOS only */
    assert_int_equal(out[0], 1);
    assert_int_equal(lm_tokenize(f.v, NULL, 5, out, 8, false, false), INT32_MIN);
    assert_int_equal(lm_tokenize(NULL, "a", 1, out, 8, false, false), INT32_MIN);
    assert_int_equal(lm_tokenize(f.v, "a", 1, NULL, 8, false, false), INT32_MIN);
    assert_int_equal(lm_tokenize(f.v, "a", 1, out, -1, false, false), INT32_MIN);

    /* NUL bytes inside the text: byte token <0x00> (id 3), exact round trip */
    static const char nul[] = "a\0b\0\0c";
    int32_t n, dn;
    int32_t *a = tok(f.v, nul, 6, false, false, &n);
    print_ids("with NULs", a, n);
    int zeros = 0;
    for (int32_t i = 0; i < n; i++) zeros += a[i] == 3;
    assert_int_equal(zeros, 3);
    char *t = detok(f.v, a, n, false, false, &dn);
    assert_int_equal(dn, 6);
    assert_memory_equal(t, nul, 6);
    free(t);
    free(a);
    close_vocab(&f);
}

static void time_one(const lm_vocab *v, const char *what, const char *s, size_t len, double bound) {
    int32_t cap = (int32_t)(3 * len + 8); /* at most 3 byte tokens per input byte, plus the prefix */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    assert_non_null(ids);
    double t0 = now_s();
    int32_t n = lm_tokenize(v, s, len, ids, cap, false, false);
    double t1 = now_s();
    assert_true(n > 0);
    int32_t dn;
    char *back = detok(v, ids, n, false, false, &dn);
    double t2 = now_s();
    fprintf(stderr, "  %s: %zu bytes -> %d tokens, tokenize %.3f s, detokenize %.3f s CPU (bound %.1f s)\n",
            what, len, n, t1 - t0, t2 - t1, bound);
    assert_true(t1 - t0 < bound);
    assert_int_equal(dn, (int32_t)len);
    assert_memory_equal(back, s, len);
    free(back);
    free(ids);
}

static void test_long_inputs(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    const double bound = LM_SANITIZED ? 3.0 : 1.0; /* measured: 0.33 s at -O2 (1 MiB), 0.18 s under ASan (256 KiB) */
    /* 1 MiB at full speed; a quarter of that under the sanitizers (which are ~5x slower) */
    size_t n = LM_SANITIZED ? 1u << 18 : 1u << 20;
    char *s = malloc(n);
    memset(s, 'a', n);
    time_one(f.v, "repeated 'a'", s, n, bound);
    memset(s, ' ', n);
    time_one(f.v, "repeated ' '", s, n, bound);
    for (size_t i = 0; i + 2 <= n; i += 2) memcpy(s + i, "\xC3\xA9", 2); /* é */
    time_one(f.v, "repeated 'é'", s, n, bound);
    free(s);
    char path[PATH_LEN];
    size_t tn = 0;
    char *text = lm_test_read_file(lm_test_shared_path(path, sizeof path, "eval/tinyshakespeare.txt"), &tn);
    assert_non_null(text);
    time_one(f.v, "tinyshakespeare (first 100 KB)", text, LM_MIN(tn, (size_t)100000), bound);
    free(text);
    close_vocab(&f);
}

static void test_buffer_too_small(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    const char *s = "Hello world";
    int32_t out[8];
    /* "▁Hello" "▁world" with BOS = 3 tokens */
    assert_int_equal(lm_tokenize(f.v, s, strlen(s), out, 0, true, false), -3);
    assert_int_equal(lm_tokenize(f.v, s, strlen(s), out, 2, true, false), -3);
    assert_int_equal(lm_tokenize(f.v, s, strlen(s), out, 3, true, false), 3);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 15043);
    assert_int_equal(out[2], 3186);
    char buf[16];
    assert_int_equal(lm_detokenize(f.v, out + 1, 2, buf, 5, false, false), -11);
    assert_int_equal(lm_detokenize(f.v, out + 1, 2, buf, 11, false, false), 11);
    assert_memory_equal(buf, "Hello world", 11);
    assert_int_equal(lm_token_to_piece(f.v, 15043, buf, 3, 0, false), -6); /* " Hello" */
    assert_int_equal(lm_token_to_piece(f.v, 15043, buf, 6, 0, false), 6);
    assert_memory_equal(buf, " Hello", 6);
    close_vocab(&f);
}

static void test_token_to_piece(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    char buf[64];
    assert_int_equal(lm_token_to_piece(f.v, 15043, buf, 64, 1, false), 5); /* lstrip 1: "Hello" */
    assert_memory_equal(buf, "Hello", 5);
    assert_int_equal(lm_token_to_piece(f.v, 259, buf, 64, 0, false), 2); /* "▁▁" */
    assert_memory_equal(buf, "  ", 2);
    assert_int_equal(lm_token_to_piece(f.v, 259, buf, 64, 1, false), 1);
    assert_int_equal(lm_token_to_piece(f.v, 259, buf, 64, 5, false), 0);
    assert_int_equal(lm_token_to_piece(f.v, 13, buf, 64, 0, false), 1); /* <0x0A> */
    assert_int_equal(buf[0], '\n');
    assert_int_equal(lm_token_to_piece(f.v, 2, buf, 64, 0, false), 0); /* control hidden */
    assert_int_equal(lm_token_to_piece(f.v, 2, buf, 64, 0, true), 4);
    assert_memory_equal(buf, "</s>", 4);
    assert_int_equal(lm_token_to_piece(f.v, 0, buf, 64, 0, false), 0); /* <unk> hidden */
    assert_int_equal(lm_token_to_piece(f.v, 0, buf, 64, 0, true), 5);
    assert_int_equal(lm_token_to_piece(f.v, -1, buf, 64, 0, true), 0);
    assert_int_equal(lm_token_to_piece(f.v, 32000, buf, 64, 0, true), 0);
    assert_int_equal(lm_token_to_piece(f.v, 15043, NULL, 0, 0, false), -6);
    assert_string_equal(lm_vocab_token_text(f.v, 15043), "\xE2\x96\x81Hello");
    assert_null(lm_vocab_token_text(f.v, 32000));

    /* detokenize: the first piece loses the tokenizer's space; remove_special drops BOS (and then,
     * as llama.cpp, keeps the space) */
    int32_t ids[] = {1, 15043, 3186, 2};
    int32_t dn;
    char *t = detok(f.v, ids + 1, 2, false, false, &dn);
    assert_string_equal(t, "Hello world");
    free(t);
    t = detok(f.v, ids, 4, false, false, &dn); /* BOS renders empty, but took the strip */
    assert_string_equal(t, " Hello world");
    free(t);
    t = detok(f.v, ids, 4, true, false, &dn); /* add_eos is false: EOS is not removed (and hidden) */
    assert_string_equal(t, " Hello world");
    free(t);
    t = detok(f.v, ids, 4, false, true, &dn);
    assert_string_equal(t, "<s> Hello world</s>");
    free(t);
    t = detok(f.v, ids, 4, true, true, &dn);
    assert_string_equal(t, " Hello world</s>");
    free(t);
    close_vocab(&f);
}

static void test_public_api(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("fixtures/vocab32k/fx-spm32k-Q8_0.gguf");
    llamita_model m;
    memset(&m, 0, sizeof m);
    m.vocab = f.v;
    assert_int_equal(llamita_token_bos(&m), 1);
    assert_int_equal(llamita_token_eos(&m), 2);
    assert_true(llamita_token_is_eog(&m, 2));
    assert_false(llamita_token_is_eog(&m, 1));
    assert_false(llamita_token_is_eog(&m, -5));
    assert_true(llamita_add_bos(&m));
    assert_false(llamita_add_eos(&m));
    assert_string_equal(llamita_token_get_text(&m, 1), "<s>");
    assert_string_equal(llamita_token_get_text(&m, 13), "<0x0A>");
    assert_null(llamita_token_get_text(&m, 40000));
    llamita_token out[16];
    assert_int_equal(llamita_tokenize(&m, "Hello world", -1, out, 16, true, false), 3);
    assert_int_equal(out[1], 15043);
    assert_int_equal(llamita_tokenize(&m, "Hello world", 5, out, 16, false, false), 1);
    assert_int_equal(llamita_tokenize(&m, NULL, -1, out, 16, false, false), INT32_MIN);
    assert_int_equal(llamita_tokenize(NULL, "x", -1, out, 16, false, false), INT32_MIN);
    char buf[32];
    assert_int_equal(llamita_token_to_piece(&m, 15043, buf, 32, 0, false), 6);
    assert_int_equal(llamita_detokenize(&m, out, 1, buf, 32, false, false), 5);
    assert_memory_equal(buf, "Hello", 5);
    assert_int_equal(llamita_detokenize(NULL, out, 1, buf, 32, false, false), INT32_MIN);
    assert_int_equal(llamita_token_bos(NULL), LLAMITA_TOKEN_NULL);
    close_vocab(&f);
}

static void test_utf8_complete_len(void **state) {
    (void)state;
    static const char *const seqs[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\xA6\x99"};
    char buf[16];
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(seqs[k]);
        for (size_t cut = 1; cut < l; cut++) { /* "ab" + a partial sequence: hold it back */
            memcpy(buf, "ab", 2);
            memcpy(buf + 2, seqs[k], cut);
            assert_int_equal(llamita_utf8_complete_len(buf, 2 + cut), 2);
        }
        memcpy(buf + 2, seqs[k], l);
        assert_int_equal(llamita_utf8_complete_len(buf, 2 + l), 2 + l);
    }
    assert_int_equal(llamita_utf8_complete_len("", 0), 0);
    assert_int_equal(llamita_utf8_complete_len(NULL, 3), 0);
    assert_int_equal(llamita_utf8_complete_len("abc", 3), 3);
    assert_int_equal(llamita_utf8_complete_len("\xF0", 1), 0);
    /* invalid bytes count as complete: stray continuations, 0xFF, 0xC0, overlong E0 80, surrogate
     * ED A0, F4 90 (> U+10FFFF), a lead byte followed by a non-continuation */
    assert_int_equal(llamita_utf8_complete_len("a\x80", 2), 2);
    assert_int_equal(llamita_utf8_complete_len("\x80\x80\x80\x80", 4), 4);
    assert_int_equal(llamita_utf8_complete_len("a\xFF", 2), 2);
    assert_int_equal(llamita_utf8_complete_len("a\xC0", 2), 2);
    assert_int_equal(llamita_utf8_complete_len("a\xE0\x80", 3), 3);
    assert_int_equal(llamita_utf8_complete_len("a\xED\xA0", 3), 3);
    assert_int_equal(llamita_utf8_complete_len("a\xF4\x90", 3), 3);
    assert_int_equal(llamita_utf8_complete_len("a\xE2" "b", 3), 3);
    assert_int_equal(llamita_utf8_complete_len("\xC3\xA9\xC3\xA9\x80", 5), 5);
}

/* ---------------------------------------------------------------------------------------------
 * random texts against a naive reference: the obvious O(n^2) loop "merge the best adjacent pair
 * (highest score, leftmost on ties) while one is a token", written independently of vocab.c's heap
 * version, on tokens and scores read straight from the GGUF
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t n;
    int32_t id;
} ref_tok;

static int ref_cmp(const void *a, const void *b) {
    const ref_tok *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    return (x->n > y->n) - (x->n < y->n);
}

static int32_t ref_find(const ref_tok *sorted, int32_t n, const char *s, size_t len) {
    ref_tok key = {s, len, -1};
    const ref_tok *r = bsearch(&key, sorted, (size_t)n, sizeof *sorted, ref_cmp);
    return r ? r->id : -1;
}

/* Reference tokenization of plain text (no special tokens, no BOS) into out; returns the count. */
static int32_t ref_tokenize(const ref_tok *sorted, int32_t n_tok, const float *scores, const char *text,
                            size_t len, int32_t *out) {
    char buf[4096];
    size_t m = 0;
    memcpy(buf, "\xE2\x96\x81", 3);
    m = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            buf[m++] = text[i];
        }
    }
    size_t st[4096], ln[4096], ns = 0;
    for (size_t o = 0; o < m; ns++) {
        unsigned c = (unsigned char)buf[o];
        size_t l = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (l > m - o) l = m - o;
        st[ns] = o;
        ln[ns] = l;
        o += l;
    }
    for (;;) {
        size_t best = SIZE_MAX;
        float best_score = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            int32_t id = ref_find(sorted, n_tok, buf + st[i], ln[i] + ln[i + 1]);
            if (id >= 0 && (best == SIZE_MAX || scores[id] > best_score)) {
                best = i;
                best_score = scores[id];
            }
        }
        if (best == SIZE_MAX) break;
        ln[best] += ln[best + 1];
        memmove(st + best + 1, st + best + 2, (ns - best - 2) * sizeof st[0]);
        memmove(ln + best + 1, ln + best + 2, (ns - best - 2) * sizeof ln[0]);
        ns--;
    }
    int32_t n = 0;
    for (size_t i = 0; i < ns; i++) {
        int32_t id = ref_find(sorted, n_tok, buf + st[i], ln[i]);
        if (id >= 0) {
            out[n++] = id;
            continue;
        }
        for (size_t j = 0; j < ln[i]; j++) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", (unsigned char)buf[st[i] + j]);
            out[n++] = ref_find(sorted, n_tok, hex, 6);
        }
    }
    return n;
}

static uint64_t rng_next(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_random_vs_naive(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    vfile f = open_vocab("vocab/ggml-vocab-llama-spm.gguf");
    int64_t ti = lm_gguf_find_key(f.g, "tokenizer.ggml.tokens");
    int64_t si = lm_gguf_find_key(f.g, "tokenizer.ggml.scores");
    assert_true(ti >= 0 && si >= 0);
    int32_t n_tok = (int32_t)lm_gguf_arr_n(f.g, ti);
    ref_tok *sorted = malloc(sizeof *sorted * (size_t)n_tok);
    float *scores = malloc(sizeof *scores * (size_t)n_tok);
    memcpy(scores, lm_gguf_arr_data(f.g, si), sizeof *scores * (size_t)n_tok);
    for (int32_t i = 0; i < n_tok; i++) {
        lm_gguf_str t = lm_gguf_arr_str(f.g, ti, (uint64_t)i);
        sorted[i] = (ref_tok){t.data, (size_t)t.len, i};
    }
    qsort(sorted, (size_t)n_tok, sizeof *sorted, ref_cmp);

    static const char *const extra[] = {" ", "  ", "\n", "\t", "\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC",
                                        "\xF0\x9F\xA6\x99", "\xE2\x96\x81", "'", ".", "3", "\xFF", "\x80",
                                        "aaaaaaa", "!!!!!", "    ", "\xC3\xA9\xC3\xA9\xC3\xA9"};
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    const int n_cases = LM_SANITIZED ? 300 : 2000;
    int n_bad = 0;
    size_t total_bytes = 0;
    for (int c = 0; c < n_cases; c++) {
        char text[512];
        size_t len = 0;
        int parts = 1 + (int)(rng_next(&rng) % 12);
        for (int k = 0; k < parts; k++) {
            const char *piece;
            size_t pl;
            char tmp[128];
            if (rng_next(&rng) % 3 == 0) {
                piece = extra[rng_next(&rng) % (sizeof extra / sizeof extra[0])];
                pl = strlen(piece);
            } else { /* a vocabulary piece, "▁" as a space */
                int32_t id = 3 + 256 + (int32_t)(rng_next(&rng) % (uint64_t)(n_tok - 259));
                const char *t = lm_vocab_token_text(f.v, id);
                pl = 0;
                for (size_t i = 0; t[i] && pl < 100;) {
                    if (memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
                        tmp[pl++] = ' ';
                        i += 3;
                    } else {
                        tmp[pl++] = t[i++];
                    }
                }
                piece = tmp;
            }
            if (len + pl >= 400) break;
            memcpy(text + len, piece, pl);
            len += pl;
        }
        total_bytes += len;
        int32_t want[4096], got[4096];
        int32_t nw = ref_tokenize(sorted, n_tok, scores, text, len, want);
        int32_t ng = lm_tokenize(f.v, text, len, got, 4096, false, false);
        if (!ids_equal(want, nw, got, ng)) {
            if (n_bad++ < 5) {
                fprintf(stderr, "  mismatch on '%.*s'\n", (int)len, text);
                print_ids("reference", want, nw);
                print_ids("got", got, ng);
            }
        }
    }
    fprintf(stderr, "%d random texts (%zu bytes): %d differ from the naive reference\n", n_cases, total_bytes,
            n_bad);
    assert_int_equal(n_bad, 0);
    free(sorted);
    free(scores);
    close_vocab(&f);
}

/* ---------------------------------------------------------------------------------------------
 * hand-made vocabularies
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *model; /* NULL: key absent */
    const char *const *tokens;
    int n_tokens;
    const float *scores;  /* NULL: absent */
    int n_scores;
    const int32_t *types; /* NULL: absent */
    int n_types;
} mini_spec;

/* Writes a tokenizer-only GGUF; extra(w) adds keys. Returns the path (static buffer). */
static const char *write_mini(const char *name, const mini_spec *sp, void (*extra)(lm_gguf_writer *)) {
    static char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s.gguf", lm_test_tmpdir(), name);
    lm_gguf_writer *w = lm_gguf_writer_new();
    assert_non_null(w);
    if (sp->model) lm_gguf_writer_set_str(w, "tokenizer.ggml.model", sp->model);
    lm_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", sp->tokens, (uint64_t)sp->n_tokens);
    if (sp->scores) lm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LM_GGUF_FLOAT32, sp->scores, (uint64_t)sp->n_scores);
    if (sp->types) lm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, sp->types, (uint64_t)sp->n_types);
    if (extra) extra(w);
    char err[512] = "";
    if (!lm_gguf_writer_write(w, path, err, sizeof err)) fail_msg("write %s: %s", path, err);
    lm_gguf_writer_free(w);
    return path;
}

/* Loads path's vocabulary; on failure returns NULL with the message in err. */
static lm_vocab *load_mini(const char *path, lm_gguf **g, char *err, size_t err_size) {
    *g = lm_gguf_open(path, err, err_size);
    if (!*g) fail_msg("open %s: %s", path, err);
    return lm_vocab_load(*g, err, err_size);
}

/* <unk> <s> </s> then pieces; no byte tokens */
static const char *const mini_tokens[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab",
                                          "\xE2\x96\x81" "a", "\xE2\x96\x81" "ab", "", "<tag>"};
static const float mini_scores[] = {0, 0, 0, -1, -2, -2, -3, -4, -5, -9, -9};
static const int32_t mini_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4};
#define MINI_N 11

static void extra_bad_ids(lm_gguf_writer *w) {
    lm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 0xFFFFFFFFu); /* ignored: keeps 1 */
    lm_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
    lm_gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", 4); /* an int32 id is fine */
    lm_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", true);
    lm_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
}

static void extra_str_id(lm_gguf_writer *w) { lm_gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", "1"); }

static void test_mini_vocabs(void **state) {
    (void)state;
    char err[512];
    lm_gguf *g;
    lm_vocab *v;

    /* a normal small vocabulary: merges by score, no byte tokens -> UNK, user-defined token parsed
     * even without parse_special, empty token renamed as llama.cpp does */
    mini_spec sp = {"llama", mini_tokens, MINI_N, mini_scores, MINI_N, mini_types, MINI_N};
    v = load_mini(write_mini("ok", &sp, NULL), &g, err, sizeof err);
    if (!v) fail_msg("%s", err);
    assert_string_equal(lm_vocab_token_text(v, 9), "[EMPTY_9]");
    int32_t out[16];
    /* " ab" -> "▁ab" is a token; "ab" -> "▁" + "ab"? no: "▁a"(-4) vs "ab"(-3): "ab" merges first,
     * then "▁"+"ab" = "▁ab" (-5) */
    assert_int_equal(lm_tokenize(v, "ab", 2, out, 16, false, false), 1);
    assert_int_equal(out[0], 8);
    /* "c" is unknown and has no byte token: UNK */
    assert_int_equal(lm_tokenize(v, "ac", 2, out, 16, false, false), 2);
    assert_int_equal(out[0], 7);
    assert_int_equal(out[1], 0);
    /* user-defined "<tag>" splits the text without parse_special; the text after it gets "▁" */
    assert_int_equal(lm_tokenize(v, "a<tag>a", 7, out, 16, false, false), 3);
    assert_int_equal(out[0], 7);
    assert_int_equal(out[1], 10);
    assert_int_equal(out[2], 7);
    char buf[16];
    assert_int_equal(lm_token_to_piece(v, 10, buf, 16, 0, false), 5); /* user-defined: shown */
    lm_vocab_free(v);
    lm_gguf_close(g);

    /* no scores / types: defaults (all NORMAL, score 0), still loads */
    mini_spec sp2 = {"llama", mini_tokens, MINI_N, NULL, 0, NULL, 0};
    v = load_mini(write_mini("noscores", &sp2, NULL), &g, err, sizeof err);
    if (!v) fail_msg("%s", err);
    assert_int_equal(lm_vocab_token_type(v, 1), LM_TOKEN_NORMAL);
    lm_vocab_free(v);
    lm_gguf_close(g);

    /* bad special ids are ignored (defaults kept), int32 ids accepted, add_eos, no space prefix */
    v = load_mini(write_mini("badids", &sp, extra_bad_ids), &g, err, sizeof err);
    if (!v) fail_msg("%s", err);
    assert_int_equal(lm_vocab_bos(v), 1);
    assert_int_equal(lm_vocab_eos(v), 4);
    assert_true(lm_vocab_is_eog(v, 4));
    assert_false(lm_vocab_is_eog(v, 2));
    assert_int_equal(lm_tokenize(v, "ab", 2, out, 16, true, false), 3); /* BOS "ab" EOS */
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 6);
    assert_int_equal(out[2], 4);
    assert_int_equal(lm_detokenize(v, out + 1, 1, buf, 16, false, false), 2); /* no strip */
    lm_vocab_free(v);
    lm_gguf_close(g);

    /* errors */
    struct {
        const char *name;
        mini_spec sp;
        void (*extra)(lm_gguf_writer *);
        const char *want;
    } bad[] = {
        {"gpt2", {"gpt2", mini_tokens, MINI_N, NULL, 0, NULL, 0}, NULL, "unsupported tokenizer model 'gpt2'"},
        {"nomodel", {NULL, mini_tokens, MINI_N, NULL, 0, NULL, 0}, NULL, "tokenizer.ggml.model is missing"},
        {"scoresn", {"llama", mini_tokens, MINI_N, mini_scores, 5, NULL, 0}, NULL, "tokenizer.ggml.scores has 5 entries"},
        {"typesn", {"llama", mini_tokens, MINI_N, NULL, 0, mini_types, 3}, NULL, "tokenizer.ggml.token_type has 3 entries"},
        {"empty", {"llama", mini_tokens, 0, NULL, 0, NULL, 0}, NULL, "tokenizer.ggml.tokens has 0 entries"},
        {"strid", {"llama", mini_tokens, MINI_N, NULL, 0, NULL, 0}, extra_str_id, "tokenizer.ggml.bos_token_id"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        err[0] = 0;
        v = load_mini(write_mini(bad[k].name, &bad[k].sp, bad[k].extra), &g, err, sizeof err);
        assert_null(v);
        fprintf(stderr, "  %s: %s\n", bad[k].name, err);
        if (!strstr(err, bad[k].want)) fail_msg("%s: '%s' lacks '%s'", bad[k].name, err, bad[k].want);
        lm_gguf_close(g);
    }
    static const char *const dup_tokens[] = {"<unk>", "a", "b", "a"};
    mini_spec dsp = {"llama", dup_tokens, 4, NULL, 0, NULL, 0};
    v = load_mini(write_mini("dup", &dsp, NULL), &g, err, sizeof err);
    assert_null(v);
    fprintf(stderr, "  dup: %s\n", err);
    assert_non_null(strstr(err, "duplicates token 1"));
    lm_gguf_close(g);
    assert_null(lm_vocab_load(NULL, err, sizeof err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_cases),       cmocka_unit_test(test_other_vocabs),
        cmocka_unit_test(test_fixture_prompts), cmocka_unit_test(test_parse_special),
        cmocka_unit_test(test_byte_fallback),   cmocka_unit_test(test_empty_and_nul),
        cmocka_unit_test(test_long_inputs),     cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_token_to_piece),  cmocka_unit_test(test_public_api),
        cmocka_unit_test(test_utf8_complete_len), cmocka_unit_test(test_random_vs_naive),
        cmocka_unit_test(test_mini_vocabs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
