"""The Transport interface that every protocol talks through, and its in-memory version.

Protocol code never imports a socket: a role calls `send(src, dst, stage, payload)` and
`recv(me, stage, src)`.  A payload is a flat dict of str -> numpy array, int, float,
str, bool, None, or lists/dicts of those.  Every message is encoded to bytes by
`encode_message` on the way out, exactly as the network transport would send it, so
byte counts are real and a `recorder` sees what actually crossed.

Counting: `stats` holds messages and bytes per (src, dst) pair received, `sent` those
sent; see `Transport` for the whole contract (counting, abort, first failure).
"""

from __future__ import annotations

import math
import queue
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import msgpack
import numpy as np

from .errors import FormatError, PeerFailure, PeerTimeout, ProtocolError

WIRE_VERSION = 3
_ALLOWED_DTYPES = {"<u8", "<i8", "<f8", "<f4", "<i4", "<u4", "<u2", "<u1", "|u1", "|b1", "<i2"}


@dataclass(frozen=True)
class Message:
    src: str
    dst: str
    stage: str
    payload: dict[str, Any]
    size: int


_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class Blank:
    """A payload array that draft_message leaves to be written in place (no copy)."""
    shape: tuple[int, ...]
    dtype: Any


@dataclass(frozen=True)
class Draft:
    """A message laid out before its Blank arrays are written: `arrays` maps each Blank
    field to a writable view into `data`; send it with Transport.send_draft."""
    src: str
    dst: str
    data: np.ndarray
    arrays: dict[str, np.ndarray]


def _layout(src: str, dst: str, stage: str, payload: dict[str, Any]) -> tuple[bytes, list, int]:
    """The bytes before the array area ([u32 length][msgpack header][padding]), each
    array (or Blank) with its offset in the area, and the area's size."""
    parts: list[tuple[int, Any]] = []
    end = [0]

    def pack_default(obj):
        if isinstance(obj, (np.ndarray, Blank)):
            dtype = np.dtype(obj.dtype)
            shape = [int(d) for d in obj.shape]
            offset = -(-end[0] // 8) * 8
            parts.append((offset, obj))
            end[0] = offset + math.prod(shape) * dtype.itemsize
            return msgpack.ExtType(1, msgpack.packb([dtype.str, shape, offset]))
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"cannot send a {type(obj).__name__}")

    head = msgpack.packb([WIRE_VERSION, src, dst, stage, payload], default=pack_default, use_bin_type=True)
    return _LEN.pack(len(head)) + head + bytes(-(_LEN.size + len(head)) % 8), parts, end[0]


def _array_bytes(arr: np.ndarray) -> np.ndarray:
    arr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)   # keeps 0-d arrays 0-d
    return arr.reshape(-1).view(np.uint8)


def encode_message(src: str, dst: str, stage: str, payload: dict[str, Any]) -> bytes:
    """One message as bytes: [u32 header length][msgpack header][0-7 zero bytes][arrays].

    The header is [WIRE_VERSION, src, dst, stage, payload], each numpy array in the
    payload replaced by extension 1 = msgpack [dtype, shape, offset]; the arrays' raw
    bytes follow, each at `offset` (a multiple of 8) from the first 8-byte boundary after
    the header.
    Array data is copied once, into the message; the receiver wraps it without copying.
    """
    prefix, parts, _ = _layout(src, dst, stage, payload)
    chunks: list[Any] = [prefix]
    end = 0
    for offset, arr in parts:
        if isinstance(arr, Blank):
            raise TypeError("a Blank array needs draft_message")
        if offset > end:
            chunks.append(bytes(offset - end))
        chunks.append(_array_bytes(arr))
        end = offset + arr.nbytes
    return b"".join(chunks)


def draft_message(src: str, dst: str, stage: str, payload: dict[str, Any]) -> Draft:
    """encode_message for a payload whose top-level Blank fields are written afterwards,
    straight into the message (a producer of large vectors saves the copy)."""
    prefix, parts, area = _layout(src, dst, stage, payload)
    data = np.empty(len(prefix) + area, dtype=np.uint8)
    data[:len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    names = {id(v): k for k, v in payload.items() if isinstance(v, Blank)}
    arrays: dict[str, np.ndarray] = {}
    end = 0
    for offset, arr in parts:
        start = len(prefix) + offset
        data[len(prefix) + end:start] = 0
        size = math.prod(arr.shape) * np.dtype(arr.dtype).itemsize
        if isinstance(arr, Blank):
            if id(arr) not in names:
                raise TypeError("Blank arrays must be top-level payload fields")
            arrays[names[id(arr)]] = data[start:start + size].view(arr.dtype).reshape(tuple(arr.shape))
        else:
            data[start:start + size] = _array_bytes(arr)
        end = offset + size
    return Draft(src, dst, data, arrays)


def decode_message(data: bytes) -> Message:
    if len(data) < _LEN.size or _LEN.unpack_from(data)[0] > len(data) - _LEN.size:
        raise FormatError("message header is truncated")
    head_end = _LEN.size + _LEN.unpack_from(data)[0]
    start = -(-head_end // 8) * 8             # the arrays start 8-byte aligned
    area = len(data) - start

    def unpack_ext(code, ext):
        if code != 1:
            raise FormatError("unknown extension type in message")
        try:
            dtype, shape, offset = msgpack.unpackb(ext, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise FormatError("array header is malformed") from None
        if not isinstance(dtype, str) or dtype not in _ALLOWED_DTYPES:
            raise FormatError(f"array dtype {dtype!r} is not allowed on the wire")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FormatError("array shape is not a list of sizes")
        dt = np.dtype(dtype)
        nbytes = math.prod(shape) * dt.itemsize        # Python ints: no overflow
        if not isinstance(offset, int) or offset < 0 or offset % 8 or offset + nbytes > area:
            raise FormatError("array data is outside the message")
        return np.frombuffer(data, dtype=dt, count=nbytes // dt.itemsize,
                             offset=start + offset).reshape(tuple(shape))

    try:
        version, src, dst, stage, payload = msgpack.unpackb(
            memoryview(data)[_LEN.size:head_end], ext_hook=unpack_ext, raw=False, strict_map_key=False)
    except FormatError:
        raise
    except Exception as exc:  # msgpack raises several types for bad input
        raise FormatError(f"malformed message: {exc.__class__.__name__}") from None
    if version != WIRE_VERSION:
        raise FormatError(f"wire version {version!r}, expected {WIRE_VERSION}")
    if not isinstance(payload, dict):
        raise FormatError("message payload is not a map")
    return Message(src, dst, stage, payload, len(data))


class Transport(ABC):
    """Point-to-point, in-order messaging between named roles.

    What every transport gives the code above it (protocols and launchers alike):

    - `send` / `send_draft` / `recv`, with `recv` raising a peer's `abort` as PeerFailure
      and a timeout as PeerTimeout;
    - counting: `stats` (messages and bytes per (src, dst) pair received or carried),
      `sent` (the same for what went out), and their totals `total_*` / `sent_*`;
    - failure reporting: `abort(peer, reason)` tells the other roles that a run failed
      because of `peer`, and `first_failure()` names the first failure the transport
      itself saw, so a launcher can report the root cause rather than a relayed echo.

    A subclass supplies `_deliver`, `_next` and `abort`, and reports the failures it
    detects with `_note_failure`.
    """

    def __init__(self, recorder: Callable[[Message], None] | None = None):
        self.recorder = recorder
        self._lock = threading.Lock()
        self.stats: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.sent: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._failures: dict[str, str] = {}   # peer -> reason, first seen first
        self._failure_seen = threading.Event()

    def _count(self, msg: Message) -> None:
        with self._lock:
            entry = self.stats[(msg.src, msg.dst)]
            entry[0] += 1
            entry[1] += msg.size
        if self.recorder is not None:
            self.recorder(msg)

    def _count_sent(self, src: str, dst: str, size: int) -> None:
        with self._lock:
            entry = self.sent[(src, dst)]
            entry[0] += 1
            entry[1] += size

    @property
    def total_bytes(self) -> int:
        return sum(v[1] for v in self.stats.values())

    @property
    def total_messages(self) -> int:
        return sum(v[0] for v in self.stats.values())

    @property
    def sent_bytes(self) -> int:
        """Bytes of every message this transport sent (encoded size, as counted in `stats`)."""
        return sum(v[1] for v in self.sent.values())

    @property
    def sent_messages(self) -> int:
        return sum(v[0] for v in self.sent.values())

    def send(self, src: str, dst: str, stage: str, payload: dict[str, Any]) -> None:
        """Deliver one message from src to dst."""
        data = encode_message(src, dst, stage, payload)
        self._deliver(src, dst, data)
        self._count_sent(src, dst, len(data))

    def send_draft(self, draft: Draft) -> None:
        """Deliver a drafted message once its arrays are written (the writer must not
        touch them afterwards: the receiver may get views of the same memory)."""
        self._deliver(draft.src, draft.dst, draft.data)
        self._count_sent(draft.src, draft.dst, len(draft.data))

    @abstractmethod
    def _deliver(self, src: str, dst: str, data) -> None:
        """Deliver one encoded message (bytes or a uint8 array) from src to dst."""

    @abstractmethod
    def _next(self, me: str, timeout: float | None) -> Message:
        """Next message addressed to `me`, or raise PeerTimeout on timeout."""

    @abstractmethod
    def abort(self, peer: str, reason: str, wait: float = 2.0) -> None:
        """Tell the other roles, best effort, that the run failed because of `peer`.

        Their pending and next `recv` raises PeerFailure(peer, reason).  Never raises
        for an unreachable peer; waits at most `wait` seconds for slow connections.
        """

    def _timed_out(self, exc: PeerTimeout) -> None:
        """Hook: `recv` is about to raise `exc`.  Whether a timeout counts as a failure
        seen first-hand is the subclass's choice (a network role's step timeout is not)."""

    def _note_failure(self, peer: str, reason: str) -> bool:
        """Record a failure this transport saw; False if `peer` had already failed."""
        with self._lock:
            if peer in self._failures:
                return False
            self._failures[peer] = reason
        self._failure_seen.set()
        return True

    def first_failure(self, wait: float = 0.0) -> tuple[str, str] | None:
        """(peer, reason) of the first failure this transport itself saw, or None.

        Waits up to `wait` seconds for one.  A role that failed on second-hand news
        (an abort relayed by another role) uses this to name the root cause, which it
        may observe directly a moment later.
        """
        self._failure_seen.wait(wait)
        with self._lock:
            return next(iter(self._failures.items()), None)

    def recv(self, me: str, stage: str | tuple[str, ...], src: str | None = None,
             timeout: float | None = None) -> Message:
        """The next message for `me`; it must be at `stage` (one of them, if a tuple)
        and from `src` if given.

        A message at another stage is a protocol violation, except `abort`, which a
        peer sends when it fails: it is raised as PeerFailure naming the sender.  No
        message in time raises PeerTimeout, whose `awaited` is `src`.
        """
        try:
            msg = self._next(me, timeout)
        except PeerTimeout as exc:
            if exc.awaited is None and src is not None:
                exc = PeerTimeout(me, exc.reason, awaited=src)
            self._timed_out(exc)
            raise exc from None
        if msg.stage == "abort":
            raise PeerFailure(msg.payload.get("peer", msg.src), msg.payload.get("reason", "aborted"))
        stages = (stage,) if isinstance(stage, str) else tuple(stage)
        if msg.stage not in stages or (src is not None and msg.src != src):
            raise ProtocolError(
                f"{me}: expected stage {stage!r} from {src or 'any peer'}, "
                f"got stage {msg.stage!r} from {msg.src}")
        return msg

    def close(self) -> None:
        """Release resources (sockets, threads)."""


class InMemoryTransport(Transport):
    """Queues between roles running as threads in one process (the default).

    One object serves every role, so it sees every failure first-hand: a timeout in
    `recv`, an `abort` call, and any abort message a role sends through it.
    """

    def __init__(self, recorder: Callable[[Message], None] | None = None,
                 default_timeout: float | None = 600.0):
        super().__init__(recorder)
        self._queues: dict[str, queue.Queue] = defaultdict(queue.Queue)
        self._qlock = threading.Lock()
        self.default_timeout = default_timeout

    def _queue(self, name: str) -> queue.Queue:
        with self._qlock:
            return self._queues[name]

    def _deliver(self, src: str, dst: str, data) -> None:
        msg = decode_message(data)  # what the receiver gets is what crossed, byte for byte
        self._count(msg)
        if msg.stage == "abort":
            self._note_failure(str(msg.payload.get("peer", src)), str(msg.payload.get("reason", "aborted")))
        self._enqueue(msg)

    def _enqueue(self, msg: Message) -> None:
        """Hand a counted message to its receiver's queue (ppxgb/shaping.py delays it)."""
        self._queue(msg.dst).put(msg)

    def _next(self, me: str, timeout: float | None) -> Message:
        timeout = self.default_timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            return self._queue(me).get(timeout=timeout)
        except queue.Empty:
            raise PeerTimeout(me, f"no message within {time.monotonic() - start:.1f}s") from None

    def _timed_out(self, exc: PeerTimeout) -> None:
        self._note_failure(exc.peer, exc.reason)

    def abort(self, peer: str, reason: str, wait: float = 2.0) -> None:
        """Put an abort naming `peer` in the queue of every role that has used this
        transport (except `peer`'s own), and record it.  Never blocks: `wait` is unused."""
        self._note_failure(peer, reason)
        with self._qlock:
            names = [name for name in self._queues if name != peer]
        for name in names:
            self._queue(name).put(Message(peer, name, "abort", {"peer": peer, "reason": reason}, 0))
