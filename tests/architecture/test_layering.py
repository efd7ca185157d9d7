"""The rooms of gateway/ and their order: a room imports only rooms below it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

# Bottom to top. Rooms on one line share a level and may not import each other.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("wire", "errors", "secret", "extras", "media"),
    ("config",),
    ("store",),
    ("metering", "providers"),
    ("usage", "protocols"),
    ("control", "ledger"),
    ("proxy",),
    ("observe", "batches"),
    ("http",),
    ("ui",),
    ("parts",),
    ("app",),
    ("serving",),
    ("cli", "__init__"),
    ("__main__",),
)
LEVEL_OF = {room: level for level, rooms in enumerate(LEVELS) for room in rooms}


def room_of(module: str) -> str:
    """``gateway.proxy.attempts`` → ``proxy``; ``gateway.app`` → ``app``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every gateway module ``source`` imports, lazily imported ones too."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gateway"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("gateway"):
                if name in ("gateway", "gateway.__init__"):
                    for alias in node.names:  # `from gateway import x` names a room
                        yield node.lineno, f"gateway.{alias.name}"
                else:
                    yield node.lineno, name


def violations(sources: dict[str, str]) -> list[str]:
    """Every import (module name → source) that goes sideways or up between rooms."""
    found = []
    for module, source in sorted(sources.items()):
        room = room_of(module)
        for line, target in imported_modules(source, module):
            other = room_of(target)
            if other == room:
                continue
            if other not in LEVEL_OF or room not in LEVEL_OF:
                found.append(f"{module}:{line}: {target} is in no known room")
            elif LEVEL_OF[other] >= LEVEL_OF[room]:
                found.append(f"{module}:{line}: {room} may not import {other} ({target})")
    return found


def package_sources() -> dict[str, str]:
    sources = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts)
        sources[name.removesuffix(".__init__") if path.name == "__init__.py" else name] = (
            path.read_text()
        )
    return sources


def test_every_module_is_in_a_room():
    for module in package_sources():
        assert room_of(module) in LEVEL_OF, f"{module} is in no room of LEVELS"


def test_rooms_import_only_rooms_below_them():
    assert violations(package_sources()) == []


def test_an_upward_or_sideways_import_is_caught():
    sources = package_sources()
    sources["gateway.config.model"] += "\nfrom gateway.proxy.routing import Endpoint\n"
    sources["gateway.metering.meter"] += "\ndef f():\n    import gateway.providers.openai\n"
    sources["gateway.wire.pool"] += "\nfrom gateway import errors\n"
    assert violations(sources) == [
        "gateway.config.model:"
        f"{sources['gateway.config.model'].count(chr(10))}: config may not import proxy "
        "(gateway.proxy.routing)",
        f"gateway.metering.meter:{sources['gateway.metering.meter'].count(chr(10))}: "
        "metering may not import providers (gateway.providers.openai)",
        f"gateway.wire.pool:{sources['gateway.wire.pool'].count(chr(10))}: "
        "wire may not import errors (gateway.errors)",
    ]


def test_every_module_names_its_job_in_the_first_line_of_its_docstring():
    for module, source in package_sources().items():
        docstring = ast.get_docstring(ast.parse(source))
        assert docstring, f"{module} has no docstring"
        first = docstring.splitlines()[0]
        assert first.endswith(".") and 15 <= len(first) <= 110, f"{module}: {first!r}"
        assert "PLACEHOLDER" not in first, module
