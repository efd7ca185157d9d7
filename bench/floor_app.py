"""Floors for the gateway's numbers, served the way the gateway is (uvicorn, uvloop, httptools).

* ``POST /floor/static``: Starlette reads the body and answers the mock's JSON itself.
* ``POST /floor/passthrough``: Starlette forwards the body to the nginx mock through the
  gateway's own upstream transport (``gateway.upstream.create_transport``, called the way the
  gateway calls it: ``handle_async_request``) and relays the answer.
* ``POST /floor/stream``: the same for the mock's SSE stream, relayed chunk by chunk as it comes.

Whatever the gateway adds on top (auth, routing, metering, metrics, logs) is its own cost.

    BENCH_JSON_URL=http://127.0.0.1:PORT/json/v1 \
        python -m uvicorn floor_app:create_app --factory --app-dir bench --port 9100
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import httpx
from mock_nginx import json_answer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.providers.transport import create_transport


def create_app() -> Starlette:
    upstream = os.environ["BENCH_JSON_URL"] + "/chat/completions"
    sse_upstream = os.environ["BENCH_SSE_URL"] + "/chat/completions"
    transport = create_transport(os.environ.get("GATEWAY_UPSTREAM_TRANSPORT", "native"))
    answer = json_answer().encode()

    async def static(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    async def passthrough(request: Request) -> Response:
        body = await request.body()
        outgoing = httpx.Request(
            "POST", upstream, content=body, headers={"content-type": "application/json"}
        )
        reply = await transport.handle_async_request(outgoing)
        try:
            content = await reply.aread()
        finally:
            await reply.aclose()
        return Response(content, reply.status_code, media_type="application/json")

    async def stream(request: Request) -> Response:
        body = await request.body()
        outgoing = httpx.Request(
            "POST", sse_upstream, content=body, headers={"content-type": "application/json"}
        )
        reply = await transport.handle_async_request(outgoing)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in reply.stream:  # type: ignore[union-attr]
                    yield chunk
            finally:
                await reply.aclose()

        return StreamingResponse(relay(), reply.status_code, media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await transport.aclose()

    routes = [
        Route("/floor/static", static, methods=["POST"]),
        Route("/floor/passthrough", passthrough, methods=["POST"]),
        Route("/floor/stream", stream, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
