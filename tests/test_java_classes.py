"""The Java class registry (deepimagej.imagej.java_classes): every entry resolves, and it is the only one.

scyjava's ``JavaClasses`` turns a class that is not found into ``None``, so a misspelt name in
the registry would only show as an ``AttributeError`` on ``None`` in a user's session: here every
entry is resolved in the started JVM instead. The second test keeps the registry the one place
that names Java classes: no ``JClass("...")``/``jimport("...")`` (nor a Java interface named by
a string in ``JImplements``/``JProxy``) in the package, the tests, the benchmarks or the scripts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REGISTRY = REPO / "python" / "deepimagej" / "imagej" / "java_classes.py"
#: calls that look a Java class up by its name
LOOKUPS = {"JClass", "jimport"}
#: calls that may take a Java class or its name: only the class (from the registry) is allowed
TAKES_A_CLASS = {"JImplements", "JProxy"}


def _registry_entries() -> dict[str, str]:
    """Attribute -> Java class name, read from the registry's source (no JVM needed)."""
    entries = {}
    for node in ast.walk(ast.parse(REGISTRY.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and any(
            ast.unparse(d) == "JavaClasses.java_import" for d in node.decorator_list
        ):
            (ret,) = [s for s in node.body if isinstance(s, ast.Return)]
            assert isinstance(ret.value, ast.Constant) and isinstance(ret.value.value, str), node.name
            entries[node.name] = ret.value.value
    return entries


def test_every_registered_class_resolves_in_the_started_jvm(ij):
    from deepimagej.imagej.java_classes import DeepImageJClasses, jc

    entries = _registry_entries()
    properties = {name for name, value in vars(DeepImageJClasses).items() if isinstance(value, property)}
    assert set(entries) == properties and len(entries) >= 30
    for attr, java_name in entries.items():
        cls = getattr(jc, attr)
        assert cls is not None, f"jc.{attr}: Java class {java_name} not found"
        assert str(cls.class_.getName()) == java_name
        assert str(cls.class_.getSimpleName()) == attr  # jc.X is the class X, nothing renamed
    assert jc.Pixels is jc.Pixels  # scyjava caches each class


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _lookups_by_name(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module in ("jpype", "scyjava"):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in LOOKUPS]
        elif isinstance(node, ast.Call):
            name = _called_name(node)
            by_string = bool(node.args) and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))
            if name in LOOKUPS or (name in TAKES_A_CLASS and by_string):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return sorted(found, key=lambda f: int(f.split()[1].rstrip(":")))


@pytest.mark.parametrize("folder", ["python", "tests", "benchmarks", "scripts"])
def test_java_classes_are_named_only_in_the_registry(folder):
    offenders = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        if path == REGISTRY:
            continue
        found = _lookups_by_name(path)
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert offenders == {}, "use deepimagej.imagej.java_classes.jc (add the class there):\n" + "\n".join(
        f"{p}: {line}" for p, lines in offenders.items() for line in lines
    )


def test_the_check_finds_lookups_by_name(tmp_path):
    """The AST check above is not blind: each way of naming a class by a string is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from jpype import JClass, JImplements, JProxy\n"
        "import scyjava\n"
        'a = JClass("ij.IJ")\n'
        'b = scyjava.jimport("ij.ImagePlus")\n'
        'c = JProxy("java.lang.Runnable", {})\n'
        '@JImplements("deepimagej.ij.CommandHandler")\n'
        "class H: pass\n"
        "d = JProxy(jc.Runnable, {})\n",  # the registry's class: fine
        encoding="utf-8",
    )
    found = _lookups_by_name(sample)
    assert [f.split(":")[0] for f in found] == ["line 1", "line 3", "line 4", "line 5", "line 6"], found
