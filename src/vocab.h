/*
 * Tokenizer. tokenizer.ggml.model = "llama": SentencePiece BPE by scores, with the "▁" space
 * marker, the space prefix, byte fallback <0xNN>, unknown token, BOS/EOS by add_bos/add_eos, and
 * optional parsing of control tokens written in the text. Other models give
 * "unsupported tokenizer model X".
 *
 * The public functions llamita_tokenize / llamita_token_to_piece / llamita_detokenize /
 * llamita_token_* / llamita_utf8_complete_len are implemented in vocab.c on top of this.
 */
#ifndef LM_VOCAB_H
#define LM_VOCAB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Token attributes, from tokenizer.ggml.token_type (llama.cpp/sentencepiece numbering). */
enum lm_token_type {
    LM_TOKEN_UNDEFINED = 0,
    LM_TOKEN_NORMAL = 1,
    LM_TOKEN_UNKNOWN = 2,
    LM_TOKEN_CONTROL = 3,
    LM_TOKEN_USER_DEFINED = 4,
    LM_TOKEN_UNUSED = 5,
    LM_TOKEN_BYTE = 6,
};

typedef struct lm_vocab lm_vocab;

/* Reads tokenizer.ggml.* from g (token texts are copied, NUL-terminated, so the vocab does not depend
 * on g afterwards). NULL on error, message in err: missing/mismatched arrays, an unsupported
 * tokenizer model ("unsupported tokenizer model 'gpt2'"), duplicate token texts (llama.cpp aborts
 * on those), special-id keys of a non-integer type. Special ids outside the vocabulary (such as
 * 0xFFFFFFFF) are ignored and the SPM defaults (bos 1, eos 2, unk 0) kept, as llama.cpp does. */
lm_vocab *lm_vocab_load(const lm_gguf *g, char *err, size_t err_size);
void lm_vocab_free(lm_vocab *v);

int32_t lm_vocab_n_tokens(const lm_vocab *v);
int32_t lm_vocab_bos(const lm_vocab *v); /* -1 if none (also for eos, unk) */
int32_t lm_vocab_eos(const lm_vocab *v);
int32_t lm_vocab_unk(const lm_vocab *v);
bool lm_vocab_add_bos(const lm_vocab *v); /* add_bos_token (default true) and a BOS id exists */
bool lm_vocab_add_eos(const lm_vocab *v); /* add_eos_token (default false) and an EOS id exists */
bool lm_vocab_is_eog(const lm_vocab *v, int32_t id);
enum lm_token_type lm_vocab_token_type(const lm_vocab *v, int32_t id);
const char *lm_vocab_token_text(const lm_vocab *v, int32_t id); /* NUL-terminated, owned by v; NULL if
                                                                   id is out of range */

/* Same contracts as llamita_tokenize / llamita_token_to_piece / llamita_detokenize, with text_len
 * a size_t (no strlen). Details that follow llama.cpp: token_to_piece renders ids outside the
 * vocabulary, UNUSED and UNDEFINED tokens as nothing (0); detokenize's remove_special drops a
 * leading BOS only when add_bos is set (and then keeps the next piece's leading space) and a
 * trailing EOS only when add_eos is set. For tokenize/detokenize, invalid arguments (NULL with a
 * non-zero length, negative sizes, no vocab) give INT32_MIN; token_to_piece treats a NULL buf as
 * len 0. tokenize also gives INT32_MIN when a byte has no token to fall back to (no <0xNN>, no
 * single-byte token, no UNK) or memory runs out. */
int32_t lm_tokenize(const lm_vocab *v, const char *text, size_t len, int32_t *out, int32_t n_max,
                    bool add_special, bool parse_special);
int32_t lm_token_to_piece(const lm_vocab *v, int32_t id, char *buf, int32_t len, int32_t lstrip,
                          bool special);
int32_t lm_detokenize(const lm_vocab *v, const int32_t *ids, int32_t n, char *text, int32_t max,
                      bool remove_special, bool unparse_special);
#endif
