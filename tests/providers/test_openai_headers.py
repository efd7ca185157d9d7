"""The upstream answer's headers passed on to the client (pure)."""

import httpx
import pytest

from gateway.providers.openai import FORWARDED_RESPONSE_HEADERS, forwarded_headers


@pytest.mark.parametrize(
    "headers",
    [
        [("Server", "nginx"), ("Content-Type", "application/json"), ("Content-Length", "3")],
        [("content-type", "a"), ("Content-Type", "b"), ("CONTENT-DISPOSITION", b"f=\xe9")],
        [("Content-Disposition", "attachment"), ("Content-Type", "audio/mpeg")],
        [("x-other", "y")],
    ],
)
def test_forwarded_headers_are_what_httpx_headers_give(headers):
    response = httpx.Response(200, headers=headers)
    expected = {
        name: response.headers[name]
        for name in FORWARDED_RESPONSE_HEADERS
        if name in response.headers
    }
    forwarded = forwarded_headers(response)
    assert forwarded == expected and list(forwarded) == list(expected)
