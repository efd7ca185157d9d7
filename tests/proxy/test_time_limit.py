"""TimeLimit behaves as asyncio.timeout: our own cancellation becomes TimeoutError, others' not."""

from __future__ import annotations

import asyncio

import pytest

from gateway.proxy.time_limit import TimeLimit


async def limited(limit: float, work: float) -> str:
    with TimeLimit(limit):
        await asyncio.sleep(work)
    return "done"


def test_work_past_the_limit_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        asyncio.run(limited(0.01, 30))


def test_work_within_the_limit_leaves_no_timer_behind() -> None:
    async def run() -> tuple[str, int]:
        result = await limited(30, 0)
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    assert asyncio.run(run()) == ("done", 0)


def test_a_limit_already_past_still_lets_the_task_be_cancelled_at_the_next_await() -> None:
    with pytest.raises(TimeoutError):
        asyncio.run(limited(-1, 30))


def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    async def run() -> None:
        task = asyncio.ensure_future(limited(30, 30))
        await asyncio.sleep(0)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())


def test_a_cancellation_swallowed_inside_is_no_timeout() -> None:
    async def run() -> str:
        with TimeLimit(0.01):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "caught"
        return "not reached"

    assert asyncio.run(run()) == "caught"


def test_outside_a_task_it_refuses() -> None:
    with pytest.raises(RuntimeError), TimeLimit(1):
        pass


def test_a_shorter_limit_started_after_a_longer_one_expires_at_its_own_deadline() -> None:
    async def run() -> list[str]:
        longer = asyncio.ensure_future(limited(30, 0.5))
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            await limited(0.01, 30)
        ended = ["short timed out", "long still running" if not longer.done() else "long done"]
        ended.append(await longer)
        return ended

    assert asyncio.run(run()) == ["short timed out", "long still running", "done"]


def test_limits_that_end_early_never_cut_the_ones_still_running() -> None:
    async def run() -> list[str]:
        for _ in range(500):  # many limits ended well before their deadline
            await limited(0.02, 0)
        results = await asyncio.gather(limited(30, 0.05), limited(0.01, 30), return_exceptions=True)
        return [type(result).__name__ if isinstance(result, BaseException) else result
                for result in results]  # fmt: skip

    assert asyncio.run(run()) == ["done", "TimeoutError"]
