"""The party's row kernels against plain numpy: histograms of nodes after splits."""

import numpy as np
import pytest

from ppxgb.training.kernels import NodeRows, missing_code


def reference(bins, gh, rows, sizes):
    """Histogram (n_bins_total + 1, 2) of the given original rows."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = np.zeros((offsets[-1] + 1, 2), dtype=np.int64)
    miss = missing_code(bins.dtype)
    for f, n in enumerate(sizes):
        col = bins[rows, f].astype(np.int64)
        keep = col != miss
        np.add.at(out, offsets[f] + col[keep], gh[rows][keep])
    out[-1] = gh[rows].sum(axis=0)
    return out


@pytest.mark.parametrize("dtype, sizes", [(np.uint8, [255, 3, 40, 1]), (np.uint8, [5, 7]),
                                          (np.uint16, [300, 2, 1000])])
@pytest.mark.parametrize("n_rows", [0, 1, 17, 5000, 30000])
def test_histograms_after_splits_match_numpy(dtype, sizes, n_rows):
    rng = np.random.default_rng(n_rows + len(sizes))
    sizes = np.array(sizes)
    bins = np.stack([rng.integers(0, n, n_rows) for n in sizes], axis=1).astype(dtype)
    bins[rng.random(bins.shape) < 0.15] = missing_code(dtype)
    original = bins.copy()
    gh = rng.integers(-2**40, 2**40, size=(n_rows, 2))
    nodes = NodeRows(bins.copy(), sizes, 2 ** 5)
    nodes.start_tree(gh)
    members = {0: np.arange(n_rows)}          # node -> original rows, kept by plain numpy
    frontier, next_id = [0], 1
    for depth in range(4):
        hist = nodes.histograms(frontier)
        for k, node in enumerate(frontier):
            np.testing.assert_array_equal(hist[k], reference(original, gh, members[node], sizes))
        feature = rng.integers(0, len(sizes), len(frontier))
        split_bin = np.array([rng.integers(0, sizes[f]) for f in feature])
        default_left = rng.random(len(frontier)) < 0.5
        left = np.arange(next_id, next_id + 2 * len(frontier), 2)
        nodes.split(frontier, feature, split_bin, default_left, left, left + 1)
        for node, f, sb, dl, l in zip(frontier, feature, split_bin, default_left, left):
            col = original[members[node], f]
            go_left = np.where(col == missing_code(dtype), dl, col.astype(np.int64) <= sb)
            members[l], members[l + 1] = members[node][go_left], members[node][~go_left]
        frontier, next_id = list(left) + list(left + 1), next_id + 2 * len(frontier)
    column = np.zeros(n_rows, dtype=np.float32)
    values = rng.normal(size=len(frontier)).astype(np.float32)
    nodes.add_leaves(column, frontier, values)
    want = np.zeros(n_rows, dtype=np.float32)
    for node, v in zip(frontier, values):
        want[members[node]] += v
    np.testing.assert_array_equal(column, want)


def test_nthread_sets_the_kernel_threads_and_does_not_change_the_model(monkeypatch):
    import numba

    from ppxgb.training import kernels, train_horizontal

    rng = np.random.default_rng(3)
    parties = []
    for n in (700, 500):
        X = rng.normal(size=(n, 4))
        parties.append((X, (X[:, 0] + rng.normal(size=n) > 0).astype(float)))
    params = {"objective": "binary:logistic", "max_depth": 4}
    seen = []
    real = numba.set_num_threads
    monkeypatch.setattr(kernels.numba, "set_num_threads", lambda n: (seen.append(n), real(n)))
    one = train_horizontal({**params, "nthread": 1}, parties, num_boost_round=3)
    assert seen and set(seen) == {1}
    seen.clear()
    default = train_horizontal(params, parties, num_boost_round=3)
    assert set(seen) == {numba.config.NUMBA_NUM_THREADS}
    assert one.save_raw("json") == default.save_raw("json")    # exact integer sums: same model


def test_split_by_left_bits_moves_rows_as_the_bits_say_and_refuses_missing_bits():
    rng = np.random.default_rng(3)
    n = 1000
    bins = rng.integers(0, 4, size=(n, 2)).astype(np.uint8)
    rows = NodeRows(bins.copy(), np.array([4, 4]), 8, threads=2)
    gh = np.stack([np.arange(n), np.ones(n)], axis=1).astype(np.int64)
    rows.start_tree(gh)
    goleft = rng.random(n) < 0.3
    rows.split([0], [-1], [0], [False], [1], [2], bits=np.packbits(goleft))
    hist = rows.histograms([1, 2])
    # node totals: g is the row index, so the left total is the sum of the left rows' indices
    assert hist[0, -1, 0] == np.flatnonzero(goleft).sum() and hist[0, -1, 1] == goleft.sum()
    assert hist[1, -1, 0] == np.flatnonzero(~goleft).sum()
    with pytest.raises(ValueError, match="bits"):
        rows.split([1], [-1], [0], [False], [3], [4])
