"""Row and column sampling (subsample, colsample_bytree/bylevel/bynode), horizontal and
vertical: deterministic per seed, a no-op at fraction 1, never splitting on an unsampled
feature, unsampled rows contributing nothing, and AUC close to xgboost's with the same
fractions (averaged over seeds; ppxgb does not reproduce xgboost's random stream).
"""

import json

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from ppxgb.errors import ParameterError
from ppxgb.training import train_horizontal, train_vertical
from ppxgb.training.grower import ColumnSampler, row_sample
from ppxgb.training.params import TrainParams

from helpers import centralized, column_blocks, make_discrete_data, split_rows

MODES = ["horizontal", "vertical"]
SAMPLED = {"subsample": 0.7, "colsample_bytree": 0.8, "colsample_bylevel": 0.8, "colsample_bynode": 0.8}


def train(mode, params, X, y, rounds):
    """Horizontal: three hospitals of consecutive rows; vertical: three column blocks,
    the label holder first."""
    if mode == "horizontal":
        n = len(y)
        return train_horizontal(params, split_rows(X, y, [n // 3, n // 3, n - 2 * (n // 3)]),
                                num_boost_round=rounds, n_servers=2)
    return train_vertical(params, column_blocks(X, 3), y, label_party=0, num_boost_round=rounds)


def data(n=600, n_features=10, seed=0):
    return make_discrete_data("binary:logistic", n, n_features, 0.1, seed,
                              signal=lambda X: X[:, 0] - 0.7 * X[:, 3] + 0.3 * X[:, 5] * X[:, 7] + 0.5 * X[:, 9])


def trees_of(booster):
    """(split feature, left, right) arrays of every tree, from the model JSON."""
    model = json.loads(booster.save_raw("json"))
    return [(np.array(t["split_indices"]), np.array(t["left_children"]), np.array(t["right_children"]))
            for t in model["learner"]["gradient_booster"]["model"]["trees"]]


def depths(left, right):
    d = np.zeros(len(left), dtype=int)
    for node in range(len(left)):          # children have larger ids than their parent
        if left[node] >= 0:
            d[left[node]] = d[right[node]] = d[node] + 1
    return d


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_model_other_seed_differs(mode):
    X, y = data()
    params = {"objective": "binary:logistic", "max_depth": 3, "verbosity": 0, **SAMPLED}
    a = train(mode, {**params, "seed": 7}, X, y, 4).save_raw("json")
    b = train(mode, {**params, "seed": 7}, X, y, 4).save_raw("json")
    c = train(mode, {**params, "seed": 8}, X, y, 4).save_raw("json")
    assert a == b
    assert a != c


@pytest.mark.parametrize("mode", MODES)
def test_fractions_of_one_are_bit_identical_to_no_sampling(mode):
    X, y = data()
    params = {"objective": "binary:logistic", "max_depth": 3, "verbosity": 0}
    ones = {name: 1.0 for name in SAMPLED}
    plain = train(mode, params, X, y, 3).save_raw("json")
    assert train(mode, {**params, **ones, "seed": 5}, X, y, 3).save_raw("json") == plain


@pytest.mark.parametrize("mode", MODES)
def test_colsample_bytree_two_of_ten_features_per_tree(mode):
    X, y = data()
    params = {"objective": "binary:logistic", "max_depth": 4, "verbosity": 0, "colsample_bytree": 0.2, "seed": 1}
    booster = train(mode, params, X, y, 8)
    p = TrainParams.from_dict(params)
    used = set()
    for t, (feature, left, _) in enumerate(trees_of(booster)):
        split_features = set(feature[left >= 0].tolist())
        assert len(split_features) <= 2
        assert split_features <= set(ColumnSampler(p, 10, t).tree_set.tolist())
        used |= split_features
    assert len(used) > 2        # different trees draw different pairs


@pytest.mark.parametrize("mode", MODES)
def test_nested_column_samples_restrict_every_split(mode):
    """Every split's feature is in its node's draw, which is redrawn here exactly as the
    grower draws it: per tree, per level (the level's nodes in id order), per node."""
    X, y = data()
    params = {"objective": "binary:logistic", "max_depth": 3, "verbosity": 0, "seed": 11,
              "colsample_bytree": 0.7, "colsample_bylevel": 0.6, "colsample_bynode": 0.5}
    booster = train(mode, params, X, y, 6)
    p = TrainParams.from_dict(params)
    checked = 0
    for t, (feature, left, right) in enumerate(trees_of(booster)):
        sampler, d = ColumnSampler(p, 10, t), depths(left, right)
        for level in range(p.max_depth):
            nodes = np.flatnonzero(d == level)
            if not len(nodes) or not (left[nodes] >= 0).any():
                break
            masks = sampler.level_masks(len(nodes))
            assert masks.sum(axis=1).min() >= 1
            for node, mask in zip(nodes, masks):
                if left[node] >= 0:
                    assert mask[feature[node]]
                    checked += 1
    assert checked > 10


@pytest.mark.parametrize("mode", MODES)
def test_unsampled_rows_contribute_nothing(mode):
    """subsample=0.05 leaves a few dozen rows: one tree equals xgboost trained on those rows only."""
    X, y = make_discrete_data("reg:squarederror", 900, 6, 0.1, 3, signal=lambda X: X[:, 0] - 0.5 * X[:, 2])
    params = {"objective": "reg:squarederror", "max_depth": 3, "base_score": 0.5, "verbosity": 0,
              "subsample": 0.05, "seed": 2}
    p = TrainParams.from_dict(params)
    if mode == "horizontal":
        keep = np.concatenate([row_sample(p, f"party-{i}", 0, 0, 300) for i in range(3)])
    else:
        keep = row_sample(p, "party-0", 0, 0, 900)
    assert 10 <= keep.sum() <= 90
    booster = train(mode, params, X, y, 1)
    plain = {k: v for k, v in params.items() if k != "subsample"}
    oracle = centralized(plain, X[keep], y[keep], 1)
    d = xgb.DMatrix(X[keep])
    np.testing.assert_allclose(booster.predict(d, output_margin=True), oracle.predict(d, output_margin=True),
                               atol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLED))
@pytest.mark.parametrize("value", [0, -0.1, 1.5, "0.5", True])
def test_fractions_outside_0_1_are_refused(name, value):
    with pytest.raises(ParameterError, match=name):
        TrainParams.from_dict({name: value})


SETTINGS = [
    {"subsample": 0.6},
    {"colsample_bytree": 0.5},
    {"colsample_bylevel": 0.5},
    {"colsample_bynode": 0.5},
    {"subsample": 0.8, "colsample_bytree": 0.8, "colsample_bylevel": 0.8, "colsample_bynode": 0.8},
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_auc_close_to_xgboost_with_the_same_fractions(mode, setting):
    X, y = make_classification(n_samples=4000, n_features=10, n_informative=6, n_redundant=2,
                               flip_y=0.05, random_state=0)
    X_train, y_train, X_test, y_test = X[:3000], y[:3000], X[3000:], y[3000:]
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "verbosity": 0, **setting}
    ours, theirs = [], []
    for seed in range(5):
        booster = train(mode, {**params, "seed": seed}, X_train, y_train, 20)
        ours.append(roc_auc_score(y_test, booster.predict(xgb.DMatrix(X_test))))
        reference = centralized({**params, "seed": seed}, X_train, y_train, 20)
        theirs.append(roc_auc_score(y_test, reference.predict(xgb.DMatrix(X_test))))
    gap = abs(np.mean(ours) - np.mean(theirs))
    print(f"{mode} {setting}: AUC ppxgb {np.mean(ours):.4f} xgboost {np.mean(theirs):.4f} gap {gap:.4f}")
    assert gap <= 0.005
