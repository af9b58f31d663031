"""Global bin edges agreed without revealing rows, and bin assignment.

Every float32 value has an order-preserving 32-bit key (the IEEE bits with the sign
flipped).  The parties agree on cuts by refining a shared grid over these keys, 8 bits
at a time:

    level 1: count each party's values in the 256 cells of the top 8 key bits;
    level L: only for the cells that still matter, count the 256 sub-cells of the
             next 8 bits.

Counts are secret-shared and summed by the servers; the coordinator opens only the
global counts.  A feature whose global values fall into at most max_bin cells is
refined down to single float32 values (level 4), and its cuts are then XGBoost's own
for such data: the distinct values.  Otherwise the cells holding the quantile targets
are refined to level 3 (relative precision 2^-15) and the cuts are those cells'
boundaries.  Nobody ever sees a single party's histogram or row.

Cut layout follows XGBoost's `HistogramCuts`: for feature f the bins are
`[cut[i-1], cut[i])`, the last cut lies above every value, and `min_value` lies below
every value.  A value goes to bin `upper_bound(cuts, x)`; NaN is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SIGN = np.uint32(0x80000000)


def float_keys(x: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (NaN excluded by the caller)."""
    x = np.asarray(x, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    bits = x.view(np.uint32)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN).astype(np.uint32)


def key_to_float(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, dtype=np.uint32)
    bits = np.where(key & _SIGN, key & ~_SIGN, ~key).astype(np.uint32)
    return bits.view(np.float32)


@dataclass
class FeatureGrid:
    """Coordinator-side state of one feature's refinement."""

    level: int = 0                      # bits resolved = 8 * level
    active: np.ndarray | None = None    # prefixes (at 8*level bits) to refine next
    cells: np.ndarray | None = None     # known non-empty cells (prefix at 8*level bits)
    counts: np.ndarray | None = None    # their global counts
    done: bool = False
    discrete: bool = False


def party_cell_counts(X: np.ndarray, level: int, active: list[np.ndarray],
                      threads: int | None = None) -> np.ndarray:
    """Counts of each party value in the 256 sub-cells of every active prefix.

    `active[f]` holds the sorted prefixes (8*(level-1) bits) to refine for feature f;
    the result concatenates, per feature, len(active[f]) * 256 counts.
    """
    from .kernels import cell_counts

    return cell_counts(X, level, active, threads).astype(np.float64)


def start_grids(n_features: int) -> list[FeatureGrid]:
    return [FeatureGrid(level=0, active=np.zeros(1, dtype=np.uint32)) for _ in range(n_features)]


def refine(grids: list[FeatureGrid], counts: np.ndarray, max_bin: int) -> None:
    """Coordinator: fold opened counts of the last level into the grids and pick the
    prefixes to refine next (in place)."""
    pos = 0
    for g in grids:
        if g.done:
            continue
        n_active = len(g.active)
        c = counts[pos:pos + n_active * 256].reshape(n_active, 256)
        pos += n_active * 256
        g.level += 1
        child_prefix = (g.active.astype(np.uint64)[:, None] << np.uint64(8)) + np.arange(256, dtype=np.uint64)
        child_prefix, c = child_prefix.ravel(), c.ravel()
        new_cells, new_counts = child_prefix[c > 0], c[c > 0]
        # cells not refined this level are carried down one level (as whole cells)
        if g.cells is not None and len(g.cells):
            refined = np.isin(g.cells, g.active)
            old, oldc = g.cells[~refined], g.counts[~refined]
            # a coarse cell [p, p+1) at the previous level is [p*256, p*256+256) now
            cells = np.concatenate([old.astype(np.uint64) << np.uint64(8), new_cells])
            cnts = np.concatenate([oldc, new_counts])
            order = np.argsort(cells, kind="stable")
            g.cells, g.counts = cells[order], cnts[order]
            g.coarse = np.concatenate([np.ones(len(old), bool), np.zeros(len(new_cells), bool)])[order]
        else:
            g.cells, g.counts = new_cells, new_counts
            g.coarse = np.zeros(len(new_cells), bool)
        if len(g.cells) == 0:           # all values missing
            g.done = True
            continue
        if g.level == 4:
            g.done = True
            g.discrete = not g.coarse.any() and len(g.cells) <= max_bin
            continue
        if len(g.cells) <= max_bin and not g.coarse.any():
            g.active = g.cells.astype(np.uint32)          # refine everything: may be discrete
            continue
        if g.level >= 3:
            g.done = True
            continue
        # continuous: refine only the cells that hold a quantile target
        g.active = _quantile_cells(g.cells, g.counts, max_bin).astype(np.uint32)


def _targets(total: float, max_bin: int) -> np.ndarray:
    """Quantile ranks of the cuts of a continuous feature: max_bin - 1 bins at most, so
    that with the missing code every bin index fits one byte when max_bin is 256."""
    n_bins = max(max_bin - 1, 2)
    return total * np.arange(1, n_bins) / n_bins


def _quantile_cells(cells: np.ndarray, counts: np.ndarray, max_bin: int) -> np.ndarray:
    cum = np.cumsum(counts)
    targets = _targets(cum[-1], max_bin)
    idx = np.unique(np.searchsorted(cum, targets, side="right"))
    idx = idx[idx < len(cells)]
    return cells[idx]


def cuts_from_grids(grids: list[FeatureGrid], max_bin: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-feature cut arrays (float32, XGBoost layout) and per-feature min values."""
    cuts, mins = [], []
    for g in grids:
        if g.cells is None or len(g.cells) == 0:
            cuts.append(np.array([np.float32(1e-5)], dtype=np.float32))
            mins.append(np.float32(-1e-5))
            continue
        shift = np.uint64(32 - 8 * g.level)
        lo_keys = (g.cells.astype(np.uint64) << shift).astype(np.uint64)
        if g.discrete:
            values = key_to_float(lo_keys.astype(np.uint32))
            first, last = values[0], values[-1]
            c = list(values[1:])
        else:
            # cut at the lower boundary of the cell holding each quantile target
            cum = np.cumsum(g.counts)
            targets = _targets(cum[-1], max_bin)
            idx = np.unique(np.searchsorted(cum, targets, side="right"))
            idx = idx[(idx > 0) & (idx < len(g.cells))]
            c = list(key_to_float(lo_keys[idx].astype(np.uint32)))
            first = key_to_float(lo_keys[:1].astype(np.uint32))[0]
            hi_key = ((g.cells[-1].astype(np.uint64) + np.uint64(1)) << shift) - np.uint64(1)
            last = key_to_float(np.array([min(int(hi_key), 0xFFFFFFFF)], dtype=np.uint32))[0]
        last_cut = np.float32(last + (np.abs(last) + np.float32(1e-5)))
        if not np.isfinite(last_cut) or last_cut <= last:
            last_cut = np.nextafter(np.float32(last), np.float32(np.inf))
        c.append(last_cut)
        cuts.append(np.asarray(c, dtype=np.float32))
        mins.append(np.float32(first - (np.abs(first) + np.float32(1e-5))))
    return cuts, np.asarray(mins, dtype=np.float32)


def assign_bins(X: np.ndarray, cuts: list[np.ndarray], threads: int | None = None) -> np.ndarray:
    """Bin index per (row, feature); NaN gets the dtype's maximum as the missing code.

    uint8 when every feature has at most 255 bins (half the memory traffic of the
    histogram loop), else uint16.  Pass X in Fortran order to avoid a copy.
    """
    from .kernels import assign_bins as kernel

    dtype = np.uint8 if max((len(c) for c in cuts), default=0) <= 255 else np.uint16
    return kernel(X, cuts, dtype, threads)
