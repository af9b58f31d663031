"""ECDH PSI over X25519: commutativity, correctness, ordering, and what crosses the wire."""

import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ppxgb.errors import FormatError, ParameterError
from ppxgb.transport import InMemoryTransport
from ppxgb.training.vertical import psi


def test_x25519_commutes_on_arbitrary_inputs_curve_and_twist():
    """Hashed IDs are arbitrary 32-byte strings: about half are on the twist.  Clamped
    scalars are multiples of the cofactor, so blinding commutes for all of them."""
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    pts = np.frombuffer(b"".join(hashlib.sha256(bytes([i, j])).digest()
                                 for i in range(4) for j in range(64)), dtype=np.uint8).reshape(-1, 32)
    ab = psi.blind(psi.blind(pts, a), b)
    ba = psi.blind(psi.blind(pts, b), a)
    np.testing.assert_array_equal(ab, ba)
    assert len({bytes(r) for r in ab}) == len(pts)
    # a known twist point: u = 2 gives a non-square u^3 + A u^2 + u on curve25519
    p = 2**255 - 19
    u = 2
    rhs = (u**3 + 486662 * u**2 + u) % p
    assert pow(rhs, (p - 1) // 2, p) == p - 1          # not a square: the point is on the twist
    tw = np.frombuffer(u.to_bytes(32, "little"), dtype=np.uint8).reshape(1, 32)
    np.testing.assert_array_equal(psi.blind(psi.blind(tw, a), b), psi.blind(psi.blind(tw, b), a))


def test_low_order_input_is_rejected_with_one_error_type():
    zero = np.zeros((1, 32), dtype=np.uint8)
    with pytest.raises(FormatError):
        psi.blind(zero, X25519PrivateKey.generate())


def test_canonical_ids_equal_across_types():
    assert psi.canonical_id(7) == psi.canonical_id(np.int64(7)) == psi.canonical_id(7.0)
    assert psi.canonical_id("7") != psi.canonical_id(7)
    with pytest.raises(ParameterError):
        psi.canonical_id(float("nan"))


def _run(id_lists, record=None):
    t = InMemoryTransport(recorder=record)
    names = [f"party-{i}" for i in range(len(id_lists))]
    return psi.run_psi_federation(t, names, names[0], id_lists, timeout=30), t


@pytest.mark.parametrize("n_parties", [2, 3, 4])
def test_intersection_in_leader_order(n_parties):
    rng = np.random.default_rng(n_parties)
    universe = [f"P{i:05d}" for i in range(3000)]
    sets = [list(rng.choice(universe, size=1200, replace=False)) for _ in range(n_parties)]
    orders, _ = _run(sets)
    common = set(sets[0]).intersection(*map(set, sets[1:]))
    want = [x for x in sets[0] if x in common]            # the leader's order
    for ids, order in zip(sets, orders):
        assert [ids[i] for i in order] == want


def test_disjoint_and_identical_sets():
    orders, _ = _run([[1, 2, 3], [4, 5, 6]])
    assert [len(o) for o in orders] == [0, 0]
    orders, _ = _run([[3, 1, 2], [2, 3, 1]])
    assert list(orders[0]) == [0, 1, 2] and [[2, 3, 1][i] for i in orders[1]] == [3, 1, 2]


def test_duplicate_ids_are_rejected():
    with pytest.raises(ParameterError, match="unique"):
        _run([[1, 1, 2], [1, 2]])


def test_no_id_or_hash_crosses_the_wire():
    """Messages carry only blinded points and positions; no ID and no plain hash H(id)."""
    ids_a = [f"patient-{i}" for i in range(200)]
    ids_b = [f"patient-{i}" for i in range(100, 300)]
    seen = []
    _run([ids_a, ids_b], record=seen.append)
    hashes = {bytes(r) for r in psi.hash_ids(ids_a + ids_b)}
    for msg in seen:
        for key, v in msg.payload.items():
            if isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 2:
                assert not hashes & {bytes(r) for r in v}, (msg.stage, key)
            assert not (isinstance(v, str) and "patient" in v)
    assert {m.stage for m in seen} == {"psi_a", "psi_b", "psi_result"}


def test_follower_reveals_no_row_order():
    """The follower's blinded list is shuffled: its order is independent of its row order."""
    ids = list(range(500))
    firsts = []
    for _ in range(3):
        seen = []
        _run([ids, ids], record=seen.append)
        res = next(m for m in seen if m.stage == "psi_result")
        firsts.append(tuple(res.payload["rows"][:5]))
    assert len(set(firsts)) == 3


def test_throughput_smoke():
    """Not a timing assertion: 2,000 IDs per side complete and agree."""
    ids = list(range(2000))
    orders, t = _run([ids, ids[::-1]])
    assert len(orders[0]) == 2000 and t.total_bytes > 3 * 2000 * 32
