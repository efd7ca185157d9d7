"""A request's target read into the scope's path, raw path and query string, as uvicorn reads it.

uvicorn parses the target of every request (``httptools.parse_url``, an object of seven fields)
and decodes its path. The reading is a pure function of the target's bytes, and the proxied
requests name a handful of targets: those without a query are remembered (a bounded number of
short ones) and read again from a dict.
"""

from __future__ import annotations

import urllib.parse

import httptools

Target = tuple[str, bytes, bytes]  # (path, raw_path, query_string)

_KNOWN: dict[bytes, Target] = {}
_KNOWN_MAX = 1024
_KEPT_BELOW = 256  # bytes of a target remembered


def read_target(url: bytes) -> Target:
    """The path (percent-decoded), raw path and query string of ``url``; raises as uvicorn's
    reading does for a target it cannot read."""
    known = _KNOWN.get(url)
    if known is not None:
        return known
    parsed = httptools.parse_url(url)
    raw_path: bytes = parsed.path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    query: bytes | None = parsed.query
    target = (path, raw_path, query or b"")
    if query is None and len(url) < _KEPT_BELOW and len(_KNOWN) < _KNOWN_MAX:
        _KNOWN[url] = target
    return target
