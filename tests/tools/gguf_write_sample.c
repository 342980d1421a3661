/*
 * gguf_write_sample OUT [VERSION [ALIGNMENT]]: writes OUT with llamita's GGUF writer: one key of every
 * value type, an array of every element type, string arrays, and tensors of several types and ranks,
 * for tests/py/test_gguf.py to read back with the independent NumPy reader (tests/ref/gguf_np.py).
 * VERSION 2 or 3 (default 3); ALIGNMENT 0 = leave the default (32, no general.alignment key).
 * The values below are the sample's specification: test_gguf.py checks each of them.
 * Tensor i's byte k is (k * 31 + i * 7 + 1) mod 256.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "quant.h"

static uint8_t tdata[6][8192];

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s OUT [VERSION [ALIGNMENT]]\n", argv[0]);
        return 2;
    }
    uint32_t version = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 3;
    uint32_t alignment = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0;
    lm_gguf_writer *w = lm_gguf_writer_new();
    if (!w) return 1;
    lm_gguf_writer_set_version(w, version);
    if (alignment) lm_gguf_writer_set_alignment(w, alignment);
    lm_gguf_writer_set_str(w, "general.architecture", "llama");
    lm_gguf_writer_set_u8(w, "s.u8", 200);
    lm_gguf_writer_set_i8(w, "s.i8", -100);
    lm_gguf_writer_set_u16(w, "s.u16", 65000);
    lm_gguf_writer_set_i16(w, "s.i16", -32000);
    lm_gguf_writer_set_u32(w, "s.u32", 4000000000u);
    lm_gguf_writer_set_i32(w, "s.i32", -2000000000);
    lm_gguf_writer_set_u64(w, "s.u64", 18000000000000000000ull);
    lm_gguf_writer_set_i64(w, "s.i64", -9000000000000000000ll);
    lm_gguf_writer_set_f32(w, "s.f32", 0.1f);
    lm_gguf_writer_set_f64(w, "s.f64", 0.1);
    lm_gguf_writer_set_bool(w, "s.bool_t", true);
    lm_gguf_writer_set_bool(w, "s.bool_f", false);
    lm_gguf_writer_set_str(w, "s.str", "h\xc3\xa9llo \"world\"\n");
    lm_gguf_writer_set_str(w, "s.empty", "");
    const uint8_t a_u8[] = {0, 1, 255};
    const int8_t a_i8[] = {-128, 0, 127};
    const uint16_t a_u16[] = {0, 65535};
    const int16_t a_i16[] = {-32768, 32767};
    const uint32_t a_u32[] = {0, 1, 0xFFFFFFFFu};
    const int32_t a_i32[] = {INT32_MIN, -1, INT32_MAX};
    const float a_f32[] = {1.5f, -0.25f, 1e-30f};
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
    const char *strs[] = {"<unk>", "", "\xe2\x96\x81the", "a\tb"};
    lm_gguf_writer_set_arr_str(w, "a.str", strs, 4);
    lm_gguf_writer_set_arr_str(w, "a.empty_str", NULL, 0);

    static const struct { const char *name; uint32_t type; uint32_t nd; int64_t ne[4]; } ts[6] = {
        {"t.f32", LM_TYPE_F32, 1, {5}},
        {"t.f16", LM_TYPE_F16, 2, {3, 7}},
        {"t.q8_0", LM_TYPE_Q8_0, 3, {64, 2, 3}},
        {"t.q4_k", LM_TYPE_Q4_K, 2, {512, 3}},
        {"t.q6_k", LM_TYPE_Q6_K, 4, {256, 1, 2, 3}},
        {"t.bf16", LM_TYPE_BF16, 2, {10, 3}},
    };
    char err[256];
    for (int i = 0; i < 6; i++) {
        for (size_t k = 0; k < sizeof tdata[i]; k++) tdata[i][k] = (uint8_t)(k * 31 + (size_t)i * 7 + 1);
        if (!lm_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].nd, ts[i].ne, tdata[i], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    if (!lm_gguf_writer_write(w, argv[1], err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        lm_gguf_writer_free(w);
        return 1;
    }
    lm_gguf_writer_free(w);
    return 0;
}
