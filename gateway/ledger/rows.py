"""A usage record (as the settle wrote it to the stream) → one ``usage_records`` row (pure).

Rows are keyed by the record's own ``record_id`` (the gateway's, never the client's
``X-Request-Id``, which is kept in ``request_id``). A record written before records had ids
gets ``legacy_id``: ``<request_id>@<ts in ms>``, the id migration 0004 gave the rows already
stored, so a record shipped again after the upgrade meets its first copy. Values are made safe
for their columns: text capped, integers clamped to bigint, a record whose ``request_id`` is
missing keyed by its stream entry id, so no record can stall a batch. The ``record`` column
holds the full record (``record_codec.decode``), whatever form the stream held.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gateway.metering.record_codec import decode

BIGINT = 2**63 - 1
INT = 2**31 - 1
TEXT_MAX = 512
TAG_SEPARATOR = "\x1f"
TEXT_COLUMNS = ("user_id", "key_id", "tier", "capability", "model", "provider", "upstream_model")


@dataclass(frozen=True)
class Row:
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
        record = _without_nul(record)
    return to_row(entry_id, record)


def to_row(entry_id: str, record: dict[str, Any]) -> Row:
    stamp = _number(record.get("ts"))
    if stamp is None or not 0 <= stamp < 253_402_300_799:  # year 9999
        stamp = int(entry_id.split("-", 1)[0]) / 1000
    ts = dt.datetime.fromtimestamp(stamp, dt.UTC)
    request_id = _text(record.get("request_id")) or f"stream:{entry_id}"
    record_id = _text(record.get("record_id")) or legacy_id(request_id, stamp)
    tokens = _count(record, "prompt_tokens"), _count(record, "completion_tokens")
    return Row(
        day=ts.date(),
        ts=ts,
        request_id=request_id,
        record_id=record_id,
        user_id=_text(record.get("user")),
        key_id=_text(record.get("key_id")),
        tier=_text(record.get("tier")),
        capability=_text(record.get("capability")),
        model=_text(record.get("model")),
        provider=_text(record.get("provider")),
        upstream_model=_text(record.get("upstream_model")),
        status=min(_count(record, "status"), INT),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        total_tokens=_count(record, "total_tokens") or min(sum(tokens), BIGINT),
        images=_count(record, "images"),
        audio_ms=_count(record, "audio_ms"),
        video_ms=_count(record, "video_ms"),
        cost_usd=_money(record.get("cost_usd")),
        latency_ms=_number(record.get("latency_ms")) or 0.0,
        attempts=min(_count(record, "attempts"), INT),
        fallback=record.get("fallback") is True,
        byok=record.get("byok") is True,
        estimated=record.get("estimated") is True,
        tags=_tags(record.get("tags")),
        record=orjson.dumps(record).decode(),
    )


def legacy_id(request_id: str, stamp: float) -> str:
    """The id of a record written before records had one (as migration 0004 computes it)."""
    return f"{request_id}@{round(stamp * 1000)}"


def columns(rows: list[Row]) -> list[list[Any]]:
    """The rows as one list per column (the arrays the insert unnests)."""
    names = Row.__dataclass_fields__
    return [[getattr(row, name) for row in rows] for name in names]


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


def _count(record: dict[str, Any], name: str) -> int:
    number = _number(record.get(name))
    if number is None:
        return 0
    return int(min(max(number, 0.0), float(BIGINT)))


def _money(value: Any) -> Decimal:
    number = _number(value)
    if number is None:
        return Decimal(0)
    try:
        amount = Decimal(repr(number)).quantize(Decimal("0.000000001"))
    except InvalidOperation:
        return Decimal(0)
    return amount if abs(amount) < Decimal(10) ** 11 else Decimal(0)


def _tags(value: Any) -> str:
    if not isinstance(value, list):
        return ""
    tags = {_text(tag).replace(TAG_SEPARATOR, "") for tag in value if isinstance(tag, str)}
    return TAG_SEPARATOR.join(sorted(tag for tag in tags if tag))
