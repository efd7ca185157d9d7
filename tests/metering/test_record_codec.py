"""Issue 23 #21: usage records are stored compactly and read back whole.

Before: each record was its full JSON (31 long keys, every default written): 750 bytes of
Redis memory per request (INFO used_memory), against ~500 documented.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest
import redis

from gateway.config.model import Config, Price
from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import decode, encode
from gateway.metering.record_ids import RecordIds
from gateway.metering.settle import settlement
from gateway.metering.types import Admission

from .helpers import NOON, RedisServer, metered, ok, request

RECORDS = 1000
MOST_BYTES_PER_RECORD = 420  # measured 341 (standalone Redis 7, stream + day index)


def full_records(config: Config) -> list[UsageRecord]:
    """Records covering every field away from its default, and at it."""
    priced = Price(input=1.0, output=2.0)
    outcomes = [
        ok(12, 34, latency_ms=123.4),
        ok(
            12,
            34,
            price=priced,
            fallback=True,
            attempts=3,
            estimated=True,
            downgraded=True,
            deployment="eu",
            cache="miss",
            tags=("a", "b"),
            rollout="canary",
        ),
        ok(5, 7, status=502, delivered=True, price=priced),  # a cut stream: charged
        ok(5, 0, status=429, price=priced),  # refused: nothing charged
        ok(None, None, status=200, images=2, audio_ms=1500, video_ms=0),
        replace(ok(0, 0, video_ms=4000, model=""), provider=None, upstream_model=None),
    ]
    ids = RecordIds()
    found = []
    for index, outcome in enumerate(outcomes):
        meter_request = request(config, byok=index == 1, price=priced, request_id=f"r{index}")
        admission = Admission(
            headers={}, clamp_max_tokens=None, request=meter_request, started=NOON + index + 0.0004
        )
        found.append(settlement(admission, outcome, ids()).record)
    return found


def test_every_field_round_trips(config: Config) -> None:
    for record in full_records(config):
        stored = encode(record)
        assert decode(stored) == record
        assert len(stored) < len(orjson.dumps(record.as_dict())) * 0.6


def test_records_in_the_full_form_are_still_read(config: Config) -> None:
    record = replace(full_records(config)[1], record_id=None)  # before records had ids
    full = record.as_dict()
    del full["record_id"]
    assert decode(orjson.dumps(full)) == record
    assert decode(b"not json") is None and decode(b"[1]") is None


def test_redis_memory_per_record(config: Config, redis_server: RedisServer) -> None:
    redis_server.flushall()
    client = redis.Redis(port=redis_server.port)

    async def scenario() -> float:
        async with metered(config, redis_server.url) as (meter, _):

            async def requests(count: int, first: int) -> None:
                for n in range(first, first + count):
                    user = f"user{n % 50}"
                    meter_request = request(config, user=user, request_id=f"req_{n:032x}")
                    admission = await meter.admit(meter_request)
                    meter.finish(admission, ok(12, 34, latency_ms=123.4))
                await meter.settled()

            await requests(100, 0)  # every user's counters and index lists exist
            before = int(client.info("memory")["used_memory"])
            await requests(RECORDS, 100)
            after = int(client.info("memory")["used_memory"])
            return (after - before) / RECORDS

    per_record = asyncio.run(scenario())
    print(f"bytes per record: {per_record:.0f}")
    assert per_record <= MOST_BYTES_PER_RECORD


@pytest.mark.parametrize("raw", [b'{"t":"x"}', b'{"t":1,"pt":"a","$":1.5}'])
def test_odd_values_do_not_break_a_reader(raw: bytes) -> None:
    record = decode(raw)
    assert record is not None and record.total_tokens == 0
