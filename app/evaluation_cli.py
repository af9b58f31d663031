"""The evaluation options the training commands share: --eval-data and
--early-stopping-rounds, and writing a model with its best_iteration/best_score."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ppxgb.errors import ParameterError


def add_eval_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--early-stopping-rounds", type=int, default=None,
                   help=f"stop when the last metric on {what} has not improved for this many rounds, as "
                        "xgboost.train (default: off); the model records best_iteration and best_score")


def check_eval_data(eval_data: list[str] | None, data: list[str], early_stopping_rounds: int | None) -> list[str]:
    """--eval-data of a loopback federation: one file per --data file, or none."""
    if early_stopping_rounds is not None and early_stopping_rounds < 1:
        raise ParameterError.bad("--early-stopping-rounds", "an int >= 1", early_stopping_rounds)
    if eval_data and len(eval_data) != len(data):
        raise ParameterError.bad("--eval-data", f"{len(data)} files, one per --data file", len(eval_data))
    if early_stopping_rounds is not None and not eval_data:
        raise ParameterError.bad("--early-stopping-rounds", "--eval-data to score", "no --eval-data")
    return list(eval_data or [])


def eval_flags(early_stopping_rounds: int | None) -> list[str]:
    return ["--early-stopping-rounds", str(early_stopping_rounds)] if early_stopping_rounds else []


def cli_evaluation(params: dict[str, Any], enabled: bool, early_stopping_rounds: int | None):
    """The Evaluation of a driving role (eval set 'valid'), or None without evaluation;
    every round's scores are printed as xgboost.train prints them."""
    if early_stopping_rounds is not None and not enabled:
        raise ParameterError.bad("--early-stopping-rounds", "an eval set to score (--eval / --eval-data)", "none")
    if not enabled:
        return None
    from ppxgb.training.evaluation import Evaluation
    from ppxgb.training.params import TrainParams

    return Evaluation(TrainParams.from_dict(params), ["valid"], None,
                      early_stopping_rounds=early_stopping_rounds, verbose_eval=True)


def model_text(model, evaluation) -> str:
    """The model's XGBoost JSON; with an evaluation, as the finished Booster (with
    best_iteration and best_score when early stopping ran)."""
    if evaluation is None:
        return json.dumps(model.to_xgboost_json())
    return bytes(evaluation.finish(model.to_booster()).save_raw("json")).decode()
