"""Usage rollups: the usage stream folded into hourly and daily aggregate hashes, off the hot path.

A ``Roller`` reads the records the stream gained since its cursor (newest first, page by page,
never a record twice) and adds them, summed per hour and day and per combination of the
dimensions below, to the rollup hashes with one settle. Nothing is added to a request's own
path: the settle that wrote the record is unchanged, and the roller's cost is one stream read
per record plus one settle per run, shared by every request of the run.

Exactly once across workers and replicas: a run claims the cursor it starts from
(``set_once`` on ``gw:roll:claim:<cursor>``); only the claimant folds the records after that
cursor and then moves the cursor, so two processes never fold the same record. A process that
dies between its settle and its cursor write (a few milliseconds) leaves the claim to expire,
and that range is then folded again: the one window in which a record may count twice.

Hash layout (no hash tag: spread over a cluster's slots)::

    gw:roll:LEVEL:h:YYYYMMDDHH   hash   field ``<dims>SEP<metric>`` → integer
    gw:roll:LEVEL:d:YYYYMMDD     hash   likewise, per UTC day

(``SEP`` is the unit separator, which also joins the dimension values.)

``LEVEL`` is ``full`` (every dimension) or ``coarse`` (tier, model, provider, capability,
status: small, for the overview). Metrics: ``n`` requests, ``e`` errors, ``f`` fallbacks,
``p``/``c`` prompt/completion tokens, ``u`` cost in micro-USD, ``l<k>`` requests whose latency
falls in histogram bucket ``k`` (upper bound ``LATENCY_BASE ** k`` ms, for the p95).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.metering.store import Increment, SettleBatch, Store, StoreError

logger = logging.getLogger("gateway.metering")

DIMENSIONS = ("user", "key_id", "tier", "model", "provider", "capability", "status", "tag")
COARSE = ("tier", "model", "provider", "capability", "status")
LEVELS: dict[str, tuple[str, ...]] = {"full": DIMENSIONS, "coarse": COARSE}
HOUR_TTL_S = 40 * 86_400
DAY_TTL_S = 400 * 86_400
LATENCY_BASE = 1.25
PAGE = 1000
CURSOR_KEY = "gw:roll:state"
CLAIM_TTL_S = 120
NONE = "-"
SEP = "\x1f"  # between a field's parts (the settle script splits its arguments on tabs)


def hour_key(level: str, hour: str) -> str:
    return f"gw:roll:{level}:h:{hour}"


def day_key(level: str, day: str) -> str:
    return f"gw:roll:{level}:d:{day}"


def latency_bucket(latency_ms: float) -> int:
    return 0 if latency_ms <= 1 else math.ceil(math.log(latency_ms) / math.log(LATENCY_BASE))


def dimension_values(record: Mapping[str, Any]) -> dict[str, str]:
    """The record's value per dimension, as text without separators (``-`` when absent)."""
    tags = record.get("tags") or ()
    values = {
        name: _clean(record.get(name)) for name in DIMENSIONS if name not in ("tag", "status")
    }
    values["status"] = _clean(record.get("status"))
    values["tag"] = ",".join(sorted({_clean(t) for t in tags if t})) or NONE
    return values


def metrics(record: Mapping[str, Any]) -> dict[str, int]:
    status = record.get("status")
    values = {
        "n": 1,
        "e": int(isinstance(status, int) and status >= 400),
        "f": int(bool(record.get("fallback"))),
        "p": _int(record.get("prompt_tokens")),
        "c": _int(record.get("completion_tokens")),
        "u": round(float(record.get("cost_usd") or 0.0) * 1_000_000),
    }
    latency = record.get("latency_ms")
    if isinstance(latency, int | float):
        values[f"l{latency_bucket(float(latency))}"] = 1
    return values


def fold(records: Iterable[Mapping[str, Any]], into: dict[tuple[str, str], int]) -> None:
    """Add each record's metrics to ``into`` under (rollup key, field), hourly and daily."""
    for record in records:
        moment = datetime.fromtimestamp(float(record.get("ts") or 0.0), UTC)
        hour, day = moment.strftime("%Y%m%d%H"), moment.strftime("%Y%m%d")
        dims = dimension_values(record)
        values = metrics(record)
        for level, names in LEVELS.items():
            prefix = SEP.join(dims[name] for name in names)
            for key in (hour_key(level, hour), day_key(level, day)):
                for metric, value in values.items():
                    if value:
                        slot = (key, f"{prefix}{SEP}{metric}")
                        into[slot] = into.get(slot, 0) + value


def increments(folded: Mapping[tuple[str, str], int]) -> tuple[Increment, ...]:
    return tuple(
        Increment(key, field, value, HOUR_TTL_S if ":h:" in key else DAY_TTL_S)
        for (key, field), value in folded.items()
    )


class Roller:
    """Folds new usage records into the rollups; ``run_once`` from any number of processes."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    async def run_once(self) -> int:
        """Fold the records added since the cursor, if this process wins the claim on it;
        the number of records folded (0 when another process holds the claim)."""
        raw = await self._store.get_document(CURSOR_KEY, "cursor")
        cursor = raw.decode() if raw else ""
        newest = await self._store.records_page(None, 1)
        if not newest or (cursor and not _after(newest[0][0], cursor)):
            return 0
        if not await self._store.set_once(f"gw:roll:claim:{cursor or 'start'}", CLAIM_TTL_S):
            return 0
        top = newest[0][0]
        folded: dict[tuple[str, str], int] = {}
        count = 0
        before: str | None = None
        size = PAGE // 10  # a small first page: most runs find only a few new records
        while True:
            page = await self._store.records_page(before, size)
            stop = len(page) < size
            fresh = []
            for entry, raw in page:
                if _after(entry, top):
                    continue  # added during this run: the next run folds it
                if cursor and not _after(entry, cursor):
                    stop = True
                    break
                record = _load(raw)
                if record is not None:
                    fresh.append(record)
            fold(fresh, folded)
            count += len(fresh)
            if stop:
                break
            before, size = page[-1][0], PAGE
        if folded:
            await self._store.settle([SettleBatch(increments(folded))])
        await self._store.put_document(CURSOR_KEY, "cursor", top.encode(), DAY_TTL_S)
        return count

    async def run_safely(self) -> int:
        try:
            return await self.run_once()
        except StoreError as exc:
            logger.warning("rollup: store unavailable (%s); will retry", type(exc).__name__)
            return 0


def _after(entry: str, cursor: str) -> bool:
    return _id(entry) > _id(cursor)


def _id(entry: str) -> tuple[int, ...]:
    return tuple(int(part) for part in entry.split("-"))


def _load(raw: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _clean(value: object) -> str:
    if value is None or value == "":
        return NONE
    return str(value).translate(_CONTROL)


_CONTROL = {ord(c): " " for c in "\t\n\x1f"}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
