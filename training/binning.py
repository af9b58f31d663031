"""Global bin edges agreed without revealing rows, and bin assignment.

Every float32 value has an order-preserving 32-bit key (the IEEE bits with the sign
flipped).  The parties agree on cuts by refining a shared grid over these keys, 8 bits
at a time (a level-L cell is a key prefix of 8L bits):

    level 1: count each party's values in the 256 cells of the top 8 key bits;
    level L: only for the cells that still matter, count the 256 sub-cells of the
             next 8 bits.

Counts are secret-shared and summed by the servers; the coordinator opens only the
global counts.  A feature whose global values fall into at most max_bin cells is
refined down to single float32 values (level 4), and its cuts are then XGBoost's own
for such data: the distinct values.  Otherwise the cells holding the quantile targets
are refined to level 3 (relative precision 2^-15) and the cuts are those cells'
boundaries.  Nobody ever sees a single party's histogram or row.

**What the requests show.**  Every party receives every request, so a request names
only cells the cuts imply: the cells holding a quantile target (each contains a cut,
except a lowest cell that holds a target, i.e. at least 1/(max_bin - 1) of the values,
and no cut).  A feature that may still be discrete (at most max_bin occupied cells and
none left coarse) needs the sub-cells of *every* occupied cell; naming those cells
would show where pooled values lie, so they are asked for without names:

    SKETCH  an invertible hashed sketch of the level's cells: 3 tables of B buckets,
            each bucket adding count, count * key and count * check(key) (16-bit
            limbs) of the cells a public hash puts there; the coordinator peels it
            when few enough cells are occupied (about max_bin);
    TABLE   if the sketch does not decode: the 256 sub-cell counts of every occupied
            cell, added into 3 tables of B buckets by a public hash of the cell (one
            plain table when the level has at most B cells); the coordinator knows the
            occupied cells and their counts, so it separates them by peeling, with a
            fresh salt if two cells collide everywhere.

Each decoded answer is checked against the known cell counts, so the coordinator ends
with exactly the counts that naming every cell gives, and the cuts are unchanged.  A
party sees, per feature and level, only the kind of request, a public salt and B.  The
coordinator learns what it learned before: per level, the counts of the sub-cells of
every cell it refines (all occupied cells of a feature that may still be discrete,
the quantile-target cells otherwise).

Cut layout follows XGBoost's `HistogramCuts`: for feature f the bins are
`[cut[i-1], cut[i])`, the last cut lies above every value, and `min_value` lies below
every value.  A value goes to bin `upper_bound(cuts, x)`; NaN is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ppxgb.errors import ProtocolError

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
    coarse: np.ndarray | None = None    # cells carried down unrefined
    done: bool = False
    discrete: bool = False
    hide: bool = False                  # active is every occupied cell: ask without names
    attempt: int = 0                    # failed decodes of the current hidden request


#: (level, one request per feature) -> the opened sum over parties of their answers
Count = Callable[[int, list[np.ndarray]], np.ndarray]

_MARK = 0xFFFFFF00          # a request starting at or above this is a kind, not a prefix (< 2^24)
SKETCH, TABLE = _MARK | 1, _MARK | 2
_TABLES = 3                 # hash tables of a sketch or table
_FIELDS = 5                 # sketch bucket: count, count * key (2 limbs), count * check (2 limbs)
_LIMB = 16
_MAX_ATTEMPTS = 6


def party_cell_counts(X: np.ndarray, level: int, active: list[np.ndarray],
                      threads: int | None = None) -> np.ndarray:
    """A party's answer to a request: per feature, its counts in the requested layout.

    `active[f]` either lists the sorted prefixes (8*(level-1) bits) to refine, giving
    len(active[f]) * 256 sub-cell counts, or is a SKETCH or TABLE request (see the
    module docstring); the answers of all features are concatenated.
    """
    from .kernels import cell_counts

    if not 1 <= level <= 4:
        raise ProtocolError(f"bins: level {level!r}, expected 1 to 4")
    kinds = [_parse(a, level) for a in active]
    named = [a if k is None else np.zeros(0, np.uint32) for a, k in zip(active, kinds)]
    counts = cell_counts(X, level, named, threads).astype(np.float64)
    out, pos = [], 0
    for f, (a, k) in enumerate(zip(active, kinds)):
        if k is None:
            out.append(counts[pos:pos + len(a) * 256])
            pos += len(a) * 256
            continue
        kind, salt, buckets = k
        keys, n = _cells_of(X[:, f], level)
        if kind == SKETCH:
            out.append(_sketch(keys, n, level, salt, buckets))
        else:
            out.append(_table(keys, n, level, salt, buckets))
    return np.concatenate(out) if out else np.zeros(0)


def start_grids(n_features: int) -> list[FeatureGrid]:
    return [FeatureGrid(level=0, active=np.zeros(1, dtype=np.uint32)) for _ in range(n_features)]


def agree_cuts(n_features: int, max_bin: int, count: Count,
               hide: bool = True, max_level: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    """Run the refinement to the end: cuts and min values per feature.

    `count(level, requests)` returns the sum over all parties of `party_cell_counts`
    (opened by the coordinator, or one party's own counts).  With hide=False the
    cells of a possibly discrete feature are named (only for a party's own columns,
    where nobody else sees the requests); the cuts are the same either way.  max_level
    below 4 stops every feature there (differentially private training refines to
    level 2, relative precision 2^-7, with noisy counts: training/dp.py).
    """
    grids = start_grids(n_features)
    buckets = sketch_buckets(max_bin)
    while not all(g.done for g in grids):
        level = min(g.level for g in grids if not g.done) + 1
        asked = [not g.done and g.level + 1 == level for g in grids]    # a retried grid holds the others back
        requests = [(hidden_request(g, level, buckets) if hide and g.hide else g.active) if a
                    else np.zeros(0, np.uint32) for g, a in zip(grids, asked)]
        sizes = [answer_size(r, level) for r in requests]
        opened = np.asarray(count(level, requests), dtype=np.float64)
        if opened.shape != (sum(sizes),):
            raise ProtocolError(f"bins: {opened.shape} counts opened, expected {sum(sizes)}")
        pos = 0
        for f, (g, a, r, size) in enumerate(zip(grids, asked, requests, sizes)):
            answer, pos = opened[pos:pos + size], pos + size
            if not a:
                continue
            cells = _decode(g, r, level, answer)
            if cells is None:
                g.attempt += 1
                if g.attempt >= _MAX_ATTEMPTS:
                    raise ProtocolError(f"bins: feature {f} at level {level} did not decode in {g.attempt} attempts")
                continue
            g.attempt = 0
            refine_grid(g, cells, max_bin, max_level)
    return cuts_from_grids(grids, max_bin)


def hidden_request(g: FeatureGrid, level: int, buckets: int) -> np.ndarray:
    """The request for the sub-cells of every occupied cell of g, naming none of them:
    a sketch first, then tables under fresh public salts."""
    return np.array([SKETCH if g.attempt == 0 else TABLE, g.attempt, buckets], dtype=np.uint32)


def sketch_buckets(max_bin: int) -> int:
    """B, the buckets of each hash table: a power of two >= max_bin, at least 64, so a
    possibly discrete feature's occupied cells (at most max_bin) fill at most a third."""
    return 1 << max(6, int(max_bin - 1).bit_length())


def answer_size(request: np.ndarray, level: int) -> int:
    """Length of the answer to one feature's request."""
    k = _parse(request, level)
    if k is None:
        return len(request) * 256
    kind, _, buckets = k
    return _TABLES * buckets * _FIELDS if kind == SKETCH else _n_tables(level, buckets) * buckets * 256


def refine(grids: list[FeatureGrid], counts: np.ndarray, max_bin: int) -> None:
    """Coordinator: fold opened counts of the last level (the sub-cells of every active
    prefix, concatenated) into the grids and pick the prefixes to refine next (in place)."""
    pos = 0
    for g in grids:
        if g.done:
            continue
        n_active = len(g.active)
        refine_grid(g, counts[pos:pos + n_active * 256].reshape(n_active, 256), max_bin)
        pos += n_active * 256


def refine_grid(g: FeatureGrid, c: np.ndarray, max_bin: int, max_level: int = 4) -> None:
    """Fold one feature's counts (one row of 256 sub-cells per active prefix) into g."""
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
    g.hide = False
    if len(g.cells) == 0:                                # all values missing
        g.done = True
        return
    if g.level == 4:                                     # single float32 values
        g.done = True
        g.discrete = not g.coarse.any() and len(g.cells) <= max_bin
        return
    if g.level >= max_level:                             # deep enough (max_level < 4)
        g.done = True
        return
    if len(g.cells) <= max_bin and not g.coarse.any():
        g.active = g.cells.astype(np.uint32)          # refine everything: may be discrete
        g.hide = True
        return
    if g.level >= 3:
        g.done = True
        return
    # continuous: refine only the cells that hold a quantile target
    g.active = _quantile_cells(g.cells, g.counts, max_bin).astype(np.uint32)


# ---- hidden requests: the parties' side and the coordinator's decoding


def _parse(request: np.ndarray, level: int) -> tuple[int, int, int] | None:
    """(kind, salt, buckets) of a SKETCH or TABLE request; None for a list of prefixes."""
    if len(request) == 0 or int(request[0]) < _MARK:
        return None
    kind = int(request[0])
    if kind not in (SKETCH, TABLE) or len(request) != 3 or level < 2:
        raise ProtocolError(f"bins: malformed request {request.tolist()!r} at level {level}")
    buckets = int(request[2])
    if not 64 <= buckets <= 1 << 16 or buckets & (buckets - 1):
        raise ProtocolError(f"bins: {buckets} buckets, expected a power of two in [64, 65536]")
    return kind, int(request[1]), buckets


def _n_tables(level: int, buckets: int) -> int:
    """One plain table (bucket = cell) when the parent cells of the level fit, else 3."""
    return 1 if 1 << 8 * (level - 1) <= buckets else _TABLES


def _mix(x: np.ndarray, seed: int) -> np.ndarray:
    """A public 64-bit hash: splitmix64's finaliser of x + seed * golden (wrapping)."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % 2 ** 64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _buckets(x: np.ndarray, kind: int, level: int, salt: int, buckets: int) -> np.ndarray:
    """(tables, len(x)) bucket of each cell in each table."""
    if kind == TABLE and _n_tables(level, buckets) == 1:
        return np.asarray(x, dtype=np.int64)[None]
    return np.stack([(_mix(x, (kind & 0xFF) << 56 | level << 48 | salt << 8 | t) >> np.uint64(40))
                     & np.uint64(buckets - 1) for t in range(_TABLES)]).astype(np.int64)


def _check(x: np.ndarray, level: int, salt: int) -> np.ndarray:
    """A 32-bit check word of each cell (another public hash), for the sketch."""
    return (_mix(x, 0xC0 << 56 | level << 48 | salt << 8) >> np.uint64(32)).astype(np.int64)


def _cells_of(column: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """A party's occupied level-`level` cells of one column (uint64) and its count in each."""
    col = np.asarray(column, dtype=np.float32)
    keys = float_keys(col[~np.isnan(col)]) >> np.uint32(32 - 8 * level)
    if level <= 2:                       # at most 65,536 cells: count them directly
        n = np.bincount(keys, minlength=1 << 8 * level)
        cells = np.flatnonzero(n)
        return cells.astype(np.uint64), n[cells].astype(np.int64)
    cells, n = np.unique(keys, return_counts=True)
    return cells.astype(np.uint64), n.astype(np.int64)


def _sketch_fields(cells: np.ndarray, n: np.ndarray, level: int, salt: int) -> np.ndarray:
    """(cells, 5) int64: count, count * key limbs, count * check limbs (each below 2^16 * count)."""
    k = cells.astype(np.int64)
    chk = _check(cells, level, salt)
    mask = (1 << _LIMB) - 1
    return n[:, None] * np.stack([np.ones_like(k), k & mask, k >> _LIMB, chk & mask, chk >> _LIMB], axis=1)


def _sketch(cells, n, level: int, salt: int, buckets: int) -> np.ndarray:
    fields = _sketch_fields(cells, n, level, salt).astype(np.float64)
    where = _buckets(cells, SKETCH, level, salt, buckets)
    out = np.zeros((_TABLES, buckets, _FIELDS))
    for t in range(_TABLES):
        for j in range(_FIELDS):
            out[t, :, j] = np.bincount(where[t], weights=fields[:, j], minlength=buckets)
    return out.ravel()


def _table(cells, n, level: int, salt: int, buckets: int) -> np.ndarray:
    where = _buckets(cells >> np.uint64(8), TABLE, level, salt, buckets)
    n_tables = where.shape[0]
    index = (np.arange(n_tables)[:, None] * buckets + where) * 256 + (cells & np.uint64(0xFF)).astype(np.int64)
    return np.bincount(index.ravel(), weights=np.tile(n, n_tables).astype(np.float64),
                       minlength=n_tables * buckets * 256).astype(np.float64)


def _decode(g: FeatureGrid, request: np.ndarray, level: int, answer: np.ndarray) -> np.ndarray | None:
    """The sub-cell counts of g.active, (len(active), 256), from the opened answer; None
    when a hidden request did not decode."""
    counts = np.rint(answer).astype(np.int64)
    k = _parse(request, level)
    if k is None:                                   # named prefixes (a superset of g.active)
        rows = counts.reshape(len(request), 256)
        return rows[np.searchsorted(request, g.active)].astype(np.float64)
    kind, salt, buckets = k
    if kind == SKETCH:
        found = _peel_sketch(counts.reshape(_TABLES, buckets, _FIELDS), level, salt, buckets)
        if found is None:
            return None
        cells, n = found
        parent = cells >> np.uint64(8)
        at = np.searchsorted(g.active, parent)
        if np.any(at >= len(g.active)) or np.any(g.active[np.minimum(at, len(g.active) - 1)] != parent):
            return None
        out = np.zeros((len(g.active), 256), np.int64)
        out[at, (cells & np.uint64(0xFF)).astype(np.int64)] = n
    else:
        out = _peel_table(counts.reshape(-1, buckets, 256), g.active, level, salt, buckets)
    if out is None or not np.array_equal(out.sum(axis=1), np.rint(g.counts).astype(np.int64)):
        return None
    return out.astype(np.float64)


def _peel_sketch(s: np.ndarray, level: int, salt: int, buckets: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The occupied cells and their counts, if the sketch peels to zero; else None.

    A bucket holding one cell has every field a multiple of its count, and the
    quotients name a cell that hashes to that bucket with that check word."""
    s = s.copy()
    found_cells, found_n = [], []
    while s[..., 0].any():
        n = s[..., 0]
        div = np.where(n > 0, n, 1)[..., None]
        q = s[..., 1:] // div
        pure = (n > 0) & np.all(q * div == s[..., 1:], axis=-1) & np.all((q >= 0) & (q < 1 << _LIMB), axis=-1)
        t, b = np.nonzero(pure)
        cells = q[t, b, 1] << _LIMB | q[t, b, 0]
        ok = cells < 1 << 8 * level
        t, b, cells = t[ok], b[ok], cells[ok].astype(np.uint64)
        ok = (_buckets(cells, SKETCH, level, salt, buckets)[t, np.arange(len(t))] == b) \
            & (_check(cells, level, salt) == (q[t, b, 3] << _LIMB | q[t, b, 2]))
        if not ok.any():
            return None
        cells, first = np.unique(cells[ok], return_index=True)
        n_cell = n[t[ok], b[ok]][first]
        fields = _sketch_fields(cells, n_cell, level, salt)
        for table, where in enumerate(_buckets(cells, SKETCH, level, salt, buckets)):
            np.subtract.at(s[table], where, fields)
        found_cells.append(cells)
        found_n.append(n_cell)
    if s.any() or not found_cells:
        return None
    cells, n = np.concatenate(found_cells), np.concatenate(found_n)
    return (cells, n) if len(np.unique(cells)) == len(cells) else None


def _peel_table(t: np.ndarray, active: np.ndarray, level: int, salt: int, buckets: int) -> np.ndarray | None:
    """Sub-cell counts of the known occupied cells `active` from the hashed tables: a
    cell alone in its bucket of some table is read there and taken out of the others."""
    t = t.copy()
    where = _buckets(active.astype(np.uint64), TABLE, level, salt, buckets)
    occupied = np.zeros(t.shape[:2], np.int64)
    for table, w in enumerate(where):
        np.add.at(occupied[table], w, 1)
    out = np.zeros((len(active), 256), np.int64)
    left = np.ones(len(active), bool)
    while left.any():
        alone = [(i, table) for table, w in enumerate(where) for i in np.flatnonzero(left & (occupied[table, w] == 1))]
        if not alone:
            return None
        for i, table in alone:
            if not left[i] or occupied[table, where[table, i]] != 1:
                continue
            out[i] = t[table, where[table, i]]
            for tb, w in enumerate(where):
                t[tb, w[i]] -= out[i]
                occupied[tb, w[i]] -= 1
            left[i] = False
    return None if t.any() or np.any(out < 0) else out


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
