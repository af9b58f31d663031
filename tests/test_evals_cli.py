"""--eval-data and --early-stopping-rounds on the training commands, as OS processes:
the same model (best_iteration and best_score included) as the in-process API with the
same validation rows (a loopback federation discards the roles' stdout, where the
driving role prints each round's scores as xgboost.train does)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.app.deploy import load_data
from ppxgb.training import train_horizontal, train_vertical

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLI = [sys.executable, "-m", "ppxgb.app.cli"]
PARAMS = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.8}


def frames(n, seed, offset=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 12, size=(n, 4)) * 0.5
    y = (X[:, 0] + X[:, 3] + rng.normal(size=n) > 5).astype(int)
    ids = np.arange(n) + offset
    return (pd.DataFrame({"pid": ids, "f0": X[:, 0], "f1": X[:, 1], "y": y}),
            pd.DataFrame({"pid": ids, "f2": X[:, 2], "f3": X[:, 3]}).sample(frac=1, random_state=seed))


def run(args):
    proc = subprocess.run(CLI + args + ["--timeout", "30"], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_federation_with_eval_data_equals_the_api(tmp_path):
    paths = {}
    for name, (n, seed) in {"a": (300, 1), "b": (250, 2), "va": (100, 3), "vb": (120, 4)}.items():
        lh, fh = frames(n, seed)
        paths[name] = tmp_path / f"{name}.csv"
        pd.concat([lh.drop(columns="pid"), fh.sort_values("pid").drop(columns="pid")], axis=1).to_csv(
            paths[name], index=False)
    out = tmp_path / "model.json"
    run(["federation", "--data", str(paths["a"]), str(paths["b"]), "--eval-data", str(paths["va"]),
                str(paths["vb"]), "--label", "y", "--params", json.dumps(PARAMS), "--rounds", "30",
                "--early-stopping-rounds", "2", "--out", str(out)])
    parties = [load_data(str(paths[k]), "y") for k in ("a", "b")]
    valid = [load_data(str(paths[k]), "y") for k in ("va", "vb")]
    booster = train_horizontal({**PARAMS, "verbosity": 0}, parties, 30, evals=[(valid, "valid")],
                               early_stopping_rounds=2, verbose_eval=False)
    from_processes = xgb.Booster(model_file=str(out))
    assert from_processes.best_iteration == booster.best_iteration < 29
    assert from_processes.save_raw("json") == booster.save_raw("json")


def test_vfederation_with_eval_data_equals_the_api(tmp_path):
    lh, fh = frames(500, 5)
    vlh, vfh = frames(200, 6, offset=10_000)
    paths = []
    for name, frame in {"lh": lh, "fh": fh, "vlh": vlh, "vfh": vfh}.items():
        paths.append(tmp_path / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)
    out = tmp_path / "model.json"
    run(["vfederation", "--data", str(paths[0]), str(paths[1]), "--eval-data", str(paths[2]), str(paths[3]),
         "--id-column", "pid", "--label", "y", "--params", json.dumps(PARAMS), "--rounds", "30",
         "--early-stopping-rounds", "2", "--out", str(out)])
    booster = train_vertical({**PARAMS, "verbosity": 0}, [lh, fh], "y", num_boost_round=30, id_column="pid",
                             evals=[([vlh, vfh], "valid")], early_stopping_rounds=2, verbose_eval=False)
    from_processes = xgb.Booster(model_file=str(out))
    assert from_processes.best_iteration == booster.best_iteration < 29
    d = xgb.DMatrix(pd.concat([vlh.sort_values("pid"), vfh.sort_values("pid")[["f2", "f3"]]], axis=1)[
        ["f0", "f1", "f2", "f3"]])
    np.testing.assert_array_equal(from_processes.predict(d), booster.predict(d))


def test_early_stopping_without_eval_data_is_refused(tmp_path):
    lh, fh = frames(50, 7)
    path = tmp_path / "a.csv"
    lh.drop(columns="pid").to_csv(path, index=False)
    proc = subprocess.run(CLI + ["federation", "--data", str(path), "--label", "y", "--params", "{}",
                                 "--rounds", "2", "--early-stopping-rounds", "2", "--out", str(tmp_path / "m.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--early-stopping-rounds" in proc.stderr
