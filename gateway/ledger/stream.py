"""The usage stream read through a Redis consumer group: read, claim, acknowledge, trim, lag.

Group ``ledger`` on ``gw:usage`` (one key, so one slot on a cluster; standalone, Sentinel and
Cluster clients all route it). An entry is acknowledged only after its rows are committed; an
entry left pending by a consumer that died is claimed by another after ``claim_idle_ms``.
With the ledger on, the stream is trimmed here, by MINID, to the oldest entry some group has
not yet acknowledged (or not yet been given), never past it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from gateway.store import keys
from gateway.store.redis import consumer_group

GROUP = "ledger"
STREAM = keys.USAGE_STREAM


@dataclass(frozen=True)
class Entry:
    id: str
    raw: bytes


@dataclass(frozen=True)
class Backlog:
    """What the ledger group has not shipped: ``pending`` (delivered, not acknowledged) plus
    ``undelivered``; ``length`` is the stream's."""

    pending: int
    undelivered: int
    length: int

    @property
    def lag(self) -> int:
        return self.pending + self.undelivered


async def ensure_group(client: Any) -> None:
    """Create the group at the stream's start (so what the stream holds is shipped too)."""
    await consumer_group.ensure(client, STREAM, GROUP)


async def read_new(client: Any, consumer: str, count: int, block_ms: int) -> list[Entry]:
    return _entries(await consumer_group.read_new(client, STREAM, GROUP, consumer, count, block_ms))


async def claim_stale(
    client: Any, consumer: str, idle_ms: int, count: int, cursor: str = "0-0"
) -> tuple[str, list[Entry]]:
    """Entries pending longer than ``idle_ms`` with any consumer, now this one's, and the
    cursor to go on from ("0-0" once the scan wrapped). Entries trimmed away meanwhile
    (nothing left to ship) are acknowledged."""
    claimed = await consumer_group.claim_stale(
        client, STREAM, GROUP, consumer, idle_ms, count, cursor
    )
    await consumer_group.ack(client, STREAM, GROUP, claimed.deleted)
    return claimed.cursor, _entries(claimed.entries)


async def ack(client: Any, ids: list[str]) -> None:
    await consumer_group.ack(client, STREAM, GROUP, ids)


async def backlog(client: Any) -> Backlog:
    length = int(await client.xlen(STREAM))
    for group in await client.xinfo_groups(STREAM):
        if _text(group.get("name", b"")) == GROUP:
            pending = int(group.get("pending") or 0)
            lag = group.get("lag")
            undelivered = int(lag) if lag is not None else max(0, length - pending)
            return Backlog(pending, undelivered, length)
    return Backlog(0, length, length)


async def safe_trim_id(client: Any) -> str | None:
    """The oldest entry id some group still needs: its oldest pending entry, else the entry
    after its last delivered one. None when there is no group (then nothing is trimmed)."""
    needed: list[tuple[int, int]] = []
    for group in await client.xinfo_groups(STREAM):
        name = _text(group.get("name", b""))
        oldest = None
        if int(group.get("pending") or 0):
            summary = await client.xpending(STREAM, name)
            oldest = summary.get("min")
        if oldest is not None:
            needed.append(_id(_text(oldest)))
        else:
            last = _id(_text(group.get("last-delivered-id", b"0-0")))
            needed.append((last[0], last[1] + 1))
    if not needed:
        return None
    low = min(needed)
    return f"{low[0]}-{low[1]}"


async def trim_shipped(client: Any) -> int:
    """Trim (approximately: whole macro nodes only, so never too much) what every group has
    acknowledged; the entries removed."""
    floor = await safe_trim_id(client)
    if floor is None or floor == "0-1":
        return 0
    with contextlib.suppress(ResponseError):
        return int(await client.xtrim(STREAM, minid=floor, approximate=True))
    return 0


def _entries(entries: Any) -> list[Entry]:
    found = []
    for entry_id, fields in entries or ():
        if fields is None:  # claimed but deleted
            continue
        raw = fields.get(b"r", fields.get("r", b""))
        found.append(Entry(_text(entry_id), raw if isinstance(raw, bytes) else str(raw).encode()))
    return found


def _id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms or 0), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
