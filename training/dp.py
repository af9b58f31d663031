"""Differentially private training: contribution bounds, the budget rule, the accountant.

Horizontal: neighbouring datasets differ by one row (added or removed, at any party).
Every value that is opened is a sum over rows, made noisy inside the secure computation
before anyone sees it (each compute server adds its own N_Z noise to its share; the
README's "Differential privacy" section says what this guarantees to whom).  Vertical:
one row's values in a feature holder's columns replaced; that holder noises the sums
the label holder opens (NoisyHistograms).  Vertical under dp_split="random": no such
sum exists; the label holder releases each tree's leaf totals and the intercept sums
with its own noise (noisy_totals, noisy_intercept), for one row's g and h added or
removed, as the horizontal level and intercept releases.  The horizontal releases:

    bins       one per bin-agreement level (at most BIN_LEVELS): per feature the counts
               of the requested cells; a row adds 1 to one cell per feature.
    intercept  one (when base_score is not given): the objective's intercept sums;
               a row adds at most STATS_BOUND to them in L2 (weights capped at 1).
    level      one per histogram request of every tree (max_depth of them, max_builds
               under lossguide, one under dp_split="random"): the G/H histograms of
               the built nodes; a row lies in one node and adds its g to one bin per
               released feature (released_features: all, the tree's colsample_bytree
               sample, or none under dp_split="random") and to the node total, and its
               h likewise.
    select     one under dp_select_features (dp_split="random"): the root's
               G/H sums at the base margin, before the first tree, over SELECT_GROUPS
               groups of consecutive bins per feature (select_groups, public); a row
               adds its g to one group per feature and to the total (F + 1
               coordinates), and its h likewise.  The learner keeps the k features of
               largest root split gain between groups (feature_scores, top_features:
               post-processing) and draws every random split among them.  Wide groups
               keep the noise on a prefix small (at most SELECT_GROUPS - 1 noises).
               Vertical: the label holder opens the root histogram of the feature
               holders' columns through the permutation protocol, each holder noising
               its prefix sums as in the histogram search (sensitivity sqrt(2 * 2F_j),
               its feature values against the label holder), then groups it with its
               own columns' and adds its own noise (for one row's g and h, as here).

Contribution bounds (`bounds`): per row |g| <= Cg and 0 <= h <= Ch after the row
weight, clipped where a row exceeds them (the party warns with the count):
logistic objectives Cg = 1, Ch = 1/4 (already true for weights <= 1);
multi-class Cg = 1, Ch = 1/2; reg:squarederror Cg = dp_clip, Ch = 1.  Other
objectives are refused under DP.

Noise: coordinate j of a release gets N_Z(0, sigma_j^2) on its fixed-point grid, with
sigma_j = z * sqrt(2m) * B_j when one row's change moves m coordinates of each of the
two kinds (g and h; Plan.touched: horizontally the released features, all of them or
the tree's colsample_bytree sample, plus the node total), B_j the bound of coordinate j on the grid, so
sum_j (D_j / sigma_j)^2 <= 1 / z^2 and
each release is a Gaussian mechanism of noise multiplier z (CKS Theorem 14 for the
discrete Gaussian).  Budget rule: every release gets the same z, the smallest for which
dp-accounting's RDP accountant, composing all planned releases, gives at most
dp_epsilon at dp_delta; the selection release alone gets z / sqrt(SELECT_WEIGHT), which
in RDP (alpha / 2z^2 per Gaussian release) costs exactly SELECT_WEIGHT ordinary releases.  Leaf values, gains and the model are computed from the noisy
G/H only: post-processing, no further cost.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ppxgb.errors import ParameterError
from ppxgb.model import Ensemble

BIN_LEVELS = 2          # bin agreement under DP stops at level 2 (training/binning.py)
STATS_BITS_DEFAULT = 16
STATS_BOUND = math.sqrt(2.0)     # a row's (w * label-part, w) with w <= 1
MECHANISM = "discrete Gaussian (CKS), RDP accountant of dp-accounting"
#: the selection release's share of the budget, in ordinary releases (README: chosen by
#: validation AUC at epsilon = 1, benchmarks/RESULTS_dp.md)
SELECT_WEIGHT = 60
SELECT_GROUPS = 4       # groups of consecutive bins per feature in the selection release

#: objective -> (Cg, Ch); None: the user's dp_clip
BOUNDS: dict[str, tuple[float | None, float]] = {
    "binary:logistic": (1.0, 0.25),
    "reg:logistic": (1.0, 0.25),
    "binary:logitraw": (1.0, 0.25),
    "multi:softprob": (1.0, 0.5),
    "multi:softmax": (1.0, 0.5),
    "reg:squarederror": (None, 1.0),
}


class BudgetExceeded(ParameterError):
    """Opening one more value would spend more than (dp_epsilon, dp_delta)."""


def check_params(p: Any) -> None:
    """Refuse configurations whose sensitivity ppxgb cannot bound (p: TrainParams)."""
    if p.dp_epsilon is None:
        return
    if p.objective not in BOUNDS:
        raise ParameterError(f"dp_epsilon: differentially private training supports objectives "
                             f"{sorted(BOUNDS)}, got {p.objective!r}")
    if p.scale_pos_weight != 1.0:
        raise ParameterError("scale_pos_weight: must be 1 under dp_epsilon (it scales a row's "
                             "contribution beyond the documented bounds)")
    if p.dp_clip != 1.0 and BOUNDS[p.objective][0] is not None:
        raise ParameterError(f"dp_clip: {p.objective} has fixed bounds (|g| <= {BOUNDS[p.objective][0]:g}); "
                             f"dp_clip applies to reg:squarederror only")
    if p.dp_split == "random" and (p.lossguide or p.max_leaves or p.monotone_constraints is not None
                                   or p.interaction_constraints is not None):
        raise ParameterError("dp_split: 'random' grows full depthwise trees without constraints "
                             "(grow_policy, max_leaves, monotone and interaction constraints must be unset)")
    if p.dp_select_features and p.n_groups > 1:
        raise ParameterError("dp_select_features: scores features by one output's gradients; not available "
                             f"with {p.objective} (num_class > 1)")
    if p.objective == "reg:squarederror" and p.base_score is None:
        raise ParameterError("base_score: reg:squarederror under dp_epsilon needs base_score "
                             "(the label mean would need a bound on the labels)")


def bounds(p: Any) -> tuple[float, float]:
    """(Cg, Ch) of the objective under p."""
    cg, ch = BOUNDS[p.objective]
    return (p.dp_clip if cg is None else cg), ch


def rdp_epsilon(z: float, count: int, delta: float, single: tuple[float, ...] = ()) -> float:
    """epsilon at delta of `count` Gaussian releases of noise multiplier z, composed with
    one Gaussian release of each noise multiplier in `single` (dp-accounting)."""
    import dp_accounting
    from dp_accounting import rdp

    if count == 0 and not single:
        return 0.0
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.ComposedDpEvent(
        [dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), count)]
        + [dp_accounting.GaussianDpEvent(s) for s in single]))
    return float(acc.get_epsilon(delta))


def noise_multiplier(epsilon: float, delta: float, count: int, select: bool = False) -> float:
    """The smallest z (to 0.1%) with rdp_epsilon(z, count, delta) <= epsilon; with select,
    one more release of multiplier z / sqrt(SELECT_WEIGHT) composed with them."""
    lo, hi = 1e-3, 1e7

    def eps(z: float) -> float:
        return rdp_epsilon(z, count, delta, (z / math.sqrt(SELECT_WEIGHT),) if select else ())

    if eps(hi) > epsilon:
        raise ParameterError.bad("dp_epsilon", f"a budget reachable by {count + select} releases", epsilon)
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        if eps(mid) <= epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def released_count(p: Any, n_features: int) -> int:
    """Features whose bins a horizontal level release carries: under colsample_bytree < 1
    only the tree's sampled ones (released_features; the rest are sent as zeros, which no
    row changes), so one row moves that many bins, not n_features.  colsample_bylevel
    and bynode do not shrink it: the sibling of a built child is its parent minus the
    child, so a level needs its parent's histogram over every feature the tree may use."""
    if p.dp_split == "random":
        return 0
    if p.colsample_bytree >= 1.0 or n_features == 0:
        return n_features
    return max(1, int(p.colsample_bytree * n_features))


def released_features(p: Any, tree_set: np.ndarray | None) -> np.ndarray | None:
    """The features whose bins a tree's level releases carry: under colsample_bytree < 1
    the tree's sample (tree_set, the grower's public ColumnSampler draw from the seed);
    under dp_split="random" none (only node totals); None: all."""
    if p.dp_split == "random":
        return np.zeros(0, np.int64)
    return tree_set if p.colsample_bytree < 1.0 else None


def zero_unreleased(hist: np.ndarray, bins_per_feature: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """A (nodes, n_bins + 1, 2) histogram with the bins of features outside `keep` set
    to zero (the last row, the node totals, kept); unchanged when keep is None."""
    if keep is None:
        return hist
    owner = np.repeat(np.arange(len(bins_per_feature)), bins_per_feature)
    if hist.shape[1] != len(owner) + 1:
        raise ParameterError.bad("hist", f"{len(owner) + 1} rows per node (bins and total)", hist.shape[1])
    out = hist.copy()
    out[:, :-1][:, ~np.isin(owner, keep)] = 0
    return out


@dataclass(frozen=True)
class Plan:
    """The releases of one training and their common noise multiplier z."""
    epsilon: float
    delta: float
    releases: int
    z: float
    cg: float
    ch: float
    n_features: int
    bits: int
    stats_bits: int = STATS_BITS_DEFAULT
    touched: int = 0        # histogram coordinates of each kind (g, h) one row's change moves
    select: int = 0         # 1: one selection release planned (counted in releases)

    @classmethod
    def make(cls, p: Any, n_trees: int, n_features: int, stats_bits: int = STATS_BITS_DEFAULT,
             vertical: bool = False) -> "Plan":
        """Horizontal: a row added or removed touches its bin of every feature and the node
        total, and the bins and intercept are released too.  Vertical (a feature holder's
        columns, against the label holder): one row's feature values replaced move its g
        and h between two bins of each of the holder's features; the holder releases only
        histograms (its cuts are its own, the intercept is the label holder's).  Under
        dp_select_features one selection release more, of multiplier z_select."""
        if isinstance(n_trees, bool) or not isinstance(n_trees, int) or n_trees < 0:
            raise ParameterError.bad("n_trees", "an int >= 0", n_trees)
        per_tree = getattr(p, "max_builds", p.max_depth)       # histogram requests of one tree
        random = p.dp_split == "random"
        if random:
            per_tree = 1                                        # the leaves' totals
        intercept = int(p.base_score is None)
        select = int(bool(p.dp_select_features))
        if vertical:        # under "random" the label holder releases the leaves' totals and the intercept
            count = n_trees * per_tree + (intercept if random else 0)
        else:
            count = n_trees * per_tree + BIN_LEVELS + intercept
        cg, ch = bounds(p)
        return cls(p.dp_epsilon, p.dp_delta, count + select,
                   noise_multiplier(p.dp_epsilon, p.dp_delta, count, bool(select)),
                   cg, ch, n_features, p.fixed_point_bits, stats_bits,
                   2 * n_features if vertical and not random else released_count(p, n_features) + 1, select)

    @property
    def z_select(self) -> float:
        """The selection release's noise multiplier (the budget rule in the module docstring)."""
        return self.z / math.sqrt(SELECT_WEIGHT)

    # sigmas on each release's grid (cycled over its coordinates)
    def level_sigmas(self) -> list[float]:
        m = math.sqrt(2.0 * self.touched)
        scale = 2.0 ** self.bits
        return [self.z * m * math.ceil(self.cg * scale), self.z * m * math.ceil(self.ch * scale)]

    def select_sigmas(self, touched: int | None = None) -> list[float]:
        """The selection release: the root sums of every feature, n_features + 1
        coordinates of each kind (touched: another count, a vertical feature holder's 2F)."""
        m = math.sqrt(2.0 * (self.n_features + 1 if touched is None else touched))
        scale = 2.0 ** self.bits
        return [self.z_select * m * math.ceil(self.cg * scale), self.z_select * m * math.ceil(self.ch * scale)]

    def bins_sigmas(self) -> list[float]:
        return [self.z * math.sqrt(max(self.n_features, 1)) * 2.0 ** self.stats_bits]

    def intercept_sigmas(self, n_stats: int) -> list[float]:
        # per-party sums are rounded to the grid: one more unit per coordinate
        return [self.z * (STATS_BOUND * 2.0 ** self.stats_bits + math.sqrt(n_stats))]

    def spent(self, count: int, selected: bool = False) -> float:
        """epsilon of `count` releases, the selection release among them when selected."""
        single = (self.z_select,) if selected else ()
        return rdp_epsilon(self.z, count - len(single), self.delta, single)

    def describe(self) -> dict[str, str]:
        select = {"dp_select_noise_multiplier": f"{self.z_select:.6g}"} if self.select else {}
        return {"dp_mechanism": MECHANISM, "dp_noise_multiplier": f"{self.z:.6g}",
                "dp_releases_planned": str(self.releases), **select}


class Accountant:
    """Counts releases against the plan; refuses the one that would exceed it (the
    selection release at most once, and only when planned)."""

    def __init__(self, plan: Plan, who: str):
        self.plan, self.who, self.used, self.selected = plan, who, 0, False

    def charge(self, what: str) -> None:
        select = what == "select"
        ordinary = self.used - self.selected + (not select)
        planned = ordinary <= self.plan.releases - self.plan.select and (
            not select or (self.plan.select and not self.selected))
        if not planned or self.plan.spent(self.used + 1, self.selected or select) > \
                self.plan.epsilon * (1 + 1e-9):
            raise BudgetExceeded(
                f"dp_epsilon: {self.who} refuses to open {what}: it would be release {self.used + 1} "
                f"of a budget (epsilon={self.plan.epsilon:g}, delta={self.plan.delta:g}) planned for "
                f"{self.plan.releases}" + (" (the selection release is not planned or was made)" if select else ""))
        self.used += 1
        self.selected = self.selected or select

    def attributes(self) -> dict[str, str]:
        """What the Booster carries (booster.attr)."""
        return {"dp_epsilon_spent": f"{self.plan.spent(self.used, self.selected):.6g}",
                "dp_delta": f"{self.plan.delta:g}",
                "dp_epsilon_budget": f"{self.plan.epsilon:g}", "dp_releases": str(self.used),
                **self.plan.describe()}


# ------------------------------------------------------------------ the data side
def clip_gh(g: np.ndarray, h: np.ndarray, cg: float, ch: float, warn: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """g to [-cg, cg], h to [0, ch], and the number of rows clipped; with warn, a
    warning names that number (the encoder warns at the first round that clips)."""
    over = (np.abs(g) > cg) | (h > ch) | (h < 0)
    rows = int(over.reshape(len(over), -1).any(axis=1).sum())
    if rows and warn:
        warnings.warn(f"{rows} of {len(g)} rows clipped to the DP bounds |g| <= {cg:g}, 0 <= h <= {ch:g} "
                      f"(dp_clip; later rounds are not reported)", stacklevel=3)
    return np.clip(g, -cg, cg).astype(g.dtype), np.clip(h, 0.0, ch).astype(h.dtype), rows


def capped_weights(w: np.ndarray | None, who: str) -> np.ndarray | None:
    """Sample weights capped at 1 (a row's intercept contribution bound); warns if any is."""
    if w is None or not np.any(w > 1):
        return w
    warnings.warn(f"{who}: {int((w > 1).sum())} sample weights capped at 1 for differential privacy",
                  stacklevel=2)
    return np.minimum(w, np.float32(1.0))


def intercept_vector(stats: np.ndarray, stats_bits: int) -> np.ndarray:
    """Under DP the intercept sums travel as one limb on the stats grid (the low limb,
    which carries the rounding remainder exactly, is sent as zeros): the layout of
    gradients.intercept_limbs with a known sensitivity."""
    stats = np.asarray(stats, dtype=np.float64)
    hi = np.rint(stats * 2.0 ** stats_bits) / 2.0 ** stats_bits
    return np.concatenate([hi, np.zeros_like(hi)])


def clamp_intercept(totals: np.ndarray) -> np.ndarray:
    """Post-processing of the noisy intercept limbs ([hi..., lo...] as intercept_vector
    sends them): every statistic of a DP objective is a sum of per-row terms in [0, w],
    the last the total weight, so each is clamped to [0, total] and the total to >= 1
    (noise could make it negative on small data); the low limbs carry only noise."""
    totals = np.asarray(totals, dtype=np.float64).copy()
    half = len(totals) // 2
    total = max(totals[half - 1], 1.0)
    totals[:half] = np.clip(totals[:half], 0.0, total)
    totals[half - 1] = total
    totals[half:] = 0.0
    return totals


def drop_noise_floor(counts: np.ndarray, sigma_counts: float, level: int = 1) -> np.ndarray:
    """Post-processing of noisy bin-agreement counts: rounded and at least 0; at level 1
    (cells of sign and exponent, among them the infinities and NaNs) a cell below 5
    sigma is treated as empty (noise alone would make every cell look occupied; a
    noise-only cell passes 5 sigma with probability 3e-7).  Finer levels only refine
    cells that passed, so their noisy counts are kept (a cell there holds few rows)."""
    c = np.maximum(np.rint(counts), 0.0)
    if level == 1:
        c[c < 5.0 * sigma_counts] = 0.0
    return c


# ------------------------------------------------------------------ the roles' glue
#: the stages whose answers are opened sums (each one release)
RELEASES = ("bins", "intercept", "level", "select")


def accountant_for(p: Any, n_trees: int | None, n_features: int, who: str,
                   stats_bits: int = STATS_BITS_DEFAULT, vertical: bool = False) -> Accountant | None:
    """The role's accountant under dp_epsilon (None without DP)."""
    if p.dp_epsilon is None:
        return None
    check_params(p)
    if n_trees is None:
        raise ParameterError.bad("n_trees", "the number of trees of the training (dp_epsilon plans "
                                 "the budget by it)", None)
    return Accountant(Plan.make(p, n_trees, n_features, stats_bits, vertical), who)


def release_sigmas(acc: Accountant | None, stage: str, n_words: int = 0) -> list[float] | None:
    """Charge one release of `stage` and return the noise sigmas of its coordinates
    (None without DP, or for a stage that opens nothing to noise)."""
    if acc is not None and stage == "evaluate":
        raise ParameterError("evals: the metric statistics of validation rows are opened without noise; "
                             "eval sets are not available under dp_epsilon")
    if acc is None or stage not in RELEASES:
        return None
    acc.charge(stage)
    if stage == "level":
        return acc.plan.level_sigmas()
    if stage == "select":
        return acc.plan.select_sigmas()
    if stage == "bins":
        return acc.plan.bins_sigmas()
    return acc.plan.intercept_sigmas(n_words // 2)


def prefix_noise(sums: list[np.ndarray], sigmas: list[float], rng=None) -> list[np.ndarray]:
    """Vertical: a feature holder's shares of prefix sums at segment ends (uint64, one
    (segments, 2) array per feature) plus noise whose successive differences are
    independent N_Z: the label holder differences the prefix sums, so every (node, bin)
    sum it opens carries one fresh noise of the plan's sigma."""
    from ppxgb.crypto.dgauss import noise_vector

    out = []
    for s in sums:
        noise = noise_vector(sigmas, s.size, rng).reshape(s.shape)
        out.append(s + np.cumsum(noise, axis=0).view(np.uint64))
    return out


def noisy_totals(hist: np.ndarray, acc: Accountant, rng=None) -> np.ndarray:
    """Vertical, dp_split="random": the label holder's one release of a tree, its leaves'
    G/H totals (hist's last row per node, int64 on the gradient grid) with its own N_Z
    noise of the plan's level sigmas added; every bin row stays zero."""
    from ppxgb.crypto.dgauss import noise_vector

    out = np.zeros_like(hist)
    out[:, -1] = hist[:, -1] + noise_vector(release_sigmas(acc, "level"), 2 * len(hist), rng).reshape(-1, 2)
    return out


def noisy_selection(hist: np.ndarray, cut_ptr: np.ndarray, acc: Accountant, rng=None) -> np.ndarray:
    """Vertical, dp_select_features: the label holder's selection release, the root
    histogram (n_bins + 1, 2) int64 over every party's features (the feature holders'
    already noised by them) grouped by select_groups, with its own N_Z noise of the
    selection's sigmas for all n_features + 1 coordinates (charged by the caller)."""
    from ppxgb.crypto.dgauss import noise_vector

    grouped = group_histogram(hist, cut_ptr)
    sigmas = acc.plan.select_sigmas(len(cut_ptr))           # n_features + 1
    return grouped + noise_vector(sigmas, grouped.size, rng).reshape(grouped.shape)


def noisy_intercept(stats: np.ndarray, acc: Accountant, rng=None) -> np.ndarray:
    """Vertical, dp_split="random": the intercept sums the label holder releases, as the
    horizontal coordinator opens them (intercept_vector on the stats grid, one N_Z noise
    of the plan's sigma per coordinate, then clamp_intercept), in join_limbs' layout."""
    from ppxgb.crypto.dgauss import noise_vector

    bits = acc.plan.stats_bits
    vec = intercept_vector(stats, bits)
    grid = np.rint(vec * 2.0 ** bits).astype(np.int64)
    grid += noise_vector(release_sigmas(acc, "intercept", len(vec)), len(vec), rng)
    return clamp_intercept(grid / 2.0 ** bits)


class NoisyHistograms:
    """A feature holder's transport under dp_epsilon: every "vsum" it sends is charged to
    its accountant (refused beyond the plan) and its prefix sums get prefix_noise; every
    other call goes to the wrapped transport unchanged.  select: its only vsum is the
    selection release (dp_split="random"), noised with the selection's multiplier for
    this holder's 2F coordinates of each kind."""

    def __init__(self, transport: Any, acc: Accountant, rng=None, select: bool = False):
        self._t, self._acc, self._rng, self._select = transport, acc, rng, select

    def send(self, src: str, dst: str, stage: str, payload: dict[str, Any]) -> None:
        if stage == "vsum" and self._select:
            self._acc.charge("select")
            sigmas = self._acc.plan.select_sigmas(2 * self._acc.plan.n_features)
            payload = {**payload, "s": prefix_noise(list(payload["s"]), sigmas, self._rng)}
        elif stage == "vsum":
            sigmas = release_sigmas(self._acc, "level")
            payload = {**payload, "s": prefix_noise(list(payload["s"]), sigmas, self._rng)}
        self._t.send(src, dst, stage, payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def learner_params(p: Any, acc: Accountant | None, n_noises: int, touched: int | None = None) -> Any:
    """p with min_child_weight raised to 3 standard deviations of the noise on a child's
    hessian sum (a prefix of up to max_bin + 1 noisy bins, each carrying n_noises
    independent noises): a split whose child holds less is noise, and its leaf value
    -G / (H + lambda) would be unbounded.  Post-processing, no budget.  touched: the
    plan's touched count for another holder's sums (vertical)."""
    if acc is None:
        return p
    from dataclasses import replace

    plan = acc.plan if touched is None else replace(acc.plan, touched=touched)
    sigma_h = plan.level_sigmas()[1] / 2.0 ** plan.bits
    prefix = 1 if p.dp_split == "random" else p.max_bin + 1      # random: a leaf is one noisy total
    floor = 3.0 * math.sqrt(n_noises * prefix) * sigma_h
    return replace(p, min_child_weight=max(p.min_child_weight, floor))


def select_groups(cut_ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The public grouping of the selection release: (group_of_bin, group_ptr).  Feature
    f's bins are cut into min(SELECT_GROUPS, its bins) runs of consecutive bins of
    near-equal length (bin agreement's quantile bins: near-equal row counts);
    group_of_bin[j] is the global group of global bin j, group_ptr[f]:group_ptr[f + 1]
    feature f's groups."""
    sizes = np.diff(np.asarray(cut_ptr, dtype=np.int64))
    groups = np.minimum(sizes, SELECT_GROUPS)
    group_ptr = np.concatenate([[0], np.cumsum(groups)]).astype(np.int64)
    of_bin = [group_ptr[f] + (np.arange(n) * groups[f]) // max(n, 1) for f, n in enumerate(sizes)]
    return (np.concatenate(of_bin).astype(np.int64) if len(of_bin) else np.zeros(0, np.int64)), group_ptr


def group_histogram(hist: np.ndarray, cut_ptr: np.ndarray) -> np.ndarray:
    """A root histogram (n_bins + 1, 2) summed over select_groups (n_groups + 1, 2), the
    last row the totals: what a party sends for the selection release."""
    of_bin, group_ptr = select_groups(cut_ptr)
    out = np.zeros((int(group_ptr[-1]) + 1, 2), dtype=hist.dtype)
    np.add.at(out, of_bin, hist[:-1])
    out[-1] = hist[-1]
    return out


def selection_g_variance(acc: Accountant, cut_ptr: np.ndarray, n_noises: int,
                         holder_features: list[np.ndarray] = ()) -> np.ndarray:
    """The noise variance (value units) of each G the learner scores (select_groups' rows,
    then the total): n_noises noises of the selection's sigma (horizontal: the servers';
    vertical: the label holder's, for all features), plus, for each feature holder's
    features (holder_features: global indices), one noise per bin of a group of the
    holder's own sigma (prefix_noise: each bin sum carries a fresh one)."""
    scale = 2.0 ** acc.plan.bits
    n_features = len(cut_ptr) - 1
    of_bin, group_ptr = select_groups(cut_ptr)
    var = np.full(int(group_ptr[-1]) + 1, n_noises * (acc.plan.select_sigmas(n_features + 1)[0] / scale) ** 2)
    bins_per_group = np.bincount(of_bin, minlength=int(group_ptr[-1]))
    for feats in holder_features:
        sigma = acc.plan.select_sigmas(2 * len(feats))[0] / scale
        for f in feats:
            at = slice(int(group_ptr[f]), int(group_ptr[f + 1]))
            var[at] += bins_per_group[at] * sigma ** 2
    return var


def selection_floor(acc: Accountant, n_noises: int, n_features: int | None = None) -> float:
    """The smallest hessian sum feature_scores divides a child's G^2 by: 3 standard
    deviations of the noise on a prefix of up to SELECT_GROUPS groups of the selection
    release, each carrying n_noises independent noises (a noisy H near 0, or below it,
    would make any G look like a large gain); n_features:
    the release's features when the plan's count is another (the vertical label holder)."""
    touched = None if n_features is None else n_features + 1
    sigma_h = acc.plan.select_sigmas(touched)[1] / 2.0 ** acc.plan.bits
    return 3.0 * math.sqrt(n_noises * SELECT_GROUPS) * sigma_h


def feature_scores(hist: np.ndarray, group_ptr: np.ndarray, reg_lambda: float, floor: float,
                   g_var: np.ndarray | None = None) -> np.ndarray:
    """Per feature the largest gain of one split of the root, from its (n_groups + 1, 2) G/H
    sums over select_groups (float, the last row the totals): over every cut b between
    groups (groups <= b left, the rest and the missing values right),
    G_L^2/(H_L + lambda) + G_R^2/(H_R + lambda) - G^2/(H + lambda), each child's H taken
    as at least `floor` (a cut with a light child is shrunk, not dropped: a rare binary
    feature keeps its score); -inf for a feature with one group.  g_var: the
    noise variance of each row's G (None: none); each squared sum is debiased by its
    noise variance (E[(G + e)^2] = G^2 + var e), so a feature whose sums carry more noise
    (a vertical feature holder's) does not rank higher for it.  Post-processing."""
    hist = np.asarray(hist, dtype=np.float64)
    var = np.zeros(len(hist)) if g_var is None else np.asarray(g_var, dtype=np.float64)
    G, H = hist[-1]
    parent = (G * G - var[-1]) / (H + reg_lambda)
    out = np.full(len(group_ptr) - 1, -np.inf)
    for f in range(len(out)):
        lo, hi = int(group_ptr[f]), int(group_ptr[f + 1])
        gl = np.cumsum(hist[lo:hi, 0])[:-1]
        hl = np.cumsum(hist[lo:hi, 1])[:-1]
        vl = np.cumsum(var[lo:hi])[:-1]
        if len(gl):
            hl, hr = np.maximum(hl, floor), np.maximum(H - hl, floor)
            gain = (gl ** 2 - vl) / (hl + reg_lambda) + ((G - gl) ** 2 - vl - var[-1]) / (hr + reg_lambda) - parent
            out[f] = gain.max()
    return out


def top_features(scores: np.ndarray, k: int) -> np.ndarray:
    """A bool mask of the k features of largest score (ties: the lower index first)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    keep = np.zeros(len(scores), dtype=np.bool_)
    keep[order[:k]] = True
    return keep


def with_attributes(ensemble: Any, acc: Accountant | None) -> Any:
    """The Ensemble carrying the spent budget in its XGBoost attributes (unchanged without DP)."""
    if acc is None:
        return ensemble
    return AttributedEnsemble(**{f.name: getattr(ensemble, f.name) for f in fields(ensemble)},
                              attributes=acc.attributes())


@dataclass(frozen=True)
class AttributedEnsemble(Ensemble):
    """An Ensemble whose XGBoost JSON carries learner attributes (booster.attr)."""
    attributes: dict = field(default_factory=dict)

    def to_xgboost_json(self) -> dict[str, Any]:
        doc = super().to_xgboost_json()
        doc["learner"]["attributes"] = {**doc["learner"].get("attributes", {}), **self.attributes}
        return doc
