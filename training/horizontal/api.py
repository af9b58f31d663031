"""train_horizontal: a whole horizontal federation in-process over one transport."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError
from ppxgb.model import Ensemble, as_float32_matrix
from ppxgb.transport import InMemoryTransport, Transport

from ..gradients import check_weights
from ..harness import run_roles
from ..params import TrainParams
from .coordinator import run_coordinator
from .party import run_party
from .server import run_server
from .stages import role_names


def _feature_names(parties: Sequence[tuple]) -> list[str] | None:
    names = [list(map(str, item[0].columns)) if hasattr(item[0], "columns") else None for item in parties]
    if all(n is None for n in names):
        return None
    if any(n != names[0] for n in names):
        raise ParameterError("parties: every DataFrame must have the same columns in the same order")
    return names[0]


def _check_parties(parties) -> list[tuple[Any, Any, Any]]:
    """(X, y, w) per party (w None when a party gives an (X, y) pair), checked."""
    if not isinstance(parties, (list, tuple)) or not parties:
        raise ParameterError.bad("parties", "a non-empty list of (X, y) or (X, y, w) tuples",
                                 type(parties).__name__)
    out = []
    for i, item in enumerate(parties):
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
            raise ParameterError.bad(f"parties[{i}]", "an (X, y) pair or an (X, y, w) triple",
                                     type(item).__name__ if not isinstance(item, (list, tuple)) else len(item))
        X = as_float32_matrix(item[0], name=f"parties[{i}] X")
        y = np.asarray(item[1]).ravel()
        if X.shape[0] == 0:
            raise ParameterError.bad(f"parties[{i}] X", "at least one row", 0)
        if len(y) != X.shape[0]:
            raise ParameterError.bad(f"parties[{i}] y", f"{X.shape[0]} labels", len(y))
        w = item[2] if len(item) == 3 else None
        check_weights(w, X.shape[0], f"parties[{i}] w")
        out.append((item[0], item[1], w))
    return out


def run_federation(params: dict[str, Any], parties, num_boost_round: int, n_servers: int,
                   transport: Transport | None = None, progress=None,
                   timeout: float | None = 600.0) -> tuple[Ensemble, Transport]:
    """Run every role as a thread over one transport; returns the model and transport."""
    TrainParams.from_dict(params)  # fail fast, before any thread starts
    parties = _check_parties(parties)
    names = _feature_names(parties)
    party_names, server_names, _ = role_names(len(parties), n_servers)
    transport = transport or InMemoryTransport()
    helpers = [(n, run_party, (transport, n, X, y, w), {"servers": server_names, "timeout": timeout})
               for n, (X, y, w) in zip(party_names, parties)]
    helpers += [(s, run_server, (transport, s), {"parties": party_names, "timeout": timeout})
                for s in server_names]
    model = run_roles(helpers, lambda: run_coordinator(
        transport, params, num_boost_round, parties=party_names, servers=server_names,
        progress=progress, timeout=timeout, feature_names=names))
    return model, transport


def train_horizontal(params: dict[str, Any], parties: Sequence[tuple],
                     num_boost_round: int = 10, n_servers: int = 2, *, progress=None,
                     transport: Transport | None = None, timeout: float | None = 600.0):
    """Train one XGBoost model over hospitals that hold the same features for different patients.

    parties: list of (X, y) or (X, y, w), one per hospital; X a numpy array or DataFrame
    with NaN for missing, w the hospital's sample weights (they stay with it). Each party
    sends only additive shares to n_servers (2 to 4) compute servers; the coordinator
    opens only sums over all parties. Returns an xgboost.Booster.
    """
    if progress is None and TrainParams.from_dict(params).verbosity > 0:
        from ..progress import default_progress
        progress = default_progress()
    model, _ = run_federation(params, parties, num_boost_round, n_servers, transport, progress, timeout)
    return model.to_booster()
