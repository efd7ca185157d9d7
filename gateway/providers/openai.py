"""The OpenAI-compatible provider: the upstream request, and its errors in OpenAI's shape."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import httpx
import orjson

from gateway.config.model import Model, Upstream
from gateway.errors import UpstreamError
from gateway.secret import Secret
from gateway.wire.request import JsonPost, target
from gateway.wire.transport import WireHeaders

# Upstream response headers worth passing to the client; everything else is the gateway's.
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-disposition")
_FORWARDED = {name.encode(): name for name in FORWARDED_RESPONSE_HEADERS}
MAX_ERROR_BODY = 64 * 1024
_KEYLIKE = re.compile(r"\b(?:sk|tgp|pk|rk|key)[-_][A-Za-z0-9_\-*.]{6,}|\bBearer\s+\S+", re.I)


def build_request(
    model: Model,
    path: str,
    *,
    json_body: bytes | None = None,
    form: tuple[dict[str, Any], list[Any]] | None = None,
    api_key: Secret | None,
    request_id: str,
    accept: str | None = None,
) -> httpx.Request:
    """A POST to ``model``'s upstream: JSON bytes, or multipart (text fields, httpx files)."""
    upstream = model.upstream
    extensions = {"timeout": _timeouts(upstream)}
    authorization = None if api_key is None else b"Bearer " + api_key.reveal().encode()
    if form is None:  # its head made from parts checked once per URL (``gateway.wire.request``)
        to = target(upstream.base_url, path)
        request_id_bytes = request_id.encode()
        accept_bytes = accept.encode() if accept else None
        body = json_body or b""
        return JsonPost(to, request_id_bytes, accept_bytes, authorization, body, extensions)
    url = _url(upstream.base_url, path)
    headers = [
        (b"accept-encoding", b"identity"),  # the relay scans SSE bytes; keep them plain
        (b"x-request-id", request_id.encode()),
    ]
    if accept:
        headers.append((b"accept", accept.encode()))
    if authorization is not None:
        headers.append((b"authorization", authorization))
    data, files = form
    return httpx.Request(
        "POST", url, data=data, files=files, headers=headers, extensions=extensions
    )


@functools.lru_cache(maxsize=512)
def _url(base_url: str, path: str) -> httpx.URL:
    """Parsed once per upstream and path: parsing was a third of building each request."""
    return httpx.URL(base_url + path)


def upstream_url(base_url: str, path: str) -> httpx.URL:
    """``base_url + path``, parsed once (for the other providers' requests)."""
    return _url(base_url, path)


def _timeouts(upstream: Upstream) -> dict[str, float]:
    return {
        "connect": upstream.connect_timeout_s,
        "read": upstream.idle_timeout_s,
        "write": upstream.idle_timeout_s,
        "pool": upstream.connect_timeout_s,
    }


def forwarded_headers(response: httpx.Response) -> dict[str, str]:
    """The headers passed on (repeated ones joined with ", ", as ``Headers[name]`` does),
    found in one pass over the answer's headers rather than a scan per name."""
    headers = response.headers
    if type(headers) is WireHeaders:  # the native transport's: lower-cased as received
        return headers.pick(_FORWARDED)
    found: dict[str, list[str]] = {}
    for key, value in headers.raw:
        name = _FORWARDED.get(key.lower())
        if name is not None:
            found.setdefault(name, []).append(value.decode(headers.encoding))
    return {name: ", ".join(found[name]) for name in FORWARDED_RESPONSE_HEADERS if name in found}


def upstream_error(
    status: int, body: bytes, content_type: str, secrets: Iterable[Secret | None] = ()
) -> UpstreamError:
    """Normalise Together's ``{"id", "error"}``, vLLM's flat shape and plain text alike."""
    message, type_, code, param = _parse_error_body(body, content_type)
    message = redact(message or f"Upstream answered HTTP {status}", secrets)
    return UpstreamError(
        message,
        status=status,
        type=type_ or _default_type(status),
        code=code,
        param=param,
    )


def _parse_error_body(
    body: bytes, content_type: str
) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        errors = document.get("errors")  # Stability's {"id", "name", "errors": [...]}
        if "error" not in document and isinstance(errors, list) and errors:
            message = "; ".join(str(e) for e in errors)
            return message, None, _text(document.get("name")), None
        error = document.get("error", document)
        if isinstance(error, str):
            return error, None, None, None
        if isinstance(error, dict):
            code = error.get("code")
            return (
                _text(error.get("message") or error.get("detail")),
                _text(error.get("type")),
                None if code is None or isinstance(code, int) else str(code),
                _text(error.get("param")),
            )
    text = body[:500].decode("utf-8", "replace").strip()
    return (text or None), None, None, None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _default_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def redact(text: str, secrets: Iterable[Secret | None] = ()) -> str:
    for secret in secrets:
        if secret is not None and secret.reveal():
            text = text.replace(secret.reveal(), "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)
