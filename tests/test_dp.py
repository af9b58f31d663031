"""Differential privacy of horizontal training (training/dp.py, ppxgb/crypto/dgauss.py).

The curious roles are played on what crossed the transport: the coordinator's opened
sums are compared with the exact sums (rebuilt from every party's shares in the log),
and the coalition of the coordinator with one compute server removes that server's own
noise (its sum minus the shares it received) and looks for the exact sums.
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import dp_accounting
from dp_accounting import rdp
from scipy import stats

from helpers import recorded_federation, split_rows
from test_vertical_leakage import empty_bins, lh_views, single_row_pins
from ppxgb.crypto import dgauss
from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import ParameterError
from ppxgb.transport import InMemoryTransport
from ppxgb.training import dp
from ppxgb.training.harness import run_roles
from ppxgb.training.horizontal import coordinator as coord_mod
from ppxgb.training.horizontal import run_federation, run_party, run_server, server as server_mod
from ppxgb.training.horizontal.stages import role_names
from ppxgb.training.params import TrainParams

PARAMS = {"objective": "binary:logistic", "max_depth": 3, "max_bin": 16, "verbosity": 0,
          "dp_epsilon": 2.0, "dp_delta": 1e-5}


def data(n=3000, f=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) > 0).astype(np.float32)
    return split_rows(X, y, [n // 2, n - n // 2])


# ------------------------------------------------------------------ the sampler
def _chi2_pvalue(samples: np.ndarray, sigma: float) -> float:
    lim = int(3 * sigma)
    values = np.arange(-lim, lim + 1)
    observed = np.array([(samples == v).sum() for v in values] + [(np.abs(samples) > lim).sum()])
    p = dgauss.pmf(values, sigma)
    expected = len(samples) * np.append(p, 1.0 - p.sum())
    return float(stats.chisquare(observed, expected).pvalue)


def test_vectorised_sampler_matches_the_discrete_gaussian_pmf():
    x = dgauss.discrete_gaussian(2.5, 200_000, Randomness(b"s" * 32))
    assert _chi2_pvalue(x, 2.5) > 1e-4
    # a rounded continuous Laplace of the same variance is told apart
    laplace = np.rint(np.random.default_rng(1).laplace(scale=2.5 / np.sqrt(2), size=200_000))
    assert _chi2_pvalue(laplace, 2.5) < 1e-6


def test_exact_sampler_matches_the_pmf():
    rand = random.Random(7).randrange
    x = np.array([dgauss.sample_exact(Fraction(4), rand) for _ in range(4000)])
    assert _chi2_pvalue(x, 2.0) > 1e-4
    big = np.array([dgauss.sample_exact(Fraction(10 ** 12), rand) for _ in range(400)])
    assert 0.85 < big.std() / 1e6 < 1.15


# ------------------------------------------------------------------ the accountant
def test_plan_epsilon_equals_dp_accounting_composed_release_by_release():
    p = TrainParams.from_dict({**PARAMS, "max_depth": 4, "dp_epsilon": 1.0})
    plan = dp.Plan.make(p, n_trees=7, n_features=5)
    assert plan.releases == dp.BIN_LEVELS + 1 + 7 * 4
    acc = rdp.RdpAccountant()
    for _ in range(plan.releases):
        acc.compose(dp_accounting.GaussianDpEvent(plan.z))
    direct = acc.get_epsilon(1e-5)
    assert plan.spent(plan.releases) == pytest.approx(direct, rel=1e-9)
    assert direct <= 1.0 and rdp_eps_slightly_less_noise(plan) > 1.0


def rdp_eps_slightly_less_noise(plan):
    return dp.rdp_epsilon(plan.z * 0.99, plan.releases, plan.delta)


def test_booster_carries_the_spent_budget_as_dp_accounting_computes_it():
    log, model = recorded_federation(run_federation, PARAMS, data(), 2, 2)
    attrs = model.to_booster().attributes()
    releases = int(attrs["dp_releases"])
    opened = [m for m in log if m.dst == "coordinator" and m.stage == "sum"]
    assert releases == len(opened) // 2
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(float(attrs["dp_noise_multiplier"])), releases))
    assert float(attrs["dp_epsilon_spent"]) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-4)
    assert float(attrs["dp_epsilon_spent"]) <= 2.0
    assert "discrete Gaussian" in attrs["dp_mechanism"]


# ------------------------------------------------------------------ what is opened
def _steps(log):
    """Per step: exact sum of all parties' shares, each server's received-share sum,
    each server's sent sum, the announced sigmas."""
    out: dict[int, dict] = {}
    for m in log:
        if m.stage == "share":
            s = out.setdefault(m.payload["step"], {"recv": {}, "sent": {}, "sigmas": None})
            part = (Randomness(m.payload["seed"]).words(m.payload["n"]) if "seed" in m.payload
                    else np.asarray(m.payload["data"], dtype=np.uint64))
            s["recv"][m.dst] = s["recv"].get(m.dst, np.zeros(m.payload["n"], np.uint64)) + part
            s["sigmas"] = m.payload.get("noise")
        elif m.stage == "sum" and m.dst == "coordinator":
            out[m.payload["step"]]["sent"][m.src] = np.asarray(m.payload["data"], dtype=np.uint64)
    return out


def _noise(step, server):
    return (step["sent"][server] - step["recv"][server]).view(np.int64)


def coalition_recovers_exact(log, n_servers) -> float:
    """Coordinator + server-0: the opened total minus what server-0 knows of the noise,
    assuming the servers' noises are alike; the largest fraction of coordinates of any
    step that equal the exact sum."""
    worst = 0.0
    for step in _steps(log).values():
        total = sum(step["sent"].values())
        exact = sum(step["recv"].values())
        guess = total - (_noise(step, "server-0").view(np.uint64) * np.uint64(n_servers))
        worst = max(worst, float(np.mean(guess == exact)))
    return worst


def test_every_opened_sum_is_noisy_with_the_accountants_variance():
    log, model = recorded_federation(run_federation, PARAMS, data(), 2, 2)
    steps = _steps(log)
    z = float(model.to_booster().attr("dp_noise_multiplier"))
    kinds = set()
    for step in steps.values():
        total, exact = sum(step["sent"].values()), sum(step["recv"].values())
        assert np.mean(total == exact) < 0.01        # no un-noised aggregate opened
        sig = np.asarray(step["sigmas"], dtype=np.float64)
        kinds.add(len(sig))
        for server in step["sent"]:
            n = _noise(step, server).astype(np.float64)
            ratio = (n.reshape(-1, len(sig)) / sig) ** 2
            # sum of squares of N(0,1)-like values: chi-square with n degrees of freedom
            assert abs(ratio.mean() - 1.0) < 6 * np.sqrt(2.0 / ratio.size) + 0.02, server
    assert kinds == {1, 2}                           # counts / intercept, and g, h pairs
    # the sigmas are the plan's: z times the sensitivity on the grid
    p = TrainParams.from_dict(PARAMS)
    plan = dp.Plan.make(p, 2, 5)
    assert plan.z == pytest.approx(z, rel=1e-5)
    level = [s for s in steps.values() if len(s["sigmas"]) == 2]
    assert level[0]["sigmas"] == pytest.approx(plan.level_sigmas())


def test_coalition_of_coordinator_and_one_server_sees_no_exact_sum():
    log, _ = recorded_federation(run_federation, PARAMS, data(), 2, 2)
    assert coalition_recovers_exact(log, 2) < 0.01


def test_mutant_servers_reusing_one_noise_stream_are_caught(monkeypatch):
    monkeypatch.setattr(server_mod, "default_randomness", lambda: Randomness(b"\x01" * 32))
    log, _ = recorded_federation(run_federation, PARAMS, data(), 2, 2)
    assert coalition_recovers_exact(log, 2) == 1.0


def test_without_dp_params_nothing_changes_on_the_wire_or_in_the_model():
    plain = {k: v for k, v in PARAMS.items() if not k.startswith("dp_")}
    log, model = recorded_federation(run_federation, plain, data(), 2, 2)
    log2, model2 = recorded_federation(run_federation, {**plain, "dp_epsilon": None}, data(), 2, 2)
    assert not any("noise" in m.payload or "n_trees" in m.payload for m in log + log2)
    assert model.to_xgboost_json() == model2.to_xgboost_json()
    assert model.to_booster().attributes() == {}


# ------------------------------------------------------------------ the budget
def _run(source_cls, params, parties, rounds, n_servers=2):
    messages = []
    transport = InMemoryTransport(recorder=messages.append)
    party_names, server_names, _ = role_names(len(parties), n_servers)
    roles = [(n, run_party, (transport, n, X, y), {"servers": server_names, "timeout": 30})
             for n, (X, y) in zip(party_names, parties)]
    roles += [(s, run_server, (transport, s), {"parties": party_names, "timeout": 30}) for s in server_names]

    def drive():
        p = TrainParams.from_dict(params)
        src = source_cls(transport, p, party_names, server_names, 30)
        return coord_mod.boost(src, p, rounds)
    return messages, lambda: run_roles(roles, drive)


class PlansOneTree(coord_mod.HorizontalSource):
    def setup(self, n_trees):
        return super().setup(1)


class TellsPartiesOneTree(coord_mod.HorizontalSource):
    def broadcast(self, stage, payload, to=None):
        if stage == "config":
            payload = {**payload, "n_trees": 1}
        super().broadcast(stage, payload, to)


@pytest.mark.parametrize("source_cls,who", [(PlansOneTree, "coordinator"), (TellsPartiesOneTree, "party-")])
def test_a_run_beyond_the_budget_stops_before_opening_more(source_cls, who):
    # 6 trees open 2 bin levels + intercept + 6 roots, more than one tree's plan
    log, run = _run(source_cls, PARAMS, data(), 6)
    with pytest.raises(Exception) as err:
        run()
    assert "dp_epsilon" in str(err.value) and who in str(err.value)
    planned = dp.BIN_LEVELS + 1 + 1 * PARAMS["max_depth"]
    opened_steps = {m.payload["step"] for m in log if m.stage == "sum" and m.dst == "coordinator"}
    assert len(opened_steps) <= planned


def test_unsupported_dp_configurations_are_refused_by_name():
    for params, name in [({"objective": "reg:gamma"}, "dp_epsilon"),
                         ({"objective": "reg:squarederror"}, "base_score"),
                         ({"scale_pos_weight": 2.0}, "scale_pos_weight"),
                         ({"dp_clip": 2.0}, "dp_clip")]:
        p = TrainParams.from_dict({**PARAMS, **params})
        with pytest.raises(Exception, match=name):
            dp.accountant_for(p, 2, 5, "coordinator")
    for bad in [{"dp_epsilon": 0}, {"dp_delta": 1.0}, {"dp_clip": -1}]:
        with pytest.raises(Exception, match=next(iter(bad))):
            TrainParams.from_dict({**PARAMS, **bad})
    plain = {k: v for k, v in PARAMS.items() if not k.startswith("dp_")}
    for unused in [{"dp_delta": 1e-6}, {"dp_clip": 2.0}]:        # without dp_epsilon: refused, not ignored
        with pytest.raises(Exception, match=f"{next(iter(unused))}: used only with dp_epsilon"):
            TrainParams.from_dict({**plain, **unused})


def test_regression_gradients_are_clipped_with_a_warning():
    X, y = data()[0]
    p = {"objective": "reg:squarederror", "base_score": 0.0, "max_depth": 2, "max_bin": 8,
         "verbosity": 0, "dp_epsilon": 4.0, "dp_clip": 0.5}
    with pytest.warns(UserWarning, match=r"rows clipped.*\|g\| <= 0.5") as caught:
        recorded_federation(run_federation, p, [(X, y * 10), (X, y * 10)], 3, 2)
    assert sum("rows clipped" in str(w.message) for w in caught) == 2      # once per party
    g, h, rows = dp.clip_gh(np.array([[3.0], [0.1]]), np.array([[1.0], [2.0]]), 1.0, 1.0, warn=False)
    assert rows == 2 and g.tolist() == [[1.0], [0.1]] and h.tolist() == [[1.0], [1.0]]


# ------------------------------------------------------------------ vertical
VERTICAL_DP = {"dp_epsilon": 1.0}


def test_vertical_label_holder_can_no_longer_pin_feature_holder_bins():
    """The attack of tests/test_vertical_leakage.py (a bin whose opened sums equal one
    row's g, h pins that row), measured with and without dp_epsilon on the same data."""
    views, truth = lh_views("reg:squarederror", max_bin=32)
    before = len(single_row_pins(views)) / truth.size
    views, truth = lh_views("reg:squarederror", max_bin=32,
                            extra={**VERTICAL_DP, "base_score": 0.0, "dp_clip": 4.0})
    after = len(single_row_pins(views)) / truth.size
    assert before > 0.01 and after == 0.0, (before, after)     # measured 2.4% -> 0
    assert empty_bins(views) < 0.01           # empty bins no longer show as zero sums


def test_vertical_opened_histograms_carry_the_plans_noise():
    events = []
    _, truth = lh_views("binary:logistic", trees=3, max_bin=32, extra=VERTICAL_DP, record=events)
    p = TrainParams.from_dict({"objective": "binary:logistic", "max_depth": 4, "max_bin": 32, **VERTICAL_DP})
    sig = np.asarray(dp.Plan.make(p, 3, truth.shape[1], vertical=True).level_sigmas())
    ratios = []
    for e in events:
        if isinstance(e, dict):
            continue
        build, hist, positions, gh, cut_ptr, owner = e
        for i, node in enumerate(build):            # built nodes only: one noise each
            rows = np.flatnonzero(positions == node)
            for j, (party, f) in enumerate(owner):
                if party != "party-1":
                    continue
                nb = int(cut_ptr[j + 1] - cut_ptr[j])
                exact = np.stack([np.bincount(truth[rows, f], weights=gh[rows, k].astype(np.float64),
                                              minlength=nb) for k in (0, 1)], axis=1)
                noise = hist[i, cut_ptr[j]:cut_ptr[j + 1]].astype(np.float64) - exact
                ratios.append((noise / sig) ** 2)
    r = np.concatenate(ratios).ravel()
    assert abs(r.mean() - 1.0) < 6 * np.sqrt(2.0 / r.size) + 0.02


# ------------------------------------------------------------------ the CLI
def test_cli_dp_options_merge_into_params_and_conflicts_are_refused():
    import argparse
    from ppxgb.app.deploy import check_params, dp_summary

    args = argparse.Namespace(dp_epsilon=1.5, dp_delta=None)
    assert check_params('{"objective": "binary:logistic"}', args)["dp_epsilon"] == 1.5
    assert "dp_epsilon" not in check_params('{"objective": "binary:logistic"}', argparse.Namespace())
    with pytest.raises(Exception, match="--dp-epsilon"):
        check_params('{"objective": "binary:logistic", "dp_epsilon": 2}', args)
    _, model = recorded_federation(run_federation, PARAMS, data(), 1, 2)
    line = dp_summary(__import__("json").dumps(model.to_xgboost_json()))
    assert line.startswith("differential privacy: epsilon ") and "of 2 (delta 1e-05)" in line


@pytest.mark.slow
def test_cli_federation_prints_the_spent_budget(tmp_path):
    import subprocess
    import sys
    X, y = data(1000, 3)[0]
    for i in range(2):
        rows = np.column_stack([X, y])[i * 250:(i + 1) * 250]
        np.savetxt(tmp_path / f"p{i}.csv", rows, delimiter=",", header="a,b,c,y", comments="")
    out = subprocess.run([sys.executable, "-m", "ppxgb.app.cli", "federation", "--data", str(tmp_path / "p0.csv"),
                          str(tmp_path / "p1.csv"), "--label", "y", "--params", '{"objective": "binary:logistic"}',
                          "--rounds", "2", "--out", str(tmp_path / "m.json"), "--dp-epsilon", "3", "--insecure"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "differential privacy: epsilon" in out.stdout and "of 3 (delta 1e-05)" in out.stdout
    import xgboost
    booster = xgboost.Booster(model_file=str(tmp_path / "m.json"))
    assert float(booster.attr("dp_epsilon_spent")) <= 3.0


def test_eval_sets_are_refused_under_dp_before_their_statistics_are_opened():
    from ppxgb.training import train_horizontal
    parties = data()
    with pytest.raises(ParameterError, match="evals: .*not available under dp_epsilon"):
        train_horizontal(PARAMS, parties, 2, evals=[(parties, "valid")])


def test_noisy_intercept_statistics_are_clamped_to_what_rows_can_sum_to():
    # [sum w*y, sum w] hi limbs, then lo limbs: a negative total and a label sum above it
    out = dp.clamp_intercept(np.array([-5.0, -101.5, 0.3, 0.2]))
    assert out.tolist() == [0.0, 1.0, 0.0, 0.0]
    out = dp.clamp_intercept(np.array([7.0, 3.0, 0.1, 0.1]))
    assert out.tolist() == [3.0, 3.0, 0.0, 0.0]
    # small data, many parties, small epsilon: training goes through
    X, y = data(400, 3)[0]
    parties = [(X[i::4], y[i::4]) for i in range(4)]
    model, _ = run_federation({**PARAMS, "dp_epsilon": 0.1}, parties, 2, 2)
    assert 0.0 <= model.base_score[0] <= 1.0 and np.isfinite(model.predict(X)).all()


@pytest.mark.parametrize("spec", [[], [1.0, 2.0, 3.0], ["1"], [0.0], [-1.0], [2.0 ** 51], [float("nan")], "1", {"s": 1}])
def test_server_refuses_malformed_noise_announcements(spec):
    from ppxgb.errors import ProtocolError
    assert server_mod._noise_spec([3.0, 4.0], 8, "server-0", "party-0") == (3.0, 4.0)
    with pytest.raises(ProtocolError, match="server-0: share from party-0: noise"):
        server_mod._noise_spec(spec, 8, "server-0", "party-0")


# ------------------------------------------------------------------ fewer, smaller releases
RANDOM = {**PARAMS, "dp_split": "random", "max_depth": 2}


def test_random_split_plan_is_one_release_per_tree_as_dp_accounting_composes_it():
    p = TrainParams.from_dict({**RANDOM, "max_depth": 4, "dp_epsilon": 1.0})
    plan = dp.Plan.make(p, n_trees=9, n_features=5)
    assert plan.releases == dp.BIN_LEVELS + 1 + 9 and plan.touched == 1
    acc = rdp.RdpAccountant()
    for _ in range(plan.releases):
        acc.compose(dp_accounting.GaussianDpEvent(plan.z))
    assert plan.spent(plan.releases) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert plan.spent(plan.releases) <= 1.0 < rdp_eps_slightly_less_noise(plan)


def _level_steps(log):
    return [s for s in _steps(log).values() if len(s["sigmas"]) == 2]


def test_random_split_opens_only_noisy_leaf_totals_once_per_tree():
    log, model = recorded_federation(run_federation, RANDOM, data(), 3, 2)
    levels = _level_steps(log)
    assert len(levels) == 3 == int(model.to_booster().attr("dp_releases")) - dp.BIN_LEVELS - 1
    plan = dp.Plan.make(TrainParams.from_dict(RANDOM), 3, 5)
    for step in levels:
        assert step["sigmas"] == pytest.approx(plan.level_sigmas())
        exact = sum(step["recv"].values()).view(np.int64).reshape(4, -1, 2)   # 4 leaves
        assert not exact[:, :-1].any() and exact[:, -1, 1].any()   # bins zero, totals not
        total = sum(step["sent"].values()).view(np.int64).reshape(exact.shape)
        assert np.mean(total == exact) < 0.01                          # noise everywhere


def _structure(model):
    trees = model.to_xgboost_json()["learner"]["gradient_booster"]["model"]["trees"]
    return [(t["split_indices"], t["left_children"], t["right_children"]) for t in trees]


def _discrete(seed, n=2000):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 6, size=(n, 4)).astype(np.float32)      # same bin counts for both
    y = (X[:, 2 * seed] + rng.normal(size=n) > 3).astype(np.float32)      # feature 0 or 2
    return split_rows(X, y, [n // 2, n - n // 2])


@pytest.mark.parametrize("mode,same", [("random", True), ("histogram", False)])
def test_random_splits_do_not_depend_on_the_data(mode, same):
    """Two datasets of one shape and bin counts, labels from different features, one
    seed: dp_split='random' grows the same trees (features and shape; the thresholds are
    the cuts, which the noisy bin agreement releases, and the leaves are the data's);
    the histogram search, the mutant here, follows the data."""
    params = {**RANDOM, "dp_split": mode, "dp_epsilon": 8.0, "max_bin": 8, "seed": 3}
    a, _ = run_federation(params, _discrete(0), 3, 2)
    b, _ = run_federation(params, _discrete(1), 3, 2)
    assert (_structure(a) == _structure(b)) is same
    if same:
        assert a.to_xgboost_json() != b.to_xgboost_json()             # the leaves are the data's


def test_colsample_bytree_releases_only_the_trees_features_with_their_sensitivity():
    params = {**PARAMS, "colsample_bytree": 0.4}                      # 2 of 5 features a tree
    log, _ = recorded_federation(run_federation, params, data(), 2, 2)
    plan = dp.Plan.make(TrainParams.from_dict(params), 2, 5)
    assert plan.touched == 2 + 1
    full = dp.Plan.make(TrainParams.from_dict(PARAMS), 2, 5)
    assert plan.level_sigmas()[0] < full.level_sigmas()[0]
    for step in _level_steps(log):
        assert step["sigmas"] == pytest.approx(plan.level_sigmas())
        exact = sum(step["recv"].values()).view(np.int64).reshape(-1, 2)
        # the bins of 3 of the 5 features are zero before the noise: fewer than half remain
        assert 0 < np.count_nonzero(exact.any(axis=1)) < 0.5 * len(exact)


def test_random_split_is_refused_where_it_is_not_built():
    # vertical training has it: tests/test_dp_vertical_random.py
    with pytest.raises(ParameterError, match="dp_split"):
        dp.check_params(TrainParams.from_dict({**RANDOM, "grow_policy": "lossguide", "max_leaves": 4}))
    with pytest.raises(ParameterError, match="dp_split"):
        TrainParams.from_dict({"dp_split": "random"})
