"""Two `gateway serve` processes and a real redis-server: a change made through one applies
on the other within 1 s (keys created, revoked, expired, rotated), the audit log lists every
change, and a key's rpm and budget hold exactly under 50 concurrent requests."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config.model import Price
from gateway.metering.estimate import estimate_prompt_tokens
from gateway.metering.pricing import cost_micros
from tests.control.two_gateways import PRICE, admin, chat, two_gateways, until
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import Gateway

BOUND_S = 1.0  # the propagation bound


@pytest.fixture(scope="module")
def pair(
    mock_upstream_server: MockUpstream,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Gateway]]:
    redis_server.start()
    redis_server.flushall()
    directory: Path = tmp_path_factory.mktemp("two")
    with two_gateways(directory, mock_upstream_server.base_url, redis_server.url) as started:
        yield started


def create(gw: Gateway, **fields: object) -> dict[str, object]:
    answer = admin(gw, "POST", "/v1/admin/keys", json={"user": "two", "tier": "free", **fields})
    assert answer.status_code == 201, answer.text
    document: dict[str, object] = answer.json()
    return document


def test_a_key_made_on_one_works_on_the_other_and_revocation_reaches_both(
    pair: list[Gateway],
) -> None:
    a, b = pair
    made = create(a)
    key = str(made["key"])
    assert until(lambda: chat(b, key) == 200, BOUND_S) is not None
    assert chat(a, key) == 200
    assert admin(b, "DELETE", f"/v1/admin/keys/{made['id']}").status_code == 200
    assert until(lambda: chat(a, key) == 401 and chat(b, key) == 401, BOUND_S) is not None
    actions = [
        (entry["action"], entry["id"])
        for entry in admin(a, "GET", "/v1/admin/audit").json()["data"]
        if entry["id"] == made["id"]
    ]
    assert actions == [("key.revoke", made["id"]), ("key.create", made["id"])]


def test_an_expired_key_is_refused_on_both(pair: list[Gateway]) -> None:
    a, b = pair
    expires = time.time() + 1.5
    key = str(create(a, expires_at=expires)["key"])
    assert until(lambda: chat(b, key) == 200, BOUND_S) is not None
    time.sleep(max(0.0, expires - time.time()))
    assert until(lambda: chat(a, key) == 401 and chat(b, key) == 401, BOUND_S) is not None


def test_a_rotated_keys_old_secret_stops_after_the_grace_period(pair: list[Gateway]) -> None:
    a, b = pair
    made = create(a)
    old = str(made["key"])
    assert until(lambda: chat(b, old) == 200, BOUND_S) is not None
    rotated = admin(a, "POST", f"/v1/admin/keys/{made['id']}/rotate", json={"grace_s": 2})
    ends = time.time() + 2
    new = rotated.json()["key"]
    assert until(lambda: chat(b, new) == 200, BOUND_S) is not None
    assert chat(a, old) == 200 and chat(b, old) == 200  # within the grace period
    time.sleep(max(0.0, ends - time.time()))
    assert until(lambda: chat(a, old) == 401 and chat(b, old) == 401, BOUND_S) is not None
    assert chat(a, new) == 200 and chat(b, new) == 200
    log = admin(b, "GET", "/v1/admin/audit").json()["data"]
    assert [e["action"] for e in log if e["id"] == made["id"]] == ["key.rotate", "key.create"]
    assert old not in str(log) and new not in str(log)


async def burst(urls: list[str], key: str, total: int, model: str) -> list[int]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=total), timeout=60) as http:
        calls = [
            http.post(f"{urls[i % 2]}/v1/chat/completions", headers=headers, json=body)
            for i in range(total)
        ]
        return [answer.status_code for answer in await asyncio.gather(*calls)]


def _away_from_a_minute_boundary() -> None:
    """A burst that straddles two minutes would see two rpm windows."""
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_a_keys_rpm_holds_exactly_under_50_concurrent_requests(pair: list[Gateway]) -> None:
    key = str(create(pair[0], rpm=10)["key"])
    _away_from_a_minute_boundary()
    statuses = asyncio.run(burst([g.url for g in pair], key, 50, "ok"))
    assert statuses.count(200) == 10 and statuses.count(429) == 40, statuses


def test_a_keys_budget_holds_exactly_under_50_concurrent_requests(pair: list[Gateway]) -> None:
    body = {"model": "held", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    each = cost_micros(
        Price(**PRICE), prompt_tokens=estimate_prompt_tokens(body), completion_tokens=1
    )
    budget = 7.5 * each / 1e6  # room for exactly 7 requests' reservations
    made = create(pair[0], budget_usd={"day": budget}, max_parallel=40)
    statuses = asyncio.run(burst([g.url for g in pair], str(made["key"]), 50, "held"))
    assert statuses.count(200) == 7 and statuses.count(429) == 43, statuses
    assert math.isfinite(budget)


def test_max_parallel_holds_exactly_and_frees_its_slots(pair: list[Gateway]) -> None:
    made = create(pair[0], max_parallel=5)
    key = str(made["key"])
    statuses = asyncio.run(burst([g.url for g in pair], key, 50, "held"))
    assert statuses.count(200) == 5 and statuses.count(429) == 45, statuses
    assert chat(pair[1], key) == 200  # the slots were given back at settle
