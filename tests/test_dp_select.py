"""Differentially private feature selection (dp_select_features, training/dp.py).

One release before the first tree opens the root's G/H sums of every feature over
public groups of bins; the learner keeps the k features of largest root split gain and
draws every random split among them.  Checked here: its place in the accountant (as
dp-accounting composes it), its noise in what the coordinator opens (variance over many
runs, with a mutant that sends it un-noised), the budget refusals, and, with noise far
below the gaps, the selected set against numpy's top k of the same score.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from helpers import recorded_federation, split_rows
from test_dp import PARAMS, _noise, _run, _steps, coalition_recovers_exact, rdp_eps_slightly_less_noise
from ppxgb.errors import ParameterError, ProtocolError
from ppxgb.training import dp
from ppxgb.training.horizontal import coordinator as coord_mod
from ppxgb.training.horizontal import run_federation
from ppxgb.training.params import TrainParams

SELECT = {**PARAMS, "dp_split": "random", "max_depth": 2, "max_bin": 8, "dp_select_features": 3}


def signal_data(n=4000, f=8, seed=0):
    """Features 1, 4 and 6 carry signal of clearly different strength, the rest none."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = (2.0 * X[:, 4] + 1.0 * X[:, 1] + 0.5 * X[:, 6] + rng.normal(size=n) > 0).astype(np.float32)
    return split_rows(X, y, [n // 2, n - n // 2])


def select_steps(log, plan):
    """The steps of the log whose parties announced the selection release's sigmas."""
    return [s for s in _steps(log).values() if s["sigmas"] == pytest.approx(plan.select_sigmas())]


def used_features(model) -> set[int]:
    trees = model.to_xgboost_json()["learner"]["gradient_booster"]["model"]["trees"]
    return {int(f) for t in trees for f, l in zip(t["split_indices"], t["left_children"]) if l >= 0}


# ------------------------------------------------------------------ the accountant
def test_plan_with_selection_equals_dp_accounting_and_costs_select_weight_releases():
    p = TrainParams.from_dict({**SELECT, "dp_epsilon": 1.0})
    plan = dp.Plan.make(p, n_trees=20, n_features=30)
    assert plan.releases == dp.BIN_LEVELS + 1 + 20 + 1 and plan.select == 1
    assert plan.z_select == pytest.approx(plan.z / math.sqrt(dp.SELECT_WEIGHT))
    acc = rdp.RdpAccountant()
    for _ in range(plan.releases - 1):
        acc.compose(dp_accounting.GaussianDpEvent(plan.z))
    acc.compose(dp_accounting.GaussianDpEvent(plan.z_select))
    direct = acc.get_epsilon(1e-5)
    assert plan.spent(plan.releases, selected=True) == pytest.approx(direct, rel=1e-9)
    assert direct <= 1.0
    # the budget rule: the selection costs exactly SELECT_WEIGHT ordinary releases (RDP)
    same = dp.rdp_epsilon(plan.z, plan.releases - 1 + dp.SELECT_WEIGHT, 1e-5)
    assert direct == pytest.approx(same, rel=1e-6)
    assert dp.rdp_epsilon(plan.z * 0.99, plan.releases - 1 + dp.SELECT_WEIGHT, 1e-5) > 1.0
    # the selection's noise: every feature's group and the total, g and h
    assert plan.select_sigmas()[0] == pytest.approx(plan.z_select * math.sqrt(2 * 31) * 2.0 ** 32)
    assert rdp_eps_slightly_less_noise(dp.Plan.make(TrainParams.from_dict({**SELECT, "dp_select_features": 0}),
                                                    20, 30)) > 2.0


def test_booster_carries_the_budget_spent_with_the_selection():
    log, model = recorded_federation(run_federation, SELECT, signal_data(), 4, 2)
    attrs = model.to_booster().attributes()
    z, z_sel = float(attrs["dp_noise_multiplier"]), float(attrs["dp_select_noise_multiplier"])
    assert int(attrs["dp_releases"]) == dp.BIN_LEVELS + 1 + 4 + 1 == int(attrs["dp_releases_planned"])
    assert len({m.payload["step"] for m in log if m.stage == "sum" and m.dst == "coordinator"}) == \
        int(attrs["dp_releases"])
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), dp.BIN_LEVELS + 1 + 4),
        dp_accounting.GaussianDpEvent(z_sel)]))
    assert float(attrs["dp_epsilon_spent"]) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-4)
    assert float(attrs["dp_epsilon_spent"]) <= SELECT["dp_epsilon"]
    assert used_features(model) and len(used_features(model)) <= 3


# ------------------------------------------------------------------ what is opened
def selection_noise(log, plan) -> tuple[np.ndarray, float]:
    """Each server's noise on the selection release over its sigmas (N(0, 1)-like), and
    the fraction of opened coordinates that equal the exact sums."""
    (step,) = select_steps(log, plan)
    sig = np.asarray(step["sigmas"], dtype=np.float64)
    ratios = [(_noise(step, s).astype(np.float64).reshape(-1, 2) / sig).ravel() for s in step["sent"]]
    total, exact = sum(step["sent"].values()), sum(step["recv"].values())
    return np.concatenate(ratios), float(np.mean(total == exact))


def exact_selection_sums(log, parties, base_margin: float) -> np.ndarray:
    """numpy: the root's (g, h) sums per group of bins at the base margin, pooled rows,
    from the cuts the coordinator broadcast (bins as binning.assign_bins: value < cut)."""
    cuts = next(m.payload["cuts"] for m in log if m.stage == "cuts")
    return grouped_sums(np.vstack([x for x, _ in parties]), np.concatenate([y for _, y in parties]),
                        cuts, base_margin)


def grouped_sums(X, y, cuts, base_margin: float) -> np.ndarray:
    prob = 1.0 / (1.0 + np.exp(-base_margin))
    g, h = prob - y, np.full(len(y), prob * (1.0 - prob))
    rows = []
    for f, c in enumerate(cuts):
        c = np.asarray(c, dtype=np.float32)
        b = np.minimum(np.searchsorted(c, X[:, f], side="right"), len(c) - 1)
        groups = min(len(c), dp.SELECT_GROUPS)
        grp = (b * groups) // len(c)                      # bin i of n in group floor(i * groups / n)
        rows += [[g[grp == j].sum(), h[grp == j].sum()] for j in range(groups)]
    return np.array(rows + [[g.sum(), h.sum()]])


def test_selection_release_carries_the_plans_noise_over_many_runs():
    plan = dp.Plan.make(TrainParams.from_dict(SELECT), 1, 8)
    ratios = []
    for seed in range(6):
        parties = signal_data(seed=seed)
        log, model = recorded_federation(run_federation, {**SELECT, "seed": seed}, parties, 1, 2)
        r, equal = selection_noise(log, plan)
        assert equal < 0.01                                       # no un-noised sum opened
        ratios.append(r)
        # what was noised is the root's sums per group of bins (the shares rebuilt)
        (step,) = select_steps(log, plan)
        exact = sum(step["recv"].values()).view(np.int64).reshape(-1, 2) / 2.0 ** 32
        margin = math.log(model.base_score[0] / (1.0 - model.base_score[0]))
        np.testing.assert_allclose(exact, exact_selection_sums(log, parties, margin), atol=2e-3)
    r = np.concatenate(ratios)
    assert abs(np.mean(r ** 2) - 1.0) < 6 * np.sqrt(2.0 / r.size) + 0.02, np.mean(r ** 2)


def test_mutant_selection_without_noise_is_caught(monkeypatch):
    real = dp.release_sigmas

    def no_select_noise(acc, stage, n_words=0):
        sigmas = real(acc, stage, n_words)
        return None if stage == "select" and acc is not None and acc.who.startswith("party") else sigmas

    monkeypatch.setattr(dp, "release_sigmas", no_select_noise)
    plan = dp.Plan.make(TrainParams.from_dict(SELECT), 1, 8)
    log, _ = recorded_federation(run_federation, SELECT, signal_data(), 1, 2)
    steps = _steps(log)
    unannounced = [s for s in steps.values() if s["sigmas"] is None]
    assert len(unannounced) == 1 and not select_steps(log, plan)
    (step,) = unannounced
    assert np.array_equal(sum(step["sent"].values()), sum(step["recv"].values()))   # opened exactly


@pytest.mark.parametrize("reused", [False, True])
def test_coalition_of_coordinator_and_one_server_sees_no_exact_selection_sum(monkeypatch, reused):
    """The coalition removes server-0's own noise from the opened selection sums; one
    honest server's noise remains.  Mutant: servers drawing one noise stream."""
    from ppxgb.crypto.sharing import Randomness
    from ppxgb.training.horizontal import server as server_mod

    if reused:
        monkeypatch.setattr(server_mod, "default_randomness", lambda: Randomness(b"\x02" * 32))
    log, _ = recorded_federation(run_federation, SELECT, signal_data(), 1, 2)
    plan = dp.Plan.make(TrainParams.from_dict(SELECT), 1, 8)
    steps = [k for k, v in _steps(log).items() if v["sigmas"] == pytest.approx(plan.select_sigmas())]
    assert len(steps) == 1
    only = [m for m in log if m.payload.get("step") in steps]
    assert coalition_recovers_exact(only, 2) == (1.0 if reused else pytest.approx(0.0, abs=0.01))


# ------------------------------------------------------------------ the budget
class SelectsTwice(coord_mod.HorizontalSource):
    def selection_histogram(self):
        super().selection_histogram()
        return super().selection_histogram()


class SkipsItsOwnCount(coord_mod.HorizontalSource):
    def request(self, stage, payload):
        if stage == "select" and self.dp.selected:      # the coordinator forgets its count
            self.dp.selected, self.dp.used = False, self.dp.used - 1
        return super().request(stage, payload)

    def selection_histogram(self):
        super().selection_histogram()
        return super().selection_histogram()


class HidesTheSelectionFromParties(coord_mod.HorizontalSource):
    def broadcast(self, stage, payload, to=None):
        if stage == "config":
            payload = {**payload, "params": {**payload["params"], "dp_select_features": 0}}
        super().broadcast(stage, payload, to)


@pytest.mark.parametrize("source_cls,who", [(SelectsTwice, "coordinator refuses to open select"),
                                            (SkipsItsOwnCount, "party-"),
                                            (HidesTheSelectionFromParties, "select request without")])
def test_a_second_or_unplanned_selection_is_refused_before_anything_is_opened(source_cls, who):
    log, run = _run(source_cls, SELECT, signal_data(), 2)
    with pytest.raises(Exception) as err:
        run()
    assert who in str(err.value)
    before = dp.BIN_LEVELS + 1 + (0 if source_cls is HidesTheSelectionFromParties else 1)
    opened = {m.payload["step"] for m in log if m.stage == "sum" and m.dst == "coordinator"}
    assert len(opened) == before
    shared = {m.payload["step"] for m in log if m.stage == "share"}
    assert len(shared) == before                                  # no party sent shares of it


def test_selection_is_refused_by_name_where_it_is_not_built():
    for params, match in [({"dp_split": "histogram"}, "dp_select_features: used only with dp_split='random'"),
                          ({"dp_epsilon": None, "dp_split": "histogram"}, "dp_select_features: used only with dp_epsilon"),
                          ({"dp_select_features": -1}, "dp_select_features"),
                          ({"dp_select_features": 1.5}, "dp_select_features")]:
        with pytest.raises(ParameterError, match=match):
            TrainParams.from_dict({**SELECT, **params})
    multi = TrainParams.from_dict({**SELECT, "objective": "multi:softprob", "num_class": 3})
    with pytest.raises(ParameterError, match="dp_select_features: .*num_class"):
        dp.check_params(multi)


# ------------------------------------------------------------------ the selected set
def numpy_top_k(sums: np.ndarray, n_groups: list[int], k: int, reg_lambda: float = 1.0) -> set[int]:
    """The plaintext oracle: per feature the best gain of a cut between its groups."""
    G, H = sums[-1]
    scores, at = [], 0
    for n in n_groups:
        best = -np.inf
        for cut in range(1, n):
            gl, hl = sums[at:at + cut].sum(axis=0)
            best = max(best, gl ** 2 / (hl + reg_lambda) + (G - gl) ** 2 / (H - hl + reg_lambda)
                       - G ** 2 / (H + reg_lambda))
        scores.append(best)
        at += n
    return set(np.argsort(-np.array(scores), kind="stable")[:k].tolist())


@pytest.mark.parametrize("seed", [0, 1])
def test_selected_set_without_noise_is_numpys_top_k_of_the_same_score(seed):
    parties = signal_data(seed=seed)
    params = {**SELECT, "dp_epsilon": 1e7, "max_depth": 3, "seed": seed}
    log, model = recorded_federation(run_federation, params, parties, 12, 2)
    cuts = next(m.payload["cuts"] for m in log if m.stage == "cuts")
    margin = math.log(model.base_score[0] / (1.0 - model.base_score[0]))
    sums = exact_selection_sums(log, parties, margin)
    expected = numpy_top_k(sums, [min(len(c), dp.SELECT_GROUPS) for c in cuts], 3)
    assert expected == {1, 4, 6}                     # the data's signal features
    assert used_features(model) == expected          # 12 trees of 7 random splits use all 3
    # the mutant: with every feature (dp_select_features 0) the trees use the others too
    _, everything = recorded_federation(run_federation, {**params, "dp_select_features": 0}, parties, 12, 2)
    assert used_features(everything) - expected


def test_a_light_child_is_shrunk_to_the_floor_not_dropped():
    """A rare binary feature (a group of 10 hessian) keeps a score: its child's H is taken
    as the floor (50) instead of the cut being dropped (the mutant gives -inf)."""
    hist = np.array([[-30.0, 10.0], [30.0, 990.0],              # feature 0: a rare group
                     [5.0, 500.0], [-5.0, 500.0],               # feature 1: little signal
                     [0.0, 1000.0]])
    scores = dp.feature_scores(hist, np.array([0, 2, 4]), 1.0, 50.0)
    assert scores[0] == pytest.approx(900 / 51 + 900 / 991)
    assert scores[1] == pytest.approx(25 / 501 + 25 / 501)
    assert dp.top_features(scores, 1).tolist() == [True, False]
    # noise variance is subtracted from each squared sum (and from the parent's)
    var = np.array([100.0, 100.0, 0.0, 0.0, 4.0])
    debiased = dp.feature_scores(hist, np.array([0, 2, 4]), 1.0, 50.0, var)
    assert debiased[0] == pytest.approx((900 - 100) / 51 + (900 - 100 - 4) / 991 + 4 / 1001)
