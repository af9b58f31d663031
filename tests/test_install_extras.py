"""A training party installs only the base dependencies.

The web stack (fastapi, uvicorn, sqlalchemy: the `serve` extra) and matplotlib (the
`report` extra) must not be imported by training, by the inference Server and Client,
or by the Proxy class; each check runs in a fresh interpreter, since this test
process has imported them already.  Where an extra is needed and missing, the error
names the pip command.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("fastapi", "uvicorn", "sqlalchemy", "starlette", "pydantic", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    probe = textwrap.dedent(f"""
        import sys
        {code}
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return [m for m in run.stdout.strip().split(",") if m]


# importing training compiles or loads numba kernels in a fresh interpreter: 4-7 s each
@pytest.mark.parametrize("code", [
    pytest.param("import ppxgb.training", marks=pytest.mark.slow),
    pytest.param("from ppxgb.training.horizontal import run_party, run_server, run_coordinator",
                 marks=pytest.mark.slow),
    pytest.param("from ppxgb.training.vertical import run_feature_holder, run_label_holder, run_dealer",
                 marks=pytest.mark.slow),
    "from ppxgb.inference import Client, Server",
    "from ppxgb.proxy import Proxy",
    "import ppxgb.proxy.service",
    "import ppxgb.app.deploy",
])
def test_no_web_stack_or_plotting_on_import(code):
    assert _loaded_after(code) == []


def test_the_extras_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for name in ("fastapi", "uvicorn", "sqlalchemy", "matplotlib"):
        assert name not in base, name
    assert {d.split(">")[0] for d in extras["serve"]} == {"fastapi", "uvicorn", "sqlalchemy"}
    assert {d.split(">")[0] for d in extras["report"]} == {"matplotlib"}
    assert any("serve" in d and "report" in d for d in extras["test"])


def test_a_missing_extra_names_the_pip_command():
    # a stand-in module that fails to import, as fastapi does when `serve` is not installed
    code = textwrap.dedent("""
        import sys
        sys.modules["fastapi"] = None
        try:
            import ppxgb.inference.app
        except ImportError as exc:
            from ppxgb.errors import PPXGBError
            assert isinstance(exc, PPXGBError)
            print(exc)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "pip install 'ppxgb[serve]'" in run.stdout and "fastapi" in run.stdout


def test_the_report_without_matplotlib_names_the_pip_command():
    """The report's DP figure module draws with matplotlib too: it must not be imported
    before the report's own check (it was, and a raw ModuleNotFoundError came out)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["matplotlib"] = None
        try:
            import ppxgb.app.report
        except ImportError as exc:
            from ppxgb.errors import PPXGBError
            assert isinstance(exc, PPXGBError), type(exc)
            print(exc)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "pip install 'ppxgb[report]'" in run.stdout
