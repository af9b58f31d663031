"""Categorical features: XGBoost's coding, the category agreement, and split finding.

**Coding.**  XGBoost sends a row through a categorical split by its category *code*:
for a pandas `category` column the code is the index of the value in the column's list
of categories (`.cat.codes`); for a numeric column declared categorical
(`feature_types=[..., "c", ...]`) the code is the value itself, a non-negative integer.
A categorical feature has one bin per code, 0 to the largest code seen (so its "cuts"
are 1, 2, ..., n: code c falls in bin c), and missing values apart, as for any feature.

**Agreement (horizontal).**  Parties with `category` columns must code them with one
list.  The agreed list is the sorted union of the values present in any party's rows;
every party then codes with it, so a pooled DataFrame whose column has this list is
coded as XGBoost codes it.  The union is found without naming any party's values:
each party adds, for each value v it holds n_v rows of, n_v * (1, enc(v), check(v))
into 3 hashed tables of B buckets (enc(v) the value's bytes in 16-bit limbs, check a
32-bit keyed hash), and secret-shares the tables as it shares bin counts.  The
coordinator opens the sums over parties and peels them (a bucket holding one value has
every field a multiple of its count).  **What is opened:** for every categorical
feature, the sums over all parties of those tables, which decode to exactly the union
of values and each value's pooled row count, nothing per party.  When a table does not
peel (too many values for B) it is asked again with 4B buckets and a fresh salt; the
failed table holds only pooled sums of the same values and counts.  For columns of
integer codes the same exchange gives the union of codes, and the feature's bins run to
the largest.

**Split finding** (training/split.py, categorical_splits) follows XGBoost's hist evaluator (src/tree/hist/evaluate_splits.h):
with fewer than `max_cat_to_onehot` bins a one-hot scan (each category alone to the
right, missing values left then right), else a partition scan: categories sorted by
their float32 weight -G/(H + lambda) (stable), then prefixes of at most
`max_cat_threshold - 1` sorted categories scanned forward (prefix right, missing left)
and backward (suffix left, missing right).  The chosen set goes right, as XGBoost's
`Decision` sends a code in the node's set right.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError, ProtocolError

#: kinds of a feature: numeric, a pandas category column, a numeric column of codes
NUMERIC, VALUES, CODES = "q", "cat", "c"
MAX_CODE = (1 << 16) - 1       # codes below it: a bin index and the missing code above it fit uint16
_BYTES = 64                      # an encoded value: length byte, type tag, up to 62 bytes
_LIMBS = _BYTES // 2
_FIELDS = 1 + _LIMBS + 2         # count, count * value limbs, count * check limbs
_TABLES = 3
_FIRST_BUCKETS = 64
_ATTEMPTS = 6


# ------------------------------------------------------------------ input columns
def split_columns(X, feature_types: Sequence[str] | None, name: str = "X"):
    """(numeric part, kinds, raw values) of one party's feature matrix.

    The numeric part is X as float32 in Fortran order with NaN in every categorical
    column (filled with codes once the categories are agreed); kinds holds one of
    NUMERIC, VALUES, CODES per column; raw[f] the column's values (None for missing)
    for a categorical column.  A pandas `category` column is VALUES, a column typed
    "c" in feature_types CODES (integers >= 0), anything else must be numeric.
    """
    from ppxgb.model import as_float32_matrix

    n_cols = int(np.shape(X)[1]) if np.ndim(X) == 2 else None
    if feature_types is not None:
        feature_types = list(feature_types)
        if n_cols is not None and len(feature_types) != n_cols:
            raise ParameterError.bad("feature_types", f"{n_cols} entries (one per feature column)",
                                     len(feature_types))
        bad = [t for t in feature_types if t not in ("q", "float", "int", "i", "c")]
        if bad:
            raise ParameterError.bad("feature_types", "entries among 'q', 'float', 'int', 'i', 'c'", bad[0])
    kinds: list[str] = []
    raw: dict[int, np.ndarray] = {}
    if hasattr(X, "columns"):
        import pandas as pd

        cols = {}
        for j, col in enumerate(X.columns):
            s = X[col]
            declared = feature_types is not None and feature_types[j] == "c"
            if isinstance(s.dtype, pd.CategoricalDtype):
                if s.cat.categories.dtype.kind == "f":      # xgboost refuses these too
                    raise ParameterError.bad(f"{name} column {col!r}", "a category column of strings or "
                                             "integers (xgboost does not take floating-point categories)",
                                             f"categories of dtype {s.cat.categories.dtype}")
                kinds.append(VALUES)
                raw[j] = np.array([None if pd.isna(v) else _plain(v) for v in s.astype(object)], dtype=object)
                cols[col] = np.full(len(s), np.nan)
            elif declared:
                kinds.append(CODES)
                cols[col] = s
            else:
                kinds.append(NUMERIC)
                cols[col] = s
        X = pd.DataFrame(cols, index=X.index)
    else:
        kinds = [CODES if feature_types is not None and t == "c" else NUMERIC
                 for t in (feature_types or ["q"] * (n_cols or 0))]
    out = as_float32_matrix(X, name=name, order="F")
    for j, kind in enumerate(kinds):
        if kind == CODES:
            col = out[:, j]
            present = ~np.isnan(col)
            codes = col[present]
            if np.any((codes < 0) | (codes >= MAX_CODE) | (codes != np.trunc(codes))):
                bad = codes[(codes < 0) | (codes >= MAX_CODE) | (codes != np.trunc(codes))][0]
                raise ParameterError.bad(f"{name} column {j}", f"integer category codes in [0, {MAX_CODE})",
                                         float(bad))
            raw[j] = np.array([int(v) if p else None for v, p in zip(col, present)], dtype=object)
    return out, kinds, raw


def _plain(v):
    """A category value as a plain Python str, int or float."""
    if isinstance(v, (np.integer, bool, np.bool_)):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def code_column(values: np.ndarray, kind: str, agreed: Sequence) -> np.ndarray:
    """float32 codes of one column (NaN for missing) under the agreed list (VALUES) or
    as the integers themselves (CODES)."""
    present = np.array([v is not None for v in values], dtype=bool)
    out = np.full(len(values), np.nan, dtype=np.float32)
    if kind == CODES:
        out[present] = [float(v) for v in values[present]]
        return out
    index = {encode_value(v): i for i, v in enumerate(agreed)}
    try:
        out[present] = [index[encode_value(v)] for v in values[present]]
    except KeyError as exc:
        raise ProtocolError(f"categories: a value of this party is missing from the agreed list ({exc})") from None
    return out


def category_cuts(n_codes: int) -> np.ndarray:
    """The cuts of a categorical feature with codes 0..n_codes-1: code c in bin c."""
    return np.arange(1, max(n_codes, 1) + 1, dtype=np.float32)


def local_categories(values: np.ndarray, kind: str, declared: Sequence | None = None) -> tuple[list | None, int]:
    """A column held in full by one party: (its list of categories, or None for codes;
    the number of bins = largest code seen + 1).  declared: the pandas list, kept as is
    (its codes are XGBoost's)."""
    present = [v for v in values if v is not None]
    if kind == CODES:
        return None, (max(present) + 1 if present else 1)
    cats = list(declared) if declared is not None else sorted(set(present), key=_sort_key)
    index = {encode_value(v): i for i, v in enumerate(cats)}
    return cats, (max(index[encode_value(v)] for v in present) + 1 if present else 1)


# ------------------------------------------------------------------ agreement
def encode_value(v) -> bytes:
    """A category value as _BYTES bytes: length, type tag ('s', 'i', 'f'), the text."""
    if isinstance(v, str):
        body = b"s" + v.encode("utf-8")
    elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        body = b"i" + str(int(v)).encode()
    elif isinstance(v, (float, np.floating)):
        body = b"f" + repr(float(v)).encode()
    else:
        raise ParameterError.bad("category value", "a str, int or float", type(v).__name__)
    if len(body) > _BYTES - 1:
        raise ParameterError.bad("category value", f"at most {_BYTES - 2} bytes of UTF-8", v)
    return (bytes([len(body)]) + body).ljust(_BYTES, b"\0")


def decode_value(raw: bytes):
    n = raw[0]
    if not 2 <= n <= _BYTES - 1 or any(raw[1 + n:]):
        raise ValueError("not an encoded value")
    tag, text = raw[1:2], raw[2:1 + n].decode("utf-8")
    if tag == b"s":
        return text
    if tag == b"i":
        return int(text)
    if tag == b"f":
        return float(text)
    raise ValueError("unknown tag")


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, v)


def _hashes(enc: bytes, salt: int, buckets: int) -> tuple[list[int], int]:
    """The bucket of a value in each table and its 32-bit check word (public hashes)."""
    d = hashlib.blake2b(enc, digest_size=16, person=b"ppxgb-cats-v1", salt=salt.to_bytes(8, "little")).digest()
    where = [int.from_bytes(d[4 * t:4 * t + 4], "little") % buckets for t in range(_TABLES)]
    return where, int.from_bytes(d[12:16], "little")


def _fields(enc: bytes, check: int) -> np.ndarray:
    limbs = np.frombuffer(enc, dtype="<u2").astype(np.int64)
    return np.concatenate([[1], limbs, [check & 0xFFFF, check >> 16]])


def sketch_size(buckets: int) -> int:
    """Length of one column's answer to a sketch request of `buckets` buckets."""
    return _TABLES * buckets * _FIELDS


def party_sketch(columns: Sequence[np.ndarray], salt: int, buckets: int) -> np.ndarray:
    """A party's answer: per categorical column, the 3 x B x _FIELDS table of its values
    (each added n_v times, see the module docstring), concatenated."""
    out = []
    for values in columns:
        table = np.zeros((_TABLES, buckets, _FIELDS))
        encs, counts = np.unique(np.array([encode_value(v) for v in values if v is not None] or [b""],
                                          dtype=object), return_counts=True)
        for enc, n in zip(encs, counts):
            if not enc:
                continue
            where, check = _hashes(enc, salt, buckets)
            for t, b in enumerate(where):
                table[t, b] += n * _fields(enc, check)
        out.append(table.ravel())
    return np.concatenate(out) if out else np.zeros(0)


def peel(sums: np.ndarray, salt: int, buckets: int) -> dict[bytes, int] | None:
    """{encoded value: pooled count} from one opened table, or None if it does not peel."""
    s = np.rint(sums).astype(np.int64).reshape(_TABLES, buckets, _FIELDS)
    found: dict[bytes, int] = {}
    while s[..., 0].any():
        progress = False
        for t, b in zip(*np.nonzero(s[..., 0] > 0)):
            n = s[t, b, 0]
            if n <= 0 or np.any(s[t, b] % n):
                continue
            q = s[t, b] // n
            if np.any((q[1:] < 0) | (q[1:] > 0xFFFF)):
                continue
            enc = q[1:1 + _LIMBS].astype("<u2").tobytes()
            try:
                decode_value(enc)
            except (ValueError, UnicodeDecodeError):
                continue
            where, check = _hashes(enc, salt, buckets)
            if where[t] != b or check != int(q[-2] | q[-1] << 16) or enc in found:
                continue
            for tt, bb in enumerate(where):
                s[tt, bb] -= n * _fields(enc, check)
            found[enc] = int(n)
            progress = True
        if not progress:
            return None
    return found if not s.any() else None


def agree_categories(n_columns: int, count) -> list[list]:
    """The coordinator's side: the sorted union of values of each categorical column.

    count(salt, buckets, columns) returns the opened sum over parties of party_sketch
    for the listed column positions."""
    agreed: list[list | None] = [None] * n_columns
    buckets, todo = _FIRST_BUCKETS, list(range(n_columns))
    for attempt in range(_ATTEMPTS):
        if not todo:
            break
        opened = np.asarray(count(attempt, buckets, todo), dtype=np.float64)
        size = _TABLES * buckets * _FIELDS
        if opened.shape != (size * len(todo),):
            raise ProtocolError(f"categories: {opened.shape} sums opened, expected {size * len(todo)}")
        left = []
        for k, c in enumerate(todo):
            found = peel(opened[k * size:(k + 1) * size], attempt, buckets)
            if found is None:
                left.append(c)
            else:
                agreed[c] = sorted((decode_value(e) for e in found), key=_sort_key)
        todo, buckets = left, buckets * 4
    if todo:
        raise ProtocolError(f"categories: column {todo[0]} did not decode in {_ATTEMPTS} attempts")
    return agreed


def check_kinds(kinds: Sequence[Sequence[str]]) -> list[str]:
    """Every party must type every column alike."""
    first = list(kinds[0])
    for i, k in enumerate(kinds[1:], 1):
        if list(k) != first:
            j = next(j for j, (a, b) in enumerate(zip(first, k)) if a != b) if len(k) == len(first) else 0
            raise ParameterError(f"parties: column {j} is {_KIND_NAMES.get(first[j], first[j])} at one party "
                                 f"and {_KIND_NAMES.get(k[j], k[j])} at party {i}; type it alike everywhere")
    return first


_KIND_NAMES = {NUMERIC: "numeric", VALUES: "a category column", CODES: "integer codes typed 'c'"}


# ------------------------------------------------------------------ routing
def split_payload_categories(splits: Any) -> list[list[int]]:
    """The right-going codes per split of a splits payload ([] for numeric splits)."""
    cats = splits.get("categories")
    n = len(splits.get("node", []))
    if cats is None:
        return [[] for _ in range(n)]
    if not isinstance(cats, list) or len(cats) != n or not all(isinstance(c, list) for c in cats):
        raise ProtocolError(f"splits: 'categories' should be {n} lists of codes")
    return cats


# ------------------------------------------------------------------ horizontal driver
def agree_columns(kinds: Sequence[str], open_sketch, tell) -> tuple[dict[int, np.ndarray], list]:
    """The coordinator's category agreement for the features of `kinds`.

    open_sketch(salt, buckets, columns) opens the sum over parties of their sketches;
    tell(payload) broadcasts the outcome {"columns", "lists"} (the agreed list of each
    category column; for integer codes the list of codes seen).  Returns the cuts of
    every categorical feature and, per feature, the list of categories a model keeps
    (None for numeric features and integer codes)."""
    cat = [f for f, k in enumerate(kinds) if k != NUMERIC]
    lists: list = [None] * len(kinds)
    if not cat:
        return {}, lists
    agreed = agree_categories(len(cat), lambda salt, buckets, todo: open_sketch(salt, buckets, [cat[i] for i in todo]))
    cuts = {}
    for f, values in zip(cat, agreed):
        if kinds[f] == VALUES:
            lists[f] = tuple(values)
            cuts[f] = category_cuts(len(values))
        else:
            cuts[f] = category_cuts(int(max(values)) + 1 if values else 1)
    tell({"columns": cat, "lists": [list(v) for v in agreed]})
    return cuts, lists


def numeric_count(kinds: Sequence[str], count):
    """A bin-agreement count over the numeric features only, asked through `count`
    over all features (no request, hence no answer, for categorical ones)."""
    numeric = [f for f, k in enumerate(kinds) if k == NUMERIC]

    def counted(level: int, requests: list[np.ndarray]) -> np.ndarray:
        full = [np.zeros(0, np.uint32) for _ in kinds]
        for f, r in zip(numeric, requests):
            full[f] = r
        return count(level, full)

    return numeric, counted


def merge_cuts(kinds: Sequence[str], numeric: list[int], num_cuts, num_mins, cat_cuts: dict):
    """Cuts and min values of every feature from the numeric and categorical parts."""
    cuts: list = [None] * len(kinds)
    mins = np.zeros(len(kinds), np.float32)
    for f, c, m in zip(numeric, num_cuts, num_mins):
        cuts[f], mins[f] = c, m
    for f, c in cat_cuts.items():
        cuts[f], mins[f] = c, np.float32(-1.0)
    return cuts, mins


# ------------------------------------------------------------------ vertical (whole columns)
def code_own_columns(X, kinds: Sequence[str], raw: dict, frame=None) -> tuple[dict[int, np.ndarray], list]:
    """A party holding whole columns codes its categorical ones in place, as XGBoost
    codes that DataFrame: a `category` column by its own list (`.cat.codes`), integer
    codes as they are.  Returns the cuts of each categorical feature and, per feature,
    its list of categories (None for numeric columns and integer codes)."""
    cuts, lists = {}, [None] * len(kinds)
    for f, kind in enumerate(kinds):
        if kind == NUMERIC:
            continue
        declared = list(frame[frame.columns[f]].cat.categories) if kind == VALUES and frame is not None else None
        cats, n = local_categories(raw[f], kind, [_plain(v) for v in declared] if declared is not None else None)
        X[:, f] = code_column(raw[f], kind, cats)
        cuts[f], lists[f] = category_cuts(n), (tuple(cats) if cats is not None else None)
    return cuts, lists
