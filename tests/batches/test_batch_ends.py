"""A batch's window closing (``expired``: what ran is kept, the rest is an error line each), a
batch whose creator died while queueing (``failed``), and the per-user and per-batch bounds of
lines in flight. The batch service runs in this process on a clock the test moves; its lines are
answered by a stand-in at the runner's seam (where the app plugs the pipeline in)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.batches.jsonl import BatchLine
from gateway.batches.records import BatchRecord
from gateway.batches.runner import LineOutcome
from gateway.batches.service import Batches
from gateway.batches.settings import BatchSettings
from gateway.config.model import Settings
from gateway.observe.batch_metrics import BatchMetrics
from gateway.observe.metrics import Metrics
from gateway.store.factory import create_store
from gateway.store.port import Store
from tests.batches.test_openai_batches import chat_line, jsonl
from tests.redis_fixture import RedisServer

START = 1_800_000_000.0
CREATE = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        url = server.url
    yield create_store(url, Settings())


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):  # a bound, not a timing: each look yields to the lines' tasks
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}")


async def new_batch(service: Batches, owner: str, lines: int) -> BatchRecord:
    requests = [chat_line(f"{owner}-{n}") for n in range(lines)]
    file = await service.files.create(owner, io.BytesIO(jsonl(requests)), "in.jsonl", "batch")
    fields = {**CREATE, "input_file_id": file.id}
    return await service.create(owner, "0" * 64, fields, lambda model, body: None)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_batch_past_its_window_expires_keeping_what_ran(store: Store, tmp_path: Path) -> None:
    clock, metrics = Clock(), Metrics()
    sent: list[str] = []
    held = asyncio.Event()

    async def scenario() -> tuple[Any, ...]:
        settings = BatchSettings(files_dir=str(tmp_path), concurrency=3, user_concurrency=3)
        service = Batches(settings, store, clock=clock)
        service.observe(BatchMetrics(metrics))

        async def execute(record: BatchRecord, line: BatchLine) -> LineOutcome:
            sent.append(line.custom_id)
            if line.custom_id == "u1-2":
                await held.wait()  # still in flight when the window closes
            return LineOutcome(200, b'{"object": "chat.completion"}', f"req-{line.number}")

        service.runner.execute = execute
        record = await new_batch(service, "u1", 6)

        async def done(count: int) -> bool:
            return (await service.state.progress(record.id)).done == count

        await service.runner.step()  # three lines start
        await until(lambda: done(2), "two lines answered")
        clock.now = record.expires_at  # the window closes with u1-2 in flight
        await service.runner.step()
        closing, progress = await service.get("u1", record.id)
        waiting = (closing.status, progress.stop, sorted(sent))
        held.set()
        await until(lambda: done(3), "the line in flight answered")
        await service.runner.step()
        final, _ = await service.get("u1", record.id)
        assert final.output_file_id and final.error_file_id
        output = await service.files.content("u1", final.output_file_id)
        errors = await service.files.content("u1", final.error_file_id)
        return waiting, final, output, errors

    waiting, final, output, errors = asyncio.run(scenario())
    # the window closed: nothing new started, the line in flight went on
    assert waiting == ("in_progress", "expired", ["u1-0", "u1-1", "u1-2"])
    assert sorted(sent) == ["u1-0", "u1-1", "u1-2"]
    assert final.status == "expired" and final.expired_at == int(final.expires_at)
    assert final.final_counts == (6, 3, 3)
    answered = [orjson.loads(line) for line in output.splitlines()]
    assert sorted(item["custom_id"] for item in answered) == ["u1-0", "u1-1", "u1-2"]
    assert all(item["response"]["status_code"] == 200 for item in answered)
    expired = [orjson.loads(line) for line in errors.splitlines()]
    assert sorted(item["custom_id"] for item in expired) == ["u1-3", "u1-4", "u1-5"]
    for item in expired:
        assert item["response"] is None and item["error"]["code"] == "batch_expired"
    endpoint = CREATE["endpoint"]
    lines = "gateway_batch_lines_total"
    assert sample(metrics, lines, endpoint=endpoint, outcome="completed") == 3
    assert sample(metrics, lines, endpoint=endpoint, outcome="expired") == 3
    ended = "gateway_batches_ended_total"
    assert sample(metrics, ended, endpoint=endpoint, status="expired") == 1
    assert sample(metrics, "gateway_batch_lines_waiting") == 0


def test_a_batch_whose_creator_died_while_queueing_fails_and_runs_nothing(
    store: Store, tmp_path: Path
) -> None:
    clock, sent = Clock(), []

    async def scenario() -> BatchRecord:
        service = Batches(BatchSettings(files_dir=str(tmp_path)), store, clock=clock)

        async def execute(record: BatchRecord, line: BatchLine) -> LineOutcome:
            sent.append(line.custom_id)
            return LineOutcome(200, b"{}", "req")

        service.runner.execute = execute
        requests = jsonl([chat_line("never")])
        file = await service.files.create("u1", io.BytesIO(requests), "in.jsonl", "batch")
        # what ``Batches.create`` had done when its replica died: recorded, listed, not queued
        record = BatchRecord(
            id="batch_interrupted", owner="u1", key_digest="0" * 64, endpoint=CREATE["endpoint"],
            input_file_id=file.id, completion_window="24h", created_at=int(clock.now),
            expires_at=int(clock.now) + 86400, total=1,
        )  # fmt: skip
        await service.catalog.put_batch(record)
        await service.catalog.activate(record)
        await service.runner.step()
        still, _ = await service.get("u1", record.id)
        assert still.status == "validating"  # its creator may still be queueing
        clock.now += 600
        await service.runner.step()
        return (await service.get("u1", record.id))[0]

    failed = asyncio.run(scenario())
    assert failed.status == "failed" and failed.failed_at == int(START) + 600
    assert [error.code for error in failed.errors] == ["batch_creation_interrupted"]
    assert failed.final_counts == (0, 0, 0) and sent == []


def most_in_flight(
    store: Store, settings: BatchSettings, owners: tuple[str, ...], by: str
) -> tuple[dict[str, int], int]:
    """The most lines in flight at once for each owner or batch (``by``), and overall, while
    a batch of 6 lines of each of ``owners`` runs to its end."""
    most: dict[str, int] = {}
    now: dict[str, int] = {}
    overall = 0

    async def scenario() -> None:
        nonlocal overall
        service = Batches(settings, store)
        names = {}

        async def execute(record: BatchRecord, line: BatchLine) -> LineOutcome:
            nonlocal overall
            name = record.owner if by == "owner" else names[record.id]
            now[name] = now.get(name, 0) + 1
            most[name] = max(most.get(name, 0), now[name])
            overall = max(overall, sum(now.values()))
            await asyncio.sleep(0.05)
            now[name] -= 1
            return LineOutcome(200, b"{}", f"req-{line.number}")

        service.runner.execute = execute
        made = [(owner, await new_batch(service, owner, 6)) for owner in owners]
        names.update({record.id: f"batch-{n}" for n, (_, record) in enumerate(made)})
        await service.runner.start()
        try:
            for owner, record in made:

                async def completed(owner: str = owner, record: BatchRecord = record) -> bool:
                    return (await service.get(owner, record.id))[0].status == "completed"

                await until(completed, f"{owner}'s batch completed")
        finally:
            await service.runner.aclose()

    asyncio.run(scenario())
    return most, overall


def test_a_user_limit_bounds_each_users_lines_in_flight(store: Store, tmp_path: Path) -> None:
    settings = BatchSettings(files_dir=str(tmp_path), concurrency=8, user_concurrency=2)
    most, overall = most_in_flight(store, settings, ("u1", "u2"), by="owner")
    assert most == {"u1": 2, "u2": 2} and overall == 4  # 8 allowed per replica; per user: 2


def test_a_batch_limit_bounds_each_batchs_lines_in_flight(store: Store, tmp_path: Path) -> None:
    assert BatchSettings.from_env({}).batch_concurrency is None  # unset: no bound of its own
    env = {"GATEWAY_BATCH_PER_BATCH_CONCURRENCY": "3", "GATEWAY_BATCH_CONCURRENCY": "8"}
    settings = BatchSettings.from_env(
        {**env, "GATEWAY_BATCH_USER_CONCURRENCY": "8", "GATEWAY_FILES_DIR": str(tmp_path)}
    )
    most, overall = most_in_flight(store, settings, ("u1", "u1"), by="batch")
    assert most == {"batch-0": 3, "batch-1": 3} and overall == 6  # one user's two batches
