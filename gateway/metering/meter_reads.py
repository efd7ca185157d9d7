"""The meter's reads and run-time overrides: quota view, usage records, per-user overrides.

``Meter`` inherits these; each read goes to the store once and turns a store error into
``StoreUnavailable`` (a call the store refuses for its arguments into ``InvalidRequest``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from gateway.config.model import CAPABILITIES, Budget, Config, Quota, Tier, UserOverride
from gateway.errors import InvalidRequest, StoreUnavailable
from gateway.metering import limits
from gateway.metering.health import StoreHealth
from gateway.metering.quota_view import build_view, view_keys
from gateway.metering.record import UsageRecord
from gateway.metering.windows import windows_at
from gateway.store import keys
from gateway.store.port import Store, StoreError, StoreRejected
from gateway.usage.history import read_records, read_user_records

logger = logging.getLogger("gateway.metering")

T = TypeVar("T")


class MeterReads:
    """Reads and overrides over the meter's store (its attributes are set by ``Meter``)."""

    _config: Config
    _tier_quotas: Mapping[tuple[str, str], Quota]
    _store: Store
    _clock: Callable[[], float]
    _health: StoreHealth
    # set by the app when the ledger (gateway/ledger/) holds the records: any date range
    records_reader: Callable[..., Awaitable[Any]] | None

    async def quota_view(self, user: str, tier: Tier) -> dict[str, Any]:
        quotas = {cap: q for (name, cap), q in self._tier_quotas.items() if name == tier.name}
        tier = replace(tier, quotas={**tier.quotas, **quotas}) if quotas else tier
        windows = windows_at(self._clock())
        names = view_keys(user, tier, windows, self._config.settings.tier_budget_shards)
        lease = keys.lease(keys.user_day(user, windows.day))
        hashes, reserved = await self._read(lambda: self._store.read_view(names, lease))
        return build_view(self._config, user, tier, hashes, windows, reserved)

    async def records(
        self, user: str | None, start: float, end: float, skip: int = 0, limit: int | None = None
    ) -> list[UsageRecord]:
        """Usage records of ``user`` (every user when None) with ``start <= ts < end``, oldest
        first; the first ``skip`` left out, at most ``limit`` (a page)."""
        if self.records_reader is not None:
            return list(await self.records_reader(user, start, end, skip=skip, limit=limit))
        if user is None:
            found = await self._read(lambda: read_records(self._store, None, start, end))
        else:
            now = self._clock()
            found = await self._read(lambda: read_user_records(self._store, user, start, end, now))
        return found[skip : None if limit is None else skip + limit]

    @property
    def records_source(self) -> str:
        """Where ``records`` reads: "postgres" (the ledger, any range) or "redis" (the
        stream: recent records only)."""
        return "postgres" if self.records_reader is not None else "redis"

    async def set_user_override(self, user: str, capability: str, quota: Quota | None) -> None:
        """Store a run-time quota override (fields left None inherit); None removes it."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")
        values, drop = limits.quota_override_fields(capability, quota)
        await self._read(lambda: self._store.write_hash(keys.user_overrides(user), values, drop))

    async def set_user_budget(self, user: str, budget: Budget | None) -> None:
        """Store a run-time budget override (fields left None inherit); None removes it."""
        values, drop = limits.budget_override_fields(budget)
        await self._read(lambda: self._store.write_hash(keys.user_overrides(user), values, drop))

    async def user_override(self, user: str) -> UserOverride:
        """The run-time overrides stored for ``user``."""
        stored = await self._read(lambda: self._store.read_hashes([keys.user_overrides(user)]))
        return limits.override_from_hash(stored[0])

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
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
