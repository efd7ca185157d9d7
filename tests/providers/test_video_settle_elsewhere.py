"""A video job whose submitting worker stopped watching it (it died) is settled by the worker
that serves a GET of the ended job: charged once, its reservation turned into the charge."""

from __future__ import annotations

import time

import httpx
import pytest
import redis as redis_py

from gateway.config.model import Settings
from gateway.store.factory import create_store
from tests.providers.test_videos import records, sdk, video_models, wait_done


@pytest.fixture
def workers(start_providers, video_server, redis):
    upstreams, models = video_models(video_server[1].url)

    def worker(poll_interval_s: float):
        return start_providers(
            {"video": ["sora"]},
            extra_upstreams=upstreams,
            extra_models=models,
            tier={"quotas": {"video_generation": {"minutes_per_day": 0.2}}},  # 12 s a day
            store=create_store(redis.url, Settings()),
            video_poll_interval_s=poll_interval_s,
        )

    # a: its watchers never wake during the test, as if it had died after the submit
    return worker(3600.0), worker(0.05), redis


def video_quota(gw) -> dict:
    response = httpx.get(
        gw.base_url + "/quota", headers={"authorization": f"Bearer {gw.keys['free']}"}
    )
    return response.json()["capabilities"]["video_generation"]


def test_the_get_serving_worker_charges_a_job_once(workers):
    a, b, redis = workers
    with sdk(a) as on_a, sdk(b) as on_b:
        job = on_a.videos.create(model="sora", prompt="orphan", seconds="8")
        assert wait_done(on_b, job.id).status == "completed"
        (record,) = records(b)
        assert record["status"] == 200 and record["video_ms"] == 8000
        assert record["cost_usd"] == pytest.approx(0.80)
        on_b.videos.retrieve(job.id)
        on_a.videos.retrieve(job.id)
    client = redis_py.Redis.from_url(redis.url)
    try:
        assert client.exists(f"gw:{{u:alice}}:videojob:{job.id}:done")
    finally:
        client.close()
    assert len(records(b)) == 1  # the later GETs did not settle it again
    media = video_quota(b)["audio_minutes"]  # the media counter video_generation limits
    assert media["used"] == pytest.approx(8 / 60, abs=0.001) and media["reserved"] == 0


def test_a_failed_orphan_gives_its_reservation_back(workers):
    a, b, _ = workers
    with sdk(a) as on_a, sdk(b) as on_b:
        job = on_a.videos.create(model="sora", prompt="please fail", seconds="8")
        done = wait_done(on_b, job.id)
        assert done.status == "failed" and "blocked" in done.error.message
        (record,) = records(b)
        assert record["status"] == 502 and record["cost_usd"] == 0
        again = on_b.videos.create(model="sora", prompt="fits again", seconds="8")
        assert wait_done(on_b, again.id).status == "completed"


def test_a_job_nobody_asks_about_is_adopted_and_charged(start_providers, video_server, redis):
    """The submitting worker died and no client GETs the job again: another worker's sweep
    finds its quiet heartbeat, watches it to the end and charges it, once."""
    upstreams, models = video_models(video_server[1].url)

    def worker(poll_interval_s: float, adopt_after_s: float):
        return start_providers(
            {"video": ["sora"]},
            extra_upstreams=upstreams,
            extra_models=models,
            store=create_store(redis.url, Settings()),
            video_poll_interval_s=poll_interval_s,
            video_adopt_after_s=adopt_after_s,
        )

    a, b = worker(3600.0, 3600.0), worker(0.05, 0.2)
    with sdk(a) as on_a:
        job = on_a.videos.create(model="sora", prompt="nobody asks", seconds="4")
    (record,) = records(b)  # waits until b's sweep has settled it
    assert record["status"] == 200 and record["video_ms"] == 4000
    client = redis_py.Redis.from_url(redis.url)
    try:
        assert client.hlen("gw:videojobs:open") == 0
        assert client.exists(f"gw:{{u:alice}}:videojob:{job.id}:done")
    finally:
        client.close()


def test_a_starting_worker_adopts_a_dead_workers_job_at_once(start_providers, video_server, redis):
    """The sweep for unwatched jobs is due at start, not one sweep interval (30 s) later: a
    worker started after another died adopts the job its heartbeat says nobody watches."""
    upstreams, models = video_models(video_server[1].url)

    def worker(clock, poll_interval_s: float):
        return start_providers(
            {"video": ["sora"]},
            extra_upstreams=upstreams,
            extra_models=models,
            store=create_store(redis.url, Settings()),
            clock=clock,
            video_poll_interval_s=poll_interval_s,
            video_adopt_after_s=60.0,  # a sweep every 30 s after the first
        )

    # a's heartbeat reads two minutes old: a died, and no watcher of its wakes in the test
    a = worker(lambda: time.time() - 120, 3600.0)
    with sdk(a) as on_a:
        job = on_a.videos.create(model="sora", prompt="left behind", seconds="4")
        assert on_a.videos.retrieve(job.id).status == "in_progress"  # the next poll ends it
    b = worker(time.time, 0.05)
    (record,) = records(b)  # within 5 s
    assert record["status"] == 200 and record["video_ms"] == 4000
    client = redis_py.Redis.from_url(redis.url)
    try:
        assert client.exists(f"gw:{{u:alice}}:videojob:{job.id}:done")
    finally:
        client.close()
