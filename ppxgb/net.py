"""The network Transport: roles in separate processes, mutual TLS over TCP.

Each role listens on its own address and dials every other role once, at start-up, in
the background. A connection carries traffic in one direction only (the dialer writes,
the acceptor reads), so no TLS object is ever read and written by two threads at once.

Frames are `kind (1 byte) | length (4 bytes, big-endian) | body`:

    HELLO  the dialer's role name; over TLS it must match the name in its certificate
    MSG    one `encode_message` blob, exactly the bytes the in-memory transport counts
    BEAT   a heartbeat, sent every `heartbeat` seconds so silence means a dead peer
    BYE    a clean goodbye: the following end-of-stream is not a failure

A receiver thread per incoming connection decodes messages into one queue and counts
each with `_count` (so `stats` holds what this role received; `sent` what it sent).
`first_failure` names only what this role saw itself (a lost connection, silence, bad
data), never an abort relayed by a peer.
A peer that drops its connection without BYE, or sends nothing (not even a heartbeat)
for `peer_timeout` seconds, or never connects within `connect_timeout`, turns into an
"abort" message naming it, which `recv` raises as PeerFailure(peer).

TLS is required: `tls=None` raises unless `insecure=True` is passed explicitly.
"""

from __future__ import annotations

import queue
import socket
import ssl
import struct
import threading
import time
from abc import abstractmethod
from typing import Callable

from .errors import FormatError, ParameterError, PeerFailure, PeerTimeout
from .tls import TLSConfig, cert_names
from .transport import Message, Transport, decode_message

HELLO, MSG, BEAT, BYE = 1, 2, 3, 4
_HEADER = struct.Struct(">BI")
_MAX_NAME = 256


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Exactly n bytes, or None on a clean end of stream before the first byte."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            if got == 0:
                return None
            raise ConnectionError("stream ended inside a frame")
        got += k
    return bytes(buf)


def parse_address(text: str) -> tuple[str, int]:
    """'host:port' -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError.bad("address", "'host:port'", text)
    return host.strip("[]"), int(port)


class _Outgoing:
    """The write-only connection to one peer."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.sock: socket.socket | None = None
        self.error: str | None = None
        self.lock = threading.Lock()
        self.dead = False


def check_tls(tls: TLSConfig | None, insecure: bool) -> None:
    """TLS material is required; plaintext only with an explicit insecure=True."""
    if tls is None and not insecure:
        raise ParameterError(
            "tls: expected a TLSConfig (certificate, key and CA); plaintext needs an "
            "explicit insecure=True / --insecure, got None")
    if tls is not None and not isinstance(tls, TLSConfig):
        raise ParameterError.bad("tls", "a TLSConfig or None", type(tls).__name__)


class PeerTransport(Transport):
    """What a role's transport in its own process shares, whatever carries its frames:
    one inbox, liveness by heartbeats, failures turned into an abort naming the peer.

    A subclass supplies `_send_to(dst, data)` (one encoded message to a peer),
    `_reachable(dst, wait)` and `close`; it calls `_arrived(peer, data)` for each message it receives,
    `_heard(peer)` for any sign of life, `_bye(peer)` for a clean goodbye, and
    `_check_liveness()` once per heartbeat.
    """

    def __init__(self, me: str, peers: list[str], *, connect_timeout: float, peer_timeout: float,
                 heartbeat: float | None, default_timeout: float | None, send_timeout: float | None,
                 max_message_bytes: int, recorder: Callable[[Message], None] | None):
        super().__init__(recorder)
        for name, value in (("connect_timeout", connect_timeout), ("peer_timeout", peer_timeout)):
            if not value > 0:
                raise ParameterError.bad(name, "a positive number of seconds", value)
        self.me = me
        self.peers = [name for name in peers if name != me]
        self.connect_timeout = float(connect_timeout)
        self.peer_timeout = float(peer_timeout)
        self.heartbeat = float(heartbeat) if heartbeat else max(0.05, min(1.0, peer_timeout / 5))
        self.default_timeout = default_timeout
        self.send_timeout = float(send_timeout) if send_timeout else max(self.peer_timeout, 10.0)
        self.max_message_bytes = int(max_message_bytes)
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._waiting = threading.local()
        self._state = threading.Lock()
        self._closing = threading.Event()
        self._last_seen: dict[str, float] = {}
        self._said_bye: set[str] = set()
        self._started = time.monotonic()

    def _fail(self, peer: str, reason: str) -> None:
        """Record a failure this transport saw first-hand and queue one abort naming
        `peer`, unless `peer` said goodbye or we are closing."""
        with self._state:
            if peer in self._said_bye or self._closing.is_set() or not self._note_failure(peer, reason):
                return
        self._inbox.put(Message(peer, self.me, "abort", {"peer": peer, "reason": reason}, 0))

    def _heard(self, peer: str) -> None:
        self._last_seen[peer] = time.monotonic()

    def _bye(self, peer: str) -> None:
        with self._state:
            self._said_bye.add(peer)

    def _arrived(self, peer: str, data) -> str | None:
        """Queue one message received from `peer`; or the reason to drop the link."""
        try:
            msg = decode_message(data)
        except FormatError as exc:
            return f"sent a malformed message ({exc})"
        if msg.src != peer or msg.dst != self.me:
            return f"sent a message labelled {msg.src}->{msg.dst} on its own connection"
        self._count(msg)
        self._inbox.put(msg)
        return None

    def _check_liveness(self) -> None:
        """Fail a peer that did not connect within connect_timeout, or went silent."""
        now = time.monotonic()
        with self._state:
            snapshot = dict(self._last_seen)
        for peer in self.peers:
            seen = snapshot.get(peer)
            if seen is None:
                if now - self._started > self.connect_timeout:
                    self._fail(peer, f"did not connect within {self.connect_timeout:g}s")
            elif now - seen > self.peer_timeout:
                self._fail(peer, f"stopped answering (silent for {now - seen:.1f}s)")

    @abstractmethod
    def _send_to(self, dst: str, data) -> None:
        """Send one encoded message to peer `dst`, or raise PeerFailure naming it."""

    def _deliver(self, src: str, dst: str, data) -> None:
        if src != self.me:
            raise ParameterError.bad("src", f"this transport's role {self.me!r}", src)
        if len(data) > self.max_message_bytes:
            raise ParameterError.bad("payload", f"at most {self.max_message_bytes} encoded bytes", len(data))
        if dst == self.me:
            msg = decode_message(data)
            self._count(msg)
            self._inbox.put(msg)
        elif dst not in self.peers:
            raise ParameterError.bad("dst", f"one of {sorted(self.peers)}", dst)
        else:
            self._send_to(dst, data)

    @abstractmethod
    def _reachable(self, dst: str, wait: float) -> bool:
        """Whether a message to `dst` can go out now, waiting up to `wait` s for its link."""

    def abort(self, peer: str, reason: str, wait: float = 2.0) -> None:
        """Tell every reachable peer that this run failed because of `peer` (best effort).

        Waits up to `wait` seconds in all for connections that are still being set up.
        Unlike a failure seen first-hand, this is not recorded for `first_failure`.
        """
        deadline = time.monotonic() + wait
        for dst in self.peers:
            if not self._reachable(dst, max(0.0, deadline - time.monotonic())) or dst in self._said_bye:
                continue
            try:
                self.send(self.me, dst, "abort", {"peer": peer, "reason": reason})
            except PeerFailure:
                pass

    def recv(self, me: str, stage: str, src: str | None = None,
             timeout: float | None = None) -> Message:
        self._waiting.what = (stage, src)
        return super().recv(me, stage, src, timeout)

    def _next(self, me: str, timeout: float | None) -> Message:
        if me != self.me:
            raise ParameterError.bad("me", f"this transport's role {self.me!r}", me)
        timeout = self.default_timeout if timeout is None else timeout
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            stage, src = getattr(self._waiting, "what", ("any", None))
            raise PeerTimeout(me, f"no {stage!r} message within {timeout:g}s", awaited=src) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NetworkTransport(PeerTransport):
    """Transport for one role (`me`) in its own process; see the module docstring."""

    def __init__(self, me: str, addresses: dict[str, tuple[str, int]], tls: TLSConfig | None,
                 *, insecure: bool = False, connect_timeout: float = 30.0,
                 peer_timeout: float = 30.0, heartbeat: float | None = None,
                 default_timeout: float | None = 3600.0, send_timeout: float | None = None,
                 max_message_bytes: int = 1 << 30,
                 recorder: Callable[[Message], None] | None = None):
        if me not in addresses:
            raise ParameterError.bad("me", f"one of {sorted(addresses)}", me)
        check_tls(tls, insecure)
        super().__init__(me, list(addresses), connect_timeout=connect_timeout, peer_timeout=peer_timeout,
                         heartbeat=heartbeat, default_timeout=default_timeout, send_timeout=send_timeout,
                         max_message_bytes=max_message_bytes, recorder=recorder)
        self.addresses = {name: (str(h), int(p)) for name, (h, p) in addresses.items()}
        self.tls = tls
        self._server_ctx = tls.server_context() if tls else None
        self._client_ctx = tls.client_context() if tls else None
        self._out = {name: _Outgoing() for name in self.peers}
        self._incoming: dict[str, socket.socket] = {}

        host, port = self.addresses[me]
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._listener = socket.create_server((host, port), family=family, backlog=64)
        except OSError as exc:
            raise ParameterError(f"address of {me}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._listener.settimeout(0.2)
        self._threads = [threading.Thread(target=self._accept_loop, name=f"{me}-accept", daemon=True),
                         threading.Thread(target=self._watch_loop, name=f"{me}-watch", daemon=True)]
        self._threads += [threading.Thread(target=self._dial, args=(peer,), name=f"{me}-dial-{peer}",
                                           daemon=True) for peer in self.peers]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ dialing

    def _dial(self, peer: str) -> None:
        out = self._out[peer]
        host, port = self.addresses[peer]
        deadline = self._started + self.connect_timeout
        delay = 0.02
        last = "no attempt"
        while not self._closing.is_set() and peer not in self._said_bye:
            sock = None
            try:
                sock = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._client_ctx is not None:
                    sock = self._client_ctx.wrap_socket(sock, server_hostname=peer)
                sock.settimeout(self.send_timeout)
                name = self.me.encode()
                sock.sendall(_HEADER.pack(HELLO, len(name)) + name)
                out.sock = sock
                out.ready.set()
                if self._closing.is_set():        # closed while connecting: still say goodbye
                    with out.lock:
                        try:
                            sock.sendall(_HEADER.pack(BYE, 0))
                        except OSError:
                            pass
                    sock.close()
                return
            except ssl.SSLError as exc:
                # a certificate problem does not heal by retrying, and is never downgraded
                if sock is not None:
                    sock.close()
                out.error = f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
                break
            except OSError as exc:
                if sock is not None:
                    sock.close()
                last = f"{exc.__class__.__name__}: {exc.strerror or exc}"
            if time.monotonic() + delay > deadline:
                out.error = f"could not connect to {host}:{port} within {self.connect_timeout:g}s ({last})"
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        out.error = out.error or "transport closed"
        out.dead = True
        out.ready.set()
        self._fail(peer, out.error)

    # ---------------------------------------------------------------- accepting

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name=f"{self.me}-conn").start()

    def _handshake(self, sock: socket.socket) -> tuple[socket.socket, str] | None:
        """TLS handshake and HELLO; the claimed name must be in the peer's certificate."""
        sock.settimeout(self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._server_ctx is not None:
                sock = self._server_ctx.wrap_socket(sock, server_side=True)
            header = _recv_exact(sock, _HEADER.size)
            if header is None:
                raise ConnectionError("closed before hello")
            kind, length = _HEADER.unpack(header)
            if kind != HELLO or length > _MAX_NAME:
                raise ConnectionError("bad hello")
            name = (_recv_exact(sock, length) or b"").decode("utf-8", "replace")
            if name not in self._out:
                raise ConnectionError(f"unknown role {name!r}")
            if self._server_ctx is not None and name not in cert_names(sock.getpeercert() or {}):
                raise ConnectionError(f"certificate does not name {name!r}")
        except (OSError, ssl.SSLError, ConnectionError, struct.error):
            sock.close()
            return None
        sock.settimeout(None)
        return sock, name

    def _read_body(self, sock: socket.socket, length: int, peer: str) -> bytes:
        """A frame body, read in chunks so a long transfer counts as a sign of life."""
        parts = []
        left = length
        while left > 0:
            chunk = _recv_exact(sock, min(left, 1 << 20))
            if chunk is None:
                raise ConnectionError("stream ended inside a frame")
            parts.append(chunk)
            left -= len(chunk)
            self._heard(peer)
        return b"".join(parts)

    def _serve(self, raw: socket.socket) -> None:
        accepted = self._handshake(raw)
        if accepted is None:
            return  # an unauthenticated connection is dropped without affecting anyone
        sock, peer = accepted
        with self._state:
            old = self._incoming.get(peer)
            self._incoming[peer] = sock
            self._last_seen[peer] = time.monotonic()
        if old is not None:
            old.close()
        reason = "connection lost"
        try:
            while True:
                header = _recv_exact(sock, _HEADER.size)
                if header is None:
                    break
                kind, length = _HEADER.unpack(header)
                self._heard(peer)
                if kind == BEAT:
                    continue
                if kind == BYE:
                    self._bye(peer)
                    return
                if kind != MSG or length > self.max_message_bytes:
                    reason = f"sent an invalid frame (kind {kind}, {length} bytes)"
                    break
                bad = self._arrived(peer, self._read_body(sock, length, peer))
                if bad:
                    reason = bad
                    break
        except (OSError, ConnectionError, ssl.SSLError):
            pass
        finally:
            sock.close()
        with self._state:
            current = self._incoming.get(peer) is sock
        if current and not self._closing.is_set():
            self._fail(peer, reason)

    # ------------------------------------------------------ heartbeats, liveness

    def _watch_loop(self) -> None:
        beat = _HEADER.pack(BEAT, 0)
        while not self._closing.wait(self.heartbeat):
            for peer, out in self._out.items():
                if out.ready.is_set() and not out.dead and out.lock.acquire(blocking=False):
                    try:
                        out.sock.sendall(beat)
                    except OSError:
                        out.dead = True  # the reader side reports the failure
                    finally:
                        out.lock.release()
            self._check_liveness()

    # ---------------------------------------------------------------- Transport

    def _write(self, dst: str, frame: bytes, body=None) -> None:
        out = self._out.get(dst)
        if out is None:
            raise ParameterError.bad("dst", f"one of {sorted(self._out)}", dst)
        deadline = time.monotonic() + self.connect_timeout
        while not out.ready.wait(0.05):
            if dst in self._said_bye or self._closing.is_set():
                break
            if time.monotonic() > deadline:
                raise PeerFailure(dst, f"not connected after {self.connect_timeout:g}s")
        if self._closing.is_set():
            raise PeerFailure(self.me, "transport is closed")
        if dst in self._said_bye:
            raise PeerFailure(dst, "has already closed its transport")
        if out.dead or out.sock is None:
            raise PeerFailure(dst, out.error or "connection lost")
        with out.lock:
            try:
                out.sock.sendall(frame)
                if body is not None:
                    out.sock.sendall(body)
            except socket.timeout:
                out.dead = True
                raise PeerFailure(dst, f"not reading (send blocked for {self.send_timeout:g}s)") from None
            except OSError as exc:
                out.dead = True
                raise PeerFailure(dst, f"connection lost ({exc.__class__.__name__})") from None

    def _send_to(self, dst: str, data) -> None:
        head = _HEADER.pack(MSG, len(data))
        if isinstance(data, bytes):         # one write, as before drafts existed
            self._write(dst, head + data)
        else:                               # a drafted message: no copy of its arrays
            self._write(dst, head, data)

    def _reachable(self, dst: str, wait: float) -> bool:
        out = self._out[dst]
        out.ready.wait(wait)
        return out.ready.is_set() and not out.dead

    def close(self) -> None:
        """Say goodbye to every peer, then release sockets; idempotent."""
        if self._closing.is_set():
            return
        # a connection still being set up (a role that finished before a slow peer was
        # listening): let it finish, so that peer gets a goodbye and not a lost connection
        deadline = time.monotonic() + min(5.0, self.connect_timeout)
        for out in self._out.values():
            out.ready.wait(max(0.0, deadline - time.monotonic()))
        self._closing.set()
        bye = _HEADER.pack(BYE, 0)
        for out in self._out.values():
            if out.sock is None:
                continue
            with out.lock:
                if not out.dead:
                    try:
                        out.sock.settimeout(min(2.0, self.send_timeout))
                        out.sock.sendall(bye)
                    except OSError:
                        pass
                try:
                    out.sock.close()
                except OSError:
                    pass
        try:
            self._listener.close()
        except OSError:
            pass
        with self._state:
            incoming = list(self._incoming.values())
        for sock in incoming:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
