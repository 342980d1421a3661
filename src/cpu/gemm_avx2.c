/* gemm_avx2: see cpu.h. Compiled with its own -m flags (Makefile); entered only after CPU detection. */
#include "cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
void lm_cpu_init_gemm_avx2(lm_kernels *k) { (void)k; }
#endif
