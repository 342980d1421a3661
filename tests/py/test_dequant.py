"""llamita's C dequantizers (src/quant.c, driven through build/tests/tools/dequant) vs the independent
NumPy ones (tests/ref/dequant_np.py), plus checks of the NumPy reader against llama.cpp's files.

1. Random blocks of every type (random bytes, the fp16 scale fields set to random finite values of
   magnitude 1e-3..1): C and NumPy must agree bit for bit. Both compute each value with a single
   float32 rounding (every scale*scale and scale*quant product is exact in float32), so any
   difference is a layout bug.
2. Every tensor of every ../shared/fixtures GGUF (made by llama-quantize): C == NumPy, bit for bit
   (tensors over 16384 values: their first and last 8192).
3. The NumPy dequantization of each quantized fixture is close to the F16 fixture's (both quantize
   the same F32 weights): relative RMS difference per tensor type within the band expected for that
   type. This checks the NumPy reader against an independent fact (a wrong bit layout gives ~1.0).
4. llamita's own quantizers (dequant -q) on the F16 fixture weights: relative RMS error at most
   llama-quantize's on the same tensors (printed side by side).
"""
import glob
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import dequant_np  # noqa: E402
import gguf_np  # noqa: E402

BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
TOOL = os.path.join(BUILD, "tests", "tools", "dequant")
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
FIXTURES = os.path.join(SHARED, "fixtures")
HAVE_FIXTURES = os.path.isdir(FIXTURES)
HAVE_TOOL = os.path.exists(TOOL)

TYPES = gguf_np.GGML_TYPES  # id -> (name, block elements, block bytes)

# byte offsets of the fp16 scale fields inside each block type
FP16_FIELDS = {
    2: [0], 3: [0, 2], 6: [0], 7: [0, 2], 8: [0], 9: [0, 2],
    10: [80, 82], 11: [108], 12: [0, 2], 13: [0, 2], 14: [208],
}

# Relative RMS difference of llama-quantize's output vs the F16 file per tensor type, as measured on
# fx-tok512 (all tensors of all files agree to +-1%): Q8_0 .0054, Q6_K .0178, Q5_K .0361, Q5_1 .0378,
# Q5_0 .0428, Q4_K .0714, Q4_1 .0784, Q4_0 .0858, Q3_K .151, Q2_K .297, BF16 .0017, F32 (norms) 0.
# Band: [0.8x, 1.15x] of those.
EXPECTED_REL_RMS = {
    "BF16": 0.0017, "Q8_0": 0.0054, "Q6_K": 0.0178, "Q5_K": 0.0361, "Q5_1": 0.0378, "Q5_0": 0.0428,
    "Q4_K": 0.0714, "Q4_1": 0.0784, "Q4_0": 0.0858, "Q3_K": 0.151, "Q2_K": 0.297,
}


def run_tool(args):
    r = subprocess.run([TOOL] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise AssertionError("dequant %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))


def c_dequantize(tmp, type_id, raw):
    src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.f32")
    with open(src, "wb") as f:
        f.write(raw)
    run_tool([TYPES[type_id][0], src, dst])
    return np.fromfile(dst, dtype="<f4")


def c_quantize(tmp, type_id, values):
    src, dst = os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.bin")
    np.asarray(values, dtype="<f4").tofile(src)
    run_tool(["-q", TYPES[type_id][0], src, dst])
    with open(dst, "rb") as f:
        return f.read()


def assert_same_bits(test, a, b, what):
    """a, b float32 arrays: equal bit patterns (NaNs: equal positions; payloads may differ)."""
    test.assertEqual(a.shape, b.shape, what)
    na, nb = np.isnan(a), np.isnan(b)
    test.assertTrue(np.array_equal(na, nb), "%s: NaN positions differ" % what)
    ok = ~na
    diff = a[ok].view(np.uint32) != b[ok].view(np.uint32)
    fin = np.isfinite(a) & np.isfinite(b)
    maxabs = float(np.max(np.abs(a[fin].astype(np.float64) - b[fin]))) if fin.any() else 0.0
    if diff.any():
        i = int(np.flatnonzero(diff)[0])
        test.fail("%s: %d of %d values differ (max abs diff %g), first at %d: C %r NumPy %r"
                  % (what, int(diff.sum()), diff.size, maxabs, i, a[ok][i], b[ok][i]))
    return maxabs


def random_blocks(rng, type_id, nb):
    """nb random blocks of type_id as bytes, scale fields sane (finite, magnitude 1e-3..1)."""
    name, bs, ts = TYPES[type_id]
    if type_id == 0:
        return (rng.standard_normal(nb) * 10.0 ** rng.integers(-20, 20, nb)).astype("<f4").tobytes()
    b = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    mag = 10.0 ** rng.uniform(-3, 0, size=nb)
    sign = np.where(rng.integers(0, 2, nb) == 1, -1.0, 1.0)
    if type_id == 15:  # Q8_K: fp32 d
        b[:, 0:4] = (sign * mag).astype("<f4").view(np.uint8).reshape(nb, 4)
        return b.tobytes()
    for off in FP16_FIELDS[type_id]:
        mag = 10.0 ** rng.uniform(-3, 0, size=nb)
        sign = np.where(rng.integers(0, 2, nb) == 1, -1.0, 1.0)
        b[:, off:off + 2] = (sign * mag).astype("<f2").view(np.uint8).reshape(nb, 2)
    return b.tobytes()


@unittest.skipUnless(HAVE_TOOL, "build/tests/tools/dequant not built (run make tests)")
class TestRandomBlocks(unittest.TestCase):
    def test_random_blocks_every_type(self):
        rng = np.random.default_rng(20250220)
        with tempfile.TemporaryDirectory() as tmp:
            for tid, (name, bs, ts) in sorted(TYPES.items()):
                if tid in (1, 30):  # F16 / BF16: every 16-bit pattern once, in random order
                    raw = rng.permutation(np.arange(65536, dtype="<u2")).tobytes()
                    n = 65536
                else:
                    nb = 4096 // bs  # 4096 values: 128 small blocks or 16 super-blocks
                    raw = random_blocks(rng, tid, nb)
                    n = nb * bs
                c = c_dequantize(tmp, tid, raw)
                ref = dequant_np.dequantize(raw, tid, n)
                m = assert_same_bits(self, c, ref, name)
                print("%-5s %6d random values: C == NumPy bit for bit (max abs diff %g)" % (name, n, m))

    def test_tool_rejects_bad_input(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "in.bin")
            with open(src, "wb") as f:
                f.write(b"\0" * 35)  # not a whole Q8_0 block
            r = subprocess.run([TOOL, "Q8_0", src, os.path.join(tmp, "o")], stderr=subprocess.PIPE)
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"Q8_0", r.stderr)
            r = subprocess.run([TOOL, "Q9_9", src, os.path.join(tmp, "o")], stderr=subprocess.PIPE)
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"Q9_9", r.stderr)


SAMPLE = 8192  # values taken from each end of a big tensor (a multiple of every block size)


def sample(t):
    """Raw bytes of tensor t, or of its first and last SAMPLE values when it is bigger than 2*SAMPLE
    (all 137M fixture values would take ~20 s; every tensor is still covered)."""
    _, bs, ts = TYPES[t.type_id]
    n = int(np.prod(t.shape))
    if n <= 2 * SAMPLE:
        return bytes(t.data)
    k = SAMPLE // bs * ts
    return bytes(t.data[:k]) + bytes(t.data[-k:])


def fixture_files():
    return sorted(glob.glob(os.path.join(FIXTURES, "**", "*.gguf"), recursive=True))


@unittest.skipUnless(HAVE_FIXTURES, "../shared/fixtures not found (set LLAMITA_SHARED)")
class TestFixtures(unittest.TestCase):
    @unittest.skipUnless(HAVE_TOOL, "build/tests/tools/dequant not built (run make tests)")
    def test_c_equals_numpy_on_every_fixture_tensor(self):
        files = fixture_files()
        self.assertGreater(len(files), 10)
        # one tool call per tensor type (process start-up dominates under ASan): concatenate the
        # (sampled) raw bytes of every tensor of that type in every file, remembering where each went
        raw_by_type, where = {}, {}
        n_tensors = 0
        for path in files:
            for t in gguf_np.GGUFFile(path).tensors.values():
                chunks = raw_by_type.setdefault(t.type_id, [])
                start = sum(len(c) for c in chunks) // TYPES[t.type_id][2] * TYPES[t.type_id][1]
                where.setdefault(t.type_id, []).append((start, "%s:%s" % (os.path.basename(path), t.name)))
                chunks.append(sample(t))
                n_tensors += 1
        total = 0
        with tempfile.TemporaryDirectory() as tmp:
            for tid, chunks in sorted(raw_by_type.items()):
                raw = b"".join(chunks)
                n = len(raw) // TYPES[tid][2] * TYPES[tid][1]
                c = c_dequantize(tmp, tid, raw)
                ref = dequant_np.dequantize(raw, tid, n)
                bad = np.flatnonzero(c.view(np.uint32) != ref.view(np.uint32))
                if bad.size:
                    i = int(bad[0])
                    name = [w for st, w in where[tid] if st <= i][-1]
                    self.fail("%s: %d values differ, first in %s: C %r NumPy %r"
                              % (TYPES[tid][0], bad.size, name, c[i], ref[i]))
                print("%-5s %3d tensors, %8d values: C == NumPy bit for bit"
                      % (TYPES[tid][0], len(where[tid]), n))
                total += n
        print("%d values of %d tensors (big ones sampled at both ends) in %d files" % (total, n_tensors, len(files)))

    def test_numpy_quantized_fixtures_close_to_f16(self):
        qdir = os.path.join(FIXTURES, "quant")
        f16 = gguf_np.GGUFFile(os.path.join(qdir, "fx-tok512-F16.gguf"))
        ref = {name: dequant_np.dequantize(t.data, t.type_id, int(np.prod(t.shape))).astype(np.float64)
               for name, t in f16.tensors.items()}
        worst = {}
        for path in sorted(glob.glob(os.path.join(qdir, "fx-tok512-*.gguf"))):
            if path.endswith("-F16.gguf"):
                continue
            g = gguf_np.GGUFFile(path)
            for name, t in g.tensors.items():
                x = dequant_np.dequantize(t.data, t.type_id, int(np.prod(t.shape)))
                r = ref[name]
                tname = TYPES[t.type_id][0]
                if tname == "F32":  # norms: llama-quantize copies them (F16 file rounds them)
                    self.assertLess(float(np.max(np.abs(x - r))), 1e-3, name)
                    continue
                rel = float(np.sqrt(np.mean((x - r) ** 2) / np.mean(r ** 2)))
                lo, hi = 0.8 * EXPECTED_REL_RMS[tname], 1.15 * EXPECTED_REL_RMS[tname]
                self.assertTrue(lo <= rel <= hi, "%s %s (%s): rel RMS vs F16 %.4f outside [%.4f, %.4f]"
                                % (os.path.basename(path), name, tname, rel, lo, hi))
                a, b = worst.get(tname, (1e9, 0))
                worst[tname] = (min(a, rel), max(b, rel))
        # token_embd of Q8_0 specifically (both files quantize the same F32 weights; ~0.5% of std)
        q8 = gguf_np.GGUFFile(os.path.join(qdir, "fx-tok512-Q8_0.gguf")).tensors["token_embd.weight"]
        x = dequant_np.dequantize(q8.data, q8.type_id, int(np.prod(q8.shape)))
        r = ref["token_embd.weight"]
        rel = float(np.sqrt(np.mean((x - r) ** 2)) / np.std(r))
        print("Q8_0 token_embd vs F16: RMS diff %.5f of std, max abs %.3g (std %.4f)"
              % (rel, float(np.max(np.abs(x - r))), float(np.std(r))))
        self.assertLess(rel, 0.01)
        for tname, (a, b) in sorted(worst.items(), key=lambda kv: kv[1][0]):
            print("%-5s rel RMS vs F16 %.4f .. %.4f (expected %.4f)" % (tname, a, b, EXPECTED_REL_RMS[tname]))

    @unittest.skipUnless(HAVE_TOOL, "build/tests/tools/dequant not built (run make tests)")
    def test_our_quantizers_vs_llama_quantize(self):
        """Quantize the F16 fixture's weights with llamita's from_float; relative RMS error vs the F16
        values must not exceed llama-quantize's (measured on the same tensors of its files)."""
        qdir = os.path.join(FIXTURES, "quant")
        f16 = gguf_np.GGUFFile(os.path.join(qdir, "fx-tok512-F16.gguf"))
        # type -> a file where llama-quantize used it on the sampled tensors
        src_file = {"Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
                    "Q2_K": "Q2_K", "Q3_K": "Q3_K_S", "Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S", "Q6_K": "Q6_K"}
        names = ["blk.0.attn_q.weight"]  # 262144 values
        with tempfile.TemporaryDirectory() as tmp:
            for tname, fname in src_file.items():
                g = gguf_np.GGUFFile(os.path.join(qdir, "fx-tok512-%s.gguf" % fname))
                tid = gguf_np.TYPE_ID[tname]
                se_ours = se_theirs = ss = 0.0
                for name in names:
                    t16 = f16.tensors[name]
                    n = int(np.prod(t16.shape))
                    r = dequant_np.dequantize(t16.data, 1, n)
                    theirs = g.tensors[name]
                    self.assertEqual(theirs.type_id, tid, "%s in %s" % (name, fname))
                    y = dequant_np.dequantize(theirs.data, tid, n).astype(np.float64)
                    ours = dequant_np.dequantize(c_quantize(tmp, tid, r), tid, n).astype(np.float64)
                    se_ours += float(np.sum((ours - r) ** 2))
                    se_theirs += float(np.sum((y - r) ** 2))
                    ss += float(np.sum(r.astype(np.float64) ** 2))
                a, b = np.sqrt(se_ours / ss), np.sqrt(se_theirs / ss)
                print("%-5s rel RMS error: llamita %.5f, llama-quantize %.5f (ratio %.3f)" % (tname, a, b, a / b))
                # Q8_0 uses ggml's own rule (+ round-half-even): equal up to ties
                self.assertLessEqual(a, b * (1.001 if tname == "Q8_0" else 1.0), tname)


if __name__ == "__main__":
    unittest.main()
