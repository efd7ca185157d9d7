"""Formed settles (``settle_forms.py``) leave Redis exactly as f5188d3's encoding did: random
batches of requests of a few forms sharing hashes (sums through zero, watched fields, leases
kept and gone, shared aggregates, records, retried marks, the cluster's per-slot calls) run
through both, each from an empty Redis, and every key compared."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from gateway.store import keys
from gateway.store.port import (
    MAX_STORED,
    Increment,
    LeaseEnd,
    SettleBatch,
    SettleForm,
    SharedAggregate,
    StoreRejected,
)
from gateway.store.redis import scripts
from tests.metering.helpers import RedisServer
from tests.store import settle_reference

USERS = ("a", "b", "c")
TIER = ("gw:{t:x}:d:1", "gw:{t:x}:m:1")
SPEND = ("gw:spend:d:1", "gw:spend:m:1")
MODEL = "gw:agg:model:m:1"
FIELDS = ("requests", "errors", "tokens")
SHARED = ("gw:{o:o}:min:1", "gw:{o:o}:d:1")
OWN = "gw:{o:o}:h:1"  # written by an increment spelled out alone (an allowance's give-back)


def _forms(rng: random.Random) -> list[SettleForm]:
    """Forms of each user, charged or not, some disagreeing with others on a time to live."""
    forms = []
    for user in USERS:
        own = (f"gw:{{u:{user}}}:d:1", f"gw:{{u:{user}}}:m:1")
        for charged in (True, False):
            slots = [(key, field, 100, False) for key in own for field in ("req", "tok", "usd")]
            slots += [(key, "usd", 200, False) for key in TIER]
            if rng.random() < 0.1:
                slots.append((TIER[0], "tok", 300 + rng.randrange(2), False))
            if charged:
                slots += [(key, scope, 900, True) for key in SPEND for scope in ("all", "x")]
            plain = len(slots)
            slots += [(f"gw:{{u:{user}}}:agg:1", field, 900, False) for field in FIELDS]
            slots += [(MODEL, field, 900, False) for field in FIELDS]
            forms.append(SettleForm(tuple(slots), plain))
    return forms


def _delta(rng: random.Random) -> int:
    return rng.choice((0, 0, 0, rng.randint(-30, 30), rng.randint(-3, 3), rng.randint(0, 10**6)))


def _batch(
    rng: random.Random, forms: list[SettleForm], number: int, own_written: bool = False
) -> SettleBatch:
    form = rng.choice(forms)
    user = form.slots[0][0]
    deltas = tuple(_delta(rng) for _ in form.slots)
    lease = f"l{rng.randrange(40)}"
    held: Any = None
    if rng.random() < 0.7:
        held = tuple(
            (key, field, rng.randint(0, 40), ttl)
            for key, field, ttl, watch in form.slots[: form.plain]
            if not watch and rng.random() < 0.6
        )
    leases = (LeaseEnd(keys.lease(user), lease, held),) if rng.random() < 0.8 else ()
    if leases and rng.random() < 0.3:  # a second group of the same lease
        leases += (LeaseEnd(keys.lease(TIER[0]), lease, held and held[:1]),)
    shared: tuple[SharedAggregate, ...] = ()
    if rng.random() < 0.2:
        hashes = SHARED if rng.random() < 0.8 else (SHARED[0], TIER[1])  # TIER: in the form
        shared = (SharedAggregate(hashes, (60, 0), ("req", "tok"), (1, rng.randint(0, 9))),)
    written: tuple[Increment, ...] = ()
    if rng.random() < (0.25 if own_written else 0.1):  # spelled out: the general path
        written = (Increment(TIER[0], "usd", rng.randint(-5, 5), 200),)
        if own_written:  # or on a hash of its own (then written after the form's ones)
            key = rng.choice((OWN, OWN, OWN, OWN, SHARED[0], TIER[0]))
            watch = rng.random() < 0.3
            written = (Increment(key, "req", rng.randint(-5, 5), 200, watch),)
    index = keys.user_records(user, "1") if rng.random() < 0.7 else None
    record = b"r%d" % number if rng.random() < 0.9 else None
    return SettleBatch(written, record, (), leases, index, shared, form, deltas)


def _seed_leases(client: redis.Redis, rng: random.Random) -> None:
    """Some leases held (their payload: give back), the others gone (swept)."""
    for user in USERS:
        group = keys.lease(f"gw:{{u:{user}}}:d:1")
        for lease in range(40):
            if rng.random() < 0.3:
                payload = f"gw:{{u:{user}}}:d:1\ttok\t{rng.randint(0, 20)}"
                client.hset(keys.lease_data(group), f"l{lease}", payload)
                client.zadd(group, {f"l{lease}": 10**10})


def _state(client: redis.Redis, by_id: bool) -> dict[bytes, Any]:
    found: dict[bytes, Any] = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key)
        ttl = client.ttl(key)
        value: Any
        if kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.llen(key) if by_id else client.lrange(key, 0, -1)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            value = [entry for _, entry in client.xrange(key)]
        else:
            value = client.get(key)
        found[key] = (kind, ttl == -1, value)
    return found


def _run(
    client: redis.Redis, seed: int, make: Any, text: str, *, cluster: bool, own: bool = False
) -> tuple[dict[bytes, Any], list[Any]]:
    client.flushall()
    rng = random.Random(seed)
    forms = _forms(rng)
    _seed_leases(client, rng)
    replies: list[Any] = []
    for round_ in range(30):
        count = rng.randint(1, 14)
        batches = [_batch(rng, forms, round_ * 100 + n, own) for n in range(count)]
        mark = f"m{rng.randrange(25)}"  # some marks again: a retried batch
        tags = scripts.slot_tags(batches) if cluster else [None]
        for tag in tags:
            stream = tag is None or tag == keys.slot_tag(keys.USAGE_STREAM)
            call = make(
                batches, 1000, mark=keys.settled_mark(tag or "settle", mark), stream=stream,
                by_id=not cluster, tag=tag,
            )  # fmt: skip
            if call is None:
                replies.append(None)
                continue
            reply = client.eval(text, len(call.keys), *call.keys, *call.args)
            replies.append(dict(zip(call.watched, reply[1:], strict=True)) if reply[0] else {})
    return _state(client, by_id=not cluster), replies


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cluster", [False, True])
def test_formed_settles_leave_redis_as_the_spelled_out_encoding_did(
    redis_server: RedisServer, seed: int, cluster: bool
) -> None:
    client = redis.Redis(port=redis_server.port)
    try:
        before = _run(client, seed, settle_reference.call, settle_reference.TEXT, cluster=cluster)
        after = _run(client, seed, scripts.settle_call, scripts.SETTLE.text, cluster=cluster)
    finally:
        client.flushall()
        client.close()
    assert after[1] == before[1]
    assert after[0] == before[0]
    assert any(kind == b"hash" for kind, _, _ in after[0].values())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cluster", [False, True])
def test_increments_spelled_out_on_hashes_of_their_own_leave_redis_as_before(
    redis_server: RedisServer, seed: int, cluster: bool
) -> None:
    """An allowance's give-back (increments spelled out) on hashes no form or shared write of
    the call writes is written after the form's increments, the call staying formed; on a
    hash they share, the general path as before: the same state and replies either way."""
    client = redis.Redis(port=redis_server.port)
    try:
        before = _run(
            client, seed, settle_reference.call, settle_reference.TEXT, cluster=cluster, own=True
        )
        after = _run(
            client, seed, scripts.settle_call, scripts.SETTLE.text, cluster=cluster, own=True
        )
    finally:
        client.flushall()
        client.close()
    assert after[1] == before[1]
    assert after[0] == before[0]


@pytest.mark.parametrize("bad", [MAX_STORED + 1, -MAX_STORED - 1, 2**64, 1.5, "1"])
def test_a_formed_delta_settle_lua_cannot_take_is_refused_before_redis(bad: object) -> None:
    form = SettleForm((("gw:{u:f}:d:1", "tok", 60, False), ("gw:{u:f}:d:1", "req", 60, False)), 2)
    batch = SettleBatch((), form=form, deltas=(1, bad))  # type: ignore[arg-type]
    with pytest.raises(StoreRejected):
        scripts.settle_call([batch], 100, mark=None, stream=True, by_id=True)
    with pytest.raises(StoreRejected):  # a form's count of deltas is checked too
        scripts.settle_call(
            [SettleBatch((), form=form, deltas=(1,))], 100, mark=None, stream=True, by_id=True
        )
