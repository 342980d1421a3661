/*
 * llamita — a small, fast, dependable LLM engine for Llama-architecture GGUF models.
 *
 * Public C API. Every symbol is prefixed `llamita_`; every object is opaque.
 *
 * Ownership and lifetimes
 *  - A llamita_model owns the memory map of its GGUF file; all strings and tensors it hands out stay
 *    valid until llamita_model_free(). Free every context made from a model before the model.
 *  - A llamita_context owns its KV cache, scratch buffers and logits; a logits pointer it returns is
 *    valid until the next llamita_decode() on that context or its free.
 *  - A llamita_sampler owns its candidate buffer and penalty history; it is independent of any
 *    context and may be used with any logits of the vocabulary size it was made for.
 *  - llamita_*_free(NULL) is a no-op.
 *  - There is no global state: several models and several contexts per model may be used at the
 *    same time, each context from one thread at a time.
 *
 * Errors
 *  - Functions that can fail take `char *err, size_t err_size`. On failure they write one line
 *    (no trailing newline) naming what was wrong and where (file, key, tensor, byte offset, token
 *    position) into err (when err != NULL and err_size > 0), and return NULL or a negative value.
 *  - Library code never exits the process and never aborts on bad input.
 */
#ifndef LLAMITA_H
#define LLAMITA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LLAMITA_API __attribute__((visibility("default")))
#else
#define LLAMITA_API
#endif

typedef int32_t llamita_token;
typedef int32_t llamita_pos;
typedef int32_t llamita_seq_id;

typedef struct llamita_model llamita_model;
typedef struct llamita_context llamita_context;
typedef struct llamita_sampler llamita_sampler;

#define LLAMITA_TOKEN_NULL (-1)

/* ------------------------------------------------------------------------------------------------
 * Model
 * ---------------------------------------------------------------------------------------------- */

typedef struct llamita_model_params {
    int32_t n_gpu_layers; /* layers to offload; no GPU backend yet, so > 0 only warns (default 0) */
    bool vocab_only;      /* load metadata and tokenizer only, no weights checked (default false) */
    bool verbose;         /* print load information to stderr (default false) */
} llamita_model_params;

LLAMITA_API llamita_model_params llamita_model_default_params(void);

/* Opens and memory-maps a GGUF file, checks it, and reads a Llama-architecture model from it.
 * Returns NULL on failure with the reason in err. The weights are never copied. */
LLAMITA_API llamita_model *llamita_model_load(const char *path, llamita_model_params params,
                                              char *err, size_t err_size);
LLAMITA_API void llamita_model_free(llamita_model *model);

/* Hyperparameters. */
LLAMITA_API int32_t llamita_model_n_vocab(const llamita_model *model);
LLAMITA_API int32_t llamita_model_n_ctx_train(const llamita_model *model);
LLAMITA_API int32_t llamita_model_n_embd(const llamita_model *model);
LLAMITA_API int32_t llamita_model_n_layer(const llamita_model *model);
LLAMITA_API int32_t llamita_model_n_head(const llamita_model *model);
LLAMITA_API int32_t llamita_model_n_head_kv(const llamita_model *model);
LLAMITA_API uint64_t llamita_model_n_params(const llamita_model *model);
LLAMITA_API uint64_t llamita_model_size(const llamita_model *model); /* bytes of tensor data */
/* A short description such as "llama 1.1B Q8_0"; valid for the model's lifetime. */
LLAMITA_API const char *llamita_model_desc(const llamita_model *model);

/* Metadata. Keys and values as in the GGUF file; values rendered as text (arrays as
 * "[a, b, ...]" abbreviated after 8 elements, strings without quotes). The returned pointers are
 * owned by the model. Index i in [0, llamita_model_meta_count()). */
LLAMITA_API int32_t llamita_model_meta_count(const llamita_model *model);
LLAMITA_API const char *llamita_model_meta_key(const llamita_model *model, int32_t i);
/* Writes the value as text into buf (always NUL-terminated when buf_size > 0). Returns the length of
 * the full text (like snprintf), or -1 when the key is absent. */
LLAMITA_API int32_t llamita_model_meta_val_str(const llamita_model *model, const char *key,
                                               char *buf, size_t buf_size);

/* Tensor table, for `llamita info`. ne[0] is the row length (ggml order); unused dims are 1. */
typedef struct llamita_tensor_info {
    const char *name;      /* owned by the model */
    const char *type_name; /* "F32", "Q4_K", ... (static) */
    int32_t n_dims;
    int64_t ne[4];
    uint64_t offset; /* byte offset of the data from the start of the file */
    uint64_t nbytes;
} llamita_tensor_info;
LLAMITA_API int32_t llamita_model_n_tensors(const llamita_model *model);
LLAMITA_API int llamita_model_tensor_info(const llamita_model *model, int32_t i,
                                          llamita_tensor_info *info);

/* ------------------------------------------------------------------------------------------------
 * Vocabulary
 * ---------------------------------------------------------------------------------------------- */

LLAMITA_API llamita_token llamita_token_bos(const llamita_model *model); /* LLAMITA_TOKEN_NULL if none */
LLAMITA_API llamita_token llamita_token_eos(const llamita_model *model);
/* True for tokens that end generation (EOS, EOT, ...). */
LLAMITA_API bool llamita_token_is_eog(const llamita_model *model, llamita_token token);
LLAMITA_API bool llamita_add_bos(const llamita_model *model); /* tokenizer.ggml.add_bos_token */
LLAMITA_API bool llamita_add_eos(const llamita_model *model);
/* The token's text in the vocabulary (e.g. "▁Hello", "<0x0A>", "</s>"); owned by the model.
 * Returns NULL when token is out of range. */
LLAMITA_API const char *llamita_token_get_text(const llamita_model *model, llamita_token token);

/* Converts text (text_len bytes, or strlen(text) when text_len < 0) into token ids.
 *  add_special:   add BOS/EOS as the model's add_bos_token/add_eos_token say.
 *  parse_special: recognise control tokens written in the text (such as "</s>") as single tokens
 *                 (user-defined tokens written in the text are always matched, as in llama.cpp).
 * Returns the number of tokens written; if n_tokens_max is too small, returns minus the number
 * needed and writes nothing useful. Returns INT32_MIN on error (invalid arguments). */
LLAMITA_API int32_t llamita_tokenize(const llamita_model *model, const char *text, int32_t text_len,
                                     llamita_token *tokens, int32_t n_tokens_max, bool add_special,
                                     bool parse_special);

/* The text of one token: normal pieces with "▁" as space, byte tokens <0xNN> as the raw byte,
 * control tokens only when `special` is true (else empty). `lstrip` removes up to that many leading
 * spaces. Ids outside the vocabulary and UNUSED/UNDEFINED tokens give 0 bytes; UNKNOWN tokens are
 * treated like control tokens; user-defined tokens are always written. Returns the number of bytes written (no NUL is added), or minus the number needed when
 * len is too small. */
LLAMITA_API int32_t llamita_token_to_piece(const llamita_model *model, llamita_token token,
                                           char *buf, int32_t len, int32_t lstrip, bool special);

/* Joins pieces of tokens into text (no NUL added). remove_special drops a leading BOS only when the
 * model's add_bos is set (the next piece then keeps its leading space) and a trailing EOS only when
 * add_eos is set, as llama.cpp does; unparse_special renders control tokens as their text. Like SentencePiece, the space
 * that the tokenizer prefixes to the first word is removed (when the model's add_space_prefix is
 * set and the first piece starts with a space). Returns bytes written or minus bytes needed, or
 * INT32_MIN on invalid arguments. */
LLAMITA_API int32_t llamita_detokenize(const llamita_model *model, const llamita_token *tokens,
                                       int32_t n_tokens, char *text, int32_t text_len_max,
                                       bool remove_special, bool unparse_special);

/* For streaming: the length of the longest prefix of buf[0..len) that does not end inside an
 * incomplete UTF-8 sequence. Print that prefix, keep the rest until more bytes arrive. Invalid bytes
 * count as complete (they are printed as they are rather than held forever). */
LLAMITA_API size_t llamita_utf8_complete_len(const char *buf, size_t len);

/* ------------------------------------------------------------------------------------------------
 * Context: KV cache + forward pass
 * ---------------------------------------------------------------------------------------------- */

typedef struct llamita_context_params {
    uint32_t n_ctx;     /* KV cache size in tokens; 0 = the model's context length (default 0) */
    uint32_t n_batch;   /* max tokens evaluated per forward step; larger batches are split (512) */
    int32_t n_threads;  /* 0 = number of physical cores (default 0) */
    uint32_t n_seq_max; /* number of independent sequences sharing the cache (default 1) */
} llamita_context_params;

LLAMITA_API llamita_context_params llamita_context_default_params(void);

/* Creates a context with its own KV cache. Returns NULL on failure (e.g. out of memory). A n_ctx larger
 * than the model's training context is allowed (a warning is printed when model params verbose). */
LLAMITA_API llamita_context *llamita_context_new(llamita_model *model, llamita_context_params params,
                                                 char *err, size_t err_size);
LLAMITA_API void llamita_context_free(llamita_context *ctx);
LLAMITA_API uint32_t llamita_n_ctx(const llamita_context *ctx);
LLAMITA_API const llamita_model *llamita_context_model(const llamita_context *ctx);

/* A batch of tokens to evaluate. Token i goes to sequence seq_id[i] at position pos[i];
 * logits[i] != 0 asks for that token's output logits. */
typedef struct llamita_batch {
    int32_t n_tokens;
    llamita_token *token;    /* [n_tokens] */
    llamita_pos *pos;        /* [n_tokens] */
    llamita_seq_id *seq_id;  /* [n_tokens] */
    int8_t *logits;          /* [n_tokens] */
} llamita_batch;

/* Allocates a batch with room for n_tokens_max tokens (n_tokens = 0). Free with llamita_batch_free. */
LLAMITA_API llamita_batch llamita_batch_init(int32_t n_tokens_max);
LLAMITA_API void llamita_batch_free(llamita_batch batch);
/* Appends one token to a batch made by llamita_batch_init (caller keeps within n_tokens_max). */
LLAMITA_API void llamita_batch_add(llamita_batch *batch, llamita_token token, llamita_pos pos,
                                   llamita_seq_id seq_id, bool logits);

/* Evaluates a batch: writes its K/V into the cache and computes logits for the flagged tokens.
 * Tokens of one sequence must come in increasing position order; position p of sequence s must
 * not already be in the cache. Batches larger than n_batch are processed in n_batch chunks.
 * Returns 0 on success, a negative value on error (context full, bad token id, bad position or
 * sequence id), leaving the cache as it was before the call. */
LLAMITA_API int llamita_decode(llamita_context *ctx, const llamita_batch *batch, char *err,
                               size_t err_size);

/* Convenience: evaluates tokens[0..n) for sequence 0 at positions following what the cache holds
 * for it, with logits for the last token (or for every token when all_logits is true). */
LLAMITA_API int llamita_decode_tokens(llamita_context *ctx, const llamita_token *tokens, int32_t n,
                                      bool all_logits, char *err, size_t err_size);

/* Logits (n_vocab floats) of the i-th token of the last decoded batch that had logits requested,
 * counted among those tokens; negative i counts from the end (-1 = last). NULL if out of range. */
LLAMITA_API float *llamita_get_logits_ith(llamita_context *ctx, int32_t i);
/* Number of logit rows produced by the last decode. */
LLAMITA_API int32_t llamita_n_outputs(const llamita_context *ctx);

/* KV cache management. */
LLAMITA_API void llamita_kv_clear(llamita_context *ctx);
/* Removes positions [p0, p1) of sequence seq (p1 < 0: to the end; seq < 0: every sequence). */
LLAMITA_API void llamita_kv_seq_rm(llamita_context *ctx, llamita_seq_id seq, llamita_pos p0,
                                   llamita_pos p1);
/* Copies the cells of sequence src with positions in [p0, p1) (p0 < 0: from 0; p1 < 0: to the end)
 * to sequence dst, keys and values included, so that a prefix evaluated once can be continued by
 * several sequences. What dst held in that range is dropped first. Returns 0, or -1 with a message
 * (bad sequence id, not enough free cells), the cache unchanged then. */
LLAMITA_API int llamita_kv_seq_cp(llamita_context *ctx, llamita_seq_id src, llamita_seq_id dst,
                                  llamita_pos p0, llamita_pos p1, char *err, size_t err_size);
/* Largest position held for seq, or -1 if none. */
LLAMITA_API llamita_pos llamita_kv_seq_pos_max(const llamita_context *ctx, llamita_seq_id seq);
/* Number of cells in use, over all sequences. */
LLAMITA_API int32_t llamita_kv_used(const llamita_context *ctx);

/* ------------------------------------------------------------------------------------------------
 * Sampling
 * ---------------------------------------------------------------------------------------------- */

/* The chain, applied in this order: repetition penalties (repeat, frequency, presence over the last
 * penalty_last_n accepted tokens) -> top-k -> top-p -> min-p -> temperature -> seeded draw.
 * temp <= 0 is greedy (argmax, lowest id on ties) after the penalties. Defaults follow
 * llama-cpp-python's create_completion. */
typedef struct llamita_sampler_params {
    float temp;              /* 0.8 */
    int32_t top_k;           /* 40; <= 0 disables */
    float top_p;             /* 0.95; >= 1 disables */
    float min_p;             /* 0.05; <= 0 disables */
    float repeat_penalty;    /* 1.0 (off) */
    float frequency_penalty; /* 0.0 */
    float presence_penalty;  /* 0.0 */
    int32_t penalty_last_n;  /* 64; 0 disables the penalties, -1 = whole history kept */
    uint64_t seed;           /* LLAMITA_DEFAULT_SEED picks one from the clock */
} llamita_sampler_params;

#define LLAMITA_DEFAULT_SEED UINT64_MAX

LLAMITA_API llamita_sampler_params llamita_sampler_default_params(void);
/* Creates a sampler for logits of n_vocab entries; allocates all it needs up front. */
LLAMITA_API llamita_sampler *llamita_sampler_new(const llamita_sampler_params *params, int32_t n_vocab,
                                                 char *err, size_t err_size);
LLAMITA_API void llamita_sampler_free(llamita_sampler *smpl);
/* Picks the next token from logits[n_vocab]. Does not modify logits. */
LLAMITA_API llamita_token llamita_sampler_sample(llamita_sampler *smpl, const float *logits);
/* Records a token (prompt or generated) in the penalty history. */
LLAMITA_API void llamita_sampler_accept(llamita_sampler *smpl, llamita_token token);
/* Clears the penalty history and re-seeds the RNG with seed (LLAMITA_DEFAULT_SEED keeps the
 * current stream). */
LLAMITA_API void llamita_sampler_reset(llamita_sampler *smpl, uint64_t seed);

/* ------------------------------------------------------------------------------------------------
 * Chat templates (src/chat.c)
 * ---------------------------------------------------------------------------------------------- */

/* Renders a conversation to a prompt with a Jinja chat template.
 *  messages_json: a JSON array of {"role": "...", "content": "..."} objects.
 *  tmpl: NULL = the model's tokenizer.chat_template (model may be NULL only if tmpl is given);
 *        a built-in name ("zephyr", "chatml", "llama2", "llama3", "mistral", "gemma", "phi3");
 *        or Jinja source text (anything else). A model without a template falls back to a built-in
 *        guessed from its vocabulary (chatml when it has "<|im_start|>", else zephyr... see chat.c).
 *  bos_token / eos_token: the template variables; NULL = the model's BOS/EOS text ("" without model).
 * Returns the rendered text, malloc'd (free with llamita_free), or NULL with err: a template that
 * calls raise_exception gives its message; a syntax error names the line and column. */
LLAMITA_API char *llamita_chat_apply_template(const llamita_model *model, const char *tmpl,
                                              const char *messages_json, bool add_generation_prompt,
                                              const char *bos_token, const char *eos_token,
                                              char *err, size_t err_size);

/* ------------------------------------------------------------------------------------------------
 * Completions in the OpenAI / llama-cpp-python shapes (src/generate.c)
 * ---------------------------------------------------------------------------------------------- */

typedef struct llamita_completion_params {
    int32_t max_tokens;       /* <= 0: until the context is full (default 16, as create_completion) */
    const char *const *stop;  /* n_stop stop strings (may span tokens; never emitted) */
    int32_t n_stop;
    bool echo;                /* prepend the prompt to the text (text completions) */
    int32_t logprobs;         /* < 0: "logprobs": null; N >= 0: top-N logprobs per token */
    bool ignore_eos;          /* do not stop at EOS / end-of-generation tokens */
    llamita_sampler_params sampling; /* seed included; LLAMITA_DEFAULT_SEED = from the clock */
    const char *model_name;   /* the "model" field; NULL = the model file's path */
    const char *chat_template;/* chat completions: as llamita_chat_apply_template's tmpl */
} llamita_completion_params;

LLAMITA_API llamita_completion_params llamita_completion_default_params(void);

/* Called for each streamed chunk (a JSON object text: "text_completion" chunks for completions,
 * "chat.completion.chunk" for chat). Return false to stop generation (finish_reason "stop"). */
typedef bool (*llamita_chunk_cb)(const char *chunk_json, void *user);

/* Runs a text completion on sequence 0 of ctx (the cache is reused for a common prefix with the
 * previous call, otherwise cleared). Returns the "text_completion" object as JSON text (malloc'd,
 * free with llamita_free): id "cmpl-...", object, created, model,
 * choices[{text, index, logprobs, finish_reason}], usage{prompt_tokens, completion_tokens,
 * total_tokens}. With on_chunk != NULL, chunks are streamed as they are produced and the final
 * object is still returned. NULL with err on failure (e.g. prompt longer than the context). */
LLAMITA_API char *llamita_completion(llamita_context *ctx, const char *prompt,
                                     const llamita_completion_params *params,
                                     llamita_chunk_cb on_chunk, void *user, char *err, size_t err_size);

/* Chat completion: messages_json as in llamita_chat_apply_template; returns a "chat.completion"
 * object (choices[{index, message{role, content}, logprobs, finish_reason}], usage); streams
 * "chat.completion.chunk" objects to on_chunk (first a delta with the role, then content deltas,
 * then an empty delta with finish_reason). */
LLAMITA_API char *llamita_chat_completion(llamita_context *ctx, const char *messages_json,
                                          const llamita_completion_params *params,
                                          llamita_chunk_cb on_chunk, void *user, char *err,
                                          size_t err_size);

/* Frees memory returned by llamita (strings from the functions above). NULL is a no-op. */
LLAMITA_API void llamita_free(void *p);

/* ------------------------------------------------------------------------------------------------
 * Hugging Face hub (src/hub.c)
 * ---------------------------------------------------------------------------------------------- */

/* Finds repo_id's file in the local Hugging Face cache ($HF_HOME/hub or ~/.cache/huggingface/hub,
 * huggingface_hub's layout) or downloads it ($HF_ENDPOINT, default https://huggingface.co; token
 * from $HF_TOKEN; $HF_HUB_OFFLINE=1 = cache only). filename may be a glob ("*Q8_0.gguf"): exactly one
 * file of the repo must match, else the error lists the candidates. revision NULL = "main".
 * progress: show a progress bar on stderr when it is a terminal. Returns the snapshot path
 * (malloc'd, free with llamita_free) or NULL with err (401, 404, network failure, bad checksum...). */
LLAMITA_API char *llamita_hf_download(const char *repo_id, const char *filename, const char *revision,
                                      bool progress, char *err, size_t err_size);

/* ------------------------------------------------------------------------------------------------
 * Misc
 * ---------------------------------------------------------------------------------------------- */

LLAMITA_API const char *llamita_version(void);
/* Number of physical cores (the default thread count). */
LLAMITA_API int32_t llamita_n_physical_cores(void);

#ifdef __cplusplus
}
#endif
#endif /* LLAMITA_H */
