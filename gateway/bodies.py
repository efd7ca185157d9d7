"""Reading the client's body once, and shaping what goes upstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from gateway.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from gateway.routing import Endpoint

# Hints the gateway reads for routing; upstreams would reject them as unknown parameters.
GATEWAY_HINTS = ("purpose", "language")
HEADER_PEEK = 4096  # bytes of an upload read to find its audio duration


@dataclass
class Incoming:
    fields: dict[str, Any]  # the JSON body, or the multipart text fields
    files: list[tuple[str, UploadFile]] = field(default_factory=list)

    @property
    def model(self) -> str | None:
        model = self.fields.get("model")
        return model if isinstance(model, str) and model else None

    @property
    def multipart(self) -> bool:
        return bool(self.files)


async def read_incoming(request: Request, endpoint: Endpoint, max_bytes: int) -> Incoming:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds the {max_bytes} byte limit.")
    content_type = request.headers.get("content-type", "")
    if endpoint.multipart:
        return await _read_multipart(request, content_type)
    if content_type and "json" not in content_type:
        raise UnsupportedMediaType(
            f"Expected 'application/json', got '{content_type.split(';')[0]}'."
        )
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return Incoming(body)


async def _read_multipart(request: Request, content_type: str) -> Incoming:
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("Expected 'multipart/form-data' with a 'file' part.")
    try:
        form = await request.form(max_files=8, max_fields=64)
    except MultiPartException as exc:
        raise InvalidRequest(f"Invalid multipart body: {exc.message}") from None
    fields: dict[str, Any] = {}
    files: list[tuple[str, UploadFile]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((name, value))
        else:
            fields[name] = value
    if not files:
        raise InvalidRequest("The multipart body needs a 'file' part.", param="file")
    return Incoming(fields, files)


def json_for_upstream(
    incoming: Incoming, endpoint: Endpoint, clamp: int | None
) -> tuple[dict[str, Any], bool, bool]:
    """The body to forward (model set per target later), whether it streams, and whether
    the client itself asked for usage in the stream."""
    body = dict(incoming.fields)
    if endpoint.generates_tokens:
        for hint in GATEWAY_HINTS:
            body.pop(hint, None)
        clamp_max_tokens(body, clamp)
    else:
        body.pop("purpose", None)
    streams = endpoint.generates_tokens and body.get("stream") is True
    options = body.get("stream_options")
    options = options if isinstance(options, dict) else {}
    wants_usage = options.get("include_usage") is True
    if streams:
        body["stream_options"] = {**options, "include_usage": True}
    return body, streams, wants_usage


def clamp_max_tokens(body: dict[str, Any], clamp: int | None) -> None:
    """Check max_tokens / max_completion_tokens and cap them; set one when the client sent
    neither, so the upstream never generates past what the quota reserved."""
    present = [key for key in ("max_tokens", "max_completion_tokens") if body.get(key) is not None]
    for key in present:
        value = body[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"'{key}' must be a positive integer.", param=key)
        if clamp is not None:
            body[key] = min(value, clamp)
    if not present and clamp is not None:
        body["max_tokens"] = clamp


def requested_max_tokens(fields: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


async def upload_header(upload: UploadFile) -> bytes:
    header = await upload.read(HEADER_PEEK)
    await upload.seek(0)
    return header


def rewind(files: list[tuple[str, UploadFile]]) -> list[tuple[str, tuple[str, Any, str]]]:
    """httpx ``files=`` for one attempt, each file read again from its start."""
    parts = []
    for name, upload in files:
        upload.file.seek(0)
        parts.append(
            (
                name,
                (
                    upload.filename or "upload",
                    upload.file,
                    upload.content_type or "application/octet-stream",
                ),
            )
        )
    return parts
