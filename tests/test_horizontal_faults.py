"""In-process failures: the coordinator stops and the error names the failing role."""

import time

import numpy as np
import pytest

import ppxgb.training.horizontal.party as horizontal
from ppxgb.errors import ParameterError, PeerFailure
from ppxgb.training import train_horizontal


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 5, size=(n, 3)).astype(float)
    return X, X[:, 0] * 2.0 + rng.normal(size=n)


def test_gradient_overflow_in_one_party_is_named():
    X, y = data()
    parties = [(X, y), (X, y * 1e9)]  # huge labels: sums would overflow the ring
    with pytest.raises(ParameterError, match=r"party-1: .*fixed-point range"):
        train_horizontal({"objective": "reg:squarederror", "base_score": 0.0}, parties, num_boost_round=2)


@pytest.mark.slow
def test_a_party_that_stops_answering_is_named_within_the_timeout(monkeypatch):
    X, y = data()
    # compile the kernels first: a cold numba cache must not eat into the 2 s timeout
    train_horizontal({"objective": "reg:squarederror"}, [(X, y)], num_boost_round=1)
    real = horizontal._PartyState.histograms

    def stall_in_party_1(self, build):
        if self.X.shape[0] == 301:  # only the party holding 301 rows goes silent
            time.sleep(30)
        return real(self, build)

    monkeypatch.setattr(horizontal._PartyState, "histograms", stall_in_party_1)
    X2, y2 = data(301, seed=1)
    start = time.monotonic()
    with pytest.raises(PeerFailure) as info:
        train_horizontal({"objective": "reg:squarederror"}, [(X, y), (X2, y2)],
                         num_boost_round=3, timeout=2.0)
    assert info.value.peer == "party-1"
    assert time.monotonic() - start < 15
