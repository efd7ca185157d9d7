"""settle.lua's packed arguments: edge values kept exactly, values it cannot take refused before
Redis, a field holding no integer replaced, and a key of another type failing with no write."""

from __future__ import annotations

import pytest
import redis

from gateway.config.model import Config
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import (
    MAX_STORED,
    Counter,
    Increment,
    Lease,
    LeaseEnd,
    SettleBatch,
    SharedAggregate,
    StoreRejected,
)
from gateway.store.redis.scripts import SETTLE, settle_call
from tests.metering.helpers import RedisServer, command, run
from tests.store import settle_args

KEY = "gw:{u:pack}:d:1"


def _settle(redis_server: RedisServer, config: Config, batches: list[SettleBatch]) -> object:
    async def scenario() -> object:
        store = create_store(redis_server.url, config.settings)
        try:
            return await store.settle(batches, "pack.1")
        except Exception as error:
            return type(error).__name__
        finally:
            await store.aclose()

    return run(scenario())


def test_the_largest_deltas_a_lua_number_holds_are_written_exactly(
    config: Config, redis_server: RedisServer
) -> None:
    redis_server.flushall()
    batch = SettleBatch(
        (Increment(KEY, "up", MAX_STORED, 60, True), Increment(KEY, "down", -MAX_STORED, 60)),
        shared=(SharedAggregate(("gw:{u:pack}:min:1",), (60,), ("n",), (MAX_STORED,)),),
    )
    call = settle_call([batch], 100, mark=None, stream=False, by_id=True)
    assert call is not None
    packed = settle_args.read(call)
    assert packed.increments == [f"1\tup\t{MAX_STORED}\t60\t1", f"1\tdown\t{-MAX_STORED}\t60\t0"]
    assert packed.shared == [f"2:60\tn\t{MAX_STORED}"]
    assert _settle(redis_server, config, [batch]) == [[MAX_STORED]]
    assert command(redis_server.port, "HGET", KEY, "up") == f"$16\r\n{MAX_STORED}\r\n".encode()
    assert command(redis_server.port, "HGET", KEY, "down") == b"$1\r\n0\r\n"  # never below 0
    assert command(redis_server.port, "HGET", "gw:{u:pack}:min:1", "n").endswith(b"992\r\n")


@pytest.mark.parametrize(
    "batch",
    [
        SettleBatch((Increment(KEY, "tok", MAX_STORED + 1),)),
        SettleBatch((Increment(KEY, "tok", -MAX_STORED - 1),)),
        SettleBatch((Increment(KEY, "tok", 2**64),)),
        SettleBatch((Increment(KEY, "tok", 1, -1),)),  # a negative time to live
        SettleBatch((Increment(KEY, "tok", 1, 2**32),)),  # beyond the format's
        SettleBatch((), shared=(SharedAggregate((KEY,), (60,), ("n",), (MAX_STORED + 1,)),)),
        SettleBatch((), shared=(SharedAggregate((KEY,), (-60,), ("n",), (1,)),)),
        SettleBatch((), leases=(LeaseEnd(keys.lease(KEY), "l", ((KEY, "t", 2**60, 60),)),)),
        SettleBatch((), leases=(LeaseEnd(keys.lease(KEY), "l", ((KEY, "t", 1.5, 60),)),)),  # type: ignore[arg-type]
        SettleBatch((), leases=(LeaseEnd(keys.lease(KEY), "l\n2"),)),
    ],
)
def test_a_value_the_packing_cannot_take_is_refused_before_redis(batch: SettleBatch) -> None:
    with pytest.raises(StoreRejected):
        settle_call([batch], 100, mark=None, stream=True, by_id=True)


def test_a_field_holding_no_integer_is_replaced_and_the_call_goes_on(
    config: Config, redis_server: RedisServer
) -> None:
    """As before the packing: the delta replaces it (a negative one: zero), the hash counts
    as new (its time to live set), and the writes after it are made."""
    redis_server.flushall()
    command(redis_server.port, "HSET", KEY, "a", "x", "b", "1.5", "c", "7")
    batch = SettleBatch(
        (
            Increment(KEY, "a", 5, 60, True),
            Increment(KEY, "b", -5, 60, True),
            Increment(KEY, "c", 2, 60, True),
        )
    )
    assert _settle(redis_server, config, [batch]) == [[5, 0, 9]]
    for field, value in (("a", b"5"), ("b", b"0"), ("c", b"9")):
        assert command(redis_server.port, "HGET", KEY, field) == b"$1\r\n" + value + b"\r\n"
    assert 0 < int(command(redis_server.port, "TTL", KEY).strip(b":\r\n")) <= 60


@pytest.mark.parametrize(
    "broken",
    ["gw:{u:pack}:m:1", keys.lease(KEY), keys.lease_data(keys.lease(KEY)), keys.USAGE_STREAM,
     keys.user_records("pack", "1")],
)  # fmt: skip
def test_a_key_of_another_type_fails_the_settle_with_nothing_written(
    config: Config, redis_server: RedisServer, broken: str
) -> None:
    redis_server.flushall()
    command(redis_server.port, "SET", broken, "x")
    batch = SettleBatch(
        (Increment(KEY, "tok", 3, 60), Increment("gw:{u:pack}:m:1", "tok", 3, 60)),
        b'{"r":1}',
        leases=(LeaseEnd(keys.lease(KEY), "l", ((KEY, "tok", 1, 60),)),),
        index=keys.user_records("pack", "1"),
    )
    assert _settle(redis_server, config, [batch]) == "StoreRejected"
    written = [KEY, keys.settled_mark("settle", "pack.1")]
    written += [keys.lease(KEY), keys.lease_data(keys.lease(KEY)), keys.USAGE_STREAM]
    written += ["gw:{u:pack}:m:1", keys.user_records("pack", "1")]
    assert command(redis_server.port, "EXISTS", *[k for k in written if k != broken]) == b":0\r\n"
    assert command(redis_server.port, "GET", broken) == b"$1\r\nx\r\n"


def test_a_gone_lease_after_others_in_the_call_adds_back_its_own_grants(
    config: Config, redis_server: RedisServer
) -> None:
    """Grants travel apart (ARGV[3]), each lease naming its first: the gone lease's, third and
    fourth there, are added back; the kept lease's are not."""
    redis_server.flushall()
    user, tier = "gw:{u:gp}:d:1", "gw:{t:gp}:d:1"
    counters = [Counter(user, "tok", 10, limit=100, ttl_s=60), Counter(tier, "usd", 7, ttl_s=60)]

    async def scenario() -> None:
        store = create_store(redis_server.url, config.settings)
        try:
            for lease_id in ("kept", "gone"):
                assert (await store.reserve(counters, None, Lease(lease_id, 900))).ok
            for key, field, amount in ((user, "tok", 10), (tier, "usd", 7)):  # the sweeper
                command(redis_server.port, "HINCRBY", key, field, str(-amount))
            command(redis_server.port, "HDEL", keys.lease_data(keys.lease(user)), "gone")
            command(redis_server.port, "ZREM", keys.lease(user), "gone")

            def settled(lease_id: str, tok: int, usd: int) -> SettleBatch:
                held = ((user, "tok", 10, 60), (tier, "usd", 7, 60))
                deltas = (Increment(user, "tok", tok - 10, 60), Increment(tier, "usd", usd - 7, 60))
                return SettleBatch(deltas, leases=(LeaseEnd(keys.lease(user), lease_id, held),))

            batches = [settled("kept", 3, 1), settled("gone", 4, 5)]
            call = settle_call(batches, 100, mark=None, stream=True, by_id=True)
            assert call is not None
            assert settle_args.read(call).ends == [(1, "kept", 1, 2), (1, "gone", 3, 2)]
            await store.settle(batches)
        finally:
            await store.aclose()

    run(scenario())
    assert command(redis_server.port, "HGET", user, "tok") == b"$1\r\n7\r\n"  # 3 + 4
    assert command(redis_server.port, "HGET", tier, "usd") == b"$1\r\n6\r\n"  # 1 + 5
    assert command(redis_server.port, "ZCARD", keys.lease(user)) == b":0\r\n"
    assert command(redis_server.port, "HLEN", keys.lease_data(keys.lease(user))) == b":0\r\n"


def test_the_marks_of_earlier_batches_are_deleted_in_one_call_and_this_one_set(
    redis_server: RedisServer,
) -> None:
    redis_server.flushall()
    earlier = [keys.settled_mark("settle", f"old.{n}") for n in range(3)]
    for name in earlier:
        command(redis_server.port, "SET", name, "1")
    mark = keys.settled_mark("settle", "new.1")
    batch = SettleBatch((Increment(KEY, "tok", 2, 60),))
    call = settle_call([batch], 100, mark=mark, stream=False, by_id=True, forget=earlier)
    assert call is not None and settle_args.read(call).marks == earlier
    client = redis.Redis(port=redis_server.port)
    try:
        assert client.eval(SETTLE.text, len(call.keys), *call.keys, *call.args) == [1]
        assert client.eval(SETTLE.text, len(call.keys), *call.keys, *call.args) == [0]  # again
    finally:
        client.close()
    assert command(redis_server.port, "EXISTS", *earlier) == b":0\r\n"
    assert command(redis_server.port, "EXISTS", mark) == b":1\r\n"
    assert command(redis_server.port, "HGET", KEY, "tok") == b"$1\r\n2\r\n"  # applied once
