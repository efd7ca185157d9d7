"""Fixtures: a real mock upstream, a real redis-server, and gateways served by uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette

from gateway.app import Gateway, create_app
from gateway.config.runtime import Runtime
from gateway.metering import create_store
from gateway.observe.metrics import Metrics
from tests.mock_upstream import MockUpstream, running_mock_upstream
from tests.redis_fixture import RedisServer
from tests.support import ThreadedServer, build_config, routes_doc, tiers_doc


@pytest.fixture(scope="session")
def mock_upstream_server() -> Iterator[MockUpstream]:
    with running_mock_upstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(mock_upstream_server: MockUpstream) -> MockUpstream:
    mock_upstream_server.reset()
    return mock_upstream_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The shared redis-server, running and empty."""
    redis_server.start()
    redis_server.flushall()
    return redis_server


@dataclass
class RunningGateway:
    url: str
    app: Starlette
    keys: dict[str, str]  # tier → a client key of that tier (user "user-<tier>")

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    def key(self, tier: str = "free") -> str:
        return self.keys[tier]


StartGateway = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(upstream: MockUpstream) -> Iterator[StartGateway]:
    servers: list[ThreadedServer] = []

    def start(
        tiers: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        tiers_extra: Mapping[str, Any] | None = None,
        routes_extra: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        first_byte_timeout_s: float = 1.0,
        **app_kwargs: Any,
    ) -> RunningGateway:
        tiers_document = tiers_doc(tiers, **(tiers_extra or {}))
        keys = {tier: f"sk-test-{tier}-0123456789" for tier in tiers_document["tiers"]}
        env = {"GATEWAY_KEYS": ",".join(f"{k}={t}:user-{t}" for t, k in keys.items())}
        routes = routes_doc(upstream.base_url, first_byte_timeout_s=first_byte_timeout_s)
        routes.update(routes_extra or {})  # top-level sections replaced whole
        config = build_config(routes, tiers_document, env)
        runtime = runtime or Runtime()
        if "store" not in app_kwargs:
            app_kwargs["store"] = create_store(runtime.redis_url, config.settings)
        app = create_app(config, runtime, metrics=Metrics(), **app_kwargs)
        server = ThreadedServer(app, gateway=True).start()
        servers.append(server)
        return RunningGateway(server.url, app, keys)

    yield start
    for server in servers:
        server.stop()
