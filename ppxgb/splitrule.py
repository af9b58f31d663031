"""The split condition, defined once for training, the model, the proxy and the server.

XGBoost compares in float32 and sends a row left when `x < threshold`; a missing value
(NaN) goes the node's default direction.  Each layer sees the same rule in its own
coordinates:

- the model (plaintext): `goes_left(x, threshold, default_left)` on float32 values;
- training: a value's bin b lies left of a split at bin s exactly when b <= s (bin s's
  upper edge is the threshold), so `bin_goes_left(b, missing_code, s, default_left)`,
  compiled, inside the partition kernels;
- encrypted inference: the server only compares ciphertexts with `<`, so the client
  encodes a missing value as a stand-in below every threshold when the node's default
  is left, above every threshold otherwise: `missing_goes_below(default_left)`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def goes_left(x: np.ndarray, threshold, default_left) -> np.ndarray:
    """Plaintext rule on float32 values (arrays broadcast)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(np.isnan(x), default_left, x < np.asarray(threshold, dtype=np.float32))


@njit(nogil=True, cache=True, inline="always")
def bin_goes_left(b, missing, split_bin, default_left):
    """Binned rule: bin b (missing_code for NaN) against a split at bin split_bin."""
    return default_left if b == missing else np.int64(b) <= split_bin


def category_goes_left(x: np.ndarray, categories: np.ndarray, default_left) -> np.ndarray:
    """Plaintext rule of a categorical split (XGBoost's): a code in the node's set
    `categories` goes right; any other code, including an invalid one (negative, at or
    beyond 2**24), goes left; a fractional code counts as its integer part; NaN goes the
    default direction."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = (x >= 0) & (x < 16777216.0)
    code = np.where(valid, x, -1).astype(np.int64)
    member = valid & np.isin(code, np.asarray(categories, dtype=np.int64))
    return np.where(np.isnan(x), default_left, ~member)


def missing_goes_below(default_left: bool) -> bool:
    """Encrypted rule: a missing value stands in below every threshold exactly when it
    must go left, so `stand_in < threshold` gives the default direction."""
    return bool(default_left)


def encoded_goes_left(x_code: np.ndarray, threshold_code: np.ndarray) -> np.ndarray:
    """The rule on order-preserving codes (ciphertexts): missing values are already
    stand-ins on the right side (see missing_goes_below), so only `<` remains."""
    return x_code < threshold_code
