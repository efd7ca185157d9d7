"""Issue 10 #1 and #2: every spelling of a known endpoint gets its handling; nothing escapes /v1."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import orjson
import pytest

from tests.support import DEFAULT_ROUTES

TIERS = {
    "free": {
        "routes": DEFAULT_ROUTES,
        "max_tokens": 64,
        "quotas": {"text_generation": {"tokens_per_day": 5000, "tokens_per_request": 64}},
    }
}
CHAT = {"model": "text", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000}


@pytest.fixture
def gw(start_gateway):
    return start_gateway(TIERS)


def raw_post(gw, path: str, body: dict, key: str) -> tuple[int, dict]:
    """POST with the path sent byte for byte (httpx would resolve the dot segments itself)."""
    url = urlsplit(gw.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            orjson.dumps(body),
            {"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/./chat/completions",
        "/v1/%2e/chat/completions",
        "/v1/chat/completions/",
        "/v1//chat/completions",
        "/v1/chat/./completions",
        "/v1/models/../chat/completions",
    ],
)
def test_spellings_of_a_known_endpoint_are_clamped_and_reserved(gw, upstream, path):
    status, body = raw_post(gw, path, CHAT, gw.key())
    assert status == 200, body
    (seen,) = upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.json["max_tokens"] == 64  # clamped like the canonical spelling
    assert body["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../admin",
        "/v1/%2e%2e/admin",
        "/v1/..%2f..%2fx",
        "/v1/videos/../../admin/reset",
        "/v1/videos/generations%3Fadmin=1",
        "/v1/videos/generations%23x",
        "/v1/videos/generations%0d%0aX-Injected:%201",
        "/v1/videos%5cgenerations",
        "/v1/admin",
        "/v1/videoz",  # POST /v1/videos is the video jobs endpoint (issue 16)
    ],
)
def test_paths_outside_the_declared_passthroughs_never_reach_the_upstream(gw, upstream, path):
    status, body = raw_post(gw, path, {"model": "video", "prompt": "x"}, gw.key())
    assert 400 <= status < 500, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert upstream.requests == []


def test_declared_passthrough_is_forwarded_canonically(gw, upstream):
    status, body = raw_post(
        gw, "/v1/videos/./generations/", {"model": "video", "prompt": "x"}, gw.key()
    )
    assert status == 200, body
    assert [r.path for r in upstream.requests] == ["/v1/videos/generations"]


def test_passthrough_refuses_models_of_other_routes(gw, upstream):
    status, body = raw_post(gw, "/v1/videos/generations", {"model": "text"}, gw.key())
    assert status == 400 and body["error"]["param"] == "model"
    assert upstream.requests == []


def test_other_methods_on_known_endpoints_get_405_and_unknown_paths_404(gw):
    import httpx

    assert httpx.get(gw.base_url + "/chat/completions").status_code == 405
    assert httpx.get(gw.base_url + "/nothing-here").status_code == 404
