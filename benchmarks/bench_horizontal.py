"""Horizontal secure training against plaintext xgboost hist, side by side in one run.

    python benchmarks/bench_horizontal.py                 # 100,000 and 1,000,000 rows
    python benchmarks/bench_horizontal.py --rows 100000   # one size

Data: sklearn make_classification, 30 features, split over 3 parties (equal thirds);
2 compute servers; 100 trees of depth 6; binary:logistic. Each measurement runs in a
fresh subprocess so that its peak memory (max RSS) is its own. xgboost gets the same
thread count as the parties' kernels, and its time includes building the DMatrix
(quantile sketch), as the secure time includes agreeing on the bins.
Results are printed as a table and written to benchmarks/RESULTS_horizontal.md.
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


def measure(kind: str, rows: int, features: int, parties: int, servers: int, trees: int,
            depth: int, threads: int) -> dict:
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import numpy as np
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    X, y, Xte, yte = make_data(rows, features)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3}
    out = {"kind": kind, "rows": rows}
    if kind == "xgboost":
        start = time.perf_counter()
        d = xgb.DMatrix(X, label=y, nthread=threads)
        booster = xgb.train({**params, "tree_method": "hist", "nthread": threads}, d, trees)
        out["seconds"] = time.perf_counter() - start
        out["bytes"] = 0
    else:
        from ppxgb.training.horizontal import run_federation

        bounds = np.linspace(0, rows, parties + 1).astype(int)
        split = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        # compile the kernels outside the timed region (numba caches them on disk anyway)
        run_federation(params, [(X[:2000], y[:2000])], 1, servers)
        start = time.perf_counter()
        model, transport = run_federation({**params, "nthread": threads}, split, trees, servers)
        out["seconds"] = time.perf_counter() - start
        out["bytes"] = transport.total_bytes
        out["messages"] = transport.total_messages
        booster = model.to_booster()
    out["auc"] = float(roc_auc_score(yte, booster.predict(xgb.DMatrix(Xte))))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--rows", str(args.rows_one),
           "--features", str(args.features), "--parties", str(args.parties),
           "--servers", str(args.servers), "--trees", str(args.trees), "--depth", str(args.depth),
           "--threads", str(args.threads)]
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
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rows[0], args.features, args.parties,
                                 args.servers, args.trees, args.depth, args.threads)))
        return
    lines = []
    header = (f"| rows | xgboost hist (s) | ppxgb secure (s) | ratio | AUC xgboost | AUC secure "
              f"| bytes sent | peak RSS xgboost / secure (MB) |")
    print(header)
    lines.append(header)
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        args.rows_one = rows
        plain = run_child("xgboost", args)
        secure = run_child("secure", args)
        row = (f"| {rows:,} | {plain['seconds']:.1f} | {secure['seconds']:.1f} | "
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
