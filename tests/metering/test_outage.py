"""Redis goes away mid-test: the meter keeps serving and loses no usage record."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest
import redis.asyncio

from gateway.config.model import Config
from gateway.errors import StoreUnavailable
from gateway.metering import Meter
from gateway.store.factory import create_store

from .helpers import Clock, RedisServer, ok, request, run, with_settings


async def stream_length(url: str) -> int:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return int(await client.xlen("gw:usage"))
    finally:
        await client.aclose()


async def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_outage_allows_buffers_and_flushes(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.metering")
    with RedisServer() as server:

        async def scenario() -> None:
            store = create_store(server.url, config.settings)
            meter = Meter(config, store, clock=Clock())
            await meter.start()
            try:
                await meter.admit(request(config))  # connects while the server is up
                assert await meter.store_status() == "ok"
                server.stop()
                assert await meter.store_status() == "unavailable"
                for index in range(20):
                    admission = await meter.admit(request(config, request_id=f"r{index}"))
                    assert admission.headers == {}
                    meter.finish(admission, ok(10, 5))
                await meter.settled()
                assert meter.health.degraded and meter.health.errors_total >= 1
                assert meter.buffered_records == 20

                server.start()  # same port, empty (no persistence)
                await wait_until(lambda: meter.buffered_records == 0)
                assert not meter.health.degraded
                assert await stream_length(server.url) == 20
                view = await meter.users.quota_view("alice", config.tiers["free"])
                assert view["capabilities"]["text_generation"]["requests"]["used"] == 20
                assert view["capabilities"]["text_generation"]["tokens"]["used"] == 300
                await meter.admit(request(config))  # the restarted server lost the script
            finally:
                await meter.aclose()
                await store.aclose()

        run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.metering"]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1


def test_outage_with_deny_policy_raises_store_unavailable(config: Config) -> None:
    config = with_settings(config, on_store_error="deny")
    with RedisServer() as server:

        async def scenario() -> None:
            store = create_store(server.url, config.settings)
            meter = Meter(config, store, clock=Clock())
            try:
                await meter.admit(request(config))
                server.stop()
                for _ in range(3):
                    with pytest.raises(StoreUnavailable) as caught:
                        await meter.admit(request(config))
                    assert caught.value.status == 503
                with pytest.raises(StoreUnavailable):
                    await meter.users.quota_view("alice", config.tiers["free"])
            finally:
                await meter.aclose()
                await store.aclose()

        run(scenario())


def test_buffer_is_bounded(config: Config) -> None:
    config = with_settings(config, usage_buffer_max=5)
    with RedisServer() as server:

        async def scenario() -> None:
            store = create_store(server.url, config.settings)
            meter = Meter(config, store, clock=Clock())
            try:
                server.stop()
                for _ in range(8):
                    meter.finish(await meter.admit(request(config)), ok())
                await meter.settled()
                assert (meter.buffered_records, meter.dropped_records) == (5, 3)
            finally:
                await meter.aclose(timeout_s=0.2)
                await store.aclose()

        run(scenario())


def test_deny_gives_back_a_reservation_whose_reply_timed_out(config: Config) -> None:
    """Issue 23 item 14: Redis stalls (SIGSTOP) while reserves are in flight; each times out
    and is refused (deny), but Redis runs it once resumed. Those leases must be given back
    once Redis answers, not held until their lease expires (900 s)."""
    config = with_settings(config, on_store_error="deny")
    with RedisServer() as server:

        async def scenario() -> None:
            store = create_store(server.url, config.settings)
            meter = Meter(config, store, clock=Clock())
            await meter.start()
            process = server._process
            assert process is not None
            try:
                await meter.admit(request(config, request_id="warm"))  # connected, 1 in flight
                os.kill(process.pid, signal.SIGSTOP)
                try:
                    admits = [meter.admit(request(config, request_id=f"r{i}")) for i in range(5)]
                    results = await asyncio.gather(*admits, return_exceptions=True)
                finally:
                    os.kill(process.pid, signal.SIGCONT)
                assert all(isinstance(r, StoreUnavailable) for r in results), results

                def line() -> dict[str, int]:
                    return held[0]["capabilities"]["text_generation"]["requests"]  # type: ignore[no-any-return]

                held: list[dict[str, object]] = []

                async def reserved() -> int:
                    held[:] = [await meter.users.quota_view("alice", config.tiers["free"])]
                    return line()["reserved"]

                deadline = asyncio.get_running_loop().time() + 10
                while await reserved() != 1:  # only "warm", never settled, still holds
                    assert asyncio.get_running_loop().time() < deadline, line()
                    await asyncio.sleep(0.1)
                assert line()["used"] == 0
            finally:
                await meter.aclose()
                await store.aclose()

        run(scenario())
