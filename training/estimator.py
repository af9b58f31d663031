"""scikit-learn estimators over secure training: PPXGBClassifier and PPXGBRegressor.

    from ppxgb.training import PPXGBClassifier
    clf = PPXGBClassifier(n_estimators=50, max_depth=4).fit([(X1, y1), (X2, y2)])
    clf.predict_proba(X_new)

`fit` takes the parties' data and trains with train_horizontal (partition="horizontal":
a list of (X, y) or (X, y, w), one per hospital) or train_vertical
(partition="vertical": the column blocks, y the label array or column name of
parties[label_party], sample_weight likewise, rows aligned by PSI on id_column when
given).  `fit(X, y)` with one matrix is one party holding every row, so the estimator
also works where scikit-learn calls fit(X, y) itself (cross-validation, search).

The parameters are XGBoost's sklearn names (n_estimators, learning_rate, reg_lambda,
random_state, n_jobs, ...; None: ppxgb's default, which is XGBoost's) plus
partition, n_servers, label_party, id_column, fixed_point_bits and timeout.

After fit, prediction is XGBoost's own: the trained Booster is loaded into an
xgboost.XGBClassifier / XGBRegressor and every prediction-side call is delegated
to it (predict, predict_proba honouring best_iteration, apply, feature_importances_,
get_booster, evals_result, classes_, n_features_in_), so the numbers are exactly
those of the xgboost estimator holding the same model.

The estimator runs the federation in this process, so it holds every party's data:
that is a simulation or a single-site convenience.  A real deployment runs the roles
at their sites (README: the CLI) and loads the model file with xgboost.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ppxgb.errors import ParameterError

from .horizontal import train_horizontal
from .vertical import train_vertical

#: sklearn-style parameter -> TrainParams name (the rest are passed as they are)
RENAMED = {"n_jobs": "nthread"}

#: the estimator's own parameters, not training parameters
OWN = ("n_estimators", "partition", "n_servers", "label_party", "id_column", "early_stopping_rounds", "timeout")


class _PPXGBModel(BaseEstimator):
    """What the classifier and the regressor share (see the module docstring)."""

    _wrapper: type = xgb.XGBModel

    def __init__(self, *, partition: str = "horizontal", n_servers: int = 2, label_party: int = 0,
                 id_column: str | None = None, n_estimators: int = 100, objective: str | None = None,
                 max_depth: int | None = None, max_leaves: int | None = None, grow_policy: str | None = None,
                 learning_rate: float | None = None, gamma: float | None = None,
                 min_child_weight: float | None = None, max_delta_step: float | None = None,
                 subsample: float | None = None, colsample_bytree: float | None = None,
                 colsample_bylevel: float | None = None, colsample_bynode: float | None = None,
                 reg_alpha: float | None = None, reg_lambda: float | None = None,
                 scale_pos_weight: float | None = None, base_score: float | None = None,
                 random_state: int | None = None, n_jobs: int | None = None,
                 monotone_constraints=None, interaction_constraints=None, max_bin: int | None = None,
                 tree_method: str | None = None, verbosity: int | None = None, eval_metric=None,
                 early_stopping_rounds: int | None = None, fixed_point_bits: int | None = None,
                 timeout: float | None = 600.0):
        self.partition, self.n_servers, self.label_party, self.id_column = partition, n_servers, label_party, id_column
        self.n_estimators, self.objective, self.max_depth, self.max_leaves = n_estimators, objective, max_depth, max_leaves
        self.grow_policy, self.learning_rate, self.gamma = grow_policy, learning_rate, gamma
        self.min_child_weight, self.max_delta_step, self.subsample = min_child_weight, max_delta_step, subsample
        self.colsample_bytree, self.colsample_bylevel = colsample_bytree, colsample_bylevel
        self.colsample_bynode, self.reg_alpha, self.reg_lambda = colsample_bynode, reg_alpha, reg_lambda
        self.scale_pos_weight, self.base_score, self.random_state = scale_pos_weight, base_score, random_state
        self.n_jobs, self.monotone_constraints = n_jobs, monotone_constraints
        self.interaction_constraints, self.max_bin, self.tree_method = interaction_constraints, max_bin, tree_method
        self.verbosity, self.eval_metric, self.early_stopping_rounds = verbosity, eval_metric, early_stopping_rounds
        self.fixed_point_bits, self.timeout = fixed_point_bits, timeout

    # ------------------------------------------------------------------ training
    def get_xgb_params(self) -> dict[str, Any]:
        """The training parameters given (None left out), under ppxgb's names."""
        return {RENAMED.get(k, k): v for k, v in self.get_params().items() if k not in OWN and v is not None}

    def fit(self, parties, y=None, *, sample_weight=None, eval_set=None, verbose: bool | int = False):
        """Train on the parties' data (see the module docstring).  eval_set: a list of
        validation sets in the same form as the training data (horizontal: each a list
        of (X, y[, w]) per party; vertical: each the list of validation blocks, or
        (blocks, y) / (blocks, y, w)), named validation_0, validation_1, ... as xgboost
        names them."""
        if self.partition not in ("horizontal", "vertical"):
            raise ParameterError.bad("partition", "'horizontal' or 'vertical'", self.partition)
        if isinstance(self.n_estimators, bool) or not isinstance(self.n_estimators, int) or self.n_estimators < 1:
            raise ParameterError.bad("n_estimators", "an int >= 1", self.n_estimators)
        params = self.get_xgb_params()
        if self.partition == "horizontal":
            parties = self._horizontal_parties(parties, y, sample_weight)
            labels = [np.asarray(part[1]) for part in parties]
        else:
            labels = [self._vertical_label(parties, y)]
        params = self._configure(params, labels)
        result: dict = {}
        common = {"early_stopping_rounds": self.early_stopping_rounds, "evals_result": result,
                  "verbose_eval": verbose, "timeout": self.timeout}
        if self.partition == "horizontal":
            evals = [(list(v), f"validation_{i}") for i, v in enumerate(eval_set or [])]
            booster = train_horizontal(params, parties, self.n_estimators, self.n_servers, evals=evals, **common)
        else:
            evals = [(*(v if isinstance(v, tuple) else (v,)), f"validation_{i}") for i, v in enumerate(eval_set or [])]
            booster = train_vertical(params, parties, y, self.label_party, self.n_estimators, self.n_servers,
                                     self.id_column, weight=sample_weight, evals=evals, **common)
        model = self._wrapper()
        model.load_model(bytearray(booster.save_raw("json")))
        self.model_, self.evals_result_ = model, result
        self.n_features_in_ = model.n_features_in_
        if booster.feature_names is not None:
            self.feature_names_in_ = np.asarray(booster.feature_names, dtype=object)
        return self

    @staticmethod
    def _horizontal_parties(parties, y, sample_weight) -> list[tuple]:
        if y is not None:        # fit(X, y): one party with every row
            return [(parties, y) if sample_weight is None else (parties, y, sample_weight)]
        if sample_weight is not None:
            raise ParameterError("sample_weight: with partition='horizontal' each party passes (X, y, w)")
        if not isinstance(parties, (list, tuple)) or not parties or \
                not all(isinstance(q, tuple) and len(q) in (2, 3) for q in parties):
            raise ParameterError.bad("parties", "a list of (X, y) or (X, y, w) tuples, one per party "
                                     "(or fit(X, y))", type(parties).__name__)
        return list(parties)

    def _vertical_label(self, parties, y) -> np.ndarray:
        if not isinstance(parties, (list, tuple)) or len(parties) < 1:
            raise ParameterError.bad("parties", "a list of column blocks, one per party", type(parties).__name__)
        if isinstance(self.label_party, bool) or not isinstance(self.label_party, int) \
                or not 0 <= self.label_party < len(parties):
            raise ParameterError.bad("label_party", f"an index into the {len(parties)} column blocks",
                                     self.label_party)
        if isinstance(y, str):
            return np.asarray(parties[self.label_party][y])
        if y is None:
            raise ParameterError("y: partition='vertical' needs the label (an array, or a column name of "
                                 "parties[label_party])")
        return np.asarray(y)

    def _configure(self, params: dict, labels: Sequence[np.ndarray]) -> dict:
        return params

    # ------------------------------------------------------------------ prediction (xgboost's)
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _fitted(self):
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first")
        return self.model_

    def get_booster(self) -> xgb.Booster:
        return self._fitted().get_booster()

    def predict(self, X, *, output_margin: bool = False, validate_features: bool = True, base_margin=None,
                iteration_range=None):
        return self._fitted().predict(X, output_margin=output_margin, validate_features=validate_features,
                                      base_margin=base_margin, iteration_range=iteration_range)

    def apply(self, X, iteration_range=None):
        return self._fitted().apply(X, iteration_range=iteration_range)

    def evals_result(self) -> dict:
        self._fitted()
        return self.evals_result_

    @property
    def feature_importances_(self) -> np.ndarray:
        return self._fitted().feature_importances_

    @property
    def best_iteration(self) -> int:
        return self._fitted().best_iteration

    @property
    def best_score(self) -> float:
        return self._fitted().best_score


class PPXGBRegressor(RegressorMixin, _PPXGBModel):
    """xgboost.XGBRegressor's interface over secure training (see the module docstring)."""

    _wrapper = xgb.XGBRegressor


class PPXGBClassifier(ClassifierMixin, _PPXGBModel):
    """xgboost.XGBClassifier's interface over secure training (see the module docstring).

    Labels are 0 .. n_classes - 1, as XGBClassifier requires; the objective defaults
    to binary:logistic for two classes and multi:softprob (num_class set) for more.
    """

    _wrapper = xgb.XGBClassifier

    def _configure(self, params: dict, labels: Sequence[np.ndarray]) -> dict:
        values = np.unique(np.concatenate([np.ravel(v) for v in labels]))
        n_classes = len(values)
        if n_classes < 2 or not np.array_equal(values, np.arange(n_classes)):
            raise ParameterError.bad("y", "class labels 0 .. n_classes - 1 with at least two classes "
                                     "(as XGBClassifier)", values[:10].tolist())
        objective = params.get("objective") or ("binary:logistic" if n_classes == 2 else "multi:softprob")
        params = {**params, "objective": objective}
        if objective.startswith("multi:"):
            params["num_class"] = n_classes
        elif n_classes > 2:
            raise ParameterError.bad("objective", f"a multi: objective for {n_classes} classes", objective)
        return params

    @property
    def classes_(self) -> np.ndarray:
        return self._fitted().classes_

    @property
    def n_classes_(self) -> int:
        return self._fitted().n_classes_

    def predict_proba(self, X, *, validate_features: bool = True, base_margin=None, iteration_range=None):
        return self._fitted().predict_proba(X, validate_features=validate_features, base_margin=base_margin,
                                            iteration_range=iteration_range)
