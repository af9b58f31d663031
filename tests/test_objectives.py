"""The objective registry is the one list: every layer accepts what it registers."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from ppxgb.formats import TRANSFORMS, UserKeys
from ppxgb.inference import Client, Server
from ppxgb.objectives import OBJECTIVES, get_objective
from ppxgb.proxy import Proxy


def test_every_registered_transform_is_a_valid_key_file_transform():
    assert {o.transform for o in OBJECTIVES.values()} <= set(TRANSFORMS)


def test_unknown_objective_names_the_supported_ones():
    with pytest.raises(ValueError, match="binary:logistic"):
        get_objective("rank:pairwise")


@pytest.mark.parametrize("objective", ["count:poisson", "binary:hinge", "reg:gamma"])
def test_key_file_round_trip_scores_new_transforms(objective):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = rng.poisson(2, size=150) + (1 if objective == "reg:gamma" else 0)
    if objective == "binary:hinge":
        y = (y > 2).astype(float)
    booster = xgb.train({"objective": objective}, xgb.DMatrix(X, label=y), 4)
    enrollment = Proxy().enroll(booster, user_id="alice")
    keys = UserKeys.from_bytes(enrollment.keys.to_bytes())       # what the client reads from disk
    server = Server()
    server.add(enrollment.model)
    client = Client(keys)
    scores = client.decrypt(server.predict(enrollment.model.model_id, client.encrypt(X)))
    np.testing.assert_allclose(scores, booster.predict(xgb.DMatrix(X)), rtol=1e-5, atol=1e-5)


def test_model_file_with_an_unsupported_objective_names_it(tmp_path):
    from ppxgb.errors import FormatError
    from ppxgb.model import Ensemble

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, size=60)
    booster = xgb.train({"objective": "rank:pairwise"}, xgb.DMatrix(X, label=y, group=[60]), 2)
    path = tmp_path / "rank.json"
    booster.save_model(str(path))
    with pytest.raises(FormatError, match=r"unsupported XGBoost model: objective: expected one of .*rank:pairwise"):
        Ensemble.load(str(path))
