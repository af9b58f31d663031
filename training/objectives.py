"""Gradients and intercepts, computed as XGBoost computes them (float32).

Each function is pure: margins and labels in, (g, h) out.  `intercept_stats` gives the
per-party sums the coordinator needs to estimate the intercept; `intercept_from_stats`
turns the securely summed totals into XGBoost's `base_score`, matching the installed
xgboost (3.x: the label mean for binary:logistic and reg:squarederror, and the centred
log class frequencies for multi:softprob).  A test checks this against xgboost itself.
"""

from __future__ import annotations

import numpy as np

from ppxgb.errors import ParameterError

_F = np.float32
_EPS = _F(1e-16)


def sigmoid(margin: np.ndarray) -> np.ndarray:
    return _F(1.0) / (np.exp(-margin.astype(_F)) + _F(1.0) + _EPS)


def gradients(objective: str, margin: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g, h) as float32; for multi:softprob both are (n, num_class)."""
    margin = margin.astype(_F, copy=False)
    if objective == "binary:logistic":
        p = sigmoid(margin)
        return (p - y.astype(_F)).astype(_F), np.maximum(p * (_F(1.0) - p), _EPS).astype(_F)
    if objective == "reg:squarederror":
        return (margin - y.astype(_F)).astype(_F), np.ones_like(margin, dtype=_F)
    if objective == "multi:softprob":
        z = np.exp(margin - margin.max(axis=1, keepdims=True))
        p = (z / z.sum(axis=1, keepdims=True)).astype(_F)
        onehot = np.zeros_like(p)
        onehot[np.arange(len(y)), y.astype(np.int64)] = 1.0
        return (p - onehot).astype(_F), np.maximum(_F(2.0) * p * (_F(1.0) - p), _EPS).astype(_F)
    raise ParameterError.bad("objective", "a supported objective", objective)


def check_labels(objective: str, y: np.ndarray, num_class: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).ravel()
    if not np.all(np.isfinite(y)):
        raise ParameterError.bad(name, "finite labels", "NaN or inf")
    if objective == "binary:logistic" and not np.all((y >= 0) & (y <= 1)):
        raise ParameterError.bad(name, "labels in [0, 1] for binary:logistic", "values outside [0, 1]")
    if objective == "multi:softprob":
        if not np.all((y == np.round(y)) & (y >= 0) & (y < num_class)):
            raise ParameterError.bad(name, f"integer class labels in [0, {num_class})", "other values")
    return y


def intercept_stats(objective: str, y: np.ndarray, num_class: int) -> np.ndarray:
    """Per-party sums the intercept needs: [sum y, n] or [count of class k..., n]."""
    if objective == "multi:softprob":
        counts = np.bincount(y.astype(np.int64), minlength=num_class).astype(np.float64)
        return np.append(counts, len(y))
    return np.array([float(np.sum(y, dtype=np.float64)), float(len(y))])


def intercept_from_stats(objective: str, totals: np.ndarray) -> tuple[float, ...]:
    """XGBoost's default base_score from the securely summed intercept_stats."""
    n = totals[-1]
    if n <= 0:
        raise ParameterError.bad("parties", "at least one training row in total", 0)
    if objective == "multi:softprob":
        # XGBoost floors empty classes at a frequency of 1e-6 before taking logs.
        freq = np.maximum(totals[:-1] / n, 1e-6)
        logp = np.log(freq.astype(np.float32)).astype(np.float32)
        return tuple(float(v) for v in (logp - logp.mean(dtype=np.float32)).astype(np.float32))
    mean = float(np.float32(totals[0] / n))
    return (mean,)
