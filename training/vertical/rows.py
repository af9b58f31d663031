"""Where each row is, for the vertical roles: positions (row -> node) and left bits.

The permutation protocol works on rows in their aligned order, so the label holder and
each feature holder keep `positions[row]` = the node holding the row.  A split is
shared as left bits (np.packbits order, one bit per aligned row): the owner of the
split feature computes them with the one split rule (ppxgb/splitrule.py), the others
move their rows by them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

from ppxgb.errors import ProtocolError
from ppxgb.splitrule import bin_goes_left

from .. import binning
from ..kernels import left_bit as _left_bit, left_table, missing_code, table_goes_left


def local_cuts(X: np.ndarray, max_bin: int, threads: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """XGBoost-compatible cuts of columns held in full by one party (no secure step):
    the same grid refinement horizontal training runs on opened sums, so the same cuts.
    The requests stay inside the party, so they name every cell (hide=False)."""
    X = np.asfortranarray(X)      # the counting kernel streams columns
    return binning.agree_cuts(X.shape[1], max_bin,
                              lambda level, requests: binning.party_cell_counts(X, level, requests, threads),
                              hide=False)


def slots_of(positions: np.ndarray, build: Sequence[int]) -> np.ndarray:
    slot = np.full(int(max(max(build), int(positions.max()))) + 1, -1, dtype=np.int64)
    slot[np.asarray(build, dtype=np.int64)] = np.arange(len(build))
    return slot[positions]


def apply_partition(positions: np.ndarray, nodes, left, right, bits: np.ndarray) -> None:
    """Move the rows of split nodes to their children (in place); bits are the rows'
    left bits, packed as sent (np.packbits)."""
    if len(nodes) == 0:
        return
    size = int(max(nodes)) + 1
    to_left = np.full(size, -1, np.int64)
    to_right = np.full(size, -1, np.int64)
    to_left[np.asarray(nodes)] = left
    to_right[np.asarray(nodes)] = right
    _move_rows(positions, to_left, to_right, packed_bits(bits, positions.shape[0]))


@njit(cache=True, nogil=True)
def _move_rows(positions, to_left, to_right, bits):
    for r in range(positions.shape[0]):
        node = positions[r]
        if node < to_left.shape[0] and to_left[node] >= 0:
            positions[r] = to_left[node] if _left_bit(bits, r) else to_right[node]


@njit(cache=True, nogil=True)
def _goleft_rows(positions, node_feature, node_bin, node_default_left, bins, missing, goleft, node_cat, table):
    """goleft[r] for the rows of nodes split on a local feature: node_feature[node] is
    the column of bins (>= 0) or -1 for nodes left alone; bins is (row, feature);
    node_cat[node] >= 0 names the row of `table` of a categorical split."""
    for r in range(positions.shape[0]):
        node = positions[r]
        if node < node_feature.shape[0]:
            f = node_feature[node]
            if f >= 0:
                b = bins[r, f]
                if node_cat[node] >= 0:
                    goleft[r] = table_goes_left(b, missing, table, node_cat[node], node_default_left[node])
                else:
                    goleft[r] = bin_goes_left(b, missing, node_bin[node], node_default_left[node])
    return goleft


def split_rows(positions: np.ndarray, bins: np.ndarray, splits, goleft: np.ndarray) -> np.ndarray:
    """Set goleft for the rows of each (node, feature, bin, default_left[, categories])
    in splits, in one pass over the rows; bins is (row, feature) (a transposed view is
    fine); categories, for a categorical split, the codes that go right."""
    size = max((sp[0] for sp in splits), default=-1) + 1
    feature = np.full(size, -1, np.int64)
    split_bin = np.zeros(size, np.int64)
    default_left = np.zeros(size, np.bool_)
    node_cat = np.full(size, -1, np.int64)
    sets = [tuple(sp[4]) if len(sp) > 4 and sp[4] else () for sp in splits]
    for i, (sp, cats) in enumerate(zip(splits, sets)):
        node, f, b, dl = sp[:4]
        feature[node], split_bin[node], default_left[node] = f, b, dl
        node_cat[node] = i if cats else -1
    missing = missing_code(bins.dtype)
    return _goleft_rows(positions, feature, split_bin, default_left, bins, missing, goleft, node_cat,
                        left_table(sets, missing + 1))


@njit(cache=True, nogil=True)
def take_bits(positions, owned, bits, goleft):
    """goleft[r] = bit r of the packed (np.packbits order) bits, for rows of owned nodes."""
    for r in range(positions.shape[0]):
        node = positions[r]
        if node < owned.shape[0] and owned[node]:
            goleft[r] = _left_bit(bits, r)


def packed_bits(bits: np.ndarray, n: int) -> np.ndarray:
    """Left bits of n rows as sent (np.packbits), after checking their size and type."""
    if bits.dtype != np.uint8 or bits.shape != ((n + 7) // 8,):
        raise ProtocolError(f"left bits: expected {(n + 7) // 8} bytes, got {bits.size} of {bits.dtype}")
    return bits

