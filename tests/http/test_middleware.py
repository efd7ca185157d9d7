"""What runs on the hot path: middleware given to the app sees every request, proxied or routed."""

from __future__ import annotations

import httpx
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send


class Recorder:
    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def test_middleware_sees_the_fast_lane_and_the_routed_requests(start_gateway):
    given: list[str] = []
    gw = start_gateway(middleware=[Middleware(Recorder, seen=given)])
    headers = {"authorization": f"Bearer {gw.key()}"}
    chat = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(gw.base_url + "/chat/completions", json=chat, headers=headers).is_success
    assert httpx.post(gw.base_url + "/no/such/path", json=chat, headers=headers).status_code == 404
    assert httpx.get(gw.url + "/healthz").is_success
    assert httpx.get(gw.base_url + "/models", headers=headers).is_success
    assert given == [
        "POST /v1/chat/completions",
        "POST /v1/no/such/path",
        "GET /healthz",
        "GET /v1/models",
    ]


def test_middleware_added_later_joins_the_outer_list(start_gateway):
    from gateway.app import create_app
    from tests.support import ThreadedServer

    gw = start_gateway()
    seen: list[str] = []
    app = create_app(gw.gateway.config, gw.gateway.runtime)
    app.add_middleware(Recorder, seen=seen)
    server = ThreadedServer(app).start()
    try:
        key = {"authorization": f"Bearer {gw.key()}"}
        chat = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(server.url + "/v1/chat/completions", json=chat, headers=key).is_success
        assert httpx.get(server.url + "/healthz").is_success
    finally:
        server.stop()
    assert seen == ["POST /v1/chat/completions", "GET /healthz"]


def test_uvicorn_takes_the_app_for_an_asgi_3_app(start_gateway):
    import uvicorn

    from gateway.app import create_app

    gw = start_gateway()
    config = uvicorn.Config(create_app(gw.gateway.config, gw.gateway.runtime), log_config=None)
    config.load()
    assert config.interface == "asgi3"
