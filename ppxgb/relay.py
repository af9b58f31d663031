"""A relay that every role dials out to, over gRPC, and the Transport that uses it.

Hospitals rarely open an inbound port; they do let a process dial out over TLS.  So
instead of the full mesh of `ppxgb.net`, each role keeps one gRPC bidirectional stream
to a relay (`ppxgb relay`), which forwards frames between the roles of one session.

The relay learns nothing it could use: every frame between two roles is sealed end to
end (`ppxgb.e2e`: a hello signed with the role certificate, X25519, ChaCha20-Poly1305
with a counter), so it sees only who talks to whom, when, and how much.  Mutual TLS
on the stream authenticates each role to the relay (its certificate must name the
role it claims) and the relay to each role.

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
that fails to open names the link it came over.
"""

from __future__ import annotations

import queue
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
METHOD = "/ppxgb.Relay/Connect"
HELLO, SEALED, GONE, STALLED = 1, 2, 3, 4
PART, LAST, BEAT, BYE = 1, 2, 3, 4
CHUNK_BYTES = 1 << 20
_SLACK = 64 << 10                        # room for a frame's routing, counter and tag


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


class Relay:
    """The relay service: forwards frames between the roles of each session.

    `record(src, dst, frame)` (tests) sees every frame it forwards, as it forwards it;
    `log(line)` gets one line per role joining or leaving a session.
    A role whose mailbox stays full for `stall_timeout` seconds is declared stalled to
    its session.  The relay keeps no state of a session once all its roles have left.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: TLSConfig | None = None, *,
                 insecure: bool = False, chunk_bytes: int = CHUNK_BYTES, mailbox_frames: int = 64,
                 stall_timeout: float = 30.0, workers: int = 256,
                 record: Callable[[str, str, bytes], None] | None = None,
                 log: Callable[[str], None] | None = None):
        check_tls(tls, insecure)
        if not stall_timeout > 0:
            raise ParameterError.bad("stall_timeout", "a positive number of seconds", stall_timeout)
        self.tls = tls
        self.stall_timeout = float(stall_timeout)
        self.mailbox_frames = int(mailbox_frames)
        self.record = record
        self.log = log or (lambda line: None)
        self._lock = threading.Lock()
        self._sessions: dict[str, dict[str, _Mailbox]] = {}
        self._stopping = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay"),
                                   options=_options(chunk_bytes) + [
                                       ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000)])
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

    def _mailbox(self, session: str, role: str) -> _Mailbox:
        with self._lock:
            return self._sessions.setdefault(session, {}).setdefault(role, _Mailbox(self.mailbox_frames))

    def _identify(self, context) -> tuple[str, str]:
        meta = dict(context.invocation_metadata())
        role, session = meta.get("ppxgb-role", ""), meta.get("ppxgb-session", "")
        if not role or len(role.encode()) > 255:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no role name (metadata ppxgb-role)")
        if self.tls is not None:
            auth = context.auth_context()
            names = {v.decode("utf-8", "replace") for key in ("x509_subject_alternative_name", "x509_common_name")
                     for v in auth.get(key, [])}
            if role not in names:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"the certificate does not name {role!r}")
        return role, session

    def _connect(self, requests, context):
        role, session = self._identify(context)
        with self._lock:
            box = self._sessions.setdefault(session, {}).setdefault(role, _Mailbox(self.mailbox_frames))
            taken = box.online or box.closed
            if not taken:
                box.online = True
        if taken:
            context.abort(grpc.StatusCode.ALREADY_EXISTS,
                          f"{role!r} is already connected to (or has left) session {session!r}")
        reader = threading.Thread(target=self._pump, args=(requests, context, session, role, box),
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

    def _pump(self, requests, context, session: str, role: str, box: _Mailbox) -> None:
        """Forward every frame `role` sends; then tell its session it has gone."""
        self.log(f"session {session!r}: {role} joined")
        how = "left"
        try:
            for frame in requests:
                dst, kind, body = _unroute(frame)
                if not dst or kind not in (HELLO, SEALED):
                    continue
                out = self._forward(role, dst, _route(role, kind, body))
                if out is not None and not self._post(self._mailbox(session, dst), out, context):
                    self.log(f"session {session!r}: {dst} stopped reading for {self.stall_timeout:g}s")
                    self._notify(session, STALLED, dst)
        except grpc.RpcError:
            how = "lost its connection"
        except Exception:    # a malformed frame ends this role's stream, nothing else
            how = "sent a malformed frame"
        finally:
            self._leave(session, role, box)
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

    def _notify(self, session: str, kind: int, name: str) -> None:
        with self._lock:
            boxes = [b for r, b in self._sessions.get(session, {}).items() if r != name and b.online]
        for b in boxes:
            try:
                b.frames.put(_route("", kind, name.encode()), timeout=1.0)
            except queue.Full:
                pass

    def _leave(self, session: str, role: str, box: _Mailbox) -> None:
        with self._lock:
            box.online, box.closed = False, True
            roles = self._sessions.get(session, {})
            if not any(b.online for b in roles.values()):
                self._sessions.pop(session, None)
        try:
            box.frames.put_nowait(None)      # ends the role's response stream
        except queue.Full:
            pass
        self._notify(session, GONE, role)

    def sessions(self) -> dict[str, list[str]]:
        """Roles online per session (for tests and the service's log)."""
        with self._lock:
            return {s: sorted(r for r, b in roles.items() if b.online) for s, roles in self._sessions.items()}

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

    `roles` are all the session's role names (this one included); `relay` the relay's
    (host, port); `relay_name` the name its certificate must carry.  Roles of one run
    share a `session` name; the same roles can run again in a new session.
    """

    def __init__(self, me: str, roles: list[str], relay: tuple[str, int] | str, tls: TLSConfig | None, *,
                 insecure: bool = False, session: str = "", relay_name: str = RELAY,
                 connect_timeout: float = 30.0, peer_timeout: float = 30.0, heartbeat: float | None = None,
                 default_timeout: float | None = 3600.0, send_timeout: float | None = None,
                 max_message_bytes: int = 1 << 34, chunk_bytes: int = CHUNK_BYTES,
                 recorder: Callable[[Message], None] | None = None):
        if me not in roles:
            raise ParameterError.bad("me", f"one of {sorted(roles)}", me)
        if len(set(roles)) != len(roles) or any(not r or len(r.encode()) > 255 for r in roles):
            raise ParameterError.bad("roles", "distinct non-empty names of at most 255 bytes", roles)
        check_tls(tls, insecure)
        if not 1024 <= chunk_bytes <= 64 << 20:
            raise ParameterError.bad("chunk_bytes", "between 1 KiB and 64 MiB", chunk_bytes)
        super().__init__(me, list(roles), connect_timeout=connect_timeout, peer_timeout=peer_timeout,
                         heartbeat=heartbeat, default_timeout=default_timeout, send_timeout=send_timeout,
                         max_message_bytes=max_message_bytes, recorder=recorder)
        host, port = parse_address(relay) if isinstance(relay, str) else relay
        self.relay_address = (str(host), int(port))
        self.session = str(session)
        self.chunk_bytes = int(chunk_bytes)
        identity = Identity(me, tls) if tls is not None else None
        self._channels = {p: Channel(me, p, identity) for p in self.peers}
        self._ready = {p: threading.Event() for p in self.peers}
        self._locks = {p: threading.Lock() for p in self.peers}
        self._broken: set[str] = set()
        self._parts: dict[str, list[bytes]] = {p: [] for p in self.peers}
        self._part_bytes = dict.fromkeys(self.peers, 0)
        self._outq: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._ended = threading.Event()       # the relay closed our stream (or it broke)

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
        while True:
            frame = self._outq.get()
            if frame is None:
                return
            yield frame

    def _read_loop(self) -> None:
        host, port = self.relay_address
        try:
            grpc.channel_ready_future(self._grpc).result(timeout=self.connect_timeout)
        except grpc.FutureTimeoutError:
            self._ended.set()
            self._fail(RELAY, f"could not connect to the relay at {host}:{port} within {self.connect_timeout:g}s")
            return
        reason = "closed the stream"
        try:
            call = self._grpc.stream_stream(METHOD)(self._requests(), metadata=(
                ("ppxgb-role", self.me), ("ppxgb-session", self.session)))
            for frame in call:
                self._on_frame(*_unroute(frame))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else ""
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ALREADY_EXISTS,
                        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):
                reason = f"refused {self.me!r} ({code.name}: {detail})"
            else:
                reason = f"connection lost ({code.name if code else 'error'}{': ' + detail if detail else ''})"
        finally:
            self._ended.set()
        if not self._closing.is_set():
            self._fail(RELAY, f"at {host}:{port}: {reason}")

    def _on_frame(self, src: str, kind: int, body: bytes) -> None:
        if src == "":                       # the relay's own notices
            name = body.decode("utf-8", "replace")
            if name in self._channels and kind in (GONE, STALLED):
                self._fail(name, "lost its connection to the relay" if kind == GONE
                           else "stopped reading (the relay could not deliver to it)")
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
            self._broken.add(src)
            self._fail(src, f"link {src} -> {self.me} through the relay: {exc}")
            return
        self._heard(src)
        if part == BEAT:
            return
        if part == BYE:
            self._bye(src)
            return
        parts = self._parts[src]
        parts.append(chunk)
        self._part_bytes[src] += len(chunk)
        if part == LAST:
            self._parts[src], self._part_bytes[src] = [], 0
            bad = self._arrived(src, b"".join(parts))
            if bad:
                self._broken.add(src)
                self._fail(src, bad)
        elif self._part_bytes[src] > self.max_message_bytes:
            self._broken.add(src)
            self._fail(src, f"sent a message over {self.max_message_bytes} bytes")

    def _watch_loop(self) -> None:
        while not self._closing.wait(self.heartbeat):
            for peer, ready in self._ready.items():
                lock = self._locks[peer]
                if ready.is_set() and peer not in self._broken and lock.acquire(blocking=False):
                    try:
                        self._outq.put_nowait(_route(peer, SEALED, self._channels[peer].seal(BEAT)))
                    except queue.Full:
                        pass                 # the stream is busy: that is a sign of life too
                    finally:
                        lock.release()
            self._check_liveness()

    # ------------------------------------------------------------ Transport

    def _put(self, dst: str, frame: bytes) -> None:
        if self._ended.is_set():
            raise PeerFailure(RELAY, "the connection to the relay is closed")
        try:
            self._outq.put(frame, timeout=self.send_timeout)
        except queue.Full:
            raise PeerFailure(dst, f"not reading (sending through the relay blocked for {self.send_timeout:g}s)") from None

    def _send_to(self, dst: str, data) -> None:
        if not self._ready[dst].wait(self.connect_timeout):
            raise PeerFailure(dst, f"no hello through the relay after {self.connect_timeout:g}s")
        if self._closing.is_set():
            raise PeerFailure(self.me, "transport is closed")
        if dst in self._said_bye:
            raise PeerFailure(dst, "has already closed its transport")
        view = memoryview(data).cast("B")
        channel = self._channels[dst]
        with self._locks[dst]:
            for start in range(0, len(view), self.chunk_bytes):
                end = start + self.chunk_bytes
                kind = LAST if end >= len(view) else PART
                self._put(dst, _route(dst, SEALED, channel.seal(kind, view[start:end])))

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
                            self._outq.put(_route(peer, SEALED, self._channels[peer].seal(BYE)), timeout=2.0)
                        except queue.Full:
                            pass
            try:
                self._outq.put(None, timeout=2.0)
            except queue.Full:
                pass
            self._ended.wait(5.0)
        self._grpc.close()
