"""Training and PSI under emulated network links: bandwidth and latency on every link.

    python benchmarks/bench_network.py                       # the table in RESULTS_network.md
    python benchmarks/bench_network.py --quick --no-write    # small sizes, under a minute

Every role runs as a thread of this process over ppxgb/shaping.py's ShapedTransport:
each direction of each pair of roles is its own link, a message occupies its link for
size * 8 / bandwidth seconds behind the link's previous message and arrives one latency
later, and receivers really wait for it, so computation and communication overlap as on
a network.  (This machine cannot shape loopback traffic: tc has no netem.)  Each
workload runs unshaped and at every --links condition:

- horizontal: make_classification rows (bench_horizontal.py's data) split over
  --h-parties hospitals, 2 servers;
- vertical: bench_vertical.py's columns split over --v-parties institutions (label
  holder first), dealer as the helper;
- PSI: the OPRF PSI between two parties with --psi-ids IDs each (bench_psi.py's sets).

Per tree: the wall time of the boosting loop over the trees (setup, everything before
the first tree, is reported apart), and the bytes, messages and rounds of that loop.
Rounds are counted: the longest chain of messages each sent after its sender received
the one before (ShapedTransport.rounds).  They are also measured: a row's per-tree time
minus that at the lowest latency of the same bandwidth, over the latency difference
(so 1gbit,100ms against 1gbit,1ms).  The estimate is the unshaped time + rounds x
latency + the busiest link's bytes x 8 / bandwidth (no overlap assumed).  The ratio is
the whole secure training (setup included) over plain xgboost hist (DMatrix
construction included) on the pooled rows, same trees, the best of nthread 1 and the
secure run's nthread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

import bench_horizontal
import bench_psi
import bench_vertical
from ppxgb.shaping import ShapedTransport, parse_link
from ppxgb.training.horizontal import run_federation
from ppxgb.training.vertical import psi, run_vertical_federation

HERE = Path(__file__).resolve().parent
LINKS = ["1gbit,1ms", "1gbit,10ms", "100mbit,50ms", "1gbit,100ms"]


class Phases:
    """A progress reporter that snapshots the transport's counters when boosting starts
    (setup done) and after each round, so the loop's cost is apart from setup's."""

    def __init__(self, transport: ShapedTransport):
        self.transport = transport
        self.first = self.last = None
        self.trees = 0

    def snapshot(self) -> dict:
        t = self.transport
        return {"time": time.perf_counter(), "bytes": t.total_bytes, "messages": t.total_messages,
                "rounds": t.rounds, "links": t.link_bytes()}

    def start(self, total: int) -> None:
        self.first = self.snapshot()

    def update(self, rnd: int, info: dict) -> None:
        self.last, self.trees = self.snapshot(), rnd + 1

    def close(self) -> None:
        pass


def per_tree(phases: Phases, began: float, ended: float) -> dict:
    """Setup's cost (until boosting starts) and the boosting loop's cost per tree."""
    a, b, n = phases.first, phases.last, phases.trees
    busiest = max(b["links"][p] - a["links"].get(p, 0) for p in b["links"])
    return {"wall": ended - began, "setup": a["time"] - began, "setup_bytes": a["bytes"],
            "setup_rounds": a["rounds"], "tree_s": (b["time"] - a["time"]) / n,
            "bytes": (b["bytes"] - a["bytes"]) / n, "busiest": busiest / n,
            "messages": (b["messages"] - a["messages"]) / n, "rounds": (b["rounds"] - a["rounds"]) / n}


def xgboost_seconds(X, y, params: dict, trees: int) -> float:
    """Plain xgboost hist on the pooled rows, DMatrix included: the best of three runs
    with nthread 1 and three with the secure run's nthread (on a machine with other
    jobs, xgboost's OpenMP threads can be many times slower than one thread)."""
    times = []
    for nthread in sorted({1, params["nthread"]}):
        for _ in range(3):
            start = time.perf_counter()
            xgb.train({**params, "tree_method": "hist", "nthread": nthread},
                      xgb.DMatrix(X, label=y, nthread=nthread), trees)
            times.append(time.perf_counter() - start)
    return min(times)


def training_params(args) -> dict:
    return {"objective": "binary:logistic", "max_depth": args.depth, "eta": 0.3, "nthread": args.nthread}


def horizontal(args):
    """The pooled rows and a run of the federation over a given link."""
    X, y, _, _ = bench_horizontal.make_data(args.h_rows, args.features)
    bounds = np.linspace(0, args.h_rows, args.h_parties + 1).astype(int)
    parties = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def run(transport, phases):
        run_federation(training_params(args), parties, args.trees, 2, transport=transport, progress=phases,
                       timeout=3600)
    return X, y, run


def vertical(args):
    X, y = bench_vertical.make_data(args.v_rows, args.features)
    edges = np.linspace(0, args.features, args.v_parties + 1).astype(int)
    blocks = [X[:, a:b] for a, b in zip(edges[:-1], edges[1:])]

    def run(transport, phases):
        run_vertical_federation(training_params(args), blocks, y, label_party=0, num_boost_round=args.trees,
                                transport=transport, progress=phases, timeout=3600)
    return X, y, run


def training_series(workload, links, args) -> list[dict]:
    X, y, run = workload(args)
    plain = xgboost_seconds(X, y, training_params(args), args.trees)
    rows = []
    for link in links:
        transport = ShapedTransport(link, default_timeout=3600)
        phases = Phases(transport)
        began = time.perf_counter()
        run(transport, phases)
        out = per_tree(phases, began, time.perf_counter())
        rows.append({**out, "ratio": out["wall"] / plain, "xgboost": plain, "link": link})
        print(f"  {workload.__name__} at {link or 'unshaped'}: {out['wall']:.1f} s", flush=True)
    return rows


def run_psi(link, args) -> dict:
    ids_a, ids_b, expected = bench_psi.id_sets(args.psi_ids)
    transport = ShapedTransport(link, default_timeout=3600)
    began = time.perf_counter()
    rows_a, _ = psi.run_psi_federation(transport, ["party-0", "party-1"], "party-0", [ids_a, ids_b],
                                       timeout=3600, protocol="oprf")
    wall = time.perf_counter() - began
    if len(rows_a) != len(expected):
        raise SystemExit(f"PSI found {len(rows_a):,} common IDs, expected {len(expected):,}")
    busiest = max(transport.link_bytes().values())
    return {"wall": wall, "bytes": transport.total_bytes, "busiest": busiest,
            "messages": transport.total_messages, "rounds": transport.rounds}


def warm_up(args) -> None:
    """Untimed small runs: numba compiles ppxgb's kernels on the first run (then caches)."""
    bench_vertical.warm_up(args.features, args.v_parties, args.nthread)
    X, y, _, _ = bench_horizontal.make_data(2_000, args.features)
    run_federation({"objective": "binary:logistic", "max_depth": 2}, [(X, y)], 1, 2)
    psi.run_psi_federation(ShapedTransport(None), ["party-0", "party-1"], "party-0",
                           list(bench_psi.id_sets(1_000)[:2]), protocol="oprf")


def measured_rounds(rows: list[dict], key: str) -> list[float | None]:
    """Beside each shaped row: (its time - the time at the lowest latency with the same
    bandwidth) / the latency difference, when that difference is at least 50 ms (below
    that, a few rounds' latency is within the timing noise of a shared machine)."""
    out = []
    for row in rows:
        base = min((r for r in rows if r["link"] is not None and row["link"] is not None
                    and r["link"].bandwidth == row["link"].bandwidth), key=lambda r: r["link"].latency, default=None)
        gap = 0.0 if base is None else row["link"].latency - base["link"].latency
        out.append((row[key] - base[key]) / gap if gap >= 0.05 else None)
    return out


def predicted(unshaped: dict, row: dict, key: str) -> float:
    """Unshaped time + rounds x latency + the busiest link's bytes at the bandwidth."""
    link = row["link"]
    return unshaped[key] + row["rounds"] * link.latency + row["busiest"] * 8 / link.bandwidth


def fmt_training(name: str, r: dict, unshaped: dict, measured: float | None) -> str:
    link = "in-process, unshaped" if r["link"] is None else str(r["link"])
    model = "-" if r["link"] is None else f"{predicted(unshaped, r, 'tree_s'):.2f}"
    meas = "-" if measured is None else f"{measured:.1f}"
    return (f"| {name} | {link} | {r['wall']:.1f} | {r['ratio']:.1f}x | {r['setup']:.1f} | "
            f"{r['setup_bytes'] / 1e6:.1f} | {r['setup_rounds']} | {r['tree_s']:.2f} | {model} | "
            f"{r['bytes'] / 1e6:.2f} | {r['busiest'] / 1e6:.2f} | {r['messages']:.0f} | {r['rounds']:.1f} | {meas} |")


def fmt_psi(r: dict, unshaped: dict, measured: float | None) -> str:
    link = "in-process, unshaped" if r["link"] is None else str(r["link"])
    model = "-" if r["link"] is None else f"{predicted(unshaped, r, 'wall'):.1f}"
    meas = "-" if measured is None else f"{measured:.1f}"
    return (f"| {link} | {r['wall']:.1f} | {model} | {r['bytes'] / 1e6:.1f} | {r['busiest'] / 1e6:.1f} | "
            f"{r['messages']} | {r['rounds']} | {meas} |")


TRAIN_HEAD = ["| training | link | wall (s) | ratio to xgboost | setup (s) | setup MB | setup rounds | per tree (s) "
              "| per tree estimate (s) | MB per tree | MB per tree, busiest link | messages per tree "
              "| rounds per tree (counted) | rounds per tree (measured) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
PSI_HEAD = ["| link | wall (s) | estimate (s) | MB | MB, busiest link | messages | rounds (counted) "
            "| rounds (measured) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]


NOTES = [
    "How to read the tables. Every role is a thread of one process over ppxgb/shaping.py's "
    "ShapedTransport: each direction of each pair of roles is its own link (full duplex, links "
    "independent, so a role's inbound links do not share one network card); a message occupies its "
    "link for its bytes x 8 / bandwidth behind the link's previous message and arrives one latency "
    "later, and its receiver really waits for it. Setup is everything before the first tree "
    "(horizontal: bin agreement; vertical: the base score), the per-tree columns are the boosting "
    "loop divided by the trees. Rounds (counted) is the longest chain of messages in which each was "
    "sent after its sender had received the one before; rounds (measured) is the per-tree time at "
    "1gbit,100ms minus that at 1gbit,1ms, over 99 ms. The estimate is unshaped time + rounds x "
    "latency + the busiest link's bytes x 8 / bandwidth, assuming no overlap; it runs high when "
    "a big transfer overlaps other rounds (vertical) and low when a round's critical path crosses "
    "several links' transfers (horizontal).",
    "",
    "Another link: per tree, about the unshaped time + rounds per tree x one-way latency + MB per "
    "tree on the busiest link x 8 / bandwidth (MB per tree over all links x 8 / bandwidth if "
    "every role shares one uplink); the whole run is setup + trees x that. Vertical bytes grow "
    "with rows (the permuted vectors are per row); horizontal bytes do not depend on rows (one "
    "histogram of features x bins per built node). Rounds per tree grow with depth, not with rows.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", nargs="+", default=LINKS, help="link specs, e.g. 1gbit,1ms 100mbit,50ms")
    ap.add_argument("--h-rows", type=int, default=100_000)
    ap.add_argument("--h-parties", type=int, default=3)
    ap.add_argument("--v-rows", type=int, default=50_000)
    ap.add_argument("--v-parties", type=int, default=2)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--trees", type=int, default=20)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--nthread", type=int, default=2)
    ap.add_argument("--psi-ids", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="3,000 / 2,000 rows, 2 trees, 10,000 IDs")
    ap.add_argument("--workloads", nargs="+", choices=("horizontal", "vertical", "psi"),
                    default=["horizontal", "vertical", "psi"])
    ap.add_argument("--out", default=str(HERE / "RESULTS_network.md"))
    ap.add_argument("--no-write", action="store_true", help="print only; do not write --out")
    args = ap.parse_args(argv)
    if args.quick:
        args.h_rows, args.v_rows, args.trees, args.psi_ids = 3_000, 2_000, 2, 10_000
    links = [None] + [parse_link(s) for s in args.links]
    load0 = os.getloadavg()[0]
    info = bench_vertical.machine().split(";")[0]
    print(f"{info}; load average {load0:.2f} at the start", flush=True)
    warm_up(args)
    lines, plain = list(TRAIN_HEAD), []
    for workload in (w for w in (horizontal, vertical) if w.__name__ in args.workloads):
        rows = training_series(workload, links, args)
        lines += [fmt_training(workload.__name__, r, rows[0], m)
                  for r, m in zip(rows, measured_rounds(rows, "tree_s"))]
        plain.append(f"{rows[0]['xgboost']:.2f} s ({workload.__name__})")
    psi_rows = []
    for link in links if "psi" in args.workloads else []:
        psi_rows.append({**run_psi(link, args), "link": link})
        print(f"  PSI at {link or 'unshaped'}: {psi_rows[-1]['wall']:.1f} s", flush=True)
    psi_lines = [] if not psi_rows else PSI_HEAD + [fmt_psi(r, psi_rows[0], m) for r, m in zip(psi_rows, measured_rounds(psi_rows, "wall"))]
    load1 = os.getloadavg()[0]
    print("\n".join((lines if plain else []) + [""] + psi_lines))
    cmd = "python benchmarks/bench_network.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.no_write:
        text = ["# Training and PSI under emulated network links", "",
                f"Command: `{cmd.strip()}`", "",
                f"Machine: {info}; load average {load0:.2f} at the start and {load1:.2f} at the end"
                + (" (the machine was shared with other jobs: the unshaped times and xgboost's are the "
                   "most affected)" if max(load0, load1) > 1.5 else "") + ". "
                f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
                f"Horizontal: {args.h_rows:,} rows x {args.features} features (make_classification) over "
                f"{args.h_parties} hospitals, 2 servers. Vertical: {args.v_rows:,} rows x {args.features} "
                f"features over {args.v_parties} institutions (label holder first), dealer. Both "
                f"binary:logistic, {args.trees} trees of depth {args.depth}, eta 0.3, max_bin 256, nthread "
                f"{args.nthread}. PSI: the OPRF PSI, {args.psi_ids:,} IDs per side, half common.", "",
                *(lines + ["", f"Plain xgboost hist on the pooled rows: {' and '.join(plain)}.", ""]
                  if plain else []), *psi_lines, "", *NOTES, ""]
        Path(args.out).write_text("\n".join(text))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
