"""Compiled kernels of a party's hot loop (numba): histograms, row partitioning, bins.

Rows are kept physically grouped by tree node, as in XGBoost's hist, but one step
further: the bin matrix and the (g, h) rows themselves are reordered, not an index into
them.  Node k owns `segments` contiguous row ranges lo[k, c]:hi[k, c] (one per thread,
so a node's rows split and stream in parallel), and building its histogram is a
sequential pass over its own rows: no gather, every cache line fully used.  Splitting
a node swaps its rows in place (two pointers from either end of each range), so a
level costs one streaming pass and no extra buffer.  Row order inside a node is
irrelevant: histograms are sums of integers.

Histograms are built directly in fixed point: each row's (g, h) is encoded once as
int64, so sums are exact integers whatever the summation order or thread count, and
the secure result is bit-for-bit reproducible across runs and transports.  A feature's
histogram has a fixed stride of (most bins of any feature + 1) slots; missing values
carry the code stride - 1, so they fall into the extra slot, which is dropped, and the
inner loop has no branch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numba
import numpy as np
from numba import njit, prange

from ppxgb.splitrule import bin_goes_left

# Every compiled kernel runs on this one thread. In-process simulations run each party
# as a Python thread; funnelling their kernels through one thread serialises them (the
# thread pools behind numba's prange must not be entered concurrently) and keeps a
# single OpenMP team, instead of one spinning team per calling thread.
_KERNEL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppxgb-kernels")


def thread_count(threads: int | None = None) -> int:
    """Threads a kernel may use: `threads` (a party's nthread) capped at numba's pool,
    all of the pool when None."""
    top = numba.config.NUMBA_NUM_THREADS
    return top if threads is None else max(1, min(int(threads), top))


def _run(fn, *args, threads: int | None = None):
    def call():
        numba.set_num_threads(thread_count(threads))    # per calling thread, so per call here
        return fn(*args)

    return _KERNEL_THREAD.submit(call).result()


_NO_BITS = np.zeros(0, dtype=np.uint8)

#: rows from which a histogram pass uses two accumulators (and a chunk per thread)
_TWO_ACCUMULATORS = 4096


def missing_code(dtype) -> int:
    return int(np.iinfo(dtype).max)


@njit(nogil=True, cache=True)
def _hist_rows(bins, gh, i, end, stride, h0, h1):
    """Rows i:end into the accumulators h0 (even rows) and h1 (odd rows) of one node."""
    n_feat = bins.shape[1]
    tot = n_feat * stride * 2
    while i + 1 < end:
        g0 = gh[i, 0]
        q0 = gh[i, 1]
        g1 = gh[i + 1, 0]
        q1 = gh[i + 1, 1]
        h0[tot] += g0
        h0[tot + 1] += q0
        h1[tot] += g1
        h1[tot + 1] += q1
        for f in range(n_feat):
            k0 = (f * stride + bins[i, f]) * 2
            k1 = (f * stride + bins[i + 1, f]) * 2
            h0[k0] += g0
            h0[k0 + 1] += q0
            h1[k1] += g1
            h1[k1 + 1] += q1
        i += 2
    if i < end:
        g0 = gh[i, 0]
        q0 = gh[i, 1]
        h0[tot] += g0
        h0[tot + 1] += q0
        for f in range(n_feat):
            k0 = (f * stride + bins[i, f]) * 2
            h0[k0] += g0
            h0[k0 + 1] += q0


@njit(parallel=True, nogil=True, cache=True)
def _build_hist(bins, gh, seg_lo, seg_hi, per_slot, stride, compact, n_threads):
    """Histograms of slots; slot s owns segments s*per_slot .. (s+1)*per_slot - 1.

    With at least as many slots as threads, each thread builds whole slots; otherwise
    the rows of all slots are cut into one chunk per thread.  Large inputs get two
    accumulators, for alternate rows: consecutive rows often hit the same bins, and
    one accumulator would serialise on those read-modify-writes.
    """
    n_feat = bins.shape[1]
    width = (n_feat * stride + 1) * 2          # one slot: every feature's bins, then the total
    n_slots = seg_lo.shape[0] // per_slot
    out = np.empty((n_slots, compact.shape[0], 2), dtype=np.int64)
    if n_slots >= n_threads:
        for s in prange(n_slots):
            rows = 0
            for q in range(s * per_slot, (s + 1) * per_slot):
                rows += seg_hi[q] - seg_lo[q]
            acc = np.zeros((2 if rows >= _TWO_ACCUMULATORS else 1, width), dtype=np.int64)
            for q in range(s * per_slot, (s + 1) * per_slot):
                _hist_rows(bins, gh, seg_lo[q], seg_hi[q], stride, acc[0], acc[acc.shape[0] - 1])
            for j in range(compact.shape[0]):
                k = compact[j] * 2
                out[s, j, 0] = acc[0, k]
                out[s, j, 1] = acc[0, k + 1]
                if acc.shape[0] == 2:
                    out[s, j, 0] += acc[1, k]
                    out[s, j, 1] += acc[1, k + 1]
        return out
    total = 0
    for q in range(seg_lo.shape[0]):
        total += seg_hi[q] - seg_lo[q]
    n_chunks = max(1, min(n_threads, total // _TWO_ACCUMULATORS))
    parts = np.zeros((n_chunks, 2, n_slots * width), dtype=np.int64)
    per = (total + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        start = c * per
        stop = min(total, start + per)
        pos = 0
        for q in range(seg_lo.shape[0]):
            n = seg_hi[q] - seg_lo[q]
            a = max(start, pos)
            b = min(stop, pos + n)
            if a < b:
                slot = q // per_slot
                _hist_rows(bins, gh, seg_lo[q] + a - pos, seg_lo[q] + b - pos, stride,
                           parts[c, 0, slot * width:(slot + 1) * width],
                           parts[c, 1, slot * width:(slot + 1) * width])
            pos += n
    for s in prange(n_slots):
        for j in range(compact.shape[0]):
            k = s * width + compact[j] * 2
            g = np.int64(0)
            q = np.int64(0)
            for c in range(n_chunks):
                g += parts[c, 0, k] + parts[c, 1, k]
                q += parts[c, 0, k + 1] + parts[c, 1, k + 1]
            out[s, j, 0] = g
            out[s, j, 1] = q
    return out


@njit(cache=True, inline="always")
def left_bit(bits, r):
    """Bit r of left bits packed as np.packbits does (most significant bit first)."""
    return (bits[r >> 3] >> (7 - (r & 7))) & 1


def left_table(categories: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """(splits, width) uint8: 1 where a bin (code) goes left, for each split's set of
    codes going right (an empty set: a numeric split, row unused)."""
    out = np.ones((max(len(categories), 1), max(width, 1)), dtype=np.uint8)
    for i, cats in enumerate(categories):
        cats = np.asarray(cats, dtype=np.int64)
        out[i, cats[cats < width]] = 0
    return out


@njit(nogil=True, cache=True, inline="always")
def table_goes_left(b, missing, table, row, default_left):
    """Categorical rule on bins: bin (code) b goes left when table[row, b] is 1 (codes
    outside the node's set, training/categorical.left_table), missing the default way."""
    return default_left if b == missing else table[row, b] == 1


@njit(nogil=True, cache=True, inline="always")
def _row_goes_left(bins, order, i, f, sb, dl, missing, bits, cat_row, table):
    """The split rule for position i: on the party's own feature f (categorical when
    cat_row >= 0: a row of `table`), or (f < 0) by the left bit of its original row,
    for splits on features another party owns."""
    if f < 0:
        return left_bit(bits, order[i]) == 1
    if cat_row >= 0:
        return table_goes_left(bins[i, f], missing, table, cat_row, dl)
    return bin_goes_left(bins[i, f], missing, sb, dl)


@njit(parallel=True, nogil=True, cache=True)
def _partition(bins, gh, order, missing, seg_lo, seg_hi, feature, split_bin, default_left, bits, cat_rows,
               table, mid):
    n_feat = bins.shape[1]
    for s in prange(seg_lo.shape[0]):
        f, sb, dl, cr = feature[s], split_bin[s], default_left[s], cat_rows[s]
        i = seg_lo[s]
        j = seg_hi[s] - 1
        while True:
            while i <= j and _row_goes_left(bins, order, i, f, sb, dl, missing, bits, cr, table):
                i += 1
            while i <= j and not _row_goes_left(bins, order, j, f, sb, dl, missing, bits, cr, table):
                j -= 1
            if i >= j:
                break
            for k in range(n_feat):
                t = bins[i, k]
                bins[i, k] = bins[j, k]
                bins[j, k] = t
            for k in range(2):
                t2 = gh[i, k]
                gh[i, k] = gh[j, k]
                gh[j, k] = t2
            t3 = order[i]
            order[i] = order[j]
            order[j] = t3
            i += 1
            j -= 1
        mid[s] = i


@njit(parallel=True, nogil=True, cache=True)
def _gather_rows(src, order, out):
    for i in prange(order.shape[0]):
        for k in range(src.shape[1]):
            out[i, k] = src[order[i], k]


@njit(nogil=True, cache=True)
def _add_leaves(column, order, seg_lo, seg_hi, values):
    for s in range(seg_lo.shape[0]):
        v = values[s]
        for i in range(seg_lo[s], seg_hi[s]):
            column[order[i]] += v


class NodeRows:
    """A party's rows grouped by tree node: its bins and (g, h), physically reordered.

    `bins` is the party's own bin matrix (reordered in place, never the caller's data);
    `order[i]` is the original row index of position i.
    """

    def __init__(self, bins: np.ndarray, cut_sizes: np.ndarray, max_nodes: int, threads: int | None = None):
        self.bins = bins
        self.n_rows = bins.shape[0]
        self.order = np.arange(self.n_rows, dtype=np.int32)
        self.threads = thread_count(threads)
        self.segments = max(2, self.threads)
        self.lo = np.zeros((max_nodes, self.segments), dtype=np.int64)
        self.hi = np.zeros((max_nodes, self.segments), dtype=np.int64)
        self.gh = np.zeros((self.n_rows, 2), dtype=np.int64)
        cut_sizes = np.asarray(cut_sizes, dtype=np.int64)
        self.stride = int(cut_sizes.max(initial=0)) + 1
        self.missing = self.stride - 1
        if self.missing != missing_code(bins.dtype):
            bins[bins == missing_code(bins.dtype)] = self.missing
        # histogram slot of every agreed bin (feature-major), then the node total
        self.compact = np.concatenate(
            [np.arange(n) + f * self.stride for f, n in enumerate(cut_sizes)]
            + [[len(cut_sizes) * self.stride]]).astype(np.int64)

    def start_tree(self, gh: np.ndarray) -> None:
        """Root = every row; gh (n_rows, 2) int64 in original row order."""
        _run(_gather_rows, np.ascontiguousarray(gh, dtype=np.int64), self.order, self.gh, threads=self.threads)
        edges = np.linspace(0, self.n_rows, self.segments + 1).astype(np.int64)
        self.lo[:] = 0
        self.hi[:] = 0
        self.lo[0], self.hi[0] = edges[:-1], edges[1:]

    def histograms(self, nodes) -> np.ndarray:
        """Fixed-point histograms (len(nodes), n_bins_total + 1, 2); the last row holds
        each node's totals (missing values included)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        return _run(_build_hist, self.bins, self.gh, self.lo[nodes].ravel(), self.hi[nodes].ravel(),
                    self.segments, self.stride, self.compact, self.threads, threads=self.threads)

    def split(self, nodes, feature, split_bin, default_left, left, right, bits: np.ndarray | None = None,
              categories=None) -> None:
        """Move each node's rows into its children's ranges (in place).  A feature of -1
        splits by `bits`, the left bits of the original rows (np.packbits order).
        categories: per node, the codes that go right for a categorical split (an empty
        list for the others; None: no categorical split)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if nodes.size == 0:
            return
        if np.any(np.asarray(feature) < 0) and (bits is None or len(bits) != (self.n_rows + 7) // 8):
            # the kernel reads the bits unchecked: a missing or short array is refused here
            raise ValueError(f"bits: expected {(self.n_rows + 7) // 8} packed bytes for splits by left bits")
        t = self.segments
        mid = np.empty(len(nodes) * t, dtype=np.int64)
        cats = categories if categories is not None else [()] * len(nodes)
        cat_rows = np.repeat(np.array([i if len(c) else -1 for i, c in enumerate(cats)], np.int64), t)
        table = left_table(cats, self.stride)
        _run(_partition, self.bins, self.gh, self.order, self.missing,
             self.lo[nodes].ravel(), self.hi[nodes].ravel(),
             np.repeat(np.asarray(feature, np.int64), t), np.repeat(np.asarray(split_bin, np.int64), t),
             np.repeat(np.asarray(default_left, np.bool_), t),
             _NO_BITS if bits is None else np.ascontiguousarray(bits, dtype=np.uint8), cat_rows, table, mid,
             threads=self.threads)
        mid = mid.reshape(len(nodes), t)
        left = np.asarray(left, np.int64)
        right = np.asarray(right, np.int64)
        self.lo[left], self.hi[left] = self.lo[nodes], mid
        self.lo[right], self.hi[right] = mid, self.hi[nodes]

    def add_leaves(self, column: np.ndarray, nodes, values) -> None:
        """column[row] += value of the leaf holding the row (float32, as XGBoost)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        values = np.repeat(np.asarray(values, dtype=np.float32), self.segments)
        _run(_add_leaves, column, self.order, self.lo[nodes].ravel(), self.hi[nodes].ravel(), values,
             threads=self.threads)


@njit(nogil=True, cache=True, inline="always")
def _order_key(x):
    """The order-preserving uint32 key of a float32 (see binning.float_keys)."""
    x = x + np.float32(0.0)  # -0.0 -> +0.0
    bits = np.uint32(np.int32(np.float32(x).view(np.int32)))
    return (~bits) if bits & np.uint32(0x80000000) else (bits | np.uint32(0x80000000))


@njit(parallel=True, nogil=True, cache=True)
def _cell_counts(Xt, level, prefixes, ptr, out_ptr, out):
    shift_child = 32 - 8 * level
    # parents of up to 16 bits are looked up in a table, longer ones binary-searched
    table_size = 1 << (8 * (level - 1)) if level <= 3 else 0
    for f in prange(Xt.shape[0]):
        lo, hi = ptr[f], ptr[f + 1]
        if lo == hi:
            continue
        col = Xt[f]
        table = np.full(table_size, -1, dtype=np.int64)
        for a in range(lo, hi):
            if prefixes[a] < table_size:
                table[prefixes[a]] = a - lo
        base = out_ptr[f]
        for r in range(col.shape[0]):
            x = col[r]
            if x != x:  # NaN
                continue
            child = _order_key(x) >> np.uint32(shift_child)
            parent = child >> np.uint32(8) if level > 1 else np.uint32(0)
            if table_size:
                a = table[parent]
                if a >= 0:
                    out[base + a * 256 + (child & np.uint32(0xFF))] += 1
                continue
            a, b = lo, hi
            while a < b:  # lower bound of parent in this feature's sorted prefixes
                m = (a + b) // 2
                if prefixes[m] < parent:
                    a = m + 1
                else:
                    b = m
            if a < hi and prefixes[a] == parent:
                out[base + (a - lo) * 256 + (child & np.uint32(0xFF))] += 1


def _columns(X: np.ndarray) -> np.ndarray:
    """(features, rows) float32, C-contiguous: free for a Fortran-ordered float32 X."""
    return np.ascontiguousarray(np.asarray(X, dtype=np.float32).T)


def cell_counts(X: np.ndarray, level: int, active: list[np.ndarray], threads: int | None = None) -> np.ndarray:
    """Counts of values in the 256 sub-cells of each active prefix, per feature (int64).

    Streams each feature's column, so pass X in Fortran order to avoid a copy."""
    sizes = np.array([len(a) for a in active], dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out_ptr = ptr * 256
    prefixes = (np.concatenate(active) if len(active) else np.zeros(0)).astype(np.uint32)
    out = np.zeros(int(out_ptr[-1]), dtype=np.int64)
    _run(_cell_counts, _columns(X), level, prefixes, ptr, out_ptr, out, threads=threads)
    return out


@njit(parallel=True, nogil=True, cache=True)
def _assign_bins(Xt, cuts, cut_ptr, missing, out):
    """bin = upper_bound(cuts, x) clipped to the last bin, found through the order keys:
    a table over the top 16 key bits gives the cuts inside that key range (usually none
    or one), and a binary search among them finishes."""
    n_feat, n_rows = Xt.shape
    for f in prange(n_feat):
        lo, n = cut_ptr[f], cut_ptr[f + 1] - cut_ptr[f]
        keys = np.empty(n, dtype=np.uint32)
        for j in range(n):
            keys[j] = _order_key(cuts[lo + j])
        below = np.empty(65536, dtype=np.int64)   # below[p] = #cuts with key < p << 16
        a = 0
        for p in range(65536):
            while a < n and keys[a] < np.uint32(p << 16):
                a += 1
            below[p] = a
        col = Xt[f]
        for r in range(n_rows):
            x = col[r]
            if x != x:
                out[r, f] = missing
                continue
            key = _order_key(x)
            cell = np.int64(key >> np.uint32(16))
            a = below[cell]                            # cuts below this cell
            b = below[cell + 1] if cell < 65535 else n   # the cuts inside it end here
            while a < b:                               # upper bound among them
                m = (a + b) >> 1
                if keys[m] <= key:
                    a = m + 1
                else:
                    b = m
            out[r, f] = min(a, n - 1)


def assign_bins(X: np.ndarray, cuts: list[np.ndarray], dtype, threads: int | None = None) -> np.ndarray:
    """Bin upper_bound(cuts[f], x) clipped to the last bin, NaN -> the dtype's maximum."""
    cut_ptr = np.concatenate([[0], np.cumsum([len(c) for c in cuts])]).astype(np.int64)
    flat = np.concatenate(cuts).astype(np.float32) if cuts else np.zeros(0, np.float32)
    Xt = _columns(X)
    out = np.empty((Xt.shape[1], Xt.shape[0]), dtype=dtype)
    _run(_assign_bins, Xt, flat, cut_ptr, missing_code(dtype), out, threads=threads)
    return out
