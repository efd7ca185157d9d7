"""Cost alerts: daily and monthly spend thresholds, overall and per tier.

Settles report the new spend totals; a total at or above a threshold fires the alert once
per window across all gateway instances (a ``SET NX`` mark in the store): a structured
warning on ``gateway.metering`` and, when ``webhook_url`` is set, a POST in the background.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from gateway.config.model import Alerts
from gateway.metering.limits import usd_micros
from gateway.metering.pricing import micros_to_usd
from gateway.metering.settle import SpendKey
from gateway.metering.windows import Windows, iso_utc, windows_at
from gateway.store import keys
from gateway.store.port import Store, StoreError
from gateway.usage.webhook import WebhookSender

MARK_TTL_S = 40 * 86_400


class CostAlerts:
    def __init__(
        self,
        alerts: Alerts,
        store: Store,
        clock: Callable[[], float],
        logger: logging.Logger,
        sender: WebhookSender | None = None,
    ) -> None:
        self._thresholds: dict[tuple[str, str], int] = {}
        for rule in alerts.rules:
            for period, usd in (("day", rule.usd_per_day), ("month", rule.usd_per_month)):
                if usd is not None:
                    self._thresholds[(rule.scope, period)] = usd_micros(usd)
        self.scopes = tuple(dict.fromkeys(rule.scope for rule in alerts.rules))
        self._store = store
        self._clock = clock
        self._logger = logger
        self.sender = sender
        self._seen: set[SpendKey] = set()  # crossed in its window, as far as we know

    def active(self) -> dict[str, bool]:
        """Every configured scope → whether one of its thresholds is crossed right now."""
        current = _current(windows_at(self._clock()))
        self._seen = {key for key in self._seen if (key.period, key.window) in current}
        crossed = {key.scope for key in self._seen}
        return {scope: scope in crossed for scope in self.scopes}

    async def observe(self, spend: Sequence[SpendKey], totals: Sequence[int]) -> None:
        for key, total in zip(spend, totals, strict=True):
            threshold = self._thresholds.get((key.scope, key.period))
            if threshold is None or total < threshold or key in self._seen:
                continue
            self._seen.add(key)
            if await self._first(key):
                self._fire(key, total, threshold)

    async def _first(self, key: SpendKey) -> bool:
        mark = keys.alert_mark(key.scope, key.period, key.window)
        try:
            return await self._store.set_once(mark, MARK_TTL_S)
        except StoreError:
            return True  # better twice than never

    def _fire(self, key: SpendKey, total: int, threshold: int) -> None:
        payload: dict[str, Any] = {
            "event": "cost_alert",
            "scope": key.scope,
            "period": key.period,
            "window": key.window,
            "threshold_usd": micros_to_usd(threshold),
            "spend_usd": micros_to_usd(total),
            "time": iso_utc(self._clock()),
        }
        self._logger.warning(
            "cost alert: %s %s spend $%.2f reached the $%.2f threshold",
            key.scope,
            key.period,
            payload["spend_usd"],
            payload["threshold_usd"],
            extra=payload,
        )
        if self.sender is not None:
            self.sender.send(payload)


def _current(windows: Windows) -> set[tuple[str, str]]:
    return {("day", windows.day), ("month", windows.month)}
