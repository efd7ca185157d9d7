"""A YAML walker that collects every problem with its file and key path.

Parsing never stops at the first error: `gateway check` prints them all, e.g.
``tiers.yaml: tiers.free.routes.text[1]: unknown model 'mixtral-8x7b'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Node:
    """A value in a config file, with the path that leads to it."""

    def __init__(self, file: str, path: str, value: Any, problems: list[str]) -> None:
        self.file = file
        self.path = path
        self.value = value
        self.problems = problems

    def child(self, key: str | int, value: Any) -> Node:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return Node(self.file, path, value, self.problems)

    def fail(self, reason: str) -> None:
        where = self.path or "(top level)"
        self.problems.append(f"{self.file}: {where}: {reason}")

    def mapping(
        self, allowed: set[str] | None = None, required: frozenset[str] | set[str] = frozenset()
    ) -> bool:
        """Check this node is a mapping with only ``allowed`` keys and all ``required`` ones."""
        if not isinstance(self.value, dict):
            self.fail(f"expected a mapping, got {_kind(self.value)}")
            return False
        for key in self.value:
            if not isinstance(key, str):
                self.fail(f"keys must be strings, got {key!r}")
            elif allowed is not None and key not in allowed:
                self.child(key, None).fail(f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(self.value)):
            self.child(key, None).fail("required key is missing")
        return True

    def items(self) -> Iterator[tuple[str, Node]]:
        if isinstance(self.value, dict):
            for key, value in self.value.items():
                if isinstance(key, str):
                    yield key, self.child(key, value)

    def elements(self) -> Iterator[Node]:
        if not isinstance(self.value, list):
            self.fail(f"expected a list, got {_kind(self.value)}")
            return
        for index, value in enumerate(self.value):
            yield self.child(index, value)

    def get(self, key: str) -> Node:
        value = self.value.get(key) if isinstance(self.value, dict) else None
        return self.child(key, value)

    def present(self) -> bool:
        return self.value is not None

    def string(self, default: str | None = None) -> str | None:
        if self.value is None:
            return default
        if not isinstance(self.value, str) or not self.value:
            self.fail(f"expected a non-empty string, got {_kind(self.value)}")
            return default
        return self.value

    def number(self, default: float | None = None, *, minimum: float = 0) -> float | None:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.fail(f"expected a number, got {_kind(self.value)}")
            return default
        if self.value < minimum:
            self.fail(f"must be >= {minimum}, got {self.value}")
            return default
        return float(self.value)

    def integer(self, default: int | None = None, *, minimum: int = 0) -> int | None:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"expected an integer, got {_kind(self.value)}")
            return default
        if self.value < minimum:
            self.fail(f"must be >= {minimum}, got {self.value}")
            return default
        return self.value

    def boolean(self, default: bool) -> bool:
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_kind(self.value)}")
            return default
        return self.value

    def choice(self, options: tuple[str, ...], default: str) -> str:
        value = self.string(default)
        if value not in options:
            self.fail(f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return value or default


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
