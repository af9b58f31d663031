"""Fresh keys, masks and permutations: privacy checks that fail when one is reused.

A vector that looks uniform on its own says nothing about reuse: a share key fixed per
(party, server), a mask reused across trees and levels, or one permutation for every
feature, level and tree all give uniform-looking messages, and the other privacy tests
pass on them.  The checks here look across messages of a recorded transport:

* no two messages to any role carry the same share key;
* no two ring vectors a role receives are equal, and the difference of any two (on
  their common length) is not structured: a difference of two vectors masked by the
  same stream is a difference of fixed-point data, whose words are small;
* the positions a feature holder sends (k1, k2 of the two gathers) for different
  (tree, feature) at one level overlap no more than independent uniform subsets do,
  while one permutation for all would map the same rows to the same positions.

Each reuse is kept as a mutant patched into the real modules (the sharing randomness
of ppxgb.training.horizontal.party, the streams of ppxgb.training.vertical.permute),
and each check must catch its mutant and pass on the real code.  Randomness is pinned
(a seeded stream per party thread, a seeded dealer), so every run is the same.
"""

import hashlib
import itertools
import threading
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

import ppxgb.training.horizontal.party as party
from ppxgb.crypto.sharing import Randomness
from ppxgb.training.horizontal import run_federation
from ppxgb.training.vertical import dealer, permute, run_vertical_federation

from helpers import recorded_federation

MIN_WORDS = 64          # pairs with a shorter common length are not compared
MAX_WORDS = 4096        # words compared per pair
SMALL = 0.25            # a fraction of small words no masked difference reaches (uniform: 2/256)


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"test_reuse_attacks|" + label.encode()).digest()


def record(run, *args, **kwargs):
    log, _ = recorded_federation(run, *args, **kwargs)
    return log


# ------------------------------------------------------------------ checks


def assert_fresh_keys(keys):
    """keys: (label, key bytes) of every message; no key may appear twice."""
    seen = Counter(k for _, k in keys)
    reused = [(label, seen[k]) for label, k in keys if seen[k] > 1]
    assert not reused, f"share keys reused: {reused[:4]} (of {len(keys)} keys)"


def small_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the words of a - b (mod 2^64) within 2^56 of zero, over the common length."""
    n = min(len(a), len(b), MAX_WORDS)
    top = ((a[:n] - b[:n]) >> np.uint64(56)).astype(np.int64)
    return float(np.mean((top == 0) | (top == 255)))


def assert_independent_vectors(vectors):
    """vectors: (label, uint64 words) that one role received; no two are equal or differ
    by fixed-point data (the same mask under both)."""
    assert len(vectors) > 1
    for (la, a), (lb, b) in itertools.combinations(vectors, 2):
        n = min(len(a), len(b), MAX_WORDS)
        if n < MIN_WORDS:
            continue
        assert not np.array_equal(a[:n], b[:n]), f"{la} and {lb} are equal"
        frac = small_fraction(a, b)
        assert frac < SMALL, f"{la} - {lb}: {frac:.0%} of the words are small (one mask under both)"


def overlap_bound(l1: int, l2: int, n: int) -> float:
    """Mean + 10 sd (+ 10) of |A & B| for independent uniform subsets of [n] of sizes l1, l2."""
    mean = l1 * l2 / n
    var = l1 * (l2 / n) * (1 - l2 / n) * (n - l1) / max(n - 1, 1)
    return mean + 10 * np.sqrt(var) + 10


def assert_fresh_permutations(positions):
    """positions: ((fh, level, gather), (tree, feature), k, N) of every gather answer the
    label holder got; within one (fh, level, gather), answers for different (tree,
    feature) must share no more positions than independent permutations give."""
    groups = {}
    for key, tag, k, n in positions:
        groups.setdefault(key, []).append((tag, k, n))
    compared = 0
    for key, items in groups.items():
        for (ta, a, n), (tb, b, _) in itertools.combinations(items, 2):
            common = len(np.intersect1d(a, b))
            compared += 1
            assert not np.array_equal(a, b), f"{key}: positions of {ta} and {tb} are equal (one permutation)"
            assert common <= overlap_bound(len(a), len(b), n), \
                f"{key}: {ta} and {tb} share {common} of {len(a)}, {len(b)} positions in [{n}] (one permutation)"
    assert compared > 0


# ------------------------------------------------------------------ horizontal: share keys


def _pinned_stream():
    """The real behaviour, pinned: one CSPRNG stream per party thread."""
    streams = {}

    def randomness():
        name = threading.current_thread().name
        return streams.setdefault(name, Randomness(_seed(name)))
    return randomness


def _fixed_keys():
    """Mutant (a): a fresh generator under a fixed key per party at every call, so every
    message of a party gives each server the same key."""
    return lambda: Randomness(_seed(threading.current_thread().name))


def horizontal_log(randomness):
    rng = np.random.default_rng(0)
    n = 900
    X = np.column_stack([rng.integers(0, 6, n), rng.normal(size=n), rng.integers(0, 20, n)]).astype(float)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=n) > 2.5).astype(float)
    parties = [(X[:400], y[:400]), (X[400:], y[400:])]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(party, "default_randomness", randomness)
        return record(run_federation, {"objective": "binary:logistic", "max_depth": 3}, parties, 2, 3)


def share_keys(log):
    return [((m.src, m.dst, m.payload["step"]), m.payload["seed"]) for m in log
            if m.stage == "share" and "seed" in m.payload]


def last_server_vectors(log):
    last = max(m.dst for m in log if m.dst.startswith("server-"))
    return [((m.src, m.payload["step"]), m.payload["data"]) for m in log
            if m.dst == last and m.stage == "share"]


@pytest.fixture(scope="module")
def horizontal():
    return horizontal_log(_pinned_stream())


@pytest.fixture(scope="module")
def horizontal_fixed_keys():
    return horizontal_log(_fixed_keys())


def test_share_keys_are_fresh_per_message(horizontal):
    keys = share_keys(horizontal)
    assert {dst for (_, dst, _), _ in keys} == {"server-0", "server-1"}
    assert_fresh_keys(keys)


def test_last_server_vectors_are_independent(horizontal):
    assert_independent_vectors(last_server_vectors(horizontal))


def test_fixed_share_keys_are_caught(horizontal_fixed_keys):
    with pytest.raises(AssertionError, match="share keys reused"):
        assert_fresh_keys(share_keys(horizontal_fixed_keys))
    # and the last server, holding v - PRG(key) for each message, sees differences of
    # histograms: with the key of any other server it opens every histogram
    with pytest.raises(AssertionError, match="one mask under both"):
        assert_independent_vectors(last_server_vectors(horizontal_fixed_keys))


# ------------------------------------------------------------------ vertical: masks, permutations


def _no_tree_level(labels):
    return (0, 0, *labels[2:]) if labels and labels[-1] == "a" else labels


def mask_reused(mp):
    """Mutant (b): LH's mask a (and the dealer's copy of it) is the same stream in every
    tree and level."""
    masked, stream = permute.masked, permute.stream
    mp.setattr(permute, "masked", lambda x, master, *labels, rows, out=None:
               masked(x, master, *_no_tree_level(labels), rows=rows, out=out))
    mp.setattr(permute, "stream", lambda master, *labels, rows: stream(master, *_no_tree_level(labels), rows=rows))


def one_permutation(mp):
    """Mutant (c): the dealer's permutations (streams s1, s2) are the same for every
    feature, level and tree; FH and the dealer both derive them so."""
    stream_keys = permute.stream_keys
    mp.setattr(permute, "stream_keys", lambda master, *labels, names:
               stream_keys(master, *((0, 0, 0) if set(names) == {"s1", "s2"} else labels), names=names))


def vertical_log(mutant=None):
    rng = np.random.default_rng(1)
    n = 1200
    X = np.column_stack([rng.integers(0, 5, n), rng.normal(size=n), rng.integers(0, 12, n),
                         rng.uniform(0, 10, n).round(1)]).astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.nan_to_num(X[:, 1]) + 0.3 * np.nan_to_num(X[:, 2]) + rng.normal(size=n) > 1.5).astype(float)
    counter = itertools.count()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dealer, "os", SimpleNamespace(urandom=lambda k: _seed(f"dealer-{next(counter)}")[:k]))
        if mutant is not None:
            mutant(mp)
        return record(run_vertical_federation, {"objective": "binary:logistic", "max_depth": 3, "max_bin": 32},
                      [X[:, :1], X[:, 1:]], y, label_party=0, num_boost_round=3)


def fh_ring_vectors(log, fh="party-1"):
    """Every ring vector the feature holder received: z, z2 from LH, d1, d2 from the dealer."""
    out = []
    for m in log:
        if m.dst != fh:
            continue
        tag = (m.payload.get("tree"), m.payload.get("level"))
        if m.stage == "vlevel":
            out.append((("z", *tag), m.payload["z"].ravel()))
        elif m.stage == "vsel":
            out += [(("z2", *tag, f), z2.ravel()) for f, z2 in enumerate(m.payload["z2"])]
        elif m.stage == "corr":
            for name in ("d1", "d2"):
                out += [((name, *tag, m.payload["f"] + i), d.ravel()) for i, d in enumerate(m.payload[name])]
    return out


def lh_positions(log, fh="party-1", max_bin=32):
    """(fh, level, gather), (tree, feature), positions, N for each gather answer LH got."""
    n = next(m.payload["n_rows"] for m in log if m.dst == fh and m.stage == "vconfig")
    out = []
    for m in log:
        if m.dst != "party-0" or m.src != fh or m.stage not in ("vperm", "vsum"):
            continue
        tree, level = m.payload["tree"], m.payload["level"]
        size = permute.correlation_size(n, level, max_bin)
        if m.stage == "vperm":
            out.append(((fh, level, 1), (tree, m.payload["f"]), m.payload["k"].astype(np.int64), size))
        else:
            beta = permute.block_size(n, level, max_bin)
            out += [((fh, level, 2), (tree, f), k2.astype(np.int64), size // beta)
                    for f, k2 in enumerate(m.payload["k2"])]
    return out


@pytest.fixture(scope="module")
def vertical():
    return vertical_log()


def test_feature_holder_vectors_are_independent(vertical):
    vectors = fh_ring_vectors(vertical)
    assert {v[0][0] for v in vectors} == {"z", "z2", "d1", "d2"}
    assert len({label[1:3] for label, _ in vectors if label[0] == "z"}) >= 6     # several trees and levels
    assert_independent_vectors(vectors)


def test_mask_reused_across_trees_and_levels_is_caught():
    with pytest.raises(AssertionError, match="one mask under both"):
        assert_independent_vectors(fh_ring_vectors(vertical_log(mask_reused)))


def test_permutations_are_fresh_per_tree_level_and_feature(vertical):
    positions = lh_positions(vertical)
    assert {key[2] for key, *_ in positions} == {1, 2}
    assert_fresh_permutations(positions)


def test_one_permutation_for_all_is_caught():
    with pytest.raises(AssertionError, match="one permutation"):
        assert_fresh_permutations(lh_positions(vertical_log(one_permutation)))
