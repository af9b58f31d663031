"""Category tokens: how encrypted inference evaluates a categorical split.

The client sends, for a categorical feature f and slot s, the token
PRF_k(position) with k = category_key(prf_key, f, s) (per user, feature and slot) and
position the category code (0 <= code < 2**24), MISSING for a missing value, or
INVALID for a code XGBoost treats as invalid (negative or >= 2**24: it goes left).
The PRF is the crypto layer's AES-128 (ppxgb.crypto.prf); a token is its 16-byte
block, kept as two uint64 words.

For a categorical node the proxy takes the tokens of the codes that go right (plus
the MISSING token when the node's default direction is right: the slot is chosen by
the default direction, as for numeric splits), blinds each one with a fresh random
16-byte nonce of the node, blind(t) = AES-128_t(nonce), pads them with random 16-byte
dummies to a size fixed per feature (`padded_size`) and sorts them (a random order,
for pseudorandom values).  The server blinds a query's token with the node's nonce
and sends the row right exactly when the result is in the set.  Without the nonce a
category going right at many nodes would repeat across their sets while dummies do
not, and counting repeats would give away the real set sizes.

What the server can see: tokens are deterministic per user, feature and slot, so it
learns which queries of one user share a category value in a feature (equality
classes, including "missing"), and for every categorical node of that feature whether
a query's token is in its set.  The stored sets alone are random-looking and unlinked
across nodes; it learns nothing of them beyond the padded size, the same for every
node of a feature.  Another user's tokens are under other keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np
from numba import njit

from ppxgb.crypto import aes, prf

#: Token positions of the two non-codes (beyond every valid code, 2**24).
MISSING = np.uint64(1 << 62)
INVALID = np.uint64((1 << 62) + 1)
MAX_CODE = 1 << 24


def category_key(prf_key: bytes, feature: int, slot: int) -> bytes:
    """The AES-128 token key of one (feature, slot) of one user."""
    return hmac.digest(prf_key, f"ppxgb.category|{feature}|{slot}".encode(), hashlib.sha256)[:16]


def positions(codes: np.ndarray) -> np.ndarray:
    """Token positions of float codes: NaN -> MISSING, invalid (negative or at/beyond
    2**24) -> INVALID, else the integer code.  Codes must be integral (the caller checks)."""
    x = np.asarray(codes, dtype=np.float64)
    out = np.full(x.shape, INVALID, dtype=np.uint64)
    out[np.isnan(x)] = MISSING
    with np.errstate(invalid="ignore"):
        valid = (x >= 0) & (x < MAX_CODE)
    out[valid] = x[valid].astype(np.uint64)
    return out


def tokens(key: bytes, pos: np.ndarray) -> np.ndarray:
    """PRF tokens of the given positions under one token key: (n, 2) uint64."""
    pos = np.ascontiguousarray(pos, dtype=np.uint64)
    return prf.rows_at(prf.round_keys(key), pos)


def padded_size(n_categories: int) -> int:
    """Tokens per node of a feature with n_categories codes: the power of two holding
    every code and the MISSING token (a node's set never exceeds it)."""
    return 1 << int(n_categories).bit_length()


def node_set(key: bytes, codes: np.ndarray, missing_right: bool, size: int,
             nonce: np.ndarray) -> np.ndarray:
    """The stored set of one categorical node: tokens of `codes` (and MISSING when a
    missing value goes right) blinded with the node's nonce (two uint64 words),
    padded to `size` with random dummies, sorted."""
    pos = np.asarray(codes, dtype=np.uint64)
    if missing_right:
        pos = np.append(pos, MISSING)
    if pos.size > size:
        raise ValueError(f"a node's set ({pos.size} tokens) exceeds the padded size {size}")
    real = blind(tokens(key, pos), nonce)
    return sort_tokens(np.concatenate([real, random_words(size - pos.size)]))


def random_words(n: int) -> np.ndarray:
    """n random 16-byte values as (n, 2) uint64 (dummies and nonces)."""
    return np.frombuffer(secrets.token_bytes(16 * n), dtype=np.uint64).reshape(-1, 2).copy()


@njit(cache=True, inline="always")
def _expand_token(t0, t1, key_bytes, schedule):
    """The AES-128 key schedule of a token's 16 bytes (its words, little-endian)."""
    for b in range(8):
        key_bytes[b] = (t0 >> np.uint64(8 * b)) & np.uint64(0xFF)
        key_bytes[8 + b] = (t1 >> np.uint64(8 * b)) & np.uint64(0xFF)
    aes.expand_into(key_bytes, schedule)


@njit(cache=True, nogil=True)
def _blind(toks, nonce, out):
    schedule = np.empty((11, 2), np.uint64)
    key_bytes = np.empty(16, np.uint8)
    for i in range(toks.shape[0]):
        _expand_token(toks[i, 0], toks[i, 1], key_bytes, schedule)
        out[i, 0], out[i, 1] = aes.encrypt(schedule, nonce[0], nonce[1])
    return out


def blind(toks: np.ndarray, nonce: np.ndarray) -> np.ndarray:
    """AES-128 under each token (its 16 bytes, little-endian words) of one node's nonce."""
    toks = np.ascontiguousarray(toks, dtype=np.uint64).reshape(-1, 2)
    return _blind(toks, np.ascontiguousarray(nonce, dtype=np.uint64), np.empty_like(toks))


def sort_tokens(t: np.ndarray) -> np.ndarray:
    """Tokens in (word 0, word 1) order, the order membership() searches."""
    return np.ascontiguousarray(t[np.lexsort((t[:, 1], t[:, 0]))])


@njit(cache=True, nogil=True)
def membership(cat_nodes, ptr, set_tokens, nonces, node_col, query_tokens):
    """(n_rows, n_cat_nodes) uint8: 1 where the row's token for the node's column,
    blinded with the node's nonce, lies in the node's sorted set ptr[node]..ptr[node+1]
    (binary search on the two words).  A token's key schedule is expanded once per row."""
    n = query_tokens.shape[0]
    n_cols = query_tokens.shape[1]
    out = np.zeros((n, cat_nodes.shape[0]), np.uint8)
    schedules = np.empty((n_cols, 11, 2), np.uint64)
    key_bytes = np.empty(16, np.uint8)
    for r in range(n):
        for c in range(n_cols):
            _expand_token(query_tokens[r, c, 0], query_tokens[r, c, 1], key_bytes, schedules[c])
        for k in range(cat_nodes.shape[0]):
            node = cat_nodes[k]
            lo0, hi0 = ptr[node], ptr[node + 1]
            a, b = aes.encrypt(schedules[node_col[node]], nonces[node, 0], nonces[node, 1])
            lo, hi = lo0, hi0
            while lo < hi:
                mid = (lo + hi) // 2
                m0 = set_tokens[mid, 0]
                if m0 < a or (m0 == a and set_tokens[mid, 1] < b):
                    lo = mid + 1
                else:
                    hi = mid
            if lo < hi0 and set_tokens[lo, 0] == a and set_tokens[lo, 1] == b:
                out[r, k] = 1
    return out
