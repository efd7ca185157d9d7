"""The stored form of a usage record: compact JSON in Redis, the typed record for every reader.

A record is kept once per request in the usage stream (and, on a cluster, once more in the
per-user day index), so its size is Redis's memory: ``encode`` writes short keys, leaves out
what is at its default (zero, false, null, empty, status 200, one attempt) and what follows
from the rest (``time`` from ``ts``, ``total_tokens``, ``list_cost_usd``, and ``charged_usd``
unless it differs from the cost), and money as integer micro-USD. ``decode`` gives back the
``UsageRecord`` (history, rollups, analytics, exports, the ledger's shipper, ``/v1/usage``); a
record written in the full form before this encoding is read with ``UsageRecord.from_dict``.
Values are never abbreviated, so a reader may still look for an exact JSON value
(``"alice"``) in the stored bytes before decoding.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.metering.pricing import MICROS_PER_USD, micros_to_usd
from gateway.metering.record import (
    UsageRecord,
    count,
    number,
    tag_list,
    text,
    text_or_none,
)

TS, COST, CHARGED, STATUS, LATENCY, ATTEMPTS, TAGS = "t", "$", "ch", "s", "l", "a", "tg"


def encode(record: UsageRecord) -> bytes:
    """The compact form of a record. Written out field by field: it runs once per request."""
    out: dict[str, Any] = {
        TS: round(record.ts * 1000),
        "i": record.record_id,
        "q": record.request_id,
        "u": record.user,
        "k": record.key_id,
        "T": record.tier,
        "c": record.capability,
    }
    if record.model is not None:
        out["m"] = record.model
    if record.provider is not None:
        out["p"] = record.provider
    if record.upstream_model is not None:
        out["um"] = record.upstream_model
    if record.prompt_tokens:
        out["pt"] = record.prompt_tokens
    if record.completion_tokens:
        out["ct"] = record.completion_tokens
    if record.images:
        out["im"] = record.images
    if record.audio_ms:
        out["am"] = record.audio_ms
    if record.video_ms:
        out["vm"] = record.video_ms
    cost = round(record.cost_usd * MICROS_PER_USD)
    if cost:
        out[COST] = cost
    charged = round(record.charged_usd * MICROS_PER_USD)
    if charged != cost:
        out[CHARGED] = charged
    if record.fallback:
        out["fb"] = 1
    if record.byok:
        out["b"] = 1
    if record.estimated:
        out["e"] = 1
    if record.usage_flagged:
        out["uf"] = 1
    if record.downgraded:
        out["dg"] = 1
    if record.status != 200:
        out[STATUS] = record.status
    if record.latency_ms:
        out[LATENCY] = record.latency_ms
    if record.attempts != 1:
        out[ATTEMPTS] = record.attempts
    if record.deployment is not None:
        out["d"] = record.deployment
    if record.cache is not None:
        out["ca"] = record.cache
    if record.rollout is not None:
        out["ro"] = record.rollout
    if record.tags:
        out[TAGS] = record.tags
    if record.batch_id is not None:
        out["bi"] = record.batch_id
    if record.org is not None:
        out["o"] = record.org
    if record.team is not None:
        out["tm"] = record.team
    return orjson.dumps(out)


def decode(raw: bytes) -> UsageRecord | None:
    """The record stored as ``raw`` (either form); None when it is no JSON object."""
    try:
        stored = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(stored, dict):
        return None
    if TS not in stored:  # the full form, written before this encoding
        return UsageRecord.from_dict(stored)
    return expand(stored)


def expand(stored: dict[str, Any]) -> UsageRecord:
    """The record of a decoded compact one (a value of the wrong type reads as the default)."""
    get = stored.get
    cost = count(get(COST))
    return UsageRecord(
        ts=count(get(TS)) / 1000,
        record_id=text_or_none(get("i")),
        request_id=text(get("q")),
        user=text(get("u")),
        key_id=text(get("k")),
        tier=text(get("T")),
        capability=text(get("c")),
        model=text_or_none(get("m")),
        provider=text_or_none(get("p")),
        upstream_model=text_or_none(get("um")),
        prompt_tokens=count(get("pt")),
        completion_tokens=count(get("ct")),
        images=count(get("im")),
        audio_ms=count(get("am")),
        video_ms=count(get("vm")),
        cost_usd=micros_to_usd(cost),
        fallback=bool(get("fb")),
        byok=bool(get("b")),
        charged_usd=micros_to_usd(count(get(CHARGED, cost))),
        status=count(get(STATUS, 200)),
        latency_ms=number(get(LATENCY)),
        attempts=count(get(ATTEMPTS, 1)),
        estimated=bool(get("e")),
        usage_flagged=bool(get("uf")),
        downgraded=bool(get("dg")),
        deployment=text_or_none(get("d")),
        cache=text_or_none(get("ca")),
        tags=tag_list(get(TAGS)),
        rollout=text_or_none(get("ro")),
        batch_id=text_or_none(get("bi")),
        org=text_or_none(get("o")),
        team=text_or_none(get("tm")),
    )
