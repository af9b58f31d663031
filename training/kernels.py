"""Compiled kernels of a party's hot loop (numba): histograms and row partitioning.

Histograms are built directly in fixed point: each row's (g, h) is encoded once as
int64, so sums are exact integers whatever the summation order or thread count, and
the secure result is bit-for-bit reproducible across runs and transports.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import njit, prange

MISSING = 0xFFFF

# numba's thread pools must not be entered from several Python threads at once
# (in-process simulations run every party as a thread).
KERNEL_LOCK = threading.Lock()


@njit(parallel=True, nogil=True, cache=True)
def _build_hist(bins, offsets, g, h, slot_of_row, n_slots, n_bins_total, n_chunks):
    n_rows, n_feat = bins.shape
    # per-chunk private histograms: (chunk, slot, bin+1, 2); last bin slot = node totals
    parts = np.zeros((n_chunks, n_slots, n_bins_total + 1, 2), dtype=np.int64)
    chunk = (n_rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(n_rows, lo + chunk)
        hist = parts[c]
        for r in range(lo, hi):
            s = slot_of_row[r]
            if s < 0:
                continue
            gr = g[r]
            hr = h[r]
            hist[s, n_bins_total, 0] += gr
            hist[s, n_bins_total, 1] += hr
            for f in range(n_feat):
                b = bins[r, f]
                if b != MISSING:
                    k = offsets[f] + b
                    hist[s, k, 0] += gr
                    hist[s, k, 1] += hr
    out = np.zeros((n_slots, n_bins_total + 1, 2), dtype=np.int64)
    for c in range(n_chunks):
        out += parts[c]
    return out


def build_histograms(bins: np.ndarray, offsets: np.ndarray, g: np.ndarray, h: np.ndarray,
                     slot_of_row: np.ndarray, n_slots: int, n_bins_total: int) -> np.ndarray:
    """Fixed-point (g, h) histograms for the rows whose slot is >= 0.

    Returns int64 of shape (n_slots, n_bins_total + 1, 2); index n_bins_total holds the
    node totals (missing values included).
    """
    n_chunks = max(1, min(numba.get_num_threads() * 2, bins.shape[0] // 4096 or 1))
    with KERNEL_LOCK:
        return _build_hist(bins, offsets, g, h, slot_of_row, n_slots, n_bins_total, n_chunks)


@njit(parallel=True, nogil=True, cache=True)
def _apply_splits(bins, positions, feature, split_bin, default_left, left, right):
    n = positions.shape[0]
    for r in prange(n):
        node = positions[r]
        if left[node] < 0:
            continue
        b = bins[r, feature[node]]
        if b == MISSING:
            go_left = default_left[node]
        else:
            go_left = np.int64(b) <= split_bin[node]
        positions[r] = left[node] if go_left else right[node]


def apply_splits(bins: np.ndarray, positions: np.ndarray, feature: np.ndarray,
                 split_bin: np.ndarray, default_left: np.ndarray, left: np.ndarray,
                 right: np.ndarray) -> None:
    """Move each row of a split node to its child (in place). Arrays are per node id;
    `left[node] < 0` means the node is not split now."""
    with KERNEL_LOCK:
        _apply_splits(bins, positions, feature, split_bin, default_left, left, right)
