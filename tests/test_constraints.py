"""Monotone and interaction constraints, loss-guided growth and max_leaves, horizontal
and vertical, against xgboost.train(tree_method="hist") on the pooled rows.

The features are discrete (12 values), so the secure bins and xgboost's cuts coincide:
margins must agree to 1e-5 on at least 99% of the rows.  Every case also checks that
the option changes xgboost's own model on this data (so a learner that ignored it
would fail), and the monotone cases check the monotonicity of the predictions.
"""

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.errors import ParameterError
from ppxgb.training import train_horizontal, train_vertical

from helpers import assert_margins_match, centralized, column_blocks, make_discrete_data, split_rows

TOL = 1e-5
ROUNDS = 4
BASE = {"max_depth": 4, "eta": 0.3, "max_bin": 64}


def signal(X):
    return 0.5 * X[:, 0] - 0.4 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3] - 0.2 * X[:, 4] * X[:, 0]


def data(objective, seed=0, n=900):
    return make_discrete_data(objective, n, 6, 0.1, seed, signal)


#: (params, what the option changes); every case runs horizontal and vertical
CASES = {
    "monotone": {"monotone_constraints": "(1,-1,0,0,0,0)"},
    "monotone-list-logistic": {"objective": "binary:logistic", "monotone_constraints": [0, 1, 0, -1, 0, 0]},
    "monotone-mds-alpha": {"monotone_constraints": (1, -1), "max_delta_step": 0.4, "alpha": 0.5},
    "monotone-lossguide": {"monotone_constraints": (1, -1, 0, 0, 0, 0), "grow_policy": "lossguide",
                           "max_leaves": 12},
    "interaction": {"interaction_constraints": [[0, 1], [2, 3, 4]]},
    "interaction-monotone": {"interaction_constraints": [[0, 2], [1, 3, 5]],
                             "monotone_constraints": (1, 0, 0, -1, 0, 0)},
    "lossguide": {"grow_policy": "lossguide", "max_leaves": 10},
    "lossguide-depth0": {"grow_policy": "lossguide", "max_depth": 0, "max_leaves": 24},
    # leaves at max_depth are split without a histogram request: their splits reach the
    # parties with the next request (horizontal: a source that dropped them fails here)
    "lossguide-depth": {"grow_policy": "lossguide", "max_depth": 3, "gamma": 0.5},
    "depthwise-max-leaves": {"max_leaves": 6},
}


def oracle_params(params):
    """xgboost's Python API maps interaction indices through feature names (give it the
    native JSON string) and takes monotone constraints as a tuple, not a list."""
    out = {"objective": "reg:squarederror", **BASE, **params}
    if isinstance(out.get("monotone_constraints"), list):
        out["monotone_constraints"] = tuple(out["monotone_constraints"])
    if isinstance(out.get("interaction_constraints"), list):
        out["interaction_constraints"] = json.dumps(out["interaction_constraints"])
    return out


def train(mode, params, X, y):
    if mode == "horizontal":
        return train_horizontal(params, split_rows(X, y, [300, 250, 350]), num_boost_round=ROUNDS, n_servers=2)
    return train_vertical(params, column_blocks(X, 3), y, num_boost_round=ROUNDS)


def margins(booster, X):
    return booster.predict(xgb.DMatrix(X), output_margin=True)


#: the fast tier runs these (case, mode) pairs; the rest are marked slow
FAST = {("monotone", "horizontal"), ("monotone-lossguide", "vertical"), ("interaction", "horizontal"),
        ("lossguide-depth0", "vertical"), ("lossguide-depth", "horizontal")}


@pytest.mark.parametrize("case,mode", [
    pytest.param(case, mode, marks=() if (case, mode) in FAST else pytest.mark.slow)
    for case in CASES for mode in ("horizontal", "vertical")])
def test_matches_xgboost(case, mode):
    extra = CASES[case]
    params = {"objective": "reg:squarederror", **BASE, **extra}
    X, y = data(params["objective"])
    reference = centralized(oracle_params(extra), X, y, ROUNDS)
    plain = centralized(oracle_params({}), X, y, ROUNDS)
    assert np.abs(margins(reference, X) - margins(plain, X)).max() > 1e-3, f"{case} does not change xgboost's model"
    secure = train(mode, params, X, y)
    assert_margins_match(secure, reference, X, tol=TOL)


def _sweep(booster, X, feature):
    """Margins of rows of X with `feature` set to each of its values in turn:
    (n_rows, n_values), values ascending."""
    values = np.unique(X[:, feature][~np.isnan(X[:, feature])])
    out = []
    for v in values:
        Z = X.copy()
        Z[:, feature] = v
        out.append(margins(booster, Z))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("policy", [{}, pytest.param({"grow_policy": "lossguide", "max_leaves": 16},
                                                     marks=pytest.mark.slow)])
def test_predictions_are_monotone(policy):
    """Increasing in feature 0, decreasing in feature 1, for every row (the other
    features fixed); without the constraint the same data gives a violation."""
    X, y = data("reg:squarederror", seed=3)
    y = y + 2.0 * np.sin(3.0 * np.nan_to_num(X[:, 0]))           # not monotone in feature 0 itself
    params = {"objective": "reg:squarederror", **BASE, **policy, "monotone_constraints": "(1,-1)"}
    secure = train_horizontal(params, split_rows(X, y, [450, 450]), num_boost_round=6, n_servers=2)
    up, down = _sweep(secure, X[:200], 0), _sweep(secure, X[:200], 1)
    assert np.all(np.diff(up, axis=1) >= 0) and np.all(np.diff(down, axis=1) <= 0)
    free = train_horizontal({**params, "monotone_constraints": None}, split_rows(X, y, [450, 450]),
                            num_boost_round=6, n_servers=2)
    assert np.any(np.diff(_sweep(free, X[:200], 0), axis=1) < 0)


@pytest.mark.slow
def test_constraints_by_feature_name():
    """With DataFrames, monotone_constraints as a dict and interaction_constraints as
    lists of names, as xgboost's Python API takes them."""
    X, y = data("reg:squarederror", seed=5)
    names = [f"v{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    extra = {"monotone_constraints": {"v1": -1, "v0": 1}, "interaction_constraints": [["v0", "v1"], ["v2", "v3"]]}
    params = {"objective": "reg:squarederror", **BASE, **extra}
    parts = [(frame.iloc[:450], y[:450]), (frame.iloc[450:], y[450:])]
    secure = train_horizontal(params, parts, num_boost_round=ROUNDS, n_servers=2)
    reference = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(frame, label=y), ROUNDS)
    assert_margins_match(secure, reference, frame, tol=TOL)
    vertical = train_vertical(params, [frame[names[:3]], frame[names[3:]]], y, num_boost_round=ROUNDS)
    assert_margins_match(vertical, reference, frame, tol=TOL)


def test_interaction_paths_stay_inside_a_set():
    """Every root-to-leaf path of a constrained model uses features of one set (or the
    root's feature alone when it belongs to no set)."""
    X, y = data("reg:squarederror", seed=7)
    sets = [{0, 1}, {2, 3, 4}]
    params = {"objective": "reg:squarederror", **BASE, "interaction_constraints": [sorted(s) for s in sets]}
    secure = train_horizontal(params, split_rows(X, y, [450, 450]), num_boost_round=ROUNDS, n_servers=2)
    for tree in json.loads(secure.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        left, right, feat = tree["left_children"], tree["right_children"], tree["split_indices"]

        def paths(node, used):
            if left[node] == -1:
                yield used
                return
            for child in (left[node], right[node]):
                yield from paths(child, used | {feat[node]})
        for used in paths(0, frozenset()):
            assert len(used) <= 1 or any(used <= s for s in sets), used


@pytest.mark.slow
def test_lossguide_respects_max_leaves():
    X, y = data("reg:squarederror", seed=2)
    params = {"objective": "reg:squarederror", **BASE, "grow_policy": "lossguide", "max_depth": 0, "max_leaves": 7}
    secure = train_vertical(params, column_blocks(X, 2), y, num_boost_round=3)
    for tree in json.loads(secure.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        assert sum(1 for c in tree["left_children"] if c == -1) == 7


BAD = [
    ({"monotone_constraints": "(1,0,2)"}, "monotone_constraints"),
    ({"monotone_constraints": "1,0"}, "monotone_constraints"),
    ({"monotone_constraints": (1, 0, 0, 0, 0, 0, 1)}, "monotone_constraints"),
    ({"monotone_constraints": {"nope": 1}}, "monotone_constraints"),
    ({"interaction_constraints": [[0, 9]]}, "interaction_constraints"),
    ({"interaction_constraints": [0, 1]}, "interaction_constraints"),
    ({"interaction_constraints": [["x"]]}, "interaction_constraints"),
    ({"grow_policy": "leafwise"}, "grow_policy"),
    ({"max_depth": 0}, "max_depth"),
    ({"grow_policy": "lossguide", "max_depth": 0}, "max_leaves"),
    ({"max_leaves": -1}, "max_leaves"),
]


@pytest.mark.parametrize("extra,name", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_constraints_are_refused_by_name(extra, name):
    X, y = data("reg:squarederror", n=120)
    with pytest.raises(ParameterError, match=name):
        train_horizontal({**BASE, **extra}, split_rows(X, y, [60, 60]), num_boost_round=1, n_servers=2)


def test_num_parallel_tree_is_refused_with_a_reason():
    from ppxgb.errors import UnsupportedParameter
    from ppxgb.training.params import TrainParams
    with pytest.raises(UnsupportedParameter, match="num_parallel_tree.*random forests"):
        TrainParams.from_dict({"num_parallel_tree": 4})


@pytest.mark.parametrize("mode", [pytest.param("horizontal", marks=pytest.mark.slow), "vertical"])
def test_lossguide_with_early_stopping(mode):
    """Validation rows follow loss-guided trees (vertical: the feature holders answer
    left bits at node ids beyond 2^(max_depth + 1)): the same validation logloss and
    best_iteration as xgboost.train with the pooled validation set."""
    X, y = data("binary:logistic", seed=1)
    Xv, yv = data("binary:logistic", seed=2, n=300)
    params = {"objective": "binary:logistic", "grow_policy": "lossguide", "max_leaves": 12, "max_depth": 0,
              "eta": 0.6, "max_bin": 64, "verbosity": 0, "eval_metric": "logloss"}
    expected: dict = {}
    reference = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y), 20,
                          evals=[(xgb.DMatrix(Xv, label=yv), "valid")], early_stopping_rounds=3,
                          evals_result=expected, verbose_eval=False)
    got: dict = {}
    common = {"num_boost_round": 20, "early_stopping_rounds": 3, "evals_result": got, "verbose_eval": False}
    if mode == "horizontal":
        secure = train_horizontal(params, split_rows(X, y, [450, 450]),
                                  evals=[(split_rows(Xv, yv, [150, 150]), "valid")], **common)
    else:
        secure = train_vertical(params, column_blocks(X, 2), y, evals=[(column_blocks(Xv, 2), yv, "valid")], **common)
    assert secure.best_iteration == reference.best_iteration
    np.testing.assert_allclose(got["valid"]["logloss"], expected["valid"]["logloss"], rtol=0, atol=1e-6)


def test_lossguide_column_sampling_is_deterministic_and_respected():
    """Under lossguide the column samples are still public draws from the seed: the same
    seed gives the same model, and every split of a tree uses a feature of that tree's
    colsample_bytree draw."""
    from ppxgb.training.grower import ColumnSampler
    from ppxgb.training.params import TrainParams
    X, y = data("reg:squarederror", seed=8)
    params = {"objective": "reg:squarederror", **BASE, "grow_policy": "lossguide", "max_leaves": 10,
              "colsample_bytree": 0.5, "colsample_bylevel": 0.8, "seed": 11}
    runs = [train_horizontal(params, split_rows(X, y, [450, 450]), num_boost_round=3, n_servers=2) for _ in range(2)]
    assert runs[0].save_raw("json") == runs[1].save_raw("json")
    p = TrainParams.from_dict(params)
    trees = json.loads(runs[0].save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    for i, tree in enumerate(trees):
        drawn = set(ColumnSampler(p, X.shape[1], i).tree_set.tolist())
        used = {f for f, l in zip(tree["split_indices"], tree["left_children"]) if l != -1}
        assert used and used <= drawn, (i, used, drawn)
