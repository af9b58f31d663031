"""Training parameters: XGBoost's names, validated, with nothing silently ignored.

`TrainParams.from_dict` accepts exactly the parameters listed in SUPPORTED (and their
XGBoost aliases).  Anything else raises UnsupportedParameter naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.objectives import get_objective, trainable_objectives

OBJECTIVES = trainable_objectives()

ALIASES = {
    "learning_rate": "eta",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
    "min_split_loss": "gamma",
    "random_state": "seed",
}

#: name -> (default, description); the README lists these.
SUPPORTED: dict[str, tuple[Any, str]] = {
    "objective": ("reg:squarederror", "binary:logistic, reg:squarederror or multi:softprob"),
    "num_class": (None, "number of classes, required by multi:softprob"),
    "max_depth": (6, "maximum tree depth (depth-wise growth), 1..16"),
    "eta": (0.3, "learning rate (alias learning_rate)"),
    "lambda": (1.0, "L2 regularisation of leaf weights (alias reg_lambda)"),
    "alpha": (0.0, "L1 regularisation of leaf weights (alias reg_alpha)"),
    "gamma": (0.0, "minimum loss reduction to split (alias min_split_loss)"),
    "min_child_weight": (1.0, "minimum hessian sum in a child"),
    "max_bin": (256, "maximum number of histogram bins per feature, 2..1024"),
    "base_score": (None, "intercept; estimated as the installed xgboost does when absent"),
    "tree_method": ("hist", "only 'hist' (histogram-based, as secure training needs)"),
    "nthread": (None, "threads for each party's histogram kernel"),
    "seed": (0, "accepted for compatibility; training has no random sampling, so it has no effect"),
    "fixed_point_bits": (32, "fractional bits of the Z_2^64 fixed-point encoding, 16..40"),
}


@dataclass(frozen=True)
class TrainParams:
    objective: str
    num_class: int
    max_depth: int
    eta: float
    reg_lambda: float
    alpha: float
    gamma: float
    min_child_weight: float
    max_bin: int
    base_score: float | None
    nthread: int | None
    fixed_point_bits: int

    @property
    def n_groups(self) -> int:
        return self.num_class if get_objective(self.objective).multiclass else 1

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> "TrainParams":
        if params is not None and not isinstance(params, dict):
            raise ParameterError.bad("params", "a dict of XGBoost parameters", type(params).__name__)
        given: dict[str, Any] = {}
        for key, value in (params or {}).items():
            name = ALIASES.get(key, key)
            if name not in SUPPORTED:
                raise UnsupportedParameter(
                    f"parameter {key!r} is not supported by ppxgb secure training; "
                    f"supported: {', '.join(sorted(SUPPORTED))}")
            if name in given:
                raise ParameterError(f"parameter {key!r} given twice (with its alias)")
            given[name] = value
        p = {k: given.get(k, d) for k, (d, _) in SUPPORTED.items()}

        objective = p["objective"]
        if objective not in OBJECTIVES:
            raise UnsupportedParameter(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
        if p["tree_method"] != "hist":
            raise UnsupportedParameter(f"tree_method: only 'hist' is supported, got {p['tree_method']!r}")
        num_class = p["num_class"]
        if get_objective(objective).multiclass:
            num_class = _int("num_class", num_class, 2, 10_000)
        elif num_class not in (None, 0, 1):
            raise ParameterError.bad("num_class", f"unset for {objective}", num_class)
        base_score = p["base_score"]
        if base_score is not None:
            base_score = _float("base_score", base_score)
            if objective == "binary:logistic" and not 0.0 < base_score < 1.0:
                raise ParameterError.bad("base_score", "a probability in (0, 1) for binary:logistic", base_score)
            if get_objective(objective).multiclass:
                raise UnsupportedParameter("base_score: a fixed intercept is not supported for multi:softprob; "
                                           "leave it unset to use XGBoost's per-class estimate")
        nthread = p["nthread"]
        if nthread is not None:
            nthread = _int("nthread", nthread, 1, 1024)
        return cls(
            objective=objective,
            num_class=num_class or 0,
            max_depth=_int("max_depth", p["max_depth"], 1, 16),
            eta=_float("eta", p["eta"], lo=0.0, lo_open=True),
            reg_lambda=_float("lambda", p["lambda"], lo=0.0),
            alpha=_float("alpha", p["alpha"], lo=0.0),
            gamma=_float("gamma", p["gamma"], lo=0.0),
            min_child_weight=_float("min_child_weight", p["min_child_weight"], lo=0.0),
            max_bin=_int("max_bin", p["max_bin"], 2, 1024),
            base_score=base_score,
            nthread=nthread,
            fixed_point_bits=_int("fixed_point_bits", p["fixed_point_bits"], 16, 40),
        )

    def to_dict(self) -> dict:
        """Canonical XGBoost-named parameters (what roles exchange in the config message)."""
        return {
            "objective": self.objective, "num_class": self.num_class or None,
            "max_depth": self.max_depth, "eta": self.eta, "lambda": self.reg_lambda,
            "alpha": self.alpha, "gamma": self.gamma, "min_child_weight": self.min_child_weight,
            "max_bin": self.max_bin, "base_score": self.base_score, "nthread": self.nthread,
            "fixed_point_bits": self.fixed_point_bits,
        }

def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ParameterError.bad(name, "an integer", value)
    value = int(value)
    if not lo <= value <= hi:
        raise ParameterError.bad(name, f"an integer in [{lo}, {hi}]", value)
    return value


def _float(name: str, value: Any, lo: float | None = None, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError.bad(name, "a finite number", value)
    value = float(value)
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ParameterError.bad(name, f"a number {'>' if lo_open else '>='} {lo}", value)
    return value
