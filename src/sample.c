/*
 * Sampler: repetition penalties -> top-k -> top-p -> min-p -> temperature -> seeded draw.
 *
 * Everything is allocated in llamita_sampler_new(); llamita_sampler_sample() and
 * llamita_sampler_accept() never allocate. The penalty history is a ring buffer of the last
 * penalty_last_n accepted tokens plus a per-token count table kept in step with it, so applying the
 * penalties is one pass over the vocabulary (done while copying the logits into the candidates).
 *
 * Sorting: top-k uses a size-k heap selection (O(n log k)); top-p without top-k buckets the
 * probability mass by logit and sorts only the bucket where the cumulative mass crosses p, so the
 * vocabulary is never fully sorted. Ties are broken by token id
 * (lower id ranks first) so results never depend on the order of equal logits.
 *
 * PRNG: xoshiro256** seeded through splitmix64 (both public-domain algorithms by Blackman and
 * Vigna, written here from their published descriptions).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "llamita.h"

#define LM_TOPP_BUCKETS 513

typedef struct lm_cand {
    float logit;
    int32_t id;
} lm_cand;

struct llamita_sampler {
    llamita_sampler_params p;
    int32_t n_vocab;
    lm_cand *cand;        /* [n_vocab] working candidates */
    uint32_t *counts;     /* [n_vocab] occurrences in the penalty window; NULL when penalties off */
    llamita_token *ring;  /* [ring_cap] last accepted tokens (window); NULL when last_n <= 0 */
    int32_t ring_cap;     /* = penalty_last_n when > 0 */
    int32_t ring_len;     /* tokens held, <= ring_cap */
    int32_t ring_head;    /* index of the oldest token */
    bool penalties_on;
    uint64_t rng[4];      /* xoshiro256** state */
    double topp_mass[LM_TOPP_BUCKETS]; /* top-p scratch: softmax mass per logit bucket */
};

/* ---------------------------------------------------------------------------------------------
 * PRNG
 * ------------------------------------------------------------------------------------------- */

static uint64_t lm_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t lm_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t lm_rng_next(uint64_t s[4]) {
    const uint64_t result = lm_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = lm_rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double lm_rng_uniform(uint64_t s[4]) { return (double)(lm_rng_next(s) >> 11) * 0x1.0p-53; }

/* A seed from the clock and the process id, for LLAMITA_DEFAULT_SEED. */
static uint64_t lm_clock_seed(void) {
    struct timespec a = {0}, b = {0};
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = (uint64_t)a.tv_sec * 1000000000ULL + (uint64_t)a.tv_nsec;
    x ^= ((uint64_t)b.tv_nsec << 21) ^ (uint64_t)b.tv_sec ^ ((uint64_t)getpid() << 40);
    return x;
}

/* Seeds the state from a 64-bit seed (splitmix64 expansion; never all-zero). */
static void lm_rng_seed(uint64_t s[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = lm_splitmix64(&x);
    if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
}

/* ---------------------------------------------------------------------------------------------
 * Params
 * ------------------------------------------------------------------------------------------- */

llamita_sampler_params llamita_sampler_default_params(void) {
    llamita_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temp = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = LLAMITA_DEFAULT_SEED;
    return p;
}

llamita_sampler *llamita_sampler_new(const llamita_sampler_params *params, int32_t n_vocab, char *err,
                                     size_t err_size) {
    llamita_sampler_params p = params ? *params : llamita_sampler_default_params();
    if (n_vocab <= 0) {
        lm_seterr(err, err_size, "sampler: n_vocab must be positive (got %d)", (int)n_vocab);
        return NULL;
    }
    if (isnan(p.temp)) {
        lm_seterr(err, err_size, "sampler: temp is NaN");
        return NULL;
    }
    if (isnan(p.top_p) || isnan(p.min_p)) {
        lm_seterr(err, err_size, "sampler: top_p / min_p is NaN");
        return NULL;
    }
    if (!(p.repeat_penalty > 0.0f) || !isfinite(p.repeat_penalty)) {
        lm_seterr(err, err_size, "sampler: repeat_penalty must be a positive finite number (got %g)",
                  (double)p.repeat_penalty);
        return NULL;
    }
    if (!isfinite(p.frequency_penalty) || !isfinite(p.presence_penalty)) {
        lm_seterr(err, err_size, "sampler: frequency_penalty / presence_penalty must be finite");
        return NULL;
    }
    if (p.penalty_last_n < -1) {
        lm_seterr(err, err_size, "sampler: penalty_last_n must be -1, 0 or positive (got %d)",
                  (int)p.penalty_last_n);
        return NULL;
    }
    llamita_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        lm_seterr(err, err_size, "sampler: out of memory");
        return NULL;
    }
    s->p = p;
    s->n_vocab = n_vocab;
    s->penalties_on = p.penalty_last_n != 0 &&
                      (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    bool ok = s->cand != NULL;
    if (ok && s->penalties_on) {
        s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
        ok = s->counts != NULL;
        if (ok && p.penalty_last_n > 0) {
            s->ring_cap = p.penalty_last_n;
            s->ring = malloc((size_t)s->ring_cap * sizeof *s->ring);
            ok = s->ring != NULL;
        }
    }
    if (!ok) {
        lm_seterr(err, err_size, "sampler: out of memory (n_vocab %d, penalty_last_n %d)", (int)n_vocab,
                  (int)p.penalty_last_n);
        llamita_sampler_free(s);
        return NULL;
    }
    lm_rng_seed(s->rng, p.seed == LLAMITA_DEFAULT_SEED ? lm_clock_seed() : p.seed);
    return s;
}

void llamita_sampler_free(llamita_sampler *smpl) {
    if (!smpl) return;
    free(smpl->cand);
    free(smpl->counts);
    free(smpl->ring);
    free(smpl);
}

void llamita_sampler_accept(llamita_sampler *s, llamita_token token) {
    if (!s || !s->penalties_on) return;
    if (token < 0 || token >= s->n_vocab) return; /* not a vocabulary token: nothing to penalise */
    if (s->ring_cap > 0) {
        if (s->ring_len == s->ring_cap) { /* evict the oldest */
            llamita_token old = s->ring[s->ring_head];
            s->counts[old]--;
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
        } else {
            s->ring[(s->ring_head + s->ring_len) % s->ring_cap] = token;
            s->ring_len++;
        }
    }
    if (s->counts[token] < UINT32_MAX) s->counts[token]++; /* last_n = -1: counts only grow */
}

void llamita_sampler_reset(llamita_sampler *s, uint64_t seed) {
    if (!s) return;
    if (s->counts) memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
    s->ring_len = 0;
    s->ring_head = 0;
    if (seed != LLAMITA_DEFAULT_SEED) lm_rng_seed(s->rng, seed);
}

/* ---------------------------------------------------------------------------------------------
 * Candidate selection
 * ------------------------------------------------------------------------------------------- */

/* Strict ranking: higher logit first, lower id first among equal logits. */
static inline bool lm_better(const lm_cand *a, const lm_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Sift-down in a heap whose root is the WORST element (min-heap under lm_better). */
static void lm_heap_down(lm_cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && lm_better(&h[w], &h[l])) w = l;
        if (r < n && lm_better(&h[w], &h[r])) w = r;
        if (w == i) return;
        lm_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Rearranges c[0..n) so that c[0..k) holds the k best candidates sorted best-first (1 <= k <= n).
 * The rest c[k..n) is left in unspecified order. O(n log k), no allocation. */
static void lm_select_top(lm_cand *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) lm_heap_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        if (lm_better(&c[i], &c[0])) {
            lm_cand t = c[0];
            c[0] = c[i];
            c[i] = t;
            lm_heap_down(c, k, 0);
        }
    }
    /* heap sort: moving the worst to the back leaves c[0..k) best-first */
    for (int32_t m = k - 1; m > 0; m--) {
        lm_cand t = c[0];
        c[0] = c[m];
        c[m] = t;
        lm_heap_down(c, m, 0);
    }
}

/* Index of the best candidate in c[0..n) (n >= 1). */
static int32_t lm_argbest(const lm_cand *c, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (lm_better(&c[i], &c[b])) b = i;
    return b;
}

/* Copies logits into the candidates, mapping NaN to -inf and +inf to FLT_MAX so that softmax
 * arithmetic stays finite, and applies the repetition penalties (llama.cpp semantics: for a token
 * seen c > 0 times in the window, logit <= 0 ? logit * repeat : logit / repeat, then
 * logit -= c * frequency + presence). Returns the largest resulting logit. */
static float lm_load_candidates(llamita_sampler *s, const float *logits) {
    const int32_t n = s->n_vocab;
    float maxl = -INFINITY;
    lm_cand *c = s->cand;
    for (int32_t i = 0; i < n; i++) {
        float l = logits[i];
        if (isnan(l)) l = -INFINITY;
        else if (l > FLT_MAX) l = FLT_MAX;
        c[i].logit = l;
        c[i].id = i;
        maxl = l > maxl ? l : maxl;
    }
    if (!s->penalties_on) return maxl;
    const float rp = s->p.repeat_penalty, fp = s->p.frequency_penalty, pp = s->p.presence_penalty;
    const uint32_t *cnt = s->counts;
    for (int32_t i = 0; i < n; i++) {
        if (!cnt[i]) continue;
        float l = c[i].logit;
        if (l <= 0.0f) l *= rp;
        else l /= rp;
        l -= (float)cnt[i] * fp + pp;
        if (isnan(l)) l = -INFINITY; /* guard the -inf - (-inf) case of negative penalties */
        else if (l > FLT_MAX) l = FLT_MAX; /* repeat_penalty < 1 can push FLT_MAX to +inf */
        c[i].logit = l;
    }
    maxl = -INFINITY;
    for (int32_t i = 0; i < n; i++) maxl = c[i].logit > maxl ? c[i].logit : maxl;
    return maxl;
}

/* Top-p bucketing: 512 buckets of 1/16 logit below the max, plus one for everything further down
 * (weights there are < e^-32 of the max). */
#define LM_TOPP_RANGE 32.0
#define LM_TOPP_SCALE 16.0

static inline int32_t lm_topp_bucket(float l, float maxl) {
    double d = (double)maxl - (double)l; /* >= 0; +inf for -inf logits */
    return d < LM_TOPP_RANGE ? (int32_t)(d * LM_TOPP_SCALE) : LM_TOPP_BUCKETS - 1;
}

static inline void lm_swap(lm_cand *a, lm_cand *b) {
    lm_cand t = *a;
    *a = *b;
    *b = t;
}

/* Top-p over the candidates c[0..n) (n >= 2): keeps the smallest set of best candidates (ranked
 * by lm_better) whose softmax mass reaches top_p, at least one. Moves that set to c[0..result) and
 * returns its size. *sorted says whether c[0..n) is sorted best-first on entry and whether the
 * kept prefix is on return.
 * Without a sorted input this avoids sorting the vocabulary: one pass accumulates the mass per
 * logit bucket, finds the bucket where the cumulative mass crosses top_p, moves the buckets above
 * it to the front, and sorts only the crossing bucket's members. O(n) plus a small sort. */
static int32_t lm_top_p(llamita_sampler *s, int32_t n, float top_p, bool *sorted) {
    lm_cand *c = s->cand;
    if (*sorted || n <= 64) {
        if (!*sorted) lm_select_top(c, n, n);
        *sorted = true;
        const float maxl = c[0].logit;
        double sum = 0.0;
        for (int32_t i = 0; i < n; i++) sum += (double)expf(c[i].logit - maxl);
        const double target = (double)top_p * sum;
        double cum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            cum += (double)expf(c[i].logit - maxl);
            if (cum >= target) return i + 1;
        }
        return n; /* rounding: everything is needed */
    }
    const float maxl = c[lm_argbest(c, n)].logit;
    double *mass = s->topp_mass; /* [LM_TOPP_BUCKETS] */
    memset(mass, 0, sizeof s->topp_mass);
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double w = (double)expf(c[i].logit - maxl);
        mass[lm_topp_bucket(c[i].logit, maxl)] += w;
        sum += w;
    }
    const double target = (double)top_p * sum;
    double cum = 0.0;
    int32_t bc = -1;
    for (int32_t b = 0; b < LM_TOPP_BUCKETS; b++) {
        if (cum + mass[b] >= target) {
            bc = b;
            break;
        }
        cum += mass[b];
    }
    if (bc < 0) return n; /* rounding: everything is needed */
    int32_t above = 0; /* c[0..above): buckets < bc */
    for (int32_t i = 0; i < n; i++)
        if (lm_topp_bucket(c[i].logit, maxl) < bc) lm_swap(&c[i], &c[above++]);
    int32_t end = above; /* c[above..end): bucket bc */
    for (int32_t i = above; i < n; i++)
        if (lm_topp_bucket(c[i].logit, maxl) == bc) lm_swap(&c[i], &c[end++]);
    lm_select_top(c + above, end - above, end - above);
    for (int32_t i = above; i < end; i++) {
        cum += (double)expf(c[i].logit - maxl);
        if (cum >= target) return i + 1;
    }
    return end;
}

llamita_token llamita_sampler_sample(llamita_sampler *s, const float *logits) {
    if (!s || !logits) return LLAMITA_TOKEN_NULL;
    const float top = lm_load_candidates(s, logits);
    lm_cand *c = s->cand;
    int32_t n = s->n_vocab;
    const llamita_sampler_params *p = &s->p;

    /* greedy; also when every logit is -inf (or NaN) and there is nothing to weigh */
    if (!(p->temp > 0.0f) || top == -INFINITY) return c[lm_argbest(c, n)].id;

    bool sorted = false; /* c[0..n) sorted best-first */
    if (p->top_k > 0 && p->top_k < n) {
        lm_select_top(c, n, p->top_k);
        n = p->top_k;
        sorted = true;
    }

    if (p->top_p < 1.0f && n > 1) n = lm_top_p(s, n, p->top_p, &sorted);

    if (p->min_p > 0.0f && n > 1) {
        /* keep tokens with prob >= min_p * max prob, i.e. logit >= max + log(min_p) */
        float maxl = sorted ? c[0].logit : c[lm_argbest(c, n)].logit;
        float thr = maxl + logf(p->min_p);
        if (sorted) {
            int32_t k = 1;
            while (k < n && c[k].logit >= thr) k++;
            n = k;
        } else {
            int32_t k = 0;
            for (int32_t i = 0; i < n; i++)
                if (c[i].logit >= thr || c[i].logit == maxl) c[k++] = c[i];
            n = k;
        }
    }

    if (n == 1) return c[0].id;

    /* temperature + draw */
    float maxl = sorted ? c[0].logit : c[lm_argbest(c, n)].logit;
    const double inv_t = 1.0 / (double)p->temp;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        /* reuse the logit slot for the unnormalised probability */
        double w = exp(((double)c[i].logit - (double)maxl) * inv_t);
        c[i].logit = (float)w;
        sum += (double)c[i].logit;
    }
    if (!(sum > 0.0) || !isfinite(sum)) return c[0].id; /* unreachable: the max has weight 1 */
    double r = lm_rng_uniform(s->rng) * sum;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += (double)c[i].logit;
        if (r < cum) return c[i].id;
    }
    /* rounding at the very top: the last candidate with nonzero weight */
    for (int32_t i = n - 1; i >= 0; i--)
        if (c[i].logit > 0.0f) return c[i].id;
    return c[0].id;
}
