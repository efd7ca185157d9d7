"""``reserve.lua`` and ``store/rule.py`` state one rule twice: random cases must agree."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config.model import Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import UNLIMITED, Counter, Increment, Lease, SettleBatch, Store
from gateway.store.rule import decide
from tests.metering.helpers import RedisServer, run

OVERRIDES = "gw:{u:p}:ovr"


def random_case(rng: random.Random) -> tuple[list[Counter], list[int], dict[str, int]]:
    counters, used, overrides = [], [], {}
    for index in range(rng.randint(1, 5)):
        limit = rng.choice([UNLIMITED, 0, 1, 5, 10, 100])
        flex = rng.choice([0, 0, 1, 7, 50])
        counters.append(
            Counter(
                key=f"gw:{{u:p}}:d:{index % 2}",
                field=f"f{index}",
                fixed=rng.choice([0, 1, 3, 10]),
                limit=limit,
                limit_field=f"l{index}" if rng.random() < 0.5 else "",
                flex=flex,
                cap=rng.choice([UNLIMITED, 1, 5, 20]),
                cap_field=f"c{index}" if rng.random() < 0.5 else "",
                ttl_s=3600,
            )
        )
        used.append(rng.choice([0, 1, 4, 9, 60]))
        for name in (f"l{index}", f"c{index}"):
            if rng.random() < 0.3:
                overrides[name] = rng.choice([UNLIMITED, 0, 3, 50])
    return counters, used, overrides


def test_lua_and_python_agree(redis_url: str) -> None:
    rng = random.Random(7)

    async def scenario() -> int:
        store = create_store(redis_url, Settings())
        denied = 0
        try:
            for _ in range(300):
                counters, used, overrides = random_case(rng)
                await store.write_hash(
                    OVERRIDES, overrides, [f"{p}{i}" for p in "lc" for i in range(5)]
                )
                current = await store.read_hashes([c.key for c in counters])
                setup = [
                    Increment(c.key, c.field, u - current[i].get(c.field, 0))
                    for i, (c, u) in enumerate(zip(counters, used, strict=True))
                ]
                await store.settle([SettleBatch(tuple(setup))])
                expected = decide(counters, used, overrides)
                assert await store.reserve(counters, OVERRIDES) == expected, (counters, used)
                denied += expected.denied is not None
        finally:
            await store.aclose()
        return denied

    denied = run(scenario())
    assert 30 < denied < 270  # both outcomes were exercised


KEYS = ("gw:{u:p}:d:20261122", "gw:{u:p}:m:202611", "gw:{t:free}:d:20261122")
FIELDS = ("req", "tok", "usd")
amounts = st.integers(min_value=0, max_value=60)
limits = st.one_of(st.just(UNLIMITED), st.integers(min_value=0, max_value=120))
counters = st.builds(
    Counter,
    key=st.sampled_from(KEYS),
    field=st.sampled_from(FIELDS),
    fixed=amounts,
    limit=limits,
    limit_field=st.sampled_from(["", "l0", "l1"]),
    flex=st.one_of(st.just(0), amounts),
    cap=limits,
    cap_field=st.sampled_from(["", "c0"]),
    ttl_s=st.just(3600),
)
# several counters of one key and field would make the rule read a value the script has
# already moved: a reservation names each (key, field) once
distinct = st.lists(counters, min_size=1, max_size=4, unique_by=lambda c: (c.key, c.field))
overrides = st.dictionaries(st.sampled_from(["l0", "l1", "c0"]), limits, max_size=3)
used = st.dictionaries(st.sampled_from([(k, f) for k in KEYS for f in FIELDS]), amounts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wanted=distinct,
    stored=overrides,
    start=used,
    rounds=st.integers(min_value=1, max_value=4),
)
def test_the_memory_store_and_redis_reserve_alike(
    redis_server: RedisServer,
    wanted: list[Counter],
    stored: dict[str, int],
    start: dict[tuple[str, str], int],
    rounds: int,
) -> None:
    """The same counters, overrides and usage through the memory store (the Python rule) and
    a real Redis (reserve.lua and the arguments ``scripts.reserve_args`` sends): the same
    decisions, round after round, the same counters and the same amounts held by the lease."""
    redis_server.flushall()
    setup = tuple(Increment(key, field, value) for (key, field), value in start.items())

    async def through(store: Store) -> list[object]:
        seen: list[object] = []
        try:
            await store.write_hash(OVERRIDES, stored, [])
            if setup:
                await store.settle([SettleBatch(setup)])
            for round_ in range(rounds):
                lease = Lease(f"l{round_}", 60)
                seen.append(await store.reserve(wanted, OVERRIDES, lease))
            hashes = await store.read_hashes(list(KEYS))
            # a field at 0 reads as a missing one (the memory store keeps it, Redis not)
            seen.append([{name: n for name, n in found.items() if n} for found in hashes])
            # what the lease holds: per group in memory, in the first counter's on Redis
            held: dict[str, int] = {}
            for group in dict.fromkeys(keys.lease(key) for key in KEYS):
                for name, amount in (await store.read_reservations(group)).items():
                    held[name] = held.get(name, 0) + amount
            seen.append(held)
        finally:
            await store.aclose()
        return seen

    memory = run(through(create_store(None, Settings())))
    redis = run(through(create_store(redis_server.url, Settings())))
    assert memory == redis
