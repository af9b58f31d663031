"""The vertical dealer (played by server-0): correlated randomness, and nothing else.

It hands each feature holder and the label holder keys and, level by level, the delta
vectors of the two gathers of the permutation protocol.  It receives only the public
schedule: the number of rows, features, trees and levels.
"""

from __future__ import annotations

import os

import numpy as np

from ppxgb.errors import PeerFailure, ProtocolError
from ppxgb.memory import keep_freed_memory
from ppxgb.transport import Blank, Transport, draft_message

from ..messages import field, report_failure
from . import permute as pm
from .stages import AHEAD, D_STAGES, DEALER, corr_group


def run_dealer(transport: Transport, name: str = DEALER, *, label_holder: str,
               timeout: float | None = None) -> None:
    """Hands out permutation correlations; receives only the public schedule."""
    keep_freed_memory()
    try:
        msg = _next_request(transport, name, label_holder, timeout, "dconfig")
        if msg is None:
            return
        n = field(msg, "n_rows", int)
        max_bin = field(msg, "max_bin", int)
        lossguide = field(msg, "grow_policy", str) == "lossguide"
        steps = field(msg, "steps", int)        # histogram requests per tree, at most
        n_trees = field(msg, "n_trees", int)
        fhs = [str(f) for f in field(msg, "fhs", list)]
        n_features = [int(f) for f in field(msg, "n_features", list)]
        keys_l = {fh: os.urandom(32) for fh in fhs}
        keys_f = {fh: os.urandom(32) for fh in fhs}
        transport.send(name, label_holder, "dkeys", {"keys": keys_l})
        for fh in fhs:
            transport.send(name, fh, "dkey", {"key": keys_f[fh]})
        sent: set[tuple[int, int]] = set()
        scratch = np.empty(pm.largest_correlation(n, pm.shape_levels(steps, lossguide), max_bin), np.int32)  # sigma

        def produce(tree: int, level: int) -> None:
            if (tree, level) in sent:
                return
            sent.add((tree, level))
            shape = pm.shape_level(level, lossguide)
            N = pm.correlation_size(n, shape, max_bin)
            N2 = N // pm.block_size(n, shape, max_bin)        # gather 2 works on blocks
            for fh, n_feat in zip(fhs, n_features):
                kl, kf = keys_l[fh], keys_f[fh]
                a = pm.stream(kl, tree, level, "a", rows=N)
                group = corr_group(N, N2, n_feat)
                for f0 in range(0, n_feat, group):
                    count = min(group, n_feat - f0)
                    # sigma, c and the deltas are made in one kernel each, straight into the message
                    msg = draft_message(name, fh, "corr", {"tree": tree, "level": level, "f": f0,
                                                           "d1": Blank((count, N, pm.WIDTH), np.uint64),
                                                           "d2": Blank((count, N2, pm.WIDTH), np.uint64)})
                    for i in range(count):
                        c1, c2, a2 = pm.stream_keys(kl, tree, level, f0 + i, names=("c1", "c2", "a2"))
                        s1, s2 = pm.stream_keys(kf, tree, level, f0 + i, names=("s1", "s2"))
                        pm.shuffled_delta(c_key=c1, sigma_key=s1, n=N, a=a, out=msg.arrays["d1"][i], scratch=scratch)
                        pm.shuffled_delta(c_key=c2, sigma_key=s2, n=N2, a_key=a2, out=msg.arrays["d2"][i],
                                          scratch=scratch)
                    transport.send_draft(msg)

        while True:
            msg = _next_request(transport, name, label_holder, timeout, "dlevel")
            if msg is None:
                return
            tree, level = field(msg, "tree", int), field(msg, "level", int)
            sent = {tl for tl in sent if tl[0] >= tree}
            produce(tree, level)
            # the schedule is public: prepare what comes next (the next level of this tree,
            # or the next tree's root) while the parties work; FHs drop the levels a tree
            # does not reach
            for _ in range(AHEAD):
                tree, level = (tree, level + 1) if level + 1 < steps else (tree + 1, 0)
                if tree < n_trees:
                    produce(tree, level)
    except PeerFailure:
        raise
    except BaseException as exc:
        report_failure(transport, name, label_holder, exc)
        raise


def _next_request(transport: Transport, name: str, label_holder: str, timeout, expected: str):
    """The label holder's next request (of stage `expected`), or None after its stop,
    which is answered with dbye: every correlation, even one prepared ahead, was sent
    before it."""
    msg = transport.recv(name, D_STAGES, label_holder, timeout=timeout)
    if msg.stage == "stop":
        transport.send(name, label_holder, "dbye", {})
        return None
    if msg.stage != expected:
        raise ProtocolError(f"{name}: expected {expected}, got {msg.stage!r}")
    return msg
