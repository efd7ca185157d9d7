"""Local video job APIs written from their documented shapes: OpenAI ``/v1/videos`` and
Together ``/v2/videos``. A job is queued, then in progress, then completed (or failed when its
prompt contains ``fail``); a model id containing ``submitfail`` refuses the job with a 503."""

from __future__ import annotations

import itertools
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"frame" * 2000


class MockVideo:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.submissions: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.url = ""  # set once served, for Together's video_url
        self.app = Starlette(
            routes=[
                Route("/v1/videos", self.create, methods=["POST"]),
                Route("/v1/videos/{id}", self.openai_status, methods=["GET"]),
                Route("/v1/videos/{id}/content", self.content, methods=["GET"]),
                Route("/v2/videos", self.create, methods=["POST"]),
                Route("/v2/videos/{id}", self.together_status, methods=["GET"]),
                Route("/files/{id}.mp4", self.content, methods=["GET"]),
            ]
        )

    async def create(self, request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            body["files"] = [k for k, v in form.items() if not isinstance(v, str)]
        else:
            body = await request.json()
        body["authorization"] = request.headers.get("authorization")
        self.submissions.append(body)
        if "submitfail" in str(body.get("model")):
            error = {"message": "video capacity exhausted", "type": "server_error"}
            return JSONResponse({"error": error}, status_code=503)
        job_id = f"upstream-{next(self._ids)}"
        self.jobs[job_id] = body
        self.polls[job_id] = 0
        return JSONResponse({"id": job_id, "object": "video", "status": "queued",
                             "created_at": int(time.time())})  # fmt: skip

    def _state(self, job_id: str) -> tuple[str, dict[str, Any]]:
        job = self.jobs[job_id]
        self.polls[job_id] += 1
        if self.polls[job_id] < 2:
            return "in_progress", job
        return ("failed" if "fail" in str(job.get("prompt")) else "completed"), job

    async def openai_status(self, request: Request) -> Response:
        job_id = request.path_params["id"]
        if job_id not in self.jobs:
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        status, _ = self._state(job_id)
        body: dict[str, Any] = {"id": job_id, "object": "video", "status": status,
                                "progress": 100 if status != "in_progress" else 40}  # fmt: skip
        if status == "failed":
            body["error"] = {"code": "moderation_blocked", "message": "prompt was blocked"}
        return JSONResponse(body)

    async def together_status(self, request: Request) -> Response:
        job_id = request.path_params["id"]
        status, job = self._state(job_id)
        body: dict[str, Any] = {"id": job_id, "model": job.get("model"), "status": status}
        if status == "completed":
            body["outputs"] = {"video_url": f"{self.url}/files/{job_id}.mp4", "cost": 0.5}
        if status == "failed":
            body["error"] = {"message": "the generation failed: prompt was blocked"}
        return JSONResponse(body)

    async def content(self, request: Request) -> Response:
        return Response(VIDEO_BYTES, media_type="video/mp4")
