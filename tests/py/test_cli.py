"""The `llamita` command-line tool, driven through subprocess.

Checks: exit statuses (0 success, 1 one-line `error:` for bad input, 2 usage error with a usage hint,
never a signal); corrupt files (missing, not a GGUF, bad magic, truncated at ~50 cut points spread
over the header, metadata, tensor table and data); `tokenize` against llama.cpp's token ids for the
fixture prompts; `run --temp 0` against llama.cpp's greedy text for stories260K; `logits` output
layout and values against llama.cpp's logits; `info`'s tensor table against an independent GGUF
reader (tests/ref/gguf_np.py); `synth` files accepted by `info` and `run`; seeded sampling is
reproducible.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import gguf_np  # noqa: E402

BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
FIX = os.path.join(SHARED, "fixtures")
STORIES = os.path.join(FIX, "models", "stories260K.gguf")
LILY = "Once upon a time, there was a little girl named Lily."

HAVE_CLI = os.access(CLI, os.X_OK)
HAVE_SHARED = os.path.isfile(STORIES)
NO_CLI = "build %s first (make)" % CLI
NO_SHARED = "../shared not found (set LLAMITA_SHARED to its path)"

# generous: the whole suite also runs under ASan on a 2-core machine
TIMEOUT = 120


def llamita(*args, input_bytes=None, timeout=TIMEOUT):
    """Runs build/llamita with args; returns CompletedProcess with bytes stdout/stderr."""
    return subprocess.run([CLI] + [str(a) for a in args], input=input_bytes, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def fixture_json(name):
    with open(os.path.join(FIX, "models", name + ".json")) as f:
        return json.load(f)


def read_i32(path):
    return np.fromfile(path, dtype="<i4").tolist()


class CliCase(unittest.TestCase):
    def assertNoSignal(self, r, what):
        self.assertGreaterEqual(r.returncode, 0, "%s: killed by signal %d; stderr: %r"
                                % (what, -r.returncode, r.stderr[-500:]))

    def assertOk(self, r, what):
        self.assertNoSignal(r, what)
        self.assertEqual(r.returncode, 0, "%s: exit %d, stderr: %s" % (what, r.returncode,
                                                                      r.stderr.decode(errors="replace")))

    def assertInputError(self, r, what):
        """Exit 1, and stderr holds exactly one `error:` line (its last line)."""
        self.assertNoSignal(r, what)
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 1, "%s: expected exit 1, got %d; stderr: %s" % (what, r.returncode, err))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith("error: ")]
        self.assertEqual(len(errs), 1, "%s: expected one error line, stderr: %r" % (what, err))
        self.assertEqual(lines[-1], errs[0], "%s: the error is not the last line: %r" % (what, err))
        return errs[0]

    def assertUsageError(self, r, what):
        """Exit 2 with an `error:` line followed by a one-line usage hint."""
        self.assertNoSignal(r, what)
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 2, "%s: expected exit 2, got %d; stderr: %s" % (what, r.returncode, err))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 2, "%s: stderr: %r" % (what, err))
        self.assertTrue(lines[0].startswith("error: "), "%s: %r" % (what, err))
        self.assertTrue(lines[1].startswith("usage: "), "%s: %r" % (what, err))
        self.assertEqual(r.stdout, b"", what)


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestUsage(CliCase):
    def test_help_and_version(self):
        r = llamita("--help")
        self.assertOk(r, "--help")
        for sub in ("run", "tokenize", "logits", "info", "synth"):
            self.assertIn(sub.encode(), r.stdout)
            rs = llamita(sub, "--help")
            self.assertOk(rs, sub + " --help")
            self.assertTrue(rs.stdout.startswith(b"usage: llamita " + sub.encode()), rs.stdout[:80])
            self.assertEqual(llamita("help", sub).stdout, rs.stdout)
        r = llamita("--version")
        self.assertOk(r, "--version")
        self.assertRegex(r.stdout.decode(), r"^llamita \d+\.\d+\.\d+\n$")

    def test_usage_errors_exit_2(self):
        cases = [
            (),
            ("frobnicate",),
            ("--frobnicate",),
            ("help", "frobnicate"),
            ("run",),                                    # no model
            ("run", "-m", "x.gguf"),                     # no prompt
            ("run", "-m", "x.gguf", "-p", "a", "-f", "b"),
            ("run", "-m", "x.gguf", "-p", "a", "--bogus"),
            ("run", "-m", "x.gguf", "-p"),               # missing value
            ("run", "-m", "x.gguf", "-p", "a", "-n", "ten"),
            ("run", "-m", "x.gguf", "-p", "a", "-n", "10x"),
            ("run", "-m", "x.gguf", "-p", "a", "-n", ""),
            ("run", "-m", "x.gguf", "-p", "a", "--temp", "warm"),
            ("run", "-m", "x.gguf", "-p", "a", "--top-p", "0.9.1"),
            ("run", "-m", "x.gguf", "-p", "a", "--seed", "abc"),
            ("run", "-m", "x.gguf", "-p", "a", "-c", " 12"),
            ("tokenize", "-m", "x.gguf"),                # no text
            ("tokenize", "-m", "x.gguf", "a", "b"),      # two texts
            ("tokenize", "-m", "x.gguf", "--bos", "a"),
            ("logits", "-m", "x.gguf", "-p", "a"),       # no -o
            ("logits", "-m", "x.gguf", "-o", "y"),       # no text
            ("info",),
            ("info", "-m", "x.gguf", "--verbose"),
            ("synth",),                                  # no -o
            ("synth", "-o", "x.gguf", "--n-embd", "big"),
            ("synth", "-o", "x.gguf", "--tied=1"),
        ]
        for args in cases:
            with self.subTest(args=args):
                self.assertUsageError(llamita(*args), " ".join(args) or "(no args)")

    def test_bad_values_exit_1(self):
        # parsed before the model is opened, so the model path need not exist
        cases = [
            ("run", "-m", "x.gguf", "-p", "a", "-n", "-3"),
            ("run", "-m", "x.gguf", "-p", "a", "-c", "-1"),
            ("run", "-m", "x.gguf", "-p", "a", "-b", "0"),
            ("run", "-m", "x.gguf", "-p", "a", "--top-p", "1.5"),
            ("run", "-m", "x.gguf", "-p", "a", "--min-p", "-0.1"),
            ("run", "-m", "x.gguf", "-p", "a", "--temp", "nan"),
            ("run", "-m", "x.gguf", "-p", "a", "--temp", "1e999"),
            ("run", "-m", "x.gguf", "-p", "a", "--repeat-penalty", "0"),
            ("run", "-m", "x.gguf", "-p", "a", "--repeat-last-n", "-2"),
            ("run", "-m", "x.gguf", "-p", "a", "-n", "99999999999999999999"),
            ("run", "-m", "x.gguf", "-p", "a", "--seed", "-7"),
            ("run", "-m", "x.gguf", "-p", "a", "--seed", "18446744073709551616"),
            ("run", "-m", "x.gguf", "-p", "a", "-t", "100000"),
            ("synth", "-o", "x.gguf", "--n-layer", "0"),
        ]
        for args in cases:
            with self.subTest(args=args):
                self.assertInputError(llamita(*args), " ".join(args))


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestBadFiles(CliCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="llamita-cli-")
        cls.dir = cls.tmp.name

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def all_commands(self, path):
        out = os.path.join(self.dir, "out.f32")
        return [
            ("info", "-m", path),
            ("tokenize", "-m", path, "hello"),
            ("run", "-m", path, "-p", "hello", "-n", "4", "--temp", "0"),
            ("logits", "-m", path, "-p", "hello", "-o", out),
        ]

    def test_missing_file(self):
        path = os.path.join(self.dir, "does-not-exist.gguf")
        for args in self.all_commands(path):
            with self.subTest(args=args[0]):
                line = self.assertInputError(llamita(*args), args[0])
                self.assertIn("does-not-exist.gguf", line)

    def test_not_a_gguf(self):
        cases = {
            "empty.gguf": b"",
            "text.gguf": b"this is not a model\n" * 50,
            "short.gguf": b"GGU",
            "zeros.gguf": bytes(4096),
        }
        for name, data in cases.items():
            path = self.write(name, data)
            for args in self.all_commands(path):
                with self.subTest(file=name, args=args[0]):
                    self.assertInputError(llamita(*args), "%s %s" % (args[0], name))
        # a directory
        for args in self.all_commands(self.dir):
            with self.subTest(file="<dir>", args=args[0]):
                self.assertInputError(llamita(*args), "%s <dir>" % args[0])

    @unittest.skipUnless(HAVE_SHARED, NO_SHARED)
    def test_bad_magic_and_version(self):
        with open(STORIES, "rb") as f:
            data = f.read()
        for name, patched in [("magic.gguf", b"GGUG" + data[4:]),
                              ("magic-lower.gguf", b"gguf" + data[4:]),
                              ("version.gguf", data[:4] + (99).to_bytes(4, "little") + data[8:]),
                              ("ntensors.gguf", data[:8] + (2**62).to_bytes(8, "little") + data[16:]),
                              ("nkv.gguf", data[:16] + (2**40).to_bytes(8, "little") + data[24:])]:
            path = self.write(name, patched)
            for args in self.all_commands(path)[:2]:
                with self.subTest(file=name, args=args[0]):
                    self.assertInputError(llamita(*args), "%s %s" % (args[0], name))

    @unittest.skipUnless(HAVE_SHARED, NO_SHARED)
    def test_truncated(self):
        with open(STORIES, "rb") as f:
            data = f.read()
        g = gguf_np.GGUFFile(STORIES)
        size, ds = len(data), g.data_start
        self.assertEqual(max(ds + t.offset + len(t.data) for t in g.tensors.values()), size,
                         "fixture has trailing bytes; every cut below must lose data")
        cuts = {0, 1, 3, 4, 7, 8, 15, 16, 23, 24, 25, ds - 1, ds, ds + 1, size - 1}
        cuts.update(24 + (ds - 24) * k // 24 for k in range(1, 24))     # metadata + tensor table
        cuts.update(ds + (size - ds) * k // 12 for k in range(1, 12))   # tensor data
        cuts = sorted(c for c in cuts if 0 <= c < size)
        print("\ntruncated stories260K at %d cut points (data starts at %d of %d bytes)"
              % (len(cuts), ds, size), file=sys.stderr)
        path = os.path.join(self.dir, "trunc.gguf")
        vocab_ok = 0
        for c in cuts:
            with open(path, "wb") as f:
                f.write(data[:c])
            with self.subTest(cut=c):
                # a full load (info) must reject every cut
                self.assertInputError(llamita("info", "-m", path), "info cut at %d" % c)
                # tokenize reads only the tokenizer: cuts in the tensor data may load fine
                r = llamita("tokenize", "-m", path, "hello")
                self.assertNoSignal(r, "tokenize cut at %d" % c)
                if r.returncode == 0:
                    self.assertGreaterEqual(c, ds, "tokenize accepted a file cut at %d, before the data" % c)
                    vocab_ok += 1
                else:
                    self.assertInputError(r, "tokenize cut at %d" % c)
        print("tokenize (vocab only) accepted %d cuts, all inside the tensor data" % vocab_ok, file=sys.stderr)

    @unittest.skipUnless(HAVE_SHARED, NO_SHARED)
    def test_bad_prompt_file(self):
        line = self.assertInputError(llamita("run", "-m", STORIES, "-f", os.path.join(self.dir, "nope.txt")), "-f")
        self.assertIn("nope.txt", line)
        self.assertInputError(llamita("logits", "-m", STORIES, "-f", self.dir, "-o",
                                      os.path.join(self.dir, "o.f32")), "-f dir")
        # unwritable output
        self.assertInputError(llamita("logits", "-m", STORIES, "-p", "a", "-o",
                                      os.path.join(self.dir, "no", "such", "dir.f32")), "-o")
        self.assertInputError(llamita("synth", "-o", os.path.join(self.dir, "no", "such", "x.gguf"),
                                      "--n-embd", "32", "--n-layer", "1", "--n-head", "2", "--n-head-kv", "1",
                                      "--n-ff", "32", "--n-vocab", "300", "--type", "F32"), "synth -o")
        self.assertInputError(llamita("synth", "-o", os.path.join(self.dir, "t.gguf"), "--type", "Q9_9"),
                              "synth --type")


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(HAVE_SHARED, NO_SHARED)
class TestTokenize(CliCase):
    def check(self, model, prompt_path, tokens_path):
        with open(prompt_path, "rb") as f:
            prompt = f.read()
        want = read_i32(tokens_path)
        # as an argument
        r = llamita("tokenize", "-m", model, prompt.decode())
        self.assertOk(r, "tokenize")
        self.assertEqual(r.stdout, (" ".join(map(str, want)) + "\n").encode())
        # from a file (exact bytes)
        r2 = llamita("tokenize", "-m", model, "-f", prompt_path)
        self.assertOk(r2, "tokenize -f")
        self.assertEqual(r2.stdout, r.stdout)
        return want

    def test_fixture_prompts(self):
        for name in ("bos", "lily", "cafe"):
            with self.subTest(prompt=name):
                base = os.path.join(FIX, "models", "stories260K-" + name)
                want = self.check(STORIES, base + ".prompt.txt", base + ".tokens")
                print("\ntokenize stories260K-%s: %d tokens equal llama.cpp's" % (name, len(want)), file=sys.stderr)
        base = os.path.join(FIX, "vocab32k", "fx-spm32k-Q8_0")
        want = self.check(base + ".gguf", base + ".prompt.txt", base + ".tokens")
        print("tokenize fx-spm32k (32000 vocab): %d tokens equal llama.cpp's" % len(want), file=sys.stderr)

    def test_flags(self):
        r = llamita("tokenize", "-m", STORIES, "--no-bos", LILY)
        self.assertOk(r, "--no-bos")
        self.assertEqual(r.stdout.split(), [str(t).encode() for t in fixture_json("stories260K-lily")["tokens"][1:]])
        # control tokens: text by default, one token with --parse-special
        plain = llamita("tokenize", "-m", STORIES, "--no-bos", "a</s>").stdout.split()
        special = llamita("tokenize", "-m", STORIES, "--no-bos", "--parse-special", "a</s>").stdout.split()
        self.assertEqual(special[-1], b"2")
        self.assertNotIn(b"2", plain)
        self.assertGreater(len(plain), len(special))
        # "--" ends the options: a text that starts with '-'
        r = llamita("tokenize", "-m", STORIES, "--", "-x")
        self.assertOk(r, "-- -x")
        self.assertEqual(r.stdout.split()[0], b"1")


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(HAVE_SHARED, NO_SHARED)
class TestRun(CliCase):
    def test_greedy_matches_llama_cpp(self):
        for name in ("lily", "cafe"):
            with self.subTest(prompt=name):
                j = fixture_json("stories260K-" + name)
                r = llamita("run", "-m", STORIES, "--temp", "0", "-n", j["n_gen"], "-f",
                            os.path.join(FIX, "models", "stories260K-%s.prompt.txt" % name))
                self.assertOk(r, "run " + name)
                self.assertEqual(r.stdout.decode(), j["gen_pieces_concat"])
                err = r.stderr.decode()
                self.assertIn("prompt eval", err)
                self.assertIn("tokens/s", err)
                print("\nrun --temp 0 stories260K-%s: %d tokens, %d bytes equal llama.cpp's text"
                      % (name, j["n_gen"], len(r.stdout)), file=sys.stderr)
        # -p with the literal prompt gives the same
        j = fixture_json("stories260K-lily")
        r = llamita("run", "-m", STORIES, "--temp", "0", "-n", "64", "-p", LILY)
        self.assertOk(r, "run -p")
        self.assertEqual(r.stdout.decode(), j["gen_pieces_concat"])

    def test_long_generation_past_training_context(self):
        # BOS only, 256 tokens: llama2.c's published text; needs -c above the model's 128 (a warning)
        j = fixture_json("stories260K-bos")
        r = llamita("run", "-m", STORIES, "--temp", "0", "-n", "256", "-c", "300", "-p", "")
        self.assertOk(r, "run bos")
        self.assertEqual(r.stdout.decode(), j["gen_pieces_concat"])
        self.assertIn("warning", r.stderr.decode())

    def test_context_limits(self):
        # prompt longer than the context
        r = llamita("run", "-m", STORIES, "-p", LILY, "-c", "8", "--temp", "0")
        line = self.assertInputError(r, "prompt > n_ctx")
        self.assertEqual(line, "error: prompt is 16 tokens, longer than the context (n_ctx = 8)")
        self.assertEqual(r.stdout, b"")
        # -n -1 stops when the context is full: 16 prompt tokens, n_ctx 32 -> 17 tokens
        j = fixture_json("stories260K-lily")
        r = llamita("run", "-m", STORIES, "-p", LILY, "-c", "32", "-n", "-1", "--temp", "0")
        self.assertOk(r, "-n -1")
        out = r.stdout.decode()
        self.assertTrue(j["gen_pieces_concat"].startswith(out) and len(out) > 0, out)
        err = r.stderr.decode()
        self.assertIn("context full", err)
        self.assertRegex(err, r"generation: +17 tokens")
        # -n 0 generates nothing
        r = llamita("run", "-m", STORIES, "-p", LILY, "-n", "0")
        self.assertOk(r, "-n 0")
        self.assertEqual(r.stdout, b"")

    def test_escapes(self):
        # "\n" in -p is a newline unless --no-escape (llama.cpp's default escape processing)
        def n_prompt(r):
            self.assertOk(r, "escapes")
            return int(r.stderr.decode().split("prompt ")[1].split()[0])

        a = llamita("run", "-m", STORIES, "--temp", "0", "-n", "8", "-p", "Lily\\nTom")
        b = llamita("run", "-m", STORIES, "--temp", "0", "-n", "8", "-p", "Lily\nTom")
        c = llamita("run", "-m", STORIES, "--temp", "0", "-n", "8", "--no-escape", "-p", "Lily\\nTom")
        self.assertEqual(a.stdout, b.stdout)
        self.assertEqual(n_prompt(a), n_prompt(b))
        self.assertNotEqual(n_prompt(a), n_prompt(c))

    def test_seed(self):
        def gen(seed, temp="0.8"):
            r = llamita("run", "-m", STORIES, "-p", LILY, "-n", "40", "--temp", temp, "--seed", seed)
            self.assertOk(r, "seed %s" % seed)
            return r.stdout

        a, b = gen(42), gen(42)
        self.assertEqual(a, b)
        others = [gen(s, "1.5") for s in (1, 2, 3)]
        self.assertTrue(any(o != others[0] for o in others[1:]), "different seeds gave the same text")
        # all sampler flags accepted together
        r = llamita("run", "-m", STORIES, "-p", LILY, "-n", "16", "--temp", "0.7", "--top-k", "20", "--top-p",
                    "0.9", "--min-p", "0.1", "--repeat-penalty", "1.1", "--repeat-last-n", "32",
                    "--frequency-penalty", "0.1", "--presence-penalty", "0.1", "--seed", "7", "-t", "1",
                    "-b", "4", "-c", "64", "--ignore-eos")
        self.assertOk(r, "all flags")
        self.assertRegex(r.stderr.decode(), r"generation: +16 tokens")

    def test_closed_stdout_is_not_a_signal(self):
        p = subprocess.Popen([CLI, "run", "-m", STORIES, "-p", LILY, "-n", "100", "-c", "128", "--temp", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()
        _, err = p.communicate(timeout=TIMEOUT)
        self.assertGreaterEqual(p.returncode, 0, "killed by a signal: %r" % err)
        self.assertIn(p.returncode, (0, 1))


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(HAVE_SHARED, NO_SHARED)
class TestLogitsInfo(CliCase):
    def test_logits(self):
        for name in ("lily", "cafe"):
            with self.subTest(prompt=name), tempfile.TemporaryDirectory() as d:
                base = os.path.join(FIX, "models", "stories260K-" + name)
                out = os.path.join(d, "l.f32")
                r = llamita("logits", "-m", STORIES, "-f", base + ".prompt.txt", "-o", out, "-b", "7")
                self.assertOk(r, "logits")
                err = r.stderr.decode()
                n_tok = int(err.split("n_tokens ")[1].split()[0])
                n_voc = int(err.split("n_vocab ")[1].split()[0])
                want = np.fromfile(base + ".logits", dtype="<f4")
                self.assertEqual(n_tok, len(read_i32(base + ".tokens")))
                self.assertEqual(n_voc, 512)
                self.assertEqual(os.path.getsize(out), n_tok * n_voc * 4)
                got = np.fromfile(out, dtype="<f4").reshape(n_tok, n_voc)
                want = want.reshape(n_tok, n_voc)
                diff = float(np.abs(got - want).max())
                print("\nlogits stories260K-%s (n_batch 7): max |diff| vs llama.cpp %.2e" % (name, diff),
                      file=sys.stderr)
                # fixtures/README.md: an exact implementation lands <= 1.8e-2 from llama.cpp here
                self.assertLess(diff, 2e-2)
                self.assertTrue((got.argmax(1) == want.argmax(1)).all())
        # a prompt longer than an explicit -c
        with tempfile.TemporaryDirectory() as d:
            r = llamita("logits", "-m", STORIES, "-p", LILY, "-c", "4", "-o", os.path.join(d, "x"))
            self.assertEqual(self.assertInputError(r, "logits -c"),
                             "error: prompt is 16 tokens, longer than the context (n_ctx = 4)")
            self.assertFalse(os.path.exists(os.path.join(d, "x")))

    def test_info(self):
        r = llamita("info", "-m", STORIES)
        self.assertOk(r, "info")
        out = r.stdout.decode()
        g = gguf_np.GGUFFile(STORIES)
        self.assertIn("tensors: %d\n" % len(g.tensors), out)
        self.assertIn("metadata: %d keys\n" % len(g.kv), out)
        rows = {}
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) >= 4 and parts[0].isdigit() and parts[1] in g.tensors:
                rows[parts[1]] = ln
        self.assertEqual(sorted(rows), sorted(g.tensors))
        for name, t in g.tensors.items():
            shape = "[" + ", ".join(str(x) for x in t.shape) + "]"
            self.assertIn(" %s " % gguf_np.GGML_TYPES[t.type_id][0], rows[name])
            self.assertIn(shape, rows[name])
            self.assertIn(" %d " % (g.data_start + t.offset), rows[name] + " ")
        for key in g.kv:
            self.assertIn(key, out)
        self.assertIn("n_params", out)
        self.assertIn("llama.context_length", out)
        self.assertRegex(out, r"n_layer +5\n")


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestSynth(CliCase):
    SMALL = ["--n-embd", "64", "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2", "--n-ff", "96",
             "--n-vocab", "300", "--n-ctx", "64"]

    def test_synth_info_run(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.gguf")
            r = llamita("synth", "-o", path, "--type", "F32", "--seed", "5", *self.SMALL)
            self.assertOk(r, "synth F32")
            info = llamita("info", "-m", path)
            self.assertOk(info, "info synth")
            out = info.stdout.decode()
            self.assertIn("blk.1.ffn_down.weight", out)
            self.assertRegex(out, r"\soutput\.weight +F32 ")
            self.assertRegex(out, r"n_vocab +300\n")
            self.assertRegex(out, r"n_ctx_train +64\n")
            r = llamita("run", "-m", path, "-p", "hi", "-n", "8", "--temp", "0", "--ignore-eos")
            self.assertOk(r, "run synth")
            self.assertRegex(r.stderr.decode(), r"generation: +8 tokens")
            # same seed, same bytes; another seed, other weights
            path2, path3 = os.path.join(d, "s2.gguf"), os.path.join(d, "s3.gguf")
            self.assertOk(llamita("synth", "-o", path2, "--type", "F32", "--seed", "5", *self.SMALL), "synth 2")
            self.assertOk(llamita("synth", "-o", path3, "--type", "F32", "--seed", "6", *self.SMALL), "synth 3")
            with open(path, "rb") as f1, open(path2, "rb") as f2, open(path3, "rb") as f3:
                a, b, c = f1.read(), f2.read(), f3.read()
            self.assertEqual(a, b)
            self.assertNotEqual(a, c)

    @unittest.skipUnless(HAVE_SHARED, NO_SHARED)
    def test_synth_vocab_from_tied_q8(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "q.gguf")
            r = llamita("synth", "-o", path, "--type", "Q8_0", "--vocab-from", STORIES, "--tied", *self.SMALL)
            self.assertOk(r, "synth Q8_0 tied")
            info = llamita("info", "-m", path)
            self.assertOk(info, "info")
            out = info.stdout.decode()
            self.assertNotRegex(out, r"\soutput\.weight\s")  # tied: no separate output matrix
            self.assertRegex(out, r"\stoken_embd\.weight +Q8_0 ")
            self.assertRegex(out, r"n_vocab +512\n")
            # the copied tokenizer tokenizes like the source model
            want = fixture_json("stories260K-lily")["tokens"]
            r = llamita("tokenize", "-m", path, LILY)
            self.assertOk(r, "tokenize synth")
            self.assertEqual(r.stdout.split(), [str(t).encode() for t in want])
            r = llamita("run", "-m", path, "-p", LILY, "-n", "4", "--seed", "1")
            self.assertOk(r, "run synth q8")


if __name__ == "__main__":
    unittest.main()
