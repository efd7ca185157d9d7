"""A redis-py cluster client left with every pooled connection stranded (redis/redis-py#4110,
#4247: each command then fails with MaxConnectionsError although the nodes answer) is replaced
by the store after a few failures in a row, so the dashboard's and control plane's reads
recover without a restart."""

from __future__ import annotations

from typing import Any

from gateway.config.model import Config
from gateway.store.factory import create_store
from gateway.store.port import StoreError
from gateway.store.redis.healer import FAILURES
from tests.metering.helpers import RedisServer, run


def strand_every_connection(client: Any) -> None:
    """What the library bug leaves behind: the pool full of connections never released."""
    for node in client.get_nodes():
        node._free.clear()
        node.max_connections = len(node._connections)


def test_a_cluster_client_that_keeps_failing_is_replaced(
    config: Config, cluster_server: RedisServer
) -> None:
    async def scenario() -> tuple[list[str], bytes | None]:
        store = create_store(cluster_server.url, config.settings)
        try:
            await store.put_document("gw:heal:doc", "p", b"kept", 60)
            strand_every_connection(store.client)
            seen = []
            for _ in range(FAILURES):
                try:
                    await store.get_document("gw:heal:doc", "p")
                    seen.append("answered")
                except StoreError as exc:
                    seen.append(str(exc).split(":")[0])
            return seen, await store.get_document("gw:heal:doc", "p")
        finally:
            await store.aclose()

    failures, after = run(scenario())
    assert failures == ["MaxConnectionsError"] * FAILURES
    assert after == b"kept"


def test_a_standalone_store_keeps_its_client(config: Config, redis_server: RedisServer) -> None:
    async def scenario() -> bool:
        store = create_store(redis_server.url, config.settings)
        try:
            before = store.client
            await store.ping()
            return store.client is before
        finally:
            await store.aclose()

    assert run(scenario())
