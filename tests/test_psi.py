"""DH PSI in edwards25519's prime-order group: commutativity, validation, correctness, and what crosses the wire."""

import os

import numpy as np
import pytest
from nacl import bindings as sodium

from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import FormatError, ParameterError
from ppxgb.training.vertical import psi

from helpers import psi_federation

ORDER = 2**252 + 27742317777372353535851937790883648493      # l, the order of the group
P25519 = 2**255 - 19
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")  # a point of order 8


def _points(n, tag="x"):
    return psi.hash_to_group(psi.hash_ids([f"{tag}{i}" for i in range(n)]))


def test_hashed_ids_are_elements_of_the_prime_order_group():
    pts = _points(300)
    assert all(sodium.crypto_core_ed25519_is_valid_point(bytes(p)) for p in pts)
    assert len({bytes(p) for p in pts}) == len(pts)
    np.testing.assert_array_equal(pts, _points(300))            # deterministic


def test_hash_to_group_known_answer():
    """Pins the hash (domain, SHA-512 halves, two Elligator 2 maps, added): parties on
    different versions must hash alike, or their intersection is silently empty."""
    got = bytes(psi.hash_to_group(psi.hash_ids(["patient-1"]))[0]).hex()
    assert got == "b595d8006141b55a6c722e0f9e4a4eaed1c68794003fdcd25c2f99af1b48cc2e"


def test_blinding_commutes():
    a, b = psi.new_scalar(), psi.new_scalar()
    pts = _points(200)
    ab = psi.blind(psi.blind(pts, a), b)
    np.testing.assert_array_equal(ab, psi.blind(psi.blind(pts, b), a))
    assert len({bytes(r) for r in ab}) == len(pts)
    assert all(sodium.crypto_core_ed25519_is_valid_point(bytes(p)) for p in ab)


def test_scalars_are_reduced_nonzero_and_drawn_from_the_stream():
    k = [int.from_bytes(psi.new_scalar(), "little") for _ in range(64)]
    assert all(0 < x < ORDER for x in k) and len(set(k)) == 64
    key = os.urandom(32)
    assert psi.new_scalar(Randomness(key)) == psi.new_scalar(Randomness(key))


def _bad_values():
    good = bytes(_points(1)[0])
    return {
        "identity": (1).to_bytes(32, "little"),
        "small order": ORDER_8,
        "group element plus torsion": sodium.crypto_core_ed25519_add(good, ORDER_8),
        "non-canonical": (P25519 + 1).to_bytes(32, "little"),
        "off the curve": (2).to_bytes(32, "little"),
        "all zero": bytes(32),
    }


@pytest.mark.parametrize("name", list(_bad_values()))
def test_values_outside_the_group_are_rejected_with_one_error_type(name):
    row = np.frombuffer(_bad_values()[name], dtype=np.uint8).reshape(1, 32)
    with pytest.raises(FormatError):
        psi.blind(row, psi.new_scalar())


@pytest.mark.parametrize("shape", [(3, 31), (3, 33), (32,)])
def test_wrong_shapes_are_rejected(shape):
    with pytest.raises(FormatError):
        psi.blind(np.zeros(shape, dtype=np.uint8), psi.new_scalar())


def test_canonical_ids_equal_across_types():
    assert psi.canonical_id(7) == psi.canonical_id(np.int64(7)) == psi.canonical_id(7.0)
    assert psi.canonical_id("7") != psi.canonical_id(7)
    with pytest.raises(ParameterError):
        psi.canonical_id(float("nan"))


def _run(id_lists, record=None, protocol="auto"):
    return psi_federation(id_lists, record, timeout=30, protocol=protocol)


@pytest.mark.parametrize("protocol", ["ecdh", "oprf"])
@pytest.mark.parametrize("n_parties", [2, 3, pytest.param(4, marks=pytest.mark.slow)])
def test_every_party_gets_the_intersection_in_one_aligned_order(n_parties, protocol):
    rng = np.random.default_rng(n_parties)
    universe = [f"P{i:05d}" for i in range(3000)]
    sets = [list(rng.choice(universe, size=1200, replace=False)) for _ in range(n_parties)]
    orders, _ = _run(sets, protocol=protocol)
    common = set(sets[0]).intersection(*map(set, sets[1:]))
    aligned = [[ids[i] for i in order] for ids, order in zip(sets, orders)]
    assert all(a == aligned[0] for a in aligned) and set(aligned[0]) == common
    assert len(aligned[0]) == len(common)
    # the aligned order is a secret permutation, not the label holder's file order
    assert aligned[0] != [x for x in sets[0] if x in common]


@pytest.mark.parametrize("protocol", ["ecdh", "oprf"])
def test_disjoint_and_identical_sets(protocol):
    orders, _ = _run([[1, 2, 3], [4, 5, 6]], protocol=protocol)
    assert [len(o) for o in orders] == [0, 0]
    orders, _ = _run([[3, 1, 2], [2, 3, 1]], protocol=protocol)
    assert sorted(orders[0]) == [0, 1, 2]
    assert [[3, 1, 2][i] for i in orders[0]] == [[2, 3, 1][i] for i in orders[1]]


def test_duplicate_ids_are_rejected():
    with pytest.raises(ParameterError, match="unique"):
        _run([[1, 1, 2], [1, 2]])


def test_no_id_or_hash_crosses_the_wire():
    """Messages carry only blinded group elements and positions; no ID, no SHA-512 digest
    and no unblinded H(id)."""
    ids_a = [f"patient-{i}" for i in range(200)]
    ids_b = [f"patient-{i}" for i in range(100, 300)]
    seen = []
    _run([ids_a, ids_b], record=seen.append, protocol="ecdh")
    digests = psi.hash_ids(ids_a + ids_b)
    forbidden = {bytes(r) for r in psi.hash_to_group(digests)} | {bytes(r[:32]) for r in digests} \
        | {bytes(r[32:]) for r in digests}
    for msg in seen:
        for key, v in msg.payload.items():
            if isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 2:
                assert v.shape[1] == 32 and not forbidden & {bytes(r) for r in v}, (msg.stage, key)
                assert all(sodium.crypto_core_ed25519_is_valid_point(bytes(r)) for r in v)
            assert not (isinstance(v, str) and "patient" in v)
    assert {m.stage for m in seen} == {"psi_size", "psi_hello", "psi_a", "psi_b", "psi_result"}


@pytest.mark.parametrize("protocol", ["ecdh", "oprf"])
def test_neither_side_reveals_its_row_order(protocol):
    """The follower's blinded list and the label holder's list are both shuffled: the
    positions sent back differ between runs on the same IDs."""
    ids = list(range(500))
    firsts, leader_firsts = [], []
    for _ in range(3):
        seen = []
        orders, _ = _run([ids, ids], record=seen.append, protocol=protocol)
        res = next(m for m in seen if m.stage == "psi_result")
        firsts.append(tuple(res.payload["rows"][:5]))
        leader_firsts.append(tuple(orders[0][:5]))
    assert len(set(firsts)) == 3 and len(set(leader_firsts)) == 3


@pytest.mark.slow
def test_workers_give_the_same_values():
    pts, digests = _points(5000), psi.hash_ids([f"x{i}" for i in range(5000)])
    k = psi.new_scalar()
    np.testing.assert_array_equal(psi.blind(pts, k, workers=2), psi.blind(pts, k))
    np.testing.assert_array_equal(psi.hash_blind(digests, k, workers=2), psi.blind(pts, k))


@pytest.mark.slow
def test_throughput_smoke():
    """Not a timing assertion: 2,000 IDs per side complete and agree."""
    ids = list(range(2000))
    orders, t = _run([ids, ids[::-1]])
    assert len(orders[0]) == 2000 and t.total_bytes > 3 * 2000 * 32
