"""train_horizontal: a whole horizontal federation in-process over one transport."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError
from ppxgb.model import Ensemble, as_float32_matrix
from ppxgb.transport import InMemoryTransport, Transport

from ..evaluation import Evaluation, check_evals_result
from ..categorical import split_columns
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


def _check_parties(parties, feature_types=None) -> list[tuple[Any, Any, Any]]:
    """(X, y, w) per party (w None when a party gives an (X, y) pair), checked."""
    if not isinstance(parties, (list, tuple)) or not parties:
        raise ParameterError.bad("parties", "a non-empty list of (X, y) or (X, y, w) tuples",
                                 type(parties).__name__)
    out = []
    for i, item in enumerate(parties):
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
            raise ParameterError.bad(f"parties[{i}]", "an (X, y) pair or an (X, y, w) triple",
                                     type(item).__name__ if not isinstance(item, (list, tuple)) else len(item))
        X = split_columns(item[0], feature_types, f"parties[{i}] X")[0]
        y = np.asarray(item[1]).ravel()
        if X.shape[0] == 0:
            raise ParameterError.bad(f"parties[{i}] X", "at least one row", 0)
        if len(y) != X.shape[0]:
            raise ParameterError.bad(f"parties[{i}] y", f"{X.shape[0]} labels", len(y))
        w = item[2] if len(item) == 3 else None
        check_weights(w, X.shape[0], f"parties[{i}] w")
        out.append((item[0], item[1], w))
    return out


def eval_names(evals) -> list[str]:
    """The names of evals = [(val_parties, name), ...], checked for shape."""
    if evals is None:
        return []
    if not isinstance(evals, (list, tuple)) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in evals):
        raise ParameterError.bad("evals", "a list of (validation rows per party, name) pairs", evals)
    return [name for _, name in evals]


def party_evals(evals, parties: list) -> list[dict[str, tuple]]:
    """evals = [(val_parties, name), ...] as {name: (X, y[, w])} per party; val_parties
    lists each party's own validation rows in party order (None: that party has none)."""
    if evals is None:
        return [{} for _ in parties]
    if not isinstance(evals, (list, tuple)):
        raise ParameterError.bad("evals", "a list of (validation rows per party, name) pairs", type(evals).__name__)
    out: list[dict[str, tuple]] = [{} for _ in parties]
    n_features = as_float32_matrix(parties[0][0], name="parties[0] X").shape[1]
    for k, item in enumerate(evals):
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[1], str):
            raise ParameterError.bad(f"evals[{k}]", "a (validation rows per party, name) pair", item)
        rows, name = item
        if not isinstance(rows, (list, tuple)) or len(rows) != len(parties):
            raise ParameterError.bad(f"evals[{k}] ({name})", f"a list of {len(parties)} entries, one per party",
                                     len(rows) if isinstance(rows, (list, tuple)) else type(rows).__name__)
        for i, r in enumerate(rows):
            if r is None:
                r = (np.zeros((0, n_features), np.float32), np.zeros(0))
            if not isinstance(r, (list, tuple)) or len(r) not in (2, 3):
                raise ParameterError.bad(f"evals[{k}] ({name}) party {i}", "(X, y), (X, y, w) or None", type(r).__name__)
            out[i][name] = tuple(r)
    return out


def run_federation(params: dict[str, Any], parties, num_boost_round: int, n_servers: int,
                   transport: Transport | None = None, progress=None,
                   timeout: float | None = 600.0, evals=None,
                   evaluation: Evaluation | None = None, feature_types=None) -> tuple[Ensemble, Transport]:
    """Run every role as a thread over one transport; returns the model and transport.
    evals: [(validation rows per party, name), ...]; evaluation: the Evaluation that
    takes their scores (one with xgboost's defaults is made when evals are given)."""
    p = TrainParams.from_dict(params)  # fail fast, before any thread starts
    parties = _check_parties(parties, feature_types)
    names = _feature_names(parties)
    per_party = party_evals(evals, parties)
    if evaluation is None and evals:
        evaluation = Evaluation(p, eval_names(evals), None, verbose_eval=False)
    party_names, server_names, _ = role_names(len(parties), n_servers)
    transport = transport or InMemoryTransport()
    helpers = [(n, run_party, (transport, n, X, y, w), {"servers": server_names, "timeout": timeout, "evals": ev,
                                                   "feature_types": feature_types})
               for n, (X, y, w), ev in zip(party_names, parties, per_party)]
    helpers += [(s, run_server, (transport, s), {"parties": party_names, "timeout": timeout})
                for s in server_names]
    model = run_roles(helpers, lambda: run_coordinator(
        transport, params, num_boost_round, parties=party_names, servers=server_names,
        progress=progress, timeout=timeout, feature_names=names, evaluation=evaluation))
    return model, transport


def train_horizontal(params: dict[str, Any], parties: Sequence[tuple],
                     num_boost_round: int = 10, n_servers: int = 2, *, evals=None,
                     early_stopping_rounds: int | None = None, evals_result: dict | None = None,
                     callbacks=None, verbose_eval: bool | int = True, maximize: bool | None = None,
                     feature_types=None,
                     progress=None, transport: Transport | None = None, timeout: float | None = 600.0):
    """Train one XGBoost model over hospitals that hold the same features for different patients.

    parties: list of (X, y) or (X, y, w), one per hospital; X a numpy array or DataFrame
    with NaN for missing, w the hospital's sample weights (they stay with it). Each party
    sends only additive shares to n_servers (2 to 4) compute servers; the coordinator
    opens only sums over all parties. Returns an xgboost.Booster.

    Categorical features: pandas `category` columns, and numeric columns of integer
    codes marked "c" in feature_types (one entry per column, as xgboost.DMatrix takes
    it), get XGBoost's categorical splits; the parties agree on each column's list of
    categories first (training/categorical.py says what that opens).

    evals: [(val_parties, name), ...], val_parties listing each party's own validation
    rows, (X, y) or (X, y, w) (or None), which never leave it; the coordinator opens
    only each metric's statistics summed over parties.  early_stopping_rounds,
    evals_result, callbacks, verbose_eval and maximize as in xgboost.train.
    """
    p = TrainParams.from_dict(params)
    check_evals_result(evals_result)
    if progress is None and p.verbosity > 0:
        from ..progress import default_progress
        progress = default_progress()
    evaluation = Evaluation(p, eval_names(evals), None, callbacks, early_stopping_rounds,
                            verbose_eval, maximize)
    model, _ = run_federation(params, parties, num_boost_round, n_servers, transport, progress, timeout,
                              evals, evaluation, feature_types)
    return evaluation.finish(model.to_booster(), evals_result)
