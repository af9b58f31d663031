"""Fixed point in Z_2^64 and additive sharing: exactness, range and precision at scale."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from ppxgb.errors import ParameterError
from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.crypto.sharing import Randomness, reconstruct, share
from ppxgb.training.params import TrainParams
from ppxgb.training.split import find_split

from helpers import bits_of

ENC = FixedPointEncoder(32)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
       st.integers(2, 4))
def test_share_reconstruct_round_trip(values, k):
    x = np.array(values)
    shares = share(ENC.encode(x), k)
    assert len(shares) == k
    np.testing.assert_allclose(ENC.decode(reconstruct(shares)), x, atol=2 ** -32)


def test_each_share_alone_is_uniform_whatever_the_input():
    # the same constant input 10,000 times: the first share's bits are fair coins
    shares = share(ENC.encode(np.full(10_000, 3.25)), 2)
    assert abs(bits_of(shares[0]).mean() - 0.5) < 0.005
    assert len(np.unique(shares[0])) == 10_000
    # and the second share is the input minus the first
    assert np.all(shares[1] == ENC.encode(np.full(10_000, 3.25)) - shares[0])


def test_known_answer_with_pinned_randomness():
    rng = Randomness(bytes(range(32)))
    a = share(ENC.encode(np.array([1.0, -2.0])), 3, rng)
    rng2 = Randomness(bytes(range(32)))
    b = share(ENC.encode(np.array([1.0, -2.0])), 3, rng2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    np.testing.assert_array_equal(ENC.decode(reconstruct(a)), [1.0, -2.0])


def test_stream_is_the_same_whatever_the_draws():
    """Draws of any sizes (odd word counts split AES blocks; 2^21 + 5 words span the 8 MB
    zero source), fresh or into a reused array, continue one AES-256-CTR key stream."""
    key = bytes(range(32))
    n = 3 + (1 << 21) + 5 + 7
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    expected = np.frombuffer(enc.update(bytes(8 * n)), np.uint64)
    rng, buf = Randomness(key), np.empty(9, np.uint64)
    got = [rng.words(3, buf).copy(), rng.words((1 << 21) + 5), rng.words(7, buf).copy()]
    np.testing.assert_array_equal(np.concatenate(got), expected)
    with pytest.raises(ParameterError, match="out"):
        rng.words(8, buf)                    # 8 words need 10: CTR writes up to 15 bytes beyond


def test_encoder_rejects_out_of_range_and_non_finite():
    with pytest.raises(ParameterError, match="frac_bits"):
        FixedPointEncoder(60)
    with pytest.raises(ParameterError, match="NaN or inf"):
        ENC.encode(np.array([np.nan]))
    with pytest.raises(ParameterError, match=r"\|x\|"):
        ENC.encode(np.array([2.0 ** 31]))


def test_negative_values_wrap_and_decode():
    x = np.array([-1e-9, -0.5, -12345.678])
    np.testing.assert_allclose(ENC.decode(ENC.encode(x)), x, atol=2 ** -32)


N_ROWS = 1_200_000


def _gradients(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(N_ROWS).astype(np.float32)
    y = (rng.random(N_ROWS) < p).astype(np.float32)
    return (p - y).astype(np.float32), (p * (1 - p)).astype(np.float32)


def test_million_row_sums_neither_overflow_nor_drift():
    g, h = _gradients()
    g_int = np.rint(g.astype(np.float64) * ENC.scale).astype(np.int64)
    h_int = np.rint(h.astype(np.float64) * ENC.scale).astype(np.int64)
    # the sum of every |g| (the worst case of any histogram cell) fits in the ring
    assert np.abs(g).sum(dtype=np.float64) < ENC.max_magnitude
    total_g = ENC.decode(np.array([g_int.sum()]).view(np.uint64))[0]
    total_h = ENC.decode(np.array([h_int.sum()]).view(np.uint64))[0]
    assert abs(total_g - g.sum(dtype=np.float64)) < 1e-5
    assert abs(total_h - h.sum(dtype=np.float64)) < 1e-5
    # shares of the sum, summed by two servers, reconstruct to the same integer
    parts = share(np.array([g_int.sum()]).view(np.uint64), 2)
    assert reconstruct(parts).view(np.int64)[0] == g_int.sum()


def _reference_best_split(bins, g, h, n_bins, lam=1.0):
    """Float64 split search without fixed point (forward scan, no missing values)."""
    best = (-np.inf, None, None)
    G, H = g.sum(dtype=np.float64), h.sum(dtype=np.float64)
    parent = G * G / (H + lam)
    for f in range(bins.shape[1]):
        hg = np.bincount(bins[:, f], weights=g.astype(np.float64), minlength=n_bins)
        hh = np.bincount(bins[:, f], weights=h.astype(np.float64), minlength=n_bins)
        lg, lh = np.cumsum(hg), np.cumsum(hh)
        gain = lg ** 2 / (lh + lam) + (G - lg) ** 2 / (H - lh + lam) - parent
        gain[lh < 1] = -np.inf
        gain[H - lh < 1] = -np.inf
        b = int(np.argmax(gain))
        if gain[b] > best[0]:
            best = (gain[b], f, b)
    return best


def test_million_row_fixed_point_does_not_change_the_split():
    g, h = _gradients(1)
    rng = np.random.default_rng(2)
    n_feat, n_bins = 3, 64
    bins = rng.integers(0, n_bins, size=(N_ROWS, n_feat))
    # make feature 1 informative so there is a clear but not trivial best split
    g = (g + 0.02 * (bins[:, 1] > 40)).astype(np.float32)
    g_int = np.rint(g.astype(np.float64) * ENC.scale).astype(np.int64)
    h_int = np.rint(h.astype(np.float64) * ENC.scale).astype(np.int64)
    hist = np.zeros((n_feat * n_bins + 1, 2), dtype=np.int64)
    for f in range(n_feat):
        np.add.at(hist[:, 0], f * n_bins + bins[:, f], g_int)
        np.add.at(hist[:, 1], f * n_bins + bins[:, f], h_int)
    hist[-1] = [g_int.sum(), h_int.sum()]
    cut_ptr = np.arange(n_feat + 1) * n_bins
    cuts = np.tile(np.arange(1, n_bins + 1, dtype=np.float32), n_feat)
    p = TrainParams.from_dict({"objective": "binary:logistic"})
    split = find_split(hist, ENC.scale, cut_ptr, cuts, np.zeros(n_feat, np.float32), p)
    ref_gain, ref_f, ref_b = _reference_best_split(bins, g, h, n_bins)
    assert (split.feature, split.bin) == (ref_f, ref_b)
    assert abs(split.gain - ref_gain) <= 1e-6 * abs(ref_gain) + 1e-3
