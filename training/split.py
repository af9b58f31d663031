"""Split finding on an opened (aggregate) histogram, with XGBoost hist's exact rules.

For every feature XGBoost scans the bins forward (missing values go right) and, when
the node has missing values for that feature, backward (missing values go left).  The
gain of a candidate is

    gain = G_L'^2 / (H_L + lambda) + G_R'^2 / (H_R + lambda) - G'^2 / (H + lambda)

with G' = soft-threshold(G, alpha), a side scoring 0 when its hessian is below
min_child_weight, computed in double and rounded to float32.  The first strict
maximum in the order (feature ascending; forward bins ascending; backward bins
descending) wins, which reproduces XGBoost's tie-breaking.  A split is applied only
when its gain exceeds 1e-6 and gamma, and both children have positive hessian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def calc_weight(g: float, h: float, p: TrainParams) -> float:
    """Leaf weight before the learning rate, as float32."""
    if h < float(np.float32(p.min_child_weight)) or h <= 0.0:
        return 0.0
    t = float(_threshold_l1(np.float64(g), float(np.float32(p.alpha))))
    return float(np.float32(-t / (h + float(np.float32(p.reg_lambda)))))


def leaf_value(g: float, h: float, p: TrainParams) -> float:
    return float(np.float32(calc_weight(g, h, p)) * np.float32(p.eta))


def find_split(hist: np.ndarray, scale: float, cut_ptr: np.ndarray, cuts: np.ndarray,
               min_vals: np.ndarray, p: TrainParams) -> Split | None:
    """Best split of one node.

    hist is the opened int64 fixed-point histogram (n_bins_total + 1, 2), last row =
    node totals; prefix sums are taken on the integers (exact) and decoded once.
    """
    n_bins = int(cut_ptr[-1])
    if n_bins == 0:
        return None
    hist = hist.astype(np.int64, copy=False)
    Gi, Hi = hist[:n_bins, 0], hist[:n_bins, 1]
    Gti, Hti = hist[n_bins, 0], hist[n_bins, 1]
    Gt, Ht = Gti / scale, Hti / scale
    mcw = float(np.float32(p.min_child_weight))
    root_gain = float(calc_gain(Gt, Ht, p))
    n_feat = len(cut_ptr) - 1
    seg = np.repeat(np.arange(n_feat), np.diff(cut_ptr))
    start, end = cut_ptr[:-1], cut_ptr[1:]

    cg = np.concatenate([[0], np.cumsum(Gi)])
    ch = np.concatenate([[0], np.cumsum(Hi)])
    # forward: left = bins [start, i]
    lgi, lhi = cg[1:] - cg[start][seg], ch[1:] - ch[start][seg]
    lg, lh = lgi / scale, lhi / scale
    fwd_gain = _loss(lg, lh, Gt - lg, Ht - lh, root_gain, mcw, p)
    # backward: right = bins [i, end); left = the rest, missing values included
    rgi, rhi = cg[end][seg] - cg[:-1], ch[end][seg] - ch[:-1]
    rg, rh = rgi / scale, rhi / scale
    bwd_gain = _loss(Gt - rg, Ht - rh, rg, rh, root_gain, mcw, p)
    # the backward scan only runs where the node has missing values for the feature
    has_missing = ((cg[end] - cg[start]) != Gti) | ((ch[end] - ch[start]) != Hti)
    bwd_gain = np.where(has_missing[seg], bwd_gain, np.float32(-np.inf))

    # best per feature in XGBoost's scan order: forward bins ascending (first maximum),
    # then backward bins descending (last index of the maximum), backward winning only
    # when strictly better; then the first feature with the overall maximum.
    idx = np.arange(n_bins)
    fmax = np.maximum.reduceat(fwd_gain, start)
    fidx = np.minimum.reduceat(np.where(fwd_gain == fmax[seg], idx, n_bins), start)
    bmax = np.maximum.reduceat(bwd_gain, start)
    bidx = np.maximum.reduceat(np.where(bwd_gain == bmax[seg], idx, -1), start)
    use_bwd = bmax > fmax
    feat_best = np.where(use_bwd, bmax, fmax)
    f = int(np.argmax(feat_best))
    best_gain = feat_best[f]
    if not best_gain > np.float32(0.0):
        return None
    best = ("bwd", f, int(bidx[f])) if use_bwd[f] else ("fwd", f, int(fidx[f]))
    kind, f, k = best
    s = int(start[f])
    if kind == "fwd":
        left = (float(lg[k]), float(lh[k]))
        split_bin, default_left, thr = k - s, False, cuts[k]
    else:
        left = (float(Gt - rg[k]), float(Ht - rh[k]))
        split_bin, default_left = k - s - 1, True
        thr = min_vals[f] if k == s else cuts[k - 1]
    right = (float(Gt - left[0]), float(Ht - left[1]))
    if best_gain <= RT_EPS or left[1] == 0.0 or right[1] == 0.0 or best_gain < np.float32(p.gamma):
        return None
    return Split(feature=f, bin=split_bin, default_left=default_left,
                 threshold=float(np.float32(thr)), gain=float(best_gain), left=left, right=right)


def _loss(lg, lh, rg, rh, root_gain, mcw, p):
    valid = (lh >= mcw) & (rh >= mcw)
    gain = (calc_gain(lg, lh, p) + calc_gain(rg, rh, p) - root_gain).astype(np.float32)
    return np.where(valid & np.isfinite(gain), gain, np.float32(-np.inf))
