/*
 * `llamita chat`: an interactive chat on the terminal (or driven through a pipe).
 *
 * Each turn renders the whole conversation with the model's chat template (or --chat-template)
 * through llamita_chat_completion(), which streams the answer as it is generated and reuses the KV
 * cache for the unchanged prefix of the conversation. When the conversation no longer fits the
 * context (with room for an answer), the oldest turns are dropped (the system message stays) and a
 * notice goes to stderr.
 *
 * Input: on a terminal, lines are read with line editing and history when libedit or GNU readline
 * can be loaded at run time (dlopen, so neither is a build dependency), else plainly; from a pipe,
 * plainly, one message per line, and no prompt is printed. stdout carries only the answers (each
 * followed by a newline); notices go to stderr.
 *
 * Ctrl-C while an answer is being generated stops that answer (it is kept in the conversation as
 * far as it got); Ctrl-C or Ctrl-D at the prompt ends the program (exit 0).
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "hub.h"
#include "llamita.h"

static const char CHAT_HELP[] =
    "usage: llamita chat -m MODEL [options]\n"
    "\n"
    "Chats with a model on the terminal: type a message, the answer streams as it is generated.\n"
    "The conversation is rendered with the model's chat template (tokenizer.chat_template).\n"
    "\n"
    "  -m, --model MODEL         GGUF file, or hf://ORG/NAME/FILE (downloaded to the Hugging Face cache)\n"
    "      --hf-repo ORG/NAME    model from the Hugging Face hub ...\n"
    "      --hf-file FILE        ... this file of it (a glob such as '*Q8_0.gguf'; default '*.gguf')\n"
    "      --system TEXT         system message\n"
    "      --chat-template T     a built-in template name (zephyr, chatml, llama2, llama3, mistral,\n"
    "                            gemma, phi3) or a file with a Jinja template (default: the model's)\n"
    "  -c, --ctx-size N          context size (default 0: the model's); older turns are dropped when\n"
    "                            the conversation no longer fits\n"
    "  -n, --n-predict N         at most N tokens per answer (default -1: until the end token or the\n"
    "                            context is full)\n"
    "  -t, --threads N           threads (default: physical cores)\n"
    "  -b, --batch-size N        prompt tokens per forward step (default 512)\n"
    "      --temp T              temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K             top-k (default 40; 0 = off)\n"
    "      --top-p P             top-p (default 0.95; 1 = off)\n"
    "      --min-p P             min-p (default 0.05; 0 = off)\n"
    "      --repeat-penalty R    repetition penalty (default 1.0 = off)\n"
    "      --repeat-last-n N     tokens the penalties look back over (default 64)\n"
    "      --frequency-penalty F (default 0)\n"
    "      --presence-penalty F  (default 0)\n"
    "  -s, --seed S              RNG seed (default -1: from the clock)\n"
    "      --ignore-eos          do not stop answers at end-of-generation tokens\n"
    "      --show-prompt         print each rendered prompt to stderr (for template debugging)\n"
    "\n"
    "Commands at the prompt:\n"
    "  /reset          start a new conversation (the system message stays)\n"
    "  /system TEXT    set the system message (/system alone removes it)\n"
    "  /exit           quit (also Ctrl-D, or Ctrl-C at the prompt)\n"
    "Ctrl-C while an answer is streaming stops that answer.\n";

/* ---------------------------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

/* SIGINT sets g_interrupted; without SA_RESTART, so a blocking read at the prompt returns. */
static void install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Line input: libedit / readline loaded at run time on a terminal, else getline
 * ------------------------------------------------------------------------------------------- */

typedef struct line_reader {
    bool tty;
    void *lib;                          /* dlopen handle of libedit / libreadline, or NULL */
    char *(*readline)(const char *);    /* malloc'd line without its newline, NULL at EOF */
    int (*add_history)(const char *);
    char *line;                         /* the last line from readline (freed on the next call) */
    char *buf;                          /* getline buffer */
    size_t cap;
} line_reader;

static void reader_open(line_reader *r) {
    memset(r, 0, sizeof *r);
    r->tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    if (!r->tty) return;
    static const char *libs[] = {"libedit.so.2", "libedit.so.0", "libedit.so", "libreadline.so.8",
                                 "libreadline.so.7", "libreadline.so"};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0] && !r->lib; i++) {
        void *h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        /* POSIX allows this conversion of dlsym's result */
        char *(*rl)(const char *);
        int (*ah)(const char *);
        *(void **)&rl = dlsym(h, "readline");
        *(void **)&ah = dlsym(h, "add_history");
        if (rl && ah) {
            r->lib = h;
            r->readline = rl;
            r->add_history = ah;
        } else {
            dlclose(h);
        }
    }
}

static void reader_close(line_reader *r) {
    free(r->line);
    free(r->buf);
    /* the library stays loaded: it may have registered atexit handlers (terminal restore) */
}

/* Reads one message line (malloc'd by the reader; valid until the next call), without its line
 * end. NULL at end of input or when Ctrl-C was pressed at the prompt. */
static const char *reader_next(line_reader *r) {
    free(r->line);
    r->line = NULL;
    if (g_interrupted) return NULL;
    if (r->readline) {
        char *l = r->readline("> ");
        if (!l || g_interrupted) {
            free(l);
            return NULL;
        }
        if (*l) r->add_history(l);
        r->line = l;
        return l;
    }
    if (r->tty) {
        fputs("> ", stdout);
        fflush(stdout);
    }
    errno = 0;
    ssize_t n = getline(&r->buf, &r->cap, stdin);
    if (n < 0 || g_interrupted) return NULL;
    while (n > 0 && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r')) r->buf[--n] = 0;
    return r->buf;
}

/* ---------------------------------------------------------------------------------------------
 * The conversation
 * ------------------------------------------------------------------------------------------- */

typedef struct chat_state {
    llamita_model *model;
    llamita_context *ctx;
    cJSON *messages;          /* [{"role", "content"}, ...]; a system message, if any, first */
    const char *tmpl;         /* --chat-template: name or Jinja source; NULL = the model's */
    int32_t n_ctx, n_predict;
    bool show_prompt;
    llamita_completion_params params;
} chat_state;

static void add_message(cJSON *arr, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", role) || !cJSON_AddStringToObject(m, "content", content))
        die("out of memory");
    cJSON_AddItemToArray(arr, m);
}

static bool has_system(const chat_state *s) {
    const cJSON *first = cJSON_GetArrayItem(s->messages, 0);
    const cJSON *role = first ? cJSON_GetObjectItemCaseSensitive(first, "role") : NULL;
    return cJSON_IsString(role) && !strcmp(role->valuestring, "system");
}

/* Drops every message but the system message. */
static void reset_conversation(chat_state *s) {
    const int keep = has_system(s) ? 1 : 0;
    while (cJSON_GetArraySize(s->messages) > keep) cJSON_DeleteItemFromArray(s->messages, keep);
}

static void set_system(chat_state *s, const char *text) {
    if (has_system(s)) cJSON_DeleteItemFromArray(s->messages, 0);
    if (!text || !*text) return;
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", "system") || !cJSON_AddStringToObject(m, "content", text))
        die("out of memory");
    if (!cJSON_InsertItemInArray(s->messages, 0, m)) {
        /* empty array: InsertItemInArray refuses index 0 in older cJSON versions */
        cJSON_AddItemToArray(s->messages, m);
    }
}

/* Renders the conversation (with the generation prompt) into a malloc'd string; dies on a template
 * error. */
static char *render(const chat_state *s) {
    char *json = cJSON_PrintUnformatted(s->messages);
    if (!json) die("out of memory");
    char err[1024] = "";
    char *text = llamita_chat_apply_template(s->model, s->tmpl, json, true, NULL, NULL, err, sizeof err);
    free(json);
    if (!text) die("chat template: %s", err[0] ? err : "rendering failed");
    return text;
}

/* Tokens the rendered prompt takes (as llamita_chat_completion counts them: a template that writes
 * the BOS text itself does not get a second BOS). */
static int32_t prompt_tokens(const chat_state *s, const char *text) {
    int32_t n = 0;
    llamita_token *t = tokenize_all(s->model, text, strlen(text), true, true, &n);
    const llamita_token bos = llamita_token_bos(s->model);
    if (n >= 2 && bos >= 0 && t[0] == bos && t[1] == bos) n--;
    free(t);
    return n;
}

/* Index of the first message after the system message, and of the first one after that turn (the
 * next "user" message, or the end). */
static void oldest_turn(const chat_state *s, int *from, int *to) {
    const int n = cJSON_GetArraySize(s->messages);
    *from = has_system(s) ? 1 : 0;
    int i = *from + 1;
    for (; i < n; i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(s->messages, i), "role");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "user")) break;
    }
    *to = i;
}

/* Tokens of the system message (if any) and the newest message alone. */
static int32_t minimal_tokens(const chat_state *s) {
    chat_state t = *s;
    t.messages = cJSON_CreateArray();
    if (!t.messages) die("out of memory");
    const int n = cJSON_GetArraySize(s->messages);
    if (has_system(s)) cJSON_AddItemToArray(t.messages, cJSON_Duplicate(cJSON_GetArrayItem(s->messages, 0), true));
    cJSON_AddItemToArray(t.messages, cJSON_Duplicate(cJSON_GetArrayItem(s->messages, n - 1), true));
    char *text = render(&t);
    const int32_t k = prompt_tokens(&t, text);
    free(text);
    cJSON_Delete(t.messages);
    return k;
}

/* Makes the conversation (ending with the new user message) fit the context with room for an
 * answer (n_ctx / 4 tokens, or -n), dropping the oldest turns; a notice goes to stderr. Returns
 * the rendered prompt, or NULL (the new message removed, nothing dropped) when the system message
 * and the new message alone do not leave a token to generate. */
static char *fit_conversation(chat_state *s) {
    const int32_t reserve = s->n_predict > 0 ? (s->n_predict < s->n_ctx / 2 ? s->n_predict : s->n_ctx / 2)
                                             : s->n_ctx / 4;
    int dropped = 0;
    for (;;) {
        char *text = render(s);
        const int32_t n = prompt_tokens(s, text);
        if (n + reserve <= s->n_ctx) {
            if (dropped)
                fprintf(stderr,
                        "llamita: the conversation no longer fits the context (n_ctx %d): dropped the %d oldest "
                        "message%s (the system message stays); the prompt is now %d tokens\n",
                        (int)s->n_ctx, dropped, dropped == 1 ? "" : "s", (int)n);
            return text;
        }
        free(text);
        const int n_msg = cJSON_GetArraySize(s->messages);
        if (!dropped) {
            const int32_t k = minimal_tokens(s);
            if (k >= s->n_ctx) {
                fprintf(stderr,
                        "llamita: this message does not fit the context (%d tokens, n_ctx %d); send a shorter "
                        "one, or use a larger -c\n",
                        (int)k, (int)s->n_ctx);
                cJSON_DeleteItemFromArray(s->messages, n_msg - 1);
                return NULL;
            }
        }
        int from, to;
        oldest_turn(s, &from, &to);
        if (to >= n_msg) { /* only the new message is left: answer in what room there is */
            text = render(s);
            if (dropped)
                fprintf(stderr,
                        "llamita: the conversation no longer fits the context (n_ctx %d): dropped the %d oldest "
                        "message%s (the system message stays)\n",
                        (int)s->n_ctx, dropped, dropped == 1 ? "" : "s");
            return text;
        }
        for (int i = from; i < to; i++) cJSON_DeleteItemFromArray(s->messages, from);
        dropped += to - from;
    }
}

/* Streams the content deltas of chat.completion.chunk objects to stdout. */
typedef struct stream_out {
    bool any;    /* something was printed */
    bool failed; /* stdout write error */
} stream_out;

static bool on_chunk(const char *json, void *user) {
    stream_out *o = user;
    cJSON *c = cJSON_Parse(json);
    const cJSON *ch = c ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "choices"), 0) : NULL;
    const cJSON *delta = ch ? cJSON_GetObjectItemCaseSensitive(ch, "delta") : NULL;
    const cJSON *content = delta ? cJSON_GetObjectItemCaseSensitive(delta, "content") : NULL;
    if (cJSON_IsString(content) && content->valuestring[0] && !o->failed) {
        size_t n = strlen(content->valuestring);
        if (!write_all(stdout, content->valuestring, n) || fflush(stdout) != 0) o->failed = true;
        o->any = true;
    }
    cJSON_Delete(c);
    return !g_interrupted && !o->failed;
}

/* One turn: the user's message is already the last message. */
static void answer(chat_state *s) {
    char *text = fit_conversation(s);
    if (!text) return;
    if (s->show_prompt) fprintf(stderr, "llamita: prompt:\n%s\nllamita: end of prompt\n", text);
    free(text);
    char *json = cJSON_PrintUnformatted(s->messages);
    if (!json) die("out of memory");
    g_interrupted = 0;
    stream_out out = {false, false};
    char err[1024] = "";
    char *res = llamita_chat_completion(s->ctx, json, &s->params, on_chunk, &out, err, sizeof err);
    free(json);
    if (out.failed) die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    if (!res) {
        fputc('\n', stdout);
        fflush(stdout);
        fprintf(stderr, "llamita: %s\n", err);
        cJSON_DeleteItemFromArray(s->messages, cJSON_GetArraySize(s->messages) - 1);
        return;
    }
    cJSON *r = cJSON_Parse(res);
    llamita_free(res);
    const cJSON *ch = r ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "choices"), 0) : NULL;
    const cJSON *msg = ch ? cJSON_GetObjectItemCaseSensitive(ch, "message") : NULL;
    const cJSON *content = msg ? cJSON_GetObjectItemCaseSensitive(msg, "content") : NULL;
    const cJSON *finish = ch ? cJSON_GetObjectItemCaseSensitive(ch, "finish_reason") : NULL;
    const cJSON *usage = r ? cJSON_GetObjectItemCaseSensitive(r, "usage") : NULL;
    const cJSON *total = usage ? cJSON_GetObjectItemCaseSensitive(usage, "total_tokens") : NULL;
    if (!cJSON_IsString(content)) die("internal error: unexpected completion object");
    fputc('\n', stdout);
    if (fflush(stdout) != 0) die("cannot write to standard output: %s", strerror(errno ? errno : EIO));
    add_message(s->messages, "assistant", content->valuestring);
    if (g_interrupted) {
        fprintf(stderr, "llamita: answer stopped (Ctrl-C)\n");
    } else if (cJSON_IsString(finish) && !strcmp(finish->valuestring, "length") && cJSON_IsNumber(total) &&
               total->valueint >= s->n_ctx) {
        fprintf(stderr, "llamita: the answer was cut: the context is full (n_ctx %d); older turns will be "
                        "dropped for the next message\n", (int)s->n_ctx);
    }
    g_interrupted = 0;
    cJSON_Delete(r);
}

/* --chat-template: the contents of a readable file, else the argument (a name or Jinja text). */
static char *template_arg(const char *v) {
    if (access(v, R_OK) == 0) {
        size_t len;
        char *t = read_file(v, &len);
        if (strlen(t) != len) die("chat template file '%s' contains a NUL byte", v);
        return t;
    }
    size_t n = strlen(v);
    char *c = xmalloc(n + 1);
    memcpy(c, v, n + 1);
    return c;
}

static int cmd_chat(int argc, char **argv) {
    const char *model_arg = NULL, *hf_repo = NULL, *hf_file = NULL, *system = NULL, *tmpl_arg = NULL;
    int32_t n_threads = 0, n_predict = -1;
    uint32_t n_ctx_req = 0, n_batch = llamita_context_default_params().n_batch;
    bool ignore_eos = false, show_prompt = false;
    llamita_sampler_params sp = llamita_sampler_default_params();
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(CHAT_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model_arg = v;
        else if (opt_val(&a, NULL, "--hf-repo", &v)) hf_repo = v;
        else if (opt_val(&a, NULL, "--hf-file", &v)) hf_file = v;
        else if (opt_val(&a, NULL, "--system", &v)) system = v;
        else if (opt_val(&a, NULL, "--chat-template", &v)) tmpl_arg = v;
        else if (opt_flag(&a, NULL, "--ignore-eos")) ignore_eos = true;
        else if (opt_flag(&a, NULL, "--show-prompt")) show_prompt = true;
        else if (opt_val(&a, "-n", "--n-predict", &v)) n_predict = (int32_t)parse_int(arg, v, -1, INT32_MAX);
        else if (opt_val(&a, NULL, "--temp", &v)) sp.temp = parse_float(arg, v, -1e30, 1e30);
        else if (opt_val(&a, NULL, "--top-k", &v)) sp.top_k = (int32_t)parse_int(arg, v, -1, INT32_MAX);
        else if (opt_val(&a, NULL, "--top-p", &v)) sp.top_p = parse_float(arg, v, 0.0, 1.0);
        else if (opt_val(&a, NULL, "--min-p", &v)) sp.min_p = parse_float(arg, v, 0.0, 1.0);
        else if (opt_val(&a, NULL, "--repeat-penalty", &v)) {
            sp.repeat_penalty = parse_float(arg, v, 0.0, 1e30);
            if (!(sp.repeat_penalty > 0.0f)) die("%s must be positive, got %s", arg, v);
        } else if (opt_val(&a, NULL, "--repeat-last-n", &v))
            sp.penalty_last_n = (int32_t)parse_int(arg, v, -1, INT32_MAX);
        else if (opt_val(&a, NULL, "--frequency-penalty", &v)) sp.frequency_penalty = parse_float(arg, v, -1e30, 1e30);
        else if (opt_val(&a, NULL, "--presence-penalty", &v)) sp.presence_penalty = parse_float(arg, v, -1e30, 1e30);
        else if (opt_val(&a, "-s", "--seed", &v)) sp.seed = parse_seed(arg, v);
        else if (opt_val(&a, "-t", "--threads", &v)) n_threads = (int32_t)parse_int(arg, v, -1, 4096);
        else if (opt_val(&a, "-c", "--ctx-size", &v)) n_ctx_req = (uint32_t)parse_int(arg, v, 0, INT32_MAX);
        else if (opt_val(&a, "-b", "--batch-size", &v)) n_batch = (uint32_t)parse_int(arg, v, 1, INT32_MAX);
        else usage_error("unknown option '%s' for 'chat'", arg);
    }
    if (!model_arg && !hf_repo) usage_error("missing -m MODEL (or --hf-repo ORG/NAME)");
    if (model_arg && hf_repo) usage_error("give either -m or --hf-repo, not both");
    if (hf_file && !hf_repo) usage_error("--hf-file needs --hf-repo");
    if (n_threads < 0) n_threads = 0;

    /* the model file */
    char *path;
    {
        char err[1024] = "";
        path = lm_resolve_model_arg(model_arg, hf_repo, hf_file, err, sizeof err);
        if (!path) die("%s", err);
    }
    chat_state s;
    memset(&s, 0, sizeof s);
    s.model = load_model(path, false);
    const int32_t n_ctx_train = llamita_model_n_ctx_train(s.model);
    if (n_ctx_req == 0) n_ctx_req = n_ctx_train > 0 ? (uint32_t)n_ctx_train : 0;
    if (n_ctx_req == 0) die("the model has no context length; give one with -c N");
    if (n_ctx_req < 8) die("-c %u is too small for a chat", (unsigned)n_ctx_req);
    if (n_ctx_train > 0 && n_ctx_req > (uint32_t)n_ctx_train)
        warn("n_ctx %u is larger than the model's training context (%d); quality may degrade", (unsigned)n_ctx_req,
             (int)n_ctx_train);
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = n_ctx_req;
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    char err[1024] = "";
    s.ctx = llamita_context_new(s.model, cp, err, sizeof err);
    if (!s.ctx) die("cannot create the context (n_ctx %u): %s", (unsigned)n_ctx_req, err);
    s.n_ctx = (int32_t)(llamita_n_ctx(s.ctx) < n_ctx_req ? llamita_n_ctx(s.ctx) : n_ctx_req);
    s.n_predict = n_predict;
    s.show_prompt = show_prompt;
    char *tmpl = tmpl_arg ? template_arg(tmpl_arg) : NULL;
    s.tmpl = tmpl;
    s.params = llamita_completion_default_params();
    s.params.max_tokens = n_predict; /* <= 0: until the end token or the context is full */
    s.params.sampling = sp;
    s.params.ignore_eos = ignore_eos;
    s.params.chat_template = tmpl;
    s.params.model_name = path;
    s.messages = cJSON_CreateArray();
    if (!s.messages) die("out of memory");

    /* the template must render a conversation before we start */
    add_message(s.messages, "user", "Hello");
    free(render(&s));
    reset_conversation(&s);
    if (system) set_system(&s, system);

    line_reader rd;
    reader_open(&rd);
    install_sigint(); /* before the banner: a test (or user) may press Ctrl-C as soon as it shows */
    fprintf(stderr, "llamita chat: %s (%s), n_ctx %d. Commands: /reset, /system TEXT, /exit. "
                    "Ctrl-C stops an answer; Ctrl-D (or Ctrl-C at the prompt) quits.\n",
            path, llamita_model_desc(s.model), (int)s.n_ctx);
    for (;;) {
        const char *line = reader_next(&rd); /* NULL also after Ctrl-C at the prompt */
        if (!line) {
            if (rd.tty) fputc('\n', stdout);
            break;
        }
        if (!*line) continue;
        if (line[0] == '/') {
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
            if (!strcmp(line, "/reset")) {
                reset_conversation(&s);
                fprintf(stderr, "llamita: conversation reset\n");
            } else if (!strcmp(line, "/system") || !strncmp(line, "/system ", 8)) {
                const char *t = line[7] ? line + 8 : "";
                set_system(&s, t);
                fprintf(stderr, *t ? "llamita: system message set\n" : "llamita: system message removed\n");
            } else if (!strcmp(line, "/help")) {
                fprintf(stderr, "commands: /reset, /system TEXT, /exit\n");
            } else {
                fprintf(stderr, "llamita: unknown command '%s' (commands: /reset, /system TEXT, /exit)\n", line);
            }
            continue;
        }
        add_message(s.messages, "user", line);
        answer(&s);
    }
    fflush(stdout);
    reader_close(&rd);
    cJSON_Delete(s.messages);
    free(tmpl);
    llamita_context_free(s.ctx);
    llamita_model_free(s.model);
    free(path);
    return 0;
}

const cli_command cli_cmd_chat = {
    "chat", "chat with a model interactively (chat template, streaming, /reset /system /exit)",
    "usage: llamita chat -m MODEL [--system TEXT] [-c N] [--chat-template T] [...]; see 'llamita chat --help'",
    CHAT_HELP, cmd_chat};
