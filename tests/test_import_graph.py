"""The package's import graph: dependencies point one way (../shared/DESIGN.md, issue 16).

Every ``import deepimagej...`` counts, at module level and inside functions (an import inside a
function is still a dependency; only ``if TYPE_CHECKING:`` blocks are left out). The package
root is left out as a target: ``import deepimagej`` from any module is the public facade.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "deepimagej"
#: what bundle/ (model as data) may import: the bottom layer only
BOTTOM = (
    "deepimagej.errors",
    "deepimagej.io",
    "deepimagej.axes",
    "deepimagej.paths",
    "deepimagej.archive",
    "deepimagej.outputs",
    "deepimagej.checksums",
    "deepimagej.layout",
    "deepimagej.bundle",
)


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("deepimagej", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, imported name or None) of every absolute deepimagej import outside TYPE_CHECKING blocks."""
    found: list[tuple[str, str | None]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("deepimagej")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("deepimagej")
        ):
            found += [(node.module, a.name) for a in node.names]
        stack.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    mods = _modules()

    def owner(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[tuple[str, str]] = []
    for module, path in mods.items():
        for target, name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            full = f"{target}.{name}" if name else target
            dep = owner(full)
            if dep != "deepimagej" and dep != module:
                edges[module].add(dep)
            if name and name.startswith("_") and not name.startswith("__") and f"{target}.{name}" not in mods:
                private.append((module, f"{target}.{name}"))
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_bundle_imports_nothing_above_it():
    edges, _ = _graph()
    upward = sorted(
        (m, d)
        for m, deps in edges.items()
        if m.startswith("deepimagej.bundle")
        for d in deps
        if not d.startswith(BOTTOM)
    )
    assert upward == [], "bundle/ is model-as-data: it may not import " + ", ".join(
        f"{d} ({m})" for m, d in upward
    )


def test_no_private_names_imported_across_modules():
    _, private = _graph()
    assert private == []


def test_the_check_sees_a_cycle(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
