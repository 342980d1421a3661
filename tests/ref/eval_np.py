"""Independent reference for `llamita eval` scoring: per-choice log-likelihoods computed with the
float64 NumPy forward pass (llama_np.py), one whole sequence per choice, no batching, no cache.

Only the token ids come from llamita (`llamita tokenize --no-bos`); the span rules, the forward pass
and the log-softmax are computed here, following lm-evaluation-harness:
  - _encode_pair: trailing whitespace of the context moves to the continuation;
    whole = tok(ctx + cont), ctx_enc = tok(ctx) (no BOS, the harness's HF causal-LM default;
    an empty context is [BOS], its prefix token), cont_enc = whole[len(ctx_enc):];
  - _loglikelihood_tokens: inp = (ctx_enc + cont_enc)[-(max_length + 1):][:-1], the continuation's
    log-probs are the last len(cont_enc) rows; ll = sum, greedy = every argmax equals the token.
The prompt texts of the data files are rebuilt here too (harness doc_to_text / doc_to_choice):
  ARC:        ctx "Question: {q}\\nAnswer:" (llm-foundry's query already starts "Question: "),
              cont " {choice}";
  WinoGrande: ctx context_options[i] (partial scoring), cont " {continuation}";
  BoolQ:      ctx "{passage}\\nQuestion: {question}?\\nAnswer:" (llm-foundry's query is
              "Passage: {passage}\\nQuestion: {question}?"), cont " no" / " yes".

    python3 tests/ref/eval_np.py MODEL.gguf LLAMITA_BIN TASK DATA.jsonl N [--max-len 128]
prints one JSON line per item: {"ll": [...], "n_tokens": [...], "greedy": [...]}.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_np  # noqa: E402


def tokenize(llamita, model, text):
    """Token ids of text without BOS, by `llamita tokenize --no-bos -f FILE` (exact bytes)."""
    if text == "":
        return []
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        out = subprocess.run([llamita, "tokenize", "-m", model, "--no-bos", "-f", path],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    return [int(t) for t in out.split()]


def bos_id(model):
    """tokenizer.ggml.bos_token_id of the GGUF file (read by gguf_np, not by llamita)."""
    from gguf_np import GGUFFile
    return int(GGUFFile(model).kv["tokenizer.ggml.bos_token_id"])


def items_of(task, path, n):
    """The first n items of an llm-foundry JSONL file as (ctxs, conts, gold)."""
    items = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(items) >= n:
                break
            d = json.loads(line)
            if task in ("arc_easy", "arc_challenge"):
                q = d["query"]
                if not q.startswith("Question: "):
                    q = "Question: " + q
                ctx = q + "\nAnswer:"
                items.append(([ctx] * len(d["choices"]), [" " + c for c in d["choices"]], d["gold"]))
            elif task == "winogrande":
                k = len(d["context_options"])
                items.append((list(d["context_options"]), [" " + d["continuation"]] * k, d["gold"]))
            elif task == "boolq":
                q = d["query"]
                if q.startswith("Passage: "):
                    q = q[len("Passage: "):]
                ctx = q + "\nAnswer:"
                items.append(([ctx] * len(d["choices"]), [" " + c for c in d["choices"]], d["gold"]))
            else:
                raise ValueError("task %s not in the reference" % task)
    return items


def encode_pair(llamita, model, ctx, cont, bos):
    n_sp = len(ctx) - len(ctx.rstrip())
    if n_sp > 0:
        cont = ctx[-n_sp:] + cont
        ctx = ctx[:-n_sp]
    whole = tokenize(llamita, model, ctx + cont)
    ctx_enc = tokenize(llamita, model, ctx)
    cont_enc = whole[len(ctx_enc):]
    if not ctx_enc:
        ctx_enc = [bos]
    return ctx_enc, cont_enc


def score(model, llamita, ctxs, conts, max_len):
    """Per-choice (ll, n_tokens, greedy) by the harness rules with the float64 forward."""
    bos = bos_id(model)
    net = llama_np.load(model)
    out = []
    for ctx, cont in zip(ctxs, conts):
        ctx_enc, cont_enc = encode_pair(llamita, model, ctx, cont, bos)
        inp = (ctx_enc + cont_enc)[-(max_len + 1):][:-1]
        logits = net.forward(inp)                       # [len(inp)][n_vocab]
        rows = logits[len(inp) - len(cont_enc):]        # the continuation's predictions
        mx = rows.max(axis=1, keepdims=True)
        logp = rows - mx - np.log(np.exp(rows - mx).sum(axis=1, keepdims=True))
        tgt = np.asarray(cont_enc)
        ll = float(logp[np.arange(len(tgt)), tgt].sum())
        greedy = bool((rows.argmax(axis=1) == tgt).all())
        out.append((ll, len(cont_enc), greedy))
    return out


def score_llamacpp(model, llamita, ctxs, conts):
    """llama.cpp's --hellaswag rule: each choice is [BOS] + tok(ctx + cont); the scored tokens are
    those after the token prefix common to all choices (at least one); the score is their mean
    log-probability. Returns per choice (sum of log-probs, n_tokens, mean)."""
    bos = bos_id(model)
    net = llama_np.load(model)
    seqs = [[bos] + tokenize(llamita, model, c + k) for c, k in zip(ctxs, conts)]
    common = 0
    while all(common < len(t) for t in seqs) and len({t[common] for t in seqs}) == 1:
        common += 1
    out = []
    for t in seqs:
        start = min(max(common, 1), len(t) - 1)
        logits = net.forward(t[:-1])
        rows = logits[start - 1:]
        mx = rows.max(axis=1, keepdims=True)
        logp = rows - mx - np.log(np.exp(rows - mx).sum(axis=1, keepdims=True))
        tgt = np.asarray(t[start:])
        ll = float(logp[np.arange(len(tgt)), tgt].sum())
        out.append((ll, len(tgt), ll / len(tgt)))
    return out


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("llamita")
    ap.add_argument("task")
    ap.add_argument("data")
    ap.add_argument("n", type=int)
    ap.add_argument("--max-len", type=int, default=128)
    a = ap.parse_args(argv)
    for ctxs, conts, gold in items_of(a.task, a.data, a.n):
        r = score(a.model, a.llamita, ctxs, conts, a.max_len)
        print(json.dumps({"gold": gold, "ll": [x[0] for x in r], "n_tokens": [x[1] for x in r],
                          "greedy": [x[2] for x in r]}))


if __name__ == "__main__":
    main(sys.argv[1:])
