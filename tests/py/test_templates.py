"""`llamita template`, driven through subprocess.

Checks: a sample of ../shared/templates/chat-templates.jsonl (one line of every third of the 78 real
templates, rotating through the conversations, and one line per distinct error message; the C test
test_chat covers every line through the library) rendered through the CLI: stdout must equal jinja2's text byte for byte, with no
newline added; a template that raises exits 1 with exactly `error: <its message>`. Also: built-in
templates by name, a template file, `-m MODEL` taking the GGUF's template and BOS/EOS texts,
--bos-token/--eos-token, --vars (extra variables such as tools), messages on stdin, --list, and the
exit statuses of usage errors (2) and bad input (1).
"""
import json
import os
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
JSONL = os.path.join(SHARED, "templates", "chat-templates.jsonl")
MODEL = os.path.join(SHARED, "fixtures", "vocab32k", "fx-spm32k-Q4_K_M.gguf")

HAVE_CLI = os.access(CLI, os.X_OK)
HAVE_SHARED = os.path.isfile(JSONL)
NO_CLI = "build %s first (make)" % CLI
NO_SHARED = "../shared not found (set LLAMITA_SHARED to its path)"
TIMEOUT = 120
FIXTURE_EPOCH = "1740052800"  # 2025-02-20 12:00:00 UTC: the date the fixtures were rendered with

MSGS = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]


def llamita(*args, input_bytes=None):
    env = dict(os.environ, SOURCE_DATE_EPOCH=FIXTURE_EPOCH)
    p = subprocess.run([CLI, "template", *args], input=input_bytes, capture_output=True, timeout=TIMEOUT, env=env)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def load_lines():
    with open(JSONL, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TemplateCLI(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, data):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    def run_line(self, d, idx):
        """Renders fixture line d through the CLI; returns None when it matches, else a description."""
        tpath = self.write("t%d.jinja" % idx, d["template"])
        mpath = self.write("m%d.json" % idx, json.dumps(d["messages"], ensure_ascii=False))
        args = ["--chat-template", tpath, "--messages", mpath, "--bos-token", d["bos_token"], "--eos-token", d["eos_token"]]
        if d["add_generation_prompt"]:
            args.append("--add-generation-prompt")
        rc, out, err = llamita(*args)
        if "expected" in d:
            if rc != 0:
                return "exit %d: %s" % (rc, err)
            if out != d["expected"].encode("utf-8"):
                return "text differs:\n  jinja2: %r\n  ours:   %r" % (d["expected"][:300], out[:300])
        else:
            want = "error: %s\n" % d["error"]
            if rc != 1 or out or err != want:
                return "expected exit 1 with %r, got exit %d, stdout %r, stderr %r" % (want, rc, out[:100], err)
        return None

    @unittest.skipUnless(HAVE_SHARED, NO_SHARED)
    def test_fixture_lines(self):
        lines = load_lines()
        by_name = {}
        for d in lines:
            by_name.setdefault(d["name"], []).append(d)
        chosen = []
        for i, (name, ds) in enumerate(by_name.items()):  # every third template, rotating through the cases
            if i % 3 == 0:
                chosen.append(ds[(i * 5) % len(ds)])
        seen_errors = set()
        for d in lines:  # one line per distinct error message
            if "error" in d and d["error"] not in seen_errors:
                seen_errors.add(d["error"])
                chosen.append(d)
        failures = []
        for i, d in enumerate(chosen):
            why = self.run_line(d, i)
            if why:
                failures.append("%s / %s / agp=%s: %s" % (d["name"], d["case"], d["add_generation_prompt"], why))
        print("llamita template: %d/%d sampled fixture lines match jinja2 (%d of %d templates, %d error messages)"
              % (len(chosen) - len(failures), len(chosen), len(chosen) - len(seen_errors), len(by_name), len(seen_errors)))
        self.assertEqual(failures, [])

    def test_builtin_by_name(self):
        mpath = self.write("m.json", json.dumps(MSGS))
        rc, out, err = llamita("--chat-template", "chatml", "--messages", mpath, "--add-generation-prompt")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                              b"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
        # no newline is added, and nothing else is printed
        rc, out, err = llamita("--chat-template", "llama3", "--messages", mpath, "--bos-token", "<|begin_of_text|>")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant."
                              b"<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>")
        self.assertEqual(err, "")
        rc, out, _ = llamita("--list")
        self.assertEqual(rc, 0)
        self.assertEqual(out.decode().split(), ["zephyr", "chatml", "llama2", "llama3", "mistral", "gemma", "phi3"])

    def test_stdin_and_vars(self):
        tpath = self.write("t.jinja", "{% for t in tools %}{{ t | tojson }}{% endfor %}|{{ messages | length }}"
                                      "|{{ enable_thinking }}|{{ bos_token }}{{ eos_token }}")
        vpath = self.write("v.json", json.dumps({"tools": [{"name": "f", "args": [1, 2.5]}], "enable_thinking": False,
                                                 "bos_token": "ignored"}))
        rc, out, err = llamita("--chat-template", tpath, "--messages", "-", "--vars", vpath, "--eos-token", "E",
                               input_bytes=json.dumps(MSGS).encode())
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b'{"name": "f", "args": [1, 2.5]}|2|False|E')

    @unittest.skipUnless(HAVE_SHARED, NO_SHARED)
    def test_model(self):
        if not os.path.isfile(MODEL):
            self.skipTest("%s not found" % MODEL)
        mpath = self.write("m.json", json.dumps(MSGS))
        # fx-spm32k carries TinyLlama's zephyr template; BOS/EOS are the model's <s> and </s>
        rc, out, err = llamita("-m", MODEL, "--messages", mpath, "--add-generation-prompt")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nWhat is the capital of France?</s>\n"
                              b"<|assistant|>\n")
        # --chat-template overrides the model's template, the model still gives the tokens
        rc, out, err = llamita("-m", MODEL, "--chat-template", "mistral", "--messages", mpath)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"<s> [INST] You are a helpful assistant.\n\nWhat is the capital of France? [/INST]")
        rc, out, err = llamita("-m", os.path.join(self.tmp.name, "missing.gguf"), "--messages", mpath)
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("error: "), err)

    def test_errors(self):
        mpath = self.write("m.json", json.dumps(MSGS))
        # usage errors: exit 2 with a usage hint
        for args in (["--messages", mpath], ["--chat-template", "chatml"], ["--chat-template", "chatml", "--bogus"]):
            rc, out, err = llamita(*args)
            self.assertEqual(rc, 2, args)
            self.assertIn("usage: llamita template", err)
        # bad input: exit 1 with one error line
        bad = self.write("bad.json", '[{"role": "user", "content": ')
        syntax = self.write("syntax.jinja", "{% for m in messages %}\n{{ m.content + }}\n{% endfor %}")
        raising = self.write("raise.jinja", "{{ raise_exception('Only user and assistant roles are supported!') }}")
        cases = [
            (["--chat-template", "nosuch", "--messages", mpath], "error: --chat-template 'nosuch' is neither a built-in"),
            (["--chat-template", "chatml", "--messages", bad], "error: --messages '%s': invalid JSON at byte" % bad),
            (["--chat-template", "chatml", "--messages", self.write("o.json", "{}")], "error: --messages"),
            (["--chat-template", syntax, "--messages", mpath], "error: template syntax error at 2:16: expected an expression"),
            (["--chat-template", raising, "--messages", mpath], "error: Only user and assistant roles are supported!\n"),
        ]
        for args, want in cases:
            rc, out, err = llamita(*args)
            self.assertEqual(rc, 1, (args, err))
            self.assertEqual(out, b"")
            self.assertTrue(err.startswith(want), (want, err))
            self.assertEqual(err.count("\n"), 1, err)


if __name__ == "__main__":
    unittest.main()
