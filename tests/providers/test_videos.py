"""Video jobs through /v1/videos with the openai SDK, against mock OpenAI and Together job APIs."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.providers.mock_video import VIDEO_BYTES

# the mock upstream serves its files over http on 127.0.0.1, which the gateway refuses to
# fetch (or redirect to) unless told that this is local testing
LOCAL_FILES = {"video_content_allow_insecure": True}


def video_models(url: str) -> tuple[dict, dict]:
    upstreams = {
        "oai-video": {"api": "openai-videos", "base_url": url + "/v1", "api_key_env": "MOCK_KEY"},
        "together-video": {"api": "together-video", "base_url": url + "/v2"},
        "together-redirect": {
            "api": "together-video",
            "base_url": url + "/v2",
            "video_content": "redirect",
        },
    }
    price = {"per_second": 0.10}
    models = {
        "sora": {"upstream": "oai-video", "model": "sora-2", "modality": "video", "price": price},
        "sora-down": {"upstream": "oai-video", "model": "sora-submitfail", "modality": "video"},
        "kling": {
            "upstream": "together-video",
            "model": "kwaivgI/kling-2.1",
            "modality": "video",
            "price": price,
        },
        "veo": {"upstream": "together-redirect", "model": "google/veo-3", "modality": "video"},
    }
    return upstreams, models


@pytest.fixture
def gw(start_providers, video_server):
    upstreams, models = video_models(video_server[1].url)
    return start_providers(
        {"video": ["sora", "kling"], "image": ["sora-down", "kling"], "tts": ["veo"]},
        extra_upstreams=upstreams,
        extra_models=models,
        tier={"quotas": {"video_generation": {"minutes_per_day": 0.2}}},  # 12 seconds a day
        video_poll_interval_s=0.05,
        settings=LOCAL_FILES,
    )


def sdk(gw, tier_key: str = "free") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys[tier_key], max_retries=0)


def wait_done(client: openai.OpenAI, video_id: str):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = client.videos.retrieve(video_id)
        if job.status in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not end")


def records(gw, key: str = "free", count: int = 1) -> list[dict]:
    deadline = time.monotonic() + 5
    while True:
        response = httpx.get(
            gw.base_url + "/usage",
            params={"from": "2020-01-01", "to": "2100-01-01"},
            headers={"authorization": f"Bearer {gw.keys[key]}"},
        )
        data = response.json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_openai_videos_job_created_polled_downloaded_and_metered(gw, video_server):
    mock = video_server[0]
    with sdk(gw) as client:
        job = client.videos.create(model="sora", prompt="a cat on a bike", seconds="4")
        assert job.id.startswith("video_") and job.status == "queued" and job.model == "sora"
        sent = mock.submissions[-1]
        assert sent["model"] == "sora-2" and sent["prompt"] == "a cat on a bike"
        assert sent["authorization"] == "Bearer sk-mock-system-key-0123456789"
        done = wait_done(client, job.id)
        assert done.status == "completed" and done.progress == 100
        assert client.videos.download_content(job.id).read() == VIDEO_BYTES
    (record,) = records(gw)
    assert record["model"] == "sora" and record["provider"] == "oai-video"
    assert record["video_ms"] == 4000 and record["audio_ms"] == 0
    assert record["cost_usd"] == pytest.approx(0.40)


def test_a_user_sees_and_fetches_only_their_own_jobs(gw):
    with sdk(gw) as alice, sdk(gw, "other") as bob:
        job = alice.videos.create(model="sora", prompt="mine", seconds="4")
        with pytest.raises(openai.NotFoundError):
            bob.videos.retrieve(job.id)
        with pytest.raises(openai.NotFoundError):
            bob.videos.download_content(job.id)
        assert [v.id for v in alice.videos.list().data] == [job.id]
        assert bob.videos.list().data == []


def test_submission_falls_back_and_together_content_streams_through(gw, video_server):
    with sdk(gw) as client:
        raw = client.videos.with_raw_response.create(model="sora-down", prompt="dog", seconds="4")
        job = raw.parse()
        assert raw.headers["x-gateway-model"] == "kling"
        assert raw.headers["x-gateway-fallback"] == "true"
        assert video_server[0].submissions[-1]["model"] == "kwaivgI/kling-2.1"
        assert wait_done(client, job.id).status == "completed"
        assert client.videos.download_content(job.id).read() == VIDEO_BYTES


def test_redirect_to_the_providers_url_when_configured(gw, video_server):
    with sdk(gw) as client:
        job = client.videos.create(model="veo", prompt="sea", seconds="4")
        wait_done(client, job.id)
    response = httpx.get(
        f"{gw.base_url}/videos/{job.id}/content",
        headers={"authorization": f"Bearer {gw.keys['free']}"},
    )
    assert response.status_code == 302
    assert response.headers["location"].startswith(video_server[1].url + "/files/")


def test_failed_job_reports_the_reason_and_refunds(gw):
    with sdk(gw) as client:
        job = client.videos.create(model="sora", prompt="please fail", seconds="8")
        with pytest.raises(openai.RateLimitError):  # 8 s held of 12: another 8 s does not fit
            client.videos.create(model="sora", prompt="second", seconds="8")
        done = wait_done(client, job.id)
        assert done.status == "failed" and "blocked" in done.error.message
        ended = [r for r in records(gw, count=2) if r["status"] != 429]
        assert len(ended) == 1 and ended[0]["status"] == 502
        assert ended[0]["video_ms"] == 0 and ended[0]["cost_usd"] == 0
        again = client.videos.create(model="sora", prompt="now it fits", seconds="8")
        assert wait_done(client, again.id).status == "completed"


def test_video_quota_exhausted_is_429(gw):
    with sdk(gw) as client:
        with pytest.raises(openai.RateLimitError):
            client.videos.create(model="sora", prompt="too long", seconds="20")


def test_content_of_a_running_job_is_refused(gw):
    with sdk(gw) as client:
        job = client.videos.create(model="sora", prompt="slow", seconds="4")
        response = httpx.get(
            f"{gw.base_url}/videos/{job.id}/content",
            headers={"authorization": f"Bearer {gw.keys['free']}"},
        )
        assert response.status_code in (200, 409)  # it may already have finished


def test_job_records_live_in_redis_with_a_ttl(start_providers, video_server, redis):
    from gateway.config.model import Settings
    from gateway.store.factory import create_store

    upstreams, models = video_models(video_server[1].url)
    gw = start_providers(
        {"video": ["sora"]},
        extra_upstreams=upstreams,
        extra_models=models,
        store=create_store(redis.url, Settings()),
        video_poll_interval_s=0.05,
    )
    with sdk(gw) as alice, sdk(gw, "other") as bob:
        job = alice.videos.create(model="sora", prompt="stored", seconds="4")
        assert wait_done(alice, job.id).status == "completed"
        with pytest.raises(openai.NotFoundError):
            bob.videos.retrieve(job.id)
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    assert client.hexists("gw:{u:alice}:videojobs", job.id)
    assert 0 < client.ttl("gw:{u:alice}:videojobs") <= 7 * 86400
    client.close()


def test_open_video_jobs_per_user_are_capped(start_providers, video_server):
    """Each open job is polled upstream: a user past ``max_open_video_jobs`` gets a 429 before
    anything is submitted; another user is not affected, and a finished job frees a place."""
    upstreams, models = video_models(video_server[1].url)
    gw = start_providers(
        {"video": ["sora"]},
        extra_upstreams=upstreams,
        extra_models=models,
        video_poll_interval_s=3600,  # the jobs stay open until a GET asks about them
        settings={"max_open_video_jobs": 2},
    )
    with sdk(gw) as alice, sdk(gw, "other") as bob:
        jobs = [alice.videos.create(model="sora", prompt=f"cat {n}", seconds="1") for n in (1, 2)]
        submitted = len(video_server[0].submissions)
        with pytest.raises(openai.RateLimitError) as refused:
            alice.videos.create(model="sora", prompt="one too many", seconds="1")
        assert refused.value.code == "too_many_video_jobs"
        assert int(refused.value.response.headers["retry-after"]) > 0
        assert len(video_server[0].submissions) == submitted  # nothing went upstream
        assert bob.videos.create(model="sora", prompt="bob's own", seconds="1").id
        assert wait_done(alice, jobs[0].id).status == "completed"
        assert alice.videos.create(model="sora", prompt="room again", seconds="1").id
