"""Reading the client's body once, and shaping what goes upstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from gateway.errors import (
    ClientClosedRequest,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from gateway.protocols.native import NativeRequest
from gateway.proxy.routing import Endpoint

# Hints the gateway reads for routing; upstreams would reject them as unknown parameters.
GATEWAY_HINTS = ("purpose", "language")
HEADER_PEEK = 4096  # bytes of an upload read to find its audio duration
# JSON nesting the gateway accepts. Our walkers (token estimate, routing) recurse, and orjson
# refuses to serialise past 255 levels; no OpenAI request needs more than a dozen.
MAX_DEPTH = 64
# Scope key the server's read guard sets when it cut a body short for being too slow.
BODY_TIMED_OUT = "gateway.body_timed_out"
MAX_INT32 = 2**31 - 1
# Numbers the gateway reads for metering, per endpoint: (field, smallest, largest). Anything
# else would reach the quota arithmetic unchecked (e.g. n = 2**63 - 1 overflows it).
_TOKEN_FIELDS = (("max_tokens", 1, MAX_INT32), ("max_completion_tokens", 1, MAX_INT32))
NUMBER_RULES: dict[str, tuple[tuple[str, int, int], ...]] = {
    "chat.completions": (*_TOKEN_FIELDS, ("n", 1, 128)),
    "completions": (*_TOKEN_FIELDS, ("n", 1, 128)),
    "images.generations": (("n", 1, 128),),
}


@dataclass(slots=True)  # one per request
class Incoming:
    fields: dict[str, Any]  # the JSON body, or the multipart text fields
    files: list[tuple[str, UploadFile]] = field(default_factory=list)
    size: int = 0  # bytes of a JSON body (0: multipart)
    # a bridged request: the client's own body, for targets that speak its API natively
    native: NativeRequest | None = None

    @property
    def model(self) -> str | None:
        model = self.fields.get("model")
        return model if isinstance(model, str) and model else None

    @property
    def multipart(self) -> bool:
        return bool(self.files)


async def read_incoming(request: Request, endpoint: Endpoint, max_bytes: int) -> Incoming:
    declared = request.headers.get("content-length")
    if declared and declared.isdecimal() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds the {max_bytes} byte limit.")
    content_type = request.headers.get("content-type", "")
    if endpoint.multipart or (
        endpoint.name == "videos" and content_type.startswith("multipart/form-data")
    ):
        return await _read_multipart(request, content_type, file_needed=endpoint.multipart)
    if content_type and "json" not in content_type:
        raise UnsupportedMediaType(
            f"Expected 'application/json', got '{content_type.split(';')[0]}'."
        )
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise body_cut_short(request) from None
    body = parse_json_body(raw)
    check_numbers(body, endpoint)
    return Incoming(body, size=len(raw))


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object no deeper than ``MAX_DEPTH``, or a 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # Depth can exceed the limit only with more brackets than the limit (counted in C).
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and too_deep(body, MAX_DEPTH):
        raise InvalidRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.")
    return body


def too_deep(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def check_numbers(body: dict[str, Any], endpoint: Endpoint) -> None:
    """Range-check the client's numbers the gateway meters with (``NUMBER_RULES``)."""
    for name, low, high in NUMBER_RULES.get(endpoint.name, ()):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}.", param=name)


def body_cut_short(request: Request) -> ClientClosedRequest | RequestTimeout:
    """The error for a body that stopped arriving: too slow (the server's read guard cut it
    and answered 408 itself), or the client went away (499, recorded only)."""
    if request.scope.get(BODY_TIMED_OUT):
        return RequestTimeout("The request body was not received in time.")
    return ClientClosedRequest("The client closed the connection before sending its body.")


async def _read_multipart(
    request: Request, content_type: str, *, file_needed: bool = True
) -> Incoming:
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("Expected 'multipart/form-data' with a 'file' part.")
    try:
        form = await request.form(max_files=8, max_fields=64)
    except ClientDisconnect:
        raise body_cut_short(request) from None
    except MultiPartException as exc:
        raise InvalidRequest(f"Invalid multipart body: {exc.message}") from None
    except HTTPException as exc:  # Starlette's wrapping of MultiPartException in an app
        raise InvalidRequest(f"Invalid multipart body: {exc.detail}") from None
    except FormParserError:
        raise InvalidRequest("Invalid multipart body.") from None
    fields: dict[str, Any] = {}
    files: list[tuple[str, UploadFile]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((name, value))
        else:
            fields[name] = value
    if not files and file_needed:
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
    present = False
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        present = True
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
