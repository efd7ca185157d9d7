"""The ledger in a running gateway: /v1/usage reads it (source "postgres", any range), /readyz
shows the lag, /metrics the lag gauge and rows shipped; without DATABASE_URL, source "redis"."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import StartGateway
from tests.redis_fixture import RedisServer

ADMIN = "admin-token-0123456789"


def chat(url: str, key: str) -> None:
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "text", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    )
    assert answer.status_code == 200, answer.text


def test_usage_readyz_and_metrics_with_the_ledger(
    start_gateway: StartGateway,
    redis: RedisServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    running = start_gateway(runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))
    for _ in range(5):
        chat(running.url, running.key())
    deadline = time.monotonic() + 30
    data: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{running.url}/v1/usage",
            params={"from": "2000-01-01"},
            headers={"authorization": f"Bearer {running.key()}"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["source"] == "postgres"
        data = body["data"]
        if len(data) == 5:
            break
        time.sleep(0.1)
    assert len(data) == 5
    ready = httpx.get(f"{running.url}/readyz").json()
    assert ready["ledger"]["shipping"] is True
    assert ready["ledger"]["postgres"] == "ok"
    metrics = httpx.get(f"{running.url}/metrics").text
    assert "gateway_ledger_lag_records" in metrics
    shipped = [
        line
        for line in metrics.splitlines()
        if line.startswith("gateway_ledger_rows_shipped_total")
    ]
    assert shipped and float(shipped[0].split()[-1]) == 5
    totals = httpx.get(
        f"{running.url}/v1/admin/analytics",
        params={"group_by": "model", "bucket": "all"},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert totals.status_code == 200, totals.text
    assert totals.json()["source"] == "postgres"
    assert [row["requests"] for row in totals.json()["data"]] == [5]


def test_without_a_database_usage_says_it_reads_the_stream(
    start_gateway: StartGateway, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    running = start_gateway(runtime=Runtime(redis_url=redis.url))
    chat(running.url, running.key())
    answer = httpx.get(
        f"{running.url}/v1/usage", headers={"authorization": f"Bearer {running.key()}"}
    )
    assert answer.json()["source"] == "redis"
    assert "ledger" not in httpx.get(f"{running.url}/readyz").json()
