"""The oblivious permutation and selection maths (training/permute.py) against numpy."""

import numpy as np
import pytest

from ppxgb.errors import ParameterError
from ppxgb.sharing import Randomness
from ppxgb.training import permute as pm


def _hist_protocol(g, slot, bins, n_slots, n_bins, N, seed=b"k" * 32):
    """Run both gathers of the histogram protocol with pure functions, as the roles do."""
    m = len(g)
    kl, kf = seed, bytes(reversed(seed))
    a = pm.stream(kl, "a", rows=N)
    c1, a2, c2 = (pm.stream(kl, name, rows=N) for name in ("c", "a2", "c2"))
    s1, s2 = pm.permutation(kf, "s", n=N), pm.permutation(kf, "s2", n=N)
    d1, d2 = pm.correlation_delta(s1, a, c1), pm.correlation_delta(s2, a2, c2)
    x = np.zeros((N, 2), np.uint64)
    x[:m] = g
    z = x - a                                   # LH -> FH
    idx, ends = pm.segment_layout(slot, bins, n_slots, n_bins)
    k1, w = pm.gather_fh(z, idx, s1, d1)        # FH; k1 -> LH
    v = pm.gather_lh(c1, k1, len(idx))          # LH
    W, V = pm.prefix(w), pm.prefix(v)
    z2 = V - a2[:len(V)]                        # LH -> FH
    k2, sel = pm.gather_fh(z2, ends, s2, d2)    # FH
    s = W[ends] + sel                           # FH -> LH with k2
    q = s + pm.gather_lh(c2, k2, len(ends))     # LH opens prefix sums at the ends
    return pm.segment_sums(q).reshape(n_slots, n_bins + 1, 2), k1, k2


@pytest.mark.parametrize("m, n_slots, n_bins", [(1, 1, 1), (50, 1, 4), (500, 3, 17), (2000, 4, 256)])
def test_histogram_protocol_equals_bincount(m, n_slots, n_bins):
    rng = np.random.default_rng(m)
    g = rng.integers(-2**40, 2**40, size=(m, 2)).view(np.uint64)
    slot = rng.integers(0, n_slots, m)
    bins = rng.integers(0, n_bins + 1, m).astype(np.uint16)   # n_bins = missing
    bins[rng.random(m) < 0.1] = 0xFFFF                          # MISSING is also missing
    N = m + n_slots * (n_bins + 1) + 7
    hist, k1, k2 = _hist_protocol(g, slot, bins, n_slots, n_bins, N)
    b = np.minimum(bins.astype(np.int64), n_bins)
    want = np.zeros((n_slots, n_bins + 1, 2), np.uint64)
    np.add.at(want, (slot, b), g)
    np.testing.assert_array_equal(hist, want)
    assert len(np.unique(k1)) == len(k1) and len(np.unique(k2)) == len(k2)


def test_segment_layout_orders_by_slot_then_bin_with_padding():
    slot = np.array([1, 0, 1, 0, 0])
    bins = np.array([0, 1, 1, 0xFFFF, 1], np.uint16)
    idx, ends = pm.segment_layout(slot, bins, 2, 2)
    # slot 0: bin0 [], bin1 [1, 4], missing [3]; slot 1: bin0 [0], bin1 [2], missing []
    assert list(idx) == [5, 1, 4, 6, 3, 7, 0, 8, 2, 9, 10]
    assert list(ends) == [0, 3, 5, 7, 9, 10]


def test_permutation_is_uniform_and_deterministic_per_key():
    p = pm.permutation(b"x" * 32, "s", n=1000)
    assert sorted(p) == list(range(1000))
    np.testing.assert_array_equal(p, pm.permutation(b"x" * 32, "s", n=1000))
    assert not np.array_equal(p, pm.permutation(b"x" * 32, "t", n=1000))
    # every position of a 4-permutation is uniform over 4000 draws (chi-square, loose bound)
    rng = Randomness(b"u" * 32)
    counts = np.zeros((4, 4))
    for _ in range(4000):
        q = pm.random_permutation(rng, 4)
        counts[np.arange(4), q] += 1
    assert np.all(np.abs(counts - 1000) < 150)


def test_lh_view_of_gather_positions_does_not_depend_on_the_order():
    """k = sigma[idx] for a fresh sigma is uniform whatever idx is: two different private
    orders give the same distribution of the first position (chi-square-ish check)."""
    n, trials = 8, 4000
    firsts = {}
    for name, idx in (("identity", np.arange(n)), ("reversed", np.arange(n)[::-1])):
        rng = Randomness(name.ljust(32, "-").encode())
        hits = np.zeros(n)
        for _ in range(trials):
            hits[pm.random_permutation(rng, n)[idx][0]] += 1
        firsts[name] = hits
    for hits in firsts.values():
        assert np.all(np.abs(hits - trials / n) < 5 * np.sqrt(trials / n))


def test_bad_positions_are_rejected():
    c = np.zeros((10, 2), np.uint64)
    with pytest.raises(ParameterError):
        pm.gather_lh(c, np.array([1, 1]), 2)
    with pytest.raises(ParameterError):
        pm.gather_lh(c, np.array([1, 10]), 2)
    with pytest.raises(ParameterError):
        pm.gather_lh(c, np.array([1, 2, 3]), 2)
    with pytest.raises(ParameterError):
        pm.derive_key(b"short", "x")


def test_correlation_size_bounds_built_rows():
    assert pm.correlation_size(1000, 0, 255) == 1000 + 256
    assert pm.correlation_size(1000, 3, 255) == 500 + 4 * 256


def test_fused_steps_equal_the_plain_ones():
    rng = np.random.default_rng(9)
    m, n_slots, n_bins, N = 700, 3, 9, 1000
    slot = rng.integers(0, n_slots, m)
    bins = rng.integers(0, n_bins + 1, m).astype(np.uint8)
    idx, ends = pm.segment_layout(slot, bins, n_slots, n_bins)
    z, d, c1 = (rng.integers(0, 2**63, size=(N, 2)).view(np.uint64) for _ in range(3))
    sigma = pm.permutation(b"f" * 32, "s", n=N)
    k1, w = pm.gather_fh(z, idx, sigma, d)
    k1f, w_ends = pm.fh_gather_prefix(z, idx, sigma, d, ends)
    np.testing.assert_array_equal(k1, k1f)
    np.testing.assert_array_equal(pm.prefix(w)[ends], w_ends)
    a2 = rng.integers(0, 2**63, size=(len(idx), 2)).view(np.uint64)
    plain = pm.prefix(pm.gather_lh(c1, k1, len(idx))) - a2
    np.testing.assert_array_equal(plain, pm.lh_select_input(c1, k1, a2))
    with pytest.raises(ParameterError):
        pm.lh_select_input(c1, np.r_[k1[:-1], k1[0]], a2)


def test_fast_keystream_is_exactly_the_shared_randomness_stream():
    for n in (0, 1, 3, 1000, 70_001):
        np.testing.assert_array_equal(pm.keystream_words(b"q" * 32, n), Randomness(b"q" * 32).words(n))
    np.testing.assert_array_equal(pm.permutation(b"q" * 32, "x", n=500),
                                  pm.random_permutation(Randomness(pm.derive_key(b"q" * 32, "x")), 500))
    s, a, c = pm.permutation(b"q" * 32, n=50), pm.stream(b"a" * 32, rows=50), pm.stream(b"c" * 32, rows=50)
    d = pm.correlation_delta(s, a, c)
    np.testing.assert_array_equal(d, pm.correlation_delta(s, a, c.copy(), overwrite_c=True))
    np.testing.assert_array_equal(d[s], a + c[s])


def test_stream_rows_are_the_rows_of_the_stream():
    key = bytes(range(32))
    full = pm.stream(key, 3, 1, "c1", rows=5000)
    pos = np.random.default_rng(0).permutation(5000)[:777]
    np.testing.assert_array_equal(pm.stream_rows(key, 3, 1, "c1", positions=pos), full[pos])
    assert pm.stream_rows(key, 3, 1, "c1", positions=np.zeros(0, np.int64)).shape == (0, 2)
    with pytest.raises(ParameterError):
        pm.stream_rows(key, 3, 1, "c1", positions=np.array([-1]))


def test_selection_from_rows_matches_the_gathering_version():
    rng = np.random.default_rng(1)
    c1 = rng.integers(0, 2**63, size=(300, 2), dtype=np.uint64)
    a2 = rng.integers(0, 2**63, size=(120, 2), dtype=np.uint64)
    k1 = pm.checked_positions(rng.permutation(300)[:120], 120, 300)
    np.testing.assert_array_equal(pm.lh_select_from_rows(c1[k1], a2), pm.lh_select_input(c1, k1, a2))
    for bad in (np.array([1, 1]), np.array([1, 300]), np.array([1, 2, 3])):
        with pytest.raises(ParameterError):
            pm.checked_positions(bad, 2, 300)
