"""One round trip to reserve; settles share one script call (group commit): counted by the
Redis server itself."""

from __future__ import annotations

import re

from gateway.config.model import Config, Price
from gateway.store.factory import create_store
from gateway.store.keys import USAGE_STREAM
from gateway.store.port import Aggregate, Counter, Increment, SettleBatch
from gateway.store.redis.scripts import settle_call
from tests.metering.helpers import Clock, RedisServer, command, metered, ok, request, run


def calls(server: RedisServer) -> dict[str, int]:
    stats = command(server.port, "INFO", "commandstats").decode()
    return {name: int(n) for name, n in re.findall(r"cmdstat_(\w+):calls=(\d+)", stats)}


def test_one_script_call_per_admit_and_one_per_settle_batch(
    config: Config, redis_server: RedisServer
) -> None:
    redis_server.flushall()

    async def scenario() -> None:
        async with metered(config, redis_server.url, clock=Clock()) as (meter, _):
            meter.finish(await meter.admit(request(config)), ok())  # loads the script
            await meter.settled()
            command(redis_server.port, "CONFIG", "RESETSTAT")
            admissions = [
                await meter.admit(request(config, request_id=str(i), price=Price(input=1.0)))
                for i in range(5)
            ]
            for admission in admissions:
                meter.finish(admission, ok(10, 10, price=Price(input=1.0)))
            await meter.settled()
            seen = calls(redis_server)
            # five reservations, then the five settles in one script call
            assert (seen["evalsha"], seen["xadd"]) == (6, 5)
            # the rest runs inside the scripts (or sets up a new pooled connection)
            inside = {"hget", "hgetall", "hincrby", "expire", "hello", "client", "info"}
            inside |= {"type", "time", "hset", "zadd", "hdel", "zrem", "set", "del", "rpush"}
            inside |= {"exists", "evalsha", "ltrim"}
            assert set(seen) - {"evalsha", "xadd"} <= inside

    run(scenario())


def test_a_settle_batch_sums_what_its_requests_share_before_writing(
    config: Config, redis_server: RedisServer
) -> None:
    redis_server.flushall()
    first = SettleBatch(
        (Increment("gw:k", "tok", -2, 60), Increment("gw:spend", "overall", 5, 90, True)),
        b'{"n":1}',
        (Aggregate("gw:agg", ("requests", "errors"), (1, 0), 99),),
    )
    second = SettleBatch(
        (Increment("gw:k", "tok", -3, 30), Increment("gw:spend", "overall", 7, 90, True)),
        b'{"n":2}',
        (Aggregate("gw:agg", ("requests", "errors"), (1, 1), 99),),
    )
    call = settle_call([first, second], 100, mark=None, stream=True, by_id=True)
    assert call is not None
    assert call.keys == ["gw:k", "gw:spend", "gw:agg", USAGE_STREAM]
    assert str(call.args[1]).split("\n") == [
        "1\ttok\t-5\t60\t0",
        "2\toverall\t12\t90\t1",
        "3\trequests\t2\t99\t0",
        "3\terrors\t1\t99\t0",
    ]
    assert call.args[-4:] == [0, b'{"n":1}', 0, b'{"n":2}'] and call.watched == [
        ("gw:spend", "overall")
    ]

    async def scenario() -> list[list[int]]:
        store = create_store(redis_server.url, config.settings)
        try:
            return await store.settle([first, second])
        finally:
            await store.aclose()

    assert run(scenario()) == [[12], [12]]  # both see the total after the batch
    assert command(redis_server.port, "HGET", "gw:agg", "requests") == b"$1\r\n2\r\n"
    # a counter never goes below zero (issue 10 #7)
    assert command(redis_server.port, "HGET", "gw:k", "tok") == b"$1\r\n0\r\n"
    assert command(redis_server.port, "XLEN", USAGE_STREAM) == b":2\r\n"


def test_a_counters_time_to_live_is_set_when_its_hash_is_created_or_when_it_slides(
    config: Config, redis_server: RedisServer
) -> None:
    """EXPIRE only for a new hash (every writer gives one it creates its time to live), and on
    every reservation for a sliding one (a key's requests in flight)."""
    redis_server.flushall()
    day = Counter("gw:{u:ttl}:d:1", "req", 1, ttl_s=500)
    flight = Counter("gw:{u:ttl}:k:a:par", "n", 1, ttl_s=900, sliding=True)

    async def scenario() -> list[int]:
        store = create_store(redis_server.url, config.settings)
        expires = []
        try:
            for _ in range(3):
                command(redis_server.port, "CONFIG", "RESETSTAT")
                await store.reserve([day, flight], None)
                expires.append(calls(redis_server).get("expire", 0))
        finally:
            await store.aclose()
        return expires

    assert run(scenario()) == [2, 1, 1]
    ttl = {
        key: int(command(redis_server.port, "TTL", key).strip(b":\r\n"))
        for key in (day.key, flight.key)
    }
    assert 0 < ttl[day.key] <= 500 < ttl[flight.key] <= 900
