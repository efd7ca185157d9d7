"""A reservation alone whose keys' counters are adjacent (reserve.lua reads and writes each
key's counters as one run) or not (its general path): the same answers and writes as the
memory store, and the times to live of new and sliding hashes set (B and D, made before
without one, keep none: a hash that held a value is not new)."""

from __future__ import annotations

import pytest

from gateway.config.model import Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter, Increment, Lease, SettleBatch, Store
from tests.metering.helpers import RedisServer, command, run

A, B, C, D = (f"gw:{{u:r}}:{name}" for name in "abcd")


def _counter(key: str, field: str, fixed: int, limit: int = -1, sliding: bool = False) -> Counter:
    return Counter(key, field, fixed, limit=limit, flex=4, cap=6, ttl_s=600, sliding=sliding)


SHAPES = {
    # runs of 5 (past the explicit HMGET forms), 2, 3 and 1 fields, one hash sliding
    "runs": [
        *(_counter(A, f"f{i}", i) for i in range(5)),
        _counter(B, "f0", 1, limit=9),
        _counter(B, "f1", 2),
        *(_counter(C, f"f{i}", 1, sliding=True) for i in range(3)),
        _counter(D, "f0", 3, limit=20),
    ],
    "a key again after another": [_counter(A, "f0", 1), _counter(B, "f0", 2), _counter(A, "f1", 3)],
    "a field twice in a run": [
        _counter(A, "f0", 1, limit=7),
        _counter(A, "f0", 2),
        _counter(B, "x", 1),
    ],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_reservation_alone_writes_as_the_memory_store(
    redis_server: RedisServer, shape: str
) -> None:
    wanted = SHAPES[shape]
    redis_server.flushall()

    async def through(store: Store) -> list[object]:
        seen: list[object] = []
        try:
            await store.settle([SettleBatch((Increment(B, "f1", 5), Increment(D, "f0", 2)))])
            for round_ in range(4):  # the limits refuse the last rounds
                seen.append(await store.reserve(wanted, None, Lease(f"l{round_}", 60)))
            hashes = await store.read_hashes([A, B, C, D])
            seen.append([{name: n for name, n in found.items() if n} for found in hashes])
            seen.append(await store.read_reservations(keys.lease(wanted[0].key)))
        finally:
            await store.aclose()
        return seen

    memory = run(through(create_store(None, Settings())))
    redis = run(through(create_store(redis_server.url, Settings())))
    assert memory == redis
    for key in dict.fromkeys(counter.key for counter in wanted if counter.key in (A, C)):
        ttl = int(command(redis_server.port, "TTL", key)[1:].split(b"\r")[0])
        assert 0 < ttl <= 600, (key, ttl)
