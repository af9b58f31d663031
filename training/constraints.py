"""Monotone and interaction constraints of one tree, as XGBoost's hist updater keeps them.

Monotone (XGBoost's TreeEvaluator): every node has float32 weight bounds, the root
(-FLT_MAX, FLT_MAX).  When node n splits on feature f into l and r with weights wl, wr
(clipped to n's bounds), both children inherit n's bounds and mid = (wl + wr) / 2 in
float32 cuts them: for an increasing f, upper(l) = lower(r) = mid; for a decreasing f,
lower(l) = upper(r) = mid.  A child's leaf value is its weight clipped to its parent's
bounds (the value XGBoost writes when it expands the parent).

Interaction (XGBoost's FeatureInteractionConstraintHost): the root may split on every
feature; a child may split on the features used on its path from the root, and on
every feature of each constraint set that contains all of those.

Both are public (they are parameters) and only restrict the split search.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ppxgb.errors import ParameterError

from .params import TrainParams
from .split import NodeBounds, Split, calc_weight

FLT_MAX = np.float32(np.finfo(np.float32).max)


def _index(feature, n_features: int, names: Sequence[str] | None, param: str) -> int:
    """A feature named by index or by name, checked against the layout."""
    if isinstance(feature, str):
        if names is None or feature not in names:
            raise ParameterError.bad(param, f"feature names among {list(names) if names else 'the (unnamed) columns'}",
                                     feature)
        return list(names).index(feature)
    if not 0 <= feature < n_features:
        raise ParameterError.bad(param, f"feature indices in [0, {n_features})", feature)
    return int(feature)


def monotone_directions(p: TrainParams, n_features: int, names: Sequence[str] | None) -> np.ndarray | None:
    """int8 per feature (1, -1, 0), or None when monotone_constraints is not given."""
    given = p.monotone_constraints
    if given is None:
        return None
    out = np.zeros(n_features, dtype=np.int8)
    if given and isinstance(given[0], tuple):            # by feature name
        for name, c in given:
            out[_index(name, n_features, names, "monotone_constraints")] = c
        return out
    if len(given) > n_features:
        raise ParameterError.bad("monotone_constraints", f"at most {n_features} entries (one per feature)",
                                 len(given))
    out[:len(given)] = given
    return out


def interaction_sets(p: TrainParams, n_features: int, names: Sequence[str] | None) -> list[frozenset[int]] | None:
    """The constraint sets as feature indices, or None when not given."""
    if p.interaction_constraints is None:
        return None
    return [frozenset(_index(f, n_features, names, "interaction_constraints") for f in group)
            for group in p.interaction_constraints]


class TreeConstraints:
    """The constraint state of one tree while it grows (see the module docstring)."""

    def __init__(self, monotone: np.ndarray | None, interactions: list[frozenset[int]] | None,
                 n_features: int):
        self.monotone, self.sets, self.n = monotone, interactions, n_features
        self.lo = {0: -FLT_MAX}
        self.hi = {0: FLT_MAX}
        self.parent = {0: 0}
        self.path: dict[int, frozenset[int]] = {0: frozenset()}
        self.allowed: dict[int, frozenset[int] | None] = {0: None}      # None: every feature

    @classmethod
    def for_tree(cls, p: TrainParams, layout) -> "TreeConstraints":
        """A fresh root for a tree over `layout` (a FeatureLayout)."""
        return cls(monotone_directions(p, layout.n_features, layout.names),
                   interaction_sets(p, layout.n_features, layout.names), layout.n_features)

    def bounds(self, nodes: Sequence[int]) -> NodeBounds | None:
        """The split-search bounds of `nodes` (None without monotone constraints)."""
        if self.monotone is None:
            return None
        f32 = np.float32
        parents = [self.parent[n] for n in nodes]
        return NodeBounds(self.monotone, np.array([self.lo[n] for n in nodes], f32),
                          np.array([self.hi[n] for n in nodes], f32),
                          np.array([self.lo[q] for q in parents], f32), np.array([self.hi[q] for q in parents], f32))

    def value_bounds(self, node: int) -> tuple[float, float] | None:
        """The bounds a node's weight is clipped to: its parent's (None: unconstrained)."""
        if self.monotone is None:
            return None
        q = self.parent[node]
        return self.lo[q], self.hi[q]

    def mask(self, nodes: Sequence[int], sampled: np.ndarray | None) -> np.ndarray | None:
        """The features each node may split on: the column sample (n_nodes, n_features)
        and the interaction constraints, combined (None: every feature everywhere)."""
        if self.sets is None or all(self.allowed[n] is None for n in nodes):
            return sampled
        out = np.ones((len(nodes), self.n), dtype=np.bool_) if sampled is None else sampled.copy()
        for i, node in enumerate(nodes):
            if self.allowed[node] is not None:
                keep = np.zeros(self.n, dtype=np.bool_)
                keep[list(self.allowed[node])] = True
                out[i] &= keep
        return out

    def add_split(self, node: int, left: int, right: int, s: Split, p: TrainParams) -> None:
        """`node` splits by `s` into `left` and `right`."""
        feature = s.feature
        for child in (left, right):
            self.parent[child] = node
            self.lo[child], self.hi[child] = self.lo[node], self.hi[node]
        if self.monotone is not None:
            own = (self.lo[node], self.hi[node])
            w_left, w_right = calc_weight(*s.left, p, own), calc_weight(*s.right, p, own)
            mid = (np.float32(w_left) + np.float32(w_right)) / np.float32(2.0)
            c = self.monotone[feature]
            if c < 0:
                self.lo[left], self.hi[right] = mid, mid
            elif c > 0:
                self.hi[left], self.lo[right] = mid, mid
        if self.sets is not None:
            path = self.path[node] | {feature}
            allowed = set(path)
            for group in self.sets:
                if path <= group:
                    allowed |= group
            for child in (left, right):
                self.path[child], self.allowed[child] = path, frozenset(allowed)
