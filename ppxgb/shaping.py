"""Emulated network links: bandwidth and latency on each (src, dst) link, for benchmarks.

Every role still runs as a thread of one process, as over `InMemoryTransport`, but a
message only reaches its receiver when it would have over a real link.  Each direction
of each pair of roles is its own link (full duplex, nothing shared between links).  A
message of `size` bytes sent at time t on a link whose previous message finishes
transmitting at b starts at max(t, b), occupies the link for size * 8 / bandwidth
seconds, and arrives `latency` seconds after that.  `send` returns at once (the sender
goes on computing); `recv` sleeps until the arrival time, so computation and
communication overlap as they would on the network.

The transport also counts `rounds`: the longest chain of messages in which each one was
sent by a role after it had received the one before (the Lamport depth of the run).  A
run's time grows by about `rounds` x latency when every link's latency grows, which is
what lets a reader carry a measurement to another link.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Mapping

from .errors import ParameterError, PeerTimeout
from .transport import InMemoryTransport, Message

_BANDWIDTH_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_LATENCY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_SPEC = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*,\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Link:
    """One direction of a connection: `bandwidth` in bits per second (> 0, finite) and
    one-way `latency` in seconds (>= 0, finite)."""
    bandwidth: float
    latency: float

    def __post_init__(self) -> None:
        for name, value, low in (("bandwidth", self.bandwidth, "> 0"), ("latency", self.latency, ">= 0")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                    or value in (float("inf"), float("-inf")):
                raise ParameterError.bad(name, f"a finite number {low}", value)
        if self.bandwidth <= 0:
            raise ParameterError.bad("bandwidth", "bits per second > 0", self.bandwidth)
        if self.latency < 0:
            raise ParameterError.bad("latency", "seconds >= 0", self.latency)

    def transmission(self, size: int) -> float:
        """Seconds a message of `size` bytes occupies the link."""
        return size * 8.0 / self.bandwidth

    def __str__(self) -> str:
        return f"{_fmt(self.bandwidth, _BANDWIDTH_UNITS)},{_fmt(self.latency, _LATENCY_UNITS)}"


def _fmt(value: float, units: dict[str, float]) -> str:
    unit = max((u for u, f in units.items() if value >= f), key=units.get, default=min(units, key=units.get))
    return f"{value / units[unit]:g}{unit}"


def parse_link(spec: str) -> Link:
    """A link from "<bandwidth>,<latency>", e.g. "1gbit,1ms", "100mbit,50ms", "10mbit,0.5s".

    Bandwidth units are bit, kbit, mbit, gbit (powers of 1000, bits per second, as tc
    writes them); latency units us, ms, s (one way)."""
    m = _SPEC.match(spec.lower()) if isinstance(spec, str) else None
    if m is None or m.group(2) not in _BANDWIDTH_UNITS or m.group(4) not in _LATENCY_UNITS:
        raise ParameterError.bad("link", "'<number>{bit|kbit|mbit|gbit},<number>{us|ms|s}', "
                                 "e.g. '100mbit,50ms'", spec)
    return Link(float(m.group(1)) * _BANDWIDTH_UNITS[m.group(2)], float(m.group(3)) * _LATENCY_UNITS[m.group(4)])


class _Inbox:
    """One role's incoming messages, handed out in order of arrival time (messages that
    arrive at the same instant in the order they were sent)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Message]] = []
        self._ready = threading.Condition()
        self._order = itertools.count()

    def put(self, msg: Message, at: float | None = None, depth: int = 0) -> None:
        """Add `msg`, to arrive at monotonic time `at` (now if None)."""
        with self._ready:
            heapq.heappush(self._heap, (time.monotonic() if at is None else at, next(self._order), depth, msg))
            self._ready.notify_all()

    def get(self, timeout: float | None) -> tuple[Message, int]:
        """The first message to arrive, once it has (waiting at most `timeout` seconds
        in all; None: no limit), and its chain depth; queue.Empty if none arrives in time."""
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        with self._ready:
            while True:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _, _, depth, msg = heapq.heappop(self._heap)
                    return msg, depth
                if now >= deadline:
                    raise queue.Empty
                until = min(deadline, self._heap[0][0]) if self._heap else deadline
                self._ready.wait(until - now)


class ShapedTransport(InMemoryTransport):
    """An in-memory transport whose messages cross emulated links.

    link: the Link (or spec string) of every (src, dst) pair not in `links`; None leaves
    those pairs unshaped (delivered at once).  links: per-pair overrides.  Counting,
    recording, abort and first_failure are InMemoryTransport's; an abort is delivered
    at once (it is a notice, not data)."""

    def __init__(self, link: Link | str | None = None,
                 links: Mapping[tuple[str, str], Link | str] | None = None,
                 recorder: Callable[[Message], None] | None = None,
                 default_timeout: float | None = 600.0):
        super().__init__(recorder, default_timeout)
        self.link = _as_link(link, "link")
        self.links = {pair: _as_link(v, f"links[{pair!r}]") for pair, v in (links or {}).items()}
        for pair in self.links:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(r, str) for r in pair)):
                raise ParameterError.bad("links", "keys that are (src, dst) pairs of role names", pair)
        self._queues = defaultdict(_Inbox)
        self._busy: dict[tuple[str, str], float] = defaultdict(float)  # when each link is free
        self._clock: dict[str, int] = defaultdict(int)                 # longest chain each role has seen
        self._rounds = 0

    @property
    def rounds(self) -> int:
        """The longest chain of messages received so far, each sent after its sender
        received the one before (sequential, latency-bound steps)."""
        with self._lock:
            return self._rounds

    def link_bytes(self) -> dict[tuple[str, str], int]:
        """Bytes carried so far on each (src, dst) link (a copy)."""
        with self._lock:
            return {pair: v[1] for pair, v in self.stats.items()}

    def link_of(self, src: str, dst: str) -> Link | None:
        return self.links.get((src, dst), self.link)

    def _enqueue(self, msg: Message) -> None:
        now = time.monotonic()
        link = self.link_of(msg.src, msg.dst)
        with self._lock:
            depth = self._clock[msg.src] + 1
            at = now
            if link is not None:
                done = max(now, self._busy[(msg.src, msg.dst)]) + link.transmission(msg.size)
                self._busy[(msg.src, msg.dst)] = done
                at = done + link.latency
        self._queue(msg.dst).put(msg, at, depth)

    def _next(self, me: str, timeout: float | None) -> Message:
        timeout = self.default_timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            msg, depth = self._queue(me).get(timeout)
        except queue.Empty:
            raise PeerTimeout(me, f"no message within {time.monotonic() - start:.1f}s") from None
        with self._lock:
            self._clock[me] = max(self._clock[me], depth)
            self._rounds = max(self._rounds, depth)
        return msg


def _as_link(value: Link | str | None, name: str) -> Link | None:
    if value is None or isinstance(value, Link):
        return value
    if isinstance(value, str):
        return parse_link(value)
    raise ParameterError.bad(name, "a Link, a spec such as '100mbit,50ms', or None", value)
