"""What crosses the transport in vertical training (recorded messages).

Allowed, by docs/vertical.md: a feature holder (FH) receives parameters, its dealer key,
uniformly random ring words (z, z2, d1, d2), the nodes to build, the partitions of
split nodes (left bits) and split requests for its own features; the dealer receives
only the public schedule; the label holder (LH) receives from FHs uniformly random
positions (k1, k2), masked sums and the per-(node, bin) aggregates they open to.
"""

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.objectives import get_objective
from ppxgb.training.vertical import permute as pm
from ppxgb.training.vertical import run_vertical_federation

from helpers import assert_uniform_words, recorded_federation

FH_FIELDS = {
    "vconfig": {"params", "n_rows"},
    "dkey": {"key"},
    "vtree": {"tree", "group"},
    "corr": {"tree", "level", "f", "d1", "d2"},
    "vlevel": {"tree", "level", "splits", "goleft", "build", "z"},
    "vsel": {"tree", "level", "z2"},
    "vsplit": {"node", "feature", "bin", "default_left", "categories"},    # categories: sets of its own splits
    "stop": set(),
}
DEALER_FIELDS = {"dconfig": {"n_rows", "max_bin", "max_depth", "grow_policy", "steps", "n_trees", "fhs",
                             "n_features"}, "dlevel": {"tree", "level"},
                 "stop": set()}
UNIFORM = {("vlevel", "z"), ("vsel", "z2"), ("corr", "d1"), ("corr", "d2")}


def _data(seed, n=400):
    rng = np.random.default_rng(0)                       # features fixed across runs
    X = rng.integers(0, 8, size=(n, 5)).astype(float)
    X[rng.random(X.shape) < 0.1] = np.nan
    noise = np.random.default_rng(seed).random(n) < 0.1  # labels differ between runs
    y = ((np.nan_to_num(X[:, 0], nan=0) > 3) ^ noise).astype(float)
    return X, y


def _run(X, y, max_depth=1, rounds=1):
    params = {"objective": "binary:logistic", "max_depth": max_depth}
    seen, _ = recorded_federation(run_vertical_federation, params, [X[:, :2], X[:, 2:]], y, label_party=0,
                                  num_boost_round=rounds)
    return seen


def _words(v):
    if isinstance(v, np.ndarray):
        return v.ravel().view(np.uint64) if v.dtype.itemsize == 8 else v.ravel().astype(np.uint64)
    if isinstance(v, list):
        return np.concatenate([_words(x) for x in v]) if v else np.zeros(0, np.uint64)
    if isinstance(v, dict):
        return np.concatenate([_words(x) for x in v.values()]) if v else np.zeros(0, np.uint64)
    return np.zeros(0, np.uint64)


def _first_round_gradients(y):
    logistic = get_objective("binary:logistic")
    base = logistic.intercept_from_stats(logistic.intercept_stats(y, 0))
    margin = np.full(len(y), np.log(base[0] / (1 - base[0])), dtype=np.float32)
    g, h = logistic.gradients(margin, y)
    enc = FixedPointEncoder(32)
    return np.concatenate([enc.encode(g), enc.encode(h), enc.encode(-g)])


def test_fields_received_are_exactly_the_allowed_ones():
    X, y = _data(1)
    for msg in _run(X, y, max_depth=3, rounds=2):
        if msg.dst == "party-1":
            assert msg.stage in FH_FIELDS, msg.stage
            assert set(msg.payload) == FH_FIELDS[msg.stage], (msg.stage, set(msg.payload))
        if msg.dst == "server-0":
            assert msg.stage in DEALER_FIELDS, msg.stage
            assert set(msg.payload) == DEALER_FIELDS[msg.stage], (msg.stage, set(msg.payload))
            assert msg.src == "party-0"


def test_no_gradient_or_label_in_clear_reaches_a_feature_holder_or_the_dealer():
    X, y = _data(2)
    forbidden = set(_first_round_gradients(y).tolist())
    seen = _run(X, y, max_depth=2)
    for msg in seen:
        if msg.dst in ("party-1", "server-0"):
            for key, v in msg.payload.items():
                if (msg.stage, key) in UNIFORM:
                    hits = forbidden & set(_words(v).tolist())
                    assert not hits, (msg.stage, key)
                assert not (isinstance(v, np.ndarray) and v.dtype.kind == "f"), (msg.stage, key)


def test_feature_holder_view_does_not_depend_on_the_labels():
    """Two runs, same features, different labels (both split first on LH's own column):
    FH receives the same fields with the same shapes and public values, and every
    ring vector it receives is uniformly random in both runs."""
    X = _data(0)[0]
    views = []
    for seed in (3, 4):
        _, y = _data(seed)
        seen = _run(X, y, max_depth=1)
        view, words = [], []
        for msg in seen:
            if msg.dst != "party-1":
                continue
            shape = {}
            for key, v in msg.payload.items():
                if (msg.stage, key) in UNIFORM:
                    shape[key] = [a.shape for a in v] if isinstance(v, list) else v.shape
                    words.append(_words(v))
                elif key != "key":
                    shape[key] = v if not isinstance(v, np.ndarray) else v.tolist()
            view.append((msg.stage, msg.src, shape))
        assert_uniform_words(np.concatenate(words))
        views.append(view)

    def by_source(view):  # the label holder's and the dealer's messages may interleave
        out = {}
        for stage, src, shape in view:
            out.setdefault(src, []).append((stage, shape))
        return out

    assert by_source(views[0]) == by_source(views[1])


def test_label_holder_positions_do_not_depend_on_feature_values():
    """k1 (where FH's private order sends each gradient) is a fresh uniform injection:
    with the same labels and different FH features, its values are uniform in [0, N)."""
    ks = []
    for shift in (0, 7):
        X, y = _data(5)
        X = X.copy()
        X[:, 2:] = np.roll(X[:, 2:], shift, axis=0)
        seen = _run(X, y, max_depth=1)
        perm = [m for m in seen if m.stage == "vperm"]
        assert [m.payload["f"] for m in perm] == [0, 1, 2]        # one message per FH feature
        ks.append(np.concatenate([m.payload["k"] for m in perm]).astype(np.int64))
    for k in ks:
        n_pos = pm.correlation_size(400, 0, 256)        # the default max_bin
        counts = np.bincount(k * 8 // n_pos, minlength=8)
        expected = len(k) / 8
        assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected)), counts


def test_dealer_view_is_the_public_schedule_only():
    X = _data(0)[0]
    views = []
    for seed in (6, 7):
        _, y = _data(seed)
        seen = _run(X, y, max_depth=1, rounds=2)
        views.append([(m.stage, m.src, m.payload) for m in seen if m.dst == "server-0"])
    assert views[0] == views[1]
    assert views[0][0][2] == {"n_rows": 400, "max_bin": 256, "max_depth": 1, "n_trees": 2,
                               "grow_policy": "depthwise", "steps": 1, "fhs": ["party-1"], "n_features": [3]}
