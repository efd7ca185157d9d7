"""A translation that takes out what the bridge refuses instead of failing on it.

``translate_dropping`` runs a translator over the client's body; each ``Refused`` field is
removed from (a copy of) the body and the translation run again, so the caller gets the chat
body, the body without the refused parts, and the refusals in the order they were met. The
caller decides: refuse by the first (the default), drop them and say so (a tier's
``unsupported_fields: drop``), or send the body as is to an upstream that speaks the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from gateway.errors import InvalidRequest
from gateway.protocols.fields import Refused

T = TypeVar("T")
MAX_DROPS = 64  # more refused parts than this: the first refusal stands
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def translate_dropping(
    translate: Callable[[dict[str, Any]], T], body: dict[str, Any], unknown_too: bool = False
) -> tuple[T, dict[str, Any], list[Refused]]:
    """(translation, body without the refused parts, refusals); an unknown field (unless
    ``unknown_too``), a refused part that cannot be located, or too many of them raise the
    first refusal."""
    refusals: list[Refused] = []
    copied = False
    while True:
        try:
            return translate(body), body, refusals
        except InvalidRequest as error:
            if not isinstance(error, Refused):
                # what is left once the refused parts are out is no request (an emptied
                # input): the first refusal is the answer
                raise (refusals[0] if refusals else error) from None
            refusal = error
            if (refusal.unknown and not unknown_too) or len(refusals) >= MAX_DROPS:
                raise (refusals[0] if refusals else refusal) from None
            if not copied:
                body, copied = orjson.loads(orjson.dumps(body)), True
            if not remove(body, refusal.field):
                raise (refusals[0] if refusals else refusal) from None
            refusals.append(refusal)


def remove(body: dict[str, Any], path: str) -> bool:
    """Take the part ``path`` names out of ``body``: ``reasoning`` the field, ``text.verbosity``
    a key, ``tools[2].type`` the element ``tools[2]`` (a property of a list element, however
    deep, names that element). False when the path does not lead anywhere."""
    steps: list[str | int] = [name if name else int(index) for name, index in _STEP.findall(path)]
    if not steps:
        return False
    while (
        len(steps) >= 2
        and isinstance(steps[-1], str)
        and any(isinstance(step, int) for step in steps)
    ):
        steps.pop()
    node: Any = body
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    last = steps[-1]
    if isinstance(last, int) and isinstance(node, list) and 0 <= last < len(node):
        del node[last]
        return True
    if isinstance(last, str) and isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False
