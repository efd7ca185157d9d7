"""Streams still open when the shutdown grace period ends: ended in-band, not at TCP level.

uvicorn cancels whatever still runs once ``timeout_graceful_shutdown`` has passed: a stream cut
that way ends with no error and no ``[DONE]`` (the openai SDK takes it as complete), is
recorded as the client's leaving (499) and logs "Exception in ASGI application". Instead, a
little before that moment, every open relay whose body can end itself in-band (it has a
``server_cut() -> bytes`` method: an SSE relay) is cut by the server: the relay's task is
cancelled, the body marks itself ended by the server and gives the bytes that end it (an
in-band error and ``[DONE]``), the response ends cleanly, and its record says 503
``server_shutting_down``. Other relays (raw bytes) are still cut by uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

STATE_KEY = "gateway.open_relays"  # in the server's app state, shared by its connections
CUT_MARGIN_S = 0.5  # before uvicorn's own cancellation (grace + 0.1 s after shutdown began)


class OpenRelays:
    """The relays of one server still streaming, each with the callback that cuts it."""

    def __init__(self) -> None:
        self._cuts: set[Callable[[], None]] = set()
        self._scheduled = False

    def add(self, cut: Callable[[], None]) -> None:
        self._cuts.add(cut)

    def discard(self, cut: Callable[[], None]) -> None:
        self._cuts.discard(cut)

    def schedule(self, loop: asyncio.AbstractEventLoop, grace_s: float | None) -> None:
        """The server began shutting down: cut what is still open just before the grace
        period ends (once; no grace period: nothing is ever cancelled, nothing to do)."""
        if self._scheduled or grace_s is None:
            return
        self._scheduled = True
        loop.call_later(max(0.0, grace_s - CUT_MARGIN_S), self.cut_all)

    def cut_all(self) -> None:
        for cut in list(self._cuts):
            cut()
