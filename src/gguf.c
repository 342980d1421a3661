/*
 * GGUF v2/v3 reader and writer (see gguf.h for the file layout and the contract).
 *
 * Written from the GGUF specification (ggml/docs/gguf.md). Compatibility choices, where the spec is
 * silent, follow what llama.cpp's reader accepts:
 *  - versions 2 and 3 only (v1 used u32 counts; v2 and v3 share one layout);
 *  - general.alignment must be a u32, non-zero power of two (default 32);
 *  - arrays of arrays are rejected (llama.cpp rejects them too);
 *  - every tensor dimension must be >= 1 (llama.cpp allows 0; no real model has an empty tensor);
 *  - duplicate keys and duplicate tensor names are errors;
 *  - tensors may appear in any order in the data section as long as each is aligned and inside the
 *    file (llama.cpp additionally requires them to be packed in order; our writer does that).
 *
 * The reader never allocates more than a small multiple of the file size: every count is checked
 * against the bytes left in the file before anything is allocated for it.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "llamita's GGUF reader and writer assume a little-endian host"
#endif

#define GGUF_MAGIC_LE 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_HEADER_SIZE 24u      /* magic, version, n_tensors, n_kv */
#define GGUF_MIN_KV_SIZE 13u      /* key length (8) + value type (4) + a 1-byte value */
#define GGUF_MIN_TINFO_SIZE 32u   /* name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */
#define GGUF_NAME_SHOW 96         /* longest key/tensor name quoted in a message */
#define GGUF_ALIGNMENT_KEY "general.alignment"

/* Byte size of each scalar value type; 0 for STRING/ARRAY (variable). */
static const uint8_t k_value_size[LM_GGUF_TYPE_COUNT] = {
    [LM_GGUF_UINT8] = 1, [LM_GGUF_INT8] = 1,    [LM_GGUF_UINT16] = 2, [LM_GGUF_INT16] = 2,
    [LM_GGUF_UINT32] = 4, [LM_GGUF_INT32] = 4,  [LM_GGUF_FLOAT32] = 4, [LM_GGUF_BOOL] = 1,
    [LM_GGUF_STRING] = 0, [LM_GGUF_ARRAY] = 0,  [LM_GGUF_UINT64] = 8, [LM_GGUF_INT64] = 8,
    [LM_GGUF_FLOAT64] = 8,
};

const char *lm_gguf_type_name(enum lm_gguf_type t) {
    static const char *const names[LM_GGUF_TYPE_COUNT] = {
        [LM_GGUF_UINT8] = "u8",   [LM_GGUF_INT8] = "i8",     [LM_GGUF_UINT16] = "u16",
        [LM_GGUF_INT16] = "i16",  [LM_GGUF_UINT32] = "u32",  [LM_GGUF_INT32] = "i32",
        [LM_GGUF_FLOAT32] = "f32", [LM_GGUF_BOOL] = "bool",  [LM_GGUF_STRING] = "string",
        [LM_GGUF_ARRAY] = "array", [LM_GGUF_UINT64] = "u64", [LM_GGUF_INT64] = "i64",
        [LM_GGUF_FLOAT64] = "f64",
    };
    return ((unsigned)t < LM_GGUF_TYPE_COUNT) ? names[t] : "?";
}

/* Names of ggml tensor type ids that exist (or existed) in the GGUF spec but that llamita has no
 * traits for, to make "unsupported type" messages useful. NULL for ids never assigned. */
static const char *ggml_other_type_name(uint32_t id) {
    static const char *const names[] = {
        [4] = "Q4_2 (removed from ggml)", [5] = "Q4_3 (removed from ggml)", [16] = "IQ2_XXS",
        [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
        [22] = "IQ2_S", [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64",
        [28] = "F64", [29] = "IQ1_M", [31] = "Q4_0_4_4 (removed from ggml)",
        [32] = "Q4_0_4_8 (removed from ggml)", [33] = "Q4_0_8_8 (removed from ggml)", [34] = "TQ1_0",
        [35] = "TQ2_0", [36] = "IQ4_NL_4_4 (removed from ggml)", [37] = "IQ4_NL_4_8 (removed from ggml)",
        [38] = "IQ4_NL_8_8 (removed from ggml)", [39] = "MXFP4",
    };
    return id < sizeof names / sizeof *names ? names[id] : NULL;
}

static bool is_fixed_type(uint32_t t) { return t < LM_GGUF_TYPE_COUNT && k_value_size[t] != 0; }

static uint32_t rd_u32_at(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd_u64_at(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Copies at most GGUF_NAME_SHOW bytes of name[len] into dst (size >= GGUF_NAME_SHOW + 4) for use in a
 * message: non-printable bytes become '?', long names end in "...". Returns dst. */
static char *show_name(char *dst, const char *name, uint64_t len) {
    uint64_t n = LM_MIN(len, (uint64_t)GGUF_NAME_SHOW);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > n) { memcpy(dst + n, "...", 4); }
    else dst[n] = 0;
    return dst;
}

/* ================================================================================================
 * Reader
 * ============================================================================================== */

typedef struct lm_gguf_kv {
    char *key;                  /* NUL-terminated copy */
    enum lm_gguf_type type;
    enum lm_gguf_type arr_type; /* ARRAY only */
    uint64_t arr_n;             /* ARRAY only */
    uint64_t key_off;           /* file offset of the key's length prefix (for messages) */
    uint64_t val_start;         /* file offset just after the u32 value type */
    uint64_t data_off;          /* scalar: the value; STRING: its length prefix; ARRAY: element 0 */
    uint64_t val_end;           /* file offset just past the value */
    uint64_t *str_offs;         /* [arr_n] string arrays: file offset of each element's length prefix */
} lm_gguf_kv;

struct lm_gguf {
    char *path;
    const uint8_t *map; /* [size] read-only private mapping of the whole file */
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    int64_t n_kv;
    lm_gguf_kv *kv;          /* [n_kv] in file order */
    lm_gguf_kv **kv_sorted;  /* [n_kv] sorted by key, for lookup */
    int64_t n_tensors;
    lm_gguf_tensor *tensors; /* [n_tensors] in file order */
    uint64_t *tinfo_off;     /* [n_tensors] file offset of each tensor info (for messages) */
    lm_gguf_tensor **t_sorted; /* [n_tensors] sorted by name */
};

/* Parsing cursor over the map. Every read is bounds-checked; failures write the message. */
typedef struct rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    char *err;
    size_t err_size;
    char what[GGUF_NAME_SHOW + 64]; /* what is being read, e.g. "key 'general.name'" */
} rd;

/* Checks that n more bytes are available at the cursor; on failure writes a message naming `item`
 * of rd->what and the byte offset. */
static bool rd_need(rd *r, uint64_t n, const char *item) {
    if (n <= r->size - r->pos) return true;
    lm_seterr(r->err, r->err_size,
              "gguf: file truncated: %s of %s at byte %" PRIu64 " needs %" PRIu64
              " bytes, file size %" PRIu64,
              item, r->what, r->pos, n, r->size);
    return false;
}

static bool rd_u32(rd *r, uint32_t *v, const char *item) {
    if (!rd_need(r, 4, item)) return false;
    *v = rd_u32_at(r->p + r->pos);
    r->pos += 4;
    return true;
}

static bool rd_u64(rd *r, uint64_t *v, const char *item) {
    if (!rd_need(r, 8, item)) return false;
    *v = rd_u64_at(r->p + r->pos);
    r->pos += 8;
    return true;
}

/* Reads a GGUF string (u64 length + bytes); *s points into the map. */
static bool rd_str(rd *r, lm_gguf_str *s, const char *item) {
    uint64_t start = r->pos, len;
    if (!rd_u64(r, &len, item)) return false;
    if (len > r->size - r->pos) {
        lm_seterr(r->err, r->err_size,
                  "gguf: %s of %s at byte %" PRIu64 ": string length %" PRIu64
                  " runs past end of file (size %" PRIu64 ")",
                  item, r->what, start, len, r->size);
        return false;
    }
    s->data = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += len;
    return true;
}

/* Reads a key or tensor name and returns a malloc'd NUL-terminated copy (NULL + message on error:
 * truncation, embedded NUL byte, or out of memory). */
static char *rd_name(rd *r, const char *item) {
    uint64_t start = r->pos;
    lm_gguf_str s;
    if (!rd_str(r, &s, item)) return NULL;
    if (s.len && memchr(s.data, 0, s.len)) {
        char shown[GGUF_NAME_SHOW + 4];
        lm_seterr(r->err, r->err_size, "gguf: %s of %s at byte %" PRIu64 " ('%s') contains a NUL byte",
                  item, r->what, start, show_name(shown, s.data, s.len));
        return NULL;
    }
    char *copy = malloc(s.len + 1);
    if (!copy) {
        lm_seterr(r->err, r->err_size, "gguf: out of memory reading %s of %s (%" PRIu64 " bytes)",
                  item, r->what, s.len);
        return NULL;
    }
    memcpy(copy, s.data, s.len);
    copy[s.len] = 0;
    return copy;
}

static int cmp_kv_ptr(const void *a, const void *b) {
    return strcmp((*(lm_gguf_kv *const *)a)->key, (*(lm_gguf_kv *const *)b)->key);
}
static int cmp_tensor_ptr(const void *a, const void *b) {
    return strcmp((*(lm_gguf_tensor *const *)a)->name, (*(lm_gguf_tensor *const *)b)->name);
}

/* Parses key/value number `idx` at the cursor into *kv (whose key is already NULL). */
static bool parse_kv(rd *r, int64_t idx, lm_gguf_kv *kv) {
    kv->key_off = r->pos;
    snprintf(r->what, sizeof r->what, "key %" PRId64, idx);
    kv->key = rd_name(r, "name");
    if (!kv->key) return false;
    char shown[GGUF_NAME_SHOW + 4];
    snprintf(r->what, sizeof r->what, "key '%s'", show_name(shown, kv->key, strlen(kv->key)));

    uint32_t type;
    uint64_t type_off = r->pos;
    if (!rd_u32(r, &type, "value type")) return false;
    if (type >= LM_GGUF_TYPE_COUNT) {
        lm_seterr(r->err, r->err_size, "gguf: %s (byte %" PRIu64 "): unknown value type %" PRIu32,
                  r->what, type_off, type);
        return false;
    }
    kv->type = (enum lm_gguf_type)type;
    kv->val_start = r->pos;
    kv->data_off = r->pos;
    if (is_fixed_type(type)) {
        if (!rd_need(r, k_value_size[type], "value")) return false;
        r->pos += k_value_size[type];
    } else if (type == LM_GGUF_STRING) {
        lm_gguf_str s;
        if (!rd_str(r, &s, "value")) return false;
    } else { /* ARRAY */
        uint32_t et;
        uint64_t n;
        uint64_t et_off = r->pos;
        if (!rd_u32(r, &et, "array element type") || !rd_u64(r, &n, "array length")) return false;
        if (et >= LM_GGUF_TYPE_COUNT) {
            lm_seterr(r->err, r->err_size,
                      "gguf: %s (byte %" PRIu64 "): unknown array element type %" PRIu32, r->what,
                      et_off, et);
            return false;
        }
        if (et == LM_GGUF_ARRAY) {
            lm_seterr(r->err, r->err_size,
                      "gguf: %s (byte %" PRIu64 "): arrays of arrays are not supported", r->what,
                      et_off);
            return false;
        }
        kv->arr_type = (enum lm_gguf_type)et;
        kv->arr_n = n;
        kv->data_off = r->pos;
        uint64_t left = r->size - r->pos;
        if (et == LM_GGUF_STRING) {
            /* each element is at least its 8-byte length prefix: bounds the allocation below */
            if (n > left / 8) {
                lm_seterr(r->err, r->err_size,
                          "gguf: %s (byte %" PRIu64 "): array of %" PRIu64
                          " strings cannot fit in the %" PRIu64 " bytes left in the file (size %" PRIu64 ")",
                          r->what, et_off, n, left, r->size);
                return false;
            }
            kv->str_offs = malloc((n ? n : 1) * sizeof *kv->str_offs);
            if (!kv->str_offs) {
                lm_seterr(r->err, r->err_size, "gguf: out of memory indexing %s (%" PRIu64 " strings)",
                          r->what, n);
                return false;
            }
            char item[48];
            for (uint64_t j = 0; j < n; j++) {
                kv->str_offs[j] = r->pos;
                lm_gguf_str s;
                snprintf(item, sizeof item, "string %" PRIu64, j);
                if (!rd_str(r, &s, item)) return false;
            }
        } else {
            uint64_t bytes;
            if (!lm_mul_u64(n, k_value_size[et], &bytes) || bytes > left) {
                lm_seterr(r->err, r->err_size,
                          "gguf: %s (byte %" PRIu64 "): array of %" PRIu64 " %s values runs past end of file"
                          " (%" PRIu64 " bytes left, file size %" PRIu64 ")",
                          r->what, et_off, n, lm_gguf_type_name(kv->arr_type), left, r->size);
                return false;
            }
            r->pos += bytes;
        }
    }
    kv->val_end = r->pos;
    return true;
}

/* Parses tensor info number `idx` at the cursor into *t (name NULL on entry). Checks the parts that
 * do not depend on the alignment / data offset: name, n_dims, dims, type, block multiple, byte size. */
static bool parse_tensor_info(rd *r, int64_t idx, lm_gguf_tensor *t) {
    snprintf(r->what, sizeof r->what, "tensor %" PRId64, idx);
    uint64_t info_off = r->pos;
    char *name = rd_name(r, "name");
    if (!name) return false;
    t->name = name;
    char shown[GGUF_NAME_SHOW + 4];
    snprintf(r->what, sizeof r->what, "tensor '%s'", show_name(shown, name, strlen(name)));

    uint64_t nd_off = r->pos;
    if (!rd_u32(r, &t->n_dims, "n_dims")) return false;
    if (t->n_dims < 1 || t->n_dims > LM_GGUF_MAX_DIMS) {
        lm_seterr(r->err, r->err_size, "gguf: %s (byte %" PRIu64 "): n_dims %" PRIu32 " is not in 1..%d",
                  r->what, nd_off, t->n_dims, LM_GGUF_MAX_DIMS);
        return false;
    }
    int64_t nelem = 1;
    for (uint32_t d = 0; d < LM_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne, ne_off = r->pos;
        if (!rd_u64(r, &ne, "dimension")) return false;
        if (ne < 1 || ne > (uint64_t)INT64_MAX) {
            lm_seterr(r->err, r->err_size,
                      "gguf: %s (byte %" PRIu64 "): dimension %" PRIu32 " is %" PRIu64
                      " (must be 1..2^63-1)",
                      r->what, ne_off, d, ne);
            return false;
        }
        t->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(nelem, t->ne[d], &nelem)) {
            lm_seterr(r->err, r->err_size,
                      "gguf: %s (byte %" PRIu64 "): element count overflows int64 (dims %" PRId64
                      " x %" PRId64 " x %" PRId64 " x %" PRId64 " ...)",
                      r->what, info_off, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
            return false;
        }
    }
    uint64_t type_off = r->pos;
    if (!rd_u32(r, &t->type, "type")) return false;
    const lm_type_traits *tr = lm_type_traits_get(t->type);
    if (!tr) {
        const char *other = ggml_other_type_name(t->type);
        lm_seterr(r->err, r->err_size, "gguf: %s (byte %" PRIu64 "): unknown or unsupported tensor type id %" PRIu32 "%s%s%s",
                  r->what, type_off, t->type, other ? " (" : "", other ? other : "", other ? ", not supported by llamita)" : "");
        return false;
    }
    if (!rd_u64(r, &t->offset, "data offset")) return false;
    if (t->ne[0] % tr->blck_size != 0) {
        lm_seterr(r->err, r->err_size,
                  "gguf: %s (byte %" PRIu64 "): row length %" PRId64 " is not a multiple of %s's block size %" PRId64,
                  r->what, info_off, t->ne[0], tr->name, tr->blck_size);
        return false;
    }
    uint64_t nbytes = (uint64_t)(t->ne[0] / tr->blck_size);
    bool ok = lm_mul_u64(nbytes, (uint64_t)tr->type_size, &nbytes);
    for (uint32_t d = 1; d < LM_GGUF_MAX_DIMS && ok; d++) ok = lm_mul_u64(nbytes, (uint64_t)t->ne[d], &nbytes);
    if (!ok) {
        lm_seterr(r->err, r->err_size, "gguf: %s (byte %" PRIu64 "): byte size overflows", r->what, info_off);
        return false;
    }
    t->nbytes = nbytes;
    return true;
}

/* Parses and validates the whole mapped file into g (map, size, path already set). */
static bool parse_file(lm_gguf *g, char *err, size_t err_size) {
    rd r = {.p = g->map, .size = g->size, .pos = 0, .err = err, .err_size = err_size};
    snprintf(r.what, sizeof r.what, "the header");
    if (g->size < 4) {
        lm_seterr(err, err_size, "gguf: file too short for a GGUF header (%" PRIu64 " bytes)", g->size);
        return false;
    }
    uint32_t magic = rd_u32_at(g->map);
    if (magic != GGUF_MAGIC_LE) {
        lm_seterr(err, err_size,
                  "gguf: bad magic %02x %02x %02x %02x at byte 0 (expected \"GGUF\"): not a GGUF file",
                  g->map[0], g->map[1], g->map[2], g->map[3]);
        return false;
    }
    r.pos = 4;
    if (!rd_u32(&r, &g->version, "version")) return false;
    if (g->version != 2 && g->version != 3) {
        bool swapped = g->version == 0x02000000u || g->version == 0x03000000u;
        lm_seterr(err, err_size, "gguf: unsupported GGUF version %" PRIu32 " (byte 4)%s", g->version,
                  swapped ? ": big-endian file, only little-endian is supported" : "");
        return false;
    }
    uint64_t n_tensors, n_kv;
    if (!rd_u64(&r, &n_tensors, "tensor count") || !rd_u64(&r, &n_kv, "key/value count")) return false;
    uint64_t left = g->size - r.pos;
    if (n_tensors > left / GGUF_MIN_TINFO_SIZE) {
        lm_seterr(err, err_size,
                  "gguf: tensor count %" PRIu64 " (byte 8) cannot fit in a file of %" PRIu64 " bytes",
                  n_tensors, g->size);
        return false;
    }
    if (n_kv > left / GGUF_MIN_KV_SIZE) {
        lm_seterr(err, err_size,
                  "gguf: key/value count %" PRIu64 " (byte 16) cannot fit in a file of %" PRIu64 " bytes",
                  n_kv, g->size);
        return false;
    }

    /* ---- key/value pairs ---- */
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->kv_sorted = malloc((n_kv ? n_kv : 1) * sizeof *g->kv_sorted);
    if (!g->kv || !g->kv_sorted) {
        lm_seterr(err, err_size, "gguf: out of memory for %" PRIu64 " keys", n_kv);
        return false;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so that close() frees what was allocated */
        if (!parse_kv(&r, (int64_t)i, &g->kv[i])) return false;
        g->kv_sorted[i] = &g->kv[i];
    }
    g->n_kv = (int64_t)n_kv;
    if (n_kv > 1) qsort(g->kv_sorted, n_kv, sizeof *g->kv_sorted, cmp_kv_ptr);
    for (uint64_t i = 1; i < n_kv; i++) {
        if (strcmp(g->kv_sorted[i - 1]->key, g->kv_sorted[i]->key) == 0) {
            const lm_gguf_kv *a = g->kv_sorted[i - 1], *b = g->kv_sorted[i];
            if (a->key_off > b->key_off) { const lm_gguf_kv *t = a; a = b; b = t; }
            char shown[GGUF_NAME_SHOW + 4];
            lm_seterr(err, err_size, "gguf: duplicate key '%s' (bytes %" PRIu64 " and %" PRIu64 ")",
                      show_name(shown, a->key, strlen(a->key)), a->key_off, b->key_off);
            return false;
        }
    }

    /* ---- alignment ---- */
    g->alignment = LM_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = lm_gguf_find_key(g, GGUF_ALIGNMENT_KEY);
    if (ai >= 0) {
        const lm_gguf_kv *kv = &g->kv[ai];
        if (kv->type != LM_GGUF_UINT32) {
            lm_seterr(err, err_size, "gguf: key '" GGUF_ALIGNMENT_KEY "' (byte %" PRIu64 ") has type %s, must be u32",
                      kv->key_off, lm_gguf_type_name(kv->type));
            return false;
        }
        uint32_t a = rd_u32_at(g->map + kv->data_off);
        if (a == 0 || (a & (a - 1)) != 0) {
            lm_seterr(err, err_size,
                      "gguf: key '" GGUF_ALIGNMENT_KEY "' (byte %" PRIu64 ") is %" PRIu32
                      ", must be a non-zero power of two",
                      kv->key_off, a);
            return false;
        }
        g->alignment = a;
    }

    /* ---- tensor infos ---- */
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->tinfo_off = malloc((n_tensors ? n_tensors : 1) * sizeof *g->tinfo_off);
    g->t_sorted = malloc((n_tensors ? n_tensors : 1) * sizeof *g->t_sorted);
    if (!g->tensors || !g->tinfo_off || !g->t_sorted) {
        lm_seterr(err, err_size, "gguf: out of memory for %" PRIu64 " tensors", n_tensors);
        return false;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        g->tinfo_off[i] = r.pos;
        if (!parse_tensor_info(&r, (int64_t)i, &g->tensors[i])) return false;
        g->t_sorted[i] = &g->tensors[i];
    }
    g->n_tensors = (int64_t)n_tensors;
    if (n_tensors > 1) qsort(g->t_sorted, n_tensors, sizeof *g->t_sorted, cmp_tensor_ptr);
    for (uint64_t i = 1; i < n_tensors; i++) {
        if (strcmp(g->t_sorted[i - 1]->name, g->t_sorted[i]->name) == 0) {
            uint64_t ia = (uint64_t)(g->t_sorted[i - 1] - g->tensors), ib = (uint64_t)(g->t_sorted[i] - g->tensors);
            if (ia > ib) { uint64_t t = ia; ia = ib; ib = t; }
            char shown[GGUF_NAME_SHOW + 4];
            const char *nm = g->tensors[ia].name;
            lm_seterr(err, err_size,
                      "gguf: duplicate tensor name '%s' (tensor infos %" PRIu64 " and %" PRIu64
                      " at bytes %" PRIu64 " and %" PRIu64 ")",
                      show_name(shown, nm, strlen(nm)), ia, ib, g->tinfo_off[ia], g->tinfo_off[ib]);
            return false;
        }
    }

    /* ---- data section ---- */
    uint64_t a = g->alignment;
    g->data_offset = (r.pos + (a - 1)) / a * a; /* r.pos <= size < 2^63: no overflow */
    for (uint64_t i = 0; i < n_tensors; i++) {
        lm_gguf_tensor *t = &g->tensors[i];
        char shown[GGUF_NAME_SHOW + 4];
        show_name(shown, t->name, strlen(t->name));
        if (t->offset % a != 0) {
            lm_seterr(err, err_size,
                      "gguf: tensor '%s' (info at byte %" PRIu64 "): data offset %" PRIu64
                      " is not a multiple of the alignment %" PRIu64,
                      shown, g->tinfo_off[i], t->offset, a);
            return false;
        }
        uint64_t start, end;
        if (!lm_add_u64(g->data_offset, t->offset, &start) || !lm_add_u64(start, t->nbytes, &end) ||
            end > g->size) {
            lm_seterr(err, err_size,
                      "gguf: tensor '%s' data [offset %" PRIu64 ", %" PRIu64
                      " bytes] runs past end of file (size %" PRIu64 ")",
                      shown, lm_add_u64(g->data_offset, t->offset, &start) ? start : UINT64_MAX,
                      t->nbytes, g->size);
            return false;
        }
        t->file_offset = start;
        t->data = g->map + start;
    }
    return true;
}

lm_gguf *lm_gguf_open(const char *path, char *err, size_t err_size) {
    if (!path) {
        lm_seterr(err, err_size, "gguf: no path given");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lm_seterr(err, err_size, "gguf: cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        lm_seterr(err, err_size, "gguf: cannot stat '%s': %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        lm_seterr(err, err_size, "gguf: '%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < (off_t)GGUF_HEADER_SIZE) {
        lm_seterr(err, err_size,
                  "gguf: '%s' is too short for a GGUF file (%lld bytes; the header alone is %u)", path,
                  (long long)st.st_size, GGUF_HEADER_SIZE);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX || (uint64_t)st.st_size > (uint64_t)INT64_MAX) {
        lm_seterr(err, err_size, "gguf: '%s' is too large to map (%lld bytes)", path, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    lm_gguf *g = calloc(1, sizeof *g);
    char *pcopy = strdup(path);
    if (!g || !pcopy) {
        free(g);
        free(pcopy);
        close(fd);
        lm_seterr(err, err_size, "gguf: out of memory opening '%s'", path);
        return NULL;
    }
    g->path = pcopy;
    g->size = (uint64_t)st.st_size;
    void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (m == MAP_FAILED) {
        lm_seterr(err, err_size, "gguf: cannot map '%s' (%" PRIu64 " bytes): %s", path, g->size,
                  strerror(map_errno));
        lm_gguf_close(g);
        return NULL;
    }
    g->map = m;
#ifdef MADV_HUGEPAGE
    /* Ask for huge pages: file pages read into the page cache as 2 MB folios are then mapped by one
     * PMD each instead of 512 PTEs, and streaming the weights (decode reads all of them per token)
     * stops paying TLB misses: a plain read of a cold-cached 1.1 GB file measured 26-27 GB/s with 4 KB
     * mappings, 35-38 GB/s PMD-mapped (Linux 6.18, ext4). Advice only; pages already cached in small
     * folios stay as they are. */
    (void)madvise(m, (size_t)g->size, MADV_HUGEPAGE);
#endif
    if (!parse_file(g, err, err_size)) {
        lm_gguf_close(g);
        return NULL;
    }
    return g;
}

void lm_gguf_close(lm_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_offs);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tinfo_off);
    free(g->t_sorted);
    if (g->map) munmap((void *)g->map, (size_t)g->size);
    free(g->path);
    free(g);
}

uint32_t lm_gguf_version(const lm_gguf *g) { return g->version; }
uint32_t lm_gguf_alignment(const lm_gguf *g) { return g->alignment; }
uint64_t lm_gguf_file_size(const lm_gguf *g) { return g->size; }
uint64_t lm_gguf_data_offset(const lm_gguf *g) { return g->data_offset; }
const char *lm_gguf_path(const lm_gguf *g) { return g->path; }

/* ---- metadata ---- */

int64_t lm_gguf_n_kv(const lm_gguf *g) { return g->n_kv; }

int64_t lm_gguf_find_key(const lm_gguf *g, const char *key) {
    if (!key) return -1;
    int64_t lo = 0, hi = g->n_kv; /* binary search in kv_sorted */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv_sorted[mid]->key, key);
        if (c == 0) return g->kv_sorted[mid] - g->kv;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* Accessors below return a neutral value for an out-of-range index (a caller bug, never a file
 * problem): NULL key, LM_GGUF_TYPE_COUNT type, 0 count, NULL data, empty string. */
static const lm_gguf_kv *kv_at(const lm_gguf *g, int64_t i) {
    return (g && i >= 0 && i < g->n_kv) ? &g->kv[i] : NULL;
}

const char *lm_gguf_key(const lm_gguf *g, int64_t i) {
    const lm_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

enum lm_gguf_type lm_gguf_kv_type(const lm_gguf *g, int64_t i) {
    const lm_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : LM_GGUF_TYPE_COUNT;
}

enum lm_gguf_type lm_gguf_arr_type(const lm_gguf *g, int64_t i) {
    const lm_gguf_kv *kv = kv_at(g, i);
    return (kv && kv->type == LM_GGUF_ARRAY) ? kv->arr_type : LM_GGUF_TYPE_COUNT;
}

uint64_t lm_gguf_arr_n(const lm_gguf *g, int64_t i) {
    const lm_gguf_kv *kv = kv_at(g, i);
    return (kv && kv->type == LM_GGUF_ARRAY) ? kv->arr_n : 0;
}

const void *lm_gguf_arr_data(const lm_gguf *g, int64_t i) {
    const lm_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != LM_GGUF_ARRAY || kv->arr_type == LM_GGUF_STRING) return NULL;
    return g->map + kv->data_off;
}

const void *lm_gguf_val_data(const lm_gguf *g, int64_t i) {
    const lm_gguf_kv *kv = kv_at(g, i);
    return (kv && is_fixed_type(kv->type)) ? g->map + kv->data_off : NULL;
}

/* Reads the scalar of fixed type t at p as an integer (integer and bool types only). */
static bool scalar_int(enum lm_gguf_type t, const uint8_t *p, int64_t *s, uint64_t *u, bool *is_signed);

bool lm_gguf_arr_get_i64(const lm_gguf *g, int64_t i, uint64_t j, int64_t *out) {
    const lm_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != LM_GGUF_ARRAY || !is_fixed_type(kv->arr_type) || j >= kv->arr_n) return false;
    int64_t s;
    uint64_t u;
    bool is_signed;
    if (!scalar_int(kv->arr_type, g->map + kv->data_off + j * k_value_size[kv->arr_type], &s, &u, &is_signed))
        return false;
    if (!is_signed && u > (uint64_t)INT64_MAX) return false;
    *out = is_signed ? s : (int64_t)u;
    return true;
}

bool lm_gguf_arr_get_f32(const lm_gguf *g, int64_t i, uint64_t j, float *out) {
    const lm_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != LM_GGUF_ARRAY || !is_fixed_type(kv->arr_type) || j >= kv->arr_n) return false;
    const uint8_t *p = g->map + kv->data_off + j * k_value_size[kv->arr_type];
    if (kv->arr_type == LM_GGUF_FLOAT32) { memcpy(out, p, 4); return true; }
    if (kv->arr_type == LM_GGUF_FLOAT64) { double d; memcpy(&d, p, 8); *out = (float)d; return true; }
    if (kv->arr_type == LM_GGUF_BOOL) return false;
    int64_t s;
    uint64_t u;
    bool is_signed;
    if (!scalar_int(kv->arr_type, p, &s, &u, &is_signed)) return false;
    *out = is_signed ? (float)s : (float)u;
    return true;
}

/* String whose u64 length prefix is at file offset off (validated at open). */
static lm_gguf_str str_at(const lm_gguf *g, uint64_t off) {
    lm_gguf_str s = {(const char *)g->map + off + 8, rd_u64_at(g->map + off)};
    return s;
}

lm_gguf_str lm_gguf_arr_str(const lm_gguf *g, int64_t i, uint64_t j) {
    const lm_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != LM_GGUF_ARRAY || kv->arr_type != LM_GGUF_STRING || j >= kv->arr_n) {
        lm_gguf_str empty = {"", 0};
        return empty;
    }
    return str_at(g, kv->str_offs[j]);
}

/* Integer view of a scalar: integer types and bool. Returns false for other types. */
typedef struct ival {
    bool neg;     /* value < 0 (then s holds it) */
    int64_t s;    /* the value when it fits int64 */
    uint64_t u;   /* the value when >= 0 */
} ival;

static bool scalar_int(enum lm_gguf_type t, const uint8_t *p, int64_t *s, uint64_t *u, bool *is_signed) {
    *s = 0;
    *u = 0;
    *is_signed = false;
    switch (t) {
    case LM_GGUF_UINT8: *u = p[0]; break;
    case LM_GGUF_BOOL: *u = p[0] != 0; break;
    case LM_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *u = x; break; }
    case LM_GGUF_UINT32: *u = rd_u32_at(p); break;
    case LM_GGUF_UINT64: *u = rd_u64_at(p); break;
    case LM_GGUF_INT8: { int8_t x; memcpy(&x, p, 1); *s = x; *is_signed = true; break; }
    case LM_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *s = x; *is_signed = true; break; }
    case LM_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *s = x; *is_signed = true; break; }
    case LM_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); *s = x; *is_signed = true; break; }
    default: return false;
    }
    return true;
}

static bool kv_int(const lm_gguf *g, const lm_gguf_kv *kv, ival *v) {
    int64_t s;
    uint64_t u;
    bool is_signed;
    if (!scalar_int(kv->type, g->map + kv->data_off, &s, &u, &is_signed)) return false;
    if (is_signed) {
        v->neg = s < 0;
        v->s = s;
        v->u = s < 0 ? 0 : (uint64_t)s;
    } else {
        v->neg = false;
        v->u = u;
        v->s = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    }
    return true;
}

/* Looks key up for a getter. Returns NULL when absent and then, unless `optional`, writes
 * "key '...' not found" into err. */
static const lm_gguf_kv *getter_kv(const lm_gguf *g, const char *key, bool optional, char *err, size_t err_size) {
    int64_t i = lm_gguf_find_key(g, key);
    if (i < 0) {
        if (!optional) lm_seterr(err, err_size, "gguf: key '%s' not found", key ? key : "(null)");
        return NULL;
    }
    return &g->kv[i];
}

static bool wrong_type(const lm_gguf_kv *kv, const char *expected, char *err, size_t err_size) {
    lm_seterr(err, err_size, "gguf: key '%s' (byte %" PRIu64 ") has type %s, expected %s", kv->key,
              kv->key_off, lm_gguf_type_name(kv->type), expected);
    return false;
}

static bool get_u32_kv(const lm_gguf *g, const lm_gguf_kv *kv, uint32_t *out, char *err, size_t err_size) {
    ival v;
    if (!kv_int(g, kv, &v)) return wrong_type(kv, "an integer (u32)", err, err_size);
    if (v.neg || v.u > UINT32_MAX) {
        if (v.neg) lm_seterr(err, err_size, "gguf: key '%s' value %" PRId64 " does not fit in u32", kv->key, v.s);
        else lm_seterr(err, err_size, "gguf: key '%s' value %" PRIu64 " does not fit in u32", kv->key, v.u);
        return false;
    }
    *out = (uint32_t)v.u;
    return true;
}

static bool get_f32_kv(const lm_gguf *g, const lm_gguf_kv *kv, float *out, char *err, size_t err_size) {
    const uint8_t *p = g->map + kv->data_off;
    if (kv->type == LM_GGUF_FLOAT32) { memcpy(out, p, 4); return true; }
    if (kv->type == LM_GGUF_FLOAT64) { double d; memcpy(&d, p, 8); *out = (float)d; return true; }
    ival v;
    if (kv->type != LM_GGUF_BOOL && kv_int(g, kv, &v)) {
        *out = v.neg ? (float)v.s : (float)v.u;
        return true;
    }
    return wrong_type(kv, "a number (f32)", err, err_size);
}

static bool get_bool_kv(const lm_gguf *g, const lm_gguf_kv *kv, bool *out, char *err, size_t err_size) {
    ival v;
    if (!kv_int(g, kv, &v)) return wrong_type(kv, "bool", err, err_size);
    if (kv->type != LM_GGUF_BOOL && (v.neg || v.u > 1)) {
        lm_seterr(err, err_size, "gguf: key '%s' has %s value %s%" PRIu64 ", expected bool (0 or 1)", kv->key,
                  lm_gguf_type_name(kv->type), v.neg ? "-" : "", v.neg ? (uint64_t)0 - (uint64_t)v.s : v.u);
        return false;
    }
    *out = v.u != 0;
    return true;
}

static bool get_str_kv(const lm_gguf *g, const lm_gguf_kv *kv, lm_gguf_str *out, char *err, size_t err_size) {
    if (kv->type != LM_GGUF_STRING) return wrong_type(kv, "string", err, err_size);
    *out = str_at(g, kv->data_off);
    return true;
}

bool lm_gguf_get_u32(const lm_gguf *g, const char *key, uint32_t *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, false, err, err_size);
    return kv && get_u32_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_i64(const lm_gguf *g, const char *key, int64_t *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, false, err, err_size);
    if (!kv) return false;
    ival v;
    if (!kv_int(g, kv, &v)) return wrong_type(kv, "an integer (i64)", err, err_size);
    if (!v.neg && v.u > (uint64_t)INT64_MAX) {
        lm_seterr(err, err_size, "gguf: key '%s' value %" PRIu64 " does not fit in i64", kv->key, v.u);
        return false;
    }
    *out = v.s;
    return true;
}

bool lm_gguf_get_f32(const lm_gguf *g, const char *key, float *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, false, err, err_size);
    return kv && get_f32_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_bool(const lm_gguf *g, const char *key, bool *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, false, err, err_size);
    return kv && get_bool_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_str(const lm_gguf *g, const char *key, lm_gguf_str *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, false, err, err_size);
    return kv && get_str_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_u32_opt(const lm_gguf *g, const char *key, uint32_t *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, true, err, err_size);
    return !kv || get_u32_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_f32_opt(const lm_gguf *g, const char *key, float *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, true, err, err_size);
    return !kv || get_f32_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_bool_opt(const lm_gguf *g, const char *key, bool *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, true, err, err_size);
    return !kv || get_bool_kv(g, kv, out, err, err_size);
}

bool lm_gguf_get_str_opt(const lm_gguf *g, const char *key, lm_gguf_str *out, char *err, size_t err_size) {
    const lm_gguf_kv *kv = getter_kv(g, key, true, err, err_size);
    return !kv || get_str_kv(g, kv, out, err, err_size);
}

/* snprintf-style appender: counts the full length, writes what fits, keeps buf NUL-terminated. */
typedef struct sbuf {
    char *buf;
    size_t size;
    size_t len; /* full length so far (may exceed size) */
} sbuf;

static void sb_putc(sbuf *b, char c) {
    if (b->len + 1 < b->size) {
        b->buf[b->len] = c;
        b->buf[b->len + 1] = 0;
    }
    b->len++;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    for (int k = 0; k < n && k < (int)sizeof tmp - 1; k++) sb_putc(b, tmp[k]);
}

/* Appends s quoted, with \" \\ \n \r \t and \xNN for other control bytes; UTF-8 passes through. */
static void sb_quoted(sbuf *b, lm_gguf_str s) {
    sb_putc(b, '"');
    for (uint64_t k = 0; k < s.len; k++) {
        unsigned char c = (unsigned char)s.data[k];
        switch (c) {
        case '"': sb_putc(b, '\\'); sb_putc(b, '"'); break;
        case '\\': sb_putc(b, '\\'); sb_putc(b, '\\'); break;
        case '\n': sb_putc(b, '\\'); sb_putc(b, 'n'); break;
        case '\r': sb_putc(b, '\\'); sb_putc(b, 'r'); break;
        case '\t': sb_putc(b, '\\'); sb_putc(b, 't'); break;
        default:
            if (c < 0x20 || c == 0x7f) sb_printf(b, "\\x%02x", c);
            else sb_putc(b, (char)c);
        }
    }
    sb_putc(b, '"');
}

/* Appends the scalar of type t stored at p. */
static void sb_scalar(sbuf *b, enum lm_gguf_type t, const uint8_t *p) {
    switch (t) {
    case LM_GGUF_UINT8: sb_printf(b, "%u", (unsigned)p[0]); break;
    case LM_GGUF_INT8: { int8_t x; memcpy(&x, p, 1); sb_printf(b, "%d", (int)x); break; }
    case LM_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); sb_printf(b, "%u", (unsigned)x); break; }
    case LM_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); sb_printf(b, "%d", (int)x); break; }
    case LM_GGUF_UINT32: sb_printf(b, "%" PRIu32, rd_u32_at(p)); break;
    case LM_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); sb_printf(b, "%" PRId32, x); break; }
    case LM_GGUF_UINT64: sb_printf(b, "%" PRIu64, rd_u64_at(p)); break;
    case LM_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); sb_printf(b, "%" PRId64, x); break; }
    case LM_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); sb_printf(b, "%g", (double)x); break; }
    case LM_GGUF_FLOAT64: { double x; memcpy(&x, p, 8); sb_printf(b, "%g", x); break; }
    case LM_GGUF_BOOL: sb_printf(b, "%s", p[0] ? "true" : "false"); break;
    default: sb_printf(b, "?"); break;
    }
}

/* Renders value i: numbers in decimal (floats with %g), bools as true/false, strings quoted with C
 * escapes, arrays as "[a, b, ... (N total)]" showing at most max_elems elements (all if negative). */
int lm_gguf_kv_to_str(const lm_gguf *g, int64_t i, char *buf, size_t buf_size, int max_elems) {
    sbuf b = {buf, buf_size, 0};
    if (buf && buf_size) buf[0] = 0;
    const lm_gguf_kv *kv = kv_at(g, i);
    if (!kv) return 0;
    if (kv->type == LM_GGUF_STRING) {
        sb_quoted(&b, str_at(g, kv->data_off));
    } else if (kv->type != LM_GGUF_ARRAY) {
        sb_scalar(&b, kv->type, g->map + kv->data_off);
    } else {
        uint64_t n = kv->arr_n;
        uint64_t show = max_elems < 0 ? n : LM_MIN(n, (uint64_t)max_elems);
        sb_putc(&b, '[');
        for (uint64_t j = 0; j < show; j++) {
            if (j) sb_printf(&b, ", ");
            if (kv->arr_type == LM_GGUF_STRING) sb_quoted(&b, str_at(g, kv->str_offs[j]));
            else sb_scalar(&b, kv->arr_type, g->map + kv->data_off + j * k_value_size[kv->arr_type]);
        }
        if (show < n) sb_printf(&b, "%s... (%" PRIu64 " total)", show ? ", " : "", n);
        sb_putc(&b, ']');
    }
    return b.len > (size_t)INT32_MAX ? INT32_MAX : (int)b.len;
}

/* ---- tensors ---- */

int64_t lm_gguf_n_tensors(const lm_gguf *g) { return g->n_tensors; }

const lm_gguf_tensor *lm_gguf_tensor_at(const lm_gguf *g, int64_t i) {
    return (g && i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const lm_gguf_tensor *lm_gguf_find_tensor(const lm_gguf *g, const char *name) {
    if (!name) return NULL;
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t_sorted[mid]->name, name);
        if (c == 0) return g->t_sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ================================================================================================
 * Writer
 * ============================================================================================== */

typedef struct wkv {
    char *key;      /* owned */
    uint32_t type;  /* value type */
    uint8_t *val;   /* [val_size] owned: the value exactly as serialized after the u32 type */
    size_t val_size;
} wkv;

typedef struct wtensor {
    char *name;        /* owned */
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[LM_GGUF_MAX_DIMS];
    const void *data;  /* [nbytes] referenced, not owned; NULL = zeros */
    uint64_t nbytes;
} wtensor;

struct lm_gguf_writer {
    uint32_t version;
    uint32_t alignment;
    wkv *kv;            /* [n_kv] in first-set order */
    size_t n_kv, cap_kv;
    wtensor *t;         /* [n_t] in add order */
    size_t n_t, cap_t;
    bool failed;        /* a setter failed (bad argument / out of memory): write() reports err */
    char err[256];
};

lm_gguf_writer *lm_gguf_writer_new(void) {
    lm_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->version = 3;
    w->alignment = LM_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void lm_gguf_writer_free(lm_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Records the first setter failure; lm_gguf_writer_write() reports it. */
static void w_fail(lm_gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void w_fail(lm_gguf_writer *w, const char *fmt, ...) {
    if (w->failed) return;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
}

static bool pow2_nonzero(uint64_t a) { return a != 0 && (a & (a - 1)) == 0; }

/* Stores key = (type, val[val_size]) where val is the value serialized as in the file (after the
 * u32 type). Takes ownership of val (malloc'd; NULL means an allocation failed upstream, recorded as
 * out of memory). Replaces the value if the key exists, else appends. Setting general.alignment
 * (must be a u32 non-zero power of two) also sets the writer's alignment. */
static void w_put(lm_gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t val_size) {
    if (!w) { free(val); return; }
    if (!key || !val) {
        free(val);
        w_fail(w, "gguf writer: %s", key ? "out of memory" : "NULL key");
        return;
    }
    if (strcmp(key, GGUF_ALIGNMENT_KEY) == 0) {
        uint32_t a = 0;
        if (type == LM_GGUF_UINT32) memcpy(&a, val, 4);
        if (type != LM_GGUF_UINT32 || !pow2_nonzero(a)) {
            free(val);
            w_fail(w, "gguf writer: key '" GGUF_ALIGNMENT_KEY "' must be a u32 non-zero power of two");
            return;
        }
        w->alignment = a;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_size = val_size;
            return;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) { free(val); w_fail(w, "gguf writer: out of memory"); return; }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(val); w_fail(w, "gguf writer: out of memory"); return; }
    w->kv[w->n_kv++] = (wkv){k, type, val, val_size};
}

/* A malloc'd copy of p[n] (n may be 0: allocates 1 byte). */
static uint8_t *dup_bytes(const void *p, size_t n) {
    uint8_t *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

static void w_scalar(lm_gguf_writer *w, const char *key, uint32_t type, const void *v) {
    w_put(w, key, type, dup_bytes(v, k_value_size[type]), k_value_size[type]);
}

void lm_gguf_writer_set_version(lm_gguf_writer *w, uint32_t version) {
    if (!w) return;
    if (version != 2 && version != 3) { w_fail(w, "gguf writer: version %" PRIu32 " (only 2 or 3)", version); return; }
    w->version = version;
}

void lm_gguf_writer_set_alignment(lm_gguf_writer *w, uint32_t alignment) {
    if (!w) return;
    if (!pow2_nonzero(alignment)) {
        w_fail(w, "gguf writer: alignment %" PRIu32 " is not a non-zero power of two", alignment);
        return;
    }
    bool have_key = false;
    for (size_t i = 0; i < w->n_kv; i++) have_key |= strcmp(w->kv[i].key, GGUF_ALIGNMENT_KEY) == 0;
    if (alignment != LM_GGUF_DEFAULT_ALIGNMENT || have_key) lm_gguf_writer_set_u32(w, GGUF_ALIGNMENT_KEY, alignment);
    else w->alignment = alignment;
}

void lm_gguf_writer_set_u8(lm_gguf_writer *w, const char *key, uint8_t v) { w_scalar(w, key, LM_GGUF_UINT8, &v); }
void lm_gguf_writer_set_i8(lm_gguf_writer *w, const char *key, int8_t v) { w_scalar(w, key, LM_GGUF_INT8, &v); }
void lm_gguf_writer_set_u16(lm_gguf_writer *w, const char *key, uint16_t v) { w_scalar(w, key, LM_GGUF_UINT16, &v); }
void lm_gguf_writer_set_i16(lm_gguf_writer *w, const char *key, int16_t v) { w_scalar(w, key, LM_GGUF_INT16, &v); }
void lm_gguf_writer_set_u32(lm_gguf_writer *w, const char *key, uint32_t v) { w_scalar(w, key, LM_GGUF_UINT32, &v); }
void lm_gguf_writer_set_i32(lm_gguf_writer *w, const char *key, int32_t v) { w_scalar(w, key, LM_GGUF_INT32, &v); }
void lm_gguf_writer_set_u64(lm_gguf_writer *w, const char *key, uint64_t v) { w_scalar(w, key, LM_GGUF_UINT64, &v); }
void lm_gguf_writer_set_i64(lm_gguf_writer *w, const char *key, int64_t v) { w_scalar(w, key, LM_GGUF_INT64, &v); }
void lm_gguf_writer_set_f32(lm_gguf_writer *w, const char *key, float v) { w_scalar(w, key, LM_GGUF_FLOAT32, &v); }
void lm_gguf_writer_set_f64(lm_gguf_writer *w, const char *key, double v) { w_scalar(w, key, LM_GGUF_FLOAT64, &v); }
void lm_gguf_writer_set_bool(lm_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    w_scalar(w, key, LM_GGUF_BOOL, &b);
}

void lm_gguf_writer_set_str(lm_gguf_writer *w, const char *key, const char *v) {
    if (!w) return;
    if (!v) { w_fail(w, "gguf writer: NULL string value for key '%s'", key ? key : "(null)"); return; }
    uint64_t len = strlen(v);
    uint8_t *val = malloc(8 + len);
    if (val) {
        memcpy(val, &len, 8);
        memcpy(val + 8, v, len);
    }
    w_put(w, key, LM_GGUF_STRING, val, 8 + len);
}

void lm_gguf_writer_set_arr(lm_gguf_writer *w, const char *key, enum lm_gguf_type elem_type,
                            const void *data, uint64_t n) {
    if (!w) return;
    if (!is_fixed_type(elem_type)) {
        w_fail(w, "gguf writer: key '%s': array element type %s is not a fixed-size type", key ? key : "(null)",
               lm_gguf_type_name(elem_type));
        return;
    }
    uint64_t bytes, total;
    if (!lm_mul_u64(n, k_value_size[elem_type], &bytes) || !lm_add_u64(bytes, 12, &total) || total > SIZE_MAX ||
        (n && !data)) {
        w_fail(w, "gguf writer: key '%s': bad array (%" PRIu64 " elements)", key ? key : "(null)", n);
        return;
    }
    uint8_t *val = malloc((size_t)total);
    if (val) {
        uint32_t et = (uint32_t)elem_type;
        memcpy(val, &et, 4);
        memcpy(val + 4, &n, 8);
        if (bytes) memcpy(val + 12, data, (size_t)bytes);
    }
    w_put(w, key, LM_GGUF_ARRAY, val, (size_t)total);
}

void lm_gguf_writer_set_arr_str(lm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    if (!w) return;
    if (n && !strs) { w_fail(w, "gguf writer: key '%s': NULL string array", key ? key : "(null)"); return; }
    uint64_t total = 12;
    for (uint64_t j = 0; j < n; j++) {
        if (!strs[j]) { w_fail(w, "gguf writer: key '%s': string %" PRIu64 " is NULL", key ? key : "(null)", j); return; }
        total += 8 + strlen(strs[j]);
    }
    if (total > SIZE_MAX) { w_fail(w, "gguf writer: key '%s': array too large", key ? key : "(null)"); return; }
    uint8_t *val = malloc((size_t)total);
    if (val) {
        uint32_t et = LM_GGUF_STRING;
        memcpy(val, &et, 4);
        memcpy(val + 4, &n, 8);
        size_t pos = 12;
        for (uint64_t j = 0; j < n; j++) {
            uint64_t len = strlen(strs[j]);
            memcpy(val + pos, &len, 8);
            memcpy(val + pos + 8, strs[j], len);
            pos += 8 + len;
        }
    }
    w_put(w, key, LM_GGUF_ARRAY, val, (size_t)total);
}

/* The value bytes of kv i in src are contiguous in the map (val_start..val_end): copy them as is. */
void lm_gguf_writer_copy_kv(lm_gguf_writer *w, const lm_gguf *src, int64_t i) {
    if (!w) return;
    const lm_gguf_kv *kv = kv_at(src, i);
    if (!kv) { w_fail(w, "gguf writer: copy_kv: no key %" PRId64 " in the source", i); return; }
    size_t n = (size_t)(kv->val_end - kv->val_start);
    w_put(w, kv->key, kv->type, dup_bytes(src->map + kv->val_start, n), n);
}

bool lm_gguf_writer_add_tensor(lm_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                               const int64_t *ne, const void *data, char *err, size_t err_size) {
    if (!w || !name) { lm_seterr(err, err_size, "gguf writer: add_tensor: NULL writer or name"); return false; }
    /* llama.cpp stores names in a 64-byte buffer (GGML_MAX_NAME) and rejects longer ones */
    if (strlen(name) >= 64) {
        lm_seterr(err, err_size, "gguf writer: tensor name '%.64s...' is longer than 63 bytes (llama.cpp's limit)", name);
        return false;
    }
    const lm_type_traits *tr = lm_type_traits_get(type);
    if (!tr) { lm_seterr(err, err_size, "gguf writer: tensor '%s': unknown type id %" PRIu32, name, type); return false; }
    if (n_dims < 1 || n_dims > LM_GGUF_MAX_DIMS || !ne) {
        lm_seterr(err, err_size, "gguf writer: tensor '%s': n_dims %" PRIu32 " is not in 1..%d", name, n_dims,
                  LM_GGUF_MAX_DIMS);
        return false;
    }
    wtensor t = {.type = type, .n_dims = n_dims, .data = data};
    int64_t nelem = 1;
    for (uint32_t d = 0; d < LM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1 || __builtin_mul_overflow(nelem, t.ne[d], &nelem)) {
            lm_seterr(err, err_size, "gguf writer: tensor '%s': bad dimension %" PRIu32 " = %" PRId64, name, d, t.ne[d]);
            return false;
        }
    }
    if (t.ne[0] % tr->blck_size != 0) {
        lm_seterr(err, err_size, "gguf writer: tensor '%s': row length %" PRId64 " is not a multiple of %s's block size %" PRId64,
                  name, t.ne[0], tr->name, tr->blck_size);
        return false;
    }
    uint64_t nbytes = (uint64_t)(t.ne[0] / tr->blck_size);
    bool ok = lm_mul_u64(nbytes, (uint64_t)tr->type_size, &nbytes);
    for (uint32_t d = 1; d < LM_GGUF_MAX_DIMS && ok; d++) ok = lm_mul_u64(nbytes, (uint64_t)t.ne[d], &nbytes);
    if (!ok) { lm_seterr(err, err_size, "gguf writer: tensor '%s': byte size overflows", name); return false; }
    t.nbytes = nbytes;
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            lm_seterr(err, err_size, "gguf writer: duplicate tensor name '%s'", name);
            return false;
        }
    }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) { lm_seterr(err, err_size, "gguf writer: out of memory"); return false; }
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) { lm_seterr(err, err_size, "gguf writer: out of memory"); return false; }
    w->t[w->n_t++] = t;
    return true;
}

/* Buffered output to a FILE; the first failure sticks (errno saved). */
typedef struct wout {
    FILE *f;
    uint64_t pos;
    int err_no; /* 0 while all writes succeeded */
} wout;

static void out_bytes(wout *o, const void *p, size_t n) {
    if (o->err_no || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->err_no = errno ? errno : EIO;
    o->pos += n;
}
static void out_u32(wout *o, uint32_t v) { out_bytes(o, &v, 4); }
static void out_u64(wout *o, uint64_t v) { out_bytes(o, &v, 8); }
static void out_str(wout *o, const char *s) {
    uint64_t len = strlen(s);
    out_u64(o, len);
    out_bytes(o, s, (size_t)len);
}
static void out_pad(wout *o, uint64_t alignment) {
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - o->pos % alignment) % alignment;
    while (pad) {
        size_t n = (size_t)LM_MIN(pad, (uint64_t)sizeof zeros);
        out_bytes(o, zeros, n);
        pad -= n;
    }
}

/* Layout: header, kvs in order, tensor infos (offsets = running sum of each tensor's size padded
 * to the alignment), zero padding to the alignment, then each tensor's data followed by zero padding
 * to the alignment (as llama.cpp and gguf-py write it). Written to "<path>.tmp.XXXXXX", flushed and
 * fsynced, then renamed over path; on any failure the temporary file is removed. */
bool lm_gguf_writer_write(lm_gguf_writer *w, const char *path, char *err, size_t err_size) {
    if (!w || !path) { lm_seterr(err, err_size, "gguf writer: NULL writer or path"); return false; }
    if (w->failed) { lm_seterr(err, err_size, "%s", w->err); return false; }
    uint64_t a = w->alignment;
    uint64_t *offs = malloc((w->n_t ? w->n_t : 1) * sizeof *offs); /* [n_t] data offsets */
    if (!offs) { lm_seterr(err, err_size, "gguf writer: out of memory"); return false; }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        offs[i] = off;
        uint64_t padded = (w->t[i].nbytes + a - 1) / a * a;
        if (!lm_add_u64(off, padded, &off)) {
            free(offs);
            lm_seterr(err, err_size, "gguf writer: total tensor size overflows");
            return false;
        }
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) { free(offs); lm_seterr(err, err_size, "gguf writer: out of memory"); return false; }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        lm_seterr(err, err_size, "gguf writer: cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        free(offs);
        return false;
    }
    (void)fchmod(fd, 0644); /* mkstemp creates 0600; a model file is normally world-readable */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        lm_seterr(err, err_size, "gguf writer: cannot open '%s': %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        free(offs);
        return false;
    }
    wout o = {f, 0, 0};
    out_u32(&o, GGUF_MAGIC_LE);
    out_u32(&o, w->version);
    out_u64(&o, (uint64_t)w->n_t);
    out_u64(&o, (uint64_t)w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        out_str(&o, w->kv[i].key);
        out_u32(&o, w->kv[i].type);
        out_bytes(&o, w->kv[i].val, w->kv[i].val_size);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        out_str(&o, t->name);
        out_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) out_u64(&o, (uint64_t)t->ne[d]);
        out_u32(&o, t->type);
        out_u64(&o, offs[i]);
    }
    out_pad(&o, a);
    uint64_t data_start = o.pos;
    static const uint8_t zeros[4096];
    for (size_t i = 0; i < w->n_t && !o.err_no; i++) {
        const wtensor *t = &w->t[i];
        if (o.pos != data_start + offs[i]) { o.err_no = EINVAL; break; } /* our bug: layout mismatch */
        const uint8_t *p = t->data;
        uint64_t left = t->nbytes;
        while (left && !o.err_no) { /* chunks: a short write is reported promptly */
            size_t n = (size_t)LM_MIN(left, p ? (uint64_t)1 << 30 : (uint64_t)sizeof zeros);
            out_bytes(&o, p ? p : zeros, n);
            if (p) p += n;
            left -= n;
        }
        out_pad(&o, a);
    }
    free(offs);
    if (!o.err_no && fflush(f) != 0) o.err_no = errno ? errno : EIO;
    if (!o.err_no && fsync(fileno(f)) != 0 && errno != EINVAL && errno != EROFS) o.err_no = errno;
    /* The written pages sit in the page cache as small folios, which later mappings of the file would
     * map with 4 KB pages; dropped now (they are clean after fsync), the first load reads the file back
     * into large folios (see lm_gguf_open). */
    if (!o.err_no) (void)posix_fadvise(fileno(f), 0, 0, POSIX_FADV_DONTNEED);
    if (fclose(f) != 0 && !o.err_no) o.err_no = errno ? errno : EIO;
    if (!o.err_no && rename(tmp, path) != 0) {
        lm_seterr(err, err_size, "gguf writer: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return false;
    }
    if (o.err_no) {
        lm_seterr(err, err_size, "gguf writer: writing '%s' failed at byte %" PRIu64 ": %s", tmp, o.pos,
                  strerror(o.err_no));
        unlink(tmp);
        free(tmp);
        return false;
    }
    free(tmp);
    return true;
}
