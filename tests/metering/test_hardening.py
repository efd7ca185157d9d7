"""Issue 10, metering: script errors refused per request (#4), untrusted usage and poisoned
batches (#5), exactly-once settles and reconcilable reservations (#6), counters never below
zero (#7), leases that expire (#13) and the per-user record index (#14)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace

import pytest

from gateway.config.model import Config, Price
from gateway.errors import InvalidRequest
from gateway.metering import Meter
from gateway.metering.record import UsageRecord
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter, Increment, SettleBatch
from gateway.usage.records import UsageRecords

from .helpers import NOON, Clock, RedisServer, command, metered, ok, request, run

DAY = "20261122"
PRICED = Price(input=1.0, output=1.0)


def used(view: dict[str, object], unit: str = "tokens") -> int:
    capabilities = view["capabilities"]
    assert isinstance(capabilities, dict)
    line = capabilities["text_generation"][unit]
    return int(line["used"] + line["reserved"])  # what the counter holds, in flight included


def server_of(request_: pytest.FixtureRequest, url: str | None) -> RedisServer | None:
    if url is None:
        return None
    name = "cluster_server" if "cluster" in url else "redis_server"
    server: RedisServer = request_.getfixturevalue(name)
    return server


# -- #4 ------------------------------------------------------------------------------------


def test_amounts_no_store_can_hold_are_refused_before_the_store(
    config: Config, store_url: str | None
) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            huge = request(
                config, capability="image_generation", images=2**63 - 1, price=Price(per_image=1)
            )
            with pytest.raises(InvalidRequest) as caught:
                await meter.admit(huge)
            assert caught.value.status == 400
            assert not meter.health.degraded and meter.health.errors_total == 0

    run(scenario())


def test_a_script_error_fails_that_request_and_never_degrades(
    config: Config, redis_server: RedisServer
) -> None:
    """Before: the script error marked the store degraded and admitted requests unchecked."""
    redis_server.flushall()
    # a counter hash that is not a hash: the reserve script fails for this user only
    command(redis_server.port, "SET", keys.user_day("mallory", DAY), "x")

    async def scenario() -> None:
        async with metered(config, redis_server.url, clock=Clock()) as (meter, store):
            for _ in range(3):
                with pytest.raises(InvalidRequest):
                    await meter.admit(request(config, user="mallory"))
            assert not meter.health.degraded and meter.health.errors_total == 0
            admitted = await meter.admit(request(config, user="alice"))
            assert admitted.headers  # reserved, not admitted unchecked
            refused = [Counter(keys.user_day("eve", DAY), "tok", 10**20)]
            with pytest.raises(Exception) as raised:
                await store.reserve(refused, None)
            assert type(raised.value).__name__ == "StoreRejected"

    run(scenario())


# -- #5 ------------------------------------------------------------------------------------


def test_implausible_usage_is_clamped_and_flagged(
    config: Config, store_url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[UsageRecord] = []

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock(), on_record=seen.append) as (
            meter,
            _,
        ):
            admission = await meter.admit(request(config, max_tokens=100))
            meter.finish(admission, ok(-1_844_190, 9_223_372_036_854_775_000))
            normal = await meter.admit(request(config, request_id="fine", max_tokens=100))
            meter.finish(normal, ok(10, 5))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert used(view) == 10_000_000 + 15
            assert meter.buffered_records == 0

    caplog.set_level(logging.WARNING, logger="gateway.metering")
    run(scenario())
    flagged, fine = seen
    assert (flagged.prompt_tokens, flagged.completion_tokens) == (0, 10_000_000)
    assert flagged.usage_flagged is True and fine.usage_flagged is False
    assert any("implausible usage" in r.getMessage() for r in caplog.records)


def test_a_batch_refused_for_one_record_writes_all_the_others(
    config: Config, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the whole chunk was retried forever and every later record piled up."""
    redis_server.flushall()
    command(redis_server.port, "SET", keys.user_aggregate("bob", DAY), "x")
    caplog.set_level(logging.ERROR, logger="gateway.metering")

    async def scenario() -> None:
        async with metered(config, redis_server.url, clock=Clock()) as (meter, store):
            for index in range(9):
                user = "bob" if index == 4 else "alice"
                admission = await meter.admit(request(config, user=user, request_id=f"r{index}"))
                meter.finish(admission, ok(10, 5))
            await meter.settled()
            assert meter.buffered_records == 0 and not meter.health.degraded
            records = await UsageRecords(store, Clock()).read(None, NOON - 1, NOON + 1)
            assert sorted(r.request_id for r in records) == [f"r{i}" for i in range(9) if i != 4]
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert used(view) == 8 * 15

    run(scenario())
    refused = [r for r in caplog.records if "refused a usage record" in r.getMessage()]
    assert len(refused) == 1 and '"request_id":"r4"' in refused[0].getMessage()


# -- #6 ------------------------------------------------------------------------------------


def test_a_settle_batch_retried_after_a_lost_reply_counts_once(
    config: Config, store_url: str | None
) -> None:
    batch = SettleBatch(
        (Increment(keys.user_day("alice", DAY), "text_generation:tok", 7, 60),),
        b'{"user":"alice","ts":1}',
    )

    async def scenario() -> None:
        store = create_store(store_url, config.settings)
        try:
            await store.settle([batch], "batch-1")
            assert await store.settle([batch], "batch-1") == [[]]  # already applied
            await store.settle([batch], "batch-2")
            hashes = await store.read_hashes([keys.user_day("alice", DAY)])
            assert hashes[0]["text_generation:tok"] == 14
            assert len(await store.records_page(None, 10)) == 2
        finally:
            await store.aclose()

    run(scenario())


def test_a_reservation_whose_reply_was_lost_is_reconciled_by_its_settle(
    config: Config, store_url: str | None
) -> None:
    """Before: admitted unchecked, the settle added the actual usage on top of a reservation
    that had run (its reply lost), and nothing ever gave that back."""

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            ran = await meter.admit(request(config, max_tokens=500, price=PRICED))
            # what the meter keeps when the reserve times out but ran: no grants
            lost = replace(ran, granted=(), headers={})
            meter.finish(lost, ok(10, 5, price=PRICED))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert (used(view), used(view, "requests")) == (15, 1)

    run(scenario())


# -- #7 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["redis", "cluster"], indirect=True)
def test_counters_never_go_below_zero_after_the_store_lost_its_data(
    config: Config, store_url: str | None, request: pytest.FixtureRequest
) -> None:
    """Before: a Redis restarted without persistence left the settle's ``actual - granted``
    on empty counters: tokens went negative."""
    server = server_of(request, store_url)
    assert server is not None
    from .helpers import request as meter_request

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            admission = await meter.admit(meter_request(config, max_tokens=1000, price=PRICED))
            server.flushall()  # a restart without persistence
            meter.finish(admission, ok(10, 5, price=PRICED))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert (used(view), used(view, "requests")) == (15, 1)  # exact, not negative

    run(scenario())


def test_a_settle_never_leaves_a_counter_below_zero(config: Config, store_url: str | None) -> None:
    key = keys.user_day("alice", DAY)

    async def scenario() -> None:
        store = create_store(store_url, config.settings)
        try:
            await store.settle([SettleBatch((Increment(key, "usd", 5, 60),))])
            await store.settle([SettleBatch((Increment(key, "usd", -139_680, 60),))])
            assert (await store.read_hashes([key]))[0]["usd"] == 0
        finally:
            await store.aclose()

    run(scenario())


# -- #13 -----------------------------------------------------------------------------------


def test_a_dead_workers_reservation_is_given_back_when_its_lease_expires(
    config: Config, store_url: str | None
) -> None:
    """Before: a worker killed mid-request held its reservation until the day ended."""

    async def scenario() -> None:
        # A lease is due at a whole second (at most ttl, at least ttl - 1 after it was taken):
        # 3 s leaves the "not yet" check 2 s, which a loaded machine's cluster admits need.
        options = {"clock": Clock(), "lease_ttl_s": 3, "sweep_interval_s": 0}
        async with metered(config, store_url, **options) as (dead, store):
            await dead.admit(request(config, request_id="abandoned", max_tokens=1000))
            late = await dead.admit(request(config, request_id="late", max_tokens=1000))
            view = await dead.users.quota_view("alice", config.tiers["free"])
            assert used(view, "requests") == 2
            assert await dead.sweeper.sweep() == 0  # not expired yet
            await asyncio.sleep(3.3)
            # any process sweeps: here the same store, from the meter still alive
            assert await dead.sweeper.sweep() == 2
            view = await dead.users.quota_view("alice", config.tiers["free"])
            assert (used(view), used(view, "requests")) == (0, 0)
            # a request that outlived its lease is still charged exactly once
            dead.finish(late, ok(10, 5))
            await dead.settled()
            view = await dead.users.quota_view("alice", config.tiers["free"])
            assert (used(view), used(view, "requests")) == (15, 1)
            assert await store.sweep_leases() == 0

    run(scenario())


def test_a_restarted_worker_gives_back_expired_leases_at_start(
    config: Config, store_url: str | None
) -> None:
    """The lease sweep is due at start, not one interval later: a worker restarted after a
    crash returns what its predecessor's expired leases held before serving anything."""

    async def scenario() -> None:
        store = create_store(store_url, config.settings)
        dead = Meter(config, store, clock=Clock(), lease_ttl_s=1, sweep_interval_s=0)
        restarted = Meter(config, store, clock=Clock(), lease_ttl_s=1, sweep_interval_s=3600)
        try:
            await dead.admit(request(config, request_id="abandoned", max_tokens=1000))
            await asyncio.sleep(1.3)
            await restarted.start()
            for _ in range(100):
                view = await restarted.users.quota_view("alice", config.tiers["free"])
                if used(view, "requests") == 0:
                    break
                await asyncio.sleep(0.02)
            assert (used(view), used(view, "requests")) == (0, 0)
        finally:
            await restarted.aclose()
            await store.aclose()

    run(scenario())


# -- #14 -----------------------------------------------------------------------------------


def calls(server: RedisServer) -> dict[str, int]:
    stats = command(server.port, "INFO", "commandstats").decode()
    return {name: int(n) for name, n in re.findall(r"cmdstat_(\w+):calls=(\d+)", stats)}


def test_one_users_records_are_read_from_their_index(
    config: Config, redis_server: RedisServer
) -> None:
    """Before: every usage read scanned the whole stream back to the range's start."""
    redis_server.flushall()

    async def scenario() -> None:
        async with metered(config, redis_server.url, clock=Clock()) as (meter, store):
            for index in range(300):
                user = "alice" if index % 100 == 0 else f"user{index}"
                admission = await meter.admit(request(config, user=user, request_id=str(index)))
                meter.finish(admission, ok(10, 5))
            await meter.settled()
            command(redis_server.port, "CONFIG", "RESETSTAT")
            mine = await UsageRecords(store, Clock()).read("alice", NOON - 3600, NOON + 3600)
            assert [r.request_id for r in mine] == ["0", "100", "200"]
            seen = calls(redis_server)
            assert "xrevrange" not in seen and seen["xrange"] == 3
            everyone = await UsageRecords(store, Clock()).read(None, NOON - 3600, NOON + 3600)
            assert len(everyone) == 300

    run(scenario())
