"""A request's target is read as uvicorn reads it, whether remembered or not."""

from __future__ import annotations

import urllib.parse

import httptools
import pytest

from gateway.http import request_target
from gateway.http.request_target import read_target

TARGETS = [
    b"/v1/chat/completions",
    b"/v1/models?limit=2&x=%20y",
    b"/v1/models?",
    b"/v1/./chat/%2e%2e/completions%20x",
    b"/v1/a#frag",
    b"http://example.com/v1/models?a=1",
    b"*",
    b"/caf%C3%A9",
]


def uvicorns(url: bytes) -> tuple[str, bytes, bytes]:
    """What uvicorn's ``on_headers_complete`` makes of a target."""
    parsed = httptools.parse_url(url)
    raw_path = parsed.path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    return path, raw_path, parsed.query or b""


@pytest.mark.parametrize("url", TARGETS)
def test_a_target_reads_as_uvicorn_reads_it_each_time(url: bytes) -> None:
    assert read_target(url) == uvicorns(url)
    assert read_target(bytes(url)) == uvicorns(url)  # a new object: as the parser gives it


def test_a_target_uvicorn_cannot_read_raises_each_time() -> None:
    for url in (b"", b"/a b", "/caf\xe9".encode("latin-1")) * 2:
        with pytest.raises(httptools.HttpParserInvalidURLError):
            read_target(url)


def test_only_short_targets_without_a_query_are_kept_and_a_bounded_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known: dict[bytes, tuple[str, bytes, bytes]] = {}
    monkeypatch.setattr(request_target, "_KNOWN", known)
    monkeypatch.setattr(request_target, "_KNOWN_MAX", 3)
    read_target(b"/v1/models?limit=2")
    read_target(b"/v1/" + b"x" * 300)
    assert known == {}
    for number in range(5):
        assert read_target(b"/v1/%d" % number) == (f"/v1/{number}", b"/v1/%d" % number, b"")
    assert list(known) == [b"/v1/0", b"/v1/1", b"/v1/2"]
