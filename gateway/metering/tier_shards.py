"""A tier's shared budget split into shards, so that no single key takes all of a tier's traffic.

With ``settings.tier_budget_shards`` = N > 1 a tier's day and month budget counters become N
counters ``gw:{t:<tier>:<shard>}:d:<day>`` (and ``:m:<month>``), each with its own hash tag
(on a Redis Cluster they spread over the masters) and a slice of the limit: ``limit // N``,
plus one micro-USD for the first ``limit % N`` shards, so the slices add up to the limit.
A user's requests charge their home shard (CRC-32 of the user name, modulo N), so one user's
reservation and settle always meet the same counter.

When the home shard's slice is full the meter tries the other shards in turn (spill-over),
skipping for ``FULL_FOR_S`` any shard that refused in this process. So the tier never spends
more than its limit (every slice holds), and a request is refused by the tier budget only when
every shard had less than its cost left: the tier's total may then be short of the limit by
less than N times that request's cost (plus what a shard skipped as full got back within
``FULL_FOR_S``). N = 1 keeps the single counter ``gw:{t:<tier>}:…`` and exact refusals.
Changing N starts the tier's counters of the current day and month afresh.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

from gateway.store import keys
from gateway.store.port import UNLIMITED

FULL_FOR_S = 1.0  # a shard that refused is not tried by spill-over for this long
MAX_REMEMBERED = 10_000


def home_shard(user: str, shards: int) -> int:
    """The shard a user's requests charge first (stable across processes)."""
    return zlib.crc32(user.encode()) % shards if shards > 1 else 0


def slice_limit(limit: int, shard: int, shards: int) -> int:
    """Shard ``shard``'s part of ``limit``; the parts add up to ``limit`` exactly."""
    if limit == UNLIMITED or shards <= 1:
        return limit
    return limit // shards + (1 if shard < limit % shards else 0)


def day_key(tier: str, day: str, shard: int, shards: int) -> str:
    if shards <= 1:
        return keys.tier_day(tier, day)
    return f"{keys.PREFIX}:{{t:{tier}:{shard}}}:d:{day}"


def month_key(tier: str, month: str, shard: int, shards: int) -> str:
    if shards <= 1:
        return keys.tier_month(tier, month)
    return f"{keys.PREFIX}:{{t:{tier}:{shard}}}:m:{month}"


def all_day_keys(tier: str, day: str, shards: int) -> list[str]:
    return [day_key(tier, day, shard, shards) for shard in range(max(1, shards))]


def all_month_keys(tier: str, month: str, shards: int) -> list[str]:
    return [month_key(tier, month, shard, shards) for shard in range(max(1, shards))]


class FullShards:
    """Per process: the tier shards that refused lately, so that a tier whose budget is
    spent costs one reservation per request, not N."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[tuple[str, int], float] = {}

    def mark(self, tier: str, shard: int) -> None:
        if len(self._until) >= MAX_REMEMBERED:
            self._until.clear()
        self._until[tier, shard] = self._clock() + FULL_FOR_S

    def others(self, tier: str, home: int, shards: int) -> list[int]:
        """The shards to spill over to after ``home``, in order, skipping those marked full."""
        now = self._clock()
        candidates = ((home + step) % shards for step in range(1, shards))
        return [s for s in candidates if self._until.get((tier, s), 0.0) <= now]
