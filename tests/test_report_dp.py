"""The report's differential-privacy section (app/report_dp.py): AUC against epsilon,
drawn from bench_dp's results file."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest

from ppxgb.errors import ParameterError
from ppxgb.app.report import write_report
from ppxgb.app.demo import load_dp_results

from test_report import _parse

RESULTS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS_dp.json"


def _doc() -> dict:
    cell = {"dataset": "classification", "rows": 50000, "seeds": 5}
    return {"schema": "ppxgb-dp-auc/1", "results": [
        {**cell, "mode": "vertical", "setting": "random", "epsilon": 4.0, "mean": 0.931, "sd": 0.012},
        {**cell, "mode": "vertical", "setting": "random", "epsilon": 1.0, "mean": 0.921, "sd": 0.021},
        {**cell, "mode": "vertical", "setting": "random", "epsilon": None, "mean": 0.971, "sd": 0.010},
        {**cell, "mode": "horizontal", "setting": "random", "epsilon": 1.0, "mean": 0.915, "sd": 0.022},
        {"dataset": "heart", "rows": 920, "seeds": 3, "mode": "horizontal", "setting": "colsample",
         "epsilon": 4.0, "mean": 0.820, "sd": 0.020}],
        "references": [{"label": "Maddock et al. 2022", "epsilon": 1.0, "auc": 0.84}]}


def _render(tmp_path, doc, name="r.html"):
    minimal = {"horizontal": {"y_test": [0, 1, 0, 1], "scores": {"federated": [0.1, 0.9, 0.2, 0.7]}}, "timings": {}}
    page = _parse(write_report(tmp_path / name, {**minimal, "dp": doc}))
    return page, (tmp_path / name).read_text(encoding="utf-8")


def _series(html_text: str) -> list[dict]:
    from html.parser import HTMLParser

    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "img" and a.get("data-figure") == "dp-auc":
                found.append(json.loads(a["data-series"]))
    P().feed(html_text)
    assert len(found) == 1
    return found[0]


def test_auc_against_epsilon_is_drawn_from_the_files_numbers(tmp_path):
    page, text = _render(tmp_path, _doc())
    assert base64.b64decode(page.images["dp-auc"].split(",", 1)[1]).startswith(b"\x89PNG")
    drawn = _series(text)
    assert {"dataset": "classification", "series": "vertical, random", "epsilon": [1.0, 4.0],
            "auc": [0.921, 0.931]} in drawn                              # sorted by epsilon
    assert {"dataset": "classification", "series": "vertical, random", "no_dp": 0.971} in drawn
    assert {"dataset": "classification", "series": "horizontal, random", "epsilon": [1.0], "auc": [0.915]} in drawn
    assert {"dataset": "heart", "series": "horizontal, colsample", "epsilon": [4.0], "auc": [0.82]} in drawn
    assert len(drawn) == 4
    words = " ".join(page.text)
    assert "test AUC against epsilon" in words and "0.921 ± 0.021 (5 seeds)" in words


def test_the_figure_changes_with_the_numbers_and_is_absent_without_them(tmp_path):
    doc = _doc()
    before, _ = _render(tmp_path, doc, "a.html")
    doc["results"][1]["mean"] = 0.8
    after, text = _render(tmp_path, doc, "b.html")
    assert before.images["dp-auc"] != after.images["dp-auc"]
    assert [0.8, 0.931] in [d.get("auc") for d in _series(text)]
    page, _ = _render(tmp_path, None, "c.html")
    assert "dp-auc" not in page.images


@pytest.mark.parametrize("mutate,name", [
    (lambda d: d.update(schema="other"), "results['dp']['schema']"),
    (lambda d: d.update(results=[]), "results['dp']['results']"),
    (lambda d: d["results"][0].update(mean=1.5), "results['dp']['results'][0]['mean']"),
    (lambda d: d["results"][1].update(epsilon=-1), "results['dp']['results'][1]['epsilon']"),
    (lambda d: d["results"][2].pop("mode"), "results['dp']['results'][2]['mode']"),
    (lambda d: d["results"][0].update(seeds=True), "results['dp']['results'][0]['seeds']"),
    (lambda d: d["references"][0].update(auc="high"), "results['dp']['references'][0]['auc']"),
])
def test_a_malformed_results_document_is_refused_by_key_and_nothing_written(tmp_path, mutate, name):
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(ParameterError, match=name.replace("[", r"\[").replace("]", r"\]")):
        _render(tmp_path, doc)
    assert not (tmp_path / "r.html").exists()


def test_the_repositorys_results_file_renders_and_the_demo_option_reads_it(tmp_path):
    doc = load_dp_results(str(RESULTS_FILE))
    _, text = _render(tmp_path, doc)
    drawn = _series(text)
    vertical = [d for d in drawn if d["series"] == "vertical, random" and "auc" in d]
    assert vertical and all(len(d["epsilon"]) == len(d["auc"]) for d in vertical)
    with pytest.raises(ParameterError, match="--dp-results"):
        load_dp_results(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "ppxgb-dp-auc/1", "results": [{}]}))
    with pytest.raises(ParameterError, match=r"results\['dp'\]\['results'\]\[0\]"):
        load_dp_results(str(tmp_path / "bad.json"))
