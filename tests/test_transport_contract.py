"""The Transport contract, run against every transport.

What the launchers (app/deploy.py) and the roles rely on: sent and received counts
equal the encoded message sizes; `abort` reaches every other role and names the
culprit; a timeout is a PeerTimeout naming the sender waited for; `first_failure`
names the first failure a transport saw itself.  Each test runs once over the
in-memory transport (one object for every role), once over the emulated links of
ppxgb/shaping.py, once over the network transport (one object per role, mutual
TLS on loopback), and once through a relay (ppxgb/relay.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from ppxgb.errors import PeerFailure, PeerTimeout, ProtocolError
from ppxgb.net import NetworkTransport
from ppxgb.relay import Relay, RelayTransport
from ppxgb.shaping import ShapedTransport
from ppxgb.tls import make_test_pki
from ppxgb.transport import Blank, InMemoryTransport, Transport, draft_message, encode_message

from helpers import free_ports

pytestmark = pytest.mark.timeout(60)


class MemoryWorld:
    """Every role shares one InMemoryTransport."""

    def __init__(self, tmp_path, names, absent=(), connect=20.0):
        self.transport = InMemoryTransport(default_timeout=10)

    def end(self, name: str) -> Transport:
        return self.transport

    def see_failure(self, observer: str, victim: str) -> None:
        """Make `observer` see `victim` fail: it waits for a message that never comes."""
        with pytest.raises(PeerTimeout):
            self.transport.recv(observer, "never", src=victim, timeout=0.05)

    def close(self) -> None:
        self.transport.close()


class ShapedWorld(MemoryWorld):
    """Every role shares one ShapedTransport (emulated 1 Gbit/s, 1 ms links)."""

    def __init__(self, tmp_path, names, absent=(), connect=20.0):
        self.transport = ShapedTransport("1gbit,1ms", default_timeout=10)


class NetworkWorld:
    """One NetworkTransport per present role; absent roles never come up."""

    def __init__(self, tmp_path, names, absent=(), connect=20.0):
        pki = make_test_pki(tmp_path / "pki", list(names))
        addresses = {n: ("127.0.0.1", p) for n, p in zip(names, free_ports(len(names)))}
        self.ends = {n: NetworkTransport(n, addresses, pki[n], connect_timeout=connect, peer_timeout=10.0)
                     for n in names if n not in absent}

    def end(self, name: str) -> Transport:
        return self.ends[name]

    def see_failure(self, observer: str, victim: str) -> None:
        """The victim was built absent: the observer sees it never connect."""
        assert victim not in self.ends

    def close(self) -> None:
        for t in self.ends.values():
            t.close()


class RelayWorld(NetworkWorld):
    """One RelayTransport per present role, all through one relay (TLS to it, sealed end to end)."""

    def __init__(self, tmp_path, names, absent=(), connect=20.0):
        pki = make_test_pki(tmp_path / "pki", ["relay", *names])
        self.relay = Relay("127.0.0.1", 0, pki["relay"])
        self.ends = {n: RelayTransport(n, list(names), self.relay.address, pki[n], session="contract",
                                       connect_timeout=connect, peer_timeout=10.0)
                     for n in names if n not in absent}

    def close(self) -> None:
        super().close()
        self.relay.stop()


@pytest.fixture(params=[MemoryWorld, ShapedWorld, NetworkWorld, RelayWorld],
                ids=["memory", "shaped", "network", "relay"])
def world(request, tmp_path):
    made = []

    def make(names="abc", absent=(), connect=20.0):
        w = request.param(tmp_path / f"world{len(made)}", list(names), absent, connect)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_a_transport_must_implement_abort():
    class Partial(Transport):
        def _deliver(self, src, dst, data):
            pass

        def _next(self, me, timeout):
            raise PeerTimeout(me, "never")

    with pytest.raises(TypeError, match="abort"):
        Partial()


def test_sent_and_received_counts_are_encoded_sizes(world):
    w = world("ab")
    a, b = w.end("a"), w.end("b")
    payload = {"g": np.arange(10, dtype=np.uint64), "round": 1}
    size = len(encode_message("a", "b", "shares", payload))
    a.send("a", "b", "shares", payload)
    draft = draft_message("a", "b", "drafted", {"x": Blank((4,), np.float64), "k": 2})
    draft.arrays["x"][:] = 1.5
    a.send_draft(draft)
    assert b.recv("b", "shares", src="a", timeout=10).size == size
    assert b.recv("b", "drafted", src="a", timeout=10).payload["x"].tolist() == [1.5] * 4
    sizes = size + len(draft.data)
    assert (a.sent_messages, a.sent_bytes) == (2, sizes)
    assert (b.total_messages, b.total_bytes) == (2, sizes)
    assert a.sent[("a", "b")] == [2, sizes]
    assert a.first_failure(wait=0.0) is None  # nothing failed


def test_abort_reaches_every_other_role_naming_the_culprit(world):
    w = world("abc")
    a = w.end("a")
    for other in "bc":  # the roles are up and talking
        a.send("a", other, "hello", {})
        w.end(other).recv(other, "hello", src="a", timeout=10)
    a.abort("a", "disk on fire", wait=5.0)
    for other in "bc":
        with pytest.raises(PeerFailure) as info:
            w.end(other).recv(other, "next", src="a", timeout=10)
        assert not isinstance(info.value, (PeerTimeout, ProtocolError))
        assert (info.value.peer, info.value.reason) == ("a", "disk on fire")


def test_abort_never_raises_for_a_role_that_is_gone(world):
    w = world("abc", absent="c")
    a, b = w.end("a"), w.end("b")
    a.send("a", "b", "hello", {})
    b.recv("b", "hello", src="a", timeout=10)
    a.abort("c", "never came up", wait=0.0)
    with pytest.raises(PeerFailure, match="never came up"):
        b.recv("b", "next", timeout=10)


def test_a_timeout_is_a_peer_timeout_naming_the_awaited_sender(world):
    w = world("ab")
    a = w.end("a")
    with pytest.raises(PeerTimeout) as info:
        a.recv("a", "shares", src="b", timeout=0.2)
    assert isinstance(info.value, PeerFailure)
    assert info.value.awaited == "b" and info.value.peer == "b" and info.value.me == "a"
    with pytest.raises(PeerTimeout) as info:
        a.recv("a", "shares", timeout=0.2)  # any sender would have done: no one to blame
    assert info.value.awaited is None and info.value.me == "a"


def test_first_failure_names_the_first_failure_seen_and_keeps_it(world):
    w = world("abc", absent="c", connect=1.0)
    a = w.end("a")
    w.see_failure("a", "c")
    first = a.first_failure(wait=10.0)
    assert first is not None and first[0] == "c" and isinstance(first[1], str) and first[1]
    a.abort("b", "a later failure", wait=0.5)
    assert a.first_failure(wait=0.0) == first
