"""Admin API input: a JSON object with known fields, each checked; OpenAI-shaped 400s."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import orjson

from gateway.errors import InvalidRequest


def json_object(
    raw: bytes, allowed: Collection[str], required: Collection[str] = ()
) -> dict[str, Any]:
    """The body as a JSON object whose keys are all in ``allowed`` and include ``required``."""
    try:
        document = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be a JSON object.") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{unknown[0]}'; expected keys from: {', '.join(sorted(allowed))}.",
            param=unknown[0],
        )
    for name in required:
        if document.get(name) is None:
            raise InvalidRequest(f"'{name}' is required.", param=name)
    return document


def text(document: dict[str, Any], name: str, *, most: int = 200) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        raise InvalidRequest(
            f"'{name}' must be a non-empty string of at most {most} characters.", param=name
        )
    return value


def whole(document: dict[str, Any], name: str, *, least: int = 0, most: int = 10**12) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise InvalidRequest(
            f"'{name}' must be a whole number from {least} to {most:.0e}, or null.", param=name
        )
    return value


def number(document: dict[str, Any], name: str, *, most: float = 10**6) -> float | None:
    value = document.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= most
    ):
        raise InvalidRequest(
            f"'{name}' must be a number from 0 to {most:.0e}, or null.", param=name
        )
    return float(value)


def strings(document: dict[str, Any], name: str, *, most: int = 1000) -> list[str] | None:
    value = document.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > most
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise InvalidRequest(f"'{name}' must be a list of non-empty strings, or null.", param=name)
    return list(dict.fromkeys(value))


def small_object(
    document: dict[str, Any], name: str, *, most_bytes: int = 4096
) -> dict[str, Any] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or len(orjson.dumps(value)) > most_bytes:
        raise InvalidRequest(
            f"'{name}' must be a JSON object of at most {most_bytes} bytes.", param=name
        )
    return value


def query_int(
    value: str | None, name: str, default: int, *, least: int = 1, most: int = 1000
) -> int:
    if value is None:
        return default
    if not value.isdecimal() or not least <= int(value) <= most:
        raise InvalidRequest(f"'{name}' must be a whole number from {least} to {most}.", param=name)
    return int(value)
