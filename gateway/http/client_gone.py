"""Told when a client leaves during its answer, without a task waiting on ``receive()``.

A relay learns that its client is gone from ``receive()`` returning ``http.disconnect``; a task
per stream waiting on it costs a task's creation, its first step, its wake-up and its done
callback (two turns of the loop). ``watch`` sets the request cycle's ``on_disconnect`` hook
instead, which ``client_left`` calls where the gateway's protocol marks the cycle disconnected
(the connection lost, a read deadline passed), as the waiting task would have learned it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.http.cycle import GatewayCycle


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
        or cycle.on_disconnect is not None  # one watcher at a time
        or cycle.message_event.is_set()  # a message ``receive`` has not taken yet
    ):
        return None
    cycle.flow.resume_reading()
    cycle.on_disconnect = gone

    def stop() -> None:
        if cycle.on_disconnect is gone:
            cycle.on_disconnect = None

    return stop


def client_left(cycle: GatewayCycle) -> None:
    """The client is gone: ``cycle`` marked disconnected, its ``receive`` woken (where the
    protocol has not done so already: both are idempotent) and its watcher told, once. What
    the gateway's protocol calls wherever it marks a cycle disconnected."""
    cycle.disconnected = True
    cycle.message_event.set()
    hook = cycle.on_disconnect
    if hook is not None:
        cycle.on_disconnect = None
        hook()
