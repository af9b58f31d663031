"""The pseudorandom function of the vertical protocol, callable inside numba kernels.

PRF_k(p) = AES-128_k(p as a 16-byte big-endian block), read as two little-endian uint64
words.  Row i of a named stream is PRF_k(i), so a stream is exactly the AES-128-CTR
keystream with a zero initial counter block, and any row of it costs one block
(tests/test_prf.py checks both against the `cryptography` package).

Why not call `cryptography` from Python: the protocol's kernels need AES on every row
(Fisher-Yates words, the dealer's c at sigma, the label holder's c at k), and each
call out of a numba kernel into Python must take the interpreter lock back.  With the
roles as threads of one process that hand-over, not the arithmetic, dominated.  Here
the rounds are the processor's AES instructions (AES-NI, through LLVM intrinsics),
four blocks interleaved, inside the kernels that use them; on a processor without
them a plain byte-wise AES in numba gives the same words, slower.
"""

from __future__ import annotations

import platform

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ppxgb.crypto.aes_tables import aes_tables
from ppxgb.errors import ParameterError


SBOX = aes_tables()[0]         # int64


@njit(cache=True, nogil=True)
def _expand(key):
    """AES-128 key schedule: 11 round keys of 16 bytes, as an (11, 2) uint64 array."""
    sbox = SBOX
    w = np.empty(176, np.uint8)
    w[:16] = key
    rcon = 1
    for i in range(4, 44):
        t0, t1, t2, t3 = w[4 * i - 4], w[4 * i - 3], w[4 * i - 2], w[4 * i - 1]
        if i % 4 == 0:
            t0, t1, t2, t3 = sbox[t1] ^ rcon, sbox[t2], sbox[t3], sbox[t0]
            rcon = ((rcon << 1) ^ 0x1B) & 0xFF if rcon & 0x80 else rcon << 1
        w[4 * i] = w[4 * i - 16] ^ t0
        w[4 * i + 1] = w[4 * i - 15] ^ t1
        w[4 * i + 2] = w[4 * i - 14] ^ t2
        w[4 * i + 3] = w[4 * i - 13] ^ t3
    return w.view(np.uint64).reshape(11, 2)


def round_keys(key: bytes) -> np.ndarray:
    """The expanded AES-128 key of `key` (16 bytes) as an (11, 2) uint64 array."""
    return _expand(_key_bytes(key))


def _key_bytes(key) -> np.ndarray:
    """A 16-byte AES key as uint8, or ParameterError."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
        raise ParameterError.bad("PRF key", "16 bytes", type(key).__name__ if not isinstance(key, (bytes, bytearray))
                                 else f"{len(key)} bytes")
    return np.frombuffer(key, dtype=np.uint8)


def nonce_word(nonce: int) -> np.uint64:
    """What a nonce XORs into round key 0's first word (its 8 big-endian bytes, read as
    a little-endian uint64 like the state)."""
    if isinstance(nonce, bool) or not isinstance(nonce, (int, np.integer)) or not 0 <= nonce < 2**64:
        raise ParameterError.bad("nonce", "an int in [0, 2^64)", nonce)
    return np.uint64(int.from_bytes(int(nonce).to_bytes(8, "big"), "little"))


def round_keys_with_nonces(key: bytes, words: np.ndarray) -> np.ndarray:
    """with_nonce(round_keys(key), nonce) for many nonces at once, given as nonce_word
    values: an (len(words), 11, 2) array (one key schedule, one call)."""
    return _expand_with(_key_bytes(key), words)


@njit(cache=True, nogil=True)
def _expand_with(key, words):
    rk = _expand(key)
    out = np.empty((words.shape[0], 11, 2), np.uint64)
    for i in range(words.shape[0]):
        out[i] = rk
        out[i, 0, 0] ^= words[i]
    return out


def with_nonce(rk: np.ndarray, nonce: int) -> np.ndarray:
    """Round keys whose PRF is AES-128_k(nonce as 8 big-endian bytes || p as 8
    big-endian bytes): the CTR keystream from counter block (nonce || 0).  The nonce is
    folded into the first (whitening) round key, so every kernel takes it unchanged and
    one key schedule serves many independent streams."""
    word = nonce_word(nonce)
    out = np.array(rk, dtype=np.uint64, copy=True)
    if out.shape != (11, 2):
        raise ParameterError.bad("round keys", "an (11, 2) uint64 array", out.shape)
    out[0, 0] ^= word
    return out


@njit(cache=True, inline="always")
def byte_swap(v):
    """A uint64 with its bytes reversed (the low half of a big-endian counter block)."""
    return (((v & np.uint64(0xFF)) << np.uint64(56)) | ((v & np.uint64(0xFF00)) << np.uint64(40))
            | ((v & np.uint64(0xFF0000)) << np.uint64(24)) | ((v & np.uint64(0xFF000000)) << np.uint64(8))
            | ((v >> np.uint64(8)) & np.uint64(0xFF000000)) | ((v >> np.uint64(24)) & np.uint64(0xFF0000))
            | ((v >> np.uint64(40)) & np.uint64(0xFF00)) | (v >> np.uint64(56)))


# ------------------------------------------------------------------ AES instructions
def _round_intrinsic(name: str):
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
def _prf_ni(rk, p):
    a, b = rk[0, 0], byte_swap(np.uint64(p)) ^ rk[0, 1]
    for r in range(1, 10):
        a, b = _aesenc(a, b, rk[r, 0], rk[r, 1])
    return _aesenclast(a, b, rk[10, 0], rk[10, 1])


@njit(cache=True, inline="always")
def _prf4_ni(rk, p0, p1, p2, p3):
    """Four blocks at once: the AES unit pipelines independent rounds."""
    k0, k1 = rk[0, 0], rk[0, 1]
    a0, b0 = k0, byte_swap(np.uint64(p0)) ^ k1
    a1, b1 = k0, byte_swap(np.uint64(p1)) ^ k1
    a2, b2 = k0, byte_swap(np.uint64(p2)) ^ k1
    a3, b3 = k0, byte_swap(np.uint64(p3)) ^ k1
    for r in range(1, 10):
        k0, k1 = rk[r, 0], rk[r, 1]
        a0, b0 = _aesenc(a0, b0, k0, k1)
        a1, b1 = _aesenc(a1, b1, k0, k1)
        a2, b2 = _aesenc(a2, b2, k0, k1)
        a3, b3 = _aesenc(a3, b3, k0, k1)
    k0, k1 = rk[10, 0], rk[10, 1]
    a0, b0 = _aesenclast(a0, b0, k0, k1)
    a1, b1 = _aesenclast(a1, b1, k0, k1)
    a2, b2 = _aesenclast(a2, b2, k0, k1)
    a3, b3 = _aesenclast(a3, b3, k0, k1)
    return a0, b0, a1, b1, a2, b2, a3, b3


# ------------------------------------------------------------ portable byte-wise AES
@njit(cache=True, inline="always")
def _xtime(x):
    return ((x << 1) ^ 0x1B) & 0xFF if x & 0x80 else x << 1


@njit(cache=True)
def _prf_soft(rk, p):
    """AES-128 of the counter block of p, one byte at a time (state in column order)."""
    key = rk.view(np.uint8).reshape(-1)
    s = np.empty(16, np.int64)
    t = np.empty(16, np.int64)
    v = np.uint64(p)
    for j in range(8):
        s[j] = key[j]
        s[15 - j] = np.int64((v >> np.uint64(8 * j)) & np.uint64(0xFF)) ^ key[15 - j]
    for r in range(1, 11):
        for c in range(4):                        # SubBytes and ShiftRows
            for i in range(4):
                t[4 * c + i] = SBOX[s[4 * ((c + i) % 4) + i]]
        if r < 10:                                # MixColumns
            for c in range(4):
                a0, a1, a2, a3 = t[4 * c], t[4 * c + 1], t[4 * c + 2], t[4 * c + 3]
                x = a0 ^ a1 ^ a2 ^ a3
                t[4 * c] = a0 ^ x ^ _xtime(a0 ^ a1)
                t[4 * c + 1] = a1 ^ x ^ _xtime(a1 ^ a2)
                t[4 * c + 2] = a2 ^ x ^ _xtime(a2 ^ a3)
                t[4 * c + 3] = a3 ^ x ^ _xtime(a3 ^ a0)
        for j in range(16):
            s[j] = t[j] ^ key[16 * r + j]
    lo, hi = np.uint64(0), np.uint64(0)
    for j in range(8):
        lo |= np.uint64(s[j]) << np.uint64(8 * j)
        hi |= np.uint64(s[8 + j]) << np.uint64(8 * j)
    return lo, hi


@njit(cache=True)
def _prf4_soft(rk, p0, p1, p2, p3):
    a0, b0 = _prf_soft(rk, p0)
    a1, b1 = _prf_soft(rk, p1)
    a2, b2 = _prf_soft(rk, p2)
    a3, b3 = _prf_soft(rk, p3)
    return a0, b0, a1, b1, a2, b2, a3, b3


def _has_aes_instructions() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        from llvmlite import binding
        return bool(binding.get_host_cpu_features().get("aes"))
    except Exception:       # no feature list: take the portable path
        return False


AES_INSTRUCTIONS = _has_aes_instructions()
prf, prf4 = (_prf_ni, _prf4_ni) if AES_INSTRUCTIONS else (_prf_soft, _prf4_soft)


# ---------------------------------------------------------------- the PRF on arrays
@njit(cache=True, nogil=True)
def _rows_at(rk, pos, out):
    n = pos.shape[0]
    i = 0
    while i + 4 <= n:
        out[i, 0], out[i, 1], out[i + 1, 0], out[i + 1, 1], out[i + 2, 0], out[i + 2, 1], out[i + 3, 0], \
            out[i + 3, 1] = prf4(rk, pos[i], pos[i + 1], pos[i + 2], pos[i + 3])
        i += 4
    while i < n:
        out[i, 0], out[i, 1] = prf(rk, pos[i])
        i += 1
    return out


@njit(cache=True, nogil=True)
def _rows_from(rk, start, n, out):
    i = 0
    while i + 4 <= n:
        p = start + np.uint64(i)                 # uint64 + int64 would be a float in numba
        out[i, 0], out[i, 1], out[i + 1, 0], out[i + 1, 1], out[i + 2, 0], out[i + 2, 1], out[i + 3, 0], \
            out[i + 3, 1] = prf4(rk, p, p + np.uint64(1), p + np.uint64(2), p + np.uint64(3))
        i += 4
    while i < n:
        out[i, 0], out[i, 1] = prf(rk, start + np.uint64(i))
        i += 1
    return out


def rows(rk: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """PRF rows start, ..., start + n - 1 as an (n, 2) uint64 array (the CTR keystream)."""
    return _rows_from(rk, np.uint64(start), int(n), np.empty((int(n), 2), dtype=np.uint64))


def rows_at(rk: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """PRF rows at the given non-negative positions, as an (n, 2) uint64 array."""
    return _rows_at(rk, positions, np.empty((len(positions), 2), dtype=np.uint64))
