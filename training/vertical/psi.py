"""Private set intersection of patient IDs: ECDH (Diffie-Hellman-style) PSI over X25519.

Each ID is hashed (SHA-256, domain-separated) to 32 bytes read as an X25519
u-coordinate.  Each party has a fresh secret scalar; X25519 with clamped scalars
commutes on any 32-byte input (curve or twist: the ladder computes x([k]P) in the
group the point lies in, and clamped scalars are multiples of the cofactor 8), so

    X25519(b, X25519(a, H(id))) == X25519(a, X25519(b, H(id)))

and equal IDs give equal double-blinded values while anything else is a random-looking
string (decisional Diffie-Hellman).

Protocol, label holder L and every other party P (a star, L in the middle):

    L -> P  psi_a       A_i  = [a] H(x_i)            in L's order
    P -> L  psi_b       B_j  = [b] H(y_j)            in a secret random order of P
                        AA_i = [b] A_i               in L's order
    L               common with P: the i with AA_i in {[a] B_j}, and that j
    L -> P  psi_result  for the final common set (intersection over all P), the
                        positions j in P's shuffled list, in L's row order

So rows end in L's order.  What is learned: every party learns the final intersection
(which of its own IDs are common to all) and its size; L also learns, per P, which of
its IDs P holds (the pairwise intersection) and |P|.  Nobody learns an ID it does not
hold.  Values in the clear never leave a party.  (Semi-honest model.)
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ppxgb.errors import FormatError, ParameterError, ProtocolError
from ppxgb.transport import Transport

_DOMAIN = b"ppxgb-psi-x25519-v1|"


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


def hash_ids(ids: Sequence[Any]) -> np.ndarray:
    """(n, 32) uint8: SHA-256 of each canonical ID, used as an X25519 u-coordinate."""
    out = np.empty((len(ids), 32), dtype=np.uint8)
    for i, x in enumerate(ids):
        out[i] = np.frombuffer(hashlib.sha256(_DOMAIN + canonical_id(x)).digest(), dtype=np.uint8)
    return out


def new_scalar() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def blind(points: np.ndarray, key: X25519PrivateKey, workers: int = 1) -> np.ndarray:
    """X25519(key, u) for every row of points ((n, 32) uint8); `workers` > 1 spreads the
    scalar multiplications over that many processes (the key travels by pipe to them)."""
    points = np.ascontiguousarray(points, dtype=np.uint8)
    if points.ndim != 2 or points.shape[1] != 32:
        raise FormatError("blinded values must be an (n, 32) byte array")
    if workers > 1 and len(points) >= 4096:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        secret = key.private_bytes_raw()
        chunks = np.array_split(points, workers * 4)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            parts = list(pool.map(_blind_chunk, [(secret, c) for c in chunks]))
        return np.concatenate(parts)
    raw = points.tobytes()
    out = bytearray(len(raw))
    exchange, from_bytes = key.exchange, X25519PublicKey.from_public_bytes
    try:
        for o in range(0, len(raw), 32):
            out[o:o + 32] = exchange(from_bytes(raw[o:o + 32]))
    except ValueError:
        # a low-order input (all-zero result): never happens for hashed IDs
        raise FormatError("invalid curve point in PSI message") from None
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(points.shape)


def _blind_chunk(job) -> np.ndarray:
    secret, chunk = job
    return blind(chunk, X25519PrivateKey.from_private_bytes(secret))


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
    if len({bytes(r) for r in h}) != len(h):
        raise ParameterError.bad(f"{who} ids", "unique IDs", "duplicates")
    return h


def _points(msg, key: str, n: int | None = None) -> np.ndarray:
    v = msg.payload.get(key)
    if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 2 or v.shape[1] != 32 \
            or (n is not None and v.shape[0] != n):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be an "
                            f"({n if n is not None else 'n'}, 32) uint8 array")
    return v


def run_psi_leader(transport: Transport, me: str, others: Sequence[str], ids: Sequence[Any],
                   timeout: float | None = None, workers: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label holder's side. Returns (its own rows of the common IDs in its order,
    and for each other party the positions it was sent)."""
    h = _check_unique(ids, me)
    a = new_scalar()
    A = blind(h, a, workers)
    for q in others:
        transport.send(me, q, "psi_a", {"a": A})
    common = np.ones(len(ids), dtype=bool)
    partner: dict[str, np.ndarray] = {}
    while len(partner) < len(others):
        msg = transport.recv(me, "psi_b", timeout=timeout)
        q = msg.src
        if q not in others or q in partner:
            raise ProtocolError(f"{me}: unexpected psi_b from {q}")
        AA = _points(msg, "aa", len(ids))
        BB = blind(_points(msg, "b"), a, workers)
        i, j = match(AA, BB)
        pos = np.full(len(ids), -1, dtype=np.int64)
        pos[i] = j
        partner[q] = pos
        common &= pos >= 0
    rows = np.flatnonzero(common)
    for q in others:
        transport.send(me, q, "psi_result", {"rows": partner[q][rows]})
    return rows, {q: partner[q][rows] for q in others}


def run_psi_follower(transport: Transport, me: str, leader: str, ids: Sequence[Any],
                     timeout: float | None = None, workers: int = 1) -> np.ndarray:
    """Another party's side. Returns its rows of the common IDs, in the leader's order."""
    h = _check_unique(ids, me)
    b = new_scalar()
    shuffle = _secure_shuffle(len(ids))
    B = blind(h[shuffle], b, workers)
    msg = transport.recv(me, "psi_a", leader, timeout=timeout)
    AA = blind(_points(msg, "a"), b, workers)
    transport.send(me, leader, "psi_b", {"b": B, "aa": AA})
    res = transport.recv(me, "psi_result", leader, timeout=timeout)
    rows = res.payload.get("rows")
    if not isinstance(rows, np.ndarray) or rows.dtype.kind not in "iu" or rows.ndim != 1 \
            or (rows.size and (rows.min() < 0 or rows.max() >= len(ids))) or len(np.unique(rows)) != rows.size:
        raise ProtocolError(f"{me}: psi_result rows should be distinct positions in [0, {len(ids)})")
    return shuffle[rows.astype(np.int64)]


def _secure_shuffle(n: int) -> np.ndarray:
    from ppxgb.crypto.sharing import Randomness

    from .permute import random_permutation
    return random_permutation(Randomness(os.urandom(32)), n)


def run_psi_federation(transport: Transport, parties: Sequence[str], leader: str,
                       ids: Sequence[Sequence[Any]], timeout: float | None = None,
                       workers: int = 1) -> list[np.ndarray]:
    """In-process PSI: every follower as a thread; returns each party's row order."""
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
                                        ids[parties.index(leader)], timeout, workers)
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
