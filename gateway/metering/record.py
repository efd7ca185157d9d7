"""The usage record: what one finished request used and cost, as settlement writes it.

``settle.usage_record`` builds it, ``record_codec`` stores it compactly, and the readers
(history, rollups, analytics, exports, the ledger) pass it on as this type; it becomes a dict
(``as_dict``, the wire form every JSON answer, export and ledger row has always carried) only at
those edges. ``from_dict`` reads the wire form back (a record stored in full before the compact
encoding, the ledger's ``record`` column): a value of the wrong type becomes the field's
default, so an odd stored value never breaks a reader.

Not frozen: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
which made a settle 20% slower (built once per request); nothing mutates a record, and
``dataclasses.replace`` makes a changed copy.

A new field goes last with a default, in ``as_dict`` (after the others, so export columns and
JSON keys keep their places), ``from_dict`` and the codec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.metering.windows import iso_utc

LAST_TS = 253_402_300_800  # 10000-01-01: ``time`` is blank beyond it


@dataclass(slots=True)
class UsageRecord:
    """One request's usage record; money in USD as the wire form has it."""

    ts: float  # epoch seconds, to the millisecond
    record_id: str | None  # the gateway's id (None: written before records had ids)
    request_id: str
    user: str
    key_id: str
    tier: str
    capability: str
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    audio_ms: int = 0
    video_ms: int = 0
    cost_usd: float = 0.0  # at list price (what a BYOK request would have cost)
    fallback: bool = False
    byok: bool = False
    charged_usd: float = 0.0  # what the user was charged
    status: int = 200
    latency_ms: float = 0.0
    attempts: int = 1
    estimated: bool = False
    usage_flagged: bool = False
    downgraded: bool = False
    deployment: str | None = None
    cache: str | None = None
    tags: tuple[str, ...] = ()
    rollout: str | None = None
    batch_id: str | None = None
    org: str | None = None
    team: str | None = None

    @property
    def time(self) -> str:
        return iso_utc(self.ts, millis=True) if 0 <= self.ts < LAST_TS else ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def list_cost_usd(self) -> float:
        return self.cost_usd

    def as_dict(self) -> dict[str, Any]:
        """The wire form: every field, in the order the answers and exports have always had."""
        return {
            "time": self.time,
            "ts": self.ts,
            "record_id": self.record_id,
            "request_id": self.request_id,
            "user": self.user,
            "key_id": self.key_id,
            "tier": self.tier,
            "capability": self.capability,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "images": self.images,
            "audio_ms": self.audio_ms,
            "video_ms": self.video_ms,
            "cost_usd": self.cost_usd,
            "fallback": self.fallback,
            "byok": self.byok,
            "list_cost_usd": self.list_cost_usd,
            "charged_usd": self.charged_usd,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "estimated": self.estimated,
            "usage_flagged": self.usage_flagged,
            "downgraded": self.downgraded,
            "deployment": self.deployment,
            "cache": self.cache,
            "tags": list(self.tags),
            "rollout": self.rollout,
            "batch_id": self.batch_id,
            "org": self.org,
            "team": self.team,
        }

    @classmethod
    def from_dict(cls, wire: Mapping[str, Any]) -> UsageRecord:
        """The record of a wire-form dict; missing or mistyped values take the defaults."""
        get = wire.get
        return cls(
            ts=number(get("ts")),
            record_id=text_or_none(get("record_id")),
            request_id=text(get("request_id")),
            user=text(get("user")),
            key_id=text(get("key_id")),
            tier=text(get("tier")),
            capability=text(get("capability")),
            model=text_or_none(get("model")),
            provider=text_or_none(get("provider")),
            upstream_model=text_or_none(get("upstream_model")),
            prompt_tokens=count(get("prompt_tokens")),
            completion_tokens=count(get("completion_tokens")),
            images=count(get("images")),
            audio_ms=count(get("audio_ms")),
            video_ms=count(get("video_ms")),
            cost_usd=number(get("cost_usd")),
            fallback=bool(get("fallback")),
            byok=bool(get("byok")),
            charged_usd=number(get("charged_usd")),
            status=count(get("status", 200)),
            latency_ms=number(get("latency_ms")),
            attempts=count(get("attempts", 1)),
            estimated=bool(get("estimated")),
            usage_flagged=bool(get("usage_flagged")),
            downgraded=bool(get("downgraded")),
            deployment=text_or_none(get("deployment")),
            cache=text_or_none(get("cache")),
            tags=tag_list(get("tags")),
            rollout=text_or_none(get("rollout")),
            batch_id=text_or_none(get("batch_id")),
            org=text_or_none(get("org")),
            team=text_or_none(get("team")),
        )


def count(value: object) -> int:
    """An integer value as it is; anything else (a bool, text, a float) 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def number(value: object) -> float:
    """A finite number as a float; anything else 0.0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def text(value: object) -> str:
    return value if isinstance(value, str) else ""


def text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def tag_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(tag for tag in value if isinstance(tag, str))
