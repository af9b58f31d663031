"""The scoring server: walks encrypted trees by comparing OPE ciphertexts and adds the
reached leaves homomorphically.  It never holds a key that decrypts anything.

Scoring a batch is vectorised: all (query, tree) pairs advance one level per numpy
step (depth steps in total), then each row's leaf ciphertexts are multiplied modulo
n**2 (a Paillier sum), one product per output group, starting from the encrypted
intercept.  That is one 2|n|-bit modular multiplication per tree per query, which
bounds throughput.

A categorical node holds a padded set of category tokens (ppxgb.cattokens): before the
walk, a compiled binary search marks, for every row and categorical node, whether the
row's token is in the node's set (the server could test every node anyway), and the
walk sends a row right at such a node exactly when it is.

Optionally (`pair_table_mb`), the server trades memory for half of that work: for
consecutive trees t, t' of one group it precomputes the product of every leaf pair,
L_t[a] * L_t'[b] mod n**2, so a query needs one multiplication per pair of trees.
These are products of ciphertexts the server already holds, so nothing new is learnt.
A pair of depth-6 trees costs 64 * 64 ciphertexts (2 MB at 2048-bit keys; a 100-tree
model about 90 MB).  The budget is for the whole server: models get tables in the
order they are added until it is spent, and a model without tables scores the same,
only slower.

Compiled models are a cache bounded by memory (`cache_mb`, approximate bytes per
compiled model: its ciphertexts as gmpy2 integers, node arrays and pair tables); the
least recently used ones are dropped when a new one does not fit, and their pair-table
budget is handed back.  The newest model is always kept, even if alone it exceeds the
bound.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import gmpy2
import numpy as np

from ppxgb import cattokens
from ppxgb.errors import ParameterError
from ppxgb.formats import EncryptedModel, EncryptedQueries, EncryptedScores
from ppxgb.splitrule import encoded_goes_left
from ppxgb.crypto import ore


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
    factors: tuple            # per group: ((table, kind, t0, t1), ...) see _plan
    local: np.ndarray         # leaf index -> index within its tree
    n_local: np.ndarray       # per tree: number of leaves
    digest: bytes             # SHA-256 of the model's bytes
    table_bytes: int          # share of the pair-table budget its tables hold
    size: int                 # approximate bytes held in all (for the cache bound)


def compiled_size(model: EncryptedModel, table_bytes: int) -> int:
    """Approximate memory of a compiled model: every ciphertext held twice (the model's
    Python ints and the gmpy2 copies), node arrays, pair tables."""
    width = 2 * ((int(model.paillier_n).bit_length() * 2 + 7) // 8) + 64
    arrays = sum(a.nbytes for a in (model.roots, model.tree_group, model.left, model.right,
                                    model.column, model.threshold, model.leaf, model.cat_tokens)
                 if a is not None)
    return width * (len(model.leaf_ciphers) + len(model.base_ciphers)) + 3 * arrays + table_bytes + 4096


class Server:
    """Holds encrypted models (in memory) and scores encrypted queries against them."""

    def __init__(self, pair_table_mb: float = 0.0, cache_mb: float | None = None):
        if not pair_table_mb >= 0:
            raise ParameterError.bad("pair_table_mb", "a size in MB >= 0", pair_table_mb)
        if cache_mb is not None and not cache_mb > 0:
            raise ParameterError.bad("cache_mb", "a size in MB > 0 (or None: unbounded)", cache_mb)
        self.pair_table_bytes = int(pair_table_mb * 2**20)     # left for new tables
        self.cache_bytes = None if cache_mb is None else int(cache_mb * 2**20)
        self._models: OrderedDict[str, _Compiled] = OrderedDict()   # least recently used first
        self._lock = threading.Lock()          # the model dict and the budget
        self._add_lock = threading.Lock()      # one model is compiled at a time

    def add(self, model: EncryptedModel | bytes) -> str:
        if isinstance(model, (bytes, bytearray, memoryview)):
            model = EncryptedModel.from_bytes(model)
        if not isinstance(model, EncryptedModel):
            raise ParameterError.bad("model", "an EncryptedModel or its bytes", type(model).__name__)
        model.check()
        digest = hashlib.sha256(model.to_bytes()).digest()
        with self._add_lock:
            old = self._models.get(model.model_id)
            if old is not None and old.digest == digest:
                return model.model_id                   # already held (e.g. two first requests)
            # a replaced model keeps scoring until the new one is ready; its budget is lent
            # to the new one, and taken back if compiling fails
            refund = old.table_bytes if old is not None else 0
            with self._lock:
                self.pair_table_bytes += refund
            n2 = gmpy2.mpz(model.paillier_n) ** 2
            leaf_ciphers = tuple(gmpy2.mpz(c) for c in model.leaf_ciphers)
            group_trees = tuple(np.flatnonzero(model.tree_group == g).tolist() for g in range(model.n_groups))
            local, n_local = _local_leaf_index(model)
            try:
                factors, table_bytes = self._plan(model, leaf_ciphers, group_trees, local, n_local, n2)
            except BaseException:
                with self._lock:
                    self.pair_table_bytes -= refund
                raise
            compiled = _Compiled(
                model=model, depth=model.depth(), nsquare=n2, leaf_ciphers=leaf_ciphers,
                base_ciphers=tuple(gmpy2.mpz(c) for c in model.base_ciphers), group_trees=group_trees,
                factors=factors, local=local, n_local=n_local, digest=digest, table_bytes=table_bytes,
                size=compiled_size(model, table_bytes),
            )
            with self._lock:
                self._models[model.model_id] = compiled
                self._models.move_to_end(model.model_id)
                self._evict()
        return model.model_id

    @property
    def held_bytes(self) -> int:
        """Approximate memory of the compiled models held now."""
        return sum(c.size for c in list(self._models.values()))

    def _evict(self) -> None:
        """Drop least recently used models until the cache fits (caller holds _lock)."""
        if self.cache_bytes is None:
            return
        total = sum(c.size for c in self._models.values())
        while total > self.cache_bytes and len(self._models) > 1:
            _, old = self._models.popitem(last=False)
            total -= old.size
            self.pair_table_bytes += old.table_bytes

    def _plan(self, model, leaf_ciphers, group_trees, local, n_local, n2) -> tuple[tuple, int]:
        """Per group, the factors of a row's product: single trees or precomputed tree
        pairs; and the bytes of budget the pair tables took."""
        width = (int(n2).bit_length() + 7) // 8 + 32          # bytes per stored mpz, roughly
        leaves_of = [[] for _ in range(model.n_trees)]
        owner = np.repeat(np.arange(model.n_trees), np.diff(model.roots))
        for node in np.flatnonzero(model.leaf >= 0):
            leaves_of[owner[node]].append(int(model.leaf[node]))
        with self._lock:                                       # reserve the whole budget
            budget, self.pair_table_bytes = self.pair_table_bytes, 0
        reserved, done = budget, False
        plan = []
        try:
            for trees in group_trees:
                factors, i = [], 0
                while i < len(trees):
                    t0 = trees[i]
                    t1 = trees[i + 1] if i + 1 < len(trees) else None
                    size = int(n_local[t0] * n_local[t1]) * width if t1 is not None else 0
                    if t1 is not None and size <= budget:
                        order0 = sorted(leaves_of[t0], key=lambda leaf: local[leaf])
                        order1 = sorted(leaves_of[t1], key=lambda leaf: local[leaf])
                        table = [leaf_ciphers[a] * leaf_ciphers[b] % n2 for a in order0 for b in order1]
                        budget -= size
                        factors.append((table, "pair", t0, t1))
                        i += 2
                    else:
                        factors.append((leaf_ciphers, "single", t0, -1))
                        i += 1
                plan.append(tuple(factors))
            done = True
        finally:
            with self._lock:            # hand back what is left (all of it on failure)
                self.pair_table_bytes += budget if done else reserved
        return tuple(plan), reserved - budget

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._models

    def held(self) -> list[str]:
        """Ids of the compiled models held, least recently used first."""
        with self._lock:
            return list(self._models)

    def model(self, model_id: str) -> EncryptedModel:
        return self._get(model_id).model

    def _get(self, model_id: str) -> _Compiled:
        try:
            with self._lock:
                self._models.move_to_end(model_id)
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
        if queries.scheme != m.scheme:
            raise ParameterError.bad("queries.scheme", repr(m.scheme), queries.scheme)
        if m.scheme == "ore":
            _check_left(queries)
        qcol = np.array([position[name] for name in m.columns] or [0], dtype=np.int64)
        node_qcol = qcol[np.where(m.is_categorical, 0, np.maximum(m.column, 0))]
        cat_index, member = _membership(m, queries, node_qcol)
        if m.scheme == "ore":
            leaves = ore.walk_ore(m.roots.astype(np.int64), m.left.astype(np.int64), m.right.astype(np.int64),
                                  node_qcol, m.leaf.astype(np.int64),
                                  np.ascontiguousarray(m.ore_right, dtype=np.uint8),
                                  np.ascontiguousarray(queries.ore_left),
                                  ore.BLOCK_BITS, ore.n_blocks(), c.depth, cat_index, member).astype(np.int64)
        else:
            leaves = walk(m, node_qcol, queries.values, c.depth, cat_index, member)
        return EncryptedScores(model_id=model_id, paillier_n=m.paillier_n, n_rows=queries.n_rows,
                               n_groups=m.n_groups, ciphers=tuple(self._sum(c, leaves)))

    @staticmethod
    def _sum(c: _Compiled, leaves: np.ndarray) -> list[int]:
        """Per row and group: Enc(intercept) * prod of reached leaves mod n^2 (a Paillier sum)."""
        n2 = c.nsquare
        groups = []
        for g, factors in enumerate(c.factors):
            cols = [leaves[:, t0] if kind == "single"
                    else c.local[leaves[:, t0]] * c.n_local[t1] + c.local[leaves[:, t1]]
                    for _, kind, t0, t1 in factors]
            groups.append((c.base_ciphers[g], [f[0] for f in factors],
                           np.stack(cols, axis=1).tolist()))
        out = []
        for r in range(leaves.shape[0]):
            for base, tables, index in groups:
                acc = base
                for table, j in zip(tables, index[r]):
                    acc = acc * table[j] % n2
                out.append(int(acc))
        return out


def _membership(m: EncryptedModel, queries: EncryptedQueries, node_qcol: np.ndarray):
    """Per node its index among the categorical nodes (-1 for others), and per row and
    categorical node whether the row's token is in the node's set; categorical nodes'
    entries of node_qcol are set to their token column in the query."""
    cat = m.is_categorical
    cat_index = np.full(m.left.shape[0], -1, dtype=np.int64)
    n = queries.n_rows
    have = tuple(queries.cat_columns)
    if set(have) != set(m.cat_columns) or len(have) != len(m.cat_columns):
        raise ParameterError.bad("queries.cat_columns", f"the model's {len(m.cat_columns)} category columns",
                                 f"{len(have)} columns that do not match")
    if not cat.any():
        return cat_index, np.zeros((n, 0), dtype=np.uint8)
    tokens = queries.tokens
    if not isinstance(tokens, np.ndarray) or tokens.shape != (n, len(have), 2):
        raise ParameterError.bad("queries.tokens", f"uint64 ({n}, {len(have)}, 2)",
                                 getattr(tokens, "shape", type(tokens).__name__))
    position = {name: j for j, name in enumerate(have)}
    tcol = np.array([position[name] for name in m.cat_columns], dtype=np.int64)
    nodes = np.flatnonzero(cat)
    cat_index[nodes] = np.arange(nodes.size)
    node_qcol[nodes] = tcol[m.column[nodes]]
    member = cattokens.membership(nodes.astype(np.int64), m.cat_ptr, m.cat_tokens, m.cat_nonces, node_qcol,
                                  np.ascontiguousarray(tokens, dtype=np.uint64))
    return cat_index, member


def _check_left(queries: EncryptedQueries) -> None:
    """ORE left ciphertexts the compiled walk may index without bounds checks: one
    left_width() slice per column, every block index below 2**BLOCK_BITS."""
    left, width = queries.ore_left, ore.left_width()
    if not isinstance(left, np.ndarray) or left.dtype != np.uint8 \
            or left.shape != (queries.n_rows, len(queries.columns) * width):
        raise ParameterError.bad("queries.ore_left", f"uint8 ({queries.n_rows}, {len(queries.columns) * width})",
                                 getattr(left, "shape", type(left).__name__))
    blocks = left.reshape(queries.n_rows, -1, ore.KEY_BYTES + 1)[:, :, 0]
    if blocks.size and blocks.max() >= 1 << ore.BLOCK_BITS:
        raise ParameterError.bad("queries.ore_left", f"block indexes below {1 << ore.BLOCK_BITS}", int(blocks.max()))


def _local_leaf_index(model: EncryptedModel) -> tuple[np.ndarray, np.ndarray]:
    """Each leaf's index within its own tree, and each tree's number of leaves."""
    owner = np.repeat(np.arange(model.n_trees), np.diff(model.roots))
    nodes = np.flatnonzero(model.leaf >= 0)
    local = np.zeros(len(model.leaf_ciphers), dtype=np.int64)
    n_local = np.zeros(model.n_trees, dtype=np.int64)
    for node in nodes:
        t = owner[node]
        local[model.leaf[node]] = n_local[t]
        n_local[t] += 1
    return local, n_local


def walk(model: EncryptedModel, node_qcol: np.ndarray, values: np.ndarray, depth: int,
         cat_index: np.ndarray | None = None, member: np.ndarray | None = None) -> np.ndarray:
    """Leaf index (into leaf_ciphers) reached by every (row, tree): (n_rows, n_trees).
    At a categorical node (cat_index >= 0) a row goes right when member[row, cat_index]."""
    n = values.shape[0]
    node = np.broadcast_to(model.roots[:-1].astype(np.int64), (n, model.n_trees)).copy()
    rows = np.arange(n)[:, None]
    for _ in range(depth):
        inner = model.column[node] >= 0
        if not inner.any():
            break
        if cat_index is not None and member.shape[1]:
            k = cat_index[node]
            is_cat = k >= 0
            numeric = encoded_goes_left(values[rows, np.where(is_cat, 0, node_qcol[node])] if values.shape[1]
                                        else np.zeros(node.shape, np.int64), model.threshold[node])
            go_left = np.where(is_cat, member[rows, np.maximum(k, 0)] == 0, numeric)
        else:
            go_left = encoded_goes_left(values[rows, node_qcol[node]], model.threshold[node])
        node = np.where(inner, np.where(go_left, model.left[node], model.right[node]), node)
    return model.leaf[node]
