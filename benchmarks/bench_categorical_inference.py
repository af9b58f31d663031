"""Encrypted inference of a categorical model: what category tokens cost.

    python benchmarks/bench_categorical_inference.py [--quick]

Model: binary:logistic, 100 trees of depth 6 on 30 features, 4 of them pandas
categories (5, 12, 40 and 200 categories, partition splits); 2048-bit Paillier keys.
The same model is scored under OPE and ORE.  Reported: enrollment per user, the
stored model and query sizes, the server's membership step (every row against every
categorical node) and its whole scoring time per query, in batches of 100, one worker,
no leaf-pair tables.  Every run is checked against booster.predict.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
import xgboost as xgb

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppxgb.formats import EncryptedQueries  # noqa: E402
from ppxgb.inference import Client, Server  # noqa: E402
from ppxgb.inference import server as server_module  # noqa: E402
from ppxgb.proxy import Proxy  # noqa: E402

CARDINALITIES = (5, 12, 40, 200)


def frame(n: int, rng) -> pd.DataFrame:
    cols = {f"x{j}": rng.normal(size=n) for j in range(30 - len(CARDINALITIES))}
    for k, card in enumerate(CARDINALITIES):
        cats = [f"c{i}" for i in range(card)]
        cols[f"cat{k}"] = pd.Categorical(rng.choice(cats, n), categories=cats)
    return pd.DataFrame(cols)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20 trees, 1024-bit keys, 200 queries")
    args = ap.parse_args()
    trees, bits, n_q = (20, 1024, 200) if args.quick else (100, 2048, 1000)
    rng = np.random.default_rng(0)
    X = frame(20000, rng)
    effect = sum(X[f"cat{k}"].cat.codes.to_numpy() % 3 == 0 for k in range(len(CARDINALITIES)))
    y = ((X["x0"] + X["x1"] * X["x2"] + effect + rng.normal(size=len(X))) > 2).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "max_cat_to_onehot": 1,
                         "seed": 0}, xgb.DMatrix(X, y, enable_categorical=True), trees)
    Q = frame(n_q, rng)
    ref = booster.predict(xgb.DMatrix(Q, enable_categorical=True))
    print(f"{trees} trees of depth 6, 30 features ({len(CARDINALITIES)} categorical), {bits}-bit keys, "
          f"{n_q} queries in batches of 100")
    print("| measure | OPE | ORE |\n|---|---:|---:|")
    rows: dict[str, list[str]] = {}
    for scheme in ("ope", "ore"):
        t = time.perf_counter()
        e = Proxy(bits, allow_weak_keys=bits < 2048, scheme=scheme).enroll(booster, user_id="alice")
        enroll = time.perf_counter() - t
        server, client = Server(), Client(e.keys)
        server.add(e.model)
        batches = [client.encrypt(Q.iloc[i:i + 100]) for i in range(0, n_q, 100)]
        server.predict(e.model.model_id, batches[0])                  # compile once
        member_time = [0.0]
        real = server_module._membership

        def timed_membership(*a):
            s = time.perf_counter()
            out = real(*a)
            member_time[0] += time.perf_counter() - s
            return out

        server_module._membership = timed_membership
        t = time.perf_counter()
        scores = [server.predict(e.model.model_id, q) for q in batches]
        score_time = time.perf_counter() - t
        server_module._membership = real
        got = np.concatenate([client.decrypt(s) for s in scores])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        n_cat = int(e.model.is_categorical.sum())
        values = {
            "enrollment per user (with key generation)": f"{enroll:.2f} s",
            "categorical nodes / token-set entries": f"{n_cat} / {e.model.cat_tokens.shape[0]}",
            "stored model per user": f"{len(e.model.to_bytes()) / 2**20:.1f} MB",
            "query size per row": f"{len(batches[0].to_bytes()) / 100 / 1024:.1f} KB",
            "membership step per query": f"{member_time[0] / n_q * 1e6:.0f} us",
            "scoring per query (one worker)": f"{score_time / n_q * 1e3:.2f} ms",
        }
        for k, v in values.items():
            rows.setdefault(k, []).append(v)
        assert isinstance(batches[0], EncryptedQueries)
    for k, (a, b) in rows.items():
        print(f"| {k} | {a} | {b} |")


if __name__ == "__main__":
    main()
