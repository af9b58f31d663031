"""Categorical models end to end in inference: the plaintext model against xgboost,
encrypted scoring against `predict` (OPE and ORE), and the curious server's view of
category tokens on recorded traffic.

Models are trained by xgboost with enable_categorical=True on pandas `category`
columns: one-hot splits (max_cat_to_onehot above the number of categories) and
partition splits (max_cat_to_onehot=1), with missing categories.
"""

import functools

import msgpack
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ppxgb.errors import FormatError, ParameterError
from ppxgb.formats import CATEGORICAL_VERSION, VERSION, EncryptedModel, EncryptedQueries, UserKeys
from ppxgb.inference import Client, Server
from ppxgb.model import Ensemble, Tree
from ppxgb.proxy import Proxy

WARDS = [f"ward{i}" for i in range(11)]
SPLITS = {"onehot": 64, "partition": 1}
KEY_BITS = 512            # Paillier size does not change what is tested here; 512 keeps the fast tier fast


def make_frame(n=600, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(60, 10, n).round(),
        "ward": pd.Categorical(rng.choice(WARDS, n), categories=WARDS),
        "bp": rng.normal(130, 15, n),
        "sex": pd.Categorical(rng.choice(["f", "m"], n), categories=["f", "m"]),
    })
    if missing:
        df.loc[rng.random(n) < 0.1, "ward"] = np.nan
        df.loc[rng.random(n) < 0.1, "sex"] = np.nan
        df.loc[rng.random(n) < 0.05, "bp"] = np.nan
    effect = df["ward"].isin(["ward1", "ward4", "ward5", "ward9"]).to_numpy(float)
    score = effect + 0.5 * (df["sex"] == "m").to_numpy(float) + (df["age"].to_numpy() - 60) / 20
    return df, score


def train_categorical(split="partition", objective="binary:logistic", rounds=8, seed=0, num_class=0):
    """An xgboost categorical model and its training frame (a fresh copy per call)."""
    booster, df = _train_categorical(split, objective, rounds, seed, num_class)
    return booster, df.copy()


@functools.lru_cache(maxsize=None)
def _train_categorical(split, objective, rounds, seed, num_class):
    df, score = make_frame(seed=seed)
    if num_class:
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    elif objective.startswith("binary"):
        y = (score > np.median(score)).astype(int)
    else:
        y = 10 * score + 3
    params = {"objective": objective, "max_depth": 4, "eta": 0.3, "seed": seed,
              "max_cat_to_onehot": SPLITS[split], **({"num_class": num_class} if num_class else {})}
    dtrain = xgb.DMatrix(df, label=y, enable_categorical=True)
    return xgb.train(params, dtrain, rounds), df


def codes_of(df):
    """The frame as a float matrix of XGBoost category codes (NaN for missing)."""
    cols = [df[c].cat.codes.replace(-1, np.nan).to_numpy(float) if isinstance(df[c].dtype, pd.CategoricalDtype)
            else df[c].to_numpy(float) for c in df.columns]
    return np.column_stack(cols)


def xgb_predict_codes(booster, X, output_margin=False):
    dm = xgb.DMatrix(X, feature_types=["q", "c", "q", "c"], feature_names=list(make_frame(5)[0].columns))
    return booster.predict(dm, output_margin=output_margin)


# ------------------------------------------------------------------ plaintext model
@pytest.mark.parametrize("split", list(SPLITS))
def test_model_parses_categorical_splits_and_predicts_as_xgboost(split):
    booster, df = train_categorical(split)
    ens = Ensemble.load(booster)
    kinds = {int(t.split_type[i]) for t in ens.trees if t.split_type is not None for i in np.flatnonzero(t.is_categorical)}
    assert kinds == {1}
    sizes = [t.categories[i].size for t in ens.trees for i in np.flatnonzero(t.is_categorical)]
    assert (max(sizes) > 1) == (split == "partition")      # one-hot splits hold one category
    assert ens.categorical_features == (1, 3)
    assert ens.categories[1] == tuple(WARDS) and ens.categories[3] == ("f", "m")
    ref = booster.predict(xgb.DMatrix(df, enable_categorical=True), output_margin=True)
    np.testing.assert_array_equal(ens.predict(df, output_margin=True), ref)
    np.testing.assert_array_equal(ens.predict(codes_of(df), output_margin=True), ref)
    # the JSON round trip is a booster that predicts the same
    again = ens.to_booster().predict(xgb.DMatrix(df, enable_categorical=True), output_margin=True)
    np.testing.assert_array_equal(again, ref)


def test_model_invalid_and_unseen_codes_go_left_as_in_xgboost():
    booster, df = train_categorical("partition")
    ens = Ensemble.load(booster)
    X = np.repeat(codes_of(df.head(1)), 7, axis=0)
    X[:, 1] = [-1, 11, 100, 2**24, 1e9, 4.5, 4]            # negative, unseen, huge, fractional
    np.testing.assert_array_equal(ens.predict(X, output_margin=True),
                                  xgb_predict_codes(booster, X, output_margin=True))


def test_model_refuses_an_unknown_category_like_xgboost():
    booster, df = train_categorical("onehot")
    bad = df.head(3).copy()
    bad["ward"] = pd.Categorical(["ward1", "ward99", "ward2"])
    with pytest.raises(Exception):
        booster.predict(xgb.DMatrix(bad, enable_categorical=True))
    with pytest.raises(Exception, match="ward99"):
        Ensemble.load(booster).predict(bad)


def test_model_reorders_dataframe_categories_into_the_model_list():
    booster, df = train_categorical("partition")
    shuffled = df.copy()
    shuffled["ward"] = shuffled["ward"].cat.reorder_categories(WARDS[::-1])
    ref = booster.predict(xgb.DMatrix(df, enable_categorical=True))
    np.testing.assert_array_equal(Ensemble.load(booster).predict(shuffled), ref)


def test_model_refuses_a_malformed_categorical_node():
    booster, _ = train_categorical("partition")
    import json

    doc = json.loads(booster.save_raw("json"))
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["categories_sizes"][0] = 0                        # a categorical split with no set
    with pytest.raises(FormatError, match="categorical node"):
        Ensemble.from_xgboost_json(doc)
    doc = json.loads(booster.save_raw("json"))
    doc["learner"]["feature_types"] = ["q"] * 4            # a category split on a numeric feature
    with pytest.raises(FormatError, match="feature_types"):
        Ensemble.from_xgboost_json(doc)


# ------------------------------------------------------------------ encrypted scoring
RTOL, ATOL = 1e-5, 1e-6          # the bound docs/inference.md states


def encrypted(booster, X, scheme="ope", user="alice", output_margin=True, client_kwargs=None):
    """Enroll, score X through the serialized messages, decrypt; also return the
    enrollment and the query bytes as they crossed to the server."""
    e = Proxy(KEY_BITS, allow_weak_keys=True, scheme=scheme).enroll(booster, user_id=user)
    server = Server()
    server.add(e.model.to_bytes())
    client = Client(e.keys.to_bytes(), **(client_kwargs or {}))
    sent = client.encrypt(X).to_bytes()
    scores = server.predict(e.model.model_id, sent)
    return client.decrypt(scores.to_bytes(), output_margin=output_margin), e, sent


@pytest.mark.parametrize("scheme", ["ope", "ore"])
@pytest.mark.parametrize("split", list(SPLITS))
def test_encrypted_predictions_equal_predict(scheme, split):
    booster, df = train_categorical(split)
    ref = booster.predict(xgb.DMatrix(df, enable_categorical=True), output_margin=True)
    got, e, _ = encrypted(booster, df, scheme)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    assert e.model.is_categorical.sum() > 0 and e.keys.feature_types == ("q", "c", "q", "c")
    # the same rows as integer codes, and as text looked up in the model's lists
    client = Client(e.keys)
    server = Server()
    server.add(e.model)
    for X in (codes_of(df), df.astype({"ward": object, "sex": object})):
        out = client.decrypt(server.predict(e.model.model_id, client.encrypt(X)), output_margin=True)
        np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("objective,num_class", [("reg:squarederror", 0), ("multi:softprob", 3)])
def test_encrypted_regression_and_multiclass(objective, num_class):
    booster, df = train_categorical("partition", objective=objective, num_class=num_class)
    got, _, _ = encrypted(booster, df.head(200), "ore", output_margin=False)
    np.testing.assert_allclose(got, booster.predict(xgb.DMatrix(df.head(200), enable_categorical=True)),
                               rtol=RTOL, atol=ATOL)


def test_encrypted_invalid_and_unseen_codes_go_left_as_in_xgboost():
    booster, df = train_categorical("partition")
    X = np.repeat(codes_of(df.head(1)), 7, axis=0)
    X[:, 1] = [-1, 11, 100, 2**24, 1e9, np.nan, -999]
    got, _, _ = encrypted(booster, X, client_kwargs={"missing": -999.0})
    X[-1, 1] = np.nan
    np.testing.assert_allclose(got, xgb_predict_codes(booster, X, output_margin=True), rtol=RTOL, atol=ATOL)


def test_model_of_integer_codes_without_category_lists():
    """A model trained on codes (feature_types 'c', no lists): codes are scored; text is
    refused because there is no list to look it up in."""
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.integers(0, 40, 800), rng.normal(size=800)]).astype(float)
    X[rng.random(800) < 0.1, 0] = np.nan
    y = np.isin(X[:, 0], [3, 7, 11, 30]) + X[:, 1]
    booster = xgb.train({"max_depth": 4, "max_cat_to_onehot": 1}, xgb.DMatrix(X, y, feature_types=["c", "q"]), 6)
    assert Ensemble.load(booster).categories is None
    ref = booster.predict(xgb.DMatrix(X, feature_types=["c", "q"]), output_margin=True)
    got, e, _ = encrypted(booster, X, "ore")
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    text = pd.DataFrame({"f0": ["a", "b"], "f1": [0.0, 1.0]})
    with pytest.raises(ParameterError, match="integer category codes"):
        Client(e.keys).encrypt(text)


def test_client_refuses_categories_it_cannot_encode():
    booster, df = train_categorical("onehot")
    e = Proxy(KEY_BITS, allow_weak_keys=True).enroll(booster, user_id="alice")
    client = Client(e.keys)
    bad = df.head(3).copy()
    bad["ward"] = pd.Categorical(["ward1", "ward99", "ward2"])
    with pytest.raises(ParameterError, match="'ward'.*unknown category 'ward99'"):
        client.encrypt(bad)
    X = codes_of(df.head(3))
    X[1, 1] = 2.5
    with pytest.raises(ParameterError, match="integer category codes in categorical feature 'ward'.*2.5"):
        client.encrypt(X)
    numeric_as_category = df.head(3).astype({"age": "category"})
    with pytest.raises(ParameterError, match="'age' numeric"):
        client.encrypt(numeric_as_category)


# ------------------------------------------------------------------ formats
def test_key_file_round_trip_versions_and_old_files():
    booster, _ = train_categorical("partition")
    e = Proxy(KEY_BITS, allow_weak_keys=True).enroll(booster, user_id="alice")
    blob = e.keys.to_bytes()
    doc = msgpack.unpackb(blob, raw=False)
    assert doc["v"] == CATEGORICAL_VERSION and doc["feature_types"] == ["q", "c", "q", "c"]
    again = UserKeys.from_bytes(blob)
    assert again.categories == e.keys.categories and again.feature_types == e.keys.feature_types
    for mutate in ({"v": VERSION},                                 # categorical fields in a v1 file
                   {"feature_types": ["q", "x", "q", "c"]}, {"feature_types": ["q", "c"]},
                   {"categories": [None, None, ["a"], None]}, {"categories": [None, [[1]], None, None]}):
        with pytest.raises(FormatError):
            UserKeys.from_bytes(msgpack.packb({**doc, **mutate}, use_bin_type=True))
    plain = {k: v for k, v in doc.items() if k not in ("feature_types", "categories")}
    with pytest.raises(FormatError, match="version"):                # v2 without them
        UserKeys.from_bytes(msgpack.packb(plain, use_bin_type=True))
    old = UserKeys.from_bytes(msgpack.packb({**plain, "v": VERSION}, use_bin_type=True))
    assert old.feature_types is None                                   # a pre-categorical file loads


def test_encrypted_model_and_queries_refuse_tampered_category_fields():
    booster, df = train_categorical("partition")
    _, e, sent = encrypted(booster, df.head(5))
    doc = msgpack.unpackb(e.model.to_bytes(), raw=False)
    assert doc["v"] == CATEGORICAL_VERSION
    ptr = np.frombuffer(doc["cat_ptr"]["data"], "<i8").copy()
    nodes = np.flatnonzero(np.diff(ptr) > 0)
    shifted = ptr.copy()
    shifted[nodes[0] + 1] += 1                                         # offsets past the tokens
    bad_ptr = {**doc, "cat_ptr": {"shape": doc["cat_ptr"]["shape"], "data": shifted.astype("<i8").tobytes()}}
    for bad in (bad_ptr, {**doc, "cat_nonces": {"shape": [1, 2], "data": b"\0" * 16}},
                {k: v for k, v in doc.items() if k != "cat_tokens"}, {**doc, "v": VERSION},
                {**doc, "cat_columns": doc["columns"][:1] + doc["cat_columns"][1:]}):
        with pytest.raises(FormatError):
            EncryptedModel.from_bytes(msgpack.packb(bad, use_bin_type=True))
    q = msgpack.unpackb(sent, raw=False)
    for bad in ({**q, "tokens": {"shape": [5, 1, 2], "data": b"\0" * 80}},
                {k: v for k, v in q.items() if k != "tokens"}):
        with pytest.raises(FormatError):
            EncryptedQueries.from_bytes(msgpack.packb(bad, use_bin_type=True))
    server = Server()
    server.add(e.model)
    other = EncryptedQueries.from_bytes(sent)
    swapped = EncryptedQueries(model_id=other.model_id, columns=other.columns, values=other.values,
                               scheme=other.scheme, cat_columns=other.cat_columns[::-1][:1], tokens=other.tokens[:, :1])
    with pytest.raises(ParameterError, match="cat_columns"):
        server.predict(e.model.model_id, swapped)


# ------------------------------------------------------------------ the curious server
def server_view(stored: bytes, sent: bytes):
    """What the scoring server parses from the bytes it stored and received."""
    return EncryptedModel.from_bytes(stored), EncryptedQueries.from_bytes(sent)


def token_classes(queries: EncryptedQueries) -> list[np.ndarray]:
    """Per category column, each row's equality class (rows with equal tokens)."""
    return [np.unique(queries.tokens[:, j], axis=0, return_inverse=True)[1].ravel()
            for j in range(len(queries.cat_columns))]


def shared_tokens(a: np.ndarray, b: np.ndarray) -> int:
    """How many distinct 16-byte values occur in both arrays of (n, 2) words."""
    as_set = lambda t: {(int(x), int(y)) for x, y in np.asarray(t).reshape(-1, 2)}
    return len(as_set(a) & as_set(b))


def size_attack(model: EncryptedModel) -> tuple[np.ndarray, np.ndarray]:
    """The server's estimate of each categorical node's true set size from the stored
    model alone: a token that recurs in another node of the same column is real (a
    dummy is drawn once), so count those; where nothing recurs, take the set's length.
    Returns (categorical nodes, estimates)."""
    nodes = np.flatnonzero(model.is_categorical)
    sets = {i: {(int(x), int(y)) for x, y in model.cat_tokens[model.cat_ptr[i]:model.cat_ptr[i + 1]]}
            for i in nodes}
    est = []
    for i in nodes:
        others = set().union(*(sets[j] for j in nodes if j != i and model.column[j] == model.column[i]))
        recurring = len(sets[i] & others)
        est.append(recurring if recurring else len(sets[i]))
    return nodes, np.array(est)


def true_set_sizes(booster, e) -> np.ndarray:
    """Test-side truth: per categorical node, the codes going right plus the missing token."""
    ens = Ensemble.load(booster)
    sizes = [t.categories[i].size + (not t.default_left[i]) for t in ens.trees for i in range(t.n_nodes)
             if t.is_categorical[i]]
    return np.array(sizes)


@pytest.fixture(scope="module")
def traffic():
    """Two users enrolled on one partition-split model, each sending the same rows."""
    booster, df = train_categorical("partition", rounds=10)
    rows = df.head(300)
    out = {"booster": booster, "rows": rows}
    for user in ("alice", "bob"):
        got, e, sent = encrypted(booster, rows, "ore", user=user)
        out[user] = (e, e.model.to_bytes(), sent, got)
    return out


def test_server_learns_category_equality_within_one_user(traffic):
    """The documented leak, measured: per column, the token classes are exactly the
    partition of the rows by category value (missing is one more class), no finer and
    no coarser; the class labels themselves are pseudorandom tokens."""
    e, stored, sent, _ = traffic["alice"]
    model, queries = server_view(stored, sent)
    by_column = {c: (f, s) for f, s, c in e.keys.columns(categorical=True)}
    names = list(traffic["rows"].columns)
    for j, classes in enumerate(token_classes(queries)):
        f, _ = by_column[queries.cat_columns[j]]
        truth = traffic["rows"][names[f]].astype(object).fillna("<missing>").to_numpy()
        pairs = set(zip(classes.tolist(), truth.tolist()))
        assert len(pairs) == len(set(classes.tolist())) == len(set(truth.tolist()))   # a bijection


def _linked(traffic) -> tuple[int, int]:
    """What links two users' views: tokens in both users' queries, and stored set
    values in both users' models."""
    (_, stored_a, sent_a, _), (_, stored_b, sent_b, _) = traffic["alice"], traffic["bob"]
    (model_a, q_a), (model_b, q_b) = server_view(stored_a, sent_a), server_view(stored_b, sent_b)
    return shared_tokens(q_a.tokens, q_b.tokens), shared_tokens(model_a.cat_tokens, model_b.cat_tokens)


def test_two_users_tokens_for_the_same_values_are_unlinkable(traffic):
    assert _linked(traffic) == (0, 0)
    _, stored, sent, _ = traffic["alice"]
    assert not [w for w in WARDS if w.encode() in stored or w.encode() in sent]   # no category name crosses
    np.testing.assert_allclose(traffic["alice"][3], traffic["bob"][3], rtol=RTOL, atol=ATOL)


def test_mutant_token_key_shared_across_users_is_caught(traffic, monkeypatch):
    """Mutant: the token key ignores the user's PRF key.  The same check links every
    equal category value of the two users."""
    from ppxgb import cattokens

    real = cattokens.category_key
    monkeypatch.setattr(cattokens, "category_key", lambda prf_key, f, s: real(b"\0" * 32, f, s))
    mutant = {"booster": traffic["booster"]}
    for user in ("alice", "bob"):
        got, e, sent = encrypted(traffic["booster"], traffic["rows"], "ore", user=user)
        mutant[user] = (e, e.model.to_bytes(), sent, got)
    linked_queries, _ = _linked(mutant)
    assert linked_queries >= 10                       # every category value links (11 wards + 2 sexes + missing)


def test_stored_sets_hide_their_size(traffic):
    """From the stored model alone the server cannot tell a node's set size: every set
    of a feature has the same padded length, no value recurs across nodes (each is
    blinded with its node's nonce), so the size attack returns one constant per
    feature, never the true size."""
    booster = traffic["booster"]
    e, stored, _, _ = traffic["alice"]
    model = EncryptedModel.from_bytes(stored)
    nodes, est = size_attack(model)
    truth = true_set_sizes(booster, e)
    assert len(set(truth.tolist())) > 3                                   # the true sizes do vary
    for col in np.unique(model.column[nodes]):
        assert len(set(est[model.column[nodes] == col].tolist())) == 1  # one size per column
    assert np.mean(est == truth) == 0
    assert len({(int(x), int(y)) for x, y in model.cat_tokens}) == model.cat_tokens.shape[0]


@pytest.mark.parametrize("mutant", ["no padding", "no node nonce"])
def test_mutants_that_leak_set_sizes_are_caught(traffic, monkeypatch, mutant):
    from ppxgb import cattokens

    if mutant == "no padding":
        real = cattokens.node_set
        monkeypatch.setattr(cattokens, "node_set", lambda key, codes, right, size, nonce:
                            real(key, codes, right, len(codes) + right, nonce))
    else:
        monkeypatch.setattr(cattokens, "blind", lambda toks, nonce: np.asarray(toks, np.uint64))
    e = Proxy(KEY_BITS, allow_weak_keys=True, scheme="ore").enroll(traffic["booster"], user_id="alice")
    _, est = size_attack(EncryptedModel.from_bytes(e.model.to_bytes()))
    assert np.mean(est == true_set_sizes(traffic["booster"], e)) >= 0.5


def test_server_learns_membership_at_every_node_of_the_feature(traffic):
    """What the server computes from a query token and a node (it can for every node,
    on the path or not) is exactly the plaintext decision: token in set = goes right."""
    from ppxgb import cattokens
    from ppxgb.splitrule import category_goes_left

    e, stored, sent, _ = traffic["alice"]
    model, queries = server_view(stored, sent)
    pos = {c: j for j, c in enumerate(queries.cat_columns)}
    nodes = np.flatnonzero(model.is_categorical)
    node_col = np.zeros(model.left.shape[0], np.int64)
    node_col[nodes] = [pos[model.cat_columns[model.column[i]]] for i in nodes]
    member = cattokens.membership(nodes, model.cat_ptr, model.cat_tokens, model.cat_nonces, node_col,
                                  np.ascontiguousarray(queries.tokens))
    ens = Ensemble.load(traffic["booster"])
    X = codes_of(traffic["rows"]).astype(np.float32)
    right = np.column_stack([~category_goes_left(X[:, t.feature[i]], t.categories[i], t.default_left[i])
                             for t in ens.trees for i in range(t.n_nodes) if t.is_categorical[i]])
    np.testing.assert_array_equal(member.astype(bool), right)


# ------------------------------------------------------------------ command line and services
def test_score_reads_categorical_csv_columns_by_the_key_file(tmp_path):
    """`ppxgb score`'s reader: categorical columns with a category list stay values
    (text, or numbers when the list holds numbers), the rest are numbers."""
    from ppxgb.app.inference_cli import read_rows

    path = tmp_path / "rows.csv"
    path.write_text("age,ward,bp,sex\n61,ward3,120.5,m\n70,,,f\n")
    types, cats = ("q", "c", "q", "c"), (None, tuple(WARDS), None, ("f", "m"))
    rows = read_rows(str(path), ("age", "ward", "bp", "sex"), 4, types, cats)
    assert rows["ward"].tolist() == ["ward3", None] and rows["sex"].tolist() == ["m", "f"]
    assert rows["age"].tolist() == [61.0, 70.0] and np.isnan(rows["bp"].iloc[1])
    path.write_text("age,ward,bp,sex\n61,20,120.5,1\n")
    numbers = read_rows(str(path), None, 4, types, (None, (10, 20), None, None))
    assert numbers["ward"].tolist() == [20] and numbers["sex"].tolist() == [1.0]
    path.write_text("age,ward,bp,sex\n61,3,120.5,1\n")
    assert read_rows(str(path), None, 4, types, None).tolist() == [[61.0, 3.0, 120.5, 1.0]]
    path.write_text("age,ward,bp,sex\n61,x,120.5,1\n")
    with pytest.raises(ParameterError, match="numbers in categorical column 'ward'"):
        read_rows(str(path), None, 4, types, (None, (10, 20), None, None))


@pytest.mark.slow
def test_cli_enroll_and_score_a_categorical_model_through_the_services(tmp_path):
    """`ppxgb proxy enroll` of a categorical model file to a scoring server over HTTP
    (locally, and through `ppxgb proxy serve`), then `ppxgb score` of a CSV with text
    categories and empty cells."""
    import subprocess
    import sys

    from helpers import free_ports, scoring_server
    from ppxgb.app.cli import main
    from test_services_hostile import wait_healthy

    booster, df = train_categorical("partition")
    booster.save_model(str(tmp_path / "m.json"))
    df.head(150).to_csv(tmp_path / "rows.csv", index=False)
    token = str(tmp_path / "server.token")
    assert main(["proxy", "new-secret", "--out", token]) == 0
    with scoring_server(tmp_path, token) as url:
        key, tok = str(tmp_path / "c.key"), str(tmp_path / "c.token")
        assert main(["proxy", "enroll", "--model", str(tmp_path / "m.json"), "--user", "carol",
                     "--server-url", url, "--server-admin-token-file", token, "--insecure-http",
                     "--key-out", key, "--token-out", tok]) == 0
        assert UserKeys.from_bytes(open(key, "rb").read()).feature_types == ("q", "c", "q", "c")
        out = tmp_path / "out.csv"
        assert main(["score", "--keys", key, "--token-file", tok, "--server-url", url, "--insecure-http",
                     "--input", str(tmp_path / "rows.csv"), "--output", str(out), "--batch-size", "64"]) == 0
        got = pd.read_csv(out)["prediction"].to_numpy()
        ref = booster.predict(xgb.DMatrix(df.head(150), enable_categorical=True))
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
        # the proxy service (ppxgb proxy serve) enrols the same model file over HTTP, under ORE
        proxy_token, master = str(tmp_path / "proxy.token"), str(tmp_path / "master.key")
        assert main(["proxy", "new-secret", "--out", proxy_token]) == 0
        assert main(["proxy", "new-secret", "--out", master, "--kind", "master-key"]) == 0
        (pport,) = free_ports(1)
        proxy = subprocess.Popen(
            [sys.executable, "-m", "ppxgb.app.cli", "proxy", "serve", "--model", f"wards={tmp_path / 'm.json'}",
             "--server-url", url, "--server-admin-token-file", token, "--admin-token-file", proxy_token,
             "--keystore", str(tmp_path / "keystore"), "--master-key-file", master, "--port", str(pport),
             "--scheme", "ore", "--insecure-http"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_healthy(f"http://127.0.0.1:{pport}", proxy)
            key, tok = str(tmp_path / "d.key"), str(tmp_path / "d.token")
            assert main(["proxy", "enroll", "--proxy-url", f"http://127.0.0.1:{pport}", "--insecure-http",
                         "--admin-token-file", proxy_token, "--model", "wards", "--user", "dave",
                         "--key-out", key, "--token-out", tok]) == 0
            assert UserKeys.from_bytes(open(key, "rb").read()).scheme == "ore"
            assert main(["score", "--keys", key, "--token-file", tok, "--server-url", url, "--insecure-http",
                         "--input", str(tmp_path / "rows.csv"), "--output", str(out)]) == 0
            np.testing.assert_allclose(pd.read_csv(out)["prediction"].to_numpy(), ref, rtol=RTOL, atol=ATOL)
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


# ------------------------------------------------------------------ a ppxgb-trained model
@pytest.mark.parametrize("scheme", ["ope", "ore"])
def test_ppxgb_trained_categorical_model_enrolls_and_scores(scheme):
    """A model from ppxgb's own secure training (horizontal, two hospitals, pandas
    categories and integer codes) scores encrypted as its booster predicts."""
    from ppxgb.training.horizontal import run_federation

    df, score = make_frame(n=900, seed=4)
    df["codes"] = np.where(np.arange(900) % 7 == 0, np.nan, np.arange(900) % 5)
    y = (score + (df["codes"] == 3) > np.median(score)).astype(int).to_numpy()
    parts = [(df.iloc[:450], y[:450]), (df.iloc[450:], y[450:])]
    model, _ = run_federation({"max_depth": 3, "eta": 0.3, "max_cat_to_onehot": 1, "verbosity": 0}, parts, 4, 2,
                              feature_types=["q", "c", "q", "c", "c"])
    ens = Ensemble.load(model.to_booster())
    assert any(t.is_categorical.any() for t in ens.trees)
    got, e, _ = encrypted(model.to_booster(), df, scheme)
    np.testing.assert_allclose(got, ens.predict(df, output_margin=True), rtol=RTOL, atol=ATOL)
    ref = model.to_booster().predict(xgb.DMatrix(df, enable_categorical=True,
                                                 feature_types=list(ens.feature_types)), output_margin=True)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_enrollment_refuses_a_threshold_split_on_a_categorical_feature():
    """A feature typed 'c' is sent as tokens, which no threshold can be compared with."""
    tree = Tree.from_arrays(left=[1, -1, -1], right=[2, -1, -1], feature=[0, 0, 0], threshold=[0.5, -1.0, 1.0],
                            default_left=[True, False, False])
    ens = Ensemble(objective="reg:squarederror", num_feature=2, trees=(tree,), tree_info=(0,), base_score=(0.5,),
                   feature_types=("c", "q"))
    with pytest.raises(ParameterError, match="threshold split on a feature typed 'c'"):
        Proxy(KEY_BITS, allow_weak_keys=True).enroll(ens, user_id="alice")


@pytest.mark.parametrize("scheme", ["ope", "ore"])
def test_model_of_categorical_features_only_with_pair_tables(scheme):
    """No numeric column at all (queries carry only tokens), and leaf-pair tables on."""
    only = make_frame()[0][["ward", "sex"]]
    y = only["ward"].isin(WARDS[::3]).to_numpy(float) + (only["sex"] == "m").to_numpy(float)
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(only, y, enable_categorical=True), 5)
    e = Proxy(KEY_BITS, allow_weak_keys=True, scheme=scheme).enroll(booster, user_id="alice")
    assert e.model.columns == () and len(e.model.cat_columns) > 0
    server, client = Server(pair_table_mb=16), Client(e.keys)
    server.add(e.model.to_bytes())
    got = client.decrypt(server.predict(e.model.model_id, client.encrypt(only).to_bytes()), output_margin=True)
    ref = booster.predict(xgb.DMatrix(only, enable_categorical=True), output_margin=True)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("enc, needle", [(5, "a int"), ({"values": []}, "a dict"), ([1, 2], "object")])
def test_malformed_category_lists_are_a_format_error(enc, needle):
    from ppxgb.categories import decode_cats
    with pytest.raises(FormatError, match=needle):
        decode_cats({"enc": enc}, 2)
