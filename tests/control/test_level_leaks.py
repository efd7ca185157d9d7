"""A team's counters after requests that end badly (the client gone mid-stream, the upstream
failing, a stream cut): nothing stays held, so ``max_parallel`` and the budget are whole again."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES, routes_doc

ADMIN = "env-admin-token-leaks-0123456789"
MODELS = {  # in route order: a failing model falls back to the ones after it
    "long": ("mock/words-200+slow-50", "long"),  # ten seconds of stream
    "waits": ("mock/slowfirst-0.8", "waits"),
    "fails": ("mock/plain-502", "fails"),
    "cut": ("mock/drop-2", "cut"),
}


@pytest.fixture
def gw(start_gateway: StartGateway, redis: RedisServer, upstream: MockUpstream) -> RunningGateway:
    models = routes_doc(upstream.base_url)["models"]
    for name, (model, _) in MODELS.items():
        models[name] = {"upstream": "mock", "model": model, "modality": "text"}
    tiers = {"free": {"routes": {**DEFAULT_ROUTES, "text": ["ok", *MODELS]}}}
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    return start_gateway(tiers, routes_extra={"models": models}, runtime=runtime)


def _call(gw: RunningGateway, method: str, path: str, token: str = ADMIN, **kw: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, gw.url + path, headers=headers, **{"timeout": 10, **kw})


def _team_key(gw: RunningGateway) -> str:
    assert _call(gw, "POST", "/v1/admin/orgs", json={"id": "acme"}).status_code == 201
    team = {"id": "ml", "org": "acme", "tier": "free", "members": ["ann"],
            "limits": {"max_parallel": 1, "requests": {"day": 100}}}  # fmt: skip
    assert _call(gw, "POST", "/v1/admin/teams", json=team).status_code == 201
    made = _call(gw, "POST", "/v1/admin/keys", json={"user": "ann", "tier": "free", "team": "ml"})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def _settled(gw: RunningGateway) -> dict[str, Any]:
    """The team's counters once nothing is in flight (or what they hold after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        usage: dict[str, Any] = _call(gw, "GET", "/v1/admin/teams/ml/usage").json()
        if usage["in_flight"] == 0 or time.monotonic() > deadline:
            return usage
        time.sleep(0.05)


def _chat(gw: RunningGateway, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return _call(gw, "POST", "/v1/chat/completions", key, json={**body, **extra})


def test_nothing_stays_held_after_requests_that_end_badly(gw: RunningGateway) -> None:
    key = _team_key(gw)
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
        json={"model": "long", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    ) as answer:  # fmt: skip
        assert answer.status_code == 200
        chunks = answer.iter_bytes()  # kept: dropping the iterator closes the stream
        next(chunks)
        busy = _chat(gw, key, "ok")  # the one parallel slot is held by the stream
        assert busy.status_code == 429, busy.text
        assert busy.headers["x-gateway-limit-window"] == "parallel"
    # the client is gone mid-stream: its slot comes back
    assert _settled(gw)["in_flight"] == 0
    assert _chat(gw, key, "fails").status_code == 502
    assert _settled(gw)["in_flight"] == 0
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
        json={"model": "cut", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    ) as answer:  # fmt: skip
        answer.read()
    usage = _settled(gw)
    assert usage["in_flight"] == 0
    with pytest.raises(httpx.ReadTimeout):  # the client leaves before the first byte
        _call(gw, "POST", "/v1/chat/completions", key, timeout=0.2,
              json={"model": "waits", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert _settled(gw)["in_flight"] == 0
    assert _chat(gw, key, "ok").status_code == 200
    usage = _settled(gw)
    # the refused and the failed requests are given back; the stream the client left, the
    # stream cut after some chunks (both delivered in part), the answer the upstream made for
    # the client that left before it (its cost was incurred) and the last one count
    assert usage["day"]["requests"] == 4, usage
