"""The usage rollups folded outside the serving process: ``gateway usage roll`` and its switch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio

from gateway.config.model import Config
from gateway.config.runtime import Runtime
from gateway.store.factory import create_store
from gateway.store.port import SettleBatch, Store
from gateway.usage.analytics import RedisAnalytics, UsageFilter
from gateway.usage.rollup import CURSOR_KEY

ROOT = Path(__file__).resolve().parents[2]
DAY = 1_795_305_600.0  # 2026-11-22T00:00:00Z
WINDOW = UsageFilter(DAY, DAY + 86_400)


async def add(store: Store, count: int) -> None:
    records = [
        {"ts": DAY + i, "request_id": f"r{i}", "user": "u", "tier": "free", "model": "m",
         "provider": "p", "capability": "chat", "status": 200, "prompt_tokens": 1}
        for i in range(count)
    ]  # fmt: skip
    await store.settle([SettleBatch((), orjson.dumps(r)) for r in records])


async def folded_cursor(store: Store, timeout_s: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cursor = await store.get_document(CURSOR_KEY, "cursor")
        if cursor:
            return cursor
        await asyncio.sleep(0.05)
    raise AssertionError("the records were never folded")


def test_the_switch_is_read_from_the_environment() -> None:
    assert Runtime.from_env({}).roll_usage
    assert Runtime.from_env({"GATEWAY_USAGE_ROLL": "1"}).roll_usage
    for off in ("0", "false", "No"):
        assert not Runtime.from_env({"GATEWAY_USAGE_ROLL": off}).roll_usage


def test_without_the_background_roller_a_query_still_folds_first(redis_url, config) -> None:
    asyncio.run(_without_the_background_roller_a_query_still_folds_first(redis_url, config))


async def _without_the_background_roller_a_query_still_folds_first(
    redis_url: str, config: Config
) -> None:
    store = create_store(redis_url, config.settings)
    serving = RedisAnalytics(store, background=False)
    await serving.start()
    try:
        await add(store, 5)
        await asyncio.sleep(0.3)
        assert await store.get_document(CURSOR_KEY, "cursor") is None  # nothing folds alone
        [total] = await serving.totals(WINDOW, [], "all")
        assert total["requests"] == 5
    finally:
        await serving.aclose()
        await store.aclose()


def test_a_roller_of_its_own_folds_for_the_serving_process(redis_url, config) -> None:
    asyncio.run(_a_roller_of_its_own_folds_for_the_serving_process(redis_url, config))


async def _a_roller_of_its_own_folds_for_the_serving_process(
    redis_url: str, config: Config
) -> None:
    store = create_store(redis_url, config.settings)
    roller = asyncio.create_task(RedisAnalytics(store).roll_forever())
    try:
        await add(store, 7)
        await folded_cursor(store)
        [total] = await RedisAnalytics(store, background=False).totals(WINDOW, [], "all")
        assert total["requests"] == 7
    finally:
        roller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await roller
        await store.aclose()


def test_the_roll_command_folds_until_stopped(redis_url, config) -> None:
    asyncio.run(_the_roll_command_folds_until_stopped(redis_url, config))


async def _the_roll_command_folds_until_stopped(redis_url: str, config: Config) -> None:
    store = create_store(redis_url, config.settings)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gateway", "usage", "roll", "--config-dir", str(ROOT)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        await add(store, 3)
        await folded_cursor(store)
        assert proc.poll() is None  # still running: it folds until stopped
        [total] = await RedisAnalytics(store, background=False).totals(WINDOW, [], "all")
        assert total["requests"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        await store.aclose()
    assert proc.returncode == 0  # SIGTERM (a pod stopped) ends it between runs, cleanly


def test_the_roll_command_needs_redis(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_SENTINELS")}
    command = [sys.executable, "-m", "gateway", "usage", "roll", "--config-dir", str(ROOT)]
    result = subprocess.run(
        command, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stderr


@pytest.mark.parametrize("argv", [["usage", "roll", "--config-dir", "/some/dir"]])
def test_roll_takes_config_dir_after_it(argv) -> None:
    from gateway.cli.parser import build_parser

    assert build_parser().parse_args(argv).config_dir == "/some/dir"


def test_a_query_cancelled_mid_run_lets_the_run_finish(redis_url, config) -> None:
    asyncio.run(_a_query_cancelled_mid_run_lets_the_run_finish(redis_url, config))


async def _a_query_cancelled_mid_run_lets_the_run_finish(redis_url: str, config: Config) -> None:
    """A run cut between writing documents and moving the cursor would leave its range to be
    folded again (counted twice): a query whose client leaves mid-run, and the process
    stopping, let the run finish and move the cursor."""
    store = create_store(redis_url, config.settings)
    serving = RedisAnalytics(store, background=False)
    watcher = redis.asyncio.from_url(redis_url)
    try:
        await add(store, 3000)
        query = asyncio.create_task(serving.totals(WINDOW, [], "all"))
        while not await watcher.exists("gw:roll:claim:start") and not query.done():
            pass  # until the run has claimed the stream's start
        assert not query.done(), "the run ended before it could be cut"
        query.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await query
        await serving.aclose()  # waits for the run under way
        assert await store.get_document(CURSOR_KEY, "cursor")
        [total] = await serving.totals(WINDOW, [], "all")
        assert total["requests"] == 3000
    finally:
        await watcher.aclose()
        await store.aclose()
