"""Request paths below /v1 reduced to one canonical spelling before any routing decision.

uvicorn hands the app the percent-decoded path, so ``%2e``, ``%2f`` and ``%3F`` have already
become ``.``, ``/`` and ``?`` here. Dot segments are resolved, empty segments dropped and a
trailing slash removed; a path that climbs out of /v1 or holds a character that could change
the upstream URL's meaning (``?``, ``#``, ``%``, ``\\``, controls, spaces) is refused. What comes
out can be appended to an upstream's base URL and stays below it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.errors import InvalidRequest, NotFound

PREFIX = "/v1"
# Unreserved characters plus the sub-delimiters that cannot end a path or start a query.
_SAFE = re.compile(r"[A-Za-z0-9\-._~:@+,=/]*")


def canonical_path(path: str) -> str:
    """``/v1/./chat//completions/`` → ``/chat/completions`` (the part below /v1)."""
    if not _SAFE.fullmatch(path):
        raise InvalidRequest("The request path holds characters the gateway does not accept.")
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if len(segments) <= 1:
                raise NotFound("The request path leaves /v1.", code="unknown_url")
            segments.pop()
        else:
            segments.append(segment)
    if not segments or segments[0] != PREFIX[1:]:
        raise NotFound(f"Unknown path: {path}", code="unknown_url")
    return "/" + "/".join(segments[1:])


def match_pattern(patterns: Mapping[str, frozenset[str]], path: str) -> frozenset[str] | None:
    """The routes allowed on ``path`` by the first declared pattern it matches, or None.

    A pattern is a canonical path whose ``*`` segments match any one segment.
    """
    exact = patterns.get(path)
    if exact is not None:
        return exact
    parts = path.split("/")
    for pattern, allowed in patterns.items():
        wanted = pattern.split("/")
        if len(wanted) == len(parts) and all(
            w == "*" or w == p for w, p in zip(wanted, parts, strict=True)
        ):
            return allowed
    return None
