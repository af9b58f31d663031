"""Exact on every model a user brings, for both comparison schemes: early stopping,
single-leaf trees, out-of-range values, a custom missing value, scipy sparse rows,
unsupported objectives, and the float32 bound on large regression margins."""

import msgpack
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import xgboost as xgb

from helpers import scoring_server
from ppxgb.app.cli import main
from ppxgb.errors import ParameterError
from ppxgb.formats import EncryptedModel, EncryptedQueries, UserKeys
from ppxgb.inference import Client, Server
from ppxgb.proxy import Proxy

SCHEMES = ["ope", "ore"]
RTOL, ATOL = 1e-5, 1e-6


def _enroll(model, scheme):
    e = Proxy(1024, allow_weak_keys=True, scheme=scheme).enroll(model, user_id="alice")
    server = Server()
    server.add(e.model.to_bytes())
    return e, server


def _score(model, X, scheme, output_margin=False, missing=np.nan):
    e, server = _enroll(model, scheme)
    client = Client(e.keys.to_bytes(), missing=missing)
    scores = server.predict(e.model.model_id, client.encrypt(X).to_bytes())
    return client.decrypt(scores.to_bytes(), output_margin=output_margin)


def _data(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.lognormal(size=(n, d)).astype(np.float32)
    y = X[:, 0] - X[:, 1] + rng.normal(scale=0.3, size=n)
    return X, y


@pytest.mark.parametrize("scheme", SCHEMES)
def test_early_stopping_honours_best_iteration(scheme):
    X, y = _data()
    clf = xgb.XGBClassifier(n_estimators=60, max_depth=3, learning_rate=0.5, early_stopping_rounds=3)
    clf.fit(X[:200], (y[:200] > 0).astype(int), eval_set=[(X[200:], (y[200:] > 0).astype(int))], verbose=False)
    assert clf.best_iteration + 1 < clf.get_booster().num_boosted_rounds()
    np.testing.assert_allclose(_score(clf, X, scheme), clf.predict_proba(X)[:, 1], rtol=RTOL, atol=ATOL)
    reg = xgb.XGBRegressor(n_estimators=60, max_depth=3, learning_rate=0.8, early_stopping_rounds=2)
    reg.fit(X[:200], y[:200], eval_set=[(X[200:], y[200:])], verbose=False)
    np.testing.assert_allclose(_score(reg, X, scheme), reg.predict(X), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_single_leaf_trees(scheme):
    X, _ = _data(n=50)
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 3}, xgb.DMatrix(X, label=np.ones(50)), 3)
    assert all(t.count("leaf") == 1 for t in booster.get_dump())
    np.testing.assert_allclose(_score(booster, X, scheme), booster.predict(xgb.DMatrix(X)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_values_beyond_float32_refused(scheme):
    X, y = _data(n=60)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), 2)
    bad = X.astype(np.float64)
    bad[0, 0] = 1e39
    with pytest.raises(ValueError):                   # xgboost refuses it too
        booster.predict(xgb.DMatrix(bad))
    e, _ = _enroll(booster, scheme)
    with pytest.raises(ParameterError, match="float32 range"):
        Client(e.keys).encrypt(bad)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_custom_missing_value(scheme):
    X, y = _data()
    X[::7, 1] = -999.0
    X[::11, 2] = np.nan
    dtrain = xgb.DMatrix(X, label=y, missing=-999.0)
    booster = xgb.train({"max_depth": 4}, dtrain, 8)
    expected = booster.predict(xgb.DMatrix(X, missing=-999.0))
    np.testing.assert_allclose(_score(booster, X, scheme, missing=-999.0), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_scipy_sparse_rows(scheme, fmt):
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(120, 6)) * (rng.random((120, 6)) < 0.4)
    S = sp.csr_matrix(dense) if fmt == "csr" else sp.csc_matrix(dense)
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(S, label=rng.normal(size=120)), 6)
    np.testing.assert_allclose(_score(booster, S, scheme), booster.predict(xgb.DMatrix(S)), rtol=RTOL, atol=ATOL)


def test_unsupported_objective_named():
    X, _ = _data(n=80)
    booster = xgb.train({"objective": "survival:cox", "max_depth": 2}, xgb.DMatrix(X, label=np.arange(1, 81)), 2)
    with pytest.raises(ParameterError) as info:
        Proxy(1024, allow_weak_keys=True, scheme="ore").enroll(booster, user_id="alice")
    message = str(info.value)
    assert "survival:cox" in message and "reg:squarederror" in message and "binary:logistic" in message


@pytest.mark.parametrize("scheme", SCHEMES)
def test_large_regression_margins_float32_bound(scheme):
    """Margins are summed exactly and rounded once; xgboost accumulates in float32, so
    large margins differ by a few float32 ulps (the bound the README states)."""
    X, _ = _data(n=400, seed=5)
    y = 1e4 * X[:, 0] + 5e3 * X[:, 2]
    booster = xgb.train({"max_depth": 6, "eta": 0.3, "base_score": 1e3}, xgb.DMatrix(X, label=y), 40)
    ours = _score(booster, X, scheme, output_margin=True).astype(np.float64)
    ref = booster.predict(xgb.DMatrix(X), output_margin=True).astype(np.float64)
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(ours - ref) / ulp) <= 8
    assert np.max(np.abs(ours - ref) / np.abs(ref)) < 1e-5


def test_scheme_recorded_old_files_load_and_mismatch_refused():
    X, y = _data(n=60)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), 2)
    ope_e, ope_server = _enroll(booster, "ope")
    ore_e, ore_server = _enroll(booster, "ore")
    for blob in (ope_e.model.to_bytes(), ope_e.keys.to_bytes()):   # OPE files: as before ORE
        assert "scheme" not in msgpack.unpackb(blob, raw=False)
    assert EncryptedModel.from_bytes(ope_e.model.to_bytes()).scheme == "ope"
    assert UserKeys.from_bytes(ore_e.keys.to_bytes()).scheme == "ore"
    assert EncryptedModel.from_bytes(ore_e.model.to_bytes()).scheme == "ore"
    ore_q = Client(ore_e.keys).encrypt(X)
    assert EncryptedQueries.from_bytes(ore_q.to_bytes()).scheme == "ore"
    ope_q = Client(ope_e.keys).encrypt(X)
    mixed = EncryptedQueries(model_id=ope_e.model.model_id, columns=ope_q.columns, values=ope_q.values,
                             scheme="ore", ore_left=np.zeros((60, 153 * len(ope_q.columns)), np.uint8))
    with pytest.raises(ParameterError, match="scheme"):
        ope_server.predict(ope_e.model.model_id, mixed)
    bad = ore_q.ore_left.copy()
    bad[0, 0] = 255                                     # a block index the walk must not follow
    hostile = EncryptedQueries(model_id=ore_q.model_id, columns=ore_q.columns, values=ore_q.values,
                               scheme="ore", ore_left=bad)
    with pytest.raises(ParameterError, match="block indexes"):
        ore_server.predict(ore_e.model.model_id, hostile.to_bytes())


def test_cli_scheme_ore_and_missing_through_the_services(tmp_path):
    """`ppxgb proxy enroll --scheme ore` to a scoring server, then `ppxgb score --missing`."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.lognormal(size=(120, 4)).astype(np.float32), columns=list("abcd"))
    X.iloc[::9, 1] = -999.0
    booster = xgb.train({"max_depth": 4}, xgb.DMatrix(X, label=X.a + rng.normal(size=120), missing=-999.0), 6)
    booster.save_model(str(tmp_path / "m.json"))
    X.to_csv(tmp_path / "rows.csv", index=False)
    token = str(tmp_path / "server.token")
    assert main(["proxy", "new-secret", "--out", token]) == 0
    with scoring_server(tmp_path, token) as url:
        key, tok = str(tmp_path / "c.key"), str(tmp_path / "c.token")
        assert main(["proxy", "enroll", "--model", str(tmp_path / "m.json"), "--user", "carol", "--scheme", "ore",
                     "--server-url", url, "--server-admin-token-file", token, "--insecure-http",
                     "--key-out", key, "--token-out", tok]) == 0
        assert UserKeys.from_bytes(open(key, "rb").read()).scheme == "ore"
        out = tmp_path / "out.csv"
        assert main(["score", "--keys", key, "--token-file", tok, "--server-url", url, "--insecure-http",
                     "--input", str(tmp_path / "rows.csv"), "--output", str(out), "--missing", "-999"]) == 0
        got = pd.read_csv(out)["prediction"].to_numpy()
        np.testing.assert_allclose(got, booster.predict(xgb.DMatrix(X, missing=-999.0)), rtol=RTOL, atol=ATOL)
