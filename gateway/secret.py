"""A string wrapper that never shows its value by accident."""

from __future__ import annotations

import hashlib


class Secret:
    """Holds a credential; ``repr``/``str`` are redacted, ``reveal()`` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
