"""The docs match the code: the README's parameter table lists exactly what training accepts."""

from __future__ import annotations

import re
from pathlib import Path

from ppxgb.training.params import ALIASES, SUPPORTED

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _table_rows() -> dict[str, set[str]]:
    section = README.split("## Supported training parameters", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            names = re.findall(r"`([^`]+)`", line.split("|")[1])
            rows[names[0]] = set(names[1:])
    return rows


def test_parameter_table_lists_every_supported_parameter_and_its_aliases():
    rows = _table_rows()
    assert set(rows) == set(SUPPORTED)
    for alias, name in ALIASES.items():
        assert alias in rows[name], f"README: alias {alias!r} of {name!r} missing"
