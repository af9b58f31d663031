"""The one compiled AES of ppxgb: AES-128 for the vertical protocol's PRF (prf.py) and
AES-256 for the OPE coin tape (ope.py), callable inside numba kernels.

Why hand-written when `cryptography` has AES: both users call AES from inside compiled
loops (one block per row of a permutation, one or two blocks per node of the OPE
bisection), and leaving a numba kernel for Python costs microseconds per call where a
block costs nanoseconds.  The `cryptography` package stays the reference: the tests
compare every path here against it and against FIPS-197's vectors.

The key sizes share everything but the key schedule and the number of rounds, so a
schedule is one array and the rounds count is read from its shape:

* round keys: an (rounds + 1, 2) uint64 array; row r holds round key r's 16 bytes
  read as two little-endian words (11 rows for AES-128, 13 for 192, 15 for 256);
* a block: two uint64 words (lo, hi), its 16 bytes read little-endian the same way.

Two implementations of the rounds give the same words: the processor's AES
instructions (AES-NI through LLVM intrinsics, which take any number of rounds) and a
portable T-table AES in 32-bit column words for processors without them.  Measured
per block in a loop (x86-64, numba 0.68): AES-128 1.7 ns with the instructions, 49 ns
portable; AES-256 2.3 ns and 64 ns.
"""

from __future__ import annotations

import platform

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ppxgb.errors import ParameterError


# ---------------------------------------------------------------- tables (FIPS-197)
def _gf_mul(a: int, b: int) -> int:
    """Product in GF(2^8) modulo AES's polynomial x^8 + x^4 + x^3 + x + 1."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
        b >>= 1
    return r


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(S-box, T-tables), built from the definitions rather than typed in.

    The S-box is the affine map of the multiplicative inverse.  te[j, x] is the column
    that MixColumns makes of S(x) when x sits in row j, as a little-endian word (row 0
    in the low byte): one lookup per byte does SubBytes and MixColumns together.
    """
    inverse = [0] * 256
    for a in range(1, 256):
        inverse[a] = next(b for b in range(1, 256) if _gf_mul(a, b) == 1)
    sbox = []
    for a in range(256):
        s = x = inverse[a]
        for _ in range(4):
            x = ((x << 1) | (x >> 7)) & 0xFF
            s ^= x
        sbox.append(s ^ 0x63)
    te = np.zeros((4, 256), dtype=np.int64)
    for x, s in enumerate(sbox):
        column = _gf_mul(s, 2) | (s << 8) | (s << 16) | (_gf_mul(s, 3) << 24)
        for j in range(4):                 # row j: the column rotated up by j bytes
            te[j, x] = ((column << (8 * j)) | (column >> (32 - 8 * j))) & 0xFFFFFFFF
    return np.array(sbox, dtype=np.int64), te


SBOX, TE = _tables()
_T0, _T1, _T2, _T3 = (np.ascontiguousarray(TE[j]) for j in range(4))
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@njit(cache=True, inline="always")
def byte_swap(v):
    """A uint64 with its bytes reversed: counter p < 2^64 as a big-endian 128-bit block
    is the words (0, byte_swap(p)), the layout CTR mode and the PRF use."""
    return (((v & np.uint64(0xFF)) << np.uint64(56)) | ((v & np.uint64(0xFF00)) << np.uint64(40))
            | ((v & np.uint64(0xFF0000)) << np.uint64(24)) | ((v & np.uint64(0xFF000000)) << np.uint64(8))
            | ((v >> np.uint64(8)) & np.uint64(0xFF000000)) | ((v >> np.uint64(24)) & np.uint64(0xFF0000))
            | ((v >> np.uint64(40)) & np.uint64(0xFF00)) | (v >> np.uint64(56)))


# ---------------------------------------------------------------- key schedule
@njit(cache=True, inline="always")
def _sub_word(t):
    """SubWord: the S-box on each byte of a 32-bit word."""
    return (SBOX[t & 0xFF] | (SBOX[(t >> 8) & 0xFF] << 8) | (SBOX[(t >> 16) & 0xFF] << 16)
            | (SBOX[(t >> 24) & 0xFF] << 24))


@njit(cache=True, inline="always")
def _schedule(words, nk):
    """Words nk.. of the key expansion, from the key's nk words already in place; nk is
    a constant at each call, so `i % nk` needs no division."""
    rcon = 1
    for i in range(nk, 4 * (nk + 7)):
        t = np.int64(words[i - 1])
        if i % nk == 0:                          # RotWord is a byte rotation down
            t = _sub_word((t >> 8) | ((t & 0xFF) << 24)) ^ rcon
            rcon = ((rcon << 1) ^ 0x11B) if rcon & 0x80 else rcon << 1
        elif nk > 6 and i % nk == 4:
            t = _sub_word(t)
        words[i] = np.int64(words[i - nk]) ^ t


@njit(cache=True, inline="always")
def column_words(rk):
    """The round keys as one flat uint32 array, a view: the key schedule's words."""
    return rk.reshape(-1).view(np.uint32)


@njit(cache=True, nogil=True)
def expand_words(key, words):
    """FIPS-197's key expansion of `key` (16, 24 or 32 uint8) into words =
    column_words(rk).  A loop that changes keys (the OPE, once per node) takes the view
    once: making it costs about a third of an AES-256 schedule."""
    nk = key.shape[0] // 4
    for i in range(nk):
        words[i] = (np.int64(key[4 * i]) | (np.int64(key[4 * i + 1]) << 8)
                    | (np.int64(key[4 * i + 2]) << 16) | (np.int64(key[4 * i + 3]) << 24))
    if nk == 4:
        _schedule(words, 4)
    elif nk == 8:
        _schedule(words, 8)
    else:
        _schedule(words, 6)


@njit(cache=True, nogil=True)
def expand_into(key, rk):
    """The key expansion of `key` into rk, an (len(key) / 4 + 7, 2) uint64 array."""
    expand_words(key, column_words(rk))


@njit(cache=True, nogil=True)
def expand(key):
    """The round keys of `key` (16, 24 or 32 uint8) as a new array."""
    rk = np.empty((key.shape[0] // 4 + 7, 2), np.uint64)
    expand_into(key, rk)
    return rk


def round_keys(key: bytes) -> np.ndarray:
    """The AES round keys of a 16-, 24- or 32-byte key, or ParameterError."""
    if not isinstance(key, (bytes, bytearray)) or len(key) not in (16, 24, 32):
        got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise ParameterError.bad("AES key", "16, 24 or 32 bytes", got)
    return expand(np.frombuffer(bytes(key), dtype=np.uint8))


# ---------------------------------------------------------------- AES instructions
def _round_intrinsic(name: str):
    """One AES round instruction on (state, round key), each as two uint64 words."""
    @intrinsic
    def aes_round(typingctx, lo, hi, klo, khi):
        sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64, types.uint64, types.uint64)

        def codegen(context, builder, signature, args):
            from llvmlite import ir
            vt = ir.VectorType(ir.IntType(64), 2)
            zero, one = ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 1)

            def vec(a, b):
                return builder.insert_element(builder.insert_element(ir.Constant(vt, ir.Undefined), a, zero), b, one)
            fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(vt, [vt, vt]))
            r = builder.call(fn, [vec(args[0], args[1]), vec(args[2], args[3])])
            return context.make_tuple(builder, signature.return_type,
                                      [builder.extract_element(r, zero), builder.extract_element(r, one)])
        return sig, codegen
    return aes_round


_aesenc = _round_intrinsic("llvm.x86.aesni.aesenc")
_aesenclast = _round_intrinsic("llvm.x86.aesni.aesenclast")


@njit(cache=True, inline="always")
def _rounds_ni(rk, a, b, last):
    for r in range(1, last):
        a, b = _aesenc(a, b, rk[r, 0], rk[r, 1])
    return _aesenclast(a, b, rk[last, 0], rk[last, 1])


@njit(cache=True, inline="always")
def encrypt_ni(rk, lo, hi):
    """One block with the AES instructions; only call it where AES_INSTRUCTIONS.

    The rounds count is passed on as a constant per key size: a loop of known length
    is unrolled with its round keys held in registers, two to five times faster in
    the PRF's row loops than one bounded by rk.shape[0].
    """
    a, b = lo ^ rk[0, 0], hi ^ rk[0, 1]
    if rk.shape[0] == 11:
        return _rounds_ni(rk, a, b, 10)
    if rk.shape[0] == 15:
        return _rounds_ni(rk, a, b, 14)
    return _rounds_ni(rk, a, b, 12)


@njit(cache=True, inline="always")
def _rounds4_ni(rk, l0, h0, l1, h1, l2, h2, l3, h3, last):
    for r in range(1, last):
        k0, k1 = rk[r, 0], rk[r, 1]
        l0, h0 = _aesenc(l0, h0, k0, k1)
        l1, h1 = _aesenc(l1, h1, k0, k1)
        l2, h2 = _aesenc(l2, h2, k0, k1)
        l3, h3 = _aesenc(l3, h3, k0, k1)
    k0, k1 = rk[last, 0], rk[last, 1]
    l0, h0 = _aesenclast(l0, h0, k0, k1)
    l1, h1 = _aesenclast(l1, h1, k0, k1)
    l2, h2 = _aesenclast(l2, h2, k0, k1)
    l3, h3 = _aesenclast(l3, h3, k0, k1)
    return l0, h0, l1, h1, l2, h2, l3, h3


@njit(cache=True, inline="always")
def encrypt4_ni(rk, l0, h0, l1, h1, l2, h2, l3, h3):
    """Four independent blocks interleaved, so the AES unit pipelines their rounds."""
    k0, k1 = rk[0, 0], rk[0, 1]
    l0, h0, l1, h1, l2, h2, l3, h3 = l0 ^ k0, h0 ^ k1, l1 ^ k0, h1 ^ k1, l2 ^ k0, h2 ^ k1, l3 ^ k0, h3 ^ k1
    if rk.shape[0] == 11:
        return _rounds4_ni(rk, l0, h0, l1, h1, l2, h2, l3, h3, 10)
    if rk.shape[0] == 15:
        return _rounds4_ni(rk, l0, h0, l1, h1, l2, h2, l3, h3, 14)
    return _rounds4_ni(rk, l0, h0, l1, h1, l2, h2, l3, h3, 12)


# ---------------------------------------------------------------- portable T-table AES
@njit(cache=True, inline="always")
def _mix(a, b, c, d):
    """One output column of a full round: row i's byte comes from column (c + i)."""
    return _T0[a & 0xFF] ^ _T1[(b >> 8) & 0xFF] ^ _T2[(c >> 16) & 0xFF] ^ _T3[(d >> 24) & 0xFF]


@njit(cache=True, inline="always")
def _last(a, b, c, d):
    """One output column of the final round (SubBytes and ShiftRows, no MixColumns)."""
    return (SBOX[a & 0xFF] | (SBOX[(b >> 8) & 0xFF] << 8) | (SBOX[(c >> 16) & 0xFF] << 16)
            | (SBOX[(d >> 24) & 0xFF] << 24))


@njit(cache=True, inline="always")
def _halves(v):
    """A uint64 as its two 32-bit column words (int64), low first."""
    return np.int64(v & _M32), np.int64(v >> _S32)


@njit(cache=True, nogil=True)
def encrypt_portable(rk, lo, hi):
    """One block with table lookups: the same words as encrypt_ni, on any processor."""
    last = rk.shape[0] - 1
    s0, s1 = _halves(lo ^ rk[0, 0])
    s2, s3 = _halves(hi ^ rk[0, 1])
    for r in range(1, last):
        k0, k1 = _halves(rk[r, 0])
        k2, k3 = _halves(rk[r, 1])
        s0, s1, s2, s3 = (_mix(s0, s1, s2, s3) ^ k0, _mix(s1, s2, s3, s0) ^ k1,
                          _mix(s2, s3, s0, s1) ^ k2, _mix(s3, s0, s1, s2) ^ k3)
    a = np.uint64(_last(s0, s1, s2, s3)) | (np.uint64(_last(s1, s2, s3, s0)) << _S32)
    b = np.uint64(_last(s2, s3, s0, s1)) | (np.uint64(_last(s3, s0, s1, s2)) << _S32)
    return a ^ rk[last, 0], b ^ rk[last, 1]


@njit(cache=True, nogil=True)
def encrypt4_portable(rk, l0, h0, l1, h1, l2, h2, l3, h3):
    """Four blocks, one after the other (table lookups gain nothing from interleaving)."""
    l0, h0 = encrypt_portable(rk, l0, h0)
    l1, h1 = encrypt_portable(rk, l1, h1)
    l2, h2 = encrypt_portable(rk, l2, h2)
    l3, h3 = encrypt_portable(rk, l3, h3)
    return l0, h0, l1, h1, l2, h2, l3, h3


# ---------------------------------------------------------------- selection
def _has_aes_instructions() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        from llvmlite import binding
        return bool(binding.get_host_cpu_features().get("aes"))
    except Exception:       # no feature list: take the portable path
        return False


#: Whether this processor runs `encrypt` / `encrypt4` with its AES instructions.
AES_INSTRUCTIONS = _has_aes_instructions()
encrypt, encrypt4 = (encrypt_ni, encrypt4_ni) if AES_INSTRUCTIONS else (encrypt_portable, encrypt4_portable)


@njit(cache=True, nogil=True)
def _ecb_ni(rk, words, out):
    for i in range(words.shape[0]):
        out[i, 0], out[i, 1] = encrypt_ni(rk, words[i, 0], words[i, 1])
    return out


@njit(cache=True, nogil=True)
def _ecb_portable(rk, words, out):
    for i in range(words.shape[0]):
        out[i, 0], out[i, 1] = encrypt_portable(rk, words[i, 0], words[i, 1])
    return out


def encrypt_blocks(rk: np.ndarray, blocks: bytes, portable: bool = False) -> bytes:
    """AES (ECB) of whole 16-byte blocks from Python: for tests and one-off use.

    `portable` forces the table path even where the AES instructions exist.
    """
    if not isinstance(rk, np.ndarray) or rk.dtype != np.uint64 or rk.shape not in ((11, 2), (13, 2), (15, 2)):
        raise ParameterError.bad("round keys", "an (11|13|15, 2) uint64 array from round_keys",
                                 getattr(rk, "shape", type(rk).__name__))
    if len(blocks) % 16:
        raise ParameterError.bad("blocks", "a multiple of 16 bytes", f"{len(blocks)} bytes")
    words = np.frombuffer(bytes(blocks), dtype=np.uint64).reshape(-1, 2)
    kernel = _ecb_ni if AES_INSTRUCTIONS and not portable else _ecb_portable
    return kernel(rk, words, np.empty_like(words)).tobytes()
