"""`ppxgb oblivious-federation`: every role of oblivious training a separate process over
mutual TLS on loopback; the model equals xgboost hist on the pooled rows, and bad input
is refused in the launcher before any process starts."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from helpers import assert_margins_match, centralized

CLI = [sys.executable, "-m", "ppxgb.app.cli"]
PARAMS = '{"objective": "binary:logistic", "max_depth": 3, "max_bin": 16}'


def write_parties(tmp_path, X, y, cuts):
    paths = []
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        frame = pd.DataFrame(X[a:b], columns=["a", "b", "c", "d"])
        frame["y"] = y[a:b]
        paths.append(tmp_path / f"party{i}.csv")
        frame.to_csv(paths[-1], index=False)
    return [str(p) for p in paths]


def write_columns(tmp_path, X, y):
    """Vertical: party 0 holds columns a, b and the label, party 1 columns c, d."""
    first = pd.DataFrame(X[:, :2], columns=["a", "b"])
    first["y"] = y
    first.to_csv(tmp_path / "left.csv", index=False)
    pd.DataFrame(X[:, 2:], columns=["c", "d"]).to_csv(tmp_path / "right.csv", index=False)
    return [str(tmp_path / "left.csv"), str(tmp_path / "right.csv")]


@pytest.mark.slow
@pytest.mark.parametrize("partition", ["horizontal", "vertical"])
def test_oblivious_federation_equals_xgboost(tmp_path, partition):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 6, size=(300, 4)).astype(float)
    X[rng.random(X.shape) < 0.1] = np.nan                     # missing values take XGBoost's directions
    y = (np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1]) + rng.normal(size=300) > 0).astype(float)
    data = write_parties(tmp_path, X, y, [0, 120, 300]) if partition == "horizontal" else \
        write_columns(tmp_path, X, y)
    out = tmp_path / "model.json"
    done = subprocess.run(CLI + ["oblivious-federation", "--partition", partition, "--data", *data, "--label", "y",
                                 "--params", PARAMS, "--rounds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "over TLS" in done.stdout
    booster = xgb.Booster(model_file=str(out))
    assert_margins_match(booster, centralized({"objective": "binary:logistic", "max_depth": 3, "max_bin": 16},
                                              X, y, 2), X, tol=1e-3, frac=0.99)


@pytest.mark.slow          # starts a process (the project's fast tier leaves those out)
@pytest.mark.parametrize("params, message", [
    ('{"objective": "binary:logistic", "alpha": 1}', "alpha"),
    ('{"objective": "multi:softprob", "num_class": 3}', "objective"),
])
def test_oblivious_federation_refuses_bad_input_before_starting(tmp_path, params, message):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 6, size=(20, 4)).astype(float)
    data = write_parties(tmp_path, X, np.zeros(20), [0, 10, 20])
    done = subprocess.run(CLI + ["oblivious-federation", "--data", *data, "--label", "y", "--params", params,
                                 "--rounds", "1", "--out", str(tmp_path / "m.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("partition", ["horizontal", "vertical"])
def test_oblivious_federation_trains_categorical_columns(tmp_path, partition):
    """A text column with missing values (categorical by itself) and integer codes named
    in --categorical: the model equals xgboost's one-hot splits on the pooled rows.
    (The codes have no missing value: a CSV column with empty cells reads as floats, and
    float category values give a model xgboost does not load, in every mode.)"""
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame({"a": rng.integers(0, 6, n).astype(float),
                          "b": rng.choice(["u", "v", "w"], n).astype(object),
                          "c": rng.integers(0, 3, n)})
    frame.loc[rng.random(n) < 0.1, "b"] = None
    y = ((frame["b"] == "v") + (frame["c"] == 2) + 0.3 * frame["a"] + rng.normal(size=n) > 1.5).astype(float)
    if partition == "horizontal":
        data = []
        for i, (lo, hi) in enumerate([(0, 120), (120, n)]):
            part = frame.iloc[lo:hi].assign(y=y[lo:hi])
            data.append(str(tmp_path / f"party{i}.csv"))
            part.to_csv(data[-1], index=False)
    else:
        frame[["a", "b"]].assign(y=y).to_csv(tmp_path / "left.csv", index=False)
        frame[["c"]].to_csv(tmp_path / "right.csv", index=False)
        data = [str(tmp_path / "left.csv"), str(tmp_path / "right.csv")]
    out = tmp_path / "model.json"
    done = subprocess.run(CLI + ["oblivious-federation", "--partition", partition, "--data", *data, "--label", "y",
                                 "--categorical", "c", "--params", PARAMS, "--rounds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    # the codes: b by its sorted values (every party holds all three), c as the integers
    codes = np.column_stack([frame["a"], frame["b"].astype("category").cat.codes.replace(-1, np.nan), frame["c"]])
    types = ["float", "c", "c"]
    params = {"objective": "binary:logistic", "max_depth": 3, "max_bin": 16, "tree_method": "hist"}
    reference = xgb.train(params, xgb.DMatrix(codes, y, feature_types=types, enable_categorical=True), 2)
    secure = xgb.Booster(model_file=str(out))
    margins = [b.predict(xgb.DMatrix(codes, feature_types=types, enable_categorical=True), output_margin=True)
               for b in (secure, reference)]
    assert np.mean(np.abs(margins[0] - margins[1]) <= 1e-3) >= 0.99
    assert any(t.get("split_type") and 1 in t["split_type"] for t in
               json.loads(out.read_text())["learner"]["gradient_booster"]["model"]["trees"])
