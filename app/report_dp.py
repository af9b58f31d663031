"""The report's differential-privacy section: test AUC against epsilon, from bench_dp's file.

`python benchmarks/bench_dp.py --json FILE` merges what it measures into FILE
(benchmarks/RESULTS_dp.json in the repository); `ppxgb demo --dp-results FILE` puts
the document under results["dp"] and the report draws it.  The document::

    {
      "schema": "ppxgb-dp-auc/1",
      "results": [                          # one cell: a dataset, mode, setting and epsilon
        {"dataset": "classification", "rows": 50000, "mode": "vertical",
         "setting": "random", "epsilon": 1.0,      # null: no DP
         "seeds": 5, "mean": 0.921, "sd": 0.021,
         "aucs": [...], "command": "...", "measured": "2026-12-04"},   # optional
        ...
      ],
      "references": [                       # optional: published figures to draw beside
        {"label": "Maddock et al. ...", "epsilon": 1.0, "auc": 0.84}
      ]
    }

A figure per dataset: per (mode, setting) the mean AUC over epsilon (log axis) with
+-1 sd, the mode's no-DP cell (trained at the benchmark's no-DP parameters) as a
dashed line, and the references as stars.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ppxgb.errors import ParameterError

from matplotlib.figure import Figure

SCHEMA = "ppxgb-dp-auc/1"
_MODE_COLOURS = {"horizontal": "#d62728", "vertical": "#1f77b4"}
_SETTING_STYLES = ["-", "--", ":", "-."]


@dataclass(frozen=True)
class Cell:
    dataset: str
    rows: int
    mode: str
    setting: str
    epsilon: float | None
    seeds: int
    mean: float
    sd: float

    @property
    def series(self) -> str:
        return f"{self.mode}, {self.setting}"


def _real(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= float(value) <= hi:
        raise ParameterError.bad(name, f"a number in [{lo:g}, {hi:g}]", value)
    return float(value)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ParameterError.bad(name, "a non-empty string", value)
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError.bad(name, "an int >= 1", value)
    return value


def cells(doc: Any) -> tuple[list[Cell], list[tuple[str, float, float]]]:
    """The validated cells and references of a results document (module docstring)."""
    if not isinstance(doc, Mapping):
        raise ParameterError.bad("results['dp']", "a dict (bench_dp's JSON document)", type(doc).__name__)
    if doc.get("schema") != SCHEMA:
        raise ParameterError.bad("results['dp']['schema']", repr(SCHEMA), doc.get("schema"))
    raw = doc.get("results")
    if not isinstance(raw, list) or not raw:
        raise ParameterError.bad("results['dp']['results']", "a non-empty list of cells", raw)
    out = []
    for i, c in enumerate(raw):
        name = f"results['dp']['results'][{i}]"
        if not isinstance(c, Mapping):
            raise ParameterError.bad(name, "a dict", type(c).__name__)
        eps = c.get("epsilon")
        out.append(Cell(_text(c.get("dataset"), f"{name}['dataset']"), _count(c.get("rows"), f"{name}['rows']"),
                        _text(c.get("mode"), f"{name}['mode']"), _text(c.get("setting"), f"{name}['setting']"),
                        None if eps is None else _real(eps, f"{name}['epsilon']", 1e-9, math.inf),
                        _count(c.get("seeds"), f"{name}['seeds']"), _real(c.get("mean"), f"{name}['mean']", 0, 1),
                        _real(c.get("sd"), f"{name}['sd']", 0, 1)))
    refs = []
    for i, r in enumerate(doc.get("references") or []):
        name = f"results['dp']['references'][{i}]"
        if not isinstance(r, Mapping):
            raise ParameterError.bad(name, "a dict", type(r).__name__)
        refs.append((_text(r.get("label"), f"{name}['label']"), _real(r.get("epsilon"), f"{name}['epsilon']", 1e-9,
                                                                          math.inf),
                     _real(r.get("auc"), f"{name}['auc']", 0, 1)))
    return out, refs


def auc_figure(all_cells: list[Cell], refs: list[tuple[str, float, float]]) -> tuple[Figure, list[dict]]:
    """The figure, and what each drawn line holds (read back from its artist):
    [{"dataset", "series", "epsilon": [...], "auc": [...]} or {..., "no_dp": auc}]."""
    datasets = list(dict.fromkeys((c.dataset, c.rows) for c in all_cells))
    settings = list(dict.fromkeys(c.setting for c in all_cells))
    fig = Figure(figsize=(4.2 * len(datasets), 4.2))
    drawn: list[dict] = []
    for k, (dataset, rows) in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), k + 1)
        mine = [c for c in all_cells if (c.dataset, c.rows) == (dataset, rows)]
        for series in dict.fromkeys(c.series for c in mine):
            cs = [c for c in mine if c.series == series]
            colour = _MODE_COLOURS.get(cs[0].mode, "#555")
            ls = _SETTING_STYLES[settings.index(cs[0].setting) % len(_SETTING_STYLES)]
            dp = sorted((c for c in cs if c.epsilon is not None), key=lambda c: c.epsilon)
            if dp:
                line, = ax.plot([c.epsilon for c in dp], [c.mean for c in dp], marker="o", color=colour, ls=ls,
                                label=f"{series} ({dp[0].seeds} seeds)")
                ax.fill_between([c.epsilon for c in dp], [c.mean - c.sd for c in dp], [c.mean + c.sd for c in dp],
                                color=colour, alpha=0.12)
                drawn.append({"dataset": dataset, "series": series, "epsilon": [float(x) for x in line.get_xdata()],
                              "auc": [float(y) for y in line.get_ydata()]})
            for c in cs:
                if c.epsilon is None:
                    line = ax.axhline(c.mean, color=colour, lw=0.9, ls=(0, (2, 2)), label=f"{c.mode}: no DP")
                    drawn.append({"dataset": dataset, "series": series, "no_dp": float(line.get_ydata()[0])})
        for label, eps, auc in refs:
            ax.plot([eps], [auc], marker="*", ms=12, color="#333", ls="none", label=label)
        ax.set_xscale("log")
        ax.set(xlabel="epsilon (delta 1e-5)", ylabel="test AUC", title=f"{dataset} ({rows:,} rows)")
        ax.grid(alpha=0.3)
    legend: dict = {}                        # one legend below the panels, each label once
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.tight_layout()
    fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(3, len(legend)), fontsize=8, frameon=False)
    return fig, drawn


def table_rows(all_cells: list[Cell]) -> list[tuple[str, str]]:
    """One row per cell: ('classification (50,000), vertical, random, eps 1', '0.921 +- 0.021 (5 seeds)')."""
    return [(f"{c.dataset} ({c.rows:,}), {c.mode}, {c.setting}, "
             + ("no DP" if c.epsilon is None else f"epsilon {c.epsilon:g}"),
             f"{c.mean:.3f} ± {c.sd:.3f} ({c.seeds} seeds)") for c in all_cells]
