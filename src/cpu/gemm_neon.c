/* gemm_neon: see cpu.h. aarch64 only. */
#include "cpu.h"

#if defined(__aarch64__)
void lm_cpu_init_gemm_neon(lm_kernels *k) { (void)k; }
#endif
