"""Dealer-assisted oblivious permutation and selection over Z_2^64 ("permute and share").

The maths of the vertical histogram protocol, as pure functions on arrays.

**Permutation correlation.** A dealer draws a uniformly random permutation sigma of
[N] and uniform ring vectors a, c of N rows, and hands

    to the label holder LH:   a, c                    (as seeds)
    to the feature holder FH: sigma (as a seed), delta with delta[p] = a[p] + c[sigma[p]]

`delta` is the only vector that must travel: c masks it completely.  The dealer reads
c at sigma straight from AES (stream_rows), so building delta touches no memory at
random.

**Oblivious gather.** LH holds a vector x (rows 0..L-1, L <= N); FH holds a list of
distinct positions idx.  LH sends z = x - a[:L] (uniform to FH).  FH computes

    k = sigma[idx]                 sent to LH: distinct uniform positions of [N]
    w = z[idx] + delta[idx]        = x[idx] + c[k]       (FH's share)

and LH's share is -c[k].  So FH and LH end with additive shares of x[idx]; FH saw only
uniform words, and LH saw only k, which is independent of idx because sigma is fresh.

A histogram is two gathers (see vertical.py): gather 1 puts LH's gradients in FH's
(node, bin) order; each side takes prefix sums of its share; gather 2 picks LH's
prefix share at FH's segment ends.  FH adds its own prefix share there and sends the
sums, so LH opens exactly the per-(node, bin) sums of g and h and nothing else.

**Blocks.** FH pads every (node, bin) segment with zero rows to a whole number of
blocks of beta rows, at least one (so segment ends are distinct even for empty bins:
LH must not learn which bins are empty), and the layout to a length that depends only
on the number of built rows and public sizes.  Segment ends then fall on block ends,
so LH sends its prefix share only at block ends and gather 2 selects among L / beta
blocks instead of L rows.  beta (block_size) is a public function of the level.
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
    pos = np.ascontiguousarray(positions)
    if pos.ndim != 1 or (pos.size and pos.dtype.kind not in "iu"):
        raise ParameterError.bad("positions", "a vector of row numbers", getattr(pos, "shape", pos))
    if pos.size and pos.dtype.kind == "i" and pos.min() < 0:
        raise ParameterError.bad("positions", "row numbers >= 0", int(pos.min()))
    out = np.empty(pos.size * 16 + 16, dtype=np.uint8)     # update_into wants a block of slack
    blocks = _counter_blocks(pos.astype(np.uint64, copy=False))
    enc = Cipher(algorithms.AES(derive_key(master, *labels)), modes.ECB()).encryptor()
    enc.update_into(blocks.view(np.uint8).reshape(-1), out)
    return out[:pos.size * 16].view(np.uint64).reshape(pos.size, WIDTH)


@njit(cache=True, nogil=True)
def _counter_blocks(pos):
    """16-byte big-endian counter blocks of pos, as (n, 2) native words (byte-swapped)."""
    out = np.empty((pos.shape[0], 2), np.uint64)
    for i in range(pos.shape[0]):
        v = pos[i]
        r = np.uint64(0)
        for _ in range(8):
            r = (r << np.uint64(8)) | (v & np.uint64(0xFF))
            v >>= np.uint64(8)
        out[i, 0] = 0
        out[i, 1] = r
    return out


@njit(cache=True, nogil=True)
def _shuffle(words: np.ndarray, perm: np.ndarray) -> np.ndarray:
    n = words.shape[0]
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


def _fisher_yates(words: np.ndarray) -> np.ndarray:
    """Fisher-Yates on [0, len(words)); int32 below 2^31 entries (half the memory to
    swap at random, about twice as fast at 10^5 to 10^6 entries), else int64."""
    n = words.shape[0]
    return _shuffle(words, np.arange(n, dtype=np.int32 if n < 2**31 else np.int64))


def random_permutation(rng: Randomness, n: int) -> np.ndarray:
    """A uniformly random permutation of [n] (int32 or int64), Fisher-Yates driven by AES-CTR."""
    if n < 0:
        raise ParameterError.bad("n", "a size >= 0", n)
    return _fisher_yates(rng.words(n).copy())


def permutation(master: bytes, *labels, n: int) -> np.ndarray:
    """The named stream's permutation of [n]: Fisher-Yates on its AES-CTR words."""
    return _fisher_yates(keystream_words(derive_key(master, *labels), n))


def correlation_delta(sigma: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The dealer's message to FH: delta[p] = a[p] + c[sigma[p]] (mod 2^64), from the
    whole vector c (reference; the dealer uses dealer_delta)."""
    return a + c[np.asarray(sigma, dtype=np.int64)]


def dealer_delta(master: bytes, *labels, sigma: np.ndarray, a: np.ndarray) -> np.ndarray:
    """correlation_delta with c the named stream, read at sigma by AES-ECB: no vector c
    and no random memory access."""
    out = stream_rows(master, *labels, positions=sigma)
    out += a
    return out


def _as_positions(sigma: np.ndarray) -> np.ndarray:
    """A permutation as a contiguous int32 or int64 vector (kernels take either)."""
    sigma = np.asarray(sigma)
    return np.ascontiguousarray(sigma if sigma.dtype in (np.int32, np.int64) else sigma.astype(np.int64))


def gather_fh(z: np.ndarray, idx: np.ndarray, sigma: np.ndarray,
              delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FH's side of an oblivious gather: (k for LH, FH's share of x[idx]).

    k = sigma[idx] and the share is z[idx] + delta[idx] = x[idx] + c[k]."""
    return _gather_fh(z, np.ascontiguousarray(idx, dtype=np.int64), _as_positions(sigma), delta)


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
            out[i, j] = z[p, j] + delta[p, j]
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


def block_size(n_rows: int, level: int, max_bin: int) -> int:
    """The public block length beta of a level: segment ends fall on multiples of beta.

    Gather 1 then carries up to beta padding rows per segment, and gather 2 selects among
    L / beta block prefix sums instead of L positions.  The total, about
    rows * (1 + 1 / beta) + segments * beta, is least near beta = sqrt(rows / segments);
    beta is that rounded to a power of two (1 to 256).  It depends only on public sizes.
    """
    rows = n_rows if level == 0 else n_rows // 2
    segments = (1 if level == 0 else 1 << (level - 1)) * (max_bin + 1)
    beta = 1
    while beta < 256 and (2 * beta) ** 2 * segments <= 2 * rows:     # 2 beta <= sqrt(2 rows / segs)
        beta *= 2
    return beta


def layout_length(m: int, n_segments: int, beta: int) -> int:
    """Length of FH's order for m built rows in n_segments segments of whole blocks:
    beta * (n_segments + ceil(m / beta)), an upper bound on the blocks the segments
    need (a segment of c rows takes max(1, ceil(c / beta)) blocks).  It depends only on
    m and public sizes, so it reveals nothing about the bins."""
    return beta * (n_segments + -(-m // beta))


def correlation_size(n_rows: int, level: int, max_bin: int) -> int:
    """Dealer vector length of gather 1 for a level: a public bound on layout_length.

    The nodes built at depth d >= 1 are smaller children, so they hold at most
    n_rows // 2 rows in total; there are at most 2^(d-1) of them (1 at the root), each
    with at most max_bin + 1 segments (bins and missing).  Gather 2 works on blocks:
    its vectors have correlation_size // block_size rows.
    """
    rows = n_rows if level == 0 else n_rows // 2
    nodes = 1 if level == 0 else 1 << (level - 1)
    return layout_length(rows, nodes * (max_bin + 1), block_size(n_rows, level, max_bin))


@njit(cache=True, nogil=True)
def _segments(slot, bins, n_slots, n_bins, beta, length):
    """The layout rule, in one place: each built row's segment (slot, bin) with missing
    as bin n_bins; each segment's first position; and its last position, after padding
    to whole blocks of beta (at least one), the last segment up to `length`."""
    m = slot.shape[0]
    n_seg = n_slots * (n_bins + 1)
    counts = np.zeros(n_seg, np.int64)
    seg = np.empty(m, np.int64)
    for r in range(m):
        b = np.int64(bins[r])
        if b >= n_bins:
            b = n_bins
        s = slot[r] * (n_bins + 1) + b
        seg[r] = s
        counts[s] += 1
    start = np.zeros(n_seg, np.int64)
    last = np.zeros(n_seg, np.int64)
    pos = 0
    for s in range(n_seg):
        start[s] = pos
        pos += beta * max((counts[s] + beta - 1) // beta, 1)
        last[s] = pos - 1
    if n_seg:
        last[n_seg - 1] = length - 1
    return seg, start, last


@njit(cache=True, nogil=True)
def _segment_layout(slot, bins, n_slots, n_bins, beta, length):
    """Positions for gather 1 (rows r < m in segment order, then distinct zero rows
    m, m + 1, ... padding each segment) and the last position of each segment."""
    m = slot.shape[0]
    seg, fill, last = _segments(slot, bins, n_slots, n_bins, beta, length)
    idx = np.empty(length, np.int64)
    for r in range(m):
        idx[fill[seg[r]]] = r
        fill[seg[r]] += 1
    pad = m
    for s in range(last.shape[0]):
        for i in range(fill[s], last[s] + 1):
            idx[i] = pad
            pad += 1
    return idx, last


def _layout_args(slot, bins, n_slots, n_bins, beta) -> tuple:
    """Kernel arguments of a layout: (slot, bins, n_slots, n_bins, beta, length)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, np.integer)) or beta < 1:
        raise ParameterError.bad("block size", "an int >= 1", beta)
    n_slots, n_bins, beta = int(n_slots), int(n_bins), int(beta)
    return (np.ascontiguousarray(slot, dtype=np.int64), np.ascontiguousarray(bins), n_slots, n_bins, beta,
            layout_length(len(slot), n_slots * (n_bins + 1), beta))


def segment_layout(slot: np.ndarray, bins: np.ndarray, n_slots: int, n_bins: int,
                   beta: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """FH's private order for one feature: (idx, last).

    slot[r] is the node slot of built row r, bins[r] its bin (>= n_bins means missing).
    idx has layout_length(m, n_slots * (n_bins + 1), beta) entries: real rows r < m in
    (slot, bin) order, each segment closed by zero rows (m, m + 1, ...) up to a whole
    number of blocks.  last[s] is the position of segment s's last row; (last + 1) / beta
    are distinct block numbers, so gather 2 can pick them out.
    """
    return _segment_layout(*_layout_args(slot, bins, n_slots, n_bins, beta))


def segment_sums(prefix_at_ends: np.ndarray) -> np.ndarray:
    """Per-segment sums from prefix sums taken at the segment ends (mod 2^64)."""
    out = prefix_at_ends.copy()
    out[1:] -= prefix_at_ends[:-1]
    return out


# ---- fused steps of the histogram protocol (same maths as the functions above, one pass)
@njit(cache=True, nogil=True)
def _fh_gather1(z, delta, sigma, slot, bins, n_slots, n_bins, beta, length):
    m, w = slot.shape[0], z.shape[1]
    seg, fill, last = _segments(slot, bins, n_slots, n_bins, beta, length)
    n_seg = last.shape[0]
    k = np.empty(length, np.uint32)
    sums = np.zeros((n_seg, w), np.uint64)
    for r in range(m):                      # rows in order: sequential reads, k written per segment
        s = seg[r]
        k[fill[s]] = sigma[r]
        fill[s] += 1
        for j in range(w):
            sums[s, j] += z[r, j] + delta[r, j]
    pad = m
    for s in range(n_seg):
        for i in range(fill[s], last[s] + 1):
            k[i] = sigma[pad]
            for j in range(w):
                sums[s, j] += z[pad, j] + delta[pad, j]
            pad += 1
    for s in range(1, n_seg):
        for j in range(w):
            sums[s, j] += sums[s - 1, j]
    return k, sums, last


def fh_gather_prefix(z: np.ndarray, delta: np.ndarray, sigma: np.ndarray, slot: np.ndarray,
                     bins: np.ndarray, n_slots: int, n_bins: int,
                     beta: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FH's gather 1 with its own prefix sums, in one pass over the rows.

    The same as segment_layout then gather_fh then prefix sums taken at `last`, but
    without materialising idx or gathering: (k1 as uint32, FH's prefix sums at the
    segment ends, last)."""
    args = _layout_args(slot, bins, n_slots, n_bins, beta)
    length = args[-1]
    if length > len(z) or len(delta) < length or len(sigma) < length:
        raise ParameterError.bad("gather 1", f"vectors of at least {length} rows", min(len(z), len(delta), len(sigma)))
    return _fh_gather1(z, delta, _as_positions(sigma), *args)


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
def _select_from_rows(c1k, a2, beta):
    n, w = a2.shape
    acc = np.zeros(w, np.uint64)
    out = np.empty((n, w), np.uint64)
    for t in range(n):
        for i in range(t * beta, (t + 1) * beta):
            for j in range(w):
                acc[j] -= c1k[i, j]
        for j in range(w):
            out[t, j] = acc[j] - a2[t, j]
    return out


def lh_select_from_rows(c1_at_k1: np.ndarray, a2: np.ndarray, beta: int = 1) -> np.ndarray:
    """LH after gather 1, with c1's rows taken at k1 (see stream_rows): its share of
    gather 1 is -c1[k1]; z2 = (prefix sums of that share at every block end) - a2.

    c1_at_k1 has len(a2) * beta rows."""
    if beta < 1 or len(c1_at_k1) != len(a2) * beta:
        raise ParameterError.bad("gather 1 share", f"{len(a2)} blocks of {beta} rows", len(c1_at_k1))
    return _select_from_rows(c1_at_k1, a2, int(beta))
