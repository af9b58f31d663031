"""Validation sets, metrics, early stopping and callbacks, horizontal and vertical,
against xgboost.train(params, dtrain_pooled, evals=[(dvalid_pooled, "valid")], ...).

The features are discrete (12 values), so the secure bins and xgboost's cuts coincide:
every round's metric value must agree within 1e-6 (AUC too, exact from refined grid
cells; for binary:logitraw's margins within the grid's stated precision,
auc_error_bound of the round's prediction histogram, plus 1e-6), early stopping must
pick the same best_iteration and stop at the same round, and the callbacks must change
the model as they change xgboost's.
"""

import numpy as np
import pytest
import xgboost as xgb
from xgboost.callback import EarlyStopping, LearningRateScheduler, TrainingCallback

import ppxgb.training.horizontal.party as horizontal
from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import ParameterError, UnsupportedParameter
from ppxgb.metrics import AUC_BINS, auc_error_bound, get_metric, metrics_for, owner_stats, refinable
from ppxgb.training import train_horizontal, train_vertical
from ppxgb.training.horizontal import run_federation

from helpers import canonical, column_blocks, recorded_federation
from test_features_oracle import make_data

TOL = 1e-6
BASE = {"max_depth": 4, "eta": 0.5, "verbosity": 0}

#: (label kind, params): defaults per objective and explicit metric lists
CASES = [
    ("binary", {"objective": "binary:logistic"}),
    ("binary", {"objective": "binary:logistic", "eval_metric": ["error@0.6", "auc", "logloss"]}),
    ("real", {"objective": "reg:squarederror"}),
    ("real", {"objective": "reg:squarederror", "eval_metric": ["mae", "rmse"]}),
    ("class", {"objective": "multi:softprob", "num_class": 3, "eval_metric": ["merror", "mlogloss"]}),
    ("class", {"objective": "multi:softmax", "num_class": 3}),
]
MORE = [
    ("binary", {"objective": "binary:hinge"}),
    ("binary", {"objective": "binary:logitraw", "eval_metric": ["auc", "error@0"]}),
    ("count", {"objective": "count:poisson"}),
    ("positive", {"objective": "reg:gamma", "eval_metric": ["gamma-nloglik", "gamma-deviance", "mape", "rmsle"]}),
    ("tweedie", {"objective": "reg:tweedie", "tweedie_variance_power": 1.3}),
    ("real", {"objective": "reg:pseudohubererror", "huber_slope": 2.0}),
]


def split_data(kind, seed=3, n=1000, n_valid=400):
    X, y, w = make_data(kind, n=n + n_valid, seed=seed)
    return (X[:n], y[:n], w[:n]), (X[n:], y[n:], w[n:])


def oracle(params, train, valid, rounds, **kwargs):
    result = {}
    booster = xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(train[0], train[1], weight=train[2]),
                        rounds, evals=[(xgb.DMatrix(valid[0], valid[1], weight=valid[2]), "valid")],
                        evals_result=result, verbose_eval=False, **kwargs)
    return booster, result


def halves(data, at):
    X, y, w = data
    return [(X[:at], y[:at], w[:at]), (X[at:], y[at:], w[at:])]


def horizontal_run(params, train, valid, rounds, **kwargs):
    result = {}
    booster = train_horizontal(params, halves(train, 450), rounds, evals=[(halves(valid, 150), "valid")],
                               evals_result=result, verbose_eval=False, **kwargs)
    return booster, result


def vertical_run(params, train, valid, rounds, **kwargs):
    result = {}
    booster = train_vertical(params, column_blocks(train[0], 2), train[1], label_party=1, num_boost_round=rounds,
                             weight=train[2], evals=[(column_blocks(valid[0], 2), valid[1], valid[2], "valid")],
                             evals_result=result, verbose_eval=False, **kwargs)
    return booster, result


RUNS = {"horizontal": horizontal_run, "vertical": vertical_run}


def auc_bounds(ref, valid, objective):
    """The stated AUC precision of each round: auc_error_bound of the histogram of that
    round's validation predictions."""
    metric = get_metric("auc", objective)
    d = xgb.DMatrix(valid[0])
    return np.array([auc_error_bound(metric.stats(ref[:r + 1].predict(d, output_margin=objective.endswith("raw")),
                                                  valid[1], valid[2]))
                     for r in range(ref.num_boosted_rounds())])


def assert_same_history(ours, theirs, ref=None, valid=None, objective=None):
    assert list(ours) == list(theirs) == ["valid"]
    assert list(ours["valid"]) == list(theirs["valid"])
    for metric, values in theirs["valid"].items():
        got = np.asarray(ours["valid"][metric])
        assert len(got) == len(values), metric
        grid = metric == "auc" and not refinable(objective)
        tol = TOL + (auc_bounds(ref, valid, objective)[:len(values)] if grid else 0.0)
        assert np.all(np.abs(got - values) <= tol), (metric, got - values, tol)


def check_case(mode, kind, params, rounds=25, es=3):
    train, valid = split_data(kind)
    params = {**BASE, **params}
    ref, ref_hist = oracle(params, train, valid, rounds, early_stopping_rounds=es)
    ours, hist = RUNS[mode](params, train, valid, rounds, early_stopping_rounds=es)
    assert_same_history(hist, ref_hist, ref, valid, params["objective"])
    assert ours.best_iteration == ref.best_iteration
    assert float(ours.attr("best_score")) == pytest.approx(float(ref.attr("best_score")), abs=TOL)
    assert ours.num_boosted_rounds() == ref.num_boosted_rounds()
    return ref


@pytest.mark.parametrize("mode", ["horizontal", pytest.param("vertical", marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind,params", CASES, ids=[f"{p['objective']}-{p.get('eval_metric', 'default')}"
                                                    for _, p in CASES])
def test_early_stopping_matches_xgboost(mode, kind, params):
    check_case(mode, kind, params)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["horizontal", "vertical"])
@pytest.mark.parametrize("kind,params", MORE, ids=[p["objective"] for _, p in MORE])
def test_every_objective_default_metric_matches_xgboost(mode, kind, params):
    check_case(mode, kind, params, rounds=12)


def test_early_stopping_stops_before_the_last_round():
    """The cases above are not vacuous: with eta 0.5 and depth 4, xgboost stops early."""
    ref = check_case("horizontal", "binary", {"objective": "binary:logistic"}, rounds=60, es=2)
    assert ref.best_iteration < 50 and ref.num_boosted_rounds() < 60


def test_auc_is_within_its_stated_bound_of_the_exact_auc():
    """Many distinct predictions: the grid AUC differs from sklearn's exact AUC by at most
    auc_error_bound of the same histogram (and the bound is small)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.3).astype(float)
    pred = 1 / (1 + np.exp(-(rng.normal(size=20000) + y)))
    w = rng.uniform(0.5, 2, 20000)
    metric = get_metric("auc", "binary:logistic")
    totals = metric.stats(pred, y, w)
    exact = roc_auc_score(y, pred, sample_weight=w)
    assert abs(metric.value(totals) - exact) <= auc_error_bound(totals) + 1e-12
    assert auc_error_bound(totals) < 1e-4
    assert len(totals) == 2 * AUC_BINS


def test_learning_rate_scheduler_changes_the_model_as_in_xgboost():
    train, valid = split_data("binary")
    params = {**BASE, "objective": "binary:logistic"}
    rates = [0.5, 0.3, 0.1, 0.05, 0.02]
    ref, ref_hist = oracle(params, train, valid, 5, callbacks=[LearningRateScheduler(rates)])
    ours, hist = horizontal_run(params, train, valid, 5, callbacks=[LearningRateScheduler(rates)])
    plain, _ = horizontal_run(params, train, valid, 5)
    assert_same_history(hist, ref_hist)
    d = xgb.DMatrix(valid[0])
    m_ours, m_ref = ours.predict(d, output_margin=True), ref.predict(d, output_margin=True)
    assert np.mean(np.abs(m_ours - m_ref) <= 1e-5) >= 0.99
    # the mutant (eta not read per round) is a different model
    assert np.abs(plain.predict(d, output_margin=True) - m_ref).max() > 0.1


def test_early_stopping_callback_with_save_best_and_a_custom_callback():
    """EarlyStopping(save_best=True) returns the model cut at best_iteration, and a user
    callback sees every round's history and can stop training, as in xgboost.train."""
    class StopAt(TrainingCallback):
        def __init__(self):
            self.seen = []

        def after_iteration(self, model, epoch, evals_log):
            self.seen.append(len(evals_log["valid"]["logloss"]))
            return epoch == 6

    train, valid = split_data("binary")
    params = {**BASE, "objective": "binary:logistic"}
    for mode in ("reference", "ours"):
        stop = StopAt()
        cbs = [stop, EarlyStopping(rounds=2, save_best=True)]
        if mode == "reference":
            ref, ref_hist = oracle(params, train, valid, 30, callbacks=cbs)
            ref_seen = stop.seen
        else:
            ours, hist = horizontal_run(params, train, valid, 30, callbacks=cbs)
            assert stop.seen == ref_seen
    assert_same_history(hist, ref_hist)
    assert ours.num_boosted_rounds() == ref.num_boosted_rounds()
    assert ours.best_iteration == ref.best_iteration


def test_verbose_eval_prints_what_xgboost_prints(capsys):
    train, valid = split_data("real")
    params = {**BASE, "objective": "reg:squarederror"}
    train_horizontal(params, halves(train, 450), 3, evals=[(halves(valid, 150), "valid")], verbose_eval=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["[0]", "[1]", "[2]"]
    assert all(line.split("\t")[1].startswith("valid-rmse:") for line in lines)


@pytest.mark.parametrize("bad,error", [
    ({"eval_metric": "ndcg"}, UnsupportedParameter),
    ({"eval_metric": "mlogloss"}, UnsupportedParameter),
    ({"eval_metric": "rmse@2"}, ParameterError),
    ({"eval_metric": "error@x"}, ParameterError),
    ({"objective": "binary:logitraw", "eval_metric": "logloss"}, UnsupportedParameter),
])
def test_bad_metrics_are_refused_before_training(bad, error):
    train, valid = split_data("binary")
    with pytest.raises(error, match="eval_metric"):
        horizontal_run({"objective": "binary:logistic", **bad}, train, valid, 2)


def test_bad_evals_are_refused():
    train, valid = split_data("binary")
    parties = halves(train, 450)
    with pytest.raises(ParameterError, match="one per party"):
        train_horizontal({"verbosity": 0}, parties, 2, evals=[(halves(valid, 150)[:1], "valid")])
    with pytest.raises(ParameterError, match="without '-'"):
        train_horizontal({"verbosity": 0}, parties, 2, evals=[(halves(valid, 150), "my-valid")])
    with pytest.raises(ParameterError, match="early_stopping_rounds"):
        train_horizontal({"verbosity": 0}, parties, 2, early_stopping_rounds=2)
    with pytest.raises(ParameterError, match="evals"):
        train_horizontal({"verbosity": 0}, parties, 2, evals=[halves(valid, 150)])
    with pytest.raises(ParameterError, match="early_stopping_rounds.*metric"):
        train_horizontal({"verbosity": 0, "disable_default_eval_metric": True}, parties, 2,
                         evals=[(halves(valid, 150), "valid")], early_stopping_rounds=2)
    for bad in ("x", -1, 1.5):
        with pytest.raises(ParameterError, match="verbose_eval"):
            train_horizontal({"verbosity": 0}, parties, 2, evals=[(halves(valid, 150), "valid")],
                             verbose_eval=bad)


# ------------------------------------------------------------------ privacy


def test_validation_rows_never_leave_their_party_and_the_coordinator_opens_only_sums():
    """Every message a party sends goes to a server (or is the hello); no message carries
    a validation label vector or column; the coordinator's opened evaluation sums equal
    the statistics of the pooled validation rows (nothing per party)."""
    train, valid = split_data("binary")
    params = {**BASE, "objective": "binary:logistic", "eval_metric": ["logloss", "auc"]}
    log, model = recorded_federation(run_federation, params, halves(train, 450), 3, 2,
                                     evals=[(halves(valid, 150), "valid")])
    secrets = [valid[1].astype(t).tobytes() for t in (np.float32, np.float64)]
    secrets += [np.ascontiguousarray(valid[0][:, j]).astype(t).tobytes() for j in range(3) for t in (np.float32,
                                                                                                   np.float64)]
    for m in log:
        if m.src.startswith("party-"):
            assert m.dst.startswith("server-") or (m.dst == "coordinator" and m.stage == "hello")
        for v in m.payload.values():
            if isinstance(v, np.ndarray):
                raw = v.tobytes()
                assert not any(s[:64] in raw for s in secrets), (m.src, m.dst, m.stage)
    steps = [m.payload["step"] for m in log if m.dst == "party-0" and m.stage == "evaluate"]
    assert len(steps) == 3
    sums = [m for m in log if m.dst == "coordinator" and m.stage == "sum" and m.payload["step"] == steps[-1]]
    opened = sum(m.payload["data"] for m in sums).view(np.int64) / 2.0 ** 24
    metrics = metrics_for("binary:logistic", ["logloss", "auc"], False)
    pooled = owner_stats(metrics, "binary:logistic", model.predict_margin(valid[0]).reshape(-1, 1),
                         valid[1], valid[2], 1)
    np.testing.assert_allclose(opened, pooled, rtol=0, atol=1e-6)


def _share_differences(log, party="party-0", server="server-1"):
    """What the last server can compute alone: the difference of its shares of one
    party's evaluation statistics in consecutive rounds, as signed ring words."""
    steps = [m.payload["step"] for m in log if m.dst == party and m.stage == "evaluate"]
    shares = [next(m.payload["data"] for m in log if m.src == party and m.dst == server and m.stage == "share"
                   and m.payload["step"] == s) for s in steps]
    return [(b - a).view(np.int64) for a, b in zip(shares, shares[1:])]


def small_fraction(log):
    """The server's attack: words of a difference that decode to a plausible statistic
    (|x| < 2^16 at 24 fractional bits); for fresh shares about 2^-23 of them."""
    diffs = np.concatenate(_share_differences(log))
    return float(np.mean(np.abs(diffs) < 2 ** 40))


@pytest.mark.parametrize("mutant", [False, True])
def test_a_server_learns_nothing_from_its_evaluation_shares(monkeypatch, mutant):
    """A curious server differences its shares of one party's AUC histogram between
    rounds.  With fresh keys nothing decodes; the mutant (a reused sharing key) hands
    it the change of the party's validation histogram, which the attack reads."""
    if mutant:
        monkeypatch.setattr(horizontal, "default_randomness", lambda: Randomness(bytes(32)))
    train, valid = split_data("binary")
    params = {**BASE, "objective": "binary:logistic", "eval_metric": ["auc"]}
    log, _ = recorded_federation(run_federation, params, halves(train, 450), 3, 2,
                                 evals=[(halves(valid, 150), "valid")])
    frac = small_fraction(log)
    if mutant:
        assert frac > 0.99
    else:
        assert frac < 1e-3


def _feature_holder_view(label_noise, monkeypatch=None, leak=False):
    """Every veval message the feature holder receives in a vertical run whose
    validation labels are flipped at the rows `label_noise` marks."""
    import ppxgb.training.vertical.validation as validation
    from ppxgb.training.vertical import run_vertical_federation

    if leak:       # the mutant: a label holder that lets the labels order the rows it routes
        original = validation.LabelHolderEvals.score_tree

        def score_tree(self, t, box, me, fhs, owner, tree, group, levels, leaves, values):
            order = np.argsort(self.y[0], kind="stable")
            self.bins[0] = self.bins[0][order]
            original(self, t, box, me, fhs, owner, tree, group, levels, leaves, values)
            self.bins[0] = self.bins[0][np.argsort(order, kind="stable")]
        monkeypatch.setattr(validation.LabelHolderEvals, "score_tree", score_tree)
    train, valid = split_data("binary")
    yv = np.where(label_noise, 1 - valid[1], valid[1])
    params = {**BASE, "objective": "binary:logistic", "max_depth": 3}
    log, _ = recorded_federation(run_vertical_federation, params, column_blocks(train[0], 2), train[1], 1, 3,
                                 evals=[(column_blocks(valid[0], 2), yv, "valid")])
    return [(m.stage, canonical(m.payload)) for m in log if m.dst == "party-0" and m.stage == "veval"]


@pytest.mark.parametrize("mutant", [False, True])
def test_vertical_feature_holder_sees_nothing_of_the_validation_labels(monkeypatch, mutant):
    """The feature holder's view of validation scoring (every veval message) is the same
    whatever the validation labels are: flipping a third of them changes nothing it
    receives.  The mutant, whose routing depends on the labels, is caught."""
    noise = np.random.default_rng(5).random(400) < 0.33
    a = _feature_holder_view(np.zeros(400, bool), monkeypatch, leak=mutant)
    b = _feature_holder_view(noise, monkeypatch, leak=mutant)
    assert len(a) > 0
    assert (a == b) != mutant


def test_a_metric_undefined_on_the_validation_rows_is_named():
    """mape of a zero label is infinite: the party refuses it naming the metric, and the
    training stops with that error rather than opening a garbage sum."""
    train, valid = split_data("real")
    yv = valid[1].copy()
    yv[0] = 0.0
    with pytest.raises(ParameterError, match="mape"):
        horizontal_run({**BASE, "objective": "reg:squarederror", "eval_metric": "mape"}, train,
                       (valid[0], yv, valid[2]), 2)


def test_vertical_auc_is_exact():
    """The label holder holds every validation row: its AUC has no grid, and equals
    xgboost's to rounding even where the horizontal grid bound is loose."""
    train, valid = split_data("binary")
    params = {**BASE, "objective": "binary:logistic", "eval_metric": "auc"}
    _, ref_hist = oracle(params, train, valid, 10)
    _, hist = vertical_run(params, train, valid, 10)
    np.testing.assert_allclose(hist["valid"]["auc"], ref_hist["valid"]["auc"], rtol=0, atol=1e-8)


def test_horizontal_auc_is_exact_where_the_grid_alone_is_not():
    """With predictions crowding grid cells, the grid alone misses xgboost's AUC by more
    than 1e-6 in some round; refining the mixed cells over the parties' shares gives it
    to rounding."""
    train, valid = split_data("binary")
    params = {**BASE, "objective": "binary:logistic", "eval_metric": "auc"}
    ref, ref_hist = oracle(params, train, valid, 10)
    _, hist = horizontal_run(params, train, valid, 10)
    np.testing.assert_allclose(hist["valid"]["auc"], ref_hist["valid"]["auc"], rtol=0, atol=1e-8)
    metric, d = get_metric("auc", "binary:logistic"), xgb.DMatrix(valid[0])
    grid_only = [metric.value(metric.stats(ref[:r + 1].predict(d), valid[1], valid[2])) for r in range(10)]
    assert np.abs(np.array(grid_only) - ref_hist["valid"]["auc"]).max() > 1e-6
