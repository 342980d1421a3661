#include "common.h"

#include <stdio.h>

#include "llamita.h"

void lm_seterr(char *err, size_t err_size, const char *fmt, ...) {
    if (!err || err_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

const char *llamita_version(void) { return "0.1.0"; }
