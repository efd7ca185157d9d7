"""Monthly statements: a user's month of usage priced by their tier (pure arithmetic).

A statement holds the tier's ``monthly_fee_usd`` (for each month with at least one request),
the charged usage per capability and model, the BYOK requests and tokens (metered, never
charged), the BYOK discount and the total. The discount is ``byok_discount_percent`` % of
(fee + charged usage), for a user who made at least one BYOK request (own key stored or sent)
in the month.

Money rule: every amount stays an exact ``Decimal`` (the usage as metered, in micro-USD) until
the end; the fee, usage, subtotal, discount and total shown are each rounded half-up to the
cent from the exact amounts, so the total is ``round(fee + usage - discount)``, not the sum of
rounded lines (the exact amounts are in ``exact``). The month's tier is the one most of the
user's requests were made in (ties: the higher fee).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gateway.config.model import Tier

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
ROUNDING = (
    "Exact decimal amounts (usage as metered, to the micro-USD) until the end; fee, usage,"
    " subtotal, discount and total each rounded half-up to the cent from the exact amounts."
)


def month_bounds(month: str) -> tuple[float, float]:
    """``[start, end)`` in epoch seconds of a ``YYYY-MM`` month (UTC); ``ValueError`` else."""
    found = MONTH.fullmatch(month)
    if found is None or not 1970 <= int(found[1]) <= 9998:
        raise ValueError(f"invalid month {month!r}: expected YYYY-MM")
    year, number = int(found[1]), int(found[2])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class UsageLine:
    """One user's month for one tier, capability, model, organization and team, as a source
    sums it."""

    user: str
    tier: str
    capability: str
    model: str
    requests: int  # not BYOK
    tokens: int  # not BYOK
    charged_usd: Decimal
    list_cost_usd: Decimal  # BYOK included: what the requests would cost at list price
    byok_requests: int
    byok_tokens: int
    org: str = ""  # the team key's organization and team ("": a key in none)
    team: str = ""


@dataclass(frozen=True)
class StatementLine:
    capability: str
    model: str
    requests: int
    tokens: int
    byok_requests: int
    byok_tokens: int
    charged_usd: Decimal
    list_cost_usd: Decimal
    org: str = ""
    team: str = ""


@dataclass(frozen=True)
class Statement:
    user: str
    month: str
    tier: str
    lines: tuple[StatementLine, ...]
    fee_usd: Decimal
    usage_usd: Decimal  # exact
    discount_percent: Decimal
    discount_usd: Decimal  # exact
    source: str

    @property
    def byok_requests(self) -> int:
        return sum(line.byok_requests for line in self.lines)

    @property
    def byok_tokens(self) -> int:
        return sum(line.byok_tokens for line in self.lines)

    @property
    def subtotal_usd(self) -> Decimal:
        return self.fee_usd + self.usage_usd

    @property
    def total_usd(self) -> Decimal:
        return self.subtotal_usd - self.discount_usd

    def as_json(self) -> dict[str, Any]:
        """Money as decimal strings (never floats): cents, and the exact amounts."""
        return {
            "object": "statement",
            "user": self.user,
            "month": self.month,
            "tier": self.tier,
            "currency": "USD",
            "monthly_fee_usd": str(cents(self.fee_usd)),
            "usage": [
                {
                    "capability": line.capability,
                    "model": line.model,
                    "requests": line.requests,
                    "tokens": line.tokens,
                    "charged_usd": str(line.charged_usd),
                    "list_cost_usd": str(line.list_cost_usd),
                    "byok_requests": line.byok_requests,
                    "byok_tokens": line.byok_tokens,
                    "org": line.org or None,
                    "team": line.team or None,
                }
                for line in self.lines
            ],
            "usage_usd": str(cents(self.usage_usd)),
            "byok": {
                "used": self.byok_requests > 0,
                "requests": self.byok_requests,
                "tokens": self.byok_tokens,
                "charged_usd": "0.00",
            },
            "subtotal_usd": str(cents(self.subtotal_usd)),
            "byok_discount_percent": str(self.discount_percent),
            "byok_discount_usd": str(cents(self.discount_usd)),
            "total_usd": str(cents(self.total_usd)),
            "exact": {
                "usage_usd": str(self.usage_usd),
                "subtotal_usd": str(self.subtotal_usd),
                "byok_discount_usd": str(self.discount_usd),
                "total_usd": str(self.total_usd),
            },
            "rounding": ROUNDING,
            "source": self.source,
        }


def build_statements(
    lines: Iterable[UsageLine], tiers: Mapping[str, Tier], month: str, source: str
) -> list[Statement]:
    """One statement per user with usage in ``lines`` (one month's), sorted by user."""
    per_user: dict[str, list[UsageLine]] = {}
    for line in lines:
        per_user.setdefault(line.user, []).append(line)
    return [statement(user, per_user[user], tiers, month, source) for user in sorted(per_user)]


def statement(
    user: str,
    lines: Iterable[UsageLine],
    tiers: Mapping[str, Tier],
    month: str,
    source: str,
    current_tier: str = "",
) -> Statement:
    """``user``'s statement from their lines of the month (none: an empty statement, in
    ``current_tier`` and without a fee)."""
    merged: dict[tuple[str, str, str, str], StatementLine] = {}
    requests_per_tier: dict[str, int] = {}
    for line in lines:
        count = line.requests + line.byok_requests
        requests_per_tier[line.tier] = requests_per_tier.get(line.tier, 0) + count
        key = (line.capability, line.model, line.org, line.team)
        before = merged.get(key) or StatementLine(
            line.capability, line.model, 0, 0, 0, 0, Decimal(0), Decimal(0), line.org, line.team
        )
        merged[key] = StatementLine(
            line.capability,
            line.model,
            before.requests + line.requests,
            before.tokens + line.tokens,
            before.byok_requests + line.byok_requests,
            before.byok_tokens + line.byok_tokens,
            before.charged_usd + line.charged_usd,
            before.list_cost_usd + line.list_cost_usd,
            line.org,
            line.team,
        )
    tier_name = _month_tier(requests_per_tier, tiers) or current_tier
    tier = tiers.get(tier_name)
    active = bool(requests_per_tier) and sum(requests_per_tier.values()) > 0
    fee = tier.monthly_fee_usd if tier is not None and active else Decimal(0)
    usage = sum((line.charged_usd for line in merged.values()), Decimal(0))
    byok_used = any(line.byok_requests for line in merged.values())
    percent = tier.byok_discount_percent if tier is not None else Decimal(0)
    discount = (fee + usage) * percent / 100 if byok_used else Decimal(0)
    return Statement(
        user=user,
        month=month,
        tier=tier_name,
        lines=tuple(merged[key] for key in sorted(merged)),
        fee_usd=fee,
        usage_usd=usage,
        discount_percent=percent,
        discount_usd=discount,
        source=source,
    )


def _month_tier(requests_per_tier: Mapping[str, int], tiers: Mapping[str, Tier]) -> str:
    if not requests_per_tier:
        return ""

    def weight(name: str) -> tuple[int, Decimal, str]:
        tier = tiers.get(name)
        fee = tier.monthly_fee_usd if tier is not None else Decimal(-1)
        return requests_per_tier[name], fee, name

    return max(requests_per_tier, key=weight)


def usd_from_micros(micros: int) -> Decimal:
    return (Decimal(micros) * MICRO).quantize(MICRO)


def usd_exact(value: object) -> Decimal:
    """A float amount from a record (``charged_usd``) as the decimal it was written from."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return Decimal(0)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
