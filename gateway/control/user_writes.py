"""How often one user may change what they own in the control plane.

A user's own writes (storing or deleting their upstream keys, filing quota requests) each add
an entry to the user audit log and reload every replica's snapshot, so they are limited per
user: ``USER_WRITES_PER_MINUTE`` in each UTC minute, counted in the store (one reservation,
so every replica shares the count). Past it the write is refused with a 429 in OpenAI's error
shape and ``retry-after`` (the seconds to the next minute). A write that changes nothing is
answered before this check and costs nothing.
"""

from __future__ import annotations

import math

from gateway.errors import GatewayError, StoreUnavailable
from gateway.store import keys
from gateway.store.port import Counter, Store, StoreError

USER_WRITES_PER_MINUTE = 20
WINDOW_S = 60
FIELD = "n"


class UserWritesLimited(GatewayError):
    status, type, code, label = 429, "rate_limit_error", "rate_limit_exceeded", "user_writes"


async def admit_user_write(
    store: Store, user: str, now: float, per_minute: int = USER_WRITES_PER_MINUTE
) -> None:
    """Count one write of ``user``; ``UserWritesLimited`` past ``per_minute`` this minute,
    ``StoreUnavailable`` when the store cannot say."""
    minute = int(now // WINDOW_S)
    counter = Counter(
        keys.user_writes(user, minute), FIELD, 1, limit=per_minute, ttl_s=2 * WINDOW_S
    )
    try:
        verdict = await store.reserve([counter], None)
    except StoreError:
        raise StoreUnavailable("The control plane's store is unavailable; try again") from None
    if not verdict.ok:
        wait = max(1, math.ceil((minute + 1) * WINDOW_S - now))
        raise UserWritesLimited(
            f"Too many changes: at most {per_minute} a minute per user. Try again in {wait} s.",
            headers={"retry-after": str(wait)},
        )
