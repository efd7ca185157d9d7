"""uvicorn's proxy headers, read by the gateway's protocol: no middleware call per request.

uvicorn wraps the app in ``ProxyHeadersMiddleware`` (``proxy_headers``, on by default): per
request an object call, a trust check of the client's address and a coroutine that every wait
crosses. The gateway's protocol (``serve_guard``) calls the app inside it instead, checks the
client's trust once per connection, and for a trusted client changes the scope as the
middleware does (``forward``) before the app sees it.
"""

from __future__ import annotations

from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware, _TrustedHosts

_SCHEMES = frozenset(("http", "https", "ws", "wss"))


def unwrapped(app: Any) -> tuple[Any, _TrustedHosts | None]:
    """The app inside uvicorn's proxy headers middleware and its trusted hosts (``app`` and
    None when it is not that middleware)."""
    if type(app) is ProxyHeadersMiddleware:
        return app.app, app.trusted_hosts
    return app, None


def forward(scope: Any, trusted_hosts: _TrustedHosts) -> None:
    """``ProxyHeadersMiddleware``'s changes to an HTTP request's scope, its client trusted:
    the scheme from ``x-forwarded-proto``, the client from ``x-forwarded-for``."""
    proto: bytes | None = None
    forwarded_for: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
    if proto is not None:
        scheme = proto.decode("latin1").strip()
        if scheme in _SCHEMES:
            scope["scheme"] = scheme
    if forwarded_for:
        joined = b", ".join(forwarded_for).decode("latin1")
        host, port = trusted_hosts.get_trusted_client_address(joined)
        if host:  # an empty x-forwarded-for gives no usable client
            scope["client"] = (host, port)
