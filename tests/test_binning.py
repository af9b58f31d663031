"""Bin agreement pieces: the order-preserving float32 keys and the cell-count kernel."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppxgb.training import binning
from ppxgb.training.kernels import cell_counts

floats32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(floats32, floats32)
def test_keys_preserve_float32_order(a, b):
    ka, kb = binning.float_keys(np.array([a, b], dtype=np.float32))
    assert (a < b) == (ka < kb)
    assert (a == b) == (ka == kb)          # -0.0 and +0.0 share a key


@settings(max_examples=100, deadline=None)
@given(st.lists(floats32, min_size=1, max_size=30))
def test_key_to_float_inverts_keys(values):
    x = np.array(values, dtype=np.float32) + np.float32(0.0)
    np.testing.assert_array_equal(binning.key_to_float(binning.float_keys(x)), x)


def _reference_counts(X, level, active):
    out = []
    for f, prefixes in enumerate(active):
        if len(prefixes) == 0:
            continue
        col = X[:, f]
        keys = binning.float_keys(col[~np.isnan(col)])
        child = keys >> np.uint32(32 - 8 * level)
        parent = (child >> np.uint32(8)) if level > 1 else np.zeros_like(child)
        idx = np.minimum(np.searchsorted(prefixes, parent), len(prefixes) - 1)
        hit = prefixes[idx] == parent
        out.append(np.bincount(idx[hit].astype(np.int64) * 256 + (child[hit] & 0xFF),
                               minlength=len(prefixes) * 256))
    return np.concatenate(out)


def test_cell_count_kernel_matches_numpy_through_every_level():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=4000), rng.integers(0, 7, 4000), rng.exponential(size=4000) * 1e4,
                         np.r_[np.full(2000, -0.0), np.zeros(2000)]]).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    grids = binning.start_grids(X.shape[1])
    levels = 0
    while not all(g.done for g in grids):
        level = min(g.level for g in grids if not g.done) + 1
        active = [g.active if not g.done else np.zeros(0, np.uint32) for g in grids]
        counts = cell_counts(X, level, active)
        np.testing.assert_array_equal(counts, _reference_counts(X, level, active))
        binning.refine(grids, counts.astype(float), 256)
        levels += 1
    assert levels == 4
    cuts, mins = binning.cuts_from_grids(grids, 256)
    # discrete column: the distinct values 1..6 and a last cut above 6, as XGBoost's hist
    np.testing.assert_array_equal(cuts[1][:-1], np.arange(1, 7, dtype=np.float32))
    assert cuts[1][-1] > 6 and mins[1] < 0
    assert len(cuts[3]) == 1                      # a single value (zero, either sign)
    assert 2 < len(cuts[0]) <= 255                # continuous: quantile cuts, at most 255 bins
    bins = binning.assign_bins(X, cuts)
    assert bins.dtype == np.uint8 and np.all((bins == 255) == np.isnan(X))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 7, 255, 300]), st.booleans())
def test_bin_assignment_kernel_matches_searchsorted(seed, n_cuts, fortran):
    rng = np.random.default_rng(seed)
    cuts = [np.sort(rng.normal(size=n_cuts)).astype(np.float32) for _ in range(3)]
    X = rng.normal(size=(500, 3)).astype(np.float32) * 1.5
    X[:50] = np.stack([c[rng.integers(0, n_cuts, 50)] for c in cuts], axis=1)   # values on the cuts
    X[rng.random(X.shape) < 0.1] = np.nan
    X[0, 0], X[1, 1] = np.float32(-0.0), np.float32(1e30)
    bins = binning.assign_bins(np.asfortranarray(X) if fortran else X, cuts)
    dtype = np.uint8 if n_cuts <= 255 else np.uint16
    assert bins.dtype == dtype
    for f, c in enumerate(cuts):
        want = np.minimum(np.searchsorted(c, X[:, f], side="right"), n_cuts - 1)
        want[np.isnan(X[:, f])] = np.iinfo(dtype).max
        np.testing.assert_array_equal(bins[:, f], want)


def test_bin_assignment_with_many_cuts_inside_one_key_cell():
    # 300 cuts between 1000 and 1001: they share the top 16 bits of their order keys
    cuts = [np.unique(np.linspace(1000, 1001, 300, dtype=np.float32))]
    X = np.random.default_rng(5).uniform(999.5, 1001.5, size=(4000, 1)).astype(np.float32)
    X[:300, 0] = cuts[0]
    want = np.minimum(np.searchsorted(cuts[0], X[:, 0], side="right"), len(cuts[0]) - 1)
    np.testing.assert_array_equal(binning.assign_bins(X, cuts)[:, 0], want)



def _thin_tailed(max_bin: int) -> np.ndarray:
    """A discrete column whose extreme values are held by one row each."""
    rng = np.random.default_rng(0)
    if max_bin == 8:
        X = rng.integers(-1, 2, size=(5000, 1)).astype(np.float32)
        X[:2, 0] = [-7.0, 9.5]
    else:
        X = np.round(rng.normal(size=(5000, 1)), 1).astype(np.float32)
        X[0, 0] = -4.4
    return X


@pytest.mark.parametrize("max_bin", [8, 256])
def test_discrete_feature_with_thin_tails_gets_every_value_as_a_cut(max_bin):
    # a value held by one row of 5,000 lies below every quantile target: only the
    # discrete path (each distinct value a cut, as XGBoost does) keeps it
    X = _thin_tailed(max_bin)
    values = np.unique(X[:, 0])
    assert len(values) <= max_bin
    cuts, mins = binning.agree_cuts(1, max_bin, lambda level, active: binning.party_cell_counts(X, level, active))
    np.testing.assert_array_equal(cuts[0][:-1], values[1:])
    assert cuts[0][-1] > values[-1] and mins[0] < values[0]
