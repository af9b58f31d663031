"""Compiled kernels of a party's hot loop (numba): histograms and row partitioning.

Rows are kept grouped by tree node, as XGBoost's hist does: `order` lists row indices
and node k owns the slice order[lo[k]:hi[k]], so building a node's histogram streams
through its own rows with one histogram hot in cache.

Histograms are built directly in fixed point: each row's (g, h) is encoded once as
int64, so sums are exact integers whatever the summation order or thread count, and
the secure result is bit-for-bit reproducible across runs and transports.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

# Every compiled kernel runs on this one thread. In-process simulations run each party
# as a Python thread; funnelling their kernels through one thread serialises them (the
# thread pools behind numba's prange must not be entered concurrently) and keeps a
# single OpenMP team, instead of one spinning team per calling thread.
_KERNEL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppxgb-kernels")


def _run(fn, *args):
    return _KERNEL_THREAD.submit(fn, *args).result()


def missing_code(dtype) -> int:
    return int(np.iinfo(dtype).max)


@njit(parallel=True, nogil=True, cache=True)
def _build_hist(bins, missing, offsets, gh, order, seg_slot, seg_lo, seg_hi,
                n_slots, n_bins_total, n_chunks):
    n_feat = bins.shape[1]
    stride = (n_bins_total + 1) * 2
    total = 0
    for s in range(seg_lo.shape[0]):
        total += seg_hi[s] - seg_lo[s]
    parts = np.zeros((n_chunks, n_slots * stride), dtype=np.int64)
    per = (total + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        start = c * per
        stop = min(total, start + per)
        hist = parts[c]
        pos = 0
        for s in range(seg_lo.shape[0]):
            lo = seg_lo[s]
            n = seg_hi[s] - lo
            a = max(start, pos)
            b = min(stop, pos + n)
            if a < b:
                base = seg_slot[s] * stride
                tot = base + n_bins_total * 2
                for i in range(lo + a - pos, lo + b - pos):
                    r = order[i]
                    gr = gh[r, 0]
                    hr = gh[r, 1]
                    hist[tot] += gr
                    hist[tot + 1] += hr
                    for f in range(n_feat):
                        bb = bins[r, f]
                        if bb != missing:
                            k = base + (offsets[f] + bb) * 2
                            hist[k] += gr
                            hist[k + 1] += hr
            pos += n
    out = parts[0].copy()
    for c in range(1, n_chunks):
        out += parts[c]
    return out.reshape(n_slots, n_bins_total + 1, 2)


def build_histograms(bins: np.ndarray, offsets: np.ndarray, gh: np.ndarray, order: np.ndarray, lo: np.ndarray, hi: np.ndarray, nodes: np.ndarray,
                     n_bins_total: int) -> np.ndarray:
    """Fixed-point histograms of the given nodes; gh is int64 (n_rows, 2) = (g, h).

    Returns int64 of shape (len(nodes), n_bins_total + 1, 2); index n_bins_total holds
    the node totals (missing values included).
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    seg_lo, seg_hi = lo[nodes], hi[nodes]
    rows = int((seg_hi - seg_lo).sum())
    n_chunks = max(1, min(numba.get_num_threads(), rows // 8192 or 1))
    return _run(_build_hist, bins, missing_code(bins.dtype), offsets, gh, order,
                np.arange(len(nodes), dtype=np.int64), seg_lo, seg_hi,
                len(nodes), n_bins_total, n_chunks)


@njit(parallel=True, nogil=True, cache=True)
def _partition(bins, missing, order, seg_lo, seg_hi, feature, split_bin, default_left, mid):
    for s in prange(seg_lo.shape[0]):
        lo, hi = seg_lo[s], seg_hi[s]
        f, sb, dl = feature[s], split_bin[s], default_left[s]
        right = np.empty(hi - lo, dtype=order.dtype)
        n_left = 0
        n_right = 0
        for i in range(lo, hi):
            r = order[i]
            b = bins[r, f]
            go_left = dl if b == missing else np.int64(b) <= sb
            if go_left:
                order[lo + n_left] = r
                n_left += 1
            else:
                right[n_right] = r
                n_right += 1
        for j in range(n_right):
            order[lo + n_left + j] = right[j]
        mid[s] = lo + n_left


def partition(bins: np.ndarray, order: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              nodes, feature, split_bin, default_left, left, right) -> None:
    """Split the row slices of `nodes` in place (stable) and record the children's slices."""
    nodes = np.asarray(nodes, dtype=np.int64)
    if nodes.size == 0:
        return
    mid = np.empty(len(nodes), dtype=np.int64)
    _run(_partition, bins, missing_code(bins.dtype), order, lo[nodes], hi[nodes],
         np.asarray(feature, np.int64), np.asarray(split_bin, np.int64),
         np.asarray(default_left, np.bool_), mid)
    left = np.asarray(left, np.int64)
    right = np.asarray(right, np.int64)
    lo[left], hi[left] = lo[nodes], mid
    lo[right], hi[right] = mid, hi[nodes]


@njit(parallel=True, nogil=True, cache=True)
def _cell_counts(X, level, prefixes, ptr, out_ptr, out):
    shift_child = 32 - 8 * level
    for f in prange(X.shape[1]):
        lo, hi = ptr[f], ptr[f + 1]
        if lo == hi:
            continue
        for r in range(X.shape[0]):
            x = X[r, f]
            if x != x:  # NaN
                continue
            x = x + np.float32(0.0)  # -0.0 -> +0.0
            bits = np.uint32(np.int32(np.float32(x).view(np.int32)))
            key = (~bits) if bits & np.uint32(0x80000000) else (bits | np.uint32(0x80000000))
            child = np.uint32(key) >> np.uint32(shift_child)
            parent = child >> np.uint32(8) if level > 1 else np.uint32(0)
            a, b = lo, hi
            while a < b:  # lower bound of parent in this feature's sorted prefixes
                m = (a + b) // 2
                if prefixes[m] < parent:
                    a = m + 1
                else:
                    b = m
            if a < hi and prefixes[a] == parent:
                out[out_ptr[f] + (a - lo) * 256 + (child & np.uint32(0xFF))] += 1


def cell_counts(X: np.ndarray, level: int, active: list[np.ndarray]) -> np.ndarray:
    """Counts of values in the 256 sub-cells of each active prefix, per feature (int64)."""
    sizes = np.array([len(a) for a in active], dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out_ptr = ptr * 256
    prefixes = (np.concatenate(active) if len(active) else np.zeros(0)).astype(np.uint32)
    out = np.zeros(int(out_ptr[-1]), dtype=np.int64)
    _run(_cell_counts, np.ascontiguousarray(X, dtype=np.float32), level, prefixes, ptr, out_ptr, out)
    return out
