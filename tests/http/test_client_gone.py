"""``client_gone.watch``: a relay told of its client leaving without a task on ``receive()``,
only where that task would have been told, and nowhere it cannot stand in for one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from gateway.http.client_gone import WatchedEvent, watch
from gateway.http.cycle import GatewayCycle


class Transport:
    def __init__(self) -> None:
        self.reading = True
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False


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
    assert cycle.message_event is event and type(event) is WatchedEvent  # only this one's
    assert type(asyncio.Event()) is asyncio.Event
    cycle.message_event.set()  # the answer's end sets it too: not a disconnect
    assert gone == []
    cycle.message_event.clear()
    cycle.disconnected = True  # as uvicorn's connection_lost does
    cycle.message_event.set()
    cycle.message_event.set()
    assert gone == [1]


def test_a_stopped_watch_is_not_called() -> None:
    cycle, _ = cycle_with(asyncio.Event())
    gone: list[int] = []
    stop = watch(cycle.send, cycle.receive, lambda: gone.append(1))
    assert stop is not None
    stop()
    cycle.disconnected = True
    cycle.message_event.set()
    assert gone == []
    assert watch(cycle.send, cycle.receive, lambda: None) is None  # disconnected already


def test_watching_resumes_reading_as_receive_does() -> None:
    cycle, transport = cycle_with(asyncio.Event())
    cycle.flow.pause_reading()
    assert not transport.reading
    assert watch(cycle.send, cycle.receive, lambda: None) is not None
    assert transport.reading


def test_what_cannot_be_watched_is_left_to_receive() -> None:
    """An event of another kind, another ``receive`` (a middleware's), a body still coming,
    an event already set or watched: None, so the relay waits on ``receive()`` as before."""

    class OwnEvent(asyncio.Event):
        pass

    other, _ = cycle_with(OwnEvent())
    assert watch(other.send, other.receive, lambda: None) is None

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
        cycle.disconnected = True
        cycle.message_event.set()
        assert await asyncio.wait_for(waiting, 1) is True
        return gone

    assert asyncio.run(main()) == [1]
