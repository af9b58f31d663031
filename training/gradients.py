"""The one gradient encoder: float32 (g, h) from the objective, to fixed point, checked.

Every training mode encodes gradients the same way: the objective's float32 gradients
and hessians (times the row weights, as XGBoost multiplies them), scaled by
2^fixed_point_bits and rounded to int64 (an exact map, since the scale is a power of
two), laid out as `gh[group]` = (n_rows, 2) with g and h of a row side by side (one
cache line a row in the histogram kernels).

The overflow check bounds what the ring can hold: histogram sums of all parties must
stay below 2^63 / scale in magnitude, so each party's sum of |g| and of h must stay
below max_magnitude / n_parties.  A party over the limit is an error naming the fix.

Intercept sums travel in fixed point with few fractional bits (a party's sums of
counts or weights need range more than precision), so each is sent as two limbs:
the sum rounded to the grid, and the remainder scaled up by 2^LIMB_BITS.  Summed and
joined again, the totals are exact to about 2^-(bits + LIMB_BITS), enough for the
float32 intercept to come out as xgboost's own.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.errors import ParameterError
from ppxgb.objectives import Objective

LIMB_BITS = 20


class GradientEncoder:
    def __init__(self, objective: Objective, n_groups: int, fixed_point_bits: int, n_parties: int = 1,
                 params: Mapping[str, float] | None = None, dp_bounds: tuple[float, float] | None = None):
        self.objective = objective
        self.dp_bounds = dp_bounds      # (Cg, Ch) under differential privacy (training/dp.py)
        self.dp_clipped = False         # a round has clipped (and warned)
        self.params = dict(params or {})
        self.n_groups = n_groups
        self.bits = fixed_point_bits
        self.enc = FixedPointEncoder(fixed_point_bits)
        self.limit = self.enc.max_magnitude / max(n_parties, 1)
        self.per_party = n_parties > 1

    def encode(self, margin: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """gh (n_groups, n_rows, 2) int64 from margins (n_rows, n_groups) float32."""
        g, h = self.objective.gradients(margin if self.n_groups > 1 else margin[:, 0], y, w, self.params)
        g = g.reshape(len(y), -1)
        h = h.reshape(len(y), -1)
        if self.dp_bounds is not None:
            from .dp import clip_gh
            g, h, rows = clip_gh(g, h, *self.dp_bounds, warn=not self.dp_clipped)
            self.dp_clipped = self.dp_clipped or rows > 0
        if len(g) and (np.abs(g).sum(axis=0, dtype=np.float64).max() >= self.limit
                       or h.sum(axis=0, dtype=np.float64).max() >= self.limit):
            where = " per party" if self.per_party else ""
            raise ParameterError(
                f"gradient sums exceed the fixed-point range ({self.limit:g}{where} at "
                f"fixed_point_bits={self.bits}); scale the labels or lower fixed_point_bits")
        gh = np.stack([g.T, h.T], axis=-1).astype(np.float64) * self.enc.scale
        return np.rint(gh).astype(np.int64)


def check_weights(w, n_rows: int, name: str) -> np.ndarray | None:
    """Sample weights as float32 (as XGBoost stores them): one per row, finite, >= 0;
    None stays None (every row weighs 1)."""
    if w is None:
        return None
    try:
        w = np.asarray(w, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ParameterError.bad(name, "numeric sample weights", "non-numeric values") from None
    if len(w) != n_rows:
        raise ParameterError.bad(name, f"{n_rows} sample weights (one per row)", len(w))
    w = w.astype(np.float32)
    if not np.all(np.isfinite(w)):
        raise ParameterError.bad(name, "finite sample weights", "NaN or inf")
    if np.any(w < 0):
        raise ParameterError.bad(name, "sample weights >= 0", float(w.min()))
    return w


def intercept_limbs(stats: np.ndarray, bits: int = 0) -> np.ndarray:
    """[hi..., lo...]: hi on the 2^-bits grid (the transport's fixed point), lo =
    (stats - hi) * 2^LIMB_BITS.  join_limbs of one party's limbs gives stats exactly."""
    stats = np.asarray(stats, dtype=np.float64)
    hi = np.rint(stats * 2.0 ** bits) / 2.0 ** bits
    return np.concatenate([hi, (stats - hi) * 2.0 ** LIMB_BITS])


def join_limbs(totals: np.ndarray) -> np.ndarray:
    """The sums of intercept_limbs over all parties, joined back into one vector."""
    totals = np.asarray(totals, dtype=np.float64)
    half = len(totals) // 2
    return totals[:half] + totals[half:] / 2.0 ** LIMB_BITS
