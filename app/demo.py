"""`ppxgb demo`: the hospital story end to end, with a printed summary and an HTML report.

The stories themselves live in app/stories.py; `--services` runs the same story with
every role a separate process (app/demo_services.py).  The demo is an app on top of the
roles: it uses every role, and no role imports it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .stories import Clock, horizontal_story, inference_story, say, vertical_story


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the hospital story end to end and write an HTML report",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="ppxgb-report.html", help="path of the HTML report (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split and synthetic data")
    p.add_argument("--key-bits", type=int, default=2048, choices=(2048, 3072),
                   help="Paillier modulus of the enrolled user (default: %(default)s)")
    p.add_argument("--queries", type=int, default=100, help="encrypted patient queries to score")
    p.add_argument("--services", action="store_true",
                   help="run the proxy, the scoring server and every party as separate processes on loopback")
    p.add_argument("--dp-results", metavar="JSON",
                   help="add test AUC against epsilon to the report, from this results file of "
                        "benchmarks/bench_dp.py --json (e.g. benchmarks/RESULTS_dp.json)")
    p.set_defaults(func=main)


def print_summary(results: dict[str, Any], report: Path) -> None:
    h = results["horizontal"]
    say("")
    say("Held-out AUC on the patients of all four hospitals")
    say(f"  {'model':<34}{'AUC':>8}")
    for name, value in h["auc"].items():
        label = {"federated": "federated (secure, 4 hospitals)",
                 "centralized": "centralized xgboost (pooled)"}.get(name, name.replace("hospital:", "") + " alone")
        say(f"  {label:<34}{value:>8.4f}")
    say(f"  largest margin gap, federated vs centralized: {h['max_margin_gap_vs_centralized']:.2e}")
    if results.get("vertical"):
        say("")
        say("Vertical model (synthetic MS records), held-out AUC")
        for name, value in results["vertical"]["auc"].items():
            say(f"  {name:<34}{value:>8.4f}")
    inf = results["inference"]
    ok = "match" if inf["max_abs_diff"] <= inf["tolerance"] else "MISMATCH"
    say("")
    say(f"Encrypted inference: {inf['n_queries']} queries, max |encrypted - plaintext| = "
        f"{inf['max_abs_diff']:.2e} ({ok})")
    say("")
    say("Timings")
    for name, seconds in results["timings"].items():
        say(f"  {name:<46}{seconds:>8.2f} s")
    say("")
    say(f"Report written to {report.resolve()}")


def warm_up() -> float:
    """Compile (first run) or load (later runs) the numba kernels before any step is timed,
    so no timing in the summary or the report includes compilation; returns its seconds."""
    import time

    from .warmup_cli import steps

    started = time.perf_counter()
    for _, step in steps():
        step()
    seconds = time.perf_counter() - started
    say(f"Kernels ready in {seconds:.1f} s (compiled on a first run, then loaded from the cache; "
        "not counted in the timings)")
    return seconds


def report_details(booster, X_test) -> dict[str, Any]:
    """What the report lists about the horizontal model: its training settings, the label,
    the feature columns and the federated model's feature importance (total gain)."""
    from .stories import HORIZONTAL_PARAMS, HORIZONTAL_ROUNDS

    return {"settings": {**HORIZONTAL_PARAMS, "rounds": HORIZONTAL_ROUNDS, "compute servers": 2,
                         "hospitals": 4, "held-out share per hospital": 0.3},
            "label": "disease: 1 when the UCI 'num' diagnosis is > 0 (angiographic disease present), else 0",
            "features": [str(c) for c in X_test.columns],
            "importance": {str(k): float(v) for k, v in booster.get_score(importance_type="total_gain").items()}}


def load_dp_results(path: str) -> dict[str, Any]:
    """bench_dp's results document (app/report_dp.py), read before anything runs."""
    import json

    from ppxgb.errors import ParameterError

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError.bad("--dp-results", "a readable JSON file written by bench_dp.py --json",
                                 f"{path} ({exc})") from None
    from .report_dp import cells

    try:
        cells(doc)
    except ParameterError as exc:
        raise ParameterError(f"--dp-results {path}: {exc}") from None
    return doc


def main(args: argparse.Namespace) -> int:
    from .report import write_report  # matplotlib (the `report` extra) only when run

    dp_results = load_dp_results(args.dp_results) if getattr(args, "dp_results", None) else None
    clock = Clock()
    warm = warm_up()
    if args.services:
        from .demo_services import run_services_story

        horizontal, booster, X_test, inference = run_services_story(args, clock)
    else:
        horizontal, booster, X_test = horizontal_story(clock, args.seed)
        inference = None
    # with --services, inference ran as step 2 (next to the federation), so vertical is step 3
    vertical = vertical_story(clock, args.seed, step="[3/3]" if args.services else "[2/3]")
    if inference is None:
        inference = inference_story(clock, booster, X_test, args.queries, args.key_bits)
    horizontal = {**horizontal, **report_details(booster, X_test)}
    results = {
        "horizontal": horizontal,
        "vertical": vertical,
        "inference": inference,
        "timings": clock.timings,
        "meta": {"title": "ppxgb demo: hospitals train together, patients are scored blind",
                 "dataset": "UCI Heart Disease (4 hospitals, CC BY 4.0); synthetic MS-like EHR",
                 "mode": "separate processes on loopback" if args.services else "in-process",
                 "kernel warm-up before timing (not in the timings)": f"{warm:.1f} s",
                 "seed": args.seed},
        "dp": dp_results,
    }
    report = write_report(Path(args.out), results)
    print_summary(results, Path(report))
    failed = inference["max_abs_diff"] > inference["tolerance"]
    return 1 if failed else 0
