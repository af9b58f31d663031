"""The statistics of the demo report: AUC confidence intervals, calibration, and
sensitivity/specificity at a threshold.  Pure functions on arrays (no I/O, no state).

AUC confidence interval: DeLong, DeLong and Clarke-Pearson (Biometrics 1988), with the
midrank algorithm of Sun and Xu (IEEE Signal Processing Letters 2014).  The AUC is the
Mann-Whitney statistic; its variance is estimated from the structural components

    V10[i] = (1/n) sum_j psi(x_i, y_j)      for each positive x_i (n negatives y_j)
    V01[j] = (1/m) sum_i psi(x_i, y_j)      for each negative y_j (m positives)

with psi = 1 if x > y, 1/2 if equal, 0 otherwise:  var = s10/m + s01/n (sample
variances).  The interval is AUC +- z * sqrt(var), clipped to [0, 1]: the normal
approximation, which is rough for a few dozen patients (the report says so).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks_sorted = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        ranks_sorted[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks_sorted
    return out


def delong(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(AUC, its DeLong variance) of `score` for binary labels `y`; NaN, NaN when one
    class is absent, variance NaN when a class has a single member."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return math.nan, math.nan
    tx, ty, tz = midranks(pos), midranks(neg), midranks(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:m] - tx) / n                 # share of negatives below each positive
    v01 = 1.0 - (tz[m:] - ty) / m           # share of positives above each negative
    if m < 2 or n < 2:
        return float(auc), math.nan
    return float(auc), float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def auc_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(AUC, low, high): DeLong's interval at `level`, clipped to [0, 1]."""
    auc, var = delong(y, score)
    if not math.isfinite(var):
        return auc, math.nan, math.nan
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def calibration(y: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability curve on equal-width probability bins: (mean predicted, observed
    share of positives, rows) of each non-empty bin."""
    y = np.asarray(y, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    which = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    keep = counts > 0
    mean_pred = np.bincount(which, prob, n_bins)[keep] / counts[keep]
    observed = np.bincount(which, y, n_bins)[keep] / counts[keep]
    return mean_pred, observed, counts[keep]


def sensitivity_specificity(y: np.ndarray, prob: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of predicting positive when prob >= threshold."""
    y = np.asarray(y).astype(bool)
    hit = np.asarray(prob, dtype=np.float64) >= threshold
    sens = float((hit & y).sum() / y.sum()) if y.any() else math.nan
    spec = float((~hit & ~y).sum() / (~y).sum()) if (~y).any() else math.nan
    return sens, spec
