"""The ``BatchState`` contract, held by both forms (process memory and Redis): a line is
begun by one runner only and answered once, whoever delivers its entry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio

from gateway.batches.redis_state import RedisBatchState
from gateway.batches.state import DONE, BatchState, MemoryBatchState
from tests.redis_fixture import RedisServer


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[BatchState]:
    if request.param == "memory":
        yield MemoryBatchState()
        return
    server: RedisServer = request.getfixturevalue("redis")
    client = redis.asyncio.Redis.from_url(server.url)
    yield RedisBatchState(lambda: client)


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_a_line_is_begun_by_one_runner_and_answered_once(state: BatchState) -> None:
    async def scenario() -> None:
        await state.enqueue("b1", 3)
        taken = await state.read("b1", "alpha", 10)
        assert [entry.line for entry in taken] == [0, 1, 2]
        assert await state.read("b1", "beta", 10) == []  # each entry is delivered once
        assert await state.begin("b1", 0, "alpha") == "alpha"
        assert await state.begin("b1", 0, "beta") == "alpha"  # the line is alpha's
        assert await state.finish("b1", 0, b"o{}", True) is True
        assert await state.finish("b1", 0, b"e{}", False) is False  # never answered twice
        assert await state.begin("b1", 0, "beta") == DONE
        assert await state.begin("b1", 1, "alpha") == "alpha"
        await state.release("b1", 1)  # not sent (a quota refused it): free again
        assert await state.begin("b1", 1, "beta") == "beta"
        progress = await state.progress("b1")
        assert (progress.started, progress.done, progress.completed) == (2, 1, 1)
        assert await state.results("b1") == {0: b"o{}"}

    run(scenario())


def test_an_entry_left_unacknowledged_is_claimed_by_another_runner(state: BatchState) -> None:
    async def scenario() -> None:
        await state.enqueue("b2", 2)
        first = await state.read("b2", "dead", 2)
        await state.ack("b2", [first[0].id])
        await asyncio.sleep(0.05)
        claimed = await state.claim_stale("b2", "alive", 20, 10)
        assert [entry.line for entry in claimed] == [1]
        await state.ack("b2", [claimed[0].id])
        await asyncio.sleep(0.05)
        assert await state.claim_stale("b2", "alive", 20, 10) == []

    run(scenario())


def test_a_requeued_line_is_read_again_once_and_its_old_entry_is_gone(state: BatchState) -> None:
    async def scenario() -> None:
        await state.enqueue("b3", 2)
        first, second = await state.read("b3", "alpha", 2)
        await state.requeue("b3", first)  # refused by a quota: queued behind the others
        again = await state.read("b3", "beta", 10)
        assert [entry.line for entry in again] == [0] and again[0].id != first.id
        await state.requeue("b3", first)  # no longer pending: nothing queued twice
        await state.ack("b3", [second.id])
        assert await state.read("b3", "beta", 10) == []
        await asyncio.sleep(0.05)
        stale = await state.claim_stale("b3", "gamma", 20, 10)
        assert [(entry.id, entry.line) for entry in stale] == [(again[0].id, 0)]

    run(scenario())


def test_storage_bytes_add_up_per_owner(state: BatchState) -> None:
    async def scenario() -> None:
        assert await state.add_stored_bytes("ann", 10) == 10
        assert await state.add_stored_bytes("ann", 5) == 15
        assert await state.add_stored_bytes("bob", 1) == 1
        assert await state.add_stored_bytes("ann", -15) == 0

    run(scenario())
