"""Categorical features as XGBoost codes them, shared by the model, the proxy and the client.

XGBoost sends a row through a categorical split by its category *code* (an integer
0, 1, 2, ... into the feature's list of categories): a code in the node's set goes
right, any other code left, a missing value the default direction.  A negative code,
or one at or beyond 2**24 (the largest integer float32 holds exactly), is invalid and
goes left; a fractional code is truncated to its integer part.

Models trained from a pandas DataFrame with `category` columns carry each feature's
list of categories (xgboost >= 3.1 stores it under `cats` in the model JSON), and
prediction re-codes a DataFrame's own categories into that list; a value the list does
not hold is an error, as in xgboost.  Without the list, a DataFrame's own codes
(`.cat.codes`) are used, as older xgboost versions did.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FormatError, ParameterError

#: Codes at or beyond this (and negative codes) are invalid in XGBoost and go left.
MAX_CATEGORY = 1 << 24

Categories = tuple  # per feature: a tuple of category values (str, int or float), or None


def decode_cats(doc: dict[str, Any] | None, num_feature: int) -> tuple | None:
    """Each feature's list of categories from the model JSON's `cats` entry (None for
    a numeric feature), or None when the model holds no lists."""
    if not doc or not doc.get("enc"):
        return None
    enc = doc["enc"]
    if not isinstance(enc, list) or len(enc) != num_feature:
        got = f"{len(enc)}" if isinstance(enc, list) else f"a {type(enc).__name__}"
        raise FormatError(f"cats: expected a list of {num_feature} feature encodings, got {got}")
    out = []
    for entry in enc:
        if not isinstance(entry, dict):
            raise FormatError(f"cats: each feature encoding must be an object, got a {type(entry).__name__}")
        values = entry.get("values", [])
        if not values:
            out.append(None)
        elif "offsets" in entry:                          # strings: UTF-8 bytes and offsets
            raw, off = bytes(int(v) & 0xFF for v in values), entry["offsets"]
            out.append(tuple(raw[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])))
        else:                                             # numbers
            out.append(tuple(v for v in values))
    return tuple(out) if any(c is not None for c in out) else None


def encode_cats(categories: tuple) -> dict[str, Any]:
    """The `cats` entry of the model JSON for the given lists (inverse of decode_cats)."""
    enc, segments, sorted_idx = [], [0], []
    for cats in categories:
        if not cats:
            enc.append({"offsets": [], "values": []})
            segments.append(segments[-1])
            continue
        if all(isinstance(c, str) for c in cats):
            raw = [c.encode("utf-8") for c in cats]
            offsets = np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype(int).tolist()
            enc.append({"offsets": offsets, "values": [b for r in raw for b in r]})
            order = sorted(range(len(cats)), key=lambda i: raw[i])
        else:
            enc.append({"type": 15 if all(isinstance(c, int) for c in cats) else 10,
                        "values": list(cats)})
            order = sorted(range(len(cats)), key=lambda i: cats[i])
        segments.append(segments[-1] + len(cats))
        sorted_idx.extend(order)
    return {"enc": enc, "feature_segments": segments, "sorted_idx": sorted_idx}


def codes_matrix(X, feature_types: tuple | None, categories: tuple | None, name: str = "X"):
    """A DataFrame's `category` columns as XGBoost codes (NaN for missing); other input
    is returned unchanged.  With the model's category lists, values are re-coded into
    them and a value outside a list raises ParameterError naming the column."""
    if not hasattr(X, "dtypes") or not hasattr(X, "columns"):
        return X
    import pandas as pd

    out = {}
    for j, col in enumerate(X.columns):
        s = X[col]
        typed_c = feature_types is not None and j < len(feature_types) and feature_types[j] == "c"
        if typed_c and (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            s = s.astype("category")                    # category values as text (e.g. from a CSV)
            if categories is None or j >= len(categories) or categories[j] is None:
                raise ParameterError.bad(name, f"integer category codes in column {col!r} (the model holds "
                                         "no category list to look text up in)", f"{s.dropna().iloc[0]!r}")
        if not isinstance(s.dtype, pd.CategoricalDtype):
            out[col] = s
            continue
        if feature_types is not None and j < len(feature_types) and feature_types[j] != "c":
            raise ParameterError.bad(name, f"column {col!r} numeric, as the model was trained",
                                     "a category column")
        known = categories[j] if categories is not None and j < len(categories) else None
        if known is None:
            codes = s.cat.codes.to_numpy()
        else:
            codes = pd.Index(list(known), dtype=object).get_indexer(s.astype(object))
            unknown = s.notna().to_numpy() & (codes < 0)
            if unknown.any():
                raise ParameterError.bad(name, f"column {col!r} categories among the model's {len(known)}",
                                         f"unknown category {s[unknown].iloc[0]!r}")
        out[col] = np.where(codes < 0, np.nan, codes.astype(np.float64))
    return pd.DataFrame(out, index=X.index)
