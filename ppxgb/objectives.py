"""Objectives as objects: one class per XGBoost objective, one registry entry each.

An objective knows everything that depends on it, in one place:

- `transform`: the prediction transform (what the client applies to a decrypted margin);
- `json_params`: the parameter block XGBoost writes beside the name in its JSON model;
- `base_margin`: the stored `base_score` in margin space (XGBoost's ProbToMargin);
- for objectives that ppxgb can train: `check_labels`, `gradients` (float32, as XGBoost
  computes them), and the intercept estimate, split into `intercept_stats` (the per-party
  sums that are securely added) and `intercept_from_stats` (the installed xgboost's
  estimate from the totals; 3.x: label mean, or centred log class frequencies).

Adding an objective is one subclass and one `register` call.  Objectives that only
appear in models users bring for encrypted inference have `trainable = False`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError

_F = np.float32
_EPS = _F(1e-16)


def sigmoid(margin: np.ndarray) -> np.ndarray:
    """XGBoost's training-time sigmoid (float32, with its 1e-16 guard)."""
    return _F(1.0) / (np.exp(-margin.astype(_F)) + _F(1.0) + _EPS)


def apply_transform(kind: str, margin: np.ndarray) -> np.ndarray:
    """The prediction transform, in float32 as XGBoost computes it."""
    margin = np.asarray(margin, dtype=np.float32)
    if kind == "sigmoid":
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-margin))).astype(np.float32)
    if kind == "softmax":
        z = np.exp(margin - margin.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    if kind == "argmax":
        return np.argmax(margin, axis=1).astype(np.float32)
    return margin


class Objective:
    """Base class: an objective that scores models (inference) but cannot be trained."""

    name: str = ""
    transform: str = "identity"
    multiclass: bool = False
    trainable: bool = False

    # ---- model side
    def json_params(self, num_class: int, params: dict[str, Any]) -> dict[str, Any]:
        """The blocks XGBoost writes beside `name` in learner.objective."""
        return {"reg_loss_param": dict(params or {"scale_pos_weight": "1"})}

    def base_margin(self, score: np.ndarray) -> np.ndarray:
        """The stored base_score (float32) in margin space."""
        return score

    # ---- training side
    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        y = np.asarray(y, dtype=np.float64).ravel()
        if not np.all(np.isfinite(y)):
            raise ParameterError.bad(name, "finite labels", "NaN or inf")
        return y

    def gradients(self, margin: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise ParameterError.bad("objective", "an objective ppxgb can train", self.name)

    def intercept_stats(self, y: np.ndarray, num_class: int) -> np.ndarray:
        """Per-party sums the intercept needs: [sum y, n]."""
        return np.array([float(np.sum(y, dtype=np.float64)), float(len(y))])

    def intercept_from_stats(self, totals: np.ndarray) -> tuple[float, ...]:
        """XGBoost's default base_score from the securely summed intercept_stats."""
        if totals[-1] <= 0:
            raise ParameterError.bad("parties", "at least one training row in total", 0)
        return (float(np.float32(totals[0] / totals[-1])),)


class _Logistic(Objective):
    transform = "sigmoid"

    def base_margin(self, score: np.ndarray) -> np.ndarray:
        # ProbToMargin in float32; a base_score of exactly 0 or 1 gives an infinite
        # margin, as in XGBoost
        with np.errstate(divide="ignore"):
            return np.float32(-1.0) * np.log(np.float32(1.0) / score - np.float32(1.0))


class BinaryLogistic(_Logistic):
    name = "binary:logistic"
    trainable = True

    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        y = super().check_labels(y, num_class, name)
        if not np.all((y >= 0) & (y <= 1)):
            raise ParameterError.bad(name, "labels in [0, 1] for binary:logistic", "values outside [0, 1]")
        return y

    def gradients(self, margin, y):
        p = sigmoid(margin)
        return (p - y.astype(_F)).astype(_F), np.maximum(p * (_F(1.0) - p), _EPS).astype(_F)


class RegLogistic(_Logistic):
    name = "reg:logistic"


class SquaredError(Objective):
    name = "reg:squarederror"
    trainable = True

    def gradients(self, margin, y):
        margin = margin.astype(_F, copy=False)
        return (margin - y.astype(_F)).astype(_F), np.ones_like(margin, dtype=_F)


class Identity(Objective):
    """An identity-transform objective known only to inference (no gradients here)."""

    def __init__(self, name: str):
        self.name = name


class PseudoHuber(Objective):
    name = "reg:pseudohubererror"

    def json_params(self, num_class, params):
        return {"pseudo_huber_param": dict(params or {"huber_slope": "1"})}


class _Multi(Objective):
    multiclass = True

    def json_params(self, num_class, params):
        return {"softmax_multiclass_param": {"num_class": str(num_class)}}


class SoftProb(_Multi):
    name = "multi:softprob"
    transform = "softmax"
    trainable = True

    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        y = super().check_labels(y, num_class, name)
        if not np.all((y == np.round(y)) & (y >= 0) & (y < num_class)):
            raise ParameterError.bad(name, f"integer class labels in [0, {num_class})", "other values")
        return y

    def gradients(self, margin, y):
        margin = margin.astype(_F, copy=False)
        z = np.exp(margin - margin.max(axis=1, keepdims=True))
        p = (z / z.sum(axis=1, keepdims=True)).astype(_F)
        onehot = np.zeros_like(p)
        onehot[np.arange(len(y)), y.astype(np.int64)] = 1.0
        return (p - onehot).astype(_F), np.maximum(_F(2.0) * p * (_F(1.0) - p), _EPS).astype(_F)

    def intercept_stats(self, y, num_class):
        """[count of class k..., n]."""
        counts = np.bincount(y.astype(np.int64), minlength=num_class).astype(np.float64)
        return np.append(counts, len(y))

    def intercept_from_stats(self, totals):
        n = totals[-1]
        if n <= 0:
            raise ParameterError.bad("parties", "at least one training row in total", 0)
        # XGBoost floors empty classes at a frequency of 1e-6 before taking logs.
        freq = np.maximum(totals[:-1] / n, 1e-6)
        logp = np.log(freq.astype(np.float32)).astype(np.float32)
        return tuple(float(v) for v in (logp - logp.mean(dtype=np.float32)).astype(np.float32))


class SoftMax(_Multi):
    name = "multi:softmax"
    transform = "argmax"


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Add an objective to the registry (its `name` is the key)."""
    if not objective.name:
        raise ParameterError.bad("objective", "an objective with a name", type(objective).__name__)
    OBJECTIVES[objective.name] = objective
    return objective


for _obj in (BinaryLogistic(), RegLogistic(), SquaredError(), PseudoHuber(), SoftProb(), SoftMax()):
    register(_obj)
for _name in ("binary:logitraw", "reg:absoluteerror"):
    register(Identity(_name))


def get_objective(name: str, trainable: bool = False) -> Objective:
    """The registered objective `name`; with trainable=True only those ppxgb can train."""
    obj = OBJECTIVES.get(name) if isinstance(name, str) else None
    if obj is None or (trainable and not obj.trainable):
        names = sorted(k for k, o in OBJECTIVES.items() if o.trainable or not trainable)
        raise ParameterError.bad("objective", f"one of {names}", name)
    return obj


def trainable_objectives() -> tuple[str, ...]:
    return tuple(k for k, o in OBJECTIVES.items() if o.trainable)
