"""Who hears of a request's start, of its relay, and of its end: the pipeline's exits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.proxy.context import RequestContext


class RequestListener(Protocol):
    def started(self, ctx: RequestContext) -> None:
        """The request was accepted for the pipeline."""

    def relaying(self, ctx: RequestContext) -> None:
        """Its answer is handed out as a relay; ``finished`` follows after the last byte."""

    def finished(self, ctx: RequestContext) -> None:
        """Called exactly once, after the last byte (or the error) was handed out."""


def ignored(self: object, ctx: RequestContext) -> None:
    """A listener's ``started`` or ``relaying`` with nothing to do: ``Listeners`` skips it."""


class Listeners:
    """Several listeners heard in the order given (metrics, billing, access log, ...)."""

    def __init__(self, listeners: Sequence[RequestListener]) -> None:
        self._listeners = tuple(listeners)
        # bound once; a hook that is ``ignored`` is not called at all
        self._started = _hooks([listener.started for listener in self._listeners])
        self._relaying = _hooks([listener.relaying for listener in self._listeners])
        self._finished = tuple(listener.finished for listener in self._listeners)

    def started(self, ctx: RequestContext) -> None:
        for hook in self._started:
            hook(ctx)

    def relaying(self, ctx: RequestContext) -> None:
        for hook in self._relaying:
            hook(ctx)

    def finished(self, ctx: RequestContext) -> None:
        for hook in self._finished:
            hook(ctx)


Hook = Callable[[RequestContext], None]


def _hooks(bound: list[Hook]) -> tuple[Hook, ...]:
    return tuple(hook for hook in bound if getattr(hook, "__func__", None) is not ignored)
