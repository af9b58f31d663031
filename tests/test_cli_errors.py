"""The real `ppxgb` command on hostile or mistaken input: one `ppxgb: error:` line, no
traceback, exit code 2 (bad input), and training inputs checked before any process starts."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CLI = [sys.executable, "-m", "ppxgb.app.cli"]
PARAMS = json.dumps({"objective": "binary:logistic", "max_depth": 2})


def ppxgb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=100, cwd=cwd)


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a refused command (asserting its shape)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppxgb: error: "), proc.stderr
    return lines[0]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture()
def files(tmp_path):
    """Small CSVs: good, header-only, empty, a text column, reordered and renamed columns."""
    return {
        "good": write(tmp_path / "good.csv", "a,b,y\n1,2,0\n3,4,1\n5,,0\n"),
        "header": write(tmp_path / "header.csv", "a,b,y\n"),
        "empty": write(tmp_path / "empty.csv", ""),
        "text": write(tmp_path / "text.csv", "a,b,y\n1,red,0\n3,blue,1\n"),
        "reordered": write(tmp_path / "reordered.csv", "b,a,y\n1,2,0\n3,4,1\n"),
        "renamed": write(tmp_path / "renamed.csv", "a,c,y\n1,2,0\n3,4,1\n"),
    }


def federation(tmp_path, *data: str, params: str = PARAMS, command: str = "federation"):
    extra = ["--label", "y"] if command == "federation" else ["--label", "y", "--label-party", "0"]
    return ppxgb(command, "--data", *data, *extra, "--params", params, "--rounds", "2",
                 "--out", str(tmp_path / "model.json"))


# (data files, --params, what the one line must say); every case is refused in the launcher
FEDERATION_CASES = {
    "empty-csv": (["empty", "good"], PARAMS, ["empty.csv: empty file"]),
    "header-only": (["good", "header"], PARAMS, ["header.csv: header only", "at least one data row"]),
    "params-file-missing": (["good", "good"], "@missing.json", ["--params", "@missing.json",
                                                               "No such file"]),
    "unsupported-param": (["good", "good"], json.dumps({"sampling_method": "gradient_based"}),
                          ["'sampling_method' is not supported"]),
    "reordered-columns": (["good", "reordered"], PARAMS, ["same columns", "different order"]),
    "missing-column": (["good", "renamed"], PARAMS, ["missing: b", "unexpected: c"]),
}


def test_categorical_names_a_column_that_is_not_there(files, tmp_path):
    """--categorical naming no column of the file is refused in the launcher (a text
    column is trained as categorical, with a message: tests/test_categorical_training.py)."""
    line = one_error_line(ppxgb("federation", "--data", files["good"], files["good"], "--label", "y",
                                "--categorical", "nope", "--params", PARAMS, "--rounds", "2",
                                "--out", str(tmp_path / "model.json")))
    assert "--categorical" in line and "'nope'" in line and "good.csv" in line, line


@pytest.mark.parametrize("case", sorted(FEDERATION_CASES))
def test_federation_refuses_bad_input_in_one_line_before_starting_roles(case, files, tmp_path):
    names, params, needles = FEDERATION_CASES[case]
    started = time.monotonic()
    line = one_error_line(federation(tmp_path, *[files[n] for n in names], params=params))
    for needle in needles:
        assert needle in line, line
    assert "[coordinator]" not in line and "[party" not in line
    assert time.monotonic() - started < 30          # no roles started, no timeout waited out
    assert not (tmp_path / "model.json").exists()


@pytest.mark.parametrize("case", ["header-only", "unsupported-param"])
def test_vfederation_checks_the_same_inputs_in_the_launcher(case, files, tmp_path):
    names, params, needles = FEDERATION_CASES[case]
    line = one_error_line(federation(tmp_path, *[files[n] for n in names], params=params,
                                     command="vfederation"))
    assert needles[0] in line, line


@pytest.mark.parametrize("content", ["text", "pickle", "empty"])
def test_proxy_enroll_refuses_a_file_that_is_not_a_model(content, tmp_path):
    model = tmp_path / "model.bin"
    model.write_bytes({"text": b"hello\n", "empty": b"",
                       "pickle": pickle.dumps({"trees": [1, 2]})}[content])
    token = tmp_path / "server.token"
    assert ppxgb("proxy", "new-secret", "--out", str(token)).returncode == 0
    line = one_error_line(ppxgb("proxy", "enroll", "--model", str(model), "--user", "alice",
                                "--key-out", str(tmp_path / "alice.key"),
                                "--server-url", "https://127.0.0.1:9", "--server-admin-token-file",
                                str(token)))
    assert "--model" in line and str(model) in line
    assert ("pickle" in line) == (content == "pickle")
    assert not (tmp_path / "alice.key").exists()


def test_score_refuses_a_header_only_csv(tmp_path):
    import xgboost as xgb

    from ppxgb.files import write_private_file
    from ppxgb.proxy import Proxy

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=X[:, 0] > 0), 2)
    enrollment = Proxy(1024, allow_weak_keys=True).enroll(booster, "alice")
    keys, token = tmp_path / "alice.key", tmp_path / "alice.token"
    write_private_file(keys, enrollment.keys.to_bytes())
    write_private_file(token, "t" * 32 + "\n")
    rows = write(tmp_path / "rows.csv", "f0,f1\n")
    line = one_error_line(ppxgb("score", "--keys", str(keys), "--token-file", str(token),
                                "--server-url", "https://127.0.0.1:9", "--input", rows))
    assert "--input" in line and "header only" in line


@pytest.mark.parametrize("command", [
    ["scoring-server", "--insecure-http", "--db", "sqlite:///{tmp}/m.db"],
    ["proxy", "enroll", "--proxy-url", "https://127.0.0.1:9", "--model", "m", "--user", "a",
     "--key-out", "{tmp}/a.key"],
])
def test_a_missing_admin_token_file_names_the_command_that_creates_it(command, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in command] + ["--admin-token-file", str(tmp_path / "admin.token")]
    line = one_error_line(ppxgb(*argv))
    assert "--admin-token-file" in line and "does not exist" in line
    assert f"ppxgb proxy new-secret --out {tmp_path / 'admin.token'}" in line


def test_version_and_every_option_documents_its_default():
    proc = ppxgb("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ppxgb ")
    from ppxgb.app.cli import _all_parsers, build_parser

    undocumented, without_default = [], []
    for parser in _all_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            if not action.help:
                undocumented.append(f"{parser.prog} {action.option_strings[0]}")
            shown = formatter._get_help_string(action) or ""
            if action.default not in (None, False) and "default" not in shown:
                without_default.append(f"{parser.prog} {action.option_strings[0]}")
    assert undocumented == [] and without_default == []
    text = subprocess.run(CLI + ["federation", "--help"], capture_output=True, text=True).stdout
    assert "(default: 30.0)" in " ".join(text.split())          # --timeout


def test_certs_writes_a_ca_and_one_private_key_per_role(tmp_path):
    from cryptography import x509

    out = tmp_path / "pki"
    proc = ppxgb("certs", "--out", str(out), "--parties", "2", "--servers", "2")
    assert proc.returncode == 0, proc.stderr
    roles = ["coordinator", "party-0", "party-1", "server-0", "server-1"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ca.pem", "ca.key"] + [f"{r}.pem" for r in roles] + [f"{r}.key" for r in roles])
    for key in out.glob("*.key"):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, key
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    for role in roles:
        cert = x509.load_pem_x509_certificate((out / f"{role}.pem").read_bytes())
        assert cert.issuer == ca.subject
        assert role in cert.subject.rfc4514_string()
    # run again: refuses to overwrite without --overwrite
    line = one_error_line(ppxgb("certs", "--out", str(out), "--roles", "party-0"))
    assert "--overwrite" in line and "party-0" in line


def test_counts_and_progress_lines_read_well():
    from ppxgb.app.deploy import human_bytes, plural, progress_for

    assert plural(1, "party", "parties") == "1 party" and plural(3, "party", "parties") == "3 parties"
    assert plural(1, "round") == "1 round" and plural(2, "round") == "2 rounds"
    assert [human_bytes(n) for n in (512, 1_234, 1_234_567_890)] == ["512 B", "1.2 kB", "1.2 GB"]
    progress = progress_for("lines")
    progress.start(4)
    progress.done = 1
    line = progress.line({"elapsed": 1.5, "bytes": 1_234_567_890})
    assert line.count("elapsed") == 1 and line.endswith("received 1.2 GB") and "1234567890" not in line


def test_a_service_says_where_it_listens_and_when_it_is_ready(tmp_path):
    from ppxgb.app.deploy import free_ports

    token = tmp_path / "admin.token"
    assert ppxgb("proxy", "new-secret", "--out", str(token)).returncode == 0
    (port,) = free_ports(1)
    proc = subprocess.Popen(CLI + ["scoring-server", "--insecure-http", "--port", str(port),
                                   "--db", f"sqlite:///{tmp_path / 'm.db'}", "--admin-token-file", str(token)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first, second = proc.stderr.readline(), proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    url = f"http://127.0.0.1:{port}"
    assert first.strip() == f"ppxgb scoring-server: starting on {url}"
    assert second.strip() == f"ppxgb scoring-server: ready at {url}"
