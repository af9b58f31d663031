"""The scoring server: walks encrypted trees by comparing OPE ciphertexts and adds the
reached leaves homomorphically.  It never holds a key that decrypts anything.

Scoring a batch is vectorised: all (query, tree) pairs advance one level per numpy
step (depth steps in total), then each row's leaf ciphertexts are multiplied modulo
n**2 (a Paillier sum), one product per output group, starting from the encrypted
intercept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import gmpy2
import numpy as np

from ppxgb.errors import ParameterError
from ppxgb.formats import EncryptedModel, EncryptedQueries, EncryptedScores


class UnknownModel(ParameterError):
    """No model with this id is stored."""


@dataclass(frozen=True)
class _Compiled:
    model: EncryptedModel
    depth: int
    nsquare: object
    leaf_ciphers: tuple
    base_ciphers: tuple
    group_trees: tuple        # per group: indices of its trees


class Server:
    """Holds encrypted models (in memory) and scores encrypted queries against them."""

    def __init__(self):
        self._models: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def add(self, model: EncryptedModel | bytes) -> str:
        if isinstance(model, (bytes, bytearray, memoryview)):
            model = EncryptedModel.from_bytes(model)
        if not isinstance(model, EncryptedModel):
            raise ParameterError.bad("model", "an EncryptedModel or its bytes", type(model).__name__)
        model.check()
        n2 = gmpy2.mpz(model.paillier_n) ** 2
        compiled = _Compiled(
            model=model, depth=model.depth(), nsquare=n2,
            leaf_ciphers=tuple(gmpy2.mpz(c) for c in model.leaf_ciphers),
            base_ciphers=tuple(gmpy2.mpz(c) for c in model.base_ciphers),
            group_trees=tuple(np.flatnonzero(model.tree_group == g).tolist() for g in range(model.n_groups)),
        )
        with self._lock:
            self._models[model.model_id] = compiled
        return model.model_id

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._models

    def model(self, model_id: str) -> EncryptedModel:
        return self._get(model_id).model

    def _get(self, model_id: str) -> _Compiled:
        try:
            return self._models[model_id]
        except KeyError:
            raise UnknownModel(f"model_id: no model {model_id!r} on this server") from None

    def predict(self, model_id: str, queries: EncryptedQueries | bytes) -> EncryptedScores:
        if isinstance(queries, (bytes, bytearray, memoryview)):
            queries = EncryptedQueries.from_bytes(queries)
        if not isinstance(queries, EncryptedQueries):
            raise ParameterError.bad("queries", "EncryptedQueries or its bytes", type(queries).__name__)
        c = self._get(model_id)
        m = c.model
        if queries.model_id != model_id:
            raise ParameterError.bad("queries.model_id", repr(model_id), queries.model_id)
        position = {name: j for j, name in enumerate(queries.columns)}
        if len(position) != len(queries.columns) or set(position) != set(m.columns):
            raise ParameterError.bad("queries.columns", f"the model's {len(m.columns)} feature columns",
                                     f"{len(queries.columns)} columns that do not match")
        qcol = np.array([position[name] for name in m.columns], dtype=np.int64)
        leaves = walk(m, qcol[np.maximum(m.column, 0)], queries.values, c.depth)
        return EncryptedScores(model_id=model_id, paillier_n=m.paillier_n, n_rows=queries.n_rows,
                               n_groups=m.n_groups, ciphers=tuple(self._sum(c, leaves)))

    @staticmethod
    def _sum(c: _Compiled, leaves: np.ndarray) -> list[int]:
        """Per row and group: Enc(intercept) * prod of reached leaves mod n^2 (a Paillier sum)."""
        out = []
        lc, n2 = c.leaf_ciphers, c.nsquare
        groups = [(c.base_ciphers[g], trees) for g, trees in enumerate(c.group_trees)]
        for row in leaves.tolist():
            for acc, trees in groups:
                for t in trees:
                    acc = acc * lc[row[t]] % n2
                out.append(int(acc))
        return out


def walk(model: EncryptedModel, node_qcol: np.ndarray, values: np.ndarray, depth: int) -> np.ndarray:
    """Leaf index (into leaf_ciphers) reached by every (row, tree): (n_rows, n_trees)."""
    n = values.shape[0]
    node = np.broadcast_to(model.roots[:-1].astype(np.int64), (n, model.n_trees)).copy()
    rows = np.arange(n)[:, None]
    for _ in range(depth):
        inner = model.column[node] >= 0
        if not inner.any():
            break
        go_left = values[rows, node_qcol[node]] < model.threshold[node]
        node = np.where(inner, np.where(go_left, model.left[node], model.right[node]), node)
    return model.leaf[node]
