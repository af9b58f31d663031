"""PPXGBClassifier / PPXGBRegressor: sklearn conventions, secure training underneath, and
xgboost's estimator for prediction.

The oracle for prediction is the trained Booster itself (and xgboost's estimator
loaded with it); the oracle for training is train_horizontal / train_vertical with
the same parameters, whose own oracle tests compare them with xgboost.train.
"""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from ppxgb.errors import ParameterError
from ppxgb.training import PPXGBClassifier, PPXGBRegressor, train_horizontal, train_vertical

from helpers import column_blocks, make_discrete_data, split_rows

SMALL = {"n_estimators": 4, "max_depth": 3, "max_bin": 32, "verbosity": 0}


def signal(X):
    return 0.6 * X[:, 0] - 0.5 * X[:, 1] + 0.2 * X[:, 2] * X[:, 3]


@pytest.fixture(scope="module")
def binary():
    return make_discrete_data("binary:logistic", 600, 5, 0.1, 0, signal)


@pytest.fixture(scope="module")
def fitted(binary):
    X, y = binary
    return PPXGBClassifier(**SMALL).fit(split_rows(X, y, [300, 300]))


def test_classifier_is_xgboost_for_prediction(binary, fitted):
    """The fitted model is train_horizontal's, and predict/predict_proba/apply/feature
    importances are XGBClassifier's on that Booster."""
    X, y = binary
    booster = train_horizontal({"max_depth": 3, "max_bin": 32, "verbosity": 0, "objective": "binary:logistic"},
                               split_rows(X, y, [300, 300]), num_boost_round=4)
    d = xgb.DMatrix(X)
    np.testing.assert_array_equal(fitted.get_booster().predict(d, output_margin=True),
                                  booster.predict(d, output_margin=True))
    p1 = booster.predict(d)
    np.testing.assert_array_equal(fitted.predict_proba(X), np.stack([1 - p1, p1], axis=1))
    np.testing.assert_array_equal(fitted.predict(X), (p1 > 0.5).astype(int))
    reference = xgb.XGBClassifier()
    reference.load_model(bytearray(booster.save_raw("json")))
    np.testing.assert_array_equal(fitted.feature_importances_, reference.feature_importances_)
    np.testing.assert_array_equal(fitted.apply(X), reference.apply(X))
    assert list(fitted.classes_) == [0, 1] and fitted.n_classes_ == 2 and fitted.n_features_in_ == X.shape[1]


def test_clone_and_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_")
    copy.set_params(max_depth=2, learning_rate=0.1, n_jobs=1)
    assert copy.get_xgb_params()["max_depth"] == 2 and copy.get_xgb_params()["nthread"] == 1
    with pytest.raises(NotFittedError, match="not fitted"):
        copy.predict(np.zeros((1, 5)))


def test_pipeline_predicts_like_the_model(binary, fitted):
    X, _ = binary
    frame = pd.DataFrame(X)
    pipe = Pipeline([("to_array", FunctionTransformer(np.asarray)), ("model", fitted)])
    np.testing.assert_array_equal(pipe.predict(frame), fitted.predict(X))
    np.testing.assert_array_equal(pipe.predict_proba(frame), fitted.predict_proba(X))


def test_best_iteration_is_honoured(binary):
    """With early stopping, predict_proba uses the trees up to best_iteration, as
    XGBClassifier does; iteration_range overrides it."""
    X, y = binary
    parts = split_rows(X, y, [300, 300])
    val = [(X[:100] + 0.5, 1 - y[:100]), (X[100:200], 1 - y[100:200])]     # a validation set it cannot fit
    clf = PPXGBClassifier(**{**SMALL, "n_estimators": 12, "learning_rate": 0.8}, early_stopping_rounds=2,
                          eval_metric="logloss").fit(parts, eval_set=[val])
    booster = clf.get_booster()
    assert clf.best_iteration < booster.num_boosted_rounds() - 1
    d = xgb.DMatrix(X)
    best = booster.predict(d, iteration_range=(0, clf.best_iteration + 1))
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], best, rtol=0, atol=0)
    assert not np.allclose(booster.predict(d), best)
    assert "validation_0" in clf.evals_result() and len(clf.evals_result()["validation_0"]["logloss"]) > 0


def test_multiclass_and_vertical():
    X, y = make_discrete_data("multi:softprob", 600, 6, 0.1, 1, signal)
    clf = PPXGBClassifier(**SMALL, partition="vertical").fit(column_blocks(X, 2), y)
    booster = train_vertical({"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "max_bin": 32,
                              "verbosity": 0}, column_blocks(X, 2), y, num_boost_round=4)
    d = xgb.DMatrix(X)
    np.testing.assert_array_equal(clf.predict_proba(X), booster.predict(d))
    np.testing.assert_array_equal(clf.predict(X), booster.predict(d).argmax(axis=1))
    assert clf.n_classes_ == 3 and list(clf.classes_) == [0, 1, 2]


def test_regressor_vertical_by_column_names():
    X, y = make_discrete_data("reg:squarederror", 500, 4, 0.1, 2, signal)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(target=y)
    blocks = [frame[["a", "b", "target"]], frame[["c", "d"]]]
    reg = PPXGBRegressor(**SMALL, partition="vertical", monotone_constraints={"a": 1}).fit(blocks, "target")
    booster = train_vertical({"max_depth": 3, "max_bin": 32, "verbosity": 0, "monotone_constraints": {"a": 1}},
                             blocks, "target", num_boost_round=4)
    features = frame[["a", "b", "c", "d"]]
    np.testing.assert_array_equal(reg.predict(features), booster.predict(xgb.DMatrix(features)))
    assert list(reg.feature_names_in_) == ["a", "b", "c", "d"]
    oracle = xgb.XGBRegressor(n_estimators=4, max_depth=3, max_bin=32, monotone_constraints={"a": 1},
                              tree_method="hist").fit(features, y)
    assert reg.score(features, y) == pytest.approx(oracle.score(features, y), abs=1e-5)


@pytest.mark.slow
def test_model_selection_with_one_party(binary):
    """fit(X, y) is one party with every row, so scikit-learn can fit it itself."""
    X, y = binary
    scores = cross_val_score(PPXGBClassifier(**SMALL), X, y.astype(int), cv=3)
    oracle = cross_val_score(xgb.XGBClassifier(**{k: v for k, v in SMALL.items() if k != "verbosity"},
                                               tree_method="hist"), X, y.astype(int), cv=3)
    np.testing.assert_allclose(scores, oracle, atol=0.02)


BAD = [
    ({"partition": "diagonal"}, "partition"),
    ({"n_estimators": 0}, "n_estimators"),
    ({"max_depth": 0}, "max_depth"),
]


@pytest.mark.parametrize("params,name", BAD)
def test_bad_parameters_are_named(binary, params, name):
    X, y = binary
    with pytest.raises(ParameterError, match=name):
        PPXGBClassifier(**{**SMALL, **params}).fit(split_rows(X, y, [300, 300]))


def test_bad_data_is_named(binary):
    X, y = binary
    with pytest.raises(ParameterError, match="parties"):
        PPXGBClassifier(**SMALL).fit([X, y])
    with pytest.raises(ParameterError, match="y"):
        PPXGBClassifier(**SMALL).fit(split_rows(X, y + 1, [300, 300]))
    with pytest.raises(ParameterError, match="y"):
        PPXGBClassifier(**SMALL, partition="vertical").fit(column_blocks(X, 2))


@pytest.mark.slow
def test_vertical_eval_set_and_early_stopping():
    """eval_set in the vertical form ((blocks, y) per set) reaches train_vertical: the
    same evals_result and best_iteration as calling it directly."""
    X, y = make_discrete_data("binary:logistic", 600, 4, 0.1, 3, signal)
    Xv, yv = X[:200] + 0.5, 1 - y[:200]
    clf = PPXGBClassifier(**{**SMALL, "n_estimators": 10, "learning_rate": 0.8}, partition="vertical",
                          early_stopping_rounds=2, eval_metric="logloss")
    clf.fit(column_blocks(X, 2), y, eval_set=[(column_blocks(Xv, 2), yv)])
    result: dict = {}
    booster = train_vertical({"objective": "binary:logistic", "max_depth": 3, "max_bin": 32, "verbosity": 0,
                              "eta": 0.8, "eval_metric": "logloss"}, column_blocks(X, 2), y, num_boost_round=10,
                             evals=[(column_blocks(Xv, 2), yv, "validation_0")], early_stopping_rounds=2,
                             evals_result=result, verbose_eval=False)
    assert clf.evals_result() == result
    assert clf.best_iteration == booster.best_iteration < 9


@pytest.mark.parametrize("label_party", [5, -1, True])
def test_vertical_label_party_out_of_range_is_refused_by_name(label_party):
    X = pd.DataFrame({"a": np.arange(20.0), "y": np.arange(20) % 2})
    with pytest.raises(ParameterError, match="label_party"):
        PPXGBClassifier(partition="vertical", label_party=label_party).fit([X], "y")
