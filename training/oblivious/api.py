"""train_oblivious: every role of oblivious training as a thread over one transport.

    from ppxgb.training import train_oblivious
    booster = train_oblivious(params, [(X1, y1), (X2, y2)], num_boost_round=5)
    booster = train_oblivious(params, [X_a, X_b], 5, partition="vertical", label=y, label_party=0)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.model import Ensemble, as_float32_matrix
from ppxgb.objectives import get_objective
from ppxgb.transport import InMemoryTransport, Transport

from ..gradients import check_weights
from ..harness import run_roles
from ..categorical import NUMERIC, split_columns
from ..params import ALIASES, SAMPLING, SUPPORTED, TrainParams
from ..vertical.api import types_per_party
from .dealer import run_dealer
from .roles import run_analyst, run_party
from .server import run_server
from .stages import DEALER, SERVERS, party_names

OBJECTIVES = ("reg:squarederror", "binary:logistic")
MAX_ROWS = 1 << 20          # the public scaling range of the division assumes H < 2^20


#: what the oblivious learner implements (or, for the last ones, accepts with no effect on
#: the model); any other parameter given with a value other than its default is refused
IMPLEMENTED = frozenset({"objective", "max_depth", "eta", "lambda", "gamma", "min_child_weight", "max_bin",
                         "max_cat_to_onehot", "base_score", "tree_method", "device", "nthread", "seed", "verbosity",
                         "validate_parameters"})


def check_params(params: dict[str, Any]) -> TrainParams:
    """The parameters the oblivious learner implements; anything else is refused by name."""
    p = TrainParams.from_dict(params)
    if p.objective not in OBJECTIVES:
        raise UnsupportedParameter(f"objective: oblivious training supports {list(OBJECTIVES)}, got {p.objective!r}")
    for key, value in (params or {}).items():
        name = ALIASES.get(key, key)
        if name not in IMPLEMENTED and value != SUPPORTED[name][0]:
            raise UnsupportedParameter(f"{key}: not available in oblivious training (it implements "
                                       f"{sorted(IMPLEMENTED)}), got {value!r}")
    for name, value, default in (("alpha", p.alpha, 0.0), ("max_delta_step", p.max_delta_step, 0.0),
                                 ("scale_pos_weight", p.scale_pos_weight, 1.0),
                                 *((s, getattr(p, s), 1.0) for s in SAMPLING)):
        if value != default:
            raise UnsupportedParameter(f"{name}: oblivious training supports only {default}, got {value}")
    if not p.eta <= 1.0:
        raise ParameterError.bad("eta", "at most 1 in oblivious training (its run-time range check relies on "
                                 "each tree lowering the residuals)", p.eta)
    if not p.reg_lambda >= 2.0 ** -8:
        raise ParameterError.bad("lambda", "at least 2^-8 in oblivious training (the division's range)",
                                 p.reg_lambda)
    return p


def check_matrix(X, name: str, feature_types=None):
    """X checked (rows, columns, category codes); returned as given when it holds
    categorical columns (the party codes them), else as a float32 matrix."""
    coded = split_columns(X, feature_types, name)
    if coded[0].shape[0] == 0 or coded[0].shape[1] == 0:
        raise ParameterError.bad(name, "at least one row and one column", coded[0].shape)
    return X if any(k != NUMERIC for k in coded[1]) else as_float32_matrix(X, name=name)


def run_oblivious_federation(params: dict[str, Any], parties: Sequence[Any], num_boost_round: int = 10,
                             partition: str = "horizontal", n_servers: int = 2, *, label=None,
                             label_party: int = 0, weight=None, feature_types=None,
                             transport: Transport | None = None,
                             timeout: float | None = 600.0) -> tuple[Ensemble, Transport]:
    p = check_params(params)
    if isinstance(num_boost_round, bool) or not isinstance(num_boost_round, int) or num_boost_round < 0:
        raise ParameterError.bad("num_boost_round", "an int >= 0", num_boost_round)
    if n_servers != 2:
        raise ParameterError.bad("n_servers", "2 (oblivious training runs two compute servers and a dealer)",
                                 n_servers)
    if partition not in ("horizontal", "vertical"):
        raise ParameterError.bad("partition", "'horizontal' or 'vertical'", partition)
    if not isinstance(parties, (list, tuple)) or not parties:
        raise ParameterError.bad("parties", "a non-empty list", type(parties).__name__)
    obj = get_objective(p.objective)
    if partition == "horizontal":
        data = []
        if weight is not None:
            raise ParameterError.bad("weight", "None in horizontal training (each party's weights come as "
                                     "the third element of its (X, y, w))", type(weight).__name__)
        for i, item in enumerate(parties):
            if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
                raise ParameterError.bad(f"parties[{i}]", "an (X, y) pair or (X, y, w)", type(item).__name__)
            X = check_matrix(item[0], f"parties[{i}] X", feature_types)
            y = obj.check_labels(item[1], 0, f"parties[{i}] y")
            if len(y) != len(X):
                raise ParameterError.bad(f"parties[{i}] y", f"{len(X)} labels", len(y))
            data.append((X, y, check_weights(item[2] if len(item) == 3 else None, len(X), f"parties[{i}] w")))
        types = [feature_types] * len(data)
    else:
        if isinstance(label_party, bool) or not isinstance(label_party, int) or not 0 <= label_party < len(parties):
            raise ParameterError.bad("label_party", f"an int in [0, {len(parties)})", label_party)
        types = types_per_party(feature_types, list(parties))
        blocks = [check_matrix(X, f"parties[{i}]", t) for i, (X, t) in enumerate(zip(parties, types))]
        if label is None:
            raise ParameterError.bad("label", "the label party's labels (an array)", None)
        y = obj.check_labels(label, 0, "label")
        if len(y) != len(blocks[label_party]):
            raise ParameterError.bad("label", f"{len(blocks[label_party])} labels", len(y))
        w = check_weights(weight, len(y), "weight")
        data = [(X, y, w) if i == label_party else (X, None, None) for i, X in enumerate(blocks)]
    rows = sum(len(X) for X, _, _ in data) if partition == "horizontal" else len(data[0][0])
    if rows > MAX_ROWS:
        raise ParameterError.bad("parties", f"at most {MAX_ROWS} rows in oblivious training", rows)
    names = party_names(len(data))
    transport = transport or InMemoryTransport(default_timeout=timeout)
    helpers = [(q, run_party, (transport, q, X, y), {"weight": w, "feature_types": t, "timeout": timeout})
               for q, (X, y, w), t in zip(names, data, types)]
    helpers += [(s, run_server, (transport, i), {"parties": names, "timeout": timeout})
                for i, s in enumerate(SERVERS)]
    helpers.append((DEALER, run_dealer, (transport, DEALER), {"servers": SERVERS, "analyst": "analyst",
                                                              "timeout": timeout}))
    model = run_roles(helpers, lambda: run_analyst(transport, params, num_boost_round, parties=names,
                                                   partition=partition, label_party=label_party,
                                                   timeout=timeout))
    return model, transport


def train_oblivious(params: dict[str, Any], parties: Sequence[Any], num_boost_round: int = 10,
                    partition: str = "horizontal", n_servers: int = 2, *, label=None, label_party: int = 0,
                    weight=None, feature_types=None, transport: Transport | None = None,
                    timeout: float | None = 600.0):
    """Train an XGBoost model that only the analyst sees: no party or server learns a
    split, a threshold, a leaf or which rows went where (docs/oblivious.md).

    horizontal: parties = [(X, y), ...] or [(X, y, w), ...], one per hospital (w: its
    sample weights).  vertical: parties = column blocks of the same rows, `label` the
    labels and `weight` the sample weights held by parties[label_party].
    Categorical features, as in the other modes: pandas `category` columns, and integer
    codes typed "c" in feature_types (one entry per column; vertically per feature
    column in party order); each gets XGBoost's one-hot splits, so it needs fewer
    categories than max_cat_to_onehot (others are refused by name).
    Returns an xgboost.Booster.
    """
    model, _ = run_oblivious_federation(params, parties, num_boost_round, partition, n_servers, label=label,
                                        label_party=label_party, weight=weight, feature_types=feature_types,
                                        transport=transport, timeout=timeout)
    return model.to_booster()
