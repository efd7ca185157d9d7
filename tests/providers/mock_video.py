"""Local video job APIs written from their documented shapes: OpenAI ``/v1/videos``, Together
``/v2/videos`` and Replicate predictions (``/v1/predictions``, ``/v1/models/{owner}/{name}/
predictions``). A job is queued, then in progress, then completed (or failed when its prompt
contains ``fail``); a model id containing ``submitfail`` refuses the job with a 503."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"frame" * 2000
REPLICATE_TOKEN = "r8_mock_token_0123456789"
# POST /v1/predictions "version": owner/name, owner/name:version_id, or a 64-hex version id
REPLICATE_STATUS = {"in_progress": "processing", "completed": "succeeded"}
REPLICATE_VERSION = re.compile(r"^([\w.-]+/[\w.-]+(:[0-9a-f]{64})?|[0-9a-f]{64})$")


class MockVideo:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.submissions: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.url = ""  # set once served, for Together's video_url
        self.delivery_headers: list[dict[str, str]] = []  # of each output file download
        self.app = Starlette(
            routes=[
                Route("/v1/videos", self.create, methods=["POST"]),
                Route("/v1/videos/{id}", self.openai_status, methods=["GET"]),
                Route("/v1/videos/{id}/content", self.content, methods=["GET"]),
                Route("/v2/videos", self.create, methods=["POST"]),
                Route("/v2/videos/{id}", self.together_status, methods=["GET"]),
                Route("/files/{id}.mp4", self.content, methods=["GET"]),
                Route("/v1/predictions", self.replicate_create, methods=["POST"]),
                Route(
                    "/v1/models/{owner}/{name}/predictions",
                    self.replicate_create,
                    methods=["POST"],
                ),
                Route("/v1/predictions/{id}", self.replicate_status, methods=["GET"]),
                Route("/delivery/{id}/output.mp4", self.delivery, methods=["GET"]),
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

    # -- Replicate -------------------------------------------------------------------------

    def _replicate_denied(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {REPLICATE_TOKEN}":
            return None
        detail = "You did not pass a valid authentication token"
        return JSONResponse({"title": "Unauthenticated", "detail": detail, "status": 401}, 401)

    async def replicate_create(self, request: Request) -> Response:
        """201 with a prediction ``starting``; the official model endpoint takes no version."""
        if (denied := self._replicate_denied(request)) is not None:
            return denied
        body = await request.json()
        owner, name = request.path_params.get("owner"), request.path_params.get("name")
        version = f"{owner}/{name}" if owner else str(body.get("version") or "")
        if not REPLICATE_VERSION.match(version) or not isinstance(body.get("input"), dict):
            detail = "The specified version does not exist (or perhaps you don't have permission)"
            return JSONResponse({"title": "Invalid version or not permitted", "detail": detail,
                                 "status": 422}, 422)  # fmt: skip
        self.submissions.append({**body, "version": version, "path": request.url.path})
        if "submitfail" in version:
            detail = "Service is currently unavailable"
            return JSONResponse({"title": "Unavailable", "detail": detail, "status": 503}, 503)
        job_id = f"rep{next(self._ids)}"
        model, _, pinned = version.partition(":")
        self.jobs[job_id] = {"model": model, "version": pinned, **body["input"]}
        self.polls[job_id] = 0
        return JSONResponse(self._prediction(job_id, "starting"), status_code=201)

    async def replicate_status(self, request: Request) -> Response:
        if (denied := self._replicate_denied(request)) is not None:
            return denied
        job_id = request.path_params["id"]
        if job_id not in self.jobs:
            return JSONResponse({"title": "Not found", "status": 404}, status_code=404)
        status, job = self._state(job_id)
        if "cancel" in str(job.get("prompt")):
            status = "canceled" if status != "in_progress" else status
        replicate_status = REPLICATE_STATUS.get(status, status)
        return JSONResponse(self._prediction(job_id, replicate_status))

    def _prediction(self, job_id: str, status: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        output: Any = None
        if status == "succeeded":
            url = f"{self.url}/delivery/{job_id}/output.mp4"
            output = [url] if job["version"] else url  # a list or one file, as models differ
        error = "E006: the prediction was flagged as unsafe" if status == "failed" else None
        done = status in ("succeeded", "failed", "canceled")
        return {
            "id": job_id,
            "model": job["model"],
            "version": job["version"] or "hidden",
            "input": {k: v for k, v in job.items() if k not in ("model", "version")},
            "logs": "",
            "output": output,
            "error": error,
            "status": status,
            "created_at": "2025-08-05T12:00:00.000Z",
            "completed_at": "2025-08-05T12:01:00.000Z" if done else None,
            "urls": {
                "get": f"{self.url}/v1/predictions/{job_id}",
                "cancel": f"{self.url}/v1/predictions/{job_id}/cancel",
            },
        }

    async def delivery(self, request: Request) -> Response:
        """The output file, on a delivery host that asks for no credentials."""
        self.delivery_headers.append(dict(request.headers))
        return Response(VIDEO_BYTES, media_type="video/mp4")
