"""Split finding on an opened (aggregate) histogram, with XGBoost hist's exact rules.

For every feature XGBoost scans the bins forward (missing values go right) and, when
the node has missing values for that feature, backward (missing values go left).  The
gain of a candidate is

    gain = G_L'^2 / (H_L + lambda) + G_R'^2 / (H_R + lambda) - G'^2 / (H + lambda)

with G' = soft-threshold(G, alpha), a side scoring 0 when its hessian is below
min_child_weight, computed in double and rounded to float32.  With max_delta_step != 0
XGBoost clips each side's weight w = -G'/(H + lambda) to [-max_delta_step,
max_delta_step] and scores the side from the clipped weight, in float32 (its
CalcGainGivenWeight): -(2 G w + (H + lambda) w^2); leaf weights are clipped alike.
The first strict
maximum in the order (feature ascending; forward bins ascending; backward bins
descending) wins, which reproduces XGBoost's tie-breaking.  A split is applied only
when its gain exceeds 1e-6 and gamma, and both children have positive hessian.

Monotone constraints (XGBoost's TreeEvaluator): every weight is clipped to the bounds
of the node being split, every side is scored from its clipped float32 weight as
above (whenever constraints are given, for every feature), a candidate on a feature
constrained increasing (decreasing) whose left weight exceeds (is below) its right
weight is rejected, and a node's own score uses its weight clipped to its parent's
bounds (NodeBounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .params import TrainParams

RT_EPS = 1e-6


@dataclass(frozen=True)
class Split:
    feature: int
    bin: int              # local bin index: rows with bin <= this go left (-1: none)
    default_left: bool
    threshold: float      # float32 split condition: x < threshold goes left
    gain: float           # float32 loss change
    left: tuple[float, float]
    right: tuple[float, float]
    categories: tuple[int, ...] | None = None     # a categorical split: the codes that go right


def _threshold_l1(g: np.ndarray, alpha: float) -> np.ndarray:
    if alpha == 0.0:
        return g
    return np.where(g > alpha, g - alpha, np.where(g < -alpha, g + alpha, 0.0))


@dataclass(frozen=True)
class NodeBounds:
    """Monotone constraints for the split search of some nodes: `monotone` (n_features,
    int8: 1, -1 or 0), each node's weight bounds `lo`/`hi` and its parent's `parent_lo`
    /`parent_hi` (float32; the root's parent bounds are its own)."""
    monotone: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    parent_lo: np.ndarray
    parent_hi: np.ndarray


def calc_weight(g: float, h: float, p: TrainParams, bounds: tuple[float, float] | None = None) -> float:
    """Leaf weight before the learning rate (clipped to max_delta_step, then to the
    float32 monotone `bounds` (lo, hi) when given), as float32."""
    if h < float(np.float32(p.min_child_weight)) or h <= 0.0:
        w = 0.0
    else:
        t = float(_threshold_l1(np.float64(g), float(np.float32(p.alpha))))
        w = -t / (h + float(np.float32(p.reg_lambda)))
        mds = float(np.float32(p.max_delta_step))
        if mds != 0.0 and abs(w) > mds:
            w = math.copysign(mds, w)
    w = np.float32(w)
    if bounds is not None:
        w = bounds[0] if w < bounds[0] else (bounds[1] if w > bounds[1] else w)
    return float(w)


def leaf_value(g: float, h: float, p: TrainParams, bounds: tuple[float, float] | None = None) -> float:
    return float(np.float32(calc_weight(g, h, p, bounds)) * np.float32(p.eta))


def is_valid(s: Split, p: TrainParams) -> bool:
    """XGBoost's test of an expand entry: gain above 1e-6 and gamma, both sides with
    hessian."""
    g = np.float32(s.gain)
    return not (g <= RT_EPS or s.left[1] == 0.0 or s.right[1] == 0.0 or g < np.float32(p.gamma))


def find_split(hist: np.ndarray, scale: float, cut_ptr: np.ndarray, cuts: np.ndarray,
               min_vals: np.ndarray, p: TrainParams) -> Split | None:
    """Best split of one node (see find_splits)."""
    return find_splits(hist[None], scale, cut_ptr, cuts, min_vals, p)[0]


def find_splits(hists: np.ndarray, scale: float, cut_ptr: np.ndarray, cuts: np.ndarray,
                min_vals: np.ndarray, p: TrainParams,
                feature_mask: np.ndarray | None = None,
                categorical: np.ndarray | None = None, bounds: NodeBounds | None = None,
                keep_invalid: bool = False) -> list[Split | None]:
    """Best split of each node, all nodes of a level at once.

    hists is the opened int64 fixed-point histogram (nodes, n_bins_total + 1, 2), the
    last bin row holding each node's totals; prefix sums are taken on the integers
    (exact, wrapping like the ring) and decoded per candidate.  feature_mask
    (nodes, n_features) bool, from column sampling, restricts each node's scan to its
    features (None: every feature; the scan is then unchanged).  bounds applies monotone
    constraints to numeric features (None: none).  keep_invalid also returns the best
    candidate of positive gain that is_valid refuses (lossguide ranks it).
    """
    n_nodes = hists.shape[0]
    if int(cut_ptr[-1]) == 0 or n_nodes == 0:
        return [None] * n_nodes
    feature = np.zeros(n_nodes, dtype=np.int64)
    k = np.zeros(n_nodes, dtype=np.int64)
    backward = np.zeros(n_nodes, dtype=np.bool_)
    gain = np.zeros(n_nodes, dtype=np.float32)
    left = np.zeros((n_nodes, 2), dtype=np.float64)
    if np.frexp(scale)[0] != 0.5:
        raise ValueError(f"scale: expected a power of two, got {scale}")
    use_mask = feature_mask is not None
    if use_mask:
        mask = np.ascontiguousarray(feature_mask, dtype=np.bool_)
        if mask.shape != (n_nodes, len(cut_ptr) - 1):
            raise ValueError(f"feature_mask: expected shape {(n_nodes, len(cut_ptr) - 1)}, got {mask.shape}")
    else:
        mask = np.ones((1, 1), dtype=np.bool_)
    mono_on = bounds is not None
    if mono_on:
        mono = np.ascontiguousarray(bounds.monotone, dtype=np.int8)
        lims = np.ascontiguousarray(np.stack([bounds.lo, bounds.hi, bounds.parent_lo, bounds.parent_hi]),
                                    dtype=np.float32)
        if mono.shape != (len(cut_ptr) - 1,) or lims.shape != (4, n_nodes):
            raise ValueError(f"bounds: expected {len(cut_ptr) - 1} constraints and {n_nodes} nodes")
    else:
        mono, lims = np.zeros(1, np.int8), np.zeros((4, 1), np.float32)
    cat = None
    if categorical is not None and np.any(categorical):
        cat = categorical_splits(np.ascontiguousarray(hists, dtype=np.int64), 1.0 / scale, cut_ptr,
                                 np.flatnonzero(categorical), p, use_mask, mask)
        numeric = np.broadcast_to(~np.asarray(categorical, np.bool_), (n_nodes, len(cut_ptr) - 1))
        mask = np.ascontiguousarray(numeric & mask) if use_mask else np.ascontiguousarray(numeric)
        use_mask = True
    # x / scale == x * (1 / scale) exactly for a power of two
    _best_splits(np.ascontiguousarray(hists, dtype=np.int64), 1.0 / scale, np.asarray(cut_ptr, np.int64),
                 float(np.float32(p.reg_lambda)), float(np.float32(p.min_child_weight)),
                 float(np.float32(p.alpha)), float(np.float32(p.max_delta_step)), use_mask, mask,
                 mono_on, mono, lims, feature, k, backward, gain, left)
    out: list[Split | None] = []
    n_bins = int(cut_ptr[-1])
    for n in range(n_nodes):
        g = gain[n]
        if cat is not None and (cat[0][n] > g or (cat[0][n] == g and cat[1][n] < feature[n])):
            out.append(_categorical_split(n, cat, hists[n, n_bins] / scale, p))
            continue
        if not g > np.float32(0.0):
            out.append(None)
            continue
        f, kk = int(feature[n]), int(k[n])
        s = int(cut_ptr[f])
        gt, ht = hists[n, n_bins, 0] / scale, hists[n, n_bins, 1] / scale
        lg, lh = float(left[n, 0]), float(left[n, 1])
        if backward[n]:
            split_bin, default_left = kk - s - 1, True
            thr = min_vals[f] if kk == s else cuts[kk - 1]
        else:
            split_bin, default_left, thr = kk - s, False, cuts[kk]
        right = (float(gt) - lg, float(ht) - lh)
        split = Split(feature=f, bin=split_bin, default_left=default_left,
                      threshold=float(np.float32(thr)), gain=float(g), left=(lg, lh), right=right)
        out.append(split if keep_invalid or is_valid(split, p) else None)
    return out


def _categorical_split(n: int, cat, totals: np.ndarray, p: TrainParams) -> Split | None:
    """The Split of node n's best categorical candidate (see categorical_splits)."""
    gain, feature, default_left, left, right_set = cat
    g = gain[n]
    lg, lh = float(left[n, 0]), float(left[n, 1])
    right = (float(totals[0]) - lg, float(totals[1]) - lh)
    if not g > RT_EPS or lh == 0.0 or right[1] == 0.0 or g < np.float32(p.gamma):
        return None
    return Split(feature=int(feature[n]), bin=-1, default_left=bool(default_left[n]), threshold=CATEGORY_THRESHOLD,
                 gain=float(g), left=(lg, lh), right=right,
                 categories=tuple(int(c) for c in np.flatnonzero(right_set[n])))


#: what XGBoost writes as a categorical node's split condition (the smallest float32 above 0)
CATEGORY_THRESHOLD = float(np.array([1], np.uint32).view(np.float32)[0])


@njit(nogil=True, cache=True, inline="always")
def _gain(g, h, lam, mcw, alpha):
    """calc_gain for one side, in double (branch-free, so candidate loops vectorise)."""
    t = g - alpha if g > alpha else (g + alpha if g < -alpha else 0.0)
    t = g if alpha == 0.0 else t
    value = t * t / (h + lam)
    return 0.0 if (h < mcw) | (h <= 0.0) else value


@njit(nogil=True, cache=True, inline="always")
def _gain_clipped(g, h, lam, mcw, alpha, mds):
    """XGBoost's side gain from the weight clipped to max_delta_step (mds != 0): the
    weight in double, rounded to float32, then -(2 G w + (H + lambda) w^2) in float32."""
    t = g - alpha if g > alpha else (g + alpha if g < -alpha else 0.0)
    w = -t / (h + lam)
    w = min(max(w, -mds), mds)
    w = 0.0 if (h < mcw) | (h <= 0.0) else w
    wf = np.float32(w)
    value = -(np.float32(2.0) * np.float32(g) * wf + (np.float32(h) + np.float32(lam)) * (wf * wf))
    return np.float32(0.0) if h <= 0.0 else value


@njit(nogil=True, cache=True, inline="always")
def _gain_bounded(g, h, lam, mcw, alpha, mds, lo, hi):
    """Side gain under monotone constraints (TreeEvaluator's CalcWeight then
    CalcGainGivenWeight): the weight (max_delta_step-clipped when mds != 0) in double,
    rounded to float32, clipped to [lo, hi]; returns (float32 gain, float32 weight)."""
    t = g - alpha if g > alpha else (g + alpha if g < -alpha else 0.0)
    w = -t / (h + lam)
    if mds != 0.0:
        w = min(max(w, -mds), mds)
    w = 0.0 if (h < mcw) | (h <= 0.0) else w
    wf = np.float32(w)
    wf = lo if wf < lo else (hi if wf > hi else wf)
    value = -(np.float32(2.0) * np.float32(g) * wf + (np.float32(h) + np.float32(lam)) * (wf * wf))
    return (np.float32(0.0) if h <= 0.0 else value), wf


@njit(nogil=True, cache=True, inline="always")
def _loss_bounded(lg, lh, rg, rh, root, lam, mcw, alpha, mds, lo, hi, c):
    """_loss under monotone constraints: float32 sides from clipped weights; a candidate
    against the feature's direction c is -inf."""
    vl, wl = _gain_bounded(lg, lh, lam, mcw, alpha, mds, lo, hi)
    vr, wr = _gain_bounded(rg, rh, lam, mcw, alpha, mds, lo, hi)
    gain = np.float32(vl + vr)
    against = ((c > 0) & (wl > wr)) | ((c < 0) & (wl < wr))
    gain = np.float32(-np.inf) if against else gain
    gain = gain - np.float32(root)
    ok = (lh >= mcw) & (rh >= mcw) & np.isfinite(gain)
    return gain if ok else np.float32(-np.inf)


@njit(nogil=True, cache=True, inline="always")
def _loss(lg, lh, rg, rh, root, lam, mcw, alpha):
    """float32 loss change of one candidate, -inf when invalid."""
    gain = np.float32(_gain(lg, lh, lam, mcw, alpha) + _gain(rg, rh, lam, mcw, alpha) - root)
    ok = (lh >= mcw) & (rh >= mcw) & np.isfinite(gain)
    return gain if ok else np.float32(-np.inf)


@njit(nogil=True, cache=True, inline="always")
def _loss_clipped(lg, lh, rg, rh, root, lam, mcw, alpha, mds):
    """_loss with max_delta_step != 0: float32 sides, float32 sum, minus the float32 root."""
    gain = (_gain_clipped(lg, lh, lam, mcw, alpha, mds) + _gain_clipped(rg, rh, lam, mcw, alpha, mds)) \
        - np.float32(root)
    ok = (lh >= mcw) & (rh >= mcw) & np.isfinite(gain)
    return gain if ok else np.float32(-np.inf)


@njit(nogil=True, cache=True)
def _scan(hists, n, s, e, step, inv_scale, gt, ht, root, lam, mcw, alpha, mds, pg, ph, gains,
          mono_on, lo, hi, c):
    """Candidates of one feature in scan order (step +1: forward from s, -1: backward
    from e - 1): prefix sums on the integers, then every gain in one loop.  Returns the
    first strict maximum's position and value, and the integer sums of all the bins."""
    m = e - s
    acc_g = np.int64(0)
    acc_h = np.int64(0)
    for j in range(m):
        i = s + j if step > 0 else e - 1 - j
        acc_g += hists[n, i, 0]
        acc_h += hists[n, i, 1]
        pg[j] = acc_g * inv_scale
        ph[j] = acc_h * inv_scale
    if mono_on:         # monotone constraints: weights clipped to the node's bounds
        if step > 0:
            for j in range(m):
                gains[j] = _loss_bounded(pg[j], ph[j], gt - pg[j], ht - ph[j], root, lam, mcw, alpha, mds,
                                         lo, hi, c)
        else:
            for j in range(m):
                gains[j] = _loss_bounded(gt - pg[j], ht - ph[j], pg[j], ph[j], root, lam, mcw, alpha, mds,
                                         lo, hi, c)
    elif mds != 0.0:    # weights clipped (each loop stays branch-free)
        if step > 0:
            for j in range(m):
                gains[j] = _loss_clipped(pg[j], ph[j], gt - pg[j], ht - ph[j], root, lam, mcw, alpha, mds)
        else:
            for j in range(m):
                gains[j] = _loss_clipped(gt - pg[j], ht - ph[j], pg[j], ph[j], root, lam, mcw, alpha, mds)
    elif step > 0:      # the prefix is the left side
        for j in range(m):
            gains[j] = _loss(pg[j], ph[j], gt - pg[j], ht - ph[j], root, lam, mcw, alpha)
    else:               # the prefix is the right side; missing values go left
        for j in range(m):
            gains[j] = _loss(gt - pg[j], ht - ph[j], pg[j], ph[j], root, lam, mcw, alpha)
    best, at = np.float32(-np.inf), 0
    for j in range(m):
        if gains[j] > best:
            best, at = gains[j], j
    return at, best, acc_g, acc_h


@njit(parallel=True, nogil=True, cache=True)
def _best_splits(hists, inv_scale, cut_ptr, lam, mcw, alpha, mds, use_mask, mask, mono_on, mono, lims,
                 out_feature, out_k, out_backward, out_gain, out_left):
    """Per node: XGBoost's scan order with strict maxima (see the module docstring);
    with use_mask, features where mask[node, f] is False are skipped."""
    n_bins = cut_ptr[-1]
    widest = 0
    for f in range(cut_ptr.shape[0] - 1):
        widest = max(widest, cut_ptr[f + 1] - cut_ptr[f])
    for n in prange(hists.shape[0]):
        pg = np.empty(widest)
        ph = np.empty(widest)
        gains = np.empty(widest, dtype=np.float32)
        g_tot_i = hists[n, n_bins, 0]
        h_tot_i = hists[n, n_bins, 1]
        gt = g_tot_i * inv_scale
        ht = h_tot_i * inv_scale
        root = _gain(gt, ht, lam, mcw, alpha) if mds == 0.0 else float(_gain_clipped(gt, ht, lam, mcw, alpha, mds))
        lo, hi = np.float32(0.0), np.float32(0.0)
        if mono_on:     # the node scores itself with its parent's bounds, its children with its own
            root = float(_gain_bounded(gt, ht, lam, mcw, alpha, mds, lims[2, n], lims[3, n])[0])
            lo, hi = lims[0, n], lims[1, n]
        best = np.float32(-np.inf)
        for f in range(cut_ptr.shape[0] - 1):
            if use_mask and not mask[n, f]:
                continue
            s, e = cut_ptr[f], cut_ptr[f + 1]
            # forward: left = bins [s, i], missing values right
            c = mono[f] if mono_on else 0
            j, fmax, sum_g, sum_h = _scan(hists, n, s, e, 1, inv_scale, gt, ht, root, lam, mcw, alpha, mds,
                                          pg, ph, gains, mono_on, lo, hi, c)
            fk, flg, flh = s + j, pg[j], ph[j]
            # backward, only when the node has missing values for f: right = bins [i, e)
            if sum_g != g_tot_i or sum_h != h_tot_i:
                j, bmax, _, _ = _scan(hists, n, s, e, -1, inv_scale, gt, ht, root, lam, mcw, alpha, mds,
                                      pg, ph, gains, mono_on, lo, hi, c)
                if bmax > fmax and bmax > best:
                    best = bmax
                    out_feature[n], out_k[n], out_backward[n] = f, e - 1 - j, True
                    out_left[n, 0], out_left[n, 1] = gt - pg[j], ht - ph[j]
                    continue
                if bmax > fmax:
                    continue
            if fmax > best:
                best = fmax
                out_feature[n], out_k[n], out_backward[n] = f, fk, False
                out_left[n, 0], out_left[n, 1] = flg, flh
        out_gain[n] = best


# ------------------------------------------------------------------ categorical features
def categorical_splits(hists: np.ndarray, inv_scale: float, cut_ptr: np.ndarray, features: np.ndarray,
                       p, use_mask: bool, mask: np.ndarray):
    """Best categorical split per node over `features`: (gain float32, feature,
    default_left, left (g, h), goes-right flags per bin) arrays, gain -inf where none."""
    n = hists.shape[0]
    widest = int(max((cut_ptr[f + 1] - cut_ptr[f] for f in features), default=1))
    gain = np.full(n, -np.inf, dtype=np.float32)
    feature = np.zeros(n, np.int64)
    default_left = np.zeros(n, np.bool_)
    left = np.zeros((n, 2))
    right_set = np.zeros((n, widest), np.bool_)
    _cat_best(hists, inv_scale, np.asarray(cut_ptr, np.int64), np.asarray(features, np.int64),
              float(np.float32(p.reg_lambda)), float(np.float32(p.min_child_weight)), float(np.float32(p.alpha)),
              float(np.float32(p.max_delta_step)), int(p.max_cat_to_onehot), int(p.max_cat_threshold),
              use_mask, mask, gain, feature, default_left, left, right_set)
    return gain, feature, default_left, left, right_set


@njit(nogil=True, cache=True, inline="always")
def _cand(lg, lh, rg, rh, root, lam, mcw, alpha, mds):
    if mds != 0.0:
        return _loss_clipped(lg, lh, rg, rh, root, lam, mcw, alpha, mds)
    return _loss(lg, lh, rg, rh, root, lam, mcw, alpha)


@njit(nogil=True, cache=True, inline="always")
def _weight32(g, h, lam, mcw, alpha, mds):
    """XGBoost's CalcWeight in double, as the float32 its CalcWeightCat returns."""
    if h < mcw or h <= 0.0:
        return np.float32(0.0)
    t = g
    if alpha != 0.0:
        t = g - alpha if g > alpha else (g + alpha if g < -alpha else 0.0)
    w = -t / (h + lam)
    if mds != 0.0 and abs(w) > mds:
        w = mds if w > 0 else -mds
    return np.float32(w)


@njit(nogil=True, cache=True, inline="always")
def _record(n, c, f, dl, lg, lh, out_gain, out_feature, out_dl, out_left, out_set):
    """Node n's best categorical candidate so far (its set, cleared here, is the caller's)."""
    out_gain[n], out_feature[n], out_dl[n] = c, f, dl
    out_left[n, 0], out_left[n, 1] = lg, lh
    out_set[n, :] = False


@njit(parallel=True, nogil=True, cache=True)
def _cat_best(hists, inv, cut_ptr, features, lam, mcw, alpha, mds, onehot_below, threshold, use_mask, mask,
              out_gain, out_feature, out_dl, out_left, out_set):
    n_bins = cut_ptr[-1]
    for n in prange(hists.shape[0]):
        gt_i, ht_i = hists[n, n_bins, 0], hists[n, n_bins, 1]
        gt, ht = gt_i * inv, ht_i * inv
        root = _gain(gt, ht, lam, mcw, alpha) if mds == 0.0 else float(_gain_clipped(gt, ht, lam, mcw, alpha, mds))
        best = np.float32(-np.inf)
        for f in features:
            if use_mask and not mask[n, f]:
                continue
            s, e = cut_ptr[f], cut_ptr[f + 1]
            m = e - s
            if m < onehot_below:            # one-hot: each category alone on the right
                fg, fh = np.int64(0), np.int64(0)
                for i in range(s, e):
                    fg += hists[n, i, 0]
                    fh += hists[n, i, 1]
                mg, mh = gt_i - fg, ht_i - fh
                for i in range(s, e):
                    for dl in (True, False):
                        rg_i = hists[n, i, 0] + (0 if dl else mg)
                        rh_i = hists[n, i, 1] + (0 if dl else mh)
                        rg, rh = rg_i * inv, rh_i * inv
                        lg, lh = (gt_i - rg_i) * inv, (ht_i - rh_i) * inv
                        c = _cand(lg, lh, rg, rh, root, lam, mcw, alpha, mds)
                        if c > best:
                            best = c
                            _record(n, c, f, dl, lg, lh, out_gain, out_feature, out_dl, out_left, out_set)
                            out_set[n, i - s] = True
                continue
            w = np.empty(m, dtype=np.float32)
            for k in range(m):
                w[k] = _weight32(hists[n, s + k, 0] * inv, hists[n, s + k, 1] * inv, lam, mcw, alpha, mds)
            order = np.argsort(w, kind="mergesort")      # stable, as std::stable_sort
            use = min(threshold, m)
            for forward in (True, False):
                # forward: a sorted prefix right, missing left; backward: a sorted suffix
                # left, missing right (XGBoost's EnumeratePart<+1> and <-1>)
                acc_g, acc_h = np.int64(0), np.int64(0)
                for t in range(use - 1):
                    j = t if forward else m - 1 - t
                    acc_g += hists[n, s + order[j], 0]
                    acc_h += hists[n, s + order[j], 1]
                    ag, ah = acc_g * inv, acc_h * inv
                    bg, bh = (gt_i - acc_g) * inv, (ht_i - acc_h) * inv
                    lg, lh, rg, rh = (bg, bh, ag, ah) if forward else (ag, ah, bg, bh)
                    c = _cand(lg, lh, rg, rh, root, lam, mcw, alpha, mds)
                    if c > best:
                        best = c
                        _record(n, c, f, forward, lg, lh, out_gain, out_feature, out_dl, out_left, out_set)
                        for q in range(j + 1 if forward else j):
                            out_set[n, order[q]] = True
