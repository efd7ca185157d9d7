"""Issue 10, fault injection: a real redis-server is stalled (SIGSTOP/SIGCONT) or killed and
restarted empty during a bounded load through two ``gateway serve`` processes
(``on_store_error: allow``). Afterwards the usage records and the counters must agree exactly.
The figures are printed (run with ``-s`` to see them)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from gateway.metering.record_codec import decode
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.support import MOCK_KEY, free_port, routes_doc, tiers_doc

KEY = "sk-fault-test-key-0123456789"
USER = "faulty"
REQUESTS = 3000
CONCURRENCY = 24
MESSAGES = [{"role": "user", "content": "count these tokens please"}]
TIERS = {
    "free": {
        "routes": {"text": ["ok"]},
        "quotas": {"text_generation": {"requests_per_day": 10**9, "tokens_per_day": 10**12}},
    }
}


class Gateway:
    """One ``gateway serve`` process (one worker)."""

    def __init__(self, config_dir: Path, redis_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {**os.environ, "MOCK_KEY": MOCK_KEY, "REDIS_URL": redis_url}
        env["GATEWAY_KEYS"] = f"{KEY}=free:{USER}"
        argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(config_dir)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*argv, "--port", str(self.port), "--workers", "1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not start:\n" + log.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM: the meter flushes what it holds before the process exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def gateways(
    tmp_path: Path, upstream: MockUpstream, redis_server: RedisServer
) -> Iterator[list[Gateway]]:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc(TIERS)))
    started = [Gateway(tmp_path, redis_server.url, tmp_path / f"gw{i}.log") for i in range(2)]
    yield started
    for gateway in started:
        gateway.stop()


def pid(server: RedisServer) -> int:
    process = server._process
    assert process is not None
    return process.pid


def kill_and_restart(server: RedisServer) -> None:
    """SIGKILL, then a new empty redis-server on the same port (no persistence)."""
    process = server._process
    assert process is not None
    process.kill()
    process.wait()
    server._process = None
    time.sleep(0.5)
    server.start()


async def load(gateways: list[Gateway], fault: Callable[[], None]) -> int:
    """REQUESTS chat completions over both gateways; ``fault`` runs (in a thread) once a
    third of them are done. Returns how many succeeded."""
    done, succeeded = 0, 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(REQUESTS):
        queue.put_nowait(index)
    faulted: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, succeeded, faulted
        while not queue.empty():
            index = queue.get_nowait()
            url = gateways[index % 2].url + "/v1/chat/completions"
            body = {"model": "text", "messages": MESSAGES, "max_tokens": 20}
            answer = await client.post(url, json=body, headers={"authorization": f"Bearer {KEY}"})
            succeeded += answer.status_code == 200
            done += 1
            if done == REQUESTS // 3 and faulted is None:
                faulted = loop.run_in_executor(None, fault)

    # idle connections dropped well before the gateway's 5 s keep-alive timeout: httpx's own
    # default is the same 5 s, so a request could go out on a connection as the server closed it
    limits = httpx.Limits(max_connections=64, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    if faulted is not None:
        await faulted
    return succeeded


def stored(url: str) -> tuple[list[dict[str, Any]], dict[str, int], list[int]]:
    """The usage records, the user's summed day counters, and every counter value."""
    client = redis.Redis.from_url(url)
    try:
        records = [
            record.as_dict()
            for _, fields in client.xrange("gw:usage")
            if (record := decode(fields[b"r"]))
        ]
        counters: dict[str, int] = {}
        values: list[int] = []
        for key in client.scan_iter(match="gw:*"):
            if client.type(key) != b"hash" or key.startswith(b"gw:roll:"):
                continue  # gw:roll:* hold the analytics' JSON rollups, not counters
            for field, raw in client.hgetall(key).items():
                values.append(int(raw))
                if key.decode().startswith(f"gw:{{u:{USER}}}:d:"):
                    counters[field.decode()] = counters.get(field.decode(), 0) + int(raw)
        return records, counters, values
    finally:
        client.close()


def check(
    label: str, succeeded: int, records: list[dict[str, Any]], counters: dict[str, int]
) -> None:
    ids = [record["request_id"] for record in records]
    tokens = sum(record["total_tokens"] for record in records)
    print(
        f"\n{label}: {REQUESTS} requests, {succeeded} succeeded, {len(records)} records "
        f"({len(ids) - len(set(ids))} duplicate ids), {tokens} record tokens, "
        f"counters: {counters.get('text_generation:tok', 0)} tokens, "
        f"{counters.get('text_generation:req', 0)} requests"
    )
    assert len(ids) == len(set(ids)), "a request was recorded twice"
    assert all(record["status"] == 200 for record in records)
    assert counters.get("text_generation:tok", 0) == tokens
    assert counters.get("text_generation:req", 0) == len(records)


def test_a_three_second_redis_stall_loses_and_doubles_nothing(
    gateways: list[Gateway], redis_server: RedisServer
) -> None:
    def stall() -> None:
        os.kill(pid(redis_server), signal.SIGSTOP)
        time.sleep(3)
        os.kill(pid(redis_server), signal.SIGCONT)

    succeeded = asyncio.run(load(gateways, stall))
    for gateway in gateways:
        gateway.stop()
    records, counters, _ = stored(redis_server.url)
    check("SIGSTOP 3 s", succeeded, records, counters)
    assert succeeded == REQUESTS  # allow: nobody is refused while Redis stalls
    assert len(records) == succeeded


def test_a_redis_killed_and_restarted_empty_never_goes_negative(
    gateways: list[Gateway], redis_server: RedisServer
) -> None:
    succeeded = asyncio.run(load(gateways, lambda: kill_and_restart(redis_server)))
    for gateway in gateways:
        gateway.stop()
    records, counters, values = stored(redis_server.url)
    check("SIGKILL + restart", succeeded, records, counters)
    assert succeeded == REQUESTS
    assert min(values, default=0) >= 0, "a counter went below zero"
    # what the killed Redis held is gone; what was settled after the restart is all there
    assert 0 < len(records) <= succeeded


DENY_TIERS = {
    "free": {
        "routes": {"text": ["ok"]},
        "quotas": {"text_generation": {"requests_per_day": 50}},
    }
}


def test_deny_mode_gives_back_what_a_stall_reserved(
    tmp_path: Path, upstream: MockUpstream, redis_server: RedisServer
) -> None:
    """Issue 23 item 14: ``on_store_error: deny``, Redis SIGSTOPped 3 s under load for a user
    with a quota of 50. Reserves whose reply timed out ran once Redis resumed; their leases
    must be given back then, not 900 s later: afterwards nothing is reserved and used is
    exactly what was admitted."""
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    tiers = tiers_doc(DENY_TIERS, settings={"on_store_error": "deny"})
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    gateway = Gateway(tmp_path, redis_server.url, tmp_path / "gw.log")
    headers = {"authorization": f"Bearer {KEY}"}
    try:

        async def scenario() -> int:
            admitted = 0
            url = gateway.url + "/v1/chat/completions"
            body = {"model": "text", "messages": MESSAGES, "max_tokens": 5}
            loop = asyncio.get_running_loop()
            async with httpx.AsyncClient(timeout=30) as client:

                async def one() -> None:
                    nonlocal admitted
                    answer = await client.post(url, json=body, headers=headers)
                    admitted += answer.status_code == 200

                await asyncio.gather(*(one() for _ in range(8)))  # connected and warm
                os.kill(pid(redis_server), signal.SIGSTOP)
                try:
                    stalled = [asyncio.create_task(one()) for _ in range(16)]
                    await asyncio.sleep(3)
                finally:
                    os.kill(pid(redis_server), signal.SIGCONT)
                await asyncio.gather(*stalled)
                await loop.run_in_executor(None, time.sleep, 1.5)
                await asyncio.gather(*(one() for _ in range(60)))  # past the quota
            return admitted

        admitted = asyncio.run(scenario())
        deadline = time.monotonic() + 10
        while True:
            view = httpx.get(gateway.url + "/v1/quota", headers=headers).json()
            requests = view["capabilities"]["text_generation"]["requests"]
            if requests["reserved"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        print(f"\ndeny + SIGSTOP 3 s: {admitted} admitted, quota line {requests}")
        assert requests["reserved"] == 0, requests
        assert requests["used"] == admitted == 50, (admitted, requests)
    finally:
        gateway.stop()
