"""Sample weights, scale_pos_weight, max_delta_step and every trainable objective,
horizontal and vertical, against xgboost.train(tree_method="hist") on the pooled rows.

The features are discrete (12 values), so the secure bins and xgboost's cuts coincide:
margins must agree to 1e-5 on at least 99% of the rows, the intercept (base_score)
exactly, and the objective's JSON block as xgboost writes it.
"""

import json

import numpy as np
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.model import Ensemble
from ppxgb.training import train_horizontal, train_vertical
from ppxgb.training.horizontal import run_federation

from helpers import centralized

TOL = 1e-5

#: (params, label kind); every objective ppxgb trains besides the three of the
#: horizontal and vertical oracle tests
OBJECTIVES = [
    ({"objective": "reg:logistic"}, "fraction"),
    ({"objective": "binary:logitraw"}, "binary"),
    ({"objective": "binary:hinge"}, "binary"),
    ({"objective": "multi:softmax", "num_class": 3}, "class"),
    ({"objective": "count:poisson"}, "count"),
    ({"objective": "reg:tweedie", "tweedie_variance_power": 1.3}, "tweedie"),
    ({"objective": "reg:gamma"}, "positive"),
    ({"objective": "reg:pseudohubererror", "huber_slope": 2.0}, "real"),
    ({"objective": "binary:logistic"}, "binary"),
    ({"objective": "reg:squarederror"}, "real"),
    ({"objective": "multi:softprob", "num_class": 3}, "class"),
]


def make_data(kind, n=900, n_features=6, seed=0, weighted=True):
    """Discrete features with NaNs, labels of `kind`, and sample weights (float weights;
    multiples of 1/4 for class labels, see test_objective_matches_xgboost)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 12, size=(n, n_features)).astype(np.float64) * 0.5 - 2.0
    s = 0.4 * (X[:, 0] - 0.7 * X[:, 4] + 0.3 * X[:, 2] * X[:, 5])
    X[rng.random(X.shape) < 0.1] = np.nan
    noise = rng.normal(size=n)
    y = {
        "binary": lambda: (s + noise > 0).astype(float),
        "fraction": lambda: 1.0 / (1.0 + np.exp(-(s + noise))),
        "class": lambda: np.digitize(s + 0.5 * noise, [-0.5, 0.5]).astype(float),
        "count": lambda: rng.poisson(np.exp(0.5 * s + 0.5)).astype(float),
        "tweedie": lambda: rng.poisson(np.exp(0.5 * s)) * rng.gamma(2.0, 1.0, n),
        "positive": lambda: rng.gamma(2.0, np.exp(0.5 * s)),
        "real": lambda: 3.0 * s + 10.0 + noise + (rng.random(n) < 0.05) * 20.0,
    }[kind]()
    w = None
    if weighted:
        w = rng.integers(1, 13, n) / 4.0 if kind == "class" else rng.uniform(0.1, 3.0, n)
    return X, y, w


def margin_gap(secure, reference, X):
    """Per row, the largest margin difference between the two boosters."""
    d = xgb.DMatrix(X)
    m1 = secure.predict(d, output_margin=True).reshape(len(X), -1)
    m2 = reference.predict(d, output_margin=True).reshape(len(X), -1)
    return np.abs(m1.astype(np.float64) - m2).max(axis=1)


def learner(booster):
    return json.loads(booster.save_raw("json"))["learner"]


def assert_matches(secure, reference, X):
    """Margins within TOL on >= 99% of rows, the same intercept and objective block."""
    gap = margin_gap(secure, reference, X)
    assert np.mean(gap <= TOL) >= 0.99, f"only {np.mean(gap <= TOL):.4f} of rows within {TOL} (max {gap.max():g})"
    ours, theirs = learner(secure), learner(reference)
    assert ours["learner_model_param"]["base_score"] == theirs["learner_model_param"]["base_score"]
    assert ours["objective"] == theirs["objective"]


def column_blocks(X, n_parties):
    return np.array_split(X, n_parties, axis=1)


def train(mode, params, X, y, w, rounds, n_servers):
    """Horizontal: three hospitals of uneven size, (X, y, w) each or (X, y) without
    weights; vertical: two column blocks, labels and weights at the second institution."""
    if mode == "horizontal":
        cut = [len(y) // 2, len(y) // 2 + len(y) // 3]
        parts = [np.split(a, cut) for a in (X, y) + ((w,) if w is not None else ())]
        return train_horizontal(params, list(zip(*parts)), num_boost_round=rounds, n_servers=n_servers)
    return train_vertical(params, column_blocks(X, 2), y, label_party=1, num_boost_round=rounds,
                          n_servers=n_servers, weight=w)


MODES = [("horizontal", 2), ("horizontal", 3), ("vertical", 2)]


@pytest.mark.parametrize("base, kind", OBJECTIVES, ids=lambda v: v["objective"] if isinstance(v, dict) else "")
@pytest.mark.parametrize("mode, n_servers", MODES, ids=["h2", "h3", "v"])
def test_objective_with_weights_matches_xgboost(base, kind, mode, n_servers):
    """Weighted training.  (xgboost sums multi-class weights per class in float32, row by
    row; the weights here are multiples of 1/4, whose sums float32 holds exactly, so
    the secure sums give the same intercept.)"""
    params = {**base, "max_depth": 3, "eta": 0.3}
    X, y, w = make_data(kind, seed=len(kind) + n_servers)
    assert_matches(train(mode, params, X, y, w, 4, n_servers), centralized(params, X, y, 4, weight=w), X)


@pytest.mark.parametrize("base, kind", OBJECTIVES[:8], ids=lambda v: v["objective"] if isinstance(v, dict) else "")
@pytest.mark.parametrize("mode", ["horizontal", "vertical"])
def test_objective_without_weights_matches_xgboost(base, kind, mode):
    params = {**base, "max_depth": 3, "eta": 0.5}
    X, y, _ = make_data(kind, seed=11, weighted=False)
    assert_matches(train(mode, params, X, y, None, 4, 2), centralized(params, X, y, 4), X)


@pytest.mark.parametrize("extra, kind", [
    ({"objective": "binary:logistic", "scale_pos_weight": 3.0}, "binary"),
    ({"objective": "binary:logistic", "scale_pos_weight": 0.4, "max_delta_step": 0.5}, "binary"),
    ({"objective": "reg:squarederror", "scale_pos_weight": 2.5}, "class"),     # rows labelled exactly 1
    ({"objective": "reg:logistic", "max_delta_step": 0.2, "alpha": 0.5, "lambda": 2.0}, "fraction"),
    ({"objective": "count:poisson", "max_delta_step": 0.3}, "count"),
    ({"objective": "reg:squarederror", "max_delta_step": 1.0, "min_child_weight": 3}, "real"),
    ({"objective": "multi:softmax", "num_class": 3, "max_delta_step": 0.4}, "class"),
], ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items() if k != "objective") if isinstance(v, dict) else "")
@pytest.mark.parametrize("mode, n_servers", [("horizontal", 3), ("vertical", 2)], ids=["h3", "v"])
def test_scale_pos_weight_and_max_delta_step_match_xgboost(extra, kind, mode, n_servers):
    params = {"max_depth": 4, "eta": 0.5, **extra}
    X, y, w = make_data(kind, seed=5)
    assert_matches(train(mode, params, X, y, w, 5, n_servers), centralized(params, X, y, 5, weight=w), X)


@pytest.mark.slow
@pytest.mark.parametrize("base, kind", OBJECTIVES, ids=lambda v: v["objective"] if isinstance(v, dict) else "")
def test_longer_training_with_weights_matches_xgboost(base, kind):
    params = {**base, "max_depth": 5, "eta": 0.3, "max_bin": 64}
    X, y, w = make_data(kind, n=4000, seed=3)
    for mode, n_servers in (("horizontal", 4), ("vertical", 2)):
        assert_matches(train(mode, params, X, y, w, 15, n_servers), centralized(params, X, y, 15, weight=w), X)


def test_weight_two_is_a_duplicated_row():
    """A row of weight 2 trains the same model as the row given twice (hinge: both
    exact sums of the same integers)."""
    params = {"objective": "reg:squarederror", "max_depth": 3}
    X, y, _ = make_data("real", n=300, seed=2, weighted=False)
    w = np.ones(len(y))
    w[:100] = 2.0
    weighted = train_horizontal(params, [(X, y, w)], num_boost_round=3)
    doubled = train_horizontal(params, [(np.vstack([X, X[:100]]), np.concatenate([y, y[:100]]))], num_boost_round=3)
    d = xgb.DMatrix(X)
    np.testing.assert_allclose(weighted.predict(d), doubled.predict(d), rtol=0, atol=1e-6)


def test_vertical_weight_column_of_a_dataframe():
    pd = pytest.importorskip("pandas")
    params = {"objective": "count:poisson", "max_depth": 3}
    X, y, w = make_data("count", n=600, seed=4)
    lh = pd.DataFrame(X[:, 3:], columns=["d", "e", "f"]).assign(visits=y, wt=w)
    fh = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    booster = train_vertical(params, [fh, lh], "visits", label_party=1, num_boost_round=3, weight="wt")
    assert booster.feature_names == ["a", "b", "c", "d", "e", "f"]
    booster.feature_names = None
    assert_matches(booster, centralized(params, X, y, 3, weight=w), X)


def test_exported_booster_predicts_the_model_exactly():
    """Ensemble.to_booster: the objective block loads, and xgboost's transform of the
    margins is the model's own."""
    for base, kind in OBJECTIVES:
        X, y, w = make_data(kind, n=300, seed=6)
        params = {**base, "max_depth": 3}
        model, _ = run_federation(params, [(X, y, w)], 2, 2)
        booster = model.to_booster()
        d = xgb.DMatrix(X)
        np.testing.assert_allclose(booster.predict(d, output_margin=True).reshape(len(X), -1),
                                   model.predict_margin(X).reshape(len(X), -1), rtol=0, atol=1e-6)
        np.testing.assert_allclose(booster.predict(d), model.predict(X), rtol=1e-6, atol=1e-6)
        assert Ensemble.from_booster(booster).objective_params == model.objective_params


@pytest.mark.parametrize("w, word", [
    (lambda n: -np.ones(n), r"parties\[1\] w: expected sample weights >= 0"),
    (lambda n: np.full(n, np.nan), r"parties\[1\] w: expected finite"),
    (lambda n: np.ones(n - 1), r"parties\[1\] w: expected \d+ sample weights"),
    (lambda n: ["a"] * n, r"parties\[1\] w: expected numeric"),
])
def test_bad_weights_are_named_with_their_party(w, word):
    X, y, _ = make_data("binary", n=60, weighted=False)
    parties = [(X[:30], y[:30]), (X[30:], y[30:], w(30))]
    with pytest.raises(ParameterError, match=word):
        train_horizontal({"objective": "binary:logistic"}, parties, num_boost_round=1)
    with pytest.raises(ParameterError, match=word.replace(r"parties\[1\] w", "weight")):
        train_vertical({"objective": "binary:logistic"}, column_blocks(X[30:], 2), y[30:], weight=w(30),
                       num_boost_round=1)


def test_weights_that_sum_to_zero_are_refused():
    X, y, _ = make_data("real", n=40, weighted=False)
    with pytest.raises(ParameterError, match="positive total weight"):
        train_horizontal({"objective": "reg:squarederror"}, [(X, y, np.zeros(40))], num_boost_round=1)


@pytest.mark.parametrize("params, error, word", [
    ({"objective": "reg:absoluteerror"}, UnsupportedParameter, "quantile of its rows' residuals"),
    ({"objective": "reg:quantileerror"}, UnsupportedParameter, "quantile of its rows' residuals"),
    ({"device": "cuda"}, UnsupportedParameter, "device"),
    ({"objective": "multi:softprob", "num_class": 3, "scale_pos_weight": 2}, ParameterError, "scale_pos_weight"),
    ({"objective": "reg:squarederror", "huber_slope": 2}, ParameterError, "huber_slope"),
    ({"objective": "reg:pseudohubererror", "huber_slope": 0}, ParameterError, "huber_slope"),
    ({"objective": "reg:tweedie", "tweedie_variance_power": 2.0}, ParameterError, "tweedie_variance_power"),
    ({"max_delta_step": -1}, ParameterError, "max_delta_step"),
    ({"scale_pos_weight": -1}, ParameterError, "scale_pos_weight"),
    ({"verbosity": 4}, ParameterError, "verbosity"),
    ({"eval_metric": 3}, ParameterError, "eval_metric"),
    ({"objective": "reg:gamma", "base_score": 0.0}, ParameterError, "base_score"),
])
def test_unsupported_or_bad_parameters_are_named(params, error, word):
    X, y, _ = make_data("count", n=40, weighted=False)
    with pytest.raises(error, match=word):
        train_horizontal({"objective": "count:poisson", **params}, [(X, y + 1)], num_boost_round=1)


@pytest.mark.parametrize("objective, labels, word", [
    ("reg:gamma", [0.0, 1.0], "positive labels"),
    ("count:poisson", [-1.0, 1.0], "non-negative labels"),
    ("reg:tweedie", [-1.0, 1.0], "non-negative labels"),
    ("reg:logistic", [1.5, 0.0], r"labels in \[0, 1\]"),
    ("binary:logitraw", [2.0, 0.0], r"labels in \[0, 1\]"),
    ("multi:softmax", [0.5, 1.0], "integer class labels"),
])
def test_labels_are_checked_as_xgboost_checks_them(objective, labels, word):
    y = np.array(labels * 10)
    X = np.arange(len(y), dtype=float)[:, None]
    params = {"objective": objective, **({"num_class": 3} if objective.startswith("multi") else {})}
    with pytest.raises(ParameterError, match=word):
        train_horizontal(params, [(X, y)], num_boost_round=1)
    with pytest.raises(xgb.core.XGBoostError):
        centralized(params, X, y, 1)


def test_accepted_parameters_train_as_without_them():
    X, y, w = make_data("binary", n=300, seed=8)
    params = {"objective": "binary:logistic", "max_depth": 3}
    extra = {"verbosity": 0, "eval_metric": ["logloss", "auc"], "disable_default_eval_metric": 1,
             "device": "cpu", "validate_parameters": True, "nthread": 2, "seed": 7}
    a = train_horizontal(params, [(X, y, w)], num_boost_round=2)
    b = train_horizontal({**params, **extra}, [(X, y, w)], num_boost_round=2)
    assert a.save_raw("json") == b.save_raw("json")
