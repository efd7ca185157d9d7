"""Video jobs on Replicate predictions through /v1/videos with the openai SDK, against a mock
written from Replicate's documented HTTP API (official models by name, pinned versions)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.providers.mock_video import REPLICATE_TOKEN, VIDEO_BYTES
from tests.providers.test_videos import records, sdk, wait_done

VERSION = "a" * 64


@pytest.fixture
def gw(start_providers, video_server):
    url = video_server[1].url + "/v1"
    auth = {"api": "replicate", "base_url": url, "api_key_env": "REPLICATE_API_TOKEN"}
    upstreams = {
        "replicate": auth,
        "replicate-redirect": {**auth, "video_content": "redirect"},
        "replicate-nokey": {"api": "replicate", "base_url": url},
    }
    price = {"per_second": 0.05}
    models = {
        "wan": {"upstream": "replicate", "model": "wan-video/wan-2.2-t2v-fast",
                "modality": "video", "price": price},
        "pinned": {"upstream": "replicate", "model": f"someone/video-model:{VERSION}",
                   "modality": "video", "price": price},
        "wan-redirect": {"upstream": "replicate-redirect", "model": "wan-video/wan-2.2-t2v-fast",
                         "modality": "video"},
        "unauthorised": {"upstream": "replicate-nokey", "model": "wan-video/wan-2.2-t2v-fast",
                         "modality": "video"},
        "wan-down": {"upstream": "replicate", "model": "wan-video/submitfail",
                     "modality": "video"},
    }  # fmt: skip
    return start_providers(
        {
            "video": ["wan", "pinned", "wan-redirect"],
            "image": ["wan-down", "pinned"],
            "tts": ["unauthorised"],
        },
        extra_upstreams=upstreams,
        extra_models=models,
        tier={"quotas": {"video_generation": {"minutes_per_day": 0.2}}},  # 12 seconds a day
        env={"REPLICATE_API_TOKEN": REPLICATE_TOKEN},
        video_poll_interval_s=0.05,
        settings={"video_content_allow_insecure": True},  # the mock's files: http, 127.0.0.1
    )


def test_official_model_lifecycle_streamed_content_and_usage(gw, video_server):
    mock = video_server[0]
    with sdk(gw) as client:
        job = client.videos.create(model="wan", prompt="a red fox", seconds="4")
        assert job.status == "queued" and job.model == "wan"
        sent = mock.submissions[-1]
        assert sent["path"] == "/v1/models/wan-video/wan-2.2-t2v-fast/predictions"
        assert sent["input"] == {"prompt": "a red fox", "duration": 4}
        done = wait_done(client, job.id)
        assert done.status == "completed" and done.progress == 100 and done.error is None
        before = len(mock.delivery_headers)
        assert client.videos.download_content(job.id).read() == VIDEO_BYTES
    # the output file is fetched from its URL without the Replicate token
    (fetched,) = mock.delivery_headers[before:]
    assert "authorization" not in fetched
    (record,) = records(gw)
    assert record["model"] == "wan" and record["provider"] == "replicate"
    assert record["cost_usd"] == pytest.approx(0.20)


def test_pinned_version_goes_to_predictions_with_version_and_list_output(gw, video_server):
    mock = video_server[0]
    with sdk(gw) as client:
        job = client.videos.create(model="pinned", prompt="waves", seconds="2")
        sent = mock.submissions[-1]
        assert sent["path"] == "/v1/predictions"
        assert sent["version"] == f"someone/video-model:{VERSION}"
        assert wait_done(client, job.id).status == "completed"
        assert client.videos.download_content(job.id).read() == VIDEO_BYTES


def test_failed_prediction_reports_the_reason_and_refunds(gw):
    with sdk(gw) as client:
        job = client.videos.create(model="wan", prompt="please fail", seconds="8")
        with pytest.raises(openai.RateLimitError):  # 8 s held of 12
            client.videos.create(model="wan", prompt="second", seconds="8")
        done = wait_done(client, job.id)
        assert done.status == "failed" and "flagged as unsafe" in done.error.message
        ended = [r for r in records(gw, count=2) if r["status"] != 429]
        assert len(ended) == 1 and ended[0]["status"] == 502 and ended[0]["cost_usd"] == 0
        again = client.videos.create(model="wan", prompt="it fits again", seconds="8")
        assert wait_done(client, again.id).status == "completed"


def test_canceled_prediction_is_failed_and_refunded(gw):
    with sdk(gw) as client:
        job = client.videos.create(model="wan", prompt="cancel me", seconds="8")
        done = wait_done(client, job.id)
        assert done.status == "failed" and "canceled" in done.error.message
        (ended,) = records(gw)
        assert ended["status"] == 502 and ended["cost_usd"] == 0
        again = client.videos.create(model="wan", prompt="room again", seconds="8")
        assert wait_done(client, again.id).status == "completed"


def test_redirect_to_the_output_url(gw, video_server):
    with sdk(gw) as client:
        job = client.videos.create(model="wan-redirect", prompt="sea", seconds="2")
        wait_done(client, job.id)
    response = httpx.get(
        f"{gw.base_url}/videos/{job.id}/content",
        headers={"authorization": f"Bearer {gw.keys['free']}"},
    )
    assert response.status_code == 302
    assert (
        response.headers["location"]
        == f"{video_server[1].url}/delivery/"
        + (response.headers["location"].rsplit("/delivery/", 1)[1])
    )
    assert response.headers["location"].endswith("/output.mp4")
    assert httpx.get(response.headers["location"]).content == VIDEO_BYTES


def test_a_refused_submission_falls_back_to_the_next_model(gw, video_server):
    with sdk(gw) as client:
        raw = client.videos.with_raw_response.create(model="wan-down", prompt="dog", seconds="2")
        assert raw.headers["x-gateway-model"] == "pinned"
        assert raw.headers["x-gateway-fallback"] == "true"
        assert wait_done(client, raw.parse().id).status == "completed"


def test_replicate_authentication_error_is_an_openai_shaped_401(gw):
    with sdk(gw) as client, pytest.raises(openai.AuthenticationError) as raised:
        client.videos.create(model="unauthorised", prompt="dog", seconds="2")
    assert "valid authentication token" in raised.value.message
    assert REPLICATE_TOKEN not in str(raised.value.body)
