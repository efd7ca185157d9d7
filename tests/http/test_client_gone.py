"""``client_gone.watch``: a relay told of its client leaving without a task on ``receive()``,
only where that task would have been told, and nowhere it cannot stand in for one. The cycle's
``on_disconnect`` hook is called where the gateway's protocol marks it disconnected
(``client_left``): the connection lost, a read deadline passed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from gateway.http.client_gone import client_left, watch
from gateway.http.cycle import GatewayCycle
from gateway.http.serve_guard import BODY, GuardedHttpToolsProtocol


class Transport:
    def __init__(self) -> None:
        self.reading = True
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def cycle_with(event: asyncio.Event) -> tuple[GatewayCycle, Transport]:
    transport = Transport()
    scope: Any = {"type": "http", "method": "POST", "path": "/", "query_string": b""}
    scope["http_version"] = "1.1"
    logger = logging.getLogger("test_client_gone")
    flow = FlowControl(transport)  # type: ignore[arg-type]
    args: tuple[Any, ...] = (transport, flow, logger, logger, False, [], event, False, True)
    cycle = GatewayCycle(scope, *args, lambda: None)
    cycle.more_body = False
    return cycle, transport


def test_a_disconnect_calls_back_once_and_a_completed_answer_does_not() -> None:
    cycle, _ = cycle_with(asyncio.Event())
    gone: list[int] = []
    event = cycle.message_event
    stop = watch(cycle.send, cycle.receive, lambda: gone.append(1))
    assert stop is not None
    assert cycle.message_event is event and type(event) is asyncio.Event  # left as it was
    assert "on_disconnect" not in vars(cycle_with(asyncio.Event())[0])  # unwatched: nothing
    cycle.message_event.set()  # the answer's end sets it too: not a disconnect
    assert gone == []
    cycle.message_event.clear()
    client_left(cycle)  # where the protocol marks it disconnected
    client_left(cycle)
    assert gone == [1] and cycle.disconnected and cycle.message_event.is_set()


def test_a_stopped_watch_is_not_called() -> None:
    cycle, _ = cycle_with(asyncio.Event())
    gone: list[int] = []
    stop = watch(cycle.send, cycle.receive, lambda: gone.append(1))
    assert stop is not None
    stop()
    client_left(cycle)
    assert gone == []
    assert watch(cycle.send, cycle.receive, lambda: None) is None  # disconnected already


class Protocol(GuardedHttpToolsProtocol):
    """The gateway's protocol, its connection's state set by hand: no server, no socket."""

    def __init__(self, cycle: GatewayCycle, transport: Transport) -> None:
        self.cycle = cycle
        self.transport = transport  # type: ignore[assignment]
        self.flow = cycle.flow
        self.connections: set[Any] = set()
        self.logger = logging.getLogger("test_client_gone")
        self.timer = self.idle_timer = None
        self.phase = BODY
        self.parser = None  # type: ignore[assignment]
        self.client = None


def test_the_connection_lost_mid_answer_calls_back_at_once() -> None:
    """uvicorn's ``connection_lost`` marks the cycle disconnected; the gateway's protocol
    then tells the watcher, in the same call."""
    cycle, transport = cycle_with(asyncio.Event())
    gone: list[int] = []
    assert watch(cycle.send, cycle.receive, lambda: gone.append(1)) is not None
    cycle.response_started = True
    Protocol(cycle, transport).connection_lost(None)
    assert gone == [1] and cycle.disconnected and transport.closed


def test_the_connection_lost_after_the_answer_does_not_call_back() -> None:
    cycle, transport = cycle_with(asyncio.Event())
    gone: list[int] = []
    assert watch(cycle.send, cycle.receive, lambda: gone.append(1)) is not None
    cycle.response_complete = True
    Protocol(cycle, transport).connection_lost(None)
    assert gone == [] and not cycle.disconnected


def test_a_read_deadline_passed_mid_body_marks_the_cycle_through_its_hook() -> None:
    """The body's deadline: the app reads a disconnect (the cycle marked, its event set) and
    a hook on the cycle is told, as on a connection lost."""
    cycle, transport = cycle_with(asyncio.Event())
    cycle.more_body = True
    gone: list[int] = []
    cycle.on_disconnect = lambda: gone.append(1)
    Protocol(cycle, transport)._expire()
    assert gone == [1] and cycle.disconnected and cycle.message_event.is_set()
    assert transport.closed and transport.written[-1].startswith(b"HTTP/1.1 408 ")


def test_watching_resumes_reading_as_receive_does() -> None:
    cycle, transport = cycle_with(asyncio.Event())
    cycle.flow.pause_reading()
    assert not transport.reading
    assert watch(cycle.send, cycle.receive, lambda: None) is not None
    assert transport.reading


def test_what_cannot_be_watched_is_left_to_receive() -> None:
    """Another ``receive`` (a middleware's), another ``send``, a body still coming, an event
    already set, a cycle watched already: None, so the relay waits on ``receive()`` as before.
    (An event of another kind can be watched: the hook is the cycle's, not the event's.)"""

    cycle, _ = cycle_with(asyncio.Event())

    async def wrapped() -> Any:
        return await cycle.receive()

    assert watch(cycle.send, wrapped, lambda: None) is None
    assert watch(lambda message: None, cycle.receive, lambda: None) is None
    cycle.more_body = True
    assert watch(cycle.send, cycle.receive, lambda: None) is None
    cycle.more_body = False
    cycle.message_event.set()
    assert watch(cycle.send, cycle.receive, lambda: None) is None
    cycle.message_event.clear()
    assert watch(cycle.send, cycle.receive, lambda: None) is not None
    assert watch(cycle.send, cycle.receive, lambda: None) is None  # one watcher at a time


def test_what_waits_on_the_event_still_wakes_once_it_is_watched() -> None:
    async def main() -> list[int]:
        cycle, _ = cycle_with(asyncio.Event())
        waiting = asyncio.ensure_future(cycle.message_event.wait())
        await asyncio.sleep(0)
        gone: list[int] = []
        assert watch(cycle.send, cycle.receive, lambda: gone.append(1)) is not None
        client_left(cycle)
        assert await asyncio.wait_for(waiting, 1) is True
        return gone

    assert asyncio.run(main()) == [1]
