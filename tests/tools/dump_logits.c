/*
 * dump_logits MODEL TOKENS_FILE OUT [n_batch]
 *
 * Test helper driven by tests/py/test_forward_np.py; uses only the public API (include/llamita.h).
 * Reads token ids (int32 little-endian) from TOKENS_FILE, evaluates them from position 0 of a fresh
 * context in ONE llamita_decode call with logits requested for every position (the context's n_batch,
 * default: the number of tokens, decides how the library splits it), and writes the logits as
 * float32 little-endian, n_tokens rows of n_vocab, row-major, to OUT.
 * Exit status 0 on success, 1 with a message on stderr otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llamita.h"

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "dump_logits: %s%s%s\n", what, detail && *detail ? ": " : "", detail ? detail : "");
    return 1;
}

/* Whole file into a malloc'd buffer (caller frees); NULL when unreadable. *size gets its length. */
static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    if (buf && ferror(f)) { free(buf); buf = NULL; }
    fclose(f);
    *size = n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: dump_logits MODEL TOKENS_FILE OUT [n_batch]\n");
        return 2;
    }
    char err[512] = "";
    size_t nbytes = 0;
    unsigned char *raw = read_all(argv[2], &nbytes);
    if (!raw) return fail(argv[2], strerror(errno));
    if (nbytes == 0 || nbytes % 4 != 0 || nbytes / 4 > 1u << 20) {
        free(raw);
        return fail(argv[2], "size is not a positive multiple of 4 bytes (int32 token ids)");
    }
    int32_t n_tokens = (int32_t)(nbytes / 4);
    llamita_token *tokens = malloc(nbytes); /* [n_tokens] */
    if (!tokens) { free(raw); return fail("out of memory", NULL); }
    for (int32_t i = 0; i < n_tokens; i++) {
        const unsigned char *p = raw + 4 * (size_t)i;
        tokens[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                              (uint32_t)p[3] << 24);
    }
    free(raw);

    long n_batch = n_tokens;
    if (argc == 5) {
        char *end;
        n_batch = strtol(argv[4], &end, 10);
        if (*end || n_batch < 1) { free(tokens); return fail("bad n_batch", argv[4]); }
    }

    int rc = 1;
    llamita_model *model = NULL;
    llamita_context *ctx = NULL;
    llamita_batch batch = llamita_batch_init(n_tokens);
    FILE *out = NULL;

    model = llamita_model_load(argv[1], llamita_model_default_params(), err, sizeof err);
    if (!model) { fail("load", err); goto done; }
    llamita_context_params cp = llamita_context_default_params();
    cp.n_ctx = (uint32_t)n_tokens;
    cp.n_batch = (uint32_t)n_batch;
    const char *thr = getenv("LLAMITA_THREADS");
    if (thr && *thr) cp.n_threads = atoi(thr);
    ctx = llamita_context_new(model, cp, err, sizeof err);
    if (!ctx) { fail("context", err); goto done; }
    if (!batch.token) { fail("batch", "out of memory"); goto done; }
    for (int32_t i = 0; i < n_tokens; i++) llamita_batch_add(&batch, tokens[i], i, 0, true);
    if (llamita_decode(ctx, &batch, err, sizeof err) != 0) { fail("decode", err); goto done; }
    if (llamita_n_outputs(ctx) != n_tokens) { fail("decode", "wrong number of output rows"); goto done; }

    int32_t n_vocab = llamita_model_n_vocab(model);
    out = fopen(argv[3], "wb");
    if (!out) { fail(argv[3], strerror(errno)); goto done; }
    for (int32_t i = 0; i < n_tokens; i++) {
        const float *row = llamita_get_logits_ith(ctx, i); /* [n_vocab] */
        if (!row) { fail("decode", "missing logits row"); goto done; }
        for (int32_t j = 0; j < n_vocab; j++) {
            uint32_t u;
            memcpy(&u, &row[j], 4);
            unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                                   (unsigned char)(u >> 24)};
            if (fwrite(le, 1, 4, out) != 4) { fail(argv[3], "write failed"); goto done; }
        }
    }
    if (fclose(out) != 0) { out = NULL; fail(argv[3], "close failed"); goto done; }
    out = NULL;
    rc = 0;
done:
    if (out) fclose(out);
    llamita_batch_free(batch);
    llamita_context_free(ctx);
    llamita_model_free(model);
    free(tokens);
    return rc;
}
