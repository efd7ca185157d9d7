"""The metering alone: admit + finish for one request, 16 at a time, against a real Redis.

Prints the CPU time per request with the reserve and settle scripts sent through the shared
pipelined connection (what the gateway does), the same for a run-time key with rpm, tpm and
day/month budgets of its own (``pipelined_key_limits``), the same key in a team in an
organization with every level limit set (``pipelined_team_levels``: 26 more counters),
through redis-py's pooled client, and the in-process store for reference. No HTTP, no gateway
process: just ``Meter``. For each Redis store a ``meter_redis`` line follows: Redis's own CPU
per request and its script calls' µs per call (from INFO), all rounds together.

    python bench/meter_micro.py [--requests 4000] [--redis-url redis://127.0.0.1:6379/0]

Without ``--redis-url`` it starts a redis-server on a free port (no persistence).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aio import run_loop
from procs import ProcessGroup, free_port, wait_for_port
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from services import CONFIG_DIR, TIER

from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.metering import Meter, MeterRequest, Outcome
from gateway.metering.types import KeyLimits, LevelLimits, Windowed
from gateway.store.factory import create_store
from gateway.store.port import Store
from gateway.store.redis.store import RedisStore

CONCURRENCY = 16
ROUNDS = 3
BIG = 10**11
# A run-time key's own limits (rpm, tpm, day and month budgets), far too large to bind
KEY_LIMITS = KeyLimits("micro-key", rpm=BIG, tpm=BIG, usd_day=BIG, usd_month=BIG)
# A key in a team in an organization, every level limit set (docs/organizations.md)
EVERY = Windowed(BIG, BIG, BIG, BIG)
LEVELS = tuple(
    LevelLimits(level, f"micro-{level}", "Europe/Paris", EVERY, EVERY, EVERY, max_parallel=10**6)
    for level in ("org", "team")
)
BENCH_ENV = {
    "GATEWAY_KEYS": f"sk-micro={TIER}:micro-user",
    "BENCH_JSON_URL": "http://127.0.0.1:9/v1",
    "BENCH_SSE_URL": "http://127.0.0.1:9/v1",
    "BENCH_SLOW_URL": "http://127.0.0.1:9/v1",
}


def work_request(config: Config, levels: bool) -> MeterRequest:
    """The micro benches' chat request of one user (``LEVELS``: in a team in an organization)."""
    tier, model = config.tiers[TIER], config.models["bench-json"]
    return MeterRequest(
        request_id="work", user="work-user", key_id="sk-work", tier=tier,
        capability="text_generation", byok=False, prompt_tokens_estimate=20,
        max_output_tokens=64, audio_ms_estimate=0, price=model.price, generates_tokens=True,
        levels=LEVELS if levels else (),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    config = load_config(str(CONFIG_DIR), BENCH_ENV)
    with tempfile.TemporaryDirectory() as workdir, ProcessGroup(Path(workdir), False) as procs:
        url = args.redis_url or _start_redis(procs)
        variants: dict[str, tuple[Callable[[], Store], KeyLimits | None, bool]] = {
            "pipelined": (lambda: create_store(url, config.settings), None, False),
            "pipelined_key_limits": (lambda: create_store(url, config.settings), KEY_LIMITS, False),
            "pipelined_team_levels": (lambda: create_store(url, config.settings), KEY_LIMITS, True),
            "redis_py": (lambda: _on_redis_py(url, config), None, False),
            "memory": (lambda: create_store(None, config.settings), None, False),
        }
        for name, (make, limits, levels) in variants.items():
            before = _redis_stats(url)
            cpu_us = run_loop(_measure(config, make(), args.requests, limits, levels))
            print(f"meter store={name} cpu_us_per_request={cpu_us:.1f}", flush=True)
            if name != "memory":
                redis_line = _redis_delta(before, _redis_stats(url), ROUNDS * args.requests)
                print(f"meter_redis store={name}{redis_line}", flush=True)


def _on_redis_py(url: str, config: Config) -> Store:
    """The Redis store with its scripts on redis-py's client (no pipelined connection)."""
    return RedisStore(Redis.from_url(url), stream_maxlen=config.settings.usage_stream_maxlen)


async def _measure(
    config: Config,
    store: Store,
    requests: int,
    key_limits: KeyLimits | None = None,
    levels: bool = False,
) -> float:
    meter = Meter(config, store)
    await meter.start()
    tier, model = config.tiers[TIER], config.models["bench-json"]
    request = MeterRequest(
        request_id="micro", user="micro-user", key_id="sk-micro", tier=tier,
        capability="text_generation", byok=False, prompt_tokens_estimate=20,
        max_output_tokens=64, audio_ms_estimate=0, price=model.price, generates_tokens=True,
        key_limits=key_limits, levels=LEVELS if levels else (),
    )  # fmt: skip
    outcome = Outcome(
        status=200, model=model.name, provider=model.upstream.name,
        upstream_model=model.upstream_model, price=model.price, prompt_tokens=12,
        completion_tokens=8, latency_ms=1.0,
    )  # fmt: skip

    async def one_client(count: int) -> None:
        for _ in range(count):
            meter.finish(await meter.admit(request), outcome)

    best = float("inf")
    for _ in range(ROUNDS):  # the best of three rounds: the machine is shared
        started = time.process_time()
        await asyncio.gather(*(one_client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        await meter.settled()
        best = min(best, (time.process_time() - started) / requests * 1e6)
    await meter.aclose()
    await store.aclose()
    return best


def _redis_stats(url: str) -> dict[str, float]:
    """Redis's own CPU seconds and, per command, its calls and microseconds so far."""
    client = SyncRedis.from_url(url)
    try:
        cpu = client.info("cpu")
        stats: dict[str, float] = {"cpu_s": cpu["used_cpu_sys"] + cpu["used_cpu_user"]}
        for name, entry in client.info("commandstats").items():
            stats[f"{name}.calls"] = entry["calls"]
            stats[f"{name}.usec"] = entry["usec"]
        return stats
    finally:
        client.close()


def _redis_delta(before: dict[str, float], after: dict[str, float], requests: int) -> str:
    """Redis CPU µs per request, and per script command µs per call and calls per request."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    line = f" redis_cpu_us={1e6 * delta('cpu_s') / requests:.1f}"
    for command in ("cmdstat_evalsha", "cmdstat_eval"):
        calls = delta(f"{command}.calls")
        if calls:
            line += (
                f" {command[8:]}_us_per_call={delta(f'{command}.usec') / calls:.1f}"
                f" {command[8:]}_per_request={calls / requests:.2f}"
            )
    return line


def _start_redis(procs: ProcessGroup) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: run bench/run.py once, or pass --redis-url")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    wait_for_port(port, procs.start("redis", argv, cpus=None))
    return f"redis://127.0.0.1:{port}/0"


if __name__ == "__main__":
    main()
