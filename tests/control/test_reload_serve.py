"""Hot reload of a `gateway serve --workers 2` under load: SIGHUP to the master reaches both
workers, POST /v1/admin/reload through one worker reaches the other, and no request fails —
streams included (the figures are printed: pytest -s)."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.control.flag_setup import ADMIN, KEYS, admin
from tests.control.serve_setup import chat, serve_env, write_config
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import Gateway, gateways

CLIENTS = 8
RELOADS = 5


async def _load(url: str, stop: asyncio.Event) -> collections.Counter[str]:
    """``CLIENTS`` loops, half of them streaming, until ``stop``: outcome → count."""
    outcomes: collections.Counter[str] = collections.Counter()
    headers = {"authorization": f"Bearer {KEYS['pro']}"}

    async def client(index: int, http: httpx.AsyncClient) -> None:
        streams = index % 2 == 1
        body = {
            "model": "slow" if streams else "text",
            "stream": streams,
            "messages": [{"role": "user", "content": "hi"}],
        }
        while not stop.is_set():
            try:
                answer = await http.post(url + "/v1/chat/completions", headers=headers, json=body)
                complete = not streams or answer.text.rstrip().endswith("data: [DONE]")
                ok = answer.status_code == 200 and complete
                outcomes["ok" if ok else f"failed: {answer.status_code} {answer.text[:80]}"] += 1
            except httpx.HTTPError as error:
                outcomes[f"error: {type(error).__name__}"] += 1

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(i, http) for i in range(CLIENTS)))
    return outcomes


def _models_seen(url: str, count: int = 16) -> set[str]:
    """The model each of ``count`` fresh connections was served by (spread over the workers)."""
    return {chat(url, "pro").headers["x-gateway-model"] for _ in range(count)}


def _reload_under_load(
    gateway: Gateway, config: Path, upstream_url: str
) -> collections.Counter[str]:
    async def scenario() -> collections.Counter[str]:
        stop = asyncio.Event()
        load = asyncio.ensure_future(_load(gateway.url, stop))
        for n in range(RELOADS):
            await asyncio.sleep(0.4)
            write_config(config, upstream_url, ["ok-b" if n % 2 == 0 else "ok"])
            gateway.process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.6)
        stop.set()
        return await load

    return asyncio.run(scenario())


def test_sighup_and_admin_reload_under_load_drop_nothing(
    upstream: MockUpstream, redis: RedisServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, upstream.base_url, ["ok"])
    with gateways(1, config, serve_env(redis.url), extra=["--workers", "2"]) as (gateway,):
        assert _models_seen(gateway.url) == {"ok"}
        started = time.monotonic()
        outcomes = _reload_under_load(gateway, config, upstream.base_url)
        print(f"\nSIGHUP x{RELOADS} under {CLIENTS} clients in {time.monotonic() - started:.1f} s: "
              f"{dict(outcomes)}")  # fmt: skip
        assert set(outcomes) == {"ok"} and outcomes["ok"] > 50
        deadline = time.monotonic() + 10  # the last SIGHUP (ok-b): every worker switched
        while _models_seen(gateway.url) != {"ok-b"}:
            assert time.monotonic() < deadline

        write_config(config, upstream.base_url, ["ok"])
        answer = admin(gateway.url, "POST", "/v1/admin/reload")  # served by one worker
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10
        while _models_seen(gateway.url) != {"ok"}:  # ...and the other follows
            assert time.monotonic() < deadline

        (config / "tiers.yaml").write_text("tiers: {free: {routes: {text: [nope]}}}\n")
        gateway.process.send_signal(signal.SIGHUP)  # refused: the config in force stays
        refused = admin(gateway.url, "POST", "/v1/admin/reload")
        assert refused.status_code == 400 and "nope" in refused.json()["error"]["message"]
        by_cli = subprocess.run(
            [sys.executable, "-m", "gateway", "reload", "--url", gateway.url, "--token", ADMIN],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        lines = by_cli.stderr.splitlines()
        assert by_cli.returncode == 1 and lines[0] == "gateway: error: the config was refused:"
        assert any("nope" in line for line in lines[1:])
        assert _models_seen(gateway.url) == {"ok"}
        assert gateway.process.poll() is None
        assert not [line for line in gateway.errors() if "reload refused" not in line]
