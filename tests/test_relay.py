"""The relay transport in one process: the same models as in memory, and what a curious
or malicious relay sees and can do.

Every role gets its own RelayTransport (as if in its own process); a small facade lets
the training code, which takes one transport, drive them all.  The relay's view is its
`_forward` hook: every frame exactly as it forwards it.
"""

from __future__ import annotations

import collections
import threading
import time

import grpc
import numpy as np
import pytest
from scipy import stats

from cryptography.exceptions import InvalidTag

from ppxgb import e2e
from ppxgb.errors import PeerFailure
from ppxgb.relay import BEAT, HELLO, METHOD, SEALED, Relay, RelayTransport, _options, _read, _route, _unroute
from ppxgb.tls import make_test_pki
from ppxgb.training.horizontal import run_federation, role_names
from ppxgb.transport import InMemoryTransport, Transport

pytestmark = pytest.mark.timeout(120)

PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "max_bin": 16}


class PerRole(Transport):
    """One transport object over per-role transports: role `src` sends with its own, role `me` receives with its own."""

    def __init__(self, ends: dict[str, Transport]):
        super().__init__()
        self.ends = ends

    def send(self, src, dst, stage, payload):
        self.ends[src].send(src, dst, stage, payload)

    def send_draft(self, draft):
        self.ends[draft.src].send_draft(draft)

    def recv(self, me, stage, src=None, timeout=None):
        return self.ends[me].recv(me, stage, src, timeout)

    def _deliver(self, src, dst, data):
        raise AssertionError("unused")

    def _next(self, me, timeout):
        raise AssertionError("unused")

    def abort(self, peer, reason, wait=2.0):
        for end in self.ends.values():
            end.abort(peer, reason, wait=0.5)


class RecordingRelay(Relay):
    """A relay that keeps every frame it forwards and may alter one (the attacker)."""

    def __init__(self, *args, alter=None, **kw):
        super().__init__(*args, **kw)
        self.frames: list[tuple[str, str, bytes]] = []
        self.alter = alter
        self._frames_lock = threading.Lock()

    def _forward(self, src, dst, frame):
        with self._frames_lock:
            self.frames.append((src, dst, frame))
        return self.alter(src, dst, frame) if self.alter else frame


def _data(seed=0, parties=3):
    rng = np.random.default_rng(seed)
    out = []
    for n in (400, 300, 350)[:parties]:
        X = rng.normal(size=(n, 5))
        y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(float)
        out.append((X, y))
    return out


def _ends(relay, pki, names, session, insecure=False, **kw):
    return {n: RelayTransport(n, names, relay.address, None if insecure else pki[n], insecure=insecure,
                              session=session, **kw) for n in names}


def _train_through(relay, pki, session, insecure=False):
    parties, servers, coordinator = role_names(3, 2)
    names = [coordinator, *parties, *servers]
    received: list = []
    ends = _ends(relay, pki, names, session, insecure)
    for s in servers:
        ends[s].recorder = received.append
    try:
        model, _ = run_federation(PARAMS, _data(), 3, 2, transport=PerRole(ends), timeout=60)
    finally:
        for end in ends.values():
            end.close()
    shares = [m for m in received if m.src in parties]
    return model, shares, ends


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One horizontal training sealed end to end, and one in plaintext (the mutant), each
    through a recording relay; and the in-memory model."""
    pki = make_test_pki(tmp_path_factory.mktemp("pki"), ["relay", "coordinator", "party-0", "party-1", "party-2",
                                                         "server-0", "server-1"])
    out = {"pki": pki}
    with RecordingRelay("127.0.0.1", 0, pki["relay"]) as relay:
        out["sealed"] = (*_train_through(relay, pki, "sealed"), relay.frames)
    with RecordingRelay("127.0.0.1", 0, insecure=True) as relay:
        out["plain"] = (*_train_through(relay, pki, "plain", insecure=True), relay.frames)
    out["memory"], _ = run_federation(PARAMS, _data(), 3, 2, transport=InMemoryTransport(), timeout=60)
    return out


def _opens(channel, src, dst, frame) -> bool:
    """Whether either of `channel`'s keys opens a sealed frame of the link src -> dst."""
    _, _, body = _unroute(frame)
    for key in (channel._open_key, channel._seal_key):
        try:
            key.decrypt(b"\0\0\0\0" + body[:8], body[8:], e2e.Channel._aad(channel.session, src, dst))
            return True
        except InvalidTag:
            pass
    return False


def _party_to_server(frames):
    return [(s, d, f) for s, d, f in frames if s.startswith("party") and d.startswith("server")
            and _unroute(f)[1] == SEALED]


def test_a_relay_run_by_the_coordinator_cannot_open_the_shares(runs, monkeypatch):
    """The relay operator also holds the coordinator's keys: they open none of the frames
    parties send to servers.  The mutant gives every link the same keys; then the
    coordinator's keys open them all."""
    _, _, ends, frames = runs["sealed"]
    mine = ends["coordinator"]._channels
    to_servers = _party_to_server(frames)
    assert len(to_servers) > 50
    assert all(mine[p]._open_key is not None for p in mine)
    assert not any(_opens(c, s, d, f) for s, d, f in to_servers for c in mine.values())

    class OneKey:                      # the mutant: a federation-wide key, whatever the pair
        def __init__(self, **kw):
            pass

        def derive(self, secret):
            return bytes(range(64))

    monkeypatch.setattr(e2e, "HKDF", OneKey)
    pki = runs["pki"]
    with RecordingRelay("127.0.0.1", 0, pki["relay"]) as relay:
        _, _, bad_ends = _train_through(relay, pki, "one-key")
        leaked = _party_to_server(relay.frames)
    monkeypatch.undo()
    coordinator = bad_ends["coordinator"]._channels
    opened = sum(any(_opens(c, s, d, f) for c in coordinator.values()) for s, d, f in leaked)
    assert opened == len(leaked) > 50


def test_training_through_the_relay_gives_the_in_memory_model(runs):
    memory = runs["memory"].to_booster().save_raw("json")
    assert runs["sealed"][0].to_booster().save_raw("json") == memory
    assert runs["plain"][0].to_booster().save_raw("json") == memory


def _words(shares, per_message=64, seed=0):
    """8-byte words of the share arrays the servers received (what a relay must not read)."""
    rng = np.random.default_rng(seed)
    words = set()
    for msg in shares:
        for value in msg.payload.values():
            if isinstance(value, np.ndarray) and value.dtype.itemsize == 8 and value.size >= 16:
                flat = value.reshape(-1)
                for i in rng.choice(flat.size, size=min(per_message, flat.size), replace=False):
                    word = flat[i:i + 1].tobytes()
                    if len(set(word)) > 2:          # skip 0, 1 and other low-entropy words
                        words.add(word)
    return words


def _hits(words, frames):
    """How many of the words occur anywhere (at any byte offset) in the relay's frames."""
    blob = b"".join(f for _, _, f in frames)
    wanted = np.frombuffer(b"".join(sorted(words)), dtype=np.uint64)
    found = np.zeros(wanted.size, dtype=bool)
    for offset in range(8):
        words_here = np.sort(np.frombuffer(blob, dtype=np.uint64, count=(len(blob) - offset) // 8, offset=offset))
        at = np.searchsorted(words_here, wanted).clip(0, words_here.size - 1)
        found |= words_here[at] == wanted
    return int(found.sum())


def test_the_relay_reads_no_share_a_party_sent(runs):
    _, shares, _, frames = runs["sealed"]
    words = _words(shares)
    assert len(words) > 500
    assert _hits(words, frames) == 0
    # the mutant: the same run without end-to-end sealing shows the relay every share
    _, plain_shares, _, plain_frames = runs["plain"]
    plain_words = _words(plain_shares)
    assert _hits(plain_words, plain_frames) > 0.95 * len(plain_words)


def _bodies(frames):
    """Sealed frame contents past the routing header and the 8-byte counter."""
    out = []
    for _, _, f in frames:
        src, kind, body = _unroute(f)
        if kind == SEALED and len(body) > 64:
            out.append(body[8:])
    return out


def test_sealed_frames_look_random_apart_from_their_headers(runs):
    bodies = _bodies(runs["sealed"][3])
    data = np.frombuffer(b"".join(bodies), dtype=np.uint8)
    assert data.size > 1_000_000
    counts = np.bincount(data, minlength=256)
    p = stats.chisquare(counts).pvalue
    assert p > 1e-4, p
    plain = np.frombuffer(b"".join(_bodies(runs["plain"][3])), dtype=np.uint8)
    assert stats.chisquare(np.bincount(plain, minlength=256)).pvalue < 1e-12   # the mutant is not


def test_the_relay_sees_routing_and_hellos_only(runs):
    frames = runs["sealed"][3]
    kinds = collections.Counter(_unroute(f)[1] for _, _, f in frames)
    assert set(kinds) == {HELLO, SEALED}
    assert kinds[HELLO] == 6 * 5                       # one per ordered pair of the 6 roles
    # every routed name is the true sender: the relay stamps it from the authenticated stream
    assert all(_unroute(f)[0] == src for src, _, f in frames)


# ------------------------------------------------------------------ tampering

def _pair(tmp_path, alter=None, chunk_bytes=1 << 20, **kw):
    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b"])
    relay = RecordingRelay("127.0.0.1", 0, pki["relay"], alter=alter)
    relay.pki = pki
    ends = _ends(relay, pki, ["a", "b"], "t", chunk_bytes=chunk_bytes, **kw)
    return relay, ends


def _close(relay, ends):
    for end in ends.values():
        end.close()
    relay.stop()


class Tamper:
    """Alter the n-th sealed frame from a to b: flip a byte, drop it, or send it twice."""

    def __init__(self, how, nth=2):
        self.how, self.nth, self.seen, self.done = how, nth, 0, False

    def __call__(self, src, dst, frame):
        name, kind, body = _unroute(frame)
        if (src, dst, kind) != ("a", "b", SEALED):
            return frame
        self.seen += 1
        if self.seen != self.nth or self.done:
            return frame
        self.done = True
        if self.how == "flip":
            body = bytearray(body)
            body[len(body) // 2] ^= 0x01
            return _route(name, kind, bytes(body))
        if self.how == "drop":
            return None
        if self.how == "replay":
            self.replayed = frame
            return frame
        raise AssertionError(self.how)


@pytest.mark.parametrize("how", ["flip", "drop"])
def test_an_altered_or_dropped_frame_aborts_naming_the_link(tmp_path, how):
    tamper = Tamper(how)
    relay, ends = _pair(tmp_path, alter=tamper, heartbeat=60)
    a, b = ends["a"], ends["b"]
    try:
        for i in range(4):
            a.send("a", "b", "x", {"v": np.arange(1000) + i})
        got = []
        with pytest.raises(PeerFailure) as info:
            for _ in range(4):
                got.append(b.recv("b", "x", src="a", timeout=20).payload["v"][0])
        assert tamper.done
        assert info.value.peer == "a" and "link a -> b through the relay" in info.value.reason
        assert got == [0]                            # the message before the altered frame arrived intact
    finally:
        _close(relay, ends)


def test_a_replayed_frame_aborts_naming_the_link(tmp_path):
    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b"])
    held = []

    def replay(src, dst, frame):
        if (src, dst, _unroute(frame)[1]) == ("a", "b", SEALED):
            held.append(frame)
        return frame

    relay = RecordingRelay("127.0.0.1", 0, pki["relay"], alter=replay)
    ends = _ends(relay, pki, ["a", "b"], "t", heartbeat=60)
    a, b = ends["a"], ends["b"]
    try:
        a.send("a", "b", "x", {"v": np.arange(10)})
        assert b.recv("b", "x", src="a", timeout=20).payload["v"][0] == 0
        relay._post(relay._sessions["t"].boxes["b"], held[0], _Active())   # the relay sends it again
        with pytest.raises(PeerFailure) as info:
            b.recv("b", "x", src="a", timeout=20)
        assert info.value.peer == "a" and "arrived where frame 1 was due" in info.value.reason
    finally:
        _close(relay, ends)


class _Active:
    @staticmethod
    def is_active():
        return True


def test_a_flipped_byte_goes_unnoticed_without_sealing(tmp_path):
    """The mutant for the tamper tests: in plaintext mode the same flip is delivered as data."""
    tamper = Tamper("flip", nth=1)
    relay = RecordingRelay("127.0.0.1", 0, insecure=True, alter=tamper)
    ends = {n: RelayTransport(n, ["a", "b"], relay.address, None, insecure=True, session="t", heartbeat=60)
            for n in "ab"}
    try:
        sent = np.arange(20_000, dtype=np.uint64) * 7919
        ends["a"].send("a", "b", "x", {"v": sent})
        got = ends["b"].recv("b", "x", src="a", timeout=20).payload["v"]
        assert tamper.done and not np.array_equal(got, sent)   # corrupted, and nobody noticed
    finally:
        _close(relay, ends)


# ------------------------------------------------------------------ handshake

def test_a_relay_cannot_stand_in_for_a_role(tmp_path):
    """The relay swaps a's hello for one it made: a certificate from its own CA naming a,
    or b's genuine certificate (a role it could impersonate?); b refuses either."""
    rogue = make_test_pki(tmp_path / "rogue", ["a"])
    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b", "c"])
    for identity, expected in ((e2e.Identity("a", rogue["a"]), "not signed by the federation's CA"),
                               (e2e.Identity("c", pki["c"]), "certificate is for 'c', not 'a'")):
        fake = e2e.Channel("a", "b", identity, "h")

        def swap(src, dst, frame, fake=fake):
            if (src, dst, _unroute(frame)[1]) == ("a", "b", HELLO):
                return _route("a", HELLO, fake.hello())
            return frame

        relay = RecordingRelay("127.0.0.1", 0, pki["relay"], alter=swap)
        ends = _ends(relay, pki, ["a", "b"], "h")
        try:
            with pytest.raises(PeerFailure) as info:
                ends["b"].recv("b", "x", src="a", timeout=20)
            assert info.value.peer == "a" and expected in info.value.reason, info.value.reason
        finally:
            _close(relay, ends)


def test_the_relay_refuses_a_role_whose_certificate_names_another(tmp_path):
    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b"])
    with Relay("127.0.0.1", 0, pki["relay"]) as relay:
        # RelayTransport checks its own certificate first, so the lie is told at the gRPC level
        creds = grpc.ssl_channel_credentials(_read(pki["b"].ca), _read(pki["b"].key), _read(pki["b"].cert))
        channel = grpc.secure_channel(f"127.0.0.1:{relay.port}", creds,
                                      _options(1 << 20) + [("grpc.ssl_target_name_override", "relay")])
        call = channel.stream_stream(METHOD)(iter([_route("b", HELLO, b"x")]), metadata=(
            ("ppxgb-role", "a"), ("ppxgb-session", "x"), ("ppxgb-roles", "a,b")))
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "common name is not 'a'" in info.value.details()
        assert relay.sessions() == {}
        channel.close()
    with pytest.raises(Exception, match="common name is 'a'"):
        RelayTransport("a", ["a", "b"], ("127.0.0.1", 1), pki["b"], session="x")


def test_every_session_has_fresh_keys(tmp_path, monkeypatch):
    """The same message in two sessions never gives the same ciphertext; the mutant that
    reuses one X25519 key (and so one session key) does, and the check sees it."""
    def first_sealed(fixed_key=None):
        if fixed_key is not None:
            monkeypatch.setattr(e2e.X25519PrivateKey, "generate", staticmethod(lambda: fixed_key))
        relay, ends = _pair(tmp_path / str(time.monotonic_ns()), heartbeat=60)
        try:
            ends["a"].send("a", "b", "x", {"v": np.arange(64)})
            ends["b"].recv("b", "x", src="a", timeout=20)
            return next(_unroute(f)[2] for s, d, f in relay.frames if (s, d) == ("a", "b") and _unroute(f)[1] == SEALED)
        finally:
            _close(relay, ends)

    assert first_sealed() != first_sealed()
    fixed = e2e.X25519PrivateKey.generate()
    # with reused keys and a new certificate each time the signature still differs,
    # but the sealed frame (same key, same counter, same message) repeats
    assert first_sealed(fixed) == first_sealed(fixed)


# ------------------------------------------------------------------ sizes and failures

def test_a_large_message_crosses_in_chunks_no_larger_than_the_limit(tmp_path):
    relay, ends = _pair(tmp_path, chunk_bytes=64 << 10, heartbeat=60)
    try:
        big = np.random.default_rng(1).integers(0, 2**63, size=600_000, dtype=np.uint64)   # 4.8 MB
        ends["a"].send("a", "b", "big", {"v": big})
        assert np.array_equal(ends["b"].recv("b", "big", src="a", timeout=60).payload["v"], big)
        sealed = [len(f) for s, d, f in relay.frames if (s, d) == ("a", "b") and _unroute(f)[1] == SEALED]
        assert len(sealed) >= 4_800_000 // (64 << 10) and max(sealed) <= (64 << 10) + 64
    finally:
        _close(relay, ends)


def test_a_role_that_drops_off_is_named_at_once(tmp_path):
    relay, ends = _pair(tmp_path, peer_timeout=60)
    try:
        ends["a"].send("a", "b", "x", {})
        ends["b"].recv("b", "x", src="a", timeout=20)
        ends["a"]._grpc.close()                 # its process died: no goodbye
        started = time.monotonic()
        with pytest.raises(PeerFailure) as info:
            ends["b"].recv("b", "y", src="a", timeout=30)
        assert info.value.peer == "a" and "lost its connection to the relay" in info.value.reason
        assert time.monotonic() - started < 10            # long before the 60 s peer timeout
    finally:
        _close(relay, ends)


def test_a_lost_relay_is_named(tmp_path):
    relay, ends = _pair(tmp_path)
    try:
        ends["a"].send("a", "b", "x", {})
        ends["b"].recv("b", "x", src="a", timeout=20)
        relay.stop(grace=0)
        for me in "ab":
            with pytest.raises(PeerFailure) as info:
                ends[me].recv(me, "y", timeout=30)
            assert info.value.peer == "relay", info.value
    finally:
        for end in ends.values():
            end.close()


def test_a_goodbye_is_not_a_failure(tmp_path):
    relay, ends = _pair(tmp_path)
    try:
        ends["a"].send("a", "b", "x", {"k": 1})
        ends["a"].close()
        assert ends["b"].recv("b", "x", src="a", timeout=20).payload == {"k": 1}
        time.sleep(1.0)                      # the relay's notice that a left arrives after a's goodbye
        assert ends["b"].first_failure(wait=0.0) is None
    finally:
        _close(relay, ends)


def test_a_second_role_of_the_same_name_is_refused_by_name(tmp_path):
    relay, ends = _pair(tmp_path)
    twin = RelayTransport("a", ["a", "b"], relay.address, relay.pki["a"], session="t")
    try:
        ends["a"].send("a", "b", "x", {})
        ends["b"].recv("b", "x", src="a", timeout=20)
        with pytest.raises(PeerFailure) as info:
            twin.recv("a", "x", timeout=20)
        assert info.value.peer == "relay" and "refused 'a' (ALREADY_EXISTS" in info.value.reason
        assert relay.sessions() == {"t": ["a", "b"]}        # the first 'a' is untouched
        ends["a"].send("a", "b", "y", {})
        ends["b"].recv("b", "y", src="a", timeout=20)
    finally:
        twin.close()
        _close(relay, ends)


# ------------------------------------------------------------------ findings of the review

class SealAtEnqueue(RelayTransport):
    """The mutant: heartbeats sealed before they are queued, dropped when the queue is full."""

    def _watch_loop(self):
        import queue as _queue
        while not self._closing.wait(self.heartbeat):
            for peer, ready in self._ready.items():
                if ready.is_set() and self._locks[peer].acquire(blocking=False):
                    try:
                        self._outq.put_nowait(_route(peer, SEALED, self._channels[peer].seal(BEAT)))
                    except _queue.Full:
                        pass
                    finally:
                        self._locks[peer].release()
            self._check_liveness()


def _slow_uplink_run(tmp_path, cls):
    """a sends 12 MB to b over a slow uplink (the relay forwards a's big frames slowly) while
    heartbeats to b and to an idle c keep being due; returns the first failure b or c saw
    (None when healthy)."""
    def slow(src, dst, frame):
        if (src, dst) == ("a", "b") and len(frame) > 60_000:
            time.sleep(0.004)
        return frame

    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b", "c"])
    relay = RecordingRelay("127.0.0.1", 0, pki["relay"], alter=slow)
    ends = {n: (cls if n == "a" else RelayTransport)(n, ["a", "b", "c"], relay.address, pki[n], session="s",
                                                   heartbeat=0.02, chunk_bytes=64 << 10, peer_timeout=20)
            for n in "abc"}
    try:
        for n in "bc":
            ends["a"].send("a", n, "hi", {})
            ends[n].recv(n, "hi", src="a", timeout=20)
        try:
            ends["a"].send("a", "b", "big", {"v": np.zeros(1_500_000, dtype=np.uint64)})
            ends["b"].recv("b", "big", src="a", timeout=60)
            ends["a"].send("a", "c", "after", {})
            ends["c"].recv("c", "after", src="a", timeout=20)
        except PeerFailure:
            pass
        return ends["b"].first_failure(wait=0.0) or ends["c"].first_failure(wait=0.0)
    finally:
        _close(relay, ends)


def test_heartbeats_skipped_on_a_busy_stream_leave_no_gap(tmp_path):
    assert _slow_uplink_run(tmp_path / "real", RelayTransport) is None
    failure = _slow_uplink_run(tmp_path / "mutant", SealAtEnqueue)
    assert failure is not None and failure[0] == "a" and "was due" in failure[1]


def test_a_hello_is_bound_to_its_session(tmp_path, monkeypatch):
    """A relay serving two runs of the same roles cannot splice them: a hello from one
    session does not verify in the other.  The mutant leaves the session out of the
    signed text, and the spliced hello is accepted."""
    pki = make_test_pki(tmp_path / "pki", ["a", "b"])
    ids = {n: e2e.Identity(n, pki[n]) for n in "ab"}

    def splice():
        other = e2e.Channel("a", "b", ids["a"], "run-1")
        mine = e2e.Channel("b", "a", ids["b"], "run-2")
        try:
            mine.accept_hello(other.hello())
            return True
        except e2e.ChannelError:
            return False

    assert not splice()
    monkeypatch.setattr(e2e, "_signed_text", lambda session, src, dst, public: e2e.msgpack.packb([src, dst, public]))
    assert splice()


def test_the_relay_keeps_mailboxes_for_the_roster_only(tmp_path):
    """A role that sends to a name outside its session's roster loses its stream; no
    mailbox is made for the name (a relay's memory is bounded by the rosters)."""
    relay, ends = _pair(tmp_path, peer_timeout=60)
    try:
        ends["a"].send("a", "b", "x", {})
        ends["b"].recv("b", "x", src="a", timeout=20)
        ends["a"]._outq.put(_route("nobody", HELLO, b"x"))
        with pytest.raises(PeerFailure) as info:
            ends["a"].recv("a", "y", timeout=20)
        assert info.value.peer == "relay"
        assert set(relay._sessions.get("t").boxes) == {"a", "b"}
        with pytest.raises(PeerFailure) as info:
            ends["b"].recv("b", "y", timeout=20)
        assert info.value.peer == "a" and "as the relay reports" in info.value.reason
    finally:
        _close(relay, ends)


def test_a_role_with_another_roster_cannot_join_a_session(tmp_path):
    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b", "x"])
    with Relay("127.0.0.1", 0, pki["relay"]) as relay:
        ends = _ends(relay, pki, ["a", "b"], "t")
        intruder = RelayTransport("x", ["a", "b", "x"], relay.address, pki["x"], session="t")
        try:
            with pytest.raises(PeerFailure) as info:
                intruder.recv("x", "y", timeout=20)
            assert info.value.peer == "relay" and "FAILED_PRECONDITION" in info.value.reason
            assert "another roster" in info.value.reason
            ends["a"].send("a", "b", "x", {})
            ends["b"].recv("b", "x", src="a", timeout=20)
        finally:
            intruder.close()
            for end in ends.values():
                end.close()


def test_one_role_name_holds_a_bounded_number_of_streams(tmp_path):
    pki = make_test_pki(tmp_path / "pki", ["relay", "a", "b"])
    with Relay("127.0.0.1", 0, pki["relay"], max_streams_per_role=2) as relay:
        hogs = [RelayTransport("a", ["a", "b"], relay.address, pki["a"], session=f"s{i}", connect_timeout=1.5)
                for i in range(3)]
        try:
            refused = []
            for hog in hogs:
                try:
                    hog.recv("a", "y", timeout=10)
                except PeerFailure as exc:
                    refused.append(exc)
            assert len(refused) == 3     # two give up waiting for b, one is refused
            assert sum("RESOURCE_EXHAUSTED" in e.reason and e.peer == "relay" for e in refused) == 1
        finally:
            for hog in hogs:
                hog.close()


def test_names_are_checked_before_anything_is_sent(tmp_path):
    pki = make_test_pki(tmp_path / "pki", ["a", "b"])
    for roles, me, session, match in ((["a", "localhost"], "a", "s", "none of"),
                                      (["a", "relay"], "a", "s", "none of"),
                                      (["a", "b\n"], "a", "s", "roles"),
                                      (["a", "b"], "a", "", "session"),
                                      (["a", "b"], "a", "x y", "session")):
        with pytest.raises(Exception, match=match):
            RelayTransport(me, roles, ("127.0.0.1", 1), pki["a"], session=session)


def test_tiny_message_parts_are_refused(tmp_path):
    relay, ends = _pair(tmp_path)
    try:
        ends["a"].send("a", "b", "x", {})
        ends["b"].recv("b", "x", src="a", timeout=20)
        ends["a"]._outq.put(("b", 1, b"z"))          # a PART of one byte
        with pytest.raises(PeerFailure) as info:
            ends["b"].recv("b", "y", src="a", timeout=20)
        assert info.value.peer == "a" and "message part of 1 bytes" in info.value.reason
    finally:
        _close(relay, ends)


def test_a_second_relay_cannot_share_a_port():
    from ppxgb.errors import ParameterError
    with Relay("127.0.0.1", 0, insecure=True) as first:
        with pytest.raises(ParameterError, match="cannot listen on"):
            Relay("127.0.0.1", first.port, insecure=True)


def test_an_unreachable_relay_is_named_not_the_peers(tmp_path):
    """Until this role reaches the relay, a late peer and a missing relay look alike:
    the failure names the relay, every time."""
    from helpers import free_ports
    port = free_ports(1)[0]
    for _ in range(4):
        end = RelayTransport("p", ["c", "p"], ("127.0.0.1", port), None, insecure=True, session="s",
                             connect_timeout=1.0)
        try:
            with pytest.raises(PeerFailure) as info:
                end.recv("p", "x", timeout=10)
            assert info.value.peer == "relay" and "could not connect to the relay" in info.value.reason
        finally:
            end.close()
