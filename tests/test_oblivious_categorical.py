"""Categorical features in oblivious training: XGBoost's one-hot splits on shares.

The oracle is xgboost.train(tree_method="hist", enable_categorical=True) with the same
max_cat_to_onehot, on the pooled rows (horizontally, with the category lists the parties
agreed on) or the joined columns (vertically); margins must agree within 1e-3 on 99% of
rows.  A feature with max_cat_to_onehot categories or more would need a partition split
(an oblivious sort): it is refused by name.  What the servers see of a categorical run
is checked in test_oblivious.py (test_views_are_uniform_and_independent_of_the_data).
"""

import numpy as np
import pytest

from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.training.oblivious import run_oblivious_federation

from test_categorical_training import TYPES, horizontal_parts, make_frame, margins, oracle, pooled_frame

ONEHOT = 8                  # k has 6 codes and c 3 categories: both one-hot
VERTICAL_TYPES = ["c", "float", "c"]      # columns c | x, k: the label party holds c


def params_for(objective):
    return {"objective": objective, "max_depth": 3, "max_bin": 32, "max_cat_to_onehot": ONEHOT}


def dataset(objective, missing, seed=0, n=1500, n_cats=3):
    df, y = make_frame(seed, n, n_cats, missing)
    if objective == "binary:logistic":
        y = (y > np.median(y)).astype(np.float64)
    return df, y


def run(objective, partition, df, y, rounds=3, transport=None, drop=("cat01", "cat02"), **params):
    """(model, oracle data): the oblivious model and the pooled frame, labels and types.
    Horizontally three parties, the second without the categories in `drop`."""
    p = {**params_for(objective), **params}
    if partition == "horizontal":
        parts = horizontal_parts(df, y, drop)
        model, _ = run_oblivious_federation(p, list(parts), rounds, feature_types=TYPES, transport=transport)
        X, yy = pooled_frame(parts)
        return model, (X, yy, TYPES)
    model, _ = run_oblivious_federation(p, [df[["c"]], df[["x", "k"]]], rounds, partition="vertical", label=y,
                                        feature_types=VERTICAL_TYPES, transport=transport)
    return model, (df[["c", "x", "k"]], y, VERTICAL_TYPES)


@pytest.mark.parametrize("objective, partition, missing", [
    ("reg:squarederror", "horizontal", 0.1),
    pytest.param("binary:logistic", "horizontal", 0.0, marks=pytest.mark.slow),
    ("binary:logistic", "vertical", 0.1),
    pytest.param("reg:squarederror", "vertical", 0.0, marks=pytest.mark.slow),
])
def test_one_hot_splits_equal_xgboost(objective, partition, missing):
    df, y = dataset(objective, missing)
    model, (X, yy, types) = run(objective, partition, df, y)
    reference = oracle(params_for(objective), X, yy, 3, types)
    diff = np.abs(margins(model.to_booster(), X, types) - margins(reference, X, types))
    assert np.mean(diff <= 1e-3) >= 0.99, f"max difference {diff.max()}"
    # the comparison covers categorical splits: one category right, the rest left
    cat_nodes = [(t, i) for t in model.trees for i in np.flatnonzero(t.is_categorical)]
    assert cat_nodes and all(len(t.categories[i]) == 1 for t, i in cat_nodes)
    if missing:     # XGBoost sends missing values with the category (right) for some splits, left for others
        assert {bool(t.default_left[i]) for t, i in cat_nodes} == {True, False}
    assert len({round(float(v), 4) for v in margins(model.to_booster(), X, types)}) > 8


@pytest.mark.parametrize("partition, where", [("horizontal", "feature 2"),
                                              ("vertical", r"feature 2 \(party-1's column 1\)")])
def test_features_needing_partition_splits_are_refused(partition, where):
    df, y = dataset("reg:squarederror", 0.1)
    with pytest.raises(UnsupportedParameter, match=rf"categorical {where} has 6 categories.*"
                                                   r"max_cat_to_onehot=4.*raise max_cat_to_onehot above 6"):
        run("reg:squarederror", partition, df, y, rounds=1, max_cat_to_onehot=4)
    # at 7 the 6 codes get one-hot splits; c's 3 categories need 4 or more
    run("reg:squarederror", partition, df, y, rounds=1, max_cat_to_onehot=7)
    with pytest.raises(UnsupportedParameter, match="feature 1.* 3 categories"):
        run("reg:squarederror", "horizontal", df, y, rounds=1, max_cat_to_onehot=3)


def test_categories_beyond_max_bin_are_refused():
    df, y = dataset("reg:squarederror", 0.0)
    with pytest.raises(ParameterError, match="max_bin: expected at least the 6 categories of categorical feature 2"):
        run("reg:squarederror", "horizontal", df, y, rounds=1, max_bin=4)


def test_category_codes_are_checked_before_any_role_starts():
    df, y = dataset("reg:squarederror", 0.0)
    df["k"] = df["k"] - 0.5            # not integer codes
    with pytest.raises(ParameterError, match="column 2"):
        run("reg:squarederror", "horizontal", df, y, rounds=1)
