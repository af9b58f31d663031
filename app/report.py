"""A self-contained HTML report of a demo run: figures, numbers, nothing external.

``write_report(path, results)`` is a pure function of its arguments: it draws the
figures with matplotlib's Agg canvas (no pyplot, so no global backend is touched),
embeds each PNG as a base64 ``data:`` URI, writes the page to a temporary file next to
``path`` and renames it into place, so a reader never sees a half-written report.

The ``results`` schema (arrays may be lists or numpy arrays)::

    {
      "horizontal": {                       # required
        "y_test": [0, 1, ...],              # binary labels of the shared held-out set
        "scores": {                         # model name -> predicted probability, same length
          "federated": [...], "centralized": [...],
          "hospital:Cleveland": [...], ...  # a model trained by one hospital alone
        },
        "auc": {"federated": 0.91, ...},    # optional; computed from scores when absent
        "groups": ["Cleveland", ...],       # optional; hospital of each test row, adds
                                            # a figure of every model's AUC per hospital
                                            # and a table of AUCs with confidence intervals
        "settings": {"max_depth": 3, ...},  # optional; training settings, listed
        "label": "disease: num > 0",        # optional; what the label means
        "features": ["age", ...],           # optional; the feature columns
        "importance": {"age": 12.5, ...},   # optional; the federated model's total gain
                                            # per feature, adds a figure
        "threshold": 0.5,                   # optional; for sensitivity and specificity
      },
      "timings": {"step name": seconds, ...},   # required (may be empty)
      "vertical": None | {                  # optional section
        "auc": {"vertical (clinic+lab+insurer)": 0.87, "clinic only": 0.84, ...},
        "y_test": [...], "scores": {...},   # optional, adds a ROC figure
        ...                                 # any other scalars are listed in a table
      },
      "inference": None | {                 # optional section
        "max_abs_diff": 3e-8,               # max |encrypted - plaintext| prediction
        "n_queries": 100,                   # optional
        "tolerance": 1e-6,                  # optional, default 1e-6
        ...                                 # any other scalars are listed
      },
      "meta": {"title": "...", "dataset": "...", ...},   # optional; scalars listed
      "dp": None | {...},                   # optional: bench_dp's JSON document
                                            # (app/report_dp.py), adds test AUC
                                            # against epsilon and its table
    }

Model names ``federated`` and ``centralized`` get fixed colours; every other name is
drawn as a single-hospital model (``hospital:`` prefix stripped in labels).

Every AUC comes with DeLong's 95% confidence interval (app/report_stats.py); the page
also shows a calibration plot with sensitivity and specificity at the threshold, and
lists the versions of the libraries that produced it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ppxgb.errors import ParameterError
from ppxgb.files import write_atomic
from ppxgb.wire import missing_extra

from .report_stats import auc_ci, calibration, sensitivity_specificity

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:
    raise missing_extra(exc, "report", "the HTML report") from None

from . import report_dp        # draws with matplotlib: after the check above

DEFAULT_TOLERANCE = 1e-6
DEFAULT_THRESHOLD = 0.5
#: Federated and centralized predictions closer than this are said to coincide.
SAME_CURVE = 1e-4
#: Libraries whose versions the report lists.
LIBRARIES = ("ppxgb", "xgboost", "numpy", "pandas", "scikit-learn", "numba", "matplotlib")
TOP_FEATURES = 15
_FIXED_COLOURS = {"federated": "#d62728", "centralized": "#1f77b4"}
_OTHER_COLOURS = ["#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:980px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .7em;
text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%;height:auto}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#666}
"""


# ---------------------------------------------------------------- validation

def _mapping(value: Any, name: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ParameterError.bad(name, "a dict", type(value).__name__)
    return value


def _vector(value: Any, name: str, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError.bad(name, "a 1-D array of numbers", type(value).__name__) from None
    if arr.ndim != 1 or arr.size == 0:
        raise ParameterError.bad(name, "a non-empty 1-D array", f"shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ParameterError.bad(name, f"length {n} (as y_test)", arr.size)
    if not np.isfinite(arr).all():
        raise ParameterError.bad(name, "finite numbers", "NaN or inf")
    return arr


def _roc_block(block: Mapping, name: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Validate a {y_test, scores, auc?} block; fill in AUCs that are not given."""
    y = _vector(block.get("y_test"), f"{name}['y_test']")
    if not set(np.unique(y).tolist()) <= {0.0, 1.0}:
        raise ParameterError.bad(f"{name}['y_test']", "binary labels 0/1", sorted(set(np.unique(y).tolist()))[:5])
    scores_in = _mapping(block.get("scores"), f"{name}['scores']")
    if not scores_in:
        raise ParameterError.bad(f"{name}['scores']", "at least one model's scores", {})
    scores = {str(k): _vector(v, f"{name}['scores'][{k!r}]", y.size) for k, v in scores_in.items()}
    auc_in = _mapping(block.get("auc", {}), f"{name}['auc']")
    both_classes = len(np.unique(y)) == 2
    auc: dict[str, float] = {}
    for model, s in scores.items():
        if model in auc_in:
            auc[model] = _number(auc_in[model], f"{name}['auc'][{model!r}]")
        else:
            auc[model] = float(roc_auc_score(y, s)) if both_classes else math.nan
    for model, value in auc_in.items():
        auc.setdefault(str(model), _number(value, f"{name}['auc'][{model!r}]"))
    return y, scores, auc


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError.bad(name, "a number", value)
    return float(value)


# ---------------------------------------------------------------- figures

def _label(model: str) -> str:
    return f"{model.split(':', 1)[1]} only" if model.startswith("hospital:") else model


def _colours(models: list[str]) -> dict[str, str]:
    out, others = {}, iter(_OTHER_COLOURS * (1 + len(models) // len(_OTHER_COLOURS)))
    for m in models:
        out[m] = _FIXED_COLOURS.get(m) or next(others)
    return out


def _order(models: list[str]) -> list[str]:
    """federated, centralized first; then the rest in the caller's order."""
    head = [m for m in ("federated", "centralized") if m in models]
    return head + [m for m in models if m not in head]


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _roc_figure(y: np.ndarray, scores: dict[str, np.ndarray], auc: dict[str, float], title: str) -> str:
    fig = Figure(figsize=(6.4, 5.4))
    ax = fig.add_subplot()
    models = _order(list(scores))
    colours = _colours(models)
    for m in models:
        fpr, tpr, _ = roc_curve(y, scores[m])
        single = m not in _FIXED_COLOURS
        style = {"lw": 1.3, "ls": "--"} if single else \
            {"lw": 1.6, "ls": (0, (4, 3))} if m == "centralized" else {"lw": 3.2, "ls": "-"}
        ax.plot(fpr, tpr, color=colours[m], label=f"{_label(m)} (AUC {auc[m]:.3f})", **style)
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _auc_bars(auc: dict[str, float], title: str) -> str:
    models = _order(list(auc))
    colours = _colours(models)
    fig = Figure(figsize=(6.8, 0.9 + 0.45 * len(models)))
    ax = fig.add_subplot()
    values = [auc[m] if math.isfinite(auc[m]) else 0.0 for m in models]
    ys = np.arange(len(models))[::-1]
    ax.barh(ys, values, color=[colours[m] for m in models])
    for yy, m, v in zip(ys, models, values):
        ax.text(v + 0.005, yy, f"{auc[m]:.3f}" if math.isfinite(auc[m]) else "n/a", va="center", fontsize=8)
    ax.set_yticks(ys, [_label(m) for m in models])
    ax.axvline(0.5, color="#999", lw=0.8, ls=":")
    ax.set(xlim=(0, 1.08), xlabel="AUC on the held-out set", title=title)
    return _png(fig)


def _group_bars(y: np.ndarray, scores: dict[str, np.ndarray], groups: np.ndarray) -> str:
    models = _order(list(scores))
    colours = _colours(models)
    hospitals = list(dict.fromkeys(groups.tolist()))
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(6.4, 1.6 * len(hospitals)), 4.2))
    ax = fig.add_subplot()
    for j, m in enumerate(models):
        vals = []
        for h in hospitals:
            rows = groups == h
            ok = len(np.unique(y[rows])) == 2
            vals.append(float(roc_auc_score(y[rows], scores[m][rows])) if ok else math.nan)
        ax.bar(np.arange(len(hospitals)) + (j - (len(models) - 1) / 2) * width, vals, width,
               color=colours[m], label=_label(m))
    ax.set_xticks(np.arange(len(hospitals)), [f"{h}\n(n={int((groups == h).sum())})" for h in hospitals])
    ax.axhline(0.5, color="#999", lw=0.8, ls=":")
    ax.set(ylim=(0, 1.05), ylabel="AUC", title="AUC on each hospital's test patients")
    ax.legend(fontsize=7, ncol=min(4, len(models)), loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    return _png(fig)


def _calibration_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> str:
    fig = Figure(figsize=(6.4, 5.4))
    ax = fig.add_subplot()
    models = [m for m in ("federated", "centralized") if m in scores] or list(scores)[:1]
    colours = _colours(models)
    for m in models:
        pred, observed, counts = calibration(y, scores[m])
        ax.plot(pred, observed, marker="o", color=colours[m], lw=1.6 if m == "centralized" else 3.2,
                ms=4 if m == "centralized" else 7, ls=(0, (4, 3)) if m == "centralized" else "-", label=_label(m))
        if m == models[0]:
            for px, oy, c in zip(pred, observed, counts):
                ax.annotate(str(int(c)), (px, oy), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color="#555")
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean predicted probability (bin)",
           ylabel="observed share of positives", title="Calibration on the held-out set")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _importance_figure(importance: dict[str, float]) -> str:
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:TOP_FEATURES]
    fig = Figure(figsize=(6.8, 0.9 + 0.35 * len(top)))
    ax = fig.add_subplot()
    ys = np.arange(len(top))[::-1]
    ax.barh(ys, [v for _, v in top], color=_FIXED_COLOURS["federated"])
    ax.set_yticks(ys, [k for k, _ in top])
    ax.set(xlabel="total gain over all splits on the feature", title="Feature importance, federated model")
    return _png(fig)


def _timing_figure(timings: dict[str, float]) -> str:
    steps = list(timings)
    fig = Figure(figsize=(6.8, 0.9 + 0.4 * len(steps)))
    ax = fig.add_subplot()
    ys = np.arange(len(steps))[::-1]
    vals = [timings[s] for s in steps]
    ax.barh(ys, vals, color="#6b7fa3")
    for yy, v in zip(ys, vals):
        ax.text(v, yy, f" {_fmt_seconds(v)}", va="center", fontsize=8)
    ax.set_yticks(ys, steps)
    ax.set(xlabel="seconds (wall clock)", title="Timings", xlim=(0, max(vals) * 1.25 if max(vals) > 0 else 1))
    return _png(fig)


# ---------------------------------------------------------------- html

def _fmt_seconds(v: float) -> str:
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return "n/a" if not math.isfinite(v) else (f"{v:.3g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6) else f"{v:.4f}".rstrip("0").rstrip("."))
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("", "")) -> str:
    out = ["<table>"]
    if any(head):
        out.append(f"<tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>")
    for key, value in rows:
        cls = ' class="num"' if isinstance(value, numbers.Real) and not isinstance(value, bool) else ""
        out.append(f"<tr><td>{html.escape(str(key))}</td><td{cls}>{html.escape(_fmt(value))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _with_ci(y: np.ndarray, score: np.ndarray, auc: float | None = None) -> str:
    """'0.912 [0.871, 0.953]': the AUC (given, or computed) and DeLong's 95% interval."""
    computed, lo, hi = auc_ci(y, score)
    value = computed if auc is None else auc
    if not math.isfinite(value):
        return "n/a (one class only)"
    ci = f" [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else " [interval n/a]"
    return f"{value:.4f}{ci}"


def _versions() -> list[tuple[str, Any]]:
    import platform
    from importlib import metadata

    rows: list[tuple[str, Any]] = [("python", platform.python_version())]
    for name in LIBRARIES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def _img(figure_id: str, b64: str, alt: str, caption: str, data: Any = None) -> str:
    """A figure; data, when given, is what it draws, as JSON in the img's data-series."""
    series = f' data-series="{html.escape(json.dumps(data))}"' if data is not None else ""
    return (f'<figure id="fig-{figure_id}"><img data-figure="{figure_id}" alt="{html.escape(alt)}"{series} '
            f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _ci_table(y: np.ndarray, scores: dict[str, np.ndarray], groups: np.ndarray) -> str:
    """AUC [95% CI] of every model on all test patients and on each hospital's."""
    hospitals = list(dict.fromkeys(groups.tolist()))
    head = "".join(f"<th>{html.escape(h)} (n={int((groups == h).sum())})</th>" for h in hospitals)
    rows = [f'<table id="auc-ci"><tr><th>model</th><th>all (n={y.size})</th>{head}</tr>']
    for m in _order(list(scores)):
        cells = [_with_ci(y, scores[m])] + [_with_ci(y[groups == h], scores[m][groups == h]) for h in hospitals]
        rows.append(f"<tr><td>{html.escape(_label(m))}</td>" +
                    "".join(f'<td class="num">{html.escape(c)}</td>' for c in cells) + "</tr>")
    rows.append("</table>")
    note = ('<p class="muted">AUC [95% confidence interval] by DeLong\'s method (normal approximation '
            "of the Mann-Whitney statistic's variance). With a few dozen patients per hospital the "
            "intervals are wide, and the normal approximation is itself rough: read differences "
            "between hospitals with care.</p>")
    return "\n".join(rows) + "\n" + note


def _scalars(block: Mapping, skip: set[str]) -> list[tuple[str, Any]]:
    return [(str(k), v) for k, v in block.items()
            if k not in skip and (v is None or isinstance(v, (str, numbers.Number, list, tuple)))]


def _render(results: Mapping) -> str:
    hz = _mapping(results.get("horizontal"), "results['horizontal']")
    y, scores, auc = _roc_block(hz, "results['horizontal']")
    groups = None
    if hz.get("groups") is not None:
        groups = np.asarray(hz["groups"], dtype=object)
        if groups.shape != y.shape:
            raise ParameterError.bad("results['horizontal']['groups']", f"length {y.size} (as y_test)", groups.shape)
        groups = groups.astype(str)
    settings = _mapping(hz.get("settings") or {}, "results['horizontal']['settings']")
    features = hz.get("features")
    if features is not None and (isinstance(features, (str, bytes)) or not hasattr(features, "__iter__")):
        raise ParameterError.bad("results['horizontal']['features']", "a list of column names", features)
    importance_in = _mapping(hz.get("importance") or {}, "results['horizontal']['importance']")
    importance = {str(k): _number(v, f"results['horizontal']['importance'][{k!r}]")
                  for k, v in importance_in.items()}
    threshold = _number(hz.get("threshold", DEFAULT_THRESHOLD), "results['horizontal']['threshold']")
    if not 0 < threshold < 1:
        raise ParameterError.bad("results['horizontal']['threshold']", "a probability in (0, 1)", threshold)
    timings_in = _mapping(results.get("timings"), "results['timings']")
    timings = {str(k): _number(v, f"results['timings'][{k!r}]") for k, v in timings_in.items()}
    if any(v < 0 for v in timings.values()):
        raise ParameterError.bad("results['timings']", "non-negative seconds", timings)
    meta = _mapping(results.get("meta") or {}, "results['meta']")
    # Optional sections, validated before anything is drawn.
    vertical = results.get("vertical")
    vb: Mapping | None = None
    v_roc = None
    v_auc: dict[str, float] = {}
    if vertical is not None:
        vb = _mapping(vertical, "results['vertical']")
        if "y_test" in vb or "scores" in vb:
            v_roc = _roc_block(vb, "results['vertical']")
            v_auc = v_roc[2]
        else:
            auc_in = _mapping(vb.get("auc", {}), "results['vertical']['auc']")
            v_auc = {str(k): _number(v, f"results['vertical']['auc'][{k!r}]") for k, v in auc_in.items()}
        _mapping(vb.get("parties", {}), "results['vertical']['parties']")
    inference = results.get("inference")
    ib: Mapping | None = None
    diff = tol = math.nan
    has_diff = False
    if inference is not None:
        ib = _mapping(inference, "results['inference']")
        has_diff = "max_abs_diff" in ib
        if has_diff:
            diff = _number(ib["max_abs_diff"], "results['inference']['max_abs_diff']")
            if diff < 0:
                raise ParameterError.bad("results['inference']['max_abs_diff']", "a non-negative number", diff)
            tol = _number(ib.get("tolerance", DEFAULT_TOLERANCE), "results['inference']['tolerance']")

    dp_cells = report_dp.cells(results["dp"]) if results.get("dp") is not None else None

    title = str(meta.get("title", "ppxgb demo report"))
    created = str(meta.get("created", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">Generated {html.escape(created)} by ppxgb. Every figure is embedded in this file.</p>',
    ]
    meta_rows = _scalars(meta, {"title", "created"})
    if meta_rows:
        parts += ["<h2>Run</h2>", _table(meta_rows)]
    setting_rows = [(str(k), v if isinstance(v, (str, numbers.Number)) else str(v)) for k, v in settings.items()]
    if hz.get("label") is not None:
        setting_rows.append(("label", str(hz["label"])))
    if features is not None:
        names = [str(f) for f in features]
        setting_rows.append((f"features ({len(names)})", ", ".join(names)))
    if setting_rows:
        parts += ["<h2>Settings</h2>", _table(setting_rows, ("setting", "value"))]
    parts += ["<h2>Library versions</h2>", _table(_versions(), ("library", "version"))]

    parts.append("<h2>Summary</h2>")
    summary: list[tuple[str, Any]] = [
        (f"AUC [95% CI], {_label(m)}", _with_ci(y, scores[m], auc[m]) if m in scores else auc[m])
        for m in _order(list(auc))]
    summary.append(("held-out patients (positives)", f"{y.size} ({int(y.sum())})"))
    summary += [(f"vertical AUC [95% CI], {k}", _with_ci(v_roc[0], v_roc[1][k], v) if v_roc and k in v_roc[1]
                 else v) for k, v in v_auc.items()]
    if has_diff:
        summary.append(("encrypted vs plaintext, max |diff|", diff))
    summary += [(f"time: {k}", _fmt_seconds(v)) for k, v in timings.items()]
    parts.append(_table(summary, ("quantity", "value")))

    parts.append("<h2>Horizontal training: hospitals with their own patients</h2>")
    roc_caption = ("ROC curves of the federated model, the centralized model trained on the pooled rows, "
                   "and each hospital's model trained on its own rows alone, all on the same held-out set.")
    roc_note = ""
    if "federated" in scores and "centralized" in scores:
        gap = float(np.max(np.abs(scores["federated"] - scores["centralized"])))
        roc_note = (f"The federated curve (thick, solid) lies under the centralized one (dashed): their "
                    f"predicted probabilities differ by at most {_fmt(gap)}, so the two curves coincide."
                    if gap < SAME_CURVE else
                    f"Federated (solid) and centralized (dashed) predictions differ by up to {_fmt(gap)}.")
    parts.append(_img("roc", _roc_figure(y, scores, auc, "ROC on the shared held-out set"),
                      "ROC curves: federated, centralized and single-hospital models", roc_caption))
    if roc_note:
        parts.append(f'<p id="roc-note">{html.escape(roc_note)}</p>')
    parts.append(_img("auc", _auc_bars(auc, "AUC per model"), "AUC bar chart per hospital model, federated and centralized",
                      "AUC of each single-hospital model next to the federated and centralized models."))
    if groups is not None:
        parts.append(_img("auc-by-hospital", _group_bars(y, scores, groups), "AUC of every model on each hospital's test patients",
                          "Each model evaluated on the test patients of one hospital at a time "
                          "(no bar where those patients are all of one class, so AUC is undefined)."))
        parts.append(_ci_table(y, scores, groups))
    parts.append("<h3>Calibration and the decision threshold</h3>")
    parts.append(_img("calibration", _calibration_figure(y, scores), "calibration plot of the federated model",
                      "Mean predicted probability against the observed share of patients with the disease, in "
                      "ten equal-width bins (numbers: patients per bin); on the diagonal, a predicted 30% "
                      "means 30% of such patients are positive."))
    cut_rows = []
    for m in _order(list(scores)):
        sens, spec = sensitivity_specificity(y, scores[m], threshold)
        cut_rows.append(f"<tr><td>{html.escape(_label(m))}</td><td class=\"num\">{_fmt(sens)}</td>"
                        f"<td class=\"num\">{_fmt(spec)}</td></tr>")
    parts.append(f"<table id=\"threshold\"><tr><th>model</th><th>sensitivity at {_fmt(threshold)}</th>"
                 f"<th>specificity at {_fmt(threshold)}</th></tr>" + "".join(cut_rows) + "</table>")
    if importance:
        parts.append(_img("importance", _importance_figure(importance), "feature importance of the federated model",
                          f"Total gain of the splits on each feature in the federated model (the top "
                          f"{min(TOP_FEATURES, len(importance))} of {len(importance)} features used)."))

    parts.append("<h2>Timings</h2>")
    if timings:
        parts.append(_img("timings", _timing_figure(timings), "bar chart of step timings", "Wall-clock seconds per step."))
    else:
        parts.append('<p class="muted">No timings were recorded.</p>')

    if vb is not None:
        parts.append("<h2>Vertical training: one set of patients, columns split across institutions</h2>")
        if v_roc is not None:
            parts.append(_img("vertical-roc", _roc_figure(*v_roc, "Vertical: ROC on the held-out set"),
                              "ROC curves of the vertical model", "ROC curves of the vertically trained model and baselines."))
        if v_auc:
            parts.append(_table(list(v_auc.items()), ("model", "AUC")))
        rows = _scalars(vb, {"auc", "y_test", "scores", "parties"})
        rows += [(f"party {k}", _fmt(v) if isinstance(v, (list, tuple, str, numbers.Number)) else str(v))
                 for k, v in vb.get("parties", {}).items()]
        if rows:
            parts.append(_table(rows))

    if dp_cells is not None:
        parts.append("<h2>Differential privacy: test AUC against epsilon</h2>")
        fig, drawn = report_dp.auc_figure(*dp_cells)
        parts.append(_img("dp-auc", _png(fig), "test AUC against epsilon per dataset, mode and DP setting",
                          "Mean test AUC (held-out 30%) over the seeds, shaded +-1 sd, against epsilon; dashed: "
                          "the same data and mode trained without DP at the benchmark's no-DP parameters "
                          "(10 rounds, depth 4, eta 0.5); stars: published figures (other data). From "
                          "benchmarks/bench_dp.py's results file.", drawn))
        parts.append(_table(report_dp.table_rows(dp_cells[0]), ("dataset, mode, setting, epsilon", "test AUC")))

    if ib is not None:
        parts.append("<h2>Encrypted inference check</h2>")
        if has_diff:
            ok = diff <= tol  # False for NaN: a NaN difference is a mismatch
            parts.append(f'<p>Max |encrypted &minus; plaintext| prediction: <b>{html.escape(_fmt(diff))}</b> '
                         f'(tolerance {html.escape(_fmt(tol))}): <span class="{"ok" if ok else "bad"}">'
                         f'{"match" if ok else "MISMATCH"}</span></p>')
        rows = _scalars(ib, {"max_abs_diff", "tolerance"})
        if rows:
            parts.append(_table(rows))

    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: str | os.PathLike[str], results: Mapping[str, Any]) -> Path:
    """Render ``results`` (schema in the module docstring) to a self-contained HTML
    file at ``path``; return the absolute path. Writes atomically (temp + rename)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ParameterError.bad("path", "a file path", path)
    results = _mapping(results, "results")
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise ParameterError.bad("path", "a file path, not a directory", str(path))
    page = _render(results)  # validate and draw before touching the disk
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, page.encode("utf-8"), mode=0o644)
