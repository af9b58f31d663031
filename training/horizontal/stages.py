"""Horizontal training's roles, stages and message fields, in one place.

Stages (coordinator C, parties P, servers S):

    C->P config      params, servers, number of parties
    P->C hello       number of features (no row count), each column's kind
    C->P cats        shares of the category sketch of these columns (salt, buckets)
    C->P categories  the agreed list of each categorical column
    C->P bins        refine the shared value grid: level, active prefixes per feature
    C->P cuts        the agreed bin edges
    C->P intercept   send the intercept statistics (only when base_score is unset)
    C->P base        the intercept, in margin space
    C->P select      (dp_select_features) build the root histogram of every feature
                     at the base margin: one DP release, before the first tree
    C->P tree        start tree (round, group); parties compute g, h on group 0
    C->P level       apply these splits, then build histograms of these nodes
    C->P finish      apply the last splits and add these leaf values to the margins
    C->P evaluate    send the metric statistics of the validation rows (after a round)
    C->P auc         send the label counts of one eval set's validation rows in these
                     ranges of prediction keys (exact AUC: mixed grid cells refined)
    P->S share       one additive share of a vector, tagged with the step number
    S->C sum         a server's sum of the parties' shares for one step
    any  stop / abort
"""

from __future__ import annotations

from ppxgb.errors import ParameterError

COORDINATOR = "coordinator"
STATS_BITS = 16  # fixed point of counts and intercept sums (range 2^47)
EVAL_BITS = 24   # fixed point of metric statistics (range 2^39, rounding 2^-25 per party)
PARTY_STAGES = ("cats", "categories", "bins", "cuts", "intercept", "base", "select", "tree", "level", "finish", "evaluate", "auc", "stop")


def role_names(n_parties: int, n_servers: int) -> tuple[list[str], list[str], str]:
    """Party names, server names and the coordinator's name."""
    if isinstance(n_servers, bool) or not isinstance(n_servers, int) or not 2 <= n_servers <= 4:
        raise ParameterError.bad("n_servers", "an int in [2, 4]", n_servers)
    if n_parties < 1:
        raise ParameterError.bad("parties", "at least one party", n_parties)
    return ([f"party-{i}" for i in range(n_parties)],
            [f"server-{j}" for j in range(n_servers)], COORDINATOR)
