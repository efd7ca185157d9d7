"""The metering tests' real redis-server fixtures (standalone, one-node cluster) and config."""

from __future__ import annotations

from tests.metering.conftest import (  # noqa: F401  (fixtures, found by name)
    cluster_server,
    config,
    redis_server,
    redis_url,
    store_url,
)
