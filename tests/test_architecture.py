"""The layers stay visible: no import cycle, roles apart, the crypto layer at the bottom.

Read statically from the source folders that pyproject.toml maps into the package, so
lazy imports inside functions count too (a cycle hidden in a function is still a cycle).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 800
ROLES = ("ppxgb.training", "ppxgb.inference", "ppxgb.proxy")
APP = "ppxgb.app"


def _modules() -> dict[str, Path]:
    """Every module of the distribution: dotted name -> file."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out: dict[str, Path] = {}
    for package, folder in sorted(conf.items(), key=lambda kv: len(kv[0])):
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            out.setdefault(name, path)
    return out


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """The project modules one import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = []
    for alias in node.names:  # `from pkg import submodule` imports the submodule
        if f"{target}.{alias.name}" in MODULES:
            found.append(f"{target}.{alias.name}")
        elif target in MODULES:
            found.append(target)
    return sorted(set(found))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_resolve(name, is_package, node))
        edges.discard(name)
        graph[name] = edges
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> str:
    for prefix in (*ROLES, APP, "ppxgb.datasets", "ppxgb.crypto"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return "core"


def test_the_package_is_found():
    # the checks below would pass vacuously on an empty graph
    assert {"ppxgb.training.grower", "ppxgb.crypto.ope", "ppxgb.inference.server", "ppxgb.proxy.enroll"} <= set(GRAPH)
    assert "ppxgb.crypto.fixedpoint" in GRAPH["ppxgb.training.gradients"]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_cycle():
    # the mutant: a graph with a cycle hidden behind a third module must be reported
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("role", ROLES)
def test_roles_never_import_each_other_or_the_app_layer(role):
    bad = sorted((m, t) for m, targets in GRAPH.items() if _layer(m) == role for t in targets
                 if _layer(t) in set(ROLES) - {role} | {APP})
    assert bad == []


def test_core_imports_no_role_and_no_app():
    bad = sorted((m, t) for m, targets in GRAPH.items() if _layer(m) in ("core", "ppxgb.crypto")
                 for t in targets if _layer(t) in (*ROLES, APP, "ppxgb.datasets"))
    assert bad == []


def test_crypto_layer_is_the_lowest():
    allowed = {"ppxgb.errors"}
    bad = sorted((m, t) for m, targets in GRAPH.items() if _layer(m) == "ppxgb.crypto"
                 for t in targets if _layer(t) != "ppxgb.crypto" and t not in allowed)
    assert bad == []


def test_no_module_over_800_lines():
    files = list(MODULES.values()) + sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
