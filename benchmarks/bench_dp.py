"""Utility of differentially private training: test AUC against epsilon.

    python benchmarks/bench_dp.py                          # the full grid (minutes on 2 cores)
    python benchmarks/bench_dp.py --setting random --modes horizontal --out /tmp/dp.md
    python benchmarks/bench_dp.py --seeds 2 --datasets classification heart --out /tmp/dp.md
    python benchmarks/bench_dp.py --setting random --modes vertical --json benchmarks/RESULTS_dp.json

For each dataset, mode (horizontal: rows split over 2 parties, 2 compute servers;
vertical: columns split over 2 parties, the label holder first), epsilon in
{0.1, 0.5, 1, 2, 4, 8, no DP} (delta 1e-5) and seed: a held-out 30% test split
(stratified, by seed), secure training on the other 70%, test AUC of the model.  The
table gives mean and standard deviation over the seeds.  Datasets:

    classification  sklearn make_classification, 50,000 rows x 30 features (--rows)
    ms              datasets/synthetic_ms.py's MS-like generator, 50,000 patients (--rows)
    heart           the UCI heart-disease hospitals, 920 patients (horizontal: each
                    hospital's training rows are one party, 4 parties)

The no-DP column always uses PARAMS and ROUNDS.  The DP columns use one of the
SETTINGS (--setting; each DP-friendly, since every release costs budget, and tuned at
epsilon = 1 on a validation split of the training rows of make_classification, never
on the test split):

    histogram   PARAMS, ROUNDS: split search on noisy G/H histograms of all features
    colsample   split search, colsample_bytree 0.2 (a release carries the tree's 6 of
                30 features: sensitivity sqrt(7) instead of sqrt(31)), depth 2, eta 1;
                vertical: the same parameters, without the smaller sensitivity
    random      dp_split="random": splits drawn from the seed, one release of the
                leaves' G/H totals per tree, depth 3, 100 rounds, eta 0.3 (vertical:
                the label holder releases them, with the intercept)
    select      random, after one more release that keeps the 10 features of largest
                noisy root split gain (dp_select_features 10); depth 4, max_bin 16,
                200 rounds, eta 0.2

--json PATH merges every cell measured (its per-seed AUCs, mean and sd, the setting
and the command) into a machine-readable file, created if absent: a cell replaces the
one of the same dataset, rows, mode, setting and epsilon, others are kept.
benchmarks/RESULTS_dp.json is the one beside RESULTS_dp.md; `ppxgb demo --dp-results`
draws AUC against epsilon from it in the report (app/report.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from ppxgb.datasets.heart import load_heart_disease
from ppxgb.datasets.synthetic_ms import MS_ID, MS_LABEL, make_ms_ehr
from ppxgb.training.horizontal import run_federation
from ppxgb.training.vertical import run_vertical_federation

EPSILONS = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, None)
PARAMS = {"objective": "binary:logistic", "max_depth": 4, "max_bin": 8, "eta": 0.5,
          "lambda": 1.0, "min_child_weight": 1.0, "verbosity": 0}
ROUNDS = 10
SCHEMA = "ppxgb-dp-auc/1"
SETTINGS = {
    "histogram": ({}, ROUNDS),
    "colsample": ({"colsample_bytree": 0.2, "max_depth": 2, "eta": 1.0}, ROUNDS),
    "random": ({"dp_split": "random", "max_depth": 3, "eta": 0.3}, 100),
    "select": ({"dp_split": "random", "dp_select_features": 10, "max_depth": 4, "max_bin": 16, "eta": 0.2}, 200),
}


def load(name: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """X, y and the party of each row for horizontal training (None: two halves)."""
    if name == "classification":
        X, y = make_classification(rows, 30, n_informative=10, random_state=seed)
        return X.astype(np.float32), y.astype(np.float32), None
    if name == "ms":
        frame = make_ms_ehr(rows, seed=seed)
        X = frame.drop(columns=[MS_ID, MS_LABEL]).to_numpy(dtype=np.float32)
        return X, frame[MS_LABEL].to_numpy(dtype=np.float32), None
    if name == "heart":
        parts = list(load_heart_disease().values())
        X = np.vstack([x.to_numpy(dtype=np.float32) for x, _ in parts])
        hospital = np.concatenate([np.full(len(y), i) for i, (_, y) in enumerate(parts)])
        return X, np.concatenate([y for _, y in parts]).astype(np.float32), hospital
    raise SystemExit(f"--datasets: unknown {name!r}")


def run_one(X, y, groups, mode: str, eps: float | None, seed: int, setting: str = "histogram") -> float:
    groups = np.zeros(len(y), int) if groups is None else groups
    Xtr, Xte, ytr, yte, gtr, _ = train_test_split(X, y, groups, test_size=0.3, stratify=y, random_state=seed)
    extra, rounds = SETTINGS[setting] if eps else ({}, ROUNDS)
    params = {**PARAMS, "seed": seed, **extra, **({"dp_epsilon": eps, "dp_delta": 1e-5} if eps else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "horizontal":
            if gtr.max() == 0:                              # two halves
                gtr = (np.arange(len(ytr)) >= len(ytr) // 2).astype(int)
            parties = [(Xtr[gtr == g], ytr[gtr == g]) for g in np.unique(gtr)]
            model, _ = run_federation(params, parties, rounds, 2)
        else:
            cut = X.shape[1] // 2
            model, _ = run_vertical_federation(params, [Xtr[:, :cut], Xtr[:, cut:]], ytr, label_party=0,
                                               num_boost_round=rounds)
    return float(roc_auc_score(yte, model.predict(Xte)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["classification", "ms", "heart"])
    ap.add_argument("--modes", nargs="+", default=["horizontal", "vertical"])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epsilons", nargs="+", type=float, default=None,
                    help="epsilons to run (0 for no DP); default 0.1 0.5 1 2 4 8 and no DP")
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="histogram",
                    help="the DP columns' parameters (module docstring)")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    ap.add_argument("--json", type=Path, help="merge the measured cells into this JSON file (module docstring)")
    args = ap.parse_args(argv)
    eps_list = EPSILONS if args.epsilons is None else tuple(e or None for e in args.epsilons)
    started = time.monotonic()
    measured: list[dict] = []
    lines = ["| dataset | mode | " + " | ".join("no DP" if e is None else f"eps={e:g}" for e in eps_list) + " |",
             "|---|---|" + "---|" * len(eps_list)]
    for name in args.datasets:
        for mode in args.modes:
            cells = []
            for eps in eps_list:
                aucs = [run_one(*load(name, args.rows, s), mode, eps, s, args.setting) for s in range(args.seeds)]
                cells.append(f"{np.mean(aucs):.3f} ± {np.std(aucs):.3f}")
                measured.append({"dataset": name, "rows": 920 if name == "heart" else args.rows, "mode": mode,
                                 "setting": args.setting, "epsilon": eps, "seeds": args.seeds,
                                 "mean": round(float(np.mean(aucs)), 4), "sd": round(float(np.std(aucs)), 4),
                                 "aucs": [round(a, 4) for a in aucs]})
                print(f"{name} {mode} eps={eps}: {cells[-1]} ({time.monotonic() - started:.0f}s)",
                      file=sys.stderr, flush=True)
            rows = "920" if name == "heart" else f"{args.rows:,}"
            lines.append(f"| {name} ({rows}) | {mode} | " + " | ".join(cells) + " |")
    extra, rounds = SETTINGS[args.setting]
    head = (f"Test AUC (30% held out), mean ± sd over {args.seeds} seeds; binary:logistic, max_bin "
            f"{PARAMS['max_bin']}, delta 1e-5; no DP: {ROUNDS} rounds, max_depth {PARAMS['max_depth']}, "
            f"eta {PARAMS['eta']}; DP (setting {args.setting!r}): {rounds} rounds, "
            f"{ {**PARAMS, **extra}['max_depth']} max_depth, eta { {**PARAMS, **extra}['eta']}"
            + "".join(f", {k} {v}" for k, v in extra.items() if k not in ("max_depth", "eta"))
            + f"; {os.cpu_count()} cores, {platform.python_version()}, {time.monotonic() - started:.0f}s")
    table = head + "\n\n" + "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)
    if args.json:
        command = "python benchmarks/bench_dp.py " + " ".join(argv if argv is not None else sys.argv[1:])
        merge_json(args.json, measured, command)
    return 0


def merge_json(path: Path, cells: list[dict], command: str) -> None:
    """Merge measured cells into the results file (schema in the module docstring)."""
    doc = json.loads(path.read_text()) if path.exists() else {"schema": SCHEMA, "results": []}
    if doc.get("schema") != SCHEMA:
        raise SystemExit(f"--json: {path} is not a {SCHEMA} file")
    day = datetime.date.today().isoformat()
    key = ("dataset", "rows", "mode", "setting", "epsilon")
    new = {tuple(c[k] for k in key): {**c, "command": command, "measured": day} for c in cells}
    doc["results"] = [c for c in doc["results"] if tuple(c[k] for k in key) not in new] + list(new.values())
    path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
