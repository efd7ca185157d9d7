"""What the pipeline tells a tracer, when one is configured (``observe/otel.py`` is the one).

With tracing off there is no tracer: the pipeline and the attempt chain hold ``None`` and make
no call at all, so tracing costs nothing unless it is configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from gateway.config.model import Model

if TYPE_CHECKING:
    from gateway.proxy.attempt_outcome import Failure, Opened
    from gateway.proxy.context import RequestContext


class AttemptTrace(Protocol):
    def ended(self, outcome: Opened | Failure) -> None:
        """The attempt failed (its span ends) or its answer opened (its span ends with the
        request, once the answer has been relayed)."""


class RequestTrace(Protocol):
    trace_id: str  # 32 hex digits, for the access log

    def attempt(self, model: Model, request: httpx.Request) -> AttemptTrace:
        """A client span for one upstream attempt; its ``traceparent`` goes on ``request``."""

    def answer(self, document: Mapping[str, Any]) -> None:
        """A JSON answer read whole: its finish reasons."""

    def relay(self, body: AsyncIterable[bytes]) -> AsyncIterable[bytes]:
        """A stream as relayed, watched for its finish reasons."""

    def finish(self, ctx: RequestContext) -> None:
        """The request is over: attributes from ``ctx``, then every open span ends."""


class Tracer(Protocol):
    def begin(self, headers: Mapping[str, str], ctx: RequestContext) -> RequestTrace:
        """A server span for the request, child of the client's ``traceparent`` if any."""

    def shutdown(self) -> None:
        """Export what is queued, then stop (blocking: run it off the event loop)."""
