"""Concurrent admits never overshoot: two meters with their own pools, and two processes."""

from __future__ import annotations

import asyncio
import multiprocessing

from gateway.config.model import Config, Quota
from gateway.errors import QuotaExceeded
from gateway.metering import Meter
from gateway.store.factory import create_store

from .helpers import Clock, metered, request, run
from .workers import admit_many, process_main


def test_two_meters_admit_exactly_the_request_quota(config: Config, redis_url: str) -> None:
    async def scenario() -> list[tuple[int, int]]:
        return list(await asyncio.gather(*(admit_many(redis_url, 100, {}) for _ in range(2))))

    results = run(scenario())
    assert sum(a for a, _ in results) == 50
    assert sum(d for _, d in results) == 150


def test_two_processes_admit_exactly_the_request_quota(redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=process_main, args=(redis_url, 100, barrier, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    results.close()
    results.join_thread()
    assert sum(a for a, _ in outcomes) == 50
    assert sum(d for _, d in outcomes) == 150


def test_token_quota_is_exact_under_concurrency(config: Config, redis_url: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        stores = [create_store(redis_url, config.settings) for _ in range(2)]
        meters = [Meter(config, store, clock=Clock()) for store in stores]
        override = Quota(requests_per_day=1000, tokens_per_day=5000)
        await meters[0].users.set_override("alice", "text_generation", override)
        await meters[0].users.set_override("alice", "embeddings", Quota(tokens_per_day=5000))
        # text: 10 prompt + up to 90 output tokens each; embeddings: 100 prompt tokens each
        text = request(config, prompt=10, max_tokens=90)
        embed = request(config, capability="embeddings", prompt=100)
        calls = [meters[i % 2].admit(text if i < 200 else embed) for i in range(400)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, BaseException))
        granted_text = sum(
            r.reserved.tokens for r in results[:200] if not isinstance(r, BaseException)
        )
        admitted = [not isinstance(r, BaseException) for r in results]
        view = await meters[1].users.quota_view("alice", config.tiers["free"])
        for store in stores:
            await store.aclose()
        text, embeddings = (
            view["capabilities"][c]["tokens"] for c in ("text_generation", "embeddings")
        )
        assert (text["used"], text["reserved"]) == (0, granted_text)  # all still in flight
        assert (embeddings["used"], embeddings["reserved"]) == (0, 5000)
        return sum(admitted[:200]), sum(admitted[200:]), granted_text

    text_admitted, embed_admitted, granted_text = run(scenario())
    assert (text_admitted, embed_admitted, granted_text) == (50, 50, 5000)


def test_cluster_admits_exactly_the_request_quota(config: Config, cluster_server: object) -> None:
    url = cluster_server.url  # type: ignore[attr-defined]
    cluster_server.flushall()  # type: ignore[attr-defined]

    async def scenario() -> int:
        async with metered(config, url, clock=Clock()) as (meter, _):
            results = await asyncio.gather(
                *(meter.admit(request(config)) for _ in range(200)), return_exceptions=True
            )
        return sum(not isinstance(r, BaseException) for r in results)

    assert run(scenario()) == 50
