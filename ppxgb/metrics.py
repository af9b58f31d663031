"""Evaluation metrics as sufficient statistics: XGBoost's names and formulas.

A metric here is split in two so that it can be computed over rows that stay with
their owners: `stats(pred, y, w)` turns one owner's rows into a short float64 vector
that adds up over owners, and `value(totals)` turns the sum into the metric.  Only the
sum is ever opened, so what a metric reveals is exactly its statistics vector:

- elementwise metrics (rmse, rmsle, mae, mape, mphe, logloss, error, error@t,
  poisson-nloglik, gamma-nloglik, gamma-deviance, tweedie-nloglik@p, mlogloss,
  merror): two numbers, the weighted loss sum  sum_i w_i * loss(y_i, p_i)  and the
  weight sum  sum_i w_i;
- auc: the weighted label histogram of the predictions on a grid of AUC_BINS cells in
  [0, 1] (per cell, sum of w*y and of w*(1-y)); AUC is exact for predictions rounded
  down to the grid, and `auc_error_bound` of the same histogram bounds the difference
  to the exact AUC.  Where predictions are float32 in [0, 1], `exact_auc_over_owners`
  refines the cells holding both labels (the same sums over sub-ranges of prediction
  values) until the AUC is exact; where one role holds every row, `AUC.exact` ranks
  them directly.

The per-row losses are XGBoost's (src/metric/elementwise_metric.cu, multiclass_metric.cu,
auc.cc), evaluated on the predictions as XGBoost's EvalTransform makes them (softmax
probabilities for multi:softmax too).  `default_metric` is XGBoost's per-objective
default.  A metric is one class and one registry entry.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ParameterError, UnsupportedParameter
from .objectives import apply_transform, get_objective

EPS = 1e-16
AUC_BITS = 16
AUC_BINS = 1 << AUC_BITS


class Metric:
    """One metric: its statistics vector per owner and its value from their sum."""

    name = ""
    maximize = False
    opened = "sum of w * loss, sum of w"

    def n_stats(self, n_groups: int) -> int:
        return 2

    def check(self, objective: str) -> None:
        """Raise if the metric cannot be computed for this objective."""
        if get_objective(objective).multiclass:
            raise UnsupportedParameter(f"eval_metric: {self.name} is for one output per row; "
                                       f"{objective} has one per class (use mlogloss or merror)")

    def stats(self, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        loss = np.asarray(self.loss(np.asarray(pred, np.float64), np.asarray(y, np.float64)), np.float64)
        wt = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
        return np.array([np.dot(wt, loss), wt.sum()])

    def loss(self, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def value(self, totals: np.ndarray) -> float:
        esum, wsum = float(totals[0]), float(totals[1])
        return esum / wsum if wsum != 0 else math.nan


class RMSE(Metric):
    name = "rmse"

    def loss(self, pred, y):
        return (y - pred) ** 2

    def value(self, totals):
        return math.sqrt(max(super().value(totals), 0.0))


class RMSLE(RMSE):
    name = "rmsle"

    def loss(self, pred, y):
        return (np.log1p(y) - np.log1p(pred)) ** 2


class MAE(Metric):
    name = "mae"

    def loss(self, pred, y):
        return np.abs(y - pred)


class MAPE(Metric):
    name = "mape"

    def loss(self, pred, y):
        return np.abs((y - pred) / y)


class MPHE(Metric):
    name = "mphe"

    def __init__(self, slope: float = 1.0):
        self.slope = slope

    def loss(self, pred, y):
        f = np.float32        # in float32, as XGBoost evaluates it
        slope, z = f(self.slope), pred.astype(f) - y.astype(f)
        return slope * slope * (np.sqrt(f(1) + (z / slope) * (z / slope)) - f(1))


class LogLoss(Metric):
    name = "logloss"

    def check(self, objective):
        super().check(objective)
        if objective == "binary:logitraw":
            raise UnsupportedParameter("eval_metric: logloss of binary:logitraw (raw margins) is not "
                                       "reproduced; use auc or error for binary:logitraw")

    def loss(self, pred, y):
        p = np.clip(pred, EPS, 1.0 - EPS)
        return -y * np.log(p) - (1.0 - y) * np.log(1.0 - p)


class Error(Metric):
    """error@t: a prediction above t counts as 1 (XGBoost: py > t ? 1 - y : y)."""
    name = "error"

    def __init__(self, threshold: float | None = None):
        self.threshold = 0.5 if threshold is None else threshold
        if threshold is not None:
            self.name = f"error@{_arg_text(threshold)}"

    def loss(self, pred, y):
        return np.where(pred > self.threshold, 1.0 - y, y)


class PoissonNLogLik(Metric):
    name = "poisson-nloglik"

    def loss(self, pred, y):
        from scipy.special import gammaln

        p = np.maximum(pred, EPS)
        return gammaln(y + 1.0) + p - np.log(p) * y


class GammaNLogLik(Metric):
    name = "gamma-nloglik"

    def loss(self, pred, y):
        # psi = 1: -((y * theta - b) / a + c) with theta = -1/p, b = -log(-theta), c = 0
        return y / pred + np.log(pred)


class GammaDeviance(Metric):
    name = "gamma-deviance"

    def loss(self, pred, y):
        p, t = pred + 1e-6, y + 1e-6
        return np.log(p / t) + t / p - 1.0

    def value(self, totals):
        return 2.0 * super().value(totals)


class TweedieNLogLik(Metric):
    name = "tweedie-nloglik"

    def __init__(self, rho: float | None = None):
        self.rho = 1.5 if rho is None else rho
        if not 1.0 <= self.rho < 2.0:
            raise ParameterError.bad("eval_metric", "tweedie-nloglik@p with p in [1, 2)", rho)
        self.name = f"tweedie-nloglik@{_arg_text(self.rho)}"

    def loss(self, pred, y):
        # in float32, as XGBoost evaluates this row loss (float64 differs by ~1e-7 relative)
        f = np.float32
        rho, pred, y = f(self.rho), pred.astype(f), y.astype(f)
        a = y * np.exp((f(1) - rho) * np.log(pred)) / (f(1) - rho) if rho != 1.0 else y * np.log(pred)
        b = np.exp((f(2) - rho) * np.log(pred)) / (f(2) - rho)
        return -a + b


class MLogLoss(Metric):
    name = "mlogloss"

    def check(self, objective):
        _need_multiclass(self.name, objective)

    def loss(self, pred, y):
        p = pred[np.arange(len(y)), y.astype(np.int64)]
        return -np.log(np.maximum(p, EPS))


class MError(MLogLoss):
    name = "merror"

    def loss(self, pred, y):
        return (np.argmax(pred, axis=1) != y.astype(np.int64)).astype(np.float64)


class AUC(Metric):
    """Binary AUC from a weighted label histogram of the predictions over AUC_BINS cells
    of [0, 1] (margins of binary:logitraw are mapped there by the sigmoid, which keeps
    their order).  Pairs in different cells are ordered exactly; pairs in one cell count
    half, as XGBoost counts tied predictions."""
    name = "auc"
    maximize = True
    opened = f"per cell of a {AUC_BINS}-cell grid of the prediction: sum of w*y and of w*(1-y)"

    def __init__(self, objective: str = "binary:logistic"):
        self.objective = objective

    def n_stats(self, n_groups):
        return 2 * AUC_BINS

    def check(self, objective):
        if objective not in BINARY:
            raise UnsupportedParameter(f"eval_metric: auc is supported for {sorted(BINARY)} "
                                       f"(binary labels), not {objective}")

    def stats(self, pred, y, w):
        pred = metric_inputs(self.objective, pred)
        wt = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
        y = np.asarray(y, np.float64)
        cell = auc_cells(pred)
        pos = np.bincount(cell, wt * y, minlength=AUC_BINS)
        neg = np.bincount(cell, wt * (1.0 - y), minlength=AUC_BINS)
        return np.concatenate([pos, neg])

    def value(self, totals):
        return _auc(totals[:AUC_BINS], totals[AUC_BINS:])

    def exact(self, pred, y, w):
        """The AUC of rows held in one place (vertical: the label holder): every distinct
        prediction its own cell, ties counted half, as XGBoost counts them."""
        pred = np.asarray(pred, np.float64).reshape(-1)
        wt = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
        y = np.asarray(y, np.float64)
        order = np.argsort(pred, kind="stable")
        p = pred[order]
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if len(p) else np.zeros(0, np.int64)
        return _auc(np.add.reduceat((wt * y)[order], starts), np.add.reduceat((wt * (1.0 - y))[order], starts))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC from weighted positive and negative counts per cell, cells in increasing order
    of prediction: pairs in different cells ordered, pairs within a cell count half."""
    P, N = pos.sum(), neg.sum()
    if P <= 0 or N <= 0:
        return math.nan
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float(np.dot(pos, below + 0.5 * neg) / (P * N))


def auc_cells(pred: np.ndarray) -> np.ndarray:
    """The grid cell of each prediction in [0, 1]: floor(p * AUC_BINS), the top cell
    holding p = 1."""
    return np.clip(np.floor(pred * AUC_BINS), 0, AUC_BINS - 1).astype(np.int64)


# ---- exact AUC over owners: refine the grid cells that hold both labels
#
# A prediction p in [0, 1] (float32) has the order-preserving key p.view(uint32).  Grid
# cell k holds the keys [key(k / 2^16), key((k + 1) / 2^16)) (the top cell also p = 1).
# A cell holding positives and negatives is split into REFINE sub-ranges of keys, and
# so on until every mixed range is one key (a true tie): the AUC of the final ranges is
# exactly the AUC of the float32 predictions, ties counted half as XGBoost does.
REFINE = 256


def refinable(objective: str) -> bool:
    """Predictions in [0, 1] as float32 (the grid cells are then key ranges)."""
    return get_objective(objective).transform in ("sigmoid", "hinge")


def auc_keys(pred: np.ndarray) -> np.ndarray:
    """The order-preserving uint32 key of each float32 prediction in [0, 1]."""
    return np.ascontiguousarray(np.asarray(pred, np.float32).reshape(-1)).view(np.uint32).astype(np.int64)


def grid_ranges() -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) key range of every grid cell."""
    edges = auc_keys(np.arange(AUC_BINS + 1, dtype=np.float64) / AUC_BINS)
    hi = edges[1:].copy()
    hi[-1] += 1                                           # p = 1 belongs to the top cell
    return edges[:-1], hi


def refine_counts(keys: np.ndarray, y: np.ndarray, w: np.ndarray | None, lo: np.ndarray,
                  hi: np.ndarray) -> np.ndarray:
    """One owner's [w*y, w*(1-y)] per sub-range: REFINE per [lo, hi) range (ranges
    disjoint and sorted), sub-range s of a range holding (key - lo) * REFINE // (hi - lo) = s."""
    wt = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
    y = np.asarray(y, np.float64)
    n = len(lo)
    at = np.searchsorted(lo, keys, side="right") - 1
    inside = (at >= 0) & (keys < hi[np.maximum(at, 0)])
    at, k = at[inside], keys[inside]
    cell = at * REFINE + (k - lo[at]) * REFINE // (hi[at] - lo[at])
    pos = np.bincount(cell, (wt * y)[inside], minlength=n * REFINE)
    neg = np.bincount(cell, (wt * (1.0 - y))[inside], minlength=n * REFINE)
    return np.concatenate([pos, neg])


def split_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The REFINE sub-ranges of each range, in order (empty ones have lo == hi)."""
    s = np.arange(REFINE + 1)
    width = (hi - lo)[:, None]
    edges = lo[:, None] + (s[None, :] * width + REFINE - 1) // REFINE      # ceil(s * width / REFINE)
    return edges[:, :-1].ravel(), edges[:, 1:].ravel()


def exact_auc_over_owners(grid_totals: np.ndarray, open_counts) -> float:
    """AUC of the owners' float32 predictions: the grid histogram (summed over owners),
    refined where a range holds both labels; open_counts(lo, hi) returns refine_counts
    summed over the owners."""
    lo, hi = grid_ranges()
    pos, neg = grid_totals[:AUC_BINS], grid_totals[AUC_BINS:]
    while True:
        mixed = (pos > 0) & (neg > 0) & (hi - lo > 1)
        if not mixed.any():
            return _auc(pos, neg)
        sub = open_counts(lo[mixed], hi[mixed])
        sub_lo, sub_hi = split_ranges(lo[mixed], hi[mixed])
        m = int(mixed.sum()) * REFINE
        # replace each mixed range by its sub-ranges, keeping the key order
        parts = np.where(mixed, REFINE, 1)
        idx = np.repeat(np.arange(len(lo)), parts)
        new_lo, new_hi = lo[idx].copy(), hi[idx].copy()
        new_pos, new_neg = pos[idx].copy(), neg[idx].copy()
        where = np.repeat(mixed, parts)
        new_lo[where], new_hi[where] = sub_lo, sub_hi
        new_pos[where], new_neg[where] = sub[:m], sub[m:]
        keep = new_hi > new_lo
        lo, hi, pos, neg = new_lo[keep], new_hi[keep], new_pos[keep], new_neg[keep]


def auc_error_bound(totals: np.ndarray) -> float:
    """How far the grid AUC can be from the exact AUC of the same predictions: half the
    weighted fraction of positive-negative pairs that share a cell."""
    pos, neg = totals[:AUC_BINS], totals[AUC_BINS:]
    return float(0.5 * np.dot(pos, neg) / (pos.sum() * neg.sum()))


#: objectives with labels in [0, 1] whose predictions AUC ranks
BINARY = ("binary:logistic", "binary:logitraw", "binary:hinge", "reg:logistic")

#: name -> (class, takes an @argument)
METRICS: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    METRICS[cls.name] = cls
    return cls


for _cls in (RMSE, RMSLE, MAE, MAPE, MPHE, LogLoss, Error, PoissonNLogLik, GammaNLogLik,
             GammaDeviance, TweedieNLogLik, MLogLoss, MError, AUC):
    register(_cls)

#: XGBoost's default metric per objective (ObjFunction::DefaultEvalMetric)
DEFAULTS = {
    "reg:squarederror": "rmse", "reg:squaredlogerror": "rmsle", "reg:logistic": "rmse",
    "binary:logistic": "logloss", "binary:logitraw": "logloss", "binary:hinge": "error",
    "multi:softprob": "mlogloss", "multi:softmax": "mlogloss", "count:poisson": "poisson-nloglik",
    "reg:gamma": "gamma-nloglik", "reg:tweedie": "tweedie-nloglik", "reg:pseudohubererror": "mphe",
    "reg:absoluteerror": "mae",
}


def get_metric(text: str, objective: str, params: dict[str, float] | None = None) -> Metric:
    """The metric `text` ('auc', 'error@0.7', 'tweedie-nloglik@1.2') for `objective`."""
    params = params or {}
    if not isinstance(text, str):
        raise ParameterError.bad("eval_metric", "a metric name", text)
    name, _, arg = text.partition("@")
    if name not in METRICS:
        raise UnsupportedParameter(f"eval_metric: expected one of {sorted(METRICS)}, got {text!r}")
    cls = METRICS[name]
    value = None
    if arg:
        if cls not in (Error, TweedieNLogLik):
            raise ParameterError.bad("eval_metric", f"{name} without an @argument", text)
        try:
            value = float(arg)
        except ValueError:
            raise ParameterError.bad("eval_metric", f"{name}@<number>", text) from None
    if cls is TweedieNLogLik:
        metric: Metric = TweedieNLogLik(value if value is not None else params.get("tweedie_variance_power"))
    elif cls is Error:
        metric = Error(value)
    elif cls is MPHE:
        metric = MPHE(params.get("huber_slope", 1.0))
    elif cls is AUC:
        metric = AUC(objective)
    else:
        metric = cls()
    metric.check(objective)
    return metric


def metrics_for(objective: str, eval_metric, disable_default: bool,
                params: dict[str, float] | None = None) -> list[Metric]:
    """The metrics XGBoost evaluates: eval_metric if given (in its order, duplicates
    once), else the objective's default unless disable_default_eval_metric."""
    if eval_metric:
        names = list(dict.fromkeys(eval_metric))
    elif disable_default:
        names = []
    else:
        names = [DEFAULTS[objective]]
    return [get_metric(n, objective, params) for n in names]


def eval_predictions(objective: str, margin: np.ndarray) -> np.ndarray:
    """Predictions as XGBoost's metrics see them (EvalTransform): float32, softmax
    probabilities for both multi-class objectives; one column unless multi-class."""
    obj = get_objective(objective)
    kind = "softmax" if obj.multiclass else obj.transform
    pred = apply_transform(kind, np.asarray(margin, np.float32) if obj.multiclass
                           else np.asarray(margin, np.float32).reshape(-1))
    return pred


def metric_inputs(objective: str, pred: np.ndarray) -> np.ndarray:
    """What AUC bins: predictions in [0, 1] (logitraw margins through the sigmoid)."""
    pred = np.asarray(pred, np.float64)
    if get_objective(objective).transform == "identity":
        return 1.0 / (1.0 + np.exp(-pred))
    return pred


def owner_stats(metrics: list[Metric], objective: str, margin: np.ndarray, y: np.ndarray,
                w: np.ndarray | None, n_groups: int) -> np.ndarray:
    """One owner's statistics of every metric, concatenated (zeros for no rows)."""
    if len(y) == 0:
        return np.zeros(sum(m.n_stats(n_groups) for m in metrics))
    pred = eval_predictions(objective, margin)
    parts = []
    for m in metrics:
        with np.errstate(all="ignore"):
            part = m.stats(pred, y, w)
        if not np.all(np.isfinite(part)):
            raise ParameterError.bad("eval_metric", f"{m.name} finite on the validation rows",
                                     "NaN or inf (a label outside the metric's domain, e.g. 0 for mape)")
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0)


def owner_values(metrics: list[Metric], objective: str, margin: np.ndarray, y: np.ndarray,
                 w: np.ndarray | None, n_groups: int) -> list[float]:
    """Every metric's value over rows held in one place: from the statistics, except
    AUC, which is exact there (no grid)."""
    stats = owner_stats(metrics, objective, margin, y, w, n_groups)
    values = metric_values(metrics, stats, n_groups)
    if len(y):
        pred = eval_predictions(objective, margin)
        values = [m.exact(pred, y, w) if isinstance(m, AUC) else v for m, v in zip(metrics, values)]
    return values


def metric_values(metrics: list[Metric], totals: np.ndarray, n_groups: int) -> list[float]:
    """Each metric's value from the statistics summed over owners."""
    out, at = [], 0
    for m in metrics:
        k = m.n_stats(n_groups)
        out.append(m.value(np.asarray(totals[at:at + k], np.float64)))
        at += k
    return out


def _need_multiclass(name: str, objective: str) -> None:
    if not get_objective(objective).multiclass:
        raise UnsupportedParameter(f"eval_metric: {name} needs a multi-class objective, not {objective}")


def _arg_text(value: float) -> str:
    """An @argument as XGBoost prints it in a metric name (%g-like)."""
    return f"{value:g}"
