"""Client keys made at run time (kind ``keys``): their documents and the index auth reads.

A document: ``{user, tier, team, name, models, expires_at, budget_usd: {day, month}, rpm, tpm,
max_parallel, metadata, created_at, created_by, secrets: [{sha256, until}]}``. Only digests of
the secrets are stored; after a rotation the old digest carries ``until`` (epoch seconds),
after which it no longer authenticates. Deleting the document revokes the key.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.metering.types import KeyLimits
from gateway.store.port import UNLIMITED

KIND = "keys"
SECRET_PREFIX = "sk-gw-"
MICROS_PER_USD = 1_000_000


@dataclass(frozen=True)
class VirtualKey:
    id: str
    user: str
    tier: str
    models: frozenset[str] | None
    expires_at: float | None
    limits: KeyLimits  # its spend is counted even when it has no limit
    team: str | None = None  # the team it is bound to (control/orgs.py)


@dataclass(frozen=True)
class Entry:
    """One accepted digest of a key: the secret's digest and until when it is good."""

    sha256: str
    key: VirtualKey
    until: float | None


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    return "key_" + secrets.token_hex(8)


def virtual_key(key_id: str, document: Mapping[str, Any]) -> VirtualKey:
    budget = document.get("budget_usd") or {}
    limits = KeyLimits(
        key_id=key_id,
        rpm=_limit(document.get("rpm")),
        tpm=_limit(document.get("tpm")),
        max_parallel=_limit(document.get("max_parallel")),
        usd_day=_micros(budget.get("day")),
        usd_month=_micros(budget.get("month")),
    )
    models = document.get("models")
    expires = document.get("expires_at")
    team = document.get("team")
    return VirtualKey(
        key_id,
        str(document["user"]),
        str(document["tier"]),
        frozenset(models) if isinstance(models, list) else None,
        float(expires) if isinstance(expires, int | float) else None,
        limits,
        team if isinstance(team, str) else None,
    )


def entries(documents: Mapping[str, Mapping[str, Any]]) -> list[Entry]:
    """Every digest that may authenticate, with its key (malformed documents skipped)."""
    found = []
    for key_id, document in documents.items():
        try:
            key = virtual_key(key_id, document)
            for secret in document.get("secrets") or ():
                until = secret.get("until")
                found.append(Entry(str(secret["sha256"]), key, float(until) if until else None))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def redacted(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A document without its digests (for the audit log and answers)."""
    if document is None:
        return None
    shown = {k: v for k, v in document.items() if k != "secrets"}
    shown["secrets"] = len(document.get("secrets") or ())
    return shown


def _limit(value: object) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else UNLIMITED


def _micros(value: object) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * MICROS_PER_USD)
    return UNLIMITED
