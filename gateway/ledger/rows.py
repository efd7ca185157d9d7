"""A usage record (as the settle wrote it to the stream) → one ``usage_records`` row (pure).

Rows are keyed by the record's own ``record_id`` (the gateway's, never the client's
``X-Request-Id``, which is kept in ``request_id``). A record written before records had ids
gets ``legacy_id``: ``<request_id>@<ts in ms>``, the id migration 0004 gave the rows already
stored, so a record shipped again after the upgrade meets its first copy. Values are made safe
for their columns: text capped, integers clamped to bigint, a record whose ``request_id`` is
missing keyed by its stream entry id, so no record can stall a batch. The ``record`` column
holds the record's wire form (``UsageRecord.as_dict``), whatever form the stream held.

A record in the settle's compact form whose values all have their expected types (every record
the gateway writes) is made into its row straight from the decoded JSON, without the typed
record in between (``_compact_row``: a third of the Python a row took that way); anything else
takes the general path, ``to_row`` of the decoded record. Both give the same row
(``tests/ledger/test_rows.py`` checks them against each other).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

from gateway.metering.pricing import MICROS_PER_USD
from gateway.metering.record import UsageRecord, number, tag_list
from gateway.metering.record_codec import TS, decode, expand, load
from gateway.metering.windows import iso_utc

BIGINT = 2**63 - 1
INT = 2**31 - 1
TEXT_MAX = 512
TAG_SEPARATOR = "\x1f"
NANO_USD = Decimal("0.000000001")
ZERO = Decimal(0).quantize(NANO_USD)  # what ``_money(0.0)`` gives
TEXT_COLUMNS = (
    "user_id", "key_id", "tier", "capability", "model", "provider", "upstream_model", "org", "team",
)  # fmt: skip


class Row(NamedTuple):
    """One ``usage_records`` row (a tuple: made at C speed, and copied to Postgres as it is)."""

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
    if b"\\u0000" in raw:  # jsonb refuses NUL in strings: strip it
        record = decode(raw)
        if record is None:
            return None
        return to_row(entry_id, UsageRecord.from_dict(_without_nul(record.as_dict())))
    stored = load(raw)
    if stored is None:
        return None
    if TS not in stored:  # the full form, written before the compact encoding
        return to_row(entry_id, UsageRecord.from_dict(stored))
    return _compact_row(entry_id, stored) or to_row(entry_id, expand(stored))


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
        record=record_json(record.as_dict()),
    )


LAST_STAMP = 253_402_300_799  # past the year 9999: the entry's time instead
MONEY_MICROS = 10**15  # below it a micro-USD amount's float repr is its exact decimal (as
# ``_money`` reads it)
OPTIONAL_TEXTS = ("m", "p", "um", "o", "tm", "d", "ca", "ro", "bi")
COUNTS = ("pt", "ct", "im", "am", "vm")


def _compact_row(entry_id: str, stored: dict[str, Any]) -> Row | None:
    """``to_row(entry_id, expand(stored))`` for a compact record (free of NUL) whose values
    have their expected types and ranges, made without the typed record; None for any other,
    which the general path makes instead."""
    get = stored.get
    t, record_id, request_id = get(TS), get("i"), get("q")
    if t.__class__ is not int or record_id.__class__ is not str or request_id.__class__ is not str:
        return None
    stamp = t / 1000
    if not (0 < stamp < LAST_STAMP and record_id and request_id):
        return None
    user, key_id, tier, capability = get("u", ""), get("k", ""), get("T", ""), get("c", "")
    if not user.__class__ is key_id.__class__ is tier.__class__ is capability.__class__ is str:
        return None
    for short in OPTIONAL_TEXTS:
        value = get(short)
        if value is not None and value.__class__ is not str:
            return None
    for short in COUNTS:
        value = get(short, 0)
        if value.__class__ is not int or not 0 <= value <= BIGINT:
            return None
    status, attempts, cost = get("s", 200), get("a", 1), get("$", 0)
    charged = get("ch", cost)
    if (
        status.__class__ is not int
        or attempts.__class__ is not int
        or cost.__class__ is not int
        or charged.__class__ is not int
        or not (0 <= status <= INT and 0 <= attempts <= INT)
        or not (-MONEY_MICROS < cost < MONEY_MICROS)
    ):
        return None
    model, provider, upstream, org, team = get("m"), get("p"), get("um"), get("o"), get("tm")
    prompt, completion = get("pt", 0), get("ct", 0)
    images, audio_ms, video_ms = get("im", 0), get("am", 0), get("vm", 0)
    fallback, byok, estimated = bool(get("fb")), bool(get("b")), bool(get("e"))
    latency = number(get("l", 0.0))
    tags = tag_list(get("tg"))
    cost_usd = cost / MICROS_PER_USD
    ts = dt.datetime.fromtimestamp(stamp, dt.UTC)
    wire = {  # UsageRecord.as_dict's, in jsonb's order (see ``record_json``)
        "ts": stamp,
        "org": org,
        "byok": byok,
        "tags": list(tags),
        "team": team,
        "tier": tier,
        "time": iso_utc(stamp, millis=True),
        "user": user,
        "cache": get("ca"),
        "model": model,
        "images": images,
        "key_id": key_id,
        "status": status,
        "rollout": get("ro"),
        "attempts": attempts,
        "audio_ms": audio_ms,
        "batch_id": get("bi"),
        "cost_usd": cost_usd,
        "fallback": fallback,
        "provider": provider,
        "video_ms": video_ms,
        "estimated": estimated,
        "record_id": record_id,
        "capability": capability,
        "deployment": get("d"),
        "downgraded": bool(get("dg")),
        "latency_ms": latency,
        "request_id": request_id,
        "charged_usd": charged / MICROS_PER_USD,
        "total_tokens": prompt + completion,
        "list_cost_usd": cost_usd,
        "prompt_tokens": prompt,
        "usage_flagged": bool(get("uf")),
        "upstream_model": upstream,
        "completion_tokens": completion,
    }
    return Row._make(
        (
            ts.date(),
            ts,
            request_id[:TEXT_MAX],
            record_id[:TEXT_MAX],
            user[:TEXT_MAX],
            key_id[:TEXT_MAX],
            tier[:TEXT_MAX],
            capability[:TEXT_MAX],
            model[:TEXT_MAX] if model else "",
            provider[:TEXT_MAX] if provider else "",
            upstream[:TEXT_MAX] if upstream else "",
            org[:TEXT_MAX] if org else "",
            team[:TEXT_MAX] if team else "",
            status,
            prompt,
            completion,
            min(prompt + completion, BIGINT),
            images,
            audio_ms,
            video_ms,
            Decimal(cost).scaleb(-6).quantize(NANO_USD) if cost else ZERO,
            latency,
            attempts,
            fallback,
            byok,
            estimated,
            _tags(tags) if tags else "",
            orjson.dumps(wire).decode(),
        )
    )


def record_json(wire: dict[str, Any]) -> str:
    """The ``record`` column's JSON: the wire form with its keys in the order jsonb keeps them
    (shorter first, then by their bytes), which Postgres then finds sorted: it parsed a
    record in about half the CPU (~8 us against ~16 us)."""
    return orjson.dumps(dict(sorted(wire.items(), key=_jsonb_order))).decode()


def _jsonb_order(item: tuple[str, Any]) -> tuple[int, bytes]:
    key = item[0].encode()
    return len(key), key


def legacy_id(request_id: str, stamp: float) -> str:
    """The id of a record written before records had one (as migration 0004 computes it)."""
    return f"{request_id}@{round(stamp * 1000)}"


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
        amount = Decimal(repr(number)).quantize(NANO_USD)
    except InvalidOperation:
        return Decimal(0)
    return amount if abs(amount) < Decimal(10) ** 11 else Decimal(0)


def _tags(value: tuple[str, ...]) -> str:
    tags = {_text(tag).replace(TAG_SEPARATOR, "") for tag in value}
    return TAG_SEPARATOR.join(sorted(tag for tag in tags if tag))
