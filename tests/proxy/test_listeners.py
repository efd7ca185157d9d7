"""The listeners of a request's end: those that may wait hear of it later, never lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.proxy import listeners as listeners_module
from gateway.proxy.context import RequestContext
from gateway.proxy.listeners import Listeners, ignored
from gateway.proxy.routing import CHAT


class Heard:
    started = relaying = ignored

    def __init__(self, name: str, log: list[tuple[str, str]], deferrable: bool) -> None:
        self.name = name
        self.log = log
        self.deferrable = deferrable

    def finished(self, ctx: RequestContext) -> None:
        self.log.append((self.name, ctx.request_id))


def ended(request_id: str) -> RequestContext:
    ctx = RequestContext(request_id, CHAT)
    ctx.ended = time.perf_counter()
    return ctx


def three(log: list[tuple[str, str]]) -> Listeners:
    return Listeners(
        [Heard("metrics", log, False), Heard("billing", log, True), Heard("access", log, True)]
    )


def test_the_others_hear_at_once_the_deferrable_in_order_when_drained() -> None:
    async def main() -> None:
        log: list[tuple[str, str]] = []
        heard = three(log)
        heard.finished(ended("a"))
        heard.finished(ended("b"))
        assert log == [("metrics", "a"), ("metrics", "b")]
        heard.drain()
        assert log[2:] == [("billing", "a"), ("access", "a"), ("billing", "b"), ("access", "b")]
        heard.drain()
        assert len(log) == 6  # each heard once

    asyncio.run(main())


def test_drain_soon_runs_them_at_the_next_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listeners_module, "LATER_S", 60.0)  # turns counted, not the timer

    async def main() -> None:
        log: list[tuple[str, str]] = []
        heard = three(log)
        heard.finished(ended("a"))
        heard.drain_soon()
        assert log == [("metrics", "a")]
        await asyncio.sleep(0)
        assert log == [("metrics", "a"), ("billing", "a"), ("access", "a")]

    asyncio.run(main())


def test_with_no_request_after_it_they_hear_within_the_delay() -> None:
    """The timer armed for the first end runs the later ones too, when they are due (whatever
    the load: no step here depends on how long a sleep takes)."""

    async def main() -> None:
        log: list[tuple[str, str]] = []
        heard = three(log)
        heard.finished(ended("a"))  # arms the timer
        heard.drain()  # heard early, as in another request's wait: the timer stays armed
        heard.finished(ended("b"))  # younger than the delay, most likely, when the timer runs
        assert log == [("metrics", "a"), ("billing", "a"), ("access", "a"), ("metrics", "b")]
        deadline = time.monotonic() + 2
        while len(log) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert log[4:] == [("billing", "b"), ("access", "b")]
        await asyncio.sleep(2 * listeners_module.LATER_S)
        assert len(log) == 6  # each heard once

    asyncio.run(main())


def test_with_no_event_loop_they_hear_at_once() -> None:
    log: list[tuple[str, str]] = []
    three(log).finished(ended("a"))
    assert log == [("metrics", "a"), ("billing", "a"), ("access", "a")]


def test_one_failing_does_not_keep_the_next_requests_from_the_others() -> None:
    class Failing(Heard):
        def finished(self, ctx: RequestContext) -> None:
            if ctx.request_id == "a":
                raise RuntimeError("broken")
            super().finished(ctx)

    async def main() -> None:
        log: list[tuple[str, str]] = []
        heard = Listeners([Failing("billing", log, True)])
        heard.finished(ended("a"))
        heard.finished(ended("b"))
        heard.drain()
        assert log == [("billing", "b")]

    asyncio.run(main())


def test_drain_after_next_turn_runs_them_a_turn_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listeners_module, "LATER_S", 60.0)  # turns counted, not the timer

    async def main() -> None:
        log: list[tuple[str, str]] = []
        heard = three(log)
        heard.finished(ended("a"))
        heard.drain_after_next_turn()
        await asyncio.sleep(0)
        assert log == [("metrics", "a")]  # the turn that writes what this one queued
        await asyncio.sleep(0)
        assert log == [("metrics", "a"), ("billing", "a"), ("access", "a")]

    asyncio.run(main())


def test_a_deferrable_listeners_at_end_is_heard_at_once() -> None:
    class Gauged(Heard):
        def at_end(self, ctx: RequestContext) -> None:
            self.log.append(("gauge", ctx.request_id))

    async def main() -> None:
        log: list[tuple[str, str]] = []
        heard = Listeners([Gauged("counts", log, True), Heard("billing", log, True)])
        heard.finished(ended("a"))
        assert log == [("gauge", "a")]
        heard.drain()
        assert log == [("gauge", "a"), ("counts", "a"), ("billing", "a")]

    asyncio.run(main())
