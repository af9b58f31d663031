"""The README's quickstart runs as written and its promise holds."""

import re
from pathlib import Path

import numpy as np
import pytest
import xgboost

pytestmark = pytest.mark.slow   # subprocesses or real services: seconds per test on 2 cores


def test_quickstart_code_runs_and_scores_match():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md quickstart", "exec"), ns)
    expected = ns["booster"].predict(xgboost.DMatrix(ns["X"]))
    np.testing.assert_allclose(ns["scores"], expected, rtol=1e-5, atol=1e-6)
    assert ns["vbooster"].num_boosted_rounds() == 20
