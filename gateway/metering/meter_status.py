"""The meter's health figures: store status, error count, buffered and dropped records, alerts.

``Meter`` inherits these, for readiness and for the metrics.
"""

from __future__ import annotations

from gateway.metering.buffer import Flusher, UsageBuffer
from gateway.metering.health import StoreHealth
from gateway.store.port import Store, StoreError
from gateway.usage.alerts import CostAlerts


class MeterStatus:
    """What the meter reports about its store (its attributes are set by ``Meter``)."""

    _store: Store
    _health: StoreHealth
    _buffer: UsageBuffer
    _flusher: Flusher
    _alerts: CostAlerts

    async def store_status(self) -> str:
        """ "ok" when the store answers a ping, else "unavailable" (for readiness)."""
        try:
            await self._store.ping()
        except StoreError as exc:
            self._health.failed(exc)
            return "unavailable"
        self._health.recovered()
        return "ok"

    @property
    def store_errors_total(self) -> int:
        return self._health.errors_total

    @property
    def degraded(self) -> bool:
        return self._health.degraded

    @property
    def buffered_records(self) -> int:
        return len(self._flusher)

    @property
    def dropped_records(self) -> int:
        return self._buffer.dropped

    @property
    def active_alerts(self) -> dict[str, bool]:
        """Every alert scope ("overall", "tier:<name>") → crossed in the current window."""
        return self._alerts.active()
