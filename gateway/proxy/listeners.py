"""Who hears of a request's start, of its relay, and of its end: the pipeline's exits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.proxy.context import RequestContext

log = logging.getLogger("gateway")
# How long a finished request's later hooks may wait for the next request's wait on its upstream
# (``drain_soon``) before a timer runs them: an idle gateway's records are visible by then.
LATER_S = 0.005


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
    """Several listeners heard in the order given (metrics, billing, access log, ...).

    A listener whose class sets ``deferrable = True`` hears of a request's end later (its
    ``finished``; its ``at_end``, if it has one, at once), not
    between its last byte and the reading of the connection's next request: in the next
    proxied request's wait on its upstream (``drain_soon``), before any other request is
    served (``drain``: the readers of metrics and usage see every finished request), or
    ``LATER_S`` after the end at the latest (``drain`` again at shutdown). The others hear of
    it at once, each set in the order given, and the later ones in the order they ended."""

    def __init__(self, listeners: Sequence[RequestListener]) -> None:
        self._listeners = tuple(listeners)
        # bound once; a hook that is ``ignored`` is not called at all
        self._started = _hooks([listener.started for listener in self._listeners])
        self._relaying = _hooks([listener.relaying for listener in self._listeners])
        now: list[Hook] = []  # the others' ``finished``; a deferrable one's ``at_end``, if any
        later: list[Hook] = []
        for listener in self._listeners:
            if not getattr(listener, "deferrable", False):
                now.append(listener.finished)
                continue
            at_end = getattr(listener, "at_end", None)
            if at_end is not None:
                now.append(at_end)
            later.append(listener.finished)
        self._finished, self._later = tuple(now), tuple(later)
        self._pending: deque[RequestContext] = deque()  # ended, their later hooks not yet run
        self._timer: asyncio.TimerHandle | None = None

    def started(self, ctx: RequestContext) -> None:
        for hook in self._started:
            hook(ctx)

    def relaying(self, ctx: RequestContext) -> None:
        for hook in self._relaying:
            hook(ctx)

    def finished(self, ctx: RequestContext) -> None:
        for hook in self._finished:
            hook(ctx)
        if self._later:
            self._pending.append(ctx)
            if self._timer is None and not self._arm(LATER_S):
                self.drain()  # no event loop running here: nothing would run them later

    def drain_soon(self) -> None:
        """Run the pending later hooks at the loop's next turn: called as a request starts to
        wait on its upstream, its request already written."""
        if self._pending:
            asyncio.get_running_loop().call_soon(self.drain)

    def drain_after_next_turn(self) -> None:
        """Run the pending later hooks one turn after the next: called as a request goes to
        reserve its usage, whose command is written at the next turn (the store's connection
        writes what the turn queued), so that they run while the store works on it."""
        if self._pending:
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self.drain)

    def drain(self) -> None:
        """Run every pending later hook now."""
        pending = self._pending
        while pending:
            ctx = pending.popleft()
            try:
                for hook in self._later:
                    hook(ctx)
            except Exception:
                log.exception("a listener failed on request %s", ctx.request_id)

    def _arm(self, delay: float) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._timer = loop.call_later(delay, self._on_timer)
        return True

    def _on_timer(self) -> None:
        """The oldest pending end is ``LATER_S`` old: run them all; else wait until it is."""
        self._timer = None
        if not self._pending:
            return
        age = time.perf_counter() - (self._pending[0].ended or 0.0)
        if age >= LATER_S:
            self.drain()
        else:
            self._arm(LATER_S - age)


Hook = Callable[[RequestContext], None]


def _hooks(bound: list[Hook]) -> tuple[Hook, ...]:
    return tuple(hook for hook in bound if getattr(hook, "__func__", None) is not ignored)
