"""The oblivious permutation and selection maths (training/permute.py) against numpy."""

import numpy as np
import pytest

from ppxgb.errors import ParameterError
from ppxgb.crypto.sharing import Randomness
from ppxgb.training.vertical import permute as pm
from ppxgb.crypto import prf


def _hist_protocol(g, slot, bins, n_slots, n_bins, N, beta=1, seed=b"k" * 32):
    """Run both gathers of the histogram protocol with pure functions, as the roles do."""
    m = len(g)
    kl, kf = seed, bytes(reversed(seed))
    N2 = N // beta
    a, c1 = pm.stream(kl, "a", rows=N), pm.stream(kl, "c", rows=N)
    a2, c2 = pm.stream(kl, "a2", rows=N2), pm.stream(kl, "c2", rows=N2)
    s1, s2 = pm.permutation(kf, "s", n=N), pm.permutation(kf, "s2", n=N2)
    d1, d2 = pm.correlation_delta(s1, a, c1), pm.correlation_delta(s2, a2, c2)    # D -> FH
    x = np.zeros((N, 2), np.uint64)
    x[:m] = g
    z = x - a                                   # LH -> FH
    idx, last = pm.segment_layout(slot, bins, n_slots, n_bins, beta)
    k1, w = pm.gather_fh(z, idx, s1, d1)        # FH; k1 -> LH
    v = pm.gather_lh(c1, k1, len(idx))          # LH
    W, V = pm.prefix(w), pm.prefix(v)
    z2 = V[beta - 1::beta] - a2[:len(idx) // beta]      # LH -> FH: block prefix sums, masked
    ends = (last + 1) // beta - 1
    k2, sel = pm.gather_fh(z2, ends, s2, d2)    # FH
    s = W[last] + sel                           # FH -> LH with k2
    q = s + pm.gather_lh(c2, k2, len(ends))     # LH opens prefix sums at the ends
    return pm.segment_sums(q).reshape(n_slots, n_bins + 1, 2), k1, k2


@pytest.mark.parametrize("m, n_slots, n_bins, beta", [(1, 1, 1, 1), (50, 1, 4, 1), (500, 3, 17, 1), (2000, 4, 256, 1),
                                                      (1, 1, 1, 4), (500, 3, 17, 8), (2000, 4, 256, 2), (3000, 1, 9, 64)])
def test_histogram_protocol_equals_bincount(m, n_slots, n_bins, beta):
    rng = np.random.default_rng(m + beta)
    g = rng.integers(-2**40, 2**40, size=(m, 2)).view(np.uint64)
    slot = rng.integers(0, n_slots, m)
    bins = rng.integers(0, n_bins + 1, m).astype(np.uint16)   # n_bins = missing
    bins[rng.random(m) < 0.1] = 0xFFFF                          # MISSING is also missing
    N = pm.layout_length(m, n_slots * (n_bins + 1), beta) + 7 * beta
    hist, k1, k2 = _hist_protocol(g, slot, bins, n_slots, n_bins, N, beta)
    b = np.minimum(bins.astype(np.int64), n_bins)
    want = np.zeros((n_slots, n_bins + 1, 2), np.uint64)
    np.add.at(want, (slot, b), g)
    np.testing.assert_array_equal(hist, want)
    assert len(np.unique(k1)) == len(k1) and len(np.unique(k2)) == len(k2)
    assert len(k1) == pm.layout_length(m, n_slots * (n_bins + 1), beta)   # public: m and sizes only


def test_segment_layout_orders_by_slot_then_bin_with_padding():
    slot = np.array([1, 0, 1, 0, 0])
    bins = np.array([0, 1, 1, 0xFFFF, 1], np.uint16)
    idx, last = pm.segment_layout(slot, bins, 2, 2)
    # slot 0: bin0 [], bin1 [1, 4], missing [3]; slot 1: bin0 [0], bin1 [2], missing [];
    # an empty segment gets one zero row, and the last one the rest of the public length
    assert list(idx) == [5, 1, 4, 3, 0, 2, 6, 7, 8, 9, 10]
    assert list(last) == [0, 2, 3, 4, 5, 10]


def test_segment_layout_pads_segments_to_whole_blocks():
    slot = np.array([1, 0, 1, 0, 0])
    bins = np.array([0, 1, 1, 0xFFFF, 1], np.uint16)
    idx, last = pm.segment_layout(slot, bins, 2, 2, beta=2)
    # length 2 * (6 segments + ceil(5 / 2)) = 18; every segment takes whole blocks of 2,
    # at least one; the last segment takes the rest
    assert len(idx) == 18
    assert list(last) == [1, 3, 5, 7, 9, 17]
    assert list(idx) == [5, 6, 1, 4, 3, 7, 0, 8, 2, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    assert sorted(idx) == list(range(18))
    with pytest.raises(ParameterError):
        pm.segment_layout(slot, bins, 2, 2, beta=0)


def test_block_size_follows_the_public_sizes():
    assert pm.block_size(100_000, 0, 255) == 16        # sqrt(100000 / 256) ~ 20
    assert pm.block_size(100_000, 5, 255) == 4         # sqrt(50000 / 4096) ~ 3.5
    assert pm.block_size(1_000_000, 0, 255) == 64
    assert pm.block_size(100, 3, 255) == 1
    for n in (10, 1000, 10**6):
        for level in range(8):
            beta = pm.block_size(n, level, 255)
            assert beta & (beta - 1) == 0 and pm.correlation_size(n, level, 255) % beta == 0


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
    assert pm.correlation_size(1000, 0, 255) == 2 * (256 + 500)     # beta 2
    assert pm.correlation_size(1000, 3, 255) == 500 + 4 * 256       # beta 1
    assert pm.correlation_size(100_000, 0, 255) == 16 * (256 + 6250)
    rng = np.random.default_rng(3)
    for level in range(6):      # any built rows in any bins fit
        n, max_bin = 5000, 15
        beta, N = pm.block_size(n, level, max_bin), pm.correlation_size(n, level, max_bin)
        nodes = 1 if level == 0 else 1 << (level - 1)
        m = n if level == 0 else n // 2
        slot = rng.integers(0, nodes, m)
        idx, _ = pm.segment_layout(slot, rng.integers(0, 3, m).astype(np.uint8), nodes, max_bin, beta)
        assert len(idx) <= N


def test_fused_steps_equal_the_plain_ones():
    rng = np.random.default_rng(9)
    for beta in (1, 4):
        m, n_slots, n_bins = 700, 3, 9
        N = pm.layout_length(m, n_slots * (n_bins + 1), beta) + 40
        slot = rng.integers(0, n_slots, m)
        bins = rng.integers(0, n_bins + 2, m).astype(np.uint8)
        idx, last = pm.segment_layout(slot, bins, n_slots, n_bins, beta)
        z, d = (rng.integers(0, 2**63, size=(N, 2)).view(np.uint64) for _ in range(2))
        sigma = pm.permutation(b"f" * 32, "s", n=N)
        k1, w = pm.gather_fh(z, idx, sigma, d)
        k1f, w_ends, last_f = pm.fh_gather_prefix(z, d, sigma, slot, bins, n_slots, n_bins, beta)
        assert k1f.dtype == np.uint32
        np.testing.assert_array_equal(k1, k1f)
        np.testing.assert_array_equal(last, last_f)
        np.testing.assert_array_equal(pm.prefix(w)[last], w_ends)
        # the same with sigma made inside the kernel, only as far as the layout needs
        scratch = np.full(N + 5, -7, np.int32)
        k_out = np.zeros(len(idx), np.uint32)
        for got in (pm.fh_gather_shuffled(z, d, pm.prf_key(b"f" * 32, "s"), N, slot, bins, n_slots, n_bins, beta),
                    pm.fh_gather_shuffled(z, d, pm.prf_key(b"f" * 32, "s"), N, slot, bins, n_slots, n_bins, beta,
                                          scratch, k_out)):
            for x, y in zip(got, (k1f, w_ends, last_f)):
                np.testing.assert_array_equal(x, y)
        keys = {"c_key": pm.prf_key(b"c" * 32, "c1"), "a2_key": pm.prf_key(b"c" * 32, "a2")}
        a2 = pm.stream(b"c" * 32, "a2", rows=len(idx) // beta)
        c1 = pm.stream(b"c" * 32, "c1", rows=N)
        plain = pm.prefix(pm.gather_lh(c1, k1, len(idx)))[beta - 1::beta] - a2
        np.testing.assert_array_equal(plain, pm.lh_block_shares(**keys, k=k1f, size=N, beta=beta))
        partial = [k1f[:-1]] if beta > 1 else []           # not a whole number of blocks
        for bad_k in [np.r_[k1f[:-1], k1f[0]], np.r_[k1f[:-1], N], k1f.astype(np.float64)] + partial:
            with pytest.raises(ParameterError):
                pm.lh_block_shares(**keys, k=bad_k, size=N, beta=beta)
        with pytest.raises(ParameterError):
            pm.fh_gather_prefix(z[:len(idx) - 1], d, sigma, slot, bins, n_slots, n_bins, beta)
        for bad_z, bad_d in ((z[:, :1], d), (z, d.astype(np.int64)), (z.ravel(), d)):      # rows are (g, h) words
            with pytest.raises(ParameterError):
                pm.fh_gather_prefix(bad_z, bad_d, sigma, slot, bins, n_slots, n_bins, beta)
            with pytest.raises(ParameterError):
                pm.fh_gather_shuffled(bad_z, bad_d, pm.prf_key(b"f" * 32, "s"), N, slot, bins, n_slots, n_bins, beta)
        with pytest.raises(ParameterError):
            pm.fh_gather_shuffled(z, d, pm.prf_key(b"f" * 32, "s"), len(idx) - 1, slot, bins, n_slots, n_bins, beta)
        np.testing.assert_array_equal(k_out, k1f)          # written in place
        for bad in ({"scratch": scratch[:N - 1]}, {"k_out": k_out[:-1]}, {"k_out": k_out.astype(np.int64)}):
            with pytest.raises(ParameterError):
                pm.fh_gather_shuffled(z, d, pm.prf_key(b"f" * 32, "s"), N, slot, bins, n_slots, n_bins, beta, **bad)


def test_permutation_is_fisher_yates_on_the_stream_words():
    for n in (0, 1, 2, 7, 8, 9, 500, 70_001):
        words = pm.stream(b"q" * 32, "x", rows=(n + 1) // 2).reshape(-1)[:n]
        full = pm.permutation(b"q" * 32, "x", n=n)
        np.testing.assert_array_equal(full, pm.shuffle_with_words(words))
        for first in {0, n // 3, n - 1 if n else 0, n}:     # a prefix is exact after `first` steps
            np.testing.assert_array_equal(pm.permutation(b"q" * 32, "x", n=n, first=first), full[:first])
    for bad in (-1, 11, 2.5, True):
        with pytest.raises(ParameterError):
            pm.permutation(b"q" * 32, "x", n=10, first=bad)
    s, a, c = pm.permutation(b"q" * 32, n=50), pm.stream(b"a" * 32, rows=50), pm.stream(b"c" * 32, rows=50)
    d = pm.correlation_delta(s, a, c)
    np.testing.assert_array_equal(d, a + c[s])
    np.testing.assert_array_equal(d, pm.shuffled_delta(c_key=pm.prf_key(b"c" * 32), sigma_key=pm.prf_key(b"q" * 32),
                                                       n=50, a=a))


def test_gather_positions_are_checked():
    for bad in (np.array([1, 1]), np.array([1, 300]), np.array([1, 2, 3]), np.array([-1, 2]), np.array([0.5, 1.0])):
        with pytest.raises(ParameterError):
            pm.checked_positions(bad, 2, 300)
    assert pm.checked_positions(np.array([299, 0], np.uint32), 2, 300).dtype == np.int64


def test_dealer_and_label_holder_kernels_equal_the_vector_maths():
    """The fused kernels (four AES blocks at a time, a tail of 0-3 rows) against numpy
    on whole vectors, for sizes around multiples of four and of the block length."""
    key = b"k" * 32
    for n in (1, 3, 4, 5, 63, 64, 65, 4099):
        sigma = pm.permutation(key, "s", n=n)
        assert np.array_equal(np.sort(sigma), np.arange(n))
        a, c = pm.stream(key, "a", rows=n), pm.stream(key, "c", rows=n)
        out = np.empty((n, 2), np.uint64)
        # the dealer's one-kernel delta: sigma made inside, a from an array or a stream
        a2_full = pm.stream(key, "a2", rows=n)
        keys = {"c_key": pm.prf_key(key, "c"), "sigma_key": pm.prf_key(key, "s"), "n": n}
        np.testing.assert_array_equal(pm.shuffled_delta(**keys, a=a), a + c[sigma])
        np.testing.assert_array_equal(pm.shuffled_delta(**keys, a_key=pm.prf_key(key, "a2")), a2_full + c[sigma])
        scratch = np.zeros(n + 3, np.int32)
        assert pm.shuffled_delta(**keys, a=a, out=out, scratch=scratch) is out
        np.testing.assert_array_equal(out, a + c[sigma])
        for beta in (1, 2, 8):
            m = n // beta * beta
            a2 = a2_full[:m // beta]
            want = np.cumsum(-c[sigma[:m]], axis=0, dtype=np.uint64)[beta - 1::beta] - a2
            bkeys = {"c_key": pm.prf_key(key, "c"), "a2_key": pm.prf_key(key, "a2")}
            got = pm.lh_block_shares(**bkeys, k=sigma[:m].astype(np.uint32), size=n, beta=beta)
            np.testing.assert_array_equal(got, want)
            if m > 1:
                dup = sigma[:m].copy()
                dup[-1] = dup[0]
                with pytest.raises(ParameterError):
                    pm.lh_block_shares(**bkeys, k=dup, size=n, beta=beta)
    keys = {"c_key": pm.prf_key(key, "c"), "sigma_key": pm.prf_key(key, "s"), "n": 4}
    for bad in ({"a": np.zeros((3, 2), np.uint64)}, {}, {"a": np.zeros((4, 2), np.uint64), "a_key": keys["c_key"]},
                {"a": np.zeros((4, 2), np.uint64), "scratch": np.zeros(3, np.int32)},
                {"a": np.zeros((4, 2), np.uint64), "scratch": np.zeros(4, np.int64)}):
        with pytest.raises(ParameterError):
            pm.shuffled_delta(**keys, **bad)


def test_masking_equals_subtracting_the_stream():
    key = b"m" * 32
    rng = np.random.default_rng(4)
    for m, rows in ((0, 0), (0, 5), (3, 3), (5, 9), (17, 40)):
        x = rng.integers(0, 2**63, size=(m, 2)).view(np.uint64)
        want = -pm.stream(key, "a", rows=rows)
        want[:m] += x
        np.testing.assert_array_equal(pm.masked(x, key, "a", rows=rows), want)
        out = np.full((rows, 2), 7, np.uint64)
        assert pm.masked(x, key, "a", rows=rows, out=out) is out
        np.testing.assert_array_equal(out, want)
    with pytest.raises(ParameterError):
        pm.masked(np.zeros((4, 2), np.uint64), key, "a", rows=3)
    with pytest.raises(ParameterError):
        pm.masked(np.zeros((2, 2), np.uint64), key, "a", rows=3, out=np.zeros((2, 2), np.uint64))


def test_named_streams_under_one_key_are_distinct_counter_ranges():
    """stream_key(base, name) is the CTR keystream of base's key from (nonce(name) || 0):
    different names give different words; the same name the same words."""
    base = pm.prf_key(b"m" * 32, 4, 2, 7)
    keys = {name: pm.stream_key(base, name) for name in ("s1", "c1", "s2", "c2", "a2")}
    rows = {name: prf.rows(k, 64) for name, k in keys.items()}
    assert len({r.tobytes() for r in rows.values()}) == 5
    np.testing.assert_array_equal(prf.rows(pm.stream_key(base, "c1"), 64), rows["c1"])
    np.testing.assert_array_equal(pm.permutation_of(keys["s1"], n=300), pm.shuffle_with_words(
        prf.rows(keys["s1"], 150).reshape(-1)))
    for bad in ("", 3, None):
        with pytest.raises(ParameterError):
            pm.stream_key(base, bad)


def test_stream_keys_in_one_call_equal_one_at_a_time():
    master = bytes(range(32))
    names = ("c1", "a2", "c2")
    keys = pm.stream_keys(master, 5, 3, 2, names=names)
    assert keys.shape == (3, 11, 2)
    base = pm.prf_key(master, 5, 3, 2)
    for name, k in zip(names, keys):
        np.testing.assert_array_equal(k, pm.stream_key(base, name))
    with pytest.raises(ParameterError):
        pm.stream_keys(master, 5, names=("c1", ""))
