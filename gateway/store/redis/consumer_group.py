"""A Redis stream read through a consumer group: create it, read, claim the stale, acknowledge.

The ledger's shipper (the usage stream) and the batch runners (one stream per batch) read their
streams the same way: XREADGROUP for entries never delivered, XAUTOCLAIM for those a consumer
that died left pending, XACK once an entry's work is done. Entries come back as Redis gives
them, ``(id, fields)``, for the caller to read its own fields; ``fields`` is None for an entry
trimmed or deleted after it was delivered (XAUTOCLAIM's third part names those too).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from redis.exceptions import ResponseError

RawEntry = tuple[bytes | str, Any]


class Claimed(NamedTuple):
    """What one XAUTOCLAIM step took over, the cursor to go on from and the ids gone meanwhile."""

    cursor: str  # "0-0" once the scan wrapped
    entries: list[RawEntry]
    deleted: list[str]


async def ensure(client: Any, stream: str, group: str) -> None:
    """Create ``group`` at the stream's start (so what it holds is read too) unless it exists."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def read_new(
    client: Any, stream: str, group: str, consumer: str, count: int, block_ms: int | None = None
) -> list[RawEntry]:
    """Up to ``count`` entries never delivered, now pending with ``consumer``; ``block_ms``
    waits that long for one (None: not at all)."""
    reply = await client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    return [entry for _, entries in reply or () for entry in entries or ()]


async def claim_stale(
    client: Any,
    stream: str,
    group: str,
    consumer: str,
    idle_ms: int,
    count: int,
    cursor: str = "0-0",
) -> Claimed:
    """Entries pending longer than ``idle_ms`` with any consumer, now ``consumer``'s."""
    reply = await client.xautoclaim(
        stream, group, consumer, min_idle_time=idle_ms, start_id=cursor, count=count
    )
    return Claimed(
        text(reply[0]) if reply else "0-0",
        list(reply[1]) if len(reply) > 1 and reply[1] else [],
        [text(entry_id) for entry_id in (reply[2] if len(reply) > 2 else ())],
    )


async def ack(client: Any, stream: str, group: str, ids: list[str]) -> None:
    """Acknowledge ``ids`` (nothing is sent for none)."""
    if ids:
        await client.xack(stream, group, *ids)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
