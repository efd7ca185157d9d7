"""A run-time client key's own limits as extra checks of the request's one reservation.

The counters sit under the user's hash tag, so on a cluster they share the reservation's
script with the user's quotas:

=====================================  ======  ===========================================
key                                    type    fields
=====================================  ======  ===========================================
gw:{u:USER}:k:KEY:min:MINUTE           hash    ``req``, ``tok`` (rpm, tpm; a fixed minute)
gw:{u:USER}:k:KEY:par                  hash    ``n``: requests in flight
gw:{u:USER}:k:KEY:d:YYYYMMDD           hash    ``usd`` (micro-USD)
gw:{u:USER}:k:KEY:m:YYYYMM             hash    ``usd``
=====================================  ======  ===========================================

Each counter is kept only when the key has that limit, so a key without limits costs the
reservation nothing (its spend without a budget is read from the usage rollups). Each is
reconciled at settle like the user's counters: the in-flight count gives its 1 back, the rest
move to the actual usage.
"""

from __future__ import annotations

import math

from gateway.errors import QuotaExceeded
from gateway.metering.pricing import micros_to_usd
from gateway.metering.types import Amounts, Check, KeyLimits
from gateway.metering.windows import Windows, iso_utc
from gateway.store import keys
from gateway.store.port import UNLIMITED, Counter

KEY_RPM, KEY_TPM, KEY_PARALLEL = "key_rpm", "key_tpm", "key_parallel"
KEY_DAY, KEY_MONTH = "key_day", "key_month"
KINDS = (KEY_RPM, KEY_TPM, KEY_PARALLEL, KEY_DAY, KEY_MONTH)
MINUTE_TTL_S = 120
PARALLEL_TTL_S = 86_400  # refreshed by every reservation; the sweeper frees dead workers' slots


def base(user: str, key_id: str) -> str:
    return f"{keys.PREFIX}:{{u:{user}}}:k:{key_id}"


def day_key(user: str, key_id: str, day: str) -> str:
    return f"{base(user, key_id)}:d:{day}"


def month_key(user: str, key_id: str, month: str) -> str:
    return f"{base(user, key_id)}:m:{month}"


def key_checks(limits: KeyLimits, user: str, windows: Windows, amounts: Amounts) -> list[Check]:
    """The key's checks: one per limit it has (rpm, tpm, in flight, day and month budget)."""
    root = base(user, limits.key_id)
    minute = f"{root}:min:{int(windows.now // 60)}"
    checks = []
    if limits.rpm != UNLIMITED:
        counter = Counter(minute, keys.REQUESTS, 1, limits.rpm, ttl_s=MINUTE_TTL_S)
        checks.append(Check(KEY_RPM, counter))
    if limits.tpm != UNLIMITED:
        counter = Counter(minute, keys.TOKENS, amounts.tokens, limits.tpm, ttl_s=MINUTE_TTL_S)
        checks.append(Check(KEY_TPM, counter))
    if limits.max_parallel != UNLIMITED:
        counter = Counter(
            f"{root}:par", "n", 1, limits.max_parallel, ttl_s=PARALLEL_TTL_S, sliding=True
        )
        checks.append(Check(KEY_PARALLEL, counter))
    if limits.usd_day != UNLIMITED:
        day = Counter(
            day_key(user, limits.key_id, windows.day),
            keys.USD,
            amounts.usd_micros,
            limits.usd_day,
            ttl_s=windows.day_ttl(),
        )
        checks.append(Check(KEY_DAY, day))
    if limits.usd_month != UNLIMITED:
        month = Counter(
            month_key(user, limits.key_id, windows.month),
            keys.USD,
            amounts.usd_micros,
            limits.usd_month,
            ttl_s=windows.month_ttl(),
        )
        checks.append(Check(KEY_MONTH, month))
    return checks


# kind → the index in ``Amounts`` a settle counts (-1: nothing, for requests in flight)
SETTLED_INDEX = {KEY_RPM: 0, KEY_TPM: 1, KEY_PARALLEL: -1, KEY_DAY: 3, KEY_MONTH: 3}


def amount_for(kind: str, amounts: Amounts) -> int:
    """What a key check counts of the actual usage (in flight: nothing once finished)."""
    index = SETTLED_INDEX[kind]
    return amounts[index] if index >= 0 else 0


def exceeded(check: Check, limit: int, used: int, windows: Windows, now: float) -> QuotaExceeded:
    """429 naming the key's limit; retry-after until its window resets."""
    if check.kind in (KEY_RPM, KEY_TPM):
        reset = (math.floor(now / 60) + 1) * 60
        what = "requests per minute" if check.kind == KEY_RPM else "tokens per minute"
        message = f"This API key's limit of {limit} {what} is reached"
    elif check.kind == KEY_PARALLEL:
        reset = math.ceil(now) + 1
        message = f"This API key's limit of {limit} requests in flight is reached"
    else:
        period = "Daily" if check.kind == KEY_DAY else "Monthly"
        reset = windows.day_reset if check.kind == KEY_DAY else windows.month_reset
        message = (
            f"{period} budget of ${micros_to_usd(limit):.2f} for this API key exceeded "
            f"(${micros_to_usd(used):.2f} used)"
        )
    retry = max(1, math.ceil(reset - now))
    return QuotaExceeded(
        f"{message}; resets at {iso_utc(reset)}",
        code="key_limit_exceeded",
        headers={"retry-after": str(retry)},
    )
