"""The consumer-group helper against a real Redis: created once, new entries delivered once,
a dead consumer's claimed by another, deleted entries named, acknowledged entries gone."""

from __future__ import annotations

import redis.asyncio as redis_asyncio

from gateway.store.redis import consumer_group
from tests.metering.helpers import run

STREAM, GROUP = "gw:test:lines", "workers"


def ids(entries: list[consumer_group.RawEntry]) -> list[str]:
    return [consumer_group.text(entry_id) for entry_id, _ in entries]


def test_read_claim_and_acknowledge(redis_url: str) -> None:
    async def scenario() -> None:
        client = redis_asyncio.from_url(redis_url)
        try:
            before = await client.xadd(STREAM, {"l": 0})  # there before the group: read too
            await consumer_group.ensure(client, STREAM, GROUP)
            await consumer_group.ensure(client, STREAM, GROUP)  # BUSYGROUP is not an error
            added = [await client.xadd(STREAM, {"l": line}) for line in (1, 2, 3)]
            every = [consumer_group.text(i) for i in (before, *added)]

            dead = await consumer_group.read_new(client, STREAM, GROUP, "dead", 3)
            assert ids(dead) == every[:3]
            assert [fields[b"l"] for _, fields in dead] == [b"0", b"1", b"2"]
            rest = await consumer_group.read_new(client, STREAM, GROUP, "live", 10, block_ms=1)
            assert ids(rest) == every[3:]
            assert await consumer_group.read_new(client, STREAM, GROUP, "live", 10) == []

            await client.xdel(STREAM, every[1])  # gone while pending with "dead"
            # idle for 0 ms or more: every pending entry, "live"'s own too
            claimed = await consumer_group.claim_stale(client, STREAM, GROUP, "live", 0, 10)
            assert ids(claimed.entries) == [every[0], every[2], every[3]]
            assert claimed.deleted == [every[1]]
            assert claimed.cursor == "0-0"  # the scan wrapped

            await consumer_group.ack(client, STREAM, GROUP, ids(claimed.entries))
            await consumer_group.ack(client, STREAM, GROUP, [])
            pending = await client.xpending(STREAM, GROUP)
            assert pending["pending"] == 0
        finally:
            await client.aclose()

    run(scenario())


def test_the_group_is_created_with_its_stream(redis_url: str) -> None:
    async def scenario() -> None:
        client = redis_asyncio.from_url(redis_url)
        try:
            await consumer_group.ensure(client, STREAM, GROUP)
            assert await client.xlen(STREAM) == 0
            assert await consumer_group.read_new(client, STREAM, GROUP, "one", 5) == []
            claimed = await consumer_group.claim_stale(client, STREAM, GROUP, "one", 0, 5)
            assert claimed == consumer_group.Claimed("0-0", [], [])
        finally:
            await client.aclose()

    run(scenario())
