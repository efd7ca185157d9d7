"""A shared aggregate (the same usage added to a level's window hashes) written by every store,
on Redis as one settle line, with the same result as one write per hash and field."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
import redis

from gateway.config.model import Config
from gateway.store.factory import create_store
from gateway.store.port import Increment, SettleBatch, SharedAggregate
from gateway.store.redis import scripts
from gateway.store.redis.scripts import settle_call
from gateway.store.redis.settle_pack import FIELD_LUA
from tests.metering.helpers import RedisServer, command, run
from tests.store import settle_args

MINUTE, DAY, PAR = "gw:{tm:t}:min:1", "gw:{tm:t}:d:1", "gw:{tm:t}:par"
FIELDS = ("req", "tok", "usd")


def windows(req: int, tok: int, usd: int) -> SharedAggregate:
    return SharedAggregate((MINUTE, DAY), (960, 90_000), FIELDS, (req, tok, usd))


def test_a_group_is_one_line_its_zero_fields_left_out() -> None:
    org = SharedAggregate(("gw:{o:o}:min:1", "gw:{o:o}:d:1"), (960, 90_000), FIELDS, (1, 0, 3))
    first = SettleBatch((Increment("gw:k", "tok", 4, 60),), shared=(windows(1, 20, 5),))
    second = SettleBatch((), shared=(org, SharedAggregate((PAR,), (0,), ("n",), (0,))))
    call = settle_call([first, second], 100, mark=None, stream=False, by_id=True)
    assert call is not None
    assert call.keys == ["gw:k", MINUTE, DAY, "gw:{o:o}:min:1", "gw:{o:o}:d:1"]
    packed = settle_args.read(call)
    assert packed.increments == ["1\ttok\t4\t60\t0"]
    # each group's hashes as that many KEYS from the first, their times to live, the fields;
    # nothing for PAR: all zero
    lines = "2:960,90000\treq\t1\ttok\t20\tusd\t5\n4:960,90000\treq\t1\tusd\t3"
    assert packed.shared == lines.split("\n")


def test_a_group_sharing_a_hash_with_another_write_is_merged_into_its_lines() -> None:
    """Every field is written once per call with its deltas summed (a counter stops at zero,
    so a sum and its parts in turn could differ), so such a group goes on the usual lines."""
    other_minute = SharedAggregate(("gw:{tm:t}:min:2", DAY), (960, 90_000), FIELDS, (1, 1, 1))
    batches = [
        SettleBatch((Increment(MINUTE, "req", -3, 960),), shared=(windows(5, 0, 0),)),
        SettleBatch((), shared=(other_minute,)),
    ]
    alone = SettleBatch((), shared=(windows(1, 0, 0),))
    twice = settle_call([alone, alone], 100, mark=None, stream=False, by_id=True)
    assert twice is not None and settle_args.read(twice).shared == []
    assert settle_args.read(twice).increments == ["1\treq\t2\t960\t0", "2\treq\t2\t90000\t0"]
    call = settle_call(batches, 100, mark=None, stream=False, by_id=True)
    assert call is not None and settle_args.read(call).shared == []
    assert sorted(settle_args.read(call).increments) == sorted([
        "1\treq\t2\t960\t0",  # -3 and 5: one write
        "2\treq\t6\t90000\t0",  # in both groups: summed
        "2\ttok\t1\t90000\t0",
        "2\tusd\t1\t90000\t0",
        "3\treq\t1\t960\t0",
        "3\ttok\t1\t960\t0",
        "3\tusd\t1\t960\t0",
    ])  # fmt: skip


def test_every_store_writes_a_shared_aggregate_to_each_hash_with_its_time_to_live(
    config: Config, store_url: str | None
) -> None:
    first = SettleBatch((), shared=(windows(1, 20, 300),))
    par = SharedAggregate((PAR,), (0,), ("n",), (-1,))
    second = SettleBatch((), shared=(windows(1, 7, 0), par))

    async def scenario() -> list[dict[str, int]]:
        store = create_store(store_url, config.settings)
        try:
            for batches, batch_id in (([first], "b1"), ([first], "b1"), ([second], "b2")):
                await store.settle(batches, batch_id)  # b1 twice: a retry, applied once
            await store.settle([first, second])  # a hash in both: summed first
            await store.settle([SettleBatch((), shared=(windows(-9, 0, 0),))])
            return await store.read_hashes([MINUTE, DAY, PAR])
        finally:
            await store.aclose()

    minute, day, par = run(scenario())
    assert minute == day == {"req": 0, "tok": 54, "usd": 600}  # never below zero
    assert par in ({}, {"n": 0})
    if store_url is not None:
        port = int(store_url.rsplit(":", 1)[1].split("/")[0])
        ttls = [int(command(port, "TTL", key).strip(b":\r\n")) for key in (MINUTE, DAY)]
        assert 0 < ttls[0] <= 960 < ttls[1] <= 90_000


@pytest.mark.parametrize(
    "broken",
    [
        lambda form, data: (form, data[:-1]),  # cut short
        lambda form, data: (form, data + b"\0"),  # a byte past the last value
        lambda form, data: (form[: -len(FIELD_LUA)], data),  # a field fewer in the format
        lambda form, data: (form + "i4", data),  # a value more in the format
        lambda form, data: (form, _counted(data, shared=2)),  # more shared writes than sent
        lambda form, data: (form, _counted(data, hashes=1)),  # fewer hashes than its KEYS
    ],
)
def test_a_malformed_packed_settle_fails_the_call_before_any_write(
    redis_server: RedisServer, broken: Callable[[str, bytes], tuple[str, bytes]]
) -> None:
    """The gateway packs what settle.lua reads (settle_pack.py): data that does not end where
    its format and head say fails the call with nothing written."""
    redis_server.flushall()
    call = settle_call(
        [SettleBatch((Increment("gw:k", "tok", 4, 60),), shared=(windows(1, 1, 1),))],
        100, mark=None, stream=False, by_id=True,
    )  # fmt: skip
    assert call is not None
    form, data = call.args[0], call.args[1]
    assert isinstance(form, str) and isinstance(data, bytes)
    form, data = broken(form, data)
    client = redis.Redis(port=redis_server.port)
    with pytest.raises(redis.ResponseError):
        client.eval(scripts.SETTLE.text, len(call.keys), *call.keys, form, data, call.args[2])
    client.close()
    assert command(redis_server.port, "EXISTS", "gw:k", MINUTE, DAY) == b":0\r\n"


def _counted(data: bytes, *, shared: int = 1, hashes: int | None = None) -> bytes:
    """``data`` with its head's count of shared writes, or of hashes, changed."""
    head = list(struct.unpack_from("<iiiiiBiiiii", data))
    head[7] = shared
    if hashes is not None:
        head[0] = hashes
    return struct.pack("<iiiiiBiiiii", *head) + data[struct.calcsize("<iiiiiBiiiii") :]
