"""Validation rows in vertical training: scored by the label holder, routed like training rows.

Each eval set is a block of rows per party, aligned like the training blocks (by PSI on
the id column, or by position); its labels and weights are at the label holder LH.
After every tree LH replays the tree's levels over the validation rows with the same
left-bit machinery as training (training/vertical/rows.py): per level it sends every
feature holder FH the last level's partition of the validation rows (so FH keeps their
positions, as it keeps the training rows') and the splits of this level on FH's
features; FH answers the left bits of the validation rows at those nodes.  LH adds the
leaf values to its validation margins and computes every metric itself: nothing about
validation labels or margins reaches a feature holder.

What each role learns about validation rows is what it learns about training rows: FH
the partition of its rows at every split node, LH the left bits at FH's split nodes.

Stages: LH->FH veval (tree, level, partition, splits), FH->LH veval_ok (left bits per
eval set).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppxgb.errors import ParameterError, ProtocolError
from ppxgb.metrics import owner_values
from ppxgb.model import as_float32_matrix
from ppxgb.objectives import get_objective
from ppxgb.transport import Transport

from .. import binning
from ..evaluation import eval_metrics
from ..gradients import check_weights
from ..messages import arrays, field
from ..params import TrainParams
from .rows import apply_partition, packed_bits, split_rows, take_bits
from .stages import Mailbox


class LabelHolderEvals:
    """LH's side: its validation columns, labels, weights, margins and row positions."""

    def __init__(self, evals: list[tuple[str, Any, Any, Any]], p: TrainParams, n_features: int):
        self.p, self.names = p, [name for name, _, _, _ in evals]
        self.X, self.y, self.w = [], [], []
        for name, X, y, w in evals:
            X = as_float32_matrix(X, name=f"eval {name} X", order="F")
            if X.shape[1] != n_features:
                raise ParameterError.bad(f"eval {name} X", f"{n_features} feature columns (as the training block)",
                                         X.shape[1])
            y = get_objective(p.objective).check_labels(y, p.num_class, f"eval {name} y")
            if len(y) != X.shape[0]:
                raise ParameterError.bad(f"eval {name} y", f"{X.shape[0]} labels (one per aligned row)", len(y))
            self.X.append(X)
            self.y.append(y)
            self.w.append(check_weights(w, X.shape[0], f"eval {name} weight"))
        self.sizes = [X.shape[0] for X in self.X]

    def config(self) -> list[list]:
        return [[name, n] for name, n in zip(self.names, self.sizes)]

    def set_cuts(self, cuts: list[np.ndarray], threads: int | None) -> None:
        self.bins = [binning.assign_bins(X, cuts, threads) for X in self.X]

    def set_base_margin(self, base_margin: np.ndarray) -> None:
        self.margin = [np.tile(base_margin.astype(np.float32), (n, 1)).astype(np.float32) for n in self.sizes]

    def score_tree(self, t: Transport, box: Mailbox, me: str, fhs: list[str], owner: list[tuple[str, int]],
                   tree: int, group: int, levels: list, leaves: list[int], values: list[float]) -> None:
        """Route the validation rows through the finished tree and add its leaf values.
        levels: the tree's splits level by level, {node: (Split, left, right)} each."""
        positions = [np.zeros(n, np.int64) for n in self.sizes]
        partition: dict[str, Any] = {"node": [], "left": [], "right": [], "goleft": []}
        for level, new in enumerate(levels):
            mine: dict[str, list] = {q: [] for q in fhs + [me]}
            for node, (s, _, _) in new.items():
                q, f = owner[s.feature]
                cats = getattr(s, "categories", None)
                mine[q].append((node, f, s.bin, bool(s.default_left)) + ((tuple(cats),) if cats else ()))
            for q in fhs:
                items = mine[q]
                t.send(me, q, "veval", {"tree": tree, "level": level, "partition": partition,
                                        "node": [it[0] for it in items], "feature": [it[1] for it in items],
                                        "bin": [it[2] for it in items], "default_left": [it[3] for it in items],
                                        "categories": [list(it[4]) if len(it) > 4 else [] for it in items]})
            goleft = [split_rows(pos, bins, mine[me], np.zeros(len(pos), bool))
                      for pos, bins in zip(positions, self.bins)]
            for q in fhs:
                if not mine[q]:
                    continue
                msg = box.get("veval_ok", q)
                if (msg.payload.get("tree"), msg.payload.get("level")) != (tree, level):
                    raise ProtocolError(f"{me}: veval_ok from {q} for {msg.payload.get('tree')}/"
                                        f"{msg.payload.get('level')}, expected {tree}/{level}")
                owned = np.zeros(max(it[0] for it in mine[q]) + 1, dtype=np.bool_)
                owned[[it[0] for it in mine[q]]] = True
                for e, bits in enumerate(arrays(msg, "goleft", len(self.sizes))):
                    take_bits(positions[e], owned, packed_bits(bits, self.sizes[e]), goleft[e])
            nodes = list(new)
            partition = {"node": nodes, "left": [new[k][1] for k in nodes], "right": [new[k][2] for k in nodes],
                         "goleft": [np.packbits(g) for g in goleft]}
            for pos, bits in zip(positions, partition["goleft"]):
                apply_partition(pos, nodes, partition["left"], partition["right"], bits)
        value_of = np.zeros(max(leaves) + 1, np.float32)
        value_of[leaves] = values
        for pos, margin in zip(positions, self.margin):
            margin[:, group] += value_of[pos]

    def values(self) -> list[list[float]]:
        """Every eval set's metric values (LH holds all the labels: no secure sum, and
        AUC exact)."""
        metrics = eval_metrics(self.p)
        return [owner_values(metrics, self.p.objective, m, y, w, self.p.n_groups)
                for m, y, w in zip(self.margin, self.y, self.w)]


class FeatureHolderEvals:
    """FH's side: its validation columns (binned with its training cuts) and positions."""

    def __init__(self, name: str, evals: dict[str, Any] | None, config: list, n_features: int):
        evals = dict(evals or {})
        names = [c[0] for c in config]
        if sorted(evals) != sorted(names):
            raise ParameterError.bad(f"{name} evals", f"validation columns for the eval sets {names}", sorted(evals))
        self.X = []
        for ev, n in config:
            X = as_float32_matrix(evals[ev], name=f"{name} eval {ev} X", order="F")
            if X.shape != (n, n_features):
                raise ParameterError.bad(f"{name} eval {ev} X", f"{n} rows aligned with the label holder and "
                                         f"{n_features} columns", X.shape)
            self.X.append(X)

    def set_cuts(self, cuts: list[np.ndarray], threads: int | None) -> None:
        self.bins = [binning.assign_bins(X, cuts, threads) for X in self.X]
        self.positions = [np.zeros(X.shape[0], np.int64) for X in self.X]

    def start_tree(self) -> None:
        for pos in self.positions:
            pos[:] = 0

    def answer(self, t: Transport, me: str, lh: str, msg, tree: int, n_bins: np.ndarray, max_nodes: int) -> None:
        """Apply the last level's partition; send the left bits of this level's splits."""
        items = checked_splits(me, msg, n_bins, max_nodes)
        if field(msg, "tree", int) != tree:
            raise ProtocolError(f"{me}: veval for tree {msg.payload['tree']} during tree {tree}")
        part = field(msg, "partition", dict)
        if part.get("node"):
            goleft = part.get("goleft")
            if not isinstance(goleft, list) or len(goleft) != len(self.positions) or \
                    not all(isinstance(b, np.ndarray) for b in goleft):
                raise ProtocolError(f"{me}: veval partition from {msg.src} without one bit array per eval set")
            for pos, bits in zip(self.positions, goleft):
                apply_partition(pos, part["node"], part["left"], part["right"], bits)
        if items:
            bits = [np.packbits(split_rows(pos, bins, items, np.zeros(len(pos), bool)))
                    for pos, bins in zip(self.positions, self.bins)]
            t.send(me, lh, "veval_ok", {"tree": tree, "level": field(msg, "level", int), "goleft": bits})


def checked_splits(me: str, msg, n_bins: np.ndarray, max_nodes: int) -> list[tuple]:
    """(node, feature, bin, default_left[, categories going right]) of each split a veval
    names, checked against this holder's features and bins."""
    nodes, feats, bins = field(msg, "node", list), field(msg, "feature", list), field(msg, "bin", list)
    dls = field(msg, "default_left", list)
    cats = msg.payload.get("categories") or [[] for _ in nodes]
    if not len(nodes) == len(feats) == len(bins) == len(dls) == len(cats):
        raise ProtocolError(f"{me}: {msg.stage} from {msg.src} with lists of different lengths")
    out = []
    for node, f, b, dl, c in zip(nodes, feats, bins, dls, cats):
        if not (isinstance(f, int) and 0 <= f < len(n_bins) and isinstance(b, int) and -1 <= b < n_bins[f]
                and isinstance(node, int) and 0 <= node < max_nodes and isinstance(c, list)):
            raise ProtocolError(f"{me}: {msg.stage} names node {node!r} feature {f!r} bin {b!r}")
        out.append((node, f, b, bool(dl)) + ((tuple(int(v) for v in c),) if c else ()))
    return out
