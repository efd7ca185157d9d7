"""The ledger in a running gateway: /v1/usage reads it (source "postgres", any range), /readyz
shows the lag, /metrics the lag gauge and rows shipped; without DATABASE_URL, source "redis"."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import StartGateway
from tests.redis_fixture import RedisServer, command

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


def test_postgres_unreachable_the_stream_keeps_every_unshipped_record(
    start_gateway: StartGateway, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """usage_stream_maxlen 50 would trim the stream to ~100 of 300 entries; with the ledger on
    the settle's cap is the ledger's, and the shipper trims only what it committed."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    running = start_gateway(
        runtime=Runtime(redis_url=redis.url),
        tiers_extra={"settings": {"usage_stream_maxlen": 50}},
        store=None,  # the app makes its store (with the ledger's cap)
    )
    with httpx.Client() as http:
        for _ in range(300):
            answer = http.post(
                f"{running.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {running.key()}"},
                json={"model": "text", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.status_code == 200  # serving goes on without Postgres
    deadline = time.monotonic() + 30
    ledger: dict[str, object] = {}
    while time.monotonic() < deadline:
        ledger = httpx.get(f"{running.url}/readyz").json()["ledger"]
        if ledger["lag_records"] == 300:
            break
        time.sleep(0.2)
    assert ledger["lag_records"] == 300
    assert ledger["postgres"] == "down"
    assert command(redis.port, "XLEN", "gw:usage") == b":300\r\n"


def test_paging_and_bad_input_with_the_ledger(
    start_gateway: StartGateway,
    redis: RedisServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ledger's own next_cursor pages (it was refused), a cursor of the other shape or a
    NUL in a filter is a 400 (were a 500 and a 503), and /v1/usage pages too."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    running = start_gateway(runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))
    for _ in range(5):
        chat(running.url, running.key())
    user = {"authorization": f"Bearer {running.key()}"}
    admin = {"authorization": f"Bearer {ADMIN}"}
    everything = {"from": "2000-01-01"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        whole = httpx.get(f"{running.url}/v1/usage", params=everything, headers=user).json()
        if len(whole.get("data", ())) == 5:
            break  # (a 503 until the migration has run)
        time.sleep(0.1)
    assert whole["source"] == "postgres" and len(whole["data"]) == 5

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "2", "start": "0", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{running.url}/v1/admin/usage/records", params=params, headers=admin)
        assert page.status_code == 200, page.text
        seen += [r["request_id"] for r in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(r["request_id"] for r in whole["data"])

    ids: list[str] = []
    cursor = None
    for _ in range(3):
        params = {**everything, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{running.url}/v1/usage", params=params, headers=user).json()
        ids += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
    assert cursor is None and ids == [r["request_id"] for r in whole["data"]]

    for path, params in (
        ("/v1/admin/usage/records", {"cursor": "123-456"}),
        ("/v1/admin/usage/records", {"model": "a\x00b"}),
        ("/v1/admin/analytics", {"user": "a\x00b"}),
        ("/v1/usage", {"tag": "a\x00b"}),
        ("/v1/usage", {"user": "a\x00b"}),
    ):
        refused = httpx.get(f"{running.url}{path}", params=params, headers=admin)
        assert refused.status_code == 400, (path, params, refused.text)
        assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
