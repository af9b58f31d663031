"""The report's statistics against direct computations: DeLong's AUC variance against
its definition (every positive-negative pair) and against the bootstrap, the
calibration bins and sensitivity/specificity against counting; and the report page
carries the settings, versions, intervals, calibration, threshold table, importance
figure and the note on the overlapping ROC curves."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from ppxgb.app.report import write_report
from ppxgb.app.report_stats import auc_ci, calibration, delong, midranks, sensitivity_specificity
from ppxgb.errors import ParameterError


def naive_delong(y, s):
    """DeLong's structural components straight from the definition, O(m n)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_delong_equals_its_definition_and_sklearn_auc(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80 + 40 * seed)
    s = y * 0.8 + rng.normal(size=y.size)
    if ties:
        s = np.round(s, 1)
    auc, var = delong(y, s)
    ref_auc, ref_var = naive_delong(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc == pytest.approx(ref_auc, abs=1e-12) and var == pytest.approx(ref_var, rel=1e-10)


def test_delong_interval_covers_like_the_bootstrap():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 70)                         # a hospital-sized test set
    s = y * 1.0 + rng.normal(size=70)
    auc, lo, hi = auc_ci(y, s)
    boots = []
    for _ in range(2000):
        i = rng.integers(0, 70, 70)
        m = int(y[i].sum())
        if 0 < m < 70:             # AUC by the rank-sum formula (scipy's ranks, not the module's)
            boots.append((rankdata(s[i])[y[i] == 1].sum() - m * (m + 1) / 2) / (m * (70 - m)))
    b_lo, b_hi = np.percentile(boots, [2.5, 97.5])
    assert lo < auc < hi
    assert abs((hi - lo) - (b_hi - b_lo)) < 0.25 * (b_hi - b_lo), (lo, hi, b_lo, b_hi)


def test_edge_cases():
    assert math.isnan(delong(np.zeros(5), np.arange(5.0))[0])          # one class: no AUC
    auc, lo, hi = auc_ci(np.array([0, 1]), np.array([0.1, 0.9]))       # one of each: no variance
    assert auc == 1.0 and math.isnan(lo) and math.isnan(hi)
    assert list(midranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]
    auc, lo, hi = auc_ci(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9, 0.95]))
    assert auc == 1.0 and hi <= 1.0


def test_calibration_bins_and_threshold_counts():
    rng = np.random.default_rng(1)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    pred, observed, counts = calibration(y, p, n_bins=5)
    for k in range(5):
        rows = (p >= k / 5) & (p < (k + 1) / 5)
        assert counts[k] == rows.sum() and pred[k] == pytest.approx(p[rows].mean())
        assert observed[k] == pytest.approx(y[rows].mean())
    sens, spec = sensitivity_specificity(y, p, 0.3)
    assert sens == ((p >= 0.3) & (y == 1)).sum() / (y == 1).sum()
    assert spec == ((p < 0.3) & (y == 0)).sum() / (y == 0).sum()


def _results(gap: float = 0.0) -> dict:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    fed = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=200))))
    return {"horizontal": {"y_test": y, "scores": {"federated": fed, "centralized": np.clip(fed + gap, 0, 1)},
                           "groups": np.array(["A", "B"])[rng.integers(0, 2, 200)],
                           "settings": {"max_depth": 3, "eta": 0.1}, "label": "disease: num > 0",
                           "features": ["age", "chol"], "importance": {"age": 5.0, "chol": 1.0},
                           "threshold": 0.4},
            "timings": {}}


def test_report_shows_settings_versions_intervals_and_the_roc_note(tmp_path):
    import xgboost

    r = _results()
    page = write_report(tmp_path / "r.html", r).read_text()
    for needle in ("max_depth", "disease: num &gt; 0", "age, chol", "Library versions",
                   f"<td>xgboost</td><td>{xgboost.__version__}</td>", 'id="fig-calibration"',
                   'id="fig-importance"', "sensitivity at 0.4", "DeLong", 'id="roc-note"', "coincide"):
        assert needle in page, needle
    h = r["horizontal"]
    auc, lo, hi = auc_ci(h["y_test"], h["scores"]["federated"])
    assert f"{auc:.4f} [{lo:.3f}, {hi:.3f}]" in page
    a = h["groups"] == "A"
    auc, lo, hi = auc_ci(h["y_test"][a], h["scores"]["federated"][a])
    table = re.search(r'<table id="auc-ci">.*?</table>', page, re.S).group(0)
    assert f"{auc:.4f} [{lo:.3f}, {hi:.3f}]" in table
    sens, spec = sensitivity_specificity(h["y_test"], h["scores"]["federated"], 0.4)
    assert re.search(rf"federated</td><td class=\"num\">{sens:.4f}".rstrip("0"), page)
    apart = write_report(tmp_path / "g.html", _results(gap=0.05)).read_text()
    assert "coincide" not in apart and "differ by up to" in apart


@pytest.mark.parametrize(("change", "name"), [
    ({"threshold": 1.5}, "results['horizontal']['threshold']"),
    ({"importance": {"age": "high"}}, "results['horizontal']['importance']['age']"),
    ({"settings": [1, 2]}, "results['horizontal']['settings']"),
    ({"features": "age"}, "results['horizontal']['features']"),
])
def test_bad_new_fields_are_named(tmp_path, change, name):
    r = _results()
    r["horizontal"].update(change)
    with pytest.raises(ParameterError) as err:
        write_report(tmp_path / "r.html", r)
    assert str(err.value).startswith(f"{name}:")
