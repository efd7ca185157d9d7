"""Stored system keys count where env keys do: ``/readyz`` of a served gateway and ``gateway
check`` (a real process) do not report an upstream without its env key as missing while it has
stored keys; ``gateway check`` says when it could not read the store, and does not fail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.control.secrets_at_rest import KEY_ENV, KEY_FILE_ENV
from gateway.observe.metrics import Metrics
from gateway.secret import Secret
from gateway.store.factory import create_store
from tests.control.test_upstream_keys import MASTER
from tests.redis_fixture import RedisServer
from tests.support import ThreadedServer, build_config, free_port, routes_doc, tiers_doc

ADMIN = "env-admin-token-readiness"
STORED = "sk-stored-system-key-readiness-1"
ROUTES = routes_doc("http://127.0.0.1:9/v1")  # never called: readiness looks at keys only
TIERS = tiers_doc({"free": {"routes": {"text": ["ok"]}}})


@pytest.fixture
def served(redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A gateway whose ``mock`` upstream has no env key (MOCK_KEY empty)."""
    monkeypatch.setenv(KEY_ENV, MASTER)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    config = build_config(ROUTES, TIERS, {"MOCK_KEY": ""})
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    app = create_app(
        config, runtime, metrics=Metrics(), store=create_store(redis.url, config.settings)
    )
    server = ThreadedServer(app).start()
    yield server.url
    server.stop()


def _check(config_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MOCK_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config-dir", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**environ, "OTHER_KEY": "sk-other", **env},
    )


def test_readyz_and_check_count_stored_system_keys(
    served: str, redis: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(TIERS))

    ready = httpx.get(served + "/readyz")
    assert ready.status_code == 503 and ready.json()["routes_without_targets"] == ["free/text"]
    assert "MOCK_KEY unset" in ready.json()["reason"]
    before = _check(tmp_path, REDIS_URL=redis.url)
    assert before.returncode == 0, before.stderr
    assert "api_key_env MOCK_KEY is unset" in before.stderr
    assert "tier free route text: usable none" in before.stderr

    put = httpx.put(
        served + "/v1/admin/upstreams/mock/keys",
        json={"key": STORED},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert put.status_code == 200, put.text
    ready = httpx.get(served + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["routes_without_targets"] == []

    after = _check(tmp_path, REDIS_URL=redis.url)
    assert after.returncode == 0, after.stderr
    assert "MOCK_KEY is unset" not in after.stderr and "usable none" not in after.stderr
    assert "note: upstream mock: 1 stored system key" in after.stderr
    assert STORED not in after.stderr + after.stdout

    # no Redis to read: said, not failed; the env key's absence is reported as before
    unreachable = _check(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert unreachable.returncode == 0, unreachable.stderr
    assert "note: stored upstream keys not checked: cannot read the store" in unreachable.stderr
    assert "api_key_env MOCK_KEY is unset" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    without = _check(tmp_path)
    assert without.returncode == 0, without.stderr
    assert "note: stored upstream keys not checked: REDIS_URL is not set" in without.stderr
