"""Objectives as objects: one class per XGBoost objective, one registry entry each.

An objective knows everything that depends on it, in one place:

- `transform`: the prediction transform (what the client applies to a decrypted margin);
- `block` and `defaults`: the parameter block XGBoost writes beside the name in its JSON
  model, and its parameters (XGBoost's names) with their defaults;
- `base_margin`: the stored `base_score` in margin space (XGBoost's ProbToMargin);
- for objectives that ppxgb can train: `check_labels`, `gradients` (float32, as XGBoost
  computes them, times the row weights), and the intercept estimate, split into
  `intercept_stats` (per-party sums that are securely added) and `intercept_from_stats`
  (the installed xgboost's estimate from the totals).

The intercept, as xgboost 3.x estimates it, is one of three kinds:

- the weighted label mean (XGBoost's FitInterceptGlmLike): sums [sum w*y, sum w];
- one Newton step from margin 0 (FitIntercept: reg:pseudohubererror, binary:hinge, and
  the RegLossObj objectives when scale_pos_weight != 1): sums [sum g, sum h] of the
  weighted gradients at margin 0; base_score = transform(float32(-G / H));
- per-class weighted frequencies (multi-class): [sum of w per class..., sum w].

`params` below is the objective's own parameters (`defaults` keys, float values).
Adding an objective is one subclass and one `register` call.  Objectives that only
appear in models users bring for encrypted inference have `trainable = False`.

Transcendentals: xgboost calls the C library's expf and logf.  numpy's float32 exp and
log (SIMD) differ from them by one ulp on a third of the inputs; `exp32` and `log32`
call the C library's (numba), so the objectives added with weights use them.
binary:logistic and multi:softprob keep numpy's exp, bit-for-bit with the models ppxgb
trained before (a one-ulp difference in some gradients, well inside the oracle
tolerance).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np
from numba import vectorize

from .errors import ParameterError

_F = np.float32
_EPS = _F(1e-16)
_RT_EPS = 1e-6                     # XGBoost's kRtEps
_FLT_MIN = np.finfo(np.float32).tiny

Params = Mapping[str, float]


@vectorize(["float32(float32)"], cache=True)
def exp32(x):
    """expf of the C library, as xgboost computes it (float32 in, float32 out)."""
    return math.exp(x)


@vectorize(["float32(float32)"], cache=True)
def log32(x):
    """logf of the C library, as xgboost computes it."""
    return math.log(x)


def sigmoid(margin: np.ndarray, exp=np.exp) -> np.ndarray:
    """XGBoost's training-time sigmoid (float32: exp argument capped at 88.7, 1e-16 guard)."""
    x = np.minimum(-margin.astype(_F), _F(88.7))
    return _F(1.0) / (exp(x) + _F(1.0) + _EPS)


def pred_transform(kind: str, margin: np.ndarray) -> np.ndarray:
    """XGBoost's training-side PredTransform (float32, the C library's expf), for the
    intercept of a Newton step."""
    margin = np.asarray(margin, dtype=_F)
    if kind == "sigmoid":
        return sigmoid(margin, exp32)
    if kind == "exp":
        return exp32(margin)
    return apply_transform(kind, margin)


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
    if kind == "exp":
        return exp32(margin)
    if kind == "hinge":
        return (margin > 0).astype(np.float32)
    return margin


def param_str(value: float) -> str:
    """A float parameter as XGBoost writes it in JSON: the float32, 9 significant digits."""
    return format(float(np.float32(value)), ".9g")


def _weighted(g: np.ndarray, h: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """g * w and h * w in float32, as XGBoost multiplies them (nothing when unweighted)."""
    if w is None:
        return g, h
    return (g * w).astype(_F), (h * w).astype(_F)


class Objective:
    """Base class: an objective that scores models (inference) but cannot be trained."""

    name: str = ""
    transform: str = "identity"
    multiclass: bool = False
    trainable: bool = False
    block: str | None = "reg_loss_param"
    defaults: Mapping[str, float] = {"scale_pos_weight": 1.0}

    # ---- model side
    def json_params(self, num_class: int, params: dict[str, Any]) -> dict[str, Any]:
        """The blocks XGBoost writes beside `name` in learner.objective (params: the
        block's values as strings, from a loaded model or `json_values`)."""
        if self.block is None:
            return {}
        return {self.block: dict(params or self.json_values({}))}

    def json_values(self, params: Params) -> dict[str, str]:
        """The parameter block's values as XGBoost writes them."""
        return {k: param_str((params or {}).get(k, d)) for k, d in self.defaults.items()}

    def base_margin(self, score: np.ndarray) -> np.ndarray:
        """The stored base_score (float32) in margin space."""
        return score

    def check_base_score(self, value: float) -> None:
        """A fixed base_score the objective can take (ParameterError otherwise)."""

    # ---- training side
    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        """The labels as float32 (as XGBoost stores them), checked as XGBoost does."""
        try:
            y = np.asarray(y, dtype=np.float64).ravel().astype(np.float32)
        except (TypeError, ValueError):
            raise ParameterError.bad(name, "numeric labels", "non-numeric values") from None
        if not np.all(np.isfinite(y)):
            raise ParameterError.bad(name, "finite labels", "NaN or inf")
        return y

    def gradients(self, margin: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
                  params: Params | None = None) -> tuple[np.ndarray, np.ndarray]:
        """float32 (g, h) of every row (times its weight w, float32 or None)."""
        raise ParameterError.bad("objective", "an objective ppxgb can train", self.name)

    def newton_intercept(self, params: Params | None) -> bool:
        """True when xgboost fits the intercept by one Newton step (else: label mean)."""
        return False

    def intercept_stats(self, y: np.ndarray, num_class: int = 0, w: np.ndarray | None = None,
                        params: Params | None = None) -> np.ndarray:
        """Per-party sums the intercept needs (see the module docstring)."""
        if self.newton_intercept(params):
            g, h = self.gradients(np.zeros(len(y), _F), y, w, params)
            return np.array([g.sum(dtype=np.float64), h.sum(dtype=np.float64)])
        y64 = y.astype(np.float64)
        if w is None:
            return np.array([y64.sum(), float(len(y))])
        w64 = w.astype(np.float64)
        return np.array([float(np.dot(w64, y64)), w64.sum()])

    def intercept_from_stats(self, totals: np.ndarray, params: Params | None = None,
                             threads: int | None = None) -> tuple[float, ...]:
        """XGBoost's default base_score from the securely summed intercept_stats
        (threads: xgboost's nthread, which orders one float32 sum of multi-class)."""
        if not totals[-1] > 0:
            raise ParameterError.bad("parties", "training rows with a positive total "
                                     f"{'hessian' if self.newton_intercept(params) else 'weight'}", totals[-1])
        if self.newton_intercept(params):
            step = np.array([-totals[0] / totals[1]], dtype=np.float32)     # FitStump, in double
            return (float(pred_transform(self.transform, step)[0]),)
        return (float(np.float32(totals[0] / totals[-1])),)


# ------------------------------------------------------------------ RegLossObj
class _RegLoss(Objective):
    """XGBoost's RegLossObj: the loss's g and h times the row weight, which rows
    labelled exactly 1 scale by scale_pos_weight; label-mean intercept, or a Newton
    step when scale_pos_weight != 1."""

    def loss(self, margin: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def gradients(self, margin, y, w=None, params=None):
        g, h = self.loss(margin.astype(_F, copy=False), y)
        spw = _F((params or {}).get("scale_pos_weight", 1.0))
        if spw != _F(1.0):
            w = np.ones(len(y), _F) if w is None else w.copy()
            w[y == _F(1.0)] *= spw
        return _weighted(g, h, w)

    def newton_intercept(self, params):
        return abs(_F((params or {}).get("scale_pos_weight", 1.0)) - _F(1.0)) > _RT_EPS


class SquaredError(_RegLoss):
    name = "reg:squarederror"
    trainable = True

    def loss(self, margin, y):
        return (margin - y).astype(_F), np.ones_like(margin, dtype=_F)


class _Logistic(_RegLoss):
    transform = "sigmoid"
    trainable = True

    def base_margin(self, score: np.ndarray) -> np.ndarray:
        # ProbToMargin in float32, the score bounded to [1e-6, 1 - 1e-6] as xgboost 3.x does
        score = np.clip(np.asarray(score, _F), _F(_RT_EPS), _F(1.0) - _F(_RT_EPS))
        return np.float32(-1.0) * self.log(np.float32(1.0) / score - np.float32(1.0))

    def check_base_score(self, value):
        if not 0.0 < value < 1.0:
            raise ParameterError.bad("base_score", f"a probability in (0, 1) for {self.name}", value)

    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        y = super().check_labels(y, num_class, name)
        if not np.all((y >= 0) & (y <= 1)):
            raise ParameterError.bad(name, f"labels in [0, 1] for {self.name}", "values outside [0, 1]")
        return y

    exp = staticmethod(exp32)
    log = staticmethod(log32)

    def loss(self, margin, y):
        p = sigmoid(margin, self.exp)
        return (p - y).astype(_F), np.maximum(p * (_F(1.0) - p), _EPS).astype(_F)


class BinaryLogistic(_Logistic):
    name = "binary:logistic"
    exp = staticmethod(np.exp)      # bit-for-bit with earlier ppxgb models (module docstring)
    log = staticmethod(np.log)


class RegLogistic(_Logistic):
    name = "reg:logistic"


class LogitRaw(_Logistic):
    """Logistic loss, margins out untransformed; the intercept is the label mean
    stored as a margin (xgboost's identity ProbToMargin for this objective)."""
    name = "binary:logitraw"
    transform = "identity"

    def base_margin(self, score):
        return score

    def check_base_score(self, value):
        pass


# ------------------------------------------------------------------ log link
class _LogLink(Objective):
    """Log link: exp transform, base_score (> 0) stored as a mean, margin logf of it;
    labels >= 0, or > 0 with `positive_labels`."""
    transform = "exp"
    trainable = True
    positive_labels = False

    def base_margin(self, score):
        return log32(np.asarray(score, _F))

    def check_base_score(self, value):
        if not value > 0:
            raise ParameterError.bad("base_score", f"a number > 0 for {self.name}", value)

    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        y = super().check_labels(y, num_class, name)
        if self.positive_labels and not np.all(y > 0):
            raise ParameterError.bad(name, f"positive labels for {self.name}", "values <= 0")
        if not np.all(y >= 0):
            raise ParameterError.bad(name, f"non-negative labels for {self.name}", "negative values")
        return y


class Gamma(_LogLink, _RegLoss):
    name = "reg:gamma"
    positive_labels = True

    def loss(self, margin, y):
        p = exp32(margin)
        return (_F(1.0) - y / p).astype(_F), (y / p).astype(_F)


class Poisson(_LogLink):
    """count:poisson; max_delta_step (default 0.7) also enters the hessian."""
    name = "count:poisson"
    block = "poisson_regression_param"
    defaults = {"max_delta_step": 0.7}

    def gradients(self, margin, y, w=None, params=None):
        margin = margin.astype(_F, copy=False)
        mds = _F((params or {}).get("max_delta_step", 0.7))
        return _weighted((exp32(margin) - y).astype(_F), exp32(margin + mds), w)


class Tweedie(_LogLink):
    name = "reg:tweedie"
    block = "tweedie_regression_param"
    defaults = {"tweedie_variance_power": 1.5}

    def gradients(self, margin, y, w=None, params=None):
        margin = margin.astype(_F, copy=False)
        rho = _F((params or {}).get("tweedie_variance_power", 1.5))
        a = exp32((_F(1.0) - rho) * margin)
        b = exp32((_F(2.0) - rho) * margin)
        g = -y * a + b
        h = -y * (_F(1.0) - rho) * a + (_F(2.0) - rho) * b
        return _weighted(g.astype(_F), h.astype(_F), w)


# ------------------------------------------------------------------ Newton-step intercepts
class PseudoHuber(Objective):
    name = "reg:pseudohubererror"
    trainable = True
    block = "pseudo_huber_param"
    defaults = {"huber_slope": 1.0}

    def gradients(self, margin, y, w=None, params=None):
        slope = _F((params or {}).get("huber_slope", 1.0))
        slope2 = slope * slope
        z = (margin.astype(_F, copy=False) - y).astype(_F)
        z2 = z * z
        scale_sqrt = np.sqrt(_F(1.0) + z2 / slope2)
        return _weighted((z / scale_sqrt).astype(_F), (slope2 / ((slope2 + z2) * scale_sqrt)).astype(_F), w)

    def newton_intercept(self, params):
        return True


class Hinge(Objective):
    """binary:hinge: labels y in {0, 1} read as 2y - 1 (not checked, as in XGBoost)."""
    name = "binary:hinge"
    transform = "hinge"
    trainable = True
    block = None
    defaults: Mapping[str, float] = {}

    def gradients(self, margin, y, w=None, params=None):
        s = y.astype(np.float64) * 2.0 - 1.0
        active = margin.astype(np.float64) * s < 1.0
        ww = np.ones(len(y), np.float64) if w is None else w.astype(np.float64)
        g = np.where(active, -s * ww, 0.0).astype(_F)
        h = np.where(active, ww, _FLT_MIN).astype(_F)
        return g, h

    def newton_intercept(self, params):
        return True


# ------------------------------------------------------------------ multi-class
class _Multi(Objective):
    multiclass = True
    trainable = True
    block = "softmax_multiclass_param"
    defaults: Mapping[str, float] = {}

    def json_params(self, num_class, params):
        return {"softmax_multiclass_param": {"num_class": str(num_class)}}

    def check_base_score(self, value):
        raise ParameterError(f"base_score: a fixed intercept is not supported for {self.name}; "
                             "leave it unset to use XGBoost's per-class estimate")

    def check_labels(self, y, num_class: int, name: str = "y") -> np.ndarray:
        y = super().check_labels(y, num_class, name)
        if not np.all((y == np.round(y)) & (y >= 0) & (y < num_class)):
            raise ParameterError.bad(name, f"integer class labels in [0, {num_class})", "other values")
        return y

    def gradients(self, margin, y, w=None, params=None):
        margin = margin.astype(_F, copy=False)
        z = np.exp(margin - margin.max(axis=1, keepdims=True))
        p = (z / z.sum(axis=1, keepdims=True)).astype(_F)
        h = _F(2.0) * p * (_F(1.0) - p)
        if w is not None:
            h = h * w[:, None]
        h = np.maximum(h, _EPS).astype(_F)
        p[np.arange(len(y)), y.astype(np.int64)] -= _F(1.0)
        return (p if w is None else (p * w[:, None]).astype(_F)), h

    def intercept_stats(self, y, num_class=0, w=None, params=None):
        """[weight of class k..., sum of weights]."""
        idx = y.astype(np.int64)
        if w is None:
            return np.append(np.bincount(idx, minlength=num_class).astype(np.float64), float(len(y)))
        counts = np.bincount(idx, weights=w.astype(np.float64), minlength=num_class)
        return np.append(counts, w.astype(np.float64).sum())

    def intercept_from_stats(self, totals, params=None, threads=None):
        total = totals[-1]
        if not total > 0:
            raise ParameterError.bad("parties", "training rows with a positive total weight", total)
        # xgboost: class weights (float32) times 1/sum_w (double), logf(v + 1e-6), minus
        # their mean: float32 sums of v / n over OpenMP's static chunks, then of the chunks
        freq = (totals[:-1].astype(_F).astype(np.float64) * (1.0 / total)).astype(_F)
        logp = log32(freq + _F(_RT_EPS))
        n = _F(len(logp))
        mean = _F(0.0)
        for chunk in np.array_split(logp, min(omp_threads(threads), len(logp))):
            part = _F(0.0)
            for v in chunk:
                part = _F(part + v / n)
            mean = _F(mean + part)
        return tuple(float(v) for v in (logp - mean).astype(_F))


class SoftProb(_Multi):
    name = "multi:softprob"
    transform = "softmax"


class SoftMax(_Multi):
    name = "multi:softmax"
    transform = "argmax"


class Identity(Objective):
    """An identity-transform objective known only to inference (no gradients here),
    its parameter block written back as it was loaded."""

    def __init__(self, name: str, block: str | None):
        self.name, self.block, self.defaults = name, block, {}


def omp_threads(nthread: int | None = None) -> int:
    """The threads xgboost's OpenMP loops use: nthread, or the processors this process
    may run on, capped by OMP_NUM_THREADS."""
    procs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        procs = min(procs, int(env))
    return max(1, min(nthread, procs) if nthread else procs)


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Add an objective to the registry (its `name` is the key)."""
    if not objective.name:
        raise ParameterError.bad("objective", "an objective with a name", type(objective).__name__)
    OBJECTIVES[objective.name] = objective
    return objective


for _obj in (BinaryLogistic(), RegLogistic(), LogitRaw(), Hinge(), SquaredError(), PseudoHuber(),
             Gamma(), Poisson(), Tweedie(), SoftProb(), SoftMax(),
             Identity("reg:absoluteerror", None), Identity("reg:quantileerror", "quantile_loss_param")):
    register(_obj)


def get_objective(name: str, trainable: bool = False) -> Objective:
    """The registered objective `name`; with trainable=True only those ppxgb can train."""
    obj = OBJECTIVES.get(name) if isinstance(name, str) else None
    if obj is None or (trainable and not obj.trainable):
        names = sorted(k for k, o in OBJECTIVES.items() if o.trainable or not trainable)
        raise ParameterError.bad("objective", f"one of {names}", name)
    return obj


def trainable_objectives() -> tuple[str, ...]:
    return tuple(k for k, o in OBJECTIVES.items() if o.trainable)
