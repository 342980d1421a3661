/*
 * GGUF v2/v3 reader and writer. Knows nothing of Llama.
 *
 * File layout (little-endian):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv   x { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (default 32) | tensor data (each tensor at data_start + offset,
 *   offsets multiples of the alignment)
 *   string = u64 len | len bytes (no NUL);  array = u32 elem_type | u64 n | n elements
 *
 * Reader: the whole file is mmapped read-only; tensor data pointers point into the map and are never
 * copied. Every count, length, dimension product and offset is checked against the file size and
 * for integer overflow; errors name the key or tensor and the byte offset.
 */
#ifndef LM_GGUF_H
#define LM_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lm_gguf_type {
    LM_GGUF_UINT8 = 0,
    LM_GGUF_INT8 = 1,
    LM_GGUF_UINT16 = 2,
    LM_GGUF_INT16 = 3,
    LM_GGUF_UINT32 = 4,
    LM_GGUF_INT32 = 5,
    LM_GGUF_FLOAT32 = 6,
    LM_GGUF_BOOL = 7,
    LM_GGUF_STRING = 8,
    LM_GGUF_ARRAY = 9,
    LM_GGUF_UINT64 = 10,
    LM_GGUF_INT64 = 11,
    LM_GGUF_FLOAT64 = 12,
    LM_GGUF_TYPE_COUNT
};

#define LM_GGUF_DEFAULT_ALIGNMENT 32
#define LM_GGUF_MAX_DIMS 4

/* A string inside the mapped file: not NUL-terminated. */
typedef struct lm_gguf_str {
    const char *data;
    uint64_t len;
} lm_gguf_str;

typedef struct lm_gguf_tensor {
    const char *name;     /* NUL-terminated copy, owned by the lm_gguf */
    uint32_t n_dims;      /* 1..4 */
    int64_t ne[LM_GGUF_MAX_DIMS]; /* ne[0] = row length (fastest varying); unused dims are 1 */
    uint32_t type;        /* ggml type id (enum lm_type in quant.h) */
    uint64_t offset;      /* relative to the start of the data section */
    uint64_t file_offset; /* absolute byte offset in the file */
    uint64_t nbytes;      /* bytes of data (row size x rows) */
    const void *data;     /* points into the map */
} lm_gguf_tensor;

typedef struct lm_gguf lm_gguf;

/* Opens, maps and fully validates a GGUF file. NULL on error (message in err). Tensor types must be
 * known ggml type ids with a known block size (quant.h's traits); tensors of types we can't compute
 * with are still listed (the model loader decides). */
lm_gguf *lm_gguf_open(const char *path, char *err, size_t err_size);
void lm_gguf_close(lm_gguf *g); /* NULL is a no-op */

uint32_t lm_gguf_version(const lm_gguf *g);
uint32_t lm_gguf_alignment(const lm_gguf *g);
uint64_t lm_gguf_file_size(const lm_gguf *g);
uint64_t lm_gguf_data_offset(const lm_gguf *g); /* start of the tensor data section */
const char *lm_gguf_path(const lm_gguf *g);

/* ---- metadata ---- */
int64_t lm_gguf_n_kv(const lm_gguf *g);
int64_t lm_gguf_find_key(const lm_gguf *g, const char *key); /* index, or -1 */
const char *lm_gguf_key(const lm_gguf *g, int64_t i);         /* NUL-terminated, owned by g */
enum lm_gguf_type lm_gguf_kv_type(const lm_gguf *g, int64_t i);
/* For ARRAY values: element type and count. */
enum lm_gguf_type lm_gguf_arr_type(const lm_gguf *g, int64_t i);
uint64_t lm_gguf_arr_n(const lm_gguf *g, int64_t i);
/* Raw element data of a non-string array (little-endian, packed), pointing into the map.
 * NOT ALIGNED: GGUF does not align metadata, so this pointer may be odd. Never dereference it as
 * `const float *` / `const int32_t *` (undefined behaviour, UBSan aborts): memcpy the elements out,
 * or use lm_gguf_arr_get_f32 / lm_gguf_arr_get_i64 below. */
const void *lm_gguf_arr_data(const lm_gguf *g, int64_t i);
/* Element j of a string array (O(1): offsets are indexed at open time). */
lm_gguf_str lm_gguf_arr_str(const lm_gguf *g, int64_t i, uint64_t j);
/* Scalar values. The getters convert between integer types when the value fits, and bool <-> int;
 * they return false (with a message naming the key and its actual type) when the key is absent or
 * of an incompatible type. `_opt` variants return true and leave *out unchanged when the key is
 * absent, false only for a wrong type. */
bool lm_gguf_get_u32(const lm_gguf *g, const char *key, uint32_t *out, char *err, size_t err_size);
bool lm_gguf_get_i64(const lm_gguf *g, const char *key, int64_t *out, char *err, size_t err_size);
bool lm_gguf_get_f32(const lm_gguf *g, const char *key, float *out, char *err, size_t err_size);
bool lm_gguf_get_bool(const lm_gguf *g, const char *key, bool *out, char *err, size_t err_size);
bool lm_gguf_get_str(const lm_gguf *g, const char *key, lm_gguf_str *out, char *err, size_t err_size);
bool lm_gguf_get_u32_opt(const lm_gguf *g, const char *key, uint32_t *out, char *err, size_t err_size);
bool lm_gguf_get_f32_opt(const lm_gguf *g, const char *key, float *out, char *err, size_t err_size);
bool lm_gguf_get_bool_opt(const lm_gguf *g, const char *key, bool *out, char *err, size_t err_size);
bool lm_gguf_get_str_opt(const lm_gguf *g, const char *key, lm_gguf_str *out, char *err, size_t err_size);
/* Value i rendered as text into buf (snprintf contract: returns full length). Arrays show at most
 * max_elems elements (all if max_elems < 0) then ", ... (N total)", e.g. `["<unk>", "<s>", ...
 * (32000 total)]`. Strings are double-quoted with C escapes (\" \\ \n \r \t \xNN); floats use %g. */
int lm_gguf_kv_to_str(const lm_gguf *g, int64_t i, char *buf, size_t buf_size, int max_elems);
const char *lm_gguf_type_name(enum lm_gguf_type t); /* "u32", "string", ... */

/* ---- tensors ---- */
int64_t lm_gguf_n_tensors(const lm_gguf *g);
const lm_gguf_tensor *lm_gguf_tensor_at(const lm_gguf *g, int64_t i);
const lm_gguf_tensor *lm_gguf_find_tensor(const lm_gguf *g, const char *name); /* NULL if absent */

/* ---- writer ----
 * Collects metadata and tensors, then writes a GGUF v3 file (to a temporary name, renamed into place
 * once complete). Keys are written in the order they were first set; setting a key again replaces its
 * value. Tensor data is NOT copied: it must stay valid until lm_gguf_writer_write() returns. */
typedef struct lm_gguf_writer lm_gguf_writer;

lm_gguf_writer *lm_gguf_writer_new(void);
void lm_gguf_writer_free(lm_gguf_writer *w); /* NULL is a no-op */
void lm_gguf_writer_set_version(lm_gguf_writer *w, uint32_t version); /* 2 or 3 (default 3) */
/* general.alignment is written as a u32 key when it differs from 32 (default 32; power of two). */
void lm_gguf_writer_set_alignment(lm_gguf_writer *w, uint32_t alignment);
void lm_gguf_writer_set_u8(lm_gguf_writer *w, const char *key, uint8_t v);
void lm_gguf_writer_set_i8(lm_gguf_writer *w, const char *key, int8_t v);
void lm_gguf_writer_set_u16(lm_gguf_writer *w, const char *key, uint16_t v);
void lm_gguf_writer_set_i16(lm_gguf_writer *w, const char *key, int16_t v);
void lm_gguf_writer_set_u32(lm_gguf_writer *w, const char *key, uint32_t v);
void lm_gguf_writer_set_i32(lm_gguf_writer *w, const char *key, int32_t v);
void lm_gguf_writer_set_u64(lm_gguf_writer *w, const char *key, uint64_t v);
void lm_gguf_writer_set_i64(lm_gguf_writer *w, const char *key, int64_t v);
void lm_gguf_writer_set_f32(lm_gguf_writer *w, const char *key, float v);
void lm_gguf_writer_set_f64(lm_gguf_writer *w, const char *key, double v);
void lm_gguf_writer_set_bool(lm_gguf_writer *w, const char *key, bool v);
void lm_gguf_writer_set_str(lm_gguf_writer *w, const char *key, const char *v);
/* Array of a fixed-size element type (not STRING/ARRAY): n elements packed little-endian; copied. */
void lm_gguf_writer_set_arr(lm_gguf_writer *w, const char *key, enum lm_gguf_type elem_type,
                            const void *data, uint64_t n);
/* Array of strings (NUL-terminated); copied. */
void lm_gguf_writer_set_arr_str(lm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copies key/value i of another file (any type, arrays included). */
void lm_gguf_writer_copy_kv(lm_gguf_writer *w, const lm_gguf *src, int64_t i);
/* Adds a tensor. ne[0] must be a multiple of the type's block size. Data (lm_row_size(type, ne[0]) x
 * rows bytes) is referenced, not copied. Returns false (message in err) on a bad type, shape or
 * duplicate name. data == NULL writes zeros. Names must be shorter than 64 bytes (llama.cpp's
 * limit). */
bool lm_gguf_writer_add_tensor(lm_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                               const int64_t *ne, const void *data, char *err, size_t err_size);
/* Writes the file. Returns false with a message on I/O errors. */
bool lm_gguf_writer_write(lm_gguf_writer *w, const char *path, char *err, size_t err_size);

/* ---- additions (H1) ---- */
/* Raw little-endian bytes of scalar value i (any type but STRING/ARRAY), pointing into the map;
 * NULL for strings, arrays or a bad index. For exact access to u64/f64 values and for tests. */
const void *lm_gguf_val_data(const lm_gguf *g, int64_t i);
/* Element j of a numeric array i. _f32: any integer or float element type, converted to float.
 * _i64: any integer or bool element type (u64 values above INT64_MAX fail). Return false (no
 * message) for a non-array, a wrong element type or j out of range. O(1). */
bool lm_gguf_arr_get_f32(const lm_gguf *g, int64_t i, uint64_t j, float *out);
bool lm_gguf_arr_get_i64(const lm_gguf *g, int64_t i, uint64_t j, int64_t *out);

#endif
