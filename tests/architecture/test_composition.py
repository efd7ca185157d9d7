"""The store and metering rooms compose their parts: no class inherits from another of ours.

Splitting a class across files by inheritance (``Meter(MeterReads, MeterStatus)``, a chain of
Redis mixins declaring the child's private fields) made every reader walk the chain; the parts
are held instead. Errors may still specialise errors.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
ROOMS = ("gateway/store/", "gateway/metering/")


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


def inherited(trees: dict[str, ast.Module]) -> list[str]:
    """``file: Class(Base)`` for each class of the rooms built on a class of ours (errors aside)."""
    ours = {node.name for tree in trees.values() for node in class_nodes(tree)}
    found = []
    for path, tree in trees.items():
        if not path.startswith(ROOMS):
            continue
        for node in class_nodes(tree):
            for base in map(base_name, node.bases):
                if base in ours and not base.endswith("Error"):
                    found.append(f"{path}: {node.name}({base})")
    return found


def test_no_class_of_store_or_metering_inherits_from_one_of_ours() -> None:
    assert inherited(package_trees()) == []


def test_a_mixin_chain_is_caught() -> None:
    trees = package_trees()
    trees["gateway/metering/reads.py"] = ast.parse("class Reads:\n    pass\n")
    trees["gateway/metering/meter.py"] = ast.parse("class Meter(reads.Reads):\n    pass\n")
    assert inherited(trees) == ["gateway/metering/meter.py: Meter(Reads)"]
