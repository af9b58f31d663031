"""The CART ensemble that every role shares, and its exact XGBoost JSON round trip.

An `Ensemble` is a list of binary trees in XGBoost's array layout (left/right child,
split feature, float32 threshold, default direction, leaf value), the objective, the
number of features and classes, and the intercept as XGBoost stores it
(`learner_model_param.base_score`: probability space for logistic objectives, a
per-class margin vector for multi-class models).

Prediction follows XGBoost's float32 semantics: a row goes left when
`float32(x) < threshold`, a missing value (NaN) follows `default_left`, and margins
accumulate in float32 starting from the base margin.  A categorical split (split_type
1) holds a set of category codes instead of a threshold: a code in the set goes right,
others left (ppxgb.categories); a model trained on pandas categories also carries each
feature's list of categories, which re-codes DataFrame input as XGBoost does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .categories import MAX_CATEGORY, codes_matrix, decode_cats, encode_cats
from .errors import FormatError, ParameterError
from .objectives import apply_transform, get_objective
from .splitrule import category_goes_left, goes_left

#: Objectives whose prediction transform ppxgb knows (for loading and inference).

_NO_PARENT = 2147483647


@dataclass(frozen=True)
class Tree:
    """One regression tree in XGBoost's array layout; node 0 is the root."""

    left: np.ndarray            # int32, -1 for a leaf
    right: np.ndarray           # int32, -1 for a leaf
    feature: np.ndarray         # int32 split feature (0 for leaves)
    threshold: np.ndarray       # float32 split condition (leaf value for leaves)
    default_left: np.ndarray    # bool, missing values go left
    base_weight: np.ndarray     # float32 node weight (XGBoost's base_weights)
    loss_change: np.ndarray     # float32 split gain (0 for leaves)
    sum_hessian: np.ndarray     # float32 cover
    #: per node: 0 numeric, 1 categorical (XGBoost's split_type); None: all numeric
    split_type: np.ndarray | None = None
    #: per node: sorted int32 codes of the categories that go right (empty for others)
    categories: tuple[np.ndarray, ...] | None = None

    @property
    def is_categorical(self) -> np.ndarray:
        """Per node: a categorical split."""
        if self.split_type is None:
            return np.zeros(self.n_nodes, dtype=bool)
        return (self.split_type == 1) & (self.left >= 0)

    @property
    def n_nodes(self) -> int:
        return int(self.left.shape[0])

    @property
    def is_leaf(self) -> np.ndarray:
        return self.left < 0

    @property
    def leaf_value(self) -> np.ndarray:
        """Leaf values (the threshold slot of a leaf holds its value, as in XGBoost)."""
        return self.threshold

    def depth(self) -> int:
        depth = np.zeros(self.n_nodes, dtype=np.int64)
        for i in range(self.n_nodes):  # parents precede children in XGBoost layout
            if self.left[i] >= 0:
                depth[self.left[i]] = depth[self.right[i]] = depth[i] + 1
        return int(depth.max())

    def leaf_index(self, X: np.ndarray) -> np.ndarray:
        """Index of the leaf each row of float32 X reaches (vectorised over rows)."""
        node = np.zeros(X.shape[0], dtype=np.int64)
        rows = np.arange(X.shape[0])
        for _ in range(self.n_nodes):
            active = self.left[node] >= 0
            if not active.any():
                break
            x = X[rows, self.feature[node]]
            go_left = goes_left(x, self.threshold[node], self.default_left[node])
            if self.split_type is not None:
                cat = active & self.is_categorical[node]
                for nd in np.unique(node[cat]):
                    at = cat & (node == nd)
                    go_left[at] = category_goes_left(x[at], self.categories[nd], self.default_left[nd])
            nxt = np.where(go_left, self.left[node], self.right[node])
            node = np.where(active, nxt, node)
        return node

    @classmethod
    def from_arrays(cls, left, right, feature, threshold, default_left,
                    base_weight=None, loss_change=None, sum_hessian=None,
                    split_type=None, categories=None) -> "Tree":
        """categories: per node, the codes that go right (a categorical node), or a dict
        {node: codes}; split_type then defaults to 1 exactly where a set is given."""
        n = len(left)
        zeros = np.zeros(n, dtype=np.float32)
        if isinstance(categories, dict):
            categories = [categories.get(i, ()) for i in range(n)]
        if categories is not None:
            categories = tuple(np.unique(np.asarray(c, dtype=np.int64)).astype(np.int32) for c in categories)
            if split_type is None:
                split_type = [1 if len(c) else 0 for c in categories]
        if split_type is not None:
            split_type = np.asarray(split_type, dtype=np.uint8)
            if not split_type.any():
                split_type = categories = None
        tree = cls(
            left=np.asarray(left, dtype=np.int32),
            right=np.asarray(right, dtype=np.int32),
            feature=np.asarray(feature, dtype=np.int32),
            threshold=np.asarray(threshold, dtype=np.float32),
            default_left=np.asarray(default_left, dtype=bool),
            base_weight=zeros if base_weight is None else np.asarray(base_weight, np.float32),
            loss_change=zeros if loss_change is None else np.asarray(loss_change, np.float32),
            sum_hessian=zeros if sum_hessian is None else np.asarray(sum_hessian, np.float32),
            split_type=split_type, categories=categories,
        )
        tree._check()
        return tree

    def _check(self) -> None:
        n = self.n_nodes
        arrays = [self.right, self.feature, self.threshold, self.default_left,
                  self.base_weight, self.loss_change, self.sum_hessian]
        if n == 0 or any(a.shape != (n,) for a in arrays):
            raise FormatError("tree arrays must be non-empty and of equal length")
        inner = self.left >= 0
        if np.any((self.right >= 0) != inner):
            raise FormatError("tree: a node has exactly one child")
        kids = np.concatenate([self.left[inner], self.right[inner]])
        if kids.size and (kids.min() < 1 or kids.max() >= n or len(np.unique(kids)) != kids.size):
            raise FormatError("tree: child indices are out of range or repeated")
        if kids.size != n - 1:
            raise FormatError("tree: nodes are not one connected tree")
        if self.split_type is not None:
            cats = self.categories
            if self.split_type.shape != (n,) or np.any(self.split_type > 1) or cats is None or len(cats) != n:
                raise FormatError("tree: split_type must be 0 or 1 per node, with a category set per node")
            for i in np.flatnonzero(self.split_type == 1):
                c = cats[i]
                if inner[i] and (c.size == 0 or c.min() < 0 or c.max() >= MAX_CATEGORY):
                    raise FormatError(f"tree: categorical node {i} needs a non-empty set of codes "
                                      f"in [0, {MAX_CATEGORY})")

    def parents(self) -> np.ndarray:
        parent = np.full(self.n_nodes, _NO_PARENT, dtype=np.int64)
        inner = np.flatnonzero(self.left >= 0)
        parent[self.left[inner]] = inner
        parent[self.right[inner]] = inner
        return parent


@dataclass(frozen=True)
class Ensemble:
    """A boosted ensemble of trees, as XGBoost's gbtree holds it."""

    objective: str
    num_feature: int
    trees: tuple[Tree, ...]
    tree_info: tuple[int, ...]          # output group (class) of each tree
    base_score: tuple[float, ...]       # as stored by XGBoost (see module docstring)
    num_class: int = 0                  # 0 unless multi-class
    feature_names: tuple[str, ...] | None = None
    feature_types: tuple[str, ...] | None = None
    objective_params: dict[str, Any] = field(default_factory=dict)
    #: per feature, its list of categories (index = XGBoost code) or None; None for a
    #: model that holds no lists (categorical data is then given as integer codes)
    categories: tuple | None = None

    def __post_init__(self) -> None:
        get_objective(self.objective)      # a known objective, or ParameterError naming them
        if len(self.tree_info) != len(self.trees):
            raise FormatError("tree_info must have one entry per tree")
        groups = self.n_groups
        if any(not 0 <= g < groups for g in self.tree_info):
            raise FormatError("tree_info names an output group that does not exist")
        if len(self.base_score) not in (1, groups):
            raise FormatError("base_score must have one value or one per class")
        for tree in self.trees:
            inner = tree.left >= 0
            if inner.any() and tree.feature[inner].max() >= self.num_feature:
                raise FormatError("a split uses a feature index beyond num_feature")
        types = self.feature_types
        if types is not None and len(types) != self.num_feature:
            raise FormatError(f"feature_types must have {self.num_feature} entries, got {len(types)}")
        for tree in self.trees:
            used = tree.feature[tree.is_categorical]
            if used.size and (types is None or any(types[f] != "c" for f in used)):
                raise FormatError("a categorical split uses a feature not typed 'c' in feature_types")
        if self.categories is not None and len(self.categories) != self.num_feature:
            raise FormatError(f"categories must have {self.num_feature} entries (None for numeric features)")

    @property
    def categorical_features(self) -> tuple[int, ...]:
        """Indices of the features typed 'c'."""
        return tuple(i for i, t in enumerate(self.feature_types or ()) if t == "c")

    @property
    def n_groups(self) -> int:
        """Number of margins per row: num_class for multi-class, else 1."""
        return self.num_class if self.num_class > 1 else 1

    @property
    def transform(self) -> str:
        return get_objective(self.objective).transform

    def base_margin(self) -> np.ndarray:
        """The intercept in margin space, one float32 per output group."""
        score = np.asarray(self.base_score, dtype=np.float32)
        if score.size == 1:
            score = np.repeat(score, self.n_groups)
        return get_objective(self.objective).base_margin(score)

    def predict_margin(self, X) -> np.ndarray:
        """Plaintext margins with XGBoost's float32 semantics; (n,) or (n, groups)."""
        X = as_float32_matrix(codes_matrix(X, self.feature_types, self.categories), self.num_feature)
        out = np.tile(self.base_margin(), (X.shape[0], 1)).astype(np.float32)
        for tree, group in zip(self.trees, self.tree_info):
            out[:, group] += tree.leaf_value[tree.leaf_index(X)]
        return out if self.n_groups > 1 else out[:, 0]

    def predict(self, X, output_margin: bool = False) -> np.ndarray:
        margin = self.predict_margin(X)
        return margin if output_margin else apply_transform(self.transform, margin)

    # ------------------------------------------------------------------ XGBoost JSON
    def to_xgboost_json(self) -> dict[str, Any]:
        """The model in XGBoost's JSON schema, loadable by `xgboost.Booster`."""
        trees = [_tree_to_json(t, i, self.num_feature) for i, t in enumerate(self.trees)]
        n_iter = len(self.trees) // self.n_groups
        objective: dict[str, Any] = {"name": self.objective,
                                     **get_objective(self.objective).json_params(self.num_class,
                                                                                 self.objective_params)}
        return {
            "learner": {
                "attributes": {},
                "feature_names": list(self.feature_names or []),
                "feature_types": list(self.feature_types or []),
                "gradient_booster": {
                    "model": {
                        "cats": (encode_cats(self.categories) if self.categories is not None
                                 else {"enc": [], "feature_segments": [], "sorted_idx": []}),
                        "gbtree_model_param": {"num_parallel_tree": "1",
                                               "num_trees": str(len(trees))},
                        "iteration_indptr": [i * self.n_groups for i in range(n_iter + 1)],
                        "tree_info": [int(g) for g in self.tree_info],
                        "trees": trees,
                    },
                    "name": "gbtree",
                },
                "learner_model_param": {
                    "base_score": "[" + ",".join(_f32_str(v) for v in self.base_score) + "]",
                    "boost_from_average": "1",
                    "num_class": str(self.num_class),
                    "num_feature": str(self.num_feature),
                    "num_target": "1",
                },
                "objective": objective,
            },
            "version": _xgboost_version(),
        }

    def to_booster(self):
        """Load into an `xgboost.Booster` (all XGBoost tools then apply)."""
        import xgboost

        raw = bytearray(json.dumps(self.to_xgboost_json()).encode())
        booster = xgboost.Booster()
        booster.load_model(raw)
        return booster

    @classmethod
    def from_xgboost_json(cls, doc: dict[str, Any] | str | bytes) -> "Ensemble":
        try:
            if isinstance(doc, (str, bytes, bytearray)):
                doc = json.loads(doc)
            learner = doc["learner"]
            booster = learner["gradient_booster"]
            if booster.get("name") != "gbtree":
                raise FormatError(f"only gbtree models are supported, got {booster.get('name')!r}")
            model = booster["model"]
            lmp = learner["learner_model_param"]
            objective = learner["objective"]["name"]
            num_class = int(lmp.get("num_class", "0"))
            if int(lmp.get("num_target", "1")) != 1:
                raise FormatError("multi-target models are not supported")
            base_score = _parse_base_score(lmp["base_score"])
            if int(model["gbtree_model_param"].get("num_parallel_tree", "1")) != 1:
                raise FormatError("num_parallel_tree > 1 (random forests) is not supported")
            trees = tuple(_tree_from_json(t) for t in model["trees"])
            obj_params = {k: v for k, v in learner["objective"].items() if k != "name"}
            obj_params = next(iter(obj_params.values()), {}) if obj_params else {}
            return cls(
                objective=objective,
                num_feature=int(lmp["num_feature"]),
                trees=trees,
                tree_info=tuple(int(g) for g in model["tree_info"]),
                base_score=base_score,
                num_class=num_class,
                feature_names=tuple(learner.get("feature_names") or []) or None,
                feature_types=tuple(learner.get("feature_types") or []) or None,
                objective_params=dict(obj_params) if not objective.startswith("multi:") else {},
                categories=decode_cats(model.get("cats"), int(lmp["num_feature"])),
            )
        except FormatError:
            raise
        except ParameterError as exc:   # a well-formed model ppxgb cannot use: say what, not "invalid"
            raise FormatError(f"unsupported XGBoost model: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FormatError(f"not a valid XGBoost JSON model: {exc!r}") from None

    @classmethod
    def from_booster(cls, booster) -> "Ensemble":
        return cls.from_xgboost_json(bytes(booster.save_raw("json")))

    @classmethod
    def load(cls, model) -> "Ensemble":
        """From an Ensemble, xgboost.Booster, XGBClassifier/XGBRegressor, or a model file."""
        import xgboost

        if isinstance(model, Ensemble):
            return model
        if isinstance(model, xgboost.Booster):
            return cls.from_booster(model)
        if hasattr(model, "get_booster"):
            return cls.from_booster(model.get_booster())
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if not os.path.isfile(path):
                raise ParameterError.bad("model", "an existing XGBoost .json or .ubj file", path)
            booster = xgboost.Booster()
            try:
                booster.load_model(path)
            except xgboost.core.XGBoostError as exc:
                raise FormatError(f"{path}: not an XGBoost model file ({exc})") from None
            return cls.from_booster(booster)
        raise ParameterError.bad(
            "model", "an xgboost.Booster, XGBClassifier/XGBRegressor or model file path",
            type(model).__name__)


# ---------------------------------------------------------------------- helpers
def as_float32_matrix(X, num_feature: int | None = None, name: str = "X", order: str = "C") -> np.ndarray:
    """Rows as a float32 matrix with NaN for missing (numpy or pandas input), in the
    given memory order ("F" for column-streaming kernels)."""
    if hasattr(X, "to_numpy"):
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError.bad(name, "a numeric 2-D array or DataFrame", "non-numeric values") from None
    if X.ndim != 2:
        raise ParameterError.bad(name, "a 2-D array", f"{X.ndim}-D")
    if num_feature is not None and X.shape[1] != num_feature:
        raise ParameterError.bad(name, f"{num_feature} feature columns", X.shape[1])
    if np.isinf(X).any():
        raise ParameterError.bad(name, "finite values or NaN for missing", "inf")
    return X.astype(np.float32, order=order)


def _f32_str(v: float) -> str:
    return np.format_float_scientific(np.float32(v), unique=True, precision=None).upper()


def _parse_base_score(text) -> tuple[float, ...]:
    if isinstance(text, (int, float)):
        return (float(text),)
    text = str(text).strip()
    values = json.loads(text) if text.startswith("[") else [float(text)]
    if not values:
        raise FormatError("empty base_score")
    return tuple(float(np.float32(v)) for v in values)


def _xgboost_version() -> list[int]:
    import xgboost

    parts = []
    for p in xgboost.__version__.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return parts


def _tree_to_json(tree: Tree, tree_id: int, num_feature: int) -> dict[str, Any]:
    n = tree.n_nodes
    cat_nodes = np.flatnonzero(tree.is_categorical)
    sets = [tree.categories[i].astype(int).tolist() for i in cat_nodes]
    sizes = [len(c) for c in sets]
    return {
        "base_weights": tree.base_weight.astype(float).tolist(),
        "categories": [c for s in sets for c in s], "categories_nodes": cat_nodes.astype(int).tolist(),
        "categories_segments": np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist() if sizes else [],
        "categories_sizes": sizes,
        "default_left": tree.default_left.astype(int).tolist(),
        "id": tree_id,
        "left_children": tree.left.astype(int).tolist(),
        "loss_changes": tree.loss_change.astype(float).tolist(),
        "parents": tree.parents().tolist(),
        "right_children": tree.right.astype(int).tolist(),
        "split_conditions": tree.threshold.astype(float).tolist(),
        "split_indices": np.where(tree.is_leaf, 0, tree.feature).astype(int).tolist(),
        "split_type": (tree.split_type.astype(int).tolist() if tree.split_type is not None else [0] * n),
        "sum_hessian": tree.sum_hessian.astype(float).tolist(),
        "tree_param": {"num_deleted": "0", "num_feature": str(num_feature),
                       "num_nodes": str(n), "size_leaf_vector": "1"},
    }


def _tree_from_json(t: dict[str, Any]) -> Tree:
    if int(t.get("tree_param", {}).get("size_leaf_vector", "1")) > 1:
        raise FormatError("vector-leaf (multi-target) trees are not supported")
    split_type = [int(s) for s in t.get("split_type", [])] or None
    categories = None
    if split_type is not None and any(split_type):
        flat = t["categories"]
        categories = {int(node): flat[int(beg):int(beg) + int(size)] for node, beg, size in
                      zip(t["categories_nodes"], t["categories_segments"], t["categories_sizes"])}
        if len(categories) != sum(1 for s in split_type if s == 1):
            raise FormatError("categories_nodes must list every categorical node once")
    return Tree.from_arrays(
        left=t["left_children"], right=t["right_children"], feature=t["split_indices"],
        threshold=t["split_conditions"], default_left=[bool(v) for v in t["default_left"]],
        base_weight=t.get("base_weights"), loss_change=t.get("loss_changes"),
        sum_hessian=t.get("sum_hessian"), split_type=split_type, categories=categories,
    )
