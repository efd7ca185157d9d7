"""The Users page's list: every user with a client key or with usage today, and their numbers.

A user is anyone a key names (``tiers.yaml``/``GATEWAY_KEYS`` keys and the run-time keys of
the control plane, expired ones left out) or anyone with a request today (UTC): their tiers,
how many keys they hold, and today's requests, tokens and spend from the rollups (one query,
grouped by user and tier). ``?q=`` keeps the users whose name contains it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from gateway.control import keys as runtime_keys
from gateway.http.services import Services
from gateway.usage.analytics import UsageFilter

PAGE = 200  # users shown at most; a filter narrows a longer list
DAY_S = 86_400


@dataclass
class UserRow:
    user: str
    tiers: set[str] = field(default_factory=set)
    keys: int = 0
    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


async def users_context(request: Request, gateway: Services) -> dict[str, Any]:
    """The page's context: ``users`` (most requests today first), ``more`` (left off), ``q``."""
    now = gateway.clock()
    rows: dict[str, UserRow] = {}

    def row(user: str) -> UserRow:
        return rows.setdefault(user, UserRow(user))

    for configured in gateway.config.keys:
        found = row(configured.user)
        found.tiers.add(configured.tier)
        found.keys += 1
    for key_id, document in gateway.control.snapshot.kind(runtime_keys.KIND).items():
        try:
            key = runtime_keys.virtual_key(key_id, document)
        except (KeyError, TypeError, ValueError):
            continue
        if key.expires_at is None or key.expires_at > now:
            found = row(key.user)
            found.tiers.add(key.tier)
            found.keys += 1
    day = now - now % DAY_S
    today = await gateway.analytics.totals(UsageFilter(day, day + DAY_S), ["user", "tier"], "all")
    for usage in today:
        found = row(str(usage["user"]))
        found.tiers.add(str(usage["tier"]))
        found.requests += int(usage["requests"])
        found.tokens += int(usage["total_tokens"])
        found.cost_usd += float(usage["cost_usd"])
    query = (request.query_params.get("q") or "").strip()
    chosen = [r for r in rows.values() if query.lower() in r.user.lower()]
    chosen.sort(key=lambda r: (-r.requests, r.user))
    return {"users": chosen[:PAGE], "more": max(0, len(chosen) - PAGE), "q": query}
