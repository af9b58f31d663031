"""Oblivious training: the oracle, the engine's primitives, and what each role sees.

The model must equal plaintext xgboost hist on the pooled rows (margins within 1e-3 on
99% of rows) for both objectives and both partitions.  The privacy tests replay the
recorded transport: every message a party, server or the dealer receives is a public
size, a uniform ring word (or a uniform bit), or the cuts; two datasets of the same
shape give the same public content; and a curious server ranking rows by label from
what it received does no better than chance, while a dealer mutant that stops masking
the histogram operands is caught by both checks.
"""

import threading

import numpy as np
import pytest

from ppxgb.crypto.sharing import Randomness, share
from ppxgb.errors import ParameterError
from ppxgb.training.oblivious import dealer as dealer_mod
from ppxgb.training.oblivious import engine as engine_mod
from ppxgb.training.oblivious import run_oblivious_federation
from ppxgb.training.oblivious.dealer import Correlations, run_dealer
from ppxgb.training.oblivious.engine import FRAC, Engine, encode
from ppxgb.training.oblivious.learner import sigmoid_error
from ppxgb.training.oblivious.mailbox import Mailbox
from ppxgb.transport import InMemoryTransport

from helpers import assert_margins_match, assert_uniform_words, centralized, make_discrete_data
from test_oblivious_categorical import dataset as cat_dataset
from test_oblivious_categorical import run as cat_run
from test_vertical_leakage import auc

N = 360


def discrete_data(objective: str, seed: int = 0, n: int = N, n_features: int = 4):
    """Features with 6 values each (the cuts are the values, as in xgboost)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 6, size=(n, n_features)).astype(np.float64)
    s = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2]
    if objective == "binary:logistic":
        return X, (s + rng.normal(size=n) > 1.0).astype(np.float64)
    return X, s + 0.3 * rng.normal(size=n)


def federation(objective, partition, X, y, rounds=3, recorder=None, **extra):
    params = {"objective": objective, "max_depth": 3, "max_bin": 16, **extra}
    transport = InMemoryTransport(recorder=recorder)
    if partition == "horizontal":
        cut = len(y) // 3
        parties = [(X[:cut], y[:cut]), (X[cut:], y[cut:])]
        model, _ = run_oblivious_federation(params, parties, rounds, transport=transport)
    else:
        model, _ = run_oblivious_federation(params, [X[:, :2], X[:, 2:]], rounds, partition="vertical",
                                            label=y, label_party=0, transport=transport)
    return params, model


# ------------------------------------------------------------------ oracle


@pytest.mark.parametrize("objective, partition", [
    ("reg:squarederror", "horizontal"),
    ("binary:logistic", "vertical"),
    pytest.param("binary:logistic", "horizontal", marks=pytest.mark.slow),
    pytest.param("reg:squarederror", "vertical", marks=pytest.mark.slow),
])
def test_model_equals_xgboost(objective, partition):
    X, y = discrete_data(objective)
    params, model = federation(objective, partition, X, y)
    reference = centralized(params, X, y, 3)
    booster = model.to_booster()
    assert_margins_match(booster, reference, X, tol=1e-3, frac=0.99)
    # the trees split: the comparison is not between two constant models
    assert len({round(float(v), 4) for v in model.predict_margin(X)}) > 4


@pytest.mark.parametrize("objective, partition", [
    ("binary:logistic", "horizontal"),
    pytest.param("reg:squarederror", "vertical", marks=pytest.mark.slow),
])
def test_missing_values_follow_xgboost_default_directions(objective, partition):
    X, y = make_discrete_data(objective, N, 4, 0.15, 2, lambda X: X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2])
    params, model = federation(objective, partition, X, y)
    assert_margins_match(model.to_booster(), centralized(params, X, y, 3), X, tol=1e-3, frac=0.99)
    assert any(t.default_left[t.left >= 0].any() for t in model.trees)      # some split sends missing left


def test_gamma_and_min_child_weight_stop_splits_as_xgboost_does():
    X, y = discrete_data("reg:squarederror", seed=3)
    params, model = federation("reg:squarederror", "horizontal", X, y, rounds=2, gamma=2.0, min_child_weight=30)
    assert_margins_match(model.to_booster(), centralized(params, X, y, 2), X, tol=1e-3, frac=0.99)
    assert any((t.left < 0).sum() < 8 for t in model.trees)        # some node stopped early


# ------------------------------------------------------------------ engine


def _engines(program):
    """Run program(engine) on both servers with a dealer; returns both results."""
    transport = InMemoryTransport(default_timeout=60)
    servers = ("server-0", "server-1")
    out = {}

    def server(i):
        box = Mailbox(transport, servers[i], ("oseed", "oopen", "ocorr"), 60)
        key = box.recv("oseed", "dealer").payload["key"]
        engine = Engine(transport, box, servers[i], servers[1 - i], i,
                        Correlations(transport, box, servers[i], i, key, "dealer"))
        out[i] = program(engine)

    threads = [threading.Thread(target=server, args=(i,)) for i in (0, 1)]
    threads.append(threading.Thread(target=run_dealer, args=(transport, "dealer"),
                                    kwargs={"servers": servers, "analyst": "analyst", "timeout": 60}))
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join()
    transport.send("analyst", "dealer", "ostop", {})
    threads[2].join()
    return out[0], out[1]


def onehot_blocks(B: np.ndarray, i: int) -> list:
    """Server i's blocks of B (24, 300), as the servers hold a joined upload: two blocks
    side by side above a third (rows joined, then features); server 0's share of a block
    is the stream of its seed, server 1's the block minus that stream."""
    out = []
    for j, (r0, r1, c0, c1) in enumerate(((0, 10, 0, 100), (0, 10, 100, 300), (10, 24, 0, 300))):
        stream = Randomness(bytes([j + 1]) * 32)
        if i == 0:
            out.append((r0, c0, np.empty((r1 - r0, c1 - c0), np.uint64), stream))
        else:
            out.append((r0, c0, B[r0:r1, c0:c1] - stream.uint64((r1 - r0, c1 - c0)), None))
    return out


@pytest.mark.parametrize("chunk, mask_chunk, mask_keep", [(1 << 20, 1 << 22, 1 << 27), (300, 700, 0)])
def test_engine_primitives_against_numpy(chunk, mask_chunk, mask_keep, monkeypatch):
    monkeypatch.setattr(engine_mod, "CHUNK", chunk)          # 300: comparisons in several rounds
    monkeypatch.setattr(dealer_mod, "MASK_CHUNK", mask_chunk)  # 700: the mask two rows at a time,
    monkeypatch.setattr(dealer_mod, "MASK_KEEP", mask_keep)    # regenerated for every product
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000) * 1000
    y = rng.normal(size=2000)
    B = rng.integers(0, 2, size=(24, 300)).astype(np.uint64)
    M = rng.integers(0, 1000, size=(3, 300)).astype(np.uint64)
    W = rng.integers(0, 7, size=(24, 2)).astype(np.uint64)
    xs, ys, Ms, Ws = (share(v, 2) for v in (encode(x), encode(y), M, W))

    def program(e):
        i = e.index
        prod = e.mulf(xs[i], ys[i])
        e.load_onehot(24, 300, onehot_blocks(B, i))
        return prod, e.ltz(xs[i]), e.trunc(xs[i], 7), e.histogram(Ms[i]), e.route_rows(Ws[i])

    a, b = _engines(program)
    opened = [u + v for u, v in zip(a, b)]
    exact = encode(x).view(np.int64).astype(object) * encode(y).view(np.int64).astype(object)
    np.testing.assert_array_equal(opened[0].view(np.int64), [v >> FRAC for v in exact])   # exact floor
    np.testing.assert_array_equal(opened[1], (x < 0).astype(np.uint64))
    np.testing.assert_array_equal(opened[2].view(np.int64), encode(x).view(np.int64) >> 7)
    np.testing.assert_array_equal(opened[3], B @ M.T)
    np.testing.assert_array_equal(opened[4], B.T @ W)


def test_sigmoid_pieces_error():
    assert sigmoid_error() < 5e-5          # measured 3.4e-5 (docs/oblivious.md)


# ------------------------------------------------------------------ what each role sees

RING_STAGES = {"oopen", "ocorr", "odata", "obinshare", "obase"}
# the bin and category agreements: their sizes follow the cuts and the categories
CUT_STAGES = {"obinreq", "ocuts", "obinround", "obinshare", "ocatreq", "ocats"}


def views(log):
    """Per receiving role (the analyst excepted) and sender: the messages in order (the
    order between senders is the thread scheduler's)."""
    out: dict[str, dict] = {}
    for m in log:
        if m.dst != "analyst":
            out.setdefault(m.dst, {}).setdefault(m.src, []).append(m)
    return out


def arrays(payload):
    for v in payload.values():
        if isinstance(v, np.ndarray):
            yield v
        elif isinstance(v, list):
            yield from (a for a in v if isinstance(a, np.ndarray))


def public_part(msg):
    """What a message says besides ring words, keys and seeds: the stage, the sender and
    every other field (array shapes included)."""
    fields = {}
    for k, v in msg.payload.items():
        if isinstance(v, bytes):
            fields[k] = len(v)
        elif msg.stage in RING_STAGES:
            fields[k] = [a.shape for a in arrays({k: v})]
        else:
            fields[k] = repr(v)
    return msg.src, msg.stage, fields


def check_ring_words(log, role):
    """Every ring word `role` received, and every value it opened with its peer (its own
    half plus the peer's), is uniform: 64-bit words, or 0/1 bits."""
    words, bits = [], []

    def add(a):
        assert a.dtype == np.uint64, a.dtype
        (bits if a.size and a.max() <= 1 else words).append(a.ravel())

    for m in log:
        if m.dst == role and m.stage in RING_STAGES - {"oopen"}:
            for a in arrays(m.payload):
                add(a)
    got = [m for m in log if m.dst == role and m.stage == "oopen"]
    sent = [m for m in log if m.src == role and m.stage == "oopen"]
    assert len(got) == len(sent)
    last: dict[tuple, np.ndarray] = {}
    steps = []
    for r, s in zip(got, sent):
        assert r.payload["op"] == s.payload["op"] in ("add", "xor")
        for a, b in zip(arrays(r.payload), arrays(s.payload)):
            opened = a + b if r.payload["op"] == "add" else a ^ b
            add(opened)
            if r.payload["op"] == "add" and opened.size >= 64:
                # two openings under one reused mask differ by a difference of data
                if opened.shape in last:
                    steps.append((opened - last[opened.shape]).ravel())
                last[opened.shape] = opened
    assert_uniform_words(np.concatenate(words))
    assert_uniform_words(np.concatenate(steps))
    if bits:
        b = np.concatenate(bits)
        assert abs(b.mean() - 0.5) < 6 * 0.5 / np.sqrt(len(b)), b.mean()


def categorical_run(partition, seed, recorder, transport_class=InMemoryTransport):
    """A run with categorical features (test_oblivious_categorical.py): seed 0 has 3
    categories in c, seed 1 has 2, so the trees and the category counts differ (the
    parties' row counts do not: no party lacks a category)."""
    df, y = cat_dataset("binary:logistic", 0.1, seed=seed, n_cats=3 - seed)
    cat_run("binary:logistic", partition, df, y, rounds=2, transport=transport_class(recorder=recorder), drop=())


def numeric_run(partition, seed, recorder):
    X, y = discrete_data("binary:logistic", seed=seed)
    federation("binary:logistic", partition, X, y, rounds=2, recorder=recorder)


class TellingBinCounts(InMemoryTransport):
    """Mutant: the analyst tells the servers each feature's number of bins (for a
    categorical feature, its number of categories), which the padding to max_bin hides,
    as a protocol sizing the one-hot matrix per feature would."""

    counts: list = []

    def send(self, src, dst, stage, payload):
        if stage == "ocuts":
            self.counts = [len(c) for c in payload["cuts"]]
        if stage == "oconfig":
            payload = {**payload, "bins_per_feature": self.counts}
        super().send(src, dst, stage, payload)


@pytest.mark.parametrize("partition, run", [
    pytest.param("horizontal", numeric_run, marks=pytest.mark.slow),
    pytest.param("vertical", numeric_run, marks=pytest.mark.slow),
    ("horizontal", categorical_run),
    pytest.param("vertical", categorical_run, marks=pytest.mark.slow),
])
def test_views_are_uniform_and_independent_of_the_data(partition, run):
    logs, logs_raw = [], []
    for seed in (0, 1):
        log = []
        run(partition, seed, log.append)
        logs.append(views(log))
        logs_raw.append(log)
    assert_same_public_views(*logs)
    for role in ("server-0", "server-1"):
        check_ring_words(logs_raw[0], role)
    # a party hears nothing after its upload but the plan and (horizontally) the
    # agreements' requests, the agreed categories and the cuts
    assert {m.stage for ms in logs[0]["party-1"].values() for m in ms} <= {"oplan", "obinreq", "ocuts", "ocatreq",
                                                                          "ocats"}


def test_views_test_catches_a_run_telling_the_category_counts():
    logs = []
    for seed in (0, 1):
        log = []
        categorical_run("horizontal", seed, log.append, TellingBinCounts)
        logs.append(views(log))
    with pytest.raises(AssertionError, match="server-0"):
        assert_same_public_views(*logs)


def assert_same_public_views(a, b):
    """Every role but the analyst receives the same public content in both runs."""
    assert set(a) == set(b) and {"party-0", "party-1", "server-0", "server-1", "dealer"} <= set(a)
    for role in a:
        assert set(a[role]) == set(b[role]), role
        for src in a[role]:
            assert [public_part(m) for m in a[role][src] if m.stage not in CUT_STAGES] == \
                   [public_part(m) for m in b[role][src] if m.stage not in CUT_STAGES], (role, src)
        allowed = RING_STAGES | CUT_STAGES | {"oseed", "oplan", "oconfig", "oneed", "ostop"}
        assert {m.stage for ms in a[role].values() for m in ms} <= allowed, role


def server_attack(log, server="server-1", peer="server-0"):
    """A curious server's best row score: the first value it opened with a row per
    column, (2, n), which is the root's histogram operand [I * g | I * h] masked by the
    dealer's V (its own half, sent, plus the peer's, received), read as signed numbers;
    g = p - y, so unmasked it ranks every row by label."""
    n = next(m.payload["n_rows"] for m in log if m.dst == server and m.stage == "oconfig")

    def first(src, dst):
        return next(a for m in log if m.src == src and m.dst == dst and m.stage == "oopen"
                    for a in arrays(m.payload) if a.shape == (2, n))

    opened = first(peer, server) + first(server, peer)
    return opened[0].view(np.int64).astype(np.float64)


def _vertical_noise_run(recorder, n=2000):
    """2,000 rows: a blind guess's AUC then has standard deviation 0.013, so <= 0.55 is
    about four of them (360 rows would give 0.03)."""
    rng = np.random.default_rng(5)
    X_lh = rng.integers(0, 6, size=(n, 2)).astype(float)
    X_fh = rng.integers(0, 6, size=(n, 2)).astype(float)       # pure noise at the feature holder
    y = (X_lh[:, 0] - X_lh[:, 1] + rng.normal(size=n) > 0).astype(float)
    run_oblivious_federation({"objective": "binary:logistic", "max_depth": 3, "max_bin": 16}, [X_lh, X_fh], 2,
                             partition="vertical", label=y, transport=InMemoryTransport(recorder=recorder))
    return y


def test_label_ranking_attacks_do_no_better_than_chance():
    log = []
    y = _vertical_noise_run(log.append)
    fh = [m.stage for m in log if m.dst == "party-1"]
    assert fh == ["oplan"]                   # the feature holder receives no split, no partition
    a = auc(y, server_attack(log))
    assert max(a, 1 - a) <= 0.55, a
    check_ring_words(log, "server-1")


def test_mutant_dealer_without_histogram_masks_is_caught(monkeypatch):
    draw = dealer_mod.draw

    def lazy(kind, rng, role, sizes):
        out = draw(kind, rng, role, sizes)
        if kind == "gram":
            out["V"][:] = 0                  # the operand of every histogram goes out unmasked
        return out

    monkeypatch.setattr(dealer_mod, "draw", lazy)
    log = []
    y = _vertical_noise_run(log.append)
    a = auc(y, server_attack(log))
    assert max(a, 1 - a) > 0.9, a            # the attack now ranks rows by label
    with pytest.raises(AssertionError):
        check_ring_words(log, "server-1")


def test_mutant_dealer_reusing_triples_is_caught(monkeypatch):
    draw = dealer_mod.draw
    fixed: dict = {}

    def reuse(kind, rng, role, sizes):
        out = draw(kind, rng, role, sizes)
        if kind == "triple":                 # the same a and b for every product of a size
            for key in ("a", "b"):
                out[key] = fixed.setdefault((role, key, sizes["size"]), out[key])
        return out

    monkeypatch.setattr(dealer_mod, "draw", reuse)
    log = []
    _vertical_noise_run(log.append, n=N)
    with pytest.raises(AssertionError):
        check_ring_words(log, "server-1")


# ------------------------------------------------------------------ refused input


X0, Y0 = discrete_data("reg:squarederror", n=40)


@pytest.mark.parametrize("kwargs, params, match", [
    ({"n_servers": 3}, {}, "n_servers"),
    ({"partition": "diagonal"}, {}, "partition"),
    ({}, {"objective": "multi:softprob", "num_class": 3}, "objective"),
    ({}, {"alpha": 1.0}, "alpha"),
    ({}, {"subsample": 0.5}, "subsample"),
    ({}, {"lambda": 0.0}, "lambda"),
    ({}, {"dp_epsilon": 1.0}, "dp_epsilon"),
    ({}, {"monotone_constraints": [1]}, "monotone_constraints"),
    ({}, {"interaction_constraints": [[0]]}, "interaction_constraints"),
    ({}, {"grow_policy": "lossguide", "max_leaves": 4}, "grow_policy"),
    ({}, {"eval_metric": "rmse"}, "eval_metric"),
    ({}, {"max_cat_threshold": 8}, "max_cat_threshold"),
])
def test_refused_parameters(kwargs, params, match):
    with pytest.raises(ParameterError, match=match):
        run_oblivious_federation({"objective": "reg:squarederror", **params}, [(X0, Y0)], 1, **kwargs)


@pytest.mark.parametrize("rounds", [-1, 2.5, True])
def test_refused_round_counts(rounds):
    with pytest.raises(ParameterError, match="num_boost_round"):
        run_oblivious_federation({"objective": "reg:squarederror"}, [(X0, Y0)], rounds)
