"""Vertical secure training against plaintext xgboost on the joined columns, in one run.

    python benchmarks/bench_vertical.py --rows 100000 --trees 100 --depth 6
    python benchmarks/bench_vertical.py --rows 100000 1000000 --psi-ids 1000000
    python benchmarks/bench_vertical.py --rows --psi-ids 100000 1000000 --out /tmp/psi.md   # PSI only

For each row count: 30 features split over 3 parties (the label holder first),
binary:logistic, depth 6.  Plaintext xgboost (hist, same nthread) is timed on the
joined data in the same process right before the secure run, so both see the same
machine load; an untimed tiny run of both comes first (numba compiles ppxgb's kernels
on the first run after installing, then caches them).  Bytes are everything every role
sent over the in-memory transport (encoded exactly as on the network).  PSI throughput: two parties with --psi-ids IDs
each (half of them common), Diffie-Hellman PSI in edwards25519's prime-order group.  Writes
benchmarks/RESULTS_vertical.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from ppxgb.transport import InMemoryTransport
from ppxgb.training.vertical import psi
from ppxgb.training.vertical import run_vertical_federation


def make_data(n: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    Z = np.nan_to_num(X)
    logit = Z[:, 0] - Z[:, 11] + 0.5 * Z[:, 22] * Z[:, 3] + 0.3 * Z[:, 15] ** 2
    y = (logit + rng.logistic(size=n) > 0).astype(np.float32)
    return X, y


def warm_up(n_features: int, n_parties: int, nthread: int) -> None:
    """A tiny run of both, untimed: the first run after installing compiles ppxgb's numba
    kernels (about half a minute, then cached on disk); that is not what is measured."""
    X, y = make_data(2_000, n_features, seed=2)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": nthread}
    xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y, nthread=nthread), 2)
    edges = np.linspace(0, n_features, n_parties + 1).astype(int)
    run_vertical_federation(params, [X[:, a:b] for a, b in zip(edges[:-1], edges[1:])], y, label_party=0,
                            num_boost_round=2, transport=InMemoryTransport(default_timeout=600), timeout=600)


def bench_training(n: int, n_features: int, n_parties: int, trees: int, depth: int, nthread: int) -> dict:
    X, y = make_data(n, n_features)
    Xte, yte = make_data(20_000, n_features, seed=1)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": nthread}
    t = time.perf_counter()
    ref = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y, nthread=nthread), trees)
    t_xgb = time.perf_counter() - t
    edges = np.linspace(0, n_features, n_parties + 1).astype(int)
    blocks = [X[:, a:b] for a, b in zip(edges[:-1], edges[1:])]
    transport = InMemoryTransport(default_timeout=3600)
    t = time.perf_counter()
    model, _ = run_vertical_federation(params, blocks, y, label_party=0, num_boost_round=trees,
                                       transport=transport, timeout=3600)
    t_sec = time.perf_counter() - t
    booster = model.to_booster()
    auc_sec = roc_auc_score(yte, booster.predict(xgb.DMatrix(Xte)))
    auc_ref = roc_auc_score(yte, ref.predict(xgb.DMatrix(Xte)))
    return {"rows": n, "parties": n_parties, "features": n_features, "trees": trees, "depth": depth,
            "secure_s": t_sec, "xgb_s": t_xgb, "ratio": t_sec / t_xgb, "bytes": transport.total_bytes,
            "auc_secure": auc_sec, "auc_xgb": auc_ref}


def bench_psi(n_ids: int, workers: int) -> dict:
    rng = np.random.default_rng(2)
    common = rng.choice(10 * n_ids, size=n_ids // 2, replace=False)
    rest = np.setdiff1d(np.arange(10 * n_ids), common)
    extra = rng.choice(rest, size=2 * (n_ids - n_ids // 2), replace=False)
    a = np.concatenate([common, extra[: n_ids - n_ids // 2]])
    b = np.concatenate([common, extra[n_ids - n_ids // 2:]])
    rng.shuffle(a)
    rng.shuffle(b)
    ids_a = [f"P{x:09d}" for x in a]
    ids_b = [f"P{x:09d}" for x in b]
    transport = InMemoryTransport(default_timeout=7200)
    t = time.perf_counter()
    orders = psi.run_psi_federation(transport, ["party-0", "party-1"], "party-0", [ids_a, ids_b],
                                    timeout=7200, workers=workers)
    secs = time.perf_counter() - t
    if len(orders[0]) != n_ids // 2:
        raise SystemExit(f"PSI found {len(orders[0])} common IDs, expected {n_ids // 2}")
    return {"ids": n_ids, "seconds": secs, "ids_per_s": n_ids / secs, "bytes": transport.total_bytes,
            "workers": workers}


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, xgboost {xgb.__version__}; "
            f"load average {load:.1f} at start (the machine was shared with other jobs)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="*", default=[100_000])
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--parties", type=int, default=3)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--nthread", type=int, default=2)
    ap.add_argument("--psi-ids", type=int, nargs="*", default=[1_000_000],
                    help="IDs per side, one PSI run each; none or 0 to skip the PSI benchmark")
    ap.add_argument("--psi-workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_vertical.md")))
    args = ap.parse_args(argv)
    info = machine()
    print(info, flush=True)
    rows = []
    header = "| rows | parties | trees x depth | secure wall (s) | xgboost wall (s) | ratio | bytes sent | test AUC secure / xgboost |"
    print(header)
    if args.rows:
        warm_up(args.features, args.parties, args.nthread)
    for n in args.rows:
        r = bench_training(n, args.features, args.parties, args.trees, args.depth, args.nthread)
        line = (f"| {r['rows']:,} | {r['parties']} | {r['trees']} x {r['depth']} | {r['secure_s']:.1f} | "
                f"{r['xgb_s']:.1f} | {r['ratio']:.1f}x | {r['bytes'] / 1e9:.2f} GB | "
                f"{r['auc_secure']:.4f} / {r['auc_xgb']:.4f} |")
        print(line, flush=True)
        rows.append(line)
    psi_lines = []
    for n_ids in filter(None, args.psi_ids):
        p = bench_psi(n_ids, args.psi_workers)
        psi_lines.append(f"| {p['ids']:,} per side | {p['seconds']:.1f} | {p['ids_per_s']:,.0f} | "
                         f"{p['bytes'] / 1e6:.0f} MB | {p['workers']} |")
        print("PSI:", psi_lines[-1], flush=True)
    cmd = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    text = ["# Vertical secure training: measurements", "",
            f"Machine: {info}.", "", f"Command: `{cmd}`", "",
            f"{args.features} features over {args.parties} parties (label holder first), binary:logistic, "
            f"eta 0.3, max_bin 256, nthread {args.nthread} for xgboost; 2% NaNs. Both timed in the same run, "
            "after an untimed warm-up run of both.",
            "", header, "|---|---|---|---|---|---|---|---|", *rows, "",
            "xgboost: `tree_method=hist`, timed including DMatrix construction, right before the secure run. "
            "Secure: every role (label holder, feature holders, dealer) a thread of this process over the "
            "in-memory transport, every message encoded to bytes exactly as on the network; bytes are all "
            "messages of all roles. Test AUC is on 20,000 fresh rows; with continuous features the cuts "
            "are ppxgb's own quantiles rather than xgboost's sketch, so the models differ slightly. "
            "Timings on a shared machine vary between runs (see docs/vertical.md for the spread).", ""]
    if psi_lines:
        text += ["PSI (Diffie-Hellman in edwards25519's prime-order group through libsodium, two parties, "
                 "half the IDs common):", "",
                 "| IDs | wall (s) | IDs per second per side | bytes | worker processes per party |",
                 "|---|---|---|---|---|", *psi_lines, ""]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
