"""Two `gateway serve` processes with level allowances granted (one Redis, and a 3-master
Cluster): a team budget and an organization's request quota, each burst to its end by 16
clients on 4 keys through both processes, hold their limits and the bound allowances.py
states, and the level counters equal the usage records once the allowances are given back.

The bound. An allowance is asked for only while ``SHARE`` x ``SMALLEST`` requests' worth is
left, and holds less than one and a half grants of ``CHUNK`` requests' worth unused, so with
P = 2 processes a client refused while the other process is still busy sees the level short
of its limit by less than 1.5 x (P - 1) x CHUNK = 48 requests' worth, plus what its own
process's allowance, ended because the request did not fit, held below one request (its end is
given back in the next settle batch), plus the request itself: ``BUSY_SHORT`` requests. Once
every allowance is given back (1 s idle, ``IDLE_S``), the rest is reserved per request (less
than 64 requests' worth is left: none is granted) and a burst takes the level to within one
request of its limit. A request's reservation here is exactly its cost and its one request,
so the level never passes its limit.

That allowances are granted is read from the store while the clients run: each grant has a
lease of its own, ``<process>.a<n>``, in the level's lease set (a request's own lease is in
its user's), and both processes' appear. (tests/control/test_orgs_two_processes.py spends a
$1.00 budget in 100 requests of $0.015: 8 exact reservations, the ask's threshold, already
leave less than 64 requests' worth, so no allowance is ever granted there.)
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis import Redis
from redis.cluster import RedisCluster as SyncCluster

from gateway.metering import allowances, level_limits
from gateway.metering.zoned_windows import zoned
from tests.control.two_gateways import ADMIN, admin
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import Gateway, gateways
from tests.scale.redis_ha import RedisCluster
from tests.support import DEFAULT_ROUTES, routes_doc, tiers_doc

COST = 1_000  # micro-USD: one output token at $1,000 per million, max_tokens 1
PROCESSES = 2
# a grant here is at most 1/SHARE of 300 requests' worth, under CHUNK: never grown to MAX_CHUNK
BUSY_SHORT = int(1.5 * (PROCESSES - 1) * allowances.CHUNK) + 2  # requests' worth
WORKERS = 16
ALLOWANCE_LEASE = re.compile(r"^([0-9a-f]{12})\.a\d+$")


def write_config(directory: Path, upstream_url: str) -> Path:
    routes = routes_doc(upstream_url, first_byte_timeout_s=10)
    routes["models"]["metered"] = {
        "upstream": "mock",
        "model": "mock/slowfirst-0.05",  # held a little, so the clients' requests overlap
        "modality": "text",
        # priced by its one output token only: a request's reservation is exactly its cost
        "price": {"input": 0.0, "output": 1_000.0},
    }
    tiers = tiers_doc({"free": {"routes": {**DEFAULT_ROUTES, "text": ["ok", "metered"]}}})
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return directory


def noon_zone() -> str:
    """A fixed-offset zone where it is about noon: no day or month rolls during the test."""
    offset = 12 - time.gmtime().tm_hour  # -11 .. +12 hours
    return f"Etc/GMT{-offset:+d}"  # (POSIX sign: Etc/GMT-3 is three hours ahead of UTC)


@dataclass
class Backend:
    """The Redis the gateways share, read directly by the test."""

    url: str
    client: Redis | SyncCluster


@pytest.fixture(scope="module", params=["redis", "cluster"])
def backend(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Backend]:
    if request.param == "redis":
        redis_server.start()
        redis_server.flushall()
        with Redis(port=redis_server.port) as client:
            yield Backend(redis_server.url, client)
        return
    cluster = RedisCluster().start()
    try:
        with SyncCluster(host="127.0.0.1", port=cluster.nodes[0].port) as client:
            yield Backend(cluster.url, client)
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def pair(
    backend: Backend, mock_upstream_server: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Gateway]]:
    directory = write_config(tmp_path_factory.mktemp("allowances"), mock_upstream_server.base_url)
    env = {"REDIS_URL": backend.url, "GATEWAY_ADMIN_TOKEN": ADMIN}
    with gateways(PROCESSES, directory, env) as started:
        yield started


def ok(answer: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    document: dict[str, Any] = answer.json()
    return document


def make_team(
    gws: list[Gateway], org: dict[str, Any], team: dict[str, Any], users: list[str]
) -> list[str]:
    """The org, its team with ``users`` as members and one key each; once the other process
    has them, the keys' secrets."""
    a, b = gws
    ok(admin(a, "POST", "/v1/admin/orgs", json=org))
    ok(admin(a, "POST", "/v1/admin/teams", json={**team, "tier": "free", "members": users}))
    body = {"tier": "free", "team": team["id"]}
    made = [ok(admin(a, "POST", "/v1/admin/keys", json={**body, "user": u})) for u in users]
    deadline = time.monotonic() + 5
    while any(admin(b, "GET", f"/v1/admin/keys/{k['id']}").status_code != 200 for k in made):
        assert time.monotonic() < deadline, "the keys did not reach the other process"
        time.sleep(0.05)
    return [str(k["key"]) for k in made]


@dataclass
class LeaseWatch:
    """Polls the levels' lease sets while the clients run: the allowance leases seen, and the
    highest value read of the ``limited`` (level, field) day counter."""

    backend: Backend
    levels: list[tuple[str, str]]
    zone: str
    limited: tuple[tuple[str, str], str]
    seen: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def open_leases(self, level: tuple[str, str]) -> set[str]:
        members = self.backend.client.zrange(f"{level_limits.base(*level)}:lease", 0, -1)
        names = {m.decode() for m in members}
        return {name for name in names if ALLOWANCE_LEASE.match(name)}

    def _run(self) -> None:
        while not self._stop.is_set():
            for level in self.levels:
                self.seen.setdefault(level, set()).update(self.open_leases(level))
            self.peak = max(self.peak, counter(self.backend, *self.limited, self.zone))
            self._stop.wait(0.01)

    def __enter__(self) -> LeaseWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def processes(self, level: tuple[str, str]) -> set[str]:
        """The processes (lease prefixes) seen holding an allowance of ``level``."""
        return {m[1] for name in self.seen.get(level, set()) if (m := ALLOWANCE_LEASE.match(name))}


def body() -> dict[str, Any]:
    return {"model": "metered", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


async def clients(urls: list[str], secrets: list[str]) -> list[int]:
    """``WORKERS`` clients, one request at a time each, on 4 keys and both processes in
    turn, each until its first refusal; every status."""
    statuses: list[int] = []

    async def client(number: int, http: httpx.AsyncClient) -> None:
        headers = {"authorization": f"Bearer {secrets[number % len(secrets)]}"}
        sent = 0
        while True:
            url = f"{urls[(number + sent) % len(urls)]}/v1/chat/completions"
            sent += 1
            answer = await http.post(url, headers=headers, json=body())
            statuses.append(answer.status_code)
            if answer.status_code != 200:
                return

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=WORKERS), timeout=60) as http:
        await asyncio.gather(*(client(n, http) for n in range(WORKERS)))
    return statuses


async def burst(urls: list[str], secrets: list[str], total: int) -> list[int]:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=total), timeout=60) as http:
        calls = [
            http.post(
                f"{urls[n % len(urls)]}/v1/chat/completions",
                headers={"authorization": f"Bearer {secrets[n % len(secrets)]}"},
                json=body(),
            )
            for n in range(total)
        ]
        return [answer.status_code for answer in await asyncio.gather(*calls)]


def given_back(watch: LeaseWatch) -> None:
    """Wait until no allowance lease of the levels is left and nothing is in flight."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        held = [watch.open_leases(level) for level in watch.levels]
        flying = [
            watch.backend.client.hget(f"{level_limits.base(*level)}:par", "n")
            for level in watch.levels
        ]
        if not any(held) and all(int(n or 0) == 0 for n in flying):
            return
        time.sleep(0.1)
    raise AssertionError(f"the allowances were not given back: {held}, in flight {flying}")


def counter(backend: Backend, level: tuple[str, str], name: str, zone: str) -> int:
    day = zoned(zone, time.time()).day
    return int(backend.client.hget(level_limits.window_key(*level, day), name) or 0)


def served_records(gw: Gateway, team: str, served: int) -> list[dict[str, Any]]:
    """The team's usage records of served requests, once all ``served`` are written."""
    deadline = time.monotonic() + 20
    while True:
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = f"team={team}&status=ok&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            page = ok(admin(gw, "GET", f"/v1/admin/usage/records?{query}"), 200)
            found += [r for r in page["data"] if r["status"] == 200]
            cursor = page.get("next_cursor") or ""
            if not cursor:
                break
        if len(found) >= served or time.monotonic() > deadline:
            assert len(found) == served, (len(found), served)
            return found
        time.sleep(0.2)


def spend(pair: list[Gateway], secrets: list[str], watch: LeaseWatch) -> list[int]:
    """The clients until each is refused, watched; once the allowances are given back, the
    statuses."""
    urls = [gw.url for gw in pair]
    with watch:
        stream = asyncio.run(clients(urls, secrets))
    assert set(stream) <= {200, 429}, stream
    given_back(watch)
    return stream


def finish(pair: list[Gateway], watch: LeaseWatch, secrets: list[str], room: int) -> list[int]:
    """A burst of more than ``room`` requests (what may be left), reserved per request."""
    statuses = asyncio.run(burst([gw.url for gw in pair], secrets, room + 8))
    assert set(statuses) <= {200, 429} and 429 in statuses, statuses
    given_back(watch)
    return statuses


def test_a_team_budget_holds_with_allowances_in_both_processes(
    pair: list[Gateway], backend: Backend
) -> None:
    """A team budget of 300 requests' cost (its org's request and token quotas far off):
    allowances of the team and the org in both processes; the team's spend within
    ``BUSY_SHORT`` requests of its budget once the clients are refused, within one after."""
    zone, budget = noon_zone(), 300 * COST
    team, org = ("team", "spend"), ("org", "corp")
    users = ["t1", "t2", "t3", "t4"]
    quotas = {"requests": {"day": 10**6}, "tokens": {"month": 10**8}}
    secrets = make_team(
        pair,
        {"id": "corp", "timezone": zone, "limits": quotas},
        {"id": "spend", "org": "corp", "limits": {"budget_usd": {"day": budget / 1e6},
                                                  "max_parallel": 1000}},
        users,
    )  # fmt: skip
    watch = LeaseWatch(backend, [team, org], zone, (team, "usd"))
    stream = spend(pair, secrets, watch)
    assert len(watch.processes(team)) == PROCESSES, watch.seen  # granted in both
    assert len(watch.processes(org)) == PROCESSES, watch.seen
    assert watch.peak <= budget
    spent = counter(backend, team, "usd", zone)
    assert budget - BUSY_SHORT * COST < spent <= budget, (spent, stream.count(200))
    last = finish(pair, watch, secrets, BUSY_SHORT)
    served = stream.count(200) + last.count(200)
    records = served_records(pair[0], "spend", served)
    spent = counter(backend, team, "usd", zone)
    assert budget - COST < spent <= budget, spent
    assert spent == round(sum(r["charged_usd"] for r in records) * 1e6) == served * COST
    assert counter(backend, org, "req", zone) == served
    assert all(r["org"] == "corp" for r in records)


def test_an_org_request_quota_holds_with_allowances_in_both_processes(
    pair: list[Gateway], backend: Backend
) -> None:
    """An organization's 300 requests a day (its team's budget far off): allowances of both
    levels in both processes; the org's requests within ``BUSY_SHORT`` of its quota once the
    clients are refused, exactly at it after."""
    zone, quota = noon_zone(), 300
    team, org = ("team", "bulk"), ("org", "quota")
    users = ["q1", "q2", "q3", "q4"]
    secrets = make_team(
        pair,
        {"id": "quota", "timezone": zone, "limits": {"requests": {"day": quota}}},
        {"id": "bulk", "org": "quota", "limits": {"budget_usd": {"day": 100.0},
                                                 "tokens": {"day": 10**7}, "max_parallel": 100}},
        users,
    )  # fmt: skip
    watch = LeaseWatch(backend, [team, org], zone, (org, "req"))
    stream = spend(pair, secrets, watch)
    assert len(watch.processes(org)) == PROCESSES, watch.seen
    assert len(watch.processes(team)) == PROCESSES, watch.seen
    assert watch.peak <= quota
    used = counter(backend, org, "req", zone)
    assert quota - BUSY_SHORT < used <= quota, (used, stream.count(200))
    last = finish(pair, watch, secrets, BUSY_SHORT)
    served = stream.count(200) + last.count(200)
    records = served_records(pair[0], "bulk", served)
    assert counter(backend, org, "req", zone) == quota == served == len(records)
    spent = counter(backend, team, "usd", zone)
    assert spent == round(sum(r["charged_usd"] for r in records) * 1e6) == served * COST
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in records)
    assert counter(backend, team, "tok", zone) == tokens
