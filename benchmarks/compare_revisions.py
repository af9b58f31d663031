"""Secure training time of two checkouts of ppxgb, side by side in one run.

    python benchmarks/compare_revisions.py --base /tmp/old-checkout --bench horizontal --rows 100000

For a refactor that must not slow training down: each checkout runs its own copy of the
benchmark script with its own interpreter (`<checkout>/.venv/bin/python` unless
--python-base / --python-new say otherwise), alternately, --repeats times, so that load
from elsewhere on the machine falls on both alike.  Prints every run and the ratio of
the medians (new / base; below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def secure_seconds(checkout: Path, python: str, bench: str, rows: int, trees: int) -> float:
    """One timed secure training, as the checkout's own benchmark script measures it."""
    script = checkout / "benchmarks" / f"bench_{bench}.py"
    if bench == "horizontal":
        out = subprocess.run([python, str(script), "--child", "secure", "--rows", str(rows), "--trees", str(trees)],
                             check=True, capture_output=True, text=True, cwd=checkout).stdout
        return float(json.loads(out.strip().splitlines()[-1])["seconds"])
    out = subprocess.run([python, str(script), "--rows", str(rows), "--trees", str(trees), "--psi-ids", "0",
                          "--out", "/dev/null"], check=True, capture_output=True, text=True, cwd=checkout).stdout
    row = next(line for line in out.splitlines() if line.startswith(f"| {rows:,} |"))
    return float(row.split("|")[4])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the checkout to compare against")
    ap.add_argument("--new", type=Path, default=HERE.parent, help="this checkout by default")
    ap.add_argument("--python-base")
    ap.add_argument("--python-new")
    ap.add_argument("--bench", choices=["horizontal", "vertical"], default="horizontal")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    pythons = {"base": args.python_base or str(args.base / ".venv" / "bin" / "python"),
               "new": args.python_new or str(args.new / ".venv" / "bin" / "python")}
    for name, py in pythons.items():
        if not Path(py).exists():
            ap.error(f"--python-{name}: {py} does not exist (make a venv in that checkout first)")
    times: dict[str, list[float]] = {"base": [], "new": []}
    for i in range(args.repeats):
        for name, checkout in (("base", args.base), ("new", args.new)):
            s = secure_seconds(checkout, pythons[name], args.bench, args.rows, args.trees)
            times[name].append(s)
            print(f"run {i + 1}/{args.repeats} {name}: {s:.2f} s", flush=True)
    base, new = statistics.median(times["base"]), statistics.median(times["new"])
    print(f"{args.bench}, {args.rows:,} rows, {args.trees} trees: median base {base:.2f} s, "
          f"new {new:.2f} s, ratio new/base {new / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
