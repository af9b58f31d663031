"""The one gradient encoder: float32 (g, h) from the objective, to fixed point, checked.

Every training mode encodes gradients the same way: the objective's float32 gradients
and hessians, scaled by 2^fixed_point_bits and rounded to int64 (an exact map, since the
scale is a power of two), laid out as `gh[group]` = (n_rows, 2) with g and h of a row
side by side (one cache line a row in the histogram kernels).

The overflow check bounds what the ring can hold: histogram sums of all parties must
stay below 2^63 / scale in magnitude, so each party's sum of |g| and of h must stay
below max_magnitude / n_parties.  A party over the limit is an error naming the fix.
"""

from __future__ import annotations

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.errors import ParameterError
from ppxgb.objectives import Objective


class GradientEncoder:
    def __init__(self, objective: Objective, n_groups: int, fixed_point_bits: int, n_parties: int = 1):
        self.objective = objective
        self.n_groups = n_groups
        self.bits = fixed_point_bits
        self.enc = FixedPointEncoder(fixed_point_bits)
        self.limit = self.enc.max_magnitude / max(n_parties, 1)
        self.per_party = n_parties > 1

    def encode(self, margin: np.ndarray, y: np.ndarray) -> np.ndarray:
        """gh (n_groups, n_rows, 2) int64 from margins (n_rows, n_groups) float32."""
        g, h = self.objective.gradients(margin if self.n_groups > 1 else margin[:, 0], y)
        g = g.reshape(len(y), -1)
        h = h.reshape(len(y), -1)
        if len(g) and (np.abs(g).sum(axis=0, dtype=np.float64).max() >= self.limit
                       or h.sum(axis=0, dtype=np.float64).max() >= self.limit):
            where = " per party" if self.per_party else ""
            raise ParameterError(
                f"gradient sums exceed the fixed-point range ({self.limit:g}{where} at "
                f"fixed_point_bits={self.bits}); scale the labels or lower fixed_point_bits")
        gh = np.stack([g.T, h.T], axis=-1).astype(np.float64) * self.enc.scale
        return np.rint(gh).astype(np.int64)
