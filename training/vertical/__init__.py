"""Vertical training: parties hold columns of the same patients; one holds the labels.

    psi.py             private set intersection on patient IDs (row alignment)
    label_holder.py    the histogram source the learner (training/grower.py) drives
    feature_holder.py  a party with feature columns only
    dealer.py          correlated randomness for the permutation protocol
    permute.py         the dealer-assisted oblivious permutation ("permute and share")
    rows.py            row positions and left bits
    stages.py          role names, stages and message fields
    api.py             train_vertical, and the in-process federation

PSI and the permutation protocol live here, not in the crypto layer: both are
protocols of vertical training (they talk through the transport, or are sized by its
public schedule), while ppxgb/crypto holds only the primitives they are built from.
"""

from . import psi
from .api import prepare_blocks, run_vertical_federation, split_block, train_vertical
from .dealer import run_dealer
from .feature_holder import run_feature_holder
from .label_holder import VerticalSource, run_label_holder
from .stages import DEALER, corr_group, role_names

__all__ = ["train_vertical", "run_vertical_federation", "prepare_blocks", "split_block", "run_label_holder",
           "run_feature_holder", "run_dealer", "role_names", "corr_group", "DEALER", "VerticalSource", "psi"]
