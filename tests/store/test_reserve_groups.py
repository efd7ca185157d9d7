"""Reservations queued in one turn share one reserve.lua call (group commit), with the answers,
counters and leases that separate calls would have left, against a real Redis."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.config.model import Config, Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter, Decision, Lease, Store, StoreError
from gateway.store.redis.pipelined import GroupFailed, PipelinedConnection, RedisEndpoint
from tests.metering.helpers import Clock, RedisServer, command, metered, ok, request, run
from tests.store.test_rule import KEYS, counters, distinct

OVERRIDE_KEYS = ("gw:{u:p}:ovr", "gw:{u:q}:ovr")
Reservation = tuple[list[Counter], str | None, Lease | None]


def script_calls(server: RedisServer) -> int:
    stats = command(server.port, "INFO", "commandstats").decode()
    found = dict(re.findall(r"cmdstat_(evalsha|eval):calls=(\d+)", stats))
    return sum(int(n) for n in found.values())


async def held(store: Store) -> dict[str, int]:
    """What the leases hold, summed over every lease group of the test's keys."""
    total: dict[str, int] = {}
    for group in dict.fromkeys(keys.lease(key) for key in KEYS):
        for name, amount in (await store.read_reservations(group)).items():
            total[name] = total.get(name, 0) + amount
    return total


reservations = st.lists(
    st.tuples(
        distinct,
        st.sampled_from([None, *OVERRIDE_KEYS]),
        st.booleans(),  # with a lease
    ),
    min_size=2,
    max_size=6,
)
override_values = st.dictionaries(
    st.sampled_from(["l0", "l1", "c0"]), st.integers(min_value=-1, max_value=120), max_size=3
)


# reservations that may name one (key, field) twice (the gateway's never do): the rule reads
# the values as before the reservation for both, and both grants are added, as in memory
repeating = st.lists(
    st.tuples(
        st.lists(counters, min_size=2, max_size=5),
        st.sampled_from([None, *OVERRIDE_KEYS]),
        st.booleans(),
    ),
    min_size=2,
    max_size=6,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=reservations, first=override_values, second=override_values)
def test_a_group_decides_and_writes_as_its_reservations_one_by_one(
    redis_server: RedisServer,
    wanted: list[tuple[list[Counter], str | None, bool]],
    first: dict[str, int],
    second: dict[str, int],
) -> None:
    """The memory store takes them one after another; Redis gets them in one turn, so in one
    call: the same decisions, counters and lease amounts."""
    one_by_one_and_grouped_alike(redis_server, wanted, first, second)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=repeating, first=override_values, second=override_values)
def test_a_group_naming_a_field_twice_decides_and_writes_as_one_by_one(
    redis_server: RedisServer,
    wanted: list[tuple[list[Counter], str | None, bool]],
    first: dict[str, int],
    second: dict[str, int],
) -> None:
    """As above, with a (key, field) named more than once in a reservation: the group path
    moves a value as it grants, and undoes the moves of a reservation refused further on."""
    one_by_one_and_grouped_alike(redis_server, wanted, first, second)


def one_by_one_and_grouped_alike(
    redis_server: RedisServer,
    wanted: list[tuple[list[Counter], str | None, bool]],
    first: dict[str, int],
    second: dict[str, int],
) -> None:
    redis_server.flushall()
    calls: list[Reservation] = [
        (counters, override, Lease(f"l{index}", 60) if leased else None)
        for index, (counters, override, leased) in enumerate(wanted)
    ]

    async def sequential(store: Store) -> list[object]:
        for key, values in zip(OVERRIDE_KEYS, (first, second), strict=True):
            await store.write_hash(key, values, [])
        decisions = [await store.reserve(*call) for call in calls]
        return [decisions, await store.read_hashes(list(KEYS)), await held(store)]

    async def grouped(store: Store) -> list[object]:
        for key, values in zip(OVERRIDE_KEYS, (first, second), strict=True):
            await store.write_hash(key, values, [])
        await store.reserve([Counter("gw:{u:w}:d:1", "n", 1)], None)  # the script loaded
        before = script_calls(redis_server)
        decisions = await asyncio.gather(*(store.reserve(*call) for call in calls))
        assert script_calls(redis_server) - before == 1  # one call for the group
        return [decisions, await store.read_hashes(list(KEYS)), await held(store)]

    async def through(store: Store, scenario: Any) -> list[object]:
        try:
            seen: list[object] = await scenario(store)
        finally:
            await store.aclose()
        # a field at 0 reads as a missing one (the memory store keeps it, Redis not)
        seen[1] = [{name: n for name, n in found.items() if n} for found in seen[1]]  # type: ignore[attr-defined]
        return seen

    memory = run(through(create_store(None, Settings()), sequential))
    redis = run(through(create_store(redis_server.url, Settings()), grouped))
    assert memory == redis


def test_a_group_with_a_broken_key_answers_each_reservation_alone(
    redis_server: RedisServer,
) -> None:
    """One reservation's counter key holds a string: the group's call fails having written
    nothing, each reservation is sent again alone, and only that one fails."""
    redis_server.flushall()
    broken = "gw:{u:b}:d:1"
    command(redis_server.port, "SET", broken, "x")
    good = [Counter(f"gw:{{u:g{i}}}:d:1", "req", 1, limit=5, ttl_s=60) for i in range(3)]

    async def scenario() -> list[Decision | BaseException]:
        store = create_store(redis_server.url, Settings())
        try:
            await store.reserve([Counter("gw:{u:w}:d:1", "n", 1)], None)  # the script loaded
            calls = [
                store.reserve([good[0]], None, Lease("a", 60)),
                store.reserve([Counter(broken, "req", 1, ttl_s=60)], None, Lease("b", 60)),
                store.reserve([good[1], good[2]], None, Lease("c", 60)),
            ]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await store.aclose()

    first, failed, last = run(scenario())
    assert isinstance(first, Decision) and first.granted == (1,)
    assert isinstance(failed, StoreError)
    assert isinstance(last, Decision) and last.granted == (1, 1)
    for counter in good:  # granted once each: the group's own call wrote nothing
        assert command(redis_server.port, "HGET", counter.key, "req") == b"$1\r\n1\r\n"
    assert command(redis_server.port, "GET", broken) == b"$1\r\nx\r\n"
    assert command(redis_server.port, "HEXISTS", keys.lease_data(keys.lease(broken)), "b") == (
        b":0\r\n"
    )


def test_a_group_sent_when_redis_lost_the_script_is_answered_once_each(
    redis_server: RedisServer,
) -> None:
    redis_server.flushall()
    counter = Counter("gw:{u:s}:d:1", "req", 1, limit=3, ttl_s=60)

    async def scenario() -> list[Decision]:
        store = create_store(redis_server.url, Settings())
        try:
            await store.reserve([Counter("gw:{u:w}:d:1", "n", 1)], None)
            command(redis_server.port, "SCRIPT", "FLUSH")
            return list(await asyncio.gather(*(store.reserve([counter], None) for _ in range(5))))
        finally:
            await store.aclose()

    decisions = run(scenario())
    assert [d.ok for d in decisions] == [True, True, True, False, False]
    assert command(redis_server.port, "HGET", counter.key, "req") == b"$1\r\n3\r\n"


def test_leases_of_one_group_keep_their_own_seconds_and_times_to_live(
    redis_server: RedisServer,
) -> None:
    """The script reads a group's lease seconds and times to live once per distinct text:
    reservations that send others still get their own deadline and expiry."""
    redis_server.flushall()
    short = Counter("gw:{u:s}:d:1", "req", 1, ttl_s=60)
    long = Counter("gw:{u:s}:d:2", "req", 1, ttl_s=6000)

    async def scenario() -> None:
        store = create_store(redis_server.url, Settings())
        try:
            await store.reserve([Counter("gw:{u:w}:d:1", "n", 1)], None)
            before = script_calls(redis_server)
            await asyncio.gather(
                store.reserve([short], None, Lease("a", 60)),
                store.reserve([long], None, Lease("b", 600)),
                store.reserve([short], None, Lease("c", 60)),
            )
            assert script_calls(redis_server) - before == 1  # one call for the group
        finally:
            await store.aclose()

    run(scenario())
    group = keys.lease(short.key)
    due = {
        name: int(float(command(redis_server.port, "ZSCORE", group, name).split(b"\r\n")[1]))
        for name in ("a", "b", "c")
    }
    assert due["b"] - due["a"] == 540 and due["c"] == due["a"]
    ttls = [int(command(redis_server.port, "TTL", key)[1:-2]) for key in (short.key, long.key)]
    assert 50 < ttls[0] <= 60 and 5900 < ttls[1] <= 6000


def test_concurrent_admissions_share_one_call_and_each_is_settled(
    config: Config, redis_server: RedisServer
) -> None:
    """Through the meter: eight requests admitted in one turn are one script call; their
    settles end every lease and leave the counters at the usage."""
    redis_server.flushall()
    held_by = keys.lease_data(keys.lease(keys.user_day(request(config).user, "1")))

    async def scenario() -> None:
        async with metered(config, redis_server.url, clock=Clock()) as (meter, _):
            meter.finish(await meter.admit(request(config)), ok())  # loads the script
            await meter.settled()
            before = script_calls(redis_server)
            admissions = await asyncio.gather(
                *(meter.admit(request(config, request_id=f"g{i}")) for i in range(8))
            )
            assert script_calls(redis_server) - before == 1
            assert len({admission.lease for admission in admissions}) == 8
            assert command(redis_server.port, "HLEN", held_by) == b":8\r\n"  # one lease each
            for admission in admissions:
                meter.finish(admission, ok(10, 10))
            await meter.settled()
        assert command(redis_server.port, "HLEN", held_by) == b":0\r\n"  # all ended

    run(scenario())


class Echo:
    """A command group for the tests: members joined into one ``ECHO``, split at ``|``."""

    def command(self, members: list[str]) -> bytes:
        text = "|".join(members)
        return f"*2\r\n$4\r\nECHO\r\n${len(text)}\r\n{text}\r\n".encode()

    def replies(self, reply: Any, count: int) -> list[Any]:
        parts = reply.decode().split("|")
        assert len(parts) == count
        return parts


def test_a_group_keeps_its_place_among_the_turns_other_commands(
    redis_server: RedisServer,
) -> None:
    redis_server.flushall()

    async def scenario() -> None:
        redis = PipelinedConnection(RedisEndpoint("127.0.0.1", redis_server.port))
        try:
            await redis.execute("PING")
            group = Echo()
            before = await redis.execute("SET", "n", 0)
            results = await asyncio.gather(
                redis.execute("INCR", "n"),
                redis.execute_grouped(group, "a"),
                redis.execute("INCR", "n"),
                redis.execute_grouped(group, "b"),
                redis.execute_grouped(group, "c"),
                redis.execute("GET", "n"),
            )
            assert before == b"OK"
            assert results == [1, "a", 2, "b", "c", b"2"]
        finally:
            await redis.aclose()

    run(scenario())


def test_an_error_reply_to_a_group_of_several_is_group_failed(redis_server: RedisServer) -> None:
    class Wrong(Echo):
        def command(self, members: list[str]) -> bytes:
            return b"*1\r\n$9\r\nNOCOMMAND\r\n"

    async def scenario() -> None:
        redis = PipelinedConnection(RedisEndpoint("127.0.0.1", redis_server.port))
        try:
            await redis.execute("PING")
            wrong = Wrong()
            several = await asyncio.gather(
                *(redis.execute_grouped(wrong, "x") for _ in range(2)), return_exceptions=True
            )
            assert all(isinstance(error, GroupFailed) for error in several)
            with pytest.raises(ResponseError) as alone:
                await redis.execute_grouped(wrong, "x")
            assert not isinstance(alone.value, GroupFailed)  # alone: its own answer
            assert await redis.execute("PING") in (b"PONG", "PONG", True)
        finally:
            await redis.aclose()

    run(scenario())


def test_a_reply_a_group_cannot_split_fails_its_members(redis_server: RedisServer) -> None:
    """Split into fewer replies than members (or not at all): each member fails, none waits
    for its timeout, and the connection goes on."""

    class Short(Echo):
        def replies(self, reply: Any, count: int) -> list[Any]:
            return reply.decode().split("|")[:-1]

    class Broken(Echo):
        def replies(self, reply: Any, count: int) -> list[Any]:
            raise ValueError("no")

    async def scenario() -> None:
        redis = PipelinedConnection(
            RedisEndpoint("127.0.0.1", redis_server.port, command_timeout_s=30.0)
        )
        try:
            for group in (Short(), Broken()):
                failed = await asyncio.wait_for(
                    asyncio.gather(
                        *(redis.execute_grouped(group, str(i)) for i in range(3)),
                        return_exceptions=True,
                    ),
                    timeout=5,
                )
                assert all(isinstance(error, GroupFailed) for error in failed), failed
            assert await redis.execute("ECHO", "on") == b"on"
        finally:
            await redis.aclose()

    run(scenario())


def test_a_group_in_flight_fails_when_the_connection_drops() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        redis = PipelinedConnection(RedisEndpoint("127.0.0.1", port))
        group = Echo()
        results = await asyncio.gather(
            *(redis.execute_grouped(group, str(i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, RedisConnectionError) for result in results)
        server.close()

    run(scenario())
