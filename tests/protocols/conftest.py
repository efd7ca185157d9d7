"""A gateway whose text route can call tools and answer JSON schemas (the mock's ``smart``)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.mock_upstream import MockUpstream
from tests.support import DEFAULT_ROUTES, routes_doc

# every model a test names is in a chain (by name it is reachable only so); code falls back
ROUTES = {**DEFAULT_ROUTES, "text": ["ok", "ok-b", "smart", "drop"], "code": ["fail-503", "ok"]}


@pytest.fixture
def gateway(start_gateway: StartGateway, upstream: MockUpstream) -> RunningGateway:
    models = routes_doc(upstream.base_url)["models"]
    cut = {**models["ok"], "model": "mock/ok+length"}  # finishes with length when cut short
    routes = {**ROUTES, "text": [*ROUTES["text"], "cut"]}
    return start_gateway(
        {"free": {"routes": routes}, "pro": {"routes": routes}},
        routes_extra={"models": {**models, "cut": cut}},
    )


def usage_records(gw: RunningGateway, tier: str, count: int) -> list[dict[str, Any]]:
    """The caller's usage records, once ``count`` of them are in (billing runs after the reply)."""
    deadline = time.monotonic() + 5
    while True:
        answer = httpx.get(
            f"{gw.base_url}/usage", headers={"authorization": f"Bearer {gw.key(tier)}"}
        )
        records: list[dict[str, Any]] = answer.json()["data"]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)
