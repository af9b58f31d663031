"""The horizontal coordinator: the histogram source of horizontal training.

It drives the parties through the stages (training/horizontal/stages.py) and opens
only sums over all parties: each request makes every party send shares to the servers,
and the coordinator adds the k server sums.  What it learns: the agreed bin grid's
counts, the intercept statistics, per-(node, bin) G/H totals over all parties, and
after each round, with eval sets, each metric's statistics summed over all parties'
validation rows (ppxgb/metrics.py says what they are).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ppxgb.crypto.fixedpoint import FixedPointEncoder
from ppxgb.errors import ParameterError, PeerFailure, PeerTimeout, ProtocolError
from ppxgb.metrics import AUC, exact_auc_over_owners, metric_values, refinable
from ppxgb.model import Ensemble
from ppxgb.transport import Transport

from .. import binning, categorical, dp
from ..evaluation import Evaluation, eval_metrics
from ..grower import FeatureLayout, HistogramSource, NewSplits, boost
from ..messages import abort_all, field
from ..params import TrainParams
from .stages import COORDINATOR, EVAL_BITS, STATS_BITS


class HorizontalSource(HistogramSource):
    def __init__(self, transport: Transport, p: TrainParams, parties: Sequence[str],
                 servers: Sequence[str], timeout: float | None, feature_names=None,
                 eval_names: Sequence[str] = ()):
        self.transport, self.p = transport, p
        self.eval_names = list(eval_names)
        self.parties, self.servers = list(parties), list(servers)
        self.timeout = timeout
        self.feature_names = feature_names
        self.step = 0
        self.pending = _no_splits()
        self.cut_ptr = np.zeros(1, np.int64)
        self.dp: dp.Accountant | None = None     # set in setup under dp_epsilon

    # ---- messages
    def broadcast(self, stage: str, payload: dict[str, Any], to=None) -> None:
        for q in (self.parties if to is None else to):
            self.transport.send(COORDINATOR, q, stage, payload)

    def request(self, stage: str, payload: dict[str, Any]) -> np.ndarray:
        """Ask every party for shares of a vector and open only the sum over parties
        (under dp_epsilon a noisy sum, refused before asking if over the budget)."""
        dp.release_sigmas(self.dp, stage)
        self.step += 1
        self.broadcast(stage, {**payload, "step": self.step})
        total, seen = None, set()
        while len(seen) < len(self.servers):
            try:
                msg = self.transport.recv(COORDINATOR, "sum", timeout=self.timeout)
            except PeerTimeout as exc:
                if exc.awaited is None:
                    missing = [s for s in self.servers if s not in seen]
                    raise PeerFailure(", ".join(missing), f"no sum within the timeout ({exc.reason})") from None
                raise
            if msg.src not in self.servers or msg.src in seen or msg.payload.get("step") != self.step:
                raise ProtocolError(f"coordinator: unexpected sum from {msg.src} "
                                    f"for step {msg.payload.get('step')}, expected step {self.step}")
            data = field(msg, "data", np.ndarray).astype(np.uint64, copy=False)
            total = data.copy() if total is None else total + data
            seen.add(msg.src)
        return total

    # ---- HistogramSource
    def setup(self, n_trees: int) -> FeatureLayout:
        self.broadcast("config", {"params": self.p.to_dict(), "n_parties": len(self.parties),
                                  "servers": self.servers, "evals": self.eval_names,
                                  **({"n_trees": n_trees} if self.p.dp_epsilon is not None else {})})
        n_features, seen, kinds = set(), set(), []
        while len(seen) < len(self.parties):
            msg = self.transport.recv(COORDINATOR, "hello", timeout=self.timeout)
            if msg.src not in self.parties or msg.src in seen:
                raise ProtocolError(f"coordinator: unexpected hello from {msg.src}")
            seen.add(msg.src)
            n_features.add(field(msg, "n_features", int))
            kinds.append(field(msg, "kinds", list))
        if len(n_features) != 1:
            raise ParameterError(f"parties: every party needs the same number of feature columns, "
                                 f"got {sorted(n_features)}")
        stats_enc = FixedPointEncoder(STATS_BITS)
        n_feat = n_features.pop()
        self.dp = dp.accountant_for(self.p, n_trees, n_feat, COORDINATOR, STATS_BITS)

        def opened_counts(level: int, requests: list[np.ndarray]) -> np.ndarray:
            # the requests name only quantile-target cells; binning.py hides the rest
            counts = stats_enc.decode(self.request("bins", {"level": level, "active": requests}))
            if self.dp is None:
                return np.rint(counts)
            # k servers add noise each: its standard deviation is sqrt(k) sigma
            sigma = self.dp.plan.bins_sigmas()[0] / 2 ** STATS_BITS * len(self.servers) ** 0.5
            return dp.drop_noise_floor(counts, sigma, level)

        # under DP the requests follow from noisy counts (post-processing): they may name cells
        kinds = categorical.check_kinds(kinds)
        if self.dp is not None and any(k != categorical.NUMERIC for k in kinds):
            raise ParameterError("dp_epsilon: differential privacy does not cover categorical features yet")
        cat_cuts, lists = categorical.agree_columns(
            kinds, lambda salt, buckets, cols: stats_enc.decode(
                self.request("cats", {"columns": cols, "salt": salt, "buckets": buckets})),
            lambda payload: self.broadcast("categories", payload))
        numeric, counted = categorical.numeric_count(kinds, opened_counts)
        cuts, mins = categorical.merge_cuts(kinds, numeric, *binning.agree_cuts(
            len(numeric), self.p.max_bin, counted, hide=self.dp is None,
            max_level=dp.BIN_LEVELS if self.dp is not None else 4), cat_cuts)
        self.broadcast("cuts", {"cuts": cuts})
        layout = replace(FeatureLayout.from_cuts(cuts, mins, self.feature_names),
                         categorical=np.array([k != categorical.NUMERIC for k in kinds]), categories=tuple(lists))
        self.cut_ptr = layout.cut_ptr
        return layout

    def learner_params(self, p: TrainParams) -> TrainParams:
        return dp.learner_params(p, self.dp, len(self.servers))

    def intercept_totals(self) -> np.ndarray:
        totals = FixedPointEncoder(STATS_BITS).decode(self.request("intercept", {}))
        return totals if self.dp is None else dp.clamp_intercept(totals)

    def set_base_margin(self, base_margin: np.ndarray) -> None:
        self.broadcast("base", {"base_margin": [float(v) for v in base_margin]})

    def selection_histogram(self) -> tuple[np.ndarray, float, np.ndarray]:
        opened = self.request("select", {})
        hist = opened.view(np.int64).reshape(-1, 2)
        groups = int(dp.select_groups(self.cut_ptr)[1][-1])
        if hist.shape[0] != groups + 1:
            raise ProtocolError(f"coordinator: selection sums of {hist.shape[0]} rows, expected {groups + 1}")
        k = len(self.servers)
        return hist, dp.selection_floor(self.dp, k), dp.selection_g_variance(self.dp, self.cut_ptr, k)

    def start_tree(self, rnd: int, group: int, tree: int) -> None:
        self.broadcast("tree", {"round": rnd, "group": group})

    def histograms(self, build: list[int]) -> np.ndarray:
        # the splits of the last level travel with this request (one round trip a level)
        opened = self.request("level", {"splits": self.pending, "build": build})
        self.pending = _no_splits()
        return opened.view(np.int64).reshape(len(build), int(self.cut_ptr[-1]) + 1, 2)

    def split(self, new: NewSplits) -> dict[int, float]:
        # lossguide may split several leaves before the next request: they travel together
        for key, values in _splits_payload(new).items():
            self.pending[key].extend(values)
        return {node: s.threshold for node, (s, _, _) in new.items()}

    def child_sizes(self, children, stats: Mapping[int, tuple[float, float]]) -> dict[int, float]:
        return {c: stats[c][1] for c in children}      # row counts are never opened: hessian sums

    def finish_tree(self, leaves: list[int], values: list[float]) -> None:
        self.broadcast("finish", {"splits": self.pending, "leaf_nodes": leaves, "leaf_values": values})
        self.pending = _no_splits()

    def evaluate(self) -> list[list[float]]:
        """Every eval set's metric values, from their statistics summed over the parties'
        validation rows; AUC exact where the predictions are float32 in [0, 1] (mixed
        grid cells refined over further requests), else from the grid."""
        enc = FixedPointEncoder(EVAL_BITS)
        metrics = eval_metrics(self.p)
        totals = enc.decode(self.request("evaluate", {})).reshape(len(self.eval_names), -1)
        out = []
        for e, row in enumerate(totals):
            values, at = metric_values(metrics, row, self.p.n_groups), 0
            for j, m in enumerate(metrics):
                k = m.n_stats(self.p.n_groups)
                if isinstance(m, AUC) and refinable(self.p.objective):
                    values[j] = exact_auc_over_owners(row[at:at + k], lambda lo, hi, e=e: enc.decode(
                        self.request("auc", {"set": e, "lo": lo.astype(np.int64), "hi": hi.astype(np.int64)})))
                at += k
            out.append(values)
        return out

    def stop(self) -> None:
        self.broadcast("stop", {}, to=self.parties + self.servers)

    def abort(self) -> None:
        abort_all(self.transport, COORDINATOR, self.parties + self.servers)


def _no_splits() -> dict[str, list]:
    return {"node": [], "feature": [], "bin": [], "default_left": [], "left": [], "right": [], "categories": []}


def _splits_payload(new: NewSplits) -> dict[str, list]:
    out = _no_splits()
    for node, (s, l, r) in new.items():
        out["node"].append(node)
        out["feature"].append(s.feature)
        out["bin"].append(s.bin)
        out["default_left"].append(s.default_left)
        out["left"].append(l)
        out["right"].append(r)
        out["categories"].append(list(s.categories or ()))
    return out


def run_coordinator(transport: Transport, params: dict[str, Any], num_boost_round: int, *,
                    parties: Sequence[str], servers: Sequence[str], progress=None,
                    timeout: float | None = None, feature_names=None,
                    evaluation: Evaluation | None = None) -> Ensemble:
    """Drive the training; learns only aggregate histograms; returns the model.
    evaluation: the eval set names, callbacks and early stopping (the caller's
    `evaluation.finish` puts its attributes on the Booster)."""
    p = TrainParams.from_dict(params)
    source = HorizontalSource(transport, p, parties, servers,
                              None if timeout is None else timeout * 1.5 + 5, feature_names,
                              evaluation.names if evaluation is not None else ())
    if evaluation is not None:
        evaluation.score = source.evaluate
    return dp.with_attributes(boost(source, p, num_boost_round, progress, evaluation), source.dp)
