"""The horizontal data party: its own rows, answered with additive shares only.

A party holds its rows, labels and (optionally) sample weights; the weights never leave
it: they enter its gradients and its intercept sums.  On the coordinator's requests it
computes local histograms (or bin counts, or intercept statistics) and sends one
additive share of the vector to each compute server: to servers 0..k-2 a fresh 32-byte
AES key that expands into a uniformly random vector, and to server k-1 the vector minus
those expansions (uniformly random on its own).  It routes its rows by the splits the
coordinator broadcasts and adds the leaf values to its own margins.

Its validation rows (one set per eval name) stay with it too: they follow the same
splits and leaf values, and on `evaluate` the party sends shares of their metric
statistics (ppxgb/metrics.py), so the coordinator opens only sums over parties.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.crypto.sharing import Randomness, default_randomness
from ppxgb.errors import ParameterError, PeerFailure, ProtocolError
from ppxgb.metrics import REFINE, auc_keys, eval_predictions, owner_stats, refine_counts
from ppxgb.model import as_float32_matrix
from ppxgb.objectives import get_objective
from ppxgb.transport import Transport

from .. import binning, categorical, dp, kernels
from ..gradients import GradientEncoder, check_weights, intercept_limbs
from ..evaluation import eval_metrics
from ..grower import ColumnSampler, row_sample, zero_unsampled
from ..messages import field, report_failure
from ..params import TrainParams
from .stages import COORDINATOR, EVAL_BITS, PARTY_STAGES, STATS_BITS


def send_shares(transport: Transport, me: str, servers: Sequence[str], step: int,
                ring: np.ndarray, rng: Randomness | None = None, noise: list[float] | None = None) -> None:
    """Split a uint64 vector into len(servers) additive shares and send one to each;
    noise: the DP noise sigmas each server is to add to its sum (training/dp.py)."""
    tag = {} if noise is None else {"noise": [float(s) for s in noise]}
    rng = rng or default_randomness()
    ring = np.ascontiguousarray(ring, dtype=np.uint64).ravel()
    last = ring.copy()
    for server in servers[:-1]:
        key = rng.words(4).tobytes()
        last -= Randomness(key).words(ring.size)
        transport.send(me, server, "share", {"step": step, "n": ring.size, "seed": key, **tag})
    transport.send(me, servers[-1], "share", {"step": step, "n": ring.size, "data": last, **tag})


class _PartyState:
    def __init__(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: TrainParams, n_parties: int,
                 name: str = ""):
        self.X, self.y, self.w, self.p, self.name = X, y, w, p, name
        self.encoder = GradientEncoder(get_objective(p.objective), p.n_groups, p.fixed_point_bits, n_parties,
                                       p.objective_params)
        self.rows: kernels.NodeRows | None = None      # set when the cuts arrive
        self.sizes: np.ndarray | None = None
        self.released: np.ndarray | None = None         # dp.released_features of the tree
        self.margin: np.ndarray | None = None
        self.gh: np.ndarray | None = None
        self.group = 0
        self.evals: list[_EvalRows] = []

    def set_cuts(self, cuts: list[np.ndarray]) -> None:
        sizes = np.array([len(c) for c in cuts], dtype=np.int64)
        self.sizes = sizes
        self.rows = kernels.NodeRows(binning.assign_bins(self.X, cuts, self.p.nthread), sizes,
                                     self.p.max_nodes, self.p.nthread)
        for ev in self.evals:
            ev.set_cuts(cuts, sizes, self.p)

    def set_base(self, base: np.ndarray) -> None:
        self.margin = np.tile(base, (self.X.shape[0], 1)).astype(np.float32)
        for ev in self.evals:
            ev.margin = np.tile(base, (ev.X.shape[0], 1)).astype(np.float32)

    def start_tree(self, group: int, rnd: int = 0) -> None:
        if group == 0:
            self.gh = self.encoder.encode(self.margin, self.y, self.w)
        self.group = group
        # under dp_epsilon only the tree's colsample_bytree features are released
        if self.p.dp_epsilon is not None:
            columns = ColumnSampler(self.p, self.X.shape[1], rnd * self.p.n_groups + group)
            self.released = dp.released_features(self.p, getattr(columns, "tree_set", None))
        # subsample: this party draws its own rows, keyed by the seed and its name
        keep = row_sample(self.p, self.name, rnd, group, self.X.shape[0])
        self.rows.start_tree(zero_unsampled(self.gh[group], keep))
        for ev in self.evals:
            ev.rows.start_tree(np.zeros((ev.X.shape[0], 2), np.int64))

    def selection_histogram(self) -> np.ndarray:
        """dp_select_features: the root's G/H sums of every feature at the base margin over
        dp.select_groups (no feature zeroed: the selection release carries them all)."""
        self.rows.start_tree(self.encoder.encode(self.margin, self.y, self.w)[0])
        cut_ptr = np.concatenate([[0], np.cumsum(self.sizes)])
        return dp.group_histogram(self.rows.histograms(np.zeros(1, np.int64))[0], cut_ptr)

    def apply(self, splits: dict[str, Any]) -> None:
        cats = categorical.split_payload_categories(splits)
        for batch in _generations(list(splits["node"]), list(splits["left"]), list(splits["right"])):
            part = {k: [splits[k][i] for i in batch] for k in ("node", "feature", "bin", "default_left", "left", "right")}
            for rows in [self.rows] + [ev.rows for ev in self.evals]:
                rows.split(part["node"], part["feature"], part["bin"], part["default_left"],
                           part["left"], part["right"], categories=[cats[i] for i in batch])

    def histograms(self, build: np.ndarray) -> np.ndarray:
        return dp.zero_unreleased(self.rows.histograms(build), self.sizes, self.released)

    def add_leaves(self, nodes: np.ndarray, values: np.ndarray) -> None:
        self.rows.add_leaves(self.margin[:, self.group], nodes, values)
        for ev in self.evals:
            ev.rows.add_leaves(ev.margin[:, self.group], nodes, values)

    def auc_counts(self, msg) -> np.ndarray:
        """Label counts of this party's validation rows in the key ranges the coordinator
        refines (ppxgb/metrics.py, exact AUC over owners)."""
        e = field(msg, "set", int)
        lo, hi = field(msg, "lo", np.ndarray), field(msg, "hi", np.ndarray)
        if not 0 <= e < len(self.evals) or lo.dtype != np.int64 or hi.shape != lo.shape or hi.dtype != np.int64 \
                or lo.ndim != 1 or np.any(hi <= lo) or np.any(lo[1:] < hi[:-1]) or np.any(lo < 0) \
                or np.any(hi > 2 ** 32):
            raise ProtocolError(f"{self.name}: auc request for set {e!r} with malformed key ranges")
        ev = self.evals[e]
        if not len(ev.y):
            return np.zeros(2 * REFINE * len(lo))
        keys = auc_keys(eval_predictions(self.p.objective, ev.margin))
        return refine_counts(keys, ev.y, ev.w, lo, hi)

    def eval_stats(self) -> np.ndarray:
        """Every eval set's metric statistics over this party's rows, concatenated."""
        metrics = eval_metrics(self.p)
        return np.concatenate([np.zeros(0)] + [
            owner_stats(metrics, self.p.objective, ev.margin, ev.y, ev.w, self.p.n_groups) for ev in self.evals])


def _generations(nodes: list[int], left: list[int], right: list[int]) -> list[list[int]]:
    """Positions of a splits payload in batches the kernel may partition at once: a node
    split in the same payload as its parent (dp_split="random" sends a whole tree, parents
    first) waits for a later batch, since its rows are placed by the parent's split."""
    batches: list[list[int]] = []
    placed: dict[int, int] = {}                 # node -> batch of the split that made it a child
    for i, node in enumerate(nodes):
        k = placed.get(node, -1) + 1
        if k == len(batches):
            batches.append([])
        batches[k].append(i)
        placed[left[i]] = placed[right[i]] = k
    return batches


class _EvalRows:
    """One eval set's rows at their party: binned with the agreed cuts, routed through
    every tree, with margins of their own."""

    def __init__(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None):
        self.X, self.y, self.w = X, y, w
        self.rows: kernels.NodeRows | None = None
        self.margin: np.ndarray | None = None

    def set_cuts(self, cuts: list[np.ndarray], sizes: np.ndarray, p: TrainParams) -> None:
        self.rows = kernels.NodeRows(binning.assign_bins(self.X, cuts, p.nthread), sizes,
                                     p.max_nodes, p.nthread)


def check_party_evals(evals, names: list[str], name: str, p: TrainParams, n_features: int) -> list[_EvalRows]:
    """The party's eval sets in the coordinator's order: {name: (X, y) or (X, y, w)}."""
    evals = dict(evals or {})
    if sorted(evals) != sorted(names):
        raise ParameterError.bad(f"{name} evals", f"validation rows for the eval sets {names}", sorted(evals))
    objective = get_objective(p.objective)
    out = []
    for ev in names:
        item = evals[ev]
        X = as_float32_matrix(item[0], name=f"{name} eval {ev} X", order="F")
        if X.shape[1] != n_features:
            raise ParameterError.bad(f"{name} eval {ev} X", f"{n_features} feature columns", X.shape[1])
        y = objective.check_labels(item[1], p.num_class, f"{name} eval {ev} y") if X.shape[0] else \
            np.zeros(0, np.float32)
        if len(y) != X.shape[0]:
            raise ParameterError.bad(f"{name} eval {ev} y", f"{X.shape[0]} labels", len(y))
        w = check_weights(item[2] if len(item) == 3 else None, X.shape[0], f"{name} eval {ev} w")
        out.append(_EvalRows(X, y, w))
    return out


def run_party(transport: Transport, name: str, X, y, w=None, *, servers: Sequence[str],
              coordinator: str = COORDINATOR, timeout: float | None = None, evals=None,
              feature_types=None) -> None:
    """A data holder: answers the coordinator's requests with shares to the servers.
    w: its rows' sample weights (None: every row weighs 1); evals: its validation rows,
    {eval name: (X, y) or (X, y, w)}, one entry per eval set the coordinator names.
    feature_types: 'c' marks integer-coded categorical columns (pandas `category`
    columns are categorical anyway)."""
    try:
        _party_loop(transport, name, X, y, w, list(servers), coordinator, timeout, evals, feature_types)
    except PeerFailure:
        raise
    except Exception as exc:
        report_failure(transport, name, coordinator, exc)
        raise


def _party_loop(transport, name, X, y, w, servers, coordinator, timeout, evals, feature_types=None):
    # Fortran order: the binning kernels stream columns; category columns are NaN until coded
    X, kinds, raw = categorical.split_columns(X, feature_types, f"{name} X")
    msg = transport.recv(name, "config", coordinator, timeout=timeout)
    p = TrainParams.from_dict(field(msg, "params", dict))
    n_parties = field(msg, "n_parties", int)
    objective = get_objective(p.objective)
    y = objective.check_labels(y, p.num_class)
    if len(y) != X.shape[0]:
        raise ParameterError.bad(f"{name} y", f"{X.shape[0]} labels (one per row)", len(y))
    w = check_weights(w, X.shape[0], f"{name} w")
    # differential privacy: this party's own accountant refuses releases beyond the plan
    dpa = dp.accountant_for(p, msg.payload.get("n_trees"), X.shape[1], name, STATS_BITS)
    w = dp.capped_weights(w, name) if dpa is not None else w
    state = _PartyState(X, y, w, p, n_parties, name)
    state.encoder.dp_bounds = dp.bounds(p) if dpa is not None else None
    state.evals = check_party_evals(evals, list(msg.payload.get("evals", [])), name, p, X.shape[1])
    stats_enc = FixedPointEncoder(STATS_BITS)
    transport.send(name, coordinator, "hello", {"n_features": X.shape[1], "kinds": kinds})
    while True:
        msg = transport.recv(name, PARTY_STAGES, coordinator, timeout=timeout)
        stage, pl = msg.stage, msg.payload
        if stage == "stop":
            return
        if stage == "bins":
            active = [np.asarray(a, dtype=np.uint32) for a in field(msg, "active", list)]
            counts = binning.party_cell_counts(X, field(msg, "level", int), active, p.nthread)
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(counts),
                        noise=dp.release_sigmas(dpa, "bins"))
        elif stage == "cats":
            sketch = categorical.party_sketch([raw[f] for f in field(msg, "columns", list)],
                                              field(msg, "salt", int), field(msg, "buckets", int))
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(sketch))
        elif stage == "categories":
            for f, agreed in zip(field(msg, "columns", list), field(msg, "lists", list)):
                X[:, f] = categorical.code_column(raw[f], kinds[f], agreed)
        elif stage == "cuts":
            state.set_cuts([np.asarray(c, dtype=np.float32) for c in field(msg, "cuts", list)])
        elif stage == "intercept":
            stats = objective.intercept_stats(y, p.num_class, w, p.objective_params)
            vec = intercept_limbs(stats, STATS_BITS) if dpa is None else dp.intercept_vector(stats, STATS_BITS)
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(vec),
                        noise=dp.release_sigmas(dpa, "intercept", len(vec)))
        elif stage == "base":
            state.set_base(np.asarray(field(msg, "base_margin", list), dtype=np.float32))
        elif stage == "select":
            if dpa is None or not p.dp_select_features:
                raise ProtocolError(f"{name}: select request without dp_select_features")
            noise = dp.release_sigmas(dpa, "select")         # refused beyond the plan, before building
            send_shares(transport, name, servers, pl["step"], state.selection_histogram().view(np.uint64),
                        noise=noise)
        elif stage == "tree":
            state.start_tree(field(msg, "group", int), field(msg, "round", int))
        elif stage == "level":
            state.apply(field(msg, "splits", dict))
            build = np.asarray(field(msg, "build", list), dtype=np.int64)
            hist = state.histograms(build)
            send_shares(transport, name, servers, pl["step"], hist.view(np.uint64),
                        noise=dp.release_sigmas(dpa, "level"))
        elif stage == "finish":
            state.apply(field(msg, "splits", dict))
            state.add_leaves(np.asarray(field(msg, "leaf_nodes", list), dtype=np.int64),
                             np.asarray(field(msg, "leaf_values", list), dtype=np.float32))
        elif stage == "evaluate":
            send_shares(transport, name, servers, pl["step"], FixedPointEncoder(EVAL_BITS).encode(state.eval_stats()))
        elif stage == "auc":
            send_shares(transport, name, servers, pl["step"], FixedPointEncoder(EVAL_BITS).encode(state.auc_counts(msg)))
