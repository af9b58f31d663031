"""The compiled split search returns exactly the splits of the plain-numpy reference."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppxgb.training.params import TrainParams
from ppxgb.training.split import find_splits

from split_reference import find_splits as reference_splits

SCALE = 2.0 ** 32


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_nodes=st.integers(1, 6),
       sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5),
       coarse=st.booleans(), missing=st.floats(0, 0.5),
       params=st.fixed_dictionaries({"reg_lambda": st.sampled_from([0.0, 1.0, 3.5]),
                                     "alpha": st.sampled_from([0.0, 0.7]),
                                     "min_child_weight": st.sampled_from([0.0, 1.0, 4.0]),
                                     "gamma": st.sampled_from([0.0, 0.5])}))
def test_kernel_matches_numpy_reference(seed, n_nodes, sizes, coarse, missing, params):
    rng = np.random.default_rng(seed)
    cut_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n_bins = int(cut_ptr[-1])
    hist = np.zeros((n_nodes, n_bins + 1, 2), dtype=np.int64)
    for node in range(n_nodes):                 # histograms of actual rows
        rows = int(rng.integers(2, 60))
        # coarse values make many exact ties, which exercise the tie-breaking order
        g = rng.integers(-3, 4, rows) if coarse else rng.normal(size=rows) * 5
        h = rng.integers(0, 3, rows) if coarse else rng.exponential(size=rows)
        gh = np.rint(np.stack([g, h], axis=1) * SCALE).astype(np.int64)
        hist[node, n_bins] = gh.sum(axis=0)
        for f, size in enumerate(sizes):
            b = rng.integers(0, size, rows)
            keep = rng.random(rows) >= missing
            np.add.at(hist[node], cut_ptr[f] + b[keep], gh[keep])
    cuts = np.sort(rng.normal(size=n_bins)).astype(np.float32)
    mins = np.full(len(sizes), -10.0, dtype=np.float32)
    p = TrainParams.from_dict({"objective": "reg:squarederror", **params})
    got = find_splits(hist, SCALE, cut_ptr, cuts, mins, p)
    want = reference_splits(hist, SCALE, cut_ptr, cuts, mins, p)
    assert got == want
