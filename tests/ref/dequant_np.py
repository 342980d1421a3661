"""Independent NumPy dequantizers for every ggml tensor type llamita supports.

Written from the GGUF / ggml block-layout description (not from llamita's C code), vectorized over
blocks. Arithmetic is float32 with the same single rounding per element as ggml's scalar
dequantizers (every product of a scale and a quant below is exact in float32, so the only rounding is
the final multiply or subtract), which makes the result bit-identical to ggml's.

    dequantize(raw: bytes | memoryview | np.ndarray[uint8], type_id: int, n: int) -> np.ndarray float32[n]

type ids as in gguf_np.GGML_TYPES. n must be a multiple of the type's block size; raw must hold at
least n / block_size * type_size bytes (extra bytes are ignored).
"""
import numpy as np

try:  # imported as a package module or with tests/ref on sys.path
    from gguf_np import GGML_TYPES
except ImportError:  # pragma: no cover
    from .gguf_np import GGML_TYPES

QK_K = 256


def _f16(b):
    """[..., 2] uint8 -> float32 (little-endian IEEE half)."""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(np.float32)


def _blocks(raw, nb, ts):
    """raw bytes -> uint8 array [nb][ts]."""
    a = np.frombuffer(raw, dtype=np.uint8, count=nb * ts) if not isinstance(raw, np.ndarray) \
        else np.asarray(raw, dtype=np.uint8).reshape(-1)[:nb * ts]
    return a.reshape(nb, ts)


def _nibbles(qs):
    """qs [nb][16] -> [nb][32]: element j = low nibble of qs[j], element j+16 = high nibble."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _q4_0(b):
    d = _f16(b[:, 0:2])
    q = _nibbles(b[:, 2:18]).astype(np.int8) - np.int8(8)
    return d[:, None] * q.astype(np.float32)


def _q4_1(b):
    d = _f16(b[:, 0:2])
    m = _f16(b[:, 2:4])
    q = _nibbles(b[:, 4:20]).astype(np.float32)
    return d[:, None] * q + m[:, None]


def _qh_bits(qh4):
    """qh [nb][4] uint8 (a LE uint32) -> [nb][32] bit j = 5th bit of element j, as 0/16."""
    qh = np.ascontiguousarray(qh4).view("<u4")[:, 0]
    bits = (qh[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & 1
    return (bits * 16).astype(np.uint8)


def _q5_0(b):
    d = _f16(b[:, 0:2])
    hi = _qh_bits(b[:, 2:6])
    q = (_nibbles(b[:, 6:22]) | hi).astype(np.int16) - 16
    return d[:, None] * q.astype(np.float32)


def _q5_1(b):
    d = _f16(b[:, 0:2])
    m = _f16(b[:, 2:4])
    hi = _qh_bits(b[:, 4:8])
    q = (_nibbles(b[:, 8:24]) | hi).astype(np.float32)
    return d[:, None] * q + m[:, None]


def _q8_0(b):
    d = _f16(b[:, 0:2])
    q = b[:, 2:34].view(np.int8).astype(np.float32)
    return d[:, None] * q


def _q8_1(b):
    d = _f16(b[:, 0:2])  # b[:, 2:4] is s = d * sum(q), not needed to dequantize
    q = b[:, 4:36].view(np.int8).astype(np.float32)
    return d[:, None] * q


# Element e of a 256-superblock in Q2_K / Q3_K: e = h*128 + j*32 + k*16 + l
# (h half 0..1, j 2-bit plane 0..3, k 0..1, l 0..15); its 2 low bits are bits 2j..2j+1 of
# qs[h*32 + k*16 + l]; its sub-block (scale index) is h*8 + j*2 + k = e // 16.
# Q3_K's high bit of element e is bit (h*4 + j) of hmask[k*16 + l].
_SHIFT_2BIT = (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]   # j -> 2j
_SHIFT_HMASK = np.arange(8, dtype=np.uint8).reshape(1, 2, 4, 1)         # (h, j) -> h*4 + j


def _planes_2bit(qs):
    """qs [nb][64] -> [nb][256] 2-bit values in element order (h, j, k*16+l)."""
    q = (qs.reshape(-1, 2, 1, 32) >> _SHIFT_2BIT) & 3   # [nb][h][j][32]
    return q.reshape(-1, 256)


def _q2_k(b):
    scales = b[:, 0:16]
    d = _f16(b[:, 80:82])
    dmin = _f16(b[:, 82:84])
    q = _planes_2bit(b[:, 16:80]).reshape(-1, 16, 16).astype(np.float32)   # [nb][sub][16]
    dl = d[:, None] * (scales & 0x0F).astype(np.float32)                    # [nb][sub], exact
    ml = dmin[:, None] * (scales >> 4).astype(np.float32)
    return dl[:, :, None] * q - ml[:, :, None]


def _q3_k_scales(s):
    """scales [nb][12] -> [nb][16] signed 6-bit scales (stored value - 32).

    Scale i: low 4 bits are the low nibble of s[i] (i < 8) or the high nibble of s[i-8] (i >= 8);
    high 2 bits are bits 2*(i//4).. of s[8 + i%4]."""
    i = np.arange(16)
    low = np.where(i < 8, s[:, i % 8] & 0x0F, s[:, i % 8] >> 4)
    high = (s[:, 8 + i % 4] >> (2 * (i // 4)).astype(np.uint8)) & 3
    return (low | (high << 4)).astype(np.int16) - 32


def _q3_k(b):
    hmask = b[:, 0:32]
    scales = _q3_k_scales(b[:, 96:108])
    d = _f16(b[:, 108:110])
    low = _planes_2bit(b[:, 32:96]).astype(np.int8)
    hbit = ((hmask[:, None, None, :] >> _SHIFT_HMASK) & 1).reshape(-1, 256)
    q = (low - np.int8(4) * (hbit == 0)).astype(np.float32).reshape(-1, 16, 16)
    dl = d[:, None] * scales.astype(np.float32)                              # exact
    return dl[:, :, None] * q


def _k4_scale_min(s):
    """12-byte packed scales of Q4_K / Q5_K -> (sc, m), each [nb][8] 6-bit unsigned.

    For j < 4: sc = s[j] & 63, m = s[j+4] & 63; for j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
    m = (s[j+4] >> 4) | (s[j] >> 6) << 4."""
    sc = np.empty((s.shape[0], 8), dtype=np.uint8)
    m = np.empty((s.shape[0], 8), dtype=np.uint8)
    sc[:, 0:4] = s[:, 0:4] & 63
    m[:, 0:4] = s[:, 4:8] & 63
    sc[:, 4:8] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:8] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


# Q4_K / Q5_K element e = c*64 + t*32 + l: nibble t of qs[c*32 + l]; sub-block e // 32 = 2c + t.
def _nibbles_k4(qs):
    """qs [nb][128] -> [nb][8][32] 4-bit values by sub-block."""
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 15, q >> 4], axis=2).reshape(-1, 8, 32)


def _k4_affine(b, q):
    """y = d*sc*q - dmin*m per sub-block; q [nb][8][32] float32."""
    d = _f16(b[:, 0:2])
    dmin = _f16(b[:, 2:4])
    sc, m = _k4_scale_min(b[:, 4:16])
    d1 = d[:, None] * sc.astype(np.float32)      # exact
    m1 = dmin[:, None] * m.astype(np.float32)    # exact
    return d1[:, :, None] * q - m1[:, :, None]


def _q4_k(b):
    return _k4_affine(b, _nibbles_k4(b[:, 16:144]).astype(np.float32))


_SHIFT_Q5K = np.arange(8, dtype=np.uint8)[None, :, None]


def _q5_k(b):
    qh = b[:, 16:48]
    low = _nibbles_k4(b[:, 48:176])
    hbit = (qh[:, None, :] >> _SHIFT_Q5K) & 1        # 5th bit of element e: bit e//32 of qh[e%32]
    return _k4_affine(b, (low | (hbit << 4)).astype(np.float32))


# Q6_K element e = h*128 + p*32 + l (h half, p quarter 0..3, l 0..31):
# low 4 bits: nibble (p // 2) of ql[h*64 + (p % 2)*32 + l]; high 2 bits: bits 2p.. of qh[h*32 + l];
# scale index e // 16.
_SHIFT_Q6K = (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]


def _q6_k(b):
    ql = b[:, 0:128].reshape(-1, 2, 1, 2, 32)                                    # [nb][h][.][p%2][l]
    low = np.concatenate([ql & 15, ql >> 4], axis=2).reshape(-1, 2, 4, 32)       # [nb][h][p][l]
    high = (b[:, 128:192].reshape(-1, 2, 1, 32) >> _SHIFT_Q6K) & 3               # [nb][h][p][l]
    q = ((low | (high << 4)).astype(np.int8) - np.int8(32)).astype(np.float32).reshape(-1, 16, 16)
    scales = b[:, 192:208].view(np.int8)
    d = _f16(b[:, 208:210])
    ds = d[:, None] * scales.astype(np.float32)  # exact: 11-bit x 8-bit
    return ds[:, :, None] * q


def _q8_k(b):
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4")[:, 0]
    q = b[:, 4:260].view(np.int8).astype(np.float32)
    return d[:, None] * q  # b[:, 260:292] are the int16 bsums


_BLOCK_FN = {
    2: _q4_0, 3: _q4_1, 6: _q5_0, 7: _q5_1, 8: _q8_0, 9: _q8_1,
    10: _q2_k, 11: _q3_k, 12: _q4_k, 13: _q5_k, 14: _q6_k, 15: _q8_k,
}


def dequantize(raw, type_id, n):
    """Dequantize the first n elements stored in raw (ggml type type_id) to float32[n]."""
    if type_id not in GGML_TYPES:
        raise ValueError("unsupported ggml type id %d" % type_id)
    name, bs, ts = GGML_TYPES[type_id]
    n = int(n)
    if n < 0 or n % bs:
        raise ValueError("%s: n=%d is not a multiple of the block size %d" % (name, n, bs))
    nb = n // bs
    nbytes = nb * ts
    if isinstance(raw, np.ndarray):
        raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        have = raw.size
    else:
        have = len(memoryview(raw).cast("B"))
    if have < nbytes:
        raise ValueError("%s: %d elements need %d bytes, got %d" % (name, n, nbytes, have))
    if type_id == 0:
        return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32)
    if type_id == 1:
        return np.frombuffer(raw, dtype="<f2", count=n).astype(np.float32)
    if type_id == 30:
        u = np.frombuffer(raw, dtype="<u2", count=n).astype(np.uint32) << 16
        return u.view(np.float32)
    b = _blocks(raw, nb, ts)
    out = _BLOCK_FN[type_id](b)
    return np.ascontiguousarray(out, dtype=np.float32).reshape(n)
