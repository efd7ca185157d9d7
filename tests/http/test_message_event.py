"""The request cycle's message event behaves as asyncio's ``Event``."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http.message_event import MessageEvent


def test_it_is_set_cleared_and_waited_on_as_an_event() -> None:
    async def run() -> None:
        event = MessageEvent()
        assert isinstance(event, asyncio.Event) and not event.is_set()
        assert "waiters" not in repr(event) and "[unset]" in repr(event)
        event.set()
        assert event.is_set() and await event.wait() is True  # set: no wait
        event.clear()
        waiters = [asyncio.ensure_future(event.wait()) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(waiter.done() for waiter in waiters) and "waiters:2" in repr(event)
        event.set()
        assert await asyncio.gather(*waiters) == [True, True]
        event.clear()
        cancelled = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert "waiters" not in repr(event)  # the cancelled waiter is gone
        assert MessageEvent().is_set() is False  # each event its own flag

    asyncio.run(run())
