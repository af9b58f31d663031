"""A relay that every role dials out to, over gRPC, and the Transport that uses it.

Hospitals rarely open an inbound port; they do let a process dial out over TLS.  So
instead of the full mesh of `ppxgb.net`, each role keeps one gRPC bidirectional stream
to a relay (`ppxgb relay`), which forwards frames between the roles of one session.

Every frame between two roles is sealed end to end (`ppxgb.e2e`: a hello signed with
the role certificate, X25519, ChaCha20-Poly1305 with a counter, all bound to the
session), so the relay cannot read, forge, alter, replay, reorder or drop a frame
without the run aborting.  It does see who talks to whom, when, and the size of every
message; in vertical training sizes depend on the data (the rows in each node being
split, how many splits each feature holder owns), so the relay learns those counts.
Mutual TLS on the stream authenticates each role to the relay (its certificate's
common name must be the role it claims) and the relay to each role.

A session has a roster, fixed by its first role to join: the relay refuses roles
outside it, frames to names outside it, a second role of the same name, and more than
`max_streams_per_role` streams at once per role name; it keeps one bounded mailbox per
roster name, so one role cannot make it hold more than the roster's mailboxes.

gRPC messages are raw bytes, no protobuf:

    role -> relay   len(dst) (1 byte) | dst | type (1 byte) | body
    relay -> role   len(src) (1 byte) | src | type | body      (src "" = the relay)

    type HELLO   body = the sender's signed hello (`Channel.hello`)
    type SEALED  body = one sealed frame (`Channel.seal`)
    type GONE    from the relay: body = the name of a role whose stream ended
    type STALLED from the relay: body = the name of a role that stopped reading

Inside a sealed frame the kind is PART or LAST (a message is cut into chunks of at
most `chunk_bytes`, so no gRPC message grows with the data), BEAT (a heartbeat, every
`heartbeat` seconds) or BYE (a clean goodbye).

Failures work as on the mesh: a peer whose stream ended without BYE (GONE), that stops
reading (STALLED), is silent for `peer_timeout` or never says hello within
`connect_timeout` turns into an abort naming it; a lost relay names "relay"; a frame
that fails to open names the link it came over.  GONE and STALLED are the relay's word
(the reason says so): a lying relay can blame a healthy role, as it can stop any run.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from concurrent import futures
from typing import Callable

import grpc

from .e2e import Channel, ChannelError, Identity
from .errors import ParameterError, PeerFailure
from .net import PeerTransport, check_tls, parse_address
from .tls import TLSConfig
from .transport import Message

__all__ = ["Relay", "RelayTransport", "RELAY", "CHUNK_BYTES"]

RELAY = "relay"                          # the name failures of the relay itself carry
RESERVED = {RELAY, "localhost"}          # never role names: certificates carry them for TLS
METHOD = "/ppxgb.Relay/Connect"
HELLO, SEALED, GONE, STALLED = 1, 2, 3, 4
PART, LAST, BEAT, BYE = 1, 2, 3, 4
CHUNK_BYTES = 1 << 20
MIN_CHUNK = 64 << 10                     # a PART frame carries at least this much
_SLACK = 64 << 10                        # room for a frame's routing, counter and tag
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(what: str, name: str) -> str:
    """Role and session names: 1-64 of A-Z a-z 0-9 . _ - (they travel in gRPC metadata and logs)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParameterError.bad(what, "1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'", name)
    return name


def _route(name: str, kind: int, body: bytes = b"") -> bytes:
    raw = name.encode()
    return bytes([len(raw)]) + raw + bytes([kind]) + body


def _unroute(frame: bytes) -> tuple[str, int, bytes]:
    n = frame[0]
    return frame[1:1 + n].decode("utf-8", "replace"), frame[1 + n], frame[2 + n:]


def _options(chunk_bytes: int) -> list[tuple[str, int]]:
    limit = chunk_bytes + _SLACK
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
            ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ============================================================================ relay

class _Mailbox:
    """Frames waiting for one role of one session; bounded, so a slow reader slows its senders."""

    def __init__(self, frames: int):
        self.frames: queue.Queue[bytes | None] = queue.Queue(maxsize=frames)
        self.online = False
        self.closed = False


class _Session:
    """The roles of one run: a fixed roster, one mailbox each."""

    def __init__(self, roster: tuple[str, ...], frames: int):
        self.roster = roster
        self.boxes = {role: _Mailbox(frames) for role in roster}


class Relay:
    """The relay service: forwards frames between the roles of each session.

    `record(src, dst, frame)` (tests) sees every frame it forwards, as it forwards it;
    `log(line)` gets one line per role joining or leaving a session.
    A role whose mailbox stays full for `stall_timeout` seconds is declared stalled to
    its session.  The relay keeps no state of a session once all its roles have left.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: TLSConfig | None = None, *,
                 insecure: bool = False, chunk_bytes: int = CHUNK_BYTES, mailbox_frames: int = 64,
                 stall_timeout: float = 30.0, workers: int = 256, max_streams_per_role: int = 8,
                 record: Callable[[str, str, bytes], None] | None = None,
                 log: Callable[[str], None] | None = None):
        check_tls(tls, insecure)
        if not stall_timeout > 0:
            raise ParameterError.bad("stall_timeout", "a positive number of seconds", stall_timeout)
        self.tls = tls
        self.stall_timeout = float(stall_timeout)
        self.mailbox_frames = int(mailbox_frames)
        self.max_streams_per_role = int(max_streams_per_role)
        self._streams: dict[str, int] = {}      # role name -> streams open, over all sessions
        self.record = record
        self.log = log or (lambda line: None)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._stopping = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay"),
                                   maximum_concurrent_rpcs=workers, options=_options(chunk_bytes) + [
                                       ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
                                       ("grpc.so_reuseport", 0)])   # a second relay on the port fails
        handler = grpc.method_handlers_generic_handler("ppxgb.Relay", {
            "Connect": grpc.stream_stream_rpc_method_handler(self._connect)})
        self._server.add_generic_rpc_handlers((handler,))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if tls is not None:
                tls.check()
                creds = grpc.ssl_server_credentials([(_read(tls.key), _read(tls.cert))],
                                                    root_certificates=_read(tls.ca), require_client_auth=True)
                self.port = self._server.add_secure_port(address, creds)
            else:
                self.port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ParameterError(f"relay: cannot listen on {host}:{port}: {exc}") from None
        self.host = host
        self._server.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # ------------------------------------------------------------- one role

    def _identify(self, context) -> tuple[str, str, tuple[str, ...]]:
        meta = dict(context.invocation_metadata())
        role, session = meta.get("ppxgb-role", ""), meta.get("ppxgb-session", "")
        roster = tuple(str(meta.get("ppxgb-roles", "")).split(","))
        try:
            for what, name in (("role", role), ("session", session), *(("roster", r) for r in roster)):
                check_name(what, name)
        except ParameterError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if role not in roster or len(set(roster)) != len(roster) or RESERVED & set(roster):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the roster must hold {role!r} once, no name twice, and neither of {sorted(RESERVED)}")
        if self.tls is not None:
            names = context.auth_context().get("x509_common_name", [])
            if [n.decode("utf-8", "replace") for n in names] != [role]:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"the certificate's common name is not {role!r}")
        return role, session, tuple(sorted(roster))

    def _join(self, role: str, session: str, roster: tuple[str, ...]):
        """(session, mailbox, None, "") for a role that may join; else (None, None, status, refusal)."""
        with self._lock:
            if self._streams.get(role, 0) >= self.max_streams_per_role:
                return (None, None, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{role!r} already has {self.max_streams_per_role} streams open")
            sess = self._sessions.get(session)
            if sess is None:
                sess = self._sessions[session] = _Session(roster, self.mailbox_frames)
            elif sess.roster != roster:
                return None, None, grpc.StatusCode.FAILED_PRECONDITION, f"session {session!r} was opened with another roster"
            box = sess.boxes[role]
            if box.online or box.closed:
                return (None, None, grpc.StatusCode.ALREADY_EXISTS,
                        f"{role!r} is already connected to (or has left) session {session!r}")
            box.online = True
            self._streams[role] = self._streams.get(role, 0) + 1
            return sess, box, None, ""

    def _connect(self, requests, context):
        role, session, roster = self._identify(context)
        sess, box, code, refusal = self._join(role, session, roster)
        if sess is None:
            context.abort(code, refusal)
        reader = threading.Thread(target=self._pump, args=(requests, context, session, sess, role, box),
                                  name=f"relay-{role}", daemon=True)
        reader.start()
        while True:
            try:
                frame = box.frames.get(timeout=0.5)
            except queue.Empty:
                if not context.is_active() or self._stopping.is_set():
                    break
                continue
            if frame is None:
                break
            yield frame

    def _pump(self, requests, context, session: str, sess: _Session, role: str, box: _Mailbox) -> None:
        """Forward every frame `role` sends; then tell its session it has gone."""
        self.log(f"session {session!r}: {role} joined")
        how = "left"
        try:
            for frame in requests:
                dst, kind, body = _unroute(frame)
                target = sess.boxes.get(dst)
                if target is None or dst == role or kind not in (HELLO, SEALED):
                    how = "sent a frame outside its session's roster; its stream is closed"
                    break
                out = self._forward(role, dst, _route(role, kind, body))
                if out is not None and not self._post(target, out, context):
                    self.log(f"session {session!r}: {dst} stopped reading for {self.stall_timeout:g}s")
                    self._notify(sess, STALLED, dst)
        except grpc.RpcError:
            how = "lost its connection"
        except Exception:    # a malformed frame ends this role's stream, nothing else
            how = "sent a malformed frame"
        finally:
            self._leave(session, sess, role, box)
            self.log(f"session {session!r}: {role} {how}")

    def _forward(self, src: str, dst: str, frame: bytes) -> bytes | None:
        """The frame as the relay passes it on (None drops it); the hook tests tamper through."""
        if self.record is not None:
            self.record(src, dst, frame)
        return frame

    def _post(self, target: _Mailbox, frame: bytes, context) -> bool:
        """Queue one frame; False if its reader stalled (the frame is dropped)."""
        deadline = time.monotonic() + self.stall_timeout
        while not target.closed and context.is_active() and not self._stopping.is_set():
            try:
                target.frames.put(frame, timeout=0.2)
                return True
            except queue.Full:
                if time.monotonic() > deadline:
                    target.closed = True
                    return False
        return True

    def _notify(self, sess: _Session, kind: int, name: str) -> None:
        with self._lock:
            boxes = [b for r, b in sess.boxes.items() if r != name and b.online]
        for b in boxes:
            try:
                b.frames.put(_route("", kind, name.encode()), timeout=1.0)
            except queue.Full:
                pass

    def _leave(self, session: str, sess: _Session, role: str, box: _Mailbox) -> None:
        with self._lock:
            box.online, box.closed = False, True
            self._streams[role] -= 1
            if not self._streams[role]:
                del self._streams[role]
            if not any(b.online for b in sess.boxes.values()) and self._sessions.get(session) is sess:
                del self._sessions[session]
        try:
            box.frames.put_nowait(None)      # ends the role's response stream
        except queue.Full:
            pass
        self._notify(sess, GONE, role)

    def sessions(self) -> dict[str, list[str]]:
        """Roles online per session (for tests and the service's log)."""
        with self._lock:
            return {s: sorted(r for r, b in sess.boxes.items() if b.online) for s, sess in self._sessions.items()}

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float | None = 0.5) -> None:
        self._stopping.set()
        self._server.stop(grace).wait()

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ====================================================================== transport

class RelayTransport(PeerTransport):
    """Transport for one role in its own process that reaches its peers through a relay.

    `roles` are all the session's role names (this one included; its roster at the
    relay); `relay` the relay's (host, port); `relay_name` the name its certificate
    must carry.  Roles of one run share a `session` name, to which every channel is
    bound; the same roles run again in a new session.

    Frames are queued unsealed and sealed as the stream takes them, so a heartbeat
    skipped on a busy stream (or a send that times out) never leaves a gap in a
    channel's counters.
    """

    def __init__(self, me: str, roles: list[str], relay: tuple[str, int] | str, tls: TLSConfig | None, *,
                 session: str, insecure: bool = False, relay_name: str = RELAY,
                 connect_timeout: float = 30.0, peer_timeout: float = 30.0, heartbeat: float | None = None,
                 default_timeout: float | None = 3600.0, send_timeout: float | None = None,
                 max_message_bytes: int = 1 << 30, chunk_bytes: int = CHUNK_BYTES,
                 recorder: Callable[[Message], None] | None = None):
        for name in roles:
            check_name("roles", name)
        if len(set(roles)) != len(roles) or RESERVED & set(roles):
            raise ParameterError.bad("roles", f"distinct names, none of {sorted(RESERVED)}", roles)
        if me not in roles:
            raise ParameterError.bad("me", f"one of {sorted(roles)}", me)
        check_name("session", session)
        check_tls(tls, insecure)
        if not MIN_CHUNK <= chunk_bytes <= 64 << 20:
            raise ParameterError.bad("chunk_bytes", "between 64 KiB and 64 MiB", chunk_bytes)
        super().__init__(me, list(roles), connect_timeout=connect_timeout, peer_timeout=peer_timeout,
                         heartbeat=heartbeat, default_timeout=default_timeout, send_timeout=send_timeout,
                         max_message_bytes=max_message_bytes, recorder=recorder)
        host, port = parse_address(relay) if isinstance(relay, str) else relay
        self.relay_address = (str(host), int(port))
        self.session = session
        self.roster = ",".join(sorted(roles))
        self.chunk_bytes = int(chunk_bytes)
        identity = Identity(me, tls) if tls is not None else None
        self._channels = {p: Channel(me, p, identity, session) for p in self.peers}
        self._ready = {p: threading.Event() for p in self.peers}
        self._locks = {p: threading.Lock() for p in self.peers}
        self._broken: set[str] = set()
        self._parts: dict[str, list[bytes]] = {p: [] for p in self.peers}
        self._part_bytes = dict.fromkeys(self.peers, 0)
        self._outq: queue.Queue[bytes | tuple | None] = queue.Queue(maxsize=64)
        self._ended = threading.Event()       # the relay closed our stream (or it broke)
        self._stream_up = threading.Event()   # connected to the relay (TLS handshake done)

        target = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        options = _options(self.chunk_bytes)
        if tls is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=_read(tls.ca), private_key=_read(tls.key),
                                                 certificate_chain=_read(tls.cert))
            self._grpc = grpc.secure_channel(target, creds, options + [("grpc.ssl_target_name_override", relay_name)])
        else:
            self._grpc = grpc.insecure_channel(target, options)
        for peer, channel in self._channels.items():
            self._outq.put(_route(peer, HELLO, channel.hello()))
        self._threads = [threading.Thread(target=self._read_loop, name=f"{me}-relay-read", daemon=True),
                         threading.Thread(target=self._watch_loop, name=f"{me}-relay-watch", daemon=True)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------- the stream

    def _requests(self):
        """The stream's frames: hellos as queued, (dst, kind, body) sealed here, in queue order."""
        while True:
            item = self._outq.get()
            if item is None:
                return
            if isinstance(item, tuple):
                dst, kind, body = item
                item = _route(dst, SEALED, self._channels[dst].seal(kind, body))
            yield item

    def _read_loop(self) -> None:
        host, port = self.relay_address
        try:
            grpc.channel_ready_future(self._grpc).result(timeout=self.connect_timeout)
        except grpc.FutureTimeoutError:
            self._ended.set()
            self._fail(RELAY, f"could not connect to the relay at {host}:{port} within {self.connect_timeout:g}s "
                       "(is it running, and did one CA sign its certificate and this role's?)")
            return
        self._stream_up.set()
        reason = "closed the stream"
        try:
            call = self._grpc.stream_stream(METHOD)(self._requests(), metadata=(
                ("ppxgb-role", self.me), ("ppxgb-session", self.session), ("ppxgb-roles", self.roster)))
            for frame in call:
                self._on_frame(*_unroute(frame))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else ""
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ALREADY_EXISTS,
                        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED):
                reason = f"refused {self.me!r} ({code.name}: {detail})"
            else:
                reason = f"connection lost ({code.name if code else 'error'}{': ' + detail if detail else ''})"
        finally:
            self._ended.set()
        if not self._closing.is_set():
            self._fail(RELAY, f"at {host}:{port}: {reason}")

    def _drop(self, src: str, reason: str) -> None:
        """Ignore every later frame from `src` and fail it: its link can no longer be trusted."""
        self._broken.add(src)
        self._fail(src, reason)

    def _on_frame(self, src: str, kind: int, body: bytes) -> None:
        if src == "":                       # the relay's own notices
            name = body.decode("utf-8", "replace")
            if name in self._channels and kind in (GONE, STALLED):
                self._fail(name, "lost its connection to the relay (as the relay reports)" if kind == GONE
                           else "stopped reading (the relay reports it could not deliver to it)")
            return
        channel = self._channels.get(src)
        if channel is None or src in self._broken:
            return
        try:
            if kind == HELLO:
                channel.accept_hello(body)
                self._heard(src)
                self._ready[src].set()
                return
            if kind != SEALED or not channel.ready:
                raise ChannelError(f"frame of type {kind} before the hello")
            part, chunk = channel.open(body)
        except ChannelError as exc:
            self._drop(src, f"link {src} -> {self.me} through the relay: {exc}")
            return
        self._heard(src)
        if part == BEAT:
            return
        if part == BYE:
            self._bye(src)
            return
        if part == PART and len(chunk) < MIN_CHUNK:
            self._drop(src, f"sent a message part of {len(chunk)} bytes (parts carry at least {MIN_CHUNK})")
            return
        parts = self._parts[src]
        parts.append(chunk)
        self._part_bytes[src] += len(chunk)
        if part == LAST:
            self._parts[src], self._part_bytes[src] = [], 0
            bad = self._arrived(src, b"".join(parts))
            if bad:
                self._drop(src, bad)
        elif self._part_bytes[src] > self.max_message_bytes:
            self._drop(src, f"sent a message over {self.max_message_bytes} bytes")

    def _check_liveness(self) -> None:
        """Peers are judged only once this role reaches the relay: until then, a late
        peer and an unreachable relay look alike, and the relay is the one to name."""
        if self._stream_up.is_set():
            super()._check_liveness()

    def _watch_loop(self) -> None:
        while not self._closing.wait(self.heartbeat):
            for peer, ready in self._ready.items():
                lock = self._locks[peer]
                if ready.is_set() and peer not in self._broken and lock.acquire(blocking=False):
                    try:
                        self._outq.put_nowait((peer, BEAT, b""))
                    except queue.Full:
                        pass                 # the stream is busy: that is a sign of life too
                    finally:
                        lock.release()
            self._check_liveness()

    # ------------------------------------------------------------ Transport

    def _put(self, dst: str, kind: int, body) -> None:
        if self._ended.is_set():
            raise PeerFailure(RELAY, "the connection to the relay is closed")
        try:
            self._outq.put((dst, kind, body), timeout=self.send_timeout)
        except queue.Full:
            raise PeerFailure(dst, f"not reading (sending through the relay blocked for {self.send_timeout:g}s)") from None

    def _send_to(self, dst: str, data) -> None:
        if self._ended.is_set():
            raise PeerFailure(RELAY, "the connection to the relay is closed")
        if not self._ready[dst].wait(self.connect_timeout):
            raise PeerFailure(dst, f"no hello through the relay after {self.connect_timeout:g}s")
        if self._closing.is_set():
            raise PeerFailure(self.me, "transport is closed")
        if dst in self._said_bye:
            raise PeerFailure(dst, "has already closed its transport")
        view = memoryview(data).cast("B")
        with self._locks[dst]:
            for start in range(0, len(view), self.chunk_bytes):
                end = start + self.chunk_bytes
                self._put(dst, LAST if end >= len(view) else PART, view[start:end])

    def _reachable(self, dst: str, wait: float) -> bool:
        ready = self._ready[dst]
        ready.wait(wait)
        return ready.is_set() and dst not in self._broken and not self._ended.is_set()

    def close(self) -> None:
        """Say goodbye to every peer, end the stream, and wait (briefly) for the relay to close it."""
        if self._closing.is_set():
            return
        deadline = time.monotonic() + min(5.0, self.connect_timeout)
        for peer, ready in self._ready.items():
            if peer not in self._broken and not self._ended.is_set():
                ready.wait(max(0.0, deadline - time.monotonic()))
        self._closing.set()
        if not self._ended.is_set():
            for peer, ready in self._ready.items():
                if ready.is_set() and peer not in self._broken:
                    with self._locks[peer]:
                        try:
                            self._outq.put((peer, BYE, b""), timeout=2.0)
                        except queue.Full:
                            pass
            try:
                self._outq.put(None, timeout=2.0)
            except queue.Full:
                pass
            self._ended.wait(5.0)
        self._grpc.close()
