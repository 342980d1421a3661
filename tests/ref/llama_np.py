"""Independent float64 NumPy forward pass of a Llama-architecture GGUF model.

Written from the model's published description (llama2.c's run.c is the model of clarity here) and
the GGUF key names, not from llamita's C code, so that it can check it:

    logits = forward(gguf_path, tokens)               # [n_tokens, n_vocab] float64, all positions
    logits = forward(gguf_path, tokens, mimic=True)   # emulate llama.cpp's CPU rounding points
    m = LlamaNP(gguf_path); m.forward(tokens)         # same, keeping the dequantized weights

Conventions (those of llama.cpp for `llama` GGUFs):
  * matrices are stored with ne[0] = input length, ne[1] = output rows: y = W @ x, W [ne1][ne0];
  * RMSNorm: x / sqrt(mean(x^2) + eps) * w;
  * RoPE "normal" mode rotates ADJACENT pairs (x[2i], x[2i+1]) of the first n_rot dims of each head by
    theta_i = (pos / scale) * base^(-2i / n_rot); the remaining head dims pass through;
  * GQA: query head h reads KV head h // (n_head // n_head_kv);
  * causal softmax attention with scale 1/sqrt(head_dim), SwiGLU FFN down(silu(gate x) * up x);
  * output.weight absent => tied to token_embd.weight.

"plain" (mimic=False) does everything in float64 with no rounding at all. mimic=True rounds where
llama.cpp's CPU backend rounds (see ../shared/fixtures/README.md "Numerics"): every matmul input is
converted to the weight's vec_dot_type (F16 -> f16, BF16 -> bf16, Q4_0/Q5_0/Q8_0 -> Q8_0,
Q4_1/Q5_1 -> Q8_1, K-quants -> Q8_K), K and V are stored as f16, Q is rounded to f16 for Q.K^T and
the softmax probabilities to f16 for probs.V. Accumulation stays float64.

Dequantization of quantized types is delegated to dequant_np.dequantize(raw, type_id, n), another
independent module; F32/F16/BF16 are plain reinterpretations done here.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_np import GGUFFile, GGML_TYPES, TYPE_ID  # noqa: E402

T_F32, T_F16, T_BF16 = TYPE_ID["F32"], TYPE_ID["F16"], TYPE_ID["BF16"]


def dequant_tensor(g, name):
    """Tensor `name` of GGUFFile g as a float64 array shaped [ne[n-1]]...[ne[0]] (row-major)."""
    t = g.tensors[name]
    n = int(np.prod(t.shape))
    raw = np.frombuffer(t.data, dtype=np.uint8)
    if t.type_id == T_F32:
        x = raw.view("<f4")
    elif t.type_id == T_F16:
        x = raw.view("<f2")
    elif t.type_id == T_BF16:
        x = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        import dequant_np  # lands separately; only needed for quantized types
        x = np.asarray(dequant_np.dequantize(raw, t.type_id, n))
    x = np.asarray(x, dtype=np.float64)
    if x.size != n:
        raise ValueError("%s: dequantized %d values, expected %d" % (name, x.size, n))
    return x.reshape(list(reversed(t.shape)))


# ------------------------------------------------------------------------------------------------
# Rounding emulation (mimic=True). Each takes a float64 array [..., n] and returns float64 values
# exactly representable in the target format.
# ------------------------------------------------------------------------------------------------

def round_f16(x):
    return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)


def round_bf16(x):
    """float -> bf16 with round-to-nearest-even on the float32 bits (NaN not expected here)."""
    f = np.asarray(x, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def quantize_q8(x):
    """Q8_0 / Q8_1 activation quantization, blocks of 32 (as ggml's vectorised x86 quantizer):
    amax = max|x|, id = 127/amax (0 when amax = 0), q = round(x*id) (nearest, ties to even),
    d = amax/127 stored as f16; Q8_1 also stores s = f16(d * sum(q)) (d before its f16 rounding).
    x [..., n] (n a multiple of 32) -> (values q*f16(d) [..., n], s [..., n/32]), float64."""
    x = np.asarray(x, dtype=np.float32)
    shp = x.shape
    b = x.reshape(-1, 32)
    amax = np.max(np.abs(b), axis=1, keepdims=True)
    d = amax / np.float32(127)
    idv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.rint(b * idv)
    dh = d.astype(np.float16).astype(np.float64)
    s = (d * q.sum(axis=1, keepdims=True).astype(np.float32)).astype(np.float16).astype(np.float64)
    return (q * dh).reshape(shp), s.reshape(shp[:-1] + (shp[-1] // 32,))


def round_q8_0(x):
    """Activation values after Q8_0 quantization (see quantize_q8)."""
    return quantize_q8(x)[0]


def round_q8_k(x):
    """Blocks of 256: the value of largest magnitude m maps to -127: iscale = -127/m, q =
    min(127, round(x*iscale)) (ties to even), d = 1/iscale in f32; value = q * d."""
    x = np.asarray(x, dtype=np.float32)
    shp = x.shape
    b = x.reshape(-1, 256)
    idx = np.argmax(np.abs(b), axis=1)
    m = b[np.arange(b.shape[0]), idx][:, None]
    nz = m != 0
    iscale = np.where(nz, np.float32(-127) / np.where(nz, m, 1), 0).astype(np.float32)
    q = np.minimum(127, np.rint(b * iscale))
    d = np.where(nz, np.float32(1) / np.where(nz, iscale, 1), 0).astype(np.float32)
    return (q * d.astype(np.float64)).reshape(shp)


_Q8_0_USERS = {"Q4_0", "Q5_0", "Q8_0", "Q4_1", "Q5_1"}  # Q4_1/Q5_1: Q8_1, see LlamaNP.forward
_Q8_1_USERS = {"Q4_1", "Q5_1"}
_K_TYPES = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}


def round_for(type_id, x):
    """Activations x as llama.cpp converts them for a matmul with a weight of type type_id."""
    name = GGML_TYPES[type_id][0]
    if name == "F32":
        return x
    if name == "F16":
        return round_f16(x)
    if name == "BF16":
        return round_bf16(x)
    if name in _Q8_0_USERS:
        return round_q8_0(x)
    if name in _K_TYPES:
        return round_q8_k(x)
    raise ValueError("no vec_dot_type known for %s" % name)


def block_mins(t):
    """For a Q4_1/Q5_1 tensor: its per-block min m (the f16 after the f16 scale d at the start of
    each block) as float64 [ne1][ne0/32]; None for every other type."""
    name = GGML_TYPES[t.type_id][0]
    if name not in _Q8_1_USERS:
        return None
    bs, ts = GGML_TYPES[t.type_id][1:]
    raw = np.frombuffer(t.data, dtype=np.uint8).reshape(-1, ts)
    m = np.ascontiguousarray(raw[:, 2:4]).view("<f2")[:, 0].astype(np.float64)
    return m.reshape(-1, t.shape[0] // bs)


# ------------------------------------------------------------------------------------------------

class LlamaNP:
    """Hyperparameters and dequantized float64 weights of one GGUF model."""

    def __init__(self, path):
        g = GGUFFile(path)
        self.path = path
        arch = g.kv.get("general.architecture", "llama")
        if arch != "llama":
            raise ValueError("%s: architecture %r, not llama" % (path, arch))

        def kv(key, default=None):
            return g.kv.get("llama." + key, default)

        self.n_embd = int(kv("embedding_length"))
        self.n_layer = int(kv("block_count"))
        self.n_head = int(kv("attention.head_count"))
        self.n_head_kv = int(kv("attention.head_count_kv", self.n_head))
        self.head_dim = int(kv("attention.key_length", self.n_embd // self.n_head))
        self.n_ff = int(kv("feed_forward_length"))
        self.n_rot = int(kv("rope.dimension_count", self.head_dim))
        self.rope_base = float(kv("rope.freq_base", 10000.0))
        self.eps = float(kv("attention.layer_norm_rms_epsilon", 1e-5))
        # linear RoPE scaling: positions divided by the factor (llama.cpp: freq_scale = 1/factor)
        stype = kv("rope.scaling.type", None)
        factor = float(kv("rope.scaling.factor", 0.0) or kv("rope.scale_linear", 0.0) or 0.0)
        if stype not in (None, "none", "linear"):
            raise NotImplementedError("rope scaling type %r" % stype)
        self.rope_scale = factor if (factor > 0 and stype != "none") else 1.0
        assert self.n_head % self.n_head_kv == 0 and self.n_rot % 2 == 0
        assert self.n_rot <= self.head_dim

        def w(name):
            """(W [ne1][ne0] float64, type id, per-block mins [ne1][ne0/32] for Q4_1/Q5_1 or None)."""
            t = g.tensors[name]
            return (dequant_tensor(g, name), t.type_id, block_mins(t))

        self.tok_embd = dequant_tensor(g, "token_embd.weight")  # [n_vocab][n_embd]
        self.n_vocab = self.tok_embd.shape[0]
        self.output_norm = dequant_tensor(g, "output_norm.weight")
        if "output.weight" in g.tensors:
            self.output = w("output.weight")  # [n_vocab][n_embd]
        else:
            t = g.tensors["token_embd.weight"]
            self.output = (self.tok_embd, t.type_id, block_mins(t))
        self.layers = []
        for i in range(self.n_layer):
            p = "blk.%d." % i
            self.layers.append(dict(
                attn_norm=dequant_tensor(g, p + "attn_norm.weight"),
                wq=w(p + "attn_q.weight"), wk=w(p + "attn_k.weight"), wv=w(p + "attn_v.weight"),
                wo=w(p + "attn_output.weight"),
                ffn_norm=dequant_tensor(g, p + "ffn_norm.weight"),
                gate=w(p + "ffn_gate.weight"), up=w(p + "ffn_up.weight"),
                down=w(p + "ffn_down.weight"),
            ))

    def _rmsnorm(self, x, wgt):
        """x [T][n], wgt [n] -> x / sqrt(mean(x^2) + eps) * wgt."""
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * wgt

    def _rope(self, x, pos):
        """x [T][n_heads][head_dim], pos [T]: rotates adjacent pairs of the first n_rot dims."""
        half = self.n_rot // 2
        inv = self.rope_base ** (-2.0 * np.arange(half) / self.n_rot)  # [half]
        theta = (pos[:, None] / self.rope_scale) * inv[None, :]  # [T][half]
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        out = x.copy()
        x0 = x[..., 0:self.n_rot:2]
        x1 = x[..., 1:self.n_rot:2]
        out[..., 0:self.n_rot:2] = x0 * c - x1 * s
        out[..., 1:self.n_rot:2] = x0 * s + x1 * c
        return out

    def forward(self, tokens, mimic=False):
        """tokens: sequence of ints (positions 0..T-1). Returns logits [T][n_vocab] float64."""
        toks = np.asarray(tokens, dtype=np.int64)
        T = toks.shape[0]
        if T == 0:
            return np.zeros((0, self.n_vocab))
        if toks.min() < 0 or toks.max() >= self.n_vocab:
            raise ValueError("token id out of range")
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        group = nh // nkv

        def mm(wt, x):  # x [T][ne0] -> [T][ne1]
            W, tid, mins = wt
            if not mimic:
                return x @ W.T
            if mins is None:
                return round_for(tid, x) @ W.T
            # Q4_1/Q5_1 x Q8_1: per block, d_w*d_x*sum(q_w q_x) + m_w * s_x, where s_x is Q8_1's
            # stored f16(d*sum(q)) rather than the sum of the rounded activations.
            xq, sx = quantize_q8(x)  # [T][ne0], [T][ne0/32]
            corr = sx - xq.reshape(T, -1, 32).sum(axis=2)
            return xq @ W.T + corr @ mins.T

        rnd = round_f16 if mimic else (lambda a: a)
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.ones((T, T), dtype=bool), k=1)  # [T(query)][T(key)], True = hidden
        x = self.tok_embd[toks].copy()  # [T][n_embd]
        for L in self.layers:
            h = self._rmsnorm(x, L["attn_norm"])
            q = self._rope(mm(L["wq"], h).reshape(T, nh, hd), pos)   # [T][nh][hd]
            k = self._rope(mm(L["wk"], h).reshape(T, nkv, hd), pos)  # [T][nkv][hd]
            v = mm(L["wv"], h).reshape(T, nkv, hd)                    # [T][nkv][hd]
            q, k, v = rnd(q), rnd(k), rnd(v)
            att = np.empty((T, nh, hd))
            for hh in range(nh):
                kh = hh // group
                s = (q[:, hh, :] @ k[:, kh, :].T) / np.sqrt(hd)  # [T][T]
                s[mask] = -np.inf
                s = s - s.max(axis=1, keepdims=True)
                p = np.exp(s)
                p /= p.sum(axis=1, keepdims=True)
                att[:, hh, :] = rnd(p) @ v[:, kh, :]
            x = x + mm(L["wo"], att.reshape(T, nh * hd))
            h = self._rmsnorm(x, L["ffn_norm"])
            gt = mm(L["gate"], h)
            up = mm(L["up"], h)
            x = x + mm(L["down"], gt / (1.0 + np.exp(-gt)) * up)
        h = self._rmsnorm(x, self.output_norm)
        return mm(self.output, h)


_CACHE = {}


def load(gguf_path):
    """LlamaNP for a path, cached by (path, mtime, size)."""
    st = os.stat(gguf_path)
    key = (os.path.abspath(gguf_path), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE.clear()  # keep at most one model's float64 weights alive
        _CACHE[key] = LlamaNP(gguf_path)
    return _CACHE[key]


def forward(gguf_path, tokens, mimic=False):
    """Logits [n_tokens, n_vocab] (float64) for every position of tokens evaluated from position 0."""
    return load(gguf_path).forward(tokens, mimic=mimic)


def _main(argv):
    """python3 llama_np.py MODEL.gguf PREFIX  -> compares with PREFIX.tokens / PREFIX.logits."""
    import argparse
    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("model")
    ap.add_argument("prefixes", nargs="+")
    ap.add_argument("--mimic", action="store_true")
    a = ap.parse_args(argv)
    for pre in a.prefixes:
        toks = np.fromfile(pre + ".tokens", dtype="<i4")
        ref = np.fromfile(pre + ".logits", dtype="<f4").reshape(len(toks), -1)
        got = forward(a.model, toks, mimic=a.mimic)
        d = np.abs(got - ref)
        print("%s: %s vs llama.cpp: max %.3g mean %.3g top1 agree %.3f" % (
            os.path.basename(pre), "mimic" if a.mimic else "plain", d.max(), d.mean(),
            np.mean(got.argmax(1) == ref.argmax(1))))


if __name__ == "__main__":
    _main(sys.argv[1:])
