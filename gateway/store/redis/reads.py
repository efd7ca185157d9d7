"""Redis replies decoded: a hash's integer fields, held lease amounts, stream entries by id."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.store import keys
from gateway.store.port import MAX_STORED

logger = logging.getLogger("gateway.metering")


async def stream_entries(client: Redis | RedisCluster, ids: Sequence[str]) -> dict[str, bytes]:
    """Usage stream entries by id (those trimmed from the stream are missing)."""
    found: dict[str, bytes] = {}
    for start in range(0, len(ids), 1000):
        async with client.pipeline(transaction=False) as pipe:
            for entry_id in ids[start : start + 1000]:
                pipe.xrange(keys.USAGE_STREAM, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        for reply in replies:
            for entry_id, fields in reply or ():
                found[text(entry_id)] = bytes(fields[b"r"])
    return found


def held_amounts(payloads: Iterable[str]) -> dict[str, int]:
    """Sum the ``key\tfield\tamount`` lines of lease payloads per ``key\tfield``."""
    held: dict[str, int] = {}
    for payload in payloads:
        for line in payload.splitlines():
            key, _, rest = line.partition("\t")
            field, _, amount = rest.partition("\t")
            if amount.lstrip("-").isdecimal():
                name = f"{key}\t{field}"
                held[name] = held.get(name, 0) + int(amount)
    return held


def integers(key: str, stored: Mapping[Any, Any]) -> dict[str, int]:
    """A hash's integer fields; a field holding anything else is left out (and logged)."""
    values: dict[str, int] = {}
    for name, raw in stored.items():
        try:
            value = int(raw)
        except ValueError:
            value = MAX_STORED + 1
        if abs(value) <= MAX_STORED:
            values[text(name)] = value
        else:
            logger.warning("metering: ignoring %s %s: not an integer in range", key, text(name))
    return values


def text(value: bytes | str) -> str:
    """A reply as text (redis-py answers bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else value
