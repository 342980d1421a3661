/*
 * Perplexity and KL divergence by llama.cpp's method; the method, the formulas and the logits-file
 * format are described in perplexity.h.
 *
 * Numerics: the log-softmax is done in double (max in float, then sum_j exp((double)z_j - max) and
 * log in double). In float, summing n_vocab = 32000 terms would lose ~1e-6 relative in the sum, far
 * below what matters for a PPL printed to 4 decimals; double costs nothing measurable next to the
 * forward pass and removes the question. llama.cpp uses expf() summed into a double, so the two agree
 * to ~1e-7 per prediction. All accumulators (sum NLL, sum NLL^2, KLD sums) are double.
 */
#include "perplexity.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common.h"
#include "quant.h"

int32_t lm_ppl_n_chunks(int64_t n_tokens, int32_t n_ctx, int32_t max_chunks) {
    if (n_ctx <= 0 || n_tokens < n_ctx) return 0;
    int64_t n = n_tokens / n_ctx;
    if (n > INT32_MAX) n = INT32_MAX;
    if (max_chunks > 0 && n > max_chunks) n = max_chunks;
    return (int32_t)n;
}

void lm_nll_ppl(const lm_nll_stats *s, double *ppl, double *ppl_stderr) {
    *ppl = 0.0;
    *ppl_stderr = 0.0;
    if (s->count <= 0) return;
    const double n = (double)s->count;
    const double mean = s->sum / n;
    *ppl = exp(mean);
    const double var = s->sum2 / n - mean * mean;
    if (s->count >= 2 && var > 0) *ppl_stderr = *ppl * sqrt(var / (n - 1.0));
}

double lm_logsumexp(const float *z, int32_t n) {
    float m = z[0];
    for (int32_t i = 1; i < n; i++)
        if (z[i] > m) m = z[i];
    double s = 0.0;
    for (int32_t i = 0; i < n; i++) s += exp((double)z[i] - (double)m);
    return (double)m + log(s);
}

/* Index of the first largest value of z[0..n). */
static int32_t argmax_f(const float *z, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (z[i] > z[best]) best = i;
    return best;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- little-endian header I/O ---- */

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Writes the header and the tokens. Tokens are stored as they are in the text (no BOS substitution).
 * Returns false on a write error. */
static bool write_header(FILE *f, uint32_t dtype, int32_t n_vocab, int32_t n_ctx, int32_t n_chunks,
                         const llamita_token *tokens) {
    uint8_t h[LM_LOGITS_HEADER_SIZE];
    memcpy(h, LM_LOGITS_MAGIC, 8);
    const int32_t first = n_ctx / 2;
    put_u32(h + 8, LM_LOGITS_VERSION);
    put_u32(h + 12, dtype);
    put_u32(h + 16, (uint32_t)n_vocab);
    put_u32(h + 20, (uint32_t)n_ctx);
    put_u32(h + 24, (uint32_t)n_chunks);
    put_u32(h + 28, (uint32_t)first);
    put_u32(h + 32, (uint32_t)(n_ctx - 1 - first));
    put_u32(h + 36, 0);
    if (fwrite(h, 1, sizeof h, f) != sizeof h) return false;
    uint8_t b[4 * 256]; /* tokens, 256 at a time */
    const int64_t n = (int64_t)n_chunks * n_ctx;
    for (int64_t i = 0; i < n;) {
        const int64_t m = LM_MIN(n - i, (int64_t)256);
        for (int64_t k = 0; k < m; k++) put_u32(b + 4 * k, (uint32_t)tokens[i + k]);
        if (fwrite(b, 4, (size_t)m, f) != (size_t)m) return false;
        i += m;
    }
    return true;
}

/* ---- chunk evaluation shared by perplexity and KLD ---- */

/* Called for every scored position p (first <= p <= n_ctx-2) of a chunk, in increasing p, with the
 * model's logits z [n_vocab] at p and the token at p+1. Returns 0, or -1 with err set. */
typedef int (*row_fn)(void *u, const float *z, int32_t p, llamita_token target, char *err,
                      size_t err_size);

/* Evaluates one chunk chunk[0..n_ctx) from an empty cache in steps of n_batch tokens (positions
 * j*n_batch + k, as llama.cpp), with BOS in place of chunk[0] when the model adds BOS, and asks for
 * logits at positions first..n_ctx-2 only (llama.cpp also computes position n_ctx-1 but never reads
 * it). `batch` has room for n_batch tokens. */
static int eval_chunk(llamita_context *ctx, llamita_batch *batch, const llamita_token *chunk,
                      int32_t n_ctx, int32_t n_batch, row_fn fn, void *u, char *err, size_t err_size) {
    const llamita_model *m = llamita_context_model(ctx);
    const bool add_bos = llamita_add_bos(m);
    const llamita_token bos = llamita_token_bos(m);
    const int32_t first = n_ctx / 2;
    llamita_kv_clear(ctx);
    for (int32_t start = 0; start < n_ctx; start += n_batch) {
        const int32_t bs = LM_MIN(n_batch, n_ctx - start);
        batch->n_tokens = 0;
        for (int32_t k = 0; k < bs; k++) {
            const int32_t pos = start + k;
            const llamita_token t = (pos == 0 && add_bos && bos >= 0) ? bos : chunk[pos];
            llamita_batch_add(batch, t, pos, 0, pos >= first && pos <= n_ctx - 2);
        }
        char derr[512] = "";
        if (llamita_decode(ctx, batch, derr, sizeof derr) != 0) {
            lm_seterr(err, err_size, "decode failed at positions %d..%d: %s", (int)start,
                      (int)(start + bs - 1), derr);
            return -1;
        }
        int32_t idx = 0;
        for (int32_t k = 0; k < bs; k++) {
            const int32_t pos = start + k;
            if (!(pos >= first && pos <= n_ctx - 2)) continue;
            const float *z = llamita_get_logits_ith(ctx, idx++);
            if (!z) {
                lm_seterr(err, err_size, "no logits for position %d", (int)pos);
                return -1;
            }
            if (fn(u, z, pos, chunk[pos + 1], err, err_size) != 0) return -1;
        }
    }
    return 0;
}

/* Checks the common arguments; fills *n_batch_eff. */
static int check_ctx(llamita_context *ctx, int32_t n_ctx, int32_t n_batch, int32_t *n_batch_eff,
                     char *err, size_t err_size) {
    if (n_ctx < 4) {
        lm_seterr(err, err_size, "n_ctx must be at least 4 (got %d)", (int)n_ctx);
        return -1;
    }
    if ((uint32_t)n_ctx > llamita_n_ctx(ctx)) {
        lm_seterr(err, err_size, "the context holds %u tokens, fewer than n_ctx = %d",
                  (unsigned)llamita_n_ctx(ctx), (int)n_ctx);
        return -1;
    }
    *n_batch_eff = (n_batch <= 0 || n_batch > n_ctx) ? n_ctx : n_batch;
    return 0;
}

/* ---- perplexity ---- */

typedef struct ppl_sink {
    lm_nll_stats st;
    int32_t n_vocab;
    FILE *save;
    uint32_t dtype;
    float *row32;   /* [n_vocab] log-probs to save (F32) */
    lm_fp16 *row16; /* [n_vocab] (F16) */
} ppl_sink;

static int ppl_row(void *u, const float *z, int32_t p, llamita_token target, char *err,
                   size_t err_size) {
    ppl_sink *s = u;
    const double lz = lm_logsumexp(z, s->n_vocab);
    lm_nll_add(&s->st, lz - (double)z[target]);
    if (s->save) {
        size_t wrote;
        if (s->dtype == LM_LOGITS_F16) {
            for (int32_t v = 0; v < s->n_vocab; v++) s->row16[v] = lm_fp32_to_fp16((float)((double)z[v] - lz));
            wrote = fwrite(s->row16, sizeof *s->row16, (size_t)s->n_vocab, s->save);
        } else {
            for (int32_t v = 0; v < s->n_vocab; v++) s->row32[v] = (float)((double)z[v] - lz);
            wrote = fwrite(s->row32, sizeof *s->row32, (size_t)s->n_vocab, s->save);
        }
        if (wrote != (size_t)s->n_vocab) {
            lm_seterr(err, err_size, "cannot write the logits file (position %d): %s", (int)p,
                      strerror(errno));
            return -1;
        }
    }
    return 0;
}

int lm_perplexity(llamita_context *ctx, const llamita_token *tokens, int64_t n_tokens,
                  const lm_ppl_params *p, FILE *save, lm_ppl_progress_cb cb, void *user,
                  lm_ppl_result *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    int32_t n_batch;
    if (check_ctx(ctx, p->n_ctx, p->n_batch, &n_batch, err, err_size) != 0) return -1;
    const int32_t n_ctx = p->n_ctx;
    const int32_t n_chunks = lm_ppl_n_chunks(n_tokens, n_ctx, p->max_chunks);
    if (n_chunks < 1) {
        lm_seterr(err, err_size, "the text is too short: one chunk needs %d tokens, it has %lld",
                  (int)n_ctx, (long long)n_tokens);
        return -1;
    }
    if (save && p->save_dtype != LM_LOGITS_F32 && p->save_dtype != LM_LOGITS_F16) {
        lm_seterr(err, err_size, "unknown logits dtype %u", (unsigned)p->save_dtype);
        return -1;
    }
    const int32_t n_vocab = llamita_model_n_vocab(llamita_context_model(ctx));
    ppl_sink s = {.n_vocab = n_vocab, .save = save, .dtype = p->save_dtype};
    llamita_batch batch = llamita_batch_init(n_batch);
    int rc = -1;
    if (!batch.token) {
        lm_seterr(err, err_size, "out of memory (batch of %d tokens)", (int)n_batch);
        goto done;
    }
    if (save) {
        if (s.dtype == LM_LOGITS_F16) s.row16 = malloc(sizeof *s.row16 * (size_t)n_vocab);
        else s.row32 = malloc(sizeof *s.row32 * (size_t)n_vocab);
        if (!s.row16 && !s.row32) {
            lm_seterr(err, err_size, "out of memory");
            goto done;
        }
        if (!write_header(save, s.dtype, n_vocab, n_ctx, n_chunks, tokens)) {
            lm_seterr(err, err_size, "cannot write the logits file header: %s", strerror(errno));
            goto done;
        }
    }
    const double t0 = now_seconds();
    for (int32_t c = 0; c < n_chunks; c++) {
        if (eval_chunk(ctx, &batch, tokens + (int64_t)c * n_ctx, n_ctx, n_batch, ppl_row, &s, err,
                       err_size) != 0)
            goto done;
        if (cb) {
            lm_ppl_progress pr = {.chunk = c + 1, .n_chunks = n_chunks, .elapsed_s = now_seconds() - t0};
            lm_nll_ppl(&s.st, &pr.ppl, &pr.ppl_stderr);
            if (!cb(&pr, user)) {
                lm_seterr(err, err_size, "interrupted after %d of %d chunks", (int)(c + 1), (int)n_chunks);
                goto done;
            }
        }
    }
    if (save && fflush(save) != 0) {
        lm_seterr(err, err_size, "cannot write the logits file: %s", strerror(errno));
        goto done;
    }
    lm_nll_ppl(&s.st, &out->ppl, &out->ppl_stderr);
    out->n_scored = s.st.count;
    out->n_chunks = n_chunks;
    out->n_tokens = n_chunks * n_ctx;
    rc = 0;
done:
    free(s.row16);
    free(s.row32);
    llamita_batch_free(batch);
    return rc;
}

/* ---- logits file ---- */

void lm_logits_file_close(lm_logits_file *lf) {
    if (!lf) return;
    if (lf->f) fclose(lf->f);
    free(lf->path);
    free(lf->tokens);
    memset(lf, 0, sizeof *lf);
}

int lm_logits_file_open(const char *path, int32_t expect_n_vocab, lm_logits_file *lf, char *err,
                        size_t err_size) {
    memset(lf, 0, sizeof *lf);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_seterr(err, err_size, "cannot open logits file '%s': %s", path, strerror(errno));
        return -1;
    }
    lf->f = f;
    lf->path = strdup(path);
    if (!lf->path) {
        lm_seterr(err, err_size, "out of memory");
        goto fail;
    }
    uint8_t h[LM_LOGITS_HEADER_SIZE];
    const size_t got = fread(h, 1, sizeof h, f);
    if (got >= 8 && memcmp(h, LM_LOGITS_MAGIC, 8) != 0) {
        lm_seterr(err, err_size, "%s: not a llamita logits file (bad magic; expected \"%s\")", path,
                  LM_LOGITS_MAGIC);
        goto fail;
    }
    if (got < sizeof h) {
        lm_seterr(err, err_size, "%s: truncated header (%zu of %d bytes)", path, got, LM_LOGITS_HEADER_SIZE);
        goto fail;
    }
    const uint32_t version = get_u32(h + 8);
    lf->dtype = get_u32(h + 12);
    lf->n_vocab = (int32_t)get_u32(h + 16);
    lf->n_ctx = (int32_t)get_u32(h + 20);
    lf->n_chunks = (int32_t)get_u32(h + 24);
    lf->first = (int32_t)get_u32(h + 28);
    lf->n_scored = (int32_t)get_u32(h + 32);
    if (version != LM_LOGITS_VERSION) {
        lm_seterr(err, err_size, "%s: unsupported version %u (this build reads version %u)", path,
                  (unsigned)version, (unsigned)LM_LOGITS_VERSION);
        goto fail;
    }
    if (lf->dtype != LM_LOGITS_F32 && lf->dtype != LM_LOGITS_F16) {
        lm_seterr(err, err_size, "%s: unknown dtype %u (0 = f32, 1 = f16)", path, (unsigned)lf->dtype);
        goto fail;
    }
    if (lf->n_vocab <= 0 || lf->n_ctx < 4 || lf->n_chunks <= 0 || lf->first != lf->n_ctx / 2 ||
        lf->n_scored != lf->n_ctx - 1 - lf->first) {
        lm_seterr(err, err_size, "%s: bad header (n_vocab %d, n_ctx %d, n_chunks %d, first %d, n_scored %d)",
                  path, (int)lf->n_vocab, (int)lf->n_ctx, (int)lf->n_chunks, (int)lf->first,
                  (int)lf->n_scored);
        goto fail;
    }
    if (expect_n_vocab > 0 && lf->n_vocab != expect_n_vocab) {
        lm_seterr(err, err_size, "%s: saved with a vocabulary of %d tokens, but the model has %d", path,
                  (int)lf->n_vocab, (int)expect_n_vocab);
        goto fail;
    }
    uint64_t n_tok, n_rows, n_vals, size = LM_LOGITS_HEADER_SIZE, tmp;
    const uint64_t el = lf->dtype == LM_LOGITS_F16 ? 2 : 4;
    if (!lm_mul_u64((uint64_t)lf->n_chunks, (uint64_t)lf->n_ctx, &n_tok) ||
        !lm_mul_u64((uint64_t)lf->n_chunks, (uint64_t)lf->n_scored, &n_rows) ||
        !lm_mul_u64(n_rows, (uint64_t)lf->n_vocab, &n_vals) || !lm_mul_u64(n_vals, el, &tmp) ||
        !lm_add_u64(size, tmp, &size) || !lm_add_u64(size, 4 * n_tok, &size) || n_tok > (1ull << 40)) {
        lm_seterr(err, err_size, "%s: header sizes overflow", path);
        goto fail;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        lm_seterr(err, err_size, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if ((uint64_t)st.st_size < size) {
        lm_seterr(err, err_size, "%s: truncated: %llu bytes, the header implies %llu", path,
                  (unsigned long long)st.st_size, (unsigned long long)size);
        goto fail;
    }
    if ((uint64_t)st.st_size > size) {
        lm_seterr(err, err_size, "%s: %llu trailing bytes after the data the header describes", path,
                  (unsigned long long)((uint64_t)st.st_size - size));
        goto fail;
    }
    lf->tokens = malloc(sizeof *lf->tokens * (size_t)n_tok);
    uint8_t *raw = malloc(4 * (size_t)n_tok);
    if (!lf->tokens || !raw) {
        free(raw);
        lm_seterr(err, err_size, "out of memory (%llu tokens)", (unsigned long long)n_tok);
        goto fail;
    }
    if (fread(raw, 4, (size_t)n_tok, f) != (size_t)n_tok) {
        free(raw);
        lm_seterr(err, err_size, "%s: cannot read the tokens", path);
        goto fail;
    }
    for (uint64_t i = 0; i < n_tok; i++) {
        const int32_t t = (int32_t)get_u32(raw + 4 * i);
        if (t < 0 || t >= lf->n_vocab) {
            free(raw);
            lm_seterr(err, err_size, "%s: token %llu is %d, outside the vocabulary [0, %d)", path,
                      (unsigned long long)i, (int)t, (int)lf->n_vocab);
            goto fail;
        }
        lf->tokens[i] = t;
    }
    free(raw);
    return 0;
fail:
    lm_logits_file_close(lf);
    return -1;
}

/* ---- KL divergence ---- */

typedef struct kld_sink {
    lm_logits_file *lf;
    int32_t chunk;
    lm_nll_stats q, b;      /* NLL of this model, of the base */
    double sum_nll_nll_base; /* sum NLL_q * NLL_base, for the covariance */
    double sum_kld, sum_kld2;
    int64_t n_same_top;
    float *kld_vals;        /* [n_chunks * n_scored] per-position KLD */
    int64_t n_vals;
    uint8_t *raw;           /* [n_vocab * elsize] one saved row as stored */
    float *base;            /* [n_vocab] that row as float */
} kld_sink;

static int kld_row(void *u, const float *z, int32_t p, llamita_token target, char *err,
                   size_t err_size) {
    kld_sink *s = u;
    lm_logits_file *lf = s->lf;
    const int32_t V = lf->n_vocab;
    const size_t el = lf->dtype == LM_LOGITS_F16 ? 2 : 4;
    if (fread(s->raw, el, (size_t)V, lf->f) != (size_t)V) {
        lm_seterr(err, err_size, "%s: cannot read the log-probs of chunk %d, position %d", lf->path,
                  (int)s->chunk + 1, (int)p);
        return -1;
    }
    if (el == 2) {
        for (int32_t v = 0; v < V; v++) {
            const lm_fp16 h = (lm_fp16)(s->raw[2 * v] | (s->raw[2 * v + 1] << 8));
            s->base[v] = lm_fp16_to_fp32(h);
        }
    } else {
        for (int32_t v = 0; v < V; v++) {
            const uint32_t w = get_u32(s->raw + 4 * v);
            memcpy(&s->base[v], &w, 4);
        }
    }
    /* The saved row is renormalized (its logsumexp is ~0 for f32, within f16 rounding otherwise), so
     * it is a distribution and the KLD is >= 0; against its own base it is then 0 for f32 and of the
     * order of the squared f16 rounding error (~1e-6) for f16. */
    const double lzb = lm_logsumexp(s->base, V);
    const double lzq = lm_logsumexp(z, V);
    double kld = 0.0;
    for (int32_t v = 0; v < V; v++) {
        const double lb = (double)s->base[v] - lzb;
        const double pb = exp(lb);
        if (pb > 0.0) kld += pb * (lb - ((double)z[v] - lzq));
    }
    if (!isfinite(kld) || !isfinite(lzb)) {
        lm_seterr(err, err_size, "%s: non-finite values in the log-probs of chunk %d, position %d",
                  lf->path, (int)s->chunk + 1, (int)p);
        return -1;
    }
    const double nll = lzq - (double)z[target], nll_b = lzb - (double)s->base[target];
    lm_nll_add(&s->q, nll);
    lm_nll_add(&s->b, nll_b);
    s->sum_nll_nll_base += nll * nll_b;
    s->sum_kld += kld;
    s->sum_kld2 += kld * kld;
    s->kld_vals[s->n_vals++] = (float)kld;
    if (argmax_f(z, V) == argmax_f(s->base, V)) s->n_same_top++;
    return 0;
}

/* llama.cpp's mean_and_uncertainty: mean, and its standard error (0 unless count > 10). */
static void mean_unc(double sum, double sum2, int64_t count, double *mean, double *unc) {
    *mean = *unc = 0.0;
    if (count < 1) return;
    *mean = sum / (double)count;
    const double var = sum2 / (double)count - *mean * *mean;
    *unc = (var > 0 && count > 10) ? sqrt(var / (double)(count - 1)) : 0.0;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double lm_percentile_sorted(const float *v, size_t n, double q) {
    if (q <= 0) return v[0];
    if (q >= 1) return v[n - 1];
    double p = q * (double)(n - 1);
    const size_t ip = (size_t)p;
    p -= (double)ip;
    return (1 - p) * (double)v[ip] + p * (double)v[ip + 1 < n ? ip + 1 : n - 1];
}

int lm_kl_divergence(llamita_context *ctx, lm_logits_file *lf, int32_t n_batch, int32_t max_chunks,
                     lm_ppl_progress_cb cb, void *user, lm_kld_result *out, char *err,
                     size_t err_size) {
    memset(out, 0, sizeof *out);
    const int32_t n_vocab = llamita_model_n_vocab(llamita_context_model(ctx));
    if (lf->n_vocab != n_vocab) {
        lm_seterr(err, err_size, "%s: saved with a vocabulary of %d tokens, but the model has %d",
                  lf->path, (int)lf->n_vocab, (int)n_vocab);
        return -1;
    }
    int32_t nb;
    if (check_ctx(ctx, lf->n_ctx, n_batch, &nb, err, err_size) != 0) return -1;
    const int32_t n_chunks = max_chunks > 0 ? LM_MIN(max_chunks, lf->n_chunks) : lf->n_chunks;
    const size_t el = lf->dtype == LM_LOGITS_F16 ? 2 : 4;
    kld_sink s = {.lf = lf};
    s.kld_vals = malloc(sizeof *s.kld_vals * (size_t)n_chunks * (size_t)lf->n_scored);
    s.raw = malloc(el * (size_t)n_vocab);
    s.base = malloc(sizeof *s.base * (size_t)n_vocab);
    llamita_batch batch = llamita_batch_init(nb);
    int rc = -1;
    if (!s.kld_vals || !s.raw || !s.base || !batch.token) {
        lm_seterr(err, err_size, "out of memory");
        goto done;
    }
    const long data0 = LM_LOGITS_HEADER_SIZE + 4L * lf->n_chunks * lf->n_ctx;
    if (fseek(lf->f, data0, SEEK_SET) != 0) {
        lm_seterr(err, err_size, "%s: cannot seek to the log-probs: %s", lf->path, strerror(errno));
        goto done;
    }
    const double t0 = now_seconds();
    for (int32_t c = 0; c < n_chunks; c++) {
        s.chunk = c;
        if (eval_chunk(ctx, &batch, lf->tokens + (int64_t)c * lf->n_ctx, lf->n_ctx, nb, kld_row, &s,
                       err, err_size) != 0)
            goto done;
        if (cb) {
            lm_ppl_progress pr = {.chunk = c + 1, .n_chunks = n_chunks, .elapsed_s = now_seconds() - t0};
            lm_nll_ppl(&s.q, &pr.ppl, &pr.ppl_stderr);
            pr.kld = s.sum_kld / (double)s.n_vals;
            if (!cb(&pr, user)) {
                lm_seterr(err, err_size, "interrupted after %d of %d chunks", (int)(c + 1), (int)n_chunks);
                goto done;
            }
        }
    }
    /* Statistics as llama.cpp's kl_divergence() prints them. */
    const int64_t n = s.q.count;
    out->count = n;
    out->n_chunks = n_chunks;
    double lq, lq_u, lb, lb_u;
    mean_unc(s.q.sum, s.q.sum2, n, &lq, &lq_u);
    mean_unc(s.b.sum, s.b.sum2, n, &lb, &lb_u);
    out->ppl = exp(lq);
    out->ppl_stderr = out->ppl * lq_u;
    out->ppl_base = exp(lb);
    out->ppl_base_stderr = out->ppl_base * lb_u;
    double cov = 0.0; /* covariance of the two mean log-PPLs */
    if (n >= 10)
        cov = (s.sum_nll_nll_base / (double)n - (s.q.sum / (double)n) * (s.b.sum / (double)n)) / (double)(n - 1);
    out->ln_ratio = lq - lb;
    const double v_ratio = lq_u * lq_u + lb_u * lb_u - 2.0 * cov;
    out->ln_ratio_stderr = v_ratio > 0 ? sqrt(v_ratio) : 0.0;
    out->ratio = exp(out->ln_ratio);
    out->ratio_stderr = out->ratio * out->ln_ratio_stderr;
    out->dppl = out->ppl - out->ppl_base;
    const double v_d = out->ppl_stderr * out->ppl_stderr + out->ppl_base_stderr * out->ppl_base_stderr -
                       2.0 * out->ppl * out->ppl_base * cov;
    out->dppl_stderr = v_d > 0 ? sqrt(v_d) : 0.0;
    mean_unc(s.sum_kld, s.sum_kld2, n, &out->kld, &out->kld_stderr);
    out->top1 = n > 0 ? (double)s.n_same_top / (double)n : 0.0;
    out->top1_stderr = n > 1 ? sqrt(out->top1 * (1.0 - out->top1) / (double)(n - 1)) : 0.0;
    if (s.n_vals > 0) {
        qsort(s.kld_vals, (size_t)s.n_vals, sizeof *s.kld_vals, cmp_float);
        out->kld_max = s.kld_vals[s.n_vals - 1];
        out->kld_p99 = lm_percentile_sorted(s.kld_vals, (size_t)s.n_vals, 0.99);
        const size_t h = (size_t)s.n_vals / 2;
        out->kld_median = s.n_vals % 2 ? (double)s.kld_vals[h]
                                       : 0.5 * ((double)s.kld_vals[h] + (double)s.kld_vals[h - 1]);
    }
    rc = 0;
done:
    free(s.kld_vals);
    free(s.raw);
    free(s.base);
    llamita_batch_free(batch);
    return rc;
}
