"""ctypes declarations for libllamita.so (the C API of include/llamita.h).

Only this module knows C types. The shared library is found, in order:
  1. the path in the environment variable LLAMITA_LIB;
  2. libllamita.so inside this package's folder (for a wheel or a copy that bundles it);
  3. <repo>/build/libllamita.so when the package is used from a source checkout
     (<repo>/python/llamita/_lib.py);
  4. ctypes.util.find_library("llamita") (a system-wide install, e.g. /usr/local/lib).
It is loaded on first use (not at import), so `import llamita` always works and the error names
every place that was searched.

The struct layouts below mirror include/llamita.h exactly; tests/py/test_python.py checks them
against the values the C *_default_params() functions return.
"""
import ctypes
import ctypes.util
import os
import threading

# llamita_token / llamita_pos / llamita_seq_id are int32_t
c_token = ctypes.c_int32
ERR_SIZE = 1024  # bytes of the error buffer passed as (char *err, size_t err_size)

# Sentinel of llamita.h: LLAMITA_DEFAULT_SEED = UINT64_MAX picks a seed from the clock.
C_DEFAULT_SEED = (1 << 64) - 1
INT32_MIN = -(1 << 31)


class ModelParams(ctypes.Structure):
    """struct llamita_model_params."""
    _fields_ = [
        ("n_gpu_layers", ctypes.c_int32),
        ("vocab_only", ctypes.c_bool),
        ("verbose", ctypes.c_bool),
    ]


class ContextParams(ctypes.Structure):
    """struct llamita_context_params."""
    _fields_ = [
        ("n_ctx", ctypes.c_uint32),
        ("n_batch", ctypes.c_uint32),
        ("n_threads", ctypes.c_int32),
        ("n_seq_max", ctypes.c_uint32),
    ]


class SamplerParams(ctypes.Structure):
    """struct llamita_sampler_params."""
    _fields_ = [
        ("temp", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("frequency_penalty", ctypes.c_float),
        ("presence_penalty", ctypes.c_float),
        ("penalty_last_n", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ]


class CompletionParams(ctypes.Structure):
    """struct llamita_completion_params. `stop` points at n_stop char* (kept alive by the caller)."""
    _fields_ = [
        ("max_tokens", ctypes.c_int32),
        ("stop", ctypes.POINTER(ctypes.c_char_p)),
        ("n_stop", ctypes.c_int32),
        ("echo", ctypes.c_bool),
        ("logprobs", ctypes.c_int32),
        ("ignore_eos", ctypes.c_bool),
        ("sampling", SamplerParams),
        ("model_name", ctypes.c_char_p),
        ("chat_template", ctypes.c_char_p),
    ]


class TensorInfo(ctypes.Structure):
    """struct llamita_tensor_info."""
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("type_name", ctypes.c_char_p),
        ("n_dims", ctypes.c_int32),
        ("ne", ctypes.c_int64 * 4),
        ("offset", ctypes.c_uint64),
        ("nbytes", ctypes.c_uint64),
    ]


# bool (*llamita_chunk_cb)(const char *chunk_json, void *user)
CHUNK_CB = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p, ctypes.c_void_p)

_vp = ctypes.c_void_p
_cp = ctypes.c_char_p
_sz = ctypes.c_size_t
_i32 = ctypes.c_int32
_b = ctypes.c_bool

# name: (restype, argtypes). Functions that return malloc'd strings use c_void_p so the pointer can
# be given back to llamita_free (a c_char_p restype would copy and lose it).
_CORE = {
    "llamita_version": (_cp, []),
    "llamita_n_physical_cores": (_i32, []),
    "llamita_model_default_params": (ModelParams, []),
    "llamita_model_load": (_vp, [_cp, ModelParams, _cp, _sz]),
    "llamita_model_free": (None, [_vp]),
    "llamita_model_n_vocab": (_i32, [_vp]),
    "llamita_model_n_ctx_train": (_i32, [_vp]),
    "llamita_model_n_embd": (_i32, [_vp]),
    "llamita_model_n_layer": (_i32, [_vp]),
    "llamita_model_n_params": (ctypes.c_uint64, [_vp]),
    "llamita_model_size": (ctypes.c_uint64, [_vp]),
    "llamita_model_desc": (_cp, [_vp]),
    "llamita_model_meta_count": (_i32, [_vp]),
    "llamita_model_meta_key": (_cp, [_vp, _i32]),
    "llamita_model_meta_val_str": (_i32, [_vp, _cp, _cp, _sz]),
    "llamita_token_bos": (c_token, [_vp]),
    "llamita_token_eos": (c_token, [_vp]),
    "llamita_token_is_eog": (_b, [_vp, c_token]),
    "llamita_add_bos": (_b, [_vp]),
    "llamita_token_get_text": (_cp, [_vp, c_token]),
    "llamita_tokenize": (_i32, [_vp, _cp, _i32, ctypes.POINTER(c_token), _i32, _b, _b]),
    "llamita_token_to_piece": (_i32, [_vp, c_token, _cp, _i32, _i32, _b]),
    "llamita_context_default_params": (ContextParams, []),
    "llamita_context_new": (_vp, [_vp, ContextParams, _cp, _sz]),
    "llamita_context_free": (None, [_vp]),
    "llamita_n_ctx": (ctypes.c_uint32, [_vp]),
    "llamita_kv_clear": (None, [_vp]),
    "llamita_sampler_default_params": (SamplerParams, []),
}

# Written by other modules (generate.c, chat.c, hub.c); optional so that the binding still loads
# a library built before they existed — calling one that is missing raises a clear error.
_OPTIONAL = {
    "llamita_free": (None, [_vp]),
    "llamita_completion_default_params": (CompletionParams, []),
    "llamita_completion": (_vp, [_vp, _cp, ctypes.POINTER(CompletionParams), CHUNK_CB, _vp, _cp, _sz]),
    "llamita_chat_completion": (_vp, [_vp, _cp, ctypes.POINTER(CompletionParams), CHUNK_CB, _vp,
                                      _cp, _sz]),
    "llamita_chat_apply_template": (_vp, [_vp, _cp, _cp, _b, _cp, _cp, _cp, _sz]),
    "llamita_hf_download": (_vp, [_cp, _cp, _cp, _b, _cp, _sz]),
}

_lock = threading.Lock()
_lib = None
_path = None


def candidates():
    """The library paths tried, in order (see the module docstring)."""
    out = []
    env = os.environ.get("LLAMITA_LIB")
    if env:
        out.append(env)
    here = os.path.dirname(os.path.abspath(__file__))
    out.append(os.path.join(here, "libllamita.so"))
    repo = os.path.dirname(os.path.dirname(here))
    out.append(os.path.join(repo, "build", "libllamita.so"))
    return out


def load():
    """Returns the loaded CDLL (loading and declaring it on first call). Raises OSError naming
    every path tried when the library cannot be found or loaded."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        lib = None
        env = os.environ.get("LLAMITA_LIB")
        for path in candidates():
            if not os.path.isfile(path):
                tried.append(path + " (not found)")
                if env and path == env:
                    # an explicit LLAMITA_LIB that does not exist is an error, not a hint
                    raise OSError("LLAMITA_LIB=%s: no such file" % env)
                continue
            try:
                lib = ctypes.CDLL(path)
                _path = path
                break
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
                if env and path == env:
                    raise OSError("LLAMITA_LIB=%s: cannot load it: %s" % (env, e))
        if lib is None:
            found = ctypes.util.find_library("llamita")
            if found:
                try:
                    lib = ctypes.CDLL(found)
                    _path = found
                except OSError as e:
                    tried.append("%s (%s)" % (found, e))
            else:
                tried.append("find_library('llamita') (not found)")
        if lib is None:
            raise OSError("cannot find libllamita.so; build it with `make` in the llamita source "
                          "folder or set LLAMITA_LIB to its path. Tried: " + "; ".join(tried))
        for name, (res, args) in _CORE.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise OSError("%s: missing symbol %s (library older than this binding?)" % (_path, name))
            fn.restype = res
            fn.argtypes = args
        for name, (res, args) in _OPTIONAL.items():
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = res
                fn.argtypes = args
        _lib = lib
        return lib


def path():
    """The path of the loaded library (loads it first)."""
    load()
    return _path


def has(name):
    """True when the loaded library exports the function `name`."""
    return getattr(load(), name, None) is not None


def func(name):
    """The declared C function `name`; RuntimeError when this library build lacks it."""
    fn = getattr(load(), name, None)
    if fn is None:
        raise RuntimeError("%s does not export %s: rebuild it from a source tree that has it (make)"
                           % (_path, name))
    return fn


def err_buf():
    """A fresh zeroed error buffer for (char *err, size_t err_size) arguments."""
    return ctypes.create_string_buffer(ERR_SIZE)


def err_text(buf, fallback):
    """The message the C side wrote into buf, or `fallback` when it wrote none."""
    msg = buf.value.decode("utf-8", errors="replace").strip()
    return msg or fallback


def take_string(ptr):
    """Copies the malloc'd NUL-terminated string at ptr (an int from a c_void_p restype) into a
    Python str (UTF-8, invalid bytes replaced) and frees it with llamita_free. ptr must not be 0."""
    try:
        raw = ctypes.string_at(ptr)
    finally:
        func("llamita_free")(ptr)
    return raw.decode("utf-8", errors="replace")
