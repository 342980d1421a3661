/*
 * vecdot_bw: single-thread throughput of each vec_dot kernel, in GB/s of weight bytes streamed, per
 * kernel level (scalar, avx2, avx512, neon: whatever this CPU supports), like one thread of a decode
 * matvec: a ~64 MB weight matrix of rows of K elements times one activation row (already quantized to
 * the type's vec_dot_type, as the forward pass does once per matmul).
 *
 * Build (after `make`):
 *   cc -std=c11 -O2 -D_GNU_SOURCE -Iinclude -Isrc bench/kernels/vecdot_bw.c build/libllamita.a \
 *      -lm -lpthread -o build/vecdot_bw
 * Run:
 *   build/vecdot_bw [-k K] [-m MB] [-r REPS] [-t TYPE,...] [-l LEVEL,...]
 *   defaults: K 2048, 64 MB per type, 7 repetitions, all weight types, all levels.
 * Levels are measured interleaved (A B C A B C ...) so drifting memory bandwidth hits them alike; the
 * table gives the median and the best repetition, timed in thread CPU time (robust to other processes
 * taking the core). `-m 0.5` keeps the matrix in L2 and so measures the kernel's compute rate alone. A plain C streaming read of the same buffer (compiled
 * for the baseline ISA, whatever the compiler vectorizes) is measured the same way as a reference.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu.h"
#include "quant.h"

/* Thread CPU time: on a busy machine the thread's descheduled time does not count (on an idle one this
 * equals wall time). */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x1234567;
static float rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 2685821657736338717ull) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Streaming read of n bytes: the reference figure (sum of 64-bit words, 4 chains). */
static uint64_t read_stream(const uint8_t *p, size_t n) {
    const uint64_t *w = (const uint64_t *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) {
        a += w[i];
        b += w[i + 1];
        c += w[i + 2];
        d += w[i + 3];
    }
    return a ^ b ^ c ^ d;
}

static int in_list(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncasecmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int64_t K = 2048;
    double mb = 64;
    int reps = 7;
    const char *types = NULL, *levels_sel = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-k") && i + 1 < argc) K = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "-l") && i + 1 < argc) levels_sel = argv[++i];
        else {
            fprintf(stderr, "usage: %s [-k K] [-m MB] [-r REPS] [-t TYPE,...] [-l LEVEL,...]\n", argv[0]);
            return 2;
        }
    }
    if (K <= 0 || K % 256 != 0 || mb <= 0 || reps < 1 || reps > 1000) {
        fprintf(stderr, "K must be a positive multiple of 256, MB and REPS positive\n");
        return 2;
    }
    const char *all[8];
    int nall = lm_cpu_levels(all, 8), nl = 0;
    const lm_kernels *lv[8];
    for (int i = 0; i < nall; i++)
        if (in_list(levels_sel, all[i])) lv[nl++] = lm_cpu_kernels_level(all[i]);

    static const int wt[] = {LM_TYPE_F32,  LM_TYPE_F16,  LM_TYPE_BF16, LM_TYPE_Q8_0, LM_TYPE_Q4_0,
                             LM_TYPE_Q4_1, LM_TYPE_Q5_0, LM_TYPE_Q5_1, LM_TYPE_Q2_K, LM_TYPE_Q3_K,
                             LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K};
    float *xf = malloc((size_t)K * sizeof *xf);
    float *out = malloc(sizeof(float) * 1000000);
    if (!xf || !out) return 1;
    for (int64_t i = 0; i < K; i++) xf[i] = rnd();

    printf("vec_dot throughput, 1 thread, K=%lld, %.0f MB weights per type, %d reps (median / best GB/s)\n",
           (long long)K, mb, reps);
    printf("| type | bytes/row |");
    for (int l = 0; l < nl; l++) printf(" %s |", lv[l]->name);
    printf(" C read |\n|---|---|");
    for (int l = 0; l <= nl; l++) printf("---|");
    printf("\n");

    for (size_t ti = 0; ti < sizeof wt / sizeof wt[0]; ti++) {
        const int t = wt[ti];
        const lm_type_traits *tr = lm_type_traits_get((uint32_t)t);
        if (!in_list(types, tr->name)) continue;
        const size_t rs = lm_row_size((uint32_t)t, K), xs = lm_row_size(tr->vec_dot_type, K);
        int64_t rows = (int64_t)(mb * 1048576.0 / (double)rs);
        if (rows < 1) rows = 1;
        if (rows > 1000000) rows = 1000000;
        uint8_t *w = malloc((size_t)rows * rs), *xq = malloc(xs);
        if (!w || !xq) return 1;
        /* fill: quantize one random row, replicate with random raw bytes mixed in (content does not
         * change the speed, but every page must be touched before timing) */
        float *tmp = malloc((size_t)K * sizeof *tmp);
        for (int64_t i = 0; i < K; i++) tmp[i] = rnd();
        tr->from_float(tmp, w, K);
        for (int64_t r = 1; r < rows; r++) memcpy(w + (size_t)r * rs, w, rs);
        free(tmp);
        lm_type_traits_get(tr->vec_dot_type)->from_float(xf, xq, K);

        double *times = malloc(sizeof(double) * (size_t)(nl + 1) * (size_t)reps);
        volatile uint64_t sink = 0;
        for (int rep = 0; rep < reps + 1; rep++) { /* rep 0: warm-up */
            for (int l = 0; l <= nl; l++) {
                double t0 = now_s();
                if (l < nl) {
                    lm_vec_dot_fn dot = lv[l]->vec_dot[t];
                    for (int64_t r = 0; r < rows; r++) dot(K, &out[r], w + (size_t)r * rs, xq);
                } else {
                    sink ^= read_stream(w, (size_t)rows * rs);
                }
                double dt = now_s() - t0;
                if (rep > 0) times[(size_t)l * (size_t)reps + (size_t)(rep - 1)] = dt;
            }
        }
        (void)sink;
        printf("| %s | %zu |", tr->name, rs);
        const double gb = (double)rows * (double)rs / 1e9;
        for (int l = 0; l <= nl; l++) {
            double *tl = times + (size_t)l * (size_t)reps;
            qsort(tl, (size_t)reps, sizeof *tl, cmp_double);
            printf(" %.1f / %.1f |", gb / tl[reps / 2], gb / tl[0]);
        }
        printf("\n");
        fflush(stdout);
        free(times);
        free(w);
        free(xq);
    }
    free(xf);
    free(out);
    return 0;
}
