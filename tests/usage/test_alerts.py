"""Cost alerts fire once per window (across instances) and reach the webhook, with retries."""

from __future__ import annotations

from dataclasses import replace

import httpx
import orjson
import pytest

from gateway.config.model import AlertRule, Alerts, Config, Price
from gateway.metering import Meter
from gateway.store.factory import create_store
from gateway.usage.alerts import CostAlerts
from tests.metering.helpers import Clock, ok, request, run

PRICE = Price(input=1000.0)  # 1000 micro-USD a prompt token: 6 tokens = $0.006


class Hook:
    """The webhook receiver: fails the first ``failures`` POSTs with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(orjson.loads(request.content))
        if len(self.calls) <= self.failures:
            return httpx.Response(500)
        return httpx.Response(204)


def alerting(config: Config) -> Config:
    rules = (AlertRule("overall", usd_per_day=0.01), AlertRule("tier:free", usd_per_month=1.0))
    return replace(config, alerts=Alerts("http://alerts.test/hook", rules))


def test_alert_fires_once_per_window_with_retried_webhook(
    config: Config, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = alerting(config)
    hook = Hook(failures=1)
    clock = Clock()

    async def spend(meter: Meter, user: str = "alice") -> None:
        meter.finish(await meter.admit(request(config, user=user, prompt=6, price=PRICE)), ok(6))
        await meter.settled()

    async def scenario() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(hook))
        stores = [create_store(redis_url, config.settings) for _ in range(2)]
        first, second = (
            Meter(
                config, store, clock=clock, spend=CostAlerts(config.alerts, store, clock, http=http)
            )
            for store in stores
        )
        for meter in (first, second):
            await meter.start()
        assert first.active_alerts == {"overall": False, "tier:free": False}
        await spend(first)
        assert first.active_alerts["overall"] is False
        await spend(first)  # $0.012: crosses $0.01
        await spend(second, "bob")  # another instance, same window: no second alert
        await spend(first)
        assert first.active_alerts == {"overall": True, "tier:free": False}
        assert second.active_alerts["overall"] is True

        clock.advance(86400)  # a new day: not active until crossed again
        assert first.active_alerts["overall"] is False
        await spend(second)
        await spend(second)
        for meter in (first, second):
            await meter.aclose()
        for store in stores:
            await store.aclose()
        await http.aclose()

    run(scenario())
    # day one: 500, then the retry's 204; day two (from the other instance): 204
    windows = sorted(str(call["window"]) for call in hook.calls)
    assert windows == ["20261122", "20261122", "20261123"]
    day_one = next(call for call in hook.calls if call["window"] == "20261122")
    assert (day_one["scope"], day_one["period"]) == ("overall", "day")
    assert day_one["threshold_usd"] == 0.01
    assert day_one["spend_usd"] == pytest.approx(0.012)
    warnings = [r for r in caplog.records if r.getMessage().startswith("cost alert")]
    assert len(warnings) == 2
    assert getattr(warnings[0], "scope", None) == "overall"


def test_alert_without_webhook_only_logs(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    config = replace(config, alerts=Alerts(None, (AlertRule("tier:free", usd_per_day=0.001),)))

    async def scenario() -> None:
        store = create_store(None, config.settings)
        clock = Clock()
        meter = Meter(config, store, clock=clock, spend=CostAlerts(config.alerts, store, clock))
        for _ in range(3):
            meter.finish(await meter.admit(request(config, prompt=6, price=PRICE)), ok(6))
        await meter.settled()
        assert meter.active_alerts == {"tier:free": True}
        await meter.aclose()

    run(scenario())
    assert sum(r.getMessage().startswith("cost alert") for r in caplog.records) == 1
