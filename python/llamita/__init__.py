"""llamita: Python binding of the llamita inference engine (ctypes over libllamita.so, stdlib only).

    from llamita import Llama
    llm = Llama(model_path="tinyllama-1.1b-chat-v1.0.Q8_0.gguf", n_ctx=512)
    print(llm("Q: What is 2 + 2? A:", max_tokens=16, stop=["\\n"])["choices"][0]["text"])

`Llama` mirrors llama-cpp-python's class of the same name; see llamita/llama.py and python/README.md.
The shared library is found through $LLAMITA_LIB, next to the package, in <checkout>/build/, or by
ctypes.util.find_library("llamita").
"""
from .llama import LLAMA_DEFAULT_SEED, Llama, LlamitaWarning

__all__ = ["Llama", "LlamitaWarning", "LLAMA_DEFAULT_SEED", "library_version"]
__version__ = "0.1.0"


def library_version():
    """The version string of the loaded libllamita (llamita_version())."""
    from . import _lib
    return _lib.load().llamita_version().decode()
