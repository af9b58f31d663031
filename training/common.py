"""Small pieces shared by the horizontal and vertical drivers."""

from __future__ import annotations

from typing import Sequence

from ppxgb.model import Ensemble, Tree
from ppxgb.transport import Transport

from .params import TrainParams


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
