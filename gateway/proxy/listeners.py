"""Who hears of a request's start, of its relay, and of its end: the pipeline's exits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.proxy.context import RequestContext


class RequestListener(Protocol):
    def started(self, ctx: RequestContext) -> None:
        """The request was accepted for the pipeline."""

    def relaying(self, ctx: RequestContext) -> None:
        """Its answer is handed out as a relay; ``finished`` follows after the last byte."""

    def finished(self, ctx: RequestContext) -> None:
        """Called exactly once, after the last byte (or the error) was handed out."""


class Listeners:
    """Several listeners heard in the order given (metrics, billing, access log, ...)."""

    def __init__(self, listeners: Sequence[RequestListener]) -> None:
        self._listeners = tuple(listeners)

    def started(self, ctx: RequestContext) -> None:
        for listener in self._listeners:
            listener.started(ctx)

    def relaying(self, ctx: RequestContext) -> None:
        for listener in self._listeners:
            listener.relaying(ctx)

    def finished(self, ctx: RequestContext) -> None:
        for listener in self._listeners:
            listener.finished(ctx)
