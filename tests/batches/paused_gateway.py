"""A gateway whose batches run one line at a time behind a slow first model, with an admin token.

Shared by the batch limit and pause tests: lines stay in flight long enough to observe, and a
paused batch rechecks its owner's key every second and a refused line comes back within ~2 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES, routes_doc

ADMIN = "env-admin-token-0123456789"


def admin_call(gw: RunningGateway, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kw)


def start_paused_gateway(
    start_gateway: StartGateway,
    redis: RedisServer,
    upstream: MockUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RunningGateway:
    monkeypatch.setenv("GATEWAY_FILES_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("GATEWAY_BATCH_CONCURRENCY", "1")
    monkeypatch.setenv("GATEWAY_BATCH_KEY_RECHECK_S", "1")
    routes = routes_doc(upstream.base_url, first_byte_timeout_s=5)
    routes["models"]["slowish"] = {"upstream": "mock", "model": "mock/slowfirst-0.3"}
    routes["models"]["slowish"]["modality"] = "text"
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    tiers = {"free": {"routes": {**DEFAULT_ROUTES, "text": ["slowish", "ok"]}}}
    return start_gateway(
        tiers, routes_extra={"models": routes["models"]}, runtime=runtime, first_byte_timeout_s=5
    )
