"""`ppxgb demo` end to end: exit 0, the comparison printed, a self-contained report."""

import base64
import re

import pytest

from ppxgb.app.cli import main

pytestmark = pytest.mark.slow   # subprocesses or real services: seconds per test on 2 cores


def test_demo_prints_comparison_and_writes_self_contained_report(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["demo", "--out", str(out), "--queries", "30"]) == 0
    text = capsys.readouterr().out
    for needle in ("federated (secure, 4 hospitals)", "centralized xgboost (pooled)",
                   "Cleveland alone", "Hungary alone", "Switzerland alone", "VA Long Beach alone",
                   "Encrypted inference: 30 queries", "(match)", str(out.resolve())):
        assert needle in text, needle
    # the federated model reproduces centralized xgboost on this data (<= 256 values per feature)
    fed = float(re.search(r"federated \(secure, 4 hospitals\)\s+([0-9.]+)", text).group(1))
    cen = float(re.search(r"centralized xgboost \(pooled\)\s+([0-9.]+)", text).group(1))
    assert abs(fed - cen) < 1e-3
    assert re.findall(r"^\[(\d)/3\]", text, re.M) == ["1", "2", "3"]     # steps in order
    page = out.read_text()
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3                      # ROC, AUC per model, timings (at least)
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ROC" in page and "Federated" in page or "federated" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_demo_with_every_role_as_a_separate_process(tmp_path, capsys):
    out = tmp_path / "services.html"
    assert main(["demo", "--services", "--out", str(out), "--queries", "20"]) == 0
    text = capsys.readouterr().out
    assert "federated (secure, 4 hospitals)" in text
    assert "Encrypted inference: 20 queries" in text and "(match)" in text
    assert re.findall(r"^\[(\d)/3\]", text, re.M) == ["1", "2", "3"]     # steps in order
    assert "separate processes on loopback" in out.read_text()
