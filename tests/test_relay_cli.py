"""Training through a relay, every role and the relay in its own OS process.

The models must equal in-process training bit for bit (horizontal and vertical), the
traffic must be the mesh's message for message, a deployment started by hand as the
README shows must work, and faults (a killed role, a killed relay, a stalled role, a
certificate for another role) must end the run with an error naming the culprit and
no model file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from helpers import make_discrete_data
from ppxgb.training import train_horizontal, train_vertical
from ppxgb.training.horizontal import run_federation
from ppxgb.training.vertical import run_vertical_federation
from ppxgb.app.deploy import load_data
from test_cli_federation import CLI, PARAMS, _pump_lines, _wait_for, leftovers, make_csvs

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]   # every test starts processes

PARTIES, SERVERS = ["party-0", "party-1", "party-2"], ["server-0", "server-1"]
ROLES = ["coordinator", *PARTIES, *SERVERS]


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    return make_csvs(tmp_path_factory.mktemp("data"))


def _relayed_counts(report: Path) -> tuple[int, int, int]:
    """(messages, bytes sent, bytes received) of a run whose every role went through one
    relay on loopback (the launcher's)."""
    summary = json.loads(report.read_text())
    relays = {r["relay"] for r in summary["roles"]}
    assert len(relays) == 1 and re.fullmatch(r"127\.0\.0\.1:\d+", relays.pop() or ""), summary["roles"]
    return summary["messages"], summary["bytes"], sum(r["received_bytes"] for r in summary["roles"])


# ============================================================= oracles

def test_horizontal_federation_through_a_relay_equals_in_process_training(csvs, tmp_path):
    out, report = tmp_path / "model.json", tmp_path / "report.json"
    proc = subprocess.run(CLI + ["federation", "--data", *csvs, "--label", "y", "--params", json.dumps(PARAMS),
                                 "--rounds", "4", "--out", str(out), "--report", str(report), "--timeout", "20",
                                 "--relay", "--verbose"],
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"started relay \(pid \d+\)", proc.stderr)
    assert "model written to" in proc.stdout and "over TLS" in proc.stdout

    parties = [load_data(path, "y") for path in csvs]
    booster = train_horizontal(PARAMS, parties, num_boost_round=4)
    assert xgb.Booster(model_file=str(out)).save_raw("json") == booster.save_raw("json")

    # the relay carries exactly the protocol's messages: the in-memory counts (= the mesh's)
    _, transport = run_federation(PARAMS, parties, 4, 2)
    expected = (transport.total_messages, transport.total_bytes, transport.total_bytes)
    assert _relayed_counts(report) == expected
    assert leftovers(tmp_path) == []


def _vertical_files(directory: Path) -> list[Path]:
    """Three column blocks of the same 400 patients, shuffled apart; the label at party 1."""
    rng = np.random.default_rng(3)
    X, y = make_discrete_data("binary:logistic", 400, 8, 0.1, 3, signal=lambda X: X[:, 0] - 0.7 * X[:, 3] + X[:, 6])
    ids = rng.permutation(5000)[:400]
    files = []
    for p, (a, b) in enumerate([(0, 3), (3, 6), (6, 8)]):
        frame = pd.DataFrame({"pid": ids, **{f"x{j}": X[:, j] for j in range(a, b)}})
        if p == 1:
            frame["ms"] = y
        files.append(directory / f"block{p}.csv")
        frame.sample(frac=1, random_state=p).to_csv(files[-1], index=False)
    return files


def test_vertical_federation_through_a_relay_equals_in_process_training(tmp_path):
    files = _vertical_files(tmp_path)
    out, report = tmp_path / "model.json", tmp_path / "report.json"
    params = {"objective": "binary:logistic", "max_depth": 3}
    proc = subprocess.run(CLI + ["vfederation", "--data", *map(str, files), "--id-column", "pid", "--label", "ms",
                                 "--label-party", "1", "--params", json.dumps(params), "--rounds", "2",
                                 "--out", str(out), "--report", str(report), "--relay"],
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-2000:]

    frames = [pd.read_csv(f) for f in files]
    local = train_vertical(params, frames, "ms", label_party=1, num_boost_round=2, id_column="pid")
    assert xgb.Booster(model_file=str(out)).save_raw("json") == local.save_raw("json")

    _, transport = run_vertical_federation(params, frames, "ms", label_party=1, num_boost_round=2, id_column="pid")
    expected = (transport.total_messages, transport.total_bytes, transport.total_bytes)
    assert _relayed_counts(report) == expected
    assert leftovers(tmp_path) == []


# ============================================================= by hand, as the README shows

def _start_relay(pki: Path, stall_timeout: float = 30.0) -> tuple[subprocess.Popen, int, list[str]]:
    """`ppxgb relay` on a port the system picks; returns the process, its port and its
    log lines (as they come)."""
    relay = subprocess.Popen(CLI + ["relay", "--port", "0", "--cert", str(pki / "relay.pem"),
                                    "--key", str(pki / "relay.key"), "--ca", str(pki / "ca.pem"),
                                    "--stall-timeout", str(stall_timeout)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    _pump_lines(relay.stderr, lines)
    port = int(_wait_for(lines, r"listening on 127\.0\.0\.1:(\d+) \(mutual TLS\)", relay, limit=60).group(1))
    return relay, port, lines


def _make_pki(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    subprocess.run(CLI + ["certs", "--out", str(pki), "--roles", "relay", *ROLES], check=True,
                   capture_output=True, timeout=60)
    return pki


@pytest.mark.parametrize("where", ["flags", "peers-file"])
def test_a_deployment_started_by_hand_through_a_relay(csvs, tmp_path, where):
    """Certificates with a relay role, `ppxgb relay`, then each role on its own with no
    listening port and no address of any peer: the relay and session from the command
    line or from PEERS.json."""
    pki = _make_pki(tmp_path)
    relay, port, log = _start_relay(pki)
    doc = {"version": 1, "coordinator": "coordinator", "parties": PARTIES, "servers": SERVERS,
           "tls": {"ca": "pki/ca.pem", "roles": {n: {"cert": f"pki/{n}.pem", "key": f"pki/{n}.key"} for n in ROLES}}}
    route: list[str] = []
    if where == "flags":
        route = ["--relay", f"127.0.0.1:{port}", "--session", "study-7"]
    else:
        doc.update(relay=f"127.0.0.1:{port}", session="study-7")
    peers = tmp_path / "PEERS.json"
    peers.write_text(json.dumps(doc))
    common = ["--peers", str(peers), "--timeout", "20"] + route
    out = tmp_path / "model.json"
    procs = {"coordinator": subprocess.Popen(
        CLI + ["coordinator", "--params", json.dumps(PARAMS), "--rounds", "3", "--out", str(out),
               "--feature-names", "f0,f1,f2,f3,f4"] + common,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)}
    for name, path in zip(PARTIES, csvs):
        procs[name] = subprocess.Popen(CLI + ["party", "--name", name, "--data", path, "--label", "y"] + common,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for name in SERVERS:
        procs[name] = subprocess.Popen(CLI + ["server", "--name", name] + common,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        results = {name: p.communicate(timeout=200) for name, p in procs.items()}
        relay_alive = relay.poll() is None
    finally:
        for p in [*procs.values(), relay]:
            if p.poll() is None:
                p.kill()
            p.wait()
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {results[name][1][-2000:]}"
    assert relay_alive                      # one relay outlives its sessions
    for name in ROLES:
        assert f"ppxgb relay: session 'study-7': {name} joined\n" in log
        assert f"ppxgb relay: session 'study-7': {name} left\n" in log, "".join(log)
    parties = [load_data(path, "y") for path in csvs]
    booster = train_horizontal(PARAMS, parties, num_boost_round=3)
    assert xgb.Booster(model_file=str(out)).save_raw("json") == booster.save_raw("json")
    assert leftovers(tmp_path) == []


def test_a_federation_on_one_machine_through_a_running_relay(csvs, tmp_path):
    """`ppxgb federation --relay HOST:PORT --certs DIR`: the roles use a relay someone
    else runs, with certificates from the CA that signed the relay's."""
    pki = _make_pki(tmp_path)
    relay, port, log = _start_relay(pki)
    out, report = tmp_path / "model.json", tmp_path / "report.json"
    try:
        proc = subprocess.run(CLI + ["federation", "--data", *csvs, "--label", "y", "--params", json.dumps(PARAMS),
                                     "--rounds", "3", "--out", str(out), "--report", str(report),
                                     "--relay", f"127.0.0.1:{port}", "--certs", str(pki)],
                              capture_output=True, text=True, timeout=200)
    finally:
        relay.kill()
        relay.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    roles = json.loads(report.read_text())["roles"]
    assert [r["relay"] for r in roles] == [f"127.0.0.1:{port}"] * len(ROLES)
    sessions = set(re.findall(r"session '(run-[0-9a-f]{16})': coordinator joined", "".join(log)))
    assert len(sessions) == 1                # a fresh session name per run
    booster = train_horizontal(PARAMS, [load_data(path, "y") for path in csvs], num_boost_round=3)
    assert xgb.Booster(model_file=str(out)).save_raw("json") == booster.save_raw("json")


# ============================================================= faults

def _federation_until_round_2(csvs, tmp_path, timeout: float):
    """A long federation through a relay, under way; (process, its stderr lines, out)."""
    out = tmp_path / "model.json"
    proc = subprocess.Popen(CLI + ["federation", "--data", *csvs, "--label", "y", "--params", json.dumps(PARAMS),
                                   "--rounds", "200", "--out", str(out), "--timeout", str(timeout), "--relay",
                                   "--verbose", "--progress", "lines"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    pump = _pump_lines(proc.stderr, lines)
    pids = {}
    for name in [*ROLES, "relay"]:
        pids[name] = int(_wait_for(lines, rf"started {name} \(pid (\d+)\)", proc).group(1))
    _wait_for(lines, r"round 2/200", proc)
    return proc, lines, pump, pids, out


def _fault(csvs, tmp_path, victim: str, sig: int, timeout: float) -> tuple[str, float, Path]:
    """Send `sig` to `victim` mid-training; (the final error line, seconds to fail, out)."""
    proc, lines, pump, pids, out = _federation_until_round_2(csvs, tmp_path, timeout)
    try:
        os.kill(pids[victim], sig)
        hit = time.monotonic()
        proc.wait(timeout=timeout + 40)
        elapsed = time.monotonic() - hit
    finally:
        if proc.poll() is None:             # the launcher hung: never leave a stopped role behind
            proc.kill()
            if sig == signal.SIGSTOP:
                os.kill(pids[victim], signal.SIGKILL)
        pump.join(timeout=5)
    err = "".join(lines)
    assert proc.returncode == 2, err
    final = [line for line in lines if line.startswith("ppxgb: error:")]
    assert final, err
    assert "round 200/200" not in err
    assert not out.exists() and leftovers(tmp_path) == []
    return final[-1], elapsed, out


@pytest.mark.parametrize("victim", ["party-1", "server-0"])
def test_killing_a_role_fails_the_relayed_federation_naming_it(csvs, tmp_path, victim):
    line, elapsed, _ = _fault(csvs, tmp_path, victim, signal.SIGKILL, timeout=20)
    assert line.startswith(f"ppxgb: error: {victim}:"), line
    assert "killed by SIGKILL" in line and "no model written" in line
    assert elapsed < 15, elapsed            # the relay says it is gone: no waiting out the 20 s timeout


def test_killing_the_relay_fails_the_federation_naming_the_relay(csvs, tmp_path):
    timeout = 10
    line, elapsed, _ = _fault(csvs, tmp_path, "relay", signal.SIGKILL, timeout=timeout)
    assert line.startswith("ppxgb: error: relay:"), line
    assert "relay killed by SIGKILL" in line and "no model written" in line
    assert elapsed < timeout + 15, elapsed


def test_a_stalled_role_behind_the_relay_is_named_within_the_timeout(csvs, tmp_path):
    """SIGSTOP: its stream stays open at the relay but it sends nothing, not even heartbeats."""
    timeout = 4
    line, elapsed, _ = _fault(csvs, tmp_path, "party-0", signal.SIGSTOP, timeout=timeout)
    assert line.startswith("ppxgb: error: party-0:") and "stopped answering" in line, line
    assert timeout - 1.0 < elapsed < timeout + 15, elapsed


# ============================================================= certificates

def test_the_relay_refuses_a_certificate_for_another_role(csvs, tmp_path, monkeypatch):
    """The relay process checks that the client certificate names the role it claims;
    a role process given another role's certificate stops before it connects."""
    from ppxgb import relay as relay_module
    from ppxgb.errors import PeerFailure
    from ppxgb.tls import TLSConfig

    pki = _make_pki(tmp_path)
    relay, port, _ = _start_relay(pki)
    try:
        # party-1's certificate and key, claiming to be party-0: the role's own check of
        # its certificate is bypassed, so the relay is the one to refuse
        real = relay_module.Identity
        monkeypatch.setattr(relay_module, "Identity", lambda name, tls: real("party-1", tls))
        theirs = TLSConfig(str(pki / "party-1.pem"), str(pki / "party-1.key"), str(pki / "ca.pem"))
        transport = relay_module.RelayTransport("party-0", ROLES, ("127.0.0.1", port), theirs,
                                                session="s1", connect_timeout=30, peer_timeout=30)
        try:
            with pytest.raises(PeerFailure) as info:
                transport.recv("party-0", "setup", timeout=30)
        finally:
            transport.close()
        assert info.value.peer == "relay"
        assert "PERMISSION_DENIED" in info.value.reason and "'party-0'" in info.value.reason, info.value.reason

        # the role process itself: party-1's files given to party-0
        peers = tmp_path / "PEERS.json"
        peers.write_text(json.dumps({"version": 1, "coordinator": "coordinator", "parties": PARTIES,
                                     "servers": SERVERS, "relay": f"127.0.0.1:{port}", "session": "s2"}))
        started = time.monotonic()
        proc = subprocess.run(CLI + ["party", "--name", "party-0", "--data", csvs[0], "--label", "y",
                                     "--peers", str(peers), "--cert", str(pki / "party-1.pem"),
                                     "--key", str(pki / "party-1.key"), "--ca", str(pki / "ca.pem")],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        error = proc.stderr.splitlines()[-1]
        assert error.startswith("ppxgb: error: tls.cert: expected a certificate") and "'party-0'" in error, error
        assert "party-1" in error and time.monotonic() - started < 30
        assert relay.poll() is None         # a refused client does not take the relay down
    finally:
        relay.kill()
        relay.wait()


def test_a_peers_file_without_addresses_needs_a_relay(csvs, tmp_path):
    """No addresses is valid for PEERS.json (a relay may come from --relay); a mesh role
    started from it names the missing address and the two ways to give a relay."""
    peers = tmp_path / "PEERS.json"
    peers.write_text(json.dumps({"version": 1, "coordinator": "coordinator", "parties": PARTIES,
                                 "servers": SERVERS}))
    proc = subprocess.run(CLI + ["party", "--name", "party-0", "--data", csvs[0], "--label", "y",
                                 "--peers", str(peers), "--insecure"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("ppxgb: error: peers.addresses: expected an address for 'coordinator' "
                                           "(or a 'relay', or --relay), got []")


def test_a_role_through_a_relay_needs_a_session_name(tmp_path):
    """Without a session name (flag or PEERS.json) a role stops before it dials out, and
    says both ways to give one."""
    peers = tmp_path / "PEERS.json"
    peers.write_text(json.dumps({"version": 1, "coordinator": "coordinator", "parties": PARTIES,
                                 "servers": SERVERS, "relay": "127.0.0.1:9"}))
    started = time.monotonic()
    proc = subprocess.run(CLI + ["server", "--name", "server-0", "--peers", str(peers), "--insecure"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    error = proc.stderr.splitlines()[-1]
    assert error.startswith("ppxgb: error: --session:") and "PEERS.json" in error, proc.stderr
    assert time.monotonic() - started < 20          # refused at once, not after --connect-timeout
