"""Correlated randomness for the two compute servers, from seeds.

The dealer shares one AES-CTR seed with each server.  Server 0 draws all of its
material from its stream and never talks to the dealer after the seed; server 1 draws
its masks from its stream and asks the dealer, in program order, for the one part that
cannot be random: the correction that makes the two servers' material consistent
(c1 = (a0 + a1)(b0 + b1) - c0 for a Beaver triple, and so on).  The dealer replays
both streams, so it draws exactly what each server drew.  A request names only a kind
and public sizes; the dealer sees no share, no opened value and no result.

Kinds (role 0's draws / role 1's draws / the correction for role 1):

    mask   K, n    key0 / key1 / none                   seeds of the one-hot matrix's mask:
                                                        A_i = the AES-CTR words of key_i, (K, n)
    triple size    a0 b0 c0 / a1 b1 / c1                elementwise Beaver triple
    gram   m       V0 (m, n), Z0 (K, m) / V1 / Z1       Z = A V^T, for histograms
    route  m       W0 (K, m), Z0 (n, m) / W1 / Z1       Z = A^T W, for routing rows
    bits   size    r0 rb0 beta_b0 beta_a0 and-triples / r1 beta_b1 and-triples /
                   rb1 = r ^ rb0, beta_a1 = beta - beta_a0, and-triple c1s, and with
                   a shift d: r>>d shares (d0 drawn, d1 corrected) and a second bit
                   held both ways

The mask of the one-hot matrix is as large as the matrix (K x n words: 7.7 GB at
25,000 rows x 300 features x 128 bins), so a role keeps it only up to MASK_KEEP words:
beyond that a server and the dealer regenerate it from its seeds, MASK_CHUNK words at a
time, for every product with it.
"""

from __future__ import annotations

import os

import numpy as np

from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import PeerFailure, ProtocolError
from ppxgb.transport import Transport

from ..messages import field, report_failure
from .kernels import gram, route

#: AND gates per word of the borrow circuit: two per round for shifts 1..16, one for 32
AND_GATES = 11
#: words of the one-hot matrix's mask generated at a time (32 MB)
MASK_CHUNK = 1 << 22
#: a mask of at most this many words (1 GiB) is kept once generated; a larger one is
#: regenerated for every product (7.7 GB at 25,000 rows x 300 features x 128 bins)
MASK_KEEP = 1 << 27


class Mask:
    """The mask (K, n) of the one-hot matrix from its seeds: the sum of the keys'
    AES-CTR streams (one key: a server's share; both: the dealer's A)."""

    def __init__(self, keys, K: int, n: int):
        self.keys, self.K, self.n = [np.ascontiguousarray(k, np.uint64).tobytes() for k in keys], K, n
        self._kept: np.ndarray | None = None

    def rows(self):
        """(first row, rows) chunks in order: the kept mask whole, or regenerated
        chunks of about MASK_CHUNK words; read-only to the caller, and valid until the
        next chunk (one reused buffer)."""
        if self._kept is not None:
            yield 0, self._kept
            return
        step = max(1, MASK_CHUNK // max(self.n, 1))
        streams = [Randomness(k) for k in self.keys]
        keep = np.empty((self.K, self.n), np.uint64) if self.K * self.n <= MASK_KEEP else None
        bufs = [np.empty(step * self.n + 2, np.uint64) for _ in streams]     # reused: no page faults
        for k0 in range(0, self.K, step):
            size = min(step, self.K - k0) * self.n
            A = streams[0].words(size, bufs[0]).reshape(-1, self.n)
            for s, buf in zip(streams[1:], bufs[1:]):
                A += s.words(size, buf).reshape(A.shape)
            if keep is not None:
                keep[k0:k0 + len(A)] = A
            yield k0, A
        self._kept = keep


def _bit(rng: Randomness, size: int) -> np.ndarray:
    return rng.uint64(size) & np.uint64(1)


def draw(kind: str, rng: Randomness, role: int, sizes: dict) -> dict[str, np.ndarray]:
    """A server's random part of one correlation (the same code replays it at the dealer)."""
    if kind == "mask":
        return {"key": rng.uint64(4)}                  # 32 bytes: the seed of this server's A
    if kind == "triple":
        s = sizes["size"]
        out = {"a": rng.uint64(s), "b": rng.uint64(s)}
        if role == 0:
            out["c"] = rng.uint64(s)
        return out
    if kind in ("gram", "route"):
        rows = sizes["K"]
        m = sizes["m"]
        first = rng.uint64((m, sizes["n"]) if kind == "gram" else (rows, m))
        out = {"V": first}
        if role == 0:
            out["Z"] = rng.uint64((rows, m) if kind == "gram" else (sizes["n"], m))
        return out
    if kind == "bits":
        s = sizes["size"]
        out = {"r": rng.uint64(s), "beta_b": _bit(rng, s)}
        out["and_a"] = rng.uint64((AND_GATES, s))
        out["and_b"] = rng.uint64((AND_GATES, s))
        shift = sizes.get("d") is not None
        if shift:
            out["beta_b2"] = _bit(rng, s)            # a second bit: the low part's borrow
        if role == 0:
            out["rb"] = rng.uint64(s)
            out["beta_a"] = rng.uint64(s)
            out["and_c"] = rng.uint64((AND_GATES, s))
            if shift:
                out["rd"] = rng.uint64(s)
                out["beta_a2"] = rng.uint64(s)
        return out
    raise ProtocolError(f"correlation kind {kind!r} is not one of mask, triple, gram, route, bits")


def correct(kind: str, m0: dict, m1: dict, sizes: dict, state: dict) -> dict[str, np.ndarray]:
    """The dealer's correction for server 1, from both servers' draws."""
    if kind == "mask":
        state["mask"] = Mask((m0["key"], m1["key"]), sizes["K"], sizes["n"])
        return {}
    if kind == "triple":
        return {"c": (m0["a"] + m1["a"]) * (m0["b"] + m1["b"]) - m0["c"]}
    if kind in ("gram", "route"):
        V = m0["V"] + m1["V"]
        Z = np.zeros((sizes["K"], sizes["m"]) if kind == "gram" else (sizes["n"], sizes["m"]), np.uint64)
        for k0, A in state["mask"].rows():
            if kind == "gram":
                Z[k0:k0 + len(A)] = gram(A, V)                 # Z = A V^T
            else:
                Z += route(A, V[k0:k0 + len(A)])               # Z = A^T W
        return {"Z": Z - m0["Z"]}
    r = m0["r"] + m1["r"]
    beta = m0["beta_b"] ^ m1["beta_b"]
    out = {"rb": r ^ m0["rb"], "beta_a": beta - m0["beta_a"],
           "and_c": ((m0["and_a"] ^ m1["and_a"]) & (m0["and_b"] ^ m1["and_b"])) ^ m0["and_c"]}
    if sizes.get("d") is not None:
        out["rd"] = (r >> np.uint64(sizes["d"])) - m0["rd"]
        out["beta_a2"] = (m0["beta_b2"] ^ m1["beta_b2"]) - m0["beta_a2"]
    return out


def _sizes(msg) -> dict:
    sizes = field(msg, "sizes", dict)
    for k, v in sizes.items():
        if not isinstance(v, int) and not (k == "d" and v is None):
            raise ProtocolError(f"correlation request: size {k!r} should be an int, got {type(v).__name__}")
    return sizes


def run_dealer(transport: Transport, name: str, *, servers: tuple[str, str], analyst: str,
               timeout: float | None = None) -> None:
    """Seed both servers, then answer server 1's requests until the analyst's stop."""
    try:
        keys = [os.urandom(32), os.urandom(32)]
        for server, key in zip(servers, keys):
            transport.send(name, server, "oseed", {"key": key})
        rngs = [Randomness(keys[0]), Randomness(keys[1])]
        state: dict = {}
        while True:
            msg = transport.recv(name, ("oneed", "ostop"), timeout=timeout)
            if msg.stage == "ostop":
                return
            if msg.src != servers[1]:
                raise ProtocolError(f"{name}: correlation request from {msg.src}, expected {servers[1]}")
            kind, sizes = field(msg, "kind", str), _sizes(msg)
            m0, m1 = draw(kind, rngs[0], 0, sizes), draw(kind, rngs[1], 1, sizes)
            transport.send(name, servers[1], "ocorr", correct(kind, m0, m1, sizes, state))
    except PeerFailure:
        raise
    except BaseException as exc:
        report_failure(transport, name, analyst, exc)
        raise


class Correlations:
    """One server's source of correlated randomness (see the module docstring)."""

    def __init__(self, transport: Transport, mailbox, me: str, role: int, key: bytes, dealer: str):
        self.transport, self.mailbox, self.me, self.role, self.dealer = transport, mailbox, me, role, dealer
        self.rng = Randomness(key)

    def get(self, kind: str, **sizes) -> dict[str, np.ndarray]:
        out = draw(kind, self.rng, self.role, sizes)
        if self.role == 1:
            self.transport.send(self.me, self.dealer, "oneed", {"kind": kind, "sizes": sizes})
            msg = self.mailbox.recv("ocorr", self.dealer)
            for key, value in msg.payload.items():
                if key not in ("c", "Z", "rb", "beta_a", "and_c", "rd", "beta_a2") or not isinstance(value, np.ndarray):
                    raise ProtocolError(f"{self.me}: correction field {key!r} is not expected")
                out[key] = value
        return out
