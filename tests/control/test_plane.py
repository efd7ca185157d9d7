"""ControlPlane on the real stores: writes, audit, and a second reader following them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.config.model import Settings
from gateway.control.plane import ControlPlane, Snapshot
from gateway.store.factory import create_store
from gateway.store.memory import MemoryStore
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


def _key_document(user: str, digest: str) -> dict[str, object]:
    return {"user": user, "tier": "free", "secrets": [{"sha256": digest, "until": None}]}


def test_a_write_applies_one_document_without_reloading_the_snapshot(redis: RedisServer) -> None:
    """With 2,000 keys stored, each write used to reload and re-parse all of them in the writer
    and in every other process (creates fell from 24/s to 7/s). Now the writer applies its own
    write, and a reader told of it (pub/sub) reads that one document; neither reloads."""
    import hashlib

    from gateway.proxy.auth import KeyRing
    from tests.support import build_config, routes_doc, tiers_doc

    config = build_config(routes_doc("http://127.0.0.1:9/v1"), tiers_doc(), {})

    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def auth(ring: KeyRing, secret: str) -> str | None:
        try:
            return ring.authenticate({"authorization": f"Bearer {secret}"}).user
        except Exception:
            return None

    whole_loads = {"writer": 0, "reader": 0}

    def counted(store: Any, name: str) -> Any:
        load = store.control_load

        async def control_load() -> Any:
            whole_loads[name] += 1
            return await load()

        store.control_load = control_load
        return store

    async def run() -> None:
        writer_store = counted(create_store(redis.url, Settings()), "writer")
        reader_store = counted(create_store(redis.url, Settings()), "reader")
        writer = ControlPlane(writer_store, poll_interval_s=60)
        reader = ControlPlane(reader_store, poll_interval_s=60)  # only announcements in time
        try:
            for n in range(2000):  # seeded as earlier writes
                await writer.put("keys", f"seed{n}", _key_document(f"u{n}", digest(f"s{n}")),
                                 actor="t", action="create")  # fmt: skip
            await writer.start()
            await reader.start()
            rings = KeyRing(config, writer), KeyRing(config, reader)
            loads = dict(whole_loads)
            for n in range(20):
                doc = _key_document(f"new{n}", digest(f"fresh{n}"))
                await writer.put("keys", f"new{n}", doc, actor="t", action="create")
            await writer.put("keys", "seed7", None, actor="t", action="revoke")
            rotated = _key_document("u8", digest("rotated8"))
            await writer.put("keys", "seed8", rotated, actor="t", action="rotate")
            await writer.put("flags", "beta", {"enabled": True}, actor="t", action="set")
            for _ in range(500):
                if reader.snapshot.version == writer.snapshot.version:
                    break
                await asyncio.sleep(0.01)
            assert whole_loads == loads  # no whole reload anywhere (before: 2 per write each)
            assert reader.snapshot.documents == writer.snapshot.documents
            assert len(reader.snapshot.kind("keys")) == 2000 + 20 - 1
            for ring in rings:  # the key rings followed key by key
                assert auth(ring, "fresh19") == "new19" and auth(ring, "s1999") == "u1999"
                assert auth(ring, "s7") is None  # revoked
                assert auth(ring, "s8") is None and auth(ring, "rotated8") == "u8"
            # a gap (a write this reader never heard of) heals with one whole reload
            await reader.aclose()
            await writer.put("keys", "late", _key_document("late", digest("late")),
                             actor="t", action="create")  # fmt: skip
            await writer.put("keys", "later", _key_document("l2", digest("l2")),
                             actor="t", action="create")  # fmt: skip
            await reader.refresh()
            assert whole_loads["reader"] == loads["reader"] + 1
            assert reader.snapshot.documents == writer.snapshot.documents
            assert auth(rings[1], "late") == "late"
        finally:
            await reader.aclose()
            await writer.aclose()
            await writer_store.aclose()
            await reader_store.aclose()

    asyncio.run(run())
