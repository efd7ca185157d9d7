"""``reserve.lua`` and ``decide.py`` state one rule twice: random cases must agree."""

from __future__ import annotations

import random

from gateway.config.model import Settings
from gateway.store.factory import create_store
from gateway.store.port import UNLIMITED, Counter, Increment, SettleBatch
from gateway.store.rule import decide
from tests.metering.helpers import run

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
