/*
 * gguf_dump FILE: prints what llamita's GGUF reader sees, one item per line, tab-separated, for
 * tests/py/test_gguf.py to compare with an independent reader (tests/ref/gguf_np.py):
 *   version <v>
 *   alignment <a>
 *   data_offset <byte>
 *   n_kv <n>
 *   n_tensors <n>
 *   kv <key> <type> <arr_type or -> <arr_n or -> <value as lm_gguf_kv_to_str with 3 elements>
 *   tensor <name> <type id> <ne0,ne1,..> <offset> <nbytes> <CRC-32 (zlib's) of the data, hex>
 * Exit status 1 (message on stderr) when the file does not open.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"

/* CRC-32 as zlib.crc32 computes it (reflected polynomial 0xEDB88320), table-driven. */
static uint32_t crc32_of(const void *p, uint64_t n) {
    static uint32_t table[256];
    if (!table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    }
    const unsigned char *b = p;
    uint32_t c = 0xFFFFFFFFu;
    for (uint64_t i = 0; i < n; i++) c = table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.gguf\n", argv[0]);
        return 2;
    }
    char err[512];
    lm_gguf *g = lm_gguf_open(argv[1], err, sizeof err);
    if (!g) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("version\t%" PRIu32 "\nalignment\t%" PRIu32 "\ndata_offset\t%" PRIu64 "\n", lm_gguf_version(g),
           lm_gguf_alignment(g), lm_gguf_data_offset(g));
    printf("n_kv\t%" PRId64 "\nn_tensors\t%" PRId64 "\n", lm_gguf_n_kv(g), lm_gguf_n_tensors(g));
    char *buf = malloc(1 << 16);
    if (!buf) return 1;
    for (int64_t i = 0; i < lm_gguf_n_kv(g); i++) {
        enum lm_gguf_type t = lm_gguf_kv_type(g, i);
        lm_gguf_kv_to_str(g, i, buf, 1 << 16, 3);
        if (t == LM_GGUF_ARRAY)
            printf("kv\t%s\tarray\t%s\t%" PRIu64 "\t%s\n", lm_gguf_key(g, i), lm_gguf_type_name(lm_gguf_arr_type(g, i)),
                   lm_gguf_arr_n(g, i), buf);
        else
            printf("kv\t%s\t%s\t-\t-\t%s\n", lm_gguf_key(g, i), lm_gguf_type_name(t), buf);
    }
    for (int64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        printf("tensor\t%s\t%" PRIu32 "\t", t->name, t->type);
        for (uint32_t d = 0; d < t->n_dims; d++) printf("%s%" PRId64, d ? "," : "", t->ne[d]);
        printf("\t%" PRIu64 "\t%" PRIu64 "\t%08" PRIx32 "\n", t->offset, t->nbytes, crc32_of(t->data, t->nbytes));
    }
    free(buf);
    lm_gguf_close(g);
    return 0;
}
