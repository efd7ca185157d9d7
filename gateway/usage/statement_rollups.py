"""The usage lines of a month's statements from the Redis rollups (no ledger configured).

One user's month reads that user's daily documents (level ``user``); every user's month the
daily documents of level ``full``: one read per day of the month either way, whatever the
number of requests. Rollups live ``DAY_TTL_S`` (400 days).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.store.port import Store
from gateway.usage.roll_groups import BT, DIMENSIONS, NONE, TEAMS, C, N, P, U
from gateway.usage.rollup import (
    LEVELS,
    PER_USER,
    SEP,
    day_key,
    extras,
    load_document,
    read_documents,
)
from gateway.usage.statements import UsageLine, usd_from_micros

# (user, tier, capability, model, org, team) → requests, tokens, charged and list micro-USD,
# BYOK requests and tokens
Key = tuple[str, str, str, str, str, str]
Sums = dict[Key, list[int]]


async def rollup_lines(
    store: Store, start: float, end: float, user: str | None = None
) -> list[UsageLine]:
    """The lines of ``[start, end)`` (whole UTC days) of ``user``, or of every user."""
    days = [
        datetime.fromtimestamp(86_400 * n, UTC).strftime("%Y%m%d")
        for n in range(int(start // 86_400), int(end // 86_400))
    ]
    level = PER_USER if user is not None else "full"
    names = LEVELS[PER_USER] if user is not None else DIMENSIONS
    stored = await read_documents(store, [day_key(level, day, user or "") for day in days])
    sums: Sums = {}
    for raw in stored:
        for combo, entry in load_document(raw).items():
            values = dict(zip(names, combo.split(SEP), strict=False))
            _add(sums, user if user is not None else values.get("user", NONE), values, entry)
    return [_line(key, totals) for key, totals in sorted(sums.items())]


def _add(sums: Sums, user: str, values: Mapping[str, str], entry: list[int]) -> None:
    tier, capability = values.get("tier", NONE), values.get("capability", NONE)
    org, team = (values.get(name, NONE) for name in TEAMS)
    key = (user, tier, capability, values.get("model", NONE), org, team)
    charged, byok_n, byok_tokens = extras(entry)
    status = values.get("status", NONE)
    if len(entry) <= BT and status.isdecimal() and int(status) >= 400:
        charged = 0  # folded before charges were kept: a failed request was never charged
    row = sums.setdefault(key, [0, 0, 0, 0, 0, 0])
    row[0] += entry[N] - byok_n
    row[1] += entry[P] + entry[C] - byok_tokens
    row[2] += charged
    row[3] += entry[U]
    row[4] += byok_n
    row[5] += byok_tokens


def _line(key: Key, totals: list[int]) -> UsageLine:
    user, tier, capability, model, org, team = key
    return UsageLine(
        user=user,
        tier=tier,
        capability=capability,
        model=model,
        requests=totals[0],
        tokens=totals[1],
        charged_usd=usd_from_micros(totals[2]),
        list_cost_usd=usd_from_micros(totals[3]),
        byok_requests=totals[4],
        byok_tokens=totals[5],
        org="" if org == NONE else org,
        team="" if team == NONE else team,
    )
