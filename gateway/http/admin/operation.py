"""One operation of the admin route table: a method on a path, its endpoint, role and docs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Op:
    """One method on one path of the admin API (or a client-key route it documents)."""

    method: str
    path: str
    endpoint: Endpoint
    role: str  # "admin"; "viewer": read-only tokens too; "user": a client key
    summary: str
    body: dict[str, Any] | None = None  # JSON Schema of the request body
    status: int = 200  # the success status
    query: tuple[str, ...] = ()  # optional query parameters (strings)
