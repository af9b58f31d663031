"""ppxgb.training: secure training across hospitals.

    from ppxgb.training import train_horizontal
    booster = train_horizontal(params, [(X1, y1), (X2, y2)], num_boost_round=10, n_servers=2)
"""

from .api import train_horizontal

__all__ = ["train_horizontal"]
