"""Dealer-assisted oblivious permutation and selection over Z_2^64 ("permute and share").

The maths of the vertical histogram protocol, as pure functions on arrays.

**Permutation correlation.** A dealer draws a uniformly random permutation sigma of
[N] and uniform ring vectors a, c of N rows, and hands

    to the label holder LH:   a, c                    (as seeds)
    to the feature holder FH: sigma (as a seed), delta with delta[sigma[p]] = a[p] + c[sigma[p]]

`delta` is the only vector that must travel: c masks it completely.

**Oblivious gather.** LH holds a vector x (rows 0..L-1, L <= N); FH holds a list of
distinct positions idx.  LH sends z = x - a[:L] (uniform to FH).  FH computes

    k = sigma[idx]                 sent to LH: distinct uniform positions of [N]
    w = z[idx] + delta[k]          = x[idx] + c[k]       (FH's share)

and LH's share is -c[k].  So FH and LH end with additive shares of x[idx]; FH saw only
uniform words, and LH saw only k, which is independent of idx because sigma is fresh.

A histogram is two gathers (see vertical.py): gather 1 puts LH's gradients in FH's
(node, bin) order; each side takes prefix sums of its share; gather 2 picks LH's
prefix share at FH's segment ends.  FH adds its own prefix share there and sends the
sums, so LH opens exactly the per-(node, bin) sums of g and h and nothing else.  FH
pads each segment with one zero row so that segment ends are distinct even for empty
bins (LH must not learn which bins are empty).
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numba import njit

from ppxgb.errors import ParameterError
from ppxgb.sharing import Randomness

WIDTH = 2  # g and h


def derive_key(master: bytes, *labels) -> bytes:
    """A 32-byte key for one named stream: SHA-256(master || labels); independent streams."""
    if not isinstance(master, (bytes, bytearray)) or len(master) != 32:
        raise ParameterError.bad("master key", "32 bytes", type(master).__name__)
    text = "|".join(str(x) for x in labels).encode()
    return hashlib.sha256(b"ppxgb-vertical-v1|" + bytes(master) + b"|" + text).digest()


_ZEROS = np.zeros(0, dtype=np.uint8)


def keystream_words(key: bytes, n: int) -> np.ndarray:
    """n words of AES-256-CTR keystream (zero nonce): exactly `Randomness(key).words(n)`,
    written straight into a numpy buffer (about 4x faster than going through bytes)."""
    global _ZEROS
    nbytes = 8 * n
    zeros = _ZEROS
    if zeros.size < nbytes:
        zeros = _ZEROS = np.zeros(max(nbytes, 2 * zeros.size), dtype=np.uint8)
    out = np.empty(nbytes + 15, dtype=np.uint8)      # update_into wants a block of slack
    enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    enc.update_into(zeros[:nbytes], out)
    return out[:nbytes].view(np.uint64)


def stream(master: bytes, *labels, rows: int, width: int = WIDTH) -> np.ndarray:
    """rows x width uniform ring words from the named AES-CTR stream."""
    return keystream_words(derive_key(master, *labels), rows * width).reshape(rows, width)


def stream_rows(master: bytes, *labels, positions: np.ndarray) -> np.ndarray:
    """Rows `positions` of `stream(master, *labels, rows=...)`, without the others.

    A row is WIDTH = 2 words = one AES block, so row i is the CTR keystream block of
    counter i: AES-ECB of i as a 16-byte big-endian integer.  Reading a few rows, or
    rows in a scattered order, costs one block each and no gather from a big vector.
    """
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    if pos.size and pos.min() < 0:
        raise ParameterError.bad("positions", "row numbers >= 0", int(pos.min()))
    blocks = np.zeros((pos.size, 16), dtype=np.uint8)
    blocks[:, 8:] = pos.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty(pos.size * 16 + 15, dtype=np.uint8)     # update_into wants a block of slack
    enc = Cipher(algorithms.AES(derive_key(master, *labels)), modes.ECB()).encryptor()
    enc.update_into(blocks.reshape(-1), out)
    return out[:pos.size * 16].view(np.uint64).reshape(pos.size, WIDTH)


@njit(cache=True, nogil=True)
def _fisher_yates(words: np.ndarray) -> np.ndarray:
    n = words.shape[0]
    perm = np.arange(n).astype(np.int64)
    for i in range(n - 1, 0, -1):
        # j uniform in [0, i]: high 64 bits of w * (i + 1), computed in 32-bit halves
        # (bias below (i + 1) / 2^64)
        w = words[i]
        b = np.uint64(i + 1)
        lo = (w & np.uint64(0xFFFFFFFF)) * b
        hi = (w >> np.uint64(32)) * b + (lo >> np.uint64(32))
        j = np.int64(hi >> np.uint64(32))
        t = perm[i]
        perm[i] = perm[j]
        perm[j] = t
    return perm


def random_permutation(rng: Randomness, n: int) -> np.ndarray:
    """A uniformly random permutation of [n] (int64), Fisher-Yates driven by AES-CTR."""
    if n < 0:
        raise ParameterError.bad("n", "a size >= 0", n)
    return _fisher_yates(rng.words(n).copy())


def permutation(master: bytes, *labels, n: int) -> np.ndarray:
    """The named stream's permutation of [n]: Fisher-Yates on its AES-CTR words."""
    return _fisher_yates(keystream_words(derive_key(master, *labels), n))


def correlation_delta(sigma: np.ndarray, a: np.ndarray, c: np.ndarray, *, overwrite_c: bool = False) -> np.ndarray:
    """The dealer's message to FH: delta[sigma[p]] = a[p] + c[sigma[p]] (mod 2^64).
    With overwrite_c the result is built in c's memory (c is then gone)."""
    return _delta(np.ascontiguousarray(sigma, dtype=np.int64), a, c if overwrite_c else c.copy())


@njit(cache=True, nogil=True)
def _delta(sigma, a, out):
    for p in range(sigma.shape[0]):
        q = sigma[p]
        for j in range(a.shape[1]):
            out[q, j] += a[p, j]
    return out


def gather_fh(z: np.ndarray, idx: np.ndarray, sigma: np.ndarray,
              delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FH's side of an oblivious gather: (k for LH, FH's share of x[idx])."""
    return _gather_fh(z, np.ascontiguousarray(idx, dtype=np.int64),
                      np.ascontiguousarray(sigma, dtype=np.int64), delta)


@njit(cache=True, nogil=True)
def _gather_fh(z, idx, sigma, delta):
    n, w = idx.shape[0], z.shape[1]
    k = np.empty(n, np.int64)
    out = np.empty((n, w), np.uint64)
    for i in range(n):
        p = idx[i]
        q = sigma[p]
        k[i] = q
        for j in range(w):
            out[i, j] = z[p, j] + delta[q, j]
    return k, out


def gather_lh(c: np.ndarray, k: np.ndarray, n: int) -> np.ndarray:
    """LH's share of x[idx]: -c[k]; checks that k is n distinct in-range positions."""
    return _neg_take(c, checked_positions(k, n, len(c)))


@njit(cache=True, nogil=True)
def _neg_take(c, k):
    out = np.empty((k.shape[0], c.shape[1]), np.uint64)
    for i in range(k.shape[0]):
        for j in range(c.shape[1]):
            out[i, j] = np.uint64(0) - c[k[i], j]
    return out


@njit(cache=True, nogil=True)
def _distinct_in_range(k, size):
    seen = np.zeros(size, np.bool_)
    for i in range(k.shape[0]):
        v = k[i]
        if v < 0 or v >= size or seen[v]:
            return False
        seen[v] = True
    return True


def prefix(v: np.ndarray) -> np.ndarray:
    """Inclusive prefix sums along rows, wrapping mod 2^64."""
    return np.cumsum(v, axis=0, dtype=np.uint64)


@njit(cache=True, nogil=True)
def _segment_layout(slot, bins, n_slots, n_bins):
    """Positions for gather 1, ordered by (slot, bin) with missing as bin n_bins, one
    padding row (index m + segment) closing each segment; and each segment's end."""
    m = slot.shape[0]
    n_seg = n_slots * (n_bins + 1)
    counts = np.zeros(n_seg, np.int64)
    for r in range(m):
        b = np.int64(bins[r])
        if b >= n_bins:
            b = n_bins
        counts[slot[r] * (n_bins + 1) + b] += 1
    start = np.zeros(n_seg, np.int64)
    ends = np.zeros(n_seg, np.int64)
    pos = 0
    for s in range(n_seg):
        start[s] = pos
        pos += counts[s]
        ends[s] = pos          # position of the padding row
        pos += 1
    idx = np.empty(pos, np.int64)
    fill = start.copy()
    for r in range(m):
        b = np.int64(bins[r])
        if b >= n_bins:
            b = n_bins
        s = slot[r] * (n_bins + 1) + b
        idx[fill[s]] = r
        fill[s] += 1
    for s in range(n_seg):
        idx[ends[s]] = m + s
    return idx, ends


def segment_layout(slot: np.ndarray, bins: np.ndarray, n_slots: int,
                   n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """FH's private order for one feature: (idx over m + n_slots*(n_bins+1) rows, ends).

    slot[r] is the node slot of built row r, bins[r] its bin (>= n_bins means missing).
    """
    return _segment_layout(np.ascontiguousarray(slot, dtype=np.int64),
                           np.ascontiguousarray(bins), int(n_slots), int(n_bins))


def segment_sums(prefix_at_ends: np.ndarray) -> np.ndarray:
    """Per-segment sums from prefix sums taken at the segment ends (mod 2^64)."""
    out = prefix_at_ends.copy()
    out[1:] -= prefix_at_ends[:-1]
    return out


def correlation_size(n_rows: int, level: int, max_bin: int) -> int:
    """Dealer vector length for a level: a public bound on built rows plus padding.

    The nodes built at depth d >= 1 are smaller children, so they hold at most
    n_rows // 2 rows in total; there are at most 2^(d-1) of them (1 at the root), each
    with at most max_bin + 1 segments (bins and missing).
    """
    rows = n_rows if level == 0 else n_rows // 2
    nodes = 1 if level == 0 else 1 << (level - 1)
    return rows + nodes * (max_bin + 1)


# ---- fused steps of the histogram protocol (same maths as the functions above, one pass)
@njit(cache=True, nogil=True)
def _fh_gather_prefix(z, idx, sigma, delta, ends):
    n, w = idx.shape[0], z.shape[1]
    k = np.empty(n, np.int64)
    acc = np.zeros(w, np.uint64)
    at_ends = np.empty((ends.shape[0], w), np.uint64)
    e = 0
    for i in range(n):
        p = idx[i]
        q = sigma[p]
        k[i] = q
        for j in range(w):
            acc[j] += z[p, j] + delta[q, j]
        while e < ends.shape[0] and ends[e] == i:
            at_ends[e] = acc
            e += 1
    return k, at_ends


def fh_gather_prefix(z: np.ndarray, idx: np.ndarray, sigma: np.ndarray, delta: np.ndarray,
                     ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather 1 and FH's prefix sums at the segment ends: (k1, prefix(w)[ends])."""
    return _fh_gather_prefix(z, np.ascontiguousarray(idx, dtype=np.int64),
                             np.ascontiguousarray(sigma, dtype=np.int64), delta,
                             np.ascontiguousarray(ends, dtype=np.int64))


@njit(cache=True, nogil=True)
def _lh_select_input(c1, k1, a2):
    n, w = k1.shape[0], c1.shape[1]
    seen = np.zeros(c1.shape[0], np.bool_)
    acc = np.zeros(w, np.uint64)
    out = np.empty((n, w), np.uint64)
    for i in range(n):
        q = k1[i]
        if q < 0 or q >= c1.shape[0] or seen[q]:
            return out, False
        seen[q] = True
        for j in range(w):
            acc[j] -= c1[q, j]
            out[i, j] = acc[j] - a2[i, j]
    return out, True


def lh_select_input(c1: np.ndarray, k1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """LH after gather 1: z2 = prefix(-c1[k1]) - a2, checking k1 is distinct and in range."""
    k1 = np.asarray(k1)
    if k1.ndim != 1 or k1.dtype.kind not in "iu" or len(k1) != len(a2):
        raise ParameterError.bad("gather positions", f"{len(a2)} integer positions", getattr(k1, "shape", k1))
    out, ok = _lh_select_input(c1, k1.astype(np.int64), a2)
    if not ok:
        raise ParameterError.bad("gather positions", f"distinct positions in [0, {len(c1)})", "other values")
    return out


def checked_positions(k, n: int, size: int) -> np.ndarray:
    """k as int64 after checking it is n distinct positions in [0, size)."""
    k = np.asarray(k)
    if k.ndim != 1 or len(k) != n or k.dtype.kind not in "iu":
        raise ParameterError.bad("gather positions", f"{n} integer positions", getattr(k, "shape", k))
    k = k.astype(np.int64, copy=False)
    if n and not _distinct_in_range(k, size):
        raise ParameterError.bad("gather positions", f"distinct positions in [0, {size})", "other values")
    return k


@njit(cache=True, nogil=True)
def _select_from_rows(c1k, a2):
    n, w = c1k.shape
    acc = np.zeros(w, np.uint64)
    out = np.empty((n, w), np.uint64)
    for i in range(n):
        for j in range(w):
            acc[j] -= c1k[i, j]
            out[i, j] = acc[j] - a2[i, j]
    return out


def lh_select_from_rows(c1_at_k1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """lh_select_input with c1's rows already taken at k1 (see stream_rows):
    z2 = prefix(-c1[k1]) - a2."""
    return _select_from_rows(c1_at_k1, a2)
