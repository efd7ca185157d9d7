"""A reservation alone takes reserve.lua's path for one (no group bookkeeping): the same
answers and writes as the memory store, a field named twice included, and an error with
nothing written."""

from __future__ import annotations

from importlib import resources

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config.model import Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter, Decision, Increment, Lease, SettleBatch, Store, StoreError
from gateway.store.redis import scripts
from tests.metering.helpers import RedisServer, command, run
from tests.store.test_rule import KEYS, OVERRIDES, counters, overrides, used

# five counters over nine (key, field) pairs: most examples name one of them twice or more
named_again = st.lists(counters, min_size=2, max_size=5)


async def _held(store: Store) -> dict[str, int]:
    total: dict[str, int] = {}
    for group in dict.fromkeys(keys.lease(key) for key in KEYS):
        for name, amount in (await store.read_reservations(group)).items():
            total[name] = total.get(name, 0) + amount
    return total


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=named_again, stored=overrides, start=used, rounds=st.integers(1, 3))
def test_a_field_named_twice_in_one_reservation_gets_both_grants_as_in_memory(
    redis_server: RedisServer,
    wanted: list[Counter],
    stored: dict[str, int],
    start: dict[tuple[str, str], int],
    rounds: int,
) -> None:
    """Every check sees the value before the reservation; a granted one adds each grant, as
    two HINCRBYs would, and its lease holds them all."""
    redis_server.flushall()
    setup = tuple(Increment(key, field, value) for (key, field), value in start.items())

    async def through(store: Store) -> list[object]:
        seen: list[object] = []
        try:
            await store.write_hash(OVERRIDES, stored, [])
            if setup:
                await store.settle([SettleBatch(setup)])
            for round_ in range(rounds):
                seen.append(await store.reserve(wanted, OVERRIDES, Lease(f"l{round_}", 60)))
            hashes = await store.read_hashes(list(KEYS))
            seen.append([{name: n for name, n in found.items() if n} for found in hashes])
            seen.append(await _held(store))
        finally:
            await store.aclose()
        return seen

    memory = run(through(create_store(None, Settings())))
    redis = run(through(create_store(redis_server.url, Settings())))
    assert memory == redis


def test_two_counters_of_one_field_each_check_the_value_before(
    redis_server: RedisServer,
) -> None:
    redis_server.flushall()
    key = "gw:{u:p}:d:1"
    twice = [Counter(key, "req", 3, limit=5, ttl_s=60), Counter(key, "req", 2, limit=5, ttl_s=60)]

    async def scenario() -> tuple[Decision, Decision, dict[str, int]]:
        store = create_store(redis_server.url, Settings())
        try:
            first = await store.reserve(twice, None, Lease("a", 60))  # 0 + 3 and 0 + 2: granted
            second = await store.reserve(twice, None, Lease("b", 60))  # 5 + 3: refused
            return first, second, await store.read_reservations(keys.lease(key))
        finally:
            await store.aclose()

    first, second, held = run(scenario())
    assert first == Decision((0, 0), (5, 5), (3, 2))
    assert second.denied == 0 and second.used == (5, 5)
    assert command(redis_server.port, "HGET", key, "req") == b"$1\r\n5\r\n"
    assert held == {f"{key}\treq": 5}


def test_a_counter_holding_no_integer_fails_the_reservation_with_nothing_written(
    redis_server: RedisServer,
) -> None:
    """The value is checked before any write: no counter moved, no lease, no time to live."""
    user, tier = "gw:{u:p}:d:1", "gw:{t:free}:d:1"
    wanted = [Counter(user, "req", 1, limit=10, ttl_s=60), Counter(tier, "req", 1, ttl_s=60)]
    for bad in ("x", "1.5", "99999999999999999999"):
        redis_server.flushall()
        command(redis_server.port, "HSET", tier, "req", bad)

        async def scenario() -> BaseException | Decision:
            store = create_store(redis_server.url, Settings())
            try:
                return await store.reserve(wanted, None, Lease("a", 60))
            except StoreError as error:
                return error
            finally:
                await store.aclose()

        assert isinstance(run(scenario()), StoreError), bad
        assert command(redis_server.port, "EXISTS", user) == b":0\r\n"
        assert (
            command(redis_server.port, "HGET", tier, "req") == f"${len(bad)}\r\n{bad}\r\n".encode()
        )
        assert command(redis_server.port, "TTL", tier) == b":-1\r\n"
        for written in (keys.lease(user), keys.lease_data(keys.lease(user)), keys.LEASE_REGISTRY):
            assert command(redis_server.port, "EXISTS", written) == b":0\r\n"


def test_the_rule_is_written_once_and_inlined_in_both_paths() -> None:
    rule = resources.files("gateway.store.redis").joinpath("rule.lua").read_text()
    first = next(line for line in rule.splitlines() if not line.startswith("--"))
    assert scripts.RESERVE.text.count(first) == 2  # the path for one and the group's
    assert "-- <rule>\n" not in scripts.RESERVE.text
