"""The rooms compose their parts: no class inherits from another of ours.

Splitting a class across files by inheritance (``Meter(MeterReads, MeterStatus)``, a chain of
Redis mixins declaring the child's private fields) made every reader walk the chain; the parts
are held instead. Errors may still specialise errors, a protocol may extend a protocol, and a
base from outside the gateway (uvicorn's ``Config``) is not ours; the few specialisations left
are listed in ``ALLOWED`` with why.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
# file: Class(Base) → why it may inherit
ALLOWED = {
    "gateway/extras.py: Tracing(Extra)": "the one extra switched on by either of two variables "
    "(and off by OTel's own): it overrides the public missing and turned_on, nothing private",
}
EXCEPTION_ROOTS = {"BaseException", "Exception"}


@functools.cache
def parsed() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def package_trees() -> dict[str, ast.Module]:
    """Every module of gateway/, parsed once per session (a copy: tests may add to it)."""
    return dict(parsed())


def class_nodes(tree: ast.Module) -> list[ast.ClassDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]


def base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    if isinstance(base, ast.Subscript):
        return base_name(base.value)
    return base.id if isinstance(base, ast.Name) else ""


def foreign_names(tree: ast.Module) -> set[str]:
    """Names a module binds from outside the gateway (``import uvicorn``, ``from x import C``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {
                alias.asname or alias.name.split(".")[0]
                for alias in node.names
                if not alias.name.startswith("gateway")
            }
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("gateway"):
            found |= {alias.asname or alias.name for alias in node.names if not node.level}
    return found


def root_name(base: ast.expr) -> str:
    """``uvicorn.Config`` → ``uvicorn``; ``Base[T]`` → ``Base``."""
    while isinstance(base, ast.Attribute | ast.Subscript):
        base = base.value
    return base.id if isinstance(base, ast.Name) else ""


def exception_classes(trees: dict[str, ast.Module]) -> set[str]:
    """Our classes that are exceptions: built on an exception, ours or Python's."""
    bases = {
        node.name: {base_name(base) for base in node.bases}
        for tree in trees.values()
        for node in class_nodes(tree)
    }
    found: set[str] = set()
    while True:
        more = {
            name
            for name, names in bases.items()
            if name not in found
            and any(b in found or b in EXCEPTION_ROOTS or b.endswith("Error") for b in names)
        }
        if not more:
            return found
        found |= more


def inherited(trees: dict[str, ast.Module]) -> list[str]:
    """``file: Class(Base)`` for each class built on a class of ours (errors, protocols aside)."""
    ours = {node.name for tree in trees.values() for node in class_nodes(tree)}
    errors = exception_classes(trees)
    found = []
    for path, tree in trees.items():
        foreign = foreign_names(tree)
        for node in class_nodes(tree):
            if "Protocol" in map(base_name, node.bases):
                continue
            for base in node.bases:
                name = base_name(base)
                if name in ours and name not in errors and root_name(base) not in foreign:
                    found.append(f"{path}: {node.name}({name})")
    return found


def test_no_class_inherits_from_one_of_ours() -> None:
    assert sorted(set(inherited(package_trees())) - set(ALLOWED)) == []


def test_every_allowance_is_still_needed() -> None:
    assert set(ALLOWED) <= set(inherited(package_trees()))


def test_a_mixin_chain_is_caught() -> None:
    trees = package_trees()
    trees["gateway/metering/reads.py"] = ast.parse("class Reads:\n    pass\n")
    trees["gateway/metering/meter.py"] = ast.parse("class Meter(reads.Reads):\n    pass\n")
    trees["gateway/usage/history.py"] = ast.parse("class History(Meter):\n    pass\n")
    assert set(inherited(trees)) - set(ALLOWED) == {
        "gateway/metering/meter.py: Meter(Reads)",
        "gateway/usage/history.py: History(Meter)",
    }
