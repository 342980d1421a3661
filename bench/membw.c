/*
 * membw: streaming read bandwidth of main memory, with 1..N threads, for BENCHMARKS.md.
 *
 *   cc -O3 -march=native -pthread bench/membw.c -o membw
 *   ./membw [-s MiB] [-r REPS] [-t 1,2] [--no-huge]
 *
 * A buffer much larger than the caches (default 1024 MiB) is filled once, then read REPS times
 * (default 10) by each thread count, every thread summing its own contiguous share of the buffer
 * (the same access pattern as a decode step streaming the weights). Each repetition is timed from
 * the moment all threads are released until the last one finishes; the best and the median
 * repetition are reported in GB/s (1e9 bytes/s):
 *   threads=1 best_gbs=41.23 median_gbs=39.80 size_mib=1024 huge_pages=requested
 * The buffer asks for transparent huge pages (madvise; --no-huge: plain 4 KB pages, whose TLB misses
 * lower a stream's rate noticeably on some machines).
 * Memory bandwidth on shared machines drifts from minute to minute, so run it next to the
 * measurement it is compared with (bench/compare.sh interleaves them).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
    pthread_barrier_t *start;
    double t_end;
} job;

static void *reader(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->start);
    /* A plain sum: gcc and clang both turn it into 64-byte loads added into vector accumulators (the
     * loop is limited by memory, not by the adds). An 8-way array of sums, the previous form, clang
     * 14 vectorized with gathers, reading at ~8 GB/s where gcc's code read at ~50. */
    uint64_t s = 0;
    for (size_t i = 0; i < j->n; i++) s += j->p[i];
    j->sum = s;
    j->t_end = now_s();
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    size_t mib = 1024;
    int reps = 10, threads[16] = {1, 2}, nt = 2, use_huge = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-s") && i + 1 < argc) mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-huge")) use_huge = 0;
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            nt = 0;
            for (char *tok = strtok(argv[++i], ","); tok && nt < 16; tok = strtok(NULL, ","))
                threads[nt++] = atoi(tok);
        } else {
            fprintf(stderr, "usage: %s [-s MiB] [-r REPS] [-t 1,2] [--no-huge]\n", argv[0]);
            return 2;
        }
    }
    if (mib < 64 || reps < 1 || reps > 1000) {
        fprintf(stderr, "membw: need -s >= 64 and 1 <= -r <= 1000\n");
        return 2;
    }
    const size_t bytes = mib << 20, n = bytes / sizeof(uint64_t);
    uint64_t *buf = aligned_alloc(4096, bytes);
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    /* transparent huge pages when the system offers them on request (THP "madvise" mode): with 4 KB
     * pages, TLB misses cap a single stream well below the memory's bandwidth */
    const int huge = use_huge && madvise(buf, bytes, MADV_HUGEPAGE) == 0;
    for (size_t i = 0; i < n; i++) buf[i] = i * 2654435761u; /* touch every page */
    uint64_t check = 0;
    for (int ti = 0; ti < nt; ti++) {
        const int t = threads[ti];
        if (t < 1 || t > 256) {
            fprintf(stderr, "membw: bad thread count %d\n", t);
            return 2;
        }
        double *gbs = malloc(sizeof(double) * (size_t)reps);
        job *jobs = calloc((size_t)t, sizeof *jobs);
        pthread_t *th = calloc((size_t)t, sizeof *th);
        if (!gbs || !jobs || !th) return 1;
        for (int r = 0; r < reps; r++) {
            pthread_barrier_t start;
            pthread_barrier_init(&start, NULL, (unsigned)t + 1);
            for (int k = 0; k < t; k++) {
                const size_t a = n * (size_t)k / (size_t)t, b = n * (size_t)(k + 1) / (size_t)t;
                jobs[k] = (job){buf + a, b - a, 0, &start, 0};
                pthread_create(&th[k], NULL, reader, &jobs[k]);
            }
            const double t0 = now_s();
            pthread_barrier_wait(&start);
            double t_end = t0;
            for (int k = 0; k < t; k++) {
                pthread_join(th[k], NULL);
                check += jobs[k].sum;
                if (jobs[k].t_end > t_end) t_end = jobs[k].t_end;
            }
            pthread_barrier_destroy(&start);
            gbs[r] = (double)bytes / (t_end - t0) / 1e9;
        }
        qsort(gbs, (size_t)reps, sizeof *gbs, cmp_double);
        printf("threads=%d best_gbs=%.2f median_gbs=%.2f size_mib=%zu huge_pages=%s\n", t,
               gbs[reps - 1], gbs[reps / 2], mib, huge ? "requested" : "no");
        fflush(stdout);
        free(gbs);
        free(jobs);
        free(th);
    }
    free(buf);
    return check == 42 ? 3 : 0; /* keeps the sums alive */
}
