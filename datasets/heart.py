"""UCI Heart Disease: four real hospitals, a natural horizontal split.

The CSV in ``data/`` is the UCI donation (Janosi, Steinbrunn, Pfisterer, Detrano;
CC BY 4.0, see ``data/SOURCES.md``). Each hospital is one data party: its patients
differ in age, sex and disease prevalence (Cleveland 46% diseased, Switzerland 93%),
and whole columns are missing at some sites, which is the non-IID setting federated
training has to cope with.

Every feature comes out as float64 with NaN for a missing value, ready for xgboost.
Categorical text is mapped to the original UCI integer codes (``ENCODINGS``); with
``categorical=True`` the four many-valued ones (``CATEGORICAL``: chest pain type,
resting ECG, ST slope, thal) instead stay text, as pandas ``category`` columns listing
every value the UCI documentation defines (for xgboost's ``enable_categorical``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ppxgb.errors import ParameterError

DATA_FILE = Path(__file__).resolve().parent / "data" / "heart_disease_uci.csv"

#: Hospital names, in the order every loader returns them.
HOSPITALS: tuple[str, ...] = ("Cleveland", "Hungary", "Switzerland", "VA Long Beach")

#: Feature columns, in order. ``id``, ``dataset`` (the hospital) and ``num`` are not features.
FEATURES: tuple[str, ...] = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalch", "exang", "oldpeak", "slope", "ca", "thal",
)

#: Text value -> numeric code for each categorical column (original UCI codes where
#: the UCI documentation defines them). Anything missing stays NaN.
ENCODINGS: dict[str, dict[object, float]] = {
    "sex": {"Female": 0.0, "Male": 1.0},
    "cp": {"typical angina": 1.0, "atypical angina": 2.0, "non-anginal": 3.0, "asymptomatic": 4.0},
    "fbs": {False: 0.0, True: 1.0},
    "restecg": {"normal": 0.0, "st-t abnormality": 1.0, "lv hypertrophy": 2.0},
    "exang": {False: 0.0, True: 1.0},
    "slope": {"upsloping": 1.0, "flat": 2.0, "downsloping": 3.0},
    "thal": {"normal": 3.0, "fixed defect": 6.0, "reversable defect": 7.0},
}

#: Columns kept as pandas categories with ``categorical=True`` (the binary ones stay 0/1).
CATEGORICAL: tuple[str, ...] = ("cp", "restecg", "slope", "thal")

#: Columns where 0 means "not measured" in the source files (a cholesterol or resting
#: blood pressure of 0 is impossible), so 0 becomes NaN.
ZERO_MEANS_MISSING: tuple[str, ...] = ("chol", "trestbps")

_TARGETS = ("binary", "num")


def _read_raw(path: Path = DATA_FILE) -> pd.DataFrame:
    # Read booleans as text so that missing fbs/exang stay missing (not False).
    raw = pd.read_csv(path, dtype={"fbs": "string", "exang": "string"})
    for col in ("fbs", "exang"):
        raw[col] = raw[col].map({"TRUE": True, "FALSE": False, "True": True, "False": False})
    return raw


def _encode(raw: pd.DataFrame, categorical: bool = False) -> pd.DataFrame:
    out = pd.DataFrame(index=raw.index)
    for col in FEATURES:
        if col in ENCODINGS:
            mapping = ENCODINGS[col]
            values = raw[col]
            unknown = set(values.dropna().unique()) - set(mapping)
            if unknown:
                raise ParameterError.bad(f"{DATA_FILE.name}:{col}", f"one of {sorted(map(str, mapping))}", sorted(map(str, unknown)))
            if categorical and col in CATEGORICAL:
                out[col] = pd.Categorical(values, categories=list(mapping))
            else:
                out[col] = values.map(mapping).astype("float64")
        else:
            out[col] = pd.to_numeric(raw[col], errors="raise").astype("float64")
    for col in ZERO_MEANS_MISSING:
        out.loc[out[col] == 0.0, col] = np.nan
    return out


def load_heart_frame(categorical: bool = False) -> pd.DataFrame:
    """All 920 patients in one frame: ``id``, ``hospital``, the 13 encoded features,
    ``num`` (0..4) and ``disease`` (``num > 0`` as 0/1); ``CATEGORICAL`` columns as
    pandas categories when `categorical`.

    Rows are in file order (grouped by hospital in ``HOSPITALS`` order).
    """
    raw = _read_raw()
    hospitals = set(raw["dataset"].unique())
    if hospitals != set(HOSPITALS):
        raise ParameterError.bad(f"{DATA_FILE.name}:dataset", f"hospitals {list(HOSPITALS)}", sorted(hospitals))
    frame = _encode(raw, categorical)
    frame.insert(0, "hospital", raw["dataset"].astype(str))
    frame.insert(0, "id", raw["id"].astype("int64"))
    frame["num"] = raw["num"].astype("int64")
    frame["disease"] = (raw["num"] > 0).astype("int64")
    order = {h: i for i, h in enumerate(HOSPITALS)}
    frame = frame.sort_values("hospital", key=lambda s: s.map(order), kind="stable")
    return frame.reset_index(drop=True)


def load_heart_disease(target: str = "binary", categorical: bool = False) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """The four hospitals' ``(X, y)``, keyed by hospital name in ``HOSPITALS`` order.

    ``X`` has the 13 ``FEATURES`` as float64 columns with NaN for missing values and the
    hospital's own row index (0..n-1). ``y`` is an int64 array: with ``target="binary"``
    it is 1 when disease is present (``num > 0``); with ``target="num"`` it is the raw
    0..4 grade (for ``multi:softprob``).  With ``categorical=True`` the ``CATEGORICAL``
    columns are pandas ``category`` columns of their text values instead of codes.
    """
    if target not in _TARGETS:
        raise ParameterError.bad("target", f"one of {list(_TARGETS)}", target)
    frame = load_heart_frame(categorical)
    label = "disease" if target == "binary" else "num"
    parties: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
    for hospital in HOSPITALS:
        rows = frame[frame["hospital"] == hospital]
        X = rows[list(FEATURES)].reset_index(drop=True)
        y = rows[label].to_numpy(dtype=np.int64)
        parties[hospital] = (X, y)
    return parties
