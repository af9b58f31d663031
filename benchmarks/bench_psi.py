"""PSI throughput: the vertical training's private set intersection on patient IDs.

    python benchmarks/bench_psi.py                      # both protocols: 10k, 100k, 1M if it fits
    python benchmarks/bench_psi.py --quick              # 10k per side only
    python benchmarks/bench_psi.py --protocols oprf --ids 1000000
    python benchmarks/bench_psi.py --write benchmarks/RESULTS_vertical.md

Two parties (the label holder and one feature holder) with the same number of IDs each,
half of them common, run `training/vertical/psi.py` over the in-memory transport, every
message encoded as on the network, with each protocol: "oprf" (the OPRF PSI from OT
extension with cuckoo hashing, psi_oprf.py) and "ecdh" (Diffie-Hellman PSI in
edwards25519's prime-order group through libsodium, with --workers processes per
party).  Each row reports wall time, IDs per second per side
(IDs of one side over the wall time: both sides work at once), the bytes both parties
sent, the peak growth of resident memory (this process and its worker processes, both
parties together, sampled every 20 ms), and that the intersection is right: both parties' aligned rows name the same IDs,
in the same order, and exactly the IDs numpy's intersect1d finds.

10,000 and 100,000 per side always run; a larger size runs only when the previous size's
rate says it will end within --budget seconds (so 1,000,000 per side runs only on a
machine fast enough for it).  Timings depend on the
machine's load: the figures printed say the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from ppxgb.training.vertical import psi
from ppxgb.transport import InMemoryTransport

TITLE = "PSI (bench_psi.py"


def id_sets(n: int, seed: int = 11) -> tuple[list[str], list[str], np.ndarray]:
    """Two lists of n patient ids (strings), n // 2 of them in both, each in its own order."""
    rng = np.random.default_rng(seed)
    pool = rng.permutation(20 * n)[: 2 * n - n // 2]       # distinct numbers
    common, only_a, only_b = np.split(pool, [n // 2, n])
    a = rng.permutation(np.concatenate([common, only_a]))
    b = rng.permutation(np.concatenate([common, only_b]))
    fmt = np.vectorize(lambda x: f"PAT-{x:010d}")
    return list(fmt(a)), list(fmt(b)), np.sort(fmt(common))


class PeakMemory:
    """The largest resident memory of this process and its worker processes, sampled
    every 20 ms while the block runs, less what the process held before it (MB)."""

    def __enter__(self):
        self.me = psutil.Process()
        self.base = self.me.memory_info().rss
        self.peak, self.done = self.base, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.02):
            try:
                rss = self.me.memory_info().rss + sum(c.memory_info().rss for c in self.me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak = max(self.peak, rss)

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.mb = (self.peak - self.base) / 2**20


def run_once(n: int, workers: int, protocol: str) -> dict:
    ids_a, ids_b, expected = id_sets(n)
    transport = InMemoryTransport(default_timeout=3600)
    with PeakMemory() as memory:
        started = time.perf_counter()
        rows_a, rows_b = psi.run_psi_federation(transport, ["party-0", "party-1"], "party-0", [ids_a, ids_b],
                                                timeout=3600, workers=workers, protocol=protocol)
        seconds = time.perf_counter() - started
    got_a, got_b = np.asarray(ids_a)[rows_a], np.asarray(ids_b)[rows_b]
    if not np.array_equal(got_a, got_b) or not np.array_equal(np.sort(got_a), expected):
        raise SystemExit(f"PSI at {n:,} per side: wrong intersection ({len(got_a):,} rows, "
                         f"{len(expected):,} expected)")
    return {"ids": n, "seconds": seconds, "rate": n / seconds, "bytes": transport.total_bytes,
            "common": len(expected), "rss_mb": memory.mb, "workers": workers, "protocol": protocol}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"


def table(results: list[dict]) -> list[str]:
    lines = ["| protocol | IDs per side | common | worker processes per party | wall (s) | IDs per second per side | "
             "bytes sent | peak memory growth |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        workers = r["workers"] if r["protocol"] == "ecdh" else "-"
        lines.append(f"| {r['protocol']} | {r['ids']:,} | {r['common']:,} | {workers} | {r['seconds']:.1f} | "
                     f"{r['rate']:,.0f} | {r['bytes'] / 1e6:.1f} MB | {r['rss_mb']:.0f} MB |")
    return lines


def write_results(path: Path, block: list[str]) -> None:
    """Replace the PSI section of a RESULTS file (from its 'PSI (' paragraph to the end of
    the table after it), or append one."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(r"^PSI \(.*?\n\n(?:\|.*\n)+", re.M | re.S)
    new = "\n".join(block) + "\n"
    text = pattern.sub(lambda _: new, text, count=1) if pattern.search(text) else text.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                    help="IDs per side, smallest first")
    ap.add_argument("--quick", action="store_true", help="10,000 IDs per side only")
    ap.add_argument("--protocols", nargs="+", choices=("oprf", "ecdh"), default=["oprf", "ecdh"],
                    help="PSI protocols to measure, one series each")
    ap.add_argument("--workers", type=int, nargs="+", default=[2],
                    help="ECDH: worker processes per party (1: no pool; 2: the machine's cores), one series each")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="skip a size over 100,000 whose estimated time (from the previous size's rate) exceeds this")
    ap.add_argument("--write", metavar="RESULTS.md", help="replace the PSI section of this file")
    args = ap.parse_args(argv)
    sizes = [10_000] if args.quick else sorted(args.ids)
    load0 = os.getloadavg()[0]
    print(f"{machine()}; load average {load0:.1f} at the start", flush=True)
    results, skipped = [], []
    series = [(p, w) for p in args.protocols for w in (args.workers if p == "ecdh" else [1])]
    for protocol, workers in series:
        last = None
        for n in sizes:
            if n > 100_000 and last and n / last["rate"] > args.budget:
                skipped.append(f"{protocol} at {n:,} per side with {workers} workers skipped: about "
                               f"{n / last['rate']:.0f} s at the last rate (over --budget {args.budget:.0f} s)")
                print(skipped[-1], flush=True)
                continue
            results.append(last := run_once(n, workers, protocol))
            print(table(results)[-1], flush=True)
    load1 = os.getloadavg()[0]
    cmd = "python benchmarks/bench_psi.py " + " ".join(argv if argv is not None else sys.argv[1:])
    block = [f"{TITLE}: the OPRF PSI (OT extension, cuckoo hashing) and Diffie-Hellman in edwards25519's "
             f"prime-order group through libsodium, two parties, half the IDs common; `{cmd.strip()}`; "
             f"{machine()}; load average {load0:.1f} at the start and {load1:.1f} at the end"
             + (": the machine was shared with other jobs, so these rates are lower bounds)"
                if max(load0, load1) > 1.5 else ")") + "".join(f"; {s}" for s in skipped) + ":",
             "", *table(results)]
    print("\n".join(table(results)))
    if args.write:
        write_results(Path(args.write), block)
        print(f"wrote the PSI section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
