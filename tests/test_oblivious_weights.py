"""Sample weights in oblivious training: g and h times each row's weight on shares,
the weighted intercept and range check, against xgboost with the same weights."""

import numpy as np
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError
from ppxgb.training import train_oblivious


def _data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 10, size=(n, 4)).astype(float)              # integer values: the cuts coincide
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1]) + rng.normal(size=n) > 6).astype(float)
    return X, y, rng.uniform(0.2, 3.0, size=n)


def _margins(booster, X):
    return booster.predict(xgb.DMatrix(X), output_margin=True)


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror"])
@pytest.mark.parametrize("partition", ["horizontal", "vertical"])
def test_weighted_model_equals_xgboost(objective, partition):
    X, y, w = _data()
    params = {"objective": objective, "max_depth": 3, "min_child_weight": 2.0}
    if partition == "horizontal":
        secure = train_oblivious(params, [(X[:250], y[:250], w[:250]), (X[250:], y[250:], w[250:])], 3)
    else:
        secure = train_oblivious(params, [X[:, :2], X[:, 2:]], 3, partition="vertical", label=y, weight=w)
    ref = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y, weight=w), 3)
    unweighted = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y), 3)
    gap = np.abs(_margins(secure, X) - _margins(ref, X))
    assert np.mean(gap < 1e-3) >= 0.99 and gap.max() < 1e-3
    assert np.abs(_margins(unweighted, X) - _margins(ref, X)).max() > 1e-2     # the weights matter here


def test_a_product_by_unit_weights_returns_the_gradients_exactly():
    """Without weights every row's weight is a share of 1.0: the extra product must
    return g and h unchanged, bit for bit (the truncation is the exact floor)."""
    from ppxgb.crypto.sharing import share
    from ppxgb.training.oblivious.engine import encode

    from test_oblivious import _engines

    g = encode(np.random.default_rng(3).normal(size=5000) * 50)
    gs, ws = share(g, 2), share(encode(np.ones(5000)), 2)
    a, b = _engines(lambda e: e.mulf(ws[e.index], gs[e.index]))
    np.testing.assert_array_equal(a + b, g)


def test_weights_out_of_range_are_refused_by_name():
    X, y, w = _data(2)
    params = {"objective": "reg:squarederror", "max_depth": 2}
    big = w.copy()
    big[3] = 2000.0
    with pytest.raises(ParameterError, match="sample weights: expected below 1,024"):
        train_oblivious(params, [X[:, :2], X[:, 2:]], 1, partition="vertical", label=y, weight=big)
    with pytest.raises(ParameterError, match="w y\\^2 below 2\\^32"):
        train_oblivious(params, [X[:, :2], X[:, 2:]], 1, partition="vertical", label=y * 6000.0, weight=w * 300)
    Xh, yh = np.tile(X, (3, 1)), np.tile(y, 3)      # 1,200 rows of weight 1,000: a total hessian of 1.2e6
    with pytest.raises(ParameterError, match="total hessian below 1,048,576"):
        train_oblivious(params, [Xh[:, :2], Xh[:, 2:]], 1, partition="vertical", label=yh,
                        weight=np.full(len(yh), 1000.0))
    with pytest.raises(ParameterError, match="weight: expected None in horizontal training"):
        train_oblivious(params, [(X, y)], 1, weight=w)
    with pytest.raises(ParameterError, match="sample weights >= 0"):
        train_oblivious(params, [(X, y, -w)], 1)
