"""`gateway keys create|list|rotate|revoke` against a served gateway's admin API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import StartGateway
from tests.redis_fixture import RedisServer

ADMIN = "cli-admin-token-0123456789"


def gateway_cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_commands_drive_the_admin_api(start_gateway: StartGateway, redis: RedisServer) -> None:
    gw = start_gateway(runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))
    env = {"GATEWAY_URL": gw.url, "GATEWAY_ADMIN_TOKEN": ADMIN}
    made = gateway_cli("keys", "create", "--user", "cli", "--tier", "free", "--rpm", "5", env=env)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["key"].startswith("sk-gw-") and created["rpm"] == 5

    listed = gateway_cli("keys", "list", "--user", "cli", env=env)
    assert [k["id"] for k in json.loads(listed.stdout)["data"]] == [created["id"]]
    assert created["key"] not in listed.stdout

    rotated = gateway_cli("keys", "rotate", created["id"], "--grace-s", "0", env=env)
    new_key = json.loads(rotated.stdout)["key"]
    body = {"model": "ok", "messages": [{"role": "user", "content": "hi"}]}
    url = gw.url + "/v1/chat/completions"
    assert (
        httpx.post(url, json=body, headers={"authorization": f"Bearer {new_key}"}).status_code
        == 200
    )

    assert gateway_cli("keys", "revoke", created["id"], env=env).returncode == 0
    assert (
        httpx.post(url, json=body, headers={"authorization": f"Bearer {new_key}"}).status_code
        == 401
    )

    refused = gateway_cli("keys", "revoke", created["id"], env=env)
    assert refused.returncode == 1 and "404" in refused.stderr
    bad = gateway_cli("keys", "list", "--token", "wrong", env=env)
    assert bad.returncode == 1 and "401" in bad.stderr
