/*
 * decode_stream: how close the decode matrix-vector kernels come to a plain read of memory, with
 * the same threads on the same bytes. This is the quantity that caps tg's share of the bandwidth
 * bound in BENCHMARKS.md (a decode step is almost all such products, and the bound is membw's plain
 * read), measured in seconds rather than in a 30-minute bench/compare.sh run.
 *
 * Build (after `make`):
 *   cc -std=c11 -O3 -march=native -D_GNU_SOURCE -Iinclude -Isrc bench/kernels/decode_stream.c \
 *      build/libllamita.a -lm -lpthread -o build/decode_stream
 * Run:
 *   build/decode_stream [-t THREADS] [-m MB] [-k K] [-r ROUNDS] [-l LEVEL] [TYPE ...]
 *   defaults: 2 threads, a 512 MB matrix, K 2048, 15 rounds, the best level, Q8_0 Q4_0 Q4_K Q6_K.
 *
 * Per type: one matrix of MB megabytes (rows of K elements, transparent huge pages requested, as
 * gguf.c asks for the mapped model) and one activation row already quantized to the type's
 * vec_dot_type, as the forward pass has it. Each thread owns a contiguous share of the rows. A round
 * times, in wall-clock time from the release of all threads to the last one done:
 *   kernel: the product exactly as src/ops.c lm_matmul_rows makes it for one token (the level's gemv
 *           when it has one, else vec_dot row by row);
 *   read:   the same threads summing the same bytes with membw's loop (bench/membw.c).
 * The round's ratio is kernel GB/s / read GB/s: the two run back to back, so this VM's drifting
 * bandwidth (22-68 GB/s within minutes) moves both alike. Printed: the median and quartiles of the
 * per-round ratios, and the median rates. To compare two builds, link each and alternate the runs.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cpu/cpu.h"
#include "quant.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* What every worker reads; written by main between rounds only (the barriers order it). */
typedef struct shared {
    const lm_kernels *k;
    int type, nthreads, mode; /* mode: 0 kernel, 1 read, -1 exit */
    int64_t K, rows;
    size_t rs;
    const uint8_t *w; /* rows x rs bytes */
    const void *xq;   /* the activation row */
    float *out;       /* rows */
    pthread_barrier_t start, done;
} shared;

typedef struct worker {
    shared *sh;
    int id;
    uint64_t sum; /* the read's result, kept so the loop is not removed */
} worker;

/* membw's loop (bench/membw.c: why this form) */
static uint64_t read_sum(const uint64_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

static void *work(void *arg) {
    worker *me = arg;
    shared *sh = me->sh;
    for (;;) {
        pthread_barrier_wait(&sh->start);
        if (sh->mode < 0) break;
        const int64_t r0 = sh->rows * me->id / sh->nthreads, r1 = sh->rows * (me->id + 1) / sh->nthreads;
        if (sh->mode == 0) {
            if (sh->k->gemv[sh->type]) {
                sh->k->gemv[sh->type](sh->K, sh->w, sh->rs, sh->xq, sh->out, r0, r1);
            } else {
                for (int64_t r = r0; r < r1; r++)
                    sh->k->vec_dot[sh->type](sh->K, &sh->out[r], sh->w + (size_t)r * sh->rs, sh->xq);
            }
        } else {
            /* the same bytes, rows [r0, r1), as the aligned 64-bit words inside them (a share need
             * not start 8-byte aligned: rows can be 34 * 64 bytes; < 16 bytes of megabytes left out) */
            const uintptr_t b = (uintptr_t)(sh->w + (size_t)r0 * sh->rs), e = (uintptr_t)(sh->w + (size_t)r1 * sh->rs);
            const uintptr_t a = (b + 7) & ~(uintptr_t)7;
            me->sum += read_sum((const uint64_t *)a, (size_t)((e - a) / 8));
        }
        pthread_barrier_wait(&sh->done);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int nthreads = 2, rounds = 15;
    double mb = 512;
    int64_t K = 2048;
    const char *level = NULL;
    const char *types[32];
    int ntypes = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) nthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) K = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 1 < argc) level = argv[++i];
        else if (argv[i][0] != '-' && ntypes < 32) types[ntypes++] = argv[i];
        else {
            fprintf(stderr, "usage: %s [-t THREADS] [-m MB] [-k K] [-r ROUNDS] [-l LEVEL] [TYPE ...]\n", argv[0]);
            return 2;
        }
    }
    if (nthreads < 1 || nthreads > 256 || mb < 1 || K <= 0 || K % 256 != 0 || rounds < 1 || rounds > 10000) {
        fprintf(stderr, "decode_stream: need 1 <= -t <= 256, -m >= 1, -k a positive multiple of 256, 1 <= -r <= 10000\n");
        return 2;
    }
    if (ntypes == 0) {
        static const char *def[] = {"Q8_0", "Q4_0", "Q4_K", "Q6_K"};
        for (int i = 0; i < 4; i++) types[ntypes++] = def[i];
    }
    const lm_kernels *k = level ? lm_cpu_kernels_level(level) : lm_cpu_kernels();
    if (!k) {
        fprintf(stderr, "decode_stream: level '%s' is not available on this CPU\n", level);
        return 2;
    }
    printf("decode_stream: level %s, %d threads, %.0f MB matrix, K=%lld, %d rounds\n", k->name, nthreads, mb,
           (long long)K, rounds);
    printf("| type | path | kernel GB/s | read GB/s | kernel / read: median (quartiles) |\n|---|---|---|---|---|\n");

    shared sh = {.k = k, .nthreads = nthreads, .K = K};
    worker *wk = calloc((size_t)nthreads, sizeof *wk);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    double *kg = malloc(sizeof(double) * (size_t)rounds), *rg = malloc(sizeof(double) * (size_t)rounds),
           *ratio = malloc(sizeof(double) * (size_t)rounds);
    if (!wk || !th || !kg || !rg || !ratio) return 1;
    pthread_barrier_init(&sh.start, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&sh.done, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        wk[i] = (worker){&sh, i, 0};
        pthread_create(&th[i], NULL, work, &wk[i]);
    }
    for (int ti = 0; ti < ntypes; ti++) {
        int t = -1;
        for (int c = 0; c < LM_TYPE_COUNT; c++) {
            const lm_type_traits *tr = lm_type_traits_get((uint32_t)c);
            if (tr && tr->name && !strcmp(tr->name, types[ti])) t = c;
        }
        const lm_type_traits *tr = t >= 0 ? lm_type_traits_get((uint32_t)t) : NULL;
        if (!tr || !tr->from_float || !k->vec_dot[t] || tr->vec_dot_type == LM_TYPE_F32) {
            fprintf(stderr, "decode_stream: no quantized decode kernel for type '%s'\n", types[ti]);
            continue;
        }
        const size_t rs = lm_row_size((uint32_t)t, K), xs = lm_row_size(tr->vec_dot_type, K);
        const int64_t rows = (int64_t)(mb * 1e6 / (double)rs);
        const size_t bytes = (size_t)rows * rs, alloc = (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
        uint8_t *w = aligned_alloc(2u << 20, alloc);
        void *xq = malloc(xs);
        float *xf = malloc(sizeof(float) * (size_t)K), *out = malloc(sizeof(float) * (size_t)rows);
        if (rows < nthreads) {
            fprintf(stderr, "decode_stream: -m %.0f MB holds %lld rows of %s (%zu bytes each), fewer than the %d threads\n",
                    mb, (long long)rows, tr->name, rs, nthreads);
            return 2;
        }
        if (!w || !xq || !xf || !out) {
            fprintf(stderr, "decode_stream: cannot allocate %.0f MB for %s\n", mb, tr->name);
            return 1;
        }
        (void)madvise(w, alloc, MADV_HUGEPAGE);
        /* 64 distinct random rows, repeated: the content does not change the speed, but every page
         * is written before timing */
        srand(1);
        for (int64_t r = 0; r < rows; r++) {
            if (r < 64) {
                for (int64_t i = 0; i < K; i++) xf[i] = (float)rand() / (float)RAND_MAX - 0.5f;
                tr->from_float(xf, w + (size_t)r * rs, K);
            } else {
                memcpy(w + (size_t)r * rs, w + (size_t)(r % 64) * rs, rs);
            }
        }
        lm_type_traits_get(tr->vec_dot_type)->from_float(xf, xq, K);
        sh.type = t;
        sh.rows = rows;
        sh.rs = rs;
        sh.w = w;
        sh.xq = xq;
        sh.out = out;
        for (int r = -1; r < rounds; r++) { /* round -1: warm-up */
            double g[2];
            for (int m = 0; m < 2; m++) {
                sh.mode = m;
                const double t0 = now_s();
                pthread_barrier_wait(&sh.start);
                pthread_barrier_wait(&sh.done);
                g[m] = (double)bytes / (now_s() - t0) / 1e9;
            }
            if (r >= 0) {
                kg[r] = g[0];
                rg[r] = g[1];
                ratio[r] = g[0] / g[1];
            }
        }
        qsort(kg, (size_t)rounds, sizeof *kg, cmp_double);
        qsort(rg, (size_t)rounds, sizeof *rg, cmp_double);
        qsort(ratio, (size_t)rounds, sizeof *ratio, cmp_double);
        printf("| %s | %s | %.1f | %.1f | %.0f%% (%.0f%%-%.0f%%) |\n", tr->name, k->gemv[t] ? "gemv" : "vec_dot",
               kg[rounds / 2], rg[rounds / 2], 100 * ratio[rounds / 2], 100 * ratio[rounds / 4],
               100 * ratio[(3 * rounds) / 4]);
        fflush(stdout);
        free(w);
        free(xq);
        free(xf);
        free(out);
    }
    sh.mode = -1;
    pthread_barrier_wait(&sh.start);
    uint64_t check = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        check += wk[i].sum;
    }
    free(wk);
    free(th);
    free(kg);
    free(rg);
    free(ratio);
    return check == 42 ? 3 : 0; /* keeps the sums alive */
}
