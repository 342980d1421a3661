/* Tests of src/evaldata.c: the benchmark data loaders of `llamita eval`.
 *  - every file in ../shared/eval loads for its task with the expected item count; spot checks of exact
 *    texts read by eye from the files;
 *  - every item of every file equals what an independent Python reader (tests/ref/evaldata_np.py)
 *    builds from the same file;
 *  - PIQA (llm-foundry vs original + labels) and OpenBookQA (llm-foundry vs TSV) give the same items;
 *  - formats not in ../shared (WinoGrande original, HellaSwag HF jsonl), CRLF, BOM, blank lines;
 *  - broken inputs: NULL and a message naming the file, the line and what is wrong;
 *  - --limit and lm_eval_find_data. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "evaldata.h"

/* ---------------------------------------------------------------------------------------------- */

static char *shared_eval(char *buf, size_t n, const char *name) {
    char rel[512];
    snprintf(rel, sizeof rel, "eval/%s", name);
    return (char *)lm_test_shared_path(buf, n, rel);
}

static lm_eval_set *load_shared(lm_eval_task task, const char *name, int32_t limit) {
    char path[2200], err[512] = "";
    shared_eval(path, sizeof path, name);
    lm_eval_set *s = lm_eval_load(task, path, NULL, limit, err, sizeof err);
    if (!s) fprintf(stderr, "load %s: %s\n", name, err);
    assert_non_null(s);
    return s;
}

/* writes `text` to a file named `name` in the test temp dir; returns its path (static buffer per slot) */
static const char *write_tmp_n(const char *name, const char *text, size_t len) {
    static char paths[4][4200];
    static int slot;
    char *p = paths[slot++ & 3];
    snprintf(p, 4200, "%s/%s", lm_test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    return p;
}

static const char *write_tmp(const char *name, const char *text) { return write_tmp_n(name, text, strlen(text)); }

static void check_item(const lm_eval_item *it, int line, int gold, int n, const char *const *ctx,
                       const char *const *cont) {
    assert_int_equal(it->line, line);
    assert_int_equal(it->gold, gold);
    assert_int_equal(it->n_choices, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(it->ctx[i], ctx[i]);
        assert_string_equal(it->cont[i], cont[i]);
    }
}

/* ---------------------------------------------------------------------------------------------- */

static void test_task_names(void **state) {
    (void)state;
    for (int t = 0; t < LM_TASK_COUNT; t++) assert_int_equal(lm_eval_task_from_name(lm_eval_task_name(t)), t);
    assert_int_equal(lm_eval_task_from_name("arc"), -1);
    assert_int_equal(lm_eval_task_from_name(""), -1);
    assert_int_equal(lm_eval_task_from_name(NULL), -1);
    assert_string_equal(lm_eval_task_name(LM_TASK_ARC_CHALLENGE), "arc_challenge");
}

/* The files of ../shared/eval with their task and item count (count = the data's, see SOURCE.txt /
 * `wc -l`: one item per line, HellaSwag 6 lines per task). */
static const struct shared_file {
    lm_eval_task task;
    const char *name;
    int32_t n_items;
    const char *format;
} k_files[] = {
    {LM_TASK_HELLASWAG, "hellaswag_val_full.txt", 10042, "hellaswag txt"},
    {LM_TASK_OPENBOOKQA, "llmfoundry_openbook_qa.jsonl", 500, "llm-foundry jsonl"},
    {LM_TASK_OPENBOOKQA, "openbookqa_main_test.tsv", 500, "obqa tsv"},
    {LM_TASK_OPENBOOKQA, "openbookqa_main_dev.tsv", 500, "obqa tsv"},
    {LM_TASK_WINOGRANDE, "llmfoundry_winogrande.jsonl", 1267, "llm-foundry jsonl"},
    {LM_TASK_ARC_CHALLENGE, "llmfoundry_arc_challenge.jsonl", 1172, "llm-foundry jsonl"},
    {LM_TASK_ARC_EASY, "llmfoundry_arc_easy.jsonl", 2376, "llm-foundry jsonl"},
    {LM_TASK_BOOLQ, "llmfoundry_boolq.jsonl", 3270, "llm-foundry jsonl"},
    {LM_TASK_PIQA, "llmfoundry_piqa.jsonl", 1838, "llm-foundry jsonl"},
    {LM_TASK_PIQA, "piqa_valid.jsonl", 1838, "piqa jsonl"},
    {LM_TASK_LAMBADA, "llmfoundry_lambada_openai.jsonl", 5153, "llm-foundry jsonl"},
};
#define N_FILES (sizeof k_files / sizeof k_files[0])

static void test_shared_counts(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    for (size_t f = 0; f < N_FILES; f++) {
        lm_eval_set *s = load_shared(k_files[f].task, k_files[f].name, 0);
        int64_t bytes = 0, shared_ctx = 0;
        for (int32_t i = 0; i < s->n_items; i++) {
            const lm_eval_item *it = &s->items[i];
            assert_true(it->n_choices >= 1);
            assert_true(it->gold >= 0 && it->gold < it->n_choices);
            assert_true(it->line >= 1);
            if (i) assert_true(it->line > s->items[i - 1].line);
            for (int j = 0; j < it->n_choices; j++) {
                assert_non_null(it->ctx[j]);
                assert_true(strlen(it->cont[j]) > 1);
                assert_true(it->cont[j][0] == ' ');
                bytes += (int64_t)strlen(it->ctx[j]) + (int64_t)strlen(it->cont[j]);
                shared_ctx += (it->ctx[j] == it->ctx[0]);
            }
        }
        printf("  %-14s %-32s %-18s n=%5d  (%lld text bytes, %lld choices with the first choice's context)\n",
               lm_eval_task_name(s->task), k_files[f].name, s->format, (int)s->n_items, (long long)bytes,
               (long long)shared_ctx);
        assert_int_equal(s->n_items, k_files[f].n_items);
        assert_string_equal(s->format, k_files[f].format);
        assert_non_null(strstr(s->source, k_files[f].name));
        lm_eval_set_free(s);
    }
}

/* exact texts of a few items, read by eye from the files */
static void test_shared_spot(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    lm_eval_set *s = load_shared(LM_TASK_HELLASWAG, "hellaswag_val_full.txt", 0);
    {
        const char *c = "Roof shingle removal: A man is sitting on a roof. he";
        const char *ctx[4] = {c, c, c, c};
        const char *cont[4] = {" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                               " is holding a rubik's cube.", " starts pulling up roofing on a roof."};
        check_item(&s->items[0], 1, 3, 4, ctx, cont);
        assert_int_equal(s->items[1].line, 7);
        assert_int_equal(s->items[10041].line, 60247);
    }
    lm_eval_set_free(s);

    s = load_shared(LM_TASK_ARC_EASY, "llmfoundry_arc_easy.jsonl", 0);
    {
        const char *c = "Question: Which piece of safety equipment is used to keep mold spores from entering the "
                        "respiratory system?\nAnswer:";
        const char *ctx[4] = {c, c, c, c};
        const char *cont[4] = {" safety goggles", " breathing mask", " rubber gloves", " lead apron"};
        check_item(&s->items[1], 2, 1, 4, ctx, cont);
    }
    lm_eval_set_free(s);

    s = load_shared(LM_TASK_BOOLQ, "llmfoundry_boolq.jsonl", 0);
    {
        const lm_eval_item *it = &s->items[0];
        assert_int_equal(it->n_choices, 2);
        assert_int_equal(it->gold, 0);
        assert_string_equal(it->cont[0], " no");
        assert_string_equal(it->cont[1], " yes");
        assert_true(!strncmp(it->ctx[0], "All biomass goes through at least some of these steps:", 54));
        const char *tail = "ethanol from corn uses much less petroleum than producing gasoline.\nQuestion: does "
                           "ethanol take more energy make that produces?\nAnswer:";
        size_t n = strlen(it->ctx[0]), tn = strlen(tail);
        assert_true(n > tn);
        assert_string_equal(it->ctx[0] + n - tn, tail);
        assert_string_equal(it->ctx[1], it->ctx[0]);
    }
    lm_eval_set_free(s);

    s = load_shared(LM_TASK_WINOGRANDE, "llmfoundry_winogrande.jsonl", 0);
    {
        const char *ctx[2] = {"Sarah was a much better surgeon than Maria so Sarah",
                              "Sarah was a much better surgeon than Maria so Maria"};
        const char *cont[2] = {" always got the easier cases.", " always got the easier cases."};
        check_item(&s->items[0], 1, 1, 2, ctx, cont);
    }
    lm_eval_set_free(s);

    s = load_shared(LM_TASK_PIQA, "piqa_valid.jsonl", 0);
    {
        const char *c = "Question: dresser\nAnswer:";
        const char *ctx[2] = {c, c};
        const char *cont[2] = {" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "};
        check_item(&s->items[1], 2, 1, 2, ctx, cont); /* original: trailing spaces kept */
    }
    lm_eval_set_free(s);

    s = load_shared(LM_TASK_OPENBOOKQA, "openbookqa_main_test.tsv", 0);
    {
        const char *c = "There is most likely going to be fog around:";
        const char *ctx[4] = {c, c, c, c};
        const char *cont[4] = {" a marsh", " a tundra", " the plains", " a desert"};
        check_item(&s->items[1], 3, 0, 4, ctx, cont); /* line 1 is the header */
    }
    lm_eval_set_free(s);

    s = load_shared(LM_TASK_LAMBADA, "llmfoundry_lambada_openai.jsonl", 0);
    {
        const lm_eval_item *it = &s->items[1];
        assert_int_equal(it->n_choices, 1);
        assert_int_equal(it->gold, 0);
        assert_string_equal(it->cont[0], " Shane");
        const char *tail = "\"I can make it there on my own,";
        size_t n = strlen(it->ctx[0]);
        assert_string_equal(it->ctx[0] + n - strlen(tail), tail);
    }
    lm_eval_set_free(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* cross-check against tests/ref/evaldata_np.py                                                     */

static const char *python_bin(void) {
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

/* Compares a loaded set against the reader's JSONL; returns the number of items compared. */
static int compare_with_python(const lm_eval_set *s, const char *path, int32_t limit) {
    char cmd[6144];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref/evaldata_np.py' '%s' '%s' --limit %d", python_bin(), LM_SOURCE_DIR,
             lm_eval_task_name(s->task), path, (int)limit);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 4096) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
    }
    out[len] = 0;
    int rc = pclose(p);
    if (rc != 0) fprintf(stderr, "%s failed (%d)\n", cmd, rc);
    assert_int_equal(rc, 0);
    int n = 0;
    for (char *line = out, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        assert_true(n < s->n_items);
        const lm_eval_item *it = &s->items[n];
        assert_int_equal(it->line, cJSON_GetObjectItem(o, "line")->valueint);
        assert_int_equal(it->gold, cJSON_GetObjectItem(o, "gold")->valueint);
        cJSON *ctx = cJSON_GetObjectItem(o, "ctx"), *cont = cJSON_GetObjectItem(o, "cont");
        assert_int_equal(it->n_choices, cJSON_GetArraySize(ctx));
        assert_int_equal(it->n_choices, cJSON_GetArraySize(cont));
        for (int j = 0; j < it->n_choices; j++) {
            const char *a = cJSON_GetArrayItem(ctx, j)->valuestring, *b = cJSON_GetArrayItem(cont, j)->valuestring;
            if (strcmp(it->ctx[j], a) || strcmp(it->cont[j], b))
                fprintf(stderr, "%s line %d choice %d:\n C  [%s]|[%s]\n py [%s]|[%s]\n", path, it->line, j, it->ctx[j],
                        it->cont[j], a, b);
            assert_string_equal(it->ctx[j], a);
            assert_string_equal(it->cont[j], b);
        }
        cJSON_Delete(o);
        n++;
    }
    free(out);
    assert_int_equal(n, s->n_items);
    return n;
}

static void test_python_crosscheck(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    if (access(python_bin(), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s: no %s\n", __func__, python_bin());
        skip();
    }
    int total = 0;
    for (size_t f = 0; f < N_FILES; f++) {
        char path[2200];
        shared_eval(path, sizeof path, k_files[f].name);
        lm_eval_set *s = load_shared(k_files[f].task, k_files[f].name, 0);
        int n = compare_with_python(s, path, 0);
        printf("  %-32s %5d items identical to tests/ref/evaldata_np.py\n", k_files[f].name, n);
        total += n;
        lm_eval_set_free(s);
    }
    printf("  total %d items identical\n", total);
}

/* ---------------------------------------------------------------------------------------------- */

/* length without leading/trailing spaces */
static const char *trim(const char *s, size_t *n) {
    size_t k = strlen(s);
    while (k && s[k - 1] == ' ') k--;
    while (k && *s == ' ') s++, k--;
    *n = k;
    return s;
}

static void test_piqa_two_formats(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    lm_eval_set *a = load_shared(LM_TASK_PIQA, "llmfoundry_piqa.jsonl", 0);
    lm_eval_set *b = load_shared(LM_TASK_PIQA, "piqa_valid.jsonl", 0);
    assert_int_equal(a->n_items, b->n_items);
    int items_ws = 0, conts_ws = 0, items_other = 0;
    for (int32_t i = 0; i < a->n_items; i++) {
        const lm_eval_item *x = &a->items[i], *y = &b->items[i];
        assert_int_equal(x->line, y->line);
        assert_int_equal(x->n_choices, y->n_choices);
        bool ws = false, other = x->gold != y->gold;
        for (int j = 0; j < x->n_choices; j++) {
            other |= strcmp(x->ctx[j], y->ctx[j]) != 0;
            if (strcmp(x->cont[j], y->cont[j])) {
                size_t nx, ny;
                const char *tx = trim(x->cont[j], &nx), *ty = trim(y->cont[j], &ny);
                if (nx == ny && !memcmp(tx, ty, nx)) {
                    ws = true;
                    conts_ws++;
                } else
                    other = true;
            }
        }
        items_ws += ws;
        items_other += other;
    }
    printf("  PIQA llm-foundry vs valid.jsonl+labels: %d items; %d differ only by leading/trailing spaces of a "
           "solution (%d solutions; llm-foundry stripped them), %d differ otherwise\n",
           (int)a->n_items, items_ws, conts_ws, items_other);
    assert_int_equal(items_other, 0);
    assert_true(items_ws < a->n_items / 10); /* whitespace only in a minority: the formats really match */
    lm_eval_set_free(a);
    lm_eval_set_free(b);
}

static void test_obqa_two_formats(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    lm_eval_set *a = load_shared(LM_TASK_OPENBOOKQA, "llmfoundry_openbook_qa.jsonl", 0);
    lm_eval_set *b = load_shared(LM_TASK_OPENBOOKQA, "openbookqa_main_test.tsv", 0);
    assert_int_equal(a->n_items, b->n_items);
    int differ = 0;
    for (int32_t i = 0; i < a->n_items; i++) {
        const lm_eval_item *x = &a->items[i], *y = &b->items[i];
        assert_int_equal(x->line + 1, y->line); /* the TSV has a header line */
        bool d = x->gold != y->gold || x->n_choices != y->n_choices;
        for (int j = 0; !d && j < x->n_choices; j++) d = strcmp(x->ctx[j], y->ctx[j]) || strcmp(x->cont[j], y->cont[j]);
        differ += d;
    }
    printf("  OpenBookQA llm-foundry vs TSV: %d items, %d differ\n", (int)a->n_items, differ);
    assert_int_equal(differ, 0);
    lm_eval_set_free(a);
    lm_eval_set_free(b);
}

/* ---------------------------------------------------------------------------------------------- */
/* formats and line-ending variants written here                                                    */

static void test_other_formats(void **state) {
    (void)state;
    char err[512];
    /* WinoGrande's original jsonl (harness: split the sentence at "_") */
    const char *p = write_tmp(
        "wino_orig.jsonl", "{\"sentence\": \"Sarah was a much better surgeon than Maria so _ always got the "
                           "harder cases. \", \"option1\": \"Sarah\", \"option2\": \"Maria\", \"answer\": \"1\"}\n\n");
    lm_eval_set *s = lm_eval_load(LM_TASK_WINOGRANDE, p, NULL, 0, err, sizeof err);
    assert_non_null(s);
    assert_string_equal(s->format, "winogrande jsonl");
    {
        const char *ctx[2] = {"Sarah was a much better surgeon than Maria so Sarah",
                              "Sarah was a much better surgeon than Maria so Maria"};
        const char *cont[2] = {" always got the harder cases.", " always got the harder cases."};
        check_item(&s->items[0], 1, 0, 2, ctx, cont);
    }
    lm_eval_set_free(s);

    /* HellaSwag HF jsonl: preprocess + capitalize (lower-cases the rest of ctx_b) */
    p = write_tmp("hs.jsonl",
                  "{\"activity_label\": \"Home and Garden\", \"ctx_a\": \"[header] How to grow basil [title] Pick a "
                  "pot.\", \"ctx_b\": \"then Fill It\", \"endings\": [\"with  soil [step] now.\", \" water it \"], "
                  "\"label\": \"1\"}\r\n");
    s = lm_eval_load(LM_TASK_HELLASWAG, p, NULL, 0, err, sizeof err);
    if (!s) fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    assert_string_equal(s->format, "hellaswag jsonl");
    {
        const char *c = "Home and Garden: How to grow basil. Pick a pot. Then fill it";
        const char *ctx[2] = {c, c};
        const char *cont[2] = {" with soil now.", " water it"};
        check_item(&s->items[0], 1, 1, 2, ctx, cont);
    }
    lm_eval_set_free(s);

    /* CRLF, a BOM, blank lines in the middle and at the end of a JSONL; CRLF hellaswag txt */
    p = write_tmp("crlf.jsonl",
                  "\xEF\xBB\xBF{\"query\": \"Question: Q1\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\r\n"
                  "\r\n"
                  "{\"query\": \"Q2?\", \"choices\": [\"c\"], \"gold\": 0}\r\n\r\n\n");
    s = lm_eval_load(LM_TASK_ARC_EASY, p, NULL, 0, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(s->n_items, 2);
    {
        const char *ctx[2] = {"Question: Q1\nAnswer:", "Question: Q1\nAnswer:"};
        const char *cont[2] = {" a", " b"};
        check_item(&s->items[0], 1, 1, 2, ctx, cont);
        const char *ctx2[1] = {"Question: Q2?\nAnswer:"};
        const char *cont2[1] = {" c"};
        check_item(&s->items[1], 3, 0, 1, ctx2, cont2);
    }
    lm_eval_set_free(s);

    p = write_tmp("hs.txt", "Ctx one, \r\n2\r\ne0\r\ne1\r\ne2\r\ne3\r\nCtx two\r\n0\r\nf0\r\nf1\r\nf2\r\nf3\r\n\r\n");
    s = lm_eval_load(LM_TASK_HELLASWAG, p, NULL, 0, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(s->n_items, 2);
    {
        const char *ctx[4] = {"Ctx one, ", "Ctx one, ", "Ctx one, ", "Ctx one, "}; /* trailing space kept */
        const char *cont[4] = {" e0", " e1", " e2", " e3"};
        check_item(&s->items[0], 1, 2, 4, ctx, cont);
        assert_int_equal(s->items[1].line, 7);
        assert_string_equal(s->items[1].cont[3], " f3");
    }
    lm_eval_set_free(s);

    /* PIQA original with an explicit labels path; TSV without a header */
    p = write_tmp("pq.jsonl", "{\"goal\": \"g\", \"sol1\": \"x\", \"sol2\": \"y\"}\n{\"goal\": \"h\", \"sol1\": \"z\", "
                              "\"sol2\": \"w\"}\n");
    const char *lab = write_tmp("my-labels.txt", "1\r\n0\r\n");
    s = lm_eval_load(LM_TASK_PIQA, p, lab, 0, err, sizeof err);
    if (!s) fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    assert_int_equal(s->items[0].gold, 1);
    assert_int_equal(s->items[1].gold, 0);
    assert_string_equal(s->items[1].ctx[1], "Question: h\nAnswer:");
    lm_eval_set_free(s);

    p = write_tmp("ob.tsv", "7-1\tStem?\t(A) one (B) two (C) three\tStem? (A) one (B) two (C) three\tC\n");
    s = lm_eval_load(LM_TASK_OPENBOOKQA, p, NULL, 0, err, sizeof err);
    assert_non_null(s);
    {
        const char *ctx[3] = {"Stem?", "Stem?", "Stem?"};
        const char *cont[3] = {" one", " two", " three"};
        check_item(&s->items[0], 1, 2, 3, ctx, cont);
    }
    lm_eval_set_free(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* broken inputs                                                                                    */

static const char k_ok_mc[] = "{\"query\": \"Question: q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n";

static const struct broken {
    lm_eval_task task;
    const char *name;
    const char *text;
    const char *labels; /* PIQA labels file text (NULL: none written) */
    int line;           /* expected ":<line>:" in the message (0: no line) */
    const char *what;   /* expected substring */
} k_broken[] = {
    {LM_TASK_ARC_EASY, "badjson.jsonl",
     "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n{\"query\": \"q\", \"choices\": [\"a\" \"b\"], \"gold\": "
     "0}\n",
     NULL, 2, "invalid JSON near column 32"},
    {LM_TASK_ARC_EASY, "trailing.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0} x\n", NULL, 1,
     "unexpected text after the JSON object"},
    {LM_TASK_ARC_EASY, "notobj.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n[1, 2]\n", NULL, 2,
     "expected a JSON object, got an array"},
    {LM_TASK_ARC_EASY, "noquery.jsonl",
     "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n{\"choices\": [\"a\"], \"gold\": 0}\n", NULL, 2,
     "missing field \"query\""},
    {LM_TASK_ARC_EASY, "nochoices.jsonl", "{\"query\": \"q\", \"gold\": 0}\n", NULL, 1, "missing field \"choices\""},
    {LM_TASK_ARC_EASY, "nogold.jsonl", "\n\n{\"query\": \"q\", \"choices\": [\"a\"]}\n", NULL, 3,
     "missing field \"gold\""},
    {LM_TASK_ARC_EASY, "querytype.jsonl", "{\"query\": 5, \"choices\": [\"a\"], \"gold\": 0}\n", NULL, 1,
     "field \"query\" is a number, expected a string"},
    {LM_TASK_ARC_EASY, "choicestype.jsonl", "{\"query\": \"q\", \"choices\": \"a\", \"gold\": 0}\n", NULL, 1,
     "field \"choices\" is a string, expected an array"},
    {LM_TASK_ARC_EASY, "choicetype.jsonl", "{\"query\": \"q\", \"choices\": [\"a\", 3], \"gold\": 0}\n", NULL, 1,
     "\"choices\"[1] is a number"},
    {LM_TASK_ARC_EASY, "goldrange.jsonl",
     "{\"query\": \"q\", \"choices\": [\"a\", \"b\", \"c\", \"d\"], \"gold\": 4}\n", NULL, 1,
     "\"gold\" is 4 but there are 4 choices"},
    {LM_TASK_ARC_EASY, "goldneg.jsonl", "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": -1}\n", NULL, 1,
     "\"gold\" is -1 but there are 2 choices"},
    {LM_TASK_ARC_EASY, "goldfrac.jsonl", "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0.5}\n", NULL, 1,
     "field \"gold\" is 0.5, expected an integer"},
    {LM_TASK_ARC_EASY, "goldstr.jsonl", "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": \"1\"}\n", NULL, 1,
     "field \"gold\" is a string, expected an integer"},
    {LM_TASK_ARC_EASY, "emptychoices.jsonl", "{\"query\": \"q\", \"choices\": [], \"gold\": 0}\n", NULL, 1,
     "field \"choices\" is an empty array"},
    {LM_TASK_ARC_EASY, "emptychoice.jsonl", "{\"query\": \"q\", \"choices\": [\"a\", \"b\", \"\"], \"gold\": 0}\n",
     NULL, 1, "empty choice 2"},
    {LM_TASK_ARC_EASY, "emptyquery.jsonl", "{\"query\": \"\", \"choices\": [\"a\"], \"gold\": 0}\n", NULL, 1,
     "field \"query\" is empty"},
    {LM_TASK_BOOLQ, "boolq3.jsonl", "{\"query\": \"q\", \"choices\": [\"no\", \"yes\", \"maybe\"], \"gold\": 0}\n",
     NULL, 1, "boolq needs 2 choices"},
    {LM_TASK_ARC_EASY, "unknown.jsonl", "{\"text\": \"q\"}\n", NULL, 1, "unrecognized item"},
    {LM_TASK_WINOGRANDE, "wrongtask.jsonl", k_ok_mc, NULL, 0, "does not fit task winogrande"},
    {LM_TASK_ARC_EASY, "wrongtask.txt", "ctx\n1\na\nb\nc\nd\n", NULL, 1, "not JSONL"},
    {LM_TASK_BOOLQ, "wrongtask.tsv", "\n1\tq\t(A) a (B) b\tq\tA\n", NULL, 2, "looks like obqa tsv"},
    {LM_TASK_HELLASWAG, "hs_tsv.tsv", "ID\tQuestion Stem\tChoices\tComplete Question\tAnswer Key\n1\tq\t(A) a\tq\tA\n",
     NULL, 1, "cut short: 2 of 6 lines"},
    {LM_TASK_OPENBOOKQA, "ob_hs.txt", "ctx\n1\na\nb\nc\nd\n", NULL, 1, "row has 1 tab-separated columns, expected 5"},
    {LM_TASK_OPENBOOKQA, "ob_hsjson.jsonl",
     "{\"activity_label\": \"a\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"x\"], \"label\": 0}\n", NULL, 0,
     "does not fit task openbookqa"},
    {LM_TASK_WINOGRANDE, "winoempty.jsonl",
     "{\"context_options\": [\"a\", \"b\"], \"continuation\": \"\", \"gold\": 0}\n", NULL, 1,
     "field \"continuation\" is empty"},
    {LM_TASK_WINOGRANDE, "winogold.jsonl",
     "{\"context_options\": [\"a\", \"b\"], \"continuation\": \"c\", \"gold\": 2}\n", NULL, 1,
     "\"gold\" is 2 but there are 2 choices"},
    {LM_TASK_WINOGRANDE, "winoorig.jsonl",
     "{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\"}\n", NULL, 1,
     "has no \"_\""},
    {LM_TASK_WINOGRANDE, "winoans.jsonl",
     "{\"sentence\": \"a _ b\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"3\"}\n", NULL, 1,
     "field \"answer\" is \"3\""},
    {LM_TASK_LAMBADA, "lambada.jsonl", "{\"context\": \"c\", \"continuation\": \"x\"}\n{\"context\": \"c\"}\n", NULL, 2,
     "missing field \"continuation\""},
    {LM_TASK_HELLASWAG, "hs_short.txt", "c\n0\na\nb\nc\nd\nc2\n1\na\nb\n\n\n", NULL, 7, "cut short: 4 of 6 lines"},
    {LM_TASK_HELLASWAG, "hs_gold.txt", "c\n0\na\nb\nc\nd\nc2\n4\na\nb\nc\nd\n", NULL, 8, "gold line is \"4\""},
    {LM_TASK_HELLASWAG, "hs_goldtxt.txt", "c\n0\na\nb\nc\nd\nc2\nx1\na\nb\nc\nd\n", NULL, 8, "gold line is \"x1\""},
    {LM_TASK_HELLASWAG, "hs_ending.txt", "c\n0\na\nb\n\nd\n", NULL, 5, "empty ending 2"},
    {LM_TASK_HELLASWAG, "hs_json.jsonl",
     "{\"activity_label\": \"a\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"x\", \"y\"], \"label\": \"2\"}\n",
     NULL, 1, "\"label\" is \"2\" but there are 2 endings"},
    {LM_TASK_PIQA, "pq_few.jsonl",
     "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": "
     "\"b\"}\n{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n",
     "0\n1\n", 0, "has 2 labels but"},
    {LM_TASK_PIQA, "pq_bad.jsonl",
     "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n",
     "0\n2\n", 2, "label is \"2\", expected 0 or 1"},
    {LM_TASK_PIQA, "pq_nolabels.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n", NULL, 0,
     "pq_nolabels-labels.lst: cannot open"},
    {LM_TASK_PIQA, "pq_sol.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"\"}\n", "0\n", 1,
     "field \"sol2\" is empty"},
    {LM_TASK_OPENBOOKQA, "ob_cols.tsv",
     "ID\tQuestion Stem\tChoices\tComplete Question\tAnswer Key\n1\tq\t(A) a (B) b\tq (A) a (B) b\tA\n2\tq\t(A) a (B) "
     "b\tB\n",
     NULL, 3, "row has 4 tab-separated columns, expected 5"},
    {LM_TASK_OPENBOOKQA, "ob_key.tsv",
     "ID\tQuestion Stem\tChoices\tComplete Question\tAnswer Key\n1\tq\t(A) a (B) b\tq (A) a (B) b\tC\n", NULL, 2,
     "\"Answer Key\" is \"C\", not among the choices A-B"},
    {LM_TASK_OPENBOOKQA, "ob_choices.tsv", "1\tq\ta b c\tq a b c\tA\n", NULL, 1,
     "\"Choices\" does not start with \"(A) \""},
    {LM_TASK_OPENBOOKQA, "ob_empty.tsv", "1\tq\t(A) a (B)  (C) c\tq\tA\n", NULL, 1, "empty choice B"},
    {LM_TASK_ARC_EASY, "array.json", "\n[{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}]\n", NULL, 2,
     "a JSON array; expected JSONL"},
    {LM_TASK_ARC_EASY, "empty.jsonl", "", NULL, 0, "empty file"},
    {LM_TASK_HELLASWAG, "blank.txt", "\n \r\n\n", NULL, 0, "empty file"},
};

static void test_broken_inputs(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_broken / sizeof k_broken[0]; i++) {
        const struct broken *b = &k_broken[i];
        const char *path = write_tmp(b->name, b->text);
        if (b->labels) {
            char ln[256];
            snprintf(ln, sizeof ln, "%.*s-labels.lst", (int)(strlen(b->name) - 6), b->name);
            write_tmp(ln, b->labels);
        }
        char err[512] = "";
        lm_eval_set *s = lm_eval_load(b->task, path, NULL, 0, err, sizeof err);
        printf("  %-20s -> %s\n", b->name, err);
        if (s) fprintf(stderr, "%s loaded but should fail\n", b->name);
        assert_null(s);
        const char *stem = strrchr(path, '/') + 1;
        char want[300];
        if (b->line)
            snprintf(want, sizeof want, "%s:%d: ", b->labels && strstr(b->what, "label") ? "-labels.lst" : stem,
                     b->line);
        else
            snprintf(want, sizeof want, "%.*s", (int)strcspn(stem, "."), stem); /* data or labels file */
        if (!strstr(err, want)) fprintf(stderr, "missing \"%s\"\n", want);
        assert_non_null(strstr(err, want));
        if (!strstr(err, b->what)) fprintf(stderr, "missing \"%s\"\n", b->what);
        assert_non_null(strstr(err, b->what));
        unlink(path);
    }
    /* a NUL byte */
    char err[512];
    static const char nul[] = "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n{\"query\": \"q\0\"}\n";
    const char *np = write_tmp_n("nul.jsonl", nul, sizeof nul - 1);
    assert_null(lm_eval_load(LM_TASK_ARC_EASY, np, NULL, 0, err, sizeof err));
    printf("  %-20s -> %s\n", "nul.jsonl", err);
    assert_non_null(strstr(err, "nul.jsonl:2: NUL byte"));
    /* a missing file */
    assert_null(lm_eval_load(LM_TASK_ARC_EASY, "/nonexistent/x.jsonl", NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/x.jsonl"));
    assert_null(lm_eval_load(LM_TASK_COUNT, "/nonexistent/x.jsonl", NULL, 0, err, sizeof err));
}

/* ---------------------------------------------------------------------------------------------- */

static void test_limit(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    for (size_t f = 0; f < N_FILES; f++) {
        lm_eval_set *all = load_shared(k_files[f].task, k_files[f].name, 0);
        lm_eval_set *few = load_shared(k_files[f].task, k_files[f].name, 7);
        assert_int_equal(few->n_items, 7);
        for (int i = 0; i < 7; i++) {
            const lm_eval_item *x = &all->items[i], *y = &few->items[i];
            assert_int_equal(x->line, y->line);
            assert_int_equal(x->gold, y->gold);
            assert_int_equal(x->n_choices, y->n_choices);
            for (int j = 0; j < x->n_choices; j++) {
                assert_string_equal(x->ctx[j], y->ctx[j]);
                assert_string_equal(x->cont[j], y->cont[j]);
            }
        }
        lm_eval_set_free(all);
        lm_eval_set_free(few);
    }
}

/* the limit stops reading: a broken line after it is not seen */
static void test_limit_stops(void **state) {
    (void)state;
    char err[512];
    const char *p = write_tmp("limit.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n{broken\n");
    lm_eval_set *s = lm_eval_load(LM_TASK_ARC_EASY, p, NULL, 1, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(s->n_items, 1);
    lm_eval_set_free(s);
    assert_null(lm_eval_load(LM_TASK_ARC_EASY, p, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "limit.jsonl:2: invalid JSON"));
    /* a limit larger than the file: all items */
    p = write_tmp("limit2.jsonl", k_ok_mc);
    s = lm_eval_load(LM_TASK_ARC_EASY, p, NULL, 100, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(s->n_items, 1);
    lm_eval_set_free(s);
}

static void test_find_data(void **state) {
    (void)state;
    char err[512];
    if (lm_test_shared_dir()) {
        static const char *const want[LM_TASK_COUNT] = {
            "hellaswag_val_full.txt",         "llmfoundry_openbook_qa.jsonl",    "llmfoundry_winogrande.jsonl",
            "llmfoundry_arc_challenge.jsonl", "llmfoundry_arc_easy.jsonl",       "llmfoundry_boolq.jsonl",
            "llmfoundry_piqa.jsonl",          "llmfoundry_lambada_openai.jsonl",
        };
        char dir[2200];
        lm_test_shared_path(dir, sizeof dir, "eval");
        for (int t = 0; t < LM_TASK_COUNT; t++) {
            char *p = lm_eval_find_data(t, dir, err, sizeof err);
            assert_non_null(p);
            const char *base = strrchr(p, '/') + 1;
            printf("  %-14s -> %s\n", lm_eval_task_name(t), base);
            assert_string_equal(base, want[t]);
            lm_eval_set *s = lm_eval_load(t, p, NULL, 3, err, sizeof err);
            assert_non_null(s);
            lm_eval_set_free(s);
            free(p);
        }
    }
    /* a folder with only plain names */
    char dir[2100];
    snprintf(dir, sizeof dir, "%s/find", lm_test_tmpdir());
    mkdir(dir, 0700);
    char f[2300];
    snprintf(f, sizeof f, "%s/arc_easy.jsonl", dir);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fputs(k_ok_mc, fp);
    fclose(fp);
    char *p = lm_eval_find_data(LM_TASK_ARC_EASY, dir, err, sizeof err);
    assert_non_null(p);
    assert_string_equal(p, f);
    free(p);
    assert_null(lm_eval_find_data(LM_TASK_BOOLQ, dir, err, sizeof err));
    printf("  %s\n", err);
    assert_non_null(strstr(err, "llmfoundry_boolq.jsonl"));
    assert_non_null(strstr(err, "boolq.jsonl"));
    assert_non_null(strstr(err, "boolq"));
    unlink(f);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_names),
        cmocka_unit_test(test_shared_counts),
        cmocka_unit_test(test_shared_spot),
        cmocka_unit_test(test_python_crosscheck),
        cmocka_unit_test(test_piqa_two_formats),
        cmocka_unit_test(test_obqa_two_formats),
        cmocka_unit_test(test_other_formats),
        cmocka_unit_test(test_broken_inputs),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_limit_stops),
        cmocka_unit_test(test_find_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
