"""The three stories of `ppxgb demo`, each a function of its inputs, shared by the
in-process demo (app/demo.py) and its separate-process variant (app/demo_services.py).

1. Four real hospitals (UCI Heart Disease) train one model with secure horizontal
   training; its held-out AUC is set beside each hospital training alone and beside
   centralized xgboost on the pooled rows (which secure training reproduces).
2. A clinic, a lab and an insurer train a vertical model on synthetic MS-like records
   aligned by private set intersection (when vertical training is available).
3. The proxy enrolls a user; the client app encrypts patient queries, the scoring
   server scores them blind, and the decrypted scores are checked against
   `Booster.predict` on the plaintext rows.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np

from .deploy import progress_for

HORIZONTAL_PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1,
                     "min_child_weight": 1.0}
HORIZONTAL_ROUNDS = 60
VERTICAL_PARAMS = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2}
VERTICAL_ROUNDS = 30


class Clock:
    """Wall time of each named step, for the summary and the report."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timings[name] = time.perf_counter() - start
        return out


def say(text: str = "") -> None:
    print(text, flush=True)


def split_hospitals(seed: int):
    """Each hospital keeps 70% of its patients for training; the rest form a shared test set.
    Chest pain type, resting ECG, ST slope and thal are category columns (their text)."""
    from sklearn.model_selection import train_test_split

    from ppxgb.datasets import load_heart_disease

    train, test = {}, {}
    for name, (X, y) in load_heart_disease(categorical=True).items():
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        train[name], test[name] = (Xtr, ytr), (Xte, yte)
    return train, test


def horizontal_story(clock: Clock, seed: int, train_fn=None) -> tuple[dict[str, Any], Any, Any]:
    import pandas as pd
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from ppxgb.training import train_horizontal

    train, test = split_hospitals(seed)
    X_test = pd.concat([X for X, _ in test.values()])
    y_test = np.concatenate([y for _, y in test.values()])
    groups = [name for name, (X, _) in test.items() for _ in range(len(X))]
    parties = list(train.values())
    say(f"[1/3] Secure horizontal training across {len(parties)} hospitals "
        f"({', '.join(f'{n}: {len(X)} patients' for n, (X, _) in train.items())})")
    trainer = train_fn or (lambda: train_horizontal(HORIZONTAL_PARAMS, parties,
                                                    num_boost_round=HORIZONTAL_ROUNDS, n_servers=2,
                                                    progress=progress_for("auto")))
    federated = clock.run("secure horizontal training", trainer)
    X_pool = pd.concat([X for X, _ in parties])
    for col in X_pool.select_dtypes("category"):     # the list the hospitals agree on: sorted values seen
        X_pool[col] = X_pool[col].cat.set_categories(sorted(X_pool[col].dropna().unique()))
    y_pool = np.concatenate([y for _, y in parties])
    params = {**HORIZONTAL_PARAMS, "tree_method": "hist"}
    central = clock.run("centralized xgboost (pooled rows)", xgb.train, params,
                        xgb.DMatrix(X_pool, label=y_pool, enable_categorical=True), HORIZONTAL_ROUNDS)
    d_test = xgb.DMatrix(X_test, enable_categorical=True)
    scores = {"federated": federated.predict(d_test), "centralized": central.predict(d_test)}
    for name, (X, y) in train.items():
        local = xgb.train(params, xgb.DMatrix(X, label=y, enable_categorical=True), HORIZONTAL_ROUNDS)
        scores[f"hospital:{name}"] = local.predict(d_test)
    auc = {k: float(roc_auc_score(y_test, v)) for k, v in scores.items()}
    margin_gap = float(np.max(np.abs(federated.predict(d_test, output_margin=True)
                                     - central.predict(d_test, output_margin=True))))
    result = {"y_test": y_test, "scores": scores, "auc": auc, "groups": groups,
              "max_margin_gap_vs_centralized": margin_gap}
    return result, federated, X_test


def vertical_story(clock: Clock, seed: int, step: str = "[2/3]") -> dict[str, Any] | None:
    try:
        training = importlib.import_module("ppxgb.training")
        train_vertical = training.train_vertical
    except (ImportError, AttributeError):
        say(f"{step} Vertical training: not available in this build, skipped")
        return None
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from ppxgb.datasets import MS_BLOCKS, MS_ID, MS_LABEL, make_ms_ehr, split_vertical

    df = make_ms_ehr(n_patients=4000, seed=seed)
    rng = np.random.default_rng(seed)
    test_ids = set(rng.choice(df[MS_ID].to_numpy(), size=1000, replace=False))
    is_test = df[MS_ID].isin(test_ids).to_numpy()
    train_df, test_df = df[~is_test], df[is_test]
    parts = split_vertical(train_df, MS_BLOCKS, id_column=MS_ID, shuffle=True, overlap=0.95, seed=seed)
    names = list(MS_BLOCKS)
    say(f"{step} Secure vertical training: {', '.join(names)} (95% of {len(train_df)} patients "
        "are known to all three) align their records by private set intersection and train "
        "on the joined columns")
    label_party = next(i for i, cols in enumerate(MS_BLOCKS.values()) if MS_LABEL in cols)
    booster = clock.run("secure vertical training (with PSI)", train_vertical, VERTICAL_PARAMS,
                        list(parts.values()) if isinstance(parts, dict) else list(parts),
                        MS_LABEL, label_party=label_party, num_boost_round=VERTICAL_ROUNDS,
                        n_servers=2, id_column=MS_ID, progress=progress_for("auto"))
    feats = list(booster.feature_names)
    y_test = test_df[MS_LABEL].to_numpy()
    vert_scores = booster.predict(xgb.DMatrix(test_df[feats]))
    # the centralized and clinic-only baselines use the same patients as the vertical
    # model: those every institution holds (what the private set intersection found)
    blocks = list(parts.values()) if isinstance(parts, dict) else list(parts)
    common = set.intersection(*(set(b[MS_ID]) for b in blocks))
    joined = train_df[train_df[MS_ID].isin(common)]
    params = {**VERTICAL_PARAMS, "tree_method": "hist"}
    central = xgb.train(params, xgb.DMatrix(joined[feats], label=joined[MS_LABEL]), VERTICAL_ROUNDS)
    clinic_cols = [c for c in MS_BLOCKS[names[label_party]] if c in feats]
    clinic = xgb.train(params, xgb.DMatrix(joined[clinic_cols], label=joined[MS_LABEL]), VERTICAL_ROUNDS)
    scores = {"vertical": vert_scores,
              "centralized": central.predict(xgb.DMatrix(test_df[feats])),
              f"{names[label_party]} alone": clinic.predict(xgb.DMatrix(test_df[clinic_cols]))}
    return {"auc": {k: float(roc_auc_score(y_test, v)) for k, v in scores.items()},
            "y_test": y_test, "scores": scores, "patients in the intersection": int(len(joined)),
            "institutions": ", ".join(names)}


def inference_story(clock: Clock, booster, X_test, n_queries: int, key_bits: int) -> dict[str, Any]:
    import xgboost as xgb

    from ppxgb.inference import Client, Server
    from ppxgb.proxy import Proxy

    X = X_test.iloc[:n_queries]
    say(f"[3/3] Encrypted inference: proxy enrolls user 'alice' ({key_bits}-bit Paillier), "
        f"the client app scores {len(X)} encrypted patient queries")
    enrollment = clock.run("proxy: enroll user (keys + encrypted model)", Proxy(key_bits).enroll,
                           booster, user_id="alice")
    server = Server()
    server.add(enrollment.model)
    client = Client(enrollment.keys)
    queries = clock.run("client: encrypt queries", client.encrypt, X)
    scores = clock.run("server: score encrypted queries", server.predict, enrollment.model.model_id, queries)
    decrypted = clock.run("client: decrypt scores", client.decrypt, scores)
    plain = booster.predict(xgb.DMatrix(X, enable_categorical=True))
    return {"max_abs_diff": float(np.max(np.abs(decrypted - plain))), "n_queries": int(len(X)),
            "tolerance": 1e-6, "model_id": enrollment.model.model_id, "key_bits": key_bits}
