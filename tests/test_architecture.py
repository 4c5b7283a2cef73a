"""The package's shape: no import cycle, layers that only import downwards, Dagster only at the wiring.

Imports are read from the source (``ast``), function-local ones included: a local import hides a
cycle from Python's import machinery but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Installed package name -> folder (pyproject's package-dir: the design card's top-level folders).
ROOTS = {
    "dynpose": REPO / "dynpose",
    "dynpose.assets": REPO / "assets",
    "dynpose.resources": REPO / "resources",
    "dynpose.sensors": REPO / "sensors",
}
# Lower layers never import higher ones; the command line and the benchmark driver sit on top.
LAYERS = [
    "dynpose.storage",
    "dynpose.domain",
    "dynpose.evaluation",
    ("dynpose.graph", "dynpose.assets", "dynpose.resources", "dynpose.sensors", "dynpose.export"),
]


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for pkg, root in roots.items():
        for path in root.rglob("*.py"):
            parts = [*pkg.split("."), *path.relative_to(root).with_suffix("").parts]
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(roots: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (parents of itself excluded)."""
    mods = modules(roots)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs + ([base] if len(subs) < len(node.names) else [])
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        for prefix in (names,) if isinstance(names, str) else names:
            if module == prefix or module.startswith(prefix + "."):
                return rank
    return len(LAYERS)  # dynpose.cli, dynpose.benchmarks


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph(ROOTS)) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    assert cycles(import_graph({"pkg": pkg})) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_layers_only_import_downwards():
    edges = import_graph(ROOTS)
    upward = [f"{m} -> {t}" for m, targets in edges.items() for t in targets if layer(t) > layer(m)]
    assert not upward, upward


def test_the_algorithms_do_not_import_the_lake():
    """annotate/, filters/ and tracksto4d/ are frames in, arrays out: no storage, catalog, evaluation or graph."""
    edges = import_graph(ROOTS)
    banned = ("dynpose.storage", "dynpose.domain.catalog", "dynpose.evaluation", "dynpose.graph")
    offenders = [
        f"{m} -> {t}"
        for m, ts in edges.items()
        if m.startswith(("dynpose.domain.annotate", "dynpose.domain.filters", "dynpose.domain.tracksto4d"))
        for t in ts
        if t.startswith(banned)
    ]
    assert not offenders, offenders


def test_library_modules_do_not_import_dagster():
    """Pure computation stays testable without Dagster: only the wiring modules may import it."""
    wiring = {"dynpose.graph.definitions", "dynpose.graph.orchestrate", "dynpose.cli"}
    offenders = []
    for name, path in modules({"dynpose": REPO / "dynpose"}).items():
        if name in wiring:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(m.split(".")[0] in ("dagster", "dagster_webserver") for m in mods):
                offenders.append(name)
    assert not offenders, offenders


def test_no_string_is_a_statement_of_its_own():
    """A string literal on a line of its own outside a docstring is an implicit concatenation that lost
    its parentheses: half a message that Python silently drops."""
    stray = []
    for roots in ROOTS.values():
        for path in roots.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                body = getattr(node, "body", None)
                for i, st in enumerate(body if isinstance(body, list) else []):
                    docstring = i == 0 and isinstance(
                        node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                    )
                    literal = isinstance(st, ast.Expr) and isinstance(st.value, (ast.Constant, ast.JoinedStr))
                    if literal and not docstring and not isinstance(getattr(st.value, "value", ""), type(Ellipsis)):
                        stray.append(f"{path.relative_to(REPO)}:{st.lineno}")
    assert not stray, stray
