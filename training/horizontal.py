"""Horizontal secure training: the party, compute-server and coordinator roles.

Every role is a function that talks only through a `Transport`, so the same code runs
as threads over the in-memory transport or as processes over the network.

Stages (coordinator C, parties P, servers S):

    C->P config      params, servers, number of parties
    P->C hello       number of features and their names (no row count)
    C->P bins        refine the shared value grid: level, active prefixes per feature
    C->P cuts        the agreed bin edges
    C->P intercept   send the intercept statistics (only when base_score is unset)
    C->P base        the intercept
    C->P tree        start tree (round, group); parties compute g, h on round start
    C->P level       apply these splits, then build histograms of these nodes
    C->P finish      apply the last splits and add these leaf values to the margins
    P->S share       one additive share of a vector, tagged with the step number
    S->C sum         a server's sum of the parties' shares for one step
    any stop / abort

What leaves a party is only shares: to servers 0..k-2 a fresh 32-byte AES key that
expands into a uniformly random vector, and to server k-1 the vector minus those
expansions (uniformly random on its own).  Each server adds what it receives; the
coordinator adds the k server sums and so opens only the total over all parties.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError, PeerFailure, ProtocolError
from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.model import Ensemble, Tree, as_float32_matrix
from ppxgb.crypto.sharing import Randomness, default_randomness
from ppxgb.transport import Transport

from . import binning, kernels
from .common import abort_all, assemble, make_tree, parent_and_sibling
from .objectives import check_labels, gradients, intercept_from_stats, intercept_stats
from .params import TrainParams
from .split import Split, find_splits, leaf_value

COORDINATOR = "coordinator"
STATS_BITS = 16  # fixed point of counts and intercept sums (range 2^47)


def role_names(n_parties: int, n_servers: int) -> tuple[list[str], list[str], str]:
    if not isinstance(n_servers, int) or not 2 <= n_servers <= 4:
        raise ParameterError.bad("n_servers", "an int in [2, 4]", n_servers)
    if n_parties < 1:
        raise ParameterError.bad("parties", "at least one party", n_parties)
    return ([f"party-{i}" for i in range(n_parties)],
            [f"server-{j}" for j in range(n_servers)], COORDINATOR)


def _field(msg, key: str, kind: type | tuple[type, ...]):
    value = msg.payload.get(key)
    if not isinstance(value, kind):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"{kind}, got {type(value).__name__}")
    return value


# ============================================================================ party
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
    def __init__(self, X: np.ndarray, y: np.ndarray, p: TrainParams, n_parties: int):
        self.X, self.y, self.p = X, y, p
        self.n_parties = n_parties
        self.enc = FixedPointEncoder(p.fixed_point_bits)
        self.rows: kernels.NodeRows | None = None      # set when the cuts arrive
        self.margin: np.ndarray | None = None
        self.gh: np.ndarray | None = None
        self.group = 0

    def set_cuts(self, cuts: list[np.ndarray]) -> None:
        sizes = np.array([len(c) for c in cuts], dtype=np.int64)
        self.rows = kernels.NodeRows(binning.assign_bins(self.X, cuts, self.p.nthread), sizes,
                                     2 ** (self.p.max_depth + 1), self.p.nthread)

    def start_tree(self, group: int) -> None:
        if group == 0:
            self.encode_gradients()
        self.group = group
        self.rows.start_tree(self.gh[group])

    def encode_gradients(self) -> None:
        g, h = gradients(self.p.objective, self.margin if self.p.n_groups > 1 else self.margin[:, 0], self.y)
        g = g.reshape(len(self.y), -1)
        h = h.reshape(len(self.y), -1)
        limit = self.enc.max_magnitude / max(self.n_parties, 1)
        if len(g) and (np.abs(g).sum(axis=0, dtype=np.float64).max() >= limit
                       or h.sum(axis=0, dtype=np.float64).max() >= limit):
            raise ParameterError(
                f"gradient sums exceed the fixed-point range ({limit:g} per party at "
                f"fixed_point_bits={self.p.fixed_point_bits}); scale the labels or lower fixed_point_bits")
        # gh[k] is (n_rows, 2): g and h of output group k side by side, one cache line a row
        gh = np.stack([g.T, h.T], axis=-1).astype(np.float64) * self.enc.scale
        self.gh = np.rint(gh).astype(np.int64)

    def apply(self, splits: dict[str, Any]) -> None:
        self.rows.split(splits["node"], splits["feature"], splits["bin"], splits["default_left"],
                        splits["left"], splits["right"])

    def histograms(self, build: np.ndarray) -> np.ndarray:
        return self.rows.histograms(build)

    def add_leaves(self, nodes: np.ndarray, values: np.ndarray) -> None:
        self.rows.add_leaves(self.margin[:, self.group], nodes, values)


def run_party(transport: Transport, name: str, X, y, *, servers: Sequence[str],
              coordinator: str = COORDINATOR, timeout: float | None = None) -> None:
    """A data holder: answers the coordinator's requests with shares to the servers."""
    try:
        _party_loop(transport, name, X, y, list(servers), coordinator, timeout)
    except PeerFailure:
        raise
    except Exception as exc:
        transport.send(name, coordinator, "abort", {"peer": name, "reason": f"{type(exc).__name__}: {exc}"})
        raise


def _party_loop(transport, name, X, y, servers, coordinator, timeout):
    X = as_float32_matrix(X, order="F")     # the binning kernels stream columns
    msg = transport.recv(name, "config", coordinator, timeout=timeout)
    p = TrainParams.from_dict(_field(msg, "params", dict))
    n_parties = _field(msg, "n_parties", int)
    y = check_labels(p.objective, y, p.num_class)
    if len(y) != X.shape[0]:
        raise ParameterError.bad(f"{name} y", f"{X.shape[0]} labels (one per row)", len(y))
    state = _PartyState(X, y, p, n_parties)
    stats_enc = FixedPointEncoder(STATS_BITS)
    transport.send(name, coordinator, "hello", {"n_features": X.shape[1]})
    stages = ("bins", "cuts", "intercept", "base", "tree", "level", "finish", "stop")
    while True:
        msg = transport.recv(name, stages, coordinator, timeout=timeout)
        stage, pl = msg.stage, msg.payload
        if stage == "stop":
            return
        if stage == "bins":
            active = [np.asarray(a, dtype=np.uint32) for a in _field(msg, "active", list)]
            counts = binning.party_cell_counts(X, _field(msg, "level", int), active, p.nthread)
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(counts))
        elif stage == "cuts":
            state.set_cuts([np.asarray(c, dtype=np.float32) for c in _field(msg, "cuts", list)])
        elif stage == "intercept":
            stats = intercept_stats(p.objective, y, p.num_class)
            send_shares(transport, name, servers, pl["step"], stats_enc.encode(stats))
        elif stage == "base":
            base = np.asarray(_field(msg, "base_margin", list), dtype=np.float32)
            state.margin = np.tile(base, (X.shape[0], 1)).astype(np.float32)
        elif stage == "tree":
            state.start_tree(_field(msg, "group", int))
        elif stage == "level":
            state.apply(_field(msg, "splits", dict))
            build = np.asarray(_field(msg, "build", list), dtype=np.int64)
            hist = state.histograms(build)
            send_shares(transport, name, servers, pl["step"], hist.view(np.uint64))
        elif stage == "finish":
            state.apply(_field(msg, "splits", dict))
            state.add_leaves(np.asarray(_field(msg, "leaf_nodes", list), dtype=np.int64),
                             np.asarray(_field(msg, "leaf_values", list), dtype=np.float32))


# =========================================================================== server
def run_server(transport: Transport, name: str, *, parties: Sequence[str],
               coordinator: str = COORDINATOR, timeout: float | None = None) -> None:
    """A compute server: adds the shares of every party for each step; sees nothing else."""
    parties = list(parties)
    try:
        while True:
            acc, step, seen = None, None, set()
            while len(seen) < len(parties):
                try:
                    msg = transport.recv(name, ("share", "stop"), timeout=timeout)
                except PeerFailure as exc:
                    missing = [q for q in parties if q not in seen]
                    # a timeout names no one: blame the parties still owed; a lost
                    # connection names its peer, whatever its role
                    peer = ", ".join(missing) if exc.peer.startswith("peers of") else exc.peer
                    raise PeerFailure(peer, f"{name} got no share ({exc.reason})") from None
                if msg.stage == "stop":
                    return
                if msg.src not in parties or msg.src in seen:
                    raise ProtocolError(f"{name}: unexpected share from {msg.src}")
                if step is None:
                    step = _field(msg, "step", int)
                elif msg.payload.get("step") != step:
                    raise ProtocolError(f"{name}: share for step {msg.payload.get('step')} "
                                        f"from {msg.src} while summing step {step}")
                n = _field(msg, "n", int)
                if "seed" in msg.payload:
                    part = Randomness(_field(msg, "seed", bytes)).words(n)
                else:
                    part = _field(msg, "data", np.ndarray).astype(np.uint64, copy=False)
                    if part.size != n:
                        raise ProtocolError(f"{name}: share of {part.size} words, announced {n}")
                acc = part.copy() if acc is None else acc + part
                seen.add(msg.src)
            transport.send(name, coordinator, "sum", {"step": step, "data": acc})
    except PeerFailure as exc:
        transport.send(name, coordinator, "abort", {"peer": exc.peer, "reason": exc.reason})
        raise
    except Exception as exc:
        transport.send(name, coordinator, "abort", {"peer": name, "reason": f"{type(exc).__name__}: {exc}"})
        raise


# ====================================================================== coordinator
class _Coordinator:
    def __init__(self, transport, p: TrainParams, parties, servers, timeout):
        self.t, self.p = transport, p
        self.parties, self.servers = list(parties), list(servers)
        self.timeout = timeout
        self.step = 0
        self.enc = FixedPointEncoder(p.fixed_point_bits)

    def broadcast(self, stage: str, payload: dict[str, Any], to=None) -> None:
        for q in (self.parties if to is None else to):
            self.t.send(COORDINATOR, q, stage, payload)

    def request(self, stage: str, payload: dict[str, Any]) -> np.ndarray:
        """Ask every party for shares of a vector and open only the sum over parties."""
        self.step += 1
        self.broadcast(stage, {**payload, "step": self.step})
        total, seen = None, set()
        while len(seen) < len(self.servers):
            try:
                msg = self.t.recv(COORDINATOR, "sum", timeout=self.timeout)
            except PeerFailure as exc:
                if exc.peer.startswith("peers of"):
                    missing = [s for s in self.servers if s not in seen]
                    raise PeerFailure(", ".join(missing), f"no sum within the timeout ({exc.reason})") from None
                raise
            if msg.src not in self.servers or msg.src in seen or msg.payload.get("step") != self.step:
                raise ProtocolError(f"coordinator: unexpected sum from {msg.src} "
                                    f"for step {msg.payload.get('step')}, expected step {self.step}")
            data = _field(msg, "data", np.ndarray).astype(np.uint64, copy=False)
            total = data.copy() if total is None else total + data
            seen.add(msg.src)
        return total

    def agree_bins(self, n_features: int):
        grids = binning.start_grids(n_features)
        stats_enc = FixedPointEncoder(STATS_BITS)
        while not all(g.done for g in grids):
            level = min(g.level for g in grids if not g.done) + 1
            active = [g.active if not g.done else np.zeros(0, np.uint32) for g in grids]
            counts = stats_enc.decode(self.request("bins", {"level": level, "active": active}))
            binning.refine(grids, np.rint(counts), self.p.max_bin)
        cuts, mins = binning.cuts_from_grids(grids, self.p.max_bin)
        self.broadcast("cuts", {"cuts": cuts})
        return cuts, mins

    def intercept(self) -> tuple[float, ...]:
        if self.p.base_score is not None:
            return (self.p.base_score,)
        totals = FixedPointEncoder(STATS_BITS).decode(self.request("intercept", {}))
        return intercept_from_stats(self.p.objective, totals)

    def build_tree(self, rnd: int, group: int, cut_ptr, cuts_flat, mins) -> Tree:
        p = self.p
        self.broadcast("tree", {"round": rnd, "group": group})
        n_total = int(cut_ptr[-1])
        hists: dict[int, np.ndarray] = {}
        depth = {0: 0}
        stats: dict[int, tuple[float, float]] = {}
        splits: dict[int, tuple[Split, int, int]] = {}
        frontier, build, pending = [0], [0], _no_splits()
        next_id = 1
        while True:
            opened = self.request("level", {"splits": pending, "build": build})
            opened = opened.view(np.int64).reshape(len(build), n_total + 1, 2)
            for node, h in zip(build, opened):
                hists[node] = h
            for node in frontier:  # siblings by subtraction, exact in the ring
                if node not in hists:
                    parent, sibling = parent_and_sibling(node, splits)
                    hists[node] = hists[parent] - hists[sibling]
            for node in list(hists):
                if node not in frontier:  # parents are no longer needed
                    del hists[node]
            for node in frontier:
                h = hists[node]
                stats[node] = (h[n_total, 0] / self.enc.scale, h[n_total, 1] / self.enc.scale)
            new = {}
            open_nodes = [node for node in frontier if depth[node] < p.max_depth]
            found = find_splits(np.stack([hists[n] for n in open_nodes]), self.enc.scale,
                                cut_ptr, cuts_flat, mins, p) if open_nodes else []
            for node, s in zip(open_nodes, found):
                if s is not None:
                    new[node] = (s, next_id, next_id + 1)
                    depth[next_id] = depth[next_id + 1] = depth[node] + 1
                    stats[next_id], stats[next_id + 1] = s.left, s.right
                    next_id += 2
            splits.update(new)
            pending = _splits_payload(new, cut_ptr)
            frontier = [c for _, (s, l, r) in new.items() for c in (l, r)]
            if not new or depth[frontier[0]] >= p.max_depth:
                break
            build = [l if splits[n][0].left[1] <= splits[n][0].right[1] else r
                     for n, (s, l, r) in new.items()]
        leaves = sorted(set(range(next_id)) - set(splits))
        values = [leaf_value(*stats[n], p) for n in leaves]
        self.broadcast("finish", {"splits": pending, "leaf_nodes": leaves, "leaf_values": values})
        thresholds = {node: s.threshold for node, (s, _, _) in splits.items()}
        return make_tree(next_id, splits, thresholds, leaves, values, stats, p)


def _no_splits() -> dict[str, list]:
    return {"node": [], "feature": [], "bin": [], "default_left": [], "left": [], "right": []}


def _splits_payload(new: dict[int, tuple[Split, int, int]], cut_ptr) -> dict[str, list]:
    out = _no_splits()
    for node, (s, l, r) in new.items():
        out["node"].append(node)
        out["feature"].append(s.feature)
        out["bin"].append(s.bin)
        out["default_left"].append(s.default_left)
        out["left"].append(l)
        out["right"].append(r)
    return out


def run_coordinator(transport: Transport, params: dict[str, Any], num_boost_round: int, *,
                    parties: Sequence[str], servers: Sequence[str], progress=None,
                    timeout: float | None = None, feature_names=None) -> Ensemble:
    """Drive the training; learns only aggregate histograms; returns the model."""
    p = TrainParams.from_dict(params)
    if isinstance(num_boost_round, bool) or not isinstance(num_boost_round, int) or num_boost_round < 0:
        raise ParameterError.bad("num_boost_round", "an int >= 0", num_boost_round)
    c = _Coordinator(transport, p, parties, servers, None if timeout is None else timeout * 1.5 + 5)
    everyone = list(parties) + list(servers)
    try:
        c.broadcast("config", {"params": p.to_dict(), "n_parties": len(parties), "servers": list(servers)})
        n_features, seen = set(), set()
        while len(seen) < len(parties):
            msg = transport.recv(COORDINATOR, "hello", timeout=c.timeout)
            if msg.src not in parties or msg.src in seen:
                raise ProtocolError(f"coordinator: unexpected hello from {msg.src}")
            seen.add(msg.src)
            n_features.add(_field(msg, "n_features", int))
        if len(n_features) != 1:
            raise ParameterError(f"parties: every party needs the same number of feature columns, "
                                 f"got {sorted(n_features)}")
        n_feat = n_features.pop()
        cuts, mins = c.agree_bins(n_feat)
        cut_ptr = np.concatenate([[0], np.cumsum([len(x) for x in cuts])]).astype(np.int64)
        cuts_flat = np.concatenate(cuts) if cuts else np.zeros(0, np.float32)
        base_score = c.intercept()
        ens_probe = Ensemble(p.objective, n_feat, (), (), base_score, p.num_class if p.n_groups > 1 else 0)
        c.broadcast("base", {"base_margin": [float(v) for v in ens_probe.base_margin()]})
        trees, info = [], []
        if progress is not None:
            progress.start(num_boost_round)
        started = time.monotonic()
        for rnd in range(num_boost_round):
            for group in range(p.n_groups):
                trees.append(c.build_tree(rnd, group, cut_ptr, cuts_flat, mins))
                info.append(group)
            if progress is not None:
                progress.update(rnd, {"elapsed": time.monotonic() - started,
                                      "bytes": transport.total_bytes})
        c.broadcast("stop", {}, to=everyone)
    except BaseException:
        abort_all(transport, COORDINATOR, everyone)
        raise
    finally:
        if progress is not None:
            progress.close()
    return assemble(p, n_feat, trees, info, base_score, feature_names)
