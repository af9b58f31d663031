"""Reference for the split kernel: the first, plain-numpy implementation of
`ppxgb.training.split.find_splits` (same rules, whole-array operations).  Tests check
that the compiled kernel returns exactly the same splits.

The rules are described in that module's docstring.
"""

from __future__ import annotations

import numpy as np

from ppxgb.training.params import TrainParams
from ppxgb.training.split import RT_EPS, Split


def _threshold_l1(g: np.ndarray, alpha: float) -> np.ndarray:
    if alpha == 0.0:
        return g
    return np.where(g > alpha, g - alpha, np.where(g < -alpha, g + alpha, 0.0))


def calc_gain(g, h, p: TrainParams):
    g = np.asarray(g, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    lam = float(np.float32(p.reg_lambda))
    mcw = float(np.float32(p.min_child_weight))
    t = _threshold_l1(g, float(np.float32(p.alpha)))
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = t * t / (h + lam)
    return np.where((h < mcw) | (h <= 0.0), 0.0, gain)


def find_splits(hists: np.ndarray, scale: float, cut_ptr: np.ndarray, cuts: np.ndarray,
                min_vals: np.ndarray, p: TrainParams) -> list[Split | None]:
    """Best split of each node, all nodes of a level at once.

    hists is the opened int64 fixed-point histogram (nodes, n_bins_total + 1, 2), the
    last bin row holding each node's totals; prefix sums are taken on the integers
    (exact) and decoded once.
    """
    n_nodes = hists.shape[0]
    n_bins = int(cut_ptr[-1])
    if n_bins == 0 or n_nodes == 0:
        return [None] * n_nodes
    hists = hists.astype(np.int64, copy=False)
    Gi, Hi = hists[:, :n_bins, 0], hists[:, :n_bins, 1]
    Gti, Hti = hists[:, n_bins, 0][:, None], hists[:, n_bins, 1][:, None]
    Gt, Ht = Gti / scale, Hti / scale
    mcw = float(np.float32(p.min_child_weight))
    root_gain = calc_gain(Gt, Ht, p)
    n_feat = len(cut_ptr) - 1
    seg = np.repeat(np.arange(n_feat), np.diff(cut_ptr))
    start, end = cut_ptr[:-1], cut_ptr[1:]

    zero = np.zeros((n_nodes, 1), dtype=np.int64)
    cg = np.concatenate([zero, np.cumsum(Gi, axis=1)], axis=1)
    ch = np.concatenate([zero, np.cumsum(Hi, axis=1)], axis=1)
    # forward: left = bins [start, i]
    lg = (cg[:, 1:] - cg[:, start][:, seg]) / scale
    lh = (ch[:, 1:] - ch[:, start][:, seg]) / scale
    fwd_gain = _loss(lg, lh, Gt - lg, Ht - lh, root_gain, mcw, p)
    # backward: right = bins [i, end); left = the rest, missing values included
    rg = (cg[:, end][:, seg] - cg[:, :-1]) / scale
    rh = (ch[:, end][:, seg] - ch[:, :-1]) / scale
    bwd_gain = _loss(Gt - rg, Ht - rh, rg, rh, root_gain, mcw, p)
    # the backward scan only runs where the node has missing values for the feature
    has_missing = ((cg[:, end] - cg[:, start]) != Gti) | ((ch[:, end] - ch[:, start]) != Hti)
    bwd_gain = np.where(has_missing[:, seg], bwd_gain, np.float32(-np.inf))

    # best per feature in XGBoost's scan order: forward bins ascending (first maximum),
    # then backward bins descending (last index of the maximum), backward winning only
    # when strictly better; then the first feature with the overall maximum.
    idx = np.arange(n_bins)
    fmax = np.maximum.reduceat(fwd_gain, start, axis=1)
    fidx = np.minimum.reduceat(np.where(fwd_gain == fmax[:, seg], idx, n_bins), start, axis=1)
    bmax = np.maximum.reduceat(bwd_gain, start, axis=1)
    bidx = np.maximum.reduceat(np.where(bwd_gain == bmax[:, seg], idx, -1), start, axis=1)
    use_bwd = bmax > fmax
    feat_best = np.where(use_bwd, bmax, fmax)
    best_feature = np.argmax(feat_best, axis=1)

    out: list[Split | None] = []
    for n in range(n_nodes):
        f = int(best_feature[n])
        gain = feat_best[n, f]
        if not gain > np.float32(0.0):
            out.append(None)
            continue
        s = int(start[f])
        gt, ht = float(Gt[n, 0]), float(Ht[n, 0])
        if use_bwd[n, f]:
            k = int(bidx[n, f])
            left = (gt - float(rg[n, k]), ht - float(rh[n, k]))
            split_bin, default_left = k - s - 1, True
            thr = min_vals[f] if k == s else cuts[k - 1]
        else:
            k = int(fidx[n, f])
            left = (float(lg[n, k]), float(lh[n, k]))
            split_bin, default_left, thr = k - s, False, cuts[k]
        right = (gt - left[0], ht - left[1])
        if gain <= RT_EPS or left[1] == 0.0 or right[1] == 0.0 or gain < np.float32(p.gamma):
            out.append(None)
            continue
        out.append(Split(feature=f, bin=split_bin, default_left=default_left,
                         threshold=float(np.float32(thr)), gain=float(gain), left=left, right=right))
    return out


def _loss(lg, lh, rg, rh, root_gain, mcw, p):
    valid = (lh >= mcw) & (rh >= mcw)
    gain = (calc_gain(lg, lh, p) + calc_gain(rg, rh, p) - root_gain).astype(np.float32)
    return np.where(valid & np.isfinite(gain), gain, np.float32(-np.inf))
