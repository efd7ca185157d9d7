"""Cost alerts: daily and monthly spend thresholds, overall and per tier.

Settles report the new spend totals; a total at or above a threshold fires the alert once
per window across all gateway instances (a ``SET NX`` mark in the store): a structured
warning on ``gateway.metering`` and, when ``webhook_url`` is set, a POST in the background.
The meter tells the alerts each settle's totals (they are its ``SpendObserver``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from gateway.config.model import Alerts
from gateway.metering.limits import usd_micros
from gateway.metering.pricing import micros_to_usd
from gateway.metering.settle import SpendKey
from gateway.metering.windows import Windows, iso_utc, windows_at
from gateway.store import keys
from gateway.store.port import Store, StoreError
from gateway.usage.webhook import WebhookSender

MARK_TTL_S = 40 * 86_400
WEBHOOK_TIMEOUT_S = 10.0


class CostAlerts:
    """The thresholds of ``alerts``, checked against each settle's spend totals."""

    def __init__(
        self,
        alerts: Alerts,
        store: Store,
        clock: Callable[[], float],
        *,
        http: httpx.AsyncClient | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """``http`` posts to the webhook (a client of its own when None)."""
        self._thresholds: dict[tuple[str, str], int] = {}
        for rule in alerts.rules:
            for period, usd in (("day", rule.usd_per_day), ("month", rule.usd_per_month)):
                if usd is not None:
                    self._thresholds[(rule.scope, period)] = usd_micros(usd)
        # a total below every threshold crosses none: the usual total, not looked up
        self._lowest = min(self._thresholds.values(), default=math.inf)
        self.scopes = tuple(dict.fromkeys(rule.scope for rule in alerts.rules))
        self._store = store
        self._clock = clock
        self._logger = logger or logging.getLogger("gateway.metering")
        self._own_http: httpx.AsyncClient | None = None
        self.sender: WebhookSender | None = None
        if alerts.webhook_url:
            if http is None:
                http = self._own_http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
            self.sender = WebhookSender(alerts.webhook_url, http, self._logger)
        self._sending: asyncio.Task[None] | None = None
        self._seen: set[SpendKey] = set()  # crossed in its window, as far as we know

    def active(self) -> dict[str, bool]:
        """Every configured scope → whether one of its thresholds is crossed right now."""
        current = _current(windows_at(self._clock()))
        self._seen = {key for key in self._seen if (key.period, key.window) in current}
        crossed = {key.scope for key in self._seen}
        return {scope: scope in crossed for scope in self.scopes}

    async def observe(self, settled: Sequence[tuple[Sequence[SpendKey], Sequence[int]]]) -> None:
        """Per settle written: its spend counters and their new totals."""
        thresholds, lowest = self._thresholds, self._lowest
        for spend, totals in settled:
            for key, total in zip(spend, totals, strict=True):
                if total < lowest:
                    continue
                threshold = thresholds.get(key[:2])  # (scope, period)
                if threshold is None or total < threshold or key in self._seen:
                    continue
                self._seen.add(key)
                if await self._first(key):
                    self._fire(key, total, threshold)

    async def aclose(self, timeout_s: float) -> None:
        """Deliver the queued alerts (up to ``timeout_s``), then stop the sender."""
        if self.sender is not None:
            await self.sender.drain(timeout_s)
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)
            self._sending = None
        if self._own_http is not None:
            await self._own_http.aclose()

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
            if self._sending is None:
                self._sending = asyncio.get_running_loop().create_task(self.sender.run())


def _current(windows: Windows) -> set[tuple[str, str]]:
    return {("day", windows.day), ("month", windows.month)}
