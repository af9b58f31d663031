"""Horizontal training: parties hold rows, servers add shares, the coordinator opens sums.

    party.py        a data party: local histograms, sent as additive shares
    server.py       a compute server: adds one share per party per step
    coordinator.py  the histogram source the learner (training/grower.py) drives
    stages.py       role names, stages and message fields
    api.py          train_horizontal, and the in-process federation
"""

from .api import run_federation, train_horizontal
from .coordinator import HorizontalSource, run_coordinator
from .party import run_party, send_shares
from .server import run_server
from .stages import COORDINATOR, role_names

__all__ = ["train_horizontal", "run_federation", "run_party", "run_server", "run_coordinator",
           "role_names", "send_shares", "HorizontalSource", "COORDINATOR"]
