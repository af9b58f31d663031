"""Training with each role in its own process: the full mesh against the relay.

Runs `ppxgb federation` (horizontal) and `ppxgb vfederation` (vertical, 2 parties, rows
aligned by the OPRF PSI) on the same data twice: over the direct mesh, and with
`--relay` (every role dials out to one relay process, frames sealed end to end and cut
into 1 MiB gRPC messages).  Prints wall time, bytes and the relay's cost, and checks
that both give the same model file, byte for byte.

    python benchmarks/bench_relay.py --rows 100000 --trees 3
    python benchmarks/bench_relay.py --modes vertical --rows 1000000 --trees 2

Everything runs on this machine's loopback: the relay's cost here is the forwarding
and sealing work on 2 shared cores, not a network's (see bench_network.py for links).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "ppxgb.app.cli"]
PARAMS = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "max_bin": 64}


def make_files(directory: Path, mode: str, rows: int, features: int, seed: int = 0) -> list[str]:
    """The parties' .npz files: 3 hospitals' rows (horizontal) or 2 sites' columns with shared IDs (vertical)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] - 0.3 * X[:, 2] + rng.normal(scale=0.7, size=rows) > 0).astype(np.float64)
    paths = []
    if mode == "horizontal":
        for i, part in enumerate(np.array_split(np.arange(rows), 3)):
            path = directory / f"hospital{i}.npz"
            np.savez(path, X=X[part], y=y[part])
            paths.append(str(path))
    else:
        ids = rng.permutation(rows * 2)[:rows].astype(np.int64)
        half = features // 2
        for i, cols in enumerate((slice(0, half), slice(half, features))):
            order = rng.permutation(rows)               # each site's own row order
            path = directory / f"site{i}.npz"
            extra = {"y": y[order]} if i == 0 else {}
            np.savez(path, X=X[order, cols], ids=ids[order], **extra)
            paths.append(str(path))
    return paths


def run(mode: str, files: list[str], trees: int, relay: bool, workdir: Path, timeout: float) -> dict:
    out, report = workdir / f"{mode}-{'relay' if relay else 'mesh'}.json", workdir / "report.json"
    cmd = CLI + (["federation", "--data", *files, "--label", "y"] if mode == "horizontal" else
                 ["vfederation", "--data", *files, "--id-column", "ids", "--label", "y", "--psi", "oprf"])
    cmd += ["--params", json.dumps(PARAMS), "--rounds", str(trees), "--out", str(out), "--overwrite",
            "--report", str(report), "--timeout", str(timeout), "--progress", "off"] + (["--relay"] if relay else [])
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode} {'relay' if relay else 'mesh'} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(report.read_text())
    return {"seconds": seconds, "bytes": summary["bytes"], "messages": summary["messages"],
            "model": out.read_bytes()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", choices=["horizontal", "vertical"], default=["horizontal", "vertical"])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--trees", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0, help="--timeout of every role (seconds)")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; load average {load:.1f} at the start")
    print(f"params {json.dumps(PARAMS)}, {args.trees} trees, {args.features} features; wall time includes "
          "process start-up, data loading and (vertical) the PSI")
    print("| mode | rows | mesh s | relay s | relay / mesh | bytes | messages | same model |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for mode in args.modes:
        for rows in args.rows:
            with tempfile.TemporaryDirectory(prefix="ppxgb-bench-relay-") as tmp:
                workdir = Path(tmp)
                files = make_files(workdir, mode, rows, args.features)
                mesh = run(mode, files, args.trees, False, workdir, args.timeout)
                relay = run(mode, files, args.trees, True, workdir, args.timeout)
            same = mesh["model"] == relay["model"]
            print(f"| {mode} | {rows:,} | {mesh['seconds']:.1f} | {relay['seconds']:.1f} | "
                  f"{relay['seconds'] / mesh['seconds']:.2f}x | {relay['bytes'] / 1e9:.2f} GB | "
                  f"{relay['messages']:,} | {'yes' if same else 'NO'} |", flush=True)
            if not same or mesh["bytes"] != relay["bytes"]:
                raise SystemExit("the relay changed the model or the traffic: a bug")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
