"""A usage record (as the settle wrote it to the stream) → one ``usage_records`` row (pure).

Rows are keyed by the record's own ``record_id`` (the gateway's, never the client's
``X-Request-Id``, which is kept in ``request_id``). A record written before records had ids
gets ``legacy_id``: ``<request_id>@<ts in ms>``, the id migration 0004 gave the rows already
stored, so a record shipped again after the upgrade meets its first copy. Values are made safe
for their columns: text capped, integers clamped to bigint, a record whose ``request_id`` is
missing keyed by its stream entry id, so no record can stall a batch. The ``record`` column
holds the record's wire form (``UsageRecord.as_dict``), whatever form the stream held.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import decode

BIGINT = 2**63 - 1
INT = 2**31 - 1
TEXT_MAX = 512
TAG_SEPARATOR = "\x1f"
TEXT_COLUMNS = (
    "user_id", "key_id", "tier", "capability", "model", "provider", "upstream_model", "org", "team",
)  # fmt: skip


class Row(NamedTuple):
    """One ``usage_records`` row (a tuple: made at C speed, and a batch's columns are its
    rows transposed)."""

    day: dt.date
    ts: dt.datetime
    request_id: str
    record_id: str
    user_id: str
    key_id: str
    tier: str
    capability: str
    model: str
    provider: str
    upstream_model: str
    org: str  # "" for a key in no team
    team: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    images: int
    audio_ms: int
    video_ms: int
    cost_usd: Decimal
    latency_ms: float
    attempts: int
    fallback: bool
    byok: bool
    estimated: bool
    tags: str  # joined by TAG_SEPARATOR (split back in SQL)
    record: str  # the record's JSON, as written


def parse(entry_id: str, raw: bytes) -> Row | None:
    """The row of one stream entry; None when the entry is not a JSON object."""
    record = decode(raw)
    if record is None:
        return None
    if b"\\u0000" in raw:  # jsonb refuses NUL in strings: strip it
        record = UsageRecord.from_dict(_without_nul(record.as_dict()))
    return to_row(entry_id, record)


def to_row(entry_id: str, record: UsageRecord) -> Row:
    stamp = record.ts
    if not 0 < stamp < 253_402_300_799:  # missing (0), or past the year 9999
        stamp = int(entry_id.split("-", 1)[0]) / 1000
    ts = dt.datetime.fromtimestamp(stamp, dt.UTC)
    request_id = _text(record.request_id) or f"stream:{entry_id}"
    record_id = _text(record.record_id) or legacy_id(request_id, stamp)
    tokens = _count(record.prompt_tokens), _count(record.completion_tokens)
    return Row(
        day=ts.date(),
        ts=ts,
        request_id=request_id,
        record_id=record_id,
        user_id=_text(record.user),
        key_id=_text(record.key_id),
        tier=_text(record.tier),
        capability=_text(record.capability),
        model=_text(record.model),
        provider=_text(record.provider),
        upstream_model=_text(record.upstream_model),
        org=_text(record.org),
        team=_text(record.team),
        status=min(_count(record.status), INT),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        total_tokens=min(sum(tokens), BIGINT),
        images=_count(record.images),
        audio_ms=_count(record.audio_ms),
        video_ms=_count(record.video_ms),
        cost_usd=_money(record.cost_usd),
        latency_ms=record.latency_ms,
        attempts=min(_count(record.attempts), INT),
        fallback=record.fallback,
        byok=record.byok,
        estimated=record.estimated,
        tags=_tags(record.tags),
        record=orjson.dumps(record.as_dict()).decode(),
    )


def legacy_id(request_id: str, stamp: float) -> str:
    """The id of a record written before records had one (as migration 0004 computes it)."""
    return f"{request_id}@{round(stamp * 1000)}"


def columns(rows: list[Row]) -> list[list[Any]]:
    """The rows as one list per column (the arrays the insert unnests)."""
    if not rows:
        return [[] for _ in Row._fields]
    return [list(column) for column in zip(*rows, strict=True)]


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "")[:TEXT_MAX]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: int) -> int:
    return value if 0 <= value <= BIGINT else (0 if value < 0 else BIGINT)


def _money(value: Any) -> Decimal:
    number = _number(value)
    if number is None:
        return Decimal(0)
    try:
        amount = Decimal(repr(number)).quantize(Decimal("0.000000001"))
    except InvalidOperation:
        return Decimal(0)
    return amount if abs(amount) < Decimal(10) ** 11 else Decimal(0)


def _tags(value: tuple[str, ...]) -> str:
    tags = {_text(tag).replace(TAG_SEPARATOR, "") for tag in value}
    return TAG_SEPARATOR.join(sorted(tag for tag in tags if tag))
