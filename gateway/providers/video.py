"""Video job APIs: submit, poll, fetch.

OpenAI /videos, Together /videos, Replicate predictions, Runway tasks (``runway``), Stability's
image-to-video (``stability``: its result is the video itself, see ``stability``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.config.model import Model, Upstream
from gateway.providers import runway, stability
from gateway.providers.openai import upstream_url
from gateway.secret import Secret

TERMINAL = frozenset({"completed", "failed"})
# each API's job status → OpenAI's (queued | in_progress | completed | failed)
STATUSES = {
    "queued": "queued",
    "starting": "queued",
    "in_progress": "in_progress",
    "processing": "in_progress",
    "running": "in_progress",
    "completed": "completed",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "failed",
    "canceled": "failed",
    "expired": "failed",
    **{status.lower(): ours for status, ours in runway.STATUSES.items()},
}


@dataclass(frozen=True)
class JobState:
    status: str  # queued | in_progress | completed | failed
    progress: int = 0
    error: str | None = None  # the upstream's reason, when failed
    content_url: str | None = None  # where the provider put the video, when it gives a URL


def submit_request(
    model: Model,
    fields: dict[str, Any],
    files: list[tuple[str, Any]] | None,
    *,
    api_key: Secret | None,
    request_id: str,
) -> httpx.Request:
    """The job's creation in ``model``'s API, from OpenAI's ``/v1/videos`` fields."""
    upstream, api = model.upstream, model.upstream.api
    prompt, seconds = fields.get("prompt"), _seconds(fields)
    if api == "replicate":
        path, body = _replicate_create(model.upstream_model, prompt, seconds)
    elif api == "runway":
        path, body = runway.create(model.upstream_model, fields, files, seconds)
    elif api == "stability":
        data, image = stability.create(fields, files)
        return httpx.Request(
            "POST",
            upstream_url(upstream.base_url, stability.CREATE_PATH),
            data=data,
            files=image,
            headers=_headers(upstream, api_key, request_id),
            extensions={"timeout": timeouts(upstream)},
        )
    elif api == "together-video":
        path = "/videos"
        body = {"model": model.upstream_model, "prompt": prompt, "seconds": str(seconds)}
        width, _, height = str(fields.get("size") or "").partition("x")
        if width.isdecimal() and height.isdecimal():
            body |= {"width": int(width), "height": int(height)}
    else:
        path = "/videos"
        body = {**fields, "model": model.upstream_model, "seconds": str(seconds)}
        if files:
            data = {k: str(v) for k, v in body.items() if v is not None}
            return httpx.Request(
                "POST",
                upstream_url(upstream.base_url, path),
                data=data,
                files=files,
                headers=_headers(upstream, api_key, request_id),
                extensions={"timeout": timeouts(upstream)},
            )
    return httpx.Request(
        "POST",
        upstream_url(upstream.base_url, path),
        content=orjson.dumps(body),
        headers={**_headers(upstream, api_key, request_id), "content-type": "application/json"},
        extensions={"timeout": timeouts(upstream)},
    )


def _replicate_create(upstream_model: str, prompt: Any, seconds: int) -> tuple[str, dict[str, Any]]:
    """Replicate's creation: ``owner/name:version`` → ``POST /predictions`` with that
    ``version``; an official ``owner/name`` → ``POST /models/{owner}/{name}/predictions``."""
    body: dict[str, Any] = {"input": {"prompt": prompt, "duration": seconds}}
    owner_name, _, version = upstream_model.partition(":")
    if version:
        return "/predictions", {"version": upstream_model, **body}
    return f"/models/{owner_name}/predictions", body


def submitted_id(body: bytes) -> str | None:
    """The upstream's job id from its creation answer (every API answers ``{"id": …}``)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    job_id = document.get("id") if isinstance(document, dict) else None
    return str(job_id) if job_id else None


# how many of the watcher's poll intervals apart an API's jobs are asked about: Stability
# asks for no more than one poll every 10 s (twice the default interval of 5 s)
POLL_PACE = {"stability": 2}
STATUS_PATHS = {
    "replicate": "/predictions/{id}",
    "runway": "/tasks/{id}",
    "stability": stability.RESULT_PATH,
}


def status_request(upstream: Upstream, upstream_id: str, api_key: Secret | None) -> httpx.Request:
    path = STATUS_PATHS.get(upstream.api, "/videos/{id}").format(id=upstream_id)
    headers = _headers(upstream, api_key, "")
    if upstream.api == "stability":  # the video's bytes, not a JSON document with its base64
        headers["accept"] = stability.ACCEPT_VIDEO
    return httpx.Request(
        "GET",
        upstream_url(upstream.base_url, path),
        headers=headers,
        extensions={"timeout": timeouts(upstream)},
    )


async def headline_state(api: str, response: httpx.Response) -> JobState | None:
    """The state a status answer tells by its status and headers alone, the answer then closed
    unread (Stability's finished result is the video itself); None: read its body."""
    if api != "stability":
        return None
    told = stability.result_state(response.status_code, response.headers)
    if told is None:
        return None
    await response.aclose()
    status, error = told
    return JobState(status, 100 if status == "completed" else 0, error)


def job_state(api: str, body: bytes) -> JobState:
    """A status answer as a ``JobState`` (an unreadable one counts as still running)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return JobState("in_progress")
    if not isinstance(document, dict):
        return JobState("in_progress")
    status = STATUSES.get(str(document.get("status")).lower(), "in_progress")
    progress = runway.progress(document) if api == "runway" else document.get("progress")
    progress = progress if isinstance(progress, int) else (100 if status == "completed" else 0)
    return JobState(
        status,
        progress,
        _error(document) if status == "failed" else None,
        _content_url(api, document),
    )


def _error(document: dict[str, Any]) -> str:
    error = document.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("code")
    error = error or runway.failure(document)
    info = document.get("info")
    if not error and isinstance(info, dict):
        error = info.get("errors") or info.get("error")
    return str(error or f"the upstream job ended as {document.get('status')}")[:500]


def _content_url(api: str, document: dict[str, Any]) -> str | None:
    if api == "together-video":
        outputs = document.get("outputs")
        url = outputs.get("video_url") if isinstance(outputs, dict) else None
    elif api in ("replicate", "runway"):
        output = document.get("output")
        url = output[0] if isinstance(output, list) and output else output
    else:
        return None  # OpenAI: GET /videos/{id}/content
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def content_request(
    upstream: Upstream, upstream_id: str, api_key: Secret | None
) -> httpx.Request | None:
    """The GET for the video's bytes at the upstream itself; None for the APIs that name a
    URL of their choosing instead (``JobState.content_url``, fetched by ``content_fetch``)."""
    if upstream.api == "stability":  # the result answer again, its body streamed through
        return status_request(upstream, upstream_id, api_key)
    if upstream.api in ("openai-videos", "openai"):
        url = upstream_url(upstream.base_url, f"/videos/{upstream_id}/content")
        return httpx.Request(
            "GET",
            url,
            headers=_headers(upstream, api_key, ""),
            extensions={"timeout": timeouts(upstream)},
        )
    return None


def _seconds(fields: dict[str, Any]) -> int:
    return video_seconds(fields.get("seconds"))


def video_seconds(value: Any, default: int = 4) -> int:
    """The requested length (OpenAI sends it as a string, "4"); OpenAI's default is 4."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdecimal() and int(value) > 0:
        return int(value)
    return default


def _headers(upstream: Upstream, api_key: Secret | None, request_id: str) -> dict[str, str]:
    headers = {"accept-encoding": "identity"}
    if request_id:
        headers["x-request-id"] = request_id
    if api_key is not None:
        headers["authorization"] = "Bearer " + api_key.reveal()
    if upstream.api == "runway":
        headers[runway.VERSION_HEADER] = runway.API_VERSION
    return headers


def timeouts(upstream: Upstream) -> dict[str, float]:
    return {
        "connect": upstream.connect_timeout_s,
        "read": upstream.idle_timeout_s,
        "write": upstream.idle_timeout_s,
        "pool": upstream.connect_timeout_s,
    }
