"""The HTML report in a real headless Chromium (Debian's chromium and chromium-driver,
driven by selenium): the page loads with no console error, every figure decodes to a
picture with a size and is laid out on the page, and a screenshot of the page is not
blank.  A page with a broken figure and a page with a script error are caught by the
same checks (the mutants), so the checks can fail.

No silent skip: without the browser the test fails and says how to install it
(`make chromium`, which `make test` runs).
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from ppxgb.app.report import write_report

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("Chromium or chromedriver is not installed: run `make chromium` (as root it installs "
                    "Debian's chromium and chromium-driver packages; `make test` does it)")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'")
    binary, driver = _binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def page_problems(chrome, path) -> tuple[list[str], dict]:
    """Load a local page; every problem a reader would see, and what was measured."""
    from PIL import Image

    chrome.get(path.resolve().as_uri())
    problems = [f"console {e['level']}: {e['message']}" for e in chrome.get_log("browser")
                if e["level"] in ("SEVERE", "ERROR")]
    images = chrome.execute_script(
        "return Array.from(document.images).map(i => ({id: i.dataset.figure || i.alt, ok: i.complete, "
        "w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))")
    for im in images:
        if not (im["ok"] and im["w"] > 0 and im["h"] > 0 and im["shown"] > 0):
            problems.append(f"figure {im['id']!r} did not load: {im}")
    shot = Image.open(io.BytesIO(chrome.get_screenshot_as_png())).convert("L")
    pixels = np.asarray(shot)
    inked = float((pixels < 200).mean())
    if pixels.std() < 5 or inked < 0.005:
        problems.append(f"screenshot is blank (std {pixels.std():.1f}, {inked:.2%} dark pixels)")
    height = chrome.execute_script("return document.body.scrollHeight")
    return problems, {"images": len(images), "inked": inked, "height": height, "shot": shot.size}


def results() -> dict:
    rng = np.random.default_rng(4)
    n = 260
    y = rng.integers(0, 2, n)
    groups = np.array(["Cleveland", "Hungary", "Switzerland", "VA Long Beach"])[rng.integers(0, 4, n)]
    fed = 1 / (1 + np.exp(-(2.0 * (y - 0.5) + rng.normal(0, 1, n))))
    scores = {"federated": fed, "centralized": fed.copy(),
              **{f"hospital:{h}": rng.random(n) * 0.5 + y * 0.3 for h in ("Cleveland", "Hungary")}}
    return {"horizontal": {"y_test": y, "scores": scores, "groups": groups,
                           "settings": {"objective": "binary:logistic", "max_depth": 3, "rounds": 60},
                           "label": "disease: num > 0", "features": ["age", "sex", "chol"],
                           "importance": {"age": 30.5, "sex": 12.0, "chol": 4.2}},
            "timings": {"secure horizontal training": 1.3, "centralized xgboost": 0.1},
            "vertical": {"y_test": y[:100], "scores": {"vertical": fed[:100]}, "n_common_patients": 100},
            "inference": {"max_abs_diff": 3e-9, "n_queries": 20, "tolerance": 1e-6},
            "meta": {"title": "browser check", "seed": 0}}


def test_report_renders_in_chromium(browser, tmp_path):
    path = write_report(tmp_path / "report.html", results())
    problems, seen = page_problems(browser, path)
    assert problems == [], problems
    assert seen["images"] >= 7, seen            # ROC, AUC, per hospital, calibration, importance, timings, vertical
    assert seen["height"] > 3000, seen          # the whole report laid out, not an error page


def test_the_checks_catch_a_broken_figure_and_a_script_error(browser, tmp_path):
    page = write_report(tmp_path / "report.html", results()).read_text()
    start = page.index("base64,") + len("base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(page[:start] + "AAAA" + page[start + 40:])        # a corrupted PNG
    problems, _ = page_problems(browser, broken)
    assert any("did not load" in p for p in problems), problems
    failing = tmp_path / "failing.html"
    failing.write_text(page.replace("</body>", "<script>undefinedFunction()</script></body>"))
    problems, _ = page_problems(browser, failing)
    assert any("console" in p and "undefinedFunction" in p for p in problems), problems
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    problems, _ = page_problems(browser, blank)
    assert any("blank" in p for p in problems), problems


def test_the_demo_report_renders_in_chromium(browser, tmp_path):
    """The report `ppxgb demo` writes, from the real run: all of it loads and shows."""
    from ppxgb.app.cli import main

    out = tmp_path / "demo.html"
    assert main(["demo", "--out", str(out), "--queries", "10"]) == 0
    problems, seen = page_problems(browser, out)
    assert problems == [], problems
    figures = browser.execute_script("return Array.from(document.images).map(i => i.dataset.figure)")
    assert {"roc", "auc-by-hospital", "calibration", "importance", "timings"} <= set(figures), figures
    text = browser.find_element("tag name", "body").text
    for needle in ("Library versions", "max_depth", "disease", "DeLong", "sensitivity at 0.5",
                   "kernel warm-up before timing"):
        assert needle in text, needle
    assert browser.find_element("id", "auc-ci").is_displayed()
