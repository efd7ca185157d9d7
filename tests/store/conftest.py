"""Real redis-server fixtures (standalone and one-node cluster) and the shipped config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.load import load_config
from gateway.config.model import Config
from tests.redis_fixture import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def cluster_server() -> Iterator[RedisServer]:
    with RedisServer(cluster=True) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(params=["memory", "redis", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Once per store: memory (None), Redis, Redis Cluster."""
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue(f"{request.param}_server")
    server.flushall()
    return server.url


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(ROOT, env={})
