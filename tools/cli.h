/*
 * The llamita CLI: shared helpers and the command registry.
 *
 * Each subcommand is a `const cli_command cli_cmd_NAME` defined in its own tools/cmd_NAME.c file (the
 * Makefile links every C file of tools/ into build/llamita). main() in tools/llamita.c lists them; a
 * command whose file is absent from the build is simply unknown (the references are weak).
 *
 * Exit status convention: 0 success; 1 (EXIT_BAD_INPUT) with one line "error: ..." for bad input;
 * 2 (EXIT_USAGE) for bad usage, with the error line and the command's one-line usage hint.
 */
#ifndef LLAMITA_CLI_H
#define LLAMITA_CLI_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llamita.h"

#define EXIT_BAD_INPUT 1
#define EXIT_USAGE 2

typedef struct cli_command {
    const char *name;    /* "run" */
    const char *summary; /* one line for `llamita --help` */
    const char *usage;   /* one-line usage hint, printed after a usage error */
    const char *help;    /* full text for `llamita NAME --help` */
    int (*main)(int argc, char **argv); /* argv[1] is the command name; options from argv[2] */
} cli_command;

/* The registered command called `name`, or NULL. */
const cli_command *cli_find_command(const char *name);

extern const char *g_cmd; /* current subcommand, for usage hints */

/* ---- errors ---- */
const char *usage_line(const char *cmd);
void print_error_line(const char *fmt, va_list ap);
/* Bad input: one "error: ..." line, exit 1. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Bad usage: error line plus the current command's usage hint, exit 2. */
_Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xmalloc(size_t n); /* dies on out-of-memory */
double now_s(void);      /* monotonic seconds */

/* ---- argument parsing ---- */
typedef struct args {
    int argc, i;
    char **argv;
    bool no_more_opts; /* after "--" */
} args;
/* If argv[i] is the option `s` (short, may be NULL) or `l` (long), consumes it with its value
 * ("-x V", "--long V" or "--long=V") into *val and returns true. Missing value: usage error. */
bool opt_val(args *a, const char *s, const char *l, const char **val);
/* True when argv[i] is the flag `s` or `l` (no value). */
bool opt_flag(args *a, const char *s, const char *l);
bool is_help(const char *arg);
/* Strict numeric parsing: non-numeric -> usage error (exit 2); out of [lo, hi] -> bad input (exit 1). */
long long parse_int(const char *opt, const char *s, long long lo, long long hi);
float parse_float(const char *opt, const char *s, double lo, double hi);
uint64_t parse_seed(const char *opt, const char *s);

/* ---- files, models, text ---- */
/* Whole file, NUL-terminated, malloc'd; dies with a clear error if unreadable. */
char *read_file(const char *path, size_t *len);
/* Processes \n \t \\ \" \' \r \0-style escapes in place; returns the new length. */
size_t process_escapes(char *s, size_t len);
/* Loads a model (a path, or hf://ORG/NAME/FILE via the Hugging Face cache) or dies with
 * "error: <reason>". */
llamita_model *load_model(const char *path, bool vocab_only);
/* Tokenizes the whole text (malloc'd ids, count in *n). */
llamita_token *tokenize_all(const llamita_model *m, const char *text, size_t len, bool add_special,
                            bool parse_special, int32_t *n);
const char *human_count(uint64_t n, char *buf, size_t size);
const char *human_bytes(uint64_t n, char *buf, size_t size);
bool write_all(FILE *f, const void *buf, size_t n);
/* Writes s as a JSON string literal (quotes, backslashes and control bytes escaped). */
void cli_json_str(FILE *f, const char *s);
#endif
