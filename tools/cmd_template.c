/*
 * `llamita template`: renders a conversation with a chat template (the model's own
 * tokenizer.chat_template, a built-in, or a Jinja file) and prints the prompt exactly, adding no
 * newline, so users can see what the model receives and tests can compare byte for byte.
 *
 * Exit status: 0 rendered; 1 "error: ..." for bad input, including a template that raises
 * (`error: <its raise_exception message>`) or has a syntax error (line:column); 2 bad usage.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cli.h"
#include "llamita.h"

static const char TEMPLATE_HELP[] =
    "usage: llamita template (-m MODEL | --chat-template NAME|FILE) --messages FILE.json [options]\n"
    "\n"
    "Renders a conversation with a chat template and prints the prompt exactly as the model\n"
    "receives it (no newline is added). A template that raises exits 1 with 'error: <message>'.\n"
    "\n"
    "  -m, --model FILE            take the template and the BOS/EOS texts from this GGUF: its\n"
    "                              tokenizer.chat_template, or when it has none a built-in guessed\n"
    "                              from its vocabulary\n"
    "      --chat-template T       a built-in (zephyr chatml llama2 llama3 mistral gemma phi3) or a\n"
    "                              file of Jinja source (write ./NAME for a file named like a\n"
    "                              built-in); overrides the model's template\n"
    "      --messages FILE         JSON array of {\"role\": ..., \"content\": ...} ('-' = stdin)\n"
    "      --add-generation-prompt end with the header of the assistant's turn\n"
    "      --bos-token TEXT        value of bos_token (default: the model's BOS text, else empty)\n"
    "      --eos-token TEXT        value of eos_token (default: the model's EOS text, else empty)\n"
    "      --vars FILE             JSON object of more template variables (tools, documents,\n"
    "                              enable_thinking, ...)\n"
    "      --list                  list the built-in templates and exit\n"
    "\n"
    "strftime_now() uses the local time, or SOURCE_DATE_EPOCH (seconds, UTC) when it is set.\n"
    "Example: llamita template --chat-template chatml --messages chat.json --add-generation-prompt\n";

/* Whole standard input, NUL-terminated, malloc'd. */
static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) die("out of memory reading standard input");
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) die("cannot read standard input: %s", strerror(errno ? errno : EIO));
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Parses the JSON file `path` ('-' = stdin); dies with the byte offset of a syntax error. */
static cJSON *read_json(const char *opt, const char *path) {
    size_t len;
    char *text = strcmp(path, "-") ? read_file(path, &len) : read_stdin(&len);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!j) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        free(text);
        die("%s '%s': invalid JSON at byte %zu", opt, path, at);
    }
    /* only whitespace may follow the value */
    for (const char *p = end; p && p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            size_t at = (size_t)(p - text);
            free(text);
            cJSON_Delete(j);
            die("%s '%s': unexpected data after the JSON value at byte %zu", opt, path, at);
        }
    free(text);
    return j;
}

static int cmd_template(int argc, char **argv) {
    const char *model_path = NULL, *tmpl_arg = NULL, *messages_path = NULL, *vars_path = NULL;
    const char *bos = NULL, *eos = NULL;
    bool agp = false;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(TEMPLATE_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model_path = v;
        else if (opt_val(&a, NULL, "--chat-template", &v)) tmpl_arg = v;
        else if (opt_val(&a, NULL, "--messages", &v)) messages_path = v;
        else if (opt_val(&a, NULL, "--vars", &v)) vars_path = v;
        else if (opt_val(&a, NULL, "--bos-token", &v)) bos = v;
        else if (opt_val(&a, NULL, "--eos-token", &v)) eos = v;
        else if (opt_flag(&a, NULL, "--add-generation-prompt")) agp = true;
        else if (opt_flag(&a, NULL, "--list")) {
            for (size_t i = 0; lm_chat_builtin_name(i); i++) printf("%s\n", lm_chat_builtin_name(i));
            return 0;
        } else usage_error("unknown option '%s' for 'template'", arg);
    }
    if (!model_path && !tmpl_arg) usage_error("give a model (-m MODEL) or a template (--chat-template NAME|FILE)");
    if (!messages_path) usage_error("missing --messages FILE.json");

    /* the template: a built-in name, else a file of Jinja source */
    char *tmpl_src = NULL;
    const char *tmpl = NULL;
    if (tmpl_arg) {
        if (lm_chat_builtin(tmpl_arg)) tmpl = tmpl_arg;
        else {
            FILE *f = fopen(tmpl_arg, "rb");
            if (!f) {
                char names[256] = "";
                for (size_t i = 0; lm_chat_builtin_name(i); i++)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", lm_chat_builtin_name(i));
                die("--chat-template '%s' is neither a built-in template (%s) nor a readable file: %s", tmpl_arg, names,
                    strerror(errno));
            }
            fclose(f);
            size_t len;
            tmpl_src = read_file(tmpl_arg, &len);
            if (memchr(tmpl_src, 0, len)) die("template file '%s' contains a NUL byte", tmpl_arg);
            if (lm_chat_builtin(tmpl_src)) die("template file '%s' holds only a built-in name; pass the name instead", tmpl_arg);
            tmpl = tmpl_src;
        }
    }

    cJSON *vars = vars_path ? read_json("--vars", vars_path) : cJSON_CreateObject();
    if (!vars) die("out of memory");
    if (!cJSON_IsObject(vars)) die("--vars '%s': expected a JSON object of variables", vars_path);
    cJSON *msgs = read_json("--messages", messages_path);
    if (!cJSON_IsArray(msgs)) die("--messages '%s': expected a JSON array of {\"role\": ..., \"content\": ...} objects", messages_path);
    cJSON_DeleteItemFromObjectCaseSensitive(vars, "messages");
    cJSON_AddItemToObject(vars, "messages", msgs);

    llamita_model *model = model_path ? load_model(model_path, true) : NULL;
    char err[2048] = "";
    size_t n = 0;
    char *out = lm_chat_apply(model, tmpl, vars, agp, bos, eos, &n, err, sizeof err);
    cJSON_Delete(vars);
    free(tmpl_src);
    if (model) llamita_model_free(model);
    if (!out) die("%s", err[0] ? err : "the template could not be rendered");
    bool ok = write_all(stdout, out, n) && fflush(stdout) == 0 && !ferror(stdout);
    free(out);
    if (!ok) die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    return 0;
}

const cli_command cli_cmd_template = {
    "template", "render a conversation with a chat template (prints the exact prompt)",
    "usage: llamita template (-m MODEL | --chat-template NAME|FILE) --messages FILE.json [--add-generation-prompt]; "
    "see 'llamita template --help'",
    TEMPLATE_HELP, cmd_template};
