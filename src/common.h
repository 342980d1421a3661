/* Small helpers shared by every module: error messages and checked arithmetic. */
#ifndef LM_COMMON_H
#define LM_COMMON_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes a formatted one-line message into err[err_size] (no-op when err is NULL or err_size 0).
 * Always NUL-terminates; truncates silently. */
void lm_seterr(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Checked arithmetic: return false on overflow (result unspecified then). */
static inline bool lm_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool lm_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }

#define LM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LM_UNUSED(x) ((void)(x))
#endif
