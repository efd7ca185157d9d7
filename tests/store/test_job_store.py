"""Video job records through the store's public document methods, on memory, Redis and Redis
Cluster: one owner's records, expiry, and the once-only settle mark."""

from __future__ import annotations

import redis as redis_py

from gateway.config.model import Config
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.jobs import StoreJobStore
from tests.metering.helpers import NOON, Clock, run


def test_records_per_owner_expiry_and_settle_once(config: Config, store_url: str | None) -> None:
    clock = Clock()

    async def scenario() -> None:
        store = create_store(store_url, config.settings)
        jobs = StoreJobStore(store, clock=clock)
        try:
            first = {"id": "video_1", "status": "queued", "expires_at": NOON + 100}
            await jobs.put("alice", "video_1", first, ttl_s=600)
            await jobs.put("alice", "video_2", {"id": "video_2", "expires_at": NOON + 10}, 600)
            await jobs.put("bob", "video_3", {"id": "video_3", "expires_at": NOON + 100}, 600)
            assert await jobs.get("alice", "video_1") == first
            assert await jobs.get("bob", "video_1") is None  # another owner's id
            assert sorted(j["id"] for j in await jobs.list("alice")) == ["video_1", "video_2"]
            await jobs.put("alice", "video_1", {**first, "status": "completed"}, ttl_s=600)
            assert (await jobs.get("alice", "video_1") or {})["status"] == "completed"
            clock.now += 50  # video_2 is past its expires_at
            assert [j["id"] for j in await jobs.list("alice")] == ["video_1"]
            assert await jobs.get("alice", "video_2") is None
            assert await jobs.settle_once("alice", "video_1", 600) is True
            assert await jobs.settle_once("alice", "video_1", 600) is False
            assert await jobs.settle_once("bob", "video_1", 600) is True
        finally:
            await store.aclose()

    run(scenario())


def test_redis_keys_are_hash_tagged_per_owner_and_expire(config: Config, store_url: str | None):
    if store_url is None:
        return
    run(_put_one(config, store_url))
    key = keys.user_video_jobs("alice")
    assert key == "gw:{u:alice}:videojobs" and keys.hash_tag(key) == keys.hash_tag(
        keys.user_day("alice", "20260101")
    )
    port = store_url.rsplit(":", 1)[1].split("/", 1)[0]
    client = redis_py.Redis(port=int(port))
    try:
        assert client.hexists(key, "video_1")
        assert 0 < client.ttl(key) <= 600
    finally:
        client.close()


async def _put_one(config: Config, url: str) -> None:
    store = create_store(url, config.settings)
    try:
        await StoreJobStore(store).put("alice", "video_1", {"id": "video_1"}, ttl_s=600)
    finally:
        await store.aclose()
