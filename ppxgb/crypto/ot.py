"""Oblivious transfer for the fast PSI: base OTs in edwards25519's prime-order group and
the batched oblivious PRF of Kolesnikov, Kumaresan, Rosulek and Trieu (CCS 2016), as
pure functions on arrays.  The protocol around them is training/vertical/psi_oprf.py.

**Base OT** (random OT, semi-honest; the "simplest OT" pattern).  The sender draws a
scalar a and sends A = [a]G.  The receiver, for choice bit s_i, draws b_i and sends
B_i = [b_i]G (s_i = 0) or A + [b_i]G (s_i = 1).  The sender's keys are
k0_i = H(i, A, B_i, [a]B_i) and k1_i = H(i, A, B_i, [a]B_i - [a]A); the receiver's is
H(i, A, B_i, [b_i]A), which is k_{s_i}.  B_i is a uniform group element whatever s_i,
so the sender learns nothing of s; the receiver cannot compute [a]([b_i]G - A) without
a (computational Diffie-Hellman), so it learns nothing of k_{1 - s_i}.

**The OPRF extension.**  WIDTH = 512 base OTs with the roles reversed: the OPRF
receiver R (who holds one input x_j per row j) is the base-OT *sender*, the OPRF
sender S is the base-OT receiver with a secret random 512-bit choice vector s.  Column
i of the m x 512 bit matrices:

    R:  t^i = G(k0_i),  u^i = t^i xor G(k1_i) xor c^i     c_j = C(x_j), a row of C
    S:  q^i = G(k_{s_i}) xor (s_i * u^i)  =  t^i xor (s_i * c^i)

so row by row q_j = t_j xor (C(x_j) and s).  S's PRF is F(j, y) = H(j, q_j xor (C(y)
and s)); R knows F(j, x_j) = H(j, t_j) and nothing else of F.  C is a pseudorandom
code (four AES-128 blocks under public keys): two different inputs' code words differ
in about 256 of their 512 bits, and S's F at any y != x_j hides behind the bits of s
in those positions.  G is AES-128-CTR keyed by the base-OT key (the project's PRF
rows); H is SHA-256 of the 64 row bytes and the row number, cut to 128 bits.

Matrices are uint64 words: a "column" array is (512, W) with row j's bit in word
j // 64 at bit j % 64; a "row" array is (m, 8) with column i's bit in word i // 64 at
bit i % 64 (little-endian, as numpy views the bytes).
"""

from __future__ import annotations

import hashlib

import numpy as np
from nacl import bindings as sodium
from nacl.exceptions import CryptoError
from numba import njit

from ppxgb.crypto import aes, prf
from ppxgb.crypto.sha256 import H0, compress
from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import FormatError, ParameterError

WIDTH = 512                 # base OTs, bits per code word
WORDS = WIDTH // 64         # uint64 words per row
POINT = 32                  # bytes of a canonical edwards25519 point
_BASE_OT_DOMAIN = b"ppxgb-base-ot-v1|"


# ---------------------------------------------------------------- base OT
def random_scalar(rand: Randomness) -> bytes:
    """A scalar uniform in [1, l): 512 random bits of the stream reduced mod l (bias
    below 2^-259); the base OTs' and the Diffie-Hellman PSI's secret scalars."""
    while True:
        k = sodium.crypto_core_ed25519_scalar_reduce(rand.words(8).tobytes())
        if any(k):
            return k


def _key(i: int, a_point: bytes, b_point: bytes, shared: bytes) -> bytes:
    return hashlib.sha256(_BASE_OT_DOMAIN + i.to_bytes(4, "little") + a_point + b_point + shared).digest()[:16]


def base_ot_sender_start(rand: Randomness) -> tuple[bytes, bytes]:
    """(a, A = [a]G): the sender's secret scalar and its one message."""
    a = random_scalar(rand)
    return a, sodium.crypto_scalarmult_ed25519_base_noclamp(a)


def _point(raw: bytes) -> bytes:
    if len(raw) != POINT or not sodium.crypto_core_ed25519_is_valid_point(raw):
        raise FormatError("base OT: a value is not a point of the prime-order group")
    return raw


def base_ot_receive(a_point: bytes, choices: np.ndarray, rand: Randomness) -> tuple[np.ndarray, np.ndarray]:
    """The receiver's side for choice bits `choices` (bool, n): (B, its messages as an
    (n, 32) uint8 array; keys k_{s_i} as (n, 16) uint8)."""
    a_point = _point(bytes(a_point))
    out_b = np.empty((len(choices), POINT), np.uint8)
    keys = np.empty((len(choices), 16), np.uint8)
    for i, s in enumerate(np.asarray(choices, dtype=bool)):
        b = random_scalar(rand)
        bg = sodium.crypto_scalarmult_ed25519_base_noclamp(b)
        big_b = sodium.crypto_core_ed25519_add(a_point, bg) if s else bg
        out_b[i] = np.frombuffer(big_b, np.uint8)
        keys[i] = np.frombuffer(_key(i, a_point, big_b, sodium.crypto_scalarmult_ed25519_noclamp(b, a_point)),
                                np.uint8)
    return out_b, keys


def base_ot_sender_keys(a: bytes, a_point: bytes, b_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sender's keys (k0, k1), each (n, 16) uint8, from the receiver's B values."""
    b_points = np.ascontiguousarray(b_points, dtype=np.uint8)
    if b_points.ndim != 2 or b_points.shape[1] != POINT:
        raise FormatError(f"base OT: B should be an (n, {POINT}) uint8 array")
    aa = sodium.crypto_scalarmult_ed25519_noclamp(a, a_point)
    k0 = np.empty((len(b_points), 16), np.uint8)
    k1 = np.empty_like(k0)
    try:
        for i, row in enumerate(b_points):
            big_b = _point(row.tobytes())
            ab = sodium.crypto_scalarmult_ed25519_noclamp(a, big_b)
            k0[i] = np.frombuffer(_key(i, a_point, big_b, ab), np.uint8)
            k1[i] = np.frombuffer(_key(i, a_point, big_b, sodium.crypto_core_ed25519_sub(ab, aa)), np.uint8)
    except CryptoError:
        raise FormatError("base OT: a value is not a point of the prime-order group") from None
    return k0, k1


# ---------------------------------------------------------------- PRG columns and the transpose
def expand_columns(keys: np.ndarray, n_rows: int) -> np.ndarray:
    """G(k) for every key: a (len(keys), ceil(n_rows / 64)) uint64 column array."""
    n_words = -(-int(n_rows) // 64)
    out = np.empty((len(keys), n_words + (n_words & 1)), np.uint64)
    for i, k in enumerate(keys):
        out[i] = prf.rows(prf.round_keys(bytes(k)), out.shape[1] // 2).reshape(-1)
    return out[:, :n_words]


_TRANSPOSE_MASKS = np.array([0x00000000FFFFFFFF, 0x0000FFFF0000FFFF, 0x00FF00FF00FF00FF,
                             0x0F0F0F0F0F0F0F0F, 0x3333333333333333, 0x5555555555555555], dtype=np.uint64)


@njit(cache=True, nogil=True)
def _transpose64(a, masks):
    """In place: a (64 uint64 words, word r bit c = M[r][c]) becomes M transposed."""
    j = 32
    for level in range(6):
        m = masks[level]
        sj = np.uint64(j)
        for i in range(64):
            if i & j == 0:
                t = ((a[i] >> sj) ^ a[i + j]) & m
                a[i] ^= t << sj
                a[i + j] ^= t
        j >>= 1


@njit(cache=True, nogil=True)
def _columns_to_rows(cols, n_rows, masks, out):
    block = np.empty(64, np.uint64)
    n_words = cols.shape[1]
    for rb in range(n_words):
        for cb in range(cols.shape[0] // 64):
            for c in range(64):
                block[c] = cols[cb * 64 + c, rb]
            _transpose64(block, masks)
            for r in range(min(64, n_rows - rb * 64)):
                out[rb * 64 + r, cb] = block[r]
    return out


def columns_to_rows(cols: np.ndarray, n_rows: int) -> np.ndarray:
    """The (n_rows, len(cols) / 64) row array of a column array (the bit transpose)."""
    cols = np.ascontiguousarray(cols, dtype=np.uint64)
    if cols.ndim != 2 or cols.shape[0] % 64 or cols.shape[1] * 64 < n_rows:
        raise ParameterError.bad("columns", "a (64k, >= n_rows / 64) uint64 array", cols.shape)
    return _columns_to_rows(cols, int(n_rows), _TRANSPOSE_MASKS, np.empty((int(n_rows), cols.shape[0] // 64), np.uint64))


# ---------------------------------------------------------------- the code and the output hash
@njit(cache=True, inline="always")
def _bswap32(v):
    return ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | ((v >> 24) & 0xFF)


@njit(cache=True, inline="always")
def _hash_row(row, j, w, st):
    """H(j, row): SHA-256 of row's 64 bytes then j as 8 little-endian bytes, cut to the
    first 16 digest bytes, returned as two little-endian uint64 words."""
    for k in range(WORDS):
        v = row[k]
        w[2 * k] = _bswap32(np.int64(v & np.uint64(0xFFFFFFFF)))
        w[2 * k + 1] = _bswap32(np.int64(v >> np.uint64(32)))
    for k in range(8):
        st[k] = H0[k]
    compress(st, w)
    w[0] = _bswap32(np.int64(j) & 0xFFFFFFFF)
    w[1] = _bswap32((np.int64(j) >> 32) & 0xFFFFFFFF)
    w[2] = 0x80000000
    for k in range(3, 15):
        w[k] = 0
    w[15] = 72 * 8
    compress(st, w)
    lo = np.uint64(_bswap32(st[0])) | (np.uint64(_bswap32(st[1])) << np.uint64(32))
    hi = np.uint64(_bswap32(st[2])) | (np.uint64(_bswap32(st[3])) << np.uint64(32))
    return lo, hi


@njit(cache=True, inline="always")
def _code(code_keys, fn, lo, hi, out):
    """C(item, fn) into out (8 words): AES-128 of the item under code key (fn, c), c < 4."""
    for c in range(4):
        out[2 * c], out[2 * c + 1] = aes.encrypt(code_keys[4 * fn + c], lo, hi)


@njit(cache=True, nogil=True)
def _code_rows(code_keys, items, fns, out):
    for r in range(items.shape[0]):
        if fns[r] >= 0:
            _code(code_keys, fns[r], items[r, 0], items[r, 1], out[r])
        else:
            out[r, :] = 0
    return out


def code_rows(code_keys: np.ndarray, items: np.ndarray, fns: np.ndarray) -> np.ndarray:
    """(len(items), 8) uint64: C(items[r], fns[r]) per row, zeros where fns[r] < 0 (an
    empty bin).  code_keys: (n_functions * 4, 11, 2) AES-128 round keys."""
    return _code_rows(code_keys, np.ascontiguousarray(items, dtype=np.uint64), np.asarray(fns, dtype=np.int64),
                      np.empty((len(items), WORDS), np.uint64))


@njit(cache=True, nogil=True)
def _hash_rows(rows, at, numbers, out):
    w = np.empty(64, np.int64)
    st = np.empty(8, np.int64)
    for k in range(at.shape[0]):
        out[k, 0], out[k, 1] = _hash_row(rows[at[k]], numbers[k], w, st)
    return out


def hash_rows(rows: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """H(numbers[k], rows[k]) for every k: (len(rows), 2) uint64."""
    numbers = np.asarray(numbers, dtype=np.int64)
    return _hash_rows(np.ascontiguousarray(rows, dtype=np.uint64), np.arange(len(numbers)), numbers,
                      np.empty((len(numbers), 2), np.uint64))


def receiver_outputs(t_rows: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """R's PRF values H(j, t_j) at rows j in `bins`: (len(bins), 2) uint64."""
    bins = np.asarray(bins, dtype=np.int64)
    return _hash_rows(t_rows, bins, bins, np.empty((len(bins), 2), np.uint64))


@njit(cache=True, nogil=True)
def _sender_outputs(q_rows, s, code_keys, items, bins, out):
    w = np.empty(64, np.int64)
    st = np.empty(8, np.int64)
    code = np.empty(WORDS, np.uint64)
    row = np.empty(WORDS, np.uint64)
    for fn in range(bins.shape[0]):
        for k in range(items.shape[0]):
            b = bins[fn, k]
            _code(code_keys, fn, items[k, 0], items[k, 1], code)
            for c in range(WORDS):
                row[c] = q_rows[b, c] ^ (code[c] & s[c])
            out[fn, k, 0], out[fn, k, 1] = _hash_row(row, b, w, st)
    return out


def sender_outputs(q_rows: np.ndarray, s: np.ndarray, code_keys: np.ndarray, items: np.ndarray,
                   bins: np.ndarray) -> np.ndarray:
    """S's PRF values F(bins[f, k], (items[k], f)) for every hash function f and item k:
    an (n_functions, len(items), 2) uint64 array."""
    items = np.ascontiguousarray(items, dtype=np.uint64)
    bins = np.ascontiguousarray(bins, dtype=np.int64)
    return _sender_outputs(q_rows, np.ascontiguousarray(s, dtype=np.uint64), code_keys, items, bins,
                           np.empty((bins.shape[0], len(items), 2), np.uint64))


def hash_row_reference(row: np.ndarray, j: int) -> tuple[int, int]:
    """H(j, row) by hashlib, for the tests."""
    d = hashlib.sha256(np.ascontiguousarray(row, dtype="<u8").tobytes() + int(j).to_bytes(8, "little")).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:16], "little")
