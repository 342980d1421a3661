/*
 * Decode matrix-vector products (lm_gemv_fn, cpu.h), shared by the per-arch kernel files: GEMV_ROWS
 * weight rows at a time against the one activation row, each row with its own accumulators in exactly
 * the order of the type's vec_dot (so results are bit-identical to calling vec_dot per row), while the
 * activation's loads and conversions are shared between the rows and the rows' independent dependency
 * chains overlap (one row alone leaves the core waiting on its accumulator chain).
 *
 * A kernel file writes one body per type, `static inline __attribute__((always_inline)) void
 * NAME_rows(const int R, int64_t n, float *s, const char *vx, size_t xs, const void *vy, const char *pf)`
 * (R rows at vx, vx + xs, ...; s[0..R); pf: see gemv_prefetch), whose loops over the R rows carry GEMV_UNROLL so that with R constant they
 * become straight-line code; it is inlined with R = 1 for vec_dot and R = GEMV_ROWS by DEFINE_GEMV.
 * Only the types whose per-row arithmetic dominates use DEFINE_GEMV (Q4_1, Q5_0, Q5_1 on x86; Q8_0,
 * Q4_0 on NEON, not measured on hardware): several rows side by side are several short memory streams,
 * which the prefetchers follow worse than one (x86 files' headers give the figures); the K-quant and
 * x86 Q8_0 bodies keep R for that reason only as R = 1 (vec_dot, with stream_pf below).
 */
#ifndef LM_CPU_GEMV_H
#define LM_CPU_GEMV_H

#define GEMV_ROWS 4
#define GEMV_UNROLL _Pragma("GCC unroll 4")

/* Software prefetch of the next row group while this one is computed. Reading R rows side by side
 * makes R short streams (a row is ~1-4 KB) that restart every group: the hardware prefetchers, trained
 * on long sequential streams, then fall behind (measured: from DRAM, 4 rows at a time without this ran
 * at 2/3 of the one-row kernel's rate). The next group is the contiguous range [pf, pf + R * ws); the
 * body asks for its share of it at each step: bytes [o0, o1) of the range. pf NULL: nothing.
 * One prefetch every 64 bytes from o0 (consecutive calls' ranges touch, so no line of the stream is
 * more than 64 bytes from a prefetched address and every line is asked for). o1 - o0 is a compile-time
 * constant at every call site, so this is straight-line code: the previous line-aligned loop cost a
 * dozen instructions and a branch per Q4_K super-block; without them the K-quant decode kernels
 * stream 2-5% faster from memory (2 threads, bench/kernels/decode_stream.c, 8 paired runs: Q4_K +2.2%
 * won 8 of 8, Q6_K +4.6% won 7 of 8, Q8_0 +0.8%). */
static inline void gemv_prefetch(const char *pf, size_t o0, size_t o1) {
    if (!pf) return;
    const size_t span = o1 - o0;
    _Pragma("GCC unroll 16") for (size_t o = 0; o < span; o += 64) __builtin_prefetch(pf + o0 + o, 0, 3);
}

/* Decode reads each weight row once, row after row: one sequential stream per thread, which the
 * hardware prefetchers follow, but not far enough ahead while the core is also busy computing (the
 * 4-bit kernels here take about as long per byte as memory delivers it). vec_dot therefore asks for
 * the bytes STREAM_PF_DIST ahead of what it reads (the rest of the row, then the next rows: the
 * matrix is contiguous), into L1 (prefetcht0). Measured on the 1.1B Q4_0 decode at 2 threads, tokens/s
 * against the previous 4-row kernel in the same run: none -4%, 1 KB +0%, 2 KB +6%, 4 KB +11%, 8 KB
 * +9%, 16 KB +2%; at 4 KB into L2 instead (prefetcht1/t2) -11% against t0. Q8_0 and Q4_K_M: within
 * +-3% either way. A prefetch past the end of the data is harmless (prefetches never fault). */
#define STREAM_PF_DIST 4096
static inline const char *stream_pf(const void *row) { return (const char *)row + STREAM_PF_DIST; }

/* NAME_gemv(K, W, w_row_size, x, s, r0, r1): rows [r0, r1) of W, GEMV_ROWS at a time (prefetching the
 * next group), then one by one. */
#define DEFINE_GEMV(NAME)                                                                                    \
    static void NAME##_gemv(int64_t n, const void *restrict W, size_t ws, const void *restrict vy,          \
                            float *restrict s, int64_t r0, int64_t r1) {                                     \
        const char *w = W;                                                                                   \
        int64_t r = r0;                                                                                      \
        for (; r + GEMV_ROWS <= r1; r += GEMV_ROWS) {                                                        \
            const char *pf = r + 2 * GEMV_ROWS <= r1 ? w + (size_t)(r + GEMV_ROWS) * ws : NULL;             \
            NAME##_rows(GEMV_ROWS, n, s + r, w + (size_t)r * ws, ws, vy, pf);                                \
        }                                                                                                    \
        for (; r < r1; r++) NAME##_rows(1, n, s + r, w + (size_t)r * ws, 0, vy, NULL);                      \
    }

#endif
