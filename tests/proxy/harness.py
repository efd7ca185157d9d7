"""A real proxy pipeline in process, against fakes of the outside only: the mock upstream's ASGI
app as the upstream transport (``httpx.ASGITransport``) and the in-memory store.

The parts are the ones the app builds (``gateway.parts.build_gateway``); a request is handed
to ``Pipeline.handle`` as the fast lane hands it, and a relayed answer is read to its end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.requests import Request

from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.parts import Gateway, build_gateway
from gateway.proxy.routing import KNOWN_ENDPOINTS
from tests.mock_upstream import MockUpstream, RecordedRequest
from tests.support import MOCK_KEY, build_config, routes_doc, tiers_doc

CLIENT_KEY = "sk-test-free-0123456789"
USER = "user-free"
ENDPOINTS = {endpoint.path: endpoint for endpoint in KNOWN_ENDPOINTS}


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    relayed: bool

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


class Proxy:
    """The pipeline of one gateway, and the mock upstream it forwards to."""

    def __init__(self, gateway: Gateway, upstream: MockUpstream) -> None:
        self.gateway = gateway
        self.upstream = upstream

    async def post(
        self,
        path: str,
        body: Any,
        *,
        key: str | None = CLIENT_KEY,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """POST ``body`` (JSON, or bytes as they are) to ``/v1{path}`` through the pipeline."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1" + path,
            "raw_path": ("/v1" + path).encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "http_version": "1.1",
        }
        chunks = [raw]

        async def receive() -> dict[str, Any]:
            if chunks:
                return {"type": "http.request", "body": chunks.pop(), "more_body": False}
            return {"type": "http.disconnect"}

        reply = await self.gateway.pipeline.handle(Request(scope, receive), ENDPOINTS[path])
        if isinstance(reply.body, bytes):
            content = reply.body
        else:
            content = b"".join([chunk async for chunk in reply.body])
        if reply.after is not None:
            reply.after()
        return Answer(reply.status, dict(reply.headers), content, reply.relayed)

    def seen(self) -> list[RecordedRequest]:
        """The requests the upstream received."""
        return self.upstream._state.requests()


@asynccontextmanager
async def proxy(
    tiers: Mapping[str, Mapping[str, Any]] | None = None, **routes_extra: Any
) -> AsyncIterator[Proxy]:
    """A started gateway's pipeline (meter and control plane running) over a new mock upstream."""
    upstream = MockUpstream()
    routes = {**routes_doc("http://mock.test/v1"), **routes_extra}
    tiers_document = tiers_doc(tiers)
    env = {
        "GATEWAY_KEYS": ",".join(f"{CLIENT_KEY}={tier}:{USER}" for tier in tiers_document["tiers"])
    }
    config = build_config(routes, tiers_document, env)
    transport = httpx.ASGITransport(app=upstream.app)
    gateway = build_gateway(config, Runtime(), transport, None, time.time, Metrics())
    await gateway.meter.start()
    await gateway.control.start()
    try:
        yield Proxy(gateway, upstream)
    finally:
        await gateway.control.aclose()
        await gateway.meter.aclose()
        await gateway.store.aclose()


__all__ = ["CLIENT_KEY", "MOCK_KEY", "USER", "Answer", "Proxy", "proxy"]
