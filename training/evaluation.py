"""Validation sets, metrics, early stopping and callbacks, between boosting rounds.

`Evaluation` is what `boost()` consults around each round, with xgboost.train's
semantics: the TrainingCallback objects (user callbacks, then EvaluationMonitor when
verbose_eval, then EarlyStopping when early_stopping_rounds) get before_training,
before_iteration, after_iteration with the history of every eval set and metric, and
after_training with the finished Booster; any of them returning True stops training.

The callbacks see a Booster (`RoundBooster`, an empty xgboost Booster) on which they
set attributes (best_iteration, best_score) and the learning rate: a
LearningRateScheduler's value is the eta of every later tree, read by the learner per
round.  The finished model gets those attributes, as xgboost.train's does.

The metric values come from the training mode's `score` callable: the statistics of
ppxgb/metrics.py summed over the validation rows' owners, opened by the role that
drives training (the coordinator, the label holder) and nothing else.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import xgboost as xgb
from xgboost.callback import EarlyStopping, EvaluationMonitor, TrainingCallback

from ppxgb.errors import ParameterError
from ppxgb.metrics import Metric, metric_values, metrics_for

from .params import TrainParams


def eval_metrics(p: TrainParams) -> list[Metric]:
    """The metrics evaluated for these parameters (xgboost's choice, see metrics_for)."""
    return metrics_for(p.objective, p.eval_metric, p.disable_default_eval_metric, p.objective_params)


def check_eval_names(names: Sequence[str]) -> list[str]:
    """Eval set names: strings without '-' (xgboost splits 'valid-logloss' at it), unique."""
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name or "-" in name:
            raise ParameterError.bad("evals", "names that are non-empty strings without '-'", name)
    if len(set(names)) != len(names):
        raise ParameterError.bad("evals", "distinct names", names)
    return names


class RoundBooster(xgb.Booster):
    """The Booster the callbacks see during training: attributes as set, and the
    learning rate a callback sets (set_param 'learning_rate' or 'eta'), and the number
    of rounds grown so far."""

    def __init__(self, eta: float):
        self.eta, self.rounds = eta, 0
        super().__init__()

    def num_boosted_rounds(self) -> int:
        return self.rounds

    def set_param(self, params, value=None):
        items = params.items() if isinstance(params, dict) else \
            [(params, value)] if isinstance(params, str) else list(params or [])
        for key, val in items:
            if key in ("eta", "learning_rate"):
                eta = float(val)
                if not math.isfinite(eta) or eta < 0:
                    raise ParameterError.bad("learning_rate (from a callback)", "a finite number >= 0", val)
                self.eta = eta
        super().set_param(params, value)


class Evaluation:
    """The between-rounds logic of one training (see the module docstring).

    score: called after each round, returns the opened statistics of every eval set
    (one row per name, metrics' statistics concatenated, as metrics.owner_stats), or,
    from a role that holds every validation row, a list of each set's metric values."""

    def __init__(self, p: TrainParams, names: Sequence[str], score: Callable[[], np.ndarray] | None,
                 callbacks: Sequence[TrainingCallback] | None = None, early_stopping_rounds: int | None = None,
                 verbose_eval: bool | int = True, maximize: bool | None = None):
        self.p, self.names, self.score = p, check_eval_names(names), score
        self.metrics = eval_metrics(p) if self.names else []
        cbs = list(callbacks or [])
        for cb in cbs:
            if not isinstance(cb, TrainingCallback):
                raise ParameterError.bad("callbacks", "xgboost.callback.TrainingCallback objects",
                                         type(cb).__name__)
        if not isinstance(verbose_eval, (bool, int)) or (not isinstance(verbose_eval, bool) and verbose_eval < 0):
            raise ParameterError.bad("verbose_eval", "a bool or an int >= 0 (print every that many rounds)",
                                     verbose_eval)
        if verbose_eval:
            cbs.append(EvaluationMonitor(period=1 if verbose_eval is True else int(verbose_eval)))
        if early_stopping_rounds:
            if isinstance(early_stopping_rounds, bool) or not isinstance(early_stopping_rounds, int) \
                    or early_stopping_rounds < 1:
                raise ParameterError.bad("early_stopping_rounds", "an int >= 1", early_stopping_rounds)
            if not self.names:
                raise ParameterError.bad("early_stopping_rounds", "at least one eval set in evals", "none")
            if not self.metrics:
                raise ParameterError.bad("early_stopping_rounds", "at least one metric (eval_metric, or the "
                                         "default one without disable_default_eval_metric)", "none")
            cbs.append(EarlyStopping(rounds=early_stopping_rounds, maximize=maximize))
        self.callbacks = list(dict.fromkeys(cbs))
        self.history: collections.OrderedDict = collections.OrderedDict()
        self.model = RoundBooster(p.eta)

    @property
    def active(self) -> bool:
        return bool(self.names and self.metrics)

    # ---- what boost() calls
    def before_training(self) -> None:
        for cb in self.callbacks:
            self.model = cb.before_training(model=self.model)

    def round_params(self, rnd: int, p: TrainParams) -> TrainParams | None:
        """The parameters of round rnd (eta as the callbacks set it); None: stop."""
        if any(cb.before_iteration(self.model, rnd, self.history) for cb in self.callbacks):
            return None
        eta = getattr(self.model, "eta", p.eta)
        return p if eta == p.eta else dataclasses.replace(p, eta=eta)

    def after_round(self, rnd: int) -> bool:
        """Score the eval sets, extend the history, run the callbacks; True: stop."""
        self.model.rounds = rnd + 1
        if self.active:
            scores = self.score()
            if not isinstance(scores, list):
                totals = np.asarray(scores, np.float64).reshape(len(self.names), -1)
                scores = [metric_values(self.metrics, row, self.p.n_groups) for row in totals]
            for name, values in zip(self.names, scores):
                data = self.history.setdefault(name, collections.OrderedDict())
                for metric, value in zip(self.metrics, values):
                    data.setdefault(metric.name, []).append(float(value))
        return any(cb.after_iteration(self.model, rnd, self.history) for cb in self.callbacks)

    # ---- after training
    def finish(self, booster: xgb.Booster, evals_result: dict | None = None) -> xgb.Booster:
        """The trained Booster with the callbacks' attributes, after after_training;
        evals_result (a dict) filled with the history as xgboost.train fills it."""
        attrs = self.model.attributes()
        if attrs:
            booster.set_attr(**attrs)
        for cb in self.callbacks:
            booster = cb.after_training(model=booster)
        if evals_result is not None:
            evals_result.update(self.history)
        return booster


def check_evals_result(evals_result) -> None:
    if evals_result is not None and not isinstance(evals_result, dict):
        raise ParameterError.bad("evals_result", "a dict (filled in place) or None", type(evals_result).__name__)
