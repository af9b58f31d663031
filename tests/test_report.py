"""ppxgb.app.report: a self-contained HTML report whose figures are embedded images."""

from __future__ import annotations

import base64
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ppxgb.errors import ParameterError
from ppxgb.app.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSPITALS = ("Cleveland", "Hungary", "Switzerland", "VA Long Beach")


class _Page(HTMLParser):
    """Collects <img> tags and every URL-bearing attribute of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        for key in ("src", "href", "data", "poster", "action", "srcset"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "img":
            self.images[a.get("data-figure", f"img{len(self.images)}")] = a.get("src", "")

    def handle_data(self, data):
        self.text.append(data)


def _results(seed: int = 0, *, vertical: bool = True, inference: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    n = 240
    y = rng.integers(0, 2, n)
    groups = np.array(HOSPITALS)[rng.integers(0, 4, n)]

    def scores(strength: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(strength * (y - 0.5) + rng.normal(0, 1, n))))

    s = {"federated": scores(2.0), "centralized": scores(2.1)}
    s.update({f"hospital:{h}": scores(1.0 + 0.2 * i) for i, h in enumerate(HOSPITALS)})
    results = {
        "horizontal": {"y_test": y, "scores": s, "groups": groups},
        "timings": {"bin agreement": 0.4, "federated training": 12.5, "centralized training": 0.3},
        "vertical": None,
        "inference": None,
        "meta": {"title": "ppxgb test report", "dataset": "synthetic <script>alert(1)</script>", "servers": 2},
    }
    if vertical:
        yv = rng.integers(0, 2, 100)
        results["vertical"] = {
            "y_test": yv,
            "scores": {"vertical": yv * 0.6 + rng.random(100) * 0.4, "clinic only": rng.random(100)},
            "parties": {"clinic": ["age", "female"], "lab": ["vitamin_d"], "insurer": ["steroid_claims"]},
            "n_common_patients": 100,
        }
    if inference:
        results["inference"] = {"max_abs_diff": 4.2e-8, "n_queries": 64, "tolerance": 1e-6}
    return results


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_written_where_named_and_returned(tmp_path):
    target = tmp_path / "out" / "demo-report.html"
    got = write_report(target, _results())
    assert got == target.resolve() and got.is_file()
    assert [p.name for p in target.parent.iterdir()] == ["demo-report.html"]  # no temp file left
    assert write_report(str(target), _results(1)) == got  # str paths work and overwrite


def test_report_figures_are_embedded_pngs(tmp_path):
    page = _parse(write_report(tmp_path / "r.html", _results()))
    expected = {"roc", "auc", "auc-by-hospital", "timings", "vertical-roc"}
    assert expected <= set(page.images)
    for name, src in page.images.items():
        assert src.startswith("data:image/png;base64,"), name
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC) and len(png) > 5000, name


def test_report_has_no_external_resources(tmp_path):
    path = write_report(tmp_path / "r.html", _results())
    page = _parse(path)
    assert page.urls and all(u.startswith("data:") for u in page.urls)
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    html_text = path.read_text(encoding="utf-8")
    assert "http://" not in html_text and "https://" not in html_text and "url(" not in html_text


def test_report_lists_summary_numbers_and_escapes_text(tmp_path):
    r = _results()
    html_text = write_report(tmp_path / "r.html", r).read_text(encoding="utf-8")
    text = " ".join(_parse(tmp_path / "r.html").text)
    assert "&lt;script&gt;" in html_text and "<script>" not in html_text
    for label in ("federated", "centralized", *(f"{h} only" for h in HOSPITALS), "federated training"):
        assert label in text
    assert "Encrypted inference check" in text and "match" in text and "4.2e-08" in text
    assert "Vertical training" in text


def test_optional_sections_appear_only_when_present(tmp_path):
    page = _parse(write_report(tmp_path / "r.html", _results(vertical=False, inference=False)))
    text = " ".join(page.text)
    assert "Vertical training" not in text and "Encrypted inference" not in text
    assert "vertical-roc" not in page.images
    assert {"roc", "auc", "timings"} <= set(page.images)
    minimal = {"horizontal": {"y_test": [0, 1, 0, 1], "scores": {"federated": [0.1, 0.9, 0.2, 0.7]}}, "timings": {}}
    page = _parse(write_report(tmp_path / "m.html", minimal))
    assert {"roc", "auc"} <= set(page.images) and "timings" not in page.images


@pytest.mark.parametrize("diff", [0.01, float("nan")])
def test_inference_mismatch_is_flagged(tmp_path, diff):
    r = _results(vertical=False)
    r["inference"] = {"max_abs_diff": diff}
    assert "MISMATCH" in write_report(tmp_path / "r.html", r).read_text(encoding="utf-8")


def test_vertical_section_from_auc_only(tmp_path):
    r = _results(inference=False)
    r["vertical"] = {"auc": {"vertical": 0.87, "clinic only": 0.8}, "parties": {"clinic": 7}}
    page = _parse(write_report(tmp_path / "r.html", r))
    text = " ".join(page.text)
    assert "Vertical training" in text and "clinic only" in text and "0.87" in text
    assert "vertical-roc" not in page.images


def test_given_auc_is_used_and_missing_auc_is_computed(tmp_path):
    r = _results(vertical=False, inference=False)
    r["horizontal"]["auc"] = {"federated": 0.123456}
    text = " ".join(_parse(write_report(tmp_path / "r.html", r)).text)
    assert "0.1235" in text


@pytest.mark.parametrize(("mutate", "name"), [
    (lambda r: r.pop("horizontal"), "results['horizontal']"),
    (lambda r: r.pop("timings"), "results['timings']"),
    (lambda r: r["horizontal"].pop("y_test"), "results['horizontal']['y_test']"),
    (lambda r: r["horizontal"].update(y_test=np.full(240, 2)), "results['horizontal']['y_test']"),
    (lambda r: r["horizontal"].update(scores={}), "results['horizontal']['scores']"),
    (lambda r: r["horizontal"]["scores"].update(federated=[0.5] * 3), "results['horizontal']['scores']['federated']"),
    (lambda r: r["horizontal"]["scores"].update(federated=[np.nan] * 240), "results['horizontal']['scores']['federated']"),
    (lambda r: r["horizontal"].update(groups=["a"]), "results['horizontal']['groups']"),
    (lambda r: r["timings"].update(oops="slow"), "results['timings']['oops']"),
    (lambda r: r["timings"].update(neg=-1.0), "results['timings']"),
    (lambda r: r.update(inference={"max_abs_diff": "small"}), "results['inference']['max_abs_diff']"),
    (lambda r: r.update(vertical=[1, 2]), "results['vertical']"),
    (lambda r: r["vertical"].pop("y_test"), "results['vertical']['y_test']"),
    (lambda r: r["vertical"].update(parties=["clinic"]), "results['vertical']['parties']"),
    (lambda r: r.update(inference={"max_abs_diff": -1.0}), "results['inference']['max_abs_diff']"),
    (lambda r: r.update(meta="x"), "results['meta']"),
])
def test_bad_results_raise_naming_the_key_and_write_nothing(tmp_path, mutate, name):
    r = _results()
    mutate(r)
    target = tmp_path / "r.html"
    with pytest.raises(ParameterError) as err:
        write_report(target, r)
    assert str(err.value).startswith(f"{name}:")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_bad_path(tmp_path):
    with pytest.raises(ParameterError, match="^path:"):
        write_report(tmp_path, _results())
    with pytest.raises(ParameterError, match="^path:"):
        write_report(42, _results())  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^results:"):
        write_report(tmp_path / "r.html", [])  # type: ignore[arg-type]


def test_failed_write_leaves_old_report_intact(tmp_path, monkeypatch):
    target = write_report(tmp_path / "r.html", _results())
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, _results(3))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
