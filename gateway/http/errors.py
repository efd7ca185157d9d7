"""Errors rendered as OpenAI-shaped responses, and the handlers for errors raised in endpoints."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.errors import GatewayError, MethodNotAllowed, NotFound
from gateway.proxy.incoming import body_cut_short
from gateway.proxy.reply import error_reply

log = logging.getLogger("gateway")


def error_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    status, merged, body, media_type, _ = error_reply(error, headers)
    assert isinstance(body, bytes)
    return Response(body, status_code=status, headers=dict(merged), media_type=media_type)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
        return error_response(error, exc.headers)
    if exc.status_code == 404:
        return error_response(NotFound(f"Unknown path: {request.url.path}", code="unknown_url"))
    return error_response(GatewayError(str(exc.detail), status=exc.status_code))


async def _body_cut_short(request: Request, exc: Exception) -> Response:
    """A body that stopped arriving (the client left, or the server's read guard cut it off
    and answered 408 itself): an answer nobody receives, and no traceback."""
    return error_response(body_cut_short(request))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(GatewayError("The gateway hit an internal error.", code="internal_error"))


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    ClientDisconnect: _body_cut_short,
    Exception: _unexpected_error,
}
