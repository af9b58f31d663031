"""Secure horizontal training against centralized xgboost hist on the pooled rows."""

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.training import train_horizontal
from ppxgb.training.horizontal import run_federation

from helpers import (assert_booster_reproduces_model, assert_margins_match, centralized, make_discrete_data,
                     split_rows)


def discrete_data(objective, n=2400, n_features=6, nan_rate=0.1, seed=0):
    """Features with at most 12 distinct values (well under max_bin), NaNs at random."""
    return make_discrete_data(objective, n, n_features, nan_rate, seed,
                              signal=lambda X: X[:, 0] - 0.7 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3])


OBJECTIVES = [
    ({"objective": "binary:logistic"}),
    ({"objective": "reg:squarederror"}),
    ({"objective": "multi:softprob", "num_class": 3}),
]


@pytest.mark.parametrize("base", OBJECTIVES, ids=lambda p: p["objective"])
@pytest.mark.parametrize("n_servers", [2, 3, pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("nan_rate", [0.0, 0.15], ids=["dense", "nan"])
def test_matches_centralized_xgboost(base, n_servers, nan_rate):
    params = {**base, "max_depth": 4, "eta": 0.3}
    X, y = discrete_data(params["objective"], nan_rate=nan_rate, seed=n_servers)
    parties = split_rows(X, y, [1500, 600, 300])          # uneven party sizes
    booster = train_horizontal(params, parties, num_boost_round=6, n_servers=n_servers)
    assert_margins_match(booster, centralized(params, X, y, 6), X)


@pytest.mark.parametrize("extra", [
    {"max_depth": 3, "eta": 0.1, "lambda": 2.5, "alpha": 0.5, "gamma": 0.2, "min_child_weight": 5},
    {"max_depth": 6, "learning_rate": 0.5, "reg_lambda": 0.1, "max_bin": 16},
    {"max_depth": 2, "base_score": 0.3},
])
def test_regularisation_parameters_match(extra):
    params = {"objective": "binary:logistic", **extra}
    X, y = discrete_data("binary:logistic", seed=7)
    booster = train_horizontal(params, split_rows(X, y, [800, 800, 800]), num_boost_round=5)
    assert_margins_match(booster, centralized(params, X, y, 5), X)


def test_single_party_and_many_parties_agree():
    params = {"objective": "reg:squarederror", "max_depth": 4}
    X, y = discrete_data("reg:squarederror", seed=3)
    one = train_horizontal(params, [(X, y)], num_boost_round=4)
    five = train_horizontal(params, split_rows(X, y, [100, 200, 300, 800, 1000]), num_boost_round=4)
    d = xgb.DMatrix(X)
    np.testing.assert_array_equal(one.predict(d), five.predict(d))


@pytest.mark.slow
def test_continuous_features_auc_close_to_centralized():
    X, y = make_classification(n_samples=12000, n_features=12, n_informative=6, random_state=0)
    X[np.random.default_rng(0).random(X.shape) < 0.05] = np.nan
    Xtr, ytr, Xte, yte = X[:9000], y[:9000], X[9000:], y[9000:]
    params = {"objective": "binary:logistic", "max_depth": 5}
    booster = train_horizontal(params, split_rows(Xtr, ytr, [5000, 3000, 1000]), num_boost_round=20)
    ref = centralized(params, Xtr, ytr, 20)
    auc_secure = roc_auc_score(yte, booster.predict(xgb.DMatrix(Xte)))
    auc_plain = roc_auc_score(yte, ref.predict(xgb.DMatrix(Xte)))
    assert abs(auc_secure - auc_plain) <= 0.01, (auc_secure, auc_plain)


def test_dataframes_keep_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = discrete_data("binary:logistic", n=600, n_features=4)
    cols = ["age", "chol", "bp", "hr"]
    parties = [(pd.DataFrame(X[:300], columns=cols), y[:300]),
               (pd.DataFrame(X[300:], columns=cols), y[300:])]
    booster = train_horizontal({"objective": "binary:logistic"}, parties, num_boost_round=2)
    assert booster.feature_names == cols


def test_round_trip_through_booster_json_is_exact():
    X, y = discrete_data("multi:softprob", n=900)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}
    model, _ = run_federation(params, split_rows(X, y, [450, 450]), 3, 2)
    assert_booster_reproduces_model(model, X)


@pytest.mark.parametrize("params, word", [
    ({"objective": "binary:logistic", "subsample": 1.5}, "subsample"),
    ({"objective": "binary:logistic", "colsample_bytree": 0}, "colsample_bytree"),
    ({"objective": "rank:pairwise"}, "objective"),
    ({"objective": "binary:logistic", "tree_method": "exact"}, "tree_method"),
    ({"objective": "multi:softprob"}, "num_class"),
    ({"objective": "binary:logistic", "max_depth": 0}, "max_depth"),
    ({"objective": "binary:logistic", "eta": -1}, "eta"),
    ({"objective": "binary:logistic", "eta": 0.1, "learning_rate": 0.2}, "learning_rate"),
])
def test_unsupported_or_bad_parameters_are_named(params, word):
    X, y = discrete_data("binary:logistic", n=50)
    with pytest.raises(ParameterError, match=word):
        train_horizontal(params, [(X, y)], num_boost_round=1)


def test_bad_inputs_are_named():
    X, y = discrete_data("binary:logistic", n=50)
    with pytest.raises(ParameterError, match="n_servers"):
        train_horizontal({"objective": "binary:logistic"}, [(X, y)], n_servers=5)
    with pytest.raises(ParameterError, match=r"parties\[1\] y"):
        train_horizontal({"objective": "binary:logistic"}, [(X, y), (X, y[:10])])
    with pytest.raises(ParameterError, match="inf"):
        train_horizontal({"objective": "binary:logistic"}, [(np.where(X > 1, np.inf, X), y)])
    with pytest.raises(ParameterError, match=r"labels in \[0, 1\]"):
        train_horizontal({"objective": "binary:logistic"}, [(X, y + 2)], num_boost_round=1)
    assert issubclass(UnsupportedParameter, ParameterError)


@pytest.mark.parametrize("objective, labels", [
    ("binary:logistic", [0.0] * 40),
    ("binary:logistic", [1.0] * 39 + [0.0]),
    ("reg:squarederror", list(np.linspace(-50, 1000, 40))),
    ("multi:softprob", [0.0] * 20 + [2.0] * 20),          # class 1 never seen
])
def test_intercept_estimate_equals_installed_xgboost(objective, labels):
    import json

    y = np.array(labels)
    X = np.random.default_rng(0).integers(0, 3, size=(len(y), 2)).astype(float)
    params = {"objective": objective, "max_depth": 2}
    if objective == "multi:softprob":
        params["num_class"] = 3
    ours = train_horizontal(params, split_rows(X, y, [25, 15]), num_boost_round=1)
    theirs = centralized(params, X, y, 1)

    def base(b):
        return json.loads(b.save_raw("json"))["learner"]["learner_model_param"]["base_score"]

    np.testing.assert_allclose(json.loads(base(ours)), json.loads(base(theirs)), rtol=1e-6, atol=1e-7)
