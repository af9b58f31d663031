"""The one tree learner: a depth-wise or loss-guided grower over a histogram source.

A training mode is a *histogram source*: it answers "the G/H histograms of these
nodes" and is told "these nodes split like this".  Everything else happens here, once:
the boosting loop (intercept, rounds, output groups, progress), the subtraction trick
(one child built, its sibling = parent - child, exact in the fixed-point ring), split
finding (training/split.py), leaf values, and the tree and ensemble that come out.

Histograms are int64 fixed point, shaped (nodes, n_bins_total + 1, 2): g and h per
global bin (features in the layout's order), the last row the node totals.

Which child is built: the smaller one by the source's `child_sizes` (the work of
building a histogram grows with the rows it covers; a source that cannot count rows
reports hessian sums).  Which child is built never changes the result: the other is
subtracted exactly.

Sampling: column samples (colsample_bytree/bylevel/bynode) are public and drawn here,
in the driver, from the seed (ColumnSampler); they reach split finding as a feature
mask per node.  Row samples (subsample) are drawn by each row's owner (row_sample),
which zeroes the g and h of its unsampled rows for the tree.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import ParameterError
from ppxgb.model import Ensemble, Tree
from ppxgb.objectives import get_objective
from ppxgb.transport import Transport

from .gradients import join_limbs
from .params import TrainParams
from .constraints import TreeConstraints
from .dp import feature_scores, select_groups, top_features
from .split import RT_EPS, Split, find_splits, is_valid, leaf_value


@dataclass(frozen=True)
class FeatureLayout:
    """The global bin layout the split finder scans.

    cut_ptr[f]:cut_ptr[f+1] are feature f's bins in `cuts` (float32 upper edges: a value
    below cuts[k] falls in bin k or lower); `min_vals` the smallest value per feature
    (the threshold of a split that sends only missing values left).  A source may hide
    the cuts of features it does not own (zeros), and then supplies the thresholds.
    `categorical` marks categorical features (one bin per code, training/categorical.py)
    and `categories` holds, per feature, its list of categories when it has one.
    `selected` marks the features random splits may use (dp_select_features; None: all).
    """
    cut_ptr: np.ndarray
    cuts: np.ndarray
    min_vals: np.ndarray
    names: tuple[str, ...] | None = None
    categorical: np.ndarray | None = None
    categories: tuple | None = None
    selected: np.ndarray | None = None

    @classmethod
    def from_cuts(cls, cuts: Sequence[np.ndarray], mins: Sequence[float],
                  names: Sequence[str] | None = None) -> "FeatureLayout":
        cut_ptr = np.concatenate([[0], np.cumsum([len(c) for c in cuts])]).astype(np.int64)
        flat = np.concatenate(cuts).astype(np.float32) if len(cuts) else np.zeros(0, np.float32)
        return cls(cut_ptr, flat, np.asarray(mins, dtype=np.float32),
                   tuple(map(str, names)) if names is not None else None)

    @property
    def n_features(self) -> int:
        return len(self.cut_ptr) - 1

    @property
    def n_bins(self) -> int:
        return int(self.cut_ptr[-1])


# What the grower hands a source when nodes split: {node: (Split, left child, right child)}
NewSplits = Mapping[int, tuple[Split, int, int]]


class HistogramSource(ABC):
    """What a training mode implements for the learner (see the module docstring).

    The call order for a whole training: setup, intercept_totals (unless base_score is
    given), set_base_margin, then per tree start_tree, (histograms, split+)* and
    finish_tree, and at the end stop; abort on any failure.
    """

    transport: Transport

    @abstractmethod
    def setup(self, n_trees: int) -> FeatureLayout:
        """Agree on bins with the other roles; the global layout."""

    @abstractmethod
    def intercept_totals(self) -> np.ndarray:
        """The objective's intercept_stats (training/gradients.py's intercept_limbs of
        them) summed over all rows; join_limbs gives the sums."""

    @abstractmethod
    def set_base_margin(self, base_margin: np.ndarray) -> None:
        """Every row's margin starts at this (one float32 per output group)."""

    @abstractmethod
    def start_tree(self, rnd: int, group: int, tree: int) -> None:
        """A new tree of output group `group`: every row back at the root; at group 0
        the gradients of this round are computed from the margins; under subsample the
        owner of the rows zeroes the g and h of those not in row_sample."""

    @abstractmethod
    def histograms(self, build: list[int]) -> np.ndarray:
        """Opened int64 histograms of the nodes in `build`, in that order."""

    @abstractmethod
    def split(self, new: NewSplits) -> dict[int, float]:
        """Route the rows of the split nodes to their children; the float32 threshold
        of each split (the source knows the cuts of the features it owns).  Under
        lossguide it may be called several times before the next histograms or
        finish_tree (leaves whose children are not evaluated): the source keeps every
        split until then."""

    @abstractmethod
    def child_sizes(self, children: list[int], stats: Mapping[int, tuple[float, float]]) -> dict[int, float]:
        """A size per child (rows, or the hessian sum from stats) to pick which is built."""

    @abstractmethod
    def finish_tree(self, leaves: list[int], values: list[float]) -> None:
        """The tree is grown: add each leaf's value to the margins of its rows."""

    @abstractmethod
    def stop(self) -> None:
        """Training finished: release every other role."""

    @abstractmethod
    def abort(self) -> None:
        """Training failed: tell every other role (best effort)."""

    def learner_params(self, p: TrainParams) -> TrainParams:
        """The parameters split finding uses, asked once after setup: a source may
        tighten them (under dp_epsilon, min_child_weight above the noise: training/dp.py)."""
        return p

    def selection_histogram(self) -> tuple[np.ndarray, float, np.ndarray]:
        """dp_select_features: the root's opened (noisy) G/H sums of every feature at the
        base margin over training/dp.py's select_groups, (n_groups + 1, 2) int64, one DP
        release; the smallest hessian sum a child may hold when it is scored
        (dp.selection_floor); the noise variance of each G (dp.selection_g_variance)."""
        raise ParameterError("dp_select_features: not available in this training mode")


def grow_tree(source: HistogramSource, layout: FeatureLayout, p: TrainParams, scale: float,
              rnd: int, group: int, tree: int) -> Tree:
    """One tree, depth-wise (or by loss, grow_lossguide), with the subtraction
    trick; monotone and interaction constraints from training/constraints.py, and
    max_leaves counted as XGBoost's driver does (nodes of a level in id order)."""
    if p.lossguide:
        return grow_lossguide(source, layout, p, scale, rnd, group, tree)
    if p.dp_epsilon is not None and p.dp_split == "random":
        return grow_random(source, layout, p, scale, rnd, group, tree)
    source.start_tree(rnd, group, tree)
    n_total = layout.n_bins
    columns = ColumnSampler(p, layout.n_features, tree)
    cons = TreeConstraints.for_tree(p, layout)
    n_leaves = 1
    hists: dict[int, np.ndarray] = {}
    depth = {0: 0}
    stats: dict[int, tuple[float, float]] = {}
    splits: dict[int, tuple[Split, int, int]] = {}
    thresholds: dict[int, float] = {}
    frontier, build, next_id = [0], [0], 1
    while True:
        for node, h in zip(build, source.histograms(build)):
            hists[node] = h
        for node in frontier:  # siblings by subtraction, exact in the ring
            if node not in hists:
                parent, sibling = parent_and_sibling(node, splits)
                hists[node] = hists[parent] - hists[sibling]
        hists = {k: v for k, v in hists.items() if k in frontier}     # parents are done
        for node in frontier:
            stats[node] = (hists[node][n_total, 0] / scale, hists[node][n_total, 1] / scale)
        open_nodes = [node for node in frontier if depth[node] < p.max_depth]
        found = find_splits(np.stack([hists[n] for n in open_nodes]), scale, layout.cut_ptr,
                            layout.cuts, layout.min_vals, p,
                            cons.mask(open_nodes, columns.level_masks(len(open_nodes))), layout.categorical,
                            cons.bounds(open_nodes)) if open_nodes else []
        new: dict[int, tuple[Split, int, int]] = {}
        for node, s in zip(open_nodes, found):
            if s is not None and not (p.max_leaves and n_leaves == p.max_leaves):
                n_leaves += 1
                new[node] = (s, next_id, next_id + 1)
                depth[next_id] = depth[next_id + 1] = depth[node] + 1
                stats[next_id], stats[next_id + 1] = s.left, s.right
                cons.add_split(node, next_id, next_id + 1, s, p)
                next_id += 2
        if not new:
            break
        frontier = commit_splits(source, new, splits, thresholds)
        if depth[frontier[0]] >= p.max_depth or (p.max_leaves and n_leaves >= p.max_leaves):
            break
        sizes = source.child_sizes(frontier, stats)
        build = [l if sizes[l] <= sizes[r] else r for _, l, r in new.values()]
    leaves = sorted(set(range(next_id)) - set(splits))
    values = [leaf_value(*stats[k], p, cons.value_bounds(k)) for k in leaves]
    source.finish_tree(leaves, values)
    return make_tree(next_id, splits, thresholds, leaves, values, stats, p, cons.value_bounds)


def grow_random(source: HistogramSource, layout: FeatureLayout, p: TrainParams, scale: float,
                rnd: int, group: int, tree: int) -> Tree:
    """dp_split="random" (training/dp.py): every split is drawn from the seed and the
    tree index, never from the data (per node a feature with at least two bins, among
    the column sample, then one of its cuts), down to max_depth; then one histogram
    request for all the leaves, whose node totals give the leaf values.  That request is
    the tree's only data-dependent release; internal nodes' sums are their children's."""
    source.start_tree(rnd, group, tree)
    rng = Randomness(sampling_key(p.seed, "random-splits", tree))
    columns = ColumnSampler(p, layout.n_features, tree)
    usable = np.diff(layout.cut_ptr) >= 2
    if layout.categorical is not None:
        usable &= ~np.asarray(layout.categorical, bool)
    if layout.selected is not None:
        usable &= layout.selected
    splits: dict[int, tuple[Split, int, int]] = {}
    thresholds: dict[int, float] = {}
    frontier, next_id = [0], 1
    for _ in range(p.max_depth):
        masks = columns.level_masks(len(frontier))
        new: dict[int, tuple[Split, int, int]] = {}
        for i, node in enumerate(frontier):
            candidates = np.flatnonzero(usable & (masks[i] if masks is not None else True))
            if not len(candidates):
                continue
            word_f, word_b = (int(w) for w in rng.words(2))
            f = int(candidates[word_f % len(candidates)])
            b = word_b % (int(layout.cut_ptr[f + 1] - layout.cut_ptr[f]) - 1)
            thr = float(np.float32(layout.cuts[layout.cut_ptr[f] + b]))
            new[node] = (Split(f, b, False, thr, 0.0, (0.0, 0.0), (0.0, 0.0)), next_id, next_id + 1)
            next_id += 2
        if not new:
            break
        frontier = commit_splits(source, new, splits, thresholds)
    leaves = sorted(set(range(next_id)) - set(splits))
    stats = {k: (h[layout.n_bins, 0] / scale, h[layout.n_bins, 1] / scale)
             for k, h in zip(leaves, source.histograms(leaves))}
    for node in sorted(splits, reverse=True):           # children have larger ids
        _, l, r = splits[node]
        stats[node] = (stats[l][0] + stats[r][0], stats[l][1] + stats[r][1])
    values = [leaf_value(*stats[k], p) for k in leaves]
    source.finish_tree(leaves, values)
    return make_tree(next_id, splits, thresholds, leaves, values, stats, p)


def select_features(source: HistogramSource, layout: FeatureLayout, p: TrainParams, scale: float) -> FeatureLayout:
    """dp_select_features (training/dp.py): the layout with `selected` set to the k
    features of largest root split gain on the one noisy selection release."""
    hist, floor, g_var = source.selection_histogram()
    scores = feature_scores(np.asarray(hist, dtype=np.float64) / scale, select_groups(layout.cut_ptr)[1],
                            p.reg_lambda, floor, g_var)
    return replace(layout, selected=top_features(scores, p.dp_select_features))


def grow_lossguide(source: HistogramSource, layout: FeatureLayout, p: TrainParams, scale: float,
                   rnd: int, group: int, tree: int) -> Tree:
    """Loss-guided growth (grow_policy="lossguide"): the leaf of largest loss change first.

    XGBoost's hist driver keeps the candidate splits in a priority queue ordered by loss
    change, ties to the smaller node id.  The root enters unconditionally, children only
    with a loss change above 1e-6.  Each step pops the top; if it is not a valid split
    (training/split.py's is_valid), or the tree already has max_leaves leaves, the tree is
    finished, even when other entries remain.  Otherwise the node splits, and when its
    children may split further (depth + 1 < max_depth unless max_depth is 0, and fewer
    than max_leaves leaves) the smaller child's histogram is built, its sibling subtracted
    from the parent (exact in the ring), and both children's best splits enter the queue.

    Each request to the source holds one node, so a source sees one histogram request
    per expansion, at most TrainParams.max_builds per tree.
    """
    source.start_tree(rnd, group, tree)
    n_total = layout.n_bins
    columns = ColumnSampler(p, layout.n_features, tree)
    cons = TreeConstraints.for_tree(p, layout)
    depth = {0: 0}
    stats: dict[int, tuple[float, float]] = {}
    splits: dict[int, tuple[Split, int, int]] = {}
    thresholds: dict[int, float] = {}
    hists = {0: source.histograms([0])[0]}

    def evaluate(nodes: list[int]) -> list[Split | None]:
        for node in nodes:
            stats[node] = (hists[node][n_total, 0] / scale, hists[node][n_total, 1] / scale)
        return find_splits(np.stack([hists[n] for n in nodes]), scale, layout.cut_ptr, layout.cuts,
                           layout.min_vals, p, cons.mask(nodes, columns.depth_masks([depth[n] for n in nodes])),
                           layout.categorical, cons.bounds(nodes), keep_invalid=True)

    root = evaluate([0])[0]
    # entries: (-loss change, node id, split); a node without a candidate ranks at 0
    queue = [(-np.float32(root.gain) if root is not None else np.float32(0.0), 0, root)]
    n_leaves, next_id = 1, 1
    while queue:
        _, node, s = heapq.heappop(queue)
        if s is None or not is_valid(s, p) or (p.max_leaves and n_leaves == p.max_leaves):
            break
        n_leaves += 1
        left, right = next_id, next_id + 1
        next_id += 2
        depth[left] = depth[right] = depth[node] + 1
        stats[left], stats[right] = s.left, s.right
        cons.add_split(node, left, right, s, p)
        splits[node] = (s, left, right)
        thresholds.update(source.split({node: (s, left, right)}))
        parent_hist = hists.pop(node)
        if (p.max_depth and depth[node] + 1 >= p.max_depth) or (p.max_leaves and n_leaves >= p.max_leaves):
            continue
        sizes = source.child_sizes([left, right], stats)
        built, other = (left, right) if sizes[left] <= sizes[right] else (right, left)
        hists[built] = source.histograms([built])[0]
        hists[other] = parent_hist - hists[built]      # the sibling by subtraction
        for child, found in zip((left, right), evaluate([left, right])):
            if found is not None and np.float32(found.gain) > RT_EPS:
                heapq.heappush(queue, (-np.float32(found.gain), child, found))
            else:
                hists.pop(child)
    leaves = sorted(set(range(next_id)) - set(splits))
    values = [leaf_value(*stats[k], p, cons.value_bounds(k)) for k in leaves]
    source.finish_tree(leaves, values)
    return make_tree(next_id, splits, thresholds, leaves, values, stats, p, cons.value_bounds)


def boost(source: HistogramSource, p: TrainParams, num_boost_round: int, progress=None,
          rounds=None) -> Ensemble:
    """The whole training over one source; returns the Ensemble (see `Ensemble.to_booster`).

    rounds: None, or what is consulted around each round (training/evaluation.py's
    Evaluation): the parameters of the round (a callback may change eta) or a stop
    before it, and after it whether to stop (early stopping)."""
    if isinstance(num_boost_round, bool) or not isinstance(num_boost_round, int) or num_boost_round < 0:
        raise ParameterError.bad("num_boost_round", "an int >= 0", num_boost_round)
    scale = FixedPointEncoder(p.fixed_point_bits).scale
    try:
        layout = source.setup(num_boost_round * p.n_groups)
        p = source.learner_params(p)
        base_score = (p.base_score,) if p.base_score is not None else \
            get_objective(p.objective).intercept_from_stats(join_limbs(source.intercept_totals()),
                                                            p.objective_params, p.nthread)
        probe = Ensemble(p.objective, layout.n_features, (), (), base_score, p.num_class if p.n_groups > 1 else 0)
        source.set_base_margin(probe.base_margin())
        if p.dp_epsilon is not None and p.dp_select_features:
            layout = select_features(source, layout, p, scale)
        trees, info = [], []
        if progress is not None:
            progress.start(num_boost_round)
        started = time.monotonic()
        if rounds is not None:
            rounds.before_training()
        for rnd in range(num_boost_round):
            rp = p if rounds is None else rounds.round_params(rnd, p)
            if rp is None:
                break
            for group in range(p.n_groups):
                trees.append(grow_tree(source, layout, rp, scale, rnd, group, len(trees)))
                info.append(group)
            if progress is not None:
                progress.update(rnd, {"elapsed": time.monotonic() - started,
                                      "bytes": source.transport.total_bytes})
            if rounds is not None and rounds.after_round(rnd):
                break
        source.stop()
    except BaseException:
        source.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
    return assemble(p, layout.n_features, trees, info, base_score, layout.names, layout.categorical,
                    layout.categories)


# ------------------------------------------------------------------- sampling
def sampling_key(seed: int, *labels: object) -> bytes:
    """A 32-byte AES key for one stream of sampling randomness: SHA-256 of the seed and
    the labels that name the stream (what is sampled, by whom, for which tree)."""
    text = "\x1f".join(["ppxgb-sampling-v1", str(int(seed)), *map(str, labels)])
    return hashlib.sha256(text.encode()).digest()


def row_sample(p: TrainParams, owner: str, rnd: int, group: int, n_rows: int) -> np.ndarray | None:
    """Rows of `owner` kept in the tree (rnd, group) under `subsample` (None: all rows).

    Each row is kept independently with probability subsample, as XGBoost's uniform
    sampling; the draw is keyed by the seed and the owner's own name, so it is made
    where the rows are (no row leaves the owner).  It is a function of the seed: a
    role that knows the seed and the owner's row count can compute the positions.
    """
    if p.subsample >= 1.0:
        return None
    words = Randomness(sampling_key(p.seed, "rows", owner, rnd, group)).words(n_rows)
    return words < np.uint64(min(int(p.subsample * 2.0 ** 64), 2 ** 64 - 1))


def zero_unsampled(gh: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """gh (n_rows, 2) with the g and h of unsampled rows set to zero (a copy)."""
    if keep is None:
        return gh
    out = gh.copy()
    out[~keep] = 0
    return out


class ColumnSampler:
    """XGBoost's nested column sampling for one tree: colsample_bytree picks the tree's
    features, colsample_bylevel picks each level's from the tree's, colsample_bynode
    each node's from its level's; at least one feature each, max(1, int(fraction * n)).

    The samples are public (they only restrict the split search) and drawn by the
    driver from the seed and the tree index.
    """

    def __init__(self, p: TrainParams, n_features: int, tree: int):
        self.p, self.n = p, n_features
        self.levels: dict[int, np.ndarray] = {}      # depth_masks: the level draw per depth
        self.active = n_features > 0 and min(p.colsample_bytree, p.colsample_bylevel, p.colsample_bynode) < 1.0
        if self.active:
            self.rng = Randomness(sampling_key(p.seed, "columns", tree))
            self.tree_set = self._pick(np.arange(n_features), p.colsample_bytree)

    def _pick(self, features: np.ndarray, fraction: float) -> np.ndarray:
        if fraction >= 1.0:
            return features
        k = max(1, int(fraction * len(features)))
        order = np.argsort(self.rng.words(len(features)), kind="stable")
        return np.sort(features[order[:k]])

    def depth_masks(self, depths: Sequence[int]) -> np.ndarray | None:
        """level_masks for nodes of any depths (lossguide): one level draw per depth,
        kept for the tree, then a node draw per node."""
        if not self.active:
            return None
        levels = self.levels
        mask = np.zeros((len(depths), self.n), dtype=np.bool_)
        for i, d in enumerate(depths):
            if d not in levels:
                levels[d] = self._pick(self.tree_set, self.p.colsample_bylevel)
            mask[i, self._pick(levels[d], self.p.colsample_bynode)] = True
        return mask

    def level_masks(self, n_nodes: int) -> np.ndarray | None:
        """(n_nodes, n_features) bool: the features each open node of a level may split
        on (None: all of them, no sampling)."""
        if not self.active:
            return None
        level_set = self._pick(self.tree_set, self.p.colsample_bylevel)
        mask = np.zeros((n_nodes, self.n), dtype=np.bool_)
        for i in range(n_nodes):
            mask[i, self._pick(level_set, self.p.colsample_bynode)] = True
        return mask


# ------------------------------------------------------------------- the model out
def assemble(p: TrainParams, n_feat: int, trees: Sequence[Tree], info: Sequence[int],
             base_score: tuple[float, ...], names: Sequence[str] | None,
             categorical: np.ndarray | None = None, categories: tuple | None = None) -> Ensemble:
    """The trained Ensemble, with feature names when the parties gave DataFrames, and
    feature types ('c' for categorical) when they did or when a feature is categorical."""
    types = None
    if names is not None or (categorical is not None and np.any(categorical)):
        cat = np.zeros(n_feat, bool) if categorical is None else np.asarray(categorical, bool)
        types = tuple("c" if c else "float" for c in cat)
    return Ensemble(
        objective=p.objective, num_feature=n_feat, trees=tuple(trees), tree_info=tuple(info),
        base_score=base_score, num_class=p.num_class if p.n_groups > 1 else 0,
        objective_params=get_objective(p.objective).json_values(p.objective_params),
        feature_names=tuple(names) if names is not None else None,
        feature_types=types,
        categories=categories if categories is not None and any(c is not None for c in categories) else None)


def make_tree(n_nodes: int, splits: Mapping, thresholds: Mapping[int, float], leaves: Sequence[int],
              values: Sequence[float], stats: Mapping[int, tuple[float, float]], p: TrainParams,
              value_bounds=lambda node: None) -> Tree:
    """A Tree in XGBoost's layout from the splits {node: (Split, left, right)}, float32
    thresholds per split node, leaf values and (G, H) per node; value_bounds(node) the
    monotone bounds of a node's weight (None: unconstrained)."""
    left = np.full(n_nodes, -1, np.int32)
    right = np.full(n_nodes, -1, np.int32)
    feature = np.zeros(n_nodes, np.int32)
    threshold = np.zeros(n_nodes, np.float32)
    default_left = np.zeros(n_nodes, bool)
    loss = np.zeros(n_nodes, np.float32)
    for node, (s, l, r) in splits.items():
        left[node], right[node], feature[node] = l, r, s.feature
        threshold[node], default_left[node], loss[node] = thresholds[node], s.default_left, s.gain
    base_weight = np.array([leaf_value(*stats[k], p, value_bounds(k)) for k in range(n_nodes)], np.float32)
    threshold[list(leaves)] = values
    hess = np.array([stats[k][1] for k in range(n_nodes)], np.float32)
    sets = {node: s.categories for node, (s, _, _) in splits.items() if s.categories is not None}
    return Tree.from_arrays(left, right, feature, threshold, default_left, base_weight, loss, hess,
                            categories=sets or None)


def commit_splits(source: HistogramSource, new: NewSplits, splits: dict, thresholds: dict) -> list[int]:
    """Record a level's new splits, route the rows (source.split) and return the children."""
    splits.update(new)
    thresholds.update(source.split(new))
    return [c for _, l, r in new.values() for c in (l, r)]


def parent_and_sibling(node: int, splits: Mapping) -> tuple[int, int]:
    """The parent of `node` and its other child, from {node: (Split, left, right)}."""
    for parent, (_, l, r) in splits.items():
        if node == l:
            return parent, r
        if node == r:
            return parent, l
    raise ParameterError.bad("node", "a child of a split node", node)
