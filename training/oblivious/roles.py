"""The data owners and the analyst of oblivious training.

A data owner (party) uploads its binned rows once, as additive shares: server 0 gets a
32-byte seed that expands to its share, server 1 the one-hot matrix (and labels) minus
that share.  Before that it takes part in the bin agreement: horizontally the
horizontal mode's refinement (counts shared to the servers, pooled counts opened by
the analyst), vertically the party's own cuts, sent to the analyst.  Categorical
columns are coded as in the other modes (training/categorical.py): horizontally after
the category agreement (sketches shared to the servers, pooled sums opened by the
analyst, the agreed lists sent to the parties), vertically by each party alone; their
cuts put code c in bin c.  Either way the parties and the analyst learn the cuts (and
the categories), as in the other modes; nothing else reaches a party.  The analyst
opens only the pooled label sum (for the default intercept, which the model shows
anyway), the pooled sum of squared labels (to check that the gains fit the fixed-point
ring, before any tree) and the trees.
"""

from __future__ import annotations

import os

import numpy as np

from ppxgb.crypto.sharing import Randomness, share
from ppxgb.errors import ParameterError, PeerFailure, ProtocolError, UnsupportedParameter
from ppxgb.model import Ensemble, Tree
from ppxgb.objectives import get_objective
from ppxgb.transport import Blank, Transport, draft_message

from .. import binning, categorical
from ..messages import field, report_failure
from ..params import TrainParams
from ..split import CATEGORY_THRESHOLD
from ..vertical.rows import local_cuts
from .engine import decode, encode
from .learner import MAX_HESSIAN, hessian_scale
from .mailbox import Mailbox
from .stages import ANALYST, DEALER, SERVERS


def onehot_minus_stream(bins: np.ndarray, n_bins: int, missing: bool, rng: Randomness,
                        out: np.ndarray) -> None:
    """out = B - S (mod 2^64): B the one-hot matrix (features * width, rows), width =
    n_bins (+ 1 for the missing column when `missing`), whose column r has a 1 at
    f * width + bin[r, f] (n_bins for a missing value); S the next words of `rng`, row
    by row.  One feature at a time, so B and S are never held whole."""
    rows, feats = bins.shape
    width = n_bins + 1 if missing else n_bins
    every = np.arange(rows)
    for f in range(feats):
        block = out[f * width:(f + 1) * width]
        np.negative(rng.uint64(block.shape), out=block)
        b = bins[:, f].astype(np.int64)
        b[bins[:, f] == np.iinfo(bins.dtype).max] = n_bins          # assign_bins' missing code
        block[b, every] += np.uint64(1)


def real_candidates(cuts: list, n_bins: int, missing: bool, categorical=None) -> np.ndarray:
    """(features * candidates,) 0/1: a candidate on a padding bin (beyond a feature's
    cuts) is 0.  With missing values the forward candidate on the last real bin (all
    values left, missing right) is a real split, and the padding bins after it would tie
    with it; the shared mask keeps them out without telling the servers the bin counts.
    A categorical feature's candidates are its categories (with missing values: each
    twice, missing left then missing right, XGBoost's one-hot order)."""
    cat = categorical if categorical is not None else [False] * len(cuts)
    per = [np.arange(n_bins) < len(c) for c in cuts]
    # backward bins descending; backward bin 0 (only missing values left) mirrors the
    # forward last bin exactly, which XGBoost's scan order prefers
    rows = [(np.repeat(r, 2) if c else np.concatenate([r, (r & (np.arange(n_bins) > 0))[::-1]])) if missing else r
            for r, c in zip(per, cat)]
    return np.concatenate(rows).astype(np.uint64)


#: Labels must be below this in magnitude: y^2 then encodes in SQUARE_FRAC fractional bits
#: and 2^20 rows of it sum without wrapping the ring (for the range check below).
LABEL_BOUND = 2.0 ** 16
SQUARE_FRAC = 10
#: what a labelled party uploads beside the one-hot matrix (others: "real" only)
LABEL_FIELDS = ("real", "y", "w", "wy", "wysq")
#: reg:squarederror: the residual sum of squares at the start, sum (y - base_score)^2,
#: bounds every gain of every tree (a side's G^2 / (H + lambda) is at most the squares
#: of its residuals, and with eta <= 1 each tree lowers the sum); the fixed point holds
#: a side's gain below 2^23, so the analyst stops a run whose sum is over 2^22.
RESIDUAL_BOUND = 2.0 ** 22


#: Sample weights must be below this, and a row's w y^2 below 2^32 (so that it encodes in
#: SQUARE_FRAC bits and 2^20 rows of it sum without wrapping).
WEIGHT_BOUND = 2.0 ** 10


def check_label_range(y: np.ndarray, w: np.ndarray | None = None) -> None:
    """A party refuses labels (and weights) too large for the fixed-point range, naming the bound."""
    big = float(np.max(np.abs(y))) if len(y) else 0.0
    if not big < LABEL_BOUND:
        raise ParameterError.bad("labels", f"magnitudes below {LABEL_BOUND:,.0f} in oblivious training "
                                 "(its fixed-point ring; scale the labels)", big)
    if w is not None and len(w):
        if not float(w.max()) < WEIGHT_BOUND:
            raise ParameterError.bad("sample weights", f"below {WEIGHT_BOUND:,.0f} in oblivious training (its "
                                     "fixed-point ring; scale the weights)", float(w.max()))
        largest = float(np.max(w * y * y))
        if not largest < 2.0 ** 32:
            raise ParameterError.bad("sample weights and labels", "w y^2 below 2^32 on every row in oblivious "
                                     "training (its fixed-point ring)", largest)


def check_residual_range(objective: str, label_sum: float, square_sum: float, n: float, base: float) -> None:
    """The analyst's check, before any tree: see RESIDUAL_BOUND.  With sample weights the
    sums are weighted (sum w y, sum w y^2, sum w) and the bound holds the same way."""
    if objective != "reg:squarederror":
        return
    ssr = square_sum - 2.0 * base * label_sum + n * base * base
    if ssr > RESIDUAL_BOUND:
        raise ParameterError.bad("labels", f"a residual sum of squares sum (y - base_score)^2 of at most "
                                 f"{RESIDUAL_BOUND:,.0f} in oblivious training (the gains must fit its "
                                 "fixed-point ring; scale the labels down, e.g. to unit variance)", f"{ssr:,.0f}")


def run_party(transport: Transport, me: str, X, y: np.ndarray | None, *, weight: np.ndarray | None = None,
              feature_types=None, timeout: float | None = None) -> None:
    """X: an array or a DataFrame (pandas `category` columns, and columns typed "c" in
    feature_types, are categorical; training/categorical.py says how they are coded).
    y, weight: the labels and sample weights of a labelled party (weight None: all 1)."""
    try:
        frame = X if hasattr(X, "columns") else None
        X, kinds, raw = categorical.split_columns(X, feature_types, f"{me} X")
        if y is not None:
            y32 = np.asarray(y, np.float32).astype(np.float64)
            w32 = np.ones(len(y32)) if weight is None else np.asarray(weight, np.float32).astype(np.float64)
            check_label_range(y32, w32)
        numeric = np.array([k == categorical.NUMERIC for k in kinds], bool)
        has_missing = bool(np.isnan(X[:, numeric]).any()) or any(v is None for r in raw.values() for v in r)
        transport.send(me, ANALYST, "ohello", {"rows": X.shape[0], "cols": X.shape[1], "missing": has_missing,
                                               "kinds": kinds})
        plan = transport.recv(me, "oplan", ANALYST, timeout=timeout)
        n_bins, missing = field(plan, "n_bins", int), field(plan, "missing", bool)
        if field(plan, "partition", str) == "vertical":
            cat_cuts, lists = categorical.code_own_columns(X, kinds, raw, frame)
            cuts, mins = categorical.merge_cuts(kinds, list(np.flatnonzero(numeric)),
                                                *local_cuts(np.asfortranarray(X[:, numeric]), n_bins), cat_cuts)
            transport.send(me, ANALYST, "ocuts", {"cuts": [c for c in cuts], "mins": np.asarray(mins, np.float32),
                                                  "lists": [list(v) if v is not None else None for v in lists]})
        else:
            while True:
                msg = transport.recv(me, ("ocatreq", "ocats", "obinreq", "ocuts"), ANALYST, timeout=timeout)
                if msg.stage == "ocuts":
                    cuts = [np.asarray(c, np.float32) for c in field(msg, "cuts", list)]
                    break
                if msg.stage == "ocats":            # the agreed lists: code the columns with them
                    for f, agreed in zip(field(msg, "columns", list), field(msg, "lists", list)):
                        X[:, f] = categorical.code_column(raw[f], kinds[f], agreed)
                    continue
                if msg.stage == "ocatreq":          # the category agreement's sketch of these columns
                    counts = categorical.party_sketch([raw[f] for f in field(msg, "columns", list)],
                                                      field(msg, "salt", int), field(msg, "buckets", int))
                else:
                    counts = binning.party_cell_counts(X, field(msg, "level", int),
                                                       [np.asarray(r, np.uint32) for r in field(msg, "requests", list)])
                for server, part in zip(SERVERS, share(np.rint(counts).astype(np.int64).view(np.uint64), 2)):
                    transport.send(me, server, "obinshare", {"counts": part})
        # server 0's share is the stream of a seed: the one-hot matrix's words, then the
        # candidate mask's and the labels'; server 1's is the values minus it, written
        # straight into its message (the matrix is 129 x 8 bytes per row and feature)
        bins = binning.assign_bins(X, cuts)
        values = [real_candidates(cuts, n_bins, missing, ~numeric)]
        if y is not None:        # w y and w y^2 only for the intercept and the range check
            values += [encode(y32), encode(w32), encode(w32 * y32), encode(w32 * y32 * y32, SQUARE_FRAC)]
        width = n_bins + 1 if missing else n_bins
        seed = os.urandom(32)
        rng = Randomness(seed)
        upload = draft_message(me, SERVERS[1], "odata", {
            "onehot": Blank((X.shape[1] * width, X.shape[0]), np.uint64),
            **{k: Blank(v.shape, np.uint64) for k, v in zip(LABEL_FIELDS, values)}})
        onehot_minus_stream(bins, n_bins, missing, rng, upload.arrays["onehot"])
        for k, v in zip(LABEL_FIELDS, values):
            upload.arrays[k][...] = v - rng.uint64(v.shape)
        transport.send(me, SERVERS[0], "odata", {"seed": seed})
        transport.send_draft(upload)
    except PeerFailure:
        raise
    except BaseException as exc:
        report_failure(transport, me, ANALYST, exc)
        raise


def _opened(box: Mailbox, stage: str) -> dict[str, np.ndarray]:
    """Both servers' shares of one message, reconstructed."""
    msgs = [box.recv(stage, s) for s in SERVERS]
    return {k: np.asarray(msgs[0].payload[k], np.uint64) + np.asarray(msgs[1].payload[k], np.uint64)
            for k in msgs[0].payload}


def run_analyst(transport: Transport, params: dict, num_boost_round: int, *, parties: list[str],
                partition: str, label_party: int = 0, timeout: float | None = None) -> Ensemble:
    """Drive the run and receive the trees; returns the model (to the analyst only)."""
    p = TrainParams.from_dict(params)
    box = Mailbox(transport, ANALYST, ("ohello", "obinsum", "ocuts", "oysum", "otree", "abort"), timeout)
    try:
        hellos = [box.recv("ohello", q) for q in parties]
        shapes = [(field(m, "rows", int), field(m, "cols", int)) for m in hellos]
        missing = any(field(m, "missing", bool) for m in hellos)     # public: one bit per party
        horizontal = partition == "horizontal"
        if horizontal and len({c for _, c in shapes}) != 1:
            raise ProtocolError(f"horizontal partition: parties have different column counts {shapes}")
        if not horizontal and len({r for r, _ in shapes}) != 1:
            raise ProtocolError(f"vertical partition: parties have different row counts {shapes}")
        for q in parties:
            transport.send(ANALYST, q, "oplan", {"n_bins": p.max_bin, "partition": partition, "missing": missing})
        if horizontal:
            kinds = categorical.check_kinds([field(m, "kinds", list) for m in hellos])

            def opened_sum(stage, payload, size):
                for q in parties:
                    transport.send(ANALYST, q, stage, payload)
                for s in SERVERS:
                    transport.send(ANALYST, s, "obinround", {"size": size})
                return _opened(box, "obinsum")["counts"].view(np.int64).astype(np.float64)

            def count(level, requests):
                return opened_sum("obinreq", {"level": level, "requests": list(requests)},
                                  sum(binning.answer_size(r, level) for r in requests))

            cat_cuts, lists = categorical.agree_columns(
                kinds, lambda salt, buckets, cols: opened_sum(
                    "ocatreq", {"columns": cols, "salt": salt, "buckets": buckets},
                    len(cols) * categorical.sketch_size(buckets)),
                lambda payload: [transport.send(ANALYST, q, "ocats", payload) for q in parties])
            numeric, counted = categorical.numeric_count(kinds, count)
            cuts, mins = categorical.merge_cuts(kinds, numeric, *binning.agree_cuts(len(numeric), p.max_bin, counted),
                                                cat_cuts)
            for q in parties:
                transport.send(ANALYST, q, "ocuts", {"cuts": list(cuts)})
        else:
            kinds = [k for m in hellos for k in field(m, "kinds", list)]
            got = [box.recv("ocuts", q) for q in parties]
            cuts = [np.asarray(c, np.float32) for m in got for c in field(m, "cuts", list)]
            mins = np.concatenate([np.asarray(field(m, "mins", np.ndarray), np.float32) for m in got])
            lists = [tuple(v) if v is not None else None for m in got for v in field(m, "lists", list)]
        is_cat = [k != categorical.NUMERIC for k in kinds]
        check_category_counts(cuts, is_cat, p, [(q, j) for q, (_, c) in zip(parties, shapes) for j in range(c)]
                              if not horizontal else None)
        n = sum(r for r, _ in shapes) if horizontal else shapes[0][0]
        blocks = [[r, c] for r, c in shapes]
        for s in SERVERS:
            transport.send(ANALYST, s, "oconfig", {
                "n_rows": n, "n_features": len(cuts), "n_bins": p.max_bin, "blocks": blocks,
                "partition": partition, "label_party": label_party, "params": p.to_dict(), "missing": missing,
                "categorical": is_cat, "n_trees": num_boost_round})
        obj = get_objective(p.objective)
        sums = _opened(box, "oysum")["share"]
        label_sum, weight_sum = (float(v) for v in decode(sums[:2]))
        square_sum = float(decode(sums[2:], SQUARE_FRAC)[0])
        base_score = (p.base_score,) if p.base_score is not None else \
            obj.intercept_from_stats(np.array([label_sum, weight_sum]), p.objective_params)
        check_residual_range(p.objective, label_sum, square_sum, weight_sum, float(np.float32(base_score[0])))
        h_total = weight_sum * (0.25 if p.objective == "binary:logistic" else 1.0)
        if not h_total < MAX_HESSIAN:
            raise ParameterError.bad("sample weights", f"a total hessian below {MAX_HESSIAN:,.0f} in oblivious "
                                     "training (the division's range; scale the weights)", h_total)
        scale = hessian_scale(h_total, p.reg_lambda)        # public: the division's range
        margin = obj.base_margin(np.asarray(base_score, np.float32)).astype(np.float64)
        for s, part in zip(SERVERS, share(encode(margin[:1]), 2)):
            transport.send(ANALYST, s, "obase", {"share": part, "scale": scale})
        trees = []
        for _ in range(num_boost_round):
            got = _opened(box, "otree")
            trees.append(build_tree(got["valid"].view(np.int64), got["index"].view(np.int64),
                                    decode(got["weight"]), cuts, mins, p, missing, is_cat))
        transport.send(ANALYST, DEALER, "ostop", {})
        return Ensemble(objective=p.objective, num_feature=len(cuts), trees=tuple(trees),
                        tree_info=(0,) * len(trees), base_score=tuple(float(b) for b in base_score),
                        objective_params=obj.json_values(p.objective_params),
                        feature_types=tuple("c" if c else "float" for c in is_cat) if any(is_cat) else None,
                        categories=tuple(lists) if any(v is not None for v in lists) else None)
    except PeerFailure:
        raise
    except BaseException as exc:
        transport.abort(ANALYST, f"{type(exc).__name__}: {exc}")
        raise


def check_category_counts(cuts: list, is_cat: list, p: TrainParams, owners: list | None) -> None:
    """Oblivious training has XGBoost's one-hot splits only: a categorical feature needs
    fewer categories than max_cat_to_onehot (a partition split sorts the categories by
    their weights, which would need an oblivious sort), and at most max_bin of them."""
    for f, c in enumerate(is_cat):
        n = len(cuts[f])
        where = f"feature {f}" + (f" ({owners[f][0]}'s column {owners[f][1]})" if owners else "")
        if c and n >= p.max_cat_to_onehot:
            raise UnsupportedParameter(
                f"max_cat_to_onehot: categorical {where} has {n} categories, and oblivious training has only "
                f"one-hot splits (fewer categories than max_cat_to_onehot={p.max_cat_to_onehot}); raise "
                f"max_cat_to_onehot above {n} to train it with one-hot splits")
        if c and n > p.max_bin:
            raise ParameterError.bad("max_bin", f"at least the {n} categories of categorical {where}", p.max_bin)


def build_tree(valid: np.ndarray, index: np.ndarray, weight: np.ndarray, cuts: list, mins: np.ndarray,
               p: TrainParams, missing: bool = False, is_cat: list | None = None) -> Tree:
    """XGBoost arrays from the opened full-depth tree: a node that did not split is a
    leaf whose weight is its leftmost leaf's (every one of its rows went left).  A
    winning index is (feature, candidate): forward bin b (x < cut[b] left, missing
    right), or with missing values backward bin i, stored descending (x < cut[i - 1]
    left, the feature's minimum for i = 0, missing left), as split.py reads them.  On a
    categorical feature candidate c is category c alone to the right (missing left),
    or with missing values candidate 2c + d: missing left for d = 0, right for d = 1."""
    if np.any((valid != 0) & (valid != 1)):
        raise ProtocolError("opened split flags are not 0/1: the servers' shares disagree")
    depth, n_bins = p.max_depth, p.max_bin
    cand = n_bins * (2 if missing else 1)
    is_cat = is_cat or [False] * len(cuts)
    left, right, feature, threshold, default_left, cats = [], [], [], [], [], []
    queue = [(0, 0)]
    while queue:
        d, j = queue.pop(0)
        me = len(left)
        for arr, v in ((left, -1), (right, -1), (feature, 0), (threshold, 0.0), (default_left, False), (cats, ())):
            arr.append(v)
        flat = (1 << d) - 1 + j
        if d < depth and valid[flat]:
            f, c = divmod(int(index[flat]), cand)
            category = 0 <= f < len(cuts) and is_cat[f]
            b = (c // 2 if missing else c) if category else c if c < n_bins else 2 * n_bins - 1 - c
            if not (0 <= f < len(cuts) and 0 <= b < len(cuts[f])):
                raise ProtocolError(f"opened split index {int(index[flat])} is outside the cuts")
            feature[me] = f
            left[me] = len(left) + len(queue)
            right[me] = left[me] + 1
            queue += [(d + 1, 2 * j), (d + 1, 2 * j + 1)]
            if category:
                threshold[me], default_left[me], cats[me] = CATEGORY_THRESHOLD, not (missing and c % 2), (b,)
            elif c < n_bins:
                threshold[me] = float(cuts[f][b])
            else:
                threshold[me] = float(mins[f] if b == 0 else cuts[f][b - 1])
                default_left[me] = True
        else:
            w = weight[j << (depth - d)]
            threshold[me] = float(np.float32(np.float32(w) * np.float32(p.eta)))
    return Tree.from_arrays(left, right, feature, threshold, default_left,
                            categories=cats if any(is_cat) else None)
