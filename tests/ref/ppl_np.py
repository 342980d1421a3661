"""Perplexity and KL divergence in NumPy, written from the description of llama.cpp's
`llama-perplexity` (its README and the method as documented in docs/perplexity.md), not from
llamita's C code, so that it can check it.

The method:
  * the text's tokens (BOS first when the model adds BOS) are cut into n_chunks = len // n_ctx
    chunks of n_ctx tokens, without overlap; the remainder is dropped;
  * each chunk is evaluated alone (fresh cache) with its first token replaced by BOS when the model
    adds BOS;
  * the logits at positions n_ctx//2 .. n_ctx-2 predict the tokens at n_ctx//2+1 .. n_ctx-1;
    NLL = logsumexp(z) - z[target];
  * PPL = exp(mean NLL); stderr = PPL * sqrt((mean(NLL^2) - mean(NLL)^2) / (N - 1)).
KL divergence at a position: sum_v p_base(v) * (log p_base(v) - log p(v)); top-1 agreement: argmax
of both distributions equal.

    nll, rows = chunk_nll(logits_fn, tokens, n_ctx, bos)   # per-prediction NLL and log-prob rows
    ppl, stderr = ppl_from_nll(nll)
"""
import numpy as np


def log_softmax(z):
    """Rows of z (float64) minus their logsumexp."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


def n_chunks(n_tokens, n_ctx, max_chunks=None):
    n = n_tokens // n_ctx
    if max_chunks:
        n = min(n, max_chunks)
    return n


def chunk_nll(logits_fn, tokens, n_ctx, bos=None, max_chunks=None):
    """logits_fn(list of n_ctx ids) -> [n_ctx, n_vocab] logits of a fresh evaluation.
    bos: the BOS id when the model adds BOS (it replaces each chunk's first token), else None.
    Returns (nll [N] float64, logprobs [N, n_vocab] float64) over the scored positions in order."""
    tokens = list(tokens)
    first = n_ctx // 2
    nll, rows = [], []
    for c in range(n_chunks(len(tokens), n_ctx, max_chunks)):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        inp = list(chunk)
        if bos is not None:
            inp[0] = bos
        lp = log_softmax(logits_fn(inp))
        for p in range(first, n_ctx - 1):
            nll.append(-lp[p, chunk[p + 1]])
            rows.append(lp[p])
    return np.array(nll), np.array(rows)


def ppl_from_nll(nll):
    nll = np.asarray(nll, dtype=np.float64)
    n = len(nll)
    mean = nll.mean()
    ppl = float(np.exp(mean))
    var = (nll * nll).mean() - mean * mean
    se = ppl * float(np.sqrt(var / (n - 1))) if n > 1 and var > 0 else 0.0
    return ppl, se


def kld(base_logprobs, logprobs):
    """Per-position KL(base || this) and top-1 agreement (bool) for rows of log-probs."""
    b = np.asarray(base_logprobs, dtype=np.float64)
    q = np.asarray(logprobs, dtype=np.float64)
    k = (np.exp(b) * (b - q)).sum(axis=-1)
    same = b.argmax(axis=-1) == q.argmax(axis=-1)
    return k, same
