"""`gateway serve` processes on loopback for the scale tests, and the load they are given."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from gateway.metering.meter import OUTAGE_NOTE
from tests.support import DEFAULT_ROUTES, MOCK_KEY, free_port, routes_doc, tiers_doc

KEY = "sk-scale-free-user"
USER = "scale-user"
MESSAGES = [{"role": "user", "content": "hello"}]


def write_config(directory: Path, upstream_url: str, requests_per_day: int) -> Path:
    tiers = {
        "free": {
            "routes": DEFAULT_ROUTES,
            "quotas": {"text_generation": {"requests_per_day": requests_per_day}},
        }
    }
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream_url)))
    # a stop must end well within Gateway.stop's wait even if a connection stays open
    settings = {"shutdown_grace_s": 10}
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc(tiers, settings=settings)))
    return directory


@dataclass
class Gateway:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                tail = "\n".join(self.log.read_text().splitlines()[-40:])
                raise AssertionError(f"the gateway did not stop within 30 s:\n{tail}") from None

    def errors(self) -> list[str]:
        """The log lines at error level (tracebacks of unexpected errors among them)."""
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if orjson.loads(line).get("level") == "error"]


@contextmanager
def gateways(
    count: int,
    config_dir: Path,
    env: Mapping[str, str] | Sequence[Mapping[str, str]],
    extra: Sequence[str] = (),
) -> Iterator[list[Gateway]]:
    """``count`` processes; ``env`` for all, or one mapping per process."""
    envs = [env] * count if isinstance(env, Mapping) else list(env)
    started: list[Gateway] = []
    try:
        for index in range(count):
            port = free_port()
            log = config_dir / f"gateway-{port}.log"
            argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(config_dir)]
            full_env = {
                **os.environ,
                "MOCK_KEY": MOCK_KEY,
                "GATEWAY_KEYS": f"{KEY}=free:{USER}",
                "GATEWAY_LOG_LEVEL": "WARNING",
                **envs[index],
            }
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [*argv, "--port", str(port), *extra],
                    env=full_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Gateway(port, process, log))
        for gateway in started:
            wait_ready(gateway)
        yield started
    finally:
        for gateway in started:
            gateway.stop()


def wait_ready(gateway: Gateway) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert gateway.process.poll() is None, gateway.log.read_text()
        try:
            if httpx.get(gateway.url + "/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("gateway did not start:\n" + gateway.log.read_text())


def chat_body() -> dict[str, Any]:
    return {"model": "text", "messages": MESSAGES, "max_tokens": 1}


async def burst(urls: Sequence[str], total: int) -> list[httpx.Response]:
    """``total`` concurrent requests of the one user, spread round robin over ``urls``."""
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=total), timeout=30) as http:
        calls = [
            http.post(
                f"{urls[i % len(urls)]}/v1/chat/completions", headers=headers, json=chat_body()
            )
            for i in range(total)
        ]
        return list(await asyncio.gather(*calls))


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    status: int  # 0: no answer (connection failed)
    metered: bool  # the answer carried the quota headers: a reservation was made
    fallback: bool = False  # refused while the store was down, by what was left before


async def paced_load(
    urls: Sequence[str], workers: int, duration_s: float, pause_s: float
) -> list[Sample]:
    """``workers`` loops, one request at a time each, ``pause_s`` apart, for ``duration_s``."""
    headers = {"authorization": f"Bearer {KEY}"}
    samples: list[Sample] = []
    deadline = time.monotonic() + duration_s

    async def worker(index: int, http: httpx.AsyncClient) -> None:
        count = 0
        while time.monotonic() < deadline:
            url = f"{urls[(index + count) % len(urls)]}/v1/chat/completions"
            count += 1
            try:
                answer = await http.post(url, headers=headers, json=chat_body())
            except httpx.HTTPError:
                samples.append(Sample(time.monotonic(), 0, False))
            else:
                metered = "x-ratelimit-limit-requests" in answer.headers
                fallback = answer.status_code == 429 and OUTAGE_NOTE in answer.text
                samples.append(
                    Sample(time.monotonic(), answer.status_code, metered and not fallback, fallback)
                )
            await asyncio.sleep(pause_s)

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(worker(i, http) for i in range(workers)))
    return samples


@dataclass(frozen=True)
class Failover:
    """What a bounded load saw while a Redis master was killed under it."""

    samples: list[Sample]
    killed_at: float

    @property
    def statuses(self) -> dict[int, int]:
        return dict(collections.Counter(s.status for s in self.samples))

    @property
    def unmetered(self) -> list[Sample]:
        """Admitted without a reservation (the store was unavailable: on_store_error allow)."""
        return [s for s in self.samples if s.status == 200 and not s.metered]

    @property
    def refused_in_outage(self) -> list[Sample]:
        """Refused while the store was down, by the quota left at the last reservation."""
        return [s for s in self.samples if s.fallback]

    @property
    def outage_s(self) -> float:
        """From the kill to the last request admitted or refused without the store."""
        outage = self.unmetered + self.refused_in_outage
        return max((s.at - self.killed_at for s in outage), default=0.0)

    @property
    def recovered(self) -> bool:
        return any(s.metered for s in self.samples if s.at > self.killed_at + self.outage_s)

    def report(self, records: list[dict[str, Any]]) -> str:
        ids = collections.Counter(str(r["request_id"]) for r in records)
        return (
            f"{len(self.samples)} requests, statuses {self.statuses}, "
            f"{len(self.unmetered)} admitted unmetered (the quota's overshoot), "
            f"{len(self.refused_in_outage)} refused by the last known quota, "
            f"outage {self.outage_s:.2f} s, "
            f"records {len(records)} (doubled {self.doubled(records)}, lost "
            f"{len(self.samples) - len(ids)})"
        )

    @staticmethod
    def doubled(records: list[dict[str, Any]]) -> int:
        ids = collections.Counter(str(r["request_id"]) for r in records)
        return sum(n - 1 for n in ids.values() if n > 1)


def run_failover(urls: Sequence[str], kill: Callable[[], None], seconds: float = 9.0) -> Failover:
    """Six clients, each one request every ~20 ms; ``kill`` runs 1.5 s in."""

    async def scenario() -> Failover:
        load = asyncio.ensure_future(paced_load(urls, 6, seconds, 0.02))
        await asyncio.sleep(1.5)
        killed_at = time.monotonic()
        kill()
        return Failover(await load, killed_at)

    return asyncio.run(scenario())
