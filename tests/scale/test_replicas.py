"""Three `gateway serve` replicas behind nginx (round robin), one SIGKILLed and one drained
with SIGTERM mid-load: streams on the drained one finish, the killed one's fail cleanly (an
error, never a hang), and the quota holds: no more requests admitted than it allows."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.scale.gateways import KEY, gateways
from tests.scale.redis_ha import wait_for
from tests.support import DEFAULT_ROUTES, free_port, routes_doc, tiers_doc

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
QUOTA = 60
STREAM = {"model": "text", "stream": True, "messages": [{"role": "user", "content": "hi"}]}

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")


def write_config(directory: Path, upstream_url: str) -> None:
    routes = routes_doc(upstream_url)
    routes["models"]["long"] = {**routes["models"]["ok"], "model": "mock/slow-40+words-30"}
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    tier = {
        "routes": {**DEFAULT_ROUTES, "text": ["long"]},
        "quotas": {"text_generation": {"requests_per_day": QUOTA}},
    }
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc({"free": tier})))


def start_nginx(directory: Path, ports: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    servers = "".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in ports)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""{user} daemon off; worker_processes 1; pid {directory}/nginx.pid;
        error_log {directory}/nginx-error.log;
        events {{ worker_connections 1024; }}
        http {{
          access_log off;
          client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
          fastcgi_temp_path {directory}/fcgi; uwsgi_temp_path {directory}/uwsgi;
          scgi_temp_path {directory}/scgi;
          upstream gateways {{ {servers} }}
          server {{
            listen 127.0.0.1:{port};
            location / {{
              proxy_pass http://gateways;
              proxy_http_version 1.1;
              proxy_buffering off;
              proxy_read_timeout 30s;
              add_header X-Upstream $upstream_addr always;
            }}
          }}
        }}"""
    )
    process = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf)])

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(directory / 'nginx-error.log').read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:  # not listening yet
            return False

    wait_for(serving, what="nginx")
    return process, port


async def stream_once(http: httpx.AsyncClient, url: str) -> tuple[int, str, bool]:
    """(status, the replica that answered, the stream ended with [DONE])."""
    headers = {"authorization": f"Bearer {KEY}"}
    try:
        async with http.stream("POST", url, headers=headers, json=STREAM) as answer:
            body = b""
            async for chunk in answer.aiter_bytes():
                body += chunk
            return answer.status_code, answer.headers.get("x-upstream", ""), b"[DONE]" in body
    except httpx.HTTPError:
        return -1, "", False  # cut mid-stream by the SIGKILL


def test_sigkill_and_sigterm_behind_nginx(redis, upstream, tmp_path):
    write_config(tmp_path, upstream.base_url)
    with gateways(3, tmp_path, {"REDIS_URL": redis.url}) as served:
        nginx, port = start_nginx(tmp_path, [g.port for g in served])
        killed, drained = served[0], served[1]
        try:
            results = asyncio.run(
                _load(f"http://127.0.0.1:{port}/v1/chat/completions", killed, drained)
            )
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
        # drained, then exited (uvicorn re-raises the SIGTERM it handled once shut down)
        assert drained.process.wait(timeout=30) in (0, -signal.SIGTERM)
    by_replica = collections.defaultdict(list)
    for status, replica, done in results:
        by_replica[replica.rsplit(":", 1)[-1]].append((status, done))
    statuses = collections.Counter(status for status, _, _ in results)
    admitted = statuses[200] + statuses[-1]
    print(
        f"\nreplicas behind nginx: {dict(statuses)}; per replica: "
        f"{ {r: collections.Counter(s for s, _ in v) for r, v in by_replica.items()} }"
    )
    assert admitted <= QUOTA  # never more than the quota, whatever died
    assert statuses[429] > 0
    assert set(statuses) <= {200, 429, 502, -1}  # 502: nginx, the killed replica mid-request
    assert statuses[502] + statuses[-1] <= 8  # at most the requests in flight on it
    drained_streams = by_replica[str(drained.port)]
    assert drained_streams and all(done for status, done in drained_streams if status == 200)
    cut = [s for s, done in by_replica[str(killed.port)] if s == 200 and not done]
    assert not cut  # a cut stream is reported as an error to the client, not a quiet end


async def _load(url: str, killed, drained) -> list[tuple[int, str, bool]]:
    results: list[tuple[int, str, bool]] = []

    async def worker(http: httpx.AsyncClient) -> None:
        for _ in range(14):
            results.append(await stream_once(http, url))

    async with httpx.AsyncClient(timeout=30) as http:
        load = asyncio.gather(*(worker(http) for _ in range(8)))
        await asyncio.sleep(1.0)
        killed.process.send_signal(signal.SIGKILL)
        drained.process.send_signal(signal.SIGTERM)
        await load
    return results
