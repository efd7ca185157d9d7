"""Two `gateway serve` processes and one redis-server: a team budget of $1.00 shared by 4 keys
(of 4 users) bursting concurrently through both processes ends within one request's cost of
$1.00, counted by the team's counter and by the usage records alike. (When a request's
reservation is above its cost, as with estimated prompts, requests in flight may refuse others
by up to that excess until they settle: docs/organizations.md.) No level allowance is granted
here: a process asks after 8 exact reservations, which leave less than the 64 requests' worth
a grant needs; test_orgs_allowances_two_processes.py is the same with allowances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.control.two_gateways import ADMIN, admin
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import Gateway, gateways
from tests.support import DEFAULT_ROUTES, routes_doc, tiers_doc

USERS = ("u1", "u2", "u3", "u4")
EACH_KEY = 25  # concurrent requests per key: 100 in all, about twice what $1.00 pays for


def write_config(directory: Path, upstream_url: str) -> Path:
    routes = routes_doc(upstream_url, first_byte_timeout_s=10)
    routes["models"]["pricey"] = {
        "upstream": "mock",
        "model": "mock/slowfirst-0.3",  # held a while, so the burst overlaps
        "modality": "text",
        # priced by its one output token only, so a request's reservation (max_tokens 1) is
        # exactly its cost: the burst's in-flight reservations hold no more than they spend
        "price": {"input": 0.0, "output": 15_000.0},
    }
    tiers = tiers_doc({"free": {"routes": {**DEFAULT_ROUTES, "text": ["ok", "pricey"]}}})
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return directory


@pytest.fixture(scope="module")
def pair(
    mock_upstream_server: MockUpstream,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Gateway]]:
    redis_server.start()
    redis_server.flushall()
    directory = write_config(tmp_path_factory.mktemp("orgs"), mock_upstream_server.base_url)
    env = {"REDIS_URL": redis_server.url, "GATEWAY_ADMIN_TOKEN": ADMIN}
    with gateways(2, directory, env) as started:
        yield started


def ok(answer: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    document: dict[str, Any] = answer.json()
    return document


async def burst(urls: list[str], keys: list[str]) -> list[int]:
    body = {"model": "pricey", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    total = len(keys) * EACH_KEY
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=total), timeout=60) as http:
        calls = [
            http.post(
                f"{urls[n % 2]}/v1/chat/completions",
                headers={"authorization": f"Bearer {keys[n % len(keys)]}"},
                json=body,
            )
            for n in range(total)
        ]
        return [answer.status_code for answer in await asyncio.gather(*calls)]


def settled_usage(gw: Gateway) -> dict[str, Any]:
    """The team's usage once no request is in flight and two reads agree."""
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        usage = ok(admin(gw, "GET", "/v1/admin/teams/spend/usage"), 200)
        if usage["in_flight"] == 0 and usage == last:
            return usage
        last = usage
        time.sleep(0.2)
    raise AssertionError(f"the team's usage did not settle: {last}")


def test_a_team_budget_of_one_dollar_holds_across_two_processes(pair: list[Gateway]) -> None:
    a, b = pair
    ok(admin(a, "POST", "/v1/admin/orgs", json={"id": "corp", "timezone": "Asia/Tokyo"}))
    team = {"id": "spend", "org": "corp", "tier": "free", "members": list(USERS),
            "limits": {"budget_usd": {"day": 1.0}, "max_parallel": 1000}}  # fmt: skip
    ok(admin(a, "POST", "/v1/admin/teams", json=team))
    keys = [
        ok(admin(a, "POST", "/v1/admin/keys", json={"user": u, "tier": "free", "team": "spend"}))
        for u in USERS
    ]
    secrets = [str(k["key"]) for k in keys]
    deadline = time.monotonic() + 5  # the keys made on a reach b
    while admin(b, "GET", "/v1/admin/teams/spend").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    statuses = asyncio.run(burst([a.url, b.url], secrets))
    assert set(statuses) <= {200, 429}, statuses
    served = statuses.count(200)
    usage = settled_usage(a)
    total = usage["day"]["usd"]
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(records) < served and time.monotonic() < deadline:
        page = ok(admin(a, "GET", "/v1/admin/usage/records?limit=1000"), 200)["data"]
        records = [r for r in page if r.get("team") == "spend" and r["status"] == 200]
        time.sleep(0.2)
    assert len(records) == served
    each = max(r["charged_usd"] for r in records)  # one request's cost
    charged = sum(r["charged_usd"] for r in records)
    assert abs(charged - total) < 1e-6, (charged, total)
    assert 1.00 - each < total <= 1.00 + 1e-9, (total, each, served)  # the stated bound
    assert 0 < served < len(statuses) and usage["day"]["requests"] == 0
    assert all(r["org"] == "corp" for r in records)
