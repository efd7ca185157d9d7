"""The metering tests' real redis-server fixtures and shipped config, for the usage room's tests."""

from __future__ import annotations

from tests.metering.conftest import (  # noqa: F401  (fixtures, found by name)
    cluster_server,
    config,
    redis_server,
    redis_url,
    store_url,
)
