"""Secure vertical training against centralized xgboost hist on the joined columns."""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.training import train_vertical
from ppxgb.training.vertical import run_vertical_federation

from helpers import (assert_booster_reproduces_model, assert_margins_match, centralized, column_blocks,
                     column_bounds, make_discrete_data)


def discrete_data(objective, n=1500, n_features=8, nan_rate=0.1, seed=0):
    """Features with at most 12 distinct values (well under max_bin), NaNs at random;
    the signal uses columns from every block of the splits below."""
    return make_discrete_data(objective, n, n_features, nan_rate, seed,
                              signal=lambda X: X[:, 0] - 0.7 * X[:, 3] + 0.3 * X[:, 5] * X[:, 7] + 0.5 * X[:, 2])


OBJECTIVES = [
    {"objective": "binary:logistic"},
    {"objective": "reg:squarederror"},
    {"objective": "multi:softprob", "num_class": 3},
]


@pytest.mark.parametrize("base", OBJECTIVES, ids=lambda p: p["objective"])
@pytest.mark.parametrize("n_parties, label_party", [(2, 0), (2, 1), (3, 1), (4, 3)])
def test_matches_centralized_xgboost(base, n_parties, label_party):
    params = {**base, "max_depth": 4, "eta": 0.3}
    X, y = discrete_data(params["objective"], seed=n_parties + label_party)
    booster = train_vertical(params, column_blocks(X, n_parties), y, label_party=label_party,
                             num_boost_round=4)
    assert_margins_match(booster, centralized(params, X, y, 4), X)


@pytest.mark.parametrize("limit", [1, 30_000])
def test_correlations_split_over_several_messages(monkeypatch, limit):
    """With a small message budget the dealer sends one feature (or a few) per message,
    as at a million rows; the model is the same."""
    from ppxgb.training.vertical import stages as vertical
    from ppxgb.training.vertical import permute as pm
    monkeypatch.setattr(vertical, "_CORR_BYTES", limit)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "max_bin": 32}
    X, y = discrete_data("binary:logistic", n=600, seed=3)
    sizes = [pm.correlation_size(600, level, 32) for level in range(3)]
    groups = [vertical.corr_group(N, N // pm.block_size(600, level, 32), 4) for level, N in enumerate(sizes)]
    assert max(groups) < 4 and (limit == 1 or max(groups) > 1)     # 4 features per FH, split unevenly
    booster = train_vertical(params, column_blocks(X, 2), y, num_boost_round=3)
    assert_margins_match(booster, centralized(params, X, y, 3), X)


@pytest.mark.parametrize("extra", [
    {"max_depth": 3, "eta": 0.1, "lambda": 2.5, "alpha": 0.5, "gamma": 0.2, "min_child_weight": 5},
    {"max_depth": 5, "learning_rate": 0.5, "reg_lambda": 0.1, "max_bin": 16},
    {"max_depth": 2, "base_score": 0.3},
])
def test_regularisation_parameters_match(extra):
    params = {"objective": "binary:logistic", **extra}
    X, y = discrete_data("binary:logistic", seed=7, nan_rate=0.2)
    booster = train_vertical(params, column_blocks(X, 3), y, label_party=2, num_boost_round=4)
    assert_margins_match(booster, centralized(params, X, y, 4), X)


def test_label_holder_without_features_and_dense_data():
    X, y = discrete_data("reg:squarederror", nan_rate=0.0, seed=11)
    blocks = [np.zeros((len(y), 0)), X[:, :5], X[:, 5:]]
    params = {"objective": "reg:squarederror", "max_depth": 3}
    booster = train_vertical(params, blocks, y, label_party=0, num_boost_round=3)
    assert_margins_match(booster, centralized(params, X, y, 3), X)


def _frames_with_ids(X, y, n_parties, rng):
    """Blocks with a shuffled patient_id column, partial overlap and extra IDs per party."""
    n = len(y)
    ids = rng.permutation(10 * n)[:n] + 1000          # common patients, in joined order
    blocks = []
    for p, (a, b) in enumerate(column_bounds(X.shape[1], n_parties)):
        keep = rng.random(n) < 0.9                       # each party misses ~10% of patients
        extra = 20 * n + p * n + np.arange(rng.integers(50, 150))  # IDs nobody else has
        cols = {f"p{p}_x{j}": np.concatenate([X[keep, j], rng.normal(size=len(extra))]) for j in range(a, b)}
        frame = pd.DataFrame({"patient_id": np.concatenate([ids[keep], extra]), **cols})
        if p == 0:
            frame["ms"] = np.concatenate([y[keep], np.zeros(len(extra))])
        frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
        blocks.append((frame, keep))
    return ids, blocks


@pytest.mark.slow
@pytest.mark.parametrize("n_parties", [2, 3])
def test_psi_aligns_shuffled_partial_overlap(n_parties):
    rng = np.random.default_rng(5)
    X, y = discrete_data("binary:logistic", n=1200, seed=5)
    ids, blocks = _frames_with_ids(X, y, n_parties, rng)
    common = np.logical_and.reduce([keep for _, keep in blocks])
    params = {"objective": "binary:logistic", "max_depth": 3}
    booster = train_vertical(params, [f for f, _ in blocks], "ms", label_party=0, num_boost_round=3,
                             id_column="patient_id")
    names = [c for f, _ in blocks for c in f.columns if c not in ("patient_id", "ms")]
    assert booster.feature_names == names
    # the reference: the joined rows of the common patients only
    Xc, yc = X[common], y[common]
    ref = centralized(params, Xc, yc, 3)
    secure = booster.predict(xgb.DMatrix(pd.DataFrame(Xc, columns=names)), output_margin=True)
    plain = ref.predict(xgb.DMatrix(Xc), output_margin=True)
    assert np.mean(np.abs(secure - plain) <= 1e-3) >= 0.99


def test_dataframes_label_column_and_feature_names():
    X, y = discrete_data("reg:squarederror", n=600)
    a = pd.DataFrame(X[:, :4], columns=["age", "bmi", "sex", "edss"]).assign(ms=y)
    b = pd.DataFrame(X[:, 4:], columns=["hba1c", "ldl", "crp", "vitd"])
    params = {"objective": "reg:squarederror", "max_depth": 3}
    booster = train_vertical(params, [b, a], "ms", label_party=1, num_boost_round=2)
    assert booster.feature_names == ["hba1c", "ldl", "crp", "vitd", "age", "bmi", "sex", "edss"]
    joined = np.column_stack([X[:, 4:], X[:, :4]])
    ref = centralized(params, joined, y, 2)
    m1 = booster.predict(xgb.DMatrix(pd.DataFrame(joined, columns=booster.feature_names)))
    np.testing.assert_allclose(m1, ref.predict(xgb.DMatrix(joined)), atol=1e-4)


def test_round_trip_through_booster_json_is_exact():
    X, y = discrete_data("multi:softprob", n=600)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}
    model, transport = run_vertical_federation(params, column_blocks(X, 2), y, num_boost_round=2)
    assert_booster_reproduces_model(model, X)
    assert transport.total_bytes > 0


@pytest.mark.parametrize("params, word", [
    ({"objective": "binary:logistic", "subsample": 1.5}, "subsample"),
    ({"objective": "rank:pairwise"}, "objective"),
    ({"objective": "multi:softprob"}, "num_class"),
])
def test_unsupported_parameters_are_named(params, word):
    X, y = discrete_data("binary:logistic", n=50)
    with pytest.raises(ParameterError, match=word):
        train_vertical(params, column_blocks(X, 2), y, num_boost_round=1)


def test_bad_inputs_are_named():
    X, y = discrete_data("binary:logistic", n=60)
    p = {"objective": "binary:logistic"}
    with pytest.raises(ParameterError, match="label_party"):
        train_vertical(p, column_blocks(X, 2), y, label_party=2)
    with pytest.raises(ParameterError, match="parties"):
        train_vertical(p, [X], y)
    with pytest.raises(ParameterError, match="rows"):
        train_vertical(p, [X[:, :3], X[:50, 3:]], y, num_boost_round=1)
    with pytest.raises(ParameterError, match="label"):
        train_vertical(p, column_blocks(X, 2), y[:10], num_boost_round=1)
    with pytest.raises(ParameterError, match="id column"):
        train_vertical(p, column_blocks(X, 2), y, id_column="patient_id")
    with pytest.raises(ParameterError, match="n_servers"):
        train_vertical(p, column_blocks(X, 2), y, n_servers=5)
    assert issubclass(UnsupportedParameter, ParameterError)


@pytest.mark.slow
def test_vfederation_processes_match_in_process_training(tmp_path):
    """`ppxgb vfederation`: one OS process per party and the dealer over mutual TLS, PSI
    on the id column; the model equals in-process train_vertical on the same files."""
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    X, y = discrete_data("binary:logistic", n=500, n_features=8, seed=3)
    ids = rng.permutation(5000)[:500]
    files = []
    for p, (a, b) in enumerate([(0, 3), (3, 6), (6, 8)]):
        frame = pd.DataFrame({"pid": ids, **{f"x{j}": X[:, j] for j in range(a, b)}})
        if p == 1:
            frame["ms"] = y
        frame = frame.sample(frac=1, random_state=p)
        files.append(tmp_path / f"p{p}.csv")
        frame.to_csv(files[-1], index=False)
    out = tmp_path / "model.json"
    params = {"objective": "binary:logistic", "max_depth": 3}
    import json
    run = subprocess.run([sys.executable, "-m", "ppxgb.app.cli", "vfederation", "--data", *map(str, files),
                          "--id-column", "pid", "--label", "ms", "--label-party", "1",
                          "--params", json.dumps(params), "--rounds", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    model = xgb.Booster()
    model.load_model(str(out))
    local = train_vertical(params, [pd.read_csv(f) for f in files], "ms", label_party=1, num_boost_round=2,
                           id_column="pid")
    assert model.feature_names == local.feature_names == [f"x{j}" for j in range(8)]
    d = xgb.DMatrix(pd.DataFrame(X, columns=local.feature_names))
    np.testing.assert_array_equal(model.predict(d), local.predict(d))


@pytest.mark.parametrize("target, peer", [("fh_gather_shuffled", "party-1"), ("shuffled_delta", "server-0")])
def test_a_role_failing_mid_training_is_named(monkeypatch, target, peer):
    from ppxgb.errors import PeerFailure
    from ppxgb.training.vertical import permute

    original, calls = getattr(permute, target), {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:
            raise RuntimeError("disk on fire")
        return original(*args, **kwargs)

    monkeypatch.setattr(permute, target, flaky)
    X, y = discrete_data("binary:logistic", n=300)
    with pytest.raises(PeerFailure) as info:
        train_vertical({"objective": "binary:logistic", "max_depth": 3}, column_blocks(X, 2), y,
                       num_boost_round=4, timeout=30)
    assert info.value.peer == peer and "disk on fire" in info.value.reason
