"""Encrypted predictions equal xgboost's own (the installed xgboost is the oracle).

Keys are 1024-bit here (the point is exactness, not key size); one test uses 2048.
"""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError
from ppxgb.inference import Client, Server
from ppxgb.proxy import Proxy

RTOL, ATOL = 1e-5, 1e-6
KINDS = {
    "binary": ({"objective": "binary:logistic"}, 2),
    "multi3": ({"objective": "multi:softprob", "num_class": 3}, 3),
    "multi10": ({"objective": "multi:softprob", "num_class": 10}, 10),
    "regression": ({"objective": "reg:squarederror"}, 0),
}


def make_data(kind, missing, n=240, d=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 3] = np.round(X[:, 3] * 2)                    # a discrete feature: many ties
    score = X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3]
    k = KINDS[kind][1]
    if k == 0:
        y = 3 * score + 10 + rng.normal(scale=0.1, size=n)
    elif k == 2:
        y = (score > 0).astype(int)
    else:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1]))
    if missing:
        X[rng.random(X.shape) < 0.15] = np.nan
    return X, y


def train(kind, missing, rounds=12, depth=4):
    X, y = make_data(kind, missing)
    params = {**KINDS[kind][0], "max_depth": depth, "eta": 0.3, "seed": 0}
    return xgb.train(params, xgb.DMatrix(X, label=y), rounds), X


def score(model, X, output_margin=False, key_bits=1024):
    enrollment = Proxy(key_bits, allow_weak_keys=True).enroll(model, user_id="alice")
    server = Server()
    server.add(enrollment.model.to_bytes())
    client = Client(enrollment.keys.to_bytes())
    queries = client.encrypt(X)
    scores = server.predict(enrollment.model.model_id, queries.to_bytes())
    return client.decrypt(scores.to_bytes(), output_margin=output_margin)


@pytest.mark.parametrize("missing", [False, True], ids=["dense", "missing"])
@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k == "multi10" else k for k in KINDS])
def test_booster_predictions_match(kind, missing):
    booster, X = train(kind, missing)
    Xq, _ = make_data(kind, missing, n=120, seed=1)       # fresh rows, not the training set
    want = booster.predict(xgb.DMatrix(Xq))
    got = score(booster, Xq)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["binary", pytest.param("multi3", marks=pytest.mark.slow), "regression"])
def test_output_margin_matches(kind):
    booster, X = train(kind, True)
    want = booster.predict(xgb.DMatrix(X), output_margin=True)
    np.testing.assert_allclose(score(booster, X, output_margin=True), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("form", ["classifier", "regressor", "json", "ubj"])
def test_sklearn_wrappers_and_model_files(form, tmp_path):
    kind = "regression" if form == "regressor" else "binary"
    X, y = make_data(kind, True)
    if form == "regressor":
        model = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, y)
    else:
        model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    want = model.get_booster().predict(xgb.DMatrix(X))
    if form in ("json", "ubj"):
        path = tmp_path / f"model.{form}"
        model.get_booster().save_model(str(path))
        model = str(path)
    np.testing.assert_allclose(score(model, X), want, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_values_exactly_at_thresholds_and_signed_zero():
    """x == threshold goes right, -0.0 compares equal to 0.0, neighbours of t go their way."""
    rng = np.random.default_rng(3)
    X = rng.integers(-2, 3, size=(200, 4)).astype(np.float32)
    y = X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3]
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 4}, xgb.DMatrix(X, label=y), 8)
    trees = booster.trees_to_dataframe()
    splits = trees[trees.Feature != "Leaf"]
    rows = []
    for _, r in splits.iterrows():
        f, t = int(r.Feature[1:]), np.float32(r.Split)
        for v in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))):
            row = rng.integers(-2, 3, size=4).astype(np.float32)
            row[f] = v
            rows.append(row)
    Xq = np.vstack(rows + [np.array([-0.0, 0.0, -0.0, 0.0], np.float32)])
    np.testing.assert_allclose(score(booster, Xq), booster.predict(xgb.DMatrix(Xq)), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_fitted_and_explicit_intercepts():
    X, y = make_data("regression", False)
    for params in ({"base_score": 123.5}, {}):
        booster = xgb.train({"objective": "reg:squarederror", **params}, xgb.DMatrix(X, label=y), 5)
        np.testing.assert_allclose(score(booster, X[:50]), booster.predict(xgb.DMatrix(X[:50])),
                                   rtol=RTOL, atol=ATOL)


def test_all_missing_rows_and_pandas_columns():
    booster, X = train("binary", True)
    Xq = X[:30].copy()
    Xq[:5] = np.nan
    frame = pd.DataFrame(Xq, columns=[f"f{i}" for i in range(X.shape[1])])
    np.testing.assert_allclose(score(booster, frame), booster.predict(xgb.DMatrix(Xq)),
                               rtol=RTOL, atol=ATOL)


def test_named_features_are_aligned_by_name():
    X, y = make_data("binary", False)
    names = [f"lab_{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(frame, label=y), 6)
    shuffled = frame[names[::-1]]
    np.testing.assert_allclose(score(booster, shuffled), booster.predict(xgb.DMatrix(frame)),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_default_2048_bit_keys():
    booster, X = train("binary", True, rounds=5)
    enrollment = Proxy().enroll(booster, user_id="bob")
    assert enrollment.keys.paillier_n.bit_length() == 2048
    server = Server()
    server.add(enrollment.model)
    client = Client(enrollment.keys)
    got = client.decrypt(server.predict(enrollment.model.model_id, client.encrypt(X[:20])))
    np.testing.assert_allclose(got, booster.predict(xgb.DMatrix(X[:20])), rtol=RTOL, atol=ATOL)


def test_bad_client_input_is_rejected():
    booster, X = train("binary", False, rounds=3)
    enrollment = Proxy(1024, allow_weak_keys=True).enroll(booster, user_id="carol")
    client = Client(enrollment.keys)
    for bad in (X[:, :3], np.full_like(X, np.inf), X[:0], "text", X[0]):
        with pytest.raises(ParameterError):
            client.encrypt(bad)
    with pytest.raises(ParameterError):
        Proxy(1024)                      # weak keys need an explicit opt-in
    with pytest.raises(ParameterError):
        Proxy(1024, allow_weak_keys=True).enroll(booster, user_id="bad id!")


@pytest.mark.parametrize("objective", ["reg:logistic", "binary:logitraw", "multi:softmax",
                                       "reg:absoluteerror", "reg:pseudohubererror"])
def test_other_objectives(objective):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    score_ = np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1])
    if objective == "multi:softmax":
        params, y = {"num_class": 4}, np.digitize(score_, [-1, 0, 1])
    elif objective in ("reg:logistic", "binary:logitraw"):
        params, y = {}, (score_ > 0).astype(float)
    else:
        params, y = {}, 5 * score_ + 2
    booster = xgb.train({"objective": objective, "max_depth": 3, **params}, xgb.DMatrix(X, label=y), 8)
    np.testing.assert_allclose(score(booster, X), booster.predict(xgb.DMatrix(X)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["binary", "multi3"])
def test_pair_product_tables_give_the_same_scores(kind):
    """Server(pair_table_mb=...) multiplies precomputed leaf-pair products: same sums."""
    booster, X = train(kind, True, rounds=7)
    enrollment = Proxy(1024, allow_weak_keys=True).enroll(booster, user_id="erin")
    client = Client(enrollment.keys)
    queries = client.encrypt(X[:60])
    results = []
    for mb in (0, 0.05, 64):                 # none, some pairs within budget, all pairs
        server = Server(pair_table_mb=mb)
        server.add(enrollment.model)
        results.append(client.decrypt(server.predict(enrollment.model.model_id, queries), output_margin=True))
    for got in results:
        np.testing.assert_array_equal(got, results[0])
    np.testing.assert_allclose(results[-1], booster.predict(xgb.DMatrix(X[:60]), output_margin=True),
                               rtol=RTOL, atol=ATOL)
    with pytest.raises(ParameterError):
        Server(pair_table_mb=-1)


@pytest.mark.slow
def test_pair_table_budget_is_shared_by_the_models_of_a_server():
    booster, X = train("binary", False, rounds=6)
    proxy = Proxy(1024, allow_weak_keys=True)
    first, second = proxy.enroll(booster, user_id="fay"), proxy.enroll(booster, user_id="gus")

    def pairs(server, model_id):
        return sum(kind == "pair" for _, kind, _, _ in server._models[model_id].factors[0])

    probe = Server(pair_table_mb=64)
    probe.add(first.model)
    need = 64 * 2**20 - probe.pair_table_bytes          # what all three pairs of one model take
    assert pairs(probe, first.model.model_id) == 3
    server = Server(pair_table_mb=need * 1.5 / 2**20)    # room for one model and a half
    server.add(first.model)
    server.add(second.model)
    assert pairs(server, first.model.model_id) == 3
    assert pairs(server, second.model.model_id) == 1
    assert 0 <= server.pair_table_bytes < need / 3
    left = server.pair_table_bytes
    server.add(second.model.to_bytes())                  # the same model again: kept as it is
    assert pairs(server, second.model.model_id) == 1 and server.pair_table_bytes == left
    for enrollment in (first, second):
        client = Client(enrollment.keys)
        got = client.decrypt(server.predict(enrollment.model.model_id, client.encrypt(X[:20])))
        np.testing.assert_allclose(got, booster.predict(xgb.DMatrix(X[:20])), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("base_score", [None, [0.1, 0.2, 0.7]], ids=["fitted", "explicit"])
def test_per_class_intercept_vector(base_score):
    """Multi-class models carry one intercept per class (fitted from unbalanced labels here)."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = rng.choice(3, size=300, p=[0.6, 0.3, 0.1])
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}
    if base_score is not None:
        params["base_score"] = base_score
    booster = xgb.train(params, xgb.DMatrix(X, label=y), 4)
    from ppxgb.model import Ensemble
    margin = Ensemble.load(booster).base_margin()
    assert len(set(margin.tolist())) == 3                 # a genuine per-class vector
    np.testing.assert_allclose(score(booster, X, output_margin=True),
                               booster.predict(xgb.DMatrix(X), output_margin=True), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(score(booster, X), booster.predict(xgb.DMatrix(X)), rtol=RTOL, atol=ATOL)


def test_a_failed_table_build_returns_the_budget(monkeypatch):
    booster, _ = train("binary", False, rounds=4)
    enrollment = Proxy(1024, allow_weak_keys=True).enroll(booster, user_id="hal")
    server = Server(pair_table_mb=64)
    before = server.pair_table_bytes

    calls = []

    def broken(*args, **kwargs):            # the first pair table is built, the second fails
        calls.append(1)
        if len(calls) > 2:
            raise MemoryError("no room for tables")
        return sorted(*args, **kwargs)

    monkeypatch.setattr("ppxgb.inference.server.sorted", broken, raising=False)
    with pytest.raises(MemoryError):
        server.add(enrollment.model)
    assert server.pair_table_bytes == before and enrollment.model.model_id not in server
