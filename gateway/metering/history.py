"""Reading usage records back from the store's stream.

The stream is in write order, and a record is written when its request finishes (or, after
an outage, when the buffer is flushed), so it is scanned from the newest entry back until
records are older than ``start`` by more than ``LATE_GRACE_S``.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.metering.store import Store

PAGE = 1000
LATE_GRACE_S = 86_400


async def read_records(
    store: Store, user: str | None, start: float, end: float
) -> list[dict[str, Any]]:
    """Records of ``user`` (all users when None) with ``start <= ts < end``, oldest first."""
    found: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        page = await store.records_page(before, PAGE)
        oldest = float("inf")
        for _, raw in page:
            record = orjson.loads(raw)
            stamp = float(record.get("ts", 0.0))
            oldest = min(oldest, stamp)
            if start <= stamp < end and (user is None or record.get("user") == user):
                found.append(record)
        if len(page) < PAGE or oldest < start - LATE_GRACE_S:
            break
        before = page[-1][0]
    found.sort(key=lambda record: float(record.get("ts", 0.0)))
    return found
