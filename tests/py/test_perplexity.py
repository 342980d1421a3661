"""`llamita perplexity` against an independent NumPy computation (tests/ref/ppl_np.py doing the
chunking from llama.cpp's description on top of tests/ref/llama_np.py's float64 forward pass).

  test_ppl_stories260K   PPL and its stderr from -o json == NumPy on the first ~3 KB of
                         ../shared/eval/wiki.test.raw (-c 128 all chunks; -c 64 -b 16 --chunks 5)
  test_kld_self          --save-logits then --kl-divergence with the same model: KLD 0, top-1 100 %,
                         PPL(base) == PPL; the saved file's header and tokens are as documented
  test_kld_quant         fx-tok512-Q4_0 vs a base saved from fx-tok512-F16 (-c 64, 2 chunks):
                         KLD > 0, and KLD, top-1, both PPLs == NumPy (mimic=True forward of both)
  test_errors            text too short, missing file, bad -c, bad logits file: exit codes/messages

Bounds (measured on x86-64, gcc -O2). The reference is llama_np with mimic=True (float64, rounding
where llama.cpp and our C round: f16 KV cache, f16 Q and softmax probs, Q8 activations for quants);
the plain float64 reference (no rounding at all) lands 2.9e-4 (relative PPL) away on -c 128, as it
skips the rounding points that our C shares with llama.cpp. Against mimic, what remains are activations that
round to the other side of an f16/Q8 boundary, and their effect through the cache.
MEASURED: stories260K -c 128 (12 chunks): PPL rel diff 3.8e-5, stderr 6.3e-5; -c 64 -b 16 --chunks 5:
1.4e-4, 1.0e-4. Mutating the NumPy method instead: scored range shifted by +1 / -1 moves PPL by
2.0 % / 2.7 %, no BOS substitution by 0.79 %. Bound PPL_REL = 5e-4: 3.5x the worst measured, 16x
below the smallest mutation.
KLD Q4_0 vs F16 base (tok512, -c 64, 2 chunks): KLD 8.66e-3 nats, rel diff 1.9e-4 (bound 5e-3:
26x); top-1 58.06 % both; PPL(Q4_0) rel diff 4.5e-5 (3 chunks: 2.6e-4), PPL(F16) 4.4e-6 (bound
1.5e-3: Q8 activation rounding flips are more frequent, and this random model's PPL ~570 is
near-uniform so a flip weighs more).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import llama_np  # noqa: E402
import ppl_np  # noqa: E402
from gguf_np import GGUFFile  # noqa: E402

BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
STORIES = os.path.join(SHARED, "fixtures", "models", "stories260K.gguf")
WIKI = os.path.join(SHARED, "eval", "wiki.test.raw")
F16 = os.path.join(SHARED, "fixtures", "quant", "fx-tok512-F16.gguf")
Q4_0 = os.path.join(SHARED, "fixtures", "quant", "fx-tok512-Q4_0.gguf")
HAVE_SHARED = all(os.path.exists(p) for p in (STORIES, WIKI, F16, Q4_0))
SKIP_REASON = "SKIP: ../shared (stories260K.gguf, wiki.test.raw, fx-tok512 fixtures) not found"

PPL_REL = 5e-4   # F32 stories260K vs NumPy mimic
QPPL_REL = 1.5e-3  # Q4_0 / F16 tok512 fixtures vs NumPy mimic
KLD_REL = 5e-3


def run(*args, check=True):
    r = subprocess.run([CLI, "perplexity"] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError("llamita perplexity %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def model_bos(path):
    """BOS id if the model adds BOS, else None (the llama default is add_bos true)."""
    g = GGUFFile(path)
    if not g.kv.get("tokenizer.ggml.add_bos_token", True):
        return None
    return int(g.kv["tokenizer.ggml.bos_token_id"])


def tokenize(model, path):
    r = subprocess.run([CLI, "tokenize", "-m", model, "-f", path], capture_output=True, text=True, check=True)
    return [int(x) for x in r.stdout.split()]


def read_logits_file(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:8]
    version, dtype, n_vocab, n_ctx, n_chunks, first, n_scored, _ = struct.unpack("<IIiiiiii", data[8:40])
    tokens = np.frombuffer(data, dtype="<i4", count=n_chunks * n_ctx, offset=40)
    off = 40 + 4 * n_chunks * n_ctx
    dt = "<f4" if dtype == 0 else "<f2"
    rows = np.frombuffer(data, dtype=dt, offset=off).astype(np.float64).reshape(n_chunks * n_scored, n_vocab)
    return dict(magic=magic, version=version, dtype=dtype, n_vocab=n_vocab, n_ctx=n_ctx, n_chunks=n_chunks,
                first=first, n_scored=n_scored, tokens=tokens, rows=rows)


@unittest.skipUnless(os.path.exists(CLI), "SKIP: build/llamita not built")
@unittest.skipUnless(HAVE_SHARED, SKIP_REASON)
class TestPerplexity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        with open(WIKI, "rb") as f:
            text = f.read(3000)
        # cut at a line end, no trailing newline (the CLI drops one, like llama.cpp)
        text = text[:text.rfind(b"\n")].rstrip(b"\r\n")
        cls.text = os.path.join(cls.tmp.name, "wiki3k.txt")
        with open(cls.text, "wb") as f:
            f.write(text)
        cls.tokens = tokenize(STORIES, cls.text)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _np_ppl(self, model, tokens, n_ctx, max_chunks=None, mimic=True):
        m = llama_np.load(model)
        nll, rows = ppl_np.chunk_nll(lambda t: m.forward(t, mimic=mimic), tokens, n_ctx, model_bos(model),
                                     max_chunks)
        return nll, rows

    def test_ppl_stories260K(self):
        for n_ctx, extra, max_chunks in ((128, [], None), (64, ["-b", "16", "--chunks", "5"], 5)):
            out = json.loads(run("-m", STORIES, "-f", self.text, "-c", str(n_ctx), "-o", "json", *extra).stdout)
            nll, _ = self._np_ppl(STORIES, self.tokens, n_ctx, max_chunks)
            ppl, se = ppl_np.ppl_from_nll(nll)
            nch = ppl_np.n_chunks(len(self.tokens), n_ctx, max_chunks)
            self.assertEqual(out["n_chunks"], nch)
            self.assertEqual(out["n_tokens"], nch * n_ctx)
            self.assertEqual(out["n_scored"], len(nll))
            d_ppl = abs(out["ppl"] - ppl) / ppl
            d_se = abs(out["ppl_stderr"] - se) / se
            print("  -c %d: %d chunks, PPL %.6f (NumPy %.6f) rel diff %.2e; stderr %.6f (NumPy %.6f) rel diff %.2e"
                  % (n_ctx, nch, out["ppl"], ppl, d_ppl, out["ppl_stderr"], se, d_se))
            self.assertLess(d_ppl, PPL_REL)
            self.assertLess(d_se, 10 * PPL_REL)
        # the md output ends with llama.cpp's final line
        last = run("-m", STORIES, "-f", self.text, "-c", "128").stdout.strip().splitlines()[-1]
        self.assertRegex(last, r"^PPL = \d+\.\d{4} \+/- \d+\.\d{5}$")

    def test_kld_self(self):
        base = os.path.join(self.tmp.name, "self.lp")
        out = json.loads(run("-m", STORIES, "-f", self.text, "-c", "64", "--chunks", "4", "-o", "json",
                             "--save-logits", base).stdout)
        lf = read_logits_file(base)
        self.assertEqual(lf["magic"], b"LMLOGPRB")
        self.assertEqual((lf["version"], lf["dtype"], lf["n_vocab"], lf["n_ctx"], lf["n_chunks"], lf["first"],
                          lf["n_scored"]), (1, 0, 512, 64, 4, 32, 31))
        self.assertEqual(list(lf["tokens"]), self.tokens[:4 * 64])
        # each row is a normalized log-distribution
        self.assertLess(np.abs(np.log(np.exp(lf["rows"]).sum(axis=1))).max(), 1e-5)
        k = json.loads(run("-m", STORIES, "--kl-divergence", base, "-o", "json").stdout)
        print("  self: KLD %.3g (max %.3g), top-1 %.2f %%, PPL %.6f base %.6f (perplexity run %.6f)"
              % (k["kld"], k["kld_max"], k["top1"], k["ppl"], k["ppl_base"], out["ppl"]))
        self.assertLess(abs(k["kld"]), 1e-9)
        self.assertLess(k["kld_max"], 1e-9)
        self.assertEqual(k["top1"], 100.0)
        self.assertLess(abs(k["ppl"] - out["ppl"]) / out["ppl"], 1e-9)
        self.assertLess(abs(k["ppl_base"] - out["ppl"]) / out["ppl"], 1e-6)
        self.assertLess(abs(k["dppl"]), 1e-3)
        self.assertEqual(k["n_scored"], 4 * 31)

    def test_kld_quant(self):
        base = os.path.join(self.tmp.name, "f16.lp")
        toks = tokenize(F16, self.text)
        run("-m", F16, "-f", self.text, "-c", "64", "--chunks", "2", "--save-logits", base)
        k = json.loads(run("-m", Q4_0, "--kl-divergence", base, "-o", "json").stdout)
        lf = read_logits_file(base)
        self.assertEqual(list(lf["tokens"]), toks[:2 * 64])
        nll_b, rows_b = self._np_ppl(F16, toks, 64, 2, mimic=True)
        mq = llama_np.LlamaNP(Q4_0)
        nll_q, rows_q = ppl_np.chunk_nll(lambda t: mq.forward(t, mimic=True), toks, 64, model_bos(Q4_0), 2)
        kl, same = ppl_np.kld(rows_b, rows_q)
        ppl_q, _ = ppl_np.ppl_from_nll(nll_q)
        ppl_b, _ = ppl_np.ppl_from_nll(nll_b)
        d_kld = abs(k["kld"] - kl.mean()) / kl.mean()
        print("  Q4_0 vs F16: KLD %.6g (NumPy %.6g) rel diff %.2e; max %.4g (NumPy %.4g); top-1 %.2f %% (NumPy %.2f %%)"
              "; PPL %.4f (NumPy %.4f) base %.4f (NumPy %.4f)"
              % (k["kld"], kl.mean(), d_kld, k["kld_max"], kl.max(), k["top1"], 100 * same.mean(), k["ppl"], ppl_q,
                 k["ppl_base"], ppl_b))
        self.assertGreater(k["kld"], 1e-5)
        self.assertLess(d_kld, KLD_REL)
        # top-1 can flip where the two best logits are within the implementations' difference
        self.assertLess(abs(k["top1"] - 100 * same.mean()), 100 * 3.0 / len(kl))
        self.assertLess(abs(k["ppl"] - ppl_q) / ppl_q, QPPL_REL)
        self.assertLess(abs(k["ppl_base"] - ppl_b) / ppl_b, QPPL_REL)

    def test_errors(self):
        r = run("-m", STORIES, "-f", self.text, "-c", "100000", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("too short", r.stderr)
        self.assertIn("needs 100000 tokens, the text has %d" % len(self.tokens), r.stderr)
        r = run("-m", STORIES, "-f", os.path.join(self.tmp.name, "nope.txt"), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("nope.txt", r.stderr)
        for bad in ("abc", "2", "0"):
            r = run("-m", STORIES, "-f", self.text, "-c", bad, check=False)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
        r = run("-m", STORIES, check=False)
        self.assertEqual(r.returncode, 2)
        bad = os.path.join(self.tmp.name, "bad.lp")
        with open(bad, "wb") as f:
            f.write(b"_logits_" + bytes(100))
        r = run("-m", STORIES, "--kl-divergence", bad, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.lp", r.stderr)
        self.assertIn("bad magic", r.stderr)
        # a base saved from a model with another vocabulary
        other = os.path.join(self.tmp.name, "other.lp")
        with open(other, "wb") as f:
            f.write(b"LMLOGPRB" + struct.pack("<IIiiiiii", 1, 0, 32000, 8, 1, 4, 3, 0) + bytes(4 * 8 + 4 * 3 * 32000))
        r = run("-m", STORIES, "--kl-divergence", other, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("vocabulary of 32000 tokens, but the model has 512", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
