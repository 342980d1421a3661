"""`llamita bench` (tools/cmd_bench.c), driven through subprocess on a tiny synthetic model.

Checks: the Markdown table has one row per test (pp8, tg4 for each thread count) with a positive
"mean ± stddev" t/s; the JSON output is an array of objects with the documented fields (model, type,
threads, test, tokens_per_second, stddev, n_prompt, n_gen, samples_ts) and positive speeds; -p 0 /
-n 0 skip a test; bad usage exits 2, bad input exits 1, never a signal. Speeds are not asserted
beyond being positive (timings are benchmarks, never tests).
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
HAVE_CLI = os.access(CLI, os.X_OK)
TIMEOUT = 120


def llamita(*args):
    return subprocess.run([CLI] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT)


@unittest.skipUnless(HAVE_CLI, "build %s first (make)" % CLI)
class BenchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="llamita-bench-test-")
        cls.model = os.path.join(cls.dir, "tiny.gguf")
        r = llamita("synth", "-o", cls.model, "--type", "Q8_0", "--n-embd", "64", "--n-layer", "2",
                    "--n-head", "4", "--n-head-kv", "2", "--n-ff", "96", "--n-vocab", "300", "--n-ctx", "64")
        if r.returncode != 0:
            raise RuntimeError("synth failed: %r" % r.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def run_ok(self, *args):
        r = llamita("bench", "-m", self.model, *args)
        self.assertEqual(r.returncode, 0, "bench %s: stderr %r" % (args, r.stderr[-800:]))
        return r.stdout.decode()

    def test_markdown(self):
        out = self.run_ok("-p", "8", "-n", "4", "-r", "2", "-t", "1,2")
        rows = [l for l in out.splitlines() if l.startswith("|")]
        self.assertIn("t/s", rows[0])
        self.assertTrue(re.match(r"^\|[ -:|]+\|$", rows[1]), rows[1])
        body = rows[2:]
        self.assertEqual(len(body), 4, out)
        seen = []
        for row in body:
            cells = [c.strip() for c in row.strip("|").split("|")]
            self.assertEqual(len(cells), 7, row)
            model, size, params, typ, threads, test, ts = cells
            self.assertIn("Q8_0", model)
            self.assertEqual(typ, "Q8_0")
            m = re.match(r"^([0-9.]+) ± ([0-9.]+)$", ts)
            self.assertTrue(m, ts)
            self.assertGreater(float(m.group(1)), 0.0)
            self.assertGreaterEqual(float(m.group(2)), 0.0)
            seen.append((int(threads), test))
        print("  md rows:", seen)
        self.assertEqual(seen, [(1, "pp8"), (1, "tg4"), (2, "pp8"), (2, "tg4")])

    def test_json(self):
        out = self.run_ok("-p", "8", "-n", "4", "-r", "2", "-t", "2", "-o", "json")
        data = json.loads(out)
        self.assertIsInstance(data, list)
        self.assertEqual([d["test"] for d in data], ["pp8", "tg4"])
        for d in data:
            for key in ("model", "type", "threads", "test", "tokens_per_second", "stddev", "n_prompt",
                        "n_gen", "samples_ts", "cpu_level", "size", "params"):
                self.assertIn(key, d)
            self.assertEqual(d["type"], "Q8_0")
            self.assertEqual(d["threads"], 2)
            self.assertGreater(d["tokens_per_second"], 0.0)
            self.assertGreaterEqual(d["stddev"], 0.0)
            self.assertEqual(len(d["samples_ts"]), 2)
            self.assertTrue(all(s > 0 for s in d["samples_ts"]))
            mean = sum(d["samples_ts"]) / 2
            self.assertAlmostEqual(d["tokens_per_second"], mean, delta=1e-3 * mean + 1e-3)
        self.assertEqual((data[0]["n_prompt"], data[0]["n_gen"]), (8, 0))
        self.assertEqual((data[1]["n_prompt"], data[1]["n_gen"]), (0, 4))
        print("  json:", [(d["test"], round(d["tokens_per_second"], 1), d["cpu_level"]) for d in data])

    def test_skip_tests(self):
        data = json.loads(self.run_ok("-p", "0", "-n", "4", "-r", "1", "-o", "json"))
        self.assertEqual([d["test"] for d in data], ["tg4"])
        data = json.loads(self.run_ok("-p", "8", "-n", "0", "-r", "1", "-o", "json"))
        self.assertEqual([d["test"] for d in data], ["pp8"])

    def test_errors(self):
        usage = [("-o", "xml"), ("-p", "abc"), ("--frobnicate",), ("-t", "1,,2")]
        for args in usage:
            r = llamita("bench", "-m", self.model, *args)
            self.assertEqual(r.returncode, 2, "%s: %r" % (args, r.stderr))
            self.assertIn(b"error:", r.stderr)
        r = llamita("bench")
        self.assertEqual(r.returncode, 2)
        for args in [("-t", "0"), ("-r", "0")]:
            r = llamita("bench", "-m", self.model, *args)
            self.assertEqual(r.returncode, 1, "%s: %r" % (args, r.stderr))
        r = llamita("bench", "-m", os.path.join(self.dir, "missing.gguf"))
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"missing.gguf", r.stderr)


if __name__ == "__main__":
    unittest.main()
