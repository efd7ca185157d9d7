"""GET /v1/videos, /v1/videos/{id} and /v1/videos/{id}/content: the caller's own video jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.providers.bodies import body_chunks
from gateway.proxy.videos.jobs import VideoJobs
from gateway.proxy.videos.records import public


class WithVideos(Services, Protocol):
    @property
    def videos(self) -> VideoJobs: ...


def _videos(request: Request) -> tuple[WithVideos, VideoJobs]:
    gateway: WithVideos = services(request)  # type: ignore[assignment]
    return gateway, gateway.videos


async def list_videos(request: Request) -> Response:
    gateway, videos = _videos(request)
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    jobs = [public(job) for job in await videos.list(principal)]
    return json_response({"object": "list", "data": jobs, "has_more": False})


async def retrieve(request: Request) -> Response:
    gateway, videos = _videos(request)
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    return json_response(public(await videos.get(principal, request.path_params["video_id"])))


async def content(request: Request) -> Response:
    gateway, videos = _videos(request)
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    url, response = await videos.content(principal, request.path_params["video_id"])
    if url is not None:
        return RedirectResponse(url, status_code=302)
    assert response is not None
    media_type = response.headers.get("content-type", "video/mp4")
    return StreamingResponse(_relay(response), media_type=media_type)


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in body_chunks(response):
            yield chunk
    finally:
        await response.aclose()


def routes() -> list[Route]:
    return [
        Route("/v1/videos", list_videos, methods=["GET"]),
        Route("/v1/videos/{video_id}", retrieve, methods=["GET"]),
        Route("/v1/videos/{video_id}/content", content, methods=["GET"]),
    ]
