"""``next_or_flush``: the next item at once when ready, ``flush`` first when it must wait, and
``await anext``'s behaviour otherwise (values, failures, cancellation reach the iterator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.http.lookahead import next_or_flush


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def flush(self) -> None:
        self.lines.append("flush")


async def items(log: Log, *waits: Callable[[], Awaitable[None]] | None) -> AsyncIterator[int]:
    """One item per entry of ``waits``, each after awaiting it (None: ready at once)."""
    try:
        for n, wait in enumerate(waits):
            if wait is not None:
                log.lines.append(f"wait {n}")
                await wait()
                log.lines.append(f"woke {n}")
            yield n
    except BaseException as exc:
        log.lines.append(f"saw {type(exc).__name__}")
        raise
    finally:
        log.lines.append("closed")


async def pause() -> None:
    await asyncio.sleep(0.001)


async def collect(log: Log, iterator: AsyncIterator[int]) -> list[int]:
    got = []
    while True:
        try:
            got.append(await next_or_flush(iterator, log.flush))
        except StopAsyncIteration:
            return got


def test_ready_items_and_a_ready_end_never_flush() -> None:
    log = Log()
    assert asyncio.run(collect(log, items(log, None, None))) == [0, 1]
    assert log.lines == ["closed"]


def test_a_wait_flushes_before_it_waits() -> None:
    log = Log()
    assert asyncio.run(collect(log, items(log, pause, None, pause))) == [0, 1, 2]
    assert log.lines == ["wait 0", "flush", "woke 0", "wait 2", "flush", "woke 2", "closed"]


def test_an_end_after_a_wait_flushes_first() -> None:
    log = Log()

    async def then_end() -> AsyncIterator[int]:
        yield 0
        await pause()

    assert asyncio.run(collect(log, then_end())) == [0]
    assert log.lines == ["flush"]


def test_a_failure_of_what_it_waits_for_reaches_the_iterator() -> None:
    log = Log()

    async def failing() -> None:
        await asyncio.sleep(0.001)
        raise ConnectionResetError("upstream gone")

    async def absorbing() -> AsyncIterator[int]:
        try:
            await failing()
        except ConnectionResetError:
            yield -1  # an in-band error event, as the SSE relay gives

    assert asyncio.run(collect(log, absorbing())) == [-1]
    log = Log()
    with pytest.raises(ConnectionResetError):
        asyncio.run(collect(log, items(log, failing)))
    assert log.lines == ["wait 0", "flush", "saw ConnectionResetError", "closed"]


def test_a_cancellation_while_waiting_reaches_the_iterator() -> None:
    log = Log()

    async def main() -> None:
        blocked = asyncio.Event()

        async def wait() -> None:
            blocked.set()
            await asyncio.Event().wait()  # never set

        task = asyncio.ensure_future(collect(log, items(log, None, wait)))
        await blocked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log.lines == ["wait 1", "flush", "saw CancelledError", "closed"]


def test_a_failed_flush_ends_the_iterator_with_its_failure() -> None:
    """The iterator, left mid-step, sees the failure where it waits and cleans up."""
    log = Log()

    def broken_flush() -> None:
        raise RuntimeError("transport closed")

    async def main() -> None:
        iterator = items(log, None, pause, None)
        assert await next_or_flush(iterator, broken_flush) == 0
        with pytest.raises(RuntimeError, match="transport closed"):
            await next_or_flush(iterator, broken_flush)

    asyncio.run(main())
    assert log.lines == ["wait 1", "saw RuntimeError", "closed"]


def test_a_cancellation_as_the_wait_ends_reaches_the_iterator() -> None:
    """The task throws the cancellation in (what it waited for is done): the iterator sees it
    where it waits, as with a plain ``await``."""
    log = Log()

    async def main() -> None:
        ready = asyncio.get_running_loop().create_future()
        blocked = asyncio.Event()

        async def wait() -> None:
            blocked.set()
            await ready

        task = asyncio.ensure_future(collect(log, items(log, wait, None)))
        await blocked.wait()
        ready.set_result(None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log.lines == ["wait 0", "flush", "saw CancelledError", "closed"]
