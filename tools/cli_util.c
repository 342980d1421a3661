/* Shared helpers of the CLI subcommands: errors and exit codes, option parsing, file reading,
 * model loading. See cli.h for the contracts. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "hub.h"

/* ---------------------------------------------------------------------------------------------
 * Errors and usage
 * ------------------------------------------------------------------------------------------- */

const char *g_cmd = NULL; /* current subcommand, for usage hints */

const char *usage_line(const char *cmd) {
    const cli_command *c = cmd ? cli_find_command(cmd) : NULL;
    if (c) return c->usage;
    return "usage: llamita COMMAND [options]; see 'llamita --help'";
}

/* Prints "error: <message>" as one line (control characters in the message become spaces). */
void print_error_line(const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    fprintf(stderr, "error: %s\n", msg);
}

/* Bad input: one error line, exit 1. */
_Noreturn void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error_line(fmt, ap);
    va_end(ap);
    exit(EXIT_BAD_INPUT);
}

/* Bad usage: error line plus a one-line usage hint, exit 2. */
_Noreturn void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error_line(fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", usage_line(g_cmd));
    exit(EXIT_USAGE);
}

void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (allocating %zu bytes)", n);
    return p;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------------------
 * Argument parsing
 * ------------------------------------------------------------------------------------------- */


/* If argv[i] is the option `s` (short, may be NULL) or `l` (long), consumes it with its value
 * ("-x V", "--long V" or "--long=V") into *val and returns true. Missing value: usage error. */
bool opt_val(args *a, const char *s, const char *l, const char **val) {
    const char *arg = a->argv[a->i];
    if (a->no_more_opts) return false;
    size_t ll = strlen(l);
    if (!strncmp(arg, l, ll) && arg[ll] == '=') {
        *val = arg + ll + 1;
        return true;
    }
    if (strcmp(arg, l) != 0 && (!s || strcmp(arg, s) != 0)) return false;
    if (a->i + 1 >= a->argc) usage_error("option %s needs a value", arg);
    *val = a->argv[++a->i];
    return true;
}

/* True when argv[i] is the flag `s` or `l` (no value). */
bool opt_flag(args *a, const char *s, const char *l) {
    const char *arg = a->argv[a->i];
    if (a->no_more_opts) return false;
    return !strcmp(arg, l) || (s && !strcmp(arg, s));
}

bool is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

/* Strict integer: all of s must be a base-10 number (else usage error, exit 2); values outside
 * [lo, hi] are bad input (exit 1). */
long long parse_int(const char *opt, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || isspace((unsigned char)*s)) usage_error("%s expects an integer, got '%s'", opt, s);
    if (errno == ERANGE || v < lo || v > hi) die("%s must be between %lld and %lld, got %s", opt, lo, hi, s);
    return v;
}

/* Strict float: all of s must be a number (else exit 2); non-finite or outside [lo, hi] exit 1. */
float parse_float(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || isspace((unsigned char)*s)) usage_error("%s expects a number, got '%s'", opt, s);
    if (!isfinite(v) || v < lo || v > hi || (errno == ERANGE && fabs(v) > 1.0))
        die("%s must be a finite number between %g and %g, got %s", opt, lo, hi, s);
    if (fabs(v) > 3.4e38) die("%s is too large for a float: %s", opt, s);
    return (float)v;
}

/* Seed: -1 (or omitted) = from the clock; else an unsigned 64-bit integer. */
uint64_t parse_seed(const char *opt, const char *s) {
    if (!strcmp(s, "-1")) return LLAMITA_DEFAULT_SEED;
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9') {
        if (*s == '-' && s[1] >= '0' && s[1] <= '9') die("%s must be -1 or a non-negative integer, got %s", opt, s);
        usage_error("%s expects an integer, got '%s'", opt, s);
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (*end) usage_error("%s expects an integer, got '%s'", opt, s);
    if (errno == ERANGE) die("%s must fit in 64 bits, got %s", opt, s);
    return (uint64_t)v;
}

/* Reads a whole file into a NUL-terminated malloc'd buffer; *len = its size. Exit 1 on error. */
char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > SIZE_MAX / 2) die("'%s' is too large", path);
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) die("out of memory reading '%s'", path);
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) die("cannot read '%s': %s", path, strerror(errno ? errno : EIO));
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* llama.cpp-style escape processing (\n \r \t \\ \' \" \xHH) in place; unknown escapes are kept.
 * Returns the new length. */
size_t process_escapes(char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\' || i + 1 >= len) {
            s[o++] = s[i];
            continue;
        }
        char c = s[i + 1];
        int hv = -1;
        switch (c) {
        case 'n': s[o++] = '\n'; i++; break;
        case 'r': s[o++] = '\r'; i++; break;
        case 't': s[o++] = '\t'; i++; break;
        case '\\': s[o++] = '\\'; i++; break;
        case '\'': s[o++] = '\''; i++; break;
        case '"': s[o++] = '"'; i++; break;
        case 'x':
            if (i + 3 < len && isxdigit((unsigned char)s[i + 2]) && isxdigit((unsigned char)s[i + 3])) {
                char h[3] = {s[i + 2], s[i + 3], 0};
                hv = (int)strtol(h, NULL, 16);
            }
            if (hv >= 0) {
                s[o++] = (char)hv;
                i += 3;
            } else {
                s[o++] = s[i];
            }
            break;
        default: s[o++] = s[i]; break;
        }
    }
    s[o] = 0;
    return o;
}

/* ---------------------------------------------------------------------------------------------
 * Shared model helpers
 * ------------------------------------------------------------------------------------------- */

llamita_model *load_model(const char *arg, bool vocab_only) {
    char err[1024] = "";
    /* a path, or hf://ORG/NAME/FILE (found in the Hugging Face cache or downloaded) */
    char *path = lm_resolve_model_arg(arg, NULL, NULL, err, sizeof err);
    if (!path) die("%s", err);
    llamita_model_params mp = llamita_model_default_params();
    mp.vocab_only = vocab_only;
    llamita_model *m = llamita_model_load(path, mp, err, sizeof err);
    if (!m) {
        char msg[2048];
        if (!err[0]) snprintf(err, sizeof err, "unknown error");
        if (strstr(err, path)) snprintf(msg, sizeof msg, "cannot load model: %s", err);
        else snprintf(msg, sizeof msg, "cannot load model '%s': %s", path, err);
        free(path);
        die("%s", msg);
    }
    free(path);
    return m;
}

/* Tokenizes text[0..len) into a malloc'd array; *n = count. Exit 1 on failure. */
llamita_token *tokenize_all(const llamita_model *m, const char *text, size_t len, bool add_special,
                                   bool parse_special, int32_t *n) {
    if (len > (size_t)INT32_MAX / 2) die("the text is too long (%zu bytes)", len);
    int32_t cap = (int32_t)len + 16;
    llamita_token *t = xmalloc((size_t)cap * sizeof *t);
    int32_t r = llamita_tokenize(m, text, (int32_t)len, t, cap, add_special, parse_special);
    if (r < 0 && r != INT32_MIN) {
        cap = -r;
        free(t);
        t = xmalloc((size_t)cap * sizeof *t);
        r = llamita_tokenize(m, text, (int32_t)len, t, cap, add_special, parse_special);
    }
    if (r < 0) die("tokenization failed (%zu bytes of text)", len);
    *n = r;
    return t;
}

const char *human_count(uint64_t n, char *buf, size_t size) {
    if (n >= 1000000000ULL) snprintf(buf, size, "%.2f B", (double)n / 1e9);
    else if (n >= 1000000ULL) snprintf(buf, size, "%.2f M", (double)n / 1e6);
    else if (n >= 1000ULL) snprintf(buf, size, "%.2f K", (double)n / 1e3);
    else snprintf(buf, size, "%" PRIu64, n);
    return buf;
}

const char *human_bytes(uint64_t n, char *buf, size_t size) {
    if (n >= (1ULL << 30)) snprintf(buf, size, "%.2f GiB", (double)n / (double)(1ULL << 30));
    else if (n >= (1ULL << 20)) snprintf(buf, size, "%.2f MiB", (double)n / (double)(1ULL << 20));
    else if (n >= (1ULL << 10)) snprintf(buf, size, "%.2f KiB", (double)n / (double)(1ULL << 10));
    else snprintf(buf, size, "%" PRIu64 " B", n);
    return buf;
}

/* Writes all of buf to f; false on error. */
bool write_all(FILE *f, const void *buf, size_t n) { return n == 0 || fwrite(buf, 1, n, f) == n; }

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}
