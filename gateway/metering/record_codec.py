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
from gateway.metering.record import UsageRecord, count, number, tag_list

TS, COST, CHARGED, STATUS, LATENCY, ATTEMPTS, TAGS = "t", "$", "ch", "s", "l", "a", "tg"
PROMPT, COMPLETION, FALLBACK, BYOK = "pt", "ct", "fb", "b"


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
        out[PROMPT] = record.prompt_tokens
    if record.completion_tokens:
        out[COMPLETION] = record.completion_tokens
    if record.images:
        out["im"] = record.images
    if record.audio_ms:
        out["am"] = record.audio_ms
    if record.video_ms:
        out["vm"] = record.video_ms
    cost = round(record.cost_usd * MICROS_PER_USD)
    if cost:
        out[COST] = cost
    if record.charged_usd != record.cost_usd:  # else the same micro-USD
        charged = round(record.charged_usd * MICROS_PER_USD)
        if charged != cost:
            out[CHARGED] = charged
    if record.fallback:
        out[FALLBACK] = 1
    if record.byok:
        out[BYOK] = 1
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
    stored = load(raw)
    if stored is None:
        return None
    if TS not in stored:  # the full form, written before this encoding
        return UsageRecord.from_dict(stored)
    return expand(stored)


def load(raw: bytes) -> dict[str, Any] | None:
    """The JSON object stored as ``raw``, compact (``TS`` in it) or full; None when it is
    none. ``expand`` or ``UsageRecord.from_dict`` reads it; the rollups read a compact one's
    few values they add up in place (``SHORT`` names its keys)."""
    try:
        stored = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return stored if isinstance(stored, dict) else None


# short key → (field, how its value is read); every record is expanded once by the rollups
TEXT, OPTIONAL, COUNT, FLAG, NUMBER = range(5)  # str or "", str or None, int or 0, bool, float
SHORT: dict[str, tuple[str, int]] = {
    "i": ("record_id", OPTIONAL),
    "q": ("request_id", TEXT),
    "u": ("user", TEXT),
    "k": ("key_id", TEXT),
    "T": ("tier", TEXT),
    "c": ("capability", TEXT),
    "m": ("model", OPTIONAL),
    "p": ("provider", OPTIONAL),
    "um": ("upstream_model", OPTIONAL),
    PROMPT: ("prompt_tokens", COUNT),
    COMPLETION: ("completion_tokens", COUNT),
    "im": ("images", COUNT),
    "am": ("audio_ms", COUNT),
    "vm": ("video_ms", COUNT),
    FALLBACK: ("fallback", FLAG),
    BYOK: ("byok", FLAG),
    STATUS: ("status", COUNT),
    LATENCY: ("latency_ms", NUMBER),
    ATTEMPTS: ("attempts", COUNT),
    "e": ("estimated", FLAG),
    "uf": ("usage_flagged", FLAG),
    "dg": ("downgraded", FLAG),
    "d": ("deployment", OPTIONAL),
    "ca": ("cache", OPTIONAL),
    "ro": ("rollout", OPTIONAL),
    "bi": ("batch_id", OPTIONAL),
    "o": ("org", OPTIONAL),
    "tm": ("team", OPTIONAL),
}
# the fields without a default, as a record that leaves them out reads
REQUIRED: dict[str, str | None] = {
    **dict.fromkeys(("request_id", "user", "key_id", "tier", "capability"), ""),
    "record_id": None,
}


def expand(stored: dict[str, Any]) -> UsageRecord:
    """The record of a decoded compact one (a value of the wrong type reads as the default).

    Only the keys present are looked at (most fields are left out at their default), each
    read by its kind in place: this runs once per record for the rollups."""
    values: dict[str, Any] = dict(REQUIRED)
    for short, value in stored.items():
        spec = SHORT.get(short)
        if spec is None:
            continue
        name, kind = spec
        cls = value.__class__
        if kind == TEXT:
            values[name] = value if cls is str else ""
        elif kind == OPTIONAL:
            values[name] = value if cls is str else None
        elif kind == COUNT:
            values[name] = value if cls is int else 0
        elif kind == FLAG:
            values[name] = bool(value)
        else:
            values[name] = number(value)
    cost = count(stored.get(COST))
    return UsageRecord(
        ts=count(stored.get(TS)) / 1000,
        cost_usd=micros_to_usd(cost),
        charged_usd=micros_to_usd(count(stored.get(CHARGED, cost))),
        tags=tag_list(stored[TAGS]) if TAGS in stored else (),
        **values,
    )
