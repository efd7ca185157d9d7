"""The proxied request's indexed headers answer every lookup as Starlette's ``Headers`` does."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers
from starlette.types import Message

from gateway.http.indexed_headers import IndexedHeaders, ProxiedRequest

RAW = [
    (b"host", b"gateway"),
    (b"authorization", b"Bearer sk-one"),
    (b"x-gateway-tags", b"a,b"),
    (b"x-gateway-tags", b"c"),  # repeated: the first one wins, as in Starlette
    (b"x-odd", "caf\xe9".encode("latin-1")),
    ("x-caf\xe9".encode("latin-1"), b"latin-1 name"),
    ("x-\xc0".encode("latin-1"), b"upper-case latin-1 name"),
]
SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": RAW}


@pytest.mark.parametrize(
    "name",
    [
        "host",
        "Authorization",
        "X-GATEWAY-TAGS",
        "x-odd",
        "x-request-id",
        "api-key",
        "x-caf\xe9",
        "X-CAF\xc9",
        "x-\xc0",
        "x-\xe0",
        "",
    ],
)
def test_lookups_match_starlettes(name: str) -> None:
    ours, theirs = IndexedHeaders(SCOPE), Headers(scope=SCOPE)
    assert ours.get(name) == theirs.get(name)
    assert ours.get(name, "default") == theirs.get(name, "default")
    assert (name in ours) == (name in theirs)
    if name in theirs:
        assert ours[name] == theirs[name]
    else:
        with pytest.raises(KeyError):
            ours[name]


def test_a_name_outside_latin_1_is_missing() -> None:
    ours = IndexedHeaders(SCOPE)  # (Starlette's Headers raises UnicodeEncodeError)
    assert ours.get("x-\u20ac") is None
    assert ours.get("x-\u20ac", "default") == "default"
    assert "x-\u20ac" not in ours
    with pytest.raises(KeyError):
        ours["x-\u20ac"]


def test_everything_else_is_starlettes() -> None:
    ours, theirs = IndexedHeaders(SCOPE), Headers(scope=SCOPE)
    assert ours.raw == theirs.raw
    assert ours.getlist("x-gateway-tags") == ["a,b", "c"]
    assert list(ours.items()) == list(theirs.items())
    assert 42 not in ours


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_a_proxied_request_reads_its_headers_once_indexed() -> None:
    request = ProxiedRequest(SCOPE, receive)
    assert isinstance(request.headers, IndexedHeaders)
    assert request.headers is request.headers
    assert request.headers.get("authorization") == "Bearer sk-one"
