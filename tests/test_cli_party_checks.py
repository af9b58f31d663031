"""A single role started by hand (`ppxgb party`, `ppxgb vparty`) checks its data file
before it connects to anyone, and `ppxgb score` says where a missing key or token file
comes from.  Each case is the real command in a subprocess: one `ppxgb: error:` line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CLI = [sys.executable, "-m", "ppxgb.app.cli"]
# peers that never come up: a role that tried to connect first would wait --connect-timeout
CONNECT_TIMEOUT = 60.0


def run(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=110)
    return proc, time.monotonic() - started


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("ppxgb: WARNING")]
    assert len(lines) == 1 and lines[0].startswith("ppxgb: error: "), proc.stderr
    return lines[0]


class Listeners:
    """A listening socket at every role's address: the test sees any connection attempt."""

    def __init__(self, names: list[str]):
        self.socks = {}
        for name in names:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            s.setblocking(False)
            self.socks[name] = s

    def address(self, name: str) -> str:
        return "127.0.0.1:%d" % self.socks[name].getsockname()[1]

    def contacted(self, me: str) -> list[str]:
        """The roles other than `me` that someone connected to."""
        hit = []
        for name, s in self.socks.items():
            try:
                conn, _ = s.accept()
                conn.close()
                if name != me:
                    hit.append(name)
            except BlockingIOError:
                pass
        return hit

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


@pytest.fixture()
def peers(tmp_path):
    names = ["coordinator", "party-0", "party-1", "server-0", "server-1"]
    listeners = Listeners(names)
    doc = {"version": 1, "coordinator": "coordinator", "parties": ["party-0", "party-1"],
           "servers": ["server-0", "server-1"], "addresses": {n: listeners.address(n) for n in names}}
    path = tmp_path / "PEERS.json"
    path.write_text(json.dumps(doc))
    yield str(path), listeners
    listeners.close()


BAD_CSV = {
    "not text": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00", "a CSV with a header row"),
    "header only": ("a,b,y\n", "header only"),
    "empty": ("", "empty file"),
    "no label": ("a,b,z\n1,2,0\n", "--label"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_party_refuses_bad_data_before_connecting(case, peers, tmp_path):
    text, expected = BAD_CSV[case]
    data = tmp_path / "data.csv"
    data.write_bytes(text if isinstance(text, bytes) else text.encode())
    path, listeners = peers
    proc, seconds = run("party", "--name", "party-0", "--peers", path, "--data", str(data), "--label", "y",
                        "--insecure", "--connect-timeout", str(CONNECT_TIMEOUT))
    line = error_line(proc)
    assert expected in line, line
    assert seconds < CONNECT_TIMEOUT / 3, f"took {seconds:.1f} s: it waited for peers before reading its data"
    assert listeners.contacted("party-0") == [], "it connected to peers before checking its data"


def test_vparty_refuses_a_block_without_its_id_column_before_connecting(peers, tmp_path):
    data = tmp_path / "block.csv"
    data.write_text("pid,a,b\n1,2,3\n2,3,4\n")
    path, listeners = peers
    proc, seconds = run("vparty", "--name", "party-1", "--peers", path, "--data", str(data),
                        "--id-column", "id", "--insecure", "--connect-timeout", str(CONNECT_TIMEOUT))
    line = error_line(proc)
    assert "'id'" in line and "id column" in line, line
    assert seconds < CONNECT_TIMEOUT / 3, f"took {seconds:.1f} s: it waited for peers before reading its data"
    assert listeners.contacted("party-1") == [], "it connected to peers before checking its data"


@pytest.mark.parametrize("missing", ["--keys", "--token-file"])
def test_score_names_the_enroll_command_for_a_missing_key_or_token_file(missing, tmp_path):
    from ppxgb.files import write_private_file

    files = {"--keys": tmp_path / "alice.key", "--token-file": tmp_path / "alice.token"}
    present = [f for f in files if f != missing][0]
    write_private_file(files[present], "t" * 32 + "\n")
    rows = tmp_path / "rows.csv"
    rows.write_text("f0\n1\n")
    proc, _ = run("score", "--keys", str(files["--keys"]), "--token-file", str(files["--token-file"]),
                  "--server-url", "https://127.0.0.1:9", "--input", str(rows))
    line = error_line(proc)
    assert missing in line and "does not exist" in line and "ppxgb proxy enroll" in line, line
    assert str(files[missing]) in line
