"""Oblivious training against plaintext xgboost: seconds and bytes per depth-4 tree.

    python benchmarks/bench_oblivious.py --rows 25000 --features 30 --trees 2
    python benchmarks/bench_oblivious.py --rows 2500 --features 300 --trees 1

binary:logistic, max_bin 128, depth 4, rows split evenly over --parties parties
(horizontal).  Every role is a thread of this process over the in-memory transport
(two compute servers, the dealer, the parties, the analyst), so "bytes" is what all of
them sent, encoded as on the network.  Setup (bin agreement and the upload of the
shared one-hot matrix) is reported apart from the per-tree figures, which are timed
between the analyst's receipts of consecutive trees.  Plaintext xgboost (hist) runs on
the same data in the same process first.  Prints one markdown row per configuration,
with the process's peak resident memory (every role together) and the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import xgboost as xgb

from ppxgb.training.oblivious import run_oblivious_federation
from ppxgb.transport import InMemoryTransport


def make_data(n: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    logit = X[:, 0] - X[:, 1 % n_features] + 0.5 * X[:, 2 % n_features] * X[:, 3 % n_features]
    y = (logit + rng.normal(size=n) > 0).astype(np.float32)
    return X, y


def run(n: int, n_features: int, trees: int, parties: int, max_bin: int, depth: int) -> dict:
    X, y = make_data(n, n_features)
    params = {"objective": "binary:logistic", "max_depth": depth, "max_bin": max_bin, "eta": 0.3}
    t = time.perf_counter()
    xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y), trees)
    plain = (time.perf_counter() - t) / trees
    marks: list[tuple[str, float, int]] = []
    sent = [0]

    def record(msg):
        sent[0] += msg.size
        if msg.dst == "analyst" and msg.stage == "otree" and msg.src == "server-1" or msg.stage == "obase" \
                and msg.dst == "server-1":
            marks.append((msg.stage, time.perf_counter(), sent[0]))

    edges = np.linspace(0, n, parties + 1).astype(int)
    start = time.perf_counter()
    run_oblivious_federation(params, [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])], trees,
                             transport=InMemoryTransport(recorder=record, default_timeout=3600), timeout=3600)
    total = time.perf_counter() - start
    times = [b[1] - a[1] for a, b in zip(marks[:-1], marks[1:])]
    sizes = [b[2] - a[2] for a, b in zip(marks[:-1], marks[1:])]
    return {"rows": n, "features": n_features, "parties": parties, "setup_s": marks[0][1] - start,
            "setup_bytes": marks[0][2], "tree_s": float(np.mean(times)), "tree_bytes": float(np.mean(sizes)),
            "plain_s": plain, "total_s": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=25_000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--trees", type=int, default=2)
    ap.add_argument("--parties", type=int, default=2)
    ap.add_argument("--max-bin", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    a = ap.parse_args()
    run(300, 3, 1, 2, 16, 2)                       # compiles the kernels (cached afterwards)
    r = run(a.rows, a.features, a.trees, a.parties, a.max_bin, a.depth)
    print(f"# {platform.processor() or platform.machine()}, {a.trees} trees, depth {a.depth}, "
          f"max_bin {a.max_bin}, binary:logistic")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6          # kB on Linux
    print("| rows | features | parties | setup s | setup MB | s per tree | MB per tree | xgboost s per tree "
          "| peak GB | load |")
    print(f"| {r['rows']:,} | {r['features']} | {r['parties']} | {r['setup_s']:.1f} | {r['setup_bytes'] / 1e6:,.0f} "
          f"| {r['tree_s']:.1f} | {r['tree_bytes'] / 1e6:,.0f} | {r['plain_s']:.4f} | {peak:.1f} "
          f"| {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
