"""Small pieces shared by the horizontal and vertical drivers."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ppxgb.errors import ProtocolError
from ppxgb.model import Ensemble, Tree
from ppxgb.transport import Transport

from .params import TrainParams
from .split import leaf_value


def abort_all(transport: Transport, me: str, peers: Sequence[str]) -> None:
    """Tell every peer that training stopped; best effort (a peer may be gone)."""
    for q in peers:
        try:
            transport.send(me, q, "abort", {"peer": me, "reason": "training stopped"})
        except Exception:
            pass


def assemble(p: TrainParams, n_feat: int, trees: Sequence[Tree], info: Sequence[int],
             base_score: tuple[float, ...], names: Sequence[str] | None) -> Ensemble:
    """The trained Ensemble, with feature names when the parties gave DataFrames."""
    return Ensemble(
        objective=p.objective, num_feature=n_feat, trees=tuple(trees), tree_info=tuple(info),
        base_score=base_score, num_class=p.num_class if p.n_groups > 1 else 0,
        feature_names=tuple(names) if names is not None else None,
        feature_types=tuple("float" for _ in names) if names is not None else None)


def make_tree(n_nodes: int, splits: Mapping, thresholds: Mapping[int, float], leaves: Sequence[int],
              values: Sequence[float], stats: Mapping[int, tuple[float, float]], p: TrainParams) -> Tree:
    """A Tree in XGBoost's layout from the driver's splits {node: (Split, left, right)},
    float32 thresholds per split node, leaf values and (G, H) per node."""
    left = np.full(n_nodes, -1, np.int32)
    right = np.full(n_nodes, -1, np.int32)
    feature = np.zeros(n_nodes, np.int32)
    threshold = np.zeros(n_nodes, np.float32)
    default_left = np.zeros(n_nodes, bool)
    loss = np.zeros(n_nodes, np.float32)
    for node, (s, l, r) in splits.items():
        left[node], right[node], feature[node] = l, r, s.feature
        threshold[node], default_left[node], loss[node] = thresholds[node], s.default_left, s.gain
    base_weight = np.array([leaf_value(*stats[k], p) for k in range(n_nodes)], np.float32)
    threshold[list(leaves)] = values
    hess = np.array([stats[k][1] for k in range(n_nodes)], np.float32)
    return Tree.from_arrays(left, right, feature, threshold, default_left, base_weight, loss, hess)


def parent_and_sibling(node: int, splits: Mapping) -> tuple[int, int]:
    """The parent of `node` and its other child, from {node: (Split, left, right)}."""
    for parent, (_, l, r) in splits.items():
        if node == l:
            return parent, r
        if node == r:
            return parent, l
    raise ProtocolError(f"node {node} has no parent")
