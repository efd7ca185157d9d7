"""The request body limit, as ASGI middleware that counts what ``receive`` hands over.

Served by the gateway's protocol, the request's ``GatewayCycle`` counts it itself: ``receive``
stays the cycle's own, so the proxied request can take a body that is all in at once
(``GatewayCycle.whole_body``) without a message or a coroutine.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge
from gateway.http.cycle import GatewayCycle

UPLOADS = "/v1/files"  # file uploads count against their own cap (``gateway.http.api.files``)


def limited(receive: Receive, max_bytes: int) -> Receive:
    """``receive`` that stops a body (chunked included) past ``max_bytes`` with a 413."""
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds the {max_bytes} byte limit.")
        return message

    return limited_receive


class BodyLimit:
    """Runs on every request, the proxied ones included (see ``gateway.http.asgi``): a plain
    call that hands back the next app's coroutine, so it adds no coroutine of its own that
    every await below would cross."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http" or scope["path"] == UPLOADS:
            return self.app(scope, receive, send)
        cycle = getattr(receive, "__self__", None)
        # ``cycle.cap_body`` (no cap set yet) without its call: once per request
        if type(cycle) is GatewayCycle and cycle.body_cap is None:
            cycle.body_cap = self.max_bytes
            return self.app(scope, receive, send)  # the cycle counts (its ``receive`` as is)
        return self.app(scope, limited(receive, self.max_bytes), send)
