"""Dealer-assisted oblivious permutation and selection over Z_2^64 ("permute and share").

The maths of the vertical histogram protocol, as pure functions on arrays.

**Permutation correlation.** A dealer draws a uniformly random permutation sigma of
[N] and uniform ring vectors a, c of N rows, and hands

    to the label holder LH:   a, c                    (as seeds)
    to the feature holder FH: sigma (as a seed), delta with delta[p] = a[p] + c[sigma[p]]

`delta` is the only vector that must travel: c masks it completely.  Every stream is
the PRF of ppxgb/crypto/prf.py (row i = AES-128 of the counter i), so the dealer evaluates
c at sigma, and LH c at k, directly inside one kernel, touching no memory at random.

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

import functools
import hashlib

import numpy as np
from numba import njit

from ppxgb.errors import ParameterError
from ppxgb.crypto.sharing import Randomness

from ppxgb.crypto import prf

WIDTH = 2  # g and h


def derive_key(master: bytes, *labels) -> bytes:
    """A 32-byte key for one named stream: SHA-256(master || labels); independent streams."""
    if not isinstance(master, (bytes, bytearray)) or len(master) != 32:
        raise ParameterError.bad("master key", "32 bytes", type(master).__name__)
    return hashlib.sha256(b"ppxgb-vertical-v1|" + bytes(master) + b"|"
                          + "|".join(map(str, labels)).encode()).digest()


def prf_key(master: bytes, *labels) -> np.ndarray:
    """The PRF round keys of one named stream (AES-128 keyed by the first half of
    derive_key(master, *labels))."""
    return prf.round_keys(derive_key(master, *labels)[:16])


def stream_key(base: np.ndarray, name: str) -> np.ndarray:
    """The round keys of stream `name` under base round keys (prf_key of the labels the
    streams share): the CTR keystream from counter block (nonce || 0), with nonce the
    first 8 bytes of SHA-256 of the name.  Streams of different names never share a
    counter block, so they are independent, and a role derives one key per (tree,
    level, feature) instead of one per stream."""
    return prf.with_nonce(base, _nonce(_stream_name(name)))


def stream_keys(master: bytes, *labels, names: tuple[str, ...]) -> np.ndarray:
    """The round keys of several named streams under prf_key(master, *labels), in one
    call: stream_keys(...)[i] equals stream_key(prf_key(master, *labels), names[i])."""
    return prf.round_keys_with_nonces(derive_key(master, *labels)[:16], _nonce_words(tuple(names)))


def _stream_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ParameterError.bad("stream name", "a non-empty str", name)
    return name


@functools.lru_cache(maxsize=None)
def _nonce(name: str) -> int:
    return int.from_bytes(hashlib.sha256(b"ppxgb-stream|" + name.encode()).digest()[:8], "big")


@functools.lru_cache(maxsize=64)
def _nonce_words(names: tuple[str, ...]) -> np.ndarray:
    words = np.array([prf.nonce_word(_nonce(_stream_name(name))) for name in names], dtype=np.uint64)
    words.flags.writeable = False
    return words


def stream(master: bytes, *labels, rows: int) -> np.ndarray:
    """rows x 2 uniform ring words: row i of the named stream is PRF(i) (the AES-128-CTR
    keystream with a zero initial counter block)."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
        raise ParameterError.bad("rows", "an int >= 0", rows)
    return prf.rows(prf_key(master, *labels), int(rows))


def masked(x: np.ndarray, master: bytes, *labels, rows: int, out: np.ndarray | None = None) -> np.ndarray:
    """x (m x 2 ring words, zero rows appended up to `rows`) minus the named stream:
    z = x - stream(master, *labels, rows=rows), in one pass (into `out` if given)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if x.ndim != 2 or x.shape[1] != WIDTH or not len(x) <= rows:
        raise ParameterError.bad("x", f"at most {rows} rows of {WIDTH} ring words", x.shape)
    return _minus_rows(prf_key(master, *labels), x, _out_rows(out, int(rows)))


@njit(cache=True, nogil=True)
def _minus_rows(rk, x, out):
    m, n = x.shape[0], out.shape[0]
    i = 0
    while i + 4 <= n:
        c = prf.prf4(rk, np.uint64(i), np.uint64(i + 1), np.uint64(i + 2), np.uint64(i + 3))
        for t in range(4):
            g, h = (x[i + t, 0], x[i + t, 1]) if i + t < m else (np.uint64(0), np.uint64(0))
            out[i + t, 0] = g - c[2 * t]
            out[i + t, 1] = h - c[2 * t + 1]
        i += 4
    while i < n:
        c0, c1 = prf.prf(rk, np.uint64(i))
        g, h = (x[i, 0], x[i, 1]) if i < m else (np.uint64(0), np.uint64(0))
        out[i, 0] = g - c0
        out[i, 1] = h - c1
        i += 1
    return out


@njit(cache=True, inline="always")
def _fisher_yates_step(perm, i, w):
    """Step i of an ascending Fisher-Yates shuffle: swap perm[i] with perm[j], j uniform
    in [i, n) from the high 64 bits of w * (n - i) (bias below n / 2^64)."""
    b = np.uint64(perm.shape[0] - i)
    low = (w & np.uint64(0xFFFFFFFF)) * b
    hi = (w >> np.uint64(32)) * b + (low >> np.uint64(32))
    j = i + np.int64(hi >> np.uint64(32))
    v = perm[i]
    perm[i] = perm[j]
    perm[j] = v


@njit(cache=True, nogil=True)
def _shuffle_words(perm, words):
    for i in range(perm.shape[0]):
        _fisher_yates_step(perm, i, words[i])
    return perm


@njit(cache=True, nogil=True)
def _shuffle_prf(perm, rk, steps):
    """The first `steps` steps of Fisher-Yates with word i = word i % 2 of PRF(i // 2),
    four blocks at a time."""
    n = steps
    full = n - n % 8
    for i in range(0, full, 8):
        w0, w1, w2, w3, w4, w5, w6, w7 = prf.prf4(rk, i // 2, i // 2 + 1, i // 2 + 2, i // 2 + 3)
        _fisher_yates_step(perm, i, w0)
        _fisher_yates_step(perm, i + 1, w1)
        _fisher_yates_step(perm, i + 2, w2)
        _fisher_yates_step(perm, i + 3, w3)
        _fisher_yates_step(perm, i + 4, w4)
        _fisher_yates_step(perm, i + 5, w5)
        _fisher_yates_step(perm, i + 6, w6)
        _fisher_yates_step(perm, i + 7, w7)
    if full < n:
        w = prf.prf4(rk, full // 2, full // 2 + 1, full // 2 + 2, full // 2 + 3)
        for t in range(n - full):
            _fisher_yates_step(perm, full + t, w[t])
    return perm


def _identity(n: int) -> np.ndarray:
    """[0, n) in int32 below 2^31 entries (half the memory to swap at random), else int64."""
    n = _size(n)
    return np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)


def shuffle_with_words(words: np.ndarray) -> np.ndarray:
    """The permutation of [len(words)] that Fisher-Yates makes from these random words."""
    return _shuffle_words(_identity(len(words)), np.ascontiguousarray(words, dtype=np.uint64))


def random_permutation(rng: Randomness, n: int) -> np.ndarray:
    """A uniformly random permutation of [n]: Fisher-Yates driven by rng's words."""
    perm = _identity(n)
    return _shuffle_words(perm, rng.words(perm.size))


def permutation(master: bytes, *labels, n: int, first: int | None = None) -> np.ndarray:
    """The named stream's permutation of [n]: Fisher-Yates on its words, i.e.
    shuffle_with_words(stream(master, *labels, rows=ceil(n / 2)).reshape(-1)[:n]).

    With `first`, only its first entries: Fisher-Yates fixes entry i at step i, so
    `first` steps give them exactly (a feature holder needs sigma only where its
    layout is, a prefix of the dealer's public length)."""
    return permutation_of(prf_key(master, *labels), n=n, first=first)


def permutation_of(rk: np.ndarray, *, n: int, first: int | None = None) -> np.ndarray:
    """`permutation` for the stream with these round keys (prf_key or stream_key)."""
    perm = _identity(n)
    steps = n if first is None else first
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps <= n:
        raise ParameterError.bad("first", f"an int in [0, {n}]", first)
    return _shuffle_prf(perm, rk, int(steps))[:steps]


def correlation_delta(sigma: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The dealer's message to FH: delta[p] = a[p] + c[sigma[p]] (mod 2^64), from the
    whole vector c (reference; the dealer uses shuffled_delta)."""
    return a + c[np.asarray(sigma, dtype=np.int64)]


def shuffled_delta(*, c_key: np.ndarray, sigma_key: np.ndarray, n: int, a: np.ndarray | None = None,
                   a_key: np.ndarray | None = None, out: np.ndarray | None = None,
                   scratch: np.ndarray | None = None) -> np.ndarray:
    """The dealer's delta in one kernel: out[p] = a[p] + c[sigma[p]] for p < n, where
    sigma is the permutation of the stream with round keys sigma_key (what
    `permutation` makes), c the stream of c_key, and a either an (n, 2) array or the
    stream of a_key.  Keys come from prf_key.  `scratch` (int32, at least n entries)
    holds sigma if given, so a caller making many can reuse the memory."""
    n = _size(n)
    if (a is None) == (a_key is None):
        raise ParameterError("shuffled_delta takes exactly one of a and a_key")
    a = _ring_rows(a, n, "a") if a is not None else np.zeros((0, WIDTH), np.uint64)
    perm = _scratch(scratch, n)
    return _shuffled_delta(sigma_key, c_key, a, a_key if a_key is not None else _NO_KEY, a_key is not None,
                           perm, _out_rows(out, n))


def _ring_rows(a, n: int, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.shape != (n, WIDTH) or a.dtype != np.uint64:
        raise ParameterError.bad(name, f"an ({n}, {WIDTH}) uint64 array", getattr(a, "shape", a))
    return np.ascontiguousarray(a)


def _out_rows(out, n: int) -> np.ndarray:
    if out is None:
        return np.empty((n, WIDTH), dtype=np.uint64)
    if not isinstance(out, np.ndarray) or out.shape != (n, WIDTH) or out.dtype != np.uint64 \
            or not out.flags.c_contiguous:
        raise ParameterError.bad("out", f"a contiguous ({n}, {WIDTH}) uint64 array", getattr(out, "shape", out))
    return out


def _size(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError.bad("n", "a size >= 0", n)
    return int(n)


def _scratch(scratch, n: int) -> np.ndarray:
    """n int32 entries for a permutation: the front of `scratch`, or new memory."""
    if n >= 2**31:
        raise ParameterError.bad("n", "below 2^31 for an in-kernel permutation", n)
    if scratch is None:
        return np.empty(n, np.int32)
    if not isinstance(scratch, np.ndarray) or scratch.dtype != np.int32 or scratch.ndim != 1 \
            or len(scratch) < n or not scratch.flags.c_contiguous:
        raise ParameterError.bad("scratch", f"a contiguous int32 vector of at least {n} entries",
                                 getattr(scratch, "shape", scratch))
    return scratch[:n]


_NO_KEY = np.zeros((11, 2), np.uint64)       # placeholder round keys for an unused stream


@njit(cache=True, nogil=True)
def _shuffled_delta(rk_s, rk_c, a, rk_a, a_is_stream, perm, out):
    for i in range(perm.shape[0]):
        perm[i] = i
    _shuffle_prf(perm, rk_s, perm.shape[0])
    return _delta(rk_c, perm, a, rk_a, a_is_stream, out)


@njit(cache=True, nogil=True)
def _delta(rk, sigma, a, rk_a, a_is_stream, out):
    """out[p] = a[p] + PRF_rk(sigma[p]), a read from the array or, if a_is_stream, PRF_rk_a(p)."""
    n = sigma.shape[0]
    i = 0
    while i + 4 <= n:
        c = prf.prf4(rk, sigma[i], sigma[i + 1], sigma[i + 2], sigma[i + 3])
        if a_is_stream:
            p = np.uint64(i)
            v = prf.prf4(rk_a, p, p + np.uint64(1), p + np.uint64(2), p + np.uint64(3))
            for t in range(4):
                out[i + t, 0] = v[2 * t] + c[2 * t]
                out[i + t, 1] = v[2 * t + 1] + c[2 * t + 1]
        else:
            for t in range(4):
                out[i + t, 0] = a[i + t, 0] + c[2 * t]
                out[i + t, 1] = a[i + t, 1] + c[2 * t + 1]
        i += 4
    while i < n:
        c0, c1 = prf.prf(rk, sigma[i])
        if a_is_stream:
            a0, a1 = prf.prf(rk_a, np.uint64(i))
        else:
            a0, a1 = a[i, 0], a[i, 1]
        out[i, 0] = a0 + c0
        out[i, 1] = a1 + c1
        i += 1
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
        if not _take(seen, k[i]):
            return False
    return True


@njit(cache=True, inline="always")
def _take(seen, p):
    """Mark position p as used: False if it is outside [0, len(seen)) or taken already."""
    p = np.int64(p)
    if p < 0 or p >= seen.shape[0] or seen[p]:
        return False
    seen[p] = True
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


def shape_level(step: int, lossguide: bool) -> int:
    """The level whose public sizes bound histogram request `step` of a tree.

    Depth-wise, request d is level d.  Loss-guided, every request after the root holds
    one node, a smaller child (at most n_rows // 2 rows): the sizes of level 1.
    """
    return min(step, 1) if lossguide else step


def shape_levels(steps: int, lossguide: bool) -> int:
    """How many distinct shape levels a tree of `steps` requests uses."""
    return min(steps, 2) if lossguide else steps


def largest_correlation(n_rows: int, max_depth: int, max_bin: int) -> int:
    """The largest correlation_size over the levels a tree of max_depth builds."""
    return max(correlation_size(n_rows, level, max_bin) for level in range(max(max_depth, 1)))


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


def _block_length(beta) -> int:
    """A block size as an int, or ParameterError."""
    if isinstance(beta, bool) or not isinstance(beta, (int, np.integer)) or beta < 1:
        raise ParameterError.bad("block size", "an int >= 1", beta)
    return int(beta)


def _layout_args(slot, bins, n_slots, n_bins, beta) -> tuple:
    """Kernel arguments of a layout: (slot, bins, n_slots, n_bins, beta, length)."""
    n_slots, n_bins, beta = int(n_slots), int(n_bins), _block_length(beta)
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


# ---- fused steps of the histogram protocol (same maths as the functions above, one kernel each)
@njit(cache=True, nogil=True)
def _fh_gather1(z, delta, sigma, rk, shuffle, k, slot, bins, n_slots, n_bins, beta, length):
    """k (length entries) receives the positions.  With `shuffle`, sigma is scratch for
    the permutation of rk's stream: only its first `length` Fisher-Yates steps are run
    (entry i is final after step i).  Rows are (g, h): two ring words."""
    m = slot.shape[0]
    if shuffle:
        for i in range(sigma.shape[0]):
            sigma[i] = i
        _shuffle_prf(sigma, rk, length)
    seg, fill, last = _segments(slot, bins, n_slots, n_bins, beta, length)
    n_seg = last.shape[0]
    sums = np.zeros((n_seg, 2), np.uint64)
    for r in range(m):                      # rows in order: sequential reads
        s = seg[r]
        seg[r] = fill[s]                    # row r's position in the layout
        fill[s] += 1
        sums[s, 0] += z[r, 0] + delta[r, 0]
        sums[s, 1] += z[r, 1] + delta[r, 1]
    # k written in a loop of its own: a store whose address comes from a sequential
    # load, not from the running segment counters, costs about half as much per row
    for r in range(m):
        k[seg[r]] = sigma[r]
    pad = m
    for s in range(n_seg):
        for i in range(fill[s], last[s] + 1):
            k[i] = sigma[pad]
            sums[s, 0] += z[pad, 0] + delta[pad, 0]
            sums[s, 1] += z[pad, 1] + delta[pad, 1]
            pad += 1
    for s in range(1, n_seg):
        sums[s, 0] += sums[s - 1, 0]
        sums[s, 1] += sums[s - 1, 1]
    return k, sums, last


def fh_gather_prefix(z: np.ndarray, delta: np.ndarray, sigma: np.ndarray, slot: np.ndarray,
                     bins: np.ndarray, n_slots: int, n_bins: int,
                     beta: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FH's gather 1 with its own prefix sums, in one kernel reading the rows in row order.

    The same as segment_layout then gather_fh then prefix sums taken at `last`, but
    without materialising idx or gathering: (k1 as uint32, FH's prefix sums at the
    segment ends, last)."""
    args = _layout_args(slot, bins, n_slots, n_bins, beta)
    length = args[-1]
    _check_gather1(z, delta, len(sigma), length)
    return _fh_gather1(z, delta, _as_positions(sigma), _NO_KEY, False, np.empty(length, np.uint32), *args)


def fh_gather_shuffled(z: np.ndarray, delta: np.ndarray, sigma_key: np.ndarray, n: int, slot: np.ndarray,
                       bins: np.ndarray, n_slots: int, n_bins: int, beta: int = 1,
                       scratch: np.ndarray | None = None,
                       k_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fh_gather_prefix with sigma the permutation of [n] of the stream with round keys
    sigma_key, made inside the same kernel and only as far as the layout needs
    (`scratch`, int32 with at least n entries, holds it if given).  The positions are
    written into `k_out` if given (uint32, layout_length entries: a message draft)."""
    args = _layout_args(slot, bins, n_slots, n_bins, beta)
    length, n = args[-1], _size(n)
    _check_gather1(z, delta, n, length)
    if k_out is None:
        k_out = np.empty(length, np.uint32)
    elif not isinstance(k_out, np.ndarray) or k_out.shape != (length,) or k_out.dtype != np.uint32:
        raise ParameterError.bad("k_out", f"a uint32 vector of {length} entries", getattr(k_out, "shape", k_out))
    return _fh_gather1(z, delta, _scratch(scratch, n), sigma_key, True, k_out, *args)


def _check_gather1(z, delta, n_sigma: int, length: int) -> None:
    """z and delta: (rows, 2) uint64 arrays of at least `length` rows; sigma as long."""
    for name, v in (("z", z), ("delta", delta)):
        if not isinstance(v, np.ndarray) or v.ndim != 2 or v.shape[1] != WIDTH or v.dtype != np.uint64:
            raise ParameterError.bad(name, f"(rows, {WIDTH}) uint64 ring words", getattr(v, "shape", v))
    if length > min(len(z), len(delta), n_sigma):
        raise ParameterError.bad("gather 1", f"vectors of at least {length} rows", min(len(z), len(delta), n_sigma))


def checked_positions(k, n: int, size: int) -> np.ndarray:
    """k as int64 after checking it is n distinct positions in [0, size)."""
    k = np.asarray(k)
    if k.ndim != 1 or len(k) != n or k.dtype.kind not in "iu":
        raise ParameterError.bad("gather positions", f"{n} integer positions", getattr(k, "shape", k))
    k = k.astype(np.int64, copy=False)
    if n and not _distinct_in_range(k, size):
        raise ParameterError.bad("gather positions", f"distinct positions in [0, {size})", "other values")
    return k


def lh_block_shares(*, c_key: np.ndarray, a2_key: np.ndarray, k: np.ndarray, size: int,
                    beta: int = 1) -> np.ndarray:
    """LH after gather 1, with c and a2 the streams of these round keys (prf_key): its
    share of gather 1 is -c[k], and it sends z2 = (prefix sums of that share at every
    block end of beta rows) - a2.

    Checks on the way that k is a whole number of blocks of distinct positions in
    [0, size); c and a2 are evaluated where needed (no vectors), all in one pass."""
    beta = _block_length(beta)
    k = np.ascontiguousarray(k)
    if k.ndim != 1 or len(k) % beta or (len(k) and k.dtype.kind not in "iu"):
        raise ParameterError.bad("gather positions", f"whole blocks of {beta} integer positions",
                                 getattr(k, "shape", k))
    out = np.empty((len(k) // beta, WIDTH), dtype=np.uint64)
    if len(k) and (size < 1 or not _block_shares(c_key, k, np.zeros(int(size), np.bool_), a2_key, beta, out)):
        raise ParameterError.bad("gather positions", f"distinct positions in [0, {size})", "other values")
    return out


@njit(cache=True, nogil=True)
def _block_shares(rk, k, seen, rk_a2, beta, out):
    """out[b] = -(sum of PRF(k) over rows < (b + 1) * beta) - PRF_a2(b); False as soon
    as a position is out of [0, len(seen)) or repeated (seen marks those taken)."""
    g, h = np.uint64(0), np.uint64(0)
    i = 0
    for b in range(out.shape[0]):
        end = (b + 1) * beta
        for t in range(i, end):
            if not _take(seen, k[t]):
                return False
        while i + 4 <= end:
            c = prf.prf4(rk, k[i], k[i + 1], k[i + 2], k[i + 3])
            g -= c[0] + c[2] + c[4] + c[6]
            h -= c[1] + c[3] + c[5] + c[7]
            i += 4
        while i < end:
            c0, c1 = prf.prf(rk, k[i])
            g -= c0
            h -= c1
            i += 1
        a0, a1 = prf.prf(rk_a2, np.uint64(b))
        out[b, 0] = g - a0
        out[b, 1] = h - a1
    return True
