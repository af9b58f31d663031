"""Private set intersection of patient IDs: Diffie-Hellman PSI in the prime-order group of edwards25519.

Group: the subgroup of order l = 2^252 + 27742317777372353535851937790883648493 of
edwards25519, through libsodium (PyNaCl's crypto_core_ed25519_* and
crypto_scalarmult_ed25519_noclamp bindings; PyNaCl exposes no ristretto255, which is an
encoding of this same group).  Hash to the group: SHA-512 of the domain-separated ID,
each 32-byte half mapped by Elligator 2 with the cofactor cleared, the two points
added (the random-oracle construction of RFC 9380 section 3, with libsodium's map).
Blinding: [k]P with k uniform in [1, l).  libsodium rejects any input that is not a
canonical encoding of a point of the subgroup, so a received value is either a group
element or an error; and since [k]P is uniform over the non-identity elements for any
fixed P != 0, a blinded value says nothing about its ID (the X25519 version before it
hashed IDs onto curve or twist, a fixed bit of each ID that survived blinding).

    [b]([a]H(x)) == [a]([b]H(x)) == [ab]H(x)

so equal IDs give equal double-blinded values and anything else is a random-looking
group element (decisional Diffie-Hellman).

Protocol, label holder L and every other party P (a star, L in the middle):

    P -> L  psi_size    |P| (which the protocol reveals to L anyway)
    L -> P  psi_hello   the protocol: this one, or the OPRF PSI (psi_oprf.py) for large sets
    L               a secret uniformly random permutation pi of its rows (CSPRNG)
    L -> P  psi_a       A_i  = [a] H(x_pi(i))        in pi's order
    P -> L  psi_b       B_j  = [b] H(y_j)            in a secret random order of P
                        AA_i = [b] A_i               in pi's order
    L               common with P: the i with AA_i in {[a] B_j}, and that j
    L -> P  psi_result  for the final common set (intersection over all P), the
                        positions j in P's shuffled list, in pi's order

Rows end in the aligned order: L's rows permuted by pi, restricted to the common IDs, so
the position of a common patient tells a feature holder nothing about where that patient
sits in L's file (an export sorted by label would otherwise give every label away).
What is learned: every party learns the final intersection (which of its own IDs are
common to all) and its size; L also learns, per P, which of its IDs P holds (the
pairwise intersection) and |P|; P learns |L|.  Nobody learns an ID it does not hold.
Values in the clear never leave a party.  (Semi-honest model.)
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from ppxgb.crypto import ot
from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import FormatError, ParameterError, ProtocolError
from ppxgb.transport import Transport

from . import psi_oprf
from .permute import random_permutation

_DOMAIN = b"ppxgb-psi-ed25519-ro-v2|"
POINT_BYTES = 32            # a canonical edwards25519 encoding
_PARALLEL_MIN = 4096        # below this, worker processes cost more than they save
PROTOCOLS = ("auto", "ecdh", "oprf")
OPRF_MIN = 1_000            # "auto" takes the OPRF PSI when a party holds this many IDs


def canonical_id(x: Any) -> bytes:
    """One byte string per ID, equal across parties for equal IDs (1 == 1.0 == np.int64(1))."""
    if isinstance(x, (bool, np.bool_)):
        raise ParameterError.bad("id", "an int or a string", type(x).__name__)
    if isinstance(x, (int, np.integer)):
        return b"i" + str(int(x)).encode()
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            raise ParameterError.bad("id", "a finite number or a string", x)
        if float(x) == int(x):
            return b"i" + str(int(x)).encode()
        return b"f" + repr(float(x)).encode()
    if isinstance(x, bytes):
        return b"b" + x
    if x is None:
        raise ParameterError.bad("id", "an int or a string", None)
    return b"s" + str(x).encode("utf-8")


def canonical_ids(ids: Sequence[Any]) -> list[bytes]:
    """canonical_id of every ID; lists and arrays of one plain type (str or int, the
    usual ID columns) take a fast path with the same bytes."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iuU":
        ids = ids.tolist()
    ids = list(ids)
    kinds = set(map(type, ids))
    if kinds == {str}:
        return [b"s" + x.encode("utf-8") for x in ids]
    if kinds == {int}:
        return [b"i" + str(x).encode() for x in ids]
    return [canonical_id(x) for x in ids]


def hash_ids(ids: Sequence[Any]) -> np.ndarray:
    """(n, 64) uint8: SHA-512 of each domain-separated canonical ID (the input of hash_to_group)."""
    sha512 = hashlib.sha512
    raw = b"".join([sha512(_DOMAIN + c).digest() for c in canonical_ids(ids)])
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 64)


def hash_to_group(digests: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 group elements: Elligator 2 of each 32-byte half (cofactor cleared), added.

    One map alone reaches only about half of the group, non-uniformly; the sum of two
    independent maps is indistinguishable from a random oracle into the group."""
    digests = np.ascontiguousarray(digests, dtype=np.uint8)
    if digests.ndim != 2 or digests.shape[1] != 64:
        raise ParameterError.bad("digests", "an (n, 64) uint8 array", digests.shape)
    raw = digests.tobytes()
    out = bytearray(len(digests) * POINT_BYTES)
    add, elligator = sodium.crypto_core_ed25519_add, sodium.crypto_core_ed25519_from_uniform
    for i, o in enumerate(range(0, len(raw), 64)):
        out[32 * i:32 * i + 32] = add(elligator(raw[o:o + 32]), elligator(raw[o + 32:o + 64]))
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(digests), POINT_BYTES)


def new_scalar(rand: Randomness | None = None) -> bytes:
    """A blinding scalar uniform in [1, l): 512 random bits reduced mod l (bias < 2^-259)."""
    return ot.random_scalar(rand or Randomness())


def blind(points: np.ndarray, key: bytes, workers: int = 1) -> np.ndarray:
    """[key]P for every row P of points ((n, 32) uint8).  A row that is not a canonical
    encoding of a non-identity element of the prime-order group raises FormatError.
    `workers` > 1 spreads the work over that many processes (the key travels by pipe)."""
    points = _rows(points, POINT_BYTES)
    if workers > 1 and len(points) >= _PARALLEL_MIN:
        return _in_workers(_blind_chunk, points, key, workers)
    raw = points.tobytes()
    out = bytearray(len(raw))
    mult = sodium.crypto_scalarmult_ed25519_noclamp
    try:
        for o in range(0, len(raw), POINT_BYTES):
            out[o:o + POINT_BYTES] = mult(key, raw[o:o + POINT_BYTES])
    except CryptoError:
        raise FormatError("invalid group element in PSI message") from None
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(points.shape)


def hash_blind(digests: np.ndarray, key: bytes, workers: int = 1) -> np.ndarray:
    """blind(hash_to_group(digests), key), both steps in the worker processes."""
    digests = _rows(digests, 64)
    if workers > 1 and len(digests) >= _PARALLEL_MIN:
        return _in_workers(_hash_blind_chunk, digests, key, workers)
    return blind(hash_to_group(digests), key)


def _rows(a: np.ndarray, width: int) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    if a.ndim != 2 or a.shape[1] != width:
        raise FormatError(f"PSI values must be an (n, {width}) byte array")
    return a


def _in_workers(fn, rows: np.ndarray, key: bytes, workers: int) -> np.ndarray:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    chunks = np.array_split(rows, workers * 4)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        parts = list(pool.map(fn, [(key, c) for c in chunks]))
    return np.concatenate(parts)


def _blind_chunk(job) -> np.ndarray:
    key, chunk = job
    return blind(chunk, key)


def _hash_blind_chunk(job) -> np.ndarray:
    key, chunk = job
    return blind(hash_to_group(chunk), key)


def match(double_a: np.ndarray, double_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j) with double_a[i] == double_b[j]; i ascending."""
    index = {bytes(v): j for j, v in enumerate(double_b)}
    ii, jj = [], []
    for i, v in enumerate(double_a):
        j = index.get(bytes(v))
        if j is not None:
            ii.append(i)
            jj.append(j)
    return np.asarray(ii, dtype=np.int64), np.asarray(jj, dtype=np.int64)


def _check_unique(ids: Sequence[Any], who: str) -> np.ndarray:
    h = hash_ids(ids)
    first = np.sort(np.ascontiguousarray(h[:, :8]).view("<u8").reshape(-1))
    if np.any(first[1:] == first[:-1]) and len({bytes(r) for r in h}) != len(h):
        raise ParameterError.bad(f"{who} ids", "unique IDs", "duplicates")
    return h


def _points(msg, key: str, n: int | None = None) -> np.ndarray:
    v = msg.payload.get(key)
    if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 2 or v.shape[1] != POINT_BYTES \
            or (n is not None and v.shape[0] != n):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be an "
                            f"({n if n is not None else 'n'}, {POINT_BYTES}) uint8 array")
    return v


def leader_permutation(rand: Randomness, n: int) -> np.ndarray:
    """The label holder's secret order of its rows: uniform, from the CSPRNG stream."""
    return random_permutation(rand, n)


def follower_shuffle(rand: Randomness, n: int) -> np.ndarray:
    """A feature holder's secret order of its blinded IDs: uniform, from the CSPRNG stream."""
    return random_permutation(rand, n)


def choose_protocol(protocol: str, n_ids: int) -> str:
    """"ecdh" or "oprf" when the largest party holds n_ids IDs ("auto": OPRF from OPRF_MIN)."""
    if protocol not in PROTOCOLS:
        raise ParameterError.bad("psi_protocol", f"one of {PROTOCOLS}", protocol)
    if protocol == "auto":
        return "oprf" if n_ids >= OPRF_MIN else "ecdh"
    return protocol


def run_psi_leader(transport: Transport, me: str, others: Sequence[str], ids: Sequence[Any],
                   timeout: float | None = None, workers: int = 1,
                   rand: Randomness | None = None,
                   protocol: str = "auto") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label holder's side. Returns (its own rows of the common IDs in the aligned order,
    a secret uniformly random order; and for each other party the positions it was sent).
    `rand`: the CSPRNG stream of the scalar and the permutation (a fresh os.urandom key
    by default; pass one only to pin a test).  `protocol`: "ecdh", "oprf" (psi_oprf.py)
    or "auto" (by the largest party's number of IDs, which each feature holder sends
    first: both protocols reveal it to the label holder anyway); the feature holders follow."""
    rand = rand or Randomness()
    h = _check_unique(ids, me)
    choose_protocol(protocol, 0)                  # a bad name fails before any message
    sizes = {}
    while len(sizes) < len(others):
        msg = transport.recv(me, "psi_size", timeout=timeout)
        n = msg.payload.get("n")
        if msg.src not in others or msg.src in sizes or not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ProtocolError(f"{me}: unexpected psi_size from {msg.src} (n should be an int >= 0)")
        sizes[msg.src] = n
    protocol = choose_protocol(protocol, max([len(ids), *sizes.values()]))
    for q in others:
        transport.send(me, q, "psi_hello", {"protocol": protocol})
    if protocol == "oprf":
        pi = leader_permutation(rand, len(ids))
        partner = psi_oprf.leader_rounds(transport, me, others, h[pi], rand, timeout)
    else:
        a = new_scalar(rand)
        pi = leader_permutation(rand, len(ids))
        partner = _ecdh_leader(transport, me, others, hash_blind(h[pi], a, workers), a, timeout, workers)
    common = np.ones(len(ids), dtype=bool)
    for pos in partner.values():
        common &= pos >= 0
    rows = np.flatnonzero(common)              # positions in pi's order
    for q in others:
        transport.send(me, q, "psi_result", {"rows": partner[q][rows]})
    return pi[rows].astype(np.int64), {q: partner[q][rows] for q in others}


def _ecdh_leader(transport: Transport, me: str, others: Sequence[str], A: np.ndarray, a: bytes,
                 timeout: float | None, workers: int) -> dict[str, np.ndarray]:
    """{peer: for each of L's rows in pi's order, its position in the peer's list or -1}."""
    for q in others:
        transport.send(me, q, "psi_a", {"a": A})
    partner: dict[str, np.ndarray] = {}
    while len(partner) < len(others):
        msg = transport.recv(me, "psi_b", timeout=timeout)
        q = msg.src
        if q not in others or q in partner:
            raise ProtocolError(f"{me}: unexpected psi_b from {q}")
        AA = _points(msg, "aa", len(A))
        BB = blind(_points(msg, "b"), a, workers)
        i, j = match(AA, BB)
        pos = np.full(len(A), -1, dtype=np.int64)
        pos[i] = j
        partner[q] = pos
    return partner


def run_psi_follower(transport: Transport, me: str, leader: str, ids: Sequence[Any],
                     timeout: float | None = None, workers: int = 1,
                     rand: Randomness | None = None) -> np.ndarray:
    """Another party's side. Returns its rows of the common IDs, in the aligned order."""
    rand = rand or Randomness()
    h = _check_unique(ids, me)
    transport.send(me, leader, "psi_size", {"n": len(ids)})
    hello = transport.recv(me, "psi_hello", leader, timeout=timeout)
    protocol = hello.payload.get("protocol")
    if protocol not in ("ecdh", "oprf"):
        raise ProtocolError(f"{me}: psi_hello names protocol {protocol!r}, expected 'ecdh' or 'oprf'")
    if protocol == "oprf":
        shuffle = follower_shuffle(rand, len(ids))
        setup = transport.recv(me, "psi_oprf_setup", leader, timeout=timeout)
        psi_oprf.follower(transport, me, setup, h[shuffle], rand, timeout)
    else:
        b = new_scalar(rand)
        shuffle = follower_shuffle(rand, len(ids))
        B = hash_blind(h[shuffle], b, workers)
        msg = transport.recv(me, "psi_a", leader, timeout=timeout)
        AA = blind(_points(msg, "a"), b, workers)
        transport.send(me, leader, "psi_b", {"b": B, "aa": AA})
    res = transport.recv(me, "psi_result", leader, timeout=timeout)
    rows = res.payload.get("rows")
    if not isinstance(rows, np.ndarray) or rows.dtype.kind not in "iu" or rows.ndim != 1 \
            or (rows.size and (rows.min() < 0 or rows.max() >= len(ids))) or len(np.unique(rows)) != rows.size:
        raise ProtocolError(f"{me}: psi_result rows should be distinct positions in [0, {len(ids)})")
    return shuffle[rows.astype(np.int64)]


def run_psi_federation(transport: Transport, parties: Sequence[str], leader: str,
                       ids: Sequence[Sequence[Any]], timeout: float | None = None,
                       workers: int = 1, protocol: str = "auto") -> list[np.ndarray]:
    """In-process PSI: every follower as a thread; returns each party's rows of the
    common IDs in the aligned order (the label holder's secret random order)."""
    import threading

    parties = list(parties)
    out: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def follower(q, q_ids):
        try:
            out[q] = run_psi_follower(transport, q, leader, q_ids, timeout, workers)
        except BaseException as exc:
            errors.append(exc)
            try:
                transport.send(q, leader, "abort", {"peer": q, "reason": f"{type(exc).__name__}: {exc}"})
            except Exception:
                pass

    threads = [threading.Thread(target=follower, args=(q, i), daemon=True, name=f"psi-{q}")
               for q, i in zip(parties, ids) if q != leader]
    for th in threads:
        th.start()
    try:
        out[leader], _ = run_psi_leader(transport, leader, [q for q in parties if q != leader],
                                        ids[parties.index(leader)], timeout, workers, protocol=protocol)
    except BaseException:
        for q in parties:
            if q != leader:
                try:
                    transport.send(leader, q, "abort", {"peer": leader, "reason": "PSI stopped"})
                except Exception:
                    pass
        cause = next((e for e in errors if isinstance(e, ParameterError)), None)
        if cause is not None:
            raise cause from None
        raise
    for th in threads:
        th.join(timeout=60)
    if errors:
        raise errors[0]
    return [out[q] for q in parties]
