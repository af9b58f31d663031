"""NetworkTransport on loopback: TLS round trips, counting, no plaintext fallback, failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from ppxgb.errors import ParameterError, PeerFailure, ProtocolError
from ppxgb.net import NetworkTransport, parse_address
from ppxgb.tls import TLSConfig, make_test_pki
from ppxgb.transport import InMemoryTransport, encode_message

pytestmark = pytest.mark.timeout(60)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["a", "b", "c"])


@pytest.fixture
def addresses():
    return {name: ("127.0.0.1", port) for name, port in zip("abc", free_ports(3))}


def pair(addresses, pki, **kw):
    addr = {k: addresses[k] for k in "ab"}
    return (NetworkTransport("a", addr, pki["a"], **kw), NetworkTransport("b", addr, pki["b"], **kw))


MESSAGES = [
    ("a", "b", "shares", {"g": np.arange(12, dtype=np.uint64).reshape(3, 4) * (2**61 + 7),
                          "h": np.array([-1.5, np.nan, np.inf], dtype=np.float64),
                          "mask": np.array([True, False]), "round": 3}),
    ("b", "a", "split", {"node": 0, "feature": 2, "threshold": 0.5, "default_left": True,
                         "nested": {"cuts": [1.0, 2.5], "name": "x"}, "none": None}),
    ("a", "b", "empty", {"x": np.zeros((0, 5), dtype=np.float32), "b": b"\x00\x01"}),
    ("b", "a", "big", {"x": np.random.default_rng(0).integers(0, 2**63, size=200_000, dtype=np.int64)}),
]


def assert_payload_equal(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype and got[key].shape == value.shape
            np.testing.assert_array_equal(got[key], value)
        else:
            assert got[key] == value


def test_round_trip_over_tls_and_counts_match_in_memory(addresses, pki):
    a, b = pair(addresses, pki)
    ends = {"a": a, "b": b}
    memory = InMemoryTransport()
    try:
        for src, dst, stage, payload in MESSAGES:
            ends[src].send(src, dst, stage, payload)
            memory.send(src, dst, stage, payload)
            got = ends[dst].recv(dst, stage, src=src, timeout=10)
            want = memory.recv(dst, stage, src=src, timeout=1)
            assert_payload_equal(got.payload, payload)
            assert_payload_equal(want.payload, payload)
            assert got.size == want.size
    finally:
        a.close()
        b.close()
    # stats counts what each end received, `sent` what it sent; both equal the in-memory count
    received = {**a.stats, **b.stats}
    sent = {**a.sent, **b.sent}
    assert {k: list(v) for k, v in received.items()} == {k: list(v) for k, v in memory.stats.items()}
    assert {k: list(v) for k, v in sent.items()} == {k: list(v) for k, v in memory.stats.items()}
    assert a.total_bytes + b.total_bytes == memory.total_bytes > 8 * 200_000
    assert a.total_messages + b.total_messages == memory.total_messages == len(MESSAGES)


def test_recorder_sees_received_messages_and_stage_checks_apply(addresses, pki):
    seen = []
    a, b = pair(addresses, pki, recorder=seen.append)
    try:
        a.send("a", "b", "one", {"v": 1})
        with pytest.raises(ProtocolError, match="expected stage 'two'"):
            b.recv("b", "two", timeout=10)
        assert [(m.src, m.dst, m.stage) for m in seen] == [("a", "b", "one")]
        with pytest.raises(ParameterError, match="src"):
            a.send("b", "a", "forged", {})
        with pytest.raises(ParameterError, match="dst"):
            a.send("a", "nobody", "x", {})
    finally:
        a.close()
        b.close()


def test_missing_tls_material_raises_never_plaintext(addresses, pki, tmp_path):
    addr = {k: addresses[k] for k in "ab"}
    with pytest.raises(ParameterError, match="tls"):
        NetworkTransport("a", addr, None)
    missing = TLSConfig(pki["a"].cert, str(tmp_path / "nope.key"), pki["a"].ca)
    with pytest.raises(ParameterError, match="tls.key"):
        NetworkTransport("a", addr, missing)
    with pytest.raises(ParameterError, match="tls.ca"):
        NetworkTransport("a", addr, TLSConfig(pki["a"].cert, pki["a"].key, ""))
    # the explicit opt-out works, for debugging only
    a = NetworkTransport("a", addr, None, insecure=True)
    b = NetworkTransport("b", addr, None, insecure=True)
    try:
        a.send("a", "b", "hi", {"x": np.ones(3)})
        assert b.recv("b", "hi", timeout=10).payload["x"].sum() == 3
    finally:
        a.close()
        b.close()


def test_test_pki_keys_are_private(pki):
    for config in pki.values():
        assert stat.S_IMODE(os.stat(config.key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(os.path.dirname(pki["a"].ca), "ca.key")).st_mode) == 0o600


def test_plaintext_peer_cannot_talk_to_tls_peer(addresses, pki):
    addr = {k: addresses[k] for k in "ab"}
    a = NetworkTransport("a", addr, pki["a"], connect_timeout=1.5)
    b = NetworkTransport("b", addr, None, insecure=True, connect_timeout=1.5)
    try:
        try:  # a drops the non-TLS connection: the bytes vanish, or b sees a reset
            b.send("b", "a", "hi", {})
        except PeerFailure as exc:
            assert exc.peer == "a"
        with pytest.raises(PeerFailure) as info:
            a.recv("a", "hi", src="b", timeout=10)
        assert info.value.peer == "b"
    finally:
        a.close()
        b.close()


def test_a_role_cannot_impersonate_another(addresses, pki):
    """c uses b's certificate: a rejects c's connection, and c's when a dials it."""
    addr = {k: addresses[k] for k in "ac"}
    a = NetworkTransport("a", addr, pki["a"], connect_timeout=1.5)
    c = NetworkTransport("c", addr, pki["b"], connect_timeout=1.5)
    try:
        c.send("c", "a", "hello", {})
        with pytest.raises(PeerFailure) as info:
            a.recv("a", "hello", timeout=10)
        assert info.value.peer == "c"
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.reason or "did not connect" in info.value.reason
    finally:
        a.close()
        c.close()


def test_clean_close_is_not_a_failure_and_timeout_names_the_awaited_peer(addresses, pki):
    a, b = pair(addresses, pki)
    try:
        b.send("b", "a", "done", {})
        b.close()
        assert a.recv("a", "done", src="b", timeout=10).stage == "done"
        t0 = time.monotonic()
        with pytest.raises(PeerFailure) as info:
            a.recv("a", "more", src="b", timeout=0.5)
        assert info.value.peer == "b" and "no 'more' message within 0.5s" in info.value.reason
        assert time.monotonic() - t0 < 5
        with pytest.raises(PeerFailure, match="closed"):
            a.send("a", "b", "late", {})
    finally:
        a.close()


def test_a_role_that_finishes_before_a_peer_listens_says_goodbye(addresses, pki):
    """A role done before a slow peer has started (a data party of oblivious training, on
    a loaded machine) closes while its connection to that peer is still being set up:
    the peer must get a goodbye, not a lost connection.  (Before: the late connection was
    closed without one, and the peer failed the run naming this role.)"""
    addr = {k: addresses[k] for k in "ab"}
    a = NetworkTransport("a", addr, pki["a"])
    started = time.monotonic()
    closer = threading.Thread(target=a.close)
    closer.start()                                  # b is not listening yet
    time.sleep(0.8)
    b = NetworkTransport("b", addr, pki["b"])
    try:
        closer.join(10)
        assert not closer.is_alive() and time.monotonic() - started < 6
        time.sleep(1.0)
        assert b.first_failure() is None
        with pytest.raises(PeerFailure, match="closed"):
            b.send("b", "a", "late", {})
    finally:
        b.close()


def test_abort_names_the_culprit(addresses, pki):
    a, b = pair(addresses, pki)
    try:
        b.abort("party-3", "connection lost (reported by b)")
        with pytest.raises(PeerFailure) as info:
            a.recv("a", "anything", timeout=10)
        assert info.value.peer == "party-3"
    finally:
        a.close()
        b.close()


def _frame(kind, body):
    return struct.pack(">BI", kind, len(body)) + body


BAD_FRAMES = {  # what b sends -> what a reports about b
    "unknown kind": (_frame(9, b"xx"), "invalid frame (kind 9"),
    "oversized": (struct.pack(">BI", 2, 2**31), "invalid frame (kind 2, 2147483648 bytes)"),
    "malformed message": (_frame(2, b"\xc1garbage"), "malformed message"),
    "forged sender": (_frame(2, encode_message("c", "a", "x", {})), "labelled c->a"),
    "wrong recipient": (_frame(2, encode_message("b", "c", "x", {})), "labelled b->c"),
    "truncated": (_frame(2, encode_message("b", "a", "x", {"v": 1}))[:-3], "connection lost"),
}


@pytest.mark.parametrize("what", sorted(BAD_FRAMES))
def test_a_peer_sending_a_bad_frame_is_reported_by_name(addresses, pki, what):
    """Anything but hello, then well-formed messages from the authenticated sender, fails it."""
    a = NetworkTransport("a", addresses, pki["a"], connect_timeout=30)
    ctx = pki["b"].client_context()
    raw = ctx.wrap_socket(socket.create_connection(addresses["a"]), server_hostname="a")
    try:
        raw.sendall(_frame(1, b"b") + _frame(2, encode_message("b", "a", "ok", {"v": 1})))
        assert a.recv("a", "ok", src="b", timeout=10).payload == {"v": 1}
        frame, reason = BAD_FRAMES[what]
        raw.sendall(frame)
        if what == "truncated":
            raw.close()
        with pytest.raises(PeerFailure) as info:
            a.recv("a", "next", timeout=10)
        assert info.value.peer == "b" and reason in info.value.reason
    finally:
        raw.close()
        a.close()


CHILD = textwrap.dedent("""
    import json, sys, time
    from ppxgb.net import NetworkTransport
    from ppxgb.tls import TLSConfig
    addr = {k: tuple(v) for k, v in json.loads(sys.argv[1]).items()}
    t = NetworkTransport("b", addr, TLSConfig(*json.loads(sys.argv[2])), peer_timeout=1.0)
    t.send("b", "a", "ready", {})
    t.recv("b", "go", timeout=60)
    time.sleep(60)
""")


def spawn_b(addresses, pki):
    addr = {k: addresses[k] for k in "ab"}
    cfg = pki["b"]
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(addr),
                             json.dumps([cfg.cert, cfg.key, cfg.ca])])


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_dead_or_stopped_peer_raises_peer_failure_naming_it(addresses, pki, how):
    addr = {k: addresses[k] for k in "ab"}
    a = NetworkTransport("a", addr, pki["a"], peer_timeout=1.0)
    child = spawn_b(addresses, pki)
    try:
        a.recv("a", "ready", src="b", timeout=30)
        a.send("a", "b", "go", {})
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(PeerFailure) as info:
            a.recv("a", "result", src="b", timeout=30)
        elapsed = time.monotonic() - t0
        assert info.value.peer == "b"
        if how == "kill":
            assert info.value.reason == "connection lost"
        else:
            assert "stopped answering" in info.value.reason
        assert elapsed < 10  # well within the 30 s recv timeout: detected, not waited out
    finally:
        a.close()
        child.kill()
        child.wait()


def test_parse_address():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:9") == ("::1", 9)
    for bad in ["nohost", ":80", "h:0", "h:port", "h:70000"]:
        with pytest.raises(ParameterError):
            parse_address(bad)
