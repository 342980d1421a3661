"""`llamita chat` and `llamita run --json`, driven through pipes (and one pseudo-terminal).

Model: ../shared/fixtures/vocab32k/fx-spm32k-Q8_0.gguf (random weights, the real 32000-token Llama
vocabulary and TinyLlama's zephyr chat template). `chat --show-prompt` prints every rendered prompt
to stderr, which is how these tests see what the conversation holds.

Checks: `run --json` prints one text_completion object (llama-cpp-python's fields) whose text is the
plain `run` text; `--stream` prints chunks that join to it; `--stop` cuts before the stop string;
too long a prompt is a one-line error. `chat`: the zephyr rendering, /exit, /system, /reset, unknown
commands, end of input, --chat-template by name and by file, a template error, dropping old turns
(keeping the system message) when the conversation outgrows a small -c, refusing a message that can
never fit, Ctrl-C at the prompt (exit 0) and during an answer (the answer stops, the program goes
on), and line editing on a terminal.
"""
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
FX = os.path.join(SHARED, "fixtures", "vocab32k", "fx-spm32k-Q8_0.gguf")

HAVE_CLI = os.access(CLI, os.X_OK)
HAVE_FX = os.path.isfile(FX)
NO_CLI = "build %s first (make)" % CLI
NO_FX = "../shared not found (set LLAMITA_SHARED to its path)"

TIMEOUT = 120  # generous: the suite also runs under ASan on a 2-core machine


def llamita(*args, stdin=b""):
    return subprocess.run([CLI] + [str(a) for a in args], input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TIMEOUT)


def chat(lines, *extra):
    """Runs `llamita chat` on the fixture with the given input lines; returns (rc, stdout, stderr)."""
    args = ["chat", "-m", FX, "-t", "1", "--temp", "0", "-s", "1", "--show-prompt"] + list(extra)
    r = llamita(*args, stdin="".join(l + "\n" for l in lines).encode())
    return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8")


def prompts(stderr):
    """The rendered prompts that --show-prompt printed, in order."""
    out, rest = [], stderr
    while "llamita: prompt:\n" in rest:
        rest = rest.split("llamita: prompt:\n", 1)[1]
        body, rest = rest.split("\nllamita: end of prompt\n", 1)
        out.append(body)
    return out


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(HAVE_FX, NO_FX)
class RunJson(unittest.TestCase):
    def run_json(self, *extra):
        r = llamita("run", "-m", FX, "-p", "Once upon a time", "-t", "1", "--temp", "0", "--json", *extra)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r

    def test_object(self):
        r = self.run_json("-n", "12")
        o = json.loads(r.stdout)
        self.assertTrue(o["id"].startswith("cmpl-"))
        self.assertEqual(o["object"], "text_completion")
        self.assertIsInstance(o["created"], int)
        self.assertLess(abs(o["created"] - time.time()), 600)
        self.assertEqual(o["model"], FX)
        self.assertEqual(len(o["choices"]), 1)
        c = o["choices"][0]
        self.assertEqual(set(c), {"text", "index", "logprobs", "finish_reason"})
        self.assertEqual(c["index"], 0)
        self.assertIsNone(c["logprobs"])
        u = o["usage"]
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        self.assertEqual(u["prompt_tokens"], 5)  # BOS + 4 pieces of "Once upon a time"
        self.assertLessEqual(u["completion_tokens"], 12)
        self.assertEqual(c["finish_reason"], "length" if u["completion_tokens"] == 12 else "stop")
        # the same greedy text as the plain `run`
        plain = llamita("run", "-m", FX, "-p", "Once upon a time", "-t", "1", "--temp", "0", "-n", "12")
        self.assertEqual(plain.returncode, 0)
        self.assertEqual(c["text"], plain.stdout.decode("utf-8", "ignore"))

    def test_stream_and_stop(self):
        full = json.loads(self.run_json("-n", "16").stdout)["choices"][0]["text"]
        lines = self.run_json("-n", "16", "--stream").stdout.decode().splitlines()
        chunks = [json.loads(l) for l in lines]
        self.assertTrue(all(ch["object"] == "text_completion" for ch in chunks))
        self.assertTrue(all(ch["choices"][0]["finish_reason"] is None for ch in chunks[:-1]))
        self.assertIsNotNone(chunks[-1]["choices"][0]["finish_reason"])
        self.assertEqual("".join(ch["choices"][0]["text"] for ch in chunks), full)
        self.assertEqual(len({ch["id"] for ch in chunks}), 1)
        # a stop string from the middle of the text: cut before it, streamed or not
        self.assertGreater(len(full), 8, full)
        stop = full[4:7]
        want = full[:full.index(stop)]
        o = json.loads(self.run_json("-n", "16", "--stop", stop, "--stop", "\x01never").stdout)
        self.assertEqual(o["choices"][0]["text"], want)
        self.assertEqual(o["choices"][0]["finish_reason"], "stop")
        lines = self.run_json("-n", "16", "--stop", stop, "--stream").stdout.decode().splitlines()
        chunks = [json.loads(l) for l in lines]
        self.assertEqual("".join(ch["choices"][0]["text"] for ch in chunks), want)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")

    def test_echo_logprobs(self):
        o = json.loads(self.run_json("-n", "4", "--echo", "--logprobs", "2").stdout)
        c = o["choices"][0]
        self.assertTrue(c["text"].startswith("Once upon a time"))
        lp = c["logprobs"]
        n = o["usage"]["prompt_tokens"] - 1 + o["usage"]["completion_tokens"]  # BOS not listed
        for key in ("tokens", "text_offset", "token_logprobs", "top_logprobs"):
            self.assertEqual(len(lp[key]), n, key)
        self.assertIsNone(lp["token_logprobs"][0])
        self.assertTrue(all(v <= 0 for v in lp["token_logprobs"][1:]))
        self.assertTrue(all(1 <= len(d) <= 3 for d in lp["top_logprobs"][1:]))

    def test_prompt_too_long(self):
        r = llamita("run", "-m", FX, "-p", "word " * 40, "-c", "16", "--json")
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        self.assertIn("error:", err)
        self.assertIn("context", err)

    def test_json_options_need_json(self):
        r = llamita("run", "-m", FX, "-p", "x", "--stop", "y")
        self.assertEqual(r.returncode, 2)


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(HAVE_FX, NO_FX)
class ChatPipe(unittest.TestCase):
    def test_zephyr_turns_and_exit(self):
        rc, out, err = chat(["Hi there", "And now?", "/exit", "never sent"], "-n", "6")
        self.assertEqual(rc, 0, err)
        p = prompts(err)
        self.assertEqual(len(p), 2)
        self.assertEqual(p[0], "<|user|>\nHi there</s>\n<|assistant|>\n")
        # the second turn holds the first question and the first answer
        self.assertTrue(p[1].startswith("<|user|>\nHi there</s>\n<|assistant|>\n"), p[1])
        self.assertTrue(p[1].endswith("</s>\n<|user|>\nAnd now?</s>\n<|assistant|>\n"), p[1])
        answer1 = p[1][len("<|user|>\nHi there</s>\n<|assistant|>\n"):-len("</s>\n<|user|>\nAnd now?</s>\n<|assistant|>\n")]
        # stdout: each answer on its own line, the first one as the conversation kept it
        self.assertEqual(out.count("\n"), 2)
        self.assertEqual(out.split("\n")[0], answer1)
        self.assertNotIn("never sent", err)

    def test_system_reset_and_unknown(self):
        rc, out, err = chat(["/system Be terse.", "Q1", "/reset", "Q2", "/system", "Q3", "/bogus"], "-n", "4")
        self.assertEqual(rc, 0, err)
        self.assertIn("system message set", err)
        self.assertIn("conversation reset", err)
        self.assertIn("system message removed", err)
        self.assertIn("unknown command '/bogus'", err)
        p = prompts(err)
        self.assertEqual(len(p), 3)
        self.assertTrue(p[0].startswith("<|system|>\nBe terse.</s>\n<|user|>\nQ1</s>\n"), p[0])
        self.assertTrue(p[1].startswith("<|system|>\nBe terse.</s>\n<|user|>\nQ2</s>\n"), p[1])
        self.assertNotIn("Q1", p[1])
        self.assertNotIn("<|system|>", p[2])
        self.assertIn("Q2", p[2])
        self.assertIn("Q3", p[2])

    def test_end_of_input(self):
        r = llamita("chat", "-m", FX, "-t", "1", stdin=b"")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"")

    def test_template_override(self):
        rc, out, err = chat(["Hi"], "-n", "2", "--chat-template", "chatml", "--system", "S")
        self.assertEqual(rc, 0, err)
        self.assertEqual(prompts(err)[0],
                         "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
            f.write("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}")
        try:
            rc, out, err = chat(["Hi"], "-n", "2", "--chat-template", f.name)
            self.assertEqual(rc, 0, err)
            self.assertEqual(prompts(err)[0], "[user] Hi\n[assistant] ")
        finally:
            os.unlink(f.name)

    def test_template_error(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
            f.write("{{ raise_exception('no chat for you') }}")
        try:
            rc, out, err = chat(["Hi"], "--chat-template", f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(rc, 1)
        self.assertIn("error: chat template: no chat for you", err)

    def test_context_overflow_drops_old_turns(self):
        msgs = ["first message about apples", "second about pears", "third about plums", "fourth about figs",
                "fifth about kiwis"]
        rc, out, err = chat(msgs, "-c", "64", "-n", "8", "--system", "SYS")
        self.assertEqual(rc, 0, err)
        self.assertIn("dropped the", err)
        self.assertIn("the system message stays", err)
        p = prompts(err)
        self.assertEqual(len(p), 5)
        for q in p:
            self.assertTrue(q.startswith("<|system|>\nSYS</s>\n"), q)
        self.assertNotIn("apples", p[-1])
        self.assertIn("kiwis", p[-1])

    def test_message_that_never_fits(self):
        rc, out, err = chat(["word " * 100, "short one"], "-c", "64", "-n", "4")
        self.assertEqual(rc, 0, err)
        self.assertIn("does not fit the context", err)
        p = prompts(err)
        self.assertEqual(len(p), 1)  # the long message was refused, the next one answered
        self.assertEqual(p[0], "<|user|>\nshort one</s>\n<|assistant|>\n")

    def test_sigint_at_prompt_exits(self):
        proc = subprocess.Popen([CLI, "chat", "-m", FX, "-t", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            banner = proc.stderr.readline()  # printed when it is ready for input
            self.assertIn(b"llamita chat:", banner)
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdin.close()
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(rc, 0)

    def test_sigint_stops_the_answer(self):
        # a long answer (no end token, context 4096: ~2 s here) interrupted once the first bytes arrive
        proc = subprocess.Popen([CLI, "chat", "-m", FX, "-t", "1", "-c", "4096", "--ignore-eos", "--temp", "0"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.stdin.write(b"Tell me a long story\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
            self.assertTrue(ready)
            first = os.read(proc.stdout.fileno(), 4096)
            self.assertTrue(first)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(b"/exit\n", timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn(b"answer stopped", err)
        self.assertNotIn(b"context is full", err)


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(HAVE_FX, NO_FX)
@unittest.skipUnless(sys.platform.startswith("linux"), "needs a Linux pseudo-terminal")
class ChatTerminal(unittest.TestCase):
    def test_terminal_session(self):
        import pty
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(CLI, [CLI, "chat", "-m", FX, "-t", "1", "-c", "4096", "--ignore-eos", "--temp", "0"])
            finally:
                os._exit(127)

        pending = [b""]  # output read but not yet matched

        def expect(pattern, timeout=TIMEOUT):
            """Reads until pattern appears; returns the output up to and including it (b"" on timeout)."""
            end = time.time() + timeout
            while pattern not in pending[0] and time.time() < end:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        break
                    if not chunk:
                        break
                    pending[0] += chunk
            i = pending[0].find(pattern)
            if i < 0:
                return b""
            got, pending[0] = pending[0][:i + len(pattern)], pending[0][i + len(pattern):]
            return got

        try:
            self.assertTrue(expect(b"> "))                     # the prompt
            time.sleep(0.5)
            os.write(fd, b"Hello\r")
            self.assertTrue(expect(b"Hello\r\n"))              # the line is echoed, then the answer streams
            # Ctrl-C as soon as the answer has started: it runs until the context is full (--ignore-eos,
            # ~4000 tokens: about 2 s here), so the key lands while it streams even on a much faster machine
            end = time.time() + TIMEOUT
            while not pending[0] and time.time() < end:
                expect(b"\x00", 0.05)
            self.assertTrue(pending[0])
            os.write(fd, b"\x03")                              # Ctrl-C: stops the answer
            self.assertTrue(expect(b"answer stopped"))
            self.assertTrue(expect(b"> "))                     # back at the prompt
            time.sleep(0.5)  # let the line editor set the terminal up: keys typed before are dropped
            os.write(fd, b"\x04")                              # Ctrl-D: quits
            end = time.time() + TIMEOUT
            status = None
            while time.time() < end:
                p, st = os.waitpid(pid, os.WNOHANG)
                if p:
                    status = os.waitstatus_to_exitcode(st)
                    pid = 0
                    break
                expect(b"\x00", 0.05)
            self.assertEqual(status, 0)
        finally:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            os.close(fd)


if __name__ == "__main__":
    unittest.main()
