/*
 * Scoring of multiple-choice benchmark items for `llamita eval` (src/eval.c): log-likelihoods of each
 * choice's continuation given its context, computed with shared contexts evaluated once and many
 * items packed into each forward pass; and the metrics (acc, acc_norm, perplexity, standard errors).
 *
 * Token spans (see docs/eval.md):
 *  - harness scoring (lm-evaluation-harness's _encode_pair): trailing whitespace of the context moves
 *    to the front of the continuation; whole = tok(ctx + cont), ctx_tokens = tok(ctx) (tokenized
 *    without BOS, as the harness's HF causal-LM default add_special_tokens=False does, unless
 *    lm_eval_opts.bos says otherwise; an empty context becomes the BOS token, the harness's
 *    prefix_token_id); the scored continuation tokens are whole[len(ctx_tokens):].
 *  - llama.cpp scoring (its --hellaswag): every choice is tok(ctx + cont) with BOS as the model adds
 *    it; the scored tokens are those after the longest token prefix common to all choices, and the
 *    choice's score is their mean log-probability.
 * A choice longer than max_len tokens is left-truncated as the harness does (the scored tokens kept).
 */
#ifndef LM_EVAL_H
#define LM_EVAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evaldata.h"
#include "llamita.h"

typedef enum lm_eval_scoring {
    LM_SCORING_HARNESS = 0, /* lm-evaluation-harness: sum of log-probs of the continuation tokens */
    LM_SCORING_LLAMACPP = 1 /* llama.cpp --hellaswag: mean log-prob of the tokens after the common prefix */
} lm_eval_scoring;

typedef struct lm_eval_opts {
    lm_eval_scoring scoring;
    int32_t bos;        /* -1 auto (harness: no BOS; llamacpp: the model's add_bos), 0 never, 1 always */
    int32_t max_len;    /* longest token sequence a choice is evaluated with (<= 0: harness: 2048 capped
                           to the model's training context; llamacpp: 2048) */
    int32_t n_seq_max;  /* sequences per pack (<= 0: 64); an item needs one per choice */
    int32_t n_batch;    /* tokens per forward step and roughly per pack phase (<= 0: 512) */
    int32_t n_threads;  /* 0 = physical cores */
    bool no_share;      /* true: decode every choice whole in its own sequence (for tests) */
} lm_eval_opts;

lm_eval_opts lm_eval_default_opts(void);

/* Result of one choice. */
typedef struct lm_eval_choice {
    double ll;        /* sum of the log-probabilities of the scored tokens (double accumulation) */
    int32_t n_tokens; /* number of scored tokens (>= 1) */
    bool greedy;      /* every scored token is the argmax of its distribution (lowest id on ties) */
} lm_eval_choice;

typedef struct lm_eval_scorer lm_eval_scorer;

/* Creates a scorer with its own context on model (which must outlive it). max_choices: the most
 * choices an item will have (sizes the cache: max_choices * max_len cells at least). NULL + err. */
lm_eval_scorer *lm_eval_scorer_new(llamita_model *model, const lm_eval_opts *opts, int32_t max_choices,
                                   char *err, size_t err_size);
void lm_eval_scorer_free(lm_eval_scorer *s);

/* Scores a pack: as many items from items[0..n_items) as fit in one pack (at least one), writing each
 * item's choices to out (out[k] for the k-th choice overall, items in order). Returns the number of
 * items scored (>= 1), or -1 with err (naming the item's line) when an item cannot be scored (too
 * many choices, a decode failure). Cache is empty again after the call. */
int32_t lm_eval_score_pack(lm_eval_scorer *s, const lm_eval_item *items, int32_t n_items,
                           lm_eval_choice *out, char *err, size_t err_size);

/* Number of tokens decoded and logits rows computed so far (for the efficiency report / tests). */
void lm_eval_scorer_stats(const lm_eval_scorer *s, int64_t *n_decoded, int64_t *n_rows, int64_t *n_calls);

/* Length used by acc_norm for a continuation: the number of Unicode code points of cont without one
 * leading space (the harness divides by len(choice), the choice text without its " " delimiter). */
int32_t lm_eval_cont_len(const char *cont);

/* Index of the largest value of x[0..n), the first one on ties (numpy.argmax); -1 when n <= 0. NaN is
 * never chosen over a number. */
int32_t lm_eval_argmax(const double *x, int32_t n);

/* Predictions of one item from its choices' results: *pred = argmax of ll (harness acc; in llamacpp
 * scoring the same), *pred_norm = argmax of ll / lm_eval_cont_len(cont) (harness acc_norm), or of
 * ll / n_tokens under llamacpp scoring. n_choices <= 64. */
void lm_eval_predict(const lm_eval_item *item, const lm_eval_choice *res, lm_eval_scoring scoring,
                     int32_t *pred, int32_t *pred_norm);

/* Mean and its standard error as the harness reports them: sample standard deviation (n - 1) over
 * sqrt(n); the error is 0 when n < 2. */
void lm_eval_mean_stderr(const double *x, int32_t n, double *mean, double *stderr_);

/* One reported metric of a task. score and stderr are in percent for accuracies, plain for ppl. */
typedef struct lm_eval_metric {
    char metric[16]; /* "acc", "acc_norm", "ppl" */
    double score, stderr_;
    int32_t n;
} lm_eval_metric;

/* Which metrics a task reports: hellaswag/openbookqa/arc_*: acc, acc_norm; piqa: acc, acc_norm;
 * winogrande, boolq: acc; lambada: acc (greedy match), ppl. Fills m[0..return) (at most 2) from the
 * items' results (res laid out as lm_eval_score_pack writes it). x is scratch of n_items doubles. */
int32_t lm_eval_metrics(lm_eval_task task, lm_eval_scoring scoring, const lm_eval_item *items,
                        int32_t n_items, const lm_eval_choice *res, double *x, lm_eval_metric *m);

/* The metric the seed's table reports for a task: "acc_norm" (hellaswag, openbookqa, arc_*, piqa),
 * "acc" (winogrande, boolq, lambada). */
const char *lm_eval_seed_metric(lm_eval_task task);

#endif
