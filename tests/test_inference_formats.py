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
