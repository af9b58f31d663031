"""The horizontal data party: its own rows, answered with additive shares only.

A party holds its rows, labels and (optionally) sample weights; the weights never leave
it: they enter its gradients and its intercept sums.  On the coordinator's requests it
computes local histograms (or bin counts, or intercept statistics) and sends one
additive share of the vector to each compute server: to servers 0..k-2 a fresh 32-byte
AES key that expands into a uniformly random vector, and to server k-1 the vector minus
those expansions (uniformly random on its own).  It routes its rows by the splits the
coordinator broadcasts and adds the leaf values to its own margins.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.crypto.sharing import Randomness, default_randomness
from ppxgb.errors import ParameterError, PeerFailure
from ppxgb.model import as_float32_matrix
from ppxgb.objectives import get_objective
from ppxgb.transport import Transport

from .. import binning, kernels
from ..gradients import GradientEncoder, check_weights, intercept_limbs
from ..grower import row_sample, zero_unsampled
from ..messages import field, report_failure
from ..params import TrainParams
from .stages import COORDINATOR, PARTY_STAGES, STATS_BITS


def send_shares(transport: Transport, me: str, servers: Sequence[str], step: int,
                ring: np.ndarray, rng: Randomness | None = None) -> None:
    """Split a uint64 vector into len(servers) additive shares and send one to each."""
    rng = rng or default_randomness()
    ring = np.ascontiguousarray(ring, dtype=np.uint64).ravel()
    last = ring.copy()
    for server in servers[:-1]:
        key = rng.words(4).tobytes()
        last -= Randomness(key).words(ring.size)
        transport.send(me, server, "share", {"step": step, "n": ring.size, "seed": key})
    transport.send(me, servers[-1], "share", {"step": step, "n": ring.size, "data": last})


class _PartyState:
    def __init__(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, p: TrainParams, n_parties: int,
                 name: str = ""):
        self.X, self.y, self.w, self.p, self.name = X, y, w, p, name
        self.encoder = GradientEncoder(get_objective(p.objective), p.n_groups, p.fixed_point_bits, n_parties,
                                       p.objective_params)
        self.rows: kernels.NodeRows | None = None      # set when the cuts arrive
        self.margin: np.ndarray | None = None
        self.gh: np.ndarray | None = None
        self.group = 0

    def set_cuts(self, cuts: list[np.ndarray]) -> None:
        sizes = np.array([len(c) for c in cuts], dtype=np.int64)
        self.rows = kernels.NodeRows(binning.assign_bins(self.X, cuts, self.p.nthread), sizes,
                                     2 ** (self.p.max_depth + 1), self.p.nthread)

    def start_tree(self, group: int, rnd: int = 0) -> None:
        if group == 0:
            self.gh = self.encoder.encode(self.margin, self.y, self.w)
        self.group = group
        # subsample: this party draws its own rows, keyed by the seed and its name
        keep = row_sample(self.p, self.name, rnd, group, self.X.shape[0])
        self.rows.start_tree(zero_unsampled(self.gh[group], keep))

    def apply(self, splits: dict[str, Any]) -> None:
        self.rows.split(splits["node"], splits["feature"], splits["bin"], splits["default_left"],
                        splits["left"], splits["right"])

    def histograms(self, build: np.ndarray) -> np.ndarray:
        return self.rows.histograms(build)

    def add_leaves(self, nodes: np.ndarray, values: np.ndarray) -> None:
        self.rows.add_leaves(self.margin[:, self.group], nodes, values)


def run_party(transport: Transport, name: str, X, y, w=None, *, servers: Sequence[str],
              coordinator: str = COORDINATOR, timeout: float | None = None) -> None:
    """A data holder: answers the coordinator's requests with shares to the servers.
    w: its rows' sample weights (None: every row weighs 1)."""
    try:
        _party_loop(transport, name, X, y, w, list(servers), coordinator, timeout)
    except PeerFailure:
        raise
    except Exception as exc:
        report_failure(transport, name, coordinator, exc)
        raise


def _party_loop(transport, name, X, y, w, servers, coordinator, timeout):
    X = as_float32_matrix(X, order="F")     # the binning kernels stream columns
    msg = transport.recv(name, "config", coordinator, timeout=timeout)
    p = TrainParams.from_dict(field(msg, "params", dict))
    n_parties = field(msg, "n_parties", int)
    objective = get_objective(p.objective)
    y = objective.check_labels(y, p.num_class)
    if len(y) != X.shape[0]:
        raise ParameterError.bad(f"{name} y", f"{X.shape[0]} labels (one per row)", len(y))
    w = check_weights(w, X.shape[0], f"{name} w")
    state = _PartyState(X, y, w, p, n_parties, name)
    stats_enc = FixedPointEncoder(STATS_BITS)
    transport.send(name, coordinator, "hello", {"n_features": X.shape[1]})
    while True:
        msg = transport.recv(name, PARTY_STAGES, coordinator, timeout=timeout)
        stage, pl = msg.stage, msg.payload
        if stage == "stop":
            return
        if stage == "bins":
            active = [np.asarray(a, dtype=np.uint32) for a in field(msg, "active", list)]
            counts = binning.party_cell_counts(X, field(msg, "level", int), active, p.nthread)
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(counts))
        elif stage == "cuts":
            state.set_cuts([np.asarray(c, dtype=np.float32) for c in field(msg, "cuts", list)])
        elif stage == "intercept":
            stats = objective.intercept_stats(y, p.num_class, w, p.objective_params)
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(intercept_limbs(stats, STATS_BITS)))
        elif stage == "base":
            base = np.asarray(field(msg, "base_margin", list), dtype=np.float32)
            state.margin = np.tile(base, (X.shape[0], 1)).astype(np.float32)
        elif stage == "tree":
            state.start_tree(field(msg, "group", int), field(msg, "round", int))
        elif stage == "level":
            state.apply(field(msg, "splits", dict))
            build = np.asarray(field(msg, "build", list), dtype=np.int64)
            hist = state.histograms(build)
            send_shares(transport, name, servers, pl["step"], hist.view(np.uint64))
        elif stage == "finish":
            state.apply(field(msg, "splits", dict))
            state.add_leaves(np.asarray(field(msg, "leaf_nodes", list), dtype=np.int64),
                             np.asarray(field(msg, "leaf_values", list), dtype=np.float32))
