"""Training parameters: XGBoost's names, validated, with nothing silently ignored.

`TrainParams.from_dict` accepts exactly the parameters listed in SUPPORTED (and their
XGBoost aliases).  Anything else raises UnsupportedParameter naming it.
"""

from __future__ import annotations

import json
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
    "objective": ("reg:squarederror", "one of the trainable objectives (README)"),
    "num_class": (None, "number of classes, required by multi:softprob and multi:softmax"),
    "max_depth": (6, "maximum tree depth, 1..16; 0 (no limit) with grow_policy='lossguide' and max_leaves > 0"),
    "grow_policy": ("depthwise", "'depthwise' (level by level) or 'lossguide' (the node of largest loss change first)"),
    "max_leaves": (0, "maximum number of leaves per tree, 0 for no limit, up to 65536"),
    "monotone_constraints": (None, "per feature 1 (increasing), -1 (decreasing) or 0: '(1,0,-1)', a list, or a dict by feature name"),
    "interaction_constraints": (None, "lists of feature indices or names that may interact: [[0, 1], [2, 3]]"),
    "eta": (0.3, "learning rate (alias learning_rate)"),
    "lambda": (1.0, "L2 regularisation of leaf weights (alias reg_lambda)"),
    "alpha": (0.0, "L1 regularisation of leaf weights (alias reg_alpha)"),
    "gamma": (0.0, "minimum loss reduction to split (alias min_split_loss)"),
    "min_child_weight": (1.0, "minimum hessian sum in a child"),
    "max_delta_step": (None, "clip of each leaf weight, 0 for none; count:poisson: 0.7, also in its hessian"),
    "scale_pos_weight": (1.0, "factor on the weight of rows labelled 1 (xgboost's RegLossObj objectives)"),
    "huber_slope": (1.0, "delta of reg:pseudohubererror, nonzero"),
    "tweedie_variance_power": (1.5, "variance power of reg:tweedie, in [1, 2)"),
    "max_bin": (256, "maximum number of histogram bins per feature, 2..1024"),
    "base_score": (None, "intercept; estimated as the installed xgboost does when absent"),
    "tree_method": ("hist", "only 'hist' (histogram-based, as secure training needs)"),
    "device": ("cpu", "only 'cpu'"),
    "nthread": (None, "threads for each party's histogram kernel"),
    "seed": (0, "drives row and column sampling (deterministic per seed)"),
    "subsample": (1.0, "fraction of each party's rows sampled per tree, in (0, 1]; drawn by the row's owner"),
    "colsample_bytree": (1.0, "fraction of features sampled per tree, in (0, 1]"),
    "colsample_bylevel": (1.0, "fraction of the tree's features sampled per level, in (0, 1]"),
    "colsample_bynode": (1.0, "fraction of the level's features sampled per node, in (0, 1]"),
    "verbosity": (1, "0..3; 0 turns the default progress bar off, ppxgb logs nothing else"),
    "validate_parameters": (True, "accepted; ppxgb always validates (unknown parameters raise)"),
    "eval_metric": (None, "metrics of the eval sets (a name or a list): ppxgb/metrics.py, xgboost's names"),
    "disable_default_eval_metric": (False, "no metric when eval_metric is unset (else the objective's default)"),
    "fixed_point_bits": (32, "fractional bits of the Z_2^64 fixed-point encoding, 16..40"),
    "max_cat_to_onehot": (4, "categorical features with fewer categories than this get one-hot splits, others partition splits"),
    "max_cat_threshold": (64, "a partition split's scans cover at most this many sorted categories, from either end"),
    "dp_epsilon": (None, "differential privacy budget epsilon > 0 of the whole training; unset: no DP (README)"),
    "dp_delta": (1e-5, "differential privacy delta, in (0, 1); used with dp_epsilon"),
    "dp_clip": (1.0, "under dp_epsilon, bound on each row's |gradient| for reg:squarederror (rows beyond are clipped)"),
    "dp_split": ("histogram", "under dp_epsilon: 'histogram' (split search on noisy G/H histograms) or 'random' "
                 "(splits drawn from the seed, only the leaves' G/H released)"),
    "dp_select_features": (0, "under dp_split='random': random splits use only the k features of largest noisy "
                           "root split gain, chosen by one more DP release (0: all features)"),
}

#: parameters of some objectives only (xgboost ignores them elsewhere; ppxgb refuses
#: a value other than the default there, rather than ignore it silently)
OBJECTIVE_PARAMS = ("scale_pos_weight", "huber_slope", "tweedie_variance_power")

#: sampling fractions, each in (0, 1]
SAMPLING = ("subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode")

#: XGBoost parameters ppxgb refuses, and why
NOT_SUPPORTED_WHY = {
    "num_parallel_tree": "boosted random forests need every tree of a round grown on the round's gradients, "
                         "while each source recomputes them from the margins the previous tree changed; "
                         "train one tree per round",
}

#: objectives ppxgb knows but cannot train, and why
NOT_TRAINABLE = {
    "reg:absoluteerror": "xgboost refreshes every leaf to a weighted quantile of its rows' residuals; "
                         "the exact quantile is one row's residual, which secure sums cannot give "
                         "without revealing it",
    "reg:quantileerror": "xgboost refreshes every leaf to a weighted quantile of its rows' residuals; "
                         "the exact quantile is one row's residual, which secure sums cannot give "
                         "without revealing it",
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
    max_delta_step: float = 0.0
    scale_pos_weight: float = 1.0
    huber_slope: float = 1.0
    tweedie_variance_power: float = 1.5
    seed: int = 0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    colsample_bylevel: float = 1.0
    colsample_bynode: float = 1.0
    verbosity: int = 1
    validate_parameters: bool = True
    eval_metric: tuple[str, ...] | None = None
    disable_default_eval_metric: bool = False
    max_cat_to_onehot: int = 4
    max_cat_threshold: int = 64
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_clip: float = 1.0
    dp_split: str = "histogram"
    dp_select_features: int = 0
    grow_policy: str = "depthwise"
    max_leaves: int = 0
    monotone_constraints: tuple | None = None      # ints by position, or (name, int) pairs
    interaction_constraints: tuple[tuple, ...] | None = None

    @property
    def lossguide(self) -> bool:
        return self.grow_policy == "lossguide"

    @property
    def max_nodes(self) -> int:
        """A public bound on the node ids of a tree (the sources size their tables by it)."""
        bounds = [2 ** (self.max_depth + 1)] if self.max_depth > 0 else []
        if self.max_leaves > 0:
            bounds.append(2 * self.max_leaves)
        return min(bounds)

    @property
    def max_builds(self) -> int:
        """A public bound on the histogram requests of one tree: a level each under
        depthwise; under lossguide the root and one smaller child per expansion whose
        children are evaluated (max_leaves - 1, or every internal node above the last
        level)."""
        if not self.lossguide:
            return self.max_depth
        bounds = [max(1, self.max_leaves - 1)] if self.max_leaves > 0 else []
        if self.max_depth > 0:
            bounds.append(2 ** max(self.max_depth - 1, 0))
        return min(bounds)

    @property
    def n_groups(self) -> int:
        return self.num_class if get_objective(self.objective).multiclass else 1

    @property
    def objective_params(self) -> dict[str, float]:
        """The objective's own parameters (its `defaults` keys), as given or defaulted."""
        return {k: float(getattr(self, k)) for k in get_objective(self.objective).defaults}

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> "TrainParams":
        if params is not None and not isinstance(params, dict):
            raise ParameterError.bad("params", "a dict of XGBoost parameters", type(params).__name__)
        given: dict[str, Any] = {}
        for key, value in (params or {}).items():
            name = ALIASES.get(key, key)
            if name not in SUPPORTED:
                why = f" ({NOT_SUPPORTED_WHY[name]})" if name in NOT_SUPPORTED_WHY else ""
                raise UnsupportedParameter(
                    f"parameter {key!r} is not supported by ppxgb secure training{why}; "
                    f"supported: {', '.join(sorted(SUPPORTED))}")
            if name in given:
                raise ParameterError(f"parameter {key!r} given twice (with its alias)")
            given[name] = value
        p = {k: given.get(k, d) for k, (d, _) in SUPPORTED.items()}

        objective = p["objective"]
        if objective in NOT_TRAINABLE:
            raise UnsupportedParameter(f"objective: {objective} is not supported by secure training: "
                                       f"{NOT_TRAINABLE[objective]}")
        if objective not in OBJECTIVES:
            raise UnsupportedParameter(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
        obj = get_objective(objective)
        if p["tree_method"] != "hist":
            raise UnsupportedParameter(f"tree_method: only 'hist' is supported, got {p['tree_method']!r}")
        if p["device"] != "cpu":
            raise UnsupportedParameter(f"device: only 'cpu' is supported (secure training runs its own "
                                       f"kernels), got {p['device']!r}")
        num_class = p["num_class"]
        if obj.multiclass:
            num_class = _int("num_class", num_class, 2, 10_000)
        elif num_class not in (None, 0, 1):
            raise ParameterError.bad("num_class", f"unset for {objective}", num_class)
        base_score = p["base_score"]
        if base_score is not None:
            base_score = _float("base_score", base_score)
            obj.check_base_score(base_score)
        nthread = p["nthread"]
        if nthread is not None:
            nthread = _int("nthread", nthread, -1, 1024)
            nthread = nthread if nthread > 0 else None     # xgboost: <= 0 means every core
        for name in OBJECTIVE_PARAMS:
            if name in given and name not in obj.defaults and _float(name, given[name]) != SUPPORTED[name][0]:
                raise ParameterError(f"{name}: {objective} does not use it (xgboost would ignore it); "
                                     f"leave it out")
        max_delta_step = p["max_delta_step"]
        if max_delta_step is None:     # xgboost sets 0.7 for count:poisson, for its hessian and the trees
            max_delta_step = obj.defaults.get("max_delta_step", 0.0)
        huber_slope = _float("huber_slope", p["huber_slope"])
        if huber_slope == 0.0:
            raise ParameterError.bad("huber_slope", "a nonzero number", huber_slope)
        tweedie = _float("tweedie_variance_power", p["tweedie_variance_power"], lo=1.0)
        if not tweedie < 2.0:
            raise ParameterError.bad("tweedie_variance_power", "a number in [1, 2)", tweedie)
        grow_policy = p["grow_policy"]
        if grow_policy not in ("depthwise", "lossguide"):
            raise ParameterError.bad("grow_policy", "'depthwise' or 'lossguide'", grow_policy)
        max_depth = _int("max_depth", p["max_depth"], 0, 16)
        max_leaves = _int("max_leaves", p["max_leaves"], 0, 65536)
        if max_depth == 0 and grow_policy != "lossguide":
            raise ParameterError.bad("max_depth", "an integer in [1, 16] under grow_policy='depthwise' "
                                     "(0, no limit, needs grow_policy='lossguide')", max_depth)
        if max_depth == 0 and max_leaves == 0:
            raise ParameterError("max_depth: 0 (no depth limit) needs max_leaves > 0: secure training sizes "
                                 "its messages by a public bound on the tree")
        return cls(
            objective=objective,
            num_class=num_class or 0,
            max_depth=max_depth,
            grow_policy=grow_policy,
            max_leaves=max_leaves,
            monotone_constraints=_monotone(p["monotone_constraints"]),
            interaction_constraints=_interactions(p["interaction_constraints"]),
            eta=_float("eta", p["eta"], lo=0.0, lo_open=True),
            reg_lambda=_float("lambda", p["lambda"], lo=0.0),
            alpha=_float("alpha", p["alpha"], lo=0.0),
            gamma=_float("gamma", p["gamma"], lo=0.0),
            min_child_weight=_float("min_child_weight", p["min_child_weight"], lo=0.0),
            max_bin=_int("max_bin", p["max_bin"], 2, 1024),
            base_score=base_score,
            nthread=nthread,
            fixed_point_bits=_int("fixed_point_bits", p["fixed_point_bits"], 16, 40),
            max_delta_step=_float("max_delta_step", max_delta_step, lo=0.0),
            scale_pos_weight=_float("scale_pos_weight", p["scale_pos_weight"], lo=0.0),
            huber_slope=huber_slope,
            tweedie_variance_power=tweedie,
            seed=_int("seed", 0 if p["seed"] is None else p["seed"], -2**63, 2**64 - 1),
            **{name: _fraction(name, p[name]) for name in SAMPLING},
            verbosity=_int("verbosity", p["verbosity"], 0, 3),
            validate_parameters=_bool("validate_parameters", p["validate_parameters"]),
            eval_metric=_metrics(p["eval_metric"]),
            disable_default_eval_metric=_bool("disable_default_eval_metric", p["disable_default_eval_metric"]),
            max_cat_to_onehot=_int("max_cat_to_onehot", p["max_cat_to_onehot"], 1, 2 ** 31 - 1),
            max_cat_threshold=_int("max_cat_threshold", p["max_cat_threshold"], 1, 2 ** 31 - 1),
            **_dp(p),
        )

    def to_dict(self) -> dict:
        """Canonical XGBoost-named parameters (what roles exchange in the config message)."""
        return {
            "objective": self.objective, "num_class": self.num_class or None,
            "max_depth": self.max_depth, "eta": self.eta, "lambda": self.reg_lambda,
            "alpha": self.alpha, "gamma": self.gamma, "min_child_weight": self.min_child_weight,
            "max_bin": self.max_bin, "base_score": self.base_score, "nthread": self.nthread,
            "fixed_point_bits": self.fixed_point_bits, "max_delta_step": self.max_delta_step,
            **{k: getattr(self, k) for k in OBJECTIVE_PARAMS if k in get_objective(self.objective).defaults},
            "seed": self.seed, **{name: getattr(self, name) for name in SAMPLING},
            "verbosity": self.verbosity, "validate_parameters": self.validate_parameters,
            "eval_metric": list(self.eval_metric) if self.eval_metric is not None else None,
            "disable_default_eval_metric": self.disable_default_eval_metric,
            "max_cat_to_onehot": self.max_cat_to_onehot, "max_cat_threshold": self.max_cat_threshold,
            **({} if self.dp_epsilon is None else
               {"dp_epsilon": self.dp_epsilon, "dp_delta": self.dp_delta, "dp_clip": self.dp_clip,
                "dp_split": self.dp_split, "dp_select_features": self.dp_select_features}),
            "grow_policy": self.grow_policy, "max_leaves": self.max_leaves,
            "monotone_constraints": _monotone_out(self.monotone_constraints),
            "interaction_constraints": [list(c) for c in self.interaction_constraints]
            if self.interaction_constraints is not None else None,
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


def _fraction(name: str, value: Any) -> float:
    value = _float(name, value, lo=0.0, lo_open=True)
    if value > 1.0:
        raise ParameterError.bad(name, "a number in (0, 1]", value)
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ParameterError.bad(name, "a bool (or 0/1)", value)


def _dp(p: dict[str, Any]) -> dict[str, Any]:
    """dp_epsilon > 0 (None: no DP), dp_delta in (0, 1), dp_clip > 0, dp_select_features >= 0
    (only with dp_split='random'); dp_delta, dp_clip, dp_split and dp_select_features other
    than their defaults need dp_epsilon (nothing is silently ignored)."""
    eps = p["dp_epsilon"]
    if eps is not None:
        eps = _float("dp_epsilon", eps, lo=0.0, lo_open=True)
    for name in ("dp_delta", "dp_clip", "dp_split", "dp_select_features"):
        if eps is None and p[name] != SUPPORTED[name][0]:
            raise ParameterError(f"{name}: used only with dp_epsilon, which is unset")
    delta = _float("dp_delta", p["dp_delta"], lo=0.0, lo_open=True)
    if delta >= 1.0:
        raise ParameterError.bad("dp_delta", "a number in (0, 1)", delta)
    if p["dp_split"] not in ("histogram", "random"):
        raise ParameterError.bad("dp_split", "'histogram' or 'random'", p["dp_split"])
    select = _int("dp_select_features", p["dp_select_features"], 0, 2 ** 31 - 1)
    if select and p["dp_split"] != "random":
        raise ParameterError("dp_select_features: used only with dp_split='random' (the histogram search "
                             "chooses its own features)")
    return {"dp_epsilon": eps, "dp_delta": delta, "dp_clip": _float("dp_clip", p["dp_clip"], lo=0.0, lo_open=True),
            "dp_split": p["dp_split"], "dp_select_features": select}


def _metrics(value: Any) -> tuple[str, ...] | None:
    """eval_metric: a name or a list of names (xgboost's forms), kept as a tuple."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(v, str) and v for v in names):
        raise ParameterError.bad("eval_metric", "a metric name or a list of names", value)
    return tuple(names)


def _monotone(value: Any) -> tuple | None:
    """monotone_constraints in XGBoost's forms: "(1,0,-1)", a list/tuple of ints, or a
    dict {feature name: int}; kept as a tuple of ints or of (name, int) pairs (names
    are resolved against the parties' feature names when training starts)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("(") and text.endswith(")")):
            raise ParameterError.bad("monotone_constraints", "a string like '(1,0,-1)'", value)
        body = text[1:-1].strip()
        try:
            value = [int(v) for v in body.split(",")] if body else []
        except ValueError:
            raise ParameterError.bad("monotone_constraints", "a string like '(1,0,-1)'", value) from None
    if isinstance(value, dict):
        items = tuple(value.items())
        if not all(isinstance(k, str) for k, _ in items):
            raise ParameterError.bad("monotone_constraints", "a dict keyed by feature names", value)
        for k, c in items:
            _direction(c, value)
        return tuple((k, int(c)) for k, c in items)
    if not isinstance(value, (list, tuple)):
        raise ParameterError.bad("monotone_constraints", "'(1,0,-1)', a list of -1/0/1 or a dict by name", value)
    return tuple(_direction(c, value) for c in value)


def _direction(c: Any, whole: Any) -> int:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or c not in (-1, 0, 1):
        raise ParameterError.bad("monotone_constraints", "entries -1, 0 or 1", whole)
    return int(c)


def _monotone_out(value: tuple | None):
    if value is None or not value or not isinstance(value[0], tuple):
        return list(value) if value is not None else None
    return dict(value)


def _interactions(value: Any) -> tuple[tuple, ...] | None:
    """interaction_constraints: lists of feature indices or names (or that as a JSON
    string, XGBoost's native form)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ParameterError.bad("interaction_constraints", "a list of lists, e.g. [[0, 1], [2, 3]]",
                                     value) from None
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(g, (list, tuple)) and all(isinstance(f, str) or (isinstance(f, int) and not isinstance(f, bool)
                                                                   and f >= 0) for f in g) for g in value)
    if not ok:
        raise ParameterError.bad("interaction_constraints",
                                 "a list of lists of feature indices (>= 0) or names, e.g. [[0, 1], [2, 3]]", value)
    return tuple(tuple(g) for g in value)
