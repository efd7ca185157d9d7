"""Reading usage records back from the store.

One user's records come from the per-user day index (``keys.user_records``): only that
user's entries are read, for the days of the range within the index's retention
(``INDEX_TTL_S`` back from now). Every user's records come from the stream: it is in write
order, and a record is written when its request finishes (or, after an outage, when the
buffer is flushed), so it is scanned from the newest entry back until records are older than
``start`` by more than ``LATE_GRACE_S``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import decode
from gateway.store.keys import INDEX_TTL_S
from gateway.store.port import Store

PAGE = 1000
LATE_GRACE_S = 86_400


async def read_records(
    store: Store, user: str | None, start: float, end: float
) -> list[UsageRecord]:
    """Records of ``user`` (all users when None) with ``start <= ts < end``, oldest first."""
    found: list[UsageRecord] = []
    before: str | None = None
    while True:
        page = await store.records_page(before, PAGE)
        oldest = float("inf")
        for _, raw in page:
            record = decode(raw)
            if record is None:
                continue
            stamp = record.ts
            oldest = min(oldest, stamp)
            if start <= stamp < end and (user is None or record.user == user):
                found.append(record)
        if len(page) < PAGE or oldest < start - LATE_GRACE_S:
            break
        before = page[-1][0]
    found.sort(key=lambda record: record.ts)
    return found


async def read_user_records(
    store: Store, user: str, start: float, end: float, now: float
) -> list[UsageRecord]:
    """Records of ``user`` with ``start <= ts < end``, oldest first, from the day index."""
    first = max(start, now - INDEX_TTL_S)
    last = min(end, now + 86_400)
    numbers = range(int(first // 86_400), int(last // 86_400) + 1)
    days = [datetime.fromtimestamp(86_400 * n, UTC).strftime("%Y%m%d") for n in numbers]
    found = []
    for raw in await store.user_records(user, days):
        record = decode(raw)
        if record is None:
            continue
        if start <= record.ts < end and record.user == user:
            found.append(record)
    found.sort(key=lambda record: record.ts)
    return found
