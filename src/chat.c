/*
 * Chat templates: a Jinja-subset interpreter written from the Jinja documentation and Python's
 * semantics, checked against the outputs jinja2 gives for real templates
 * (../shared/templates/chat-templates.jsonl) and by differential testing against jinja2.
 *
 * Environment reproduced (as transformers' apply_chat_template configures jinja2):
 *  - trim_blocks, lstrip_blocks, keep_trailing_newline=False, newlines normalized to "\n";
 *  - statements: for (loop.*, `if` filter, else, recursive), if/elif/else, set (targets, tuples,
 *    ns.attr, block set), macro (defaults, varargs, kwargs, caller), call blocks, filter blocks,
 *    with, break/continue, raw, {% generation %} (renders its body);
 *  - expressions with Python semantics: literals, attribute/subscript access (x.y falls back to
 *    x['y'] and vice versa), slices, calls with keyword and * / ** arguments, filters, tests,
 *    arithmetic, `~`, comparisons (chained), in / not in, and/or (returning operands), conditional
 *    expressions (missing else gives undefined);
 *  - Undefined as jinja2's default Undefined: prints "", is falsy, iterates empty, has length 0,
 *    and raises when used in arithmetic, attribute access or calls;
 *  - globals: range, namespace, dict, raise_exception, strftime_now; string, dict and list methods;
 *    the filters and tests real chat templates use (see apply_filter / apply_test);
 *  - jinja2's compile-time checks: unknown filters/tests outside if-conditions and their bodies
 *    (check_names), assignments to constants or to `loop`, call argument order, filter signatures;
 *  - filters that are generators in jinja2 (map, select*, reject*, unique, batch, slice, items,
 *    reverse) give a generator value: always true, no len(), errors deferred to iteration.
 *
 * Known differences: integers are 64-bit (overflow is an error where Python grows); case mappings
 * cover ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; printing a method or generator omits
 * Python's "at 0x..." address; a generator is not used up by iterating it; pprint does not wrap.
 *
 * Memory: one arena per render (AST, values, strings) freed at the end, so values need no
 * ownership tracking; errors unwind with longjmp to lm_chat_render, which frees the arena. Limits on
 * memory, output size, steps and depth make every template terminate.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "common.h"
#include "gguf.h"
#include "model.h"
#include "vocab.h"

/* ==============================================================================================
 * Values
 * ============================================================================================ */

enum vtype { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC, V_METHOD, V_LOOP };

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jmacro jmacro;
typedef struct jmethod jmethod;
typedef struct jloop jloop;
typedef struct node node;
typedef struct scope scope;

/* A template value, passed by value. Strings point into the arena (or the template, or the cJSON
 * input) and are never modified; lists and dicts are immutable once built, except namespaces. */
typedef struct jv {
    uint8_t t;     /* enum vtype */
    uint8_t tuple; /* V_LIST: a Python tuple (prints as (a, b)) */
    uint8_t gen;   /* V_LIST: a generator (what jinja2's map/select/unique... return): always true,
                      no len(), no indexing, not JSON; iterating works (it is not consumed here) */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;          /* V_STR */
        struct { const char *name, *obj; int64_t idx; } u; /* V_UNDEF: what was missing, for errors */
        jlist *l;
        jdict *d;                                        /* V_DICT, V_NS */
        jmacro *m;
        int fn;                                          /* V_FUNC: enum builtin */
        jmethod *me;
        jloop *lp;
    } v;
} jv;

struct jlist { size_t n, cap; jv *a; const char *fail; }; /* a[n]; fail: a generator whose input was not
                                                              iterable raises this when iterated */
struct jdict { size_t n, cap; jv *k, *v; };              /* insertion order; linear lookup */
struct jmacro { const node *def; scope *closure; const char *name; };
struct jmethod { jv self; const char *name; };
struct jloop {
    jlist *items;         /* the (filtered) items iterated */
    size_t i;             /* current index */
    int depth;            /* 1-based recursion depth */
    const node *stmt;     /* the for statement (recursive loops) */
    scope *sc;            /* its enclosing scope */
    jv last_changed;      /* loop.changed() memory */
    bool has_changed;
};

/* Variables of one scope; lookups walk to the parent. */
struct scope { scope *parent; size_t n, cap; const char **names; jv *vals; };

/* ==============================================================================================
 * Tokens and AST
 * ============================================================================================ */

enum { T_EOF, T_DATA, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

/* Two-character operators get one-letter codes; single characters are themselves. */
enum { OP_FLOORDIV = 'F', OP_POW = 'P', OP_EQ = 'E', OP_NE = 'N', OP_LE = 'L', OP_GE = 'G', OP_IN = 'I', OP_NOTIN = 'O' };

typedef struct tok {
    uint8_t t;
    char op;          /* T_OP */
    size_t off;       /* byte offset in the normalized template */
    const char *p;    /* T_DATA/T_STR: text (T_STR decoded); T_NAME: NUL-terminated name */
    size_t n;
    int64_t iv;       /* T_INT */
    double fv;        /* T_FLOAT */
} tok;

enum nkind {
    /* expressions */
    E_CONST, E_NAME, E_LIST, E_TUPLE, E_DICT, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG,
    E_POS, E_BIN, E_AND, E_OR, E_COND, E_CMP, E_CONCAT,
    /* statements */
    S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK, S_FILTERBLOCK, S_BREAK,
    S_CONTINUE, S_WITH, S_BLOCK
};

typedef struct arg { const char *kw; uint8_t star; node *e; } arg; /* star: 0, 1 = *e, 2 = **e */

/* Macro flags: the body mentions these names (jinja2 accepts extra arguments only then). */
enum { MF_VARARGS = 1, MF_KWARGS = 2, MF_CALLER = 4 };

struct node {
    uint8_t k;            /* enum nkind */
    char op;              /* E_BIN operator */
    uint8_t flag;         /* E_TEST: negated; S_FOR: recursive; S_SET: tuple target; S_MACRO: MF_* */
    uint8_t lazy;         /* E_FILTER/E_TEST: unknown name (an error, at parse time or when evaluated) */
    size_t off;           /* position in the template, for messages */
    jv lit;               /* E_CONST, S_TEXT */
    const char *name;     /* E_NAME, E_ATTR, E_FILTER, E_TEST, S_MACRO */
    node *a, *b, *c;      /* operands / condition / iterable / filter chain */
    arg *args;            /* call, filter and test arguments; list/tuple/dict items; slice parts */
    size_t nargs;
    char *ops;            /* E_CMP: ops[i] applies between operand i and args[i] */
    node **body, **els;
    size_t nbody, nels;
    const char **names;   /* targets (for/set/with), macro parameters */
    const char **attrs;   /* S_SET/S_SETBLOCK: attrs[i] != NULL makes target i `names[i].attrs[i]` (a namespace) */
    node **defs;          /* macro parameter defaults (NULL = none), with values */
    size_t nnames;
};

/* ==============================================================================================
 * Interpreter state, arena, errors
 * ============================================================================================ */

typedef struct chunk { struct chunk *next; size_t cap, used; max_align_t data[]; } chunk;

typedef struct sbuf { char *p; size_t n, cap; } sbuf;

typedef struct J {
    jmp_buf jb;
    char *err;
    size_t err_size;
    lm_chat_limits lim;
    /* arena */
    chunk *arena, *sarena; /* general / concatenated strings */
    size_t mem;
    char *tail;            /* see ar_extend */
    chunk *tail_chunk;
    size_t tail_used;
    /* template */
    const char *src; /* normalized: "\n" line ends, one trailing newline dropped */
    size_t src_len;
    /* lexer / parser */
    tok *toks;
    size_t ntoks, tcap, tp;
    int pdepth;     /* expression / statement nesting */
    int in_loop;    /* break/continue allowed */
    uint8_t *mflags; /* flags of the macro being parsed (NULL outside macros) */
    /* render */
    sbuf *out;
    scope *globals;
    uint64_t steps;
    int depth;
    int ctl;        /* CTL_BREAK / CTL_CONTINUE pending */
} J;

enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

/* 1-based line and column of a byte offset of the normalized template. */
static void line_col(const J *j, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    if (off > j->src_len) off = j->src_len;
    for (size_t i = 0; i < off; i++) {
        if (j->src[i] == '\n') l++, c = 1;
        else if (((unsigned char)j->src[i] & 0xC0) != 0x80) c++;
    }
    *line = l, *col = c;
}

/* Error exits. All unwind to lm_chat_render (longjmp); the arena holds every allocation. */
_Noreturn static void fail_raw(J *j, const char *msg) {
    lm_seterr(j->err, j->err_size, "%s", msg);
    longjmp(j->jb, 1);
}

__attribute__((format(printf, 3, 4))) _Noreturn static void fail_syntax(J *j, size_t off, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int l, c;
    line_col(j, off, &l, &c);
    lm_seterr(j->err, j->err_size, "template syntax error at %d:%d: %s", l, c, msg);
    longjmp(j->jb, 1);
}

__attribute__((format(printf, 3, 4))) _Noreturn static void fail_at(J *j, size_t off, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int l, c;
    line_col(j, off, &l, &c);
    lm_seterr(j->err, j->err_size, "template error at %d:%d: %s", l, c, msg);
    longjmp(j->jb, 1);
}

/* n bytes of 16-aligned memory (uninitialized) from the chunk list *head, or a "too much memory"
 * error. Two lists share the memory limit: j->arena for everything, j->sarena for the results of
 * string concatenation (so that the last one stays on top and can grow in place, see ar_extend). */
static void *ar_alloc_from(J *j, chunk **head, size_t n) {
    if (n > j->lim.max_memory) fail_raw(j, "template error: the template uses too much memory");
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    chunk *c = *head;
    if (!c || c->cap - c->used < n) {
        /* big blocks get as much room again after them, so a string being appended to (ar_extend)
         * can grow in place with amortized O(1) copying */
        size_t cap = n > 32768 ? 2 * n : 65536; /* n <= max_memory: no overflow */
        if (j->mem > j->lim.max_memory || cap > j->lim.max_memory - j->mem) cap = n; /* no headroom near the limit */
        if (j->mem > j->lim.max_memory || cap > j->lim.max_memory - j->mem)
            fail_raw(j, "template error: the template uses too much memory");
        c = malloc(sizeof *c + cap);
        if (!c) fail_raw(j, "template error: out of memory");
        c->cap = cap, c->used = 0, c->next = *head;
        *head = c;
        j->mem += cap;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void *ar_alloc(J *j, size_t n) { return ar_alloc_from(j, &j->arena, n); }

/* In-place string growth. j->tail is the exact end of the string that concat_str allocated last,
 * valid while nothing else was allocated after it (tail_used == chunk->used). ar_extend(end, extra)
 * succeeds when `end` is that tail and `extra` more bytes fit in the chunk: the caller may then
 * write them there. Safe because strings are immutable: values referring to the old string (or to
 * a slice of it ending at the tail) keep their length and never see the new bytes, and a slice
 * ending earlier does not match the tail. */
static bool ar_extend(J *j, const char *end, size_t extra) {
    chunk *c = j->sarena;
    if (!c || end != j->tail || c != j->tail_chunk || c->used != j->tail_used) return false;
    size_t need = (size_t)(end - (char *)c->data) + extra, used = (need + 15) & ~(size_t)15;
    if (need < extra || used > c->cap) return false;
    c->used = used;
    j->tail = (char *)end + extra, j->tail_used = used;
    return true;
}

static void ar_mark_tail(J *j, char *end) {
    j->tail = end, j->tail_chunk = j->sarena, j->tail_used = j->sarena->used;
}

static void *ar_zalloc(J *j, size_t n) {
    void *p = ar_alloc(j, n);
    memset(p, 0, n);
    return p;
}

/* Array allocation with an overflow check: count elements of size bytes. */
static void *ar_array(J *j, size_t count, size_t size) {
    if (size && count > SIZE_MAX / 2 / size) fail_raw(j, "template error: the template uses too much memory");
    return ar_alloc(j, count * size);
}

static void ar_free_all(J *j) {
    for (chunk *c = j->arena, *nx; c; c = nx) nx = c->next, free(c);
    for (chunk *c = j->sarena, *nx; c; c = nx) nx = c->next, free(c);
    j->arena = j->sarena = NULL;
    j->mem = 0;
}

static char *ar_strndup(J *j, const char *s, size_t n) {
    char *p = ar_alloc(j, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Grows a generic arena vector: *pa holds *cap elements of size bytes; makes room for one more. */
static void vec_grow(J *j, void **pa, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return;
    size_t nc = *cap ? *cap * 2 : 4;
    void *na = ar_array(j, nc, size);
    if (n) memcpy(na, *pa, n * size);
    *pa = na;
    *cap = nc;
}

/* ---- string buffers (arena-backed; the render output is checked against max_output) ---- */

static void sb_reserve(J *j, sbuf *b, size_t extra) {
    if (extra > j->lim.max_output || b->n > j->lim.max_output - extra)
        fail_raw(j, "template error: the rendered text is too long");
    if (b->n + extra + 1 <= b->cap) return;
    size_t nc = b->cap ? b->cap * 2 : 64;
    while (nc < b->n + extra + 1) nc *= 2;
    char *np = ar_alloc(j, nc);
    if (b->n) memcpy(np, b->p, b->n);
    b->p = np;
    b->cap = nc;
}

static void sb_put(J *j, sbuf *b, const char *s, size_t n) {
    if (!n) return;
    sb_reserve(j, b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_puts(J *j, sbuf *b, const char *s) { sb_put(j, b, s, strlen(s)); }
static void sb_putc(J *j, sbuf *b, char c) { sb_put(j, b, &c, 1); }

__attribute__((format(printf, 3, 4))) static void sb_printf(J *j, sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(j, b, tmp, (size_t)n);
        return;
    }
    sb_reserve(j, b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* ---- value constructors ---- */

static jv mk_undef(const char *name, const char *obj) {
    jv r = {.t = V_UNDEF};
    r.v.u.name = name, r.v.u.obj = obj, r.v.u.idx = INT64_MIN;
    return r;
}
static jv mk_undef_idx(const char *obj, int64_t idx) {
    jv r = {.t = V_UNDEF};
    r.v.u.obj = obj, r.v.u.idx = idx;
    return r;
}
static jv mk_none(void) { return (jv){.t = V_NONE}; }
static jv mk_bool(bool b) { jv r = {.t = V_BOOL}; r.v.b = b; return r; }
static jv mk_int(int64_t i) { jv r = {.t = V_INT}; r.v.i = i; return r; }
static jv mk_float(double f) { jv r = {.t = V_FLOAT}; r.v.f = f; return r; }
static jv mk_str(const char *p, size_t n) { jv r = {.t = V_STR}; r.v.s.p = p, r.v.s.n = n; return r; }
static jv mk_cstr(const char *p) { return mk_str(p, strlen(p)); }
static jv mk_sbuf(const sbuf *b) { return mk_str(b->n ? b->p : "", b->n); }

static jlist *new_list(J *j, size_t cap) {
    jlist *l = ar_alloc(j, sizeof *l);
    l->n = 0, l->cap = cap, l->fail = NULL;
    l->a = cap ? ar_array(j, cap, sizeof(jv)) : NULL;
    return l;
}
static jv mk_list(jlist *l, bool tuple) { jv r = {.t = V_LIST, .tuple = tuple}; r.v.l = l; return r; }
static void list_push(J *j, jlist *l, jv v) {
    vec_grow(j, (void **)&l->a, &l->cap, l->n, sizeof(jv));
    l->a[l->n++] = v;
}
static jv mk_gen(jlist *l) { jv r = {.t = V_LIST, .gen = 1}; r.v.l = l; return r; }
static jdict *new_dict(J *j) { return ar_zalloc(j, sizeof(jdict)); }
static jv mk_dict(jdict *d) { jv r = {.t = V_DICT}; r.v.d = d; return r; }
static jv mk_ns(jdict *d) { jv r = {.t = V_NS}; r.v.d = d; return r; }
static jv mk_pair(J *j, jv a, jv b) {
    jlist *l = new_list(j, 2);
    l->a[0] = a, l->a[1] = b, l->n = 2;
    return mk_list(l, true);
}

static bool is_num(jv v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num_f(jv v) { return v.t == V_FLOAT ? v.v.f : v.t == V_INT ? (double)v.v.i : (double)v.v.b; }
static int64_t num_i(jv v) { return v.t == V_INT ? v.v.i : v.t == V_BOOL ? (int64_t)v.v.b : (int64_t)v.v.f; }
static bool is_intlike(jv v) { return v.t == V_INT || v.t == V_BOOL; }
static bool str_eq(jv v, const char *s) { return v.t == V_STR && v.v.s.n == strlen(s) && !memcmp(v.v.s.p, s, v.v.s.n); }

/* Python type names, for messages. */
static const char *type_name(jv v) {
    switch (v.t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v.gen ? "generator" : v.tuple ? "tuple" : "list";
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_MACRO: return "Macro";
    case V_FUNC: return "function";
    case V_METHOD: return "builtin_function_or_method";
    case V_LOOP: return "LoopContext";
    }
    return "object";
}

/* jinja2's object_type_repr: "dict object", "list object", "None"... */
static const char *obj_repr(jv v) {
    switch (v.t) {
    case V_NONE: return "None";
    case V_BOOL: return "bool object";
    case V_INT: return "int object";
    case V_FLOAT: return "float object";
    case V_STR: return "str object";
    case V_LIST: return v.gen ? "generator object" : v.tuple ? "tuple object" : "list object";
    case V_DICT: return "dict object";
    case V_NS: return "jinja2.utils.Namespace object";
    case V_LOOP: return "jinja2.runtime.LoopContext object";
    default: return "object";
    }
}

/* The message an undefined value raises when used. */
static void undef_msg(jv u, char *buf, size_t size) {
    if (u.v.u.obj && u.v.u.idx != INT64_MIN) snprintf(buf, size, "%s has no element %" PRId64, u.v.u.obj, u.v.u.idx);
    else if (u.v.u.obj && u.v.u.name) snprintf(buf, size, "'%s' has no attribute '%s'", u.v.u.obj, u.v.u.name);
    else if (u.v.u.name) snprintf(buf, size, "'%s' is undefined", u.v.u.name);
    else if (u.v.u.obj) snprintf(buf, size, "%s", u.v.u.obj);
    else snprintf(buf, size, "value is undefined");
}

_Noreturn static void fail_undef(J *j, size_t off, jv u) {
    char m[400];
    undef_msg(u, m, sizeof m);
    fail_at(j, off, "%s", m);
}

/* Python truthiness (undefined is false). */
static bool truthy(jv v) {
    switch (v.t) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v.v.b;
    case V_INT: return v.v.i != 0;
    case V_FLOAT: return v.v.f != 0.0;
    case V_STR: return v.v.s.n != 0;
    case V_LIST: return v.gen || v.v.l->n != 0;
    case V_DICT: return v.v.d->n != 0;
    default: return true;
    }
}

/* ==============================================================================================
 * UTF-8 and Unicode helpers (Python str semantics: indexes count code points)
 * ============================================================================================ */

/* Decodes the code point at s[*i] (i < n) and advances *i. Invalid bytes decode as themselves
 * (one unit each, like surrogateescape) so no byte is ever lost. */
static uint32_t u8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    unsigned c = u[k];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 1 || len == 0 || k + (size_t)len > n) {
        *i = k + 1;
        return c;
    }
    uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int m = 1; m < len; m++) {
        if ((u[k + (size_t)m] & 0xC0) != 0x80) {
            *i = k + 1;
            return c;
        }
        cp = (cp << 6) | (u[k + (size_t)m] & 0x3F);
    }
    *i = k + (size_t)len;
    return cp;
}

static size_t u8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) cp = 0xFFFD;
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static size_t u8_count(const char *s, size_t n) {
    if (all_ascii(s, n)) return n;
    size_t c = 0;
    for (size_t i = 0; i < n;) u8_next(s, n, &i), c++;
    return c;
}

/* Python's str.isspace() set. */
static bool cp_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Simple case mappings for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (chat templates
 * apply case filters to role names and keys, not to arbitrary text). Others map to themselves. */
static uint32_t cp_upper(uint32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
    if (c == 0xB5) return 0x39C;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
    if (c == 0xFF) return 0x178;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x131) return 'I';
        if (c == 0x17F) return 'S';
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
        if (c == 0x130 || c == 0x138 || c == 0x149 || c == 0x178) return c;
        return (c & 1) ? c - 1 : c;
    }
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
    if (c == 0x3C2) return 0x3A3;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    if (c >= 0x430 && c <= 0x44F) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    return c;
}

static uint32_t cp_lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c == 0x178) return 0xFF;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x130) return 'i';
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
        if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

static bool cp_cased(uint32_t c) { return cp_upper(c) != c || cp_lower(c) != c || c == 0xDF; }
static bool cp_alpha(uint32_t c) { return (c < 0x80) ? isalpha((int)c) != 0 : (cp_cased(c) || c >= 0x3040); }
static bool cp_digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* Byte offset of code point index `idx` (0..count) in s[0..n). */
static size_t u8_offset(const char *s, size_t n, size_t idx) {
    if (all_ascii(s, n)) return idx < n ? idx : n;
    size_t i = 0;
    for (size_t c = 0; c < idx && i < n; c++) u8_next(s, n, &i);
    return i;
}

/* ==============================================================================================
 * Printing values: Python str() and repr(), and json.dumps
 * ============================================================================================ */

/* Python's repr(float): the shortest digits that round-trip, fixed notation for exponents in
 * [-4, 16), else d.ddde+XX. json=true gives json.dumps' NaN / Infinity spellings. */
static void fmt_float(double d, char *out, size_t size, bool json) {
    if (isnan(d)) { snprintf(out, size, "%s", json ? "NaN" : "nan"); return; }
    if (isinf(d)) { snprintf(out, size, "%s", d > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf")); return; }
    if (d == 0) { snprintf(out, size, "%s", signbit(d) ? "-0.0" : "0.0"); return; }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    /* e = [-]D[.DDD]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < sizeof digits - 1) digits[nd++] = *p;
    digits[nd] = 0;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    size_t o = 0;
    char buf[64];
    if (neg) buf[o++] = '-';
    if (exp10 >= -5 + 1 && exp10 < 16) {
        if (exp10 >= 0) {
            for (int i = 0; i <= exp10; i++) buf[o++] = (size_t)i < nd ? digits[i] : '0';
            buf[o++] = '.';
            if ((size_t)exp10 + 1 < nd) for (size_t i = (size_t)exp10 + 1; i < nd; i++) buf[o++] = digits[i];
            else buf[o++] = '0';
        } else {
            buf[o++] = '0', buf[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) buf[o++] = '0';
            for (size_t i = 0; i < nd; i++) buf[o++] = digits[i];
        }
        buf[o] = 0;
    } else {
        buf[o++] = digits[0];
        if (nd > 1) {
            buf[o++] = '.';
            for (size_t i = 1; i < nd; i++) buf[o++] = digits[i];
        }
        snprintf(buf + o, sizeof buf - o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    snprintf(out, size, "%s", buf);
}

static void put_repr(J *j, sbuf *b, jv v, int depth);

/* Python repr of a str: single quotes unless it holds ' and no ". */
static void put_str_repr(J *j, sbuf *b, const char *s, size_t n) {
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = (sq && !dq) ? '"' : '\'';
    sb_putc(j, b, q);
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = u8_next(s, n, &i);
        if (c == (uint32_t)q || c == '\\') { sb_putc(j, b, '\\'); sb_putc(j, b, (char)c); }
        else if (c == '\n') sb_puts(j, b, "\\n");
        else if (c == '\r') sb_puts(j, b, "\\r");
        else if (c == '\t') sb_puts(j, b, "\\t");
        else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0)) sb_printf(j, b, "\\x%02x", (unsigned)c);
        else sb_put(j, b, s + st, i - st);
    }
    sb_putc(j, b, q);
}

/* Python str() of a value, as {{ }} prints it. */
static void put_str(J *j, sbuf *b, jv v, int depth) {
    char tmp[64];
    switch (v.t) {
    case V_UNDEF: return;
    case V_NONE: sb_puts(j, b, "None"); return;
    case V_BOOL: sb_puts(j, b, v.v.b ? "True" : "False"); return;
    case V_INT: sb_printf(j, b, "%" PRId64, v.v.i); return;
    case V_FLOAT: fmt_float(v.v.f, tmp, sizeof tmp, false); sb_puts(j, b, tmp); return;
    case V_STR: sb_put(j, b, v.v.s.p, v.v.s.n); return;
    case V_NS:
        sb_puts(j, b, "<Namespace ");
        put_repr(j, b, mk_dict(v.v.d), depth);
        sb_putc(j, b, '>');
        return;
    case V_MACRO: sb_printf(j, b, "<Macro '%s'>", v.v.m->name); return;
    case V_FUNC: sb_puts(j, b, "<function>"); return;
    case V_METHOD: sb_printf(j, b, "<built-in method %s>", v.v.me->name); return;
    case V_LOOP: sb_puts(j, b, "<LoopContext>"); return;
    case V_LIST:
        if (v.gen) {
            sb_puts(j, b, "<generator object>");
            return;
        }
        /* fall through */
    default: put_repr(j, b, v, depth); return;
    }
}

/* Python repr(v) (for lists and dicts printed by {{ }}); depth bounds recursion. */
static void put_repr(J *j, sbuf *b, jv v, int depth) {
    if (depth > j->lim.max_depth) fail_raw(j, "template error: a value is nested too deeply to print");
    switch (v.t) {
    case V_STR: put_str_repr(j, b, v.v.s.p, v.v.s.n); return;
    case V_LIST:
        if (v.gen) {
            sb_puts(j, b, "<generator object>");
            return;
        }
        sb_putc(j, b, v.tuple ? '(' : '[');
        for (size_t i = 0; i < v.v.l->n; i++) {
            if (i) sb_puts(j, b, ", ");
            put_repr(j, b, v.v.l->a[i], depth + 1);
        }
        if (v.tuple && v.v.l->n == 1) sb_putc(j, b, ',');
        sb_putc(j, b, v.tuple ? ')' : ']');
        return;
    case V_DICT:
        sb_putc(j, b, '{');
        for (size_t i = 0; i < v.v.d->n; i++) {
            if (i) sb_puts(j, b, ", ");
            put_repr(j, b, v.v.d->k[i], depth + 1);
            sb_puts(j, b, ": ");
            put_repr(j, b, v.v.d->v[i], depth + 1);
        }
        sb_putc(j, b, '}');
        return;
    case V_UNDEF: sb_puts(j, b, "Undefined"); return;
    default: put_str(j, b, v, depth); return;
    }
}

/* str(v) as a string value (no copy for strings). */
static jv to_str(J *j, jv v) {
    if (v.t == V_STR) return v;
    if (v.t == V_UNDEF) return mk_str("", 0);
    sbuf b = {0};
    put_str(j, &b, v, 0);
    return mk_sbuf(&b);
}

/* json.dumps options (transformers' tojson: ensure_ascii=False by default). */
typedef struct json_opts {
    bool ensure_ascii, sort_keys;
    const char *indent; /* NULL = single line */
    size_t indent_n;
    jv item_sep, key_sep;
} json_opts;

static void put_json_str(J *j, sbuf *b, const char *s, size_t n, bool ensure_ascii) {
    sb_putc(j, b, '"');
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = u8_next(s, n, &i);
        switch (c) {
        case '"': sb_puts(j, b, "\\\""); break;
        case '\\': sb_puts(j, b, "\\\\"); break;
        case '\n': sb_puts(j, b, "\\n"); break;
        case '\r': sb_puts(j, b, "\\r"); break;
        case '\t': sb_puts(j, b, "\\t"); break;
        case '\b': sb_puts(j, b, "\\b"); break;
        case '\f': sb_puts(j, b, "\\f"); break;
        default:
            if (c < 0x20) sb_printf(j, b, "\\u%04x", (unsigned)c);
            else if (c >= 0x80 && ensure_ascii) {
                if (c >= 0x10000) {
                    uint32_t v = c - 0x10000;
                    sb_printf(j, b, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)), (unsigned)(0xDC00 + (v & 0x3FF)));
                } else sb_printf(j, b, "\\u%04x", (unsigned)c);
            } else sb_put(j, b, s + st, i - st);
        }
    }
    sb_putc(j, b, '"');
}

static void json_newline(J *j, sbuf *b, const json_opts *o, int level) {
    sb_putc(j, b, '\n');
    for (int i = 0; i < level; i++) sb_put(j, b, o->indent, o->indent_n);
}

static int cmp_values(J *j, size_t off, jv a, jv b, int depth);

/* json.dumps(v) with o's options into b; tuples are arrays; undefined and others raise. */
static void put_json(J *j, sbuf *b, jv v, const json_opts *o, int level, size_t off) {
    char tmp[64];
    if (level > j->lim.max_depth) fail_at(j, off, "tojson: the value is nested too deeply");
    switch (v.t) {
    case V_NONE: sb_puts(j, b, "null"); return;
    case V_BOOL: sb_puts(j, b, v.v.b ? "true" : "false"); return;
    case V_INT: sb_printf(j, b, "%" PRId64, v.v.i); return;
    case V_FLOAT: fmt_float(v.v.f, tmp, sizeof tmp, true); sb_puts(j, b, tmp); return;
    case V_STR: put_json_str(j, b, v.v.s.p, v.v.s.n, o->ensure_ascii); return;
    case V_LIST: {
        if (v.gen) fail_at(j, off, "Object of type generator is not JSON serializable");
        if (!v.v.l->n) { sb_puts(j, b, "[]"); return; }
        sb_putc(j, b, '[');
        for (size_t i = 0; i < v.v.l->n; i++) {
            if (i) sb_put(j, b, o->item_sep.v.s.p, o->item_sep.v.s.n);
            if (o->indent) json_newline(j, b, o, level + 1);
            put_json(j, b, v.v.l->a[i], o, level + 1, off);
        }
        if (o->indent) json_newline(j, b, o, level);
        sb_putc(j, b, ']');
        return;
    }
    case V_DICT: {
        jdict *d = v.v.d;
        if (!d->n) { sb_puts(j, b, "{}"); return; }
        size_t *order = ar_array(j, d->n, sizeof *order);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) /* insertion sort: stable, and may fail (longjmp) safely */
            for (size_t i = 1; i < d->n; i++)
                for (size_t k = i; k > 0 && cmp_values(j, off, d->k[order[k - 1]], d->k[order[k]], 0) > 0; k--) {
                    size_t t = order[k]; order[k] = order[k - 1]; order[k - 1] = t;
                }
        sb_putc(j, b, '{');
        for (size_t ii = 0; ii < d->n; ii++) {
            size_t i = order[ii];
            if (ii) sb_put(j, b, o->item_sep.v.s.p, o->item_sep.v.s.n);
            if (o->indent) json_newline(j, b, o, level + 1);
            jv k = d->k[i];
            if (k.t == V_STR) put_json_str(j, b, k.v.s.p, k.v.s.n, o->ensure_ascii);
            else if (k.t == V_INT || k.t == V_FLOAT || k.t == V_BOOL || k.t == V_NONE) {
                sb_putc(j, b, '"');
                put_json(j, b, k, o, level + 1, off);
                sb_putc(j, b, '"');
            } else fail_at(j, off, "keys must be str, int, float, bool or None, not %s", type_name(k));
            sb_put(j, b, o->key_sep.v.s.p, o->key_sep.v.s.n);
            put_json(j, b, d->v[i], o, level + 1, off);
        }
        if (o->indent) json_newline(j, b, o, level);
        sb_putc(j, b, '}');
        return;
    }
    default: fail_at(j, off, "Object of type %s is not JSON serializable", type_name(v));
    }
}

/* ==============================================================================================
 * Lexer
 * ============================================================================================ */

static bool ws_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static tok *push_tok(J *j, uint8_t t, size_t off) {
    vec_grow(j, (void **)&j->toks, &j->tcap, j->ntoks, sizeof(tok));
    tok *k = &j->toks[j->ntoks++];
    memset(k, 0, sizeof *k);
    k->t = t, k->off = off;
    return k;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes a string literal body s[0..n) with Python's unicode-escape rules (\n \t \\ \' \" \a \b
 * \f \r \v \ooo \xhh \uhhhh \Uhhhhhhhh, backslash-newline; unknown escapes stay as written). */
static void decode_string(J *j, tok *k, const char *s, size_t n, size_t off) {
    if (!memchr(s, '\\', n)) {
        k->p = s, k->n = n;
        return;
    }
    char *o = ar_alloc(j, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[m++] = s[i];
            continue;
        }
        char c = s[++i];
        uint32_t cp;
        int want = 0;
        switch (c) {
        case 'n': o[m++] = '\n'; break;
        case 't': o[m++] = '\t'; break;
        case 'r': o[m++] = '\r'; break;
        case '\\': o[m++] = '\\'; break;
        case '\'': o[m++] = '\''; break;
        case '"': o[m++] = '"'; break;
        case 'a': o[m++] = '\a'; break;
        case 'b': o[m++] = '\b'; break;
        case 'f': o[m++] = '\f'; break;
        case 'v': o[m++] = '\v'; break;
        case '\n': break;
        case 'x': want = 2; break;
        case 'u': want = 4; break;
        case 'U': want = 8; break;
        case 'N': fail_syntax(j, off, "\\N{...} escapes are not supported");
        default:
            if (c >= '0' && c <= '7') {
                cp = (uint32_t)(c - '0');
                for (int d = 0; d < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; d++) cp = cp * 8 + (uint32_t)(s[++i] - '0');
                m += u8_encode(cp, o + m);
            } else {
                o[m++] = '\\';
                o[m++] = c;
            }
        }
        if (want) {
            cp = 0;
            for (int d = 0; d < want; d++) {
                int h = i + 1 < n ? hexval(s[i + 1]) : -1;
                if (h < 0) fail_syntax(j, off, "truncated \\%c escape in a string", c);
                cp = cp * 16 + (uint32_t)h;
                i++;
            }
            if (cp > 0x10FFFF) fail_syntax(j, off, "illegal Unicode character in a string");
            m += u8_encode(cp, o + m); /* at most 4 bytes for >= 6 source bytes */
        }
    }
    o[m] = 0;
    k->p = o, k->n = m;
}

/* End of the digit run `(\d+_)*\d+` starting at s[i] (i itself when there is none). */
static size_t digits_us(const char *s, size_t n, size_t i) {
    size_t k = i;
    if (k >= n || !isdigit((unsigned char)s[k])) return i;
    while (k < n && isdigit((unsigned char)s[k])) k++;
    while (k + 1 < n && s[k] == '_' && isdigit((unsigned char)s[k + 1]))
        for (k++; k < n && isdigit((unsigned char)s[k]); k++) {}
    return k;
}

/* jinja2's float literal at s[i]: digits, then a fraction and/or an exponent ("1.5", "2e-3",
 * "1_0.5e1_0"), never right after a '.'. Returns its end, or 0. */
static size_t match_float(const char *s, size_t n, size_t i) {
    if (i > 0 && s[i - 1] == '.') return 0;
    size_t a = digits_us(s, n, i);
    if (a == i) return 0;
    size_t k = a;
    if (k < n && s[k] == '.' && digits_us(s, n, k + 1) > k + 1) k = digits_us(s, n, k + 1);
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        size_t q = k + 1;
        if (q < n && (s[q] == '+' || s[q] == '-')) q++;
        size_t e = digits_us(s, n, q);
        if (e > q) return e;
    }
    if (a < n && s[a] == '.' && digits_us(s, n, a + 1) > a + 1) return digits_us(s, n, a + 1);
    return 0;
}

/* jinja2's integer literal at s[i] (a digit): 0b.. 0o.. 0x.. (underscores between digits),
 * [1-9](_?\d)*, or 0(_?0)*; so "007" is "00" followed by another number. *base is set. */
static size_t match_int(const char *s, size_t n, size_t i, int *base) {
    if (s[i] == '0' && i + 2 < n && strchr("bBoOxX", s[i + 1])) {
        int b = (s[i + 1] | 0x20) == 'b' ? 2 : (s[i + 1] | 0x20) == 'o' ? 8 : 16;
        size_t k = i + 2, groups = 0;
        for (;;) {
            size_t q = k < n && s[k] == '_' ? k + 1 : k;
            int h = q < n ? hexval(s[q]) : -1;
            if (h < 0 || h >= b) break;
            k = q + 1, groups++;
        }
        if (groups) {
            *base = b;
            return k;
        }
    }
    *base = 10;
    size_t k = i + 1;
    char lo = s[i] == '0' ? '0' : '0', hi = s[i] == '0' ? '0' : '9';
    for (;;) {
        size_t q = k < n && s[k] == '_' ? k + 1 : k;
        if (q < n && s[q] >= lo && s[q] <= hi) k = q + 1;
        else return k;
    }
}

/* s[0..n) without underscores, NUL-terminated (arena). */
static const char *digits_only(J *j, const char *s, size_t n) {
    char *o = ar_alloc(j, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '_') o[m++] = s[i];
    o[m] = 0;
    return o;
}

/* Lexes the inside of a {{ }} or {% %} tag (starting at tag_off) from *pos; emits expression tokens and the end token.
 * Returns what the following data should have stripped: 0 nothing, 1 all leading whitespace ('-'),
 * 2 one newline (trim_blocks). */
static int lex_tag(J *j, size_t tag_off, size_t *pos, bool block) {
    const char *s = j->src;
    size_t n = j->src_len, i = *pos;
    int depth = 0;
    for (;;) {
        while (i < n && ws_char(s[i])) i++;
        if (i >= n) fail_syntax(j, tag_off, "unexpected end of template: the tag is not closed with '%s'", block ? "%}" : "}}");
        if (depth == 0) {
            int lead = -1;
            size_t len = 0;
            if (block) {
                if (s[i] == '-' && i + 2 < n + 0 && s[i + 1] == '%' && s[i + 2] == '}') lead = 1, len = 3;
                else if (s[i] == '+' && i + 2 < n && s[i + 1] == '%' && s[i + 2] == '}') lead = 0, len = 3;
                else if (s[i] == '%' && i + 1 < n && s[i + 1] == '}') lead = 2, len = 2;
            } else {
                if (s[i] == '-' && i + 2 < n && s[i + 1] == '}' && s[i + 2] == '}') lead = 1, len = 3;
                else if (s[i] == '}' && i + 1 < n && s[i + 1] == '}') lead = 0, len = 2;
            }
            if (lead >= 0) {
                push_tok(j, block ? T_BEND : T_VEND, i);
                *pos = i + len;
                return lead;
            }
        }
        char c = s[i];
        size_t st = i;
        if (c == '\'' || c == '"') {
            i++;
            while (i < n && s[i] != c) i += (s[i] == '\\' && i + 1 < n) ? 2 : 1;
            if (i >= n) fail_syntax(j, st, "unterminated string");
            tok *k = push_tok(j, T_STR, st);
            decode_string(j, k, s + st + 1, i - st - 1, st);
            i++;
        } else if (c >= '0' && c <= '9') {
            size_t end;
            tok *k = push_tok(j, T_INT, st);
            if ((end = match_float(s, n, i))) {
                k->t = T_FLOAT;
                k->fv = strtod(digits_only(j, s + i, end - i), NULL);
            } else {
                int base = 10;
                end = match_int(s, n, i, &base);
                const char *d = digits_only(j, s + i + (base != 10 ? 2 : 0), end - i - (base != 10 ? 2 : 0));
                uint64_t v = 0;
                for (; *d; d++) {
                    uint64_t h = (uint64_t)hexval(*d);
                    if (v > ((uint64_t)INT64_MAX - h) / (uint64_t)base) fail_syntax(j, st, "integer literal too large");
                    v = v * (uint64_t)base + h;
                }
                k->iv = (int64_t)v;
            }
            i = end;
        } else if (c == '_' || isalpha((unsigned char)c) || (unsigned char)c >= 0x80) {
            while (i < n && (s[i] == '_' || isalnum((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)) i++;
            tok *k = push_tok(j, T_NAME, st);
            k->p = ar_strndup(j, s + st, i - st);
            k->n = i - st;
        } else {
            char op = 0;
            char c2 = i + 1 < n ? s[i + 1] : 0;
            if (c == '/' && c2 == '/') op = OP_FLOORDIV;
            else if (c == '*' && c2 == '*') op = OP_POW;
            else if (c == '=' && c2 == '=') op = OP_EQ;
            else if (c == '!' && c2 == '=') op = OP_NE;
            else if (c == '<' && c2 == '=') op = OP_LE;
            else if (c == '>' && c2 == '=') op = OP_GE;
            if (op) i += 2;
            else if (strchr("+-*/%~<>=()[]{},.:|", c)) op = c, i++;
            else fail_syntax(j, st, "unexpected character '%c'", c);
            if (op == '(' || op == '[' || op == '{') depth++;
            else if ((op == ')' || op == ']' || op == '}') && depth > 0) depth--;
            push_tok(j, T_OP, st)->op = op;
        }
    }
}

/* If a block tag starting at s[i] (just after "{%" and its modifier) is `raw`, returns the offset
 * just after its closing "%}" and sets *strip when it closed with "-%}"; else returns 0. */
static size_t match_word_tag(const J *j, size_t i, const char *word, bool *strip) {
    const char *s = j->src;
    size_t n = j->src_len, wl = strlen(word);
    while (i < n && ws_char(s[i])) i++;
    if (i + wl > n || memcmp(s + i, word, wl)) return 0;
    i += wl;
    if (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
    while (i < n && ws_char(s[i])) i++;
    *strip = false;
    if (i < n && (s[i] == '-' || s[i] == '+')) *strip = s[i] == '-', i++;
    if (i + 1 < n && s[i] == '%' && s[i + 1] == '}') return i + 2;
    return 0;
}

/* Splits the normalized template into data and tag tokens, applying jinja2's whitespace control:
 * "{%-"/"{{-"/"{#-" strip whitespace before the tag, "-%}"/"-}}"/"-#}" after it; trim_blocks drops
 * the first newline after a block or comment tag; lstrip_blocks drops spaces and tabs between the
 * start of a line and a block or comment tag ("{%+" / "+%}" disable those two). */
static void lex(J *j) {
    const char *s = j->src;
    size_t n = j->src_len, pos = 0;
    int lead = 0;
    bool line_start = true;
    for (;;) {
        size_t t = pos;
        while (t + 1 < n && !(s[t] == '{' && (s[t + 1] == '{' || s[t + 1] == '%' || s[t + 1] == '#'))) t++;
        if (t + 1 >= n) t = n;
        size_t ds = pos, de = t;
        if (lead == 1) {
            while (ds < de && ws_char(s[ds])) ds++;
            if (ds > pos && s[ds - 1] == '\n') line_start = true;
        } else if (lead == 2 && ds < de && s[ds] == '\n') {
            ds++;
            line_start = true;
        }
        if (t < n) {
            char kind = s[t + 1], mod = t + 2 < n ? s[t + 2] : 0;
            if (mod == '-') {
                while (de > ds && ws_char(s[de - 1])) de--;
            } else if (mod != '+' && kind != '{') {
                size_t k = de;
                while (k > ds && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
                if ((k > ds && s[k - 1] == '\n') || (k == ds && line_start)) de = k;
            }
        }
        if (de > ds) {
            tok *k = push_tok(j, T_DATA, ds);
            k->p = s + ds, k->n = de - ds;
        }
        if (t >= n) break;
        line_start = false;
        char kind = s[t + 1];
        size_t i = t + 2;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        if (kind == '#') {
            if (i >= n) break; /* jinja2 drops a "{#" that ends the template */
            size_t q = i;
            while (q + 1 < n && !(s[q] == '#' && s[q + 1] == '}')) q++;
            if (q + 1 >= n) fail_syntax(j, t, "unexpected end of template: the comment is not closed with '#}'");
            lead = (q > i && s[q - 1] == '-') ? 1 : (q > i && s[q - 1] == '+') ? 0 : 2;
            pos = q + 2;
        } else if (kind == '{') {
            push_tok(j, T_VBEGIN, t);
            pos = i;
            lead = lex_tag(j, t, &pos, false);
        } else {
            bool strip;
            size_t after = match_word_tag(j, i, "raw", &strip);
            if (after) {
                /* {% raw %}...{% endraw %}: the body is data, verbatim */
                size_t q = after, body_end = 0, end_after = 0;
                bool end_strip = false, pre_strip = false;
                for (; q + 1 < n; q++) {
                    if (s[q] != '{' || s[q + 1] != '%') continue;
                    size_t r = q + 2;
                    bool minus = r < n && s[r] == '-';
                    if (r < n && (s[r] == '-' || s[r] == '+')) r++;
                    size_t e = match_word_tag(j, r, "endraw", &end_strip);
                    if (e) {
                        body_end = q, end_after = e, pre_strip = minus;
                        break;
                    }
                }
                if (!end_after) fail_syntax(j, t, "unexpected end of template: missing '{%% endraw %%}'");
                size_t bs = after, be = body_end;
                if (strip) while (bs < be && ws_char(s[bs])) bs++;
                if (pre_strip) while (be > bs && ws_char(s[be - 1])) be--;
                else {
                    size_t k = be;
                    while (k > bs && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
                    if (k > bs && s[k - 1] == '\n') be = k;
                }
                if (be > bs) {
                    tok *k = push_tok(j, T_DATA, bs);
                    k->p = s + bs, k->n = be - bs;
                }
                lead = end_strip ? 1 : 2;
                pos = end_after;
                continue;
            }
            push_tok(j, T_BBEGIN, t);
            pos = i;
            lead = lex_tag(j, t, &pos, true);
        }
    }
    push_tok(j, T_EOF, n);
}

/* ==============================================================================================
 * Parser (recursive descent, jinja2's grammar and precedence)
 * ============================================================================================ */

#define MAX_PARSE_DEPTH 200

static tok *cur(J *j) { return &j->toks[j->tp]; }
static tok *look(J *j, size_t ahead) {
    size_t i = j->tp + ahead;
    return &j->toks[i < j->ntoks ? i : j->ntoks - 1];
}
static void advance(J *j) {
    if (j->toks[j->tp].t != T_EOF) j->tp++;
}
static bool is_op(const tok *k, char op) { return k->t == T_OP && k->op == op; }
static bool is_kw(const tok *k, const char *w) { return k->t == T_NAME && !strcmp(k->p, w); }
static bool accept_op(J *j, char op) {
    if (!is_op(cur(j), op)) return false;
    advance(j);
    return true;
}
static bool accept_kw(J *j, const char *w) {
    if (!is_kw(cur(j), w)) return false;
    advance(j);
    return true;
}

/* A short description of a token, for messages. */
static const char *tok_desc(J *j, const tok *k) {
    switch (k->t) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VBEGIN: return "'{{'";
    case T_VEND: return "'}}'";
    case T_BBEGIN: return "'{%'";
    case T_BEND: return "'%}'";
    case T_NAME: {
        char *b = ar_alloc(j, k->n + 3);
        snprintf(b, k->n + 3, "'%s'", k->p);
        return b;
    }
    case T_STR: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    case T_OP: {
        static const struct { char op; const char *s; } ops[] = {
            {OP_FLOORDIV, "'//'"}, {OP_POW, "'**'"}, {OP_EQ, "'=='"}, {OP_NE, "'!='"}, {OP_LE, "'<='"}, {OP_GE, "'>='"}};
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            if (ops[i].op == k->op) return ops[i].s;
        char *b = ar_alloc(j, 4);
        b[0] = '\'', b[1] = k->op, b[2] = '\'', b[3] = 0;
        return b;
    }
    }
    return "?";
}

_Noreturn static void fail_expected(J *j, const char *what) {
    fail_syntax(j, cur(j)->off, "expected %s, got %s", what, tok_desc(j, cur(j)));
}

static void expect_op(J *j, char op, const char *what) {
    if (!accept_op(j, op)) fail_expected(j, what);
}

static const char *expect_name(J *j, const char *what) {
    tok *k = cur(j);
    if (k->t != T_NAME) fail_expected(j, what);
    advance(j);
    return k->p;
}

static node *new_node(J *j, uint8_t kind, size_t off) {
    node *n = ar_zalloc(j, sizeof *n);
    n->k = kind, n->off = off;
    return n;
}

static void push_arg(J *j, node *n, const char *kw, uint8_t star, node *e, size_t *cap) {
    vec_grow(j, (void **)&n->args, cap, n->nargs, sizeof(arg));
    n->args[n->nargs++] = (arg){kw, star, e};
}

static void push_stmt(J *j, node ***arr, size_t *n, size_t *cap, node *s) {
    vec_grow(j, (void **)arr, cap, *n, sizeof(node *));
    (*arr)[(*n)++] = s;
}

static void enter(J *j) {
    if (++j->pdepth > MAX_PARSE_DEPTH) fail_syntax(j, cur(j)->off, "the template is nested too deeply");
}
static void leave(J *j) { j->pdepth--; }

static const char *in_names(const char *const *list, const char *name);
static const char *const CONST_NAMES[] = {"true", "false", "none", "True", "False", "None", NULL};
static node *p_expr(J *j);
static node *p_or(J *j);
static node *p_unary(J *j, bool with_filter);
static node *p_primary(J *j);
static node *p_postfix(J *j, node *n);
static node *p_filter_expr(J *j, node *n);
static bool known_filter(const char *name);
static bool known_test(const char *name);

/* tuple parsing: `a, b` (or a single expression). explicit: inside parentheses. with_cond: allow
 * `x if c else y` at the top. Stops before end tokens and before the name `stop` (e.g. "recursive"). */
static node *p_tuple(J *j, bool explicit, bool with_cond, const char *stop) {
    size_t off = cur(j)->off, cap = 0;
    node *t = new_node(j, E_TUPLE, off);
    bool is_tuple = false;
    for (;;) {
        if (t->nargs) expect_op(j, ',', "','");
        tok *k = cur(j);
        if (k->t == T_VEND || k->t == T_BEND || k->t == T_EOF || is_op(k, ')') || is_op(k, '=') ||
            (stop && is_kw(k, stop)) || (!with_cond && is_kw(k, "if")))
            break;
        node *e = with_cond ? p_expr(j) : p_or(j);
        push_arg(j, t, NULL, 0, e, &cap);
        if (is_op(cur(j), ',')) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (t->nargs) return t->args[0].e;
        if (!explicit) fail_expected(j, "an expression");
    }
    return t;
}

/* Expression grammar, loosest first (jinja2's):
 *   expr    := or ('if' or ('else' expr)?)*          conditional expression
 *   or      := and ('or' and)* ; and := not ('and' not)* ; not := 'not' not | compare
 *   compare := math1 (('=='|'!='|'<'|'>'|'<='|'>='|'in'|'not' 'in') math1)*   (chained)
 *   math1   := concat (('+'|'-') concat)* ; concat := math2 ('~' math2)*
 *   math2   := pow (('*'|'/'|'//'|'%') pow)* ; pow := unary ('**' unary)*
 *   unary   := ('-'|'+') unary-without-filters | primary postfix* ('|' filter | 'is' test | call)*
 * so `-x|abs` is abs(-x), `-2 ** 2` is 4 and `a ~ b + c` is a ~ (b + c), as in jinja2. */
static node *p_expr(J *j) {
    enter(j);
    node *e = p_or(j);
    while (is_kw(cur(j), "if")) {
        size_t off = cur(j)->off;
        advance(j);
        node *c = new_node(j, E_COND, off);
        c->a = e;
        c->b = p_or(j);
        if (accept_kw(j, "else")) c->c = p_expr(j);
        e = c;
    }
    leave(j);
    return e;
}

static node *binary(J *j, uint8_t kind, char op, node *a, node *b, size_t off) {
    node *n = new_node(j, kind, off);
    n->op = op, n->a = a, n->b = b;
    return n;
}

static node *p_not(J *j);
static node *p_and(J *j) {
    node *a = p_not(j);
    while (is_kw(cur(j), "and")) {
        size_t off = cur(j)->off;
        advance(j);
        a = binary(j, E_AND, 0, a, p_not(j), off);
    }
    return a;
}
static node *p_or(J *j) {
    enter(j);
    node *a = p_and(j);
    while (is_kw(cur(j), "or")) {
        size_t off = cur(j)->off;
        advance(j);
        a = binary(j, E_OR, 0, a, p_and(j), off);
    }
    leave(j);
    return a;
}

static node *p_compare(J *j);
static node *p_not(J *j) {
    if (is_kw(cur(j), "not")) {
        size_t off = cur(j)->off;
        advance(j);
        enter(j);
        node *n = new_node(j, E_NOT, off);
        n->a = p_not(j);
        leave(j);
        return n;
    }
    return p_compare(j);
}

static node *p_math1(J *j);
static node *p_compare(J *j) {
    node *a = p_math1(j);
    node *c = NULL;
    size_t cap = 0, ocap = 0;
    for (;;) {
        tok *k = cur(j);
        char op = 0;
        if (k->t == T_OP && (k->op == OP_EQ || k->op == OP_NE || k->op == '<' || k->op == '>' || k->op == OP_LE || k->op == OP_GE))
            op = k->op, advance(j);
        else if (is_kw(k, "in")) op = OP_IN, advance(j);
        else if (is_kw(k, "not") && is_kw(look(j, 1), "in")) op = OP_NOTIN, advance(j), advance(j);
        else break;
        if (!c) {
            c = new_node(j, E_CMP, k->off);
            c->a = a;
        }
        node *b = p_math1(j);
        vec_grow(j, (void **)&c->ops, &ocap, c->nargs, 1);
        c->ops[c->nargs] = op;
        push_arg(j, c, NULL, 0, b, &cap);
    }
    return c ? c : a;
}

static node *p_concat(J *j);
static node *p_math1(J *j) {
    node *a = p_concat(j);
    while (is_op(cur(j), '+') || is_op(cur(j), '-')) {
        tok *k = cur(j);
        advance(j);
        a = binary(j, E_BIN, k->op, a, p_concat(j), k->off);
    }
    return a;
}

static node *p_math2(J *j);
static node *p_concat(J *j) {
    node *a = p_math2(j);
    if (!is_op(cur(j), '~')) return a;
    node *c = new_node(j, E_CONCAT, cur(j)->off);
    size_t cap = 0;
    push_arg(j, c, NULL, 0, a, &cap);
    while (accept_op(j, '~')) push_arg(j, c, NULL, 0, p_math2(j), &cap);
    return c;
}

static node *p_pow(J *j);
static node *p_math2(J *j) {
    node *a = p_pow(j);
    for (;;) {
        tok *k = cur(j);
        if (!(k->t == T_OP && (k->op == '*' || k->op == '/' || k->op == OP_FLOORDIV || k->op == '%'))) break;
        advance(j);
        a = binary(j, E_BIN, k->op, a, p_pow(j), k->off);
    }
    return a;
}

static node *p_pow(J *j) {
    node *a = p_unary(j, true);
    while (is_op(cur(j), OP_POW)) {
        size_t off = cur(j)->off;
        advance(j);
        a = binary(j, E_BIN, OP_POW, a, p_unary(j, true), off);
    }
    return a;
}

static node *p_unary(J *j, bool with_filter) {
    enter(j);
    tok *k = cur(j);
    node *n;
    if (is_op(k, '-') || is_op(k, '+')) {
        advance(j);
        n = new_node(j, k->op == '-' ? E_NEG : E_POS, k->off);
        n->a = p_unary(j, false);
    } else n = p_primary(j);
    n = p_postfix(j, n);
    if (with_filter) n = p_filter_expr(j, n);
    leave(j);
    return n;
}

static node *p_primary(J *j) {
    tok *k = cur(j);
    node *n;
    switch (k->t) {
    case T_NAME:
        advance(j);
        if (!strcmp(k->p, "true") || !strcmp(k->p, "True") || !strcmp(k->p, "false") || !strcmp(k->p, "False")) {
            n = new_node(j, E_CONST, k->off);
            n->lit = mk_bool(k->p[0] == 't' || k->p[0] == 'T');
        } else if (!strcmp(k->p, "none") || !strcmp(k->p, "None")) {
            n = new_node(j, E_CONST, k->off);
            n->lit = mk_none();
        } else {
            n = new_node(j, E_NAME, k->off);
            n->name = k->p;
            if (j->mflags) {
                if (!strcmp(k->p, "varargs")) *j->mflags |= MF_VARARGS;
                else if (!strcmp(k->p, "kwargs")) *j->mflags |= MF_KWARGS;
                else if (!strcmp(k->p, "caller")) *j->mflags |= MF_CALLER;
            }
        }
        return n;
    case T_STR: {
        advance(j);
        n = new_node(j, E_CONST, k->off);
        if (cur(j)->t != T_STR) {
            n->lit = mk_str(k->p, k->n);
            return n;
        }
        sbuf b = {0}; /* adjacent literals concatenate */
        sb_put(j, &b, k->p, k->n);
        while (cur(j)->t == T_STR) {
            sb_put(j, &b, cur(j)->p, cur(j)->n);
            advance(j);
        }
        n->lit = mk_sbuf(&b);
        return n;
    }
    case T_INT:
        advance(j);
        n = new_node(j, E_CONST, k->off);
        n->lit = mk_int(k->iv);
        return n;
    case T_FLOAT:
        advance(j);
        n = new_node(j, E_CONST, k->off);
        n->lit = mk_float(k->fv);
        return n;
    case T_OP:
        if (k->op == '(') {
            advance(j);
            n = p_tuple(j, true, true, NULL);
            expect_op(j, ')', "')'");
            return n;
        }
        if (k->op == '[') {
            advance(j);
            n = new_node(j, E_LIST, k->off);
            size_t cap = 0;
            while (!is_op(cur(j), ']')) {
                if (n->nargs) {
                    expect_op(j, ',', "',' or ']'");
                    if (is_op(cur(j), ']')) break;
                }
                push_arg(j, n, NULL, 0, p_expr(j), &cap);
            }
            advance(j);
            return n;
        }
        if (k->op == '{') {
            advance(j);
            n = new_node(j, E_DICT, k->off);
            size_t cap = 0;
            while (!is_op(cur(j), '}')) {
                if (n->nargs) {
                    expect_op(j, ',', "',' or '}'");
                    if (is_op(cur(j), '}')) break;
                }
                node *key = p_expr(j);
                expect_op(j, ':', "':'");
                push_arg(j, n, NULL, 0, key, &cap);
                push_arg(j, n, NULL, 0, p_expr(j), &cap);
            }
            advance(j);
            return n;
        }
        break;
    default: break;
    }
    fail_expected(j, "an expression");
}

/* ( args ) of a call, filter or test: positional, name=value, *list, **dict. */
static void p_call_args(J *j, node *n) {
    size_t cap = 0;
    bool star = false, dstar = false, kw_seen = false; /* jinja2's order: args, *a, kw=..., **k */
    expect_op(j, '(', "'('");
    while (!is_op(cur(j), ')')) {
        if (n->nargs) {
            expect_op(j, ',', "',' or ')'");
            if (is_op(cur(j), ')')) break;
        }
        size_t at = cur(j)->off;
        bool ok;
        if (accept_op(j, '*')) {
            ok = !star && !dstar, star = true;
            push_arg(j, n, NULL, 1, p_expr(j), &cap);
        } else if (accept_op(j, OP_POW)) {
            ok = !dstar, dstar = true;
            push_arg(j, n, NULL, 2, p_expr(j), &cap);
        } else if (cur(j)->t == T_NAME && is_op(look(j, 1), '=')) {
            const char *kw = cur(j)->p;
            ok = !dstar, kw_seen = true;
            advance(j), advance(j);
            push_arg(j, n, kw, 0, p_expr(j), &cap);
        } else {
            ok = !star && !dstar && !kw_seen;
            push_arg(j, n, NULL, 0, p_expr(j), &cap);
        }
        if (!ok) fail_syntax(j, at, "invalid syntax for function call expression");
    }
    advance(j);
}

/* After '[': x[i], x[] and x[a, b] (tuple index), or a slice x[a:b:c] with optional parts. */
static node *p_subscript(J *j, node *base, size_t off) {
    /* after '[': an index, or a slice [a:b:c] with optional parts */
    node *idx = NULL;
    if (is_op(cur(j), ']') || (!is_op(cur(j), ':') && (idx = p_expr(j), is_op(cur(j), ',')))) {
        /* x[] and x[a, b]: the index is a tuple */
        node *t = new_node(j, E_TUPLE, off);
        size_t tcap = 0;
        if (idx) push_arg(j, t, NULL, 0, idx, &tcap);
        while (accept_op(j, ',')) push_arg(j, t, NULL, 0, p_expr(j), &tcap);
        idx = t;
    }
    if (!is_op(cur(j), ':')) {
        expect_op(j, ']', "']'");
        node *n = new_node(j, E_ITEM, off);
        n->a = base, n->b = idx;
        return n;
    }
    if (idx && idx->k == E_TUPLE) fail_syntax(j, cur(j)->off, "slices inside tuple subscripts are not supported");
    node *n = new_node(j, E_SLICE, off);
    n->a = base;
    size_t cap = 0;
    push_arg(j, n, NULL, 0, idx, &cap);
    advance(j); /* ':' */
    push_arg(j, n, NULL, 0, (is_op(cur(j), ']') || is_op(cur(j), ':')) ? NULL : p_expr(j), &cap);
    node *step = NULL;
    if (accept_op(j, ':') && !is_op(cur(j), ']')) step = p_expr(j);
    push_arg(j, n, NULL, 0, step, &cap);
    expect_op(j, ']', "']'");
    return n;
}

static node *p_postfix(J *j, node *n) {
    for (;;) {
        tok *k = cur(j);
        if (is_op(k, '.')) {
            advance(j);
            tok *a = cur(j);
            if (a->t == T_NAME) {
                advance(j);
                node *m = new_node(j, E_ATTR, k->off);
                m->a = n, m->name = a->p;
                n = m;
            } else if (a->t == T_INT) {
                advance(j);
                node *m = new_node(j, E_ITEM, k->off);
                m->a = n;
                m->b = new_node(j, E_CONST, a->off);
                m->b->lit = mk_int(a->iv);
                n = m;
            } else fail_expected(j, "an attribute name");
        } else if (is_op(k, '[')) {
            advance(j);
            enter(j);
            n = p_subscript(j, n, k->off);
            leave(j);
        } else if (is_op(k, '(')) {
            node *m = new_node(j, E_CALL, k->off);
            m->a = n;
            enter(j);
            p_call_args(j, m);
            leave(j);
            n = m;
        } else return n;
    }
}

/* A dotted filter or test name (jinja2 allows "a.b"). */
static const char *p_dotted(J *j, const char *what) {
    const char *nm = expect_name(j, what);
    while (is_op(cur(j), '.') && look(j, 1)->t == T_NAME) {
        advance(j);
        const char *more = cur(j)->p;
        advance(j);
        size_t l = strlen(nm) + strlen(more) + 2;
        char *c = ar_alloc(j, l);
        snprintf(c, l, "%s.%s", nm, more);
        nm = c;
    }
    return nm;
}

/* | filter(args) ... ; base NULL makes a chain applied to a value given later (filter blocks). */
static node *p_filter(J *j, node *base) {
    size_t off = cur(j)->off;
    node *f = new_node(j, E_FILTER, off);
    f->a = base;
    f->name = p_dotted(j, "a filter name");
    f->lazy = !known_filter(f->name); /* checked after parsing (check_names) */
    if (is_op(cur(j), '(')) {
        enter(j);
        p_call_args(j, f);
        leave(j);
    }
    return f;
}

static node *p_test(J *j, node *base) {
    size_t off = cur(j)->off;
    node *t = new_node(j, E_TEST, off);
    t->a = base;
    t->flag = accept_kw(j, "not");
    t->name = p_dotted(j, "a test name");
    t->lazy = !known_test(t->name); /* checked after parsing (check_names) */
    tok *k = cur(j);
    if (is_op(k, '(')) {
        enter(j);
        p_call_args(j, t);
        leave(j);
    } else if ((k->t == T_NAME && !is_kw(k, "else") && !is_kw(k, "or") && !is_kw(k, "and")) || k->t == T_STR ||
               k->t == T_INT || k->t == T_FLOAT || is_op(k, '(') || is_op(k, '[') || is_op(k, '{')) {
        if (is_kw(k, "is")) fail_syntax(j, k->off, "You cannot chain multiple tests with is");
        size_t cap = 0;
        enter(j);
        node *a = p_postfix(j, p_primary(j));
        leave(j);
        push_arg(j, t, NULL, 0, a, &cap);
    }
    return t;
}

static node *p_filter_expr(J *j, node *n) {
    for (;;) {
        tok *k = cur(j);
        if (is_op(k, '|')) {
            advance(j);
            n = p_filter(j, n);
        } else if (is_kw(k, "is")) {
            advance(j);
            n = p_test(j, n);
        } else if (is_op(k, '(')) {
            node *m = new_node(j, E_CALL, k->off);
            m->a = n;
            enter(j);
            p_call_args(j, m);
            leave(j);
            n = m;
        } else return n;
    }
}

/* ---- statements ---- */

static void p_body(J *j, node ***body, size_t *nbody, const char *const *ends);

/* Names of an assignment target: a | a, b | (a, b). Returns the count; *tuple set when a tuple. */
static size_t p_targets(J *j, const char ***names, bool *tuple) {
    size_t n = 0, cap = 0;
    bool paren = accept_op(j, '(');
    *tuple = paren;
    for (;;) {
        vec_grow(j, (void **)names, &cap, n, sizeof(char *));
        size_t at = cur(j)->off;
        const char *nm = expect_name(j, "a variable name");
        if (in_names(CONST_NAMES, nm)) fail_syntax(j, at, "can't assign to 'const'");
        (*names)[n++] = nm;
        if (!accept_op(j, ',')) break;
        *tuple = true;
        if (paren && is_op(cur(j), ')')) break;
    }
    if (paren) expect_op(j, ')', "')'");
    return n;
}

static void expect_block_end(J *j) {
    if (cur(j)->t != T_BEND) fail_expected(j, "end of statement block '%}'");
    advance(j);
}

/* The end of a tag that opens a body: jinja2 allows a Python-style ':' before "%}". */
static void expect_body_start(J *j) {
    accept_op(j, ':');
    expect_block_end(j);
}

/* Parses `name(a, b=default, ...)` parameter lists of macros and call blocks into n. */
static void p_params(J *j, node *n) {
    size_t cap = 0, dcap = 0;
    expect_op(j, '(', "'('");
    while (!is_op(cur(j), ')')) {
        if (n->nnames) expect_op(j, ',', "',' or ')'");
        if (is_op(cur(j), ')')) break;
        size_t at = cur(j)->off;
        const char *p = expect_name(j, "a parameter name");
        if (in_names(CONST_NAMES, p)) fail_syntax(j, at, "can't assign to 'name'");
        node *d = NULL;
        if (accept_op(j, '=')) d = p_expr(j);
        else if (n->nnames && n->defs[n->nnames - 1]) fail_syntax(j, cur(j)->off, "non-default argument follows default argument");
        vec_grow(j, (void **)&n->names, &cap, n->nnames, sizeof(char *));
        vec_grow(j, (void **)&n->defs, &dcap, n->nnames, sizeof(node *));
        n->names[n->nnames] = p;
        n->defs[n->nnames++] = d;
    }
    advance(j);
}

static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_FOR2[] = {"endfor", NULL};
static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_IF2[] = {"endif", NULL};

/* After the end-tag name was consumed by p_body: the rest of the tag. */
static void end_tag(J *j) { expect_block_end(j); }

/* {% for targets in iterable [if cond] [recursive] %} body [{% else %} body] {% endfor %} */
static node *p_for(J *j, size_t off) {
    node *n = new_node(j, S_FOR, off);
    bool tuple;
    size_t at = cur(j)->off;
    n->nnames = p_targets(j, &n->names, &tuple);
    for (size_t i = 0; i < n->nnames; i++)
        if (!strcmp(n->names[i], "loop")) fail_syntax(j, at, "Can't assign to special loop variable in for-loop target");
    if (!accept_kw(j, "in")) fail_expected(j, "'in'");
    n->a = p_tuple(j, false, false, "recursive");
    if (accept_kw(j, "if")) n->b = p_expr(j);
    if (accept_kw(j, "recursive")) n->flag = 1;
    expect_body_start(j);
    j->in_loop++;
    p_body(j, &n->body, &n->nbody, END_FOR);
    j->in_loop--;
    if (!strcmp(j->toks[j->tp - 1].p, "else")) {
        expect_body_start(j);
        p_body(j, &n->els, &n->nels, END_FOR2);
    }
    end_tag(j);
    return n;
}

/* {% if c %} ... {% elif c %} ... {% else %} ... {% endif %}; an elif becomes a nested if in els. */
static node *p_if(J *j, size_t off) {
    node *n = new_node(j, S_IF, off);
    n->a = p_tuple(j, false, false, NULL); /* as jinja2: no inline if at the top of a condition */
    expect_body_start(j);
    p_body(j, &n->body, &n->nbody, END_IF);
    const char *which = j->toks[j->tp - 1].p;
    if (!strcmp(which, "elif")) {
        size_t cap = 0;
        push_stmt(j, &n->els, &n->nels, &cap, p_if(j, j->toks[j->tp - 1].off));
        return n; /* the nested if consumed the endif */
    }
    if (!strcmp(which, "else")) {
        expect_body_start(j);
        p_body(j, &n->els, &n->nels, END_IF2);
    }
    end_tag(j);
    return n;
}

/* {% set a = v %}, {% set a, b = v %}, {% set ns.attr = v %} (namespace attributes may also be
 * tuple items), or the block form {% set a [| filters] %}body{% endset %}. */
static node *p_set(J *j, size_t off) {
    const char **names = NULL, **attrs = NULL;
    size_t n = 0, cap = 0, acap = 0;
    bool paren = accept_op(j, '('), tuple = paren;
    for (;;) {
        size_t at = cur(j)->off;
        const char *nm = expect_name(j, "a variable name");
        if (in_names(CONST_NAMES, nm)) fail_syntax(j, at, "can't assign to 'const'");
        const char *attr = NULL;
        if (accept_op(j, '.')) attr = expect_name(j, "an attribute name");
        vec_grow(j, (void **)&names, &cap, n, sizeof(char *));
        vec_grow(j, (void **)&attrs, &acap, n, sizeof(char *));
        names[n] = nm, attrs[n++] = attr;
        if (!accept_op(j, ',')) break;
        tuple = true;
        if (paren && is_op(cur(j), ')')) break;
    }
    if (paren) expect_op(j, ')', "')'");
    if (accept_op(j, '=')) {
        node *s = new_node(j, S_SET, off);
        s->names = names, s->attrs = attrs, s->nnames = n, s->flag = tuple;
        s->a = p_tuple(j, false, true, NULL);
        expect_block_end(j);
        return s;
    }
    if (n != 1 || tuple) fail_expected(j, "'='");
    node *s = new_node(j, S_SETBLOCK, off);
    s->names = names, s->attrs = attrs, s->nnames = 1;
    while (accept_op(j, '|')) s->c = p_filter(j, s->c);
    expect_body_start(j);
    static const char *const ends[] = {"endset", NULL};
    p_body(j, &s->body, &s->nbody, ends);
    end_tag(j);
    return s;
}

/* Body of a macro or call block: records which of varargs/kwargs/caller it mentions (n->flag);
 * break/continue of an enclosing loop are not allowed inside. */
static node *p_macro_like(J *j, node *n, const char *const *ends) {
    uint8_t *saved = j->mflags;
    int saved_loop = j->in_loop;
    j->mflags = &n->flag;
    j->in_loop = 0;
    expect_body_start(j);
    p_body(j, &n->body, &n->nbody, ends);
    j->mflags = saved;
    j->in_loop = saved_loop;
    end_tag(j);
    return n;
}

/* Parses statements until one of the tag names `ends` (consumed, its name left as the previous
 * token; the caller finishes that tag) or, with ends NULL, until the end of the template. */
static void p_body(J *j, node ***body, size_t *nbody, const char *const *ends) {
    size_t cap = 0;
    enter(j);
    for (;;) {
        tok *k = cur(j);
        if (k->t == T_EOF) {
            if (!ends) break;
            char want[200] = "";
            for (size_t i = 0; ends[i]; i++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", i ? " or " : "", ends[i]);
            fail_syntax(j, k->off, "unexpected end of template: expected %s", want);
        }
        if (k->t == T_DATA) {
            node *s = new_node(j, S_TEXT, k->off);
            s->lit = mk_str(k->p, k->n);
            push_stmt(j, body, nbody, &cap, s);
            advance(j);
            continue;
        }
        if (k->t == T_VBEGIN) {
            advance(j);
            node *s = new_node(j, S_OUT, k->off);
            s->a = p_tuple(j, false, true, NULL);
            if (cur(j)->t != T_VEND) fail_expected(j, "end of print statement '}}'");
            advance(j);
            push_stmt(j, body, nbody, &cap, s);
            continue;
        }
        if (k->t != T_BBEGIN) fail_syntax(j, k->off, "unexpected %s", tok_desc(j, k));
        advance(j);
        tok *w = cur(j);
        if (w->t != T_NAME) fail_expected(j, "a statement name");
        if (ends)
            for (size_t i = 0; ends[i]; i++)
                if (!strcmp(w->p, ends[i])) {
                    advance(j);
                    leave(j);
                    return;
                }
        advance(j);
        size_t off = k->off;
        node *s = NULL;
        const char *nm = w->p;
        if (!strcmp(nm, "for")) s = p_for(j, off);
        else if (!strcmp(nm, "if")) s = p_if(j, off);
        else if (!strcmp(nm, "set")) s = p_set(j, off);
        else if (!strcmp(nm, "macro")) {
            s = new_node(j, S_MACRO, off);
            size_t at = cur(j)->off;
            s->name = expect_name(j, "a macro name");
            if (in_names(CONST_NAMES, s->name)) fail_syntax(j, at, "can't assign to 'name'");
            p_params(j, s);
            static const char *const ends_m[] = {"endmacro", NULL};
            p_macro_like(j, s, ends_m);
        } else if (!strcmp(nm, "call")) {
            s = new_node(j, S_CALLBLOCK, off);
            if (is_op(cur(j), '(')) p_params(j, s);
            node *c = p_expr(j);
            if (c->k != E_CALL) fail_syntax(j, c->off, "expected a call after 'call'");
            s->a = c;
            static const char *const ends_c[] = {"endcall", NULL};
            p_macro_like(j, s, ends_c);
        } else if (!strcmp(nm, "filter")) {
            s = new_node(j, S_FILTERBLOCK, off);
            s->c = p_filter(j, NULL);
            while (accept_op(j, '|')) s->c = p_filter(j, s->c);
            expect_body_start(j);
            static const char *const ends_f[] = {"endfilter", NULL};
            p_body(j, &s->body, &s->nbody, ends_f);
            end_tag(j);
        } else if (!strcmp(nm, "with")) {
            s = new_node(j, S_WITH, off);
            size_t cap2 = 0, dcap = 0;
            while (cur(j)->t != T_BEND && !is_op(cur(j), ':')) {
                if (s->nnames) expect_op(j, ',', "','");
                const char *v = expect_name(j, "a variable name");
                expect_op(j, '=', "'='");
                vec_grow(j, (void **)&s->names, &cap2, s->nnames, sizeof(char *));
                vec_grow(j, (void **)&s->defs, &dcap, s->nnames, sizeof(node *));
                s->names[s->nnames] = v;
                s->defs[s->nnames++] = p_expr(j);
            }
            expect_body_start(j);
            static const char *const ends_w[] = {"endwith", NULL};
            p_body(j, &s->body, &s->nbody, ends_w);
            end_tag(j);
        } else if (!strcmp(nm, "break") || !strcmp(nm, "continue")) {
            if (!j->in_loop) fail_syntax(j, off, "'%s' outside of a loop", nm);
            s = new_node(j, nm[0] == 'b' ? S_BREAK : S_CONTINUE, off);
            expect_block_end(j);
        } else if (!strcmp(nm, "generation")) {
            s = new_node(j, S_BLOCK, off);
            expect_body_start(j);
            static const char *const ends_g[] = {"endgeneration", NULL};
            p_body(j, &s->body, &s->nbody, ends_g);
            end_tag(j);
        } else if (!strcmp(nm, "include") || !strcmp(nm, "import") || !strcmp(nm, "from") || !strcmp(nm, "extends") ||
                   !strcmp(nm, "block")) {
            fail_syntax(j, w->off, "'%s' is not supported in chat templates", nm);
        } else {
            char want[200] = "";
            if (ends)
                for (size_t i = 0; ends[i]; i++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", i ? " or " : ", expected ", ends[i]);
            fail_syntax(j, w->off, "unknown tag '%s'%s", nm, want);
        }
        push_stmt(j, body, nbody, &cap, s);
    }
    leave(j);
}

/* jinja2 resolves filter and test names when it compiles a template: an unknown one is a syntax
 * error, except inside "soft" frames (an if statement's condition and bodies, and conditional
 * expressions), where it fails only if evaluated. Loops, macros, call/filter/set blocks and with
 * open hard frames again. Walks the tree in source order and reports the first hard unknown name. */
static void check_names(J *j, const node *n, bool soft, bool in_for) {
    if (!n) return;
    /* jinja2 also rejects any assignment to `loop` anywhere inside a for loop */
    if (n->k == S_FOR) in_for = true;
    if (in_for && (n->k == S_SET || n->k == S_SETBLOCK || n->k == S_WITH || n->k == S_FOR))
        for (size_t i = 0; i < n->nnames; i++)
            if (!strcmp(n->names[i], "loop") && !(n->attrs && n->attrs[i]))
                fail_syntax(j, n->off, "Can't assign to special loop variable in for-loop target");
    switch (n->k) {
    case E_FILTER:
    case E_TEST:
        if (n->lazy && !soft) fail_syntax(j, n->off, "No %s named '%s'.", n->k == E_FILTER ? "filter" : "test", n->name);
        break;
    case E_COND: soft = true; break;
    case S_IF:
        check_names(j, n->a, true, in_for);
        for (size_t i = 0; i < n->nbody; i++) check_names(j, n->body[i], true, in_for);
        for (size_t i = 0; i < n->nels; i++) check_names(j, n->els[i], true, in_for);
        return;
    case S_FOR:
        check_names(j, n->a, soft, in_for);
        check_names(j, n->b, false, in_for);
        for (size_t i = 0; i < n->nbody; i++) check_names(j, n->body[i], false, in_for);
        for (size_t i = 0; i < n->nels; i++) check_names(j, n->els[i], false, in_for);
        return;
    case S_MACRO: case S_CALLBLOCK: case S_SETBLOCK: case S_FILTERBLOCK: case S_WITH: case S_BLOCK:
        if (n->k == S_CALLBLOCK) check_names(j, n->a, soft, in_for);
        if (n->k == S_WITH)
            for (size_t i = 0; i < n->nnames; i++) check_names(j, n->defs[i], soft, in_for);
        else if (n->defs)
            for (size_t i = 0; i < n->nnames; i++) check_names(j, n->defs[i], false, in_for);
        for (size_t i = 0; i < n->nbody; i++) check_names(j, n->body[i], false, in_for);
        check_names(j, n->c, false, in_for);
        return;
    default: break;
    }
    check_names(j, n->a, soft, in_for);
    check_names(j, n->b, soft, in_for);
    check_names(j, n->c, soft, in_for);
    for (size_t i = 0; i < n->nargs; i++) check_names(j, n->args[i].e, soft, in_for);
    for (size_t i = 0; i < n->nbody; i++) check_names(j, n->body[i], soft, in_for);
    for (size_t i = 0; i < n->nels; i++) check_names(j, n->els[i], soft, in_for);
}

/* ==============================================================================================
 * Evaluation
 * ============================================================================================ */

enum builtin_fn { FN_RANGE, FN_NAMESPACE, FN_DICT, FN_RAISE, FN_STRFTIME };

/* Evaluated call arguments: positional values, then keyword (name, value) pairs. */
typedef struct cargs {
    jv *pos;
    size_t npos;
    const char **kw;
    jv *kwv;
    size_t nkw;
} cargs;

static jv eval(J *j, scope *sc, const node *n);
static void exec_body(J *j, scope *sc, node *const *b, size_t n);
static jv apply_filter(J *j, size_t off, const char *name, jv in, const cargs *a);
static bool apply_test(J *j, size_t off, const char *name, jv v, const cargs *a);
static jv call_value(J *j, size_t off, jv fn, const cargs *a, jmacro *caller);

static void step(J *j, size_t off) {
    if (++j->steps > j->lim.max_steps)
        fail_at(j, off, "the template runs too long (over %" PRIu64 " steps): an endless loop?", j->lim.max_steps);
}

/* ---- scopes ---- */

static scope *new_scope(J *j, scope *parent) {
    scope *s = ar_zalloc(j, sizeof *s);
    s->parent = parent;
    return s;
}

/* Variable lookup: the innermost scope first. Names not found fall back to the globals
 * (range, namespace, ...) in eval, then to undefined. */
static bool scope_get(const scope *sc, const char *name, jv *out) {
    for (; sc; sc = sc->parent)
        for (size_t i = sc->n; i-- > 0;)
            if (!strcmp(sc->names[i], name)) {
                *out = sc->vals[i];
                return true;
            }
    return false;
}

/* Assignment always binds in the given (innermost) scope: a set inside a loop or macro never
 * changes an outer variable (namespaces exist for that), as in jinja2. */
static void scope_set(J *j, scope *sc, const char *name, jv v) {
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->names[i], name)) {
            sc->vals[i] = v;
            return;
        }
    if (sc->n == sc->cap) {
        size_t nc = sc->cap ? sc->cap * 2 : 4;
        const char **nn = ar_array(j, nc, sizeof *nn);
        jv *nv = ar_array(j, nc, sizeof *nv);
        if (sc->n) memcpy(nn, sc->names, sc->n * sizeof *nn), memcpy(nv, sc->vals, sc->n * sizeof *nv);
        sc->names = nn, sc->vals = nv, sc->cap = nc;
    }
    sc->names[sc->n] = name;
    sc->vals[sc->n++] = v;
}

/* ---- equality and ordering (Python semantics) ---- */

/* Python ==: numbers across int/float/bool, strings by bytes, lists and tuples (never equal to
 * each other) item by item, dicts by content, undefined equals undefined, others by identity. */
static bool py_eq(J *j, jv a, jv b, int depth) {
    if (depth > j->lim.max_depth) fail_raw(j, "template error: values nested too deeply to compare");
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return num_i(a) == num_i(b);
        return num_f(a) == num_f(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a.v.s.n == b.v.s.n && !memcmp(a.v.s.p, b.v.s.p, a.v.s.n);
    case V_LIST:
        if (a.gen || b.gen) return a.gen && b.gen && a.v.l == b.v.l;
        if (a.tuple != b.tuple || a.v.l->n != b.v.l->n) return false;
        for (size_t i = 0; i < a.v.l->n; i++)
            if (!py_eq(j, a.v.l->a[i], b.v.l->a[i], depth + 1)) return false;
        return true;
    case V_DICT: {
        if (a.v.d->n != b.v.d->n) return false;
        for (size_t i = 0; i < a.v.d->n; i++) {
            size_t k;
            for (k = 0; k < b.v.d->n; k++)
                if (py_eq(j, a.v.d->k[i], b.v.d->k[k], depth + 1)) break;
            if (k == b.v.d->n || !py_eq(j, a.v.d->v[i], b.v.d->v[k], depth + 1)) return false;
        }
        return true;
    }
    case V_NS: return a.v.d == b.v.d;
    case V_MACRO: return a.v.m == b.v.m;
    case V_FUNC: return a.v.fn == b.v.fn;
    case V_LOOP: return a.v.lp == b.v.lp;
    default: return false;
    }
}

static const char *cmp_sym(char op) {
    return op == '<' ? "<" : op == '>' ? ">" : op == OP_LE ? "<=" : ">=";
}

/* <0, 0, >0 for a < b, a == b, a > b; TypeError for unorderable types. */
static int cmp_op(J *j, size_t off, jv a, jv b, int depth, char op) {
    if (depth > j->lim.max_depth) fail_raw(j, "template error: values nested too deeply to compare");
    if (a.t == V_UNDEF) fail_undef(j, off, a);
    if (b.t == V_UNDEF) fail_undef(j, off, b);
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return num_i(a) < num_i(b) ? -1 : num_i(a) > num_i(b);
        double x = num_f(a), y = num_f(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.t == V_STR && b.t == V_STR) {
        size_t m = a.v.s.n < b.v.s.n ? a.v.s.n : b.v.s.n;
        int c = m ? memcmp(a.v.s.p, b.v.s.p, m) : 0;
        if (c) return c;
        return a.v.s.n < b.v.s.n ? -1 : a.v.s.n > b.v.s.n;
    }
    if (a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple && !a.gen && !b.gen) {
        for (size_t i = 0; i < a.v.l->n && i < b.v.l->n; i++)
            if (!py_eq(j, a.v.l->a[i], b.v.l->a[i], depth + 1)) return cmp_op(j, off, a.v.l->a[i], b.v.l->a[i], depth + 1, op);
        return a.v.l->n < b.v.l->n ? -1 : a.v.l->n > b.v.l->n;
    }
    fail_at(j, off, "'%s' not supported between instances of '%s' and '%s'", cmp_sym(op), type_name(a), type_name(b));
}

static int cmp_values(J *j, size_t off, jv a, jv b, int depth) { return cmp_op(j, off, a, b, depth, '<'); }

/* ---- dicts ---- */

/* Index of key in d (Python equality, so 1, 1.0 and true are the same key). */
static bool dict_find(J *j, const jdict *d, jv key, size_t *idx) {
    for (size_t i = 0; i < d->n; i++) {
        jv k = d->k[i];
        if (k.t == V_STR && key.t == V_STR) {
            if (k.v.s.n == key.v.s.n && !memcmp(k.v.s.p, key.v.s.p, k.v.s.n)) { *idx = i; return true; }
        } else if (py_eq(j, k, key, 0)) {
            *idx = i;
            return true;
        }
    }
    return false;
}

static bool dict_get_cstr(J *j, const jdict *d, const char *key, jv *out) {
    size_t i;
    if (!dict_find(j, d, mk_cstr(key), &i)) return false;
    *out = d->v[i];
    return true;
}

static void dict_set(J *j, jdict *d, jv key, jv val) {
    size_t i;
    if (dict_find(j, d, key, &i)) {
        d->v[i] = val;
        return;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        jv *nk = ar_array(j, nc, sizeof *nk), *nv = ar_array(j, nc, sizeof *nv);
        if (d->n) memcpy(nk, d->k, d->n * sizeof *nk), memcpy(nv, d->v, d->n * sizeof *nv);
        d->k = nk, d->v = nv, d->cap = nc;
    }
    d->k[d->n] = key;
    d->v[d->n++] = val;
}

/* ---- attribute and item access ---- */

static const char *const STR_METHODS[] = {
    "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower", "title",
    "capitalize", "swapcase", "casefold", "replace", "find", "rfind", "index", "rindex", "count", "join", "format",
    "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower", "istitle", "isnumeric", "isdecimal", "zfill",
    "center", "ljust", "rjust", "partition", "rpartition", "removeprefix", "removesuffix", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", "copy", "pop", "popitem", "setdefault",
                                           "update", "clear", "fromkeys", NULL};
static const char *const LIST_METHODS[] = {"index", "count", "copy", "append", "extend", "insert", "pop", "remove",
                                           "reverse", "sort", "clear", NULL};

static const char *in_names(const char *const *list, const char *name) {
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(list[i], name)) return list[i];
    return NULL;
}

static jv mk_method(J *j, jv self, const char *name) {
    jmethod *m = ar_alloc(j, sizeof *m);
    m->self = self, m->name = name;
    jv r = {.t = V_METHOD};
    r.v.me = m;
    return r;
}

/* The `loop` object's attributes for its current iteration (previtem/nextitem are undefined at the
 * ends); cycle and changed are methods. */
static jv loop_attr(J *j, jv lv, const char *name) {
    jloop *lp = lv.v.lp;
    int64_t n = (int64_t)lp->items->n, i = (int64_t)lp->i;
    if (!strcmp(name, "index")) return mk_int(i + 1);
    if (!strcmp(name, "index0")) return mk_int(i);
    if (!strcmp(name, "revindex")) return mk_int(n - i);
    if (!strcmp(name, "revindex0")) return mk_int(n - i - 1);
    if (!strcmp(name, "first")) return mk_bool(i == 0);
    if (!strcmp(name, "last")) return mk_bool(i == n - 1);
    if (!strcmp(name, "length")) return mk_int(n);
    if (!strcmp(name, "depth")) return mk_int(lp->depth);
    if (!strcmp(name, "depth0")) return mk_int(lp->depth - 1);
    if (!strcmp(name, "previtem"))
        return i > 0 ? lp->items->a[i - 1] : mk_undef(NULL, "there is no previous item");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? lp->items->a[i + 1] : mk_undef(NULL, "there is no next item");
    if (!strcmp(name, "cycle") || !strcmp(name, "changed")) return mk_method(j, lv, !strcmp(name, "cycle") ? "cycle" : "changed");
    return mk_undef(name, obj_repr(lv));
}

/* obj.name: an attribute (method) first, then an item, as jinja2's getattr does. */
static jv get_attr(J *j, size_t off, jv obj, const char *name) {
    const char *m;
    switch (obj.t) {
    case V_UNDEF: fail_undef(j, off, obj);
    case V_DICT:
        if ((m = in_names(DICT_METHODS, name))) return mk_method(j, obj, m);
        /* fall through */
    case V_NS: {
        jv v;
        if (dict_get_cstr(j, obj.v.d, name, &v)) return v;
        return mk_undef(name, obj_repr(obj));
    }
    case V_STR:
        if ((m = in_names(STR_METHODS, name))) return mk_method(j, obj, m);
        break;
    case V_LIST:
        if (!obj.gen && (m = in_names(LIST_METHODS, name))) return mk_method(j, obj, m);
        break;
    case V_LOOP: return loop_attr(j, obj, name);
    default: break;
    }
    return mk_undef(name, obj_repr(obj));
}

/* obj[key]: an item first, then an attribute for string keys, as jinja2's getitem does. */
static jv get_item(J *j, size_t off, jv obj, jv key) {
    switch (obj.t) {
    case V_UNDEF: fail_undef(j, off, obj);
    case V_LIST:
    case V_STR:
        if (obj.t == V_LIST && obj.gen) break;
        if (is_intlike(key)) {
            int64_t i = num_i(key);
            size_t len = obj.t == V_LIST ? obj.v.l->n : u8_count(obj.v.s.p, obj.v.s.n);
            if (i < 0) i += (int64_t)len;
            if (i < 0 || (uint64_t)i >= len) return mk_undef_idx(obj_repr(obj), num_i(key));
            if (obj.t == V_LIST) return obj.v.l->a[i];
            size_t b0 = u8_offset(obj.v.s.p, obj.v.s.n, (size_t)i), b1 = b0;
            u8_next(obj.v.s.p, obj.v.s.n, &b1);
            return mk_str(obj.v.s.p + b0, b1 - b0);
        }
        break;
    case V_DICT:
    case V_NS: {
        size_t i;
        if (dict_find(j, obj.v.d, key, &i)) return obj.v.d->v[i];
        break;
    }
    case V_LOOP: break;
    default: break;
    }
    if (key.t == V_STR) {
        if (obj.t == V_DICT || obj.t == V_NS) {
            const char *m;
            if (obj.t == V_DICT && memchr(key.v.s.p, 0, key.v.s.n) == NULL) {
                char *nm = ar_strndup(j, key.v.s.p, key.v.s.n);
                if ((m = in_names(DICT_METHODS, nm))) return mk_method(j, obj, m);
                return mk_undef(nm, obj_repr(obj));
            }
            return mk_undef(ar_strndup(j, key.v.s.p, key.v.s.n), obj_repr(obj));
        }
        return get_attr(j, off, obj, ar_strndup(j, key.v.s.p, key.v.s.n));
    }
    if (is_intlike(key)) return mk_undef_idx(obj_repr(obj), num_i(key));
    return mk_undef(NULL, obj_repr(obj));
}

/* Python slice index normalization (PySlice_AdjustIndices). */
static size_t slice_indices(J *j, size_t off, int64_t len, jv jstart, jv jstop, jv jstep, int64_t *start, int64_t *stepo) {
    int64_t step = 1;
    if (jstep.t != V_NONE) {
        if (!is_intlike(jstep)) fail_at(j, off, "slice indices must be integers or None or have an __index__ method");
        step = num_i(jstep);
        if (step == 0) fail_at(j, off, "slice step cannot be zero");
    }
    int64_t lo, hi;
    if (jstart.t == V_NONE) lo = step < 0 ? len - 1 : 0;
    else {
        if (!is_intlike(jstart)) fail_at(j, off, "slice indices must be integers or None or have an __index__ method");
        lo = num_i(jstart);
        if (lo < 0) { lo += len; if (lo < 0) lo = step < 0 ? -1 : 0; }
        else if (lo >= len) lo = step < 0 ? len - 1 : len;
    }
    if (jstop.t == V_NONE) hi = step < 0 ? -1 : len;
    else {
        if (!is_intlike(jstop)) fail_at(j, off, "slice indices must be integers or None or have an __index__ method");
        hi = num_i(jstop);
        if (hi < 0) { hi += len; if (hi < 0) hi = step < 0 ? -1 : 0; }
        else if (hi >= len) hi = step < 0 ? len - 1 : len;
    }
    *start = lo, *stepo = step;
    if (step < 0) return hi < lo ? (size_t)((lo - hi - 1) / (-step) + 1) : 0;
    return lo < hi ? (size_t)((hi - lo - 1) / step + 1) : 0;
}

/* obj[a:b:c] for lists, tuples and strings (by code points). jinja2 compiles slices to plain Python
 * subscripts, so anything else raises (undefined: its own error). */
static jv do_slice(J *j, size_t off, jv obj, jv a, jv b, jv c) {
    if (obj.t == V_UNDEF) fail_undef(j, off, obj);
    if (obj.t == V_DICT) fail_at(j, off, "unhashable type: 'slice'");
    if ((obj.t != V_LIST && obj.t != V_STR) || (obj.t == V_LIST && obj.gen))
        fail_at(j, off, "'%s' object is not subscriptable", type_name(obj));
    if (obj.t == V_LIST) {
        int64_t st, sp;
        size_t cnt = slice_indices(j, off, (int64_t)obj.v.l->n, a, b, c, &st, &sp);
        jlist *l = new_list(j, cnt);
        for (size_t i = 0; i < cnt; i++) l->a[i] = obj.v.l->a[st + (int64_t)i * sp];
        l->n = cnt;
        return mk_list(l, obj.tuple);
    }
    if (obj.t == V_STR) {
        const char *s = obj.v.s.p;
        size_t n = obj.v.s.n;
        bool ascii = all_ascii(s, n);
        size_t ncp = ascii ? n : u8_count(s, n);
        int64_t st, sp;
        size_t cnt = slice_indices(j, off, (int64_t)ncp, a, b, c, &st, &sp);
        if (ascii && sp == 1) return mk_str(s + st, cnt);
        /* code point offsets */
        size_t *cpo = ar_array(j, ncp + 1, sizeof *cpo);
        for (size_t i = 0, k = 0; k <= ncp; k++) {
            cpo[k] = i;
            if (i < n) u8_next(s, n, &i);
        }
        if (sp == 1) return mk_str(s + cpo[st], cpo[st + (int64_t)cnt] - cpo[st]);
        sbuf out = {0};
        for (size_t i = 0; i < cnt; i++) {
            int64_t k = st + (int64_t)i * sp;
            sb_put(j, &out, s + cpo[k], cpo[k + 1] - cpo[k]);
        }
        return mk_sbuf(&out);
    }
    fail_at(j, off, "internal error: bad slice");
}

/* ---- arithmetic ---- */

/* a + b for strings. Appending to the string allocated last (the usual `s = s + x` in a loop)
 * extends it in place instead of copying it. */
static jv concat_str(J *j, jv a, jv b) {
    if (!a.v.s.n) return b;
    if (!b.v.s.n) return a;
    if (a.v.s.n + b.v.s.n > j->lim.max_output) fail_raw(j, "template error: a string is too long");
    if (ar_extend(j, a.v.s.p + a.v.s.n, b.v.s.n)) {
        memmove((char *)a.v.s.p + a.v.s.n, b.v.s.p, b.v.s.n);
        return mk_str(a.v.s.p, a.v.s.n + b.v.s.n);
    }
    char *p = ar_alloc_from(j, &j->sarena, a.v.s.n + b.v.s.n);
    ar_mark_tail(j, p + a.v.s.n + b.v.s.n);
    memcpy(p, a.v.s.p, a.v.s.n);
    memcpy(p + a.v.s.n, b.v.s.p, b.v.s.n);
    return mk_str(p, a.v.s.n + b.v.s.n);
}

static jv concat_list(J *j, jv a, jv b) {
    jlist *l = new_list(j, a.v.l->n + b.v.l->n);
    if (a.v.l->n) memcpy(l->a, a.v.l->a, a.v.l->n * sizeof(jv));
    if (b.v.l->n) memcpy(l->a + a.v.l->n, b.v.l->a, b.v.l->n * sizeof(jv));
    l->n = a.v.l->n + b.v.l->n;
    return mk_list(l, a.tuple);
}

static jv repeat(J *j, size_t off, jv seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.t == V_STR) {
        if (seq.v.s.n && (uint64_t)times > j->lim.max_output / seq.v.s.n) fail_at(j, off, "string repetition too large");
        size_t tot = seq.v.s.n * (size_t)times;
        char *p = ar_alloc(j, tot ? tot : 1);
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * seq.v.s.n, seq.v.s.p, seq.v.s.n);
        return mk_str(p, tot);
    }
    if (seq.v.l->n && (uint64_t)times > (j->lim.max_memory / sizeof(jv)) / seq.v.l->n) fail_at(j, off, "list repetition too large");
    size_t tot = seq.v.l->n * (size_t)times;
    jlist *l = new_list(j, tot);
    if (seq.v.l->n)
        for (int64_t i = 0; i < times; i++) memcpy(l->a + (size_t)i * seq.v.l->n, seq.v.l->a, seq.v.l->n * sizeof(jv));
    l->n = tot;
    return mk_list(l, seq.tuple);
}

static jv str_percent(J *j, size_t off, jv fmt, jv args);

static const char *op_sym(char op) {
    switch (op) {
    case OP_FLOORDIV: return "//";
    case OP_POW: return "** or pow()";
    default: {
        static const char syms[] = "+-*/%";
        const char *p = strchr(syms, op);
        static const char *const names[] = {"+", "-", "*", "/", "%"};
        return p ? names[p - syms] : "?";
    }
    }
}

_Noreturn static void fail_operands(J *j, size_t off, char op, jv a, jv b) {
    fail_at(j, off, "unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op), type_name(a), type_name(b));
}

/* Binary + - * / // % ** with Python semantics: int (64-bit; overflow is an error where Python
 * would grow), float, str/list concatenation and repetition, str % args formatting, floor
 * division and modulo rounding toward negative infinity. Undefined operands raise. */
static jv arith(J *j, size_t off, char op, jv a, jv b) {
    if (a.t == V_UNDEF) fail_undef(j, off, a);
    if (b.t == V_UNDEF) fail_undef(j, off, b);
    bool ints = is_intlike(a) && is_intlike(b), nums = is_num(a) && is_num(b);
    int64_t x = 0, y = 0, r;
    if (ints) x = num_i(a), y = num_i(b);
    switch (op) {
    case '+':
        if (ints) {
            if (__builtin_add_overflow(x, y, &r)) fail_at(j, off, "integer overflow");
            return mk_int(r);
        }
        if (nums) return mk_float(num_f(a) + num_f(b));
        if (a.t == V_STR && b.t == V_STR) return concat_str(j, a, b);
        if (a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple && !a.gen && !b.gen) return concat_list(j, a, b);
        if (a.t == V_LIST && a.gen) fail_operands(j, off, op, a, b);
        if (a.t == V_STR || a.t == V_LIST)
            fail_at(j, off, "can only concatenate %s (not \"%s\") to %s", type_name(a), type_name(b), type_name(a));
        fail_operands(j, off, op, a, b);
    case '-':
        if (ints) {
            if (__builtin_sub_overflow(x, y, &r)) fail_at(j, off, "integer overflow");
            return mk_int(r);
        }
        if (nums) return mk_float(num_f(a) - num_f(b));
        fail_operands(j, off, op, a, b);
    case '*':
        if (ints) {
            if (__builtin_mul_overflow(x, y, &r)) fail_at(j, off, "integer overflow");
            return mk_int(r);
        }
        if (nums) return mk_float(num_f(a) * num_f(b));
        if ((a.t == V_STR || (a.t == V_LIST && !a.gen)) && is_intlike(b)) return repeat(j, off, a, num_i(b));
        if ((b.t == V_STR || (b.t == V_LIST && !b.gen)) && is_intlike(a)) return repeat(j, off, b, num_i(a));
        fail_operands(j, off, op, a, b);
    case '/':
        if (!nums) fail_operands(j, off, op, a, b);
        if (num_f(b) == 0) fail_at(j, off, "division by zero");
        return mk_float(num_f(a) / num_f(b));
    case OP_FLOORDIV:
        if (!nums) fail_operands(j, off, op, a, b);
        if (ints) {
            if (y == 0) fail_at(j, off, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) fail_at(j, off, "integer overflow");
            int64_t q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
            return mk_int(q);
        }
        if (num_f(b) == 0) fail_at(j, off, "float floor division by zero");
        return mk_float(floor(num_f(a) / num_f(b)));
    case '%':
        if (a.t == V_STR) return str_percent(j, off, a, b);
        if (!nums) fail_operands(j, off, op, a, b);
        if (ints) {
            if (y == 0) fail_at(j, off, "integer division or modulo by zero");
            if (y == -1) return mk_int(0);
            int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return mk_int(m);
        } else {
            double fx = num_f(a), fy = num_f(b);
            if (fy == 0) fail_at(j, off, "float modulo");
            double m = fmod(fx, fy);
            if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
            return mk_float(m);
        }
    case OP_POW:
        if (!nums) fail_operands(j, off, op, a, b);
        if (ints && y >= 0) {
            int64_t acc = 1, base = x;
            for (int64_t e = y; e > 0; e >>= 1) {
                if (e & 1)
                    if (__builtin_mul_overflow(acc, base, &acc)) fail_at(j, off, "integer overflow");
                if (e > 1 && __builtin_mul_overflow(base, base, &base)) fail_at(j, off, "integer overflow");
            }
            return mk_int(acc);
        }
        if (num_f(a) == 0 && num_f(b) < 0) fail_at(j, off, "0.0 cannot be raised to a negative power");
        return mk_float(pow(num_f(a), num_f(b)));
    }
    fail_at(j, off, "unknown operator");
}

static jlist *iter_items(J *j, size_t off, jv v);

/* `needle in hay` */
static bool contains(J *j, size_t off, jv hay, jv needle) {
    switch (hay.t) {
    case V_STR:
        if (needle.t != V_STR) fail_at(j, off, "'in <string>' requires string as left operand, not %s", type_name(needle));
        if (!needle.v.s.n) return true;
        if (needle.v.s.n > hay.v.s.n) return false;
        return memmem(hay.v.s.p, hay.v.s.n, needle.v.s.p, needle.v.s.n) != NULL;
    case V_LIST: {
        jlist *l = iter_items(j, off, hay); /* raises for a failing generator */
        for (size_t i = 0; i < l->n; i++)
            if (py_eq(j, l->a[i], needle, 0)) return true;
        return false;
    }
    case V_DICT: {
        size_t i;
        return dict_find(j, hay.v.d, needle, &i);
    }
    case V_UNDEF: return false;
    default: fail_at(j, off, "argument of type '%s' is not iterable", type_name(hay));
    }
}

/* The items a for loop (or list()) iterates: list items, dict keys, string characters. */
static jlist *iter_items(J *j, size_t off, jv v) {
    switch (v.t) {
    case V_LIST:
        if (v.v.l->fail) fail_raw(j, v.v.l->fail);
        return v.v.l;
    case V_UNDEF: return new_list(j, 0);
    case V_DICT: {
        jlist *l = new_list(j, v.v.d->n);
        for (size_t i = 0; i < v.v.d->n; i++) l->a[i] = v.v.d->k[i];
        l->n = v.v.d->n;
        return l;
    }
    case V_STR: {
        jlist *l = new_list(j, v.v.s.n);
        for (size_t i = 0; i < v.v.s.n;) {
            size_t st = i;
            u8_next(v.v.s.p, v.v.s.n, &i);
            l->a[l->n++] = mk_str(v.v.s.p + st, i - st);
        }
        return l;
    }
    default: fail_at(j, off, "'%s' object is not iterable", type_name(v));
    }
}

/* ---- calls ---- */

/* Evaluates the arguments of a call/filter/test node, expanding *list and **dict. */
static void eval_args(J *j, scope *sc, const node *n, cargs *a) {
    memset(a, 0, sizeof *a);
    size_t pc = 0, kc = 0, kc2 = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        const arg *g = &n->args[i];
        jv v = eval(j, sc, g->e);
        if (g->star == 1) {
            jlist *l = iter_items(j, g->e->off, v);
            for (size_t k = 0; k < l->n; k++) {
                vec_grow(j, (void **)&a->pos, &pc, a->npos, sizeof(jv));
                a->pos[a->npos++] = l->a[k];
            }
        } else if (g->star == 2) {
            if (v.t != V_DICT) fail_at(j, g->e->off, "argument after ** must be a mapping, not %s", type_name(v));
            for (size_t k = 0; k < v.v.d->n; k++) {
                jv key = v.v.d->k[k];
                if (key.t != V_STR) fail_at(j, g->e->off, "keywords must be strings");
                vec_grow(j, (void **)&a->kw, &kc, a->nkw, sizeof(char *));
                vec_grow(j, (void **)&a->kwv, &kc2, a->nkw, sizeof(jv));
                a->kw[a->nkw] = ar_strndup(j, key.v.s.p, key.v.s.n);
                a->kwv[a->nkw++] = v.v.d->v[k];
            }
        } else if (g->kw) {
            vec_grow(j, (void **)&a->kw, &kc, a->nkw, sizeof(char *));
            vec_grow(j, (void **)&a->kwv, &kc2, a->nkw, sizeof(jv));
            a->kw[a->nkw] = g->kw;
            a->kwv[a->nkw++] = v;
        } else {
            vec_grow(j, (void **)&a->pos, &pc, a->npos, sizeof(jv));
            a->pos[a->npos++] = v;
        }
    }
}

/* Argument `name` (keyword) or positional index `i`, else dflt. */
static jv A(const cargs *a, size_t i, const char *name, jv dflt) {
    if (name)
        for (size_t k = 0; k < a->nkw; k++)
            if (!strcmp(a->kw[k], name)) return a->kwv[k];
    return i < a->npos ? a->pos[i] : dflt;
}
static bool has_arg(const cargs *a, size_t i, const char *name) {
    if (name)
        for (size_t k = 0; k < a->nkw; k++)
            if (!strcmp(a->kw[k], name)) return true;
    return i < a->npos;
}

/* Runs statements with their output redirected into a new string (macro bodies, block sets,
 * filter blocks). */
static jv capture(J *j, scope *sc, node *const *body, size_t n) {
    sbuf buf = {0}, *saved = j->out;
    j->out = &buf;
    exec_body(j, sc, body, n);
    j->out = saved;
    return mk_sbuf(&buf);
}

/* Calls a macro (or a call block's caller): a new scope under the macro's defining scope; positional
 * then keyword arguments bind the parameters; missing ones take their defaults (evaluated now, in
 * the new scope) or are undefined; extra ones go to varargs / kwargs when the body uses them, else
 * are an error (as jinja2). Returns the body's output as a string. */
static jv call_macro(J *j, size_t off, jmacro *m, const cargs *a, jmacro *caller) {
    const node *def = m->def;
    if (j->depth >= j->lim.max_depth) fail_at(j, off, "maximum recursion depth exceeded (macro calls nested %d deep)", j->depth);
    step(j, off);
    scope *s = new_scope(j, m->closure);
    size_t np = def->nnames;
    if (a->npos > np && !(def->flag & MF_VARARGS))
        fail_at(j, off, "macro '%s' takes not more than %zu argument(s)", m->name, np);
    bool *set = ar_zalloc(j, np + 1);
    for (size_t i = 0; i < np && i < a->npos; i++) scope_set(j, s, def->names[i], a->pos[i]), set[i] = true;
    jdict *kwargs = new_dict(j);
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i;
        for (i = 0; i < np; i++)
            if (!strcmp(def->names[i], a->kw[k])) break;
        if (i < np) {
            if (set[i]) fail_at(j, off, "macro '%s' got multiple values for argument '%s'", m->name, a->kw[k]);
            scope_set(j, s, def->names[i], a->kwv[k]);
            set[i] = true;
        } else if (def->flag & MF_KWARGS) dict_set(j, kwargs, mk_cstr(a->kw[k]), a->kwv[k]);
        else fail_at(j, off, "macro '%s' takes no keyword argument '%s'", m->name, a->kw[k]);
    }
    for (size_t i = 0; i < np; i++)
        if (!set[i]) scope_set(j, s, def->names[i], def->defs[i] ? eval(j, s, def->defs[i]) : mk_undef(def->names[i], NULL));
    jlist *va = new_list(j, 0);
    for (size_t i = np; i < a->npos; i++) list_push(j, va, a->pos[i]);
    scope_set(j, s, "varargs", mk_list(va, true));
    scope_set(j, s, "kwargs", mk_dict(kwargs));
    jv cv = mk_undef(NULL, "No caller defined");
    if (caller) cv.t = V_MACRO, cv.v.m = caller;
    if (def->flag & MF_CALLER) scope_set(j, s, "caller", cv);
    else if (caller && (def->flag & MF_KWARGS)) dict_set(j, kwargs, mk_cstr("caller"), cv);
    else if (caller)
        fail_at(j, off, "macro '%s' was invoked with two values for the special caller argument. This is most likely a bug.", m->name);
    j->depth++;
    jv r = capture(j, s, def->body, def->nbody);
    j->depth--;
    return r;
}

static void run_for(J *j, scope *sc, const node *s, jv iter, int depth);
static jv call_builtin(J *j, size_t off, int fn, const cargs *a);
static jv call_method(J *j, size_t off, jmethod *m, const cargs *a);

/* Calls any callable value: macro, global function, bound method, or a recursive loop. */
static jv call_value(J *j, size_t off, jv fn, const cargs *a, jmacro *caller) {
    switch (fn.t) {
    case V_MACRO: return call_macro(j, off, fn.v.m, a, caller);
    case V_FUNC: return call_builtin(j, off, fn.v.fn, a);
    case V_METHOD: return call_method(j, off, fn.v.me, a);
    case V_LOOP: {
        jloop *lp = fn.v.lp;
        if (!(lp->stmt->flag & 1)) fail_at(j, off, "The loop must have the 'recursive' marker to be called recursively.");
        if (a->npos != 1) fail_at(j, off, "a recursive loop call takes one argument");
        if (lp->depth >= j->lim.max_depth) fail_at(j, off, "maximum recursion depth exceeded");
        sbuf buf = {0}, *saved = j->out;
        j->out = &buf;
        run_for(j, lp->sc, lp->stmt, a->pos[0], lp->depth + 1);
        j->out = saved;
        return mk_sbuf(&buf);
    }
    case V_UNDEF: fail_undef(j, off, fn);
    default: fail_at(j, off, "'%s' object is not callable", type_name(fn));
    }
}

static jv eval_call(J *j, scope *sc, const node *n, jmacro *caller) {
    jv fn = eval(j, sc, n->a);
    cargs a;
    eval_args(j, sc, n, &a);
    return call_value(j, n->off, fn, &a, caller);
}

/* A filter node: its input is f->a evaluated, or (filter blocks, block sets) *base at the chain's start. */
static jv eval_filter(J *j, scope *sc, const node *f, const jv *base) {
    jv in;
    if (!f->a) in = *base;
    else if (base && f->a->k == E_FILTER) in = eval_filter(j, sc, f->a, base);
    else in = eval(j, sc, f->a);
    cargs a;
    eval_args(j, sc, f, &a);
    return apply_filter(j, f->off, f->name, in, &a);
}

/* A literal, or lists/tuples/dicts/operators over literals (what jinja2's optimizer folds). */
static bool is_const_node(const node *n) {
    if (!n) return true;
    switch (n->k) {
    case E_CONST: return true;
    case E_LIST: case E_TUPLE: case E_DICT: case E_CMP: case E_CONCAT:
    case E_NEG: case E_POS: case E_NOT: case E_BIN: case E_AND: case E_OR: case E_COND:
        for (size_t i = 0; i < n->nargs; i++)
            if (!is_const_node(n->args[i].e)) return false;
        return is_const_node(n->a) && is_const_node(n->b) && is_const_node(n->c);
    default: return false;
    }
}

/* Evaluates an expression node to a value (arena-allocated; errors longjmp out). */
static jv eval(J *j, scope *sc, const node *n) {
    switch (n->k) {
    case E_CONST: return n->lit;
    case E_NAME: {
        jv v;
        if (scope_get(sc, n->name, &v)) return v;
        static const struct { const char *name; int fn; } fns[] = {{"range", FN_RANGE},
                                                                     {"namespace", FN_NAMESPACE},
                                                                     {"dict", FN_DICT},
                                                                     {"raise_exception", FN_RAISE},
                                                                     {"strftime_now", FN_STRFTIME}};
        for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
            if (!strcmp(fns[i].name, n->name)) {
                jv f = {.t = V_FUNC};
                f.v.fn = fns[i].fn;
                return f;
            }
        return mk_undef(n->name, NULL);
    }
    case E_LIST:
    case E_TUPLE: {
        jlist *l = new_list(j, n->nargs);
        for (size_t i = 0; i < n->nargs; i++) l->a[i] = eval(j, sc, n->args[i].e);
        l->n = n->nargs;
        return mk_list(l, n->k == E_TUPLE);
    }
    case E_DICT: {
        jdict *d = new_dict(j);
        for (size_t i = 0; i + 1 < n->nargs; i += 2) {
            jv k = eval(j, sc, n->args[i].e);
            if (k.t == V_LIST && !k.tuple) fail_at(j, n->args[i].e->off, "unhashable type: 'list'");
            if (k.t == V_DICT || k.t == V_NS) fail_at(j, n->args[i].e->off, "unhashable type: 'dict'");
            dict_set(j, d, k, eval(j, sc, n->args[i + 1].e));
        }
        return mk_dict(d);
    }
    case E_ATTR: return get_attr(j, n->off, eval(j, sc, n->a), n->name);
    case E_ITEM: {
        jv o = eval(j, sc, n->a);
        return get_item(j, n->off, o, eval(j, sc, n->b));
    }
    case E_SLICE: {
        jv o = eval(j, sc, n->a);
        jv p[3];
        bool folded = is_const_node(n->a);
        for (int i = 0; i < 3; i++) {
            p[i] = n->args[i].e ? eval(j, sc, n->args[i].e) : mk_none();
            if (n->args[i].e && !is_const_node(n->args[i].e)) folded = false;
        }
        /* jinja2 folds a slice of literals at compile time through its getitem, which turns the
         * errors of non-sliceable values into undefined */
        if (folded && !(o.t == V_LIST && !o.gen) && o.t != V_STR) return mk_undef(NULL, obj_repr(o));
        return do_slice(j, n->off, o, p[0], p[1], p[2]);
    }
    case E_CALL: return eval_call(j, sc, n, NULL);
    case E_FILTER: return eval_filter(j, sc, n, NULL);
    case E_TEST: {
        jv v = eval(j, sc, n->a);
        cargs a;
        eval_args(j, sc, n, &a);
        bool r = apply_test(j, n->off, n->name, v, &a);
        return mk_bool(n->flag ? !r : r);
    }
    case E_NOT: return mk_bool(!truthy(eval(j, sc, n->a)));
    case E_NEG:
    case E_POS: {
        jv v = eval(j, sc, n->a);
        if (v.t == V_UNDEF) fail_undef(j, n->off, v);
        if (v.t == V_FLOAT) return mk_float(n->k == E_NEG ? -v.v.f : v.v.f);
        if (is_intlike(v)) {
            int64_t x = num_i(v);
            if (n->k == E_NEG && x == INT64_MIN) fail_at(j, n->off, "integer overflow");
            return mk_int(n->k == E_NEG ? -x : x);
        }
        fail_at(j, n->off, "bad operand type for unary %c: '%s'", n->k == E_NEG ? '-' : '+', type_name(v));
    }
    case E_BIN: {
        jv a = eval(j, sc, n->a);
        return arith(j, n->off, n->op, a, eval(j, sc, n->b));
    }
    case E_AND: {
        jv a = eval(j, sc, n->a);
        return truthy(a) ? eval(j, sc, n->b) : a;
    }
    case E_OR: {
        jv a = eval(j, sc, n->a);
        return truthy(a) ? a : eval(j, sc, n->b);
    }
    case E_COND:
        if (truthy(eval(j, sc, n->b))) return eval(j, sc, n->a);
        if (n->c) return eval(j, sc, n->c);
        return mk_undef(NULL, "the inline if-expression evaluated to false and no else section was defined");
    case E_CMP: {
        jv a = eval(j, sc, n->a);
        for (size_t i = 0; i < n->nargs; i++) {
            jv b = eval(j, sc, n->args[i].e);
            char op = n->ops[i];
            bool r;
            switch (op) {
            case OP_EQ: r = py_eq(j, a, b, 0); break;
            case OP_NE: r = !py_eq(j, a, b, 0); break;
            case OP_IN: r = contains(j, n->off, b, a); break;
            case OP_NOTIN: r = !contains(j, n->off, b, a); break;
            case '<': r = cmp_op(j, n->off, a, b, 0, op) < 0; break;
            case '>': r = cmp_op(j, n->off, a, b, 0, op) > 0; break;
            case OP_LE: r = cmp_op(j, n->off, a, b, 0, op) <= 0; break;
            default: r = cmp_op(j, n->off, a, b, 0, op) >= 0; break;
            }
            if (!r) return mk_bool(false);
            a = b;
        }
        return mk_bool(true);
    }
    case E_CONCAT: {
        sbuf b = {0};
        for (size_t i = 0; i < n->nargs; i++) put_str(j, &b, eval(j, sc, n->args[i].e), 0);
        return mk_sbuf(&b);
    }
    default: fail_at(j, n->off, "internal error: not an expression");
    }
}

/* ---- statements ---- */

/* Binds one target: a variable of the current scope, or (attr != NULL) an attribute of the
 * namespace held by the variable `name` (found in any enclosing scope). */
static void assign_one(J *j, scope *sc, size_t off, const char *name, const char *attr, jv v) {
    if (!attr) {
        scope_set(j, sc, name, v);
        return;
    }
    jv ns;
    if (!scope_get(sc, name, &ns)) fail_at(j, off, "'%s' is undefined", name);
    if (ns.t != V_NS) fail_at(j, off, "cannot assign attribute on non-namespace object");
    dict_set(j, ns.v.d, mk_cstr(attr), v);
}

/* Binds a for/set target list to v (tuple unpacking when several names, or a tuple target). */
static void assign(J *j, scope *sc, size_t off, const char *const *names, const char *const *attrs, size_t n, bool tuple,
                   jv v) {
    if (n == 1 && !tuple) {
        assign_one(j, sc, off, names[0], attrs ? attrs[0] : NULL, v);
        return;
    }
    if (v.t == V_UNDEF) fail_undef(j, off, v);
    if (v.t != V_LIST && v.t != V_STR && v.t != V_DICT) fail_at(j, off, "cannot unpack non-iterable %s object", type_name(v));
    jlist *l = iter_items(j, off, v);
    if (l->n < n) fail_at(j, off, "not enough values to unpack (expected %zu, got %zu)", n, l->n);
    if (l->n > n) fail_at(j, off, "too many values to unpack (expected %zu)", n);
    for (size_t i = 0; i < n; i++) assign_one(j, sc, off, names[i], attrs ? attrs[i] : NULL, l->a[i]);
}

/* A for loop over iter: the loop filter is applied first (so loop.length counts kept items); each
 * iteration runs in a fresh scope under sc holding the targets and `loop`; break/continue end the
 * iteration via j->ctl; the else body runs when nothing was iterated. depth: recursive loops. */
static void run_for(J *j, scope *sc, const node *s, jv iter, int depth) {
    jlist *items = iter_items(j, s->a->off, iter);
    if (s->b) {
        jlist *kept = new_list(j, 0);
        for (size_t i = 0; i < items->n; i++) {
            step(j, s->off);
            scope *fs = new_scope(j, sc);
            assign(j, fs, s->off, s->names, NULL, s->nnames, s->nnames > 1, items->a[i]);
            if (truthy(eval(j, fs, s->b))) list_push(j, kept, items->a[i]);
        }
        items = kept;
    }
    jloop *lp = ar_zalloc(j, sizeof *lp);
    lp->items = items, lp->depth = depth, lp->stmt = s, lp->sc = sc;
    jv lv = {.t = V_LOOP};
    lv.v.lp = lp;
    for (size_t i = 0; i < items->n; i++) {
        step(j, s->off);
        scope *is = new_scope(j, sc);
        assign(j, is, s->off, s->names, NULL, s->nnames, s->nnames > 1, items->a[i]);
        scope_set(j, is, "loop", lv);
        lp->i = i;
        exec_body(j, is, s->body, s->nbody);
        if (j->ctl == CTL_BREAK) {
            j->ctl = CTL_NONE;
            break;
        }
        j->ctl = CTL_NONE;
    }
    if (!items->n && s->nels) exec_body(j, new_scope(j, sc), s->els, s->nels);
}

/* Executes one statement, appending to j->out. */
static void exec_stmt(J *j, scope *sc, const node *s) {
    step(j, s->off);
    switch (s->k) {
    case S_TEXT: sb_put(j, j->out, s->lit.v.s.p, s->lit.v.s.n); return;
    case S_OUT: put_str(j, j->out, eval(j, sc, s->a), 0); return;
    case S_IF:
        if (truthy(eval(j, sc, s->a))) exec_body(j, sc, s->body, s->nbody);
        else exec_body(j, sc, s->els, s->nels);
        return;
    case S_FOR: run_for(j, sc, s, eval(j, sc, s->a), 1); return;
    case S_SET: assign(j, sc, s->off, s->names, s->attrs, s->nnames, s->flag, eval(j, sc, s->a)); return;
    case S_SETBLOCK: {
        jv v = capture(j, sc, s->body, s->nbody);
        if (s->c) v = eval_filter(j, sc, s->c, &v);
        assign_one(j, sc, s->off, s->names[0], s->attrs[0], v);
        return;
    }
    case S_MACRO: {
        jmacro *m = ar_alloc(j, sizeof *m);
        m->def = s, m->closure = sc, m->name = s->name;
        jv v = {.t = V_MACRO};
        v.v.m = m;
        scope_set(j, sc, s->name, v);
        return;
    }
    case S_CALLBLOCK: {
        jmacro *c = ar_alloc(j, sizeof *c);
        c->def = s, c->closure = sc, c->name = "caller";
        put_str(j, j->out, eval_call(j, sc, s->a, c), 0);
        return;
    }
    case S_FILTERBLOCK: {
        jv v = capture(j, sc, s->body, s->nbody);
        put_str(j, j->out, eval_filter(j, sc, s->c, &v), 0);
        return;
    }
    case S_BREAK: j->ctl = CTL_BREAK; return;
    case S_CONTINUE: j->ctl = CTL_CONTINUE; return;
    case S_WITH: {
        scope *w = new_scope(j, sc);
        for (size_t i = 0; i < s->nnames; i++) scope_set(j, w, s->names[i], eval(j, sc, s->defs[i]));
        exec_body(j, w, s->body, s->nbody);
        return;
    }
    case S_BLOCK: exec_body(j, sc, s->body, s->nbody); return;
    default: fail_at(j, s->off, "internal error: not a statement");
    }
}

static void exec_body(J *j, scope *sc, node *const *b, size_t n) {
    for (size_t i = 0; i < n && j->ctl == CTL_NONE; i++) exec_stmt(j, sc, b[i]);
}

/* ==============================================================================================
 * Strings: Python str methods
 * ============================================================================================ */

static bool cp_in(uint32_t c, const char *set, size_t n) {
    for (size_t i = 0; i < n;)
        if (u8_next(set, n, &i) == c) return true;
    return false;
}

/* str.strip / lstrip / rstrip: chars NONE/UNDEF = Unicode whitespace. */
static jv str_strip(J *j, size_t off, jv s, jv chars, bool left, bool right) {
    const char *set = NULL;
    size_t setn = 0;
    if (chars.t == V_STR) set = chars.v.s.p, setn = chars.v.s.n;
    else if (chars.t != V_NONE) fail_at(j, off, "strip arg must be None or str");
    const char *p = s.v.s.p;
    size_t n = s.v.s.n, st = 0, en = 0, i = 0;
    bool seen = false;
    while (i < n) {
        size_t b = i;
        uint32_t c = u8_next(p, n, &i);
        bool strip = set ? cp_in(c, set, setn) : cp_space(c);
        if (!strip) {
            if (!seen) st = b, seen = true;
            en = i;
        }
    }
    if (!seen) return mk_str("", 0); /* all stripped, from whichever side */
    size_t a = left ? st : 0, e = right ? en : n;
    return mk_str(p + a, e - a);
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_JTITLE, CASE_CAPITALIZE, CASE_SWAP };

/* Case mappings by code point: upper/lower, Python's str.title and capitalize, jinja2's title
 * filter (CASE_JTITLE) and swapcase. */
static jv str_case(J *j, jv s, int mode) {
    const char *p = s.v.s.p;
    size_t n = s.v.s.n;
    sbuf b = {0};
    sb_reserve(j, &b, n + 8);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = u8_next(p, n, &i), o = c;
        switch (mode) {
        case CASE_UPPER: o = cp_upper(c); break;
        case CASE_LOWER: o = cp_lower(c); break;
        case CASE_SWAP: o = cp_upper(c) != c ? cp_upper(c) : cp_lower(c); break;
        case CASE_CAPITALIZE: o = first ? cp_upper(c) : cp_lower(c); break;
        case CASE_TITLE: /* Python str.title: a cased char after an uncased one starts a word */
            if (cp_cased(c)) o = prev_cased ? cp_lower(c) : cp_upper(c), prev_cased = true;
            else prev_cased = false;
            break;
        case CASE_JTITLE: { /* jinja2's title filter: words start after - ( { [ < or whitespace */
            bool delim = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || cp_space(c);
            if (delim) prev_cased = false;
            else o = prev_cased ? cp_lower(c) : cp_upper(c), prev_cased = true;
            break;
        }
        }
        first = false;
        if (c == 0xDF && (mode == CASE_UPPER || mode == CASE_SWAP)) sb_put(j, &b, "SS", 2);
        else if (o == c) sb_put(j, &b, p + st, i - st);
        else {
            char tmp[4];
            sb_put(j, &b, tmp, u8_encode(o, tmp));
        }
    }
    return mk_sbuf(&b);
}

/* Python str.replace (count < 0: all; an empty `old` inserts between code points). */
static jv str_replace(J *j, jv s, jv old, jv new_, int64_t count) {
    if (count < 0) count = INT64_MAX;
    sbuf b = {0};
    const char *p = s.v.s.p;
    size_t n = s.v.s.n;
    if (!old.v.s.n) {
        size_t i = 0;
        while (count > 0) {
            sb_put(j, &b, new_.v.s.p, new_.v.s.n);
            count--;
            if (i >= n) break;
            size_t st = i;
            u8_next(p, n, &i);
            sb_put(j, &b, p + st, i - st);
        }
        sb_put(j, &b, p + i, n - i);
        return mk_sbuf(&b);
    }
    size_t i = 0;
    while (count > 0 && i <= n) {
        const char *f = memmem(p + i, n - i, old.v.s.p, old.v.s.n);
        if (!f) break;
        size_t at = (size_t)(f - p);
        sb_put(j, &b, p + i, at - i);
        sb_put(j, &b, new_.v.s.p, new_.v.s.n);
        i = at + old.v.s.n;
        count--;
    }
    if (i == 0) return s;
    sb_put(j, &b, p + i, n - i);
    return mk_sbuf(&b);
}

/* str.split / str.rsplit */
static jv str_split(J *j, size_t off, jv s, jv sep, int64_t maxsplit, bool from_right) {
    const char *p = s.v.s.p;
    size_t n = s.v.s.n;
    jlist *l = new_list(j, 0);
    if (maxsplit < 0) maxsplit = INT64_MAX;
    if (sep.t == V_NONE) {
        /* runs of whitespace; decode to code point boundaries first */
        size_t ncp = u8_count(p, n);
        size_t *bo = ar_array(j, ncp + 1, sizeof *bo);
        bool *sp = ar_array(j, ncp + 1, sizeof *sp);
        for (size_t i = 0, k = 0; k < ncp; k++) {
            bo[k] = i;
            sp[k] = cp_space(u8_next(p, n, &i));
        }
        bo[ncp] = n;
        if (!from_right) {
            size_t k = 0;
            while (k < ncp) {
                while (k < ncp && sp[k]) k++;
                if (k >= ncp) break;
                if (maxsplit == 0) {
                    size_t e = ncp;
                    while (e > k && sp[e - 1]) e--;
                    list_push(j, l, mk_str(p + bo[k], bo[e] - bo[k]));
                    break;
                }
                size_t st = k;
                while (k < ncp && !sp[k]) k++;
                list_push(j, l, mk_str(p + bo[st], bo[k] - bo[st]));
                maxsplit--;
            }
        } else {
            jlist *r = new_list(j, 0);
            size_t k = ncp;
            while (k > 0) {
                while (k > 0 && sp[k - 1]) k--;
                if (k == 0) break;
                if (maxsplit == 0) {
                    size_t b0 = 0;
                    while (b0 < k && sp[b0]) b0++;
                    list_push(j, r, mk_str(p + bo[b0], bo[k] - bo[b0]));
                    break;
                }
                size_t en = k;
                while (k > 0 && !sp[k - 1]) k--;
                list_push(j, r, mk_str(p + bo[k], bo[en] - bo[k]));
                maxsplit--;
            }
            for (size_t i = r->n; i-- > 0;) list_push(j, l, r->a[i]);
        }
        return mk_list(l, false);
    }
    if (sep.t != V_STR) fail_at(j, off, "must be str or None, not %s", type_name(sep));
    if (!sep.v.s.n) fail_at(j, off, "empty separator");
    const char *q = sep.v.s.p;
    size_t m = sep.v.s.n;
    if (!from_right) {
        size_t i = 0;
        for (;;) {
            const char *f = maxsplit > 0 && i <= n ? memmem(p + i, n - i, q, m) : NULL;
            if (!f) {
                list_push(j, l, mk_str(p + i, n - i));
                break;
            }
            list_push(j, l, mk_str(p + i, (size_t)(f - p) - i));
            i = (size_t)(f - p) + m;
            maxsplit--;
        }
    } else {
        jlist *r = new_list(j, 0);
        size_t e = n;
        for (;;) {
            size_t found = SIZE_MAX;
            if (maxsplit > 0 && e >= m)
                for (size_t k = e - m + 1; k-- > 0;)
                    if (!memcmp(p + k, q, m)) { found = k; break; }
            if (found == SIZE_MAX) {
                list_push(j, r, mk_str(p, e));
                break;
            }
            list_push(j, r, mk_str(p + found + m, e - found - m));
            e = found;
            maxsplit--;
        }
        for (size_t i = r->n; i-- > 0;) list_push(j, l, r->a[i]);
    }
    return mk_list(l, false);
}

static jv str_splitlines(J *j, jv s, bool keepends) {
    const char *p = s.v.s.p;
    size_t n = s.v.s.n, i = 0, st = 0;
    jlist *l = new_list(j, 0);
    while (i < n) {
        size_t b = i;
        uint32_t c = u8_next(p, n, &i);
        bool brk = c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
                   c == 0x2028 || c == 0x2029;
        if (!brk) continue;
        if (c == '\r' && i < n && p[i] == '\n') i++;
        list_push(j, l, mk_str(p + st, (keepends ? i : b) - st));
        st = i;
    }
    if (st < n) list_push(j, l, mk_str(p + st, n - st));
    return mk_list(l, false);
}

/* sep.join(items); convert: str() each item (the join filter), else items must be strings. */
static jv str_join(J *j, size_t off, jv sep, jv items, bool convert) {
    jlist *l = iter_items(j, off, items);
    sbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i) sb_put(j, &b, sep.v.s.p, sep.v.s.n);
        jv v = l->a[i];
        if (v.t != V_STR && !convert) fail_at(j, off, "sequence item %zu: expected str instance, %s found", i, type_name(v));
        put_str(j, &b, v, 0);
    }
    return mk_sbuf(&b);
}

static jv pad_str(J *j, jv s, int64_t width, jv fill, int where /* -1 ljust, 0 center, 1 rjust */) {
    size_t len = u8_count(s.v.s.p, s.v.s.n);
    if (width <= 0 || (uint64_t)width <= len) return s;
    if ((uint64_t)width > j->lim.max_output) fail_raw(j, "template error: padding width too large");
    const char *f = " ";
    size_t fn = 1;
    if (fill.t == V_STR && fill.v.s.n) f = fill.v.s.p, fn = fill.v.s.n;
    size_t marg = (size_t)width - len, left;
    if (where < 0) left = 0;
    else if (where > 0) left = marg;
    else left = marg / 2 + (marg & (size_t)width & 1);
    sbuf b = {0};
    for (size_t i = 0; i < left; i++) sb_put(j, &b, f, fn);
    sb_put(j, &b, s.v.s.p, s.v.s.n);
    for (size_t i = left; i < marg; i++) sb_put(j, &b, f, fn);
    return mk_sbuf(&b);
}

/* Python printf-style formatting: fmt % args (a tuple, a mapping for %(name)s, or one value). */
static jv str_percent(J *j, size_t off, jv fmt, jv args) {
    const char *p = fmt.v.s.p;
    size_t n = fmt.v.s.n, ai = 0;
    jlist *tup = NULL;
    jdict *map = NULL;
    jv single = args;
    if (args.t == V_LIST && args.tuple) tup = args.v.l;
    else if (args.t == V_DICT) map = args.v.d;
    bool used_single = false;
    sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            sb_putc(j, &b, p[i]);
            continue;
        }
        if (++i >= n) fail_at(j, off, "incomplete format");
        jv v = mk_none();
        bool have = false;
        if (p[i] == '(') {
            size_t ks = ++i;
            while (i < n && p[i] != ')') i++;
            if (i >= n) fail_at(j, off, "incomplete format key");
            if (!map) fail_at(j, off, "format requires a mapping");
            size_t k;
            if (!dict_find(j, map, mk_str(p + ks, i - ks), &k)) fail_at(j, off, "KeyError: '%.*s'", (int)(i - ks), p + ks);
            v = map->v[k], have = true;
            i++;
        }
        char flags[8];
        size_t nf = 0;
        while (i < n && strchr("-+ #0", p[i]) && nf < sizeof flags - 1) flags[nf++] = p[i++];
        flags[nf] = 0;
        int width = -1, prec = -1;
        if (i < n && p[i] == '*') fail_at(j, off, "'*' widths are not supported");
        while (i < n && isdigit((unsigned char)p[i])) width = (width < 0 ? 0 : width) * 10 + (p[i++] - '0'), width = width > 100000 ? 100000 : width;
        if (i < n && p[i] == '.') {
            i++;
            prec = 0;
            while (i < n && isdigit((unsigned char)p[i])) prec = prec * 10 + (p[i++] - '0'), prec = prec > 1000 ? 1000 : prec;
        }
        while (i < n && (p[i] == 'l' || p[i] == 'h' || p[i] == 'L')) i++;
        if (i >= n) fail_at(j, off, "incomplete format");
        char conv = p[i];
        if (conv == '%') {
            sb_putc(j, &b, '%');
            continue;
        }
        if (!have) {
            if (tup) {
                if (ai >= tup->n) fail_at(j, off, "not enough arguments for format string");
                v = tup->a[ai++];
            } else {
                if (used_single) fail_at(j, off, "not enough arguments for format string");
                v = single, used_single = true;
            }
        }
        char cf[32], tmp[512];
        bool left = strchr(flags, '-') != NULL;
        switch (conv) {
        case 's': case 'r': case 'a': {
            sbuf t = {0};
            if (conv == 's') put_str(j, &t, v, 0);
            else put_repr(j, &t, v, 0);
            jv sv = mk_sbuf(&t);
            if (prec >= 0) sv.v.s.n = u8_offset(sv.v.s.p, sv.v.s.n, (size_t)prec);
            if (width > 0) sv = pad_str(j, sv, width, mk_str(" ", 1), left ? -1 : 1);
            sb_put(j, &b, sv.v.s.p, sv.v.s.n);
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'c': {
            if (v.t == V_UNDEF) fail_undef(j, off, v);
            if (conv == 'c' && v.t == V_STR) {
                if (u8_count(v.v.s.p, v.v.s.n) != 1) fail_at(j, off, "%%c requires int or char");
                sb_put(j, &b, v.v.s.p, v.v.s.n);
                break;
            }
            if (!is_num(v) || (v.t == V_FLOAT && conv != 'd' && conv != 'i' && conv != 'u'))
                fail_at(j, off, "%%%c format: %s is required, not %s", conv, conv == 'c' ? "an integer" : "a real number", type_name(v));
            if (v.t == V_FLOAT && !isfinite(v.v.f)) fail_at(j, off, "cannot convert float to integer");
            int64_t x = v.t == V_FLOAT ? (int64_t)v.v.f : num_i(v);
            if (conv == 'c') {
                char u[4];
                sb_put(j, &b, u, u8_encode((uint32_t)(x < 0 || x > 0x10FFFF ? 0xFFFD : x), u));
                break;
            }
            const char *lc = conv == 'x' ? PRIx64 : conv == 'X' ? PRIX64 : conv == 'o' ? PRIo64 : PRId64;
            if (conv == 'x' || conv == 'X' || conv == 'o') {
                /* Python prints negative hex/octal as -ff */
                bool neg = x < 0;
                uint64_t ux = neg ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
                snprintf(cf, sizeof cf, "%%%s%s", strchr(flags, '#') ? "#" : "", lc);
                char num[64];
                snprintf(num, sizeof num, cf, ux);
                snprintf(tmp, sizeof tmp, "%s%s", neg ? "-" : "", num);
                jv sv = mk_str(ar_strndup(j, tmp, strlen(tmp)), strlen(tmp));
                if (width > 0) sv = pad_str(j, sv, width, mk_str(strchr(flags, '0') && !left ? "0" : " ", 1), left ? -1 : 1);
                sb_put(j, &b, sv.v.s.p, sv.v.s.n);
                break;
            }
            snprintf(cf, sizeof cf, "%%%s%s%s", flags, width >= 0 ? "*" : "", lc);
            if (width >= 0) snprintf(tmp, sizeof tmp, cf, width, x);
            else snprintf(tmp, sizeof tmp, cf, x);
            sb_puts(j, &b, tmp);
            break;
        }
        case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': {
            if (v.t == V_UNDEF) fail_undef(j, off, v);
            if (!is_num(v)) fail_at(j, off, "must be real number, not %s", type_name(v));
            snprintf(cf, sizeof cf, "%%%s%s.*%c", flags, width >= 0 ? "*" : "", conv);
            if (width >= 0) snprintf(tmp, sizeof tmp, cf, width, prec < 0 ? 6 : prec, num_f(v));
            else snprintf(tmp, sizeof tmp, cf, prec < 0 ? 6 : prec, num_f(v));
            sb_puts(j, &b, tmp);
            break;
        }
        default: fail_at(j, off, "unsupported format character '%c'", conv);
        }
    }
    if (tup && ai < tup->n) fail_at(j, off, "not all arguments converted during string formatting");
    if (!tup && !map && !used_single) fail_at(j, off, "not all arguments converted during string formatting");
    return mk_sbuf(&b);
}

/* format(v, spec), Python's format mini-language: [[fill]align][sign][#][0][width][,|_][.precision][type]
 * for str, int and float values (an empty spec is str(v) for any value). */
static jv format_spec(J *j, size_t off, jv v, const char *sp, size_t n) {
    if (!n) return to_str(j, v);
    size_t i = 0;
    char fill = ' ', align = 0, sign = '-', type = 0, group = 0;
    bool alt = false, zero = false;
    int64_t width = -1, prec = -1;
    if (n >= 2 && strchr("<>^=", sp[1])) fill = sp[0], align = sp[1], i = 2;
    else if (strchr("<>^=", sp[0])) align = sp[0], i = 1;
    if (i < n && strchr("+- ", sp[i])) sign = sp[i++];
    if (i < n && sp[i] == '#') alt = true, i++;
    if (i < n && sp[i] == '0') zero = true, i++;
    while (i < n && isdigit((unsigned char)sp[i])) width = (width < 0 ? 0 : width) * 10 + (sp[i++] - '0'), width = width > 100000 ? 100000 : width;
    if (i < n && (sp[i] == ',' || sp[i] == '_')) group = sp[i++];
    if (i < n && sp[i] == '.') {
        i++, prec = 0;
        if (i >= n || !isdigit((unsigned char)sp[i])) fail_at(j, off, "Format specifier missing precision");
        while (i < n && isdigit((unsigned char)sp[i])) prec = prec * 10 + (sp[i++] - '0'), prec = prec > 1000 ? 1000 : prec;
    }
    if (i < n) type = sp[i++];
    if (i < n) fail_at(j, off, "Invalid format specifier");
    char num[1200];
    jv body;
    bool numeric = false, negative = false;
    if (v.t == V_STR) {
        if (type && type != 's') fail_at(j, off, "Unknown format code '%c' for object of type 'str'", type);
        body = v;
        if (prec >= 0) body.v.s.n = u8_offset(v.v.s.p, v.v.s.n, (size_t)prec);
    } else if (is_num(v)) {
        numeric = true;
        bool isint = is_intlike(v);
        char t = type ? type : isint ? 'd' : 0;
        if (isint && strchr("dxXob", t) && t) {
            int64_t x = num_i(v);
            negative = x < 0;
            uint64_t u = negative ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
            if (t == 'b') {
                char tmp[70];
                size_t k = 0;
                do tmp[k++] = (char)('0' + (u & 1)), u >>= 1; while (u);
                size_t o = 0;
                if (alt) num[o++] = '0', num[o++] = 'b';
                while (k) num[o++] = tmp[--k];
                num[o] = 0;
            } else snprintf(num, sizeof num, t == 'x' ? "%s%" PRIx64 : t == 'X' ? "%s%" PRIX64 : t == 'o' ? "%s%" PRIo64 : "%s%" PRIu64,
                            alt ? (t == 'x' ? "0x" : t == 'X' ? "0X" : t == 'o' ? "0o" : "") : "", u);
        } else if (strchr("eEfFgG%", t) || !t) {
            if (isint && !type) t = 'd';
            double d = num_f(v);
            negative = signbit(d) && !isnan(d);
            double a = fabs(d);
            if (!t) {
                if (prec < 0) fmt_float(a, num, sizeof num, false);
                else snprintf(num, sizeof num, "%.*g", (int)(prec ? prec : 1), a);
            } else if (t == '%') snprintf(num, sizeof num, "%.*f%%", (int)(prec < 0 ? 6 : prec), a * 100);
            else {
                char f[8] = {'%', '.', '*', t, 0};
                snprintf(num, sizeof num, f, (int)(prec < 0 ? 6 : prec), a);
            }
        } else fail_at(j, off, "Unknown format code '%c' for object of type '%s'", t, type_name(v));
        body = mk_str(ar_strndup(j, num, strlen(num)), strlen(num));
        if (group) { /* thousands separators in the integer part */
            sbuf g = {0};
            size_t len = strlen(num), ip = 0;
            while (ip < len && isdigit((unsigned char)num[ip])) ip++;
            for (size_t k = 0; k < ip; k++) {
                sb_putc(j, &g, num[k]);
                if ((ip - k - 1) % 3 == 0 && k + 1 < ip) sb_putc(j, &g, group);
            }
            sb_puts(j, &g, num + ip);
            body = mk_sbuf(&g);
        }
    } else fail_at(j, off, "unsupported format string passed to %s.__format__", type_name(v));
    const char *sgn = numeric ? (negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "") : "";
    if (zero && !align) fill = '0', align = '=';
    if (!align) align = numeric ? '>' : '<';
    size_t blen = u8_count(body.v.s.p, body.v.s.n) + strlen(sgn);
    size_t pad = width > 0 && (size_t)width > blen ? (size_t)width - blen : 0;
    size_t left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
    sbuf b = {0};
    if (align == '=') sb_puts(j, &b, sgn);
    for (size_t k = 0; k < left; k++) sb_putc(j, &b, fill);
    if (align != '=') sb_puts(j, &b, sgn);
    sb_put(j, &b, body.v.s.p, body.v.s.n);
    for (size_t k = left; k < pad; k++) sb_putc(j, &b, fill);
    return mk_sbuf(&b);
}

/* str.format: {} {0} {name} {name.attr} {0[key]} and {{ }}; !r / !s; format specs (format_spec). */
static jv str_format(J *j, size_t off, jv fmt, const cargs *a) {
    const char *p = fmt.v.s.p;
    size_t n = fmt.v.s.n, auto_i = 0;
    sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '}' ) {
            if (i + 1 < n && p[i + 1] == '}') { sb_putc(j, &b, '}'); i++; continue; }
            fail_at(j, off, "Single '}' encountered in format string");
        }
        if (c != '{') { sb_putc(j, &b, c); continue; }
        if (i + 1 < n && p[i + 1] == '{') { sb_putc(j, &b, '{'); i++; continue; }
        size_t st = ++i;
        while (i < n && p[i] != '}' && p[i] != '!' && p[i] != ':' && p[i] != '.' && p[i] != '[') i++;
        jv v;
        if (i == st) {
            v = auto_i < a->npos ? a->pos[auto_i] : mk_undef(NULL, "Replacement index out of range");
            auto_i++;
            if (v.t == V_UNDEF) fail_at(j, off, "Replacement index %zu out of range for positional args tuple", auto_i - 1);
        } else if (isdigit((unsigned char)p[st])) {
            size_t k = 0;
            for (size_t q = st; q < i; q++) k = k * 10 + (size_t)(p[q] - '0');
            if (k >= a->npos) fail_at(j, off, "Replacement index %zu out of range for positional args tuple", k);
            v = a->pos[k];
        } else {
            char *nm = ar_strndup(j, p + st, i - st);
            if (!has_arg(a, SIZE_MAX, nm)) fail_at(j, off, "KeyError: '%s'", nm);
            v = A(a, SIZE_MAX, nm, mk_none());
        }
        while (i < n && (p[i] == '.' || p[i] == '[')) {
            if (p[i] == '.') {
                size_t s2 = ++i;
                while (i < n && p[i] != '}' && p[i] != '!' && p[i] != ':' && p[i] != '.' && p[i] != '[') i++;
                v = get_attr(j, off, v, ar_strndup(j, p + s2, i - s2));
            } else {
                size_t s2 = ++i;
                while (i < n && p[i] != ']') i++;
                if (i >= n) fail_at(j, off, "Missing ']' in format string");
                bool digits = i > s2;
                int64_t k = 0;
                for (size_t q = s2; q < i; q++) {
                    if (!isdigit((unsigned char)p[q])) digits = false;
                    else if (k < INT64_MAX / 10 - 10) k = k * 10 + (p[q] - '0');
                }
                v = get_item(j, off, v, digits ? mk_int(k) : mk_str(p + s2, i - s2));
                i++;
            }
        }
        char conv = 's';
        if (i < n && p[i] == '!') {
            if (i + 1 >= n) fail_at(j, off, "end of string while looking for conversion specifier");
            conv = p[i + 1];
            i += 2;
        }
        size_t spec = i, spec_n = 0;
        if (i < n && p[i] == ':') {
            spec = ++i;
            while (i < n && p[i] != '}') i++;
            spec_n = i - spec;
        }
        if (i >= n || p[i] != '}') fail_at(j, off, "expected '}' before end of string");
        if (conv == 'r' || conv == 'a') {
            sbuf t = {0};
            put_repr(j, &t, v, 0);
            v = mk_sbuf(&t);
        } else if (conv != 's') fail_at(j, off, "Unknown conversion specifier %c", conv);
        jv s = format_spec(j, off, v, p + spec, spec_n);
        sb_put(j, &b, s.v.s.p, s.v.s.n);
    }
    return mk_sbuf(&b);
}

static size_t cp_index_of(const char *p, size_t byte_off) { return u8_count(p, byte_off); }

/* Python's str.isdigit/isalpha/isalnum/isspace/isupper/islower on the whole string. */
static bool str_pred(jv s, const char *name) {
    const char *p = s.v.s.p;
    size_t n = s.v.s.n;
    if (!n) return false;
    bool any_cased = false, any_upper = false, any_lower = false;
    for (size_t i = 0; i < n;) {
        uint32_t c = u8_next(p, n, &i);
        if (!strcmp(name, "isdigit") || !strcmp(name, "isnumeric") || !strcmp(name, "isdecimal")) {
            if (!cp_digit(c)) return false;
        } else if (!strcmp(name, "isalpha")) {
            if (!cp_alpha(c)) return false;
        } else if (!strcmp(name, "isalnum")) {
            if (!cp_alpha(c) && !cp_digit(c)) return false;
        } else if (!strcmp(name, "isspace")) {
            if (!cp_space(c)) return false;
        } else if (cp_cased(c)) {
            any_cased = true;
            if (cp_lower(c) != c || (cp_upper(c) == c && c != 0xDF)) any_upper = true;
            else any_lower = true;
        }
    }
    if (!strcmp(name, "isupper")) return any_cased && !any_lower;
    if (!strcmp(name, "islower")) return any_cased && !any_upper;
    return true;
}

static int64_t int_arg(J *j, size_t off, jv v, const char *what) {
    if (!is_intlike(v)) fail_at(j, off, "%s must be an integer, not %s", what, type_name(v));
    return num_i(v);
}

static jv str_arg(J *j, size_t off, jv v, const char *what) {
    if (v.t == V_UNDEF) fail_undef(j, off, v);
    if (v.t != V_STR) fail_at(j, off, "%s must be str, not %s", what, type_name(v));
    return v;
}

static bool prefix_match(J *j, size_t off, jv s, jv pre, bool suffix) {
    if (pre.t == V_LIST && pre.tuple) {
        for (size_t i = 0; i < pre.v.l->n; i++)
            if (prefix_match(j, off, s, pre.v.l->a[i], suffix)) return true;
        return false;
    }
    str_arg(j, off, pre, suffix ? "endswith first arg" : "startswith first arg");
    if (pre.v.s.n > s.v.s.n) return false;
    return !memcmp(s.v.s.p + (suffix ? s.v.s.n - pre.v.s.n : 0), pre.v.s.p, pre.v.s.n);
}

/* The Python str methods templates call (strip, split, startswith, replace, format, ...). */
static jv call_str_method(J *j, size_t off, jv s, const char *m, const cargs *a) {
    jv none = mk_none();
    /* Python's argument counts (format takes anything) */
    static const struct { const char *name; unsigned char max; } arity[] = {
        {"strip", 1}, {"lstrip", 1}, {"rstrip", 1}, {"split", 2}, {"rsplit", 2}, {"splitlines", 1}, {"startswith", 3},
        {"endswith", 3}, {"replace", 3}, {"find", 3}, {"rfind", 3}, {"index", 3}, {"rindex", 3}, {"count", 3}, {"join", 1},
        {"zfill", 1}, {"center", 2}, {"ljust", 2}, {"rjust", 2}, {"partition", 1}, {"rpartition", 1}, {"removeprefix", 1},
        {"removesuffix", 1}, {"format", 255}};
    size_t max = 0, given = a->npos + a->nkw;
    for (size_t i = 0; i < sizeof arity / sizeof arity[0]; i++)
        if (!strcmp(arity[i].name, m)) max = arity[i].max;
    if (given > max) {
        if (!max) fail_at(j, off, "str.%s() takes no arguments (%zu given)", m, given);
        fail_at(j, off, "%s expected at most %zu arguments, got %zu", m, max, given);
    }
    if (!strcmp(m, "strip")) return str_strip(j, off, s, A(a, 0, "chars", none), true, true);
    if (!strcmp(m, "lstrip")) return str_strip(j, off, s, A(a, 0, "chars", none), true, false);
    if (!strcmp(m, "rstrip")) return str_strip(j, off, s, A(a, 0, "chars", none), false, true);
    if (!strcmp(m, "split") || !strcmp(m, "rsplit"))
        return str_split(j, off, s, A(a, 0, "sep", none), int_arg(j, off, A(a, 1, "maxsplit", mk_int(-1)), "maxsplit"), m[0] == 'r');
    if (!strcmp(m, "splitlines")) return str_splitlines(j, s, truthy(A(a, 0, "keepends", mk_bool(false))));
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (!a->npos) fail_at(j, off, "%s() takes at least 1 argument (0 given)", m);
        return mk_bool(prefix_match(j, off, s, a->pos[0], m[0] == 'e'));
    }
    if (!strcmp(m, "upper")) return str_case(j, s, CASE_UPPER);
    if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return str_case(j, s, CASE_LOWER);
    if (!strcmp(m, "title")) return str_case(j, s, CASE_TITLE);
    if (!strcmp(m, "capitalize")) return str_case(j, s, CASE_CAPITALIZE);
    if (!strcmp(m, "swapcase")) return str_case(j, s, CASE_SWAP);
    if (!strcmp(m, "replace")) {
        if (a->npos < 2) fail_at(j, off, "replace() takes at least 2 arguments");
        return str_replace(j, s, str_arg(j, off, a->pos[0], "replace() argument 1"), str_arg(j, off, a->pos[1], "replace() argument 2"),
                           int_arg(j, off, A(a, 2, "count", mk_int(-1)), "count"));
    }
    if (!strcmp(m, "find") || !strcmp(m, "index") || !strcmp(m, "rfind") || !strcmp(m, "rindex") || !strcmp(m, "count")) {
        if (!a->npos) fail_at(j, off, "%s() takes at least 1 argument (0 given)", m);
        jv sub = str_arg(j, off, a->pos[0], "substring");
        if (!strcmp(m, "count")) {
            if (!sub.v.s.n) return mk_int((int64_t)u8_count(s.v.s.p, s.v.s.n) + 1);
            int64_t c = 0;
            for (size_t i = 0; i + sub.v.s.n <= s.v.s.n;) {
                const char *f = memmem(s.v.s.p + i, s.v.s.n - i, sub.v.s.p, sub.v.s.n);
                if (!f) break;
                c++;
                i = (size_t)(f - s.v.s.p) + sub.v.s.n;
            }
            return mk_int(c);
        }
        size_t found = SIZE_MAX;
        if (m[0] != 'r') {
            const char *f = sub.v.s.n ? memmem(s.v.s.p, s.v.s.n, sub.v.s.p, sub.v.s.n) : s.v.s.p;
            if (f) found = (size_t)(f - s.v.s.p);
        } else if (sub.v.s.n <= s.v.s.n) {
            for (size_t k = s.v.s.n - sub.v.s.n + 1; k-- > 0;)
                if (!memcmp(s.v.s.p + k, sub.v.s.p, sub.v.s.n)) { found = k; break; }
        }
        if (found == SIZE_MAX) {
            if (!strcmp(m, "index") || !strcmp(m, "rindex")) fail_at(j, off, "substring not found");
            return mk_int(-1);
        }
        return mk_int((int64_t)cp_index_of(s.v.s.p, found));
    }
    if (!strcmp(m, "join")) {
        if (!a->npos) fail_at(j, off, "join() takes exactly one argument (0 given)");
        return str_join(j, off, s, a->pos[0], false);
    }
    if (!strcmp(m, "format")) return str_format(j, off, s, a);
    if (!strncmp(m, "is", 2)) return mk_bool(str_pred(s, m));
    if (!strcmp(m, "zfill")) {
        int64_t w = int_arg(j, off, A(a, 0, "width", mk_int(0)), "width");
        size_t len = u8_count(s.v.s.p, s.v.s.n);
        if (w <= 0 || (uint64_t)w <= len) return s;
        bool sign = s.v.s.n && (s.v.s.p[0] == '-' || s.v.s.p[0] == '+');
        jv body = sign ? mk_str(s.v.s.p + 1, s.v.s.n - 1) : s;
        jv padded = pad_str(j, body, w - (sign ? 1 : 0), mk_str("0", 1), 1);
        return sign ? concat_str(j, mk_str(s.v.s.p, 1), padded) : padded;
    }
    if ((!strcmp(m, "center") || !strcmp(m, "ljust") || !strcmp(m, "rjust")) && has_arg(a, 1, "fillchar")) {
        jv fc = A(a, 1, "fillchar", mk_none());
        if (fc.t != V_STR || u8_count(fc.v.s.p, fc.v.s.n) != 1)
            fail_at(j, off, "The fill character must be exactly one character long");
    }
    if (!strcmp(m, "center") || !strcmp(m, "ljust") || !strcmp(m, "rjust"))
        return pad_str(j, s, int_arg(j, off, A(a, 0, "width", mk_int(0)), "width"), A(a, 1, "fillchar", mk_str(" ", 1)),
                       m[0] == 'c' ? 0 : m[0] == 'l' ? -1 : 1);
    if (!strcmp(m, "partition") || !strcmp(m, "rpartition")) {
        if (!a->npos) fail_at(j, off, "%s() takes exactly one argument", m);
        jv sep = str_arg(j, off, a->pos[0], "separator");
        if (!sep.v.s.n) fail_at(j, off, "empty separator");
        jv parts = str_split(j, off, s, sep, 1, m[0] == 'r');
        jlist *l = new_list(j, 3);
        l->n = 3;
        jv e = mk_str("", 0);
        if (parts.v.l->n == 1) {
            if (m[0] == 'r') l->a[0] = e, l->a[1] = e, l->a[2] = s;
            else l->a[0] = s, l->a[1] = e, l->a[2] = e;
        } else l->a[0] = parts.v.l->a[0], l->a[1] = sep, l->a[2] = parts.v.l->a[1];
        return mk_list(l, true);
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (!a->npos) fail_at(j, off, "%s() takes exactly one argument", m);
        jv x = str_arg(j, off, a->pos[0], m);
        bool suf = m[6] == 's';
        if (!prefix_match(j, off, s, x, suf)) return s;
        return mk_str(s.v.s.p + (suf ? 0 : x.v.s.n), s.v.s.n - x.v.s.n);
    }
    fail_at(j, off, "'str' object has no attribute '%s'", m);
}

/* ==============================================================================================
 * Methods, builtins
 * ============================================================================================ */

static jv dict_items(J *j, jdict *d) {
    jlist *l = new_list(j, d->n);
    for (size_t i = 0; i < d->n; i++) l->a[i] = mk_pair(j, d->k[i], d->v[i]);
    l->n = d->n;
    return mk_list(l, false);
}

/* Calls a bound method: str methods, dict items/keys/values/get/copy, list index/count/copy,
 * loop.cycle/changed. Mutating methods raise, as in jinja2's immutable sandbox. */
static jv call_method(J *j, size_t off, jmethod *me, const cargs *a) {
    jv s = me->self;
    const char *m = me->name;
    if (s.t == V_STR) return call_str_method(j, off, s, m, a);
    if (s.t == V_DICT) {
        jdict *d = s.v.d;
        size_t nargs = a->npos + a->nkw, max_args = !strcmp(m, "get") ? 2 : 0;
        if (nargs > max_args || a->nkw) fail_at(j, off, "dict.%s() takes %s arguments (%zu given)", m, max_args ? "at most 2" : "no", nargs);
        if (!strcmp(m, "items")) return dict_items(j, d);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            jlist *l = new_list(j, d->n);
            for (size_t i = 0; i < d->n; i++) l->a[i] = m[0] == 'k' ? d->k[i] : d->v[i];
            l->n = d->n;
            return mk_list(l, false);
        }
        if (!strcmp(m, "get")) {
            if (!a->npos) fail_at(j, off, "get expected at least 1 argument, got 0");
            size_t i;
            if (dict_find(j, d, a->pos[0], &i)) return d->v[i];
            return a->npos > 1 ? a->pos[1] : mk_none();
        }
        if (!strcmp(m, "copy")) {
            jdict *c = new_dict(j);
            for (size_t i = 0; i < d->n; i++) dict_set(j, c, d->k[i], d->v[i]);
            return mk_dict(c);
        }
    } else if (s.t == V_LIST) {
        jlist *l = s.v.l;
        if (!strcmp(m, "index") || !strcmp(m, "count")) {
            if (!a->npos) fail_at(j, off, "%s() takes exactly one argument (0 given)", m);
            int64_t c = 0;
            for (size_t i = 0; i < l->n; i++)
                if (py_eq(j, l->a[i], a->pos[0], 0)) {
                    if (m[0] == 'i') return mk_int((int64_t)i);
                    c++;
                }
            if (m[0] == 'i') fail_at(j, off, "value is not in list");
            return mk_int(c);
        }
        if (!strcmp(m, "copy")) return mk_list(iter_items(j, off, mk_list(l, false)), false);
    } else if (s.t == V_LOOP) {
        jloop *lp = s.v.lp;
        if (!strcmp(m, "cycle")) {
            if (!a->npos) fail_at(j, off, "no items for cycling given");
            return a->pos[lp->i % a->npos];
        }
        if (!strcmp(m, "changed")) {
            jv cur_v = mk_list(new_list(j, 0), true);
            for (size_t i = 0; i < a->npos; i++) list_push(j, cur_v.v.l, a->pos[i]);
            if (lp->has_changed && py_eq(j, lp->last_changed, cur_v, 0)) return mk_bool(false);
            lp->last_changed = cur_v, lp->has_changed = true;
            return mk_bool(true);
        }
    }
    fail_at(j, off, "access to attribute '%s' of '%s' object is unsafe.", m, type_name(s));
}

/* The global functions: range (at most 100000 items, the sandbox's limit), namespace, dict,
 * raise_exception (its message becomes the error, exactly), strftime_now (see lm_chat_limits.now). */
static jv call_builtin(J *j, size_t off, int fn, const cargs *a) {
    switch (fn) {
    case FN_RANGE: {
        if (a->npos < 1 || a->npos > 3) fail_at(j, off, "range expected 1 to 3 arguments, got %zu", a->npos);
        int64_t st = 0, en, sp = 1;
        for (size_t i = 0; i < a->npos; i++)
            if (!is_intlike(a->pos[i]))
                fail_at(j, off, "'%s' object cannot be interpreted as an integer", type_name(a->pos[i]));
        if (a->npos == 1) en = num_i(a->pos[0]);
        else st = num_i(a->pos[0]), en = num_i(a->pos[1]);
        if (a->npos == 3) sp = num_i(a->pos[2]);
        if (sp == 0) fail_at(j, off, "range() arg 3 must not be zero");
        double cnt_d = sp > 0 ? ((double)en - (double)st) / (double)sp : ((double)st - (double)en) / (double)-sp;
        if (cnt_d > 100000) fail_at(j, off, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        jlist *l = new_list(j, 0);
        for (int64_t v = st; sp > 0 ? v < en : v > en; v += sp) list_push(j, l, mk_int(v));
        return mk_list(l, false);
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        jdict *d = new_dict(j);
        for (size_t i = 0; i < a->npos; i++) {
            jv p = a->pos[i];
            if (p.t == V_DICT || p.t == V_NS)
                for (size_t k = 0; k < p.v.d->n; k++) dict_set(j, d, p.v.d->k[k], p.v.d->v[k]);
            else if (p.t == V_LIST)
                for (size_t k = 0; k < p.v.l->n; k++) {
                    jv pr = p.v.l->a[k];
                    if (pr.t != V_LIST || pr.v.l->n != 2) fail_at(j, off, "dictionary update sequence element has wrong length");
                    dict_set(j, d, pr.v.l->a[0], pr.v.l->a[1]);
                }
            else fail_at(j, off, "'%s' object is not iterable", type_name(p));
        }
        for (size_t k = 0; k < a->nkw; k++) dict_set(j, d, mk_cstr(a->kw[k]), a->kwv[k]);
        return fn == FN_NAMESPACE ? mk_ns(d) : mk_dict(d);
    }
    case FN_RAISE: {
        jv m = a->npos ? a->pos[0] : A(a, SIZE_MAX, "message", mk_str("", 0));
        jv s = to_str(j, m);
        char *msg = ar_strndup(j, s.v.s.p, s.v.s.n);
        fail_raw(j, msg);
    }
    case FN_STRFTIME: {
        jv f = A(a, 0, "format", mk_undef("format", NULL));
        if (f.t != V_STR) fail_at(j, off, "strftime_now() argument must be str, not %s", type_name(f));
        time_t t;
        struct tm tm;
        int64_t now = j->lim.now;
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        if (now < 0 && sde && *sde) {
            char *end;
            long long v = strtoll(sde, &end, 10);
            if (!*end && v >= 0) now = v;
        }
        if (now >= 0) {
            t = (time_t)now;
            gmtime_r(&t, &tm);
        } else {
            t = time(NULL);
            localtime_r(&t, &tm);
        }
        char *fz = ar_strndup(j, f.v.s.p, f.v.s.n);
        char buf[1024];
        size_t r = f.v.s.n ? strftime(buf, sizeof buf, fz, &tm) : 0;
        return mk_str(ar_strndup(j, buf, r), r);
    }
    }
    fail_at(j, off, "unknown function");
}

/* ==============================================================================================
 * Filters and tests
 * ============================================================================================ */

static const char *const FILTERS[] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "forceescape", "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
    "pprint", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string",
    "sum", "title", "tojson", "trim", "unique", "upper", "wordcount", "batch", "slice", "truncate", NULL};
static const char *const TESTS[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping",
    "iterable", "sequence", "callable", "sameas", "escaped", "odd", "even", "divisibleby", "eq", "equalto", "==", "ne",
    "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "lower", "upper", "filter",
    "test", NULL};

static bool known_filter(const char *name) { return in_names(FILTERS, name) != NULL; }
static bool known_test(const char *name) { return in_names(TESTS, name) != NULL; }

/* jinja2's attribute getter for filters: "a.b.0" looks up items (then attributes) part by part. */
static jv attr_path(J *j, size_t off, jv item, jv attr) {
    if (is_intlike(attr)) return get_item(j, off, item, attr);
    if (attr.t != V_STR) fail_at(j, off, "attribute must be a string or an integer");
    const char *p = attr.v.s.p;
    size_t n = attr.v.s.n, i = 0;
    for (;;) {
        size_t st = i;
        while (i < n && p[i] != '.') i++;
        bool digits = i > st;
        int64_t k = 0;
        for (size_t q = st; q < i; q++) {
            if (!isdigit((unsigned char)p[q])) digits = false;
            else if (k < INT64_MAX / 10 - 10) k = k * 10 + (p[q] - '0');
        }
        item = get_item(j, off, item, digits ? mk_int(k) : mk_str(p + st, i - st));
        if (i >= n) return item;
        i++;
    }
}

/* Sort key: the attribute (if any), lower-cased when not case sensitive. */
static jv sort_key(J *j, size_t off, jv v, jv attribute, bool case_sensitive) {
    if (attribute.t != V_NONE && attribute.t != V_UNDEF) v = attr_path(j, off, v, attribute);
    if (!case_sensitive && v.t == V_STR) v = str_case(j, v, CASE_LOWER);
    return v;
}

/* Stable merge sort of idx[0..n) by keys (Python sorted semantics, reverse keeps stability). */
static void merge_sort(J *j, size_t off, size_t *idx, size_t *tmp, size_t n, const jv *keys, bool reverse) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(j, off, idx, tmp, h, keys, reverse);
    merge_sort(j, off, idx + h, tmp, n - h, keys, reverse);
    size_t a = 0, b = h, o = 0;
    while (a < h && b < n) {
        int c = cmp_values(j, off, keys[idx[a]], keys[idx[b]], 0); /* list keys: Python list order */
        if (reverse) c = -c;
        tmp[o++] = c <= 0 ? idx[a++] : idx[b++];
    }
    while (a < h) tmp[o++] = idx[a++];
    while (b < n) tmp[o++] = idx[b++];
    memcpy(idx, tmp, n * sizeof *idx);
}

/* A sorted copy of l by sort_key (by_value_pairs: l holds (key, value) pairs and attribute is the
 * int index to sort by, for dictsort). */
static jv sorted_list(J *j, size_t off, jlist *l, jv attribute, bool cs, jv reverse_v, bool by_value_pairs) {
    if (!is_intlike(reverse_v)) fail_at(j, off, "'%s' object cannot be interpreted as an integer", type_name(reverse_v));
    bool reverse = num_i(reverse_v) != 0;
    size_t n = l->n;
    jv *keys = ar_array(j, n + 1, sizeof *keys);
    size_t *idx = ar_array(j, n + 1, sizeof *idx), *tmp = ar_array(j, n + 1, sizeof *tmp);
    bool multi = !by_value_pairs && attribute.t == V_STR;
    jlist *parts = multi ? str_split(j, off, attribute, mk_str(",", 1), -1, false).v.l : NULL;
    for (size_t i = 0; i < n; i++) {
        jv v = l->a[i];
        if (by_value_pairs) v = v.v.l->a[attribute.v.i];
        if (multi) { /* jinja2's make_multi_attrgetter: the key is a list, one item per "a,b" part */
            jlist *k = new_list(j, parts->n);
            for (size_t q = 0; q < parts->n; q++) k->a[q] = sort_key(j, off, v, parts->a[q], cs);
            k->n = parts->n;
            keys[i] = mk_list(k, false);
        } else keys[i] = sort_key(j, off, v, by_value_pairs ? mk_none() : attribute, cs);
        idx[i] = i;
    }
    merge_sort(j, off, idx, tmp, n, keys, reverse);
    jlist *r = new_list(j, n);
    for (size_t i = 0; i < n; i++) r->a[i] = l->a[idx[i]];
    r->n = n;
    return mk_list(r, false);
}

/* A copy of d with its keys in sorted order. */
static jdict *sorted_dict(J *j, size_t off, const jdict *d) {
    size_t n = d->n;
    size_t *idx = ar_array(j, n + 1, sizeof *idx), *tmp = ar_array(j, n + 1, sizeof *tmp);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    merge_sort(j, off, idx, tmp, n, d->k, false);
    jdict *r = new_dict(j);
    for (size_t i = 0; i < n; i++) dict_set(j, r, d->k[idx[i]], d->v[idx[i]]);
    return r;
}

static jv html_escape(J *j, jv s) {
    sbuf b = {0};
    for (size_t i = 0; i < s.v.s.n; i++) {
        char c = s.v.s.p[i];
        switch (c) {
        case '&': sb_puts(j, &b, "&amp;"); break;
        case '<': sb_puts(j, &b, "&lt;"); break;
        case '>': sb_puts(j, &b, "&gt;"); break;
        case '"': sb_puts(j, &b, "&#34;"); break;
        case '\'': sb_puts(j, &b, "&#39;"); break;
        default: sb_putc(j, &b, c);
        }
    }
    return mk_sbuf(&b);
}

/* Python int() / float() of a string, as jinja2's int and float filters use them. */
static bool parse_py_int(jv s, int base, int64_t *out) {
    const char *p = s.v.s.p, *e = p + s.v.s.n;
    while (p < e && ws_char(*p)) p++;
    while (e > p && ws_char(e[-1])) e--;
    bool neg = false;
    if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p >= e) return false;
    if ((base == 16 || base == 8 || base == 2) && e - p > 2 && p[0] == '0' &&
        strchr(base == 16 ? "xX" : base == 8 ? "oO" : "bB", p[1]))
        p += 2;
    uint64_t v = 0;
    bool prev_us = true;
    for (; p < e; p++) {
        if (*p == '_') {
            if (prev_us) return false;
            prev_us = true;
            continue;
        }
        int d = hexval(*p);
        if (d < 0 || d >= base) return false;
        if (v > ((uint64_t)INT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = false;
    }
    if (prev_us) return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

static bool parse_py_float(J *j, jv s, double *out) {
    char *z = ar_strndup(j, s.v.s.p, s.v.s.n), *end;
    char *p = z;
    while (ws_char(*p)) p++;
    size_t l = strlen(p);
    while (l && ws_char(p[l - 1])) p[--l] = 0;
    if (!l) return false;
    for (char *q = p; *q; q++) /* reject C-only forms such as hex floats */
        if (*q == 'x' || *q == 'X' || *q == 'p' || *q == 'P') return false;
    double v = strtod(p, &end);
    if (*end) return false;
    *out = v;
    return true;
}

/* The map, select, reject, selectattr and rejectattr filters (results are lists, where jinja2 gives
 * generators that templates pass on to list or join). */
static jv map_or_select(J *j, size_t off, const char *which, jv in, const cargs *a) {
    if (in.t != V_LIST && in.t != V_DICT && in.t != V_STR && in.t != V_UNDEF && !truthy(in))
        return mk_gen(new_list(j, 0)); /* jinja2 skips a false input */
    jlist *l = iter_items(j, off, in), *r = new_list(j, 0);
    bool is_map = !strcmp(which, "map");
    bool attr_mode = !strcmp(which, "selectattr") || !strcmp(which, "rejectattr");
    bool reject = which[0] == 'r';
    if (is_map) {
        if (has_arg(a, SIZE_MAX, "attribute")) {
            jv at = A(a, SIZE_MAX, "attribute", mk_none());
            bool has_def = has_arg(a, SIZE_MAX, "default");
            jv def = A(a, SIZE_MAX, "default", mk_none());
            for (size_t i = 0; i < l->n; i++) {
                jv v = attr_path(j, off, l->a[i], at);
                if (v.t == V_UNDEF && has_def) v = def;
                list_push(j, r, v);
            }
            return mk_gen(r);
        }
        if (!a->npos || a->pos[0].t != V_STR) fail_at(j, off, "map requires a filter name or attribute=");
        const char *fname = ar_strndup(j, a->pos[0].v.s.p, a->pos[0].v.s.n);
        if (!known_filter(fname)) fail_at(j, off, "No filter named '%s'.", fname);
        cargs rest = *a;
        rest.pos++, rest.npos--;
        for (size_t i = 0; i < l->n; i++) list_push(j, r, apply_filter(j, off, fname, l->a[i], &rest));
        return mk_gen(r);
    }
    size_t first = attr_mode ? 1 : 0;
    jv at = attr_mode ? A(a, 0, NULL, mk_undef("attribute", NULL)) : mk_none();
    if (attr_mode && at.t == V_UNDEF) fail_at(j, off, "Missing parameter for attribute name");
    const char *tname = NULL;
    if (a->npos > first) {
        jv t = a->pos[first];
        if (t.t != V_STR) fail_at(j, off, "a test name must be a string");
        tname = ar_strndup(j, t.v.s.p, t.v.s.n);
        if (!known_test(tname)) fail_at(j, off, "No test named '%s'.", tname);
    }
    cargs rest = *a;
    size_t skip = first + (tname ? 1 : 0);
    if (skip > rest.npos) skip = rest.npos;
    if (skip) rest.pos += skip, rest.npos -= skip;
    for (size_t i = 0; i < l->n; i++) {
        jv v = attr_mode ? attr_path(j, off, l->a[i], at) : l->a[i];
        bool ok = tname ? apply_test(j, off, tname, v, &rest) : truthy(v);
        if (ok != reject) list_push(j, r, l->a[i]);
    }
    return mk_gen(r);
}

/* The filters that are generators in jinja2 (map, select, reject, selectattr, rejectattr, unique,
 * batch, slice, items): computed now, but run under lazy_gen so that their errors surface only when
 * the result is iterated, as with jinja2's lazily run generator bodies. */
static jv gen_filter(J *j, size_t off, const char *f, jv in, const cargs *a) {
    jv none = mk_none();
    if (!strcmp(f, "items")) {
        if (in.t == V_UNDEF) return mk_gen(new_list(j, 0));
        if (in.t != V_DICT) fail_at(j, off, "Can only get item pairs from a mapping.");
        return mk_gen(dict_items(j, in.v.d).v.l);
    }
    if (!strcmp(f, "map") || !strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") ||
        !strcmp(f, "rejectattr"))
        return map_or_select(j, off, f, in, a);
    if (!strcmp(f, "unique")) {
        bool cs = truthy(A(a, 0, "case_sensitive", mk_bool(false)));
        jv at = A(a, 1, "attribute", none);
        jlist *l = iter_items(j, off, in), *r = new_list(j, 0), *seen = new_list(j, 0);
        for (size_t i = 0; i < l->n; i++) {
            jv k = sort_key(j, off, l->a[i], at, cs);
            bool dup = false;
            for (size_t s = 0; s < seen->n && !dup; s++) dup = py_eq(j, seen->a[s], k, 0);
            if (!dup) list_push(j, seen, k), list_push(j, r, l->a[i]);
        }
        return mk_gen(r);
    }
    if (!strcmp(f, "batch") || !strcmp(f, "slice")) {
        jv cv = A(a, 0, f[0] == 'b' ? "linecount" : "slices", mk_int(1));
        bool has_fill = has_arg(a, 1, "fill_with") && A(a, 1, "fill_with", none).t != V_NONE;
        jv fill = A(a, 1, "fill_with", none);
        jlist *l = iter_items(j, off, in), *r = new_list(j, 0);
        /* jinja2's batch closes a batch when its size equals linecount: never, for a size that is not
         * a positive integer, so everything lands in one batch */
        if (f[0] == 'b' && (!is_intlike(cv) || num_i(cv) <= 0)) {
            if (l->n) list_push(j, r, mk_list(iter_items(j, off, mk_list(l, false)), false));
            return mk_gen(r);
        }
        int64_t cnt = int_arg(j, off, cv, "count");
        if (cnt <= 0) fail_at(j, off, "%s: the count must be positive", f);
        if (f[0] == 'b') {
            for (size_t i = 0; i < l->n; i += (size_t)cnt) {
                jlist *g = new_list(j, 0);
                for (size_t k = i; k < l->n && k < i + (size_t)cnt; k++) list_push(j, g, l->a[k]);
                if (has_fill) while (g->n < (size_t)cnt) list_push(j, g, fill);
                list_push(j, r, mk_list(g, false));
            }
        } else {
            size_t per = l->n / (size_t)cnt, extra = l->n % (size_t)cnt, pos = 0;
            for (size_t s = 0; s < (size_t)cnt; s++) {
                size_t take = per + (s < extra);
                jlist *g = new_list(j, 0);
                for (size_t k = 0; k < take; k++) list_push(j, g, l->a[pos++]);
                if (has_fill && s >= extra && extra) list_push(j, g, fill);
                list_push(j, r, mk_list(g, false));
            }
        }
        return mk_gen(r);
    }
    fail_at(j, off, "No filter named '%s'.", f);
}

/* Runs gen_filter with its own error handler: an error becomes a generator value that raises it
 * when iterated (and is true in an if, like any jinja2 generator). */
static jv lazy_gen(J *j, size_t off, const char *f, jv in, const cargs *a) {
    jmp_buf saved;
    memcpy(saved, j->jb, sizeof saved);
    char *saved_err = j->err;
    size_t saved_size = j->err_size;
    sbuf *saved_out = j->out;
    int saved_depth = j->depth;
    char msg[512] = "";
    j->err = msg, j->err_size = sizeof msg;
    if (setjmp(j->jb) == 0) {
        jv r = gen_filter(j, off, f, in, a);
        memcpy(j->jb, saved, sizeof saved);
        j->err = saved_err, j->err_size = saved_size;
        return r;
    }
    memcpy(j->jb, saved, sizeof saved);
    j->err = saved_err, j->err_size = saved_size, j->out = saved_out, j->depth = saved_depth;
    jlist *l = new_list(j, 0);
    l->fail = ar_strndup(j, msg, strlen(msg));
    return mk_gen(l);
}

/* Filter signatures: parameter names in positional order (after the value), how many are
 * required; "*" accepts anything (map, select, format...). */
static const struct { const char *name; const char *params[5]; int required; } FILTER_SIGS[] = {
    {"abs", {NULL}, 0}, {"attr", {"name"}, 1}, {"batch", {"linecount", "fill_with"}, 1}, {"capitalize", {NULL}, 0},
    {"center", {"width"}, 0}, {"count", {NULL}, 0}, {"d", {"default_value", "boolean"}, 0},
    {"default", {"default_value", "boolean"}, 0}, {"dictsort", {"case_sensitive", "by", "reverse"}, 0}, {"e", {NULL}, 0},
    {"escape", {NULL}, 0}, {"first", {NULL}, 0}, {"float", {"default"}, 0}, {"forceescape", {NULL}, 0}, {"format", {"*"}, 0},
    {"indent", {"width", "first", "blank"}, 0}, {"int", {"default", "base"}, 0}, {"items", {NULL}, 0},
    {"join", {"d", "attribute"}, 0}, {"last", {NULL}, 0}, {"length", {NULL}, 0}, {"list", {NULL}, 0}, {"lower", {NULL}, 0},
    {"map", {"*"}, 0}, {"max", {"case_sensitive", "attribute"}, 0}, {"min", {"case_sensitive", "attribute"}, 0},
    {"pprint", {NULL}, 0}, {"reject", {"*"}, 0}, {"rejectattr", {"*"}, 0}, {"replace", {"old", "new", "count"}, 2},
    {"reverse", {NULL}, 0}, {"round", {"precision", "method"}, 0}, {"safe", {NULL}, 0}, {"select", {"*"}, 0},
    {"selectattr", {"*"}, 0}, {"slice", {"slices", "fill_with"}, 1}, {"sort", {"reverse", "case_sensitive", "attribute"}, 0},
    {"string", {NULL}, 0}, {"sum", {"attribute", "start"}, 0}, {"title", {NULL}, 0},
    {"tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}, 0}, {"trim", {"chars"}, 0},
    {"truncate", {"length", "killwords", "end", "leeway"}, 0}, {"unique", {"case_sensitive", "attribute"}, 0},
    {"upper", {NULL}, 0}, {"wordcount", {NULL}, 0}};

/* Binds arguments like a Python call of the filter function: unknown keywords, too many
 * positional arguments, one given twice or a missing required one raise. */
static void check_filter_args(J *j, size_t off, const char *f, const cargs *a) {
    for (size_t s = 0; s < sizeof FILTER_SIGS / sizeof FILTER_SIGS[0]; s++) {
        if (strcmp(FILTER_SIGS[s].name, f)) continue;
        const char *const *ps = FILTER_SIGS[s].params;
        if (ps[0] && !strcmp(ps[0], "*")) return;
        size_t np = 0;
        while (np < 5 && ps[np]) np++;
        if (a->npos > np) fail_at(j, off, "filter '%s' takes at most %zu argument(s) (%zu given)", f, np, a->npos);
        bool given[5] = {false};
        for (size_t i = 0; i < a->npos; i++) given[i] = true;
        for (size_t k = 0; k < a->nkw; k++) {
            size_t i = 0;
            while (i < np && strcmp(ps[i], a->kw[k])) i++;
            if (i == np) fail_at(j, off, "filter '%s' got an unexpected keyword argument '%s'", f, a->kw[k]);
            if (given[i]) fail_at(j, off, "filter '%s' got multiple values for argument '%s'", f, a->kw[k]);
            given[i] = true;
        }
        for (int i = 0; i < FILTER_SIGS[s].required; i++)
            if (!given[i]) fail_at(j, off, "filter '%s' is missing the required argument '%s'", f, ps[i]);
        return;
    }
}

/* Applies the filter named f to `in` with arguments a (positional or by jinja2's parameter names). */
static jv apply_filter(J *j, size_t off, const char *f, jv in, const cargs *a) {
    jv none = mk_none();
    check_filter_args(j, off, f, a);
    static const char *const gens[] = {"map", "select", "reject", "selectattr", "rejectattr", "unique", "batch", "slice",
                                       "items", NULL};
    if (in_names(gens, f)) return lazy_gen(j, off, f, in, a);
    if (!strcmp(f, "safe")) return in;
    if (!strcmp(f, "string")) return to_str(j, in);
    if (!strcmp(f, "trim")) return str_strip(j, off, to_str(j, in), A(a, 0, "chars", none), true, true);
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        switch (in.t) {
        case V_STR: return mk_int((int64_t)u8_count(in.v.s.p, in.v.s.n));
        case V_LIST:
            if (in.gen) fail_at(j, off, "object of type 'generator' has no len()");
            return mk_int((int64_t)in.v.l->n);
        case V_DICT: return mk_int((int64_t)in.v.d->n);
        case V_UNDEF: return mk_int(0);
        default: fail_at(j, off, "object of type '%s' has no len()", type_name(in));
        }
    }
    if (!strcmp(f, "upper")) return str_case(j, to_str(j, in), CASE_UPPER);
    if (!strcmp(f, "lower")) return str_case(j, to_str(j, in), CASE_LOWER);
    if (!strcmp(f, "title")) return str_case(j, to_str(j, in), CASE_JTITLE);
    if (!strcmp(f, "capitalize")) return str_case(j, to_str(j, in), CASE_CAPITALIZE);
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        bool boolean = truthy(A(a, 1, "boolean", mk_bool(false)));
        if (in.t == V_UNDEF || (boolean && !truthy(in))) return A(a, 0, "default_value", mk_str("", 0));
        return in;
    }
    if (!strcmp(f, "tojson")) {
        json_opts o = {0};
        o.ensure_ascii = truthy(A(a, 0, "ensure_ascii", mk_bool(false)));
        jv ind = A(a, 1, "indent", none), seps = A(a, 2, "separators", none);
        o.sort_keys = truthy(A(a, 3, "sort_keys", mk_bool(false)));
        if (is_intlike(ind)) {
            int64_t k = num_i(ind);
            if (k < 0) k = 0;
            if (k > 64) fail_at(j, off, "tojson: indent too large");
            char *sp = ar_alloc(j, (size_t)k + 1);
            memset(sp, ' ', (size_t)k);
            o.indent = sp, o.indent_n = (size_t)k;
        } else if (ind.t == V_STR) o.indent = ind.v.s.p, o.indent_n = ind.v.s.n;
        else if (ind.t == V_UNDEF && ((in.t == V_LIST && in.v.l->n) || (in.t == V_DICT && in.v.d->n))) fail_undef(j, off, ind);
        else if (ind.t != V_NONE && ind.t != V_UNDEF) fail_at(j, off, "tojson: indent must be an integer or a string");
        o.item_sep = mk_cstr(o.indent ? "," : ", ");
        o.key_sep = mk_cstr(": ");
        if (seps.t == V_LIST) {
            if (seps.v.l->n != 2 || seps.v.l->a[0].t != V_STR || seps.v.l->a[1].t != V_STR)
                fail_at(j, off, "tojson: separators must be a pair of strings");
            o.item_sep = seps.v.l->a[0], o.key_sep = seps.v.l->a[1];
        } else if (seps.t != V_NONE && seps.t != V_UNDEF) fail_at(j, off, "tojson: separators must be a pair of strings");
        sbuf b = {0};
        put_json(j, &b, in, &o, 0, off);
        return mk_sbuf(&b);
    }
    if (!strcmp(f, "list")) {
        jlist *l = iter_items(j, off, in), *c = new_list(j, l->n);
        if (l->n) memcpy(c->a, l->a, l->n * sizeof(jv));
        c->n = l->n;
        return mk_list(c, false);
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        if (in.t == V_UNDEF) return mk_undef(NULL, "No first item, sequence was empty.");
        if (f[0] == 'l' && in.t == V_LIST && in.gen) fail_at(j, off, "'generator' object is not reversible");
        jlist *l = iter_items(j, off, in);
        if (!l->n) return mk_undef(NULL, f[0] == 'f' ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        return f[0] == 'f' ? l->a[0] : l->a[l->n - 1];
    }
    if (!strcmp(f, "join")) {
        jv d = to_str(j, A(a, 0, "d", mk_str("", 0)));
        jv at = A(a, 1, "attribute", none);
        if (at.t != V_NONE) {
            jlist *l = iter_items(j, off, in), *m = new_list(j, l->n);
            for (size_t i = 0; i < l->n; i++) m->a[i] = attr_path(j, off, l->a[i], at);
            m->n = l->n;
            in = mk_list(m, false);
        }
        return str_join(j, off, d, in, true);
    }
    if (!strcmp(f, "replace")) {
        jv s = to_str(j, in);
        jv cnt = A(a, 2, "count", none);
        return str_replace(j, s, to_str(j, A(a, 0, "old", mk_str("", 0))), to_str(j, A(a, 1, "new", mk_str("", 0))),
                           cnt.t == V_NONE ? -1 : int_arg(j, off, cnt, "count"));
    }
    if (!strcmp(f, "int")) {
        jv def = A(a, 0, "default", mk_int(0));
        int64_t base = int_arg(j, off, A(a, 1, "base", mk_int(10)), "base");
        if (is_intlike(in)) return mk_int(num_i(in));
        if (in.t == V_FLOAT) {
            if (!isfinite(in.v.f) || fabs(in.v.f) >= 9.2e18) return def;
            return mk_int((int64_t)in.v.f);
        }
        if (in.t == V_STR) {
            int64_t v;
            if (parse_py_int(in, (int)(base >= 2 && base <= 36 ? base : 10), &v)) return mk_int(v);
            double d;
            if (base == 10 && parse_py_float(j, in, &d) && isfinite(d) && fabs(d) < 9.2e18) return mk_int((int64_t)d);
        }
        return def;
    }
    if (!strcmp(f, "float")) {
        jv def = A(a, 0, "default", mk_float(0.0));
        if (is_num(in)) return mk_float(num_f(in));
        double d;
        if (in.t == V_STR && parse_py_float(j, in, &d)) return mk_float(d);
        return def;
    }
    if (!strcmp(f, "abs")) {
        if (in.t == V_FLOAT) return mk_float(fabs(in.v.f));
        if (is_intlike(in)) {
            int64_t x = num_i(in);
            if (x == INT64_MIN) fail_at(j, off, "integer overflow");
            return mk_int(x < 0 ? -x : x);
        }
        if (in.t == V_UNDEF) fail_undef(j, off, in);
        fail_at(j, off, "bad operand type for abs(): '%s'", type_name(in));
    }
    if (!strcmp(f, "round")) {
        int64_t prec = int_arg(j, off, A(a, 0, "precision", mk_int(0)), "precision");
        jv method = A(a, 1, "method", mk_cstr("common"));
        if (in.t == V_UNDEF) fail_undef(j, off, in);
        if (!is_num(in)) fail_at(j, off, "type %s doesn't define __round__ method", type_name(in));
        if (prec < -300) prec = -300;
        if (prec > 300) prec = 300;
        if (str_eq(method, "common")) {
            if (is_intlike(in)) return mk_int(num_i(in));
            double x = in.v.f;
            if (!isfinite(x)) return in;
            if (prec == 0) return mk_float(nearbyint(x));
            char buf[400];
            if (prec > 0) {
                snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
                return mk_float(strtod(buf, NULL));
            }
            double p10 = pow(10.0, (double)-prec);
            return mk_float(nearbyint(x / p10) * p10);
        }
        if (!str_eq(method, "ceil") && !str_eq(method, "floor")) fail_at(j, off, "method must be common, ceil or floor");
        double p10 = pow(10.0, (double)prec), x = num_f(in) * p10;
        return mk_float((str_eq(method, "ceil") ? ceil(x) : floor(x)) / p10);
    }
    if (!strcmp(f, "sort")) {
        bool cs = truthy(A(a, 1, "case_sensitive", mk_bool(false)));
        return sorted_list(j, off, iter_items(j, off, in), A(a, 2, "attribute", none), cs, A(a, 0, "reverse", mk_bool(false)), false);
    }
    if (!strcmp(f, "dictsort")) {
        if (in.t != V_DICT) fail_at(j, off, "dictsort: a mapping is required");
        bool cs = truthy(A(a, 0, "case_sensitive", mk_bool(false)));
        jv by = A(a, 1, "by", mk_cstr("key"));
        int pos = str_eq(by, "key") ? 0 : str_eq(by, "value") ? 1 : -1;
        if (pos < 0) fail_at(j, off, "You can only sort by either \"key\" or \"value\"");
        return sorted_list(j, off, dict_items(j, in.v.d).v.l, mk_int(pos), cs, A(a, 2, "reverse", mk_bool(false)), true);
    }
    if (!strcmp(f, "reverse")) {
        if (in.t == V_STR) {
            jlist *l = iter_items(j, off, in);
            sbuf b = {0};
            for (size_t i = l->n; i-- > 0;) sb_put(j, &b, l->a[i].v.s.p, l->a[i].v.s.n);
            return mk_sbuf(&b);
        }
        jlist *l = iter_items(j, off, in), *r = new_list(j, l->n);
        for (size_t i = 0; i < l->n; i++) r->a[i] = l->a[l->n - 1 - i];
        r->n = l->n;
        return mk_gen(r); /* reversed(): an iterator */
    }
    if (!strcmp(f, "sum")) {
        jv at = A(a, 0, "attribute", none);
        jv acc = A(a, 1, "start", mk_int(0));
        if (acc.t == V_STR) fail_at(j, off, "sum() can't sum strings [use ''.join(seq) instead]");
        jlist *l = iter_items(j, off, in);
        for (size_t i = 0; i < l->n; i++) acc = arith(j, off, '+', acc, at.t != V_NONE ? attr_path(j, off, l->a[i], at) : l->a[i]);
        return acc;
    }
    if (!strcmp(f, "min") || !strcmp(f, "max")) {
        bool cs = truthy(A(a, 0, "case_sensitive", mk_bool(false)));
        jv at = A(a, 1, "attribute", none);
        jlist *l = iter_items(j, off, in);
        if (!l->n) return mk_undef(NULL, f[1] == 'i' ? "No smallest item, sequence was empty." : "No largest item, sequence was empty.");
        size_t best = 0;
        jv bk = sort_key(j, off, l->a[0], at, cs);
        for (size_t i = 1; i < l->n; i++) {
            jv k = sort_key(j, off, l->a[i], at, cs);
            int c = cmp_values(j, off, k, bk, 0);
            if (f[1] == 'i' ? c < 0 : c > 0) best = i, bk = k;
        }
        return l->a[best];
    }
    if (!strcmp(f, "escape") || !strcmp(f, "e") || !strcmp(f, "forceescape")) return html_escape(j, to_str(j, in));
    if (!strcmp(f, "indent")) {
        jv w = A(a, 0, "width", mk_int(4));
        bool first = truthy(A(a, 1, "first", mk_bool(false))), blank = truthy(A(a, 2, "blank", mk_bool(false)));
        jv ind;
        if (w.t == V_STR) ind = w;
        else ind = pad_str(j, mk_str("", 0), int_arg(j, off, w, "width"), mk_str(" ", 1), -1);
        jv s = concat_str(j, to_str(j, in), mk_str("\n", 1));
        jlist *lines = str_splitlines(j, s, false).v.l;
        sbuf b = {0};
        if (first) sb_put(j, &b, ind.v.s.p, ind.v.s.n);
        for (size_t i = 0; i < lines->n; i++) {
            jv ln = lines->a[i];
            if (i) {
                sb_putc(j, &b, '\n');
                if (blank || ln.v.s.n) sb_put(j, &b, ind.v.s.p, ind.v.s.n);
            }
            sb_put(j, &b, ln.v.s.p, ln.v.s.n);
        }
        return mk_sbuf(&b);
    }
    if (!strcmp(f, "center")) return pad_str(j, to_str(j, in), int_arg(j, off, A(a, 0, "width", mk_int(80)), "width"), mk_str(" ", 1), 0);
    if (!strcmp(f, "wordcount")) {
        jv s = to_str(j, in);
        int64_t c = 0;
        bool inw = false;
        for (size_t i = 0; i < s.v.s.n;) {
            uint32_t ch = u8_next(s.v.s.p, s.v.s.n, &i);
            bool w = ch == '_' || cp_alpha(ch) || cp_digit(ch);
            if (w && !inw) c++;
            inw = w;
        }
        return mk_int(c);
    }
    if (!strcmp(f, "attr")) {
        jv nm = A(a, 0, "name", mk_undef("name", NULL));
        if (nm.t != V_STR) fail_at(j, off, "attr: the name must be a string");
        char *z = ar_strndup(j, nm.v.s.p, nm.v.s.n);
        if (in.t == V_DICT) {
            const char *m = in_names(DICT_METHODS, z);
            return m ? mk_method(j, in, m) : mk_undef(z, obj_repr(in));
        }
        return get_attr(j, off, in, z);
    }
    if (!strcmp(f, "format")) {
        jv s = to_str(j, in);
        if (a->nkw && a->npos) fail_at(j, off, "can't handle positional and keyword arguments at the same time");
        if (a->nkw) {
            jdict *d = new_dict(j);
            for (size_t k = 0; k < a->nkw; k++) dict_set(j, d, mk_cstr(a->kw[k]), a->kwv[k]);
            return str_percent(j, off, s, mk_dict(d));
        }
        jlist *l = new_list(j, a->npos);
        if (a->npos) memcpy(l->a, a->pos, a->npos * sizeof(jv));
        l->n = a->npos;
        return str_percent(j, off, s, mk_list(l, true));
    }
    if (!strcmp(f, "pprint")) { /* pprint.pformat: dict keys sorted (no line wrapping) */
        if (in.t == V_DICT) in = mk_dict(sorted_dict(j, off, in.v.d));
        sbuf b = {0};
        put_repr(j, &b, in, 0);
        return mk_sbuf(&b);
    }
    if (!strcmp(f, "truncate")) {
        jv s = to_str(j, in);
        int64_t length = int_arg(j, off, A(a, 0, "length", mk_int(255)), "length");
        bool killwords = truthy(A(a, 1, "killwords", mk_bool(false)));
        jv end = to_str(j, A(a, 2, "end", mk_cstr("...")));
        int64_t leeway = int_arg(j, off, A(a, 3, "leeway", mk_int(5)), "leeway");
        int64_t elen = (int64_t)u8_count(end.v.s.p, end.v.s.n), slen = (int64_t)u8_count(s.v.s.p, s.v.s.n);
        if (length < elen) fail_at(j, off, "expected length >= %" PRId64 ", got %" PRId64, elen, length);
        if (leeway < 0) fail_at(j, off, "expected leeway >= 0, got %" PRId64, leeway);
        if (slen <= length + leeway) return s;
        jv head = mk_str(s.v.s.p, u8_offset(s.v.s.p, s.v.s.n, (size_t)(length - elen)));
        if (!killwords) head = str_split(j, off, head, mk_str(" ", 1), 1, true).v.l->a[0];
        return concat_str(j, head, end);
    }
    fail_at(j, off, "No filter named '%s'.", f);
}

/* The `is` tests. Undefined counts as iterable and sequence, as jinja2's Undefined does. */
static bool apply_test(J *j, size_t off, const char *t, jv v, const cargs *a) {
    static const char *const binary[] = {"sameas", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<",
                                         "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", NULL};
    size_t want = in_names(binary, t) ? 1 : 0, got = a->npos + a->nkw;
    if (got != want && known_test(t)) fail_at(j, off, "test '%s' takes %zu argument(s), %zu given", t, want, got);
    jv arg0 = A(a, 0, NULL, mk_undef("argument", NULL));
    if (!strcmp(t, "defined")) return v.t != V_UNDEF;
    if (!strcmp(t, "undefined")) return v.t == V_UNDEF;
    if (!strcmp(t, "none")) return v.t == V_NONE;
    if (!strcmp(t, "boolean")) return v.t == V_BOOL;
    if (!strcmp(t, "false")) return v.t == V_BOOL && !v.v.b;
    if (!strcmp(t, "true")) return v.t == V_BOOL && v.v.b;
    if (!strcmp(t, "integer")) return v.t == V_INT;
    if (!strcmp(t, "float")) return v.t == V_FLOAT;
    if (!strcmp(t, "number")) return is_num(v);
    if (!strcmp(t, "string")) return v.t == V_STR;
    if (!strcmp(t, "mapping")) return v.t == V_DICT;
    if (!strcmp(t, "iterable")) return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    if (!strcmp(t, "sequence")) return v.t == V_STR || (v.t == V_LIST && !v.gen) || v.t == V_DICT || v.t == V_UNDEF;
    if (!strcmp(t, "callable")) return v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD || v.t == V_LOOP;
    if (!strcmp(t, "escaped")) return false;
    if (!strcmp(t, "sameas")) {
        if (v.t != arg0.t) return false;
        switch (v.t) {
        case V_NONE: case V_UNDEF: return true;
        case V_BOOL: return v.v.b == arg0.v.b;
        case V_INT: return v.v.i == arg0.v.i && v.v.i >= -5 && v.v.i <= 256; /* CPython small-int cache */
        case V_STR: return v.v.s.p == arg0.v.s.p && v.v.s.n == arg0.v.s.n;
        case V_LIST: return v.v.l == arg0.v.l;
        case V_DICT: case V_NS: return v.v.d == arg0.v.d;
        default: return py_eq(j, v, arg0, 0);
        }
    }
    if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        if (v.t == V_UNDEF) fail_undef(j, off, v);
        if (!is_intlike(v)) fail_at(j, off, "not all arguments converted during string formatting");
        int64_t m = num_i(v) % 2;
        return t[0] == 'o' ? m != 0 : m == 0;
    }
    if (!strcmp(t, "divisibleby")) {
        jv d = arith(j, off, '%', v, arg0);
        return py_eq(j, d, mk_int(0), 0);
    }
    if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==")) return py_eq(j, v, arg0, 0);
    if (!strcmp(t, "ne") || !strcmp(t, "!=")) return !py_eq(j, v, arg0, 0);
    if (!strcmp(t, "lt") || !strcmp(t, "lessthan") || !strcmp(t, "<")) return cmp_op(j, off, v, arg0, 0, '<') < 0;
    if (!strcmp(t, "le") || !strcmp(t, "<=")) return cmp_op(j, off, v, arg0, 0, OP_LE) <= 0;
    if (!strcmp(t, "gt") || !strcmp(t, "greaterthan") || !strcmp(t, ">")) return cmp_op(j, off, v, arg0, 0, '>') > 0;
    if (!strcmp(t, "ge") || !strcmp(t, ">=")) return cmp_op(j, off, v, arg0, 0, OP_GE) >= 0;
    if (!strcmp(t, "in")) return contains(j, off, arg0, v);
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        jv s = to_str(j, v);
        return str_pred(s, t[0] == 'l' ? "islower" : "isupper");
    }
    if (!strcmp(t, "filter") || !strcmp(t, "test")) {
        if (v.t != V_STR) return false;
        char *z = ar_strndup(j, v.v.s.p, v.v.s.n);
        return t[0] == 'f' ? known_filter(z) : known_test(z);
    }
    fail_at(j, off, "No test named '%s'.", t);
}

/* ==============================================================================================
 * Entry points
 * ============================================================================================ */

lm_chat_limits lm_chat_default_limits(void) {
    lm_chat_limits l;
    l.max_output = (size_t)64 << 20;
    l.max_memory = (size_t)256 << 20;
    l.max_steps = 20000000;
    l.max_depth = 200;
    l.now = -1;
    return l;
}

/* cJSON -> template value (strings reference the cJSON tree, which outlives the render). */
static jv from_json(J *j, const cJSON *c, int depth) {
    if (depth > 1000) fail_raw(j, "template variables: JSON nested too deeply (over 1000 levels)");
    if (cJSON_IsString(c)) return mk_cstr(c->valuestring ? c->valuestring : "");
    if (cJSON_IsNumber(c)) {
        double d = c->valuedouble;
        if (d == floor(d) && fabs(d) < 9.007199254740992e15) return mk_int((int64_t)d);
        return mk_float(d);
    }
    if (cJSON_IsBool(c)) return mk_bool(cJSON_IsTrue(c));
    if (cJSON_IsNull(c)) return mk_none();
    if (cJSON_IsArray(c)) {
        jlist *l = new_list(j, 0);
        for (const cJSON *e = c->child; e; e = e->next) list_push(j, l, from_json(j, e, depth + 1));
        return mk_list(l, false);
    }
    if (cJSON_IsObject(c)) {
        jdict *d = new_dict(j);
        for (const cJSON *e = c->child; e; e = e->next) dict_set(j, d, mk_cstr(e->string ? e->string : ""), from_json(j, e, depth + 1));
        return mk_dict(d);
    }
    return mk_none();
}

char *lm_chat_render(const char *tmpl, size_t tmpl_len, const cJSON *vars, const lm_chat_limits *lim, size_t *out_len,
                     char *err, size_t err_size) {
    if (out_len) *out_len = 0;
    if (!tmpl && tmpl_len) {
        lm_seterr(err, err_size, "no template");
        return NULL;
    }
    J *j = calloc(1, sizeof *j);
    if (!j) {
        lm_seterr(err, err_size, "out of memory");
        return NULL;
    }
    j->err = err, j->err_size = err_size;
    j->lim = lim ? *lim : lm_chat_default_limits();
    if (j->lim.max_depth <= 0) j->lim.max_depth = 1;
    char *volatile result = NULL;
    if (setjmp(j->jb) == 0) {
        /* normalize newlines (\r\n and \r become \n) and drop one trailing newline, as jinja2 does */
        char *src = ar_alloc(j, tmpl_len + 1);
        size_t n = 0;
        for (size_t i = 0; i < tmpl_len; i++) {
            if (tmpl[i] == '\r') {
                src[n++] = '\n';
                if (i + 1 < tmpl_len && tmpl[i + 1] == '\n') i++;
            } else src[n++] = tmpl[i];
        }
        if (n && src[n - 1] == '\n') n--;
        src[n] = 0;
        j->src = src, j->src_len = n;
        lex(j);
        node **body = NULL;
        size_t nbody = 0;
        p_body(j, &body, &nbody, NULL);
        for (size_t i = 0; i < nbody; i++) check_names(j, body[i], false, false);
        j->globals = new_scope(j, NULL);
        if (vars && cJSON_IsObject(vars))
            for (const cJSON *e = vars->child; e; e = e->next)
                if (e->string) scope_set(j, j->globals, ar_strndup(j, e->string, strlen(e->string)), from_json(j, e, 0));
        sbuf out = {0};
        j->out = &out;
        exec_body(j, j->globals, body, nbody);
        result = malloc(out.n + 1);
        if (!result) fail_raw(j, "out of memory");
        if (out.n) memcpy(result, out.p, out.n);
        result[out.n] = 0;
        if (out_len) *out_len = out.n;
    } else {
        free(result);
        result = NULL;
    }
    ar_free_all(j);
    free(j);
    return result;
}

/* ==============================================================================================
 * Built-in templates (our own Jinja; each renders a conversation exactly as the reference template
 * of its family does, without that template's role-alternation errors)
 * ============================================================================================ */

static const struct { const char *name, *src; } BUILTINS[] = {
    /* TinyLlama-1.1B-Chat / Zephyr: <|role|>\ncontent</s>\n */
    {"zephyr",
     "{%- for m in messages -%}\n"
     "  {%- if m['role'] in ['system', 'user', 'assistant'] -%}\n"
     "    {{- '<|' ~ m['role'] ~ '|>\\n' + m['content'] + eos_token + '\\n' -}}\n"
     "  {%- endif -%}\n"
     "  {%- if loop.last and add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}\n"
     "{%- endfor -%}"},
    /* ChatML: <|im_start|>role\ncontent<|im_end|>\n */
    {"chatml",
     "{%- for m in messages -%}\n"
     "  {{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}\n"
     "{%- endfor -%}\n"
     "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"},
    /* Llama 2 chat: <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s> */
    {"llama2",
     "{%- if messages and messages[0]['role'] == 'system' -%}\n"
     "  {%- set sys = messages[0]['content'] -%}{%- set turns = messages[1:] -%}\n"
     "{%- else -%}\n"
     "  {%- set sys = none -%}{%- set turns = messages -%}\n"
     "{%- endif -%}\n"
     "{%- for m in turns -%}\n"
     "  {%- set text = m['content'] -%}\n"
     "  {%- if loop.first and sys is not none -%}\n"
     "    {%- set text = '<<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' + text -%}\n"
     "  {%- endif -%}\n"
     "  {%- if m['role'] == 'user' -%}\n"
     "    {{- bos_token + '[INST] ' + text.strip() + ' [/INST]' -}}\n"
     "  {%- elif m['role'] == 'assistant' -%}\n"
     "    {{- ' ' + text.strip() + ' ' + eos_token -}}\n"
     "  {%- endif -%}\n"
     "{%- endfor -%}"},
    /* Llama 3 instruct */
    {"llama3",
     "{%- for m in messages -%}\n"
     "  {%- if loop.first -%}{{- bos_token -}}{%- endif -%}\n"
     "  {{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' -}}\n"
     "{%- endfor -%}\n"
     "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"},
    /* Mistral instruct (v1): <s> [INST] sys\n\nuser [/INST] answer</s> */
    {"mistral",
     "{%- if messages and messages[0]['role'] == 'system' -%}\n"
     "  {%- set sys = messages[0]['content'] -%}{%- set turns = messages[1:] -%}\n"
     "{%- else -%}\n"
     "  {%- set sys = none -%}{%- set turns = messages -%}\n"
     "{%- endif -%}\n"
     "{{- bos_token -}}\n"
     "{%- for m in turns -%}\n"
     "  {%- if m['role'] == 'user' -%}\n"
     "    {%- if loop.first and sys is not none -%}\n"
     "      {{- ' [INST] ' + sys + '\\n\\n' + m['content'] + ' [/INST]' -}}\n"
     "    {%- else -%}\n"
     "      {{- ' [INST] ' + m['content'] + ' [/INST]' -}}\n"
     "    {%- endif -%}\n"
     "  {%- elif m['role'] == 'assistant' -%}\n"
     "    {{- ' ' + m['content'] + eos_token -}}\n"
     "  {%- endif -%}\n"
     "{%- endfor -%}"},
    /* Gemma: a system message is merged into the first user turn (Gemma has no system role) */
    {"gemma",
     "{{- bos_token -}}\n"
     "{%- if messages and messages[0]['role'] == 'system' -%}\n"
     "  {%- set sys = messages[0]['content'] | trim -%}{%- set turns = messages[1:] -%}\n"
     "{%- else -%}\n"
     "  {%- set sys = none -%}{%- set turns = messages -%}\n"
     "{%- endif -%}\n"
     "{%- for m in turns -%}\n"
     "  {%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}\n"
     "  {%- set text = m['content'] | trim -%}\n"
     "  {%- if loop.first and sys is not none and m['role'] == 'user' -%}\n"
     "    {%- set text = sys + '\\n\\n' + text -%}\n"
     "  {%- endif -%}\n"
     "  {{- '<start_of_turn>' + role + '\\n' + text + '<end_of_turn>\\n' -}}\n"
     "{%- endfor -%}\n"
     "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"},
    /* Phi-3 (mini-4k-instruct) */
    {"phi3",
     "{%- for m in messages -%}\n"
     "  {%- if m['role'] in ['system', 'user', 'assistant'] -%}\n"
     "    {{- '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' -}}\n"
     "  {%- endif -%}\n"
     "{%- endfor -%}\n"
     "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- else -%}{{- eos_token -}}{%- endif -%}"},
};

const char *lm_chat_builtin(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++)
        if (!strcmp(BUILTINS[i].name, name)) return BUILTINS[i].src;
    return NULL;
}

const char *lm_chat_builtin_name(size_t i) {
    return i < sizeof BUILTINS / sizeof BUILTINS[0] ? BUILTINS[i].name : NULL;
}

const char *lm_chat_model_template(const llamita_model *model, size_t *len) {
    if (len) *len = 0;
    if (!model || !model->gguf) return NULL;
    lm_gguf_str s = {0};
    if (!lm_gguf_get_str_opt(model->gguf, "tokenizer.chat_template", &s, NULL, 0) || !s.data) return NULL;
    if (len) *len = (size_t)s.len;
    return s.data;
}

/* True when the model's vocabulary has a token whose text is exactly `text`. */
static bool vocab_has(const lm_vocab *v, const char *text) {
    int32_t n = lm_vocab_n_tokens(v);
    for (int32_t i = 0; i < n; i++) {
        const char *t = lm_vocab_token_text(v, i);
        if (t && !strcmp(t, text)) return true;
    }
    return false;
}

const char *lm_chat_guess_builtin(const llamita_model *model) {
    const lm_vocab *v = model ? lm_model_vocab(model) : NULL;
    if (!v) return "zephyr";
    if (vocab_has(v, "<|im_start|>")) return "chatml";
    if (vocab_has(v, "<|start_header_id|>")) return "llama3";
    if (vocab_has(v, "<start_of_turn>")) return "gemma";
    if (vocab_has(v, "<|user|>") && vocab_has(v, "<|end|>")) return "phi3";
    if (vocab_has(v, "[INST]")) return "mistral";
    return "zephyr";
}

/* Text of a special token of the model ("" when it has none). */
static const char *special_text(const llamita_model *model, bool bos) {
    const lm_vocab *v = model ? lm_model_vocab(model) : NULL;
    if (!v) return "";
    int32_t id = bos ? lm_vocab_bos(v) : lm_vocab_eos(v);
    const char *t = id >= 0 ? lm_vocab_token_text(v, id) : NULL;
    return t ? t : "";
}

/* Resolves the template source: a built-in name, Jinja text, or (tmpl NULL) the model's own
 * template or the built-in guessed from its vocabulary. NULL with err when there is none. */
static const char *resolve_template(const llamita_model *model, const char *tmpl, size_t *len, char *err, size_t err_size) {
    if (tmpl) {
        const char *b = lm_chat_builtin(tmpl);
        const char *src = b ? b : tmpl;
        *len = strlen(src);
        return src;
    }
    if (!model) {
        lm_seterr(err, err_size, "no chat template given and no model to take one from");
        return NULL;
    }
    const char *src = lm_chat_model_template(model, len);
    if (!src) {
        src = lm_chat_builtin(lm_chat_guess_builtin(model));
        *len = strlen(src);
    }
    return src;
}

char *lm_chat_apply(const llamita_model *model, const char *tmpl, const cJSON *vars, bool add_generation_prompt,
                    const char *bos_token, const char *eos_token, size_t *out_len, char *err, size_t err_size) {
    if (out_len) *out_len = 0;
    size_t src_len = 0;
    const char *src = resolve_template(model, tmpl, &src_len, err, err_size);
    if (!src) return NULL;
    if (vars && !cJSON_IsObject(vars)) {
        lm_seterr(err, err_size, "template variables must be a JSON object");
        return NULL;
    }
    cJSON *all = vars ? cJSON_Duplicate(vars, true) : cJSON_CreateObject();
    if (!all) {
        lm_seterr(err, err_size, "out of memory");
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(all, "add_generation_prompt");
    cJSON_DeleteItemFromObjectCaseSensitive(all, "bos_token");
    cJSON_DeleteItemFromObjectCaseSensitive(all, "eos_token");
    char *out = NULL;
    if (!cJSON_AddBoolToObject(all, "add_generation_prompt", add_generation_prompt) ||
        !cJSON_AddStringToObject(all, "bos_token", bos_token ? bos_token : special_text(model, true)) ||
        !cJSON_AddStringToObject(all, "eos_token", eos_token ? eos_token : special_text(model, false)))
        lm_seterr(err, err_size, "out of memory");
    else out = lm_chat_render(src, src_len, all, NULL, out_len, err, err_size);
    cJSON_Delete(all);
    return out;
}

char *llamita_chat_apply_template(const llamita_model *model, const char *tmpl, const char *messages_json,
                                  bool add_generation_prompt, const char *bos_token, const char *eos_token, char *err,
                                  size_t err_size) {
    if (!messages_json) {
        lm_seterr(err, err_size, "messages: no JSON given");
        return NULL;
    }
    const char *end = NULL;
    cJSON *msgs = cJSON_ParseWithOpts(messages_json, &end, true);
    if (!msgs) {
        size_t at = end && end >= messages_json ? (size_t)(end - messages_json) : 0;
        lm_seterr(err, err_size, "messages: invalid JSON at byte %zu", at);
        return NULL;
    }
    if (!cJSON_IsArray(msgs)) {
        cJSON_Delete(msgs);
        lm_seterr(err, err_size, "messages: expected a JSON array of {\"role\": ..., \"content\": ...} objects");
        return NULL;
    }
    cJSON *vars = cJSON_CreateObject();
    if (!vars) {
        cJSON_Delete(msgs);
        lm_seterr(err, err_size, "out of memory");
        return NULL;
    }
    cJSON_AddItemToObject(vars, "messages", msgs);
    char *out = lm_chat_apply(model, tmpl, vars, add_generation_prompt, bos_token, eos_token, NULL, err, err_size);
    cJSON_Delete(vars);
    return out;
}
