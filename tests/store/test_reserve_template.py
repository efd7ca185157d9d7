"""reserve.lua's arguments from a ``CounterLayout``'s template are those formatted in full."""

from __future__ import annotations

import asyncio
import random
import struct

import redis

from gateway.config.model import Settings
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter, CounterLayout, Lease
from gateway.store.redis import reserve_layout, reserve_template, scripts
from gateway.store.redis.pipelined import pack
from gateway.store.redis.reserve_template import ReserveTemplate
from tests.metering.helpers import RedisServer, command, run
from tests.store.test_reserve_groups import script_calls

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
            call = reserve_template.reserve_call(counters, asked, lease, layout, registry=registry)
            assert call.alone() == scripts.reserve_args(counters, asked, lease, registry=registry)
            assert call.packed_alone() == pack(scripts.RESERVE.by_sha(*call.alone()))
            assert call.in_group() == reserve_layout.layout_args(
                counters, asked, lease, registry=registry
            ), counters
            template = layout.prepared
            assert isinstance(template, ReserveTemplate)
            templated += template.fits(counters, asked, registry, lease.ttl_s)
    assert templated > 1000  # most calls were made from the template, not formatted again


def test_a_flex_anywhere_fits_the_template_the_layout_apart_from_the_amounts() -> None:
    plain = [Counter("gw:{u:a}:d:1", "a", 0, 5), Counter("gw:{u:a}:d:1", "b", 0, 5)]
    layout = CounterLayout()
    first = reserve_template.reserve_call(plain, None, Lease("a", 60), layout, registry=True)
    flexed = [plain[0], plain[1]._replace(flex=3)]
    template = layout.prepared
    assert isinstance(template, ReserveTemplate)
    assert template.fits(flexed, None, True, 60)
    made = reserve_template.reserve_call(flexed, None, Lease("b", 60), layout, registry=True)
    assert made.alone() == scripts.reserve_args(flexed, None, Lease("b", 60), registry=True)
    grouped = made.in_group()
    assert grouped == reserve_layout.layout_args(flexed, None, Lease("b", 60), registry=True)
    assert grouped[1][2:5] == first.in_group()[1][2:5]  # the same layout
    assert grouped[1][8] == struct.pack("<4q", 0, 0, 0, 3)  # the flex among the amounts
    assert made.alone()[1][3] == grouped[1][3] + grouped[1][8]


def test_a_group_of_one_template_packs_as_its_arguments_in_full() -> None:
    """``packed_group``: the RESP of ``grouped_reserve_args``' call for calls of one template;
    None (packed in full) when one call is of another template or of none."""
    rnd = random.Random(31)
    for _ in range(150):
        statics = _layout(rnd)
        override = rnd.choice([None, "gw:{u:a}:ovr"])
        layout, lease_s = CounterLayout(), rnd.choice([60, 900])
        made = []
        for number in range(rnd.randint(2, 6)):
            counters = [
                Counter(key, field, rnd.choice([0, 1, 15, 10**14]), limit, limit_field,  # type: ignore[arg-type]
                        rnd.choice([0, 0, 64]), cap, cap_field, ttl, sliding)  # type: ignore[arg-type]
                for key, field, limit, limit_field, cap, cap_field, ttl, sliding in statics
            ]  # fmt: skip
            lease = Lease(rnd.choice(["", f"l.{number}", "\u00e9t\u00e9.1"]), lease_s)
            made.append(
                reserve_template.reserve_call(counters, override, lease, layout, registry=True)
            )
        whole = pack(scripts.RESERVE.by_sha(*reserve_layout.grouped_reserve_args(
            [call.in_group() for call in made])))  # fmt: skip
        assert reserve_template.packed_group(made) == whole
        elsewhere = rnd.choice([None, CounterLayout()])  # another template, or none
        other = reserve_template.reserve_call(
            counters, override, Lease("x", lease_s), elsewhere, registry=True
        )
        assert reserve_template.packed_group([*made, other]) is None
        assert reserve_template.packed_group([other, *made]) is None


def test_a_group_sends_each_layout_once() -> None:
    """Reservations of one plan (one user's, or another user's of the same tier) name their
    layout by number; only the amounts and lease ids go per reservation."""
    layout = CounterLayout()
    ours = [Counter("gw:{u:a}:d:1", "req", 1, 5, "req"), Counter("gw:{t:x}:d:1", "tok", 20, 99)]
    theirs = [counter._replace(key=counter.key.replace("u:a", "u:b")) for counter in ours]
    made = [
        reserve_template.reserve_call(ours, None, Lease("l1", 60), layout, registry=True),
        reserve_template.reserve_call(
            theirs, None, Lease("l2", 60), CounterLayout(), registry=True
        ),
        reserve_template.reserve_call(
            [ours[0], ours[1]._replace(fixed=7, limit=5)], None, Lease("l3", 60), None,
            registry=True,
        ),
    ]  # fmt: skip
    calls = [call.in_group() for call in made]
    names, args = reserve_layout.grouped_reserve_args(calls)
    ours_lease, theirs_lease = keys.lease("gw:{u:a}:d:1"), keys.lease("gw:{u:b}:d:1")
    assert names == [
        "gw:{u:a}:d:1", "gw:{t:x}:d:1", ours_lease, keys.lease_data(ours_lease),
        keys.LEASE_REGISTRY, "gw:{u:b}:d:1", theirs_lease, keys.lease_data(theirs_lease),
    ]  # fmt: skip
    assert args[:2] == [3, 2]  # three reservations, two layouts (the third has another limit)
    assert args[2:5] == calls[0][1][2:5]
    assert args[5:8] == calls[2][1][2:5]
    assert args[8:] == [
        "", 1, "l1", struct.pack("<4q", 1, 0, 20, 0),
        "6,2,7,8,5", 1, "l2", struct.pack("<4q", 1, 0, 20, 0),
        "", 2, "l3", struct.pack("<4q", 1, 0, 7, 0),
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

    async def through(layout: CounterLayout | None, together: bool = False) -> list[object]:
        redis_server.flushall()
        command(redis_server.port, "CONFIG", "RESETSTAT")
        store = create_store(redis_server.url, Settings())
        seen: list[object] = []
        try:
            await store.write_hash("gw:{u:p}:ovr", {"l0": 6}, [])
            calls = [
                store.reserve(counters, "gw:{u:p}:ovr", Lease(f"l{number}", 60), layout)
                for number, counters in enumerate(rounds)
            ]
            if together:  # queued in one turn: one call, each layout sent once
                seen += await asyncio.gather(*calls)
                assert script_calls(redis_server) == 1
            else:
                seen += [await call for call in calls]
            keys = [key for key, *_ in statics]
            seen.append(await store.read_hashes(keys))
            seen.append(await store.read_reservations("gw:{u:p}:lease"))
        finally:
            await store.aclose()
        return seen

    layout = CounterLayout()
    alone = run(through(None))
    assert run(through(layout)) == alone
    assert isinstance(layout.prepared, ReserveTemplate)
    assert run(through(layout, together=True)) == alone
    assert run(through(None, together=True)) == alone


def test_one_reservation_in_the_groups_form_decides_and_writes_as_alone(
    redis_server: RedisServer,
) -> None:
    """reserve.lua's group path with one reservation (its layout and amounts apart) and its
    path for one alone (the amounts in the lines): the same replies, counters, TTLs, leases."""
    client = redis.Redis.from_url(redis_server.url)
    wanted = [
        Counter("gw:{u:a}:d:1", "req", 1, 5, "req", ttl_s=60),
        Counter("gw:{u:a}:d:1", "tok", 20, 99, flex=3, cap=2, ttl_s=60),
        Counter("gw:{t:a}:d:1", "usd", 20, 99, ttl_s=30, sliding=True),
    ]
    seen = []
    for form in (scripts.reserve_args, reserve_layout.layout_args):
        redis_server.flushall()
        client.hset("gw:{u:a}:ovr", "req", 3)
        replies = []
        for number in range(5):  # three granted, then refused by the override's limit
            names, args = form(wanted, "gw:{u:a}:ovr", Lease(f"l{number}", 60), registry=True)
            replies.append(client.execute_command(*scripts.RESERVE.by_text(names, args)))
        group = keys.lease("gw:{u:a}:d:1")
        seen.append([
            replies, client.hgetall("gw:{u:a}:d:1"), client.hgetall("gw:{t:a}:d:1"),
            client.ttl("gw:{u:a}:d:1"), client.ttl("gw:{t:a}:d:1"),
            client.hgetall(keys.lease_data(group)), client.zrange(keys.LEASE_REGISTRY, 0, -1),
        ])  # fmt: skip
    assert seen[0] == seen[1]
    assert [reply[0] for reply in seen[0][0]] == [0, 0, 0, 1, 1]
    assert seen[0][1] == {b"req": b"3", b"tok": b"66"}
