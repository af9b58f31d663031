"""Partitioners: turn one table into simulated data parties.

Horizontal (by rows): every party has the same columns and its own patients.
``split_by_group`` keeps a natural split (a hospital column); ``split_horizontal``
makes one, IID by default or non-IID with chosen party sizes and case mixes
(share of positive labels per party). ``pool`` joins parties back into one table
for the centralized baseline.

Vertical (by columns): every party has the same patients and its own columns, keyed
by a shared patient ID. ``split_vertical`` hands each party its block plus the ID
column; with ``overlap < 1`` the parties' patient sets only partly agree, and with
``shuffle`` each party's row order is its own, so that records must be aligned (by a
private set intersection in ppxgb.training, or ``align_on_id`` as a plaintext oracle).

Sampling uses numpy's seeded generator: this is simulation, not cryptography.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ppxgb.errors import ParameterError

from .synthetic_ms import MS_BLOCKS, MS_ID

Table = pd.DataFrame | np.ndarray


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParameterError.bad("seed", "a non-negative int", seed)
    return int(seed)


def _check_xy(X: object, y: object) -> tuple[Table, np.ndarray]:
    if not isinstance(X, (pd.DataFrame, np.ndarray)) or (isinstance(X, np.ndarray) and X.ndim != 2):
        raise ParameterError.bad("X", "a pandas DataFrame or a 2-D numpy array", type(X).__name__)
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or len(y_arr) != len(X):
        raise ParameterError.bad("y", f"a 1-D array of length {len(X)}", f"shape {y_arr.shape}")
    return X, y_arr


def _take(X: Table, rows: np.ndarray) -> Table:
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows].reset_index(drop=True)
    return X[rows]


def _sizes_to_counts(sizes: Sequence[float] | None, n_parties: int, n: int) -> np.ndarray:
    """Party sizes as row counts: None = as equal as possible; ints = counts
    (sum <= n); floats = fractions of n summing to 1 (largest-remainder rounding)."""
    if sizes is None:
        counts = np.full(n_parties, n // n_parties)
        counts[: n % n_parties] += 1
        return counts
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) != n_parties:
        raise ParameterError.bad("sizes", f"a sequence of {n_parties} counts or fractions", sizes)
    if any(isinstance(s, bool) or not isinstance(s, numbers.Real) or not s > 0 for s in sizes):
        raise ParameterError.bad("sizes", "positive numbers", sizes)
    if all(isinstance(s, numbers.Integral) for s in sizes):
        counts = np.array(sizes, dtype=np.int64)
        if counts.sum() > n:
            raise ParameterError.bad("sizes", f"counts summing to at most {n} rows", sizes)
        return counts
    frac = np.array(sizes, dtype=float)
    if abs(frac.sum() - 1.0) > 1e-6:
        raise ParameterError.bad("sizes", "fractions summing to 1 (or int row counts)", sizes)
    raw = frac * n
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    if (counts == 0).any():
        raise ParameterError.bad("sizes", f"fractions that leave every party at least one of {n} rows", sizes)
    return counts


def split_horizontal(
    X: Table,
    y: Sequence[float] | np.ndarray,
    n_parties: int,
    sizes: Sequence[float] | None = None,
    case_mix: Sequence[float] | None = None,
    seed: int = 0,
) -> list[tuple[Table, np.ndarray]]:
    """Split rows into ``n_parties`` disjoint ``(X_i, y_i)`` parties.

    ``sizes``: None (equal), int row counts (may leave rows unused), or fractions
    summing to 1. ``case_mix``: None (rows drawn at random, IID in expectation) or,
    for a binary ``y``, the share of positives wanted in each party, e.g.
    ``[0.1, 0.5, 0.9]``; each party then gets ``round(rate * size)`` positives, drawn
    without replacement. A DataFrame ``X`` keeps its columns (index reset to 0..n-1).
    """
    X, y_arr = _check_xy(X, y)
    sizes = sizes.tolist() if isinstance(sizes, np.ndarray) else sizes
    case_mix = case_mix.tolist() if isinstance(case_mix, np.ndarray) else case_mix
    if isinstance(n_parties, bool) or not isinstance(n_parties, numbers.Integral) or not 1 <= n_parties <= len(y_arr):
        raise ParameterError.bad("n_parties", f"an int between 1 and {len(y_arr)}", n_parties)
    rng = np.random.default_rng(_check_seed(seed))
    counts = _sizes_to_counts(sizes, int(n_parties), len(y_arr))

    if case_mix is None:
        order = rng.permutation(len(y_arr))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        picks = [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(n_parties)]
        return [(_take(X, rows), y_arr[rows]) for rows in picks]

    if isinstance(case_mix, (str, bytes)) or not isinstance(case_mix, Sequence) or len(case_mix) != n_parties:
        raise ParameterError.bad("case_mix", f"a sequence of {n_parties} positive rates in [0, 1]", case_mix)
    if any(isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0.0 <= r <= 1.0 for r in case_mix):
        raise ParameterError.bad("case_mix", "rates in [0, 1]", case_mix)
    labels = set(np.unique(y_arr).tolist())
    if not labels <= {0, 1}:
        raise ParameterError.bad("y", "binary labels 0/1 when case_mix is given", sorted(labels)[:5])
    n_pos = np.array([int(round(r * c)) for r, c in zip(case_mix, counts)])
    n_neg = counts - n_pos
    pos = rng.permutation(np.flatnonzero(y_arr == 1))
    neg = rng.permutation(np.flatnonzero(y_arr == 0))
    if n_pos.sum() > len(pos) or n_neg.sum() > len(neg):
        raise ParameterError.bad(
            "case_mix",
            f"at most {len(pos)} positives and {len(neg)} negatives in total for sizes {counts.tolist()}",
            list(case_mix),
        )
    pb = np.concatenate([[0], np.cumsum(n_pos)])
    nb = np.concatenate([[0], np.cumsum(n_neg)])
    parties = []
    for i in range(n_parties):
        rows = np.sort(np.concatenate([pos[pb[i] : pb[i + 1]], neg[nb[i] : nb[i + 1]]]))
        parties.append((_take(X, rows), y_arr[rows]))
    return parties


def split_by_group(
    X: pd.DataFrame, y: Sequence[float] | np.ndarray, groups: Sequence[object] | np.ndarray | str,
    order: Sequence[object] | None = None,
) -> dict[object, tuple[pd.DataFrame, np.ndarray]]:
    """Natural horizontal split: one party per distinct value of ``groups`` (a column
    name of ``X``, which is then dropped, or an array aligned with the rows), in
    ``order`` if given, else in order of first appearance."""
    X, y_arr = _check_xy(X, y)
    if isinstance(groups, str):
        if not isinstance(X, pd.DataFrame) or groups not in X.columns:
            raise ParameterError.bad("groups", "a column of X or an array of row labels", groups)
        g = X[groups].to_numpy()
        X = X.drop(columns=[groups])
    else:
        g = np.asarray(groups, dtype=object)
        if g.shape != (len(y_arr),):
            raise ParameterError.bad("groups", f"an array of length {len(y_arr)}", f"shape {g.shape}")
    present = list(dict.fromkeys(g.tolist()))
    keys = present if order is None else list(order)
    if set(keys) != set(present):
        raise ParameterError.bad("order", f"exactly the groups {present}", order)
    return {k: (_take(X, np.flatnonzero(g == k)), y_arr[g == k]) for k in keys}


def pool(
    parties: Mapping[object, tuple[Table, np.ndarray]] | Sequence[tuple[Table, np.ndarray]],
) -> tuple[Table, np.ndarray, np.ndarray]:
    """Join horizontal parties into one table for the centralized baseline.

    Returns ``(X, y, group)`` where ``group`` names each row's party (the dict key,
    or the list position).
    """
    items = list(parties.items()) if isinstance(parties, Mapping) else list(enumerate(parties))
    if not items:
        raise ParameterError.bad("parties", "at least one (X, y) party", parties)
    Xs, ys, gs = [], [], []
    for key, part in items:
        if not isinstance(part, tuple) or len(part) != 2:
            raise ParameterError.bad(f"parties[{key!r}]", "an (X, y) tuple", type(part).__name__)
        X, y_arr = _check_xy(*part)
        Xs.append(X)
        ys.append(y_arr)
        gs.append(np.full(len(y_arr), key, dtype=object))
    if all(isinstance(X, pd.DataFrame) for X in Xs):
        X_all: Table = pd.concat(Xs, ignore_index=True)
    elif all(isinstance(X, np.ndarray) for X in Xs):
        X_all = np.concatenate(Xs, axis=0)
    else:
        raise ParameterError.bad("parties", "all X DataFrames or all numpy arrays", [type(X).__name__ for X in Xs])
    return X_all, np.concatenate(ys), np.concatenate(gs)


def split_vertical(
    df: pd.DataFrame,
    blocks: Mapping[str, Sequence[str]] | None = None,
    id_column: str = MS_ID,
    shuffle: bool = True,
    overlap: float = 1.0,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Split columns into parties that share ``id_column``.

    ``blocks`` maps party name -> its columns (default: ``MS_BLOCKS``, clinic / lab /
    insurer, with the ``ms`` label at the clinic). Every column of ``df`` other than
    the ID must be in exactly one block. Each party gets a frame of ``[id_column] +
    its columns``. With ``overlap`` < 1, only ``round(overlap * n)`` patients are held
    by every party; each other patient is held by one party alone (chosen at random),
    so the private set intersection is exactly the common patients. With ``shuffle``
    each party's rows are in its own random order; without it they keep ``df``'s order.
    """
    if not isinstance(df, pd.DataFrame):
        raise ParameterError.bad("df", "a pandas DataFrame", type(df).__name__)
    if not isinstance(id_column, str) or id_column not in df.columns:
        raise ParameterError.bad("id_column", f"a column of df {list(df.columns)[:8]}", id_column)
    if df[id_column].isna().any() or df[id_column].duplicated().any():
        raise ParameterError.bad("id_column", "unique, non-missing patient IDs", f"{id_column} with duplicates or NaN")
    blocks = MS_BLOCKS if blocks is None else blocks
    if not isinstance(blocks, Mapping) or not blocks:
        raise ParameterError.bad("blocks", "a non-empty dict of party name -> list of columns", blocks)
    seen: dict[str, str] = {}
    for party, cols in blocks.items():
        if isinstance(cols, (str, bytes)) or not isinstance(cols, Sequence) or not cols:
            raise ParameterError.bad(f"blocks[{party!r}]", "a non-empty list of column names", cols)
        for col in cols:
            if col == id_column:
                raise ParameterError.bad(f"blocks[{party!r}]", f"columns other than the ID {id_column!r}", col)
            if col not in df.columns:
                raise ParameterError.bad(f"blocks[{party!r}]", "columns of df", col)
            if col in seen:
                raise ParameterError.bad("blocks", f"each column in one block ({col!r} is in {seen[col]!r} and {party!r})", col)
            seen[col] = party
    left_out = [c for c in df.columns if c != id_column and c not in seen]
    if left_out:
        raise ParameterError.bad("blocks", "every column of df in one block", f"missing {left_out}")
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real) or not 0.0 < overlap <= 1.0:
        raise ParameterError.bad("overlap", "a fraction in (0, 1]", overlap)
    if not isinstance(shuffle, bool):
        raise ParameterError.bad("shuffle", "a bool", shuffle)
    rng = np.random.default_rng(_check_seed(seed))

    n, names = len(df), list(blocks)
    n_common = int(round(float(overlap) * n))
    order = rng.permutation(n)
    owner = np.full(n, -1)  # -1: held by every party
    owner[order[n_common:]] = rng.integers(0, len(names), n - n_common)
    parts: dict[str, pd.DataFrame] = {}
    for i, party in enumerate(names):
        rows = np.flatnonzero((owner == -1) | (owner == i))
        if shuffle:
            rows = rng.permutation(rows)
        parts[party] = df.iloc[rows][[id_column, *blocks[party]]].reset_index(drop=True)
    return parts


def align_on_id(parts: Mapping[str, pd.DataFrame], id_column: str = MS_ID) -> dict[str, pd.DataFrame]:
    """Plaintext oracle for PSI: keep the patients every party holds, in one sorted
    ID order, so row i is the same patient in every returned frame."""
    if not isinstance(parts, Mapping) or not parts:
        raise ParameterError.bad("parts", "a non-empty dict of party name -> DataFrame", parts)
    common: set | None = None
    for party, frame in parts.items():
        if not isinstance(frame, pd.DataFrame) or id_column not in frame.columns:
            raise ParameterError.bad(f"parts[{party!r}]", f"a DataFrame with column {id_column!r}", type(frame).__name__)
        ids = set(frame[id_column].tolist())
        common = ids if common is None else common & ids
    keep = sorted(common or ())
    return {
        party: frame.set_index(id_column).loc[keep].reset_index()
        for party, frame in parts.items()
    }
