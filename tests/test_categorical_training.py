"""Categorical features in secure training, against xgboost.train(enable_categorical=True).

The oracle is xgboost on the pooled rows (horizontal) or the joined columns (vertical),
with the pooled `category` columns listing the categories the parties agreed on (the
sorted union of the values present, horizontally; each holder's own list, vertically).
"""

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import ppxgb.training.categorical as categorical
from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.errors import ParameterError
from ppxgb.training.horizontal import run_federation
from ppxgb.training.horizontal.stages import STATS_BITS
from ppxgb.training.vertical import run_vertical_federation, train_vertical

from helpers import recorded_federation

PARAMS = {"max_depth": 4, "eta": 0.3, "verbosity": 0}
ROUNDS = 4
TYPES = ["float", "c", "c"]          # x numeric, c a category column, k integer codes


def make_frame(seed: int, n: int, n_cats: int, missing: float = 0.1):
    """x with 24 values (so the numeric cuts are xgboost's exactly), c with n_cats string
    categories, k integer codes 0..5; both categorical columns with missing values."""
    rng = np.random.default_rng(seed)
    values = [f"cat{i:02d}" for i in range(n_cats)]
    c = rng.choice(values, n).astype(object)
    c[rng.random(n) < missing] = None
    k = rng.integers(0, 6, n).astype(float)
    k[rng.random(n) < missing] = np.nan
    x = rng.integers(0, 24, n) * 0.25 - 3.0
    effect = dict(zip(values, rng.normal(size=n_cats)))
    y = np.array([effect.get(v, 0.5) for v in c]) + 0.6 * (np.nan_to_num(k, nan=-1) % 3 == 1) + 0.4 * x \
        + 0.1 * rng.normal(size=n)
    return pd.DataFrame({"x": x, "c": pd.Categorical(c), "k": k}), y


def horizontal_parts(df: pd.DataFrame, y: np.ndarray, drop=("cat01", "cat02")):
    """Three hospitals, each coding c with its own list of the values it holds (the
    third in reverse order); the second holds none of the categories in `drop`."""
    parts = []
    for i, (lo, hi) in enumerate([(0, 700), (700, 1400), (1400, len(y))]):
        part, yy = df.iloc[lo:hi].copy(), y[lo:hi]
        if i == 1:
            keep = ~part["c"].isin(drop).to_numpy()
            part, yy = part[keep], yy[keep]
        own = sorted(set(part["c"].dropna().astype(str)), reverse=i == 2)
        part["c"] = pd.Categorical(part["c"].astype(object), categories=own)
        parts.append((part, yy))
    return parts


def pooled_frame(parts):
    pooled = pd.concat([p[0] for p in parts])
    union = sorted(set(pooled["c"].dropna().astype(str)))
    pooled["c"] = pd.Categorical(pooled["c"].astype(object), categories=union)
    return pooled, np.concatenate([p[1] for p in parts])


def oracle(params, X: pd.DataFrame, y, rounds, types=TYPES):
    return xgb.train({**params, "tree_method": "hist"},
                     xgb.DMatrix(X, y, enable_categorical=True, feature_types=types), rounds)


def margins(booster, X, types=TYPES):
    return booster.predict(xgb.DMatrix(X, enable_categorical=True, feature_types=types), output_margin=True)


def assert_close(secure, reference, X, types=TYPES):
    diff = np.abs(margins(secure, X, types) - margins(reference, X, types))
    assert np.mean(diff <= 1e-5) >= 0.99, f"max difference {diff.max()}"


def category_sets(booster, feature: int) -> list[int]:
    """Sizes of the category sets of every split on `feature`."""
    sizes = []
    for t in json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        for node, size in zip(t["categories_nodes"], t["categories_sizes"]):
            if t["split_indices"][node] == feature:
                sizes.append(size)
    return sizes


@pytest.mark.parametrize("n_cats, params", [
    pytest.param(3, {}, id="one-hot"),
    pytest.param(12, {}, id="partition"),
    pytest.param(12, {"max_cat_to_onehot": 16}, id="one-hot-by-param"),
    pytest.param(12, {"max_cat_threshold": 3, "lambda": 0.5}, id="partition-threshold"),
])
def test_horizontal_matches_xgboost(n_cats, params):
    df, y = make_frame(0, 2100, n_cats)
    parts = horizontal_parts(df, y)
    model, _ = run_federation({**PARAMS, **params}, parts, ROUNDS, 2, feature_types=["q", "c", "c"])
    pooled, yp = pooled_frame(parts)
    ref = oracle({**PARAMS, **params}, pooled, yp, ROUNDS)
    secure = model.to_booster()
    assert_close(secure, ref, pooled)
    sizes = category_sets(secure, 1)
    assert sizes, "the category column was never split on"
    onehot = n_cats < params.get("max_cat_to_onehot", 4)
    assert (max(sizes) == 1) if onehot else (max(sizes) > 1)
    if "max_cat_threshold" in params:   # the scans reach at most threshold - 1 categories from either end
        bound = params["max_cat_threshold"] - 1
        assert all(s <= bound or s >= n_cats - bound for s in sizes) and max(sizes) > bound
    # ppxgb's own predictor agrees too (DataFrame categories re-coded into the agreed list)
    np.testing.assert_allclose(model.predict_margin(pooled), margins(secure, pooled), atol=1e-6)


def test_model_json_has_xgboosts_categorical_fields():
    df, y = make_frame(1, 2100, 9)
    parts = horizontal_parts(df, y)
    model, _ = run_federation(PARAMS, parts, 2, 2, feature_types=["q", "c", "c"])
    pooled, yp = pooled_frame(parts)
    ours = json.loads(model.to_booster().save_raw("json"))["learner"]
    ref = json.loads(oracle(PARAMS, pooled, yp, 2).save_raw("json"))["learner"]
    assert ours["feature_types"] == ref["feature_types"] == TYPES
    fields = ("split_type", "categories", "categories_nodes", "categories_segments", "categories_sizes",
              "split_indices", "default_left")
    for a, b in zip(ours["gradient_booster"]["model"]["trees"], ref["gradient_booster"]["model"]["trees"]):
        assert any(a["split_type"]), "no categorical split in a tree"
        for name in fields:
            assert a[name] == b[name], name
    # the agreed list travels with the model, as xgboost stores a DataFrame's categories
    enc = ours["gradient_booster"]["model"]["cats"]["enc"][1]
    assert bytes(enc["values"]).decode() == "".join(sorted(set(pooled["c"].dropna().astype(str))))


@pytest.mark.parametrize("n_cats", [pytest.param(3, id="one-hot"), pytest.param(10, id="partition")])
def test_vertical_matches_xgboost(n_cats):
    """The label holder holds x and the integer codes k, a feature holder the category
    column c, coded by its own list (declared in reverse order, one never seen)."""
    df, y = make_frame(2, 2000, n_cats)
    values = sorted(set(df["c"].dropna().astype(str)))
    declared = ["never-seen"] + values[::-1]
    lh = df[["x", "k"]]
    fh = pd.DataFrame({"c": pd.Categorical(df["c"].astype(object), categories=declared)})
    model, _ = run_vertical_federation(PARAMS, [lh, fh], y, 0, ROUNDS, feature_types=["q", "c", "c"])
    joined = pd.concat([lh, fh], axis=1)
    types = ["float", "c", "c"]
    ref = oracle(PARAMS, joined, y, ROUNDS, types)
    assert_close(model.to_booster(), ref, joined, types)
    assert category_sets(model.to_booster(), 2) and category_sets(model.to_booster(), 1)
    assert model.categories[2] == tuple(declared)


def test_integer_codes_from_numpy():
    """Numeric arrays with columns typed 'c' (no pandas): codes are the values."""
    df, y = make_frame(3, 1800, 5)
    X = np.column_stack([df["x"], df["k"], df["k"].fillna(0) * 2 + 1]).astype(float)
    X[::17, 2] = np.nan
    parts = [(X[:900], y[:900]), (X[900:], y[900:])]
    model, _ = run_federation(PARAMS, parts, ROUNDS, 2, feature_types=["q", "c", "c"])
    ref = xgb.train({**PARAMS, "tree_method": "hist"},
                    xgb.DMatrix(X, y, enable_categorical=True, feature_types=["q", "c", "c"]), ROUNDS)
    dm = xgb.DMatrix(X, enable_categorical=True, feature_types=["q", "c", "c"])
    diff = np.abs(model.to_booster().predict(dm, output_margin=True) - ref.predict(dm, output_margin=True))
    assert np.mean(diff <= 1e-5) >= 0.99


# ---------------------------------------------------------------- the agreement
def opened_category_sums(log) -> list[np.ndarray]:
    """What the coordinator opens in the category agreement: per request, the sum of the
    servers' sums (recorded as the coordinator received them)."""
    steps = sorted({m.payload["step"] for m in log if m.stage == "cats" and m.dst == "party-0"})
    out = []
    for step in steps:
        total = sum(m.payload["data"].astype(np.uint64) for m in log
                    if m.dst == "coordinator" and m.stage == "sum" and m.payload["step"] == step)
        out.append(FixedPointEncoder(STATS_BITS).decode(total))
    return out


def agreement_views(parts):
    log, _ = recorded_federation(run_federation, PARAMS, parts, 1, 2, feature_types=["q", "c", "c"])
    lists = [m.payload["lists"] for m in log if m.stage == "categories"]
    return opened_category_sums(log), lists


def pooled_only(sizes_a, sizes_b, seed=4) -> bool:
    """Whether the coordinator opens the same thing for two ways of splitting the same
    rows among hospitals (so nothing it opens depends on who holds which row)."""
    df, y = make_frame(seed, 1200, 8)
    views = []
    for sizes in (sizes_a, sizes_b):
        ends = np.cumsum([0] + sizes)
        parts = [(df.iloc[a:b], y[a:b]) for a, b in zip(ends[:-1], ends[1:])]
        views.append(agreement_views(parts)[0])
    return len(views[0]) == len(views[1]) and all(np.array_equal(a, b) for a, b in zip(*views))


def test_agreement_opens_only_the_union_and_pooled_counts():
    df, y = make_frame(4, 1500, 8)
    parts = horizontal_parts(df, y)
    opened, lists = agreement_views(parts)
    pooled, _ = pooled_frame(parts)
    union = sorted(set(pooled["c"].dropna().astype(str)))
    # every party, including the one lacking cat01 and cat02, gets the same lists
    assert len(lists) == 3 and all(got == [union, list(range(6))] for got in lists)
    # the one opened table (it peeled at once) decodes to the pooled count of each value, per column
    assert len(opened) == 1
    buckets = 64
    size = 3 * buckets * (1 + 32 + 2)
    expected = [pooled["c"].astype(object).dropna().value_counts(),
                pooled["k"].dropna().astype(int).value_counts()]
    for column, counts in enumerate(expected):
        found = categorical.peel(opened[0][column * size:(column + 1) * size], 0, buckets)
        assert {categorical.decode_value(e): n for e, n in found.items()} == counts.to_dict()


def test_agreement_is_blind_to_who_holds_which_value(monkeypatch):
    """Same pooled rows, split two ways: the coordinator opens the very same sums.  A
    mutant sketch that adds each value once per holding party (so the opened count is
    the number of parties holding it) is caught."""
    assert pooled_only([400, 400, 400], [1190, 5, 5])

    def presence_sketch(columns, salt, buckets):
        held = [np.array(sorted({v for v in col if v is not None}, key=repr), dtype=object) for col in columns]
        return real(held, salt, buckets)

    real = categorical.party_sketch
    monkeypatch.setattr(categorical, "party_sketch", presence_sketch)
    assert not pooled_only([400, 400, 400], [1190, 5, 5])


def test_columns_typed_differently_by_two_parties_are_refused():
    df, y = make_frame(5, 600, 4)
    other = df.copy()
    other["c"] = other["c"].cat.codes.astype(float).replace(-1, np.nan)
    with pytest.raises(ParameterError, match="column 1"):
        run_federation(PARAMS, [(df, y), (other, y)], 1, 2, feature_types=["q", "c", "c"])


def test_bad_integer_codes_and_types_are_refused():
    X = np.array([[0.0, 1.5], [1.0, 2.0]])
    with pytest.raises(ParameterError, match="integer category codes"):
        categorical.split_columns(X, ["q", "c"])
    # a code whose bin would not fit the uint16 bin matrix (with the missing code above it)
    with pytest.raises(ParameterError, match=r"integer category codes in \[0, 65535\)"):
        categorical.split_columns(np.array([[0.0, 65535.0], [1.0, 2.0]]), ["q", "c"])
    categorical.split_columns(np.array([[0.0, 65534.0], [1.0, 2.0]]), ["q", "c"])
    with pytest.raises(ParameterError, match="feature_types"):
        categorical.split_columns(X, ["q"])
    with pytest.raises(ParameterError, match="feature_types"):
        categorical.split_columns(X, ["q", "categorical"])


@pytest.mark.slow
def test_cli_federation_trains_text_columns_as_categories(tmp_path):
    """ppxgb federation over two hospitals' CSVs: a column named in --categorical and a
    text column (inferred, with a message) give the model xgboost trains on the pooled rows."""
    import subprocess
    import sys

    df, y = make_frame(6, 1400, 7)
    df["k"] = df["k"].map(lambda v: None if np.isnan(v) else f"code-{int(v)}")      # text: inferred
    df["c"] = df["c"].astype(object)
    paths = []
    for i, (a, b) in enumerate([(0, 700), (700, 1400)]):
        paths.append(str(tmp_path / f"h{i}.csv"))
        df.iloc[a:b].assign(y=y[a:b]).to_csv(paths[-1], index=False)
    out = tmp_path / "model.json"
    proc = subprocess.run([sys.executable, "-m", "ppxgb.app.cli", "federation", "--data", *paths, "--label", "y",
                           "--categorical", "c", "--params", json.dumps(PARAMS), "--rounds", str(ROUNDS),
                           "--out", str(out), "--progress", "off"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "column 'k' is not numeric" in proc.stderr and "categorical" in proc.stderr
    pooled = pd.concat([pd.read_csv(p) for p in paths])
    yp = pooled.pop("y").to_numpy()
    for col in ("c", "k"):
        pooled[col] = pd.Categorical(pooled[col], categories=sorted(pooled[col].dropna().unique()))
    secure = xgb.Booster(model_file=str(out))
    assert_close(secure, oracle(PARAMS, pooled, yp, ROUNDS, ["float", "c", "c"]), pooled, ["float", "c", "c"])


def test_horizontal_dp_refuses_category_columns():
    """The category agreement is not noised, so differential privacy refuses it."""
    df, y = make_frame(8, 600, 4)
    with pytest.raises(ParameterError, match="dp_epsilon.*categorical"):
        run_federation({**PARAMS, "dp_epsilon": 1.0, "base_score": 0.0}, [(df, y)], 1, 2, feature_types=["q", "c", "c"])


def test_vertical_refuses_more_categories_than_max_bin_by_name():
    """The permutation protocol's correlations are sized by max_bin: a feature holder's
    column with more categories is refused naming max_bin (16 categories still train)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(600, 2)).astype(np.float32)
    for k, ok in ((16, True), (17, False)):
        B = rng.integers(0, k, size=(600, 1)).astype(np.float32)
        y = (A[:, 0] + (B[:, 0] % 3) > 1).astype(np.float32)
        params = {"objective": "binary:logistic", "max_bin": 16, "verbosity": 0}
        if ok:
            train_vertical(params, [A, B], y, num_boost_round=2, feature_types=["q", "q", "c"])
            continue
        with pytest.raises(ParameterError, match="max_bin.*17 categories"):
            train_vertical(params, [A, B], y, num_boost_round=2, feature_types=["q", "q", "c"])


def test_float_categories_are_refused_and_csv_codes_with_blanks_become_integers():
    """A pandas category column of floats gave a model xgboost cannot load (xgboost
    refuses such columns itself): refused by name.  The command line's reading of a
    --categorical CSV column of integer codes with empty cells (floats to pandas) gives
    int64 categories instead, and the model equals xgboost's on the same frame."""
    from ppxgb.app.deploy import categorize

    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"x": rng.integers(0, 10, 400).astype(float), "c": rng.choice([1.0, 2.0, 3.0, np.nan], 400)})
    y = ((frame.x > 4) | (frame.c == 2)).astype(float).to_numpy()
    floats = frame.assign(c=pd.Categorical(frame.c))
    with pytest.raises(ParameterError, match="column 'c': expected a category column of strings or integers"):
        run_federation(PARAMS, [(floats[:200], y[:200]), (floats[200:], y[200:])], 1, 2)
    coded = categorize(frame, "c", "h.csv")
    assert coded.c.cat.categories.dtype == np.int64 and coded.c.isna().sum() == frame.c.isna().sum()
    model, _ = run_federation(PARAMS, [(coded[:200], y[:200]), (coded[200:], y[200:])], 2, 2)
    ref = xgb.train({**PARAMS, "tree_method": "hist"}, xgb.DMatrix(coded, label=y, enable_categorical=True), 2)
    d = xgb.DMatrix(coded, enable_categorical=True)
    np.testing.assert_allclose(model.to_booster().predict(d), ref.predict(d), atol=1e-6)
