"""GGUF writer/reader cross-checks against the independent NumPy reader (tests/ref/gguf_np.py).

1. tests/tools/gguf_write_sample (llamita's writer) writes a file with every value type, arrays of
   every element type, string arrays and tensors of several types; gguf_np reads it back and every
   value, tensor shape/type/offset and data byte is checked, plus the layout rules of the spec
   (aligned data start and offsets, tensors packed in order, each padded to the alignment).
   Variants: v3 and v2, default alignment (32), 64 and 1.
2. For every .gguf under ../shared, tests/tools/gguf_dump (llamita's reader) prints what it sees;
   it must agree with gguf_np on version, alignment, data offset, every key (order, type, array
   element type and count, value rendering) and every tensor (type, shape, offset, size, CRC-32 of
   the data).
"""
import os
import subprocess
import sys
import tempfile
import unittest
import zlib

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
import gguf_np  # noqa: E402

BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
HAVE_SHARED = os.path.isdir(SHARED)
WRITE_SAMPLE = os.path.join(BUILD, "tests", "tools", "gguf_write_sample")
DUMP = os.path.join(BUILD, "tests", "tools", "gguf_dump")

TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"]

# The sample's specification (tests/tools/gguf_write_sample.c): key -> (value type, value).
SAMPLE_SCALARS = [
    ("general.architecture", gguf_np.T_STR, "llama"),
    ("s.u8", gguf_np.T_U8, 200),
    ("s.i8", gguf_np.T_I8, -100),
    ("s.u16", gguf_np.T_U16, 65000),
    ("s.i16", gguf_np.T_I16, -32000),
    ("s.u32", gguf_np.T_U32, 4000000000),
    ("s.i32", gguf_np.T_I32, -2000000000),
    ("s.u64", gguf_np.T_U64, 18000000000000000000),
    ("s.i64", gguf_np.T_I64, -9000000000000000000),
    ("s.f32", gguf_np.T_F32, float(np.float32(0.1))),
    ("s.f64", gguf_np.T_F64, 0.1),
    ("s.bool_t", gguf_np.T_BOOL, True),
    ("s.bool_f", gguf_np.T_BOOL, False),
    ("s.str", gguf_np.T_STR, "h\u00e9llo \"world\"\n"),
    ("s.empty", gguf_np.T_STR, ""),
]
SAMPLE_ARRAYS = [
    ("a.u8", np.uint8, [0, 1, 255]),
    ("a.i8", np.int8, [-128, 0, 127]),
    ("a.u16", np.uint16, [0, 65535]),
    ("a.i16", np.int16, [-32768, 32767]),
    ("a.u32", np.uint32, [0, 1, 0xFFFFFFFF]),
    ("a.i32", np.int32, [-2**31, -1, 2**31 - 1]),
    ("a.f32", np.float32, [1.5, -0.25, 1e-30]),
    ("a.bool", np.bool_, [True, False, True]),
    ("a.u64", np.uint64, [2**64 - 1, 0]),
    ("a.i64", np.int64, [-2**63, 2**63 - 1]),
    ("a.f64", np.float64, [1e300, -2.5]),
    ("a.empty", np.int32, []),
]
SAMPLE_STR_ARRAYS = [("a.str", ["<unk>", "", "\u2581the", "a\tb"]), ("a.empty_str", [])]
# name, ggml type name, shape (ne order), bytes
SAMPLE_TENSORS = [
    ("t.f32", "F32", [5], 20),
    ("t.f16", "F16", [3, 7], 42),
    ("t.q8_0", "Q8_0", [64, 2, 3], 2 * 34 * 6),
    ("t.q4_k", "Q4_K", [512, 3], 2 * 144 * 3),
    ("t.q6_k", "Q6_K", [256, 1, 2, 3], 210 * 6),
    ("t.bf16", "BF16", [10, 3], 60),
]


def sample_bytes(i, n):
    k = np.arange(n, dtype=np.int64)
    return ((k * 31 + i * 7 + 1) % 256).astype(np.uint8).tobytes()


def require_tool(test, path):
    test.assertTrue(os.path.exists(path), "%s is not built (run `make tests`)" % path)


class TestWriterReadByNumpy(unittest.TestCase):
    def check_sample(self, version, alignment):
        require_tool(self, WRITE_SAMPLE)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sample.gguf")
            args = [WRITE_SAMPLE, path, str(version), str(alignment)]
            r = subprocess.run(args, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            g = gguf_np.GGUFFile(path)
            size = os.path.getsize(path)
            leftovers = [f for f in os.listdir(tmp) if f != "sample.gguf"]
        align = alignment or 32
        self.assertEqual(g.version, version)
        self.assertEqual(g.alignment, align)

        # keys: insertion order, general.alignment first when not the default
        keys = [k for k, _, _ in SAMPLE_SCALARS] + [k for k, _, _ in SAMPLE_ARRAYS] + [k for k, _ in SAMPLE_STR_ARRAYS]
        if align != 32:
            keys = ["general.alignment"] + keys
            self.assertEqual(g.kv_types["general.alignment"], gguf_np.T_U32)
            self.assertEqual(g.kv["general.alignment"], align)
        self.assertEqual(list(g.kv.keys()), keys)
        for key, vt, want in SAMPLE_SCALARS:
            self.assertEqual(g.kv_types[key], vt, key)
            self.assertEqual(g.kv[key], want, key)
        for key, dt, want in SAMPLE_ARRAYS:
            self.assertEqual(g.kv_types[key], gguf_np.T_ARR, key)
            got = g.kv[key]
            self.assertEqual(got.dtype, np.dtype(dt), key)
            self.assertTrue(np.array_equal(got, np.array(want, dtype=dt)), key)
        for key, want in SAMPLE_STR_ARRAYS:
            self.assertEqual(g.kv[key], want, key)

        # tensors: packed in order at aligned offsets, each padded; data exactly as written
        self.assertEqual(g.data_start % align, 0)
        self.assertEqual(list(g.tensors.keys()), [t[0] for t in SAMPLE_TENSORS])
        off = 0
        for i, (name, tname, shape, nbytes) in enumerate(SAMPLE_TENSORS):
            t = g.tensors[name]
            self.assertEqual(g.tensor_type_name(name), tname)
            self.assertEqual(t.shape, shape)
            self.assertEqual(t.offset, off, name)
            self.assertEqual(len(t.data), nbytes)
            self.assertEqual(bytes(t.data), sample_bytes(i, nbytes), name)
            off += (nbytes + align - 1) // align * align
        self.assertEqual(size, g.data_start + off)
        self.assertEqual(leftovers, [], "temporary files left behind")
        return g

    def test_v3_default_alignment(self):
        g = self.check_sample(3, 0)
        # zero padding between the last tensor info and the data, and after each tensor
        buf = g.buf
        end = g.data_start + sum((n + 31) // 32 * 32 for _, _, _, n in SAMPLE_TENSORS)
        self.assertEqual(len(buf), end)
        pos = g.data_start
        for _, _, _, n in SAMPLE_TENSORS:
            padded = (n + 31) // 32 * 32
            self.assertEqual(buf[pos + n:pos + padded], bytes(padded - n))
            pos += padded

    def test_v2(self):
        self.check_sample(2, 0)

    def test_alignment_64(self):
        self.check_sample(3, 64)

    def test_alignment_1(self):
        self.check_sample(2, 1)


def render_scalar(vt, v):
    """The text lm_gguf_kv_to_str prints for a scalar, as bytes."""
    if vt == gguf_np.T_STR:
        out = bytearray(b'"')
        for c in v.encode("utf-8", errors="surrogateescape"):
            esc = {0x22: b'\\"', 0x5C: b"\\\\", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}.get(c)
            if esc:
                out += esc
            elif c < 0x20 or c == 0x7F:
                out += b"\\x%02x" % c
            else:
                out.append(c)
        return bytes(out + b'"')
    if vt == gguf_np.T_BOOL:
        return b"true" if v else b"false"
    if vt in (gguf_np.T_F32, gguf_np.T_F64):
        return (b"%g" % float(v))
    return b"%d" % int(v)


def render_value(vt, v, max_elems=3):
    if vt != gguf_np.T_ARR:
        return render_scalar(vt, v)
    if isinstance(v, np.ndarray):
        et = {np.dtype(d): t for t, d in gguf_np._NP.items()}[v.dtype]
        items = [x.item() for x in v]
    else:
        et = gguf_np.T_STR
        items = v
    shown = [render_scalar(et, x) for x in items[:max_elems]]
    if len(items) > max_elems:
        shown.append(b"... (%d total)" % len(items))
    return b"[" + b", ".join(shown) + b"]"


def shared_ggufs():
    out = []
    for sub in ("fixtures/models", "fixtures/quant", "fixtures/vocab32k", "vocab", "models"):
        d = os.path.join(SHARED, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".gguf")]
    return out


@unittest.skipUnless(HAVE_SHARED, "../shared not found (set LLAMITA_SHARED to its path)")
class TestReaderAgreesWithNumpy(unittest.TestCase):
    def test_shared_files(self):
        require_tool(self, DUMP)
        files = shared_ggufs()
        self.assertGreaterEqual(len(files), 32)
        n_keys = n_tensors = 0
        for path in files:
            r = subprocess.run([DUMP, path], capture_output=True)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            g = gguf_np.GGUFFile(path)
            head, kvs, tensors = {}, [], []
            for line in r.stdout.split(b"\n"):
                if not line:
                    continue
                f = line.split(b"\t")
                if f[0] == b"kv":
                    kvs.append(f[1:])
                elif f[0] == b"tensor":
                    tensors.append(f[1:])
                else:
                    head[f[0].decode()] = int(f[1])
            name = os.path.relpath(path, SHARED)
            self.assertEqual(head["version"], g.version, name)
            self.assertEqual(head["alignment"], g.alignment, name)
            self.assertEqual(head["data_offset"], g.data_start, name)
            self.assertEqual(head["n_kv"], len(g.kv), name)
            self.assertEqual(head["n_tensors"], len(g.tensors), name)
            self.assertEqual([k[0].decode("utf-8", "surrogateescape") for k in kvs], list(g.kv.keys()), name)
            for key, vtype, atype, n, text in kvs:
                k = key.decode("utf-8", "surrogateescape")
                vt = g.kv_types[k]
                v = g.kv[k]
                self.assertEqual(vtype.decode(), TYPE_NAMES[vt], (name, k))
                if vt == gguf_np.T_ARR:
                    et = gguf_np.T_STR if isinstance(v, list) else \
                        {np.dtype(d): t for t, d in gguf_np._NP.items()}[v.dtype]
                    self.assertEqual(atype.decode(), TYPE_NAMES[et], (name, k))
                    self.assertEqual(int(n), len(v), (name, k))
                self.assertEqual(text, render_value(vt, v), (name, k))
                n_keys += 1
            self.assertEqual([t[0].decode() for t in tensors], list(g.tensors.keys()), name)
            for tname, tid, dims, off, nbytes, crc in tensors:
                t = g.tensors[tname.decode()]
                self.assertEqual(int(tid), t.type_id, (name, tname))
                self.assertEqual([int(x) for x in dims.split(b",")], t.shape, (name, tname))
                self.assertEqual(int(off), t.offset, (name, tname))
                self.assertEqual(int(nbytes), len(t.data), (name, tname))
                self.assertEqual(int(crc, 16), zlib.crc32(t.data), (name, tname))
                n_tensors += 1
        print("\n%d files, %d keys and %d tensors agree between llamita and gguf_np" % (len(files), n_keys, n_tensors))


if __name__ == "__main__":
    unittest.main()
