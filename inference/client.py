"""The client: OPE-encrypts query rows under the user's keys and decrypts scores.

Missing values.  A split with default direction "left" reads the query's LOW column
for its feature, where a missing value is the plaintext 0 (below every float32); a
split defaulting right reads the HIGH column, where missing is 2**32 + 1 (above every
float32).  Present values encode identically in both columns (ordinal + 1) but under
independent OPE keys.  So the server routes a missing value correctly without being
told, and no flag is sent.  What it can still infer is documented in docs/inference.md.

The key file names the scheme: "ope" sends one OPE ciphertext per value, "ore" one
Lewi-Wu left ciphertext (ppxgb.crypto.ore) of the same plaintext.

Categorical features (typed "c" in the key file) are sent as category tokens
(ppxgb.cattokens), one per (feature, slot) column, whatever the scheme.  Values come
as a DataFrame `category` column (re-coded into the model's category list when the
key file has one, as xgboost does; a category outside it is refused), as text when the
key file has the list, or as integer codes (negative or out-of-range codes go left,
as in xgboost; a fractional code is refused).
"""

from __future__ import annotations

import numpy as np

from ppxgb import cattokens
from ppxgb.categories import codes_matrix
from ppxgb.errors import ParameterError
from ppxgb.formats import (SLOT_LOW, EncryptedQueries, EncryptedScores, UserKeys, ope_feature_key,
                           ore_feature_key)
from ppxgb.model import apply_transform, as_float32_matrix
from ppxgb.crypto import ore
from ppxgb.crypto.ope import MISSING_HIGH, MISSING_LOW, OPE, float32_plaintext

_FLOAT32_MAX = float(np.finfo(np.float32).max)
from ppxgb.crypto.paillier import SmallDecryptor, private_key_from_factors


class Client:
    """Encrypts queries and decrypts scores for one user and model.

    missing: the value that means "missing" besides NaN, as xgboost.DMatrix(missing=)
    (entries equal to it are missing; NaN always is).  Scipy sparse rows are accepted:
    an absent entry is missing, as in a DMatrix built from CSR/CSC.
    """

    def __init__(self, keys: UserKeys | bytes, missing: float = np.nan):
        if isinstance(keys, (bytes, bytearray, memoryview)):
            keys = UserKeys.from_bytes(keys)
        if not isinstance(keys, UserKeys):
            raise ParameterError.bad("keys", "UserKeys or its bytes", type(keys).__name__)
        try:
            self.missing = float(missing)
        except (TypeError, ValueError):
            raise ParameterError.bad("missing", "a float (NaN by default)", missing) from None
        self.keys = keys
        self._columns = keys.columns()
        self._cat_columns = keys.columns(categorical=True)
        self._token_keys = {(f, s): cattokens.category_key(keys.prf_key, f, s) for f, s, _ in self._cat_columns}
        if keys.scheme == "ore":
            self._ore = {(f, s): ore.ORE(ore_feature_key(keys.ope_key, f, s)) for f, s, _ in self._columns}
        else:
            self._ope = {(f, s): OPE(ope_feature_key(keys.ope_key, f, s)) for f, s, _ in self._columns}
        self._decryptor = SmallDecryptor(
            private_key_from_factors(keys.paillier_n, keys.paillier_p, keys.paillier_q))

    @property
    def model_id(self) -> str:
        return self.keys.model_id

    def _matrix(self, X) -> np.ndarray:
        X = _densify(X)
        names = self.keys.feature_names
        if names and hasattr(X, "columns") and not all(isinstance(c, int) for c in X.columns):
            missing = [n for n in names if n not in X.columns]
            if missing:
                raise ParameterError.bad("X", f"columns {list(names)}", f"missing {missing[:5]}")
            X = X[list(names)]
        X = _as_float64(codes_matrix(X, self.keys.feature_types, self.keys.categories))
        if not np.isnan(self.missing):
            X = np.where(X == self.missing, np.nan, X)
        if np.any(np.abs(X[np.isfinite(X)]) > _FLOAT32_MAX):
            raise ParameterError.bad("X", "values within float32 range (|x| <= 3.4028235e38), as xgboost",
                                     "a value beyond it")
        X = as_float32_matrix(X, self.keys.n_features)
        if X.shape[0] == 0:
            raise ParameterError.bad("X", "at least one row", 0)
        for f in {f for f, _, _ in self._cat_columns}:
            x = X[:, f]
            bad = ~np.isnan(x) & (x != np.trunc(x))
            if bad.any():
                raise ParameterError.bad("X", f"integer category codes in categorical feature {self._name(f)}",
                                         float(x[bad][0]))
        return X

    def _name(self, f: int) -> str:
        names = self.keys.feature_names
        return repr(names[f]) if names else str(f)

    def encrypt(self, X) -> EncryptedQueries:
        """Ciphertexts of every row (numpy, pandas or scipy sparse; NaN means missing)."""
        X = self._matrix(X)
        values = np.zeros((X.shape[0], len(self._columns)), dtype=np.int64)
        scheme = self.keys.scheme
        width = ore.left_width()
        left = np.zeros((X.shape[0], len(self._columns) * width), np.uint8) if scheme == "ore" else None
        for j, (f, s, _) in enumerate(self._columns):
            x = X[:, f]
            missing = np.isnan(x)
            plain = np.full(x.shape, MISSING_LOW if s == SLOT_LOW else MISSING_HIGH, dtype=np.int64)
            if not missing.all():
                plain[~missing] = float32_plaintext(x[~missing])
            if scheme == "ore":
                left[:, j * width:(j + 1) * width] = self._ore[(f, s)].encrypt_left(plain)
            else:
                values[:, j] = self._ope[(f, s)].encrypt(plain)
        tokens = None
        if self._cat_columns:
            tokens = np.zeros((X.shape[0], len(self._cat_columns), 2), np.uint64)
            for j, (f, s, _) in enumerate(self._cat_columns):
                tokens[:, j] = cattokens.tokens(self._token_keys[(f, s)], cattokens.positions(X[:, f]))
        return EncryptedQueries(model_id=self.keys.model_id,
                                columns=tuple(c for _, _, c in self._columns), values=values,
                                scheme=scheme, ore_left=left,
                                cat_columns=tuple(c for _, _, c in self._cat_columns), tokens=tokens)

    def decrypt(self, scores: EncryptedScores | bytes, output_margin: bool = False) -> np.ndarray:
        """Predictions equal to booster.predict (margins with output_margin=True)."""
        if isinstance(scores, (bytes, bytearray, memoryview)):
            scores = EncryptedScores.from_bytes(scores)
        if not isinstance(scores, EncryptedScores):
            raise ParameterError.bad("scores", "EncryptedScores or its bytes", type(scores).__name__)
        if scores.model_id != self.keys.model_id or scores.paillier_n != self.keys.paillier_n \
                or scores.n_groups != self.keys.n_groups:
            raise ParameterError.bad("scores", f"scores for model {self.keys.model_id!r}", scores.model_id)
        exact = [self._decryptor.decrypt_fixed(c) for c in scores.ciphers]
        margin = np.asarray(exact, dtype=np.float64).astype(np.float32)
        margin = margin.reshape(scores.n_rows, scores.n_groups)
        if scores.n_groups == 1:
            margin = margin[:, 0]
        if output_margin:
            return margin
        return apply_transform(self.keys.transform, margin)


def _densify(X):
    """Scipy sparse (CSR, CSC, COO...) to dense with NaN for absent entries."""
    if hasattr(X, "tocoo") and hasattr(X, "nnz"):
        coo = X.tocoo()
        dense = np.full(coo.shape, np.nan, dtype=np.float64)
        dense[coo.row, coo.col] = coo.data
        return dense
    return X


def _as_float64(X):
    """Numeric rows as float64 (pandas NA as NaN), before the float32 range check."""
    if hasattr(X, "to_numpy"):
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        return np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError.bad("X", "a numeric 2-D array or DataFrame", "non-numeric values") from None
