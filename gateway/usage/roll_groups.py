"""Usage records summed per hour, day and dimension values: the groups a roll adds up.

``rollup.fold`` spreads each group over the levels' documents; here each record is added to
its group once, whether it comes as a ``UsageRecord`` or as the bytes the usage stream holds
(``group_stored``: a compact record is read in place, the roller's every record).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.metering.pricing import MICROS_PER_USD
from gateway.metering.record import UsageRecord
from gateway.metering.record import number as number_value
from gateway.metering.record_codec import (
    BYOK,
    CHARGED,
    COMPLETION,
    COST,
    FALLBACK,
    LATENCY,
    PROMPT,
    SHORT,
    STATUS,
    TAGS,
    TS,
    expand,
)

TEAMS = ("org", "team")
DIMENSIONS = (
    "user", "key_id", "tier", "model", "provider", "capability", "status", "tag", *TEAMS,
)  # fmt: skip
LATENCY_BASE = 1.25
NONE = "-"

# One combination's sums in a rollup document: requests, errors, fallbacks, prompt and
# completion tokens, list cost in micro-USD, the latency histogram (bucket → requests), then
# the charged micro-USD, BYOK requests and BYOK tokens.
N, E, F, P, C, U, HIST, G, BN, BT = range(10)
Entry = list[Any]

# The part of a record the rollups tell apart: its hour and day, and its dimension values.
Group = tuple[str, str, tuple[str, ...]]


def latency_bucket(latency_ms: float) -> int:
    return 0 if latency_ms <= 1 else math.ceil(math.log(latency_ms) / math.log(LATENCY_BASE))


def dimension_tuple(record: UsageRecord) -> tuple[str, ...]:
    """``dimension_values`` in the order of ``DIMENSIONS`` (each record is grouped by them)."""
    return (
        _clean(record.user),
        _clean(record.key_id),
        _clean(record.tier),
        _clean(record.model),
        _clean(record.provider),
        _clean(record.capability),
        _clean(record.status),
        ",".join(sorted({_clean(t) for t in record.tags if t})) or NONE if record.tags else NONE,
        _clean(record.org),
        _clean(record.team),
    )


def add_record(entry: Entry, record: UsageRecord, latency: str | None) -> None:
    _add(
        entry,
        record.status,
        record.fallback,
        record.prompt_tokens,
        record.completion_tokens,
        record.cost_usd,
        latency,
        record.charged_usd,
        record.byok,
    )


def _add(
    entry: Entry,
    status: int,
    fallback: bool,
    prompt: int,
    completion: int,
    cost_usd: float,
    latency: str | None,
    charged_usd: float,
    byok: bool,
) -> None:
    entry[N] += 1
    entry[E] += int(status >= 400)
    entry[F] += int(fallback)
    entry[P] += prompt
    entry[C] += completion
    entry[U] += round(cost_usd * 1_000_000)
    if latency is not None:
        entry[HIST][latency] = entry[HIST].get(latency, 0) + 1
    entry[G] += round(charged_usd * 1_000_000)
    if byok:
        entry[BN] += 1
        entry[BT] += prompt + completion


def _latency_key(stored: object) -> str:
    """The histogram bucket of a stored latency, as its key; worked out once per value (up
    to ``CLEANED_MAX`` of them: latencies are kept to a tenth of a millisecond)."""
    if stored.__class__ is not float:
        return str(latency_bucket(number_value(stored)))
    key = _LATENCY_KEYS.get(stored)
    if key is None:
        key = str(latency_bucket(number_value(stored)))
        if len(_LATENCY_KEYS) >= CLEANED_MAX:
            _LATENCY_KEYS.clear()
        _LATENCY_KEYS[stored] = key
    return key


_LATENCY_KEYS: dict[object, str] = {}


def group_records(records: Iterable[UsageRecord]) -> dict[Group, Entry]:
    """The records summed per group."""
    groups: dict[Group, Entry] = {}
    periods: dict[int, tuple[str, str]] = {}
    for record in records:
        _group_record(groups, periods, record)
    return groups


def group_stored(
    raws: Iterable[bytes], groups: dict[Group, Entry] | None = None
) -> tuple[dict[Group, Entry], int]:
    """The records stored as ``raws`` (``record_codec``) summed per group (added to
    ``groups`` when given: a run sums all its pages before spreading them over the levels),
    and their number (a value that is no record is skipped).

    A compact record is added up from its stored values in place, without building its
    ``UsageRecord``: only the few values the sums need are read, each checked as ``expand``
    reads it, and its dimension values are worked out once per distinct set of stored values
    (``_stored_dimensions``). Anything else is decoded and added as a ``UsageRecord``."""
    if groups is None:
        groups = {}
    periods: dict[int, tuple[str, str]] = {}
    folded = 0
    loads, dimensions_of = orjson.loads, _DIMENSIONS_OF
    for raw in raws:
        try:  # ``load`` and ``_stored_dimensions`` written out: this runs once per record
            stored = loads(raw)
        except orjson.JSONDecodeError:
            continue
        if stored.__class__ is not dict:
            continue
        folded += 1
        if TS not in stored:  # the full form, written before the compact one
            _group_record(groups, periods, UsageRecord.from_dict(stored))
            continue
        get = stored.get
        status = get(STATUS, 200)
        if status.__class__ is not int:
            status = 0
        tags = get(TAGS)
        try:
            dims = dimensions_of.get(
                (*map(get, _TEXT_KEYS), status, tuple(tags) if tags.__class__ is list else ())
            )
            if dims is None:
                dims = _stored_dimensions(stored, status)
        except TypeError:  # an odd value (a list where text belongs, say): as a record
            _group_record(groups, periods, expand(stored))
            continue
        ts, prompt, completion = get(TS, 0), get(PROMPT, 0), get(COMPLETION, 0)
        cost = get(COST, 0)
        if ts.__class__ is not int:
            ts = 0
        if prompt.__class__ is not int:
            prompt = 0
        if completion.__class__ is not int:
            completion = 0
        if cost.__class__ is not int:
            cost = 0
        charged = get(CHARGED, cost)
        if charged.__class__ is not int:
            charged = 0
        number = int(ts / 1000 // 3600)
        period = periods.get(number)
        if period is None:
            period = periods[number] = _period(number)
        group = (*period, dims)
        entry = groups.get(group)
        if entry is None:
            entry = groups[group] = [0, 0, 0, 0, 0, 0, {}, 0, 0, 0]
        # ``_add`` written out (this runs once per record), its sums computed alike
        entry[N] += 1
        if status >= 400:
            entry[E] += 1
        if get(FALLBACK):
            entry[F] += 1
        entry[P] += prompt
        entry[C] += completion
        entry[U] += round(cost / MICROS_PER_USD * MICROS_PER_USD)
        latency = get(LATENCY)
        bucket = _LATENCY_KEYS.get(latency) if latency.__class__ is float else None
        if bucket is None:
            bucket = _latency_key(latency)
        histogram = entry[HIST]
        histogram[bucket] = histogram.get(bucket, 0) + 1
        entry[G] += round(charged / MICROS_PER_USD * MICROS_PER_USD)
        if get(BYOK):
            entry[BN] += 1
            entry[BT] += prompt + completion
    return groups, folded


def _group_record(
    groups: dict[Group, Entry], periods: dict[int, tuple[str, str]], record: UsageRecord
) -> None:
    number = int(record.ts // 3600)
    period = periods.get(number)
    if period is None:
        period = periods[number] = _period(number)
    group = (*period, dimension_tuple(record))
    entry = groups.get(group)
    if entry is None:
        entry = groups[group] = [0, 0, 0, 0, 0, 0, {}, 0, 0, 0]
    add_record(entry, record, str(latency_bucket(record.latency_ms)))


def _period(number: int) -> tuple[str, str]:
    """The hour and day texts of hour ``number`` since the epoch."""
    moment = datetime.fromtimestamp(number * 3600, UTC)
    return moment.strftime("%Y%m%d%H"), moment.strftime("%Y%m%d")


# The compact record's keys of the dimensions read as text, in ``DIMENSIONS`` order (the
# status and the tags are read on their own).
_SHORT_OF = {name: short for short, (name, _) in SHORT.items()}
_TEXT_KEYS = tuple(
    _SHORT_OF[name]
    for name in ("user", "key_id", "tier", "model", "provider", "capability", "org", "team")
)
_DIMENSIONS_OF: dict[tuple[object, ...], tuple[str, ...]] = {}


def _stored_dimensions(stored: dict[str, Any], status: int) -> tuple[str, ...]:
    """``dimension_tuple`` of the record a compact ``stored`` expands to. The stored values
    it follows from decide it (values that compare equal expand alike: text never equals a
    number, and every other value reads as absent), so it is worked out once per distinct
    set of them (up to ``CLEANED_MAX``); TypeError when one cannot be a dict key."""
    get = stored.get
    tags = get(TAGS)
    raw = (*map(get, _TEXT_KEYS), status, tuple(tags) if tags.__class__ is list else ())
    dims = _DIMENSIONS_OF.get(raw)
    if dims is None:
        dims = dimension_tuple(expand(stored))
        if len(_DIMENSIONS_OF) >= CLEANED_MAX:
            _DIMENSIONS_OF.clear()
        _DIMENSIONS_OF[raw] = dims
    return dims


def _clean(value: object) -> str:
    """``value`` as text without separators; the same few values come back on every record,
    so each is worked out once (up to ``CLEANED_MAX`` of them)."""
    cleaned = _CLEANED.get(value)
    if cleaned is None:
        cleaned = NONE if value is None or value == "" else str(value).translate(_CONTROL)
        if len(_CLEANED) >= CLEANED_MAX:
            _CLEANED.clear()
        _CLEANED[value] = cleaned
    return cleaned


_CONTROL = {ord(c): " " for c in "\t\n\x1f"}
CLEANED_MAX = 10_000
_CLEANED: dict[object, str] = {}
