/*
 * Micro-benchmark of the batched GEMM kernels (k->gemm[type]) against a loop over the same level's
 * vec_dot, one thread. Prints GMAC/s (multiply-adds per second: rows * K * T / time).
 *
 *   bench_gemm [-K 2048] [-R 2048] [-T 512] [-c CHUNK] [-r REPS] [-l LEVEL] [-n] [-w] [TYPE...]
 *     -c CHUNK   call the gemm on row ranges of CHUNK rows, as the threaded model does (default: all)
 *     -l LEVEL   kernel level (default: the best this CPU supports; LLAMITA_CPU caps it too)
 *     -n         skip the vec_dot loop (it is slow at the scalar level)
 *     -w         time by the wall clock instead of this thread's CPU time
 *     TYPE       e.g. Q8_0 Q4_K (default: every type with a gemm at that level)
 * Build: make, then
 *   cc -std=c11 -O2 -D_GNU_SOURCE -Iinclude -Isrc bench/gemm/bench_gemm.c build/libllamita.a \
 *      -lcurl -lcjson -lm -lpthread -o build/bench_gemm
 * Weights are random raw blocks with sane scales (timing does not depend on the values); the time is
 * the best of REPS runs after one warm-up.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu.h"
#include "quant.h"

/* CPU time of this thread by default (robust on a shared machine: time spent descheduled does not
 * count), wall-clock time with -w. */
static int use_wall = 0;
static double now(void) {
    struct timespec ts;
    clock_gettime(use_wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* Random weight rows: random bytes, then every fp16 scale field set to a small sane value. Float
 * types get random normal-range values. */
static void fill_weights(uint32_t type, uint8_t *w, size_t bytes, size_t nblocks) {
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    const lm_type_traits *tr = lm_type_traits_get(type);
    int a = -1, b = -1;
    switch (type) {
    case LM_TYPE_Q4_0: case LM_TYPE_Q5_0: case LM_TYPE_Q8_0: a = 0; break;
    case LM_TYPE_Q4_1: case LM_TYPE_Q5_1: case LM_TYPE_Q4_K: case LM_TYPE_Q5_K: a = 0; b = 2; break;
    case LM_TYPE_Q2_K: a = 80; b = 82; break;
    case LM_TYPE_Q3_K: a = 108; break;
    case LM_TYPE_Q6_K: a = 208; break;
    default: break;
    }
    if (type == LM_TYPE_F32 || type == LM_TYPE_F16 || type == LM_TYPE_BF16) {
        for (size_t i = 0; i < nblocks; i++) {
            float v = (float)((double)(rnd() % 2001) / 1000.0 - 1.0);
            if (type == LM_TYPE_F32) memcpy(w + 4 * i, &v, 4);
            else {
                uint16_t h = type == LM_TYPE_F16 ? lm_fp32_to_fp16(v) : lm_fp32_to_bf16(v);
                memcpy(w + 2 * i, &h, 2);
            }
        }
        return;
    }
    lm_fp16 s = lm_fp32_to_fp16(0.01f);
    for (size_t i = 0; i < nblocks; i++) {
        memcpy(w + i * tr->type_size + a, &s, 2);
        if (b >= 0) memcpy(w + i * tr->type_size + b, &s, 2);
    }
}

int main(int argc, char **argv) {
    int64_t K = 2048, R = 2048, T = 512, chunk = 0;
    int reps = 3, no_vecdot = 0;
    const char *level = NULL;
    uint32_t types[LM_TYPE_COUNT];
    int ntypes = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-K") && i + 1 < argc) K = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-R") && i + 1 < argc) R = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-T") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) chunk = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 1 < argc) level = argv[++i];
        else if (!strcmp(argv[i], "-n")) no_vecdot = 1;
        else if (!strcmp(argv[i], "-w")) use_wall = 1;
        else {
            int t = lm_type_from_name(argv[i]);
            if (t < 0 || ntypes >= LM_TYPE_COUNT) {
                fprintf(stderr, "usage: bench_gemm [-K N] [-R N] [-T N] [-c CHUNK] [-r REPS] [-l LEVEL] [-n] [-w] [TYPE...]\n");
                return 2;
            }
            types[ntypes++] = (uint32_t)t;
        }
    }
    const lm_kernels *k = level ? lm_cpu_kernels_level(level) : lm_cpu_kernels();
    if (!k) {
        fprintf(stderr, "level %s not available here\n", level);
        return 1;
    }
    if (ntypes == 0)
        for (uint32_t t = 0; t < LM_TYPE_COUNT; t++)
            if (k->gemm[t]) types[ntypes++] = t;
    if (chunk <= 0 || chunk > R) chunk = R;
    printf("level %s, K=%lld rows=%lld T=%lld, calls of %lld rows, 1 thread, best of %d (%s time)\n", k->name,
           (long long)K, (long long)R, (long long)T, (long long)chunk, reps, use_wall ? "wall" : "thread CPU");
    printf("| type | gemm GMAC/s | vec_dot loop GMAC/s | speed-up |\n|---|---|---|---|\n");
    for (int ti = 0; ti < ntypes; ti++) {
        uint32_t type = types[ti];
        const lm_type_traits *tr = lm_type_traits_get(type);
        size_t wrs = lm_row_size(type, K), xrs = lm_row_size(tr->vec_dot_type, K);
        if (!wrs || !xrs) {
            fprintf(stderr, "%s: K=%lld is not a multiple of the block size\n", tr->name, (long long)K);
            continue;
        }
        uint8_t *W = malloc(wrs * (size_t)R), *X = malloc(xrs * (size_t)T);
        float *Y = malloc(sizeof(float) * (size_t)(R * T)), *xf = malloc(sizeof(float) * (size_t)K);
        fill_weights(type, W, wrs * (size_t)R, (size_t)(R * K / tr->blck_size));
        for (int64_t t = 0; t < T; t++) {
            for (int64_t i = 0; i < K; i++) xf[i] = (float)((double)(rnd() % 2001) / 1000.0 - 1.0);
            lm_type_traits_get(tr->vec_dot_type)->from_float(xf, X + (size_t)t * xrs, K);
        }
        double macs = (double)R * (double)K * (double)T;
        double best_g = INFINITY, best_v = INFINITY;
        if (k->gemm[type]) {
            for (int r = 0; r <= reps; r++) {
                double t0 = now();
                for (int64_t r0 = 0; r0 < R; r0 += chunk)
                    k->gemm[type](K, W, wrs, X, xrs, T, Y, R, r0, r0 + chunk < R ? r0 + chunk : R);
                double dt = now() - t0;
                if (r > 0 && dt < best_g) best_g = dt;
            }
        }
        if (!no_vecdot) {
            for (int r = 0; r <= (reps > 1 ? 1 : reps); r++) {
                double t0 = now();
                for (int64_t t = 0; t < T; t++)
                    for (int64_t row = 0; row < R; row++)
                        k->vec_dot[type](K, &Y[t * R + row], W + (size_t)row * wrs, X + (size_t)t * xrs);
                double dt = now() - t0;
                if (r > 0 && dt < best_v) best_v = dt;
            }
        }
        double g = isinf(best_g) ? 0 : macs / best_g * 1e-9, v = isinf(best_v) ? 0 : macs / best_v * 1e-9;
        printf("| %s | %.1f | %.1f | %.2fx |\n", tr->name, g, v, v > 0 ? g / v : 0.0);
        fflush(stdout);
        free(W);
        free(X);
        free(Y);
        free(xf);
    }
    return 0;
}
