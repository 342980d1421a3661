"""`Llama`: llama-cpp-python's high-level class, over libllamita through ctypes.

Code written for llama-cpp-python runs after changing its import to `from llamita import Llama`:
the constructor, create_completion / __call__, create_chat_completion, tokenize / detokenize,
from_pretrained and the small accessors take the same arguments and return the same dicts (the C
library builds them as JSON text; they are parsed with json.loads).

Differences, on purpose:
 - arguments llamita has no use for (GPU placement, mmap/mlock flags, mirostat, grammar, ...) are
   accepted and ignored with one LlamitaWarning naming them, so old code keeps working;
 - logprobs work without logits_all=True;
 - a prompt must be text (str or UTF-8 bytes), not a list of token ids.

Threading: one Llama runs one completion at a time; every C call that uses the context holds
self._lock, so calls from several Python threads are serialized. Each completion runs the C call on a
worker thread ("llamita-completion") with a chunk callback:
 - streaming: the callback hands each chunk to the consuming generator through a one-slot queue, so
   generation never runs more than a chunk ahead of the consumer; closing the generator (break, del,
   an exception, Ctrl-C) makes the callback return false, which ends generation cleanly. Starting
   another call on the same Llama, or close(), first ends a stream still in progress (its iterator
   then simply stops);
 - non-streaming: the caller waits for the result; Ctrl-C (KeyboardInterrupt) makes the callback
   return false, so generation stops at once instead of running to max_tokens.
Tokenization only reads the model and needs no lock.
"""
import ctypes
import json
import os
import queue
import shutil
import sys
import threading
import warnings

from . import _lib
from ._lib import c_token

__all__ = ["Llama", "LlamitaWarning", "LLAMA_DEFAULT_SEED"]

#: llama-cpp-python's LLAMA_DEFAULT_SEED: "pick a random seed" (as do None and -1).
LLAMA_DEFAULT_SEED = 0xFFFFFFFF

_INT32_MAX = (1 << 31) - 1
_UINT32_MAX = (1 << 32) - 1


class LlamitaWarning(UserWarning):
    """Warnings about arguments llamita accepts for compatibility but does not use."""


# llama-cpp-python's chat_format names -> llamita's built-in templates (src/chat.c).
_CHAT_FORMATS = {
    "zephyr": "zephyr",
    "chatml": "chatml",
    "llama-2": "llama2",
    "llama2": "llama2",
    "llama-3": "llama3",
    "llama3": "llama3",
    "mistral-instruct": "mistral",
    "mistral": "mistral",
    "gemma": "gemma",
    "phi3": "phi3",
    "phi-3": "phi3",
}

# create_completion / create_chat_completion arguments of llama-cpp-python that llamita does not
# implement, with the value that means "not used": passing that value is silent, any other warns.
_NEUTRAL = {
    "suffix": None,
    "typical_p": 1.0,
    "tfs_z": 1.0,
    "mirostat_mode": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "stopping_criteria": None,
    "logits_processor": None,
    "grammar": None,
    "logit_bias": None,
    "functions": None,
    "function_call": None,
    "tools": None,
    "tool_choice": None,
    "response_format": None,
}

_DONE = object()  # end-of-stream sentinel in a _Run's queue


def _get(q):
    """q.get(), waking up every 0.1 s so that a pending Ctrl-C (KeyboardInterrupt) is raised
    promptly even when the signal was delivered to another thread."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass


_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel():
    """The warnings.warn stacklevel that points at the first frame outside this package (the user's
    call), however many of our own functions lie in between."""
    level, f = 1, sys._getframe(1)
    while f is not None and os.path.dirname(os.path.abspath(f.f_code.co_filename)) == _PKG_DIR:
        level += 1
        f = f.f_back
    return level


def _warn_ignored(where, names):
    if names:
        warnings.warn("%s: llamita ignores %s: %s" % (where, "this argument" if len(names) == 1
                                                      else "these arguments", ", ".join(names)),
                      LlamitaWarning, stacklevel=_user_stacklevel())


def _check_unused(where, given):
    """Warns once about the llama-cpp-python arguments in `given` (name -> value) that llamita does
    not implement and that were passed with a value other than their neutral one."""
    _warn_ignored(where, [k for k, v in given.items() if _NEUTRAL.get(k, object()) != v])


def _c_seed(seed):
    """Maps a Python seed to the C sampler's: None, negative, and LLAMA_DEFAULT_SEED mean random."""
    if seed is None:
        return _lib.C_DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("seed must be an int or None, not %s" % type(seed).__name__)
    if seed < 0 or seed == LLAMA_DEFAULT_SEED:
        return _lib.C_DEFAULT_SEED
    if seed >= _lib.C_DEFAULT_SEED:
        raise ValueError("seed %d out of range [0, 2**64 - 1)" % seed)
    return seed


def _error_class(msg):
    """ValueError for failures caused by the request (prompt too long for the context, bad
    arguments), RuntimeError for the rest — the split llama-cpp-python uses."""
    m = msg.lower()
    if "context" in m and any(w in m for w in ("exceed", "too long", "longer than", "does not fit",
                                               "too large", "full")):
        return ValueError
    if "invalid" in m or "must be" in m:
        return ValueError
    return RuntimeError


def _text_bytes(what, s):
    """UTF-8 bytes of a str (or bytes) argument that goes to C as a NUL-terminated string."""
    if isinstance(s, str):
        b = s.encode("utf-8")
    elif isinstance(s, (bytes, bytearray)):
        b = bytes(s)
    else:
        raise TypeError("%s must be str, not %s" % (what, type(s).__name__))
    if b"\0" in b:
        raise ValueError("%s contains a NUL character" % what)
    return b


class _Run:
    """One C completion call (llamita_completion or llamita_chat_completion) on a worker thread.

    stream=True: each chunk (JSON bytes) is put on a one-slot queue, so the worker blocks until the
    consumer took the previous one; then _DONE. stream=False: only _DONE is queued; the callback is
    still installed so that cancel() can stop generation. After _DONE, `result` holds the final
    object's JSON text, or `error` the C message."""

    def __init__(self, llama, fn_name, arg, params, keep, stream):
        self.llama = llama
        self.fn = _lib.func(fn_name)
        self.arg = arg            # bytes: the prompt or the messages JSON
        self.params = params      # CompletionParams
        self.keep = keep          # objects params points into (stop strings array)
        self.stream = stream
        self.q = queue.Queue(maxsize=1 if stream else 0)
        self.stop = threading.Event()
        self.result = None
        self.error = None
        self.thread = None
        self.cb = _lib.CHUNK_CB(self._on_chunk)

    def _on_chunk(self, chunk, _user):
        # Runs on the worker thread, called from C. Must not raise (ctypes would only print it).
        try:
            if self.stop.is_set():
                return False
            if self.stream:
                self.q.put(chunk)  # blocks while the consumer has not taken the previous chunk
            return not self.stop.is_set()
        except BaseException:  # noqa: B902 - nothing may escape into C
            self.stop.set()
            return False

    def _work(self):
        try:
            with self.llama._lock:
                ctx = self.llama._ctx
                if not ctx:
                    self.error = "this Llama is closed"
                    return
                err = _lib.err_buf()
                ptr = self.fn(ctx, self.arg, ctypes.byref(self.params), self.cb, None, err,
                              _lib.ERR_SIZE)
                if ptr:
                    self.result = _lib.take_string(ptr)
                else:
                    self.error = _lib.err_text(err, "completion failed (no message from libllamita)")
        except BaseException as e:  # noqa: B902 - report on the consumer's side
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.q.put(_DONE)

    def start(self):
        self.llama._cancel_active()
        self.llama._active = self
        self.thread = threading.Thread(target=self._work, name="llamita-completion", daemon=True)
        self.thread.start()

    def cancel(self):
        """Stops generation (the next callback returns false), waits for the C call to return, and
        leaves a _DONE in the queue so a consumer resumed later ends. Idempotent."""
        self.stop.set()
        if self.thread is not None:
            while self.thread.is_alive():
                try:  # unblock a worker waiting in q.put()
                    self.q.get(timeout=0.05)
                except queue.Empty:
                    pass
            self.thread.join()
            while True:  # drop what is left, then mark the end
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break
            self.q.put(_DONE)
        if self.llama._active is self:
            self.llama._active = None

    def wait(self):
        """Non-streaming: waits for the final object and returns it as a dict."""
        try:
            while _get(self.q) is not _DONE:
                pass
        except BaseException:  # KeyboardInterrupt: stop generating, then let it propagate
            self.cancel()
            if self.result is not None:
                self.llama._last_result = json.loads(self.result)
            raise
        self.thread.join()
        if self.llama._active is self:
            self.llama._active = None
        if self.error is not None:
            raise _error_class(self.error)(self.error)
        return json.loads(self.result)

    def chunks(self, final_chunk):
        """Streaming: generator of chunk dicts. final_chunk(result_dict) builds the closing chunk
        when the C side streamed none carrying a finish_reason."""
        try:
            self.start()
            finished = False
            while True:
                item = _get(self.q)
                if item is _DONE:
                    break
                chunk = json.loads(item.decode("utf-8", errors="replace"))
                try:
                    if chunk["choices"][0].get("finish_reason") is not None:
                        finished = True
                except (KeyError, IndexError, TypeError, AttributeError):
                    pass
                yield chunk
            self.thread.join()
            if self.stop.is_set():
                return  # cancelled by another call on this Llama, or by close()
            if self.error is not None:
                raise _error_class(self.error)(self.error)
            if not finished:
                yield final_chunk(json.loads(self.result))
        finally:
            self.cancel()
            if self.result is not None:
                self.llama._last_result = json.loads(self.result)


class Llama:
    """A model and its context, with llama-cpp-python's `Llama` interface. See the module docstring."""

    def __init__(self, model_path, *, n_gpu_layers=0, seed=LLAMA_DEFAULT_SEED, n_ctx=512, n_batch=512,
                 n_threads=None, vocab_only=False, last_n_tokens_size=64, chat_format=None,
                 verbose=True, **kwargs):
        """Loads the GGUF file at model_path (memory-mapped) and creates a context of n_ctx tokens
        (0 = the model's training context). n_threads None = the number of physical cores.
        n_gpu_layers != 0 runs on the CPU with one warning (llamita has no GPU backend); any other
        keyword argument of llama-cpp-python's constructor is ignored with one warning naming it.
        Raises ValueError when the file is missing or not a usable model (the C message says why)."""
        self._model = None
        self._ctx = None
        self._lock = threading.RLock()
        self._active = None
        self._last_result = None
        self.verbose = bool(verbose)
        _warn_ignored("Llama()", sorted(kwargs))
        if n_gpu_layers:
            warnings.warn("Llama(): n_gpu_layers=%r: llamita has no GPU backend, running on the CPU"
                          % (n_gpu_layers,), LlamitaWarning, stacklevel=_user_stacklevel())
        self.model_path = os.fspath(model_path)
        for name, v, lo in (("n_ctx", n_ctx, 0), ("n_batch", n_batch, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= _UINT32_MAX:
                raise ValueError("%s must be an int in [%d, %d], got %r" % (name, lo, _UINT32_MAX, v))
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int)):
            raise ValueError("n_threads must be an int or None, got %r" % (n_threads,))
        if isinstance(last_n_tokens_size, bool) or not isinstance(last_n_tokens_size, int):
            raise ValueError("last_n_tokens_size must be an int, got %r" % (last_n_tokens_size,))
        _c_seed(seed)  # validates
        self._seed = seed
        self.n_batch = n_batch
        self.n_threads = n_threads if n_threads and n_threads > 0 else None
        self.last_n_tokens_size = max(-1, min(last_n_tokens_size, _INT32_MAX))
        self.chat_format = chat_format
        self._chat_template = self._resolve_chat_format(chat_format)

        if not os.path.exists(self.model_path):
            raise ValueError("Model path does not exist: %s" % self.model_path)
        L = _lib.load()
        mp = L.llamita_model_default_params()
        mp.n_gpu_layers = 0  # warned above; the C library would warn again on stderr
        mp.vocab_only = bool(vocab_only)
        mp.verbose = self.verbose
        err = _lib.err_buf()
        path_b = os.fsencode(self.model_path)
        if b"\0" in path_b:
            raise ValueError("model_path contains a NUL character")
        self._model = L.llamita_model_load(path_b, mp, err, _lib.ERR_SIZE)
        if not self._model:
            self._model = None
            msg = _lib.err_text(err, "failed to load the model")
            if self.model_path not in msg:  # name the file, as llama-cpp-python's message does
                msg = "%s: %s" % (self.model_path, msg)
            raise ValueError(msg)
        if not vocab_only:
            cp = L.llamita_context_default_params()
            cp.n_ctx = n_ctx
            cp.n_batch = n_batch
            cp.n_threads = self.n_threads or 0
            err = _lib.err_buf()
            self._ctx = L.llamita_context_new(self._model, cp, err, _lib.ERR_SIZE)
            if not self._ctx:
                self._ctx = None
                msg = _lib.err_text(err, "failed to create a context of %d tokens" % n_ctx)
                self.close()
                raise ValueError(msg)
        self.metadata = self._read_metadata()

    # ---------------------------------------------------------------------------------------------
    # lifetime

    def close(self):
        """Frees the context and the model (stopping a stream in progress first). Idempotent; the
        object is unusable afterwards."""
        active = getattr(self, "_active", None)
        if active is not None:
            active.cancel()
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            ctx, model = getattr(self, "_ctx", None), getattr(self, "_model", None)
            self._ctx = None
            self._model = None
            if ctx or model:
                L = _lib.load()
                if ctx:
                    L.llamita_context_free(ctx)
                if model:
                    L.llamita_model_free(model)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __getstate__(self):
        raise TypeError("a llamita Llama holds a native model and cannot be pickled")

    def __repr__(self):
        state = "closed" if getattr(self, "_model", None) is None else "n_ctx=%d" % self.n_ctx()
        return "Llama(model_path=%r, %s)" % (getattr(self, "model_path", None), state)

    def _need_model(self):
        if self._model is None:
            raise RuntimeError("this Llama is closed")
        return self._model

    def _need_ctx(self):
        self._need_model()
        if self._ctx is None:
            raise RuntimeError("this Llama was loaded with vocab_only=True: it has no context to "
                               "generate with")
        return self._ctx

    def _cancel_active(self):
        """Ends a stream still in progress (its generator then stops). A non-streaming call in
        another thread is not cancelled: the next call waits for it (self._lock)."""
        active = self._active
        if active is not None and active.stream:
            active.cancel()

    # ---------------------------------------------------------------------------------------------
    # model information

    def _read_metadata(self):
        L = _lib.load()
        out = {}
        buf = ctypes.create_string_buffer(256)
        for i in range(L.llamita_model_meta_count(self._model)):
            key = L.llamita_model_meta_key(self._model, i)
            if key is None:
                continue
            n = L.llamita_model_meta_val_str(self._model, key, buf, len(buf))
            if n < 0:
                continue
            if n >= len(buf):
                buf = ctypes.create_string_buffer(n + 1)
                L.llamita_model_meta_val_str(self._model, key, buf, len(buf))
            out[key.decode("utf-8", errors="replace")] = buf.value.decode("utf-8", errors="replace")
        return out

    def n_ctx(self):
        """The context window size in tokens (0 for a vocab_only model)."""
        self._need_model()
        return int(_lib.load().llamita_n_ctx(self._ctx)) if self._ctx else 0

    def n_vocab(self):
        return int(_lib.load().llamita_model_n_vocab(self._need_model()))

    def n_embd(self):
        return int(_lib.load().llamita_model_n_embd(self._need_model()))

    def token_bos(self):
        """The BOS token id (-1 if the model has none)."""
        return int(_lib.load().llamita_token_bos(self._need_model()))

    def token_eos(self):
        """The EOS token id (-1 if the model has none)."""
        return int(_lib.load().llamita_token_eos(self._need_model()))

    def set_seed(self, seed):
        """Sets the seed used by completions that pass no seed of their own."""
        _c_seed(seed)
        self._seed = seed

    def reset(self):
        """Forgets the evaluated tokens (the next completion evaluates its prompt from scratch)."""
        ctx = self._need_ctx()
        self._cancel_active()
        with self._lock:
            _lib.load().llamita_kv_clear(ctx)

    # ---------------------------------------------------------------------------------------------
    # tokens

    def tokenize(self, text, add_bos=True, special=False):
        """Token ids of text (bytes; a str is encoded as UTF-8). add_bos adds BOS (and EOS) as the
        model's tokenizer settings say; special recognises control tokens such as b"</s>" written
        in the text."""
        model = self._need_model()
        if isinstance(text, str):
            text = text.encode("utf-8")
        elif isinstance(text, (bytearray, memoryview)):
            text = bytes(text)
        elif not isinstance(text, bytes):
            raise TypeError("tokenize() takes bytes, not %s" % type(text).__name__)
        if len(text) > _INT32_MAX - 2:
            raise ValueError("text of %d bytes is too long to tokenize" % len(text))
        fn = _lib.load().llamita_tokenize
        n_max = len(text) + 2  # at most one token per byte, plus BOS and EOS
        for _ in range(2):
            buf = (c_token * n_max)()
            n = fn(model, text, len(text), buf, n_max, bool(add_bos), bool(special))
            if n == _lib.INT32_MIN:
                raise RuntimeError("llamita_tokenize failed on a text of %d bytes" % len(text))
            if n >= 0:
                return list(buf[:n])
            n_max = -n
        raise RuntimeError("llamita_tokenize: inconsistent token count")

    def detokenize(self, tokens, prev_tokens=None, special=False):
        """The text of tokens as bytes, piece by piece as llama-cpp-python does: the leading space
        of the first word is dropped only when the list starts with BOS. special renders control
        tokens (b"<s>", b"</s>"). prev_tokens is accepted for compatibility and not used (as in
        llama-cpp-python's default tokenizer). Raises ValueError on an id outside the vocabulary."""
        model = self._need_model()
        L = _lib.load()
        n_vocab = L.llamita_model_n_vocab(model)
        buf = ctypes.create_string_buffer(64)
        out = bytearray()
        tokens = list(tokens)
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, int):
                t = int(t)  # numpy integers and the like
            if not 0 <= t < n_vocab:
                raise ValueError("token id %d is outside the vocabulary [0, %d)" % (t, n_vocab))
            n = L.llamita_token_to_piece(model, t, buf, len(buf), 0, bool(special))
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = L.llamita_token_to_piece(model, t, buf, len(buf), 0, bool(special))
            out += buf.raw[:max(n, 0)]
        if tokens and tokens[0] == L.llamita_token_bos(model) and out[:1] == b" ":
            del out[0]
        return bytes(out)

    # ---------------------------------------------------------------------------------------------
    # completions

    @staticmethod
    def _resolve_chat_format(chat_format):
        """chat_format (llama-cpp-python's name, a llamita built-in name, or Jinja source) -> the
        bytes passed as llamita_completion_params.chat_template (None = the model's own)."""
        if chat_format is None:
            return None
        if not isinstance(chat_format, str):
            raise TypeError("chat_format must be a str, not %s" % type(chat_format).__name__)
        if chat_format in _CHAT_FORMATS:
            return _CHAT_FORMATS[chat_format].encode()
        if "{{" in chat_format or "{%" in chat_format:
            return _text_bytes("chat_format", chat_format)
        raise ValueError("unknown chat_format %r; llamita knows %s, or pass a Jinja template"
                         % (chat_format, ", ".join(sorted(_CHAT_FORMATS))))

    def _params(self, max_tokens, temperature, top_p, min_p, top_k, stop, echo, logprobs, seed,
                repeat_penalty, frequency_penalty, presence_penalty, model, chat):
        """Builds llamita_completion_params; returns (params, objects to keep alive during the call)."""
        p = _lib.func("llamita_completion_default_params")()
        if max_tokens is None:
            max_tokens = 0
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError("max_tokens must be an int or None, not %s" % type(max_tokens).__name__)
        # <= 0 (or more than fits): until the context is full
        p.max_tokens = max_tokens if 0 < max_tokens <= _INT32_MAX else 0
        if stop is None:
            stop = []
        elif isinstance(stop, (str, bytes)):
            stop = [stop]
        stops = [_text_bytes("stop string", s) for s in stop]
        stops = [s for s in stops if s]  # an empty stop string would match everywhere
        keep = []
        if stops:
            arr = (ctypes.c_char_p * len(stops))(*stops)
            keep.append(arr)
            p.stop = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
            p.n_stop = len(stops)
        p.echo = bool(echo)
        if logprobs is None or logprobs is False:
            p.logprobs = -1
        else:
            p.logprobs = max(0, min(int(logprobs), _INT32_MAX))
        s = p.sampling
        s.temp = float(temperature)
        s.top_k = max(-1, min(int(top_k), _INT32_MAX))
        s.top_p = float(top_p)
        s.min_p = float(min_p)
        s.repeat_penalty = float(repeat_penalty)
        s.frequency_penalty = float(frequency_penalty)
        s.presence_penalty = float(presence_penalty)
        s.penalty_last_n = self.last_n_tokens_size
        s.seed = _c_seed(self._seed if seed is None else seed)
        if model is not None:
            name = _text_bytes("model", model)
            keep.append(name)
            p.model_name = name
        if chat and self._chat_template is not None:
            p.chat_template = self._chat_template
        return p, keep

    def create_completion(self, prompt, suffix=None, max_tokens=16, temperature=0.8, top_p=0.95,
                          min_p=0.05, typical_p=1.0, logprobs=None, echo=False, stop=None,
                          frequency_penalty=0.0, presence_penalty=0.0, repeat_penalty=1.0, top_k=40,
                          stream=False, seed=None, tfs_z=1.0, mirostat_mode=0, mirostat_tau=5.0,
                          mirostat_eta=0.1, model=None, stopping_criteria=None, logits_processor=None,
                          grammar=None, logit_bias=None):
        """Generates text after prompt (str). Returns a "text_completion" dict {id, object, created,
        model, choices: [{text, index, logprobs, finish_reason}], usage}, or with stream=True an
        iterator of "text_completion" chunks whose last one carries finish_reason.
        max_tokens None or <= 0: until the context is full. stop: a string or a list of them; the
        stop text is not part of the result. temperature <= 0: greedy. seed None: the Llama's seed
        (random unless one was given). logprobs N: the top-N log-probabilities per token.
        Raises ValueError when the prompt does not fit in the context, RuntimeError on other
        failures (with the C library's message)."""
        _check_unused("create_completion()", {
            "suffix": suffix, "typical_p": typical_p, "tfs_z": tfs_z, "mirostat_mode": mirostat_mode,
            "mirostat_tau": mirostat_tau, "mirostat_eta": mirostat_eta,
            "stopping_criteria": stopping_criteria, "logits_processor": logits_processor,
            "grammar": grammar, "logit_bias": logit_bias})
        if isinstance(prompt, (list, tuple)):
            raise TypeError("llamita takes the prompt as text (str); token-id lists are not supported")
        self._need_ctx()
        prompt_b = _text_bytes("prompt", prompt)
        params, keep = self._params(max_tokens, temperature, top_p, min_p, top_k, stop, echo,
                                    logprobs, seed, repeat_penalty, frequency_penalty,
                                    presence_penalty, model, chat=False)
        self._cancel_active()
        run = _Run(self, "llamita_completion", prompt_b, params, keep, stream)
        if stream:
            return run.chunks(_final_text_chunk)
        run.start()
        result = run.wait()
        self._last_result = result
        return result

    def __call__(self, prompt, suffix=None, max_tokens=16, temperature=0.8, top_p=0.95, min_p=0.05,
                 typical_p=1.0, logprobs=None, echo=False, stop=None, frequency_penalty=0.0,
                 presence_penalty=0.0, repeat_penalty=1.0, top_k=40, stream=False, seed=None,
                 tfs_z=1.0, mirostat_mode=0, mirostat_tau=5.0, mirostat_eta=0.1, model=None,
                 stopping_criteria=None, logits_processor=None, grammar=None, logit_bias=None):
        """Same as create_completion."""
        return self.create_completion(
            prompt, suffix=suffix, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            min_p=min_p, typical_p=typical_p, logprobs=logprobs, echo=echo, stop=stop,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            repeat_penalty=repeat_penalty, top_k=top_k, stream=stream, seed=seed, tfs_z=tfs_z,
            mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta,
            model=model, stopping_criteria=stopping_criteria, logits_processor=logits_processor,
            grammar=grammar, logit_bias=logit_bias)

    def create_chat_completion(self, messages, functions=None, function_call=None, tools=None,
                               tool_choice=None, temperature=0.2, top_p=0.95, top_k=40, min_p=0.05,
                               typical_p=1.0, stream=False, stop=None, seed=None,
                               response_format=None, max_tokens=None, presence_penalty=0.0,
                               frequency_penalty=0.0, repeat_penalty=1.0, tfs_z=1.0, mirostat_mode=0,
                               mirostat_tau=5.0, mirostat_eta=0.1, model=None, logits_processor=None,
                               grammar=None, logit_bias=None, logprobs=None, top_logprobs=None):
        """Answers a conversation: messages is a list of {"role", "content"} dicts, rendered with
        the model's chat template (or chat_format's). Returns a "chat.completion" dict {id, object,
        created, model, choices: [{index, message: {role, content}, logprobs, finish_reason}],
        usage}, or with stream=True an iterator of "chat.completion.chunk" dicts (a delta with the
        role, content deltas, then an empty delta with finish_reason). The template's end token and
        EOS stop generation; max_tokens None: until the context is full."""
        _check_unused("create_chat_completion()", {
            "functions": functions, "function_call": function_call, "tools": tools,
            "tool_choice": tool_choice, "typical_p": typical_p, "response_format": response_format,
            "tfs_z": tfs_z, "mirostat_mode": mirostat_mode, "mirostat_tau": mirostat_tau,
            "mirostat_eta": mirostat_eta, "logits_processor": logits_processor, "grammar": grammar,
            "logit_bias": logit_bias})
        if not isinstance(messages, (list, tuple)):
            raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise TypeError("messages[%d] must be a dict, not %s" % (i, type(m).__name__))
        self._need_ctx()
        msgs_b = json.dumps(list(messages), ensure_ascii=False).encode("utf-8")
        n_top = -1
        if logprobs:
            n_top = top_logprobs if top_logprobs is not None else 0
        params, keep = self._params(max_tokens, temperature, top_p, min_p, top_k, stop, False,
                                    n_top if n_top >= 0 else None, seed, repeat_penalty,
                                    frequency_penalty, presence_penalty, model, chat=True)
        self._cancel_active()
        run = _Run(self, "llamita_chat_completion", msgs_b, params, keep, stream)
        if stream:
            return run.chunks(_final_chat_chunk)
        run.start()
        result = run.wait()
        self._last_result = result
        return result

    def apply_chat_template(self, messages, add_generation_prompt=True):
        """(llamita extension) The prompt text create_chat_completion generates from: messages
        rendered with the chat template in use. Raises ValueError with the template's message when
        it raises (e.g. a role it does not support)."""
        model = self._need_model()
        msgs_b = json.dumps(list(messages), ensure_ascii=False).encode("utf-8")
        err = _lib.err_buf()
        ptr = _lib.func("llamita_chat_apply_template")(model, self._chat_template, msgs_b,
                                                       bool(add_generation_prompt), None, None, err,
                                                       _lib.ERR_SIZE)
        if not ptr:
            raise ValueError(_lib.err_text(err, "the chat template failed to render"))
        return _lib.take_string(ptr)

    # ---------------------------------------------------------------------------------------------
    # Hugging Face hub

    @classmethod
    def from_pretrained(cls, repo_id, filename=None, additional_files=None, local_dir=None,
                        local_dir_use_symlinks="auto", cache_dir=None, **kwargs):
        """Downloads repo_id's file (a name or a glob such as "*Q8_0.gguf" that must match exactly
        one file; None = "*.gguf") into the Hugging Face cache — or finds it there — and loads it:
        kwargs go to Llama(). The cache is huggingface_hub's ($HF_HUB_CACHE, $HF_HOME/hub or
        ~/.cache/huggingface/hub; cache_dir overrides it), so files downloaded by either tool are
        shared. $HF_ENDPOINT, $HF_TOKEN and $HF_HUB_OFFLINE=1 are honoured. additional_files are
        downloaded next to it. local_dir: the file is also copied (symlinked when
        local_dir_use_symlinks is True) there and loaded from there. Raises RuntimeError with the
        download error (404, 401, network, checksum, no or several matching files)."""
        progress = bool(kwargs.get("verbose", True))
        path = _hf_download(repo_id, filename if filename is not None else "*.gguf", cache_dir,
                            progress)
        for extra in additional_files or []:
            _hf_download(repo_id, extra, cache_dir, progress)
        if local_dir is not None:
            os.makedirs(local_dir, exist_ok=True)
            dest = os.path.join(os.fspath(local_dir), os.path.basename(path))
            if not os.path.exists(dest):
                if local_dir_use_symlinks is True:
                    os.symlink(os.path.realpath(path), dest)
                else:
                    tmp = dest + ".incomplete"
                    shutil.copyfile(path, tmp)
                    os.replace(tmp, dest)
            path = dest
        return cls(model_path=path, **kwargs)


_env_lock = threading.Lock()


def _hf_download(repo_id, filename, cache_dir, progress):
    """llamita_hf_download; returns the snapshot path. cache_dir sets $HF_HUB_CACHE for the call."""
    repo_b = _text_bytes("repo_id", repo_id)
    file_b = _text_bytes("filename", filename)
    fn = _lib.func("llamita_hf_download")
    with _env_lock:
        saved = os.environ.get("HF_HUB_CACHE")
        if cache_dir is not None:
            os.environ["HF_HUB_CACHE"] = os.fspath(cache_dir)
        try:
            err = _lib.err_buf()
            ptr = fn(repo_b, file_b, None, bool(progress), err, _lib.ERR_SIZE)
        finally:
            if cache_dir is not None:
                if saved is None:
                    del os.environ["HF_HUB_CACHE"]
                else:
                    os.environ["HF_HUB_CACHE"] = saved
    if not ptr:
        raise RuntimeError(_lib.err_text(err, "download of %s from %s failed" % (filename, repo_id)))
    return _lib.take_string(ptr)


def _final_text_chunk(final):
    """The closing text_completion chunk llama-cpp-python sends: empty text with finish_reason."""
    choice = (final.get("choices") or [{}])[0]
    return {"id": final.get("id"), "object": "text_completion", "created": final.get("created"),
            "model": final.get("model"),
            "choices": [{"text": "", "index": 0, "logprobs": None,
                         "finish_reason": choice.get("finish_reason")}]}


def _final_chat_chunk(final):
    """The closing chat.completion.chunk: an empty delta with finish_reason."""
    choice = (final.get("choices") or [{}])[0]
    return {"id": final.get("id"), "object": "chat.completion.chunk", "created": final.get("created"),
            "model": final.get("model"),
            "choices": [{"index": 0, "delta": {}, "logprobs": None,
                         "finish_reason": choice.get("finish_reason")}]}
