"""reserve.lua's arguments from a ``CounterLayout``'s template are those formatted in full."""

from __future__ import annotations

import random

from gateway.config.model import Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter, CounterLayout, Lease
from gateway.store.redis import reserve_template, scripts
from gateway.store.redis.reserve_template import ReserveTemplate
from tests.metering.helpers import RedisServer, run

KEYS = ("gw:{u:a}:d:1", "gw:{u:a}:m:1", "gw:{t:x}:d:1", "gw:{u:a}:k:{b}:m:1")
FIELDS = ("text_generation:req", "tok", "usd", "f{x}")


def _layout(rnd: random.Random) -> list[tuple[object, ...]]:
    """A plan's counters without their amounts: key, field, limit, limit field, cap, cap
    field, time to live, sliding."""
    return [
        (
            rnd.choice(KEYS),
            rnd.choice(FIELDS),
            rnd.choice([-1, 5, 10**12]),
            "lf" if rnd.random() < 0.3 else "",
            rnd.choice([-1, -1, 7]),
            rnd.choice(["", "", "cf"]),
            rnd.choice([0, 60, 86400]),
            rnd.random() < 0.2,
        )
        for _ in range(rnd.randint(1, 12))
    ]


def test_the_same_arguments_as_formatted_in_full_for_any_amounts() -> None:
    rnd = random.Random(25)
    templated = 0
    for _ in range(400):
        statics = _layout(rnd)
        override = rnd.choice([None, "gw:{u:a}:ovr"])
        registry = rnd.random() < 0.7
        layout = CounterLayout()
        lease_s = rnd.choice([60, 900])
        for call in range(6):
            counters = [
                Counter(key, field, rnd.choice([0, 1, 15, 10**14]), limit, limit_field,  # type: ignore[arg-type]
                        rnd.choice([0, 0, 0, 64]), cap, cap_field, ttl, sliding)  # type: ignore[arg-type]
                for key, field, limit, limit_field, cap, cap_field, ttl, sliding in statics
            ]  # fmt: skip
            lease = Lease(f"l.{call}", lease_s if rnd.random() < 0.9 else 30)
            asked = override if rnd.random() < 0.9 else "gw:{u:b}:ovr"
            full = scripts.reserve_args(counters, asked, lease, registry=registry)
            made = reserve_template.reserve_args(counters, asked, lease, layout, registry=registry)
            assert made == full, counters
            template = layout.prepared
            assert isinstance(template, ReserveTemplate)
            templated += template.fits(counters, asked, registry, lease.ttl_s)
    assert templated > 1000  # most calls were made from the template, not formatted again


def test_a_flex_after_the_last_full_line_is_formatted_in_full() -> None:
    plain = [Counter("gw:{u:a}:d:1", "a", 0, 5), Counter("gw:{u:a}:d:1", "b", 0, 5)]
    layout = CounterLayout()
    first = reserve_template.reserve_args(plain, None, Lease("a", 60), layout, registry=True)
    flexed = [plain[0], plain[1]._replace(flex=3)]
    template = layout.prepared
    assert isinstance(template, ReserveTemplate)
    assert not template.fits(flexed, None, True, 60)
    made = reserve_template.reserve_args(flexed, None, Lease("b", 60), layout, registry=True)
    assert made == scripts.reserve_args(flexed, None, Lease("b", 60), registry=True)
    assert made[1][3:5] == first[1][3:5] == ["", "1\ta\t5\n1\tb\t5"]  # the same layout
    assert made[1][8] == "0,0/3"  # the flex among the amounts


def test_a_group_sends_each_layout_once() -> None:
    """Reservations of one plan (one user's, or another user's of the same tier) name their
    layout by number; only the amounts and lease ids go per reservation."""
    layout = CounterLayout()
    ours = [Counter("gw:{u:a}:d:1", "req", 1, 5, "req"), Counter("gw:{t:x}:d:1", "tok", 20, 99)]
    theirs = [counter._replace(key=counter.key.replace("u:a", "u:b")) for counter in ours]
    calls = [
        reserve_template.reserve_args(ours, None, Lease("l1", 60), layout, registry=True),
        reserve_template.reserve_args(
            theirs, None, Lease("l2", 60), CounterLayout(), registry=True
        ),
        reserve_template.reserve_args(
            [ours[0], ours[1]._replace(fixed=7, limit=5)], None, Lease("l3", 60), None,
            registry=True,
        ),
    ]  # fmt: skip
    names, args = scripts.grouped_reserve_args(calls)
    ours_lease, theirs_lease = keys.lease("gw:{u:a}:d:1"), keys.lease("gw:{u:b}:d:1")
    assert names == [
        "gw:{u:a}:d:1", "gw:{t:x}:d:1", ours_lease, keys.lease_data(ours_lease),
        keys.LEASE_REGISTRY, "gw:{u:b}:d:1", theirs_lease, keys.lease_data(theirs_lease),
    ]  # fmt: skip
    assert args[:2] == [3, 2]  # three reservations, two layouts (the third has another limit)
    assert args[2:5] == calls[0][1][2:5]
    assert args[5:8] == calls[2][1][2:5]
    assert args[8:] == [
        "", 1, "l1", "1/0,20",
        "6,2,7,8,5", 1, "l2", "1/0,20",
        "", 2, "l3", "1/0,7",
    ]  # fmt: skip


def test_a_redis_store_answers_and_writes_the_same_with_a_layout(redis_server: RedisServer) -> None:
    """The same reservations, one layout's counters with other amounts each time, through a
    real Redis with and without the layout: the same decisions, counters and leases."""
    rnd = random.Random(7)
    statics = [
        ("gw:{u:p}:d:1", "req", 5, "l0", -1, "", 60, False),
        ("gw:{u:p}:d:1", "tok", 200, "", 90, "c0", 60, False),
        ("gw:{u:p}:m:1", "usd", 300, "", -1, "", 120, False),
        ("gw:{t:x}:d:1", "usd", 250, "", -1, "", 60, True),
    ]
    rounds = [
        [
            Counter(key, field, rnd.randint(0, 40), limit, limit_field,  # type: ignore[arg-type]
                    rnd.randint(1, 30) if cap_field else 0, cap, cap_field, ttl, sliding)  # type: ignore[arg-type]
            for key, field, limit, limit_field, cap, cap_field, ttl, sliding in statics
        ]
        for _ in range(8)
    ]  # fmt: skip

    async def through(layout: CounterLayout | None) -> list[object]:
        redis_server.flushall()
        store = create_store(redis_server.url, Settings())
        seen: list[object] = []
        try:
            await store.write_hash("gw:{u:p}:ovr", {"l0": 6}, [])
            for number, counters in enumerate(rounds):
                lease = Lease(f"l{number}", 60)
                seen.append(await store.reserve(counters, "gw:{u:p}:ovr", lease, layout))
            keys = [key for key, *_ in statics]
            seen.append(await store.read_hashes(keys))
            seen.append(await store.read_reservations("gw:{u:p}:lease"))
        finally:
            await store.aclose()
        return seen

    layout = CounterLayout()
    assert run(through(layout)) == run(through(None))
    assert isinstance(layout.prepared, ReserveTemplate)
