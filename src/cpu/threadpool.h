/*
 * A persistent thread pool for the forward pass.
 *
 * n_threads threads in all: the caller of lm_threadpool_run is thread 0, the pool owns the other
 * n_threads - 1, created once (lm_threadpool_new) and kept until lm_threadpool_free. A run executes
 * fn(arg, ith, nth) on every thread (ith in [0, nth), nth = n_threads) and returns when all of them
 * have returned. Inside fn, lm_threadpool_barrier splits the work into phases, and
 * lm_threadpool_next hands out work items dynamically. Nothing is allocated per run.
 *
 * Waiting (for a run, at a barrier) spins with the CPU's pause instruction for a short while, then
 * sleeps on a condition variable, so idle pools cost nothing and short phases cost about a
 * microsecond.
 *
 * A pool is driven by one thread at a time (the context that owns it). Runs do not nest.
 */
#ifndef LM_THREADPOOL_H
#define LM_THREADPOOL_H
#include <stddef.h>
#include <stdint.h>

typedef struct lm_threadpool lm_threadpool;

/* fn(arg, ith, nth): the per-thread body of a run. */
typedef void (*lm_pool_fn)(void *arg, int ith, int nth);

/* Largest pool size accepted (far above any sensible CPU count for this engine). */
#define LM_THREADPOOL_MAX 512

/* Creates a pool of n_threads threads (1 <= n_threads <= LM_THREADPOOL_MAX); n_threads - 1 worker
 * threads are started now. Returns NULL with a message in err on bad n_threads or when the threads
 * cannot be created. Free with lm_threadpool_free. */
lm_threadpool *lm_threadpool_new(int n_threads, char *err, size_t err_size);

/* Stops and joins the workers, frees the pool. NULL is a no-op. Not during a run. */
void lm_threadpool_free(lm_threadpool *tp);

/* The pool's thread count (nth of every run). */
int lm_threadpool_n_threads(const lm_threadpool *tp);

/* Runs fn(arg, ith, nth) on all nth threads (the caller as ith 0) and returns when every thread
 * has returned from fn. Memory written by any thread in fn is visible to the caller afterwards.
 * The work counter (lm_threadpool_next) starts at 0. */
void lm_threadpool_run(lm_threadpool *tp, lm_pool_fn fn, void *arg);

/* Inside fn only, called by all nth threads the same number of times: returns when every thread
 * has arrived. Writes made before the barrier by any thread are visible to all after it. The last
 * thread to arrive resets the work counter to 0 before anyone leaves. */
void lm_threadpool_barrier(lm_threadpool *tp);

/* Inside fn: the next work item number of the current phase (0, 1, 2, ... over all threads
 * together; each number is handed out once). Reset to 0 at the start of a run and by every
 * barrier. */
int64_t lm_threadpool_next(lm_threadpool *tp);
#endif
