/*
 * GGUF reader/writer tests (src/gguf.c).
 *  - every .gguf under ../shared opens; tensor names/types/shapes agree with
 *    ../shared/fixtures/MANIFEST.tensors.txt; tensor data pointers hold the file's bytes;
 *  - writer round trip (every value type, arrays, string arrays, v2/v3, alignment 1/32/64, tensors
 *    of several types and ranks), plus one file compared byte for byte with a hand-built image;
 *  - copy_kv reproduces a fixture's tokenizer.* keys;
 *  - bad input: truncation at every byte, and hand-built files with each kind of corruption, each
 *    giving NULL and a message naming what was wrong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>

#include "common.h"
#include "gguf.h"
#include "quant.h"

/* ---------------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------------- */

/* Growable byte image of a GGUF file, for hand-built (also corrupt) files. */
typedef struct img {
    uint8_t *p;
    size_t n, cap;
} img;

static void img_bytes(img *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void img_u32(img *b, uint32_t v) { img_bytes(b, &v, 4); }
static void img_u64(img *b, uint64_t v) { img_bytes(b, &v, 8); }
static void img_str(img *b, const char *s) { img_u64(b, strlen(s)); img_bytes(b, s, strlen(s)); }
static void img_pad(img *b, size_t a) { while (b->n % a) img_bytes(b, "", 1); }
static void img_header(img *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    img_bytes(b, "GGUF", 4);
    img_u32(b, version);
    img_u64(b, n_tensors);
    img_u64(b, n_kv);
}
static void img_tinfo(img *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    img_str(b, name);
    img_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) img_u64(b, ne[d]);
    img_u32(b, type);
    img_u64(b, off);
}

static const char *tmp_path(const char *name) {
    static char buf[8][8192];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", lm_test_tmpdir(), name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Opens the image; asserts failure with a message containing every non-NULL needle. */
static void expect_fail_img(const img *b, const char *needle1, const char *needle2) {
    const char *path = tmp_path("bad.gguf");
    write_bytes(path, b->p, b->n);
    char err[512] = "";
    lm_gguf *g = lm_gguf_open(path, err, sizeof err);
    if (g || (needle1 && !strstr(err, needle1)) || (needle2 && !strstr(err, needle2)) || strncmp(err, "gguf", 4)) {
        fprintf(stderr, "expected failure with '%s' / '%s', got %s: '%s'\n", needle1 ? needle1 : "",
                needle2 ? needle2 : "", g ? "success" : "failure", err);
        lm_gguf_close(g);
        fail();
    }
}

static lm_gguf *open_ok(const char *path) {
    char err[512] = "";
    lm_gguf *g = lm_gguf_open(path, err, sizeof err);
    if (!g) fprintf(stderr, "open %s: %s\n", path, err);
    assert_non_null(g);
    return g;
}

/* Asserts key gi of g equals key hi of h: name, type, and every value byte. */
static void assert_kv_equal(const lm_gguf *g, int64_t gi, const lm_gguf *h, int64_t hi) {
    assert_string_equal(lm_gguf_key(g, gi), lm_gguf_key(h, hi));
    enum lm_gguf_type t = lm_gguf_kv_type(g, gi);
    assert_int_equal(t, lm_gguf_kv_type(h, hi));
    if (t == LM_GGUF_STRING) {
        lm_gguf_str a, b;
        assert_true(lm_gguf_get_str(g, lm_gguf_key(g, gi), &a, NULL, 0));
        assert_true(lm_gguf_get_str(h, lm_gguf_key(h, hi), &b, NULL, 0));
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
    } else if (t == LM_GGUF_ARRAY) {
        enum lm_gguf_type et = lm_gguf_arr_type(g, gi);
        uint64_t n = lm_gguf_arr_n(g, gi);
        assert_int_equal(et, lm_gguf_arr_type(h, hi));
        assert_int_equal(n, lm_gguf_arr_n(h, hi));
        if (et == LM_GGUF_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                lm_gguf_str a = lm_gguf_arr_str(g, gi, j), b = lm_gguf_arr_str(h, hi, j);
                assert_int_equal(a.len, b.len);
                assert_memory_equal(a.data, b.data, a.len);
            }
        } else {
            static const size_t sz[LM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
            if (n) assert_memory_equal(lm_gguf_arr_data(g, gi), lm_gguf_arr_data(h, hi), n * sz[et]);
        }
    } else {
        static const size_t sz[LM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        assert_non_null(lm_gguf_val_data(g, gi));
        assert_memory_equal(lm_gguf_val_data(g, gi), lm_gguf_val_data(h, hi), sz[t]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * shared files
 * ------------------------------------------------------------------------------------------- */

/* Checks every tensor of g: data inside the file and aligned, pointer holds the file's bytes (first
 * and last 16 bytes compared through pread), lookup by name returns it. Walks every string array. */
static void check_structure(lm_gguf *g, const char *path) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint64_t size = lm_gguf_file_size(g);
    assert_true(lm_gguf_data_offset(g) % lm_gguf_alignment(g) == 0);
    for (int64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        assert_non_null(t);
        assert_ptr_equal(lm_gguf_find_tensor(g, t->name), t);
        assert_true(t->n_dims >= 1 && t->n_dims <= 4);
        assert_int_equal(t->file_offset, lm_gguf_data_offset(g) + t->offset);
        assert_true(t->offset % lm_gguf_alignment(g) == 0);
        assert_true(t->file_offset + t->nbytes <= size);
        int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        assert_int_equal(t->nbytes, lm_row_size(t->type, t->ne[0]) * (uint64_t)rows);
        uint8_t buf[16];
        size_t k = (size_t)LM_MIN(t->nbytes, 16u);
        assert_int_equal(pread(fd, buf, k, (off_t)t->file_offset), (ssize_t)k);
        assert_memory_equal(buf, t->data, k);
        assert_int_equal(pread(fd, buf, k, (off_t)(t->file_offset + t->nbytes - k)), (ssize_t)k);
        assert_memory_equal(buf, (const uint8_t *)t->data + t->nbytes - k, k);
    }
    close(fd);
    for (int64_t i = 0; i < lm_gguf_n_kv(g); i++) {
        assert_int_equal(lm_gguf_find_key(g, lm_gguf_key(g, i)), i);
        if (lm_gguf_kv_type(g, i) == LM_GGUF_ARRAY && lm_gguf_arr_type(g, i) == LM_GGUF_STRING) {
            uint64_t total = 0;
            for (uint64_t j = 0; j < lm_gguf_arr_n(g, i); j++) total += lm_gguf_arr_str(g, i, j).len;
            assert_true(total < size);
        }
    }
    assert_int_equal(lm_gguf_find_key(g, "no.such.key"), -1);
    assert_null(lm_gguf_find_tensor(g, "no.such.tensor"));
}

/* Parses MANIFEST.tensors.txt and checks every listed file: size, tensor count, and each tensor's
 * type and shape. Returns the number of files checked. */
static int check_manifest(void) {
    char path[8192];
    size_t size = 0;
    char *text = lm_test_read_file(lm_test_shared_path(path, sizeof path, "fixtures/MANIFEST.tensors.txt"), &size);
    assert_non_null(text);
    text = realloc(text, size + 1);
    text[size] = 0;
    int files = 0;
    lm_gguf *g = NULL;
    int64_t listed = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
        if (!line || strncmp(line, "## ", 3) == 0) {
            if (g) {
                assert_int_equal(listed, lm_gguf_n_tensors(g));
                lm_gguf_close(g);
                g = NULL;
            }
            if (!line) break;
            char rel[512];
            unsigned long long fsize;
            assert_int_equal(sscanf(line, "## %511s size=%llu", rel, &fsize), 2);
            char rel2[600];
            snprintf(rel2, sizeof rel2, "fixtures/%s", rel);
            g = open_ok(lm_test_shared_path(path, sizeof path, rel2));
            assert_int_equal(lm_gguf_file_size(g), fsize);
            listed = 0;
            files++;
        } else if (g && line[0] == ' ') {
            char name[256], type[32], dims[128];
            assert_int_equal(sscanf(line, " %255s %31s [%127[^]]]", name, type, dims), 3);
            const lm_gguf_tensor *t = lm_gguf_find_tensor(g, name);
            assert_non_null(t);
            assert_string_equal(lm_type_name(t->type), type);
            int64_t ne[4] = {1, 1, 1, 1};
            uint32_t nd = 0;
            for (char *d = strtok(dims, ", "); d; d = strtok(NULL, ", ")) ne[nd++] = atoll(d);
            assert_int_equal(nd, t->n_dims);
            for (int d = 0; d < 4; d++) assert_int_equal(ne[d], t->ne[d]);
            listed++;
        }
    }
    free(text);
    return files;
}

static void test_shared_files(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    int n_files = check_manifest();
    assert_true(n_files >= 19);
    const char *dirs[] = {"fixtures/models", "fixtures/quant", "fixtures/vocab32k", "vocab", "models"};
    int opened = 0;
    for (size_t k = 0; k < sizeof dirs / sizeof *dirs; k++) {
        char dpath[8192];
        DIR *d = opendir(lm_test_shared_path(dpath, sizeof dpath, dirs[k]));
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf")) continue;
            char path[16384];
            snprintf(path, sizeof path, "%s/%s", dpath, e->d_name);
            lm_gguf *g = open_ok(path);
            uint32_t v = lm_gguf_version(g);
            assert_true(v == 2 || v == 3);
            assert_string_equal(lm_gguf_path(g), path);
            check_structure(g, path);
            lm_gguf_close(g);
            opened++;
        }
        closedir(d);
    }
    printf("opened %d shared GGUF files, %d checked against MANIFEST.tensors.txt\n", opened, n_files);
    assert_true(opened >= 32);
}

/* Spot checks of values in known files. */
static void test_shared_values(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    char path[8192], err[512];
    lm_gguf *g = open_ok(lm_test_shared_path(path, sizeof path, "fixtures/vocab32k/fx-spm32k-Q4_K_M.gguf"));
    assert_int_equal(lm_gguf_n_kv(g), 26);
    assert_int_equal(lm_gguf_n_tensors(g), 12);
    lm_gguf_str s;
    assert_true(lm_gguf_get_str(g, "general.architecture", &s, err, sizeof err));
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.data, "llama", 5);
    uint32_t u = 0;
    assert_true(lm_gguf_get_u32(g, "llama.embedding_length", &u, err, sizeof err));
    assert_int_equal(u, 256);
    float f = 0;
    assert_true(lm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, err, sizeof err));
    assert_true(f == 1e-5f);
    bool b = false;
    assert_true(lm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, err, sizeof err));
    assert_true(b);
    int64_t ti = lm_gguf_find_key(g, "tokenizer.ggml.tokens");
    assert_true(ti >= 0);
    assert_int_equal(lm_gguf_kv_type(g, ti), LM_GGUF_ARRAY);
    assert_int_equal(lm_gguf_arr_type(g, ti), LM_GGUF_STRING);
    assert_int_equal(lm_gguf_arr_n(g, ti), 32000);
    assert_null(lm_gguf_arr_data(g, ti));
    s = lm_gguf_arr_str(g, ti, 1);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.data, "<s>", 3);
    s = lm_gguf_arr_str(g, ti, 3);
    assert_memory_equal(s.data, "<0x00>", 6);
    s = lm_gguf_arr_str(g, ti, 32000); /* out of range: empty */
    assert_int_equal(s.len, 0);
    int64_t ty = lm_gguf_find_key(g, "tokenizer.ggml.token_type");
    assert_int_equal(lm_gguf_arr_type(g, ty), LM_GGUF_INT32);
    int32_t types[4]; /* array data is not aligned in the file: memcpy, never cast */
    memcpy(types, lm_gguf_arr_data(g, ty), sizeof types);
    assert_int_equal(types[0], 2);
    assert_int_equal(types[1], 3);
    assert_int_equal(types[3], 6);
    int64_t iv = 0;
    assert_true(lm_gguf_arr_get_i64(g, ty, 3, &iv) && iv == 6);
    assert_false(lm_gguf_arr_get_i64(g, ty, 32000, &iv));
    assert_false(lm_gguf_arr_get_i64(g, ti, 0, &iv)); /* string array */
    float sc = 1;
    assert_true(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "tokenizer.ggml.scores"), 0, &sc) && sc == 0.0f);
    const lm_gguf_tensor *t = lm_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, LM_TYPE_Q4_K);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 32000);
    assert_int_equal(t->nbytes, 32000 * 144);
    char buf[256];
    int n = lm_gguf_kv_to_str(g, ti, buf, sizeof buf, 3);
    assert_string_equal(buf, "[\"<unk>\", \"<s>\", \"</s>\", ... (32000 total)]");
    assert_int_equal(n, (int)strlen(buf));
    lm_gguf_close(g);

    g = open_ok(lm_test_shared_path(path, sizeof path, "fixtures/models/stories260K.gguf"));
    assert_int_equal(lm_gguf_n_tensors(g), 48);
    assert_true(lm_gguf_get_u32(g, "llama.context_length", &u, err, sizeof err));
    assert_int_equal(u, 128);
    assert_true(lm_gguf_get_u32(g, "tokenizer.ggml.padding_token_id", &u, err, sizeof err));
    assert_int_equal(u, 0xFFFFFFFFu);
    lm_gguf_close(g);
}

/* ---------------------------------------------------------------------------------------------
 * writer
 * ------------------------------------------------------------------------------------------- */

/* A writer holding one key of every type, arrays of every fixed type, string arrays, and tensors
 * of several types and ranks. data[] must outlive the writer (tensor data is referenced). */
enum { N_SAMPLE_T = 7 };
static uint8_t g_tdata[N_SAMPLE_T][4096];

static lm_gguf_writer *sample_writer(uint32_t version, uint32_t alignment) {
    lm_gguf_writer *w = lm_gguf_writer_new();
    assert_non_null(w);
    lm_gguf_writer_set_version(w, version);
    if (alignment) lm_gguf_writer_set_alignment(w, alignment);
    lm_gguf_writer_set_str(w, "general.architecture", "llama");
    lm_gguf_writer_set_u8(w, "t.u8", 200);
    lm_gguf_writer_set_i8(w, "t.i8", -100);
    lm_gguf_writer_set_u16(w, "t.u16", 65000);
    lm_gguf_writer_set_i16(w, "t.i16", -32000);
    lm_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    lm_gguf_writer_set_i32(w, "t.i32", -2000000000);
    lm_gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull);
    lm_gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll);
    lm_gguf_writer_set_f32(w, "t.f32", 3.14159274f);
    lm_gguf_writer_set_f64(w, "t.f64", 2.718281828459045);
    lm_gguf_writer_set_bool(w, "t.bool", true);
    lm_gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo \"q\"\n\t\\");
    lm_gguf_writer_set_str(w, "t.empty_str", "");
    const uint8_t a_u8[] = {0, 1, 255};
    const int8_t a_i8[] = {-128, 0, 127};
    const uint16_t a_u16[] = {0, 65535};
    const int16_t a_i16[] = {-32768, 32767};
    const uint32_t a_u32[] = {0, 1, 0xFFFFFFFFu};
    const int32_t a_i32[] = {INT32_MIN, -1, INT32_MAX};
    const float a_f32[] = {1.5f, -0.0f, 1e-30f};
    const uint8_t a_bool[] = {1, 0, 1};
    const uint64_t a_u64[] = {UINT64_MAX, 0};
    const int64_t a_i64[] = {INT64_MIN, INT64_MAX};
    const double a_f64[] = {1e300, -2.5};
    lm_gguf_writer_set_arr(w, "a.u8", LM_GGUF_UINT8, a_u8, 3);
    lm_gguf_writer_set_arr(w, "a.i8", LM_GGUF_INT8, a_i8, 3);
    lm_gguf_writer_set_arr(w, "a.u16", LM_GGUF_UINT16, a_u16, 2);
    lm_gguf_writer_set_arr(w, "a.i16", LM_GGUF_INT16, a_i16, 2);
    lm_gguf_writer_set_arr(w, "a.u32", LM_GGUF_UINT32, a_u32, 3);
    lm_gguf_writer_set_arr(w, "a.i32", LM_GGUF_INT32, a_i32, 3);
    lm_gguf_writer_set_arr(w, "a.f32", LM_GGUF_FLOAT32, a_f32, 3);
    lm_gguf_writer_set_arr(w, "a.bool", LM_GGUF_BOOL, a_bool, 3);
    lm_gguf_writer_set_arr(w, "a.u64", LM_GGUF_UINT64, a_u64, 2);
    lm_gguf_writer_set_arr(w, "a.i64", LM_GGUF_INT64, a_i64, 2);
    lm_gguf_writer_set_arr(w, "a.f64", LM_GGUF_FLOAT64, a_f64, 2);
    lm_gguf_writer_set_arr(w, "a.empty", LM_GGUF_INT32, NULL, 0);
    const char *strs[] = {"<unk>", "", "\xe2\x96\x81the", "a\nb"};
    lm_gguf_writer_set_arr_str(w, "a.str", strs, 4);
    lm_gguf_writer_set_arr_str(w, "a.empty_str", NULL, 0);
    lm_gguf_writer_set_u32(w, "t.replaced", 1);
    lm_gguf_writer_set_u32(w, "t.replaced", 2); /* replaces in place, keeps position */

    static const struct { const char *name; uint32_t type; uint32_t nd; int64_t ne[4]; } ts[N_SAMPLE_T] = {
        {"f32.1d", LM_TYPE_F32, 1, {5}},
        {"f16.2d", LM_TYPE_F16, 2, {3, 7}},
        {"q4_0.2d", LM_TYPE_Q4_0, 2, {64, 3}},
        {"q8_0.3d", LM_TYPE_Q8_0, 3, {32, 2, 2}},
        {"q4_k.2d", LM_TYPE_Q4_K, 2, {256, 2}},
        {"q6_k.4d", LM_TYPE_Q6_K, 4, {256, 1, 2, 1}},
        {"bf16.2d", LM_TYPE_BF16, 2, {10, 3}},
    };
    for (int i = 0; i < N_SAMPLE_T; i++) {
        for (size_t k = 0; k < sizeof g_tdata[i]; k++) g_tdata[i][k] = (uint8_t)(k * 31 + i * 7 + 1);
        char err[256];
        assert_true(lm_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].nd, ts[i].ne, g_tdata[i], err, sizeof err));
    }
    return w;
}

/* val_T(g, key): scalar value of key as T, copied out (values are not aligned in the file). */
#define DEF_VAL(T)                                                     \
    static T val_##T(const lm_gguf *g, const char *key) {             \
        T v;                                                           \
        const void *p = lm_gguf_val_data(g, lm_gguf_find_key(g, key)); \
        assert_non_null(p);                                            \
        memcpy(&v, p, sizeof v);                                       \
        return v;                                                      \
    }
DEF_VAL(uint8_t)
DEF_VAL(int8_t)
DEF_VAL(uint16_t)
DEF_VAL(int16_t)
DEF_VAL(uint32_t)
DEF_VAL(int32_t)
DEF_VAL(uint64_t)
DEF_VAL(int64_t)
DEF_VAL(float)
DEF_VAL(double)

static void check_sample(lm_gguf *g, uint32_t version, uint32_t alignment) {
    char err[256];
    assert_int_equal(lm_gguf_version(g), version);
    assert_int_equal(lm_gguf_alignment(g), alignment);
    /* key order = first-set order (general.alignment first when set, as sample_writer sets it first) */
    const char *order[] = {"general.architecture", "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.u64",
                           "t.i64", "t.f32", "t.f64", "t.bool", "t.str", "t.empty_str", "a.u8", "a.i8", "a.u16",
                           "a.i16", "a.u32", "a.i32", "a.f32", "a.bool", "a.u64", "a.i64", "a.f64", "a.empty",
                           "a.str", "a.empty_str", "t.replaced"};
    int64_t base = alignment != 32 ? 1 : 0;
    assert_int_equal(lm_gguf_n_kv(g), base + (int64_t)(sizeof order / sizeof *order));
    if (base) assert_string_equal(lm_gguf_key(g, 0), "general.alignment");
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) assert_string_equal(lm_gguf_key(g, base + (int64_t)i), order[i]);

    /* scalar values, exactly */
#define VAL(key, T) val_##T(g, key)
    assert_int_equal(VAL("t.u8", uint8_t), 200);
    assert_int_equal(VAL("t.i8", int8_t), -100);
    assert_int_equal(VAL("t.u16", uint16_t), 65000);
    assert_int_equal(VAL("t.i16", int16_t), -32000);
    assert_int_equal(VAL("t.u32", uint32_t), 4000000000u);
    assert_int_equal(VAL("t.i32", int32_t), -2000000000);
    assert_true(VAL("t.u64", uint64_t) == 18000000000000000000ull);
    assert_true(VAL("t.i64", int64_t) == -9000000000000000000ll);
    assert_true(VAL("t.f32", float) == 3.14159274f);
    assert_true(VAL("t.f64", double) == 2.718281828459045);
    assert_int_equal(VAL("t.bool", uint8_t), 1);
    assert_int_equal(VAL("t.replaced", uint32_t), 2);
#undef VAL
    lm_gguf_str s;
    assert_true(lm_gguf_get_str(g, "t.str", &s, err, sizeof err));
    assert_int_equal(s.len, 13);
    assert_memory_equal(s.data, "h\xc3\xa9llo \"q\"\n\t\\", 13);
    assert_true(lm_gguf_get_str(g, "t.empty_str", &s, err, sizeof err));
    assert_int_equal(s.len, 0);
    for (int64_t i = 0; i < lm_gguf_n_kv(g); i++) {
        enum lm_gguf_type t = lm_gguf_kv_type(g, i);
        if (t == LM_GGUF_ARRAY || t == LM_GGUF_STRING) assert_null(lm_gguf_val_data(g, i));
        else assert_non_null(lm_gguf_val_data(g, i));
    }

    /* arrays */
    struct { const char *key; enum lm_gguf_type et; uint64_t n; } arrs[] = {
        {"a.u8", LM_GGUF_UINT8, 3},   {"a.i8", LM_GGUF_INT8, 3},       {"a.u16", LM_GGUF_UINT16, 2},
        {"a.i16", LM_GGUF_INT16, 2},  {"a.u32", LM_GGUF_UINT32, 3},    {"a.i32", LM_GGUF_INT32, 3},
        {"a.f32", LM_GGUF_FLOAT32, 3}, {"a.bool", LM_GGUF_BOOL, 3},    {"a.u64", LM_GGUF_UINT64, 2},
        {"a.i64", LM_GGUF_INT64, 2},  {"a.f64", LM_GGUF_FLOAT64, 2},   {"a.empty", LM_GGUF_INT32, 0},
        {"a.str", LM_GGUF_STRING, 4}, {"a.empty_str", LM_GGUF_STRING, 0},
    };
    for (size_t k = 0; k < sizeof arrs / sizeof *arrs; k++) {
        int64_t i = lm_gguf_find_key(g, arrs[k].key);
        assert_true(i >= 0);
        assert_int_equal(lm_gguf_kv_type(g, i), LM_GGUF_ARRAY);
        assert_int_equal(lm_gguf_arr_type(g, i), arrs[k].et);
        assert_int_equal(lm_gguf_arr_n(g, i), arrs[k].n);
    }
    /* element data is not aligned in the file: copy it out (never cast the pointer) */
#define ARR(key, T, n) T key##_v[n]; memcpy(key##_v, lm_gguf_arr_data(g, lm_gguf_find_key(g, "a." #key)), sizeof key##_v)
    ARR(u64, uint64_t, 2);
    assert_true(u64_v[0] == UINT64_MAX && u64_v[1] == 0);
    ARR(f64, double, 2);
    assert_true(f64_v[0] == 1e300 && f64_v[1] == -2.5);
    ARR(f32, float, 3);
    assert_true(f32_v[0] == 1.5f && f32_v[1] == 0.0f && signbit(f32_v[1]) && f32_v[2] == 1e-30f);
    ARR(i32, int32_t, 3);
    assert_true(i32_v[0] == INT32_MIN && i32_v[1] == -1 && i32_v[2] == INT32_MAX);
    ARR(i16, int16_t, 2);
    assert_true(i16_v[0] == -32768 && i16_v[1] == 32767);
    ARR(i8, int8_t, 3);
    assert_true(i8_v[0] == -128 && i8_v[1] == 0 && i8_v[2] == 127);
    ARR(i64, int64_t, 2);
    assert_true(i64_v[0] == INT64_MIN && i64_v[1] == INT64_MAX);
    ARR(u16, uint16_t, 2);
    assert_true(u16_v[0] == 0 && u16_v[1] == 65535);
#undef ARR
    /* element getters convert */
    int64_t iv;
    float fv;
    assert_true(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.u32"), 2, &iv) && iv == 0xFFFFFFFFll);
    assert_true(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.i8"), 0, &iv) && iv == -128);
    assert_true(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.bool"), 0, &iv) && iv == 1);
    assert_true(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.i64"), 0, &iv) && iv == INT64_MIN);
    assert_false(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.u64"), 0, &iv)); /* > INT64_MAX */
    assert_false(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.f32"), 0, &iv));
    assert_false(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "a.empty"), 0, &iv));
    assert_false(lm_gguf_arr_get_i64(g, lm_gguf_find_key(g, "t.u8"), 0, &iv)); /* not an array */
    assert_true(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.f32"), 2, &fv) && fv == 1e-30f);
    assert_true(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.f64"), 1, &fv) && fv == -2.5f);
    assert_true(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.i16"), 0, &fv) && fv == -32768.0f);
    assert_true(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.u8"), 2, &fv) && fv == 255.0f);
    assert_false(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.f32"), 3, &fv));
    assert_false(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.bool"), 0, &fv));
    assert_false(lm_gguf_arr_get_f32(g, lm_gguf_find_key(g, "a.str"), 0, &fv));
    int64_t si = lm_gguf_find_key(g, "a.str");
    const char *strs[] = {"<unk>", "", "\xe2\x96\x81the", "a\nb"};
    for (int j = 0; j < 4; j++) {
        lm_gguf_str e = lm_gguf_arr_str(g, si, (uint64_t)j);
        assert_int_equal(e.len, strlen(strs[j]));
        assert_memory_equal(e.data, strs[j], e.len);
    }

    /* tensors: order, shapes, aligned packed offsets, data */
    static const char *names[N_SAMPLE_T] = {"f32.1d", "f16.2d", "q4_0.2d", "q8_0.3d", "q4_k.2d", "q6_k.4d", "bf16.2d"};
    static const uint64_t nbytes[N_SAMPLE_T] = {20, 42, 2 * 18 * 3, 34 * 4, 144 * 2, 210 * 2, 60};
    assert_int_equal(lm_gguf_n_tensors(g), N_SAMPLE_T);
    assert_int_equal(lm_gguf_data_offset(g) % alignment, 0);
    uint64_t expect_off = 0;
    for (int i = 0; i < N_SAMPLE_T; i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        assert_string_equal(t->name, names[i]);
        assert_int_equal(t->nbytes, nbytes[i]);
        assert_int_equal(t->offset, expect_off);
        expect_off += (nbytes[i] + alignment - 1) / alignment * alignment;
        assert_memory_equal(t->data, g_tdata[i], t->nbytes);
    }
    const lm_gguf_tensor *t = lm_gguf_find_tensor(g, "q6_k.4d");
    assert_int_equal(t->n_dims, 4);
    assert_true(t->ne[0] == 256 && t->ne[1] == 1 && t->ne[2] == 2 && t->ne[3] == 1);
    t = lm_gguf_find_tensor(g, "q8_0.3d");
    assert_true(t->n_dims == 3 && t->ne[3] == 1);
    /* the file ends right after the last tensor's padded data */
    assert_int_equal(lm_gguf_file_size(g), lm_gguf_data_offset(g) + expect_off);
}

static void test_writer_roundtrip(void **state) {
    (void)state;
    const uint32_t versions[] = {2, 3};
    const uint32_t aligns[] = {0 /* default 32 */, 32, 64, 1, 4096};
    for (size_t v = 0; v < 2; v++) {
        for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++) {
            lm_gguf_writer *w = sample_writer(versions[v], aligns[a]);
            const char *path = tmp_path("roundtrip.gguf");
            char err[256] = "";
            if (!lm_gguf_writer_write(w, path, err, sizeof err)) fprintf(stderr, "%s\n", err);
            assert_true(lm_gguf_writer_write(w, path, err, sizeof err)); /* writing twice is fine */
            lm_gguf_writer_free(w);
            lm_gguf *g = open_ok(path);
            check_sample(g, versions[v], aligns[a] ? aligns[a] : 32);
            check_structure(g, path);
            /* re-writing everything read (copy_kv of all keys + tensors) reproduces the file exactly */
            lm_gguf_writer *w2 = lm_gguf_writer_new();
            lm_gguf_writer_set_version(w2, versions[v]);
            for (int64_t i = 0; i < lm_gguf_n_kv(g); i++) lm_gguf_writer_copy_kv(w2, g, i);
            for (int64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
                const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
                assert_true(lm_gguf_writer_add_tensor(w2, t->name, t->type, t->n_dims, t->ne, t->data, err, sizeof err));
            }
            const char *path2 = tmp_path("roundtrip2.gguf");
            assert_true(lm_gguf_writer_write(w2, path2, err, sizeof err));
            lm_gguf_writer_free(w2);
            size_t n1, n2;
            uint8_t *b1 = lm_test_read_file(path, &n1), *b2 = lm_test_read_file(path2, &n2);
            assert_non_null(b1);
            assert_non_null(b2);
            assert_int_equal(n1, n2);
            assert_memory_equal(b1, b2, n1);
            free(b1);
            free(b2);
            lm_gguf_close(g);
        }
    }
}

/* A tiny file compared byte for byte with an image built by hand from the spec. */
static void test_writer_exact_bytes(void **state) {
    (void)state;
    lm_gguf_writer *w = lm_gguf_writer_new();
    lm_gguf_writer_set_u32(w, "a", 7);
    lm_gguf_writer_set_str(w, "s", "xy");
    const float data[3] = {1, 2, 3};
    const int64_t ne[1] = {3};
    char err[256];
    assert_true(lm_gguf_writer_add_tensor(w, "t", LM_TYPE_F32, 1, ne, data, err, sizeof err));
    assert_true(lm_gguf_writer_add_tensor(w, "u", LM_TYPE_F32, 1, ne, NULL, err, sizeof err)); /* zeros */
    const char *path = tmp_path("exact.gguf");
    assert_true(lm_gguf_writer_write(w, path, err, sizeof err));
    lm_gguf_writer_free(w);

    img b = {0};
    img_header(&b, 3, 2, 2);
    img_str(&b, "a"); img_u32(&b, LM_GGUF_UINT32); img_u32(&b, 7);
    img_str(&b, "s"); img_u32(&b, LM_GGUF_STRING); img_str(&b, "xy");
    uint64_t ne3 = 3;
    img_tinfo(&b, "t", 1, &ne3, 0, 0);
    img_tinfo(&b, "u", 1, &ne3, 0, 32);
    img_pad(&b, 32);
    img_bytes(&b, data, 12);
    img_pad(&b, 32);
    float zeros[3] = {0};
    img_bytes(&b, zeros, 12);
    img_pad(&b, 32);
    size_t n = 0;
    uint8_t *got = lm_test_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, b.n);
    assert_memory_equal(got, b.p, n);
    printf("writer output matches the hand-built %zu-byte image\n", n);
    free(got);
    free(b.p);
    /* no temporary file left behind */
    DIR *d = opendir(lm_test_tmpdir());
    for (struct dirent *e; (e = readdir(d));) assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
}

static void test_writer_errors(void **state) {
    (void)state;
    char err[256];
    lm_gguf_writer *w = lm_gguf_writer_new();
    float data[512] = {0};
    int64_t ne[4] = {16, 2, 1, 1};
    err[0] = 0;
    assert_false(lm_gguf_writer_add_tensor(w, "x", 99, 2, ne, data, err, sizeof err));
    assert_non_null(strstr(err, "unknown type id 99"));
    assert_false(lm_gguf_writer_add_tensor(w, "x", 4, 2, ne, data, err, sizeof err));
    assert_false(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_Q4_0, 2, ne, data, err, sizeof err));
    assert_non_null(strstr(err, "block size"));
    assert_false(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 0, ne, data, err, sizeof err));
    assert_non_null(strstr(err, "n_dims 0"));
    assert_false(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 5, ne, data, err, sizeof err));
    int64_t bad[2] = {4, 0};
    assert_false(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 2, bad, data, err, sizeof err));
    assert_non_null(strstr(err, "dimension"));
    int64_t huge[3] = {1ll << 40, 1ll << 40, 1};
    assert_false(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 3, huge, data, err, sizeof err));
    char longname[80];
    memset(longname, 'n', 79);
    longname[79] = 0;
    assert_false(lm_gguf_writer_add_tensor(w, longname, LM_TYPE_F32, 1, ne, data, err, sizeof err));
    assert_non_null(strstr(err, "63"));
    assert_true(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 2, ne, data, err, sizeof err));
    assert_false(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 2, ne, data, err, sizeof err));
    assert_non_null(strstr(err, "duplicate tensor name 'x'"));
    /* unwritable destination: error names it, nothing left behind */
    assert_false(lm_gguf_writer_write(w, "/nonexistent-dir-llamita/x.gguf", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-dir-llamita/x.gguf"));
    /* a bad setter makes write() fail with its message */
    lm_gguf_writer_set_alignment(w, 3);
    assert_false(lm_gguf_writer_write(w, tmp_path("never.gguf"), err, sizeof err));
    assert_non_null(strstr(err, "alignment 3"));
    lm_gguf_writer_free(w);

    w = lm_gguf_writer_new();
    lm_gguf_writer_set_version(w, 4);
    assert_false(lm_gguf_writer_write(w, tmp_path("never.gguf"), err, sizeof err));
    assert_non_null(strstr(err, "version 4"));
    lm_gguf_writer_free(w);

    w = lm_gguf_writer_new();
    lm_gguf_writer_set_str(w, "general.alignment", "64");
    assert_false(lm_gguf_writer_write(w, tmp_path("never.gguf"), err, sizeof err));
    assert_non_null(strstr(err, "general.alignment"));
    lm_gguf_writer_free(w);

    w = lm_gguf_writer_new();
    lm_gguf_writer_set_arr(w, "k", LM_GGUF_STRING, data, 1);
    assert_false(lm_gguf_writer_write(w, tmp_path("never.gguf"), err, sizeof err));
    assert_non_null(strstr(err, "'k'"));
    lm_gguf_writer_free(w);
    lm_gguf_writer_free(NULL);
    assert_int_equal(access(tmp_path("never.gguf"), F_OK), -1);

    /* general.alignment set as a key also moves the data alignment */
    w = lm_gguf_writer_new();
    lm_gguf_writer_set_u32(w, "general.alignment", 128);
    assert_true(lm_gguf_writer_add_tensor(w, "x", LM_TYPE_F32, 1, ne, data, err, sizeof err));
    assert_true(lm_gguf_writer_add_tensor(w, "y", LM_TYPE_F32, 1, ne, data, err, sizeof err));
    assert_true(lm_gguf_writer_write(w, tmp_path("a128.gguf"), err, sizeof err));
    lm_gguf_writer_free(w);
    lm_gguf *g = open_ok(tmp_path("a128.gguf"));
    assert_int_equal(lm_gguf_alignment(g), 128);
    assert_int_equal(lm_gguf_data_offset(g) % 128, 0);
    assert_int_equal(lm_gguf_find_tensor(g, "y")->offset, 128);
    lm_gguf_close(g);
}

/* copy_kv of every tokenizer.* key of a fixture reproduces them exactly. */
static void test_copy_kv(void **state) {
    (void)state;
    LM_REQUIRE_SHARED();
    const char *files[] = {"fixtures/vocab32k/fx-spm32k-Q8_0.gguf", "vocab/ggml-vocab-gpt-2.gguf"};
    for (size_t f = 0; f < 2; f++) {
        char path[8192], err[256];
        lm_gguf *src = open_ok(lm_test_shared_path(path, sizeof path, files[f]));
        lm_gguf_writer *w = lm_gguf_writer_new();
        int copied = 0;
        for (int64_t i = 0; i < lm_gguf_n_kv(src); i++) {
            if (strncmp(lm_gguf_key(src, i), "tokenizer.", 10) == 0) {
                lm_gguf_writer_copy_kv(w, src, i);
                copied++;
            }
        }
        const char *out = tmp_path("copy.gguf");
        assert_true(lm_gguf_writer_write(w, out, err, sizeof err));
        lm_gguf_writer_free(w);
        lm_gguf *dst = open_ok(out);
        assert_int_equal(lm_gguf_n_kv(dst), copied);
        int64_t j = 0;
        for (int64_t i = 0; i < lm_gguf_n_kv(src); i++) {
            if (strncmp(lm_gguf_key(src, i), "tokenizer.", 10) == 0) assert_kv_equal(src, i, dst, j++);
        }
        printf("%s: copied %d tokenizer.* keys exactly\n", files[f], copied);
        assert_true(copied >= 6);
        lm_gguf_close(dst);
        lm_gguf_close(src);
    }
}

/* ---------------------------------------------------------------------------------------------
 * reader: getters and rendering
 * ------------------------------------------------------------------------------------------- */

static void test_getters(void **state) {
    (void)state;
    lm_gguf_writer *w = lm_gguf_writer_new();
    lm_gguf_writer_set_u8(w, "u8", 7);
    lm_gguf_writer_set_i32(w, "neg", -5);
    lm_gguf_writer_set_u64(w, "big", 1ull << 40);
    lm_gguf_writer_set_u64(w, "huge", UINT64_MAX);
    lm_gguf_writer_set_i64(w, "i64min", INT64_MIN);
    lm_gguf_writer_set_bool(w, "b", true);
    lm_gguf_writer_set_i32(w, "one", 1);
    lm_gguf_writer_set_f64(w, "f64", 0.1);
    lm_gguf_writer_set_f32(w, "f32", 1e-6f);
    lm_gguf_writer_set_str(w, "s", "text");
    const int32_t arr[2] = {1, 2};
    lm_gguf_writer_set_arr(w, "arr", LM_GGUF_INT32, arr, 2);
    const char *path = tmp_path("getters.gguf");
    char err[256];
    assert_true(lm_gguf_writer_write(w, path, err, sizeof err));
    lm_gguf_writer_free(w);
    lm_gguf *g = open_ok(path);

    uint32_t u = 0;
    int64_t i = 0;
    float f = 0;
    bool b = false;
    lm_gguf_str s = {0};
    assert_true(lm_gguf_get_u32(g, "u8", &u, err, sizeof err) && u == 7);
    assert_true(lm_gguf_get_u32(g, "b", &u, err, sizeof err) && u == 1);
    assert_true(lm_gguf_get_i64(g, "neg", &i, err, sizeof err) && i == -5);
    assert_true(lm_gguf_get_i64(g, "big", &i, err, sizeof err) && i == (1ll << 40));
    assert_true(lm_gguf_get_i64(g, "i64min", &i, err, sizeof err) && i == INT64_MIN);
    assert_false(lm_gguf_get_i64(g, "huge", &i, err, sizeof err));
    assert_non_null(strstr(err, "'huge'"));
    assert_false(lm_gguf_get_u32(g, "neg", &u, err, sizeof err));
    assert_non_null(strstr(err, "-5 does not fit in u32"));
    assert_false(lm_gguf_get_u32(g, "big", &u, err, sizeof err));
    assert_non_null(strstr(err, "'big'"));
    assert_false(lm_gguf_get_u32(g, "s", &u, err, sizeof err));
    assert_non_null(strstr(err, "key 's'"));
    assert_non_null(strstr(err, "string"));
    assert_false(lm_gguf_get_u32(g, "missing", &u, err, sizeof err));
    assert_non_null(strstr(err, "key 'missing' not found"));
    assert_false(lm_gguf_get_u32(g, "arr", &u, err, sizeof err));
    assert_non_null(strstr(err, "array"));
    assert_true(lm_gguf_get_f32(g, "f32", &f, err, sizeof err) && f == 1e-6f);
    assert_true(lm_gguf_get_f32(g, "f64", &f, err, sizeof err) && f == 0.1f);
    assert_true(lm_gguf_get_f32(g, "neg", &f, err, sizeof err) && f == -5.0f);
    assert_false(lm_gguf_get_f32(g, "s", &f, err, sizeof err));
    assert_true(lm_gguf_get_bool(g, "b", &b, err, sizeof err) && b);
    b = false;
    assert_true(lm_gguf_get_bool(g, "one", &b, err, sizeof err) && b);
    assert_false(lm_gguf_get_bool(g, "neg", &b, err, sizeof err));
    assert_non_null(strstr(err, "'neg'"));
    assert_false(lm_gguf_get_bool(g, "f32", &b, err, sizeof err));
    assert_true(lm_gguf_get_str(g, "s", &s, err, sizeof err) && s.len == 4 && !memcmp(s.data, "text", 4));
    assert_false(lm_gguf_get_str(g, "u8", &s, err, sizeof err));
    assert_non_null(strstr(err, "has type u8, expected string"));
    /* _opt: absent leaves the value, wrong type fails */
    u = 42;
    f = 4.5f;
    b = true;
    s.len = 99;
    err[0] = 0;
    assert_true(lm_gguf_get_u32_opt(g, "missing", &u, err, sizeof err) && u == 42);
    assert_true(lm_gguf_get_f32_opt(g, "missing", &f, err, sizeof err) && f == 4.5f);
    assert_true(lm_gguf_get_bool_opt(g, "missing", &b, err, sizeof err) && b);
    assert_true(lm_gguf_get_str_opt(g, "missing", &s, err, sizeof err) && s.len == 99);
    assert_true(lm_gguf_get_u32_opt(g, "u8", &u, err, sizeof err) && u == 7);
    assert_false(lm_gguf_get_u32_opt(g, "s", &u, err, sizeof err));
    assert_false(lm_gguf_get_f32_opt(g, "s", &f, err, sizeof err));
    assert_false(lm_gguf_get_bool_opt(g, "s", &b, err, sizeof err));
    assert_false(lm_gguf_get_str_opt(g, "u8", &s, err, sizeof err));
    /* bad indices give neutral values */
    assert_null(lm_gguf_key(g, -1));
    assert_null(lm_gguf_key(g, 1000));
    assert_int_equal(lm_gguf_kv_type(g, 1000), LM_GGUF_TYPE_COUNT);
    assert_int_equal(lm_gguf_arr_n(g, 0), 0);
    assert_null(lm_gguf_arr_data(g, 0));
    assert_null(lm_gguf_tensor_at(g, 0));
    assert_int_equal(lm_gguf_arr_str(g, 0, 0).len, 0);
    lm_gguf_close(g);
    lm_gguf_close(NULL);
}

static void test_kv_to_str(void **state) {
    (void)state;
    lm_gguf_writer *w = lm_gguf_writer_new();
    lm_gguf_writer_set_u8(w, "u8", 255);
    lm_gguf_writer_set_i8(w, "i8", -3);
    lm_gguf_writer_set_u64(w, "u64", UINT64_MAX);
    lm_gguf_writer_set_i64(w, "i64", INT64_MIN);
    lm_gguf_writer_set_f32(w, "f32", 1e-5f);
    lm_gguf_writer_set_f64(w, "f64", 0.5);
    lm_gguf_writer_set_bool(w, "b", false);
    lm_gguf_writer_set_str(w, "s", "a\"b\\c\nd\x01\xc3\xa9");
    const int16_t arr[5] = {1, -2, 3, -4, 5};
    lm_gguf_writer_set_arr(w, "arr", LM_GGUF_INT16, arr, 5);
    const char *strs[2] = {"x", "y z"};
    lm_gguf_writer_set_arr_str(w, "sarr", strs, 2);
    lm_gguf_writer_set_arr(w, "empty", LM_GGUF_UINT8, NULL, 0);
    const char *path = tmp_path("tostr.gguf");
    char err[256];
    assert_true(lm_gguf_writer_write(w, path, err, sizeof err));
    lm_gguf_writer_free(w);
    lm_gguf *g = open_ok(path);
    struct { const char *key; int max; const char *want; } cases[] = {
        {"u8", 3, "255"},
        {"i8", 3, "-3"},
        {"u64", 3, "18446744073709551615"},
        {"i64", 3, "-9223372036854775808"},
        {"f32", 3, "1e-05"},
        {"f64", 3, "0.5"},
        {"b", 3, "false"},
        {"s", 3, "\"a\\\"b\\\\c\\nd\\x01\xc3\xa9\""},
        {"arr", 3, "[1, -2, 3, ... (5 total)]"},
        {"arr", 5, "[1, -2, 3, -4, 5]"},
        {"arr", -1, "[1, -2, 3, -4, 5]"},
        {"arr", 0, "[... (5 total)]"},
        {"sarr", 10, "[\"x\", \"y z\"]"},
        {"empty", 3, "[]"},
    };
    char buf[128];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int n = lm_gguf_kv_to_str(g, lm_gguf_find_key(g, cases[k].key), buf, sizeof buf, cases[k].max);
        assert_string_equal(buf, cases[k].want);
        assert_int_equal(n, (int)strlen(cases[k].want));
    }
    /* snprintf contract: truncated output, NUL-terminated, full length returned */
    char small[6];
    int n = lm_gguf_kv_to_str(g, lm_gguf_find_key(g, "arr"), small, sizeof small, 3);
    assert_int_equal(n, (int)strlen("[1, -2, 3, ... (5 total)]"));
    assert_string_equal(small, "[1, -");
    assert_int_equal(lm_gguf_kv_to_str(g, lm_gguf_find_key(g, "u64"), NULL, 0, 3), 20);
    assert_string_equal(lm_gguf_type_name(LM_GGUF_UINT32), "u32");
    assert_string_equal(lm_gguf_type_name(LM_GGUF_STRING), "string");
    assert_string_equal(lm_gguf_type_name(LM_GGUF_FLOAT64), "f64");
    assert_string_equal(lm_gguf_type_name((enum lm_gguf_type)77), "?");
    lm_gguf_close(g);
}

/* ---------------------------------------------------------------------------------------------
 * reader: bad input
 * ------------------------------------------------------------------------------------------- */

/* Every prefix of a small valid file fails cleanly unless it still holds all tensor data. */
static void test_truncation(void **state) {
    (void)state;
    lm_gguf_writer *w = lm_gguf_writer_new();
    lm_gguf_writer_set_str(w, "general.architecture", "llama");
    lm_gguf_writer_set_u32(w, "llama.block_count", 2);
    lm_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    const char *strs[3] = {"<unk>", "<s>", "hello"};
    lm_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, 3);
    const float scores[3] = {0, 0, -1};
    lm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LM_GGUF_FLOAT32, scores, 3);
    uint8_t data[200];
    for (int k = 0; k < 200; k++) data[k] = (uint8_t)k;
    int64_t ne1[2] = {8, 2}, ne2[2] = {32, 2};
    char err[512];
    assert_true(lm_gguf_writer_add_tensor(w, "a.weight", LM_TYPE_F32, 2, ne1, data, err, sizeof err));
    assert_true(lm_gguf_writer_add_tensor(w, "b.weight", LM_TYPE_Q8_0, 2, ne2, data, err, sizeof err));
    const char *full = tmp_path("trunc-src.gguf");
    assert_true(lm_gguf_writer_write(w, full, err, sizeof err));
    lm_gguf_writer_free(w);
    size_t n = 0;
    uint8_t *bytes = lm_test_read_file(full, &n);
    assert_non_null(bytes);
    lm_gguf *g = open_ok(full);
    uint64_t need = 0; /* end of the last tensor's data */
    uint64_t data_off = lm_gguf_data_offset(g);
    for (int64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        need = LM_MAX(need, t->file_offset + t->nbytes);
    }
    lm_gguf_close(g);
    const char *path = tmp_path("trunc.gguf");
    int failed = 0, ok = 0;
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(path, bytes, cut);
        err[0] = 0;
        g = lm_gguf_open(path, err, sizeof err);
        if (cut >= need) {
            if (!g) fprintf(stderr, "cut %zu: %s\n", cut, err);
            assert_non_null(g);
            lm_gguf_close(g);
            ok++;
            continue;
        }
        if (g) fprintf(stderr, "cut %zu of %zu opened\n", cut, n);
        assert_null(g);
        bool good = strncmp(err, "gguf: ", 6) == 0 &&
                    (strstr(err, "truncated") || strstr(err, "past end") || strstr(err, "too short") ||
                     strstr(err, "cannot fit"));
        if (cut >= data_off) good = good && strstr(err, "tensor '") && strstr(err, "runs past end of file");
        if (!good) fprintf(stderr, "cut %zu: unexpected message '%s'\n", cut, err);
        assert_true(good);
        failed++;
    }
    printf("truncation: %d cut points rejected with a message, %d (trailing padding) accepted; data at %" PRIu64
           ", file %zu bytes\n",
           failed, ok, data_off, n);
    free(bytes);
}

static void test_bad_header(void **state) {
    (void)state;
    img b = {0};
    /* too short / empty / not a file / missing */
    expect_fail_img(&b, "too short", NULL);
    img_bytes(&b, "GGU", 3);
    expect_fail_img(&b, "too short", NULL);
    b.n = 0;
    img_header(&b, 3, 0, 0);
    b.p[0] = 'X';
    expect_fail_img(&b, "bad magic 58 47 55 46 at byte 0", NULL);
    for (uint32_t v = 0; v < 6; v++) {
        if (v == 2 || v == 3) continue;
        b.n = 0;
        img_header(&b, v, 0, 0);
        char want[64];
        snprintf(want, sizeof want, "unsupported GGUF version %u (byte 4)", v);
        expect_fail_img(&b, want, NULL);
    }
    b.n = 0;
    img_header(&b, 0x03000000u, 0, 0);
    expect_fail_img(&b, "big-endian", NULL);
    const uint64_t huge[] = {1ull << 63, UINT64_MAX, 1ull << 60, 1000};
    for (size_t k = 0; k < 4; k++) {
        b.n = 0;
        img_header(&b, 3, huge[k], 0);
        expect_fail_img(&b, "tensor count", "(byte 8)");
        b.n = 0;
        img_header(&b, 3, 0, huge[k]);
        expect_fail_img(&b, "key/value count", "(byte 16)");
    }
    /* an empty but valid file */
    b.n = 0;
    img_header(&b, 2, 0, 0);
    const char *path = tmp_path("empty-ok.gguf");
    write_bytes(path, b.p, b.n);
    lm_gguf *g = open_ok(path);
    assert_int_equal(lm_gguf_n_kv(g), 0);
    assert_int_equal(lm_gguf_n_tensors(g), 0);
    assert_int_equal(lm_gguf_find_key(g, "x"), -1);
    assert_null(lm_gguf_find_tensor(g, "x"));
    lm_gguf_close(g);
    char err[512];
    assert_null(lm_gguf_open(lm_test_tmpdir(), err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(lm_gguf_open(tmp_path("does-not-exist.gguf"), err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "does-not-exist.gguf"));
    assert_null(lm_gguf_open(NULL, err, sizeof err));
    assert_null(lm_gguf_open(tmp_path("does-not-exist.gguf"), NULL, 0)); /* no err buffer: fine */
    free(b.p);
}

static void test_bad_kv(void **state) {
    (void)state;
    img b = {0};
    /* key string length 2^63 / 2^64-1 */
    const uint64_t lens[] = {1ull << 63, UINT64_MAX, 1000};
    for (size_t k = 0; k < 3; k++) {
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_u64(&b, lens[k]);
        img_bytes(&b, "abcdefghijklmnop", 16);
        expect_fail_img(&b, "key 0", "string length");
        /* string value length */
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "general.name");
        img_u32(&b, LM_GGUF_STRING);
        img_u64(&b, lens[k]);
        img_bytes(&b, "abcdefghijklmnop", 16);
        expect_fail_img(&b, "key 'general.name'", "string length");
        /* array counts: fixed-size elements and strings */
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "tokenizer.ggml.scores");
        img_u32(&b, LM_GGUF_ARRAY);
        img_u32(&b, LM_GGUF_FLOAT32);
        img_u64(&b, lens[k]);
        img_bytes(&b, "abcdefghijklmnop", 16);
        expect_fail_img(&b, "key 'tokenizer.ggml.scores'", "array of");
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "tokenizer.ggml.tokens");
        img_u32(&b, LM_GGUF_ARRAY);
        img_u32(&b, LM_GGUF_STRING);
        img_u64(&b, lens[k]);
        img_bytes(&b, "abcdefghijklmnop", 16);
        expect_fail_img(&b, "key 'tokenizer.ggml.tokens'", "strings cannot fit");
        /* a string inside a string array */
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "tokenizer.ggml.tokens");
        img_u32(&b, LM_GGUF_ARRAY);
        img_u32(&b, LM_GGUF_STRING);
        img_u64(&b, 2);
        img_str(&b, "ok");
        img_u64(&b, lens[k]);
        img_bytes(&b, "abcdefghijklmnop", 16);
        expect_fail_img(&b, "string 1 of key 'tokenizer.ggml.tokens'", "string length");
    }
    /* unknown value types, unknown element type, nested arrays */
    const uint32_t bad_types[] = {13, 100, UINT32_MAX};
    for (size_t k = 0; k < 3; k++) {
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "x.y");
        img_u32(&b, bad_types[k]);
        img_u64(&b, 0);
        char want[64];
        snprintf(want, sizeof want, "unknown value type %" PRIu32, bad_types[k]);
        expect_fail_img(&b, "key 'x.y' (byte 35)", want);
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "x.y");
        img_u32(&b, LM_GGUF_ARRAY);
        img_u32(&b, bad_types[k]);
        img_u64(&b, 0);
        snprintf(want, sizeof want, "unknown array element type %" PRIu32, bad_types[k]);
        expect_fail_img(&b, "key 'x.y'", want);
    }
    b.n = 0;
    img_header(&b, 3, 0, 1);
    img_str(&b, "nested");
    img_u32(&b, LM_GGUF_ARRAY);
    img_u32(&b, LM_GGUF_ARRAY);
    img_u64(&b, 1);
    img_u32(&b, LM_GGUF_UINT8);
    img_u64(&b, 0);
    expect_fail_img(&b, "key 'nested'", "arrays of arrays");
    /* duplicate key */
    b.n = 0;
    img_header(&b, 3, 0, 3);
    img_str(&b, "a.b"); img_u32(&b, LM_GGUF_UINT8); img_bytes(&b, "\1", 1);
    img_str(&b, "c.d"); img_u32(&b, LM_GGUF_UINT8); img_bytes(&b, "\1", 1);
    img_str(&b, "a.b"); img_u32(&b, LM_GGUF_UINT32); img_u32(&b, 5);
    expect_fail_img(&b, "duplicate key 'a.b' (bytes 24 and 56)", NULL);
    /* NUL inside a key */
    b.n = 0;
    img_header(&b, 3, 0, 1);
    img_u64(&b, 3); img_bytes(&b, "a\0b", 3); img_u32(&b, LM_GGUF_UINT8); img_bytes(&b, "\1", 1);
    expect_fail_img(&b, "NUL", "key 0");
    /* general.alignment: 0, 3, not a power of two, wrong type */
    const uint32_t aligns[] = {0, 3, 48, 0x80000001u};
    for (size_t k = 0; k < 4; k++) {
        b.n = 0;
        img_header(&b, 3, 0, 1);
        img_str(&b, "general.alignment"); img_u32(&b, LM_GGUF_UINT32); img_u32(&b, aligns[k]);
        expect_fail_img(&b, "'general.alignment'", "power of two");
    }
    b.n = 0;
    img_header(&b, 3, 0, 1);
    img_str(&b, "general.alignment"); img_u32(&b, LM_GGUF_UINT64); img_u64(&b, 32);
    expect_fail_img(&b, "'general.alignment'", "must be u32");
    free(b.p);
}

/* One tensor info (name "blk.0.w"), then data padded to 32, for the tensor-info tests. */
static void tensor_file(img *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off, size_t data_bytes) {
    b->n = 0;
    img_header(b, 3, 1, 0);
    img_tinfo(b, "blk.0.w", n_dims, ne, type, off);
    img_pad(b, 32);
    for (size_t k = 0; k < data_bytes; k++) img_bytes(b, "\x11", 1);
}

static void test_bad_tensors(void **state) {
    (void)state;
    img b = {0};
    uint64_t ne[5] = {32, 2, 1, 1, 1};
    tensor_file(&b, 2, ne, LM_TYPE_F32, 0, 256);
    const char *path = tmp_path("tensor-ok.gguf");
    write_bytes(path, b.p, b.n);
    lm_gguf_close(open_ok(path));

    tensor_file(&b, 0, ne, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w' (byte 39): n_dims 0", NULL);
    tensor_file(&b, 5, ne, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "n_dims 5");
    uint64_t zero[2] = {32, 0};
    tensor_file(&b, 2, zero, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "dimension 1 is 0");
    uint64_t neg[2] = {1ull << 63, 1};
    tensor_file(&b, 2, neg, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "dimension 0");
    uint64_t ovf[3] = {1ull << 32, 1ull << 32, 1ull << 32};
    tensor_file(&b, 3, ovf, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "element count overflows");
    uint64_t ovf2[4] = {UINT64_MAX >> 1, 2, 1, 1};
    tensor_file(&b, 4, ovf2, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "overflows");
    uint64_t bytes_ovf[2] = {1ull << 62, 1};
    tensor_file(&b, 2, bytes_ovf, LM_TYPE_F32, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "byte size overflows");
    const uint32_t bad_types[] = {99, 4, 5, 16, 29, 31, 40, UINT32_MAX};
    for (size_t k = 0; k < sizeof bad_types / sizeof *bad_types; k++) {
        tensor_file(&b, 2, ne, bad_types[k], 0, 256);
        char want[80];
        snprintf(want, sizeof want, "unknown or unsupported tensor type id %" PRIu32, bad_types[k]);
        expect_fail_img(&b, "tensor 'blk.0.w'", want);
    }
    tensor_file(&b, 2, ne, 19, 0, 256);
    expect_fail_img(&b, "tensor type id 19 (IQ1_S, not supported by llamita)", NULL);
    tensor_file(&b, 2, ne, 4, 0, 256);
    expect_fail_img(&b, "type id 4 (Q4_2 (removed from ggml)", NULL);
    uint64_t q[2] = {48, 2};
    tensor_file(&b, 2, q, LM_TYPE_Q4_0, 0, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "not a multiple of Q4_0's block size 32");
    uint64_t k256[2] = {128, 2};
    tensor_file(&b, 2, k256, LM_TYPE_Q6_K, 0, 1024);
    expect_fail_img(&b, "tensor 'blk.0.w'", "block size 256");
    /* misaligned offset, offset past EOF, data running past EOF, offset overflow */
    tensor_file(&b, 2, ne, LM_TYPE_F32, 4, 512);
    expect_fail_img(&b, "tensor 'blk.0.w'", "data offset 4 is not a multiple of the alignment 32");
    tensor_file(&b, 2, ne, LM_TYPE_F32, 1024, 256);
    expect_fail_img(&b, "tensor 'blk.0.w' data [offset 1120, 256 bytes] runs past end of file (size 352)", NULL);
    tensor_file(&b, 2, ne, LM_TYPE_F32, 0, 255);
    expect_fail_img(&b, "tensor 'blk.0.w' data [offset 96, 256 bytes] runs past end of file (size 351)", NULL);
    tensor_file(&b, 2, ne, LM_TYPE_F32, UINT64_MAX - 31, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "runs past end of file");
    tensor_file(&b, 2, ne, LM_TYPE_F32, 1ull << 63, 256);
    expect_fail_img(&b, "tensor 'blk.0.w'", "runs past end of file");
    /* tensor name length 2^63, name with NUL */
    b.n = 0;
    img_header(&b, 3, 1, 0);
    img_u64(&b, 1ull << 63);
    img_bytes(&b, "0123456789012345678901234567890123456789", 40);
    expect_fail_img(&b, "tensor 0", "string length");
    b.n = 0;
    img_header(&b, 3, 1, 0);
    img_u64(&b, 2); img_bytes(&b, "x\0", 2); img_u32(&b, 1); img_u64(&b, 4); img_u32(&b, 0); img_u64(&b, 0);
    img_pad(&b, 32);
    img_bytes(&b, "0123456789abcdef", 16);
    expect_fail_img(&b, "tensor 0", "NUL");
    /* duplicate tensor name */
    b.n = 0;
    img_header(&b, 3, 2, 0);
    img_tinfo(&b, "blk.0.w", 1, ne, LM_TYPE_F32, 0);
    img_tinfo(&b, "blk.0.w", 1, ne, LM_TYPE_F32, 128);
    img_pad(&b, 32);
    for (int k = 0; k < 256; k++) img_bytes(&b, "\0", 1);
    expect_fail_img(&b, "duplicate tensor name 'blk.0.w'", "tensor infos 0 and 1");
    /* a non-default alignment is honoured for the offsets */
    b.n = 0;
    img_header(&b, 3, 1, 1);
    img_str(&b, "general.alignment"); img_u32(&b, LM_GGUF_UINT32); img_u32(&b, 64);
    img_tinfo(&b, "blk.0.w", 1, ne, LM_TYPE_F32, 32);
    img_pad(&b, 64);
    for (int k = 0; k < 256; k++) img_bytes(&b, "\0", 1);
    expect_fail_img(&b, "tensor 'blk.0.w'", "not a multiple of the alignment 64");
    /* long names are shown shortened in messages */
    char longname[300];
    memset(longname, 'z', 299);
    longname[299] = 0;
    b.n = 0;
    img_header(&b, 3, 1, 0);
    img_tinfo(&b, longname, 0, ne, LM_TYPE_F32, 0);
    expect_fail_img(&b, "zzz...'", "n_dims 0");
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_files),
        cmocka_unit_test(test_shared_values),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_writer_exact_bytes),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_copy_kv),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_kv_to_str),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_kv),
        cmocka_unit_test(test_bad_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
