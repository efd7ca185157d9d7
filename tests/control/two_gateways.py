"""Two `gateway serve` processes on one redis-server, and helpers to drive the admin API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.scale.gateways import Gateway, gateways
from tests.support import DEFAULT_ROUTES, routes_doc, tiers_doc

ADMIN = "two-process-admin-token-0123456789"
HELD_S = 2.0  # how long the "held" model keeps a request in flight
PRICE = {"input": 1.0, "output": 2.0}


def write_config(directory: Path, upstream_url: str) -> Path:
    routes = routes_doc(upstream_url, first_byte_timeout_s=HELD_S + 10)
    routes["upstreams"]["mock"]["idle_timeout_s"] = HELD_S + 10
    routes["models"]["held"] = {
        "upstream": "mock",
        "model": f"mock/slowfirst-{HELD_S}",
        "modality": "text",
        "price": PRICE,
    }
    tiers = tiers_doc({"free": {"routes": {**DEFAULT_ROUTES, "text": ["ok", "held"]}}})
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return directory


@contextmanager
def two_gateways(directory: Path, upstream_url: str, redis_url: str) -> Iterator[list[Gateway]]:
    env = {"REDIS_URL": redis_url, "GATEWAY_ADMIN_TOKEN": ADMIN}
    with gateways(2, write_config(directory, upstream_url), env) as started:
        yield started


def admin(gw: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kw)


def chat(gw: Gateway, key: str, model: str = "ok") -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    answer = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )
    return answer.status_code


def until(check: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until ``check()`` held (polled every 10 ms), or None after ``timeout_s``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            return None
        time.sleep(0.01)
