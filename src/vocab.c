/*
 * Tokenizer for tokenizer.ggml.model = "llama" (SentencePiece BPE by piece scores, what llama.cpp
 * calls SPM), written to produce exactly the ids llama.cpp's llama_tokenize produces (checked against
 * llama.cpp's own test vocabularies and the fixtures dumps, see tests/test_vocab.c).
 *
 * Tokenization of a text, step by step:
 *  1. Special-token partition. The "special" tokens are those of type CONTROL, USER_DEFINED or
 *     UNKNOWN. Taking them longest text first, every occurrence of a special token's text inside a
 *     not-yet-tokenized text fragment splits that fragment into [left text][token][right text].
 *     With parse_special == false, CONTROL and UNKNOWN tokens are not searched for, but
 *     USER_DEFINED tokens still are (llama.cpp follows HF tokenizers there). Tokens with the
 *     LSTRIP / RSTRIP attribute (only set for Phi-3 vocabularies, by general.name, as llama.cpp
 *     does) eat the whitespace to their left / right.
 *  2. Space prefix rule (as llama.cpp): a text fragment gets a " " prepended when add_space_prefix
 *     is set and the fragment is the first thing of the output or follows a special token (BOS
 *     included). So "<s>hi" with parse_special gives [<s>, "▁hi"], and "hi</s>ho" gives
 *     ["▁hi", </s>, "▁ho"]. An empty text adds no prefix (no fragment at all).
 *  3. Every ' ' becomes U+2581 "▁"; the fragment is split into UTF-8 characters (the length of a
 *     character is taken from its first byte alone, so invalid UTF-8 yields odd-sized pieces, as
 *     in llama.cpp), and adjacent pieces are merged greedily: always the adjacent pair whose
 *     concatenation is a vocabulary token with the highest score (ties: the leftmost pair), until no
 *     pair is a token. A max-heap of candidate pairs makes this O(n log n).
 *  4. Each remaining piece becomes its token id, or, if it is not a token, one byte token
 *     <0xNN> per byte (falling back to a token whose text is the single byte, then to UNK).
 *  5. add_special: BOS first when add_bos, EOS last when add_eos.
 */
#include "vocab.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "llamita.h"
#include "model.h"

/* Per-token flags (lm_vocab.flags). */
#define LM_TF_EOG 1u    /* ends generation */
#define LM_TF_LSTRIP 2u /* as a special token in text: eats whitespace on its left */
#define LM_TF_RSTRIP 4u /* ... and on its right */

struct lm_vocab {
    int32_t n_tokens;
    char *arena;         /* every token text, each followed by a NUL */
    size_t *off;         /* [n_tokens] offset of token i's text in arena */
    uint32_t *len;       /* [n_tokens] byte length of token i's text (without the NUL) */
    float *score;        /* [n_tokens] piece scores (0 when the file has none) */
    uint8_t *type;       /* [n_tokens] enum lm_token_type, after llama.cpp's fix-ups */
    uint8_t *flags;      /* [n_tokens] LM_TF_* */
    int32_t *ht;         /* [ht_mask + 1] open-addressing table text -> id, -1 = empty slot */
    size_t ht_mask;
    uint32_t max_len;    /* longest token text */
    int32_t *special;    /* [n_special] CONTROL/USER_DEFINED/UNKNOWN ids, longest text first */
    int32_t n_special;
    int32_t byte_tok[256]; /* byte -> token used for byte fallback, -1 if none */
    int32_t bos, eos, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
};

/* ------------------------------------------------------------------------------------------------
 * Text -> id hash table
 * ---------------------------------------------------------------------------------------------- */

static uint64_t lm_hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static inline const char *tok_text(const lm_vocab *v, int32_t id) { return v->arena + v->off[id]; }

/* Id of the token whose text is exactly s[0..n), or -1. */
static int32_t lm_vocab_find(const lm_vocab *v, const char *s, size_t n) {
    if (n > v->max_len) return -1;
    size_t h = (size_t)lm_hash_bytes(s, n) & v->ht_mask;
    for (;;) {
        int32_t id = v->ht[h];
        if (id < 0) return -1;
        if (v->len[id] == n && memcmp(tok_text(v, id), s, n) == 0) return id;
        h = (h + 1) & v->ht_mask;
    }
}

/* Inserts token id; returns the id of an earlier token with the same text (not replaced), or -1. */
static int32_t lm_vocab_insert(lm_vocab *v, int32_t id) {
    const char *s = tok_text(v, id);
    size_t n = v->len[id];
    size_t h = (size_t)lm_hash_bytes(s, n) & v->ht_mask;
    for (;;) {
        int32_t o = v->ht[h];
        if (o < 0) {
            v->ht[h] = id;
            return -1;
        }
        if (v->len[o] == n && memcmp(tok_text(v, o), s, n) == 0) return o;
        h = (h + 1) & v->ht_mask;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------------------------------- */

void lm_vocab_free(lm_vocab *v) {
    if (!v) return;
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->flags);
    free(v->ht);
    free(v->special);
    free(v);
}

static bool lm_is_int_type(enum lm_gguf_type t) {
    switch (t) {
    case LM_GGUF_UINT8: case LM_GGUF_INT8: case LM_GGUF_UINT16: case LM_GGUF_INT16:
    case LM_GGUF_UINT32: case LM_GGUF_INT32: case LM_GGUF_UINT64: case LM_GGUF_INT64:
        return true;
    default:
        return false;
    }
}

/* Reads element j of an integer array (raw little-endian data `p` of element type t) as int64.
 * Unsigned 64-bit values above INT64_MAX come back as -1 (callers treat them as out of range). */
static int64_t lm_arr_int(const void *p, enum lm_gguf_type t, uint64_t j) {
    const unsigned char *b = p;
    switch (t) {
    case LM_GGUF_UINT8: return b[j];
    case LM_GGUF_INT8: return (int8_t)b[j];
    case LM_GGUF_UINT16: { uint16_t x; memcpy(&x, b + 2 * j, 2); return x; }
    case LM_GGUF_INT16: { int16_t x; memcpy(&x, b + 2 * j, 2); return x; }
    case LM_GGUF_UINT32: { uint32_t x; memcpy(&x, b + 4 * j, 4); return x; }
    case LM_GGUF_INT32: { int32_t x; memcpy(&x, b + 4 * j, 4); return x; }
    case LM_GGUF_UINT64: { uint64_t x; memcpy(&x, b + 8 * j, 8); return x > INT64_MAX ? -1 : (int64_t)x; }
    case LM_GGUF_INT64: { int64_t x; memcpy(&x, b + 8 * j, 8); return x; }
    default: return 0;
    }
}

/* Reads an optional special-token id key into *id. Absent: *id unchanged. Present but not an id of
 * this vocabulary (e.g. 0xFFFFFFFF): *id unchanged too, like llama.cpp ("bad special token", which
 * keeps the default). Present with a non-integer type: false with a message. */
static bool lm_read_special_id(const lm_gguf *g, const char *key, int32_t n_tokens, int32_t *id,
                               char *err, size_t err_size) {
    int64_t i = lm_gguf_find_key(g, key);
    if (i < 0) return true;
    enum lm_gguf_type t = lm_gguf_kv_type(g, i);
    if (!lm_is_int_type(t)) {
        lm_seterr(err, err_size, "%s: key %s has type %s, expected an integer token id",
                  lm_gguf_path(g), key, lm_gguf_type_name(t));
        return false;
    }
    int64_t val = -1;
    if (!lm_gguf_get_i64(g, key, &val, NULL, 0)) val = -1; /* a u64 too large for int64 */
    if (val >= 0 && val < n_tokens) *id = (int32_t)val;
    return true;
}

static int lm_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool lm_str_eq(lm_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.data, c, n) == 0;
}

/* Case-insensitive search for needle (lowercase ASCII) in s. */
static bool lm_str_icontains(lm_gguf_str s, const char *needle) {
    size_t n = strlen(needle);
    if (n > s.len) return false;
    for (uint64_t i = 0; i + n <= s.len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)s.data[i + k]) == needle[k]) k++;
        if (k == n) return true;
    }
    return false;
}

lm_vocab *lm_vocab_load(const lm_gguf *g, char *err, size_t err_size) {
    if (!g) {
        lm_seterr(err, err_size, "lm_vocab_load: no file");
        return NULL;
    }
    const char *path = lm_gguf_path(g);
    if (!path) path = "(gguf)";

    /* tokenizer model */
    lm_gguf_str model = {0};
    int64_t ki = lm_gguf_find_key(g, "tokenizer.ggml.model");
    if (ki < 0) {
        lm_seterr(err, err_size, "%s: unsupported tokenizer model: key tokenizer.ggml.model is missing",
                  path);
        return NULL;
    }
    if (!lm_gguf_get_str(g, "tokenizer.ggml.model", &model, err, err_size)) return NULL;
    if (!lm_str_eq(model, "llama")) {
        lm_seterr(err, err_size,
                  "%s: unsupported tokenizer model '%.*s' (tokenizer.ggml.model; only 'llama' "
                  "SentencePiece vocabularies are supported)",
                  path, (int)LM_MIN(model.len, (uint64_t)64), model.data);
        return NULL;
    }

    /* token texts */
    int64_t ti = lm_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ti < 0) {
        lm_seterr(err, err_size, "%s: key tokenizer.ggml.tokens is missing", path);
        return NULL;
    }
    if (lm_gguf_kv_type(g, ti) != LM_GGUF_ARRAY || lm_gguf_arr_type(g, ti) != LM_GGUF_STRING) {
        lm_seterr(err, err_size, "%s: key tokenizer.ggml.tokens is not an array of strings", path);
        return NULL;
    }
    uint64_t n64 = lm_gguf_arr_n(g, ti);
    if (n64 == 0 || n64 > (uint64_t)INT32_MAX / 2) {
        lm_seterr(err, err_size, "%s: tokenizer.ggml.tokens has %llu entries (expected 1..%d)", path,
                  (unsigned long long)n64, INT32_MAX / 2);
        return NULL;
    }
    int32_t n = (int32_t)n64;

    /* scores (optional) */
    const void *scores = NULL;
    int64_t si = lm_gguf_find_key(g, "tokenizer.ggml.scores");
    if (si >= 0) {
        if (lm_gguf_kv_type(g, si) != LM_GGUF_ARRAY || lm_gguf_arr_type(g, si) != LM_GGUF_FLOAT32) {
            lm_seterr(err, err_size, "%s: key tokenizer.ggml.scores is not an array of f32", path);
            return NULL;
        }
        if (lm_gguf_arr_n(g, si) != n64) {
            lm_seterr(err, err_size, "%s: tokenizer.ggml.scores has %llu entries but tokenizer.ggml.tokens has %d",
                      path, (unsigned long long)lm_gguf_arr_n(g, si), n);
            return NULL;
        }
        scores = lm_gguf_arr_data(g, si);
    }

    /* token types (optional) */
    const void *types = NULL;
    enum lm_gguf_type types_t = LM_GGUF_INT32;
    int64_t yi = lm_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (yi >= 0) {
        if (lm_gguf_kv_type(g, yi) != LM_GGUF_ARRAY || !lm_is_int_type(lm_gguf_arr_type(g, yi))) {
            lm_seterr(err, err_size, "%s: key tokenizer.ggml.token_type is not an array of integers", path);
            return NULL;
        }
        if (lm_gguf_arr_n(g, yi) != n64) {
            lm_seterr(err, err_size, "%s: tokenizer.ggml.token_type has %llu entries but tokenizer.ggml.tokens has %d",
                      path, (unsigned long long)lm_gguf_arr_n(g, yi), n);
            return NULL;
        }
        types = lm_gguf_arr_data(g, yi);
        types_t = lm_gguf_arr_type(g, yi);
    }

    lm_vocab *v = calloc(1, sizeof *v);
    if (!v) goto oom;
    v->n_tokens = n;
    v->off = malloc((size_t)n * sizeof *v->off);
    v->len = malloc((size_t)n * sizeof *v->len);
    v->score = malloc((size_t)n * sizeof *v->score);
    v->type = malloc((size_t)n);
    v->flags = calloc((size_t)n, 1);
    if (!v->off || !v->len || !v->score || !v->type || !v->flags) goto oom;

    /* arena: llama.cpp renames an empty token to "[EMPTY_<id>]" */
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        lm_gguf_str s = lm_gguf_arr_str(g, ti, (uint64_t)i);
        uint64_t l = s.len ? s.len : 32;
        if (s.len > UINT32_MAX / 2 || !lm_add_u64(total, l + 1, &total)) {
            lm_seterr(err, err_size, "%s: tokenizer.ggml.tokens[%d] is too long", path, i);
            lm_vocab_free(v);
            return NULL;
        }
    }
    if (total > SIZE_MAX / 2) goto oom;
    v->arena = malloc((size_t)total);
    if (!v->arena) goto oom;
    size_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        lm_gguf_str s = lm_gguf_arr_str(g, ti, (uint64_t)i);
        v->off[i] = pos;
        if (s.len == 0) {
            int k = snprintf(v->arena + pos, 32, "[EMPTY_%d]", (int)i);
            v->len[i] = (uint32_t)k;
        } else {
            memcpy(v->arena + pos, s.data, (size_t)s.len);
            v->arena[pos + s.len] = 0;
            v->len[i] = (uint32_t)s.len;
        }
        pos += v->len[i] + 1;
        if (v->len[i] > v->max_len) v->max_len = v->len[i];
        float sc = 0.0f;
        if (scores) memcpy(&sc, (const char *)scores + 4 * (size_t)i, 4);
        v->score[i] = sc;
        uint8_t ty = LM_TOKEN_NORMAL; /* llama.cpp: NORMAL when the file has no token types */
        if (types) {
            int64_t t = lm_arr_int(types, types_t, (uint64_t)i);
            ty = (t >= LM_TOKEN_NORMAL && t <= LM_TOKEN_BYTE) ? (uint8_t)t : LM_TOKEN_UNDEFINED;
        }
        v->type[i] = ty;
    }

    /* hash table, load factor <= 1/2 */
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    v->ht = malloc(cap * sizeof *v->ht);
    if (!v->ht) goto oom;
    memset(v->ht, 0xff, cap * sizeof *v->ht);
    v->ht_mask = cap - 1;
    for (int32_t i = 0; i < n; i++) {
        int32_t dup = lm_vocab_insert(v, i);
        if (dup >= 0) {
            /* llama.cpp asserts that every text is unique (id_to_token.size() == token_to_id.size()) */
            lm_seterr(err, err_size, "%s: tokenizer.ggml.tokens[%d] '%.*s' duplicates token %d", path, i,
                      (int)LM_MIN(v->len[i], 64u), tok_text(v, i), dup);
            lm_vocab_free(v);
            return NULL;
        }
    }

    /* special ids: llama.cpp's SPM defaults, overridden by valid ids from the file */
    v->bos = 1;
    v->eos = 2;
    v->unk = 0;
    v->pad = -1;
    int32_t eot = -1, eom = -1;
    if (!lm_read_special_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos, err, err_size) ||
        !lm_read_special_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos, err, err_size) ||
        !lm_read_special_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk, err, err_size) ||
        !lm_read_special_id(g, "tokenizer.ggml.padding_token_id", n, &v->pad, err, err_size) ||
        !lm_read_special_id(g, "tokenizer.ggml.eot_token_id", n, &eot, err, err_size) ||
        !lm_read_special_id(g, "tokenizer.ggml.eom_token_id", n, &eom, err, err_size)) {
        lm_vocab_free(v);
        return NULL;
    }
    /* the defaults themselves may be out of range in a tiny vocabulary */
    if (v->bos >= n) v->bos = -1;
    if (v->eos >= n) v->eos = -1;
    if (v->unk >= n) v->unk = -1;

    v->add_bos = true;
    v->add_eos = false;
    v->add_space_prefix = true;
    if (!lm_gguf_get_bool_opt(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err, err_size) ||
        !lm_gguf_get_bool_opt(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err, err_size) ||
        !lm_gguf_get_bool_opt(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err, err_size)) {
        lm_vocab_free(v);
        return NULL;
    }

    /* End-of-generation tokens, as llama.cpp: EOS, EOT, EOM, and tokens with these texts (which
     * also become CONTROL tokens). llama.cpp also counts FIM pad/rep/sep tokens; not done here. */
    static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<|eom_id|>", "<EOT>"};
    for (size_t k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
        int32_t id = lm_vocab_find(v, eog_texts[k], strlen(eog_texts[k]));
        if (id >= 0) {
            v->flags[id] |= LM_TF_EOG;
            v->type[id] = LM_TOKEN_CONTROL;
        }
    }
    if (v->eos >= 0) v->flags[v->eos] |= LM_TF_EOG;
    if (eot >= 0) v->flags[eot] |= LM_TF_EOG;
    if (eom >= 0) v->flags[eom] |= LM_TF_EOG;

    /* special tokens searched for in text, longest first (ties: lower id first) */
    int32_t ns = 0;
    for (int32_t i = 0; i < n; i++) {
        uint8_t t = v->type[i];
        if (t == LM_TOKEN_CONTROL || t == LM_TOKEN_USER_DEFINED || t == LM_TOKEN_UNKNOWN) ns++;
    }
    v->special = malloc((size_t)(ns ? ns : 1) * sizeof *v->special);
    uint64_t *keys = malloc((size_t)(ns ? ns : 1) * sizeof *keys); /* (~len << 32 | id): sorts longest first */
    if (!v->special || !keys) {
        free(keys);
        goto oom;
    }
    for (int32_t i = 0; i < n; i++) {
        uint8_t t = v->type[i];
        if (t == LM_TOKEN_CONTROL || t == LM_TOKEN_USER_DEFINED || t == LM_TOKEN_UNKNOWN)
            keys[v->n_special++] = ((uint64_t)(UINT32_MAX - v->len[i]) << 32) | (uint32_t)i;
    }
    qsort(keys, (size_t)v->n_special, sizeof *keys, lm_cmp_u64);
    for (int32_t k = 0; k < v->n_special; k++) v->special[k] = (int32_t)(keys[k] & 0xffffffffu);
    free(keys);

    /* llama.cpp sets RSTRIP on the special tokens of Phi-3 vocabularies (by general.name) */
    lm_gguf_str name = {0};
    if (lm_gguf_get_str_opt(g, "general.name", &name, NULL, 0) && name.data &&
        (lm_str_icontains(name, "phi-3") || lm_str_icontains(name, "phi3"))) {
        for (int32_t k = 0; k < v->n_special; k++) v->flags[v->special[k]] |= LM_TF_RSTRIP;
        int32_t id = lm_vocab_find(v, "</s>", 4);
        if (id >= 0) v->flags[id] |= LM_TF_RSTRIP;
        static const char *const no_rstrip[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < 3; k++) {
            id = lm_vocab_find(v, no_rstrip[k], strlen(no_rstrip[k]));
            if (id >= 0) v->flags[id] &= (uint8_t)~LM_TF_RSTRIP;
        }
    }

    /* byte fallback: "<0xNN>", else a token that is the byte itself, else UNK */
    for (int b = 0; b < 256; b++) {
        char hex[7];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = lm_vocab_find(v, hex, 6);
        if (id < 0) {
            char c = (char)b;
            id = lm_vocab_find(v, &c, 1);
        }
        v->byte_tok[b] = id >= 0 ? id : v->unk;
    }
    return v;

oom:
    lm_seterr(err, err_size, "%s: out of memory loading the vocabulary", path);
    lm_vocab_free(v);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Accessors
 * ---------------------------------------------------------------------------------------------- */

int32_t lm_vocab_n_tokens(const lm_vocab *v) { return v ? v->n_tokens : 0; }
int32_t lm_vocab_bos(const lm_vocab *v) { return v ? v->bos : -1; }
int32_t lm_vocab_eos(const lm_vocab *v) { return v ? v->eos : -1; }
int32_t lm_vocab_unk(const lm_vocab *v) { return v ? v->unk : -1; }
bool lm_vocab_add_bos(const lm_vocab *v) { return v && v->add_bos && v->bos >= 0; }
bool lm_vocab_add_eos(const lm_vocab *v) { return v && v->add_eos && v->eos >= 0; }

bool lm_vocab_is_eog(const lm_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n_tokens && (v->flags[id] & LM_TF_EOG);
}

enum lm_token_type lm_vocab_token_type(const lm_vocab *v, int32_t id) {
    if (!v || id < 0 || id >= v->n_tokens) return LM_TOKEN_UNDEFINED;
    return (enum lm_token_type)v->type[id];
}

/* NULL for an id outside the vocabulary. */
const char *lm_vocab_token_text(const lm_vocab *v, int32_t id) {
    if (!v || id < 0 || id >= v->n_tokens) return NULL;
    return tok_text(v, id);
}

/* ------------------------------------------------------------------------------------------------
 * Tokenization
 * ---------------------------------------------------------------------------------------------- */

/* A text fragment text[off..off+len) (id < 0) or a special token (id >= 0). */
typedef struct lm_frag {
    size_t off, len;
    int32_t id;
} lm_frag;

/* A piece of the escaped fragment during merging: buf[start..start+n); n == 0 once merged away.
 * prev/next link the live pieces (-1 at the ends). */
typedef struct lm_sym {
    size_t start;
    uint32_t n;
    int32_t prev, next;
} lm_sym;

/* A candidate merge of piece `left` with its right neighbour, whose joined text (size bytes) is a
 * token of score `score`. It is stale (skipped) unless left is alive and left.n + next.n == size:
 * piece lengths only grow, so that equality holds exactly when neither piece changed. */
typedef struct lm_bigram {
    float score;
    uint32_t size;
    int32_t left;
} lm_bigram;

/* Scratch of one lm_tokenize call (freed at its end). */
typedef struct lm_tok_work {
    const lm_vocab *v;
    char *buf;          /* [buf_cap] escaped fragment */
    size_t buf_cap;
    lm_sym *sym;        /* [sym_cap] */
    size_t sym_cap;
    lm_bigram *heap;    /* [heap_cap] max-heap */
    size_t heap_n, heap_cap;
    int32_t *out;       /* caller's output, written while count < n_max */
    int64_t n_max, count;
    bool failed;        /* out of memory, or a byte with no token to fall back to */
} lm_tok_work;

static inline void emit(lm_tok_work *w, int32_t id) {
    if (w->count < w->n_max) w->out[w->count] = id;
    w->count++;
}

/* true when a should be popped before b: higher score first, then the leftmost pair. */
static inline bool bigram_before(const lm_bigram *a, const lm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* Appends b without restoring the heap order (false when out of memory). */
static bool heap_append(lm_tok_work *w, lm_bigram b) {
    if (w->heap_n == w->heap_cap) {
        size_t nc = w->heap_cap ? w->heap_cap * 2 : 256;
        lm_bigram *nh = realloc(w->heap, nc * sizeof *nh);
        if (!nh) {
            w->failed = true;
            return false;
        }
        w->heap = nh;
        w->heap_cap = nc;
    }
    w->heap[w->heap_n++] = b;
    return true;
}

/* The queue is a 4-ary max-heap (children of i: 4i+1 .. 4i+4): half the depth of a binary heap,
 * which matters for the cache misses on long inputs. */
static void heap_push(lm_tok_work *w, lm_bigram b) {
    if (!heap_append(w, b)) return;
    size_t i = w->heap_n - 1;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (!bigram_before(&b, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = b;
}

/* Moves x down from slot i of heap[0..n) to where it belongs. */
static void heap_sift_down(lm_bigram *heap, size_t n, size_t i, lm_bigram x) {
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n) break;
        size_t end = c + 4 < n ? c + 4 : n, best = c;
        for (size_t k = c + 1; k < end; k++)
            if (bigram_before(&heap[k], &heap[best])) best = k;
        if (!bigram_before(&heap[best], &x)) break;
        heap[i] = heap[best];
        i = best;
    }
    heap[i] = x;
}

static lm_bigram heap_pop(lm_tok_work *w) {
    lm_bigram top = w->heap[0];
    lm_bigram last = w->heap[--w->heap_n];
    if (w->heap_n > 0) heap_sift_down(w->heap, w->heap_n, 0, last);
    return top;
}

/* Queues the merge of pieces left and right (adjacent, live) if their joined text is a token.
 * With heap order off, appends only (the caller heapifies once afterwards). */
static void try_add_bigram(lm_tok_work *w, int32_t left, int32_t right, bool keep_order) {
    if (left < 0 || right < 0) return;
    const lm_sym *l = &w->sym[left], *r = &w->sym[right];
    size_t size = (size_t)l->n + r->n;
    int32_t id = lm_vocab_find(w->v, w->buf + l->start, size);
    if (id < 0) return;
    lm_bigram b = {w->v->score[id], (uint32_t)size, left};
    if (keep_order) heap_push(w, b);
    else heap_append(w, b);
}

/* Makes room for `need` elements of `elem` bytes in buffer p of *cap elements (growing by doubling).
 * Returns the buffer, possibly moved, or NULL when out of memory (p is then still valid). */
static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap && p) return p;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return NULL;
        nc *= 2;
    }
    if (nc > SIZE_MAX / elem) return NULL;
    void *np = realloc(p, nc * elem);
    if (!np) return NULL;
    *cap = nc;
    return np;
}

/* Tokenizes one text fragment (s[0..n), n > 0) with the SPM merge algorithm, emitting ids. */
static void spm_fragment(lm_tok_work *w, const char *s, size_t n, bool add_prefix) {
    const lm_vocab *v = w->v;
    /* escape: optional "▁" prefix, ' ' -> "▁" (3 bytes) */
    char *nb = n < SIZE_MAX / 3 - 1 ? grow(w->buf, &w->buf_cap, (n + 1) * 3, 1) : NULL;
    if (!nb) {
        w->failed = true;
        return;
    }
    w->buf = nb;
    size_t m = 0;
    static const char sp[3] = {'\xe2', '\x96', '\x81'};
    if (add_prefix) {
        memcpy(w->buf, sp, 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->buf + m, sp, 3);
            m += 3;
        } else {
            w->buf[m++] = s[i];
        }
    }

    /* split into UTF-8 characters, by the lead byte alone (as llama.cpp's unicode_len_utf8) */
    static const uint8_t utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t nsym = 0;
    for (size_t o = 0; o < m;) {
        size_t l = utf8_len[(unsigned char)w->buf[o] >> 4];
        if (l > m - o) l = m - o;
        o += l;
        nsym++;
    }
    lm_sym *ns = nsym < (size_t)INT32_MAX ? grow(w->sym, &w->sym_cap, nsym, sizeof(lm_sym)) : NULL;
    if (!ns) {
        w->failed = true;
        return;
    }
    w->sym = ns;
    size_t k = 0;
    for (size_t o = 0; o < m; k++) {
        size_t l = utf8_len[(unsigned char)w->buf[o] >> 4];
        if (l > m - o) l = m - o;
        w->sym[k].start = o;
        w->sym[k].n = (uint32_t)l;
        w->sym[k].prev = (int32_t)k - 1;
        o += l;
        w->sym[k].next = o == m ? -1 : (int32_t)k + 1;
    }

    /* merge the best adjacent pair until none is a token */
    w->heap_n = 0;
    for (size_t i = 1; i < nsym; i++) try_add_bigram(w, (int32_t)i - 1, (int32_t)i, false);
    for (size_t i = w->heap_n / 4 + 1; i-- > 0;)
        if (i < w->heap_n) heap_sift_down(w->heap, w->heap_n, i, w->heap[i]);
    while (w->heap_n > 0 && !w->failed) {
        lm_bigram b = heap_pop(w);
        lm_sym *l = &w->sym[b.left];
        if (l->n == 0 || l->next < 0) continue;
        lm_sym *r = &w->sym[l->next];
        if ((size_t)l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (l->next >= 0) w->sym[l->next].prev = b.left;
        try_add_bigram(w, l->prev, b.left, true);
        try_add_bigram(w, b.left, l->next, true);
    }
    if (w->failed) return;

    /* pieces -> ids, with byte fallback */
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const lm_sym *p = &w->sym[i];
        int32_t id = lm_vocab_find(v, w->buf + p->start, p->n);
        if (id >= 0) {
            emit(w, id);
            continue;
        }
        for (uint32_t j = 0; j < p->n; j++) {
            int32_t bt = v->byte_tok[(unsigned char)w->buf[p->start + j]];
            if (bt < 0) {
                w->failed = true;
                return;
            }
            emit(w, bt);
        }
    }
}

/* Splits the text fragments of *fr (n_fr entries) at every occurrence of special token id
 * (llama.cpp's tokenizer_st_partition for one token). The result replaces *fr, using *tmp as
 * the second buffer (the two are swapped). */
static bool split_special(const lm_vocab *v, const char *text, int32_t id, lm_frag **fr, size_t *n_fr,
                          size_t *cap_fr, lm_frag **tmp, size_t *cap_tmp) {
    const char *t = tok_text(v, id);
    size_t tl = v->len[id];
    size_t no = 0;
#define PUSH(o_, l_, id_)                                                                    \
    do {                                                                                     \
        lm_frag *nt_ = grow(*tmp, cap_tmp, no + 1, sizeof(lm_frag));                         \
        if (!nt_) return false;                                                              \
        *tmp = nt_;                                                                          \
        (*tmp)[no].off = (o_);                                                               \
        (*tmp)[no].len = (l_);                                                               \
        (*tmp)[no].id = (id_);                                                               \
        no++;                                                                                \
    } while (0)
    for (size_t f = 0; f < *n_fr; f++) {
        lm_frag fg = (*fr)[f];
        if (fg.id >= 0 || fg.len < tl) {
            PUSH(fg.off, fg.len, fg.id);
            continue;
        }
        size_t base = fg.off, blen = fg.len;
        for (;;) {
            const char *p = blen >= tl ? memmem(text + base, blen, t, tl) : NULL;
            if (!p) {
                if (blen > 0) PUSH(base, blen, -1);
                break;
            }
            size_t match = (size_t)(p - text);
            size_t llen = match - base;
            if (v->flags[id] & LM_TF_LSTRIP)
                while (llen > 0 && isspace((unsigned char)text[base + llen - 1])) llen--;
            if (llen > 0) PUSH(base, llen, -1);
            PUSH(0, 0, id);
            size_t roff = match + tl, rlen = base + blen - roff;
            if (v->flags[id] & LM_TF_RSTRIP)
                while (rlen > 0 && isspace((unsigned char)text[roff])) {
                    roff++;
                    rlen--;
                }
            base = roff;
            blen = rlen;
        }
    }
#undef PUSH
    lm_frag *sw = *fr;
    size_t swc = *cap_fr;
    *fr = *tmp;
    *cap_fr = *cap_tmp;
    *tmp = sw;
    *cap_tmp = swc;
    *n_fr = no;
    return true;
}

int32_t lm_tokenize(const lm_vocab *v, const char *text, size_t len, int32_t *out, int32_t n_max,
                    bool add_special, bool parse_special) {
    if (!v || (!text && len > 0) || n_max < 0 || (!out && n_max > 0) || len > (size_t)INT32_MAX)
        return INT32_MIN;

    lm_tok_work w = {.v = v, .out = out, .n_max = n_max};
    lm_frag *fr = NULL, *tmp = NULL;
    size_t n_fr = 0, cap_fr = 0, cap_tmp = 0;
    int32_t ret = INT32_MIN;

    if (len > 0) {
        fr = grow(NULL, &cap_fr, 1, sizeof(lm_frag));
        if (!fr) goto done;
        fr[0] = (lm_frag){0, len, -1};
        n_fr = 1;
        for (int32_t k = 0; k < v->n_special; k++) {
            int32_t id = v->special[k];
            uint8_t t = v->type[id];
            if (!parse_special && (t == LM_TOKEN_CONTROL || t == LM_TOKEN_UNKNOWN)) continue;
            if (!split_special(v, text, id, &fr, &n_fr, &cap_fr, &tmp, &cap_tmp)) goto done;
        }
    }

    bool prev_special = true; /* the first fragment gets the space prefix */
    if (add_special && v->add_bos && v->bos >= 0) emit(&w, v->bos);
    for (size_t f = 0; f < n_fr && !w.failed; f++) {
        if (fr[f].id >= 0) {
            emit(&w, fr[f].id);
            prev_special = true;
        } else {
            spm_fragment(&w, text + fr[f].off, fr[f].len, v->add_space_prefix && prev_special);
            prev_special = false;
        }
    }
    if (add_special && v->add_eos && v->eos >= 0) emit(&w, v->eos);

    if (!w.failed && w.count <= INT32_MAX) ret = w.count <= n_max ? (int32_t)w.count : -(int32_t)w.count;
done:
    free(fr);
    free(tmp);
    free(w.buf);
    free(w.sym);
    free(w.heap);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * Detokenization
 * ---------------------------------------------------------------------------------------------- */

/* Value of a byte token "<0xNN>" (as llama.cpp: strtol of the two characters after "<0x"). */
static unsigned char byte_value(const lm_vocab *v, int32_t id) {
    const char *t = tok_text(v, id);
    if (v->len[id] < 4) return 0;
    char hex[3] = {t[3], v->len[id] >= 5 ? t[4] : 0, 0};
    return (unsigned char)strtol(hex, NULL, 16);
}

int32_t lm_token_to_piece(const lm_vocab *v, int32_t id, char *buf, int32_t len, int32_t lstrip,
                          bool special) {
    if (!v || id < 0 || id >= v->n_tokens) return 0; /* unknown ids render as nothing */
    if (!buf || len < 0) len = 0;
    uint8_t t = v->type[id];
    const char *s = tok_text(v, id);
    size_t n = v->len[id];
    char byte;
    bool unescape = false;
    switch (t) {
    case LM_TOKEN_CONTROL:
    case LM_TOKEN_UNKNOWN:
        if (!special) return 0;
        break;
    case LM_TOKEN_USER_DEFINED:
        break;
    case LM_TOKEN_NORMAL:
        unescape = true;
        break;
    case LM_TOKEN_BYTE:
        byte = (char)byte_value(v, id);
        s = &byte;
        n = 1;
        break;
    default: /* UNUSED, UNDEFINED: nothing, as llama.cpp */
        return 0;
    }
    /* measure the output (after "▁" -> " " and stripping up to lstrip leading spaces) */
    size_t i = 0, size = 0;
    int32_t stripped = 0;
    for (;;) { /* leading spaces to strip */
        if (stripped >= lstrip || i >= n) break;
        if (unescape && n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) i += 3;
        else if (s[i] == ' ') i += 1;
        else break;
        stripped++;
    }
    size_t first = i;
    while (i < n) {
        if (unescape && n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) i += 3;
        else i += 1;
        size++;
    }
    if (size > (size_t)INT32_MAX) return 0;
    if ((size_t)len < size) return -(int32_t)size;
    size_t o = 0;
    for (i = first; i < n;) {
        if (unescape && n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            buf[o++] = ' ';
            i += 3;
        } else {
            buf[o++] = s[i++];
        }
    }
    return (int32_t)size;
}

/* As llama.cpp's llama_detokenize: remove_special drops a leading BOS only when add_bos is set (and
 * then keeps the first piece's leading space) and a trailing EOS only when add_eos is set; the first
 * remaining piece loses one leading space when add_space_prefix is set. */
int32_t lm_detokenize(const lm_vocab *v, const int32_t *ids, int32_t n, char *text, int32_t max,
                      bool remove_special, bool unparse_special) {
    if (!v || n < 0 || (!ids && n > 0) || max < 0 || (!text && max > 0)) return INT32_MIN;
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos) n--;
    int64_t total = 0, avail = max;
    for (int32_t i = 0; i < n; i++) {
        int32_t r = lm_token_to_piece(v, ids[i], text ? text + (total <= max ? total : 0) : NULL,
                                      (int32_t)avail, remove_space ? 1 : 0, unparse_special);
        remove_space = false;
        if (r < 0) {
            avail = 0;
            total += -(int64_t)r;
        } else {
            avail -= r;
            total += r;
        }
        if (total > INT32_MAX) return INT32_MIN;
    }
    return total > max ? -(int32_t)total : (int32_t)total;
}

/* ------------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------------- */

static const lm_vocab *mv(const llamita_model *m) { return m ? lm_model_vocab(m) : NULL; }

llamita_token llamita_token_bos(const llamita_model *model) {
    const lm_vocab *v = mv(model);
    return v && v->bos >= 0 ? v->bos : LLAMITA_TOKEN_NULL;
}

llamita_token llamita_token_eos(const llamita_model *model) {
    const lm_vocab *v = mv(model);
    return v && v->eos >= 0 ? v->eos : LLAMITA_TOKEN_NULL;
}

bool llamita_token_is_eog(const llamita_model *model, llamita_token token) {
    return lm_vocab_is_eog(mv(model), token);
}

bool llamita_add_bos(const llamita_model *model) { return lm_vocab_add_bos(mv(model)); }
bool llamita_add_eos(const llamita_model *model) { return lm_vocab_add_eos(mv(model)); }

/* NULL for an id outside the vocabulary. */
const char *llamita_token_get_text(const llamita_model *model, llamita_token token) {
    return lm_vocab_token_text(mv(model), token);
}

int32_t llamita_tokenize(const llamita_model *model, const char *text, int32_t text_len,
                         llamita_token *tokens, int32_t n_tokens_max, bool add_special,
                         bool parse_special) {
    const lm_vocab *v = mv(model);
    if (!v) return INT32_MIN;
    size_t len;
    if (text_len < 0) {
        if (!text) return INT32_MIN;
        len = strlen(text);
    } else {
        len = (size_t)text_len;
    }
    return lm_tokenize(v, text, len, tokens, n_tokens_max, add_special, parse_special);
}

int32_t llamita_token_to_piece(const llamita_model *model, llamita_token token, char *buf, int32_t len,
                               int32_t lstrip, bool special) {
    return lm_token_to_piece(mv(model), token, buf, len, lstrip, special);
}

int32_t llamita_detokenize(const llamita_model *model, const llamita_token *tokens, int32_t n_tokens,
                           char *text, int32_t text_len_max, bool remove_special, bool unparse_special) {
    const lm_vocab *v = mv(model);
    if (!v) return INT32_MIN;
    return lm_detokenize(v, tokens, n_tokens, text, text_len_max, remove_special, unparse_special);
}

/* Length of the longest prefix of buf[0..len) that does not end inside an incomplete UTF-8 sequence.
 * Only the last (at most 4) bytes matter: if they are a valid lead byte followed by fewer
 * continuation bytes than it announces (and the second byte is allowed after that lead), the
 * prefix stops before the lead byte. Anything invalid counts as complete. */
size_t llamita_utf8_complete_len(const char *buf, size_t len) {
    if (!buf || len == 0) return 0;
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = len, k = 0;
    while (i > 0 && k < 3 && (s[i - 1] & 0xC0) == 0x80) {
        i--;
        k++;
    }
    if (i == 0) return len;
    size_t lead = i - 1;
    unsigned char c = s[lead];
    size_t need;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3;
    else if (c >= 0xF0 && c <= 0xF4) need = 4;
    else return len; /* ASCII, stray continuation, or an invalid lead byte */
    size_t have = len - lead;
    if (have >= need) return len;
    if (have >= 2) {
        unsigned char c2 = s[lead + 1];
        if ((c == 0xE0 && c2 < 0xA0) || (c == 0xED && c2 > 0x9F) || (c == 0xF0 && c2 < 0x90) ||
            (c == 0xF4 && c2 > 0x8F))
            return len; /* overlong / surrogate / out of range: invalid, never completes */
    }
    return lead;
}
