/*
 * Benchmark data loaders for `llamita eval` (contract: src/evaldata.h).
 *
 * Every item becomes the exact texts lm-evaluation-harness scores for the task (zero-shot), adapted to
 * what each file holds. Choice i is scored as log P(cont[i] | ctx[i]); the scorer moves trailing spaces
 * of a context into the continuation as the harness does, so contexts are kept as built here.
 *
 * | task          | format (detected)                      | ctx[i]                                   | cont[i]               | gold            |
 * |---------------|----------------------------------------|------------------------------------------|-----------------------|-----------------|
 * | hellaswag     | hellaswag txt (llama.cpp, 6 lines/item)| line 1 as given (already preprocessed)   | " " + ending line     | line 2 (0-3)    |
 * | hellaswag     | llm-foundry jsonl {query,choices,gold} | query as given                           | " " + choice          | gold            |
 * | hellaswag     | hellaswag jsonl (HF: ctx_a,ctx_b,...)  | pre(activity_label+": "+ctx_a+" "+       | " " + pre(ending)     | label           |
 * |               |                                        |     capitalize(ctx_b))                   |                       |                 |
 * | arc_easy/     | llm-foundry jsonl                      | "Question: {q}\nAnswer:" (the query      | " " + choice          | gold            |
 * | arc_challenge |                                        |  already holds "Question: {q}")          |                       |                 |
 * | boolq         | llm-foundry jsonl: query =             | "{passage}\nQuestion: {question}?\nAnswer:" | " no" / " yes"     | gold (1 = yes)  |
 * |               |  "Passage: {passage}\nQuestion: {q}?"  |  (the "Passage: " prefix is dropped)     |  (choices as given)   |                 |
 * | piqa          | llm-foundry jsonl (query =             | "Question: {goal}\nAnswer:"              | " " + choice          | gold            |
 * |               |  "Question: {goal}\n")                 |                                          |                       |                 |
 * | piqa          | piqa jsonl {goal,sol1,sol2} + labels   | "Question: {goal}\nAnswer:"              | " " + sol1 / sol2     | labels line     |
 * | openbookqa    | llm-foundry jsonl                      | query (= question_stem)                  | " " + choice          | gold            |
 * | openbookqa    | obqa tsv (ID, Question Stem, Choices,  | Question Stem                            | " " + choice text     | Answer Key A-D  |
 * |               |  Complete Question, Answer Key)        |                                          |  ("(A) x (B) y ...")  |                 |
 * | winogrande    | llm-foundry jsonl {context_options,    | context_options[i] (= sentence up to "_" | " " + continuation    | gold            |
 * |               |  continuation, gold}                   |  with option i filled in)                |  (shared)             |                 |
 * | winogrande    | winogrande jsonl {sentence,option1,    | sentence[:idx("_")] + option_i           | " " + strip(sentence  | answer "1"/"2"  |
 * |               |  option2,answer}                       |                                          |  after "_")           |  -> 0/1         |
 * | lambada       | llm-foundry jsonl {context,continuation}| context (text up to its last " ")       | " " + continuation    | 0 (one choice)  |
 *
 * pre() is the harness's HellaSwag preprocess: strip; " [title]" -> ". "; remove "[...]" (non-greedy);
 * "  " -> " " (one pass). capitalize() upper-cases the first character and lower-cases the rest (ASCII
 * only here; Python does it for all of Unicode). llama.cpp's hellaswag_val_full.txt is already
 * preprocessed by its maker: the harness's preprocess would change only 14 of its 60252 lines (a few
 * "[...]" left in, one double space), so its lines are used as given, which is also exactly what
 * llama.cpp's `--hellaswag` scores (context + " " + ending). One real difference from the harness: its
 * maker did not capitalize ctx_b, so ~3240 of the 10042 contexts end in a lower-case sentence start
 * ("Roof shingle removal: A man is sitting on a roof. he" where the harness has "... roof. He"). The
 * split between ctx_a and ctx_b is lost in that file, so this is not repaired (a guess would also move
 * the texts away from llama.cpp's); use the HF jsonl for the harness's exact HellaSwag text.
 *
 * Differences between formats of the same data (measured on ../shared/eval, see tests/test_evaldata.c):
 *  - PIQA: llm-foundry stripped the solutions; the original valid.jsonl (what the harness reads, via HF)
 *    has leading/trailing spaces in 230 solutions of 118 items. Both are kept as given; everything else
 *    (goal, gold) is identical.
 *  - OpenBookQA: the TSV and llm-foundry's jsonl give identical items.
 *  - LAMBADA: llm-foundry split the text at its last " " as the harness does, so ctx/cont are the
 *    harness's (the continuation may hold newlines, e.g. "of\n\nPower").
 *
 * Input rules: the file is read once; lines end in "\n" or "\r\n"; a UTF-8 BOM is skipped; blank
 * lines are skipped in JSONL/TSV and allowed at the end of every format. Strings live in an arena
 * (set->priv) so lm_eval_set_free is a handful of free() calls.
 */
#include "evaldata.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

/* ---------------------------------------------------------------------------------------------- */
/* task names                                                                                       */

static const char *const k_task_names[LM_TASK_COUNT] = {
    "hellaswag", "openbookqa", "winogrande", "arc_challenge", "arc_easy", "boolq", "piqa", "lambada",
};

const char *lm_eval_task_name(lm_eval_task task) {
    if ((int)task < 0 || task >= LM_TASK_COUNT) return "unknown";
    return k_task_names[task];
}

int lm_eval_task_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < LM_TASK_COUNT; i++)
        if (!strcmp(name, k_task_names[i])) return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* string arena: blocks of >= 1 MiB, 8-byte aligned allocations, freed all at once                 */

typedef struct lm_arena_block {
    struct lm_arena_block *next;
    size_t used, cap;
    max_align_t data[]; /* [cap bytes] */
} lm_arena_block;

typedef struct lm_arena {
    lm_arena_block *head;
} lm_arena;

static void arena_free(lm_arena *a) {
    if (!a) return;
    for (lm_arena_block *b = a->head; b;) {
        lm_arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(a);
}

/* Returns n bytes (8-aligned) owned by the arena, or NULL when out of memory. */
static void *arena_alloc(lm_arena *a, size_t n) {
    n = (n + 7u) & ~(size_t)7u;
    lm_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ((size_t)1 << 20) ? n : ((size_t)1 << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

/* Concatenates up to three byte strings (NULL/0 allowed) into a NUL-terminated arena string. */
static char *arena_cat3(lm_arena *a, const char *s1, size_t n1, const char *s2, size_t n2, const char *s3, size_t n3) {
    char *p = arena_alloc(a, n1 + n2 + n3 + 1);
    if (!p) return NULL;
    if (n1) memcpy(p, s1, n1);
    if (n2) memcpy(p + n1, s2, n2);
    if (n3) memcpy(p + n1 + n2, s3, n3);
    p[n1 + n2 + n3] = 0;
    return p;
}

static char *arena_str(lm_arena *a, const char *s) { return arena_cat3(a, s, strlen(s), NULL, 0, NULL, 0); }
static char *arena_sp(lm_arena *a, const char *s) { return arena_cat3(a, " ", 1, s, strlen(s), NULL, 0); }

/* ---------------------------------------------------------------------------------------------- */
/* files and lines                                                                                  */

typedef struct {
    char *s; /* NUL-terminated in place, without "\n" / "\r\n" */
    size_t len;
} line_t;

typedef struct {
    char *buf; /* whole file + NUL */
    size_t size;
    line_t *lines; /* [n_lines] (trailing blank lines dropped) */
    int32_t n_lines;
} text_file;

static void text_free(text_file *t) {
    free(t->buf);
    free(t->lines);
    memset(t, 0, sizeof *t);
}

static bool is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

/* Reads `path` and splits it into lines (in place, NUL-terminated, "\r\n" and "\n" endings removed).
 * Returns false with a message on error (unreadable, too big, a NUL byte, empty = no non-blank line). */
static bool text_read(text_file *t, const char *path, char *err, size_t err_size) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_seterr(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        lm_seterr(err, err_size, "%s: not a regular file", path);
        fclose(f);
        return false;
    }
    if ((uint64_t)st.st_size >= (uint64_t)INT32_MAX) {
        lm_seterr(err, err_size, "%s: file too large (%lld bytes)", path, (long long)st.st_size);
        fclose(f);
        return false;
    }
    size_t size = (size_t)st.st_size;
    t->buf = malloc(size + 1);
    if (!t->buf) {
        lm_seterr(err, err_size, "%s: out of memory", path);
        fclose(f);
        return false;
    }
    size_t got = size ? fread(t->buf, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        lm_seterr(err, err_size, "%s: read error", path);
        text_free(t);
        return false;
    }
    t->buf[size] = 0;
    t->size = size;
    const char *nul = memchr(t->buf, 0, size);
    if (nul) {
        int32_t ln = 1;
        for (const char *q = t->buf; q < nul; q++) ln += (*q == '\n');
        lm_seterr(err, err_size, "%s:%d: NUL byte in a text file", path, (int)ln);
        text_free(t);
        return false;
    }
    char *p = t->buf, *end = t->buf + size;
    if (size >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF) p += 3;
    size_t n = 1;
    for (char *q = p; q < end; q++) n += (*q == '\n');
    t->lines = malloc(n * sizeof *t->lines);
    if (!t->lines) {
        lm_seterr(err, err_size, "%s: out of memory", path);
        text_free(t);
        return false;
    }
    int32_t k = 0;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        *e = 0;
        size_t len = (size_t)(e - p);
        if (len && p[len - 1] == '\r') p[--len] = 0;
        t->lines[k].s = p;
        t->lines[k].len = len;
        k++;
        p = e + 1;
    }
    while (k > 0 && is_blank(t->lines[k - 1].s, t->lines[k - 1].len)) k--;
    t->n_lines = k;
    if (k == 0) {
        lm_seterr(err, err_size, "%s: empty file (no items)", path);
        text_free(t);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* loader state                                                                                     */

typedef enum {
    FMT_FOUNDRY_MC,      /* {query, choices, gold} */
    FMT_FOUNDRY_WINO,    /* {context_options, continuation, gold} */
    FMT_FOUNDRY_LAMBADA, /* {context, continuation} */
    FMT_PIQA,            /* {goal, sol1, sol2} + labels */
    FMT_WINO_ORIG,       /* {sentence, option1, option2, answer} */
    FMT_HELLASWAG_HF,    /* {activity_label, ctx_a, ctx_b, endings, label} */
    FMT_HELLASWAG_TXT,
    FMT_OBQA_TSV,
} data_format;

static const char *format_name(data_format f) {
    switch (f) {
    case FMT_FOUNDRY_MC:
    case FMT_FOUNDRY_WINO:
    case FMT_FOUNDRY_LAMBADA: return "llm-foundry jsonl";
    case FMT_PIQA: return "piqa jsonl";
    case FMT_WINO_ORIG: return "winogrande jsonl";
    case FMT_HELLASWAG_HF: return "hellaswag jsonl";
    case FMT_HELLASWAG_TXT: return "hellaswag txt";
    case FMT_OBQA_TSV: return "obqa tsv";
    }
    return "?";
}

typedef struct {
    lm_eval_task task;
    const char *path;
    char *err;
    size_t err_size;
    lm_arena *arena;
    lm_eval_item *items; /* [cap] */
    int32_t n, cap;
    int32_t limit; /* <= 0: all */
} loader;

static bool oom(loader *L) {
    lm_seterr(L->err, L->err_size, "%s: out of memory", L->path);
    return false;
}

static bool full(const loader *L) { return L->limit > 0 && L->n >= L->limit; }

/* Appends an item with n choices; returns it with ctx/cont arrays allocated (entries NULL), or NULL. */
static lm_eval_item *new_item(loader *L, int32_t n_choices, int32_t line) {
    if (L->n == L->cap) {
        int32_t cap = L->cap ? L->cap * 2 : 256;
        lm_eval_item *it = realloc(L->items, (size_t)cap * sizeof *it);
        if (!it) return NULL;
        L->items = it;
        L->cap = cap;
    }
    lm_eval_item *it = &L->items[L->n];
    memset(it, 0, sizeof *it);
    it->n_choices = n_choices;
    it->line = line;
    it->ctx = arena_alloc(L->arena, (size_t)n_choices * sizeof(char *));
    it->cont = arena_alloc(L->arena, (size_t)n_choices * sizeof(char *));
    if (!it->ctx || !it->cont) return NULL;
    L->n++;
    return it;
}

#define FAIL(L, line, ...)                                                                                             \
    do {                                                                                                               \
        char msg_[512];                                                                                                \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                                      \
        lm_seterr((L)->err, (L)->err_size, "%s:%d: %s", (L)->path, (int)(line), msg_);                                 \
        return false;                                                                                                  \
    } while (0)

/* ---------------------------------------------------------------------------------------------- */
/* JSON field access (messages name the line and the field)                                         */

static const char *jtype(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid";
}

/* String field `name` of object o; non-empty unless allow_empty. */
static bool get_str(loader *L, int32_t line, const cJSON *o, const char *name, bool allow_empty, const char **out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!j) FAIL(L, line, "missing field \"%s\"", name);
    if (!cJSON_IsString(j) || !j->valuestring) FAIL(L, line, "field \"%s\" is %s, expected a string", name, jtype(j));
    if (!allow_empty && !j->valuestring[0]) FAIL(L, line, "field \"%s\" is empty", name);
    *out = j->valuestring;
    return true;
}

/* Integer field `name` in [0, n) (n <= 0: no upper bound check). */
static bool get_gold(loader *L, int32_t line, const cJSON *o, const char *name, int32_t n, int32_t *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!j) FAIL(L, line, "missing field \"%s\"", name);
    if (!cJSON_IsNumber(j)) FAIL(L, line, "field \"%s\" is %s, expected an integer", name, jtype(j));
    double v = j->valuedouble;
    if (!(v >= -1e9 && v <= 1e9) || v != (double)(int64_t)v)
        FAIL(L, line, "field \"%s\" is %g, expected an integer", name, v);
    if (v < 0 || (n > 0 && v >= n)) FAIL(L, line, "\"%s\" is %d but there are %d choices", name, (int)v, (int)n);
    *out = (int32_t)v;
    return true;
}

/* Array-of-strings field; every element non-empty. Returns the array and its size. */
static bool get_str_array(loader *L, int32_t line, const cJSON *o, const char *name, const cJSON **arr, int32_t *n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!j) FAIL(L, line, "missing field \"%s\"", name);
    if (!cJSON_IsArray(j)) FAIL(L, line, "field \"%s\" is %s, expected an array of strings", name, jtype(j));
    int sz = cJSON_GetArraySize(j);
    if (sz <= 0) FAIL(L, line, "field \"%s\" is an empty array", name);
    int i = 0;
    for (const cJSON *e = j->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || !e->valuestring)
            FAIL(L, line, "\"%s\"[%d] is %s, expected a string", name, i, jtype(e));
        if (!e->valuestring[0]) FAIL(L, line, "empty choice %d in \"%s\"", i, name);
    }
    *arr = j;
    *n = sz;
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* text rules                                                                                       */

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* "Question: {q}\nAnswer:" from a query that is "{q}", "Question: {q}" or "Question: {q}\n". */
static char *question_answer(lm_arena *a, const char *q) {
    size_t n = strlen(q);
    if (n && q[n - 1] == '\n') n--;
    bool has = starts_with(q, "Question: ");
    return arena_cat3(a, has ? "" : "Question: ", has ? 0 : 10, q, n, "\nAnswer:", 8);
}

/* The harness's HellaSwag preprocess (see the table above) into a new arena string. */
static char *hs_preprocess(lm_arena *a, const char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++, n--;
    /* " [title]" -> ". " never grows the text; "[...]" removal shrinks it */
    char *t1 = malloc(n + 1), *t2 = malloc(n + 1);
    if (!t1 || !t2) {
        free(t1);
        free(t2);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 8 && !memcmp(s + i, " [title]", 8)) {
            t1[k++] = '.';
            t1[k++] = ' ';
            i += 8;
        } else
            t1[k++] = s[i++];
    }
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        if (t1[i] == '[') {
            const char *close = memchr(t1 + i, ']', k - i);
            if (close) {
                i = (size_t)(close - t1) + 1;
                continue;
            }
        }
        t2[m++] = t1[i++];
    }
    k = 0;
    for (size_t i = 0; i < m;) {
        if (i + 1 < m && t2[i] == ' ' && t2[i + 1] == ' ') {
            t1[k++] = ' ';
            i += 2;
        } else
            t1[k++] = t2[i++];
    }
    char *r = arena_cat3(a, t1, k, NULL, 0, NULL, 0);
    free(t1);
    free(t2);
    return r;
}

/* ---------------------------------------------------------------------------------------------- */
/* JSONL formats                                                                                    */

static data_format detect_json(const cJSON *o, bool *ok) {
    *ok = true;
#define HAS(k) (cJSON_GetObjectItemCaseSensitive(o, k) != NULL)
    if (HAS("context_options")) return FMT_FOUNDRY_WINO;
    if (HAS("sentence") && HAS("option1")) return FMT_WINO_ORIG;
    if (HAS("goal") || HAS("sol1")) return FMT_PIQA;
    if (HAS("query") || HAS("choices")) return FMT_FOUNDRY_MC;
    if (HAS("ctx_a") || HAS("endings")) return FMT_HELLASWAG_HF;
    if (HAS("context")) return FMT_FOUNDRY_LAMBADA;
#undef HAS
    *ok = false;
    return FMT_FOUNDRY_MC;
}

/* One {query, choices, gold} item for task L->task. */
static bool item_foundry_mc(loader *L, int32_t line, const cJSON *o) {
    const char *q;
    const cJSON *arr;
    int32_t n, gold;
    if (!get_str(L, line, o, "query", false, &q) || !get_str_array(L, line, o, "choices", &arr, &n) ||
        !get_gold(L, line, o, "gold", n, &gold))
        return false;
    if ((L->task == LM_TASK_BOOLQ || L->task == LM_TASK_PIQA) && n != 2)
        FAIL(L, line, "%s needs 2 choices, \"choices\" has %d", lm_eval_task_name(L->task), (int)n);
    char *ctx;
    switch (L->task) {
    case LM_TASK_ARC_EASY:
    case LM_TASK_ARC_CHALLENGE:
    case LM_TASK_PIQA: ctx = question_answer(L->arena, q); break;
    case LM_TASK_BOOLQ: {
        const char *p = starts_with(q, "Passage: ") ? q + 9 : q;
        ctx = arena_cat3(L->arena, p, strlen(p), "\nAnswer:", 8, NULL, 0);
        break;
    }
    default: ctx = arena_str(L->arena, q); break; /* openbookqa, hellaswag */
    }
    lm_eval_item *it = new_item(L, n, line);
    if (!ctx || !it) return oom(L);
    it->gold = gold;
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        it->ctx[i] = ctx;
        if (!(it->cont[i] = arena_sp(L->arena, e->valuestring))) return oom(L);
    }
    return true;
}

static bool item_foundry_wino(loader *L, int32_t line, const cJSON *o) {
    const cJSON *arr;
    const char *c;
    int32_t n, gold;
    if (!get_str_array(L, line, o, "context_options", &arr, &n) || !get_str(L, line, o, "continuation", false, &c) ||
        !get_gold(L, line, o, "gold", n, &gold))
        return false;
    lm_eval_item *it = new_item(L, n, line);
    char *cont = arena_sp(L->arena, c);
    if (!it || !cont) return oom(L);
    it->gold = gold;
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        if (!(it->ctx[i] = arena_str(L->arena, e->valuestring))) return oom(L);
        it->cont[i] = cont;
    }
    return true;
}

static bool item_wino_orig(loader *L, int32_t line, const cJSON *o) {
    const char *s, *o1, *o2, *ans;
    if (!get_str(L, line, o, "sentence", false, &s) || !get_str(L, line, o, "option1", false, &o1) ||
        !get_str(L, line, o, "option2", false, &o2) || !get_str(L, line, o, "answer", false, &ans))
        return false;
    if (strcmp(ans, "1") && strcmp(ans, "2")) FAIL(L, line, "field \"answer\" is \"%s\", expected \"1\" or \"2\"", ans);
    const char *us = strchr(s, '_');
    if (!us) FAIL(L, line, "field \"sentence\" has no \"_\" blank");
    const char *rest = us + 1;
    size_t rn = strlen(rest);
    while (rn && (rest[rn - 1] == ' ' || rest[rn - 1] == '\t')) rn--;
    while (rn && (*rest == ' ' || *rest == '\t')) rest++, rn--;
    if (!rn) FAIL(L, line, "nothing follows the \"_\" blank in \"sentence\"");
    lm_eval_item *it = new_item(L, 2, line);
    if (!it) return oom(L);
    it->gold = ans[0] - '1';
    size_t pre = (size_t)(us - s);
    it->ctx[0] = arena_cat3(L->arena, s, pre, o1, strlen(o1), NULL, 0);
    it->ctx[1] = arena_cat3(L->arena, s, pre, o2, strlen(o2), NULL, 0);
    it->cont[0] = it->cont[1] = arena_cat3(L->arena, " ", 1, rest, rn, NULL, 0);
    if (!it->ctx[0] || !it->ctx[1] || !it->cont[0]) return oom(L);
    return true;
}

static bool item_lambada(loader *L, int32_t line, const cJSON *o) {
    const char *c, *x;
    if (!get_str(L, line, o, "context", false, &c) || !get_str(L, line, o, "continuation", false, &x)) return false;
    lm_eval_item *it = new_item(L, 1, line);
    if (!it) return oom(L);
    it->gold = 0;
    it->ctx[0] = arena_str(L->arena, c);
    it->cont[0] = arena_sp(L->arena, x);
    if (!it->ctx[0] || !it->cont[0]) return oom(L);
    return true;
}

static bool item_piqa(loader *L, int32_t line, const cJSON *o) {
    const char *g, *s1, *s2;
    if (!get_str(L, line, o, "goal", false, &g) || !get_str(L, line, o, "sol1", false, &s1) ||
        !get_str(L, line, o, "sol2", false, &s2))
        return false;
    lm_eval_item *it = new_item(L, 2, line);
    if (!it) return oom(L);
    it->gold = -1; /* from the labels file */
    it->ctx[0] = it->ctx[1] = question_answer(L->arena, g);
    it->cont[0] = arena_sp(L->arena, s1);
    it->cont[1] = arena_sp(L->arena, s2);
    if (!it->ctx[0] || !it->cont[0] || !it->cont[1]) return oom(L);
    return true;
}

/* HF hellaswag row: label may be a string "0".."3" (HF) or an integer. */
static bool item_hellaswag_hf(loader *L, int32_t line, const cJSON *o) {
    const char *al, *a, *b;
    const cJSON *arr;
    int32_t n, gold;
    if (!get_str(L, line, o, "activity_label", true, &al) || !get_str(L, line, o, "ctx_a", true, &a) ||
        !get_str(L, line, o, "ctx_b", true, &b) || !get_str_array(L, line, o, "endings", &arr, &n))
        return false;
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (cJSON_IsString(lab) && lab->valuestring) {
        const char *v = lab->valuestring;
        if (!(v[0] >= '0' && v[0] <= '9' && v[1] == 0) || v[0] - '0' >= n)
            FAIL(L, line, "\"label\" is \"%s\" but there are %d endings", v, (int)n);
        gold = v[0] - '0';
    } else if (!get_gold(L, line, o, "label", n, &gold))
        return false;
    /* activity_label + ": " + ctx_a + " " + capitalize(ctx_b) */
    size_t nal = strlen(al), na = strlen(a), nb = strlen(b);
    char *raw = malloc(nal + na + nb + 4);
    if (!raw) return oom(L);
    memcpy(raw, al, nal);
    memcpy(raw + nal, ": ", 2);
    memcpy(raw + nal + 2, a, na);
    raw[nal + 2 + na] = ' ';
    char *cb = raw + nal + 3 + na;
    for (size_t i = 0; i < nb; i++) {
        char c = b[i];
        if (i == 0 && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (i > 0 && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        cb[i] = c;
    }
    cb[nb] = 0;
    char *ctx = hs_preprocess(L->arena, raw);
    free(raw);
    lm_eval_item *it = new_item(L, n, line);
    if (!ctx || !it) return oom(L);
    it->gold = gold;
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char *pe = hs_preprocess(L->arena, e->valuestring);
        if (!pe) return oom(L);
        if (!pe[0]) FAIL(L, line, "ending %d is empty after preprocessing", i);
        it->ctx[i] = ctx;
        if (!(it->cont[i] = arena_sp(L->arena, pe))) return oom(L);
    }
    return true;
}

static bool format_fits(data_format f, lm_eval_task t) {
    switch (f) {
    case FMT_FOUNDRY_MC: return t != LM_TASK_WINOGRANDE && t != LM_TASK_LAMBADA;
    case FMT_FOUNDRY_WINO:
    case FMT_WINO_ORIG: return t == LM_TASK_WINOGRANDE;
    case FMT_FOUNDRY_LAMBADA: return t == LM_TASK_LAMBADA;
    case FMT_PIQA: return t == LM_TASK_PIQA;
    case FMT_HELLASWAG_HF:
    case FMT_HELLASWAG_TXT: return t == LM_TASK_HELLASWAG;
    case FMT_OBQA_TSV: return t == LM_TASK_OPENBOOKQA;
    }
    return false;
}

static bool wrong_task(loader *L, data_format f, const char *what) {
    lm_seterr(L->err, L->err_size, "%s: the file is %s (%s), which does not fit task %s", L->path, format_name(f), what,
              lm_eval_task_name(L->task));
    return false;
}

static const char *format_what(data_format f) {
    switch (f) {
    case FMT_FOUNDRY_MC: return "{query, choices, gold}";
    case FMT_FOUNDRY_WINO: return "{context_options, continuation, gold}";
    case FMT_FOUNDRY_LAMBADA: return "{context, continuation}";
    case FMT_PIQA: return "{goal, sol1, sol2}";
    case FMT_WINO_ORIG: return "{sentence, option1, option2, answer}";
    case FMT_HELLASWAG_HF: return "{activity_label, ctx_a, ctx_b, endings, label}";
    case FMT_HELLASWAG_TXT: return "6 lines per task";
    case FMT_OBQA_TSV: return "tab-separated";
    }
    return "?";
}

static bool load_jsonl(loader *L, const text_file *t, data_format *fmt_out) {
    bool have_fmt = false;
    data_format fmt = FMT_FOUNDRY_MC;
    for (int32_t i = 0; i < t->n_lines && !full(L); i++) {
        const line_t *ln = &t->lines[i];
        int32_t line = i + 1;
        if (is_blank(ln->s, ln->len)) continue;
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(ln->s, ln->len, &end, false);
        if (!o) {
            size_t col = end && end >= ln->s ? (size_t)(end - ln->s) + 1 : 1;
            FAIL(L, line, "invalid JSON near column %zu", col);
        }
        if (end && !is_blank(end, ln->len - (size_t)(end - ln->s))) {
            size_t col = (size_t)(end - ln->s) + 1;
            cJSON_Delete(o);
            FAIL(L, line, "unexpected text after the JSON object at column %zu (one object per line)", col);
        }
        if (!cJSON_IsObject(o)) {
            const char *ty = jtype(o);
            cJSON_Delete(o);
            FAIL(L, line, "expected a JSON object, got %s", ty);
        }
        if (!have_fmt) {
            bool ok;
            fmt = detect_json(o, &ok);
            if (!ok) {
                cJSON_Delete(o);
                FAIL(L, line,
                     "unrecognized item: expected the fields {query, choices, gold}, {context_options, continuation, "
                     "gold}, {context, continuation}, {goal, sol1, sol2}, {sentence, option1, option2, answer} or "
                     "{ctx_a, ctx_b, endings, label}");
            }
            if (!format_fits(fmt, L->task)) {
                cJSON_Delete(o);
                return wrong_task(L, fmt, format_what(fmt));
            }
            have_fmt = true;
        }
        bool ok = false;
        switch (fmt) {
        case FMT_FOUNDRY_MC: ok = item_foundry_mc(L, line, o); break;
        case FMT_FOUNDRY_WINO: ok = item_foundry_wino(L, line, o); break;
        case FMT_FOUNDRY_LAMBADA: ok = item_lambada(L, line, o); break;
        case FMT_PIQA: ok = item_piqa(L, line, o); break;
        case FMT_WINO_ORIG: ok = item_wino_orig(L, line, o); break;
        case FMT_HELLASWAG_HF: ok = item_hellaswag_hf(L, line, o); break;
        default: break;
        }
        cJSON_Delete(o);
        if (!ok) return false;
    }
    *fmt_out = fmt;
    return true;
}

/* PIQA labels: one 0/1 per line for each data item (blank lines at the end allowed). */
static bool piqa_labels(loader *L, const char *data_path, const char *labels_path) {
    char *def = NULL;
    if (!labels_path) {
        size_t n = strlen(data_path);
        def = malloc(n + 16);
        if (!def) return oom(L);
        memcpy(def, data_path, n + 1);
        if (n >= 6 && !strcmp(def + n - 6, ".jsonl")) def[n - 6] = 0;
        strcat(def, "-labels.lst");
        labels_path = def;
    }
    text_file lt;
    char e2[512];
    if (!text_read(&lt, labels_path, e2, sizeof e2)) {
        lm_seterr(L->err, L->err_size, "%s: PIQA labels: %s", data_path, e2);
        free(def);
        return false;
    }
    bool ok = true;
    if (lt.n_lines < L->n) {
        lm_seterr(L->err, L->err_size, "%s: has %d labels but %s has %s%d items (the item of line %d has no label)",
                  labels_path, (int)lt.n_lines, data_path, full(L) ? "at least " : "", (int)L->n,
                  (int)L->items[lt.n_lines].line);
        ok = false;
    } else if (lt.n_lines > L->n && !full(L)) {
        lm_seterr(L->err, L->err_size, "%s: has %d labels but %s has %d items", labels_path, (int)lt.n_lines, data_path,
                  (int)L->n);
        ok = false;
    }
    for (int32_t i = 0; ok && i < L->n; i++) {
        const char *s = lt.lines[i].s;
        size_t n = lt.lines[i].len;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        if (n != 1 || (s[0] != '0' && s[0] != '1')) {
            lm_seterr(L->err, L->err_size, "%s:%d: label is \"%.*s\", expected 0 or 1", labels_path, (int)i + 1,
                      (int)(n > 40 ? 40 : n), s);
            ok = false;
            break;
        }
        L->items[i].gold = s[0] - '0';
    }
    text_free(&lt);
    free(def);
    return ok;
}

/* ---------------------------------------------------------------------------------------------- */
/* llama.cpp's hellaswag_val_full.txt: context, gold (0-3), 4 endings; repeated                    */

static bool load_hellaswag_txt(loader *L, const text_file *t) {
    for (int32_t b = 0; b < t->n_lines && !full(L); b += 6) {
        int32_t line = b + 1;
        if (t->n_lines - b < 6)
            FAIL(L, line, "hellaswag task cut short: %d of 6 lines (context, gold, 4 endings)", (int)(t->n_lines - b));
        const line_t *ln = &t->lines[b];
        const line_t *g = &ln[1];
        if (g->len != 1 || g->s[0] < '0' || g->s[0] > '3')
            FAIL(L, line + 1, "gold line is \"%.*s\", expected 0, 1, 2 or 3", (int)(g->len > 40 ? 40 : g->len), g->s);
        for (int j = 0; j < 4; j++)
            if (is_blank(ln[2 + j].s, ln[2 + j].len)) FAIL(L, line + 2 + j, "empty ending %d", j);
        lm_eval_item *it = new_item(L, 4, line);
        char *ctx = arena_cat3(L->arena, ln->s, ln->len, NULL, 0, NULL, 0);
        if (!it || !ctx) return oom(L);
        it->gold = g->s[0] - '0';
        for (int j = 0; j < 4; j++) {
            it->ctx[j] = ctx;
            if (!(it->cont[j] = arena_cat3(L->arena, " ", 1, ln[2 + j].s, ln[2 + j].len, NULL, 0))) return oom(L);
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* OpenBookQA TSV                                                                                   */

/* Splits s (modified in place) at tabs into at most max fields; returns the field count (may exceed max:
 * then only the first max are stored). */
static int split_tabs(char *s, char **f, int max) {
    int n = 0;
    for (;;) {
        if (n < max) f[n] = s;
        n++;
        char *tab = strchr(s, '\t');
        if (!tab) break;
        *tab = 0;
        s = tab + 1;
    }
    return n;
}

static bool load_obqa_tsv(loader *L, const text_file *t) {
    enum { MAXF = 32 };
    char *f[MAXF];
    int ncol = 5, c_stem = 1, c_choices = 2, c_key = 4;
    int32_t first = 0;
    while (first < t->n_lines && is_blank(t->lines[first].s, t->lines[first].len)) first++;
    if (first < t->n_lines && starts_with(t->lines[first].s, "ID\t")) {
        /* header: locate the columns by name */
        int n = split_tabs(t->lines[first].s, f, MAXF);
        if (n > MAXF) FAIL(L, first + 1, "header has %d columns, at most %d supported", n, MAXF);
        c_stem = c_choices = c_key = -1;
        for (int i = 0; i < n; i++) {
            if (!strcmp(f[i], "Question Stem"))
                c_stem = i;
            else if (!strcmp(f[i], "Choices"))
                c_choices = i;
            else if (!strcmp(f[i], "Answer Key"))
                c_key = i;
        }
        if (c_stem < 0 || c_choices < 0 || c_key < 0)
            FAIL(L, first + 1, "header lacks a \"%s\" column",
                 c_stem < 0      ? "Question Stem"
                 : c_choices < 0 ? "Choices"
                                 : "Answer Key");
        ncol = n;
        first++;
    }
    for (int32_t i = first; i < t->n_lines && !full(L); i++) {
        int32_t line = i + 1;
        if (is_blank(t->lines[i].s, t->lines[i].len)) continue;
        int n = split_tabs(t->lines[i].s, f, MAXF);
        if (n != ncol) FAIL(L, line, "row has %d tab-separated columns, expected %d", n, ncol);
        const char *stem = f[c_stem], *ch = f[c_choices], *key = f[c_key];
        if (!stem[0]) FAIL(L, line, "empty \"Question Stem\"");
        /* "(A) text (B) text ..." */
        const char *start[26];
        size_t len[26];
        int nc = 0;
        if (!starts_with(ch, "(A) ")) FAIL(L, line, "\"Choices\" does not start with \"(A) \"");
        const char *p = ch + 4;
        for (;;) {
            char mark[6] = {' ', '(', (char)('A' + nc + 1), ')', ' ', 0};
            const char *nx = nc + 1 < 26 ? strstr(p, mark) : NULL;
            start[nc] = p;
            len[nc] = nx ? (size_t)(nx - p) : strlen(p);
            if (is_blank(start[nc], len[nc])) FAIL(L, line, "empty choice %c in \"Choices\"", 'A' + nc);
            nc++;
            if (!nx) break;
            p = nx + 5;
        }
        size_t kl = strlen(key);
        while (kl && key[kl - 1] == ' ') kl--;
        if (kl != 1 || key[0] < 'A' || key[0] >= 'A' + nc)
            FAIL(L, line, "\"Answer Key\" is \"%s\", not among the choices A-%c", key, 'A' + nc - 1);
        lm_eval_item *it = new_item(L, nc, line);
        char *ctx = arena_str(L->arena, stem);
        if (!it || !ctx) return oom(L);
        it->gold = key[0] - 'A';
        for (int j = 0; j < nc; j++) {
            it->ctx[j] = ctx;
            if (!(it->cont[j] = arena_cat3(L->arena, " ", 1, start[j], len[j], NULL, 0))) return oom(L);
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */

lm_eval_set *lm_eval_load(lm_eval_task task, const char *path, const char *labels_path, int32_t limit, char *err,
                          size_t err_size) {
    if ((int)task < 0 || task >= LM_TASK_COUNT || !path) {
        lm_seterr(err, err_size, "lm_eval_load: bad task or path");
        return NULL;
    }
    text_file t;
    if (!text_read(&t, path, err, err_size)) return NULL;
    loader L = {.task = task, .path = path, .err = err, .err_size = err_size, .limit = limit};
    L.arena = calloc(1, sizeof *L.arena);
    lm_eval_set *set = calloc(1, sizeof *set);
    if (!L.arena || !set) {
        lm_seterr(err, err_size, "%s: out of memory", path);
        goto fail;
    }
    /* detect the format from the first non-blank line */
    int32_t i0 = 0;
    while (i0 < t.n_lines && is_blank(t.lines[i0].s, t.lines[i0].len)) i0++;
    const char *s0 = t.lines[i0].s;
    while (*s0 == ' ' || *s0 == '\t') s0++;
    data_format fmt;
    bool ok;
    if (*s0 == '[') {
        lm_seterr(err, err_size, "%s:%d: a JSON array; expected JSONL (one JSON object per line)", path, (int)i0 + 1);
        ok = false;
        fmt = FMT_FOUNDRY_MC;
    } else if (*s0 == '{') {
        ok = load_jsonl(&L, &t, &fmt);
        if (ok && fmt == FMT_PIQA && L.n > 0) ok = piqa_labels(&L, path, labels_path);
    } else if (task == LM_TASK_OPENBOOKQA) {
        fmt = FMT_OBQA_TSV;
        ok = load_obqa_tsv(&L, &t);
    } else if (task == LM_TASK_HELLASWAG) {
        fmt = FMT_HELLASWAG_TXT;
        ok = load_hellaswag_txt(&L, &t);
    } else {
        /* the text formats belong to one task each: name the likely one */
        fmt = strchr(t.lines[i0].s, '\t') ? FMT_OBQA_TSV : FMT_HELLASWAG_TXT;
        lm_seterr(err, err_size,
                  "%s:%d: not JSONL (the line does not start with \"{\"); task %s reads llm-foundry JSONL%s (the "
                  "text formats are HellaSwag's 6-line txt and the OpenBookQA TSV; this looks like %s)",
                  path, (int)i0 + 1, lm_eval_task_name(task), task == LM_TASK_PIQA ? " or PIQA's valid.jsonl" : "",
                  format_name(fmt));
        ok = false;
    }
    if (!ok) goto fail;
    if (L.n == 0) {
        lm_seterr(err, err_size, "%s: no items", path);
        goto fail;
    }
    set->task = task;
    set->n_items = L.n;
    set->items = L.items;
    set->format = format_name(fmt);
    set->source = arena_str(L.arena, path);
    set->priv = L.arena;
    if (!set->source) {
        lm_seterr(err, err_size, "%s: out of memory", path);
        goto fail;
    }
    text_free(&t);
    return set;
fail:
    text_free(&t);
    free(L.items);
    arena_free(L.arena);
    free(set);
    return NULL;
}

void lm_eval_set_free(lm_eval_set *set) {
    if (!set) return;
    free(set->items);
    arena_free(set->priv);
    free(set);
}

/* ---------------------------------------------------------------------------------------------- */

char *lm_eval_find_data(lm_eval_task task, const char *dir, char *err, size_t err_size) {
    /* the names of ../shared/eval first, then plain "<task>.jsonl" (and llm-foundry's own file names) */
    enum { MAXN = 5 };
    static const char *const names[LM_TASK_COUNT][MAXN] = {
        [LM_TASK_HELLASWAG] = {"hellaswag_val_full.txt", "llmfoundry_hellaswag.jsonl", "hellaswag.jsonl"},
        [LM_TASK_OPENBOOKQA] = {"llmfoundry_openbook_qa.jsonl", "openbookqa_main_test.tsv", "openbookqa.jsonl",
                                "openbook_qa.jsonl"},
        [LM_TASK_WINOGRANDE] = {"llmfoundry_winogrande.jsonl", "winogrande.jsonl"},
        [LM_TASK_ARC_CHALLENGE] = {"llmfoundry_arc_challenge.jsonl", "arc_challenge.jsonl"},
        [LM_TASK_ARC_EASY] = {"llmfoundry_arc_easy.jsonl", "arc_easy.jsonl"},
        [LM_TASK_BOOLQ] = {"llmfoundry_boolq.jsonl", "boolq.jsonl"},
        [LM_TASK_PIQA] = {"llmfoundry_piqa.jsonl", "piqa_valid.jsonl", "piqa.jsonl"},
        [LM_TASK_LAMBADA] = {"llmfoundry_lambada_openai.jsonl", "lambada_openai.jsonl", "lambada.jsonl"},
    };
    if ((int)task < 0 || task >= LM_TASK_COUNT || !dir) {
        lm_seterr(err, err_size, "lm_eval_find_data: bad task or folder");
        return NULL;
    }
    char tried[512] = "";
    size_t tl = 0;
    for (int i = 0; i < MAXN && names[task][i]; i++) {
        size_t n = strlen(dir) + strlen(names[task][i]) + 2;
        char *p = malloc(n);
        if (!p) {
            lm_seterr(err, err_size, "out of memory");
            return NULL;
        }
        snprintf(p, n, "%s/%s", dir, names[task][i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) return p;
        free(p);
        int w = snprintf(tried + tl, sizeof tried - tl, "%s%s", i ? ", " : "", names[task][i]);
        if (w > 0 && (size_t)w < sizeof tried - tl) tl += (size_t)w;
    }
    lm_seterr(err, err_size, "%s: no data file for task %s (tried %s)", dir, lm_eval_task_name(task), tried);
    return NULL;
}
