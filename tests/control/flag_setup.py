"""A gateway in-process with a Together upstream (the mock under that name) for the flag tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.secret import Secret
from gateway.store.memory import MemoryStore
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

ADMIN = "flag-test-admin-token-0123456789"
KEYS = {"free": "sk-flags-free-0123456789", "pro": "sk-flags-pro-0123456789"}


def documents(upstream_url: str, **tiers_extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    routes = routes_doc(upstream_url)
    routes["upstreams"]["together"] = dict(routes["upstreams"]["mock"])
    routes["models"]["tg-ok"] = {"upstream": "together", "model": "mock/ok", "modality": "text"}
    tiers = tiers_doc(
        {
            "free": {"routes": {**DEFAULT_ROUTES, "text": ["tg-ok", "ok"]}},
            "pro": {"routes": {**DEFAULT_ROUTES, "text": ["fail-500", "ok"]}},
        },
        **tiers_extra,
    )
    return routes, tiers


def env() -> dict[str, str]:
    return {"GATEWAY_KEYS": ",".join(f"{key}={tier}:user-{tier}" for tier, key in KEYS.items())}


@contextmanager
def flag_gateway(upstream_url: str, **tiers_extra: Any) -> Iterator[str]:
    config = build_config(*documents(upstream_url, **tiers_extra), env())
    app = create_app(
        config,
        Runtime(admin_token=Secret(ADMIN)),
        store=MemoryStore(stream_maxlen=1000),
        metrics=Metrics(),
    )
    server = ThreadedServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()


def chat(url: str, tier: str, model: str = "text") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {KEYS[tier]}"}
    return httpx.post(url + "/v1/chat/completions", headers=headers, json=body, timeout=30)


def admin(url: str, method: str, path: str, token: str = ADMIN, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, url + path, headers=headers, timeout=10, **kw)
