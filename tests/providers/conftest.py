"""Gateways in front of the mock upstream plus the mock Anthropic and video providers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.store.factory import create_store
from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream
from tests.providers.mock_anthropic import MockAnthropic
from tests.providers.mock_video import MockVideo
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

CLAUDE_KEY = "sk-ant-test-key-0123456789"
CLAUDE_MODELS = {
    "claude": "claude-ok",
    "claude-tools": "claude-tools",
    "claude-over": "claude-overloaded",
    "claude-rl": "claude-ratelimited",
    "claude-mid": "claude-midstream",
    "claude-cache": "claude-cache",
}


@pytest.fixture(scope="module")
def video_server() -> Iterator[tuple[MockVideo, ThreadedServer]]:
    """The mock video job APIs (OpenAI, Together, Replicate), served for one test module."""
    mock = MockVideo()
    server = ThreadedServer(mock.app).start()
    mock.url = server.url
    yield mock, server
    server.stop()


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[tuple[MockAnthropic, ThreadedServer]]:
    mock = MockAnthropic()
    server = ThreadedServer(mock.app).start()
    yield mock, server
    server.stop()


@pytest.fixture
def anthropic(anthropic_server: tuple[MockAnthropic, ThreadedServer]) -> MockAnthropic:
    mock = anthropic_server[0]
    mock.requests.clear()
    mock.headers.clear()
    return mock


StartProviders = Callable[..., RunningGateway]


@pytest.fixture
def start_providers(
    upstream: MockUpstream, anthropic_server: tuple[MockAnthropic, ThreadedServer]
) -> Iterator[StartProviders]:
    servers: list[ThreadedServer] = []

    def start(
        routes: Mapping[str, list[str]],
        *,
        extra_upstreams: Mapping[str, Any] | None = None,
        extra_models: Mapping[str, Any] | None = None,
        tier: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        settings: Mapping[str, Any] | None = None,
        **app_kwargs: Any,
    ) -> RunningGateway:
        doc = routes_doc(upstream.base_url)
        doc["upstreams"]["claude"] = {
            "api": "anthropic",
            "base_url": anthropic_server[1].url + "/v1",
            "api_key_env": "CLAUDE_KEY",
            "first_byte_timeout_s": 2,
        }
        for name, upstream_model in CLAUDE_MODELS.items():
            doc["models"][name] = {
                "upstream": "claude",
                "model": upstream_model,
                "modality": "text",
                "price": {"input": 3.0, "output": 15.0},
            }
        doc["upstreams"].update(extra_upstreams or {})
        doc["models"].update(extra_models or {})
        tiers = {"free": {"routes": {**DEFAULT_ROUTES, **routes}, **(tier or {})}}
        tiers_document = tiers_doc(tiers, **({"settings": dict(settings)} if settings else {}))
        keys = {"free": "sk-test-free-0123456789", "other": "sk-test-other-0123456789"}
        environment = {
            "GATEWAY_KEYS": f"{keys['free']}=free:alice,{keys['other']}=free:bob",
            "CLAUDE_KEY": CLAUDE_KEY,
            **(env or {}),
        }
        config = build_config(doc, tiers_document, environment)
        runtime = Runtime()
        app_kwargs.setdefault("store", create_store(None, config.settings))
        app = create_app(config, runtime, metrics=Metrics(), **app_kwargs)
        server = ThreadedServer(app, gateway=True).start()
        servers.append(server)
        return RunningGateway(server.url, app, keys)

    yield start
    for server in servers:
        server.stop()
