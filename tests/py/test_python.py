"""The Python binding (python/llamita): llama-cpp-python's `Llama` over libllamita.so via ctypes.

Checks: the seed's snippets verbatim except for the import (Llama(model_path, n_ctx=512, n_threads=8,
n_gpu_layers=40); llm(prompt, max_tokens=512, stop=["</s>"]); output['choices'][0]['text']) on
stories260K and on fx-spm32k-Q8_0 (TinyLlama's vocabulary and chat template); the result dicts'
shapes (text_completion, chat.completion and their stream chunks); greedy text equal to llama.cpp's
(stories260K-lily fixture); stop strings, echo, logprobs, seeds; streaming equals the non-streamed
text, an early break stops generation, close() during a stream; tokenize equal to llama.cpp's ids
(fixture .tokens files) and to `llamita tokenize`, detokenize as llama-cpp-python; the warnings
(n_gpu_layers, unknown keywords: exactly one each, and none from the C side); errors raise
ValueError / RuntimeError with the C message, never crash; the ctypes struct layouts against the C
defaults; from_pretrained against the fake hub (tests/py/hub_server.py).

The library is $LLAMITA_LIB, else <repo>/$LLAMITA_BUILD/libllamita.so. When that library was built
with AddressSanitizer (make test-asan), this module re-runs itself once with the ASan runtime in
LD_PRELOAD (a sanitized shared library cannot be loaded into an uninstrumented python otherwise).
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
LIB = os.environ.get("LLAMITA_LIB") or os.path.join(BUILD, "libllamita.so")
CLI = os.path.join(BUILD, "llamita")
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
FIX = os.path.join(SHARED, "fixtures")
STORIES = os.path.join(FIX, "models", "stories260K.gguf")
SPM32K = os.path.join(FIX, "vocab32k", "fx-spm32k-Q8_0.gguf")
HUB_SERVER = os.path.join(REPO, "tests", "py", "hub_server.py")
LILY = "Once upon a time, there was a little girl named Lily."
SEED_PROMPT = "<|user|>\nHow many helicopters can a human eat in one sitting?</s>\n<|assistant|>"

HAVE_LIB = os.path.isfile(LIB)
HAVE_SHARED = os.path.isfile(STORIES) and os.path.isfile(SPM32K)
NO_LIB = "build %s first (make)" % LIB
NO_SHARED = "../shared not found (set LLAMITA_SHARED to its path)"


def _run_text(args):
    try:
        return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _asan_runtime(lib):
    """The ASan runtime `lib` needs, or None: gcc links libasan.so as a NEEDED entry; clang leaves
    the __asan_* symbols undefined, to be resolved by its libclang_rt.asan-<arch>.so."""
    for line in _run_text(["ldd", lib]).splitlines():
        if "libasan" in line and "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
            return path if os.path.isfile(path) else None
    if "__asan_init" in _run_text(["nm", "-D", "--undefined-only", lib]):
        for cc in (os.environ.get("CC"), "clang"):
            if cc:
                path = _run_text([cc, "-print-file-name=libclang_rt.asan-%s.so" % os.uname().machine]).strip()
                if os.path.isabs(path) and os.path.isfile(path):
                    return path
    return None


def _asan_loaded():
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
        return "libasan" in maps or "libclang_rt.asan" in maps
    except OSError:
        return False


if HAVE_LIB and not _asan_loaded() and not os.environ.get("LLAMITA_PY_ASAN_REEXEC"):
    _rt = _asan_runtime(LIB)
    if _rt:
        env = dict(os.environ, LLAMITA_PY_ASAN_REEXEC="1", LD_PRELOAD=_rt, LLAMITA_LIB=LIB)
        # CPython's own allocations are not leaks worth reporting; everything else stays fatal
        env["ASAN_OPTIONS"] = "detect_leaks=0" + (":" + env["ASAN_OPTIONS"] if env.get("ASAN_OPTIONS") else "")
        argv = ([sys.executable, "-m", "unittest"] + sys.argv[1:]
                if sys.argv[0].startswith("python") or sys.argv[0].endswith("__main__.py")
                else [sys.executable] + sys.argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)

os.environ["LLAMITA_LIB"] = LIB
sys.path.insert(0, os.path.join(REPO, "python"))
import llamita  # noqa: E402
from llamita import Llama, LlamitaWarning  # noqa: E402
from llamita import _lib  # noqa: E402

if HAVE_LIB:
    try:
        _lib.load()
    except OSError as e:  # e.g. a library built from a half-written tree
        HAVE_LIB = False
        NO_LIB = "cannot load %s: %s" % (LIB, e)


def has_symbol(name):
    return HAVE_LIB and _lib.has(name)


HAVE_COMPLETION = HAVE_LIB and has_symbol("llamita_completion")
HAVE_CHAT = HAVE_LIB and has_symbol("llamita_chat_completion") and has_symbol("llamita_chat_apply_template")
NO_COMPLETION = "this libllamita has no llamita_completion yet (src/generate.c)"
NO_CHAT = "this libllamita has no chat templates yet (src/chat.c)"


def fixture_json(path):
    with open(path) as f:
        return json.load(f)


def read_i32(path):
    with open(path, "rb") as f:
        data = f.read()
    return [int.from_bytes(data[i:i + 4], "little", signed=True) for i in range(0, len(data), 4)]


@contextlib.contextmanager
def captured_fd2():
    """Captures what is written to file descriptor 2 (C's stderr) inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        box = {}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode("utf-8", errors="replace")


_NOTES = []


def note(*args):
    """Records a line of measured output, printed after all tests (to stderr) so that it does not
    split unittest's "test ... ok" lines, which tests/run.sh counts."""
    _NOTES.append(" ".join(str(a) for a in args))


def tearDownModule():
    if _NOTES:
        sys.stderr.write("\n" + "\n".join("  " + n.replace("\n", "\n    ") for n in _NOTES) + "\n")


def quiet(path, **kw):
    """A Llama with warnings and load messages silenced (most tests), on one thread: the suite
    shares 2 cores with ASan and other jobs, where thread pools only add waiting."""
    kw.setdefault("verbose", False)
    kw.setdefault("n_threads", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Llama(model_path=path, **kw)


def worker_threads():
    return [t for t in threading.enumerate() if t.name == "llamita-completion"]


# -------------------------------------------------------------------------------------------------

@unittest.skipUnless(HAVE_LIB, NO_LIB)
class StructLayout(unittest.TestCase):
    """The ctypes mirrors of the C structs read back the documented defaults (a changed header
    without a matching _lib.py shows up here as garbage values)."""

    def test_model_and_context_defaults(self):
        L = _lib.load()
        mp = L.llamita_model_default_params()
        self.assertEqual((mp.n_gpu_layers, mp.vocab_only, mp.verbose), (0, False, False))
        cp = L.llamita_context_default_params()
        self.assertEqual((cp.n_ctx, cp.n_batch, cp.n_threads, cp.n_seq_max), (0, 512, 0, 1))

    def check_sampling(self, s):
        self.assertAlmostEqual(s.temp, 0.8, places=6)
        self.assertEqual(s.top_k, 40)
        self.assertAlmostEqual(s.top_p, 0.95, places=6)
        self.assertAlmostEqual(s.min_p, 0.05, places=6)
        self.assertEqual((s.repeat_penalty, s.frequency_penalty, s.presence_penalty), (1.0, 0.0, 0.0))
        self.assertEqual(s.penalty_last_n, 64)
        self.assertEqual(s.seed, _lib.C_DEFAULT_SEED)

    def test_sampler_defaults(self):
        self.check_sampling(_lib.load().llamita_sampler_default_params())

    @unittest.skipUnless(HAVE_COMPLETION, NO_COMPLETION)
    def test_completion_defaults(self):
        p = _lib.func("llamita_completion_default_params")()
        self.assertEqual(p.max_tokens, 16)
        self.assertFalse(p.stop)  # NULL
        self.assertEqual(p.n_stop, 0)
        self.assertFalse(p.echo)
        self.assertLess(p.logprobs, 0)
        self.assertFalse(p.ignore_eos)
        self.check_sampling(p.sampling)
        self.assertIsNone(p.model_name)
        self.assertIsNone(p.chat_template)

    def test_library_found_and_versioned(self):
        self.assertEqual(os.path.realpath(_lib.path()), os.path.realpath(LIB))
        self.assertTrue(llamita.library_version())


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
@unittest.skipUnless(HAVE_COMPLETION, NO_COMPLETION)
class SeedSnippets(unittest.TestCase):
    """The seed's code with only the import changed."""

    def run_snippet(self, model_path):
        out = io.StringIO()
        with warnings.catch_warnings(record=True) as w, captured_fd2() as err, \
                contextlib.redirect_stdout(out):
            warnings.simplefilter("always")
            # --- the seed's snippet (import changed to llamita) ---
            llm = Llama(model_path=model_path, n_ctx=512, n_threads=8, n_gpu_layers=40)
            output = llm(SEED_PROMPT, max_tokens=512, stop=["</s>"])
            print(output['choices'][0]['text'])
            # ---
        self.assertEqual(out.getvalue(), output['choices'][0]['text'] + "\n")
        self.assertIn("llamita: loaded", err["text"])  # verbose=True is the default, as in llama-cpp-python
        note("seed snippet on %s (%s, %.0f tokens):\n%s" % (os.path.basename(model_path),
                                                        output["choices"][0]["finish_reason"],
                                                        output["usage"]["completion_tokens"],
                                                        out.getvalue().strip()[:600]))
        gpu = [x for x in w if "n_gpu_layers" in str(x.message)]
        self.assertEqual(len(gpu), 1, [str(x.message) for x in w])
        self.assertTrue(issubclass(gpu[0].category, LlamitaWarning))
        self.check_text_completion(llm, output, SEED_PROMPT, model_path)
        self.assertNotIn("</s>", output["choices"][0]["text"])
        u = output["usage"]
        self.assertLessEqual(u["completion_tokens"], 512)
        self.assertLessEqual(u["total_tokens"], llm.n_ctx())
        if output["choices"][0]["finish_reason"] == "length":
            # ran until max_tokens or the context filled
            self.assertIn(u["completion_tokens"], (512, llm.n_ctx() - u["prompt_tokens"]))
        llm.close()

    def check_text_completion(self, llm, out, prompt, model_path):
        self.assertEqual(set(out), {"id", "object", "created", "model", "choices", "usage"})
        self.assertTrue(out["id"].startswith("cmpl-"), out["id"])
        self.assertEqual(out["object"], "text_completion")
        self.assertIsInstance(out["created"], int)
        self.assertLess(abs(out["created"] - time.time()), 600)
        self.assertEqual(out["model"], model_path)
        self.assertEqual(len(out["choices"]), 1)
        c = out["choices"][0]
        self.assertEqual(set(c), {"text", "index", "logprobs", "finish_reason"})
        self.assertIsInstance(c["text"], str)
        self.assertEqual(c["index"], 0)
        self.assertIsNone(c["logprobs"])
        self.assertIn(c["finish_reason"], ("stop", "length"))
        u = out["usage"]
        # the prompt is tokenized as llama-cpp-python does: BOS, control tokens such as </s> parsed
        self.assertEqual(u["prompt_tokens"], len(llm.tokenize(prompt.encode(), add_bos=True, special=True)))
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        self.assertGreater(u["completion_tokens"], 0)

    def test_seed_snippet_stories260k(self):
        self.run_snippet(STORIES)

    def test_seed_snippet_tinyllama_vocab(self):
        self.run_snippet(SPM32K)

    def test_seed_step5_questions(self):
        """Step 5 of the seed: the same call for questions of reasoning and arithmetic."""
        llm = quiet(STORIES, n_ctx=512, n_threads=8, n_gpu_layers=40)
        questions = ["If Tom is taller than Ann and Ann is taller than Bob, who is the shortest?",
                     "What is 17 + 25?", "A train leaves at 3 pm and travels for 2 hours. When does it arrive?"]
        for q in questions:
            prompt = "<|user|>\n%s</s>\n<|assistant|>" % q
            output = llm(prompt, max_tokens=64, stop=["</s>"])
            note(q, "->", repr(output['choices'][0]['text'][:80]))
            self.check_text_completion(llm, output, prompt, STORIES)
        llm.close()


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
@unittest.skipUnless(HAVE_COMPLETION, NO_COMPLETION)
class Completion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.llm = quiet(STORIES, n_ctx=256)
        fx = fixture_json(os.path.join(FIX, "models", "stories260K-lily.json"))
        cls.greedy = fx["gen_pieces_concat"]  # llama.cpp's 64 greedy tokens after LILY, as text
        assert 2 not in fx["gen"], "the fixture continuation contains EOS"

    @classmethod
    def tearDownClass(cls):
        cls.llm.close()

    def complete(self, **kw):
        kw.setdefault("temperature", 0)
        kw.setdefault("max_tokens", 64)
        return self.llm(LILY, **kw)

    def stream_text(self, **kw):
        kw.setdefault("temperature", 0)
        kw.setdefault("max_tokens", 64)
        chunks = list(self.llm(LILY, stream=True, **kw))
        return chunks, "".join(c["choices"][0]["text"] for c in chunks)

    def test_greedy_equals_llama_cpp(self):
        out = self.complete()
        text = out["choices"][0]["text"]
        note("greedy:", repr(text[:60]), "... matches llama.cpp:", text == self.greedy)
        self.assertEqual(text, self.greedy)
        self.assertEqual(out["choices"][0]["finish_reason"], "length")
        self.assertEqual(out["usage"], {"prompt_tokens": 16, "completion_tokens": 64, "total_tokens": 80})

    def test_stop_string_spanning_tokens(self):
        stop = "the park"
        self.assertIn(stop, self.greedy)
        want = self.greedy[:self.greedy.index(stop)]
        for stops in ([stop], stop, ["zzz-never", stop]):
            out = self.complete(stop=stops)
            self.assertEqual(out["choices"][0]["text"], want)
            self.assertEqual(out["choices"][0]["finish_reason"], "stop")
        chunks, text = self.stream_text(stop=[stop])
        self.assertEqual(text, want)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")

    def test_streaming_equals_non_streaming(self):
        chunks, text = self.stream_text()
        self.assertEqual(text, self.greedy)
        self.assertGreater(len(chunks), 10)
        ids = {c["id"] for c in chunks}
        self.assertEqual(len(ids), 1)
        self.assertTrue(ids.pop().startswith("cmpl-"))
        for c in chunks:
            self.assertEqual(c["object"], "text_completion")
            self.assertEqual(set(c["choices"][0]), {"text", "index", "logprobs", "finish_reason"})
        self.assertTrue(all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1]))
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(chunks[-1]["choices"][0]["text"], "")
        # sampled too: the same seed gives the same text, streamed or not
        kw = dict(temperature=0.9, seed=1234, max_tokens=40)
        _, t1 = self.stream_text(**kw)
        self.assertEqual(t1, self.complete(**kw)["choices"][0]["text"])
        self.assertEqual(worker_threads(), [])

    def test_echo(self):
        out = self.complete(echo=True, max_tokens=8)
        self.assertTrue(out["choices"][0]["text"].startswith(LILY + self.greedy[:10]))

    def test_logprobs_shape(self):
        out = self.complete(logprobs=3, max_tokens=8)
        lp = out["choices"][0]["logprobs"]
        self.assertEqual(set(lp), {"tokens", "text_offset", "token_logprobs", "top_logprobs"})
        n = out["usage"]["completion_tokens"]
        self.assertEqual(n, 8)
        for k in lp:
            self.assertEqual(len(lp[k]), n, k)
        self.assertEqual("".join(lp["tokens"]), out["choices"][0]["text"])
        for chosen, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
            self.assertLessEqual(chosen, 0.0)
            self.assertLessEqual(len(top), 4)
            # greedy: the chosen token is the most likely one
            self.assertAlmostEqual(chosen, max(top.values()), places=5)

    def test_seeds(self):
        kw = dict(temperature=1.0, max_tokens=32)
        a = self.complete(seed=7, **kw)["choices"][0]["text"]
        self.assertEqual(a, self.complete(seed=7, **kw)["choices"][0]["text"])
        others = {self.complete(seed=s, **kw)["choices"][0]["text"] for s in (8, 9, 10)}
        self.assertTrue(others - {a}, "four seeds, one text")
        # a Llama made with a seed repeats itself when the call passes none
        llm = quiet(STORIES, n_ctx=128, seed=99)
        t = [llm(LILY, temperature=1.0, max_tokens=24)["choices"][0]["text"] for _ in range(2)]
        self.assertEqual(t[0], t[1])
        llm.close()

    def test_max_tokens_none_fills_context(self):
        llm = quiet(STORIES, n_ctx=48)
        out = llm(LILY, max_tokens=None, temperature=0)
        self.assertEqual(out["usage"]["total_tokens"], 48)
        self.assertEqual(out["choices"][0]["finish_reason"], "length")
        self.assertTrue(self.greedy.startswith(out["choices"][0]["text"]))
        llm.close()

    def test_threads_share_one_llama(self):
        """Calls from several threads are serialized on the context: each gets the greedy text."""
        results, errors = [], []

        def work():
            try:
                for _ in range(3):
                    results.append(self.complete(max_tokens=16)["choices"][0]["text"])
            except BaseException as e:  # noqa: B902
                errors.append(e)
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 9)
        want = self.complete(max_tokens=16)["choices"][0]["text"]
        self.assertTrue(self.greedy.startswith(want))
        self.assertEqual(set(results), {want})

    def test_model_name(self):
        self.assertEqual(self.complete(max_tokens=2, model="my-model")["model"], "my-model")

    def test_unused_sampling_arguments_warn_once(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            self.complete(max_tokens=2, typical_p=1.0, tfs_z=1.0, mirostat_mode=0)  # neutral: silent
            self.assertEqual(w, [])
            self.complete(max_tokens=2, mirostat_mode=2, grammar="root ::= x")
        self.assertEqual(len(w), 1, [str(x.message) for x in w])
        self.assertIn("mirostat_mode", str(w[0].message))
        self.assertIn("grammar", str(w[0].message))


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
@unittest.skipUnless(HAVE_COMPLETION, NO_COMPLETION)
class Streaming(unittest.TestCase):
    """Iterator life cycle on the random 32k-vocab model (it practically never emits EOS)."""

    def setUp(self):
        self.llm = quiet(SPM32K, n_ctx=256)

    def tearDown(self):
        self.llm.close()

    def test_early_break_stops_generation(self):
        taken = 0
        for chunk in self.llm("Hello", max_tokens=200, temperature=0.8, seed=3, stream=True):
            taken += 1
            if taken == 3:
                break
        last = self.llm._last_result
        n = last["usage"]["completion_tokens"]
        note("broke after %d chunks; the C loop generated %d of 200 tokens" % (taken, n))
        # one chunk in the queue, one waiting to be queued, plus byte tokens that made no chunk
        self.assertLessEqual(n, taken + 10)
        self.assertEqual(last["choices"][0]["finish_reason"], "stop")
        self.assertEqual(worker_threads(), [])
        # the context is usable afterwards
        out = self.llm("Hello", max_tokens=5, temperature=0)
        self.assertEqual(out["usage"]["completion_tokens"], 5)

    def test_new_call_cancels_unfinished_stream(self):
        it = self.llm("Hello", max_tokens=100, temperature=0.8, stream=True)
        next(it)
        out = self.llm("Hello", max_tokens=4, temperature=0)  # must not deadlock
        self.assertEqual(out["usage"]["completion_tokens"], 4)
        self.assertEqual(list(it), [])  # the first stream simply ends
        self.assertEqual(worker_threads(), [])

    def test_close_during_stream(self):
        it = self.llm("Hello", max_tokens=100, temperature=0.8, stream=True)
        next(it)
        self.llm.close()
        self.assertEqual(list(it), [])
        self.assertEqual(worker_threads(), [])
        with self.assertRaises(RuntimeError):
            self.llm("Hello", max_tokens=2)

    def test_ctrl_c_stops_generation(self):
        """SIGINT during a long completion: KeyboardInterrupt comes out promptly and the C loop
        stopped (it did not run to the end of the context); the Llama stays usable."""
        import signal
        llm = quiet(SPM32K, n_ctx=2048)
        for stream in (False, True):
            timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
            t0 = time.time()
            timer.start()
            with self.assertRaises(KeyboardInterrupt):
                if stream:
                    for _ in llm("Hello", max_tokens=0, temperature=0.8, seed=1, stream=True):
                        pass
                else:
                    llm("Hello", max_tokens=0, temperature=0.8, seed=1)
            timer.join()
            n = llm._last_result["usage"]["completion_tokens"]
            note("stream=%s: interrupted after %.2f s, %d of %d tokens generated"
                  % (stream, time.time() - t0, n, 2048 - 2))
            self.assertLess(n, 2046)
            self.assertEqual(llm._last_result["choices"][0]["finish_reason"], "stop")
            self.assertEqual(worker_threads(), [])
        self.assertEqual(llm("Hello", max_tokens=3, temperature=0)["usage"]["completion_tokens"], 3)
        llm.close()

    def test_unstarted_stream_is_harmless(self):
        it = self.llm("Hello", max_tokens=4, stream=True)
        del it
        self.assertEqual(self.llm("Hello", max_tokens=3, temperature=0)["usage"]["completion_tokens"], 3)


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
@unittest.skipUnless(HAVE_COMPLETION and HAVE_CHAT, NO_CHAT)
class ChatCompletion(unittest.TestCase):
    MESSAGES = [{"role": "system", "content": "You are a friendly chatbot."},
                {"role": "user", "content": "How many helicopters can a human eat in one sitting?"}]

    @classmethod
    def setUpClass(cls):
        cls.llm = quiet(SPM32K, n_ctx=512)

    @classmethod
    def tearDownClass(cls):
        cls.llm.close()

    def test_template_is_tinyllamas_zephyr(self):
        prompt = self.llm.apply_chat_template(self.MESSAGES)
        self.assertEqual(prompt, "<|system|>\nYou are a friendly chatbot.</s>\n<|user|>\nHow many "
                         "helicopters can a human eat in one sitting?</s>\n<|assistant|>\n")

    def test_chat_completion_shape(self):
        out = self.llm.create_chat_completion(self.MESSAGES, max_tokens=12, seed=5)
        self.assertEqual(set(out), {"id", "object", "created", "model", "choices", "usage"})
        self.assertTrue(out["id"].startswith("chatcmpl-"), out["id"])
        self.assertEqual(out["object"], "chat.completion")
        self.assertEqual(out["model"], SPM32K)
        c = out["choices"][0]
        self.assertEqual(set(c), {"index", "message", "logprobs", "finish_reason"})
        self.assertEqual(c["message"]["role"], "assistant")
        self.assertIsInstance(c["message"]["content"], str)
        self.assertIn(c["finish_reason"], ("stop", "length"))
        u = out["usage"]
        prompt = self.llm.apply_chat_template(self.MESSAGES)
        self.assertEqual(u["prompt_tokens"], len(self.llm.tokenize(prompt.encode(), special=True)))
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        self.assertLessEqual(u["completion_tokens"], 12)

    def test_chat_streaming(self):
        kw = dict(max_tokens=12, seed=11, temperature=0.7)
        full = self.llm.create_chat_completion(self.MESSAGES, **kw)
        chunks = list(self.llm.create_chat_completion(self.MESSAGES, stream=True, **kw))
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
            self.assertTrue(c["id"].startswith("chatcmpl-"))
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant"})
        self.assertEqual(chunks[-1]["choices"][0]["delta"], {})
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], full["choices"][0]["finish_reason"])
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        self.assertEqual(text, full["choices"][0]["message"]["content"])

    def test_chat_format(self):
        llm = quiet(SPM32K, n_ctx=128, chat_format="chatml")
        p = llm.apply_chat_template([{"role": "user", "content": "hi"}])
        self.assertEqual(p, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        out = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=3)
        self.assertEqual(out["usage"]["prompt_tokens"], len(llm.tokenize(p.encode(), special=True)))
        llm.close()
        with self.assertRaises(ValueError) as cm:
            Llama(model_path=SPM32K, chat_format="no-such-format", verbose=False)
        self.assertIn("no-such-format", str(cm.exception))

    def test_template_error_is_an_exception(self):
        tmpl = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('only users here') }}{% endif %}x"
        llm = quiet(SPM32K, n_ctx=64, chat_format=tmpl)
        bad = [{"role": "system", "content": "hi"}]
        for call in (lambda: llm.apply_chat_template(bad), lambda: llm.create_chat_completion(bad),
                     lambda: list(llm.create_chat_completion(bad, stream=True))):
            with self.assertRaises((ValueError, RuntimeError)) as cm:
                call()
            note("template raised ->", cm.exception)
            self.assertIn("only users here", str(cm.exception))
        self.assertEqual(llm.apply_chat_template([{"role": "user", "content": "a"}]), "x")
        with self.assertRaises(TypeError):
            llm.create_chat_completion("hello")
        with self.assertRaises(TypeError):
            llm.create_chat_completion([["user", "hello"]])
        llm.close()


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
class Tokens(unittest.TestCase):
    TEXTS = [b"Hello world", b" leading space", b"caf\xc3\xa9 cr\xc3\xaape", b"line1\nline2\n",
             b"emoji \xf0\x9f\xa6\x99 and \xe6\x97\xa5\xe6\x9c\xac", b"tabs\tand  double  spaces",
             b"<|user|>\nHi</s>\n<|assistant|>"]

    @classmethod
    def setUpClass(cls):
        cls.spm = quiet(SPM32K, vocab_only=True)
        cls.stories = quiet(STORIES, vocab_only=True)

    @classmethod
    def tearDownClass(cls):
        cls.spm.close()
        cls.stories.close()

    def test_tokenize_equals_llama_cpp(self):
        cases = [(self.spm, os.path.join(FIX, "vocab32k", "fx-spm32k-Q8_0"))]
        cases += [(self.stories, os.path.join(FIX, "models", "stories260K-" + n)) for n in ("bos", "lily", "cafe")]
        for llm, prefix in cases:
            with open(prefix + ".prompt.txt", "rb") as f:
                text = f.read()
            self.assertEqual(llm.tokenize(text), read_i32(prefix + ".tokens"), prefix)

    @unittest.skipUnless(os.access(CLI, os.X_OK), "build %s first (make)" % CLI)
    def test_tokenize_equals_cli(self):
        for text in self.TEXTS[2:5] + self.TEXTS[-1:]:
            for add_bos, special in ((True, False), (False, False), (True, True)):
                args = [CLI, "tokenize", "-m", SPM32K]
                if not add_bos:
                    args.append("--no-bos")
                if special:
                    args.append("--parse-special")
                r = subprocess.run(args + ["--", text], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                ids = [int(x) for x in r.stdout.split()]
                self.assertEqual(self.spm.tokenize(text, add_bos=add_bos, special=special), ids,
                                 (text, add_bos, special))

    def test_round_trip(self):
        for llm in (self.spm, self.stories):
            for text in self.TEXTS:
                toks = llm.tokenize(text)
                self.assertEqual(llm.detokenize(toks), text, text)
                self.assertEqual(llm.tokenize(text.decode()), toks)  # str is taken as UTF-8

    def test_detokenize_like_llama_cpp_python(self):
        llm = self.spm
        bos, eos = llm.token_bos(), llm.token_eos()
        self.assertEqual((bos, eos), (1, 2))
        # the leading space of the first word is dropped only after BOS
        toks = llm.tokenize(b"Hello", add_bos=False)
        self.assertEqual(llm.detokenize(toks), b" Hello")
        self.assertEqual(llm.detokenize([bos] + toks), b"Hello")
        # control tokens: empty unless special
        self.assertEqual(llm.detokenize([bos, eos]), b"")
        self.assertEqual(llm.detokenize([bos, eos], special=True), b"<s></s>")
        sp = llm.tokenize(b"Hi</s>", special=True)
        self.assertEqual(sp[-1], eos)
        self.assertNotEqual(llm.tokenize(b"Hi</s>")[-1], eos)
        # the fixture's greedy continuation: pieces joined after the prompt
        fx = fixture_json(os.path.join(FIX, "vocab32k", "fx-spm32k-Q8_0.json"))
        self.assertEqual(llm.detokenize(fx["gen"]).decode(), fx["gen_pieces_concat"])
        self.assertEqual(llm.detokenize([]), b"")

    def test_accessors(self):
        self.assertEqual(self.spm.n_vocab(), 32000)
        self.assertEqual(self.stories.n_vocab(), 512)
        self.assertEqual(self.spm.n_embd(), 256)
        self.assertEqual(self.spm.n_ctx(), 0)  # vocab_only: no context
        self.assertEqual(self.spm.metadata["general.architecture"], "llama")
        self.assertIn("<|assistant|>", self.spm.metadata["tokenizer.chat_template"])

    def test_bad_tokens(self):
        with self.assertRaises(ValueError):
            self.spm.detokenize([32000])
        with self.assertRaises(ValueError):
            self.spm.detokenize([-1])
        with self.assertRaises(TypeError):
            self.spm.tokenize(12)
        with self.assertRaises(RuntimeError):  # vocab_only: nothing to generate with
            self.spm("Hello", max_tokens=1)
        self.assertEqual(self.spm.tokenize(b""), [1])
        self.assertEqual(self.spm.tokenize(b"", add_bos=False), [])
        big = b"a b" * 20000
        self.assertEqual(self.spm.detokenize(self.spm.tokenize(big)), big)


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
class ConstructorAndErrors(unittest.TestCase):
    def test_warnings(self):
        with warnings.catch_warnings(record=True) as w, captured_fd2() as err:
            warnings.simplefilter("always")
            llm = Llama(model_path=STORIES, n_gpu_layers=40, verbose=False)
        self.assertEqual([str(x.message) for x in w],
                         ["Llama(): n_gpu_layers=40: llamita has no GPU backend, running on the CPU"])
        self.assertNotIn("n_gpu_layers", err["text"])  # the C library does not warn a second time
        llm.close()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            llm = Llama(model_path=STORIES, verbose=False, use_mlock=True, logits_all=True, n_ubatch=256)
        self.assertEqual(len(w), 1, [str(x.message) for x in w])
        self.assertEqual(str(w[0].message), "Llama(): llamita ignores these arguments: logits_all, "
                         "n_ubatch, use_mlock")
        self.assertIs(w[0].category, LlamitaWarning)
        self.assertEqual(w[0].filename, __file__)  # points at the caller
        llm.close()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            Llama(model_path=STORIES, verbose=False, n_ctx=64, n_threads=2, n_batch=32, seed=1,
                  n_gpu_layers=0).close()
        self.assertEqual(w, [])

    def test_verbose_prints_load_information(self):
        with captured_fd2() as err:
            Llama(model_path=STORIES, n_ctx=64).close()
        self.assertIn("stories260K", err["text"])
        with captured_fd2() as err:
            Llama(model_path=STORIES, n_ctx=64, verbose=False).close()
        self.assertEqual(err["text"], "")

    def test_context_parameters(self):
        with quiet(STORIES, n_ctx=100) as llm:
            self.assertEqual(llm.n_ctx(), 100)
        with quiet(STORIES, n_ctx=0) as llm:  # 0 = the model's training context
            self.assertEqual(llm.n_ctx(), 128)

    def test_missing_and_corrupt_files(self):
        with self.assertRaises(ValueError) as cm:
            Llama(model_path="/nonexistent/model.gguf", verbose=False)
        self.assertIn("/nonexistent/model.gguf", str(cm.exception))
        with tempfile.TemporaryDirectory() as d:
            junk = os.path.join(d, "junk.gguf")
            with open(junk, "wb") as f:
                f.write(b"this is not a gguf file at all" * 10)
            with self.assertRaises(ValueError) as cm:
                Llama(model_path=junk, verbose=False)
            note("junk file ->", cm.exception)
            self.assertIn(junk, str(cm.exception))
            self.assertIn("GGUF", str(cm.exception))
            with open(STORIES, "rb") as f:
                data = f.read()
            for cut in (10, 100, 1000, 5000, len(data) // 2, len(data) - 1):
                part = os.path.join(d, "cut%d.gguf" % cut)
                with open(part, "wb") as f:
                    f.write(data[:cut])
                with self.assertRaises(ValueError) as cm:
                    Llama(model_path=part, verbose=False)
                self.assertIn(part, str(cm.exception))
            with self.assertRaises(ValueError):
                Llama(model_path=d, verbose=False)  # a directory

    def test_bad_arguments(self):
        for kw in (dict(n_ctx=-1), dict(n_ctx="512"), dict(n_batch=0), dict(n_threads="8"),
                   dict(chat_format="nope")):
            with self.assertRaises(ValueError, msg=str(kw)):
                Llama(model_path=STORIES, verbose=False, **kw)
        with self.assertRaises(TypeError):
            Llama(model_path=STORIES, verbose=False, seed="1")

    @unittest.skipUnless(HAVE_COMPLETION, NO_COMPLETION)
    def test_completion_errors(self):
        llm = quiet(STORIES, n_ctx=16)
        with self.assertRaises(ValueError) as cm:
            llm(LILY + " " + LILY, max_tokens=4)  # longer than the context
        note("prompt too long ->", cm.exception)
        self.assertIn("16", str(cm.exception))
        with self.assertRaises(ValueError):
            llm("a\0b")
        with self.assertRaises(ValueError):
            llm("Hello", stop=["x\0"])
        with self.assertRaises(TypeError):
            llm([1, 2, 3])
        with self.assertRaises(TypeError):
            llm("Hello", max_tokens="4")
        out = llm("Hello", max_tokens=4, temperature=0)  # still usable
        self.assertGreater(out["usage"]["completion_tokens"], 0)
        llm.close()

    def test_close_and_context_manager(self):
        with quiet(STORIES, n_ctx=64) as llm:
            self.assertEqual(llm.tokenize(b"Hi", add_bos=False), llm.tokenize(b"Hi")[1:])
        for call in (lambda: llm.tokenize(b"x"), llm.n_vocab, llm.token_bos):
            with self.assertRaises(RuntimeError):
                call()
        llm.close()  # idempotent
        self.assertIn("closed", repr(llm))
        # many create/free cycles do not leak handles or crash; __del__ frees
        for _ in range(20):
            quiet(STORIES, n_ctx=32)


@unittest.skipUnless(HAVE_LIB and HAVE_SHARED, NO_SHARED if HAVE_LIB else NO_LIB)
@unittest.skipUnless(HAVE_LIB and has_symbol("llamita_hf_download"), "this libllamita has no hub (src/hub.c)")
@unittest.skipUnless(os.path.isfile(HUB_SERVER), "tests/py/hub_server.py (the fake hub) is not there yet")
class FromPretrained(unittest.TestCase):
    REPO_ID = "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF"

    def setUp(self):
        sys.path.insert(0, os.path.dirname(HUB_SERVER))
        from hub_server import FakeHub
        self.tmp = tempfile.TemporaryDirectory()
        self.hub = FakeHub().start()
        with open(STORIES, "rb") as f:
            self.data = f.read()
        self.hub.add_file(self.REPO_ID, "tinyllama-1.1b-chat-v1.0.Q8_0.gguf", self.data)
        self.hub.add_file(self.REPO_ID, "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", self.data[:1000])
        self.hub.add_file(self.REPO_ID, "README.md", b"# readme\n", lfs=False)
        self.saved = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE",
                                                     "HF_HUB_OFFLINE", "HF_TOKEN")}
        for k in self.saved:
            os.environ.pop(k, None)
        os.environ["HF_ENDPOINT"] = self.hub.endpoint
        os.environ["HF_HOME"] = os.path.join(self.tmp.name, "hf")

    def tearDown(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.hub.stop()
        self.tmp.cleanup()

    def test_download_and_load(self):
        llm = Llama.from_pretrained(self.REPO_ID, "*Q8_0.gguf", verbose=False, n_ctx=64)
        folder = os.path.join(self.tmp.name, "hf", "hub", "models--TheBloke--TinyLlama-1.1B-Chat-v1.0-GGUF")
        self.assertTrue(llm.model_path.startswith(os.path.join(folder, "snapshots")), llm.model_path)
        self.assertTrue(llm.model_path.endswith("/tinyllama-1.1b-chat-v1.0.Q8_0.gguf"))
        with open(llm.model_path, "rb") as f:
            self.assertEqual(f.read(), self.data)
        self.assertEqual(llm.n_vocab(), 512)
        llm.close()
        # found in the cache afterwards, also offline
        os.environ["HF_HUB_OFFLINE"] = "1"
        n = len(self.hub.requests)
        llm = Llama.from_pretrained(self.REPO_ID, "tinyllama-1.1b-chat-v1.0.Q8_0.gguf", verbose=False)
        self.assertEqual(len(self.hub.requests), n)
        llm.close()

    def test_cache_dir_and_local_dir(self):
        cache = os.path.join(self.tmp.name, "elsewhere")
        local = os.path.join(self.tmp.name, "local")
        llm = Llama.from_pretrained(self.REPO_ID, "*Q8_0.gguf", cache_dir=cache, local_dir=local,
                                    verbose=False)
        self.assertEqual(llm.model_path, os.path.join(local, "tinyllama-1.1b-chat-v1.0.Q8_0.gguf"))
        self.assertTrue(os.path.isdir(os.path.join(cache, "models--TheBloke--TinyLlama-1.1B-Chat-v1.0-GGUF")))
        self.assertNotIn("HF_HUB_CACHE", os.environ)
        llm.close()

    def test_errors(self):
        with self.assertRaises(RuntimeError) as cm:
            Llama.from_pretrained(self.REPO_ID, "*.gguf", verbose=False)  # two match
        note("ambiguous glob ->", cm.exception)
        self.assertIn("Q4_K_M", str(cm.exception))
        with self.assertRaises(RuntimeError) as cm:
            Llama.from_pretrained("nobody/nothing", "x.gguf", verbose=False)
        note("missing repo ->", cm.exception)
        with self.assertRaises(ValueError):  # downloaded fine, but not a model
            Llama.from_pretrained(self.REPO_ID, "*Q4_K_M.gguf", verbose=False)


if __name__ == "__main__":
    unittest.main()
