"""ppxgb.training: secure training across hospitals.

    from ppxgb.training import train_horizontal
    booster = train_horizontal(params, [(X1, y1), (X2, y2)], num_boost_round=10, n_servers=2)

    from ppxgb.training import train_vertical
    booster = train_vertical(params, [clinic, lab, insurer], label="ms", id_column="patient_id")
"""

from .horizontal import train_horizontal
from .vertical import train_vertical

__all__ = ["train_horizontal", "train_vertical"]
