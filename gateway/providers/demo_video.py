"""The demo upstream's video jobs, in OpenAI's ``/v1/videos`` shape.

A job is accepted, reported completed at its first poll, and its content is a short
placeholder file (an MP4 header and a note, not a playable film), so ``--demo`` shows the
whole job cycle without a provider key."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import orjson

DEMO_VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + (
    b"demo video: this file comes from the gateway's built-in demo upstream, no model made it."
)


def answer(method: str, path: str) -> httpx.Response:
    """``POST /videos``, ``GET /videos/{id}`` or ``GET /videos/{id}/content``."""
    parts = path.strip("/").split("/")  # ["videos", id?, "content"?]
    if method == "POST" and len(parts) == 1:
        job_id = "demo_video_" + secrets.token_hex(12)
        queued = {"id": job_id, "object": "video", "status": "queued", "progress": 0}
        return _json(200, {**queued, "created_at": int(time.time())})
    if method == "GET" and len(parts) == 2:
        done = {"id": parts[1], "object": "video", "status": "completed", "progress": 100}
        return _json(200, done)
    if method == "GET" and len(parts) == 3 and parts[2] == "content":
        return httpx.Response(200, headers={"content-type": "video/mp4"}, content=DEMO_VIDEO)
    message = f"The demo upstream does not serve {method} {path}."
    error = {"message": message, "type": "invalid_request_error", "param": None}
    return _json(404, {"error": {**error, "code": "not_found"}})


def _json(status: int, document: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "application/json"}, content=orjson.dumps(document)
    )
