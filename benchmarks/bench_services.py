"""Load benchmark of the HTTP services as deployed: `ppxgb scoring-server` and
`ppxgb proxy serve` started as real processes (uvicorn) on loopback ports, driven by N
concurrent clients (httpx, asyncio) for a bounded time.

    python benchmarks/bench_services.py                # 1 and 2 workers, SQLite and PostgreSQL
    python benchmarks/bench_services.py --quick        # SQLite, 1 worker, 5 s per cell
    python benchmarks/bench_services.py --clients 16 --seconds 30 --backends sqlite

Scoring: a binary:logistic model of 100 trees of depth 6 over 30 features, enrolled
with 2048-bit Paillier keys, uploaded to the server; the clients post requests of one
encrypted row and of 100 rows, encrypted before the clock starts (the client's own
encryption is not in the figures), and each answer is checked: status 200 and a
well-formed EncryptedScores (a sample is decrypted and compared with xgboost's
predict).  Enrolment: the clients post /v1/enroll to the proxy, which makes fresh
keys, encrypts the model and uploads it to the scoring server (SQLite, one worker).

Every request opens its own connection unless --keepalive (a kept-alive connection stays
with the worker that accepted it, so a few clients may all land on one worker); the
last column shows how the service's CPU split over its processes.

Each cell reports requests/s (completed requests over the measured time), rows/s,
latency p50/p95/p99, and errors.  The load generator runs on the same machine as the
services (it takes CPU from them), so these are figures of the whole box.  PostgreSQL
runs when its server binaries are installed (`make postgres`); otherwise its rows say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import xgboost as xgb

from ppxgb.files import write_private_file
from ppxgb.formats import EncryptedScores
from ppxgb.inference import Client
from ppxgb.proxy import Proxy
from ppxgb.wire import MSGPACK, new_token

HOST = "127.0.0.1"
CLI = [sys.executable, "-m", "ppxgb.app.cli"]


# ---------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(argv: list[str], log: Path, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """A service subprocess on a free loopback port; waits for /v1/health."""
    port = free_port()
    proc = subprocess.Popen(CLI + argv + ["--host", HOST, "--port", str(port), "--insecure-http"],
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{argv[0]} exited: {log.read_text()[-1500:]}")
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{argv[0]} did not come up: {log.read_text()[-1500:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (uvicorn stops its workers), SIGKILL after 20 s."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class Postgres:
    """A throwaway PostgreSQL server (Debian's binaries; run as `postgres` when root)."""

    def __init__(self):
        def binary(name: str) -> str | None:
            return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)

        self.initdb, self.pg_ctl = binary("initdb"), binary("pg_ctl")
        self.base, self.url, self.as_user = None, None, []

    def start(self) -> str | None:
        if not (self.initdb and self.pg_ctl):
            return None
        # its own directory: the `postgres` user cannot enter the benchmark's 0700 temp dir
        self.base = Path(tempfile.mkdtemp(prefix="ppxgb-bench-pg-"))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data, port = str(self.base / "data"), free_port()
        subprocess.run(self.as_user + [self.initdb, "-D", data, "-U", "ppxgb", "--auth=trust"], check=True,
                       capture_output=True)
        opts = f"-p {port} -k {self.base} -h {HOST} -c max_connections=200"
        subprocess.run(self.as_user + [self.pg_ctl, "-D", data, "-o", opts, "-l", str(self.base / "log"), "-w",
                                       "start"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg://ppxgb@{HOST}:{port}/postgres"
        return self.url

    def stop(self) -> None:
        if self.url:
            subprocess.run(self.as_user + [self.pg_ctl, "-D", str(self.base / "data"), "-m", "fast", "stop"],
                           capture_output=True)
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)


def worker_cpu(proc: subprocess.Popen) -> dict[int, float]:
    """CPU seconds so far of the service and each of its worker processes."""
    import psutil

    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    return {p.pid: sum(p.cpu_times()[:2]) for p in procs}


def cpu_split(before: dict[int, float], after: dict[int, float]) -> str:
    """Each process's share of the CPU the service used during the cell ("83/17"): with
    keep-alive connections the kernel may hand most clients to one worker."""
    used = sorted((after[p] - before.get(p, 0.0) for p in after), reverse=True)
    total = sum(used) or 1.0
    return "/".join(f"{100 * u / total:.0f}" for u in used if u / total >= 0.005)


# ---------------------------------------------------------------- load


async def load(url: str, path: str, bodies: list[bytes], headers: dict, clients: int, seconds: float,
               check, keepalive: bool = False) -> dict:
    """`clients` tasks post bodies round robin for `seconds`; latencies of completed requests.
    Without keep-alive every request opens a connection, so the workers' shared listening
    socket spreads requests over them (a kept-alive connection stays with one worker)."""
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients if keepalive else 0)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as http:
        async def one(c: int) -> None:
            i = c
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                try:
                    r = await http.post(path, content=bodies[i % len(bodies)])
                    ok = r.status_code in (200, 201) and check(r)
                    (latencies.append(time.perf_counter() - t) if ok else
                     errors.append(f"{r.status_code}: {r.text[:120]}"))
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(clients)))
        wall = time.perf_counter() - started
    lat = np.asarray(latencies) * 1000
    pct = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
    return {"requests": len(lat), "rps": len(lat) / wall, "p50": pct[0], "p95": pct[1], "p99": pct[2],
            "errors": len(errors), "first_error": errors[0] if errors else "", "wall": wall}


# ---------------------------------------------------------------- scenario


def make_model(tmp: Path, n_trees: int, depth: int, n_features: int = 30):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, n_features)).astype(np.float32)
    y = (X @ rng.normal(size=n_features) + rng.normal(size=len(X)) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "tree_method": "hist"},
                        xgb.DMatrix(X, label=y), n_trees)
    path = tmp / "model.json"
    booster.save_model(path)
    return booster, path, rng.normal(size=(2000, n_features)).astype(np.float32)


def secret(tmp: Path, name: str, value: str) -> str:
    path = tmp / name
    write_private_file(path, value + "\n")
    return str(path)


def bench_scoring(tmp: Path, db: str, workers: int, booster, X, args) -> list[dict]:
    admin = new_token()
    admin_file = secret(tmp, f"server-{workers}-{abs(hash(db))}.token", admin)
    proc, url = start(["scoring-server", "--db", db, "--admin-token-file", admin_file, "--workers", str(workers)],
                      tmp / f"scoring-{workers}.log")
    rows = []
    try:
        enrollment = Proxy(2048).enroll(booster, user_id="bench")
        token = new_token()
        r = httpx.put(f"{url}/v1/models/{enrollment.model.model_id}", content=enrollment.model.to_bytes(),
                      headers={"authorization": f"Bearer {admin}", "content-type": MSGPACK,
                               "x-ppxgb-token-sha256": hashlib.sha256(token.encode()).hexdigest()}, timeout=120)
        if r.status_code != 201:
            raise SystemExit(f"upload refused: {r.status_code} {r.text[:200]}")
        client = Client(enrollment.keys)
        path = f"/v1/models/{enrollment.model.model_id}/predict"
        headers = {"authorization": f"Bearer {token}", "content-type": MSGPACK}
        for batch in args.batches:
            starts = range(0, len(X) - batch, max(1, (len(X) - batch) // 8))[:8]
            bodies = [client.encrypt(X[s:s + batch]).to_bytes() for s in starts]
            # oracle: one answer of each body decrypted against xgboost
            for s, body in zip(starts, bodies):
                r = httpx.post(url + path, content=body, headers=headers, timeout=120)
                got = client.decrypt(EncryptedScores.from_bytes(r.content))
                want = booster.predict(xgb.DMatrix(X[s:s + batch]))
                if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                    raise SystemExit("scoring server answered wrong scores")
            cpu0 = worker_cpu(proc)
            out = asyncio.run(load(url, path, bodies, headers, args.clients, args.seconds,
                                   lambda r: r.headers.get("content-type", "").startswith(MSGPACK), args.keepalive))
            out["cpu_split"] = cpu_split(cpu0, worker_cpu(proc))
            rows.append({"service": "scoring", "db": db.split(":", 1)[0].split("+")[0], "workers": workers,
                         "rows": batch, **out})
            print(line(rows[-1]), flush=True)
    finally:
        stop(proc)
    return rows


def bench_enroll(tmp: Path, workers: int, model_path: Path, args) -> dict:
    server_admin = secret(tmp, f"s-{workers}.token", new_token())
    server, server_url = start(["scoring-server", "--db", f"sqlite:///{tmp / f'enroll-{workers}.db'}",
                                "--admin-token-file", server_admin], tmp / f"enroll-server-{workers}.log")
    proxy_admin = new_token()
    master = secret(tmp, f"master-{workers}.key", os.urandom(32).hex())
    try:
        proxy, url = start(["proxy", "serve", "--model", f"m={model_path}", "--server-url", server_url,
                            "--server-admin-token-file", server_admin,
                            "--admin-token-file", secret(tmp, f"p-{workers}.token", proxy_admin),
                            "--keystore", str(tmp / f"keystore-{workers}"), "--master-key-file", master,
                            "--workers", str(workers)], tmp / f"proxy-{workers}.log")
        try:
            cpu0 = worker_cpu(proxy)
            counter = iter(range(10**9))
            bodies = [b'{"user_id": "u%d", "model": "m"}' % next(counter) for _ in range(100000)]
            out = asyncio.run(load(url, "/v1/enroll", bodies, {"authorization": f"Bearer {proxy_admin}",
                                                               "content-type": "application/json"},
                                   args.clients, args.seconds, lambda r: "access_token" in r.json(), args.keepalive))
            out["cpu_split"] = cpu_split(cpu0, worker_cpu(proxy))
        finally:
            stop(proxy)
    finally:
        stop(server)
    row = {"service": "proxy enroll", "db": "sqlite", "workers": workers, "rows": 1, **out}
    print(line(row), flush=True)
    return row


HEADER = ("| service | scoring store | workers | rows per request | requests/s | rows/s | p50 (ms) | p95 (ms) | "
          "p99 (ms) | requests | errors | CPU share per process (%) |")


def line(r: dict) -> str:
    if r.get("skipped"):
        return f"| {r['service']} | {r['db']} | {r['workers']} | {r['rows']} | {r['skipped']} |||||||"
    return (f"| {r['service']} | {r['db']} | {r['workers']} | {r['rows']} | {r['rps']:,.1f} | "
            f"{r['rps'] * r['rows']:,.0f} | {r['p50']:,.0f} | {r['p95']:,.0f} | {r['p99']:,.0f} | "
            f"{r['requests']:,} | {r['errors']} | {r['cpu_split']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured time per cell")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 100], help="rows per scoring request")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--no-enroll", action="store_true", help="skip the proxy's enrolment load")
    ap.add_argument("--keepalive", action="store_true",
                    help="reuse each client's connection (then each client stays with one worker)")
    ap.add_argument("--quick", action="store_true", help="SQLite, 1 worker, 4 clients, 5 s per cell")
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.workers, args.backends = 4, 5.0, [1], ["sqlite"]
    load0 = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; load average {load0:.1f} at the start; "
          f"{args.clients} clients, {args.seconds:.0f} s per cell", flush=True)
    print(HEADER, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ppxgb-bench-services-"))
    pg = Postgres()
    rows = []
    try:
        booster, model_path, X = make_model(tmp, args.trees, args.depth)
        for backend in args.backends:
            db = f"sqlite:///{tmp / 'models.db'}" if backend == "sqlite" else pg.start()
            for workers in args.workers:
                if db is None:
                    rows.append({"service": "scoring", "db": backend, "workers": workers, "rows": "-",
                                 "skipped": "PostgreSQL is not installed (make postgres)"})
                    print(line(rows[-1]), flush=True)
                    continue
                rows += bench_scoring(tmp, db, workers, booster, X, args)
        if not args.no_enroll:
            rows += [bench_enroll(tmp, w, model_path, args) for w in args.workers]
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (the load generator shares the machine)\n")
    print(HEADER)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(line(r))
    return 1 if any(r.get("errors") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
