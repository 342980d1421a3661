"""llamita's forward pass vs an independent float64 NumPy one (tests/ref/llama_np.py) on small random
models written by `llamita synth` in every supported type.

Each case writes a model (n_embd 256 so that K-quant rows are whole 256-blocks), evaluates ~20 tokens
with build/tests/tools/dump_logits (one decode call, logits for every position) and compares with
llama_np.forward(). Printed per case: max / mean abs diff vs the plain reference (no rounding), and vs
the reference emulating llama.cpp's rounding points (mimic=True) for information.
TestReferenceVsLlamaCpp (needs ../shared) first checks the reference itself against llama.cpp's
logits on the fixtures, landing where ../shared/fixtures/README.md says an exact implementation does.

Bounds. Our C rounds like llama.cpp (activations converted to the weight's vec_dot type, f16 KV cache),
so "C vs plain NumPy" is expected where ../shared/fixtures/README.md measured "plain ref vs llama.cpp"
on the same kind of model (0.02-std weights, logits of std ~0.5): F32 7.7e-4, F16 1.2e-3, BF16 8.4e-3,
Q8_0 2.9e-2, other quants 2.9e-2..4.5e-2 max, 5.4e-3..7.8e-3 mean. The bounds below are those
figures with headroom, tightened to what was measured here (see MEASURED); a wrong dequantizer or
GQA mapping moves logits by 0.1..2 (llama.cpp's own quantized-vs-F32 distance is 3-30x the bound
for every type but Q8_0).

MEASURED (x86-64, gcc -O2), ours vs plain, max / mean: F32 <= 4.4e-4 / 6.5e-5, F16 7.0e-4 / 1.5e-4,
BF16 5.0e-3 / 8.8e-4, Q8_0 1.9e-2 / 3.4e-3, Q4_0..Q6_K 1.7e-2..2.6e-2 / 3.0e-3..4.5e-3 (logit std
~0.33). Splitting the batch (n_batch 7) changed nothing (0 difference).
In these 0.02-std models attention is nearly uniform, so RoPE mistakes move logits by only ~4e-2:
they are caught by the tight F32 bounds (measured with a mutated reference: scale ignored 4.2e-2,
wrong base 3.5e-2, no RoPE 4.9e-2, all > 30x the F32 bound), hence the RoPE variants on F32 cases;
KV heads in the wrong order move them by 1.9, rms eps 1e-6 instead of 1e-5 by 7e-3.

Rounding emulation. Against mimic=True our logits agree to ~1e-7 (float32 accumulation) in every case
until some activation lands on the other side of a rounding boundary (f32 vs f64 sums), after which
that position and, through K/V, every later one move by up to ~1e-2 (seen in about a third of
the cases, from position 1 on in the worst). So per case only position 0 is compared with mimic, and
test_99_rounding_emulation requires it within 1e-5 in all but 3 of the cases (measured: all
15 at <= 6e-7): the plain reference, which skips those rounding points, misses position 0 by
3.5e-4 (F32) .. 2.3e-2 (Q2_K).
"""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import llama_np  # noqa: E402

BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
DUMP = os.path.join(BUILD, "tests", "tools", "dump_logits")

# shape presets; every case has n_embd 256, n_ff 512 (multiples of 256 for K-quants)
BASE = dict(n_vocab=320, n_embd=256, n_layer=2, n_head=8, n_head_kv=2, n_ff=512, n_ctx=64)

# (name, type, overrides, max bound, mean bound)
CASES = [
    ("F32_gqa", "F32", {}, 1e-3, 2e-4),
    ("F32_scale4", "F32", dict(rope_scale=4.0), 1e-3, 2e-4),                     # linear RoPE scaling
    ("F32_base5e5_hd64", "F32", dict(rope_base=500000.0, n_head=4), 1e-3, 2e-4),  # head_dim 64
    ("F16_mha", "F16", dict(n_head_kv=8), 2e-3, 4e-4),
    ("BF16_rot16", "BF16", dict(n_rot=16), 1e-2, 2e-3),         # n_rot < head_dim (32)
    ("Q8_0_tied", "Q8_0", dict(tied_output=True), 6e-2, 1e-2),  # no output.weight
    ("Q4_0", "Q4_0", {}, 6e-2, 1e-2),
    ("Q4_1_scale4", "Q4_1", dict(rope_scale=4.0), 6e-2, 1e-2),  # linear RoPE scaling
    ("Q5_0_mqa", "Q5_0", dict(n_head_kv=1), 6e-2, 1e-2),
    ("Q5_1_3layers", "Q5_1", dict(n_layer=3), 6e-2, 1e-2),
    ("Q2_K", "Q2_K", {}, 6e-2, 1e-2),
    ("Q3_K_M", "Q3_K_M", {}, 6e-2, 1e-2),
    ("Q4_K_M", "Q4_K_M", dict(n_head=4, n_head_kv=2), 6e-2, 1e-2),  # head_dim 64
    ("Q5_K_M", "Q5_K_M", {}, 6e-2, 1e-2),
    ("Q6_K_base5e5", "Q6_K", dict(rope_base=500000.0), 6e-2, 1e-2),
]

N_TOKENS = 20

_FLAGS = {
    "n_vocab": "--n-vocab", "n_embd": "--n-embd", "n_layer": "--n-layer", "n_head": "--n-head",
    "n_head_kv": "--n-head-kv", "n_ff": "--n-ff", "n_ctx": "--n-ctx", "n_rot": "--n-rot",
    "rope_base": "--rope-base", "rope_scale": "--rope-scale", "seed": "--seed",
}


def synth_cmd(path, ftype, params):
    cmd = [CLI, "synth", "-o", path, "--type", ftype]
    for k, v in params.items():
        if k == "tied_output":
            if v:
                cmd.append("--tied")
        else:
            cmd += [_FLAGS[k], str(v)]
    return cmd


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        raise AssertionError("%s failed (exit %d): %s" % (" ".join(cmd), r.returncode,
                                                          r.stderr.decode(errors="replace")))
    return r


@unittest.skipUnless(os.access(CLI, os.X_OK) and os.access(DUMP, os.X_OK),
                     "build %s and %s first (make tests)" % (CLI, DUMP))
class TestForwardNumPy(unittest.TestCase):
    row0_vs_mimic = {}  # case name -> max abs diff of position 0's logits vs mimic=True

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="llamita-fwd-")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_case(self, i):
        name, ftype, over, max_bound, mean_bound = CASES[i]
        params = dict(BASE, seed=100 + i, **over)
        model = os.path.join(self.tmp.name, name + ".gguf")
        run(synth_cmd(model, ftype, params))
        rng = np.random.default_rng(7 + i)
        toks = np.concatenate([[1], rng.integers(3, params["n_vocab"], N_TOKENS - 1)]).astype("<i4")
        tok_path = os.path.join(self.tmp.name, name + ".tokens")
        out_path = os.path.join(self.tmp.name, name + ".logits")
        toks.tofile(tok_path)
        run([DUMP, model, tok_path, out_path])
        ours = np.fromfile(out_path, dtype="<f4")
        ref = llama_np.forward(model, toks)
        self.assertEqual(ours.size, ref.size, "logits size")
        ours = ours.reshape(ref.shape).astype(np.float64)
        self.assertTrue(np.all(np.isfinite(ours)), "non-finite logits")
        mim = llama_np.forward(model, toks, mimic=True)
        d, dm = np.abs(ours - ref), np.abs(ours - mim)
        TestForwardNumPy.row0_vs_mimic[name] = dm[0].max()
        top1 = np.mean(ours.argmax(1) == ref.argmax(1))
        print("\n  %-14s %-7s logit std %.3f | vs plain: max %.3e mean %.3e top-1 %.2f | "
              "vs mimic: max %.3e mean %.3e pos0 %.1e  [bounds %.0e / %.0e]" % (
                  name, ftype, ref.std(), d.max(), d.mean(), top1, dm.max(), dm.mean(), dm[0].max(),
                  max_bound, mean_bound), file=sys.stderr, end="")
        self.assertLessEqual(d.max(), max_bound, "%s: max abs diff vs NumPy" % name)
        self.assertLessEqual(d.mean(), mean_bound, "%s: mean abs diff vs NumPy" % name)
        if i % 4 == 0:  # the same tokens split into batches of 7 by the library: same bounds
            run([DUMP, model, tok_path, out_path, "7"])
            split = np.fromfile(out_path, dtype="<f4").reshape(ref.shape).astype(np.float64)
            ds = np.abs(split - ref)
            print("\n  %-14s n_batch 7: vs plain max %.3e mean %.3e; vs one batch max %.3e" % (
                name, ds.max(), ds.mean(), np.abs(split - ours).max()), file=sys.stderr, end="")
            self.assertLessEqual(ds.max(), max_bound, "%s n_batch 7: max abs diff" % name)
            self.assertLessEqual(ds.mean(), mean_bound, "%s n_batch 7: mean abs diff" % name)

    def test_99_rounding_emulation(self):
        got = TestForwardNumPy.row0_vs_mimic
        if len(got) != len(CASES):
            self.skipTest("needs every test_NN case run first in this process")
        good = [n for n, v in got.items() if v <= 1e-5]
        print("\n  position 0 within 1e-5 of the mimic reference in %d/%d cases (worst %.1e)" % (
            len(good), len(got), max(got.values())), file=sys.stderr, end="")
        self.assertGreaterEqual(len(good), len(CASES) - 3, "position-0 logits vs mimic: %r" % got)


# ------------------------------------------------------------------------------------------------
# The reference itself vs llama.cpp (../shared/fixtures): what the comparisons above rest on.
# ------------------------------------------------------------------------------------------------

SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "fixtures")

# (dump prefix, model, plain max, plain mean, mimic mean bound or None). Measured plain max / mean
# (= the README's "plain ref vs llama.cpp" column) and mimic mean, in the comments. The mimic bound is
# set only where emulating the rounding measurably helps (it then anchors test_99's use of mimic).
REF_CASES = [
    ("models/stories260K-lily", "models/stories260K.gguf", 2e-2, 4e-3, 5e-4),  # 9.5e-3 / 1.8e-3; 9.5e-5
    ("models/stories260K-cafe", "models/stories260K.gguf", 2e-2, 4e-3, 1e-3),  # 1.6e-2 / 1.8e-3; 3.6e-4
    ("quant/fx-tok512-F16", None, 2e-3, 4e-4, None),          # 1.2e-3 / 2.3e-4; 1.5e-4
    ("quant/fx-tok512-BF16", None, 1.5e-2, 3e-3, None),       # 8.4e-3 / 1.5e-3; 7.8e-4
    ("quant/fx-tok512-Q8_0", None, 6e-2, 1e-2, 2e-3),         # 2.9e-2 / 5.4e-3; 7.5e-4
    ("quant/fx-tok512-Q4_1", None, 6e-2, 1e-2, None),         # 2.9e-2 / 5.6e-3; 4.6e-3
    ("quant/fx-tok512-Q5_0", None, 6e-2, 1e-2, 4e-3),         # 3.2e-2 / 5.6e-3; 2.1e-3
    ("quant/fx-tok512-Q3_K_S", None, 6e-2, 1e-2, 5e-3),       # 4.4e-2 / 7.0e-3; 3.0e-3
    ("quant/fx-tok512-Q6_K", None, 6e-2, 1e-2, None),         # 3.8e-2 / 7.5e-3; 3.9e-3
    ("vocab32k/fx-spm32k-Q8_0", None, 6e-2, 1e-2, 5e-4),      # 2.4e-2 / 3.3e-3; 4.8e-5
    ("vocab32k/fx-spm32k-Q4_K_M", None, 6e-2, 1e-2, 5e-4),    # 3.4e-2 / 4.8e-3; 8.5e-5
]


@unittest.skipUnless(os.path.isdir(FIXTURES), "needs ../shared/fixtures (set LLAMITA_SHARED)")
class TestReferenceVsLlamaCpp(unittest.TestCase):
    """llama_np (plain and mimic) vs llama.cpp's logits for the fixtures' prompts."""

    def check_ref(self, i):
        prefix, model, max_b, mean_b, mimic_b = REF_CASES[i]
        pre = os.path.join(FIXTURES, prefix)
        model = os.path.join(FIXTURES, model) if model else pre + ".gguf"
        toks = np.fromfile(pre + ".tokens", dtype="<i4")
        want = np.fromfile(pre + ".logits", dtype="<f4").reshape(len(toks), -1).astype(np.float64)
        plain = np.abs(llama_np.forward(model, toks) - want)
        mim = np.abs(llama_np.forward(model, toks, mimic=True) - want)
        print("\n  %-26s ref vs llama.cpp: plain max %.3e mean %.3e | mimic max %.3e mean %.3e" % (
            prefix, plain.max(), plain.mean(), mim.max(), mim.mean()), file=sys.stderr, end="")
        self.assertLessEqual(plain.max(), max_b)
        self.assertLessEqual(plain.mean(), mean_b)
        if mimic_b is not None:
            self.assertLessEqual(mim.mean(), mimic_b)


def _add_ref(i):
    name = "test_%02d_%s" % (i, REF_CASES[i][0].split("/")[1].replace("-", "_"))
    setattr(TestReferenceVsLlamaCpp, name, lambda self: self.check_ref(i))


for _i in range(len(REF_CASES)):
    _add_ref(_i)


def _add(i):
    setattr(TestForwardNumPy, "test_%02d_%s" % (i, CASES[i][0]), lambda self: self.check_case(i))


for _i in range(len(CASES)):
    _add(_i)


if __name__ == "__main__":
    unittest.main()
