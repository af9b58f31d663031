"""What loss-guided growth shows a vertical feature holder beyond depth-wise growth.

Under grow_policy="lossguide" the label holder expands one leaf at a time, the one of
largest loss change, and each expansion reaches the feature holders (the split nodes
travel with the next histogram request).  A feature holder that records the order of
the expansions therefore learns a ranking of loss changes: a leaf expanded while an
older leaf waited had the larger loss change.  The test plays that feature holder on
the recorded traffic and scores its inferred pairs against the model's true loss
changes; depth-wise growth, where a level's splits arrive together, gives it no pair.
"""

import json

import numpy as np
import pytest

from ppxgb.training.vertical import run_vertical_federation

from helpers import column_blocks, make_discrete_data, recorded_federation

FH = "party-1"


def _inferred_pairs(seen):
    """(tree, earlier, later) for every pair the feature holder can order from the
    traffic alone: `earlier` split in an earlier message than `later`, while `later`
    was already a leaf (its parent's split had arrived).  Splits arriving in one
    message are taken as simultaneous."""
    pairs, tree, steps, born = [], -1, [], {}
    for m in seen:
        if m.dst != FH:
            continue
        if m.stage == "vtree":
            tree, steps, born = m.payload["tree"], [], {0: 0}
        elif m.stage == "vlevel" and m.payload["splits"]["node"]:
            splits, step = m.payload["splits"], len(steps)
            for node in splits["node"]:
                for earlier_step, earlier in enumerate(steps):
                    if born[node] <= earlier_step:      # it waited while `earlier` nodes split
                        pairs += [(tree, e, node) for e in earlier]
            steps.append(list(splits["node"]))
            for left, right in zip(splits["left"], splits["right"]):
                born[left] = born[right] = step + 1
    return pairs


def _loss_changes(model):
    trees = json.loads(model.to_booster().save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    return [np.asarray(t["loss_changes"]) for t in trees]


@pytest.mark.parametrize("policy,expect_pairs", [({"grow_policy": "lossguide", "max_leaves": 12}, True),
                                                 ({"max_depth": 4}, False)])
def test_feature_holder_ranks_loss_changes_under_lossguide(policy, expect_pairs):
    X, y = make_discrete_data("binary:logistic", 800, 6, 0.1, 4,
                              lambda X: 0.5 * X[:, 0] - 0.4 * X[:, 3] + 0.3 * X[:, 1] * X[:, 4])
    params = {"objective": "binary:logistic", "max_bin": 32, "verbosity": 0, **policy}
    seen, model = recorded_federation(run_vertical_federation, params, column_blocks(X, 2), y,
                                      num_boost_round=3)
    pairs = _inferred_pairs(seen)
    if not expect_pairs:
        assert pairs == []
        return
    gains = _loss_changes(model)
    right = [gains[t][a] >= gains[t][b] for t, a, b in pairs]
    # measured: 35 ordered pairs over 3 trees, every one correct
    assert len(pairs) >= 10 and all(right), (len(pairs), np.mean(right))
