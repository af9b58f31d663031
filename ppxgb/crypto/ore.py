"""Order-revealing encryption with left/right ciphertexts (Lewi and Wu, CCS 2016).

Plaintexts are integers of BITS bits (ppxgb's float32 order map, ordinal + 1, with the
missing-value stand-ins 0 and 2**32 + 1), cut into n blocks of d bits, most
significant first.  For block i let p = the plaintext's first i blocks (its prefix),
and let pi_{i,p} be a permutation of [0, 2**d) derived from the key: position v ranks
PRF(1, i, v, p) among all v.  With F(i, p, h) = PRF(2, i, h, p):

* the **left** ciphertext of x has, per block, h_i = pi_{i,x<i}(x_i) and the key
  k_i = F(i, x<i, h_i): deterministic, held only transiently by the server;
* the **right** ciphertext of y has a fresh 128-bit nonce r and, per block, 2**d
  values v_{i,h} = cmp(pi^-1(h), y_i) + H(F(i, y<i, h), r) mod 3, where cmp is 0
  (equal), 1 (less) or 2 (greater) and H(k, r) = AES-128_k(r) mod 3.  Without a left
  key every value is masked by a PRF of a fresh nonce: right ciphertexts alone are
  semantically secure, so thresholds stored on the server hide their values.

Comparing: for the first block, v_{0,h_0} - H(k_0, r) mod 3 is cmp(x_0, y_0); while it
is 0 (equal blocks, hence equal prefixes and equal keys) go on to the next block.  The
server learns cmp(x, y) and the index of the first block where x and y differ, and
nothing else.  Left ciphertexts are deterministic: equal values give equal left
ciphertexts, and two left ciphertexts share exactly the blocks of their common
prefix, so the server sees equality and the common-prefix length (in blocks) of any
two query values of one column, but never their order.

The PRF is AES-128 from the crypto layer's one compiled AES (aes.py), with inputs laid
out as the block (tag | i << 8 | v << 16, prefix) in two little-endian words.
"""

from __future__ import annotations

import secrets

import numpy as np
from numba import njit

from ppxgb.crypto import aes
from ppxgb.errors import ParameterError

#: Bits of a plaintext: ppxgb's domain [0, 2**32 + 1] needs 33.
DOMAIN_BITS = 33
#: Block size chosen by measurement (benchmarks/RESULTS_inference.md): 4 bits.
BLOCK_BITS = 4
NONCE_BYTES = 16
KEY_BYTES = 16


def n_blocks(d: int = BLOCK_BITS) -> int:
    return -(-DOMAIN_BITS // d)


def left_width(d: int = BLOCK_BITS) -> int:
    """Bytes per left ciphertext: per block one index byte and a 16-byte key."""
    return n_blocks(d) * (1 + KEY_BYTES)


def right_width(d: int = BLOCK_BITS) -> int:
    """Bytes per right ciphertext: the nonce and one byte (a value mod 3) per block and position."""
    return NONCE_BYTES + n_blocks(d) * (1 << d)


_TAG_PERM = np.uint64(1)
_TAG_KEY = np.uint64(2)


@njit(cache=True, inline="always")
def _prf(rk, tag, i, v, prefix):
    return aes.encrypt(rk, tag | (np.uint64(i) << np.uint64(8)) | (np.uint64(v) << np.uint64(16)),
                       np.uint64(prefix))


@njit(cache=True, inline="always")
def _ranks(rk, i, prefix, size, words, ranks):
    """ranks[v] = pi_{i,prefix}(v): the rank of PRF(1, i, v, prefix) (ties by v)."""
    for v in range(size):
        words[v], _ = _prf(rk, _TAG_PERM, i, v, prefix)
    order = np.argsort(words, kind="mergesort")
    for r in range(size):
        ranks[order[r]] = r


@njit(cache=True, nogil=True)
def _encrypt_left(rk, values, d, nb, out):
    size = 1 << d
    words = np.empty(size, np.uint64)
    ranks = np.empty(size, np.int64)
    mask = np.int64(size - 1)
    for k in range(values.shape[0]):
        x = np.int64(values[k])
        for i in range(nb):
            shift = d * (nb - i)
            prefix = x >> shift if shift < 63 else np.int64(0)
            xi = (x >> (d * (nb - 1 - i))) & mask
            _ranks(rk, i, prefix, size, words, ranks)
            h = ranks[xi]
            lo, hi = _prf(rk, _TAG_KEY, i, h, prefix)
            base = i * 17
            out[k, base] = h
            for b in range(8):
                out[k, base + 1 + b] = (lo >> np.uint64(8 * b)) & np.uint64(0xFF)
                out[k, base + 9 + b] = (hi >> np.uint64(8 * b)) & np.uint64(0xFF)


@njit(cache=True, inline="always")
def _mask(key, rk_scratch, nlo, nhi):
    """H(k, r) = AES-128_k(r) mod 3 (the low word; bias 2**-64)."""
    aes.expand_into(key, rk_scratch)
    lo, _ = aes.encrypt(rk_scratch, nlo, nhi)
    return np.int64(lo % np.uint64(3))


@njit(cache=True, nogil=True)
def _encrypt_right(rk, values, nonces, d, nb, out):
    size = 1 << d
    words = np.empty(size, np.uint64)
    ranks = np.empty(size, np.int64)
    inverse = np.empty(size, np.int64)
    key = np.empty(16, np.uint8)
    scratch = np.empty((11, 2), np.uint64)
    mask = np.int64(size - 1)
    for k in range(values.shape[0]):
        y = np.int64(values[k])
        for b in range(16):
            out[k, b] = nonces[k, b]
        nlo = nonces[k, :8].copy().view(np.uint64)[0]
        nhi = nonces[k, 8:].copy().view(np.uint64)[0]
        for i in range(nb):
            shift = d * (nb - i)
            prefix = y >> shift if shift < 63 else np.int64(0)
            yi = (y >> (d * (nb - 1 - i))) & mask
            _ranks(rk, i, prefix, size, words, ranks)
            for v in range(size):
                inverse[ranks[v]] = v
            for h in range(size):
                j = inverse[h]
                c = 0 if j == yi else (1 if j < yi else 2)
                lo, hi = _prf(rk, _TAG_KEY, i, h, prefix)
                for b in range(8):
                    key[b] = (lo >> np.uint64(8 * b)) & np.uint64(0xFF)
                    key[8 + b] = (hi >> np.uint64(8 * b)) & np.uint64(0xFF)
                out[k, 16 + i * size + h] = (c + _mask(key, scratch, nlo, nhi)) % 3


@njit(cache=True, inline="always")
def compare_one(left, lrow, lbase, right, rrow, d, nb, scratch):
    """cmp of the left ciphertext left[lrow, lbase:...] with right[rrow]: 0 equal,
    1 less, 2 greater."""
    size = 1 << d
    nlo = np.uint64(0)
    nhi = np.uint64(0)
    for b in range(8):
        nlo |= np.uint64(right[rrow, b]) << np.uint64(8 * b)
        nhi |= np.uint64(right[rrow, 8 + b]) << np.uint64(8 * b)
    for i in range(nb):
        base = lbase + i * 17
        h = np.int64(left[lrow, base])
        m = _mask(left[lrow, base + 1:base + 17], scratch, nlo, nhi)
        c = (np.int64(right[rrow, 16 + i * size + h]) - m) % 3
        if c != 0:
            return c
    return 0


@njit(cache=True, nogil=True)
def _compare(left, right, d, nb, out):
    scratch = np.empty((11, 2), np.uint64)
    for k in range(left.shape[0]):
        out[k] = compare_one(left, k, 0, right, k, d, nb, scratch)


def _check(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 2**DOMAIN_BITS):
        raise ParameterError.bad("plaintexts", f"integers in [0, 2**{DOMAIN_BITS})", "out of range")
    return v


class ORE:
    """Lewi-Wu ORE under one 16-byte key with d-bit blocks."""

    def __init__(self, key: bytes, block_bits: int = BLOCK_BITS):
        if block_bits not in (2, 3, 4, 6, 8):
            raise ParameterError.bad("block_bits", "one of 2, 3, 4, 6, 8", block_bits)
        self.rk = aes.round_keys(bytes(key)) if len(key) == KEY_BYTES else None
        if self.rk is None:
            raise ParameterError.bad("ORE key", f"{KEY_BYTES} bytes", f"{len(key)} bytes")
        self.d = block_bits
        self.nb = n_blocks(block_bits)

    def encrypt_left(self, plaintexts) -> np.ndarray:
        """(n, left_width) uint8: deterministic left ciphertexts (the query side)."""
        v = _check(plaintexts)
        out = np.zeros((v.size, left_width(self.d)), np.uint8)
        _encrypt_left(self.rk, v, self.d, self.nb, out)
        return out

    def encrypt_right(self, plaintexts, nonces: np.ndarray | None = None) -> np.ndarray:
        """(n, right_width) uint8: right ciphertexts, each with a fresh nonce (the
        stored side).  `nonces` ((n, 16) uint8) is injected only by known-answer tests."""
        v = _check(plaintexts)
        if nonces is None:
            nonces = np.frombuffer(secrets.token_bytes(NONCE_BYTES * v.size),
                                   dtype=np.uint8).reshape(v.size, NONCE_BYTES)
        nonces = np.ascontiguousarray(nonces, dtype=np.uint8)
        if nonces.shape != (v.size, NONCE_BYTES):
            raise ParameterError.bad("nonces", f"({v.size}, 16) uint8", nonces.shape)
        out = np.zeros((v.size, right_width(self.d)), np.uint8)
        _encrypt_right(self.rk, v, nonces, self.d, self.nb, out)
        return out


def compare(left: np.ndarray, right: np.ndarray, block_bits: int = BLOCK_BITS) -> np.ndarray:
    """Element-wise cmp(x, y) of left and right ciphertexts (public: the server's
    operation): 0 equal, 1 x < y, 2 x > y, as int8."""
    left = np.ascontiguousarray(left, dtype=np.uint8)
    right = np.ascontiguousarray(right, dtype=np.uint8)
    if left.ndim != 2 or right.ndim != 2 or left.shape[0] != right.shape[0] \
            or left.shape[1] != left_width(block_bits) or right.shape[1] != right_width(block_bits):
        raise ParameterError.bad("ciphertexts", "matching rows of left and right ciphertexts",
                                 f"{left.shape} and {right.shape}")
    out = np.zeros(left.shape[0], np.int8)
    _compare(left, right, block_bits, n_blocks(block_bits), out)
    return out


@njit(cache=True, nogil=True)
def walk_ore(roots, left_child, right_child, node_qcol, leaf, right_cts, queries, d, nb, depth,
             cat_index, member):
    """Leaf (index into the leaf ciphertexts) reached by every (row, tree): a node goes
    left exactly when its query value is less than its threshold (`encoded_goes_left`
    on ORE comparisons).  queries is (n_rows, n_cols * left_width) uint8.  A row's
    left keys are expanded once, when first used.  A node with cat_index[node] >= 0
    is categorical: the row goes right exactly when member[row, cat_index[node]]."""
    n = queries.shape[0]
    t = roots.shape[0] - 1
    out = np.empty((n, t), np.int32)
    lw = nb * 17
    n_cols = queries.shape[1] // lw
    size = 1 << d
    schedules = np.empty((n_cols * nb, 11, 2), np.uint64)
    ready = np.zeros(n_cols * nb, np.int64)
    for r in range(n):
        ready[:] = 0
        for tree in range(t):
            node = roots[tree]
            for _ in range(depth + 1):
                if leaf[node] >= 0:
                    break
                if cat_index[node] >= 0:
                    node = right_child[node] if member[r, cat_index[node]] else left_child[node]
                    continue
                col = node_qcol[node]
                nlo = np.uint64(0)
                nhi = np.uint64(0)
                for b in range(8):
                    nlo |= np.uint64(right_cts[node, b]) << np.uint64(8 * b)
                    nhi |= np.uint64(right_cts[node, 8 + b]) << np.uint64(8 * b)
                c = 0
                for i in range(nb):
                    base = col * lw + i * 17
                    s = col * nb + i
                    if ready[s] == 0:
                        aes.expand_into(queries[r, base + 1:base + 17], schedules[s])
                        ready[s] = 1
                    lo, _ = aes.encrypt(schedules[s], nlo, nhi)
                    h = np.int64(queries[r, base])
                    c = (np.int64(right_cts[node, 16 + i * size + h]) - np.int64(lo % np.uint64(3))) % 3
                    if c != 0:
                        break
                node = left_child[node] if c == 1 else right_child[node]
            out[r, tree] = leaf[node]
    return out
