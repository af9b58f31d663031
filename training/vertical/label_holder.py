"""The vertical label holder: the histogram source of vertical training.

The label holder LH holds y, the sample weights if any (they never leave it: they
enter its gradients and intercept), and maybe feature columns of its own, and drives
the protocol, like SecureBoost's active party.  Its histograms come from two places: its
own columns, binned and summed in the clear (the same kernel as a horizontal party's),
and every feature holder's columns through the dealer-assisted permutation protocol
(training/vertical/permute.py), which opens to LH only per-(node, bin) sums of g and h.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ppxgb.errors import ParameterError, ProtocolError
from ppxgb.memory import keep_freed_memory
from ppxgb.model import Ensemble
from ppxgb.objectives import get_objective
from ppxgb.crypto import prf
from ppxgb.transport import Blank, Transport, draft_message

from .. import binning, categorical, kernels
from ..evaluation import Evaluation
from ..gradients import GradientEncoder, check_weights, intercept_limbs
from ..grower import FeatureLayout, HistogramSource, NewSplits, boost, row_sample, zero_unsampled
from .. import dp
from ..messages import abort_all, array, arrays, field
from ..params import TrainParams
from ..split import CATEGORY_THRESHOLD, Split
from . import permute as pm
from .rows import apply_partition, local_cuts, packed_bits, slots_of, split_rows, take_bits
from .stages import DEALER, LH_STAGES, Mailbox
from .validation import LabelHolderEvals


class VerticalSource(HistogramSource):
    val: LabelHolderEvals | None = None      # validation rows, set by run_label_holder

    def __init__(self, t: Transport, me: str, p: TrainParams, X: np.ndarray, y: np.ndarray,
                 parties: list[str], dealer: str, timeout, own_names=None, w: np.ndarray | None = None,
                 own_kinds=None, own_categories=({}, [])):
        self.transport, self.t, self.me, self.p = t, t, me, p
        # own categorical columns (coded in X already): kinds, and the cuts and lists of code_own_columns
        self.own_kinds = list(own_kinds) if own_kinds is not None else [categorical.NUMERIC] * X.shape[1]
        self.own_cat_cuts, self.own_lists = own_categories[0], list(own_categories[1]) or [None] * X.shape[1]
        self.X, self.y, self.w = X, y, w
        self.parties, self.dealer = parties, dealer
        self.fhs = [q for q in parties if q != me]
        self.box = Mailbox(t, me, LH_STAGES, timeout)
        self.objective = get_objective(p.objective)
        self.encoder = GradientEncoder(self.objective, p.n_groups, p.fixed_point_bits, 1, p.objective_params)
        self.own_names = own_names
        self.n = X.shape[0]
        self.tree = self.level = self.group = 0
        self.pending: dict[str, Any] = {}
        # dp_split="random": splits from the seed, no feature holder's histogram; the label
        # holder releases noisy leaf totals and intercept itself (training/dp.py)
        self.random = p.dp_epsilon is not None and p.dp_split == "random"
        self.rng = None         # the noise's Randomness (None: the operating system's)

    # ---- setup
    def setup(self, n_trees: int) -> FeatureLayout:
        p, n = self.p, self.n
        # under dp_epsilon the feature holders noise what they send; this mirror of their
        # accountant refuses early and reports the spent budget
        self.dp = dp.accountant_for(p, n_trees, 0, self.me, vertical=True)
        self.encoder.dp_bounds = dp.bounds(p) if self.dp is not None else None
        if self.random:
            self.w = dp.capped_weights(self.w, self.me)
        dp_config = {"n_trees": n_trees} if self.dp is not None else {}
        for q in self.fhs:
            evals = {"evals": self.val.config()} if self.val else {}      # only with validation sets
            self.t.send(self.me, q, "vconfig", {"params": p.to_dict(), "n_rows": n, **evals, **dp_config})
        self.fh_bins: dict[str, np.ndarray] = {}
        names: dict[str, list[str] | None] = {self.me: self.own_names}
        kinds, lists = {self.me: self.own_kinds}, {self.me: self.own_lists}
        for q in self.fhs:
            msg = self.box.get("vhello", q)
            if field(msg, "n_rows", int) != n:
                raise ParameterError.bad(f"{q} X", f"{n} rows aligned with the label holder", msg.payload["n_rows"])
            self.fh_bins[q] = np.asarray(field(msg, "n_bins", list), dtype=np.int64)
            names[q] = msg.payload.get("names")
            kinds[q] = list(msg.payload.get("kinds") or [categorical.NUMERIC] * len(self.fh_bins[q]))
            lists[q] = list(msg.payload.get("categories") or [None] * len(self.fh_bins[q]))
            if len(kinds[q]) != len(self.fh_bins[q]) or len(lists[q]) != len(self.fh_bins[q]):
                raise ProtocolError(f"{self.me}: vhello from {q}: kinds and categories need one entry per feature")
        all_names = _merge_names(self.parties, names)
        if all_names is not None and len(set(all_names)) != len(all_names):
            raise ParameterError("parties: feature names must be unique across parties")
        # dp_split="random" builds at most one histogram, the selection's (tree 0, level 0)
        self.t.send(self.me, self.dealer, "dconfig", {
            "n_rows": n, "max_bin": p.max_bin, "max_depth": p.max_depth, "n_trees": 1 if self.random else n_trees,
            "fhs": self.fhs, "grow_policy": p.grow_policy, "steps": 1 if self.random else p.max_builds,
            "n_features": [len(self.fh_bins[q]) for q in self.fhs]})
        self.keys = field(self.box.get("dkeys", self.dealer), "keys", dict)
        cuts, mins = local_cuts(self.X, p.max_bin, p.nthread)
        for f, c in self.own_cat_cuts.items():
            cuts[f], mins[f] = c, np.float32(-1.0)
        own_sizes = np.array([len(c) for c in cuts], dtype=np.int64)
        self.bins = binning.assign_bins(self.X, cuts, p.nthread)      # in row order, for left bits
        self.rows = kernels.NodeRows(self.bins.copy(), own_sizes, p.max_nodes, p.nthread)
        self.own_cuts, self.own_mins = cuts, mins
        if self.val is not None:
            self.val.set_cuts(cuts, p.nthread)
        # global feature layout, in party order; LH never sees an FH's cuts (zeros)
        all_cuts, all_mins, self.owner = [], [], []
        for q in self.parties:
            if q == self.me:
                all_cuts += list(cuts)
                all_mins += list(mins)
                nf = len(cuts)
            else:
                all_cuts += [np.zeros(b, np.float32) for b in self.fh_bins[q]]
                all_mins += [0.0] * len(self.fh_bins[q])
                nf = len(self.fh_bins[q])
            self.owner += [(q, f) for f in range(nf)]
        self.kinds = [k for q in self.parties for k in kinds[q]]
        layout = replace(FeatureLayout.from_cuts(all_cuts, all_mins, all_names),
                         categorical=np.array([k != categorical.NUMERIC for k in self.kinds]),
                         categories=tuple(tuple(c) if c is not None else None for q in self.parties for c in lists[q]))
        self.cut_ptr = layout.cut_ptr
        self.global_index = {own: i for i, own in enumerate(self.owner)}
        self.own_total = int(own_sizes.sum())
        return layout

    def learner_params(self, p: TrainParams) -> TrainParams:
        # one noise (the holder's) on each sum, sized by the widest feature holder
        widest = max([len(b) for b in self.fh_bins.values()], default=0)
        return dp.learner_params(p, self.dp, 1, touched=None if self.random else 2 * widest)

    def intercept_totals(self) -> np.ndarray:
        stats = self.objective.intercept_stats(self.y, self.p.num_class, self.w, self.p.objective_params)
        return dp.noisy_intercept(stats, self.dp, self.rng) if self.random else intercept_limbs(stats)

    def set_base_margin(self, base_margin: np.ndarray) -> None:
        self.margin = np.tile(base_margin.astype(np.float32), (self.n, 1)).astype(np.float32)
        if self.val is not None:
            self.val.set_base_margin(base_margin)

    def start_tree(self, rnd: int, group: int, tree: int) -> None:
        if group == 0:
            self.gh = self.encoder.encode(self.margin, self.y, self.w)
        self.tree, self.group, self.level = tree, group, 0
        self.levels: list = []      # the tree's splits, for the validation rows
        for q in self.fhs:
            self.t.send(self.me, q, "vtree", {"tree": tree, "group": group})
        self.positions = np.zeros(self.n, dtype=np.int64)
        # subsample: the label holder's g and h are all that change (zero off the sample)
        self.tree_gh = zero_unsampled(self.gh[group], row_sample(self.p, self.me, rnd, group, self.n))
        self.rows.start_tree(self.tree_gh)
        self.pending = _no_pending()

    def selection_histogram(self) -> tuple[np.ndarray, float, np.ndarray]:
        """dp_select_features: the root histogram at the base margin, the feature holders'
        columns through the permutation protocol (tree 0, level 0; each holder noises its
        sums), grouped and noised by the label holder (training/dp.py)."""
        self.start_tree(0, 0, 0)
        hist = self._permuted([0], "select")[0]
        holders = [[self.global_index[(q, f)] for f in range(len(self.fh_bins[q]))] for q in self.fhs]
        return (dp.noisy_selection(hist, self.cut_ptr, self.dp, self.rng),
                dp.selection_floor(self.dp, 1, len(self.cut_ptr) - 1),
                dp.selection_g_variance(self.dp, self.cut_ptr, 1, [np.array(h) for h in holders]))

    # ---- one level of histograms
    def histograms(self, build: list[int]) -> np.ndarray:
        if self.random:
            return dp.noisy_totals(self._totals(build), self.dp, self.rng)
        return self._permuted(build, "level")

    def _permuted(self, build: list[int], release: str) -> np.ndarray:
        """The nodes' histograms: the label holder's own columns in the clear, the feature
        holders' through the permutation protocol (one release of `release` under DP)."""
        n, p = self.n, self.p
        tree, level, pending = self.tree, self.level, self.pending
        self.pending = _no_pending()       # the splits travel with this level's messages
        self.level += 1
        slot_of_row = slots_of(self.positions, build)
        rows = np.flatnonzero(slot_of_row >= 0)
        m, nb = len(rows), len(build)
        shape = pm.shape_level(level, p.lossguide)
        N = pm.correlation_size(n, shape, p.max_bin)
        beta = pm.block_size(n, shape, p.max_bin)
        dp.release_sigmas(self.dp, release)
        self.t.send(self.me, self.dealer, "dlevel", {"tree": tree, "level": level})
        gh = self.tree_gh[rows].view(np.uint64)
        for q in self.fhs:
            key = self.keys[q]
            span = pm.layout_length(m, nb * (int(self.fh_bins[q].max(initial=0)) + 1), beta)
            msg = draft_message(self.me, q, "vlevel", {"tree": tree, "level": level, "splits": pending["splits"],
                                                       "goleft": pending["goleft"], "build": build,
                                                       "z": Blank((span, pm.WIDTH), np.uint64)})
            pm.masked(gh, key, tree, level, "a", rows=span, out=msg.arrays["z"])     # z = (g, h) - a
            self.t.send_draft(msg)
        own = self.rows.histograms(build)        # the label holder's own columns, in the clear
        hist = np.zeros((nb, int(self.cut_ptr[-1]) + 1, 2), dtype=np.int64)
        hist[:, -1] = own[:, -1]
        first = self.global_index[(self.me, 0)] if self.own_total else 0
        if self.own_total:
            lo = int(self.cut_ptr[first])
            hist[:, lo:lo + self.own_total] = own[:, :-1]
        # gather 1 answers arrive one feature at a time, from whichever FH is ahead
        next_f = {q: 0 for q in self.fhs}
        c2: dict[tuple[str, int], np.ndarray] = {}        # round keys of stream c2, for gather 2
        z2s: dict[str, list[np.ndarray]] = {q: [] for q in self.fhs}
        for _ in range(sum(len(self.fh_bins[q]) for q in self.fhs)):
            msg = self.box.get("vperm")
            q = msg.src
            if q not in next_f or next_f[q] >= len(self.fh_bins[q]) or \
                    (msg.payload.get("tree"), msg.payload.get("level"), msg.payload.get("f")) != (tree, level, next_f[q]):
                raise ProtocolError(f"{self.me}: unexpected vperm from {q} for {msg.payload.get('tree')}/"
                                    f"{msg.payload.get('level')}/{msg.payload.get('f')}")
            f = next_f[q]
            next_f[q] += 1
            length = pm.layout_length(m, nb * (int(self.fh_bins[q][f]) + 1), beta)
            c1, a2, c2[q, f] = pm.stream_keys(self.keys[q], tree, level, f, names=("c1", "a2", "c2"))
            z2 = pm.lh_block_shares(c_key=c1, a2_key=a2, k=array(msg, "k", np.uint32, (length,)), size=N, beta=beta)
            z2s[q].append(z2)
            if next_f[q] == len(self.fh_bins[q]):      # one message per FH: it needs them all before gather 2
                self.t.send(self.me, q, "vsel", {"tree": tree, "level": level, "z2": z2s[q]})
        for q in self.fhs:
            msg = self.box.get("vsum", q)
            nbins = self.fh_bins[q]
            k2s, sums = arrays(msg, "k2", len(nbins)), arrays(msg, "s", len(nbins))
            for f, (k2, s) in enumerate(zip(k2s, sums)):
                n_seg = nb * (int(nbins[f]) + 1)
                if s.dtype != np.uint64 or s.shape != (n_seg, pm.WIDTH):
                    raise ProtocolError(f"{self.me}: vsum s[{f}] from {q} of shape {s.shape}")
                k2 = pm.checked_positions(k2, n_seg, N // beta)
                seg = pm.segment_sums(s - prf.rows_at(c2[q, f], k2))
                seg = seg.view(np.int64)
                seg = seg.reshape(nb, int(nbins[f]) + 1, 2)[:, :-1]
                lo = int(self.cut_ptr[self.global_index[(q, f)]])
                hist[:, lo:lo + int(nbins[f])] = seg
        return hist

    def _totals(self, build: list[int]) -> np.ndarray:
        """(nodes, bins + 1, 2) int64 with only the nodes' G/H totals, from the label
        holder's own g and h (under dp_split="random" it asks for no histogram)."""
        slot = slots_of(self.positions, build)
        rows = np.flatnonzero(slot >= 0)
        hist = np.zeros((len(build), int(self.cut_ptr[-1]) + 1, 2), dtype=np.int64)
        np.add.at(hist[:, -1], slot[rows], self.tree_gh[rows].astype(np.int64))
        return hist

    # ---- partition after splits
    def split(self, new: NewSplits) -> dict[int, float]:
        self.levels.append(dict(new))
        n = self.n
        goleft = np.zeros(n, dtype=bool)
        thresholds: dict[int, float] = {}
        by_owner: dict[str, list[tuple[int, int, Split]]] = {}
        for node, (s, _, _) in new.items():
            q, f = self.owner[s.feature]
            by_owner.setdefault(q, []).append((node, f, s))
        for q, items in by_owner.items():
            if q == self.me:
                split_rows(self.positions, self.bins, [(node, f, s.bin, bool(s.default_left), s.categories)
                                                       for node, f, s in items], goleft)
                for node, f, s in items:
                    thresholds[node] = CATEGORY_THRESHOLD if s.categories is not None else \
                        float(self.own_cuts[f][s.bin]) if s.bin >= 0 else float(self.own_mins[f])
            else:
                self.t.send(self.me, q, "vsplit", {"node": [it[0] for it in items], "feature": [it[1] for it in items],
                                                   "bin": [it[2].bin for it in items],
                                                   "default_left": [bool(it[2].default_left) for it in items],
                                                   "categories": [list(it[2].categories or ()) for it in items]})
        for q, items in by_owner.items():
            if q == self.me:
                continue
            msg = self.box.get("vsplit_ok", q)
            thr = field(msg, "threshold", list)
            if len(thr) != len(items):
                raise ProtocolError(f"{self.me}: {len(thr)} thresholds from {q}, expected {len(items)}")
            owned = np.zeros(max(it[0] for it in items) + 1, dtype=np.bool_)
            if self.random:     # one bit vector per split, over every row (the holder knows no node)
                for (node, _, _), b in zip(items, arrays(msg, "goleft", len(items))):
                    owned[:] = False
                    owned[node] = True
                    take_bits(self.positions, owned, packed_bits(b, n), goleft)
            else:
                owned[[it[0] for it in items]] = True
                take_bits(self.positions, owned, packed_bits(array(msg, "goleft", np.uint8), n), goleft)
            for (node, _, _), v in zip(items, thr):
                thresholds[node] = float(np.float32(v))
        nodes = list(new)
        splits = {"node": nodes, "left": [new[k][1] for k in nodes], "right": [new[k][2] for k in nodes]}
        bits = np.packbits(goleft)
        apply_partition(self.positions, nodes, splits["left"], splits["right"], bits)
        self.rows.split(nodes, [-1] * len(nodes), [0] * len(nodes), [False] * len(nodes),
                        splits["left"], splits["right"], bits=bits)
        old = self.pending["splits"]
        if old["node"]:     # lossguide: earlier splits not yet sent travel with these (other rows)
            splits = {k: old[k] + splits[k] for k in splits}
            bits = bits | self.pending["goleft"]
        self.pending = {"splits": splits, "goleft": bits}
        return thresholds

    def child_sizes(self, children, stats: Mapping[int, tuple[float, float]]) -> dict[int, float]:
        counts = np.bincount(self.positions, minlength=max(children) + 1)
        return {c: float(counts[c]) for c in children}

    def finish_tree(self, leaves: list[int], values: list[float]) -> None:
        self.rows.add_leaves(self.margin[:, self.group], leaves, values)
        if self.val is not None:
            self.val.score_tree(self.t, self.box, self.me, self.fhs, self.owner, self.tree, self.group,
                                self.levels, leaves, values)

    def evaluate(self) -> list[list[float]]:
        """Every eval set's metric values (the label holder scores them alone)."""
        return self.val.values()

    def stop(self) -> None:
        self.t.send(self.me, self.dealer, "stop", {})
        self.box.get("dbye", self.dealer)          # the dealer has sent everything it prepared
        for q in self.fhs:
            self.t.send(self.me, q, "stop", {})

    def abort(self) -> None:
        abort_all(self.t, self.me, self.fhs + [self.dealer])


def _no_pending() -> dict[str, Any]:
    return {"splits": {"node": [], "left": [], "right": []}, "goleft": np.zeros(0, np.uint8)}


def _merge_names(parties: list[str], names: dict[str, list[str] | None]) -> list[str] | None:
    if all(names[q] is None for q in parties):
        return None
    return [str(x) for q in parties for x in (names[q] or [])]


def run_label_holder(transport: Transport, name: str, X, y, params: dict[str, Any], num_boost_round: int, *,
                     parties: Sequence[str], dealer: str = DEALER, feature_names: Sequence[str] | None = None,
                     progress=None, timeout: float | None = None, weight=None, feature_types=None,
                     evals=None, evaluation: Evaluation | None = None) -> Ensemble:
    """Drive vertical training; learns per-(node, bin) G/H of FH features; returns the model.
    weight: the label holder's sample weights, one per aligned row (None: all 1).
    evals: [(name, X, y, w), ...] its validation columns, labels and weights (rows aligned
    with the feature holders'); evaluation: what scores them (training/evaluation.py)."""
    keep_freed_memory()
    p = TrainParams.from_dict(params)
    if isinstance(num_boost_round, bool) or not isinstance(num_boost_round, int) or num_boost_round < 0:
        raise ParameterError.bad("num_boost_round", "an int >= 0", num_boost_round)
    parties = list(parties)
    if name not in parties:
        raise ParameterError.bad("label holder", f"one of {parties}", name)
    frame = X if hasattr(X, "columns") else None
    X, kinds, raw = categorical.split_columns(X, feature_types, f"{name} X")
    own_categories = categorical.code_own_columns(X, kinds, raw, frame)
    y = get_objective(p.objective).check_labels(y, p.num_class)
    if len(y) != X.shape[0]:
        raise ParameterError.bad("label", f"{X.shape[0]} labels (one per aligned row)", len(y))
    if X.shape[0] == 0:
        raise ParameterError.bad("parties", "at least one common row", 0)
    w = check_weights(weight, X.shape[0], f"{name} weight")
    source = VerticalSource(transport, name, p, X, y, parties, dealer, timeout,
                            list(map(str, feature_names)) if feature_names is not None else None, w,
                            kinds, own_categories)
    return dp.with_attributes(boost(source, p, num_boost_round, progress, _with_evals(source, evals, evaluation, p, X.shape[1])), getattr(source, "dp", None))


def _with_evals(source: VerticalSource, evals, evaluation: Evaluation | None, p: TrainParams,
                n_features: int) -> Evaluation | None:
    """Give the source its validation rows and the evaluation its scores."""
    if evals and p.dp_epsilon is not None and p.dp_split == "random":
        raise ParameterError("evals: not available with dp_split='random' in vertical training (the validation "
                             "rows' partitions would reach the feature holders, which this mode keeps from them)")
    if evals:
        source.val = LabelHolderEvals(list(evals), p, n_features)
    if evaluation is not None:
        if list(evaluation.names) != [e[0] for e in evals or []]:
            raise ParameterError.bad("evals", f"validation rows for {evaluation.names}", [e[0] for e in evals or []])
        evaluation.score = source.evaluate
    return evaluation
