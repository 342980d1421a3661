/* Kernel dispatch: builds one complete table per level at first use and picks the best level the
 * CPU supports (capped by $LLAMITA_CPU). See cpu.h. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
/* F16C (CPUID.1:ECX bit 29); clang's __builtin_cpu_supports does not know "f16c". */
static int has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1;
}
#endif

enum { LVL_SCALAR, LVL_AVX2, LVL_AVX512, LVL_NEON, LVL_COUNT };
static const char *const level_names[LVL_COUNT] = {"scalar", "avx2", "avx512", "neon"};

static lm_kernels tables[LVL_COUNT];
static int supported[LVL_COUNT];
static int best = LVL_SCALAR;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void scalar_dot_f16(int64_t n, float *restrict s, const lm_fp16 *restrict x, const lm_fp16 *restrict y) {
    double sum = 0; /* ggml's reference accumulates in double */
    for (int64_t i = 0; i < n; i++) sum += (double)lm_fp16_to_fp32(x[i]) * (double)lm_fp16_to_fp32(y[i]);
    *s = (float)sum;
}
static void scalar_axpy_f16(int64_t n, float *restrict y, float a, const lm_fp16 *restrict x) {
    for (int64_t i = 0; i < n; i++) y[i] += a * lm_fp16_to_fp32(x[i]);
}
static void scalar_fp32_to_fp16(const float *restrict x, lm_fp16 *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = lm_fp32_to_fp16(x[i]);
}
static void scalar_fp16_to_fp32(const lm_fp16 *restrict x, float *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = lm_fp16_to_fp32(x[i]);
}

void lm_cpu_init_scalar(lm_kernels *k) {
    memset(k, 0, sizeof *k);
    k->name = "scalar";
    for (uint32_t t = 0; t < LM_TYPE_COUNT; t++) {
        const lm_type_traits *tr = lm_type_traits_get(t);
        if (!tr) continue;
        k->vec_dot[t] = tr->vec_dot;
        k->from_float[t] = tr->from_float;
        k->to_float[t] = tr->to_float;
    }
    k->dot_f16 = scalar_dot_f16;
    k->axpy_f16 = scalar_axpy_f16;
    k->fp32_to_fp16 = scalar_fp32_to_fp16;
    k->fp16_to_fp32 = scalar_fp16_to_fp32;
}

static void detect(void) {
    lm_cpu_init_scalar(&tables[LVL_SCALAR]);
    supported[LVL_SCALAR] = 1;
    int top = LVL_SCALAR;
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c()) {
        tables[LVL_AVX2] = tables[LVL_SCALAR];
        tables[LVL_AVX2].name = "avx2";
        lm_cpu_init_avx2(&tables[LVL_AVX2]);
        lm_cpu_init_gemm_avx2(&tables[LVL_AVX2]);
        supported[LVL_AVX2] = 1;
        top = LVL_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vnni")) {
            tables[LVL_AVX512] = tables[LVL_AVX2];
            tables[LVL_AVX512].name = "avx512";
            lm_cpu_init_avx512(&tables[LVL_AVX512]);
            lm_cpu_init_gemm_avx512(&tables[LVL_AVX512]);
            supported[LVL_AVX512] = 1;
            top = LVL_AVX512;
        }
    }
#endif
#if defined(__aarch64__)
    tables[LVL_NEON] = tables[LVL_SCALAR];
    tables[LVL_NEON].name = "neon";
    lm_cpu_init_neon(&tables[LVL_NEON]);
    lm_cpu_init_gemm_neon(&tables[LVL_NEON]);
    supported[LVL_NEON] = 1;
    top = LVL_NEON;
#endif
    best = top;
    const char *cap = getenv("LLAMITA_CPU");
    if (cap && *cap) {
        for (int l = 0; l < LVL_COUNT; l++)
            if (!strcmp(cap, level_names[l]) && supported[l] && l <= best) best = l;
    }
}

const lm_kernels *lm_cpu_kernels(void) {
    pthread_once(&once, detect);
    return &tables[best];
}

const lm_kernels *lm_cpu_kernels_level(const char *name) {
    pthread_once(&once, detect);
    for (int l = 0; l < LVL_COUNT; l++)
        if (!strcmp(name, level_names[l])) return supported[l] ? &tables[l] : NULL;
    return NULL;
}

int lm_cpu_levels(const char **names, int max) {
    pthread_once(&once, detect);
    int n = 0;
    for (int l = 0; l < LVL_COUNT && n < max; l++)
        if (supported[l]) names[n++] = level_names[l];
    return n;
}
