"""One round trip to reserve; settles share one script call (group commit): counted by the
Redis server itself."""

from __future__ import annotations

import re
import struct

from gateway.config.model import Config, Price, Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.keys import USAGE_STREAM
from gateway.store.port import Aggregate, Counter, Increment, Lease, LeaseEnd, SettleBatch
from gateway.store.redis import reserve_layout, scripts
from gateway.store.redis.scripts import settle_call
from tests.metering.helpers import Clock, RedisServer, command, metered, ok, request, run
from tests.store import settle_args


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
            inside |= {"exists", "evalsha", "ltrim", "hmget", "hlen", "zcard", "xlen", "llen"}
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
    packed = settle_args.read(call)
    assert packed.increments == [
        "1\ttok\t-5\t60\t0",
        "2\toverall\t12\t90\t1",
        "3\trequests\t2\t99\t0",
        "3\terrors\t1\t99\t0",
    ]
    assert packed.records == [(0, b'{"n":1}'), (0, b'{"n":2}')] and call.watched == [
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


def test_a_settle_after_the_sweeper_took_the_lease_back_counts_the_usage_once(
    config: Config, redis_server: RedisServer
) -> None:
    """A lease gone when its settle arrives (the sweeper gave it back) has its grants added
    back by the settle, which then subtracts them with the actual usage; a lease still there
    is ended in the same call; leases with a lost reply give back what they hold."""
    redis_server.flushall()
    user, tier = "gw:{u:sw}:d:1", "gw:{t:sw}:d:1"
    counters = [Counter(user, "tok", 10, limit=100, ttl_s=60), Counter(tier, "usd", 7, ttl_s=60)]

    async def scenario() -> None:
        store = create_store(redis_server.url, config.settings)
        try:
            for lease_id in ("gone", "kept", "lost"):
                assert (await store.reserve(counters, None, Lease(lease_id, 900))).ok
            # what the sweeper does with the first lease: give back, then forget it
            for key, field, amount in ((user, "tok", 10), (tier, "usd", 7)):
                command(redis_server.port, "HINCRBY", key, field, str(-amount))
            for group in (keys.lease(user), keys.lease(tier)):
                command(redis_server.port, "HDEL", keys.lease_data(group), "gone")
                command(redis_server.port, "ZREM", group, "gone")

            def settled(lease_id: str, tok: int, usd: int) -> SettleBatch:
                held = {user: ((user, "tok", 10, 60),), tier: ((tier, "usd", 7, 60),)}
                ends = tuple(
                    LeaseEnd(keys.lease(key), lease_id, held[key] if lease_id != "lost" else None)
                    for key in (user, tier)
                )
                deltas = (Increment(user, "tok", tok, 60), Increment(tier, "usd", usd, 60))
                return SettleBatch(deltas if lease_id != "lost" else (), leases=ends)

            await store.settle([settled("gone", 4 - 10, 5 - 7), settled("kept", 3 - 10, 1 - 7)])
            await store.settle([settled("lost", 0, 0)])
        finally:
            await store.aclose()

    run(scenario())
    assert command(redis_server.port, "HGET", user, "tok") == b"$1\r\n7\r\n"  # 4 + 3
    assert command(redis_server.port, "HGET", tier, "usd") == b"$1\r\n6\r\n"  # 5 + 1
    for key in (user, tier):
        assert command(redis_server.port, "ZCARD", keys.lease(key)) == b":0\r\n"
        assert command(redis_server.port, "HLEN", keys.lease_data(keys.lease(key))) == b":0\r\n"


def test_an_argument_the_scripts_cannot_read_fails_the_call(
    config: Config, redis_server: RedisServer
) -> None:
    """A number that is no integer fails the reservation or the settle (StoreRejected) rather
    than being skipped: the scripts read the gateway's numbers by pattern."""
    redis_server.flushall()
    key = "gw:{u:bad}:d:1"

    async def scenario() -> list[str]:
        store = create_store(redis_server.url, config.settings)
        refused = []
        try:
            calls = (
                lambda: store.reserve([Counter(key, "tok", 5, limit=1.5)], None),  # type: ignore[arg-type]
                lambda: store.settle([SettleBatch((Increment(key, "tok", 2.5),))]),  # type: ignore[arg-type]
                # a lease line the script cannot read (an id with a tab) is not skipped
                lambda: store.settle(
                    [SettleBatch((), leases=(LeaseEnd(keys.lease(key), "a\tb"),))]
                ),
            )
            for call in calls:
                try:
                    await call()
                except Exception as error:
                    refused.append(type(error).__name__)
        finally:
            await store.aclose()
        return refused

    assert run(scenario()) == ["StoreRejected", "StoreRejected", "StoreRejected"]
    assert command(redis_server.port, "EXISTS", key) == b":0\r\n"


def test_a_limit_a_lua_number_cannot_hold_exactly_fails_the_reservation(
    config: Config, redis_server: RedisServer
) -> None:
    """Limits and caps travel packed as 64-bit integers; one beyond +-2**53 (inexact as a Lua
    number) fails the reservation (StoreRejected) with nothing written, as one the format
    cannot hold at all."""
    redis_server.flushall()
    key = "gw:{u:big}:d:1"

    async def scenario() -> list[str]:
        store = create_store(redis_server.url, config.settings)
        refused = []
        try:
            for wanted in (
                Counter(key, "tok", 5, limit=2**53 + 2),
                Counter(key, "tok", 5, flex=3, cap=-(2**53) - 2),
                Counter(key, "tok", 5, limit=2**64),
            ):
                try:
                    await store.reserve([wanted], None, Lease("l", 60))
                except Exception as error:
                    refused.append(type(error).__name__)
        finally:
            await store.aclose()
        return refused

    assert run(scenario()) == ["StoreRejected"] * 3
    assert command(redis_server.port, "EXISTS", key) == b":0\r\n"


def test_one_lease_holds_a_reservation_across_hash_tags_and_one_settle_ends_it(
    config: Config, redis_server: RedisServer
) -> None:
    """On one Redis a reservation over a user's, a team's and an organization's counters is
    one lease, in the first counter's group; the settle names all three groups and ends it."""
    redis_server.flushall()
    user, team, org = "gw:{u:one}:d:1", "gw:{tm:one}:min:1", "gw:{o:one}:min:1"
    counters = [Counter(key, "req", 1, limit=10, ttl_s=60) for key in (user, team, org)]

    async def scenario() -> None:
        store = create_store(redis_server.url, config.settings)
        try:
            assert (await store.reserve(counters, None, Lease("one", 900))).ok
            assert command(redis_server.port, "ZCARD", keys.lease(user)) == b":1\r\n"
            for key in (team, org):
                assert command(redis_server.port, "EXISTS", keys.lease(key)) == b":0\r\n"
            held = await store.read_reservations(keys.lease(user))
            assert held == {f"{key}\treq": 1 for key in (user, team, org)}
            ends = tuple(
                LeaseEnd(keys.lease(k), "one", ((k, "req", 1, 60),)) for k in (user, team, org)
            )
            await store.settle([SettleBatch((), leases=ends)])
        finally:
            await store.aclose()

    run(scenario())
    for key in (user, team, org):  # the request used its one: nothing added back
        assert command(redis_server.port, "HGET", key, "req") == b"$1\r\n1\r\n"
    assert command(redis_server.port, "ZCARD", keys.lease(user)) == b":0\r\n"
    assert command(redis_server.port, "HLEN", keys.lease_data(keys.lease(user))) == b":0\r\n"


def test_a_lease_key_of_another_type_fails_the_reservation_and_writes_nothing(
    config: Config, redis_server: RedisServer
) -> None:
    """No TYPE checks: the lease is written before the counters, each of its writes undone
    when the next one fails, so a corrupted lease key refuses the call without a trace."""
    redis_server.flushall()
    key = "gw:{u:bad}:d:1"
    group = keys.lease(key)
    counters = [Counter(key, "req", 1, limit=10, ttl_s=60)]

    async def refused(broken: str) -> str:
        command(redis_server.port, "SET", broken, "x")
        store = create_store(redis_server.url, config.settings)
        try:
            await store.reserve(counters, None, Lease("l", 900))
        except Exception as error:
            return type(error).__name__
        finally:
            await store.aclose()
            command(redis_server.port, "DEL", broken)
        return "granted"

    for broken in (group, keys.lease_data(group), keys.LEASE_REGISTRY):
        assert run(refused(broken)) == "StoreRejected"
        assert command(redis_server.port, "EXISTS", key) == b":0\r\n"
        for other in (group, keys.lease_data(group), keys.LEASE_REGISTRY):
            assert command(redis_server.port, "EXISTS", other) == b":0\r\n"


def test_one_reservation_alone_sends_its_layout_and_amounts_packed() -> None:
    """Alone, a reservation sends one packed argument: its layout (hashes, override and
    registry flags, lease seconds, TTLs, then per counter its key index, field, limit and
    cap), then per counter its fixed and flex amounts; apart, its override fields' names."""
    plain = Counter("gw:{u:s}:d:1", "req", 1, limit=5)
    full = Counter("gw:{u:s}:d:1", "tok", 2, limit=9, limit_field="tok", flex=3)
    level = Counter("gw:{o:s}:min:1", "usd", 7)
    names, args = scripts.reserve_args([plain, full, level], None, None, registry=True)
    assert names == ["gw:{u:s}:d:1", "gw:{o:s}:min:1"]
    assert args[:2] == [1, ""]
    assert args[2] == "<i4BBi8i8i8" + "i4i4c0i8i8" * 3 + "i8i8" * 3
    layout = struct.pack("<iBBqqq", 2, 0, 0, 0, 0, 0)
    layout += struct.pack("<ii3sqq", 1, 3, b"req", 5, -1)
    layout += struct.pack("<ii3sqq", 1, 3, b"tok", 9, -1)
    layout += struct.pack("<ii3sqq", 2, 3, b"usd", -1, -1)
    assert args[3] == layout + struct.pack("<6q", 1, 0, 2, 3, 7, 0)
    assert args[4] == ""  # no lease
    assert args[5] == struct.pack("<ii", 0, 0) + struct.pack("<i3si", 3, b"tok", 0) + bytes(8)


def test_in_a_group_a_reservation_sends_its_layout_and_its_amounts_apart() -> None:
    """In the group's form a reservation sends its layout (its struct format and data) and,
    apart, its amounts: another request of the same plan sends the same layout."""
    plain = Counter("gw:{u:s}:d:1", "req", 1, limit=5, ttl_s=60)
    full = Counter("gw:{u:s}:d:1", "tok", 2, limit=9, limit_field="tok", flex=3, ttl_s=60)
    level = Counter("gw:{o:s}:min:1", "usd", 7, ttl_s=120, sliding=True)
    flexed = Counter("gw:{o:s}:min:1", "tok", 4, flex=6, ttl_s=120, sliding=True)
    counters = [plain, full, level, flexed]
    names, args = reserve_layout.layout_args(counters, None, Lease("l", 90), registry=True)
    group = keys.lease("gw:{u:s}:d:1")
    registry = keys.LEASE_REGISTRY
    assert names == ["gw:{u:s}:d:1", "gw:{o:s}:min:1", group, keys.lease_data(group), registry]
    assert args[:2] == [1, 1]  # one reservation, one layout
    assert args[2] == "<i4BBi8i8i8" + "i4i4c0i8i8" * 4
    # 2 hashes, no override, registry, lease seconds, TTLs
    assert args[3].startswith(struct.pack("<iBBqqq", 2, 0, 1, 90, 60, -120))
    assert args[5:] == ["", 1, "l", struct.pack("<8q", 1, 0, 2, 3, 7, 0, 4, 6)]
    # another request of the same plan: the same layout, other amounts
    other = [plain._replace(fixed=2), full._replace(fixed=30, flex=0), level]
    other.append(flexed._replace(flex=0))
    _, again = reserve_layout.layout_args(other, None, Lease("m", 90), registry=True)
    assert again[:6] == args[:6]
    assert again[6:] == [1, "m", struct.pack("<8q", 2, 0, 30, 0, 7, 0, 4, 0)]


def test_the_usage_stream_stays_capped_when_only_a_calls_last_record_carries_the_cap(
    redis_server: RedisServer,
) -> None:
    """settle.lua caps the stream on the last XADD of a call only: still at most about
    ``usage_stream_maxlen`` entries (one node of slack, ``~``), the newest kept, and each
    record's entry id in its index list."""
    redis_server.flushall()
    settings = Settings(usage_stream_maxlen=100)

    async def scenario() -> None:
        store = create_store(redis_server.url, settings)
        try:
            for call in range(12):
                await store.settle(
                    [
                        SettleBatch((), f'{{"n":{call * 50 + n}}}'.encode(), index="gw:{u:cap}:rec")
                        for n in range(50)
                    ]
                )
        finally:
            await store.aclose()

    run(scenario())
    length = int(command(redis_server.port, "XLEN", USAGE_STREAM)[1:-2])
    assert 100 <= length <= 200  # 600 added; node size 100 (stream-node-max-entries)
    newest = command(redis_server.port, "XREVRANGE", USAGE_STREAM, "+", "-", "COUNT", "1")
    assert b'{"n":599}' in newest
    assert command(redis_server.port, "LLEN", "gw:{u:cap}:rec") == b":100\r\n"
