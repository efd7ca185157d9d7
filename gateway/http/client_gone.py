"""Told when a client leaves during its answer, without a task waiting on ``receive()``.

A relay learns that its client is gone from ``receive()`` returning ``http.disconnect``; a task
per stream waiting on it costs a task's creation, its first step, its wake-up and its done
callback (two turns of the loop). ``watch`` hooks the set of the request cycle's message event
instead (the event becomes a ``WatchedEvent`` for that one cycle: a JSON answer's event stays
a plain one, whose ``set`` costs no frame more), and calls back where the protocol marks the
cycle disconnected (the connection lost, a read deadline passed), as the waiting task would
have learned it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from gateway.http.cycle import GatewayCycle


class WatchedEvent(asyncio.Event):
    """An ``asyncio.Event`` that also calls ``watcher`` (if any) each time it is set."""

    watcher: Callable[[], None] | None = None

    def set(self) -> None:
        super().set()
        watcher = self.watcher
        if watcher is not None:
            watcher()


def watch(send: Any, receive: Any, gone: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``gone`` once if the client disconnects while the cycle behind ``send`` and
    ``receive`` (its own methods, both) has its body read and its answer not complete: what a
    task awaiting ``receive()`` would report as ``http.disconnect``. Reading is resumed, as
    ``receive`` does before it waits, so that a client closing is seen. Returns what ends the
    watch; None, nothing done, when the cycle cannot be watched so (wait on ``receive``)."""
    found = getattr(send, "__self__", None)
    if not isinstance(found, GatewayCycle):
        return None
    cycle: GatewayCycle = found
    if (
        getattr(receive, "__self__", None) is not cycle
        or getattr(receive, "__func__", None) is not GatewayCycle.receive
        or cycle.more_body
        or cycle.waiting_for_100_continue
        or cycle.response_complete
        or cycle.disconnected
    ):
        return None
    event = cycle.message_event
    if type(event) is not asyncio.Event or event.is_set():  # watched already, or not ours
        return None

    def on_set() -> None:
        if cycle.disconnected:
            watched.watcher = None
            gone()

    cycle.flow.resume_reading()
    watched = cast(WatchedEvent, event)
    watched.__class__ = WatchedEvent  # the same object: what waits on it, and its state, stay
    watched.watcher = on_set

    def stop() -> None:
        watched.watcher = None

    return stop
