"""Independent GGUF reader for the NumPy reference, written from the GGUF spec (not from llamita's C).

    g = GGUFFile(path)
    g.version, g.alignment, g.kv (dict key -> python value; arrays as lists / numpy arrays)
    g.tensors: dict name -> TensorInfo(name, shape (ggml ne order), type_id, offset, raw bytes view)

Only reads; never writes. Used by the NumPy dequantizers (dequant_np.py) and forward pass (llama_np.py).
"""
import struct
from collections import OrderedDict, namedtuple

import numpy as np

GGUF_MAGIC = b"GGUF"

# value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
_SCALAR = {
    T_U8: ("<B", 1), T_I8: ("<b", 1), T_U16: ("<H", 2), T_I16: ("<h", 2), T_U32: ("<I", 4),
    T_I32: ("<i", 4), T_F32: ("<f", 4), T_BOOL: ("<?", 1), T_U64: ("<Q", 8), T_I64: ("<q", 8),
    T_F64: ("<d", 8),
}
_NP = {
    T_U8: np.uint8, T_I8: np.int8, T_U16: np.uint16, T_I16: np.int16, T_U32: np.uint32,
    T_I32: np.int32, T_F32: np.float32, T_BOOL: np.bool_, T_U64: np.uint64, T_I64: np.int64,
    T_F64: np.float64,
}

# ggml tensor types: id -> (name, elements per block, bytes per block)
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 30: ("BF16", 1, 2),
}
TYPE_ID = {v[0]: k for k, v in GGML_TYPES.items()}

TensorInfo = namedtuple("TensorInfo", "name shape type_id offset data")


class GGUFFile:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self._take(4) != GGUF_MAGIC:
            raise ValueError("bad magic")
        (self.version,) = self._unpack("<I")
        if self.version not in (2, 3):
            raise ValueError("unsupported version %d" % self.version)
        n_tensors, n_kv = self._unpack("<QQ")
        self.kv = OrderedDict()
        self.kv_types = OrderedDict()
        for _ in range(n_kv):
            key = self._str()
            (vt,) = self._unpack("<I")
            self.kv[key] = self._value(vt)
            self.kv_types[key] = vt
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            (nd,) = self._unpack("<I")
            shape = list(self._unpack("<%dQ" % nd))
            tid, off = self._unpack("<IQ")
            infos.append((name, shape, tid, off))
        self.alignment = int(self.kv.get("general.alignment", 32))
        data_start = (self.pos + self.alignment - 1) // self.alignment * self.alignment
        self.data_start = data_start
        self.tensors = OrderedDict()
        for name, shape, tid, off in infos:
            _, bs, ts = GGML_TYPES[tid]
            n = int(np.prod(shape))
            nbytes = n // bs * ts
            start = data_start + off
            if start + nbytes > len(self.buf):
                raise ValueError("tensor %s past EOF" % name)
            self.tensors[name] = TensorInfo(name, shape, tid, off,
                                            memoryview(self.buf)[start:start + nbytes])

    def _take(self, n):
        if self.pos + n > len(self.buf):
            raise ValueError("truncated at %d" % self.pos)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self._take(size))

    def _str(self):
        (n,) = self._unpack("<Q")
        return self._take(n).decode("utf-8", errors="surrogateescape")

    def _value(self, vt):
        if vt in _SCALAR:
            return self._unpack(_SCALAR[vt][0])[0]
        if vt == T_STR:
            return self._str()
        if vt == T_ARR:
            et, n = self._unpack("<IQ")
            if et in _NP:
                size = _SCALAR[et][1] * n
                arr = np.frombuffer(self._take(size), dtype=np.dtype(_NP[et]).newbyteorder("<"))
                return arr
            return [self._value(et) for _ in range(n)]
        raise ValueError("bad value type %d" % vt)

    def tensor_type_name(self, name):
        return GGML_TYPES[self.tensors[name].type_id][0]
