/* Test helper driven by tests/py/test_dequant.py (not a test itself).
 *
 *   dequant TYPE IN OUT      IN holds raw blocks of TYPE ("Q4_K", "bf16", ...); writes the values as
 *                            little-endian float32 to OUT (lm_type_traits_get(type)->to_float).
 *   dequant -q TYPE IN OUT   the reverse: IN holds float32 values, OUT gets TYPE's blocks
 *                            (from_float, llamita's reference quantizer).
 *
 * Exit status 0 on success, 1 on bad usage or bad input (message on stderr). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

/* Reads a whole file into a malloc'd buffer; NULL (message printed) on failure. */
static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!buf || ferror(f)) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *size = n;
    return buf;
}

static int write_all(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    if (size && fwrite(data, 1, size, f) != size) {
        fprintf(stderr, "%s: write error\n", path);
        fclose(f);
        return 1;
    }
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int quantize = argc == 5 && strcmp(argv[1], "-q") == 0;
    if (argc != 4 && !quantize) {
        fprintf(stderr, "usage: %s [-q] TYPE IN OUT\n", argv[0]);
        return 1;
    }
    const char *tname = argv[argc - 3], *in = argv[argc - 2], *out = argv[argc - 1];
    int t = lm_type_from_name(tname);
    const lm_type_traits *tr = t >= 0 ? lm_type_traits_get((uint32_t)t) : NULL;
    if (!tr) {
        fprintf(stderr, "unknown type '%s'\n", tname);
        return 1;
    }
    size_t size = 0;
    void *src = read_all(in, &size);
    if (!src) return 1;
    int rc = 1;
    void *dst = NULL;
    if (!quantize) {
        if (size % tr->type_size != 0) {
            fprintf(stderr, "%s: %zu bytes is not a whole number of %s blocks (%zu bytes each)\n", in, size,
                    tr->name, tr->type_size);
            goto done;
        }
        int64_t n = (int64_t)(size / tr->type_size) * tr->blck_size; /* elements */
        dst = malloc(n > 0 ? (size_t)n * sizeof(float) : 1);           /* [n] float32 */
        if (!dst) goto done;
        tr->to_float(src, dst, n);
        rc = write_all(out, dst, (size_t)n * sizeof(float));
    } else {
        if (size % (sizeof(float) * (size_t)tr->blck_size) != 0) {
            fprintf(stderr, "%s: %zu bytes is not a whole number of %s blocks of float32 (%lld values each)\n",
                    in, size, tr->name, (long long)tr->blck_size);
            goto done;
        }
        int64_t n = (int64_t)(size / sizeof(float));
        size_t osize = lm_row_size((uint32_t)t, n);
        dst = malloc(osize ? osize : 1); /* [n / blck_size] blocks */
        if (!dst) goto done;
        tr->from_float(src, dst, n);
        rc = write_all(out, dst, osize);
    }
done:
    free(src);
    free(dst);
    return rc;
}
