"""The pseudorandom function of the vertical protocol, callable inside numba kernels.

PRF_k(p) = AES-128_k(p as a 16-byte big-endian block), read as two little-endian uint64
words.  Row i of a named stream is PRF_k(i), so a stream is exactly the AES-128-CTR
keystream with a zero initial counter block, and any row of it costs one block
(tests/test_prf.py checks both against the `cryptography` package).

Why not call `cryptography` from Python: the protocol's kernels need AES on every row
(Fisher-Yates words, the dealer's c at sigma, the label holder's c at k), and each
call out of a numba kernel into Python must take the interpreter lock back.  With the
roles as threads of one process that hand-over, not the arithmetic, dominated.  The
block cipher is the crypto layer's one compiled AES (aes.py: AES-NI, four blocks
interleaved, where the processor has it, a T-table AES otherwise); this module adds
the counter-block layout, nonces and the array loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ppxgb.crypto import aes
from ppxgb.crypto.aes import byte_swap
from ppxgb.errors import ParameterError

SBOX = aes.SBOX                 # int64; re-exported for existing callers
AES_INSTRUCTIONS = aes.AES_INSTRUCTIONS


@njit(cache=True, nogil=True)
def _expand(key):
    """AES-128 key schedule: 11 round keys of 16 bytes, as an (11, 2) uint64 array."""
    return aes.expand(key)


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


# ------------------------------------------------------------------ PRF of one position
_ZERO = np.uint64(0)


@njit(cache=True, inline="always")
def prf(rk, p):
    """PRF_k(p): AES of the counter block (0 || p as 8 big-endian bytes), as two words."""
    return aes.encrypt(rk, _ZERO, byte_swap(np.uint64(p)))


@njit(cache=True, inline="always")
def prf4(rk, p0, p1, p2, p3):
    """PRF at four positions at once (the AES unit pipelines independent blocks)."""
    return aes.encrypt4(rk, _ZERO, byte_swap(np.uint64(p0)), _ZERO, byte_swap(np.uint64(p1)),
                        _ZERO, byte_swap(np.uint64(p2)), _ZERO, byte_swap(np.uint64(p3)))


@njit(cache=True)
def _prf_soft(rk, p):
    """PRF_k(p) on the portable table path, whatever the processor (for tests)."""
    return aes.encrypt_portable(rk, _ZERO, byte_swap(np.uint64(p)))


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
