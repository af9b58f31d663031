"""Horizontal secure training against plaintext xgboost hist, side by side in one run.

    python benchmarks/bench_horizontal.py                 # 100,000 and 1,000,000 rows
    python benchmarks/bench_horizontal.py --rows 100000   # one size

Data: sklearn make_classification, 30 features, split over 3 parties (equal thirds);
2 compute servers; 100 trees of depth 6; binary:logistic. Each measurement runs in a
fresh subprocess so that its peak memory (max RSS) is its own. xgboost gets the same
thread count as the parties' kernels, and its time includes building the DMatrix
(quantile sketch), as the secure time includes agreeing on the bins.
Results are printed as a table and written to benchmarks/RESULTS_horizontal.md.

One more row, at the first size only: subsample=0.8, colsample_bytree=0.8 and a
validation set (the first 10,000 held-out rows, split over the parties like the
training rows, scored every round with the default metric; xgboost gets the same
validation DMatrix). AUC is then measured on the other 10,000 held-out rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_data(rows: int, features: int, seed: int = 0):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows + 20_000, n_features=features, n_informative=15,
                               n_redundant=5, random_state=seed)
    return X[:rows], y[:rows], X[rows:], y[rows:]


SAMPLED = {"subsample": 0.8, "colsample_bytree": 0.8}
N_VALID = 10_000


def measure(kind: str, rows: int, features: int, parties: int, servers: int, trees: int,
            depth: int, threads: int, variant: str = "default") -> dict:
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import numpy as np
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    X, y, Xte, yte = make_data(rows, features)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3}
    sampled = variant == "sampled"
    if sampled:
        params = {**params, **SAMPLED}
        Xv, yv, Xte, yte = Xte[:N_VALID], yte[:N_VALID], Xte[N_VALID:], yte[N_VALID:]
    out = {"kind": kind, "rows": rows}
    if kind == "xgboost":
        start = time.perf_counter()
        d = xgb.DMatrix(X, label=y, nthread=threads)
        evals = [(xgb.DMatrix(Xv, label=yv, nthread=threads), "valid")] if sampled else []
        booster = xgb.train({**params, "tree_method": "hist", "nthread": threads}, d, trees, evals=evals,
                            verbose_eval=False)
        out["seconds"] = time.perf_counter() - start
        out["bytes"] = 0
    else:
        from ppxgb.training.horizontal import run_federation

        bounds = np.linspace(0, rows, parties + 1).astype(int)
        split = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        evals = None
        if sampled:
            vb = np.linspace(0, len(yv), parties + 1).astype(int)
            evals = [([(Xv[a:b], yv[a:b]) for a, b in zip(vb[:-1], vb[1:])], "valid")]
        # compile the kernels outside the timed region (numba caches them on disk anyway)
        run_federation(params, [(X[:2000], y[:2000])], 1, servers)
        start = time.perf_counter()
        model, transport = run_federation({**params, "nthread": threads}, split, trees, servers, evals=evals)
        out["seconds"] = time.perf_counter() - start
        out["bytes"] = transport.total_bytes
        out["messages"] = transport.total_messages
        booster = model.to_booster()
    out["auc"] = float(roc_auc_score(yte, booster.predict(xgb.DMatrix(Xte))))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(kind: str, args, variant: str = "default") -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--rows", str(args.rows_one),
           "--features", str(args.features), "--parties", str(args.parties),
           "--servers", str(args.servers), "--trees", str(args.trees), "--depth", str(args.depth),
           "--threads", str(args.threads), "--variant", variant]
    env = {**os.environ, "NUMBA_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--parties", type=int, default=3)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--child", choices=["xgboost", "secure"])
    ap.add_argument("--variant", choices=["default", "sampled"], default="default", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rows[0], args.features, args.parties,
                                 args.servers, args.trees, args.depth, args.threads, args.variant)))
        return
    lines = []
    header = ("| rows | xgboost hist (s) | ppxgb secure (s) | ratio | AUC xgboost | AUC secure "
              "| bytes sent | peak RSS xgboost / secure (MB) |")
    print(header)
    lines.append(header)
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    runs = [(rows, "default") for rows in args.rows] + [(args.rows[0], "sampled")] * bool(args.rows)
    for rows, variant in runs:
        args.rows_one = rows
        plain = run_child("xgboost", args, variant)
        secure = run_child("secure", args, variant)
        label = f"{rows:,}" if variant == "default" else \
            f"{rows:,}, subsample 0.8, colsample_bytree 0.8, validation set"
        row = (f"| {label} | {plain['seconds']:.1f} | {secure['seconds']:.1f} | "
               f"{secure['seconds'] / plain['seconds']:.2f}x | {plain['auc']:.4f} | {secure['auc']:.4f} | "
               f"{secure['bytes'] / 1e6:,.0f} MB | {plain['peak_rss_mb']:,.0f} / {secure['peak_rss_mb']:,.0f} |")
        print(row, flush=True)
        lines.append(row)
    if not args.no_write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        text = [
            "# Horizontal training benchmark",
            "",
            f"Command: `python benchmarks/bench_horizontal.py --rows {' '.join(map(str, args.rows))}`",
            f"Machine: {machine}; {args.threads} threads for both xgboost and the parties' kernels.",
            f"Setup: make_classification, {args.features} features, {args.parties} parties, "
            f"{args.servers} servers, {args.trees} trees of depth {args.depth}, binary:logistic, "
            "in-memory transport (every message is still encoded to bytes and counted).",
            f"Measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            *lines,
            "",
        ]
        (HERE / "RESULTS_horizontal.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
