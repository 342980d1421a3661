/*
 * Chat templates (src/chat.c): the Jinja interpreter against Python jinja2.
 *
 *  - test_fixture_lines: every line of ../shared/templates/chat-templates.jsonl (78 real templates x 7
 *    conversations x add_generation_prompt) through the public llamita_chat_apply_template: the text
 *    must equal jinja2's byte for byte, and where jinja2 raised, the error must be the template's own
 *    raise_exception message exactly. Prints the pass count.
 *  - test_builtins_match_reference: each built-in renders like the reference template of its family
 *    on every fixture conversation that reference renders (and never raises).
 *  - test_semantics: 250+ small templates over Python/Jinja semantics (filters, tests, methods,
 *    scoping, whitespace control, slicing, formatting...) with outputs produced by jinja2 3.1.6.
 *  - test_errors / test_limits: syntax errors name line:column; runtime errors; raise_exception;
 *    endless loops, deep recursion, huge output or memory, deep nesting all end with an error.
 *  - test_fuzz: a few thousand mutations of real templates (truncations, deletions, insertions of
 *    Jinja syntax, byte flips) and random token soups: every render returns text or an error.
 *  - test_model_template: a GGUF's tokenizer.chat_template and BOS/EOS texts are used; a model
 *    without a template falls back to a built-in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <time.h>

#include "chat.h"
#include "llamita.h"

/* 2025-02-20 12:00:00 UTC, the date the fixtures were rendered with (strftime_now) */
#define FIXTURE_EPOCH "1740052800"

typedef struct fixture_line {
    const char *name, *tmpl, *bos, *eos, *expected, *error, *case_id;
    char *messages; /* JSON text, malloc'd */
    bool agp;
    cJSON *obj;
} fixture_line;

/* Reads the jsonl fixture; returns the number of lines (0 if absent). Free with free_lines. */
static size_t load_lines(fixture_line **out) {
    char path[4096];
    lm_test_shared_path(path, sizeof path, "templates/chat-templates.jsonl");
    size_t size;
    char *raw = lm_test_read_file(path, &size);
    *out = NULL;
    if (!raw) return 0;
    char *all = malloc(size + 1); /* lm_test_read_file does not NUL-terminate */
    assert_non_null(all);
    memcpy(all, raw, size);
    all[size] = 0;
    free(raw);
    size_t n = 0, cap = 0;
    fixture_line *v = NULL;
    char *save = NULL;
    for (char *ln = strtok_r(all, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        cJSON *d = cJSON_Parse(ln);
        assert_non_null(d);
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = realloc(v, cap * sizeof *v);
            assert_non_null(v);
        }
        fixture_line *f = &v[n++];
        memset(f, 0, sizeof *f);
        f->obj = d;
        f->name = cJSON_GetStringValue(cJSON_GetObjectItem(d, "name"));
        f->tmpl = cJSON_GetStringValue(cJSON_GetObjectItem(d, "template"));
        f->bos = cJSON_GetStringValue(cJSON_GetObjectItem(d, "bos_token"));
        f->eos = cJSON_GetStringValue(cJSON_GetObjectItem(d, "eos_token"));
        f->expected = cJSON_GetStringValue(cJSON_GetObjectItem(d, "expected"));
        f->error = cJSON_GetStringValue(cJSON_GetObjectItem(d, "error"));
        f->case_id = cJSON_GetStringValue(cJSON_GetObjectItem(d, "case"));
        f->agp = cJSON_IsTrue(cJSON_GetObjectItem(d, "add_generation_prompt"));
        f->messages = cJSON_PrintUnformatted(cJSON_GetObjectItem(d, "messages"));
        assert_non_null(f->name);
        assert_non_null(f->tmpl);
        assert_non_null(f->messages);
        assert_true(f->expected || f->error);
    }
    free(all);
    *out = v;
    return n;
}

static void free_lines(fixture_line *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].messages);
        cJSON_Delete(v[i].obj);
    }
    free(v);
}

/* Prints a one-line JSON-escaped excerpt of s around byte `at`. */
static void print_excerpt(const char *label, const char *s, size_t at) {
    size_t len = strlen(s), st = at > 40 ? at - 40 : 0, en = at + 60 < len ? at + 60 : len;
    fprintf(stderr, "    %s: \"", label);
    for (size_t i = st; i < en; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
        else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fputs("\"\n", stderr);
}

/* Compares one rendering with a fixture line; prints what differs. */
static bool check_line(const fixture_line *f, size_t lineno, const char *out, const char *err, int *shown) {
    if (f->expected && out && !strcmp(out, f->expected)) return true;
    if (!f->expected && !out && !strcmp(err, f->error)) return true;
    if ((*shown)++ < 8) {
        fprintf(stderr, "  line %zu (%s, %s, add_generation_prompt=%d):\n", lineno, f->name, f->case_id, f->agp);
        if (f->expected && out) {
            size_t k = 0;
            while (out[k] && out[k] == f->expected[k]) k++;
            fprintf(stderr, "    first difference at byte %zu\n", k);
            print_excerpt("jinja2", f->expected, k);
            print_excerpt("ours  ", out, k);
        } else if (f->expected) fprintf(stderr, "    expected text, got error: %s\n", err);
        else if (out) fprintf(stderr, "    expected error '%s', got text\n", f->error);
        else fprintf(stderr, "    expected error '%s', got error '%s'\n", f->error, err);
    }
    return false;
}

static void test_fixture_lines(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    fixture_line *v;
    size_t n = load_lines(&v);
    assert_true(n > 0);
    int pass = 0, shown = 0, raises = 0;
    for (size_t i = 0; i < n; i++) {
        char err[1024] = "";
        char *out = llamita_chat_apply_template(NULL, v[i].tmpl, v[i].messages, v[i].agp, v[i].bos, v[i].eos, err, sizeof err);
        if (!v[i].expected) raises++;
        if (check_line(&v[i], i + 1, out, err, &shown)) pass++;
        free(out);
    }
    fprintf(stderr, "chat templates: %d/%zu fixture lines match jinja2 byte for byte (%d of them raise, with the same message)\n",
            pass, n, raises);
    free_lines(v, n);
    assert_int_equal(pass, (int)n);
}

/* built-in name -> the fixture template it reproduces */
static const struct { const char *builtin, *reference; } BUILTIN_REFS[] = {
    {"zephyr", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"},   {"chatml", "teknium/OpenHermes-2.5-Mistral-7B"},
    {"llama2", "meta-llama/Llama-2-7b-chat-hf"},         {"llama3", "meta-llama/Meta-Llama-3-8B-Instruct"},
    {"mistral", "mistralai/Mistral-7B-Instruct-v0.1"},   {"gemma", "google/gemma-2-2b-it"},
    {"phi3", "microsoft/Phi-3-mini-4k-instruct"},
};

static void test_builtins_match_reference(void **state) {
    (void)state;
    size_t nb = 0;
    while (lm_chat_builtin_name(nb)) nb++;
    assert_int_equal(nb, sizeof BUILTIN_REFS / sizeof BUILTIN_REFS[0]);
    assert_null(lm_chat_builtin("nope"));
    LM_REQUIRE_SHARED();
    fixture_line *v;
    size_t n = load_lines(&v);
    assert_true(n > 0);
    for (size_t b = 0; b < nb; b++) {
        const char *name = BUILTIN_REFS[b].builtin;
        assert_non_null(lm_chat_builtin(name));
        int same = 0, total = 0, lenient = 0, shown = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(v[i].name, BUILTIN_REFS[b].reference)) continue;
            char err[1024] = "";
            char *out = llamita_chat_apply_template(NULL, name, v[i].messages, v[i].agp, v[i].bos, v[i].eos, err, sizeof err);
            if (!out) fprintf(stderr, "  built-in %s raised on %s: %s\n", name, v[i].case_id, err);
            assert_non_null(out); /* built-ins never raise on these conversations */
            if (v[i].expected) {
                total++;
                if (check_line(&v[i], i + 1, out, err, &shown)) same++;
            } else lenient++;
            free(out);
        }
        fprintf(stderr, "built-in %-7s = %s on %d/%d conversations (%d where the reference raises render too)\n", name,
                BUILTIN_REFS[b].reference, same, total, lenient);
        assert_true(total >= 6);
        assert_int_equal(same, total);
    }
    free_lines(v, n);
}

/* Renders tmpl with vars (JSON text) through lm_chat_render; returns malloc'd text or NULL + err. */
static char *render(const char *tmpl, const char *vars_json, const lm_chat_limits *lim, char *err, size_t err_size) {
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
    if (vars_json) assert_non_null(vars);
    err[0] = 0;
    char *out = lm_chat_render(tmpl, strlen(tmpl), vars, lim, NULL, err, err_size);
    cJSON_Delete(vars);
    if (!out) assert_true(err[0] != 0); /* every failure says why */
    return out;
}

/* Asserts tmpl renders to `want`. */
static void expect_text(const char *tmpl, const char *vars, const char *want) {
    char err[1024];
    char *out = render(tmpl, vars, NULL, err, sizeof err);
    if (!out || strcmp(out, want)) {
        fprintf(stderr, "template: %s\n  want: %s\n  got:  %s\n", tmpl, want, out ? out : err);
        fail();
    }
    free(out);
}

/* Asserts tmpl fails with an error message equal to `want` (or starting with it when prefix). */
static void expect_error(const char *tmpl, const char *vars, const lm_chat_limits *lim, const char *want, bool prefix) {
    char err[1024];
    char *out = render(tmpl, vars, lim, err, sizeof err);
    bool ok = !out && (prefix ? !strncmp(err, want, strlen(want)) : !strcmp(err, want));
    if (!ok) {
        fprintf(stderr, "template: %.200s\n  want error: %s\n  got: %s\n", tmpl, want, out ? "(text)" : err);
        fail();
    }
    free(out);
}

/* Generated once from jinja2 3.1.6 (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, tojson as
 * json.dumps(ensure_ascii=False)) rendering each template with SEM_VARS; do not edit by hand. */
static const char SEM_VARS[] = "{\"messages\": [{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"  H\303\251llo w\303\266rld  \\n\"}, {\"role\": \"assistant\", \"content\": \"Ans\"}, {\"role\": \"user\", \"content\": \"Q2\"}], \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"d\": {\"b\": 2, \"a\": 1, \"nested\": {\"x\": [1, 2, {\"y\": \"z\"}]}}, \"l\": [3, 1, 2], \"s\": \"Hello World\", \"e\": \"\", \"n\": null, \"f\": 2.5, \"i\": 7, \"t\": true, \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get\", \"parameters\": {\"type\": \"object\", \"properties\": {\"loc\": {\"type\": \"string\"}}, \"required\": [\"loc\"]}}}]}";
static const struct { const char *tmpl, *expected; } SEM_CASES[] = {
    {"{{ s }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}|{{ s|reverse }}",
     "Hello World|HELLO WORLD|hello world|Hello World|Hello world|11|dlroW olleH"},
    {"{{ s.split() }}|{{ s.split('o') }}|{{ s.split('o', 1) }}|{{ s.rsplit('o', 1) }}|{{ s.replace('l','L') }}|{{ s.replace('l','L',2) }}",
     "['Hello', 'World']|['Hell', ' W', 'rld']|['Hell', ' World']|['Hello W', 'rld']|HeLLo WorLd|HeLLo World"},
    {"{{ s.startswith('He') }}{{ s.endswith(('x','ld')) }}{{ s.find('o') }}{{ s.rfind('o') }}{{ s.count('l') }}{{ s.index('W') }}",
     "TrueTrue4736"},
    {"{{ \"  a b  \"|trim }}|{{ \"xxaxx\"|trim(\"x\") }}|{{ \"  a  \".lstrip() }}|{{ \"  a  \".rstrip() }}|{{ \"\\t a\".strip() }}",
     "a b|a|a  |  a|a"},
    {"{{ \"%s and %s\" % (\"a\", \"b\") }}|{{ \"%d%%\" % 5 }}|{{ \"%(a)s-%(b)d\" % {\"a\": \"x\", \"b\": 3} }}|{{ \"%.3f\" % 2 }}|{{ \"%5s|%-5s|\" % (\"ab\", \"cd\") }}",
     "a and b|5%|x-3|2.000|   ab|cd   |"},
    {"{{ \"{} {}\".format(1, \"a\") }}|{{ \"{1}{0}\".format(\"x\", \"y\") }}|{{ \"{a}!\".format(a=5) }}|{{ \"{{x}}\".format() }}",
     "1 a|yx|5!|{x}"},
    {"{{ l }}|{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ l|first }}|{{ l|last }}|{{ l|sum }}|{{ l|min }}|{{ l|max }}|{{ l|length }}|{{ l|join(\"-\") }}",
     "[3, 1, 2]|[1, 2, 3]|[3, 2, 1]|3|2|6|1|3|3|3-1-2"},
    {"{{ l[0] }}{{ l[-1] }}{{ l[1:] }}{{ l[:-1] }}{{ l[::2] }}{{ l[::-1] }}{{ l[5] }}{{ l[-5:10] }}{{ l[10:] }}",
     "32[1, 2][3, 1][3, 2][2, 1, 3][3, 1, 2][]"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for k, v in d|dictsort %}{{ k }}{% endfor %}",
     "b=2;a=1;nested={'x': [1, 2, {'y': 'z'}]};|banested|abnested"},
    {"{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(sort_keys=true) }}|{{ l|tojson(separators=(',',':')) }}",
     "{\"b\": 2, \"a\": 1, \"nested\": {\"x\": [1, 2, {\"y\": \"z\"}]}}|{\n  \"b\": 2,\n  \"a\": 1,\n  \"nested\": {\n    \"x\": [\n      1,\n      2,\n      {\n        \"y\": \"z\"\n      }\n    ]\n  }\n}|{\"a\": 1, \"b\": 2, \"nested\": {\"x\": [1, 2, {\"y\": \"z\"}]}}|[3,1,2]"},
    {"{{ tools|tojson }}|{{ tools[0]|tojson(indent=4) }}|{{ \"\303\251\\u00e9\\n\\\"\\\\\"|tojson }}|{{ \"\303\251\"|tojson(ensure_ascii=true) }}|{{ none|tojson }}|{{ f|tojson }}|{{ t|tojson }}",
     "[{\"type\": \"function\", \"function\": {\"name\": \"get\", \"parameters\": {\"type\": \"object\", \"properties\": {\"loc\": {\"type\": \"string\"}}, \"required\": [\"loc\"]}}}]|{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"loc\": {\n                    \"type\": \"string\"\n                }\n            },\n            \"required\": [\n                \"loc\"\n            ]\n        }\n    }\n}|\"\303\251\303\251\\n\\\"\\\\\"|\"\\u00e9\"|null|2.5|true"},
    {"{{ 1 == 1.0 }}{{ t == 1 }}{{ \"a\" != \"b\" }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ \"b\" >= \"a\" }}{{ [1,2] < [1,3] }}{{ none == none }}{{ x == y }}",
     "TrueTrueTrueTrueFalseTrueTrueTrueTrue"},
    {"{{ 'a' in 'cat' }}{{ 'z' not in 'cat' }}{{ 1 in l }}{{ 'a' in d }}{{ 'zz' in d }}{{ x in l }}{{ 'q' in x }}",
     "TrueTrueTrueTrueFalseFalseFalse"},
    {"{{ s is string }}{{ i is number }}{{ f is float }}{{ i is integer }}{{ t is boolean }}{{ n is none }}{{ d is mapping }}{{ l is iterable }}{{ l is sequence }}{{ x is defined }}{{ x is undefined }}{{ i is odd }}{{ i is even }}{{ 9 is divisibleby 3 }}{{ i is divisibleby(2) }}",
     "TrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueFalseTrueFalse"},
    {"{{ s is not string }}{{ x is not defined }}{{ i is eq 7 }}{{ i is gt 3 }}{{ i is lt(3) }}{{ 'a' is in 'abc' }}{{ t is true }}{{ t is false }}{{ s is lower }}{{ \"ABC\" is upper }}{{ i is sameas 7 }}{{ n is sameas none }}",
     "FalseTrueTrueTrueFalseTrueTrueFalseFalseTrueTrueTrue"},
    {"{{ x|default('dflt') }}{{ e|default('dflt') }}{{ e|default('dflt', true) }}{{ n|default('d') }}{{ x|d('d2') }}",
     "dfltdfltNoned2"},
    {"{{ x }}|{{ x|length }}|{{ x|string }}|{{ x|trim }}|{{ x|list }}|{{ x|items|list }}|{{ x|upper }}|{{ x is iterable }}|{{ x|join(',') }}",
     "|0|||[]|[]||True|"},
    {"{% set a = 1 %}{% set b, c = [2, 3] %}{{ a }}{{ b }}{{ c }}{% set a = a + 10 %}{{ a }}",
     "12311"},
    {"{% set ns = namespace(x=1, y=[]) %}{% for i in l %}{% set ns.x = ns.x + i %}{% set ns.y = ns.y + [i] %}{% endfor %}{{ ns.x }}{{ ns.y }}",
     "7[3, 1, 2]"},
    {"{% set x2 = 5 %}{% for i in l %}{% set x2 = i %}{{ x2 }}{% endfor %}{{ x2 }}",
     "3125"},
    {"{% for i in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.depth }};{% endfor %}",
     "1032TrueFalse31;2121FalseFalse31;3210FalseTrue31;"},
    {"{% for i in l %}{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.cycle('a','b') }};{% endfor %}",
     "|1|a;3|2|b;1||a;"},
    {"{% for i in l if i > 1 %}{{ i }}{{ loop.length }}{% else %}none{% endfor %}|{% for i in [] %}x{% else %}empty{% endfor %}",
     "3222|empty"},
    {"{% for i in range(10) %}{% if i == 3 %}{% continue %}{% endif %}{% if i == 6 %}{% break %}{% endif %}{{ i }}{% endfor %}",
     "01245"},
    {"{% for a in [[1,2],[3,4]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }}{% endfor %}",
     "1122113242"},
    {"{{ range(5)|list }}{{ range(2, 8, 2)|list }}{{ range(5, 0, -2)|list }}{{ range(0)|list }}",
     "[0, 1, 2, 3, 4][2, 4, 6][5, 3, 1][]"},
    {"{% macro m(a, b=2, c='x') %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(1, c='y') }}{{ m(a=4, b=5) }}{{ m() }}",
     "[12x][13x][12y][45x][2x]"},
    {"{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}",
     "(1, 2){'k': 3}"},
    {"{% macro outer() %}<{{ caller() }}>{% endmacro %}{% call outer() %}inside{{ 1 + 1 }}{% endcall %}",
     "<inside2>"},
    {"{% macro outer2(x) %}<{{ caller(x * 2) }}>{% endmacro %}{% call(y) outer2(21) %}got {{ y }}{% endcall %}",
     "<got 42>"},
    {"{% macro rec(n) %}{{ n }}{% if n > 0 %}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}",
     "543210"},
    {"{% filter upper %}hello {{ s }}{% endfilter %}|{% set blk %}  B {{ i }} {% endset %}[{{ blk }}]|{% set blk2 | trim %}  B2  {% endset %}[{{ blk2 }}]",
     "HELLO HELLO WORLD|[  B 7 ]|[B2]"},
    {"{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}",
     "3"},
    {"{{ 'yes' if t else 'no' }}{{ 'yes' if n else 'no' }}{{ 'only' if n }}|{{ ('a' if n) is defined }}",
     "yesno|False"},
    {"{{ t and 'x' }}|{{ n and 'x' }}|{{ n or 'y' }}|{{ 0 or [] or 'z' }}|{{ not n }}|{{ not (t and n) }}",
     "x|None|y|z|True|True"},
    {"{{ 'a' ~ 1 ~ none ~ t ~ 2.0 ~ x }}|{{ \"ab\" * 3 }}|{{ [0] * 3 }}|{{ 3 * \"x\" }}",
     "a1NoneTrue2.0|ababab|[0, 0, 0]|xxx"},
    {"{{ [1, 2] + [3] }}|{{ (1, 2) + (3,) }}|{{ \"a\" \"b\" 'c' }}|{{ (1,) }}{{ () }}{{ (1, 2) }}",
     "[1, 2, 3]|(1, 2, 3)|abc|(1,)()(1, 2)"},
    {"{{ {'a': 1, 'b': [1, 2]} }}|{{ {} }}|{{ [] }}|{{ {'x': 'y'}.x }}|{{ {1: 'one'}[1] }}",
     "{'a': 1, 'b': [1, 2]}|{}|[]|y|one"},
    {"{{ l|map('string')|join(',') }}|{{ tools|map(attribute='type')|list }}|{{ tools|map(attribute='function.name')|list }}|{{ [{'a':1},{'b':2}]|map(attribute='a', default='D')|list }}",
     "3,1,2|['function']|['get']|[1, 'D']"},
    {"{{ tools|selectattr('type', 'equalto', 'function')|list|length }}|{{ [1,2,3,4]|select('odd')|list }}|{{ [1,2,3,4]|reject('even')|list }}|{{ MSGS|selectattr('role','eq','user')|list|length }}",
     "1|[1, 3]|[1, 3]|0"},
    {"{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}|{{ messages|rejectattr('role', 'in', ['user'])|list|length }}",
     "['  H\303\251llo w\303\266rld  \\n', 'Q2']|2"},
    {"{{ ['b','A','a','B']|unique|list }}|{{ ['b','A','a','B']|unique(case_sensitive=true)|list }}|{{ ['b','A','a','B']|sort }}|{{ ['b','A','a','B']|sort(case_sensitive=true) }}",
     "['b', 'A']|['b', 'A', 'a', 'B']|['A', 'a', 'b', 'B']|['A', 'B', 'a', 'b']"},
    {"{{ messages|sort(attribute='role')|map(attribute='content')|join('|') }}|{{ messages|map(attribute='role')|unique|list }}",
     "Ans|Sys|  H\303\251llo w\303\266rld  \n|Q2|['system', 'user', 'assistant']"},
    {"{{ 3.7|int }}{{ '42'|int }}{{ ' 42 '|int }}{{ 'x'|int }}{{ 'x'|int(9) }}{{ '3.9'|int }}{{ '0x1F'|int(base=16) }}{{ '1_000'|int }}{{ t|int }}{{ none|int }}",
     "3424209331100010"},
    {"{{ '2.5'|float }}{{ 'x'|float }}{{ 3|float }}{{ -3|abs }}{{ -2.5|abs }}{{ 2.5|round }}{{ 3.5|round }}{{ 2.675|round(2) }}{{ 7|round }}{{ 2.1|round(method='ceil') }}{{ 2.9|round(1, 'floor') }}",
     "2.50.03.032.52.04.02.6773.02.9"},
    {"{{ \"a\\nb\\n\\nc\"|indent(2) }}|{{ \"a\\nb\"|indent(2, true) }}|{{ \"a\\n\\nb\"|indent(3, blank=true) }}|{{ \"x\"|center(5) }}|{{ \"one two  three\"|wordcount }}",
     "a\n  b\n\n  c|  a\n  b|a\n   \n   b|  x  |3"},
    {"{{ \"<a href='x'>&</a>\"|e }}|{{ \"<b>\"|escape }}|{{ \"<b>\"|safe }}|{{ \"%s-%s\"|format(1, 2) }}|{{ d|pprint }}",
     "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;|&lt;b&gt;|<b>|1-2|{'a': 1, 'b': 2, 'nested': {'x': [1, 2, {'y': 'z'}]}}"},
    {"{{ \"abc\"[1] }}{{ \"h\303\251llo\"[1] }}{{ \"h\303\251llo\"[1:3] }}{{ \"h\303\251llo\"[::-1] }}{{ \"h\303\251llo\"|length }}{{ \"\346\227\245\346\234\254\350\252\236\"[-1] }}{{ \"ab\"[5] }}|",
     "b\303\251\303\251loll\303\251h5\350\252\236|"},
    {"{{ \"a,b,,c\".split(\",\") }}{{ \"  a  b \".split() }}{{ \"a b c\".split(none, 1) }}{{ \"a b c\".rsplit(none, 1) }}{{ \"x\".split(\"x\") }}{{ \"\".split() }}{{ \"\".split(\",\") }}",
     "['a', 'b', '', 'c']['a', 'b']['a', 'b c']['a b', 'c']['', ''][]['']"},
    {"{{ \"a\\nb\\r\\nc\".splitlines() }}{{ \"line\\n\".splitlines(true) }}{{ \"abc\".partition(\"b\") }}{{ \"abc\".rpartition(\"x\") }}{{ \"title case here\".title() }}{{ \"don't\"|title }}",
     "['a', 'b', 'c']['line\\n']('a', 'b', 'c')('', '', 'abc')Title Case HereDon't"},
    {"{{ \"42\".isdigit() }}{{ \"ab\".isalpha() }}{{ \"a1\".isalnum() }}{{ \"  \".isspace() }}{{ \"AB\".isupper() }}{{ \"ab\".islower() }}{{ \"Ab\".islower() }}{{ \"7\".zfill(3) }}{{ \"-7\".zfill(4) }}{{ \"ab\".ljust(4,'*') }}{{ \"ab\".rjust(4) }}",
     "TrueTrueTrueTrueTrueTrueFalse007-007ab**  ab"},
    {"{{ \"prefix_x\".removeprefix(\"prefix_\") }}{{ \"x.txt\".removesuffix(\".txt\") }}{{ \"aXbXc\".replace(\"X\", \"\") }}{{ \"abc\".replace(\"\", \"-\") }}{{ \"aaa\".replace(\"a\", \"b\", 2) }}",
     "xxabc-a-b-c-bba"},
    {"{{ messages[0]['role'] }}{{ messages[0].role }}{{ messages[-1].content }}{{ messages|length }}{{ messages[1:]|length }}{{ messages[0]['content'][0] }}",
     "systemsystemQ243S"},
    {"{%- for m in messages %}{{ m.role }}:{{ m.content|trim }};{% endfor %}",
     "system:Sys;user:H\303\251llo w\303\266rld;assistant:Ans;user:Q2;"},
    {"{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}{{ sys }}{{ msgs|length }}",
     "Sys3"},
    {"{% if x %}a{% elif n %}b{% elif t %}c{% else %}d{% endif %}{% if i > 5 %}big{% endif %}",
     "cbig"},
    {"{{ tools[0].function.parameters.properties.loc.type }}{{ tools[0]['function']['parameters']['required'] }}{{ tools|length }}",
     "string['loc']1"},
    {"{% for t2 in tools %}{% for k, v in t2.function.parameters.properties|items %}{{ k }}:{{ v.type }}{% endfor %}{% endfor %}",
     "loc:string"},
    {"{{ l|tojson(indent=2) }}|{{ {\"a\":{\"b\":[]}}|tojson(indent=2) }}|{{ [1,[2,[3]]]|tojson(indent=1) }}",
     "[\n  3,\n  1,\n  2\n]|{\n  \"a\": {\n    \"b\": []\n  }\n}|[\n 1,\n [\n  2,\n  [\n   3\n  ]\n ]\n]"},
    {"{{ {\"a\": 1.0, \"b\": 1e100, \"c\": -0.5, \"d\": 100000000000000000000.0}|tojson }}|{{ 0.1 + 0.2 }}|{{ 1/3 }}|{{ 2.0**0.5 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 0.0001 }}|{{ 0.00001 }}",
     "{\"a\": 1.0, \"b\": 1e+100, \"c\": -0.5, \"d\": 1e+20}|0.30000000000000004|0.3333333333333333|1.4142135623730951|1e+16|1000000000000000.0|0.0001|1e-05"},
    {"{{ 'x' is string and 'y' }}{{ ('x' is string) and 'y' }}{{ not 'x' is string }}{{ -2 ** 2 }}{{ (-2) ** 2 }}{{ 2 + 3 * 4 }}{{ (2 + 3) * 4 }}{{ 10 - 2 - 3 }}{{ 2 ** 3 ** 2 }}",
     "yyFalse441420564"},
    {"{{ l[i - 6] }}{{ messages[messages|length - 1].role }}{{ messages[loop_i] }}",
     "1user"},
    {"{{ namespace(a=1).a }}{{ namespace({'a': 2}).a }}{{ dict(a=1, b=2) }}{{ namespace() }}",
     "12{'a': 1, 'b': 2}<Namespace {}>"},
    {"{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'assistant' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
     "True"},
    {"{% set ns = namespace(i=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.i = loop.index0 %}{% endif %}{% endfor %}{{ ns.i }}",
     "3"},
    {"{% for m in messages|reverse %}{{ m.role[0] }}{% endfor %}{% for m in messages[::-1] %}{{ loop.index0 }}{% endfor %}",
     "uaus0123"},
    {"{{ \"Hello\"|replace(\"l\", \"L\")|replace(\"o\", \"0\") }}|{{ \"a-b\"|replace(\"-\", \"\\\\n\") }}|{{ d.nested.x|last|tojson }}|{{ [[1,2],[3]]|map('length')|list }}",
     "HeLL0|a\\nb|{\"y\": \"z\"}|[2, 1]"},
    {"{{ l|batch(2)|list }}",
     "[[3, 1], [2]]"},
    {"{{ \"x\"|truncate(3) }}",
     "x"},
    {"{% raw %}{{ not evaluated }}{% endraw %}|{%+ if t %}lstrip-off{% endif %}",
     "{{ not evaluated }}|lstrip-off"},
    {"{{ \"abc\" ~ \"\\u00e9\" ~ \"\\x41\" ~ \"\\101\" ~ '\\t|' ~ \"\\\\\" }}",
     "abc\303\251AA\t|\\"},
    {"{{ t|string }}{{ n|string }}{{ f|string }}{{ l|string }}{{ d|string|length > 5 }}",
     "TrueNone2.5[3, 1, 2]True"},
    {"{{ loop }}",
     ""},
    {"{% for i in l %}{{ loop.changed(i > 1) }}{% endfor %}",
     "TrueTrueTrue"},
    {"{% for i in [1, 2] recursive %}{{ i }}{% if i is number %}{{ loop(['a', 'b']) }}{% endif %}{% endfor %}",
     "1ab2ab"},
    {"{{ \"%x %X %o %c %e %g %5.1f %+d %i\" % (255, 255, 8, 65, 12345.678, 0.00001234, 3.14159, 5, 7) }}",
     "ff FF 10 A 1.234568e+04 1.234e-05   3.1 +5 7"},
    {"{{ \"%r %a %s\" % (\"it's\", \"b\", [1, 'x']) }}",
     "\"it's\" 'b' [1, 'x']"},
    {"{{ {\"k\": \"v\"}|items|list }}{{ {\"k\": \"v\"}.keys()|list }}{{ {\"k\": \"v\"}.values()|list }}{{ ({\"k\": \"v\"}.items()|list)[0][1] }}",
     "[('k', 'v')]['k']['v']v"},
    {"  {% if true %}x{% endif %}",
     "x"},
    {"a  {% if true %}x{% endif %}",
     "a  x"},
    {"a\n  {% if true %}x\n  {% endif %}\nb",
     "a\nx\nb"},
    {"a\n  {{ 1 }}\n",
     "a\n  1"},
    {"x\r\ny\rz\n",
     "x\ny\nz"},
    {"{{ \"a\r\nb\" }}",
     "a\nb"},
    {"{{ \"\\r\" }}",
     "\r"},
    {"a {# c #}\nb\n  {# d #}  \nc",
     "a b\n  \nc"},
    {"{%- if true +%}\n  x{%+ endif %}",
     "\n  x"},
    {"{% if true %}\r\nx{% endif %}",
     "x"},
    {"{{ 'a' 'b' }}",
     "ab"},
    {"{% raw %}{{ x }}\n{% endraw %}\ny",
     "{{ x }}\ny"},
    {"{% raw %}\nX{% endraw %}",
     "\nX"},
    {"{% raw -%}\n X {%- endraw %}",
     "X"},
    {"  {% raw %} r {% endraw %}\n",
     " r "},
    {"{{ 1 }}  {% if true %}x{% endif %}",
     "1  x"},
    {"{% if true %}  {% if true %}x{% endif %}{% endif %}",
     "  x"},
    {"{% if true %}\n  {% if true %}x{% endif %}{% endif %}",
     "x"},
    {"{{ 1 }}\n  {% if true %}x{% endif %}",
     "1\nx"},
    {"{% if true -%}\n  {{ 2 }}  {% endif %}",
     "2  "},
    {"{# a #}\n\n  {% if 1 %}x{% endif %}",
     "\nx"},
    {"a\n \t {%- if 1 %}x{% endif %}",
     "ax"},
    {"a\n\n  {%- if 1 %}x{% endif %}",
     "ax"},
    {"{% if 1 %}\n\n{% endif %}",
     "\n"},
    {"{% set x %}\n  abc\n{% endset %}[{{x}}]",
     "[  abc\n]"},
    {"{{- ' a ' -}}  \n  {{- 'b' }}",
     " a b"},
    {"x   {{- 'y' }}   z",
     "xy   z"},
    {"x\n\n{#- c -#}\n\ny",
     "xy"},
    {"{#- c #}\n\ny",
     "\ny"},
    {"x {#+ c +#}\ny",
     "x \ny"},
    {"{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n",
     "  1\n  2\n"},
    {"{% for i in [1,2] -%}\n  {{ i }}\n{%- endfor %}",
     "12"},
    {"{%- for i in [1,2] %}\n    {%- if i == 1 %}\n        one\n    {%- else %}\n        two\n    {%- endif %}\n{%- endfor %}",
     "        one        two"},
    {"\n\n",
     "\n"},
    {"\n",
     ""},
    {"",
     ""},
    {"abc\n\n",
     "abc\n"},
    {"{{ 'x' }}\n",
     "x"},
    {"{% if 1 %}a{% endif %}\n",
     "a"},
    {"  \n  {% if 1 %}a{% endif %}",
     "  \na"},
    {"{{ {'a': {'b': 1}} }}",
     "{'a': {'b': 1}}"},
    {"{{ {'a': {'b': 1}}['a'] }}",
     "{'b': 1}"},
    {"{%- set d = {'k': {'n': 2}} -%}{{ d.k.n }}",
     "2"},
    {"{{ 1 }}{# comment with {{ and %} inside #}{{ 2 }}",
     "12"},
    {"{{ 'string with %} and }} inside' }}",
     "string with %} and }} inside"},
    {"{% set s = '{% not a tag %}' %}{{ s }}",
     "{% not a tag %}"},
    {"{{ 0x1F }}{{ 0o17 }}{{ 0b101 }}{{ 1_000 }}{{ 1.5e3 }}{{ 2e-2 }}{{ 10.0 }}",
     "3115510001500.00.0210.0"},
    {"{{ 1 if 0 else 2 if 0 else 3 }}",
     "3"},
    {"{{ (1 if 1 else 2) + 1 }}",
     "2"},
    {"{% set a = 'x' %}{% set b = a ~ '-' ~ a %}{{ b }}",
     "x-x"},
    {"{{ x is defined and x.y }}",
     "False"},
    {"{{ not x is defined }}",
     "True"},
    {"{{ x is not none }}",
     "True"},
    {"{%- macro m() -%}\n  a\n{%- endmacro -%}\n[{{ m() }}]",
     "[a]"},
    {"{% macro m() %}\n  a\n{% endmacro %}[{{ m() }}]",
     "[  a\n]"},
    {"{% for x in 'abc' %}{{ x }}.{% endfor %}",
     "a.b.c."},
    {"{% for x in {'a': 1, 'b': 2} %}{{ x }}{% endfor %}",
     "ab"},
    {"{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}",
     "1234"},
    {"{% for (a, b) in [[1, 2]] %}{{ a + b }}{% endfor %}",
     "3"},
    {"{% set a, b = 'xy' %}{{ b }}{{ a }}",
     "yx"},
    {"{% for i in range(3) %}{% set j = i %}{% endfor %}{{ j }}",
     ""},
    {"{% if true %}{% set k = 1 %}{% endif %}{{ k }}",
     "1"},
    {"{% set n1 = namespace(v=[]) %}{% for i in range(3) %}{% set n1.v = n1.v + [i] %}{% endfor %}{{ n1.v|join }}",
     "012"},
    {"{% macro f(x) %}{% set x = x + 1 %}{{ x }}{% endmacro %}{{ f(1) }}{{ f(10) }}",
     "211"},
    {"{% set g = 5 %}{% macro f() %}{{ g }}{% endmacro %}{% set g = 6 %}{{ f() }}",
     "6"},
    {"{{ ' '.join(['a', 'b']) }}",
     "a b"},
    {"{{ 'abc'|list }}",
     "['a', 'b', 'c']"},
    {"{{ 'x' * 0 }}",
     ""},
    {"{{ [] | first }}|{{ [] | last }}",
     "|"},
    {"{{ messages[0] }}",
     "{'role': 'system', 'content': 'Sys'}"},
    {"{{ messages[0].content|tojson }}",
     "\"Sys\""},
    {"{{ messages|tojson }}",
     "[{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"  H\303\251llo w\303\266rld  \\n\"}, {\"role\": \"assistant\", \"content\": \"Ans\"}, {\"role\": \"user\", \"content\": \"Q2\"}]"},
    {"{{ messages|length is odd }}",
     "False"},
    {"{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% endfor %}",
     "1user2assistant3user"},
    {"{{ messages|selectattr('role', 'ne', 'system')|list|length }}",
     "3"},
    {"{{ (messages|last).content }}",
     "Q2"},
    {"{{ messages[-1]['role'] == 'user' }}",
     "True"},
    {"{{ bos_token ~ eos_token }}",
     "<s></s>"},
    {"{{ add_generation_prompt }}",
     "True"},
    {"{{ 'a' < 'B' }}{{ '\303\251' > 'z' }}{{ [1, 'a'] == [1, 'a'] }}{{ {'a': 1} == {'a': 1} }}{{ (1, 2) == [1, 2] }}",
     "FalseTrueTrueTrueFalse"},
    {"{{ 5 // 2.0 }}{{ -5 // 2.0 }}{{ 5.5 // 1 }}{{ 2 ** 0.5 }}{{ 7 % 2.5 }}",
     "2.0-3.05.01.41421356237309512.0"},
    {"{{ 1e308 * 10 }}{{ -1e308 * 10 }}",
     "inf-inf"},
    {"{{ 3 == 3.0 == 3 }}{{ 1 < 2 > 1 }}{{ 1 != 1.0 }}",
     "TrueTrueFalse"},
    {"{{ true + true }}{{ true * 3 }}{{ -true }}",
     "23-1"},
    {"{{ 'a' in ['a'] and 'b' not in 'abc' }}",
     "False"},
    {"{% for i in l %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}",
     "3, 1, 2"},
    {"{{ l|join(', ') if l else 'none' }}",
     "3, 1, 2"},
    {"{{ d|items|map('first')|list }}",
     "['b', 'a', 'nested']"},
    {"{{ d|dictsort(reverse=true)|first }}",
     "('nested', {'x': [1, 2, {'y': 'z'}]})"},
    {"{{ [3, 1, 2]|sort|reverse|list }}",
     "[3, 2, 1]"},
    {"{{ [{'n': 'b', 'v': 1}, {'n': 'a', 'v': 2}]|sort(attribute='n')|map(attribute='v')|list }}",
     "[2, 1]"},
    {"{{ ['a', 'B', 'c']|max }}{{ ['a', 'B', 'c']|min }}{{ [1, 5, 3]|max }}",
     "ca5"},
    {"{{ [[1], [2]]|sum(start=[]) }}",
     "[1, 2]"},
    {"{{ 'aBc DeF'|lower|title }}",
     "Abc Def"},
    {"{{ 'hello world'|capitalize }}",
     "Hello world"},
    {"{{ '\303\211COLE \303\234n\303\257c\303\266d\303\251'|lower }}{{ 'stra\303\237e'|upper }}{{ '\316\221\316\222\316\223'|lower }}{{ '\320\263\320\264\320\265'|upper }}",
     "\303\251cole \303\274n\303\257c\303\266d\303\251STRASSE\316\261\316\262\316\263\320\223\320\224\320\225"},
    {"{{ '  x\343\200\200'|trim|length }}",
     "1"},
    {"{{ '\302\240x'.strip() }}",
     "x"},
    {"{{ 'A-b c(d[e<f{g'|title }}",
     "A-B C(D[E<F{G"},
    {"{{ 'hello-world foo_bar'.title() }}",
     "Hello-World Foo_Bar"},
    {"{{ 'x'.center(6, '*') }}",
     "**x***"},
    {"{{ '%-6s|' % 'ab' }}{{ '%6.2s|' % 'abc' }}",
     "ab    |    ab|"},
    {"{{ '%s' % none }}{{ '%s' % [1] }}{{ '%s %s' % ('a', 'b') }}{{ '%%' % () }}",
     "None[1]a b%"},
    {"{{ '%d items' % 3.9 }}{{ '%05.1f' % 3.14159 }}{{ '%+.2e' % 12345.6789 }}",
     "3 items003.1+1.23e+04"},
    {"{{ '{:>5}'.format('a') }}",
     "    a"},
    {"{{ '{0!r}'.format('a') }}",
     "'a'"},
    {"{{ 'a{}b'.format(none) }}",
     "aNoneb"},
    {"{{ '{:>5}|{:<4}|{:^7}|{:*^7}'.format('a', 'b', 'c', 'd') }}",
     "    a|b   |   c   |***d***"},
    {"{{ '{:5d}|{:05d}|{:+d}|{: d}|{:,}|{:_}'.format(42, 42, 42, 42, 1234567, 1234567) }}",
     "   42|00042|+42| 42|1,234,567|1_234_567"},
    {"{{ '{:.2f}|{:8.3f}|{:e}|{:.1%}|{:x}|{:#x}|{:o}|{:b}|{:#b}|{:X}'.format(3.14159, 2.5, 12345.678, 0.256, 255, 255, 8, 5, 5, 255) }}",
     "3.14|   2.500|1.234568e+04|25.6%|ff|0xff|10|101|0b101|FF"},
    {"{{ '{:.3}|{:.2s}|{:10}|{}'.format('abcdef', 'xyz', 'pad', 1.5) }}",
     "abc|xy|pad       |1.5"},
    {"{{ '{:=+8.2f}|{:g}|{:.3g}'.format(-3.14159, 0.0001, 1234.5678) }}",
     "-   3.14|0.0001|1.23e+03"},
    {"{{ '{0}{1}{0}'.format('a', 'b') }}{{ '{x[0]}{y.k}'.format(x=[7], y={'k': 8}) }}",
     "aba78"},
    {"{{ '\303\237'|upper }}{{ 'stra\303\237e'.upper() }}",
     "SSSTRASSE"},
    {"{{ '{:,.2f}'.format(1234567.891) }}",
     "1,234,567.89"},
    {"{{ '{:-^10}'.format(-5) }}",
     "-----5----"},
    {"{% macro m(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}|{{ m(b=2) }}",
     "1|2"},
    {"{% macro m() %}{{ caller is defined }}{% endmacro %}{{ m() }}",
     "False"},
    {"{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{{ loop.revindex0 }}{% endfor %}",
     "a2b1a0"},
    {"{% set x = [1, 2] %}{% set y = x + [3] %}{{ x }}{{ y }}",
     "[1, 2][1, 2, 3]"},
    {"{{ 'abc' is in 'xabcx' }}{{ 3 is in [1, 2] }}",
     "TrueFalse"},
    {"{{ [1, 2, 3]|select('gt', 1)|list }}{{ [1, 2, 3]|reject('in', [2])|list }}",
     "[2, 3][1, 3]"},
    {"{{ messages|map(attribute='role')|join(', ') }}",
     "system, user, assistant, user"},
    {"{{ messages|selectattr('role')|list|length }}",
     "4"},
    {"{{ [none, 1, '', 'a']|select|list }}",
     "[1, 'a']"},
    {"{% set d = {'a': {'b': 1}} %}{{ d.a.b }}{{ d['a']['b'] }}{{ d.get('a').get('b') }}",
     "111"},
    {"{{ (messages|first).role }}{{ (messages|last)['content'] }}",
     "systemQ2"},
    {"{% for m in messages %}{% if loop.index is divisibleby 2 %}{{ m.role }}{% endif %}{% endfor %}",
     "useruser"},
    {"{{ 'x'|center }}|{{ 'a b'|wordcount }}",
     "                                       x                                        |2"},
    {"{{ range(3)|map('string')|join('') }}",
     "012"},
    {"{{ [3, 1]|sort(reverse=true)|first }}",
     "3"},
    {"{{ {'b': 1, 'a': 2}|dictsort|first }}",
     "('a', 2)"},
    {"{{ [[1, 2], [3, 4]]|map('first')|list }}",
     "[1, 3]"},
    {"{{ 'abc'|batch(2)|list }}",
     "[['a', 'b'], ['c']]"},
    {"{{ [1, 2, 3, 4, 5]|slice(2)|list }}",
     "[[1, 2, 3], [4, 5]]"},
    {"{{ 'Hello world this is long'|truncate(12) }}|{{ 'Hello world'|truncate(5, true) }}",
     "Hello...|He..."},
    {"{{ '%s' % 'x' ~ 1 }}",
     "x1"},
    {"{{ not 1 == 2 }}",
     "True"},
    {"{{ 1 if true else 2 ~ 'x' }}",
     "1"},
    {"{{ [1, 2][0:1][0] }}",
     "1"},
    {"{% set a = 1 %}{% with a = a + 1 %}{{ a }}{% endwith %}{{ a }}",
     "21"},
    {"{% for a in [1] %}{% with b = a %}{{ b }}{% endwith %}{% endfor %}",
     "1"},
    {"{% filter trim|upper %}  x  {% endfilter %}",
     "X"},
    {"{% set x | replace('a', 'b') %}aaa{% endset %}{{ x }}",
     "bbb"},
    {"{{ messages[0].content.upper() }}{{ messages[0]['content'].split('y')|length }}",
     "SYS2"},
    {"{{ tools is none }}{{ tools is not defined }}{{ tools|default([])|length }}",
     "FalseFalse1"},
    {"{{ [1, 2]|list is sequence }}{{ 'a' is sequence }}{{ {} is sequence }}{{ 1 is sequence }}{{ none is sequence }}",
     "TrueTrueTrueFalseFalse"},
    {"{{ 1 is callable }}{{ range is callable }}{{ 'a'.upper is callable }}",
     "FalseTrueTrue"},
    {"{{ [1] is iterable }}{{ 1 is iterable }}",
     "TrueFalse"},
    {"{% if messages is defined and messages %}yes{% endif %}",
     "yes"},
    {"{{ (1, 2)|list }}{{ (1, 2)|tojson }}{{ (1,)|length }}",
     "[1, 2][1, 2]1"},
    {"{{ 10|string|length }}{{ 1.5|string }}{{ -0.0 }}{{ 1e-7 }}{{ 12345678901234567890.0 }}",
     "21.5-0.01e-071.2345678901234567e+19"},
    {"{{ 7 // 2 * 2 }}{{ 2 ** 3 ** 0 }}{{ -3 ** 2 }}",
     "619"},
    {"{{ 'a' * -1 }}|{{ [1] * 0 }}|{{ 0 * 'x' }}",
     "|[]|"},
    {"{{ 'ab' < 'abc' }}{{ [1] < [1, 0] }}{{ (2,) > (1, 9) }}",
     "TrueTrueTrue"},
    {"{{ messages|length == 1 and messages[0].role == 'user' }}",
     "False"},
    {"{% for k, v in {'a': 1}.items() %}{{ k }}{{ v }}{% endfor %}",
     "a1"},
    {"{% set ns = namespace(a=namespace(b=1)) %}{{ ns.a.b }}",
     "1"},
    {"{% set ns = namespace() %}{% set ns.x = 5 %}{{ ns.x }}{{ ns['x'] }}",
     "55"},
    {"{{ ''.join(['a', 'b']) }}{{ '-'.join('abc') }}",
     "aba-b-c"},
    {"{{ 'a b'.split(' ', -1) }}{{ 'a,b,c'.rsplit(',', 1) }}",
     "['a', 'b']['a,b', 'c']"},
    {"{{ '  '.join(['x']) }}",
     "x"},
    {"{{ 'ab\\ncd'.splitlines()|length }}",
     "2"},
    {"{% for c in '\303\251\346\227\245' %}[{{ c }}]{% endfor %}",
     "[\303\251][\346\227\245]"},
    {"{{ '\303\251\346\227\245x'[1:] }}{{ '\303\251\346\227\245x'[-1] }}{{ '\303\251\346\227\245x'|reverse }}{{ '\303\251\346\227\245x'|list }}",
     "\346\227\245xxx\346\227\245\303\251['\303\251', '\346\227\245', 'x']"},
    {"{{ '\303\200\303\211\303\216'|lower }}{{ '\303\240\303\251\303\256'|upper }}{{ '\303\200\303\211\303\216'.lower().title() }}",
     "\303\240\303\251\303\256\303\200\303\211\303\216\303\200\303\251\303\256"},
    {"{{ '%-3s|%3d|%.1f' % ('a', 5, 2.25) }}",
     "a  |  5|2.2"},
    {"{{ '%5.1f%%' % 99.5 }}",
     " 99.5%"},
    {"{% if messages|selectattr('role', 'equalto', 'nobody') %}gen-true{% endif %}",
     "gen-true"},
    {"{{ (messages|map(attribute='role'))[0] }}",
     ""},
    {"{{ messages|map(attribute='role')|first }}",
     "system"},
    {"{{ messages|map(attribute='role')|list|last }}",
     "user"},
    {"{{ l|select|list == l|select|list }}",
     "True"},
    {"{{ l|unique|join }}",
     "312"},
    {"{{ d|items|list }}",
     "[('b', 2), ('a', 1), ('nested', {'x': [1, 2, {'y': 'z'}]})]"},
    {"{% for k, v in d|items %}{{ k }}{% endfor %}",
     "banested"},
    {"{{ l|select is sequence }}{{ l|select is iterable }}",
     "FalseTrue"},
    {"{{ l|select|sort }}{{ l|select|reverse|list }}{{ 1 in l|select }}{{ l|select|sum }}",
     "[1, 2, 3][2, 1, 3]True6"},
    {"{{ (l|batch(2)|list)[0] }}",
     "[3, 1]"},
    {"{{ d.items()|length }}",
     "3"},
};

static void test_semantics(void **state) {
    (void)state;
    size_t n = sizeof SEM_CASES / sizeof SEM_CASES[0], pass = 0;
    for (size_t i = 0; i < n; i++) {
        char err[1024];
        char *out = render(SEM_CASES[i].tmpl, SEM_VARS, NULL, err, sizeof err);
        if (out && !strcmp(out, SEM_CASES[i].expected)) pass++;
        else fprintf(stderr, "  case %zu: %s\n    jinja2: %s\n    ours:   %s\n", i, SEM_CASES[i].tmpl, SEM_CASES[i].expected, out ? out : err);
        free(out);
    }
    fprintf(stderr, "semantics: %zu/%zu templates render as jinja2 does\n", pass, n);
    assert_int_equal(pass, n);
    /* values from JSON: integral numbers are ints, others floats */
    expect_text("{{ a }}|{{ b }}|{{ c }}|{{ d }}|{{ e.x[1] }}|{{ a is integer }}{{ b is float }}",
                "{\"a\": 1, \"b\": 1.5, \"c\": true, \"d\": null, \"e\": {\"x\": [0, \"y\"]}}", "1|1.5|True|None|y|TrueTrue");
}

static void test_strftime(void **state) {
    (void)state;
    lm_chat_limits lim = lm_chat_default_limits();
    lim.now = 1740052800;
    char err[256];
    char *out = render("{{ strftime_now('%Y-%m-%d %H:%M|%d %b %Y|%B %-d, %Y') }}", NULL, &lim, err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, "2025-02-20 12:00|20 Feb 2025|February 20, 2025");
    free(out);
    /* main() set SOURCE_DATE_EPOCH, which now = -1 (the default) honours */
    expect_text("{{ strftime_now('%Y-%m-%d') }}", NULL, "2025-02-20");
}

static void test_errors(void **state) {
    (void)state;
    char err[1024];
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    /* API argument errors */
    assert_null(llamita_chat_apply_template(NULL, NULL, msgs, false, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "no chat template"));
    assert_null(llamita_chat_apply_template(NULL, "chatml", "[{\"role\": ", false, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "invalid JSON at byte"));
    assert_null(llamita_chat_apply_template(NULL, "chatml", "[] x", false, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "invalid JSON"));
    assert_null(llamita_chat_apply_template(NULL, "chatml", "{\"role\": \"user\"}", false, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "expected a JSON array"));
    assert_null(llamita_chat_apply_template(NULL, "chatml", NULL, false, NULL, NULL, err, sizeof err));
    char *out = llamita_chat_apply_template(NULL, "chatml", msgs, true, NULL, NULL, err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    /* raise_exception passes its message through exactly */
    expect_error("a{{ raise_exception('Roles must alternate: ' ~ 1) }}", NULL, NULL, "Roles must alternate: 1", false);
    /* syntax errors name line:column */
    expect_error("line one\n{{ 1 + }}", NULL, NULL, "template syntax error at 2:8: expected an expression, got '}}'", false);
    expect_error("{% for m in messages %}x", NULL, NULL,
                 "template syntax error at 1:25: unexpected end of template: expected 'endfor' or 'else'", false);
    expect_error("{% if x %}\n  {% endfor %}", NULL, NULL, "template syntax error at 2:6: unknown tag 'endfor', expected 'elif' or 'else' or 'endif'", false);
    expect_error("{{ x", NULL, NULL, "template syntax error at 1:1: unexpected end of template: the tag is not closed with '}}'", false);
    expect_error("{# x", NULL, NULL, "template syntax error at 1:1: unexpected end of template: the comment is not closed", true);
    expect_error("{{ 'abc }}", NULL, NULL, "template syntax error at 1:4: unterminated string", false);
    expect_error("{{ x|nosuchfilter }}", NULL, NULL, "template syntax error at 1:6: No filter named 'nosuchfilter'.", false);
    expect_error("{% break %}", NULL, NULL, "template syntax error at 1:1: 'break' outside of a loop", false);
    expect_error("{% include 'x' %}", NULL, NULL, "template syntax error at 1:4: 'include' is not supported", true);
    expect_error("{% macro m(a=1, b) %}{% endmacro %}", NULL, NULL, "template syntax error", true);
    expect_error("{{ 'a\\x4' }}", NULL, NULL, "template syntax error at 1:4: truncated \\x escape", true);
    /* unknown filters/tests inside an if only fail when evaluated (as in jinja2) */
    expect_text("{% if false %}{{ x|nosuchfilter }}{{ x is nosuchtest }}{% endif %}ok", NULL, "ok");
    expect_error("{% if true %}{{ x|nosuchfilter }}{% endif %}", NULL, NULL, "template error at 1:19: No filter named 'nosuchfilter'.", false);
    /* grammar rules of jinja2 that differential fuzzing against it pinned down */
    expect_error("{% set true = 1 %}", NULL, NULL, "template syntax error at 1:8: can't assign to 'const'", false);
    expect_error("{% macro none() %}{% endmacro %}", NULL, NULL, "template syntax error at 1:10: can't assign to 'name'", false);
    expect_error("{% for m in messages %}{% set loop = 1 %}{% endfor %}", NULL, NULL,
                 "template syntax error at 1:24: Can't assign to special loop variable in for-loop target", false);
    expect_error("{{ x['a',] }}", NULL, NULL, "template syntax error at 1:10: expected an expression, got ']'", false);
    expect_error("{{ f(a=1, 2) }}", NULL, NULL, "template syntax error at 1:11: invalid syntax for function call expression", false);
    expect_error("{% if x if y %}{% endif %}", NULL, NULL, "template syntax error at 1:9: expected end of statement block '%}', got 'if'", false);
    expect_error("{% if false %}{% for x in y %}{{ x|nosuch }}{% endfor %}{% endif %}", NULL, NULL,
                 "template syntax error at 1:36: No filter named 'nosuch'.", false); /* loops are hard frames again */
    expect_text("{% if false and x|nosuch %}ok{% endif %}done", NULL, "done");
    expect_text("{% if 1: %}a{% else: %}b{% endif %}", NULL, "a");
    expect_text("{% set ns = namespace(a=1) %}{% set ns.a, b = [5, 6] %}{{ ns.a }}{{ b }}", NULL, "56");
    expect_error("{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}", NULL, NULL,
                 "template error at 1:40: macro 'm' was invoked with two values for the special caller argument.", true);
    expect_error("{{ 1 is defined(1) }}", NULL, NULL, "template error at 1:9: test 'defined' takes 0 argument(s), 1 given", false);
    expect_error("{% set x = true %}{{ x[1:] }}", NULL, NULL, "template error at 1:23: 'bool' object is not subscriptable", false);
    /* runtime errors: Python's messages, with the position */
    expect_error("{{ 'a' + 1 }}", NULL, NULL, "template error at 1:8: can only concatenate str (not \"int\") to str", false);
    expect_error("\n {{ foo.bar }}", NULL, NULL, "template error at 2:8: 'foo' is undefined", false);
    expect_error("{{ foo + 'x' }}", NULL, NULL, "template error at 1:8: 'foo' is undefined", false);
    expect_error("{{ {}.a.b }}", NULL, NULL, "template error at 1:8: 'dict object' has no attribute 'a'", false);
    expect_error("{{ [1][3].x }}", NULL, NULL, "template error at 1:10: list object has no element 3", false);
    expect_error("{{ 1 / 0 }}", NULL, NULL, "template error at 1:6: division by zero", false);
    expect_error("{{ 1 < 'a' }}", NULL, NULL, "template error at 1:6: '<' not supported between instances of 'int' and 'str'", false);
    expect_error("{{ [].append(1) }}", NULL, NULL, "template error at 1:13: access to attribute 'append' of 'list' object is unsafe.", false);
    expect_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, NULL, "template error at 1:35: macro 'm' takes not more than 1 argument(s)", false);
    expect_error("{% set a, b = [1] %}", NULL, NULL, "template error at 1:1: not enough values to unpack (expected 2, got 1)", false);
    expect_error("{% set x = 1 %}{% set x.y = 2 %}", NULL, NULL, "template error at 1:16: cannot assign attribute on non-namespace object", false);
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, NULL, "template error at 1:24: integer overflow", false);
    expect_error("{{ x|tojson }}", NULL, NULL, "template error at 1:6: Object of type Undefined is not JSON serializable", false);
}

static void test_limits(void **state) {
    (void)state;
    lm_chat_limits lim = lm_chat_default_limits();
    lim.max_steps = 100000;
    expect_error("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", NULL, &lim,
                 "template error at 1:29: the template runs too long (over 100000 steps)", true);
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, "template error at 1:21: maximum recursion depth exceeded", true);
    expect_error("{{ range(100001)|length }}", NULL, NULL,
                 "template error at 1:9: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).", false);
    lim = lm_chat_default_limits();
    lim.max_output = 1 << 20;
    expect_error("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", NULL, &lim, "template error: the rendered text is too long", false);
    expect_error("{{ 'x' * 10000000 }}", NULL, &lim, "template error at 1:8: string repetition too large", false);
    lim = lm_chat_default_limits();
    lim.max_memory = 16 << 20;
    expect_error("{% set ns = namespace(s='xy') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", NULL, &lim,
                 "template error: the template uses too much memory", false);
    /* nesting: expressions, statements, printed values */
    char deep[4096];
    int o = snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 600; i++) deep[o++] = '(';
    deep[o++] = '1';
    for (int i = 0; i < 600; i++) deep[o++] = ')';
    snprintf(deep + o, sizeof deep - (size_t)o, " }}");
    expect_error(deep, NULL, NULL, "template syntax error at", true);
    char ifs[8192] = "";
    for (int i = 0; i < 400; i++) strcat(ifs, "{% if 1 %}");
    expect_error(ifs, NULL, NULL, "template syntax error at 1:", true);
    expect_error("{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}", NULL,
                 NULL, "template error: a value is nested too deeply to print", false);
    expect_error("{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v|tojson }}",
                 NULL, NULL, "template error at 1:100: tojson: the value is nested too deeply", false);
    /* a template with no output, an empty template */
    expect_text("", NULL, "");
    expect_text("{# only a comment #}\n", NULL, "");
}

/* ---- fuzzing ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static size_t rndn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static const char *const FRAGMENTS[] = {
    "{%", "%}", "{{", "}}", "{#", "#}", "-%}", "{%-", "{{-", "-}}", "(", ")", "[", "]", "{", "}", "'", "\"", "\\", ",", ":",
    "|", ".", "=", "==", "~", "+", "*", "**", "%", " is ", " not ", " in ", " and ", " or ", " if ", " else ", "endfor",
    "endif", "endmacro", "loop", "loop.index0", "messages", "messages[0]", "message['content']", "ns.x", "none", "true",
    "1", "-1", "0.5", "range(3)", "{% for x in messages %}", "{% endfor %}", "{% if x %}", "{% else %}", "{% endif %}",
    "{% set ns = namespace(x=1) %}", "{% set ns.x = ns.x + 1 %}", "{% macro m(a, b=2) %}", "{% endmacro %}", "{{ m(1) }}",
    "{{ caller() }}", "{% call m(1) %}", "{% endcall %}", "{% raw %}", "{% endraw %}", "{% break %}", "|tojson", "|trim",
    "|length", "|selectattr('role', 'equalto', 'user')", "|map(attribute='role')", "|join(', ')", "[::-1]", "[1:]",
    ".strip()", ".split('x')", "\n", "\t", " ", "\xff", "\xc3", "\xe2\x82", "\x00", "{% generation %}", "{% endgeneration %}",
    "{{ raise_exception('x') }}", "{% filter upper %}", "{% endfilter %}", "{% with a = 1 %}", "{% endwith %}",
    "{% for x in y recursive %}{{ loop(x) }}", "'%s' % (1,)", "'{}'.format(1)", "strftime_now('%Y')", "x is divisibleby 3"};

/* One random mutation of src[0..n) into buf (NUL-terminated); returns its length. */
static size_t mutate(const char *src, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    switch (rndn(9)) {
    case 7:
    case 8: { /* replace a word (name, keyword, number) by another: mostly keeps the syntax valid */
        static const char *const words[] = {"messages", "message", "loop", "ns", "content", "role", "x", "tools", "none",
                                            "true", "0", "-1", "2", "'s'", "[]", "{}", "range", "namespace", "caller",
                                            "bos_token", "add_generation_prompt", "items", "length", "loop.index0"};
        size_t at = rndn(n + 1);
        while (at < n && !(isalnum((unsigned char)src[at]) || src[at] == '_')) at++;
        size_t we = at;
        while (we < n && (isalnum((unsigned char)src[we]) || src[we] == '_')) we++;
        const char *w = words[rndn(sizeof words / sizeof words[0])];
        size_t wl = strlen(w);
        if (n - (we - at) + wl >= cap) wl = 0;
        memcpy(buf, src, at);
        memcpy(buf + at, w, wl);
        memcpy(buf + at + wl, src + we, n - we);
        o = at + wl + n - we;
        break;
    }
    case 0: /* truncate */
        o = rndn(n + 1);
        memcpy(buf, src, o);
        break;
    case 1: { /* delete a span */
        size_t at = rndn(n + 1), len = 1 + rndn(24);
        if (at + len > n) len = n - at;
        memcpy(buf, src, at);
        memcpy(buf + at, src + at + len, n - at - len);
        o = n - len;
        break;
    }
    case 2:
    case 3: { /* insert 1-3 Jinja fragments */
        memcpy(buf, src, n);
        o = n;
        for (int k = 1 + (int)rndn(3); k > 0; k--) {
            const char *f = FRAGMENTS[rndn(sizeof FRAGMENTS / sizeof FRAGMENTS[0])];
            size_t fl = f[0] ? strlen(f) : 1, at = rndn(o + 1);
            if (o + fl >= cap) break;
            memmove(buf + at + fl, buf + at, o - at);
            memcpy(buf + at, f, fl);
            o += fl;
        }
        break;
    }
    case 4: /* flip bytes */
        memcpy(buf, src, n);
        o = n;
        for (int k = 1 + (int)rndn(4); k > 0 && o; k--) buf[rndn(o)] = (char)rnd();
        break;
    case 5: { /* duplicate a span */
        size_t at = rndn(n + 1), len = rndn(64);
        if (at + len > n) len = n - at;
        if (n + len >= cap) len = 0;
        memcpy(buf, src, at + len);
        memcpy(buf + at + len, src + at, n - at);
        o = n + len;
        break;
    }
    default: { /* splice: a head of this template and a tail of itself elsewhere */
        size_t a = rndn(n + 1), b = rndn(n + 1);
        memcpy(buf, src, a);
        memcpy(buf + a, src + b, n - b);
        o = a + n - b;
        break;
    }
    }
    buf[o] = 0;
    return o;
}

static void test_fuzz(void **state) {
    (void)state;
    /* sources: the fixture templates when available, else the built-ins */
    const char *srcs[128];
    size_t nsrc = 0;
    fixture_line *v = NULL;
    size_t nl = lm_test_shared_dir() ? load_lines(&v) : 0;
    for (size_t i = 0; i < nl && nsrc < 128; i++)
        if (!nsrc || strcmp(v[i].tmpl, srcs[nsrc - 1])) srcs[nsrc++] = v[i].tmpl;
    for (size_t i = 0; lm_chat_builtin_name(i) && nsrc < 128; i++) srcs[nsrc++] = lm_chat_builtin(lm_chat_builtin_name(i));
    cJSON *vars = cJSON_Parse(SEM_VARS);
    assert_non_null(vars);
    lm_chat_limits lim = lm_chat_default_limits();
    lim.max_steps = 200000, lim.max_memory = 64 << 20, lim.max_output = 4 << 20, lim.max_depth = 64;
    size_t cap = 64 * 1024;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int ok = 0, syntax = 0, runtime = 0, raised = 0;
    /* LLAMITA_CHAT_FUZZ=N and LLAMITA_CHAT_FUZZ_SEED=S run longer or different campaigns by hand */
    const char *env_n = getenv("LLAMITA_CHAT_FUZZ"), *env_seed = getenv("LLAMITA_CHAT_FUZZ_SEED");
    const int N = env_n && atoi(env_n) > 0 ? atoi(env_n) : 3000, SOUP = N / 2;
    if (env_seed && strtoull(env_seed, NULL, 10)) rng_state = strtoull(env_seed, NULL, 10);
    for (int it = 0; it < N + SOUP; it++) {
        size_t len;
        if (it < N) {
            const char *s = srcs[rndn(nsrc)];
            size_t n = strlen(s);
            if (n + 256 > cap) n = cap - 256;
            len = mutate(s, n, buf, cap);
            if (rndn(4) == 0) len = mutate(buf, len, buf + cap / 2, cap / 2 - 1), memmove(buf, buf + cap / 2, len + 1);
        } else { /* token soup */
            len = 0;
            for (int k = 2 + (int)rndn(40); k > 0; k--) {
                const char *f = FRAGMENTS[rndn(sizeof FRAGMENTS / sizeof FRAGMENTS[0])];
                size_t fl = strlen(f);
                if (len + fl + 1 >= cap) break;
                memcpy(buf + len, f, fl);
                len += fl;
            }
            buf[len] = 0;
        }
        char err[512] = "";
        size_t out_len = 0;
        char *out = lm_chat_render(buf, len, vars, &lim, &out_len, err, sizeof err);
        if (out) {
            ok++;
            assert_true(out[out_len] == 0);
        } else {
            assert_true(err[0] != 0);
            if (!strncmp(err, "template syntax error at ", 25)) syntax++;
            else if (!strncmp(err, "template error", 14)) runtime++;
            else raised++;
        }
        free(out);
    }
    fprintf(stderr, "fuzz: %d mutated templates + %d token soups: %d rendered, %d syntax errors, %d runtime errors, %d raised\n",
            N, SOUP, ok, syntax, runtime, raised);
    assert_int_equal(ok + syntax + runtime + raised, N + SOUP);
    assert_true(ok > 0 && syntax > 0 && runtime > 0);
    free(buf);
    cJSON_Delete(vars);
    free_lines(v, nl);
}

static void test_model_template(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    char path[4096], err[1024];
    llamita_model_params mp = llamita_model_default_params();
    mp.vocab_only = true;
    const char *msgs = "[{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"}, "
                       "{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]";
    /* fx-spm32k carries TinyLlama's zephyr template and the Llama vocab (<s>, </s>) */
    llamita_model *m = llamita_model_load(lm_test_shared_path(path, sizeof path, "fixtures/vocab32k/fx-spm32k-Q4_K_M.gguf"), mp, err, sizeof err);
    if (!m) fprintf(stderr, "load: %s\n", err);
    assert_non_null(m);
    size_t tl;
    assert_non_null(lm_chat_model_template(m, &tl));
    assert_true(tl > 100);
    char *out = llamita_chat_apply_template(m, NULL, msgs, true, NULL, NULL, err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nWhat is the capital of France?</s>\n<|assistant|>\n");
    free(out);
    /* explicit tokens and an explicit template override the model's */
    out = llamita_chat_apply_template(m, "llama2", msgs, false, "[B]", "[E]", err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, "[B][INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is the capital of France? [/INST]");
    free(out);
    assert_string_equal(lm_chat_guess_builtin(m), "zephyr");
    llamita_model_free(m);
    /* stories260K has no chat template: the guessed built-in is used, with the model's BOS/EOS */
    m = llamita_model_load(lm_test_shared_path(path, sizeof path, "fixtures/models/stories260K.gguf"), mp, err, sizeof err);
    assert_non_null(m);
    assert_null(lm_chat_model_template(m, &tl));
    out = llamita_chat_apply_template(m, NULL, msgs, true, NULL, NULL, err, sizeof err);
    assert_non_null(out);
    char *want = llamita_chat_apply_template(NULL, lm_chat_guess_builtin(m), msgs, true, "<s>", "</s>", err, sizeof err);
    assert_non_null(want);
    assert_string_equal(out, want);
    free(out);
    free(want);
    llamita_model_free(m);
}

int main(void) {
    setenv("SOURCE_DATE_EPOCH", FIXTURE_EPOCH, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_lines),  cmocka_unit_test(test_builtins_match_reference),
        cmocka_unit_test(test_semantics),      cmocka_unit_test(test_strftime),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_limits),
        cmocka_unit_test(test_fuzz),           cmocka_unit_test(test_model_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
