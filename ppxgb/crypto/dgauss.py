"""The discrete Gaussian N_Z(0, sigma^2): P(x) proportional to exp(-x^2 / (2 sigma^2)), x in Z.

Its use: noise that is exact in the fixed-point ring.  An integer query with L2
sensitivity D plus independent N_Z(0, sigma_j^2) noise per coordinate satisfies
(1/2) sum_j (D_j / sigma_j)^2 -concentrated DP, the same bound as the continuous
Gaussian (Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
Privacy", NeurIPS 2020, Theorem 14), and it needs no rounding into the ring.

Two samplers of CKS's rejection algorithm (discrete Laplace with scale t = floor(sigma)
+ 1 as proposal, accepted with probability exp(-(|y| - sigma^2/t)^2 / (2 sigma^2))):

- `sample_exact`: the algorithm as published, in rational arithmetic with exact
  Bernoulli(exp(-gamma)) trials, one sample a call (tens of microseconds): the
  reference the tests pin the distribution with.
- `discrete_gaussian`: the same proposal and acceptance vectorised over uint64 words
  from an injected `Randomness`; the two geometric draws of the proposal and the
  acceptance test are evaluated in float64 (relative error below 2^-52 per trial), so
  its output distribution equals N_Z(0, sigma^2) up to that rounding.  This is the one
  training uses (millions of samples per tree).  sigma must stay below 2^50 so every
  integer in the bulk is reachable.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

import numpy as np

from ppxgb.errors import ParameterError

from .sharing import Randomness, default_randomness

MAX_SIGMA = 2.0 ** 50


def pmf(x: np.ndarray, sigma: float) -> np.ndarray:
    """N_Z(0, sigma^2) probabilities of the integers x (normalised over |x| <= 40 sigma + 40)."""
    support = np.arange(-int(40 * sigma) - 40, int(40 * sigma) + 41, dtype=np.float64)
    norm = np.exp(-support ** 2 / (2.0 * sigma ** 2)).sum()
    return np.exp(-np.asarray(x, dtype=np.float64) ** 2 / (2.0 * sigma ** 2)) / norm


# ------------------------------------------------------------------ exact (CKS)
def _bernoulli(p: Fraction, rand) -> bool:
    return rand(p.denominator) < p.numerator


def _bernoulli_exp_le1(gamma: Fraction, rand) -> bool:
    """Bernoulli(exp(-gamma)) for 0 <= gamma <= 1 (CKS Algorithm 1)."""
    k = 1
    while _bernoulli(gamma / k, rand):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(gamma: Fraction, rand) -> bool:
    """Bernoulli(exp(-gamma)) for gamma >= 0."""
    while gamma > 1:
        if not _bernoulli_exp_le1(Fraction(1), rand):
            return False
        gamma -= 1
    return _bernoulli_exp_le1(gamma, rand)


def _discrete_laplace(t: int, rand) -> int:
    """P(y) proportional to exp(-|y| / t) (CKS Algorithm 2)."""
    while True:
        u = rand(t)
        if not _bernoulli_exp(Fraction(u, t), rand):
            continue
        v = 0
        while _bernoulli_exp(Fraction(1), rand):
            v += 1
        x = u + t * v
        negative = rand(2) == 1
        if negative and x == 0:
            continue
        return -x if negative else x


def sample_exact(sigma2: Fraction | int, rand=secrets.randbelow) -> int:
    """One exact N_Z(0, sigma2) sample (CKS Algorithm 3); rand(n) is uniform on [0, n)."""
    sigma2 = Fraction(sigma2)
    if sigma2 <= 0:
        raise ParameterError.bad("sigma2", "a positive variance", sigma2)
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        y = _discrete_laplace(t, rand)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if _bernoulli_exp(gamma, rand):
            return y


# ------------------------------------------------------------------ vectorised
def _uniform(rng: Randomness, n: int) -> np.ndarray:
    """n floats uniform on (0, 1], 53 random bits each."""
    return ((rng.words(n) >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53


def discrete_gaussian(sigma: float, n: int, rng: Randomness | None = None) -> np.ndarray:
    """n independent N_Z(0, sigma^2) samples as int64 (see the module docstring)."""
    if not (isinstance(sigma, (int, float)) and 0 < sigma < MAX_SIGMA):
        raise ParameterError.bad("sigma", "a number in (0, 2^50)", sigma)
    rng = rng or default_randomness()
    sigma = float(sigma)
    t = math.floor(sigma) + 1
    shift = sigma * sigma / t
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        m = max(64, int((n - filled) * 1.6))
        # discrete Laplace of scale t: the difference of two geometric draws on {0, 1, ...}
        g1 = np.floor(-t * np.log(_uniform(rng, m)))
        g2 = np.floor(-t * np.log(_uniform(rng, m)))
        y = g1 - g2
        accept = _uniform(rng, m) <= np.exp(-(np.abs(y) - shift) ** 2 / (2.0 * sigma * sigma))
        y = y[accept][:n - filled].astype(np.int64)
        out[filled:filled + len(y)] = y
        filled += len(y)
    return out


def noise_vector(sigmas: list[float], n: int, rng: Randomness | None = None) -> np.ndarray:
    """n int64 noise words, coordinate i drawn with sigmas[i % len(sigmas)] (an interleaved
    layout such as a histogram's g, h pairs)."""
    if not sigmas or n % len(sigmas):
        raise ParameterError.bad("sigmas", f"a non-empty list whose length divides {n}", sigmas)
    k = len(sigmas)
    out = np.empty(n, dtype=np.int64)
    for j, s in enumerate(sigmas):
        out[j::k] = discrete_gaussian(s, n // k, rng)
    return out
