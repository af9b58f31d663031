"""Entry points of vertical training: `train_vertical` and an in-process federation.

    from ppxgb.training import train_vertical
    booster = train_vertical(params, [clinic_df, lab_df, insurer_df], label="ms",
                             label_party=0, num_boost_round=50, id_column="patient_id")

Every role runs as a thread over one transport (in-memory by default): the label
holder, one feature holder per other block, and the dealer (server-0).  With
`id_column`, the parties first align their rows by private set intersection.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ppxgb.errors import ParameterError
from ppxgb.model import Ensemble
from ppxgb.transport import InMemoryTransport, Transport

from ..gradients import check_weights
from ..evaluation import Evaluation, check_evals_result
from ..harness import run_roles
from ..params import TrainParams
from . import psi
from .dealer import run_dealer
from .feature_holder import run_feature_holder
from .label_holder import run_label_holder
from .stages import role_names


def split_block(block, i: int, id_column: str | None, label: Any, is_label_party: bool):
    """(features, names, ids, y) of one party's block; the id and label columns removed."""
    name = f"parties[{i}]"
    is_frame = hasattr(block, "columns")
    ids = y = None
    if id_column is not None:
        if not is_frame or id_column not in block.columns:
            raise ParameterError.bad(f"{name}", f"a DataFrame with the id column {id_column!r}",
                                     type(block).__name__ if not is_frame else list(block.columns)[:8])
        ids = block[id_column].to_numpy()
        block = block.drop(columns=[id_column])
    if is_label_party and isinstance(label, str):
        if not is_frame or label not in block.columns:
            raise ParameterError.bad("label", f"a column of parties[{i}] (the label party)", label)
        y = block[label].to_numpy()
        block = block.drop(columns=[label])
    names = [str(c) for c in block.columns] if is_frame else None
    if is_frame:
        from pandas.api.types import is_numeric_dtype

        import pandas as pd

        bad = [c for c in block.columns
               if not is_numeric_dtype(block[c].dtype) and not isinstance(block[c].dtype, pd.CategoricalDtype)]
        if bad:
            raise ParameterError.bad(name, "numeric feature columns", f"non-numeric column {bad[0]!r}")
    return block, names, ids, y


def prepare_blocks(parties, label, label_party: int, id_column: str | None):
    """Validate the blocks; return (features per party, names per party, ids, y)."""
    if not isinstance(parties, (list, tuple)) or len(parties) < 2:
        raise ParameterError.bad("parties", "a list of at least two column blocks",
                                 type(parties).__name__ if not isinstance(parties, (list, tuple)) else len(parties))
    if isinstance(label_party, bool) or not isinstance(label_party, int) or not 0 <= label_party < len(parties):
        raise ParameterError.bad("label_party", f"an int in [0, {len(parties)})", label_party)
    if isinstance(label, str) and not hasattr(parties[label_party], "columns"):
        raise ParameterError.bad("label", "an array (a column name needs a DataFrame at label_party)", label)
    feats, names, ids = [], [], []
    y = None
    for i, block in enumerate(parties):
        X, nm, id_, y_i = split_block(block, i, id_column, label, i == label_party)
        feats.append(X)
        names.append(nm)
        ids.append(id_)
        if y_i is not None:
            y = y_i
    if y is None:
        y = np.asarray(label).ravel()
    return feats, names, ids, y


def take_weight(feats: list, names: list, weight, label_party: int):
    """The label holder's sample weights out of its block: `weight` is an array (one per
    row of the label party's block), or with a DataFrame the name of one of its columns,
    which is then removed from the features (as `label` is).  Returns (feats, names, w)."""
    if isinstance(weight, str):
        block = feats[label_party]
        if not hasattr(block, "columns") or weight not in block.columns:
            raise ParameterError.bad("weight", f"a column of parties[{label_party}] (the label party)", weight)
        feats, names = list(feats), list(names)
        feats[label_party] = block.drop(columns=[weight])
        names[label_party] = [str(c) for c in feats[label_party].columns]
        weight = block[weight].to_numpy()
    return feats, names, check_weights(weight, int(np.shape(feats[label_party])[0]), "weight")


def run_vertical_federation(params: dict[str, Any], parties: Sequence[Any], label, label_party: int = 0,
                            num_boost_round: int = 10, n_servers: int = 2, id_column: str | None = None,
                            transport: Transport | None = None, progress=None,
                            timeout: float | None = 600.0, weight=None,
                            feature_types=None, evals=None, evaluation=None,
                            psi_protocol: str = "auto") -> tuple[Ensemble, Transport]:
    """Run PSI (with id_column), then every vertical role as a thread; returns (model, transport)."""
    TrainParams.from_dict(params)
    psi.choose_protocol(psi_protocol, 0)
    feats, names, ids, y = prepare_blocks(parties, label, label_party, id_column)
    feats, names, w = take_weight(feats, names, weight, label_party)
    party_names, lh, dealer = role_names(len(parties), label_party, n_servers)
    transport = transport or InMemoryTransport()
    if id_column is not None:
        orders = psi.run_psi_federation(transport, party_names, lh, ids, timeout=timeout, protocol=psi_protocol)
        feats = [_take(X, o) for X, o in zip(feats, orders)]
        y = np.asarray(y).ravel()
        if len(y) != len(ids[label_party]):
            raise ParameterError.bad("label", f"{len(ids[label_party])} labels (one per row of the label party)",
                                     len(y))
        y = y[orders[label_party]]
    if id_column is not None and w is not None:
        w = w[orders[label_party]]
    if any(n is not None for n in names):
        names = [n if n is not None else [f"{party_names[i]}_f{j}" for j in range(_ncols(feats[i]))]
                 for i, n in enumerate(names)]
    types = types_per_party(feature_types, feats)
    val_fh, val_lh = eval_blocks(evals, label, weight, label_party, id_column, transport, party_names, lh, timeout,
                                 psi_protocol)
    if evaluation is None and evals:
        evaluation = Evaluation(TrainParams.from_dict(params), [e[0] for e in val_lh], None, verbose_eval=False)
    helpers = [(q, run_feature_holder, (transport, q, feats[i]),
                {"label_holder": lh, "dealer": dealer, "evals": val_fh[i], "feature_names": names[i], "timeout": timeout,
                 "feature_types": types[i]})
               for i, q in enumerate(party_names) if q != lh]
    helpers.append((dealer, run_dealer, (transport, dealer), {"label_holder": lh, "timeout": timeout}))
    model = run_roles(helpers, lambda: run_label_holder(
        transport, lh, feats[label_party], y, params, num_boost_round, parties=party_names, dealer=dealer,
        feature_names=names[label_party], progress=progress, timeout=timeout, weight=w, evals=val_lh, evaluation=evaluation,
        feature_types=types[label_party]))
    return model, transport


def types_per_party(feature_types, feats: list) -> list:
    """feature_types over the concatenated feature columns (party order), cut per party."""
    if feature_types is None:
        return [None] * len(feats)
    counts = [_ncols(X) for X in feats]
    if not isinstance(feature_types, (list, tuple)) or len(feature_types) != sum(counts):
        raise ParameterError.bad("feature_types", f"{sum(counts)} entries (one per feature column, in party order)",
                                 len(feature_types) if isinstance(feature_types, (list, tuple)) else feature_types)
    ends = np.cumsum([0] + counts)
    return [list(feature_types[a:b]) for a, b in zip(ends[:-1], ends[1:])]


def _ncols(X) -> int:
    return int(np.shape(X)[1]) if np.ndim(X) == 2 else 0


def _take(X, order: np.ndarray):
    if hasattr(X, "iloc"):
        return X.iloc[order]
    return np.asarray(X)[order]


def train_vertical(params: dict[str, Any], parties: Sequence[Any], label, label_party: int = 0,
                   num_boost_round: int = 10, n_servers: int = 2, id_column: str | None = None, *,
                   weight=None, evals=None, early_stopping_rounds: int | None = None, evals_result: dict | None = None,
                   callbacks=None, verbose_eval: bool | int = True, maximize: bool | None = None, feature_types=None, progress=None, transport: Transport | None = None,
                   timeout: float | None = 600.0, psi_protocol: str = "auto"):
    """Train one XGBoost model over institutions that hold different columns of the same patients.

    parties: column blocks (numpy arrays or DataFrames), one per institution; rows must be
    aligned unless `id_column` names an ID column present in every DataFrame, in which case
    rows are aligned by private set intersection and only common IDs are used.  label: the
    label holder's y (an array), or with DataFrames the name of a column of
    parties[label_party].  weight: the label holder's sample weights, given the same way
    (they never leave the label holder).  n_servers: compute servers available; server-0
    is the dealer of correlated randomness (the others are not needed by this protocol).

    evals: [(val_blocks, name)], [(val_blocks, y, name)] or [(val_blocks, y, w, name)]:
    validation blocks per party, aligned like the training blocks (PSI on id_column,
    else by position); labels from the label column (or y), weights from the weight
    column (or w), at the label holder, which scores every round itself.
    psi_protocol: "auto" (the default: the OPRF PSI when a party holds 1,000 IDs, the
    Diffie-Hellman PSI below), "ecdh" or "oprf" (docs/vertical.md compares them).
    early_stopping_rounds, evals_result, callbacks, verbose_eval and maximize as in
    xgboost.train.

    Returns an xgboost.Booster over the parties' feature columns concatenated in party
    order (id, label and weight columns removed), with feature names when DataFrames are
    given.  Categorical features: pandas `category` columns, and integer-coded columns
    marked "c" in feature_types (one entry per feature column, in that order), get
    XGBoost's categorical splits; each party codes its own columns as XGBoost would.
    """
    p = TrainParams.from_dict(params)
    check_evals_result(evals_result)
    if progress is None and p.verbosity > 0:
        from ..progress import default_progress
        progress = default_progress()
    evaluation = Evaluation(p, _eval_names(evals), None, callbacks, early_stopping_rounds, verbose_eval, maximize)
    model, _ = run_vertical_federation(params, parties, label, label_party, num_boost_round, n_servers,
                                       id_column, transport, progress, timeout, weight, feature_types, evals=evals,
                                       evaluation=evaluation, psi_protocol=psi_protocol)
    return evaluation.finish(model.to_booster(), evals_result)


def _eval_names(evals) -> list[str]:
    if evals is None:
        return []
    if not isinstance(evals, (list, tuple)) or not all(isinstance(e, (list, tuple)) and e for e in evals):
        raise ParameterError.bad("evals", "a list of (val_blocks, [y, [w,]] name) tuples", type(evals).__name__)
    return [e[-1] for e in evals]


def eval_blocks(evals, label, weight, label_party: int, id_column: str | None, transport: Transport,
                party_names: list[str], lh: str, timeout,
                psi_protocol: str = "auto") -> tuple[list[dict], list[tuple]]:
    """Each eval set's blocks, aligned as the training blocks are (PSI on id_column, one
    run per set): ({name: block} per party, [(name, X, y, w)] for the label holder)."""
    per_party: list[dict] = [{} for _ in party_names]
    lh_evals: list[tuple] = []
    for k, item in enumerate(evals or []):
        if not isinstance(item, (list, tuple)) or not 2 <= len(item) <= 4 or not isinstance(item[-1], str):
            raise ParameterError.bad(f"evals[{k}]", "(val_blocks, name), (val_blocks, y, name) or "
                                     "(val_blocks, y, w, name)", type(item).__name__)
        name = item[-1]
        if len(item) == 2 and not isinstance(label, str):
            raise ParameterError.bad(f"evals[{k}] ({name})", "(val_blocks, y, name): the labels, since label "
                                     "is an array", "no labels")
        y_given = item[1] if len(item) >= 3 else label
        w_given = item[2] if len(item) == 4 else (weight if isinstance(weight, str) else None)
        if not isinstance(item[0], (list, tuple)) or len(item[0]) != len(party_names):
            raise ParameterError.bad(f"evals[{k}] ({name})", f"{len(party_names)} blocks, one per party",
                                     len(item[0]) if isinstance(item[0], (list, tuple)) else type(item[0]).__name__)
        feats, names, ids, y = prepare_blocks(item[0], y_given, label_party, id_column)
        feats, _, w = take_weight(feats, names, w_given, label_party)
        y = np.asarray(y).ravel()
        if id_column is not None:
            orders = psi.run_psi_federation(transport, party_names, lh, ids, timeout=timeout, protocol=psi_protocol)
            feats = [_take(X, o) for X, o in zip(feats, orders)]
            y = y[orders[label_party]]
            w = w[orders[label_party]] if w is not None else None
        for i, q in enumerate(party_names):
            if q != lh:
                per_party[i][name] = feats[i]
        lh_evals.append((name, feats[label_party], y, w))
    return per_party, lh_evals
