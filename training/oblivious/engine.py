"""Two-server arithmetic on additive shares over Z_2^64, with the dealer's correlations.

Every value is held as x = x0 + x1 mod 2^64 (fixed point with FRAC fractional bits, or
an integer such as a 0/1 indicator); a bit inside the comparison circuit is held as
x0 ^ x1.  Server 0 adds public constants.  What the servers send each other is always
a value masked by fresh dealer randomness (x - a, x ^ a, x + r), so each message is a
uniform ring word to its receiver.

- mul: Beaver triples; a product of two fixed-point values is then truncated.
- trunc: dealer-assisted exact truncation.  y = x + 2^62 (|x| < 2^62) is masked as
  c = y + r and opened; y >> d = (c >> d) - (r >> d) + 2^(64-d) [c < r], where the
  wrap bit [c < r] and the borrow of the low d bits come from a borrow circuit on the
  bits of r; the result is exactly floor(x / 2^d): deterministic (equal inputs give
  equal outputs, so exact ties stay ties) and with no failure probability, unlike the
  local truncation of SecureML.
- ltz: [x < 0] as an integer share: the top bit of c - r for c = x + r opened.
- borrow circuit: Kogge-Stone prefix over the 64 bits of a word (6 rounds of AND
  gates on XOR-shared words, each gate a Beaver AND triple from the dealer), then the
  bit is converted to an arithmetic share with a dealer bit held both ways.
"""

from __future__ import annotations

import numpy as np

from ppxgb.errors import ProtocolError
from ppxgb.transport import Transport

from .dealer import Correlations, Mask
from .kernels import gram, route
from .mailbox import Mailbox

FRAC = 20                    # fractional bits of every fixed-point share
CHUNK = 1 << 20              # elements per comparison or truncation round
ONE = np.uint64(1)
_SHIFTS = (1, 2, 4, 8, 16, 32)


def encode(x, frac: int = FRAC) -> np.ndarray:
    """Public reals as ring words (two's complement, rounded)."""
    return np.rint(np.asarray(x, dtype=np.float64) * float(1 << frac)).astype(np.int64).view(np.uint64)


def decode(w, frac: int = FRAC) -> np.ndarray:
    return np.asarray(w, dtype=np.uint64).view(np.int64).astype(np.float64) / float(1 << frac)


class Engine:
    """One server's side of the two-server protocols (index 0 or 1)."""

    def __init__(self, transport: Transport, mailbox: Mailbox, me: str, peer: str, index: int,
                 corr: Correlations):
        self.transport, self.mailbox, self.me, self.peer, self.index = transport, mailbox, me, peer, index
        self.corr = corr
        self.K = self.n = 0                     # the one-hot matrix's shape
        self.E: list = []                       # its opened masked blocks (first row, first column, E)
        self.mask: Mask | None = None            # this server's share of the mask, from its seed

    # ---------------------------------------------------------------- plumbing
    def exchange(self, *arrays: np.ndarray, op: str = "add") -> list[np.ndarray]:
        """Send masked arrays to the other server and receive its (same shapes); `op`
        says how the two halves combine ("add" mod 2^64, or "xor")."""
        self.transport.send(self.me, self.peer, "oopen", {"x": list(arrays), "op": op})
        msg = self.mailbox.recv("oopen", self.peer)
        got = msg.payload.get("x")
        if msg.payload.get("op") != op:
            raise ProtocolError(f"{self.me}: {self.peer} combined its half by {msg.payload.get('op')!r}, "
                                f"expected {op!r}")
        if not isinstance(got, list) or len(got) != len(arrays) or any(
                not isinstance(g, np.ndarray) or g.dtype != np.uint64 or g.shape != a.shape
                for g, a in zip(got, arrays)):
            raise ProtocolError(f"{self.me}: opened values from {self.peer} do not match the expected shapes")
        return got

    def open(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return [a + b for a, b in zip(arrays, self.exchange(*arrays))]

    def const(self, value, shape=()) -> np.ndarray:
        """Shares of a public constant (already encoded as ring words)."""
        out = np.zeros(shape, np.uint64)
        if self.index == 0:
            out += np.asarray(value, dtype=np.uint64)
        return out

    def fixed(self, value, shape=()) -> np.ndarray:
        return self.const(encode(value), shape)

    # ---------------------------------------------------------------- arithmetic
    def mul(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Elementwise product of shares (broadcast first), no truncation."""
        x, y = np.broadcast_arrays(np.asarray(x, np.uint64), np.asarray(y, np.uint64))
        shape = x.shape
        x, y = x.ravel(), y.ravel()
        t = self.corr.get("triple", size=x.size)
        d, e = self.open(x - t["a"], y - t["b"])
        z = t["c"] + d * t["b"] + e * t["a"]
        if self.index == 0:
            z += d * e
        return z.reshape(shape)

    def mulf(self, x: np.ndarray, y: np.ndarray, extra: int = 0) -> np.ndarray:
        """Fixed-point product, truncated by FRAC + extra bits."""
        return self.trunc(self.mul(x, y), FRAC + extra)

    def _and(self, xs: list[np.ndarray], ys: list[np.ndarray], t: dict, gate: int) -> list[np.ndarray]:
        """AND of XOR-shared words, several gates in one round (triples gate, gate+1, ...)."""
        a = [t["and_a"][gate + i] for i in range(len(xs))]
        b = [t["and_b"][gate + i] for i in range(len(xs))]
        c = [t["and_c"][gate + i] for i in range(len(xs))]
        masked = [x ^ ai for x, ai in zip(xs, a)] + [y ^ bi for y, bi in zip(ys, b)]
        theirs = self.exchange(*masked, op="xor")
        opened = [m ^ o for m, o in zip(masked, theirs)]
        k = len(xs)
        out = []
        for i in range(k):
            d, e = opened[i], opened[k + i]
            z = c[i] ^ (d & b[i]) ^ (e & a[i])
            if self.index == 0:
                z ^= d & e
            out.append(z)
        return out

    def _borrows(self, c: np.ndarray, t: dict) -> np.ndarray:
        """XOR shares of the prefix borrows of c - r (bit i: borrow out of bits 0..i)."""
        rb = t["rb"]
        nc = ~c
        g = nc & rb
        p = rb ^ nc if self.index == 0 else rb.copy()
        gate = 0
        for k in _SHIFTS:
            s = np.uint64(k)
            if k < 32:
                pg, pp = self._and([p, p], [g << s, p << s], t, gate)
                g, p = g ^ pg, pp
                gate += 2
            else:
                (pg,) = self._and([p], [g << s], t, gate)
                g = g ^ pg
        return g

    def _to_arith(self, bit: np.ndarray, t: dict, beta_b: np.ndarray | None = None,
                  beta_a: np.ndarray | None = None) -> np.ndarray:
        """XOR-shared bits (0/1 words) as additive shares of 0 or 1, with the dealer's
        bits held both ways (t's beta, unless given)."""
        beta_b = t["beta_b"] if beta_b is None else beta_b
        beta_a = t["beta_a"] if beta_a is None else beta_a
        (e,) = self.exchange(bit ^ beta_b, op="xor")
        e = e ^ bit ^ beta_b
        out = (ONE - np.uint64(2) * e) * beta_a
        if self.index == 0:
            out += e
        return out

    def _chunked(self, fn, x: np.ndarray, *args) -> np.ndarray:
        """fn over x in chunks of at most CHUNK words: the borrow circuit's material is
        about 40 words per element, so this bounds every role's memory."""
        shape = x.shape
        x = x.ravel()
        if x.size <= CHUNK:
            return fn(x, *args).reshape(shape)
        return np.concatenate([fn(x[i:i + CHUNK], *args) for i in range(0, x.size, CHUNK)]).reshape(shape)

    def ltz(self, x: np.ndarray) -> np.ndarray:
        """[x < 0] (signed, |x| < 2^63) as integer shares."""
        return self._chunked(self._ltz, x)

    def trunc(self, x: np.ndarray, d: int) -> np.ndarray:
        """x / 2^d for signed x with |x| < 2^62 (see the module docstring)."""
        return self._chunked(self._trunc, x, int(d))

    def _ltz(self, x: np.ndarray) -> np.ndarray:
        shape = x.shape
        t = self.corr.get("bits", size=x.size, d=None)
        (c,) = self.open(x + t["r"])
        g = self._borrows(c, t)
        top = (t["rb"] >> np.uint64(63)) ^ ((g >> np.uint64(62)) & ONE)
        if self.index == 0:
            top ^= c >> np.uint64(63)
        return self._to_arith(top, t).reshape(shape)

    def _trunc(self, x: np.ndarray, d: int) -> np.ndarray:
        """y >> d = (c >> d) - (r >> d) - [c mod 2^d < r mod 2^d] + 2^(64-d) [c < r]."""
        shape = x.shape
        t = self.corr.get("bits", size=x.size, d=d)
        y = x + self.const(np.uint64(1 << 62), x.shape)
        (c,) = self.open(y + t["r"])
        g = self._borrows(c, t)
        n = x.size
        bits = self._to_arith(np.concatenate([g >> np.uint64(63), (g >> np.uint64(d - 1)) & ONE]), t,
                              np.concatenate([t["beta_b"], t["beta_b2"]]), np.concatenate([t["beta_a"], t["beta_a2"]]))
        wrap, low = bits[:n], bits[n:]
        out = wrap * np.uint64(1 << (64 - d)) - t["rd"] - low
        if self.index == 0:
            out += (c >> np.uint64(d)) - np.uint64(1 << (62 - d))
        return out.reshape(shape)

    def ge(self, x: np.ndarray, threshold: float) -> np.ndarray:
        """[x >= threshold] for fixed-point shares x and a public threshold."""
        return self.const(ONE, x.shape) - self.ltz(x - self.fixed(threshold, x.shape))

    # ---------------------------------------------------------------- one-hot products
    def load_onehot(self, K: int, n: int, blocks: list) -> None:
        """Mask the shared one-hot matrix B (K, n) once: E = B - A is opened, A stays
        shared as the seeds of the dealer's mask (regenerated for every product).

        `blocks` tile B: (first row, first column, store, stream).  This server's share
        of the block is `stream`'s next words (server 0: a party's seed) or, when stream
        is None, what `store` holds (server 1: a party's upload); either way `store` ends
        up holding the block of E.  The opening goes chunk by chunk, so neither B nor A
        is ever held whole beside E."""
        if sum(store.size for _, _, store, _ in blocks) != K * n:
            raise ProtocolError(f"{self.me}: the one-hot blocks do not tile a ({K}, {n}) matrix")
        self.K, self.n = K, n
        self.mask = Mask([self.corr.get("mask", K=K, n=n)["key"]], K, n)
        for k0, A in self.mask.rows():
            k1 = k0 + len(A)
            half = np.negative(A)                           # -A_i, then + B_i block by block
            spans = []
            for b0, c0, store, stream in blocks:
                lo, hi = max(k0, b0), min(k1, b0 + len(store))
                if lo < hi:
                    cols = slice(c0, c0 + store.shape[1])
                    mine = store[lo - b0:hi - b0] if stream is None else stream.uint64((hi - lo, store.shape[1]))
                    half[lo - k0:hi - k0, cols] += mine
                    spans.append((store[lo - b0:hi - b0], half[lo - k0:hi - k0, cols]))
            (theirs,) = self.exchange(half)
            half += theirs
            for dst, src in spans:
                dst[...] = src
        self.E = [(b0, c0, store) for b0, c0, store, _ in blocks]

    def histogram(self, MT: np.ndarray) -> np.ndarray:
        """(K, m) shares of B M for M given transposed, (m, n): per bin, sums over rows."""
        t = self.corr.get("gram", K=self.K, n=self.n, m=MT.shape[0])
        (F,) = self.open(MT - t["V"])
        out = np.array(t["Z"])                  # server 1's came in a message: read-only
        for k0, A in self.mask.rows():
            out[k0:k0 + len(A)] += gram(A, F)
        G = F + t["V"] if self.index == 0 else t["V"]
        for k0, c0, E in self.E:
            out[k0:k0 + len(E)] += gram(E, G[:, c0:c0 + E.shape[1]])
        return out

    def route_rows(self, W: np.ndarray) -> np.ndarray:
        """(n, m) shares of B^T W for W (K, m): per row, the weights of its bins."""
        t = self.corr.get("route", K=self.K, n=self.n, m=W.shape[1])
        (F,) = self.open(W - t["V"])
        out = np.array(t["Z"])                  # server 1's came in a message: read-only
        for k0, A in self.mask.rows():
            out += route(A, F[k0:k0 + len(A)])
        G = F + t["V"] if self.index == 0 else t["V"]
        for k0, c0, E in self.E:
            out[c0:c0 + E.shape[1]] += route(E, G[k0:k0 + len(E)])
        return out
