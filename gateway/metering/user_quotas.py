"""A user's quota view and run-time overrides, each one store call off the request path.

Each call turns a store error into ``StoreUnavailable`` (and a call the store refuses for its
arguments into ``InvalidRequest``), and tells the meter's ``StoreHealth`` how the store did.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from gateway.config.model import CAPABILITIES, Budget, Config, Quota, Tier, UserOverride
from gateway.errors import InvalidRequest, StoreUnavailable
from gateway.metering.health import StoreHealth
from gateway.metering.limits import (
    budget_override_fields,
    override_from_hash,
    quota_override_fields,
)
from gateway.metering.quota_view import build_view, view_keys
from gateway.metering.windows import windows_at
from gateway.store import keys
from gateway.store.port import Store, StoreError, StoreRejected

logger = logging.getLogger("gateway.metering")

T = TypeVar("T")


class UserQuotas:
    """The quota view of a user and the overrides stored for them, over the meter's store."""

    def __init__(
        self, config: Config, store: Store, health: StoreHealth, clock: Callable[[], float]
    ) -> None:
        self.config = config  # the meter's, replaced on reload
        self.tier_quotas: Mapping[tuple[str, str], Quota] = {}  # the meter's run-time ones
        self._store = store
        self._health = health
        self._clock = clock

    async def quota_view(self, user: str, tier: Tier) -> dict[str, Any]:
        """What ``user`` has used and has left of each limit, in the current windows."""
        quotas = {cap: q for (name, cap), q in self.tier_quotas.items() if name == tier.name}
        tier = replace(tier, quotas={**tier.quotas, **quotas}) if quotas else tier
        windows = windows_at(self._clock())
        names = view_keys(user, tier, windows, self.config.settings.tier_budget_shards)
        lease = keys.lease(keys.user_day(user, windows.day))
        hashes, reserved = await self._call(lambda: self._store.read_view(names, lease))
        return build_view(self.config, user, tier, hashes, windows, reserved)

    async def set_override(self, user: str, capability: str, quota: Quota | None) -> None:
        """Store a run-time quota override (fields left None inherit); None removes it."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")
        values, drop = quota_override_fields(capability, quota)
        await self._call(lambda: self._store.write_hash(keys.user_overrides(user), values, drop))

    async def set_budget(self, user: str, budget: Budget | None) -> None:
        """Store a run-time budget override (fields left None inherit); None removes it."""
        values, drop = budget_override_fields(budget)
        await self._call(lambda: self._store.write_hash(keys.user_overrides(user), values, drop))

    async def override(self, user: str) -> UserOverride:
        """The run-time overrides stored for ``user``."""
        stored = await self._call(lambda: self._store.read_hashes([keys.user_overrides(user)]))
        return override_from_hash(stored[0])

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except StoreRejected as exc:
            logger.warning("metering: the store refused a call: %s", exc)
            raise InvalidRequest("The store refused this operation.") from None
        except StoreError as exc:
            self._health.failed(exc)
            raise StoreUnavailable("The usage store is unavailable; try again shortly") from exc
        self._health.recovered()
        return result
