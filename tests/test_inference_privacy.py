"""What the scoring server stores and receives reveals no name, threshold, leaf value,
feature value or score; exponents reveal no magnitude; keys are per user.

Keys are 1024-bit: the properties tested do not depend on key size.
"""

import struct

import msgpack
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from phe import paillier as phe

from ppxgb.formats import EncryptedModel
from ppxgb.inference import Client, Server
from ppxgb.model import Ensemble
from ppxgb.crypto.ope import float32_ordinal
from ppxgb.crypto.paillier import FIXED_EXPONENT
from ppxgb.proxy import Proxy

NAMES = ["systolic_bp", "hba1c", "age_years", "ldl_mg_dl", "smoker_flag"]


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(300, 5)).astype(np.float32) * [20, 1, 15, 30, 1] + [130, 6, 55, 120, 0],
                     columns=NAMES)
    X.iloc[rng.random(X.shape) < 0.1] = np.nan
    y = (X.systolic_bp.fillna(130) + 10 * X.hba1c.fillna(6) > 190).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4}, xgb.DMatrix(X, label=y), 10)
    proxy = Proxy(1024, allow_weak_keys=True)
    alice = proxy.enroll(booster, user_id="alice")
    bob = proxy.enroll(booster, user_id="bob")
    server = Server()
    stored = alice.model.to_bytes()
    server.add(stored)
    client = Client(alice.keys)
    queries = client.encrypt(X.iloc[:40])
    scores = server.predict(alice.model.model_id, queries.to_bytes())
    return dict(X=X, booster=booster, alice=alice, bob=bob, stored=stored, queries=queries,
                scores=scores, client=client, ensemble=Ensemble.load(booster))


def float_forms(values):
    """Every plain encoding of a number a careless implementation might emit."""
    out = set()
    for v in np.asarray(values, dtype=np.float32).ravel():
        if np.isnan(v):
            continue
        d = float(v)
        out |= {struct.pack("<d", d), struct.pack(">d", d), repr(d).encode(),
                np.format_float_positional(v).encode()}
        out |= {repr(float(np.float32(v))).encode()} if abs(d) > 1e-3 else set()
    # short decimal strings could occur by chance in random ciphertext bytes: keep >= 6
    return {f for f in out if len(f) >= 6}


def test_no_feature_names_in_stored_model_or_queries(world):
    for blob in (world["stored"], world["queries"].to_bytes()):
        for name in NAMES:
            assert name.encode() not in blob


def test_no_thresholds_or_leaves_in_the_clear(world):
    ens, model = world["ensemble"], world["alice"].model
    inner = np.concatenate([t.threshold[t.left >= 0] for t in ens.trees])
    leaves = np.concatenate([t.threshold[t.left < 0] for t in ens.trees])
    blob = world["stored"]
    for form in float_forms(np.concatenate([inner, leaves, ens.base_margin()])):
        assert form not in blob
    stored_thresholds = set(model.threshold[model.column >= 0].tolist())
    plain_forms = set(float32_ordinal(inner).tolist()) | set((float32_ordinal(inner) + 1).tolist()) \
        | set(inner.view(np.uint32).tolist())
    assert not stored_thresholds & plain_forms
    # thresholds of one feature keep their order (that is OPE's documented leak) ...
    # ... but leaf ciphertexts are all distinct even when leaf values repeat
    assert len(set(model.leaf_ciphers)) == len(model.leaf_ciphers)


def test_leaf_magnitudes_not_revealed_by_exponents(world):
    model = world["alice"].model
    public = phe.PaillierPublicKey(model.paillier_n)
    ens = world["ensemble"]
    leaves = np.concatenate([t.threshold[t.left < 0] for t in ens.trees])
    # phe's own encoding would give values of different magnitude different exponents ...
    assert len({phe.EncodedNumber.encode(public, float(v)).exponent for v in leaves}) > 1
    # ... ppxgb's wire format has one fixed exponent and equal-width ciphertexts
    doc = __import__("msgpack").unpackb(world["stored"], raw=False)
    assert doc["fixed_exponent"] == FIXED_EXPONENT
    width = ((model.paillier_n ** 2).bit_length() + 7) // 8
    assert len(doc["leaf_ciphers"]) == len(model.leaf_ciphers) * width
    assert not any(k for k in doc if "exponent" in k and k != "fixed_exponent")


def test_queries_carry_no_values_and_no_missing_flag(world):
    X, q = world["X"].iloc[:40], world["queries"]
    blob = q.to_bytes()
    for form in float_forms(X.to_numpy()):
        assert form not in blob
    doc = __import__("msgpack").unpackb(blob, raw=False)
    assert set(doc) == {"format", "v", "model_id", "columns", "values"}   # no mask, no names
    # no NaN as a msgpack float or string ("nan" as 3 raw bytes could occur by chance)
    nan_forms = [msgpack.packb(float("nan")), msgpack.packb(np.float32("nan").item())]
    nan_forms += [msgpack.packb(text) for text in ("nan", "NaN", "NAN")]
    assert not any(form in blob for form in nan_forms)
    # a missing value is an ordinary in-range OPE ciphertext, not a sentinel
    assert q.values.min() > 0


def test_scores_are_not_in_the_clear(world):
    probs = world["booster"].predict(xgb.DMatrix(world["X"].iloc[:40]))
    margins = world["booster"].predict(xgb.DMatrix(world["X"].iloc[:40]), output_margin=True)
    blob = world["scores"].to_bytes()
    for form in float_forms(np.concatenate([probs, margins])):
        assert form not in blob
    np.testing.assert_allclose(world["client"].decrypt(world["scores"]), probs, rtol=1e-5, atol=1e-6)


def test_same_value_encrypts_differently_for_two_users(world):
    X = world["X"].fillna(1.0).iloc[:20]
    qa = world["client"].encrypt(X)
    qb = Client(world["bob"].keys).encrypt(X)
    assert not set(qa.columns) & set(qb.columns)
    assert not np.isin(qa.values, qb.values).any()
    ta, tb = world["alice"].model.threshold, world["bob"].model.threshold
    assert not set(ta[ta > 0].tolist()) & set(tb[tb > 0].tolist())
    # and across features of one user: a value repeated in every column encrypts differently
    same = pd.DataFrame(np.full((1, 5), 7.0, np.float32), columns=NAMES)
    v = world["client"].encrypt(same).values[0]
    assert len(set(v.tolist())) == v.size


def test_server_state_holds_no_secret(world):
    keys = world["alice"].keys
    blob = world["stored"]
    for secret in (keys.ope_key, keys.prf_key, keys.paillier_p.to_bytes(64, "big").lstrip(b"\0"),
                   keys.paillier_q.to_bytes(64, "big").lstrip(b"\0")):
        assert secret not in blob
    model = EncryptedModel.from_bytes(blob)
    assert not hasattr(model, "paillier_p")
