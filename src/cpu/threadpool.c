/* Persistent thread pool with a spin-then-sleep barrier. Contract: threadpool.h.
 *
 * State shared by the threads, each hot counter on its own cache line:
 *   gen      run generation: the caller bumps it to start a run (or to stop the workers)
 *   phase    barrier generation: the last thread to arrive bumps it
 *   arrived  threads arrived at the current barrier
 *   counter  the work counter of lm_threadpool_next
 * A waiter spins on gen / phase with the pause instruction, then sleeps on one condition variable.
 * Sleeping is made race-free by the sleepers count: a waiter increments it (under the mutex) before
 * its last check of the value; a notifier changes the value first and then, if anyone sleeps,
 * broadcasts under the mutex. All these accesses are sequentially consistent, so either the waiter
 * sees the new value or the notifier sees the sleeper.
 * The end of a run is a barrier: the caller returns from lm_threadpool_run when all threads have
 * arrived there. */
#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define LM_CACHE_LINE 64

/* Pause iterations before sleeping: about 0.1-0.5 ms on current x86 / arm cores, so a forward pass
 * never sleeps between phases while an idle pool goes to sleep quickly. Much shorter when there are
 * more threads than CPUs (spinning then only steals time from the thread everyone waits for). */
#define LM_SPIN_ITERS 8192
#define LM_SPIN_ITERS_OVERSUBSCRIBED 16
#define LM_YIELD_ITERS_OVERSUBSCRIBED 256

typedef struct lm_worker {
    lm_threadpool *tp;
    int ith;
    pthread_t thread;
} lm_worker;

struct lm_threadpool {
    _Alignas(LM_CACHE_LINE) atomic_uint gen;
    _Alignas(LM_CACHE_LINE) atomic_uint phase;
    _Alignas(LM_CACHE_LINE) atomic_int arrived;
    _Alignas(LM_CACHE_LINE) atomic_llong counter;
    _Alignas(LM_CACHE_LINE) atomic_int sleepers;
    atomic_bool stop;
    int n_threads;
    int spin_iters;  /* pause iterations before sleeping */
    int yield_iters; /* then sched_yield calls (only when oversubscribed) */
    lm_pool_fn fn; /* the current run's body; written by the caller before bumping gen */
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lm_worker *workers; /* [n_threads - 1], ith 1..n_threads-1 */
    int n_started;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Returns once *v != old (spins first, then sleeps). */
static void wait_change(lm_threadpool *tp, atomic_uint *v, unsigned old) {
    for (int i = 0; i < tp->spin_iters; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != old) return;
        cpu_relax();
    }
    for (int i = 0; i < tp->yield_iters; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != old) return;
        sched_yield(); /* more threads than CPUs: let the one everybody waits for run */
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->sleepers, 1);
    while (atomic_load(v) == old) pthread_cond_wait(&tp->cv, &tp->mu);
    atomic_fetch_sub(&tp->sleepers, 1);
    pthread_mutex_unlock(&tp->mu);
}

/* Wakes the sleepers after a value they may wait on was changed (seq_cst) by the caller. */
static void notify(lm_threadpool *tp) {
    if (atomic_load(&tp->sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
}

void lm_threadpool_barrier(lm_threadpool *tp) {
    if (tp->n_threads == 1) {
        atomic_store_explicit(&tp->counter, 0, memory_order_relaxed);
        return;
    }
    /* read the phase before arriving: it cannot change until this thread has arrived */
    const unsigned ph = atomic_load(&tp->phase);
    if (atomic_fetch_add(&tp->arrived, 1) == tp->n_threads - 1) {
        atomic_store_explicit(&tp->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&tp->counter, 0, memory_order_relaxed);
        atomic_store(&tp->phase, ph + 1); /* releases everyone, publishing the resets */
        notify(tp);
    } else {
        wait_change(tp, &tp->phase, ph);
    }
}

int64_t lm_threadpool_next(lm_threadpool *tp) {
    return (int64_t)atomic_fetch_add_explicit(&tp->counter, 1, memory_order_relaxed);
}

int lm_threadpool_n_threads(const lm_threadpool *tp) { return tp->n_threads; }

static void *worker_main(void *p) {
    lm_worker *w = p;
    lm_threadpool *tp = w->tp;
    unsigned seen = 0; /* gen starts at 0 */
    for (;;) {
        wait_change(tp, &tp->gen, seen);
        seen = atomic_load(&tp->gen); /* cannot move again before this thread ends the run */
        if (atomic_load(&tp->stop)) break;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        lm_threadpool_barrier(tp);
    }
    return NULL;
}

void lm_threadpool_run(lm_threadpool *tp, lm_pool_fn fn, void *arg) {
    atomic_store_explicit(&tp->counter, 0, memory_order_relaxed);
    if (tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_fetch_add(&tp->gen, 1); /* publishes fn, arg and the counter reset */
    notify(tp);
    fn(arg, 0, tp->n_threads);
    lm_threadpool_barrier(tp);
}

/* Stops and joins the started workers (also used to clean up a failed creation). */
static void stop_workers(lm_threadpool *tp) {
    if (tp->n_started > 0) {
        atomic_store(&tp->stop, true);
        atomic_fetch_add(&tp->gen, 1);
        /* unconditional broadcast: a worker may be between its sleepers increment and its wait */
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
        for (int i = 0; i < tp->n_started; i++) pthread_join(tp->workers[i].thread, NULL);
    }
    tp->n_started = 0;
}

lm_threadpool *lm_threadpool_new(int n_threads, char *err, size_t err_size) {
    if (n_threads < 1 || n_threads > LM_THREADPOOL_MAX) {
        lm_seterr(err, err_size, "thread pool: n_threads = %d is out of range [1, %d]", n_threads,
                  LM_THREADPOOL_MAX);
        return NULL;
    }
    lm_threadpool *tp = aligned_alloc(LM_CACHE_LINE, (sizeof *tp + LM_CACHE_LINE - 1) /
                                                         LM_CACHE_LINE * LM_CACHE_LINE);
    if (!tp) {
        lm_seterr(err, err_size, "thread pool: out of memory");
        return NULL;
    }
    memset(tp, 0, sizeof *tp);
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->phase, 0);
    atomic_init(&tp->arrived, 0);
    atomic_init(&tp->counter, 0);
    atomic_init(&tp->sleepers, 0);
    atomic_init(&tp->stop, false);
    tp->n_threads = n_threads;
    const long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    const bool over = n_cpu > 0 && n_threads > n_cpu;
    tp->spin_iters = over ? LM_SPIN_ITERS_OVERSUBSCRIBED : LM_SPIN_ITERS;
    tp->yield_iters = over ? LM_YIELD_ITERS_OVERSUBSCRIBED : 0;
    if (pthread_mutex_init(&tp->mu, NULL) != 0) {
        lm_seterr(err, err_size, "thread pool: cannot create a mutex");
        free(tp);
        return NULL;
    }
    if (pthread_cond_init(&tp->cv, NULL) != 0) {
        lm_seterr(err, err_size, "thread pool: cannot create a condition variable");
        pthread_mutex_destroy(&tp->mu);
        free(tp);
        return NULL;
    }
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) {
            lm_seterr(err, err_size, "thread pool: out of memory");
            lm_threadpool_free(tp);
            return NULL;
        }
        /* workers get no signals: process-directed signals (SIGINT, ...) go to the caller's thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = 0;
        for (int i = 0; i < n_threads - 1; i++) {
            tp->workers[i].tp = tp;
            tp->workers[i].ith = i + 1;
            rc = pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i]);
            if (rc != 0) break;
            tp->n_started++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            lm_seterr(err, err_size, "thread pool: cannot start thread %d of %d: %s",
                      tp->n_started + 1, n_threads - 1, strerror(rc));
            lm_threadpool_free(tp);
            return NULL;
        }
    }
    return tp;
}

void lm_threadpool_free(lm_threadpool *tp) {
    if (!tp) return;
    stop_workers(tp);
    free(tp->workers);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp);
}
