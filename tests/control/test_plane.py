"""ControlPlane on the real stores: writes, audit, and a second reader following them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.config.model import Settings
from gateway.control.plane import ControlPlane, Snapshot
from gateway.metering import create_store
from gateway.metering.memory_store import MemoryStore
from tests.redis_fixture import RedisServer


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisServer]:
    with RedisServer(cluster=True) as server:
        server.start()
        yield server


async def _follow(writer: ControlPlane, reader: ControlPlane) -> None:
    seen: list[Snapshot] = []
    reader.subscribe(seen.append)
    await reader.start()
    try:
        snapshot = await writer.put("keys", "k1", {"user": "u"}, actor="test", action="create")
        assert snapshot.kind("keys")["k1"] == {"user": "u"}  # the writer sees it at once
        for _ in range(200):
            if "k1" in reader.snapshot.kind("keys"):
                break
            await asyncio.sleep(0.01)
        assert reader.snapshot.kind("keys")["k1"] == {"user": "u"}
        assert seen and seen[-1] is reader.snapshot
        await writer.put("keys", "k1", None, actor="test", action="delete")
        for _ in range(200):
            if "k1" not in reader.snapshot.kind("keys"):
                break
            await asyncio.sleep(0.01)
        assert reader.snapshot.kind("keys") == {}
        log = await writer.audit_log()
        assert [e["action"] for e in log] == ["delete", "create"]
        assert log[0]["before"] == {"user": "u"} and log[0]["after"] is None
        assert log[1]["actor"] == "test" and log[1]["kind"] == "keys" and log[1]["id"] == "k1"
        older = await writer.audit_log(limit=5, before=log[0]["entry_id"])
        assert [e["action"] for e in older] == ["create"]
    finally:
        await reader.aclose()
        await writer.aclose()


def test_memory_store_plane_follows_writes() -> None:
    store = MemoryStore(stream_maxlen=100)
    asyncio.run(_follow(ControlPlane(store), ControlPlane(store, poll_interval_s=0.01)))


def test_redis_plane_follows_writes_through_pubsub(redis: RedisServer) -> None:
    async def run() -> None:
        writer_store = create_store(redis.url, Settings())
        reader_store = create_store(redis.url, Settings())
        # a poll slower than the test's wait: only the announcement can deliver in time
        reader = ControlPlane(reader_store, poll_interval_s=60)
        try:
            await _follow(ControlPlane(writer_store), reader)
        finally:
            await writer_store.aclose()
            await reader_store.aclose()

    asyncio.run(run())


def test_cluster_plane_follows_writes_by_polling(cluster: RedisServer) -> None:
    async def run() -> None:
        url = cluster.url
        writer_store = create_store(url, Settings())
        reader_store = create_store(url, Settings())
        try:
            await _follow(ControlPlane(writer_store), ControlPlane(reader_store))
        finally:
            await writer_store.aclose()
            await reader_store.aclose()

    asyncio.run(run())


def test_the_audit_entry_takes_the_callers_redacted_view() -> None:
    async def run() -> None:
        plane = ControlPlane(MemoryStore(stream_maxlen=10))
        await plane.put(
            "admin_tokens", "t1", {"sha256": "abc"}, actor="a", action="create",
            audit={"after": {"sha256": "<redacted>"}},
        )  # fmt: skip
        (entry,) = await plane.audit_log()
        assert entry["after"] == {"sha256": "<redacted>"}

    asyncio.run(run())


def test_notes_join_the_audit_log_in_order_without_a_new_version() -> None:
    async def run() -> None:
        plane = ControlPlane(MemoryStore(stream_maxlen=10))
        await plane.put("keys", "k", {"a": 1}, actor="x", action="create")
        await plane.note("user_quota", "u/c", actor="x", action="set", before=None, after={"r": 1})
        assert (await plane.refresh()) is None and plane.snapshot.version == 1
        log = await plane.audit_log()
        assert [e["action"] for e in log] == ["set", "create"]
        assert [e["action"] for e in await plane.audit_log(before=log[0]["entry_id"])] == ["create"]

    asyncio.run(run())
