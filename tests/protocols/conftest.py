"""A gateway whose text route can call tools and answer JSON schemas (the mock's ``smart``)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import DEFAULT_ROUTES

# every model a test names is in a chain (by name it is reachable only so); code falls back
ROUTES = {**DEFAULT_ROUTES, "text": ["ok", "ok-b", "smart", "drop"], "code": ["fail-503", "ok"]}


@pytest.fixture
def gateway(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway({"free": {"routes": ROUTES}, "pro": {"routes": ROUTES}})


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
