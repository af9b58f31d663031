"""ppxgb.training: secure training across hospitals.

    from ppxgb.training import train_horizontal
    booster = train_horizontal(params, [(X1, y1), (X2, y2)], num_boost_round=10, n_servers=2)

    from ppxgb.training import train_vertical
    booster = train_vertical(params, [clinic, lab, insurer], label="ms", id_column="patient_id")

    from ppxgb.training import PPXGBClassifier      # scikit-learn estimators (estimator.py)
    clf = PPXGBClassifier(n_estimators=10).fit([(X1, y1), (X2, y2)])
"""

from .horizontal import train_horizontal
from .oblivious import train_oblivious
from .vertical import train_vertical

__all__ = ["train_horizontal", "train_oblivious", "train_vertical", "PPXGBClassifier", "PPXGBRegressor"]


def __getattr__(name: str):
    # the estimators import scikit-learn, so only when asked for
    if name in ("PPXGBClassifier", "PPXGBRegressor"):
        from . import estimator
        return getattr(estimator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
