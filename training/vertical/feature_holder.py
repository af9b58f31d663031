"""A vertical feature holder: columns only; it never sees a gradient or a label.

It answers the label holder's level requests with the first gather of the permutation
protocol (k1 positions, from its sort-by-(node, bin) order hidden under the dealer's
permutation) and the masked segment sums of the second, and computes the left bits of
the splits on its own features.  Everything it receives is uniformly random ring words
(z, z2, delta), the left bits of split nodes, and which of its features and bins split.
Under dp_split="random" no level request comes: it receives only the splits on its
features (drawn from the seed) and answers each with the left bit of every row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ppxgb.errors import ParameterError, PeerFailure, ProtocolError
from ppxgb.memory import keep_freed_memory
from ppxgb.transport import Blank, Transport, draft_message

from .. import binning, categorical
from .. import dp
from ..messages import array, arrays, field, report_failure
from ..params import TrainParams
from ..split import CATEGORY_THRESHOLD
from . import permute as pm
from .rows import apply_partition, local_cuts, slots_of, split_rows
from .stages import DEALER, FH_STAGES, Mailbox, corr_group, tag
from .validation import FeatureHolderEvals


def run_feature_holder(transport: Transport, name: str, X, *, label_holder: str,
                       dealer: str = DEALER, feature_names: Sequence[str] | None = None,
                       timeout: float | None = None, feature_types=None, evals=None) -> None:
    """A party with feature columns only: answers LH's requests; never sees g or h.
    feature_types: 'c' marks its integer-coded categorical columns."""
    keep_freed_memory()
    box = Mailbox(transport, name, FH_STAGES, timeout)
    try:
        _feature_holder(box, transport, name, X, label_holder, dealer, feature_names, feature_types, evals=evals)
    except PeerFailure:
        raise
    except BaseException as exc:
        report_failure(transport, name, label_holder, exc)
        raise


def _feature_holder(box: Mailbox, t: Transport, name: str, X, lh: str, dealer: str, feature_names,
                    feature_types=None, evals=None) -> None:
    frame = X if hasattr(X, "columns") else None
    X, kinds, raw = categorical.split_columns(X, feature_types, f"{name} X")
    cat_cuts, lists = categorical.code_own_columns(X, kinds, raw, frame)
    n, n_feat = X.shape
    msg = box.get("vconfig", lh)
    p = TrainParams.from_dict(field(msg, "params", dict))
    # under dp_epsilon every vsum carries this holder's noise (training/dp.py)
    dpa = dp.accountant_for(p, msg.payload.get("n_trees"), n_feat, name, vertical=True)
    # dp_split="random": no histogram request comes but the selection's (dp_select_features:
    # one, at the root of tree 0); positions stay at the root (all rows)
    random_splits = dpa is not None and p.dp_split == "random"
    t = dp.NoisyHistograms(t, dpa, select=random_splits) if dpa is not None else t
    selection = 1 if random_splits and p.dp_select_features else 0     # level requests still allowed
    if field(msg, "n_rows", int) != n:
        raise ParameterError.bad(f"{name} X", f"{msg.payload['n_rows']} rows aligned with the label holder", n)
    cuts, mins = local_cuts(X, p.max_bin, p.nthread)
    for f, c in cat_cuts.items():
        if len(c) > p.max_bin:      # the permutation protocol's correlations hold max_bin bins a feature
            column = feature_names[f] if feature_names is not None else f"column {f}"
            raise ParameterError.bad("max_bin", f"at least the {len(c)} categories of {name}'s categorical "
                                     f"{column} in vertical training", p.max_bin)
        cuts[f], mins[f] = c, np.float32(-1.0)
    n_bins = np.array([len(c) for c in cuts], dtype=np.int64)
    val = FeatureHolderEvals(name, evals, msg.payload.get("evals", []), n_feat)    # validation columns
    val.set_cuts(cuts, p.nthread)
    bins_t = np.ascontiguousarray(binning.assign_bins(X, cuts, p.nthread).T)      # (feature, row)
    t.send(name, lh, "vhello", {"n_rows": n, "n_bins": [int(b) for b in n_bins], "kinds": kinds,
                                "categories": [list(c) if c is not None else None for c in lists],
                                "names": list(map(str, feature_names)) if feature_names is not None else None})
    key = field(box.get("dkey", dealer), "key", bytes)
    positions = np.zeros(n, dtype=np.int64)
    scratch = np.empty(pm.largest_correlation(n, pm.shape_levels(p.max_builds, p.lossguide), p.max_bin), np.int32)      # holds sigma
    tree = -1
    while True:
        msg = box.get(("vtree", "vlevel", "vsplit", "veval", "stop"), lh)
        if msg.stage == "stop":
            return
        if msg.stage == "veval":
            val.answer(t, name, lh, msg, tree, n_bins, p.max_nodes)
            continue
        if msg.stage == "vtree":
            tree = field(msg, "tree", int)
            positions[:] = 0
            val.start_tree()
        elif msg.stage == "vlevel":
            if random_splits and (not selection or tree != 0 or field(msg, "build", list) != [0]):
                raise ProtocolError(f"{name}: vlevel under dp_split='random' (no histogram is built but "
                                    f"one selection at the root of tree 0 under dp_select_features)")
            selection = 0
            _fh_level(box, t, name, lh, dealer, msg, key, tree, positions, bins_t, n_bins, p.max_bin, scratch,
                      p.lossguide)
        elif msg.stage == "vsplit":
            nodes = field(msg, "node", list)
            feats, split_bins = field(msg, "feature", list), field(msg, "bin", list)
            dls = field(msg, "default_left", list)
            sets = categorical.split_payload_categories(msg.payload)
            thresholds = []
            for node, f, b in zip(nodes, feats, split_bins):
                if not (isinstance(f, int) and 0 <= f < n_feat and isinstance(b, int) and -1 <= b < n_bins[f]
                        and isinstance(node, int) and 0 <= node < p.max_nodes):
                    raise ProtocolError(f"{name}: vsplit names node {node!r} feature {f!r} bin {b!r}")
                thresholds.append(CATEGORY_THRESHOLD if kinds[f] != categorical.NUMERIC
                                  else float(cuts[f][b]) if b >= 0 else float(mins[f]))
            items = list(zip(nodes, feats, split_bins, map(bool, dls), sets))
            if random_splits:       # no partition reaches this holder: each split's bits over every row
                bits = [np.packbits(split_rows(positions, bins_t.T, [(0, *it[1:])], np.zeros(n, dtype=bool)))
                        for it in items]
            else:
                bits = np.packbits(split_rows(positions, bins_t.T, items, np.zeros(n, dtype=bool)))
            t.send(name, lh, "vsplit_ok", {"goleft": bits, "threshold": thresholds})


def _fh_level(box, t, name, lh, dealer, msg, key, tree, positions, bins_t, n_bins, max_bin, scratch,
              lossguide: bool = False) -> None:
    n = positions.shape[0]
    level = field(msg, "level", int)
    if field(msg, "tree", int) != tree:
        raise ProtocolError(f"{name}: vlevel for tree {msg.payload['tree']} during tree {tree}")
    split = field(msg, "splits", dict)
    if split.get("node"):
        apply_partition(positions, split["node"], split["left"], split["right"], array(msg, "goleft", np.uint8))
    build = [int(b) for b in field(msg, "build", list)]
    slot_of_row = slots_of(positions, build)
    rows = np.flatnonzero(slot_of_row >= 0)
    slot = slot_of_row[rows]
    m, n_feat = len(rows), bins_t.shape[0]
    N = pm.correlation_size(n, pm.shape_level(level, lossguide), max_bin)
    beta = pm.block_size(n, pm.shape_level(level, lossguide), max_bin)
    z = array(msg, "z", np.uint64)
    span = pm.layout_length(m, len(build) * (int(n_bins.max(initial=0)) + 1), beta)
    if z.shape != (span, pm.WIDTH) or span > N:
        raise ProtocolError(f"{name}: z of shape {z.shape}, expected ({span}, {pm.WIDTH}) <= {N} rows")
    lengths, kept = [], []
    group = corr_group(N, N // beta, n_feat)
    for f in range(n_feat):
        if f % group == 0:                       # the next correlation message
            corr = box.get("corr", dealer)
            while tag(corr) < (tree, level):   # prepared for a level the tree did not reach
                corr = box.get("corr", dealer)
            if (corr.payload.get("tree"), corr.payload.get("level"), corr.payload.get("f")) != (tree, level, f):
                raise ProtocolError(f"{name}: correlation for {corr.payload.get('tree')}/"
                                    f"{corr.payload.get('level')}/{corr.payload.get('f')}, expected {tree}/{level}/{f}")
            count = min(group, n_feat - f)
            d1s = array(corr, "d1", np.uint64, (count, N, pm.WIDTH))
            d2s = array(corr, "d2", np.uint64, (count, N // beta, pm.WIDTH))
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
    if tag(sel) != (tree, level):
        raise ProtocolError(f"{name}: vsel for {sel.payload.get('tree')}/{sel.payload.get('level')}, "
                            f"expected {tree}/{level}")
    for f, ((ends, w_ends, d2, s2), z2) in enumerate(zip(kept, arrays(sel, "z2", n_feat))):
        blocks = lengths[f] // beta
        if z2.shape != (blocks, pm.WIDTH) or z2.dtype != np.uint64:
            raise ProtocolError(f"{name}: vsel z2[{f}] of shape {z2.shape} ({z2.dtype}), "
                                f"expected ({blocks}, {pm.WIDTH}) uint64")
        sigma2 = pm.permutation_of(s2, n=N // beta, first=blocks)
        k2, part = pm.gather_fh(z2, ends, sigma2, d2)
        k2s.append(k2.astype(np.uint32))
        sums.append(w_ends + part)
    t.send(name, lh, "vsum", {"tree": tree, "level": level, "k2": k2s, "s": sums})

