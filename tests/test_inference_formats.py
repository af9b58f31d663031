"""Versioned serializations: exact round trips, and every malformed input is a FormatError.

Uses a 512-bit Paillier key (enough for a well-formed fixture; the point is parsing).
"""

import msgpack
import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppxgb.errors import FormatError
from ppxgb.formats import EncryptedModel, EncryptedQueries, EncryptedScores, UserKeys
from ppxgb.inference import Client, Server
from ppxgb.proxy import Proxy


@pytest.fixture(scope="module")
def objects():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 4)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                        xgb.DMatrix(X, label=rng.integers(0, 3, 100)), 3)
    e = Proxy(1024, allow_weak_keys=True).enroll(booster, user_id="dora")
    server = Server()
    server.add(e.model)
    client = Client(e.keys)
    q = client.encrypt(X[:5])
    s = server.predict(e.model.model_id, q)
    return {UserKeys: e.keys, EncryptedModel: e.model, EncryptedQueries: q, EncryptedScores: s}


TYPES = [UserKeys, EncryptedModel, EncryptedQueries, EncryptedScores]


def same(a, b):
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y) and x.dtype == y.dtype, name
        else:
            assert x == y, name


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_round_trip(objects, cls):
    obj = objects[cls]
    blob = obj.to_bytes()
    back = cls.from_bytes(blob)
    same(obj, back)
    assert back.to_bytes() == blob


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_truncations_and_junk(objects, cls):
    blob = objects[cls].to_bytes()
    for cut in sorted({0, 1, 5, len(blob) // 3, len(blob) // 2, len(blob) - 1}):
        with pytest.raises(FormatError):
            cls.from_bytes(blob[:cut])
    for junk in (b"", b"\xc1", b"null", "a string", None, 42, blob + b"\x00"):
        with pytest.raises(FormatError):
            cls.from_bytes(junk)


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_wrong_tag_version_and_fields(objects, cls):
    doc = msgpack.unpackb(objects[cls].to_bytes(), raw=False)
    other = [c for c in TYPES if c is not cls][0]
    mutations = [("format", other.KIND), ("v", 2), ("v", None), ("model_id", "no spaces allowed"),
                 ("model_id", 7)]
    optional = {"feature_names"}
    mutations += [(k, None) for k in doc if k not in ("format", "v", *optional)]
    mutations += [(k, "x") for k in doc if k not in ("format", "v", "model_id", "user_id", "transform")]
    for key, value in mutations:
        bad = dict(doc)
        bad[key] = value
        with pytest.raises(FormatError):
            cls.from_bytes(msgpack.packb(bad, use_bin_type=True))
            pytest.fail(f"{key}={value!r} was accepted")


def test_semantic_checks(objects):
    model = msgpack.unpackb(objects[EncryptedModel].to_bytes(), raw=False)

    def with_array(name, values, dtype):
        bad = dict(model)
        a = np.asarray(values, dtype=dtype)
        bad[name] = {"shape": list(a.shape), "data": a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()}
        return msgpack.packb(bad, use_bin_type=True)

    left = np.frombuffer(model["left"]["data"], "<i4").copy()
    first_inner = int(np.flatnonzero(left >= 0)[0])
    for value in (0, first_inner, 10**6):              # self loop, cycle to root, out of range
        mutated = left.copy()
        mutated[first_inner] = value
        with pytest.raises(FormatError):
            EncryptedModel.from_bytes(with_array("left", mutated, np.int32))
    thr = np.frombuffer(model["threshold"]["data"], "<i8").copy()
    thr[first_inner] = -5
    with pytest.raises(FormatError):
        EncryptedModel.from_bytes(with_array("threshold", thr, np.int64))
    scores = msgpack.unpackb(objects[EncryptedScores].to_bytes(), raw=False)
    scores["ciphers"] = b"\x00" * len(scores["ciphers"])             # 0 is not a ciphertext
    with pytest.raises(FormatError):
        EncryptedScores.from_bytes(msgpack.packb(scores, use_bin_type=True))
    keys = msgpack.unpackb(objects[UserKeys].to_bytes(), raw=False)
    keys["paillier_p"] = b"\x07"
    with pytest.raises(FormatError):
        UserKeys.from_bytes(msgpack.packb(keys, use_bin_type=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_corruption_is_format_error_or_a_valid_object(objects, data):
    cls = data.draw(st.sampled_from([EncryptedModel, EncryptedQueries, EncryptedScores, UserKeys]))
    blob = bytearray(objects[cls].to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    try:
        cls.from_bytes(bytes(blob))
    except FormatError:
        pass                                    # the only exception allowed


def test_crafted_shapes_overflow_nothing(objects):
    doc = msgpack.unpackb(objects[EncryptedQueries].to_bytes(), raw=False)
    # [2**60, 0] is empty, yet numpy refuses to make it: a 500 the service fuzz test once found
    for shape in ([2**62, 4], [4, 2**62], [2**63 - 1, 2**63 - 1], [0, 2**62], [2**61, 2**3], [2**60, 0]):
        bad = dict(doc, values={"shape": shape, "data": b""})
        with pytest.raises(FormatError, match="values"):
            EncryptedQueries.from_bytes(msgpack.packb(bad))


def test_decoding_allocates_a_bounded_amount():
    """8 MiB of nested empty lists would be ~8M Python lists (~500 MB) unbounded."""
    import tracemalloc

    inner = b"\xdc\xff\xff" + b"\x90" * 0xFFFF
    n = 8 * 2**20 // len(inner)
    body = b"\x83" + msgpack.packb("format")[0:] + msgpack.packb("ppxgb.encrypted_queries") + msgpack.packb("v") \
        + b"\x01" + msgpack.packb("columns") + b"\xdd" + n.to_bytes(4, "big") + inner * n
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="items"):
            EncryptedQueries.from_bytes(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20, peak / 2**20
    for too_long in (b"\xdd" + (10**6).to_bytes(4, "big"), b"\xdf" + (10**3).to_bytes(4, "big")):
        with pytest.raises(FormatError, match="msgpack"):
            EncryptedQueries.from_bytes(too_long + b"\xc0" * 10)


def _model_doc(objects):
    return msgpack.unpackb(objects[EncryptedModel].to_bytes(), raw=False)


def _nodes(doc, name):
    return np.frombuffer(doc[name]["data"], "<i8" if name == "threshold" else "<i4").copy()


def _with(doc, **arrays):
    out = dict(doc)
    for name, a in arrays.items():
        out[name] = {"shape": [len(a)], "data": a.astype("<i8" if name == "threshold" else "<i4").tobytes()}
    return msgpack.packb(out, use_bin_type=True)


def test_structural_validation_of_models(objects):
    doc = _model_doc(objects)
    roots, leaf, left, right, column = (_nodes(doc, f) for f in ("roots", "leaf", "left", "right", "column"))
    in_tree = [np.arange(roots[t], roots[t + 1]) for t in range(len(roots) - 1)]
    leaves = [t[leaf[t] >= 0] for t in in_tree]
    inner = [t[column[t] >= 0] for t in in_tree]
    cases = {}
    a = leaf.copy(); a[leaves[0][0]] = leaf[leaves[1][0]]                        # noqa: E702
    cases["leaf of tree 0 -> tree 1's ciphertext"] = (dict(leaf=a), "exactly one leaf")
    a = leaf.copy(); a[leaves[0][0]] = leaf[leaves[0][1]]                        # noqa: E702
    cases["two leaves share a ciphertext"] = (dict(leaf=a), "exactly one leaf")
    a = left.copy(); a[inner[0][-1]] = in_tree[1][1]                             # noqa: E702
    cases["child in the next tree"] = (dict(left=a), "out of its tree")
    a = left.copy(); a[inner[0][0]] = right[inner[0][0]]                         # noqa: E702
    cases["a node reached twice"] = (dict(left=a), "exactly once")
    a = column.copy(); a[leaves[0][0]] = -2                                      # noqa: E702
    cases["column below -1"] = (dict(column=a), "neither")
    a = column.copy(); a[inner[0][0]] = len(doc["columns"])                      # noqa: E702
    cases["column out of range"] = (dict(column=a), "neither")
    for name, (arrays, words) in cases.items():
        with pytest.raises(FormatError, match=words):
            EncryptedModel.from_bytes(_with(doc, **arrays))
            pytest.fail(f"{name} was accepted")


_MODEL_ARRAYS = ("roots", "tree_group", "left", "right", "column", "leaf", "threshold")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_model_that_decodes_always_scores(objects, data):
    """Field-level mutations of a model: either FormatError, or a model that scores
    without error and with the right sums (pair tables on, checked against the plain
    product of the reached leaves' ciphertexts): validation leaves nothing that breaks
    a prediction."""
    doc = _model_doc(objects)
    changes = {}
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(_MODEL_ARRAYS))
        a = changes.get(name, _nodes(doc, name))
        a[data.draw(st.integers(0, len(a) - 1))] = data.draw(
            st.one_of(st.sampled_from(sorted(set(a.tolist()))),       # another node's value: plausible
                      st.integers(-3, len(a) + 2), st.sampled_from([2**31 - 1, -2**31])))
        changes[name] = a
    try:
        model = EncryptedModel.from_bytes(_with(doc, **changes))
    except FormatError:
        return
    from ppxgb.inference.server import walk

    server = Server(pair_table_mb=64)
    server.add(model)
    queries = objects[EncryptedQueries]
    got = server.predict(model.model_id, queries).ciphers
    position = {name: j for j, name in enumerate(queries.columns)}
    qcol = np.array([position[c] for c in model.columns])
    leaves = walk(model, qcol[np.maximum(model.column, 0)], queries.values, model.depth())
    n2 = model.paillier_n ** 2
    for r in range(queries.n_rows):
        for g in range(model.n_groups):
            acc = model.base_ciphers[g]
            for t in np.flatnonzero(model.tree_group == g):
                acc = acc * model.leaf_ciphers[leaves[r, t]] % n2
            assert got[r * model.n_groups + g] == acc, (r, g)
