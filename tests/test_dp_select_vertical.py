"""Differentially private feature selection in vertical training (dp_select_features,
dp_split="random"; training/dp.py, training/vertical/).

The label holder (LH) opens the root histogram of the feature holders' (FH) columns once,
through the permutation protocol, each FH noising its prefix sums; LH groups it with its
own columns' and adds its own noise.  Checked on what LH's source returned to the learner
(each group's noise against the variance the source reports: LH's on every group, plus
FH's on FH groups; a mutant without either noise), on the budget (dp-accounting, the
FH's refusal of a second histogram request) and, with noise far below the gaps, on the
selected set against numpy's top k of the same score.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from helpers import recorded_federation
from test_dp_select import grouped_sums, numpy_top_k, used_features
from ppxgb.training import dp
from ppxgb.training.vertical import run_vertical_federation
from ppxgb.training.vertical.label_holder import VerticalSource
from ppxgb.training.vertical.rows import local_cuts

SELECT = {"objective": "binary:logistic", "max_depth": 3, "max_bin": 16, "eta": 0.5, "verbosity": 0,
          "dp_epsilon": 2.0, "dp_delta": 1e-5, "dp_split": "random", "dp_select_features": 3, "seed": 2}
HALF = 6


def data(n=3000, seed=0):
    """12 features, the first 6 the label holder's: signal in features 2 (LH), 7 and 10 (FH)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2 * HALF)).astype(np.float32)
    y = (2.0 * X[:, 7] + 1.0 * X[:, 2] + 0.6 * X[:, 10] + rng.normal(size=n) > 0).astype(np.float32)
    return X, y


def run(params, X, y, rounds):
    return recorded_federation(run_vertical_federation, params, [X[:, :HALF], X[:, HALF:]], y, label_party=0,
                               num_boost_round=rounds)


def spy_selection(record: list):
    real = VerticalSource.selection_histogram

    def spy(self):
        out = real(self)
        record.append(out)
        return out
    return spy


def exact_sums(X, y, model, params) -> tuple[np.ndarray, list]:
    cuts = local_cuts(X[:, :HALF], params["max_bin"])[0] + local_cuts(X[:, HALF:], params["max_bin"])[0]
    base = model.base_score[0]
    return grouped_sums(X, y, cuts, math.log(base / (1.0 - base))), cuts


def noise_ratios(monkeypatch, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Over `runs` trainings: each G's (opened - exact)^2 over the variance LH's source
    reports, for LH's groups (and the total) and for FH's groups."""
    own, held = [], []
    for seed in range(runs):
        record = []
        monkeypatch.setattr(VerticalSource, "selection_histogram", spy_selection(record))
        X, y = data(seed=seed)
        _, model = run({**SELECT, "seed": seed}, X, y, 1)
        (hist, _, g_var), = record
        exact, cuts = exact_sums(X, y, model, SELECT)
        r = (hist[:, 0] / 2.0 ** 32 - exact[:, 0]) ** 2 / g_var
        groups = [min(len(c), dp.SELECT_GROUPS) for c in cuts]
        lh_rows = sum(groups[:HALF])
        own.append(np.append(r[:lh_rows], r[-1]))
        held.append(r[lh_rows:-1])
    return np.concatenate(own), np.concatenate(held)


def close_to_one(r: np.ndarray) -> bool:
    return abs(r.mean() - 1.0) < 5 * np.sqrt(2.0 / r.size) + 0.02


def test_selection_carries_the_label_holders_and_the_feature_holders_noise(monkeypatch):
    own, held = noise_ratios(monkeypatch, 8)
    assert close_to_one(own), own.mean()
    assert close_to_one(held), held.mean()


@pytest.mark.parametrize("mutant", ["label holder", "feature holder"])
def test_mutant_without_either_noise_is_caught(monkeypatch, mutant):
    if mutant == "label holder":
        monkeypatch.setattr(dp, "noisy_selection", lambda hist, cut_ptr, acc, rng=None: dp.group_histogram(hist, cut_ptr))
    else:
        monkeypatch.setattr(dp, "prefix_noise", lambda sums, sigmas, rng=None: sums)
    own, held = noise_ratios(monkeypatch, 8)
    if mutant == "label holder":
        assert own.mean() < 0.01 and not close_to_one(own)
    else:
        assert close_to_one(own) and not close_to_one(held) and held.mean() < 0.5


def test_vertical_budget_includes_the_selection_as_dp_accounting_composes_it():
    X, y = data()
    log, model = run(SELECT, X, y, 3)
    attrs = model.to_booster().attributes()
    assert int(attrs["dp_releases"]) == 3 + 1 + 1 == int(attrs["dp_releases_planned"])   # trees, intercept, select
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(float(attrs["dp_noise_multiplier"])), 4),
        dp_accounting.GaussianDpEvent(float(attrs["dp_select_noise_multiplier"]))]))
    assert float(attrs["dp_epsilon_spent"]) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-4)
    assert float(attrs["dp_epsilon_spent"]) <= SELECT["dp_epsilon"]
    # one histogram request, at the root of tree 0; the dealer prepared that one only
    assert [m.payload["build"] for m in log if m.stage == "vlevel"] == [[0]]
    assert len([m for m in log if m.stage == "corr"]) == 1


def test_feature_holder_refuses_a_second_histogram_request(monkeypatch):
    real = VerticalSource.selection_histogram

    def twice(self):
        real(self)
        self.dp.selected, self.dp.used = False, self.dp.used - 1      # LH forgets its count
        return real(self)
    monkeypatch.setattr(VerticalSource, "selection_histogram", twice)
    X, y = data()
    messages = []
    from ppxgb.transport import InMemoryTransport
    with pytest.raises(Exception, match="vlevel under dp_split='random'"):
        run_vertical_federation(SELECT, [X[:, :HALF], X[:, HALF:]], y, label_party=0, num_boost_round=2,
                                transport=InMemoryTransport(recorder=messages.append))
    assert len([m for m in messages if m.stage == "vsum"]) == 1       # the second never answered


@pytest.mark.parametrize("seed", [0, 1])
def test_selected_set_without_noise_is_numpys_top_k_of_the_same_score(seed):
    X, y = data(seed=seed)
    params = {**SELECT, "dp_epsilon": 1e7, "seed": seed}
    _, model = run(params, X, y, 12)
    sums, cuts = exact_sums(X, y, model, params)
    expected = numpy_top_k(sums, [min(len(c), dp.SELECT_GROUPS) for c in cuts], 3)
    assert expected == {2, 7, 10}
    assert used_features(model) == expected
    _, everything = run({**params, "dp_select_features": 0}, X, y, 12)
    assert used_features(everything) - expected
