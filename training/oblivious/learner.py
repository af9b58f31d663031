"""The tree learner on shares: what each compute server runs, level by level.

Both servers run this same program on their shares (Engine.index says which); every
branch depends only on public sizes and parameters, so the sequence of messages is a
function of the public schedule.  Per level of a tree with N nodes:

1. M = [I * g, I * h] for the rows' node indicators I (n, N); histograms B M over the
   one-hot matrix; prefix sums per feature give every candidate's (G_L, H_L), and
   (G_R, H_R) = node totals minus them: XGBoost's forward scan (missing values right)
   and, when any party has missing values (a public bit), its backward scan (missing
   values left; bins descending), each feature's forward candidates first; a backward
   candidate counts only where the node's missing rows have a positive hessian sum
   (XGBoost scans backward only then).  A categorical feature (the feature types are
   public) has XGBoost's one-hot candidates instead: category c alone on the right,
   (G_R, H_R) its own bin's sums (with missing values: also plus the missing column's,
   as a second candidate after it), and the left side the node total minus them.
2. gain of a candidate = G_L^2 / (H_L + lambda) + G_R^2 / (H_R + lambda): each side
   G * w with w = G * z / 2^s, z = 2^s / (H + lambda) by Newton's iteration
   z <- z (2 - x z / 2^s) from z0 = 0.75 * 2^s / 2^J, where J = floor(log2 x) comes
   from comparisons with the public powers of two in [lambda, n * h_max + lambda] = the
   public scaling range (|e0| <= 1/2, five steps leave 2^-32 before rounding).
3. candidates with H_L or H_R below min_child_weight, or on a padding bin (the
   parties' shared mask), get -BIG; a tournament of
   comparisons keeps the first maximum (XGBoost's tie rule) and its path gives a
   one-hot selector; the node splits if it is active and gain - root >= max(gamma, T_MIN).
4. the winner routes rows: left = B^T W, W the selector's suffix sums per feature
   (bin <= chosen bin); on a categorical feature W is 1 on every category but the
   chosen one (and on the missing column for "missing left"); a node that does not
   split sends every row left and its children are inactive.
   I_left = I * left, I_right = I - I_left.
At depth max_depth the leaves' weights -G / (H + lambda) are computed the same way and
the margins updated: m += sum_l I[:, l] * eta * w_l.  The analyst receives shares of
each node's flag and winning index and of each leaf's weight.
"""

from __future__ import annotations

import math

import numpy as np

from ppxgb.errors import ProtocolError

from .engine import FRAC, ONE, Engine, encode

BIG = 2.0 ** 23             # masked candidates score -BIG (gains stay below 2^22)
T_MIN = 1e-5                # a split needs gain above this (xgboost: 1e-6; our precision is ~1e-6)
SIG_LO, SIG_HI = -16, 16    # sigmoid: cubic pieces on [t, t+1) inside, 0 and 1 outside
NEWTON_STEPS = 5


def _sigmoid_pieces() -> tuple[np.ndarray, np.ndarray]:
    """(centres, coefficients (pieces, 4)) of the piecewise cubic, fitted on Chebyshev
    nodes; the two tails are the constants 0 and 1."""
    centres, coefs = [SIG_LO], [[0.0, 0.0, 0.0, 0.0]]
    u = 0.5 * np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    for t in range(SIG_LO, SIG_HI):
        c = t + 0.5
        fit = np.polynomial.polynomial.polyfit(u, 1.0 / (1.0 + np.exp(-(c + u))), 3)
        centres.append(c)
        coefs.append(list(fit))
    centres.append(SIG_HI)
    coefs.append([1.0, 0.0, 0.0, 0.0])
    return np.asarray(centres), np.asarray(coefs)


CENTRES, COEFS = _sigmoid_pieces()


def sigmoid_error() -> float:
    """Largest error of the piecewise cubic on a fine grid of [-20, 20] (about 3e-5)."""
    m = np.linspace(-20, 20, 200_001)
    piece = np.clip(np.floor(m) - SIG_LO + 1, 0, len(CENTRES) - 1).astype(int)
    u = m - CENTRES[piece]
    approx = sum(COEFS[piece, k] * u ** k for k in range(4))
    return float(np.abs(approx - 1.0 / (1.0 + np.exp(-m))).max())


#: the total hessian (sum of w h) must stay below this: the division's tested range
MAX_HESSIAN = float(1 << 20)


def hessian_scale(h_total: float, lam: float) -> int:
    """s with h_total + lambda < 2^s: the range of the division's reciprocal."""
    return int(math.floor(math.log2(h_total + lam))) + 1


class Learner:
    """One server's learner state and steps (see the module docstring)."""

    def __init__(self, engine: Engine, n: int, n_features: int, n_bins: int, params: dict,
                 missing: bool = False, real: np.ndarray | None = None, categorical: np.ndarray | None = None):
        self.e, self.n, self.F, self.nb, self.missing = engine, n, n_features, n_bins, missing
        self.width = n_bins + 1 if missing else n_bins          # one-hot columns per feature
        self.K = n_features * self.width
        self.cand = n_bins * (2 if missing else 1)               # candidates per feature
        self.C = n_features * self.cand
        # shares of 0/1 per candidate: 0 on padding bins (None: every candidate is real)
        self.real = real
        # public feature types: a categorical feature's candidates are one-hot splits
        self.cat = np.zeros(n_features, bool) if categorical is None else np.asarray(categorical, bool)
        self.lam = float(params["lambda"])
        self.mcw = max(float(params["min_child_weight"]), 2.0 ** -FRAC)
        self.threshold = max(float(params["gamma"]), T_MIN)
        self.eta = float(params["eta"])
        self.depth = int(params["max_depth"])
        self.logistic = params["objective"] == "binary:logistic"
        h_max = 0.25 if self.logistic else 1.0
        self.s = hessian_scale(n * h_max, self.lam)                         # x < 2^s
        self.j_lo = int(math.floor(math.log2(self.lam)))                   # x >= 2^j_lo

    def set_scale(self, s: int) -> None:
        """The division's range from the analyst: 2^s above the total hessian plus lambda
        (with sample weights, from their opened sum; public, like the number of rows)."""
        if isinstance(s, bool) or not isinstance(s, int) or not self.j_lo < s <= hessian_scale(MAX_HESSIAN, self.lam):
            raise ProtocolError(f"obase: 'scale' should be an int in ({self.j_lo}, "
                                f"{hessian_scale(MAX_HESSIAN, self.lam)}], got {s!r}")
        self.s = s

    # ------------------------------------------------------------ secure functions
    def sigmoid(self, m: np.ndarray) -> np.ndarray:
        """Piecewise cubic sigmoid of margins |m| < 64."""
        e = self.e
        steps = np.arange(SIG_LO, SIG_HI + 1, dtype=np.float64)
        b = e.ge(np.repeat(m[None, :], len(steps), axis=0), steps[:, None])    # [m >= t], (33, n)
        ones = e.const(ONE, (1, m.size))
        upper = np.concatenate([ones, b], axis=0)
        lower = np.concatenate([b, np.zeros((1, m.size), np.uint64)], axis=0)
        ind = upper - lower                                                       # one-hot piece, (34, n)
        centre = (ind * encode(CENTRES)[:, None]).sum(axis=0)
        coef = [(ind * encode(COEFS[:, k])[:, None]).sum(axis=0) for k in range(4)]
        u = m - centre
        u2 = e.mulf(u, u)
        u3 = e.mulf(u2, u)
        terms = e.mulf(np.stack(coef[1:]), np.stack([u, u2, u3]))
        return coef[0] + terms.sum(axis=0)

    def reciprocal(self, x: np.ndarray) -> np.ndarray:
        """z = 2^s / x for x in [2^j_lo, 2^s) (fixed point)."""
        e = self.e
        js = np.arange(self.j_lo + 1, self.s)
        z = e.fixed(0.75 * 2.0 ** (self.s - self.j_lo), x.shape)
        if len(js):
            bits = e.ge(np.repeat(x[None], len(js), axis=0), (2.0 ** js)[:, None])
            z = z - (bits * encode(0.75 * 2.0 ** (self.s - js))[:, None]).sum(axis=0)
        two = np.uint64(2)
        for _ in range(NEWTON_STEPS):
            t = e.mulf(x, z, self.s)                      # x z / 2^s, about 1
            z = two * z - e.mulf(z, t)
        return z

    def divide(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """num / den, den in the public scaling range."""
        return self.e.mulf(num, self.reciprocal(den), self.s)

    def argmax(self, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of vals (N, K): the first maximum and its one-hot selector (N, K)."""
        e = self.e
        N, K = vals.shape
        width = 1 << max(0, (K - 1).bit_length())
        pad = e.fixed(-2 * BIG, (N, width - K))
        v = np.concatenate([vals, pad], axis=1)
        bits = []
        while v.shape[1] > 1:
            a, b = v[:, 0::2], v[:, 1::2]
            keep = e.const(ONE, a.shape) - e.ltz(a - b)         # [a >= b]: the earlier wins ties
            v = b + e.mul(keep, a - b)
            bits.append(keep)
        sel = e.const(ONE, (N, 1))
        for keep in reversed(bits):
            left = e.mul(sel, keep)
            sel = np.stack([left, sel - left], axis=2).reshape(N, -1)
        return v[:, 0], sel[:, :K]

    # ------------------------------------------------------------ one tree
    def node_sums(self, I: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray:
        """[I * g | I * h], (n, 2N)."""
        N = I.shape[1]
        return self.e.mul(np.concatenate([I, I], axis=1),
                          np.concatenate([np.repeat(g[:, None], N, 1), np.repeat(h[:, None], N, 1)], axis=1))

    def level(self, I: np.ndarray, active: np.ndarray, g: np.ndarray, h: np.ndarray):
        """One level: (new indicators, children's active flags, valid flags, winning index)."""
        e, F, nb, K = self.e, self.F, self.nb, self.C
        N = I.shape[1]
        hist = e.histogram(np.ascontiguousarray(self.node_sums(I, g, h).T))      # (F * width, 2N)
        h3 = hist.reshape(F, self.width, 2 * N)
        total = h3[0].sum(axis=0, dtype=np.uint64)                             # node totals (2N,)
        left = np.cumsum(h3[:, :nb], axis=1, dtype=np.uint64)                  # forward: missing go right
        if self.missing:                                                       # backward, bins descending:
            right = np.cumsum(h3[:, nb - 1::-1], axis=1, dtype=np.uint64)      # right = bins >= i, missing left
            left = np.concatenate([left, total[None, None, :] - right], axis=1)
        if self.cat.any():
            left[self.cat] = self.onehot_left(h3[self.cat], total)
        left = left.transpose(2, 0, 1).reshape(2 * N, K)
        GL, HL = left[:N], left[N:]
        GT, HT = total[:N], total[N:]
        GR, HR = GT[:, None] - GL, HT[:, None] - HL
        lam = encode(self.lam)
        num = np.concatenate([GL.ravel(), GR.ravel(), GT])
        den = np.concatenate([HL.ravel(), HR.ravel(), HT]) + e.const(lam, num.shape)
        w = self.divide(num, den)
        side = e.mulf(num, w)
        gain = side[:N * K] + side[N * K:2 * N * K]
        root = side[2 * N * K:]
        low = e.ltz(np.concatenate([HL.ravel(), HR.ravel()]) - e.fixed(self.mcw, 2 * N * K))
        fine = e.mul(e.const(ONE, N * K) - low[:N * K], e.const(ONE, N * K) - low[N * K:])
        if self.real is not None:
            fine = e.mul(fine, np.tile(self.real, N))
        if self.missing:            # XGBoost scans backward only where the node has missing values
            miss_h = np.ascontiguousarray(h3[:, nb, N:].T)                             # (N, F)
            has = e.const(ONE, miss_h.shape) - e.ltz(miss_h - e.const(ONE, miss_h.shape))
            gate = np.concatenate([e.const(ONE, (N, F, nb)), np.repeat(has[:, :, None], nb, axis=2)], axis=2)
            gate[:, self.cat] = e.const(ONE, (N, int(self.cat.sum()), self.cand))   # one-hot: both directions
            fine = e.mul(fine, gate.reshape(N * K))
        big = encode(BIG)
        masked = e.mul(fine, gain + e.const(big, N * K)) - e.const(big, N * K)
        best, sel = self.argmax(masked.reshape(N, K))
        ok = e.ge(best - root, self.threshold)
        valid = e.mul(active, ok)
        chosen = e.mul(np.repeat(valid[:, None], K, axis=1), sel)
        index = (sel * np.arange(K, dtype=np.uint64)[None, :]).sum(axis=1)
        goes_left = e.route_rows(np.ascontiguousarray(self.routing(chosen.reshape(N, F, self.cand)).T))
        goes_left += e.const(ONE, (1, N)) - valid[None, :]
        I_left = e.mul(I, goes_left)
        children = np.stack([I_left, I - I_left], axis=2).reshape(I.shape[0], 2 * N)
        return children, np.repeat(valid, 2), valid, index

    def onehot_left(self, h: np.ndarray, total: np.ndarray) -> np.ndarray:
        """XGBoost's one-hot candidates of categorical features (h: their histograms,
        (Fc, width, 2N)): category c alone goes right, so the left side is the node total
        minus the category's own bin; with missing values each category twice, missing
        left (2c), then missing right too (2c + 1)."""
        nb = self.nb
        left = total[None, None, :] - h[:, :nb]
        if not self.missing:
            return left
        both = np.stack([left, left - h[:, nb:nb + 1]], axis=2)             # (Fc, nb, 2, 2N)
        return both.reshape(h.shape[0], 2 * nb, h.shape[2])

    def routing(self, chosen: np.ndarray) -> np.ndarray:
        """(N, F * width) weight of each one-hot column in 'goes left', from the selected
        candidates (N, F, cand): forward bin b sends bins <= b left; backward i sends
        bins < i and the missing column left."""
        nb = self.nb
        W = np.cumsum(chosen[:, :, nb - 1::-1], axis=2, dtype=np.uint64)[:, :, ::-1]   # sum over b >= b'
        if self.missing:
            back = chosen[:, :, :nb - 1:-1]                           # ascending i
            above = np.cumsum(back[:, :, ::-1], axis=2, dtype=np.uint64)[:, :, ::-1]   # sum over i >= b'
            W[:, :, :-1] += above[:, :, 1:]                           # sum over i > b'
            W = np.concatenate([W, back.sum(axis=2, dtype=np.uint64)[:, :, None]], axis=2)
        if self.cat.any():          # one-hot: every category but the chosen one goes left
            pairs = chosen[:, self.cat].reshape(chosen.shape[0], -1, nb, 2 if self.missing else 1)
            sel = pairs.sum(axis=3, dtype=np.uint64)
            W[:, self.cat, :nb] = sel.sum(axis=2, dtype=np.uint64)[:, :, None] - sel
            if self.missing:        # the missing column goes left with the "missing left" candidates
                W[:, self.cat, nb] = pairs[:, :, :, 0].sum(axis=2, dtype=np.uint64)
        return W.reshape(chosen.shape[0], -1)

    def gradients(self, margin: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows' g and h times their sample weights (shares of 1 without weights: the
        products are then exact, so the model is the same)."""
        e = self.e
        if not self.logistic:
            return e.mulf(w, margin - y), w
        p = self.sigmoid(margin)
        gh = e.mulf(np.concatenate([w, w]), np.concatenate([p - y, e.mulf(p, e.fixed(1.0, p.shape) - p)]))
        return gh[:len(w)], gh[len(w):]

    def tree(self, margin: np.ndarray, y: np.ndarray, w: np.ndarray):
        """Grow one tree; returns (new margins, valid flags, indexes, leaf weights) as shares."""
        e = self.e
        g, h = self.gradients(margin, y, w)
        I = e.const(ONE, (self.n, 1))
        active = e.const(ONE, 1)
        flags, indexes = [], []
        for _ in range(self.depth):
            I, active, valid, index = self.level(I, active, g, h)
            flags.append(valid)
            indexes.append(index)
        L = I.shape[1]
        sums = self.node_sums(I, g, h).sum(axis=0, dtype=np.uint64)
        G, H = sums[:L], sums[L:]
        weight = np.uint64(0) - self.divide(G, H + e.fixed(self.lam, L))
        step = e.trunc(weight * encode(self.eta), FRAC)
        margin = margin + e.mul(I, np.repeat(step[None, :], self.n, axis=0)).sum(axis=1, dtype=np.uint64)
        return margin, np.concatenate(flags), np.concatenate(indexes), weight
