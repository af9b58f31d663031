"""Horizontal training as OS processes: same model as in-process, clean failures, no partial files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError
from ppxgb.tls import make_test_pki
from ppxgb.training import train_horizontal
from ppxgb.training.horizontal import run_federation
from ppxgb.app.deploy import load_data, write_atomic, write_peers

pytestmark = pytest.mark.timeout(180)

PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}
CLI = [sys.executable, "-m", "ppxgb.app.cli"]


def make_csvs(directory: Path, sizes=(300, 200, 250), seed=1, classes=2) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i, n in enumerate(sizes):
        X = rng.normal(size=(n, 5))
        X[rng.random(X.shape) < 0.1] = np.nan
        score = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1]) + rng.normal(scale=0.5, size=n)
        y = np.digitize(score, np.linspace(-1, 1, classes + 1)[1:-1]) if classes > 2 else score > 0
        frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(5)])
        frame["y"] = y.astype(int)
        path = directory / f"hospital{i}.csv"
        frame.to_csv(path, index=False)  # NaN is written as an empty cell
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    return make_csvs(tmp_path_factory.mktemp("data"))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


MULTI = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "eta": 0.5}


@pytest.mark.slow
@pytest.mark.parametrize("params,n_servers", [(PARAMS, 2), (MULTI, 3)], ids=["binary-2srv", "multi-3srv"])
def test_federation_equals_in_process_training(tmp_path, params, n_servers):
    classes = params.get("num_class", 2)
    csvs = make_csvs(tmp_path, sizes=(300, 200, 250)[: 4 - n_servers + 1], classes=classes)
    out, report = tmp_path / "model.json", tmp_path / "report.json"
    proc = subprocess.run(CLI + ["federation", "--data", *csvs, "--label", "y", "--servers", str(n_servers),
                                 "--params", json.dumps(params), "--rounds", "4", "--out", str(out),
                                 "--report", str(report), "--timeout", "20"],
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr
    assert "model written to" in proc.stdout
    assert "round" not in proc.stderr and "error" not in proc.stderr  # no progress off a terminal

    parties = [load_data(path, "y") for path in csvs]
    booster = train_horizontal(params, parties, num_boost_round=4, n_servers=n_servers)
    from_processes = xgb.Booster(model_file=str(out))
    assert from_processes.save_raw("json") == booster.save_raw("json")
    assert from_processes.feature_names == [f"f{j}" for j in range(5)]
    pooled = pd.concat([X for X, _ in parties])
    dm = xgb.DMatrix(pooled)
    assert np.array_equal(from_processes.predict(dm), booster.predict(dm))

    # the network transport counts the same messages and bytes as the in-memory one
    _, transport = run_federation(params, parties, 4, n_servers)
    summary = json.loads(report.read_text())
    assert summary["tls"] is True and len(summary["roles"]) == 1 + len(csvs) + n_servers
    assert summary["messages"] == transport.total_messages
    assert summary["bytes"] == transport.total_bytes
    assert sum(r["received_bytes"] for r in summary["roles"]) == transport.total_bytes
    assert leftovers(tmp_path) == [] and not any(tmp_path.glob("*.key"))


def _pump_lines(stream, sink: list[str]) -> threading.Thread:
    def run():
        for line in iter(stream.readline, ""):
            sink.append(line)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(lines: list[str], pattern: str, proc, limit: float = 120.0) -> re.Match:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in list(lines):
            match = re.search(pattern, line)
            if match:
                return match
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"no line matching {pattern!r}; got {''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["party-1", "server-0"])
def test_killing_a_role_mid_training_fails_the_federation_naming_it(csvs, tmp_path, victim):
    out = tmp_path / "model.json"
    timeout = 5
    proc = subprocess.Popen(CLI + ["federation", "--data", *csvs, "--label", "y",
                                   "--params", json.dumps(PARAMS), "--rounds", "200", "--out", str(out),
                                   "--timeout", str(timeout), "--verbose", "--progress", "lines"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    pump = _pump_lines(proc.stderr, lines)
    try:
        pid = int(_wait_for(lines, rf"started {victim} \(pid (\d+)\)", proc).group(1))
        _wait_for(lines, r"round 2/200", proc)  # training is under way
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(timeout=timeout + 30)
        elapsed = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
        pump.join(timeout=5)
    err = "".join(lines)
    assert proc.returncode != 0
    final = [line for line in lines if line.startswith("ppxgb: error:")]
    assert final and final[-1].startswith(f"ppxgb: error: {victim}:"), err
    assert "killed by SIGKILL" in final[-1] and "no model written" in final[-1]
    assert "round 200/200" not in err
    assert elapsed < timeout + 20, elapsed  # detected, not waited out
    assert not out.exists() and leftovers(tmp_path) == []


def test_bad_data_at_one_party_fails_in_the_launcher_naming_file_and_column(csvs, tmp_path):
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(csvs[1])
    frame["f3"] = frame["f3"].astype(str) + "x"
    frame.to_csv(bad, index=False)
    out = tmp_path / "model.json"
    started = time.monotonic()
    proc = subprocess.run(CLI + ["federation", "--data", csvs[0], str(bad), "--label", "y",
                                 "--params", json.dumps(PARAMS), "--rounds", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=170)
    # checked once, before any role process starts: the text column is announced, then
    # refused because the other file has it numeric; no role's relayed output
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert "column 'f3' is not numeric" in lines[0] and "categorical" in lines[0]
    assert lines[1].startswith(f"ppxgb: error: --data: {bad}: column 'f3' is not numeric there")
    assert "--categorical" in lines[1] and "[party" not in proc.stderr
    assert time.monotonic() - started < 30
    assert not out.exists() and leftovers(tmp_path) == []


def _start_roles(csvs, tmp_path, timeout, rounds):
    """Start coordinator, parties and servers by hand, as on separate machines."""
    parties, servers = [f"party-{i}" for i in range(len(csvs))], ["server-0", "server-1"]
    names = ["coordinator", *parties, *servers]
    pki = make_test_pki(tmp_path / "pki", names)
    peers = tmp_path / "peers.json"
    write_peers(peers, parties, servers, "coordinator", "127.0.0.1", pki)
    common = ["--peers", str(peers), "--timeout", str(timeout)]
    out = tmp_path / "model.json"
    procs = {"coordinator": subprocess.Popen(
        CLI + ["coordinator", "--params", json.dumps(PARAMS), "--rounds", str(rounds), "--out", str(out),
               "--progress", "lines"] + common, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)}
    for name, path in zip(parties, csvs):
        procs[name] = subprocess.Popen(CLI + ["party", "--name", name, "--data", path, "--label", "y"] + common,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in servers:
        procs[name] = subprocess.Popen(CLI + ["server", "--name", name] + common,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return procs, out


@pytest.mark.slow
def test_a_stalled_party_makes_the_coordinator_stop_within_the_timeout(csvs, tmp_path):
    """SIGSTOP: the process is alive but silent; heartbeats stop, and the coordinator names it."""
    timeout = 3
    procs, out = _start_roles(csvs, tmp_path, timeout, rounds=200)
    coordinator = procs["coordinator"]
    lines: list[str] = []
    pump = _pump_lines(coordinator.stderr, lines)
    try:
        _wait_for(lines, r"round 2/200", coordinator)
        os.kill(procs["party-0"].pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        coordinator.wait(timeout=timeout + 30)
        elapsed = time.monotonic() - stopped_at
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        pump.join(timeout=5)
    err = "".join(lines)
    assert coordinator.returncode == 2, err
    final = [line for line in err.splitlines() if line.startswith("ppxgb: error:")]
    # seen first-hand, or relayed by a server that was waiting for party-0's shares
    assert final and final[-1].startswith("ppxgb: error: party-0:") and "stopped answering" in final[-1], err
    assert timeout - 1.0 < elapsed < timeout + 15, elapsed  # heartbeats every timeout/5
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_roles_refuse_to_start_without_tls_material(csvs, tmp_path):
    peers = tmp_path / "peers.json"
    write_peers(peers, ["party-0"], ["server-0", "server-1"], "coordinator", "127.0.0.1", None)
    proc = subprocess.run(CLI + ["party", "--name", "party-0", "--data", csvs[0], "--label", "y",
                                 "--peers", str(peers)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "tls: no cert, key, ca for party-0" in proc.stderr and "--insecure" in proc.stderr

    empty = tmp_path / "certs"
    empty.mkdir()
    out = tmp_path / "model.json"
    proc = subprocess.run(CLI + ["federation", "--data", *csvs, "--label", "y", "--params", "{}",
                                 "--rounds", "1", "--out", str(out), "--certs", str(empty)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "tls.cert: expected an existing PEM file" in proc.stderr
    assert not out.exists()


def test_load_data_csv_and_npz(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n1,,0\n,2.5,1\n")
    X, y = load_data(str(csv), "label")
    assert list(X.columns) == ["a", "b"] and np.isnan(X.iloc[0, 1]) and np.isnan(X.iloc[1, 0])
    assert y.tolist() == [0, 1]
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.ones((3, 2)), y=np.array([0, 1, 0]))
    X, y = load_data(str(npz), None)
    assert X.shape == (3, 2) and y.tolist() == [0, 1, 0]
    with pytest.raises(ParameterError, match="--label"):
        load_data(str(csv), "nope")
    (tmp_path / "s.csv").write_text("a,label\nx,1\n")
    X, _ = load_data(str(tmp_path / "s.csv"), "label")      # a text column: categorical, said on stderr
    assert isinstance(X["a"].dtype, pd.CategoricalDtype)


def test_write_atomic_leaves_old_file_or_nothing(tmp_path):
    target = tmp_path / "m.json"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"

    with pytest.raises(TypeError):
        write_atomic(target, None)  # fails while writing the temporary file
    assert target.read_bytes() == b"one" and leftovers(tmp_path) == []
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o600)
