"""Emulated links (ppxgb/shaping.py): arrival times, queueing, rounds, and training
through them gives the same model as the plain in-memory transport.

Timings are real sleeps, so each check allows a late margin for a loaded machine but
never an early arrival: a message must not reach its receiver before
size * 8 / bandwidth + latency after it was sent.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ppxgb.errors import ParameterError, PeerFailure, PeerTimeout
from ppxgb.shaping import Link, ShapedTransport, parse_link
from ppxgb.transport import encode_message

from helpers import column_blocks, make_discrete_data, split_rows

pytestmark = pytest.mark.timeout(120)

LATE = 0.25          # seconds a loaded machine may add before a receiver wakes
PAYLOAD = {"x": np.zeros(12_500, dtype=np.uint64)}          # 100 kB
SIZE = len(encode_message("a", "b", "data", PAYLOAD))
LINK = Link(8e6, 0.2)                                        # 8 Mbit/s: 0.1 s for PAYLOAD, then 0.2 s


class IgnoresLatency(ShapedTransport):
    """Mutant: messages take their transmission time but no latency."""

    def link_of(self, src, dst):
        link = super().link_of(src, dst)
        return None if link is None else Link(link.bandwidth, 0.0)


class NeverQueues(ShapedTransport):
    """Mutant: every message starts transmitting at once, as if its link were idle."""

    def _enqueue(self, msg):
        self._busy.clear()
        super()._enqueue(msg)


def arrivals(transport, sends, receivers):
    """Send each (src, dst) of `sends` at once, then receive everything: seconds from the
    first send to each arrival, per receiver in arrival order with the sender."""
    got = {r: [] for r in receivers}
    start = time.monotonic()
    for src, dst in sends:
        transport.send(src, dst, "data", PAYLOAD)

    def take(me, n):
        for _ in range(n):
            msg = transport.recv(me, "data", timeout=10)
            got[me].append((msg.src, time.monotonic() - start))

    threads = [threading.Thread(target=take, args=(r, sum(d == r for _, d in sends))) for r in receivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def one_message_on_time(cls) -> bool:
    t = arrivals(cls(LINK), [("a", "b")], "b")["b"][0][1]
    return LINK.transmission(SIZE) + LINK.latency <= t <= LINK.transmission(SIZE) + LINK.latency + LATE


def back_to_back_queue(cls) -> bool:
    """Two messages on a->b: the second waits for the first's transmission; one message
    each on c->b and a->d (other links) is not delayed by them."""
    got = arrivals(cls(LINK), [("a", "b"), ("a", "b"), ("c", "b"), ("a", "d")], "bd")
    tx, lat = LINK.transmission(SIZE), LINK.latency
    a_to_b = [t for src, t in got["b"] if src == "a"]
    others = [t for src, t in got["b"] if src == "c"] + [t for _, t in got["d"]]
    return (tx + lat <= a_to_b[0] <= tx + lat + LATE and 2 * tx + lat <= a_to_b[1] <= 2 * tx + lat + LATE
            and all(tx + lat <= t <= tx + lat + LATE for t in others))


def test_a_message_arrives_after_its_transmission_and_latency_and_not_much_later():
    assert SIZE > 100_000
    assert one_message_on_time(ShapedTransport)


def test_the_timing_check_catches_a_transport_that_ignores_latency():
    assert not one_message_on_time(IgnoresLatency)


def test_messages_on_one_link_queue_and_other_links_do_not():
    assert back_to_back_queue(ShapedTransport)


def test_the_queueing_check_catches_a_link_that_never_queues():
    assert not back_to_back_queue(NeverQueues)


def test_each_direction_is_its_own_link():
    got = arrivals(ShapedTransport(LINK), [("a", "b"), ("b", "a")], "ab")
    limit = LINK.transmission(SIZE) + LINK.latency
    assert all(limit <= got[r][0][1] <= limit + LATE for r in "ab")


def test_a_later_message_on_a_faster_link_is_received_first():
    t = ShapedTransport(links={("slow", "b"): "8mbit,300ms", ("fast", "b"): "1gbit,1ms"})
    t.send("slow", "b", "data", PAYLOAD)
    t.send("fast", "b", "data", PAYLOAD)
    assert [t.recv("b", "data", timeout=10).src for _ in range(2)] == ["fast", "slow"]


def test_unlisted_pairs_are_unshaped_without_a_default_link():
    t = ShapedTransport(links={("a", "b"): LINK})
    start = time.monotonic()
    t.send("c", "b", "data", PAYLOAD)
    t.recv("b", "data", src="c", timeout=10)
    assert time.monotonic() - start < LINK.latency


def test_rounds_count_the_longest_chain_of_messages():
    t = ShapedTransport("1gbit,1ms")
    for other in "bcd":                      # three messages at once: one round
        t.send("a", other, "ping", {})
    for other in "bcd":
        t.recv(other, "ping", src="a", timeout=10)
    assert t.rounds == 1
    for _ in range(4):                       # four exchanges, each waiting for the last
        t.send("b", "a", "ping", {})
        t.recv("a", "ping", src="b", timeout=10)
        t.send("a", "b", "pong", {})
        t.recv("b", "pong", src="a", timeout=10)
    assert t.rounds == 9                     # b had seen depth 1 before its first ping


def test_abort_and_timeouts_are_immediate_and_counted_as_in_memory():
    t = ShapedTransport("1mbit,5s", default_timeout=10)
    t.send("a", "b", "data", {})
    with pytest.raises(PeerTimeout):          # in flight for 5 s: not there within 0.2 s
        t.recv("b", "data", src="a", timeout=0.2)
    t.abort("c", "gone")
    start = time.monotonic()
    with pytest.raises(PeerFailure, match="c: gone"):   # before the message still in flight
        t.recv("b", "data", src="a", timeout=10)
    assert time.monotonic() - start < 1.0
    assert t.first_failure()[0] == "a"       # the timeout waiting for a came first
    assert (t.sent_messages, t.total_messages) == (1, 1)


@pytest.mark.parametrize("spec, link", [("1gbit,1ms", Link(1e9, 1e-3)), ("100mbit,50ms", Link(1e8, 0.05)),
                                        ("10Mbit, 0.5s", Link(1e7, 0.5)), ("64kbit,250us", Link(64e3, 250e-6))])
def test_parse_link(spec, link):
    assert parse_link(spec) == link
    assert parse_link(str(link)) == link


@pytest.mark.parametrize("spec", ["1gbit", "1gb,1ms", "1gbps,1ms", "-1gbit,1ms", "1gbit,-1ms", "1gbit,1h",
                                  "", None, 100])
def test_malformed_specs_are_refused_by_name(spec):
    with pytest.raises(ParameterError, match="link"):
        parse_link(spec)


@pytest.mark.parametrize("bandwidth, latency, name", [(0, 0.0, "bandwidth"), (-1e6, 0.0, "bandwidth"),
                                                      (float("inf"), 0.0, "bandwidth"), ("1e9", 0.0, "bandwidth"),
                                                      (1e9, -0.001, "latency"), (1e9, float("nan"), "latency"),
                                                      (True, 0.0, "bandwidth")])
def test_bad_links_are_refused_by_name(bandwidth, latency, name):
    with pytest.raises(ParameterError, match=name):
        Link(bandwidth, latency)


def test_a_zero_bandwidth_spec_is_refused_naming_bandwidth():
    with pytest.raises(ParameterError, match="bandwidth"):
        parse_link("0mbit,1ms")


def test_bad_transport_arguments_are_refused_by_name():
    with pytest.raises(ParameterError, match="link"):
        ShapedTransport(1e9)
    with pytest.raises(ParameterError, match="links"):
        ShapedTransport(links={("a", "b"): 5})
    with pytest.raises(ParameterError, match="links: expected keys"):
        ShapedTransport(links={"a->b": "1gbit,1ms"})


# ------------------------------------------------------------------ training through links

def _data(n=600, n_features=6):
    return make_discrete_data("binary:logistic", n, n_features, 0.1, seed=5,
                              signal=lambda X: X[:, 0] - 0.7 * X[:, 3] + 0.5 * X[:, 5])


PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "max_bin": 16, "verbosity": 0}


def _horizontal(transport):
    from ppxgb.training.horizontal import run_federation

    X, y = _data()
    return run_federation(PARAMS, split_rows(X, y, [200, 250, 150]), 2, 2, transport=transport)[0]


def _vertical(transport):
    from ppxgb.training.vertical import run_vertical_federation

    X, y = _data()
    return run_vertical_federation(PARAMS, column_blocks(X, 2), y, num_boost_round=2, transport=transport)[0]


@pytest.mark.parametrize("run", [_horizontal, _vertical], ids=["horizontal", "vertical"])
def test_training_through_links_gives_the_same_model_bit_for_bit(run):
    from ppxgb.transport import InMemoryTransport

    plain = InMemoryTransport()
    shaped = ShapedTransport("1gbit,1ms", links={})
    reference = run(plain).to_booster().save_raw("json")
    assert run(shaped).to_booster().save_raw("json") == reference
    assert shaped.rounds > 2 and shaped.total_bytes > 0
