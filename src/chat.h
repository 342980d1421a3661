/*
 * Chat templates: a Jinja-subset interpreter (src/chat.c) that renders a model's
 * tokenizer.chat_template the way Hugging Face transformers' apply_chat_template does with Python
 * jinja2 (ImmutableSandboxedEnvironment, trim_blocks=True, lstrip_blocks=True, loop controls, the
 * {% generation %} tag, tojson as json.dumps with ensure_ascii=False, raise_exception and
 * strftime_now globals), plus the built-in fallback templates.
 *
 * The public entry point is llamita_chat_apply_template (include/llamita.h); these internal helpers
 * let other modules (generate.c, the CLI, tests) render with more variables and query the built-ins.
 */
#ifndef LM_CHAT_H
#define LM_CHAT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llamita.h"

struct cJSON;

/* Resource limits of one render. A template that exceeds one fails with an error naming the limit;
 * nothing crashes, however hostile the template. */
typedef struct lm_chat_limits {
    size_t max_output;   /* bytes of rendered text (default 64 MiB) */
    size_t max_memory;   /* bytes of interpreter memory: AST, values, strings (default 256 MiB) */
    uint64_t max_steps;  /* statements + loop iterations + macro calls (default 20 million) */
    int max_depth;       /* macro call depth / value nesting while printing (default 200) */
    int64_t now;         /* strftime_now's clock, seconds since the epoch (UTC); -1 = the environment
                            variable SOURCE_DATE_EPOCH when set (reproducible renders, UTC), else the
                            local time now */
} lm_chat_limits;

lm_chat_limits lm_chat_default_limits(void);

/* Renders the Jinja source tmpl[0..tmpl_len) with the variables of `vars`, a cJSON object (each
 * member becomes a template variable: messages, add_generation_prompt, bos_token, eos_token, tools,
 * ...; NULL = none). JSON numbers without a fractional part become integers. lim NULL = defaults.
 * Returns the text (malloc'd, NUL-terminated; *out_len its length, may be NULL), or NULL with a
 * message in err: for raise_exception(msg) exactly msg; for a syntax error
 * "template syntax error at LINE:COL: ..."; for other runtime errors "template error at LINE:COL: ...". */
char *lm_chat_render(const char *tmpl, size_t tmpl_len, const struct cJSON *vars, const lm_chat_limits *lim,
                     size_t *out_len, char *err, size_t err_size);

/* llamita_chat_apply_template with the variables in a cJSON object: vars holds "messages" and any
 * extra variables a template may use (tools, documents, enable_thinking, ...; NULL = none);
 * add_generation_prompt, bos_token and eos_token are set from the arguments (NULL token = the
 * model's text, "" without a model), replacing members of those names. tmpl as in
 * llamita_chat_apply_template (NULL = the model's). Returns malloc'd text, *out_len its length
 * (the text may contain NUL bytes), or NULL with err. */
char *lm_chat_apply(const llamita_model *model, const char *tmpl, const struct cJSON *vars, bool add_generation_prompt,
                    const char *bos_token, const char *eos_token, size_t *out_len, char *err, size_t err_size);

/* Built-in templates: "zephyr", "chatml", "llama2", "llama3", "mistral", "gemma", "phi3".
 * lm_chat_builtin returns the Jinja source of a name (case-sensitive), NULL if unknown.
 * lm_chat_builtin_name(i) enumerates the names (NULL after the last). */
const char *lm_chat_builtin(const char *name);
const char *lm_chat_builtin_name(size_t i);

/* The built-in a model without a chat template falls back to, guessed from its vocabulary:
 * "<|im_start|>" -> chatml, "<|start_header_id|>" -> llama3, "<start_of_turn>" -> gemma,
 * "<|user|>" with "<|end|>" -> phi3, a "[INST]" token -> mistral, otherwise zephyr (NULL model too). */
const char *lm_chat_guess_builtin(const llamita_model *model);

/* The model's tokenizer.chat_template (not NUL-terminated; *len its length), or NULL when it has
 * none (or it is not a string). */
const char *lm_chat_model_template(const llamita_model *model, size_t *len);
#endif
