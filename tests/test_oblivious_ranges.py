"""Oblivious training's fixed-point range, checked at run time (docs/oblivious.md).

Gains of reg:squarederror grow with the square of the labels; past the ring's range they
wrap and the model is silently wrong.  The analyst opens the pooled sum of squared
labels and stops a run whose residual sum of squares could overflow, before any tree;
parties refuse labels too large to square and sum.  The mutant (the check switched off)
shows what the check prevents: the same data then give a model far from xgboost's.
"""

import numpy as np
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError
from ppxgb.training import train_oblivious
from ppxgb.training.oblivious import roles

PARAMS = {"objective": "reg:squarederror", "max_depth": 3}


def _data(scale):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 10, size=(400, 4)).astype(float)          # integer values: the cuts coincide
    y = X[:, 0] + 0.5 * X[:, 1] + 0.1 * rng.normal(size=400)
    return X, (y - y.mean() + 100) * scale / 10                    # offset: the intercept takes it out


def _gap(X, y):
    booster = train_oblivious(PARAMS, [(X[:200], y[:200]), (X[200:], y[200:])], num_boost_round=3)
    ref = xgb.train({**PARAMS, "tree_method": "hist"}, xgb.DMatrix(X, label=y), 3)
    d = xgb.DMatrix(X)
    return float(np.abs(booster.predict(d, output_margin=True) - ref.predict(d, output_margin=True)).max())


def test_labels_in_range_train_exactly():
    X, y = _data(300)                             # residual sum of squares 3.4e6, under 2^22
    assert ((y - y.mean()) ** 2).sum() < roles.RESIDUAL_BOUND
    assert _gap(X, y) < 1e-3


def test_labels_out_of_range_are_refused_before_any_tree():
    X, y = _data(3000)
    with pytest.raises(ParameterError, match=r"residual sum of squares .* at most 4,194,304.*got '338,930,319'"):
        _gap(X, y)


def test_without_the_check_the_model_is_silently_wrong(monkeypatch):
    monkeypatch.setattr(roles, "check_residual_range", lambda *args: None)
    X, y = _data(3000)
    assert _gap(X, y) > 10


def test_labels_too_large_to_square_are_refused_by_the_party():
    X, y = _data(1)
    y[7] = 70_000.0
    with pytest.raises(ParameterError, match="labels: expected magnitudes below 65,536"):
        _gap(X, y)


def test_the_residual_check_follows_base_score():
    """Labels far from a given base_score count, labels near it do not."""
    roles.check_residual_range("reg:squarederror", label_sum=1e5, square_sum=1e7 + 1e3, n=1000, base=100.0)
    with pytest.raises(ParameterError, match="residual sum of squares"):
        roles.check_residual_range("reg:squarederror", label_sum=1e5, square_sum=1e7 + 1e3, n=1000, base=0.0)
    roles.check_residual_range("binary:logistic", label_sum=1e5, square_sum=1e12, n=1000, base=0.0)


def test_eta_above_one_is_refused_and_would_have_overflowed(monkeypatch):
    """The residual check relies on each tree lowering the residuals, which eta <= 1
    ensures; with eta 3 these labels pass it (residual sum 1.3e6 < 2^22) yet the
    overshooting trees wrap the gains (the mutant lets eta 3 through)."""
    from ppxgb.training.oblivious import api

    rng = np.random.default_rng(0)
    X = rng.integers(0, 8, size=(400, 3)).astype(float)
    y = (X[:, 0] - 3.5) * 25 + rng.normal(size=400) * 10
    params = {"objective": "reg:squarederror", "max_depth": 2, "eta": 3.0}
    parties = [(X[:200], y[:200]), (X[200:], y[200:])]
    with pytest.raises(ParameterError, match="eta: expected at most 1 in oblivious training"):
        train_oblivious(params, parties, num_boost_round=4)
    real = api.check_params
    monkeypatch.setattr(api, "check_params", lambda p: (real({**p, "eta": 1.0}), api.TrainParams.from_dict(p))[1])
    booster = train_oblivious(params, parties, num_boost_round=4)
    ref = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y), 4)
    d = xgb.DMatrix(X)
    assert np.abs(booster.predict(d, output_margin=True) - ref.predict(d, output_margin=True)).max() > 10
