"""A local Runway API written from its public documentation (docs.dev.runwayml.com, API
version 2024-11-06): ``POST /v1/text_to_video`` and ``POST /v1/image_to_video`` create a task
and answer ``{"id": <uuid>}``; ``GET /v1/tasks/{id}`` tells its ``status`` (PENDING, THROTTLED,
RUNNING with ``progress`` 0..1, then SUCCEEDED with ``output`` URLs or FAILED with ``failure``
and ``failureCode``). Every request needs ``Authorization: Bearer <key>`` (else 401) and the
``X-Runway-Version`` header (else 400). A prompt containing ``fail`` ends FAILED; one
containing ``throttle`` is THROTTLED first."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.providers.mock_video import VIDEO_BYTES

RUNWAY_KEY = "key_mock_runway_0123456789abcdef"
RUNWAY_VERSIONS = {"2024-09-13", "2024-11-06"}
TEXT_MODELS = {"gen4.5", "veo3", "veo3.1", "veo3.1_fast"}
IMAGE_MODELS = {"gen4.5", "gen4_turbo", "gen3a_turbo", "veo3", "veo3.1", "veo3.1_fast"}
# the states a task passes through, one per poll
STEPS = ("PENDING", "RUNNING", "SUCCEEDED")


class MockRunway:
    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.submissions: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/v1/text_to_video", self.text_to_video, methods=["POST"]),
                Route("/v1/image_to_video", self.image_to_video, methods=["POST"]),
                Route("/v1/tasks/{id}", self.task, methods=["GET"]),
                Route("/output/{id}.mp4", self.output, methods=["GET"]),
            ]
        )

    def _refused(self, request: Request) -> Response | None:
        self.headers.append(dict(request.headers))
        if request.headers.get("authorization") != f"Bearer {RUNWAY_KEY}":
            return JSONResponse({"error": "Invalid API key"}, status_code=401)
        if request.headers.get("x-runway-version") not in RUNWAY_VERSIONS:
            error = "The X-Runway-Version header is missing or names an unknown version."
            return JSONResponse({"error": error}, status_code=400)
        return None

    async def text_to_video(self, request: Request) -> Response:
        return await self._create(request, TEXT_MODELS, needs=("promptText",))

    async def image_to_video(self, request: Request) -> Response:
        return await self._create(request, IMAGE_MODELS, needs=("promptImage",))

    async def _create(self, request: Request, models: set[str], needs: tuple[str, ...]) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        missing = [f for f in ("model", "ratio", "duration", *needs) if f not in body]
        if missing or body["model"] not in models or not isinstance(body["duration"], int):
            issues = [{"path": [f], "message": "Required"} for f in missing]
            return JSONResponse({"error": "Validation of body failed", "issues": issues}, 400)
        self.submissions.append({**body, "path": request.url.path})
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = body
        self.polls[task_id] = 0
        return JSONResponse({"id": task_id})

    async def task(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        task_id = request.path_params["id"]
        if task_id not in self.tasks:
            return JSONResponse({"error": "Task not found"}, status_code=404)
        body, step = self.tasks[task_id], self.polls[task_id]
        self.polls[task_id] += 1
        prompt = str(body.get("promptText"))
        status = STEPS[min(step, len(STEPS) - 1)]
        if step == 0 and "throttle" in prompt:
            status = "THROTTLED"
        document: dict[str, Any] = {
            "id": task_id,
            "status": status,
            "createdAt": "2025-08-05T12:00:00.000Z",
        }
        if status == "RUNNING":
            document["progress"] = 0.4
        if status == "SUCCEEDED" and "fail" in prompt:
            document |= {"status": "FAILED", "failure": "The prompt was flagged by moderation.",
                         "failureCode": "SAFETY.INPUT.TEXT"}  # fmt: skip
        elif status == "SUCCEEDED":
            document["output"] = [f"{self.url}/output/{task_id}.mp4"]
        return JSONResponse(document)

    async def output(self, request: Request) -> Response:
        """The file, at a URL that needs no credentials (Runway's are signed, short-lived)."""
        return Response(VIDEO_BYTES, media_type="video/mp4")
