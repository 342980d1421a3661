/*
 * Q4_0 x Q8_0 decode products in groups of four blocks (vec_dot and gemv of x86_avx512.c and
 * x86_avx2.c, which give bit-identical results).
 *
 * Why: a decode step streams each weight row once, and the fastest way to stream memory here is one
 * sequential pass (the hardware prefetchers follow a single stream; reading several rows side by side
 * ran at ~75% of it). One row at a time then has to be cheap in instructions, so everything that
 * depends only on the activation is done once per call, for all rows, into a table of q40x4_y
 * groups; the per-row work is: gather the group's 64 quant bytes into one register, split the
 * nibbles, two int8 dot products, one float scale and one FMA per 128 elements.
 *
 * Summation order (the contract both levels implement): group g = blocks 4g..4g+3 (a last partial
 * group is padded with zero blocks: scale 0, quants 0). Lane l = 0..15 of group g belongs to block
 * j = l / 4 and holds the exact integer
 *     isum[l] = sum over e in {4m..4m+3} u {16+4m..16+4m+3} (m = l % 4) of (q_e - 8) * y_e,
 * then acc[l] = fma(dx_j * dy_j, (float)isum[l], acc[l]) over the groups in order (dx_j * dy_j a
 * float product), and the result is hsum(acc[0..7] + acc[8..15]) (lanes pairwise, then the 8-lane
 * horizontal sum of the ISA file). Integer sums are exact, so only the float steps fix the result.
 */
#ifndef LM_CPU_Q4_0X4_H
#define LM_CPU_Q4_0X4_H

#include <stdint.h>

/* Activation side of one group of 4 Q8_0 blocks, 256 bytes. */
typedef struct q40x4_y {
    int8_t lo[64];     /* block j's y[0..16) at 16j: the elements the low nibbles multiply */
    int8_t hi[64];     /* block j's y[16..32) at 16j: the high nibbles' elements */
    int32_t ncorr[16]; /* lane l: -8 * (the sum of lane l's 8 y elements): the "- 8" of every quant */
    float dy[16];      /* lane l: block l / 4's scale */
} q40x4_y;
_Static_assert(sizeof(q40x4_y) == 256, "q40x4_y is 256 bytes");

/* Groups prepared at once (16384 elements, 32 KB on the stack); longer rows are done slice by slice
 * for each row, in the same order. */
#define Q40X4_MAX_GROUPS 128

#endif
