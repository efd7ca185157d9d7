"""Runway's task API for video jobs (docs.dev.runwayml.com, API version 2024-11-06).

A video is a task created with ``POST /v1/text_to_video`` (a prompt alone) or ``POST
/v1/image_to_video`` (a first frame), polled at ``GET /v1/tasks/{id}`` until it SUCCEEDED
(``output``: URLs of the files) or FAILED."""

from __future__ import annotations

import base64
from typing import Any

# Every request names the API version it was written for; Runway refuses a request without it.
VERSION_HEADER = "x-runway-version"
API_VERSION = "2024-11-06"
# Runway's ratios are output resolutions ("1280:720"); OpenAI's ``size`` is "1280x720"
DEFAULT_RATIO = "1280:720"
STATUSES = {
    "PENDING": "queued",
    "THROTTLED": "queued",  # over the organisation's concurrency: queued by Runway
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "failed",
}


def create(
    upstream_model: str, fields: dict[str, Any], files: list[tuple[str, Any]] | None, seconds: int
) -> tuple[str, dict[str, Any]]:
    """(path, body) of the task's creation from OpenAI's ``/v1/videos`` fields: with an
    ``input_reference`` (an uploaded image, or an https or data URI) it is image-to-video."""
    body: dict[str, Any] = {"model": upstream_model, "duration": seconds, "ratio": _ratio(fields)}
    prompt = fields.get("prompt")
    if isinstance(prompt, str) and prompt:
        body["promptText"] = prompt
    image = _prompt_image(fields, files)
    if image is None:
        return "/text_to_video", body
    return "/image_to_video", {**body, "promptImage": image}


def _ratio(fields: dict[str, Any]) -> str:
    width, _, height = str(fields.get("size") or "").partition("x")
    return f"{width}:{height}" if width.isdecimal() and height.isdecimal() else DEFAULT_RATIO


def _prompt_image(fields: dict[str, Any], files: list[tuple[str, Any]] | None) -> str | None:
    reference = fields.get("input_reference")
    if isinstance(reference, str) and reference.startswith(("https://", "data:image/")):
        return reference
    for name, (_, stream, content_type) in files or ():
        if name == "input_reference":
            stream.seek(0)
            data = base64.b64encode(stream.read()).decode()
            return f"data:{content_type or 'image/png'};base64,{data}"
    return None


def progress(document: dict[str, Any]) -> int | None:
    """A running task's ``progress`` (0.0 to 1.0) in percent."""
    value = document.get("progress")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return int(value * 100)
    return None


def failure(document: dict[str, Any]) -> str | None:
    reason, code = document.get("failure"), document.get("failureCode")
    if not reason and not code:
        return None
    return f"{reason or 'the task failed'} ({code})" if code else str(reason)
