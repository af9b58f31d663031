"""Categorical models end to end in inference: the plaintext model against xgboost,
encrypted scoring against `predict` (OPE and ORE), and the curious server's view of
category tokens on recorded traffic.

Models are trained by xgboost with enable_categorical=True on pandas `category`
columns: one-hot splits (max_cat_to_onehot above the number of categories) and
partition splits (max_cat_to_onehot=1), with missing categories.
"""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.errors import FormatError
from ppxgb.model import Ensemble

WARDS = [f"ward{i}" for i in range(11)]
SPLITS = {"onehot": 64, "partition": 1}


def make_frame(n=600, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(60, 10, n).round(),
        "ward": pd.Categorical(rng.choice(WARDS, n), categories=WARDS),
        "bp": rng.normal(130, 15, n),
        "sex": pd.Categorical(rng.choice(["f", "m"], n), categories=["f", "m"]),
    })
    if missing:
        df.loc[rng.random(n) < 0.1, "ward"] = np.nan
        df.loc[rng.random(n) < 0.1, "sex"] = np.nan
        df.loc[rng.random(n) < 0.05, "bp"] = np.nan
    effect = df["ward"].isin(["ward1", "ward4", "ward5", "ward9"]).to_numpy(float)
    score = effect + 0.5 * (df["sex"] == "m").to_numpy(float) + (df["age"].to_numpy() - 60) / 20
    return df, score


def train_categorical(split="partition", objective="binary:logistic", rounds=8, seed=0, num_class=0):
    df, score = make_frame(seed=seed)
    if num_class:
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    elif objective.startswith("binary"):
        y = (score > np.median(score)).astype(int)
    else:
        y = 10 * score + 3
    params = {"objective": objective, "max_depth": 4, "eta": 0.3, "seed": seed,
              "max_cat_to_onehot": SPLITS[split], **({"num_class": num_class} if num_class else {})}
    dtrain = xgb.DMatrix(df, label=y, enable_categorical=True)
    return xgb.train(params, dtrain, rounds), df


def codes_of(df):
    """The frame as a float matrix of XGBoost category codes (NaN for missing)."""
    cols = [df[c].cat.codes.replace(-1, np.nan).to_numpy(float) if isinstance(df[c].dtype, pd.CategoricalDtype)
            else df[c].to_numpy(float) for c in df.columns]
    return np.column_stack(cols)


def xgb_predict_codes(booster, X, output_margin=False):
    dm = xgb.DMatrix(X, feature_types=["q", "c", "q", "c"], feature_names=list(make_frame(5)[0].columns))
    return booster.predict(dm, output_margin=output_margin)


# ------------------------------------------------------------------ plaintext model
@pytest.mark.parametrize("split", list(SPLITS))
def test_model_parses_categorical_splits_and_predicts_as_xgboost(split):
    booster, df = train_categorical(split)
    ens = Ensemble.load(booster)
    kinds = {int(t.split_type[i]) for t in ens.trees if t.split_type is not None for i in np.flatnonzero(t.is_categorical)}
    assert kinds == {1}
    sizes = [t.categories[i].size for t in ens.trees for i in np.flatnonzero(t.is_categorical)]
    assert (max(sizes) > 1) == (split == "partition")      # one-hot splits hold one category
    assert ens.categorical_features == (1, 3)
    assert ens.categories[1] == tuple(WARDS) and ens.categories[3] == ("f", "m")
    ref = booster.predict(xgb.DMatrix(df, enable_categorical=True), output_margin=True)
    np.testing.assert_array_equal(ens.predict(df, output_margin=True), ref)
    np.testing.assert_array_equal(ens.predict(codes_of(df), output_margin=True), ref)
    # the JSON round trip is a booster that predicts the same
    again = ens.to_booster().predict(xgb.DMatrix(df, enable_categorical=True), output_margin=True)
    np.testing.assert_array_equal(again, ref)


def test_model_invalid_and_unseen_codes_go_left_as_in_xgboost():
    booster, df = train_categorical("partition")
    ens = Ensemble.load(booster)
    X = np.repeat(codes_of(df.head(1)), 7, axis=0)
    X[:, 1] = [-1, 11, 100, 2**24, 1e9, 4.5, 4]            # negative, unseen, huge, fractional
    np.testing.assert_array_equal(ens.predict(X, output_margin=True),
                                  xgb_predict_codes(booster, X, output_margin=True))


def test_model_refuses_an_unknown_category_like_xgboost():
    booster, df = train_categorical("onehot")
    bad = df.head(3).copy()
    bad["ward"] = pd.Categorical(["ward1", "ward99", "ward2"])
    with pytest.raises(Exception):
        booster.predict(xgb.DMatrix(bad, enable_categorical=True))
    with pytest.raises(Exception, match="ward99"):
        Ensemble.load(booster).predict(bad)


def test_model_reorders_dataframe_categories_into_the_model_list():
    booster, df = train_categorical("partition")
    shuffled = df.copy()
    shuffled["ward"] = shuffled["ward"].cat.reorder_categories(WARDS[::-1])
    ref = booster.predict(xgb.DMatrix(df, enable_categorical=True))
    np.testing.assert_array_equal(Ensemble.load(booster).predict(shuffled), ref)


def test_model_refuses_a_malformed_categorical_node():
    booster, _ = train_categorical("partition")
    import json

    doc = json.loads(booster.save_raw("json"))
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["categories_sizes"][0] = 0                        # a categorical split with no set
    with pytest.raises(FormatError, match="categorical node"):
        Ensemble.from_xgboost_json(doc)
    doc = json.loads(booster.save_raw("json"))
    doc["learner"]["feature_types"] = ["q"] * 4            # a category split on a numeric feature
    with pytest.raises(FormatError, match="feature_types"):
        Ensemble.from_xgboost_json(doc)
