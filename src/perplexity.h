/*
 * Perplexity and KL divergence, by llama.cpp's method (tools/perplexity, commit c392e509), so that
 * `llamita perplexity` and `llama-perplexity` print comparable numbers.
 *
 * Method (function lm_perplexity):
 *  - the whole text is tokenized once (BOS first when the model adds one); the tokens are cut into
 *    n_chunks = min(n_tokens / n_ctx, max_chunks) chunks of n_ctx tokens, no overlap, the tail dropped;
 *  - each chunk is evaluated from an empty KV cache at positions 0..n_ctx-1, in steps of n_batch
 *    tokens; when the model adds BOS, the chunk's first token is replaced by BOS (not inserted);
 *  - only the second half is scored: the logits at positions first = n_ctx/2 .. n_ctx-2 predict the
 *    tokens at first+1 .. n_ctx-1, i.e. n_ctx - 1 - n_ctx/2 predictions per chunk;
 *  - NLL_i = log(sum_j exp(z_j)) - z_tok (the log-softmax in double, see perplexity.c), accumulated in
 *    double: S1 = sum NLL_i, S2 = sum NLL_i^2 over N predictions;
 *  - PPL = exp(S1/N); its standard error (delta method) = PPL * sqrt((S2/N - (S1/N)^2) / (N - 1)),
 *    printed by llama.cpp as "Final estimate: PPL = %.4f +/- %.5f".
 *
 * KL divergence (lm_kl_divergence) reads a file written by lm_perplexity (save != NULL), runs the
 * current model on the same tokens, and compares distributions at every scored position.
 *
 * Logits file format, version 1 (all integers little-endian int32/uint32):
 *   offset  0  char[8]  magic "LMLOGPRB"
 *           8  uint32   version (1)
 *          12  uint32   dtype: 0 = float32, 1 = float16 (IEEE binary16)
 *          16  int32    n_vocab
 *          20  int32    n_ctx
 *          24  int32    n_chunks
 *          28  int32    first (= n_ctx/2)
 *          32  int32    n_scored (= n_ctx - 1 - first, rows per chunk)
 *          36  int32    reserved (0)
 *          40  int32    tokens[n_chunks * n_ctx]   (the text's tokens, before any BOS substitution)
 *          then for each chunk, for each scored position (n_scored rows): n_vocab log-probabilities
 *          log p(v | context) = z_v - logsumexp(z) of the base model, in dtype.
 * The size is therefore exactly 40 + 4*n_chunks*n_ctx + n_chunks*n_scored*n_vocab*(4 or 2) bytes.
 */
#ifndef LM_PERPLEXITY_H
#define LM_PERPLEXITY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llamita.h"

#define LM_LOGITS_MAGIC "LMLOGPRB"
#define LM_LOGITS_VERSION 1u
#define LM_LOGITS_HEADER_SIZE 40
enum { LM_LOGITS_F32 = 0, LM_LOGITS_F16 = 1 };

typedef struct lm_ppl_params {
    int32_t n_ctx;      /* tokens per chunk (>= 4) */
    int32_t n_batch;    /* tokens per decode step (<= 0 or > n_ctx: n_ctx) */
    int32_t max_chunks; /* <= 0: every whole chunk of the text */
    uint32_t save_dtype; /* LM_LOGITS_F32 or LM_LOGITS_F16, used when saving */
} lm_ppl_params;

/* Running sums of per-prediction negative log-likelihoods. */
typedef struct lm_nll_stats {
    double sum, sum2; /* sum NLL, sum NLL^2 */
    int64_t count;
} lm_nll_stats;

/* Reported to the progress callback after each chunk. */
typedef struct lm_ppl_progress {
    int32_t chunk;     /* chunks done so far (1-based count) */
    int32_t n_chunks;  /* total chunks */
    double ppl;        /* running PPL of the model being evaluated */
    double ppl_stderr; /* running standard error (0 while undefined) */
    double kld;        /* running mean KLD (KLD mode only, else 0) */
    double elapsed_s;  /* seconds since the first chunk started */
} lm_ppl_progress;
/* Return false to stop early (the function then returns an error "interrupted"). */
typedef bool (*lm_ppl_progress_cb)(const lm_ppl_progress *p, void *user);

typedef struct lm_ppl_result {
    double ppl, ppl_stderr;
    int64_t n_scored;   /* number of predictions scored */
    int32_t n_chunks;   /* chunks evaluated */
    int32_t n_tokens;   /* tokens evaluated (n_chunks * n_ctx) */
} lm_ppl_result;

/* An opened logits file (see the format above). Fields are read-only for callers. */
typedef struct lm_logits_file {
    FILE *f;
    char *path;            /* owned copy, for error messages */
    uint32_t dtype;
    int32_t n_vocab, n_ctx, n_chunks, first, n_scored;
    llamita_token *tokens; /* [n_chunks * n_ctx], owned */
} lm_logits_file;

typedef struct lm_kld_result {
    int64_t count;                       /* positions compared */
    int32_t n_chunks;
    double kld, kld_stderr;              /* mean KL(base || this) in nats */
    double kld_max, kld_p99, kld_median; /* over positions */
    double top1, top1_stderr;            /* fraction of positions whose argmax agrees, in [0,1] */
    double ppl, ppl_stderr;              /* this model */
    double ppl_base, ppl_base_stderr;    /* the base model, from the saved log-probs */
    double dppl, dppl_stderr;            /* ppl - ppl_base */
    double ratio, ratio_stderr;          /* ppl / ppl_base */
    double ln_ratio, ln_ratio_stderr;    /* log(ppl / ppl_base) */
} lm_kld_result;

/* Number of whole n_ctx chunks in n_tokens tokens, capped at max_chunks when max_chunks > 0.
 * Returns 0 when n_ctx <= 0 or the text is shorter than one chunk. */
int32_t lm_ppl_n_chunks(int64_t n_tokens, int32_t n_ctx, int32_t max_chunks);

/* Adds one NLL value to s. */
static inline void lm_nll_add(lm_nll_stats *s, double nll) {
    s->sum += nll;
    s->sum2 += nll * nll;
    s->count++;
}

/* PPL = exp(mean) of s, and its standard error as llama.cpp computes it:
 * PPL * sqrt((S2/N - mean^2) / (N - 1)); 0 when N < 2 or the variance is not positive. */
void lm_nll_ppl(const lm_nll_stats *s, double *ppl, double *ppl_stderr);

/* Log-softmax of one row in double: returns logsumexp(z[0..n)) (so log p_v = z_v - result). */
double lm_logsumexp(const float *z, int32_t n);

/* Evaluates the perplexity of ctx's model on tokens[0..n_tokens) (already tokenized, BOS first
 * when the model adds one) with llama.cpp's method, see the top of this file.
 *  - ctx must have n_ctx >= p->n_ctx and one sequence; its KV cache is cleared and used;
 *  - save (may be NULL): an open binary stream, written with the logits-file format above;
 *  - cb (may be NULL) is called after every chunk.
 * Returns 0 and fills *out; on error (text shorter than one chunk, decode failure, write error,
 * interrupted) returns -1 with a message in err. Allocates its buffers once per call. */
int lm_perplexity(llamita_context *ctx, const llamita_token *tokens, int64_t n_tokens,
                  const lm_ppl_params *p, FILE *save, lm_ppl_progress_cb cb, void *user,
                  lm_ppl_result *out, char *err, size_t err_size);

/* Opens a logits file and reads its header and tokens, checking magic, version, dtype, sizes,
 * that n_vocab equals expect_n_vocab (when > 0) and that the file has exactly the size the header
 * implies (else "truncated" / "trailing bytes"). Every error message names the file. Returns 0 and
 * fills *lf (free with lm_logits_file_close) or -1 (nothing to free). */
int lm_logits_file_open(const char *path, int32_t expect_n_vocab, lm_logits_file *lf, char *err,
                        size_t err_size);
void lm_logits_file_close(lm_logits_file *lf);

/* Runs ctx's model on the tokens of lf (chunking, BOS and scored positions as lm_perplexity) and
 * compares its distribution with the saved one at each scored position: KL(base || this), top-1
 * agreement, both PPLs. ctx must have n_ctx >= lf->n_ctx; n_batch as in lm_ppl_params; max_chunks
 * > 0 limits the chunks read. Returns 0 and fills *out, or -1 with err. */
int lm_kl_divergence(llamita_context *ctx, lm_logits_file *lf, int32_t n_batch, int32_t max_chunks,
                     lm_ppl_progress_cb cb, void *user, lm_kld_result *out, char *err,
                     size_t err_size);

/* Percentile of sorted values v[0..n) with linear interpolation between neighbours, at fraction q in
 * [0,1] of the way from v[0] to v[n-1] (llama.cpp's convention). n must be > 0. */
double lm_percentile_sorted(const float *v, size_t n, double q);
#endif
