"""Vertical secure training: the label holder, feature holder and dealer roles.

Parties hold column blocks of the same (PSI-aligned) rows.  The label holder LH has y
and drives the protocol, like SecureBoost's active party; feature holders FH_j hold
columns only; the dealer D (played by server-0) hands out correlated randomness and
sees no data.  Each role is a function that talks only through a `Transport`.

Stages (LH = label holder, FH = feature holder, D = dealer):

    LH->FH vconfig    parameters and the number of rows
    FH->LH vhello     number of rows, bins per feature (and feature names, if any)
    LH->D  dconfig    number of rows, max_bin, max_depth, number of trees, the FHs and
                      their feature counts
    D->LH  dkeys      one 32-byte key per FH (seeds LH's side of every correlation)
    D->FH  dkey       a 32-byte key (seeds FH's permutations)
    LH->FH vtree      a new tree starts: every row goes back to the root
    LH->D  dlevel     correlations for (tree, level), please
    D->FH  corr       delta vectors of the two gathers, for as many features as
                      fit in 24 MB (the dealer prepares the next level, of this
                      tree or the next; the schedule is public)
    LH->FH vlevel     last level's partition (node, children, left bits), nodes to
                      build, and z = (g, h) - a of the built rows
    FH->LH vperm      one per feature: k1, the gather positions of FH's (node, bin) order
    LH->FH vsel       for every feature: z2 = LH's prefix share at block ends - a2
                      (one message, sent when FH's last vperm is answered)
    FH->LH vsum       for every feature: k2 and FH's prefix sums at segment ends (masked)
    LH->FH vsplit     split these nodes on your feature f at local bin b
    FH->LH vsplit_ok  left bits of those nodes' rows and the float32 thresholds
    LH->D  stop       then D->LH dbye (D sent everything), then LH->FH stop
    any    abort

What each role learns is listed in docs/vertical.md: LH opens per-(node, bin) sums of
g and h of FH features (SecureBoost's leakage); FH receives only uniformly random ring
words (z, z2, delta) and the partitions of split nodes; D receives only the public
schedule (number of rows, features, trees, levels).
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError, PeerFailure, ProtocolError
from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.memory import keep_freed_memory
from ppxgb.model import Ensemble, Tree, as_float32_matrix
from ppxgb.transport import Blank, Message, Transport, draft_message

from numba import njit

from . import binning
from . import permute as pm
from ppxgb.crypto import prf
from .common import abort_all, assemble, make_tree, parent_and_sibling
from .objectives import check_labels, gradients, intercept_from_stats, intercept_stats
from .params import TrainParams
from .split import Split, find_split, leaf_value

DEALER = "server-0"
_AHEAD = 1      # levels of the public schedule the dealer prepares beyond the one asked for
_LH_STAGES = ("vhello", "dkeys", "vperm", "vsum", "vsplit_ok", "dbye")
_FH_STAGES = ("vconfig", "dkey", "vtree", "corr", "vlevel", "vsel", "vsplit", "stop")
_D_STAGES = ("dconfig", "dlevel", "stop")


def role_names(n_parties: int, label_party: int, n_servers: int) -> tuple[list[str], str, str]:
    """Party names in party order, the label holder's name, and the dealer's name."""
    if not isinstance(n_servers, int) or isinstance(n_servers, bool) or not 1 <= n_servers <= 4:
        raise ParameterError.bad("n_servers", "an int in [1, 4] (server-0 acts as the dealer)", n_servers)
    if not isinstance(n_parties, int) or n_parties < 2:
        raise ParameterError.bad("parties", "at least two column blocks", n_parties)
    if isinstance(label_party, bool) or not isinstance(label_party, int) or not 0 <= label_party < n_parties:
        raise ParameterError.bad("label_party", f"an int in [0, {n_parties})", label_party)
    names = [f"party-{i}" for i in range(n_parties)]
    return names, names[label_party], DEALER


def _field(msg: Message, key: str, kind):
    value = msg.payload.get(key)
    if not isinstance(value, kind):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"{kind}, got {type(value).__name__}")
    return value


def _array(msg: Message, key: str, dtype, shape=None) -> np.ndarray:
    value = _field(msg, key, np.ndarray)
    if value.dtype.kind != np.dtype(dtype).kind:
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"{np.dtype(dtype)}, got {value.dtype}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should have "
                            f"shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def _arrays(msg: Message, key: str, n: int) -> list[np.ndarray]:
    value = _field(msg, key, list)
    if len(value) != n or not all(isinstance(v, np.ndarray) for v in value):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"a list of {n} arrays")
    return value


class _Mailbox:
    """Messages for one role, taken by (stage, sender) whatever order they arrive in
    (the dealer and the label holder write to a feature holder independently)."""

    def __init__(self, transport: Transport, me: str, stages: tuple[str, ...], timeout):
        self.t, self.me, self.stages, self.timeout = transport, me, stages, timeout
        self.pending: list[Message] = []

    def get(self, stage: str | tuple[str, ...], src: str | None = None) -> Message:
        stages = (stage,) if isinstance(stage, str) else stage
        for i, msg in enumerate(self.pending):
            if msg.stage in stages and (src is None or msg.src == src):
                return self.pending.pop(i)
        while True:
            msg = self.t.recv(self.me, self.stages, timeout=self.timeout)
            if msg.stage in stages and (src is None or msg.src == src):
                return msg
            if msg.stage == "stop":
                raise ProtocolError(f"{self.me}: stop from {msg.src} while waiting for {stage!r}")
            self.pending.append(msg)


def local_cuts(X: np.ndarray, max_bin: int, threads: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """XGBoost-compatible cuts of columns held in full by one party (no secure step):
    the same grid refinement horizontal training runs on opened sums."""
    X = np.asfortranarray(X)      # the counting kernel streams columns
    grids = binning.start_grids(X.shape[1])
    while not all(g.done for g in grids):
        level = min(g.level for g in grids if not g.done) + 1
        active = [g.active if not g.done else np.zeros(0, np.uint32) for g in grids]
        binning.refine(grids, binning.party_cell_counts(X, level, active, threads), max_bin)
    return binning.cuts_from_grids(grids, max_bin)


def _slots(positions: np.ndarray, build: Sequence[int]) -> np.ndarray:
    slot = np.full(int(max(max(build), int(positions.max()))) + 1, -1, dtype=np.int64)
    slot[np.asarray(build, dtype=np.int64)] = np.arange(len(build))
    return slot[positions]


def _apply_partition(positions: np.ndarray, nodes, left, right, bits: np.ndarray) -> None:
    """Move the rows of split nodes to their children (in place); bits are the rows'
    left bits, packed as sent (np.packbits)."""
    if len(nodes) == 0:
        return
    size = int(max(nodes)) + 1
    to_left = np.full(size, -1, np.int64)
    to_right = np.full(size, -1, np.int64)
    to_left[np.asarray(nodes)] = left
    to_right[np.asarray(nodes)] = right
    _move_rows(positions, to_left, to_right, _packed_bits(bits, positions.shape[0]))


@njit(cache=True, inline="always")
def _left_bit(bits, r):
    """Bit r of left bits packed as np.packbits does (most significant bit first)."""
    return (bits[r >> 3] >> (7 - (r & 7))) & 1


@njit(cache=True, nogil=True)
def _move_rows(positions, to_left, to_right, bits):
    for r in range(positions.shape[0]):
        node = positions[r]
        if node < to_left.shape[0] and to_left[node] >= 0:
            positions[r] = to_left[node] if _left_bit(bits, r) else to_right[node]


def _missing(bins: np.ndarray) -> int:
    """The missing-value code of a bin array (its dtype's maximum, as binning assigns)."""
    return int(np.iinfo(bins.dtype).max)


@njit(cache=True, nogil=True)
def _goleft_rows(positions, node_feature, node_bin, node_default_left, bins, missing, goleft):
    """goleft[r] for the rows of nodes split on a local feature: node_feature[node] is
    the column of bins (>= 0) or -1 for nodes left alone; bins is (row, feature)."""
    for r in range(positions.shape[0]):
        node = positions[r]
        if node < node_feature.shape[0]:
            f = node_feature[node]
            if f >= 0:
                b = bins[r, f]
                goleft[r] = node_default_left[node] if b == missing else np.int64(b) <= node_bin[node]
    return goleft


def _split_rows(positions: np.ndarray, bins: np.ndarray, splits, goleft: np.ndarray) -> np.ndarray:
    """Set goleft for the rows of each (node, feature, bin, default_left) in splits, in one
    pass over the rows; bins is (row, feature) (a transposed view is fine)."""
    size = max((node for node, _, _, _ in splits), default=-1) + 1
    feature = np.full(size, -1, np.int64)
    split_bin = np.zeros(size, np.int64)
    default_left = np.zeros(size, np.bool_)
    for node, f, b, dl in splits:
        feature[node], split_bin[node], default_left[node] = f, b, dl
    return _goleft_rows(positions, feature, split_bin, default_left, bins, _missing(bins), goleft)


@njit(cache=True, nogil=True)
def _own_hist(bins, missing, offsets, g, h, rows, slot, n_slots, n_bins_total):
    out = np.zeros((n_slots, n_bins_total + 1, 2), dtype=np.int64)
    for i in range(rows.shape[0]):
        r, s = rows[i], slot[i]
        out[s, n_bins_total, 0] += g[r]
        out[s, n_bins_total, 1] += h[r]
        for f in range(bins.shape[1]):
            b = bins[r, f]
            if b != missing:
                out[s, offsets[f] + b, 0] += g[r]
                out[s, offsets[f] + b, 1] += h[r]
    return out


def _own_histograms(bins, offsets, g, h, rows, slot, n_slots, n_bins_total) -> np.ndarray:
    """LH's plain fixed-point histograms of its own features (last row: node totals)."""
    return _own_hist(bins, _missing(bins), offsets, np.ascontiguousarray(g), np.ascontiguousarray(h),
                     rows.astype(np.int64), slot.astype(np.int64), n_slots, n_bins_total)


@njit(cache=True, nogil=True)
def _take_bits(positions, owned, bits, goleft):
    """goleft[r] = bit r of the packed (np.packbits order) bits, for rows of owned nodes."""
    for r in range(positions.shape[0]):
        node = positions[r]
        if node < owned.shape[0] and owned[node]:
            goleft[r] = _left_bit(bits, r)


def _packed_bits(bits: np.ndarray, n: int) -> np.ndarray:
    """Left bits of n rows as sent (np.packbits), after checking their size and type."""
    if bits.dtype != np.uint8 or bits.shape != ((n + 7) // 8,):
        raise ProtocolError(f"left bits: expected {(n + 7) // 8} bytes, got {bits.size} of {bits.dtype}")
    return bits


# =================================================================== feature holder
def run_feature_holder(transport: Transport, name: str, X, *, label_holder: str,
                       dealer: str = DEALER, feature_names: Sequence[str] | None = None,
                       timeout: float | None = None) -> None:
    """A party with feature columns only: answers LH's requests; never sees g or h."""
    keep_freed_memory()
    box = _Mailbox(transport, name, _FH_STAGES, timeout)
    try:
        _feature_holder(box, transport, name, X, label_holder, dealer, feature_names)
    except PeerFailure:
        raise
    except BaseException as exc:
        transport.send(name, label_holder, "abort", {"peer": name, "reason": f"{type(exc).__name__}: {exc}"})
        raise


def _feature_holder(box: _Mailbox, t: Transport, name: str, X, lh: str, dealer: str, feature_names) -> None:
    X = as_float32_matrix(X, name=f"{name} X", order="F")
    n, n_feat = X.shape
    msg = box.get("vconfig", lh)
    p = TrainParams.from_dict(_field(msg, "params", dict))
    if _field(msg, "n_rows", int) != n:
        raise ParameterError.bad(f"{name} X", f"{msg.payload['n_rows']} rows aligned with the label holder", n)
    cuts, mins = local_cuts(X, p.max_bin, p.nthread)
    n_bins = np.array([len(c) for c in cuts], dtype=np.int64)
    bins_t = np.ascontiguousarray(binning.assign_bins(X, cuts, p.nthread).T)      # (feature, row)
    t.send(name, lh, "vhello", {"n_rows": n, "n_bins": [int(b) for b in n_bins],
                                "names": list(map(str, feature_names)) if feature_names is not None else None})
    key = _field(box.get("dkey", dealer), "key", bytes)
    positions = np.zeros(n, dtype=np.int64)
    scratch = np.empty(pm.largest_correlation(n, p.max_depth, p.max_bin), np.int32)      # holds sigma
    tree = -1
    while True:
        msg = box.get(("vtree", "vlevel", "vsplit", "stop"), lh)
        if msg.stage == "stop":
            return
        if msg.stage == "vtree":
            tree = _field(msg, "tree", int)
            positions[:] = 0
        elif msg.stage == "vlevel":
            _fh_level(box, t, name, lh, dealer, msg, key, tree, positions, bins_t, n_bins, p.max_bin, scratch)
        elif msg.stage == "vsplit":
            nodes = _field(msg, "node", list)
            feats, split_bins = _field(msg, "feature", list), _field(msg, "bin", list)
            dls = _field(msg, "default_left", list)
            thresholds = []
            for node, f, b in zip(nodes, feats, split_bins):
                if not (isinstance(f, int) and 0 <= f < n_feat and isinstance(b, int) and -1 <= b < n_bins[f]
                        and isinstance(node, int) and 0 <= node < 2 ** (p.max_depth + 1)):
                    raise ProtocolError(f"{name}: vsplit names node {node!r} feature {f!r} bin {b!r}")
                thresholds.append(float(cuts[f][b]) if b >= 0 else float(mins[f]))
            goleft = _split_rows(positions, bins_t.T, list(zip(nodes, feats, split_bins, map(bool, dls))),
                                 np.zeros(n, dtype=bool))
            t.send(name, lh, "vsplit_ok", {"goleft": np.packbits(goleft), "threshold": thresholds})


def _fh_level(box, t, name, lh, dealer, msg, key, tree, positions, bins_t, n_bins, max_bin, scratch) -> None:
    n = positions.shape[0]
    level = _field(msg, "level", int)
    if _field(msg, "tree", int) != tree:
        raise ProtocolError(f"{name}: vlevel for tree {msg.payload['tree']} during tree {tree}")
    split = _field(msg, "splits", dict)
    if split.get("node"):
        _apply_partition(positions, split["node"], split["left"], split["right"], _array(msg, "goleft", np.uint8))
    build = [int(b) for b in _field(msg, "build", list)]
    slot_of_row = _slots(positions, build)
    rows = np.flatnonzero(slot_of_row >= 0)
    slot = slot_of_row[rows]
    m, n_feat = len(rows), bins_t.shape[0]
    N = pm.correlation_size(n, level, max_bin)
    beta = pm.block_size(n, level, max_bin)
    z = _array(msg, "z", np.uint64)
    span = pm.layout_length(m, len(build) * (int(n_bins.max(initial=0)) + 1), beta)
    if z.shape != (span, pm.WIDTH) or span > N:
        raise ProtocolError(f"{name}: z of shape {z.shape}, expected ({span}, {pm.WIDTH}) <= {N} rows")
    lengths, kept = [], []
    group = corr_group(N, N // beta, n_feat)
    for f in range(n_feat):
        if f % group == 0:                       # the next correlation message
            corr = box.get("corr", dealer)
            while _tag(corr) < (tree, level):   # prepared for a level the tree did not reach
                corr = box.get("corr", dealer)
            if (corr.payload.get("tree"), corr.payload.get("level"), corr.payload.get("f")) != (tree, level, f):
                raise ProtocolError(f"{name}: correlation for {corr.payload.get('tree')}/"
                                    f"{corr.payload.get('level')}/{corr.payload.get('f')}, expected {tree}/{level}/{f}")
            count = min(group, n_feat - f)
            d1s = _array(corr, "d1", np.uint64, (count, N, pm.WIDTH))
            d2s = _array(corr, "d2", np.uint64, (count, N // beta, pm.WIDTH))
        d1, d2 = d1s[f % group], d2s[f % group]
        s1, s2 = pm.stream_keys(key, tree, level, f, names=("s1", "s2"))   # the dealer's permutations
        length = pm.layout_length(m, len(build) * (int(n_bins[f]) + 1), beta)
        # one message per feature, so LH works on this one while FH does the next; k is
        # written straight into it
        out = draft_message(name, lh, "vperm", {"tree": tree, "level": level, "f": f,
                                                "k": Blank((length,), np.uint32)})
        _, w_ends, last = pm.fh_gather_shuffled(z, d1, s1, N, slot, bins_t[f, rows],
                                                len(build), int(n_bins[f]), beta, scratch, out.arrays["k"])
        t.send_draft(out)
        lengths.append(length)
        kept.append(((last + 1) // beta - 1, w_ends, d2, s2))
    k2s, sums = [], []
    sel = box.get("vsel", lh)
    if _tag(sel) != (tree, level):
        raise ProtocolError(f"{name}: vsel for {sel.payload.get('tree')}/{sel.payload.get('level')}, "
                            f"expected {tree}/{level}")
    for f, ((ends, w_ends, d2, s2), z2) in enumerate(zip(kept, _arrays(sel, "z2", n_feat))):
        blocks = lengths[f] // beta
        if z2.shape != (blocks, pm.WIDTH) or z2.dtype != np.uint64:
            raise ProtocolError(f"{name}: vsel z2[{f}] of shape {z2.shape} ({z2.dtype}), "
                                f"expected ({blocks}, {pm.WIDTH}) uint64")
        sigma2 = pm.permutation_of(s2, n=N // beta, first=blocks)
        k2, part = pm.gather_fh(z2, ends, sigma2, d2)
        k2s.append(k2.astype(np.uint32))
        sums.append(w_ends + part)
    t.send(name, lh, "vsum", {"tree": tree, "level": level, "k2": k2s, "s": sums})


_CORR_BYTES = 24 << 20


def corr_group(N: int, N2: int, n_feat: int) -> int:
    """Features per correlation message: as many as fit in 24 MB (at least one).  Fewer
    messages cost less interpreter time; below glibc's largest mmap threshold (32 MB)
    freed messages are reused instead of mapped and faulted in afresh.  Public sizes
    only, so FH computes the same grouping."""
    return max(1, min(n_feat, _CORR_BYTES // max(1, (N + N2) * pm.WIDTH * 8)))


def _tag(msg: Message) -> tuple[int, int]:
    tree, level = msg.payload.get("tree"), msg.payload.get("level")
    if not isinstance(tree, int) or not isinstance(level, int):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: tree and level should be ints")
    return tree, level


# =========================================================================== dealer
def run_dealer(transport: Transport, name: str = DEALER, *, label_holder: str,
               timeout: float | None = None) -> None:
    """Hands out permutation correlations; receives only the public schedule."""
    keep_freed_memory()
    try:
        msg = transport.recv(name, _D_STAGES, label_holder, timeout=timeout)
        if msg.stage == "stop":
            transport.send(name, label_holder, "dbye", {})
            return
        if msg.stage != "dconfig":
            raise ProtocolError(f"{name}: expected dconfig, got {msg.stage!r}")
        n = _field(msg, "n_rows", int)
        max_bin = _field(msg, "max_bin", int)
        max_depth = _field(msg, "max_depth", int)
        n_trees = _field(msg, "n_trees", int)
        fhs = [str(f) for f in _field(msg, "fhs", list)]
        n_features = [int(f) for f in _field(msg, "n_features", list)]
        keys_l = {fh: os.urandom(32) for fh in fhs}
        keys_f = {fh: os.urandom(32) for fh in fhs}
        transport.send(name, label_holder, "dkeys", {"keys": keys_l})
        for fh in fhs:
            transport.send(name, fh, "dkey", {"key": keys_f[fh]})
        sent: set[tuple[int, int]] = set()
        scratch = np.empty(pm.largest_correlation(n, max_depth, max_bin), np.int32)      # holds sigma

        def produce(tree: int, level: int) -> None:
            if (tree, level) in sent:
                return
            sent.add((tree, level))
            N = pm.correlation_size(n, level, max_bin)
            N2 = N // pm.block_size(n, level, max_bin)        # gather 2 works on blocks
            for fh, n_feat in zip(fhs, n_features):
                kl, kf = keys_l[fh], keys_f[fh]
                a = pm.stream(kl, tree, level, "a", rows=N)
                group = corr_group(N, N2, n_feat)
                for f0 in range(0, n_feat, group):
                    count = min(group, n_feat - f0)
                    # sigma, c and the deltas are made in one kernel each, straight into the message
                    msg = draft_message(name, fh, "corr", {"tree": tree, "level": level, "f": f0,
                                                           "d1": Blank((count, N, pm.WIDTH), np.uint64),
                                                           "d2": Blank((count, N2, pm.WIDTH), np.uint64)})
                    for i in range(count):
                        c1, c2, a2 = pm.stream_keys(kl, tree, level, f0 + i, names=("c1", "c2", "a2"))
                        s1, s2 = pm.stream_keys(kf, tree, level, f0 + i, names=("s1", "s2"))
                        pm.shuffled_delta(c_key=c1, sigma_key=s1, n=N, a=a, out=msg.arrays["d1"][i], scratch=scratch)
                        pm.shuffled_delta(c_key=c2, sigma_key=s2, n=N2, a_key=a2, out=msg.arrays["d2"][i],
                                          scratch=scratch)
                    transport.send_draft(msg)

        while True:
            msg = transport.recv(name, _D_STAGES, label_holder, timeout=timeout)
            if msg.stage == "stop":
                # every correlation (even one prepared ahead) is sent before this
                transport.send(name, label_holder, "dbye", {})
                return
            if msg.stage != "dlevel":
                raise ProtocolError(f"{name}: unexpected stage {msg.stage!r}")
            tree, level = _field(msg, "tree", int), _field(msg, "level", int)
            sent = {tl for tl in sent if tl[0] >= tree}
            produce(tree, level)
            # the schedule is public: prepare what comes next (the next level of this tree,
            # or the next tree's root) while the parties work; FHs drop the levels a tree
            # does not reach
            for _ in range(_AHEAD):
                tree, level = (tree, level + 1) if level + 1 < max_depth else (tree + 1, 0)
                if tree < n_trees:
                    produce(tree, level)
    except PeerFailure:
        raise
    except BaseException as exc:
        transport.send(name, label_holder, "abort", {"peer": name, "reason": f"{type(exc).__name__}: {exc}"})
        raise


# ===================================================================== label holder
class _LabelHolder:
    def __init__(self, t: Transport, me: str, p: TrainParams, X: np.ndarray, y: np.ndarray,
                 parties: list[str], dealer: str, timeout):
        self.t, self.me, self.p = t, me, p
        self.X, self.y = X, y
        self.parties, self.dealer = parties, dealer
        self.fhs = [q for q in parties if q != me]
        self.box = _Mailbox(t, me, _LH_STAGES, timeout)
        self.enc = FixedPointEncoder(p.fixed_point_bits)
        self.n = X.shape[0]

    # ---- setup
    def setup(self, own_names, n_trees: int):
        p, n = self.p, self.n
        for q in self.fhs:
            self.t.send(self.me, q, "vconfig", {"params": p.to_dict(), "n_rows": n})
        self.fh_bins: dict[str, np.ndarray] = {}
        names: dict[str, list[str] | None] = {self.me: own_names}
        for q in self.fhs:
            msg = self.box.get("vhello", q)
            if _field(msg, "n_rows", int) != n:
                raise ParameterError.bad(f"{q} X", f"{n} rows aligned with the label holder", msg.payload["n_rows"])
            self.fh_bins[q] = np.asarray(_field(msg, "n_bins", list), dtype=np.int64)
            names[q] = msg.payload.get("names")
        self.t.send(self.me, self.dealer, "dconfig", {
            "n_rows": n, "max_bin": p.max_bin, "max_depth": p.max_depth, "n_trees": n_trees, "fhs": self.fhs,
            "n_features": [len(self.fh_bins[q]) for q in self.fhs]})
        self.keys = _field(self.box.get("dkeys", self.dealer), "keys", dict)
        cuts, mins = local_cuts(self.X, p.max_bin, p.nthread)
        self.bins = binning.assign_bins(self.X, cuts, p.nthread)
        self.own_cuts, self.own_mins = cuts, mins
        # global feature layout, in party order
        sizes, cuts_flat, min_vals, self.owner = [], [], [], []
        for q in self.parties:
            if q == self.me:
                nb = np.array([len(c) for c in cuts], dtype=np.int64)
                cuts_flat += list(cuts)
                min_vals += list(mins)
            else:
                nb = self.fh_bins[q]
                cuts_flat += [np.zeros(b, np.float32) for b in nb]     # LH never sees them
                min_vals += [0.0] * len(nb)
            self.owner += [(q, f) for f in range(len(nb))]
            sizes += list(nb)
        self.n_feat = len(sizes)
        self.cut_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.cuts_flat = np.concatenate(cuts_flat).astype(np.float32) if cuts_flat else np.zeros(0, np.float32)
        self.min_vals = np.asarray(min_vals, dtype=np.float32)
        self.global_index = {own: i for i, own in enumerate(self.owner)}
        self.own_offsets = np.concatenate([[0], np.cumsum([len(c) for c in cuts])[:-1]]).astype(np.int64) \
            if cuts else np.zeros(0, np.int64)
        self.own_total = int(sum(len(c) for c in cuts))
        return _merge_names(self.parties, names)

    def encode_gradients(self, margin: np.ndarray) -> None:
        p = self.p
        g, h = gradients(p.objective, margin if p.n_groups > 1 else margin[:, 0], self.y)
        g, h = g.reshape(self.n, -1), h.reshape(self.n, -1)
        limit = self.enc.max_magnitude
        if self.n and (np.abs(g).sum(axis=0, dtype=np.float64).max() >= limit
                       or h.sum(axis=0, dtype=np.float64).max() >= limit):
            raise ParameterError(f"gradient sums exceed the fixed-point range ({limit:g} at "
                                 f"fixed_point_bits={p.fixed_point_bits}); scale the labels or lower fixed_point_bits")
        self.g_int = np.rint(g.astype(np.float64) * self.enc.scale).astype(np.int64)
        self.h_int = np.rint(h.astype(np.float64) * self.enc.scale).astype(np.int64)

    # ---- one level of histograms
    def histograms(self, tree: int, level: int, group: int, build: list[int], pending) -> np.ndarray:
        n, p = self.n, self.p
        slot_of_row = _slots(self.positions, build)
        rows = np.flatnonzero(slot_of_row >= 0)
        m, nb = len(rows), len(build)
        N = pm.correlation_size(n, level, p.max_bin)
        beta = pm.block_size(n, level, p.max_bin)
        self.t.send(self.me, self.dealer, "dlevel", {"tree": tree, "level": level})
        gh = np.stack([self.g_int[rows, group], self.h_int[rows, group]], axis=1).view(np.uint64)
        for q in self.fhs:
            key = self.keys[q]
            span = pm.layout_length(m, nb * (int(self.fh_bins[q].max(initial=0)) + 1), beta)
            msg = draft_message(self.me, q, "vlevel", {"tree": tree, "level": level, "splits": pending["splits"],
                                                       "goleft": pending["goleft"], "build": build,
                                                       "z": Blank((span, pm.WIDTH), np.uint64)})
            pm.masked(gh, key, tree, level, "a", rows=span, out=msg.arrays["z"])     # z = (g, h) - a
            self.t.send_draft(msg)
        own = _own_histograms(self.bins, self.own_offsets, self.g_int[:, group], self.h_int[:, group],
                              rows, slot_of_row[rows], nb, self.own_total)
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
            z2 = pm.lh_block_shares(c_key=c1, a2_key=a2, k=_array(msg, "k", np.uint32, (length,)), size=N, beta=beta)
            z2s[q].append(z2)
            if next_f[q] == len(self.fh_bins[q]):      # one message per FH: it needs them all before gather 2
                self.t.send(self.me, q, "vsel", {"tree": tree, "level": level, "z2": z2s[q]})
        for q in self.fhs:
            msg = self.box.get("vsum", q)
            nbins = self.fh_bins[q]
            k2s, sums = _arrays(msg, "k2", len(nbins)), _arrays(msg, "s", len(nbins))
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

    # ---- partition after splits
    def partition(self, new: dict[int, tuple[Split, int, int]]) -> tuple[dict, dict[int, float]]:
        n = self.n
        goleft = np.zeros(n, dtype=bool)
        thresholds: dict[int, float] = {}
        by_owner: dict[str, list[tuple[int, int, Split]]] = {}
        for node, (s, _, _) in new.items():
            q, f = self.owner[s.feature]
            by_owner.setdefault(q, []).append((node, f, s))
        for q, items in by_owner.items():
            if q == self.me:
                _split_rows(self.positions, self.bins, [(node, f, s.bin, bool(s.default_left)) for node, f, s in items],
                            goleft)
                for node, f, s in items:
                    thresholds[node] = float(self.own_cuts[f][s.bin]) if s.bin >= 0 else float(self.own_mins[f])
            else:
                self.t.send(self.me, q, "vsplit", {"node": [it[0] for it in items], "feature": [it[1] for it in items],
                                                   "bin": [it[2].bin for it in items],
                                                   "default_left": [bool(it[2].default_left) for it in items]})
        for q, items in by_owner.items():
            if q == self.me:
                continue
            msg = self.box.get("vsplit_ok", q)
            bits = _packed_bits(_array(msg, "goleft", np.uint8), n)
            thr = _field(msg, "threshold", list)
            if len(thr) != len(items):
                raise ProtocolError(f"{self.me}: {len(thr)} thresholds from {q}, expected {len(items)}")
            owned = np.zeros(max(it[0] for it in items) + 1, dtype=np.bool_)
            owned[[it[0] for it in items]] = True
            _take_bits(self.positions, owned, bits, goleft)
            for (node, _, _), v in zip(items, thr):
                thresholds[node] = float(np.float32(v))
        nodes = list(new)
        splits = {"node": nodes, "left": [new[k][1] for k in nodes], "right": [new[k][2] for k in nodes]}
        bits = np.packbits(goleft)
        _apply_partition(self.positions, nodes, splits["left"], splits["right"], bits)
        return {"splits": splits, "goleft": bits}, thresholds

    # ---- one tree, depth-wise with the subtraction trick
    def build_tree(self, tree: int, group: int) -> tuple[Tree, np.ndarray]:
        p = self.p
        for q in self.fhs:
            self.t.send(self.me, q, "vtree", {"tree": tree, "group": group})
        self.positions = np.zeros(self.n, dtype=np.int64)
        n_total = int(self.cut_ptr[-1])
        hists: dict[int, np.ndarray] = {}
        depth = {0: 0}
        stats: dict[int, tuple[float, float]] = {}
        splits: dict[int, tuple[Split, int, int]] = {}
        thresholds: dict[int, float] = {}
        frontier, build, level, next_id = [0], [0], 0, 1
        pending = {"splits": {"node": [], "left": [], "right": []}, "goleft": np.zeros(0, np.uint8)}
        while True:
            opened = self.histograms(tree, level, group, build, pending)
            for node, h in zip(build, opened):
                hists[node] = h
            for node in frontier:
                if node not in hists:
                    parent, sibling = parent_and_sibling(node, splits)
                    hists[node] = hists[parent] - hists[sibling]
            hists = {k: v for k, v in hists.items() if k in frontier}
            for node in frontier:
                h = hists[node]
                stats[node] = (h[n_total, 0] / self.enc.scale, h[n_total, 1] / self.enc.scale)
            new = {}
            for node in frontier:
                if depth[node] >= p.max_depth:
                    continue
                s = find_split(hists[node], self.enc.scale, self.cut_ptr, self.cuts_flat, self.min_vals, p)
                if s is not None:
                    new[node] = (s, next_id, next_id + 1)
                    depth[next_id] = depth[next_id + 1] = depth[node] + 1
                    stats[next_id], stats[next_id + 1] = s.left, s.right
                    next_id += 2
            if not new:
                break
            splits.update(new)
            pending, thr = self.partition(new)
            thresholds.update(thr)
            frontier = [c for _, l, r in new.values() for c in (l, r)]
            if depth[frontier[0]] >= p.max_depth:
                break
            counts = np.bincount(self.positions, minlength=next_id)
            build = [l if counts[l] <= counts[r] else r for _, l, r in new.values()]
            level += 1
        leaves = sorted(set(range(next_id)) - set(splits))
        values = [leaf_value(*stats[k], p) for k in leaves]
        leaf_of_node = np.zeros(next_id, dtype=np.float32)
        leaf_of_node[leaves] = values
        return make_tree(next_id, splits, thresholds, leaves, values, stats, p), leaf_of_node[self.positions]


def _merge_names(parties: list[str], names: dict[str, list[str] | None]) -> list[str] | None:
    if all(names[q] is None for q in parties):
        return None
    return [str(x) for q in parties for x in (names[q] or [])]




def run_label_holder(transport: Transport, name: str, X, y, params: dict[str, Any], num_boost_round: int, *,
                     parties: Sequence[str], dealer: str = DEALER, feature_names: Sequence[str] | None = None,
                     progress=None, timeout: float | None = None) -> Ensemble:
    """Drive vertical training; learns per-(node, bin) G/H of FH features; returns the model."""
    keep_freed_memory()
    p = TrainParams.from_dict(params)
    if isinstance(num_boost_round, bool) or not isinstance(num_boost_round, int) or num_boost_round < 0:
        raise ParameterError.bad("num_boost_round", "an int >= 0", num_boost_round)
    parties = list(parties)
    if name not in parties:
        raise ParameterError.bad("label holder", f"one of {parties}", name)
    X = as_float32_matrix(X, name=f"{name} X", order="F")
    y = check_labels(p.objective, y, p.num_class)
    if len(y) != X.shape[0]:
        raise ParameterError.bad("label", f"{X.shape[0]} labels (one per aligned row)", len(y))
    if X.shape[0] == 0:
        raise ParameterError.bad("parties", "at least one common row", 0)
    lh = _LabelHolder(transport, name, p, X, y, parties, dealer, timeout)
    everyone = lh.fhs + [dealer]
    try:
        names = lh.setup(list(map(str, feature_names)) if feature_names is not None else None,
                         num_boost_round * p.n_groups)
        if names is not None and len(set(names)) != len(names):
            raise ParameterError("parties: feature names must be unique across parties")
        base_score = (p.base_score,) if p.base_score is not None else \
            intercept_from_stats(p.objective, intercept_stats(p.objective, y, p.num_class))
        probe = Ensemble(p.objective, lh.n_feat, (), (), base_score, p.num_class if p.n_groups > 1 else 0)
        margin = np.tile(probe.base_margin().astype(np.float32), (lh.n, 1)).astype(np.float32)
        trees, info = [], []
        if progress is not None:
            progress.start(num_boost_round)
        started = time.monotonic()
        for rnd in range(num_boost_round):
            lh.encode_gradients(margin)
            for group in range(p.n_groups):
                tree, delta = lh.build_tree(len(trees), group)
                margin[:, group] += delta
                trees.append(tree)
                info.append(group)
            if progress is not None:
                progress.update(rnd, {"elapsed": time.monotonic() - started, "bytes": transport.total_bytes})
        transport.send(name, dealer, "stop", {})
        lh.box.get("dbye", dealer)          # the dealer has sent everything it prepared
        for q in lh.fhs:
            transport.send(name, q, "stop", {})
    except BaseException:
        abort_all(transport, name, everyone)
        raise
    finally:
        if progress is not None:
            progress.close()
    return assemble(p, lh.n_feat, trees, info, base_score, names)
